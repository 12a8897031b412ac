//! A live run: an open run file (its header, meta block and partition directory in
//! memory; its tables, the block index and bloom filter partition by partition, and its
//! data blocks read lazily through the block cache) and point lookups in it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use aedb_checkpoint::{DataBlock, EntryKind, RunFile, TablePartition};
use aedb_types::Lsn;

use crate::cache::{BlockCache, CacheFill};
use crate::error::StorageError;
use crate::memtable::Versioned;

/// An open run file shared by every version that lists it.
pub struct Run {
    file: RunFile,
    path: PathBuf,
    cache: Arc<BlockCache>,
    /// Each table partition, once read, when the cache's placement let this run pin it.
    pinned: Box<[OnceLock<Arc<TablePartition>>]>,
}

impl Drop for Run {
    fn drop(&mut self) {
        let bytes: usize = self
            .pinned
            .iter()
            .filter_map(|p| p.get())
            .map(|t| t.heap_bytes())
            .sum();
        if bytes > 0 {
            self.cache.unpin(bytes as u64);
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("file_id", &self.file.file_id())
            .field("path", &self.path)
            .field("len", &self.file.len())
            .finish()
    }
}

impl Run {
    /// Wraps an opened run file; its blocks are cached in `cache`.
    pub fn new(file: RunFile, path: PathBuf, cache: Arc<BlockCache>) -> Run {
        let pinned = (0..file.partition_count())
            .map(|_| OnceLock::new())
            .collect();
        Run {
            file,
            path,
            cache,
            pinned,
        }
    }

    /// The run file (metadata, and uncached block reads).
    pub fn file(&self) -> &RunFile {
        &self.file
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its id.
    pub fn id(&self) -> u64 {
        self.file.file_id()
    }

    /// Table partition `p` (block index records and bloom filter of some of its blocks):
    /// pinned by this run, or from the cache, or read and authenticated, then pinned
    /// when the cache's [`TablePlacement`](crate::TablePlacement) allows (else cached).
    ///
    /// # Errors
    /// The partition's index or filter block cannot be read or does not authenticate.
    pub fn partition(&self, p: usize) -> Result<Arc<TablePartition>, StorageError> {
        let load = || {
            self.file
                .load_partition(p)
                .map_err(|e| StorageError::run(&self.path, e))
        };
        let Some(slot) = self.pinned.get(p) else {
            // No such partition: the file says so.
            return load().map(Arc::new);
        };
        if let Some(t) = slot.get() {
            return Ok(t.clone());
        }
        // A partition just read is pinned when the placement's budget has room for it
        // (`InCache` has none).
        let pin = |t: &Arc<TablePartition>| {
            let bytes = t.heap_bytes() as u64;
            if !self.cache.try_pin(bytes) {
                return false;
            }
            if slot.set(t.clone()).is_err() {
                // Another reader pinned it first.
                self.cache.unpin(bytes);
            }
            true
        };
        self.cache.partition_or_load(self.id(), p, load, pin)
    }

    /// `f` on table partition `p`, borrowed when it is pinned (a read then writes no
    /// shared memory), else from the cache as [`Run::partition`].
    ///
    /// # Errors
    /// As [`Run::partition`].
    pub fn with_partition<R>(
        &self,
        p: usize,
        f: impl FnOnce(&TablePartition) -> R,
    ) -> Result<R, StorageError> {
        match self.pinned.get(p).and_then(|s| s.get()) {
            Some(t) => Ok(f(t)),
            None => Ok(f(&*self.partition(p)?)),
        }
    }

    /// The first block whose last key is `>= key` (the only one that can hold the key's
    /// newest versions; older ones may continue in the next blocks), `None` past the
    /// run's last key.
    ///
    /// # Errors
    /// As [`Run::partition`].
    pub fn block_for(&self, key: &[u8]) -> Result<Option<usize>, StorageError> {
        self.in_partition_for(key, |t| t.block_for(key))
    }

    /// As [`Run::block_for`], but `None` also when the bloom filter rules the key out.
    fn block_for_present(&self, key: &[u8]) -> Result<Option<usize>, StorageError> {
        self.in_partition_for(key, |t| {
            t.may_contain(key).then(|| t.block_for(key)).flatten()
        })
    }

    /// `f` on the table partition that answers for `key`; `None` past the last key.
    fn in_partition_for<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&TablePartition) -> Option<R>,
    ) -> Result<Option<R>, StorageError> {
        match self.file.partition_for(key) {
            Some(p) => self.with_partition(p, f),
            None => Ok(None),
        }
    }

    /// Number of data blocks.
    pub fn block_count(&self) -> usize {
        self.file.block_count()
    }

    /// Block `index`, from the cache or read (through its table partition),
    /// authenticated and cached.
    ///
    /// # Errors
    /// The block or the run's tables cannot be read or do not authenticate.
    pub fn block(&self, index: usize) -> Result<DataBlock, StorageError> {
        self.block_with(index, CacheFill::Fill)
    }

    /// Block `index`, from the cache or read, cached as `fill` says.
    ///
    /// # Errors
    /// The block or the run's tables cannot be read or do not authenticate.
    pub fn block_with(&self, index: usize, fill: CacheFill) -> Result<DataBlock, StorageError> {
        self.cache.get_or_load(self.id(), index as u32, fill, || {
            let p = self.file.partition_of_block(index).unwrap_or(usize::MAX);
            self.with_partition(p, |t| self.file.read_block(t, index))?
                .map_err(|e| StorageError::run(&self.path, e))
        })
    }

    /// Whether `key` is inside this run's key range.
    pub fn covers(&self, key: &[u8]) -> bool {
        key >= self.file.first_key() && key <= self.file.last_key()
    }

    /// The newest version of `key` at or before `at` in this run, including tombstones.
    ///
    /// # Errors
    /// A block cannot be read or does not authenticate.
    pub fn get(&self, key: &[u8], at: Lsn) -> Result<Option<Versioned>, StorageError> {
        if at < self.file.min_lsn() || !self.covers(key) {
            return Ok(None);
        }
        let Some(mut b) = self.block_for_present(key)? else {
            return Ok(None);
        };
        // A key's versions may continue into the next block.
        while b < self.block_count() {
            let block = self.block(b)?;
            let i = block.seek(key, at);
            if i < block.len() {
                let e = block.entry(i);
                return Ok((e.key == key).then(|| Versioned {
                    lsn: e.lsn,
                    value: match e.kind {
                        EntryKind::Put => Some(e.value.to_vec()),
                        EntryKind::Delete => None,
                    },
                }));
            }
            b += 1;
        }
        Ok(None)
    }
}
