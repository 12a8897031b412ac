//! Starting, driving and stopping the commit pipeline.
//!
//! [`Pipeline::start`] runs the recovery walk ([`crate::recovery`]) and starts the owners
//! with the one actor pattern ([`crate::actor`]): ManifestChain, WAL writer,
//! CheckpointSealer, Sequencer, in that order (each gets the addresses of those before
//! it); [`Pipeline::shutdown`] stops them in reverse. Callers reach the Sequencer only
//! through the [`Committer`]; readers load the published snapshot on their own thread.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aedb_manifest::{LiveState, ManifestRecord};
use aedb_model::State;
use aedb_sync::SnapshotCell;
use aedb_sync::completion::completion;
use aedb_sync::group_commit::{GroupCommitError, LoopConfig, WriterMsg};
use aedb_sync::mailbox::MailboxSender;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use aedb_wal::{RecoveredWal, RecoveryMode, WalConfig};

use crate::actor::{self, OwnerRef, Running};
use crate::admission::RateLimits;
use crate::checkpoint_sealer::{
    Capture, CaptureFailure, CaptureView, CheckpointFailure, CheckpointPolicy, CheckpointReport,
    Rotate, SealNow, Sealer, SealerContext, ShutdownCheckpoint, WalView,
};
use crate::commit::{Authority, CommitOutcome, Finality, Request};
use crate::committer::{Admission, Committer};
use crate::compactor::{Compact, CompactionReport, Compactor, CompactorContext, Reseal};
use crate::error::{CommitError, StartError};
use crate::freeze::{WriteFreeze, load_write_freeze};
use crate::keyring::Keyring;
use crate::manifest_chain::{GetLiveState, ManifestChain, Record};
use crate::metrics::{EngineMetrics, OperationalMetrics};
use crate::recovery::{self, Recovered};
use crate::runs::{FileIds, RunOpener};
use crate::sequencer::{Flush, Sequencer, WriteLimits};
use crate::wal_writer::{self, WalBackupView, WalControl, WalMsg, WalWriterOwner};
use aedb_storage::BlockCache;

/// Knobs of the pipeline (validated by the engine's `AedbConfig`).
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// WAL segment size, preallocation, sync policy and fault injection.
    pub wal: WalConfig,
    /// What recovery does on corruption.
    pub recovery: RecoveryMode,
    /// Longest a `Visible` commit waits for its fsync.
    pub flush_interval: Duration,
    /// Sequencer mailbox bound.
    pub sequencer_queue: usize,
    /// WAL writer mailbox bound.
    pub wal_queue: usize,
    /// Most records per group-commit batch.
    pub max_batch: usize,
    /// How long a lone committer waits for its answer, and the Sequencer and the WAL
    /// writer for a lone committer's next commit, by polling before they sleep (zero:
    /// never poll).
    pub commit_spin: Duration,
    /// Key providers (manifest MAC, at-rest encryption).
    pub keyring: Keyring,
    /// When automatic checkpoints run.
    pub checkpoints: CheckpointPolicy,
    /// Checkpoint at a clean shutdown (the memtable flushed to a run, the WAL segment
    /// it covers retired), so the next open replays nothing.
    pub checkpoint_on_shutdown: bool,
    /// Compact the manifest once it holds this many records.
    pub manifest_compact_after: u64,
    /// Memtable, block cache and run-file knobs.
    pub storage: StorageConfig,
}

/// Memory and run-file knobs of the LSM.
#[derive(Clone, Copy, Debug)]
pub struct StorageConfig {
    /// Freeze (and flush) the active memtable once it holds this many bytes.
    pub memtable_bytes: usize,
    /// At most this many frozen memtables wait for their flush; commits wait beyond
    /// (see [`WriteLimits`]).
    pub immutable_memtables: usize,
    /// Bytes of decoded blocks the block cache holds.
    pub block_cache_bytes: u64,
    /// Where open runs keep their tables.
    pub table_placement: aedb_storage::TablePlacement,
    /// Block size, filter and compression of new run files.
    pub run_options: aedb_checkpoint::RunOptions,
    /// Compaction triggers and sizes.
    pub compaction: aedb_storage::compaction::CompactionOptions,
    /// Reads as of this many LSNs before the newest stay possible (`snapshot_at`);
    /// compaction keeps the versions they need.
    pub retention_lsns: u64,
    /// Compaction writes at most this many bytes per second (0: unlimited); it
    /// ignores the limit while writers are slowed down or stalled.
    pub compaction_bytes_per_sec: u64,
    /// The write rate at the start of the write slowdown (0: none); see
    /// [`WriteLimits::slowdown_bytes_per_sec`].
    pub write_slowdown_bytes_per_sec: u64,
    /// How long idempotency records are honoured by the Sequencer and kept by
    /// compaction.
    pub idempotency_retention: aedb_model::IdempotencyRetention,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            memtable_bytes: 64 << 20,
            immutable_memtables: 2,
            block_cache_bytes: 128 << 20,
            table_placement: aedb_storage::TablePlacement::Auto,
            run_options: aedb_checkpoint::RunOptions::default(),
            compaction: aedb_storage::compaction::CompactionOptions::default(),
            retention_lsns: 0,
            compaction_bytes_per_sec: 128 << 20,
            write_slowdown_bytes_per_sec: crate::sequencer::DEFAULT_SLOWDOWN_BYTES_PER_SEC,
            idempotency_retention: aedb_model::IdempotencyRetention::DEFAULT,
        }
    }
}

/// The running commit pipeline: the owners (Sequencer, WAL writer, CheckpointSealer,
/// ManifestChain) and the published snapshot.
pub struct Pipeline {
    committer: Committer,
    snapshots: Arc<SnapshotCell<State>>,
    metrics: Arc<EngineMetrics>,
    wal_mailbox: Option<MailboxSender<WalMsg>>,
    sequencer: Running<Sequencer>,
    wal_writer: Running<WalWriterOwner>,
    sealer: Running<Sealer>,
    compactor: Running<Compactor>,
    manifest: Running<ManifestChain>,
    cache: Arc<BlockCache>,
    compaction: aedb_storage::compaction::CompactionOptions,
    database: DatabaseId,
    /// Set once the instance fail-stopped (nothing more is written then).
    fail_stopped: Arc<std::sync::atomic::AtomicBool>,
    /// Checkpoint at a clean shutdown (see [`PipelineConfig::checkpoint_on_shutdown`]).
    checkpoint_on_shutdown: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("visible_lsn", &self.snapshots.version())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Opens the durable files of `data_dir` (manifest, newest authenticating
    /// checkpoint, WAL after it) and starts the actors. Returns the pipeline and what
    /// WAL recovery found.
    pub fn start(
        data_dir: &Path,
        mut config: PipelineConfig,
    ) -> Result<(Pipeline, RecoveredWal), StartError> {
        // Recovery: manifest, newest checkpoint, WAL replay (paths only, never keys).
        #[cfg(feature = "observability")]
        let span = tracing::info_span!(
            "aedb.recovery",
            data_dir = %data_dir.display(),
            checkpoint_lsn = tracing::field::Empty,
            frames = tracing::field::Empty,
            lsn = tracing::field::Empty,
        )
        .entered();
        let started = Instant::now();
        let metrics = Arc::new(EngineMetrics::default());
        let fs = config.wal.fs.clone();
        let cache = Arc::new(BlockCache::with_placement(
            config.storage.block_cache_bytes,
            config.storage.table_placement,
        ));
        let Recovered {
            manifest,
            epochs,
            epoch: (epoch, master),
            state,
            checkpoint_lsn,
            checkpoint_fallbacks,
            events,
            wal: recovered,
            writer,
        } = recovery::recover(
            data_dir,
            &mut config.wal,
            config.recovery,
            &config.keyring,
            &cache,
        )?;
        let database = manifest.database_id();
        let file_ids = Arc::new(FileIds::new(manifest.live_state().next_file_id()));
        for event in &events {
            metrics.count_recovery_event(event.kind);
        }
        for backup in manifest.live_state().backups() {
            if let Some(full) = backup.is_full() {
                metrics.backups.record(full, backup.at_unix_ms);
            }
        }
        metrics
            .key_epoch
            .store(u64::from(epoch.get()), Ordering::Relaxed);
        metrics
            .recovery_checkpoint_fallbacks
            .store(checkpoint_fallbacks, Ordering::Relaxed);
        metrics
            .checkpoint_lsn
            .store(checkpoint_lsn.get(), Ordering::Relaxed);
        metrics
            .recovery_frames
            .store(state.lsn().get() - checkpoint_lsn.get(), Ordering::Relaxed);
        metrics
            .recovery_torn_tail_bytes
            .store(recovered.torn_tail_bytes(), Ordering::Relaxed);
        let lsn = state.lsn().get();
        #[cfg(feature = "observability")]
        {
            span.record("checkpoint_lsn", checkpoint_lsn.get());
            span.record("frames", lsn - checkpoint_lsn.get());
            span.record("lsn", lsn);
        }
        metrics.durable_lsn.store(lsn, Ordering::Relaxed);
        metrics.visible_lsn.store(lsn, Ordering::Relaxed);

        let thread_error = |what| move |source| StartError::Thread { what, source };
        // Raised by the WAL writer or the manifest on a failed write; the sequencer
        // refuses every commit once it is set.
        let fail_stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let snapshots = Arc::new(SnapshotCell::new(lsn, Arc::new(state.clone())));
        let owners = &metrics.owners;
        let manifest = actor::spawn(
            ManifestChain::new(
                manifest,
                config.manifest_compact_after,
                metrics.clone(),
                fail_stopped.clone(),
            ),
            64,
            owners.manifest.clone(),
        )
        .map_err(thread_error("manifest"))?;
        let wal = wal_writer::spawn(
            writer,
            snapshots.clone(),
            metrics.clone(),
            config.wal_queue,
            LoopConfig {
                flush_interval: config.flush_interval,
                max_batch: config.max_batch,
                idle_spin: config.commit_spin,
            },
            manifest.addr().clone(),
            fail_stopped,
        )
        .map_err(thread_error("WAL writer"))?;
        // A lone committer's next commit finds the Sequencer awake (as the WAL writer
        // polls for it after a lone batch).
        let sequencer = actor::spawn_polling(
            Sequencer::new(
                state,
                wal.mailbox.clone(),
                wal.fail_stopped.clone(),
                snapshots.clone(),
                metrics.clone(),
                config.wal.max_record_len(),
                WriteLimits {
                    memtable_bytes: config.storage.memtable_bytes,
                    immutable_memtables: config.storage.immutable_memtables,
                    l0_stop_runs: config.storage.compaction.l0_stop_runs,
                    l0_slowdown_runs: config.storage.compaction.l0_slowdown_runs,
                    slowdown_bytes_per_sec: config.storage.write_slowdown_bytes_per_sec,
                    max_stall: crate::sequencer::MAX_STALL,
                },
            )
            .with_idempotency_retention(config.storage.idempotency_retention),
            config.sequencer_queue,
            owners.sequencer.clone(),
            config.commit_spin,
        )
        .map_err(thread_error("sequencer"))?;
        let sealer = actor::spawn(
            Sealer::new(SealerContext {
                fs: fs.clone(),
                data_dir: data_dir.to_path_buf(),
                database,
                keyring: config.keyring.clone(),
                epoch: (epoch, master),
                snapshots: snapshots.clone(),
                wal: wal.mailbox.clone(),
                manifest: manifest.addr().clone(),
                metrics: metrics.clone(),
                policy: config.checkpoints,
                last_lsn: checkpoint_lsn,
                sequencer: sequencer.addr().clone(),
                runs: RunOpener {
                    fs: fs.clone(),
                    data_dir: data_dir.to_path_buf(),
                    database,
                    keyring: config.keyring.clone(),
                    epochs: epochs.clone(),
                    cache: cache.clone(),
                },
                file_ids: file_ids.clone(),
                run_options: config.storage.run_options,
                // Every frame of an older epoch is already on disk: anything written
                // from now on is sealed under the current one.
                epoch_bounds: epochs
                    .decrypt_only()
                    .into_iter()
                    .map(|e| (e, Lsn::new(lsn)))
                    .collect(),
            }),
            16,
            owners.checkpoint.clone(),
        )
        .map_err(thread_error("checkpoint sealer"))?;
        let compactor = actor::spawn(
            Compactor::new(CompactorContext {
                sequencer: sequencer.addr().clone(),
                manifest: manifest.addr().clone(),
                runs: RunOpener {
                    fs: fs.clone(),
                    data_dir: data_dir.to_path_buf(),
                    database,
                    keyring: config.keyring.clone(),
                    epochs: epochs.clone(),
                    cache: cache.clone(),
                },
                file_ids,
                run_options: config.storage.run_options,
                options: config.storage.compaction,
                retention_lsns: config.storage.retention_lsns,
                idempotency_retention: config.storage.idempotency_retention,
                bytes_per_sec: config.storage.compaction_bytes_per_sec,
                snapshots: snapshots.clone(),
                metrics: metrics.clone(),
            }),
            16,
            owners.compactor.clone(),
        )
        .map_err(thread_error("compactor"))?;
        metrics.recovery_micros.store(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok((
            Pipeline {
                fail_stopped: wal.fail_stopped.clone(),
                checkpoint_on_shutdown: config.checkpoint_on_shutdown,
                committer: Committer::new(
                    sequencer.addr().clone(),
                    metrics.clone(),
                    config.commit_spin,
                ),
                snapshots,
                metrics,
                wal_mailbox: Some(wal.mailbox),
                sequencer,
                wal_writer: wal.owner,
                sealer,
                compactor,
                cache,
                compaction: config.storage.compaction,
                manifest,
                database,
            },
            recovered,
        ))
    }

    /// The database's random identity (from the manifest).
    pub fn database_id(&self) -> DatabaseId {
        self.database
    }

    /// Starts a new key epoch: recorded in the manifest, new WAL batches and a fresh
    /// checkpoint sealed under it. Returns the new epoch.
    pub fn rotate_keys(&self) -> Result<(KeyEpoch, CheckpointReport), CheckpointFailure> {
        self.sealer
            .addr()
            .ask(Rotate)
            .map_err(|_| CheckpointFailure::Closed)?
    }

    /// Writes a checkpoint of the newest published state now (off the commit path:
    /// commits continue meanwhile) and retires what it makes redundant.
    pub fn checkpoint_now(&self) -> Result<CheckpointReport, CheckpointFailure> {
        self.sealer
            .addr()
            .ask(SealNow)
            .map_err(|_| CheckpointFailure::Closed)?
    }

    /// A full compaction (every run merged into the bottom level), then leveled ones
    /// until no level is over its trigger (those also run by themselves, in the
    /// background).
    pub fn compact_now(&self) -> Result<CompactionReport, CheckpointFailure> {
        self.compactor
            .addr()
            .ask(Compact)
            .map_err(|_| CheckpointFailure::Closed)?
    }

    /// Re-seals every run sealed under an older key epoch under the current one.
    pub fn reseal_now(&self) -> Result<CompactionReport, CheckpointFailure> {
        self.compactor
            .addr()
            .ask(Reseal)
            .map_err(|_| CheckpointFailure::Closed)?
    }

    /// The shared block cache of run-file blocks.
    pub fn block_cache(&self) -> &Arc<BlockCache> {
        &self.cache
    }

    /// Opens every WAL segment at a barrier (everything sequenced before it is synced
    /// first) and reports the durable position: what a hot backup copies.
    pub fn wal_backup_view(&self) -> Result<WalBackupView, CheckpointFailure> {
        let wal = self.wal_mailbox.as_ref().ok_or(CheckpointFailure::Closed)?;
        let (reply, waiter) = completion();
        wal.send(WriterMsg::Control(WalControl::BackupView { reply }))
            .map_err(|_| CheckpointFailure::Closed)?;
        waiter
            .wait()
            .map_err(|_| CheckpointFailure::Closed)?
            .map_err(|e| CheckpointFailure::Wal(e.to_string()))
    }

    /// A cloneable handle for hot backups taken off the caller's thread (a backup
    /// scheduler): see [`BackupPort`].
    pub fn backup_port(&self) -> BackupPort {
        BackupPort {
            sealer: self.sealer.addr().clone(),
            manifest: self.manifest.addr().clone(),
            metrics: self.metrics.clone(),
        }
    }

    /// Pins a consistent set of the data directory's files for a forensic capture: a
    /// copy of the manifest, open handles on its checkpoints, and the WAL opened at a
    /// barrier after it (see [`CaptureView`]). Commits continue meanwhile.
    pub fn capture_view(&self) -> Result<CaptureView, CaptureFailure> {
        self.sealer
            .addr()
            .ask(Capture)
            .map_err(|_| CaptureFailure::Pipeline(CheckpointFailure::Closed))?
    }

    /// A copy of the live state the manifest describes (checkpoints, sealed segments,
    /// key epochs, backups).
    pub fn manifest_live_state(&self) -> Result<LiveState, CheckpointFailure> {
        self.manifest
            .addr()
            .ask(GetLiveState)
            .map_err(|_| CheckpointFailure::Closed)
    }

    /// Appends `records` to the manifest (durable before it returns), for example
    /// `BackupTaken`.
    pub fn record_manifest(&self, records: Vec<ManifestRecord>) -> Result<(), CheckpointFailure> {
        self.manifest
            .addr()
            .ask(Record(records))
            .map_err(|_| CheckpointFailure::Closed)?
            .map_err(CheckpointFailure::Manifest)
    }

    /// Sequences the engine's own `request` (exempt from the write freeze and the rate
    /// limits) and waits for its finality.
    pub fn commit(
        &self,
        request: Request,
        finality: Finality,
        admission: Admission,
    ) -> Result<CommitOutcome, CommitError> {
        self.committer.commit(request, finality, admission)
    }

    /// Async form of [`Pipeline::commit`]: awaits admission and finality without
    /// blocking the executor thread.
    pub async fn commit_async(
        &self,
        request: Request,
        finality: Finality,
    ) -> Result<CommitOutcome, CommitError> {
        self.committer
            .submit_async(Authority::engine(), request, finality)
            .await
    }

    /// [`Pipeline::submit`] with a deadline: refused with [`CommitError::Timeout`]
    /// (nothing applied) if the Sequencer dequeues it after `deadline`.
    pub fn submit_until(
        &self,
        authority: Authority,
        request: Request,
        finality: Finality,
        admission: Admission,
        deadline: Option<Instant>,
    ) -> Result<CommitOutcome, CommitError> {
        if let Request::Transaction(tx) = &request {
            // On the caller's thread, before sequencing: the blocks holding the keys
            // the transaction asserts on and writes are read into the cache here, so
            // the single writer finds them in memory instead of stalling on disk.
            self.snapshots.with(|state| state.prefetch(tx));
        }
        self.committer
            .submit_until(authority, request, finality, admission, deadline)
    }

    /// Async form of [`Pipeline::submit_until`].
    pub async fn submit_async_until(
        &self,
        authority: Authority,
        request: Request,
        finality: Finality,
        deadline: Option<Instant>,
    ) -> Result<CommitOutcome, CommitError> {
        self.committer
            .submit_async_until(authority, request, finality, deadline)
            .await
    }

    /// Freezes writes (`Some`) or lifts the freeze (`None`), durably, in the
    /// Sequencer: every commit sequenced afterwards, except the engine's own, is
    /// refused with [`CommitError::Frozen`] until it is lifted.
    pub fn set_write_freeze(
        &self,
        freeze: Option<WriteFreeze>,
    ) -> Result<CommitOutcome, CommitError> {
        self.committer.set_write_freeze(freeze)
    }

    /// The write freeze recorded in the newest published state.
    pub fn write_freeze(&self) -> Option<WriteFreeze> {
        load_write_freeze(&self.snapshot())
    }

    /// Replaces the commit rate limits (validate them first); in force for the next
    /// commit.
    pub fn set_rate_limits(&self, limits: RateLimits) {
        self.committer.limiter().set_limits(limits);
    }

    /// The commit rate limits in force.
    pub fn rate_limits(&self) -> RateLimits {
        self.committer.limiter().limits()
    }

    /// [`Pipeline::commit`] under `authority`: the Sequencer checks the caller's rights
    /// against the policy in force when the commit is sequenced.
    pub fn submit(
        &self,
        authority: Authority,
        request: Request,
        finality: Finality,
        admission: Admission,
    ) -> Result<CommitOutcome, CommitError> {
        self.committer
            .submit(authority, request, finality, admission)
    }

    /// Async form of [`Pipeline::submit`].
    pub async fn submit_async(
        &self,
        authority: Authority,
        request: Request,
        finality: Finality,
    ) -> Result<CommitOutcome, CommitError> {
        self.committer
            .submit_async(authority, request, finality)
            .await
    }

    /// A cloneable handle that submits commits, for actors of the layer above (the
    /// Authz and Audit actors write their system tables through the normal path).
    pub fn committer(&self) -> Committer {
        self.committer.clone()
    }

    /// The engine counters (shared with the actors of the layer above).
    pub fn engine_metrics(&self) -> Arc<EngineMetrics> {
        self.metrics.clone()
    }

    /// The cell readers load published snapshots from.
    pub fn snapshot_cell(&self) -> Arc<SnapshotCell<State>> {
        self.snapshots.clone()
    }

    /// Makes every commit sequenced so far durable.
    pub fn flush(&self) -> Result<(), CommitError> {
        let (reply, waiter) = completion();
        self.sequencer
            .addr()
            .ask(Flush { reply })
            .map_err(|_| CommitError::Closed)?;
        match waiter.wait() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(GroupCommitError::Io(e))) => Err(CommitError::Wal(e)),
            Ok(Err(GroupCommitError::FailStopped)) => Err(CommitError::FailStopped),
            Err(_) => Err(CommitError::Closed),
        }
    }

    /// The newest published snapshot.
    pub fn snapshot(&self) -> Arc<State> {
        self.snapshots.load().1
    }

    /// Runs `f` on the newest published snapshot, borrowed: concurrent readers share no
    /// written memory (no reference count is taken), so one-off reads scale with threads.
    pub fn with_snapshot<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        self.snapshots.with(f)
    }

    /// A plain copy of the engine's counters.
    pub fn metrics(&self) -> OperationalMetrics {
        let depth = self.wal_mailbox.as_ref().map_or(0, MailboxSender::len);
        let mut m = self.metrics.snapshot(depth);
        if let Some(freeze) = self.write_freeze() {
            m.frozen = true;
            m.freeze_reason = Some(freeze.reason);
        }
        m.admission = self.committer.limiter().snapshot();
        m.storage = self.storage_metrics(&m);
        m
    }

    /// The LSM's shape, read from the published snapshot's sources.
    fn storage_metrics(&self, m: &OperationalMetrics) -> crate::metrics::StorageMetrics {
        let (_, state) = self.snapshots.load();
        let view = state.view();
        let version = view.version();
        let levels = aedb_storage::LEVELS;
        let level_bytes: Vec<u64> = (0..levels).map(|l| version.level_bytes(l)).collect();
        let cache = self.cache.stats();
        let live: u64 = level_bytes.iter().sum();
        let deepest = level_bytes
            .iter()
            .rev()
            .copied()
            .find(|&b| b > 0)
            .unwrap_or(0);
        crate::metrics::StorageMetrics {
            memtable_bytes: view
                .memtables()
                .iter()
                .map(|t| t.approximate_bytes() as u64)
                .sum(),
            memtables: view.memtables().len() as u64,
            level_runs: (0..levels).map(|l| version.level(l).len() as u64).collect(),
            level_bytes,
            oldest_readable_lsn: version.floor().get(),
            pending_compaction_bytes: aedb_storage::compaction::picker::pending_bytes(
                version,
                &self.compaction,
            ),
            cache_hits: cache.hits,
            cache_misses: cache.misses,
            cache_bytes: cache.bytes,
            cache_capacity: cache.capacity,
            cache_pinned_bytes: cache.pinned_bytes,
            write_amplification: if m.flush_bytes_written == 0 {
                0.0
            } else {
                (m.flush_bytes_written + m.compaction_bytes_written) as f64
                    / m.flush_bytes_written as f64
            },
            space_amplification: if deepest == 0 {
                0.0
            } else {
                live as f64 / deepest as f64
            },
        }
    }

    /// Flushes, stops the actors and joins their threads. Idempotent.
    pub fn shutdown(&mut self) -> Result<(), CommitError> {
        if self.wal_mailbox.is_none() {
            return Ok(());
        }
        // The compactor and the sealer go first (they hold the sequencer's, the WAL's
        // and the manifest's addresses), then the sequencer, the WAL writer, and the
        // manifest last.
        self.compactor.stop();
        if self.checkpoint_on_shutdown && !self.fail_stopped.load(Ordering::Acquire) {
            // Best effort: the WAL still holds everything if it fails.
            if let Ok(Err(e)) = self.sealer.addr().ask(ShutdownCheckpoint) {
                tracing::warn!("the checkpoint at shutdown failed: {e}");
            }
        }
        self.sealer.stop();
        let flushed = self.flush();
        self.sequencer.stop();
        // Last sender gone: the writer syncs anything pending and its loop ends.
        self.wal_mailbox = None;
        self.wal_writer.stop();
        self.manifest.stop();
        flushed
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// What a hot backup needs of the pipeline, as a cloneable handle another owner can
/// hold (a backup scheduler): the CheckpointSealer's and the ManifestChain's addresses
/// and the engine counters. It holds no WAL sender, so it never keeps the WAL writer
/// alive: once the pipeline shuts down every call answers [`CheckpointFailure::Closed`].
#[derive(Clone)]
pub struct BackupPort {
    sealer: OwnerRef<Sealer>,
    manifest: crate::manifest_chain::ManifestRef,
    metrics: Arc<EngineMetrics>,
}

impl std::fmt::Debug for BackupPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupPort").finish_non_exhaustive()
    }
}

impl BackupPort {
    /// As [`Pipeline::checkpoint_now`].
    pub fn checkpoint_now(&self) -> Result<CheckpointReport, CheckpointFailure> {
        self.sealer
            .ask(SealNow)
            .map_err(|_| CheckpointFailure::Closed)?
    }

    /// As [`Pipeline::wal_backup_view`] (asked through the CheckpointSealer).
    pub fn wal_backup_view(&self) -> Result<WalBackupView, CheckpointFailure> {
        self.sealer
            .ask(WalView)
            .map_err(|_| CheckpointFailure::Closed)?
    }

    /// As [`Pipeline::manifest_live_state`].
    pub fn manifest_live_state(&self) -> Result<LiveState, CheckpointFailure> {
        self.manifest
            .ask(GetLiveState)
            .map_err(|_| CheckpointFailure::Closed)
    }

    /// As [`Pipeline::record_manifest`].
    pub fn record_manifest(&self, records: Vec<ManifestRecord>) -> Result<(), CheckpointFailure> {
        self.manifest
            .ask(Record(records))
            .map_err(|_| CheckpointFailure::Closed)?
            .map_err(CheckpointFailure::Manifest)
    }

    /// The engine counters.
    pub fn engine_metrics(&self) -> Arc<EngineMetrics> {
        self.metrics.clone()
    }
}
