//! The memtable: recent writes, ordered and versioned, in memory.
//!
//! A [`Memtable`] is a lock-free skip list (`crossbeam-skiplist`) of internal keys
//! `(user key, LSN)` ordered by key ascending, then LSN **descending**, so the newest
//! version of a key comes first. The single writer inserts through `&self` while any
//! number of readers read concurrently through their own `Arc`: a reader at snapshot
//! LSN `s` ignores every version newer than `s`, so publishing a snapshot copies
//! nothing. Once full it is frozen (no more inserts) and sealed into a run file.
//!
//! A point lookup first asks the memtable's bloom filter (`aedb_sync`'s
//! [`PublishedFilter`]: the single writer sets a key's bits before it inserts the entry,
//! and a reader's snapshot was published after both; loom-checked): most reads of a large database are for keys the memtable does
//! not hold, and they skip the skip-list search. A key the filter lets through is looked
//! up in the **latest-version index**, a concurrent hash map (`papaya`, lock-free reads)
//! from each user key to its newest version, which the writer updates after the skip
//! list: a reader whose snapshot is at or after that version (nearly every reader) is
//! answered with one hash probe instead of a skip-list search of ~log2(n) dependent
//! cache misses; an older snapshot falls back to the skip list, which holds every
//! version. The index never loses a key and only ever moves a key to a newer version,
//! so "absent from the index" means "absent from the memtable" for every published
//! snapshot.

use std::cmp::Reverse;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use aedb_checkpoint::EntryKind;
use aedb_sync::published_filter::PublishedFilter;
use aedb_types::Lsn;
use crossbeam_skiplist::SkipMap;

/// Bytes charged per entry on top of its value (and of a key longer than the 62 bytes
/// stored inline, which is stored once apart): the skip-list node with its inline key
/// and tower, the value's header, and the latest-version index's entry (another inline
/// copy of the key) and slot. Measured by `examples/memtable_footprint.rs`: 272
/// resident bytes beyond a 16-byte value, with a 24-byte key.
pub const ENTRY_OVERHEAD: usize = 272;

/// Key bytes stored inline up to this length: the skip-list node and the index entry
/// then hold the key itself, so a search compares bytes already in the node's cache
/// lines instead of chasing a pointer to a separate allocation per comparison (random
/// inserts into 1M entries: 3.4-3.9 -> 3.0-3.2 µs). 62 bytes keep [`KeyBytes`] at 64.
const INLINE_KEY: usize = 62;

/// A user key as a memtable stores it: inline when short (nearly every key), shared
/// on the heap when longer.
#[derive(Clone)]
pub(crate) enum KeyBytes {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Shared(Arc<[u8]>),
}

const _: () = assert!(std::mem::size_of::<KeyBytes>() == 64);

impl KeyBytes {
    fn new(key: &[u8]) -> KeyBytes {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0; INLINE_KEY];
            bytes[..key.len()].copy_from_slice(key);
            KeyBytes::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            KeyBytes::Shared(key.into())
        }
    }
}

impl std::ops::Deref for KeyBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            KeyBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyBytes::Shared(key) => key,
        }
    }
}

// Equality, order and hash are the bytes', so the index can be probed with a `&[u8]`.
impl std::borrow::Borrow<[u8]> for KeyBytes {
    fn borrow(&self) -> &[u8] {
        self
    }
}

impl PartialEq for KeyBytes {
    fn eq(&self, other: &KeyBytes) -> bool {
        **self == **other
    }
}

impl Eq for KeyBytes {}

impl PartialOrd for KeyBytes {
    fn partial_cmp(&self, other: &KeyBytes) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyBytes {
    fn cmp(&self, other: &KeyBytes) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl std::hash::Hash for KeyBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// An internal key: ordered by user key, then newest version first. Values are shared
/// slices, so cursors copy a reference count, not the bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct MemKey {
    pub(crate) key: KeyBytes,
    pub(crate) lsn: Reverse<u64>,
}

/// An internal key as a lookup sees it, owned ([`MemKey`]) or borrowed ([`Probe`]):
/// the skip list is searched with a borrowed probe, so a point read allocates nothing.
pub(crate) trait InternalKey {
    fn user_key(&self) -> &[u8];
    fn reverse_lsn(&self) -> Reverse<u64>;
}

impl InternalKey for MemKey {
    fn user_key(&self) -> &[u8] {
        &self.key
    }
    fn reverse_lsn(&self) -> Reverse<u64> {
        self.lsn
    }
}

/// A borrowed internal key to search with.
pub(crate) struct Probe<'a>(pub(crate) &'a [u8], pub(crate) Lsn);

impl InternalKey for Probe<'_> {
    fn user_key(&self) -> &[u8] {
        self.0
    }
    fn reverse_lsn(&self) -> Reverse<u64> {
        Reverse(self.1.get())
    }
}

// The order of `dyn InternalKey` is `MemKey`'s derived order (key, then reverse LSN),
// which `Borrow` requires.
impl<'a> std::borrow::Borrow<dyn InternalKey + 'a> for MemKey {
    fn borrow(&self) -> &(dyn InternalKey + 'a) {
        self
    }
}

impl PartialEq for dyn InternalKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.user_key() == other.user_key() && self.reverse_lsn() == other.reverse_lsn()
    }
}

impl Eq for dyn InternalKey + '_ {}

impl PartialOrd for dyn InternalKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn InternalKey + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.user_key()
            .cmp(other.user_key())
            .then(self.reverse_lsn().cmp(&other.reverse_lsn()))
    }
}

impl MemKey {
    pub(crate) fn lsn(&self) -> Lsn {
        Lsn::new(self.lsn.0)
    }
}

/// A stored version: a value, or a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MemValue {
    Put(Arc<[u8]>),
    Delete,
}

impl MemValue {
    pub(crate) fn kind(&self) -> EntryKind {
        match self {
            MemValue::Put(_) => EntryKind::Put,
            MemValue::Delete => EntryKind::Delete,
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            MemValue::Put(v) => v,
            MemValue::Delete => &[],
        }
    }
}

/// One version read back from a memtable or a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// The LSN that wrote it.
    pub lsn: Lsn,
    /// `None` for a tombstone (the key was deleted at `lsn`).
    pub value: Option<Vec<u8>>,
}

/// Bloom filter bits per entry a memtable of its budget can hold.
const FILTER_BITS_PER_ENTRY: usize = 12;
/// The budget [`Memtable::new`] sizes its filter for.
const DEFAULT_BUDGET: usize = 64 << 20;

/// The filter's hash of a user key.
fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// The newest version of every key a memtable holds (see the module docs), hashed with
/// a per-process random seed so crafted keys cannot force collisions.
type LatestIndex = papaya::HashMap<KeyBytes, (Lsn, MemValue), foldhash::fast::RandomState>;

/// Recent writes in memory; see the module docs.
pub struct Memtable {
    id: u64,
    map: SkipMap<MemKey, MemValue>,
    latest: LatestIndex,
    filter: PublishedFilter,
    bytes: AtomicUsize,
    min_lsn: AtomicU64,
    max_lsn: AtomicU64,
    /// The highest LSN a change was installed at (changes may write nothing).
    installed: AtomicU64,
    frozen: AtomicBool,
}

impl std::fmt::Debug for Memtable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memtable")
            .field("id", &self.id)
            .field("versions", &self.map.len())
            .field("bytes", &self.approximate_bytes())
            .field("lsn_range", &self.lsn_range())
            .field("frozen", &self.is_frozen())
            .finish_non_exhaustive()
    }
}

/// A memtable dropped with at least this many versions is freed on the reclaim thread
/// (see [`crate::reclaim`]); a smaller one frees in microseconds where it is.
const RECLAIM_AWAY_VERSIONS: usize = 4096;

impl Drop for Memtable {
    fn drop(&mut self) {
        if let Some(contents) = self.take_large_contents() {
            crate::reclaim::drop_elsewhere(contents);
        }
    }
}

impl Memtable {
    /// The skip list and index of a memtable holding at least
    /// [`RECLAIM_AWAY_VERSIONS`] versions, moved out (it is left empty); `None` for a
    /// smaller one.
    fn take_large_contents(&mut self) -> Option<Box<dyn Send>> {
        if self.map.len() < RECLAIM_AWAY_VERSIONS {
            return None;
        }
        let map = std::mem::replace(&mut self.map, SkipMap::new());
        let latest = std::mem::replace(
            &mut self.latest,
            papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .build(),
        );
        Some(Box::new((map, latest)))
    }

    /// An empty memtable. `id` orders memtables (newer ones have larger ids). Its key
    /// filter is sized for a 64 MiB memtable.
    pub fn new(id: u64) -> Memtable {
        Memtable::with_budget(id, DEFAULT_BUDGET)
    }

    /// An empty memtable whose key filter is sized for `budget` bytes of entries (it
    /// stays correct beyond, with more false positives).
    pub fn with_budget(id: u64, budget: usize) -> Memtable {
        Memtable {
            id,
            map: SkipMap::new(),
            // Sized up front for the keys the budget holds: a resize copies the table
            // on the writer's thread.
            latest: papaya::HashMap::builder()
                .capacity((budget / ENTRY_OVERHEAD).max(64))
                .hasher(foldhash::fast::RandomState::default())
                .build(),
            filter: PublishedFilter::for_entries(
                (budget / ENTRY_OVERHEAD).max(64),
                FILTER_BITS_PER_ENTRY,
            ),
            bytes: AtomicUsize::new(0),
            min_lsn: AtomicU64::new(u64::MAX),
            max_lsn: AtomicU64::new(0),
            installed: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
        }
    }

    /// Claims `lsn` for one change about to be inserted: refused (with the highest
    /// LSN claimed so far) when the memtable already went past it or was frozen, so a
    /// change computed on a stale snapshot can never interleave with newer ones.
    ///
    /// # Errors
    /// The highest claimed LSN (or `Lsn::MAX` once frozen).
    pub fn begin_install(&self, lsn: Lsn) -> Result<(), Lsn> {
        if self.frozen.load(Ordering::Acquire) {
            return Err(Lsn::MAX);
        }
        let prev = self.installed.fetch_max(lsn.get(), Ordering::AcqRel);
        if prev >= lsn.get() {
            return Err(Lsn::new(prev));
        }
        Ok(())
    }

    /// Records that everything up to `lsn` is installed (a memtable filled in bulk).
    pub fn mark_installed(&self, lsn: Lsn) {
        self.installed.fetch_max(lsn.get(), Ordering::AcqRel);
    }

    /// The highest LSN installed.
    pub fn installed_lsn(&self) -> Lsn {
        Lsn::new(self.installed.load(Ordering::Acquire))
    }

    /// Stops further installs: the memtable is about to be flushed.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Release);
    }

    /// Whether it was frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }

    /// This memtable's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records `key` = `value` (or a tombstone for [`EntryKind::Delete`]) at `lsn`.
    /// Only the single writer calls this, with LSNs that never go back; readers may
    /// read concurrently.
    pub fn insert(&self, key: &[u8], lsn: Lsn, kind: EntryKind, value: &[u8]) {
        let stored = match kind {
            EntryKind::Put => MemValue::Put(value.into()),
            EntryKind::Delete => MemValue::Delete,
        };
        let apart = if key.len() > INLINE_KEY { key.len() } else { 0 };
        let charge = apart + stored.bytes().len() + ENTRY_OVERHEAD;
        // Bits first, then every version, then the newest: a reader that finds the
        // index entry finds the skip-list entry and the bits too.
        self.filter.insert(key_hash(key));
        let key = KeyBytes::new(key);
        self.map.insert(
            MemKey {
                key: key.clone(),
                lsn: Reverse(lsn.get()),
            },
            stored.clone(),
        );
        self.latest.pin().insert(key, (lsn, stored));
        self.bytes.fetch_add(charge, Ordering::Relaxed);
        self.min_lsn.fetch_min(lsn.get(), Ordering::Relaxed);
        self.max_lsn.fetch_max(lsn.get(), Ordering::Relaxed);
    }

    /// The newest version of `key` at or before `at`, including tombstones.
    pub fn get(&self, key: &[u8], at: Lsn) -> Option<Versioned> {
        if !self.filter.may_contain(key_hash(key)) {
            return None;
        }
        {
            let latest = self.latest.pin();
            let (lsn, value) = latest.get(key)?;
            if *lsn <= at {
                return Some(Versioned {
                    lsn: *lsn,
                    value: match value {
                        MemValue::Put(v) => Some(v.to_vec()),
                        MemValue::Delete => None,
                    },
                });
            }
        }
        // The newest version is past the snapshot: an older one is in the skip list.
        let probe = Probe(key, at);
        let entry = self
            .map
            .lower_bound(Bound::Included(&probe as &dyn InternalKey))?;
        (*entry.key().key == *key).then(|| Versioned {
            lsn: entry.key().lsn(),
            value: match entry.value() {
                MemValue::Put(v) => Some(v.to_vec()),
                MemValue::Delete => None,
            },
        })
    }

    /// Approximate memory held, in bytes (keys, values and per-entry overhead).
    pub fn approximate_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Number of versions (including tombstones).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The oldest and newest LSN inserted, if any.
    pub fn lsn_range(&self) -> Option<(Lsn, Lsn)> {
        let max = self.max_lsn.load(Ordering::Relaxed);
        (max > 0).then(|| {
            (
                Lsn::new(self.min_lsn.load(Ordering::Relaxed)),
                Lsn::new(max),
            )
        })
    }

    /// Every version in internal order (key ascending, newest first): what a flush
    /// writes. `f` gets `(key, lsn, kind, value)`.
    pub fn for_each<E>(
        &self,
        mut f: impl FnMut(&[u8], Lsn, EntryKind, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for e in self.map.iter() {
            f(
                &e.key().key,
                e.key().lsn(),
                e.value().kind(),
                e.value().bytes(),
            )?;
        }
        Ok(())
    }

    /// Up to `n` entries from `bound` on, in internal order (`forward`) or its reverse:
    /// one skip-list search per batch, then links.
    pub(crate) fn batch(
        &self,
        bound: Bound<&dyn InternalKey>,
        forward: bool,
        n: usize,
        out: &mut std::collections::VecDeque<(MemKey, MemValue)>,
    ) {
        let entry = |e: &crossbeam_skiplist::map::Entry<'_, MemKey, MemValue>| {
            (e.key().clone(), e.value().clone())
        };
        let mut cur = if forward {
            self.map.lower_bound(bound)
        } else {
            self.map.upper_bound(bound)
        };
        while let Some(e) = cur {
            if out.len() == n {
                break;
            }
            out.push_back(entry(&e));
            cur = if forward { e.next() } else { e.prev() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full memtable's contents leave it when it is dropped (for the reclaim thread);
    /// a small one keeps them and frees them in place.
    #[test]
    fn only_a_large_memtable_hands_its_contents_away() {
        let fill = |m: &Memtable, n: usize| {
            for i in 0..n {
                m.insert(
                    format!("k{i:08}").as_bytes(),
                    Lsn::new(1),
                    EntryKind::Put,
                    b"v",
                );
            }
        };
        let mut small = Memtable::new(1);
        fill(&small, RECLAIM_AWAY_VERSIONS - 1);
        assert!(small.take_large_contents().is_none());
        assert_eq!(small.len(), RECLAIM_AWAY_VERSIONS - 1);
        let mut large = Memtable::new(2);
        fill(&large, RECLAIM_AWAY_VERSIONS);
        assert!(large.take_large_contents().is_some());
        assert_eq!(large.len(), 0);
        assert!(large.latest.pin().is_empty());
    }

    /// Keys up to the inline limit live in the node; longer ones are stored apart,
    /// charged by their length, and read, ordered and found in the index the same way.
    #[test]
    fn keys_past_the_inline_limit_are_stored_apart_and_behave_the_same() {
        let m = Memtable::new(1);
        let inline = vec![b'a'; INLINE_KEY];
        let apart = vec![b'a'; INLINE_KEY + 1];
        let long = [b"a".repeat(300), b"z".to_vec()].concat();
        for (i, key) in [&long, &apart, &inline].into_iter().enumerate() {
            m.insert(key, Lsn::new(i as u64 + 1), EntryKind::Put, b"v");
        }
        assert!(matches!(KeyBytes::new(&inline), KeyBytes::Inline { .. }));
        assert!(matches!(KeyBytes::new(&apart), KeyBytes::Shared(_)));
        assert_eq!(
            m.approximate_bytes(),
            3 * (ENTRY_OVERHEAD + 1) + apart.len() + long.len()
        );
        for key in [&inline, &apart, &long] {
            assert_eq!(
                m.get(key, Lsn::MAX).map(|v| v.value),
                Some(Some(b"v".to_vec()))
            );
        }
        // An older snapshot falls back to the skip list.
        m.insert(&long, Lsn::new(9), EntryKind::Delete, b"");
        assert_eq!(m.get(&long, Lsn::new(9)).map(|v| v.value), Some(None));
        assert_eq!(m.get(&long, Lsn::new(8)).map(|v| v.lsn), Some(Lsn::new(1)));
        let mut order = Vec::new();
        m.for_each(|k, l, _, _| {
            order.push((k.len(), l.get()));
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(order, vec![(62, 3), (63, 2), (301, 9), (301, 1)]);
    }

    #[test]
    fn the_key_filter_never_hides_an_entry_and_rules_out_most_absent_keys() {
        let m = Memtable::with_budget(1, 10_000 * ENTRY_OVERHEAD);
        for i in 0..10_000u32 {
            m.insert(
                format!("present{i}").as_bytes(),
                Lsn::new(1),
                EntryKind::Put,
                b"v",
            );
        }
        for i in 0..10_000u32 {
            let v = m.get(format!("present{i}").as_bytes(), Lsn::new(1));
            assert_eq!(v.map(|v| v.value), Some(Some(b"v".to_vec())));
        }
        let false_positives = (0..10_000u32)
            .filter(|i| {
                m.filter
                    .may_contain(key_hash(format!("absent{i}").as_bytes()))
            })
            .count();
        assert!(false_positives < 300, "{false_positives} of 10,000");
        assert_eq!(m.get(b"absent", Lsn::MAX), None);
    }

    #[test]
    fn newest_version_at_or_before_the_snapshot_wins() {
        let m = Memtable::new(1);
        m.insert(b"a", Lsn::new(5), EntryKind::Put, b"v5");
        m.insert(b"a", Lsn::new(9), EntryKind::Delete, b"");
        m.insert(b"ab", Lsn::new(7), EntryKind::Put, b"x");
        assert_eq!(m.get(b"a", Lsn::new(4)), None);
        assert_eq!(
            m.get(b"a", Lsn::new(8)),
            Some(Versioned {
                lsn: Lsn::new(5),
                value: Some(b"v5".to_vec())
            })
        );
        assert_eq!(
            m.get(b"a", Lsn::new(9)),
            Some(Versioned {
                lsn: Lsn::new(9),
                value: None
            })
        );
        // A longer key sharing the prefix is a different key.
        assert_eq!(m.get(b"ab", Lsn::new(6)), None);
        assert_eq!(m.get(b"b", Lsn::MAX), None);
        assert_eq!(m.lsn_range(), Some((Lsn::new(5), Lsn::new(9))));
        assert_eq!(m.len(), 3);
        let mut order = Vec::new();
        m.for_each(|k, l, _, _| {
            order.push((k.to_vec(), l.get()));
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(
            order,
            vec![(b"a".to_vec(), 9), (b"a".to_vec(), 5), (b"ab".to_vec(), 7)]
        );
        assert_eq!(m.approximate_bytes(), 3 * ENTRY_OVERHEAD + 2 + 1);
    }
}
