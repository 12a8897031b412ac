//! [`PolicySnapshot`]: the immutable view of the policy that the read path checks
//! against on the caller's thread.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::CallerId;
use crate::action::Action;
use crate::denied::{Denied, DenyReason};
use crate::permission::{Permission, Resource};

/// The rights of one caller, as the snapshot holds them.
#[derive(Default)]
pub(crate) struct CallerRights {
    /// Distinct granted permissions, sorted (so `GlobalAdmin` comes first).
    pub(crate) permissions: Vec<Permission>,
    /// Owned resources, sorted.
    pub(crate) owned: Vec<Resource>,
}

impl CallerRights {
    fn check(&self, action: &Action<'_>) -> Result<(), Denied> {
        if self.permissions.iter().any(|p| p.allows(action))
            || self.owned.iter().any(|r| r.owner_allows(action))
        {
            return Ok(());
        }
        Err(Denied::new(if action.is_global() {
            DenyReason::GlobalAdminRequired
        } else {
            DenyReason::NotCovered
        }))
    }
}

impl fmt::Debug for CallerRights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerRights")
            .field("permissions", &self.permissions.len())
            .field("owned", &self.owned.len())
            .finish()
    }
}

/// One caller's rights out of a [`PolicySnapshot`] ([`PolicySnapshot::for_caller`]):
/// checks give the same answers as [`PolicySnapshot::check`] for that caller, without
/// looking the caller up each time.
#[derive(Clone, Debug)]
pub struct CallerPolicy {
    system: bool,
    rights: Option<Arc<CallerRights>>,
}

impl CallerPolicy {
    /// A policy that allows nothing (for a caller that must not act, such as the
    /// engine's system caller presented from outside the engine).
    pub fn nothing() -> CallerPolicy {
        CallerPolicy {
            system: false,
            rights: None,
        }
    }

    /// Whether the caller may perform `action`; denials are generic.
    pub fn check(&self, action: &Action<'_>) -> Result<(), Denied> {
        if self.system {
            return Ok(());
        }
        match &self.rights {
            Some(rights) => rights.check(action),
            None => Err(Denied::new(DenyReason::NoRights)),
        }
    }
}

/// An immutable, cheaply clonable view of the policy, made by
/// [`PolicyState::snapshot`](crate::PolicyState::snapshot).
///
/// Clones share one `Arc`; the type is `Send + Sync`, so the Authz actor can
/// publish it and readers can check on their own threads. A check looks the caller
/// up in a hash map and walks that caller's permissions and owned resources only:
/// it costs O(rights of the caller) and never allocates.
///
/// The default snapshot is empty: it denies everyone but the system caller.
#[derive(Clone, Default)]
pub struct PolicySnapshot {
    callers: Arc<HashMap<CallerId, Arc<CallerRights>>>,
}

impl PolicySnapshot {
    pub(crate) fn new(callers: HashMap<CallerId, CallerRights>) -> PolicySnapshot {
        PolicySnapshot {
            callers: Arc::new(callers.into_iter().map(|(c, r)| (c, Arc::new(r))).collect()),
        }
    }

    /// Whether `caller` may perform `action`.
    ///
    /// The system caller is always allowed. Otherwise the action must be allowed
    /// by one of the caller's permissions ([`Permission::allows`]) or by one of
    /// the resources it owns ([`Resource::owner_allows`]).
    pub fn check(&self, caller: &CallerId, action: &Action<'_>) -> Result<(), Denied> {
        if caller.is_system() {
            return Ok(());
        }
        match self.callers.get(caller) {
            Some(rights) => rights.check(action),
            None => Err(Denied::new(DenyReason::NoRights)),
        }
    }

    /// The rights of `caller` resolved once, for many checks (a read snapshot's): each
    /// check then skips the caller lookup.
    pub fn for_caller(&self, caller: &CallerId) -> CallerPolicy {
        CallerPolicy {
            system: caller.is_system(),
            rights: self.callers.get(caller).cloned(),
        }
    }

    /// Whether `caller` may perform every one of `actions` (for example all the
    /// mutations and assertions of one transaction). The first denial is returned,
    /// carrying the index of the refused action ([`Denied::action_index`]).
    pub fn check_all<'b, 'a: 'b>(
        &self,
        caller: &CallerId,
        actions: impl IntoIterator<Item = &'b Action<'a>>,
    ) -> Result<(), Denied> {
        if caller.is_system() {
            return Ok(());
        }
        for (index, action) in actions.into_iter().enumerate() {
            self.check(caller, action).map_err(|d| d.at(index))?;
        }
        Ok(())
    }

    /// Whether `caller` holds `GlobalAdmin` (or is the system caller).
    pub fn is_global_admin(&self, caller: &CallerId) -> bool {
        caller.is_system()
            || self.callers.get(caller).is_some_and(|r| {
                r.permissions
                    .first()
                    .is_some_and(|p| *p == Permission::GlobalAdmin)
            })
    }

    /// The distinct permissions granted to `caller`, sorted.
    pub fn permissions_of(&self, caller: &CallerId) -> &[Permission] {
        self.callers
            .get(caller)
            .map_or(&[], |r| r.permissions.as_slice())
    }

    /// The resources `caller` owns, sorted.
    pub fn owned_by(&self, caller: &CallerId) -> &[Resource] {
        self.callers.get(caller).map_or(&[], |r| r.owned.as_slice())
    }

    /// Number of callers that hold any grant or own anything.
    pub fn caller_count(&self) -> usize {
        self.callers.len()
    }
}

impl fmt::Debug for PolicySnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySnapshot")
            .field("callers", &self.callers.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_policy_agrees_with_check() {
        use aedb_model::Namespace;
        let root = CallerId::new("root").unwrap();
        let alice = CallerId::new("alice").unwrap();
        let ns = Namespace::parse("p", "s").unwrap();
        let mut state = crate::PolicyState::new();
        state.bootstrap_admin(root.clone()).unwrap();
        state
            .grant(
                &root,
                alice.clone(),
                Permission::KvRead {
                    ns: ns.clone(),
                    prefix: b"ab".to_vec(),
                },
                false,
            )
            .unwrap();
        let snap = state.snapshot();
        let actions = [
            Action::KvRead {
                ns: &ns,
                key: b"abc",
            },
            Action::KvRead { ns: &ns, key: b"a" },
            Action::KvWrite {
                ns: &ns,
                key: b"abc",
            },
            Action::Checkpoint,
        ];
        for caller in [
            root,
            alice,
            CallerId::new("nobody").unwrap(),
            CallerId::system(),
        ] {
            let resolved = snap.for_caller(&caller);
            for action in &actions {
                assert_eq!(
                    resolved.check(action).map_err(|d| d.reason()),
                    snap.check(&caller, action).map_err(|d| d.reason()),
                    "{caller} {action:?}"
                );
            }
        }
    }

    #[test]
    fn snapshot_is_send_sync_and_empty_denies() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<PolicySnapshot>();
        let snap = PolicySnapshot::default();
        let alice = CallerId::new("alice").unwrap();
        assert_eq!(
            snap.check(&alice, &Action::Checkpoint)
                .unwrap_err()
                .reason(),
            DenyReason::NoRights
        );
        assert!(snap.check(&CallerId::system(), &Action::Checkpoint).is_ok());
        assert!(snap.check_all(&alice, []).is_ok());
        assert!(!snap.is_global_admin(&alice));
        assert!(snap.is_global_admin(&CallerId::system()));
    }
}
