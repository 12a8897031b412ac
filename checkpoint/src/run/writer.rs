//! [`RunWriter`]: streams sorted entries into a run file and publishes it atomically.
//!
//! Entries are appended to the data block being filled; a block is sealed and written
//! (through a 256 KiB buffer) as soon as the next entry would take it past the target
//! size, and a partition of the tables is closed once its index passes
//! [`RunOptions::partition_size`]. The index (one record per block), the bloom filter's
//! key hashes, the partition bounds and the counters stay in memory until
//! [`RunWriter::finish`] writes each partition's index block, then each partition's
//! filter block, the meta block (with the partition directory) and the footer, rewrites
//! the header with the run's LSN bounds, fsyncs the file,
//! computes its SHA-256 (by reading it back: the header, which comes first, is final
//! only now), renames `<name>.tmp` to `<name>` and fsyncs the directory.

use crate::chunk::ChunkCipher;
use crate::durable::ensure_dir;
use crate::error::{CheckpointError, EntryProblem};
use crate::header::TAG_LEN;
use crate::nonce::{NONCE_LEN, NonceSource};
use crate::run::block::{BlockBuilder, run_order};
use crate::run::directory::{Directory, MIN_PARTITION, PartitionFields};
use crate::run::filter::{self, BloomFilter};
use crate::run::footer::Footer;
use crate::run::header::{KEY_CHECK_OFFSET, RUN_HEADER_LEN, RunHeader};
use crate::run::index::BlockIndex;
use crate::run::meta::RunMeta;
use crate::run::reader::hash_file;
use crate::run::seal::{self, KEY_CHECK_DOMAIN};
use crate::run::{
    BlockKind, EntryKind, MAX_RUN_INDEX_LEN, MAX_RUN_KEY_LEN, MAX_RUN_META_LEN, MAX_RUN_VALUE_LEN,
    RunFileMeta, RunInfo, RunOptions, algorithm_for, io_err, run_file_name,
};
use aedb_fs::{DiskFile, FileWriter, OpenMode as FsMode, SharedFs};
use aedb_keys::SecretKey;
use aedb_types::Lsn;
use std::cmp::Ordering;
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const WRITE_BUFFER: usize = 256 * 1024;

/// Running totals of the entries added.
#[derive(Debug, Default)]
struct Stats {
    entries: u64,
    distinct_keys: u64,
    tombstones: u64,
    raw_key_bytes: u64,
    raw_value_bytes: u64,
    min_lsn: Lsn,
    max_lsn: Lsn,
    first_key: Vec<u8>,
}

/// Where a closed partition ends: past its last block and past its last key hash.
#[derive(Clone, Copy, Debug)]
struct PartitionEnd {
    blocks: usize,
    hashes: usize,
}

/// Writes one run file: entries in `(key ascending, LSN descending)` order, each
/// `(key, LSN)` once.
///
/// Dropping a writer without [`RunWriter::finish`] removes its temporary file, as does
/// [`RunWriter::abandon`]. A refused entry ([`CheckpointError::EntryRejected`],
/// [`CheckpointError::RunTooLarge`]) leaves the writer unchanged; any I/O or sealing
/// error poisons it ([`CheckpointError::Poisoned`] from then on).
pub struct RunWriter {
    fs: SharedFs,
    dir: PathBuf,
    tmp_path: PathBuf,
    final_path: PathBuf,
    file_name: String,
    meta: RunFileMeta,
    options: RunOptions,
    file: Arc<dyn DiskFile>,
    out: Option<BufWriter<FileWriter>>,
    header: RunHeader,
    header_bytes: [u8; RUN_HEADER_LEN],
    cipher: ChunkCipher,
    nonces: Box<dyn NonceSource + Send>,
    last_nonce: [u8; NONCE_LEN],
    offset: u64,
    block: BlockBuilder,
    index: BlockIndex,
    key_hashes: Vec<u64>,
    /// The partitions closed so far.
    partitions: Vec<PartitionEnd>,
    /// The whole index's encoded length when the open partition opened.
    partition_index_from: usize,
    /// Encoded directory length of the closed partitions.
    directory_len: usize,
    stats: Stats,
    last_key: Vec<u8>,
    last_lsn: Lsn,
    published: bool,
}

impl fmt::Debug for RunWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunWriter")
            .field("tmp_path", &self.tmp_path)
            .field("meta", &self.meta)
            .field("options", &self.options)
            .field("entries", &self.stats.entries)
            .field("bytes_written", &self.offset)
            .field("poisoned", &self.out.is_none())
            .finish_non_exhaustive()
    }
}

impl RunWriter {
    /// Creates `<dir>/run-<file_id:020>.ckpt.tmp` (and `dir` if needed) and writes a
    /// provisional header. `dir` is the directory the run file goes into, normally
    /// [`crate::checkpoints_dir`]`(data_dir)`.
    ///
    /// `key = None` writes a plaintext-mode file (integrity digests, not authenticated).
    /// `nonces` supplies the per-file nonce and one nonce per sealed block: use
    /// [`crate::OsNonceSource`] outside tests (a source that repeats a nonce is refused).
    ///
    /// # Errors
    /// [`CheckpointError::InvalidRunOptions`], [`CheckpointError::AlreadyExists`] if the
    /// final file exists, [`CheckpointError::NonceUnavailable`], I/O errors.
    pub fn create(
        fs: &SharedFs,
        dir: &Path,
        meta: RunFileMeta,
        key: Option<&SecretKey>,
        mut nonces: Box<dyn NonceSource + Send>,
        options: RunOptions,
    ) -> Result<RunWriter, CheckpointError> {
        options.validate()?;
        ensure_dir(&**fs, dir).map_err(io_err("create directory", dir))?;
        let file_name = run_file_name(meta.file_id);
        let final_path = dir.join(&file_name);
        if fs.exists(&final_path) {
            return Err(CheckpointError::AlreadyExists { path: final_path });
        }
        let tmp_path = dir.join(format!("{file_name}.tmp"));
        let mut file_nonce = [0u8; NONCE_LEN];
        nonces
            .fill_nonce(&mut file_nonce)
            .map_err(|source| CheckpointError::NonceUnavailable {
                path: tmp_path.clone(),
                source,
            })?;
        let cipher = ChunkCipher::new(key);
        let mut header = RunHeader {
            version: crate::run::RUN_FILE_VERSION,
            algorithm: algorithm_for(key.is_some()),
            compression: options.compression,
            epoch: meta.epoch,
            database_id: meta.database,
            file_id: meta.file_id,
            file_nonce,
            key_check: [0; TAG_LEN],
            min_lsn: Lsn::ZERO,
            max_lsn: Lsn::ZERO,
        };
        if cipher.is_sealed() {
            // The key check: the tag of the empty message (sealing it cannot fail).
            let prefix = header.encode();
            let mut aad = KEY_CHECK_DOMAIN.to_vec();
            aad.extend_from_slice(&prefix[..KEY_CHECK_OFFSET]);
            header.key_check = cipher
                .seal_detached(KEY_CHECK_DOMAIN, &file_nonce, &aad, &mut [])
                .map_err(|_| CheckpointError::BlockSealFailed {
                    path: tmp_path.clone(),
                    kind: BlockKind::Meta,
                    block: u64::MAX,
                })?;
        }
        let header_bytes = header.encode();
        let file = fs
            .open(&tmp_path, FsMode::Truncate)
            .map_err(io_err("create", &tmp_path))?;
        let mut writer = RunWriter {
            fs: fs.clone(),
            dir: dir.to_path_buf(),
            tmp_path,
            final_path,
            file_name,
            meta,
            options,
            out: Some(BufWriter::with_capacity(
                WRITE_BUFFER,
                FileWriter::new(Arc::clone(&file), 0),
            )),
            file,
            header,
            header_bytes,
            cipher,
            nonces,
            last_nonce: file_nonce,
            offset: 0,
            block: BlockBuilder::new(options.block_size),
            index: BlockIndex::new(),
            key_hashes: Vec::new(),
            partitions: Vec::new(),
            partition_index_from: 4,
            directory_len: 4,
            stats: Stats::default(),
            last_key: Vec::new(),
            last_lsn: Lsn::ZERO,
            published: false,
        };
        // Provisional header (LSN bounds zero); rewritten by `finish`. On error the
        // writer is dropped, which removes the temporary file.
        writer.emit(&header_bytes)?;
        Ok(writer)
    }

    /// The temporary file being written.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp_path
    }

    /// Entries added so far.
    pub fn entries(&self) -> u64 {
        self.stats.entries
    }

    /// Bytes of the file written so far (header and sealed blocks, including those still
    /// in the write buffer). The block being filled is not counted: it adds at most
    /// `block_size` (or one entry) plus 40 bytes. Use it to split output files.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    fn reject(&self, problem: EntryProblem) -> CheckpointError {
        CheckpointError::EntryRejected {
            path: self.tmp_path.clone(),
            entry: self.stats.entries,
            problem,
        }
    }

    fn too_large(&self, what: &'static str, len: u64, max: u64) -> CheckpointError {
        CheckpointError::RunTooLarge {
            path: self.tmp_path.clone(),
            what,
            len,
            max,
        }
    }

    fn poisoned(&self) -> CheckpointError {
        CheckpointError::Poisoned {
            path: self.tmp_path.clone(),
        }
    }

    /// Appends an entry. Entries must come in `(key ascending, LSN descending)` order,
    /// each `(key, LSN)` once; a Delete's value must be empty.
    ///
    /// # Errors
    /// [`CheckpointError::EntryRejected`] (out of order, key or value too long, a
    /// tombstone with a value) and [`CheckpointError::RunTooLarge`] (the index, filter
    /// or directory would exceed its limit) leave the writer unchanged. I/O errors poison it;
    /// [`CheckpointError::Poisoned`] after any earlier one.
    pub fn add(
        &mut self,
        key: &[u8],
        lsn: Lsn,
        kind: EntryKind,
        value: &[u8],
    ) -> Result<(), CheckpointError> {
        if self.out.is_none() {
            return Err(self.poisoned());
        }
        if key.len() > MAX_RUN_KEY_LEN {
            return Err(self.reject(EntryProblem::KeyTooLong { len: key.len() }));
        }
        if value.len() > MAX_RUN_VALUE_LEN {
            return Err(self.reject(EntryProblem::ValueTooLong { len: value.len() }));
        }
        if kind == EntryKind::Delete && !value.is_empty() {
            return Err(self.reject(EntryProblem::TombstoneWithValue { len: value.len() }));
        }
        let first = self.stats.entries == 0;
        if !first && run_order(&self.last_key, self.last_lsn, key, lsn) != Ordering::Less {
            return Err(self.reject(if key == self.last_key.as_slice() {
                EntryProblem::LsnOutOfOrder {
                    previous: self.last_lsn,
                    lsn,
                }
            } else {
                EntryProblem::KeyOutOfOrder
            }));
        }
        let new_key = first || key != self.last_key.as_slice();
        // Whatever happens next, the writer must stay finishable: the index gains at
        // most the pending block and this entry's block; the filter one key.
        let pending = if self.block.count() > 0 {
            self.index.encoded_len_with(&self.last_key) - self.index.encoded_len()
        } else {
            0
        };
        let index_len = self.index.encoded_len_with(key) + pending;
        let distinct = self.stats.distinct_keys + u64::from(new_key);
        let filter_len = filter::encoded_len(distinct, self.options.bloom_bits_per_key);
        // The directory gains at most two partitions (the open one and, if the pending
        // block closes it, one for this entry), each at most a record and a key.
        let meta_len = self.directory_len
            + 2 * (MIN_PARTITION + MAX_RUN_KEY_LEN)
            + 96
            + self.stats.first_key.len()
            + key.len();
        let limits = [
            ("index", index_len as u64, MAX_RUN_INDEX_LEN),
            ("filter", filter_len, MAX_RUN_INDEX_LEN),
            ("partition directory", meta_len as u64, MAX_RUN_META_LEN),
        ];
        for (what, len, max) in limits {
            if len > max as u64 {
                return Err(self.too_large(what, len, max as u64));
            }
        }

        let entry_len = BlockBuilder::entry_len(key, value);
        if self.block.count() > 0 && self.block.len() + entry_len > self.options.block_size {
            self.flush_block()?;
        }
        self.block.push(key, lsn, kind, value);
        let s = &mut self.stats;
        if first {
            s.first_key = key.to_vec();
            s.min_lsn = lsn;
            s.max_lsn = lsn;
        }
        s.entries += 1;
        s.tombstones += u64::from(kind == EntryKind::Delete);
        s.raw_key_bytes += key.len() as u64;
        s.raw_value_bytes += value.len() as u64;
        s.min_lsn = s.min_lsn.min(lsn);
        s.max_lsn = s.max_lsn.max(lsn);
        if new_key {
            s.distinct_keys += 1;
            if self.options.bloom_bits_per_key > 0 {
                self.key_hashes.push(filter::key_hash(key));
            }
            self.last_key.clear();
            self.last_key.extend_from_slice(key);
        }
        self.last_lsn = lsn;
        Ok(())
    }

    /// Seals and writes the block being filled and records it in the index.
    fn flush_block(&mut self) -> Result<(), CheckpointError> {
        let entries = self.block.count();
        let plaintext = self.block.take();
        let ordinal = self.index.len() as u64;
        let body = seal::compress_body(self.options.compression, plaintext);
        let (offset, stored_len) = self.write_body(BlockKind::Data, ordinal, body, &[])?;
        self.index.push(&self.last_key, offset, stored_len, entries);
        // The open partition's index: a count and the records pushed since it opened.
        if 4 + self.index.encoded_len() - self.partition_index_from >= self.options.partition_size {
            self.close_partition();
        }
        Ok(())
    }

    /// Closes the open partition after the last flushed block (a no-op without blocks).
    fn close_partition(&mut self) {
        let start = self.partitions.last().map_or(0, |p| p.blocks);
        if self.index.len() == start {
            return;
        }
        self.directory_len += MIN_PARTITION + self.last_key.len();
        self.partitions.push(PartitionEnd {
            blocks: self.index.len(),
            hashes: self.key_hashes.len(),
        });
        self.partition_index_from = self.index.encoded_len();
    }

    fn next_nonce(&mut self) -> Result<[u8; NONCE_LEN], CheckpointError> {
        let mut nonce = [0u8; NONCE_LEN];
        let drawn = self.nonces.fill_nonce(&mut nonce).and_then(|()| {
            if nonce == self.last_nonce {
                Err(io::Error::other(
                    "the nonce source returned the same nonce twice (a FixedNonce cannot seal run files)",
                ))
            } else {
                Ok(())
            }
        });
        if let Err(source) = drawn {
            self.out = None;
            return Err(CheckpointError::NonceUnavailable {
                path: self.tmp_path.clone(),
                source,
            });
        }
        self.last_nonce = nonce;
        Ok(nonce)
    }

    /// Seals `body` as block `ordinal` of `kind` at the current offset and writes it;
    /// returns its offset and stored length.
    fn write_body(
        &mut self,
        kind: BlockKind,
        ordinal: u64,
        mut body: Vec<u8>,
        footer: &[u8],
    ) -> Result<(u64, u32), CheckpointError> {
        #[cfg(feature = "observability")]
        let _span = tracing::debug_span!(
            "aedb.run.seal_block",
            kind = %kind,
            block = ordinal,
            bytes = body.len(),
            sealed = self.cipher.is_sealed(),
        )
        .entered();
        let offset = self.offset;
        let aad = seal::block_aad(&self.header_bytes, kind, ordinal, offset, footer);
        let nonce = if self.cipher.is_sealed() {
            Some(self.next_nonce()?)
        } else {
            None
        };
        let Ok(tag) = seal::seal_body(&self.cipher, nonce.as_ref(), &aad, &mut body) else {
            self.out = None;
            return Err(CheckpointError::BlockSealFailed {
                path: self.tmp_path.clone(),
                kind,
                block: ordinal,
            });
        };
        let stored = seal::overhead(self.header.algorithm) + body.len();
        let Ok(stored_len) = u32::try_from(stored) else {
            self.out = None;
            return Err(CheckpointError::RunTooLarge {
                path: self.tmp_path.clone(),
                what: "block",
                len: stored as u64,
                max: u64::from(u32::MAX),
            });
        };
        if let Some(nonce) = nonce {
            self.emit(&nonce)?;
        }
        self.emit(&body)?;
        self.emit(&tag)?;
        Ok((offset, stored_len))
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), CheckpointError> {
        let Some(out) = self.out.as_mut() else {
            return Err(self.poisoned());
        };
        if let Err(source) = out.write_all(bytes) {
            self.out = None;
            return Err(CheckpointError::Io {
                op: "write",
                path: self.tmp_path.clone(),
                source,
            });
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Writes the last data block, the index, filter and meta blocks and the footer;
    /// rewrites the header with the LSN bounds; fsyncs the file; renames it to
    /// `run-<file_id:020>.ckpt`; fsyncs the directory. Returns what the manifest needs.
    ///
    /// If the directory fsync fails the file may already carry its final name; do not
    /// record it (remove it, or let the storage layer's cleanup find it unreferenced).
    ///
    /// # Errors
    /// [`CheckpointError::EmptyRun`] if no entry was added (the temporary file is
    /// removed); [`CheckpointError::AlreadyExists`] if the final name appeared meanwhile;
    /// I/O errors; [`CheckpointError::Poisoned`] after any earlier error.
    pub fn finish(mut self) -> Result<RunInfo, CheckpointError> {
        if self.out.is_none() {
            return Err(self.poisoned());
        }
        if self.stats.entries == 0 {
            return Err(CheckpointError::EmptyRun {
                path: self.tmp_path.clone(),
            });
        }
        if self.block.count() > 0 {
            self.flush_block()?;
        }
        self.close_partition();
        let compression = self.options.compression;
        let partitions = std::mem::take(&mut self.partitions);
        let ranges = |end: fn(&PartitionEnd) -> usize| {
            let mut start = 0;
            partitions.iter().map(move |p| {
                let r = start..end(p);
                start = r.end;
                r
            })
        };
        // Each partition's index block, then each partition's filter block.
        let index_offset = self.offset;
        let mut index_lens = Vec::with_capacity(partitions.len());
        for (p, blocks) in ranges(|p| p.blocks).enumerate() {
            let body = seal::compress_body(compression, self.index.encode_range(blocks));
            index_lens.push(self.write_body(BlockKind::Index, p as u64, body, &[])?.1);
        }
        let filter_offset = self.offset;
        let mut filter_lens = Vec::with_capacity(partitions.len());
        for (p, hashes) in ranges(|p| p.hashes).enumerate() {
            let filter =
                BloomFilter::build(&self.key_hashes[hashes], self.options.bloom_bits_per_key);
            let body = seal::compress_body(compression, filter.encode());
            filter_lens.push(self.write_body(BlockKind::Filter, p as u64, body, &[])?.1);
        }
        let mut directory = Directory::default();
        for (p, blocks) in ranges(|p| p.blocks).enumerate() {
            // A closed partition holds at least one block.
            let start = self.index.entry(blocks.start).map_or(0, |e| e.offset);
            let end = self
                .index
                .entry(blocks.end - 1)
                .map_or(0, |e| e.offset + u64::from(e.stored_len));
            let entries = blocks.clone().filter_map(|b| self.index.entry(b));
            let fields = PartitionFields {
                blocks: blocks.len() as u32,
                entries: entries.map(|e| u64::from(e.entries)).sum(),
                data_len: end - start,
                index_len: index_lens[p],
                filter_len: filter_lens[p],
            };
            directory
                .push(self.index.last_key(blocks.end - 1), fields)
                .ok_or_else(|| self.too_large("partition directory", u64::MAX, u64::MAX))?;
        }
        let region_len = |from: u64, to: u64| u32::try_from(to - from);
        let (Ok(index_len), Ok(filter_len)) = (
            region_len(index_offset, filter_offset),
            region_len(filter_offset, self.offset),
        ) else {
            self.out = None;
            let len = self.offset - index_offset;
            return Err(self.too_large("index and filter regions", len, u64::from(u32::MAX)));
        };

        let s = &self.stats;
        self.header.min_lsn = s.min_lsn;
        self.header.max_lsn = s.max_lsn;
        self.header_bytes = self.header.encode();
        let meta = RunMeta {
            entries: s.entries,
            distinct_keys: s.distinct_keys,
            tombstones: s.tombstones,
            data_blocks: self.index.len() as u32,
            first_key: s.first_key.clone(),
            last_key: self.last_key.clone(),
            min_lsn: s.min_lsn,
            max_lsn: s.max_lsn,
            raw_key_bytes: s.raw_key_bytes,
            raw_value_bytes: s.raw_value_bytes,
            directory: Some(directory),
        };
        let meta_body = seal::compress_body(compression, meta.encode());
        let meta_offset = self.offset;
        let meta_len = seal::overhead(self.header.algorithm) + meta_body.len();
        let footer = Footer {
            index_offset,
            index_len,
            filter_offset,
            filter_len,
            meta_offset,
            // The meta block is at most MAX_RUN_META_LEN plus overheads.
            meta_len: meta_len as u32,
        };
        self.write_body(BlockKind::Meta, 0, meta_body, &footer.fields())?;
        self.emit(&footer.encode())?;

        let Some(out) = self.out.take() else {
            return Err(self.poisoned());
        };
        out.into_inner()
            .map_err(|e| io_err("flush", &self.tmp_path)(e.into_error()))?;
        self.file
            .write_all_at(&self.header_bytes, 0)
            .map_err(io_err("write", &self.tmp_path))?;
        self.file
            .sync_all()
            .map_err(io_err("fsync", &self.tmp_path))?;
        let len = self.offset;
        let sha256 = hash_file(&*self.file, len, &self.tmp_path)?;
        if self.fs.exists(&self.final_path) {
            return Err(CheckpointError::AlreadyExists {
                path: self.final_path.clone(),
            });
        }
        self.fs
            .rename(&self.tmp_path, &self.final_path)
            .map_err(io_err("rename", &self.tmp_path))?;
        self.published = true;
        self.fs
            .sync_dir(&self.dir)
            .map_err(io_err("fsync directory", &self.dir))?;
        Ok(RunInfo {
            file_id: self.meta.file_id,
            file_name: self.file_name.clone(),
            path: self.final_path.clone(),
            len,
            sha256,
            epoch: self.meta.epoch,
            first_key: std::mem::take(&mut self.stats.first_key),
            last_key: std::mem::take(&mut self.last_key),
            min_lsn: self.stats.min_lsn,
            max_lsn: self.stats.max_lsn,
            entries: self.stats.entries,
            tombstones: self.stats.tombstones,
        })
    }

    /// Abandons the run and removes the temporary file.
    ///
    /// # Errors
    /// The error removing the temporary file, if any (a missing file is not an error).
    pub fn abandon(mut self) -> Result<(), CheckpointError> {
        self.out = None;
        self.published = true; // nothing left for Drop to do
        match self.fs.remove_file(&self.tmp_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &self.tmp_path)(e)),
        }
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        if !self.published {
            self.out = None;
            let _ = self.fs.remove_file(&self.tmp_path);
        }
    }
}
