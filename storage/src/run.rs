//! A live run: an open run file (its header and meta block in memory; its tables, the
//! block index and bloom filter, and its data blocks read lazily through the block
//! cache) and point lookups in it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use aedb_checkpoint::{DataBlock, EntryKind, RunFile, RunTables};
use aedb_types::Lsn;

use crate::cache::{BlockCache, CacheFill, TablePlacement};
use crate::error::StorageError;
use crate::memtable::Versioned;

/// An open run file shared by every version that lists it.
pub struct Run {
    file: RunFile,
    path: PathBuf,
    cache: Arc<BlockCache>,
    /// The tables, once read, when the cache's placement let this run pin them.
    pinned: OnceLock<Arc<RunTables>>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(t) = self.pinned.get() {
            self.cache.unpin(t.heap_bytes() as u64);
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
        Run {
            file,
            path,
            cache,
            pinned: OnceLock::new(),
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

    /// Its tables (block index and bloom filter): pinned by this run, or from the
    /// cache, or read and authenticated, then pinned when the cache's
    /// [`TablePlacement`] allows (else cached).
    ///
    /// # Errors
    /// The index or filter block cannot be read or does not authenticate.
    pub fn tables(&self) -> Result<Arc<RunTables>, StorageError> {
        if let Some(t) = self.pinned.get() {
            return Ok(t.clone());
        }
        let load = || {
            self.file
                .load_tables()
                .map_err(|e| StorageError::run(&self.path, e))
        };
        // Tables just read are pinned when the placement allows and they fit.
        let pin = |t: &Arc<RunTables>| {
            let bytes = t.heap_bytes() as u64;
            if self.cache.placement() == TablePlacement::InCache || !self.cache.try_pin(bytes) {
                return false;
            }
            if self.pinned.set(t.clone()).is_err() {
                // Another reader pinned this run's tables first.
                self.cache.unpin(bytes);
            }
            true
        };
        self.cache.tables_or_load(self.id(), load, pin)
    }

    /// `f` on the run's tables, borrowed when they are pinned (a read then writes no
    /// shared memory), else from the cache as [`Run::tables`].
    ///
    /// # Errors
    /// As [`Run::tables`].
    pub fn with_tables<R>(&self, f: impl FnOnce(&RunTables) -> R) -> Result<R, StorageError> {
        match self.pinned.get() {
            Some(t) => Ok(f(t)),
            None => Ok(f(&*self.tables()?)),
        }
    }

    /// Number of data blocks.
    pub fn block_count(&self) -> usize {
        self.file.block_count()
    }

    /// Block `index`, from the cache or read (through the run's tables), authenticated
    /// and cached.
    ///
    /// # Errors
    /// The block or the run's tables cannot be read or do not authenticate.
    pub fn block(&self, index: usize) -> Result<Arc<DataBlock>, StorageError> {
        self.block_with(index, CacheFill::Fill)
    }

    /// Block `index`, from the cache or read, cached as `fill` says.
    ///
    /// # Errors
    /// The block or the run's tables cannot be read or do not authenticate.
    pub fn block_with(
        &self,
        index: usize,
        fill: CacheFill,
    ) -> Result<Arc<DataBlock>, StorageError> {
        self.cache.get_or_load(self.id(), index as u32, fill, || {
            self.with_tables(|t| self.file.read_block(t, index))?
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
        let first = self.with_tables(|t| t.may_contain(key).then(|| t.block_for(key)))?;
        let Some(Some(mut b)) = first else {
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

    /// Warms the cache with the block that would hold `key` (no-op when the filter
    /// rules the key out or the block is cached).
    ///
    /// # Errors
    /// The block cannot be read or does not authenticate.
    pub fn prefetch(&self, key: &[u8]) -> Result<(), StorageError> {
        if !self.covers(key) {
            return Ok(());
        }
        let first = self.with_tables(|t| t.may_contain(key).then(|| t.block_for(key)))?;
        if let Some(Some(b)) = first
            && !self.cache.contains(self.id(), b as u32)
        {
            self.block(b)?;
        }
        Ok(())
    }
}
