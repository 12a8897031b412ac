//! Reading backups back: authenticating one backup's manifest, checking that a list of
//! backups forms one chain (a full backup first, each parent link the SHA-256 of the
//! previous manifest) and verifying every listed file.

use super::*;

/// A backup manifest read from disk and authenticated.
#[derive(Clone, Debug)]
pub struct VerifiedBackup {
    /// The backup directory.
    pub dir: PathBuf,
    /// The authenticated content.
    pub manifest: BackupManifest,
    /// SHA-256 of the whole `BACKUP` file.
    pub manifest_sha256: [u8; 32],
}

/// Reads `<dir>/BACKUP` and authenticates it with the backup key `config` derives:
/// [`BackupError::WrongKey`] when the key differs, [`BackupError::ChainMismatch`] when
/// the key is right but the content was changed.
pub fn read_backup(dir: &Path, config: &AedbConfig) -> Result<VerifiedBackup, Error> {
    Ok(read_backup_cfg(dir, config)?)
}

pub(super) fn read_backup_cfg(
    dir: &Path,
    config: &AedbConfig,
) -> Result<VerifiedBackup, BackupError> {
    read_backup_with(&*config.fs, dir, &*config.backup_key_provider()?)
}

pub(super) fn read_backup_with(
    fs: &dyn FileSystem,
    dir: &Path,
    provider: &dyn KeyProvider,
) -> Result<VerifiedBackup, BackupError> {
    read_listing_with(fs, dir, BACKUP_MANIFEST_FILE, provider)
}

/// Reads `<dir>/<file>` (a `BACKUP` or a capture's `CAPTURE`) and authenticates it.
pub(super) fn read_listing_with(
    fs: &dyn FileSystem,
    dir: &Path,
    file: &str,
    provider: &dyn KeyProvider,
) -> Result<VerifiedBackup, BackupError> {
    let path = dir.join(file);
    let bytes = match aedb_fs::read_file(fs, &path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::MissingFile(path));
        }
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let decoded =
        BackupManifest::decode_unverified(&bytes).map_err(|source| BackupError::Manifest {
            path: path.clone(),
            source,
        })?;
    let master: MasterKeyId =
        decoded
            .manifest
            .master_key_id
            .parse()
            .map_err(|_| BackupError::Manifest {
                path: path.clone(),
                source: BackupManifestError::new(
                    "backup manifest",
                    0,
                    aedb_types::DecodeErrorKind::Invalid {
                        what: "master key id (does not parse)",
                    },
                ),
            })?;
    let key = match backup_key_from(provider, decoded.manifest.database_id, Some(&master)) {
        Ok((key, _)) => key,
        Err(e) => {
            // Name the key epochs the missing master seals (a chain spanning a rotation
            // restored without the old master version).
            let epochs: Vec<KeyEpoch> = decoded
                .manifest
                .key_epochs
                .iter()
                .filter(|(_, m)| *m == master.to_string())
                .map(|(epoch, _)| *epoch)
                .collect();
            let detail = if epochs.is_empty() {
                KeyMismatch::Derive { master, source: e }
            } else {
                KeyMismatch::EpochMasterMissing {
                    epochs,
                    master,
                    source: e,
                }
            };
            return Err(BackupError::WrongKey {
                backup: dir.to_path_buf(),
                detail: Box::new(detail),
            });
        }
    };
    if !decoded.key_matches(&key) {
        return Err(BackupError::WrongKey {
            backup: dir.to_path_buf(),
            detail: Box::new(KeyMismatch::ManifestKey { master }),
        });
    }
    if !decoded.mac_verifies(&bytes, &key) {
        return Err(BackupError::ChainMismatch {
            path,
            detail: ChainBreak::ManifestMac,
        });
    }
    Ok(VerifiedBackup {
        dir: dir.to_path_buf(),
        manifest: decoded.manifest,
        manifest_sha256: Sha256::digest(&bytes).into(),
    })
}
/// Reads and authenticates every backup of `backups` and checks that they form one
/// chain in order: a full backup first, each incremental's parent link equal to the
/// SHA-256 of the previous manifest, contiguous LSN ranges, one database.
pub fn verify_chain_manifests(
    backups: &[PathBuf],
    config: &AedbConfig,
) -> Result<Vec<VerifiedBackup>, Error> {
    Ok(chain_manifests(backups, config)?)
}

pub(super) fn chain_manifests(
    backups: &[PathBuf],
    config: &AedbConfig,
) -> Result<Vec<VerifiedBackup>, BackupError> {
    if backups.is_empty() {
        return Err(BackupError::EmptyChain);
    }
    let read: Vec<VerifiedBackup> = backups
        .iter()
        .map(|b| read_backup_cfg(b, config))
        .collect::<Result<_, _>>()?;
    let database = read[0].manifest.database_id;
    for b in &read {
        if b.manifest.database_id != database {
            return Err(BackupError::ForeignBackup {
                backup: b.dir.clone(),
                expected: database,
                found: b.manifest.database_id,
            });
        }
    }
    if read[0].manifest.kind != BackupKind::Full {
        let reason = match read
            .iter()
            .position(|b| b.manifest.kind == BackupKind::Full)
        {
            Some(i) => ChainOrder::FullNotFirst(i + 1),
            None => ChainOrder::NoFull,
        };
        return Err(BackupError::OutOfOrder {
            backup: read[0].dir.clone(),
            reason,
        });
    }
    for i in 1..read.len() {
        let (prev, cur) = (&read[i - 1], &read[i]);
        if cur.manifest.kind == BackupKind::Full {
            return Err(BackupError::OutOfOrder {
                backup: cur.dir.clone(),
                reason: ChainOrder::FullAfterStart,
            });
        }
        let parent = cur.manifest.parent_sha256.unwrap_or([0; 32]);
        if parent != prev.manifest_sha256 {
            if let Some(j) = read.iter().position(|b| b.manifest_sha256 == parent) {
                return Err(BackupError::OutOfOrder {
                    backup: cur.dir.clone(),
                    reason: ChainOrder::ParentElsewhere(j + 1),
                });
            }
            return Err(BackupError::MissingIncremental {
                backup: cur.dir.clone(),
                parent,
            });
        }
        if cur.manifest.first_lsn != prev.manifest.last_lsn {
            return Err(BackupError::ChainMismatch {
                path: cur.dir.join(BACKUP_MANIFEST_FILE),
                detail: ChainBreak::LsnGap {
                    first: cur.manifest.first_lsn,
                    parent_last: prev.manifest.last_lsn,
                },
            });
        }
    }
    Ok(read)
}

/// Checks one listed file against the authenticated listing; returns its path.
pub(super) fn verify_file(
    fs: &dyn FileSystem,
    backup: &VerifiedBackup,
    file: &BackupFile,
    check_hash: bool,
    tick: &mut dyn FnMut(u64),
) -> Result<PathBuf, BackupError> {
    let path = backup.dir.join(file.kind.dir()).join(&file.name);
    let f = match fs.open(&path, FsMode::Existing) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::MissingFile(path));
        }
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let len = f.len().map_err(io_err("stat", &path))?;
    if len < file.len {
        return Err(BackupError::TruncatedFile {
            path,
            expected: file.len,
            found: len,
        });
    }
    if len > file.len {
        return Err(BackupError::TamperedFile {
            path,
            detail: Box::new(Tamper::Longer {
                len,
                listed: file.len,
            }),
        });
    }
    if check_hash {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < len {
            let n = usize::try_from((len - at).min(buf.len() as u64)).unwrap_or(buf.len());
            f.read_exact_at(&mut buf[..n], at)
                .map_err(io_err("read", &path))?;
            hasher.update(&buf[..n]);
            at += n as u64;
            tick(n as u64);
        }
        let sha: [u8; 32] = hasher.finalize().into();
        if sha != file.sha256 {
            return Err(BackupError::TamperedFile {
                path,
                detail: Box::new(Tamper::Hash),
            });
        }
    } else {
        tick(len);
    }
    Ok(path)
}

/// Verifies a chain of backups without restoring it: manifests, links, every file, the
/// checkpoint and the WAL (strictly), as a restore would. Returns what a restore to
/// the chain's end would produce. Writes only to a temporary staging directory.
pub fn verify_backup_chain(
    backups: &[PathBuf],
    config: &AedbConfig,
    progress: Progress<'_>,
) -> Result<RestoreReport, Error> {
    chain_state(backups, config, true, None, progress).map(|(report, _)| report)
}
