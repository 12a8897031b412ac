//! The reserved `_system` project: where the engine keeps its own state (the audit tables,
//! the persisted policy, session revocations, the write freeze) beside user data, written
//! through the normal commit path.

use aedb_model::{Namespace, ProjectName, ScopeName};

/// The reserved project holding the system tables.
pub const SYSTEM_PROJECT: &str = "_system";
/// The scope of the audit tables inside [`SYSTEM_PROJECT`].
pub const AUDIT_SCOPE: &str = "audit";
/// The scope whose KV space holds the persisted policy and session revocations.
pub const AUTHZ_SCOPE: &str = "authz";

/// A system name, valid by construction.
pub(crate) fn reserved<T>(name: Result<T, aedb_model::NameError>) -> T {
    match name {
        Ok(name) => name,
        Err(e) => unreachable!("system names are valid: {e}"),
    }
}

/// `_system/audit`, the namespace of the audit tables.
pub fn audit_namespace() -> Namespace {
    Namespace::new(
        reserved(ProjectName::reserved(SYSTEM_PROJECT)),
        reserved(ScopeName::reserved(AUDIT_SCOPE)),
    )
}

/// `_system/authz`, whose KV space holds the persisted policy.
pub fn authz_namespace() -> Namespace {
    Namespace::new(
        reserved(ProjectName::reserved(SYSTEM_PROJECT)),
        reserved(ScopeName::reserved(AUTHZ_SCOPE)),
    )
}
