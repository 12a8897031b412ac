//! Forensic capture: a consistent copy of a data directory's files (the manifest, every
//! live checkpoint, every WAL segment) with an authenticated listing of their SHA-256s,
//! taken from a running instance without stopping commits
//! ([`AedbInstance::capture_as`]) or from a directory no instance has open
//! ([`capture_offline`]).
//!
//! The capture directory has the layout of a data directory (minus `LOCK`), so
//! `aedb verify` and `aedb check invariants` run on it, plus `CAPTURE`: a
//! [`BackupManifest`] of kind [`BackupKind::Capture`] under the backup MAC key (one
//! format, one decoder, one key for backups and captures; layout in `docs/FORMAT.md`).
//! [`verify_capture`] checks the MAC, every listed file's length and hash, and that no
//! file was added.
//!
//! **Consistency of a live capture.** The CheckpointSealer gathers the set on its own
//! thread, so no checkpoint is sealed or retired (and no WAL segment retired) meanwhile:
//! it copies the manifest's bytes (every durable record), opens every checkpoint the copy
//! lists, then has the WAL writer open every segment at a barrier and report the synced
//! LSN. Open handles pin the files: a checkpoint or segment retired while the copy runs
//! stays readable through them. Sealed segments are copied whole, the active one up to
//! the end of its synced frame (as hot backups do). Files are copied as found: a live
//! checkpoint that no longer matches its manifest record is captured, not refused (it is
//! evidence; `aedb verify` on the capture reports it).

use super::*;

/// The file name of a capture's listing inside the capture directory.
pub const CAPTURE_LISTING_FILE: &str = "CAPTURE";

/// What a capture wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureReport {
    /// The capture directory.
    pub dir: PathBuf,
    /// Its authenticated listing (kind [`BackupKind::Capture`]): `first_lsn` is the
    /// newest checkpoint's LSN and `last_lsn` the WAL's synced LSN at the barrier
    /// (both zero for an offline capture whose manifest does not verify).
    pub listing: BackupManifest,
    /// SHA-256 of the `CAPTURE` file.
    pub listing_sha256: [u8; 32],
    /// Bytes copied.
    pub bytes: u64,
}

impl From<aedb_actors::CaptureFailure> for BackupError {
    fn from(e: aedb_actors::CaptureFailure) -> BackupError {
        match e {
            aedb_actors::CaptureFailure::Pipeline(c) => BackupError::Engine(c),
            aedb_actors::CaptureFailure::OpenCheckpoint { path, source } => BackupError::Io {
                op: "open",
                path,
                source,
            },
            other => BackupError::Io {
                op: "capture",
                path: PathBuf::new(),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }
}

/// One file to capture: an open handle, its path, and how many bytes to copy.
struct Source<'a> {
    file: &'a dyn DiskFile,
    path: &'a Path,
    len: u64,
}

/// Copies `src` into the capture `out` as `<kind's dir>/<name>`, returning the listing
/// entry (with the SHA-256 of what was copied).
fn capture_file(
    fs: &dyn FileSystem,
    out: &Path,
    kind: BackupFileKind,
    name: &str,
    src: Source<'_>,
    tick: &mut dyn FnMut(u64),
) -> Result<BackupFile, BackupError> {
    let dst = out.join(kind.dir()).join(name);
    let len = src.len;
    let sha256 = copy_prefix(fs, src.file, src.path, &dst, len, tick)?;
    Ok(BackupFile {
        kind,
        name: name.to_owned(),
        len,
        sha256,
    })
}

/// The LSN a capture's files start from: what the runs (or the newest version-1
/// checkpoint) cover.
fn capture_base(live: &aedb_manifest::LiveState) -> Lsn {
    let checkpoint = live.newest_checkpoint().map_or(Lsn::ZERO, |(l, _)| l);
    checkpoint.max(live.flushed_lsn())
}

/// Creates the capture's `checkpoints/` and `wal/` directories.
fn capture_dirs(fs: &dyn FileSystem, out: &Path) -> Result<(), BackupError> {
    for kind in [BackupFileKind::Checkpoint, BackupFileKind::WalSegment] {
        let d = out.join(kind.dir());
        fs.create_dir_all(&d).map_err(io_err("create", &d))?;
    }
    Ok(())
}

/// Writes the authenticated `CAPTURE` listing (temporary file, rename, directory
/// fsyncs) and returns its SHA-256.
fn write_listing(
    fs: &dyn FileSystem,
    out: &Path,
    listing: &BackupManifest,
    key: &SecretKey,
) -> Result<[u8; 32], BackupError> {
    for kind in [BackupFileKind::Checkpoint, BackupFileKind::WalSegment] {
        sync_dir(fs, &out.join(kind.dir()))?;
    }
    let bytes = listing.encode(key);
    let tmp = out.join(format!("{CAPTURE_LISTING_FILE}.tmp"));
    let path = out.join(CAPTURE_LISTING_FILE);
    aedb_fs::write_file(fs, &tmp, &bytes).map_err(io_err("write", &tmp))?;
    fs.rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    sync_dir(fs, out)?;
    Ok(Sha256::digest(&bytes).into())
}

fn new_listing(
    database_id: DatabaseId,
    master: &MasterKeyId,
    first_lsn: Lsn,
    last_lsn: Lsn,
    live: Option<&aedb_manifest::LiveState>,
    files: Vec<BackupFile>,
) -> BackupManifest {
    let mut capture_id = [0u8; 16];
    rand::fill(&mut capture_id);
    BackupManifest {
        kind: BackupKind::Capture,
        database_id,
        backup_id: capture_id,
        created_at_unix_ms: aedb_types::clock::unix_millis(),
        first_lsn,
        last_lsn: last_lsn.max(first_lsn),
        parent_sha256: None,
        master_key_id: master.to_string(),
        key_epochs: live
            .map(|l| {
                l.key_epochs()
                    .iter()
                    .map(|(e, info)| (*e, info.master_key_id.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        files,
        runs: None,
    }
}

impl AedbInstance {
    /// Takes a forensic capture of this running database into `dir` (created; must be
    /// empty) while commits continue: the manifest, every live checkpoint and every WAL
    /// segment (the active one up to its synced frame), pinned against retirement while
    /// they are copied, with an authenticated `CAPTURE` listing of each file's SHA-256
    /// (see the [module documentation](crate::backup)). `progress` is called with
    /// `(bytes copied, bytes total)`. Open (non-secure) instances only; secure ones use
    /// [`AedbInstance::capture_as`].
    pub fn capture(
        &self,
        dir: impl AsRef<Path>,
        progress: Progress<'_>,
    ) -> Result<CaptureReport, Error> {
        self.capture_by(Who::Anonymous, dir.as_ref(), progress)
    }

    /// [`AedbInstance::capture`] on behalf of `caller` (`GlobalAdmin` only).
    pub fn capture_as(
        &self,
        caller: &aedb_authz::CallerId,
        dir: impl AsRef<Path>,
        progress: Progress<'_>,
    ) -> Result<CaptureReport, Error> {
        self.capture_by(Who::Caller(caller), dir.as_ref(), progress)
    }

    fn capture_by(
        &self,
        who: Who<'_>,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<CaptureReport, Error> {
        // Capturing copies every file of the database: the global backup right, which
        // only a GlobalAdmin holds.
        self.permit(who, [&aedb_authz::Action::Backup], "capture")?;
        Ok(self.capture_unchecked(dir, progress)?)
    }

    fn capture_unchecked(
        &self,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<CaptureReport, BackupError> {
        let fs = &*self.fs;
        ensure_empty_dir(fs, dir, BackupError::NonEmptyBackupDir)?;
        let view = self.pipeline.capture_view()?;
        let synced = view.wal.synced_lsn;
        let active = view.wal.active;
        let mut wal = Vec::new();
        for (seq, path, file) in view.wal.segments {
            let len = if seq == active {
                stable_prefix_len(&*file, &path, synced)?
            } else {
                file.len().map_err(io_err("stat", &path))?
            };
            wal.push((seq, path, file, len));
        }
        let manifest_bytes = view.manifest.bytes;
        let total = manifest_bytes.len() as u64
            + view.checkpoints.iter().map(|c| c.record.len).sum::<u64>()
            + view.runs.iter().map(|r| r.record.len).sum::<u64>()
            + wal.iter().map(|w| w.3).sum::<u64>();
        let rate = self.backup_rate.load(std::sync::atomic::Ordering::Relaxed);
        let mut copied = CopyProgress::new(total, progress, rate);
        let mut tick = |n: u64| copied.tick(n);
        capture_dirs(fs, dir)?;

        let mut files = Vec::new();
        let manifest_path = dir.join(aedb_manifest::MANIFEST_FILE_NAME);
        aedb_fs::write_file(fs, &manifest_path, &manifest_bytes)
            .map_err(io_err("write", &manifest_path))?;
        tick(manifest_bytes.len() as u64);
        files.push(BackupFile {
            kind: BackupFileKind::Manifest,
            name: aedb_manifest::MANIFEST_FILE_NAME.to_owned(),
            len: manifest_bytes.len() as u64,
            sha256: Sha256::digest(&manifest_bytes).into(),
        });
        for c in &view.checkpoints {
            // The recorded length, as found: a file cut short fails the copy's read.
            let len = c.file.len().map_err(io_err("stat", &c.path))?;
            let src = Source {
                file: &*c.file,
                path: &c.path,
                len,
            };
            files.push(capture_file(
                fs,
                dir,
                BackupFileKind::Checkpoint,
                &c.record.file_name,
                src,
                &mut tick,
            )?);
        }
        for r in &view.runs {
            let len = r.file.len().map_err(io_err("stat", &r.path))?;
            let src = Source {
                file: &*r.file,
                path: &r.path,
                len,
            };
            files.push(capture_file(
                fs,
                dir,
                BackupFileKind::Run {
                    level: r.record.level,
                },
                &aedb_checkpoint::run_file_name(r.record.file_id),
                src,
                &mut tick,
            )?);
        }
        for (seq, path, file, len) in wal {
            let name = aedb_wal::segment_file_name(seq);
            let src = Source {
                file: &*file,
                path: &path,
                len,
            };
            files.push(capture_file(
                fs,
                dir,
                BackupFileKind::WalSegment,
                &name,
                src,
                &mut tick,
            )?);
        }
        let live = &view.manifest.live;
        let first = capture_base(live);
        let (key, master) = backup_key_from(&*self.backup_keys, self.database_id(), None)?;
        let listing = new_listing(
            self.database_id(),
            &master,
            first,
            synced,
            Some(live),
            files,
        );
        let listing_sha256 = write_listing(fs, dir, &listing, &key)?;
        Ok(CaptureReport {
            dir: dir.to_path_buf(),
            listing,
            listing_sha256,
            bytes: copied.done,
        })
    }
}

/// Takes a forensic capture of the data directory `data_dir`, which no instance may have
/// open (a shared lock on its `LOCK` is held meanwhile), into `out` (created; must be
/// empty): `MANIFEST`, every file named like a checkpoint under `checkpoints/` and like
/// a segment under `wal/`, whole and as found (nothing is verified or repaired first),
/// with the authenticated `CAPTURE` listing. Keys come from `config` (the listing's MAC
/// key is the backup key of the database id in the manifest header).
pub fn capture_offline(
    data_dir: &Path,
    out: &Path,
    config: &AedbConfig,
    progress: Progress<'_>,
) -> Result<CaptureReport, Error> {
    let fs = &*config.fs;
    let _lock = crate::offline::read_lock(fs, data_dir)?;
    let manifest_path = data_dir.join(aedb_manifest::MANIFEST_FILE_NAME);
    let database_id = aedb_manifest::peek_database_id(fs, &manifest_path).map_err(|source| {
        BackupError::NoDatabaseId {
            path: manifest_path.clone(),
            source: Box::new(source),
        }
    })?;
    // The LSNs and epochs the listing states come from the manifest when it verifies;
    // a damaged one is captured all the same.
    let live = config
        .keyring()
        .ok()
        .and_then(|k| crate::offline::read_verified_manifest(fs, data_dir, &k).ok())
        .map(|m| m.live);
    Ok(capture_offline_locked(
        fs,
        data_dir,
        out,
        config,
        database_id,
        live.as_ref(),
        progress,
    )?)
}

fn capture_offline_locked(
    fs: &dyn FileSystem,
    data_dir: &Path,
    out: &Path,
    config: &AedbConfig,
    database_id: DatabaseId,
    live: Option<&aedb_manifest::LiveState>,
    progress: Progress<'_>,
) -> Result<CaptureReport, BackupError> {
    ensure_empty_dir(fs, out, BackupError::NonEmptyBackupDir)?;
    let mut plan: Vec<(BackupFileKind, String, PathBuf)> = vec![(
        BackupFileKind::Manifest,
        aedb_manifest::MANIFEST_FILE_NAME.to_owned(),
        data_dir.join(aedb_manifest::MANIFEST_FILE_NAME),
    )];
    for kind in [BackupFileKind::Checkpoint, BackupFileKind::WalSegment] {
        let sub = data_dir.join(kind.dir());
        let mut names = match fs.read_dir(&sub) {
            Ok(names) => names,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", &sub)(e)),
        };
        names.sort();
        for entry in names {
            let Some(name) = entry.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if valid_file_name(kind, &name) {
                plan.push((kind, name.clone(), sub.join(&name)));
            } else if let Some(file_id) = aedb_checkpoint::parse_run_file_name(&name)
                && kind == BackupFileKind::Checkpoint
            {
                // A run the manifest lists keeps its level; one it does not (or a
                // damaged manifest) is captured as found, at level 0.
                let level = live
                    .and_then(|l| l.runs().get(&file_id))
                    .map_or(0, |r| r.level);
                plan.push((BackupFileKind::Run { level }, name.clone(), sub.join(&name)));
            }
        }
    }
    let mut opened = Vec::new();
    for (kind, name, path) in plan {
        let file = fs
            .open(&path, FsMode::Existing)
            .map_err(io_err("open", &path))?;
        let len = file.len().map_err(io_err("stat", &path))?;
        opened.push((kind, name, path, file, len));
    }
    let total = opened.iter().map(|o| o.4).sum::<u64>();
    let mut copied = CopyProgress::new(total, progress, 0);
    let mut tick = |n: u64| copied.tick(n);
    capture_dirs(fs, out)?;
    let mut files = Vec::new();
    for (kind, name, path, file, len) in opened {
        let src = Source {
            file: &*file,
            path: &path,
            len,
        };
        files.push(capture_file(fs, out, kind, &name, src, &mut tick)?);
    }
    let provider = config.backup_key_provider()?;
    let (key, master) = backup_key_from(&*provider, database_id, None)?;
    let first = live.map_or(Lsn::ZERO, capture_base);
    let listing = new_listing(database_id, &master, first, first, live, files);
    let listing_sha256 = write_listing(fs, out, &listing, &key)?;
    Ok(CaptureReport {
        dir: out.to_path_buf(),
        listing,
        listing_sha256,
        bytes: copied.done,
    })
}

/// Verifies the capture in `dir`: its `CAPTURE` listing authenticates under the backup
/// key `config` derives ([`BackupError::WrongKey`] for another key,
/// [`BackupError::ChainMismatch`] for a changed listing), every listed file exists with
/// the listed length and SHA-256 ([`BackupError::MissingFile`],
/// [`BackupError::TruncatedFile`], [`BackupError::TamperedFile`]), and no file was
/// added to `checkpoints/` or `wal/` ([`Tamper::Unlisted`]). Returns the listing.
pub fn verify_capture(dir: &Path, config: &AedbConfig) -> Result<BackupManifest, Error> {
    Ok(verify_capture_cfg(dir, config)?)
}

fn verify_capture_cfg(dir: &Path, config: &AedbConfig) -> Result<BackupManifest, BackupError> {
    let fs = &*config.fs;
    let provider = config.backup_key_provider()?;
    let listing = read_listing_with(fs, dir, CAPTURE_LISTING_FILE, &*provider)?;
    if listing.manifest.kind != BackupKind::Capture {
        return Err(BackupError::OutOfOrder {
            backup: dir.to_path_buf(),
            reason: ChainOrder::NotACapture,
        });
    }
    for file in &listing.manifest.files {
        verify_file(fs, &listing, file, true, &mut |_| {})?;
    }
    for kind in [BackupFileKind::Checkpoint, BackupFileKind::WalSegment] {
        let sub = dir.join(kind.dir());
        let names = match fs.read_dir(&sub) {
            Ok(names) => names,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", &sub)(e)),
        };
        for entry in names {
            let name = entry
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let listed = listing
                .manifest
                .files
                .iter()
                .any(|f| f.kind.dir() == kind.dir() && f.name == name);
            if !listed {
                return Err(BackupError::TamperedFile {
                    path: sub.join(&name),
                    detail: Box::new(Tamper::Unlisted),
                });
            }
        }
    }
    Ok(listing.manifest)
}
