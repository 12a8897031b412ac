//! loom model of the memtable's key filter under snapshot publication: the single
//! writer sets a key's bits (relaxed) and then publishes a snapshot holding the key; a
//! reader that loads that snapshot (or a newer one) must find every one of its keys'
//! bits, whatever the interleaving.
#![cfg(loom)]

use aedb_sync::published_filter::PublishedFilter;
use aedb_sync::snapshot_cell::SnapshotCell;
use loom::sync::Arc;
use loom::thread;

/// Two keys' hashes that land in the same block (the filter is one block): their bits
/// share words, so the model also races `fetch_or`s on one word.
const KEYS: [u64; 2] = [0x0000_0001_0000_0000, 0x0000_0043_0000_0000];

#[test]
fn a_published_key_is_never_reported_absent() {
    loom::model(|| {
        let filter = Arc::new(PublishedFilter::for_entries(1, 1));
        // The snapshot is "how many of KEYS it holds".
        let cell = Arc::new(SnapshotCell::new(0, Arc::new(0usize)));
        let writer = {
            let (filter, cell) = (filter.clone(), cell.clone());
            thread::spawn(move || {
                for (i, &hash) in KEYS.iter().enumerate() {
                    filter.insert(hash);
                    cell.publish(i as u64 + 1, Arc::new(i + 1));
                }
            })
        };
        let reader = {
            let (filter, cell) = (filter.clone(), cell.clone());
            thread::spawn(move || {
                let held = cell.with(|held| *held);
                for &hash in &KEYS[..held] {
                    assert!(filter.may_contain(hash), "a published key was hidden");
                }
            })
        };
        writer.join().unwrap();
        reader.join().unwrap();
        assert!(KEYS.iter().all(|&h| filter.may_contain(h)));
    });
}
