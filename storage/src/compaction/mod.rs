//! Compaction: merging runs level by level in the background.
//!
//! [`picker`] decides *what* to merge (leveled: level 0 by run count, deeper levels by
//! size against a target that grows tenfold per level), and [`full`] plans a full
//! compaction in steps of the same bounded size; [`compact`] does the merge,
//! dropping every version no snapshot inside the retention window can see and every
//! tombstone that reached the bottom; [`compact_filtered`] also lets a
//! [`CompactionFilter`] discard expired entries. Neither touches the manifest or deletes a file:
//! the Compactor actor records the result as one version edit and deletes the inputs
//! once no reader holds them.

pub mod full;
pub mod picker;

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use aedb_checkpoint::{EntryKind, RunInfo, RunWriter};
use aedb_types::Lsn;

use crate::cache::CacheFill;
use crate::error::StorageError;
use crate::merge::{LevelSource, Merged, Source};
use crate::run::Run;
pub use full::FullCompaction;
pub use picker::{CompactionOptions, MAX_EDIT_RUNS, Method, Task, pick, pick_garbage};

/// What one compaction wrote and dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The new runs (for the output level), in key order.
    pub outputs: Vec<RunInfo>,
    /// Entries read from the inputs.
    pub entries_in: u64,
    /// Versions dropped (older than one the retention floor already sees).
    pub dropped_versions: u64,
    /// Tombstones dropped at the bottom.
    pub dropped_tombstones: u64,
    /// Versions the [`CompactionFilter`] found expired (dropped at the bottom,
    /// replaced by a tombstone above it).
    pub filtered: u64,
    /// Key ranges merged at once, each on a thread of its own (or the calling thread's
    /// when one could not start) ([`compact_parallel`]); 0 when the merge was not split.
    pub ranges: u64,
}

/// Lets the layer that knows what keys mean discard entries that expired (the data
/// model's idempotency records past their retention window) during a compaction.
///
/// It is asked only about a key's newest put at or below the retention floor (what a
/// snapshot at the floor reads): versions newer than the floor stay for the snapshots
/// that can still read them, older ones go anyway. When it answers `true`, the version
/// is dropped if the output is the bottom for its key, and otherwise replaced by a
/// tombstone at the same LSN, so no older version in a deeper level shows through.
pub trait CompactionFilter: Send + Sync {
    /// Whether the put of `value` at `key`, written at `lsn` (at or below the
    /// floor), has expired.
    fn expired(&self, key: &[u8], lsn: Lsn, value: &[u8]) -> bool;
}

/// Merges `task`'s inputs into new runs of at most about `task.target_file_bytes`
/// each (and overlapping at most about `task.max_grandparent_overlap` of
/// `task.grandparents`), never more than `task.max_outputs` of them, written by
/// writers from `new_writer`. Keeps, per key, every version newer
/// than `floor` and the newest one at or before it (what a snapshot at `floor` sees);
/// drops that one too if it is a tombstone and the output is the bottom for its keys.
/// A key's versions are never split across two outputs.
///
/// # Errors
/// An input block cannot be read or authenticated, or an output cannot be written (its
/// unfinished file is removed; finished outputs are left for the caller to remove).
pub fn compact(
    task: &Task,
    floor: Lsn,
    new_writer: impl FnMut() -> Result<RunWriter, StorageError>,
) -> Result<Outcome, StorageError> {
    compact_filtered(task, floor, None, new_writer)
}

/// [`compact`], also dropping what `filter` finds expired (see [`CompactionFilter`]).
///
/// # Errors
/// As [`compact`].
pub fn compact_filtered(
    task: &Task,
    floor: Lsn,
    filter: Option<&dyn CompactionFilter>,
    mut new_writer: impl FnMut() -> Result<RunWriter, StorageError>,
) -> Result<Outcome, StorageError> {
    merge_part(
        task,
        floor,
        filter,
        &Part::whole(task),
        &mut new_writer,
        &AtomicBool::new(false),
    )
}

/// [`compact_filtered`] split into at most `threads` key ranges of about equal input
/// bytes (cut at the inputs' partition bounds, which their directories give without a
/// read), merged at once, one thread each: a subcompaction per range. The outputs are
/// the same kind of runs a single merge writes (disjoint, in key order, a key's
/// versions in one run), a few more of them: each range ends its last output early.
/// There are never more ranges than output files' worth of input, nor so many that
/// their outputs could exceed [`Task::max_outputs`]. The shares are as even as the
/// partition bounds allow (a run whose tables are one partition can only be cut at its
/// last key), so a range can be much smaller than the others. With one range it is
/// [`compact_filtered`] on the calling thread. Split, every range runs on a thread of
/// lower CPU priority ([`SUBCOMPACTION_NICE`] on Linux) while the calling thread waits,
/// so the merge takes idle cores and yields busy ones to commits: on a busy machine it
/// is about as gentle as a single-threaded one, on an idle one up to `threads` times
/// faster.
///
/// # Errors
/// As [`compact`]: a range's error (the others stop at their next key); outputs
/// finished by any range are left for the caller to remove.
pub fn compact_parallel(
    task: &Task,
    floor: Lsn,
    filter: Option<&dyn CompactionFilter>,
    threads: usize,
    new_writer: &(dyn Fn() -> Result<RunWriter, StorageError> + Sync),
) -> Result<Outcome, StorageError> {
    let parts = split(task, threads);
    let failed = AtomicBool::new(false);
    let run = |part: &Part| {
        // Set on an error, and on a panic as the guard drops: the other ranges stop.
        let guard = StopOthers(&failed);
        let outcome = merge_part(task, floor, filter, part, &mut || new_writer(), &failed);
        if outcome.is_ok() {
            std::mem::forget(guard);
        }
        outcome
    };
    if let [only] = parts.as_slice() {
        return run(only);
    }
    let results: Vec<Result<Outcome, StorageError>> = std::thread::scope(|s| {
        // Every range on its own low-priority thread; one that cannot start runs here.
        let spawned: Vec<_> = parts
            .iter()
            .map(|part| {
                std::thread::Builder::new()
                    .name("aedb-subcompact".into())
                    .spawn_scoped(s, || {
                        lower_priority();
                        run(part)
                    })
                    .map_err(|_| part)
            })
            .collect();
        spawned
            .into_iter()
            .map(|handle| match handle {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(part) => run(part),
            })
            .collect()
    });
    let mut out = Outcome {
        ranges: parts.len() as u64,
        ..Outcome::default()
    };
    for result in results {
        let o = result?;
        out.outputs.extend(o.outputs);
        out.entries_in += o.entries_in;
        out.dropped_versions += o.dropped_versions;
        out.dropped_tombstones += o.dropped_tombstones;
        out.filtered += o.filtered;
    }
    Ok(out)
}

/// Tells the other ranges of a split merge to stop when dropped (see
/// [`compact_parallel`]); forgotten when its range succeeds.
struct StopOthers<'a>(&'a AtomicBool);

impl Drop for StopOthers<'_> {
    fn drop(&mut self) {
        self.0.store(true, AtomicOrdering::Relaxed);
    }
}

/// Lowers the calling thread's CPU priority to nice [`SUBCOMPACTION_NICE`] (or leaves
/// it lower) on Linux; a no-op elsewhere, where the call would reach the whole process.
/// A subcompaction takes idle cores and yields them to commits. Best effort.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        if getpriority_process(me).is_ok_and(|nice| nice < SUBCOMPACTION_NICE) {
            let _ = setpriority_process(me, SUBCOMPACTION_NICE);
        }
    }
}

/// The nice value of a subcompaction's thread (see [`compact_parallel`]).
pub const SUBCOMPACTION_NICE: i32 = 10;

/// One key range of a merge: keys from `start` (inclusive) to `end` (exclusive),
/// `None` for no bound, written to at most `max_outputs` runs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Part {
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    max_outputs: usize,
}

impl Part {
    /// The whole key space, with the task's whole output budget.
    fn whole(task: &Task) -> Part {
        Part {
            start: None,
            end: None,
            max_outputs: task.max_outputs,
        }
    }
}

/// `task`'s key space cut into at most `threads` parts of about equal stored input
/// bytes (see [`compact_parallel`]); always at least one part.
fn split(task: &Task, threads: usize) -> Vec<Part> {
    let bytes = task.input_bytes();
    let parts = threads
        .min(usize::try_from(bytes / task.target_file_bytes.max(1)).unwrap_or(usize::MAX))
        // Each part may end one output early: leave every part room for two.
        .min(task.max_outputs / 2)
        .max(1);
    if parts == 1 {
        return vec![Part::whole(task)];
    }
    let mut extents: Vec<(&[u8], u64)> = task
        .inputs
        .iter()
        .flat_map(|(_, r)| r.file().partition_extents())
        .collect();
    extents.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let total: u64 = extents.iter().map(|e| e.1).sum();
    let mut cuts: Vec<&[u8]> = Vec::new();
    let mut seen = 0u64;
    for (key, len) in extents {
        seen += len;
        if cuts.len() + 1 >= parts || seen >= total {
            break;
        }
        // Past the next equal share (u128: no overflow); a cut key starts the part
        // after it, so it must be above the previous cut.
        let share = (u128::from(total) * (cuts.len() as u128 + 1)) / parts as u128;
        if u128::from(seen) >= share && cuts.last().is_none_or(|c| *c < key) {
            cuts.push(key);
        }
    }
    let count = cuts.len() + 1;
    let mut bounds: Vec<Option<Vec<u8>>> = vec![None];
    bounds.extend(cuts.into_iter().map(|k| Some(k.to_vec())));
    bounds.push(None);
    bounds
        .windows(2)
        .map(|w| Part {
            start: w[0].clone(),
            end: w[1].clone(),
            max_outputs: task.max_outputs / count,
        })
        .collect()
}

/// Merges the part of `task`'s inputs inside `part`'s key range (see [`compact`]);
/// gives up at the next key once `stop` is set (another part failed), answering what it
/// finished.
fn merge_part(
    task: &Task,
    floor: Lsn,
    filter: Option<&dyn CompactionFilter>,
    part: &Part,
    new_writer: &mut dyn FnMut() -> Result<RunWriter, StorageError>,
    stop: &AtomicBool,
) -> Result<Outcome, StorageError> {
    let mut merged = merged_inputs(task, part.start.as_deref())?;
    let end = part.end.as_deref();
    let mut out = Outcome::default();
    let mut writer: Option<RunWriter> = None;
    let mut key: Vec<u8> = Vec::new();
    let mut value: Vec<u8> = Vec::new();
    let mut have_key = false;
    let mut floor_version_kept = false;
    // Grandparent runs wholly before the current key, and as of the current output's
    // first key: their difference is how many the output overlaps beyond its first.
    let mut passed = 0usize;
    let mut passed_at_start = 0usize;
    let write_err = |e| StorageError::Write(Arc::new(e));
    let abandon = |writer: &mut Option<RunWriter>| {
        if let Some(w) = writer.take() {
            // The merge already failed; removing the partial file is best effort.
            let _ = w.abandon();
        }
    };
    loop {
        let step = merged.next_with(|e| {
            let new_key = !have_key || e.key != key.as_slice();
            if new_key {
                if end.is_some_and(|end| e.key >= end) {
                    return None;
                }
                key.clear();
                key.extend_from_slice(e.key);
                have_key = true;
                floor_version_kept = false;
            }
            let keep = if e.lsn > floor {
                Keep::Yes
            } else if floor_version_kept {
                Keep::OlderThanFloor
            } else {
                floor_version_kept = true;
                if e.kind == EntryKind::Delete && task.bottommost {
                    Keep::BottomTombstone
                } else if e.kind == EntryKind::Put
                    && filter.is_some_and(|f| f.expired(e.key, e.lsn, e.value))
                {
                    Keep::Expired
                } else {
                    Keep::Yes
                }
            };
            value.clear();
            value.extend_from_slice(e.value);
            Some((new_key, keep, e.lsn, e.kind))
        })?;
        let Some(Some((new_key, keep, lsn, mut kind))) = step else {
            break;
        };
        if new_key && stop.load(AtomicOrdering::Relaxed) {
            // Another part failed, so the whole merge does: what this one finished is
            // left with the others' for the caller to remove.
            abandon(&mut writer);
            return Ok(out);
        }
        out.entries_in += 1;
        match keep {
            Keep::OlderThanFloor => {
                out.dropped_versions += 1;
                continue;
            }
            Keep::BottomTombstone => {
                out.dropped_tombstones += 1;
                continue;
            }
            Keep::Expired => {
                out.filtered += 1;
                if task.bottommost {
                    continue;
                }
                // Deeper levels may hold older versions: hide them.
                kind = EntryKind::Delete;
                value.clear();
            }
            Keep::Yes => {}
        }
        if new_key {
            let gp = &task.grandparents;
            while passed < gp.len() && gp[passed].file().last_key() < key.as_slice() {
                passed += 1;
            }
        }
        // Split only between keys, so sorted levels stay disjoint, and never into more
        // than `max_outputs` runs.
        if new_key
            && let Some(w) = &writer
            && out.outputs.len() + 2 <= part.max_outputs
            && (w.bytes_written() >= task.target_file_bytes
                || passed - passed_at_start >= task.max_grandparent_overlap)
            && let Some(w) = writer.take()
        {
            out.outputs.push(w.finish().map_err(write_err)?);
        }
        let w = match &mut writer {
            Some(w) => w,
            None => {
                passed_at_start = passed;
                writer.insert(new_writer()?)
            }
        };
        if let Err(e) = w.add(&key, lsn, kind, &value) {
            abandon(&mut writer);
            return Err(write_err(e));
        }
    }
    if let Some(w) = writer.take() {
        out.outputs.push(w.finish().map_err(write_err)?);
    }
    Ok(out)
}

enum Keep {
    Yes,
    OlderThanFloor,
    BottomTombstone,
    Expired,
}

/// Every input's entries from `start` on (from the first without one), merged.
fn merged_inputs(task: &Task, start: Option<&[u8]>) -> Result<Merged, StorageError> {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    let all = start.map_or(Bound::Unbounded, |k| Bound::Included(k.to_vec()));
    let mut sorted: Vec<Arc<Run>> = Vec::new();
    for (level, run) in &task.inputs {
        if *level == task.output_level {
            sorted.push(run.clone());
        } else {
            sources.push(Box::new(LevelSource::new(
                Arc::from([run.clone()]),
                0..1,
                &all,
                true,
                CacheFill::Bypass,
            )?));
        }
    }
    if !sorted.is_empty() {
        sorted.sort_by(|a, b| a.file().first_key().cmp(b.file().first_key()));
        let span = 0..sorted.len();
        sources.push(Box::new(LevelSource::new(
            sorted.into(),
            span,
            &all,
            true,
            CacheFill::Bypass,
        )?));
    }
    Ok(Merged::new(sources, true))
}
