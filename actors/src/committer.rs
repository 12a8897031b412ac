//! The caller side of the commit path: [`Committer`] puts a commit into the
//! Sequencer's bounded mailbox (waiting for room or failing fast, per [`Admission`]) and
//! waits on the commit's completion.

use std::sync::Arc;
#[cfg(feature = "observability")]
use std::time::Instant;

use aedb_sync::completion::completion;

use crate::actor::{AskError, OwnerRef};
use crate::commit::{CommitOutcome, Finality, Request};
use crate::error::CommitError;
use crate::metrics::{EngineMetrics, ErrorCause};
use crate::sequencer::{Commit, Sequencer};

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
        match self.sequencer.try_ask(msg) {
            Ok(()) => {}
            Err(AskError::Full(msg)) if admission == Admission::Wait => {
                // Waits for room (backpressure); the reply comes through the completer.
                self.sequencer.ask(msg).map_err(|_| self.closed())?;
            }
            Err(AskError::Full(_)) => {
                self.metrics.count_error(ErrorCause::Busy);
                return Err(CommitError::Busy);
            }
            Err(AskError::Closed) => return Err(self.closed()),
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
        match self.sequencer.try_ask(msg) {
            Ok(()) => {}
            Err(AskError::Full(msg)) => {
                self.sequencer
                    .ask_async(msg)
                    .await
                    .map_err(|_| self.closed())?;
            }
            Err(AskError::Closed) => return Err(self.closed()),
        }
        let answer = waiter.await.unwrap_or(Err(CommitError::Closed));
        #[cfg(feature = "observability")]
        crate::metrics::export::commit_latency(started.elapsed());
        answer
    }

    fn closed(&self) -> CommitError {
        self.metrics.count_error(ErrorCause::Closed);
        CommitError::Closed
    }
}
