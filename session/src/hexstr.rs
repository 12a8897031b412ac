//! Lowercase hex text for the fixed-size identifiers ([`crate::ServerProfileId`],
//! [`crate::ServerEnvHash`], [`crate::ChannelId`]).

use std::fmt;

/// Why hex text was not a valid identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseHexError {
    /// Not exactly the expected number of hex digits.
    #[error("expected {expected} hex digits, got {found} characters")]
    WrongLength {
        /// Digits expected (twice the byte length).
        expected: usize,
        /// Characters given.
        found: usize,
    },
    /// A character that is not a hex digit (upper or lower case).
    #[error("character {at} is not a hex digit")]
    InvalidDigit {
        /// Its byte offset in the text.
        at: usize,
    },
}

/// Writes `bytes` as lowercase hex.
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Parses exactly `2 * N` hex digits (either case).
pub(crate) fn parse_hex<const N: usize>(text: &str) -> Result<[u8; N], ParseHexError> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return Err(ParseHexError::WrongLength {
            expected: 2 * N,
            found: text.chars().count(),
        });
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let hi = nibble(pair[0]).ok_or(ParseHexError::InvalidDigit { at: 2 * i })?;
        let lo = nibble(pair[1]).ok_or(ParseHexError::InvalidDigit { at: 2 * i + 1 })?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_cases_and_reports_errors() {
        assert_eq!(parse_hex::<2>("0aFf"), Ok([0x0a, 0xff]));
        assert_eq!(
            parse_hex::<2>("0af"),
            Err(ParseHexError::WrongLength {
                expected: 4,
                found: 3
            })
        );
        assert_eq!(
            parse_hex::<2>("0ag0"),
            Err(ParseHexError::InvalidDigit { at: 2 })
        );
        // Multi-byte characters never panic (length is checked in bytes, then by digit).
        assert!(parse_hex::<2>("é0a").is_err());
        assert!(parse_hex::<1>("é").is_err());
    }
}
