//! A full disk (`ENOSPC`) and a short write (half the buffer reached the file, then
//! `ENOSPC`) on the WAL, plaintext and sealed, at the WAL write sites a commit reaches
//! (its batch, and the trailer that seals a full segment at rotation): the commit gets a typed
//! WAL error whose I/O kind is `StorageFull`, nothing is published, the instance
//! fail-stops (the bytes on disk are in doubt), and a reopen finds every acknowledged
//! commit and none of the failed one — a short write leaves a torn tail that recovery
//! cuts.

use aedb::{
    AedbConfig, AedbInstance, CommitError, FaultInjector, FaultKind, FaultMode, FaultPoint,
    Finality, KvKey, KvValue, Namespace, Transaction,
};
use aedb_wal::WalError;

const ACKED: usize = 20;

fn ns() -> Namespace {
    Namespace::parse("disk", "main").expect("valid namespace")
}

fn put(i: usize, len: usize) -> Transaction {
    Transaction::new().kv_put(
        &ns(),
        KvKey::new(format!("key-{i}")).expect("key"),
        KvValue::new(vec![i as u8; len]).expect("value"),
    )
}

/// A WAL mode and its configuration.
type Mode = (&'static str, fn() -> AedbConfig);

fn configs() -> [Mode; 2] {
    [
        ("plaintext", || {
            AedbConfig::production([1; 32]).segment_size(64 * 1024)
        }),
        ("sealed", || {
            AedbConfig::production([1; 32])
                .with_checkpoint_key([2; 32])
                .segment_size(64 * 1024)
        }),
    ]
}

fn storage_full(err: &aedb::Error) -> bool {
    match err {
        aedb::Error::Commit(CommitError::Wal(wal)) => match &**wal {
            WalError::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::StorageFull
                    && FaultInjector::injected_point(source) == Some(FaultPoint::Write)
            }
            _ => false,
        },
        _ => false,
    }
}

/// Creates the namespace and commits the `ACKED` acknowledged puts every case starts from.
fn acknowledge(db: &AedbInstance, case: &str) {
    db.create_project("disk").expect("project");
    db.create_scope("disk", "main").expect("scope");
    for i in 0..ACKED {
        db.commit_with(put(i, 1000), Finality::Durable)
            .unwrap_or_else(|e| panic!("{case}: commit {i}: {e}"));
    }
}

#[test]
fn full_disk_and_short_writes_on_the_wal_lose_nothing_acknowledged() {
    for (mode, config) in configs() {
        for kind in [FaultKind::NoSpace, FaultKind::ShortWrite] {
            // `rotation`: the failing write is the first one for a batch that does not
            // fit the segment: the trailer sealing the full segment.
            for rotation in [false, true] {
                let case = format!("{mode} {kind:?} rotation={rotation}");
                let dir = tempfile::tempdir().expect("tempdir");
                let db = AedbInstance::open(dir.path(), config()).expect("open");
                acknowledge(&db, &case);
                let lsn = db.snapshot().expect("snapshot").lsn();
                let faults = db.fault_injector();
                faults.arm_with(FaultPoint::Write, FaultMode::Once, kind);
                let len = if rotation { 60 * 1024 } else { 1000 };
                let err = db
                    .commit_with(put(ACKED, len), Finality::Durable)
                    .expect_err("the write fails");
                assert!(storage_full(&err), "{case}: {err:?}");
                assert_eq!(db.snapshot().expect("snapshot").lsn(), lsn, "{case}");
                assert!(
                    matches!(
                        db.commit(put(99, 10)),
                        Err(aedb::Error::Commit(CommitError::FailStopped))
                    ),
                    "{case}: fail-stopped"
                );
                drop(db);

                let db = AedbInstance::open(dir.path(), config())
                    .unwrap_or_else(|e| panic!("{case}: reopen: {e}"));
                let snap = db.snapshot().expect("snapshot");
                assert_eq!(snap.lsn(), lsn, "{case}: exactly the acknowledged commits");
                for i in 0..ACKED {
                    let entry = snap
                        .kv_get(&ns(), format!("key-{i}").as_bytes())
                        .expect("read")
                        .unwrap_or_else(|| panic!("{case}: acknowledged key-{i} lost"));
                    assert_eq!(entry.value.as_bytes(), vec![i as u8; 1000].as_slice());
                }
                db.commit(put(ACKED, 10))
                    .unwrap_or_else(|e| panic!("{case}: commit after reopen: {e}"));
                db.shutdown().expect("shutdown");
            }
        }
    }
}

/// A manifest append that fails (full disk, short write or I/O error) fail-stops the
/// instance like a WAL fsync failure: the checkpoint that needed it reports the error,
/// every later commit gets `FailStopped`, and a reopen (which cuts the torn record)
/// finds every acknowledged commit. The second case fails the `SegmentSealed` record
/// the WAL writer sends at rotation, which used to be only printed while commits went on.
#[test]
fn a_failed_manifest_append_fail_stops_the_instance() {
    for kind in [FaultKind::Eio, FaultKind::NoSpace, FaultKind::ShortWrite] {
        for trigger in ["checkpoint", "segment sealed"] {
            let case = format!("{kind:?} at {trigger}");
            let (_, config) = configs()[1];
            let dir = tempfile::tempdir().expect("tempdir");
            let db = AedbInstance::open(dir.path(), config()).expect("open");
            acknowledge(&db, &case);
            let lsn = db.snapshot().expect("snapshot").lsn();
            db.fault_injector()
                .arm_with(FaultPoint::Manifest, FaultMode::Once, kind);
            if trigger == "checkpoint" {
                db.checkpoint_now()
                    .expect_err("the checkpoint cannot be recorded");
            } else {
                // Fills the segment: the rotation's SegmentSealed record fails. The
                // commit itself is durable in the WAL; the record follows it.
                db.commit_with(put(ACKED, 60 * 1024), Finality::Durable)
                    .unwrap_or_else(|e| panic!("{case}: the rotating commit: {e}"));
            }
            // The record is appended by the manifest thread; the flag is raised before
            // the failure is answered (checkpoint) or within a bounded wait (rotation).
            let mut refused = false;
            for _ in 0..500 {
                match db.commit(put(99, 10)) {
                    Err(aedb::Error::Commit(CommitError::FailStopped)) => {
                        refused = true;
                        break;
                    }
                    Ok(_) if trigger != "checkpoint" => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    other => panic!("{case}: commit after the failed append: {other:?}"),
                }
            }
            assert!(refused, "{case}: the instance did not fail-stop");
            drop(db);

            let db = AedbInstance::open(dir.path(), config())
                .unwrap_or_else(|e| panic!("{case}: reopen: {e}"));
            let snap = db.snapshot().expect("snapshot");
            assert!(snap.lsn() >= lsn, "{case}: acknowledged commits lost");
            for i in 0..ACKED {
                assert!(
                    snap.kv_get(&ns(), format!("key-{i}").as_bytes())
                        .expect("read")
                        .is_some(),
                    "{case}: acknowledged key-{i} lost"
                );
            }
            db.commit(put(ACKED + 1, 10))
                .unwrap_or_else(|e| panic!("{case}: commit after reopen: {e}"));
            db.shutdown().expect("shutdown");
        }
    }
}

/// On the simulated disk: every write, sync, rename and directory sync of a checkpoint
/// (its temporary file, the rename into place, the directory) and of a hot backup copy
/// fails in turn with EIO, ENOSPC and a short write. The checkpoint or backup reports a
/// typed error; nothing acknowledged is lost; the instance goes on committing (a failed
/// checkpoint or backup is not a failed commit: the WAL still holds everything); and a
/// retry after the disk recovers succeeds and the directory reopens with every commit.
#[test]
fn full_disk_on_checkpoint_files_and_backup_copies_loses_nothing() {
    use aedb_fs::{OpKind, SimFault, SimFs};
    for fault in [SimFault::Eio, SimFault::NoSpace, SimFault::ShortWrite] {
        for target in ["/db/checkpoints", "/backup"] {
            for nth in 1..=6u64 {
                let case = format!("{fault:?} on the {nth}th operation under {target}");
                let sim = SimFs::new(nth);
                let config = || {
                    AedbConfig::production([1; 32])
                        .with_checkpoint_key([2; 32])
                        .with_file_system(sim.shared())
                };
                let db = AedbInstance::open("/db", config()).expect("open");
                acknowledge(&db, &case);
                if target == "/backup" {
                    db.checkpoint_now()
                        .expect("a checkpoint for the backup to copy");
                }
                let lsn = db.snapshot().expect("snapshot").lsn();
                let prefix = std::path::PathBuf::from(target);
                let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
                let counter = seen.clone();
                sim.fail_when(
                    move |op| {
                        op.kind != OpKind::CreateDir
                            && op.path.starts_with(&prefix)
                            && counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 == nth
                    },
                    fault,
                );
                let failed = if target == "/backup" {
                    db.backup_full("/backup/full", &mut |_, _| {}).is_err()
                } else {
                    db.checkpoint_now().is_err()
                };
                let reached = seen.load(std::sync::atomic::Ordering::Relaxed) >= nth;
                assert_eq!(
                    failed, reached,
                    "{case}: failed {failed}, fault reached {reached}"
                );
                sim.clear_faults();
                // Commits go on; the retry succeeds.
                db.commit_with(put(ACKED, 10), Finality::Durable)
                    .unwrap_or_else(|e| panic!("{case}: commit after the failure: {e}"));
                if target == "/backup" {
                    db.backup_full("/backup/retry", &mut |_, _| {})
                        .unwrap_or_else(|e| panic!("{case}: backup retry: {e}"));
                } else {
                    db.checkpoint_now()
                        .unwrap_or_else(|e| panic!("{case}: checkpoint retry: {e}"));
                }
                db.shutdown().expect("shutdown");
                let db = AedbInstance::open("/db", config())
                    .unwrap_or_else(|e| panic!("{case}: reopen: {e}"));
                let snap = db.snapshot().expect("snapshot");
                assert_eq!(snap.lsn(), lsn.next(), "{case}: every commit reopened");
                for i in 0..=ACKED {
                    assert!(
                        snap.kv_get(&ns(), format!("key-{i}").as_bytes())
                            .expect("read")
                            .is_some(),
                        "{case}: key-{i} lost"
                    );
                }
                drop(snap);
                db.shutdown().expect("shutdown");
            }
        }
    }
}
