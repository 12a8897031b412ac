//! The umbrella error of the `aedb` API.

use std::path::PathBuf;

pub use aedb_actors::{CommitError, StartError};
pub use aedb_model::{ApplyError, LimitError, NameError, ReadError};

pub use crate::config::ConfigError;
pub use crate::lock::LockError;

/// Why an instance could not be opened. Nothing on disk was changed except, in the
/// development profile, a corrupt WAL tail that recovery was allowed to cut.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// Another instance holds the directory.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The data directory could not be created or read.
    #[error("cannot prepare data directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Recovery failed (corruption names the file and offset), or the actors could
    /// not start.
    #[error(transparent)]
    Recovery(#[from] StartError),
}

/// Any error of the convenience API: bad input, a failed commit, or a failed read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A project, scope, table or column name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A key, value or idempotency key breaks a size limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The commit did not succeed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The read did not succeed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl CommitErrorExt for CommitError {
    fn failed_assertion(&self) -> Option<u32> {
        match self {
            CommitError::Rejected(ApplyError::AssertionFailed { index, .. }) => Some(*index),
            CommitError::Rejected(ApplyError::AlreadySeen { original, .. }) => {
                match &original.outcome {
                    aedb_model::Outcome::Rejected(aedb_model::Rejection::AssertionFailed {
                        index,
                    }) => Some(*index),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Questions callers commonly ask of a [`CommitError`].
pub trait CommitErrorExt {
    /// The index of the top-level assertion that failed, whether it failed now or (for
    /// an idempotent retry) in the original commit.
    fn failed_assertion(&self) -> Option<u32>;
}
