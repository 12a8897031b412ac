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

use std::sync::Arc;

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
    let mut merged = merged_inputs(task)?;
    let mut out = Outcome::default();
    let mut writer: Option<RunWriter> = None;
    let mut key: Vec<u8> = Vec::new();
    let mut have_key = false;
    let mut floor_version_kept = false;
    // Grandparent runs wholly before the current key, and as of the current output's
    // first key: their difference is how many the output overlaps beyond its first.
    let mut passed = 0usize;
    let mut passed_at_start = 0usize;
    let write_err = |e| StorageError::Write(Arc::new(e));
    loop {
        let step = merged.next_with(|e| {
            let new_key = !have_key || e.key != key.as_slice();
            if new_key {
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
            (new_key, keep, e.lsn, e.kind, e.value.to_vec())
        })?;
        let Some((new_key, keep, lsn, mut kind, mut value)) = step else {
            break;
        };
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
            && out.outputs.len() + 2 <= task.max_outputs
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
            if let Some(w) = writer.take() {
                // The add already failed; removing the partial file is best effort.
                let _ = w.abandon();
            }
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

fn merged_inputs(task: &Task) -> Result<Merged, StorageError> {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    let all = std::ops::Bound::Unbounded;
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
