//! Idempotency keys and the remembered outcome of the commit that first used one.

use std::borrow::Borrow;
use std::fmt;

use aedb_types::Lsn;

use crate::bytes::SmallBytes;
use crate::limits::{LimitError, MAX_IDEMPOTENCY_KEY_LEN, MAX_REJECTION_MESSAGE_LEN};

/// A caller-chosen key (1..=[`MAX_IDEMPOTENCY_KEY_LEN`] bytes) that makes a
/// commit safe to retry: a second commit with the same key is not applied and
/// gets the first one's outcome.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdempotencyKey(SmallBytes);

impl IdempotencyKey {
    /// Checks the length limits and wraps the bytes.
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<IdempotencyKey, LimitError> {
        let bytes = bytes.as_ref();
        match bytes.len() {
            0 => Err(LimitError::EmptyIdempotencyKey),
            len if len > MAX_IDEMPOTENCY_KEY_LEN => Err(LimitError::IdempotencyKeyTooLong { len }),
            _ => Ok(IdempotencyKey(SmallBytes::new(bytes))),
        }
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Borrow<[u8]> for IdempotencyKey {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::kv::fmt_bytes(f, self.0.as_bytes(), 64)
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdempotencyKey(\"")?;
        crate::kv::fmt_bytes(f, self.0.as_bytes(), 64)?;
        f.write_str("\")")
    }
}

/// The class of a recorded rejection other than a failed assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// An assertion was malformed (unknown namespace or table, wrong types).
    InvalidAssertion,
    /// A mutation named a project, scope, table or row that does not exist.
    NotFound,
    /// A mutation created something that already exists.
    AlreadyExists,
    /// A row or key did not fit the table schema.
    SchemaViolation,
    /// An insert hit an existing primary key.
    DuplicatePrimaryKey,
    /// A numeric add/sub overflowed.
    Overflow,
    /// A numeric add/sub underflowed.
    Underflow,
    /// A numeric operation found a stored value of the wrong width.
    WrongNumericWidth,
}

impl RejectionKind {
    /// The stable one-byte code used by the record codec.
    pub const fn code(self) -> u8 {
        match self {
            RejectionKind::InvalidAssertion => 1,
            RejectionKind::NotFound => 2,
            RejectionKind::AlreadyExists => 3,
            RejectionKind::SchemaViolation => 4,
            RejectionKind::DuplicatePrimaryKey => 5,
            RejectionKind::Overflow => 6,
            RejectionKind::Underflow => 7,
            RejectionKind::WrongNumericWidth => 8,
        }
    }

    /// The kind with the given codec code.
    pub const fn from_code(code: u8) -> Option<RejectionKind> {
        Some(match code {
            1 => RejectionKind::InvalidAssertion,
            2 => RejectionKind::NotFound,
            3 => RejectionKind::AlreadyExists,
            4 => RejectionKind::SchemaViolation,
            5 => RejectionKind::DuplicatePrimaryKey,
            6 => RejectionKind::Overflow,
            7 => RejectionKind::Underflow,
            8 => RejectionKind::WrongNumericWidth,
            _ => return None,
        })
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectionKind::InvalidAssertion => "invalid assertion",
            RejectionKind::NotFound => "not found",
            RejectionKind::AlreadyExists => "already exists",
            RejectionKind::SchemaViolation => "schema violation",
            RejectionKind::DuplicatePrimaryKey => "duplicate primary key",
            RejectionKind::Overflow => "overflow",
            RejectionKind::Underflow => "underflow",
            RejectionKind::WrongNumericWidth => "wrong numeric width",
        })
    }
}

/// A compact, durable description of why a commit was rejected.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The top-level assertion at `index` did not hold.
    AssertionFailed {
        /// Index into the transaction's assertions.
        index: u32,
    },
    /// Any other deterministic failure of the transaction.
    Failed {
        /// Its class.
        kind: RejectionKind,
        /// The error message (at most [`MAX_REJECTION_MESSAGE_LEN`] bytes).
        message: String,
    },
}

impl Rejection {
    /// A `Failed` rejection, cutting `message` to the stored maximum at a
    /// character boundary.
    pub fn failed(kind: RejectionKind, message: &str) -> Rejection {
        let mut cut = message.len().min(MAX_REJECTION_MESSAGE_LEN);
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        Rejection::Failed {
            kind,
            message: message[..cut].to_owned(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::AssertionFailed { index } => write!(f, "assertion {index} failed"),
            Rejection::Failed { kind, message } => write!(f, "{kind}: {message}"),
        }
    }
}

/// What happened to the commit that first used an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It committed (at the record's LSN).
    Committed,
    /// It was rejected, for this reason.
    Rejected(Rejection),
}

/// The remembered outcome of an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyRecord {
    /// The LSN of the record that stored the outcome (the commit's LSN when it
    /// committed).
    pub lsn: Lsn,
    /// The outcome.
    pub outcome: Outcome,
}

impl fmt::Display for IdempotencyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Committed => write!(f, "committed at lsn {}", self.lsn),
            Outcome::Rejected(r) => write!(f, "rejected at lsn {}: {r}", self.lsn),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_limits() {
        assert_eq!(
            IdempotencyKey::new(b""),
            Err(LimitError::EmptyIdempotencyKey)
        );
        assert!(IdempotencyKey::new(vec![7u8; MAX_IDEMPOTENCY_KEY_LEN]).is_ok());
        assert_eq!(
            IdempotencyKey::new(vec![7u8; MAX_IDEMPOTENCY_KEY_LEN + 1]),
            Err(LimitError::IdempotencyKeyTooLong {
                len: MAX_IDEMPOTENCY_KEY_LEN + 1
            })
        );
    }

    #[test]
    fn kind_codes_round_trip() {
        for code in 0..=u8::MAX {
            if let Some(k) = RejectionKind::from_code(code) {
                assert_eq!(k.code(), code);
            }
        }
        assert_eq!(RejectionKind::from_code(0), None);
    }

    #[test]
    fn failed_message_is_cut_at_char_boundary() {
        let long = "é".repeat(MAX_REJECTION_MESSAGE_LEN);
        let Rejection::Failed { message, .. } = Rejection::failed(RejectionKind::NotFound, &long)
        else {
            unreachable!("failed() builds Failed")
        };
        assert!(message.len() <= MAX_REJECTION_MESSAGE_LEN);
        assert!(message.len() >= MAX_REJECTION_MESSAGE_LEN - 1);
    }
}
