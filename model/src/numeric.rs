//! Numeric KV values: `u64`, `i64` and `u128` stored as fixed-width big-endian
//! bytes, and the checked arithmetic behind atomic add/sub.
//!
//! Encoding: `u64` and `i64` are 8 bytes, `u128` is 16 bytes, all big-endian;
//! `i64` is two's complement. Big-endian keeps the stored bytes readable in a hex
//! dump. A missing key counts as zero; a stored value of the wrong width is an
//! error, never silently reinterpreted.

use std::cmp::Ordering;
use std::fmt;

use crate::kv::KvValue;

/// The type of a numeric KV value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NumericType {
    /// Unsigned 64-bit, 8 bytes big-endian.
    U64,
    /// Signed 64-bit, 8 bytes big-endian two's complement.
    I64,
    /// Unsigned 128-bit, 16 bytes big-endian.
    U128,
}

impl NumericType {
    /// Width of the stored encoding in bytes.
    pub const fn width(self) -> usize {
        match self {
            NumericType::U64 | NumericType::I64 => 8,
            NumericType::U128 => 16,
        }
    }

    /// Zero of this type.
    pub const fn zero(self) -> Numeric {
        match self {
            NumericType::U64 => Numeric::U64(0),
            NumericType::I64 => Numeric::I64(0),
            NumericType::U128 => Numeric::U128(0),
        }
    }
}

impl fmt::Display for NumericType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NumericType::U64 => "u64",
            NumericType::I64 => "i64",
            NumericType::U128 => "u128",
        })
    }
}

/// A typed numeric value (or delta) for numeric KV operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Numeric {
    /// An unsigned 64-bit number.
    U64(u64),
    /// A signed 64-bit number.
    I64(i64),
    /// An unsigned 128-bit number.
    U128(u128),
}

/// A stored value does not have the width its numeric type needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stored value is {actual} bytes but a {ty} is {expected} bytes big-endian")]
pub struct WrongWidth {
    /// The numeric type the operation expected.
    pub ty: NumericType,
    /// Its width.
    pub expected: usize,
    /// The stored length.
    pub actual: usize,
}

/// Result of checked arithmetic that left the type's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfRange {
    /// Above the type's maximum.
    Overflow,
    /// Below the type's minimum.
    Underflow,
}

impl Numeric {
    /// The type of this number.
    pub const fn ty(self) -> NumericType {
        match self {
            Numeric::U64(_) => NumericType::U64,
            Numeric::I64(_) => NumericType::I64,
            Numeric::U128(_) => NumericType::U128,
        }
    }

    /// Appends the fixed-width big-endian encoding.
    pub fn write_be(self, out: &mut Vec<u8>) {
        match self {
            Numeric::U64(v) => out.extend_from_slice(&v.to_be_bytes()),
            Numeric::I64(v) => out.extend_from_slice(&v.to_be_bytes()),
            Numeric::U128(v) => out.extend_from_slice(&v.to_be_bytes()),
        }
    }

    /// The fixed-width big-endian encoding as a KV value.
    pub fn to_value(self) -> KvValue {
        let mut out = Vec::with_capacity(self.ty().width());
        self.write_be(&mut out);
        // At most 16 bytes: far below the value limit.
        KvValue::from_small(out)
    }

    /// Decodes a stored value of type `ty`; `None` (a missing key) is zero.
    pub fn decode(ty: NumericType, stored: Option<&[u8]>) -> Result<Numeric, WrongWidth> {
        let Some(bytes) = stored else {
            return Ok(ty.zero());
        };
        let wrong = || WrongWidth {
            ty,
            expected: ty.width(),
            actual: bytes.len(),
        };
        Ok(match ty {
            NumericType::U64 => {
                Numeric::U64(u64::from_be_bytes(bytes.try_into().map_err(|_| wrong())?))
            }
            NumericType::I64 => {
                Numeric::I64(i64::from_be_bytes(bytes.try_into().map_err(|_| wrong())?))
            }
            NumericType::U128 => {
                Numeric::U128(u128::from_be_bytes(bytes.try_into().map_err(|_| wrong())?))
            }
        })
    }

    /// `self + delta` (or `self - delta` when `subtract`), both of the same type.
    ///
    /// Returns `None` when the types differ, `Some(Err(..))` when the result
    /// leaves the type's range.
    pub fn checked_apply(
        self,
        delta: Numeric,
        subtract: bool,
    ) -> Option<Result<Numeric, OutOfRange>> {
        // For signed types the direction of the failure depends on the delta's sign.
        let grows = |negative_delta: bool| negative_delta == subtract;
        Some(match (self, delta) {
            (Numeric::U64(a), Numeric::U64(d)) => {
                let r = if subtract {
                    a.checked_sub(d)
                } else {
                    a.checked_add(d)
                };
                r.map(Numeric::U64).ok_or(if subtract {
                    OutOfRange::Underflow
                } else {
                    OutOfRange::Overflow
                })
            }
            (Numeric::U128(a), Numeric::U128(d)) => {
                let r = if subtract {
                    a.checked_sub(d)
                } else {
                    a.checked_add(d)
                };
                r.map(Numeric::U128).ok_or(if subtract {
                    OutOfRange::Underflow
                } else {
                    OutOfRange::Overflow
                })
            }
            (Numeric::I64(a), Numeric::I64(d)) => {
                let r = if subtract {
                    a.checked_sub(d)
                } else {
                    a.checked_add(d)
                };
                r.map(Numeric::I64).ok_or(if grows(d < 0) {
                    OutOfRange::Overflow
                } else {
                    OutOfRange::Underflow
                })
            }
            _ => return None,
        })
    }

    /// Compares two numbers of the same type; `None` when the types differ.
    pub fn compare(self, other: Numeric) -> Option<Ordering> {
        match (self, other) {
            (Numeric::U64(a), Numeric::U64(b)) => Some(a.cmp(&b)),
            (Numeric::I64(a), Numeric::I64(b)) => Some(a.cmp(&b)),
            (Numeric::U128(a), Numeric::U128(b)) => Some(a.cmp(&b)),
            _ => None,
        }
    }
}

impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Numeric::U64(v) => write!(f, "{v}u64"),
            Numeric::I64(v) => write!(f, "{v}i64"),
            Numeric::U128(v) => write!(f, "{v}u128"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_big_endian() {
        for n in [
            Numeric::U64(0x0102_0304_0506_0708),
            Numeric::I64(-2),
            Numeric::U128(u128::MAX - 5),
        ] {
            let v = n.to_value();
            assert_eq!(v.len(), n.ty().width());
            assert_eq!(Numeric::decode(n.ty(), Some(&v)), Ok(n));
        }
        assert_eq!(
            Numeric::U64(0x0102).to_value().as_bytes(),
            &[0, 0, 0, 0, 0, 0, 1, 2]
        );
        assert_eq!(Numeric::I64(-1).to_value().as_bytes(), &[0xff; 8]);
    }

    #[test]
    fn missing_is_zero_and_wrong_width_is_typed() {
        assert_eq!(
            Numeric::decode(NumericType::U128, None),
            Ok(Numeric::U128(0))
        );
        assert_eq!(
            Numeric::decode(NumericType::U64, Some(&[1, 2, 3])),
            Err(WrongWidth {
                ty: NumericType::U64,
                expected: 8,
                actual: 3
            })
        );
        assert!(Numeric::decode(NumericType::U128, Some(&[0; 8])).is_err());
    }

    #[test]
    fn arithmetic_bounds() {
        use OutOfRange::*;
        let add = |a: Numeric, d: Numeric| a.checked_apply(d, false).unwrap();
        let sub = |a: Numeric, d: Numeric| a.checked_apply(d, true).unwrap();
        assert_eq!(add(Numeric::U64(u64::MAX), Numeric::U64(1)), Err(Overflow));
        assert_eq!(sub(Numeric::U64(0), Numeric::U64(1)), Err(Underflow));
        assert_eq!(
            add(Numeric::U128(u128::MAX), Numeric::U128(1)),
            Err(Overflow)
        );
        assert_eq!(sub(Numeric::U128(1), Numeric::U128(2)), Err(Underflow));
        assert_eq!(add(Numeric::I64(i64::MAX), Numeric::I64(1)), Err(Overflow));
        assert_eq!(
            add(Numeric::I64(i64::MIN), Numeric::I64(-1)),
            Err(Underflow)
        );
        assert_eq!(sub(Numeric::I64(i64::MIN), Numeric::I64(1)), Err(Underflow));
        assert_eq!(sub(Numeric::I64(i64::MAX), Numeric::I64(-1)), Err(Overflow));
        assert_eq!(sub(Numeric::I64(0), Numeric::I64(5)), Ok(Numeric::I64(-5)));
        assert_eq!(Numeric::U64(1).checked_apply(Numeric::I64(1), false), None);
    }
}
