//! Unit tests of the policy rules: checks, grants, delegation, revocation,
//! cascade, ownership and the system caller.

use std::ops::Bound::{Excluded, Included, Unbounded};

use aedb_model::{Namespace, ProjectName, ScopeName, TableName};

use crate::{
    Action, AuthzChange, AuthzError, CallerId, CallerIdError, DenyReason, GrantBasis, KvRange,
    Permission, PolicySnapshot, PolicyState, Resource,
};

fn c(name: &str) -> CallerId {
    CallerId::new(name).unwrap()
}

fn ns(p: &str, s: &str) -> Namespace {
    Namespace::parse(p, s).unwrap()
}

fn project(p: &str) -> ProjectName {
    ProjectName::new(p).unwrap()
}

fn table(t: &str) -> TableName {
    TableName::new(t).unwrap()
}

fn kv_read(n: &Namespace, prefix: &[u8]) -> Permission {
    Permission::KvRead {
        ns: n.clone(),
        prefix: prefix.to_vec(),
    }
}

fn kv_write(n: &Namespace, prefix: &[u8]) -> Permission {
    Permission::KvWrite {
        ns: n.clone(),
        prefix: prefix.to_vec(),
    }
}

/// A policy with `root` bootstrapped as GlobalAdmin.
fn bootstrapped() -> (PolicyState, CallerId) {
    let root = c("root");
    let mut policy = PolicyState::new();
    policy.bootstrap_admin(root.clone()).unwrap();
    (policy, root)
}

fn allowed(snap: &PolicySnapshot, who: &CallerId, action: Action<'_>) -> bool {
    snap.check(who, &action).is_ok()
}

const GLOBAL_ACTIONS: [Action<'static>; 8] = [
    Action::Checkpoint,
    Action::Backup,
    Action::RotateKeys,
    Action::ReadMetrics,
    Action::ReadAudit,
    Action::ManageSessions,
    Action::FreezeWrites,
    Action::SetRateLimits,
];

/// One action of every kind, targeting `n` / `t`.
fn every_action<'a>(n: &'a Namespace, t: &'a TableName, p: &'a ProjectName) -> Vec<Action<'a>> {
    let mut actions = vec![
        Action::KvRead { ns: n, key: b"k" },
        Action::KvScan {
            ns: n,
            range: KvRange::Prefix(b""),
        },
        Action::KvWrite { ns: n, key: b"k" },
        Action::TableRead { ns: n, table: t },
        Action::TableWrite { ns: n, table: t },
        Action::CreateProject { project: p },
        Action::CreateScope { ns: n },
        Action::CreateTable { ns: n, table: t },
        Action::AlterTable { ns: n, table: t },
        Action::DropTable { ns: n, table: t },
    ];
    actions.extend(GLOBAL_ACTIONS);
    actions
}

#[test]
fn global_admin_allows_everything() {
    let (policy, root) = bootstrapped();
    let snap = policy.snapshot();
    let (n, t, p) = (ns("p", "s"), table("t"), project("q"));
    for action in every_action(&n, &t, &p) {
        assert!(allowed(&snap, &root, action), "{action}");
    }
    assert!(snap.is_global_admin(&root));
}

#[test]
fn project_admin_allows_inside_its_project_only() {
    let (mut policy, root) = bootstrapped();
    let pa = c("pa");
    policy
        .grant(
            &root,
            pa.clone(),
            Permission::ProjectAdmin {
                project: project("p"),
            },
            false,
        )
        .unwrap();
    let snap = policy.snapshot();
    let (inside, t, p) = (ns("p", "s"), table("t"), project("p"));
    for action in every_action(&inside, &t, &p) {
        let expected = !action.is_global();
        assert_eq!(allowed(&snap, &pa, action), expected, "{action}");
    }
    let other = ns("q", "s");
    for action in every_action(&other, &t, &p) {
        assert!(!allowed(&snap, &pa, action), "{action}");
    }
    let denied = snap.check(&pa, &Action::Backup).unwrap_err();
    assert_eq!(denied.reason(), DenyReason::GlobalAdminRequired);
    let denied = snap
        .check(&pa, &Action::CreateProject { project: &p })
        .unwrap_err();
    assert_eq!(denied.reason(), DenyReason::GlobalAdminRequired);
}

#[test]
fn scope_admin_allows_inside_its_scope_including_table_ddl() {
    let (mut policy, root) = bootstrapped();
    let sa = c("sa");
    let n = ns("p", "s");
    policy
        .grant(
            &root,
            sa.clone(),
            Permission::ScopeAdmin { ns: n.clone() },
            false,
        )
        .unwrap();
    let snap = policy.snapshot();
    let (t, p) = (table("t"), project("p"));
    for action in every_action(&n, &t, &p) {
        let expected = !action.is_global() && !matches!(action, Action::CreateScope { .. });
        assert_eq!(allowed(&snap, &sa, action), expected, "{action}");
    }
    let sibling = ns("p", "other");
    for action in every_action(&sibling, &t, &p) {
        assert!(!allowed(&snap, &sa, action), "{action}");
    }
}

#[test]
fn table_rights_are_separate() {
    let (mut policy, root) = bootstrapped();
    let (n, t, other) = (ns("p", "s"), table("t"), table("u"));
    let (ddl, reader, writer) = (c("ddl"), c("reader"), c("writer"));
    policy
        .grant(
            &root,
            ddl.clone(),
            Permission::TableDdl { ns: n.clone() },
            false,
        )
        .unwrap();
    policy
        .grant(
            &root,
            reader.clone(),
            Permission::TableRead {
                ns: n.clone(),
                table: t.clone(),
            },
            false,
        )
        .unwrap();
    policy
        .grant(
            &root,
            writer.clone(),
            Permission::TableWrite {
                ns: n.clone(),
                table: t.clone(),
            },
            false,
        )
        .unwrap();
    let snap = policy.snapshot();
    for tb in [&t, &other] {
        assert!(allowed(
            &snap,
            &ddl,
            Action::CreateTable { ns: &n, table: tb }
        ));
        assert!(allowed(
            &snap,
            &ddl,
            Action::AlterTable { ns: &n, table: tb }
        ));
        assert!(allowed(
            &snap,
            &ddl,
            Action::DropTable { ns: &n, table: tb }
        ));
        assert!(!allowed(
            &snap,
            &ddl,
            Action::TableRead { ns: &n, table: tb }
        ));
        assert!(!allowed(
            &snap,
            &ddl,
            Action::TableWrite { ns: &n, table: tb }
        ));
    }
    let elsewhere = ns("p", "x");
    assert!(!allowed(
        &snap,
        &ddl,
        Action::CreateTable {
            ns: &elsewhere,
            table: &t
        }
    ));
    assert!(allowed(
        &snap,
        &reader,
        Action::TableRead { ns: &n, table: &t }
    ));
    assert!(!allowed(
        &snap,
        &reader,
        Action::TableWrite { ns: &n, table: &t }
    ));
    assert!(!allowed(
        &snap,
        &reader,
        Action::TableRead {
            ns: &n,
            table: &other
        }
    ));
    assert!(!allowed(
        &snap,
        &reader,
        Action::DropTable { ns: &n, table: &t }
    ));
    assert!(allowed(
        &snap,
        &writer,
        Action::TableWrite { ns: &n, table: &t }
    ));
    assert!(!allowed(
        &snap,
        &writer,
        Action::TableRead { ns: &n, table: &t }
    ));
}

#[test]
fn kv_prefixes_match_byte_wise() {
    let (mut policy, root) = bootstrapped();
    let n = ns("p", "s");
    let (ab, abc, whole, w) = (c("ab"), c("abc"), c("whole"), c("w"));
    policy
        .grant(&root, ab.clone(), kv_read(&n, b"ab"), false)
        .unwrap();
    policy
        .grant(&root, abc.clone(), kv_read(&n, b"abc"), false)
        .unwrap();
    policy
        .grant(&root, whole.clone(), kv_read(&n, b""), false)
        .unwrap();
    policy
        .grant(&root, w.clone(), kv_write(&n, b"ab"), false)
        .unwrap();
    let snap = policy.snapshot();
    let read = |key: &'static [u8]| Action::KvRead { ns: &n, key };
    // Prefix "ab" covers "ab" and "abc", not "a".
    assert!(allowed(&snap, &ab, read(b"ab")));
    assert!(allowed(&snap, &ab, read(b"abc")));
    assert!(!allowed(&snap, &ab, read(b"a")));
    assert!(!allowed(&snap, &ab, read(b"b")));
    // Prefix "abc" does not cover "ab".
    assert!(!allowed(&snap, &abc, read(b"ab")));
    assert!(allowed(&snap, &abc, read(b"abcd")));
    // The empty prefix covers the whole KV space of its scope only.
    assert!(allowed(&snap, &whole, read(b"\x00")));
    assert!(allowed(&snap, &whole, read(b"\xff\xff")));
    let other = ns("p", "t");
    assert!(!allowed(
        &snap,
        &whole,
        Action::KvRead {
            ns: &other,
            key: b"a"
        }
    ));
    // Read and write are separate.
    assert!(!allowed(
        &snap,
        &ab,
        Action::KvWrite {
            ns: &n,
            key: b"abc"
        }
    ));
    assert!(allowed(
        &snap,
        &w,
        Action::KvWrite {
            ns: &n,
            key: b"abc"
        }
    ));
    assert!(!allowed(&snap, &w, Action::KvWrite { ns: &n, key: b"a" }));
    assert!(!allowed(&snap, &w, read(b"abc")));
}

#[test]
fn scans_must_lie_wholly_inside_a_readable_prefix() {
    let (mut policy, root) = bootstrapped();
    let n = ns("p", "s");
    let ab = c("ab");
    policy
        .grant(&root, ab.clone(), kv_read(&n, b"ab"), false)
        .unwrap();
    policy
        .grant(&root, ab.clone(), kv_read(&n, b"x"), false)
        .unwrap();
    let snap = policy.snapshot();
    let scan = |range| Action::KvScan { ns: &n, range };
    let bounds = |start, end| KvRange::Bounds { start, end };
    assert!(allowed(&snap, &ab, scan(KvRange::Prefix(b"ab"))));
    assert!(allowed(&snap, &ab, scan(KvRange::Prefix(b"abz"))));
    assert!(!allowed(&snap, &ab, scan(KvRange::Prefix(b"a"))));
    assert!(!allowed(&snap, &ab, scan(KvRange::Prefix(b""))));
    assert!(allowed(
        &snap,
        &ab,
        scan(bounds(Included(&b"ab"[..]), Excluded(&b"ac"[..])))
    ));
    assert!(allowed(
        &snap,
        &ab,
        scan(bounds(Included(&b"abc"[..]), Included(&b"abd"[..])))
    ));
    // Partially outside: one key past the prefix, or starting before it.
    assert!(!allowed(
        &snap,
        &ab,
        scan(bounds(Included(&b"ab"[..]), Included(&b"ac"[..])))
    ));
    assert!(!allowed(
        &snap,
        &ab,
        scan(bounds(Included(&b"aa"[..]), Excluded(&b"ac"[..])))
    ));
    // Spanning two readable prefixes is still denied: one prefix must hold it all.
    assert!(!allowed(
        &snap,
        &ab,
        scan(bounds(Included(&b"ab"[..]), Excluded(&b"y"[..])))
    ));
    // Unbounded ends reach outside any non-empty prefix.
    assert!(!allowed(
        &snap,
        &ab,
        scan(bounds(Unbounded, Excluded(&b"ac"[..])))
    ));
    assert!(!allowed(
        &snap,
        &ab,
        scan(bounds(Included(&b"ab"[..]), Unbounded))
    ));
    // Another scope is never covered.
    let other = ns("p", "t");
    assert!(!allowed(
        &snap,
        &ab,
        Action::KvScan {
            ns: &other,
            range: KvRange::Prefix(b"ab")
        }
    ));
}

#[test]
fn owners_have_admin_rights_over_what_they_own() {
    let mut policy = PolicyState::new();
    let (po, so, to) = (c("po"), c("so"), c("to"));
    let (n, t, other_t) = (ns("p", "s"), table("t"), table("u"));
    policy
        .set_owner(Resource::Project(project("p")), po.clone())
        .unwrap();
    policy
        .set_owner(Resource::Scope(n.clone()), so.clone())
        .unwrap();
    policy
        .set_owner(
            Resource::Table {
                ns: n.clone(),
                table: t.clone(),
            },
            to.clone(),
        )
        .unwrap();
    let snap = policy.snapshot();
    let p = project("p");
    for action in every_action(&n, &t, &p) {
        assert_eq!(allowed(&snap, &po, action), !action.is_global(), "{action}");
        let scope_expected = !action.is_global() && !matches!(action, Action::CreateScope { .. });
        assert_eq!(allowed(&snap, &so, action), scope_expected, "{action}");
        let table_expected = matches!(
            action,
            Action::TableRead { .. }
                | Action::TableWrite { .. }
                | Action::AlterTable { .. }
                | Action::DropTable { .. }
        );
        assert_eq!(allowed(&snap, &to, action), table_expected, "{action}");
    }
    assert!(!allowed(
        &snap,
        &to,
        Action::TableRead {
            ns: &n,
            table: &other_t
        }
    ));
    assert_eq!(snap.owned_by(&to).len(), 1);

    // The table owner may grant read/write on it, not DDL on the scope.
    policy
        .grant(
            &to,
            c("x"),
            Permission::TableRead {
                ns: n.clone(),
                table: t.clone(),
            },
            false,
        )
        .unwrap();
    assert!(matches!(
        policy.grant(&to, c("x"), Permission::TableDdl { ns: n.clone() }, false),
        Err(AuthzError::Denied(_))
    ));
    // The scope owner may grant inside the scope, not outside it.
    policy.grant(&so, c("x"), kv_read(&n, b""), true).unwrap();
    assert!(
        policy
            .grant(&so, c("x"), kv_read(&ns("p", "z"), b""), true)
            .is_err()
    );
}

#[test]
fn forgetting_a_dropped_table_clears_owner_and_grants() {
    let (mut policy, root) = bootstrapped();
    let (n, t) = (ns("p", "s"), table("t"));
    let res = Resource::Table {
        ns: n.clone(),
        table: t.clone(),
    };
    policy.set_owner(res.clone(), c("to")).unwrap();
    let read = Permission::TableRead {
        ns: n.clone(),
        table: t.clone(),
    };
    policy.grant(&root, c("r"), read.clone(), false).unwrap();
    policy
        .grant(&root, c("r"), kv_read(&n, b""), false)
        .unwrap();
    let change = policy.forget_resource(&res);
    let AuthzChange::ResourceForgotten {
        owners, removed, ..
    } = &change
    else {
        panic!("{change:?}")
    };
    assert_eq!(owners.len(), 1);
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].permission, read);
    assert!(policy.owner(&res).is_none());
    assert_eq!(policy.grants_of(&c("r")).count(), 1);
    assert!(policy.forget_resource(&res).is_empty());
}

#[test]
fn granting_needs_authority() {
    let (mut policy, root) = bootstrapped();
    let (pa, nobody) = (c("pa"), c("nobody"));
    let p_admin = Permission::ProjectAdmin {
        project: project("p"),
    };
    policy
        .grant(&root, pa.clone(), p_admin.clone(), false)
        .unwrap();
    let n = ns("p", "s");

    // No rights: denied, generically.
    let err = policy
        .grant(&nobody, c("x"), kv_read(&n, b""), false)
        .unwrap_err();
    assert_eq!(err.to_string(), "permission denied");
    assert!(matches!(err, AuthzError::Denied(d) if d.reason() == DenyReason::NoAuthority));

    // A project admin grants anything inside its project, incl. ProjectAdmin{p}.
    for perm in [
        p_admin.clone(),
        Permission::ScopeAdmin { ns: n.clone() },
        Permission::TableDdl { ns: n.clone() },
        kv_write(&n, b"a"),
    ] {
        let change = policy.grant(&pa, c("x"), perm, true).unwrap();
        assert!(matches!(
            change,
            AuthzChange::Granted {
                basis: GrantBasis::Administrative,
                ..
            }
        ));
    }
    // ...but never GlobalAdmin or rights in another project.
    assert!(
        policy
            .grant(&pa, c("x"), Permission::GlobalAdmin, false)
            .is_err()
    );
    assert!(
        policy
            .grant(
                &pa,
                c("x"),
                Permission::ProjectAdmin {
                    project: project("q")
                },
                false
            )
            .is_err()
    );
    assert!(
        policy
            .grant(&pa, c("x"), kv_read(&ns("q", "s"), b""), false)
            .is_err()
    );
    // A GlobalAdmin grants GlobalAdmin.
    policy
        .grant(&root, c("second"), Permission::GlobalAdmin, false)
        .unwrap();
}

#[test]
fn delegation_is_limited_to_what_the_delegable_grant_covers() {
    let (mut policy, root) = bootstrapped();
    let n = ns("p", "s");
    let (d, nd) = (c("d"), c("nd"));
    policy
        .grant(&root, d.clone(), kv_read(&n, b"a"), true)
        .unwrap();
    policy
        .grant(&root, nd.clone(), kv_read(&n, b"a"), false)
        .unwrap();

    let change = policy.grant(&d, c("x"), kv_read(&n, b"ab"), false).unwrap();
    assert!(matches!(
        change,
        AuthzChange::Granted {
            basis: GrantBasis::Delegated,
            ..
        }
    ));
    policy.grant(&d, c("x"), kv_read(&n, b"a"), true).unwrap();
    for wider in [
        kv_read(&n, b""),
        kv_read(&n, b"b"),
        kv_write(&n, b"ab"),
        kv_read(&ns("p", "t"), b"ab"),
        Permission::ScopeAdmin { ns: n.clone() },
    ] {
        assert!(
            matches!(
                policy.grant(&d, c("x"), wider.clone(), false),
                Err(AuthzError::Denied(_))
            ),
            "{wider}"
        );
    }
    // A non-delegable grant does not allow granting at all.
    assert!(
        policy
            .grant(&nd, c("x"), kv_read(&n, b"ab"), false)
            .is_err()
    );
    // Chains: x received a delegable grant and may pass a narrower one on.
    policy
        .grant(&c("x"), c("y"), kv_read(&n, b"abc"), false)
        .unwrap();
}

#[test]
fn revoking_needs_the_original_granter_or_covering_admin() {
    let (mut policy, root) = bootstrapped();
    let n = ns("p", "s");
    let (d, x, stranger, sa) = (c("d"), c("x"), c("stranger"), c("sa"));
    policy
        .grant(&root, d.clone(), kv_read(&n, b""), true)
        .unwrap();
    policy
        .grant(
            &root,
            sa.clone(),
            Permission::ScopeAdmin { ns: n.clone() },
            false,
        )
        .unwrap();
    let perm = kv_read(&n, b"a");
    policy.grant(&d, x.clone(), perm.clone(), false).unwrap();
    policy.grant(&sa, x.clone(), perm.clone(), false).unwrap();
    assert_eq!(policy.grants_of(&x).count(), 2);

    // A stranger, and the grantee itself, are denied (no leak of existence).
    for who in [&stranger, &x] {
        let err = policy.revoke(who, &x, &perm).unwrap_err();
        assert_eq!(err.to_string(), "permission denied");
    }
    assert!(matches!(
        policy.revoke(&stranger, &x, &kv_read(&n, b"zzz")),
        Err(AuthzError::Denied(_))
    ));
    // The original granter removes only its own grant.
    let change = policy.revoke(&d, &x, &perm).unwrap();
    let AuthzChange::Revoked { removed, .. } = &change else {
        panic!()
    };
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].granted_by, d);
    assert_eq!(policy.grants_of(&x).count(), 1);
    // Again: d no longer has a grant there; d is not an admin, so denied.
    assert!(matches!(
        policy.revoke(&d, &x, &perm),
        Err(AuthzError::Denied(_))
    ));
    // A covering admin removes every grant of it, and learns when there is none.
    policy.grant(&d, x.clone(), perm.clone(), false).unwrap();
    let change = policy.revoke(&sa, &x, &perm).unwrap();
    let AuthzChange::Revoked { removed, .. } = &change else {
        panic!()
    };
    assert_eq!(removed.len(), 2);
    assert_eq!(
        policy.revoke(&sa, &x, &perm),
        Err(AuthzError::GrantNotFound)
    );
}

#[test]
fn the_last_global_admin_cannot_be_revoked_but_can_hand_over() {
    let (mut policy, root) = bootstrapped();
    assert_eq!(
        policy.revoke(&root, &root, &Permission::GlobalAdmin),
        Err(AuthzError::LastGlobalAdmin)
    );
    let bob = c("bob");
    policy
        .grant(&root, bob.clone(), Permission::GlobalAdmin, false)
        .unwrap();
    policy
        .grant(&root, c("carol"), kv_read(&ns("p", "s"), b""), false)
        .unwrap();
    // Bob revokes the bootstrap admin: grants root made are administrative and
    // stay, including Bob's own.
    let change = policy
        .revoke(&bob, &root, &Permission::GlobalAdmin)
        .unwrap();
    assert!(matches!(&change, AuthzChange::Revoked { cascaded, .. } if cascaded.is_empty()));
    let snap = policy.snapshot();
    assert!(snap.is_global_admin(&bob));
    assert!(!snap.is_global_admin(&root));
    assert_eq!(policy.grants_of(&c("carol")).count(), 1);
    assert_eq!(
        policy.revoke(&bob, &bob, &Permission::GlobalAdmin),
        Err(AuthzError::LastGlobalAdmin)
    );
}

#[test]
fn revoking_a_delegable_grant_cascades_to_what_was_delegated() {
    let (mut policy, root) = bootstrapped();
    let n = ns("p", "s");
    let (a, b, cc, other) = (c("a"), c("b"), c("c"), c("other"));
    policy
        .grant(&root, a.clone(), kv_read(&n, b"a"), true)
        .unwrap();
    policy
        .grant(&a, b.clone(), kv_read(&n, b"ab"), true)
        .unwrap();
    policy
        .grant(&b, cc.clone(), kv_read(&n, b"abc"), false)
        .unwrap();
    // A cycle: b delegates back to a; it must not keep a's grants alive.
    policy
        .grant(&b, a.clone(), kv_read(&n, b"ab"), true)
        .unwrap();
    // Unrelated delegated grant with independent support survives.
    policy
        .grant(&root, other.clone(), kv_read(&n, b""), true)
        .unwrap();
    policy
        .grant(&other, cc.clone(), kv_read(&n, b"z"), false)
        .unwrap();

    let change = policy.revoke(&root, &a, &kv_read(&n, b"a")).unwrap();
    let AuthzChange::Revoked {
        removed, cascaded, ..
    } = &change
    else {
        panic!()
    };
    assert_eq!(removed.len(), 1);
    let mut gone: Vec<_> = cascaded
        .iter()
        .map(|g| (g.grantee.as_str(), g.granted_by.as_str()))
        .collect();
    gone.sort();
    assert_eq!(gone, vec![("a", "b"), ("b", "a"), ("c", "b")]);
    assert_eq!(policy.grants_of(&a).count(), 0);
    assert_eq!(policy.grants_of(&b).count(), 0);
    let left: Vec<_> = policy.grants_of(&cc).collect();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].granted_by, other);
    // Records of the change replay to the same state.
    assert_eq!(change.records().len(), 4);
}

#[test]
fn delegated_grants_survive_while_another_delegable_grant_supports_them() {
    let (mut policy, root) = bootstrapped();
    let n = ns("p", "s");
    let (a, b) = (c("a"), c("b"));
    policy
        .grant(&root, a.clone(), kv_read(&n, b"a"), true)
        .unwrap();
    policy
        .grant(&root, a.clone(), kv_read(&n, b""), true)
        .unwrap();
    policy
        .grant(&a, b.clone(), kv_read(&n, b"ab"), false)
        .unwrap();
    let change = policy.revoke(&root, &a, &kv_read(&n, b"a")).unwrap();
    assert!(matches!(&change, AuthzChange::Revoked { cascaded, .. } if cascaded.is_empty()));
    assert_eq!(policy.grants_of(&b).count(), 1);
    // Delegating with delegable = false stops the chain.
    assert!(
        policy
            .grant(&b, c("z"), kv_read(&n, b"abc"), false)
            .is_err()
    );
}

#[test]
fn ownership_transfer() {
    let (mut policy, root) = bootstrapped();
    let n = ns("p", "s");
    let scope = Resource::Scope(n.clone());
    let (old, new, stranger, pa) = (c("old"), c("new"), c("stranger"), c("pa"));
    policy.set_owner(scope.clone(), old.clone()).unwrap();
    policy
        .grant(
            &root,
            pa.clone(),
            Permission::ProjectAdmin {
                project: project("p"),
            },
            false,
        )
        .unwrap();
    // Strangers cannot take it.
    let err = policy
        .transfer_ownership(&stranger, &scope, stranger.clone())
        .unwrap_err();
    assert_eq!(err.to_string(), "permission denied");
    // The owner gives it away and loses its rights.
    let change = policy
        .transfer_ownership(&old, &scope, new.clone())
        .unwrap();
    assert!(matches!(
        &change,
        AuthzChange::OwnershipTransferred { previous: Some(p), new_owner, .. } if *p == old && *new_owner == new
    ));
    let snap = policy.snapshot();
    assert!(!allowed(&snap, &old, Action::KvRead { ns: &n, key: b"k" }));
    assert!(allowed(&snap, &new, Action::KvRead { ns: &n, key: b"k" }));
    assert!(
        policy
            .transfer_ownership(&old, &scope, old.clone())
            .is_err()
    );
    // A covering admin (here ProjectAdmin) may transfer it too, and so may the
    // owner of the enclosing project.
    policy.transfer_ownership(&pa, &scope, old.clone()).unwrap();
    policy
        .set_owner(Resource::Project(project("p")), c("po"))
        .unwrap();
    policy
        .transfer_ownership(&c("po"), &scope, new.clone())
        .unwrap();
    assert_eq!(policy.owner(&scope), Some(&new));
    // The system caller can never own.
    assert_eq!(
        policy.transfer_ownership(&root, &scope, CallerId::system()),
        Err(AuthzError::SystemCaller)
    );
    // Grants made on ownership authority are administrative: they stay after the
    // owner gives the resource away.
    policy.grant(&new, c("r"), kv_read(&n, b""), false).unwrap();
    policy
        .transfer_ownership(&new, &scope, old.clone())
        .unwrap();
    assert_eq!(policy.grants_of(&c("r")).count(), 1);
}

#[test]
fn the_system_caller_is_unforgeable_and_always_allowed() {
    assert_eq!(CallerId::new("_system"), Err(CallerIdError::Reserved));
    let system = CallerId::system();
    let mut policy = PolicyState::new();
    let snap = policy.snapshot();
    let (n, t, p) = (ns("p", "s"), table("t"), project("p"));
    for action in every_action(&n, &t, &p) {
        assert!(allowed(&snap, &system, action), "{action}");
    }
    assert_eq!(
        policy.bootstrap_admin(system.clone()),
        Err(AuthzError::SystemCaller)
    );
    assert_eq!(
        policy.grant(&system, system.clone(), Permission::GlobalAdmin, false),
        Err(AuthzError::SystemCaller)
    );
    assert_eq!(
        policy.set_owner(Resource::Project(p.clone()), system.clone()),
        Err(AuthzError::SystemCaller)
    );
    // The system caller may grant anything, before any bootstrap.
    policy
        .grant(&system, c("x"), Permission::GlobalAdmin, false)
        .unwrap();
    assert!(policy.is_bootstrapped());
    assert_eq!(
        policy.bootstrap_admin(c("y")),
        Err(AuthzError::AlreadyBootstrapped)
    );
}

#[test]
fn reserved_resources_and_long_prefixes_are_refused() {
    let (mut policy, root) = bootstrapped();
    let sys = Namespace::new(ProjectName::system(), ScopeName::new("s").unwrap());
    assert_eq!(
        policy.grant(&root, c("x"), kv_read(&sys, b""), false),
        Err(AuthzError::ReservedName)
    );
    assert_eq!(
        policy.set_owner(Resource::Project(ProjectName::system()), c("x")),
        Err(AuthzError::ReservedName)
    );
    let long = vec![b'a'; crate::MAX_KV_PREFIX_LEN + 1];
    assert_eq!(
        policy.grant(&root, c("x"), kv_read(&ns("p", "s"), &long), false),
        Err(AuthzError::PrefixTooLong { len: long.len() })
    );
}

#[test]
fn check_all_reports_the_first_denied_action() {
    let (mut policy, root) = bootstrapped();
    let n = ns("p", "s");
    let x = c("x");
    policy
        .grant(&root, x.clone(), kv_read(&n, b""), false)
        .unwrap();
    let snap = policy.snapshot();
    let actions = [
        Action::KvRead { ns: &n, key: b"a" },
        Action::KvScan {
            ns: &n,
            range: KvRange::Prefix(b""),
        },
        Action::KvWrite { ns: &n, key: b"a" },
        Action::Backup,
    ];
    let denied = snap.check_all(&x, &actions).unwrap_err();
    assert_eq!(denied.action_index(), Some(2));
    assert_eq!(denied.reason(), DenyReason::NotCovered);
    assert_eq!(denied.to_string(), "permission denied");
    assert!(snap.check_all(&x, &actions[..2]).is_ok());
    assert!(snap.check_all(&root, &actions).is_ok());
    assert!(snap.check_all(&CallerId::system(), &actions).is_ok());
}

#[test]
fn change_records_replay_to_the_same_state() {
    let (mut policy, root) = bootstrapped();
    let mut log = vec![crate::PolicyRecord::Bootstrap {
        admin: root.clone(),
    }];
    let n = ns("p", "s");
    let t = Resource::Table {
        ns: n.clone(),
        table: table("t"),
    };
    let mut changes = vec![
        policy
            .grant(&root, c("a"), kv_read(&n, b"a"), true)
            .unwrap(),
        policy
            .grant(&c("a"), c("b"), kv_read(&n, b"ab"), false)
            .unwrap(),
        policy.set_owner(t.clone(), c("o")).unwrap(),
        policy
            .grant(
                &c("o"),
                c("b"),
                Permission::TableRead {
                    ns: n.clone(),
                    table: table("t"),
                },
                false,
            )
            .unwrap(),
        policy.transfer_ownership(&c("o"), &t, c("o2")).unwrap(),
    ];
    changes.push(policy.revoke(&root, &c("a"), &kv_read(&n, b"a")).unwrap());
    changes.push(policy.forget_resource(&t));
    for change in &changes {
        log.extend(change.records());
    }
    assert_eq!(PolicyState::from_records(log).unwrap(), policy);
    assert_eq!(
        PolicyState::from_records(policy.to_records()).unwrap(),
        policy
    );
}

#[test]
fn replay_rejects_inconsistent_records() {
    use crate::{PolicyRecord, ReplayErrorKind};
    let err = PolicyState::from_records([
        PolicyRecord::Bootstrap { admin: c("root") },
        PolicyRecord::Revoke {
            grantee: c("x"),
            permission: Permission::GlobalAdmin,
            granted_by: c("root"),
        },
    ])
    .unwrap_err();
    assert_eq!(err.index, 1);
    assert_eq!(err.kind, ReplayErrorKind::UnknownGrant);
    let err = PolicyState::from_records([PolicyRecord::OwnerSet {
        resource: Resource::Project(project("p")),
        owner: CallerId::system(),
    }])
    .unwrap_err();
    assert_eq!(err.kind, ReplayErrorKind::SystemCaller);
}
