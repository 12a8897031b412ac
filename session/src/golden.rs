//! The pinned version-1 session capsule: fixed inputs, the bytes the current code seals
//! from them, and the committed fixture `session/golden/session_capsule_v1.hex` they must
//! equal. The engine adds it to `golden_capsules()`; the IHP runbook checks it after key
//! rotation to confirm wire compatibility.

use std::fmt::Write as _;

use aedb_keys::SecretKey;
use aedb_types::KeyEpoch;

use crate::authority::{SessionAuthority, VerifiedCaller};
use crate::capsule::{CAPSULE_NONCE_LEN, CapsuleHeader, seal_with_nonce};
use crate::channel::{ChannelBinding, ChannelId};
use crate::config::IhpConfig;
use crate::profile::{
    ServerEnvHash, ServerEnvironmentProfile, ServerProfileId, compute_server_env_hash_checked,
};
use crate::time::UnixMicros;
use aedb_authz::CallerId;

/// The committed hex of the version-1 fixture (one line, lowercase).
pub const GOLDEN_SESSION_CAPSULE_V1_HEX: &str = include_str!("../golden/session_capsule_v1.hex");

/// The fixture: every input of the golden capsule and the bytes sealed from them.
#[derive(Clone, Debug)]
pub struct GoldenSessionCapsule {
    /// A public, fixed stand-in for the session subkey. Test data, not a secret.
    pub session_subkey: [u8; 32],
    /// The key epoch (3: the fixture is sealed after two rotations).
    pub epoch: KeyEpoch,
    /// The issuing server profile.
    pub profile_id: ServerProfileId,
    /// The server environment the env hash is computed from.
    pub environment: ServerEnvironmentProfile,
    /// `compute_server_env_hash_checked(environment, IhpConfig::production())`.
    pub env_hash: ServerEnvHash,
    /// The channel-binding bytes (a stand-in for TLS exporter material).
    pub channel_binding: Vec<u8>,
    /// The caller sealed in the capsule.
    pub caller: CallerId,
    /// The issue time, also the verification clock of [`GoldenSessionCapsule::check`].
    pub issued_at: UnixMicros,
    /// The fixed nonce.
    pub nonce: [u8; CAPSULE_NONCE_LEN],
    /// What the current code seals from these inputs.
    pub bytes: Vec<u8>,
}

/// The golden capsule no longer matches its pinned bytes or no longer verifies.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("golden session capsule v1: {problem}")]
pub struct GoldenCapsuleMismatch {
    /// What differs.
    pub problem: String,
}

/// Builds the golden capsule from its fixed inputs with the current code. Pure and
/// deterministic (no clock, no randomness); it panics only if the fixed inputs stop
/// being valid, which the crate's tests catch.
pub fn golden_session_capsule() -> GoldenSessionCapsule {
    let session_subkey: [u8; 32] = std::array::from_fn(|i| 0xa0 ^ i as u8);
    let epoch = KeyEpoch::new(3);
    let profile_id = ServerProfileId::from_bytes(std::array::from_fn(|i| i as u8));
    let environment = ServerEnvironmentProfile {
        hostname: "golden-host-1".to_owned(),
        os: "linux".to_owned(),
        os_version: "6.1.0-golden".to_owned(),
        binary_sha256: [0xb1; 32],
        tls_certificate_fingerprint: vec![0xc7; 32],
        deployment: "golden".to_owned(),
        region: "test-1a".to_owned(),
    };
    let env_hash = compute_server_env_hash_checked(&environment, &IhpConfig::production())
        .expect("the golden environment profile is valid");
    let channel_binding = b"aedb golden tls-exporter material".to_vec();
    let caller = CallerId::new("alice@ledger").expect("the golden caller id is valid");
    let issued_at = UnixMicros::from_micros(1_700_000_000_123_456);
    let nonce: [u8; CAPSULE_NONCE_LEN] = std::array::from_fn(|i| 0x10 + i as u8);

    let binding =
        ChannelBinding::from_slice(&channel_binding).expect("the golden binding is valid");
    let header = CapsuleHeader {
        epoch,
        profile_id,
        env_hash,
        channel_id: ChannelId::of(Some(&binding)),
        issued_at,
        nonce,
    };
    let bytes = seal_with_nonce(
        &SecretKey::new(session_subkey),
        &header,
        Some(&binding),
        &caller,
    )
    .expect("the golden inputs seal")
    .to_vec();
    GoldenSessionCapsule {
        session_subkey,
        epoch,
        profile_id,
        environment,
        env_hash,
        channel_binding,
        caller,
        issued_at,
        nonce,
        bytes,
    }
}

impl GoldenSessionCapsule {
    /// Stable name, for fixture sets.
    pub const NAME: &'static str = "session_capsule_v1";

    /// One line describing the format and the fixed inputs.
    pub fn description(&self) -> String {
        format!(
            "IHP session capsule v1 (255 bytes): caller {}, {}, profile {}, env hash {}, \
             channel-bound, issued_at {} us, fixed subkey and nonce",
            self.caller,
            self.epoch,
            self.profile_id,
            self.env_hash,
            self.issued_at.as_micros()
        )
    }

    /// The bytes as lowercase hex.
    pub fn hex(&self) -> String {
        self.bytes.iter().fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
    }

    /// Checks the bytes equal the committed fixture, then verifies them with a fresh
    /// [`SessionAuthority`] built from the fixed inputs, at `issued_at`, on the fixed
    /// channel, and checks the verified caller and epoch.
    pub fn check(&self) -> Result<VerifiedCaller, GoldenCapsuleMismatch> {
        let fail = |problem: String| GoldenCapsuleMismatch { problem };
        let pinned = GOLDEN_SESSION_CAPSULE_V1_HEX.trim();
        let produced = self.hex();
        if produced != pinned {
            return Err(fail(format!(
                "bytes differ from session/golden/session_capsule_v1.hex\n  pinned:   {pinned}\n  produced: {produced}"
            )));
        }
        let authority =
            SessionAuthority::new(IhpConfig::production(), self.profile_id, self.env_hash);
        authority
            .add_epoch_key(self.epoch, SecretKey::new(self.session_subkey))
            .map_err(|err| fail(err.to_string()))?;
        let binding = ChannelBinding::from_slice(&self.channel_binding)
            .map_err(|err| fail(err.to_string()))?;
        let verified = authority
            .verify(&self.bytes, self.issued_at, Some(&binding))
            .map_err(|err| fail(format!("does not verify: {err}")))?;
        if verified.caller() != &self.caller || verified.epoch() != self.epoch {
            return Err(fail(format!(
                "verified as {} under {}, expected {} under {}",
                verified.caller(),
                verified.epoch(),
                self.caller,
                self.epoch
            )));
        }
        Ok(verified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_capsule_is_pinned_and_verifies() {
        let golden = golden_session_capsule();
        if std::env::var_os("AEDB_REGEN_GOLDEN").is_some() {
            // Deliberate regeneration (a format change needs a version bump too).
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/session_capsule_v1.hex");
            std::fs::write(path, format!("{}\n", golden.hex())).unwrap();
            eprintln!("rewrote {path}; rebuild to check against it");
            return;
        }
        assert_eq!(golden.bytes.len(), crate::capsule::CAPSULE_LEN);
        let verified = golden.check().unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(verified.issued_at(), golden.issued_at);
        assert!(verified.channel_bound());
        // Deterministic.
        assert_eq!(golden_session_capsule().bytes, golden.bytes);
        assert!(golden.description().contains("alice@ledger"));
    }

    #[test]
    fn golden_capsule_is_bound_to_its_inputs() {
        let golden = golden_session_capsule();
        let authority =
            SessionAuthority::new(IhpConfig::production(), golden.profile_id, golden.env_hash);
        authority
            .add_epoch_key(golden.epoch, SecretKey::new(golden.session_subkey))
            .unwrap();
        // Unbound presentation is refused before decryption.
        assert_eq!(
            authority.verify(&golden.bytes, golden.issued_at, None),
            Err(crate::CapsuleError::ChannelBindingMismatch)
        );
        // Another key for the same epoch fails the tag.
        let other =
            SessionAuthority::new(IhpConfig::production(), golden.profile_id, golden.env_hash);
        other
            .add_epoch_key(golden.epoch, SecretKey::new([0; 32]))
            .unwrap();
        let binding = ChannelBinding::from_slice(&golden.channel_binding).unwrap();
        assert_eq!(
            other.verify(&golden.bytes, golden.issued_at, Some(&binding)),
            Err(crate::CapsuleError::TagMismatch)
        );
    }
}
