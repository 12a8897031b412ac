//! The block cache: decrypted, decoded data blocks and run table partitions (block
//! index records and bloom filter) shared by every reader.
//!
//! A bounded [`quick_cache`] (CLOCK-Pro, sharded) keyed by `(file id, block index)`
//! (table partition `p` under [`TABLES`]` - p`) and weighted by each entry's decoded
//! size, so the bytes it holds stay under its capacity whatever the data size. An entry
//! is authenticated once, when it is loaded; hits never touch the disk or the cipher.
//!
//! Table partitions are placed as [`TablePlacement`] says: by default
//! ([`TablePlacement::Auto`]) a run pins those it reads while all pinned partitions fit
//! in half the capacity, and the cache shrinks by what is pinned, so the two together
//! stay within the capacity; the rest live in the cache, where hot partitions stay
//! resident by use and cold ones make room for data blocks. Compaction reads with
//! [`CacheFill::Bypass`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aedb_checkpoint::{DataBlock, TablePartition};
use aedb_sync::pin_budget::PinBudget;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// Bytes charged per cached block on top of its plaintext and decoded index: the
/// cache's own bookkeeping.
const BLOCK_OVERHEAD: u64 = 64;

/// Table partition `p` of a run is cached under block number `TABLES - p`: data blocks
/// are numbered up from 0 and partitions down from here, and a run has far fewer than
/// `2^31` of either (its index is at most 256 MiB, some fifteen million blocks).
const TABLES: u32 = u32::MAX;

/// The cache key of table partition `p` of a file.
fn partition_key(file_id: u64, p: usize) -> (u64, u32) {
    (file_id, TABLES - p as u32)
}

/// One cached entry.
#[derive(Clone)]
enum Cached {
    Block(DataBlock),
    Partition(Arc<TablePartition>),
}

#[derive(Clone, Copy, Debug)]
struct BlockWeighter;

impl Weighter<(u64, u32), Cached> for BlockWeighter {
    fn weight(&self, _key: &(u64, u32), entry: &Cached) -> u64 {
        let bytes = match entry {
            Cached::Block(block) => block.plaintext_len() + block.index_len(),
            Cached::Partition(tables) => tables.heap_bytes(),
        };
        bytes as u64 + BLOCK_OVERHEAD
    }
}

/// Where open runs keep their tables (block index and bloom filter).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TablePlacement {
    /// Pinned by each open run once first read while every pinned table fits in half
    /// the block cache's capacity (the cache gives up what is pinned, so the two stay
    /// within the capacity together); in the cache beyond that. Reads of pinned tables
    /// touch no shared memory; memory stays under the budget whatever the data size.
    #[default]
    Auto,
    /// In the block cache, weighed like blocks: memory stays under the cache's budget
    /// whatever the data size, and cold tables make room for data.
    InCache,
    /// Pinned by each open run once first read, outside the cache's budget: reads never
    /// reload them, and resident memory grows with the data by their size.
    Pinned,
}

/// Whether a read adds the data blocks it loads to the [`BlockCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheFill {
    /// Cache what is loaded, count hits and misses (reads and scans).
    Fill,
    /// Use a cached block without marking it recently used; load the others without
    /// caching them, and count nothing. Compaction reads this way: it reads every block
    /// of its inputs once, and caching them would evict what readers use.
    Bypass,
}

/// Hit and miss counts of a [`BlockCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that read (and authenticated) the block from its file.
    pub misses: u64,
    /// Bytes held now (weighted).
    pub bytes: u64,
    /// The capacity in bytes.
    pub capacity: u64,
    /// Bytes of run tables pinned outside the cache (within `capacity` for
    /// [`TablePlacement::Auto`], beyond it for [`TablePlacement::Pinned`]).
    pub pinned_bytes: u64,
}

/// A counter readers on many threads bump without sharing a cache line: each thread
/// adds to its own stripe (threads are dealt stripes round-robin), a read sums them.
#[derive(Debug, Default)]
struct StripedCounter {
    stripes: [Stripe; STRIPES],
}

/// Stripes of a [`StripedCounter`]: more than the readers a small machine runs at once.
const STRIPES: usize = 16;

/// One stripe, alone on its (128-byte, adjacent-line prefetch pair) cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

impl StripedCounter {
    fn add(&self, n: u64) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local!(static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
        let stripe = STRIPE.with(|s| *s);
        self.stripes[stripe].0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// The shared cache of decoded data blocks and run tables; see the module docs.
pub struct BlockCache {
    cache: Cache<(u64, u32), Cached, BlockWeighter>,
    capacity: u64,
    placement: TablePlacement,
    /// Bytes of table partitions runs hold pinned, against the placement's limit.
    pins: PinBudget,
    /// Serialises resizing the cache to what [`TablePlacement::Auto`] leaves it.
    resize: std::sync::Mutex<()>,
    hits: StripedCounter,
    misses: StripedCounter,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` of blocks and tables (at least one 4 KiB
    /// block).
    pub fn new(capacity_bytes: u64) -> BlockCache {
        BlockCache::with_placement(capacity_bytes, TablePlacement::default())
    }

    /// A cache holding at most `capacity_bytes`, with run tables placed as `placement`
    /// says.
    pub fn with_placement(capacity_bytes: u64, placement: TablePlacement) -> BlockCache {
        let capacity = capacity_bytes.max(8 * 1024);
        // quick_cache sizes its tables from an item estimate: assume 4 KiB blocks.
        let items = (capacity / 4096).max(16) as usize;
        BlockCache {
            cache: Cache::with_weighter(items, capacity, BlockWeighter),
            capacity,
            placement,
            pins: PinBudget::new(match placement {
                TablePlacement::Auto => capacity / 2,
                TablePlacement::InCache => 0,
                TablePlacement::Pinned => u64::MAX,
            }),
            resize: std::sync::Mutex::new(()),
            hits: StripedCounter::default(),
            misses: StripedCounter::default(),
        }
    }

    /// The cached data block, or `load`'s result, cached (with [`CacheFill::Fill`]).
    ///
    /// # Errors
    /// `load`'s error; nothing is cached then.
    pub fn get_or_load<E>(
        &self,
        file_id: u64,
        block: u32,
        fill: CacheFill,
        load: impl FnOnce() -> Result<DataBlock, E>,
    ) -> Result<DataBlock, E> {
        if fill == CacheFill::Bypass {
            return match self.cache.peek(&(file_id, block)) {
                Some(Cached::Block(b)) => Ok(b),
                _ => load(),
            };
        }
        if let Some(Cached::Block(b)) = self.cache.get(&(file_id, block)) {
            self.hits.add(1);
            return Ok(b);
        }
        self.misses.add(1);
        let b = load()?;
        self.cache
            .insert((file_id, block), Cached::Block(b.clone()));
        Ok(b)
    }

    /// Cached table partition `p` of a run, or `load`'s result: cached, unless `pin`
    /// takes it (returns true: the run keeps it itself, outside the cache).
    ///
    /// # Errors
    /// `load`'s error; nothing is cached then.
    pub fn partition_or_load<E>(
        &self,
        file_id: u64,
        p: usize,
        load: impl FnOnce() -> Result<TablePartition, E>,
        pin: impl FnOnce(&Arc<TablePartition>) -> bool,
    ) -> Result<Arc<TablePartition>, E> {
        let key = partition_key(file_id, p);
        if let Some(Cached::Partition(t)) = self.cache.get(&key) {
            self.hits.add(1);
            return Ok(t);
        }
        self.misses.add(1);
        let t = Arc::new(load()?);
        if !pin(&t) {
            self.cache.insert(key, Cached::Partition(t.clone()));
        }
        Ok(t)
    }

    /// Where runs keep their tables.
    pub fn placement(&self) -> TablePlacement {
        self.placement
    }

    /// Reserves `bytes` for a partition a run is about to pin: false when the placement's
    /// limit would be passed (always for [`TablePlacement::InCache`], whose limit is 0;
    /// the partition then lives in the cache). Under
    /// [`TablePlacement::Auto`] the cache shrinks by what is pinned.
    pub(crate) fn try_pin(&self, bytes: u64) -> bool {
        if !self.pins.try_reserve(bytes) {
            return false;
        }
        self.resized();
        true
    }

    /// Returns `bytes` of pinned tables (their run is gone).
    pub(crate) fn unpin(&self, bytes: u64) {
        self.pins.release(bytes);
        self.resized();
    }

    /// Gives the cache what [`TablePlacement::Auto`] leaves it beside the pinned tables.
    fn resized(&self) {
        if self.placement == TablePlacement::Auto {
            let _one_at_a_time = self.resize.lock().unwrap_or_else(|p| p.into_inner());
            let pinned = self.pins.reserved();
            self.cache
                .set_capacity(self.capacity.saturating_sub(pinned).max(8 * 1024));
        }
    }

    /// Whether a data block is cached (does not count as a hit).
    pub fn contains(&self, file_id: u64, block: u32) -> bool {
        self.cache.contains_key(&(file_id, block))
    }

    /// Forgets every block and table partition of a file (after it is deleted).
    pub fn forget_file(&self, file_id: u64, blocks: usize, partitions: usize) {
        for p in 0..partitions {
            self.cache.remove(&partition_key(file_id, p));
        }
        for b in 0..blocks {
            self.cache.remove(&(file_id, b as u32));
        }
    }

    /// Hits, misses and bytes held.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            bytes: self.cache.weight(),
            capacity: self.capacity,
            pinned_bytes: self.pins.reserved(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-entry block (`count || key_len || key || lsn || kind || value_len || value`).
    fn block(key: &[u8]) -> DataBlock {
        let mut b = 1u32.to_le_bytes().to_vec();
        b.extend_from_slice(&(key.len() as u16).to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(&7u64.to_le_bytes());
        b.push(1);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.push(b'v');
        aedb_checkpoint::decode_data_block(&b).expect("a valid block")
    }

    fn load(key: &'static [u8]) -> impl FnOnce() -> Result<DataBlock, ()> {
        move || Ok(block(key))
    }

    #[test]
    fn bypass_reads_use_cached_blocks_but_neither_cache_nor_count() {
        let cache = BlockCache::new(1 << 20);
        // A bypassing load is not kept or counted.
        cache
            .get_or_load(1, 0, CacheFill::Bypass, load(b"a"))
            .unwrap();
        assert!(!cache.contains(1, 0));
        assert_eq!((cache.stats().hits, cache.stats().misses), (0, 0));
        assert_eq!(cache.stats().bytes, 0);
        // A filling load is kept and counted; a bypassing read then uses it uncounted.
        cache
            .get_or_load(1, 0, CacheFill::Fill, load(b"a"))
            .unwrap();
        assert!(cache.contains(1, 0));
        assert_eq!((cache.stats().hits, cache.stats().misses), (0, 1));
        let got = cache
            .get_or_load(1, 0, CacheFill::Bypass, || -> Result<DataBlock, ()> {
                panic!("a cached block is not loaded again")
            })
            .unwrap();
        assert_eq!(got.entry(0).key, b"a");
        assert_eq!((cache.stats().hits, cache.stats().misses), (0, 1));
        cache
            .get_or_load(1, 0, CacheFill::Fill, load(b"a"))
            .unwrap();
        assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
        assert!(cache.stats().bytes > 0);
        // Forgetting the file drops its blocks.
        cache.forget_file(1, 1, 0);
        assert!(!cache.contains(1, 0));
    }
}
