//! Scheduled hot backups ([`AedbConfig::backup_policy`]) and listing a directory of
//! backup chains ([`list_backups`]).
//!
//! **The scheduler is an owner of its own** on the one actor pattern
//! (`aedb_actors::actor`): [`BackupScheduler`] implements `Owner` with a `tick`, and is
//! started by `aedb_actors::actor::spawn` on its own thread (`aedb-backup-policy`) when
//! an instance opens with a policy. It lives in `aedb` rather than `aedb-actors` because
//! taking a backup is the engine's (`backup/take.rs`); what it needs of the pipeline is a
//! cloneable [`aedb_actors::BackupPort`] (the CheckpointSealer's and ManifestChain's
//! addresses, no WAL sender), so it never keeps an owner alive past shutdown. Backups are
//! taken on the scheduler's thread, never on the commit path.
//!
//! **Layout.** Each chain is a directory `<dir>/chain-<unix ms:020>/` holding `full`
//! and then `inc-000001`, `inc-000002`, … (each a backup directory as in
//! `docs/FORMAT.md`). A full backup is due `full_every` after the newest full, an
//! incremental `incremental_every` after the newest backup of the chain. Incrementals
//! continue a chain across flushes (they hold the runs written since their parent); one
//! that still fails with [`BackupError::WalRetired`] (flushes outran its listing) makes
//! a full due at once.
//!
//! **Pruning.** Only after a new full backup has been verified (strictly, as a restore
//! would: [`verify_backup_chain`]) are the oldest chains beyond `keep` deleted; a full
//! that does not verify is kept aside, counted as a failure, and prunes nothing. Every
//! backup is recorded in the database's manifest (`BackupTaken`) like a manual one.
//!
//! After a restart the scheduler resumes the newest chain whose backups authenticate,
//! so the schedule continues from the newest full and incremental on disk.

use std::sync::Mutex;
use std::time::Duration;

use super::restore::remove_tree;
use super::*;
use crate::config::BackupPolicy;

/// What the backup scheduler has done ([`AedbInstance::backup_policy_status`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupPolicyStatus {
    /// When the newest full backup of the policy was taken (ms since the Unix epoch).
    pub last_full_unix_ms: Option<u64>,
    /// When the newest incremental of the policy was taken.
    pub last_incremental_unix_ms: Option<u64>,
    /// Seconds since the newest full backup, at the time of the status read.
    pub last_full_backup_age_secs: Option<u64>,
    /// Seconds since the newest incremental backup, at the time of the status read.
    pub last_incremental_backup_age_secs: Option<u64>,
    /// Full backups taken (and verified) since open.
    pub fulls: u64,
    /// Incrementals taken since open.
    pub incrementals: u64,
    /// Backups that failed (or fulls that did not verify) since open.
    pub failures: u64,
    /// Chains deleted by pruning since open.
    pub chains_pruned: u64,
    /// The newest failure's message.
    pub last_error: Option<String>,
    /// The chain incrementals are added to.
    pub current_chain: Option<PathBuf>,
}

/// The chain incrementals continue.
struct Chain {
    dir: PathBuf,
    /// Its newest backup (the next incremental's parent).
    newest: PathBuf,
    /// When that newest backup was taken.
    newest_at_ms: u64,
    /// The next incremental's number.
    next: u32,
}

/// The backup scheduler: an owner of its own (see the module documentation).
pub(crate) struct BackupScheduler {
    ctx: BackupCtx,
    /// Keys and file system for verifying a new full backup.
    verify: AedbConfig,
    policy: BackupPolicy,
    chain: Option<Chain>,
    last_full_ms: Option<u64>,
    full_now: bool,
    /// After a full backup failed (or did not verify), no new one before this time
    /// (ms): a failing disk must not get a full backup every tick.
    retry_full_at: Option<u64>,
    status: Arc<Mutex<BackupPolicyStatus>>,
}

/// The running scheduler of an instance and the status it shares.
pub(crate) struct RunningScheduler {
    running: aedb_actors::actor::Running<BackupScheduler>,
    status: Arc<Mutex<BackupPolicyStatus>>,
}

impl RunningScheduler {
    /// Stops the scheduler (after the backup in progress, if any).
    pub(crate) fn stop(&mut self) {
        self.running.stop();
    }

    /// The status, with ages computed now.
    pub(crate) fn status(&self) -> BackupPolicyStatus {
        let mut s = lock(&self.status).clone();
        let now = aedb_types::clock::unix_millis();
        let age = |at: Option<u64>| at.map(|at| now.saturating_sub(at) / 1000);
        s.last_full_backup_age_secs = age(s.last_full_unix_ms);
        s.last_incremental_backup_age_secs = age(s.last_incremental_unix_ms);
        s
    }
}

fn lock(m: &Mutex<BackupPolicyStatus>) -> std::sync::MutexGuard<'_, BackupPolicyStatus> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts the scheduler of `db` under `policy` (keys for verification from `config`).
pub(crate) fn start_scheduler(
    db: &AedbInstance,
    policy: BackupPolicy,
    config: &AedbConfig,
) -> std::io::Result<RunningScheduler> {
    let mut verify = AedbConfig::development();
    verify.manifest_provider = config.manifest_provider.clone();
    verify.data_provider = config.data_provider.clone();
    verify.fs = config.fs.clone();
    let status = Arc::new(Mutex::new(BackupPolicyStatus::default()));
    let mut scheduler = BackupScheduler {
        ctx: db.backup_ctx(),
        verify,
        policy,
        chain: None,
        last_full_ms: None,
        full_now: false,
        retry_full_at: None,
        status: status.clone(),
    };
    // Before the owner starts, so the status reflects the chains on disk at open.
    scheduler.resume();
    let stats = Arc::new(aedb_actors::actor::OwnerStats::new("backup-policy"));
    let running = aedb_actors::actor::spawn(scheduler, 4, stats)?;
    Ok(RunningScheduler { running, status })
}

impl aedb_actors::actor::Owner for BackupScheduler {
    const NAME: &'static str = "backup-policy";

    fn tick_interval(&self) -> Option<Duration> {
        let shortest = self.policy.full_every.min(self.policy.incremental_every);
        Some((shortest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1)))
    }

    fn tick(&mut self) {
        self.run_due();
    }
}

/// The chain directories under `dir`, oldest first.
fn chain_dirs(fs: &dyn FileSystem, dir: &Path) -> Vec<PathBuf> {
    let mut chains: Vec<PathBuf> = fs
        .read_dir(dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            fs.is_dir(p)
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("chain-"))
        })
        .collect();
    chains.sort();
    chains
}

/// The backups of a policy chain directory in order (`full`, then `inc-*`).
fn chain_members(fs: &dyn FileSystem, chain: &Path) -> Vec<PathBuf> {
    let full = chain.join("full");
    if !fs.is_dir(&full) {
        return Vec::new();
    }
    let mut incs: Vec<PathBuf> = fs
        .read_dir(chain)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("inc-"))
        })
        .collect();
    incs.sort();
    std::iter::once(full).chain(incs).collect()
}

impl BackupScheduler {
    fn now() -> u64 {
        aedb_types::clock::unix_millis()
    }

    fn fail(&self, what: &str, e: &dyn std::fmt::Display) {
        tracing::warn!("scheduled {what} failed: {e}");
        let mut s = lock(&self.status);
        s.failures += 1;
        s.last_error = Some(format!("{what}: {e}"));
    }

    /// Continues the newest chain on disk whose backups authenticate, if any.
    fn resume(&mut self) {
        let fs = &*self.ctx.fs;
        let Some(chain_dir) = chain_dirs(fs, &self.policy.dir).pop() else {
            return;
        };
        let members = chain_members(fs, &chain_dir);
        let mut read = Vec::new();
        for m in &members {
            match read_backup_with(fs, m, &*self.ctx.keys) {
                Ok(b) if b.manifest.database_id == self.ctx.database_id => read.push(b),
                _ => break,
            }
        }
        let Some(full) = read.first().filter(|b| b.manifest.kind == BackupKind::Full) else {
            return;
        };
        let newest = read.last().unwrap_or(full);
        let full_at = full.manifest.created_at_unix_ms;
        let inc_at = read
            .iter()
            .skip(1)
            .map(|b| b.manifest.created_at_unix_ms)
            .max();
        self.last_full_ms = Some(full_at);
        self.chain = Some(Chain {
            dir: chain_dir.clone(),
            newest: newest.dir.clone(),
            newest_at_ms: newest.manifest.created_at_unix_ms,
            next: u32::try_from(read.len()).unwrap_or(u32::MAX),
        });
        let mut s = lock(&self.status);
        s.last_full_unix_ms = Some(full_at);
        s.last_incremental_unix_ms = inc_at;
        s.current_chain = Some(chain_dir);
    }

    fn run_due(&mut self) {
        let now = Self::now();
        let every = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let full_due = self.full_now
            || self.chain.is_none()
            || self
                .last_full_ms
                .is_none_or(|at| now >= at.saturating_add(every(self.policy.full_every)));
        let backing_off = self.retry_full_at.is_some_and(|at| now < at);
        if full_due && !backing_off {
            self.take_full(now);
        } else if let Some(chain) = &self.chain
            && now
                >= chain
                    .newest_at_ms
                    .saturating_add(every(self.policy.incremental_every))
        {
            self.take_incremental();
        }
    }

    fn take_full(&mut self, now: u64) {
        let fs = &*self.ctx.fs;
        if let Err(e) = fs.create_dir_all(&self.policy.dir) {
            self.fail("full backup", &e);
            return;
        }
        let mut stamp = now;
        let mut chain_dir = self.policy.dir.join(format!("chain-{stamp:020}"));
        while fs.exists(&chain_dir) {
            stamp += 1;
            chain_dir = self.policy.dir.join(format!("chain-{stamp:020}"));
        }
        let full = chain_dir.join("full");
        // Retried (with the current chain continued meanwhile) no sooner than this.
        let retry_at = now.saturating_add(
            u64::try_from(
                self.policy
                    .full_every
                    .min(self.policy.incremental_every)
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
        );
        let report = match self.ctx.full(&full, &mut |_, _| {}) {
            Ok(r) => r,
            Err(e) => {
                remove_tree(fs, &chain_dir);
                self.fail("full backup", &e);
                self.retry_full_at = Some(retry_at);
                return;
            }
        };
        // A full backup starts a chain only once it verified as a restore would; only
        // then may older chains go. One that does not verify is removed: it would
        // otherwise count toward `keep` and could be continued after a restart.
        if let Err(e) =
            verify_backup_chain(std::slice::from_ref(&full), &self.verify, &mut |_, _| {})
        {
            remove_tree(fs, &chain_dir);
            self.fail("verification of a new full backup", &e);
            self.full_now = true;
            self.retry_full_at = Some(retry_at);
            return;
        }
        self.retry_full_at = None;
        let at = report.manifest.created_at_unix_ms;
        self.full_now = false;
        self.last_full_ms = Some(at);
        self.chain = Some(Chain {
            dir: chain_dir.clone(),
            newest: full,
            newest_at_ms: at,
            next: 1,
        });
        {
            let mut s = lock(&self.status);
            s.fulls += 1;
            s.last_full_unix_ms = Some(at);
            s.current_chain = Some(chain_dir.clone());
        }
        self.prune(&chain_dir);
    }

    /// Deletes the oldest chains beyond `keep`, never `current` (the newest verified).
    fn prune(&self, current: &Path) {
        let fs = &*self.ctx.fs;
        let chains = chain_dirs(fs, &self.policy.dir);
        let excess = chains.len().saturating_sub(self.policy.keep);
        let mut pruned = 0;
        for old in chains
            .iter()
            .take(excess)
            .filter(|c| c.as_path() != current)
        {
            remove_tree(fs, old);
            pruned += 1;
        }
        lock(&self.status).chains_pruned += pruned;
    }

    fn take_incremental(&mut self) {
        let Some(chain) = &mut self.chain else {
            return;
        };
        let fs = &*self.ctx.fs;
        let dir = chain.dir.join(format!("inc-{:06}", chain.next));
        match self.ctx.incremental(&dir, &chain.newest, &mut |_, _| {}) {
            Ok(report) => {
                let at = report.manifest.created_at_unix_ms;
                chain.newest = dir;
                chain.newest_at_ms = at;
                chain.next += 1;
                let mut s = lock(&self.status);
                s.incrementals += 1;
                s.last_incremental_unix_ms = Some(at);
            }
            Err(e) => {
                remove_tree(fs, &dir);
                if matches!(e, BackupError::WalRetired { .. }) {
                    // The chain cannot continue: start a new one now.
                    self.full_now = true;
                } else {
                    self.fail("incremental backup", &e);
                }
            }
        }
    }
}

impl AedbInstance {
    /// What the backup policy ([`AedbConfig::backup_policy`]) has done, with the age of
    /// the newest full and incremental backup; `None` without a policy.
    pub fn backup_policy_status(&self) -> Option<BackupPolicyStatus> {
        self.backup_scheduler.as_ref().map(RunningScheduler::status)
    }
}

/// One backup of a [`BackupChainListing`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedBackup {
    /// Its directory.
    pub dir: PathBuf,
    /// Its authenticated manifest.
    pub manifest: BackupManifest,
    /// SHA-256 of its `BACKUP` file.
    pub manifest_sha256: [u8; 32],
    /// Seconds since it was taken, at the time of listing.
    pub age_secs: u64,
}

/// A chain found by [`list_backups`]: a full backup and the incrementals that continue
/// it, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupChainListing {
    /// Full first, then each incremental after its parent.
    pub backups: Vec<ListedBackup>,
}

/// Lists the backup chains under `dir`: every backup directory at most two levels down
/// (a policy's `chain-*/full`, `chain-*/inc-*`, or backups side by side), each manifest
/// authenticated with `config`'s keys, grouped into chains by their parent links, oldest
/// chain first. A backup whose parent is not found is listed as a chain of its own.
pub fn list_backups(dir: &Path, config: &AedbConfig) -> Result<Vec<BackupChainListing>, Error> {
    Ok(list_backups_cfg(dir, config)?)
}

fn list_backups_cfg(
    dir: &Path,
    config: &AedbConfig,
) -> Result<Vec<BackupChainListing>, BackupError> {
    let fs = &*config.fs;
    let provider = config.backup_key_provider()?;
    let mut dirs = Vec::new();
    let mut look = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = look.pop() {
        if fs.exists(&d.join(BACKUP_MANIFEST_FILE)) {
            dirs.push(d);
            continue;
        }
        if depth < 2 {
            for entry in fs.read_dir(&d).map_err(io_err("read", &d))? {
                if fs.is_dir(&entry) {
                    look.push((entry, depth + 1));
                }
            }
        }
    }
    let now = aedb_types::clock::unix_millis();
    let mut read: Vec<ListedBackup> = Vec::new();
    for d in dirs {
        let b = read_backup_with(fs, &d, &*provider)?;
        read.push(ListedBackup {
            age_secs: now.saturating_sub(b.manifest.created_at_unix_ms) / 1000,
            dir: b.dir,
            manifest: b.manifest,
            manifest_sha256: b.manifest_sha256,
        });
    }
    read.sort_by(|a, b| {
        (a.manifest.created_at_unix_ms, &a.dir).cmp(&(b.manifest.created_at_unix_ms, &b.dir))
    });
    let mut chains: Vec<BackupChainListing> = Vec::new();
    for b in read {
        let parent = b.manifest.parent_sha256;
        let home = parent.and_then(|p| {
            chains.iter().position(|c| {
                c.backups
                    .last()
                    .is_some_and(|last| last.manifest_sha256 == p)
            })
        });
        match home {
            Some(i) => chains[i].backups.push(b),
            None => chains.push(BackupChainListing { backups: vec![b] }),
        }
    }
    Ok(chains)
}
