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
//! let snapshot = db.snapshot();
//! assert_eq!(snapshot.lsn(), outcome.lsn);
//! assert_eq!(snapshot.kv_get_numeric(&ns, b"bob", aedb::NumericType::U64)?, Numeric::U64(30));
//! db.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

pub mod backup;
mod config;
mod error;
mod golden;
mod lock;
pub mod offline;
pub mod parity;

use std::future::Future;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aedb_actors::{Admission, Pipeline, PipelineConfig, Request};
use aedb_wal::{RecoveryMode, SyncPolicy, WalConfig};

pub use aedb_actors::{
    CommitOutcome, ErrorCounts, Finality, HistogramSnapshot, OperationalMetrics,
};
pub use aedb_model::{
    Assertion, ColumnDef, ColumnName, ColumnType, CompareOp, Ddl, Direction, IdempotencyKey,
    KeyRange, KvEntry, KvKey, KvOperand, KvValue, Mutation, Namespace, Numeric, NumericType, Page,
    ProjectName, Row, ScopeName, State, TableName, TableSchema, Timestamp, Transaction, Value,
};
pub use aedb_types::Lsn;
pub use aedb_wal::{FaultInjector, FaultMode, FaultPoint, RecoveredWal};
pub use backup::{
    BackupError, BackupKind, BackupManifest, BackupReport, RestoreOptions, RestoreReport,
    restore_from_backup_chain,
};
pub use config::{AedbConfig, Profile, Recovery};
pub use error::{
    ApplyError, CommitError, CommitErrorExt, ConfigError, Error, LimitError, LockError, NameError,
    OpenError, ReadError, StartError,
};
pub use golden::{GoldenCapsule, GoldenMismatch, golden_capsules};

use lock::DirLock;

pub use aedb_actors::{CheckpointFailure, CheckpointReport, WAL_DIR};
pub use aedb_keys::{
    EpochKey, HsmConfig, HsmKeyProvider, InMemoryKeyProvider, KeyProvider, SecretKey,
};
pub use aedb_types::{DatabaseId, KeyEpoch};

/// An open aedb database.
///
/// All methods take `&self`: share the instance between threads with an `Arc`.
/// Writes go through the single-writer pipeline; reads use [`AedbInstance::snapshot`]
/// on the caller's thread.
pub struct AedbInstance {
    pipeline: Pipeline,
    dir: PathBuf,
    default_finality: Finality,
    faults: FaultInjector,
    recovered: RecoveredWal,
    backup_keys: Arc<dyn KeyProvider>,
    _lock: DirLock,
}

impl std::fmt::Debug for AedbInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AedbInstance")
            .field("dir", &self.dir)
            .field("default_finality", &self.default_finality)
            .finish_non_exhaustive()
    }
}

impl AedbInstance {
    /// Opens (creating if needed) the database in `dir`, recovering its WAL.
    ///
    /// Fails with [`OpenError::Lock`] if another instance — in this process or another
    /// — has `dir` open, and with [`OpenError::Recovery`] naming the file and offset if
    /// the WAL is corrupt (strict profiles).
    pub fn open(dir: impl AsRef<Path>, config: AedbConfig) -> Result<AedbInstance, OpenError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|source| OpenError::Io {
            path: dir.clone(),
            source,
        })?;
        let lock = DirLock::acquire(&dir)?;
        if config.profile == Profile::Development {
            eprintln!(
                "aedb: WARNING: {} is open with the development profile: fsync is OFF, \
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
        let (pipeline, recovered) = Pipeline::start(&dir, pipeline_config)?;
        Ok(AedbInstance {
            backup_keys,
            pipeline,
            dir,
            default_finality: config.default_finality,
            faults,
            recovered,
            _lock: lock,
        })
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
    /// commit queue if it is full.
    pub fn commit(&self, tx: Transaction) -> Result<CommitOutcome, CommitError> {
        self.commit_with(tx, self.default_finality)
    }

    /// Commits `tx` with an explicit finality.
    pub fn commit_with(
        &self,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, CommitError> {
        self.pipeline
            .commit(Request::Transaction(tx), finality, Admission::Wait)
    }

    /// Like [`AedbInstance::commit_with`], but fails with [`CommitError::Busy`] instead
    /// of waiting when the commit queue is full.
    pub fn try_commit(
        &self,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, CommitError> {
        self.pipeline
            .commit(Request::Transaction(tx), finality, Admission::FailFast)
    }

    /// Async form of [`AedbInstance::commit_with`] for callers on an async runtime: it
    /// never blocks the executor thread.
    pub fn commit_async(
        &self,
        tx: Transaction,
        finality: Finality,
    ) -> impl Future<Output = Result<CommitOutcome, CommitError>> + '_ {
        self.pipeline
            .commit_async(Request::Transaction(tx), finality)
    }

    /// Applies a DDL statement durably.
    pub fn ddl(&self, ddl: Ddl) -> Result<CommitOutcome, CommitError> {
        self.pipeline
            .commit(Request::Ddl(ddl), Finality::Durable, Admission::Wait)
    }

    /// Creates a project.
    pub fn create_project(&self, project: &str) -> Result<CommitOutcome, Error> {
        let project = ProjectName::new(project)?;
        Ok(self.ddl(Ddl::CreateProject { project })?)
    }

    /// Creates a scope (with its KV space) in an existing project.
    pub fn create_scope(&self, project: &str, scope: &str) -> Result<CommitOutcome, Error> {
        let ns = Namespace::parse(project, scope)?;
        Ok(self.ddl(Ddl::CreateScope { ns })?)
    }

    /// Creates a table in a namespace.
    pub fn create_table(
        &self,
        ns: &Namespace,
        table: &str,
        schema: TableSchema,
    ) -> Result<CommitOutcome, Error> {
        let table = TableName::new(table)?;
        Ok(self.ddl(Ddl::CreateTable {
            ns: ns.clone(),
            table,
            schema,
        })?)
    }

    /// Puts one KV pair (a one-mutation commit with the default finality).
    pub fn kv_put(
        &self,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_put(ns, KvKey::new(key)?, KvValue::new(value)?);
        Ok(self.commit(tx)?)
    }

    /// Deletes one KV key (a one-mutation commit with the default finality).
    pub fn kv_delete(&self, ns: &Namespace, key: impl AsRef<[u8]>) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_delete(ns, KvKey::new(key)?);
        Ok(self.commit(tx)?)
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
        Ok(self.commit(tx)?)
    }

    /// Atomically subtracts `delta`; underflow is an error and changes nothing.
    pub fn kv_sub(
        &self,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        delta: Numeric,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_sub(ns, KvKey::new(key)?, delta);
        Ok(self.commit(tx)?)
    }

    /// Reads one KV entry from the latest snapshot.
    pub fn kv_get(&self, ns: &Namespace, key: impl AsRef<[u8]>) -> Result<Option<KvEntry>, Error> {
        Ok(self.snapshot().kv_get(ns, key.as_ref())?.cloned())
    }

    /// The latest published snapshot: an immutable view, read on the caller's thread,
    /// that never blocks or is blocked by writers. All of [`State`]'s read methods
    /// (KV get and scans, table get and scans, schemas, listings) are available on it.
    pub fn snapshot(&self) -> ReadSnapshot {
        ReadSnapshot(self.pipeline.snapshot())
    }

    /// A plain copy of the engine's counters.
    pub fn operational_metrics(&self) -> OperationalMetrics {
        self.pipeline.metrics()
    }

    /// Makes every commit acknowledged so far (including `Visible` ones) durable.
    pub fn flush(&self) -> Result<(), CommitError> {
        self.pipeline.flush()
    }

    /// Writes a checkpoint of the newest state now, off the commit path (commits go
    /// on meanwhile), then retires checkpoints and WAL segments it makes redundant.
    /// Checkpoints also run automatically (see `AedbConfig::checkpoint_wal_bytes` and
    /// `checkpoint_interval`). Recovery starts from the newest checkpoint that
    /// authenticates, so open time does not grow with total history.
    pub fn checkpoint_now(&self) -> Result<CheckpointReport, CheckpointFailure> {
        self.pipeline.checkpoint_now()
    }

    /// Rotates keys: starts a new key epoch (recorded in the manifest), seals new WAL
    /// batches under it, and takes a checkpoint under it. Files sealed under older
    /// epochs stay readable while the manifest references them; they are retired as
    /// newer checkpoints make them redundant. Opening with a provider pointed at a new
    /// master version (the HSM rotation runbook) starts a new epoch the same way.
    pub fn rotate_keys(&self) -> Result<KeyEpoch, CheckpointFailure> {
        self.pipeline.rotate_keys().map(|(epoch, _)| epoch)
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
    pub fn shutdown(mut self) -> Result<(), CommitError> {
        self.pipeline.shutdown()
    }
}

/// An immutable snapshot of the database at one LSN; dereferences to [`State`] for
/// every read.
#[derive(Clone, Debug)]
pub struct ReadSnapshot(Arc<State>);

impl Deref for ReadSnapshot {
    type Target = State;
    fn deref(&self) -> &State {
        &self.0
    }
}

/// The README's example runs as a doctest, so it cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
