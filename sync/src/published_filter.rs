//! A bloom filter one writer fills while any number of readers query it.
//!
//! The memtable's key filter: the single writer sets a key's bits before it inserts the
//! key's entry and before it publishes the snapshot that contains the entry; a reader
//! queries it only through a snapshot it loaded. The bits are plain relaxed atomic
//! words: the publication (a release in [`SnapshotCell::publish`], an acquire in its
//! loads) is what makes every bit set before a snapshot visible to the readers of that
//! snapshot, so a key a snapshot holds is never reported absent. A reader racing the
//! writer may see some of a newer key's bits, which only means a false positive.
//! `loom-tests/tests/published_filter.rs` model-checks exactly this.
//!
//! Blocked: all of a key's probes fall in one 64-byte block (8 words), so a query
//! costs one cache miss, not one per probe.
//!
//! [`SnapshotCell::publish`]: crate::snapshot_cell::SnapshotCell::publish
//!
//! ```
//! use aedb_sync::published_filter::PublishedFilter;
//! let filter = PublishedFilter::for_entries(1_000, 12);
//! filter.insert(0x1234_5678_9abc_def0);
//! assert!(filter.may_contain(0x1234_5678_9abc_def0));
//! ```

use crate::shim::{AtomicU64, Ordering};

/// Probes per key (about 1 % false positives at 12 bits per entry).
const PROBES: u64 = 3;
/// Words per block: one 64-byte cache line.
const BLOCK_WORDS: usize = 8;

/// A single-writer, concurrently read, blocked bloom filter over 64-bit key hashes;
/// see the module docs.
pub struct PublishedFilter {
    words: Box<[AtomicU64]>,
}

impl std::fmt::Debug for PublishedFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedFilter")
            .field("words", &self.words.len())
            .finish()
    }
}

impl PublishedFilter {
    /// A filter sized for `entries` keys at `bits_per_entry` bits each (a power of two
    /// of words, at least one block). Beyond `entries` it stays correct, with more
    /// false positives.
    pub fn for_entries(entries: usize, bits_per_entry: usize) -> PublishedFilter {
        let words = entries
            .max(1)
            .saturating_mul(bits_per_entry.max(1))
            .div_ceil(64)
            .next_power_of_two()
            .max(BLOCK_WORDS);
        PublishedFilter {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// The bit positions of a key hash's probes: a block from the hash's low bits, then
    /// nine bits of the hash per probe inside it.
    fn probes(&self, hash: u64) -> impl Iterator<Item = (usize, u64)> {
        let blocks = (self.words.len() / BLOCK_WORDS) as u64;
        let block = (hash & (blocks - 1)) as usize * BLOCK_WORDS;
        let bits = hash.rotate_right(32);
        (0..PROBES).map(move |i| {
            let bit = (bits >> (9 * i)) & 511;
            (block + (bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    /// Sets a key hash's bits. Only the single writer calls this, before it publishes
    /// the snapshot that holds the key.
    pub fn insert(&self, hash: u64) {
        for (word, mask) in self.probes(hash) {
            self.words[word].fetch_or(mask, Ordering::Relaxed);
        }
    }

    /// `false`: no key with this hash was inserted before the snapshot the caller
    /// loaded was published. `true`: one may have been.
    pub fn may_contain(&self, hash: u64) -> bool {
        self.probes(hash)
            .all(|(word, mask)| self.words[word].load(Ordering::Relaxed) & mask != 0)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn mix(i: u64) -> u64 {
        // splitmix64's finaliser: well-spread test hashes.
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn never_hides_an_inserted_hash_and_rules_out_most_others() {
        let f = PublishedFilter::for_entries(10_000, 12);
        for i in 0..10_000 {
            f.insert(mix(i));
        }
        assert!((0..10_000).all(|i| f.may_contain(mix(i))));
        let false_positives = (10_000..110_000).filter(|&i| f.may_contain(mix(i))).count();
        assert!(false_positives < 3_000, "{false_positives} of 100000");
        assert_eq!(f.heap_bytes() % 64, 0);
    }

    #[test]
    fn a_tiny_filter_is_one_block_and_still_correct() {
        let f = PublishedFilter::for_entries(0, 0);
        assert_eq!(f.heap_bytes(), 64);
        f.insert(7);
        assert!(f.may_contain(7));
    }
}
