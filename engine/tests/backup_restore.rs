//! Hot full and incremental backups forming an HMAC'd hash chain, and strict restore.
//!
//! The two tests named in the security runbook (section 4) are the first two here:
//! `cargo test --test backup_restore <name> -- --test-threads=1` from the repo root.
//! Set `AEDB_KEEP_RESTORE_DIR=<dir>` to keep the first test's restored data directory
//! there, for `aedb check invariants --data-dir <dir>` (keys: see `KEY`/`DATA_KEY`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aedb::backup::{BACKUP_MANIFEST_FILE, BackupManifest, backup_key, verify_backup_chain};
use aedb::{
    AedbConfig, AedbInstance, BackupError, BackupKind, BackupReport, Finality, KvKey, KvValue, Lsn,
    Namespace, ReadSnapshot, RestoreOptions, Transaction, restore_from_backup_chain,
};

/// The manifest key of these tests (hex `07` x 32 for `AEDB_MANIFEST_KEY`).
const KEY: [u8; 32] = [7; 32];
/// The at-rest key (hex `09` x 32 for `AEDB_DATA_KEY`).
const DATA_KEY: [u8; 32] = [9; 32];

fn config() -> AedbConfig {
    AedbConfig::production(KEY)
        .checkpoint_on_shutdown(false)
        .with_checkpoint_key(DATA_KEY)
        .segment_size(64 * 1024)
        // The byte volumes the tests assert (a rate-limited backup, an incremental
        // against a full) are for these repetitive values stored as they are.
        .block_compression(aedb::BlockCompression::None)
}

fn options(target: Option<Lsn>) -> RestoreOptions {
    RestoreOptions {
        config: config(),
        strict: true,
        target_lsn: target,
    }
}

fn ns() -> Namespace {
    Namespace::parse("p", "s").unwrap()
}

fn setup(dir: &Path) -> AedbInstance {
    let db = AedbInstance::open(dir, config()).unwrap();
    db.create_project("p").unwrap();
    db.create_scope("p", "s").unwrap();
    db
}

/// Commits `count` transactions of two puts each, starting at key index `from`.
fn load(db: &AedbInstance, from: u32, count: u32) {
    for i in from..from + count {
        let tx = Transaction::new()
            .kv_put(
                &ns(),
                KvKey::new(format!("k{i:06}")).unwrap(),
                KvValue::new(format!("v{i}-{}", "x".repeat(150))).unwrap(),
            )
            .kv_put(
                &ns(),
                KvKey::new(format!("last{}", i % 7)).unwrap(),
                KvValue::new(i.to_le_bytes()).unwrap(),
            );
        db.commit_with(tx, Finality::Durable).unwrap();
    }
}

/// [`load`], recording the source's snapshot after every commit in `history`.
fn load_recorded(
    db: &AedbInstance,
    from: u32,
    count: u32,
    history: &mut BTreeMap<Lsn, ReadSnapshot>,
) {
    for i in from..from + count {
        load(db, i, 1);
        let s = db.snapshot().expect("snapshot");
        history.insert(s.lsn(), s);
    }
}

fn none() -> impl FnMut(u64, u64) {
    |_, _| {}
}

struct Chain {
    _dir: tempfile::TempDir,
    source: PathBuf,
    backups: Vec<PathBuf>,
    reports: Vec<BackupReport>,
    /// The source's snapshot at each backup's end.
    at_end: Vec<ReadSnapshot>,
    /// The source's snapshot after every commit, by LSN.
    history: BTreeMap<Lsn, ReadSnapshot>,
}

/// A database with a full backup and two incrementals, commits between each.
fn chain() -> Chain {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("db");
    let db = setup(&source);
    let mut backups = Vec::new();
    let mut reports = Vec::new();
    let mut at_end = Vec::new();
    let mut history = BTreeMap::new();
    load_recorded(&db, 0, 300, &mut history);
    for (i, kind) in ["full", "inc1", "inc2"].iter().enumerate() {
        let b = dir.path().join(kind);
        let report = if i == 0 {
            db.backup_full(&b, &mut none()).unwrap()
        } else {
            db.backup_incremental(&b, &backups[i - 1], &mut none())
                .unwrap()
        };
        assert_eq!(
            report.manifest.last_lsn,
            db.snapshot().expect("snapshot").lsn()
        );
        at_end.push(db.snapshot().expect("snapshot"));
        backups.push(b);
        reports.push(report);
        load_recorded(&db, 1000 * (i as u32 + 1), 250, &mut history);
    }
    db.shutdown().unwrap();
    Chain {
        _dir: dir,
        source,
        backups,
        reports,
        at_end,
        history,
    }
}

fn open_state(dir: &Path) -> ReadSnapshot {
    let db = AedbInstance::open(dir, config()).unwrap();
    let s = db.snapshot().expect("snapshot");
    db.shutdown().unwrap();
    s
}

/// The WAL segment files of a backup, in order.
fn wal_files(backup: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(backup.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x55;
    std::fs::write(path, bytes).unwrap();
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn is_empty_or_absent(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

#[test]
fn strict_backup_chain_restore_succeeds_with_hash_chain_enforcement() {
    let c = chain();
    // The chain links: each incremental names its parent's manifest hash and starts
    // where the parent ends.
    assert_eq!(c.reports[0].manifest.kind, BackupKind::Full);
    for i in 1..3 {
        let m = &c.reports[i].manifest;
        assert_eq!(m.kind, BackupKind::Incremental);
        assert_eq!(m.parent_sha256, Some(c.reports[i - 1].manifest_sha256));
        assert_eq!(m.first_lsn, c.reports[i - 1].manifest.last_lsn);
        assert!(m.last_lsn > m.first_lsn);
    }
    // Files are stored sealed: no plaintext value from the workload appears.
    for b in &c.backups {
        for entry in std::fs::read_dir(b.join("wal")).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(10).any(|w| w == b"xxxxxxxxxx"));
        }
    }
    let verified = verify_backup_chain(&c.backups, &config(), &mut none()).unwrap();
    assert_eq!(verified.lsn, c.reports[2].manifest.last_lsn);

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("restored");
    let mut calls = 0;
    let mut last = (0, 0);
    let report = restore_from_backup_chain(&c.backups, &target, options(None), &mut |d, t| {
        calls += 1;
        last = (d, t);
    })
    .unwrap();
    assert!(calls > 0 && last.0 == last.1, "progress reached the total");
    assert_eq!(report.lsn, c.reports[2].manifest.last_lsn);
    assert_eq!(report.backups, 3);

    // The restored directory opens normally with the same keys and the same id, holds
    // exactly the source's state at the chain's end, and takes new commits.
    let db = AedbInstance::open(&target, config()).unwrap();
    let source_id = {
        let src = AedbInstance::open(&c.source, config()).unwrap();
        let id = src.database_id();
        src.shutdown().unwrap();
        id
    };
    assert_eq!(db.database_id(), source_id);
    assert_eq!(
        first_difference(&db.snapshot().expect("snapshot"), &c.at_end[2]),
        None
    );
    load(&db, 90_000, 5);
    let after = db.snapshot().expect("snapshot");
    db.shutdown().unwrap();
    assert_eq!(first_difference(&open_state(&target), &after), None);

    if let Ok(keep) = std::env::var("AEDB_KEEP_RESTORE_DIR") {
        let keep = PathBuf::from(keep);
        let _ = std::fs::remove_dir_all(&keep);
        restore_from_backup_chain(&c.backups, &keep, options(None), &mut none()).unwrap();
        eprintln!("restored data directory kept at {}", keep.display());
    }
}

#[test]
fn strict_backup_chain_restore_rejects_tampered_incremental_segment() {
    let c = chain();
    // The incremental's newest segment: not a re-copy of one its parent holds.
    let files = wal_files(&c.backups[1]);
    assert!(files.len() >= 2, "{files:?}");
    let seg = files[files.len() - 1].clone();
    let original = std::fs::read(&seg).unwrap();
    // A byte inside the first sealed batch, past the 64-byte segment header.
    flip_byte(&seg, 200);
    let target = c._dir.path().join("restore");

    // 1. The file no longer matches the authenticated listing.
    let err =
        restore_from_backup_chain(&c.backups, &target, options(None), &mut none()).unwrap_err();
    assert!(
        matches!(err, aedb::Error::Backup(BackupError::TamperedFile { .. })),
        "{err}"
    );
    assert!(is_empty_or_absent(&target));

    // 2. The attacker also recomputes the file's SHA-256 and rewrites it in the listing:
    //    the backup manifest's HMAC no longer verifies.
    let manifest_path = c.backups[1].join(BACKUP_MANIFEST_FILE);
    let manifest_bytes = std::fs::read(&manifest_path).unwrap();
    let old_sha = sha256(&original);
    let new_sha = sha256(&std::fs::read(&seg).unwrap());
    let at = manifest_bytes
        .windows(32)
        .position(|w| w == old_sha)
        .expect("the listing holds the file's hash");
    let mut forged = manifest_bytes.clone();
    forged[at..at + 32].copy_from_slice(&new_sha);
    std::fs::write(&manifest_path, &forged).unwrap();
    let err =
        restore_from_backup_chain(&c.backups, &target, options(None), &mut none()).unwrap_err();
    assert!(
        matches!(err, aedb::Error::Backup(BackupError::ChainMismatch { .. })),
        "{err}"
    );
    assert!(is_empty_or_absent(&target));

    // 3. Even an attacker holding the backup MAC key, who re-signs the listing, is caught
    //    by the sealed batch's AEAD tag (and the next backup's parent link).
    let decoded = BackupManifest::decode_unverified(&forged).unwrap();
    let (key, _) = backup_key(&config(), decoded.manifest.database_id, None).unwrap();
    let resigned = decoded.manifest.encode(&key);
    std::fs::write(&manifest_path, &resigned).unwrap();
    let err =
        restore_from_backup_chain(&c.backups, &target, options(None), &mut none()).unwrap_err();
    assert!(
        matches!(
            err,
            aedb::Error::Backup(BackupError::TamperedFile { .. })
                | aedb::Error::Backup(BackupError::MissingIncremental { .. })
        ),
        "{err}"
    );
    // Restricted to the re-signed incremental alone on top of its parent, the WAL's
    // own authentication is what rejects it.
    let err = restore_from_backup_chain(&c.backups[..2], &target, options(None), &mut none())
        .unwrap_err();
    assert!(
        matches!(err, aedb::Error::Backup(BackupError::TamperedFile { .. })),
        "{err}"
    );
    assert!(is_empty_or_absent(&target));
}

#[test]
fn restore_to_a_target_lsn_matches_the_source_at_that_lsn() {
    let c = chain();
    // The end of the first incremental, reached from the whole chain.
    let target_lsn = c.reports[1].manifest.last_lsn;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("r");
    let report =
        restore_from_backup_chain(&c.backups, &dir, options(Some(target_lsn)), &mut none())
            .unwrap();
    assert_eq!(report.lsn, target_lsn);
    assert_eq!(first_difference(&open_state(&dir), &c.at_end[1]), None);

    // An LSN in the middle of an incremental: the state is exactly the source's after
    // the commit at that LSN (every KV entry, row and idempotency record; nothing later).
    let mid = Lsn::new(c.reports[1].manifest.first_lsn.get() + 17);
    assert!(
        mid < c.reports[1].manifest.last_lsn,
        "strictly inside the incremental"
    );
    let dir2 = out.path().join("r2");
    let report =
        restore_from_backup_chain(&c.backups, &dir2, options(Some(mid)), &mut none()).unwrap();
    assert_eq!(report.lsn, mid);
    let restored = open_state(&dir2);
    let expected = c
        .history
        .get(&mid)
        .expect("the source committed at that lsn");
    assert_eq!(first_difference(&restored, expected), None);

    let err = restore_from_backup_chain(
        &c.backups,
        out.path().join("r3"),
        options(Some(Lsn::new(c.reports[2].manifest.last_lsn.get() + 1))),
        &mut none(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            aedb::Error::Backup(BackupError::TargetOutOfRange { .. })
        ),
        "{err}"
    );
}

#[test]
fn restore_refuses_a_non_empty_directory() {
    let c = chain();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("keep-me"), b"precious").unwrap();
    let err =
        restore_from_backup_chain(&c.backups, out.path(), options(None), &mut none()).unwrap_err();
    assert!(
        matches!(err, aedb::Error::Backup(BackupError::NonEmptyTarget(_))),
        "{err}"
    );
    assert_eq!(
        std::fs::read(out.path().join("keep-me")).unwrap(),
        b"precious"
    );
}

#[test]
fn a_missing_incremental_is_a_gap() {
    let c = chain();
    let chain = vec![c.backups[0].clone(), c.backups[2].clone()];
    let err =
        restore_from_backup_chain(&chain, c._dir.path().join("r"), options(None), &mut none())
            .unwrap_err();
    assert!(
        matches!(
            err,
            aedb::Error::Backup(BackupError::MissingIncremental { .. })
        ),
        "{err}"
    );
}

#[test]
fn an_out_of_order_chain_is_refused() {
    let c = chain();
    let chain = vec![
        c.backups[0].clone(),
        c.backups[2].clone(),
        c.backups[1].clone(),
    ];
    let err =
        restore_from_backup_chain(&chain, c._dir.path().join("r"), options(None), &mut none())
            .unwrap_err();
    assert!(
        matches!(err, aedb::Error::Backup(BackupError::OutOfOrder { .. })),
        "{err}"
    );
    let chain = vec![c.backups[1].clone(), c.backups[0].clone()];
    let err =
        restore_from_backup_chain(&chain, c._dir.path().join("r"), options(None), &mut none())
            .unwrap_err();
    assert!(
        matches!(err, aedb::Error::Backup(BackupError::OutOfOrder { .. })),
        "{err}"
    );
}

#[test]
fn a_backup_from_another_database_is_refused() {
    let c = chain();
    let other_dir = c._dir.path().join("other");
    let other = setup(&other_dir);
    load(&other, 0, 10);
    let other_full = c._dir.path().join("other-full");
    other.backup_full(&other_full, &mut none()).unwrap();
    other.shutdown().unwrap();
    let chain = vec![c.backups[0].clone(), other_full];
    let err =
        restore_from_backup_chain(&chain, c._dir.path().join("r"), options(None), &mut none())
            .unwrap_err();
    assert!(
        matches!(err, aedb::Error::Backup(BackupError::ForeignBackup { .. })),
        "{err}"
    );
}

#[test]
fn a_wrong_key_is_refused() {
    let c = chain();
    let wrong = RestoreOptions {
        config: AedbConfig::production([8; 32]).with_checkpoint_key(DATA_KEY),
        strict: true,
        target_lsn: None,
    };
    let err = restore_from_backup_chain(&c.backups, c._dir.path().join("r"), wrong, &mut none())
        .unwrap_err();
    assert!(
        matches!(err, aedb::Error::Backup(BackupError::WrongKey { .. })),
        "{err}"
    );
    // Right manifest key, no data key: the sealed files cannot be opened.
    let keyless = RestoreOptions {
        config: AedbConfig::production(KEY),
        strict: true,
        target_lsn: None,
    };
    let err = restore_from_backup_chain(&c.backups, c._dir.path().join("r"), keyless, &mut none())
        .unwrap_err();
    assert!(
        matches!(err, aedb::Error::Backup(BackupError::WrongKey { .. })),
        "{err}"
    );
}

#[test]
fn a_truncated_file_is_refused() {
    let c = chain();
    let seg = wal_files(&c.backups[2]).remove(0);
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..bytes.len() - 10]).unwrap();
    let err = restore_from_backup_chain(
        &c.backups,
        c._dir.path().join("r"),
        options(None),
        &mut none(),
    )
    .unwrap_err();
    assert!(
        matches!(err, aedb::Error::Backup(BackupError::TruncatedFile { .. })),
        "{err}"
    );
}

#[test]
fn backup_dirs_must_be_empty_and_backups_are_recorded_in_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let db = setup(&dir.path().join("db"));
    load(&db, 0, 20);
    let b = dir.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(b.join("x"), b"x").unwrap();
    let err = db.backup_full(&b, &mut none()).unwrap_err();
    assert!(
        matches!(err, aedb::Error::Backup(BackupError::NonEmptyBackupDir(_))),
        "{err}"
    );
    let full = db.backup_full(dir.path().join("f"), &mut none()).unwrap();
    db.shutdown().unwrap();
    let manifest = std::fs::read(dir.path().join("db").join("MANIFEST")).unwrap();
    let id = full.manifest.backup_id_hex();
    assert!(
        manifest.windows(id.len()).any(|w| w == id.as_bytes()),
        "BackupTaken with the backup id is in the database's MANIFEST"
    );
}

/// Backups taken while a workload commits restore to exactly the source's state at each
/// backup's LSN.
#[test]
fn hot_backups_under_load_restore_to_the_source_state_at_their_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(setup(&dir.path().join("db")));
    let history: Arc<Mutex<BTreeMap<Lsn, ReadSnapshot>>> = Arc::default();
    history.lock().unwrap().insert(
        db.snapshot().expect("snapshot").lsn(),
        db.snapshot().expect("snapshot"),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The worker reports the LSN of every commit it made (after recording its state).
    let (committed_tx, committed) = std::sync::mpsc::channel::<Lsn>();
    let worker = {
        let (db, history, stop) = (db.clone(), history.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || i < 200 {
                load(&db, i, 1);
                let s = db.snapshot().expect("snapshot");
                let lsn = s.lsn();
                history.lock().unwrap().insert(lsn, s);
                // Once the test has its backups it no longer listens; that is fine.
                let _ = committed_tx.send(lsn);
                i += 1;
            }
        })
    };
    // Before each backup, wait (on the worker's reports, not the clock) until the workload
    // has made COMMITS_BETWEEN more commits since the previous backup's end, so every
    // backup ends later than the one before it.
    const COMMITS_BETWEEN: u64 = 20;
    let mut backups = Vec::new();
    let mut ends: Vec<Lsn> = Vec::new();
    let start = db.snapshot().expect("snapshot").lsn();
    for k in 0..3 {
        let after = ends.last().copied().unwrap_or(start).get() + COMMITS_BETWEEN;
        loop {
            let lsn = committed
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("the workload keeps committing");
            if lsn.get() >= after {
                break;
            }
        }
        let b = dir.path().join(format!("b{k}"));
        let report = if k == 0 {
            db.backup_full(&b, &mut none()).unwrap()
        } else {
            db.backup_incremental(&b, &backups[k - 1], &mut none())
                .unwrap()
        };
        backups.push(b);
        ends.push(report.manifest.last_lsn);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    worker.join().unwrap();
    assert!(ends.windows(2).all(|w| w[0] < w[1]), "{ends:?}");
    let history = history.lock().unwrap();
    for k in 0..3 {
        let target = dir.path().join(format!("r{k}"));
        let report =
            restore_from_backup_chain(&backups[..=k], &target, options(None), &mut none()).unwrap();
        assert_eq!(report.lsn, ends[k]);
        let expected = history.get(&ends[k]).expect("the workload saw every LSN");
        assert_eq!(first_difference(&open_state(&target), expected), None);
    }
}

/// The rate limit is validated (at open and when changed) and a rate-limited backup is
/// complete: progress is reported chunk by chunk up to every byte, and it restores to the
/// source. (That the copy is paced to the rate is a wall-clock property, which tests do
/// not assert: the pacing sleeps in `CopyProgress::tick` take no injectable clock.)
#[test]
fn a_backup_rate_limit_is_validated_and_a_limited_backup_is_complete() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        AedbInstance::open(tmp.path().join("bad"), config().backup_rate_limit(1000)),
        Err(aedb::Error::Open(aedb::OpenError::Config(
            aedb::ConfigError::BackupRateLimit(1000)
        )))
    ));
    // The slowest allowed rate is accepted at open.
    AedbInstance::open(tmp.path().join("ok"), config().backup_rate_limit(1 << 20))
        .unwrap()
        .shutdown()
        .unwrap();
    let db = setup(&tmp.path().join("db"));
    load(&db, 0, 2000); // about 400 KB of checkpoint and WAL
    for too_slow in [0, 1, (1 << 20) - 1] {
        assert!(
            matches!(
                db.set_backup_rate_limit(Some(too_slow)),
                Err(aedb::Error::Config(aedb::ConfigError::BackupRateLimit(r))) if r == too_slow
            ),
            "{too_slow} bytes/s"
        );
    }
    db.set_backup_rate_limit(Some(1 << 20)).unwrap();
    let mut reports: Vec<(u64, u64)> = Vec::new();
    let report = db
        .backup_full(tmp.path().join("slow"), &mut |done, total| {
            reports.push((done, total))
        })
        .unwrap();
    assert!(report.bytes > 1 << 18, "{} bytes", report.bytes);
    // Progress: more than one report, never backwards, the total fixed, ending at every
    // byte of the backup.
    assert!(reports.len() > 1, "{reports:?}");
    assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0), "{reports:?}");
    assert!(
        reports.iter().all(|&(_, t)| t == report.bytes),
        "{reports:?}"
    );
    assert_eq!(reports.last(), Some(&(report.bytes, report.bytes)));
    let source = db.snapshot().expect("snapshot");
    assert_eq!(report.manifest.last_lsn, source.lsn());
    db.set_backup_rate_limit(None).unwrap();
    db.shutdown().unwrap();
    let restored = tmp.path().join("restored");
    restore_from_backup_chain(
        &[tmp.path().join("slow")],
        &restored,
        options(None),
        &mut none(),
    )
    .unwrap();
    assert_eq!(first_difference(&open_state(&restored), &source), None);
}

/// The first difference between two snapshots' content, if any.
fn first_difference(a: &ReadSnapshot, b: &ReadSnapshot) -> Option<String> {
    a.first_difference(b)
}

/// Commits `txs` transactions of `per_tx` puts each (keys `bulk{i:08}`), then returns.
fn load_bulk(db: &AedbInstance, from: u32, txs: u32, per_tx: u32) {
    for t in 0..txs {
        let mut tx = Transaction::new();
        for j in 0..per_tx {
            let i = from + t * per_tx + j;
            tx = tx.kv_put(
                &ns(),
                KvKey::new(format!("bulk{i:08}")).unwrap(),
                KvValue::new(format!("value-{i}-{}", "y".repeat(80))).unwrap(),
            );
        }
        db.commit_with(tx, Finality::Durable).unwrap();
    }
}

/// The run files (by name) the data directory `dir` holds.
fn data_runs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".ckpt"))
        .collect();
    v.sort();
    v
}

/// Replaces `path` by a copy with one byte flipped (a new file renamed over it): a hard
/// link the backup shares with the source database is left alone.
fn replace_flipped(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x55;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// An incremental taken after flushes and a full compaction (the WAL its parent ended in
/// retired, every run replaced) holds the new runs and the WAL after them, and the chain
/// restores exactly: to each backup's end, to an LSN inside the last incremental's WAL,
/// and, inside the gap the retired WAL leaves, the restore is refused with a typed error.
#[test]
fn an_incremental_after_flushes_and_a_compaction_restores_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("db");
    let db = setup(&source);
    let mut history = BTreeMap::new();
    load_recorded(&db, 0, 200, &mut history);
    db.checkpoint_now().unwrap();
    load_recorded(&db, 200, 100, &mut history);
    let full_dir = dir.path().join("full");
    let full = db.backup_full(&full_dir, &mut none()).unwrap();
    let full_state = db.snapshot().unwrap();
    // More than a segment of commits, two flushes and a full compaction: the segment
    // the full backup ended in is retired, and every run it holds is replaced.
    load_recorded(&db, 1000, 400, &mut history);
    db.checkpoint_now().unwrap();
    load_recorded(&db, 2000, 100, &mut history);
    db.checkpoint_now().unwrap();
    db.compact_now().unwrap();
    load_recorded(&db, 3000, 50, &mut history);
    let inc1_dir = dir.path().join("inc1");
    let inc1 = db
        .backup_incremental(&inc1_dir, &full_dir, &mut none())
        .unwrap();
    let inc1_state = db.snapshot().unwrap();
    // A second incremental with a flush but no compaction: it inherits inc1's runs. (Few
    // commits: the segment inc1 ended in stays active, so the flush cannot retire it.)
    load_recorded(&db, 4000, 10, &mut history);
    db.checkpoint_now().unwrap();
    load_recorded(&db, 5000, 10, &mut history);
    let inc2_dir = dir.path().join("inc2");
    let inc2 = db
        .backup_incremental(&inc2_dir, &inc1_dir, &mut none())
        .unwrap();
    let inc2_state = db.snapshot().unwrap();
    db.shutdown().unwrap();

    let set1 = inc1
        .manifest
        .runs
        .clone()
        .expect("a format-2 incremental lists its runs");
    assert!(
        !set1.wal_from_parent,
        "the WAL after the full backup was retired"
    );
    assert!(set1.base_lsn > full.manifest.last_lsn);
    assert!(
        set1.inherited.is_empty(),
        "the compaction replaced every run"
    );
    assert!(inc1.manifest.run_files().count() >= 1);
    let set2 = inc2.manifest.runs.clone().expect("run set");
    assert!(set2.wal_from_parent, "no flush retired inc1's last segment");
    let inc1_runs: Vec<String> = inc1
        .manifest
        .run_files()
        .map(|(f, _)| f.name.clone())
        .collect();
    assert_eq!(
        set2.inherited
            .iter()
            .map(|r| aedb_checkpoint::run_file_name(r.file_id))
            .collect::<Vec<_>>(),
        inc1_runs,
        "inc2 inherits inc1's runs"
    );
    assert_eq!(inc2.manifest.run_files().count(), 1, "the one new flush");
    // inc2 copies only the new bytes of the segment inc1 ended in.
    let tails = inc2
        .manifest
        .wal_files()
        .filter(|f| matches!(f.kind, aedb::backup::BackupFileKind::WalTail { .. }))
        .count();
    assert_eq!(tails, 1, "{:?}", inc2.manifest.files);

    let chain = vec![full_dir.clone(), inc1_dir.clone(), inc2_dir.clone()];
    for (k, expected) in [(1, &full_state), (2, &inc1_state), (3, &inc2_state)] {
        let target = dir.path().join(format!("r{k}"));
        let report =
            restore_from_backup_chain(&chain[..k], &target, options(None), &mut none()).unwrap();
        assert_eq!(report.lsn, expected.lsn());
        assert_eq!(
            first_difference(&open_state(&target), expected),
            None,
            "{k}"
        );
    }
    // Inside inc2's WAL (before its newest flush): inc1's runs plus the WAL, exactly.
    let mid = Lsn::new(inc1.manifest.last_lsn.get() + 5);
    assert!(mid < set2.base_lsn);
    let target = dir.path().join("mid");
    let report =
        restore_from_backup_chain(&chain, &target, options(Some(mid)), &mut none()).unwrap();
    assert_eq!(report.lsn, mid);
    assert_eq!(first_difference(&open_state(&target), &history[&mid]), None);
    // The restored directory reads exactly from its run set's LSN on (those runs may
    // have been compacted to any floor up to it) and refuses earlier LSNs, typed.
    let restored = AedbInstance::open(&target, config()).unwrap();
    let before = Lsn::new(set1.base_lsn.get() - 1);
    assert_eq!(
        restored.snapshot_at(before).unwrap_err().code(),
        "read.too_old"
    );
    let at_base = restored.snapshot_at(set1.base_lsn).unwrap();
    assert_eq!(first_difference(&at_base, &history[&set1.base_lsn]), None);
    drop(at_base);
    restored.shutdown().unwrap();
    // At inc1's run-set LSN exactly, and inside the full backup's WAL: reachable.
    for lsn in [set1.base_lsn, Lsn::new(full.manifest.first_lsn.get() + 5)] {
        let target = dir.path().join(format!("at{}", lsn.get()));
        let report =
            restore_from_backup_chain(&chain, &target, options(Some(lsn)), &mut none()).unwrap();
        assert_eq!(report.lsn, lsn);
        assert_eq!(first_difference(&open_state(&target), &history[&lsn]), None);
    }
    // Between the full backup's end and inc1's runs: the WAL was retired before inc1
    // was taken, so no file holds that state. Refused, never approximated.
    let gap = Lsn::new(full.manifest.last_lsn.get() + 1);
    let target = dir.path().join("gap");
    let err =
        restore_from_backup_chain(&chain, &target, options(Some(gap)), &mut none()).unwrap_err();
    match err {
        aedb::Error::Backup(BackupError::TargetUnreachable {
            target: t,
            after,
            before,
            ..
        }) => {
            assert_eq!(t, gap);
            assert_eq!(after, full.manifest.last_lsn);
            assert_eq!(before, set1.base_lsn);
        }
        other => panic!("{other}"),
    }
    assert!(is_empty_or_absent(&target));
}

/// After 10 000 keys are loaded and checkpointed and a full backup taken, ten more puts
/// and a flush make an incremental of one small run and the WAL tail: a small fraction
/// of the full backup's bytes.
#[test]
fn an_incremental_costs_the_change_not_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = setup(&dir.path().join("db"));
    load_bulk(&db, 0, 100, 100);
    db.checkpoint_now().unwrap();
    let full_dir = dir.path().join("full");
    let full = db.backup_full(&full_dir, &mut none()).unwrap();
    load_bulk(&db, 10_000, 10, 1);
    db.checkpoint_now().unwrap();
    let inc_dir = dir.path().join("inc");
    let inc = db
        .backup_incremental(&inc_dir, &full_dir, &mut none())
        .unwrap();
    let expected = db.snapshot().unwrap();
    db.shutdown().unwrap();

    let on_disk = |m: &BackupManifest| m.files.iter().map(|f| f.len).sum::<u64>();
    assert_eq!(inc.bytes, on_disk(&inc.manifest));
    assert_eq!(full.bytes, on_disk(&full.manifest));
    eprintln!(
        "full backup: {} bytes ({} run files, {} linked); incremental: {} bytes ({} run \
         files, {} WAL pieces)",
        full.bytes,
        full.manifest.run_files().count(),
        full.linked_files,
        inc.bytes,
        inc.manifest.run_files().count(),
        inc.manifest.wal_files().count(),
    );
    assert!(full.bytes > 1_000_000, "{} bytes", full.bytes);
    assert!(
        inc.bytes * 50 < full.bytes,
        "incremental {} bytes vs full {} bytes",
        inc.bytes,
        full.bytes
    );
    // The new run is the only run it holds; every run of the full is inherited.
    let set = inc.manifest.runs.clone().unwrap();
    assert_eq!(inc.manifest.run_files().count(), 1);
    let full_ids: Vec<u64> = full
        .manifest
        .run_files()
        .map(|(f, _)| aedb_checkpoint::parse_run_file_name(&f.name).unwrap())
        .collect();
    assert_eq!(
        set.inherited.iter().map(|r| r.file_id).collect::<Vec<_>>(),
        full_ids
    );
    let target = dir.path().join("r");
    restore_from_backup_chain(&[full_dir, inc_dir], &target, options(None), &mut none()).unwrap();
    assert_eq!(first_difference(&open_state(&target), &expected), None);
}

/// A run file inside an incremental that was changed, removed, or (by someone holding
/// the backup key) swapped in the listing for one no earlier backup holds is refused,
/// naming the file; so is a tampered run the incremental inherits from the full backup.
#[test]
fn a_tampered_run_inside_an_incremental_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = setup(&dir.path().join("db"));
    load(&db, 0, 100);
    db.checkpoint_now().unwrap();
    let full_dir = dir.path().join("full");
    db.backup_full(&full_dir, &mut none()).unwrap();
    load(&db, 1000, 50);
    db.checkpoint_now().unwrap();
    let inc_dir = dir.path().join("inc");
    let inc = db
        .backup_incremental(&inc_dir, &full_dir, &mut none())
        .unwrap();
    db.shutdown().unwrap();
    let chain = vec![full_dir.clone(), inc_dir.clone()];
    let target = dir.path().join("r");
    let restore = || restore_from_backup_chain(&chain, &target, options(None), &mut none());

    let (new_run, _) = inc.manifest.run_files().next().expect("the new run");
    let run_path = inc_dir.join("checkpoints").join(&new_run.name);
    let original = std::fs::read(&run_path).unwrap();
    replace_flipped(&run_path, original.len() / 2);
    match restore().unwrap_err() {
        aedb::Error::Backup(BackupError::TamperedFile { path, .. }) => assert_eq!(path, run_path),
        other => panic!("{other}"),
    }
    assert!(is_empty_or_absent(&target));
    std::fs::remove_file(&run_path).unwrap();
    match restore().unwrap_err() {
        aedb::Error::Backup(BackupError::MissingFile(path)) => assert_eq!(path, run_path),
        other => panic!("{other}"),
    }
    std::fs::write(&run_path, &original).unwrap();
    restore_from_backup_chain(&chain, dir.path().join("ok"), options(None), &mut none()).unwrap();

    // A run the incremental inherits, tampered in the full backup.
    let inherited = inc.manifest.runs.as_ref().unwrap().inherited[0];
    let full_run = full_dir
        .join("checkpoints")
        .join(aedb_checkpoint::run_file_name(inherited.file_id));
    let full_original = std::fs::read(&full_run).unwrap();
    replace_flipped(&full_run, full_original.len() / 2);
    match restore().unwrap_err() {
        aedb::Error::Backup(BackupError::TamperedFile { path, .. }) => assert_eq!(path, full_run),
        other => panic!("{other}"),
    }
    std::fs::write(&full_run, &full_original).unwrap();

    // Re-signed by a holder of the backup key, claiming an inherited run with another
    // hash: no earlier backup holds it, so the chain is refused.
    let manifest_path = inc_dir.join(BACKUP_MANIFEST_FILE);
    let mut forged = inc.manifest.clone();
    forged.runs.as_mut().unwrap().inherited[0].sha256 = sha256(b"another run");
    let (key, _) = backup_key(&config(), forged.database_id, None).unwrap();
    std::fs::write(&manifest_path, forged.encode(&key)).unwrap();
    match restore().unwrap_err() {
        aedb::Error::Backup(BackupError::ChainMismatch { path, detail }) => {
            assert_eq!(path, manifest_path);
            assert!(
                matches!(
                    detail,
                    aedb::backup::ChainBreak::InheritedRunMissing { file_id }
                        if file_id == inherited.file_id
                ),
                "{detail}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(is_empty_or_absent(&target));
}

/// On one file system a full backup hard-links the run files (the backup's and the
/// database's names share the inode; nothing of them is copied), and after a compaction
/// deletes the originals, and even after the whole source directory is gone, the backup
/// restores. With links disabled the runs are copied.
#[test]
fn a_full_backup_hard_links_runs_that_outlive_their_compaction() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("db");
    let db = setup(&source);
    for round in 0..3 {
        load(&db, round * 100, 60);
        db.checkpoint_now().unwrap();
    }
    let full_dir = dir.path().join("full");
    let full = db.backup_full(&full_dir, &mut none()).unwrap();
    let runs: Vec<String> = full
        .manifest
        .run_files()
        .map(|(f, _)| f.name.clone())
        .collect();
    assert!(runs.len() >= 3, "{runs:?}");
    assert_eq!(full.linked_files, runs.len());
    assert_eq!(full.copied_run_files, 0);
    assert_eq!(full.link_fallback, None);
    let run_bytes: u64 = full.manifest.run_files().map(|(f, _)| f.len).sum();
    assert_eq!(full.linked_bytes, run_bytes);
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    for name in &runs {
        let live = source.join("checkpoints").join(name);
        let backed = full_dir.join("checkpoints").join(name);
        assert_eq!(ino(&live), ino(&backed), "{name} is linked");
        assert_eq!(std::fs::metadata(&live).unwrap().nlink(), 2);
    }

    // With links disabled: copies, other inodes.
    let db2_dir = dir.path().join("db2");
    let db2 = AedbInstance::open(&db2_dir, config().backup_hard_links(false)).unwrap();
    db2.create_project("p").unwrap();
    db2.create_scope("p", "s").unwrap();
    load(&db2, 0, 20);
    let copy_dir = dir.path().join("copied");
    let copied = db2.backup_full(&copy_dir, &mut none()).unwrap();
    assert_eq!(copied.linked_files, 0);
    assert!(copied.copied_run_files >= 1);
    for (f, _) in copied.manifest.run_files() {
        assert_ne!(
            ino(&db2_dir.join("checkpoints").join(&f.name)),
            ino(&copy_dir.join("checkpoints").join(&f.name))
        );
    }
    db2.shutdown().unwrap();

    // The backup restores to the source's state; then, with no snapshot left to pin
    // them, a full compaction replaces every run and deletes the originals.
    let expected = db.snapshot().unwrap();
    assert_eq!(expected.lsn(), full.manifest.last_lsn);
    let before = dir.path().join("before");
    restore_from_backup_chain(
        std::slice::from_ref(&full_dir),
        &before,
        options(None),
        &mut none(),
    )
    .unwrap();
    assert_eq!(first_difference(&open_state(&before), &expected), None);
    drop(expected);
    db.compact_now().unwrap();
    db.shutdown().unwrap();
    let live_after = data_runs(&source);
    for name in &runs {
        assert!(
            !live_after.iter().any(|p| p.ends_with(name)),
            "{name} was compacted away: {live_after:?}"
        );
        assert_eq!(
            std::fs::metadata(full_dir.join("checkpoints").join(name))
                .unwrap()
                .nlink(),
            1
        );
    }
    std::fs::remove_dir_all(&source).unwrap();
    let target = dir.path().join("r");
    restore_from_backup_chain(&[full_dir], &target, options(None), &mut none()).unwrap();
    assert_eq!(
        first_difference(&open_state(&target), &open_state(&before)),
        None
    );
}

/// Where the file system cannot link (`EXDEV`: the backup on another device), the full
/// backup copies the runs, says why, and restores all the same.
#[test]
fn a_full_backup_copies_runs_where_links_fail_across_devices() {
    use aedb_fs::{FaultOp, SimFault, SimFs};
    let sim = SimFs::new(11);
    let sim_config = || config().with_file_system(sim.shared());
    let db = AedbInstance::open("/db", sim_config()).unwrap();
    db.create_project("p").unwrap();
    db.create_scope("p", "s").unwrap();
    load(&db, 0, 40);
    db.checkpoint_now().unwrap();
    load(&db, 100, 40);
    db.checkpoint_now().unwrap();
    sim.fail_next(FaultOp::Link, SimFault::CrossDevice);
    let report = db.backup_full("/backup/full", &mut none()).unwrap();
    let runs = report.manifest.run_files().count();
    assert!(runs >= 2);
    assert_eq!(
        report.linked_files, 0,
        "one EXDEV switches the backup to copies"
    );
    assert_eq!(report.copied_run_files, runs);
    let why = report
        .link_fallback
        .clone()
        .expect("the fallback is reported");
    assert!(why.contains("/backup/full/checkpoints/run-"), "{why}");
    // A later backup links again.
    let linked = db.backup_full("/backup/full2", &mut none()).unwrap();
    assert_eq!(linked.linked_files, runs);
    let expected = db.snapshot().unwrap();
    db.shutdown().unwrap();
    for b in ["/backup/full", "/backup/full2"] {
        let target = PathBuf::from(format!("/restored{}", b.replace('/', "-")));
        let options = RestoreOptions {
            config: sim_config(),
            strict: true,
            target_lsn: None,
        };
        restore_from_backup_chain(&[PathBuf::from(b)], &target, options, &mut none()).unwrap();
        let db = AedbInstance::open(&target, sim_config()).unwrap();
        assert_eq!(first_difference(&db.snapshot().unwrap(), &expected), None);
        db.shutdown().unwrap();
    }
}
