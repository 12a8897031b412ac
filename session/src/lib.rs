//! aedb caller session capsules: the IHP capsule protocol of the IHP operations runbook.
//!
//! **IHP** is the name the operations runbook (`IHP Operations Runbook`) and the design
//! brief give this protocol; no project document spells the acronym out. This crate reads
//! it as the caller *identity handshake protocol* — a descriptive gloss of what it does
//! (a caller proves, once per session, which identity the server granted it), not an
//! official expansion.
//!
//! This crate owns the capsules: sealed, versioned, single-use tokens that bind a
//! [`CallerId`](aedb_authz::CallerId) to the server that issued them, their wire format
//! ([`mod@capsule`], pinned by [`golden_session_capsule`]), the server identity they bind
//! ([`ServerProfileId`], [`ServerEnvironmentProfile`], [`ServerEnvHash`]), their
//! configuration ([`IhpConfig`]), replay cache and metrics (`ihp_*`, exported with the
//! `observability` feature).
//!
//! It does **not** own: caller names, permissions, grants or policy (`aedb-authz`), key
//! providers or derivation (`aedb-keys`: callers hand in the derived session subkey per
//! key epoch), or persisting revocations and the environment hash (the engine).
//!
//! A [`SessionAuthority`] issues a [`SessionCapsule`] for an authenticated caller and later
//! verifies it when the caller presents it. A capsule binds:
//!
//! - the **caller id** (encrypted and padded: the length reveals nothing);
//! - the **issue time** (Unix microseconds), checked against `max_timestamp_drift` of the
//!   [`IhpConfig`] (default 5 minutes) in both directions;
//! - the issuing server's [`ServerProfileId`] and [`ServerEnvHash`] (the checked hash of its
//!   [`ServerEnvironmentProfile`]), each revocable;
//! - optionally a [`ChannelBinding`] (TLS exporter material), which both enters the key and
//!   is named by a public [`ChannelId`] in the header;
//! - the **key epoch** of the session subkey (`KeyPurpose::Session`) it was sealed under,
//!   so capsules survive a key rotation until their epoch is retired.
//!
//! Sealing is XChaCha20-Poly1305 under
//! `capsule_key = HMAC-SHA256(session_subkey, "aedb/ihp/v1/capsule-key" || u32_le(len) || binding)`
//! with the whole plaintext header as associated data ([`mod@capsule`] and `docs/FORMAT.md`,
//! "Session capsule", give every byte). Verification checks, in order and each with its
//! own [`CapsuleError`]: structure, version, profile, environment hash, revocations,
//! channel, epoch, tag, caller, drift, replay. Outcomes are counted in [`IhpMetrics`]
//! (and, with the `observability` feature, exported as the runbook's `ihp_*` metrics).
//!
//! [`golden_session_capsule`] pins the wire format byte for byte.
//!
//! ```
//! use aedb_authz::CallerId;
//! use aedb_session::*;
//! use aedb_keys::SecretKey;
//! use aedb_types::KeyEpoch;
//!
//! let config = IhpConfig::builder().max_timestamp_drift_secs(120).build()?;
//! let environment = ServerEnvironmentProfile {
//!     hostname: "db-1".into(),
//!     os: "linux".into(),
//!     os_version: "6.8.0".into(),
//!     binary_sha256: [0x42; 32],
//!     tls_certificate_fingerprint: vec![0x17; 32],
//!     deployment: "prod".into(),
//!     region: "eu-1".into(),
//! };
//! let env_hash = compute_server_env_hash_checked(&environment, &config)?;
//! let authority = SessionAuthority::new(config, ServerProfileId::generate()?, env_hash);
//! authority.add_epoch_key(KeyEpoch::FIRST, SecretKey::new([9; 32]))?;
//!
//! let tls = ChannelBinding::new(vec![0x33; 32])?;
//! let now = UnixMicros::now();
//! let capsule = authority.issue(&CallerId::new("bob")?, now, Some(&tls))?;
//!
//! // Presented on another connection: refused before decryption.
//! let other = ChannelBinding::new(vec![0x34; 32])?;
//! assert_eq!(
//!     authority.verify(capsule.as_bytes(), now, Some(&other)),
//!     Err(CapsuleError::ChannelBindingMismatch)
//! );
//! let verified = authority.verify(capsule.as_bytes(), now, Some(&tls))?;
//! assert_eq!(verified.caller().as_str(), "bob");
//! assert_eq!(authority.metrics().header_mismatch, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod authority;
pub mod capsule;
pub mod channel;
mod config;
mod error;
mod golden;
mod hexstr;
pub mod metrics;
pub mod profile;
mod replay;
mod time;

#[cfg(test)]
mod tests;

pub use authority::{Revocations, SessionAuthority, VerifiedCaller};
pub use capsule::{
    CAPSULE_HEADER_LEN, CAPSULE_LEN, CAPSULE_MAGIC, CAPSULE_NONCE_LEN, CAPSULE_PLAINTEXT_LEN,
    CAPSULE_TAG_LEN, CAPSULE_VERSION, CapsuleHeader, SessionCapsule, seal_with_nonce,
};
pub use channel::{
    ChannelBinding, ChannelBindingError, ChannelId, MAX_CHANNEL_BINDING_LEN, derive_capsule_key,
};
pub use config::{
    DEFAULT_MAX_FINGERPRINT_LEN, DEFAULT_MAX_TIMESTAMP_DRIFT, DEFAULT_REPLAY_CACHE_CAPACITY,
    IhpConfig, IhpConfigBuilder, IhpConfigError, MAX_FINGERPRINT_LEN_CAP,
    MAX_REPLAY_CACHE_CAPACITY, MAX_TIMESTAMP_DRIFT_CAP,
};
pub use error::{CapsuleError, KeyringError};
pub use golden::{
    GOLDEN_SESSION_CAPSULE_V1_HEX, GoldenCapsuleMismatch, GoldenSessionCapsule,
    golden_session_capsule,
};
pub use hexstr::ParseHexError;
pub use metrics::{IhpMetrics, IhpMetricsSnapshot};
pub use profile::{
    ProfileError, ProfileField, ServerEnvHash, ServerEnvironmentProfile, ServerProfileId,
    compute_server_env_hash_checked,
};
pub use time::{TimeOutOfRange, UnixMicros};
