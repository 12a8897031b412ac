//! The Compactor actor: merges run files level by level in the background, on its own
//! thread, never on the commit path.
//!
//! Each tick it asks the Sequencer for the live version, lets the leveled policy
//! (`aedb_storage::compaction::pick`) choose the most urgent merge, writes the merged
//! runs (sealed under the current key epoch), records the change as one version edit in
//! the manifest (outputs added and inputs removed atomically), and hands it to the
//! Sequencer. The inputs' files are deleted only after that, and only once no snapshot
//! still holds them: they wait in a graveyard until the last reader lets go. Versions
//! older than the retention floor that a newer version hides, and tombstones that
//! reached the bottom, are dropped. Older-epoch runs are re-sealed under the current
//! epoch when nothing more urgent is due (or at once, on [`Reseal`]). A byte budget per
//! second keeps compaction from starving the WAL's fsyncs, except while level 0 is so
//! deep that commits wait for it (`CompactionOptions::l0_stop_runs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aedb_checkpoint::{OsNonceSource, RunFileMeta, RunOptions, RunWriter, checkpoints_dir};
use aedb_keys::MasterKeyId;
use aedb_manifest::{ManifestRecord, RunRecord, VersionEdit};
use aedb_model::{DroppedTableRows, IdempotencyExpiry, IdempotencyRetention, ModelExpiry, State};
use aedb_storage::compaction::{self, CompactionOptions, FullCompaction, Method, Task};
use aedb_storage::{Edit, Run, StorageError, Version};
use aedb_sync::SnapshotCell;
use aedb_types::{KeyEpoch, Lsn};

use crate::actor::{Ask, Owner, OwnerRef};
use crate::checkpoint_sealer::CheckpointFailure;
use crate::keyring::EpochTable;
use crate::manifest_chain::{GetLiveState, ManifestRef, Record};
use crate::metrics::EngineMetrics;
use crate::runs::{FileIds, RunOpener, run_record};
use crate::sequencer::{CurrentVersion, InstallRuns, Sequencer};

/// Merge every run into the bottom level (a full compaction: one run per key range,
/// every version the retention floor hides and every tombstone dropped), then run
/// whatever leveled compaction is still due; answers what was done.
#[derive(Debug)]
pub struct Compact;

/// Re-seal every run not sealed under the current key epoch (after `rotate_keys`), so
/// older epochs can be retired; answers what was done.
#[derive(Debug)]
pub struct Reseal;

/// What a `Compact` or `Reseal` message did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Merges run.
    pub compactions: u64,
    /// Run-file bytes read.
    pub bytes_read: u64,
    /// Run-file bytes written.
    pub bytes_written: u64,
    /// Versions dropped (hidden below the retention floor).
    pub dropped_versions: u64,
    /// Tombstones dropped at the bottom.
    pub dropped_tombstones: u64,
    /// Expired idempotency records dropped (or hidden behind a tombstone above the
    /// bottom level).
    pub expired_idempotency_records: u64,
    /// Rows of dropped tables dropped (or hidden behind a tombstone above the bottom
    /// level).
    pub dropped_table_rows: u64,
    /// Runs moved one level down without a rewrite (they overlapped nothing there).
    pub moved_runs: u64,
    /// Runs removed without being read: every key in them was a row of a table dropped
    /// at or below the retention floor, or an idempotency record past its window by
    /// LSN (in a run no deeper level overlaps).
    pub dropped_runs: u64,
    /// Key ranges merged at once on threads of their own (merges split over
    /// `CompactionOptions::threads`; 0 when no merge was split).
    pub subcompactions: u64,
}

/// Everything the Compactor needs, handed over at start.
pub struct CompactorContext {
    /// The Sequencer (live version in, version edits out).
    pub sequencer: OwnerRef<Sequencer>,
    /// The manifest.
    pub manifest: ManifestRef,
    /// Opens the runs it writes (and holds the file system, keys and block cache).
    pub runs: RunOpener,
    /// Run-file ids (shared with the CheckpointSealer).
    pub file_ids: Arc<FileIds>,
    /// Block size, filter and compression of the runs it writes.
    pub run_options: RunOptions,
    /// Triggers and sizes.
    pub options: CompactionOptions,
    /// Reads as of this many LSNs before the newest stay possible (`snapshot_at`).
    pub retention_lsns: u64,
    /// Idempotency records past this window (as seen from the retention floor) are
    /// dropped.
    pub idempotency_retention: IdempotencyRetention,
    /// Write at most this many bytes per second (0: unlimited).
    pub bytes_per_sec: u64,
    /// Published snapshots (the retention floor follows the visible LSN).
    pub snapshots: Arc<SnapshotCell<State>>,
    /// Counters.
    pub metrics: Arc<EngineMetrics>,
}

/// The Compactor; see the module docs.
pub struct Compactor {
    ctx: CompactorContext,
    /// Replaced runs whose files are deleted once no reader holds them.
    graveyard: Vec<Arc<Run>>,
    /// Until when the byte budget pauses automatic compaction.
    resume_at: Instant,
    /// When the tick next looks at cold runs (see [`COLD_SWEEP`]).
    next_cold_sweep: Instant,
    /// The last sweep found garbage to rewrite: look again at the next idle tick.
    garbage_pending: bool,
}

/// How often an idle compactor looks at cold runs: runs holding only rows of dropped
/// tables, to remove, and runs with garbage past `CompactionOptions::garbage_percent`,
/// to rewrite (then one per idle tick while there are any; a failed rewrite waits for
/// the next sweep).
const COLD_SWEEP: Duration = Duration::from_secs(10);

impl Compactor {
    /// The compactor over `ctx`.
    pub fn new(ctx: CompactorContext) -> Compactor {
        Compactor {
            ctx,
            graveyard: Vec::new(),
            resume_at: Instant::now(),
            next_cold_sweep: Instant::now(),
            garbage_pending: false,
        }
    }

    fn version(&self) -> Result<Arc<Version>, CheckpointFailure> {
        self.ctx
            .sequencer
            .ask(CurrentVersion)
            .map_err(|_| CheckpointFailure::Closed)
    }

    /// The epoch new runs are sealed under, and its master (from the manifest, which
    /// `rotate_keys` updates first).
    /// Also refreshes the epochs the compactor can open runs under.
    fn current_epoch(&mut self) -> Result<(KeyEpoch, MasterKeyId), CheckpointFailure> {
        let live = self
            .ctx
            .manifest
            .ask(GetLiveState)
            .map_err(|_| CheckpointFailure::Closed)?;
        self.ctx.runs.epochs =
            EpochTable::from_live(&live).map_err(|e| CheckpointFailure::Key(Arc::new(e)))?;
        let (epoch, info) =
            live.key_epochs().iter().next_back().ok_or_else(|| {
                CheckpointFailure::Wal("the manifest records no key epoch".into())
            })?;
        let master = info
            .master_key_id
            .parse()
            .map_err(|e| CheckpointFailure::Key(Arc::new(e)))?;
        Ok((*epoch, master))
    }

    /// Runs one merge (or move) on up to `threads` threads (see
    /// `compaction::compact_parallel`) and installs it; answers the ids of the runs it
    /// added.
    fn run(
        &mut self,
        task: &Task,
        floor: Lsn,
        threads: usize,
        report: &mut CompactionReport,
    ) -> Result<Vec<u64>, CheckpointFailure> {
        if task.method == Method::Move {
            return self.move_down(task, report);
        }
        let started = Instant::now();
        let (epoch, master) = self.current_epoch()?;
        let key = self
            .ctx
            .runs
            .keyring
            .checkpoint_key(self.ctx.runs.database, epoch, &master)
            .map_err(|e| CheckpointFailure::Key(Arc::new(e)))?;
        let ids = std::sync::Mutex::new(Vec::new());
        let dir = checkpoints_dir(&self.ctx.runs.data_dir);
        let new_writer = || {
            let file_id = self.ctx.file_ids.next();
            ids.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(file_id);
            RunWriter::create(
                &self.ctx.runs.fs,
                &dir,
                RunFileMeta {
                    database: self.ctx.runs.database,
                    file_id,
                    epoch,
                },
                key.as_ref(),
                Box::new(OsNonceSource),
                self.ctx.run_options,
            )
            .map_err(|e| StorageError::Write(Arc::new(e)))
        };
        let filter = self.expiry(task, floor);
        // A panic (a bug) still removes what the merge wrote before it goes on.
        let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            compaction::compact_parallel(
                task,
                floor,
                filter
                    .as_ref()
                    .map(|f| f as &dyn compaction::CompactionFilter),
                threads,
                &new_writer,
            )
        }));
        let ids = ids
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let merged = merged.unwrap_or_else(|panic| {
            self.remove_unrecorded(&ids);
            std::panic::resume_unwind(panic)
        });
        let outcome = match merged {
            Ok(o) => o,
            Err(e) => {
                self.remove_unrecorded(&ids);
                return Err(CheckpointFailure::Storage(e));
            }
        };
        let opened: Result<Vec<Arc<Run>>, _> = outcome
            .outputs
            .iter()
            .map(|o| self.ctx.runs.open(o.file_id))
            .collect();
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                self.remove_unrecorded(&ids);
                return Err(CheckpointFailure::Write(Arc::new(e)));
            }
        };
        let record = VersionEdit {
            flushed_lsn: Lsn::ZERO,
            next_file_id: ids.iter().max().map_or(0, |id| id + 1),
            added: outcome
                .outputs
                .iter()
                .map(|o| run_record(o, task.output_level))
                .collect(),
            removed: task.inputs.iter().map(|(_, r)| r.id()).collect(),
            // Persisted, so a restart refuses reads below it too.
            floor,
        };
        let recorded = self
            .ctx
            .manifest
            .ask(Record(vec![ManifestRecord::VersionEdit(record)]))
            .map_err(|_| CheckpointFailure::Closed)?;
        if let Err(e) = recorded {
            self.remove_unrecorded(&ids);
            return Err(CheckpointFailure::Manifest(e));
        }
        let added: Vec<u64> = opened.iter().map(|r| r.id()).collect();
        let edit = Edit {
            added: opened.into_iter().map(|r| (task.output_level, r)).collect(),
            removed: task.inputs.iter().map(|(_, r)| r.id()).collect(),
            floor,
        };
        self.install(edit)?;
        self.graveyard
            .extend(task.inputs.iter().map(|(_, r)| r.clone()));
        let read = task.input_bytes();
        let written: u64 = outcome.outputs.iter().map(|o| o.len).sum();
        tracing::debug!(
            inputs = task.inputs.len(),
            output_level = task.output_level,
            outputs = outcome.outputs.len(),
            bytes_read = read,
            bytes_written = written,
            seconds = started.elapsed().as_secs_f64(),
            "compaction"
        );
        report.compactions += 1;
        report.bytes_read += read;
        report.bytes_written += written;
        report.dropped_versions += outcome.dropped_versions;
        report.dropped_tombstones += outcome.dropped_tombstones;
        let (expired, dropped_rows) = filter.as_ref().map_or((0, 0), |f| {
            (f.expired_idempotency_records(), f.dropped_table_rows())
        });
        report.expired_idempotency_records += expired;
        report.dropped_table_rows += dropped_rows;
        let m = &self.ctx.metrics;
        m.compactions.fetch_add(1, Ordering::Relaxed);
        m.idempotency_expired_dropped
            .fetch_add(expired, Ordering::Relaxed);
        m.dropped_table_rows
            .fetch_add(dropped_rows, Ordering::Relaxed);
        m.compaction_bytes_read.fetch_add(read, Ordering::Relaxed);
        m.compaction_bytes_written
            .fetch_add(written, Ordering::Relaxed);
        report.subcompactions += outcome.ranges;
        m.compaction_subcompactions
            .fetch_add(outcome.ranges, Ordering::Relaxed);
        if self.ctx.bytes_per_sec > 0 {
            let budget = Duration::from_secs_f64(written as f64 / self.ctx.bytes_per_sec as f64);
            self.resume_at = started + budget;
        }
        Ok(added)
    }

    /// What the data model lets a merge to `floor` discard; `None` at floor zero (a
    /// re-seal keeps every version). Rows of dropped tables count only for drops at or
    /// below both the floor and the inputs' newest LSN: every such drop is inside the
    /// flushed runs, so a restored backup of these runs (read from its base LSN on)
    /// cannot see a table whose rows were dropped. A catalog that cannot be read
    /// leaves dropped tables' rows for a later merge instead of failing this one.
    fn expiry(&self, task: &Task, floor: Lsn) -> Option<ModelExpiry> {
        if floor == Lsn::ZERO {
            return None;
        }
        let inputs_newest = task
            .inputs
            .iter()
            .map(|(_, r)| r.file().max_lsn())
            .max()
            .unwrap_or(Lsn::ZERO);
        let dropped = self.dropped_rows_at(floor.min(inputs_newest));
        // A manifest that cannot answer expires no record by LSN.
        let flushed = self
            .ctx
            .manifest
            .ask(GetLiveState)
            .map_or(Lsn::ZERO, |live| live.flushed_lsn());
        Some(ModelExpiry::new(
            self.idempotency_expiry(floor.min(flushed)),
            dropped,
        ))
    }

    /// The rows of tables missing from the catalog as of `at` (none at LSN zero). A
    /// catalog that cannot be read leaves dropped tables' rows for a later merge
    /// instead of failing this one.
    fn dropped_rows_at(&self, at: Lsn) -> DroppedTableRows {
        if at == Lsn::ZERO {
            return DroppedTableRows::none();
        }
        match self.ctx.snapshots.load().1.as_of(at) {
            Ok(state) => state.dropped_table_rows(),
            Err(e) => {
                tracing::warn!(
                    "compaction keeps dropped tables' rows: the catalog at {at} is unreadable: {e}"
                );
                DroppedTableRows::none()
            }
        }
    }

    /// Idempotency records past the window as seen from `at`: the floor, or the flushed
    /// LSN when that is lower. Commits up to the floor may be visible but not yet
    /// durable; after a crash (or a restore to an earlier LSN) the database goes on
    /// from no earlier than the flushed LSN, and a record still inside the window there
    /// must still be honoured.
    fn idempotency_expiry(&self, at: Lsn) -> IdempotencyExpiry {
        IdempotencyExpiry {
            retention: self.ctx.idempotency_retention,
            floor: at,
            now_unix_ms: aedb_types::clock::unix_millis(),
        }
    }

    /// Re-files a move task's runs at its output level: one version edit removes each
    /// and adds it again one level down (the manifest's record of it, level changed),
    /// and no byte of them is read or written. The files stay: the new version holds
    /// the same runs.
    fn move_down(
        &mut self,
        task: &Task,
        report: &mut CompactionReport,
    ) -> Result<Vec<u64>, CheckpointFailure> {
        let live = self
            .ctx
            .manifest
            .ask(GetLiveState)
            .map_err(|_| CheckpointFailure::Closed)?;
        let mut added = Vec::with_capacity(task.inputs.len());
        // Merging is always correct: the fallback whenever a move cannot be recorded.
        let merge = |compactor: &mut Compactor, report: &mut CompactionReport| {
            let merge = Task {
                method: Method::Merge,
                ..task.clone()
            };
            let floor = compactor.floor();
            compactor.run(&merge, floor, 1, report)
        };
        for (_, run) in &task.inputs {
            // The manifest lists every live run.
            let Some(record) = live.runs().get(&run.id()) else {
                return merge(self, report);
            };
            added.push(RunRecord {
                level: task.output_level as u8,
                ..record.clone()
            });
        }
        let removed: Vec<u64> = task.inputs.iter().map(|(_, r)| r.id()).collect();
        let recorded = self
            .ctx
            .manifest
            .ask(Record(vec![ManifestRecord::VersionEdit(VersionEdit {
                flushed_lsn: Lsn::ZERO,
                next_file_id: 0,
                added,
                removed: removed.clone(),
                floor: Lsn::ZERO,
            })]))
            .map_err(|_| CheckpointFailure::Closed)?;
        if let Err(e) = recorded {
            // Refused (it cannot be with consistent levels) or not written: merge, so
            // the level is not retried as a move forever.
            tracing::warn!("compaction: a move was not recorded ({e}); merging instead");
            return merge(self, report);
        }
        let edit = Edit {
            added: task
                .inputs
                .iter()
                .map(|(_, r)| (task.output_level, r.clone()))
                .collect(),
            removed,
            floor: Lsn::ZERO,
        };
        self.install(edit)?;
        tracing::debug!(
            runs = task.inputs.len(),
            output_level = task.output_level,
            "compaction: runs moved"
        );
        report.moved_runs += task.inputs.len() as u64;
        self.ctx
            .metrics
            .compaction_moved_runs
            .fetch_add(task.inputs.len() as u64, Ordering::Relaxed);
        Ok(task.inputs.iter().map(|(_, r)| r.id()).collect())
    }

    /// Removes, without reading them, the runs whose every key is a row of a table
    /// dropped at or below both the retention floor and the flushed LSN (RocksDB's
    /// `DeleteFilesInRange`), so dropping a large table frees its files even where no
    /// merge would reach them. The catalog is read as of the lower of the two: a drop
    /// still only in the memtable (or not yet durable) removes nothing, so recovery,
    /// which starts from the flushed runs, and a backup's base never miss a table's
    /// rows. Only runs written at or below that LSN qualify: a row is never older than
    /// its table, so a table missing from the catalog there, with rows at or below it,
    /// was dropped by then. Older versions of those keys deeper down belong to the same
    /// table, which no read can reach any more. The edits record the floor, so reads
    /// as of earlier LSNs are refused, after a restart too.
    ///
    /// Also removes the runs of level 1 or deeper that hold only idempotency records
    /// past their window by LSN at the same LSN (the floor, at most the flushed LSN:
    /// what a recovery or restore reaches) (`IdempotencyExpiry::
    /// expires_every_record_between`) and overlap nothing deeper, so no older version
    /// shows through: a ledger keyed by ascending request ids moves such runs down
    /// untouched, and no merge would ever reach them again.
    fn drop_dead_runs(&mut self, report: &mut CompactionReport) -> Result<(), CheckpointFailure> {
        let floor = self.floor();
        if floor == Lsn::ZERO {
            return Ok(());
        }
        let flushed = self
            .ctx
            .manifest
            .ask(GetLiveState)
            .map_err(|_| CheckpointFailure::Closed)?
            .flushed_lsn();
        let catalog_at = floor.min(flushed);
        let dropped = self.dropped_rows_at(catalog_at);
        let idempotency = self.idempotency_expiry(catalog_at);
        let version = self.version()?;
        let dead: Vec<Arc<Run>> = version
            .runs()
            .filter(|(level, r)| {
                let f = r.file();
                let table_dropped = f.max_lsn() <= catalog_at
                    && dropped.drops_every_key_between(f.first_key(), f.last_key());
                // Removing the oldest versions of expired records shows nothing older.
                let records_expired = *level > 0
                    && idempotency.expires_every_record_between(
                        f.first_key(),
                        f.last_key(),
                        f.max_lsn(),
                    )
                    && compaction::picker::nothing_below(&version, *level, r);
                table_dropped || records_expired
            })
            .map(|(_, r)| r.clone())
            .collect();
        drop(version);
        for chunk in dead.chunks(compaction::MAX_EDIT_RUNS) {
            let removed: Vec<u64> = chunk.iter().map(|r| r.id()).collect();
            self.ctx
                .manifest
                .ask(Record(vec![ManifestRecord::VersionEdit(VersionEdit {
                    flushed_lsn: Lsn::ZERO,
                    next_file_id: 0,
                    added: Vec::new(),
                    removed: removed.clone(),
                    floor,
                })]))
                .map_err(|_| CheckpointFailure::Closed)?
                .map_err(CheckpointFailure::Manifest)?;
            self.install(Edit {
                added: Vec::new(),
                removed,
                floor,
            })?;
            self.graveyard.extend(chunk.iter().cloned());
            let n = chunk.len() as u64;
            report.dropped_runs += n;
            self.ctx
                .metrics
                .compaction_dropped_runs
                .fetch_add(n, Ordering::Relaxed);
            tracing::debug!(
                runs = n,
                "compaction: runs of dropped tables or expired idempotency records removed"
            );
        }
        Ok(())
    }

    /// Every [`COLD_SWEEP`], removes the runs of dropped tables and of expired
    /// idempotency records; then, while the
    /// sweeps find some, answers the cold run with the most garbage to rewrite.
    fn cold_sweep(&mut self) -> Option<Task> {
        let now = Instant::now();
        if now >= self.next_cold_sweep {
            self.next_cold_sweep = now + COLD_SWEEP;
            self.garbage_pending = true;
            if let Err(e) = self.drop_dead_runs(&mut CompactionReport::default()) {
                self.ctx
                    .metrics
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("removing dead runs failed: {e}");
            }
        }
        if !self.garbage_pending {
            return None;
        }
        let version = self.version().ok()?;
        let task = compaction::pick_garbage(&version, &self.ctx.options, self.floor());
        self.garbage_pending = task.is_some();
        task
    }

    /// Hands a recorded edit to the Sequencer, which owns the live version.
    fn install(&self, edit: Edit) -> Result<(), CheckpointFailure> {
        self.ctx
            .sequencer
            .ask(InstallRuns {
                edit,
                flushed: None,
            })
            .map_err(|_| CheckpointFailure::Closed)
    }

    /// Best effort: outputs that never reached the manifest are removed at the next
    /// open anyway.
    fn remove_unrecorded(&self, ids: &[u64]) {
        for &id in ids {
            let path = aedb_checkpoint::run_path(&self.ctx.runs.data_dir, id);
            if self.ctx.runs.fs.exists(&path) {
                let _ = self.ctx.runs.fs.remove_file(&path);
            }
        }
    }

    /// The oldest LSN reads must still see exactly.
    fn floor(&self) -> Lsn {
        Lsn::new(
            self.ctx
                .snapshots
                .version()
                .saturating_sub(self.ctx.retention_lsns),
        )
    }

    /// A full compaction (in bounded steps: see [`FullCompaction`]), then leveled ones
    /// until nothing is due.
    fn compact_all(&mut self) -> Result<CompactionReport, CheckpointFailure> {
        let mut report = CompactionReport::default();
        self.drop_dead_runs(&mut report)?;
        let mut full = FullCompaction::new(&*self.version()?, &self.ctx.options);
        // A lone bottom run is rewritten too: the floor may have moved since it was
        // written, hiding more versions, and the filters may expire more.
        loop {
            let version = self.version()?;
            let Some(step) = full.next(&version) else {
                break;
            };
            let floor = self.floor();
            let added = self.run(&step, floor, self.ctx.options.threads, &mut report)?;
            full.record(added);
            // Writers keep going: level-0 runs flushed meanwhile are merged into level
            // 1 as leveled compaction would (one such merge per step, once the old
            // ones are pushed down). One that would take in the full compaction's runs
            // waits until level 0 reaches the slowdown depth, so its runs can move out
            // of the way first; then it runs, and what it wrote of them is left to
            // leveled compaction (recording it would chase the writes).
            let version = self.version()?;
            if full.holds_level0(&version) {
                continue;
            }
            if let Some(task) = compaction::picker::pick_level0(&version, &self.ctx.options) {
                let takes_ours = task.inputs.iter().any(|(_, r)| full.tracks(r));
                if takes_ours && version.level(0).len() < self.ctx.options.l0_slowdown_runs {
                    continue;
                }
                drop(version);
                let floor = self.floor();
                self.run(&task, floor, self.ctx.options.threads, &mut report)?;
            }
        }
        while let Some(task) = compaction::pick(&*self.version()?, &self.ctx.options) {
            let floor = self.floor();
            self.run(&task, floor, self.ctx.options.threads, &mut report)?;
        }
        self.collect_garbage();
        Ok(report)
    }

    /// Rewrites every run sealed under an older epoch, in place (same level, same
    /// keys, every version kept).
    fn reseal(&mut self) -> Result<CompactionReport, CheckpointFailure> {
        let mut report = CompactionReport::default();
        let (epoch, _) = self.current_epoch()?;
        let stale: Vec<Task> = self
            .version()?
            .runs()
            .filter(|(_, run)| run.file().epoch() != epoch)
            .map(|(level, run)| Task::merge(vec![(level, run.clone())], level, false, u64::MAX))
            .collect();
        for task in stale {
            // One output per run: a re-seal keeps each run whole, so it never splits.
            self.run(&task, Lsn::ZERO, 1, &mut report)?;
        }
        self.collect_garbage();
        Ok(report)
    }

    /// Deletes replaced runs no reader holds any more (the graveyard holds the last
    /// reference).
    fn collect_garbage(&mut self) {
        let runs = &self.ctx.runs;
        self.graveyard.retain(|run| {
            if Arc::strong_count(run) > 1 {
                return true;
            }
            runs.cache
                .forget_file(run.id(), run.block_count(), run.file().partition_count());
            match runs.fs.remove_file(run.path()) {
                Ok(()) => false,
                Err(e) => {
                    // The manifest no longer lists it: open removes it if this fails.
                    tracing::warn!(
                        "could not delete replaced run {}: {e}",
                        run.path().display()
                    );
                    false
                }
            }
        });
    }
}

impl Owner for Compactor {
    const NAME: &'static str = "compactor";

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(100))
    }

    /// One merge per tick when one is due and the byte budget allows, then garbage.
    fn tick(&mut self) {
        self.collect_garbage();
        let Ok(version) = self.version() else { return };
        // Commits are slowed (or wait) while level 0 is this deep: the byte budget
        // yields to them.
        let opts = &self.ctx.options;
        let writers_stalled =
            version.level(0).len() >= opts.l0_slowdown_runs.min(opts.l0_stop_runs);
        if Instant::now() < self.resume_at && !writers_stalled {
            return;
        }
        // Behind the writers, a merge takes every thread it may; otherwise one, so
        // commits keep the rest of the machine.
        let threads = if writers_stalled { opts.threads } else { 1 };
        let task = compaction::pick(&version, &self.ctx.options);
        drop(version);
        let task = match task {
            None => self.cold_sweep(),
            task => task,
        };
        if let Some(task) = task {
            let floor = self.floor();
            let mut report = CompactionReport::default();
            if let Err(e) = self.run(&task, floor, threads, &mut report) {
                self.ctx
                    .metrics
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("compaction failed: {e}");
                // Back off: a failing disk is not retried in a tight loop, nor a cold
                // run that cannot be rewritten before the next sweep.
                self.resume_at = Instant::now() + Duration::from_secs(1);
                self.garbage_pending = false;
            }
        }
    }

    /// Deletes what it can at shutdown (readers are gone by then).
    fn stopped(&mut self) {
        self.collect_garbage();
    }
}

impl Ask<Compactor> for Compact {
    type Reply = Result<CompactionReport, CheckpointFailure>;

    fn handle(self, compactor: &mut Compactor) -> Self::Reply {
        compactor.compact_all()
    }
}

impl Ask<Compactor> for Reseal {
    type Reply = Result<CompactionReport, CheckpointFailure>;

    fn handle(self, compactor: &mut Compactor) -> Self::Reply {
        compactor.reseal()
    }
}
