//! The commit protocol's vocabulary, shared by the caller side (the committer), the
//! Sequencer and the WAL writer: what a commit asks for, when it is acknowledged, and
//! what it answers.

use std::sync::Arc;

use aedb_authz::{CallerId, PolicySnapshot};
use aedb_model::{Ddl, Transaction};
use aedb_sync::Completer;
use aedb_types::Lsn;

use crate::error::CommitError;

/// When a commit is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Finality {
    /// Acknowledged after the commit's WAL batch is `fdatasync`ed; visible no earlier.
    #[default]
    Durable,
    /// Acknowledged (and visible) right after apply; made durable within the
    /// configured flush interval. A crash inside that window loses it.
    Visible,
}

/// A successful commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The commit's LSN (for an idempotent retry: the original commit's LSN).
    pub lsn: Lsn,
    /// True when this was a retry answered from the idempotency table, applying nothing.
    pub idempotent_replay: bool,
}

/// What a commit asks the sequencer to apply.
#[derive(Clone, Debug)]
pub enum Request {
    /// A transaction: mutations plus assertions.
    Transaction(Transaction),
    /// A DDL statement.
    Ddl(Ddl),
}

/// A commit's answer.
pub type Answer = Result<CommitOutcome, CommitError>;
/// Where a commit's answer goes.
pub type Reply = Completer<Answer>;

/// Who a commit runs for, and what it changes in the access policy (secure instances).
///
/// The Sequencer checks the caller's rights against the policy in force **at
/// sequencing** (the one installed by the newest policy commit sequenced before it), so
/// once a revoke has been sequenced no later commit of the revoked caller applies,
/// however long it waited in the mailbox.
#[derive(Clone, Debug, Default)]
pub struct Authority {
    /// The caller whose rights the Sequencer checks; `None` for the engine's own commits
    /// (audit rows, persisted policy) and on open instances.
    pub caller: Option<CallerId>,
    /// The policy this commit persists (the Authz actor's commits only): in force for
    /// every commit sequenced after it, once it applies.
    pub installs: Option<Arc<PolicySnapshot>>,
    /// The engine's own commit (audit rows, persisted policy, system tables): it goes
    /// through while writes are frozen and is never rate limited, so a frozen instance
    /// can still audit, change its policy and be unfrozen.
    pub engine: bool,
}

impl Authority {
    /// A commit on behalf of `caller`.
    pub fn caller(caller: CallerId) -> Authority {
        Authority {
            caller: Some(caller),
            installs: None,
            engine: false,
        }
    }

    /// The engine's own commit (audit rows, system tables, session revocations).
    pub fn engine() -> Authority {
        Authority {
            caller: None,
            installs: None,
            engine: true,
        }
    }

    /// The engine's commit persisting `policy`.
    pub fn installing(policy: Arc<PolicySnapshot>) -> Authority {
        Authority {
            caller: None,
            installs: Some(policy),
            engine: true,
        }
    }
}
