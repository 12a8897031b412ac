//! The one decode-error type every hand-written binary decoder in aedb returns.
//!
//! A [`DecodeError`] names what was being decoded (its `context`, e.g. `"policy
//! record"`), the byte offset where decoding stopped, and a [`DecodeErrorKind`] saying
//! what is wrong there. Structural problems (short input, bad lengths, unknown tags,
//! trailing bytes) are shared variants; a decoder whose fields carry their own
//! validation (names, caller ids, schemas) reports those through the `D` parameter and
//! [`DecodeErrorKind::Domain`]. Decoders without such fields use the default,
//! [`Infallible`].

use std::convert::Infallible;
use std::fmt;

/// What is wrong with the bytes, without the position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeErrorKind<D = Infallible> {
    /// The input ends early (a truncated encoding).
    UnexpectedEnd {
        /// Bytes needed.
        needed: u64,
        /// Bytes left.
        remaining: usize,
    },
    /// The magic bytes do not match: not this kind of file at all.
    BadMagic,
    /// The format version is not one this build reads.
    UnsupportedVersion {
        /// Version found.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },
    /// An enum tag has no meaning.
    UnknownTag {
        /// Which enum.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A flags or boolean byte has bits this version does not define.
    InvalidByte {
        /// Which field.
        what: &'static str,
        /// The byte found.
        byte: u8,
    },
    /// A string is not UTF-8.
    InvalidUtf8 {
        /// Which field.
        what: &'static str,
    },
    /// A length prefix exceeds the field's limit.
    LengthTooLarge {
        /// Which field.
        what: &'static str,
        /// The length found.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A count exceeds its limit or the number of items the remaining input could hold.
    CountTooLarge {
        /// Which list.
        what: &'static str,
        /// The count found.
        count: u64,
        /// Bytes left.
        remaining: usize,
    },
    /// Bytes remain after a complete encoding.
    TrailingBytes {
        /// Number of extra bytes.
        count: usize,
    },
    /// A field holds a value its type or the format forbids.
    Invalid {
        /// What is wrong.
        what: &'static str,
    },
    /// A field failed the decoder's own validation (an invalid name, caller, schema...).
    Domain(D),
}

impl<D: fmt::Display> fmt::Display for DecodeErrorKind<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeErrorKind::UnexpectedEnd { needed, remaining } => {
                write!(
                    f,
                    "input ends early: need {needed} more bytes, {remaining} left"
                )
            }
            DecodeErrorKind::BadMagic => write!(f, "bad magic bytes"),
            DecodeErrorKind::UnsupportedVersion { found, supported } => write!(
                f,
                "format version {found} is not supported (this build reads {supported})"
            ),
            DecodeErrorKind::UnknownTag { what, tag } => write!(f, "unknown {what} tag {tag}"),
            DecodeErrorKind::InvalidByte { what, byte } => {
                write!(f, "invalid {what} byte {byte:#04x}")
            }
            DecodeErrorKind::InvalidUtf8 { what } => write!(f, "{what} is not valid UTF-8"),
            DecodeErrorKind::LengthTooLarge { what, len, max } => {
                write!(f, "{what} length {len} exceeds the maximum {max}")
            }
            DecodeErrorKind::CountTooLarge {
                what,
                count,
                remaining,
            } => write!(
                f,
                "{what} count {count} exceeds what {remaining} remaining bytes can hold"
            ),
            DecodeErrorKind::TrailingBytes { count } => {
                write!(f, "{count} bytes remain after the end")
            }
            DecodeErrorKind::Invalid { what } => write!(f, "invalid {what}"),
            DecodeErrorKind::Domain(d) => d.fmt(f),
        }
    }
}

impl<D: std::error::Error + 'static> std::error::Error for DecodeErrorKind<D> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeErrorKind::Domain(d) => d.source(),
            _ => None,
        }
    }
}

/// Bytes that are not a valid encoding: what was being decoded, where decoding
/// stopped, and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError<D = Infallible> {
    /// What was being decoded (`"commit record"`, `"backup manifest"`, ...).
    pub context: &'static str,
    /// Byte offset into the input where the problem was found.
    pub offset: usize,
    /// What is wrong.
    pub kind: DecodeErrorKind<D>,
}

impl<D> DecodeError<D> {
    /// An error at `offset` while decoding `context`.
    pub const fn new(context: &'static str, offset: usize, kind: DecodeErrorKind<D>) -> Self {
        DecodeError {
            context,
            offset,
            kind,
        }
    }

    /// The same error with its offset moved by `by` (an inner encoding's error
    /// reported against the outer input it is embedded in).
    pub fn shifted(mut self, by: usize) -> Self {
        self.offset = self.offset.saturating_add(by);
        self
    }
}

impl<D: fmt::Display> fmt::Display for DecodeError<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} decode failed at byte {}: {}",
            self.context, self.offset, self.kind
        )
    }
}

impl<D: std::error::Error + 'static> std::error::Error for DecodeError<D> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            DecodeErrorKind::Domain(d) => Some(d),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_context_offset_and_problem() {
        let e: DecodeError = DecodeError::new(
            "backup manifest",
            12,
            DecodeErrorKind::UnknownTag {
                what: "backup kind",
                tag: 9,
            },
        );
        assert_eq!(
            e.to_string(),
            "backup manifest decode failed at byte 12: unknown backup kind tag 9"
        );
        assert_eq!(e.shifted(3).offset, 15);
    }
}
