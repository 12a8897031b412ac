//! Recovery: the walk from the files of a data directory to a running state.
//!
//! One walk, used by `open` ([`crate::Pipeline::start`]), the offline tools and
//! restore: verify the manifest chain, take the **newest checkpoint that authenticates**
//! and matches the hash the manifest recorded (falling back to an older one), then replay
//! the **WAL after it** with one replay rule ([`replay_commit_frame`]). `open` also
//! repairs what a crash leaves (a staging copy of the manifest, unrecorded checkpoint
//! files, a torn log tail) and gets a WAL writer positioned after the last valid frame;
//! the offline tools and restore only read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aedb_manifest::{LiveState, Manifest, ManifestRecord, RecoveryEventKind};
use aedb_model::{CommitRecord, State};
use aedb_storage::{BlockCache, Memtable, View};
use aedb_types::{DatabaseId, KeyEpoch, Lsn, SegmentSeq};
use aedb_wal::{
    FrameKind, RecoveredWal, RecoveryMode, WalCipher, WalConfig, WalKeyring, WalWriter,
};

use crate::error::{CheckpointLoadError, FrameReplayError, StartError};
use aedb_keys::MasterKeyId;

use crate::keyring::{EpochTable, Keyring};
use crate::runs::RunOpener;

/// The WAL directory inside a data directory.
pub const WAL_DIR: &str = "wal";

/// One place where recovery routed around damage: an integrity alert. `open` logs it,
/// counts it and records it in the manifest as a `RecoveryEvent` record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryEvent {
    /// What recovery did.
    pub kind: RecoveryEventKind,
    /// The LSN it concerns (see [`RecoveryEventKind`]; zero when none).
    pub lsn: Lsn,
    /// Which file and why (no key material, no user data).
    pub detail: String,
}

impl RecoveryEvent {
    /// An event of `kind` at `lsn`.
    pub fn new(kind: RecoveryEventKind, lsn: Lsn, detail: impl Into<String>) -> RecoveryEvent {
        RecoveryEvent {
            kind,
            lsn,
            detail: detail.into(),
        }
    }

    /// The manifest record of this event, stamped now.
    pub fn to_record(&self) -> ManifestRecord {
        ManifestRecord::recovery_event(self.kind, self.lsn, &self.detail)
    }
}

impl std::fmt::Display for RecoveryEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at lsn {}: {}", self.kind, self.lsn, self.detail)
    }
}

/// The events a WAL pass routed around: a torn tail cut, a corruption cut (lenient
/// modes), segments superseded by a lenient restart. Shared by `open` and the offline
/// dry run.
pub fn wal_events(wal: &RecoveredWal) -> Vec<RecoveryEvent> {
    let mut events = Vec::new();
    if let Some(cut) = &wal.torn_tail
        && cut.bytes > 0
    {
        events.push(RecoveryEvent::new(
            RecoveryEventKind::WalTornTail,
            wal.last_lsn,
            format!(
                "{}: torn tail of {} bytes cut at offset {} ({})",
                cut.path.display(),
                cut.bytes,
                cut.offset,
                cut.corruption
            ),
        ));
    }
    if let Some(cut) = &wal.corruption {
        events.push(RecoveryEvent::new(
            RecoveryEventKind::LenientRestart,
            wal.last_lsn,
            format!(
                "{}: corruption at offset {} ({}); {} bytes and {} later segments cut",
                cut.path.display(),
                cut.offset,
                cut.corruption,
                cut.bytes,
                cut.removed_segments.len()
            ),
        ));
    }
    events
}

/// The event of a checkpoint fallback: recovery loaded the checkpoint at `loaded`
/// after every newer one failed (`skipped`, newest first).
pub fn fallback_event(loaded: Lsn, skipped: &[CheckpointLoadError]) -> RecoveryEvent {
    RecoveryEvent::new(
        RecoveryEventKind::CheckpointFallback,
        loaded,
        format!(
            "{} newer checkpoint(s) skipped: {}",
            skipped.len(),
            crate::error::join(skipped)
        ),
    )
}

/// What [`recover`] found and left ready for the actors.
pub(crate) struct Recovered {
    /// The verified manifest (repaired: a torn final append cut, lost segments retired
    /// after a lenient recovery).
    pub manifest: Manifest,
    /// Key epochs and their masters, from the manifest.
    pub epochs: EpochTable,
    /// The current key epoch (new files are sealed under it) and its master.
    pub epoch: (KeyEpoch, MasterKeyId),
    /// The state: the checkpoint plus every WAL frame after it.
    pub state: State,
    /// The LSN of the checkpoint the walk started from (zero without one).
    pub checkpoint_lsn: Lsn,
    /// Newer checkpoints skipped because they did not authenticate.
    pub checkpoint_fallbacks: u64,
    /// Every place this walk routed around damage, each already logged (`tracing`
    /// warning) and recorded durably in the manifest (`RecoveryEvent`).
    pub events: Vec<RecoveryEvent>,
    /// What the WAL pass found.
    pub wal: RecoveredWal,
    /// A writer positioned after the last valid frame.
    pub writer: WalWriter,
}

/// The recovery walk of `open`: repairs what a crash leaves, verifies the manifest,
/// loads the newest authenticating checkpoint and replays the WAL after it. Sets the
/// WAL's cipher (the current key epoch) and keyring (every epoch the log still holds) in
/// `wal`.
pub(crate) fn recover(
    data_dir: &Path,
    wal: &mut WalConfig,
    mode: RecoveryMode,
    keyring: &Keyring,
    cache: &Arc<BlockCache>,
) -> Result<Recovered, StartError> {
    let wal_dir = data_dir.join(WAL_DIR);
    let mut events = Vec::new();
    let (mut manifest, epochs) = open_manifest(&wal.fs, data_dir, &wal_dir, keyring, &mut events)?;
    let walked = walk(
        data_dir,
        &wal_dir,
        wal,
        mode,
        keyring,
        &mut manifest,
        &epochs,
        &mut events,
        cache,
    );
    // Integrity alerts are never silent: each one is logged and recorded durably before
    // the instance starts — and also when the open then fails, since the repair that
    // routed around the damage (a cut tail, a removed file) is already on disk and the
    // next open would find nothing left to report.
    for event in &events {
        tracing::warn!(
            event = event.kind.name(),
            lsn = event.lsn.get(),
            "integrity alert: recovery routed around damage: {}",
            event.detail
        );
    }
    let recorded = events
        .iter()
        .try_for_each(|event| manifest.append(&event.to_record()));
    let walked = walked?;
    recorded?;
    Ok(Recovered {
        manifest,
        epochs,
        epoch: walked.epoch,
        state: walked.state,
        checkpoint_lsn: walked.checkpoint_lsn,
        checkpoint_fallbacks: walked.checkpoint_fallbacks,
        events,
        wal: walked.wal,
        writer: walked.writer,
    })
}

/// What [`walk`] found after the manifest.
struct Walked {
    epoch: (KeyEpoch, MasterKeyId),
    state: State,
    checkpoint_lsn: Lsn,
    checkpoint_fallbacks: u64,
    wal: RecoveredWal,
    writer: WalWriter,
}

/// The walk after the manifest opened: repairs, the newest authenticating checkpoint, the
/// WAL after it, the checks against the manifest. Every place it routes around damage
/// adds to `events`.
#[allow(clippy::too_many_arguments)]
fn walk(
    data_dir: &Path,
    wal_dir: &Path,
    wal: &mut WalConfig,
    mode: RecoveryMode,
    keyring: &Keyring,
    manifest: &mut Manifest,
    epochs: &EpochTable,
    events: &mut Vec<RecoveryEvent>,
    cache: &Arc<BlockCache>,
) -> Result<Walked, StartError> {
    let fs = wal.fs.clone();
    let database = manifest.database_id();
    remove_unrecorded_checkpoints(&*fs, data_dir, manifest, events)?;
    if mode == RecoveryMode::Strict {
        // Every recorded segment before replay, so a missing one is named (replay would
        // only see a gap). A lenient recovery re-creates a successor whose creation was
        // never synced, so it checks nothing here.
        check_recorded_segments_present(&*fs, wal_dir, manifest, false)?;
    }
    let (epoch, master) = epochs.current().ok_or(StartError::NoKeyEpoch)?;
    if let Some(key) = keyring.wal_key(database, epoch, master)? {
        // New batches are sealed under the current epoch; recovery finds the key of any
        // epoch the log still holds through the manifest's epoch table.
        wal.cipher = Some(WalCipher::new(key, epoch, database));
        let (keyring, epochs) = (keyring.clone(), epochs.clone());
        wal.keyring = Some(WalKeyring::new(database, move |e| {
            epochs.wal_key(&keyring, database, e)
        }));
    }
    let (mut state, skipped) = load_newest_checkpoint(
        &fs,
        data_dir,
        database,
        manifest.live_state(),
        epochs,
        keyring,
        cache,
    )
    .map_err(|failures| StartError::NoUsableCheckpoint { failures })?;
    let checkpoint_lsn = state.lsn();
    if !skipped.is_empty() {
        events.push(fallback_event(checkpoint_lsn, &skipped));
    }
    let (recovered, writer) = recover_wal(wal_dir, wal, mode, &mut state, events)?;
    events.extend(wal_events(&recovered));
    manifest.set_fault_injector(wal.faults.clone());
    if mode == RecoveryMode::Strict {
        if let Some(path) = first_segment_mismatch(&recovered, manifest.live_state()) {
            return Err(StartError::SegmentMismatch { path });
        }
        check_recorded_segments_present(&*fs, wal_dir, manifest, false)?;
    } else {
        retire_lost_segments(manifest, &recovered, events)?;
    }
    remove_unrecorded_runs(&*fs, data_dir, manifest, events)?;
    Ok(Walked {
        epoch: (epoch, master.clone()),
        state,
        checkpoint_lsn,
        checkpoint_fallbacks: skipped.len() as u64,
        wal: recovered,
        writer,
    })
}

/// Opens and verifies the manifest, or creates it for a brand-new database.
fn open_manifest(
    fs: &aedb_fs::SharedFs,
    data_dir: &Path,
    wal_dir: &Path,
    keyring: &Keyring,
    events: &mut Vec<RecoveryEvent>,
) -> Result<(Manifest, EpochTable), StartError> {
    let path = data_dir.join(aedb_manifest::MANIFEST_FILE_NAME);
    // A staging copy left by a creation or compaction that crashed before its rename:
    // the manifest in place (or none) is the truth, the copy was never relied on.
    let staged = aedb_manifest::manifest_temp_path(&path);
    if fs.exists(&staged) {
        fs.remove_file(&staged).map_err(|source| {
            StartError::Manifest(aedb_manifest::ManifestError::Io {
                op: "remove stale staging copy",
                path: staged.clone(),
                source,
            })
        })?;
    }
    let mut manifest = if fs.exists(&path) {
        let database = aedb_manifest::peek_database_id(&**fs, &path)?;
        // The manifest stays keyed under the master it was created with; after the
        // provider moves to a newer master version, older versions are tried.
        let mut keys = keyring.manifest_key_candidates(database)?.into_iter();
        loop {
            let Some(key) = keys.next() else {
                unreachable!("manifest_key_candidates returns at least the current key")
            };
            // A torn final record is an append that crashed before its fsync returned,
            // so nothing relied on it; anything else fails closed.
            match Manifest::open_and_repair_torn_tail(fs, &path, key) {
                Ok((manifest, _records, torn)) => {
                    if let Some(torn) = torn {
                        events.push(RecoveryEvent::new(
                            RecoveryEventKind::ManifestTornTail,
                            Lsn::ZERO,
                            format!(
                                "{}: torn final append of {} bytes cut at offset {}",
                                path.display(),
                                torn.len,
                                torn.offset
                            ),
                        ));
                    }
                    break manifest;
                }
                Err(aedb_manifest::ManifestError::HeaderAuthFailed { .. }) if keys.len() > 0 => {}
                Err(e) => return Err(e.into()),
            }
        }
    } else {
        let has_wal = aedb_wal::segment_paths(&**fs, wal_dir)
            .map(|s| !s.is_empty())
            .unwrap_or(true);
        let has_checkpoints = aedb_checkpoint::list_checkpoints(&**fs, data_dir)
            .map(|c| !c.is_empty())
            .unwrap_or(true);
        if has_wal || has_checkpoints {
            return Err(StartError::MissingManifest { path });
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| StartError::Random(e.to_string()))?;
        let database = DatabaseId::from_bytes(id);
        // Created whole or not at all: a crash here leaves no manifest, never one
        // without the key epoch every later open needs.
        let now = aedb_types::clock::unix_millis();
        Manifest::create_with(
            fs,
            &path,
            database,
            keyring.manifest_key(database)?,
            &[
                ManifestRecord::DatabaseCreated {
                    database_id: database,
                    created_at_unix_ms: now,
                },
                ManifestRecord::KeyEpochChanged {
                    epoch: KeyEpoch::FIRST,
                    master_key_id: keyring.current_data_master()?.to_string(),
                    at_unix_ms: now,
                },
            ],
        )?
    };
    let mut epochs = EpochTable::from_live(manifest.live_state())
        .map_err(|source| StartError::Key(Arc::new(source)))?;
    // The provider was pointed at a new master version (HSM rotation runbook): start
    // a new epoch under it; older epochs stay readable through their recorded masters.
    let current = keyring.current_data_master()?;
    if let Some((epoch, master)) = epochs.current()
        && *master != current
    {
        let next = epoch.next().ok_or(StartError::NoKeyEpoch)?;
        manifest.append(&ManifestRecord::KeyEpochChanged {
            epoch: next,
            master_key_id: current.to_string(),
            at_unix_ms: aedb_types::clock::unix_millis(),
        })?;
        epochs.insert(next, current);
    }
    Ok((manifest, epochs))
}

/// Every live segment the manifest recorded must still be there, and so must the
/// successor of the newest one (it was created before the record was written).
/// `successor_only` runs before replay: recovery would otherwise re-create a missing
/// successor of a sealed last segment, as it does after a crash between sealing a
/// segment and creating the next, and a deleted newest segment would go unnoticed.
fn check_recorded_segments_present(
    fs: &dyn aedb_fs::FileSystem,
    wal_dir: &Path,
    manifest: &Manifest,
    successor_only: bool,
) -> Result<(), StartError> {
    let recorded = manifest.live_state().segments();
    let present: std::collections::BTreeSet<SegmentSeq> = aedb_wal::segment_paths(fs, wal_dir)
        .map_err(StartError::WalListing)?
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    let newest = recorded.keys().next_back().map(|&seq| seq.next());
    let live = recorded.keys().copied().filter(|_| !successor_only);
    for seq in live.chain(newest) {
        if !present.contains(&seq) {
            return Err(StartError::SegmentMissing {
                path: wal_dir.join(aedb_wal::segment_file_name(seq)),
            });
        }
    }
    Ok(())
}

/// Deletes checkpoint files the manifest does not record: half-written temporaries of a
/// seal that crashed, and files renamed into place whose `CheckpointAdded` never became
/// durable. Nothing ever relied on either, and a leftover file would block the next
/// checkpoint at the same LSN.
fn remove_unrecorded_checkpoints(
    fs: &dyn aedb_fs::FileSystem,
    data_dir: &Path,
    manifest: &Manifest,
    events: &mut Vec<RecoveryEvent>,
) -> Result<(), StartError> {
    aedb_checkpoint::remove_stale_temp_files(fs, data_dir)?;
    let recorded = manifest.live_state().checkpoints();
    for entry in aedb_checkpoint::list_checkpoints(fs, data_dir)? {
        if !recorded.contains_key(&entry.lsn) {
            aedb_checkpoint::remove_checkpoint(fs, data_dir, entry.lsn)?;
            events.push(RecoveryEvent::new(
                RecoveryEventKind::FileSkipped,
                entry.lsn,
                format!(
                    "{}: checkpoint file the manifest never recorded, removed",
                    entry.path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Deletes run files the manifest does not list: half-written temporaries, runs renamed
/// into place whose version edit never became durable, and inputs of a recorded
/// compaction whose deletion did not happen. Called only once recovery succeeded, so a
/// refused open changes nothing on disk.
fn remove_unrecorded_runs(
    fs: &dyn aedb_fs::FileSystem,
    data_dir: &Path,
    manifest: &Manifest,
    events: &mut Vec<RecoveryEvent>,
) -> Result<(), StartError> {
    let runs_dir = aedb_checkpoint::checkpoints_dir(data_dir);
    aedb_checkpoint::remove_stale_run_temp_files(fs, &runs_dir)?;
    let live_runs = manifest.live_state().runs();
    let mut removed = false;
    for (file_id, path) in aedb_checkpoint::list_run_files(fs, &runs_dir)? {
        if !live_runs.contains_key(&file_id) {
            removed = true;
            // Written but never recorded (a crash before its version edit), or an
            // input a recorded compaction replaced whose deletion did not happen.
            fs.remove_file(&path)
                .map_err(|source| aedb_checkpoint::CheckpointError::Io {
                    op: "remove",
                    path: path.clone(),
                    source,
                })?;
            events.push(RecoveryEvent::new(
                RecoveryEventKind::FileSkipped,
                Lsn::ZERO,
                format!(
                    "{}: run file the manifest does not list, removed",
                    path.display()
                ),
            ));
        }
    }
    if removed {
        fs.sync_dir(&runs_dir)
            .map_err(|source| aedb_checkpoint::CheckpointError::Io {
                op: "fsync directory",
                path: runs_dir.clone(),
                source,
            })?;
    }
    Ok(())
}

/// Loads the newest checkpoint of `data_dir` that authenticates and matches the hash the
/// manifest recorded; returns the state (empty without checkpoints) and why each newer
/// checkpoint was skipped (newest first; empty when the newest loaded), or why each
/// recorded one failed (newest first). Read-only: recovery, `aedb verify` and `check
/// invariants` share it.
pub fn load_newest_checkpoint(
    fs: &aedb_fs::SharedFs,
    data_dir: &Path,
    database: DatabaseId,
    live: &LiveState,
    epochs: &EpochTable,
    keyring: &Keyring,
    cache: &Arc<BlockCache>,
) -> Result<(State, Vec<CheckpointLoadError>), Vec<CheckpointLoadError>> {
    if !live.runs().is_empty() || live.flushed_lsn() > Lsn::ZERO {
        // The LSM: the live runs (metadata only; blocks are read on demand) under an
        // empty memtable, as of the flushed LSN.
        let opener = RunOpener {
            fs: fs.clone(),
            data_dir: data_dir.to_path_buf(),
            database,
            keyring: keyring.clone(),
            epochs: epochs.clone(),
            cache: cache.clone(),
        };
        let version = opener.load_version(live).map_err(|e| vec![e])?;
        let lsn = live.flushed_lsn();
        let memtable = Arc::new(Memtable::new(1));
        memtable.mark_installed(lsn);
        let view = View::new(vec![memtable], Arc::new(version), lsn);
        let state = State::from_view(view).map_err(|e| vec![CheckpointLoadError::Unreadable(e)])?;
        return Ok((state, Vec::new()));
    }
    let fs = &**fs;
    let checkpoints = live.checkpoints();
    let mut failures = Vec::new();
    for (lsn, recorded) in checkpoints.iter().rev() {
        let path = checkpoint_path(data_dir, recorded);
        match load_checkpoint(fs, &path, database, &recorded.sha256, *lsn, epochs, keyring) {
            Ok(state) => {
                if !failures.is_empty() {
                    tracing::warn!(
                        "recovery fell back to the checkpoint at lsn {lsn}; newer ones failed: {}",
                        crate::error::join(&failures)
                    );
                }
                return Ok((state, failures));
            }
            Err(e) => failures.push(e),
        }
    }
    if failures.is_empty() {
        Ok((State::new(), Vec::new()))
    } else {
        Err(failures)
    }
}

/// Where the checkpoint `recorded` lives inside `data_dir`.
pub fn checkpoint_path(data_dir: &Path, recorded: &aedb_manifest::LiveCheckpoint) -> PathBuf {
    data_dir.join("checkpoints").join(&recorded.file_name)
}

/// Opens one checkpoint file, authenticates it (with the key of the epoch it names, when
/// the keyring encrypts), and checks it against what the manifest (or a backup listing)
/// recorded: its SHA-256 and its LSN. The one checkpoint rule of recovery, the offline
/// checks and restore.
pub fn load_checkpoint(
    fs: &dyn aedb_fs::FileSystem,
    path: &Path,
    database: DatabaseId,
    sha256: &[u8; 32],
    lsn: Lsn,
    epochs: &EpochTable,
    keyring: &Keyring,
) -> Result<State, CheckpointLoadError> {
    let loaded = if keyring.encrypts() {
        aedb_checkpoint::open_checkpoint(fs, path, database, |epoch| {
            epochs.checkpoint_key(keyring, database, epoch)
        })
    } else {
        aedb_checkpoint::open_plaintext_checkpoint(fs, path, database)
    }
    .map_err(|source| CheckpointLoadError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    if loaded.file_sha256 != *sha256 {
        return Err(CheckpointLoadError::HashMismatch {
            path: path.to_path_buf(),
        });
    }
    let state =
        State::decode_snapshot(&loaded.payload).map_err(|source| CheckpointLoadError::Decode {
            path: path.to_path_buf(),
            source,
        })?;
    if state.lsn() != lsn {
        return Err(CheckpointLoadError::LsnMismatch {
            path: path.to_path_buf(),
            found: state.lsn(),
            recorded: lsn,
        });
    }
    Ok(state)
}

/// Replays the WAL after the checkpoint's LSN into `state`; returns the report and a
/// writer positioned after the last valid frame.
fn recover_wal(
    wal_dir: &Path,
    wal: &WalConfig,
    mode: RecoveryMode,
    state: &mut State,
    events: &mut Vec<RecoveryEvent>,
) -> Result<(RecoveredWal, WalWriter), StartError> {
    // A log with no segment left (every one retired behind the checkpoint, or a lenient
    // recovery cut a header that never reached the disk) continues after the checkpoint.
    let base = state.lsn();
    let mut expected = base.next();
    let lenient = mode != RecoveryMode::Strict;
    // Lenient only: the log's first frame after the checkpoint is missing (a segment a
    // power cut kept off the disk); nothing after that gap can be replayed.
    let mut gap = None;
    let (recovered, writer) = aedb_wal::recover_after(wal_dir, wal, mode, base, |frame| {
        if gap.is_some() {
            return Ok(());
        }
        match replay_commit_frame(state, base, &mut expected, &frame) {
            Err(FrameReplayError::Gap { expected, found }) if lenient => {
                gap = Some((expected, found));
                Ok(())
            }
            other => other,
        }
    })?;
    // Lenient only: a log that ends before the checkpoint, or resumes after a gap, no
    // longer continues it; it restarts after the checkpoint (one rule for both).
    if lenient && (gap.is_some() || recovered.last_lsn < base) {
        drop(writer);
        let detail = format!(
            "the WAL (to lsn {}, gap {gap:?}) does not continue the checkpoint at lsn {base}; restarted there",
            recovered.last_lsn
        );
        let restarted = aedb_wal::restart_after(wal_dir, wal, state.lsn())?;
        let superseded: Vec<String> = restarted
            .0
            .superseded
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        events.push(RecoveryEvent::new(
            RecoveryEventKind::LenientRestart,
            base,
            if superseded.is_empty() {
                detail
            } else {
                format!("{detail}; segments superseded: {}", superseded.join(", "))
            },
        ));
        return Ok(restarted);
    }
    if recovered.last_lsn < base {
        return Err(StartError::WalBehindCheckpoint {
            wal_last: recovered.last_lsn,
            checkpoint: base,
        });
    }
    Ok((recovered, writer))
}

/// What [`replay_wal`] did.
#[derive(Debug)]
pub struct WalReplay {
    /// What the WAL pass found (segments, LSN range, a corruption cut in a lenient mode).
    pub wal: RecoveredWal,
    /// Frames applied to the state.
    pub replayed: u64,
}

/// The read-only WAL half of the walk (the offline checks and restore): verifies the log
/// in `wal_dir` (segment chain, CRCs, sealed-batch tags, density) without writing, and
/// replays every frame after `state`'s LSN, up to `stop` when given, into `state`.
pub fn replay_wal(
    wal_dir: &Path,
    wal: &WalConfig,
    mode: RecoveryMode,
    state: &mut State,
    stop: Option<Lsn>,
) -> Result<WalReplay, aedb_wal::RecoverError<FrameReplayError>> {
    let base = state.lsn();
    let mut expected = base.next();
    let mut replayed = 0u64;
    let wal = aedb_wal::verify_with(wal_dir, wal, mode, |frame| {
        if stop.is_some_and(|stop| frame.lsn > stop) {
            return Ok(());
        }
        let before = expected;
        replay_commit_frame(state, base, &mut expected, &frame)?;
        if expected != before {
            replayed += 1;
        }
        Ok(())
    })?;
    Ok(WalReplay { wal, replayed })
}

/// After a lenient recovery (any mode but strict), the manifest forgets the sealed
/// segments the log no longer holds as recorded: segments the recovery cut or superseded
/// (their unsynced bytes were lost), or whose content differs from the recorded hash.
/// They are retired exactly as a checkpoint's own retirement would, so the numbers can be
/// written again and a later open does not look for them.
fn retire_lost_segments(
    manifest: &mut Manifest,
    recovered: &RecoveredWal,
    events: &mut Vec<RecoveryEvent>,
) -> Result<(), StartError> {
    let kept: std::collections::BTreeMap<SegmentSeq, [u8; 32]> = recovered
        .segments
        .iter()
        .filter_map(|s| s.sealed_hash.map(|h| (s.seq, h.0)))
        .collect();
    let lost: Vec<SegmentSeq> = manifest
        .live_state()
        .segments()
        .iter()
        .filter(|(seq, rec)| kept.get(seq) != Some(&rec.sha256))
        .map(|(&seq, _)| seq)
        .collect();
    for seq in lost {
        manifest.append(&ManifestRecord::SegmentRetired { seq })?;
        events.push(RecoveryEvent::new(
            RecoveryEventKind::SegmentLost,
            Lsn::ZERO,
            format!(
                "{}: sealed segment {seq} lost its unsynced bytes; retired",
                aedb_wal::segment_file_name(seq)
            ),
        ));
    }
    Ok(())
}

/// Replays one recovered WAL frame into `state`: frames at or below `base` (covered by
/// the checkpoint the state was loaded from) are skipped; the rest must be dense from
/// `*expected` on (advanced here), `Commit` frames, and decode and replay cleanly. The
/// one replay rule shared by recovery, restore and the offline checks.
pub fn replay_commit_frame(
    state: &mut State,
    base: Lsn,
    expected: &mut Lsn,
    frame: &aedb_wal::DecodedFrame<'_>,
) -> Result<(), FrameReplayError> {
    if frame.lsn <= base {
        return Ok(()); // covered by the checkpoint
    }
    if frame.lsn != *expected {
        return Err(FrameReplayError::Gap {
            expected: *expected,
            found: frame.lsn,
        });
    }
    *expected = frame.lsn.next();
    if frame.kind != FrameKind::Commit {
        return Err(FrameReplayError::UnsupportedKind {
            lsn: frame.lsn,
            kind: frame.kind,
        });
    }
    let record =
        CommitRecord::decode(frame.payload).map_err(|source| FrameReplayError::Decode {
            lsn: frame.lsn,
            source,
        })?;
    // In place: a replay error aborts the open, so per-record atomicity (and its
    // copying) buys nothing here.
    state
        .replay(&record, frame.lsn)
        .map_err(|source| FrameReplayError::Replay {
            lsn: frame.lsn,
            source,
        })
}

/// Every sealed segment the manifest recorded must hash to what it recorded (the
/// recovery check, shared with the offline checks): the first one that does not.
pub fn first_segment_mismatch(recovered: &RecoveredWal, live: &LiveState) -> Option<PathBuf> {
    let recorded = live.segments();
    recovered
        .segments
        .iter()
        .find(|seg| {
            matches!((&seg.sealed_hash, recorded.get(&seg.seq)),
                (Some(hash), Some(rec)) if hash.0 != rec.sha256)
        })
        .map(|seg| seg.path.clone())
}
