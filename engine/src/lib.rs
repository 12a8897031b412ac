//! # aedb
//!
//! An actor-based embedded database engine: link it, open a data directory, and get
//! transactional, durable storage with group commit, assertions checked at apply time,
//! idempotent retries, and snapshot reads that never wait for writers.
//!
//! This crate owns the public API ([`AedbConfig`], [`AedbInstance`], reads through
//! [`ReadSnapshot`]) and the `aedb` command-line tool. The commit pipeline lives in
//! `aedb-actors`, the log in `aedb-wal`, the data model in `aedb-model`.
//!
//! ```
//! use aedb::{AedbConfig, AedbInstance, Assertion, Finality, KvKey, Namespace, Numeric, Transaction};
//!
//! let dir = tempfile::tempdir()?;
//! let db = AedbInstance::open(dir.path(), AedbConfig::production([0u8; 32]))?;
//! db.create_project("bank")?;
//! db.create_scope("bank", "main")?;
//! let ns = Namespace::parse("bank", "main")?;
//!
//! // Fund an account, then move money only if the balance covers it.
//! db.kv_add(&ns, b"alice", Numeric::U64(100))?;
//! let alice = KvKey::new(b"alice")?;
//! let bob = KvKey::new(b"bob")?;
//! let transfer = Transaction::new()
//!     .assert(Assertion::KvNumericAtLeast { ns: ns.clone(), key: alice.clone(), min: Numeric::U64(30) })
//!     .kv_sub(&ns, alice, Numeric::U64(30))
//!     .kv_add(&ns, bob, Numeric::U64(30));
//! let outcome = db.commit_with(transfer, Finality::Durable)?;
//!
//! let snapshot = db.snapshot()?;
//! assert_eq!(snapshot.lsn(), outcome.lsn);
//! assert_eq!(snapshot.kv_get_numeric(&ns, b"bob", aedb::NumericType::U64)?, Numeric::U64(30));
//! db.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Errors
//!
//! Every fallible call returns [`Error`]: one `#[non_exhaustive]` enum whose variants
//! are kinds ([`Error::Commit`], [`Error::Access`], [`Error::Open`], …) holding the typed
//! cause. Branch on [`Error::class`] (an [`ErrorClass`]) and log [`Error::code`], a
//! stable `&'static str` such as `"commit.busy"` or `"access.denied"` (the full list is
//! in [`Error`]'s documentation):
//!
//! ```
//! use aedb::{AedbConfig, AedbInstance, ErrorClass, Finality, KvKey, KvValue, Namespace, Transaction};
//!
//! let dir = tempfile::tempdir()?;
//! let db = AedbInstance::open(dir.path(), AedbConfig::production([0u8; 32]))?;
//! db.create_project("app")?;
//! db.create_scope("app", "main")?;
//! let ns = Namespace::parse("app", "main")?;
//! let tx = Transaction::new().kv_put(&ns, KvKey::new("k")?, KvValue::new("v")?);
//! let outcome = loop {
//!     match db.try_commit(tx.clone(), Finality::Durable) {
//!         Ok(outcome) => break outcome,
//!         Err(e) => match e.class() {
//!             ErrorClass::Retryable => std::thread::yield_now(), // the queue is full
//!             ErrorClass::Conflict => return Err(e.into()), // re-read and decide
//!             ErrorClass::Closed => return Err(e.into()),   // reopen the instance
//!             _ => return Err(format!("{}: {e}", e.code()).into()),
//!         },
//!     }
//! };
//! assert_eq!(db.snapshot()?.lsn(), outcome.lsn);
//! db.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

pub mod backup;
mod config;
mod error;
mod golden;
pub mod limits;
mod lock;
pub mod offline;
mod operations;
pub mod parity;
mod secure;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aedb_actors::authz_actor;
use aedb_actors::{Admission, Authority, Pipeline, PipelineConfig, Request};
use aedb_wal::{RecoveryMode, SyncPolicy, WalConfig};

pub use aedb_actors::{
    CommitOutcome, ErrorCounts, Finality, HistogramSnapshot, OperationalMetrics, ProjectAdmission,
    RateLimit, RateLimitError, RateLimits, WriteFreeze,
};
pub use aedb_model::{
    Assertion, ColumnDef, ColumnName, ColumnType, CompareOp, Ddl, Direction, IdempotencyKey,
    IdempotencyRecord, KeyRange, KvEntry, KvKey, KvOperand, KvValue, Mutation, Namespace, Numeric,
    NumericType, Outcome, Page, ProjectName, Rejection, Row, ScopeName, State, TableName,
    TableSchema, Timestamp, Transaction, Value,
};
pub use aedb_types::Lsn;
pub use aedb_wal::{FaultInjector, FaultKind, FaultMode, FaultPoint, RecoveredWal};
pub use backup::{
    BackupError, BackupKind, BackupManifest, BackupReport, CaptureReport, RestoreOptions,
    RestoreReport, capture_offline, restore_from_backup_chain, verify_capture,
};
pub use config::{AedbConfig, Profile, Recovery};
pub use error::{
    ApplyError, AuditExportError, CommitError, CommitErrorExt, ConfigError, Error, ErrorClass,
    FreezeReasonError, LimitError, LockError, NameError, OpenError, ReadError, SecurityError,
    StartError, UsageError,
};
pub use golden::{GoldenCapsule, GoldenMismatch, golden_capsules};
pub use offline::OfflineError;
pub use operations::write_freeze_of;
pub use snapshot::ReadSnapshot;

use lock::DirLock;
use secure::Security;

pub use aedb_actors::RecoveryEvent;
pub use aedb_actors::audit::{AuditChainError, AuditEvent, AuditRow, AuditTable};
pub use aedb_actors::authz_actor::AuthzFailure;
pub use aedb_authz::{
    AccessError, Action, AuthzChange, AuthzError, CallerId, CallerIdError, CallerPolicy, Denied,
    DenyReason, Grant, Permission, Resource,
};
pub use aedb_manifest::{RecoveryEventInfo, RecoveryEventKind};
pub use aedb_session::{
    CapsuleError, ChannelBinding, IhpConfig, IhpConfigError, IhpMetricsSnapshot, ProfileError,
    ServerEnvHash, ServerEnvironmentProfile, ServerProfileId, SessionAuthority, SessionCapsule,
    UnixMicros, compute_server_env_hash_checked,
};
pub use secure::{
    AuditExport, CallerSnapshot, SecureConfig, audit_key_for, parse_audit_export,
    read_audit_export, verify_audit_export, verify_audit_rows,
};

pub use aedb_actors::{CheckpointFailure, CheckpointReport, WAL_DIR};
pub use aedb_keys::{
    EpochKey, HsmConfig, HsmKeyProvider, HsmProvisioner, InMemoryKeyProvider, KeyError,
    KeyProvider, MasterKeyId, MasterKeyInfo, SecretKey, SecretString, TokenSelector,
};
pub use aedb_types::{DatabaseId, KeyEpoch};

/// Bucket upper bounds (seconds) that make `ihp_timestamp_skew_seconds` a Prometheus
/// histogram (see `aedb_session::metrics`).
pub use aedb_session::metrics::TIMESTAMP_SKEW_BUCKETS as IHP_TIMESTAMP_SKEW_BUCKETS;

/// Registers the help text of every metric aedb emits (`aedb_*` and the IHP `ihp_*`)
/// with the installed [`metrics`] recorder, so exporters print it (Prometheus `# HELP`;
/// `promtool check metrics` requires it). Call once after installing the recorder.
#[cfg(feature = "observability")]
pub fn describe_metrics() {
    aedb_actors::metrics::export::describe_metrics();
    aedb_session::metrics::describe_metrics();
}

/// An open aedb database.
///
/// All methods take `&self`: share the instance between threads with an `Arc`.
/// Writes go through the single-writer pipeline; reads use [`AedbInstance::snapshot`]
/// on the caller's thread.
pub struct AedbInstance {
    /// The backup policy's scheduler; first, so it stops before the pipeline drops.
    backup_scheduler: Option<backup::RunningScheduler>,
    pipeline: Pipeline,
    dir: PathBuf,
    default_finality: Finality,
    faults: FaultInjector,
    recovered: RecoveredWal,
    backup_keys: Arc<dyn KeyProvider>,
    /// Backup copy rate limit in bytes per second (0: unlimited).
    backup_rate: Arc<std::sync::atomic::AtomicU64>,
    security: Option<Security>,
    fs: aedb_fs::SharedFs,
    _lock: DirLock,
}

impl std::fmt::Debug for AedbInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AedbInstance")
            .field("dir", &self.dir)
            .field("default_finality", &self.default_finality)
            .field("secure", &self.security.is_some())
            .finish_non_exhaustive()
    }
}

impl AedbInstance {
    /// Opens (creating if needed) the database in `dir`, recovering its WAL, **without
    /// access control**: every call is allowed and nothing is audited. For development
    /// and for applications that do their own authorization; production paths use
    /// [`AedbInstance::open_secure`] or [`AedbInstance::open_production`]. A database
    /// created secure is refused ([`OpenError::SecureDatabase`]): it never silently
    /// loses its access control.
    ///
    /// Fails with [`Error::Open`]: [`OpenError::Lock`] (code `open.locked`, class
    /// [`ErrorClass::Retryable`]) if another instance — in this process or another — has
    /// `dir` open, and [`OpenError::Recovery`] naming the file and offset if the WAL is
    /// corrupt (strict profiles; class [`ErrorClass::Integrity`]).
    pub fn open(dir: impl AsRef<Path>, config: AedbConfig) -> Result<AedbInstance, Error> {
        Ok(AedbInstance::open_with(dir.as_ref(), config, None)?)
    }

    /// Opens (creating if needed) a **secure** instance: every caller-facing operation
    /// must use its `*_as(caller, …)` form and is checked against the grants (the
    /// anonymous forms fail with [`AccessError::CallerRequired`] and do nothing);
    /// grants, revokes, ownership changes, key rotations and every denial are written
    /// to the `authz_audit` system table, failed assertions to `assertion_audit`, both
    /// HMAC-chained. A new database starts with one `GlobalAdmin`, the bootstrap admin
    /// of `secure`, so it never has to be opened anonymously.
    ///
    /// ```
    /// use aedb::{AedbConfig, AedbInstance, CallerId, Namespace, Permission, SecureConfig};
    /// let dir = tempfile::tempdir()?;
    /// let root = CallerId::new("root")?;
    /// let db = AedbInstance::open_secure(dir.path(), AedbConfig::production([1; 32]), SecureConfig::new(root.clone()))?;
    /// db.create_project_as(&root, "bank")?;
    /// db.create_scope_as(&root, "bank", "main")?;
    /// let ns = Namespace::parse("bank", "main")?;
    /// let teller = CallerId::new("teller-1")?;
    /// db.grant_as(&root, &teller, Permission::KvWrite { ns: ns.clone(), prefix: b"acct/".to_vec() }, false)?;
    /// db.kv_put_as(&teller, &ns, "acct/alice", "100")?;
    /// assert!(db.kv_put_as(&teller, &ns, "admin/flag", "1").is_err()); // outside the prefix
    /// assert!(db.kv_put(&ns, "acct/bob", "1").is_err()); // anonymous: refused
    /// db.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_secure(
        dir: impl AsRef<Path>,
        config: AedbConfig,
        secure: SecureConfig,
    ) -> Result<AedbInstance, Error> {
        Ok(AedbInstance::open_with(dir.as_ref(), config, Some(secure))?)
    }

    /// [`AedbInstance::open_secure`] for production paths: additionally refuses a
    /// configuration that is not durable by default with fsync, strict recovery and a
    /// manifest key ([`ConfigError::NotProductionGrade`]).
    pub fn open_production(
        dir: impl AsRef<Path>,
        config: AedbConfig,
        secure: SecureConfig,
    ) -> Result<AedbInstance, Error> {
        config.validate_production().map_err(OpenError::from)?;
        AedbInstance::open_secure(dir, config, secure)
    }

    fn open_with(
        dir: &Path,
        config: AedbConfig,
        secure: Option<SecureConfig>,
    ) -> Result<AedbInstance, OpenError> {
        config.validate()?;
        let dir = dir.to_path_buf();
        config
            .fs
            .create_dir_all(&dir)
            .map_err(|source| OpenError::Io {
                path: dir.clone(),
                source,
            })?;
        let lock = DirLock::acquire(&*config.fs, &dir)?;
        if config.profile == Profile::Development {
            tracing::warn!(
                "WARNING: {} is open with the development profile: fsync is OFF, \
                 a crash or power loss can lose acknowledged commits",
                dir.display()
            );
        }
        let faults = FaultInjector::default();
        let pipeline_config = PipelineConfig {
            wal: WalConfig {
                segment_size: config.segment_size,
                preallocate: config.preallocate,
                sync: if config.fsync {
                    SyncPolicy::Fdatasync
                } else {
                    SyncPolicy::None
                },
                faults: faults.clone(),
                fs: config.fs.clone(),
                ..WalConfig::default()
            },
            recovery: match config.recovery {
                Recovery::Strict => RecoveryMode::Strict,
                Recovery::TruncateAtCorruption => RecoveryMode::TruncateAtCorruption,
            },
            flush_interval: config.flush_interval,
            sequencer_queue: config.sequencer_queue,
            wal_queue: config.wal_queue,
            max_batch: config.max_batch,
            keyring: config.keyring().map_err(StartError::from)?,
            checkpoints: config.checkpoints,
            manifest_compact_after: config.manifest_compact_after,
        };
        let backup_keys = config.backup_key_provider().map_err(StartError::from)?;
        let keyring = pipeline_config.keyring.clone();
        let (mut pipeline, recovered) = Pipeline::start(&dir, pipeline_config)?;
        pipeline.set_rate_limits(config.rate_limits.clone());
        let security = match secure {
            None if pipeline
                .snapshot()
                .has_namespace(&aedb_actors::audit::audit_namespace()) =>
            {
                let _ = pipeline.shutdown();
                return Err(OpenError::SecureDatabase { path: dir });
            }
            None => None,
            Some(secure) => match Security::start(&pipeline, keyring, &secure) {
                Ok(security) => Some(security),
                Err(e) => {
                    let _ = pipeline.shutdown();
                    return Err(OpenError::Security(Box::new(e)));
                }
            },
        };
        let mut db = AedbInstance {
            backup_scheduler: None,
            backup_keys,
            backup_rate: Arc::new(config.backup_bytes_per_sec.unwrap_or(0).into()),
            pipeline,
            dir,
            default_finality: config.default_finality,
            faults,
            recovered,
            security,
            fs: config.fs.clone(),
            _lock: lock,
        };
        if let Some(policy) = &config.backup_policy {
            let scheduler =
                backup::start_scheduler(&db, policy.clone(), &config).map_err(|source| {
                    StartError::Thread {
                        what: "backup-policy",
                        source,
                    }
                })?;
            db.backup_scheduler = Some(scheduler);
        }
        Ok(db)
    }

    /// Changes the hot-backup copy rate limit (`None`: unlimited; at least 1 MiB/s),
    /// for example to let a backup run faster at night. Applies to backups started
    /// afterwards. See `AedbConfig::backup_rate_limit`.
    pub fn set_backup_rate_limit(&self, bytes_per_sec: Option<u64>) -> Result<(), Error> {
        let rate = match bytes_per_sec {
            Some(b) if b < config::MIN_BACKUP_RATE => {
                return Err(ConfigError::BackupRateLimit(b).into());
            }
            Some(b) => b,
            None => 0,
        };
        self.backup_rate
            .store(rate, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Whether this instance requires authenticated callers.
    pub fn is_secure(&self) -> bool {
        self.security.is_some()
    }

    /// Checks that `who` may perform `actions`: an anonymous call is refused on a secure
    /// instance; a caller is checked against the grants (always allowed on an open
    /// instance, except the system caller).
    pub(crate) fn permit<'a>(
        &self,
        who: Who<'_>,
        actions: impl IntoIterator<Item = &'a Action<'a>, IntoIter: Clone>,
        what: &str,
    ) -> Result<(), AccessError> {
        match who {
            Who::Anonymous => self.anonymous(),
            Who::Caller(caller) => self.authorize(caller, actions, what),
        }
    }

    /// Refuses anonymous calls on secure instances.
    pub(crate) fn anonymous(&self) -> Result<(), AccessError> {
        match self.security {
            Some(_) => Err(AccessError::CallerRequired),
            None => Ok(()),
        }
    }

    /// Checks `actions` for `caller` (always allowed on an open instance).
    pub(crate) fn authorize<'a>(
        &self,
        caller: &CallerId,
        actions: impl IntoIterator<Item = &'a Action<'a>, IntoIter: Clone>,
        what: &str,
    ) -> Result<(), AccessError> {
        match &self.security {
            Some(s) => s.check(caller, actions, what),
            None => Self::not_system(caller),
        }
    }

    /// Refuses the engine's internal system caller on every caller-facing API: users
    /// can construct the value, but it only ever acts inside the engine.
    fn not_system(caller: &CallerId) -> Result<(), AccessError> {
        if caller.is_system() {
            Err(AccessError::Denied(Denied::new(DenyReason::NoRights)))
        } else {
            Ok(())
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// What recovery found when this instance opened (frames replayed, torn tail cut).
    pub fn recovery_report(&self) -> &RecoveredWal {
        &self.recovered
    }

    /// Commits `tx` with the configured default finality, waiting for room in the
    /// commit queue if it is full. Refused on secure instances (use
    /// [`AedbInstance::commit_as`]).
    pub fn commit(&self, tx: Transaction) -> Result<CommitOutcome, Error> {
        self.commit_by(Who::Anonymous, tx, self.default_finality, Admission::Wait)
    }

    /// Commits `tx` with an explicit finality.
    pub fn commit_with(&self, tx: Transaction, finality: Finality) -> Result<CommitOutcome, Error> {
        self.commit_by(Who::Anonymous, tx, finality, Admission::Wait)
    }

    /// Like [`AedbInstance::commit_with`], but fails with [`CommitError::Busy`]
    /// (class [`ErrorClass::Retryable`]) instead of waiting when the commit queue is
    /// full.
    pub fn try_commit(&self, tx: Transaction, finality: Finality) -> Result<CommitOutcome, Error> {
        self.commit_by(Who::Anonymous, tx, finality, Admission::FailFast)
    }

    /// Async form of [`AedbInstance::commit_with`] for callers on an async runtime: it
    /// never blocks the executor thread.
    pub async fn commit_async(
        &self,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, Error> {
        self.commit_async_by(Who::Anonymous, tx, finality).await
    }

    /// Commits `tx` on behalf of `caller` with the default finality: every mutation
    /// needs the matching write right (`KvWrite` covering the key, `TableWrite`) and
    /// every assertion the matching read right. A denial changes nothing, is generic
    /// ([`AccessError::Denied`]) and is audited; a failed assertion is recorded in
    /// `assertion_audit` with the assertion's index and the actual value.
    pub fn commit_as(&self, caller: &CallerId, tx: Transaction) -> Result<CommitOutcome, Error> {
        self.commit_by(
            Who::Caller(caller),
            tx,
            self.default_finality,
            Admission::Wait,
        )
    }

    /// [`AedbInstance::commit_as`] with an explicit finality.
    pub fn commit_with_as(
        &self,
        caller: &CallerId,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, Error> {
        self.commit_by(Who::Caller(caller), tx, finality, Admission::Wait)
    }

    /// [`AedbInstance::try_commit`] on behalf of `caller`.
    pub fn try_commit_as(
        &self,
        caller: &CallerId,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, Error> {
        self.commit_by(Who::Caller(caller), tx, finality, Admission::FailFast)
    }

    /// [`AedbInstance::commit_async`] on behalf of `caller`.
    pub async fn commit_async_as(
        &self,
        caller: &CallerId,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, Error> {
        self.commit_async_by(Who::Caller(caller), tx, finality)
            .await
    }

    /// The commit path of the anonymous and `*_as` forms without a deadline.
    fn commit_by(
        &self,
        who: Who<'_>,
        tx: Transaction,
        finality: Finality,
        admission: Admission,
    ) -> Result<CommitOutcome, Error> {
        self.commit_until_by(who, tx, finality, admission, None)
    }

    /// The one commit path of the anonymous and `*_as` forms: refused with
    /// [`CommitError::Timeout`] if the Sequencer dequeues it after `deadline`.
    fn commit_until_by(
        &self,
        who: Who<'_>,
        tx: Transaction,
        finality: Finality,
        admission: Admission,
        deadline: Option<std::time::Instant>,
    ) -> Result<CommitOutcome, Error> {
        self.authorize_commit(who, &tx)?;
        let result = self.pipeline.submit_until(
            who.authority(),
            Request::Transaction(tx),
            finality,
            admission,
            deadline,
        );
        self.audit_outcome(who, &result);
        Ok(result?)
    }

    async fn commit_async_by(
        &self,
        who: Who<'_>,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, Error> {
        self.authorize_commit(who, &tx)?;
        let result = self
            .pipeline
            .submit_async(who.authority(), Request::Transaction(tx), finality)
            .await;
        self.audit_outcome(who, &result);
        Ok(result?)
    }

    fn authorize_commit(&self, who: Who<'_>, tx: &Transaction) -> Result<(), AccessError> {
        let Who::Caller(caller) = who else {
            return self.anonymous();
        };
        let actions = aedb_authz::transaction_actions(tx);
        self.authorize(caller, &actions, "commit").inspect_err(|e| {
            if let (Some(s), AccessError::Denied(denied)) = (&self.security, e) {
                let index = denied.action_index().unwrap_or(0);
                s.audit(AuditEvent {
                    table: AuditTable::Assertion,
                    caller: caller.to_string(),
                    kind: "policy_denied".into(),
                    subject: actions
                        .get(index)
                        .map_or(String::new(), ToString::to_string),
                    detail: denied.reason().as_str().into(),
                });
            }
        })
    }

    /// Records a failed assertion in `assertion_audit`, and a denial by the Sequencer
    /// (the caller's rights were revoked between the check on its thread and
    /// sequencing) like any other denial (secure instances).
    fn audit_outcome(&self, who: Who<'_>, result: &Result<CommitOutcome, CommitError>) {
        if let (Some(s), Who::Caller(caller), Err(CommitError::Access(AccessError::Denied(d)))) =
            (&self.security, who, result)
        {
            // Refused by the Sequencer (rights revoked while the commit was queued):
            // the transaction is gone by now, so it counts under its own label.
            s.denied(caller, "commit", d, secure::SEQUENCER_LABEL);
        }
        if let (
            Some(s),
            Who::Caller(caller),
            Err(CommitError::Rejected(ApplyError::AssertionFailed { index, detail })),
        ) = (&self.security, who, result)
        {
            s.audit(AuditEvent {
                table: AuditTable::Assertion,
                caller: caller.to_string(),
                kind: "assertion_failed".into(),
                subject: index.to_string(),
                detail: detail.clone(),
            });
        }
    }

    /// Applies a DDL statement durably. Refused on secure instances (use
    /// [`AedbInstance::ddl_as`]).
    pub fn ddl(&self, ddl: Ddl) -> Result<CommitOutcome, Error> {
        self.ddl_by(Who::Anonymous, ddl)
    }

    /// Applies a DDL statement on behalf of `caller`: creating a project needs
    /// `GlobalAdmin`, a scope `ProjectAdmin` (or ownership of the project), a table
    /// `TableDdl`/`ScopeAdmin` (or ownership of the scope). The creator becomes the
    /// owner of what it creates; a dropped table's grants and owner are forgotten.
    pub fn ddl_as(&self, caller: &CallerId, ddl: Ddl) -> Result<CommitOutcome, Error> {
        self.ddl_by(Who::Caller(caller), ddl)
    }

    /// The one DDL path of the anonymous and `*_as` forms.
    fn ddl_by(&self, who: Who<'_>, ddl: Ddl) -> Result<CommitOutcome, Error> {
        let action = aedb_authz::ddl_action(&ddl);
        self.permit(who, [&action], "ddl")?;
        let ownership = match (&ddl, &self.security, who) {
            (_, None, _) | (_, _, Who::Anonymous) => None,
            (Ddl::CreateProject { project }, Some(_), Who::Caller(caller)) => {
                Some(authz_actor::PolicyChange::SetOwner {
                    resource: Resource::Project(project.clone()),
                    owner: caller.clone(),
                })
            }
            (Ddl::CreateScope { ns }, Some(_), Who::Caller(caller)) => {
                Some(authz_actor::PolicyChange::SetOwner {
                    resource: Resource::Scope(ns.clone()),
                    owner: caller.clone(),
                })
            }
            (Ddl::CreateTable { ns, table, .. }, Some(_), Who::Caller(caller)) => {
                Some(authz_actor::PolicyChange::SetOwner {
                    resource: Resource::Table {
                        ns: ns.clone(),
                        table: table.clone(),
                    },
                    owner: caller.clone(),
                })
            }
            (Ddl::DropTable { ns, table }, Some(_), Who::Caller(_)) => {
                Some(authz_actor::PolicyChange::Forget(Resource::Table {
                    ns: ns.clone(),
                    table: table.clone(),
                }))
            }
        };
        let result = self.pipeline.submit(
            who.authority(),
            Request::Ddl(ddl),
            Finality::Durable,
            Admission::Wait,
        );
        self.audit_outcome(who, &result);
        let outcome = result?;
        if let (Some(change), Some(s)) = (ownership, &self.security) {
            s.authz.change(CallerId::system(), change)?;
        }
        Ok(outcome)
    }

    /// Creates a project.
    pub fn create_project(&self, project: &str) -> Result<CommitOutcome, Error> {
        let project = ProjectName::new(project)?;
        self.ddl_by(Who::Anonymous, Ddl::CreateProject { project })
    }

    /// Creates a project on behalf of `caller` (`GlobalAdmin`), who becomes its owner.
    pub fn create_project_as(
        &self,
        caller: &CallerId,
        project: &str,
    ) -> Result<CommitOutcome, Error> {
        let project = ProjectName::new(project)?;
        self.ddl_by(Who::Caller(caller), Ddl::CreateProject { project })
    }

    /// Creates a scope (with its KV space) in an existing project.
    pub fn create_scope(&self, project: &str, scope: &str) -> Result<CommitOutcome, Error> {
        let ns = Namespace::parse(project, scope)?;
        self.ddl_by(Who::Anonymous, Ddl::CreateScope { ns })
    }

    /// Creates a scope on behalf of `caller`, who becomes its owner.
    pub fn create_scope_as(
        &self,
        caller: &CallerId,
        project: &str,
        scope: &str,
    ) -> Result<CommitOutcome, Error> {
        let ns = Namespace::parse(project, scope)?;
        self.ddl_by(Who::Caller(caller), Ddl::CreateScope { ns })
    }

    /// Creates a table in a namespace.
    pub fn create_table(
        &self,
        ns: &Namespace,
        table: &str,
        schema: TableSchema,
    ) -> Result<CommitOutcome, Error> {
        self.create_table_by(Who::Anonymous, ns, table, schema)
    }

    /// Creates a table on behalf of `caller`, who becomes its owner.
    pub fn create_table_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        table: &str,
        schema: TableSchema,
    ) -> Result<CommitOutcome, Error> {
        self.create_table_by(Who::Caller(caller), ns, table, schema)
    }

    fn create_table_by(
        &self,
        who: Who<'_>,
        ns: &Namespace,
        table: &str,
        schema: TableSchema,
    ) -> Result<CommitOutcome, Error> {
        let table = TableName::new(table)?;
        self.ddl_by(
            who,
            Ddl::CreateTable {
                ns: ns.clone(),
                table,
                schema,
            },
        )
    }

    /// A one-mutation commit with the default finality.
    fn commit_one(&self, who: Who<'_>, tx: Transaction) -> Result<CommitOutcome, Error> {
        self.commit_by(who, tx, self.default_finality, Admission::Wait)
    }

    /// Puts one KV pair (a one-mutation commit with the default finality).
    pub fn kv_put(
        &self,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_put(ns, KvKey::new(key)?, KvValue::new(value)?);
        self.commit_one(Who::Anonymous, tx)
    }

    /// [`AedbInstance::kv_put`] on behalf of `caller` (`KvWrite` covering the key).
    pub fn kv_put_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_put(ns, KvKey::new(key)?, KvValue::new(value)?);
        self.commit_one(Who::Caller(caller), tx)
    }

    /// Deletes one KV key (a one-mutation commit with the default finality).
    pub fn kv_delete(&self, ns: &Namespace, key: impl AsRef<[u8]>) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_delete(ns, KvKey::new(key)?);
        self.commit_one(Who::Anonymous, tx)
    }

    /// [`AedbInstance::kv_delete`] on behalf of `caller` (`KvWrite`).
    pub fn kv_delete_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_delete(ns, KvKey::new(key)?);
        self.commit_one(Who::Caller(caller), tx)
    }

    /// Atomically adds `delta` to the number stored at `key` (missing counts as zero);
    /// overflow is an error and changes nothing.
    pub fn kv_add(
        &self,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        delta: Numeric,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_add(ns, KvKey::new(key)?, delta);
        self.commit_one(Who::Anonymous, tx)
    }

    /// [`AedbInstance::kv_add`] on behalf of `caller` (`KvWrite`).
    pub fn kv_add_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        delta: Numeric,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_add(ns, KvKey::new(key)?, delta);
        self.commit_one(Who::Caller(caller), tx)
    }

    /// Atomically subtracts `delta`; underflow is an error and changes nothing.
    pub fn kv_sub(
        &self,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        delta: Numeric,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_sub(ns, KvKey::new(key)?, delta);
        self.commit_one(Who::Anonymous, tx)
    }

    /// [`AedbInstance::kv_sub`] on behalf of `caller` (`KvWrite`).
    pub fn kv_sub_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        delta: Numeric,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_sub(ns, KvKey::new(key)?, delta);
        self.commit_one(Who::Caller(caller), tx)
    }

    /// Reads one KV entry from the latest snapshot.
    pub fn kv_get(&self, ns: &Namespace, key: impl AsRef<[u8]>) -> Result<Option<KvEntry>, Error> {
        self.kv_get_by(Who::Anonymous, ns, key.as_ref())
    }

    /// [`AedbInstance::kv_get`] on behalf of `caller` (`KvRead` covering the key).
    pub fn kv_get_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<KvEntry>, Error> {
        self.kv_get_by(Who::Caller(caller), ns, key.as_ref())
    }

    fn kv_get_by(
        &self,
        who: Who<'_>,
        ns: &Namespace,
        key: &[u8],
    ) -> Result<Option<KvEntry>, Error> {
        // One check against the published policy, without building a CallerSnapshot.
        self.permit(who, [&Action::KvRead { ns, key }], "kv_get")?;
        Ok(self.pipeline.snapshot().kv_get(ns, key)?.cloned())
    }

    /// The latest published snapshot: an immutable view, read on the caller's thread,
    /// that never blocks or is blocked by writers (KV get and scans, table get and
    /// scans, schemas, listings). Refused on secure instances: use
    /// [`AedbInstance::snapshot_as`].
    pub fn snapshot(&self) -> Result<ReadSnapshot, Error> {
        self.anonymous()?;
        Ok(ReadSnapshot::new(self.pipeline.snapshot()))
    }

    /// The latest published snapshot for `caller`: every read on it is checked against
    /// the policy published at the same moment, on the caller's thread (no actor hop),
    /// and denials are audited. On an open instance nothing is checked.
    pub fn snapshot_as(&self, caller: &CallerId) -> CallerSnapshot {
        let state = self.pipeline.snapshot();
        match &self.security {
            Some(s) => {
                let policy = if caller.is_system() {
                    CallerPolicy::nothing()
                } else {
                    s.policy().for_caller(caller)
                };
                CallerSnapshot::new(state, Some(policy), caller.clone(), Some(s.reader()))
            }
            None if caller.is_system() => {
                CallerSnapshot::new(state, Some(CallerPolicy::nothing()), caller.clone(), None)
            }
            None => CallerSnapshot::new(state, None, caller.clone(), None),
        }
    }

    /// A plain copy of the engine's counters (commit, fsync, checkpoint, recovery,
    /// authz and audit figures). Counters reveal no stored data, so this is allowed
    /// anonymously on secure instances too, for monitoring agents.
    pub fn operational_metrics(&self) -> OperationalMetrics {
        self.pipeline.metrics()
    }

    /// Makes every commit acknowledged so far (including `Visible` ones) durable.
    /// Reveals and changes no data, so it is allowed anonymously.
    pub fn flush(&self) -> Result<(), Error> {
        Ok(self.pipeline.flush()?)
    }

    /// Writes a checkpoint of the newest state now, off the commit path (commits go
    /// on meanwhile), then retires checkpoints and WAL segments it makes redundant.
    /// Checkpoints also run automatically (see `AedbConfig::checkpoint_wal_bytes` and
    /// `checkpoint_interval`). Recovery starts from the newest checkpoint that
    /// authenticates, so open time does not grow with total history.
    pub fn checkpoint_now(&self) -> Result<CheckpointReport, Error> {
        self.checkpoint_now_by(Who::Anonymous)
    }

    /// [`AedbInstance::checkpoint_now`] on behalf of `caller` (`GlobalAdmin`).
    pub fn checkpoint_now_as(&self, caller: &CallerId) -> Result<CheckpointReport, Error> {
        self.checkpoint_now_by(Who::Caller(caller))
    }

    fn checkpoint_now_by(&self, who: Who<'_>) -> Result<CheckpointReport, Error> {
        self.permit(who, [&Action::Checkpoint], "checkpoint")?;
        let report = self.pipeline.checkpoint_now()?;
        self.sync_session_epochs();
        Ok(report)
    }

    /// Applies key-epoch retirements (done by checkpoints) to the session authority.
    fn sync_session_epochs(&self) {
        if let Some(s) = &self.security
            && let Err(e) = s.sync_retired_epochs(&self.pipeline)
        {
            tracing::warn!("session capsules of retired key epochs stay verifiable: {e}");
        }
    }

    /// Rotates keys: starts a new key epoch (recorded in the manifest), seals new WAL
    /// batches under it, and takes a checkpoint under it. Files sealed under older
    /// epochs stay readable while the manifest references them; they are retired as
    /// newer checkpoints make them redundant. Opening with a provider pointed at a new
    /// master version (the HSM rotation runbook) starts a new epoch the same way.
    pub fn rotate_keys(&self) -> Result<KeyEpoch, Error> {
        self.rotate_keys_by(Who::Anonymous)
    }

    /// [`AedbInstance::rotate_keys`] on behalf of `caller` (`GlobalAdmin`); the
    /// rotation is recorded in `authz_audit`.
    pub fn rotate_keys_as(&self, caller: &CallerId) -> Result<KeyEpoch, Error> {
        self.rotate_keys_by(Who::Caller(caller))
    }

    fn rotate_keys_by(&self, who: Who<'_>) -> Result<KeyEpoch, Error> {
        // One audit row per call: `key_rotation` naming the new epoch, or an
        // `admin_action` row saying the authorised rotation failed.
        let audited = match (&self.security, who) {
            (Some(s), Who::Caller(caller)) => {
                s.check_deferring_row(caller, [&Action::RotateKeys], "rotate_keys")?;
                Some((s, caller))
            }
            _ => {
                self.permit(who, [&Action::RotateKeys], "rotate_keys")?;
                None
            }
        };
        let epoch = match self.pipeline.rotate_keys() {
            Ok((epoch, _)) => epoch,
            Err(e) => {
                if let Some((s, caller)) = audited {
                    s.admin_row(caller, "rotate_keys", "failed");
                }
                return Err(e.into());
            }
        };
        if let (Some(s), Who::Caller(caller)) = (&self.security, who) {
            if let Err(e) = s.start_session_epoch(&self.pipeline, epoch) {
                // Capsules keep verifying under the previous epoch; say why new ones
                // are not yet issued under the new one.
                tracing::warn!("session capsules stay on the previous epoch: {e}");
            }
            self.sync_session_epochs();
            s.audit(AuditEvent {
                table: AuditTable::Authz,
                caller: caller.to_string(),
                kind: "key_rotation".into(),
                subject: epoch.to_string(),
                detail: String::new(),
            });
        }
        Ok(epoch)
    }

    /// [`AedbInstance::operational_metrics`] on behalf of `caller` (`ReadMetrics`).
    pub fn operational_metrics_as(&self, caller: &CallerId) -> Result<OperationalMetrics, Error> {
        self.authorize(caller, [&Action::ReadMetrics], "read_metrics")?;
        Ok(self.pipeline.metrics())
    }

    /// Grants `permission` to `grantee` on behalf of `caller`, who needs authority
    /// over it (`GlobalAdmin`, an admin or owner covering it, or a delegable grant of
    /// it). Durable and audited before it returns; visible to the next read.
    pub fn grant_as(
        &self,
        caller: &CallerId,
        grantee: &CallerId,
        permission: Permission,
        delegable: bool,
    ) -> Result<AuthzChange, Error> {
        Self::not_system(caller)?;
        Ok(self.security()?.authz.change(
            caller.clone(),
            authz_actor::PolicyChange::Grant {
                grantee: grantee.clone(),
                permission,
                delegable,
            },
        )?)
    }

    /// Revokes `permission` from `grantee` on behalf of `caller`; delegated grants
    /// that relied on it are revoked with it. Durable and audited.
    pub fn revoke_as(
        &self,
        caller: &CallerId,
        grantee: &CallerId,
        permission: Permission,
    ) -> Result<AuthzChange, Error> {
        Self::not_system(caller)?;
        Ok(self.security()?.authz.change(
            caller.clone(),
            authz_actor::PolicyChange::Revoke {
                grantee: grantee.clone(),
                permission,
            },
        )?)
    }

    /// Transfers ownership of `resource` to `new_owner` on behalf of `caller` (its
    /// owner, or an admin covering it). Durable and audited.
    pub fn transfer_ownership_as(
        &self,
        caller: &CallerId,
        resource: Resource,
        new_owner: &CallerId,
    ) -> Result<AuthzChange, Error> {
        Self::not_system(caller)?;
        Ok(self.security()?.authz.change(
            caller.clone(),
            authz_actor::PolicyChange::TransferOwnership {
                resource,
                new_owner: new_owner.clone(),
            },
        )?)
    }

    /// The rows of one audit table, after every event queued so far is written
    /// (`GlobalAdmin`, through the normal read path).
    pub fn audit_rows_as(
        &self,
        caller: &CallerId,
        table: AuditTable,
    ) -> Result<Vec<AuditRow>, Error> {
        let s = self.security()?;
        s.check(caller, [&Action::ReadAudit], "read_audit")?;
        self.audit_rows_checked(s, table)
    }

    /// The rows of `table` after everything queued is written; the caller was checked.
    fn audit_rows_checked(
        &self,
        s: &secure::Security,
        table: AuditTable,
    ) -> Result<Vec<AuditRow>, Error> {
        s.audit.flush()?;
        aedb_actors::audit::read_rows(&self.pipeline.snapshot(), table)
            .map_err(|e| Error::Security(SecurityError::Audit(e)))
    }

    /// Both audit tables for one admin call (`what`): one check, one `admin_action`
    /// row (written before the read, so the rows returned include it).
    fn all_audit_rows(&self, caller: &CallerId, what: &str) -> Result<Vec<AuditRow>, Error> {
        let s = self.security()?;
        s.check(caller, [&Action::ReadAudit], what)?;
        let mut rows = self.audit_rows_checked(s, AuditTable::Authz)?;
        rows.extend(self.audit_rows_checked(s, AuditTable::Assertion)?);
        Ok(rows)
    }

    /// Verifies both audit chains as stored (`GlobalAdmin`); returns the row count of
    /// each table.
    pub fn verify_audit_as(&self, caller: &CallerId) -> Result<Vec<(AuditTable, u64)>, Error> {
        let s = self.security()?;
        let rows = self.all_audit_rows(caller, "verify_audit")?;
        secure::verify_audit_rows(&rows, |id| s.audit_key_for(id))
    }

    /// Writes both audit tables as JSON lines to `out` (created; an existing file is
    /// refused) for immutable storage, after verifying their chains. The export alone,
    /// with the audit key, verifies ([`read_audit_export`], [`verify_audit_rows`],
    /// `aedb audit verify`). Needs `GlobalAdmin`.
    pub fn export_audit_as(
        &self,
        caller: &CallerId,
        out: impl AsRef<Path>,
    ) -> Result<AuditExport, Error> {
        let s = self.security()?;
        let rows = self.all_audit_rows(caller, "export_audit")?;
        let counts = secure::verify_audit_rows(&rows, |id| s.audit_key_for(id))?;
        secure::export_rows(&*self.fs, self.database_id(), &rows, &counts, out.as_ref())
    }

    /// Issues a sealed session capsule for `subject` (the IHP runbook): bound to this
    /// server's profile id and environment hash, the current key epoch, the issue time
    /// and — when given — the connection's channel binding (for example its TLS exporter
    /// material), so it verifies only on that channel. `issuer` may issue for itself;
    /// issuing for another caller needs `GlobalAdmin` (`ManageSessions`).
    pub fn issue_session_as(
        &self,
        issuer: &CallerId,
        subject: &CallerId,
        channel: Option<&ChannelBinding>,
    ) -> Result<SessionCapsule, Error> {
        let s = self.security()?;
        if issuer != subject {
            s.check(issuer, [&Action::ManageSessions], "issue_session")?;
        }
        Ok(s.sessions()?.issue(subject, UnixMicros::now(), channel)?)
    }

    /// Verifies a presented capsule on `channel` and returns the caller it
    /// authenticates, for the `*_as` calls. Checks version, header, tag, environment
    /// hash, channel, revocations, key epoch, timestamp drift and the replay cache (a
    /// capsule is accepted once); each refusal is a distinct [`CapsuleError`].
    pub fn verify_session(
        &self,
        capsule: &[u8],
        channel: Option<&ChannelBinding>,
    ) -> Result<CallerId, Error> {
        let s = self.security()?;
        Ok(s.sessions()?
            .verify(capsule, UnixMicros::now(), channel)?
            .into_caller())
    }

    /// Revokes a server profile durably (recorded in `_system/authz`, audited in
    /// `authz_audit`, reloaded at every open): capsules bound to it are refused from
    /// now on. Needs `GlobalAdmin`.
    pub fn revoke_server_profile_as(
        &self,
        caller: &CallerId,
        profile: ServerProfileId,
    ) -> Result<(), Error> {
        self.revoke_session_key(caller, format!("profile/{profile}"))
    }

    /// Revokes a server environment hash durably, like
    /// [`AedbInstance::revoke_server_profile_as`].
    pub fn revoke_server_env_hash_as(
        &self,
        caller: &CallerId,
        env_hash: ServerEnvHash,
    ) -> Result<(), Error> {
        self.revoke_session_key(caller, format!("env/{env_hash}"))
    }

    /// Revokes every session capsule of `subject` issued up to now, durably (recorded in
    /// `_system/authz`, audited in `authz_audit` as `session_revoked`, reloaded at every
    /// open): the runbook's "rotate application credentials". Capsules issued afterwards
    /// are accepted, so the caller re-authenticates and carries on. Needs `GlobalAdmin`.
    pub fn revoke_caller_sessions_as(
        &self,
        caller: &CallerId,
        subject: &CallerId,
    ) -> Result<(), Error> {
        let cutoff = UnixMicros::now().as_micros();
        self.revoke_session_key(caller, format!("caller/{cutoff}/{subject}"))
    }

    fn revoke_session_key(&self, caller: &CallerId, key: String) -> Result<(), Error> {
        Self::not_system(caller)?;
        let s = self.security()?;
        s.authz.change(
            caller.clone(),
            authz_actor::PolicyChange::RevokeSession { key: key.clone() },
        )?;
        if let Some(sessions) = &s.sessions {
            secure::apply_revocation(sessions, &key);
        }
        Ok(())
    }

    /// The session capsule counters (issued, verified, each refusal cause), when
    /// sessions are enabled.
    pub fn session_metrics(&self) -> Option<IhpMetricsSnapshot> {
        self.security
            .as_ref()
            .and_then(|s| s.sessions.as_ref())
            .map(SessionAuthority::metrics)
    }

    /// This server's environment hash (recorded in the manifest), when sessions are
    /// enabled.
    pub fn server_env_hash(&self) -> Option<ServerEnvHash> {
        self.security
            .as_ref()
            .and_then(|s| s.sessions.as_ref())
            .map(SessionAuthority::env_hash)
    }

    /// The security actors; [`UsageError::NotSecure`] on an instance opened without
    /// `open_secure`.
    fn security(&self) -> Result<&Security, Error> {
        self.security
            .as_ref()
            .ok_or(Error::Usage(UsageError::NotSecure))
    }

    /// This database's random identity, fixed at creation and bound into every
    /// sealed file.
    pub fn database_id(&self) -> DatabaseId {
        self.pipeline.database_id()
    }

    /// The fault injector wired into this instance's WAL writes, fsyncs and renames
    /// (for tests; unarmed it costs one relaxed atomic load per operation).
    pub fn fault_injector(&self) -> &FaultInjector {
        &self.faults
    }

    /// Flushes everything, stops the actors and releases the directory lock.
    pub fn shutdown(mut self) -> Result<(), Error> {
        if let Some(mut scheduler) = self.backup_scheduler.take() {
            scheduler.stop();
        }
        if let Some(security) = self.security.take() {
            security.stop();
        }
        Ok(self.pipeline.shutdown()?)
    }
}

/// Who makes a call: the anonymous form (refused on secure instances) or the `*_as`
/// form of an authenticated caller. Both forms of a call share one implementation.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Who<'a> {
    /// The anonymous form.
    Anonymous,
    /// The `*_as` form.
    Caller(&'a CallerId),
}

impl Who<'_> {
    /// Whose rights the Sequencer checks again when it sequences the call's commit.
    fn authority(self) -> Authority {
        match self {
            Who::Anonymous => Authority::default(),
            Who::Caller(caller) => Authority::caller(caller.clone()),
        }
    }
}

/// The README's example runs as a doctest, so it cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
