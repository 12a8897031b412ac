//! [`WalError`]: errors from the writer and the WAL directory operations.

use std::io;
use std::path::PathBuf;

use aedb_types::{DatabaseId, Lsn};

use crate::frame::FrameKind;
use crate::seal::SealError;
use crate::segment::{SegmentHeaderError, SegmentSeq};

/// An error from [`crate::WalWriter`] or a WAL directory operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file-system operation failed. If it came from the writer's write or sync path,
    /// the writer is now fail-stopped: reopen through [`crate::recover`].
    #[error("WAL I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// The operation that failed (e.g. `"fdatasync"`, `"write batch"`).
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The underlying error (possibly injected, see [`crate::FaultInjector::injected_point`]).
        #[source]
        source: io::Error,
    },
    /// An earlier write or fsync failed, so the writer refuses all further work: the
    /// kernel may have dropped dirty pages, and retrying could acknowledge lost data.
    /// Recover the log from disk with [`crate::recover`] to continue.
    #[error("WAL writer is fail-stopped after an earlier I/O error; recover the log to continue")]
    FailStopped,
    /// `append` was given an LSN that does not directly follow the previous one.
    #[error("LSN {got} appended out of order: the WAL expects {expected} next (LSNs are dense)")]
    LsnOutOfOrder {
        /// The LSN the WAL requires next.
        expected: Lsn,
        /// The LSN that was given.
        got: Lsn,
    },
    /// `append` was given a payload above [`crate::MAX_PAYLOAD_LEN`]; split the record.
    #[error("frame payload of {len} bytes exceeds the {max}-byte maximum")]
    PayloadTooLarge {
        /// The payload length given.
        len: usize,
        /// The maximum.
        max: u32,
    },
    /// `append` was given a WAL-internal frame kind (such as `SegmentEnd`).
    #[error("frame kind {0:?} is reserved for the WAL itself and cannot be appended")]
    ReservedFrameKind(FrameKind),
    /// [`crate::WalConfig::segment_size`] is too small to hold a header, a frame and a trailer.
    #[error("segment_size {size} is below the minimum of {min} bytes")]
    SegmentSizeTooSmall {
        /// The configured size.
        size: u64,
        /// The minimum ([`crate::MIN_SEGMENT_SIZE`]).
        min: u64,
    },
    /// `WalWriter::create*` found existing segments: open the log with [`crate::recover`].
    #[error("WAL directory {} already holds segments; open it with recover()", dir.display())]
    AlreadyExists {
        /// The WAL directory.
        dir: PathBuf,
    },
    /// A segment header could not be decoded (outside recovery, e.g. while retiring).
    #[error("bad header in WAL segment {}: {source}", path.display())]
    BadHeader {
        /// The segment file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: SegmentHeaderError,
    },
    /// The segment sequence numbers ran out (2^64 segments); unreachable in practice.
    #[error("segment sequence number overflow after segment {0}")]
    SequenceExhausted(SegmentSeq),
    /// No nonce could be drawn for a sealed batch. Nothing was written and the writer is
    /// not fail-stopped: the batch stays buffered and `flush` may be retried.
    #[error("could not draw a nonce for a sealed WAL batch (nothing was written): {source}")]
    Nonce {
        /// The error from the [`crate::NonceSource`].
        #[source]
        source: io::Error,
    },
    /// A batch could not be sealed (nothing was written; the writer is not fail-stopped).
    #[error("could not seal a WAL batch: {0}")]
    Seal(#[from] SealError),
    /// [`crate::WalConfig::cipher`] and [`crate::WalConfig::keyring`] name different
    /// databases; batches are bound to one database id.
    #[error("WAL cipher is bound to database {cipher} but the keyring to {keyring}")]
    DatabaseMismatch {
        /// The cipher's database id.
        cipher: DatabaseId,
        /// The keyring's database id.
        keyring: DatabaseId,
    },
}

impl WalError {
    /// Builds an [`WalError::Io`].
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> WalError {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
