//! The commit protocol's vocabulary, shared by the caller side (the committer), the
//! Sequencer and the WAL writer: what a commit asks for, when it is acknowledged, and
//! what it answers.

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
