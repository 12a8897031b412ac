//! A view: what one snapshot reads — the memtables and the version it was taken on,
//! and its LSN. Cloning is a few `Arc` increments; a view never waits for the writer.

use std::ops::Bound;
use std::sync::Arc;

use aedb_types::Lsn;

use crate::cache::CacheFill;
use crate::error::StorageError;
use crate::memtable::{Memtable, Versioned};
use crate::merge::{Direction, LevelSource, MemSource, Merged, Scan, Source};
use crate::run::Run;
use crate::version::{LEVELS, Version};

/// The sources of one snapshot; see the module docs.
#[derive(Clone, Debug)]
pub struct View {
    /// Newest first; the first is the writer's active memtable.
    memtables: Arc<[Arc<Memtable>]>,
    version: Arc<Version>,
    lsn: Lsn,
}

impl View {
    /// A view of `memtables` (newest first) over `version`, reading as of `lsn`.
    pub fn new(memtables: Vec<Arc<Memtable>>, version: Arc<Version>, lsn: Lsn) -> View {
        View {
            memtables: memtables.into(),
            version,
            lsn,
        }
    }

    /// An empty database at LSN 0 with one empty memtable.
    pub fn empty() -> View {
        View::new(
            vec![Arc::new(Memtable::new(0))],
            Arc::new(Version::empty()),
            Lsn::ZERO,
        )
    }

    /// The LSN this view reads as of.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// The same sources read as of `lsn` (the writer moves its view forward; an older
    /// `lsn` reads history the sources still hold).
    pub fn at(&self, lsn: Lsn) -> View {
        View {
            memtables: self.memtables.clone(),
            version: self.version.clone(),
            lsn,
        }
    }

    /// The memtables, newest (the writer's active one) first.
    pub fn memtables(&self) -> &[Arc<Memtable>] {
        &self.memtables
    }

    /// The version (live runs).
    pub fn version(&self) -> &Arc<Version> {
        &self.version
    }

    /// The newest version of `key` visible at this view's LSN, including tombstones
    /// (`value: None`); `None` when no source knows the key.
    ///
    /// # Errors
    /// A run's block cannot be read or does not authenticate.
    pub fn get_version(&self, key: &[u8]) -> Result<Option<Versioned>, StorageError> {
        for m in self.memtables.iter() {
            if let Some(v) = m.get(key, self.lsn) {
                return Ok(Some(v));
            }
        }
        for run in self.version.level(0) {
            if let Some(v) = run.get(key, self.lsn)? {
                return Ok(Some(v));
            }
        }
        for level in 1..LEVELS {
            if let Some(run) = self.version.find_in_level(level, key)
                && let Some(v) = run.get(key, self.lsn)?
            {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// The value of `key` visible at this view's LSN and the LSN that wrote it.
    ///
    /// # Errors
    /// A run's block cannot be read or does not authenticate.
    pub fn get(&self, key: &[u8]) -> Result<Option<(Lsn, Vec<u8>)>, StorageError> {
        Ok(self
            .get_version(key)?
            .and_then(|v| v.value.map(|value| (v.lsn, value))))
    }

    /// Warms the block cache with what reading `key` needs (the committing caller does
    /// this before the single writer evaluates its assertions): the same search as
    /// [`View::get_version`], which stops at the newest source holding the key, so a key
    /// the memtables hold reads nothing and older runs' blocks are left alone.
    ///
    /// # Errors
    /// A run's block cannot be read or does not authenticate.
    pub fn prefetch(&self, key: &[u8]) -> Result<(), StorageError> {
        self.get_version(key).map(|_| ())
    }

    /// The visible keys between `start` and `end`, in `direction`, read lazily.
    ///
    /// # Errors
    /// The first block cannot be read or does not authenticate (later ones surface
    /// from the iterator).
    pub fn scan(
        &self,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        direction: Direction,
    ) -> Result<Scan, StorageError> {
        let forward = direction == Direction::Forward;
        let (near, far) = if forward { (start, end) } else { (end, start) };
        let (lo, hi) = if forward {
            (&near, &far)
        } else {
            (&far, &near)
        };
        let mut sources: Vec<Box<dyn Source>> =
            Vec::with_capacity(self.memtables.len() + self.version.level(0).len() + LEVELS);
        for m in self.memtables.iter() {
            sources.push(Box::new(MemSource::new(m.clone(), &near, forward)));
        }
        let in_range = |r: &Arc<Run>| overlaps(r.file().first_key(), r.file().last_key(), lo, hi);
        let level0 = self.version.level_shared(0);
        for (i, run) in level0.iter().enumerate() {
            if in_range(run) && run.file().min_lsn() <= self.lsn {
                sources.push(Box::new(LevelSource::new(
                    level0.clone(),
                    i..i + 1,
                    &near,
                    forward,
                    CacheFill::Fill,
                )?));
            }
        }
        for level in 1..LEVELS {
            // A sorted level's runs are disjoint: those in range are consecutive.
            let runs = self.version.level_shared(level);
            let start = runs.iter().position(in_range).unwrap_or(runs.len());
            let end = start + runs[start..].iter().take_while(|r| in_range(r)).count();
            if start < end {
                sources.push(Box::new(LevelSource::new(
                    runs.clone(),
                    start..end,
                    &near,
                    forward,
                    CacheFill::Fill,
                )?));
            }
        }
        Ok(Scan::new(
            Merged::new(sources, forward),
            self.lsn,
            far,
            forward,
        ))
    }
}

/// Whether the key range `[first, last]` meets the bounds `(lo, hi)`.
pub(crate) fn overlaps(
    first: &[u8],
    last: &[u8],
    lo: &Bound<Vec<u8>>,
    hi: &Bound<Vec<u8>>,
) -> bool {
    let above_lo = match lo {
        Bound::Unbounded => true,
        Bound::Included(k) => last >= k.as_slice(),
        Bound::Excluded(k) => last > k.as_slice(),
    };
    let below_hi = match hi {
        Bound::Unbounded => true,
        Bound::Included(k) => first <= k.as_slice(),
        Bound::Excluded(k) => first < k.as_slice(),
    };
    above_lo && below_hi
}
