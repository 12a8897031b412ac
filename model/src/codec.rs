//! Little-endian binary primitives shared by the record and snapshot codecs, and
//! their typed [`DecodeError`].
//!
//! Decoding goes through the shared [`ByteReader`], which checks every length against
//! the remaining input before slicing or allocating and never panics, whatever the
//! bytes; [`ReadModel`] adds the model's field readers on top.

use std::sync::Arc;

use aedb_types::Lsn;
use aedb_types::reader::{ByteReader, LenPrefix};

use crate::idempotency::{
    IdempotencyKey, Rejection, RejectionKind, RequestFingerprint, RequestStamp,
};
use crate::kv::{KvKey, KvValue};
use crate::limits::{
    LimitError, MAX_CELL_LEN, MAX_COLUMNS, MAX_IDEMPOTENCY_KEY_LEN, MAX_KV_KEY_LEN,
    MAX_KV_VALUE_LEN, MAX_REJECTION_MESSAGE_LEN,
};
use crate::name::{ColumnName, NameError, Namespace, ProjectName, ScopeName, TableName};
use crate::schema::{ColumnDef, SchemaError, TableSchema};
use crate::value::{ColumnType, Timestamp, Value};

/// A field of a model encoding failed the model's own validation: the error inside
/// [`DecodeErrorKind::Domain`] for the record and snapshot codecs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// An invalid name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A key or value outside the size limits.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// An invalid table schema.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// What is wrong with the bytes of a commit record or snapshot, without the position.
pub type DecodeErrorKind = aedb_types::DecodeErrorKind<FieldError>;

/// Bytes that are not a valid commit record or snapshot, and where decoding stopped.
pub type DecodeError = aedb_types::DecodeError<FieldError>;

/// The bounds-checked cursor the model codecs read through.
pub(crate) type Reader<'a> = ByteReader<'a, FieldError>;

pub(crate) type DResult<T> = Result<T, DecodeError>;

/// The model's field readers on top of the shared [`ByteReader`].
pub(crate) trait ReadModel {
    fn lsn(&mut self) -> DResult<Lsn>;
    fn project(&mut self) -> DResult<ProjectName>;
    fn scope(&mut self) -> DResult<ScopeName>;
    fn table(&mut self) -> DResult<TableName>;
    fn column(&mut self) -> DResult<ColumnName>;
    fn namespace(&mut self) -> DResult<Namespace>;
    fn kv_key(&mut self) -> DResult<KvKey>;
    fn kv_value(&mut self) -> DResult<KvValue>;
    fn idempotency_key(&mut self) -> DResult<IdempotencyKey>;
    fn value(&mut self) -> DResult<Value>;
    fn values(&mut self, what: &'static str) -> DResult<Vec<Value>>;
    fn values_arc(&mut self, what: &'static str) -> DResult<Arc<[Value]>>;
    fn schema(&mut self) -> DResult<TableSchema>;
    fn rejection(&mut self) -> DResult<Rejection>;
    /// `u8 0` (none) or `u8 1 ‖ fingerprint[32] ‖ u64 at_unix_ms`.
    fn request(&mut self) -> DResult<Option<RequestStamp>>;
    /// A `u32` item count, checked against the remaining input.
    fn count32(&mut self, what: &'static str, min_item: usize) -> DResult<usize>;
    /// A `u16` item count, checked against the remaining input.
    fn count16(&mut self, what: &'static str, min_item: usize) -> DResult<usize>;
}

impl ReadModel for Reader<'_> {
    fn lsn(&mut self) -> DResult<Lsn> {
        Ok(Lsn::new(self.u64()?))
    }

    fn request(&mut self) -> DResult<Option<RequestStamp>> {
        match self.u8()? {
            REQUEST_UNKNOWN => Ok(None),
            REQUEST_STAMPED => {
                let fingerprint = self.array::<32>()?;
                Ok(Some(RequestStamp {
                    fingerprint: RequestFingerprint::from_bytes(fingerprint),
                    at_unix_ms: self.u64()?,
                }))
            }
            tag => Err(self.back(1).err(DecodeErrorKind::UnknownTag {
                what: "idempotency request stamp",
                tag,
            })),
        }
    }

    fn count32(&mut self, what: &'static str, min_item: usize) -> DResult<usize> {
        self.count(LenPrefix::U32, what, min_item, u64::MAX)
    }

    fn count16(&mut self, what: &'static str, min_item: usize) -> DResult<usize> {
        self.count(LenPrefix::U16, what, min_item, u64::MAX)
    }

    fn project(&mut self) -> DResult<ProjectName> {
        self.field(|r| {
            Ok(ProjectName::reserved(r.str(
                LenPrefix::U8,
                "project name",
                255,
            )?))
        })
    }

    fn scope(&mut self) -> DResult<ScopeName> {
        self.field(|r| {
            Ok(ScopeName::reserved(r.str(
                LenPrefix::U8,
                "scope name",
                255,
            )?))
        })
    }

    fn table(&mut self) -> DResult<TableName> {
        self.field(|r| {
            Ok(TableName::reserved(r.str(
                LenPrefix::U8,
                "table name",
                255,
            )?))
        })
    }

    fn column(&mut self) -> DResult<ColumnName> {
        self.field(|r| {
            Ok(ColumnName::reserved(r.str(
                LenPrefix::U8,
                "column name",
                255,
            )?))
        })
    }

    fn namespace(&mut self) -> DResult<Namespace> {
        Ok(Namespace::new(self.project()?, self.scope()?))
    }

    fn kv_key(&mut self) -> DResult<KvKey> {
        self.field(|r| {
            Ok(KvKey::new(r.prefixed(
                LenPrefix::U16,
                "kv key",
                MAX_KV_KEY_LEN,
            )?))
        })
    }

    fn kv_value(&mut self) -> DResult<KvValue> {
        self.field(|r| {
            Ok(KvValue::new(r.prefixed(
                LenPrefix::U32,
                "kv value",
                MAX_KV_VALUE_LEN,
            )?))
        })
    }

    fn idempotency_key(&mut self) -> DResult<IdempotencyKey> {
        self.field(|r| {
            Ok(IdempotencyKey::new(r.prefixed(
                LenPrefix::U16,
                "idempotency key",
                MAX_IDEMPOTENCY_KEY_LEN,
            )?))
        })
    }

    fn value(&mut self) -> DResult<Value> {
        let tag = self.u8()?;
        if tag == 0 {
            return Ok(Value::Null);
        }
        let Some(ty) = ColumnType::from_tag(tag) else {
            return Err(self
                .back(1)
                .err(DecodeErrorKind::UnknownTag { what: "value", tag }));
        };
        Ok(match ty {
            ColumnType::Bool => Value::Bool(self.bool("bool value")?),
            ColumnType::I64 => Value::I64(self.i64()?),
            ColumnType::U64 => Value::U64(self.u64()?),
            ColumnType::U128 => Value::U128(self.u128()?),
            ColumnType::F64 => Value::F64(f64::from_bits(self.u64()?)),
            ColumnType::Text => Value::Text(
                self.str(LenPrefix::U32, "text value", MAX_CELL_LEN)?
                    .to_owned(),
            ),
            ColumnType::Bytes => Value::Bytes(
                self.prefixed(LenPrefix::U32, "bytes value", MAX_CELL_LEN)?
                    .to_vec(),
            ),
            ColumnType::Timestamp => Value::Timestamp(Timestamp::from_micros(self.i64()?)),
        })
    }

    /// A `u16`-counted list of values.
    fn values(&mut self, what: &'static str) -> DResult<Vec<Value>> {
        let n = self.count16(what, 1)?;
        let mut out = Vec::with_capacity(n.min(MAX_COLUMNS));
        for _ in 0..n {
            out.push(self.value()?);
        }
        Ok(out)
    }

    fn values_arc(&mut self, what: &'static str) -> DResult<Arc<[Value]>> {
        Ok(Arc::from(self.values(what)?))
    }

    fn schema(&mut self) -> DResult<TableSchema> {
        let start = self.pos();
        let n = self.count16("column", 3)?;
        let mut columns = Vec::with_capacity(n.min(MAX_COLUMNS));
        for _ in 0..n {
            let name = self.column()?;
            let tag = self.u8()?;
            let ty = ColumnType::from_tag(tag).ok_or_else(|| {
                self.back(1).err(DecodeErrorKind::UnknownTag {
                    what: "column type",
                    tag,
                })
            })?;
            let flags = self.u8()?;
            if flags & !1 != 0 {
                return Err(self.back(1).err(DecodeErrorKind::InvalidByte {
                    what: "column flags",
                    byte: flags,
                }));
            }
            columns.push(ColumnDef {
                name,
                ty,
                nullable: flags & 1 == 1,
            });
        }
        let n = self.count16("primary key column", 2)?;
        let mut pk = Vec::with_capacity(n.min(MAX_COLUMNS));
        for _ in 0..n {
            pk.push(self.column()?);
        }
        TableSchema::new(columns, pk)
            .map_err(|e| self.err_at(start, DecodeErrorKind::Domain(e.into())))
    }

    fn rejection(&mut self) -> DResult<Rejection> {
        match self.u8()? {
            1 => Ok(Rejection::AssertionFailed { index: self.u32()? }),
            2 => {
                let code = self.u8()?;
                let kind = RejectionKind::from_code(code).ok_or_else(|| {
                    self.back(1).err(DecodeErrorKind::UnknownTag {
                        what: "rejection kind",
                        tag: code,
                    })
                })?;
                let message = self
                    .str(
                        LenPrefix::U16,
                        "rejection message",
                        MAX_REJECTION_MESSAGE_LEN,
                    )?
                    .to_owned();
                Ok(Rejection::Failed { kind, message })
            }
            tag => Err(self.back(1).err(DecodeErrorKind::UnknownTag {
                what: "rejection",
                tag,
            })),
        }
    }
}

// ---- writers ----

pub(crate) fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_lsn(out: &mut Vec<u8>, lsn: Lsn) {
    put_u64(out, lsn.get());
}

/// Converts a length or count that the model's limits keep small; the limits
/// guarantee the conversion never saturates for valid model values.
fn small<T: TryFrom<usize> + Copy>(n: usize, max: T) -> T {
    T::try_from(n).unwrap_or(max)
}

pub(crate) fn put_count(out: &mut Vec<u8>, n: usize) {
    put_u32(out, small(n, u32::MAX));
}

pub(crate) fn put_count16(out: &mut Vec<u8>, n: usize) {
    put_u16(out, small(n, u16::MAX));
}

fn put_bytes8(out: &mut Vec<u8>, b: &[u8]) {
    put_u8(out, small(b.len(), u8::MAX));
    out.extend_from_slice(b);
}

fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) {
    put_u16(out, small(b.len(), u16::MAX));
    out.extend_from_slice(b);
}

fn put_bytes32(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, small(b.len(), u32::MAX));
    out.extend_from_slice(b);
}

pub(crate) fn put_name(out: &mut Vec<u8>, name: &str) {
    put_bytes8(out, name.as_bytes());
}

pub(crate) fn put_namespace(out: &mut Vec<u8>, ns: &Namespace) {
    put_name(out, ns.project.as_str());
    put_name(out, ns.scope.as_str());
}

pub(crate) fn put_kv_key(out: &mut Vec<u8>, key: &KvKey) {
    put_bytes16(out, key);
}

pub(crate) fn put_kv_value(out: &mut Vec<u8>, value: &KvValue) {
    put_bytes32(out, value);
}

pub(crate) fn put_idempotency_key(out: &mut Vec<u8>, key: &IdempotencyKey) {
    put_bytes16(out, key.as_bytes());
}

pub(crate) fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v.column_type() {
        None => put_u8(out, 0),
        Some(ty) => put_u8(out, ty.tag()),
    }
    match v {
        Value::Null => {}
        Value::Bool(b) => put_u8(out, u8::from(*b)),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => put_u64(out, *x),
        Value::U128(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => put_u64(out, x.to_bits()),
        Value::Text(s) => put_bytes32(out, s.as_bytes()),
        Value::Bytes(b) => put_bytes32(out, b),
        Value::Timestamp(t) => out.extend_from_slice(&t.as_micros().to_le_bytes()),
    }
}

pub(crate) fn put_values(out: &mut Vec<u8>, values: &[Value]) {
    put_count16(out, values.len());
    for v in values {
        put_value(out, v);
    }
}

pub(crate) fn put_schema(out: &mut Vec<u8>, schema: &TableSchema) {
    put_count16(out, schema.columns().len());
    for c in schema.columns() {
        put_name(out, c.name.as_str());
        put_u8(out, c.ty.tag());
        put_u8(out, u8::from(c.nullable));
    }
    put_count16(out, schema.primary_key().len());
    for c in schema.primary_key() {
        put_name(out, c.as_str());
    }
}

/// Tag of an absent request stamp (a record carried over from format version 1).
pub(crate) const REQUEST_UNKNOWN: u8 = 0;
/// Tag of a present request stamp.
pub(crate) const REQUEST_STAMPED: u8 = 1;

/// `u8 0` (none) or `u8 1 ‖ fingerprint[32] ‖ u64 at_unix_ms`.
pub(crate) fn put_request(out: &mut Vec<u8>, request: Option<&RequestStamp>) {
    match request {
        None => put_u8(out, REQUEST_UNKNOWN),
        Some(stamp) => {
            put_u8(out, REQUEST_STAMPED);
            out.extend_from_slice(stamp.fingerprint.as_bytes());
            put_u64(out, stamp.at_unix_ms);
        }
    }
}

pub(crate) fn put_rejection(out: &mut Vec<u8>, r: &Rejection) {
    match r {
        Rejection::AssertionFailed { index } => {
            put_u8(out, 1);
            put_u32(out, *index);
        }
        Rejection::Failed { kind, message } => {
            put_u8(out, 2);
            put_u8(out, kind.code());
            // `Rejection::failed` bounds the message; cut defensively at a char
            // boundary so a hand-built oversized message still encodes validly.
            let mut cut = message.len().min(MAX_REJECTION_MESSAGE_LEN);
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            put_bytes16(out, &message.as_bytes()[..cut]);
        }
    }
}
