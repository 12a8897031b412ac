//! Scheduled backups (`AedbConfig::backup_policy`): full and incremental backups are
//! taken off the commit path while commits run, each recorded in the manifest, old
//! chains pruned beyond `keep`, every kept chain restores, and a reopened instance
//! continues the newest chain. Intervals are short (tens of ms); every wait is bounded
//! and waits for an observable effect, never asserting how long anything took.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aedb::backup::{BackupPolicyStatus, list_backups};
use aedb::{
    AedbConfig, AedbInstance, BackupKind, Finality, KvKey, KvValue, Namespace, RestoreOptions,
    Transaction, restore_from_backup_chain,
};

const KEY: [u8; 32] = [0x7a; 32];

fn base() -> AedbConfig {
    AedbConfig::production(KEY)
        .with_checkpoint_key([0x7b; 32])
        .segment_size(64 * 1024)
        .preallocate(false)
}

fn ns() -> Namespace {
    Namespace::parse("pol", "main").expect("namespace")
}

fn put(n: u64) -> Transaction {
    Transaction::new().kv_put(
        &ns(),
        KvKey::new(format!("k{n:06}")).expect("key"),
        KvValue::new(format!("{n}:{}", "y".repeat(300))).expect("value"),
    )
}

/// Commits until `done(status)` holds (at most 60 s, then fails with the status).
fn commit_until(
    db: &AedbInstance,
    next: &mut u64,
    done: impl Fn(&BackupPolicyStatus) -> bool,
) -> BackupPolicyStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = db.backup_policy_status().expect("a policy is configured");
        if done(&status) {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy did not get there: {status:?}"
        );
        db.commit_with(put(*next), Finality::Durable)
            .expect("commit");
        *next += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Restores `chain` strictly into `into`, opens it and returns its LSN.
fn restore(chain: &[std::path::PathBuf], into: &Path) -> u64 {
    let report = restore_from_backup_chain(
        chain,
        into,
        RestoreOptions {
            config: base(),
            strict: true,
            target_lsn: None,
        },
        &mut |_, _| {},
    )
    .unwrap_or_else(|e| panic!("restore {chain:?}: {e}"));
    let db = AedbInstance::open(into, base()).expect("open restored");
    let snap = db.snapshot().expect("snapshot");
    assert_eq!(snap.lsn(), report.lsn);
    // The first put is in every backup (each full follows it).
    assert!(snap.kv_get(&ns(), b"k000000").expect("read").is_some());
    db.shutdown().expect("shutdown");
    report.lsn.get()
}

#[test]
fn scheduled_backups_run_while_committing_prune_beyond_keep_and_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = tempfile::tempdir().expect("tempdir");
    let restored = tempfile::tempdir().expect("tempdir");
    let policy_dir = backups.path().join("policy");
    let config = base().backup_policy(
        &policy_dir,
        Duration::from_millis(300),
        Duration::from_millis(50),
        2,
    );
    let db = AedbInstance::open(dir.path(), config).expect("open");
    db.create_project("pol").expect("project");
    db.create_scope("pol", "main").expect("scope");
    let mut next = 0;
    let status = commit_until(&db, &mut next, |s| {
        s.fulls >= 3 && s.incrementals >= 3 && s.chains_pruned >= 1
    });
    assert!(status.last_full_backup_age_secs.is_some(), "{status:?}");
    assert!(
        status.last_incremental_backup_age_secs.is_some(),
        "{status:?}"
    );
    assert_eq!(status.failures, 0, "{status:?}");
    db.shutdown().expect("shutdown");

    // Pruned to `keep` chains, each a full then incrementals in order.
    let chains = list_backups(&policy_dir, &base()).expect("list");
    assert_eq!(chains.len(), 2, "{chains:#?}");
    let mut restored_lsns = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        assert_eq!(chain.backups[0].manifest.kind, BackupKind::Full);
        assert!(
            chain.backups[1..]
                .iter()
                .all(|b| b.manifest.kind == BackupKind::Incremental)
        );
        let dirs: Vec<_> = chain.backups.iter().map(|b| b.dir.clone()).collect();
        let lsn = restore(&dirs, &restored.path().join(format!("r{i}")));
        assert_eq!(lsn, chain.backups.last().unwrap().manifest.last_lsn.get());
        restored_lsns.push(lsn);
    }
    assert!(restored_lsns[0] <= restored_lsns[1], "{restored_lsns:?}");

    // Every backup the policy took is recorded in the manifest (`BackupTaken`).
    let inspection = aedb::offline::inspect(dir.path(), &base()).expect("inspect");
    let recorded = inspection.manifest.live.backups().len() as u64;
    assert!(
        recorded >= status.fulls + status.incrementals,
        "{recorded} recorded, {status:?}"
    );
}

#[test]
fn a_reopened_instance_continues_the_newest_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = tempfile::tempdir().expect("tempdir");
    let policy_dir = backups.path().join("policy");
    let config = |inc_ms| {
        base().backup_policy(
            &policy_dir,
            Duration::from_secs(3600),
            Duration::from_millis(inc_ms),
            3,
        )
    };
    let db = AedbInstance::open(dir.path(), config(50)).expect("open");
    db.create_project("pol").expect("project");
    db.create_scope("pol", "main").expect("scope");
    let mut next = 0;
    commit_until(&db, &mut next, |s| s.fulls == 1 && s.incrementals >= 1);
    db.shutdown().expect("shutdown");
    let before = list_backups(&policy_dir, &base()).expect("list");
    assert_eq!(before.len(), 1);
    let len_before = before[0].backups.len();

    // The full is an hour from due: the reopened scheduler adds incrementals to the
    // same chain instead of starting a new one.
    let db = AedbInstance::open(dir.path(), config(50)).expect("reopen");
    let resumed = db.backup_policy_status().expect("status");
    assert!(resumed.last_full_unix_ms.is_some(), "{resumed:?}");
    commit_until(&db, &mut next, |s| s.incrementals >= 1);
    db.shutdown().expect("shutdown");
    let after = list_backups(&policy_dir, &base()).expect("list");
    assert_eq!(after.len(), 1, "{after:#?}");
    assert!(after[0].backups.len() > len_before);
    let dirs: Vec<_> = after[0].backups.iter().map(|b| b.dir.clone()).collect();
    let restored = tempfile::tempdir().expect("tempdir");
    restore(&dirs, &restored.path().join("r"));
}

#[test]
fn invalid_policies_are_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    for config in [
        base().backup_policy(
            dir.path().join("b"),
            Duration::from_secs(1),
            Duration::from_secs(1),
            0,
        ),
        base().backup_policy(
            dir.path().join("b"),
            Duration::ZERO,
            Duration::from_secs(1),
            1,
        ),
    ] {
        let e = AedbInstance::open(dir.path().join("db"), config).expect_err("refused");
        assert_eq!(e.code(), "config.invalid", "{e}");
    }
    let db = AedbInstance::open(dir.path().join("db"), base()).expect("open");
    assert_eq!(db.backup_policy_status(), None);
    db.shutdown().expect("shutdown");
}

/// A file system that, while `corrupt` is set, hands back flipped bytes from every read
/// of a checkpoint file inside a backup (`.../full/checkpoints/...`): the backup itself
/// is written correctly, but verifying it fails, as it would on a bad disk.
#[derive(Debug)]
struct CorruptBackupReads {
    inner: aedb_fs::SharedFs,
    corrupt: Arc<AtomicBool>,
}

#[derive(Debug)]
struct FlippedReads(Arc<dyn aedb_fs::DiskFile>);

impl aedb_fs::DiskFile for FlippedReads {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_exact_at(buf, offset)?;
        if let Some(b) = buf.first_mut() {
            *b ^= 0xFF;
        }
        Ok(())
    }
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }
    fn allocate(&self, len: u64) -> std::io::Result<()> {
        self.0.allocate(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&self) -> std::io::Result<()> {
        self.0.sync_all()
    }
}

impl aedb_fs::FileSystem for CorruptBackupReads {
    fn open(
        &self,
        path: &Path,
        mode: aedb_fs::OpenMode,
    ) -> std::io::Result<Arc<dyn aedb_fs::DiskFile>> {
        let file = self.inner.open(path, mode)?;
        let in_backup = path.to_string_lossy().contains(&format!(
            "{0}full{0}checkpoints{0}",
            std::path::MAIN_SEPARATOR
        ));
        if in_backup && self.corrupt.load(Ordering::Acquire) {
            Ok(Arc::new(FlippedReads(file)))
        } else {
            Ok(file)
        }
    }
    fn read_whole(&self, path: &Path) -> std::io::Result<aedb_fs::FileBytes> {
        self.inner.read_whole(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn hard_link(&self, original: &Path, link: &Path) -> std::io::Result<()> {
        self.inner.hard_link(original, link)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn remove_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_dir(path)
    }
    fn read_dir(&self, path: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        self.inner.read_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
    fn file_len(&self, path: &Path) -> std::io::Result<u64> {
        self.inner.file_len(path)
    }
    fn try_lock(&self, path: &Path) -> std::io::Result<Box<dyn aedb_fs::DirLockGuard>> {
        self.inner.try_lock(path)
    }
    fn try_lock_shared(&self, path: &Path) -> std::io::Result<Box<dyn aedb_fs::DirLockGuard>> {
        self.inner.try_lock_shared(path)
    }
}

#[test]
fn a_full_backup_that_does_not_verify_prunes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backups = tempfile::tempdir().expect("tempdir");
    let policy_dir = backups.path().join("policy");
    let corrupt = Arc::new(AtomicBool::new(false));
    // keep = 1: every verified full backup prunes the chain before it.
    let config = || {
        let fs = Arc::new(CorruptBackupReads {
            inner: aedb_fs::RealFs::shared(),
            corrupt: corrupt.clone(),
        });
        base().with_file_system(fs).backup_policy(
            &policy_dir,
            Duration::from_millis(100),
            Duration::from_secs(3600),
            1,
        )
    };
    let db = AedbInstance::open(dir.path(), config()).expect("open");
    db.create_project("pol").expect("project");
    db.create_scope("pol", "main").expect("scope");
    let mut next = 0;
    commit_until(&db, &mut next, |s| s.fulls >= 1);

    // From now on every new full backup fails its verification. The scheduler takes its
    // backups one at a time, so once one failure is recorded, the last full that
    // verified (possibly one that finished just after the switch) is recorded too.
    corrupt.store(true, Ordering::Release);
    let first = commit_until(&db, &mut next, |s| s.failures >= 1);
    let verified_chain = first.current_chain.clone().expect("a chain");
    let failing = commit_until(&db, &mut next, |s| s.failures >= 3);
    db.shutdown().expect("shutdown");
    assert_eq!(failing.fulls, first.fulls, "{failing:?}");
    assert_eq!(failing.chains_pruned, first.chains_pruned, "{failing:?}");
    assert!(
        failing
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("verification")),
        "{failing:?}"
    );
    assert_eq!(failing.current_chain.as_ref(), Some(&verified_chain));
    // The verified chain is kept, and a full that did not verify is not: it would count
    // toward `keep` and could be continued after a restart.
    let chains: Vec<_> = std::fs::read_dir(&policy_dir)
        .expect("policy dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(chains, vec![verified_chain.clone()], "{failing:?}");

    // Reopened (it can only continue the verified chain: nothing else is on disk), a full
    // backup that verifies again starts a chain and prunes the old one.
    corrupt.store(false, Ordering::Release);
    let db = AedbInstance::open(dir.path(), config()).expect("reopen");
    let healed = commit_until(&db, &mut next, |s| s.fulls >= 1 && s.chains_pruned >= 1);
    db.shutdown().expect("shutdown");
    assert_ne!(healed.current_chain.as_ref(), Some(&verified_chain));
    assert!(!verified_chain.exists(), "keep = 1 prunes the older chain");
}
