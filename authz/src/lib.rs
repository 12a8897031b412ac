//! aedb authorization: callers, permissions, grants, owners and policy evaluation.
//!
//! This crate owns the pure logic of secure instances (no I/O, no actors):
//! - [`CallerId`], a validated caller name, and the reserved internal system caller
//!   that users can never name or forge; it is always allowed and can never hold a
//!   grant or own anything;
//! - the [`Permission`] model (`GlobalAdmin`, `ProjectAdmin`, `ScopeAdmin`,
//!   `TableDdl`, `TableRead`/`TableWrite`, byte-prefix scoped `KvRead`/`KvWrite`),
//!   owned [`Resource`]s, and the [`Action`]s callers attempt;
//! - [`PolicyState`], the grants and owners with the rules for granting,
//!   delegating, revoking (with cascade of delegated grants) and transferring
//!   ownership, each change reported as an [`AuthzChange`] for the audit log;
//! - [`PolicySnapshot`], the immutable `Send + Sync` view the read path checks on
//!   the caller's thread, whose denials ([`Denied`]) say only "permission denied";
//! - the versioned binary codec of [`PolicyRecord`]s that persist the policy.
//!
//! It does not own storage, the Authz actor or audit tables (the engine stores the
//! policy records and session revocations, runs the actor and writes the audit rows),
//! nor the caller session capsules of the IHP runbook (crate `aedb-session`, which
//! builds on [`CallerId`]).
//!
//! ```
//! use aedb_authz::{Action, CallerId, Permission, PolicyState};
//! use aedb_model::Namespace;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = CallerId::new("root@ops")?;
//! let alice = CallerId::new("alice@ledger")?;
//! let ns = Namespace::parse("bank", "eu")?;
//!
//! let mut policy = PolicyState::new();
//! policy.bootstrap_admin(root.clone())?;
//! let change = policy.grant(
//!     &root,
//!     alice.clone(),
//!     Permission::KvRead { ns: ns.clone(), prefix: b"acct/".to_vec() },
//!     false,
//! )?;
//! assert_eq!(change.kind(), "grant");
//!
//! let snapshot = policy.snapshot();
//! assert!(snapshot.check(&alice, &Action::KvRead { ns: &ns, key: b"acct/42" }).is_ok());
//! let denied = snapshot
//!     .check(&alice, &Action::KvWrite { ns: &ns, key: b"acct/42" })
//!     .unwrap_err();
//! assert_eq!(denied.to_string(), "permission denied");
//! assert!(snapshot.check(&root, &Action::Backup).is_ok());
//!
//! // The policy persists as records and rebuilds to the same state.
//! let records = aedb_authz::encode_records(&policy.to_records());
//! let reopened = PolicyState::from_records(aedb_authz::decode_records(&records)?)?;
//! assert_eq!(reopened, policy);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

use std::fmt;

pub mod action;
pub mod denied;
pub mod permission;
pub mod policy;
pub mod record;
pub mod snapshot;

pub use action::{Action, KvRange, ddl_action, transaction_actions};
pub use denied::{AccessError, Denied, DenyReason};
pub use permission::{MAX_KV_PREFIX_LEN, Permission, Resource};
pub use policy::{AuthzChange, AuthzError, Grant, GrantBasis, PolicyState};
pub use record::{
    DecodeError, DecodeErrorKind, POLICY_RECORD_VERSION, PolicyFieldError, PolicyRecord,
    ReplayError, ReplayErrorKind, decode_records, encode_records,
};
pub use snapshot::{CallerPolicy, PolicySnapshot};

#[cfg(test)]
mod policy_tests;

/// Longest caller name, in bytes.
pub const MAX_CALLER_ID_LEN: usize = 128;

const SYSTEM: &str = "_system";

/// The identity of a caller: 1..=128 bytes of `[A-Za-z0-9._@:-]`, not starting with
/// `_` (that prefix is reserved for the engine's own internal caller).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallerId(String);

/// Why a caller name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallerIdError {
    /// Empty name.
    #[error("a caller id cannot be empty")]
    Empty,
    /// Longer than [`MAX_CALLER_ID_LEN`].
    #[error("a caller id is at most {MAX_CALLER_ID_LEN} bytes")]
    TooLong,
    /// A character outside `[A-Za-z0-9._@:-]`.
    #[error("a caller id may only contain A-Z a-z 0-9 . _ @ : -")]
    InvalidCharacter,
    /// Starts with `_`, the prefix reserved for the internal system caller.
    #[error("caller ids starting with `_` are reserved for the engine")]
    Reserved,
}

impl CallerId {
    /// Validates a caller name supplied by a user or host application.
    pub fn new(name: &str) -> Result<CallerId, CallerIdError> {
        if name.is_empty() {
            return Err(CallerIdError::Empty);
        }
        if name.len() > MAX_CALLER_ID_LEN {
            return Err(CallerIdError::TooLong);
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@:-".contains(&b))
        {
            return Err(CallerIdError::InvalidCharacter);
        }
        if name.starts_with('_') {
            return Err(CallerIdError::Reserved);
        }
        Ok(CallerId(name.to_owned()))
    }

    /// The engine's internal caller (audit writes, maintenance). Only code can make
    /// it; [`CallerId::new`] refuses its name.
    pub fn system() -> CallerId {
        CallerId(SYSTEM.to_owned())
    }

    /// Decodes a persisted caller name: a valid user name or the system caller's
    /// own name (records may name the system caller as a granter).
    pub(crate) fn from_stored(name: &str) -> Result<CallerId, CallerIdError> {
        if name == SYSTEM {
            Ok(CallerId::system())
        } else {
            CallerId::new(name)
        }
    }

    /// Whether this is the internal system caller.
    pub fn is_system(&self) -> bool {
        self.0 == SYSTEM
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert_eq!(CallerId::new(""), Err(CallerIdError::Empty));
        assert_eq!(
            CallerId::new(&"a".repeat(MAX_CALLER_ID_LEN + 1)),
            Err(CallerIdError::TooLong)
        );
        assert!(CallerId::new(&"a".repeat(MAX_CALLER_ID_LEN)).is_ok());
        assert_eq!(
            CallerId::new("bob smith"),
            Err(CallerIdError::InvalidCharacter)
        );
        assert_eq!(CallerId::new("_admin"), Err(CallerIdError::Reserved));
        assert_eq!(
            CallerId::new("svc:payments-1").unwrap().to_string(),
            "svc:payments-1"
        );
    }

    #[test]
    fn the_system_caller_cannot_be_named() {
        assert!(CallerId::system().is_system());
        assert_eq!(CallerId::new(SYSTEM), Err(CallerIdError::Reserved));
        assert!(!CallerId::new("system").unwrap().is_system());
    }
}
