//! Idempotency keys on real files: a retry with the same payload replays the original
//! outcome, a retry with another payload is refused with `commit.idempotency_mismatch`
//! and applies nothing — after a reopen that replays the WAL and after a checkpoint
//! whose run files hold the record — and records past the retention window (by LSNs or
//! by time) are no longer honoured and are dropped by compaction.

use std::path::Path;
use std::time::{Duration, Instant};

use aedb::{
    AedbConfig, AedbInstance, CommitError, ErrorClass, IdempotencyKey, IdempotencyRetention, KvKey,
    Numeric, NumericType, Transaction,
};

const KEY: [u8; 32] = [0x3D; 32];

fn ns() -> aedb::Namespace {
    aedb::Namespace::parse("bank", "eu").expect("namespace")
}

/// A transfer of `amount` under idempotency key `key`.
fn pay(key: &str, amount: u64) -> Transaction {
    Transaction::new()
        .kv_add(&ns(), KvKey::new("bob").expect("key"), Numeric::U64(amount))
        .idempotency_key(IdempotencyKey::new(key).expect("idempotency key"))
}

fn open(dir: &Path, retention: IdempotencyRetention) -> AedbInstance {
    let config = AedbConfig::production(KEY)
        .checkpoint_on_shutdown(false)
        .with_checkpoint_key([0x4E; 32])
        .idempotency_retention(retention);
    AedbInstance::open(dir, config).expect("open")
}

fn balance(db: &AedbInstance) -> Numeric {
    db.snapshot()
        .expect("snapshot")
        .kv_get_numeric(&ns(), b"bob", NumericType::U64)
        .expect("balance")
}

fn head(db: &AedbInstance) -> aedb::Lsn {
    db.snapshot().expect("snapshot").lsn()
}

/// Retries `pay(key, original)` (replayed) and `pay(key, other)` (refused, nothing
/// applied), expecting the original commit at `first`.
fn check_retries(db: &AedbInstance, key: &str, original: u64, other: u64, first: aedb::Lsn) {
    let before = (head(db), balance(db));
    let replay = db.commit(pay(key, original)).expect("same payload");
    assert_eq!((replay.lsn, replay.idempotent_replay), (first, true));
    let err = db
        .commit(pay(key, other))
        .expect_err("another payload under the same key");
    assert_eq!(err.code(), "commit.idempotency_mismatch", "{err}");
    assert_eq!(err.class(), ErrorClass::Conflict);
    match &err {
        aedb::Error::Commit(CommitError::Rejected(aedb::ApplyError::IdempotencyMismatch {
            key: k,
            original_lsn,
        })) => {
            assert_eq!(k.as_bytes(), key.as_bytes());
            assert_eq!(*original_lsn, first);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("different request"), "{err}");
    assert_eq!((head(db), balance(db)), before, "nothing was applied");
}

#[test]
fn a_different_payload_is_refused_across_wal_replay_and_run_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(dir.path(), IdempotencyRetention::default());
    db.create_project("bank").expect("project");
    db.create_scope("bank", "eu").expect("scope");
    let first = db.commit(pay("pay-1", 10)).expect("first");
    assert!(!first.idempotent_replay);
    let record = db
        .snapshot()
        .expect("snapshot")
        .idempotency(b"pay-1")
        .expect("readable")
        .expect("a record");
    let stamp = record.request.expect("a stamped record");
    assert_eq!(stamp.fingerprint, pay("pay-1", 10).fingerprint());
    check_retries(&db, "pay-1", 10, 11, first.lsn);
    let m = db.operational_metrics();
    assert_eq!(m.idempotency_mismatches, 1);
    assert_eq!(m.idempotent_replays, 1);
    db.shutdown().expect("shutdown");

    // Reopen: the record comes back from the WAL (format v2 carries the fingerprint).
    let db = open(dir.path(), IdempotencyRetention::default());
    assert!(db.recovery_report().frames_replayed > 0);
    check_retries(&db, "pay-1", 10, 12, first.lsn);
    assert_eq!(
        db.snapshot()
            .expect("snapshot")
            .idempotency(b"pay-1")
            .expect("readable")
            .expect("a record")
            .request,
        Some(stamp),
        "replay stores the logged stamp, time included"
    );
    // Checkpoint: the record now lives in a run file; reopen reads it from there.
    db.checkpoint_now().expect("checkpoint");
    db.shutdown().expect("shutdown");
    let db = open(dir.path(), IdempotencyRetention::default());
    check_retries(&db, "pay-1", 10, 13, first.lsn);
    assert_eq!(balance(&db), Numeric::U64(10));
    db.shutdown().expect("shutdown");
}

#[test]
fn records_past_an_lsn_window_are_reused_and_compacted_away() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(dir.path(), IdempotencyRetention::lsns(5));
    db.create_project("bank").expect("project");
    db.create_scope("bank", "eu").expect("scope");
    let a = db.commit(pay("a", 1)).expect("a");
    let b = db.commit(pay("b", 2)).expect("b");
    // Inside the window: refused.
    let err = db.commit(pay("a", 100)).expect_err("inside the window");
    assert_eq!(err.code(), "commit.idempotency_mismatch");
    for i in 0..5 {
        db.kv_put(&ns(), format!("filler-{i}"), "x")
            .expect("filler");
    }
    // `a` is 6 LSNs old now: a retry, even with another payload, is a new request.
    let again = db.commit(pay("a", 100)).expect("a after expiry");
    assert!(!again.idempotent_replay);
    assert!(again.lsn > a.lsn);
    assert_eq!(balance(&db), Numeric::U64(103));
    let snap = db.snapshot().expect("snapshot");
    assert_eq!(snap.idempotency(b"a").unwrap().unwrap().lsn, again.lsn);
    assert_eq!(snap.idempotency_len().expect("count"), 2);
    drop(snap);
    // Reopen: WAL replay takes the reuse from the log.
    db.shutdown().expect("shutdown");
    let db = open(dir.path(), IdempotencyRetention::lsns(5));
    assert_eq!(balance(&db), Numeric::U64(103));
    let replay = db.commit(pay("a", 100)).expect("replayed");
    assert_eq!((replay.lsn, replay.idempotent_replay), (again.lsn, true));

    // Push everything into run files, move past `b`'s and `a`'s windows, compact:
    // both records are expired as seen from the retention floor and dropped.
    db.checkpoint_now().expect("checkpoint");
    for i in 0..6 {
        db.kv_put(&ns(), format!("late-{i}"), "y").expect("filler");
    }
    // Expiry is judged at the flushed LSN (what a recovery comes back to), so the
    // window is passed once the fillers are in run files too.
    db.checkpoint_now().expect("checkpoint");
    let report = db.compact_now().expect("compact");
    assert_eq!(report.expired_idempotency_records, 2, "{report:?}");
    assert_eq!(db.operational_metrics().idempotency_expired_dropped, 2);
    let snap = db.snapshot().expect("snapshot");
    assert_eq!(snap.idempotency_len().expect("count"), 0);
    assert_eq!(snap.idempotency(b"b").expect("readable"), None);
    drop(snap);
    // A retry of `b` now applies anew.
    let b2 = db.commit(pay("b", 2)).expect("b after expiry");
    assert!(!b2.idempotent_replay);
    assert!(b2.lsn > b.lsn);
    assert_eq!(balance(&db), Numeric::U64(105));
    db.shutdown().expect("shutdown");
    // And all of it survives a reopen.
    let db = open(dir.path(), IdempotencyRetention::lsns(5));
    assert_eq!(balance(&db), Numeric::U64(105));
    assert_eq!(
        db.snapshot()
            .expect("snapshot")
            .idempotency_len()
            .expect("count"),
        1
    );
    db.shutdown().expect("shutdown");
}

#[test]
fn records_inside_the_history_window_are_kept_by_compaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = AedbConfig::production(KEY)
        .checkpoint_on_shutdown(false)
        .idempotency_retention(IdempotencyRetention::lsns(2))
        .history_retention(1_000);
    let db = AedbInstance::open(dir.path(), config).expect("open");
    db.create_project("bank").expect("project");
    db.create_scope("bank", "eu").expect("scope");
    let a = db.commit(pay("a", 1)).expect("a");
    for i in 0..5 {
        db.kv_put(&ns(), format!("filler-{i}"), "x")
            .expect("filler");
    }
    db.checkpoint_now().expect("checkpoint");
    let report = db.compact_now().expect("compact");
    // Expired for new commits, but `snapshot_at` can still read LSNs where it was
    // the visible version: compaction keeps it.
    assert_eq!(report.expired_idempotency_records, 0);
    let old = db.snapshot_at(a.lsn).expect("inside the history window");
    assert_eq!(old.idempotency(b"a").unwrap().unwrap().lsn, a.lsn);
    drop(old);
    // Not honoured any more though.
    assert!(!db.commit(pay("a", 7)).expect("a anew").idempotent_replay);
    db.shutdown().expect("shutdown");
}

#[test]
fn records_past_a_time_window_are_a_new_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let window = Duration::from_millis(1_500);
    let db = AedbInstance::open(
        dir.path(),
        AedbConfig::development().idempotency_retention(IdempotencyRetention::age(window)),
    )
    .expect("open");
    db.create_project("bank").expect("project");
    db.create_scope("bank", "eu").expect("scope");
    let started = Instant::now();
    let first = db.commit(pay("t", 1)).expect("first");
    let acked = Instant::now();
    let refused = db.commit(pay("t", 2));
    // The record's time is between `started` and `acked`; assert the refusal only
    // when the machine was fast enough to retry well inside the window.
    if started.elapsed() < window - Duration::from_millis(200) {
        let err = refused.expect_err("inside the window");
        assert_eq!(err.code(), "commit.idempotency_mismatch");
    }
    std::thread::sleep(
        (acked + window + Duration::from_millis(100)).saturating_duration_since(Instant::now()),
    );
    let again = db.commit(pay("t", 2)).expect("after the window");
    assert!(!again.idempotent_replay);
    assert!(again.lsn > first.lsn);
    let rec = db
        .snapshot()
        .expect("snapshot")
        .idempotency(b"t")
        .unwrap()
        .unwrap();
    assert_eq!(rec.lsn, again.lsn);
    let stamp = rec.request.expect("stamped");
    assert_eq!(stamp.fingerprint, pay("t", 2).fingerprint());
    db.shutdown().expect("shutdown");
}

#[test]
fn a_zero_retention_is_a_typed_config_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    for retention in [
        IdempotencyRetention::lsns(0),
        IdempotencyRetention::age(Duration::ZERO),
    ] {
        let err = AedbInstance::open(
            dir.path(),
            AedbConfig::development().idempotency_retention(retention),
        )
        .expect_err("zero window");
        assert_eq!(err.code(), "config.invalid", "{err}");
    }
}

/// Requests keyed by ascending ids are a sequential ingest: their records' runs
/// overlap nothing and are moved down untouched, where no merge reaches them again.
/// Once every record in such a run is past the window by LSN (and nothing deeper
/// overlaps it), compaction removes the run without reading it; the rest of the data is
/// unchanged, and an old request id is a new request again, after a reopen too.
#[test]
fn runs_of_expired_records_are_removed_unread() {
    use aedb::{Assertion, Finality, MemoryBudget};
    // Enough for runs of more than 256 KiB, which level 0 moves down instead of merging.
    const PER_RUN: u64 = 6_000;
    const RUNS: u64 = 4;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = || {
        AedbConfig::production(KEY)
            .with_checkpoint_key([0x4E; 32])
            .memory_budget(MemoryBudget {
                memtable_bytes: 8 << 20,
                ..MemoryBudget::default()
            })
            .idempotency_retention(IdempotencyRetention::lsns(1_000))
    };
    let db = AedbInstance::open(dir.path(), config()).expect("open");
    db.create_project("bank").expect("project");
    db.create_scope("bank", "eu").expect("scope");
    db.commit(pay("first", 7)).expect("first");
    db.checkpoint_now().expect("checkpoint");
    db.compact_now()
        .expect("the catalog and balance at the bottom");
    // Requests that only assert: each writes its idempotency record and nothing else.
    let bob = || KvKey::new("bob").expect("key");
    let request = |i: u64| {
        Transaction::new()
            .assert(Assertion::KvExists {
                ns: ns(),
                key: bob(),
            })
            .idempotency_key(IdempotencyKey::new(format!("req-{i:08}")).expect("key"))
    };
    for run in 0..RUNS {
        for i in run * PER_RUN..(run + 1) * PER_RUN {
            db.commit_with(request(i), Finality::Visible)
                .expect("request");
        }
        db.checkpoint_now().expect("one run of records");
    }
    // The compactor moves the four disjoint runs down a level, unread.
    let deadline = Instant::now() + Duration::from_secs(60);
    while db.operational_metrics().storage.level_runs[0] > 0 {
        assert!(Instant::now() < deadline, "level 0 never moved down");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(db.operational_metrics().compaction_moved_runs >= RUNS);
    let stored = db
        .snapshot()
        .expect("snapshot")
        .idempotency_len()
        .expect("count");
    assert_eq!(stored as u64, RUNS * PER_RUN + 1);
    // Past the window: 1,000 LSNs after the last request.
    for _ in 0..1_001 {
        db.commit_with(
            Transaction::new().kv_add(&ns(), bob(), Numeric::U64(1)),
            Finality::Visible,
        )
        .expect("filler");
    }
    // Expired as seen from the flushed LSN: a crash or restore comes back no earlier,
    // so the records are past the window there too.
    db.checkpoint_now().expect("the fillers in run files");
    // An idle compactor's sweep may get there first, so the report may count fewer;
    // the metric counts each run once, whichever removed it.
    let report = db.compact_now().expect("compact");
    // Only `first`'s record, in the run with the catalog, went through a merge.
    assert_eq!(report.expired_idempotency_records, 1, "{report:?}");
    assert_eq!(db.operational_metrics().compaction_dropped_runs, RUNS);
    assert_eq!(balance(&db), Numeric::U64(7 + 1_001));
    let snap = db.snapshot().expect("snapshot");
    assert_eq!(snap.idempotency(b"req-00000042").expect("readable"), None);
    drop(snap);
    let again = db.commit(request(42)).expect("an old id is a new request");
    assert!(!again.idempotent_replay);
    db.shutdown().expect("shutdown");
    let db = AedbInstance::open(dir.path(), config()).expect("reopen");
    assert_eq!(balance(&db), Numeric::U64(7 + 1_001));
    let snap = db.snapshot().expect("snapshot");
    assert_eq!(snap.idempotency(b"req-00000041").expect("readable"), None);
    assert!(
        snap.idempotency(b"req-00000042")
            .expect("readable")
            .is_some()
    );
    drop(snap);
    db.shutdown().expect("shutdown");
}
