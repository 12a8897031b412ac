//! The WalWriter actor: the owner of the active WAL segment.
//!
//! It is fed by a bounded mailbox of [`WalMsg`]s from the sequencer and runs the
//! group-commit loop of `aedb-sync` over [`WalSink`], which adapts `aedb_wal::WalWriter`:
//! append encodes frames into one buffer, `write` is one `write_all`, `sync` is one
//! `fdatasync`. Blocking file I/O never runs on an async arbiter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aedb_model::State;
use aedb_sync::group_commit::{
    Acknowledge, BatchReport, GroupCommitError, LogSink, LoopConfig, WriterLoop, WriterMsg,
};
use aedb_sync::mailbox::{MailboxReceiver, MailboxSender, mailbox};
use aedb_sync::{Completer, SnapshotCell};
use aedb_types::Lsn;
use aedb_wal::{FrameKind, WalError, WalWriter};

use crate::actor::{self, Owner, Running};
use crate::commit::{Answer, Reply};
use crate::error::CommitError;
use crate::manifest_chain::{ManifestRef, SegmentsSealed};
use crate::metrics::{EngineMetrics, ErrorCause};

/// One encoded commit record at its LSN.
#[derive(Debug)]
pub struct WalRecord {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The encoded `CommitRecord`.
    pub payload: Vec<u8>,
}

/// A snapshot to publish once durable.
pub type Publication = (Lsn, Arc<State>);

/// The error every acknowledgement of a failed batch carries.
pub type SharedWalError = Arc<WalError>;

/// Message to the WAL writer thread.
pub type WalMsg = WriterMsg<WalSink, PendingAck>;

/// A durable commit's reply, completed by the writer after `fdatasync`.
#[derive(Debug)]
pub struct PendingAck {
    /// Where the caller waits.
    pub reply: Reply,
    /// What to answer once durable (`Ok` for a commit, `Err(Rejected)` for a logged
    /// idempotent rejection).
    pub outcome: Answer,
    /// Metrics to count the durable ack in.
    pub metrics: Arc<EngineMetrics>,
}

impl Acknowledge<SharedWalError> for PendingAck {
    fn acknowledge(self, result: Result<(), GroupCommitError<SharedWalError>>) {
        let answer = match result {
            Ok(()) => {
                if self.outcome.is_ok() {
                    self.metrics.durable_commits.fetch_add(1, Ordering::Relaxed);
                }
                self.outcome
            }
            Err(GroupCommitError::Io(e)) => {
                self.metrics.count_error(ErrorCause::WalFailure);
                Err(CommitError::Wal(e))
            }
            Err(GroupCommitError::FailStopped) => {
                self.metrics.count_error(ErrorCause::WalFailure);
                Err(CommitError::FailStopped)
            }
        };
        self.reply.complete(answer);
    }
}

/// Adapts [`WalWriter`] to the group-commit loop, publishing durable snapshots.
pub struct WalSink {
    writer: WalWriter,
    snapshots: Arc<SnapshotCell<State>>,
    metrics: Arc<EngineMetrics>,
    fail_stopped: Arc<AtomicBool>,
    manifest: ManifestRef,
}

impl WalSink {
    /// Tells the manifest about segments sealed by a rotation. The successor already
    /// exists when this runs, so recovery can require it for every recorded segment
    /// (a deleted newest segment is then detected, not mistaken for a crash).
    fn report_sealed_segments(&mut self) {
        let sealed = self.writer.take_sealed_segments();
        if sealed.is_empty() {
            return;
        }
        let records = sealed
            .iter()
            .map(|s| aedb_manifest::ManifestRecord::SegmentSealed {
                seq: s.seq,
                first_lsn: s.base_lsn,
                last_lsn: s.last_lsn,
                sha256: s.hash.0,
            })
            .collect();
        // A stopped manifest means the instance is shutting down.
        let _ = self.manifest.tell(SegmentsSealed(records));
    }

    fn failed<T>(&self, e: WalError) -> Result<T, SharedWalError> {
        self.fail_stopped.store(true, Ordering::Release);
        Err(Arc::new(e))
    }
}

impl LogSink for WalSink {
    type Record = WalRecord;
    type Publish = Publication;
    type Error = SharedWalError;

    fn append(&mut self, record: &WalRecord) -> Result<(), SharedWalError> {
        match self
            .writer
            .append(record.lsn, FrameKind::Commit, &record.payload)
        {
            Ok(()) => Ok(()),
            Err(e) => self.failed(e),
        }
    }

    fn write(&mut self) -> Result<(), SharedWalError> {
        // One span per group-commit batch write (sealing happens inside, in `aedb.wal.seal`).
        #[cfg(feature = "observability")]
        let _span = tracing::debug_span!("aedb.commit.write").entered();
        let before = self.writer.written_bytes_total();
        match self.writer.flush() {
            Ok(()) => {
                self.report_sealed_segments();
                let after = self.writer.written_bytes_total();
                self.metrics
                    .wal_bytes
                    .fetch_add(after.saturating_sub(before), Ordering::Relaxed);
                Ok(())
            }
            Err(e) => self.failed(e),
        }
    }

    fn sync(&mut self) -> Result<(), SharedWalError> {
        #[cfg(feature = "observability")]
        let _span = tracing::debug_span!("aedb.commit.fsync").entered();
        let started = Instant::now();
        match self.writer.sync() {
            Ok(()) => {
                self.metrics
                    .fsync_latency_us
                    .record_duration(started.elapsed());
                #[cfg(feature = "observability")]
                crate::metrics::export::fsync_latency(started.elapsed());
                self.metrics.fsyncs.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .durable_lsn
                    .store(self.writer.synced_lsn().get(), Ordering::Relaxed);
                Ok(())
            }
            Err(e) => self.failed(e),
        }
    }

    fn publish(&mut self, (lsn, state): Publication) {
        if self.snapshots.publish(lsn.get(), state) {
            self.metrics
                .visible_lsn
                .fetch_max(lsn.get(), Ordering::Relaxed);
        }
    }

    fn on_batch(&mut self, report: BatchReport) {
        self.metrics.batch_size.record(report.submissions as u64);
        #[cfg(feature = "observability")]
        crate::metrics::export::batch_size(report.submissions);
    }

    type Control = WalControl;

    fn control(&mut self, control: WalControl) {
        match control {
            WalControl::RetireThrough { lsn, reply } => {
                let result = self
                    .writer
                    .retire_segments_through(lsn)
                    .and_then(|removed| {
                        Ok(RetiredSegments {
                            removed,
                            oldest_lsn: self.writer.oldest_retained_lsn()?,
                        })
                    })
                    .map_err(Arc::new);
                reply.complete(result);
            }
            WalControl::BackupView { reply } => reply.complete(self.backup_view()),
            WalControl::Repoint { view } => {
                let at = view.lsn();
                self.snapshots.refresh(|published| {
                    (published.lsn() <= at).then(|| Arc::new(published.with_view(view)))
                });
            }
            WalControl::RotateCovered { lsn, reply } => {
                let covered = self.writer.active_frames() > 0 && self.writer.last_lsn() <= lsn;
                let result = if covered {
                    self.writer.rotate().map(|()| true)
                } else {
                    Ok(false)
                };
                match &result {
                    // Recorded before the answer: the caller's next manifest request
                    // queues behind the seal.
                    Ok(true) => self.report_sealed_segments(),
                    Ok(false) => {}
                    Err(e) => {
                        self.fail_stopped.store(true, Ordering::Release);
                        tracing::warn!("rotating a covered WAL segment failed: {e}");
                    }
                }
                reply.complete(result.map_err(Arc::new));
            }
            WalControl::SetCipher { cipher, reply } => {
                let result = self
                    .writer
                    .set_cipher(cipher)
                    .map(|()| self.writer.last_lsn())
                    .map_err(Arc::new);
                if let Err(e) = &result {
                    self.fail_stopped.store(true, Ordering::Release);
                    tracing::warn!("switching the WAL key failed: {e}");
                }
                reply.complete(result);
            }
        }
    }
}

impl WalSink {
    /// Opens every segment file of the log at this instant (on the writer thread, so no
    /// rotation or retirement runs meanwhile) and reports the durable position.
    fn backup_view(&self) -> Result<WalBackupView, std::io::Error> {
        let fs = &*self.writer.config().fs;
        let segments = aedb_wal::segment_paths(fs, self.writer.dir())
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .into_iter()
            .map(|(seq, path)| {
                let file = fs.open(&path, aedb_fs::OpenMode::Existing)?;
                Ok((seq, path, file))
            })
            .collect::<Result<Vec<_>, std::io::Error>>()?;
        Ok(WalBackupView {
            segments,
            active: self.writer.segment_seq(),
            synced_lsn: self.writer.synced_lsn(),
        })
    }
}

/// The WAL as a hot backup sees it at a barrier: every segment file, opened on the
/// writer thread (an open handle keeps a segment readable even if a later checkpoint
/// retires it), which one is active, and the highest LSN already synced. Sealed
/// segments never change; the active one is stable up to the end of the frame carrying
/// `synced_lsn`, and only that prefix may be copied.
#[derive(Debug)]
pub struct WalBackupView {
    /// Every segment in sequence order, with an open read handle.
    pub segments: Vec<(
        aedb_wal::SegmentSeq,
        std::path::PathBuf,
        Arc<dyn aedb_fs::DiskFile>,
    )>,
    /// The segment being appended.
    pub active: aedb_wal::SegmentSeq,
    /// Every frame up to this LSN is written and synced (durable unless sync is off).
    pub synced_lsn: Lsn,
}

/// Owner-only maintenance of the WAL, run on the writer thread after everything
/// queued before it is durable.
#[derive(Debug)]
pub enum WalControl {
    /// Delete sealed segments whose every frame is at or below `lsn` (a checkpoint
    /// covers them); answers with the removed paths.
    RetireThrough {
        /// Highest LSN the newest recorded checkpoint covers.
        lsn: Lsn,
        /// Where the answer goes.
        reply: Completer<Result<RetiredSegments, SharedWalError>>,
    },
    /// Report the log's files and durable position for a hot backup.
    BackupView {
        /// Where the answer goes.
        reply: Completer<Result<WalBackupView, std::io::Error>>,
    },
    /// Seal the active segment and start the next one when it holds frames and run
    /// files cover every one of them (everything up to `lsn` is flushed), so the next
    /// checkpoint's retirement deletes it and an open has nothing to scan. Answers
    /// whether it rotated.
    RotateCovered {
        /// Every commit up to this LSN is in the live runs.
        lsn: Lsn,
        /// Where the answer goes.
        reply: Completer<Result<bool, SharedWalError>>,
    },
    /// Re-point the published snapshot at `view`'s sources (runs installed by a flush
    /// or compaction). The Sequencer re-points the published snapshot itself when it
    /// installs runs; this message, queued behind the records that were still in
    /// flight then, does it again once they are published, since their snapshots were
    /// built on the old sources (and would pin a flushed memtable and replaced runs
    /// until the next commit).
    Repoint {
        /// The Sequencer's view just after the install.
        view: aedb_storage::View,
    },
    /// Seal batches from now on under `cipher` (a new key epoch). Answers the last LSN
    /// sealed under the previous cipher.
    SetCipher {
        /// The new cipher.
        cipher: Option<aedb_wal::WalCipher>,
        /// Where the answer goes.
        reply: Completer<Result<Lsn, SharedWalError>>,
    },
}

/// What [`WalControl::RetireThrough`] did.
#[derive(Debug)]
pub struct RetiredSegments {
    /// The deleted segment files.
    pub removed: Vec<std::path::PathBuf>,
    /// The lowest LSN any remaining segment may hold (its base LSN).
    pub oldest_lsn: Lsn,
}

/// The WAL writer: owns the active segment. Its data path is the bounded batch mailbox
/// of `aedb-sync` (appends, barriers and owner-only controls, in order), drained by the
/// loom-checked group-commit loop, which runs on the owner's thread for its whole life
/// ([`Owner::started`]) and ends when every sender is gone.
pub struct WalWriterOwner {
    run: Option<(WriterLoop<WalSink>, MailboxReceiver<WalMsg>)>,
}

impl Owner for WalWriterOwner {
    const NAME: &'static str = "wal-writer";

    fn started(&mut self) {
        if let Some((writer_loop, mailbox)) = self.run.take() {
            writer_loop.run(mailbox);
        }
    }
}

/// Handle to the running writer.
#[derive(Debug)]
pub struct WalWriterHandle {
    /// The writer's batch mailbox.
    pub mailbox: MailboxSender<WalMsg>,
    /// Set once the instance has fail-stopped (a WAL or manifest write failed).
    pub fail_stopped: Arc<AtomicBool>,
    /// The owner, stopped on shutdown once every sender of `mailbox` is gone.
    pub owner: Running<WalWriterOwner>,
}

/// Starts the writer over a recovered `writer`.
pub fn spawn(
    writer: WalWriter,
    snapshots: Arc<SnapshotCell<State>>,
    metrics: Arc<EngineMetrics>,
    mailbox_bound: usize,
    config: LoopConfig,
    manifest: ManifestRef,
    fail_stopped: Arc<AtomicBool>,
) -> std::io::Result<WalWriterHandle> {
    let (tx, rx) = mailbox::<WalMsg>(mailbox_bound);
    let stats = metrics.owners.wal_writer.clone();
    let sink = WalSink {
        writer,
        snapshots,
        metrics,
        fail_stopped: fail_stopped.clone(),
        manifest,
    };
    let owner = WalWriterOwner {
        run: Some((WriterLoop::new(sink, config), rx)),
    };
    Ok(WalWriterHandle {
        mailbox: tx,
        fail_stopped,
        owner: actor::spawn(owner, 1, stats)?,
    })
}
