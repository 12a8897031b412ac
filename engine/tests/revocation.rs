//! "Revoked" means revoked: a commit authorised on its caller's thread just before a
//! concurrent `revoke_as` returns is checked again by the single writer against the
//! policy in force when it is sequenced, so no commit sequenced after the revoke carries
//! the revoked right, however it was queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aedb::{
    AccessError, AedbConfig, AedbInstance, CallerId, Direction, Error, Finality, KvKey, KvValue,
    Namespace, Permission, SecureConfig, Transaction,
};

const COMMITTERS: u64 = 8;
/// Successful commits before the revoke (the race needs a full pipeline).
const BEFORE: u64 = 2_000;
/// Attempts each committer makes after it saw the revoke return.
const AFTER: u64 = 200;

fn config() -> AedbConfig {
    AedbConfig::production([0x31; 32]).with_checkpoint_key([0x32; 32])
}

fn caller(name: &str) -> CallerId {
    CallerId::new(name).unwrap()
}

#[test]
fn no_commit_sequenced_after_a_revoke_carries_the_revoked_right() {
    let dir = tempfile::tempdir().unwrap();
    let root = caller("root");
    let bob = caller("bob");
    let db = Arc::new(
        AedbInstance::open_secure(dir.path(), config(), SecureConfig::new(root.clone())).unwrap(),
    );
    db.create_project_as(&root, "bank").unwrap();
    db.create_scope_as(&root, "bank", "main").unwrap();
    let ns = Namespace::parse("bank", "main").unwrap();
    let write = Permission::KvWrite {
        ns: ns.clone(),
        prefix: Vec::new(),
    };
    db.grant_as(&root, &bob, write.clone(), false).unwrap();

    let successes = Arc::new(AtomicU64::new(0));
    let revoked = Arc::new(AtomicBool::new(false));
    let committers: Vec<_> = (0..COMMITTERS)
        .map(|t| {
            let (db, bob, ns) = (db.clone(), bob.clone(), ns.clone());
            let (successes, revoked) = (successes.clone(), revoked.clone());
            std::thread::spawn(move || {
                let mut applied = Vec::new();
                let mut denied_after = 0u64;
                // Bounded: the revoke comes after BEFORE successes in all.
                for i in 0..1_000_000u64 {
                    let seen_revoke = revoked.load(Ordering::Acquire);
                    if seen_revoke && denied_after == AFTER {
                        break;
                    }
                    let tx = Transaction::new().kv_put(
                        &ns,
                        KvKey::new(format!("t{t}-{i}")).unwrap(),
                        KvValue::new("x").unwrap(),
                    );
                    match db.commit_with_as(&bob, tx, Finality::Visible) {
                        Ok(outcome) => {
                            assert!(
                                !seen_revoke,
                                "a commit started after revoke_as returned applied at {}",
                                outcome.lsn
                            );
                            applied.push(outcome.lsn.get());
                            successes.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Access(AccessError::Denied(_))) => {
                            assert!(
                                revoked.load(Ordering::Acquire) || i > 0,
                                "denied before any revoke"
                            );
                            if seen_revoke {
                                denied_after += 1;
                            }
                        }
                        Err(e) => panic!("unexpected commit error: {e}"),
                    }
                }
                assert_eq!(denied_after, AFTER, "committer {t} stopped early");
                applied
            })
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs(120);
    while successes.load(Ordering::Relaxed) < BEFORE {
        assert!(Instant::now() < deadline, "committers made no progress");
        std::thread::sleep(Duration::from_millis(1));
    }
    db.revoke_as(&root, &bob, write).unwrap();
    revoked.store(true, Ordering::Release);
    let applied: Vec<u64> = committers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    Arc::try_unwrap(db).ok().unwrap().shutdown().unwrap();

    // The revoke's LSN: the newest persisted policy record (the revoke is the last
    // policy change of the run).
    let verified = aedb::offline::verify_data_dir(dir.path(), &config()).unwrap();
    let revoke_lsn = verified
        .state
        .kv_scan_prefix(
            &aedb_actors::audit::authz_namespace(),
            b"policy/",
            Direction::Forward,
            usize::MAX,
        )
        .unwrap()
        .items
        .iter()
        .map(|(_, e)| e.lsn.get())
        .max()
        .unwrap();
    assert!(applied.len() as u64 >= BEFORE);
    let late: Vec<_> = applied.iter().filter(|&&l| l > revoke_lsn).collect();
    assert!(
        late.is_empty(),
        "{} of Bob's commits were sequenced after the revoke at lsn {revoke_lsn}, first {:?}",
        late.len(),
        &late[..late.len().min(10)]
    );
    // And on disk: no key Bob wrote carries an LSN after the revoke.
    let page = verified
        .state
        .kv_scan_prefix(&ns, b"", Direction::Forward, usize::MAX)
        .unwrap();
    assert_eq!(page.items.len(), applied.len());
    assert!(page.items.iter().all(|(_, e)| e.lsn.get() < revoke_lsn));
}
