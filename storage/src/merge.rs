//! Merging reads: cursors over memtables and levels, merged into one ordered stream.
//!
//! Every source yields entries in internal order (key ascending, newest version first)
//! or exactly the reverse. [`Merged`] interleaves them, pulling data blocks lazily
//! through the block cache as a cursor crosses into them; [`Scan`] layers snapshot
//! visibility on top (the newest version at or before the snapshot's LSN, tombstones
//! hiding older versions) and the scan's far bound.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use aedb_checkpoint::{DataBlock, EntryKind, EntryPos};
use aedb_types::Lsn;

use crate::cache::CacheFill;
use crate::error::StorageError;
use crate::memtable::{InternalKey, MemKey, MemValue, Memtable, Probe};
use crate::run::Run;

/// The order a scan walks keys in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Ascending key order.
    #[default]
    Forward,
    /// Descending key order.
    Reverse,
}

/// One entry as a source holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The user key.
    pub key: &'a [u8],
    /// The LSN that wrote it.
    pub lsn: Lsn,
    /// Value or tombstone.
    pub kind: EntryKind,
    /// The value (empty for a tombstone).
    pub value: &'a [u8],
}

/// Internal order: key ascending, then newest first.
fn internal_cmp(a: &EntryRef<'_>, b: &EntryRef<'_>) -> Ordering {
    a.key.cmp(b.key).then(b.lsn.cmp(&a.lsn))
}

/// A cursor over one sorted source, in one direction.
pub(crate) trait Source: Send {
    fn current(&self) -> Option<EntryRef<'_>>;
    fn advance(&mut self) -> Result<(), StorageError>;
}

/// The probe that positions a cursor: the first entry at or after `(key, lsn)` in
/// internal order. `lsn = MAX` finds a key's newest version; `lsn = 0` (never written)
/// finds the first entry of the next key.
fn start_probe(bound: &Bound<Vec<u8>>, forward: bool) -> Option<(&[u8], Lsn)> {
    match (bound, forward) {
        (Bound::Unbounded, _) => None,
        (Bound::Included(k), true) | (Bound::Excluded(k), false) => Some((k, Lsn::MAX)),
        (Bound::Excluded(k), true) | (Bound::Included(k), false) => Some((k, Lsn::ZERO)),
    }
}

pub(crate) struct MemSource {
    mem: Arc<Memtable>,
    forward: bool,
    /// The entries ahead, fetched a batch at a time; the front is the current one.
    ahead: VecDeque<(MemKey, MemValue)>,
    exhausted: bool,
}

/// Entries a memtable cursor fetches per skip-list search.
const MEM_BATCH: usize = 64;

impl MemSource {
    /// Positioned at the scan's near bound (`start` forward, `end` reverse).
    pub(crate) fn new(mem: Arc<Memtable>, near: &Bound<Vec<u8>>, forward: bool) -> MemSource {
        let mut ahead = VecDeque::with_capacity(MEM_BATCH);
        match start_probe(near, forward) {
            None => mem.batch(Bound::Unbounded, forward, MEM_BATCH, &mut ahead),
            Some((k, lsn)) => {
                let probe = Probe(k, lsn);
                let probe: &dyn InternalKey = &probe;
                let bound = if forward {
                    Bound::Included(probe)
                } else {
                    Bound::Excluded(probe)
                };
                mem.batch(bound, forward, MEM_BATCH, &mut ahead);
            }
        }
        let exhausted = ahead.len() < MEM_BATCH;
        MemSource {
            mem,
            forward,
            ahead,
            exhausted,
        }
    }
}

impl Source for MemSource {
    fn current(&self) -> Option<EntryRef<'_>> {
        self.ahead.front().map(|(k, v)| EntryRef {
            key: &k.key,
            lsn: k.lsn(),
            kind: v.kind(),
            value: v.bytes(),
        })
    }

    fn advance(&mut self) -> Result<(), StorageError> {
        let Some((last, _)) = self.ahead.pop_front() else {
            return Ok(());
        };
        if self.ahead.is_empty() && !self.exhausted {
            self.mem.batch(
                Bound::Excluded(&last as &dyn InternalKey),
                self.forward,
                MEM_BATCH,
                &mut self.ahead,
            );
            self.exhausted = self.ahead.len() < MEM_BATCH;
        }
        Ok(())
    }
}

/// A cursor over a level: runs in key order whose ranges do not overlap (or a single
/// level-0 run): `span` of the shared `level`. Blocks are loaded lazily through the
/// cache.
pub(crate) struct LevelSource {
    level: Arc<[Arc<Run>]>,
    span: std::ops::Range<usize>,
    forward: bool,
    fill: CacheFill,
    run: usize,
    block_index: usize,
    block: Option<DataBlock>,
    entry: usize,
    /// Where `entry` lies in `block` (`None` when exhausted): located once per step,
    /// because a merge reads its sources' current entries several times per step.
    current: Option<EntryPos>,
}

impl LevelSource {
    /// Positioned at the scan's near bound; blocks it loads are cached as `fill` says.
    pub(crate) fn new(
        level: Arc<[Arc<Run>]>,
        span: std::ops::Range<usize>,
        near: &Bound<Vec<u8>>,
        forward: bool,
        fill: CacheFill,
    ) -> Result<LevelSource, StorageError> {
        debug_assert!(span.end <= level.len());
        let mut s = LevelSource {
            level,
            span,
            forward,
            fill,
            run: 0,
            block_index: 0,
            block: None,
            entry: 0,
            current: None,
        };
        match start_probe(near, forward) {
            None if forward => s.load(0, 0, Some(0))?,
            None => {
                if let Some(last) = s.span.len().checked_sub(1) {
                    s.load_last_of_run(last)?;
                }
            }
            Some((key, lsn)) => {
                s.seek_ge(key, lsn)?;
                if !forward {
                    s.step_back()?;
                }
            }
        }
        s.locate_current();
        Ok(s)
    }

    /// Locates the entry the cursor now stands on.
    fn locate_current(&mut self) {
        self.current = self
            .block
            .as_ref()
            .filter(|b| self.entry < b.len())
            .map(|b| b.locate(self.entry));
    }

    /// Loads block `block` of run `run` and positions at `entry` (or the block's last
    /// entry for `None`); past the last run means exhausted.
    fn load(&mut self, run: usize, block: usize, entry: Option<usize>) -> Result<(), StorageError> {
        self.run = run;
        self.block_index = block;
        self.block = None;
        let Some(r) = self.level[self.span.clone()].get(run) else {
            return Ok(());
        };
        if block >= r.block_count() {
            return Ok(());
        }
        let b = r.block_with(block, self.fill)?;
        self.entry = entry.unwrap_or(b.len().saturating_sub(1));
        self.block = Some(b);
        Ok(())
    }

    fn load_last_of_run(&mut self, run: usize) -> Result<(), StorageError> {
        let blocks = self.level[self.span.clone()][run].block_count();
        match blocks.checked_sub(1) {
            Some(last) => self.load(run, last, None),
            None => {
                self.block = None;
                Ok(())
            }
        }
    }

    /// Positions at the first entry at or after `(key, lsn)`; exhausted when none.
    fn seek_ge(&mut self, key: &[u8], lsn: Lsn) -> Result<(), StorageError> {
        let run = self.level[self.span.clone()].partition_point(|r| r.file().last_key() < key);
        self.position_in(run, key, lsn)
    }

    fn position_in(&mut self, run: usize, key: &[u8], lsn: Lsn) -> Result<(), StorageError> {
        let mut run = run;
        let runs = &self.level[self.span.clone()];
        while let Some(r) = runs.get(run) {
            if let Some(mut b) = r.block_for(key)? {
                while b < r.block_count() {
                    let block = r.block_with(b, self.fill)?;
                    let i = block.seek(key, lsn);
                    if i < block.len() {
                        self.run = run;
                        self.block_index = b;
                        self.entry = i;
                        self.block = Some(block);
                        return Ok(());
                    }
                    b += 1;
                }
            }
            run += 1;
            if let Some(next) = runs.get(run) {
                // Everything in the next run is after `key`: start at its beginning.
                if next.file().first_key() > key {
                    return self.load(run, 0, Some(0));
                }
            }
        }
        self.run = self.span.len();
        self.block = None;
        Ok(())
    }

    /// Moves to the entry before the current position (or before the end when
    /// exhausted); exhausted when there is none.
    fn step_back(&mut self) -> Result<(), StorageError> {
        if self.block.is_none() {
            // Exhausted forward: the entry before the end is the last one of all.
            return match self.span.len().checked_sub(1) {
                Some(last) if self.run >= self.span.len() => self.load_last_of_run(last),
                _ => Ok(()),
            };
        }
        if self.entry > 0 {
            self.entry -= 1;
            return Ok(());
        }
        if self.block_index > 0 {
            return self.load(self.run, self.block_index - 1, None);
        }
        if self.run > 0 {
            return self.load_last_of_run(self.run - 1);
        }
        self.block = None;
        self.run = self.span.len();
        Ok(())
    }

    fn step_forward(&mut self) -> Result<(), StorageError> {
        let Some(block) = &self.block else {
            return Ok(());
        };
        if self.entry + 1 < block.len() {
            self.entry += 1;
            return Ok(());
        }
        let blocks = self.level[self.span.clone()][self.run].block_count();
        if self.block_index + 1 < blocks {
            return self.load(self.run, self.block_index + 1, Some(0));
        }
        self.load(self.run + 1, 0, Some(0))
    }
}

impl Source for LevelSource {
    fn current(&self) -> Option<EntryRef<'_>> {
        let e = self.block.as_ref()?.at(self.current?);
        Some(EntryRef {
            key: e.key,
            lsn: e.lsn,
            kind: e.kind,
            value: e.value,
        })
    }

    fn advance(&mut self) -> Result<(), StorageError> {
        let moved = if self.forward {
            self.step_forward()
        } else {
            self.step_back()
        };
        self.locate_current();
        moved
    }
}

/// Every entry of several sources, merged in internal order (or its reverse). No
/// versions are hidden: compaction reads this, scans filter it.
///
/// The sources sit in a binary heap ordered by their current entry (ties go to the
/// lower source index, the newer source), so each step costs `O(log n)` comparisons
/// however many runs level 0 holds; exhausted sources leave the heap.
pub struct Merged {
    sources: Vec<Box<dyn Source>>,
    forward: bool,
    /// Indices of the sources that still hold entries, a heap under [`Merged::before`].
    heap: Vec<usize>,
}

impl Merged {
    pub(crate) fn new(sources: Vec<Box<dyn Source>>, forward: bool) -> Merged {
        let mut m = Merged {
            heap: (0..sources.len())
                .filter(|&i| sources[i].current().is_some())
                .collect(),
            sources,
            forward,
        };
        for i in (0..m.heap.len() / 2).rev() {
            m.sift_down(i);
        }
        m
    }

    /// Whether source `a`'s entry comes out before source `b`'s.
    fn before(&self, a: usize, b: usize) -> bool {
        let (Some(x), Some(y)) = (self.sources[a].current(), self.sources[b].current()) else {
            // Exhausted sources never stay in the heap.
            return a < b;
        };
        let ord = internal_cmp(&x, &y);
        let ord = if self.forward { ord } else { ord.reverse() };
        ord.then(a.cmp(&b)) == Ordering::Less
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let (l, r) = (2 * at + 1, 2 * at + 2);
            let mut first = at;
            if l < self.heap.len() && self.before(self.heap[l], self.heap[first]) {
                first = l;
            }
            if r < self.heap.len() && self.before(self.heap[r], self.heap[first]) {
                first = r;
            }
            if first == at {
                return;
            }
            self.heap.swap(at, first);
            at = first;
        }
    }

    /// The next entry, handed to `f` (borrowed from its source), then passed.
    ///
    /// # Errors
    /// A block could not be read or authenticated.
    pub fn next_with<T>(
        &mut self,
        f: impl FnOnce(EntryRef<'_>) -> T,
    ) -> Result<Option<T>, StorageError> {
        let Some(&i) = self.heap.first() else {
            return Ok(None);
        };
        let out = match self.sources[i].current() {
            Some(e) => f(e),
            None => return Ok(None),
        };
        self.sources[i].advance()?;
        if self.sources[i].current().is_none() {
            let last = self.heap.len() - 1;
            self.heap.swap(0, last);
            self.heap.pop();
        }
        self.sift_down(0);
        Ok(Some(out))
    }

    /// The next entry without passing it.
    pub(crate) fn peek(&self) -> Option<EntryRef<'_>> {
        self.heap.first().and_then(|&i| self.sources[i].current())
    }
}

/// One visible key and value of a scan, with the LSN that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanItem {
    /// The key.
    pub key: Vec<u8>,
    /// The LSN of the visible version.
    pub lsn: Lsn,
    /// The value.
    pub value: Vec<u8>,
}

/// The visible keys in a range at a snapshot, as an iterator (see the module docs).
/// Blocks are read as the scan reaches them; stop early and the rest is never read.
pub struct Scan {
    merged: Merged,
    at: Lsn,
    far: Bound<Vec<u8>>,
    forward: bool,
    decided: Option<Vec<u8>>,
    failed: bool,
}

impl Scan {
    pub(crate) fn new(merged: Merged, at: Lsn, far: Bound<Vec<u8>>, forward: bool) -> Scan {
        Scan {
            merged,
            at,
            far,
            forward,
            decided: None,
            failed: false,
        }
    }

    fn beyond_far(&self, key: &[u8]) -> bool {
        match (&self.far, self.forward) {
            (Bound::Unbounded, _) => false,
            (Bound::Included(f), true) => key > f.as_slice(),
            (Bound::Excluded(f), true) => key >= f.as_slice(),
            (Bound::Included(f), false) => key < f.as_slice(),
            (Bound::Excluded(f), false) => key <= f.as_slice(),
        }
    }

    fn next_forward<T>(
        &mut self,
        make: impl FnOnce(&[u8], Lsn, &[u8]) -> T,
    ) -> Result<Option<T>, StorageError> {
        let mut make = Some(make);
        loop {
            let Some(e) = self.merged.peek() else {
                return Ok(None);
            };
            if self.beyond_far(e.key) {
                return Ok(None);
            }
            let skip = self.decided.as_deref() == Some(e.key) || e.lsn > self.at;
            let at = self.at;
            let decided = &mut self.decided;
            let item = self.merged.next_with(|e| {
                if skip {
                    return None;
                }
                // The newest version at or before the snapshot: it decides the key.
                debug_assert!(e.lsn <= at);
                let d = decided.get_or_insert_with(Vec::new);
                d.clear();
                d.extend_from_slice(e.key);
                (e.kind == EntryKind::Put).then(|| make.take().map(|f| f(e.key, e.lsn, e.value)))
            })?;
            match item {
                Some(Some(Some(item))) => return Ok(Some(item)),
                Some(Some(None)) => return Ok(None),
                Some(None) => {}
                None => return Ok(None),
            }
        }
    }

    fn next_reverse(&mut self) -> Result<Option<ScanItem>, StorageError> {
        // Versions of one key arrive oldest first; the last one at or before the
        // snapshot is the visible one.
        let mut group: Option<(Vec<u8>, Option<ScanItem>)> = None;
        loop {
            let next_key_differs = match (self.merged.peek(), &group) {
                (None, _) => true,
                (Some(e), _) if self.beyond_far(e.key) => true,
                (Some(e), Some((k, _))) => e.key != k.as_slice(),
                (Some(_), None) => false,
            };
            if next_key_differs {
                match group.take() {
                    Some((_, Some(item))) => return Ok(Some(item)),
                    Some((_, None)) => {
                        // Deleted or too new: on to the next key, if any.
                        match self.merged.peek() {
                            Some(e) if !self.beyond_far(e.key) => continue,
                            _ => return Ok(None),
                        }
                    }
                    None => return Ok(None),
                }
            }
            let at = self.at;
            let entry = self.merged.next_with(|e| {
                let visible = (e.lsn <= at).then(|| {
                    (e.kind == EntryKind::Put).then(|| ScanItem {
                        key: e.key.to_vec(),
                        lsn: e.lsn,
                        value: e.value.to_vec(),
                    })
                });
                (e.key.to_vec(), visible)
            })?;
            let Some((key, visible)) = entry else {
                continue;
            };
            let g = group.get_or_insert((key, None));
            if let Some(v) = visible {
                g.1 = v;
            }
        }
    }
}

impl Scan {
    /// The next visible key, handed to `make` as `(key, lsn, value)` borrowed from its
    /// source (a block or a memtable), so the caller builds what it needs with no
    /// intermediate copy; `None` once the range is done. After an error the scan is
    /// done.
    pub fn next_with<T>(
        &mut self,
        make: impl FnOnce(&[u8], Lsn, &[u8]) -> T,
    ) -> Option<Result<T, StorageError>> {
        if self.failed {
            return None;
        }
        let r = if self.forward {
            self.next_forward(make)
        } else {
            self.next_reverse()
                .map(|item| item.map(|i| make(&i.key, i.lsn, &i.value)))
        };
        match r {
            Ok(item) => item.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl Iterator for Scan {
    type Item = Result<ScanItem, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(|key, lsn, value| ScanItem {
            key: key.to_vec(),
            lsn,
            value: value.to_vec(),
        })
    }
}
