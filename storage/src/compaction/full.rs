//! A full compaction in bounded steps: every run merged down to the bottom level, so
//! the retention floor, the bottom's tombstone rule and the compaction filter reach
//! every entry, whatever the number of runs.
//!
//! One version edit names at most [`CompactionOptions::max_edit_runs`] runs. When every
//! run fits in one merge (half of that), [`FullCompaction::next`] answers that single
//! merge into the bottom level. Otherwise it pushes the levels down one at a time, each
//! a sequence of bounded merges into the level below ([`picker`]'s push-down: a
//! level-0 batch, or a sorted level's consecutive runs, with every run below they
//! overlap), and finally rewrites the bottom runs no push reached, a bounded group of
//! consecutive runs at a time.
//!
//! It works on *its* runs: those that existed when it started (the *old* ones) and
//! those its own steps wrote ([`FullCompaction::record`]). Runs that appear otherwise
//! while it works (newer flushes in level 0, and what the Compactor merges them into to
//! keep writers going, even when such a merge takes one of its runs in) are left to
//! leveled compaction, so it does not chase the writes: each step moves its runs down
//! or rewrites an old bottom run, and it is done once no old run is left and none of
//! its runs sits above the bottom.
//!
//! [`picker`]: crate::compaction::picker

use std::collections::HashSet;
use std::sync::Arc;

use crate::compaction::picker::{self, CompactionOptions, Task};
use crate::run::Run;
use crate::version::Version;

/// The plan of one full compaction; see the module docs.
#[derive(Clone, Debug)]
pub struct FullCompaction {
    /// Where every run ends (the deepest level at the start, at least 1).
    bottom: usize,
    /// The runs of the version it started from.
    old: HashSet<u64>,
    /// The runs its steps wrote.
    written: HashSet<u64>,
    opts: CompactionOptions,
}

impl FullCompaction {
    /// A full compaction of `version`'s runs with `opts`' limits.
    pub fn new(version: &Version, opts: &CompactionOptions) -> FullCompaction {
        FullCompaction {
            bottom: version.deepest_level().max(1),
            old: version.runs().map(|(_, r)| r.id()).collect(),
            written: HashSet::new(),
            opts: *opts,
        }
    }

    /// Whether `run` is one it works on: old, or written by one of its steps.
    pub fn tracks(&self, run: &Arc<Run>) -> bool {
        self.old.contains(&run.id()) || self.written.contains(&run.id())
    }

    /// Records the runs a step (a task [`FullCompaction::next`] answered) added.
    pub fn record(&mut self, added: impl IntoIterator<Item = u64>) {
        self.written.extend(added);
    }

    /// Whether old runs are still in level 0 (the Compactor leaves level 0 alone until
    /// they are pushed down).
    pub fn holds_level0(&self, version: &Version) -> bool {
        version.level(0).iter().any(|r| self.old.contains(&r.id()))
    }

    /// The next step, or `None` once no old run is left and none of its outputs sits
    /// above the bottom level. Call it with the version the previous step left, after
    /// [`FullCompaction::record`]ing what the step added.
    pub fn next(&self, version: &Version) -> Option<Task> {
        let bottom = self.bottom;
        let pending = version.runs().any(|(level, r)| {
            self.old.contains(&r.id()) || (level < bottom && self.written.contains(&r.id()))
        });
        if !pending {
            return None;
        }
        // Everything at once, when it fits one edit: its runs in level 0 and every run
        // deeper (merging a newer run into the bottom with everything below it is a
        // merge like any other; newer level-0 runs stay above).
        let runs: Vec<(usize, Arc<Run>)> = version
            .runs()
            .filter(|(level, r)| *level > 0 || self.tracks(r))
            .map(|(level, r)| (level, r.clone()))
            .collect();
        if runs.len() <= self.opts.max_inputs() {
            return Some(picker::merge_task(version, runs, bottom, &self.opts, false));
        }
        // Push each level above the bottom into the next, top down.
        for level in 0..bottom {
            let candidates: Vec<Arc<Run>> = version
                .level(level)
                .iter()
                .filter(|r| self.tracks(r))
                .cloned()
                .collect();
            if !candidates.is_empty() {
                return Some(picker::push_down(
                    version, level, candidates, &self.opts, false,
                ));
            }
        }
        // Rewrite the old bottom runs no push reached, consecutive ones together.
        let level = version.level(bottom);
        let first = level.iter().position(|r| self.old.contains(&r.id()))?;
        let group: Vec<(usize, Arc<Run>)> = level[first..]
            .iter()
            .take_while(|r| self.old.contains(&r.id()))
            .take(self.opts.max_inputs())
            .map(|r| (bottom, r.clone()))
            .collect();
        Some(picker::merge_task(
            version, group, bottom, &self.opts, false,
        ))
    }
}
