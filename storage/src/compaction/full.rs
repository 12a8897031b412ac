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
//! consecutive runs at a time. Runs flushed while it works (newer than the version it
//! started from) stay where they are: it never chases a moving target.
//!
//! [`picker`]: crate::compaction::picker

use std::sync::Arc;

use crate::compaction::picker::{self, CompactionOptions, Task};
use crate::run::Run;
use crate::version::Version;

/// The plan of one full compaction; see the module docs.
#[derive(Clone, Debug)]
pub struct FullCompaction {
    /// Where every run ends (the deepest level at the start, at least 1).
    bottom: usize,
    /// Runs with smaller ids existed when it started; larger ones are its own outputs
    /// or newer flushes.
    started_before: u64,
    opts: CompactionOptions,
}

impl FullCompaction {
    /// A full compaction of `version`'s runs with `opts`' limits.
    pub fn new(version: &Version, opts: &CompactionOptions) -> FullCompaction {
        FullCompaction {
            bottom: version.deepest_level().max(1),
            started_before: version.runs().map(|(_, r)| r.id() + 1).max().unwrap_or(0),
            opts: *opts,
        }
    }

    /// Whether `run` existed when this compaction started.
    fn old(&self, run: &Arc<Run>) -> bool {
        run.id() < self.started_before
    }

    /// The next merge, or `None` once every run that existed at the start has been
    /// merged into the bottom level. Call it with the version the previous step left.
    pub fn next(&self, version: &Version) -> Option<Task> {
        let bottom = self.bottom;
        // Everything at once, when it fits one edit (runs flushed since stay above).
        let runs: Vec<(usize, Arc<Run>)> = version
            .runs()
            .filter(|(level, r)| *level > 0 || self.old(r))
            .map(|(level, r)| (level, r.clone()))
            .collect();
        if !runs.iter().any(|(_, r)| self.old(r)) {
            return None;
        }
        if runs.len() <= self.opts.max_inputs() {
            return Some(picker::merge_task(version, runs, bottom, &self.opts, false));
        }
        // Push each level above the bottom into the next, top down.
        for level in 0..bottom {
            let candidates: Vec<Arc<Run>> = version
                .level(level)
                .iter()
                .filter(|r| level > 0 || self.old(r))
                .cloned()
                .collect();
            if !candidates.is_empty() {
                return Some(picker::push_down(
                    version, level, candidates, &self.opts, false,
                ));
            }
        }
        // Rewrite the bottom runs no push reached, consecutive ones together.
        let level = version.level(bottom);
        let first = level.iter().position(|r| self.old(r))?;
        let group: Vec<(usize, Arc<Run>)> = level[first..]
            .iter()
            .take_while(|r| self.old(r))
            .take(self.opts.max_inputs())
            .map(|r| (bottom, r.clone()))
            .collect();
        Some(picker::merge_task(
            version, group, bottom, &self.opts, false,
        ))
    }
}
