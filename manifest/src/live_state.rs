//! Folding manifest records into the current live set ([`LiveState`]).
//!
//! Rules (violations are [`LiveStateError`]s naming what contradicts what):
//! `Compacted` only as record 0; `DatabaseCreated` at most once and for the header's
//! database; no duplicate checkpoint LSN or segment seq among live entries; retirements
//! only of live entries; `first_lsn ≤ last_lsn`; key epochs strictly increasing.

use crate::record::{MAX_EDIT_RUNS, MAX_LEVELS, ManifestRecord, RunRecord, VersionEdit};
use aedb_types::{DatabaseId, KeyEpoch, Lsn, SegmentSeq};
use std::collections::{BTreeMap, BTreeSet};

/// A live checkpoint as recorded by `CheckpointAdded`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveCheckpoint {
    /// Key epoch it is sealed under.
    pub epoch: KeyEpoch,
    /// File name in `<data_dir>/checkpoints/`.
    pub file_name: String,
    /// SHA-256 of the file.
    pub sha256: [u8; 32],
    /// File length.
    pub len: u64,
}

/// A live run file of the LSM (an incremental checkpoint file), as its last
/// `VersionEdit` recorded it.
pub type LiveRun = RunRecord;

/// A live (sealed, not retired) WAL segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSegment {
    /// First LSN.
    pub first_lsn: Lsn,
    /// Last LSN.
    pub last_lsn: Lsn,
    /// Chain hash.
    pub sha256: [u8; 32],
}

/// A key epoch and the master key it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochInfo {
    /// Non-secret master key identifier.
    pub master_key_id: String,
    /// When the epoch started.
    pub at_unix_ms: u64,
}

/// A recorded backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupInfo {
    /// Identifier.
    pub backup_id: String,
    /// First LSN covered.
    pub first_lsn: Lsn,
    /// Last LSN covered.
    pub last_lsn: Lsn,
    /// SHA-256 of the manifest copy in the backup.
    pub manifest_sha256: [u8; 32],
    /// When.
    pub at_unix_ms: u64,
}

/// The `backup_id` prefix of a full backup's `BackupTaken` record.
pub const FULL_BACKUP_ID_PREFIX: &str = "full-";
/// The `backup_id` prefix of an incremental backup's `BackupTaken` record.
pub const INCREMENTAL_BACKUP_ID_PREFIX: &str = "incremental-";

impl BackupInfo {
    /// Whether the backup was full (`Some(true)`) or incremental (`Some(false)`), from
    /// its id's prefix; `None` for an id without one (recorded before the prefixes).
    pub fn is_full(&self) -> Option<bool> {
        if self.backup_id.starts_with(FULL_BACKUP_ID_PREFIX) {
            Some(true)
        } else if self.backup_id.starts_with(INCREMENTAL_BACKUP_ID_PREFIX) {
            Some(false)
        } else {
            None
        }
    }
}

/// A recorded recovery event (see [`crate::RecoveryEventKind`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryEventInfo {
    /// What recovery routed around.
    pub event: crate::RecoveryEventKind,
    /// The LSN it concerns (0 when none).
    pub lsn: Lsn,
    /// When, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Which file and why.
    pub detail: String,
}

/// How many recovery events the live state keeps (and a compaction restates): the
/// newest ones; older ones stay in the history the compaction replaced.
pub const MAX_LIVE_RECOVERY_EVENTS: usize = 64;

/// Where a compacted manifest came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionInfo {
    /// Chain head of the replaced manifest.
    pub replaces_head: [u8; 32],
    /// Records it held.
    pub records_replaced: u64,
    /// When.
    pub at_unix_ms: u64,
}

/// A record contradicts the state built from the records before it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LiveStateError {
    /// `Compacted` somewhere other than record 0.
    #[error("Compacted record at index {index}; it is only valid as the first record")]
    CompactedNotFirst {
        /// Its index.
        index: u64,
    },
    /// A second `DatabaseCreated`.
    #[error("second DatabaseCreated record")]
    DuplicateDatabaseCreated,
    /// `DatabaseCreated` for another database than the header's.
    #[error("DatabaseCreated for database {record} in the manifest of database {header}")]
    DatabaseMismatch {
        /// From the header.
        header: DatabaseId,
        /// From the record.
        record: DatabaseId,
    },
    /// A checkpoint LSN added twice.
    #[error("checkpoint at LSN {lsn} added twice")]
    DuplicateCheckpoint {
        /// The LSN.
        lsn: Lsn,
    },
    /// Retirement of a checkpoint that is not live.
    #[error("retiring checkpoint at LSN {lsn}, which is not live")]
    UnknownCheckpoint {
        /// The LSN.
        lsn: Lsn,
    },
    /// A segment sealed twice.
    #[error("segment {seq} sealed twice")]
    DuplicateSegment {
        /// The sequence number.
        seq: SegmentSeq,
    },
    /// Retirement of a segment that is not live.
    #[error("retiring segment {seq}, which is not live")]
    UnknownSegment {
        /// The sequence number.
        seq: SegmentSeq,
    },
    /// `first_lsn > last_lsn`.
    #[error("LSN range {first}..={last} is empty")]
    BadLsnRange {
        /// First LSN.
        first: Lsn,
        /// Last LSN.
        last: Lsn,
    },
    /// A key epoch not greater than the current one.
    #[error("key epoch {new} does not follow the current {current}")]
    EpochNotIncreasing {
        /// The current epoch.
        current: KeyEpoch,
        /// The rejected epoch.
        new: KeyEpoch,
    },
    /// A record names a key epoch the manifest never recorded.
    #[error("key epoch {epoch} was never recorded")]
    UnknownEpoch {
        /// The epoch.
        epoch: KeyEpoch,
    },
    /// A record uses a retired key epoch, or retires it twice.
    #[error("key epoch {epoch} is retired")]
    EpochRetired {
        /// The epoch.
        epoch: KeyEpoch,
    },
    /// A `VersionEdit` adds a run id that is live (or names it twice), other than as a
    /// move: the same edit removing it and adding it deeper, nothing else changed.
    #[error("run file {file_id} added twice")]
    DuplicateRun {
        /// The file id.
        file_id: u64,
    },
    /// A `VersionEdit` removes a run that is not live (or names it twice).
    #[error("run file {file_id} removed but not live")]
    UnknownRun {
        /// The file id.
        file_id: u64,
    },
    /// A `VersionEdit` run is malformed: level out of range or an inverted LSN range.
    #[error("run file {file_id} is malformed: {what}")]
    BadRun {
        /// The file id.
        file_id: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// Retirement of the current epoch or of one a live checkpoint is sealed under.
    #[error("key epoch {epoch} cannot be retired: it is current or a live checkpoint uses it")]
    EpochInUse {
        /// The epoch.
        epoch: KeyEpoch,
    },
}

/// The current set of live files and facts, folded from manifest records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveState {
    header_db: DatabaseId,
    database_created_at_unix_ms: Option<u64>,
    checkpoints: BTreeMap<Lsn, LiveCheckpoint>,
    segments: BTreeMap<SegmentSeq, LiveSegment>,
    key_epochs: BTreeMap<KeyEpoch, EpochInfo>,
    retired_epochs: BTreeMap<KeyEpoch, u64>,
    backups: Vec<BackupInfo>,
    recovery_events: Vec<RecoveryEventInfo>,
    env_hash: Option<(String, [u8; 32])>,
    compacted_from: Option<CompactionInfo>,
    runs: BTreeMap<u64, LiveRun>,
    flushed_lsn: Lsn,
    /// The highest retention floor a compaction merged to (see [`VersionEdit::floor`]).
    floor: Lsn,
    next_file_id: u64,
}

impl LiveState {
    /// The empty state of the manifest of database `database_id`.
    pub fn new(database_id: DatabaseId) -> LiveState {
        LiveState {
            header_db: database_id,
            database_created_at_unix_ms: None,
            checkpoints: BTreeMap::new(),
            segments: BTreeMap::new(),
            key_epochs: BTreeMap::new(),
            retired_epochs: BTreeMap::new(),
            backups: Vec::new(),
            recovery_events: Vec::new(),
            env_hash: None,
            compacted_from: None,
            runs: BTreeMap::new(),
            flushed_lsn: Lsn::ZERO,
            floor: Lsn::ZERO,
            next_file_id: 0,
        }
    }

    /// Folds `records` (record 0 first) into a state.
    ///
    /// # Errors
    /// The index of the first contradicting record and why.
    pub fn from_records(
        database_id: DatabaseId,
        records: &[ManifestRecord],
    ) -> Result<LiveState, (u64, LiveStateError)> {
        let mut s = LiveState::new(database_id);
        for (i, r) in records.iter().enumerate() {
            s.apply(i as u64, r).map_err(|e| (i as u64, e))?;
        }
        Ok(s)
    }

    /// Checks that `record`, at position `index` in the file, is consistent with this state.
    ///
    /// # Errors
    /// Why it is not.
    pub fn check(&self, index: u64, record: &ManifestRecord) -> Result<(), LiveStateError> {
        let range = |first: Lsn, last: Lsn| {
            if first <= last {
                Ok(())
            } else {
                Err(LiveStateError::BadLsnRange { first, last })
            }
        };
        match record {
            ManifestRecord::Compacted { .. } if index != 0 => {
                Err(LiveStateError::CompactedNotFirst { index })
            }
            ManifestRecord::Compacted { .. } => Ok(()),
            ManifestRecord::DatabaseCreated { database_id, .. } => {
                if self.database_created_at_unix_ms.is_some() {
                    Err(LiveStateError::DuplicateDatabaseCreated)
                } else if *database_id != self.header_db {
                    Err(LiveStateError::DatabaseMismatch {
                        header: self.header_db,
                        record: *database_id,
                    })
                } else {
                    Ok(())
                }
            }
            ManifestRecord::CheckpointAdded { lsn, epoch, .. } => {
                if self.checkpoints.contains_key(lsn) {
                    Err(LiveStateError::DuplicateCheckpoint { lsn: *lsn })
                } else if self.retired_epochs.contains_key(epoch) {
                    Err(LiveStateError::EpochRetired { epoch: *epoch })
                } else {
                    Ok(())
                }
            }
            ManifestRecord::KeyEpochRetired { epoch, .. } => {
                if !self.key_epochs.contains_key(epoch) {
                    Err(LiveStateError::UnknownEpoch { epoch: *epoch })
                } else if self.retired_epochs.contains_key(epoch) {
                    Err(LiveStateError::EpochRetired { epoch: *epoch })
                } else if self.referenced_epochs().contains(epoch) {
                    Err(LiveStateError::EpochInUse { epoch: *epoch })
                } else {
                    Ok(())
                }
            }
            ManifestRecord::CheckpointRetired { lsn } => {
                if self.checkpoints.contains_key(lsn) {
                    Ok(())
                } else {
                    Err(LiveStateError::UnknownCheckpoint { lsn: *lsn })
                }
            }
            ManifestRecord::SegmentSealed {
                seq,
                first_lsn,
                last_lsn,
                ..
            } => {
                if self.segments.contains_key(seq) {
                    Err(LiveStateError::DuplicateSegment { seq: *seq })
                } else {
                    range(*first_lsn, *last_lsn)
                }
            }
            ManifestRecord::SegmentRetired { seq } => {
                if self.segments.contains_key(seq) {
                    Ok(())
                } else {
                    Err(LiveStateError::UnknownSegment { seq: *seq })
                }
            }
            ManifestRecord::KeyEpochChanged { epoch, .. } => match self.current_epoch() {
                Some(current) if *epoch <= current => Err(LiveStateError::EpochNotIncreasing {
                    current,
                    new: *epoch,
                }),
                _ => Ok(()),
            },
            ManifestRecord::BackupTaken {
                first_lsn,
                last_lsn,
                ..
            } => range(*first_lsn, *last_lsn),
            ManifestRecord::VersionEdit(edit) => self.check_edit(edit),
            ManifestRecord::ServerEnvHash { .. } | ManifestRecord::RecoveryEvent { .. } => Ok(()),
        }
    }

    fn check_edit(&self, edit: &VersionEdit) -> Result<(), LiveStateError> {
        let mut added = BTreeSet::new();
        for run in &edit.added {
            let file_id = run.file_id;
            // Not `file_id < next_file_id`: a compaction that allocated a lower id may
            // be recorded after a flush that allocated a higher one. A live id may be
            // added again only as a move: removed by the same edit and re-filed deeper,
            // everything but its level unchanged.
            let refiled = self.runs.get(&file_id).is_some_and(|live| {
                edit.removed.contains(&file_id)
                    && run.level > live.level
                    && *run
                        == RunRecord {
                            level: run.level,
                            ..live.clone()
                        }
            });
            if (self.runs.contains_key(&file_id) && !refiled) || !added.insert(file_id) {
                return Err(LiveStateError::DuplicateRun { file_id });
            }
            if run.level >= MAX_LEVELS {
                return Err(LiveStateError::BadRun {
                    file_id,
                    what: "level out of range",
                });
            }
            // Ids come from a counter that never gets near the end of the range; the
            // next id after it must exist.
            if file_id == u64::MAX {
                return Err(LiveStateError::BadRun {
                    file_id,
                    what: "file id out of range",
                });
            }
            if run.min_lsn > run.max_lsn {
                return Err(LiveStateError::BadRun {
                    file_id,
                    what: "min_lsn after max_lsn",
                });
            }
            if self.retired_epochs.contains_key(&run.epoch) {
                return Err(LiveStateError::EpochRetired { epoch: run.epoch });
            }
        }
        let mut removed = BTreeSet::new();
        for &file_id in &edit.removed {
            if !self.runs.contains_key(&file_id) || !removed.insert(file_id) {
                return Err(LiveStateError::UnknownRun { file_id });
            }
        }
        Ok(())
    }

    /// Checks and applies `record` at position `index`.
    ///
    /// # Errors
    /// As [`LiveState::check`]; the state is unchanged on error.
    pub fn apply(&mut self, index: u64, record: &ManifestRecord) -> Result<(), LiveStateError> {
        self.check(index, record)?;
        match record.clone() {
            ManifestRecord::DatabaseCreated {
                created_at_unix_ms, ..
            } => self.database_created_at_unix_ms = Some(created_at_unix_ms),
            ManifestRecord::CheckpointAdded {
                lsn,
                epoch,
                file_name,
                sha256,
                len,
            } => {
                self.checkpoints.insert(
                    lsn,
                    LiveCheckpoint {
                        epoch,
                        file_name,
                        sha256,
                        len,
                    },
                );
            }
            ManifestRecord::CheckpointRetired { lsn } => {
                self.checkpoints.remove(&lsn);
            }
            ManifestRecord::SegmentSealed {
                seq,
                first_lsn,
                last_lsn,
                sha256,
            } => {
                self.segments.insert(
                    seq,
                    LiveSegment {
                        first_lsn,
                        last_lsn,
                        sha256,
                    },
                );
            }
            ManifestRecord::SegmentRetired { seq } => {
                self.segments.remove(&seq);
            }
            ManifestRecord::KeyEpochChanged {
                epoch,
                master_key_id,
                at_unix_ms,
            } => {
                self.key_epochs.insert(
                    epoch,
                    EpochInfo {
                        master_key_id,
                        at_unix_ms,
                    },
                );
            }
            ManifestRecord::BackupTaken {
                backup_id,
                first_lsn,
                last_lsn,
                manifest_sha256,
                at_unix_ms,
            } => self.backups.push(BackupInfo {
                backup_id,
                first_lsn,
                last_lsn,
                manifest_sha256,
                at_unix_ms,
            }),
            ManifestRecord::KeyEpochRetired { epoch, at_unix_ms } => {
                self.retired_epochs.insert(epoch, at_unix_ms);
            }
            ManifestRecord::ServerEnvHash { profile_id, hash } => {
                self.env_hash = Some((profile_id, hash));
            }
            ManifestRecord::RecoveryEvent {
                event,
                lsn,
                at_unix_ms,
                detail,
            } => {
                if self.recovery_events.len() == MAX_LIVE_RECOVERY_EVENTS {
                    self.recovery_events.remove(0);
                }
                self.recovery_events.push(RecoveryEventInfo {
                    event,
                    lsn,
                    at_unix_ms,
                    detail,
                });
            }
            ManifestRecord::VersionEdit(edit) => {
                for id in &edit.removed {
                    self.runs.remove(id);
                }
                let highest = edit.added.iter().map(|r| r.file_id.saturating_add(1)).max();
                self.next_file_id = self
                    .next_file_id
                    .max(edit.next_file_id)
                    .max(highest.unwrap_or(0));
                for run in edit.added {
                    self.runs.insert(run.file_id, run);
                }
                self.flushed_lsn = self.flushed_lsn.max(edit.flushed_lsn);
                self.floor = self.floor.max(edit.floor);
            }
            ManifestRecord::Compacted {
                replaces_head,
                records_replaced,
                at_unix_ms,
            } => {
                self.compacted_from = Some(CompactionInfo {
                    replaces_head,
                    records_replaced,
                    at_unix_ms,
                });
            }
        }
        Ok(())
    }

    /// The database this manifest belongs to (from its header).
    pub fn database_id(&self) -> DatabaseId {
        self.header_db
    }

    /// Creation time, once `DatabaseCreated` has been recorded.
    pub fn created_at_unix_ms(&self) -> Option<u64> {
        self.database_created_at_unix_ms
    }

    /// Live checkpoints by LSN.
    pub fn checkpoints(&self) -> &BTreeMap<Lsn, LiveCheckpoint> {
        &self.checkpoints
    }

    /// The newest live checkpoint.
    pub fn newest_checkpoint(&self) -> Option<(Lsn, &LiveCheckpoint)> {
        self.checkpoints.iter().next_back().map(|(l, c)| (*l, c))
    }

    /// Live WAL segments by sequence number.
    pub fn segments(&self) -> &BTreeMap<SegmentSeq, LiveSegment> {
        &self.segments
    }

    /// Every recorded key epoch.
    pub fn key_epochs(&self) -> &BTreeMap<KeyEpoch, EpochInfo> {
        &self.key_epochs
    }

    /// The newest key epoch (new files are sealed under it).
    pub fn current_epoch(&self) -> Option<KeyEpoch> {
        self.key_epochs.keys().next_back().copied()
    }

    /// Whether `epoch` was retired (its keys are no longer handed out).
    pub fn is_epoch_retired(&self, epoch: KeyEpoch) -> bool {
        self.retired_epochs.contains_key(&epoch)
    }

    /// Retired epochs and when they were retired (milliseconds since the Unix epoch).
    pub fn retired_epochs(&self) -> &BTreeMap<KeyEpoch, u64> {
        &self.retired_epochs
    }

    /// The live run files of the LSM by file id.
    pub fn runs(&self) -> &BTreeMap<u64, LiveRun> {
        &self.runs
    }

    /// Every commit up to this LSN is in the live runs (zero before the first flush).
    pub fn flushed_lsn(&self) -> Lsn {
        self.flushed_lsn
    }

    /// The oldest LSN the live runs can still be read as of exactly: the highest
    /// retention floor a compaction merged to (zero when none dropped anything).
    pub fn floor(&self) -> Lsn {
        self.floor
    }

    /// The next unused run file id.
    pub fn next_file_id(&self) -> u64 {
        self.next_file_id
    }

    /// Epochs still needed to read live checkpoints and runs, plus the current epoch.
    pub fn referenced_epochs(&self) -> BTreeSet<KeyEpoch> {
        let mut s: BTreeSet<KeyEpoch> = self.checkpoints.values().map(|c| c.epoch).collect();
        s.extend(self.runs.values().map(|r| r.epoch));
        s.extend(self.current_epoch());
        s
    }

    /// Recorded backups, oldest first.
    pub fn backups(&self) -> &[BackupInfo] {
        &self.backups
    }

    /// Recorded recovery events (integrity alerts), oldest first: the newest
    /// [`MAX_LIVE_RECOVERY_EVENTS`].
    pub fn recovery_events(&self) -> &[RecoveryEventInfo] {
        &self.recovery_events
    }

    /// The last recorded server environment profile id and hash.
    pub fn env_hash(&self) -> Option<(&str, &[u8; 32])> {
        self.env_hash.as_ref().map(|(p, h)| (p.as_str(), h))
    }

    /// Set when this manifest file is a compaction.
    pub fn compacted_from(&self) -> Option<&CompactionInfo> {
        self.compacted_from.as_ref()
    }

    /// The minimal records that restate this state (for `Manifest::compact`): database
    /// creation, all key epochs, live segments, live checkpoints, backups, the kept
    /// recovery events, env hash.
    /// Folding them (after a `Compacted` record) reproduces this state except
    /// [`LiveState::compacted_from`].
    pub fn to_records(&self) -> Vec<ManifestRecord> {
        let mut out = Vec::new();
        if let Some(at) = self.database_created_at_unix_ms {
            out.push(ManifestRecord::DatabaseCreated {
                database_id: self.header_db,
                created_at_unix_ms: at,
            });
        }
        for (epoch, info) in &self.key_epochs {
            out.push(ManifestRecord::KeyEpochChanged {
                epoch: *epoch,
                master_key_id: info.master_key_id.clone(),
                at_unix_ms: info.at_unix_ms,
            });
        }
        for (epoch, at_unix_ms) in &self.retired_epochs {
            out.push(ManifestRecord::KeyEpochRetired {
                epoch: *epoch,
                at_unix_ms: *at_unix_ms,
            });
        }
        for (seq, s) in &self.segments {
            out.push(ManifestRecord::SegmentSealed {
                seq: *seq,
                first_lsn: s.first_lsn,
                last_lsn: s.last_lsn,
                sha256: s.sha256,
            });
        }
        for (lsn, c) in &self.checkpoints {
            out.push(ManifestRecord::CheckpointAdded {
                lsn: *lsn,
                epoch: c.epoch,
                file_name: c.file_name.clone(),
                sha256: c.sha256,
                len: c.len,
            });
        }
        let runs: Vec<&LiveRun> = self.runs.values().collect();
        let mut chunks: Vec<&[&LiveRun]> = runs.chunks(MAX_EDIT_RUNS).collect();
        if chunks.is_empty()
            && (self.flushed_lsn > Lsn::ZERO || self.next_file_id > 0 || self.floor > Lsn::ZERO)
        {
            chunks.push(&[]);
        }
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.into_iter().enumerate() {
            // Ids only grow, so the reserved id goes with the last chunk (earlier chunks'
            // ids must stay addable).
            out.push(ManifestRecord::VersionEdit(VersionEdit {
                flushed_lsn: self.flushed_lsn,
                next_file_id: if i == last { self.next_file_id } else { 0 },
                added: chunk.iter().map(|r| (*r).clone()).collect(),
                removed: Vec::new(),
                floor: if i == last { self.floor } else { Lsn::ZERO },
            }));
        }
        for b in &self.backups {
            out.push(ManifestRecord::BackupTaken {
                backup_id: b.backup_id.clone(),
                first_lsn: b.first_lsn,
                last_lsn: b.last_lsn,
                manifest_sha256: b.manifest_sha256,
                at_unix_ms: b.at_unix_ms,
            });
        }
        for e in &self.recovery_events {
            out.push(ManifestRecord::RecoveryEvent {
                event: e.event,
                lsn: e.lsn,
                at_unix_ms: e.at_unix_ms,
                detail: e.detail.clone(),
            });
        }
        if let Some((profile_id, hash)) = &self.env_hash {
            out.push(ManifestRecord::ServerEnvHash {
                profile_id: profile_id.clone(),
                hash: *hash,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DB: DatabaseId = DatabaseId::from_bytes([1; 16]);

    fn run(file_id: u64, level: u8, epoch: u32) -> RunRecord {
        RunRecord {
            file_id,
            level,
            epoch: KeyEpoch::new(epoch),
            min_lsn: Lsn::new(1),
            max_lsn: Lsn::new(10),
            entries: 3,
            len: 100,
            sha256: [file_id as u8; 32],
            first_key: b"a".to_vec(),
            last_key: b"z".to_vec(),
        }
    }

    fn edit(flushed: u64, added: Vec<RunRecord>, removed: Vec<u64>) -> ManifestRecord {
        ManifestRecord::VersionEdit(VersionEdit {
            flushed_lsn: Lsn::new(flushed),
            next_file_id: 0,
            added,
            removed,
            floor: Lsn::ZERO,
        })
    }

    /// A state with key epoch 1 (record 0) and one level-0 run, file 1 (record 1).
    fn with_one_flush() -> LiveState {
        let mut s = LiveState::new(DB);
        let epoch = ManifestRecord::KeyEpochChanged {
            epoch: KeyEpoch::new(1),
            master_key_id: "m".into(),
            at_unix_ms: 0,
        };
        s.apply(0, &epoch).unwrap();
        s.apply(1, &edit(10, vec![run(1, 0, 1)], vec![])).unwrap();
        s
    }

    #[test]
    fn version_edits_fold_into_the_live_runs() {
        let mut s = with_one_flush();
        s.apply(2, &edit(20, vec![run(2, 0, 1)], vec![])).unwrap();
        // A compaction: two L0 runs become one L1 run; flushed LSN is a maximum.
        s.apply(3, &edit(0, vec![run(3, 1, 1)], vec![1, 2]))
            .unwrap();
        assert_eq!(s.runs().keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(s.flushed_lsn(), Lsn::new(20));
        assert_eq!(s.next_file_id(), 4);
        assert!(s.referenced_epochs().contains(&KeyEpoch::new(1)));
        // Added ids are not live, removals name live runs, levels and LSN ranges are sane.
        let bad = [
            (edit(0, vec![run(3, 1, 1)], vec![]), "live id"),
            (edit(0, vec![run(9, 1, 1), run(9, 1, 1)], vec![]), "twice"),
            (edit(0, vec![], vec![1]), "removed twice"),
            (edit(0, vec![], vec![3, 3]), "same removal twice"),
            (edit(0, vec![run(9, MAX_LEVELS, 1)], vec![]), "level"),
            (edit(0, vec![run(u64::MAX, 1, 1)], vec![]), "file id"),
        ];
        for (record, what) in bad {
            let before = s.clone();
            assert!(s.apply(4, &record).is_err(), "{what}");
            assert_eq!(s, before, "{what}: state changed");
        }
        // A compaction that allocated a lower id is recorded after a flush that took a
        // higher one: accepted (the id is not live).
        assert!(s.check(4, &edit(0, vec![run(2, 1, 1)], vec![])).is_ok());
        let mut inverted = run(9, 1, 1);
        inverted.min_lsn = Lsn::new(11);
        assert!(s.check(4, &edit(0, vec![inverted], vec![])).is_err());
        // An epoch a live run uses cannot be retired.
        s.apply(
            4,
            &ManifestRecord::KeyEpochChanged {
                epoch: KeyEpoch::new(2),
                master_key_id: "m2".into(),
                at_unix_ms: 1,
            },
        )
        .unwrap();
        let retire = ManifestRecord::KeyEpochRetired {
            epoch: KeyEpoch::new(1),
            at_unix_ms: 2,
        };
        assert_eq!(
            s.check(5, &retire),
            Err(LiveStateError::EpochInUse {
                epoch: KeyEpoch::new(1)
            })
        );
    }

    #[test]
    fn a_run_is_moved_deeper_only_unchanged_and_by_one_edit() {
        let mut s = with_one_flush();
        let mut changed = run(1, 1, 1);
        changed.sha256 = [9; 32];
        let bad = [
            (
                edit(0, vec![run(1, 1, 1)], vec![]),
                "not removed by the edit",
            ),
            (edit(0, vec![run(1, 0, 1)], vec![1]), "not deeper"),
            (edit(0, vec![changed], vec![1]), "another file under the id"),
            (edit(0, vec![run(1, 1, 1), run(1, 2, 1)], vec![1]), "twice"),
        ];
        for (record, what) in bad {
            let before = s.clone();
            assert!(s.apply(2, &record).is_err(), "{what}");
            assert_eq!(s, before, "{what}: state changed");
        }
        s.apply(2, &edit(0, vec![run(1, 1, 1)], vec![1])).unwrap();
        s.apply(3, &edit(0, vec![run(1, 3, 1)], vec![1])).unwrap();
        // A compaction's floor is kept as the maximum and restated with the runs.
        let floored = |floor: u64| {
            ManifestRecord::VersionEdit(VersionEdit {
                floor: Lsn::new(floor),
                ..VersionEdit::default()
            })
        };
        s.apply(4, &floored(40)).unwrap();
        s.apply(5, &floored(30)).unwrap();
        assert_eq!(s.floor(), Lsn::new(40));
        assert_eq!(s.runs()[&1], run(1, 3, 1));
        assert_eq!(s.runs().len(), 1);
        // The restated state (what a backup or a compacted manifest holds) agrees.
        assert_eq!(LiveState::from_records(DB, &s.to_records()).unwrap(), s);
        // A removal-only edit with a floor (a dropped table's runs removed unread):
        // the runs go, the floor rises, and the restated state still agrees.
        let removal = ManifestRecord::VersionEdit(VersionEdit {
            removed: vec![1],
            floor: Lsn::new(50),
            ..VersionEdit::default()
        });
        s.apply(6, &removal).unwrap();
        assert!(s.runs().is_empty());
        assert_eq!(s.floor(), Lsn::new(50));
        assert_eq!(LiveState::from_records(DB, &s.to_records()).unwrap(), s);
    }

    #[test]
    fn restating_many_runs_reproduces_the_live_runs() {
        let mut s = LiveState::new(DB);
        let many: Vec<RunRecord> = (0..600).map(|i| run(i, 1, 1)).collect();
        for (i, chunk) in many.chunks(MAX_EDIT_RUNS).enumerate() {
            s.apply(i as u64, &edit(77, chunk.to_vec(), vec![]))
                .unwrap();
        }
        s.apply(9, &edit(0, vec![], (0..50).collect())).unwrap();
        let restated = LiveState::from_records(DB, &s.to_records()).unwrap();
        assert_eq!(restated.runs(), s.runs());
        assert_eq!(restated.flushed_lsn(), Lsn::new(77));
        assert_eq!(restated.next_file_id(), 600);
        for r in s.to_records() {
            assert!(r.encode().unwrap().len() <= crate::file::MAX_RECORD_BODY_LEN as usize);
        }
    }

    #[test]
    fn folds_adds_and_retirements() {
        let recs = vec![
            ManifestRecord::DatabaseCreated {
                database_id: DB,
                created_at_unix_ms: 5,
            },
            ManifestRecord::SegmentSealed {
                seq: SegmentSeq::new(0),
                first_lsn: Lsn::new(1),
                last_lsn: Lsn::new(9),
                sha256: [1; 32],
            },
            ManifestRecord::CheckpointAdded {
                lsn: Lsn::new(9),
                epoch: KeyEpoch::FIRST,
                file_name: "x.ckpt".into(),
                sha256: [2; 32],
                len: 3,
            },
            ManifestRecord::SegmentRetired {
                seq: SegmentSeq::new(0),
            },
        ];
        let s = LiveState::from_records(DB, &recs).unwrap();
        assert!(s.segments().is_empty());
        assert_eq!(s.newest_checkpoint().map(|(l, _)| l), Some(Lsn::new(9)));
        assert_eq!(s.created_at_unix_ms(), Some(5));
        assert_eq!(s.referenced_epochs(), BTreeSet::from([KeyEpoch::FIRST]));
    }

    fn epoch(n: u32) -> ManifestRecord {
        ManifestRecord::KeyEpochChanged {
            epoch: KeyEpoch::new(n),
            master_key_id: format!("k:v{n}"),
            at_unix_ms: u64::from(n),
        }
    }

    fn checkpoint(lsn: u64, epoch: u32) -> ManifestRecord {
        ManifestRecord::CheckpointAdded {
            lsn: Lsn::new(lsn),
            epoch: KeyEpoch::new(epoch),
            file_name: format!("{lsn}.ckpt"),
            sha256: [0; 32],
            len: 1,
        }
    }

    fn retire(n: u32) -> ManifestRecord {
        ManifestRecord::KeyEpochRetired {
            epoch: KeyEpoch::new(n),
            at_unix_ms: 99,
        }
    }

    #[test]
    fn epoch_retirement_rules() {
        let e1 = KeyEpoch::new(1);
        // Retiring the current epoch, an unknown one, or one a live checkpoint uses fails.
        let fails = |recs: Vec<ManifestRecord>| LiveState::from_records(DB, &recs).unwrap_err();
        assert_eq!(
            fails(vec![epoch(1), retire(1)]),
            (1, LiveStateError::EpochInUse { epoch: e1 })
        );
        assert_eq!(
            fails(vec![epoch(1), retire(7)]),
            (
                1,
                LiveStateError::UnknownEpoch {
                    epoch: KeyEpoch::new(7)
                }
            )
        );
        assert_eq!(
            fails(vec![epoch(1), checkpoint(5, 1), epoch(2), retire(1)]),
            (3, LiveStateError::EpochInUse { epoch: e1 })
        );
        // Once its checkpoint is retired the epoch can go, once; nothing may use it after.
        let ok = vec![
            epoch(1),
            checkpoint(5, 1),
            epoch(2),
            checkpoint(9, 2),
            ManifestRecord::CheckpointRetired { lsn: Lsn::new(5) },
            retire(1),
        ];
        let s = LiveState::from_records(DB, &ok).unwrap();
        assert!(s.is_epoch_retired(e1));
        assert!(!s.is_epoch_retired(KeyEpoch::new(2)));
        let mut twice = ok.clone();
        twice.push(retire(1));
        assert_eq!(
            fails(twice),
            (6, LiveStateError::EpochRetired { epoch: e1 })
        );
        let mut reuse = ok.clone();
        reuse.push(checkpoint(20, 1));
        assert_eq!(
            fails(reuse),
            (6, LiveStateError::EpochRetired { epoch: e1 })
        );
        // Compaction restates retirements.
        let restated = LiveState::from_records(DB, &s.to_records()).unwrap();
        assert_eq!(restated.retired_epochs(), s.retired_epochs());
    }

    #[test]
    fn rejects_contradictions_with_index() {
        let other = DatabaseId::from_bytes([2; 16]);
        let cases: Vec<(Vec<ManifestRecord>, u64, LiveStateError)> = vec![
            (
                vec![ManifestRecord::DatabaseCreated {
                    database_id: other,
                    created_at_unix_ms: 0,
                }],
                0,
                LiveStateError::DatabaseMismatch {
                    header: DB,
                    record: other,
                },
            ),
            (
                vec![ManifestRecord::CheckpointRetired { lsn: Lsn::new(3) }],
                0,
                LiveStateError::UnknownCheckpoint { lsn: Lsn::new(3) },
            ),
            (
                vec![ManifestRecord::SegmentRetired {
                    seq: SegmentSeq::new(1),
                }],
                0,
                LiveStateError::UnknownSegment {
                    seq: SegmentSeq::new(1),
                },
            ),
            (
                vec![
                    ManifestRecord::KeyEpochChanged {
                        epoch: KeyEpoch::new(2),
                        master_key_id: "a/1".into(),
                        at_unix_ms: 0,
                    },
                    ManifestRecord::KeyEpochChanged {
                        epoch: KeyEpoch::new(2),
                        master_key_id: "a/2".into(),
                        at_unix_ms: 0,
                    },
                ],
                1,
                LiveStateError::EpochNotIncreasing {
                    current: KeyEpoch::new(2),
                    new: KeyEpoch::new(2),
                },
            ),
            (
                vec![
                    ManifestRecord::ServerEnvHash {
                        profile_id: "p".into(),
                        hash: [0; 32],
                    },
                    ManifestRecord::Compacted {
                        replaces_head: [0; 32],
                        records_replaced: 1,
                        at_unix_ms: 0,
                    },
                ],
                1,
                LiveStateError::CompactedNotFirst { index: 1 },
            ),
            (
                vec![ManifestRecord::SegmentSealed {
                    seq: SegmentSeq::new(0),
                    first_lsn: Lsn::new(5),
                    last_lsn: Lsn::new(4),
                    sha256: [0; 32],
                }],
                0,
                LiveStateError::BadLsnRange {
                    first: Lsn::new(5),
                    last: Lsn::new(4),
                },
            ),
        ];
        for (recs, index, err) in cases {
            assert_eq!(LiveState::from_records(DB, &recs), Err((index, err)));
        }
    }
}
