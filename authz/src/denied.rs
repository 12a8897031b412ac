//! The generic denial ([`Denied`]) and its internal reason ([`DenyReason`]).

use std::fmt;

/// Why a request was denied. For the audit row only: never shown to the caller,
/// and it never says whether the target exists (the policy does not know).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The caller holds no grant and owns nothing.
    NoRights,
    /// The caller has rights, but none covers the request.
    NotCovered,
    /// The action is global (checkpoint, backup, key rotation, metrics, audit,
    /// sessions, creating projects) and the caller is not a `GlobalAdmin`.
    GlobalAdminRequired,
    /// The caller may not grant, revoke or transfer this: no admin authority, no
    /// ownership and no delegable grant covering it.
    NoAuthority,
}

impl DenyReason {
    /// A short, stable name for audit rows and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NoRights => "no_rights",
            DenyReason::NotCovered => "not_covered",
            DenyReason::GlobalAdminRequired => "global_admin_required",
            DenyReason::NoAuthority => "no_authority",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request was denied.
///
/// Both `Display` and `Debug` show only `permission denied`, so the error can be
/// returned to any caller as is: it never reveals whether the project, table or
/// key exists, nor which right was missing. The engine reads [`Denied::reason`]
/// and [`Denied::action_index`] to write the audit row.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Denied {
    reason: DenyReason,
    action_index: Option<usize>,
}

impl Denied {
    /// A denial for `reason` (for enforcement points outside this crate, such as
    /// session administration).
    pub fn new(reason: DenyReason) -> Denied {
        Denied {
            reason,
            action_index: None,
        }
    }

    pub(crate) fn at(mut self, index: usize) -> Denied {
        self.action_index = Some(index);
        self
    }

    /// Why, for the audit log. Do not show it to the caller.
    pub fn reason(&self) -> DenyReason {
        self.reason
    }

    /// For [`PolicySnapshot::check_all`](crate::PolicySnapshot::check_all): the
    /// position of the first denied action in the list.
    pub fn action_index(&self) -> Option<usize> {
        self.action_index
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("permission denied")
    }
}

impl fmt::Debug for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Denied(permission denied)")
    }
}

impl std::error::Error for Denied {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_text_is_generic() {
        for reason in [
            DenyReason::NoRights,
            DenyReason::NotCovered,
            DenyReason::GlobalAdminRequired,
            DenyReason::NoAuthority,
        ] {
            let denied = Denied::new(reason).at(3);
            assert_eq!(denied.to_string(), "permission denied");
            assert_eq!(format!("{denied:?}"), "Denied(permission denied)");
            assert_eq!(denied.reason(), reason);
            assert_eq!(denied.action_index(), Some(3));
        }
    }
}

/// Why a caller-facing operation of a secure instance was refused. Both variants are
/// generic: neither says whether the named project, table or key exists.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// An anonymous call on an instance that requires authenticated callers: use the
    /// operation's `*_as(caller, …)` form. Nothing was done.
    #[error("this instance requires an authenticated caller: use the *_as form of this call")]
    CallerRequired,
    /// The caller lacks the permission. Nothing was done; the denial is audited.
    #[error(transparent)]
    Denied(#[from] Denied),
}
