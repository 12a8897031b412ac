//! Monotonic publication of immutable snapshots.
//!
//! Writers (the WAL writer after a durable batch, the sequencer for `Visible` commits)
//! call [`SnapshotCell::publish`] with a version (the snapshot's LSN); a publication
//! older than what readers can already see is ignored, so readers observe versions
//! that never go backwards even when two publishers race. Readers call
//! [`SnapshotCell::load`] on their own thread: a short read lock and an `Arc` clone,
//! never a wait on the writer's work.

use crate::shim::{Arc, RwLock};

/// A published, versioned, shared snapshot.
pub struct SnapshotCell<T> {
    current: RwLock<(u64, Arc<T>)>,
}

impl<T> SnapshotCell<T> {
    /// A cell holding `initial` at `version`.
    pub fn new(version: u64, initial: Arc<T>) -> Self {
        SnapshotCell {
            current: RwLock::new((version, initial)),
        }
    }

    /// Publishes `snapshot` if `version` is newer than the current one; returns whether
    /// it was published.
    pub fn publish(&self, version: u64, snapshot: Arc<T>) -> bool {
        let mut cur = self.current.write();
        if version > cur.0 {
            *cur = (version, snapshot);
            true
        } else {
            false
        }
    }

    /// Replaces the newest snapshot with `f(current)` at the same version, when `f`
    /// returns one: the writer re-points a published snapshot at new sources holding the
    /// same data (a flushed memtable's run), so readers stop pinning the old ones.
    pub fn refresh(&self, f: impl FnOnce(&T) -> Option<Arc<T>>) {
        let mut cur = self.current.write();
        if let Some(next) = f(&cur.1) {
            cur.1 = next;
        }
    }

    /// The newest published snapshot and its version.
    pub fn load(&self) -> (u64, Arc<T>) {
        let cur = self.current.read();
        (cur.0, cur.1.clone())
    }

    /// The newest published version.
    pub fn version(&self) -> u64 {
        self.current.read().0
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
    }
}
