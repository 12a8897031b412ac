//! Data blocks: the entries of a run file.
//!
//! ```text
//! count u32 (>= 1) || entry*count
//! entry = key_len u16 || key || lsn u64 || kind u8 (1 Put, 2 Delete) || value_len u32 || value
//! ```
//!
//! Entries are strictly ordered by `(key ascending, lsn descending)`, so no `(key, lsn)`
//! appears twice; a Delete's value is empty. [`DataBlock`] keeps, in **one** shared
//! allocation, one `u32` offset per entry (validated once, at decode), so reading an
//! entry allocates nothing; the entries' heads and the prefix they share
//! ([`crate::run::heads`]), so a seek touches a few cache lines of the block instead of
//! one per probe; and the plaintext. One allocation is one cache miss fewer per lookup
//! than separate arrays, and one free (on whichever thread evicts the block) instead of
//! five.

use crate::run::heads;
use crate::run::{
    EntryKind, MAX_DATA_BLOCK_LEN, MAX_RUN_KEY_LEN, MAX_RUN_VALUE_LEN, RUN_ENTRY_OVERHEAD,
    trim_scratch,
};
use aedb_types::{ByteReader, DecodeError, DecodeErrorKind, LenPrefix, Lsn};
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

thread_local! {
    /// The buffer [`DataBlock::decode`] builds a block's packed form in before copying
    /// it into the block's one allocation.
    static PACKED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One entry of a [`DataBlock`], borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The user key.
    pub key: &'a [u8],
    /// The entry's LSN (its version).
    pub lsn: Lsn,
    /// Put or Delete.
    pub kind: EntryKind,
    /// The value (empty for a Delete).
    pub value: &'a [u8],
}

/// Where one entry of a [`DataBlock`] lies ([`DataBlock::locate`]): its key and value as
/// positions in the block, with its LSN and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryPos {
    key_at: u32,
    key_end: u32,
    value_end: u32,
    lsn: Lsn,
    kind: EntryKind,
}

/// A decoded, validated data block. Immutable, `Send + Sync`; a clone shares it (one
/// reference count).
///
/// Its one allocation holds, for `n` entries:
/// `offsets (u32 × n) || heads (u64 × n) || shared key prefix || plaintext`.
#[derive(Clone, PartialEq, Eq)]
pub struct DataBlock {
    packed: Arc<[u8]>,
    /// Entries (at least 1).
    count: u32,
    /// Length of the key prefix every entry shares.
    prefix_len: u32,
}

impl fmt::Debug for DataBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataBlock")
            .field("entries", &self.count)
            .field("plaintext_len", &self.plaintext_len())
            .finish_non_exhaustive()
    }
}

/// Compares `(a_key, Reverse(a_lsn))` with `(b_key, Reverse(b_lsn))`: run order.
pub(crate) fn run_order(a_key: &[u8], a_lsn: Lsn, b_key: &[u8], b_lsn: Lsn) -> Ordering {
    a_key.cmp(b_key).then(b_lsn.cmp(&a_lsn))
}

fn le_u16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le_u32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

fn ne_u32(b: &[u8], at: usize) -> usize {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// The key and LSN of the (validated) entry at offset `at` of a plaintext.
fn key_of(b: &[u8], at: usize) -> (&[u8], Lsn) {
    let key_end = at + 2 + le_u16(b, at);
    (&b[at + 2..key_end], Lsn::new(le_u64(b, key_end)))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl DataBlock {
    /// Decodes and validates a data-block plaintext, taking ownership of it.
    ///
    /// # Errors
    /// A [`DecodeError`] (context `"run data block"`) at the offending entry: short input,
    /// over-long key or value, unknown kind, a Delete with a value, entries out of order
    /// or duplicated, no entries, trailing bytes. Never panics.
    pub(crate) fn decode(bytes: &[u8]) -> Result<DataBlock, DecodeError> {
        let mut r: ByteReader<'_> = ByteReader::new("run data block", bytes);
        if bytes.len() > MAX_DATA_BLOCK_LEN {
            return Err(r.err(DecodeErrorKind::LengthTooLarge {
                what: "data block",
                len: bytes.len() as u64,
                max: MAX_DATA_BLOCK_LEN as u64,
            }));
        }
        let count = r.count(
            LenPrefix::U32,
            "entries",
            RUN_ENTRY_OVERHEAD,
            u64::from(u32::MAX),
        )?;
        if count == 0 {
            return Err(r.back(4).err(DecodeErrorKind::Invalid {
                what: "data block without entries",
            }));
        }
        PACKED.with(|packed| {
            let mut packed = packed.borrow_mut();
            packed.clear();
            let decoded = DataBlock::decode_into(bytes, r, count, &mut packed);
            trim_scratch(&mut packed);
            decoded
        })
    }

    /// [`DataBlock::decode`] after the entry count, building the packed form in
    /// `packed` (this thread's reused buffer) and copying it into one shared allocation.
    fn decode_into(
        bytes: &[u8],
        mut r: ByteReader<'_>,
        count: usize,
        packed: &mut Vec<u8>,
    ) -> Result<DataBlock, DecodeError> {
        // `count` fits the block (checked against the entry overhead), so the packed
        // form is at most a small multiple of MAX_DATA_BLOCK_LEN.
        packed.reserve(count * 12 + 2 * bytes.len());
        let mut first_key: &[u8] = &[];
        let mut prev: Option<(&[u8], Lsn)> = None;
        for _ in 0..count {
            let at = r.pos();
            let key = r.prefixed(LenPrefix::U16, "key", MAX_RUN_KEY_LEN)?;
            let lsn = Lsn::new(r.u64()?);
            let kind_id = r.u8()?;
            let Some(kind) = EntryKind::from_id(kind_id) else {
                return Err(r.back(1).err(DecodeErrorKind::UnknownTag {
                    what: "entry kind",
                    tag: kind_id,
                }));
            };
            let value = r.prefixed(LenPrefix::U32, "value", MAX_RUN_VALUE_LEN)?;
            if kind == EntryKind::Delete && !value.is_empty() {
                return Err(r.err_at(
                    at,
                    DecodeErrorKind::Invalid {
                        what: "tombstone with a value",
                    },
                ));
            }
            match prev {
                Some((pk, pl)) if run_order(pk, pl, key, lsn) != Ordering::Less => {
                    return Err(r.err_at(
                        at,
                        DecodeErrorKind::Invalid {
                            what: "entry order (keys ascending, each key's LSNs strictly descending)",
                        },
                    ));
                }
                Some(_) => {}
                None => first_key = key,
            }
            // `at` < bytes.len() <= MAX_DATA_BLOCK_LEN < u32::MAX.
            packed.extend_from_slice(&(at as u32).to_ne_bytes());
            prev = Some((key, lsn));
        }
        r.finish()?;
        let last_key = prev.map_or(first_key, |(k, _)| k);
        let prefix_len = heads::shared_prefix_len(first_key, last_key);
        for i in 0..count {
            let at = ne_u32(packed, i * 4);
            let key = key_of(bytes, at).0;
            packed.extend_from_slice(&heads::head(&key[prefix_len..]).to_ne_bytes());
        }
        packed.extend_from_slice(&first_key[..prefix_len]);
        packed.extend_from_slice(bytes);
        Ok(DataBlock {
            packed: Arc::from(&packed[..]),
            // Both fit: count and the prefix are bounded by the block's length.
            count: count as u32,
            prefix_len: prefix_len as u32,
        })
    }

    /// Entry `i`'s offset in the plaintext.
    fn offset(&self, i: usize) -> usize {
        ne_u32(&self.packed, i * 4)
    }

    /// Entry `i`'s head.
    fn head(&self, i: usize) -> u64 {
        let at = self.count as usize * 4 + i * 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.packed[at..at + 8]);
        u64::from_ne_bytes(a)
    }

    /// The key prefix every entry shares.
    fn prefix(&self) -> &[u8] {
        let at = self.count as usize * 12;
        &self.packed[at..at + self.prefix_len as usize]
    }

    /// The plaintext.
    fn bytes(&self) -> &[u8] {
        &self.packed[self.index_len()..]
    }

    /// Number of entries (at least 1).
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the block has no entries (never true for a decoded block).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Entry `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn entry(&self, i: usize) -> EntryRef<'_> {
        self.at(self.locate(i))
    }

    /// Where entry `i` lies in this block: parsed once here, turned back into the entry
    /// by [`DataBlock::at`] with two slicings (for a cursor that reads its current entry
    /// many times, as a merge does).
    ///
    /// # Panics
    /// If `i >= self.len()`, like slice indexing.
    pub fn locate(&self, i: usize) -> EntryPos {
        // Offsets and every length were validated by `decode`, so these reads are in bounds.
        assert!(i < self.len(), "entry {i} of a block of {}", self.len());
        let base = self.index_len();
        let b = self.bytes();
        let at = self.offset(i);
        let key_end = at + 2 + le_u16(b, at);
        let kind = match b[key_end + 8] {
            2 => EntryKind::Delete,
            _ => EntryKind::Put,
        };
        let value_at = key_end + 13;
        // Positions within the packed allocation, which is far below u32::MAX bytes.
        EntryPos {
            key_at: (base + at + 2) as u32,
            key_end: (base + key_end) as u32,
            value_end: (base + value_at + le_u32(b, key_end + 9)) as u32,
            lsn: Lsn::new(le_u64(b, key_end)),
            kind,
        }
    }

    /// The entry at `pos`, which [`DataBlock::locate`] returned for this block.
    ///
    /// # Panics
    /// If `pos` lies outside this block (a position from a larger block).
    pub fn at(&self, pos: EntryPos) -> EntryRef<'_> {
        let b = &*self.packed;
        EntryRef {
            key: &b[pos.key_at as usize..pos.key_end as usize],
            lsn: pos.lsn,
            kind: pos.kind,
            value: &b[pos.key_end as usize + 13..pos.value_end as usize],
        }
    }

    /// The key of entry `i` (without decoding the rest of it).
    fn key_at(&self, i: usize) -> (&[u8], Lsn) {
        key_of(self.bytes(), self.offset(i))
    }

    /// The first entry `i` at or after `(key, lsn)` in run order: the first with
    /// `entry.key > key`, or `entry.key == key && entry.lsn <= lsn`. So `seek(k, snapshot)`
    /// finds the newest version of `k` visible at `snapshot`, if this block holds one.
    /// Returns `len()` if there is none.
    pub fn seek(&self, key: &[u8], lsn: Lsn) -> usize {
        heads::search(
            self.prefix(),
            self.len(),
            |i| self.head(i),
            key,
            |i| {
                let (k, l) = self.key_at(i);
                run_order(k, l, key, lsn) == Ordering::Less
            },
        )
    }

    /// Heap bytes the decoded block holds beyond its plaintext (offsets, heads and
    /// their prefix), for weighing it in a cache.
    pub fn index_len(&self) -> usize {
        self.count as usize * 12 + self.prefix_len as usize
    }

    /// Size of the decoded plaintext in bytes (for weighing the block in a cache).
    pub fn plaintext_len(&self) -> usize {
        self.packed.len() - self.index_len()
    }

    /// Iterates over the entries in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EntryRef<'_>> + '_ {
        (0..self.len()).map(|i| self.entry(i))
    }

    /// The first entry.
    pub(crate) fn first(&self) -> EntryRef<'_> {
        self.entry(0)
    }

    /// The last entry.
    pub(crate) fn last(&self) -> EntryRef<'_> {
        self.entry(self.len() - 1)
    }
}

/// Decodes and validates a data-block plaintext exactly as [`crate::RunFile::read_block`]
/// does after authentication and decompression (for the `run_block` fuzz target).
///
/// # Errors
/// As the reader reports inside [`crate::CheckpointError::BadBlock`]. Never panics.
#[doc(hidden)]
pub fn decode_data_block(bytes: &[u8]) -> Result<DataBlock, DecodeError> {
    DataBlock::decode(bytes)
}

/// Accumulates one data block's plaintext.
#[derive(Debug)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    count: u32,
}

impl BlockBuilder {
    pub(crate) fn new(capacity: usize) -> BlockBuilder {
        let mut buf = Vec::with_capacity(capacity.saturating_add(64).min(1 << 20));
        buf.extend_from_slice(&[0; 4]);
        BlockBuilder { buf, count: 0 }
    }

    /// Bytes an entry adds to a block.
    pub(crate) fn entry_len(key: &[u8], value: &[u8]) -> usize {
        RUN_ENTRY_OVERHEAD + key.len() + value.len()
    }

    /// Current plaintext size.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    /// Appends an entry (the caller has validated lengths and order).
    pub(crate) fn push(&mut self, key: &[u8], lsn: Lsn, kind: EntryKind, value: &[u8]) {
        self.buf
            .extend_from_slice(&(key.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&lsn.get().to_le_bytes());
        self.buf.push(kind.id());
        self.buf
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(value);
        self.count += 1;
    }

    /// The finished plaintext; the builder starts over empty.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        let capacity = self.buf.capacity();
        let mut out = std::mem::replace(&mut self.buf, Vec::with_capacity(capacity));
        out[..4].copy_from_slice(&self.count.to_le_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        self.count = 0;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(entries: &[(&[u8], u64, EntryKind, &[u8])]) -> Vec<u8> {
        let mut b = BlockBuilder::new(64);
        for (k, l, kind, v) in entries {
            b.push(k, Lsn::new(*l), *kind, v);
        }
        b.take()
    }

    #[test]
    fn round_trip_entries_and_seek() {
        let bytes = build(&[
            (b"a", 9, EntryKind::Put, b"a9"),
            (b"a", 5, EntryKind::Delete, b""),
            (b"a", 2, EntryKind::Put, b"a2"),
            (b"b", 7, EntryKind::Put, b""),
            (b"d", 1, EntryKind::Put, b"d1"),
        ]);
        assert_eq!(u32::from_le_bytes(bytes[..4].try_into().unwrap()), 5);
        let block = DataBlock::decode(&bytes).unwrap();
        assert_eq!(block.len(), 5);
        assert!(!block.is_empty());
        assert_eq!(block.plaintext_len(), bytes.len());
        assert_eq!(
            block.entry(1),
            EntryRef {
                key: b"a",
                lsn: Lsn::new(5),
                kind: EntryKind::Delete,
                value: b""
            }
        );
        assert_eq!(block.entry(4).value, b"d1");
        let l = Lsn::new;
        assert_eq!(block.seek(b"a", Lsn::MAX), 0);
        assert_eq!(block.seek(b"a", l(9)), 0);
        assert_eq!(block.seek(b"a", l(8)), 1);
        assert_eq!(block.seek(b"a", l(5)), 1);
        assert_eq!(block.seek(b"a", l(4)), 2);
        assert_eq!(block.seek(b"a", l(1)), 3);
        assert_eq!(block.seek(b"a", Lsn::ZERO), 3);
        assert_eq!(block.seek(b"", Lsn::ZERO), 0);
        assert_eq!(block.seek(b"b", l(6)), 4);
        assert_eq!(block.seek(b"c", Lsn::MAX), 4);
        assert_eq!(block.seek(b"d", Lsn::ZERO), 5);
        assert_eq!(block.seek(b"e", Lsn::MAX), 5);
        assert_eq!(block.iter().count(), 5);
    }

    #[test]
    fn invalid_blocks_are_rejected_with_offsets() {
        let kind_at = |bytes: &[u8]| 4 + 2 + usize::from(bytes[4]) + 8;
        let reject = |bytes: Vec<u8>| DataBlock::decode(&bytes).unwrap_err();
        // Order: same key, ascending LSN; duplicate; descending key.
        for entries in [
            vec![
                (&b"a"[..], 1, EntryKind::Put, &b""[..]),
                (b"a", 2, EntryKind::Put, b""),
            ],
            vec![
                (&b"a"[..], 1, EntryKind::Put, &b""[..]),
                (b"a", 1, EntryKind::Put, b""),
            ],
            vec![
                (&b"b"[..], 1, EntryKind::Put, &b""[..]),
                (b"a", 1, EntryKind::Put, b""),
            ],
        ] {
            let e = reject(build(&entries));
            assert!(matches!(e.kind, DecodeErrorKind::Invalid { .. }), "{e}");
            assert_eq!(e.offset, 4 + 15 + 1);
        }
        // A tombstone with a value.
        let e = reject(build(&[(b"a", 1, EntryKind::Delete, b"x")]));
        assert_eq!(e.offset, 4);
        // Unknown kinds.
        for bad in [0u8, 3, 255] {
            let mut bytes = build(&[(b"k", 1, EntryKind::Put, b"v")]);
            let at = kind_at(&bytes);
            bytes[at] = bad;
            let e = reject(bytes);
            assert_eq!(e.offset, at);
            assert!(matches!(e.kind, DecodeErrorKind::UnknownTag { .. }));
        }
        // No entries, trailing bytes, every truncation, an over-long count.
        assert!(DataBlock::decode(&[0, 0, 0, 0]).is_err());
        let good = build(&[
            (b"k", 1, EntryKind::Put, b"v"),
            (b"l", 1, EntryKind::Put, b"w"),
        ]);
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            reject(trailing).kind,
            DecodeErrorKind::TrailingBytes { count: 1 }
        ));
        for cut in 0..good.len() {
            assert!(DataBlock::decode(&good[..cut]).is_err(), "cut {cut}");
        }
        let mut count = good;
        count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            reject(count).kind,
            DecodeErrorKind::CountTooLarge { .. }
        ));
    }

    proptest::proptest! {
        /// The head-guided binary search answers exactly what a linear scan does, for
        /// keys sharing long prefixes, keys that are prefixes of others, many versions
        /// of a key, and probes inside, before, after and beside the shared prefix.
        #[test]
        fn seek_matches_a_linear_scan(
            keys in proptest::collection::btree_set(
                proptest::collection::vec(proptest::sample::select(vec![0u8, 1, 0x61, 0xff]), 0..12),
                1..40,
            ),
            versions in proptest::collection::vec(1u64..4, 40),
            shared in proptest::collection::vec(proptest::sample::select(vec![0u8, 0x61, 0xff]), 0..10),
            probes in proptest::collection::vec(
                (proptest::collection::vec(proptest::sample::select(vec![0u8, 1, 0x61, 0xff]), 0..22), 0u64..12),
                1..40,
            ),
        ) {
            let mut entries = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                let key = [shared.as_slice(), k].concat();
                for v in (0..versions[i % versions.len()]).rev() {
                    entries.push((key.clone(), 3 * v + 2));
                }
            }
            let mut b = BlockBuilder::new(64);
            for (k, l) in &entries {
                b.push(k, Lsn::new(*l), EntryKind::Put, b"");
            }
            let block = DataBlock::decode(&b.take()).unwrap();
            for (probe, lsn) in probes {
                for key in [probe.clone(), [shared.as_slice(), &probe].concat()] {
                    let linear = entries
                        .iter()
                        .position(|(k, l)| run_order(k, Lsn::new(*l), &key, Lsn::new(lsn)) != Ordering::Less)
                        .unwrap_or(entries.len());
                    proptest::prop_assert_eq!(block.seek(&key, Lsn::new(lsn)), linear, "key {:?} lsn {}", key, lsn);
                }
            }
        }
    }

    #[test]
    fn builder_starts_over_after_take() {
        let mut b = BlockBuilder::new(16);
        b.push(b"k", Lsn::new(1), EntryKind::Put, b"v");
        assert_eq!(b.len(), 4 + BlockBuilder::entry_len(b"k", b"v"));
        let first = b.take();
        assert_eq!((b.len(), b.count()), (4, 0));
        b.push(b"k", Lsn::new(1), EntryKind::Put, b"v");
        assert_eq!(b.take(), first);
    }
}
