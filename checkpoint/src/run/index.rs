//! The index block: one entry per data block, in file order.
//!
//! ```text
//! count u32 (>= 1) || entry*count
//! entry = last_key_len u16 || last_key || offset u64 || stored_len u32 || entries u32
//! ```
//!
//! `last_key` is the user key of the block's last entry; last keys never decrease (one
//! key's versions may continue into the next block). Blocks are contiguous: each block
//! starts where the previous one ends (`offset + stored_len`); the reader also checks that
//! the first starts right after the header and the last ends where the index block starts.

use crate::run::heads::Heads;
use crate::run::{MAX_RUN_INDEX_LEN, MAX_RUN_KEY_LEN};
use aedb_types::{ByteReader, DecodeError, DecodeErrorKind, LenPrefix};

/// Smallest encoded index entry: an empty key and the three numbers.
const MIN_ENTRY: usize = 2 + 8 + 4 + 4;

/// Where one data block is and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// End of this block's last key in [`BlockIndex::keys`].
    key_end: u32,
    /// Byte offset of the stored block.
    pub(crate) offset: u64,
    /// Stored length (envelope included).
    pub(crate) stored_len: u32,
    /// Number of entries in the block.
    pub(crate) entries: u32,
}

/// The decoded index: last keys in one buffer, one fixed-size record per block, and the
/// last keys' [`Heads`] (built by [`BlockIndex::decode`], for [`BlockIndex::block_for`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct BlockIndex {
    keys: Vec<u8>,
    blocks: Vec<IndexEntry>,
    encoded_len: usize,
    heads: Heads,
}

/// Equal when the blocks and last keys are (the heads are derived from them).
impl PartialEq for BlockIndex {
    fn eq(&self, other: &Self) -> bool {
        self.keys == other.keys && self.blocks == other.blocks
    }
}

impl Eq for BlockIndex {}

impl BlockIndex {
    pub(crate) fn new() -> BlockIndex {
        BlockIndex {
            keys: Vec::new(),
            blocks: Vec::new(),
            encoded_len: 4,
            heads: Heads::default(),
        }
    }

    /// Number of data blocks.
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Heap bytes held (keys, block records, heads).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.keys.capacity()
            + self.blocks.capacity() * std::mem::size_of::<IndexEntry>()
            + self.heads.heap_len()
    }

    /// Size of [`BlockIndex::encode`]'s output.
    pub(crate) fn encoded_len(&self) -> usize {
        self.encoded_len
    }

    /// What adding a block with this last key would make the encoded length.
    pub(crate) fn encoded_len_with(&self, last_key: &[u8]) -> usize {
        self.encoded_len + MIN_ENTRY + last_key.len()
    }

    pub(crate) fn entry(&self, i: usize) -> Option<&IndexEntry> {
        self.blocks.get(i)
    }

    pub(crate) fn last_key(&self, i: usize) -> &[u8] {
        let start = match i {
            0 => 0,
            _ => self.blocks[i - 1].key_end as usize,
        };
        &self.keys[start..self.blocks[i].key_end as usize]
    }

    /// Appends a block (the writer keeps the index within [`MAX_RUN_INDEX_LEN`], so key
    /// offsets fit in `u32`).
    pub(crate) fn push(&mut self, last_key: &[u8], offset: u64, stored_len: u32, entries: u32) {
        self.keys.extend_from_slice(last_key);
        self.blocks.push(IndexEntry {
            key_end: self.keys.len() as u32,
            offset,
            stored_len,
            entries,
        });
        self.encoded_len += MIN_ENTRY + last_key.len();
    }

    /// The first block whose last key is `>= key`, if any.
    pub(crate) fn block_for(&self, key: &[u8]) -> Option<usize> {
        debug_assert_eq!(
            self.heads.len(),
            self.blocks.len(),
            "only a decoded index is searched"
        );
        if self.blocks.is_empty() {
            return None;
        }
        let at = self.heads.search(key, |i| self.last_key(i) < key);
        (at < self.blocks.len()).then_some(at)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        self.encode_range(0..self.blocks.len())
    }

    /// The encoding of blocks `range` alone: one partition's index block.
    pub(crate) fn encode_range(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        let mut out = Vec::with_capacity(if range.len() == self.blocks.len() {
            self.encoded_len
        } else {
            4 + range.len() * (MIN_ENTRY + 16)
        });
        out.extend_from_slice(&(range.len() as u32).to_le_bytes());
        for i in range {
            let b = &self.blocks[i];
            let key = self.last_key(i);
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&b.offset.to_le_bytes());
            out.extend_from_slice(&b.stored_len.to_le_bytes());
            out.extend_from_slice(&b.entries.to_le_bytes());
        }
        out
    }

    /// Decodes and validates an index-block plaintext: at least one block, every block
    /// non-empty with a non-zero length, blocks contiguous, last keys non-decreasing.
    ///
    /// # Errors
    /// A [`DecodeError`] (context `"run index block"`). Never panics.
    pub(crate) fn decode(bytes: &[u8]) -> Result<BlockIndex, DecodeError> {
        let mut r: ByteReader<'_> = ByteReader::new("run index block", bytes);
        if bytes.len() > MAX_RUN_INDEX_LEN {
            return Err(r.err(DecodeErrorKind::LengthTooLarge {
                what: "index block",
                len: bytes.len() as u64,
                max: MAX_RUN_INDEX_LEN as u64,
            }));
        }
        let count = r.count(
            LenPrefix::U32,
            "index entries",
            MIN_ENTRY,
            u64::from(u32::MAX),
        )?;
        if count == 0 {
            return Err(r.back(4).err(DecodeErrorKind::Invalid {
                what: "index without blocks",
            }));
        }
        let mut index = BlockIndex::new();
        index.blocks.reserve_exact(count);
        let mut prev: Option<(usize, u64)> = None; // (start of previous key, end offset)
        for _ in 0..count {
            let at = r.pos();
            let key = r.prefixed(LenPrefix::U16, "last key", MAX_RUN_KEY_LEN)?;
            let offset = r.u64()?;
            let stored_len = r.u32()?;
            let entries = r.u32()?;
            let invalid = |what| r.err_at(at, DecodeErrorKind::Invalid { what });
            if stored_len == 0 || entries == 0 {
                return Err(invalid("empty data block"));
            }
            if let Some((key_start, end)) = prev {
                if offset != end {
                    return Err(invalid("data blocks not contiguous"));
                }
                if &index.keys[key_start..] > key {
                    return Err(invalid("last keys decrease"));
                }
            }
            let Some(end) = offset.checked_add(u64::from(stored_len)) else {
                return Err(invalid("data block offset overflows"));
            };
            prev = Some((index.keys.len(), end));
            index.push(key, offset, stored_len, entries);
        }
        r.finish()?;
        index.heads = Heads::build(index.len(), |i| index.last_key(i));
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BlockIndex {
        let mut i = BlockIndex::new();
        i.push(b"b", 104, 50, 3);
        i.push(b"b", 154, 60, 1);
        i.push(b"d", 214, 10, 2);
        i
    }

    #[test]
    fn round_trip_and_block_for() {
        let i = sample();
        let bytes = i.encode();
        assert_eq!(bytes.len(), i.encoded_len());
        let d = BlockIndex::decode(&bytes).unwrap();
        assert_eq!(d, i);
        assert_eq!(d.len(), 3);
        assert_eq!(d.last_key(2), b"d");
        assert_eq!(d.entry(1).unwrap().offset, 154);
        assert_eq!(d.block_for(b"a"), Some(0));
        assert_eq!(d.block_for(b"b"), Some(0));
        assert_eq!(d.block_for(b"c"), Some(2));
        assert_eq!(d.block_for(b"d"), Some(2));
        assert_eq!(d.block_for(b"e"), None);
        assert_eq!(i.encoded_len_with(b"xyz"), i.encoded_len() + 21);
    }

    proptest::proptest! {
        /// The decoded index's head-guided search finds what a linear scan finds.
        #[test]
        fn block_for_matches_a_linear_scan(
            mut keys in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(vec![0u8, 1, 0x61, 0xff]), 0..12),
                1..40,
            ),
            shared in proptest::collection::vec(proptest::sample::select(vec![0u8, 0x61]), 0..10),
            probes in proptest::collection::vec(
                proptest::collection::vec(proptest::sample::select(vec![0u8, 1, 0x61, 0xff]), 0..22),
                1..30,
            ),
        ) {
            keys.sort();
            let mut index = BlockIndex::new();
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| [shared.as_slice(), k].concat()).collect();
            for (i, k) in keys.iter().enumerate() {
                index.push(k, 104 + 10 * i as u64, 10, 1);
            }
            let decoded = BlockIndex::decode(&index.encode()).unwrap();
            for probe in probes {
                for key in [probe.clone(), [shared.as_slice(), &probe].concat()] {
                    let linear = keys.iter().position(|k| k.as_slice() >= key.as_slice());
                    proptest::prop_assert_eq!(decoded.block_for(&key), linear);
                }
            }
        }
    }

    #[test]
    fn invalid_indexes_are_rejected() {
        let mut gap = BlockIndex::new();
        gap.push(b"a", 104, 10, 1);
        gap.push(b"b", 115, 10, 1);
        let mut down = BlockIndex::new();
        down.push(b"b", 104, 10, 1);
        down.push(b"a", 114, 10, 1);
        let mut empty = BlockIndex::new();
        empty.push(b"a", 104, 10, 0);
        let mut overflow = BlockIndex::new();
        overflow.push(b"a", u64::MAX - 1, 10, 1);
        for bad in [gap, down, empty, overflow] {
            assert!(BlockIndex::decode(&bad.encode()).is_err(), "{bad:?}");
        }
        assert!(BlockIndex::decode(&BlockIndex::new().encode()).is_err());
        let good = sample().encode();
        for cut in 0..good.len() {
            assert!(BlockIndex::decode(&good[..cut]).is_err());
        }
        let mut trailing = good;
        trailing.push(0);
        assert!(BlockIndex::decode(&trailing).is_err());
    }
}
