//! Which runs to merge next: leveled compaction.
//!
//! Level 0 is compacted when it holds [`CompactionOptions::l0_runs`] runs: its oldest
//! runs (at most [`CompactionOptions::max_l0_inputs`]; they overlap each other, and the
//! newer ones stay above the output) with every level-1 run they overlap. A deeper level `n` is
//! compacted when its bytes exceed its target (`level1_bytes × multiplierⁿ⁻¹`): its
//! oldest run with every run of level `n + 1` it overlaps. The highest score (level-0
//! runs over their trigger, or bytes over target) goes first. Leveled compaction keeps
//! space amplification near 1.1x and a point read to one run per level, at the price of
//! rewriting data about `multiplier` times per level; that suits a ledger, which reads
//! by key far more often than it overwrites. Inputs that overlap nothing one level down
//! (nor each other) are moved there instead of merged ([`Method::Move`]; level-0 runs
//! only when each is at least [`CompactionOptions::min_move_bytes`]): a sequential load
//! is then written once.
//!
//! Every task fits one manifest version edit (at most [`MAX_EDIT_RUNS`] runs, inputs
//! plus outputs): it reads at most [`CompactionOptions::max_inputs`] runs (fewer
//! level-0 runs are taken, or the runs below a run that overlaps too many of them are
//! consolidated first), sizes its outputs to fit, and never cuts more than
//! [`Task::max_outputs`]. Outputs are also cut once they overlap
//! [`CompactionOptions::max_grandparent_overlap`] runs of the level below theirs, so
//! merging them down later stays small.

use std::sync::Arc;

use aedb_types::Lsn;

use crate::run::Run;
use crate::version::{LEVELS, Version};
use crate::view::overlaps;

/// Compaction triggers and sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionOptions {
    /// Compact level 0 once it holds this many runs.
    pub l0_runs: usize,
    /// Commits wait (a write stall) while level 0 holds this many runs, so reads never
    /// probe more than about this many level-0 runs, however fast callers write.
    pub l0_stop_runs: usize,
    /// From this many level-0 runs on (below [`CompactionOptions::l0_stop_runs`]),
    /// commits are paced to a byte rate that falls as level 0 deepens, so writers slow
    /// down gradually while compaction catches up instead of running at full speed into
    /// the stop. At or above the stop depth: no slowdown.
    pub l0_slowdown_runs: usize,
    /// A level-0 compaction merges at most this many level-0 runs (the oldest), so one
    /// merge stays bounded after a backlog.
    pub max_l0_inputs: usize,
    /// Target bytes of level 1.
    pub level1_bytes: u64,
    /// Each deeper level's target is this many times the one above.
    pub multiplier: u64,
    /// Split outputs at about this many bytes.
    pub target_file_bytes: u64,
    /// Level-0 runs are moved down (not merged) only when each holds at least this many
    /// bytes: a full memtable's flush moves, while the small runs of frequent
    /// checkpoints are merged into fewer, larger ones instead of each becoming a file
    /// of level 1 (an ascending-key workload would otherwise grow a level by one tiny
    /// file per checkpoint).
    pub min_move_bytes: u64,
    /// An output of a merge into level `n` is cut (between keys) once it overlaps this
    /// many runs of level `n + 1`, so merging it down later reads a bounded number of
    /// runs (RocksDB bounds the same with `max_compaction_bytes`).
    pub max_grandparent_overlap: usize,
    /// Most runs, inputs plus outputs, one compaction's version edit may name: the
    /// manifest's [`MAX_EDIT_RUNS`], lower only to exercise the limit in tests. A
    /// compaction reads at most half as many runs and sizes its outputs so the rest
    /// holds them.
    pub max_edit_runs: usize,
    /// When nothing else is due, a run of level 1 or deeper written at or below the
    /// retention floor is rewritten alone once at least this percentage of its entries
    /// would go (versions the floor hides and, at the bottom, tombstones): cold data
    /// no merge reaches sheds what it no longer needs ([`pick_garbage`]). 0: never.
    pub garbage_percent: u64,
    /// Threads one merge may use ([`crate::compaction::compact_parallel`]: its key range
    /// split into at most this many parts merged at once, each at least an output
    /// file's worth) when compaction is behind (commits slowed or waiting) and for a
    /// full compaction asked for by a call; otherwise a merge runs on the compactor's
    /// own thread, leaving the other cores to commits. Default: the machine's cores, at
    /// most 4. 1: never split.
    pub threads: usize,
}

/// Most runs one version edit may name (the manifest's limit).
pub use aedb_manifest::MAX_EDIT_RUNS;

impl Default for CompactionOptions {
    fn default() -> CompactionOptions {
        CompactionOptions {
            l0_runs: 4,
            l0_stop_runs: 20,
            l0_slowdown_runs: 12,
            max_l0_inputs: 16,
            level1_bytes: 64 * 1024 * 1024,
            multiplier: 10,
            target_file_bytes: 16 * 1024 * 1024,
            min_move_bytes: 256 * 1024,
            max_grandparent_overlap: 25,
            max_edit_runs: MAX_EDIT_RUNS,
            garbage_percent: 25,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        }
    }
}

impl CompactionOptions {
    /// The byte target of `level` (≥ 1).
    pub fn level_target(&self, level: usize) -> u64 {
        let mut t = self.level1_bytes.max(1);
        for _ in 1..level {
            t = t.saturating_mul(self.multiplier.max(2));
        }
        t
    }

    /// The edit size in force: [`CompactionOptions::max_edit_runs`] within 4 ..=
    /// [`MAX_EDIT_RUNS`].
    fn edit_runs(&self) -> usize {
        self.max_edit_runs.clamp(4, MAX_EDIT_RUNS)
    }

    /// Most input runs of one compaction: half of the edit size, leaving the rest for
    /// its outputs (a move of that many names each twice).
    pub fn max_inputs(&self) -> usize {
        self.edit_runs() / 2
    }

    /// Most outputs a merge of `inputs` runs may write: what the edit has left.
    pub fn max_outputs(&self, inputs: usize) -> usize {
        self.edit_runs().saturating_sub(inputs).max(1)
    }

    /// The output file size for merging `inputs` runs holding `bytes`: the target, or
    /// more when outputs of the target's size would not fit beside the inputs in one
    /// version edit. An estimate (from file sizes, which compression changes); the
    /// merge itself stops cutting at [`Task::max_outputs`].
    pub fn output_bytes(&self, inputs: usize, bytes: u64) -> u64 {
        let room = self.max_outputs(inputs).saturating_sub(2).max(1) as u64;
        self.target_file_bytes.max(1).max(bytes.div_ceil(room))
    }
}

/// How a task's inputs reach the output level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// Merge the inputs into new runs (dropping what the floor hides).
    #[default]
    Merge,
    /// Re-file the inputs one level down as they are, without reading or writing them:
    /// they overlap no run of the output level and no other input (a sequential load,
    /// say), so a merge would copy every byte unchanged.
    Move,
}

/// One compaction to run.
#[derive(Clone, Debug)]
pub struct Task {
    /// The input runs and their levels.
    pub inputs: Vec<(usize, Arc<Run>)>,
    /// Where the outputs go.
    pub output_level: usize,
    /// No deeper level holds keys in the inputs' range: tombstones can go.
    pub bottommost: bool,
    /// Split outputs at about this many bytes.
    pub target_file_bytes: u64,
    /// Merge or move.
    pub method: Method,
    /// The runs of the level below the output level (empty for the bottom): a merge
    /// cuts an output once it overlaps [`Task::max_grandparent_overlap`] of them.
    pub grandparents: Arc<[Arc<Run>]>,
    /// See [`CompactionOptions::max_grandparent_overlap`].
    pub max_grandparent_overlap: usize,
    /// Most outputs: no cut (by size or by grandparents) makes more, so the version
    /// edit stays within its limit whatever the estimates said.
    pub max_outputs: usize,
}

impl Task {
    /// A merge of `inputs` into `output_level`, outputs cut at `target_file_bytes` only
    /// (no grandparent limit).
    pub fn merge(
        inputs: Vec<(usize, Arc<Run>)>,
        output_level: usize,
        bottommost: bool,
        target_file_bytes: u64,
    ) -> Task {
        Task {
            output_level,
            bottommost,
            target_file_bytes,
            method: Method::Merge,
            grandparents: Arc::from([]),
            max_grandparent_overlap: usize::MAX,
            max_outputs: MAX_EDIT_RUNS.saturating_sub(inputs.len()).max(1),
            inputs,
        }
    }

    /// Bytes read by this compaction.
    pub fn input_bytes(&self) -> u64 {
        self.inputs.iter().map(|(_, r)| r.file().len()).sum()
    }
}

/// Bytes that compaction still has to process to bring every level under its target
/// (level 0 counts whole when over its trigger, less the runs its next compaction
/// moves down unread, [`Method::Move`]; a deeper level counts its excess, which a
/// move may also take, so that part is an upper bound).
pub fn pending_bytes(version: &Version, opts: &CompactionOptions) -> u64 {
    let mut pending = 0;
    if version.level(0).len() >= opts.l0_runs {
        let moved = pick_level0(version, opts)
            .filter(|t| t.method == Method::Move)
            .map_or(0, |t| t.input_bytes());
        pending += version.level_bytes(0).saturating_sub(moved);
    }
    for level in 1..LEVELS - 1 {
        pending += version
            .level_bytes(level)
            .saturating_sub(opts.level_target(level));
    }
    pending
}

/// The most urgent compaction, if any level is over its trigger.
pub fn pick(version: &Version, opts: &CompactionOptions) -> Option<Task> {
    let mut best: Option<(f64, usize)> = None;
    let l0 = version.level(0).len();
    if l0 >= opts.l0_runs.max(1) {
        best = Some((l0 as f64 / opts.l0_runs.max(1) as f64, 0));
    }
    for level in 1..LEVELS - 1 {
        let score = version.level_bytes(level) as f64 / opts.level_target(level) as f64;
        if score >= 1.0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, level));
        }
    }
    let (_, level) = best?;
    if level == 0 {
        return pick_level0(version, opts);
    }
    // The run holding the oldest data pushes history down first.
    let oldest = version
        .level(level)
        .iter()
        .min_by_key(|r| (r.file().max_lsn(), r.id()))?;
    Some(push_down(version, level, vec![oldest.clone()], opts, true))
}

/// The rewrite of the cold run with the most garbage, if one has at least
/// [`CompactionOptions::garbage_percent`] of its entries to drop at `floor`. A run of
/// level 1 or deeper written at or below the floor keeps one version per key (the
/// others are hidden), and at the bottom no tombstone, so it drops exactly
/// `entries − distinct keys` versions plus, at the bottom, at least
/// `tombstones − hidden` tombstones, all from its meta block. *Cold*: no run of the
/// level above overlaps it (one that does will merge into it anyway). It is merged alone
/// into its own level; what it writes has no garbage left, so it is not picked again.
/// For when nothing else is due: leveled compaction only merges where writes land, and
/// this reaches the runs it leaves.
pub fn pick_garbage(version: &Version, opts: &CompactionOptions, floor: Lsn) -> Option<Task> {
    if opts.garbage_percent == 0 {
        return None;
    }
    let enough = |garbage: u64, run: &Arc<Run>| {
        garbage.saturating_mul(100) >= opts.garbage_percent.saturating_mul(run.file().entries())
    };
    let garbage = |level: usize, run: &Arc<Run>| -> Option<u64> {
        let f = run.file();
        if f.max_lsn() > floor || f.entries() == 0 {
            return None;
        }
        let hidden = f.entries().saturating_sub(f.distinct_keys());
        let garbage = if enough(hidden, run) {
            hidden
        } else {
            // Only the bottom drops tombstones (checked only when they would matter).
            if !nothing_below(version, level, run) {
                return None;
            }
            hidden.max(f.tombstones())
        };
        let cold = overlapping(version, level - 1, std::slice::from_ref(run)).is_empty();
        (enough(garbage, run) && cold).then_some(garbage)
    };
    let (level, run, _) = (1..LEVELS)
        .flat_map(|level| version.level(level).iter().map(move |r| (level, r)))
        .filter_map(|(level, r)| garbage(level, r).map(|g| (level, r, g)))
        .max_by_key(|(_, _, g)| *g)?;
    Some(merge_task(
        version,
        vec![(level, run.clone())],
        level,
        opts,
        false,
    ))
}

/// The level-0 compaction, if level 0 is at its trigger: its oldest runs (at most
/// [`CompactionOptions::max_l0_inputs`]) into level 1.
pub fn pick_level0(version: &Version, opts: &CompactionOptions) -> Option<Task> {
    let l0 = version.level(0);
    if l0.len() < opts.l0_runs.max(1) {
        return None;
    }
    // Level 0 is newest first: its oldest runs are at the end.
    let oldest = l0[l0.len().saturating_sub(opts.max_l0_inputs.max(1))..].to_vec();
    Some(push_down(version, 0, oldest, opts, true))
}

/// The task merging `picked` (runs of `level`; of level 0, its oldest ones, newest
/// first) into level `level + 1` together with every run there they overlap, or moving
/// them there when `may_move` and they overlap nothing. When that would read more than
/// [`CompactionOptions::max_inputs`] runs, fewer level-0 runs are taken (the oldest
/// stay); when even one run overlaps too many, the first of those it overlaps are
/// merged into at most half as many larger runs of their own level instead (a
/// consolidation; the push is picked again after it).
pub(crate) fn push_down(
    version: &Version,
    level: usize,
    mut picked: Vec<Arc<Run>>,
    opts: &CompactionOptions,
    may_move: bool,
) -> Task {
    let output_level = level + 1;
    let max_inputs = opts.max_inputs();
    let mut below = overlapping(version, output_level, &picked);
    while picked.len() > 1 && picked.len() + below.len() > max_inputs {
        // Drop the newest (level 0 lists newest first; a sorted level keeps its first).
        if level == 0 {
            picked.remove(0);
        } else {
            picked.pop();
        }
        below = overlapping(version, output_level, &picked);
    }
    if picked.len() + below.len() > max_inputs {
        return consolidate(version, output_level, &below[..max_inputs], opts);
    }
    let movable = may_move
        && below.is_empty()
        && disjoint(&picked)
        && (level > 0 || picked.iter().all(|r| r.file().len() >= opts.min_move_bytes));
    let mut inputs: Vec<(usize, Arc<Run>)> = picked.into_iter().map(|r| (level, r)).collect();
    inputs.extend(below.into_iter().map(|r| (output_level, r)));
    merge_task(version, inputs, output_level, opts, movable)
}

/// A merge of `runs` (at least two), consecutive runs of sorted `level`, into at most
/// half as many runs of the same level.
fn consolidate(
    version: &Version,
    level: usize,
    runs: &[Arc<Run>],
    opts: &CompactionOptions,
) -> Task {
    let inputs: Vec<(usize, Arc<Run>)> = runs.iter().map(|r| (level, r.clone())).collect();
    let half = (runs.len() / 2).max(1) as u64;
    let mut task = merge_task(version, inputs, level, opts, false);
    task.target_file_bytes = task
        .target_file_bytes
        .max(task.input_bytes().div_ceil(half));
    // The runs do halve, whatever the sizes say; only the size cuts.
    task.max_outputs = half as usize;
    task.max_grandparent_overlap = usize::MAX;
    task
}

/// A task for `inputs` into `output_level`: bottommost when no deeper level overlaps
/// them, outputs sized to fit the edit and cut by grandparent overlap.
pub(crate) fn merge_task(
    version: &Version,
    inputs: Vec<(usize, Arc<Run>)>,
    output_level: usize,
    opts: &CompactionOptions,
    movable: bool,
) -> Task {
    let runs: Vec<Arc<Run>> = inputs.iter().map(|(_, r)| r.clone()).collect();
    let bottommost = (output_level + 1..LEVELS).all(|l| overlapping(version, l, &runs).is_empty());
    let bytes: u64 = runs.iter().map(|r| r.file().len()).sum();
    let method = if movable { Method::Move } else { Method::Merge };
    Task {
        target_file_bytes: opts.output_bytes(inputs.len(), bytes),
        max_outputs: opts.max_outputs(inputs.len()),
        inputs,
        output_level,
        bottommost,
        method,
        grandparents: if output_level + 1 < LEVELS {
            version.level_shared(output_level + 1).clone()
        } else {
            Arc::from([])
        },
        max_grandparent_overlap: opts.max_grandparent_overlap.max(1),
    }
}

/// Whether `run`, of `level`, holds the oldest versions of its keys: no deeper level
/// holds a key in its span (so removing it shows no older version of any of them).
pub fn nothing_below(version: &Version, level: usize, run: &Arc<Run>) -> bool {
    let runs = std::slice::from_ref(run);
    (level + 1..LEVELS).all(|l| overlapping(version, l, runs).is_empty())
}

/// The runs of `level` whose key range overlaps the span of `runs` (first key of the
/// first to last key of the last), in the level's order.
pub(crate) fn overlapping(version: &Version, level: usize, runs: &[Arc<Run>]) -> Vec<Arc<Run>> {
    let (Some(first), Some(last)) = (
        runs.iter().map(|r| r.file().first_key()).min(),
        runs.iter().map(|r| r.file().last_key()).max(),
    ) else {
        return Vec::new();
    };
    let lo = std::ops::Bound::Included(first.to_vec());
    let hi = std::ops::Bound::Included(last.to_vec());
    version
        .level(level)
        .iter()
        .filter(|r| overlaps(r.file().first_key(), r.file().last_key(), &lo, &hi))
        .cloned()
        .collect()
}

/// Whether no two of `runs` share a key (a sorted level could hold them all).
fn disjoint(runs: &[Arc<Run>]) -> bool {
    let mut ranges: Vec<(&[u8], &[u8])> = runs
        .iter()
        .map(|r| (r.file().first_key(), r.file().last_key()))
        .collect();
    ranges.sort_unstable();
    ranges.windows(2).all(|w| w[0].1 < w[1].0)
}
