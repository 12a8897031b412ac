//! The one public error: representative failures, produced through the API where a test
//! can provoke them cheaply, mapped to their stable `code()` and `class()`.

use aedb::{
    AedbConfig, AedbInstance, Assertion, CallerId, CapsuleError, CommitError, CommitErrorExt,
    Error, ErrorClass, FaultMode, FaultPoint, Finality, KvKey, KvValue, Namespace, Numeric,
    Permission, SecureConfig, Transaction, UsageError,
};

const KEY: [u8; 32] = [0x31; 32];

fn open(dir: &std::path::Path) -> (AedbInstance, Namespace) {
    let db = AedbInstance::open(dir, AedbConfig::production(KEY)).expect("open");
    db.create_project("p").expect("project");
    db.create_scope("p", "s").expect("scope");
    (db, Namespace::parse("p", "s").expect("namespace"))
}

fn put(ns: &Namespace, key: &str) -> Transaction {
    Transaction::new().kv_put(
        ns,
        KvKey::new(key).expect("key"),
        KvValue::new("v").expect("value"),
    )
}

/// `(what, error)` for every representative failure.
fn representative_errors() -> Vec<(&'static str, Error)> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, ns) = open(dir.path());

    // Busy: what `try_commit` returns when the commit queue is full (filling it takes a
    // stalled writer, so the kind is built directly).
    out.push(("busy", Error::from(CommitError::Busy)));

    // A failed assertion.
    db.kv_add(&ns, "alice", Numeric::U64(10)).expect("fund");
    let overdraw = Transaction::new()
        .assert(Assertion::KvNumericAtLeast {
            ns: ns.clone(),
            key: KvKey::new("alice").expect("key"),
            min: Numeric::U64(50),
        })
        .kv_sub(&ns, KvKey::new("alice").expect("key"), Numeric::U64(50));
    let err = db.commit(overdraw).expect_err("the assertion fails");
    assert_eq!(err.failed_assertion(), Some(0));
    assert_eq!(
        err.as_commit().and_then(CommitErrorExt::failed_assertion),
        Some(0),
        "the CommitErrorExt question still answers"
    );
    out.push(("assertion failed", err));

    // An underflow: the data refuses the change.
    let err = db
        .kv_sub(&ns, "alice", Numeric::U64(11))
        .expect_err("underflow");
    out.push(("underflow", err));

    // Too large: a commit record beyond one WAL frame (64 MiB; built directly).
    out.push((
        "too large",
        Error::from(CommitError::TooLarge {
            len: 70 << 20,
            max: 64 << 20,
        }),
    ));

    // A size limit and a bad name, caught before anything is sequenced.
    let err = db
        .kv_put(&ns, vec![b'k'; 5000], "v")
        .expect_err("key too long");
    out.push(("key too long", err));
    out.push((
        "bad name",
        db.create_project("not a name").expect_err("bad name"),
    ));

    // A read of a namespace that does not exist.
    let missing = Namespace::parse("p", "nope").expect("namespace");
    let err = db
        .snapshot()
        .expect("snapshot")
        .kv_get(&missing, b"k")
        .expect_err("no such scope");
    out.push(("not found", err));

    // A secure-only call on an open instance: a usage mistake.
    let root = CallerId::new("root").expect("caller");
    let err = db
        .grant_as(&root, &root, Permission::GlobalAdmin, false)
        .expect_err("not secure");
    assert!(
        matches!(err, Error::Usage(UsageError::NotSecure)),
        "{err:?}"
    );
    out.push(("usage mistake", err));

    // The directory is locked by the running instance.
    let err = AedbInstance::open(dir.path(), AedbConfig::production(KEY)).expect_err("locked");
    out.push(("locked directory", err));

    // A failed WAL write: the commit is in doubt, and the instance fail-stops.
    db.fault_injector().arm(FaultPoint::Write, FaultMode::Once);
    let err = db
        .commit_with(put(&ns, "doomed"), Finality::Durable)
        .expect_err("the write fails");
    out.push(("write failed", err));
    let err = db
        .commit_with(put(&ns, "after"), Finality::Durable)
        .expect_err("fail-stopped");
    out.push(("fail-stopped", err));
    let _ = db.shutdown();

    // The wrong key: the manifest does not authenticate.
    let err =
        AedbInstance::open(dir.path(), AedbConfig::production([0x32; 32])).expect_err("wrong key");
    out.push(("wrong key", err));

    // A tampered session capsule (built directly: forging one takes the capsule format).
    out.push(("tampered capsule", Error::from(CapsuleError::TagMismatch)));

    // A secure instance: an anonymous call, a denial, and a secure database opened
    // without access control.
    let secure_dir = tempfile::tempdir().expect("tempdir");
    let secure = AedbInstance::open_secure(
        secure_dir.path(),
        AedbConfig::production(KEY),
        SecureConfig::new(root.clone()),
    )
    .expect("open secure");
    secure.create_project_as(&root, "p").expect("project");
    secure.create_scope_as(&root, "p", "s").expect("scope");
    out.push((
        "anonymous on secure",
        secure.kv_put(&ns, "k", "v").expect_err("anonymous"),
    ));
    let stranger = CallerId::new("stranger").expect("caller");
    out.push((
        "denied",
        secure
            .kv_put_as(&stranger, &ns, "k", "v")
            .expect_err("denied"),
    ));
    out.push((
        "denied read",
        secure
            .snapshot_as(&stranger)
            .kv_get(&ns, b"k")
            .expect_err("denied"),
    ));
    secure.shutdown().expect("shutdown");
    out.push((
        "secure database opened open",
        AedbInstance::open(secure_dir.path(), AedbConfig::production(KEY))
            .expect_err("secure database"),
    ));
    out
}

#[test]
fn representative_errors_map_to_stable_codes_and_classes() {
    let expected: &[(&str, &str, ErrorClass)] = &[
        ("busy", "commit.busy", ErrorClass::Retryable),
        (
            "assertion failed",
            "commit.assertion_failed",
            ErrorClass::Conflict,
        ),
        ("underflow", "commit.conflict", ErrorClass::Conflict),
        ("too large", "commit.too_large", ErrorClass::InvalidInput),
        ("key too long", "limit.exceeded", ErrorClass::InvalidInput),
        ("bad name", "name.invalid", ErrorClass::InvalidInput),
        ("not found", "read.not_found", ErrorClass::NotFound),
        ("usage mistake", "usage.not_secure", ErrorClass::Usage),
        ("locked directory", "open.locked", ErrorClass::Retryable),
        ("write failed", "commit.in_doubt", ErrorClass::Io),
        ("fail-stopped", "commit.fail_stopped", ErrorClass::Closed),
        ("wrong key", "open.key", ErrorClass::Integrity),
        (
            "tampered capsule",
            "session.tampered",
            ErrorClass::Integrity,
        ),
        (
            "anonymous on secure",
            "access.caller_required",
            ErrorClass::Access,
        ),
        ("denied", "access.denied", ErrorClass::Access),
        ("denied read", "access.denied", ErrorClass::Access),
        (
            "secure database opened open",
            "open.secure_database",
            ErrorClass::Usage,
        ),
    ];
    let errors = representative_errors();
    assert_eq!(
        errors.iter().map(|(what, _)| *what).collect::<Vec<_>>(),
        expected.iter().map(|(what, ..)| *what).collect::<Vec<_>>()
    );
    for ((what, err), (_, code, class)) in errors.iter().zip(expected) {
        assert_eq!(
            (err.code(), err.class()),
            (*code, *class),
            "{what}: {err:?}"
        );
        // Codes are `kind.cause`, lower case; messages are never empty.
        assert!(
            err.code().split('.').all(|part| !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')),
            "{what}: {}",
            err.code()
        );
        assert!(!err.to_string().is_empty(), "{what}");
        assert!(!err.class().as_str().is_empty());
    }
}

#[test]
fn a_denied_commit_is_the_access_kind_not_a_commit_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = CallerId::new("root").expect("caller");
    let db = AedbInstance::open_secure(
        dir.path(),
        AedbConfig::production(KEY),
        SecureConfig::new(root.clone()),
    )
    .expect("open secure");
    db.create_project_as(&root, "p").expect("project");
    db.create_scope_as(&root, "p", "s").expect("scope");
    let ns = Namespace::parse("p", "s").expect("namespace");
    let stranger = CallerId::new("stranger").expect("caller");
    // The same refusal through every path: a commit, a checkpoint, a backup.
    let backup_dir = dir.path().join("backup");
    for err in [
        db.commit_as(&stranger, put(&ns, "k")).expect_err("commit"),
        db.checkpoint_now_as(&stranger).expect_err("checkpoint"),
        db.backup_full_as(&stranger, &backup_dir, &mut |_, _| {})
            .expect_err("backup"),
    ] {
        assert!(
            matches!(err, Error::Access(aedb::AccessError::Denied(_))),
            "{err:?}"
        );
        assert_eq!(err.code(), "access.denied");
    }
    db.shutdown().expect("shutdown");
}
