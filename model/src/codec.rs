//! Little-endian binary primitives shared by the record and snapshot codecs, and
//! their typed [`DecodeError`].
//!
//! The [`Reader`] checks every length against the remaining input before
//! slicing or allocating and never panics, whatever the bytes.

use std::sync::Arc;

use aedb_types::Lsn;

use crate::idempotency::{IdempotencyKey, Rejection, RejectionKind};
use crate::kv::{KvKey, KvValue};
use crate::limits::{
    LimitError, MAX_CELL_LEN, MAX_COLUMNS, MAX_IDEMPOTENCY_KEY_LEN, MAX_KV_KEY_LEN,
    MAX_KV_VALUE_LEN, MAX_REJECTION_MESSAGE_LEN,
};
use crate::name::{ColumnName, NameError, Namespace, ProjectName, ScopeName, TableName};
use crate::schema::{ColumnDef, SchemaError, TableSchema};
use crate::value::{ColumnType, Timestamp, Value};

/// What is wrong with the bytes, without the position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The input ends early (a truncated record).
    #[error("input ends early: need {needed} more bytes, {remaining} left")]
    UnexpectedEnd {
        /// Bytes needed.
        needed: u64,
        /// Bytes left.
        remaining: usize,
    },
    /// The format version is not one this build reads.
    #[error("format version {found} is not supported (this build reads {supported})")]
    UnsupportedVersion {
        /// Version byte found.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// An enum tag byte has no meaning.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// Which enum.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A flags byte has bits this version does not define.
    #[error("invalid {what} byte {byte:#04x}")]
    InvalidByte {
        /// Which field.
        what: &'static str,
        /// The byte found.
        byte: u8,
    },
    /// A string is not UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which field.
        what: &'static str,
    },
    /// A length prefix exceeds the field's limit.
    #[error("{what} length {len} exceeds the maximum {max}")]
    LengthTooLarge {
        /// Which field.
        what: &'static str,
        /// The length found.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A count exceeds the number of items the remaining input could hold.
    #[error("{what} count {count} exceeds what {remaining} remaining bytes can hold")]
    CountTooLarge {
        /// Which list.
        what: &'static str,
        /// The count found.
        count: u64,
        /// Bytes left.
        remaining: usize,
    },
    /// Bytes remain after a complete record.
    #[error("{count} bytes remain after the end")]
    TrailingBytes {
        /// Number of extra bytes.
        count: usize,
    },
    /// An invalid name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A key or value outside the size limits.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// An invalid table schema.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A field holds a value its type forbids.
    #[error("invalid {what}")]
    Invalid {
        /// Which field.
        what: &'static str,
    },
}

/// Bytes that are not a valid encoding, and where decoding stopped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("decode failed at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Byte offset into the input where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub kind: DecodeErrorKind,
}

/// A cursor over input bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

pub(crate) type DResult<T> = Result<T, DecodeError>;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn err(&self, kind: impl Into<DecodeErrorKind>) -> DecodeError {
        DecodeError {
            offset: self.pos,
            kind: kind.into(),
        }
    }

    pub(crate) fn take(&mut self, n: u64) -> DResult<&'a [u8]> {
        let remaining = self.remaining();
        match usize::try_from(n) {
            Ok(n) if n <= remaining => {
                let out = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(out)
            }
            _ => Err(self.err(DecodeErrorKind::UnexpectedEnd {
                needed: n,
                remaining,
            })),
        }
    }

    fn array<const N: usize>(&mut self) -> DResult<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> DResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> DResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> DResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> DResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn u128(&mut self) -> DResult<u128> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> DResult<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub(crate) fn lsn(&mut self) -> DResult<Lsn> {
        Ok(Lsn::new(self.u64()?))
    }

    pub(crate) fn bool(&mut self, what: &'static str) -> DResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(self
                .back(1)
                .err(DecodeErrorKind::InvalidByte { what, byte })),
        }
    }

    /// Steps back `n` bytes, so an error points at the offending field.
    pub(crate) fn back(&mut self, n: usize) -> &mut Self {
        self.pos = self.pos.saturating_sub(n);
        self
    }

    /// A length-prefixed byte string; `prefix` is the width of the length (1, 2 or 4).
    pub(crate) fn bytes(
        &mut self,
        prefix: u8,
        what: &'static str,
        max: usize,
    ) -> DResult<&'a [u8]> {
        let start = self.pos;
        let len = match prefix {
            1 => u64::from(self.u8()?),
            2 => u64::from(self.u16()?),
            _ => u64::from(self.u32()?),
        };
        if len > max as u64 {
            self.pos = start;
            return Err(self.err(DecodeErrorKind::LengthTooLarge {
                what,
                len,
                max: max as u64,
            }));
        }
        self.take(len)
    }

    pub(crate) fn str(&mut self, prefix: u8, what: &'static str, max: usize) -> DResult<&'a str> {
        let start = self.pos;
        let b = self.bytes(prefix, what, max)?;
        std::str::from_utf8(b).map_err(|_| DecodeError {
            offset: start,
            kind: DecodeErrorKind::InvalidUtf8 { what },
        })
    }

    /// A `u32` item count, checked against the remaining input assuming each
    /// item takes at least `min_item` bytes.
    pub(crate) fn count(&mut self, what: &'static str, min_item: usize) -> DResult<usize> {
        let count = u64::from(self.u32()?);
        self.count_of(count, what, min_item)
    }

    /// A `u16` item count, checked like [`Reader::count`].
    pub(crate) fn count16(&mut self, what: &'static str, min_item: usize) -> DResult<usize> {
        let count = u64::from(self.u16()?);
        self.count_of(count, what, min_item)
    }

    fn count_of(&mut self, count: u64, what: &'static str, min_item: usize) -> DResult<usize> {
        let remaining = self.remaining();
        let capacity = (remaining / min_item.max(1)) as u64;
        if count > capacity {
            return Err(self.err(DecodeErrorKind::CountTooLarge {
                what,
                count,
                remaining,
            }));
        }
        // count <= remaining, so it fits in usize.
        Ok(count as usize)
    }

    /// Runs `f` and maps a domain error to a decode error at the field's start.
    pub(crate) fn field<T, E: Into<DecodeErrorKind>>(
        &mut self,
        f: impl FnOnce(&mut Self) -> DResult<Result<T, E>>,
    ) -> DResult<T> {
        let start = self.pos;
        f(self)?.map_err(|e| DecodeError {
            offset: start,
            kind: e.into(),
        })
    }

    pub(crate) fn finish(&self) -> DResult<()> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(self.err(DecodeErrorKind::TrailingBytes { count })),
        }
    }

    // ---- model types ----

    pub(crate) fn project(&mut self) -> DResult<ProjectName> {
        self.field(|r| Ok(ProjectName::reserved(r.str(1, "project name", 255)?)))
    }

    pub(crate) fn scope(&mut self) -> DResult<ScopeName> {
        self.field(|r| Ok(ScopeName::reserved(r.str(1, "scope name", 255)?)))
    }

    pub(crate) fn table(&mut self) -> DResult<TableName> {
        self.field(|r| Ok(TableName::reserved(r.str(1, "table name", 255)?)))
    }

    pub(crate) fn column(&mut self) -> DResult<ColumnName> {
        self.field(|r| Ok(ColumnName::reserved(r.str(1, "column name", 255)?)))
    }

    pub(crate) fn namespace(&mut self) -> DResult<Namespace> {
        Ok(Namespace::new(self.project()?, self.scope()?))
    }

    pub(crate) fn kv_key(&mut self) -> DResult<KvKey> {
        self.field(|r| Ok(KvKey::new(r.bytes(2, "kv key", MAX_KV_KEY_LEN)?)))
    }

    pub(crate) fn kv_value(&mut self) -> DResult<KvValue> {
        self.field(|r| Ok(KvValue::new(r.bytes(4, "kv value", MAX_KV_VALUE_LEN)?)))
    }

    pub(crate) fn idempotency_key(&mut self) -> DResult<IdempotencyKey> {
        self.field(|r| {
            Ok(IdempotencyKey::new(r.bytes(
                2,
                "idempotency key",
                MAX_IDEMPOTENCY_KEY_LEN,
            )?))
        })
    }

    pub(crate) fn value(&mut self) -> DResult<Value> {
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
            ColumnType::Text => Value::Text(self.str(4, "text value", MAX_CELL_LEN)?.to_owned()),
            ColumnType::Bytes => Value::Bytes(self.bytes(4, "bytes value", MAX_CELL_LEN)?.to_vec()),
            ColumnType::Timestamp => Value::Timestamp(Timestamp::from_micros(self.i64()?)),
        })
    }

    /// A `u16`-counted list of values.
    pub(crate) fn values(&mut self, what: &'static str) -> DResult<Vec<Value>> {
        let n = self.count16(what, 1)?;
        let mut out = Vec::with_capacity(n.min(MAX_COLUMNS));
        for _ in 0..n {
            out.push(self.value()?);
        }
        Ok(out)
    }

    pub(crate) fn values_arc(&mut self, what: &'static str) -> DResult<Arc<[Value]>> {
        Ok(Arc::from(self.values(what)?))
    }

    pub(crate) fn schema(&mut self) -> DResult<TableSchema> {
        let start = self.pos;
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
        TableSchema::new(columns, pk).map_err(|e| DecodeError {
            offset: start,
            kind: e.into(),
        })
    }

    pub(crate) fn rejection(&mut self) -> DResult<Rejection> {
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
                    .str(2, "rejection message", MAX_REJECTION_MESSAGE_LEN)?
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
