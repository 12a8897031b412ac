//! aedb authorization: who is calling.
//!
//! This crate will own the permission model, grants, owners and policy evaluation of
//! secure instances (the secure-callers work: `GlobalAdmin`, `ProjectAdmin`,
//! `ScopeAdmin`, table and KV-prefix rights, the Authz actor's policy snapshots). Today
//! it owns only the caller identity those rules are about: [`CallerId`], a validated
//! name, and the reserved internal system caller that users can never name or forge.
//!
//! It does not own storage, audit tables or session capsules.
//!
//! ```
//! use aedb_authz::{CallerId, CallerIdError};
//! let alice = CallerId::new("alice@ledger")?;
//! assert_eq!(alice.as_str(), "alice@ledger");
//! assert!(!alice.is_system());
//! assert_eq!(CallerId::new("_system"), Err(CallerIdError::Reserved));
//! assert!(CallerId::system().is_system());
//! # Ok::<(), CallerIdError>(())
//! ```
#![forbid(unsafe_code)]

use std::fmt;

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
