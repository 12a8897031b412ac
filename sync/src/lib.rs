//! The hand-written concurrency protocols of aedb's commit path.
//!
//! This crate owns six small protocols and nothing else:
//!
//! - [`completion`]: a one-shot hand-off of a commit's outcome from the thread that
//!   decides it (the sequencer, or the WAL writer after `fdatasync`) to the waiting
//!   caller, usable blocking ([`Waiter::wait`]) or as a `Future`;
//! - [`mailbox`]: the bounded mailbox that feeds a dedicated I/O thread
//!   (a bounded `crossbeam-channel` in normal builds);
//! - [`group_commit`]: the writer loop that drains every queued submission, writes
//!   the batch once, syncs once, publishes, then acknowledges each submission, and
//!   fail-stops on the first I/O error;
//! - [`snapshot_cell`]: monotonic publication of immutable snapshots to readers;
//! - [`published_filter`]: the memtable's key filter, filled by the single writer
//!   while readers query it, made visible by snapshot publication;
//! - [`pin_budget`]: the bytes of run-table partitions readers pin against the block
//!   cache's limit, reserved and given back without a lock.
//!
//! It owns no files and knows nothing about WAL formats or the data model: the log is
//! behind the [`group_commit::LogSink`] trait. Every primitive here is written against
//! the `cfg(loom)` shims in `shim`, so `loom-tests/` model-checks exactly this code
//! (`RUSTFLAGS="--cfg loom" cargo test -p aedb-loom-tests --release`). One shim is a
//! library in normal builds: the snapshot cell's slot is `arc-swap` (readers borrow the
//! published snapshot without writing shared memory), modelled under loom as a
//! read-write lock with the same guarantee, so the models check the publication
//! protocol around it, not arc-swap itself.
//!
//! ```
//! use aedb_sync::completion::completion;
//! let (completer, waiter) = completion::<u32>();
//! std::thread::spawn(move || completer.complete(7));
//! assert_eq!(waiter.wait(), Ok(7));
//! ```
#![forbid(unsafe_code)]

pub mod completion;
pub mod group_commit;
pub mod mailbox;
pub mod pin_budget;
pub mod published_filter;
mod shim;
pub mod snapshot_cell;

pub use completion::{Canceled, Completer, Waiter};
pub use snapshot_cell::SnapshotCell;
