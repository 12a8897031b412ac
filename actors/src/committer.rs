//! The caller side of the commit path: [`Committer`] admits a commit against the rate
//! limits ([`crate::admission`]), puts it into the Sequencer's bounded mailbox (waiting
//! for room or failing fast, per [`Admission`]) and waits on the commit's completion.
//! Everything that waits here waits on the caller's thread, never in the single writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::actor::{AskError, OwnerRef};
use crate::admission::Limiter;
use aedb_authz::PolicySnapshot;

use crate::commit::{Authority, CommitOutcome, Finality, Request};
use crate::error::CommitError;
use crate::freeze::WriteFreeze;
use crate::metrics::{EngineMetrics, ErrorCause};
use crate::sequencer::{Commit, InstallPolicy, Sequencer, SetWriteFreeze};

/// Whether a full sequencer mailbox or an exhausted rate limit makes the caller wait
/// or fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Wait for room (backpressure) and, within the limits' bound, for a rate-limit
    /// token.
    Wait,
    /// Fail with [`CommitError::Busy`] or [`CommitError::RateLimited`].
    FailFast,
}

/// Submits commits to the Sequencer: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Committer {
    pub(crate) sequencer: OwnerRef<Sequencer>,
    pub(crate) metrics: Arc<EngineMetrics>,
    pub(crate) limiter: Arc<Limiter>,
    /// Commits submitted through any clone and not yet answered.
    pub(crate) in_flight: Arc<AtomicUsize>,
    /// How long a lone commit (nothing else in flight) polls for its answer before
    /// sleeping (see [`aedb_sync::completion::Waiter::wait_spinning`]).
    pub(crate) lone_spin: Duration,
}

/// Counts a commit in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Enters; also says whether this commit is the only one in flight.
    fn enter(count: &'a AtomicUsize) -> (InFlight<'a>, bool) {
        let before = count.fetch_add(1, Ordering::Relaxed);
        (InFlight(count), before == 0)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// A committer to `sequencer` with no rate limits; a lone commit polls for its
    /// answer for `lone_spin` before sleeping.
    pub(crate) fn new(
        sequencer: OwnerRef<Sequencer>,
        metrics: Arc<EngineMetrics>,
        lone_spin: Duration,
    ) -> Committer {
        Committer {
            sequencer,
            metrics,
            limiter: Arc::new(Limiter::default()),
            in_flight: Arc::default(),
            lone_spin,
        }
    }

    /// Sequences the engine's own `request` (system tables, audit rows: exempt from
    /// the write freeze and the rate limits) and waits for its finality.
    pub fn commit(
        &self,
        request: Request,
        finality: Finality,
        admission: Admission,
    ) -> Result<CommitOutcome, CommitError> {
        self.submit(Authority::engine(), request, finality, admission)
    }

    /// Sequences `request` under `authority` (the caller whose rights the Sequencer
    /// checks, the policy it installs) and waits for its finality.
    pub fn submit(
        &self,
        authority: Authority,
        request: Request,
        finality: Finality,
        admission: Admission,
    ) -> Result<CommitOutcome, CommitError> {
        self.submit_until(authority, request, finality, admission, None)
    }

    /// [`Committer::submit`] with a deadline: a rate-limit wait never runs past it,
    /// and the Sequencer refuses the commit with [`CommitError::Timeout`] (applying
    /// nothing) if it takes it from its mailbox after it.
    pub fn submit_until(
        &self,
        authority: Authority,
        request: Request,
        finality: Finality,
        admission: Admission,
        deadline: Option<Instant>,
    ) -> Result<CommitOutcome, CommitError> {
        #[cfg(feature = "observability")]
        let started = Instant::now();
        if !authority.engine {
            let max_wait = match admission {
                Admission::FailFast => Some(Duration::ZERO),
                Admission::Wait => deadline.map(|d| {
                    let left = d.saturating_duration_since(Instant::now());
                    left.min(self.limiter.wait_bound())
                }),
            };
            self.admit(&authority, &request, max_wait)?;
        }
        let (msg, waiter) = Commit::new(request, finality, authority, deadline);
        let (_in_flight, lone) = InFlight::enter(&self.in_flight);
        if let Some(msg) = self.offer(msg, admission)? {
            // Waits for room (backpressure); the reply comes through the completer.
            self.sequencer.ask(msg).map_err(|_| self.closed())?;
        }
        // A lone commit polls for its answer instead of sleeping for it: with nothing
        // else in flight the CPU is idle, and waking a sleeping thread costs more than
        // the commit's own work. Concurrent commits sleep (the CPU is the writers').
        let spin = if lone { self.lone_spin } else { Duration::ZERO };
        let answer = waiter
            .wait_spinning(spin)
            .unwrap_or(Err(CommitError::Closed));
        #[cfg(feature = "observability")]
        crate::metrics::export::commit_latency(started.elapsed());
        answer
    }

    /// Async form of [`Committer::submit`]: awaits room in the mailbox and finality
    /// without blocking the executor thread. An exhausted rate limit fails fast with
    /// [`CommitError::RateLimited`] (its `retry_after` says when to retry): an executor
    /// thread is never put to sleep.
    pub async fn submit_async(
        &self,
        authority: Authority,
        request: Request,
        finality: Finality,
    ) -> Result<CommitOutcome, CommitError> {
        self.submit_async_until(authority, request, finality, None)
            .await
    }

    /// [`Committer::submit_async`] with a deadline (see [`Committer::submit_until`]).
    pub async fn submit_async_until(
        &self,
        authority: Authority,
        request: Request,
        finality: Finality,
        deadline: Option<Instant>,
    ) -> Result<CommitOutcome, CommitError> {
        #[cfg(feature = "observability")]
        let started = Instant::now();
        if !authority.engine {
            self.admit(&authority, &request, Some(Duration::ZERO))?;
        }
        let (msg, waiter) = Commit::new(request, finality, authority, deadline);
        if let Some(msg) = self.offer(msg, Admission::Wait)? {
            self.sequencer
                .ask_async(msg)
                .await
                .map_err(|_| self.closed())?;
        }
        let answer = waiter.await.unwrap_or(Err(CommitError::Closed));
        #[cfg(feature = "observability")]
        crate::metrics::export::commit_latency(started.elapsed());
        answer
    }

    /// Records a write freeze (`Some`) or lifts it (`None`) in the Sequencer, durably;
    /// see `SetWriteFreeze`.
    pub fn set_write_freeze(
        &self,
        freeze: Option<WriteFreeze>,
    ) -> Result<CommitOutcome, CommitError> {
        let (reply, waiter) = aedb_sync::completion::completion();
        self.sequencer
            .ask(SetWriteFreeze { freeze, reply })
            .map_err(|_| self.closed())?;
        waiter.wait().unwrap_or(Err(CommitError::Closed))
    }

    /// The commit rate limiter (shared by every clone).
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    fn admit(
        &self,
        authority: &Authority,
        request: &Request,
        max_wait: Option<Duration>,
    ) -> Result<(), CommitError> {
        self.limiter
            .admit_blocking(request, authority.caller.as_ref(), max_wait)
            .inspect_err(|_| self.metrics.count_error(ErrorCause::RateLimited))
    }

    /// Puts `policy` in force for every commit sequenced from now on.
    pub fn install_policy(&self, policy: Arc<PolicySnapshot>) -> Result<(), CommitError> {
        self.sequencer
            .ask(InstallPolicy(policy))
            .map_err(|_| self.closed())
    }

    /// Offers `msg` without waiting: `Ok(None)` once it is queued, `Ok(Some(msg))` when
    /// the mailbox is full and `admission` waits for room, `Busy` when it does not.
    fn offer(&self, msg: Commit, admission: Admission) -> Result<Option<Commit>, CommitError> {
        match self.sequencer.try_ask(msg) {
            Ok(()) => Ok(None),
            Err(AskError::Full(msg)) if admission == Admission::Wait => Ok(Some(msg)),
            Err(AskError::Full(_)) => {
                self.metrics.count_error(ErrorCause::Busy);
                Err(CommitError::Busy)
            }
            Err(AskError::Closed) => Err(self.closed()),
        }
    }

    fn closed(&self) -> CommitError {
        self.metrics.count_error(ErrorCause::Closed);
        CommitError::Closed
    }
}
