//! Errors of applying transactions and DDL, of reads, and of replay.

use aedb_types::Lsn;

use crate::idempotency::{IdempotencyKey, IdempotencyRecord, Rejection, RejectionKind};
use crate::kv::KvKey;
use crate::name::{Namespace, ProjectName, TableName};
use crate::numeric::{NumericType, WrongWidth};
use crate::schema::RowError;

/// Stored data could not be read: a run file's block failed to read or authenticate,
/// or a stored entry does not decode. Nothing is ever returned in its place.
#[derive(Clone, Debug, thiserror::Error)]
#[error("stored data is unreadable: {message}")]
pub struct Unreadable {
    message: String,
    #[source]
    source: Option<std::sync::Arc<aedb_storage::StorageError>>,
}

impl Unreadable {
    pub(crate) fn message(message: &str) -> Unreadable {
        Unreadable {
            message: message.to_owned(),
            source: None,
        }
    }

    pub(crate) fn entry(what: &str, e: &crate::codec::DecodeError) -> Unreadable {
        Unreadable::message(&format!("a stored {what} does not decode: {e}"))
    }

    /// The storage failure behind it, if any.
    pub fn storage(&self) -> Option<&aedb_storage::StorageError> {
        self.source.as_deref()
    }
}

impl From<aedb_storage::StorageError> for Unreadable {
    fn from(e: aedb_storage::StorageError) -> Unreadable {
        Unreadable {
            message: e.to_string(),
            source: Some(std::sync::Arc::new(e)),
        }
    }
}

impl PartialEq for Unreadable {
    fn eq(&self, other: &Unreadable) -> bool {
        self.message == other.message
    }
}

impl Eq for Unreadable {}

/// A project, scope or table that an operation needs does not exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotFound {
    /// No such project; create it with `Ddl::CreateProject` first.
    #[error("project `{0}` does not exist")]
    Project(ProjectName),
    /// No such scope in an existing project; create it with `Ddl::CreateScope`.
    #[error("scope `{0}` does not exist")]
    Scope(Namespace),
    /// No such table; create it with `Ddl::CreateTable`.
    #[error("table `{table}` does not exist in `{ns}`")]
    Table {
        /// The namespace searched.
        ns: Namespace,
        /// The missing table.
        table: TableName,
    },
}

/// A DDL statement would create something that already exists.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AlreadyExists {
    /// The project exists.
    #[error("project `{0}` already exists")]
    Project(ProjectName),
    /// The scope exists.
    #[error("scope `{0}` already exists")]
    Scope(Namespace),
    /// The table exists.
    #[error("table `{table}` already exists in `{ns}`")]
    Table {
        /// The namespace.
        ns: Namespace,
        /// The existing table.
        table: TableName,
    },
}

/// Why one mutation, assertion, DDL statement or replayed effect cannot apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The namespace or table does not exist.
    #[error(transparent)]
    NotFound(#[from] NotFound),
    /// DDL target exists.
    #[error(transparent)]
    AlreadyExists(#[from] AlreadyExists),
    /// A numeric add/sub would exceed the type's maximum.
    #[error("{ty} overflow at key `{key}` in `{ns}`")]
    Overflow {
        /// Namespace.
        ns: Namespace,
        /// The key.
        key: KvKey,
        /// The numeric type.
        ty: NumericType,
    },
    /// A numeric add/sub would go below the type's minimum.
    #[error("{ty} underflow at key `{key}` in `{ns}`")]
    Underflow {
        /// Namespace.
        ns: Namespace,
        /// The key.
        key: KvKey,
        /// The numeric type.
        ty: NumericType,
    },
    /// A numeric operation found a stored value of the wrong width.
    #[error("key `{key}` in `{ns}`: {source}")]
    WrongNumericWidth {
        /// Namespace.
        ns: Namespace,
        /// The key.
        key: KvKey,
        /// Expected and actual width.
        #[source]
        source: WrongWidth,
    },
    /// An insert hit an existing primary key (use upsert to replace).
    #[error("table `{table}` in `{ns}` already has a row with primary key {key}")]
    DuplicatePrimaryKey {
        /// Namespace.
        ns: Namespace,
        /// Table.
        table: TableName,
        /// The key, rendered for humans.
        key: String,
    },
    /// An update named a row that does not exist (use upsert to create).
    #[error("table `{table}` in `{ns}` has no row with primary key {key}")]
    RowNotFound {
        /// Namespace.
        ns: Namespace,
        /// Table.
        table: TableName,
        /// The key, rendered for humans.
        key: String,
    },
    /// A row, key or update does not fit the table schema.
    #[error("table `{table}` in `{ns}`: {source}")]
    Row {
        /// Namespace.
        ns: Namespace,
        /// Table.
        table: TableName,
        /// The violation, naming the column.
        #[source]
        source: RowError,
    },
    /// Assertion combinators nest deeper than [`crate::MAX_ASSERTION_DEPTH`].
    #[error("assertion nests deeper than {max} levels")]
    AssertionTooDeep {
        /// The limit.
        max: usize,
    },
    /// Stored data could not be read.
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
}

impl OpError {
    /// The rejection class recorded for this error.
    pub fn rejection_kind(&self) -> RejectionKind {
        match self {
            OpError::NotFound(_) | OpError::RowNotFound { .. } => RejectionKind::NotFound,
            OpError::AlreadyExists(_) => RejectionKind::AlreadyExists,
            OpError::Overflow { .. } => RejectionKind::Overflow,
            OpError::Underflow { .. } => RejectionKind::Underflow,
            OpError::WrongNumericWidth { .. } => RejectionKind::WrongNumericWidth,
            OpError::DuplicatePrimaryKey { .. } => RejectionKind::DuplicatePrimaryKey,
            OpError::Row { .. } => RejectionKind::SchemaViolation,
            OpError::AssertionTooDeep { .. } => RejectionKind::InvalidAssertion,
            // Never recorded: staging turns it into `ApplyError::Unreadable`, which is
            // not an outcome of the transaction.
            OpError::Unreadable(_) => RejectionKind::NotFound,
        }
    }
}

/// Why a transaction or DDL statement was not applied. Nothing was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The caller passed an LSN that does not follow the state's (a sequencer bug).
    #[error("lsn {given} does not follow the state's lsn {current}")]
    LsnNotIncreasing {
        /// The state's LSN.
        current: Lsn,
        /// The LSN passed in.
        given: Lsn,
    },
    /// The idempotency key was used before: the transaction was not applied
    /// again, and `original` is the first commit's outcome to return to the caller.
    #[error("idempotency key `{key}` was already used: {original}")]
    AlreadySeen {
        /// The key.
        key: IdempotencyKey,
        /// The original outcome.
        original: IdempotencyRecord,
    },
    /// The idempotency key was used, inside its retention window, by a *different*
    /// request (another fingerprint): this one was refused and nothing was applied.
    /// Use a new key for a new request.
    #[error(
        "idempotency key `{key}` was already used at lsn {original_lsn} by a different request"
    )]
    IdempotencyMismatch {
        /// The key.
        key: IdempotencyKey,
        /// The LSN of the original request's record.
        original_lsn: Lsn,
    },
    /// The top-level assertion at `index` did not hold.
    #[error("assertion {index} failed: {detail}")]
    AssertionFailed {
        /// Index into the transaction's assertions.
        index: u32,
        /// What was actually found.
        detail: String,
    },
    /// The top-level assertion at `index` could not be evaluated.
    #[error("assertion {index} is invalid: {source}")]
    InvalidAssertion {
        /// Index into the transaction's assertions.
        index: u32,
        /// Why.
        #[source]
        source: OpError,
    },
    /// The mutation at `index` could not be applied.
    #[error("mutation {index}: {source}")]
    Mutation {
        /// Index into the transaction's mutations.
        index: u32,
        /// Why.
        #[source]
        source: OpError,
    },
    /// The DDL statement could not be applied.
    #[error("ddl: {0}")]
    Ddl(#[source] OpError),
    /// Stored data the transaction reads could not be read; nothing was applied.
    #[error(transparent)]
    Unreadable(Unreadable),
}

impl ApplyError {
    /// The durable description of this rejection, for logging with the
    /// transaction's idempotency key; `None` for errors that are not outcomes of
    /// the transaction (`LsnNotIncreasing`, `AlreadySeen`, `IdempotencyMismatch`, DDL
    /// errors).
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            ApplyError::AssertionFailed { index, .. } => {
                Some(Rejection::AssertionFailed { index: *index })
            }
            ApplyError::InvalidAssertion { .. } => Some(Rejection::failed(
                RejectionKind::InvalidAssertion,
                &self.to_string(),
            )),
            ApplyError::Mutation { source, .. } => Some(Rejection::failed(
                source.rejection_kind(),
                &self.to_string(),
            )),
            ApplyError::LsnNotIncreasing { .. }
            | ApplyError::AlreadySeen { .. }
            | ApplyError::IdempotencyMismatch { .. }
            | ApplyError::Ddl(_)
            | ApplyError::Unreadable(_) => None,
        }
    }

    pub(crate) fn from_read(e: ReadError) -> ApplyError {
        match e {
            ReadError::Unreadable(u) => ApplyError::Unreadable(u),
            other => ApplyError::Unreadable(Unreadable::message(&other.to_string())),
        }
    }

    /// Whether this is a retry of an idempotency key that was seen before.
    pub fn is_already_seen(&self) -> bool {
        matches!(self, ApplyError::AlreadySeen { .. })
    }
}

/// Why a read failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The namespace or table does not exist.
    #[error(transparent)]
    NotFound(#[from] NotFound),
    /// The key or range does not fit the table schema.
    #[error("table `{table}`: {source}")]
    Row {
        /// Table.
        table: TableName,
        /// The violation.
        #[source]
        source: RowError,
    },
    /// A numeric read found a value of the wrong width.
    #[error("key `{key}`: {source}")]
    WrongNumericWidth {
        /// The key.
        key: KvKey,
        /// Expected and actual width.
        #[source]
        source: WrongWidth,
    },
    /// A read as of an LSN older than the retention window keeps: compaction dropped
    /// versions it would need.
    #[error("lsn {requested} is older than the oldest readable lsn {oldest}")]
    TooOld {
        /// The LSN asked for.
        requested: Lsn,
        /// The oldest LSN still readable.
        oldest: Lsn,
    },
    /// A read as of an LSN after the snapshot's own.
    #[error("lsn {requested} is after the snapshot's lsn {current}")]
    FutureLsn {
        /// The LSN asked for.
        requested: Lsn,
        /// The snapshot's LSN.
        current: Lsn,
    },
    /// Stored data could not be read.
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
}

impl ReadError {
    /// The read-side form of an error met while looking something up.
    pub(crate) fn from_op(e: OpError) -> ReadError {
        match e {
            OpError::NotFound(n) => ReadError::NotFound(n),
            OpError::Unreadable(u) => ReadError::Unreadable(u),
            OpError::Row { table, source, .. } => ReadError::Row { table, source },
            OpError::WrongNumericWidth { key, source, .. } => {
                ReadError::WrongNumericWidth { key, source }
            }
            other => ReadError::Unreadable(Unreadable::message(&other.to_string())),
        }
    }
}

/// A decoded commit record does not apply to the state: the log and the state
/// have diverged (corruption or a bug). Recovery must stop.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The record's LSN is not after the state's (frames replayed twice or out of order).
    #[error("replayed lsn {given} does not follow the state's lsn {current}")]
    LsnNotIncreasing {
        /// The state's LSN.
        current: Lsn,
        /// The record's LSN.
        given: Lsn,
    },
    /// An effect names something missing or does not fit a schema.
    #[error("effect {index}: {source}")]
    Effect {
        /// Index of the effect in the record.
        index: u32,
        /// Why.
        #[source]
        source: OpError,
    },
    /// An effect deletes a KV key that does not exist.
    #[error("effect {index} deletes missing key `{key}` in `{ns}`")]
    DeleteOfMissingKey {
        /// Index of the effect.
        index: u32,
        /// Namespace.
        ns: Namespace,
        /// Key.
        key: KvKey,
    },
    /// An effect deletes a row that does not exist.
    #[error("effect {index} deletes a missing row of `{table}` in `{ns}`")]
    DeleteOfMissingRow {
        /// Index of the effect.
        index: u32,
        /// Namespace.
        ns: Namespace,
        /// Table.
        table: TableName,
    },
    /// A DDL record does not apply.
    #[error("ddl: {0}")]
    Ddl(#[source] OpError),
    /// A record stores an outcome for an idempotency key that already has one.
    #[error("idempotency key `{key}` already has an outcome")]
    IdempotencyKeyReused {
        /// The key.
        key: IdempotencyKey,
    },
    /// Stored data the record touches could not be read.
    #[error(transparent)]
    Unreadable(#[from] Unreadable),
}
