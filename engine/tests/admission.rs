//! The commit admission path under incident response: the durable write freeze,
//! token-bucket rate limits, per-commit deadlines and the conflict/timeout signals the
//! runbook alerts on. No test asserts a timing: limits are chosen so that no token can
//! refill during a test (one per hour), and deadlines are either already past or far
//! away.

use std::time::{Duration, Instant};

use aedb::{
    AccessError, AedbConfig, AedbInstance, Assertion, AuditTable, CallerId, ColumnDef, ColumnName,
    ColumnType, CommitError, Ddl, Error, ErrorClass, Finality, KvKey, KvValue, Lsn, Namespace,
    Permission, RateLimit, RateLimits, SecureConfig, TableName, TableSchema, Transaction, Value,
};

fn config() -> AedbConfig {
    AedbConfig::production([0x41; 32]).with_checkpoint_key([0x42; 32])
}

fn caller(name: &str) -> CallerId {
    CallerId::new(name).unwrap()
}

fn open(dir: &std::path::Path) -> AedbInstance {
    AedbInstance::open_secure(dir, config(), SecureConfig::new(caller("root"))).unwrap()
}

fn put(ns: &Namespace, key: &str) -> Transaction {
    Transaction::new().kv_put(ns, KvKey::new(key).unwrap(), KvValue::new("v").unwrap())
}

fn schema() -> TableSchema {
    let id = ColumnName::new("id").unwrap();
    TableSchema::new(vec![ColumnDef::new(id.clone(), ColumnType::U64)], vec![id]).unwrap()
}

fn is_frozen(e: &Error) -> bool {
    matches!(e.as_commit(), Some(CommitError::Frozen))
        && e.code() == "commit.frozen"
        && e.class() == ErrorClass::Retryable
}

/// The newest LSN once background writes (audit rows are committed by the Audit actor
/// after the call that queued them returns) have landed: unchanged for 200 ms (within
/// 30 s, or the test fails).
fn settled_lsn(db: &AedbInstance, who: &CallerId) -> aedb::Lsn {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = db.snapshot_as(who).lsn();
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "background writes never settled"
        );
        std::thread::sleep(Duration::from_millis(200));
        let now = db.snapshot_as(who).lsn();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// A bank with one scope and a table; `root` is the GlobalAdmin, `teller` may write it.
fn bank(db: &AedbInstance) -> Namespace {
    let root = caller("root");
    db.create_project_as(&root, "bank").unwrap();
    db.create_scope_as(&root, "bank", "main").unwrap();
    let ns = Namespace::parse("bank", "main").unwrap();
    db.create_table_as(&root, &ns, "t", schema()).unwrap();
    for permission in [
        Permission::KvWrite {
            ns: ns.clone(),
            prefix: Vec::new(),
        },
        Permission::KvRead {
            ns: ns.clone(),
            prefix: Vec::new(),
        },
    ] {
        db.grant_as(&root, &caller("teller"), permission, false)
            .unwrap();
    }
    ns
}

#[test]
fn a_freeze_refuses_every_commit_and_keeps_reads_backups_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let root = caller("root");
    let teller = caller("teller");
    let db = open(dir.path());
    let ns = bank(&db);
    db.kv_put_as(&teller, &ns, "before", "1").unwrap();

    let at = db.freeze_writes_as(&root, "integrity alert 7").unwrap();
    let freeze = db.write_freeze().expect("frozen");
    assert_eq!(
        (freeze.by.as_str(), freeze.reason.as_str()),
        ("root", "integrity alert 7")
    );
    let m = db.operational_metrics();
    assert!(m.frozen);
    assert_eq!(m.freeze_reason.as_deref(), Some("integrity alert 7"));

    // Every kind of commit, by every caller, in every admission mode, is refused.
    let table = TableName::new("t").unwrap();
    let row = Transaction::new().table_insert(
        &ns,
        &table,
        vec![(ColumnName::new("id").unwrap(), Value::U64(1))],
    );
    let refusals = [
        db.kv_put_as(&teller, &ns, "k", "v").unwrap_err(),
        db.commit_as(&root, put(&ns, "k")).unwrap_err(),
        db.try_commit_as(&teller, put(&ns, "k"), Finality::Visible)
            .unwrap_err(),
        db.commit_as(&root, row).unwrap_err(),
        db.create_scope_as(&root, "bank", "other").unwrap_err(),
        db.ddl_as(
            &root,
            Ddl::DropTable {
                ns: ns.clone(),
                table: table.clone(),
            },
        )
        .unwrap_err(),
        futures::executor::block_on(db.commit_async_as(&teller, put(&ns, "k"), Finality::Durable))
            .unwrap_err(),
    ];
    for e in &refusals {
        assert!(is_frozen(e), "{e:?}");
    }
    assert_eq!(
        db.operational_metrics().errors.frozen,
        refusals.len() as u64
    );

    // Nothing was applied; reads, checkpoints, backups and audit reads work.
    let snapshot = db.snapshot_as(&teller);
    assert!(snapshot.kv_get(&ns, b"k").unwrap().is_none());
    assert!(snapshot.kv_get(&ns, b"before").unwrap().is_some());
    db.checkpoint_now_as(&root).unwrap();
    let backup = tempfile::tempdir().unwrap();
    db.backup_full_as(&root, backup.path().join("full"), &mut |_, _| {})
        .unwrap();
    let export = tempfile::tempdir().unwrap();
    db.export_audit_as(&root, export.path().join("audit.jsonl"))
        .unwrap();
    let rows = db.audit_rows_as(&root, AuditTable::Authz).unwrap();
    let row = rows
        .iter()
        .find(|r| r.kind == "write_freeze")
        .expect("the freeze is audited");
    assert_eq!(
        (row.caller.as_str(), row.subject.as_str()),
        ("root", "integrity alert 7")
    );
    // The engine's own commits go through: a grant (policy + audit) still works.
    db.grant_as(
        &root,
        &caller("auditor"),
        Permission::KvRead {
            ns: ns.clone(),
            prefix: Vec::new(),
        },
        false,
    )
    .unwrap();

    // Unfreezing restores commits.
    let lifted = db.unfreeze_writes_as(&root).unwrap();
    assert!(lifted > at);
    assert!(db.write_freeze().is_none());
    assert!(!db.operational_metrics().frozen);
    db.kv_put_as(&teller, &ns, "after", "1").unwrap();
    let rows = db.audit_rows_as(&root, AuditTable::Authz).unwrap();
    assert!(rows.iter().any(|r| r.kind == "write_unfreeze"));
    db.verify_audit_as(&root).unwrap();
    db.shutdown().unwrap();

    // The freeze is database state: the backup taken while frozen restores frozen.
    let restored = tempfile::tempdir().unwrap();
    let target = restored.path().join("db");
    aedb::restore_from_backup_chain(
        &[backup.path().join("full")],
        &target,
        aedb::RestoreOptions {
            config: config(),
            strict: true,
            target_lsn: None,
        },
        &mut |_, _| {},
    )
    .unwrap();
    let db = open(&target);
    assert_eq!(db.write_freeze().unwrap().reason, "integrity alert 7");
    assert!(is_frozen(
        &db.kv_put_as(&teller, &ns, "k", "v").unwrap_err()
    ));
    db.shutdown().unwrap();
}

#[test]
fn a_freeze_survives_a_reopen_until_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let root = caller("root");
    let db = open(dir.path());
    let ns = bank(&db);
    db.freeze_writes_as(&root, "forensics").unwrap();
    db.shutdown().unwrap();

    let db = open(dir.path());
    assert_eq!(db.write_freeze().unwrap().reason, "forensics");
    assert!(db.operational_metrics().frozen);
    assert!(is_frozen(&db.kv_put_as(&root, &ns, "k", "v").unwrap_err()));
    // Also after a checkpoint (the entry is in the checkpointed state, not only the WAL).
    db.checkpoint_now_as(&root).unwrap();
    db.shutdown().unwrap();

    let db = open(dir.path());
    assert!(is_frozen(&db.kv_put_as(&root, &ns, "k", "v").unwrap_err()));
    db.unfreeze_writes_as(&root).unwrap();
    db.shutdown().unwrap();

    let db = open(dir.path());
    assert!(db.write_freeze().is_none());
    db.kv_put_as(&root, &ns, "k", "v").unwrap();
    db.shutdown().unwrap();
}

#[test]
fn only_a_global_admin_freezes_unfreezes_or_changes_rate_limits() {
    let dir = tempfile::tempdir().unwrap();
    let root = caller("root");
    let teller = caller("teller");
    let db = open(dir.path());
    let ns = bank(&db);
    let denied = |e: Error| matches!(e, Error::Access(AccessError::Denied(_)));
    assert!(denied(db.freeze_writes_as(&teller, "no").unwrap_err()));
    assert!(db.write_freeze().is_none());
    db.kv_put_as(&teller, &ns, "k", "v").unwrap();
    db.freeze_writes_as(&root, "yes").unwrap();
    assert!(denied(db.unfreeze_writes_as(&teller).unwrap_err()));
    assert!(db.write_freeze().is_some());
    assert!(denied(
        db.set_rate_limits_as(&teller, RateLimits::new())
            .unwrap_err()
    ));
    // Anonymous forms are refused on a secure instance.
    assert!(matches!(
        db.freeze_writes("x").unwrap_err(),
        Error::Access(AccessError::CallerRequired)
    ));
    // An empty reason is a typed input error.
    let e = db.freeze_writes_as(&root, "").unwrap_err();
    assert_eq!(
        (e.code(), e.class()),
        ("freeze.invalid_reason", ErrorClass::InvalidInput)
    );
    let rows = db.audit_rows_as(&root, AuditTable::Authz).unwrap();
    assert!(rows.iter().filter(|r| r.kind == "denied").count() >= 3);
    db.shutdown().unwrap();
}

#[test]
fn an_open_instance_freezes_durably_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = AedbInstance::open(dir.path(), config()).unwrap();
    db.create_project("app").unwrap();
    db.create_scope("app", "main").unwrap();
    let ns = Namespace::parse("app", "main").unwrap();
    // Nothing to lift yet: no commit.
    let lsn = db.snapshot().unwrap().lsn();
    assert_eq!(db.unfreeze_writes().unwrap(), lsn);
    db.freeze_writes("maintenance").unwrap();
    assert!(is_frozen(&db.kv_put(&ns, "k", "v").unwrap_err()));
    assert!(is_frozen(&db.create_scope("app", "x").unwrap_err()));
    db.shutdown().unwrap();

    // Still an open (not secure) database, still frozen.
    let db = AedbInstance::open(dir.path(), config()).unwrap();
    assert!(is_frozen(&db.kv_put(&ns, "k", "v").unwrap_err()));
    db.unfreeze_writes().unwrap();
    db.kv_put(&ns, "k", "v").unwrap();
    db.shutdown().unwrap();
}

/// One commit per hour with a burst of `burst`: no token refills during a test.
fn hourly(burst: u64) -> RateLimit {
    RateLimit::new(1, Duration::from_secs(3600)).burst(burst)
}

fn rate_limited(e: &Error) -> bool {
    matches!(e.as_commit(), Some(CommitError::RateLimited { .. }))
        && e.code() == "commit.rate_limited"
        && e.class() == ErrorClass::Retryable
}

#[test]
fn rate_limits_refuse_commits_over_the_limit_per_project() {
    let dir = tempfile::tempdir().unwrap();
    let config = AedbConfig::production([0x41; 32])
        .per_project_commit_rate_limit(hourly(2))
        .commit_admission_wait(Duration::from_millis(1));
    let db = AedbInstance::open(dir.path(), config).unwrap();
    // DDL counts against its project's bucket: one token of `a` is used here...
    db.create_project("a").unwrap();
    db.create_project("b").unwrap();
    db.create_scope("b", "s").unwrap();
    let a = Namespace::parse("a", "s").unwrap();
    let b = Namespace::parse("b", "s").unwrap();
    // ...and one more here; `a` is then empty, waiting or not.
    db.create_scope("a", "s").unwrap();
    assert!(rate_limited(&db.kv_put(&a, "k", "v").unwrap_err()));
    assert!(rate_limited(
        &db.try_commit(put(&a, "k"), Finality::Durable).unwrap_err()
    ));
    assert!(rate_limited(
        &futures::executor::block_on(db.commit_async(put(&a, "k"), Finality::Durable)).unwrap_err()
    ));
    // `b` used both its tokens too.
    assert!(rate_limited(&db.kv_put(&b, "k", "v").unwrap_err()));
    assert!(db.snapshot().unwrap().kv_get(&a, b"k").unwrap().is_none());

    let m = db.operational_metrics();
    assert_eq!(m.errors.rate_limited, 4);
    let by_project: Vec<(&str, u64, u64)> = m
        .admission
        .iter()
        .map(|p| (p.project.as_str(), p.admitted, p.limited))
        .collect();
    assert_eq!(by_project, vec![("a", 2, 3), ("b", 2, 1)]);

    // An admin raises the limits at run time: in force for the next commit.
    db.set_rate_limits(RateLimits::new().global(RateLimit::per_second(1_000_000)))
        .unwrap();
    db.kv_put(&a, "k", "v").unwrap();
    db.kv_put(&b, "k", "v").unwrap();
    // A zero limit is a typed configuration error and changes nothing.
    let e = db
        .set_rate_limits(RateLimits::new().global(RateLimit::per_second(0)))
        .unwrap_err();
    assert_eq!(
        (e.code(), e.class()),
        ("config.invalid", ErrorClass::InvalidInput)
    );
    db.kv_put(&a, "k2", "v").unwrap();
    db.shutdown().unwrap();
}

#[test]
fn rate_limits_spare_the_engine_and_are_audited_when_changed() {
    let dir = tempfile::tempdir().unwrap();
    let root = caller("root");
    let config = config()
        .global_commit_rate_limit(hourly(1))
        .commit_admission_wait(Duration::ZERO);
    let db =
        AedbInstance::open_secure(dir.path(), config, SecureConfig::new(root.clone())).unwrap();
    db.create_project_as(&root, "p").unwrap();
    // The bucket is empty; the engine's policy and audit commits still go through.
    assert!(rate_limited(
        &db.create_scope_as(&root, "p", "s").unwrap_err()
    ));
    db.grant_as(
        &root,
        &caller("x"),
        Permission::ProjectAdmin {
            project: "p".parse().unwrap(),
        },
        false,
    )
    .unwrap();
    let limits = RateLimits::new().per_caller(RateLimit::per_second(10_000));
    db.set_rate_limits_as(&root, limits.clone()).unwrap();
    assert_eq!(db.rate_limits(), limits);
    db.create_scope_as(&root, "p", "s").unwrap();
    let rows = db.audit_rows_as(&root, AuditTable::Authz).unwrap();
    assert!(rows.iter().any(|r| r.kind == "rate_limits_changed"));
    db.shutdown().unwrap();
}

#[test]
fn a_commit_past_its_deadline_is_refused_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = caller("root");
    let teller = caller("teller");
    let db = open(dir.path());
    let ns = bank(&db);
    // The setup's audit rows are committed in the background: let them land first.
    let before = settled_lsn(&db, &root);
    // Already past when the Sequencer dequeues it.
    let e = db
        .commit_with_deadline_as(&teller, put(&ns, "late"), Finality::Durable, Instant::now())
        .unwrap_err();
    assert!(matches!(e.as_commit(), Some(CommitError::Timeout)), "{e:?}");
    assert_eq!(
        (e.code(), e.class()),
        ("commit.timeout", ErrorClass::Retryable)
    );
    // Nothing lands later either (no background write on the refusal's behalf).
    assert_eq!(settled_lsn(&db, &root), before, "no LSN was used");
    let snapshot = db.snapshot_as(&teller);
    assert!(snapshot.kv_get(&ns, b"late").unwrap().is_none());
    assert_eq!(snapshot.lsn(), before, "no LSN was used");
    assert_eq!(db.operational_metrics().errors.timeout, 1);

    // A distant deadline changes nothing.
    let far = Instant::now() + Duration::from_secs(3600);
    let ok = db
        .commit_with_deadline_as(&teller, put(&ns, "on-time"), Finality::Durable, far)
        .unwrap();
    assert!(ok.lsn > before);
    db.shutdown().unwrap();

    let odir = tempfile::tempdir().unwrap();
    let db = AedbInstance::open(odir.path(), config()).unwrap();
    db.create_project("a").unwrap();
    db.create_scope("a", "s").unwrap();
    let a = Namespace::parse("a", "s").unwrap();
    let e = db
        .commit_with_deadline(put(&a, "k"), Finality::Visible, Instant::now())
        .unwrap_err();
    assert_eq!(e.code(), "commit.timeout");
    db.commit_with_deadline(put(&a, "k"), Finality::Visible, far)
        .unwrap();
    db.shutdown().unwrap();
}

#[test]
fn failed_version_and_compare_assertions_count_as_optimistic_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let db = AedbInstance::open(dir.path(), config()).unwrap();
    db.create_project("a").unwrap();
    db.create_scope("a", "s").unwrap();
    let ns = Namespace::parse("a", "s").unwrap();
    let key = KvKey::new("k").unwrap();
    let first = db.commit(put(&ns, "k")).unwrap();
    // A stale version (another writer got there first): an optimistic conflict.
    let stale = put(&ns, "k").assert(Assertion::KvVersionEquals {
        ns: ns.clone(),
        key: key.clone(),
        lsn: Lsn::ZERO,
    });
    assert_eq!(db.commit(stale).unwrap_err().failed_assertion(), Some(0));
    // An existence check failing is an assertion failure, not a conflict signal.
    let absent = put(&ns, "k").assert(Assertion::KvAbsent {
        ns: ns.clone(),
        key: key.clone(),
    });
    assert_eq!(db.commit(absent).unwrap_err().failed_assertion(), Some(0));
    // The current version passes.
    let fresh = put(&ns, "k").assert(Assertion::KvVersionEquals {
        ns: ns.clone(),
        key,
        lsn: first.lsn,
    });
    db.commit(fresh).unwrap();
    let m = db.operational_metrics();
    assert_eq!(m.optimistic_conflicts, 1);
    assert_eq!(m.errors.assertion_failed, 2);
    db.shutdown().unwrap();
}

#[test]
fn no_commit_sequenced_after_a_freeze_applies() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let root = caller("root");
    let db = Arc::new(open(dir.path()));
    let ns = bank(&db);
    let frozen = Arc::new(AtomicBool::new(false));
    let committers: Vec<_> = (0..4)
        .map(|t| {
            let (db, ns, frozen) = (db.clone(), ns.clone(), frozen.clone());
            std::thread::spawn(move || {
                let teller = caller("teller");
                let mut applied = Vec::new();
                let mut refused_after = 0;
                for i in 0..100_000u32 {
                    let seen = frozen.load(Ordering::Acquire);
                    match db.try_commit_as(
                        &teller,
                        put(&ns, &format!("{t}/{i}")),
                        Finality::Visible,
                    ) {
                        Ok(o) => applied.push(o.lsn),
                        Err(e) if is_frozen(&e) => refused_after += u32::from(seen),
                        Err(e) if e.code() == "commit.busy" => {}
                        Err(e) => panic!("{e:?}"),
                    }
                    if refused_after == 50 {
                        break;
                    }
                }
                applied
            })
        })
        .collect();
    // Let the committers fill the pipeline, then freeze.
    while db.operational_metrics().commits < 500 {
        std::thread::yield_now();
    }
    let at = db.freeze_writes_as(&root, "race").unwrap();
    frozen.store(true, Ordering::Release);
    let applied: Vec<Lsn> = committers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(!applied.is_empty());
    for lsn in applied {
        assert!(lsn < at, "commit at {lsn} applied after the freeze at {at}");
    }
    Arc::try_unwrap(db).unwrap().shutdown().unwrap();
}
