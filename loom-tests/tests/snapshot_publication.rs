//! loom model of snapshot publication: two publishers race, readers never go backwards.
#![cfg(loom)]

use aedb_sync::snapshot_cell::SnapshotCell;
use loom::sync::Arc;
use loom::thread;

#[test]
fn readers_observe_monotonic_versions_and_the_newest_wins() {
    loom::model(|| {
        let cell = Arc::new(SnapshotCell::new(0, Arc::new(0u64)));
        let publishers: Vec<_> = [2u64, 1]
            .into_iter()
            .map(|v| {
                let cell = cell.clone();
                thread::spawn(move || {
                    cell.publish(v, Arc::new(v * 10));
                })
            })
            .collect();
        let reader = {
            let cell = cell.clone();
            thread::spawn(move || {
                let (v1, s1) = cell.load();
                let (v2, s2) = cell.load();
                assert!(v2 >= v1, "a reader saw the version go backwards");
                // The snapshot always matches its version.
                assert_eq!(*s1, v1 * 10);
                assert_eq!(*s2, v2 * 10);
            })
        };
        for p in publishers {
            p.join().unwrap();
        }
        reader.join().unwrap();
        let (v, s) = cell.load();
        assert_eq!((v, *s), (2, 20));
    });
}

/// A refresh (the Sequencer re-pointing the published snapshot at new sources after a
/// flush) races a publication: the version never goes backwards, a refresh never
/// replaces a newer publication with older content, and the newest publication wins.
#[test]
fn a_refresh_racing_a_publication_never_goes_backwards() {
    loom::model(|| {
        // Content = version * 10, + 1 once refreshed (same data, new sources).
        let cell = Arc::new(SnapshotCell::new(1, Arc::new(10u64)));
        let publisher = {
            let cell = cell.clone();
            thread::spawn(move || {
                cell.publish(2, Arc::new(20));
            })
        };
        let refresher = {
            let cell = cell.clone();
            thread::spawn(move || {
                // Refreshes only what is at or below the refresher's own position (1),
                // as `Sequencer::install_runs` does with its LSN.
                cell.refresh(|cur| (*cur / 10 <= 1).then(|| Arc::new(*cur + 1)));
            })
        };
        let reader = {
            let cell = cell.clone();
            thread::spawn(move || {
                let (v1, s1) = cell.load();
                let (v2, s2) = cell.load();
                assert!(v2 >= v1, "a reader saw the version go backwards");
                assert_eq!(*s1 / 10, v1, "content and version disagree");
                assert_eq!(*s2 / 10, v2, "content and version disagree");
            })
        };
        publisher.join().unwrap();
        refresher.join().unwrap();
        reader.join().unwrap();
        let (v, s) = cell.load();
        assert_eq!(v, 2);
        assert_eq!(*s, 20, "the newest publication wins over a refresh");
    });
}

/// The completion slot: a value completed on one thread is seen exactly once by the
/// waiter, and a dropped completer cancels instead of hanging.
#[test]
fn completion_hand_off_never_loses_or_hangs() {
    use aedb_sync::completion::{Canceled, completion};
    loom::model(|| {
        let (c, w) = completion::<u8>();
        let t = thread::spawn(move || c.complete(1));
        assert_eq!(w.wait(), Ok(1));
        t.join().unwrap();

        let (c, w) = completion::<u8>();
        let t = thread::spawn(move || drop(c));
        assert_eq!(w.wait(), Err(Canceled));
        t.join().unwrap();
    });
}
