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

mod admin;
mod audit_export;
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
mod write;

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
    IdempotencyRecord, IdempotencyRetention, KeyRange, KvEntry, KvKey, KvOperand, KvValue,
    Mutation, Namespace, Numeric, NumericType, Outcome, Page, ProjectName, Rejection,
    RequestFingerprint, RequestStamp, RetentionError, Row, ScopeName, State, TableName,
    TableSchema, Timestamp, Transaction, Value,
};
pub use aedb_types::Lsn;
pub use aedb_wal::{FaultInjector, FaultKind, FaultMode, FaultPoint, RecoveredWal};
pub use backup::{
    BackupError, BackupKind, BackupManifest, BackupReport, CaptureReport, RestoreOptions,
    RestoreReport, capture_offline, restore_from_backup_chain, verify_capture,
};
pub use config::{
    AedbConfig, BlockCompression, DEFAULT_COMMIT_SPIN, MAX_COMMIT_SPIN, MemoryBudget, Profile,
    RUN_BLOCK_SIZES, Recovery, TablePlacement,
};
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
pub use audit_export::{
    AuditExport, audit_key_for, parse_audit_export, read_audit_export, verify_audit_export,
    verify_audit_rows,
};
pub use secure::{CallerSnapshot, SecureConfig};

pub use aedb_actors::{CheckpointFailure, CheckpointReport, CompactionReport, WAL_DIR};
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
    /// Whether backups may hard-link run files (`AedbConfig::backup_hard_links`).
    backup_hard_links: bool,
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
            commit_spin: config.commit_spin,
            keyring: config.keyring().map_err(StartError::from)?,
            checkpoints: config.checkpoints,
            checkpoint_on_shutdown: config.checkpoint_on_shutdown,
            manifest_compact_after: config.manifest_compact_after,
            storage: aedb_actors::StorageConfig {
                memtable_bytes: config.memory.memtable_bytes,
                immutable_memtables: config.memory.immutable_memtables,
                block_cache_bytes: config.memory.block_cache_bytes,
                table_placement: config.table_placement,
                retention_lsns: config.history_retention,
                run_options: aedb_checkpoint::RunOptions {
                    compression: config.block_compression,
                    block_size: config.run_block_size,
                    ..aedb_checkpoint::RunOptions::default()
                },
                idempotency_retention: config.idempotency_retention,
                compaction: aedb_storage::compaction::CompactionOptions {
                    threads: config.compaction_threads,
                    target_file_bytes: config.run_file_bytes,
                    ..aedb_storage::compaction::CompactionOptions::default()
                },
                ..aedb_actors::StorageConfig::default()
            },
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
            backup_hard_links: config.backup_hard_links,
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

    /// Writes an incremental checkpoint now, off the commit path (commits go on
    /// meanwhile): the memtable is frozen and written as one sealed run file holding
    /// only what changed since the last checkpoint, then the WAL it covers is retired.
    /// Checkpoints also run automatically (when the memtable is full, and see
    /// `AedbConfig::checkpoint_wal_bytes` and `checkpoint_interval`). Open reads the
    /// run files' metadata and replays only the WAL after the last checkpoint, so open
    /// time does not grow with the data.
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

    /// Runs a full compaction now: every run file merged into the bottom level, dropping
    /// every version the retention window does not need and every tombstone, then any
    /// leveled compaction still due. Leveled compactions also run by themselves, in the
    /// background and rate-limited. Replaced files are deleted once no snapshot reads
    /// them.
    pub fn compact_now(&self) -> Result<CompactionReport, Error> {
        self.compact_now_by(Who::Anonymous)
    }

    /// [`AedbInstance::compact_now`] on behalf of `caller` (`GlobalAdmin`).
    pub fn compact_now_as(&self, caller: &CallerId) -> Result<CompactionReport, Error> {
        self.compact_now_by(Who::Caller(caller))
    }

    fn compact_now_by(&self, who: Who<'_>) -> Result<CompactionReport, Error> {
        self.permit(who, [&Action::Checkpoint], "compact")?;
        Ok(self.pipeline.compact_now()?)
    }

    /// Re-seals every run file sealed under an older key epoch under the current one
    /// (after [`AedbInstance::rotate_keys`]), so the next checkpoint can retire the old
    /// epochs. Compaction re-seals them by itself over time; this forces it now.
    pub fn reseal_now(&self) -> Result<CompactionReport, Error> {
        self.reseal_now_by(Who::Anonymous)
    }

    /// [`AedbInstance::reseal_now`] on behalf of `caller` (`GlobalAdmin`).
    pub fn reseal_now_as(&self, caller: &CallerId) -> Result<CompactionReport, Error> {
        self.reseal_now_by(Who::Caller(caller))
    }

    fn reseal_now_by(&self, who: Who<'_>) -> Result<CompactionReport, Error> {
        self.permit(who, [&Action::Checkpoint], "reseal")?;
        let report = self.pipeline.reseal_now()?;
        // Retire what the re-seal freed (a checkpoint retires unused epochs).
        self.pipeline.checkpoint_now()?;
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
