//! Starting, driving and stopping the commit pipeline.
//!
//! [`Pipeline::start`] recovers the WAL into a [`State`], starts the WAL writer thread,
//! and starts an actix `System` on its own thread hosting the [`Sequencer`]. Callers
//! reach the sequencer only through typed messages; readers load the published
//! snapshot on their own thread.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::dev::SendError;
use actix::{Actor, Addr, MailboxError};
use aedb_checkpoint::{LiveState, Manifest, ManifestRecord};
use aedb_model::{CommitRecord, State};
use aedb_sync::completion::completion;
use aedb_sync::group_commit::{GroupCommitError, LoopConfig, WriterMsg};
use aedb_sync::mailbox::MailboxSender;
use aedb_sync::{Completer, SnapshotCell};
use aedb_types::{DatabaseId, KeyEpoch, Lsn, SegmentSeq};
use aedb_wal::{
    FrameKind, RecoveredWal, RecoveryMode, WalCipher, WalConfig, WalKeyring, WalWriter,
};

use crate::checkpoint_sealer::{
    self, CheckpointFailure, CheckpointPolicy, CheckpointReport, SealerContext, SealerHandle,
    SealerMsg,
};
use crate::error::{CommitError, FrameReplayError, StartError};
use crate::keyring::{EpochTable, Keyring};
use crate::manifest_chain::{self, ManifestHandle, ManifestMsg};
use crate::metrics::{EngineMetrics, ErrorCause, OperationalMetrics};
use crate::sequencer::{Commit, CommitOutcome, Finality, Flush, Request, Sequencer, Stop};
use crate::wal_writer::{self, WalBackupView, WalControl, WalMsg};

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
    /// Key providers (manifest MAC, at-rest encryption).
    pub keyring: Keyring,
    /// When automatic checkpoints run.
    pub checkpoints: CheckpointPolicy,
    /// Compact the manifest once it holds this many records.
    pub manifest_compact_after: u64,
}

/// Whether a full sequencer mailbox makes the caller wait or fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Wait for room (backpressure).
    Wait,
    /// Fail with [`CommitError::Busy`].
    FailFast,
}

/// The running commit pipeline: sequencer actor, WAL writer thread, published snapshot.
pub struct Pipeline {
    committer: Committer,
    sequencer: Addr<Sequencer>,
    snapshots: Arc<SnapshotCell<State>>,
    metrics: Arc<EngineMetrics>,
    wal_mailbox: Option<MailboxSender<WalMsg>>,
    sealer: Option<SealerHandle>,
    manifest: Option<ManifestHandle>,
    database: DatabaseId,
    system: actix_rt::System,
    actix_thread: Option<JoinHandle<()>>,
    writer_thread: Option<JoinHandle<()>>,
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
        let wal_dir = data_dir.join(WAL_DIR);
        let fs = config.wal.fs.clone();
        let (manifest, epochs) = open_manifest(&fs, data_dir, &wal_dir, &config.keyring)?;
        let database = manifest.database_id();
        remove_unrecorded_checkpoints(&*fs, data_dir, &manifest)?;
        if config.recovery == RecoveryMode::Strict {
            // A lenient recovery re-creates a successor whose creation was never synced.
            check_recorded_segments_present(&*fs, &wal_dir, &manifest, true)?;
        }
        let (epoch, master) = epochs
            .current()
            .map(|(e, m)| (e, m.clone()))
            .ok_or(StartError::NoKeyEpoch)?;
        metrics
            .key_epoch
            .store(u64::from(epoch.get()), Ordering::Relaxed);
        if let Some(key) = config.keyring.wal_key(database, epoch, &master)? {
            // New batches are sealed under the current epoch; recovery finds the key of
            // any epoch the log still holds through the manifest's epoch table.
            config.wal.cipher = Some(WalCipher::new(key, epoch, database));
            let (keyring, epochs) = (config.keyring.clone(), epochs.clone());
            config.wal.keyring = Some(WalKeyring::new(database, move |e| {
                epochs.wal_key(&keyring, database, e)
            }));
        }
        let (mut state, fallbacks) = load_newest_checkpoint(
            &*fs,
            data_dir,
            database,
            &manifest,
            &epochs,
            &config.keyring,
        )?;
        metrics
            .recovery_checkpoint_fallbacks
            .store(fallbacks, Ordering::Relaxed);
        let checkpoint_lsn = state.lsn();
        metrics
            .checkpoint_lsn
            .store(checkpoint_lsn.get(), Ordering::Relaxed);

        let (recovered, writer) = recover_wal(&wal_dir, &config, &mut state)?;
        let mut manifest = manifest;
        manifest.set_fault_injector(config.wal.faults.clone());
        if config.recovery == RecoveryMode::Strict {
            check_segments_against_manifest(&recovered, &manifest)?;
            check_recorded_segments_present(&*fs, &wal_dir, &manifest, false)?;
        } else {
            retire_lost_segments(&mut manifest, &recovered)?;
        }
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
        let manifest = manifest_chain::spawn(
            manifest,
            config.manifest_compact_after,
            metrics.clone(),
            fail_stopped.clone(),
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
            },
            manifest.mailbox.clone(),
            fail_stopped,
        )
        .map_err(thread_error("WAL writer"))?;
        let sealer = checkpoint_sealer::spawn(SealerContext {
            fs: fs.clone(),
            data_dir: data_dir.to_path_buf(),
            database,
            keyring: config.keyring.clone(),
            epoch: (epoch, master),
            snapshots: snapshots.clone(),
            wal: wal.mailbox.clone(),
            manifest: manifest.mailbox.clone(),
            metrics: metrics.clone(),
            policy: config.checkpoints,
            last_lsn: checkpoint_lsn,
            // Every frame of an older epoch is already on disk: anything written from
            // now on is sealed under the current one.
            epoch_bounds: epochs
                .decrypt_only()
                .into_iter()
                .map(|e| (e, Lsn::new(lsn)))
                .collect(),
        })
        .map_err(thread_error("checkpoint sealer"))?;

        let sequencer = Sequencer::new(
            state,
            wal.mailbox.clone(),
            wal.fail_stopped.clone(),
            snapshots.clone(),
            metrics.clone(),
            config.sequencer_queue,
            config.wal.max_record_len(),
        );
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let actix_thread = std::thread::Builder::new()
            .name("aedb-actors".into())
            .spawn(move || {
                let runner = actix_rt::System::new();
                let addr = runner.block_on(async move { sequencer.start() });
                if tx.send((addr, actix_rt::System::current())).is_ok() {
                    // Runs until `System::stop`; an error here only means the system
                    // was already stopping.
                    let _ = runner.run();
                }
            })
            .map_err(thread_error("actor system"))?;
        let (sequencer, system) = rx.recv().map_err(|_| StartError::Thread {
            what: "actor system",
            source: std::io::Error::other("the actor system thread exited during start"),
        })?;
        metrics.recovery_micros.store(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok((
            Pipeline {
                committer: Committer {
                    sequencer: sequencer.clone(),
                    metrics: metrics.clone(),
                },
                sequencer,
                snapshots,
                metrics,
                wal_mailbox: Some(wal.mailbox),
                sealer: Some(sealer),
                manifest: Some(manifest),
                system,
                actix_thread: Some(actix_thread),
                writer_thread: Some(wal.thread),
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
        self.ask_sealer(|reply| SealerMsg::Rotate { reply })
    }

    /// Writes a checkpoint of the newest published state now (off the commit path:
    /// commits continue meanwhile) and retires what it makes redundant.
    pub fn checkpoint_now(&self) -> Result<CheckpointReport, CheckpointFailure> {
        self.ask_sealer(|reply| SealerMsg::SealNow { reply })
    }

    fn ask_sealer<T>(
        &self,
        make: impl FnOnce(Completer<Result<T, CheckpointFailure>>) -> SealerMsg,
    ) -> Result<T, CheckpointFailure> {
        let sealer = self.sealer.as_ref().ok_or(CheckpointFailure::Closed)?;
        let (reply, waiter) = completion();
        sealer
            .mailbox
            .send(make(reply))
            .map_err(|_| CheckpointFailure::Closed)?;
        waiter.wait().unwrap_or(Err(CheckpointFailure::Closed))
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

    /// A copy of the live state the manifest describes (checkpoints, sealed segments,
    /// key epochs, backups).
    pub fn manifest_live_state(&self) -> Result<LiveState, CheckpointFailure> {
        let manifest = self.manifest.as_ref().ok_or(CheckpointFailure::Closed)?;
        let (reply, waiter) = completion();
        manifest
            .mailbox
            .send(ManifestMsg::LiveState { reply })
            .map_err(|_| CheckpointFailure::Closed)?;
        waiter.wait().map_err(|_| CheckpointFailure::Closed)
    }

    /// Appends `records` to the manifest (durable before it returns), for example
    /// `BackupTaken`.
    pub fn record_manifest(&self, records: Vec<ManifestRecord>) -> Result<(), CheckpointFailure> {
        let manifest = self.manifest.as_ref().ok_or(CheckpointFailure::Closed)?;
        let (reply, waiter) = completion();
        manifest
            .mailbox
            .send(ManifestMsg::Record { records, reply })
            .map_err(|_| CheckpointFailure::Closed)?;
        waiter
            .wait()
            .map_err(|_| CheckpointFailure::Closed)?
            .map_err(CheckpointFailure::Manifest)
    }

    /// Sequences `request` and waits for its finality.
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
        self.committer.commit_async(request, finality).await
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
        futures::executor::block_on(self.sequencer.send(Flush { reply }))
            .map_err(|_| CommitError::Closed)?;
        match waiter.wait() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(GroupCommitError::Io(e))) => Err(CommitError::Wal(e)),
            Ok(Err(GroupCommitError::FailStopped)) => Err(CommitError::FailStopped),
            Err(_) => Err(CommitError::Closed),
        }
    }

    /// The newest published snapshot and its LSN.
    pub fn snapshot(&self) -> Arc<State> {
        self.snapshots.load().1
    }

    /// A plain copy of the engine's counters.
    pub fn metrics(&self) -> OperationalMetrics {
        let depth = self.wal_mailbox.as_ref().map_or(0, MailboxSender::len);
        self.metrics.snapshot(depth)
    }

    /// Flushes, stops the actors and joins their threads. Idempotent.
    pub fn shutdown(&mut self) -> Result<(), CommitError> {
        let Some(actix_thread) = self.actix_thread.take() else {
            return Ok(());
        };
        // The sealer goes first (it holds WAL and manifest mailboxes), then the
        // sequencer, the WAL writer, and the manifest last.
        if let Some(sealer) = self.sealer.take() {
            drop(sealer.mailbox);
            let _ = sealer.thread.join();
        }
        let flushed = self.flush();
        self.sequencer.do_send(Stop);
        self.system.stop();
        let _ = actix_thread.join();
        // Last sender gone: the writer syncs anything pending and exits.
        self.wal_mailbox = None;
        if let Some(writer) = self.writer_thread.take() {
            let _ = writer.join();
        }
        if let Some(manifest) = self.manifest.take() {
            drop(manifest.mailbox);
            let _ = manifest.thread.join();
        }
        flushed
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The WAL directory inside a data directory.
pub const WAL_DIR: &str = "wal";

/// Opens and verifies the manifest, or creates it for a brand-new database.
fn open_manifest(
    fs: &aedb_fs::SharedFs,
    data_dir: &Path,
    wal_dir: &Path,
    keyring: &Keyring,
) -> Result<(Manifest, EpochTable), StartError> {
    let path = data_dir.join(aedb_checkpoint::MANIFEST_FILE_NAME);
    // A staging copy left by a creation or compaction that crashed before its rename:
    // the manifest in place (or none) is the truth, the copy was never relied on.
    let staged = aedb_checkpoint::manifest_temp_path(&path);
    if fs.exists(&staged) {
        fs.remove_file(&staged).map_err(|source| {
            StartError::Manifest(aedb_checkpoint::ManifestError::Io {
                op: "remove stale staging copy",
                path: staged.clone(),
                source,
            })
        })?;
    }
    let mut manifest = if fs.exists(&path) {
        let database = aedb_checkpoint::peek_database_id(&**fs, &path)?;
        // The manifest stays keyed under the master it was created with; after the
        // provider moves to a newer master version, older versions are tried.
        let mut keys = keyring.manifest_key_candidates(database)?.into_iter();
        loop {
            let Some(key) = keys.next() else {
                unreachable!("manifest_key_candidates returns at least the current key")
            };
            // A torn final record is an append that crashed before its fsync returned,
            // so nothing relied on it; anything else fails closed.
            match Manifest::open_and_repair_torn_tail(fs, &path, key) {
                Ok((manifest, _records, _torn)) => break manifest,
                Err(aedb_checkpoint::ManifestError::HeaderAuthFailed { .. }) if keys.len() > 0 => {}
                Err(e) => return Err(e.into()),
            }
        }
    } else {
        let has_wal = aedb_wal::segment_paths(&**fs, wal_dir)
            .map(|s| !s.is_empty())
            .unwrap_or(true);
        let has_checkpoints = aedb_checkpoint::list_checkpoints(&**fs, data_dir)
            .map(|c| !c.is_empty())
            .unwrap_or(true);
        if has_wal || has_checkpoints {
            return Err(StartError::MissingManifest { path });
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| StartError::Thread {
            what: "random database id",
            source: std::io::Error::other(e.to_string()),
        })?;
        let database = DatabaseId::from_bytes(id);
        // Created whole or not at all: a crash here leaves no manifest, never one
        // without the key epoch every later open needs.
        let now = aedb_types::clock::unix_millis();
        Manifest::create_with(
            fs,
            &path,
            database,
            keyring.manifest_key(database)?,
            &[
                ManifestRecord::DatabaseCreated {
                    database_id: database,
                    created_at_unix_ms: now,
                },
                ManifestRecord::KeyEpochChanged {
                    epoch: KeyEpoch::FIRST,
                    master_key_id: keyring.current_data_master()?.to_string(),
                    at_unix_ms: now,
                },
            ],
        )?
    };
    let mut epochs = EpochTable::from_live(manifest.live_state())
        .map_err(|source| StartError::Key(Arc::new(source)))?;
    // The provider was pointed at a new master version (HSM rotation runbook): start
    // a new epoch under it; older epochs stay readable through their recorded masters.
    let current = keyring.current_data_master()?;
    if let Some((epoch, master)) = epochs.current()
        && *master != current
    {
        let next = epoch.next().ok_or(StartError::NoKeyEpoch)?;
        manifest.append(&ManifestRecord::KeyEpochChanged {
            epoch: next,
            master_key_id: current.to_string(),
            at_unix_ms: aedb_types::clock::unix_millis(),
        })?;
        epochs.insert(next, current);
    }
    Ok((manifest, epochs))
}

/// Every live segment the manifest recorded must still be there, and so must the
/// successor of the newest one (it was created before the record was written).
/// `successor_only` runs before replay: recovery would otherwise re-create a missing
/// successor of a sealed last segment, as it does after a crash between sealing a
/// segment and creating the next, and a deleted newest segment would go unnoticed.
fn check_recorded_segments_present(
    fs: &dyn aedb_fs::FileSystem,
    wal_dir: &Path,
    manifest: &Manifest,
    successor_only: bool,
) -> Result<(), StartError> {
    let recorded = manifest.live_state().segments();
    let present: std::collections::BTreeSet<SegmentSeq> = aedb_wal::segment_paths(fs, wal_dir)
        .map_err(|e| StartError::Thread {
            what: "WAL directory listing",
            source: std::io::Error::other(e.to_string()),
        })?
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    let newest = recorded.keys().next_back().map(|&seq| seq.next());
    let live = recorded.keys().copied().filter(|_| !successor_only);
    for seq in live.chain(newest) {
        if !present.contains(&seq) {
            return Err(StartError::SegmentMissing {
                path: wal_dir.join(aedb_wal::segment_file_name(seq)),
            });
        }
    }
    Ok(())
}

/// Deletes checkpoint files the manifest does not record: half-written temporaries of a
/// seal that crashed, and files renamed into place whose `CheckpointAdded` never became
/// durable. Nothing ever relied on either, and a leftover file would block the next
/// checkpoint at the same LSN.
fn remove_unrecorded_checkpoints(
    fs: &dyn aedb_fs::FileSystem,
    data_dir: &Path,
    manifest: &Manifest,
) -> Result<(), StartError> {
    aedb_checkpoint::remove_stale_temp_files(fs, data_dir)?;
    let recorded = manifest.live_state().checkpoints();
    for entry in aedb_checkpoint::list_checkpoints(fs, data_dir)? {
        if !recorded.contains_key(&entry.lsn) {
            aedb_checkpoint::remove_checkpoint(fs, data_dir, entry.lsn)?;
        }
    }
    Ok(())
}

/// Loads the newest checkpoint of `data_dir` that authenticates and matches the hash the
/// manifest recorded; returns the state (empty without checkpoints) and how many newer
/// checkpoints were skipped. Read-only: recovery, `aedb verify` and `check invariants`
/// share it.
pub fn load_newest_checkpoint(
    fs: &dyn aedb_fs::FileSystem,
    data_dir: &Path,
    database: DatabaseId,
    manifest: &Manifest,
    epochs: &EpochTable,
    keyring: &Keyring,
) -> Result<(State, u64), StartError> {
    let checkpoints = manifest.live_state().checkpoints();
    let mut failures = Vec::new();
    for (lsn, recorded) in checkpoints.iter().rev() {
        let state = load_checkpoint(fs, data_dir, database, *lsn, recorded, epochs, keyring);
        match state {
            Ok(state) => {
                if !failures.is_empty() {
                    tracing::warn!(
                        "recovery fell back to the checkpoint at lsn {lsn}; newer ones failed: {}",
                        failures.join("; ")
                    );
                }
                return Ok((state, failures.len() as u64));
            }
            Err(e) => failures.push(e),
        }
    }
    if failures.is_empty() {
        Ok((State::new(), 0))
    } else {
        Err(StartError::NoUsableCheckpoint {
            failures: failures.join("; "),
        })
    }
}

/// Opens one checkpoint the manifest records, authenticates it, and checks it against
/// the record (file hash) and its LSN. Errors name the file.
pub fn load_checkpoint(
    fs: &dyn aedb_fs::FileSystem,
    data_dir: &Path,
    database: DatabaseId,
    lsn: Lsn,
    recorded: &aedb_checkpoint::LiveCheckpoint,
    epochs: &EpochTable,
    keyring: &Keyring,
) -> Result<State, String> {
    let path = data_dir.join("checkpoints").join(&recorded.file_name);
    let loaded = if keyring.encrypts() {
        aedb_checkpoint::open_checkpoint(fs, &path, database, |epoch| {
            epochs.checkpoint_key(keyring, database, epoch)
        })
    } else {
        aedb_checkpoint::open_plaintext_checkpoint(fs, &path, database)
    }
    .map_err(|e| format!("{}: {e}", path.display()))?;
    if loaded.file_sha256 != recorded.sha256 {
        return Err(format!(
            "{}: file hash differs from the manifest's record",
            path.display()
        ));
    }
    let state =
        State::decode_snapshot(&loaded.payload).map_err(|e| format!("{}: {e}", path.display()))?;
    if state.lsn() != lsn {
        return Err(format!(
            "{}: snapshot is at lsn {} but the manifest records {lsn}",
            path.display(),
            state.lsn()
        ));
    }
    Ok(state)
}

/// Replays the WAL after the checkpoint's LSN into `state`; returns the report and a
/// writer positioned after the last valid frame.
fn recover_wal(
    wal_dir: &Path,
    config: &PipelineConfig,
    state: &mut State,
) -> Result<(RecoveredWal, WalWriter), StartError> {
    // A log with no segment left (every one retired behind the checkpoint, or a lenient
    // recovery cut a header that never reached the disk) continues after the checkpoint.
    let base = state.lsn();
    let mut expected = base.next();
    let lenient = config.recovery != RecoveryMode::Strict;
    // Lenient only: the log's first frame after the checkpoint is missing (a segment a
    // power cut kept off the disk); nothing after that gap can be replayed.
    let mut gap = None;
    let (recovered, writer) =
        aedb_wal::recover_after(wal_dir, &config.wal, config.recovery, base, |frame| {
            if gap.is_some() {
                return Ok(());
            }
            match replay_commit_frame(state, base, &mut expected, &frame) {
                Err(FrameReplayError::Gap { expected, found }) if lenient => {
                    gap = Some((expected, found));
                    Ok(())
                }
                other => other,
            }
        })?;
    // Lenient only: a log that ends before the checkpoint, or resumes after a gap, no
    // longer continues it; it restarts after the checkpoint (one rule for both).
    if lenient && (gap.is_some() || recovered.last_lsn < base) {
        drop(writer);
        tracing::warn!(
            "lenient recovery: the WAL (to lsn {}, gap {gap:?}) does not continue the \
             checkpoint at lsn {base}; restarting it there",
            recovered.last_lsn
        );
        return Ok(aedb_wal::restart_after(wal_dir, &config.wal, state.lsn())?);
    }
    if recovered.last_lsn < base {
        return Err(StartError::WalBehindCheckpoint {
            wal_last: recovered.last_lsn,
            checkpoint: base,
        });
    }
    Ok((recovered, writer))
}

/// After a lenient recovery (any mode but strict), the manifest forgets the sealed
/// segments the log no longer holds as recorded: segments the recovery cut or superseded
/// (their unsynced bytes were lost), or whose content differs from the recorded hash.
/// They are retired exactly as a checkpoint's own retirement would, so the numbers can be
/// written again and a later open does not look for them.
fn retire_lost_segments(
    manifest: &mut Manifest,
    recovered: &RecoveredWal,
) -> Result<(), StartError> {
    let kept: std::collections::BTreeMap<SegmentSeq, [u8; 32]> = recovered
        .segments
        .iter()
        .filter_map(|s| s.sealed_hash.map(|h| (s.seq, h.0)))
        .collect();
    let lost: Vec<SegmentSeq> = manifest
        .live_state()
        .segments()
        .iter()
        .filter(|(seq, rec)| kept.get(seq) != Some(&rec.sha256))
        .map(|(&seq, _)| seq)
        .collect();
    for seq in lost {
        tracing::warn!("lenient recovery: WAL segment {seq} lost its unsynced bytes; retired");
        manifest.append(&ManifestRecord::SegmentRetired { seq })?;
    }
    Ok(())
}

/// Replays one recovered WAL frame into `state`: frames at or below `base` (covered by
/// the checkpoint the state was loaded from) are skipped; the rest must be dense from
/// `*expected` on (advanced here), `Commit` frames, and decode and replay cleanly. The
/// one replay rule shared by recovery, restore and the offline checks.
pub fn replay_commit_frame(
    state: &mut State,
    base: Lsn,
    expected: &mut Lsn,
    frame: &aedb_wal::DecodedFrame<'_>,
) -> Result<(), FrameReplayError> {
    if frame.lsn <= base {
        return Ok(()); // covered by the checkpoint
    }
    if frame.lsn != *expected {
        return Err(FrameReplayError::Gap {
            expected: *expected,
            found: frame.lsn,
        });
    }
    *expected = frame.lsn.next();
    if frame.kind != FrameKind::Commit {
        return Err(FrameReplayError::UnsupportedKind {
            lsn: frame.lsn,
            kind: frame.kind,
        });
    }
    let record =
        CommitRecord::decode(frame.payload).map_err(|source| FrameReplayError::Decode {
            lsn: frame.lsn,
            source,
        })?;
    // In place: a replay error aborts the open, so per-record atomicity (and its
    // copying) buys nothing here.
    state
        .replay_in_place(&record, frame.lsn)
        .map_err(|source| FrameReplayError::Replay {
            lsn: frame.lsn,
            source,
        })
}

/// Every sealed segment the manifest recorded must hash to what it recorded (the
/// recovery check, shared with the offline checks).
pub fn check_segments_against_manifest(
    recovered: &RecoveredWal,
    manifest: &Manifest,
) -> Result<(), StartError> {
    let recorded = manifest.live_state().segments();
    for seg in &recovered.segments {
        if let (Some(hash), Some(rec)) = (&seg.sealed_hash, recorded.get(&seg.seq))
            && hash.0 != rec.sha256
        {
            return Err(StartError::SegmentMismatch {
                path: seg.path.clone(),
            });
        }
    }
    Ok(())
}

/// Submits commits to the Sequencer: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Committer {
    sequencer: Addr<Sequencer>,
    metrics: Arc<EngineMetrics>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Sequences `request` and waits for its finality.
    pub fn commit(
        &self,
        request: Request,
        finality: Finality,
        admission: Admission,
    ) -> Result<CommitOutcome, CommitError> {
        #[cfg(feature = "observability")]
        let started = Instant::now();
        let (reply, waiter) = completion();
        let msg = Commit {
            request,
            finality,
            reply,
        };
        match self.admit(msg, admission)? {
            None => {}
            Some(msg) => {
                futures::executor::block_on(self.sequencer.send(msg)).map_err(|e| self.closed(e))?
            }
        }
        let answer = waiter.wait().unwrap_or(Err(CommitError::Closed));
        #[cfg(feature = "observability")]
        crate::metrics::export::commit_latency(started.elapsed());
        answer
    }

    /// Async form of [`Committer::commit`]: awaits admission and finality without
    /// blocking the executor thread.
    pub async fn commit_async(
        &self,
        request: Request,
        finality: Finality,
    ) -> Result<CommitOutcome, CommitError> {
        #[cfg(feature = "observability")]
        let started = Instant::now();
        let (reply, waiter) = completion();
        let msg = Commit {
            request,
            finality,
            reply,
        };
        if let Some(msg) = self.admit(msg, Admission::Wait)? {
            self.sequencer.send(msg).await.map_err(|e| self.closed(e))?;
        }
        let answer = waiter.await.unwrap_or(Err(CommitError::Closed));
        #[cfg(feature = "observability")]
        crate::metrics::export::commit_latency(started.elapsed());
        answer
    }

    /// Tries to enqueue without waiting; hands the message back when the mailbox is
    /// full and the caller is willing to wait.
    fn admit(&self, msg: Commit, admission: Admission) -> Result<Option<Commit>, CommitError> {
        self.metrics
            .sequencer_queue_depth
            .fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "observability")]
        crate::metrics::export::sequencer_queue(1.0);
        let refused = |cause, error| {
            self.metrics
                .sequencer_queue_depth
                .fetch_sub(1, Ordering::Relaxed);
            #[cfg(feature = "observability")]
            crate::metrics::export::sequencer_queue(-1.0);
            self.metrics.count_error(cause);
            Err(error)
        };
        match self.sequencer.try_send(msg) {
            Ok(()) => Ok(None),
            Err(SendError::Full(msg)) => match admission {
                Admission::Wait => Ok(Some(msg)),
                Admission::FailFast => refused(ErrorCause::Busy, CommitError::Busy),
            },
            Err(SendError::Closed(_)) => refused(ErrorCause::Closed, CommitError::Closed),
        }
    }

    fn closed(&self, _e: MailboxError) -> CommitError {
        self.metrics
            .sequencer_queue_depth
            .fetch_sub(1, Ordering::Relaxed);
        #[cfg(feature = "observability")]
        crate::metrics::export::sequencer_queue(-1.0);
        self.metrics.count_error(ErrorCause::Closed);
        CommitError::Closed
    }
}
