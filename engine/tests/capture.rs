//! Forensic capture (`capture`, `capture_as`, `capture_offline`, `verify_capture`).
//!
//! A capture taken while one thread commits numbered puts and checkpoints every few
//! commits (so checkpoint files and WAL segments are retired throughout) must be a data
//! directory `verify` and `check invariants` accept, whose state is exactly a prefix of
//! the committed history; its authenticated listing must catch a changed, removed or
//! added file and a changed listing; only a `GlobalAdmin` may take one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aedb::offline::{CheckStatus, check_invariants, verify_data_dir};
use aedb::{
    AccessError, AedbConfig, AedbInstance, BackupError, BackupKind, CallerId, Error, Finality,
    KvKey, KvValue, Namespace, Permission, SecureConfig, Transaction, capture_offline,
    verify_capture,
};

const KEY: [u8; 32] = [0x5d; 32];

fn config() -> AedbConfig {
    AedbConfig::production(KEY)
        .with_checkpoint_key([0x6e; 32])
        .segment_size(64 * 1024)
        .preallocate(false)
}

fn ns() -> Namespace {
    Namespace::parse("cap", "main").expect("valid namespace")
}

fn put(n: u64) -> Transaction {
    Transaction::new().kv_put(
        &ns(),
        KvKey::new(format!("k{n:06}")).expect("key"),
        KvValue::new(format!("{n}:{}", "x".repeat(700))).expect("value"),
    )
}

/// `verify` and `check invariants` accept `capture`, and its state holds exactly the
/// puts of `history` up to its LSN (`history[lsn]` = the put at that LSN). Returns the
/// capture's LSN.
fn assert_prefix_of_history(capture: &Path, history: &[Option<u64>]) -> u64 {
    let verified =
        verify_data_dir(capture, &config()).unwrap_or_else(|e| panic!("verify capture: {e}"));
    let checks = check_invariants(capture, &config()).expect("check invariants runs");
    for c in &checks {
        assert_eq!(c.status, CheckStatus::Pass, "{}: {}", c.name, c.detail);
    }
    let lsn = verified.state.lsn().get();
    let upto = usize::try_from(lsn).expect("lsn fits");
    assert!(
        upto < history.len(),
        "the capture is past the recorded history"
    );
    for (at, n) in history.iter().enumerate().skip(1) {
        let Some(n) = n else { continue };
        let entry = verified
            .state
            .kv_get(&ns(), format!("k{n:06}").as_bytes())
            .expect("read");
        if at <= upto {
            let entry = entry.unwrap_or_else(|| panic!("put {n} at lsn {at} missing"));
            assert_eq!(entry.lsn.get(), at as u64);
        } else {
            assert!(entry.is_none(), "put {n} at lsn {at} is past the capture");
        }
    }
    lsn
}

/// Waits (bounded) until the committer has recorded every LSN up to `lsn`.
fn history_through(history: &Mutex<Vec<Option<u64>>>, lsn: u64) -> Vec<Option<u64>> {
    let want = usize::try_from(lsn).expect("lsn fits");
    for _ in 0..10_000 {
        let h = history.lock().expect("history");
        if h.len() > want {
            return h.clone();
        }
        drop(h);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("the committer did not record lsn {lsn} within 10 s");
}

#[test]
fn captures_racing_commits_and_retirement_verify_and_are_prefixes_of_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(AedbInstance::open(dir.path(), config()).expect("open"));
    db.create_project("cap").expect("project");
    db.create_scope("cap", "main").expect("scope");
    let base = db.snapshot().expect("snapshot").lsn().get();
    let history: Arc<Mutex<Vec<Option<u64>>>> =
        Arc::new(Mutex::new(vec![None; usize::try_from(base).unwrap() + 1]));
    let stop = Arc::new(AtomicBool::new(false));
    let committer = {
        let (db, history, stop) = (db.clone(), history.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 3000 {
                let lsn = db
                    .commit_with(put(n), Finality::Durable)
                    .expect("commit")
                    .lsn;
                let mut h = history.lock().expect("history");
                let at = usize::try_from(lsn.get()).expect("lsn fits");
                if h.len() <= at {
                    h.resize(at + 1, None);
                }
                h[at] = Some(n);
                drop(h);
                n += 1;
                if n.is_multiple_of(20) {
                    db.checkpoint_now().expect("checkpoint");
                }
            }
            n
        })
    };

    let mut lsns = Vec::new();
    for round in 0..6 {
        // Let commits (and checkpoints) happen between captures.
        let target = db.snapshot().expect("snapshot").lsn().get() + 50;
        for _ in 0..100_000 {
            if db.snapshot().expect("snapshot").lsn().get() >= target {
                break;
            }
            std::thread::yield_now();
        }
        let cap = out.path().join(format!("capture-{round}"));
        let report = db
            .capture(&cap, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("capture {round}: {e}"));
        assert_eq!(report.listing.kind, BackupKind::Capture);
        let listing = verify_capture(&cap, &config()).expect("listing verifies");
        assert_eq!(listing, report.listing);
        let published = db.snapshot().expect("snapshot").lsn().get();
        let history = history_through(&history, published);
        let lsn = assert_prefix_of_history(&cap, &history);
        // The WAL is copied up to the frame synced at the barrier: recovery of the
        // capture reaches exactly that LSN.
        assert_eq!(lsn, report.listing.last_lsn.get(), "capture {round}");
        assert!(lsn > base);
        lsns.push(lsn);
    }
    stop.store(true, Ordering::Relaxed);
    let committed = committer.join().expect("committer");
    assert!(committed > 0);
    assert!(
        lsns.windows(2).all(|w| w[0] <= w[1]),
        "captures go back in time: {lsns:?}"
    );
    Arc::try_unwrap(db)
        .expect("sole owner")
        .shutdown()
        .expect("shutdown");
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    let i = usize::try_from(at).expect("fits").min(bytes.len() - 1);
    bytes[i] ^= 0x40;
    std::fs::write(path, bytes).expect("write");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let dst = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), dst).expect("copy");
        }
    }
}

#[test]
fn the_listing_detects_changed_removed_and_added_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let db = AedbInstance::open(dir.path(), config()).expect("open");
    db.create_project("cap").expect("project");
    db.create_scope("cap", "main").expect("scope");
    for n in 0..200 {
        db.commit_with(put(n), Finality::Durable).expect("commit");
        if n == 100 {
            db.checkpoint_now().expect("checkpoint");
        }
    }
    let cap = out.path().join("capture");
    let report = db.capture(&cap, &mut |_, _| {}).expect("capture");
    db.shutdown().expect("shutdown");
    verify_capture(&cap, &config()).expect("untouched capture verifies");
    let tampered = |name: &str, damage: &dyn Fn(&Path)| -> Error {
        let copy = out.path().join(name);
        copy_dir(&cap, &copy);
        damage(&copy);
        verify_capture(&copy, &config()).expect_err(name)
    };

    let wal = report
        .listing
        .files
        .iter()
        .find(|f| f.kind == aedb::backup::BackupFileKind::WalSegment)
        .expect("a WAL segment");
    let wal_name = wal.name.clone();
    let e = tampered("flipped-wal", &|c| {
        flip_byte(&c.join("wal").join(&wal_name), 100)
    });
    assert!(
        matches!(e, Error::Backup(BackupError::TamperedFile { .. })),
        "{e}"
    );
    assert_eq!(e.code(), "backup.tampered");

    let e = tampered("flipped-manifest", &|c| flip_byte(&c.join("MANIFEST"), 40));
    assert!(
        matches!(e, Error::Backup(BackupError::TamperedFile { .. })),
        "{e}"
    );

    let e = tampered("removed-wal", &|c| {
        std::fs::remove_file(c.join("wal").join(&wal_name)).expect("rm")
    });
    assert!(
        matches!(e, Error::Backup(BackupError::MissingFile(_))),
        "{e}"
    );

    let e = tampered("added-checkpoint", &|c| {
        std::fs::write(
            c.join("checkpoints").join(format!("{:020}.ckpt", 999_999)),
            b"planted",
        )
        .expect("plant")
    });
    assert!(
        matches!(
            &e,
            Error::Backup(BackupError::TamperedFile { detail, .. })
                if matches!(**detail, aedb::backup::Tamper::Unlisted)
        ),
        "{e}"
    );

    let e = tampered("changed-listing", &|c| flip_byte(&c.join("CAPTURE"), 60));
    assert_eq!(e.class(), aedb::ErrorClass::Integrity, "{e}");

    let other = AedbConfig::production([0x01; 32]);
    let e = verify_capture(&cap, &other).expect_err("another key");
    assert!(
        matches!(e, Error::Backup(BackupError::WrongKey { .. })),
        "{e}"
    );
}

#[test]
fn offline_capture_verifies_and_is_refused_while_the_directory_is_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let db = AedbInstance::open(dir.path(), config()).expect("open");
    db.create_project("cap").expect("project");
    db.create_scope("cap", "main").expect("scope");
    let mut history = vec![None; usize::try_from(db.snapshot().unwrap().lsn().get()).unwrap() + 1];
    for n in 0..150 {
        let lsn = db
            .commit_with(put(n), Finality::Durable)
            .expect("commit")
            .lsn;
        let at = usize::try_from(lsn.get()).unwrap();
        history.resize(history.len().max(at + 1), None);
        history[at] = Some(n);
        if n == 70 {
            db.checkpoint_now().expect("checkpoint");
        }
    }
    let refused = capture_offline(
        dir.path(),
        &out.path().join("busy"),
        &config(),
        &mut |_, _| {},
    )
    .expect_err("the directory is open");
    assert_eq!(refused.code(), "offline.locked");
    db.shutdown().expect("shutdown");

    let cap = out.path().join("offline");
    let report = capture_offline(dir.path(), &cap, &config(), &mut |_, _| {}).expect("capture");
    assert!(
        report
            .listing
            .files
            .iter()
            .any(|f| f.kind == aedb::backup::BackupFileKind::Manifest)
    );
    verify_capture(&cap, &config()).expect("listing verifies");
    let lsn = assert_prefix_of_history(&cap, &history);
    assert_eq!(
        usize::try_from(lsn).unwrap(),
        history.len() - 1,
        "everything durable"
    );
}

#[test]
fn only_a_global_admin_may_capture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let root = CallerId::new("root").unwrap();
    let db = AedbInstance::open_secure(dir.path(), config(), SecureConfig::new(root.clone()))
        .expect("open secure");
    db.create_project_as(&root, "cap").expect("project");
    db.create_scope_as(&root, "cap", "main").expect("scope");
    let alice = CallerId::new("alice").unwrap();
    db.grant_as(
        &root,
        &alice,
        Permission::ProjectAdmin {
            project: aedb::ProjectName::new("cap").unwrap(),
        },
        false,
    )
    .expect("grant");
    db.commit_as(&root, put(1)).expect("commit");

    let denied = db.capture_as(&alice, out.path().join("alice"), &mut |_, _| {});
    assert!(
        matches!(denied, Err(Error::Access(AccessError::Denied(_)))),
        "{denied:?}"
    );
    assert!(!out.path().join("alice").join("CAPTURE").exists());
    let anonymous = db.capture(out.path().join("anon"), &mut |_, _| {});
    assert!(
        matches!(anonymous, Err(Error::Access(AccessError::CallerRequired))),
        "{anonymous:?}"
    );
    let cap = out.path().join("root");
    db.capture_as(&root, &cap, &mut |_, _| {})
        .expect("admin capture");
    db.shutdown().expect("shutdown");
    verify_capture(&cap, &config()).expect("listing verifies");
    verify_data_dir(&cap, &config()).expect("verify runs on the capture");
    let checks = check_invariants(&cap, &config()).expect("check invariants runs");
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Pass),
        "{checks:?}"
    );
}
