//! The group-commit writer loop: drain, write once, sync once, publish, acknowledge.
//!
//! A dedicated thread runs [`WriterLoop::run`] over a bounded [`mailbox`]. Each turn it
//! blocks for one message, drains everything else already queued (up to `max_batch`),
//! appends every record to the [`LogSink`], issues **one** write and — if any
//! submission in the batch needs durability, or the oldest unsynced write has waited
//! `flush_interval` — **one** sync. Only after the sync succeeds does it publish the
//! newest snapshot carried by the batch and acknowledge each submission, so a durable
//! commit is never visible or acknowledged before it is on disk.
//!
//! The first write or sync error **fail-stops** the loop: every submission in that batch
//! and every later one is answered with an error, nothing more is written or published,
//! and the sink is never asked to retry (after a failed `fdatasync` the kernel may have
//! dropped the dirty pages, so a retry could report success for lost data).
//!
//! [`mailbox`]: crate::mailbox

use std::fmt;
use std::time::{Duration, Instant};

use crate::completion::Completer;
use crate::mailbox::{MailboxReceiver, Recv};

/// The durable log a [`WriterLoop`] drives. Implemented by the WAL writer in
/// `aedb-actors`, and by in-memory models in the loom tests.
pub trait LogSink {
    /// One submission's log payload.
    type Record;
    /// What a batch makes visible once durable (for example an `Arc` of a snapshot).
    type Publish;
    /// An I/O failure; cloned into every acknowledgement of the failed batch.
    type Error: Clone + fmt::Debug;

    /// Buffers one record for the next [`LogSink::write`].
    fn append(&mut self, record: &Self::Record) -> Result<(), Self::Error>;
    /// Writes everything buffered since the last write, in one operation.
    fn write(&mut self) -> Result<(), Self::Error>;
    /// Makes everything written so far durable (one `fdatasync`).
    fn sync(&mut self) -> Result<(), Self::Error>;
    /// Makes a durable batch visible to readers. Called at most once per batch, after
    /// a successful sync, with the newest snapshot in the batch.
    fn publish(&mut self, snapshot: Self::Publish);
    /// Observes one processed batch (for metrics). Default: nothing.
    fn on_batch(&mut self, _report: BatchReport) {}

    /// Owner-only maintenance requested through [`WriterMsg::Control`] (for example
    /// retiring old segments): runs on the writer thread after everything queued before
    /// it is durable. Carries its own reply channel if it needs one.
    type Control;
    /// Runs one control request.
    fn control(&mut self, control: Self::Control);
}

/// What one turn of the loop did, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchReport {
    /// Submissions (appends and barriers) drained in this turn.
    pub submissions: usize,
    /// Whether the turn ended with a successful sync.
    pub synced: bool,
}

/// Why a submission was not made durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupCommitError<E> {
    /// This submission's batch failed to write or sync.
    Io(E),
    /// An earlier batch failed; the log is fail-stopped and accepts nothing more.
    FailStopped,
}

impl<E: fmt::Debug> fmt::Display for GroupCommitError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupCommitError::Io(e) => write!(f, "log write or sync failed: {e:?}"),
            GroupCommitError::FailStopped => f.write_str(
                "the log is fail-stopped after an earlier I/O error; reopen the database",
            ),
        }
    }
}

impl<E: fmt::Debug> std::error::Error for GroupCommitError<E> {}

/// Receives the outcome of a submission that asked to be acknowledged after sync.
pub trait Acknowledge<E> {
    /// Called exactly once: `Ok` after the record is durable and published.
    fn acknowledge(self, outcome: Result<(), GroupCommitError<E>>);
}

impl<E> Acknowledge<E> for Completer<Result<(), GroupCommitError<E>>> {
    fn acknowledge(self, outcome: Result<(), GroupCommitError<E>>) {
        self.complete(outcome);
    }
}

/// When a submission's sender hears back.
pub enum Durability<A> {
    /// Acknowledge through `A` once the record is durable (`Finality::Durable`).
    AckAfterSync(A),
    /// Already acknowledged upstream; make durable within the flush interval
    /// (`Finality::Visible`).
    SyncWithin,
}

/// One record to log.
pub struct Submission<R, P, A> {
    /// The record to append.
    pub record: R,
    /// The snapshot to publish once this record is durable, if publication waits for it.
    pub publish: Option<P>,
    /// Who hears back, and when.
    pub durability: Durability<A>,
}

/// A message to the writer thread of sink `S`, acknowledging through `A`.
pub enum WriterMsg<S: LogSink, A> {
    /// Log a record.
    Append(Submission<S::Record, S::Publish, A>),
    /// Make everything queued before this message durable, then answer.
    Barrier(Completer<Result<(), GroupCommitError<S::Error>>>),
    /// Make everything queued before this message durable, then run
    /// [`LogSink::control`] with it (dropped, cancelling any reply inside, if the log
    /// fail-stops first).
    Control(S::Control),
}

/// Tuning for a [`WriterLoop`].
#[derive(Clone, Copy, Debug)]
pub struct LoopConfig {
    /// Longest a `SyncWithin` record may stay unsynced.
    pub flush_interval: Duration,
    /// Most submissions drained into one batch.
    pub max_batch: usize,
    /// After a batch of one submission (a lone committer, whose next commit follows
    /// its acknowledgement), poll the mailbox this long before sleeping, so that commit
    /// does not pay for waking this thread. Zero never polls. Busy logs (batches of
    /// more than one) always sleep when the mailbox is empty: the CPU is the
    /// committers'.
    pub idle_spin: Duration,
}

/// The writer loop: owns the sink for the life of the writer thread.
pub struct WriterLoop<S: LogSink> {
    sink: S,
    config: LoopConfig,
    failed: bool,
    unsynced_since: Option<Instant>,
}

impl<S: LogSink> WriterLoop<S> {
    /// Wraps a sink.
    pub fn new(sink: S, config: LoopConfig) -> Self {
        WriterLoop {
            sink,
            config: LoopConfig {
                max_batch: config.max_batch.max(1),
                ..config
            },
            failed: false,
            unsynced_since: None,
        }
    }

    /// Runs until every sender is gone, then syncs what is pending and returns the sink.
    pub fn run<A: Acknowledge<S::Error>>(mut self, mailbox: MailboxReceiver<WriterMsg<S, A>>) -> S {
        let mut batch = Vec::with_capacity(self.config.max_batch);
        let mut lone = false;
        loop {
            let first = match self.unsynced_since {
                Some(since) => {
                    let waited = since.elapsed();
                    if waited >= self.config.flush_interval {
                        self.process(&mut batch);
                        continue;
                    }
                    match mailbox.recv_timeout(self.config.flush_interval - waited) {
                        Recv::Message(m) => m,
                        Recv::TimedOut => {
                            self.process(&mut batch);
                            continue;
                        }
                        Recv::Closed => break,
                    }
                }
                None => match self.poll(&mailbox, lone).or_else(|| mailbox.recv()) {
                    Some(m) => m,
                    None => break,
                },
            };
            batch.push(first);
            while batch.len() < self.config.max_batch {
                match mailbox.try_recv() {
                    Some(m) => batch.push(m),
                    None => break,
                }
            }
            lone = batch.len() == 1;
            self.process(&mut batch);
        }
        if self.unsynced_since.is_some() {
            self.process(&mut batch);
        }
        self.sink
    }

    /// Polls `mailbox` for [`LoopConfig::idle_spin`] after a lone batch (yielding
    /// between polls); `None` when nothing came (the caller then sleeps in `recv`).
    fn poll<M>(&self, mailbox: &MailboxReceiver<M>, lone: bool) -> Option<M> {
        let spin = self.config.idle_spin;
        if !lone || spin.is_zero() {
            return None;
        }
        let started = Instant::now();
        loop {
            if let Some(m) = mailbox.try_recv() {
                return Some(m);
            }
            if started.elapsed() >= spin {
                return None;
            }
            std::thread::yield_now();
        }
    }

    /// Handles one drained batch (possibly empty: a flush-interval sync).
    fn process<A: Acknowledge<S::Error>>(&mut self, batch: &mut Vec<WriterMsg<S, A>>) {
        let submissions = batch.len();
        if self.failed {
            for msg in batch.drain(..) {
                answer(msg, Err(GroupCommitError::FailStopped));
            }
            return;
        }
        let mut appended = false;
        let mut must_sync = self
            .unsynced_since
            .is_some_and(|t| t.elapsed() >= self.config.flush_interval);
        let mut result = Ok(());
        for msg in batch.iter() {
            match msg {
                WriterMsg::Append(sub) => {
                    if result.is_ok() {
                        result = self.sink.append(&sub.record);
                    }
                    appended = true;
                    must_sync |= matches!(sub.durability, Durability::AckAfterSync(_));
                }
                WriterMsg::Barrier(_) | WriterMsg::Control(_) => must_sync = true,
            }
        }
        if result.is_ok() && appended {
            result = self.sink.write();
        }
        if result.is_ok() && appended && !must_sync && self.unsynced_since.is_none() {
            self.unsynced_since = Some(Instant::now());
        }
        let synced = result.is_ok() && must_sync && (appended || self.unsynced_since.is_some());
        if synced {
            result = self.sink.sync();
        }
        if let Err(e) = result {
            self.failed = true;
            // Nothing written can be synced any more: without this the flush timer
            // would fire again at once, forever (a spinning writer that never sees its
            // mailbox close, so shutdown hangs).
            self.unsynced_since = None;
            self.sink.on_batch(BatchReport {
                submissions,
                synced: false,
            });
            for msg in batch.drain(..) {
                answer(msg, Err(GroupCommitError::Io(e.clone())));
            }
            return;
        }
        if synced || must_sync {
            self.unsynced_since = None;
        }
        // Publish the newest snapshot of the batch (submissions arrive in LSN order).
        let mut newest = None;
        let mut acks = Vec::new();
        let mut controls = Vec::new();
        for msg in batch.drain(..) {
            match msg {
                WriterMsg::Append(sub) => {
                    if sub.publish.is_some() {
                        newest = sub.publish;
                    }
                    if let Durability::AckAfterSync(a) = sub.durability {
                        acks.push(Ack::Submission(a));
                    }
                }
                WriterMsg::Barrier(c) => acks.push(Ack::Barrier(c)),
                WriterMsg::Control(c) => controls.push(c),
            }
        }
        if let Some(p) = newest {
            self.sink.publish(p);
        }
        self.sink.on_batch(BatchReport {
            submissions,
            synced,
        });
        for ack in acks {
            match ack {
                Ack::Submission(a) => a.acknowledge(Ok(())),
                Ack::Barrier(c) => c.complete(Ok(())),
            }
        }
        for c in controls {
            self.sink.control(c);
        }
    }
}

enum Ack<A, E> {
    Submission(A),
    Barrier(Completer<Result<(), GroupCommitError<E>>>),
}

fn answer<S: LogSink, A: Acknowledge<S::Error>>(
    msg: WriterMsg<S, A>,
    outcome: Result<(), GroupCommitError<S::Error>>,
) {
    match msg {
        WriterMsg::Append(sub) => {
            if let Durability::AckAfterSync(a) = sub.durability {
                a.acknowledge(outcome);
            }
        }
        WriterMsg::Barrier(c) => c.complete(outcome),
        // Dropping the control cancels any reply it carries.
        WriterMsg::Control(_) => {}
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::completion::completion;
    use crate::mailbox::mailbox;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Disk {
        buffered: Vec<u32>,
        written: Vec<u32>,
        synced: Vec<u32>,
        writes: usize,
        syncs: usize,
        published: Vec<u32>,
        fail_sync_at: Option<usize>,
        /// Receives every batch report, when set.
        reports: Option<std::sync::mpsc::Sender<BatchReport>>,
    }

    #[derive(Clone, Default)]
    struct MemSink(Arc<Mutex<Disk>>);

    impl LogSink for MemSink {
        type Record = u32;
        type Publish = u32;
        type Error = String;
        fn append(&mut self, r: &u32) -> Result<(), String> {
            self.0.lock().unwrap().buffered.push(*r);
            Ok(())
        }
        fn write(&mut self) -> Result<(), String> {
            let mut d = self.0.lock().unwrap();
            let b = std::mem::take(&mut d.buffered);
            d.written.extend(b);
            d.writes += 1;
            Ok(())
        }
        fn sync(&mut self) -> Result<(), String> {
            let mut d = self.0.lock().unwrap();
            d.syncs += 1;
            if d.fail_sync_at == Some(d.syncs) {
                return Err("injected".into());
            }
            d.synced = d.written.clone();
            Ok(())
        }
        fn publish(&mut self, p: u32) {
            self.0.lock().unwrap().published.push(p);
        }
        fn on_batch(&mut self, report: BatchReport) {
            if let Some(reports) = &self.0.lock().unwrap().reports {
                reports.send(report).expect("the test listens");
            }
        }
        type Control = Completer<usize>;
        fn control(&mut self, reply: Completer<usize>) {
            reply.complete(self.0.lock().unwrap().synced.len());
        }
    }

    type Ackr = Completer<Result<(), GroupCommitError<String>>>;

    fn cfg() -> LoopConfig {
        LoopConfig {
            flush_interval: Duration::from_millis(5),
            max_batch: 1024,
            idle_spin: Duration::ZERO,
        }
    }

    #[test]
    fn queued_submissions_share_one_write_and_one_sync() {
        let sink = MemSink::default();
        let (tx, rx) = mailbox::<WriterMsg<MemSink, Ackr>>(64);
        let mut waiters = Vec::new();
        for i in 1..=10u32 {
            let (c, w) = completion();
            tx.send(WriterMsg::Append(Submission {
                record: i,
                publish: Some(i),
                durability: Durability::AckAfterSync(c),
            }))
            .unwrap();
            waiters.push(w);
        }
        drop(tx);
        let sink2 = sink.clone();
        WriterLoop::new(sink2, cfg()).run(rx);
        for w in waiters {
            assert_eq!(w.wait(), Ok(Ok(())));
        }
        let d = sink.0.lock().unwrap();
        assert_eq!(d.synced, (1..=10).collect::<Vec<_>>());
        assert_eq!((d.writes, d.syncs), (1, 1));
        assert_eq!(d.published, vec![10]);
    }

    /// Found by the power-loss exploration: a visible record waits for the flush timer,
    /// the timer's sync fails, and the loop used to keep the timer armed, firing again at
    /// once forever — never reading its mailbox again, so shutdown never returned.
    #[test]
    fn a_failed_flush_timer_sync_neither_spins_nor_hangs_shutdown() {
        let sink = MemSink::default();
        sink.0.lock().unwrap().fail_sync_at = Some(1);
        let (tx, rx) = mailbox::<WriterMsg<MemSink, Ackr>>(64);
        tx.send(WriterMsg::Append(Submission {
            record: 1,
            publish: None,
            durability: Durability::SyncWithin,
        }))
        .unwrap();
        let s2 = sink.clone();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            WriterLoop::new(s2, cfg()).run(rx);
            done_tx.send(()).expect("the test waits");
        });
        // Let the timer fire and fail, then close the mailbox: the loop must end.
        while sink.0.lock().unwrap().syncs == 0 {
            std::thread::yield_now();
        }
        let (c, w) = completion();
        tx.send(WriterMsg::Append(Submission {
            record: 2,
            publish: Some(2),
            durability: Durability::AckAfterSync(c),
        }))
        .unwrap();
        drop(tx);
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the writer loop ends once its mailbox closes");
        assert_eq!(w.wait(), Ok(Err(GroupCommitError::FailStopped)));
        assert_eq!(
            sink.0.lock().unwrap().syncs,
            1,
            "a failed sync is never retried"
        );
    }

    #[test]
    fn sync_failure_fails_batch_and_everything_after() {
        let sink = MemSink::default();
        sink.0.lock().unwrap().fail_sync_at = Some(1);
        let (tx, rx) = mailbox::<WriterMsg<MemSink, Ackr>>(64);
        let (c1, w1) = completion();
        tx.send(WriterMsg::Append(Submission {
            record: 1,
            publish: Some(1),
            durability: Durability::AckAfterSync(c1),
        }))
        .unwrap();
        let s2 = sink.clone();
        let t = std::thread::spawn(move || WriterLoop::new(s2, cfg()).run(rx));
        assert_eq!(w1.wait(), Ok(Err(GroupCommitError::Io("injected".into()))));
        let (c2, w2) = completion();
        tx.send(WriterMsg::Append(Submission {
            record: 2,
            publish: Some(2),
            durability: Durability::AckAfterSync(c2),
        }))
        .unwrap();
        assert_eq!(w2.wait(), Ok(Err(GroupCommitError::FailStopped)));
        drop(tx);
        t.join().unwrap();
        let d = sink.0.lock().unwrap();
        assert!(d.published.is_empty());
        assert!(d.synced.is_empty());
        assert_eq!(d.syncs, 1, "a failed sync is never retried");
    }

    /// A `SyncWithin` record is written at once but not synced; the flush timer then
    /// syncs it in a batch of its own, while the mailbox stays open and nothing else is
    /// sent (so neither a later append nor the shutdown sync can be what synced it).
    /// Nothing here measures time: the test waits for the loop's batch reports, and a
    /// loop that never syncs fails the wait instead of hanging.
    #[test]
    fn a_visible_record_is_synced_by_the_flush_timer_without_another_message() {
        let sink = MemSink::default();
        let (reports_tx, reports) = std::sync::mpsc::channel();
        sink.0.lock().unwrap().reports = Some(reports_tx);
        let (tx, rx) = mailbox::<WriterMsg<MemSink, Ackr>>(64);
        let s2 = sink.clone();
        let t = std::thread::spawn(move || WriterLoop::new(s2, cfg()).run(rx));
        tx.send(WriterMsg::Append(Submission {
            record: 7,
            publish: None,
            durability: Durability::SyncWithin,
        }))
        .unwrap();
        let next = || {
            reports
                .recv_timeout(Duration::from_secs(60))
                .expect("the writer loop reports a batch")
        };
        // The append: written, not synced.
        assert_eq!(
            next(),
            BatchReport {
                submissions: 1,
                synced: false
            }
        );
        // The timer: an empty batch that syncs (any earlier turn is empty and unsynced).
        let timer = loop {
            let report = next();
            if report.synced {
                break report;
            }
            assert_eq!(report.submissions, 0, "nothing else was sent");
        };
        assert_eq!(timer.submissions, 0, "the timer, not a message, synced it");
        {
            let d = sink.0.lock().unwrap();
            assert_eq!(d.synced, vec![7]);
            assert_eq!((d.writes, d.syncs), (1, 1));
        }
        // The sender was still open all along; closing it now syncs nothing more.
        drop(tx);
        t.join().unwrap();
        assert_eq!(sink.0.lock().unwrap().syncs, 1);
        assert!(reports.try_recv().is_err(), "no batch after the timer's");
    }

    #[test]
    fn control_runs_after_everything_before_it_is_durable() {
        let sink = MemSink::default();
        let (tx, rx) = mailbox::<WriterMsg<MemSink, Ackr>>(64);
        for i in 1..=3u32 {
            tx.send(WriterMsg::Append(Submission {
                record: i,
                publish: None,
                durability: Durability::SyncWithin,
            }))
            .unwrap();
        }
        let (c, w) = completion();
        tx.send(WriterMsg::Control(c)).unwrap();
        drop(tx);
        WriterLoop::new(sink.clone(), cfg()).run(rx);
        assert_eq!(w.wait(), Ok(3), "the control saw all three records synced");
    }

    #[test]
    fn barrier_makes_pending_visible_records_durable() {
        let sink = MemSink::default();
        let (tx, rx) = mailbox::<WriterMsg<MemSink, Ackr>>(64);
        let s2 = sink.clone();
        let t = std::thread::spawn(move || {
            WriterLoop::new(
                s2,
                LoopConfig {
                    flush_interval: Duration::from_secs(3600),
                    max_batch: 8,
                    idle_spin: Duration::ZERO,
                },
            )
            .run(rx)
        });
        tx.send(WriterMsg::Append(Submission {
            record: 1,
            publish: None,
            durability: Durability::SyncWithin,
        }))
        .unwrap();
        let (c, w) = completion();
        tx.send(WriterMsg::Barrier(c)).unwrap();
        assert_eq!(w.wait(), Ok(Ok(())));
        assert_eq!(sink.0.lock().unwrap().synced, vec![1]);
        drop(tx);
        t.join().unwrap();
    }
}
