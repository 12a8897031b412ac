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
use aedb_model::{CommitRecord, State};
use aedb_sync::SnapshotCell;
use aedb_sync::completion::completion;
use aedb_sync::group_commit::{GroupCommitError, LoopConfig};
use aedb_sync::mailbox::MailboxSender;
use aedb_wal::{FrameKind, RecoveredWal, RecoveryMode, WalConfig};

use crate::error::{CommitError, FrameReplayError, StartError};
use crate::metrics::{EngineMetrics, ErrorCause, OperationalMetrics};
use crate::sequencer::{Commit, CommitOutcome, Finality, Flush, Request, Sequencer, Stop};
use crate::wal_writer::{self, WalMsg};

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
    sequencer: Addr<Sequencer>,
    snapshots: Arc<SnapshotCell<State>>,
    metrics: Arc<EngineMetrics>,
    wal_mailbox: Option<MailboxSender<WalMsg>>,
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
    /// Recovers `wal_dir` and starts the actors. Returns the pipeline and what
    /// recovery found.
    pub fn start(
        wal_dir: &Path,
        config: PipelineConfig,
    ) -> Result<(Pipeline, RecoveredWal), StartError> {
        let started = Instant::now();
        let metrics = Arc::new(EngineMetrics::default());
        let mut state = State::new();
        let (recovered, writer) =
            aedb_wal::recover(wal_dir, &config.wal, config.recovery, |frame| {
                match frame.kind {
                    FrameKind::Commit => {}
                    kind => {
                        return Err(FrameReplayError::UnsupportedKind {
                            lsn: frame.lsn,
                            kind,
                        });
                    }
                }
                let record = CommitRecord::decode(frame.payload).map_err(|source| {
                    FrameReplayError::Decode {
                        lsn: frame.lsn,
                        source,
                    }
                })?;
                // In place: a replay error aborts the open, so per-record atomicity
                // (and its copying) buys nothing here.
                state.replay_in_place(&record, frame.lsn).map_err(|source| {
                    FrameReplayError::Replay {
                        lsn: frame.lsn,
                        source,
                    }
                })
            })?;
        metrics
            .recovery_frames
            .store(recovered.frames_replayed, Ordering::Relaxed);
        metrics
            .recovery_torn_tail_bytes
            .store(recovered.torn_tail_bytes(), Ordering::Relaxed);
        let lsn = state.lsn().get();
        metrics.durable_lsn.store(lsn, Ordering::Relaxed);
        metrics.visible_lsn.store(lsn, Ordering::Relaxed);

        let snapshots = Arc::new(SnapshotCell::new(lsn, Arc::new(state.clone())));
        let wal = wal_writer::spawn(
            writer,
            snapshots.clone(),
            metrics.clone(),
            config.wal_queue,
            LoopConfig {
                flush_interval: config.flush_interval,
                max_batch: config.max_batch,
            },
        )
        .map_err(|source| StartError::Thread {
            what: "WAL writer",
            source,
        })?;

        let sequencer = Sequencer::new(
            state,
            wal.mailbox.clone(),
            wal.fail_stopped.clone(),
            snapshots.clone(),
            metrics.clone(),
            config.sequencer_queue,
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
            .map_err(|source| StartError::Thread {
                what: "actor system",
                source,
            })?;
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
                sequencer,
                snapshots,
                metrics,
                wal_mailbox: Some(wal.mailbox),
                system,
                actix_thread: Some(actix_thread),
                writer_thread: Some(wal.thread),
            },
            recovered,
        ))
    }

    /// Sequences `request` and waits for its finality.
    pub fn commit(
        &self,
        request: Request,
        finality: Finality,
        admission: Admission,
    ) -> Result<CommitOutcome, CommitError> {
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
        waiter.wait().unwrap_or(Err(CommitError::Closed))
    }

    /// Async form of [`Pipeline::commit`]: awaits admission and finality without
    /// blocking the executor thread.
    pub async fn commit_async(
        &self,
        request: Request,
        finality: Finality,
    ) -> Result<CommitOutcome, CommitError> {
        let (reply, waiter) = completion();
        let msg = Commit {
            request,
            finality,
            reply,
        };
        if let Some(msg) = self.admit(msg, Admission::Wait)? {
            self.sequencer.send(msg).await.map_err(|e| self.closed(e))?;
        }
        waiter.await.unwrap_or(Err(CommitError::Closed))
    }

    /// Tries to enqueue without waiting; hands the message back when the mailbox is
    /// full and the caller is willing to wait.
    fn admit(&self, msg: Commit, admission: Admission) -> Result<Option<Commit>, CommitError> {
        self.metrics
            .sequencer_queue_depth
            .fetch_add(1, Ordering::Relaxed);
        let refused = |cause, error| {
            self.metrics
                .sequencer_queue_depth
                .fetch_sub(1, Ordering::Relaxed);
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
        self.metrics.count_error(ErrorCause::Closed);
        CommitError::Closed
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
        let flushed = self.flush();
        self.sequencer.do_send(Stop);
        self.system.stop();
        let _ = actix_thread.join();
        // Last sender gone: the writer syncs anything pending and exits.
        self.wal_mailbox = None;
        if let Some(writer) = self.writer_thread.take() {
            let _ = writer.join();
        }
        flushed
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
