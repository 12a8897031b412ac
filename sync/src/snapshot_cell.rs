//! Monotonic publication of immutable snapshots.
//!
//! Writers (the WAL writer after a durable batch, the sequencer for `Visible` commits)
//! call [`SnapshotCell::publish`] with a version (the snapshot's LSN); a publication
//! older than what readers can already see is ignored, so readers observe versions
//! that never go backwards even when two publishers race. Publishers (and
//! [`SnapshotCell::refresh`]) serialise on a mutex that readers never touch; the
//! published `(version, snapshot)` pair sits in one slot that a reader loads whole, on
//! its own thread: [`SnapshotCell::with`] borrows it without writing to any shared
//! cache line (the slot is `arc-swap` in normal builds), [`SnapshotCell::load`] also
//! clones the snapshot's `Arc` to keep it. Never a wait on the writer's work.

use crate::shim::{Arc, Mutex, Slot, lock};

/// One publication: the snapshot and its version, swapped as a unit.
struct Published<T> {
    version: u64,
    snapshot: Arc<T>,
}

/// A published, versioned, shared snapshot.
pub struct SnapshotCell<T> {
    /// Serialises publishers: the version check and the store are one step.
    publishers: Mutex<()>,
    current: Slot<Published<T>>,
}

impl<T> SnapshotCell<T> {
    /// A cell holding `initial` at `version`.
    pub fn new(version: u64, initial: Arc<T>) -> Self {
        SnapshotCell {
            publishers: Mutex::new(()),
            current: Slot::new(Arc::new(Published {
                version,
                snapshot: initial,
            })),
        }
    }

    /// Publishes `snapshot` if `version` is newer than the current one; returns whether
    /// it was published.
    pub fn publish(&self, version: u64, snapshot: Arc<T>) -> bool {
        let _publishing = lock(&self.publishers);
        if version > self.version() {
            self.current
                .store(Arc::new(Published { version, snapshot }));
            true
        } else {
            false
        }
    }

    /// Replaces the newest snapshot with `f(current)` at the same version, when `f`
    /// returns one: the writer re-points a published snapshot at new sources holding the
    /// same data (a flushed memtable's run), so readers stop pinning the old ones.
    pub fn refresh(&self, f: impl FnOnce(&T) -> Option<Arc<T>>) {
        let _publishing = lock(&self.publishers);
        let (version, current) = self.load();
        if let Some(snapshot) = f(&current) {
            self.current
                .store(Arc::new(Published { version, snapshot }));
        }
    }

    /// The newest published snapshot and its version.
    pub fn load(&self) -> (u64, Arc<T>) {
        self.current.with(|p| (p.version, p.snapshot.clone()))
    }

    /// Runs `f` on the newest published snapshot, borrowed: no reference count is
    /// taken, so concurrent readers share no written memory.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        self.current.with(|p| f(&p.snapshot))
    }

    /// The newest published version.
    pub fn version(&self) -> u64 {
        self.current.with(|p| p.version)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn older_publications_are_ignored() {
        let cell = SnapshotCell::new(0, Arc::new("empty"));
        assert!(cell.publish(5, Arc::new("five")));
        assert!(!cell.publish(3, Arc::new("three")));
        assert!(!cell.publish(5, Arc::new("five again")));
        let (v, s) = cell.load();
        assert_eq!((v, *s), (5, "five"));
        cell.refresh(|_| None);
        assert_eq!(*cell.load().1, "five");
        cell.refresh(|cur| Some(Arc::new(if *cur == "five" { "FIVE" } else { "?" })));
        assert_eq!(cell.load(), (5, Arc::new("FIVE")));
        assert_eq!(cell.with(|s| s.len()), 4);
    }
}
