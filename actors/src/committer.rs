//! The caller side of the commit path: [`Committer`] puts a commit into the
//! Sequencer's bounded mailbox (waiting for room or failing fast, per [`Admission`]) and
//! waits on the commit's completion.

use std::sync::Arc;
#[cfg(feature = "observability")]
use std::time::Instant;

use crate::actor::{AskError, OwnerRef};
use aedb_authz::PolicySnapshot;

use crate::commit::{Authority, CommitOutcome, Finality, Request};
use crate::error::CommitError;
use crate::metrics::{EngineMetrics, ErrorCause};
use crate::sequencer::{Commit, InstallPolicy, Sequencer};

/// Whether a full sequencer mailbox makes the caller wait or fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Wait for room (backpressure).
    Wait,
    /// Fail with [`CommitError::Busy`].
    FailFast,
}

/// Submits commits to the Sequencer: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Committer {
    pub(crate) sequencer: OwnerRef<Sequencer>,
    pub(crate) metrics: Arc<EngineMetrics>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").finish_non_exhaustive()
    }
}

impl Committer {
    /// Sequences `request` (the engine's own, or an open instance's) and waits for its
    /// finality.
    pub fn commit(
        &self,
        request: Request,
        finality: Finality,
        admission: Admission,
    ) -> Result<CommitOutcome, CommitError> {
        self.submit(Authority::default(), request, finality, admission)
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
        #[cfg(feature = "observability")]
        let started = Instant::now();
        let (msg, waiter) = Commit::new(request, finality, authority);
        if let Some(msg) = self.offer(msg, admission)? {
            // Waits for room (backpressure); the reply comes through the completer.
            self.sequencer.ask(msg).map_err(|_| self.closed())?;
        }
        let answer = waiter.wait().unwrap_or(Err(CommitError::Closed));
        #[cfg(feature = "observability")]
        crate::metrics::export::commit_latency(started.elapsed());
        answer
    }

    /// Async form of [`Committer::submit`]: awaits admission and finality without
    /// blocking the executor thread.
    pub async fn submit_async(
        &self,
        authority: Authority,
        request: Request,
        finality: Finality,
    ) -> Result<CommitOutcome, CommitError> {
        #[cfg(feature = "observability")]
        let started = Instant::now();
        let (msg, waiter) = Commit::new(request, finality, authority);
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
