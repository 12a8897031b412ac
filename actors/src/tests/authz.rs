//! The Authz actor: a change is checked, persisted in one durable commit, published,
//! and audited; a denial changes nothing and is audited.

use aedb_authz::{AuthzError, CallerId, Permission, PolicyState};
use aedb_keys::SecretKey;

use super::audit::rig_with_system_tables;
use crate::audit::{self, AuditTable};
use crate::authz_actor::{self, AuthzFailure, PolicyChange};

#[test]
fn grants_are_persisted_published_and_audited_and_denials_change_nothing() {
    let rig = rig_with_system_tables();
    let audit = audit::spawn(
        rig.committer.clone(),
        &rig.snapshots,
        SecretKey::new([3; 32]),
        "k:v1".into(),
        rig.metrics.clone(),
        16,
    )
    .unwrap();
    let authz = authz_actor::spawn(
        PolicyState::new(),
        0,
        rig.committer.clone(),
        audit.mailbox.clone(),
        rig.metrics.clone(),
    )
    .unwrap();
    let admin = CallerId::new("admin").unwrap();
    let bob = CallerId::new("bob").unwrap();
    authz
        .change(CallerId::system(), PolicyChange::Bootstrap(admin.clone()))
        .unwrap();
    assert!(authz.policy().is_global_admin(&admin));
    assert!(!authz.policy().is_global_admin(&bob));

    // Bob may not grant himself anything.
    let denied = authz.change(
        bob.clone(),
        PolicyChange::Grant {
            grantee: bob.clone(),
            permission: Permission::GlobalAdmin,
            delegable: false,
        },
    );
    assert!(
        matches!(denied, Err(AuthzFailure::Policy(AuthzError::Denied(_)))),
        "{denied:?}"
    );
    assert!(!authz.policy().is_global_admin(&bob));

    authz
        .change(
            admin.clone(),
            PolicyChange::Grant {
                grantee: bob.clone(),
                permission: Permission::GlobalAdmin,
                delegable: false,
            },
        )
        .unwrap();
    assert!(authz.policy().is_global_admin(&bob));

    // The persisted records replay to the same policy.
    let (replayed, next_seq) = authz_actor::load_policy(&rig.snapshots.load().1).unwrap();
    assert!(replayed.is_bootstrapped());
    assert_eq!(replayed.grant_count(), 2);
    assert!(next_seq >= 2);

    audit.flush().unwrap();
    let rows = audit::read_rows(&rig.snapshots.load().1, AuditTable::Authz).unwrap();
    let kinds: Vec<_> = rows
        .iter()
        .map(|r| (r.caller.as_str(), r.kind.as_str()))
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!(kinds[1], ("bob", "denied"));
    assert_eq!(
        rig.metrics
            .authz_denials
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    authz.stop();
    audit.stop();
    rig.finish();
}
