//! The CheckpointSealer actor: writes incremental checkpoints off the commit path, on
//! its own thread.
//!
//! An incremental checkpoint is a flush: the Sequencer freezes its memtable (when full,
//! or on `checkpoint_now()`), the sealer makes the WAL durable up to it, writes it as one
//! level-0 run file (`aedb-checkpoint`: sorted blocks, each sealed with XChaCha20-Poly1305
//! under the current key epoch when a key is configured), fsyncs and renames it, records
//! it in the manifest as a version edit and hands the open run back to the Sequencer,
//! which drops the memtable. Only then are version-1 full checkpoints and WAL segments
//! the runs cover retired. A checkpoint writes only what changed since the last one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aedb_checkpoint::{CheckpointError, OsNonceSource};
use aedb_keys::{KeyError, MasterKeyId};
use aedb_manifest::ManifestRecord;
use aedb_model::State;
use aedb_sync::completion::completion;
use aedb_sync::group_commit::{GroupCommitError, WriterMsg};
use aedb_sync::mailbox::MailboxSender;
use aedb_sync::{Completer, SnapshotCell};
use aedb_types::{DatabaseId, KeyEpoch, Lsn, SegmentSeq};

use crate::actor::{Ask, Owner, OwnerRef};
use crate::keyring::Keyring;
use crate::manifest_chain::{GetLiveState, ManifestRef, Record, SharedManifestError};
use crate::metrics::EngineMetrics;
use crate::runs::{FileIds, RunOpener, run_record};
use crate::sequencer::{Freeze, InstallRuns, Sequencer};
use crate::wal_writer::{SharedWalError, WalControl, WalMsg};
use aedb_checkpoint::{RunFileMeta, RunOptions, RunWriter, checkpoints_dir};
use aedb_manifest::VersionEdit;
use aedb_storage::Edit;

/// When automatic checkpoints run.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointPolicy {
    /// Checkpoint once this many WAL bytes were written since the last one.
    pub wal_bytes: u64,
    /// Checkpoint at least this often while commits arrive.
    pub interval: Duration,
}

/// What one checkpoint did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The LSN the checkpoint covers (unchanged when nothing was new).
    pub lsn: Lsn,
    /// The file written, or `None` when the newest checkpoint already covered `lsn`.
    pub path: Option<PathBuf>,
    /// Bytes written.
    pub bytes: u64,
    /// WAL segments deleted because checkpoints cover them.
    pub retired_segments: usize,
    /// Old checkpoint files deleted.
    pub retired_checkpoints: usize,
}

/// Why a checkpoint failed. The previous checkpoint and the WAL are untouched.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CheckpointFailure {
    /// The WAL could not make the snapshot's LSN durable (it is fail-stopped).
    #[error("the WAL could not make the checkpoint's LSN durable: {0}")]
    Wal(String),
    /// Writing or sealing the checkpoint file failed.
    #[error("writing the checkpoint failed: {0}")]
    Write(Arc<CheckpointError>),
    /// Recording it in the manifest failed.
    #[error("recording the checkpoint in the manifest failed: {0}")]
    Manifest(SharedManifestError),
    /// The state could not be read (a run file failed to read or authenticate).
    #[error("reading the state failed: {0}")]
    Read(aedb_model::ReadError),
    /// Flushing a memtable failed (its run could not be written).
    #[error("flushing a memtable failed: {0}")]
    Storage(aedb_storage::StorageError),
    /// The checkpoint key could not be derived.
    #[error("deriving the checkpoint key failed: {0}")]
    Key(Arc<KeyError>),
    /// The engine is shutting down.
    #[error("the engine is shutting down")]
    Closed,
    /// A secure instance refused the caller. Nothing was done.
    #[error(transparent)]
    Access(#[from] aedb_authz::AccessError),
}

/// Checkpoint now (`checkpoint_now()`).
#[derive(Debug)]
pub struct SealNow;

/// Start a new key epoch (`rotate_keys()`), then checkpoint under it. Answers the new
/// epoch and the checkpoint taken under it.
#[derive(Debug)]
pub struct Rotate;

/// Pin a consistent set of the data directory's files for a forensic capture (see
/// [`CaptureView`]). Answered on the sealer's thread, so no checkpoint is sealed or
/// retired (and no WAL segment retired) while the set is gathered.
#[derive(Debug)]
pub struct Capture;

/// A consistent, pinned set of a running database's files: a copy of the manifest, an
/// open handle on every checkpoint it lists, and every WAL segment opened at a barrier
/// after it. Open handles keep the files readable even if a later checkpoint retires
/// them, so the caller copies them at leisure, off every owner's thread.
///
/// The manifest is copied first and the WAL opened after it: a segment sealed between
/// the two is present but not yet recorded, exactly as after a crash between sealing and
/// recording, which recovery accepts; the reverse order could record a seal the copied
/// (active, partial) segment lacks.
#[derive(Debug)]
pub struct CaptureView {
    /// The manifest's bytes and the live state they describe.
    pub manifest: crate::manifest_chain::ManifestCopy,
    /// Every live checkpoint: its LSN, its record, its path and an open read handle.
    pub checkpoints: Vec<CapturedCheckpoint>,
    /// Every live run file: its record, its path and an open read handle. Compaction
    /// cannot delete an open file's data from under the handle.
    pub runs: Vec<CapturedRun>,
    /// Every WAL segment, opened at a barrier after the manifest copy.
    pub wal: crate::wal_writer::WalBackupView,
}

/// One checkpoint of a [`CaptureView`].
#[derive(Debug)]
pub struct CapturedCheckpoint {
    /// Its LSN.
    pub lsn: Lsn,
    /// What the manifest records about it (name, length, SHA-256).
    pub record: aedb_manifest::LiveCheckpoint,
    /// Its path in the data directory.
    pub path: PathBuf,
    /// An open read handle.
    pub file: Arc<dyn aedb_fs::DiskFile>,
}

/// One run file of a [`CaptureView`].
#[derive(Debug)]
pub struct CapturedRun {
    /// What the manifest records about it (level, LSN range, length, SHA-256).
    pub record: aedb_manifest::RunRecord,
    /// Its path in the data directory.
    pub path: PathBuf,
    /// An open read handle.
    pub file: Arc<dyn aedb_fs::DiskFile>,
}

/// Open every WAL segment at a barrier ([`crate::WalBackupView`]) for a hot backup
/// taken through a [`crate::BackupPort`]: asked of the sealer, so the port holds no
/// sender of the WAL mailbox (which would keep the WAL writer alive past shutdown).
#[derive(Debug)]
pub struct WalView;

/// Why gathering a [`CaptureView`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureFailure {
    /// The manifest, the WAL or the sealer refused.
    #[error(transparent)]
    Pipeline(#[from] CheckpointFailure),
    /// A checkpoint the manifest lists could not be opened.
    #[error("cannot open checkpoint {}: {source}", .path.display())]
    OpenCheckpoint {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Everything the sealer needs, handed over at start.
pub struct SealerContext {
    /// The file system the data directory lives on.
    pub fs: aedb_fs::SharedFs,
    /// The data directory.
    pub data_dir: PathBuf,
    /// This database.
    pub database: DatabaseId,
    /// Key providers.
    pub keyring: Keyring,
    /// The epoch new checkpoints are sealed under, and its master.
    pub epoch: (KeyEpoch, MasterKeyId),
    /// Published snapshots.
    pub snapshots: Arc<SnapshotCell<State>>,
    /// The WAL writer (barriers and retirement).
    pub wal: MailboxSender<WalMsg>,
    /// The manifest.
    pub manifest: ManifestRef,
    /// Counters.
    pub metrics: Arc<EngineMetrics>,
    /// Automatic triggers.
    pub policy: CheckpointPolicy,
    /// LSN of the newest checkpoint at start (every commit up to it is in run files or
    /// a version-1 checkpoint).
    pub last_lsn: Lsn,
    /// The Sequencer: frozen memtables come from it, installed runs go back to it.
    pub sequencer: OwnerRef<Sequencer>,
    /// Opens the runs it writes.
    pub runs: RunOpener,
    /// Run-file ids (shared with the Compactor).
    pub file_ids: Arc<FileIds>,
    /// Block size, filter and compression of the runs it writes.
    pub run_options: RunOptions,
    /// For each decrypt-only (older, not yet retired) key epoch, an LSN no frame sealed
    /// under it exceeds. Once the WAL no longer holds that LSN and no live checkpoint is
    /// sealed under the epoch, it is retired.
    pub epoch_bounds: BTreeMap<KeyEpoch, Lsn>,
}

/// The CheckpointSealer: owns writing and retiring checkpoint files.
pub struct Sealer {
    ctx: SealerContext,
    wal_bytes_at_last: u64,
    last_at: Instant,
}

impl Sealer {
    /// The sealer over `ctx`.
    pub fn new(ctx: SealerContext) -> Sealer {
        Sealer {
            wal_bytes_at_last: ctx.metrics.wal_bytes.load(Ordering::Relaxed),
            last_at: Instant::now(),
            ctx,
        }
    }
}

impl Owner for Sealer {
    const NAME: &'static str = "checkpoint";

    /// Often: a frozen memtable waiting for its flush may hold commits back (a write
    /// stall, see `WriteLimits`), and asking the Sequencer costs one message.
    fn tick_interval(&self) -> Option<Duration> {
        Some(self.ctx.policy.interval.min(Duration::from_millis(50)))
    }

    /// Automatic checkpoints: full memtables the Sequencer froze, and by WAL bytes and
    /// time.
    fn tick(&mut self) {
        let force = self.due();
        if let Err(e) = self.flush(force) {
            self.ctx
                .metrics
                .checkpoint_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("automatic checkpoint failed: {e}");
        }
    }
}

/// The checkpoint of a clean shutdown: flush everything, then seal the active WAL
/// segment when the runs cover all of it and retire it, so the next open has no WAL
/// to scan or replay.
#[derive(Debug)]
pub struct ShutdownCheckpoint;

impl Ask<Sealer> for ShutdownCheckpoint {
    type Reply = Result<CheckpointReport, CheckpointFailure>;

    fn handle(self, sealer: &mut Sealer) -> Self::Reply {
        let report = sealer.flush(true)?;
        let rotated = sealer
            .wal_control(|reply| WalControl::RotateCovered {
                lsn: report.lsn,
                reply,
            })?
            .map_err(|e| CheckpointFailure::Wal(e.to_string()))?;
        if !rotated {
            return Ok(report);
        }
        let (retired_checkpoints, retired_segments) = sealer.retire()?;
        Ok(CheckpointReport {
            retired_segments: report.retired_segments + retired_segments,
            retired_checkpoints: report.retired_checkpoints + retired_checkpoints,
            ..report
        })
    }
}

impl Ask<Sealer> for SealNow {
    type Reply = Result<CheckpointReport, CheckpointFailure>;

    fn handle(self, sealer: &mut Sealer) -> Self::Reply {
        sealer.seal()
    }
}

impl Ask<Sealer> for Rotate {
    type Reply = Result<(KeyEpoch, CheckpointReport), CheckpointFailure>;

    fn handle(self, sealer: &mut Sealer) -> Self::Reply {
        sealer.rotate()
    }
}

impl Ask<Sealer> for Capture {
    type Reply = Result<CaptureView, CaptureFailure>;

    fn handle(self, sealer: &mut Sealer) -> Self::Reply {
        sealer.capture()
    }
}

impl Ask<Sealer> for WalView {
    type Reply = Result<crate::wal_writer::WalBackupView, CheckpointFailure>;

    fn handle(self, sealer: &mut Sealer) -> Self::Reply {
        sealer
            .wal_control(|reply| WalControl::BackupView { reply })?
            .map_err(|e| CheckpointFailure::Wal(e.to_string()))
    }
}

impl Sealer {
    /// Gathers a [`CaptureView`] (manifest copy, then checkpoint handles, then the WAL at
    /// a barrier), all on this thread so no retirement interleaves.
    fn capture(&self) -> Result<CaptureView, CaptureFailure> {
        let manifest = self
            .ctx
            .manifest
            .ask(crate::manifest_chain::GetManifestCopy)
            .map_err(|_| CheckpointFailure::Closed)?
            .map_err(CheckpointFailure::Manifest)?;
        let open = |path: &std::path::Path| {
            self.ctx
                .fs
                .open(path, aedb_fs::OpenMode::Existing)
                .map_err(|source| CaptureFailure::OpenCheckpoint {
                    path: path.to_path_buf(),
                    source,
                })
        };
        let mut checkpoints = Vec::new();
        for (&lsn, record) in manifest.live.checkpoints() {
            let path = aedb_checkpoint::checkpoints_dir(&self.ctx.data_dir).join(&record.file_name);
            let file = open(&path)?;
            checkpoints.push(CapturedCheckpoint {
                lsn,
                record: record.clone(),
                path,
                file,
            });
        }
        let mut runs = Vec::new();
        for (&file_id, record) in manifest.live.runs() {
            let path = aedb_checkpoint::run_path(&self.ctx.data_dir, file_id);
            let file = open(&path)?;
            runs.push(CapturedRun {
                record: record.clone(),
                path,
                file,
            });
        }
        let wal = self
            .wal_control(|reply| WalControl::BackupView { reply })?
            .map_err(|e| CheckpointFailure::Wal(e.to_string()))?;
        Ok(CaptureView {
            manifest,
            checkpoints,
            runs,
            wal,
        })
    }

    fn due(&self) -> bool {
        let written = self.ctx.metrics.wal_bytes.load(Ordering::Relaxed) - self.wal_bytes_at_last;
        let new_commits = self.ctx.snapshots.version() > self.ctx.last_lsn.get();
        new_commits
            && (written >= self.ctx.policy.wal_bytes
                || self.last_at.elapsed() >= self.ctx.policy.interval)
    }

    fn wal_barrier(&self) -> Result<(), CheckpointFailure> {
        let (c, w) = completion();
        self.ctx
            .wal
            .send(WriterMsg::Barrier(c))
            .map_err(|_| CheckpointFailure::Closed)?;
        match w.wait() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(GroupCommitError::Io(e))) => Err(CheckpointFailure::Wal(e.to_string())),
            Ok(Err(GroupCommitError::FailStopped)) => {
                Err(CheckpointFailure::Wal("the WAL is fail-stopped".into()))
            }
            Err(_) => Err(CheckpointFailure::Closed),
        }
    }

    fn wal_control<T>(
        &self,
        make: impl FnOnce(Completer<T>) -> WalControl,
    ) -> Result<T, CheckpointFailure> {
        let (c, w) = completion();
        self.ctx
            .wal
            .send(WriterMsg::Control(make(c)))
            .map_err(|_| CheckpointFailure::Closed)?;
        w.wait().map_err(|_| CheckpointFailure::Closed)
    }

    fn record(&self, records: Vec<ManifestRecord>) -> Result<(), CheckpointFailure> {
        if records.is_empty() {
            return Ok(());
        }
        self.ctx
            .manifest
            .ask(Record(records))
            .map_err(|_| CheckpointFailure::Closed)?
            .map_err(CheckpointFailure::Manifest)
    }

    /// Key rotation: records the new epoch in the manifest, switches the WAL to it,
    /// and checkpoints under it when there is anything new to cover.
    /// Older epochs stay decryptable (their masters stay with the provider) for the
    /// files that still reference them.
    fn rotate(&mut self) -> Result<(KeyEpoch, CheckpointReport), CheckpointFailure> {
        let key_error = |e| CheckpointFailure::Key(Arc::new(e));
        let epoch = self
            .ctx
            .epoch
            .0
            .next()
            .ok_or_else(|| CheckpointFailure::Wal("key epochs exhausted".into()))?;
        let master = self.ctx.keyring.current_data_master().map_err(key_error)?;
        self.record(vec![ManifestRecord::KeyEpochChanged {
            epoch,
            master_key_id: master.to_string(),
            at_unix_ms: aedb_types::clock::unix_millis(),
        }])?;
        let cipher = self
            .ctx
            .keyring
            .wal_key(self.ctx.database, epoch, &master)
            .map_err(key_error)?
            .map(|key| aedb_wal::WalCipher::new(key, epoch, self.ctx.database));
        let last_under_old = self
            .wal_control(|reply| WalControl::SetCipher { cipher, reply })?
            .map_err(|e| CheckpointFailure::Wal(e.to_string()))?;
        self.ctx.runs.epochs.insert(epoch, master.clone());
        let old = std::mem::replace(&mut self.ctx.epoch, (epoch, master));
        self.ctx.epoch_bounds.insert(old.0, last_under_old);
        self.ctx
            .metrics
            .key_epoch
            .store(u64::from(epoch.get()), Ordering::Relaxed);
        // Checkpoint under the new epoch (a no-op when the newest checkpoint already
        // covers every commit; the next one is then the first under the new epoch).
        let report = self.seal()?;
        Ok((epoch, report))
    }

    /// `checkpoint_now()`: freezes the active memtable and flushes every frozen one.
    fn seal(&mut self) -> Result<CheckpointReport, CheckpointFailure> {
        self.flush(true)
    }

    /// Flushes the Sequencer's frozen memtables (after freezing the active one when
    /// `force`), oldest first, each into one level-0 run: written, fsynced, renamed,
    /// directory-fsynced, recorded in the manifest as a version edit, then installed in
    /// the Sequencer. Only what changed since the last checkpoint is written.
    fn flush(&mut self, force: bool) -> Result<CheckpointReport, CheckpointFailure> {
        // Epoch and LSN only: the checkpoint key and the state never reach the span.
        #[cfg(feature = "observability")]
        let span = tracing::info_span!(
            "aedb.checkpoint",
            epoch = self.ctx.epoch.0.get(),
            lsn = tracing::field::Empty,
            bytes = tracing::field::Empty,
        )
        .entered();
        let started = Instant::now();
        let wal_bytes = self.ctx.metrics.wal_bytes.load(Ordering::Relaxed);
        let frozen = self
            .ctx
            .sequencer
            .ask(Freeze { force })
            .map_err(|_| CheckpointFailure::Closed)?;
        if frozen.is_empty() {
            // Nothing new to write; what a re-seal or compaction freed may still retire.
            let (retired_checkpoints, retired_segments) =
                if force { self.retire()? } else { (0, 0) };
            return Ok(CheckpointReport {
                lsn: self.ctx.last_lsn,
                path: None,
                bytes: 0,
                retired_segments,
                retired_checkpoints,
            });
        }
        // A memtable may hold `Visible` commits not on disk yet: a run must never hold
        // an LSN the WAL could still lose.
        self.wal_barrier()?;
        let (epoch, master) = &self.ctx.epoch;
        let key = self
            .ctx
            .keyring
            .checkpoint_key(self.ctx.database, *epoch, master)
            .map_err(|e| CheckpointFailure::Key(Arc::new(e)))?;
        let write = |e| CheckpointFailure::Write(Arc::new(e));
        let mut bytes = 0;
        let mut path = None;
        for f in frozen {
            let file_id = self.ctx.file_ids.next();
            let writer = RunWriter::create(
                &self.ctx.fs,
                &checkpoints_dir(&self.ctx.data_dir),
                RunFileMeta {
                    database: self.ctx.database,
                    file_id,
                    epoch: *epoch,
                },
                key.as_ref(),
                Box::new(OsNonceSource),
                self.ctx.run_options,
            )
            .map_err(write)?;
            let info = aedb_storage::flush::flush(&f.memtable, writer)
                .map_err(CheckpointFailure::Storage)?;
            let mut record = VersionEdit {
                flushed_lsn: f.lsn,
                next_file_id: file_id + 1,
                added: Vec::new(),
                removed: Vec::new(),
                floor: Lsn::ZERO,
            };
            let mut edit = Edit::default();
            if let Some(info) = info {
                record.added.push(run_record(&info, 0));
                edit.added
                    .push((0, self.ctx.runs.open(info.file_id).map_err(write)?));
                bytes += info.len;
                path = Some(info.path);
            }
            self.record(vec![ManifestRecord::VersionEdit(record)])?;
            self.ctx
                .sequencer
                .ask(InstallRuns {
                    edit,
                    flushed: Some(f.memtable.id()),
                })
                .map_err(|_| CheckpointFailure::Closed)?;
            self.ctx.last_lsn = f.lsn;
        }
        let lsn = self.ctx.last_lsn;
        #[cfg(feature = "observability")]
        {
            span.record("lsn", lsn.get());
            span.record("bytes", bytes);
        }
        self.wal_bytes_at_last = wal_bytes;
        self.last_at = Instant::now();

        let (retired_checkpoints, retired_segments) = self.retire()?;
        let m = &self.ctx.metrics;
        m.checkpoints.fetch_add(1, Ordering::Relaxed);
        m.flush_bytes_written.fetch_add(bytes, Ordering::Relaxed);
        m.checkpoint_lsn.store(lsn.get(), Ordering::Relaxed);
        m.checkpoint_bytes.store(bytes, Ordering::Relaxed);
        m.checkpoint_micros.store(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(CheckpointReport {
            lsn,
            path,
            bytes,
            retired_segments,
            retired_checkpoints,
        })
    }

    /// Retires what the runs now cover: every version-1 full checkpoint (manifest
    /// first, then the file) and the WAL segments up to the flushed LSN, then every key
    /// epoch no live file needs.
    fn retire(&mut self) -> Result<(usize, usize), CheckpointFailure> {
        let live = self
            .ctx
            .manifest
            .ask(GetLiveState)
            .map_err(|_| CheckpointFailure::Closed)?;
        let through = live.flushed_lsn();
        let old: Vec<Lsn> = live
            .checkpoints()
            .keys()
            .copied()
            .filter(|&lsn| lsn <= through)
            .collect();
        self.record(
            old.iter()
                .map(|&lsn| ManifestRecord::CheckpointRetired { lsn })
                .collect(),
        )?;
        for &lsn in &old {
            // Best effort: the manifest no longer references it, so a leftover file is
            // only disk space (and is never read).
            if let Err(e) =
                aedb_checkpoint::remove_checkpoint(&*self.ctx.fs, &self.ctx.data_dir, lsn)
            {
                tracing::warn!("could not delete retired checkpoint at lsn {lsn}: {e}");
            }
        }
        // Record first, delete second: a crash in between leaves files the manifest no
        // longer lists (harmless), never listed files that are gone (refused at open).
        // Only segments whose seal the manifest already records are retired: the WAL
        // writer reports seals asynchronously, and deleting a segment whose seal is
        // recorded afterwards would list a missing file.
        let covered: Vec<(SegmentSeq, Lsn)> = live
            .segments()
            .iter()
            .filter(|(_, seg)| seg.last_lsn <= through)
            .map(|(&seq, seg)| (seq, seg.last_lsn))
            .collect();
        self.record(
            covered
                .iter()
                .map(|&(seq, _)| ManifestRecord::SegmentRetired { seq })
                .collect(),
        )?;
        let retire_to = covered.iter().map(|&(_, l)| l).max().unwrap_or(Lsn::ZERO);
        let retired = self
            .wal_control(|reply| WalControl::RetireThrough {
                lsn: retire_to,
                reply,
            })?
            .map_err(|e: SharedWalError| CheckpointFailure::Wal(e.to_string()))?;
        let kept_epochs: BTreeSet<KeyEpoch> = live
            .checkpoints()
            .iter()
            .filter(|(lsn, _)| **lsn > through)
            .map(|(_, c)| c.epoch)
            .chain(live.runs().values().map(|r| r.epoch))
            .collect();
        self.retire_epochs(&kept_epochs, retired.oldest_lsn)?;
        Ok((old.len(), retired.removed.len()))
    }

    /// Retires every decrypt-only epoch no file needs any more: no kept checkpoint is
    /// sealed under it and the WAL's oldest retained frame is past its last frame. The
    /// retirement is recorded before anything forgets the epoch's keys.
    fn retire_epochs(
        &mut self,
        kept_epochs: &BTreeSet<KeyEpoch>,
        oldest_wal_lsn: Lsn,
    ) -> Result<(), CheckpointFailure> {
        let done: Vec<KeyEpoch> = self
            .ctx
            .epoch_bounds
            .iter()
            .filter(|&(epoch, bound)| !kept_epochs.contains(epoch) && *bound < oldest_wal_lsn)
            .map(|(epoch, _)| *epoch)
            .collect();
        let at_unix_ms = aedb_types::clock::unix_millis();
        self.record(
            done.iter()
                .map(|&epoch| ManifestRecord::KeyEpochRetired { epoch, at_unix_ms })
                .collect(),
        )?;
        for epoch in done {
            self.ctx.epoch_bounds.remove(&epoch);
            self.ctx
                .metrics
                .key_epochs_retired
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}
