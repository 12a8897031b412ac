//! [`PolicyState`]: the grants and owners of a secure instance, the rules for
//! changing them, and the [`AuthzChange`] each change reports for the audit log.
//!
//! # Rules
//!
//! - **Grant**: a caller may grant a permission if it is the system caller, holds
//!   an admin permission covering it ([`Permission::covers`]), owns a resource
//!   whose owner may grant it ([`Resource::owner_may_grant`]) — these make an
//!   [administrative](GrantBasis::Administrative) grant — or holds a *delegable*
//!   grant covering it, which makes a [delegated](GrantBasis::Delegated) grant.
//!   A `ProjectAdmin{p}` may therefore grant anything inside `p` (including
//!   `ProjectAdmin{p}`), never `GlobalAdmin` or rights in another project; a
//!   delegable `KvRead{b"a"}` may grant `KvRead{b"ab"}` but not `KvRead{b""}` or
//!   any `KvWrite`. The system caller can never be a grantee or an owner, and
//!   nothing naming an engine-reserved (`_`-prefixed) project, scope or table can
//!   be granted or owned.
//! - Grants are identified by grantee, permission and granter: the same right
//!   granted by two callers is two grants, and granting again with the same three
//!   replaces the `delegable` flag.
//! - **Revoke**: a caller with admin authority covering the permission (or the
//!   system caller) removes every grant of that permission to that grantee;
//!   anyone else removes only the grant it made itself. Removing the last
//!   `GlobalAdmin` is refused.
//! - **Cascade**: administrative grants stand on their own — revoking the admin
//!   who made them does not touch them (so the bootstrap admin can hand over and
//!   be revoked). Delegated grants live only while their granter can still grant
//!   them, through admin authority or through a delegable grant that is itself
//!   alive; after every revoke, ownership change or forgotten resource, delegated
//!   grants that lost that support are removed too, transitively, and listed in
//!   the change. Circular delegation cannot keep itself alive.
//! - **Owners**: the engine records the creator of each project, scope and table
//!   with [`PolicyState::set_owner`]. The owner has admin rights over it (see
//!   [`Resource`]). Ownership moves with [`PolicyState::transfer_ownership`], by
//!   the current owner or anyone administering the resource.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::CallerId;
use crate::denied::{Denied, DenyReason};
use crate::permission::{MAX_KV_PREFIX_LEN, Permission, Resource};
use crate::record::{PolicyRecord, ReplayError, ReplayErrorKind};
use crate::snapshot::{CallerRights, PolicySnapshot};

/// One grant: `granted_by` gave `grantee` the right `permission`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    /// Who holds the right.
    pub grantee: CallerId,
    /// The right.
    pub permission: Permission,
    /// Whether the grantee may grant the right (or any right it covers) on.
    pub delegable: bool,
    /// Who granted it (the system caller for the bootstrap admin).
    pub granted_by: CallerId,
}

/// On what authority a grant was made; decides whether it cascades.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GrantBasis {
    /// Made by the system caller, an admin or an owner: stands on its own.
    Administrative,
    /// Made on the strength of a delegable grant: removed when the granter can
    /// no longer grant it.
    Delegated,
}

/// Why a grant, revoke or ownership change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    /// The caller lacks the authority. Displays only "permission denied"; the
    /// reason is for the audit row.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The system caller cannot be a grantee or an owner.
    #[error("the system caller cannot be a grantee or an owner")]
    SystemCaller,
    /// The permission or resource names an engine-reserved (`_`-prefixed)
    /// project, scope or table.
    #[error("reserved projects, scopes and tables belong to the engine")]
    ReservedName,
    /// A KV prefix longer than [`MAX_KV_PREFIX_LEN`].
    #[error("KV prefix is {len} bytes; the maximum is {MAX_KV_PREFIX_LEN}")]
    PrefixTooLong {
        /// Length of the prefix.
        len: usize,
    },
    /// No such grant. Only reported to callers with admin authority over it;
    /// anyone else gets [`AuthzError::Denied`].
    #[error("no such grant")]
    GrantNotFound,
    /// [`PolicyState::bootstrap_admin`] on a policy that already has a
    /// `GlobalAdmin`.
    #[error("a GlobalAdmin already exists")]
    AlreadyBootstrapped,
    /// The revoke would leave no `GlobalAdmin`; grant another one first.
    #[error("cannot revoke the last GlobalAdmin")]
    LastGlobalAdmin,
}

/// What a successful policy change did: for the audit log, and (through
/// [`AuthzChange::records`]) for persistence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthzChange {
    /// The first `GlobalAdmin` was installed.
    Bootstrapped {
        /// The admin.
        admin: CallerId,
    },
    /// A grant was made (or its `delegable` flag replaced).
    Granted {
        /// The grant.
        grant: Grant,
        /// On what authority.
        basis: GrantBasis,
    },
    /// Grants were revoked.
    Revoked {
        /// Who revoked.
        by: CallerId,
        /// The grants named by the revoke.
        removed: Vec<Grant>,
        /// Delegated grants removed because they lost their support.
        cascaded: Vec<Grant>,
    },
    /// The engine recorded the owner of a resource ([`PolicyState::set_owner`]).
    OwnerSet {
        /// The resource.
        resource: Resource,
        /// Its owner before, if any.
        previous: Option<CallerId>,
        /// Its owner now.
        owner: CallerId,
        /// Delegated grants removed because they lost their support.
        cascaded: Vec<Grant>,
    },
    /// Ownership was transferred by a caller.
    OwnershipTransferred {
        /// Who transferred it.
        by: CallerId,
        /// The resource.
        resource: Resource,
        /// Its owner before, if any.
        previous: Option<CallerId>,
        /// Its owner now.
        new_owner: CallerId,
        /// Delegated grants removed because they lost their support.
        cascaded: Vec<Grant>,
    },
    /// A dropped resource's owners and grants were removed
    /// ([`PolicyState::forget_resource`]).
    ResourceForgotten {
        /// The resource.
        resource: Resource,
        /// Owners removed: of the resource and of everything inside it.
        owners: Vec<(Resource, CallerId)>,
        /// Grants confined to the resource.
        removed: Vec<Grant>,
        /// Delegated grants removed because they lost their support.
        cascaded: Vec<Grant>,
    },
}

impl AuthzChange {
    /// A short, stable name of the change, for audit rows.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthzChange::Bootstrapped { .. } => "bootstrap",
            AuthzChange::Granted { .. } => "grant",
            AuthzChange::Revoked { .. } => "revoke",
            AuthzChange::OwnerSet { .. } => "owner_set",
            AuthzChange::OwnershipTransferred { .. } => "ownership_transfer",
            AuthzChange::ResourceForgotten { .. } => "resource_forgotten",
        }
    }

    /// Whether the change altered nothing (a forgotten resource that had no
    /// owner and no grants).
    pub fn is_empty(&self) -> bool {
        matches!(self, AuthzChange::ResourceForgotten { owners, removed, cascaded, .. }
            if owners.is_empty() && removed.is_empty() && cascaded.is_empty())
    }

    /// The records that replay this change with [`PolicyState::apply_record`], in
    /// order: append them to the persisted policy log.
    pub fn records(&self) -> Vec<PolicyRecord> {
        fn revokes<'a>(grants: impl IntoIterator<Item = &'a Grant>) -> Vec<PolicyRecord> {
            grants
                .into_iter()
                .map(|g| PolicyRecord::Revoke {
                    grantee: g.grantee.clone(),
                    permission: g.permission.clone(),
                    granted_by: g.granted_by.clone(),
                })
                .collect()
        }
        match self {
            AuthzChange::Bootstrapped { admin } => vec![PolicyRecord::Bootstrap {
                admin: admin.clone(),
            }],
            AuthzChange::Granted { grant, basis } => vec![PolicyRecord::Grant {
                grant: grant.clone(),
                basis: *basis,
            }],
            AuthzChange::Revoked {
                removed, cascaded, ..
            } => revokes(removed.iter().chain(cascaded)),
            AuthzChange::OwnerSet {
                resource,
                owner: new_owner,
                cascaded,
                ..
            }
            | AuthzChange::OwnershipTransferred {
                resource,
                new_owner,
                cascaded,
                ..
            } => {
                let mut records = vec![PolicyRecord::OwnerSet {
                    resource: resource.clone(),
                    owner: new_owner.clone(),
                }];
                records.extend(revokes(cascaded));
                records
            }
            AuthzChange::ResourceForgotten {
                owners,
                removed,
                cascaded,
                ..
            } => {
                let mut records: Vec<PolicyRecord> = owners
                    .iter()
                    .map(|(resource, _)| PolicyRecord::OwnerCleared {
                        resource: resource.clone(),
                    })
                    .collect();
                records.extend(revokes(removed.iter().chain(cascaded)));
                records
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    delegable: bool,
    basis: GrantBasis,
}

/// The grants and owners of a secure instance: mutable, owned by the Authz actor.
///
/// Every change validates the caller's authority and returns the
/// [`AuthzChange`] to audit and persist. [`PolicyState::snapshot`] publishes an
/// immutable [`PolicySnapshot`] for checks. See the [module docs](self) for the
/// rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// grantee -> (permission, granted_by) -> entry.
    grants: BTreeMap<CallerId, BTreeMap<(Permission, CallerId), Entry>>,
    owners: BTreeMap<Resource, CallerId>,
}

impl PolicyState {
    /// An empty policy: no grants, no owners.
    pub fn new() -> PolicyState {
        PolicyState::default()
    }

    /// Installs `admin` as the first `GlobalAdmin` (granted by the system caller,
    /// delegable). The engine calls it when it creates a secure instance.
    pub fn bootstrap_admin(&mut self, admin: CallerId) -> Result<AuthzChange, AuthzError> {
        if admin.is_system() {
            return Err(AuthzError::SystemCaller);
        }
        if self.is_bootstrapped() {
            return Err(AuthzError::AlreadyBootstrapped);
        }
        self.insert_bootstrap(admin.clone());
        Ok(AuthzChange::Bootstrapped { admin })
    }

    /// Whether any caller holds `GlobalAdmin`.
    pub fn is_bootstrapped(&self) -> bool {
        self.global_admin_count() > 0
    }

    /// `granter` grants `permission` to `grantee`. See the [module docs](self)
    /// for who may grant what.
    pub fn grant(
        &mut self,
        granter: &CallerId,
        grantee: CallerId,
        permission: Permission,
        delegable: bool,
    ) -> Result<AuthzChange, AuthzError> {
        if grantee.is_system() {
            return Err(AuthzError::SystemCaller);
        }
        validate_permission(&permission)?;
        let basis = self
            .grant_basis(granter, &permission)
            .ok_or(Denied::new(DenyReason::NoAuthority))?;
        self.grants.entry(grantee.clone()).or_default().insert(
            (permission.clone(), granter.clone()),
            Entry { delegable, basis },
        );
        Ok(AuthzChange::Granted {
            grant: Grant {
                grantee,
                permission,
                delegable,
                granted_by: granter.clone(),
            },
            basis,
        })
    }

    /// `revoker` revokes `permission` from `grantee`: every such grant if the
    /// revoker has admin authority covering it (or is the system caller),
    /// otherwise only the one the revoker made. Delegated grants that lose their
    /// support are removed too (see the [module docs](self)).
    pub fn revoke(
        &mut self,
        revoker: &CallerId,
        grantee: &CallerId,
        permission: &Permission,
    ) -> Result<AuthzChange, AuthzError> {
        let is_admin = revoker.is_system() || self.has_admin_authority(revoker, permission);
        let granters: Vec<CallerId> = self
            .grants
            .get(grantee)
            .into_iter()
            .flat_map(|m| m.keys())
            .filter(|(p, by)| p == permission && (is_admin || by == revoker))
            .map(|(_, by)| by.clone())
            .collect();
        if granters.is_empty() {
            return Err(if is_admin {
                AuthzError::GrantNotFound
            } else {
                Denied::new(DenyReason::NoAuthority).into()
            });
        }
        if *permission == Permission::GlobalAdmin {
            // All grants of GlobalAdmin to the grantee go when an admin revokes;
            // a non-admin cannot reach here for GlobalAdmin unless it granted it,
            // and then it may still hold other grants of it.
            let remaining_for_grantee = self
                .grants
                .get(grantee)
                .into_iter()
                .flat_map(|m| m.keys())
                .filter(|(p, by)| *p == Permission::GlobalAdmin && !granters.contains(by))
                .count();
            if remaining_for_grantee == 0 && self.global_admin_count() <= 1 {
                return Err(AuthzError::LastGlobalAdmin);
            }
        }
        let mut removed = Vec::with_capacity(granters.len());
        for by in granters {
            if let Some(entry) = self.remove_grant(grantee, permission, &by) {
                removed.push(Grant {
                    grantee: grantee.clone(),
                    permission: permission.clone(),
                    delegable: entry.delegable,
                    granted_by: by,
                });
            }
        }
        let cascaded = self.cascade();
        Ok(AuthzChange::Revoked {
            by: revoker.clone(),
            removed,
            cascaded,
        })
    }

    /// `by` makes `new_owner` the owner of `resource`. Allowed for the current
    /// owner, for anyone administering the resource (an admin permission or
    /// ownership of an enclosing resource) and for the system caller.
    pub fn transfer_ownership(
        &mut self,
        by: &CallerId,
        resource: &Resource,
        new_owner: CallerId,
    ) -> Result<AuthzChange, AuthzError> {
        if new_owner.is_system() {
            return Err(AuthzError::SystemCaller);
        }
        if resource.names_reserved() {
            return Err(AuthzError::ReservedName);
        }
        if !(by.is_system() || self.administers(by, resource)) {
            return Err(Denied::new(DenyReason::NoAuthority).into());
        }
        let previous = self.owners.insert(resource.clone(), new_owner.clone());
        let cascaded = self.cascade();
        Ok(AuthzChange::OwnershipTransferred {
            by: by.clone(),
            resource: resource.clone(),
            previous,
            new_owner,
            cascaded,
        })
    }

    /// Records `owner` as the owner of `resource`, without an authority check:
    /// the engine calls it after it created the resource on `owner`'s authorized
    /// request. Replaces any previous owner. When the system caller creates a
    /// resource, record no owner (this refuses it).
    pub fn set_owner(
        &mut self,
        resource: Resource,
        owner: CallerId,
    ) -> Result<AuthzChange, AuthzError> {
        if owner.is_system() {
            return Err(AuthzError::SystemCaller);
        }
        if resource.names_reserved() {
            return Err(AuthzError::ReservedName);
        }
        let previous = self.owners.insert(resource.clone(), owner.clone());
        let cascaded = self.cascade();
        Ok(AuthzChange::OwnerSet {
            resource,
            previous,
            owner,
            cascaded,
        })
    }

    /// Forgets a dropped resource, without an authority check (the engine calls
    /// it after an authorized drop): removes the owners of the resource and of
    /// everything inside it, and every grant confined to it
    /// ([`Resource::confines`]), so a later resource of the same name starts
    /// clean.
    pub fn forget_resource(&mut self, resource: &Resource) -> AuthzChange {
        let owned: Vec<Resource> = self
            .owners
            .keys()
            .filter(|r| resource.contains(r))
            .cloned()
            .collect();
        let owners = owned
            .into_iter()
            .filter_map(|r| self.owners.remove(&r).map(|o| (r, o)))
            .collect();
        let doomed: Vec<Grant> = self
            .all_grants()
            .filter(|(g, _)| resource.confines(&g.permission))
            .map(|(g, _)| g)
            .collect();
        for g in &doomed {
            self.remove_grant(&g.grantee, &g.permission, &g.granted_by);
        }
        let cascaded = self.cascade();
        AuthzChange::ResourceForgotten {
            resource: resource.clone(),
            owners,
            removed: doomed,
            cascaded,
        }
    }

    /// The owner of `resource`, if one is recorded.
    pub fn owner(&self, resource: &Resource) -> Option<&CallerId> {
        self.owners.get(resource)
    }

    /// Every recorded owner, sorted by resource.
    pub fn owners(&self) -> impl Iterator<Item = (&Resource, &CallerId)> + '_ {
        self.owners.iter()
    }

    /// Every grant, sorted by grantee, permission and granter.
    pub fn grants(&self) -> impl Iterator<Item = Grant> + '_ {
        self.all_grants().map(|(g, _)| g)
    }

    /// The grants held by `grantee`, sorted by permission and granter.
    pub fn grants_of<'a>(&'a self, grantee: &'a CallerId) -> impl Iterator<Item = Grant> + 'a {
        self.grants.get(grantee).into_iter().flat_map(move |m| {
            m.iter().map(move |((permission, by), e)| Grant {
                grantee: grantee.clone(),
                permission: permission.clone(),
                delegable: e.delegable,
                granted_by: by.clone(),
            })
        })
    }

    /// The basis on which a grant was made, if it exists.
    pub fn grant_basis_of(
        &self,
        grantee: &CallerId,
        permission: &Permission,
        granted_by: &CallerId,
    ) -> Option<GrantBasis> {
        self.grants
            .get(grantee)?
            .get(&(permission.clone(), granted_by.clone()))
            .map(|e| e.basis)
    }

    /// Number of grants.
    pub fn grant_count(&self) -> usize {
        self.grants.values().map(BTreeMap::len).sum()
    }

    /// Whether `granter` may grant `permission` now, and on what basis.
    pub fn grant_basis(&self, granter: &CallerId, permission: &Permission) -> Option<GrantBasis> {
        if granter.is_system() || self.has_admin_authority(granter, permission) {
            Some(GrantBasis::Administrative)
        } else if self
            .held(granter)
            .any(|(p, e)| e.delegable && p.covers(permission))
        {
            Some(GrantBasis::Delegated)
        } else {
            None
        }
    }

    /// Builds the immutable view that checks run against.
    pub fn snapshot(&self) -> PolicySnapshot {
        let mut callers: HashMap<CallerId, CallerRights> = HashMap::new();
        for (grantee, held) in &self.grants {
            let mut permissions: Vec<Permission> = held.keys().map(|(p, _)| p.clone()).collect();
            // Sorted by `Permission`'s order: `GlobalAdmin` first. Keys are
            // already sorted by permission, so equal permissions are adjacent.
            permissions.dedup();
            if !permissions.is_empty() {
                callers.entry(grantee.clone()).or_default().permissions = permissions;
            }
        }
        for (resource, owner) in &self.owners {
            callers
                .entry(owner.clone())
                .or_default()
                .owned
                .push(resource.clone());
        }
        PolicySnapshot::new(callers)
    }

    /// The whole policy as records (grants, then owners) that
    /// [`PolicyState::from_records`] turns back into an equal state.
    pub fn to_records(&self) -> Vec<PolicyRecord> {
        let mut records: Vec<PolicyRecord> = self
            .all_grants()
            .map(|(grant, basis)| PolicyRecord::Grant { grant, basis })
            .collect();
        records.extend(
            self.owners
                .iter()
                .map(|(resource, owner)| PolicyRecord::OwnerSet {
                    resource: resource.clone(),
                    owner: owner.clone(),
                }),
        );
        records
    }

    /// Rebuilds a policy by applying `records` in order to an empty one (a full
    /// [`PolicyState::to_records`] list, a log of [`AuthzChange::records`], or a
    /// full list followed by a log).
    pub fn from_records(
        records: impl IntoIterator<Item = PolicyRecord>,
    ) -> Result<PolicyState, ReplayError> {
        let mut state = PolicyState::new();
        for (index, record) in records.into_iter().enumerate() {
            state
                .apply_record(&record)
                .map_err(|kind| ReplayError { index, kind })?;
        }
        Ok(state)
    }

    /// Applies one persisted record, without authority checks (they were made
    /// when the record was written) and without cascading (cascaded removals are
    /// records of their own). The record's own invariants are still checked.
    pub fn apply_record(&mut self, record: &PolicyRecord) -> Result<(), ReplayErrorKind> {
        match record {
            PolicyRecord::Bootstrap { admin } => {
                if admin.is_system() {
                    return Err(ReplayErrorKind::SystemCaller);
                }
                self.insert_bootstrap(admin.clone());
            }
            PolicyRecord::Grant { grant, basis } => {
                if grant.grantee.is_system() {
                    return Err(ReplayErrorKind::SystemCaller);
                }
                validate_permission(&grant.permission).map_err(|e| match e {
                    AuthzError::PrefixTooLong { len } => ReplayErrorKind::PrefixTooLong { len },
                    _ => ReplayErrorKind::ReservedName,
                })?;
                self.grants
                    .entry(grant.grantee.clone())
                    .or_default()
                    .insert(
                        (grant.permission.clone(), grant.granted_by.clone()),
                        Entry {
                            delegable: grant.delegable,
                            basis: *basis,
                        },
                    );
            }
            PolicyRecord::Revoke {
                grantee,
                permission,
                granted_by,
            } => {
                self.remove_grant(grantee, permission, granted_by)
                    .ok_or(ReplayErrorKind::UnknownGrant)?;
            }
            PolicyRecord::OwnerSet { resource, owner } => {
                if owner.is_system() {
                    return Err(ReplayErrorKind::SystemCaller);
                }
                if resource.names_reserved() {
                    return Err(ReplayErrorKind::ReservedName);
                }
                self.owners.insert(resource.clone(), owner.clone());
            }
            PolicyRecord::OwnerCleared { resource } => {
                self.owners
                    .remove(resource)
                    .ok_or(ReplayErrorKind::UnknownOwner)?;
            }
        }
        Ok(())
    }

    // ---- internals ----

    fn insert_bootstrap(&mut self, admin: CallerId) {
        self.grants.entry(admin).or_default().insert(
            (Permission::GlobalAdmin, CallerId::system()),
            Entry {
                delegable: true,
                basis: GrantBasis::Administrative,
            },
        );
    }

    fn held<'a>(
        &'a self,
        caller: &CallerId,
    ) -> impl Iterator<Item = (&'a Permission, &'a Entry)> + 'a {
        self.grants
            .get(caller)
            .into_iter()
            .flat_map(|m| m.iter().map(|((p, _), e)| (p, e)))
    }

    fn all_grants(&self) -> impl Iterator<Item = (Grant, GrantBasis)> + '_ {
        self.grants.iter().flat_map(|(grantee, m)| {
            m.iter().map(move |((permission, by), e)| {
                (
                    Grant {
                        grantee: grantee.clone(),
                        permission: permission.clone(),
                        delegable: e.delegable,
                        granted_by: by.clone(),
                    },
                    e.basis,
                )
            })
        })
    }

    fn global_admin_count(&self) -> usize {
        self.grants
            .values()
            .filter(|m| m.keys().any(|(p, _)| *p == Permission::GlobalAdmin))
            .count()
    }

    /// Admin authority over `permission`: an admin grant covering it or
    /// ownership of a resource whose owner may grant it.
    fn has_admin_authority(&self, caller: &CallerId, permission: &Permission) -> bool {
        self.held(caller)
            .any(|(p, _)| p.is_admin() && p.covers(permission))
            || self
                .owners
                .iter()
                .any(|(r, o)| o == caller && r.owner_may_grant(permission))
    }

    /// Whether `caller` owns `resource` or administers it (admin permission or
    /// ownership of an enclosing resource).
    fn administers(&self, caller: &CallerId, resource: &Resource) -> bool {
        self.held(caller).any(|(p, _)| p.administers(resource))
            || self
                .owners
                .iter()
                .any(|(r, o)| o == caller && r.contains(resource))
    }

    fn remove_grant(
        &mut self,
        grantee: &CallerId,
        permission: &Permission,
        granted_by: &CallerId,
    ) -> Option<Entry> {
        let held = self.grants.get_mut(grantee)?;
        let entry = held.remove(&(permission.clone(), granted_by.clone()))?;
        if held.is_empty() {
            self.grants.remove(grantee);
        }
        Some(entry)
    }

    /// Removes every delegated grant whose granter can no longer grant it (no
    /// admin authority over it and no live delegable grant covering it) and
    /// returns them. Computed as a least fixpoint so that circular delegation
    /// does not support itself.
    fn cascade(&mut self) -> Vec<Grant> {
        type Key<'a> = (&'a CallerId, &'a Permission, &'a CallerId);
        let mut pending: Vec<Key<'_>> = Vec::new();
        for (grantee, held) in &self.grants {
            for ((permission, by), e) in held {
                if e.basis == GrantBasis::Delegated
                    && !(by.is_system() || self.has_admin_authority(by, permission))
                {
                    pending.push((grantee, permission, by));
                }
            }
        }
        if pending.is_empty() {
            return Vec::new();
        }
        let pending_set: HashSet<Key<'_>> = pending.iter().copied().collect();
        let mut live: HashSet<Key<'_>> = HashSet::new();
        loop {
            let mut changed = false;
            for &key in &pending {
                let (_, permission, by) = key;
                if live.contains(&key) {
                    continue;
                }
                let supported =
                    self.grants
                        .get(by)
                        .into_iter()
                        .flat_map(|m| m.iter())
                        .any(|((p, p_by), e)| {
                            let support: Key<'_> = (by, p, p_by);
                            support != key
                                && e.delegable
                                && p.covers(permission)
                                && (!pending_set.contains(&support) || live.contains(&support))
                        });
                if supported {
                    live.insert(key);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        let dead: Vec<(CallerId, Permission, CallerId)> = pending
            .into_iter()
            .filter(|k| !live.contains(k))
            .map(|(g, p, b)| (g.clone(), p.clone(), b.clone()))
            .collect();
        dead.into_iter()
            .filter_map(|(grantee, permission, granted_by)| {
                let e = self.remove_grant(&grantee, &permission, &granted_by)?;
                Some(Grant {
                    grantee,
                    permission,
                    delegable: e.delegable,
                    granted_by,
                })
            })
            .collect()
    }
}

fn validate_permission(permission: &Permission) -> Result<(), AuthzError> {
    if permission.names_reserved() {
        return Err(AuthzError::ReservedName);
    }
    if let Some(prefix) = permission.kv_prefix()
        && prefix.len() > MAX_KV_PREFIX_LEN
    {
        return Err(AuthzError::PrefixTooLong { len: prefix.len() });
    }
    Ok(())
}
