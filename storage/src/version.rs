//! A version: the set of live runs, level by level, as one immutable value.
//!
//! Level 0 holds freshly flushed runs, newest first; their key ranges overlap but their
//! LSN ranges do not (each is one memtable). Every deeper level holds runs with
//! disjoint key ranges, sorted by key. For any key, every version in a shallower level
//! (and in a newer level-0 run) is newer than every version deeper down: flushes add
//! level-0 runs newer than everything, and a compaction merges a run only with
//! everything it overlaps one level down. So a lookup stops at the first source that
//! knows the key. Readers hold an `Arc<Version>`; a change builds a new one, so a run a
//! reader still uses stays open (and its file on disk) until the reader lets go.

use std::sync::Arc;

use aedb_checkpoint::Heads;

use crate::run::Run;

/// How many levels a version has (level 0 and six sorted levels): as many as the
/// manifest can record.
pub const LEVELS: usize = aedb_manifest::MAX_LEVELS as usize;

/// The live runs; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct Version {
    /// Each level's runs, shared: a scan holds a level by one reference count rather
    /// than one per run.
    levels: [Arc<[Arc<Run>]>; LEVELS],
    /// The heads of each sorted level's last keys (level 0's are empty: its runs
    /// overlap), so finding a level's run for a key compares integers, not keys behind
    /// three pointers.
    last_keys: [Heads; LEVELS],
    floor: aedb_types::Lsn,
}

/// One change of a version: runs added at their levels, runs removed by id.
#[derive(Clone, Debug, Default)]
pub struct Edit {
    /// New runs and their level.
    pub added: Vec<(usize, Arc<Run>)>,
    /// Ids of runs no longer live.
    pub removed: Vec<u64>,
    /// The retention floor the added runs were compacted to: versions older than the
    /// newest one at or before it may be gone, so reads as of earlier LSNs are refused.
    pub floor: aedb_types::Lsn,
}

impl Version {
    /// The version with no runs.
    pub fn empty() -> Version {
        Version::default()
    }

    /// The runs of `level` (level 0 newest first; deeper levels by key).
    pub fn level(&self, level: usize) -> &[Arc<Run>] {
        &self.levels[level]
    }

    /// The runs of `level`, shared (for a cursor that outlives this borrow).
    pub(crate) fn level_shared(&self, level: usize) -> &Arc<[Arc<Run>]> {
        &self.levels[level]
    }

    /// Every run with its level.
    pub fn runs(&self) -> impl Iterator<Item = (usize, &Arc<Run>)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(l, runs)| runs.iter().map(move |r| (l, r)))
    }

    /// Total file bytes of a level.
    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|r| r.file().len()).sum()
    }

    /// The deepest level holding any run (0 when there are none).
    pub fn deepest_level(&self) -> usize {
        (0..LEVELS)
            .rev()
            .find(|&l| !self.levels[l].is_empty())
            .unwrap_or(0)
    }

    /// The oldest LSN every run can still be read as of (see [`Edit::floor`]).
    pub fn floor(&self) -> aedb_types::Lsn {
        self.floor
    }

    /// The version after `edit`.
    pub fn apply(&self, edit: &Edit) -> Version {
        let mut levels: [Vec<Arc<Run>>; LEVELS] = std::array::from_fn(|l| {
            self.levels[l]
                .iter()
                .filter(|r| !edit.removed.contains(&r.id()))
                .cloned()
                .collect()
        });
        for (level, run) in &edit.added {
            levels[*level].push(run.clone());
        }
        levels[0].sort_by_key(|r| std::cmp::Reverse(r.file().max_lsn()));
        for level in &mut levels[1..] {
            level.sort_by(|a, b| a.file().first_key().cmp(b.file().first_key()));
        }
        let last_keys = std::array::from_fn(|l| match l {
            0 => Heads::default(),
            _ => Heads::build(levels[l].len(), |i| levels[l][i].file().last_key()),
        });
        Version {
            levels: levels.map(Arc::from),
            last_keys,
            floor: self.floor.max(edit.floor),
        }
    }

    /// In a sorted level (1 and deeper), the run whose key range holds `key`.
    pub(crate) fn find_in_level(&self, level: usize, key: &[u8]) -> Option<&Arc<Run>> {
        let runs = &self.levels[level];
        let i = self.last_keys[level].search(key, |i| runs[i].file().last_key() < key);
        runs.get(i).filter(|r| r.covers(key))
    }
}
