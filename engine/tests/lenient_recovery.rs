//! Lenient recovery opens after a power cut: under the development profile (no fsync,
//! `Recovery::TruncateAtCorruption`) a power loss may drop any unsynced byte, including
//! the header of the newest WAL segment. Each test builds a directory, then damages it
//! the way a power cut does (the lost bytes are zero-length files, truncated headers or
//! zero-filled ranges), and checks the directory opens holding a dense prefix of the
//! commits — every commit in the bytes that survived — and says what it cut.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use aedb::{AedbConfig, AedbInstance, Finality, KvKey, KvValue, Lsn, Namespace, Transaction};

fn ns() -> Namespace {
    Namespace::parse("dev", "main").expect("valid namespace")
}

fn dev() -> AedbConfig {
    AedbConfig::development()
        .checkpoint_on_shutdown(false)
        .segment_size(64 * 1024)
}

/// Commits `n` puts `key-0..n` (one per commit) after the namespace; returns the LSN of
/// the last one.
fn populate(dir: &Path, n: usize) -> u64 {
    let db = AedbInstance::open(dir, dev()).expect("open");
    db.create_project("dev").expect("project");
    db.create_scope("dev", "main").expect("scope");
    let mut last = 0;
    for i in 0..n {
        let key = KvKey::new(format!("key-{i}")).expect("key");
        let value = KvValue::new(vec![i as u8; 4000]).expect("value");
        last = db
            .commit_with(
                Transaction::new().kv_put(&ns(), key, value),
                Finality::Durable,
            )
            .expect("commit")
            .lsn
            .get();
    }
    db.shutdown().expect("shutdown");
    last
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.join(aedb::WAL_DIR))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    paths.sort();
    paths
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .set_len(len)
        .expect("truncate");
}

fn zero(path: &Path, from: u64, len: usize) {
    let mut f = OpenOptions::new().write(true).open(path).expect("open");
    f.seek(SeekFrom::Start(from)).expect("seek");
    f.write_all(&vec![0u8; len]).expect("zero");
}

/// Reopens (development profile) and checks the keys form a dense prefix `key-0..k` of
/// length at least `at_least`; returns `k`. The instance must then keep committing.
fn reopen_prefix(dir: &Path, at_least: usize, total: usize) -> usize {
    let db = AedbInstance::open(dir, dev()).unwrap_or_else(|e| panic!("reopen: {e}"));
    let snap = db.snapshot().expect("snapshot");
    let present: Vec<bool> = (0..total)
        .map(|i| {
            snap.kv_get(&ns(), format!("key-{i}").as_bytes())
                .map(|e| e.is_some())
                .unwrap_or(false)
        })
        .collect();
    let k = present.iter().take_while(|p| **p).count();
    assert!(
        present[k..].iter().all(|p| !p),
        "the recovered keys are not a prefix: {present:?}"
    );
    assert!(
        k >= at_least,
        "only {k} of the {at_least} surviving commits"
    );
    if snap.has_project(&aedb::ProjectName::new("dev").expect("valid")) {
        db.kv_put(&ns(), b"after", b"reopen".as_slice())
            .expect("commit after reopen");
    }
    db.shutdown().expect("shutdown");
    k
}

#[test]
fn only_segment_lost_its_whole_file_contents() {
    let dir = tempfile::tempdir().expect("tempdir");
    populate(dir.path(), 3);
    let segs = segments(dir.path());
    for seg in &segs {
        truncate(seg, 0);
    }
    let db = AedbInstance::open(dir.path(), dev()).expect("a zero-length WAL opens");
    assert!(db.recovery_report().corruption.is_some() || db.recovery_report().fresh);
    db.shutdown().expect("shutdown");
    reopen_prefix(dir.path(), 0, 3);
}

#[test]
fn only_segment_has_a_truncated_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    populate(dir.path(), 3);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 1, "one segment: {segs:?}");
    truncate(&segs[0], 30);
    reopen_prefix(dir.path(), 0, 3);
}

#[test]
fn only_segment_has_a_zero_filled_header_sector() {
    let dir = tempfile::tempdir().expect("tempdir");
    populate(dir.path(), 3);
    let segs = segments(dir.path());
    zero(&segs[0], 0, 512);
    reopen_prefix(dir.path(), 0, 3);
}

#[test]
fn newest_of_several_segments_lost_its_header() {
    for damage in ["empty", "short", "zeroed"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let total = 60;
        populate(dir.path(), total);
        let segs = segments(dir.path());
        assert!(
            segs.len() >= 3,
            "{damage}: rotation made {} segments",
            segs.len()
        );
        let newest = segs.last().expect("a segment");
        match damage {
            "empty" => truncate(newest, 0),
            "short" => truncate(newest, 17),
            _ => zero(newest, 0, 4096),
        }
        // Every commit of the sealed segments before it survives.
        let before = reopen_prefix(dir.path(), 1, total);
        assert!(
            before < total,
            "{damage}: the damaged segment's commits are gone"
        );
    }
}

#[test]
fn newest_segment_lost_its_unsynced_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let total = 60;
    populate(dir.path(), total);
    let segs = segments(dir.path());
    let newest = segs.last().expect("a segment");
    let len = std::fs::metadata(newest).expect("metadata").len();
    zero(newest, 1024, (len - 1024) as usize);
    reopen_prefix(dir.path(), 1, total);
}

#[test]
fn only_segment_after_a_checkpoint_lost_its_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let total = 60;
    populate(dir.path(), total);
    let db = AedbInstance::open(dir.path(), dev()).expect("open");
    db.checkpoint_now().expect("checkpoint");
    db.shutdown().expect("shutdown");
    // The checkpoint retired every sealed segment; the newest one loses its header.
    let segs = segments(dir.path());
    let newest = segs.last().expect("a segment");
    zero(newest, 0, 512);
    assert_eq!(reopen_prefix(dir.path(), total, total), total);
    // The fresh log continues after the checkpoint, and so does the next open.
    reopen_prefix(dir.path(), total, total);
}

#[test]
fn strict_recovery_still_refuses_a_lost_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || AedbConfig::production([3; 32]).checkpoint_on_shutdown(false);
    let db = AedbInstance::open(dir.path(), config()).expect("open");
    db.create_project("dev").expect("project");
    db.shutdown().expect("shutdown");
    let segs = segments(dir.path());
    zero(&segs[0], 0, 512);
    match AedbInstance::open(dir.path(), config()) {
        Err(aedb::Error::Open(aedb::OpenError::Recovery(e))) => match *e {
            aedb::StartError::Wal(aedb_wal::RecoverError::Corrupt {
                path,
                offset: 0,
                corruption: aedb_wal::Corruption::Header(_),
            }) => assert_eq!(path, segs[0]),
            other => panic!("strict open of a segment without header: {other:?}"),
        },
        other => panic!("strict open of a segment without header: {other:?}"),
    }
}

/// A crash while the manifest is being created or compacted leaves a staging copy
/// (`MANIFEST.tmp`) of any length beside the manifest in place, or no manifest at all on
/// a first open: the next open uses what is in place (or creates the database afresh)
/// and removes the copy, in every profile.
#[test]
fn a_stale_manifest_staging_copy_is_removed() {
    for profile in ["production", "development"] {
        let config = || match profile {
            "production" => AedbConfig::production([9; 32]).checkpoint_on_shutdown(false),
            _ => dev(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let manifest = dir.path().join("MANIFEST");
        let staged = dir.path().join("MANIFEST.tmp");
        // First open crashed before the rename: only the staging copy exists.
        std::fs::write(&staged, b"partial manifest").expect("stage");
        let db = AedbInstance::open(dir.path(), config()).expect("first open after the crash");
        assert!(!staged.exists(), "{profile}: the staging copy is gone");
        db.create_project("dev").expect("project");
        db.shutdown().expect("shutdown");
        let before = std::fs::read(&manifest).expect("manifest");
        // A compaction crashed before its rename: every prefix of a copy is harmless.
        for len in [0, 1, 64, before.len() / 2, before.len()] {
            std::fs::write(&staged, &before[..len]).expect("stage");
            let db = AedbInstance::open(dir.path(), config())
                .unwrap_or_else(|e| panic!("{profile}: staging copy of {len} bytes: {e}"));
            assert!(!staged.exists(), "{profile}: the staging copy is gone");
            assert!(
                db.snapshot()
                    .expect("snapshot")
                    .has_project(&aedb::ProjectName::new("dev").expect("valid")),
                "{profile}: the committed project survived"
            );
            db.shutdown().expect("shutdown");
        }
    }
}

/// Found by the power-loss exploration (development profile): the segment holding the
/// first LSN after the checkpoint was lost while later ones survived, so the log no longer
/// connects to the checkpoint ("WAL gap: expected lsn 20 after the checkpoint, found 24").
/// Lenient recovery restarts the log after the checkpoint (the later frames cannot be
/// replayed), retires the lost segments in the manifest, and opens with the checkpoint's
/// state; the next open is clean.
#[test]
fn a_log_that_no_longer_connects_to_its_checkpoint_restarts_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = 30;
    populate(dir.path(), before);
    let db = AedbInstance::open(dir.path(), dev()).expect("open");
    let covered = db.checkpoint_now().expect("checkpoint").lsn;
    for i in 0..40 {
        let key = KvKey::new(format!("late-{i}")).expect("key");
        db.commit(Transaction::new().kv_put(&ns(), key, KvValue::new(vec![1; 4000]).expect("v")))
            .expect("commit");
    }
    db.shutdown().expect("shutdown");
    // The segment holding `covered + 1` is lost; later ones survive.
    let segs = segments(dir.path());
    let bases: Vec<Lsn> = segs
        .iter()
        .map(|p| {
            aedb_wal::read_segment_header(&aedb_fs::RealFs, p)
                .expect("header")
                .base_lsn
        })
        .collect();
    let lost = (0..segs.len())
        .rev()
        .find(|&i| bases[i] <= covered.next())
        .expect("a segment holds the first LSN after the checkpoint");
    assert!(lost + 1 < segs.len(), "later segments survive");
    std::fs::remove_file(&segs[lost]).expect("lose the segment");

    let db = AedbInstance::open(dir.path(), dev()).expect("the development profile reopens");
    assert!(
        !db.recovery_report().superseded.is_empty(),
        "the disconnected log was restarted"
    );
    let snap = db.snapshot().expect("snapshot");
    assert_eq!(snap.lsn(), covered, "exactly the checkpoint's state");
    for i in 0..before {
        assert!(
            snap.kv_get(&ns(), format!("key-{i}").as_bytes())
                .expect("read")
                .is_some()
        );
    }
    drop(snap);
    db.kv_put(&ns(), b"after", b"restart".as_slice())
        .expect("commit after the restart");
    db.shutdown().expect("shutdown");
    reopen_prefix(dir.path(), before, before);
}

/// Integrity alerts are never silent, in lenient modes too: the corruption cut is
/// counted and recorded in the manifest (`RecoveryEvent`), where `inspect` shows it.
#[test]
fn a_lenient_cut_is_recorded_as_an_integrity_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let total = 60;
    populate(dir.path(), total);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "rotation made {} segments", segs.len());
    zero(segs.last().expect("a segment"), 0, 4096);
    let db = AedbInstance::open(dir.path(), dev()).expect("lenient open");
    let events = db.operational_metrics().recovery_events;
    assert_eq!(events.get("lenient_restart"), Some(&1), "{events:?}");
    db.shutdown().expect("shutdown");
    let listed = aedb::offline::inspect(dir.path(), &dev()).expect("inspect");
    let recorded = listed.manifest.live.recovery_events();
    assert!(
        recorded
            .iter()
            .any(|e| e.event == aedb::RecoveryEventKind::LenientRestart),
        "{recorded:?}"
    );
}
