//! Restore: verify a backup chain, stage its WAL, replay it into the full backup's
//! checkpoint through the one recovery walk, and write a fresh data directory that
//! opens normally.

use super::*;

pub(super) struct Rebuilt {
    state: State,
    epochs: Vec<(KeyEpoch, String)>,
    /// The full backup's run files (copied into the restored directory as they are).
    runs: Vec<(PathBuf, usize, Arc<aedb_storage::Run>, [u8; 32])>,
    /// The LSN the chain's runs hold everything up to: the restored directory reads
    /// exactly from here on (the runs may have been compacted to any floor up to it,
    /// and nothing records which), so it refuses reads as of earlier LSNs.
    floor: Lsn,
}

/// One piece of a staged WAL segment: a backup file holding the segment's bytes from
/// `offset` on (a whole segment's piece starts at 0).
#[derive(Clone, Debug)]
pub(super) struct Piece {
    path: PathBuf,
    offset: u64,
    len: u64,
}

/// The WAL a chain holds, by segment file name: pieces contiguous from byte 0.
pub(super) type StagedWal = BTreeMap<String, Vec<Piece>>;

/// A run of the version a restore starts from: where the chain holds it.
struct VersionRun {
    /// The backup directory holding the file.
    backup_dir: PathBuf,
    path: PathBuf,
    file_id: u64,
    level: u8,
    sha256: [u8; 32],
}

/// Which backup of `chain` a restore to `stop` starts from: the last one whose own runs
/// (or checkpoint) hold every commit up to an LSN at or below `stop` (a full backup's
/// first LSN, a format-2 incremental's run-set LSN), the chain's WAL replaying from
/// there. [`BackupError::TargetUnreachable`] when `stop` lies strictly between an
/// incremental's first LSN and its run-set LSN while its WAL does not continue its
/// parent's (flushes retired that WAL before it was taken): no file of the chain holds
/// the state there.
pub(super) fn restore_base(chain: &[VerifiedBackup], stop: Lsn) -> Result<usize, BackupError> {
    for b in chain.iter().skip(1) {
        if let Some(set) = &b.manifest.runs
            && !set.wal_from_parent
            && b.manifest.first_lsn < stop
            && stop < set.base_lsn
        {
            return Err(BackupError::TargetUnreachable {
                target: stop,
                backup: b.dir.clone(),
                after: b.manifest.first_lsn,
                before: set.base_lsn,
            });
        }
    }
    Ok(chain
        .iter()
        .rposition(|b| b.manifest.base_lsn().is_some_and(|l| l <= stop))
        .unwrap_or(0))
}

/// Adds a whole-segment piece: a segment copied again (it was active when an earlier
/// backup was taken) must extend the earlier copy byte for byte.
fn stage_whole(
    fs: &dyn FileSystem,
    staged: &mut StagedWal,
    name: &str,
    path: PathBuf,
    len: u64,
) -> Result<(), BackupError> {
    if let Some(earlier) = staged.get(name)
        && !extends(fs, earlier, &path)?
    {
        return Err(BackupError::ChainMismatch {
            path,
            detail: ChainBreak::SegmentNotExtended {
                earlier: earlier.last().map(|p| p.path.clone()).unwrap_or_default(),
            },
        });
    }
    staged.insert(
        name.to_owned(),
        vec![Piece {
            path,
            offset: 0,
            len,
        }],
    );
    Ok(())
}

/// Adds a tail piece: the chain must hold exactly the segment's first `offset` bytes.
fn stage_tail(
    staged: &mut StagedWal,
    name: &str,
    path: PathBuf,
    offset: u64,
    len: u64,
) -> Result<(), BackupError> {
    let held = staged
        .get(name)
        .and_then(|p| p.last())
        .map_or(0, |p| p.offset + p.len);
    match staged.get_mut(name) {
        Some(pieces) if held == offset => {
            pieces.push(Piece { path, offset, len });
            Ok(())
        }
        _ => Err(BackupError::ChainMismatch {
            path,
            detail: ChainBreak::TailWithoutPrefix { offset, held },
        }),
    }
}

/// Whether the file at `later` starts with the bytes of `pieces`.
fn extends(fs: &dyn FileSystem, pieces: &[Piece], later: &Path) -> Result<bool, BackupError> {
    let b = fs
        .open(later, FsMode::Existing)
        .map_err(io_err("open", later))?;
    for piece in pieces {
        let a = aedb_fs::read_file(fs, &piece.path).map_err(io_err("read", &piece.path))?;
        let mut head = vec![0u8; a.len()];
        if (a.len() as u64) != piece.len || b.read_exact_at(&mut head, piece.offset).is_err() {
            return Ok(false);
        }
        if head != a {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes the staged segments a replay from `base` needs into `wal_dir`: the one holding
/// `base + 1` (the last whose header's base LSN is at most that) and every segment after
/// it with consecutive numbers. Segments before it hold nothing to replay, and a gap
/// (WAL retired between two backups) ends what can be replayed.
fn write_staged(
    fs: &dyn FileSystem,
    staged: &StagedWal,
    base: Lsn,
    wal_dir: &Path,
) -> Result<(), BackupError> {
    let mut segments: Vec<(aedb_wal::SegmentSeq, &String, &Vec<Piece>)> = staged
        .iter()
        .filter_map(|(name, pieces)| {
            Some((aedb_wal::dir::parse_segment_file_name(name)?, name, pieces))
        })
        .collect();
    segments.sort_by_key(|s| s.0);
    let mut start = None;
    for (i, (_, _, pieces)) in segments.iter().enumerate() {
        let Some(first) = pieces.first() else {
            continue;
        };
        let file = fs
            .open(&first.path, FsMode::Existing)
            .map_err(io_err("open", &first.path))?;
        if segment_base(&*file, &first.path)? <= base.next() {
            start = Some(i);
        }
    }
    let Some(start) = start else {
        return Ok(());
    };
    let mut expected = segments[start].0;
    for (seq, name, pieces) in &segments[start..] {
        if *seq != expected {
            break;
        }
        let mut bytes = Vec::new();
        for piece in pieces.iter() {
            bytes
                .extend(aedb_fs::read_file(fs, &piece.path).map_err(io_err("stage", &piece.path))?);
        }
        let dst = wal_dir.join(name);
        aedb_fs::write_file(fs, &dst, &bytes).map_err(io_err("stage", &dst))?;
        expected = expected.next();
    }
    Ok(())
}

/// Verifies the chain, stages the WAL a restore to `target` (or the chain's end) needs in
/// `staging` (created, left for the caller to remove), and replays it into the version
/// it starts from (see [`restore_base`]).
pub(super) fn rebuild(
    backups: &[PathBuf],
    config: &AedbConfig,
    strict: bool,
    target: Option<Lsn>,
    staging: &Path,
    progress: Progress<'_>,
) -> Result<(RestoreReport, Rebuilt, DatabaseId), BackupError> {
    let chain = chain_manifests(backups, config)?;
    let database = chain[0].manifest.database_id;
    let first = chain[0].manifest.first_lsn;
    let last = chain[chain.len() - 1].manifest.last_lsn;
    if let Some(t) = target
        && (t < first || t > last)
    {
        return Err(BackupError::TargetOutOfRange {
            target: t,
            first,
            last,
        });
    }
    let stop = target.unwrap_or(last);
    let base_at = restore_base(&chain, stop)?;
    let base = chain[base_at].manifest.base_lsn().unwrap_or(first);
    let total: u64 = chain
        .iter()
        .flat_map(|b| b.manifest.files.iter())
        .map(|f| f.len)
        .sum();
    let mut verified = CopyProgress::new(total, progress, 0);
    let mut tick = |n: u64| verified.tick(n);

    // Every file against its authenticated listing, every inherited run against the
    // files of the backups before; the WAL assembled segment by segment.
    let fs = &*config.fs;
    let wal_dir = staging.join("wal");
    fs.create_dir_all(&wal_dir)
        .map_err(io_err("create", &wal_dir))?;
    let mut staged: StagedWal = BTreeMap::new();
    let mut checkpoint_path = None;
    // The run files held so far: (file id, SHA-256) to (backup dir, path, length).
    let mut held: BTreeMap<(u64, [u8; 32]), (PathBuf, PathBuf, u64)> = BTreeMap::new();
    let mut version: Vec<VersionRun> = Vec::new();
    for (i, b) in chain.iter().enumerate() {
        for run in b.manifest.runs.iter().flat_map(|s| s.inherited.iter()) {
            match held.get(&(run.file_id, run.sha256)) {
                Some((dir, path, len)) if *len == run.len => {
                    if i == base_at {
                        version.push(VersionRun {
                            backup_dir: dir.clone(),
                            path: path.clone(),
                            file_id: run.file_id,
                            level: run.level,
                            sha256: run.sha256,
                        });
                    }
                }
                _ => {
                    return Err(BackupError::ChainMismatch {
                        path: b.dir.join(BACKUP_MANIFEST_FILE),
                        detail: ChainBreak::InheritedRunMissing {
                            file_id: run.file_id,
                        },
                    });
                }
            }
        }
        for file in &b.manifest.files {
            let check_hash = strict || !file.kind.is_wal();
            let path = verify_file(fs, b, file, check_hash, &mut tick)?;
            match file.kind {
                BackupFileKind::Checkpoint if i == 0 => {
                    checkpoint_path = Some((path, file.clone()));
                }
                // A checkpoint only a full backup lists; only captures list the
                // manifest, and a capture is never in a chain (`verify_chain_manifests`
                // refuses it): nothing to restore from either.
                BackupFileKind::Checkpoint | BackupFileKind::Manifest => {}
                BackupFileKind::Run { level } => {
                    // The listing's names are validated when it is decoded.
                    let file_id = aedb_checkpoint::parse_run_file_name(&file.name).unwrap_or(0);
                    held.insert(
                        (file_id, file.sha256),
                        (b.dir.clone(), path.clone(), file.len),
                    );
                    if i == base_at {
                        version.push(VersionRun {
                            backup_dir: b.dir.clone(),
                            path,
                            file_id,
                            level,
                            sha256: file.sha256,
                        });
                    }
                }
                BackupFileKind::WalSegment => {
                    stage_whole(fs, &mut staged, &file.name, path, file.len)?;
                }
                BackupFileKind::WalTail { offset } => {
                    stage_tail(&mut staged, &file.name, path, offset, file.len)?;
                }
            }
        }
    }
    if base_at > 0 {
        checkpoint_path = None;
    }
    write_staged(fs, &staged, base, &wal_dir)?;

    // The checkpoint: authenticated (sealed) or digest-checked (plaintext).
    let keyring = config.keyring()?;
    let mut epochs = EpochTable::default();
    let epoch_list = chain[chain.len() - 1].manifest.key_epochs.clone();
    for (epoch, master) in &epoch_list {
        let master: MasterKeyId = master.parse()?;
        epochs.insert(*epoch, master);
    }
    let cache = Arc::new(aedb_storage::BlockCache::new(8 << 20));
    let opener = aedb_actors::runs::RunOpener {
        fs: config.fs.clone(),
        data_dir: chain[0].dir.clone(),
        database,
        keyring: keyring.clone(),
        epochs: epochs.clone(),
        cache,
    };
    let mut runs = Vec::new();
    for v in &version {
        let path = &v.path;
        let tampered = |source| BackupError::TamperedFile {
            path: path.clone(),
            detail: Box::new(Tamper::CheckpointAuth(source)),
        };
        let opener = aedb_actors::runs::RunOpener {
            data_dir: v.backup_dir.clone(),
            ..opener.clone()
        };
        let run = opener.open(v.file_id).map_err(|e| match e {
            e @ aedb_checkpoint::CheckpointError::KeyRequired { .. } => BackupError::WrongKey {
                backup: v.backup_dir.clone(),
                detail: Box::new(KeyMismatch::CheckpointSealed(e)),
            },
            e => tampered(e),
        })?;
        if run.file().max_lsn() > base {
            return Err(BackupError::ChainMismatch {
                path: path.clone(),
                detail: ChainBreak::CheckpointLsn {
                    checkpoint: run.file().max_lsn(),
                    first: base,
                },
            });
        }
        runs.push((path.clone(), usize::from(v.level), run, v.sha256));
    }
    let mut state = match &checkpoint_path {
        // The version: the runs (possibly none) holding every commit up to `base`.
        None if !runs.is_empty() || base > Lsn::ZERO => {
            let edit = aedb_storage::Edit {
                added: runs.iter().map(|(_, l, r, _)| (*l, r.clone())).collect(),
                removed: Vec::new(),
                floor: base,
            };
            let version = aedb_storage::Version::empty().apply(&edit);
            let memtable = Arc::new(aedb_storage::Memtable::new(1));
            memtable.mark_installed(base);
            let view = aedb_storage::View::new(vec![memtable], Arc::new(version), base);
            State::from_view(view).map_err(|e| BackupError::Write(WriteFailure::Unreadable(e)))?
        }
        None => State::new(),
        Some((path, listed)) => {
            recovery::load_checkpoint(fs, path, database, &listed.sha256, first, &epochs, &keyring)
                .map_err(|e| match e {
                    CheckpointLoadError::Open {
                        source: e @ aedb_checkpoint::CheckpointError::KeyRequired { .. },
                        ..
                    } => BackupError::WrongKey {
                        backup: chain[0].dir.clone(),
                        detail: Box::new(KeyMismatch::CheckpointSealed(e)),
                    },
                    CheckpointLoadError::Open { source, .. } => BackupError::TamperedFile {
                        path: path.clone(),
                        detail: Box::new(Tamper::CheckpointAuth(source)),
                    },
                    CheckpointLoadError::HashMismatch { .. } => BackupError::TamperedFile {
                        path: path.clone(),
                        detail: Box::new(Tamper::CheckpointHash),
                    },
                    CheckpointLoadError::Decode { source, .. } => BackupError::TamperedFile {
                        path: path.clone(),
                        detail: Box::new(Tamper::Snapshot(source)),
                    },
                    CheckpointLoadError::LsnMismatch { found, .. } => BackupError::ChainMismatch {
                        path: path.clone(),
                        detail: ChainBreak::CheckpointLsn {
                            checkpoint: found,
                            first,
                        },
                    },
                    other => BackupError::TamperedFile {
                        path: path.clone(),
                        detail: Box::new(Tamper::Checkpoint(other)),
                    },
                })?
        }
    };

    // The WAL: segment chain, CRCs, density and every sealed-batch tag.
    let wal_config = crate::offline::wal_config(&config.fs, database, &epochs, &keyring);
    let stop = target.unwrap_or(last);
    let mode = if strict {
        RecoveryMode::Strict
    } else {
        RecoveryMode::TruncateAtCorruption
    };
    let WalReplay {
        wal: report,
        replayed,
    } = recovery::replay_wal(&wal_dir, &wal_config, mode, &mut state, Some(stop))
        .map_err(|e| wal_error(e, &wal_dir, &staged, &chain[0].dir))?;
    if let Some(cut) = &report.corruption {
        tracing::warn!(
            "salvage restore: WAL corruption in {} at byte {}: {}; restoring up to lsn {}",
            cut.path.display(),
            cut.offset,
            cut.corruption,
            state.lsn()
        );
    }
    if strict && state.lsn() != stop {
        return Err(BackupError::ChainMismatch {
            path: wal_dir,
            detail: ChainBreak::WalShort {
                wal_last: state.lsn(),
                claimed: stop,
            },
        });
    }
    Ok((
        RestoreReport {
            database_id: database,
            lsn: state.lsn(),
            chain_last_lsn: last,
            backups: chain.len(),
            bytes_verified: verified.done,
            frames_replayed: replayed,
        },
        Rebuilt {
            state,
            epochs: epoch_list,
            runs,
            floor: base,
        },
        database,
    ))
}

/// Maps a WAL verification failure on the staged copy back to the backup file holding
/// the failing bytes (and the offset in that file).
pub(super) fn wal_error(
    e: RecoverError<FrameReplayError>,
    wal_dir: &Path,
    staged: &StagedWal,
    full: &Path,
) -> BackupError {
    let original = |p: &Path, offset: u64| -> (PathBuf, u64) {
        let pieces = p
            .strip_prefix(wal_dir)
            .ok()
            .and_then(|name| name.to_str())
            .and_then(|name| staged.get(name));
        let piece = pieces.and_then(|pieces| {
            pieces
                .iter()
                .rev()
                .find(|piece| piece.offset <= offset)
                .or(pieces.first())
        });
        match piece {
            Some(piece) => (piece.path.clone(), offset.saturating_sub(piece.offset)),
            None => (p.to_path_buf(), offset),
        }
    };
    match e {
        RecoverError::Corrupt {
            path,
            offset,
            corruption,
        } => {
            let (path, offset) = original(&path, offset);
            BackupError::TamperedFile {
                path,
                detail: Box::new(Tamper::WalCorrupt { offset, corruption }),
            }
        }
        RecoverError::Unseal {
            path,
            offset,
            lsn,
            source,
        } => {
            let (path, offset) = original(&path, offset);
            BackupError::TamperedFile {
                path,
                detail: Box::new(Tamper::Unseal {
                    offset,
                    lsn,
                    source,
                }),
            }
        }
        RecoverError::Encrypted { path, epoch, .. } => BackupError::WrongKey {
            backup: full.to_path_buf(),
            detail: Box::new(KeyMismatch::WalEncrypted {
                path: original(&path, 0).0,
                epoch,
            }),
        },
        RecoverError::UnknownKeyEpoch { path, epoch, .. } => BackupError::WrongKey {
            backup: full.to_path_buf(),
            detail: Box::new(KeyMismatch::NoWalKey {
                path: original(&path, 0).0,
                epoch,
            }),
        },
        other => BackupError::Replay(Box::new(other)),
    }
}

/// Removes `dir` and everything under it, best effort (cleanup of staging copies and of
/// a failed restore's partial output).
pub(super) fn remove_tree(fs: &dyn FileSystem, dir: &Path) {
    for entry in fs.read_dir(dir).unwrap_or_default() {
        if fs.is_dir(&entry) {
            remove_tree(fs, &entry);
        } else {
            let _ = fs.remove_file(&entry);
        }
    }
    let _ = fs.remove_dir(dir);
}

/// Restores a chain of backups (full first, then incrementals in order) into
/// `target_dir`, which must be empty or absent, up to the chain's end or
/// `options.target_lsn`. Verifies everything first (see [`RestoreOptions::strict`]),
/// then writes a fresh data directory: a `MANIFEST` for the same database id
/// (`DatabaseCreated`, the key epochs, `CheckpointAdded`), a checkpoint at the restored
/// LSN sealed under the newest epoch, and an empty WAL that continues after it. The
/// directory then opens normally with the same keys. On failure nothing is left in
/// `target_dir`.
pub fn restore_from_backup_chain(
    backups: &[PathBuf],
    target_dir: impl AsRef<Path>,
    options: RestoreOptions,
    progress: Progress<'_>,
) -> Result<RestoreReport, Error> {
    Ok(restore(backups, target_dir.as_ref(), options, progress)?)
}

pub(super) fn restore(
    backups: &[PathBuf],
    target: &Path,
    options: RestoreOptions,
    progress: Progress<'_>,
) -> Result<RestoreReport, BackupError> {
    let created = ensure_empty_dir(&*options.config.fs, target, BackupError::NonEmptyTarget)?;
    let staging = target.join(".aedb-restore-staging");
    let result = (|| {
        let (report, rebuilt, database) = rebuild(
            backups,
            &options.config,
            options.strict,
            options.target_lsn,
            &staging,
            progress,
        )?;
        remove_tree(&*options.config.fs, &staging);
        write_data_dir(target, &options.config, database, &rebuilt)?;
        Ok(report)
    })();
    if result.is_err() {
        let fs = &*options.config.fs;
        if created {
            remove_tree(fs, target);
        } else {
            for entry in fs.read_dir(target).unwrap_or_default() {
                if fs.is_dir(&entry) {
                    remove_tree(fs, &entry);
                } else {
                    let _ = fs.remove_file(&entry);
                }
            }
        }
    }
    result
}

pub(super) fn write_data_dir(
    target: &Path,
    config: &AedbConfig,
    database: DatabaseId,
    rebuilt: &Rebuilt,
) -> Result<(), BackupError> {
    let keyring = config.keyring()?;
    let write = |e: aedb_manifest::ManifestError| BackupError::Write(WriteFailure::Manifest(e));
    let mut manifest = Manifest::create(
        &config.fs,
        &target.join(aedb_manifest::MANIFEST_FILE_NAME),
        database,
        keyring.manifest_key(database)?,
    )
    .map_err(write)?;
    let now = aedb_types::clock::unix_millis();
    manifest
        .append(&ManifestRecord::DatabaseCreated {
            database_id: database,
            created_at_unix_ms: now,
        })
        .map_err(write)?;
    let mut epochs = rebuilt.epochs.clone();
    if epochs.is_empty() {
        epochs.push((KeyEpoch::FIRST, keyring.current_data_master()?.to_string()));
    }
    for (epoch, master) in &epochs {
        manifest
            .append(&ManifestRecord::KeyEpochChanged {
                epoch: *epoch,
                master_key_id: master.clone(),
                at_unix_ms: now,
            })
            .map_err(write)?;
    }
    // The full backup's runs, copied as they are; what the WAL replay added (or a
    // version-1 checkpoint's whole state) flushed into one more level-0 run; all of it
    // recorded as the live version, up to the restored LSN.
    let lsn = rebuilt.state.lsn();
    let floor = rebuilt.floor.min(lsn);
    let runs_dir = aedb_checkpoint::checkpoints_dir(target);
    config
        .fs
        .create_dir_all(&runs_dir)
        .map_err(io_err("create", &runs_dir))?;
    let mut added = Vec::new();
    for (path, level, run, sha256) in &rebuilt.runs {
        let src = config
            .fs
            .open(path, FsMode::Existing)
            .map_err(io_err("open", path))?;
        let dst = runs_dir.join(aedb_checkpoint::run_file_name(run.id()));
        copy_prefix(
            &*config.fs,
            &*src,
            path,
            &dst,
            run.file().len(),
            &mut |_| {},
        )?;
        added.push(aedb_actors::runs::record_of(run, *level, *sha256));
    }
    let next_id = added.iter().map(|r| r.file_id + 1).max().unwrap_or(1);
    let memtable = &rebuilt.state.view().memtables()[0];
    let mut next_file_id = next_id;
    if !memtable.is_empty() {
        let (epoch, master) = epochs[epochs.len() - 1].clone();
        let master: MasterKeyId = master.parse()?;
        let key = keyring.checkpoint_key(database, epoch, &master)?;
        let werr =
            |e: aedb_checkpoint::CheckpointError| BackupError::Write(WriteFailure::Checkpoint(e));
        let writer = aedb_checkpoint::RunWriter::create(
            &config.fs,
            &runs_dir,
            aedb_checkpoint::RunFileMeta {
                database,
                file_id: next_id,
                epoch,
            },
            key.as_ref(),
            Box::new(OsNonceSource),
            aedb_checkpoint::RunOptions::default(),
        )
        .map_err(werr)?;
        if let Some(info) = aedb_storage::flush::flush(memtable, writer)
            .map_err(|e| BackupError::Write(WriteFailure::Storage(e)))?
        {
            added.push(aedb_actors::runs::run_record(&info, 0));
        }
        next_file_id = next_id + 1;
    }
    if lsn > Lsn::ZERO {
        let chunks: Vec<&[aedb_manifest::RunRecord]> =
            added.chunks(aedb_manifest::MAX_EDIT_RUNS).collect();
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.iter().enumerate() {
            manifest
                .append(&ManifestRecord::VersionEdit(aedb_manifest::VersionEdit {
                    flushed_lsn: lsn,
                    next_file_id: if i == last { next_file_id } else { 0 },
                    added: chunk.to_vec(),
                    removed: Vec::new(),
                    floor: if i == last { floor } else { Lsn::ZERO },
                }))
                .map_err(write)?;
        }
        if chunks.is_empty() {
            manifest
                .append(&ManifestRecord::VersionEdit(aedb_manifest::VersionEdit {
                    flushed_lsn: lsn,
                    next_file_id,
                    floor,
                    ..Default::default()
                }))
                .map_err(write)?;
        }
    }
    let wal = target.join(aedb_actors::WAL_DIR);
    config
        .fs
        .create_dir_all(&wal)
        .map_err(io_err("create", &wal))?;
    config
        .fs
        .sync_dir(target)
        .map_err(io_err("fsync directory", target))
}

/// Verifies a chain like a restore and returns the state it restores to (up to
/// `target` or the chain's end), without writing a data directory: for parity checks
/// against a backup. Stages the WAL in a temporary directory it removes.
pub fn chain_state(
    backups: &[PathBuf],
    config: &AedbConfig,
    strict: bool,
    target: Option<Lsn>,
    progress: Progress<'_>,
) -> Result<(RestoreReport, State), Error> {
    let staging = std::env::temp_dir().join(format!(
        "aedb-verify-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let result = rebuild(backups, config, strict, target, &staging, progress)
        .map(|(report, rebuilt, _)| (report, rebuilt.state));
    remove_tree(&*config.fs, &staging);
    Ok(result?)
}
