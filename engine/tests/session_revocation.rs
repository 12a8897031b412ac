//! `revoke_caller_sessions_as`: every capsule of one caller issued up to the revocation
//! is refused (typed `CapsuleError::RevokedCaller`), later capsules and other callers'
//! are accepted, the revocation is audited, needs `GlobalAdmin`, and survives a reopen.

use aedb::{
    AccessError, AedbConfig, AedbInstance, AuditTable, CallerId, CapsuleError, Error, SecureConfig,
};

fn caller(name: &str) -> CallerId {
    CallerId::new(name).expect("caller id")
}

fn config() -> AedbConfig {
    AedbConfig::production([0x13; 32])
        .with_checkpoint_key([0x24; 32])
        .segment_size(64 * 1024)
}

fn open(dir: &std::path::Path) -> AedbInstance {
    let environment = aedb::ServerEnvironmentProfile {
        hostname: "node-1".into(),
        os: "linux".into(),
        os_version: "6.8.0".into(),
        binary_sha256: [7; 32],
        tls_certificate_fingerprint: vec![9; 32],
        deployment: "prod-eu".into(),
        region: "eu-west-1".into(),
    };
    let secure = SecureConfig::new(caller("root")).with_sessions(
        aedb::IhpConfig::production(),
        aedb::ServerProfileId::from_bytes([5; 16]),
        environment,
    );
    AedbInstance::open_secure(dir, config(), secure).expect("open secure")
}

/// Waits (bounded) until the capsule clock has moved past the revocation.
fn next_microsecond() {
    let start = aedb::UnixMicros::now();
    for _ in 0..1000 {
        if aedb::UnixMicros::now() > start {
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
    panic!("the clock did not advance");
}

#[test]
fn revoking_a_callers_sessions_refuses_its_earlier_capsules_only_and_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, alice, bob) = (caller("root"), caller("alice"), caller("bob"));
    let db = open(dir.path());
    let alice_old = db.issue_session_as(&alice, &alice, None).expect("issue");
    let alice_old2 = db.issue_session_as(&alice, &alice, None).expect("issue");
    let bob_old = db.issue_session_as(&bob, &bob, None).expect("issue");

    // Only a GlobalAdmin may revoke.
    let denied = db.revoke_caller_sessions_as(&bob, &alice);
    assert!(
        matches!(denied, Err(Error::Access(AccessError::Denied(_)))),
        "{denied:?}"
    );
    assert_eq!(
        db.verify_session(alice_old.as_bytes(), None)
            .expect("still valid"),
        alice
    );

    db.revoke_caller_sessions_as(&root, &alice).expect("revoke");
    let refused = db.verify_session(alice_old2.as_bytes(), None);
    assert!(
        matches!(&refused, Err(Error::Session(CapsuleError::RevokedCaller { caller })) if *caller == alice),
        "{refused:?}"
    );
    assert_eq!(refused.unwrap_err().code(), "session.refused");
    assert_eq!(
        db.verify_session(bob_old.as_bytes(), None).expect("bob"),
        bob
    );
    next_microsecond();
    let alice_new = db.issue_session_as(&alice, &alice, None).expect("issue");
    assert_eq!(
        db.verify_session(alice_new.as_bytes(), None).expect("new"),
        alice
    );

    // Audited, with the caller revoked in the subject.
    let mut audited = false;
    for _ in 0..1000 {
        let rows = db
            .audit_rows_as(&root, AuditTable::Authz)
            .expect("audit rows");
        audited = rows.iter().any(|r| {
            r.kind == "session_revoked" && r.caller == "root" && r.subject.ends_with("/alice")
        });
        if audited {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(audited, "no session_revoked row for alice");
    db.shutdown().expect("shutdown");

    // Durable: reloaded at open. A capsule issued before the revocation stays refused
    // (a fresh authority after reopen has an empty replay cache).
    let db = open(dir.path());
    let refused = db.verify_session(alice_old2.as_bytes(), None);
    assert!(
        matches!(
            &refused,
            Err(Error::Session(CapsuleError::RevokedCaller { .. }))
        ),
        "{refused:?}"
    );
    db.shutdown().expect("shutdown");
}
