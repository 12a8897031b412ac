//! Fault injection on the WAL's write and fsync paths, through the public
//! `AedbInstance::fault_injector()`.
//!
//! Observed and asserted semantics:
//! - A `Durable` commit whose batch fails to write or fsync gets `aedb::Error::Commit(CommitError::Wal)`,
//!   is not published, and fail-stops the instance: every later commit, DDL and flush
//!   gets `aedb::Error::Commit(CommitError::FailStopped)`, and `shutdown` reports `FailStopped` too.
//! - After reopening, everything acknowledged before the fault is there.
//! - A failed `write` leaves nothing on disk, so the failed commit is gone after reopen.
//! - A failed `fsync` comes after a successful `write`: the bytes are in the file (in the
//!   page cache at least), so the failed commit is **in doubt** — recovery may find it.
//!   It is then all-or-nothing, and a retry with the same idempotency key tells the
//!   caller which (see `fsync_fault_failed_commit_is_in_doubt_but_atomic`).
//! - A `Visible` commit is acknowledged before its fsync: a later fsync fault
//!   fail-stops the instance but does not retract it from readers; a later write fault
//!   loses it across a reopen, which is the documented `Visible` crash window.

use aedb::{
    AedbConfig, AedbInstance, CommitError, Ddl, FaultInjector, FaultMode, FaultPoint, Finality,
    IdempotencyKey, KvKey, KvValue, Lsn, Namespace, Numeric, NumericType, OperationalMetrics,
    ProjectName, Transaction,
};
use aedb_model::Outcome;
use aedb_wal::WalError;

const KEY: [u8; 32] = [0x17; 32];
const ACKED: u64 = 5;

fn production() -> AedbConfig {
    AedbConfig::production(KEY)
}

fn ns() -> Namespace {
    Namespace::parse("bank", "main").expect("valid namespace")
}

fn key(k: &str) -> KvKey {
    KvKey::new(k).expect("valid key")
}

fn idem(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).expect("valid idempotency key")
}

/// A keyed commit that writes `name` and adds `amount` to the running `total`.
fn tx(name: &str, amount: u64) -> Transaction {
    let ns = ns();
    Transaction::new()
        .kv_put(
            &ns,
            key(name),
            KvValue::new(format!("value of {name}")).expect("valid value"),
        )
        .kv_add(&ns, key("total"), Numeric::U64(amount))
        .idempotency_key(idem(name))
}

fn total(db: &AedbInstance) -> u64 {
    match db
        .snapshot()
        .expect("snapshot")
        .kv_get_numeric(&ns(), b"total", NumericType::U64)
        .expect("read total")
    {
        Numeric::U64(v) => v,
        other => panic!("total is {other:?}"),
    }
}

/// Opens a fresh production instance with the namespace and `ACKED` durable commits.
fn prepared(dir: &std::path::Path) -> (AedbInstance, Lsn) {
    let db = AedbInstance::open(dir, production()).expect("open");
    db.create_project("bank").expect("project");
    db.create_scope("bank", "main").expect("scope");
    let mut last = Lsn::ZERO;
    for i in 0..ACKED {
        let outcome = db
            .commit_with(tx(&format!("ok-{i}"), 1), Finality::Durable)
            .expect("durable commit before the fault");
        assert!(!outcome.idempotent_replay);
        last = outcome.lsn;
    }
    assert_eq!(total(&db), ACKED);
    (db, last)
}

/// Asserts everything acknowledged by [`prepared`] is in `db`.
fn assert_acked_state(db: &AedbInstance) {
    let snap = db.snapshot().expect("snapshot");
    for i in 0..ACKED {
        let name = format!("ok-{i}");
        let entry = snap
            .kv_get(&ns(), name.as_bytes())
            .expect("read")
            .unwrap_or_else(|| panic!("acknowledged {name} is missing"));
        assert_eq!(
            entry.value.as_bytes(),
            format!("value of {name}").as_bytes()
        );
        let record = snap
            .idempotency(name.as_bytes())
            .expect("readable")
            .expect("idempotency record");
        assert_eq!(record.outcome, Outcome::Committed);
    }
}

/// The injected fault carried by a `CommitError::Wal`.
fn injected_point(err: &aedb::Error) -> Option<FaultPoint> {
    match err {
        aedb::Error::Commit(CommitError::Wal(wal)) => match &**wal {
            WalError::Io { source, .. } => FaultInjector::injected_point(source),
            _ => None,
        },
        _ => None,
    }
}

/// Every kind of commit a fail-stopped instance must refuse. Returns how many commits
/// (each counted as a WAL failure) were refused.
fn assert_fail_stopped(db: &AedbInstance) -> u64 {
    let ns = ns();
    let refused = [
        db.commit_with(tx("after-durable", 1), Finality::Durable),
        db.commit_with(tx("after-visible", 1), Finality::Visible),
        db.try_commit(tx("after-try", 1), Finality::Durable),
        db.commit(Transaction::new().kv_delete(&ns, key("ok-0"))),
        futures::executor::block_on(db.commit_async(tx("after-async", 1), Finality::Durable)),
        db.ddl(Ddl::CreateProject {
            project: ProjectName::new("other").expect("valid project"),
        }),
    ];
    for (i, result) in refused.iter().enumerate() {
        assert!(
            matches!(result, Err(aedb::Error::Commit(CommitError::FailStopped))),
            "request {i} after the fault: {result:?}"
        );
    }
    assert!(
        matches!(
            db.flush(),
            Err(aedb::Error::Commit(CommitError::FailStopped))
        ),
        "flush after the fault"
    );
    refused.len() as u64
}

fn assert_heads(m: &OperationalMetrics, lsn: Lsn) {
    assert_eq!(m.durable_lsn, lsn.get(), "durable head");
    assert_eq!(m.visible_lsn, lsn.get(), "visible head");
}

/// A durable commit hit by `point`: error, nothing visible, fail-stop, counters.
/// Returns the reopened instance and the LSN of the last acknowledged commit.
fn durable_commit_fault(point: FaultPoint) -> (tempfile::TempDir, Lsn) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, last) = prepared(dir.path());
    let before = db.operational_metrics();
    assert_heads(&before, last);
    assert_eq!(before.errors.wal_failure, 0);

    db.fault_injector().arm(point, FaultMode::Once);
    let err = db
        .commit_with(tx("doomed", 1000), Finality::Durable)
        .expect_err("the commit's batch fails");
    assert!(
        matches!(err, aedb::Error::Commit(CommitError::Wal(_))),
        "{err:?}"
    );
    assert_eq!(injected_point(&err), Some(point), "{err}");
    assert_eq!(
        db.fault_injector().mode(point),
        None,
        "a Once fault fires once"
    );

    // Nothing of the failed commit is visible.
    let snap = db.snapshot().expect("snapshot");
    assert_eq!(snap.lsn(), last);
    assert!(snap.kv_get(&ns(), b"doomed").expect("read").is_none());
    assert!(snap.idempotency(b"doomed").expect("readable").is_none());
    assert_eq!(total(&db), ACKED);

    let refused = assert_fail_stopped(&db);
    // Retrying the failed commit itself is refused too, and still shows nothing.
    assert!(matches!(
        db.commit_with(tx("doomed", 1000), Finality::Durable),
        Err(aedb::Error::Commit(CommitError::FailStopped))
    ));
    assert_eq!(db.snapshot().expect("snapshot").lsn(), last);
    assert_eq!(total(&db), ACKED);

    let after = db.operational_metrics();
    assert_eq!(
        after.errors.wal_failure,
        1 + refused + 1,
        "the failed commit and every refused one count as WAL failures"
    );
    assert_eq!(after.errors.closed, 0);
    assert_eq!(after.durable_commits, before.durable_commits);
    assert_heads(&after, last);
    if point == FaultPoint::Fsync {
        assert_eq!(after.fsyncs, before.fsyncs, "a failed fsync is not counted");
    }

    assert!(
        matches!(
            db.shutdown(),
            Err(aedb::Error::Commit(CommitError::FailStopped))
        ),
        "shutdown reports that the final flush could not happen"
    );
    (dir, last)
}

#[test]
fn write_fault_fails_the_commit_fail_stops_and_loses_only_the_failed_commit() {
    let (dir, last) = durable_commit_fault(FaultPoint::Write);
    let db = AedbInstance::open(dir.path(), production()).expect("reopen after the fault");
    assert_eq!(
        db.snapshot().expect("snapshot").lsn(),
        last,
        "the last durable state"
    );
    assert_acked_state(&db);
    assert!(
        db.snapshot()
            .expect("snapshot")
            .kv_get(&ns(), b"doomed")
            .expect("read")
            .is_none()
    );
    assert!(
        db.snapshot()
            .expect("snapshot")
            .idempotency(b"doomed")
            .expect("readable")
            .is_none()
    );
    assert_eq!(total(&db), ACKED);
    assert_eq!(db.recovery_report().torn_tail_bytes(), 0);

    // The reopened instance works, and the failed commit can simply be retried.
    let outcome = db
        .commit_with(tx("doomed", 1000), Finality::Durable)
        .expect("retry after reopen");
    assert!(!outcome.idempotent_replay);
    assert_eq!(outcome.lsn, last.next());
    assert_eq!(total(&db), ACKED + 1000);
    db.shutdown().expect("shutdown");
}

#[test]
fn fsync_fault_failed_commit_is_in_doubt_but_atomic() {
    let (dir, last) = durable_commit_fault(FaultPoint::Fsync);
    let db = AedbInstance::open(dir.path(), production()).expect("reopen after the fault");
    assert_acked_state(&db);
    let snap = db.snapshot().expect("snapshot");
    // The failed batch was written before its fsync failed, so recovery may or may not
    // find it; either way it is all or nothing.
    let present = snap.idempotency(b"doomed").expect("readable").is_some();
    if present {
        assert_eq!(snap.lsn(), last.next());
        assert!(snap.kv_get(&ns(), b"doomed").expect("read").is_some());
        assert_eq!(total(&db), ACKED + 1000);
    } else {
        assert_eq!(snap.lsn(), last);
        assert!(snap.kv_get(&ns(), b"doomed").expect("read").is_none());
        assert_eq!(total(&db), ACKED);
    }
    // A retry with the same idempotency key resolves the doubt without double-applying.
    let outcome = db
        .commit_with(tx("doomed", 1000), Finality::Durable)
        .expect("retry after reopen");
    assert_eq!(outcome.idempotent_replay, present);
    assert_eq!(outcome.lsn, last.next());
    assert_eq!(total(&db), ACKED + 1000);
    db.shutdown().expect("shutdown");

    let db = AedbInstance::open(dir.path(), production()).expect("reopen again");
    assert_eq!(total(&db), ACKED + 1000);
    assert_acked_state(&db);
    db.shutdown().expect("shutdown");
}

#[test]
fn fault_after_a_visible_commit() {
    for point in [FaultPoint::Fsync, FaultPoint::Write] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, last) = prepared(dir.path());
        db.fault_injector().arm(point, FaultMode::Once);
        // Fsync: the visible batch is written, and its sync (within the flush interval,
        // or with the next durable batch) fails. Write: the visible batch's write fails.
        // Either way the visible commit was acknowledged right after apply.
        let visible = db
            .commit_with(tx("visible", 1000), Finality::Visible)
            .expect("a visible commit is acknowledged after apply");
        assert_eq!(visible.lsn, last.next());
        assert!(
            db.snapshot()
                .expect("snapshot")
                .kv_get(&ns(), b"visible")
                .expect("read")
                .is_some()
        );

        // The next durable commit fails: either its own batch hits the fault, or the
        // visible batch's timed sync already did and the instance is fail-stopped.
        let err = db
            .commit_with(tx("durable", 1), Finality::Durable)
            .expect_err("the WAL failed");
        assert!(
            matches!(
                err,
                aedb::Error::Commit(CommitError::Wal(_))
                    | aedb::Error::Commit(CommitError::FailStopped)
            ),
            "{point:?}: {err:?}"
        );
        // `FailStopped` means the durable commit never reached the writer's file; `Wal`
        // means its batch failed (after a successful write, for an fsync fault).
        let durable_in_doubt =
            point == FaultPoint::Fsync && matches!(err, aedb::Error::Commit(CommitError::Wal(_)));
        assert_fail_stopped(&db);
        // The visible commit is not retracted from readers; the failed durable one never
        // became visible.
        let snap = db.snapshot().expect("snapshot");
        assert_eq!(snap.lsn(), visible.lsn, "{point:?}");
        assert!(snap.kv_get(&ns(), b"visible").expect("read").is_some());
        assert!(snap.kv_get(&ns(), b"durable").expect("read").is_none());
        let m = db.operational_metrics();
        assert_eq!(
            m.durable_lsn,
            last.get(),
            "{point:?}: nothing after the fault is durable"
        );
        assert_eq!(m.visible_lsn, visible.lsn.get(), "{point:?}");
        assert!(m.errors.wal_failure >= 1);
        assert!(db.shutdown().is_err());

        let db = AedbInstance::open(dir.path(), production()).expect("reopen");
        assert_acked_state(&db);
        let snap = db.snapshot().expect("snapshot");
        let durable_kept = snap.kv_get(&ns(), b"durable").expect("read").is_some();
        assert!(durable_in_doubt || !durable_kept, "{point:?}: {err:?}");
        let kept = snap.kv_get(&ns(), b"visible").expect("read").is_some();
        match point {
            // The bytes were written (only the fsync failed); this process's page cache
            // still has them, so recovery finds the visible commit.
            FaultPoint::Fsync => {
                assert!(kept, "fsync fault: the written visible commit is recovered");
                let durable = u64::from(durable_kept);
                assert_eq!(snap.lsn().get(), visible.lsn.get() + durable);
                assert_eq!(total(&db), ACKED + 1000 + durable);
            }
            // Never written: the acknowledged visible commit is lost, as documented for
            // `Finality::Visible` (a failure inside the flush interval loses it).
            _ => {
                assert!(
                    !kept,
                    "write fault: the visible commit never reached the file"
                );
                assert_eq!(snap.lsn(), last);
                assert_eq!(total(&db), ACKED);
            }
        }
        db.shutdown().expect("shutdown");
    }
}

#[test]
fn unarmed_and_disarmed_injectors_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, last) = prepared(dir.path());
    let faults = db.fault_injector();
    for point in FaultPoint::ALL {
        assert_eq!(faults.mode(point), None);
    }
    faults.arm(FaultPoint::Fsync, FaultMode::Always);
    faults.arm(FaultPoint::Write, FaultMode::Always);
    faults.disarm_all();
    let outcome = db
        .commit_with(tx("after-disarm", 1), Finality::Durable)
        .expect("disarmed faults never fire");
    assert_eq!(outcome.lsn, last.next());
    let m = db.operational_metrics();
    assert_eq!(m.errors.wal_failure, 0);
    assert_heads(&m, outcome.lsn);
    db.shutdown().expect("shutdown");
}
