//! Taking hot backups: the full and incremental backup calls of [`AedbInstance`], the WAL
//! copy plan (sealed segments whole, the active one up to its synced frame) and the
//! copies themselves.

use super::*;

pub(super) fn ensure_empty_dir(
    fs: &dyn FileSystem,
    dir: &Path,
    err: impl Fn(PathBuf) -> BackupError,
) -> Result<bool, BackupError> {
    match fs.read_dir(dir) {
        Ok(entries) => {
            if !entries.is_empty() {
                return Err(err(dir.to_path_buf()));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs.create_dir_all(dir).map_err(io_err("create", dir))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(err(dir.to_path_buf())),
        Err(e) => Err(io_err("read", dir)(e)),
    }
}

pub(super) fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> Result<(), BackupError> {
    fs.sync_dir(dir).map_err(io_err("fsync directory", dir))
}

/// Copies `len` bytes of `src` (from its start) to `dst`, fsyncs it, and returns the
/// SHA-256 of what was copied.
/// How much a backup copy writes between `fdatasync`s.
pub(super) const SYNC_STEP: u64 = 8 << 20;

pub(super) fn copy_prefix(
    fs: &dyn FileSystem,
    src: &dyn DiskFile,
    src_path: &Path,
    dst: &Path,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<[u8; 32], BackupError> {
    let out = fs
        .open(dst, FsMode::Truncate)
        .map_err(io_err("create", dst))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    let mut at = 0u64;
    let mut unsynced = 0u64;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        src.read_exact_at(&mut buf[..n], at)
            .map_err(io_err("read", src_path))?;
        hasher.update(&buf[..n]);
        out.write_all_at(&buf[..n], at)
            .map_err(io_err("write", dst))?;
        at += n as u64;
        left -= n as u64;
        unsynced += n as u64;
        // Write back in steps: one fsync of a huge dirty file stalls every other
        // fsync on the disk (the commit path's) for its whole duration.
        if unsynced >= SYNC_STEP {
            out.sync_data().map_err(io_err("fsync", dst))?;
            unsynced = 0;
        }
        progress(n as u64);
    }
    out.sync_all().map_err(io_err("fsync", dst))?;
    Ok(hasher.finalize().into())
}

/// The byte length of the active segment's stable prefix: the end of the frame that
/// carries `synced` (or of the last frame at or below it). Frames after it may still be
/// being written and are never copied.
pub(super) fn stable_prefix_len(
    file: &dyn DiskFile,
    path: &Path,
    synced: Lsn,
) -> Result<u64, BackupError> {
    let len = file.len().map_err(io_err("stat", path))?;
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut bytes, 0)
        .map_err(io_err("read", path))?;
    let header = SegmentHeader::decode(&bytes).map_err(|source| BackupError::SegmentHeader {
        path: path.to_path_buf(),
        source,
    })?;
    let mut at = header.header_len() as u64;
    let mut end = at;
    // The scan stops at the first frame past `synced` (the callback's error) or at the
    // first bytes that are not a complete frame; either way `end` is stable.
    let _ = aedb_wal::scan_segment(&bytes, true, |frame| {
        if frame.lsn > synced {
            return Err(());
        }
        at += frame.encoded_len as u64;
        end = at;
        Ok(())
    });
    Ok(end)
}

pub(super) struct PlannedWal {
    seq: aedb_wal::SegmentSeq,
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    /// Bytes to copy.
    len: u64,
}

pub(super) fn segment_base(file: &dyn DiskFile, path: &Path) -> Result<Lsn, BackupError> {
    let mut buf = [0u8; 64];
    file.read_exact_at(&mut buf, 0)
        .map_err(io_err("read", path))?;
    SegmentHeader::decode(&buf)
        .map(|h| h.base_lsn)
        .map_err(|source| BackupError::SegmentHeader {
            path: path.to_path_buf(),
            source,
        })
}

/// Chooses the segments to copy from `view`: those from `from_seq` on (incremental), or
/// those holding any LSN after `after` (full), and sizes each.
pub(super) fn plan_wal(
    view: WalBackupView,
    after: Lsn,
    from_seq: Option<aedb_wal::SegmentSeq>,
) -> Result<Vec<PlannedWal>, BackupError> {
    let active = view.active;
    let synced = view.synced_lsn;
    let mut segs: Vec<(aedb_wal::SegmentSeq, PathBuf, Arc<dyn DiskFile>, Lsn)> = Vec::new();
    for (seq, path, file) in view.segments {
        let base = segment_base(&*file, &path)?;
        segs.push((seq, path, file, base));
    }
    let start = match from_seq {
        Some(first) => {
            let Some(i) = segs.iter().position(|s| s.0 == first) else {
                return Err(BackupError::WalRetired {
                    since: after,
                    detail: RetiredWal::ParentSegment(first),
                });
            };
            i
        }
        None => {
            // Segment i holds LSNs base_i ..= base_{i+1} - 1; the first needed one holds
            // after + 1 (or is the last).
            let i = (0..segs.len())
                .find(|&i| i + 1 == segs.len() || segs[i + 1].3 > after.next())
                .unwrap_or(0);
            if segs.get(i).is_none_or(|s| s.3 > after.next()) {
                return Err(BackupError::WalRetired {
                    since: after,
                    detail: RetiredWal::AfterCheckpoint,
                });
            }
            i
        }
    };
    let mut planned = Vec::new();
    for (seq, path, file, _) in segs.into_iter().skip(start) {
        let len = if seq == active {
            stable_prefix_len(&*file, &path, synced)?
        } else {
            file.len().map_err(io_err("stat", &path))?
        };
        planned.push(PlannedWal {
            seq,
            path,
            file,
            len,
        });
        if seq == active {
            break;
        }
    }
    Ok(planned)
}

impl AedbInstance {
    /// Takes a hot **full** backup into `dir` (created; must be empty): copies the newest
    /// sealed checkpoint (taking one first only if there is none) and the WAL after it
    /// while commits continue.
    /// The backup restores to its `last_lsn`: every commit durable when the WAL barrier
    /// ran. `progress` is called with `(bytes copied, bytes total)`. Records
    /// `BackupTaken` in the database's manifest.
    pub fn backup_full(
        &self,
        dir: impl AsRef<Path>,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.backup_full_by(Who::Anonymous, dir.as_ref(), progress)
    }

    /// [`AedbInstance::backup_full`] on behalf of `caller` (`GlobalAdmin`).
    pub fn backup_full_as(
        &self,
        caller: &aedb_authz::CallerId,
        dir: impl AsRef<Path>,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.backup_full_by(Who::Caller(caller), dir.as_ref(), progress)
    }

    /// [`AedbInstance::backup_incremental`] on behalf of `caller` (`GlobalAdmin`).
    pub fn backup_incremental_as(
        &self,
        caller: &aedb_authz::CallerId,
        dir: impl AsRef<Path>,
        parent: impl AsRef<Path>,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.backup_incremental_by(Who::Caller(caller), dir.as_ref(), parent.as_ref(), progress)
    }

    /// The one full-backup path of the anonymous and `*_as` forms.
    fn backup_full_by(
        &self,
        who: Who<'_>,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.permit(who, [&aedb_authz::Action::Backup], "backup")?;
        Ok(self.backup_ctx().full(dir, progress)?)
    }

    /// The one incremental-backup path of the anonymous and `*_as` forms.
    fn backup_incremental_by(
        &self,
        who: Who<'_>,
        dir: &Path,
        parent: &Path,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.permit(who, [&aedb_authz::Action::Backup], "backup")?;
        Ok(self.backup_ctx().incremental(dir, parent, progress)?)
    }

    /// Takes a hot **incremental** backup into `dir` (created; must be empty): the WAL
    /// since `parent`'s end (a full or incremental backup of this database, verified
    /// first). Fails with [`BackupError::WalRetired`] when checkpoints have retired
    /// that WAL since: take a full backup then.
    pub fn backup_incremental(
        &self,
        dir: impl AsRef<Path>,
        parent: impl AsRef<Path>,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.backup_incremental_by(Who::Anonymous, dir.as_ref(), parent.as_ref(), progress)
    }
}

/// What taking a hot backup needs of an instance, cloneable so an owner of its own (the
/// backup scheduler) can take backups off the caller's thread: the data directory, the
/// pipeline's [`aedb_actors::BackupPort`], the backup key provider and the copy rate.
#[derive(Clone)]
pub(crate) struct BackupCtx {
    pub(crate) fs: aedb_fs::SharedFs,
    pub(crate) dir: PathBuf,
    pub(crate) port: aedb_actors::BackupPort,
    pub(crate) keys: Arc<dyn KeyProvider>,
    /// Copy rate limit in bytes per second (0: unlimited), shared with the instance.
    pub(crate) rate: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) database_id: DatabaseId,
}

impl AedbInstance {
    /// The backup context of this instance.
    pub(crate) fn backup_ctx(&self) -> BackupCtx {
        BackupCtx {
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            port: self.pipeline.backup_port(),
            keys: self.backup_keys.clone(),
            rate: self.backup_rate.clone(),
            database_id: self.database_id(),
        }
    }
}

impl BackupCtx {
    pub(crate) fn full(
        &self,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<BackupReport, BackupError> {
        ensure_empty_dir(&*self.fs, dir, BackupError::NonEmptyBackupDir)?;
        // The live run files (immutable: copied as they are, no state is encoded) plus
        // the WAL after the LSN they cover is a full backup. A database with no run yet
        // (or still on a version-1 full checkpoint) is flushed into one first.
        if self.port.manifest_live_state()?.runs().is_empty() {
            self.port.checkpoint_now()?;
        }
        // A compaction may delete a listed run between listing and opening it, and a
        // flush may retire the WAL after the listed LSN: list again then.
        let mut attempt = 0;
        let (live, runs, wal, synced) = loop {
            attempt += 1;
            let live = self.port.manifest_live_state()?;
            let mut runs = Vec::new();
            let mut gone = false;
            for (&file_id, rec) in live.runs() {
                let path = aedb_checkpoint::run_path(&self.dir, file_id);
                match self.fs.open(&path, FsMode::Existing) {
                    Ok(file) => runs.push((rec.clone(), path, file)),
                    Err(e) if attempt < 4 && e.kind() == std::io::ErrorKind::NotFound => {
                        gone = true;
                        break;
                    }
                    Err(e) => return Err(io_err("open", &path)(e)),
                }
            }
            if gone {
                continue;
            }
            let view = self.port.wal_backup_view()?;
            let synced = view.synced_lsn;
            match plan_wal(view, live.flushed_lsn(), None) {
                Ok(wal) => break (live, runs, wal, synced),
                Err(BackupError::WalRetired { .. }) if attempt < 4 => continue,
                Err(e) => return Err(e),
            }
        };
        let base = live.flushed_lsn();
        let total =
            runs.iter().map(|r| r.0.len).sum::<u64>() + wal.iter().map(|w| w.len).sum::<u64>();
        let rate = self.rate.load(std::sync::atomic::Ordering::Relaxed);
        let mut copied = CopyProgress::new(total, progress, rate);
        let mut tick = |n: u64| copied.tick(n);
        let mut files = Vec::new();
        if !runs.is_empty() {
            let out_dir = dir.join(BackupFileKind::Run { level: 0 }.dir());
            self.fs
                .create_dir_all(&out_dir)
                .map_err(io_err("create", &out_dir))?;
            for (rec, path, file) in runs {
                let name = aedb_checkpoint::run_file_name(rec.file_id);
                let dst = out_dir.join(&name);
                let sha = copy_prefix(&*self.fs, &*file, &path, &dst, rec.len, &mut tick)?;
                if sha != rec.sha256 {
                    return Err(BackupError::TamperedFile {
                        path,
                        detail: Box::new(Tamper::LiveCheckpoint),
                    });
                }
                files.push(BackupFile {
                    kind: BackupFileKind::Run { level: rec.level },
                    name,
                    len: rec.len,
                    sha256: sha,
                });
            }
            sync_dir(&*self.fs, &out_dir)?;
        }
        files.extend(copy_wal(&*self.fs, dir, wal, &mut tick)?);
        self.finish_backup(
            dir,
            BackupKind::Full,
            base,
            synced.max(base),
            None,
            &live,
            files,
            copied.done,
        )
    }

    pub(crate) fn incremental(
        &self,
        dir: &Path,
        parent: &Path,
        progress: Progress<'_>,
    ) -> Result<BackupReport, BackupError> {
        let parent = read_backup_with(&*self.fs, parent, &*self.keys)?;
        if parent.manifest.database_id != self.database_id {
            return Err(BackupError::ForeignBackup {
                backup: parent.dir.clone(),
                expected: self.database_id,
                found: parent.manifest.database_id,
            });
        }
        let tail = parent
            .manifest
            .wal_files()
            .last()
            .and_then(|f| aedb_wal::dir::parse_segment_file_name(&f.name))
            .ok_or_else(|| BackupError::ChainMismatch {
                path: parent.dir.clone(),
                detail: ChainBreak::ParentWithoutWal,
            })?;
        ensure_empty_dir(&*self.fs, dir, BackupError::NonEmptyBackupDir)?;
        let live = self.port.manifest_live_state()?;
        let view = self.port.wal_backup_view()?;
        let synced = view.synced_lsn;
        let since = parent.manifest.last_lsn;
        let wal = plan_wal(view, since, Some(tail))?;
        let total = wal.iter().map(|w| w.len).sum::<u64>();
        let rate = self.rate.load(std::sync::atomic::Ordering::Relaxed);
        let mut copied = CopyProgress::new(total, progress, rate);
        let mut tick = |n: u64| copied.tick(n);
        let files = copy_wal(&*self.fs, dir, wal, &mut tick)?;
        self.finish_backup(
            dir,
            BackupKind::Incremental,
            since,
            synced.max(since),
            Some(parent.manifest_sha256),
            &live,
            files,
            copied.done,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_backup(
        &self,
        dir: &Path,
        kind: BackupKind,
        first_lsn: Lsn,
        last_lsn: Lsn,
        parent_sha256: Option<[u8; 32]>,
        live: &aedb_manifest::LiveState,
        files: Vec<BackupFile>,
        bytes: u64,
    ) -> Result<BackupReport, BackupError> {
        let database_id = self.database_id;
        let (key, master) = backup_key_from(&*self.keys, database_id, None)?;
        let mut backup_id = [0u8; 16];
        rand::fill(&mut backup_id);
        let manifest = BackupManifest {
            kind,
            database_id,
            backup_id,
            created_at_unix_ms: aedb_types::clock::unix_millis(),
            first_lsn,
            last_lsn,
            parent_sha256,
            master_key_id: master.to_string(),
            key_epochs: live
                .key_epochs()
                .iter()
                .map(|(e, info)| (*e, info.master_key_id.clone()))
                .collect(),
            files,
        };
        let bytes_out = manifest.encode(&key);
        let tmp = dir.join(format!("{BACKUP_MANIFEST_FILE}.tmp"));
        let path = dir.join(BACKUP_MANIFEST_FILE);
        aedb_fs::write_file(&*self.fs, &tmp, &bytes_out).map_err(io_err("write", &tmp))?;
        self.fs
            .rename(&tmp, &path)
            .map_err(io_err("rename", &tmp))?;
        sync_dir(&*self.fs, dir)?;
        let manifest_sha256: [u8; 32] = Sha256::digest(&bytes_out).into();
        // The id's prefix says the kind, so backup age by kind survives a restart.
        let prefix = match kind {
            BackupKind::Full => aedb_manifest::FULL_BACKUP_ID_PREFIX,
            BackupKind::Incremental => aedb_manifest::INCREMENTAL_BACKUP_ID_PREFIX,
            // Captures are not backups and are not recorded through here.
            BackupKind::Capture => "capture-",
        };
        self.port
            .record_manifest(vec![ManifestRecord::BackupTaken {
                backup_id: format!("{prefix}{}", manifest.backup_id_hex()),
                first_lsn,
                last_lsn,
                manifest_sha256,
                at_unix_ms: manifest.created_at_unix_ms,
            }])?;
        if kind != BackupKind::Capture {
            self.port
                .engine_metrics()
                .backups
                .record(kind == BackupKind::Full, manifest.created_at_unix_ms);
        }
        Ok(BackupReport {
            dir: dir.to_path_buf(),
            manifest,
            manifest_sha256,
            bytes,
        })
    }
}

pub(super) fn copy_wal(
    fs: &dyn FileSystem,
    dir: &Path,
    wal: Vec<PlannedWal>,
    tick: &mut dyn FnMut(u64),
) -> Result<Vec<BackupFile>, BackupError> {
    let out_dir = dir.join(BackupFileKind::WalSegment.dir());
    fs.create_dir_all(&out_dir)
        .map_err(io_err("create", &out_dir))?;
    let mut files = Vec::new();
    for w in wal {
        let name = aedb_wal::segment_file_name(w.seq);
        let dst = out_dir.join(&name);
        let sha = copy_prefix(fs, &*w.file, &w.path, &dst, w.len, tick)?;
        files.push(BackupFile {
            kind: BackupFileKind::WalSegment,
            name,
            len: w.len,
            sha256: sha,
        });
    }
    sync_dir(fs, &out_dir)?;
    Ok(files)
}
