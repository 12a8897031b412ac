//! Property tests of the policy codec and evaluation.

use std::ops::Bound;

use aedb_authz::{
    Action, CallerId, Grant, GrantBasis, KvRange, Permission, PolicyRecord, PolicyState, Resource,
    decode_records, encode_records,
};
use aedb_model::{Namespace, ProjectName, ScopeName, TableName};
use proptest::prelude::*;

const CALLERS: [&str; 5] = ["alice", "bob", "carol", "dave", "svc:eve-1"];

fn caller() -> impl Strategy<Value = CallerId> {
    prop::sample::select(&CALLERS[..]).prop_map(|n| CallerId::new(n).unwrap())
}

/// Includes the system caller, which records may name as a granter.
fn granter() -> impl Strategy<Value = CallerId> {
    prop_oneof![4 => caller(), 1 => Just(CallerId::system())]
}

fn project() -> impl Strategy<Value = ProjectName> {
    prop::sample::select(&["p", "q"][..]).prop_map(|n| ProjectName::new(n).unwrap())
}

fn namespace() -> impl Strategy<Value = Namespace> {
    (project(), prop::sample::select(&["s", "t"][..]))
        .prop_map(|(p, s)| Namespace::new(p, ScopeName::new(s).unwrap()))
}

fn table() -> impl Strategy<Value = TableName> {
    prop::sample::select(&["t1", "t2"][..]).prop_map(|n| TableName::new(n).unwrap())
}

/// Short byte strings over a small alphabet, so prefixes and keys collide often.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(&[0u8, b'a', b'b', 0xfe, 0xff][..]),
        0..4,
    )
}

fn permission() -> impl Strategy<Value = Permission> {
    prop_oneof![
        Just(Permission::GlobalAdmin),
        project().prop_map(|project| Permission::ProjectAdmin { project }),
        namespace().prop_map(|ns| Permission::ScopeAdmin { ns }),
        namespace().prop_map(|ns| Permission::TableDdl { ns }),
        (namespace(), table()).prop_map(|(ns, table)| Permission::TableRead { ns, table }),
        (namespace(), table()).prop_map(|(ns, table)| Permission::TableWrite { ns, table }),
        (namespace(), bytes()).prop_map(|(ns, prefix)| Permission::KvRead { ns, prefix }),
        (namespace(), bytes()).prop_map(|(ns, prefix)| Permission::KvWrite { ns, prefix }),
    ]
}

fn resource() -> impl Strategy<Value = Resource> {
    prop_oneof![
        project().prop_map(Resource::Project),
        namespace().prop_map(Resource::Scope),
        (namespace(), table()).prop_map(|(ns, table)| Resource::Table { ns, table }),
    ]
}

fn basis() -> impl Strategy<Value = GrantBasis> {
    prop_oneof![
        Just(GrantBasis::Administrative),
        Just(GrantBasis::Delegated)
    ]
}

fn record() -> impl Strategy<Value = PolicyRecord> {
    prop_oneof![
        caller().prop_map(|admin| PolicyRecord::Bootstrap { admin }),
        (caller(), permission(), any::<bool>(), granter(), basis()).prop_map(
            |(grantee, permission, delegable, granted_by, basis)| PolicyRecord::Grant {
                grant: Grant {
                    grantee,
                    permission,
                    delegable,
                    granted_by,
                },
                basis,
            }
        ),
        (caller(), permission(), granter()).prop_map(|(grantee, permission, granted_by)| {
            PolicyRecord::Revoke {
                grantee,
                permission,
                granted_by,
            }
        }),
        (resource(), caller())
            .prop_map(|(resource, owner)| PolicyRecord::OwnerSet { resource, owner }),
        resource().prop_map(|resource| PolicyRecord::OwnerCleared { resource }),
    ]
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        1 => Just(Bound::Unbounded),
        3 => bytes().prop_map(Bound::Included),
        3 => bytes().prop_map(Bound::Excluded),
    ]
}

/// An owned action, borrowed as an [`Action`] for checking.
#[derive(Clone, Debug)]
enum OwnedAction {
    KvRead(Namespace, Vec<u8>),
    KvScanPrefix(Namespace, Vec<u8>),
    KvScanRange(Namespace, Bound<Vec<u8>>, Bound<Vec<u8>>),
    KvWrite(Namespace, Vec<u8>),
    TableRead(Namespace, TableName),
    TableWrite(Namespace, TableName),
    CreateProject(ProjectName),
    CreateScope(Namespace),
    CreateTable(Namespace, TableName),
    AlterTable(Namespace, TableName),
    DropTable(Namespace, TableName),
    Global(u8),
}

impl OwnedAction {
    fn action(&self) -> Action<'_> {
        fn b(x: &Bound<Vec<u8>>) -> Bound<&[u8]> {
            x.as_ref().map(Vec::as_slice)
        }
        match self {
            OwnedAction::KvRead(ns, key) => Action::KvRead { ns, key },
            OwnedAction::KvScanPrefix(ns, p) => Action::KvScan {
                ns,
                range: KvRange::Prefix(p),
            },
            OwnedAction::KvScanRange(ns, s, e) => Action::KvScan {
                ns,
                range: KvRange::Bounds {
                    start: b(s),
                    end: b(e),
                },
            },
            OwnedAction::KvWrite(ns, key) => Action::KvWrite { ns, key },
            OwnedAction::TableRead(ns, table) => Action::TableRead { ns, table },
            OwnedAction::TableWrite(ns, table) => Action::TableWrite { ns, table },
            OwnedAction::CreateProject(project) => Action::CreateProject { project },
            OwnedAction::CreateScope(ns) => Action::CreateScope { ns },
            OwnedAction::CreateTable(ns, table) => Action::CreateTable { ns, table },
            OwnedAction::AlterTable(ns, table) => Action::AlterTable { ns, table },
            OwnedAction::DropTable(ns, table) => Action::DropTable { ns, table },
            OwnedAction::Global(i) => match i % 6 {
                0 => Action::Checkpoint,
                1 => Action::Backup,
                2 => Action::RotateKeys,
                3 => Action::ReadMetrics,
                4 => Action::ReadAudit,
                _ => Action::ManageSessions,
            },
        }
    }
}

fn action() -> impl Strategy<Value = OwnedAction> {
    prop_oneof![
        (namespace(), bytes()).prop_map(|(n, k)| OwnedAction::KvRead(n, k)),
        (namespace(), bytes()).prop_map(|(n, k)| OwnedAction::KvScanPrefix(n, k)),
        (namespace(), bound(), bound()).prop_map(|(n, s, e)| OwnedAction::KvScanRange(n, s, e)),
        (namespace(), bytes()).prop_map(|(n, k)| OwnedAction::KvWrite(n, k)),
        (namespace(), table()).prop_map(|(n, t)| OwnedAction::TableRead(n, t)),
        (namespace(), table()).prop_map(|(n, t)| OwnedAction::TableWrite(n, t)),
        project().prop_map(OwnedAction::CreateProject),
        namespace().prop_map(OwnedAction::CreateScope),
        (namespace(), table()).prop_map(|(n, t)| OwnedAction::CreateTable(n, t)),
        (namespace(), table()).prop_map(|(n, t)| OwnedAction::AlterTable(n, t)),
        (namespace(), table()).prop_map(|(n, t)| OwnedAction::DropTable(n, t)),
        any::<u8>().prop_map(OwnedAction::Global),
    ]
}

/// A policy operation attempted by some caller; failures are part of the test.
#[derive(Clone, Debug)]
enum Op {
    Grant(CallerId, CallerId, Permission, bool),
    Revoke(CallerId, CallerId, Permission),
    Transfer(CallerId, Resource, CallerId),
    SetOwner(Resource, CallerId),
    Forget(Resource),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (granter(), caller(), permission(), any::<bool>())
            .prop_map(|(a, b, p, d)| Op::Grant(a, b, p, d)),
        3 => (granter(), caller(), permission()).prop_map(|(a, b, p)| Op::Revoke(a, b, p)),
        1 => (granter(), resource(), caller()).prop_map(|(a, r, b)| Op::Transfer(a, r, b)),
        1 => (resource(), caller()).prop_map(|(r, o)| Op::SetOwner(r, o)),
        1 => resource().prop_map(Op::Forget),
    ]
}

/// Runs `ops` on a policy bootstrapped with `alice`, returning it with the log of
/// every change's records.
fn run(ops: &[Op]) -> (PolicyState, Vec<PolicyRecord>) {
    let mut policy = PolicyState::new();
    let alice = CallerId::new("alice").unwrap();
    let mut log = policy.bootstrap_admin(alice).unwrap().records();
    for op in ops {
        let change = match op.clone() {
            Op::Grant(a, b, p, d) => policy.grant(&a, b, p, d),
            Op::Revoke(a, b, p) => policy.revoke(&a, &b, &p),
            Op::Transfer(a, r, b) => policy.transfer_ownership(&a, &r, b),
            Op::SetOwner(r, o) => policy.set_owner(r, o),
            Op::Forget(r) => Ok(policy.forget_resource(&r)),
        };
        if let Ok(change) = change {
            log.extend(change.records());
        }
    }
    (policy, log)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn records_round_trip(records in prop::collection::vec(record(), 0..8)) {
        for r in &records {
            let bytes = r.encode();
            prop_assert_eq!(&PolicyRecord::decode(&bytes).unwrap(), r);
        }
        let list = encode_records(&records);
        prop_assert_eq!(decode_records(&list).unwrap(), records);
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        if let Ok(record) = PolicyRecord::decode(&bytes) {
            prop_assert_eq!(record.encode(), bytes.clone());
        }
        if let Ok(records) = decode_records(&bytes) {
            prop_assert_eq!(encode_records(&records), bytes.clone());
            let _ = PolicyState::from_records(records);
        }
    }

    #[test]
    fn decoding_corrupted_records_never_panics(
        r in record(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = r.encode();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if let Ok(decoded) = PolicyRecord::decode(&bytes) {
            prop_assert_eq!(decoded.encode(), bytes.clone());
        }
        let cut = cut.index(bytes.len() + 1);
        let _ = PolicyRecord::decode(&bytes[..cut]);
    }

    #[test]
    fn a_caller_with_no_rights_is_denied_everything(
        ops in prop::collection::vec(op(), 0..24),
        actions in prop::collection::vec(action(), 1..16),
    ) {
        let (policy, _) = run(&ops);
        let snapshot = policy.snapshot();
        let nobody = CallerId::new("nobody").unwrap();
        for a in &actions {
            prop_assert!(snapshot.check(&nobody, &a.action()).is_err(), "{}", a.action());
        }
        let list: Vec<Action<'_>> = actions.iter().map(OwnedAction::action).collect();
        prop_assert_eq!(snapshot.check_all(&nobody, &list).unwrap_err().action_index(), Some(0));
        // Nor can it change the policy.
        let mut policy = policy;
        for op in &ops {
            if let Op::Grant(_, b, p, d) = op.clone() {
                prop_assert!(policy.grant(&nobody, b, p, d).is_err());
            }
        }
    }

    #[test]
    fn global_admin_and_system_are_allowed_everything(
        ops in prop::collection::vec(op(), 0..24),
        actions in prop::collection::vec(action(), 1..16),
    ) {
        let (mut policy, _) = run(&ops);
        let root = CallerId::new("root").unwrap();
        policy.grant(&CallerId::system(), root.clone(), Permission::GlobalAdmin, false).unwrap();
        let snapshot = policy.snapshot();
        for a in &actions {
            prop_assert!(snapshot.check(&root, &a.action()).is_ok());
            prop_assert!(snapshot.check(&CallerId::system(), &a.action()).is_ok());
        }
    }

    /// A right allows at least what every right it covers allows.
    #[test]
    fn covering_rights_allow_more(p in permission(), q in permission(), a in action()) {
        if p.covers(&q) && q.allows(&a.action()) {
            prop_assert!(p.allows(&a.action()), "{} covers {} but not {}", p, q, a.action());
        }
    }

    /// Persisting every change and replaying the log, or saving and loading the
    /// whole state, rebuilds the same policy; and no grant outlives its support.
    #[test]
    fn change_logs_replay_to_the_same_state(ops in prop::collection::vec(op(), 0..40)) {
        let (policy, log) = run(&ops);
        let bytes: Vec<Vec<u8>> = log.iter().map(PolicyRecord::encode).collect();
        let decoded: Vec<PolicyRecord> =
            bytes.iter().map(|b| PolicyRecord::decode(b).unwrap()).collect();
        prop_assert_eq!(&PolicyState::from_records(decoded).unwrap(), &policy);
        let full = decode_records(&encode_records(&policy.to_records())).unwrap();
        prop_assert_eq!(&PolicyState::from_records(full).unwrap(), &policy);
        prop_assert!(policy.is_bootstrapped());
        for g in policy.grants() {
            prop_assert!(!g.grantee.is_system());
            if policy.grant_basis_of(&g.grantee, &g.permission, &g.granted_by)
                == Some(GrantBasis::Delegated)
            {
                prop_assert!(policy.grant_basis(&g.granted_by, &g.permission).is_some());
            }
        }
    }
}
