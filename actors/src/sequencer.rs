//! The Sequencer actor: the single writer.
//!
//! It owns the live [`State`] and the LSN counter. For each [`Commit`] it assigns the
//! next LSN, applies the transaction (assertions are checked against the state as of
//! every earlier sequenced commit), encodes the resolved commit record and hands it to
//! the WAL writer. `Durable` commits are published and acknowledged by the writer after
//! `fdatasync`; `Visible` commits are published and acknowledged here, right after
//! apply, and reach disk within the flush interval.
//!
//! Because the state is one linear history, publishing a `Visible` commit also makes
//! every earlier sequenced commit visible, including `Durable` ones whose fsync is
//! still in flight (their callers are still only acknowledged after the fsync).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aedb_model::{ApplyError, Assertion, CommitContext, IdempotencyRetention, Outcome, State};
use aedb_storage::{Edit, Memtable, Version, View};
use aedb_sync::completion::{Waiter, completion};
use aedb_sync::group_commit::{Durability, GroupCommitError, Submission, WriterMsg};
use aedb_sync::mailbox::MailboxSender;
use aedb_sync::{Completer, SnapshotCell};
use aedb_types::Lsn;

use crate::actor::{Ask, Owner};
use aedb_authz::{AccessError, Denied, PolicySnapshot, ddl_action, transaction_actions};

use crate::commit::{Answer, Authority, CommitOutcome, Finality, Reply, Request};
use crate::error::CommitError;
use crate::freeze::{WriteFreeze, freeze_transaction, load_write_freeze, missing_namespace_ddl};
use crate::metrics::{EngineMetrics, ErrorCause};
use crate::wal_writer::{PendingAck, SharedWalError, WalControl, WalMsg, WalRecord};

/// Sequence, apply and log one request; the answer goes to `reply`.
#[derive(Debug)]
pub struct Commit {
    /// What to apply.
    pub request: Request,
    /// When to acknowledge.
    pub finality: Finality,
    /// Whose rights are checked, and the policy it installs.
    pub authority: Authority,
    /// When the commit stops being worth applying: if the Sequencer takes it from its
    /// mailbox after this instant, it is refused with [`CommitError::Timeout`] and
    /// nothing is applied.
    pub deadline: Option<Instant>,
    /// Where the caller waits.
    pub reply: Completer<Result<CommitOutcome, CommitError>>,
}

impl Commit {
    /// A commit of `request` under `authority` (refused if dequeued after `deadline`)
    /// and the waiter its answer reaches.
    pub fn new(
        request: Request,
        finality: Finality,
        authority: Authority,
        deadline: Option<Instant>,
    ) -> (Commit, Waiter<Answer>) {
        let (reply, waiter) = completion();
        (
            Commit {
                request,
                finality,
                authority,
                deadline,
                reply,
            },
            waiter,
        )
    }
}

/// Freeze writes (`Some`) or lift the freeze (`None`): the Sequencer records it in
/// `_system/authz` with one durable commit of its own (creating that namespace first on
/// an open instance) and refuses every later commit but the engine's own with
/// [`CommitError::Frozen`] until it is lifted. Answered like a commit, once durable.
#[derive(Debug)]
pub struct SetWriteFreeze {
    /// The freeze to record, or `None` to lift it.
    pub freeze: Option<WriteFreeze>,
    /// Where the caller waits.
    pub reply: Reply,
}

/// Put `policy` in force for every commit sequenced from now on (a secure instance's
/// Authz actor, at start).
#[derive(Debug)]
pub struct InstallPolicy(pub Arc<PolicySnapshot>);

/// Make every commit sequenced so far durable, then answer.
#[derive(Debug)]
pub struct Flush {
    /// Where the caller waits; completed by the WAL writer.
    pub reply: Completer<Result<(), GroupCommitError<SharedWalError>>>,
}

/// Freeze the active memtable when `force` and it holds anything, then answer every
/// frozen memtable not yet flushed, oldest first (the CheckpointSealer flushes them).
#[derive(Debug)]
pub struct Freeze {
    /// Freeze the active memtable even if it is not full (`checkpoint_now`).
    pub force: bool,
}

/// A frozen memtable waiting to be flushed, and the LSN it covers up to.
#[derive(Clone, Debug)]
pub struct FrozenMemtable {
    /// The memtable (no longer written to).
    pub memtable: Arc<Memtable>,
    /// Every commit up to this LSN is in it or in older sources.
    pub lsn: Lsn,
}

/// Install a version edit (runs added by a flush or a compaction, runs removed by a
/// compaction) and drop the memtable a flush wrote out: the Sequencer owns the live
/// sources (memtables and version) every new snapshot reads.
#[derive(Debug)]
pub struct InstallRuns {
    /// The change of the live runs.
    pub edit: Edit,
    /// The id of the memtable the added run holds, for a flush.
    pub flushed: Option<u64>,
}

/// The live version (the CheckpointSealer's and Compactor's starting point).
#[derive(Debug)]
pub struct CurrentVersion;

/// When the writer waits for the storage engine to catch up: the memory budget's
/// memtables and the depth of level 0 (a write stall).
///
/// The active memtable is frozen once it holds `memtable_bytes`, unless
/// `immutable_memtables` frozen ones already wait for their flush; and while level 0
/// holds `l0_stop_runs` runs, compaction is behind. In either case new commits wait in
/// the Sequencer, in arrival order and without being applied, until a flush or a
/// compaction installs its runs; a commit whose deadline passes while it waits is
/// refused with [`CommitError::Timeout`], and one that waited `max_stall` while flushes
/// or compactions kept failing (a full disk) with [`CommitError::Busy`]. A slow but
/// healthy compaction only makes commits wait. Memory stays within the budget and reads
/// stay within a bounded number of runs, however fast callers write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteLimits {
    /// Freeze the active memtable once it holds this many bytes.
    pub memtable_bytes: usize,
    /// At most this many frozen memtables wait for their flush.
    pub immutable_memtables: usize,
    /// Commits wait while level 0 holds this many runs.
    pub l0_stop_runs: usize,
    /// From this many level-0 runs on (below `l0_stop_runs`), commits are paced: see
    /// [`WriteLimits::slowdown_bytes_per_sec`].
    pub l0_slowdown_runs: usize,
    /// The least base rate of the write slowdown, in bytes of WAL records per second
    /// (0: no slowdown). When the slowdown begins, its base is this or, when higher,
    /// the rate writes ran at in the last whole second before; the rate allowed is the base times
    /// the runs left before the stop over one more than the span (8/9 of it at 12
    /// level-0 runs of 20, 1/9 at 19), so writers slow down in proportion to how far
    /// compaction is behind rather than to a fixed figure. Commits over the rate wait
    /// in the Sequencer's queue, as in a stall, and their deadlines still hold.
    pub slowdown_bytes_per_sec: u64,
    /// A commit that waited this long while flushes or compactions failed is refused
    /// as busy ([`MAX_STALL`] by default).
    pub max_stall: Duration,
}

impl Default for WriteLimits {
    /// A 64 MiB memtable, two frozen ones, and the default compaction depths (a
    /// slowdown from 12 level-0 runs, from at least 16 MiB/s, and a stop at 20).
    fn default() -> WriteLimits {
        let compaction = aedb_storage::compaction::CompactionOptions::default();
        WriteLimits {
            memtable_bytes: 64 << 20,
            immutable_memtables: 2,
            l0_stop_runs: compaction.l0_stop_runs,
            l0_slowdown_runs: compaction.l0_slowdown_runs,
            slowdown_bytes_per_sec: DEFAULT_SLOWDOWN_BYTES_PER_SEC,
            max_stall: MAX_STALL,
        }
    }
}

/// The default of [`WriteLimits::slowdown_bytes_per_sec`] (RocksDB's
/// `delayed_write_rate` default is the same figure).
pub const DEFAULT_SLOWDOWN_BYTES_PER_SEC: u64 = 16 << 20;

/// How often waiting commits are checked against their deadlines (and paced ones
/// released).
const STALL_CHECK: Duration = Duration::from_millis(20);

/// How long a commit waits out a write stall while flushes or compactions fail before
/// it is refused as busy (the default of [`WriteLimits::max_stall`]).
pub const MAX_STALL: Duration = Duration::from_secs(10);

/// The write slowdown (see [`WriteLimits::slowdown_bytes_per_sec`]): the rate writes
/// ran at before it, and its pacing clock. A commit that is not slowed only adds its
/// bytes (no clock read on the commit path); the Sequencer's tick measures the rate.
#[derive(Debug)]
struct Pacing {
    /// When the next commit may start, while slowed.
    until: Option<Instant>,
    /// The rate at the slowdown depth, fixed when the slowdown began: the configured
    /// rate or, when higher, the one writes ran at in the last whole window before.
    base: Option<f64>,
    /// WAL record bytes sequenced so far.
    sequenced: u64,
    /// When the current measurement window began, and `sequenced` then.
    window: (Instant, u64),
    /// The write rate of the last whole window while not slowed (bytes per second).
    recent: f64,
}

/// How long a window of [`Pacing`]'s write-rate measurement lasts.
const RATE_WINDOW: Duration = Duration::from_secs(1);

impl Pacing {
    fn new() -> Pacing {
        Pacing {
            until: None,
            base: None,
            sequenced: 0,
            window: (Instant::now(), 0),
            recent: 0.0,
        }
    }

    /// Whether the clock is ahead of now (read only while the clock runs).
    fn must_wait(&self) -> bool {
        self.until.is_some_and(|t| t > Instant::now())
    }

    /// Closes the measurement window once it is a whole [`RATE_WINDOW`] long (from the
    /// Sequencer's tick). Not while slowed: the base must be the rate before it.
    fn measure(&mut self, now: Instant) {
        let (start, at_start) = self.window;
        let elapsed = now.duration_since(start);
        if self.base.is_none() && elapsed >= RATE_WINDOW {
            self.recent = (self.sequenced - at_start) as f64 / elapsed.as_secs_f64();
            self.window = (now, self.sequenced);
        }
    }

    /// Accounts a sequenced record of `bytes`. `share` is the part of the base rate
    /// level 0's depth allows (`None`: not slowed, so the record only counts toward
    /// the measured rate). The clock moves on by `bytes` ÷ the rate from now, or from
    /// where it stands when that is later, but no earlier than one tick ago (so a tick
    /// releases more than one commit). A record is only sequenced once the clock has
    /// reached now, so it is never more than one record's cost ahead.
    fn charge(&mut self, bytes: usize, share: Option<f64>, configured: u64) {
        self.sequenced += bytes as u64;
        let Some(share) = share else {
            if self.base.take().is_some() {
                // The first window after a slowdown starts now.
                self.window = (Instant::now(), self.sequenced);
            }
            self.until = None;
            return;
        };
        let now = Instant::now();
        let recent = self.recent;
        let base = *self.base.get_or_insert((configured as f64).max(recent));
        let rate = (base * share).max(1.0);
        let earliest = now.checked_sub(STALL_CHECK).unwrap_or(now);
        let start = self.until.map_or(now, |t| t.max(earliest));
        self.until = Some(start + Duration::from_secs_f64(bytes as f64 / rate));
    }
}

/// A commit waiting in the Sequencer's queue.
struct Waiting {
    since: Instant,
    /// Queued by the write slowdown (not a stall).
    paced: bool,
    commit: Commit,
}

/// The single-writer actor.
pub struct Sequencer {
    state: State,
    /// When to freeze the active memtable and when commits wait.
    limits: WriteLimits,
    /// Commits waiting out a write stall or the write slowdown, oldest first, with
    /// when they began waiting.
    stalled: VecDeque<Waiting>,
    /// The write slowdown's clock and rates.
    pacing: Pacing,
    /// When the current stall began, and the flush and compaction failures counted then.
    stalled_since: Option<(Instant, u64)>,
    wal: Option<MailboxSender<WalMsg>>,
    wal_fail_stopped: Arc<AtomicBool>,
    snapshots: Arc<SnapshotCell<State>>,
    metrics: Arc<EngineMetrics>,
    max_record_len: usize,
    /// The access policy in force (secure instances), replaced by each policy commit.
    policy: Option<Arc<PolicySnapshot>>,
    /// The write freeze in force (read from the state at start).
    frozen: Option<WriteFreeze>,
    /// How long idempotency records are honoured.
    idempotency_retention: IdempotencyRetention,
    /// The commit time of the last commit (the clock, never going backwards).
    last_at_ms: u64,
}

impl Sequencer {
    /// A sequencer continuing from the recovered `state`. `max_record_len` is the
    /// largest commit record the WAL writer accepts
    /// ([`aedb_wal::WalConfig::max_record_len`]); larger transactions are refused with
    /// [`CommitError::TooLarge`] before anything is applied.
    pub fn new(
        state: State,
        wal: MailboxSender<WalMsg>,
        wal_fail_stopped: Arc<AtomicBool>,
        snapshots: Arc<SnapshotCell<State>>,
        metrics: Arc<EngineMetrics>,
        max_record_len: usize,
        limits: WriteLimits,
    ) -> Sequencer {
        Sequencer {
            frozen: load_write_freeze(&state),
            state,
            limits,
            stalled: VecDeque::new(),
            pacing: Pacing::new(),
            stalled_since: None,
            wal: Some(wal),
            wal_fail_stopped,
            snapshots,
            metrics,
            max_record_len,
            policy: None,
            idempotency_retention: IdempotencyRetention::default(),
            last_at_ms: 0,
        }
    }

    /// Honours idempotency records for `retention` (default
    /// [`IdempotencyRetention::DEFAULT`]).
    pub fn with_idempotency_retention(mut self, retention: IdempotencyRetention) -> Sequencer {
        self.idempotency_retention = retention;
        self
    }

    /// The time and retention of the commit being sequenced now: the wall clock, but
    /// never before the previous commit's (stored in idempotency records; replay uses
    /// the stored time, never the clock).
    fn commit_context(&mut self) -> CommitContext {
        self.last_at_ms = self.last_at_ms.max(aedb_types::clock::unix_millis());
        CommitContext {
            at_unix_ms: self.last_at_ms,
            retention: self.idempotency_retention,
        }
    }

    /// The caller's rights for every mutation and assertion (or the DDL statement),
    /// against the policy in force now. Always allowed on open instances and for the
    /// engine's own commits.
    fn check_rights(&self, request: &Request, authority: &Authority) -> Result<(), Denied> {
        let (Some(policy), Some(caller)) = (&self.policy, &authority.caller) else {
            return Ok(());
        };
        match request {
            Request::Transaction(tx) => policy.check_all(caller, &transaction_actions(tx)),
            Request::Ddl(ddl) => policy.check(caller, &ddl_action(ddl)),
        }
    }

    fn fail(&self, cause: ErrorCause, error: CommitError) -> Result<CommitOutcome, CommitError> {
        self.metrics.count_error(cause);
        Err(error)
    }

    /// Applies `request` at the next LSN. Returns the reply now, or `None` when the
    /// WAL writer will complete `reply` after the fsync.
    fn sequence(
        &mut self,
        request: &Request,
        finality: Finality,
        authority: &Authority,
        reply: Reply,
    ) -> Option<(Reply, Answer)> {
        let Some(wal) = self.wal.clone() else {
            let answer = self.fail(ErrorCause::Closed, CommitError::Closed);
            return Some((reply, answer));
        };
        if self.wal_fail_stopped.load(Ordering::Acquire) {
            let answer = self.fail(ErrorCause::WalFailure, CommitError::FailStopped);
            return Some((reply, answer));
        }
        if self.frozen.is_some() && !authority.engine {
            return Some((reply, self.fail(ErrorCause::Frozen, CommitError::Frozen)));
        }
        if let Err(denied) = self.check_rights(request, authority) {
            // Counted and audited by the caller's side, like a denial before sequencing.
            let answer = Err(CommitError::Access(AccessError::Denied(denied)));
            return Some((reply, answer));
        }
        let lsn = self.state.lsn().next();
        let ctx = self.commit_context();
        let applied = match request {
            Request::Transaction(tx) => self.state.stage_in(tx, lsn, &ctx),
            Request::Ddl(ddl) => self.state.stage_ddl(ddl, lsn),
        };
        let (next, record, outcome) = match applied {
            Ok((next, record)) => (
                next,
                record,
                Ok(CommitOutcome {
                    lsn,
                    idempotent_replay: false,
                }),
            ),
            Err(ApplyError::AlreadySeen { key, original }) => {
                self.metrics
                    .idempotent_replays
                    .fetch_add(1, Ordering::Relaxed);
                let answer = match original.outcome {
                    Outcome::Committed => Ok(CommitOutcome {
                        lsn: original.lsn,
                        idempotent_replay: true,
                    }),
                    Outcome::Rejected(_) => Err(CommitError::Rejected(ApplyError::AlreadySeen {
                        key,
                        original,
                    })),
                };
                return Some((reply, answer));
            }
            Err(error @ ApplyError::IdempotencyMismatch { .. }) => {
                // Another request under a key still in its window: refused, nothing
                // applied or logged.
                self.metrics
                    .idempotency_mismatches
                    .fetch_add(1, Ordering::Relaxed);
                let answer = self.fail(ErrorCause::Invalid, CommitError::Rejected(error));
                return Some((reply, answer));
            }
            Err(error) => {
                let cause = match error {
                    ApplyError::AssertionFailed { index, .. } => {
                        if let Request::Transaction(tx) = request {
                            let failed = tx.assertions.get(index as usize);
                            if failed.is_some_and(is_optimistic_check) {
                                self.metrics
                                    .optimistic_conflicts
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            let project = failed.and_then(assertion_project);
                            self.metrics.count_assertion_failure(
                                project.map_or("_unknown", |p| p.as_str()),
                            );
                        }
                        ErrorCause::AssertionFailed
                    }
                    _ => ErrorCause::Invalid,
                };
                self.metrics.count_error(cause);
                let logged = match request {
                    Request::Transaction(tx) => self.state.stage_reject_in(tx, &error, lsn, &ctx),
                    Request::Ddl(_) => Ok(None),
                };
                match logged {
                    // A rejection under an idempotency key is logged, so a retry gets
                    // the same answer after a restart.
                    Ok(Some((next, record))) => (next, record, Err(CommitError::Rejected(error))),
                    Ok(None) | Err(_) => return Some((reply, Err(CommitError::Rejected(error)))),
                }
            }
        };

        let mut payload = Vec::new();
        record.encode(&mut payload);
        // Admission, not I/O: a record the WAL cannot frame is refused here, before the
        // new state replaces the old one and before it consumes an LSN, so the writer
        // never sees it and nothing else is affected.
        if payload.len() > self.max_record_len {
            let error = CommitError::TooLarge {
                len: payload.len(),
                max: self.max_record_len,
            };
            return Some((reply, self.fail(ErrorCause::Invalid, error)));
        }
        self.state = match next.install() {
            Ok(state) => state,
            // Only a change computed on a stale state is refused, and the sequencer
            // always computes on its own newest one.
            Err(e) => {
                let answer = self.fail(ErrorCause::Invalid, CommitError::Rejected(e));
                return Some((reply, answer));
            }
        };
        self.freeze_if_full();
        self.pace(payload.len());
        if outcome.is_ok()
            && let Some(policy) = &authority.installs
        {
            self.policy = Some(policy.clone());
        }
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "observability")]
        crate::metrics::export::commit();
        let snapshot = Arc::new(self.state.clone());
        let record = WalRecord { lsn, payload };
        match finality {
            Finality::Visible => {
                if self.snapshots.publish(lsn.get(), snapshot) {
                    self.metrics
                        .visible_lsn
                        .fetch_max(lsn.get(), Ordering::Relaxed);
                }
                let sent = wal.send(WriterMsg::Append(Submission {
                    record,
                    publish: None,
                    durability: Durability::SyncWithin,
                }));
                if sent.is_err() {
                    let answer = self.fail(ErrorCause::WalFailure, CommitError::FailStopped);
                    return Some((reply, answer));
                }
                if outcome.is_ok() {
                    self.metrics.visible_commits.fetch_add(1, Ordering::Relaxed);
                }
                Some((reply, outcome))
            }
            Finality::Durable => {
                let ack = PendingAck {
                    reply,
                    outcome,
                    metrics: self.metrics.clone(),
                };
                // Blocks while the writer's mailbox is full: backpressure reaches the
                // sequencer's mailbox and from there the callers.
                let sent = wal.send(WriterMsg::Append(Submission {
                    record,
                    publish: Some((lsn, snapshot)),
                    durability: Durability::AckAfterSync(ack),
                }));
                if let Err(closed) = sent
                    && let WriterMsg::Append(Submission {
                        durability: Durability::AckAfterSync(ack),
                        ..
                    }) = closed.0
                {
                    let answer = self.fail(ErrorCause::WalFailure, CommitError::FailStopped);
                    return Some((ack.reply, answer));
                }
                None
            }
        }
    }
}

impl Sequencer {
    /// Whether the active memtable reached its size.
    fn active_full(&self) -> bool {
        self.state.view().memtables()[0].approximate_bytes() >= self.limits.memtable_bytes
    }

    /// Freezes a full active memtable unless the frozen ones already fill the budget.
    fn freeze_if_full(&mut self) {
        let frozen = self.state.view().memtables().len() - 1;
        if self.active_full() && frozen < self.limits.immutable_memtables {
            self.freeze_active();
        }
    }

    /// Whether new commits must wait (see [`WriteLimits`]).
    fn must_stall(&self) -> bool {
        let view = self.state.view();
        let frozen = view.memtables().len() - 1;
        (self.active_full() && frozen >= self.limits.immutable_memtables)
            || view.version().level(0).len() >= self.limits.l0_stop_runs
    }

    /// The share of the slowdown's base rate level 0's depth allows, while it is
    /// between its slowdown and stop depths: the runs left before the stop over one
    /// more than the span (8/9 at 12 runs of 20, 1/9 at 19).
    fn slowdown(&self) -> Option<f64> {
        let l0 = self.state.view().version().level(0).len();
        let (slow, stop) = (self.limits.l0_slowdown_runs, self.limits.l0_stop_runs);
        if l0 < slow || l0 >= stop || self.limits.slowdown_bytes_per_sec == 0 {
            return None;
        }
        Some((stop - l0) as f64 / (stop - slow + 1) as f64)
    }

    /// Whether the next commit must wait for the write slowdown's clock.
    fn must_pace(&self) -> bool {
        self.pacing.must_wait() && self.slowdown().is_some()
    }

    /// Charges a sequenced record of `bytes` to the write slowdown.
    fn pace(&mut self, bytes: usize) {
        let share = self.slowdown();
        self.pacing
            .charge(bytes, share, self.limits.slowdown_bytes_per_sec);
    }

    /// Records that queued commits now wait out a stall (once per stall): when it
    /// began, for its length, and the flush failures then, for `Busy`.
    fn note_stall(&mut self, now: Instant) {
        if self.stalled_since.is_none() {
            let failures = self.metrics.checkpoint_failures.load(Ordering::Relaxed);
            self.stalled_since = Some((now, failures));
            self.metrics.write_stalls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Handles one commit taken from the mailbox, or from the stalled queue.
    fn accept(&mut self, commit: Commit) {
        // Checked when the commit leaves the mailbox: one that waited past its
        // deadline is refused before anything is applied.
        if commit.deadline.is_some_and(|d| Instant::now() > d) {
            self.metrics.count_error(ErrorCause::Timeout);
            commit.reply.complete(Err(CommitError::Timeout));
            return;
        }
        if let Some((reply, answer)) = self.sequence(
            &commit.request,
            commit.finality,
            &commit.authority,
            commit.reply,
        ) {
            reply.complete(answer);
        }
    }

    /// Sequences waiting commits, oldest first, while neither a stall nor the write
    /// slowdown holds them.
    fn drain_stalled(&mut self) {
        if !self.must_stall()
            && let Some((since, _)) = self.stalled_since.take()
        {
            self.metrics
                .write_stall_micros
                .fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
        while !self.stalled.is_empty() && !self.must_stall() && !self.must_pace() {
            if let Some(w) = self.stalled.pop_front() {
                if w.paced {
                    self.metrics
                        .write_slowdown_micros
                        .fetch_add(w.since.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                self.accept(w.commit);
            }
        }
        // What it sequenced may have filled the memtable budget again.
        if !self.stalled.is_empty() && self.must_stall() {
            self.note_stall(Instant::now());
        }
    }

    /// Refuses waiting commits whose deadline passed ([`CommitError::Timeout`]) and,
    /// when flushes or compactions failed since the stall began (a full disk, say),
    /// those that waited `max_stall` ([`CommitError::Busy`]); nothing of them is
    /// applied.
    fn expire_stalled(&mut self) {
        let now = Instant::now();
        let failing = self.stalled_since.is_some_and(|(_, failures)| {
            self.metrics.checkpoint_failures.load(Ordering::Relaxed) > failures
        });
        let max_stall = self.limits.max_stall;
        let expired = |w: &Waiting| {
            w.commit.deadline.is_some_and(|d| now > d)
                || (failing && now.duration_since(w.since) >= max_stall)
        };
        if !self.stalled.iter().any(expired) {
            return;
        }
        let (expired, waiting): (VecDeque<_>, VecDeque<_>) =
            self.stalled.drain(..).partition(expired);
        self.stalled = waiting;
        for Waiting { commit, .. } in expired {
            let timed_out = commit.deadline.is_some_and(|d| now > d);
            let (cause, error) = if timed_out {
                (ErrorCause::Timeout, CommitError::Timeout)
            } else {
                (ErrorCause::Busy, CommitError::Busy)
            };
            self.metrics.count_error(cause);
            commit.reply.complete(Err(error));
        }
    }

    /// Freezes the active memtable (when it holds anything) behind a fresh one. New
    /// snapshots read both until the CheckpointSealer's flush installs the run.
    fn freeze_active(&mut self) {
        let view = self.state.view();
        let active = &view.memtables()[0];
        if active.is_empty() {
            return;
        }
        active.freeze();
        let mut memtables = vec![Arc::new(Memtable::with_budget(
            active.id() + 1,
            self.limits.memtable_bytes,
        ))];
        memtables.extend(view.memtables().iter().cloned());
        let view = View::new(memtables, view.version().clone(), self.state.lsn());
        self.state = self.state.with_view(view);
        self.metrics
            .memtables_frozen
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The frozen memtables, oldest first.
    fn frozen_memtables(&self) -> Vec<FrozenMemtable> {
        self.state.view().memtables()[1..]
            .iter()
            .rev()
            .map(|m| FrozenMemtable {
                memtable: m.clone(),
                lsn: m.installed_lsn(),
            })
            .collect()
    }

    /// Installs `edit` and drops the flushed memtable; re-points the published snapshot
    /// at the new sources so readers stop pinning the old ones.
    fn install_runs(&mut self, edit: &Edit, flushed: Option<u64>) {
        let view = self.state.view();
        let version = Arc::new(view.version().apply(edit));
        let memtables: Vec<Arc<Memtable>> = view
            .memtables()
            .iter()
            .filter(|m| Some(m.id()) != flushed)
            .cloned()
            .collect();
        let view = View::new(memtables, version, self.state.lsn());
        self.state = self.state.with_view(view.clone());
        let current = self.state.lsn();
        self.snapshots.refresh(|published| {
            (published.lsn() <= current).then(|| Arc::new(published.with_view(view.clone())))
        });
        // Snapshots of commits still in flight to the WAL writer were built on the old
        // sources: re-point again once they are published.
        if self.snapshots.version() < current.get()
            && let Some(wal) = &self.wal
        {
            let _ = wal.send(WriterMsg::Control(WalControl::Repoint { view }));
        }
    }

    /// Records `freeze` (or lifts it) at the next LSN; see [`SetWriteFreeze`].
    fn set_write_freeze(&mut self, freeze: Option<WriteFreeze>, reply: Reply) {
        if freeze.is_none() && self.frozen.is_none() {
            // Nothing to lift: answer with the current position, commit nothing.
            reply.complete(Ok(CommitOutcome {
                lsn: self.state.lsn(),
                idempotent_replay: false,
            }));
            return;
        }
        let engine = Authority::engine();
        for ddl in missing_namespace_ddl(&self.state) {
            // Its answer is not awaited: the freeze commit below is sequenced after it
            // and answered only once it, and so everything before it, is durable.
            let (ack, _ignored) = completion();
            if let Some((_, Err(e))) =
                self.sequence(&Request::Ddl(ddl), Finality::Durable, &engine, ack)
            {
                reply.complete(Err(e));
                return;
            }
        }
        let request = Request::Transaction(freeze_transaction(freeze.as_ref()));
        match self.sequence(&request, Finality::Durable, &engine, reply) {
            // Applied and handed to the WAL writer, which answers after the fsync.
            None => self.frozen = freeze,
            Some((reply, answer)) => {
                if answer.is_ok() {
                    self.frozen = freeze;
                }
                reply.complete(answer);
            }
        }
    }
}

/// Whether `assertion` is an optimistic-concurrency check (a version or value
/// comparison) whose failure means another writer got there first.
fn is_optimistic_check(assertion: &Assertion) -> bool {
    match assertion {
        Assertion::KvVersionEquals { .. }
        | Assertion::RowVersionEquals { .. }
        | Assertion::KvValueEquals { .. }
        | Assertion::KvCompare { .. }
        | Assertion::ColumnEquals { .. }
        | Assertion::ColumnCompare { .. } => true,
        Assertion::All(list) | Assertion::Any(list) => list.iter().any(is_optimistic_check),
        Assertion::Not(inner) => is_optimistic_check(inner),
        _ => false,
    }
}

impl Owner for Sequencer {
    const NAME: &'static str = "sequencer";

    /// Checks waiting commits against their deadlines, and measures the write rate.
    fn tick_interval(&self) -> Option<Duration> {
        Some(STALL_CHECK)
    }

    fn tick(&mut self) {
        self.pacing.measure(Instant::now());
        if self.stalled.is_empty() {
            return;
        }
        if self.wal_fail_stopped.load(Ordering::Acquire) {
            // Nothing will be flushed any more: every waiting commit is refused.
            for w in self.stalled.drain(..) {
                self.metrics.count_error(ErrorCause::WalFailure);
                w.commit.reply.complete(Err(CommitError::FailStopped));
            }
            return;
        }
        self.expire_stalled();
        self.drain_stalled();
    }

    /// Stops accepting commits and releases the WAL mailbox (the writer then drains,
    /// syncs and exits once every other sender is gone too); commits still waiting
    /// out a stall are refused as closed, nothing of them applied.
    fn stopped(&mut self) {
        for w in self.stalled.drain(..) {
            self.metrics.count_error(ErrorCause::Closed);
            w.commit.reply.complete(Err(CommitError::Closed));
        }
        self.wal = None;
    }
}

impl Ask<Sequencer> for Commit {
    type Reply = ();

    fn handle(self, sequencer: &mut Sequencer) {
        #[cfg(feature = "observability")]
        let _span =
            tracing::trace_span!("aedb.commit.sequence", finality = ?self.finality).entered();
        let stall = sequencer.must_stall();
        if stall || !sequencer.stalled.is_empty() || sequencer.must_pace() {
            let now = Instant::now();
            if stall {
                sequencer.note_stall(now);
            } else {
                sequencer
                    .metrics
                    .write_slowdowns
                    .fetch_add(1, Ordering::Relaxed);
            }
            sequencer.stalled.push_back(Waiting {
                since: now,
                paced: !stall,
                commit: self,
            });
            return;
        }
        sequencer.accept(self);
    }
}

impl Ask<Sequencer> for SetWriteFreeze {
    type Reply = ();

    fn handle(self, sequencer: &mut Sequencer) {
        sequencer.set_write_freeze(self.freeze, self.reply);
    }
}

impl Ask<Sequencer> for Freeze {
    type Reply = Vec<FrozenMemtable>;

    fn handle(self, sequencer: &mut Sequencer) -> Vec<FrozenMemtable> {
        if self.force {
            sequencer.freeze_active();
        }
        sequencer.frozen_memtables()
    }
}

impl Ask<Sequencer> for InstallRuns {
    type Reply = ();

    fn handle(self, sequencer: &mut Sequencer) {
        sequencer.install_runs(&self.edit, self.flushed);
        sequencer.freeze_if_full();
        sequencer.drain_stalled();
    }
}

impl Ask<Sequencer> for CurrentVersion {
    type Reply = Arc<Version>;

    fn handle(self, sequencer: &mut Sequencer) -> Arc<Version> {
        sequencer.state.view().version().clone()
    }
}

impl Ask<Sequencer> for InstallPolicy {
    type Reply = ();

    fn handle(self, sequencer: &mut Sequencer) {
        sequencer.policy = Some(self.0);
    }
}

impl Ask<Sequencer> for Flush {
    type Reply = ();

    fn handle(self, sequencer: &mut Sequencer) {
        let Some(wal) = &sequencer.wal else {
            self.reply.complete(Err(GroupCommitError::FailStopped));
            return;
        };
        // The barrier queues behind every record sequenced so far; the writer answers
        // the caller directly once they are durable.
        if let Err(closed) = wal.send(WriterMsg::Barrier(self.reply))
            && let WriterMsg::Barrier(reply) = closed.0
        {
            reply.complete(Err(GroupCommitError::FailStopped));
        }
    }
}

/// The project an assertion reads (the first one, for a combinator): the label of
/// `aedb_assertion_failures_total`.
fn assertion_project(a: &aedb_model::Assertion) -> Option<&aedb_model::ProjectName> {
    use aedb_model::Assertion as A;
    match a {
        A::KvExists { ns, .. }
        | A::KvAbsent { ns, .. }
        | A::KvValueEquals { ns, .. }
        | A::KvCompare { ns, .. }
        | A::KvVersionEquals { ns, .. }
        | A::KvNumericAtLeast { ns, .. }
        | A::RowExists { ns, .. }
        | A::RowAbsent { ns, .. }
        | A::ColumnEquals { ns, .. }
        | A::ColumnCompare { ns, .. }
        | A::RowVersionEquals { ns, .. } => Some(&ns.project),
        A::All(list) | A::Any(list) => list.iter().find_map(assertion_project),
        A::Not(a) => assertion_project(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slowdown's base is the rate writes ran at in the last whole window before
    /// it (or the configured one when higher), fixed while it lasts: the clock moves on
    /// by bytes ÷ (base × share). Not slowed, nothing is clocked.
    #[test]
    fn the_slowdown_base_is_the_measured_rate_before_it() {
        let mut p = Pacing::new();
        let start = p.window.0;
        // 10 MB in a 2-second window: 5 MB/s.
        p.charge(10_000_000, None, 1_000);
        assert_eq!(p.until, None);
        p.measure(start + Duration::from_secs(2));
        assert!((p.recent - 5_000_000.0).abs() < 1.0, "{}", p.recent);
        // Slowed at half the base: 1 MB costs 0.4 s.
        let before = Instant::now();
        p.charge(1_000_000, Some(0.5), 1_000);
        assert_eq!(p.base, Some(5_000_000.0));
        let ahead = p.until.expect("the clock runs") - before;
        assert!(
            // 0.4 s from the clock read inside `charge`, a little after `before`.
            ahead >= Duration::from_millis(400) && ahead < Duration::from_secs(1),
            "{ahead:?}"
        );
        assert!(p.must_wait());
        // While slowed the window does not close (the base stays the rate before).
        p.measure(start + Duration::from_secs(10));
        assert!((p.recent - 5_000_000.0).abs() < 1.0);
        // A configured rate above the measured one wins.
        let mut q = Pacing::new();
        q.charge(1, Some(1.0), 8_000_000);
        assert_eq!(q.base, Some(8_000_000.0));
        // Leaving the slowdown stops the clock and forgets the base.
        q.charge(1, None, 8_000_000);
        assert_eq!((q.until, q.base), (None, None));
    }
}
