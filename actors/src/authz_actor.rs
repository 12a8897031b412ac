//! The Authz actor: the only owner of the grants and owners of a secure instance.
//!
//! Every policy change (bootstrap, grant, revoke, ownership) is a typed message
//! ([`Change`]). The actor applies it to a copy of its [`PolicyState`], persists the
//! change's [`PolicyRecord`]s as KV entries of `_system/authz` through **one durable
//! commit** of the normal pipeline, and only then adopts the new state, publishes a
//! fresh immutable [`PolicySnapshot`] (readers check against it on their own thread,
//! with no actor hop) and sends the audit row. A failed commit changes nothing.
//!
//! At open the policy is rebuilt by replaying the persisted records in key order.

use std::sync::Arc;

use aedb_authz::{
    AuthzChange, AuthzError, CallerId, Permission, PolicyRecord, PolicySnapshot, PolicyState,
    ReplayError, Resource,
};
use aedb_model::{Direction, KvKey, KvValue, Mutation, State, Transaction};
use aedb_sync::SnapshotCell;

use crate::actor::{self, Ask, Owner, Running};
use crate::audit::{AuditEvent, AuditRef, AuditTable, Event};
use crate::commit::{Authority, Finality, Request};
use crate::committer::{Admission, Committer};
use crate::error::CommitError;
use crate::metrics::EngineMetrics;
use crate::system::authz_namespace;

/// Key prefix of persisted policy records in `_system/authz` (then a u64 BE sequence).
const POLICY_PREFIX: &[u8] = b"policy/";
/// Key prefix of revoked session profiles and environment hashes in `_system/authz`.
pub const SESSION_REVOCATION_PREFIX: &[u8] = b"revoked/";

/// A policy change a caller asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyChange {
    /// Install the first GlobalAdmin (secure-instance creation).
    Bootstrap(CallerId),
    /// Grant `permission` to `grantee`.
    Grant {
        /// Who receives it.
        grantee: CallerId,
        /// What.
        permission: Permission,
        /// Whether the grantee may pass it on.
        delegable: bool,
    },
    /// Revoke `permission` from `grantee`.
    Revoke {
        /// From whom.
        grantee: CallerId,
        /// What.
        permission: Permission,
    },
    /// Hand `resource` to `new_owner`.
    TransferOwnership {
        /// The resource.
        resource: Resource,
        /// Its new owner.
        new_owner: CallerId,
    },
    /// Record the creator of a new resource as its owner (engine use after DDL).
    SetOwner {
        /// The resource.
        resource: Resource,
        /// Its creator.
        owner: CallerId,
    },
    /// Forget a dropped resource's owners and grants (engine use after DDL).
    Forget(Resource),
    /// Durably revoke a session profile or environment hash: `key` is stored under
    /// [`SESSION_REVOCATION_PREFIX`] (the engine reloads them into its session
    /// authority at open).
    RevokeSession {
        /// What is revoked (`profile/<hex>` or `env/<hex>`).
        key: String,
    },
}

/// Why a policy change failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuthzFailure {
    /// The policy refused it (generic denial, invalid grant, …).
    #[error(transparent)]
    Policy(#[from] AuthzError),
    /// Persisting it failed; nothing changed.
    #[error("persisting the policy change failed: {0}")]
    Commit(#[from] CommitError),
    /// The change does not fit a KV entry (a KV prefix or key beyond the limits).
    #[error("the policy change is too large to store: {0}")]
    Invalid(String),
}

/// Why the persisted policy could not be loaded at open.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// A stored record does not decode.
    #[error("persisted policy record {index} does not decode: {source}")]
    Decode {
        /// Its position.
        index: usize,
        /// Why.
        source: aedb_authz::DecodeError,
    },
    /// The records contradict each other.
    #[error("persisted policy does not replay: {0}")]
    Replay(#[from] ReplayError),
}

/// Apply `change` on behalf of `by` (authority is checked against the current policy);
/// answered once it is durable and published.
#[derive(Debug)]
pub struct Change {
    /// Who asks.
    pub by: CallerId,
    /// What.
    pub change: PolicyChange,
}

/// Handle to the running Authz actor.
pub struct AuthzHandle {
    running: Running<AuthzActor>,
    policy: Arc<SnapshotCell<PolicySnapshot>>,
}

impl std::fmt::Debug for AuthzHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthzHandle")
            .field("policy_version", &self.policy.version())
            .finish_non_exhaustive()
    }
}

impl AuthzHandle {
    /// Applies `change` on behalf of `by` and waits until it is durable and published.
    pub fn change(&self, by: CallerId, change: PolicyChange) -> Result<AuthzChange, AuthzFailure> {
        self.running
            .addr()
            .ask(Change { by, change })
            .unwrap_or(Err(AuthzFailure::Commit(CommitError::Closed)))
    }

    /// Stops the actor once the changes already queued are done.
    pub fn stop(mut self) {
        self.running.stop();
    }

    /// The newest published policy (an `Arc` load; no actor hop).
    pub fn policy(&self) -> Arc<PolicySnapshot> {
        self.policy.load().1
    }
}

/// The persisted policy records of `state`, replayed.
pub fn load_policy(state: &State) -> Result<(PolicyState, u64), PolicyLoadError> {
    let page = state
        .kv_scan_prefix(
            &authz_namespace(),
            POLICY_PREFIX,
            Direction::Forward,
            usize::MAX,
        )
        .ok();
    let entries = page.map(|p| p.items).unwrap_or_default();
    let mut next_seq = 0u64;
    let mut records = Vec::with_capacity(entries.len());
    for (key, entry) in &entries {
        if let Some(seq) = key
            .as_bytes()
            .strip_prefix(POLICY_PREFIX)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
        {
            next_seq = next_seq.max(u64::from_be_bytes(seq) + 1);
        }
        let record = PolicyRecord::decode(entry.value.as_bytes()).map_err(|source| {
            PolicyLoadError::Decode {
                index: records.len(),
                source,
            }
        })?;
        records.push(record);
    }
    Ok((PolicyState::from_records(records)?, next_seq))
}

/// Session revocation keys stored in `state` (without the prefix).
pub fn load_session_revocations(state: &State) -> Vec<String> {
    state
        .kv_scan_prefix(
            &authz_namespace(),
            SESSION_REVOCATION_PREFIX,
            Direction::Forward,
            usize::MAX,
        )
        .map(|page| {
            page.items
                .iter()
                .filter_map(|(k, _)| {
                    let rest = k.as_bytes().strip_prefix(SESSION_REVOCATION_PREFIX)?;
                    String::from_utf8(rest.to_vec()).ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Starts the Authz actor over `policy` (loaded with [`load_policy`]).
pub fn spawn(
    policy: PolicyState,
    next_seq: u64,
    committer: Committer,
    audit: AuditRef,
    metrics: Arc<EngineMetrics>,
) -> Result<AuthzHandle, AuthzStartError> {
    let initial = Arc::new(policy.snapshot());
    // In force in the Sequencer before the first caller can reach it.
    committer
        .install_policy(initial.clone())
        .map_err(|_| AuthzStartError::Closed)?;
    let published = Arc::new(SnapshotCell::new(0, initial));
    let stats = metrics.owners.authz.clone();
    let actor = AuthzActor {
        policy,
        next_seq,
        version: 0,
        committer,
        published: published.clone(),
        audit,
        metrics,
    };
    Ok(AuthzHandle {
        running: actor::spawn(actor, 64, stats).map_err(AuthzStartError::Thread)?,
        policy: published,
    })
}

/// Why the Authz actor did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthzStartError {
    /// Its thread could not be started.
    #[error("cannot start the authz thread: {0}")]
    Thread(std::io::Error),
    /// The pipeline is shutting down.
    #[error("the engine is shutting down")]
    Closed,
}

/// The Authz actor: owns the policy (grants, owners) and its published snapshot.
pub struct AuthzActor {
    policy: PolicyState,
    next_seq: u64,
    version: u64,
    committer: Committer,
    published: Arc<SnapshotCell<PolicySnapshot>>,
    audit: AuditRef,
    metrics: Arc<EngineMetrics>,
}

impl Owner for AuthzActor {
    const NAME: &'static str = "authz";
}

impl Ask<AuthzActor> for Change {
    type Reply = Result<AuthzChange, AuthzFailure>;

    fn handle(self, actor: &mut AuthzActor) -> Self::Reply {
        actor.apply(&self.by, self.change)
    }
}

/// The label denials of admin-only actions are counted under (no project).
pub const GLOBAL_LABEL: &str = "_global";

/// The project a policy change concerns, when it concerns one.
fn change_project(change: &PolicyChange) -> Option<String> {
    let project = match change {
        PolicyChange::Grant { permission, .. } | PolicyChange::Revoke { permission, .. } => {
            permission.project().cloned()
        }
        PolicyChange::TransferOwnership { resource, .. }
        | PolicyChange::SetOwner { resource, .. }
        | PolicyChange::Forget(resource) => Some(resource.project().clone()),
        PolicyChange::Bootstrap(_) | PolicyChange::RevokeSession { .. } => None,
    };
    project.map(|p| p.to_string())
}

impl AuthzActor {
    fn apply(&mut self, by: &CallerId, change: PolicyChange) -> Result<AuthzChange, AuthzFailure> {
        if let PolicyChange::RevokeSession { key } = &change {
            return self.revoke_session(by, key);
        }
        // The project a denial is counted under (policy changes on global rights count
        // under `_global`).
        let project = change_project(&change);
        let mut next = self.policy.clone();
        let result = match change {
            PolicyChange::Bootstrap(admin) => next.bootstrap_admin(admin),
            PolicyChange::Grant {
                grantee,
                permission,
                delegable,
            } => next.grant(by, grantee, permission, delegable),
            PolicyChange::Revoke {
                grantee,
                permission,
            } => next.revoke(by, &grantee, &permission),
            PolicyChange::TransferOwnership {
                resource,
                new_owner,
            } => next.transfer_ownership(by, &resource, new_owner),
            PolicyChange::SetOwner { resource, owner } => next.set_owner(resource, owner),
            PolicyChange::Forget(resource) => Ok(next.forget_resource(&resource)),
            PolicyChange::RevokeSession { .. } => unreachable!("handled above"),
        };
        let applied = match result {
            Ok(applied) => applied,
            Err(e) => {
                if matches!(e, AuthzError::Denied(_)) {
                    self.metrics
                        .count_denial(project.as_deref().unwrap_or(GLOBAL_LABEL));
                    self.audit(by, "denied", "policy change", "");
                }
                return Err(e.into());
            }
        };
        if applied.is_empty() {
            return Ok(applied);
        }
        let ns = authz_namespace();
        let mut seq = self.next_seq;
        let mut mutations = Vec::new();
        for record in applied.records() {
            let mut key = POLICY_PREFIX.to_vec();
            key.extend_from_slice(&seq.to_be_bytes());
            seq += 1;
            let invalid = |e: aedb_model::LimitError| AuthzFailure::Invalid(e.to_string());
            mutations.push(Mutation::KvPut {
                ns: ns.clone(),
                key: KvKey::new(key).map_err(invalid)?,
                value: KvValue::new(record.encode()).map_err(invalid)?,
            });
        }
        // The Sequencer checks every commit sequenced after this one against the new
        // policy, so a revoke is in force before this call returns.
        let snapshot = Arc::new(next.snapshot());
        self.commit(mutations, Authority::installing(snapshot.clone()))?;
        self.next_seq = seq;
        self.policy = next;
        self.version += 1;
        self.published.publish(self.version, snapshot);
        self.metrics.count_policy_change(applied.kind());
        self.audit(by, applied.kind(), &describe(&applied), "");
        Ok(applied)
    }

    fn revoke_session(&mut self, by: &CallerId, what: &str) -> Result<AuthzChange, AuthzFailure> {
        let policy = self.published.load().1;
        if !policy.is_global_admin(by) && !by.is_system() {
            self.metrics.count_denial(GLOBAL_LABEL);
            self.audit(by, "denied", "revoke session", what);
            let denied = aedb_authz::Denied::new(aedb_authz::DenyReason::GlobalAdminRequired);
            return Err(AuthzError::Denied(denied).into());
        }
        let mut key = SESSION_REVOCATION_PREFIX.to_vec();
        key.extend_from_slice(what.as_bytes());
        let invalid = |e: aedb_model::LimitError| AuthzFailure::Invalid(e.to_string());
        self.commit(
            vec![Mutation::KvPut {
                ns: authz_namespace(),
                key: KvKey::new(key).map_err(invalid)?,
                value: KvValue::new(b"").map_err(invalid)?,
            }],
            Authority::engine(),
        )?;
        if !by.is_system() {
            self.metrics.count_global_admin_action(by.as_str());
        }
        self.audit(by, "session_revoked", what, "");
        Ok(AuthzChange::Revoked {
            by: by.clone(),
            removed: Vec::new(),
            cascaded: Vec::new(),
        })
    }

    fn commit(&self, mutations: Vec<Mutation>, authority: Authority) -> Result<(), CommitError> {
        let tx = Transaction {
            mutations,
            ..Transaction::new()
        };
        self.committer
            .submit(
                authority,
                Request::Transaction(tx),
                Finality::Durable,
                Admission::Wait,
            )
            .map(|_| ())
    }

    fn audit(&self, by: &CallerId, kind: &str, subject: &str, detail: &str) {
        // A stopped Audit actor means the instance is shutting down.
        let _ = self.audit.tell(Event(AuditEvent {
            table: AuditTable::Authz,
            caller: by.to_string(),
            kind: kind.into(),
            subject: subject.into(),
            detail: detail.into(),
        }));
    }
}

/// A one-line, non-secret description of a change for its audit row.
fn describe(change: &AuthzChange) -> String {
    let grants = |g: &[aedb_authz::Grant]| {
        g.iter()
            .map(|g| format!("{} {:?}", g.grantee, g.permission))
            .collect::<Vec<_>>()
            .join("; ")
    };
    match change {
        AuthzChange::Bootstrapped { admin } => format!("GlobalAdmin to {admin}"),
        AuthzChange::Granted { grant, .. } => format!(
            "{:?} to {}{}",
            grant.permission,
            grant.grantee,
            if grant.delegable { " (delegable)" } else { "" }
        ),
        AuthzChange::Revoked {
            removed, cascaded, ..
        } => format!("{} (cascaded: {})", grants(removed), grants(cascaded)),
        AuthzChange::OwnerSet {
            resource, owner, ..
        } => format!("{resource:?} owned by {owner}"),
        AuthzChange::OwnershipTransferred {
            resource,
            previous,
            new_owner,
            ..
        } => format!(
            "{resource:?} from {} to {new_owner}",
            previous.as_ref().map_or("nobody".into(), |p| p.to_string())
        ),
        AuthzChange::ResourceForgotten { resource, .. } => format!("{resource:?} forgotten"),
    }
}
