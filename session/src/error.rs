//! [`CapsuleError`] (issue and verify) and [`KeyringError`] (managing key epochs). No
//! variant carries key material, channel-binding bytes or ciphertext.

use std::time::Duration;

use aedb_types::KeyEpoch;

use crate::profile::{ServerEnvHash, ServerProfileId};
use aedb_authz::CallerIdError;

/// Why a capsule could not be issued or was refused. Variants are listed in the order
/// [`crate::SessionAuthority::verify`] checks them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapsuleError {
    /// Not a capsule: wrong length or magic, or (after the tag verified) a malformed
    /// plaintext. Nothing to retry; the presenter sent garbage or a truncated capsule.
    #[error("malformed session capsule: {reason}")]
    Malformed {
        /// What was wrong (never contains capsule bytes).
        reason: &'static str,
    },
    /// A capsule format version this build does not read. Upgrade the verifier or have
    /// the client obtain a capsule from a server of the same version.
    #[error("session capsule version {found} is not supported (this build reads {supported})")]
    VersionMismatch {
        /// The version byte found.
        found: u8,
        /// [`crate::CAPSULE_VERSION`].
        supported: u8,
    },
    /// The capsule was issued by another server profile. Capsules are verified by the
    /// server that issued them; the client must obtain one from this server.
    #[error("session capsule was issued by server profile {found}, not this server ({expected})")]
    HeaderMismatch {
        /// Profile named in the capsule.
        found: ServerProfileId,
        /// This authority's profile.
        expected: ServerProfileId,
    },
    /// The capsule was issued under another server environment (a different binary,
    /// host, TLS certificate or deployment); the client must obtain a fresh capsule.
    #[error(
        "session capsule was issued under server environment {found}, not this one ({expected})"
    )]
    EnvHashMismatch {
        /// Environment hash named in the capsule.
        found: ServerEnvHash,
        /// This authority's environment hash.
        expected: ServerEnvHash,
    },
    /// The server profile has been revoked: no capsule of it is issued or accepted.
    /// Provision a new profile id.
    #[error("server profile {profile} is revoked")]
    RevokedProfile {
        /// The revoked profile.
        profile: ServerProfileId,
    },
    /// The server environment hash has been revoked: no capsule of it is issued or
    /// accepted. Redeploy (new environment) and issue new capsules.
    #[error("server environment {env_hash} is revoked")]
    RevokedEnvHash {
        /// The revoked hash.
        env_hash: ServerEnvHash,
    },
    /// Every session of this caller issued up to a revocation was revoked
    /// (`revoke_caller_sessions`): the caller must obtain a new capsule.
    #[error("the sessions of caller {caller} issued before a revocation are revoked")]
    RevokedCaller {
        /// The caller.
        caller: aedb_authz::CallerId,
    },
    /// The capsule is bound to a different channel (or to one when none was presented,
    /// or the reverse). Capsules only work on the connection they were issued for.
    #[error("session capsule is bound to a different channel")]
    ChannelBindingMismatch,
    /// No session key is loaded for the capsule's key epoch (never seen here). Load the
    /// epoch's subkey with `add_epoch_key`, or the capsule is forged.
    #[error("no session key for {epoch}")]
    UnknownEpoch {
        /// The capsule's epoch.
        epoch: KeyEpoch,
    },
    /// The capsule's key epoch has been retired: the client must obtain a new capsule.
    #[error("{epoch} is retired; its capsules are no longer accepted")]
    RetiredEpoch {
        /// The capsule's epoch.
        epoch: KeyEpoch,
    },
    /// Authentication failed: the capsule was altered, forged, or sealed under another key.
    /// Repeated failures are a signal for incident response (the IHP runbook).
    #[error("session capsule failed authentication (tag mismatch)")]
    TagMismatch,
    /// The authenticated capsule names no valid caller (never the reserved system caller).
    #[error("session capsule names an invalid caller: {0}")]
    InvalidCaller(#[source] CallerIdError),
    /// Issued more than `max_timestamp_drift` before the verifier's clock (or before the
    /// newest clock reading the replay cache has seen, if the clock went backwards). The
    /// client must obtain a fresh capsule; if this is frequent, check clock sync.
    #[error("session capsule is stale: issued {age:?} ago, limit {max_drift:?}")]
    Stale {
        /// How long before the verifier's clock it was issued.
        age: Duration,
        /// The configured drift.
        max_drift: Duration,
    },
    /// Issued more than `max_timestamp_drift` after the verifier's clock: fix clock sync
    /// between issuer and verifier.
    #[error("session capsule is from the future: issued {ahead:?} ahead, limit {max_drift:?}")]
    FromFuture {
        /// How far after the verifier's clock it was issued.
        ahead: Duration,
        /// The configured drift.
        max_drift: Duration,
    },
    /// This capsule was already accepted once. Each capsule is single-use.
    #[error("session capsule was already used (replay)")]
    Replayed,
    /// The replay cache is full of capsules that could still verify; refusing (fail
    /// closed). Raise `replay_cache_capacity` or lower `max_timestamp_drift`.
    #[error("replay cache is full ({capacity} live capsules); refusing")]
    ReplayCacheFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// Capsules cannot be issued for the engine's internal system caller.
    #[error("no session capsule can be issued for the system caller")]
    SystemCaller,
    /// No current key epoch is set: add a session subkey first.
    #[error("no current session key epoch is set")]
    NoCurrentEpoch,
    /// The OS random number generator failed to produce a nonce.
    #[error("OS randomness unavailable: {reason}")]
    Randomness {
        /// The OS error, as text.
        reason: String,
    },
}

/// Why a key-epoch operation on a [`crate::SessionAuthority`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The epoch already has a key (replacing it would invalidate live capsules silently).
    #[error("{0} already has a session key")]
    DuplicateEpoch(KeyEpoch),
    /// The epoch was retired and cannot come back.
    #[error("{0} is retired")]
    Retired(KeyEpoch),
    /// No key is loaded for the epoch.
    #[error("no session key for {0}")]
    UnknownEpoch(KeyEpoch),
    /// The current epoch cannot be retired; make another epoch current first.
    #[error("{0} is the current epoch; set another current epoch before retiring it")]
    RetiringCurrent(KeyEpoch),
}
