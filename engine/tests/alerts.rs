//! The security runbook's alerts (issue 13, items 4, 9 and 10): the alertable metrics
//! of `operational_metrics()`, one `authz_audit` row per admin-only call, and integrity
//! alerts recorded durably by recovery.

use aedb::{
    AedbConfig, AedbInstance, Assertion, AuditTable, CallerId, Namespace, Permission,
    RecoveryEventKind, Resource, SecureConfig, Transaction,
};

const KEY: [u8; 32] = [0x11; 32];

fn caller(name: &str) -> CallerId {
    CallerId::new(name).unwrap()
}

fn config() -> AedbConfig {
    AedbConfig::production(KEY)
        .with_checkpoint_key([0x22; 32])
        .segment_size(64 * 1024)
}

fn open_secure(dir: &std::path::Path) -> AedbInstance {
    AedbInstance::open_secure(dir, config(), SecureConfig::new(caller("root"))).unwrap()
}

fn none() -> impl FnMut(u64, u64) {
    |_, _| {}
}

fn authz_rows(db: &AedbInstance, admin: &CallerId) -> Vec<aedb::AuditRow> {
    db.audit_rows_as(admin, AuditTable::Authz).unwrap()
}

/// Every admin-only `*_as` call adds exactly one `authz_audit` row naming the caller and
/// the action.
#[test]
fn every_admin_only_call_leaves_exactly_one_audit_row() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_secure(&dir.path().join("db"));
    let root = caller("root");
    let ops = caller("ops");
    db.grant_as(&root, &ops, Permission::GlobalAdmin, false)
        .unwrap();
    let backups = dir.path().join("backups");
    type Call<'a> = Box<dyn Fn(&AedbInstance) + 'a>;
    let calls: Vec<(&str, &str, Call<'_>)> = vec![
        (
            "backup",
            "admin_action",
            Box::new(|db| {
                db.backup_full_as(&ops, backups.join("full"), &mut none())
                    .unwrap();
            }),
        ),
        (
            "backup",
            "admin_action",
            Box::new(|db| {
                db.backup_incremental_as(
                    &ops,
                    backups.join("incr"),
                    backups.join("full"),
                    &mut none(),
                )
                .unwrap();
            }),
        ),
        (
            "checkpoint",
            "admin_action",
            Box::new(|db| {
                db.checkpoint_now_as(&ops).unwrap();
            }),
        ),
        (
            "rotate_keys",
            "key_rotation",
            Box::new(|db| {
                db.rotate_keys_as(&ops).unwrap();
            }),
        ),
        (
            "read_metrics",
            "admin_action",
            Box::new(|db| {
                db.operational_metrics_as(&ops).unwrap();
            }),
        ),
        (
            "read_audit",
            "admin_action",
            Box::new(|db| {
                db.audit_rows_as(&ops, AuditTable::Assertion).unwrap();
            }),
        ),
        (
            "verify_audit",
            "admin_action",
            Box::new(|db| {
                db.verify_audit_as(&ops).unwrap();
            }),
        ),
        (
            "export_audit",
            "admin_action",
            Box::new(|db| {
                db.export_audit_as(&ops, backups.join("audit.jsonl"))
                    .unwrap();
            }),
        ),
    ];
    std::fs::create_dir_all(&backups).unwrap();
    for (what, kind, call) in calls {
        // Each read of the table is audited too: its row is the last one it returns.
        let before = authz_rows(&db, &root).len();
        call(&db);
        let rows = authz_rows(&db, &root);
        let new = &rows[before..rows.len() - 1];
        assert_eq!(new.len(), 1, "{what}: {new:?}");
        let row = &new[0];
        assert_eq!(row.caller, "ops", "{what}: {row:?}");
        assert_eq!(row.kind, kind, "{what}: {row:?}");
        if kind == "admin_action" {
            assert_eq!(row.subject, what, "{row:?}");
        }
    }
    // Counted by caller too (root's reads of the table above, ops's calls).
    let m = db.operational_metrics();
    assert_eq!(m.global_admin_actions_by_caller.get("ops"), Some(&8));
    assert!(m.global_admin_actions_by_caller.get("root").copied() >= Some(16));
    db.shutdown().unwrap();
}

/// The runbook's alert inputs: assertion failures and denials by project, grants,
/// revokes and ownership transfers, backup age by kind (also after a restart, from the
/// manifest's backup records).
#[test]
fn alertable_metrics_count_by_project_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    let db = open_secure(&data);
    let root = caller("root");
    let bob = caller("bob");
    let ns = Namespace::parse("bank", "eu").unwrap();
    db.create_project_as(&root, "bank").unwrap();
    db.create_scope_as(&root, "bank", "eu").unwrap();
    db.create_project_as(&root, "games").unwrap();
    let write = Permission::KvWrite {
        ns: ns.clone(),
        prefix: b"acct/".to_vec(),
    };
    let read = Permission::KvRead {
        ns: ns.clone(),
        prefix: b"acct/".to_vec(),
    };
    db.grant_as(&root, &bob, write.clone(), false).unwrap();
    db.grant_as(&root, &bob, read, false).unwrap();
    // Two failed assertions in `bank`.
    for _ in 0..2 {
        let tx = Transaction::new()
            .assert(Assertion::KvExists {
                ns: ns.clone(),
                key: aedb::KvKey::new(b"acct/missing").unwrap(),
            })
            .kv_put(
                &ns,
                aedb::KvKey::new(b"acct/x").unwrap(),
                aedb::KvValue::new(b"1").unwrap(),
            );
        assert!(db.commit_as(&bob, tx).is_err());
    }
    // Denials: a write outside bob's prefix (bank), an admin-only call (_global).
    assert!(db.kv_put_as(&bob, &ns, "other/1", "x").is_err());
    assert!(db.checkpoint_now_as(&bob).is_err());
    db.revoke_as(&root, &bob, write).unwrap();
    db.transfer_ownership_as(&root, Resource::Scope(ns.clone()), &bob)
        .unwrap();

    let m = db.operational_metrics();
    assert_eq!(
        m.assertion_failures_by_project.get("bank"),
        Some(&2),
        "{m:?}"
    );
    assert_eq!(m.errors.assertion_failed, 2);
    assert_eq!(m.authz_denials_by_project.get("bank"), Some(&1), "{m:?}");
    assert_eq!(m.authz_denials_by_project.get("_global"), Some(&1), "{m:?}");
    assert_eq!((m.grants, m.revokes, m.ownership_transfers), (2, 1, 1));
    assert_eq!(m.last_full_backup_age_seconds, None);

    let backups = dir.path().join("b");
    db.backup_full_as(&root, backups.join("full"), &mut none())
        .unwrap();
    let m = db.operational_metrics();
    assert!(
        m.last_full_backup_age_seconds.is_some_and(|a| a < 60),
        "{m:?}"
    );
    assert_eq!(m.last_incremental_backup_age_seconds, None);
    db.backup_incremental_as(
        &root,
        backups.join("inc"),
        backups.join("full"),
        &mut none(),
    )
    .unwrap();
    db.shutdown().unwrap();

    // After a restart the ages come from the manifest's backup records.
    let db = open_secure(&data);
    let m = db.operational_metrics();
    assert!(
        m.last_full_backup_age_seconds.is_some_and(|a| a < 60),
        "{m:?}"
    );
    assert!(
        m.last_incremental_backup_age_seconds
            .is_some_and(|a| a < 60),
        "{m:?}"
    );
    assert!(
        m.recovery_events.is_empty(),
        "a clean restart alerts nothing: {m:?}"
    );
    db.shutdown().unwrap();
}

/// A torn WAL tail is cut by `open`, counted, and recorded in the manifest as a
/// `RecoveryEvent` that `inspect` and `verify` show.
#[test]
fn a_torn_wal_tail_is_recorded_and_shown_by_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    {
        let db = AedbInstance::open(&data, config()).unwrap();
        db.create_project("p").unwrap();
        db.create_scope("p", "s").unwrap();
        let ns = Namespace::parse("p", "s").unwrap();
        for i in 0..10 {
            db.kv_put(&ns, format!("k{i}"), "v").unwrap();
        }
        db.shutdown().unwrap();
    }
    let clean = aedb::offline::verify_data_dir(&data, &config()).unwrap();
    assert!(!clean.routed_around_damage());
    // A non-zero byte in the preallocated zero tail of the active segment: a torn write.
    let segment = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() - 100;
    assert_eq!(bytes[at], 0, "the segment is preallocated");
    bytes[at] = 0xA5;
    std::fs::write(&segment, bytes).unwrap();

    // The dry run sees what open would cut.
    let v = aedb::offline::verify_data_dir(&data, &config()).unwrap();
    assert_eq!(v.dry_run_events.len(), 1, "{:?}", v.dry_run_events);
    assert_eq!(v.dry_run_events[0].kind, RecoveryEventKind::WalTornTail);

    let db = AedbInstance::open(&data, config()).unwrap();
    let m = db.operational_metrics();
    assert_eq!(m.recovery_events.get("wal_torn_tail"), Some(&1), "{m:?}");
    assert!(m.recovery_torn_tail_bytes > 0);
    db.shutdown().unwrap();

    let i = aedb::offline::inspect(&data, &config()).unwrap();
    let events = i.manifest.live.recovery_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, RecoveryEventKind::WalTornTail);
    assert!(
        events[0]
            .detail
            .contains(segment.file_name().unwrap().to_str().unwrap()),
        "{events:?}"
    );
    assert!(
        i.manifest.records.iter().any(|r| r
            .to_string()
            .starts_with("RecoveryEvent { event: wal_torn_tail")),
        "inspect lists the record"
    );
    // The recorded alert keeps verify failing (the CLI exits 1 without
    // --allow-fallback), while the cut log itself now verifies cleanly.
    let v = aedb::offline::verify_data_dir(&data, &config()).unwrap();
    assert!(v.dry_run_events.is_empty(), "{:?}", v.dry_run_events);
    assert_eq!(v.recorded_events().len(), 1);
    assert!(v.routed_around_damage());
    // A second clean open records nothing new.
    let db = AedbInstance::open(&data, config()).unwrap();
    assert!(db.operational_metrics().recovery_events.is_empty());
    db.shutdown().unwrap();
    let i = aedb::offline::inspect(&data, &config()).unwrap();
    assert_eq!(i.manifest.live.recovery_events().len(), 1);
}
