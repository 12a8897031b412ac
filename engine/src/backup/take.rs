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

/// How much a backup copy writes between `fdatasync`s.
pub(super) const SYNC_STEP: u64 = 8 << 20;

/// Copies `len` bytes of `src` (from its start) to `dst`, fsyncs it, and returns the
/// SHA-256 of what was copied.
pub(super) fn copy_prefix(
    fs: &dyn FileSystem,
    src: &dyn DiskFile,
    src_path: &Path,
    dst: &Path,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<[u8; 32], BackupError> {
    copy_range(fs, src, src_path, dst, 0, len, progress)
}

/// Copies `len` bytes of `src` from offset `from` to the new file `dst` (from its
/// start), fsyncs it, and returns the SHA-256 of what was copied.
pub(super) fn copy_range(
    fs: &dyn FileSystem,
    src: &dyn DiskFile,
    src_path: &Path,
    dst: &Path,
    from: u64,
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
        src.read_exact_at(&mut buf[..n], from + at)
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
    /// Takes a hot **full** backup into `dir` (created; must be empty) while commits
    /// continue: the live run files (flushing the memtable into one first only if there
    /// is none), hard-linked where the file system allows (same device; see
    /// [`AedbConfig::backup_hard_links`] and [`BackupReport::link_fallback`]) or copied,
    /// and the WAL after the LSN they hold, copied.
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

    /// Takes a hot **incremental** backup into `dir` (created; must be empty) on top of
    /// `parent` (a full or incremental backup of this database, authenticated first):
    /// the run files the database wrote since the parent's chain (hard-linked where the
    /// file system allows, see [`AedbConfig::backup_hard_links`]), a listing of the live
    /// runs it inherits from that chain, and the WAL written since the parent's end
    /// (only the new bytes of the segment the parent ended in). When flushes have
    /// retired that WAL meanwhile, the runs carry what it held and the backup holds
    /// the WAL after them instead; the LSNs in between then cannot be restored exactly
    /// ([`BackupError::TargetUnreachable`]). Its cost grows with the change since the
    /// parent, not with the data. [`BackupError::WalRetired`] remains only for the
    /// unlikely case that flushes outrun four attempts at listing the live version.
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
    /// Whether run files may be hard-linked rather than copied
    /// ([`AedbConfig::backup_hard_links`]).
    pub(crate) hard_links: bool,
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
            hard_links: self.backup_hard_links,
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
        // The live run files (immutable: linked or copied as they are, no state is
        // encoded) plus the WAL after the LSN they cover is a full backup. A database
        // with no run yet (or still on a version-1 full checkpoint) is flushed into one
        // first.
        if self.port.manifest_live_state()?.runs().is_empty() {
            self.port.checkpoint_now()?;
        }
        let (live, runs, plan) = self.list_version(
            |live, view| {
                plan_wal(view, live.flushed_lsn(), None).map(|wal| WalPlan {
                    pieces: wal.into_iter().map(|w| (w, 0)).collect(),
                    from_parent: true,
                })
            },
            &BTreeMap::new(),
        )?;
        let base = live.flushed_lsn();
        let synced = plan.synced;
        let mut files = Vec::new();
        let rate = self.rate.load(std::sync::atomic::Ordering::Relaxed);
        let mut copied = CopyProgress::new(plan.total(&runs), progress, rate);
        let placed = self.place_runs(dir, runs, &mut copied)?;
        files.extend(placed.files.iter().cloned());
        files.extend(copy_wal(&*self.fs, dir, plan.wal.pieces, &mut |n| {
            copied.tick(n)
        })?);
        self.finish_backup(
            dir,
            BackupKind::Full,
            base,
            synced.max(base),
            None,
            &live,
            (files, None),
            copied.done,
            placed,
        )
    }

    /// Lists the live version (its runs, opened so a compaction cannot take them away
    /// mid-copy) and plans the WAL after it with `plan`, listing again when a compaction
    /// deleted a listed run before it was opened or a flush retired the WAL the plan
    /// needs. Runs `held` (by file id, with their SHA-256) are not opened: the backup's
    /// chain holds them already.
    #[allow(clippy::type_complexity)]
    fn list_version(
        &self,
        mut plan: impl FnMut(&aedb_manifest::LiveState, WalBackupView) -> Result<WalPlan, BackupError>,
        held: &BTreeMap<u64, [u8; 32]>,
    ) -> Result<(aedb_manifest::LiveState, Vec<OpenedRun>, PlannedVersion), BackupError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let live = self.port.manifest_live_state()?;
            let mut runs = Vec::new();
            let mut gone = false;
            for (&file_id, rec) in live.runs() {
                if held.get(&file_id) == Some(&rec.sha256) {
                    continue;
                }
                let path = aedb_checkpoint::run_path(&self.dir, file_id);
                match self.fs.open(&path, FsMode::Existing) {
                    Ok(file) => runs.push(OpenedRun {
                        rec: rec.clone(),
                        path,
                        file,
                    }),
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
            match plan(&live, view) {
                Ok(wal) => return Ok((live, runs, PlannedVersion { wal, synced })),
                Err(BackupError::WalRetired { .. }) if attempt < 4 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Places `runs` under `<dir>/checkpoints/`: hard links where the file system
    /// allows (and the configuration does not forbid them), copies otherwise.
    fn place_runs(
        &self,
        dir: &Path,
        runs: Vec<OpenedRun>,
        copied: &mut CopyProgress<'_>,
    ) -> Result<PlacedRuns, BackupError> {
        let mut placed = PlacedRuns {
            try_links: self.hard_links,
            ..PlacedRuns::default()
        };
        if runs.is_empty() {
            return Ok(placed);
        }
        let out_dir = dir.join(BackupFileKind::Run { level: 0 }.dir());
        self.fs
            .create_dir_all(&out_dir)
            .map_err(io_err("create", &out_dir))?;
        for run in runs {
            let file = placed.place(&*self.fs, &run, &out_dir, copied)?;
            placed.files.push(file);
        }
        sync_dir(&*self.fs, &out_dir)?;
        Ok(placed)
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
        ensure_empty_dir(&*self.fs, dir, BackupError::NonEmptyBackupDir)?;
        // The runs the parent's chain holds: the parent's run set. (A WAL-only
        // format-1 incremental parent states none: every live run is stored again.)
        let held = held_runs(&parent.manifest);
        let since = parent.manifest.last_lsn;
        let tail = parent_wal_end(&*self.fs, &parent);
        if self.port.manifest_live_state()?.runs().is_empty() {
            self.port.checkpoint_now()?;
        }
        let (live, runs, plan) = self.list_version(
            |live, view| plan_incremental_wal(view, tail.as_ref(), since, live.flushed_lsn()),
            &held,
        )?;
        let base = live.flushed_lsn();
        let synced = plan.synced;
        let inherited: Vec<InheritedRun> = live
            .runs()
            .iter()
            .filter(|(id, rec)| held.get(id) == Some(&rec.sha256))
            .map(|(&file_id, rec)| InheritedRun {
                file_id,
                level: rec.level,
                len: rec.len,
                sha256: rec.sha256,
            })
            .collect();
        let run_set = BackupRunSet {
            base_lsn: base,
            wal_from_parent: plan.wal.from_parent,
            inherited,
        };
        let rate = self.rate.load(std::sync::atomic::Ordering::Relaxed);
        let mut copied = CopyProgress::new(plan.total(&runs), progress, rate);
        let placed = self.place_runs(dir, runs, &mut copied)?;
        let mut files = placed.files.clone();
        files.extend(copy_wal(&*self.fs, dir, plan.wal.pieces, &mut |n| {
            copied.tick(n)
        })?);
        self.finish_backup(
            dir,
            BackupKind::Incremental,
            since,
            synced.max(since).max(base),
            Some(parent.manifest_sha256),
            &live,
            (files, Some(run_set)),
            copied.done,
            placed,
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
        (files, runs): (Vec<BackupFile>, Option<BackupRunSet>),
        bytes: u64,
        placed: PlacedRuns,
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
            runs,
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
            linked_files: placed.linked_files,
            linked_bytes: placed.linked_bytes,
            copied_run_files: placed.copied_files,
            link_fallback: placed.fallback,
        })
    }
}

/// Copies the planned WAL pieces into `<dir>/wal/`: whole segments (`from == 0`) and
/// tails (the bytes from `from` on, of a segment whose first `from` bytes the parent
/// backup's chain holds).
pub(super) fn copy_wal(
    fs: &dyn FileSystem,
    dir: &Path,
    wal: Vec<(PlannedWal, u64)>,
    tick: &mut dyn FnMut(u64),
) -> Result<Vec<BackupFile>, BackupError> {
    let out_dir = dir.join(BackupFileKind::WalSegment.dir());
    fs.create_dir_all(&out_dir)
        .map_err(io_err("create", &out_dir))?;
    let mut files = Vec::new();
    for (w, from) in wal {
        let name = aedb_wal::segment_file_name(w.seq);
        let dst = out_dir.join(&name);
        let len = w.len - from;
        let sha = copy_range(fs, &*w.file, &w.path, &dst, from, len, tick)?;
        files.push(BackupFile {
            kind: if from == 0 {
                BackupFileKind::WalSegment
            } else {
                BackupFileKind::WalTail { offset: from }
            },
            name,
            len,
            sha256: sha,
        });
    }
    sync_dir(fs, &out_dir)?;
    Ok(files)
}

/// A live run listed for a backup, opened.
pub(super) struct OpenedRun {
    rec: aedb_manifest::RunRecord,
    path: PathBuf,
    file: Arc<dyn DiskFile>,
}

/// The WAL a backup copies: segment pieces (the segment and the offset to copy from)
/// and whether they continue the parent's WAL (always for a full backup).
pub(super) struct WalPlan {
    pieces: Vec<(PlannedWal, u64)>,
    from_parent: bool,
}

/// A backup's listing: the WAL plan and the synced LSN of the WAL view it came from.
pub(super) struct PlannedVersion {
    wal: WalPlan,
    synced: Lsn,
}

impl PlannedVersion {
    /// Every byte the backup will hold (runs linked or copied, and WAL).
    fn total(&self, runs: &[OpenedRun]) -> u64 {
        runs.iter().map(|r| r.rec.len).sum::<u64>()
            + self
                .wal
                .pieces
                .iter()
                .map(|(w, from)| w.len - from)
                .sum::<u64>()
    }
}

/// How a backup placed its run files.
#[derive(Default)]
pub(super) struct PlacedRuns {
    try_links: bool,
    files: Vec<BackupFile>,
    linked_files: usize,
    linked_bytes: u64,
    copied_files: usize,
    fallback: Option<String>,
}

impl PlacedRuns {
    /// Hard-links `run` into `out_dir` (while links work), or copies it: a file system
    /// that cannot link ([`aedb_fs::link_unsupported`]: another device, no hard links)
    /// switches this backup to copies and is reported once; a run a compaction deleted
    /// since it was opened is copied from the open handle; any other error fails the
    /// backup. A linked run is the live file itself (run files are never written after
    /// their rename), listed with the length and SHA-256 its authenticated manifest
    /// record states; a copied one is hashed as copied and must match that record.
    fn place(
        &mut self,
        fs: &dyn FileSystem,
        run: &OpenedRun,
        out_dir: &Path,
        copied: &mut CopyProgress<'_>,
    ) -> Result<BackupFile, BackupError> {
        let rec = &run.rec;
        let name = aedb_checkpoint::run_file_name(rec.file_id);
        let dst = out_dir.join(&name);
        let listed = |sha256| BackupFile {
            kind: BackupFileKind::Run { level: rec.level },
            name: name.clone(),
            len: rec.len,
            sha256,
        };
        let mismatch = || BackupError::TamperedFile {
            path: run.path.clone(),
            detail: Box::new(Tamper::LiveCheckpoint),
        };
        if self.try_links {
            match fs.hard_link(&run.path, &dst) {
                Ok(()) => {
                    let len = fs.file_len(&dst).map_err(io_err("stat", &dst))?;
                    if len != rec.len {
                        return Err(mismatch());
                    }
                    self.linked_files += 1;
                    self.linked_bytes += len;
                    copied.tick_unpaced(len);
                    return Ok(listed(rec.sha256));
                }
                Err(e) if aedb_fs::link_unsupported(&e) => {
                    self.try_links = false;
                    self.fallback = Some(format!("hard link {}: {e}", dst.display()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("hard link", &dst)(e)),
            }
        }
        let sha = copy_prefix(fs, &*run.file, &run.path, &dst, rec.len, &mut |n| {
            copied.tick(n)
        })?;
        if sha != rec.sha256 {
            return Err(mismatch());
        }
        self.copied_files += 1;
        Ok(listed(sha))
    }
}

/// The runs a backup's chain holds as of `parent`: its run files and, for a format-2
/// incremental, the runs it inherits (file id to SHA-256). A WAL-only incremental
/// states none.
pub(super) fn held_runs(parent: &BackupManifest) -> BTreeMap<u64, [u8; 32]> {
    let mut held: BTreeMap<u64, [u8; 32]> = BTreeMap::new();
    if parent.kind == BackupKind::Incremental && parent.runs.is_none() {
        return held;
    }
    for (f, _) in parent.run_files() {
        if let Some(id) = aedb_checkpoint::parse_run_file_name(&f.name) {
            held.insert(id, f.sha256);
        }
    }
    for run in parent.runs.iter().flat_map(|s| s.inherited.iter()) {
        held.insert(run.file_id, run.sha256);
    }
    held
}

/// Where the parent backup's WAL ends: its last segment, the number of bytes of it the
/// chain holds, and the last bytes of that copy (at most 4 KiB, to check that the live
/// segment still starts with them before only its new bytes are copied). `None` when the
/// parent lists no WAL or its last piece cannot be read (then whole segments are copied).
pub(super) fn parent_wal_end(
    fs: &dyn FileSystem,
    parent: &VerifiedBackup,
) -> Option<(aedb_wal::SegmentSeq, u64, Vec<u8>)> {
    let last = parent.manifest.wal_files().last()?;
    let seq = aedb_wal::dir::parse_segment_file_name(&last.name)?;
    let offset = match last.kind {
        BackupFileKind::WalTail { offset } => offset,
        _ => 0,
    };
    let n = last.len.min(4096);
    let mut probe = vec![0u8; usize::try_from(n).ok()?];
    let path = parent.dir.join(last.kind.dir()).join(&last.name);
    let file = fs.open(&path, FsMode::Existing).ok()?;
    file.read_exact_at(&mut probe, last.len - n).ok()?;
    Some((seq, offset + last.len, probe))
}

/// Plans an incremental's WAL: when the live WAL still holds the segment the parent
/// ends in (and that segment still ends its first bytes as the parent's copy does),
/// only its new bytes and the segments after it; else, whole segments from the one
/// holding the parent's end + 1; else (flushes retired that WAL) whole segments from
/// the one holding `base + 1`, the run set's LSN ([`WalPlan::from_parent`] false).
pub(super) fn plan_incremental_wal(
    view: WalBackupView,
    tail: Option<&(aedb_wal::SegmentSeq, u64, Vec<u8>)>,
    since: Lsn,
    base: Lsn,
) -> Result<WalPlan, BackupError> {
    if let Some((seq, end, probe)) = tail
        && let Some(i) = view.segments.iter().position(|s| s.0 == *seq)
    {
        let file = &view.segments[i].2;
        let mut live_probe = vec![0u8; probe.len()];
        let same = file
            .read_exact_at(&mut live_probe, end - probe.len() as u64)
            .is_ok()
            && live_probe == *probe;
        if same {
            let first = WalBackupView {
                segments: view.segments[i..].to_vec(),
                active: view.active,
                synced_lsn: view.synced_lsn,
            };
            let planned = plan_wal(first, since, Some(*seq))?;
            let mut pieces = Vec::new();
            for w in planned {
                if w.seq == *seq {
                    if w.len < *end {
                        // Shorter than the parent's copy: not the same file.
                        return plan_whole(view, since, base);
                    }
                    if w.len > *end {
                        pieces.push((w, *end));
                    }
                } else {
                    pieces.push((w, 0));
                }
            }
            return Ok(WalPlan {
                pieces,
                from_parent: true,
            });
        }
    }
    plan_whole(view, since, base)
}

/// Whole segments from the one holding `since + 1` (continuing the parent), else from
/// the one holding `base + 1`.
fn plan_whole(view: WalBackupView, since: Lsn, base: Lsn) -> Result<WalPlan, BackupError> {
    let again = WalBackupView {
        segments: view.segments.clone(),
        active: view.active,
        synced_lsn: view.synced_lsn,
    };
    match plan_wal(again, since, None) {
        Ok(wal) => Ok(WalPlan {
            pieces: wal.into_iter().map(|w| (w, 0)).collect(),
            from_parent: true,
        }),
        Err(BackupError::WalRetired { .. }) if base >= since => {
            plan_wal(view, base, None).map(|wal| WalPlan {
                pieces: wal.into_iter().map(|w| (w, 0)).collect(),
                from_parent: false,
            })
        }
        Err(e) => Err(e),
    }
}
