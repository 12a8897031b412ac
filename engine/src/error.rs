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
    /// The directory holds a secure database (it has the system tables): opening it
    /// without access control would bypass its grants and audit. Open it with
    /// `open_secure` / `open_production` (the CLI: `--caller`).
    #[error(
        "{path} is a secure database: open it with open_secure or open_production (CLI: --caller NAME)"
    )]
    SecureDatabase {
        /// The data directory.
        path: PathBuf,
    },
    /// The security actors of a secure instance could not start (damaged policy or
    /// audit tables, or the bootstrap failed).
    #[error("cannot start the secure instance: {0}")]
    Security(Box<Error>),
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
    /// A secure instance refused the caller (anonymous, or lacking the permission).
    #[error(transparent)]
    Access(#[from] aedb_authz::AccessError),
    /// A grant, revoke or ownership change failed (other than a denial, which is
    /// [`Error::Access`]).
    #[error(transparent)]
    Authz(aedb_actors::authz_actor::AuthzFailure),
    /// A checkpoint or key rotation failed.
    #[error(transparent)]
    Checkpoint(#[from] aedb_actors::CheckpointFailure),
    /// A session capsule was refused (each cause is its own variant).
    #[error(transparent)]
    Session(#[from] aedb_session::CapsuleError),
    /// The server environment profile failed validation (a field is empty or too long).
    #[error(transparent)]
    ServerProfile(aedb_session::ProfileError),
    /// Session capsules are not enabled on this instance (`SecureConfig::with_sessions`).
    #[error("session capsules are not enabled on this instance")]
    SessionsDisabled,
    /// Stored security state (policy, audit chain) is damaged or could not be loaded.
    #[error("security state is damaged: {0}")]
    Integrity(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<aedb_actors::authz_actor::AuthzFailure> for Error {
    fn from(e: aedb_actors::authz_actor::AuthzFailure) -> Error {
        use aedb_actors::authz_actor::AuthzFailure;
        match e {
            AuthzFailure::Policy(aedb_authz::AuthzError::Denied(denied)) => {
                Error::Access(aedb_authz::AccessError::Denied(denied))
            }
            other => Error::Authz(other),
        }
    }
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
