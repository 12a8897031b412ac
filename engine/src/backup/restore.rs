//! Restore: verify a backup chain, stage its WAL, replay it into the full backup's
//! checkpoint through the one recovery walk, and write a fresh data directory that
//! opens normally.

use super::*;

pub(super) struct Rebuilt {
    state: State,
    epochs: Vec<(KeyEpoch, String)>,
}

/// Verifies the chain, stages its WAL in `staging` (created, left for the caller to
/// remove), and replays it into the full backup's checkpoint.
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
    let total: u64 = chain
        .iter()
        .flat_map(|b| b.manifest.files.iter())
        .map(|f| f.len)
        .sum();
    let mut verified = CopyProgress::new(total, progress, 0);
    let mut tick = |n: u64| verified.tick(n);

    // Every file against its authenticated listing; the WAL staged segment by segment.
    let fs = &*config.fs;
    let wal_dir = staging.join("wal");
    fs.create_dir_all(&wal_dir)
        .map_err(io_err("create", &wal_dir))?;
    let mut staged: BTreeMap<String, (PathBuf, u64)> = BTreeMap::new();
    let mut checkpoint_path = None;
    for b in &chain {
        for file in &b.manifest.files {
            let check_hash = strict || file.kind == BackupFileKind::Checkpoint;
            let path = verify_file(fs, b, file, check_hash, &mut tick)?;
            match file.kind {
                BackupFileKind::Checkpoint => checkpoint_path = Some((path, file.clone())),
                // Only captures list the manifest, and a capture is never in a chain
                // (`verify_chain_manifests` refuses it): nothing to stage.
                BackupFileKind::Manifest => {}
                BackupFileKind::WalSegment => {
                    if let Some((earlier, earlier_len)) = staged.get(&file.name) {
                        // A segment copied again (it was active when the parent was
                        // taken) must extend the earlier copy.
                        if !is_prefix(fs, earlier, *earlier_len, &path)? {
                            return Err(BackupError::ChainMismatch {
                                path,
                                detail: ChainBreak::SegmentNotExtended {
                                    earlier: earlier.clone(),
                                },
                            });
                        }
                    }
                    staged.insert(file.name.clone(), (path, file.len));
                }
            }
        }
    }
    for (name, (path, _)) in &staged {
        let dst = wal_dir.join(name);
        let bytes = aedb_fs::read_file(fs, path).map_err(io_err("stage", path))?;
        aedb_fs::write_file(fs, &dst, &bytes).map_err(io_err("stage", path))?;
    }

    // The checkpoint: authenticated (sealed) or digest-checked (plaintext).
    let keyring = config.keyring()?;
    let mut epochs = EpochTable::default();
    let epoch_list = chain[chain.len() - 1].manifest.key_epochs.clone();
    for (epoch, master) in &epoch_list {
        let master: MasterKeyId = master.parse()?;
        epochs.insert(*epoch, master);
    }
    let mut state = match &checkpoint_path {
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
        },
        database,
    ))
}

/// Maps a WAL verification failure on the staged copy back to the backup file.
pub(super) fn wal_error(
    e: RecoverError<FrameReplayError>,
    wal_dir: &Path,
    staged: &BTreeMap<String, (PathBuf, u64)>,
    full: &Path,
) -> BackupError {
    let original = |p: &Path| -> PathBuf {
        p.strip_prefix(wal_dir)
            .ok()
            .and_then(|name| name.to_str())
            .and_then(|name| staged.get(name))
            .map_or_else(|| p.to_path_buf(), |(orig, _)| orig.clone())
    };
    match e {
        RecoverError::Corrupt {
            path,
            offset,
            corruption,
        } => BackupError::TamperedFile {
            path: original(&path),
            detail: Box::new(Tamper::WalCorrupt { offset, corruption }),
        },
        RecoverError::Unseal {
            path,
            offset,
            lsn,
            source,
        } => BackupError::TamperedFile {
            path: original(&path),
            detail: Box::new(Tamper::Unseal {
                offset,
                lsn,
                source,
            }),
        },
        RecoverError::Encrypted { path, epoch, .. } => BackupError::WrongKey {
            backup: full.to_path_buf(),
            detail: Box::new(KeyMismatch::WalEncrypted {
                path: original(&path),
                epoch,
            }),
        },
        RecoverError::UnknownKeyEpoch { path, epoch, .. } => BackupError::WrongKey {
            backup: full.to_path_buf(),
            detail: Box::new(KeyMismatch::NoWalKey {
                path: original(&path),
                epoch,
            }),
        },
        other => BackupError::Replay(Box::new(other)),
    }
}

pub(super) fn is_prefix(
    fs: &dyn FileSystem,
    earlier: &Path,
    len: u64,
    later: &Path,
) -> Result<bool, BackupError> {
    let a = aedb_fs::read_file(fs, earlier).map_err(io_err("read", earlier))?;
    let b = fs
        .open(later, FsMode::Existing)
        .map_err(io_err("open", later))?;
    let mut head = vec![0u8; a.len()];
    if (a.len() as u64) != len || b.read_exact_at(&mut head, 0).is_err() {
        return Ok(false);
    }
    Ok(head == a)
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
    let lsn = rebuilt.state.lsn();
    if lsn > Lsn::ZERO {
        let (epoch, master) = epochs[epochs.len() - 1].clone();
        let master: MasterKeyId = master.parse()?;
        let key = keyring.checkpoint_key(database, epoch, &master)?;
        let werr =
            |e: aedb_checkpoint::CheckpointError| BackupError::Write(WriteFailure::Checkpoint(e));
        let mut writer = CheckpointWriter::create(
            &config.fs,
            target,
            CheckpointMeta::new(database, lsn, epoch),
            key.as_ref(),
            &mut OsNonceSource,
        )
        .map_err(werr)?;
        let payload = rebuilt
            .state
            .to_snapshot_bytes()
            .map_err(|e| BackupError::Write(WriteFailure::Unreadable(e)))?;
        writer.write_all(&payload).map_err(werr)?;
        let info = writer.finish().map_err(werr)?;
        manifest.append(&info.manifest_record()).map_err(write)?;
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
