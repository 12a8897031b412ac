//! [`RunFile`]: an open, authenticated run file. Opening reads and authenticates the
//! header, footer and meta block (with the partition directory) only, so an open run
//! holds about a hundred bytes per partition and no per-block or per-key metadata;
//! [`RunFile::load_partition`] reads one partition's index and filter blocks
//! ([`TablePartition`]: the caller decides how long to keep them, a block cache in the
//! storage engine), and data blocks are read one at a time by [`RunFile::read_block`]
//! with a positioned read.

use crate::checkpoint_stream::OpenMode;
use crate::chunk::ChunkCipher;
use crate::error::{BlockProblem, CheckpointError};
use crate::header::Algorithm;
use crate::run::block::{DataBlock, run_order};
use crate::run::directory::{Directory, PartitionEntry, PartitionFields};
use crate::run::filter::BloomFilter;
use crate::run::footer::{Footer, FooterProblem, RUN_FOOTER_LEN};
use crate::run::header::{KEY_CHECK_OFFSET, RUN_FILE_VERSION, RUN_HEADER_LEN, RunHeader};
use crate::run::index::BlockIndex;
use crate::run::meta::RunMeta;
use crate::run::seal::{self, KEY_CHECK_DOMAIN};
use crate::run::{BlockKind, Compression, io_err, parse_run_file_name, trim_scratch};
use aedb_fs::{DiskFile, FileSystem, OpenMode as FsMode};
use aedb_keys::{EpochKey, SecretKey};
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// SHA-256 of the first `len` bytes of `file`, read in 1 MiB pieces.
pub(crate) fn hash_file(
    file: &dyn DiskFile,
    len: u64,
    path: &Path,
) -> Result<[u8; 32], CheckpointError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; (1 << 20).min(len as usize)];
    let mut at = 0u64;
    while at < len {
        let n = (len - at).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)
            .map_err(io_err("read", path))?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hasher.finalize().into())
}

/// Stored blocks up to this size are read into a per-thread scratch buffer when they are
/// LZ4 bodies (data blocks are ~4 KiB; larger ones are read into their own buffer).
const SCRATCH_MAX: usize = 1 << 20;

/// A thread's reusable buffers for reading LZ4 blocks: the stored bytes (opened in
/// place) and the decompressed plaintext (released after a read that grew them past
/// [`SCRATCH_KEEP`](crate::run::SCRATCH_KEEP)).
#[derive(Default)]
struct Scratch {
    stored: Vec<u8>,
    plain: Vec<u8>,
}

thread_local! {
    /// The scratch buffers of [`Blocks::with_plaintext`].
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Reads and opens stored blocks of one file.
struct Blocks<'a> {
    path: &'a Path,
    file: &'a dyn DiskFile,
    cipher: &'a ChunkCipher,
    header_bytes: &'a [u8; RUN_HEADER_LEN],
    compression: Compression,
}

impl Blocks<'_> {
    fn bad(
        &self,
        kind: BlockKind,
        block: u64,
        offset: u64,
        problem: BlockProblem,
    ) -> CheckpointError {
        CheckpointError::BadBlock {
            path: self.path.to_path_buf(),
            kind,
            block,
            offset,
            problem: Box::new(problem),
        }
    }

    /// Reads the `len` stored bytes at `offset`, authenticates them as block `ordinal`
    /// of `kind`, decompresses the body within the kind's limit and hands the plaintext
    /// to `decode`. An LZ4 block is read and decompressed in this thread's reusable
    /// buffers, so reading a block allocates only what `decode` keeps.
    fn with_plaintext<T>(
        &self,
        kind: BlockKind,
        ordinal: u64,
        offset: u64,
        len: u32,
        footer: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, CheckpointError>,
    ) -> Result<T, CheckpointError> {
        #[cfg(feature = "observability")]
        let _span = tracing::debug_span!(
            "aedb.run.open_block",
            kind = %kind,
            block = ordinal,
            bytes = len,
            sealed = self.cipher.is_sealed(),
        )
        .entered();
        let aad = seal::block_aad(self.header_bytes, kind, ordinal, offset, footer);
        let auth_failed = |_| CheckpointError::BlockAuthFailed {
            path: self.path.to_path_buf(),
            kind,
            block: ordinal,
            offset,
        };
        let bad = |problem| self.bad(kind, ordinal, offset, problem);
        let max = seal::max_plaintext(kind);
        if self.compression == Compression::Lz4 && len as usize <= SCRATCH_MAX {
            return SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let Scratch { stored, plain } = &mut *scratch;
                if stored.len() < len as usize {
                    stored.resize(len as usize, 0);
                }
                let stored = &mut stored[..len as usize];
                self.file
                    .read_exact_at(stored, offset)
                    .map_err(io_err("read", self.path))?;
                let body = seal::open_in_place(self.cipher, &aad, stored).map_err(auth_failed)?;
                let decoded = seal::decompress_lz4_into(&stored[body], max, plain)
                    .map_err(bad)
                    .and_then(|()| decode(plain));
                trim_scratch(&mut scratch.stored);
                trim_scratch(&mut scratch.plain);
                decoded
            });
        }
        let mut stored = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut stored, offset)
            .map_err(io_err("read", self.path))?;
        let body = seal::open_stored(self.cipher, &aad, stored).map_err(auth_failed)?;
        decode(&seal::decompress_body(self.compression, body, max).map_err(bad)?)
    }
}

/// An open run file: its authenticated header, footer and meta block (with the partition
/// directory), and a handle for positioned reads of its other blocks. It holds no per-key
/// or per-block metadata: a few hundred bytes plus about a hundred per partition (about one
/// partition per hundred data blocks). `Send + Sync`; share it in an `Arc`.
pub struct RunFile {
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    len: u64,
    header: RunHeader,
    header_bytes: [u8; RUN_HEADER_LEN],
    cipher: ChunkCipher,
    footer: Footer,
    meta: RunMeta,
    directory: Directory,
}

/// One partition of a run's lookup tables: the index records of its data blocks and the
/// bloom filter over their keys, authenticated and decoded by
/// [`RunFile::load_partition`]. What a point read or a seek needs beyond the data
/// blocks; the storage engine keeps partitions in its block cache, so their memory stays
/// under the cache's budget however large the runs are. (A version-2 run has one
/// partition covering all its blocks.)
#[derive(Debug)]
pub struct TablePartition {
    partition: usize,
    first_block: usize,
    index: BlockIndex,
    filter: BloomFilter,
}

impl TablePartition {
    /// Which partition of its run this is.
    pub fn partition(&self) -> usize {
        self.partition
    }

    /// The run's data blocks this partition covers.
    pub fn blocks(&self) -> std::ops::Range<usize> {
        self.first_block..self.first_block + self.index.len()
    }

    /// The bloom filter's answer for a key this partition is
    /// [`RunFile::partition_for`]: `false` means the run certainly holds no entry for
    /// `user_key`; `true` means it may.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.filter.may_contain(user_key)
    }

    /// The first block (a run-wide block number) whose last key is `>= user_key`: the
    /// only block that can hold the key's newest versions (older versions may continue
    /// in the following blocks, also past this partition). `None` if `user_key` is past
    /// this partition's last key.
    pub fn block_for(&self, user_key: &[u8]) -> Option<usize> {
        self.index.block_for(user_key).map(|b| self.first_block + b)
    }

    /// Bytes of memory the decoded partition holds (what a cache should charge for it).
    pub fn heap_bytes(&self) -> usize {
        self.index.heap_bytes() + self.filter.heap_bytes()
    }
}

impl fmt::Debug for RunFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunFile")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("len", &self.len)
            .field("entries", &self.meta.entries)
            .field("data_blocks", &self.meta.data_blocks)
            .finish_non_exhaustive()
    }
}

impl RunFile {
    /// Opens a **sealed** run file: reads and authenticates the header (key check), the
    /// footer and the meta block (which binds the whole header and footer); the index,
    /// filter and data blocks are authenticated when they are read. The key for
    /// the header's epoch comes from `key_for_epoch`. A plaintext-mode file is refused
    /// ([`CheckpointError::UnexpectedPlaintext`]: accepting it would be a downgrade); open
    /// those with [`RunFile::open_plaintext`], or choose with [`RunFile::open_with`].
    ///
    /// # Errors
    /// [`CheckpointError::BadRunHeader`], [`CheckpointError::WrongDatabase`],
    /// [`CheckpointError::UnexpectedPlaintext`], [`CheckpointError::UnknownEpoch`],
    /// [`CheckpointError::WrongKey`], [`CheckpointError::FileIdMismatch`],
    /// [`CheckpointError::BadFooter`], [`CheckpointError::BlockAuthFailed`],
    /// [`CheckpointError::BadBlock`], I/O errors.
    pub fn open(
        fs: &dyn FileSystem,
        path: &Path,
        database: DatabaseId,
        key_for_epoch: impl Fn(KeyEpoch) -> Option<SecretKey>,
    ) -> Result<RunFile, CheckpointError> {
        let lookup = |epoch: KeyEpoch| EpochKey::from(key_for_epoch(epoch));
        RunFile::open_with(fs, path, database, OpenMode::Sealed(&lookup))
    }

    /// Opens a **plaintext-mode** run file (instances without a checkpoint key). Its
    /// digests detect accidental corruption, not deliberate tampering. A sealed file is
    /// refused ([`CheckpointError::KeyRequired`]).
    ///
    /// # Errors
    /// As [`RunFile::open`].
    pub fn open_plaintext(
        fs: &dyn FileSystem,
        path: &Path,
        database: DatabaseId,
    ) -> Result<RunFile, CheckpointError> {
        RunFile::open_with(fs, path, database, OpenMode::Plaintext)
    }

    /// Opens a run file in the given mode ([`OpenMode::Sealed`] also reports retired
    /// epochs as [`CheckpointError::RetiredEpoch`]).
    ///
    /// # Errors
    /// As [`RunFile::open`], plus [`CheckpointError::KeyRequired`],
    /// [`CheckpointError::RetiredEpoch`].
    pub fn open_with(
        fs: &dyn FileSystem,
        path: &Path,
        database: DatabaseId,
        mode: OpenMode<'_>,
    ) -> Result<RunFile, CheckpointError> {
        let label = || path.to_path_buf();
        let file = fs
            .open(path, FsMode::Existing)
            .map_err(io_err("open", path))?;
        let len = file.len().map_err(io_err("stat", path))?;

        // Header.
        let mut header_bytes = [0u8; RUN_HEADER_LEN];
        let have = len.min(RUN_HEADER_LEN as u64) as usize;
        file.read_exact_at(&mut header_bytes[..have], 0)
            .map_err(io_err("read", path))?;
        let header = RunHeader::decode(&header_bytes[..have]).map_err(|problem| {
            CheckpointError::BadRunHeader {
                path: label(),
                problem,
            }
        })?;
        if header.database_id != database {
            return Err(CheckpointError::WrongDatabase {
                path: label(),
                expected: database,
                found: header.database_id,
            });
        }
        let cipher = match (mode, header.algorithm) {
            (OpenMode::Plaintext, Algorithm::PlaintextSha256) => ChunkCipher::new(None),
            (OpenMode::Plaintext, Algorithm::XChaCha20Poly1305) => {
                return Err(CheckpointError::KeyRequired {
                    path: label(),
                    epoch: header.epoch,
                });
            }
            (OpenMode::Sealed(_), Algorithm::PlaintextSha256) => {
                return Err(CheckpointError::UnexpectedPlaintext { path: label() });
            }
            (OpenMode::Sealed(lookup), Algorithm::XChaCha20Poly1305) => {
                let key = match lookup(header.epoch) {
                    EpochKey::Key(key) => key,
                    EpochKey::Unknown => {
                        return Err(CheckpointError::UnknownEpoch {
                            path: label(),
                            epoch: header.epoch,
                        });
                    }
                    EpochKey::Retired => {
                        return Err(CheckpointError::RetiredEpoch {
                            path: label(),
                            epoch: header.epoch,
                        });
                    }
                };
                let cipher = ChunkCipher::new(Some(&key));
                let mut aad = KEY_CHECK_DOMAIN.to_vec();
                aad.extend_from_slice(&header_bytes[..KEY_CHECK_OFFSET]);
                let mut tag = [0u8; crate::header::TAG_LEN];
                tag.copy_from_slice(&header.key_check);
                if cipher
                    .open_detached(KEY_CHECK_DOMAIN, &header.file_nonce, &aad, &mut [], &tag)
                    .is_err()
                {
                    return Err(CheckpointError::WrongKey {
                        path: label(),
                        epoch: header.epoch,
                    });
                }
                cipher
            }
        };
        let name_id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_run_file_name);
        if let Some(name_id) = name_id
            && name_id != header.file_id
        {
            return Err(CheckpointError::FileIdMismatch {
                path: label(),
                name_id,
                header_id: header.file_id,
            });
        }

        // Footer.
        let footer_at = len.saturating_sub(RUN_FOOTER_LEN as u64);
        let bad_footer = |problem| CheckpointError::BadFooter {
            path: label(),
            offset: footer_at,
            problem,
        };
        if len < (RUN_HEADER_LEN + RUN_FOOTER_LEN) as u64 {
            return Err(bad_footer(FooterProblem::Missing { len }));
        }
        let mut footer_bytes = [0u8; RUN_FOOTER_LEN];
        file.read_exact_at(&mut footer_bytes, footer_at)
            .map_err(io_err("read", path))?;
        let algorithm = header.algorithm;
        let footer = Footer::decode(&footer_bytes, len, seal::min_stored_len(algorithm))
            .map_err(bad_footer)?;

        let blocks = Blocks {
            path,
            file: &*file,
            cipher: &cipher,
            header_bytes: &header_bytes,
            compression: header.compression,
        };
        let too_large = |kind, offset, len: u32| {
            let max =
                seal::max_stored_len(algorithm, header.compression, seal::max_plaintext(kind));
            if u64::from(len) > max {
                Err(blocks.bad(
                    kind,
                    0,
                    offset,
                    BlockProblem::TooLarge {
                        len: u64::from(len),
                        max,
                    },
                ))
            } else {
                Ok(())
            }
        };
        // (Index and filter blocks are checked against the directory, below.)
        too_large(BlockKind::Meta, footer.meta_offset, footer.meta_len)?;

        // Meta: authenticates the whole header and the footer.
        let bad_meta = |problem| blocks.bad(BlockKind::Meta, 0, footer.meta_offset, problem);
        let partitioned = header.version == RUN_FILE_VERSION;
        let mut meta = blocks.with_plaintext(
            BlockKind::Meta,
            0,
            footer.meta_offset,
            footer.meta_len,
            &footer.fields(),
            |plain| {
                RunMeta::decode(plain, partitioned).map_err(|e| bad_meta(BlockProblem::Decode(e)))
            },
        )?;
        if (meta.min_lsn, meta.max_lsn) != (header.min_lsn, header.max_lsn) {
            return Err(bad_meta(BlockProblem::Inconsistent {
                what: "LSN range differs from the header's",
            }));
        }
        // Version 2: the one index block and filter block are one partition.
        let directory = meta.directory.take().unwrap_or_else(|| {
            Directory::single(
                &meta.last_key,
                PartitionFields {
                    blocks: meta.data_blocks,
                    entries: meta.entries,
                    data_len: footer.index_offset - RUN_HEADER_LEN as u64,
                    index_len: footer.index_len,
                    filter_len: footer.filter_len,
                },
            )
        });
        check_directory(&directory, &meta, &footer, algorithm, header.compression)
            .map_err(|what| bad_meta(BlockProblem::Inconsistent { what }))?;

        Ok(RunFile {
            path: path.to_path_buf(),
            file,
            len,
            header,
            header_bytes,
            cipher,
            footer,
            meta,
            directory,
        })
    }

    /// Heap bytes the open run holds: its partition directory and key bounds (the rest
    /// of a `RunFile` is a few hundred bytes of fixed size).
    pub fn heap_bytes(&self) -> usize {
        self.directory.heap_bytes() + self.meta.first_key.capacity() + self.meta.last_key.capacity()
    }

    /// Number of partitions of the run's tables.
    pub fn partition_count(&self) -> usize {
        self.directory.len()
    }

    /// The partition whose filter and index answer for `user_key`: the first whose last
    /// key is `>= user_key`. `None` if the key is past the run's last key.
    pub fn partition_for(&self, user_key: &[u8]) -> Option<usize> {
        self.directory.partition_for(user_key)
    }

    /// The partition covering data block `block`, `None` past the last block.
    pub fn partition_of_block(&self, block: usize) -> Option<usize> {
        self.directory.partition_of_block(block)
    }

    /// Reads, authenticates and decodes partition `partition`'s index and filter blocks,
    /// and checks its index against the directory and the file's layout.
    ///
    /// # Errors
    /// [`CheckpointError::BlockOutOfRange`] (no such partition),
    /// [`CheckpointError::BlockAuthFailed`], [`CheckpointError::BadBlock`], I/O errors.
    pub fn load_partition(&self, partition: usize) -> Result<TablePartition, CheckpointError> {
        let Some(part) = self.directory.entry(partition) else {
            return Err(CheckpointError::BlockOutOfRange {
                path: self.path.clone(),
                block: partition,
                count: self.directory.len(),
            });
        };
        let blocks = self.blocks();
        let ordinal = partition as u64;
        let index_offset = self.footer.index_offset + part.before.index_len;
        let bad_index = |problem| blocks.bad(BlockKind::Index, ordinal, index_offset, problem);
        let index = blocks.with_plaintext(
            BlockKind::Index,
            ordinal,
            index_offset,
            part.fields.index_len,
            &[],
            |plain| BlockIndex::decode(plain).map_err(|e| bad_index(BlockProblem::Decode(e))),
        )?;
        check_index(
            &index,
            part,
            self.directory.last_key(partition),
            self.header.algorithm,
            self.header.compression,
        )
        .map_err(|what| bad_index(BlockProblem::Inconsistent { what }))?;
        let filter_offset = self.footer.filter_offset + part.before.filter_len;
        let filter = blocks.with_plaintext(
            BlockKind::Filter,
            ordinal,
            filter_offset,
            part.fields.filter_len,
            &[],
            |plain| {
                BloomFilter::decode(plain).map_err(|e| {
                    blocks.bad(
                        BlockKind::Filter,
                        ordinal,
                        filter_offset,
                        BlockProblem::Decode(e),
                    )
                })
            },
        )?;
        Ok(TablePartition {
            partition,
            first_block: part.before.blocks as usize,
            index,
            filter,
        })
    }

    fn blocks(&self) -> Blocks<'_> {
        Blocks {
            path: &self.path,
            file: &*self.file,
            cipher: &self.cipher,
            header_bytes: &self.header_bytes,
            compression: self.header.compression,
        }
    }

    /// The path the file was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The authenticated header.
    pub fn header(&self) -> &RunHeader {
        &self.header
    }

    /// The run's file id.
    pub fn file_id(&self) -> u64 {
        self.header.file_id
    }

    /// The key epoch the file is sealed under.
    pub fn epoch(&self) -> KeyEpoch {
        self.header.epoch
    }

    /// File length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a run file holds at least one entry (for clippy's `len` convention).
    pub fn is_empty(&self) -> bool {
        self.meta.entries == 0
    }

    /// The smallest user key.
    pub fn first_key(&self) -> &[u8] {
        &self.meta.first_key
    }

    /// The largest user key.
    pub fn last_key(&self) -> &[u8] {
        &self.meta.last_key
    }

    /// The smallest LSN of any entry.
    pub fn min_lsn(&self) -> Lsn {
        self.meta.min_lsn
    }

    /// The largest LSN of any entry.
    pub fn max_lsn(&self) -> Lsn {
        self.meta.max_lsn
    }

    /// Number of entries (versions).
    pub fn entries(&self) -> u64 {
        self.meta.entries
    }

    /// Number of Delete entries.
    pub fn tombstones(&self) -> u64 {
        self.meta.tombstones
    }

    /// Number of distinct user keys.
    pub fn distinct_keys(&self) -> u64 {
        self.meta.distinct_keys
    }

    /// Sum of the key lengths of every entry.
    pub fn raw_key_bytes(&self) -> u64 {
        self.meta.raw_key_bytes
    }

    /// Sum of the value lengths of every entry.
    pub fn raw_value_bytes(&self) -> u64 {
        self.meta.raw_value_bytes
    }

    /// Where the data lies, without reading it: each partition of the run's tables in
    /// key order, as its last user key and the stored bytes of its data blocks. A
    /// merge splits its key range at these keys into parts of about equal size.
    pub fn partition_extents(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        let parts = self.directory.entries();
        (0..parts.len()).map(|p| (self.directory.last_key(p), parts[p].fields.data_len))
    }

    /// Number of data blocks (from the meta block, which the directory agrees with).
    pub fn block_count(&self) -> usize {
        self.meta.data_blocks as usize
    }

    /// Reads data block `index` (run-wide numbering) with one positioned read,
    /// authenticates it, decompresses and decodes it, and checks it against its
    /// partition's index (entry count, last key) and its predecessor's last key.
    /// `tables` is the partition covering the block ([`RunFile::partition_of_block`]).
    ///
    /// # Errors
    /// [`CheckpointError::BlockOutOfRange`] (the block is not in `tables`),
    /// [`CheckpointError::BlockAuthFailed`], [`CheckpointError::BadBlock`], I/O errors.
    pub fn read_block(
        &self,
        tables: &TablePartition,
        index: usize,
    ) -> Result<DataBlock, CheckpointError> {
        let local = index.wrapping_sub(tables.first_block);
        let Some(entry) = tables.index.entry(local) else {
            return Err(CheckpointError::BlockOutOfRange {
                path: self.path.clone(),
                block: index,
                count: self.block_count(),
            });
        };
        let blocks = self.blocks();
        let ordinal = index as u64;
        let bad = |problem| blocks.bad(BlockKind::Data, ordinal, entry.offset, problem);
        let inconsistent = |what| bad(BlockProblem::Inconsistent { what });
        let block = blocks.with_plaintext(
            BlockKind::Data,
            ordinal,
            entry.offset,
            entry.stored_len,
            &[],
            |plain| DataBlock::decode(plain).map_err(|e| bad(BlockProblem::Decode(e))),
        )?;
        if block.len() != entry.entries as usize {
            return Err(inconsistent("entry count differs from the index"));
        }
        if block.last().key != tables.index.last_key(local) {
            return Err(inconsistent("last key differs from the index"));
        }
        let first = block.first().key;
        let previous_last = match (local, tables.partition) {
            (0, 0) => None,
            (0, p) => Some(self.directory.last_key(p - 1)),
            (i, _) => Some(tables.index.last_key(i - 1)),
        };
        match previous_last {
            None if first != self.meta.first_key.as_slice() => {
                return Err(inconsistent("first key differs from the meta block"));
            }
            Some(previous) if first < previous => {
                return Err(inconsistent(
                    "first key sorts before the previous block's last key",
                ));
            }
            _ => {}
        }
        Ok(block)
    }

    /// Reads and authenticates every block and checks the whole run: strict
    /// `(key ascending, LSN descending)` order across blocks, every key found by the bloom
    /// filter, and the counts, key range, LSN range and byte totals of the meta block.
    /// Returns the number of entries.
    ///
    /// # Errors
    /// As [`RunFile::read_block`]; [`CheckpointError::BadBlock`] for what disagrees.
    pub fn verify(&self) -> Result<u64, CheckpointError> {
        let blocks = self.blocks();
        // The previous entry's key (reused buffer) and LSN; `entries == 0` before the first.
        let (mut prev_key, mut prev_lsn) = (Vec::new(), Lsn::ZERO);
        let (mut entries, mut tombstones, mut distinct) = (0u64, 0u64, 0u64);
        let (mut raw_keys, mut raw_values) = (0u64, 0u64);
        let (mut min_lsn, mut max_lsn) = (Lsn::MAX, Lsn::ZERO);
        for p in 0..self.directory.len() {
            let tables = self.load_partition(p)?;
            for i in tables.blocks() {
                let block = self.read_block(&tables, i)?;
                let offset = tables
                    .index
                    .entry(i - tables.first_block)
                    .map_or(0, |e| e.offset);
                for e in block.iter() {
                    if entries > 0 && run_order(&prev_key, prev_lsn, e.key, e.lsn) != Ordering::Less
                    {
                        return Err(blocks.bad(
                            BlockKind::Data,
                            i as u64,
                            offset,
                            BlockProblem::Inconsistent {
                                what: "entries out of order across blocks",
                            },
                        ));
                    }
                    if entries == 0 || prev_key.as_slice() != e.key {
                        distinct += 1;
                        // A key's first entry is in the partition that answers for it.
                        if !tables.may_contain(e.key) {
                            let at = self.directory.entry(p).map_or(0, |d| d.before.filter_len);
                            return Err(blocks.bad(
                                BlockKind::Filter,
                                p as u64,
                                self.footer.filter_offset + at,
                                BlockProblem::Inconsistent {
                                    what: "the bloom filter misses a key of the run",
                                },
                            ));
                        }
                        prev_key.clear();
                        prev_key.extend_from_slice(e.key);
                    }
                    prev_lsn = e.lsn;
                    entries += 1;
                    tombstones += u64::from(e.kind == crate::run::EntryKind::Delete);
                    raw_keys += e.key.len() as u64;
                    raw_values += e.value.len() as u64;
                    min_lsn = min_lsn.min(e.lsn);
                    max_lsn = max_lsn.max(e.lsn);
                }
            }
        }
        let m = &self.meta;
        let checks = [
            (entries == m.entries, "entry count differs from the data"),
            (
                tombstones == m.tombstones,
                "tombstone count differs from the data",
            ),
            (
                distinct == m.distinct_keys,
                "distinct key count differs from the data",
            ),
            (
                (min_lsn, max_lsn) == (m.min_lsn, m.max_lsn),
                "LSN range differs from the data",
            ),
            (
                (raw_keys, raw_values) == (m.raw_key_bytes, m.raw_value_bytes),
                "key or value byte totals differ from the data",
            ),
            (prev_key == m.last_key, "last key differs from the data"),
        ];
        if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
            return Err(blocks.bad(
                BlockKind::Meta,
                0,
                self.footer.meta_offset,
                BlockProblem::Inconsistent { what },
            ));
        }
        Ok(entries)
    }

    /// SHA-256 of the whole file (reads it), to compare with what the manifest recorded.
    ///
    /// # Errors
    /// I/O errors.
    pub fn sha256(&self) -> Result<[u8; 32], CheckpointError> {
        hash_file(&*self.file, self.len, &self.path)
    }
}

/// Checks the directory (decoded, or made up for version 2) against the meta block and
/// the footer: its sums tile the data, index and filter regions, and every index and
/// filter block is within its kind's stored-size range.
fn check_directory(
    directory: &Directory,
    meta: &RunMeta,
    footer: &Footer,
    algorithm: Algorithm,
    compression: Compression,
) -> Result<(), &'static str> {
    let t = directory.totals();
    if t.blocks != u64::from(meta.data_blocks) {
        return Err("block count differs from the directory");
    }
    if t.entries != meta.entries {
        return Err("entry count differs from the directory");
    }
    if t.data_len != footer.index_offset - RUN_HEADER_LEN as u64 {
        return Err("the data blocks do not end at the index region");
    }
    if t.index_len != u64::from(footer.index_len) || t.filter_len != u64::from(footer.filter_len) {
        return Err("the partitions do not fill the index and filter regions");
    }
    if directory.last_key(directory.len() - 1) != meta.last_key.as_slice() {
        return Err("last key differs from the directory");
    }
    let min = seal::min_stored_len(algorithm);
    let range =
        |kind| min..=seal::max_stored_len(algorithm, compression, seal::max_plaintext(kind));
    let (index, filter) = (range(BlockKind::Index), range(BlockKind::Filter));
    let out_of_range = |e: &PartitionEntry| {
        !index.contains(&u64::from(e.fields.index_len))
            || !filter.contains(&u64::from(e.fields.filter_len))
    };
    if directory.entries().iter().any(out_of_range) {
        return Err("a partition block's stored length is out of range");
    }
    Ok(())
}

/// Checks a partition's decoded index against its directory record and the layout.
fn check_index(
    index: &BlockIndex,
    part: &PartitionEntry,
    last_key: &[u8],
    algorithm: Algorithm,
    compression: Compression,
) -> Result<(), &'static str> {
    if index.len() != part.fields.blocks as usize {
        return Err("block count differs from the directory");
    }
    let (Some(first), Some(last)) = (index.entry(0), index.entry(index.len() - 1)) else {
        return Err("no data blocks");
    };
    let start = RUN_HEADER_LEN as u64 + part.before.data_len;
    if first.offset != start {
        return Err("the partition's first data block is not where the directory says");
    }
    if last.offset + u64::from(last.stored_len) != start + part.fields.data_len {
        return Err("the partition's last data block does not end where the directory says");
    }
    if index.last_key(index.len() - 1) != last_key {
        return Err("last key differs from the directory");
    }
    let min = seal::min_stored_len(algorithm);
    let max = seal::max_stored_len(algorithm, compression, seal::max_plaintext(BlockKind::Data));
    let mut entries = 0u64;
    for i in 0..index.len() {
        let Some(e) = index.entry(i) else {
            return Err("no data blocks");
        };
        if !(min..=max).contains(&u64::from(e.stored_len)) {
            return Err("a data block's stored length is out of range");
        }
        entries += u64::from(e.entries);
    }
    if entries != part.fields.entries {
        return Err("entry count differs from the directory");
    }
    Ok(())
}
