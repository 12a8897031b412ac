//! The aedb data model and the single writer's in-memory state.
//!
//! This crate owns:
//! - the vocabulary: validated [names](name), [`Namespace`]s, KV [keys and
//!   values](kv), [numeric KV values](numeric), table [values](value),
//!   [schemas](schema) and [rows](row), and the order-preserving
//!   [primary-key encoding](key);
//! - [`Transaction`]s of [`Mutation`]s and [`Assertion`]s, [`Ddl`] statements,
//!   and [idempotency] keys and outcomes;
//! - [`State`], the persistent (structurally shared, cheap to clone) database
//!   state that the Sequencer owns: applying transactions atomically, reads,
//!   and replay of logged records;
//! - the binary codecs of [`CommitRecord`]s (the WAL frame payload) and of
//!   full-state [snapshots](snapshot) (the checkpoint payload).
//!
//! It does **not** own WAL framing, checksums, encryption, files, LSN
//! allocation, actors, or authorization: those live in `aedb-wal`,
//! `aedb-checkpoint`, `aedb-actors` and `aedb-authz`, which treat the bytes
//! produced here as opaque payloads.
//!
//! ```
//! use aedb_model::{
//!     ApplyError, Assertion, CommitRecord, Ddl, KvKey, Numeric, NumericType, ProjectName,
//!     Namespace, State, Transaction,
//! };
//! use aedb_types::Lsn;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ns = Namespace::parse("bank", "eu")?;
//! let mut state = State::new();
//! let mut log = Vec::new();
//! for (i, ddl) in [
//!     Ddl::CreateProject { project: ProjectName::new("bank")? },
//!     Ddl::CreateScope { ns: ns.clone() },
//! ].iter().enumerate() {
//!     let (next, record) = state.apply_ddl(ddl, Lsn::new(i as u64 + 1))?;
//!     state = next;
//!     log.push(record.to_bytes());
//! }
//!
//! // Credit alice, then try to overdraw her: the assertion rejects the whole commit.
//! let alice = KvKey::new("alice")?;
//! let credit = Transaction::new().kv_add(&ns, alice.clone(), Numeric::U64(100));
//! let (next, record) = state.apply(&credit, Lsn::new(3))?;
//! state = next;
//! log.push(record.to_bytes());
//!
//! let overdraw = Transaction::new()
//!     .assert(Assertion::KvNumericAtLeast { ns: ns.clone(), key: alice.clone(), min: Numeric::U64(500) })
//!     .kv_sub(&ns, alice.clone(), Numeric::U64(500));
//! assert!(matches!(state.apply(&overdraw, Lsn::new(4)), Err(ApplyError::AssertionFailed { index: 0, .. })));
//! assert_eq!(state.kv_get_numeric(&ns, b"alice", NumericType::U64)?, Numeric::U64(100));
//!
//! // Recovery: decoding and replaying the log rebuilds an equal state.
//! let mut recovered = State::new();
//! for (i, bytes) in log.iter().enumerate() {
//!     recovered.replay(&CommitRecord::decode(bytes)?, Lsn::new(i as u64 + 1))?;
//! }
//! assert_eq!(recovered, state);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod assertion;
mod bytes;
mod codec;
pub mod error;
mod evaluate;
mod fingerprint;
#[doc(hidden)]
pub mod fuzzing;
pub mod idempotency;
pub mod key;
mod keyspace;
pub mod kv;
pub mod limits;
pub mod mutation;
pub mod name;
pub mod numeric;
pub mod record;
pub mod row;
pub mod scan;
pub mod schema;
pub mod snapshot;
pub mod state;
pub mod transaction;
pub mod value;

pub use assertion::{Assertion, CompareOp, KvOperand, MAX_ASSERTION_DEPTH, Verdict};
pub use codec::{DecodeError, DecodeErrorKind, FieldError};
pub use error::{AlreadyExists, ApplyError, NotFound, OpError, ReadError, ReplayError, Unreadable};
pub use idempotency::{
    IdempotencyKey, IdempotencyRecord, IdempotencyRetention, Outcome, Rejection, RejectionKind,
    RequestFingerprint, RequestStamp, RetentionError,
};
pub use key::{EncodedKey, KeyError, KeyRange};
pub use kv::{KvEntry, KvKey, KvValue};
pub use limits::LimitError;
pub use mutation::{Ddl, Mutation};
pub use name::{ColumnName, NameError, NameKind, Namespace, ProjectName, ScopeName, TableName};
pub use numeric::{Numeric, NumericType, WrongWidth};
pub use record::{CommitRecord, Effect, OLDEST_RECORD_VERSION, RECORD_VERSION};
pub use row::Row;
pub use scan::{Direction, Page};
pub use schema::{ColumnDef, RowError, SchemaError, TableSchema};
pub use snapshot::SNAPSHOT_VERSION;
pub use state::{CommitContext, DroppedTableRows, IdempotencyExpiry, ModelExpiry, Staged, State};
pub use transaction::Transaction;
pub use value::{ColumnType, Timestamp, Value};
