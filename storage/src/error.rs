//! Why a storage operation failed.

use std::path::PathBuf;
use std::sync::Arc;

use aedb_checkpoint::CheckpointError;

/// Why a read, flush or compaction failed. Reads fail only when a run file cannot be
/// read or does not authenticate: the data is never silently wrong.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A run file (or one of its blocks) could not be read, decoded or authenticated.
    #[error("run file {}: {source}", .path.display())]
    Run {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: Arc<CheckpointError>,
    },
    /// Writing a new run file (a flush or a compaction's output) failed; the
    /// unfinished file was removed.
    #[error("writing a run file failed: {0}")]
    Write(#[source] Arc<CheckpointError>),
    /// A run's contents contradict the version that lists it (wrong order or LSNs).
    #[error("run file {}: {what}", .path.display())]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

impl StorageError {
    pub(crate) fn run(path: &std::path::Path, source: CheckpointError) -> StorageError {
        StorageError::Run {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }
}
