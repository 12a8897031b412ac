//! aedb key material.
//!
//! This crate owns [`SecretKey`], the only type through which aedb holds raw key bytes:
//! it zeroizes on drop, prints as `SecretKey(<redacted>)`, is not `Clone`, and exposes
//! its bytes only inside a [`SecretKey::with_bytes`] closure, so key bytes cannot leak
//! through `Debug`, logs, errors or accidental copies.
//!
//! It does not (yet) own key providers, derivation or key epochs; those arrive with the
//! sealed-state work and will live here too, below the WAL, checkpoint and authz crates.
//!
//! ```
//! use aedb_keys::SecretKey;
//! let key = SecretKey::new([7u8; 32]);
//! assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
//! let first = key.with_bytes(|bytes| bytes[0]);
//! assert_eq!(first, 7);
//! ```
#![forbid(unsafe_code)]

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of every aedb key, in bytes (256-bit keys).
pub const KEY_LEN: usize = 32;

/// A 256-bit secret key. Zeroized on drop; never printed; bytes only via closures.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
}

impl SecretKey {
    /// Takes ownership of `bytes` (the caller's copy is the caller's to zeroize;
    /// prefer passing an expression so no named copy remains).
    pub fn new(mut bytes: [u8; KEY_LEN]) -> SecretKey {
        let key = SecretKey { bytes };
        bytes.zeroize();
        key
    }

    /// Runs `f` with the key bytes. The only way to read them.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8; KEY_LEN]) -> R) -> R {
        f(&self.bytes)
    }

    /// Makes an independent copy (explicit, so copies of secrets are visible in code review).
    pub fn duplicate(&self) -> SecretKey {
        SecretKey { bytes: self.bytes }
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_bytes() {
        let key = SecretKey::new([0xAB; KEY_LEN]);
        let shown = format!("{key:?} {key:#?}");
        assert!(!shown.to_lowercase().contains("ab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }

    #[test]
    fn zeroize_clears_bytes() {
        let mut key = SecretKey::new([9; KEY_LEN]);
        key.zeroize();
        assert!(key.with_bytes(|b| b.iter().all(|&x| x == 0)));
    }

    #[test]
    fn duplicate_is_independent() {
        let a = SecretKey::new([1; KEY_LEN]);
        let mut b = a.duplicate();
        b.zeroize();
        assert!(a.with_bytes(|x| x[0] == 1));
    }
}
