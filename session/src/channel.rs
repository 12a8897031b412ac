//! Channel binding and capsule-key derivation.
//!
//! A host may bind capsules to the transport they were issued on by passing a
//! [`ChannelBinding`]: bytes both ends of one connection know and nobody else does, e.g.
//! TLS exporter material (RFC 9266 `tls-exporter`). The binding enters the capsule key, so
//! a capsule opens only on its own channel, and a public [`ChannelId`] derived from it is
//! written in the header, so a capsule presented on the wrong channel is refused with
//! [`crate::CapsuleError::ChannelBindingMismatch`] before any decryption.
//!
//! # Derivations (version 1)
//!
//! ```text
//! capsule_key = HMAC-SHA256(key = session subkey (KeyPurpose::Session, epoch),
//!                           msg = b"aedb/ihp/v1/capsule-key" || u32_le(len(b)) || b)
//! channel_id  = SHA-256(b"aedb/ihp/v1/channel" || b)[0..16]     when bound
//!             = 16 zero bytes                                   when unbound
//! ```
//!
//! with `b` the binding bytes, or empty when there is no binding (a binding itself is never
//! empty, so "unbound" and "bound" never share a key).

use std::fmt;

use aedb_keys::{KEY_LEN, SecretKey};
use aedb_types::KeyEpoch;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::hexstr::write_hex;

/// Longest accepted channel binding, in bytes (TLS exporters are 32–64).
pub const MAX_CHANNEL_BINDING_LEN: usize = 1024;
/// HMAC message prefix of the capsule-key derivation.
pub const CAPSULE_KEY_LABEL: &[u8] = b"aedb/ihp/v1/capsule-key";
/// SHA-256 prefix of the channel id.
pub const CHANNEL_ID_LABEL: &[u8] = b"aedb/ihp/v1/channel";

/// Host-provided channel-binding bytes. Sensitive: zeroized on drop, printed as
/// `ChannelBinding(<redacted>)`, not `Clone` (see [`ChannelBinding::duplicate`]).
///
/// ```
/// use aedb_session::ChannelBinding;
/// let binding = ChannelBinding::new(vec![0x5a; 32])?;
/// assert_eq!(format!("{binding:?}"), "ChannelBinding(<redacted>)");
/// assert_eq!(binding.len(), 32);
/// # Ok::<(), aedb_session::ChannelBindingError>(())
/// ```
pub struct ChannelBinding {
    bytes: Vec<u8>,
}

/// Why bytes were refused as a channel binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelBindingError {
    /// No bytes: pass `None` for an unbound capsule instead.
    #[error("a channel binding cannot be empty (pass no binding instead)")]
    Empty,
    /// Longer than [`MAX_CHANNEL_BINDING_LEN`].
    #[error("a channel binding is at most {MAX_CHANNEL_BINDING_LEN} bytes (got {len})")]
    TooLong {
        /// Length given.
        len: usize,
    },
}

impl ChannelBinding {
    /// Takes ownership of `bytes` (1 ..= [`MAX_CHANNEL_BINDING_LEN`]). On error the bytes
    /// are zeroized before they are dropped.
    pub fn new(mut bytes: Vec<u8>) -> Result<ChannelBinding, ChannelBindingError> {
        let problem = if bytes.is_empty() {
            Some(ChannelBindingError::Empty)
        } else if bytes.len() > MAX_CHANNEL_BINDING_LEN {
            Some(ChannelBindingError::TooLong { len: bytes.len() })
        } else {
            None
        };
        match problem {
            Some(problem) => {
                bytes.zeroize();
                Err(problem)
            }
            None => Ok(ChannelBinding { bytes }),
        }
    }

    /// Copies `bytes` (the caller's copy remains the caller's to zeroize).
    pub fn from_slice(bytes: &[u8]) -> Result<ChannelBinding, ChannelBindingError> {
        if bytes.len() > MAX_CHANNEL_BINDING_LEN {
            return Err(ChannelBindingError::TooLong { len: bytes.len() });
        }
        ChannelBinding::new(bytes.to_vec())
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always `false` (a binding is never empty); present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The public channel id of this binding (see the module docs).
    pub fn channel_id(&self) -> ChannelId {
        let digest = Sha256::new()
            .chain_update(CHANNEL_ID_LABEL)
            .chain_update(&self.bytes)
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        ChannelId(id)
    }

    /// An independent copy (explicit, so copies of secrets are visible in review).
    pub fn duplicate(&self) -> ChannelBinding {
        ChannelBinding {
            bytes: self.bytes.clone(),
        }
    }

    /// Runs `f` with the binding bytes.
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(&self.bytes)
    }
}

impl Zeroize for ChannelBinding {
    fn zeroize(&mut self) {
        self.bytes.zeroize();
    }
}

impl Drop for ChannelBinding {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for ChannelBinding {}

impl fmt::Debug for ChannelBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChannelBinding(<redacted>)")
    }
}

/// The public, non-secret 16-byte identifier of a channel binding carried in capsule
/// headers; all zeros ([`ChannelId::UNBOUND`]) for capsules without a binding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId([u8; 16]);

impl ChannelId {
    /// The id of capsules issued without a channel binding.
    pub const UNBOUND: ChannelId = ChannelId([0; 16]);

    /// The id for an optional binding.
    pub fn of(binding: Option<&ChannelBinding>) -> ChannelId {
        binding.map_or(ChannelId::UNBOUND, ChannelBinding::channel_id)
    }

    /// Wraps stored bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> ChannelId {
        ChannelId(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for ChannelId {
    /// 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelId({self})")
    }
}

/// Derives the capsule key of `epoch` for an optional channel binding from the session
/// subkey (see the module docs). The key is written straight into the returned
/// [`SecretKey`]; the subkey is read only inside [`SecretKey::with_bytes`]. `epoch` is used
/// for the tracing span only: the subkey itself is already specific to its epoch.
pub fn derive_capsule_key(
    session_subkey: &SecretKey,
    epoch: KeyEpoch,
    binding: Option<&ChannelBinding>,
) -> SecretKey {
    #[cfg(feature = "observability")]
    let _span = tracing::debug_span!("ihp.derive_capsule_key", epoch = epoch.get()).entered();
    #[cfg(not(feature = "observability"))]
    let _ = epoch;
    let binding: &[u8] = binding.map_or(&[], |b| &b.bytes);
    let mut mac = session_subkey.with_bytes(|key| {
        // HMAC accepts keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length")
    });
    mac.update(CAPSULE_KEY_LABEL);
    // Fits: bindings are at most MAX_CHANNEL_BINDING_LEN bytes.
    mac.update(&(binding.len() as u32).to_le_bytes());
    mac.update(binding);
    let result: Result<SecretKey, std::convert::Infallible> =
        SecretKey::try_from_fn(|out: &mut [u8; KEY_LEN]| {
            let mut tag = mac.finalize().into_bytes();
            out.copy_from_slice(&tag);
            tag.as_mut_slice().zeroize();
            Ok(())
        });
    match result {
        Ok(key) => key,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_validated_and_redacted() {
        assert_eq!(
            ChannelBinding::new(vec![]).err(),
            Some(ChannelBindingError::Empty)
        );
        assert_eq!(
            ChannelBinding::from_slice(&[1; MAX_CHANNEL_BINDING_LEN + 1]).err(),
            Some(ChannelBindingError::TooLong {
                len: MAX_CHANNEL_BINDING_LEN + 1
            })
        );
        let b = ChannelBinding::from_slice(&[0xAB; MAX_CHANNEL_BINDING_LEN]).unwrap();
        let shown = format!("{b:?} {b:#?}");
        assert!(!shown.to_lowercase().contains("ab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(!b.is_empty());
        let mut d = b.duplicate();
        d.zeroize();
        assert!(d.with_bytes(<[u8]>::is_empty));
        assert_eq!(b.len(), MAX_CHANNEL_BINDING_LEN);
    }

    #[test]
    fn derivations_match_the_documented_construction() {
        let subkey = SecretKey::new([9; 32]);
        let binding = ChannelBinding::new(b"exporter".to_vec()).unwrap();
        let expected = |b: &[u8]| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[9; 32]).unwrap();
            mac.update(b"aedb/ihp/v1/capsule-key");
            mac.update(&(b.len() as u32).to_le_bytes());
            mac.update(b);
            <[u8; 32]>::from(mac.finalize().into_bytes())
        };
        let bound = derive_capsule_key(&subkey, KeyEpoch::FIRST, Some(&binding));
        let unbound = derive_capsule_key(&subkey, KeyEpoch::FIRST, None);
        assert!(bound.with_bytes(|k| *k == expected(b"exporter")));
        assert!(unbound.with_bytes(|k| *k == expected(b"")));
        assert!(!bound.with_bytes(|a| unbound.with_bytes(|b| a == b)));

        let id = binding.channel_id();
        let digest = Sha256::digest(b"aedb/ihp/v1/channelexporter");
        assert_eq!(id.as_bytes()[..], digest[..16]);
        assert_eq!(ChannelId::of(None), ChannelId::UNBOUND);
        assert_eq!(ChannelId::of(Some(&binding)), id);
        assert_eq!(ChannelId::UNBOUND.to_string(), "0".repeat(32));
    }
}
