//! Why an offline operation (verify, check, inspect, audit export of a stopped
//! directory) could not run: [`OfflineError`] and its integrity causes.

use std::path::PathBuf;

use aedb_actors::FrameReplayError;
use aedb_manifest::ManifestError;
use aedb_types::Lsn;

/// Why an offline operation could not run at all (the
/// [`Error::Offline`](super::Error::Offline) kind; integrity failures are reported as
/// failed [`Check`](crate::offline::Check)s or [`OfflineError::Integrity`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfflineError {
    /// A live instance holds the directory.
    #[error("{0} is held by a running aedb instance (LOCK is held); stop it or use its API")]
    Locked(PathBuf),
    /// The directory holds no manifest.
    #[error("{0} holds no MANIFEST: not an aedb data directory")]
    NotADatabase(PathBuf),
    /// An integrity failure.
    #[error(transparent)]
    Integrity(Box<IntegrityFailure>),
    /// A key could not be derived.
    #[error("key derivation failed: {0}")]
    Key(#[from] aedb_keys::KeyError),
    /// A checkpoint file did not open (unknown or retired key epoch, wrong key,
    /// failed authentication, another database, …).
    #[error(transparent)]
    Checkpoint(#[from] aedb_checkpoint::CheckpointError),
    /// A file-system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What failed to verify in a data directory (the cause of [`OfflineError::Integrity`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityFailure {
    /// The manifest does not verify.
    #[error("manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// No key candidate was available for the manifest.
    #[error("manifest: no key candidates")]
    NoManifestKey,
    /// A checkpoint's payload does not decode.
    #[error("{}: {source}", file.display())]
    Snapshot {
        /// The checkpoint file.
        file: PathBuf,
        /// Why.
        source: aedb_model::DecodeError,
    },
    /// Checkpoints are recorded but none authenticates.
    #[error("no checkpoint authenticates: {}", failures.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoCheckpoint {
        /// Why each one failed, newest first.
        failures: Vec<aedb_actors::CheckpointLoadError>,
    },
    /// The WAL does not verify.
    #[error("WAL: {0}")]
    Wal(#[from] aedb_wal::RecoverError<FrameReplayError>),
    /// The WAL ends before the checkpoint it should continue.
    #[error("WAL ends at lsn {wal_last} behind the checkpoint at {checkpoint}")]
    WalBehindCheckpoint {
        /// Last LSN in the WAL.
        wal_last: Lsn,
        /// The checkpoint's LSN.
        checkpoint: Lsn,
    },
    /// A sealed segment's hash differs from the manifest's record.
    #[error("{}: sealed segment hash differs from the manifest's record", path.display())]
    SegmentMismatch {
        /// The segment.
        path: PathBuf,
    },
    /// An audit table does not read or its chain is broken.
    #[error(transparent)]
    Audit(#[from] aedb_actors::audit::AuditChainError),
    /// The WAL directory does not list.
    #[error("WAL directory: {0}")]
    WalListing(#[from] aedb_wal::WalError),
    /// The checkpoint directory does not list.
    #[error(transparent)]
    CheckpointListing(aedb_checkpoint::CheckpointError),
}

impl From<IntegrityFailure> for OfflineError {
    fn from(e: IntegrityFailure) -> OfflineError {
        OfflineError::Integrity(Box::new(e))
    }
}
