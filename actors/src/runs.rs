//! Run-file plumbing the owners share: opening a live run (with the key of the epoch it
//! names), the manifest's record of a new run, the version the manifest describes, and
//! file ids.
//!
//! Run files are the LSM's incremental checkpoint files: the CheckpointSealer writes one
//! per flushed memtable, the Compactor writes merged ones; recovery, `aedb verify` and
//! `check invariants` open the manifest's live set.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aedb_checkpoint::{CheckpointError, OpenMode, RunFile, RunInfo, run_path};
use aedb_manifest::{LiveState, RunRecord};
use aedb_storage::{BlockCache, Edit, Run, Version};
use aedb_types::DatabaseId;

use crate::error::CheckpointLoadError;
use crate::keyring::{EpochTable, Keyring};

/// Hands out run-file ids: every id once, across the CheckpointSealer and the
/// Compactor, above every id the manifest ever recorded.
#[derive(Debug)]
pub struct FileIds(AtomicU64);

impl FileIds {
    /// Ids from `next` on.
    pub fn new(next: u64) -> FileIds {
        FileIds(AtomicU64::new(next.max(1)))
    }

    /// A fresh id.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// How owners open run files: the data directory, the database, its keys and the
/// block cache every run shares.
#[derive(Clone)]
pub struct RunOpener {
    /// The file system.
    pub fs: aedb_fs::SharedFs,
    /// The data directory.
    pub data_dir: std::path::PathBuf,
    /// This database.
    pub database: DatabaseId,
    /// Key providers.
    pub keyring: Keyring,
    /// Every key epoch the manifest knows.
    pub epochs: EpochTable,
    /// The shared block cache.
    pub cache: Arc<BlockCache>,
}

impl std::fmt::Debug for RunOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOpener")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl RunOpener {
    /// Opens run `file_id` (its authenticated metadata; data blocks are read lazily).
    ///
    /// # Errors
    /// The file is missing, does not authenticate, or is for another database.
    pub fn open(&self, file_id: u64) -> Result<Arc<Run>, CheckpointError> {
        let path = run_path(&self.data_dir, file_id);
        let file = self.open_file(&path)?;
        Ok(Arc::new(Run::new(file, path, self.cache.clone())))
    }

    fn open_file(&self, path: &Path) -> Result<RunFile, CheckpointError> {
        if self.keyring.encrypts() {
            let (keyring, epochs, database) = (&self.keyring, &self.epochs, self.database);
            let lookup = |epoch| epochs.checkpoint_key(keyring, database, epoch);
            RunFile::open_with(&*self.fs, path, self.database, OpenMode::Sealed(&lookup))
        } else {
            RunFile::open_plaintext(&*self.fs, path, self.database)
        }
    }

    /// Opens every live run of `live` and checks each against its record (file id,
    /// length, LSN range, key-range prefixes): the version the manifest describes, with
    /// its recorded retention floor.
    /// Runs are opened (metadata read, decrypted and authenticated) on a few threads at
    /// once: open time is this step plus the WAL replay.
    ///
    /// # Errors
    /// The first run (in file-id order) that is missing, does not authenticate or
    /// contradicts its record.
    pub fn load_version(&self, live: &LiveState) -> Result<Version, CheckpointLoadError> {
        let records: Vec<(&u64, &RunRecord)> = live.runs().iter().collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(records.len().max(1));
        let per_thread = records.len().div_ceil(threads).max(1);
        let open_one = |&(&file_id, record): &(&u64, &RunRecord)| {
            let run = self
                .open(file_id)
                .map_err(|source| CheckpointLoadError::Open {
                    path: run_path(&self.data_dir, file_id),
                    source,
                })?;
            check_against_record(&run, record)?;
            Ok((usize::from(record.level), run))
        };
        let opened: Vec<Result<(usize, Arc<Run>), CheckpointLoadError>> = std::thread::scope(|s| {
            let workers: Vec<_> = records
                .chunks(per_thread)
                .map(|chunk| s.spawn(move || chunk.iter().map(open_one).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .flat_map(|w| match w.join() {
                    Ok(results) => results,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        });
        // The floor compactions merged to before the restart: reads below it stay
        // refused (their versions may be gone).
        let mut edit = Edit {
            floor: live.floor(),
            ..Edit::default()
        };
        for result in opened {
            edit.added.push(result?);
        }
        Ok(Version::empty().apply(&edit))
    }
}

/// Whether an opened run is the file its manifest record describes.
///
/// # Errors
/// [`CheckpointLoadError::RunMismatch`] naming what differs.
pub fn check_against_record(run: &Run, record: &RunRecord) -> Result<(), CheckpointLoadError> {
    let f = run.file();
    let what = if f.file_id() != record.file_id {
        Some("file id")
    } else if f.len() != record.len {
        Some("length")
    } else if f.min_lsn() != record.min_lsn || f.max_lsn() != record.max_lsn {
        Some("LSN range")
    } else if f.epoch() != record.epoch {
        Some("key epoch")
    } else if RunRecord::key_prefix(f.first_key()) != record.first_key
        || RunRecord::key_prefix(f.last_key()) != record.last_key
    {
        Some("key range")
    } else if f.entries() != record.entries {
        Some("entry count")
    } else {
        None
    };
    match what {
        Some(what) => Err(CheckpointLoadError::RunMismatch {
            path: run.path().to_path_buf(),
            what,
        }),
        None => Ok(()),
    }
}

/// The manifest record of a freshly written run at `level`.
pub fn run_record(info: &RunInfo, level: usize) -> RunRecord {
    RunRecord {
        file_id: info.file_id,
        level: level as u8,
        epoch: info.epoch,
        min_lsn: info.min_lsn,
        max_lsn: info.max_lsn,
        entries: info.entries,
        len: info.len,
        sha256: info.sha256,
        first_key: RunRecord::key_prefix(&info.first_key),
        last_key: RunRecord::key_prefix(&info.last_key),
    }
}

/// The manifest record of a live run at `level` (from its authenticated metadata) whose
/// whole file hashes to `sha256`.
pub fn record_of(run: &Run, level: usize, sha256: [u8; 32]) -> RunRecord {
    let f = run.file();
    RunRecord {
        file_id: f.file_id(),
        level: level as u8,
        epoch: f.epoch(),
        min_lsn: f.min_lsn(),
        max_lsn: f.max_lsn(),
        entries: f.entries(),
        len: f.len(),
        sha256,
        first_key: RunRecord::key_prefix(f.first_key()),
        last_key: RunRecord::key_prefix(f.last_key()),
    }
}
