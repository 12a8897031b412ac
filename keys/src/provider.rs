//! [`KeyProvider`], the only owner of `K_master`.

use crate::derive::DerivationRequest;
use crate::error::KeyError;
use crate::master::MasterKeyId;
use crate::secret::SecretKey;
use std::fmt;

/// The only owner of the master key `K_master`. Callers name a master version and a
/// [`DerivationRequest`] and receive the derived subkey; they never see the master.
///
/// Every implementation derives with the same construction ([`crate::derive`]):
/// `subkey = HKDF-SHA256-Expand(PRK = K_master, info, 32) = HMAC-SHA256(K_master, info || 0x01)`,
/// so providers are interchangeable: the same master bytes give the same subkeys in
/// [`crate::InMemoryKeyProvider`] and inside a PKCS#11 token ([`crate::HsmKeyProvider`]).
///
/// Implementations are shared across threads (`Arc<dyn KeyProvider>`).
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// The master key new epochs should use.
    ///
    /// # Errors
    /// Provider-specific; an HSM provider reports a lost token or session.
    fn current_master(&self) -> Result<MasterKeyId, KeyError>;

    /// Derives the subkey for (master, purpose, epoch, database, context) — for any master
    /// version the provider can still reach (old epochs must stay decryptable).
    ///
    /// # Errors
    /// [`KeyError::KeyNotFound`] for a master this provider cannot reach,
    /// [`KeyError::ContextTooLong`] for an oversized context, and HSM failures.
    fn derive(
        &self,
        master: &MasterKeyId,
        request: &DerivationRequest<'_>,
    ) -> Result<SecretKey, KeyError>;

    /// Non-secret description for logs and `inspect` (`"in-memory"`, `"pkcs11:<token label>"`).
    fn describe(&self) -> String;
}
