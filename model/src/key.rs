//! The order-preserving ("memcomparable") encoding of primary keys, and key ranges.
//!
//! A primary key is the concatenation of its components' encodings, with no type
//! tags (the schema fixes the types) and no nulls (key columns are non-null):
//!
//! | type | encoding |
//! |---|---|
//! | `Bool` | 1 byte: `0x00` false, `0x01` true |
//! | `U64` | 8 bytes big-endian |
//! | `U128` | 16 bytes big-endian |
//! | `I64`, `Timestamp` | 8 bytes big-endian of the value with the sign bit flipped |
//! | `F64` | 8 bytes big-endian of the total-order bits: negative → all bits inverted, otherwise sign bit set |
//! | `Text`, `Bytes` | every `0x00` byte written as `0x00 0xFF`, then the terminator `0x00 0x01` |
//!
//! Each component's encoding is prefix-free and compares byte-wise exactly as the
//! values compare (F64 by `f64::total_cmp`, so `-0.0 < 0.0` and NaNs are ordered
//! keys), so comparing two encoded keys byte-wise compares the keys
//! component-by-component. A prefix of key columns encodes to a byte prefix of
//! every key that starts with it, which is what makes [`KeyRange`] prefix bounds
//! plain byte ranges.

use std::borrow::Borrow;
use std::fmt;
use std::ops::{Bound, Deref};

use crate::bytes::SmallBytes;
use crate::limits::MAX_PRIMARY_KEY_LEN;
use crate::schema::{RowError, TableSchema};
use crate::value::{ColumnType, Timestamp, Value};

const SIGN: u64 = 1 << 63;
const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

/// An encoded primary key (see the [module docs](self)); orders like the key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EncodedKey(SmallBytes);

impl EncodedKey {
    /// Wraps bytes that are already an encoded key (e.g. read back from a scan).
    pub fn from_bytes(bytes: &[u8]) -> EncodedKey {
        EncodedKey(SmallBytes::new(bytes))
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Checks `pk` against the schema and encodes it.
    pub fn for_key(schema: &TableSchema, pk: &[Value]) -> Result<EncodedKey, RowError> {
        let mut out = Vec::new();
        encode_primary_key(schema, pk, &mut out)?;
        Ok(EncodedKey(SmallBytes::from_vec(out)))
    }

    /// Encodes the key columns of a full row (values in schema column order).
    ///
    /// Checks arity and that key cells are non-null; the key cells' types should
    /// already have been checked (see [`TableSchema::check_row`]).
    pub fn for_row(schema: &TableSchema, row: &[Value]) -> Result<EncodedKey, RowError> {
        if row.len() != schema.columns().len() {
            return Err(RowError::RowArity {
                expected: schema.columns().len(),
                actual: row.len(),
            });
        }
        let mut out = Vec::new();
        for (&i, col) in schema
            .primary_key_indices()
            .iter()
            .zip(schema.primary_key())
        {
            encode_component(&row[i], &mut out).map_err(|_| RowError::NullNotAllowed {
                column: col.clone(),
            })?;
        }
        check_len(out.len())?;
        Ok(EncodedKey(SmallBytes::from_vec(out)))
    }
}

impl Deref for EncodedKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Borrow<[u8]> for EncodedKey {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for EncodedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncodedKey(\"")?;
        crate::kv::fmt_bytes(f, self.0.as_bytes(), 64)?;
        f.write_str("\")")
    }
}

/// Encoding or decoding a key failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Key components cannot be null.
    #[error("key component {position} is null; key columns are non-null")]
    NullComponent {
        /// Index of the component.
        position: usize,
    },
    /// The encoded key would exceed [`MAX_PRIMARY_KEY_LEN`].
    #[error("encoded key is {len} bytes; the maximum is {MAX_PRIMARY_KEY_LEN}")]
    TooLong {
        /// The encoded length.
        len: usize,
    },
    /// The bytes end inside a component.
    #[error("encoded key ends inside component {position}")]
    Truncated {
        /// Index of the component.
        position: usize,
    },
    /// A bool component is neither `0x00` nor `0x01`.
    #[error("key component {position} is a bool but holds byte {byte:#04x}")]
    InvalidBool {
        /// Index of the component.
        position: usize,
        /// The byte found.
        byte: u8,
    },
    /// A `0x00` in text/bytes is followed by something other than `0xFF` or `0x01`.
    #[error("key component {position} has an invalid escape byte {byte:#04x}")]
    InvalidEscape {
        /// Index of the component.
        position: usize,
        /// The byte after `0x00`.
        byte: u8,
    },
    /// A text component is not UTF-8.
    #[error("key component {position} is text but not valid UTF-8")]
    InvalidUtf8 {
        /// Index of the component.
        position: usize,
    },
    /// Bytes remain after the last component.
    #[error("{count} bytes remain after the last key component")]
    TrailingBytes {
        /// Number of extra bytes.
        count: usize,
    },
}

fn check_len(len: usize) -> Result<(), RowError> {
    if len > MAX_PRIMARY_KEY_LEN {
        Err(RowError::PrimaryKeyTooLong { len })
    } else {
        Ok(())
    }
}

/// Appends the order-preserving encoding of one non-null value.
pub fn encode_component(value: &Value, out: &mut Vec<u8>) -> Result<(), KeyError> {
    match value {
        Value::Null => return Err(KeyError::NullComponent { position: 0 }),
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::U64(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::U128(v) => out.extend_from_slice(&v.to_be_bytes()),
        Value::I64(v) => out.extend_from_slice(&((*v as u64) ^ SIGN).to_be_bytes()),
        Value::Timestamp(t) => {
            out.extend_from_slice(&((t.as_micros() as u64) ^ SIGN).to_be_bytes())
        }
        Value::F64(v) => {
            let bits = v.to_bits();
            let ordered = if bits & SIGN != 0 { !bits } else { bits | SIGN };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::Text(s) => escape(s.as_bytes(), out),
        Value::Bytes(b) => escape(b, out),
    }
    Ok(())
}

fn escape(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + 2);
    for &b in bytes {
        out.push(b);
        if b == ESCAPE {
            out.push(ESCAPED_ZERO);
        }
    }
    out.extend_from_slice(&[ESCAPE, TERMINATOR]);
}

/// Encodes key values without a schema (types come from the values).
pub fn encode_key(values: &[Value]) -> Result<EncodedKey, KeyError> {
    let mut out = Vec::new();
    for (position, v) in values.iter().enumerate() {
        encode_component(v, &mut out).map_err(|_| KeyError::NullComponent { position })?;
    }
    if out.len() > MAX_PRIMARY_KEY_LEN {
        return Err(KeyError::TooLong { len: out.len() });
    }
    Ok(EncodedKey(SmallBytes::from_vec(out)))
}

/// Checks `pk` against `schema` and appends its encoding to `out`.
pub fn encode_primary_key(
    schema: &TableSchema,
    pk: &[Value],
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    schema.check_primary_key(pk)?;
    encode_checked_prefix(pk, out);
    check_len(out.len())
}

/// Appends components already checked to be non-null.
fn encode_checked_prefix(values: &[Value], out: &mut Vec<u8>) {
    for v in values {
        // Checked non-null by the caller; a null would only skip the component.
        let _ = encode_component(v, out);
    }
}

/// Decodes an encoded key whose components have the given types.
pub fn decode_key(
    types: impl IntoIterator<Item = ColumnType>,
    bytes: &[u8],
) -> Result<Vec<Value>, KeyError> {
    let mut rest = bytes;
    let mut out = Vec::new();
    for (position, ty) in types.into_iter().enumerate() {
        let truncated = KeyError::Truncated { position };
        let mut fixed = |n: usize| -> Result<&[u8], KeyError> {
            if rest.len() < n {
                return Err(truncated.clone());
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let value = match ty {
            ColumnType::Bool => match fixed(1)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                byte => return Err(KeyError::InvalidBool { position, byte }),
            },
            ColumnType::U64 => Value::U64(u64::from_be_bytes(array8(fixed(8)?))),
            ColumnType::U128 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(fixed(16)?);
                Value::U128(u128::from_be_bytes(a))
            }
            ColumnType::I64 => Value::I64((u64::from_be_bytes(array8(fixed(8)?)) ^ SIGN) as i64),
            ColumnType::Timestamp => Value::Timestamp(Timestamp::from_micros(
                (u64::from_be_bytes(array8(fixed(8)?)) ^ SIGN) as i64,
            )),
            ColumnType::F64 => {
                let ordered = u64::from_be_bytes(array8(fixed(8)?));
                let bits = if ordered & SIGN != 0 {
                    ordered ^ SIGN
                } else {
                    !ordered
                };
                Value::F64(f64::from_bits(bits))
            }
            ColumnType::Bytes => {
                let (b, tail) = unescape(rest, position)?;
                rest = tail;
                Value::Bytes(b)
            }
            ColumnType::Text => {
                let (b, tail) = unescape(rest, position)?;
                rest = tail;
                Value::Text(String::from_utf8(b).map_err(|_| KeyError::InvalidUtf8 { position })?)
            }
        };
        out.push(value);
    }
    if !rest.is_empty() {
        return Err(KeyError::TrailingBytes { count: rest.len() });
    }
    Ok(out)
}

fn array8(b: &[u8]) -> [u8; 8] {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    a
}

fn unescape(bytes: &[u8], position: usize) -> Result<(Vec<u8>, &[u8]), KeyError> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let Some(&b) = bytes.get(i) else {
            return Err(KeyError::Truncated { position });
        };
        if b != ESCAPE {
            out.push(b);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            None => return Err(KeyError::Truncated { position }),
            Some(&ESCAPED_ZERO) => {
                out.push(0);
                i += 2;
            }
            Some(&TERMINATOR) => return Ok((out, &bytes[i + 2..])),
            Some(&byte) => return Err(KeyError::InvalidEscape { position, byte }),
        }
    }
}

/// The smallest byte string greater than every string that starts with `prefix`,
/// or `None` when there is none (`prefix` is empty or all `0xFF`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut out = prefix[..=last].to_vec();
    out[last] += 1;
    Some(out)
}

/// Owned lower and upper bounds over encoded keys.
pub type ByteBounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// A range of primary keys for table scans.
///
/// Each bound is a *prefix* of the key columns (from none to all of them).
/// `Included(p)` as a start means "keys whose first `p.len()` columns are ≥ p";
/// `Excluded(p)` means "> p"; as an end, `Included(p)` means ≤ and `Excluded(p)`
/// means <, again comparing only the first `p.len()` columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// Lower bound.
    pub start: Bound<Vec<Value>>,
    /// Upper bound.
    pub end: Bound<Vec<Value>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> KeyRange {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Every key whose leading columns equal `prefix`.
    pub fn prefix(prefix: Vec<Value>) -> KeyRange {
        KeyRange {
            start: Bound::Included(prefix.clone()),
            end: Bound::Included(prefix),
        }
    }

    /// Keys between two bounds.
    pub fn new(start: Bound<Vec<Value>>, end: Bound<Vec<Value>>) -> KeyRange {
        KeyRange { start, end }
    }

    /// Checks the bounds against the schema and turns them into byte bounds over
    /// encoded keys; `None` when the range is certainly empty.
    pub fn to_byte_bounds(&self, schema: &TableSchema) -> Result<Option<ByteBounds>, RowError> {
        let encode = |p: &Vec<Value>| -> Result<Vec<u8>, RowError> {
            schema.check_primary_key_prefix(p)?;
            let mut out = Vec::new();
            encode_checked_prefix(p, &mut out);
            Ok(out)
        };
        let start = match &self.start {
            Bound::Unbounded => Bound::Unbounded,
            Bound::Included(p) => Bound::Included(encode(p)?),
            Bound::Excluded(p) => match prefix_successor(&encode(p)?) {
                Some(s) => Bound::Included(s),
                None => return Ok(None),
            },
        };
        let end = match &self.end {
            Bound::Unbounded => Bound::Unbounded,
            Bound::Included(p) => match prefix_successor(&encode(p)?) {
                Some(s) => Bound::Excluded(s),
                None => Bound::Unbounded,
            },
            Bound::Excluded(p) => Bound::Excluded(encode(p)?),
        };
        Ok(Some((start, end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_encodings() {
        let enc = |v: Value| encode_key(&[v]).unwrap().as_bytes().to_vec();
        assert_eq!(enc(Value::Bool(true)), vec![1]);
        assert_eq!(enc(Value::I64(0)), vec![0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            enc(Value::I64(-1)),
            vec![0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(enc(Value::U64(1)), vec![0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(enc(Value::Text("a\0".into())), vec![b'a', 0, 0xff, 0, 1]);
        assert!(enc(Value::F64(-1.0)) < enc(Value::F64(-0.0)));
        assert!(enc(Value::F64(-0.0)) < enc(Value::F64(0.0)));
        assert!(enc(Value::F64(0.0)) < enc(Value::F64(f64::INFINITY)));
    }

    #[test]
    fn encode_errors() {
        assert_eq!(
            encode_key(&[Value::U64(1), Value::Null]),
            Err(KeyError::NullComponent { position: 1 })
        );
        assert_eq!(
            encode_key(&[Value::Bytes(vec![1; MAX_PRIMARY_KEY_LEN])]),
            Err(KeyError::TooLong {
                len: MAX_PRIMARY_KEY_LEN + 2
            })
        );
    }

    #[test]
    fn decode_errors() {
        use ColumnType::*;
        assert_eq!(
            decode_key([U64], &[0; 7]),
            Err(KeyError::Truncated { position: 0 })
        );
        assert_eq!(
            decode_key([Bool], &[2]),
            Err(KeyError::InvalidBool {
                position: 0,
                byte: 2
            })
        );
        assert_eq!(
            decode_key([Bool, Text], &[1, b'a', 0, 7]),
            Err(KeyError::InvalidEscape {
                position: 1,
                byte: 7
            })
        );
        assert_eq!(
            decode_key([Text], &[b'a', 0]),
            Err(KeyError::Truncated { position: 0 })
        );
        assert_eq!(
            decode_key([Text], b"a"),
            Err(KeyError::Truncated { position: 0 })
        );
        assert_eq!(
            decode_key([Text], &[0xff, 0, 1]),
            Err(KeyError::InvalidUtf8 { position: 0 })
        );
        assert_eq!(
            decode_key([Bool], &[1, 1]),
            Err(KeyError::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[1, 2]), Some(vec![1, 3]));
    }
}
