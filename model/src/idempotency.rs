//! Idempotency keys and the remembered outcome of the commit that first used one.

use std::borrow::Borrow;
use std::fmt;
use std::time::Duration;

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

/// The SHA-256 fingerprint of a request (a [`Transaction`](crate::Transaction)): what
/// tells a retry of the same request from another request reusing its idempotency
/// key. See [`Transaction::fingerprint`](crate::Transaction::fingerprint) for what it
/// covers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestFingerprint([u8; 32]);

impl RequestFingerprint {
    /// Wraps 32 digest bytes (as stored).
    pub const fn from_bytes(bytes: [u8; 32]) -> RequestFingerprint {
        RequestFingerprint(bytes)
    }

    /// The digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for RequestFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestFingerprint({self})")
    }
}

impl fmt::Display for RequestFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Which request first used an idempotency key, and when: stored with the key's
/// outcome (commit-record and key-space formats since version 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestStamp {
    /// The fingerprint of the transaction.
    pub fingerprint: RequestFingerprint,
    /// When the Sequencer sequenced it (milliseconds since the Unix epoch, the
    /// writer's clock). Time-based retention is measured from here.
    pub at_unix_ms: u64,
}

/// The remembered outcome of an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyRecord {
    /// The LSN of the record that stored the outcome (the commit's LSN when it
    /// committed).
    pub lsn: Lsn,
    /// The outcome.
    pub outcome: Outcome,
    /// The request that used the key and when; `None` for records written before
    /// format version 2 (fingerprint and time unknown: any retry replays the outcome,
    /// and only an LSN window can expire them).
    pub request: Option<RequestStamp>,
}

impl fmt::Display for IdempotencyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Committed => write!(f, "committed at lsn {}", self.lsn),
            Outcome::Rejected(r) => write!(f, "rejected at lsn {}: {r}", self.lsn),
        }
    }
}

/// How long idempotency records are honoured (and kept): by LSN count, by commit
/// time, or both (a record expires as soon as either window has passed); with
/// neither, forever.
///
/// A record written at LSN `l` at time `t` is **expired** for a commit at LSN `L`
/// sequenced at time `T` when `L - l > max_lsns` or `T - t > max_age` (times are the
/// writer's clock, stored in the records, so replay never reads the wall clock). An
/// expired key is a new key: a retry after expiry is applied as a new request, and
/// its record replaces the old one. Compaction physically drops expired records.
///
/// ```
/// use std::time::Duration;
/// use aedb_model::IdempotencyRetention;
/// let r = IdempotencyRetention::default();
/// assert_eq!(r.max_age, Some(Duration::from_secs(24 * 3600)));
/// assert_eq!(r.max_lsns, Some(10_000_000));
/// assert!(IdempotencyRetention::lsns(0).validate().is_err());
/// assert!(IdempotencyRetention::age(Duration::ZERO).validate().is_err());
/// assert!(IdempotencyRetention::forever().validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyRetention {
    /// Expire records more than this many LSNs older than the commit (at least 1).
    pub max_lsns: Option<u64>,
    /// Expire records whose commit time is more than this much older than the
    /// commit's (more than zero; millisecond resolution).
    pub max_age: Option<Duration>,
}

impl Default for IdempotencyRetention {
    /// 24 hours or 10 million LSNs, whichever passes first (see `docs/FORMAT.md`,
    /// "Idempotency records").
    fn default() -> IdempotencyRetention {
        IdempotencyRetention::DEFAULT
    }
}

/// An [`IdempotencyRetention`] that cannot work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    /// `max_lsns` of zero would expire every record before any retry.
    #[error("idempotency retention of 0 LSNs: use at least 1 (or no LSN limit)")]
    ZeroLsns,
    /// `max_age` of zero would expire every record before any retry. (Negative
    /// durations cannot be expressed: `Duration` is unsigned.)
    #[error("idempotency retention of zero time: use more than zero (or no time limit)")]
    ZeroAge,
}

impl IdempotencyRetention {
    /// The default: 24 hours or 10 million LSNs, whichever passes first.
    pub const DEFAULT: IdempotencyRetention = IdempotencyRetention {
        max_lsns: Some(10_000_000),
        max_age: Some(Duration::from_secs(24 * 3600)),
    };

    /// Records are honoured and kept forever (the behaviour before retention existed).
    pub const fn forever() -> IdempotencyRetention {
        IdempotencyRetention {
            max_lsns: None,
            max_age: None,
        }
    }

    /// Records expire `lsns` LSNs after they were written (no time limit).
    pub const fn lsns(lsns: u64) -> IdempotencyRetention {
        IdempotencyRetention {
            max_lsns: Some(lsns),
            max_age: None,
        }
    }

    /// Records expire `age` after their commit time (no LSN limit).
    pub const fn age(age: Duration) -> IdempotencyRetention {
        IdempotencyRetention {
            max_lsns: None,
            max_age: Some(age),
        }
    }

    /// Checks the limits: zero windows are refused.
    ///
    /// # Errors
    /// [`RetentionError`] naming the zero limit.
    pub fn validate(&self) -> Result<(), RetentionError> {
        if self.max_lsns == Some(0) {
            return Err(RetentionError::ZeroLsns);
        }
        if self.max_age.is_some_and(|a| a.is_zero()) {
            return Err(RetentionError::ZeroAge);
        }
        Ok(())
    }

    /// The time window in milliseconds (saturating).
    fn max_age_ms(&self) -> Option<u64> {
        self.max_age
            .map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX))
    }

    /// Whether a record written at `written` is past this window by LSN for a commit
    /// at `lsn` (more than `max_lsns` LSNs after it).
    pub fn expired_by_lsn(&self, written: Lsn, lsn: Lsn) -> bool {
        self.max_lsns
            .is_some_and(|max| lsn.get().saturating_sub(written.get()) > max)
    }

    /// Whether `record` is past this window for a commit at `lsn` sequenced at
    /// `now_unix_ms`. Records without a stamp (format version 1) expire by LSN only.
    pub fn expired(&self, record: &IdempotencyRecord, lsn: Lsn, now_unix_ms: u64) -> bool {
        let by_lsn = self.expired_by_lsn(record.lsn, lsn);
        let by_age = match (self.max_age_ms(), &record.request) {
            (Some(max), Some(stamp)) => now_unix_ms.saturating_sub(stamp.at_unix_ms) > max,
            _ => false,
        };
        by_lsn || by_age
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
