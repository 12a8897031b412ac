//! aedb key management.
//!
//! This crate owns:
//! - [`SecretKey`] and [`SecretString`], the only types through which aedb holds raw key
//!   bytes and PINs: zeroized on drop, printed as `<redacted>`, not `Clone`, readable only
//!   inside a closure ([`SecretKey::with_bytes`]);
//! - [`KeyPurpose`] and [`DerivationRequest`]: what a subkey is bound to (purpose, key epoch,
//!   database, optional context) and the exact, length-prefixed, domain-separated derivation
//!   info ([`mod@derive`] documents the bytes);
//! - the one subkey construction every provider shares,
//!   `subkey = HKDF-SHA256-Expand(K_master, info, 32) = HMAC-SHA256(K_master, info || 0x01)`;
//! - [`XChaCha20Poly1305`], the AEAD every sealed format uses, holding its key as a
//!   [`SecretKey`] (the formats themselves — nonces, associated data, layouts — are the
//!   WAL's, checkpoint's and authz crates');
//! - [`KeyProvider`], the only owner of the master key `K_master`, with
//!   [`InMemoryKeyProvider`] (tests, simple deployments) and [`HsmKeyProvider`] (PKCS#11: the
//!   master stays in the token and subkeys are computed there), plus [`HsmProvisioner`] to
//!   generate, import, list and retire master versions on a token.
//!
//! It does not own key epochs' lifecycle (which epoch is current, when an old one can be
//! dropped — that is the manifest's, in `aedb-checkpoint`) or file formats (the WAL,
//! checkpoint and authz crates use the subkeys and the AEAD), or audit records of rotations. It sits at the
//! bottom of the tree: it depends only on `aedb-types`.
//!
//! ```
//! use aedb_keys::{DerivationRequest, InMemoryKeyProvider, KeyProvider, KeyPurpose};
//! use aedb_types::{DatabaseId, KeyEpoch};
//!
//! let provider = InMemoryKeyProvider::new("local", [7u8; 32])?;
//! let master = provider.current_master()?; // local:v1 — a name, never the key
//! let database = DatabaseId::from_bytes([1; 16]);
//! let wal = provider.derive(&master, &DerivationRequest::new(KeyPurpose::Wal, KeyEpoch::FIRST, database))?;
//! let manifest =
//!     provider.derive(&master, &DerivationRequest::new(KeyPurpose::Manifest, KeyEpoch::FIRST, database))?;
//! assert_eq!(format!("{wal:?}"), "SecretKey(<redacted>)");
//! // One key never serves two purposes.
//! assert!(!wal.with_bytes(|w| manifest.with_bytes(|m| w == m)));
//! # Ok::<(), aedb_keys::KeyError>(())
//! ```
#![forbid(unsafe_code)]

pub mod aead;
pub mod derive;
mod epoch_key;
mod error;
pub mod hsm;
mod master;
mod memory;
mod provider;
mod secret;

pub use aead::{AEAD_TAG_LEN, AeadError, XChaCha20Poly1305, XNONCE_LEN};
pub use derive::{DerivationRequest, KeyPurpose, MAX_CONTEXT_LEN, expand_subkey};
pub use epoch_key::EpochKey;
pub use error::{KeyError, LoginFailure};
pub use hsm::{
    HsmConfig, HsmKeyProvider, HsmProvisioner, MasterKeyAttributes, MasterKeyInfo, TokenSelector,
};
pub use master::MasterKeyId;
pub use memory::InMemoryKeyProvider;
pub use provider::KeyProvider;
pub use secret::{KEY_LEN, SecretKey, SecretString};
