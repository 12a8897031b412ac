//! Secure instances end to end: anonymous calls refused for every API, the authz matrix
//! (every caller-facing operation against every permission kind, with an audit row per
//! denial), grants surviving reopen, the audit chains (exactly one row per change and
//! per failed assertion, tamper detection, a verifiable export), `open_production`.

use std::ops::Bound;

use aedb::{
    AccessError, AedbConfig, AedbInstance, Assertion, AuditChainError, AuditExportError,
    AuditTable, CallerId, ColumnDef, ColumnName, ColumnType, CommitError, ConfigError, Direction,
    Error, Finality, KvKey, KvValue, Namespace, Numeric, OpenError, Permission, Resource,
    SecureConfig, TableName, TableSchema, Transaction, Value,
};

const KEY: [u8; 32] = [0x11; 32];

fn caller(name: &str) -> CallerId {
    CallerId::new(name).unwrap()
}

fn config() -> AedbConfig {
    AedbConfig::production(KEY)
        .checkpoint_on_shutdown(false)
        .with_checkpoint_key([0x22; 32])
        .segment_size(64 * 1024)
}

fn open(dir: &std::path::Path) -> AedbInstance {
    AedbInstance::open_secure(dir, config(), SecureConfig::new(caller("root"))).unwrap()
}

fn schema() -> TableSchema {
    let id = ColumnName::new("id").unwrap();
    TableSchema::new(
        vec![
            ColumnDef::new(id.clone(), ColumnType::U64),
            ColumnDef::new(ColumnName::new("v").unwrap(), ColumnType::Text),
        ],
        vec![id],
    )
    .unwrap()
}

/// The access error an API's error carries (every API returns `aedb::Error`, and a
/// refusal is always its `Access` kind).
trait AccessOf: std::fmt::Debug {
    fn access(&self) -> Option<&AccessError>;
}

impl AccessOf for Error {
    fn access(&self) -> Option<&AccessError> {
        match self {
            Error::Access(a) => Some(a),
            _ => None,
        }
    }
}

fn is_denied<T: std::fmt::Debug>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Access(AccessError::Denied(_))))
}

#[test]
fn anonymous_calls_on_secure_instances_are_refused_for_every_api() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let root = caller("root");
    // The namespace exists and the DDL below names new objects, so every call would
    // succeed for a caller: nothing but the missing caller refuses them.
    db.create_project_as(&root, "p").unwrap();
    db.create_scope_as(&root, "p", "s").unwrap();
    db.create_table_as(&root, &Namespace::parse("p", "s").unwrap(), "t", schema())
        .unwrap();
    // The DDL's audit rows are written by the Audit actor, asynchronously: reading the
    // audit table waits until every event queued so far is durable, so no commit of
    // theirs lands after `before`.
    db.audit_rows_as(&root, AuditTable::Authz).unwrap();
    let before = db.snapshot_as(&root).lsn();
    let ns = Namespace::parse("p", "s").unwrap();
    let tx =
        || Transaction::new().kv_put(&ns, KvKey::new("k").unwrap(), KvValue::new("v").unwrap());
    let required = |e: &dyn AccessOf| {
        assert_eq!(e.access(), Some(&AccessError::CallerRequired), "{e:?}");
    };
    required(&db.commit(tx()).unwrap_err());
    required(&db.commit_with(tx(), Finality::Durable).unwrap_err());
    required(&db.try_commit(tx(), Finality::Durable).unwrap_err());
    required(&futures::executor::block_on(db.commit_async(tx(), Finality::Durable)).unwrap_err());
    required(
        &db.ddl(aedb::Ddl::CreateProject {
            project: aedb::ProjectName::new("q").unwrap(),
        })
        .unwrap_err(),
    );
    required(&db.create_project("q").unwrap_err());
    required(&db.create_scope("p", "s2").unwrap_err());
    required(&db.create_table(&ns, "t2", schema()).unwrap_err());
    required(&db.kv_put(&ns, "k", "v").unwrap_err());
    required(&db.kv_delete(&ns, "k").unwrap_err());
    required(&db.kv_add(&ns, "n", Numeric::U64(1)).unwrap_err());
    required(&db.kv_sub(&ns, "n", Numeric::U64(1)).unwrap_err());
    required(&db.kv_get(&ns, "k").unwrap_err());
    required(&db.snapshot().unwrap_err());
    required(&db.snapshot_at(before).unwrap_err());
    required(&db.checkpoint_now().unwrap_err());
    required(&db.rotate_keys().unwrap_err());
    let backup = dir
        .path()
        .join("..")
        .join(format!("anon-backup-{}", std::process::id()));
    required(&db.backup_full(&backup, &mut |_, _| {}).unwrap_err());
    assert!(!backup.exists(), "a refused backup wrote nothing");
    // Nothing happened: no commit, DDL or audit row was sequenced, the keys the calls
    // named are absent from the existing namespace, and the key epoch is unchanged.
    let after = db.snapshot_as(&root);
    assert_eq!(
        after.lsn(),
        before,
        "a refused anonymous call sequenced nothing"
    );
    assert_eq!(after.kv_get(&ns, b"k").unwrap(), None);
    assert_eq!(after.kv_get(&ns, b"n").unwrap(), None);
    assert_eq!(db.operational_metrics().key_epoch, 1);
    // The system caller cannot be named by users, and the value (which code can build)
    // is refused by every caller-facing API.
    assert_eq!(CallerId::new("_system"), Err(aedb::CallerIdError::Reserved));
    let forged = CallerId::system();
    assert!(is_denied(&db.create_project_as(&forged, "p")));
    assert!(is_denied(&db.kv_put_as(&forged, &ns, "k", "v")));
    assert!(is_denied(&db.kv_get_as(&forged, &ns, "k")));
    assert!(is_denied(&db.snapshot_as(&forged).kv_get(&ns, b"k")));
    assert!(is_denied(&db.grant_as(
        &forged,
        &caller("eve"),
        Permission::GlobalAdmin,
        false
    )));
    assert!(is_denied(&db.audit_rows_as(&forged, AuditTable::Authz)));
    let rows = db.audit_rows_as(&root, AuditTable::Authz).unwrap();
    assert!(
        rows.iter()
            .filter(|r| r.kind == "denied" && r.caller == "_system")
            .count()
            >= 4,
        "{rows:?}"
    );
    db.shutdown().unwrap();
}

/// Runs one operation as a caller.
type Run = Box<dyn Fn(&AedbInstance, &CallerId) -> Result<(), Error>>;

/// One caller-facing operation of the matrix.
struct Op {
    name: &'static str,
    run: Run,
}

fn op(
    name: &'static str,
    run: impl Fn(&AedbInstance, &CallerId) -> Result<(), Error> + 'static,
) -> Op {
    Op {
        name,
        run: Box::new(run),
    }
}

fn ops() -> Vec<Op> {
    let ns = || Namespace::parse("p", "s").unwrap();
    let other = || Namespace::parse("p", "t").unwrap();
    let table = || TableName::new("tab").unwrap();
    let row = |id: u64| {
        vec![
            (ColumnName::new("id").unwrap(), Value::U64(id)),
            (ColumnName::new("v").unwrap(), Value::Text("x".into())),
        ]
    };
    vec![
        op("kv_get ab", move |db, c| {
            db.kv_get_as(c, &ns(), "ab").map(drop)
        }),
        op("kv_get abc", move |db, c| {
            db.kv_get_as(c, &ns(), "abc").map(drop)
        }),
        op("kv_get a", move |db, c| {
            db.kv_get_as(c, &ns(), "a").map(drop)
        }),
        op("history kv_get ab", move |db, c| {
            let now = db.snapshot_as(c).lsn();
            db.snapshot_at_as(c, now)?.kv_get(&ns(), b"ab").map(drop)
        }),
        op("kv_put abc", move |db, c| {
            db.kv_put_as(c, &ns(), "abc", "v").map(drop)
        }),
        op("kv_put a", move |db, c| {
            db.kv_put_as(c, &ns(), "a", "v").map(drop)
        }),
        op("kv_add abn", move |db, c| {
            db.kv_add_as(c, &ns(), "abn", Numeric::U64(1)).map(drop)
        }),
        op("scan ab", move |db, c| {
            db.snapshot_as(c)
                .kv_scan_prefix(&ns(), b"ab", Direction::Forward, 10)
                .map(drop)
        }),
        op("scan a..ac", move |db, c| {
            db.snapshot_as(c)
                .kv_scan_range(
                    &ns(),
                    Bound::Included(b"a"),
                    Bound::Excluded(b"ac"),
                    Direction::Forward,
                    10,
                )
                .map(drop)
        }),
        op("scan_with a..ac", move |db, c| {
            db.snapshot_as(c)
                .kv_scan_with(
                    &ns(),
                    Bound::Included(b"a"),
                    Bound::Excluded(b"ac"),
                    Direction::Forward,
                    10,
                    |_, _, _| std::ops::ControlFlow::Continue(()),
                )
                .map(drop)
        }),
        op("kv_get other scope", move |db, c| {
            db.kv_get_as(c, &other(), "ab").map(drop)
        }),
        op("table_get", move |db, c| {
            db.snapshot_as(c)
                .table_get(&ns(), &table(), &[Value::U64(1)])
                .map(drop)
        }),
        op("table_insert", move |db, c| {
            let tx = Transaction::new().table_upsert(&ns(), &table(), row(7));
            db.commit_as(c, tx).map(drop)
        }),
        op("assert on kv ab", move |db, c| {
            let tx = Transaction::new().assert(Assertion::KvAbsent {
                ns: ns(),
                key: KvKey::new("ab-none").unwrap(),
            });
            db.commit_as(c, tx).map(drop)
        }),
        op("create_table", move |db, c| {
            // Unique names so repeated allowed calls do not collide.
            let name = format!("t{}", c.as_str().len() * 1000 + rand_suffix());
            db.create_table_as(c, &ns(), &name, schema()).map(drop)
        }),
        op("create_scope", move |db, c| {
            let name = format!("sc{}", rand_suffix());
            db.create_scope_as(c, "p", &name).map(drop)
        }),
        op("create_project", move |db, c| {
            let name = format!("pr{}", rand_suffix());
            db.create_project_as(c, &name).map(drop)
        }),
        op("checkpoint", |db, c| db.checkpoint_now_as(c).map(drop)),
        op("read_metrics", |db, c| {
            db.operational_metrics_as(c).map(drop)
        }),
        op("read_audit", |db, c| {
            db.audit_rows_as(c, AuditTable::Authz).map(drop)
        }),
        op("kv_delete abc", move |db, c| {
            db.kv_delete_as(c, &ns(), "abc").map(drop)
        }),
        op("kv_sub abn", move |db, c| {
            db.kv_sub_as(c, &ns(), "abn", Numeric::U64(0)).map(drop)
        }),
        op("try_commit abc", move |db, c| {
            let tx = Transaction::new().kv_put(
                &ns(),
                KvKey::new("abc").unwrap(),
                KvValue::new("w").unwrap(),
            );
            db.try_commit_as(c, tx, Finality::Durable).map(drop)
        }),
        op("table_scan", move |db, c| {
            db.snapshot_as(c)
                .table_scan(
                    &ns(),
                    &table(),
                    &aedb::KeyRange::all(),
                    Direction::Forward,
                    10,
                )
                .map(drop)
        }),
        op("table_schema", move |db, c| {
            db.snapshot_as(c).table_schema(&ns(), &table()).map(drop)
        }),
        op("grant kvread ab", move |db, c| {
            let p = Permission::KvRead {
                ns: ns(),
                prefix: b"ab".to_vec(),
            };
            db.grant_as(c, &CallerId::new("grantee").unwrap(), p, false)
                .map(drop)
        }),
        op("rotate_keys", |db, c| db.rotate_keys_as(c).map(drop)),
        op("backup_full", |db, c| {
            let dir = std::env::temp_dir().join(format!(
                "aedb-matrix-backup-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            let result = db.backup_full_as(c, &dir, &mut |_, _| {});
            let _ = std::fs::remove_dir_all(&dir);
            result.map(drop)
        }),
    ]
}

fn rand_suffix() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn authz_matrix_every_api_against_every_permission_kind() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let root = caller("root");
    let ns = Namespace::parse("p", "s").unwrap();
    let tab = TableName::new("tab").unwrap();
    db.create_project_as(&root, "p").unwrap();
    db.create_scope_as(&root, "p", "s").unwrap();
    db.create_scope_as(&root, "p", "t").unwrap();
    db.create_table_as(&root, &ns, "tab", schema()).unwrap();

    let kv = |prefix: &[u8]| prefix.to_vec();
    let callers: Vec<(&str, Option<Permission>)> = vec![
        ("global", Some(Permission::GlobalAdmin)),
        (
            "project",
            Some(Permission::ProjectAdmin {
                project: aedb::ProjectName::new("p").unwrap(),
            }),
        ),
        ("scope", Some(Permission::ScopeAdmin { ns: ns.clone() })),
        ("ddl", Some(Permission::TableDdl { ns: ns.clone() })),
        (
            "tread",
            Some(Permission::TableRead {
                ns: ns.clone(),
                table: tab.clone(),
            }),
        ),
        (
            "twrite",
            Some(Permission::TableWrite {
                ns: ns.clone(),
                table: tab.clone(),
            }),
        ),
        (
            "kvread-ab",
            Some(Permission::KvRead {
                ns: ns.clone(),
                prefix: kv(b"ab"),
            }),
        ),
        (
            "kvread-abc",
            Some(Permission::KvRead {
                ns: ns.clone(),
                prefix: kv(b"abc"),
            }),
        ),
        (
            "kvwrite-ab",
            Some(Permission::KvWrite {
                ns: ns.clone(),
                prefix: kv(b"ab"),
            }),
        ),
        ("nobody", None),
    ];
    for (name, permission) in &callers {
        if let Some(p) = permission {
            db.grant_as(&root, &caller(name), p.clone(), false).unwrap();
        }
    }
    // Expected allowed operations per caller; everything else must be denied.
    let allowed = |who: &str| -> Vec<&'static str> {
        let kv_read = vec![
            "kv_get ab",
            "kv_get abc",
            "kv_get a",
            "history kv_get ab",
            "scan ab",
            "scan a..ac",
            "scan_with a..ac",
            "assert on kv ab",
        ];
        let kv_write = vec![
            "kv_put abc",
            "kv_put a",
            "kv_add abn",
            "kv_delete abc",
            "kv_sub abn",
            "try_commit abc",
        ];
        let table = vec!["table_get", "table_insert", "table_scan", "table_schema"];
        let scope_all: Vec<&str> = [
            kv_read.clone(),
            kv_write.clone(),
            table.clone(),
            vec!["create_table", "grant kvread ab"],
        ]
        .concat();
        match who {
            "global" => ops().iter().map(|o| o.name).collect(),
            "project" => [scope_all, vec!["kv_get other scope", "create_scope"]].concat(),
            "scope" => scope_all,
            "ddl" => vec!["create_table"],
            "tread" => vec!["table_get", "table_scan", "table_schema"],
            "twrite" => vec!["table_insert"],
            // "ab" covers "ab", "abc", "abn"; a scan of prefix "ab" too; not "a" or a..ac.
            "kvread-ab" => vec![
                "kv_get ab",
                "kv_get abc",
                "history kv_get ab",
                "scan ab",
                "assert on kv ab",
            ],
            // "abc" is longer than "ab": it covers only keys starting with "abc".
            "kvread-abc" => vec!["kv_get abc"],
            "kvwrite-ab" => vec![
                "kv_put abc",
                "kv_add abn",
                "kv_delete abc",
                "kv_sub abn",
                "try_commit abc",
            ],
            "nobody" => vec![],
            other => panic!("{other}"),
        }
    };
    let mut denials = 0u64;
    let mut failures = Vec::new();
    for (name, _) in &callers {
        let c = caller(name);
        let expected = allowed(name);
        for o in ops() {
            let result = (o.run)(&db, &c);
            let want_allow = expected.contains(&o.name);
            if is_denied(&result) {
                denials += 1;
                if want_allow {
                    failures.push(format!("{name} {}: denied, expected allowed", o.name));
                }
            } else if let Err(e) = &result {
                failures.push(format!("{name} {}: unexpected error {e}", o.name));
            } else if !want_allow {
                failures.push(format!("{name} {}: allowed, expected denied", o.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authz matrix mismatches:\n{}",
        failures.join("\n")
    );
    assert!(denials > 50, "the matrix exercised {denials} denials");
    // Exactly one audit row per denial, and the counter agrees.
    let rows = db.audit_rows_as(&root, AuditTable::Authz).unwrap();
    let denied_rows = rows.iter().filter(|r| r.kind == "denied").count() as u64;
    assert_eq!(denied_rows, denials);
    assert_eq!(db.operational_metrics().authz_denials, denials);
    // Denials are generic: the text never names what was asked for.
    let e = db
        .kv_get_as(&caller("nobody"), &ns, "secret-key")
        .unwrap_err();
    assert_eq!(e.to_string(), "permission denied");
    db.shutdown().unwrap();
}

#[test]
fn grants_persist_and_the_bootstrap_admin_is_installed_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = caller("root");
    let alice = caller("alice");
    let ns = Namespace::parse("p", "s").unwrap();
    {
        let db = open(dir.path());
        db.create_project_as(&root, "p").unwrap();
        db.create_scope_as(&root, "p", "s").unwrap();
        db.grant_as(
            &root,
            &alice,
            Permission::KvWrite {
                ns: ns.clone(),
                prefix: b"a/".to_vec(),
            },
            false,
        )
        .unwrap();
        db.kv_put_as(&alice, &ns, "a/1", "x").unwrap();
        db.shutdown().unwrap();
    }
    // A secure database never opens without access control.
    match AedbInstance::open(dir.path(), config()) {
        Err(aedb::Error::Open(OpenError::SecureDatabase { path })) => assert_eq!(path, dir.path()),
        other => panic!("expected SecureDatabase, got {other:?}"),
    }
    // Reopened with another bootstrap name: the persisted policy applies, the name
    // grants nothing.
    let db = AedbInstance::open_secure(dir.path(), config(), SecureConfig::new(caller("mallory")))
        .unwrap();
    db.kv_put_as(&alice, &ns, "a/2", "y").unwrap();
    assert!(is_denied(&db.kv_put_as(&alice, &ns, "b/1", "y")));
    assert!(is_denied(&db.kv_put_as(
        &caller("mallory"),
        &ns,
        "a/3",
        "y"
    )));
    let rows = db.audit_rows_as(&root, AuditTable::Authz).unwrap();
    assert_eq!(rows.iter().filter(|r| r.kind == "bootstrap").count(), 1);
    db.shutdown().unwrap();
}

#[test]
fn audit_rows_for_changes_and_failed_assertions_and_tamper_detection() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let root = caller("root");
    let bob = caller("bob");
    let carol = caller("carol");
    let ns = Namespace::parse("bank", "eu").unwrap();
    db.create_project_as(&root, "bank").unwrap();
    db.create_scope_as(&root, "bank", "eu").unwrap();
    let read = Permission::KvRead {
        ns: ns.clone(),
        prefix: b"acct/".to_vec(),
    };
    let write = Permission::KvWrite {
        ns: ns.clone(),
        prefix: b"acct/".to_vec(),
    };
    let before = db.audit_rows_as(&root, AuditTable::Authz).unwrap().len();
    db.grant_as(&root, &bob, read.clone(), false).unwrap();
    db.grant_as(&root, &bob, write.clone(), false).unwrap();
    db.kv_put_as(&bob, &ns, "acct/probe", "1")
        .expect("bob may write while he holds KvWrite");
    db.revoke_as(&root, &bob, write).unwrap();
    db.transfer_ownership_as(&root, Resource::Scope(ns.clone()), &carol)
        .unwrap();
    let rows = db.audit_rows_as(&root, AuditTable::Authz).unwrap();
    let new: Vec<_> = rows[before..].iter().map(|r| r.kind.as_str()).collect();
    // The last row is this read itself: every admin-only call is audited.
    assert_eq!(
        new,
        [
            "grant",
            "grant",
            "revoke",
            "ownership_transfer",
            "admin_action"
        ]
    );
    assert!(rows[before..].iter().all(|r| r.caller == "root"));
    assert!(rows[before].subject.contains("bob"), "{:?}", rows[before]);

    // A failed assertion: exactly one assertion_audit row with the index and the
    // actual value.
    db.kv_put_as(&carol, &ns, "acct/bob", "5").unwrap();
    let tx = Transaction::new()
        .assert(Assertion::KvExists {
            ns: ns.clone(),
            key: KvKey::new("acct/bob").unwrap(),
        })
        .assert(Assertion::KvNumericAtLeast {
            ns: ns.clone(),
            key: KvKey::new("acct/carol").unwrap(),
            min: Numeric::U64(10),
        })
        .kv_sub(&ns, KvKey::new("acct/carol").unwrap(), Numeric::U64(10));
    let err = db.commit_as(&carol, tx).unwrap_err();
    assert!(
        matches!(err, aedb::Error::Commit(CommitError::Rejected(_))),
        "{err:?}"
    );
    let failed = db.audit_rows_as(&root, AuditTable::Assertion).unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].kind, "assertion_failed");
    assert_eq!(failed[0].caller, "carol");
    assert_eq!(failed[0].subject, "1");
    assert!(!failed[0].detail.is_empty());

    // The revoke took effect: bob, who still holds KvRead on the prefix, is denied the
    // write he could make before it (not covered by his remaining grant), and can still
    // read.
    let err = db.kv_put_as(&bob, &ns, "acct/probe", "2").unwrap_err();
    match err.access() {
        Some(AccessError::Denied(d)) => {
            assert_eq!(d.reason(), aedb::DenyReason::NotCovered, "{err:?}")
        }
        _ => panic!("expected an access denial after the revoke, got {err:?}"),
    }
    let probe = db.kv_get_as(&bob, &ns, "acct/probe").unwrap().unwrap();
    assert_eq!(
        probe.value.as_bytes(),
        b"1",
        "the denied write changed nothing"
    );
    // The denial is audited in both chains.
    let authz = db.audit_rows_as(&root, AuditTable::Authz).unwrap();
    // The last row is this read (admin_action by root); the denial comes before it.
    let [.., denied, read] = authz.as_slice() else {
        panic!("{authz:?}")
    };
    assert_eq!(
        (denied.kind.as_str(), denied.caller.as_str()),
        ("denied", "bob")
    );
    assert_eq!(
        (
            read.kind.as_str(),
            read.caller.as_str(),
            read.subject.as_str()
        ),
        ("admin_action", "root", "read_audit")
    );
    let assertion = db.audit_rows_as(&root, AuditTable::Assertion).unwrap();
    let last = assertion.last().unwrap();
    assert_eq!(
        (
            last.kind.as_str(),
            last.caller.as_str(),
            last.detail.as_str()
        ),
        ("policy_denied", "bob", "not_covered"),
        "{last:?}"
    );

    // Both chains verify; the export verifies from the file alone (with the key).
    assert_eq!(db.verify_audit_as(&root).unwrap().len(), 2);
    let export = dir.path().join("audit.jsonl");
    let report = db.export_audit_as(&root, &export).unwrap();
    assert_eq!(report.rows.len(), 2);
    let exported = aedb::read_audit_export(&export).unwrap();
    let key_for = |id: &str| audit_key(&db, id);
    aedb::verify_audit_rows(&exported, key_for).unwrap();
    // An edited line in the export is caught: the edited row fails its chained MAC.
    let text = std::fs::read_to_string(&export).unwrap();
    let tampered = dir.path().join("tampered.jsonl");
    std::fs::write(&tampered, text.replacen("\"grant\"", "\"noop\"", 1)).unwrap();
    let rows = aedb::read_audit_export(&tampered).unwrap();
    let edited = exported.iter().find(|r| r.kind == "grant").unwrap();
    let edited_back = rows
        .iter()
        .find(|r| (r.table, r.seq) == (edited.table, edited.seq))
        .unwrap();
    assert_eq!(edited_back.kind, "noop", "the edit hit the first grant row");
    let err = aedb::verify_audit_rows(&rows, |id| audit_key(&db, id)).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::AuditExport(AuditExportError::Chain(AuditChainError::BadMac { table, seq }))
                if (*table, *seq) == (edited.table, edited.seq)
        ),
        "expected BadMac for {:?} row {}, got {err:?}",
        edited.table,
        edited.seq
    );
    // A deleted line too: the chain has a gap where the row was.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(2);
    std::fs::write(&tampered, lines.join("\n")).unwrap();
    let rows = aedb::read_audit_export(&tampered).unwrap();
    let deleted: Vec<_> = exported
        .iter()
        .filter(|r| !rows.iter().any(|k| (k.table, k.seq) == (r.table, r.seq)))
        .collect();
    let [deleted] = deleted[..] else {
        panic!("deleting line 3 removed exactly one row: {deleted:?}");
    };
    assert!(
        exported
            .iter()
            .any(|r| r.table == deleted.table && r.seq > deleted.seq),
        "a row follows the deleted one in its table, so the gap is visible"
    );
    let err = aedb::verify_audit_rows(&rows, |id| audit_key(&db, id)).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::AuditExport(AuditExportError::Chain(AuditChainError::Gap {
                table,
                expected,
                found
            })) if (*table, *expected, *found) == (deleted.table, deleted.seq, deleted.seq + 1)
        ),
        "expected a Gap at {:?} row {}, got {err:?}",
        deleted.table,
        deleted.seq
    );

    // A GlobalAdmin editing a stored audit row through the commit path is caught by
    // the chain check.
    let audit_ns = Namespace::new(
        aedb::ProjectName::reserved("_system").unwrap(),
        aedb::ScopeName::reserved("audit").unwrap(),
    );
    let table = TableName::reserved("authz_audit").unwrap();
    let edit = Transaction::new().table_update(
        &audit_ns,
        &table,
        vec![Value::U64(2)],
        vec![(
            ColumnName::new("detail").unwrap(),
            Value::Text("forged".into()),
        )],
    );
    db.commit_as(&root, edit).unwrap();
    let err = db.verify_audit_as(&root).unwrap_err();
    // `verify_audit_as` carries the chain error: exactly the one the edited row must
    // produce.
    assert!(
        matches!(
            &err,
            Error::AuditExport(AuditExportError::Chain(AuditChainError::BadMac {
                table: AuditTable::Authz,
                seq: 2
            }))
        ),
        "expected BadMac of authz row 2, got {err:?}"
    );
    assert_eq!(err.class(), aedb::ErrorClass::Integrity);
    db.shutdown().unwrap();
    // `aedb check invariants` reports it too, naming the row.
    let checks = aedb::offline::check_invariants(dir.path(), &config()).unwrap();
    let audit = checks
        .iter()
        .find(|c| c.name == "system tables and audit chain")
        .unwrap();
    assert_eq!(audit.status, aedb::offline::CheckStatus::Fail, "{audit:?}");
    assert!(audit.detail.contains("row 2"), "{audit:?}");
}

/// The audit key as the CLI derives it: from the manifest key and the database id.
fn audit_key(db: &AedbInstance, key_id: &str) -> Option<aedb::SecretKey> {
    aedb::audit_key_for(&config(), db.database_id(), key_id).ok()
}

#[test]
fn open_production_refuses_weak_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let secure = || SecureConfig::new(caller("root"));
    for weak in [AedbConfig::low_latency(KEY), AedbConfig::development()] {
        match AedbInstance::open_production(dir.path(), weak, secure()) {
            Err(aedb::Error::Open(OpenError::Config(ConfigError::NotProductionGrade(_)))) => {}
            other => panic!("expected NotProductionGrade, got {other:?}"),
        }
    }
    let db = AedbInstance::open_production(dir.path(), config(), secure()).unwrap();
    assert!(db.is_secure());
    db.shutdown().unwrap();
}

fn environment() -> aedb::ServerEnvironmentProfile {
    aedb::ServerEnvironmentProfile {
        hostname: "node-1".into(),
        os: "linux".into(),
        os_version: "6.8.0".into(),
        binary_sha256: [7; 32],
        tls_certificate_fingerprint: vec![9; 32],
        deployment: "prod-eu".into(),
        region: "eu-west-1".into(),
    }
}

fn open_with_sessions(dir: &std::path::Path, profile: aedb::ServerProfileId) -> AedbInstance {
    let secure = SecureConfig::new(caller("root")).with_sessions(
        aedb::IhpConfig::production(),
        profile,
        environment(),
    );
    AedbInstance::open_secure(dir, config(), secure).unwrap()
}

#[test]
fn session_capsules_authenticate_callers_and_revocation_is_durable() {
    use aedb::{CapsuleError, ChannelBinding};
    let dir = tempfile::tempdir().unwrap();
    let profile = aedb::ServerProfileId::from_bytes([3; 16]);
    let root = caller("root");
    let alice = caller("alice");
    let tls = ChannelBinding::from_slice(b"tls-exporter-material-of-conn-1").unwrap();
    let other_tls = ChannelBinding::from_slice(b"tls-exporter-material-of-conn-2").unwrap();
    let db = open_with_sessions(dir.path(), profile);
    db.create_project_as(&root, "p").unwrap();
    db.create_scope_as(&root, "p", "s").unwrap();
    let ns = Namespace::parse("p", "s").unwrap();
    db.grant_as(
        &root,
        &alice,
        Permission::KvWrite {
            ns: ns.clone(),
            prefix: Vec::new(),
        },
        false,
    )
    .unwrap();

    // A caller gets a capsule for itself; the verified caller drives *_as calls.
    let capsule = db.issue_session_as(&alice, &alice, Some(&tls)).unwrap();
    let who = db.verify_session(capsule.as_bytes(), Some(&tls)).unwrap();
    assert_eq!(who, alice);
    db.kv_put_as(&who, &ns, "k", "v").unwrap();
    // Accepted once; refused on another channel; another caller's capsule needs admin.
    assert!(matches!(
        db.verify_session(capsule.as_bytes(), Some(&tls)),
        Err(Error::Session(CapsuleError::Replayed))
    ));
    let fresh = db.issue_session_as(&alice, &alice, Some(&tls)).unwrap();
    assert!(matches!(
        db.verify_session(fresh.as_bytes(), Some(&other_tls)),
        Err(Error::Session(CapsuleError::ChannelBindingMismatch))
    ));
    assert!(is_denied(&db.issue_session_as(&alice, &root, None)));
    db.issue_session_as(&root, &alice, None).unwrap();

    // A capsule issued before a key rotation still verifies after it.
    let before = db.issue_session_as(&alice, &alice, None).unwrap();
    let unused_epoch1 = db.issue_session_as(&alice, &alice, None).unwrap();
    assert_eq!(db.rotate_keys_as(&root).unwrap().get(), 2);
    assert_eq!(db.verify_session(before.as_bytes(), None).unwrap(), alice);
    let after = db.issue_session_as(&alice, &alice, None).unwrap();
    assert_ne!(after.header().epoch, before.header().epoch);
    assert_eq!(db.verify_session(after.as_bytes(), None).unwrap(), alice);
    let m = db.session_metrics().unwrap();
    assert!(m.decrypt_success >= 3 && m.replays == 1, "{m:?}");
    // Once checkpoints retire epoch 1, its capsules are refused.
    for round in 0..2u32 {
        for i in 0..400u32 {
            let key = format!("fill/{round}/{i:04}");
            db.kv_put_as(&alice, &ns, key, "x".repeat(200)).unwrap();
        }
        db.checkpoint_now_as(&root).unwrap();
    }
    assert_eq!(db.operational_metrics().key_epochs_retired, 1);
    assert!(matches!(
        db.verify_session(unused_epoch1.as_bytes(), None),
        Err(Error::Session(CapsuleError::RetiredEpoch { .. }))
    ));

    // Only a GlobalAdmin revokes a profile; then its capsules are refused, durably.
    let pending = db.issue_session_as(&alice, &alice, None).unwrap();
    assert!(is_denied(&db.revoke_server_profile_as(&alice, profile)));
    db.revoke_server_profile_as(&root, profile).unwrap();
    assert!(matches!(
        db.verify_session(pending.as_bytes(), None),
        Err(Error::Session(CapsuleError::RevokedProfile { .. }))
    ));
    let rows = db.audit_rows_as(&root, AuditTable::Authz).unwrap();
    assert!(rows.iter().any(|r| r.kind == "session_revoked"));
    assert!(rows.iter().any(|r| r.kind == "key_rotation"));
    let env_hash = db.server_env_hash().unwrap();
    db.shutdown().unwrap();

    // The environment hash is in the manifest; the revocation survives a reopen.
    let inspection = aedb::offline::inspect(dir.path(), &config()).unwrap();
    assert_eq!(
        inspection.manifest.live.env_hash(),
        Some((profile.to_string().as_str(), env_hash.as_bytes()))
    );
    let db = open_with_sessions(dir.path(), profile);
    assert!(matches!(
        db.issue_session_as(&alice, &alice, None),
        Err(Error::Session(CapsuleError::RevokedProfile { .. }))
    ));
    db.shutdown().unwrap();
}

/// `ReadSnapshot` (open instances) and `CallerSnapshot` (checked reads) answer the same
/// reads with the same types and values.
#[test]
fn read_snapshot_and_caller_snapshot_read_alike() {
    let open_dir = tempfile::tempdir().unwrap();
    let db = AedbInstance::open(open_dir.path(), config()).unwrap();
    db.create_project("p").unwrap();
    db.create_scope("p", "s").unwrap();
    let ns = Namespace::parse("p", "s").unwrap();
    db.create_table(&ns, "t", schema()).unwrap();
    db.kv_put(&ns, "k", "v").unwrap();
    db.kv_add(&ns, "n", Numeric::U64(7)).unwrap();
    let table = TableName::new("t").unwrap();
    db.commit(Transaction::new().table_insert(
        &ns,
        &table,
        vec![
            (ColumnName::new("id").unwrap(), Value::U64(1)),
            (ColumnName::new("v").unwrap(), Value::Text("x".into())),
        ],
    ))
    .unwrap();
    let plain = db.snapshot().unwrap();
    let checked = db.snapshot_as(&caller("reader"));
    let entry: Option<aedb::KvEntry> = plain.kv_get(&ns, b"k").unwrap();
    assert_eq!(entry, checked.kv_get(&ns, b"k").unwrap());
    let n: Numeric = plain
        .kv_get_numeric(&ns, b"n", aedb::NumericType::U64)
        .unwrap();
    assert_eq!(
        n,
        checked
            .kv_get_numeric(&ns, b"n", aedb::NumericType::U64)
            .unwrap()
    );
    let page: aedb::Page<(KvKey, aedb::KvEntry)> = plain
        .kv_scan_prefix(&ns, b"", Direction::Forward, 10)
        .unwrap();
    assert_eq!(
        page,
        checked
            .kv_scan_prefix(&ns, b"", Direction::Forward, 10)
            .unwrap()
    );
    assert_eq!(
        plain
            .kv_scan_range(
                &ns,
                Bound::Unbounded,
                Bound::Unbounded,
                Direction::Reverse,
                1
            )
            .unwrap(),
        checked
            .kv_scan_range(
                &ns,
                Bound::Unbounded,
                Bound::Unbounded,
                Direction::Reverse,
                1
            )
            .unwrap()
    );
    let row: Option<aedb::Row> = plain.table_get(&ns, &table, &[Value::U64(1)]).unwrap();
    assert_eq!(
        row,
        checked.table_get(&ns, &table, &[Value::U64(1)]).unwrap()
    );
    let range = aedb::KeyRange::all();
    assert_eq!(
        plain
            .table_scan(&ns, &table, &range, Direction::Forward, 10)
            .unwrap(),
        checked
            .table_scan(&ns, &table, &range, Direction::Forward, 10)
            .unwrap()
    );
    let schema: TableSchema = plain.table_schema(&ns, &table).unwrap();
    assert_eq!(schema, checked.table_schema(&ns, &table).unwrap());
    assert_eq!(plain.kv_len(&ns).unwrap(), checked.kv_len(&ns).unwrap());
    assert_eq!(
        plain.table_len(&ns, &table).unwrap(),
        checked.table_len(&ns, &table).unwrap()
    );
    assert_eq!(plain.lsn(), checked.lsn());
    // A missing namespace is the same error on both.
    let missing = Namespace::parse("p", "nope").unwrap();
    assert_eq!(
        plain.kv_get(&missing, b"k").unwrap_err().code(),
        checked.kv_get(&missing, b"k").unwrap_err().code()
    );
    db.shutdown().unwrap();
}

/// Reads of history on a secure instance: `snapshot_at_as` reads the database as of an
/// older LSN under the policy in force now (a revoked permission does not reach back),
/// anonymous `snapshot_at` is refused, and the retention window's errors are the same.
#[test]
fn history_reads_are_checked_against_the_current_policy() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let (root, teller) = (caller("root"), caller("teller"));
    db.create_project_as(&root, "p").unwrap();
    db.create_scope_as(&root, "p", "s").unwrap();
    let ns = Namespace::parse("p", "s").unwrap();
    let first = db.kv_put_as(&root, &ns, "alice", "100").unwrap().lsn;
    db.kv_put_as(&root, &ns, "alice", "40").unwrap();
    let read = Permission::KvRead {
        ns: ns.clone(),
        prefix: Vec::new(),
    };
    db.grant_as(&root, &teller, read.clone(), false).unwrap();

    let then = db.snapshot_at_as(&teller, first).unwrap();
    assert_eq!(then.lsn(), first);
    let alice = then.kv_get(&ns, b"alice").unwrap().unwrap();
    assert_eq!(alice.value.as_bytes(), b"100");
    assert!(is_denied(
        &db.snapshot_at_as(&caller("eve"), first)
            .unwrap()
            .kv_get(&ns, b"alice")
    ));
    assert!(is_denied(
        &db.snapshot_at_as(&CallerId::system(), first)
            .unwrap()
            .kv_get(&ns, b"alice")
    ));
    assert_eq!(
        db.snapshot_at(first).unwrap_err().access(),
        Some(&AccessError::CallerRequired)
    );
    let future = aedb::Lsn::new(db.snapshot_as(&root).lsn().get() + 1_000);
    assert_eq!(
        db.snapshot_at_as(&teller, future).unwrap_err().code(),
        "read.future_lsn"
    );

    // Revoked now: history is closed to the teller too, even as of when it was granted.
    db.revoke_as(&root, &teller, read).unwrap();
    assert!(is_denied(
        &db.snapshot_at_as(&teller, first)
            .unwrap()
            .kv_get(&ns, b"alice")
    ));
    db.shutdown().unwrap();
}
