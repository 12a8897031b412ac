//! [`SessionAuthority`]: issues and verifies the session capsules of one server.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aedb_keys::SecretKey;
use aedb_types::KeyEpoch;
use chacha20poly1305::XChaCha20Poly1305;
use parking_lot::{Mutex, RwLock};

use crate::capsule::{self, CAPSULE_NONCE_LEN, CapsuleHeader, SessionCapsule};
use crate::channel::{ChannelBinding, ChannelId, derive_capsule_key};
use crate::config::IhpConfig;
use crate::error::{CapsuleError, KeyringError};
use crate::metrics::{IhpMetrics, IhpMetricsSnapshot};
use crate::profile::{ServerEnvHash, ServerProfileId};
use crate::replay::{ReplayCache, ReplayRefusal};
use crate::time::UnixMicros;
use aedb_authz::CallerId;

/// The issuer and verifier of one server's caller session capsules.
///
/// It holds the server's [`ServerProfileId`] and [`ServerEnvHash`], the session subkeys
/// (`KeyPurpose::Session`) by [`KeyEpoch`] — supplied by the engine's key provider — the
/// revocation lists, the replay cache and [`IhpMetrics`]. It is `Send + Sync` and every
/// method takes `&self`: share it in an `Arc`.
///
/// Key rotation: [`add_epoch_key`](Self::add_epoch_key) the new epoch's subkey,
/// [`set_current_epoch`](Self::set_current_epoch) to issue under it; capsules of older
/// loaded epochs keep verifying until [`retire_epoch`](Self::retire_epoch).
///
/// ```
/// use aedb_authz::CallerId;
/// use aedb_session::{
///     CapsuleError, IhpConfig, ServerEnvHash, ServerProfileId, SessionAuthority, UnixMicros,
/// };
/// use aedb_keys::SecretKey;
/// use aedb_types::KeyEpoch;
///
/// let authority = SessionAuthority::new(
///     IhpConfig::production(),
///     ServerProfileId::from_bytes([1; 16]),
///     ServerEnvHash::from_bytes([2; 32]),
/// );
/// // In the engine the subkey comes from `KeyProvider::derive(.. KeyPurpose::Session ..)`.
/// authority.add_epoch_key(KeyEpoch::FIRST, SecretKey::new([7; 32]))?;
///
/// let now = UnixMicros::from_secs(1_700_000_000);
/// let alice = CallerId::new("alice")?;
/// let capsule = authority.issue(&alice, now, None)?;
/// let verified = authority.verify(capsule.as_bytes(), now, None)?;
/// assert_eq!(verified.caller(), &alice);
/// // Single use.
/// assert_eq!(authority.verify(capsule.as_bytes(), now, None), Err(CapsuleError::Replayed));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SessionAuthority {
    config: IhpConfig,
    profile_id: ServerProfileId,
    env_hash: ServerEnvHash,
    keyring: RwLock<Keyring>,
    revocations: RwLock<RevocationSets>,
    /// Whether this authority's own profile / environment hash is revoked (the only
    /// revocations that can affect a capsule it accepts), read without a lock.
    own_profile_revoked: AtomicBool,
    own_env_hash_revoked: AtomicBool,
    replay: Mutex<ReplayCache>,
    metrics: IhpMetrics,
}

/// One epoch's session subkey and the cipher for its unbound capsules (derived once).
struct EpochKey {
    subkey: SecretKey,
    unbound: XChaCha20Poly1305,
}

impl EpochKey {
    fn new(epoch: KeyEpoch, subkey: SecretKey) -> EpochKey {
        let unbound = capsule::aead_for(&derive_capsule_key(&subkey, epoch, None));
        EpochKey { subkey, unbound }
    }

    /// Runs `f` with the cipher for `channel` (derived on the spot for bound channels).
    fn with_aead<R>(
        &self,
        epoch: KeyEpoch,
        channel: Option<&ChannelBinding>,
        f: impl FnOnce(&XChaCha20Poly1305) -> R,
    ) -> R {
        match channel {
            None => f(&self.unbound),
            Some(binding) => f(&capsule::aead_for(&derive_capsule_key(
                &self.subkey,
                epoch,
                Some(binding),
            ))),
        }
    }
}

#[derive(Default)]
struct Keyring {
    current: Option<KeyEpoch>,
    keys: BTreeMap<KeyEpoch, EpochKey>,
    retired: BTreeSet<KeyEpoch>,
}

#[derive(Default)]
struct RevocationSets {
    profiles: BTreeSet<ServerProfileId>,
    env_hashes: BTreeSet<ServerEnvHash>,
    /// Per caller, the newest revocation: capsules issued at or before it are refused.
    callers: BTreeMap<CallerId, UnixMicros>,
}

/// Every revocation an authority holds, sorted (for persisting; reload them on open
/// through [`SessionAuthority::revoke_profile`] and [`SessionAuthority::revoke_env_hash`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocations {
    /// Revoked server profiles.
    pub profiles: Vec<ServerProfileId>,
    /// Revoked server environment hashes.
    pub env_hashes: Vec<ServerEnvHash>,
}

/// A capsule that passed every check of [`SessionAuthority::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCaller {
    caller: CallerId,
    issued_at: UnixMicros,
    epoch: KeyEpoch,
    channel_bound: bool,
}

impl VerifiedCaller {
    /// The authenticated caller (never the system caller).
    pub fn caller(&self) -> &CallerId {
        &self.caller
    }

    /// The authenticated caller, owned.
    pub fn into_caller(self) -> CallerId {
        self.caller
    }

    /// When the capsule was issued (issuer's clock).
    pub fn issued_at(&self) -> UnixMicros {
        self.issued_at
    }

    /// The key epoch the capsule was sealed under.
    pub fn epoch(&self) -> KeyEpoch {
        self.epoch
    }

    /// Whether the capsule was bound to (and presented on) a channel.
    pub fn channel_bound(&self) -> bool {
        self.channel_bound
    }
}

impl SessionAuthority {
    /// An authority for the server `profile_id` running in the environment `env_hash`
    /// (from [`crate::compute_server_env_hash_checked`]), with no keys yet.
    pub fn new(
        config: IhpConfig,
        profile_id: ServerProfileId,
        env_hash: ServerEnvHash,
    ) -> SessionAuthority {
        let replay = ReplayCache::new(config.replay_cache_capacity());
        SessionAuthority {
            config,
            profile_id,
            env_hash,
            keyring: RwLock::new(Keyring::default()),
            revocations: RwLock::new(RevocationSets::default()),
            own_profile_revoked: AtomicBool::new(false),
            own_env_hash_revoked: AtomicBool::new(false),
            replay: Mutex::new(replay),
            metrics: IhpMetrics::default(),
        }
    }

    /// Loads the session subkey (`KeyPurpose::Session`) of `epoch`. The first key loaded
    /// becomes the current epoch. Refuses an epoch that already has a key or was retired.
    pub fn add_epoch_key(
        &self,
        epoch: KeyEpoch,
        session_subkey: SecretKey,
    ) -> Result<(), KeyringError> {
        // Derive outside the lock.
        let key = EpochKey::new(epoch, session_subkey);
        let mut ring = self.keyring.write();
        if ring.retired.contains(&epoch) {
            return Err(KeyringError::Retired(epoch));
        }
        if ring.keys.contains_key(&epoch) {
            return Err(KeyringError::DuplicateEpoch(epoch));
        }
        ring.keys.insert(epoch, key);
        ring.current.get_or_insert(epoch);
        Ok(())
    }

    /// Issues new capsules under `epoch` from now on (its key must be loaded).
    pub fn set_current_epoch(&self, epoch: KeyEpoch) -> Result<(), KeyringError> {
        let mut ring = self.keyring.write();
        if ring.retired.contains(&epoch) {
            return Err(KeyringError::Retired(epoch));
        }
        if !ring.keys.contains_key(&epoch) {
            return Err(KeyringError::UnknownEpoch(epoch));
        }
        ring.current = Some(epoch);
        Ok(())
    }

    /// Retires `epoch`: its key is dropped (and zeroized) and its capsules are refused
    /// with [`CapsuleError::RetiredEpoch`] from now on. Retiring an epoch whose key was
    /// never loaded just records it (so its capsules get `RetiredEpoch`, not
    /// `UnknownEpoch`); retiring twice is a no-op. The current epoch cannot be retired.
    pub fn retire_epoch(&self, epoch: KeyEpoch) -> Result<(), KeyringError> {
        let mut ring = self.keyring.write();
        if ring.current == Some(epoch) {
            return Err(KeyringError::RetiringCurrent(epoch));
        }
        ring.keys.remove(&epoch);
        ring.retired.insert(epoch);
        Ok(())
    }

    /// The epoch new capsules are issued under.
    pub fn current_epoch(&self) -> Option<KeyEpoch> {
        self.keyring.read().current
    }

    /// Epochs whose keys are loaded (their capsules verify), ascending.
    pub fn epochs(&self) -> Vec<KeyEpoch> {
        self.keyring.read().keys.keys().copied().collect()
    }

    /// Retired epochs, ascending.
    pub fn retired_epochs(&self) -> Vec<KeyEpoch> {
        self.keyring.read().retired.iter().copied().collect()
    }

    /// Revokes a server profile. Revoking this authority's own profile stops it issuing
    /// and accepting capsules. Returns whether it was newly revoked.
    pub fn revoke_profile(&self, profile: ServerProfileId) -> bool {
        let new = self.revocations.write().profiles.insert(profile);
        if profile == self.profile_id {
            self.own_profile_revoked.store(true, Ordering::Release);
        }
        new
    }

    /// Revokes a server environment hash. Revoking this authority's own hash stops it
    /// issuing and accepting capsules. Returns whether it was newly revoked.
    pub fn revoke_env_hash(&self, env_hash: ServerEnvHash) -> bool {
        let new = self.revocations.write().env_hashes.insert(env_hash);
        if env_hash == self.env_hash {
            self.own_env_hash_revoked.store(true, Ordering::Release);
        }
        new
    }

    /// Revokes every session of `caller` issued at or before `issued_up_to` (the
    /// "rotate application credentials" step: the caller must obtain new capsules).
    /// Capsules issued later are accepted. Returns whether the cutoff moved forward.
    pub fn revoke_caller_sessions(&self, caller: &CallerId, issued_up_to: UnixMicros) -> bool {
        let mut sets = self.revocations.write();
        let cutoff = sets
            .callers
            .entry(caller.clone())
            .or_insert(UnixMicros::EPOCH);
        let moved = issued_up_to > *cutoff;
        if moved {
            *cutoff = issued_up_to;
        }
        moved
    }

    /// The caller-session revocations held: each caller with its cutoff, sorted.
    pub fn revoked_callers(&self) -> Vec<(CallerId, UnixMicros)> {
        let sets = self.revocations.read();
        sets.callers.iter().map(|(c, t)| (c.clone(), *t)).collect()
    }

    /// Every revocation held, sorted.
    pub fn revoked(&self) -> Revocations {
        let sets = self.revocations.read();
        Revocations {
            profiles: sets.profiles.iter().copied().collect(),
            env_hashes: sets.env_hashes.iter().copied().collect(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &IhpConfig {
        &self.config
    }

    /// This server's profile id.
    pub fn profile_id(&self) -> ServerProfileId {
        self.profile_id
    }

    /// This server's environment hash.
    pub fn env_hash(&self) -> ServerEnvHash {
        self.env_hash
    }

    /// A copy of the outcome counters.
    pub fn metrics(&self) -> IhpMetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Capsules currently remembered by the replay cache.
    pub fn replay_cache_len(&self) -> usize {
        self.replay.lock().len()
    }

    /// Issues a capsule for `caller` at `now`, bound to `channel` when given, under the
    /// current epoch with a fresh random nonce. Refuses the system caller, a revoked own
    /// profile or environment hash, and an authority with no key.
    pub fn issue(
        &self,
        caller: &CallerId,
        now: UnixMicros,
        channel: Option<&ChannelBinding>,
    ) -> Result<SessionCapsule, CapsuleError> {
        let issued = self.issue_inner(caller, now, channel);
        match issued {
            Ok(_) => self.metrics.issued(),
            Err(_) => self.metrics.issue_failed(),
        }
        issued
    }

    fn issue_inner(
        &self,
        caller: &CallerId,
        now: UnixMicros,
        channel: Option<&ChannelBinding>,
    ) -> Result<SessionCapsule, CapsuleError> {
        self.check_not_revoked()?;
        if caller.is_system() {
            return Err(CapsuleError::SystemCaller);
        }
        let ring = self.keyring.read();
        let epoch = ring.current.ok_or(CapsuleError::NoCurrentEpoch)?;
        let key = ring.keys.get(&epoch).ok_or(CapsuleError::NoCurrentEpoch)?;
        let mut nonce = [0u8; CAPSULE_NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|err| CapsuleError::Randomness {
            reason: err.to_string(),
        })?;
        let header = CapsuleHeader {
            epoch,
            profile_id: self.profile_id,
            env_hash: self.env_hash,
            channel_id: ChannelId::of(channel),
            issued_at: now,
            nonce,
        };
        key.with_aead(epoch, channel, |aead| capsule::seal(aead, &header, caller))
    }

    fn check_not_revoked(&self) -> Result<(), CapsuleError> {
        if self.own_profile_revoked.load(Ordering::Acquire) {
            return Err(CapsuleError::RevokedProfile {
                profile: self.profile_id,
            });
        }
        if self.own_env_hash_revoked.load(Ordering::Acquire) {
            return Err(CapsuleError::RevokedEnvHash {
                env_hash: self.env_hash,
            });
        }
        Ok(())
    }

    /// Verifies a presented capsule at `now` on `channel` (the binding of the connection
    /// it arrived on, if any). Checks, in order, each with its own error: length and
    /// magic, version, issuing profile, environment hash, revocations, channel, key epoch,
    /// AEAD tag, caller id, drift (stale / from the future), and the replay cache — a
    /// capsule is accepted once. Never panics on any input.
    pub fn verify(
        &self,
        capsule: &[u8],
        now: UnixMicros,
        channel: Option<&ChannelBinding>,
    ) -> Result<VerifiedCaller, CapsuleError> {
        let verified = self.verify_inner(capsule, now, channel);
        match &verified {
            Ok(_) => self.metrics.verified(),
            Err(err) => self.metrics.rejected(err),
        }
        verified
    }

    fn verify_inner(
        &self,
        bytes: &[u8],
        now: UnixMicros,
        channel: Option<&ChannelBinding>,
    ) -> Result<VerifiedCaller, CapsuleError> {
        let capsule = SessionCapsule::from_bytes(bytes)?;
        let header = *capsule.header();
        if header.profile_id != self.profile_id {
            return Err(CapsuleError::HeaderMismatch {
                found: header.profile_id,
                expected: self.profile_id,
            });
        }
        if header.env_hash != self.env_hash {
            return Err(CapsuleError::EnvHashMismatch {
                found: header.env_hash,
                expected: self.env_hash,
            });
        }
        self.check_not_revoked()?;
        if header.channel_id != ChannelId::of(channel) {
            return Err(CapsuleError::ChannelBindingMismatch);
        }
        let caller = {
            let ring = self.keyring.read();
            let Some(key) = ring.keys.get(&header.epoch) else {
                return Err(if ring.retired.contains(&header.epoch) {
                    CapsuleError::RetiredEpoch {
                        epoch: header.epoch,
                    }
                } else {
                    CapsuleError::UnknownEpoch {
                        epoch: header.epoch,
                    }
                });
            };
            key.with_aead(header.epoch, channel, |aead| capsule::open(aead, &capsule))?
        };

        if let Some(cutoff) = self.revocations.read().callers.get(&caller)
            && header.issued_at <= *cutoff
        {
            return Err(CapsuleError::RevokedCaller { caller });
        }

        let drift = self.config.max_timestamp_drift_micros();
        let skew = i128::from(header.issued_at.as_micros()) - i128::from(now.as_micros());
        self.metrics.skew(skew.unsigned_abs());
        if skew < -i128::from(drift) {
            return Err(CapsuleError::Stale {
                age: micros(skew.unsigned_abs()),
                max_drift: self.config.max_timestamp_drift(),
            });
        }
        if skew > i128::from(drift) {
            return Err(CapsuleError::FromFuture {
                ahead: micros(skew.unsigned_abs()),
                max_drift: self.config.max_timestamp_drift(),
            });
        }

        let expires_at = header.issued_at.as_micros().saturating_add(drift);
        let inserted = self
            .replay
            .lock()
            .insert(&header.nonce, expires_at, now.as_micros());
        match inserted {
            Ok(()) => {}
            Err(ReplayRefusal::Replayed) => return Err(CapsuleError::Replayed),
            Err(ReplayRefusal::Full) => {
                return Err(CapsuleError::ReplayCacheFull {
                    capacity: self.config.replay_cache_capacity(),
                });
            }
            Err(ReplayRefusal::Expired { watermark }) => {
                let age = i128::from(watermark) - i128::from(header.issued_at.as_micros());
                return Err(CapsuleError::Stale {
                    age: micros(age.unsigned_abs()),
                    max_drift: self.config.max_timestamp_drift(),
                });
            }
        }
        Ok(VerifiedCaller {
            caller,
            issued_at: header.issued_at,
            epoch: header.epoch,
            channel_bound: channel.is_some(),
        })
    }
}

fn micros(m: u128) -> Duration {
    Duration::from_micros(u64::try_from(m).unwrap_or(u64::MAX))
}

impl fmt::Debug for SessionAuthority {
    /// Ids, epochs and counts only: never key bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (current, epochs, retired) = {
            let ring = self.keyring.read();
            (
                ring.current,
                ring.keys.keys().copied().collect::<Vec<_>>(),
                ring.retired.iter().copied().collect::<Vec<_>>(),
            )
        };
        f.debug_struct("SessionAuthority")
            .field("profile_id", &self.profile_id)
            .field("env_hash", &self.env_hash)
            .field("config", &self.config)
            .field("current_epoch", &current)
            .field("epochs", &epochs)
            .field("retired_epochs", &retired)
            .field("revoked", &self.revoked())
            .finish_non_exhaustive()
    }
}
