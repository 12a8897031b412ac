//! The one public error of the `aedb` API: [`Error`], its kinds, stable codes and
//! classes.

use std::path::PathBuf;

pub use aedb_actors::{CommitError, StartError};
pub use aedb_model::{ApplyError, LimitError, NameError, ReadError};

use aedb_actors::CheckpointFailure;
pub use aedb_actors::FreezeReasonError;
use aedb_actors::audit::AuditChainError;
use aedb_actors::authz_actor::{AuthzFailure, PolicyLoadError};
use aedb_authz::{AccessError, AuthzError};
use aedb_model::{NotFound, OpError};
use aedb_session::{CapsuleError, KeyringError, ProfileError};
use aedb_types::KeyEpoch;

pub use crate::config::ConfigError;
pub use crate::lock::LockError;
pub use audit_export::AuditExportError;
pub use backup::{
    BackupError, ChainBreak, ChainOrder, KeyMismatch, RetiredWal, Tamper, WriteFailure,
};
pub use offline::{IntegrityFailure, OfflineError};

// The kinds defined here rather than beside the code that raises them, so that this
// module depends on no other module of the crate (they all depend on it).
mod audit_export;
mod backup;
mod offline;

/// Why an instance could not be opened (the [`Error::Open`] kind). Nothing on disk was
/// changed except, in the development profile, a corrupt WAL tail that recovery was
/// allowed to cut.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
    Recovery(Box<StartError>),
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

/// A call the instance cannot serve as made: a programming mistake of the host, not a
/// property of the data (the [`Error::Usage`] kind).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// A call that only a secure instance serves (grants, audit, sessions) on an
    /// instance not opened with `open_secure` / `open_production`.
    #[error("this call needs a secure instance: open it with open_secure or open_production")]
    NotSecure,
    /// Session capsules are not enabled on this instance (`SecureConfig::with_sessions`).
    #[error("session capsules are not enabled on this instance")]
    SessionsDisabled,
}

/// Stored or derived security state of a secure instance (policy, audit chain, session
/// keys) is damaged or could not be loaded (the [`Error::Security`] kind).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecurityError {
    /// The persisted policy (`_system/authz`) does not load.
    #[error("the persisted policy does not load: {0}")]
    Policy(#[from] PolicyLoadError),
    /// An audit table does not read or its chain is broken.
    #[error(transparent)]
    Audit(#[from] AuditChainError),
    /// The audit-chain key could not be derived.
    #[error("the audit key could not be derived: {0}")]
    AuditKey(#[source] aedb_keys::KeyError),
    /// A session key could not be derived, or the manifest's key epochs do not load.
    #[error("a session key could not be derived: {0}")]
    SessionKey(#[source] aedb_keys::KeyError),
    /// The manifest records no master key for a key epoch.
    #[error("{0} has no recorded master")]
    NoRecordedMaster(KeyEpoch),
    /// The session authority refused a key-epoch change.
    #[error(transparent)]
    SessionEpoch(#[from] KeyringError),
    /// A security actor's thread could not be started.
    #[error("cannot start the {what} actor: {source}")]
    Thread {
        /// Which actor.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What a host can do about an [`Error`]: the small set of cases to branch on.
/// Returned by [`Error::class`]; new classes may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Transient: the same call may succeed later (a full commit queue, a directory
    /// held by another instance). Retry with backoff.
    Retryable,
    /// The data disagrees with the request (a failed assertion, a version or key
    /// conflict, an overflow): re-read, decide, and try again with a new request.
    Conflict,
    /// The request itself is invalid (a bad name, a size limit, an invalid
    /// configuration, a schema violation): retrying it unchanged fails again.
    InvalidInput,
    /// A project, scope, table or row the request names does not exist.
    NotFound,
    /// Stored or presented data failed authentication or does not decode (tamper,
    /// wrong key, corruption): restore from a backup or investigate.
    Integrity,
    /// The caller is not allowed (denied, or an anonymous call on a secure instance).
    Access,
    /// The instance is shut down or fail-stopped: reopen it.
    Closed,
    /// The call does not fit the instance as opened (a programming mistake).
    Usage,
    /// An operating-system I/O error, or a commit whose outcome is in doubt after one.
    Io,
    /// An engine invariant was broken: a bug.
    Internal,
}

impl ErrorClass {
    /// A stable lower-case name (`"retryable"`, `"conflict"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Conflict => "conflict",
            ErrorClass::InvalidInput => "invalid_input",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Integrity => "integrity",
            ErrorClass::Access => "access",
            ErrorClass::Closed => "closed",
            ErrorClass::Usage => "usage",
            ErrorClass::Io => "io",
            ErrorClass::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every fallible public call of `aedb`: [`AedbInstance`](crate::AedbInstance),
/// [`ReadSnapshot`](crate::ReadSnapshot), [`CallerSnapshot`](crate::CallerSnapshot) and
/// the free functions (backup and restore, offline verification, audit export).
///
/// Each variant is a *kind* holding the detailed cause. Hosts branch on
/// [`Error::class`] (what to do) and log or count [`Error::code`] (what happened); both
/// are stable. Messages (`Display`) are for people and may change. No error carries
/// key material or stored values beyond the names and sizes needed to explain it.
///
/// ```
/// use aedb::{AedbConfig, AedbInstance, ErrorClass};
/// let dir = tempfile::tempdir()?;
/// let db = AedbInstance::open(dir.path(), AedbConfig::production([0u8; 32]))?;
/// match db.create_project("not a name") {
///     Err(e) if e.class() == ErrorClass::InvalidInput => assert_eq!(e.code(), "name.invalid"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Codes
///
/// | code | class | meaning |
/// |---|---|---|
/// | `open.locked` | Retryable | another instance holds the directory |
/// | `open.lock_failed` | Io | the lock file could not be created or locked |
/// | `open.io` | Io | the data directory could not be created or read |
/// | `open.corrupt` | Integrity | recovery found damaged, missing or planted files |
/// | `open.key` | Integrity | a key could not be derived, or the files are under another key |
/// | `open.recovery_io` | Io | recovery hit an I/O error, or a thread could not start |
/// | `open.secure_database` | Usage | a secure database opened without `open_secure` |
/// | `open.security` | *of its cause* | the security actors could not start |
/// | `config.invalid` | InvalidInput | the configuration is invalid |
/// | `name.invalid` | InvalidInput | a project, scope, table or column name is invalid |
/// | `limit.exceeded` | InvalidInput | a key, value or idempotency key breaks a size limit |
/// | `commit.busy` | Retryable | the commit queue is full (`try_commit`), or the commit waited out a write stall for 10 s while flushes or compactions kept failing (a full disk); nothing was applied |
/// | `commit.frozen` | Retryable | writes are frozen (`freeze_writes_as`); nothing was applied |
/// | `commit.rate_limited` | Retryable | the commit admission rate limit is exhausted; nothing was sequenced |
/// | `commit.timeout` | Retryable | the commit's deadline passed before it was sequenced; nothing was applied |
/// | `freeze.invalid_reason` | InvalidInput | a freeze reason is empty or longer than 1024 bytes |
/// | `commit.assertion_failed` | Conflict | an assertion failed (now, or in the original commit of an idempotent retry) |
/// | `commit.already_seen` | Conflict | the idempotency key was used by a commit that did not fail an assertion |
/// | `commit.idempotency_mismatch` | Conflict | the idempotency key was used, inside its retention window, by a different request (another fingerprint); nothing was applied |
/// | `commit.conflict` | Conflict | the data refuses the change (overflow, underflow, duplicate key, already exists) |
/// | `commit.not_found` | NotFound | a project, scope, table or row does not exist |
/// | `commit.invalid` | InvalidInput | the change is invalid (schema, numeric width, invalid assertion) |
/// | `commit.too_large` | InvalidInput | the commit record exceeds one WAL frame |
/// | `commit.in_doubt` | Io | the WAL write or sync failed; the outcome is in doubt until reopen |
/// | `commit.fail_stopped` | Closed | an earlier I/O error fail-stopped the instance |
/// | `commit.closed` | Closed | the instance is shut down |
/// | `commit.internal` | Internal | an engine invariant broke |
/// | `read.not_found` | NotFound | a project, scope or table does not exist |
/// | `read.invalid` | InvalidInput | a primary key or numeric width does not fit |
/// | `read.too_old` | NotFound | `snapshot_at` an LSN older than the retention window keeps (the error names the oldest readable one) |
/// | `read.future_lsn` | InvalidInput | `snapshot_at` an LSN not visible yet |
/// | `storage.unreadable` | Integrity | a run file block failed to read or authenticate, or a stored entry does not decode: nothing is returned in its place |
/// | `access.caller_required` | Access | an anonymous call on a secure instance |
/// | `access.denied` | Access | the caller lacks the permission (generic, audited) |
/// | `authz.invalid_change` | InvalidInput | a grant, revoke or ownership change is invalid |
/// | `checkpoint.wal_failed` | Closed | the WAL could not make the checkpoint durable |
/// | `checkpoint.write_failed` | Io | writing the checkpoint failed |
/// | `checkpoint.manifest_failed` | Io | recording in the manifest failed |
/// | `checkpoint.key` | Integrity | the checkpoint key could not be derived |
/// | `checkpoint.closed` | Closed | the engine is shutting down |
/// | `session.tampered` | Integrity | a capsule is malformed or fails its tag |
/// | `session.refused` | Access | a valid capsule is refused (stale, replayed, revoked, other channel, …) |
/// | `session.busy` | Retryable | the replay cache is full |
/// | `session.server_profile` | InvalidInput | the server environment profile is invalid |
/// | `usage.not_secure` | Usage | a secure-only call on an instance opened without `open_secure` |
/// | `usage.sessions_disabled` | Usage | a session call with sessions not enabled |
/// | `security.damaged` | Integrity | stored policy, audit chain or session keys are damaged |
/// | `security.thread` | Io | a security actor could not start |
/// | `backup.wrong_key` | Integrity | a backup is under another key |
/// | `backup.tampered` | Integrity | a backup file or manifest fails its hash, MAC or chain |
/// | `backup.missing_file` | Integrity | a listed backup file is missing or truncated |
/// | `backup.invalid_chain` | InvalidInput | the chain is empty, out of order, has a gap or mixes databases |
/// | `backup.target_out_of_range` | InvalidInput | the restore target LSN is outside the chain |
/// | `backup.target_unreachable` | InvalidInput | the chain holds no state at the target LSN (WAL retired before an incremental) |
/// | `backup.non_empty_dir` | InvalidInput | the backup or restore directory is not empty |
/// | `backup.wal_retired` | Conflict | the WAL an incremental needs is retired: take a full backup |
/// | `backup.engine` | *of its cause* | the engine could not take the backup |
/// | `backup.key` | Integrity | the backup key could not be derived |
/// | `backup.write_failed` | Io | writing the restored database failed |
/// | `backup.segment_header` | Integrity | a live WAL segment's header does not decode |
/// | `backup.io` | Io | a file-system operation failed |
/// | `backup.no_database_id` | Integrity | an offline capture cannot read the database id from the manifest header |
/// | `offline.locked` | Retryable | a live instance holds the directory |
/// | `offline.not_a_database` | InvalidInput | the directory holds no manifest |
/// | `offline.integrity` | Integrity | the files do not verify |
/// | `offline.io` | Io | a file-system error |
/// | `audit.malformed` | Integrity | an audit export line is not an audit row |
/// | `audit.chain_broken` | Integrity | an audit chain does not verify |
/// | `audit.io` | Io | the audit export could not be read |
/// | `io` | Io | a file could not be written |
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The instance could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A configuration value is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A project, scope, table or column name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A key, value or idempotency key breaks a size limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The commit did not succeed. (A denial is [`Error::Access`].)
    #[error(transparent)]
    Commit(CommitError),
    /// The read did not succeed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A secure instance refused the caller (anonymous, or lacking the permission).
    #[error(transparent)]
    Access(AccessError),
    /// A grant, revoke or ownership change failed (other than a denial, which is
    /// [`Error::Access`]); a failed commit of the change has the code and class of
    /// that commit error.
    #[error(transparent)]
    Authz(AuthzFailure),
    /// A checkpoint or key rotation failed.
    #[error(transparent)]
    Checkpoint(CheckpointFailure),
    /// A session capsule was refused (each cause is its own variant).
    #[error(transparent)]
    Session(#[from] CapsuleError),
    /// The server environment profile failed validation (a field is empty or too long).
    #[error(transparent)]
    ServerProfile(#[from] ProfileError),
    /// The call does not fit the instance as opened.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Stored security state (policy, audit chain, session keys) is damaged or could
    /// not be loaded.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// A backup or restore failed.
    #[error(transparent)]
    Backup(BackupError),
    /// An offline verification, check or inspection could not run.
    #[error(transparent)]
    Offline(#[from] OfflineError),
    /// An audit export does not read or verify.
    #[error(transparent)]
    AuditExport(#[from] AuditExportError),
    /// A write-freeze reason is empty or too long.
    #[error(transparent)]
    FreezeReason(#[from] FreezeReasonError),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl From<AccessError> for Error {
    fn from(e: AccessError) -> Error {
        Error::Access(e)
    }
}

impl From<CommitError> for Error {
    fn from(e: CommitError) -> Error {
        match e {
            CommitError::Access(a) => Error::Access(a),
            other => Error::Commit(other),
        }
    }
}

impl From<CheckpointFailure> for Error {
    fn from(e: CheckpointFailure) -> Error {
        match e {
            CheckpointFailure::Access(a) => Error::Access(a),
            other => Error::Checkpoint(other),
        }
    }
}

impl From<AuthzFailure> for Error {
    fn from(e: AuthzFailure) -> Error {
        match e {
            AuthzFailure::Policy(AuthzError::Denied(denied)) => {
                Error::Access(AccessError::Denied(denied))
            }
            other => Error::Authz(other),
        }
    }
}

impl From<BackupError> for Error {
    fn from(e: BackupError) -> Error {
        match e {
            BackupError::Engine(c) => match Error::from(c) {
                Error::Checkpoint(c) => Error::Backup(BackupError::Engine(c)),
                other => other,
            },
            other => Error::Backup(other),
        }
    }
}

impl From<StartError> for OpenError {
    fn from(e: StartError) -> OpenError {
        OpenError::Recovery(Box::new(e))
    }
}

impl From<StartError> for Error {
    fn from(e: StartError) -> Error {
        Error::Open(OpenError::from(e))
    }
}

impl From<LockError> for Error {
    fn from(e: LockError) -> Error {
        Error::Open(OpenError::Lock(e))
    }
}

impl Error {
    /// The stable code of this error, `"<kind>.<cause>"` (see the table in [`Error`]'s
    /// documentation). Codes are never renamed or reused; new ones may be added.
    pub fn code(&self) -> &'static str {
        self.describe().0
    }

    /// What a host can do about this error (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        self.describe().1
    }

    /// The index of the top-level assertion that failed, whether it failed now or (for
    /// an idempotent retry) in the original commit.
    pub fn failed_assertion(&self) -> Option<u32> {
        match self {
            Error::Commit(c) => c.failed_assertion(),
            _ => None,
        }
    }

    /// The commit error, when this is one.
    pub fn as_commit(&self) -> Option<&CommitError> {
        match self {
            Error::Commit(c) => Some(c),
            _ => None,
        }
    }

    fn describe(&self) -> (&'static str, ErrorClass) {
        use ErrorClass as C;
        match self {
            Error::Open(e) => open_code(e),
            Error::Config(_) => ("config.invalid", C::InvalidInput),
            Error::Name(_) => ("name.invalid", C::InvalidInput),
            Error::Limit(_) => ("limit.exceeded", C::InvalidInput),
            Error::Commit(e) => commit_code(e),
            Error::Read(e) => read_code(e),
            Error::Access(e) => access_code(e),
            Error::Authz(e) => authz_code(e),
            Error::Checkpoint(e) => checkpoint_code(e),
            Error::Session(e) => session_code(e),
            Error::ServerProfile(_) => ("session.server_profile", C::InvalidInput),
            Error::Usage(UsageError::NotSecure) => ("usage.not_secure", C::Usage),
            Error::Usage(UsageError::SessionsDisabled) => ("usage.sessions_disabled", C::Usage),
            Error::Security(SecurityError::Thread { .. }) => ("security.thread", C::Io),
            Error::Security(_) => ("security.damaged", C::Integrity),
            Error::Backup(e) => backup_code(e),
            Error::Offline(e) => offline_code(e),
            Error::AuditExport(e) => audit_export_code(e),
            Error::FreezeReason(_) => ("freeze.invalid_reason", C::InvalidInput),
            Error::Io { .. } => ("io", C::Io),
        }
    }
}

fn open_code(e: &OpenError) -> (&'static str, ErrorClass) {
    use ErrorClass as C;
    match e {
        OpenError::Config(_) => ("config.invalid", C::InvalidInput),
        OpenError::Lock(LockError::Held { .. }) => ("open.locked", C::Retryable),
        OpenError::Lock(LockError::Io { .. }) => ("open.lock_failed", C::Io),
        OpenError::Io { .. } => ("open.io", C::Io),
        OpenError::Recovery(s) => start_code(s),
        OpenError::SecureDatabase { .. } => ("open.secure_database", C::Usage),
        OpenError::Security(inner) => ("open.security", inner.class()),
    }
}

fn start_code(e: &StartError) -> (&'static str, ErrorClass) {
    use ErrorClass as C;
    #[allow(unreachable_patterns)] // `StartError` may become `#[non_exhaustive]`
    match e {
        StartError::Wal(aedb_wal::RecoverError::Io { .. }) | StartError::Thread { .. } => {
            ("open.recovery_io", C::Io)
        }
        StartError::Wal(aedb_wal::RecoverError::Encrypted { .. })
        | StartError::Manifest(aedb_manifest::ManifestError::HeaderAuthFailed { .. })
        | StartError::Key(_)
        | StartError::NoKeyEpoch => ("open.key", C::Integrity),
        _ => ("open.corrupt", C::Integrity),
    }
}

fn op_code(e: &OpError) -> (&'static str, ErrorClass) {
    use ErrorClass as C;
    match e {
        OpError::NotFound(_) | OpError::RowNotFound { .. } => ("commit.not_found", C::NotFound),
        OpError::AlreadyExists(_)
        | OpError::Overflow { .. }
        | OpError::Underflow { .. }
        | OpError::DuplicatePrimaryKey { .. } => ("commit.conflict", C::Conflict),
        _ => ("commit.invalid", C::InvalidInput),
    }
}

fn commit_code(e: &CommitError) -> (&'static str, ErrorClass) {
    use ErrorClass as C;
    if e.failed_assertion().is_some() {
        return ("commit.assertion_failed", C::Conflict);
    }
    #[allow(unreachable_patterns)] // `CommitError` may become `#[non_exhaustive]`
    match e {
        CommitError::Rejected(a) => match a {
            ApplyError::AlreadySeen { .. } => ("commit.already_seen", C::Conflict),
            ApplyError::IdempotencyMismatch { .. } => ("commit.idempotency_mismatch", C::Conflict),
            ApplyError::InvalidAssertion { .. } => ("commit.invalid", C::InvalidInput),
            ApplyError::Mutation { source, .. } | ApplyError::Ddl(source) => op_code(source),
            ApplyError::Unreadable(_) => ("storage.unreadable", C::Integrity),
            _ => ("commit.internal", C::Internal),
        },
        CommitError::TooLarge { .. } => ("commit.too_large", C::InvalidInput),
        CommitError::Busy => ("commit.busy", C::Retryable),
        CommitError::Frozen => ("commit.frozen", C::Retryable),
        CommitError::RateLimited { .. } => ("commit.rate_limited", C::Retryable),
        CommitError::Timeout => ("commit.timeout", C::Retryable),
        CommitError::Wal(_) => ("commit.in_doubt", C::Io),
        CommitError::FailStopped => ("commit.fail_stopped", C::Closed),
        CommitError::Closed => ("commit.closed", C::Closed),
        CommitError::Access(a) => access_code(a),
        _ => ("commit.internal", C::Internal),
    }
}

fn read_code(e: &ReadError) -> (&'static str, ErrorClass) {
    match e {
        ReadError::NotFound(NotFound::Project(_) | NotFound::Scope(_) | NotFound::Table { .. }) => {
            ("read.not_found", ErrorClass::NotFound)
        }
        ReadError::Unreadable(_) => ("storage.unreadable", ErrorClass::Integrity),
        ReadError::TooOld { .. } => ("read.too_old", ErrorClass::NotFound),
        ReadError::FutureLsn { .. } => ("read.future_lsn", ErrorClass::InvalidInput),
        _ => ("read.invalid", ErrorClass::InvalidInput),
    }
}

fn access_code(e: &AccessError) -> (&'static str, ErrorClass) {
    match e {
        AccessError::CallerRequired => ("access.caller_required", ErrorClass::Access),
        AccessError::Denied(_) => ("access.denied", ErrorClass::Access),
    }
}

fn authz_code(e: &AuthzFailure) -> (&'static str, ErrorClass) {
    #[allow(unreachable_patterns)] // `AuthzFailure` may become `#[non_exhaustive]`
    match e {
        AuthzFailure::Policy(AuthzError::Denied(_)) => ("access.denied", ErrorClass::Access),
        AuthzFailure::Commit(c) => commit_code(c),
        _ => ("authz.invalid_change", ErrorClass::InvalidInput),
    }
}

fn checkpoint_code(e: &CheckpointFailure) -> (&'static str, ErrorClass) {
    use ErrorClass as C;
    #[allow(unreachable_patterns)] // `CheckpointFailure` may become `#[non_exhaustive]`
    match e {
        CheckpointFailure::Wal(_) => ("checkpoint.wal_failed", C::Closed),
        CheckpointFailure::Write(_) => ("checkpoint.write_failed", C::Io),
        CheckpointFailure::Manifest(_) => ("checkpoint.manifest_failed", C::Io),
        CheckpointFailure::Key(_) => ("checkpoint.key", C::Integrity),
        CheckpointFailure::Closed => ("checkpoint.closed", C::Closed),
        CheckpointFailure::Access(a) => access_code(a),
        _ => ("checkpoint.write_failed", C::Io),
    }
}

fn session_code(e: &CapsuleError) -> (&'static str, ErrorClass) {
    use ErrorClass as C;
    match e {
        CapsuleError::Malformed { .. }
        | CapsuleError::VersionMismatch { .. }
        | CapsuleError::HeaderMismatch { .. }
        | CapsuleError::TagMismatch => ("session.tampered", C::Integrity),
        CapsuleError::ReplayCacheFull { .. } => ("session.busy", C::Retryable),
        _ => ("session.refused", C::Access),
    }
}

fn backup_code(e: &BackupError) -> (&'static str, ErrorClass) {
    use ErrorClass as C;
    match e {
        BackupError::NonEmptyTarget(_) | BackupError::NonEmptyBackupDir(_) => {
            ("backup.non_empty_dir", C::InvalidInput)
        }
        BackupError::MissingIncremental { .. }
        | BackupError::OutOfOrder { .. }
        | BackupError::ForeignBackup { .. }
        | BackupError::EmptyChain => ("backup.invalid_chain", C::InvalidInput),
        BackupError::WrongKey { .. } => ("backup.wrong_key", C::Integrity),
        BackupError::TruncatedFile { .. } | BackupError::MissingFile(_) => {
            ("backup.missing_file", C::Integrity)
        }
        BackupError::TamperedFile { .. }
        | BackupError::ChainMismatch { .. }
        | BackupError::Manifest { .. }
        | BackupError::Replay(_) => ("backup.tampered", C::Integrity),
        BackupError::TargetOutOfRange { .. } => ("backup.target_out_of_range", C::InvalidInput),
        BackupError::TargetUnreachable { .. } => ("backup.target_unreachable", C::InvalidInput),
        BackupError::WalRetired { .. } => ("backup.wal_retired", C::Conflict),
        BackupError::Engine(c) => ("backup.engine", checkpoint_code(c).1),
        BackupError::Key(_) => ("backup.key", C::Integrity),
        BackupError::Write(_) => ("backup.write_failed", C::Io),
        BackupError::SegmentHeader { .. } => ("backup.segment_header", C::Integrity),
        BackupError::Io { .. } => ("backup.io", C::Io),
        BackupError::NoDatabaseId { .. } => ("backup.no_database_id", C::Integrity),
    }
}

fn offline_code(e: &OfflineError) -> (&'static str, ErrorClass) {
    use ErrorClass as C;
    match e {
        OfflineError::Locked(_) => ("offline.locked", C::Retryable),
        OfflineError::NotADatabase(_) => ("offline.not_a_database", C::InvalidInput),
        OfflineError::Io { .. } => ("offline.io", C::Io),
        _ => ("offline.integrity", C::Integrity),
    }
}

fn audit_export_code(e: &AuditExportError) -> (&'static str, ErrorClass) {
    use ErrorClass as C;
    match e {
        AuditExportError::Io { .. } => ("audit.io", C::Io),
        AuditExportError::Malformed { .. } => ("audit.malformed", C::Integrity),
        AuditExportError::Chain(_) => ("audit.chain_broken", C::Integrity),
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

impl CommitErrorExt for Error {
    fn failed_assertion(&self) -> Option<u32> {
        Error::failed_assertion(self)
    }
}

/// Questions callers commonly ask of a [`CommitError`] (also answered by
/// [`Error::failed_assertion`]).
pub trait CommitErrorExt {
    /// The index of the top-level assertion that failed, whether it failed now or (for
    /// an idempotent retry) in the original commit.
    fn failed_assertion(&self) -> Option<u32>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code `describe` can return is listed in [`Error`]'s documentation table
    /// (the stable list hosts rely on), and the table lists no code twice.
    #[test]
    fn every_code_is_documented_once() {
        let source = include_str!("mod.rs");
        let (docs, code) = source
            .split_once("pub enum Error {")
            .expect("the Error enum");
        let (code, _) = code.split_once("#[cfg(test)]").expect("the tests");
        let documented: Vec<&str> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("/// | `")?.split('`').next())
            .collect();
        let mut unique = documented.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), documented.len(), "a code is listed twice");
        let returned: Vec<&str> = code
            .split("(\"")
            .skip(1)
            .filter_map(|rest| rest.split_once("\", C::").map(|(c, _)| c))
            .collect();
        assert!(returned.len() > 40, "found {} codes", returned.len());
        for c in returned {
            assert!(documented.contains(&c), "{c} is not in the table");
        }
    }

    #[test]
    fn kinds_map_to_their_classes() {
        let cases: Vec<(Error, &str, ErrorClass)> = vec![
            (
                CommitError::Closed.into(),
                "commit.closed",
                ErrorClass::Closed,
            ),
            (
                CheckpointFailure::Closed.into(),
                "checkpoint.closed",
                ErrorClass::Closed,
            ),
            (
                CommitError::Frozen.into(),
                "commit.frozen",
                ErrorClass::Retryable,
            ),
            (
                CommitError::RateLimited {
                    retry_after: std::time::Duration::from_millis(5),
                }
                .into(),
                "commit.rate_limited",
                ErrorClass::Retryable,
            ),
            (
                CommitError::Timeout.into(),
                "commit.timeout",
                ErrorClass::Retryable,
            ),
            (
                FreezeReasonError { len: 0 }.into(),
                "freeze.invalid_reason",
                ErrorClass::InvalidInput,
            ),
            (
                Error::Usage(UsageError::SessionsDisabled),
                "usage.sessions_disabled",
                ErrorClass::Usage,
            ),
            (
                SecurityError::NoRecordedMaster(KeyEpoch::FIRST).into(),
                "security.damaged",
                ErrorClass::Integrity,
            ),
            (
                BackupError::EmptyChain.into(),
                "backup.invalid_chain",
                ErrorClass::InvalidInput,
            ),
            (
                BackupError::Engine(CheckpointFailure::Access(AccessError::CallerRequired)).into(),
                "access.caller_required",
                ErrorClass::Access,
            ),
            (
                OfflineError::Locked(PathBuf::from("d")).into(),
                "offline.locked",
                ErrorClass::Retryable,
            ),
        ];
        for (e, code, class) in cases {
            assert_eq!((e.code(), e.class()), (code, class), "{e:?}");
        }
    }
}
