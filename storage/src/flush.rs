//! Flushing: a frozen memtable written out as one level-0 run file.

use aedb_checkpoint::{RunInfo, RunWriter};

use crate::error::StorageError;
use crate::memtable::Memtable;
use std::sync::Arc;

/// Writes every version in `mem` (in internal order) through `writer` and finishes the
/// file (fsynced, renamed, directory fsynced). An empty memtable writes nothing and
/// returns `None`.
///
/// # Errors
/// The file could not be written; it was removed.
pub fn flush(mem: &Memtable, mut writer: RunWriter) -> Result<Option<RunInfo>, StorageError> {
    if mem.is_empty() {
        writer
            .abandon()
            .map_err(|e| StorageError::Write(Arc::new(e)))?;
        return Ok(None);
    }
    let written = mem.for_each(|key, lsn, kind, value| writer.add(key, lsn, kind, value));
    match written {
        Ok(()) => writer.finish().map(Some),
        Err(e) => {
            // Best effort: the write already failed; the file is garbage either way
            // and open removes files the manifest does not list.
            let _ = writer.abandon();
            Err(e)
        }
    }
    .map_err(|e| StorageError::Write(Arc::new(e)))
}
