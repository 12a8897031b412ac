//! aedb storage: the LSM's in-memory half and its read and compaction logic.
//!
//! This crate owns:
//!
//! * **Memtables** ([`Memtable`]): recent writes, ordered by key and then newest
//!   version first (every version carries the LSN that wrote it), in a lock-free skip
//!   list the single writer inserts into while readers read. A snapshot is a
//!   [`View`]: the memtables and the [`Version`] (live runs, level by level) it was
//!   taken on, plus its LSN — a few `Arc`s, never a copy of the data. A full memtable
//!   is freed on one process-wide thread, `aedb-reclaim`, not on whichever owner drops
//!   it last.
//! * **Reads**: point lookups (memtables, then level 0 newest first, then one run per
//!   deeper level, each run behind its bloom filter and block index) and scans as
//!   lazy merging iterators ([`Scan`]) with bounds and direction, through one shared,
//!   bounded [`BlockCache`] of authenticated, decoded blocks.
//! * **Flush** ([`flush::flush`]) of a frozen memtable into a level-0 run, and
//!   **compaction** ([`compaction`]): the leveled policy and the merge that drops
//!   versions no snapshot in the retention window needs and tombstones at the bottom.
//!
//! It does **not** own: the run file format, its sealing and its I/O
//! (`aedb-checkpoint`'s `RunWriter`/`RunFile`), the manifest that records versions
//! (`aedb-manifest`), deciding when to flush or compact, or deleting files — the
//! Sequencer, CheckpointSealer and Compactor actors in `aedb-actors` do that — or what
//! keys mean (the data model in `aedb-model` maps tables, KV spaces and idempotency
//! records onto this one sorted key space).
//!
//! ```
//! use std::ops::Bound;
//! use std::sync::Arc;
//! use aedb_storage::{Direction, EntryKind, Memtable, Version, View};
//! use aedb_types::Lsn;
//!
//! let mem = Arc::new(Memtable::new(0));
//! mem.insert(b"alice", Lsn::new(1), EntryKind::Put, b"100");
//! mem.insert(b"bob", Lsn::new(2), EntryKind::Put, b"5");
//! mem.insert(b"alice", Lsn::new(3), EntryKind::Delete, b"");
//!
//! // A view reads as of its LSN: alice is still there at LSN 2, gone at LSN 3.
//! let at2 = View::new(vec![mem.clone()], Arc::new(Version::empty()), Lsn::new(2));
//! assert_eq!(at2.get(b"alice")?, Some((Lsn::new(1), b"100".to_vec())));
//! let now = at2.at(Lsn::new(3));
//! assert_eq!(now.get(b"alice")?, None);
//!
//! // Scans are lazy iterators with bounds and a direction.
//! let keys: Vec<Vec<u8>> = now
//!     .scan(Bound::Unbounded, Bound::Unbounded, Direction::Reverse)?
//!     .map(|item| item.map(|i| i.key))
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(keys, vec![b"bob".to_vec()]);
//! # Ok::<(), aedb_storage::StorageError>(())
//! ```
#![forbid(unsafe_code)]

mod cache;
pub mod compaction;
mod error;
pub mod flush;
mod memtable;
mod merge;
mod reclaim;
mod run;
mod version;
mod view;

pub use aedb_checkpoint::EntryKind;
pub use cache::{BlockCache, CacheFill, CacheStats, TablePlacement};
pub use error::StorageError;
pub use memtable::{ENTRY_OVERHEAD, Memtable, Versioned};
pub use merge::{Direction, EntryRef, Merged, Scan, ScanItem};
pub use run::Run;
pub use version::{Edit, LEVELS, Version};
pub use view::View;
