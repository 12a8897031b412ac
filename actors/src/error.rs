//! Errors of the commit pipeline.

use std::sync::Arc;

use aedb_model::{ApplyError, DecodeError, ReplayError};
use aedb_types::Lsn;
use aedb_wal::{FrameKind, RecoverError, WalError};

/// Why a commit (or DDL statement) did not succeed. Nothing it asked for is visible.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CommitError {
    /// The transaction was rejected by the data model: a failed assertion (with its
    /// index), a schema or limit violation, a missing namespace, an overflow...
    #[error(transparent)]
    Rejected(#[from] ApplyError),
    /// The transaction's commit record is larger than one WAL frame can carry (see
    /// [`aedb_wal::WalConfig::max_record_len`]: 64 MiB for plaintext logs, 63 bytes less
    /// when the WAL is sealed). Nothing was applied and no LSN was used; the instance
    /// goes on committing. Split the transaction into smaller ones.
    #[error(
        "the transaction's commit record is {len} bytes; the per-transaction limit is {max} bytes: split it into smaller transactions"
    )]
    TooLarge {
        /// Encoded size of the commit record.
        len: usize,
        /// The limit for this instance.
        max: usize,
    },
    /// The sequencer's mailbox is full and the caller asked not to wait
    /// (`try_commit`), or the commit waited out a write stall for `max_stall` while
    /// flushes or compactions kept failing (a full disk: see the checkpoint failure
    /// metrics). Nothing was applied. Retry with backoff, or use `commit`, which waits.
    #[error("the commit queue is full or storage is stalled; retry with backoff")]
    Busy,
    /// Writing or syncing this commit's WAL batch failed, and the WAL is now
    /// fail-stopped: reopen the instance. The commit was not published and was not
    /// acknowledged, but its outcome is **in doubt**: when `fdatasync` fails after the
    /// write succeeded, the kernel may still have persisted the bytes, and recovery
    /// will then replay the commit. Retry with the same idempotency key after reopening
    /// to learn the outcome without applying twice.
    #[error("WAL write or sync failed; the commit's outcome is in doubt until reopen: {0}")]
    Wal(Arc<WalError>),
    /// An earlier WAL or manifest write failure fail-stopped the instance; it accepts
    /// no more commits. Reopen it to recover the last durable state.
    #[error("the instance is fail-stopped after an earlier WAL or manifest I/O error; reopen it")]
    FailStopped,
    /// The instance is shut down.
    #[error("the instance is shut down")]
    Closed,
    /// A secure instance refused the caller (anonymous, or lacking the permission).
    /// Nothing was sequenced.
    #[error(transparent)]
    Access(#[from] aedb_authz::AccessError),
    /// Writes are frozen (`freeze_writes_as`, for example during an incident): nothing
    /// was applied. Reads, backups and checks go on; retry once an admin has lifted the
    /// freeze (`unfreeze_writes_as`).
    #[error("writes are frozen by an administrator; retry after the freeze is lifted")]
    Frozen,
    /// The commit admission rate limit is exhausted (the global, project or caller
    /// bucket; see `AedbConfig::commit_rate_limits`): nothing was sequenced. A waiting
    /// commit waited as long as its bound allowed first.
    #[error("the commit rate limit is exhausted; retry in {retry_after:?}")]
    RateLimited {
        /// When a retry would likely be admitted.
        retry_after: std::time::Duration,
    },
    /// The commit's deadline passed before the Sequencer took it: nothing was applied.
    /// (A commit sequenced before its deadline runs to its finality.)
    #[error("the commit's deadline passed before it was sequenced; nothing was applied")]
    Timeout,
}

/// Why the pipeline could not start (recovery failed).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The WAL is corrupt, unreadable, or could not be repaired.
    #[error(transparent)]
    Wal(#[from] RecoverError<FrameReplayError>),
    /// The manifest is missing while WAL segments or checkpoints exist (deleted or
    /// moved): refusing to guess which files belong to the database.
    #[error(
        "{path} is missing but the directory holds WAL segments or checkpoints; restore it from a backup"
    )]
    MissingManifest {
        /// Where the manifest should be.
        path: std::path::PathBuf,
    },
    /// The manifest failed verification (edited, reordered, truncated, wrong key).
    #[error(transparent)]
    Manifest(#[from] aedb_manifest::ManifestError),
    /// A key could not be derived or a recorded master key id is invalid.
    #[error("key error: {0}")]
    Key(Arc<aedb_keys::KeyError>),
    /// A checkpoint file could not be listed or removed.
    #[error(transparent)]
    Checkpoint(#[from] aedb_checkpoint::CheckpointError),
    /// The manifest records no key epoch.
    #[error("the manifest records no key epoch")]
    NoKeyEpoch,
    /// Checkpoints are recorded but none authenticates and decodes.
    #[error("no recorded checkpoint can be used: {}", join(failures))]
    NoUsableCheckpoint {
        /// Why each one failed, newest first.
        failures: Vec<CheckpointLoadError>,
    },
    /// The WAL ends before the checkpoint it should continue.
    #[error(
        "the WAL ends at lsn {wal_last}, before the checkpoint at lsn {checkpoint}: segments are missing"
    )]
    WalBehindCheckpoint {
        /// Last LSN in the WAL.
        wal_last: Lsn,
        /// The checkpoint's LSN.
        checkpoint: Lsn,
    },
    /// A sealed segment's hash differs from the one the manifest recorded (swapped or
    /// replaced segment).
    #[error("WAL segment {} does not match the hash the manifest recorded for it", path.display())]
    SegmentMismatch {
        /// The segment.
        path: std::path::PathBuf,
    },
    /// A WAL segment the manifest records (or the successor of the newest recorded
    /// one) is missing: deleted or moved.
    #[error("WAL segment {} is missing: the manifest records it (or its predecessor); restore it from a backup", path.display())]
    SegmentMissing {
        /// Where the segment should be.
        path: std::path::PathBuf,
    },
    /// The WAL directory could not be listed.
    #[error("cannot list the WAL directory: {0}")]
    WalListing(#[source] aedb_wal::WalError),
    /// The operating system's random source failed (a new database needs a random id).
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    /// An actor's thread could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why one checkpoint the manifest records (or a backup lists) cannot be used. Each
/// variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointLoadError {
    /// It did not open: missing, unknown or retired key epoch, wrong key, failed
    /// authentication, another database.
    #[error("{}: {source}", path.display())]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: aedb_checkpoint::CheckpointError,
    },
    /// It authenticates, but its SHA-256 is not the one recorded for it.
    #[error("{}: file hash differs from the manifest's record", path.display())]
    HashMismatch {
        /// The file.
        path: std::path::PathBuf,
    },
    /// Its snapshot does not decode (or a row breaks its schema).
    #[error("{}: {source}", path.display())]
    Decode {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: aedb_model::DecodeError,
    },
    /// Its snapshot is at another LSN than the one recorded for it.
    #[error("{}: snapshot is at lsn {found} but the manifest records {recorded}", path.display())]
    LsnMismatch {
        /// The file.
        path: std::path::PathBuf,
        /// The snapshot's LSN.
        found: Lsn,
        /// The recorded LSN.
        recorded: Lsn,
    },
    /// A run file authenticates but is not the one the manifest records.
    #[error("{}: run file {what} differs from the manifest's record", path.display())]
    RunMismatch {
        /// The file.
        path: std::path::PathBuf,
        /// What differs.
        what: &'static str,
    },
    /// The state over the runs cannot be read (its catalog does not decode).
    #[error("the state over the run files is unreadable: {0}")]
    Unreadable(aedb_model::ReadError),
}

/// The failures, one after the other.
pub(crate) fn join(failures: &[CheckpointLoadError]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A WAL frame that verified (CRC, chain) but cannot be replayed into the state.
#[derive(Debug, thiserror::Error)]
pub enum FrameReplayError {
    /// The payload is not a valid commit record.
    #[error("WAL frame at lsn {lsn} does not decode as a commit record: {source}")]
    Decode {
        /// The frame's LSN.
        lsn: Lsn,
        /// The decoder's complaint.
        source: DecodeError,
    },
    /// The record does not apply to the state rebuilt so far.
    #[error("WAL frame at lsn {lsn} does not apply to the recovered state: {source}")]
    Replay {
        /// The frame's LSN.
        lsn: Lsn,
        /// Why.
        source: ReplayError,
    },
    /// The WAL skips LSNs after the checkpoint (a segment is missing).
    #[error("WAL gap: expected lsn {expected} after the checkpoint, found {found}")]
    Gap {
        /// The LSN that should come next.
        expected: Lsn,
        /// The LSN found.
        found: Lsn,
    },
    /// A frame kind this build cannot replay (for example a sealed batch without a key).
    #[error("WAL frame at lsn {lsn} has kind {kind:?}, which this instance cannot replay")]
    UnsupportedKind {
        /// The frame's LSN.
        lsn: Lsn,
        /// Its kind.
        kind: FrameKind,
    },
}

impl From<aedb_keys::KeyError> for StartError {
    fn from(e: aedb_keys::KeyError) -> StartError {
        StartError::Key(Arc::new(e))
    }
}
