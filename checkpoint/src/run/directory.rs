//! The partition directory (run-file version 3): which data blocks each *partition* of
//! the block index and bloom filter covers, and where its index and filter blocks are.
//! It is the tail of the version-3 meta block, so an open run holds it (a few dozen
//! bytes per partition) and a point read loads only the one partition it needs.
//!
//! ```text
//! partitions u32 (>= 1) || partition*partitions
//! partition = last_key_len u16 || last_key || blocks u32 (>= 1) || entries u64 (>= blocks)
//!          || data_len u64 || index_len u32 || filter_len u32
//! ```
//!
//! Partition `p` covers the `blocks` data blocks after those of partitions `0..p`, which
//! hold `entries` entries in `data_len` stored bytes; its index block (`index_len`
//! stored bytes) follows the partitions before it in the index region, its filter block
//! likewise in the filter region. `last_key` is the user key of its last block's last
//! entry; last keys never decrease. Offsets are not stored: they are the running sums,
//! computed when the directory is decoded ([`PartitionEntry`]), and the reader checks
//! that the sums tile the data, index and filter regions the footer names.
//!
//! A version-2 file has no directory; the reader treats its one index block and one
//! filter block as a single partition ([`Directory::single`]).

use crate::run::MAX_RUN_KEY_LEN;
use crate::run::heads::Heads;
use aedb_types::{ByteReader, DecodeError, DecodeErrorKind, LenPrefix};

/// Smallest encoded partition record: an empty key and the five numbers.
pub(crate) const MIN_PARTITION: usize = 2 + 4 + 8 + 8 + 4 + 4;

/// The stored fields of one partition, as the writer records them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartitionFields {
    /// Number of data blocks.
    pub(crate) blocks: u32,
    /// Number of entries in them.
    pub(crate) entries: u64,
    /// Stored bytes of its data blocks.
    pub(crate) data_len: u64,
    /// Stored length of its index block.
    pub(crate) index_len: u32,
    /// Stored length of its filter block.
    pub(crate) filter_len: u32,
}

/// Running sums of [`PartitionFields`] over consecutive partitions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sums {
    pub(crate) blocks: u64,
    pub(crate) entries: u64,
    pub(crate) data_len: u64,
    pub(crate) index_len: u64,
    pub(crate) filter_len: u64,
}

impl Sums {
    /// These sums with `f` added; `None` on overflow.
    fn plus(&self, f: &PartitionFields) -> Option<Sums> {
        Some(Sums {
            blocks: self.blocks.checked_add(u64::from(f.blocks))?,
            entries: self.entries.checked_add(f.entries)?,
            data_len: self.data_len.checked_add(f.data_len)?,
            index_len: self.index_len.checked_add(u64::from(f.index_len))?,
            filter_len: self.filter_len.checked_add(u64::from(f.filter_len))?,
        })
    }
}

/// One partition: its stored fields, and the sums over the partitions before it, which
/// place it: `before.blocks` is its first block's ordinal, `before.data_len` where its
/// data starts (from the first data block), `before.index_len` / `before.filter_len`
/// where its index / filter block starts in the index / filter region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartitionEntry {
    /// End of this partition's last key in [`Directory::keys`].
    key_end: u32,
    /// What the directory stores for it.
    pub(crate) fields: PartitionFields,
    /// The sums over the partitions before it.
    pub(crate) before: Sums,
}

/// The decoded directory: last keys in one buffer, one record per partition, and (once
/// decoded) the last keys' [`Heads`] for [`Directory::partition_for`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Directory {
    keys: Vec<u8>,
    parts: Vec<PartitionEntry>,
    totals: Sums,
    /// The heads of the last keys: built by [`Directory::decode`] and
    /// [`Directory::single`] (what readers hold), empty while a writer pushes.
    heads: Heads,
}

/// Equal when the partitions are (the heads are derived from them).
impl PartialEq for Directory {
    fn eq(&self, other: &Directory) -> bool {
        (&self.keys, &self.parts, self.totals) == (&other.keys, &other.parts, other.totals)
    }
}

impl Eq for Directory {}

impl Directory {
    /// The directory of a version-2 file: one partition covering everything.
    pub(crate) fn single(last_key: &[u8], fields: PartitionFields) -> Directory {
        let mut d = Directory::default();
        // Cannot overflow: the sums start at zero.
        let _ = d.push(last_key, fields);
        d.index_keys();
        d
    }

    /// Number of partitions.
    pub(crate) fn len(&self) -> usize {
        self.parts.len()
    }

    /// Every partition, in order.
    pub(crate) fn entries(&self) -> &[PartitionEntry] {
        &self.parts
    }

    /// Partition `p`.
    pub(crate) fn entry(&self, p: usize) -> Option<&PartitionEntry> {
        self.parts.get(p)
    }

    /// The sums over all partitions.
    pub(crate) fn totals(&self) -> Sums {
        self.totals
    }

    /// The user key of partition `p`'s last entry.
    pub(crate) fn last_key(&self, p: usize) -> &[u8] {
        let start = match p {
            0 => 0,
            _ => self.parts[p - 1].key_end as usize,
        };
        &self.keys[start..self.parts[p].key_end as usize]
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.keys.capacity()
            + self.parts.capacity() * std::mem::size_of::<PartitionEntry>()
            + self.heads.heap_len()
    }

    /// Appends a partition after the others; `None` if a running sum would overflow.
    pub(crate) fn push(&mut self, last_key: &[u8], f: PartitionFields) -> Option<()> {
        let before = self.totals;
        let next = before.plus(&f)?;
        // Block ordinals are u32 (the meta block's count).
        u32::try_from(next.blocks).ok()?;
        let key_end = u32::try_from(self.keys.len() + last_key.len()).ok()?;
        self.keys.extend_from_slice(last_key);
        self.parts.push(PartitionEntry {
            key_end,
            fields: f,
            before,
        });
        self.totals = next;
        Some(())
    }

    /// The first partition whose last key is `>= key`: the only one whose filter and
    /// index can hold the key's newest version. `None` past the last key.
    pub(crate) fn partition_for(&self, key: &[u8]) -> Option<usize> {
        debug_assert_eq!(
            self.heads.len(),
            self.parts.len(),
            "only a decoded directory answers lookups"
        );
        let p = self.heads.search(key, |p| self.last_key(p) < key);
        (p < self.parts.len()).then_some(p)
    }

    /// Builds the heads of the last keys (what a reader's lookups search).
    fn index_keys(&mut self) {
        self.heads = Heads::build(self.parts.len(), |p| self.last_key(p));
    }

    /// The partition holding data block `block`, if the run has that block.
    pub(crate) fn partition_of_block(&self, block: usize) -> Option<usize> {
        let p = self
            .parts
            .partition_point(|e| e.before.blocks + u64::from(e.fields.blocks) <= block as u64);
        (p < self.parts.len()).then_some(p)
    }

    /// Size of [`Directory::encode`]'s output.
    #[cfg(test)]
    pub(crate) fn encoded_len(&self) -> usize {
        4 + self.parts.len() * MIN_PARTITION + self.keys.len()
    }

    /// Appends the encoding to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.parts.len() as u32).to_le_bytes());
        for (p, e) in self.parts.iter().enumerate() {
            let (key, e) = (self.last_key(p), &e.fields);
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&e.blocks.to_le_bytes());
            out.extend_from_slice(&e.entries.to_le_bytes());
            out.extend_from_slice(&e.data_len.to_le_bytes());
            out.extend_from_slice(&e.index_len.to_le_bytes());
            out.extend_from_slice(&e.filter_len.to_le_bytes());
        }
    }

    /// Decodes a directory from `r` and validates it on its own: at least one
    /// partition, each with at least one block, at least one entry per block and
    /// non-empty data, index and filter blocks, last keys non-decreasing, running sums
    /// without overflow. (The reader checks the sums against the meta block and footer.)
    ///
    /// # Errors
    /// A [`DecodeError`] in `r`'s context. Never panics.
    pub(crate) fn decode(r: &mut ByteReader<'_>) -> Result<Directory, DecodeError> {
        let count = r.count(
            LenPrefix::U32,
            "partitions",
            MIN_PARTITION,
            u64::from(u32::MAX),
        )?;
        if count == 0 {
            return Err(r.back(4).err(DecodeErrorKind::Invalid {
                what: "directory without partitions",
            }));
        }
        let mut d = Directory::default();
        d.parts.reserve_exact(count);
        for p in 0..count {
            let at = r.pos();
            let key = r.prefixed(LenPrefix::U16, "partition last key", MAX_RUN_KEY_LEN)?;
            let fields = PartitionFields {
                blocks: r.u32()?,
                entries: r.u64()?,
                data_len: r.u64()?,
                index_len: r.u32()?,
                filter_len: r.u32()?,
            };
            let invalid = |what| r.err_at(at, DecodeErrorKind::Invalid { what });
            if fields.blocks == 0
                || fields.entries < u64::from(fields.blocks)
                || fields.data_len == 0
                || fields.index_len == 0
                || fields.filter_len == 0
            {
                return Err(invalid("empty partition"));
            }
            if p > 0 && d.last_key(p - 1) > key {
                return Err(invalid("partition last keys decrease"));
            }
            if d.push(key, fields).is_none() {
                return Err(invalid("partition sums overflow"));
            }
        }
        d.index_keys();
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(blocks: u32) -> PartitionFields {
        PartitionFields {
            blocks,
            entries: u64::from(blocks) * 3,
            data_len: u64::from(blocks) * 100,
            index_len: 40,
            filter_len: 30,
        }
    }

    fn sample() -> Directory {
        let mut d = Directory::default();
        d.push(b"c", fields(2)).unwrap();
        d.push(b"c", fields(1)).unwrap();
        d.push(b"f", fields(4)).unwrap();
        d
    }

    fn decode(bytes: &[u8]) -> Result<Directory, DecodeError> {
        let mut r = ByteReader::new("test directory", bytes);
        let d = Directory::decode(&mut r)?;
        r.finish()?;
        Ok(d)
    }

    #[test]
    fn round_trip_sums_and_lookups() {
        let d = sample();
        let mut bytes = Vec::new();
        d.encode(&mut bytes);
        assert_eq!(bytes.len(), d.encoded_len());
        assert_eq!(decode(&bytes).unwrap(), d);
        // Lookups are a reader's: on the decoded directory.
        let d = decode(&bytes).unwrap();
        let e = d.entry(2).unwrap();
        assert_eq!(e.fields, fields(4));
        assert_eq!(
            e.before,
            Sums {
                blocks: 3,
                entries: 9,
                data_len: 300,
                index_len: 80,
                filter_len: 60
            }
        );
        assert_eq!(
            d.totals(),
            Sums {
                blocks: 7,
                entries: 21,
                data_len: 700,
                index_len: 120,
                filter_len: 90
            }
        );
        assert_eq!(d.partition_for(b"a"), Some(0));
        assert_eq!(d.partition_for(b"c"), Some(0));
        assert_eq!(d.partition_for(b"d"), Some(2));
        assert_eq!(d.partition_for(b"f"), Some(2));
        assert_eq!(d.partition_for(b"g"), None);
        let owners: Vec<_> = (0..8).map(|b| d.partition_of_block(b)).collect();
        assert_eq!(
            owners,
            [
                Some(0),
                Some(0),
                Some(1),
                Some(2),
                Some(2),
                Some(2),
                Some(2),
                None
            ]
        );
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn invalid_directories_are_rejected() {
        let mut down = Directory::default();
        down.push(b"b", fields(1)).unwrap();
        down.push(b"a", fields(1)).unwrap();
        let mut empty_blocks = Directory::default();
        empty_blocks.push(b"a", fields(0)).unwrap();
        let mut few_entries = Directory::default();
        few_entries
            .push(
                b"a",
                PartitionFields {
                    entries: 1,
                    ..fields(2)
                },
            )
            .unwrap();
        let mut no_filter = Directory::default();
        no_filter
            .push(
                b"a",
                PartitionFields {
                    filter_len: 0,
                    ..fields(1)
                },
            )
            .unwrap();
        for bad in [
            down,
            empty_blocks,
            few_entries,
            no_filter,
            Directory::default(),
        ] {
            let mut bytes = Vec::new();
            bad.encode(&mut bytes);
            assert!(decode(&bytes).is_err(), "{bad:?}");
        }
        // The overflow refused by `push` is refused by the decoder too.
        let mut overflow = Vec::new();
        Directory::single(
            b"a",
            PartitionFields {
                data_len: u64::MAX,
                ..fields(1)
            },
        )
        .encode(&mut overflow);
        let one = overflow[4..].to_vec();
        overflow[..4].copy_from_slice(&2u32.to_le_bytes());
        overflow.extend_from_slice(&one);
        assert!(decode(&overflow).is_err());
    }
}
