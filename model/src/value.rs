//! Column types and cell values of tables.

use std::cmp::Ordering;
use std::fmt;

/// A point in time: signed microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// Wraps microseconds since the Unix epoch (negative is before 1970).
    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}us", self.0)
    }
}

/// The type of a table column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// `true` / `false`.
    Bool,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
    /// Unsigned 128-bit integer.
    U128,
    /// IEEE-754 double. Compared and keyed by its total order (`f64::total_cmp`).
    F64,
    /// UTF-8 text.
    Text,
    /// Raw bytes.
    Bytes,
    /// A [`Timestamp`].
    Timestamp,
}

impl ColumnType {
    /// Every column type, in tag order.
    pub const ALL: [ColumnType; 8] = [
        ColumnType::Bool,
        ColumnType::I64,
        ColumnType::U64,
        ColumnType::U128,
        ColumnType::F64,
        ColumnType::Text,
        ColumnType::Bytes,
        ColumnType::Timestamp,
    ];

    /// The stable one-byte tag used by the codecs (1..=8).
    pub const fn tag(self) -> u8 {
        match self {
            ColumnType::Bool => 1,
            ColumnType::I64 => 2,
            ColumnType::U64 => 3,
            ColumnType::U128 => 4,
            ColumnType::F64 => 5,
            ColumnType::Text => 6,
            ColumnType::Bytes => 7,
            ColumnType::Timestamp => 8,
        }
    }

    /// The type with the given codec tag.
    pub const fn from_tag(tag: u8) -> Option<ColumnType> {
        Some(match tag {
            1 => ColumnType::Bool,
            2 => ColumnType::I64,
            3 => ColumnType::U64,
            4 => ColumnType::U128,
            5 => ColumnType::F64,
            6 => ColumnType::Text,
            7 => ColumnType::Bytes,
            8 => ColumnType::Timestamp,
            _ => return None,
        })
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnType::Bool => "bool",
            ColumnType::I64 => "i64",
            ColumnType::U64 => "u64",
            ColumnType::U128 => "u128",
            ColumnType::F64 => "f64",
            ColumnType::Text => "text",
            ColumnType::Bytes => "bytes",
            ColumnType::Timestamp => "timestamp",
        })
    }
}

/// One cell of a table row.
///
/// Equality is exact: `F64` cells are equal when their bits are equal (so
/// `NaN == NaN` and `0.0 != -0.0`), which matches [`Value::compare`] and the
/// primary-key encoding.
#[derive(Clone, Debug)]
pub enum Value {
    /// SQL-style absence of a value; only allowed in nullable columns.
    Null,
    /// A `Bool` cell.
    Bool(bool),
    /// An `I64` cell.
    I64(i64),
    /// A `U64` cell.
    U64(u64),
    /// A `U128` cell.
    U128(u128),
    /// An `F64` cell.
    F64(f64),
    /// A `Text` cell.
    Text(String),
    /// A `Bytes` cell.
    Bytes(Vec<u8>),
    /// A `Timestamp` cell.
    Timestamp(Timestamp),
}

impl Value {
    /// The column type this value belongs to; `None` for [`Value::Null`].
    pub fn column_type(&self) -> Option<ColumnType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => ColumnType::Bool,
            Value::I64(_) => ColumnType::I64,
            Value::U64(_) => ColumnType::U64,
            Value::U128(_) => ColumnType::U128,
            Value::F64(_) => ColumnType::F64,
            Value::Text(_) => ColumnType::Text,
            Value::Bytes(_) => ColumnType::Bytes,
            Value::Timestamp(_) => ColumnType::Timestamp,
        })
    }

    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Orders two non-null values of the same type; `None` otherwise.
    ///
    /// `F64` uses `f64::total_cmp`; text and bytes compare byte-wise.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        Some(match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::I64(a), Value::I64(b)) => a.cmp(b),
            (Value::U64(a), Value::U64(b)) => a.cmp(b),
            (Value::U128(a), Value::U128(b)) => a.cmp(b),
            (Value::F64(a), Value::F64(b)) => a.total_cmp(b),
            (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            _ => return None,
        })
    }

    /// The byte length of a `Text` or `Bytes` payload (0 for fixed-width types).
    pub fn payload_len(&self) -> usize {
        match self {
            Value::Text(s) => s.len(),
            Value::Bytes(b) => b.len(),
            _ => 0,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            _ => self.compare(other) == Some(Ordering::Equal),
        }
    }
}

impl Eq for Value {}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::U128(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Text(v) => {
                let cut = v.char_indices().map(|(i, _)| i).nth(64).unwrap_or(v.len());
                write!(f, "{:?}", &v[..cut])?;
                if cut < v.len() {
                    f.write_str("…")?;
                }
                Ok(())
            }
            Value::Bytes(v) => {
                f.write_str("b\"")?;
                crate::kv::fmt_bytes(f, v, 64)?;
                f.write_str("\"")
            }
            Value::Timestamp(v) => write!(f, "{v}"),
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::I64(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::U64(v)
    }
}
impl From<u128> for Value {
    fn from(v: u128) -> Value {
        Value::U128(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::F64(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Bytes(v)
    }
}
impl From<Timestamp> for Value {
    fn from(v: Timestamp) -> Value {
        Value::Timestamp(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        for ty in ColumnType::ALL {
            assert_eq!(ColumnType::from_tag(ty.tag()), Some(ty));
        }
        assert_eq!(ColumnType::from_tag(0), None);
        assert_eq!(ColumnType::from_tag(9), None);
    }

    #[test]
    fn equality_is_exact_for_floats() {
        assert_eq!(Value::F64(f64::NAN), Value::F64(f64::NAN));
        assert_ne!(Value::F64(0.0), Value::F64(-0.0));
        assert_eq!(Value::Null, Value::Null);
        assert_ne!(Value::I64(1), Value::U64(1));
        assert_eq!(Value::I64(1).compare(&Value::U64(1)), None);
        assert_eq!(
            Value::F64(-0.0).compare(&Value::F64(0.0)),
            Some(Ordering::Less)
        );
    }

    #[test]
    fn display_is_short() {
        let long = Value::Text("é".repeat(100)).to_string();
        assert!(long.ends_with('…'));
        assert_eq!(Value::Bytes(vec![0, b'a']).to_string(), "b\"\\x00a\"");
    }
}
