//! Run files: the sorted runs of the disk-resident LSM (the project's "incremental
//! checkpoint files"), checkpoint format version 3 (version 2 is still read).
//!
//! A run file holds entries `(user_key, lsn, kind, value)` sorted by user key ascending,
//! then LSN **descending** (newest version of a key first), in blocks that are each
//! sealed (XChaCha20-Poly1305, a fresh random nonce per block) or, without a key,
//! followed by a SHA-256 integrity digest:
//!
//! ```text
//! header (104) | data block* | index block per partition | filter block per partition
//!              | meta block (ends with the partition directory) | footer (48)
//! ```
//!
//! Every block's associated data binds it to its file (the header, which holds a random
//! per-file nonce), its kind, its ordinal (data block or partition number) and its byte
//! offset; the meta block's also binds the whole header and the footer. The byte-level
//! specification is `docs/FORMAT.md`, "Run files (checkpoint format versions 3 and 2)".
//!
//! * [`RunWriter`] streams entries into `<dir>/run-<file_id:020>.ckpt.tmp`, and `finish`
//!   publishes it (fsync, rename, directory fsync).
//! * [`RunFile::open`] authenticates the header, footer and meta block (and checks the
//!   partition directory); [`RunFile::load_partition`] one partition's index and filter
//!   blocks ([`TablePartition`]); [`RunFile::read_block`] reads, authenticates,
//!   decompresses and decodes one [`DataBlock`]; [`RunFile::verify`] checks every block.
//!
//! Module map: `header.rs` (the 104-byte header), `seal.rs` (the block envelope: AAD,
//! nonce, compression), `block.rs` (data blocks), `index.rs`, `filter.rs` (bloom filter),
//! `meta.rs`, `directory.rs` (the partition directory), `footer.rs`, `writer.rs`,
//! `reader.rs`.

mod block;
mod directory;
mod filter;
mod footer;
mod header;
mod heads;
mod index;
mod meta;
mod reader;
mod seal;
mod writer;

pub use block::{DataBlock, EntryPos, EntryRef, decode_data_block};
pub use footer::{FooterProblem, RUN_FOOTER_LEN, RUN_FOOTER_MAGIC};
pub use header::{
    MIN_RUN_FILE_VERSION, RUN_FILE_VERSION, RUN_HEADER_LEN, RunHeader, RunHeaderProblem,
};
pub use heads::Heads;
pub use reader::{RunFile, TablePartition};
pub use seal::decode_block_body;
pub use writer::RunWriter;

use crate::error::CheckpointError;
use crate::header::Algorithm;
use aedb_fs::FileSystem;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Longest user key a run file holds: 65 535 bytes (a `u16` length).
pub const MAX_RUN_KEY_LEN: usize = u16::MAX as usize;
/// Longest value a run file holds: 16 MiB.
pub const MAX_RUN_VALUE_LEN: usize = 16 * 1024 * 1024;
/// Bytes an entry takes in a data block besides its key and value:
/// `key_len u16 + lsn u64 + kind u8 + value_len u32`.
pub const RUN_ENTRY_OVERHEAD: usize = 2 + 8 + 1 + 4;
/// Largest data-block plaintext: one entry with the longest key and value,
/// `4 + 15 + 65 535 + 16 MiB` bytes (16 MiB + 64 KiB + 18). Checked before any
/// decompression buffer is allocated.
pub const MAX_DATA_BLOCK_LEN: usize = 4 + RUN_ENTRY_OVERHEAD + MAX_RUN_KEY_LEN + MAX_RUN_VALUE_LEN;
/// Largest index-block or filter-block plaintext (of one partition): 256 MiB. A writer
/// whose partition would need more fails with [`CheckpointError::RunTooLarge`].
pub const MAX_RUN_INDEX_LEN: usize = 256 * 1024 * 1024;
/// Largest meta-block plaintext: 16 MiB (its fixed fields, two keys and, in version 3,
/// the partition directory: a few dozen bytes per partition; a writer whose directory
/// would pass it fails with [`CheckpointError::RunTooLarge`]).
pub const MAX_RUN_META_LEN: usize = 16 * 1024 * 1024;
/// Default target plaintext size of an index partition (version 3): 4096 bytes, about a
/// hundred data blocks with short keys.
pub const DEFAULT_RUN_PARTITION_SIZE: usize = 4096;
/// Default target plaintext size of a data block.
pub const DEFAULT_RUN_BLOCK_SIZE: usize = 4096;
/// Largest allowed [`RunOptions::block_size`].
pub const MAX_RUN_BLOCK_SIZE: usize = 16 * 1024 * 1024;
/// Default bloom-filter bits per distinct user key (about 1 % false positives).
pub const DEFAULT_BLOOM_BITS_PER_KEY: u32 = 10;
/// Largest allowed [`RunOptions::bloom_bits_per_key`].
pub const MAX_BLOOM_BITS_PER_KEY: u32 = 64;
/// File-name prefix of run files.
pub const RUN_FILE_PREFIX: &str = "run-";
const RUN_EXTENSION: &str = ".ckpt";
const TMP_SUFFIX: &str = ".tmp";

/// What an entry records for its key at its LSN. The id is stored in data blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    /// Id 1: the key holds the entry's value from this LSN on.
    Put = 1,
    /// Id 2: a tombstone; the key is deleted from this LSN on. Its value is empty.
    Delete = 2,
}

impl EntryKind {
    /// The on-disk id.
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// Parses an on-disk id.
    pub const fn from_id(id: u8) -> Option<EntryKind> {
        match id {
            1 => Some(EntryKind::Put),
            2 => Some(EntryKind::Delete),
            _ => None,
        }
    }
}

/// How block plaintexts are compressed before sealing. The id is stored in the header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Id 0: stored as they are.
    #[default]
    None,
    /// Id 1: LZ4 block format with the uncompressed size prepended (`lz4_flex`'s
    /// `compress_prepend_size`).
    Lz4,
}

impl Compression {
    /// The on-disk id.
    pub const fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
        }
    }

    /// Parses an on-disk id.
    pub const fn from_id(id: u8) -> Option<Compression> {
        match id {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
        })
    }
}

/// How a [`RunWriter`] lays out its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Target plaintext bytes per data block, `1 ..= 16 MiB` (default 4096). A block is
    /// closed before the entry that would take it past this size; an entry larger than
    /// the target gets a block of its own.
    pub block_size: usize,
    /// Bloom-filter bits per distinct user key, `0 ..= 64` (default 10; 0 = no filter:
    /// [`TablePartition::may_contain`] is always true).
    pub bloom_bits_per_key: u32,
    /// Block compression (default none).
    pub compression: Compression,
    /// Target plaintext bytes of an index partition, `1 ..= 256 MiB` (default 4096). A
    /// partition of the block index and bloom filter is closed after the data block
    /// that takes its index past this size, so a point read loads one partition of
    /// about this size (and its filter) rather than the whole run's tables. 1 gives
    /// every data block its own partition.
    pub partition_size: usize,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            block_size: DEFAULT_RUN_BLOCK_SIZE,
            bloom_bits_per_key: DEFAULT_BLOOM_BITS_PER_KEY,
            compression: Compression::None,
            partition_size: DEFAULT_RUN_PARTITION_SIZE,
        }
    }
}

impl RunOptions {
    /// Checks every field against its range.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidRunOptions`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if !(1..=MAX_RUN_BLOCK_SIZE).contains(&self.block_size) {
            return Err(CheckpointError::InvalidRunOptions {
                option: "block_size",
                value: self.block_size as u64,
                reason: "must be between 1 and 16 MiB",
            });
        }
        if !(1..=MAX_RUN_INDEX_LEN).contains(&self.partition_size) {
            return Err(CheckpointError::InvalidRunOptions {
                option: "partition_size",
                value: self.partition_size as u64,
                reason: "must be between 1 and 256 MiB",
            });
        }
        if self.bloom_bits_per_key > MAX_BLOOM_BITS_PER_KEY {
            return Err(CheckpointError::InvalidRunOptions {
                option: "bloom_bits_per_key",
                value: u64::from(self.bloom_bits_per_key),
                reason: "must be between 0 and 64",
            });
        }
        Ok(())
    }
}

/// What a new run file is: which database, which file id, which key epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunFileMeta {
    /// The database the run belongs to.
    pub database: DatabaseId,
    /// The run's file id (unique within the database; also its file name).
    pub file_id: u64,
    /// The epoch of the key passed to the writer (recorded; informational without a key).
    pub epoch: KeyEpoch,
}

/// A run file written and made durable by [`RunWriter::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    /// The run's file id.
    pub file_id: u64,
    /// File name (`run-<file_id:020>.ckpt`).
    pub file_name: String,
    /// Final path of the file.
    pub path: PathBuf,
    /// File length in bytes.
    pub len: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// The key epoch recorded in the header.
    pub epoch: KeyEpoch,
    /// The smallest user key.
    pub first_key: Vec<u8>,
    /// The largest user key.
    pub last_key: Vec<u8>,
    /// The smallest LSN of any entry.
    pub min_lsn: Lsn,
    /// The largest LSN of any entry.
    pub max_lsn: Lsn,
    /// Number of entries (versions).
    pub entries: u64,
    /// Number of [`EntryKind::Delete`] entries.
    pub tombstones: u64,
}

/// The kinds of blocks in a run file. The id is part of every block's associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockKind {
    /// Id 1: entries.
    Data = 1,
    /// Id 2: one entry per data block (last key, offset, length, entry count).
    Index = 2,
    /// Id 3: the bloom filter over user keys.
    Filter = 3,
    /// Id 4: counts, key and LSN bounds.
    Meta = 4,
}

impl BlockKind {
    /// The id bound into the block's associated data.
    pub const fn id(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for BlockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockKind::Data => "data",
            BlockKind::Index => "index",
            BlockKind::Filter => "filter",
            BlockKind::Meta => "meta",
        })
    }
}

/// The file name of run file `file_id`: `run-` + 20 zero-padded digits + `.ckpt`, so
/// lexical order is file-id order. Run files live in `<data_dir>/checkpoints/` beside the
/// full checkpoints (whose names are bare digits; neither lister matches the other's).
pub fn run_file_name(file_id: u64) -> String {
    format!("{RUN_FILE_PREFIX}{file_id:020}{RUN_EXTENSION}")
}

/// Parses a run file name (exactly `run-` + 20 ASCII digits + `.ckpt`).
pub fn parse_run_file_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(RUN_FILE_PREFIX)?
        .strip_suffix(RUN_EXTENSION)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()
}

/// `<data_dir>/checkpoints/run-<file_id:020>.ckpt`.
pub fn run_path(data_dir: &Path, file_id: u64) -> PathBuf {
    crate::checkpoint_file::checkpoints_dir(data_dir).join(run_file_name(file_id))
}

/// Lists the run files (`run-<id>.ckpt`) in `dir` in ascending file-id order. Temporary
/// files and other names are ignored; a missing directory yields an empty list. Nothing
/// is opened or verified.
///
/// # Errors
/// I/O errors reading the directory.
pub fn list_run_files(
    fs: &dyn FileSystem,
    dir: &Path,
) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let mut out: Vec<(u64, PathBuf)> = list_dir(fs, dir)?
        .into_iter()
        .filter_map(|p| Some((file_name(&p).and_then(parse_run_file_name)?, p)))
        .collect();
    out.sort();
    Ok(out)
}

/// Removes `run-<id>.ckpt.tmp` files left in `dir` by a crash while a run was written,
/// fsyncs the directory if it removed any, and returns their paths. Call only while no
/// [`RunWriter`] is active in `dir`.
///
/// # Errors
/// I/O errors.
pub fn remove_stale_run_temp_files(
    fs: &dyn FileSystem,
    dir: &Path,
) -> Result<Vec<PathBuf>, CheckpointError> {
    let mut removed = Vec::new();
    for p in list_dir(fs, dir)? {
        let is_tmp = file_name(&p)
            .and_then(|n| n.strip_suffix(TMP_SUFFIX))
            .and_then(parse_run_file_name)
            .is_some();
        if is_tmp {
            fs.remove_file(&p).map_err(io_err("remove", &p))?;
            removed.push(p);
        }
    }
    if !removed.is_empty() {
        fs.sync_dir(dir).map_err(io_err("fsync directory", dir))?;
    }
    Ok(removed)
}

fn list_dir(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    match fs.read_dir(dir) {
        Ok(entries) => Ok(entries),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("list", dir)(e)),
    }
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

/// The capacity a thread's reused read buffers (the reader's scratch, a data block's
/// packing buffer) keep between reads.
pub(crate) const SCRATCH_KEEP: usize = 64 << 10;

/// Releases a thread's reused buffer if one large block grew it past [`SCRATCH_KEEP`], so
/// many reader threads hold a few KiB each whatever block size runs are cut into.
pub(crate) fn trim_scratch(buf: &mut Vec<u8>) {
    if buf.capacity() > SCRATCH_KEEP {
        *buf = Vec::new();
    }
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CheckpointError + 'a {
    move |source| CheckpointError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Decodes the plaintext of a block of `kind` exactly as the reader does after
/// authentication and decompression, and returns its canonical re-encoding (for the
/// `run_block` fuzz target: whatever decodes must re-encode to the same bytes).
///
/// # Errors
/// The decoder's [`aedb_types::DecodeError`]. Never panics.
#[doc(hidden)]
pub fn decode_run_block(kind: BlockKind, bytes: &[u8]) -> Result<Vec<u8>, aedb_types::DecodeError> {
    match kind {
        BlockKind::Data => {
            let decoded = block::DataBlock::decode(bytes)?;
            let mut builder = block::BlockBuilder::new(bytes.len());
            for e in decoded.iter() {
                builder.push(e.key, e.lsn, e.kind, e.value);
            }
            Ok(builder.take())
        }
        BlockKind::Index => Ok(index::BlockIndex::decode(bytes)?.encode()),
        BlockKind::Filter => Ok(filter::BloomFilter::decode(bytes)?.encode()),
        // Version 3's meta block (with the directory) first, else version 2's.
        BlockKind::Meta => meta::RunMeta::decode(bytes, true)
            .or_else(|_| meta::RunMeta::decode(bytes, false))
            .map(|m| m.encode()),
    }
}

/// The algorithm a writer with (or without) a key uses.
pub(crate) fn algorithm_for(sealed: bool) -> Algorithm {
    if sealed {
        Algorithm::XChaCha20Poly1305
    } else {
        Algorithm::PlaintextSha256
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_lexically() {
        assert_eq!(run_file_name(7), "run-00000000000000000007.ckpt");
        assert_eq!(
            parse_run_file_name("run-00000000000000000007.ckpt"),
            Some(7)
        );
        assert_eq!(
            parse_run_file_name(&run_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        for bad in [
            "run-7.ckpt",
            "00000000000000000007.ckpt",
            "run-0000000000000000000x.ckpt",
            "run-00000000000000000007.ckpt.tmp",
            "run-99999999999999999999.ckpt",
            "run-+0000000000000000007.ckpt",
            "RUN-00000000000000000007.ckpt",
        ] {
            assert_eq!(parse_run_file_name(bad), None, "{bad}");
        }
        assert!(run_file_name(9) < run_file_name(10));
        // Full-checkpoint names and run names never parse as each other.
        assert_eq!(crate::parse_checkpoint_file_name(&run_file_name(7)), None);
        assert_eq!(
            parse_run_file_name(&crate::checkpoint_file_name(Lsn::new(7))),
            None
        );
    }

    #[test]
    fn decode_run_block_re_encodes_every_kind_canonically() {
        let mut data = block::BlockBuilder::new(64);
        data.push(b"a", Lsn::new(3), EntryKind::Put, b"v");
        data.push(b"a", Lsn::new(1), EntryKind::Delete, b"");
        let data = data.take();
        let mut index = index::BlockIndex::new();
        index.push(b"a", 104, 80, 2);
        let filter = filter::BloomFilter::build(&[filter::key_hash(b"a")], 10);
        let meta = meta::RunMeta {
            entries: 2,
            distinct_keys: 1,
            tombstones: 1,
            data_blocks: 1,
            first_key: b"a".to_vec(),
            last_key: b"a".to_vec(),
            min_lsn: Lsn::new(1),
            max_lsn: Lsn::new(3),
            raw_key_bytes: 2,
            raw_value_bytes: 1,
            directory: None,
        };
        for (kind, bytes) in [
            (BlockKind::Data, data),
            (BlockKind::Index, index.encode()),
            (BlockKind::Filter, filter.encode()),
            (BlockKind::Meta, meta.encode()),
        ] {
            assert_eq!(decode_run_block(kind, &bytes).unwrap(), bytes, "{kind}");
            assert!(decode_run_block(kind, &bytes[..bytes.len() - 1]).is_err());
        }
    }

    #[test]
    fn ids_and_option_ranges() {
        for kind in [EntryKind::Put, EntryKind::Delete] {
            assert_eq!(EntryKind::from_id(kind.id()), Some(kind));
        }
        assert_eq!(EntryKind::from_id(0), None);
        assert_eq!(EntryKind::from_id(3), None);
        for c in [Compression::None, Compression::Lz4] {
            assert_eq!(Compression::from_id(c.id()), Some(c));
        }
        assert_eq!(Compression::from_id(2), None);
        assert_eq!(MAX_DATA_BLOCK_LEN, 16 * 1024 * 1024 + 64 * 1024 + 18);
        RunOptions::default().validate().unwrap();
        for bad in [
            RunOptions {
                block_size: 0,
                ..RunOptions::default()
            },
            RunOptions {
                block_size: MAX_RUN_BLOCK_SIZE + 1,
                ..RunOptions::default()
            },
            RunOptions {
                bloom_bits_per_key: 65,
                ..RunOptions::default()
            },
            RunOptions {
                partition_size: 0,
                ..RunOptions::default()
            },
        ] {
            assert!(matches!(
                bad.validate(),
                Err(CheckpointError::InvalidRunOptions { .. })
            ));
        }
    }
}
