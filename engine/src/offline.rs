//! Offline, read-only inspection of a data directory: a strict recovery dry run
//! ([`verify_data_dir`]), the invariant checks of `aedb check invariants`
//! ([`check_invariants`]) and the file listing of `aedb inspect` ([`inspect`]).
//!
//! Nothing here writes to the directory. A shared lock on `<data_dir>/LOCK` is taken
//! (when the file exists) so a live writer — which holds it exclusively — is detected
//! and reported instead of raced.

use aedb_fs::{DirLockGuard, FileSystem};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aedb_actors::{EpochTable, Keyring};
use aedb_actors::{FrameReplayError, recovery};
use aedb_manifest::{LiveState, ManifestError, VerifiedManifest};
use aedb_model::State;
use aedb_types::{DatabaseId, Lsn, SegmentSeq};
use aedb_wal::{RecoveredWal, RecoveryMode, WalConfig, WalKeyring};

use crate::{AedbConfig, Error};

pub use crate::error::{IntegrityFailure, OfflineError};

/// An [`OfflineError::Integrity`] of `cause`.
fn damaged<E: Into<IntegrityFailure>>(cause: E) -> OfflineError {
    OfflineError::Integrity(Box::new(cause.into()))
}

/// A shared hold on `<data_dir>/LOCK`, released on drop.
#[derive(Debug)]
pub struct ReadLock {
    _guard: Option<Box<dyn DirLockGuard>>,
}

/// Takes a shared lock on `<data_dir>/LOCK` without creating or writing it.
pub fn read_lock(fs: &dyn FileSystem, dir: &Path) -> Result<ReadLock, Error> {
    Ok(lock_shared(fs, dir)?)
}

fn lock_shared(fs: &dyn FileSystem, dir: &Path) -> Result<ReadLock, OfflineError> {
    let path = dir.join("LOCK");
    if !fs.exists(&path) {
        return Ok(ReadLock { _guard: None });
    }
    match fs.try_lock_shared(&path) {
        Ok(guard) => Ok(ReadLock {
            _guard: Some(guard),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            Err(OfflineError::Locked(dir.to_path_buf()))
        }
        Err(source) => Err(OfflineError::Io { path, source }),
    }
}

/// Reads and verifies the manifest (trying older master versions like `open`).
pub fn read_verified_manifest(
    fs: &dyn FileSystem,
    dir: &Path,
    keyring: &Keyring,
) -> Result<VerifiedManifest, Error> {
    Ok(verified_manifest(fs, dir, keyring)?)
}

fn verified_manifest(
    fs: &dyn FileSystem,
    dir: &Path,
    keyring: &Keyring,
) -> Result<VerifiedManifest, OfflineError> {
    let path = dir.join(aedb_manifest::MANIFEST_FILE_NAME);
    if !fs.exists(&path) {
        return Err(OfflineError::NotADatabase(dir.to_path_buf()));
    }
    let integrity = damaged::<ManifestError>;
    let database = aedb_manifest::peek_database_id(fs, &path).map_err(integrity)?;
    let mut last = None;
    for key in keyring.manifest_key_candidates(database)? {
        match aedb_manifest::read_manifest(fs, &path, &key) {
            Ok(m) => return Ok(m),
            Err(e @ ManifestError::HeaderAuthFailed { .. }) => last = Some(e),
            Err(e) => return Err(integrity(e)),
        }
    }
    Err(last.map_or_else(|| damaged(IntegrityFailure::NoManifestKey), integrity))
}

fn epoch_table(live: &LiveState) -> Result<EpochTable, OfflineError> {
    Ok(EpochTable::from_live(live)?)
}

/// The WAL reader configuration of an offline pass: no writes, keys by epoch.
pub(crate) fn wal_config(
    fs: &aedb_fs::SharedFs,
    database: DatabaseId,
    epochs: &EpochTable,
    keyring: &Keyring,
) -> WalConfig {
    let mut config = WalConfig::development();
    config.fs = fs.clone();
    if keyring.encrypts() {
        let (keyring, epochs) = (keyring.clone(), epochs.clone());
        config.keyring = Some(WalKeyring::new(database, move |e| {
            epochs.wal_key(&keyring, database, e)
        }));
    }
    config
}

/// Opens one checkpoint file (a version-1 full checkpoint, or a run file, every block
/// authenticated) — for example a copy captured during an incident — with
/// the keys `dir`'s manifest allows: the file must belong to this database and be sealed
/// under a live key epoch. A file sealed under a retired epoch is refused with
/// [`aedb_checkpoint::CheckpointError::RetiredEpoch`]. Read-only.
pub fn open_checkpoint_file(dir: &Path, file: &Path, config: &AedbConfig) -> Result<State, Error> {
    let _lock = lock_shared(&*config.fs, dir)?;
    let keyring = config.keyring().map_err(OfflineError::from)?;
    let manifest = verified_manifest(&*config.fs, dir, &keyring)?;
    let database = manifest.live.database_id();
    let is_run = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(aedb_checkpoint::parse_run_file_name)
        .is_some();
    if is_run {
        return open_run_file(file, config, &keyring, &manifest.live);
    }
    let loaded = if keyring.encrypts() {
        let epochs = epoch_table(&manifest.live)?;
        aedb_checkpoint::open_checkpoint(&*config.fs, file, database, |epoch| {
            epochs.checkpoint_key(&keyring, database, epoch)
        })
        .map_err(OfflineError::from)?
    } else {
        aedb_checkpoint::open_plaintext_checkpoint(&*config.fs, file, database)
            .map_err(OfflineError::from)?
    };
    let state = State::decode_snapshot(&loaded.payload).map_err(|source| {
        damaged(IntegrityFailure::Snapshot {
            file: file.to_path_buf(),
            source,
        })
    })?;
    Ok(state)
}

/// One run file (format version 2) as a state of its own: authenticated block by block
/// (with the key of the epoch it names; a retired epoch is refused), read as of its
/// newest LSN.
fn open_run_file(
    file: &Path,
    config: &AedbConfig,
    keyring: &aedb_actors::Keyring,
    live: &aedb_manifest::LiveState,
) -> Result<State, Error> {
    let database = live.database_id();
    let epochs = epoch_table(live)?;
    let opened = if keyring.encrypts() {
        let lookup = |epoch| epochs.checkpoint_key(keyring, database, epoch);
        aedb_checkpoint::RunFile::open_with(
            &*config.fs,
            file,
            database,
            aedb_checkpoint::OpenMode::Sealed(&lookup),
        )
    } else {
        aedb_checkpoint::RunFile::open_plaintext(&*config.fs, file, database)
    }
    .map_err(OfflineError::from)?;
    opened.verify().map_err(OfflineError::from)?;
    let lsn = opened.max_lsn();
    let cache = Arc::new(aedb_storage::BlockCache::new(OFFLINE_CACHE_BYTES));
    let run = Arc::new(aedb_storage::Run::new(opened, file.to_path_buf(), cache));
    let version = aedb_storage::Version::empty().apply(&aedb_storage::Edit {
        added: vec![(0, run)],
        ..Default::default()
    });
    let view = aedb_storage::View::new(
        vec![Arc::new(aedb_storage::Memtable::new(0))],
        Arc::new(version),
        lsn,
    );
    Ok(State::from_view(view)?)
}

/// Exports the audit tables of a stopped database as JSON lines to `out` (a new file),
/// after a strict recovery dry run and a check of both HMAC chains (`aedb audit
/// export`). Read-only on `dir`.
pub fn export_audit(
    dir: &Path,
    config: &AedbConfig,
    out: &Path,
) -> Result<crate::AuditExport, Error> {
    let verified = verify_data_dir(dir, config)?;
    let keyring = config.keyring().map_err(OfflineError::from)?;
    let database = verified.database_id;
    let mut rows = Vec::new();
    for table in aedb_actors::audit::AuditTable::ALL {
        rows.extend(aedb_actors::audit::read_rows(&verified.state, table).map_err(damaged)?);
    }
    let counts = crate::verify_audit_rows(&rows, |id| keyring.audit_key_for(database, id).ok())?;
    crate::audit_export::export_rows(&*config.fs, database, &rows, &counts, out)
}

/// The result of a strict recovery dry run.
#[derive(Debug)]
pub struct VerifiedDir {
    /// The database.
    pub database_id: DatabaseId,
    /// The verified manifest.
    pub manifest: VerifiedManifest,
    /// The LSN of the checkpoint recovery started from (zero without one).
    pub checkpoint_lsn: Lsn,
    /// The recovered state.
    pub state: State,
    /// What the WAL pass found.
    pub wal: RecoveredWal,
    /// Where this dry run itself routed around damage (an older checkpoint than the
    /// newest, a torn WAL tail or manifest append `open` would cut), as `open` would
    /// record them.
    pub dry_run_events: Vec<aedb_actors::RecoveryEvent>,
}

impl VerifiedDir {
    /// The integrity alerts earlier opens recorded in the manifest (the newest
    /// [`aedb_manifest::MAX_LIVE_RECOVERY_EVENTS`]), oldest first.
    pub fn recorded_events(&self) -> &[aedb_manifest::RecoveryEventInfo] {
        self.manifest.live.recovery_events()
    }

    /// Whether recovery ever routed around damage here: an event recorded by an
    /// earlier open or found by this dry run (`aedb verify` exits 1 then, unless
    /// `--allow-fallback`).
    pub fn routed_around_damage(&self) -> bool {
        !self.dry_run_events.is_empty() || !self.recorded_events().is_empty()
    }
}

/// A strict recovery dry run: verifies the manifest chain, loads the newest checkpoint
/// that authenticates (falling back like `open`), verifies the WAL (segment chain,
/// CRCs, sealed-batch tags, density) and replays it, and checks sealed segments against
/// the manifest. Modifies nothing. Every place it routed around damage, and every
/// integrity alert an earlier open recorded, is in the result
/// ([`VerifiedDir::dry_run_events`], [`VerifiedDir::recorded_events`]).
pub fn verify_data_dir(dir: &Path, config: &AedbConfig) -> Result<VerifiedDir, Error> {
    let _lock = lock_shared(&*config.fs, dir)?;
    Ok(verify_locked(dir, config)?)
}

/// Block cache of the offline tools (they read each block about once).
const OFFLINE_CACHE_BYTES: u64 = 8 << 20;

fn verify_locked(dir: &Path, config: &AedbConfig) -> Result<VerifiedDir, OfflineError> {
    let keyring = config.keyring()?;
    let manifest = verified_manifest(&*config.fs, dir, &keyring)?;
    let database = manifest.database_id;
    let epochs = epoch_table(&manifest.live)?;
    let mut dry_run_events = Vec::new();
    if let Some(torn) = &manifest.torn_tail {
        dry_run_events.push(aedb_actors::RecoveryEvent::new(
            aedb_manifest::RecoveryEventKind::ManifestTornTail,
            Lsn::ZERO,
            format!(
                "{}: torn final append of {} bytes at offset {} (cut at next open)",
                dir.join(aedb_manifest::MANIFEST_FILE_NAME).display(),
                torn.len,
                torn.offset
            ),
        ));
    }
    // Run files the manifest does not list: an open removes them (a crash between a
    // run's rename and its version edit, or a replaced run whose deletion did not
    // happen).
    let runs_dir = aedb_checkpoint::checkpoints_dir(dir);
    for (file_id, path) in aedb_checkpoint::list_run_files(&*config.fs, &runs_dir)
        .map_err(|e| damaged(IntegrityFailure::CheckpointListing(e)))?
    {
        if !manifest.live.runs().contains_key(&file_id) {
            dry_run_events.push(aedb_actors::RecoveryEvent::new(
                aedb_manifest::RecoveryEventKind::FileSkipped,
                Lsn::ZERO,
                format!(
                    "{}: run file the manifest does not list (removed at next open)",
                    path.display()
                ),
            ));
        }
    }
    let cache = Arc::new(aedb_storage::BlockCache::new(OFFLINE_CACHE_BYTES));
    let (mut state, skipped) = recovery::load_newest_checkpoint(
        &config.fs,
        dir,
        database,
        &manifest.live,
        &epochs,
        &keyring,
        &cache,
    )
    .map_err(|failures| damaged(IntegrityFailure::NoCheckpoint { failures }))?;
    let base = state.lsn();
    if !skipped.is_empty() {
        dry_run_events.push(recovery::fallback_event(base, &skipped));
    }
    let wal_dir = dir.join(aedb_actors::WAL_DIR);
    let replay = recovery::replay_wal(
        &wal_dir,
        &wal_config(&config.fs, database, &epochs, &keyring),
        RecoveryMode::Strict,
        &mut state,
        None,
    )
    .map_err(damaged::<aedb_wal::RecoverError<FrameReplayError>>)?;
    let wal = replay.wal;
    if wal.last_lsn < base && !wal.fresh {
        return Err(damaged(IntegrityFailure::WalBehindCheckpoint {
            wal_last: wal.last_lsn,
            checkpoint: base,
        }));
    }
    if let Some(path) = recovery::first_segment_mismatch(&wal, &manifest.live) {
        return Err(damaged(IntegrityFailure::SegmentMismatch { path }));
    }
    dry_run_events.extend(recovery::wal_events(&wal));
    Ok(VerifiedDir {
        database_id: database,
        manifest,
        checkpoint_lsn: base,
        state,
        wal,
        dry_run_events,
    })
}

/// One named check and its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Passed, failed, or skipped (nothing to check in this build).
    pub status: CheckStatus,
    /// Details (counts, or what failed).
    pub detail: String,
}

/// The outcome of a [`Check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    /// It holds.
    Pass,
    /// It does not hold.
    Fail,
}

impl CheckStatus {
    /// `"pass"` or `"fail"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "fail",
        }
    }
}

fn check(name: &'static str, result: Result<String, String>) -> Check {
    match result {
        Ok(detail) => Check {
            name,
            status: CheckStatus::Pass,
            detail,
        },
        Err(detail) => Check {
            name,
            status: CheckStatus::Fail,
            detail,
        },
    }
}

/// Every live run file: opens and matches its manifest record (id, length, LSN range,
/// epoch, key-range prefixes, entries), its whole-file SHA-256 equals the record's, every
/// block authenticates and decodes with keys in order and LSNs inside the recorded range
/// (`RunFile::verify`), and sorted levels hold disjoint key ranges in order.
fn check_runs(
    dir: &Path,
    config: &AedbConfig,
    keyring: &aedb_actors::Keyring,
    live: &aedb_manifest::LiveState,
    epochs: &aedb_actors::EpochTable,
) -> Result<String, String> {
    let opener = aedb_actors::runs::RunOpener {
        fs: config.fs.clone(),
        data_dir: dir.to_path_buf(),
        database: live.database_id(),
        keyring: keyring.clone(),
        epochs: epochs.clone(),
        cache: Arc::new(aedb_storage::BlockCache::new(OFFLINE_CACHE_BYTES)),
    };
    let mut bad = Vec::new();
    let mut entries = 0u64;
    let mut blocks = 0usize;
    for (&file_id, rec) in live.runs() {
        let path = aedb_checkpoint::run_path(dir, file_id);
        let run = match opener.open(file_id) {
            Ok(run) => run,
            Err(e) => {
                bad.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if let Err(e) = aedb_actors::runs::check_against_record(&run, rec) {
            bad.push(e.to_string());
            continue;
        }
        match run.file().sha256() {
            Ok(sha) if sha == rec.sha256 => {}
            Ok(_) => {
                bad.push(format!(
                    "{}: SHA-256 differs from the manifest's record",
                    path.display()
                ));
                continue;
            }
            Err(e) => {
                bad.push(format!("{}: {e}", path.display()));
                continue;
            }
        }
        match run.file().verify() {
            Ok(n) => {
                entries += n;
                blocks += run.block_count();
            }
            Err(e) => bad.push(format!("{}: {e}", path.display())),
        }
    }
    if bad.is_empty() {
        match opener.load_version(live) {
            Ok(version) => {
                for level in 1..aedb_storage::LEVELS {
                    for pair in version.level(level).windows(2) {
                        if pair[0].file().last_key() >= pair[1].file().first_key() {
                            bad.push(format!(
                                "level {level}: {} and {} overlap",
                                pair[0].path().display(),
                                pair[1].path().display()
                            ));
                        }
                    }
                }
            }
            Err(e) => bad.push(e.to_string()),
        }
    }
    if bad.is_empty() {
        Ok(format!(
            "{} runs, {blocks} blocks authenticated, {entries} entries in order",
            live.runs().len()
        ))
    } else {
        Err(bad.join("; "))
    }
}

/// Runs every invariant check, offline and read-only, and returns each outcome (a
/// failed check does not stop the others, except those that depend on it).
pub fn check_invariants(dir: &Path, config: &AedbConfig) -> Result<Vec<Check>, Error> {
    Ok(run_checks(dir, config)?)
}

fn run_checks(dir: &Path, config: &AedbConfig) -> Result<Vec<Check>, OfflineError> {
    let _lock = lock_shared(&*config.fs, dir)?;
    let mut checks = vec![check(
        "data directory not held by a writer",
        Ok("shared LOCK taken".into()),
    )];
    let keyring = config.keyring()?;
    let manifest = match verified_manifest(&*config.fs, dir, &keyring) {
        Ok(m) => {
            checks.push(check(
                "manifest HMAC chain",
                Ok(format!(
                    "{} records, head {}{}",
                    m.records.len(),
                    hex::encode(&m.head_mac[..8]),
                    m.torn_tail
                        .as_ref()
                        .map(|t| format!(", torn tail of {} bytes (cut at next open)", t.len))
                        .unwrap_or_default()
                )),
            ));
            m
        }
        Err(OfflineError::Integrity(e)) => {
            checks.push(check("manifest HMAC chain", Err(e.to_string())));
            return Ok(checks);
        }
        Err(e) => return Err(e),
    };
    let database = manifest.database_id;
    let live = &manifest.live;

    // Key epochs: every referenced epoch is recorded with a parsable master.
    let epochs = epoch_table(live);
    checks.push(check(
        "key epochs referenced exist",
        match &epochs {
            Ok(_) => {
                let missing: Vec<_> = live
                    .referenced_epochs()
                    .into_iter()
                    .filter(|e| !live.key_epochs().contains_key(e))
                    .collect();
                if missing.is_empty() {
                    Ok(format!(
                        "{} epochs recorded, {} referenced",
                        live.key_epochs().len(),
                        live.referenced_epochs().len()
                    ))
                } else {
                    Err(format!("referenced but not recorded: {missing:?}"))
                }
            }
            Err(e) => Err(e.to_string()),
        },
    ));
    let Ok(epochs) = epochs else {
        return Ok(checks);
    };

    // Every live checkpoint authenticates, matches its record, and decodes (the decoder
    // re-checks every row against its schema and every version against the LSN).
    let mut bad = Vec::new();
    for (lsn, rec) in live.checkpoints() {
        let path = recovery::checkpoint_path(dir, rec);
        if let Err(e) = recovery::load_checkpoint(
            &*config.fs,
            &path,
            database,
            &rec.sha256,
            *lsn,
            &epochs,
            &keyring,
        ) {
            bad.push(e.to_string());
        }
    }
    checks.push(check(
        "checkpoints authenticate",
        if bad.is_empty() {
            Ok(format!("{} checkpoints", live.checkpoints().len()))
        } else {
            Err(bad.join("; "))
        },
    ));
    checks.push(check(
        "run files",
        check_runs(dir, config, &keyring, live, &epochs),
    ));

    // The full strict recovery dry run: WAL authentication, chain and LSN density.
    match verify_locked(dir, config) {
        Ok(v) => {
            checks.push(check(
                "WAL authentication and segment chain",
                Ok(format!(
                    "{} segments, lsn {}..={}",
                    v.wal.segments.len(),
                    v.wal.base_lsn,
                    v.wal.last_lsn
                )),
            ));
            let checkpoints_below_end = live.checkpoints().keys().all(|l| *l <= v.state.lsn());
            let segments_monotonic = v
                .wal
                .segments
                .windows(2)
                .all(|w| w[0].last_lsn < w[1].base_lsn || w[0].frames == 0);
            checks.push(check(
                "LSN monotonicity",
                if checkpoints_below_end && segments_monotonic {
                    Ok(format!(
                        "dense from checkpoint lsn {} to {}",
                        v.checkpoint_lsn,
                        v.state.lsn()
                    ))
                } else {
                    Err(format!(
                        "checkpoints at or below the end: {checkpoints_below_end}, segments increasing: {segments_monotonic}"
                    ))
                },
            ));
            let bytes = v.state.to_snapshot_bytes().unwrap_or_default();
            checks.push(check(
                "rows match their table schemas",
                match v
                    .state
                    .to_snapshot_bytes()
                    .map(|b| State::decode_snapshot(&b))
                {
                    Err(e) => Err(e.to_string()),
                    Ok(Ok(again)) if again.to_snapshot_bytes().as_ref() == Ok(&bytes) => {
                        Ok(format!("state at lsn {} re-validated", v.state.lsn()))
                    }
                    Ok(Ok(_)) => Err("state does not re-encode identically".into()),
                    Ok(Err(e)) => Err(e.to_string()),
                },
            ));
            checks.push(check(
                "idempotency records consistent",
                match v.state.idempotency_len() {
                    Err(e) => Err(e.to_string()),
                    Ok(n) if n == 0 || State::decode_snapshot(&bytes).is_ok() => {
                        Ok(format!("{n} records, none newer than the state"))
                    }
                    Ok(_) => Err("an idempotency record is inconsistent with the state".into()),
                },
            ));
            checks.push(check(
                "system tables and audit chain",
                system_tables(&v.state, database, &keyring),
            ));
        }
        Err(OfflineError::Integrity(e)) => {
            checks.push(check(
                "WAL authentication and segment chain",
                Err(e.to_string()),
            ));
        }
        Err(e) => return Err(e),
    }
    Ok(checks)
}

/// The system tables of a secure instance: the persisted policy replays, both audit
/// tables have the audit shape and their HMAC chains verify.
fn system_tables(state: &State, database: DatabaseId, keyring: &Keyring) -> Result<String, String> {
    use aedb_actors::audit::{self, AuditTable};
    if !state.has_namespace(&audit::audit_namespace()) {
        return Ok("no system tables (an instance opened without open_secure)".into());
    }
    let (policy, _) = aedb_actors::authz_actor::load_policy(state).map_err(|e| e.to_string())?;
    let mut counts = Vec::new();
    for table in AuditTable::ALL {
        let rows = audit::read_rows(state, table).map_err(|e| e.to_string())?;
        audit::verify_chain(&rows, |id| keyring.audit_key_for(database, id).ok())
            .map_err(|e| e.to_string())?;
        counts.push(format!("{} {} rows", table.name(), rows.len()));
    }
    Ok(format!(
        "policy of {} grants replays; chains intact: {}",
        policy.grant_count(),
        counts.join(", ")
    ))
}

/// One file of a data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// Path.
    pub path: PathBuf,
    /// Size in bytes.
    pub len: u64,
}

/// What `aedb inspect` shows.
#[derive(Debug)]
pub struct Inspection {
    /// The verified manifest (records, live state, head).
    pub manifest: VerifiedManifest,
    /// Checkpoint files on disk.
    pub checkpoints: Vec<FileInfo>,
    /// WAL segment files on disk, by sequence number.
    pub segments: BTreeMap<SegmentSeq, FileInfo>,
}

/// Lists the manifest's records and the files on disk. Read-only.
pub fn inspect(dir: &Path, config: &AedbConfig) -> Result<Inspection, Error> {
    Ok(list_files(dir, config)?)
}

fn list_files(dir: &Path, config: &AedbConfig) -> Result<Inspection, OfflineError> {
    let _lock = lock_shared(&*config.fs, dir)?;
    let keyring = config.keyring()?;
    let manifest = verified_manifest(&*config.fs, dir, &keyring)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| OfflineError::Io { path, source }
    };
    let mut checkpoints = Vec::new();
    let fs = &*config.fs;
    for c in aedb_checkpoint::list_checkpoints(fs, dir)
        .map_err(|e| damaged(IntegrityFailure::CheckpointListing(e)))?
    {
        let len = fs.file_len(&c.path).map_err(io(&c.path))?;
        checkpoints.push(FileInfo { path: c.path, len });
    }
    let mut segments = BTreeMap::new();
    let wal_dir = dir.join(aedb_actors::WAL_DIR);
    for (seq, path) in aedb_wal::segment_paths(fs, &wal_dir).map_err(damaged)? {
        let len = fs.file_len(&path).map_err(io(&path))?;
        segments.insert(seq, FileInfo { path, len });
    }
    Ok(Inspection {
        manifest,
        checkpoints,
        segments,
    })
}
