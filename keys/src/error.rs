//! [`KeyError`]: everything that can go wrong getting a key, each variant saying what to
//! fix. No variant ever carries key bytes or a PIN.

use crate::master::MasterKeyId;
use std::path::PathBuf;

/// Why a key could not be derived, found or provisioned.
///
/// Messages name keys by their non-secret [`MasterKeyId`] / PKCS#11 label and tokens by
/// label; they never contain key material or PINs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A master key alias is empty, too long or uses characters outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid master key alias {alias:?}: {reason} (aliases are 1 to {max} characters from A-Z a-z 0-9 . _ -)",
        max = MasterKeyId::MAX_ALIAS_LEN
    )]
    InvalidAlias {
        /// The rejected alias.
        alias: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Master key versions start at 1; 0 is reserved.
    #[error("invalid master key version 0 for alias {alias:?}: versions start at 1")]
    InvalidVersion {
        /// The alias the version was given for.
        alias: String,
    },

    /// The same master version was supplied twice to one provider.
    #[error("master key {key} was supplied twice; each version must be added once")]
    DuplicateVersion {
        /// The duplicated key.
        key: MasterKeyId,
    },

    /// A derivation context (e.g. a channel binding) exceeds [`crate::MAX_CONTEXT_LEN`].
    #[error("derivation context is {len} bytes; at most {max} bytes are allowed")]
    ContextTooLong {
        /// Length supplied.
        len: usize,
        /// Maximum accepted.
        max: usize,
    },

    /// The provider cannot reach this master key (unknown alias or version, or the object is
    /// not on the token). Old epochs need their master version kept until no file uses them.
    #[error(
        "master key {key} not found in {provider}; check the alias/version, and keep old versions until no epoch references them"
    )]
    KeyNotFound {
        /// The key that was asked for.
        key: MasterKeyId,
        /// [`crate::KeyProvider::describe`] of the provider asked.
        provider: String,
    },

    /// Provisioning refused to create a key whose label already exists on the token.
    #[error(
        "master key {key} already exists on PKCS#11 token {token:?}; pick the next version instead of overwriting"
    )]
    KeyAlreadyExists {
        /// The key that already exists.
        key: MasterKeyId,
        /// Token label.
        token: String,
    },

    /// More than one token object carries the label of this master key.
    #[error(
        "{count} objects on PKCS#11 token {token:?} carry the label of master key {key}; labels must be unique, remove the duplicates"
    )]
    AmbiguousKey {
        /// The key asked for.
        key: MasterKeyId,
        /// Token label.
        token: String,
        /// How many objects matched.
        count: usize,
    },

    /// The token object exists but cannot serve as a master key (wrong key type, cannot
    /// sign, too short, ...).
    #[error("master key {key} on PKCS#11 token {token:?} is unusable: {reason}")]
    KeyUnusable {
        /// The key asked for.
        key: MasterKeyId,
        /// Token label.
        token: String,
        /// Which attribute is wrong and what it must be.
        reason: String,
    },

    /// The token object's value can leave the token (CKA_EXTRACTABLE=true or
    /// CKA_SENSITIVE=false), and the configuration did not opt in with `allow_extractable`.
    #[error(
        "master key {key} on PKCS#11 token {token:?} is {what}; refusing it because its value can leave the token (re-create it non-extractable and sensitive, or set HsmConfig::allow_extractable for tests)"
    )]
    KeyExtractable {
        /// The key asked for.
        key: MasterKeyId,
        /// Token label.
        token: String,
        /// `"extractable"`, `"not sensitive"` or both.
        what: &'static str,
    },

    /// The PKCS#11 module could not be loaded or initialised.
    #[error(
        "cannot load PKCS#11 module {path}: {reason} (is the HSM client library installed? for tests run scripts/softhsm-setup.sh)"
    )]
    ModuleLoad {
        /// Module path from the configuration.
        path: PathBuf,
        /// What failed.
        reason: String,
    },

    /// No token (or more than one) matches the configured label or slot.
    #[error(
        "PKCS#11 token {selector} not found in module {module} (tokens present: {available:?}); for tests run scripts/softhsm-setup.sh and export its SOFTHSM2_CONF"
    )]
    TokenNotFound {
        /// The configured selector, e.g. `label "aedb-test"` or `slot 3`.
        selector: String,
        /// Module path.
        module: PathBuf,
        /// Labels of the tokens that are present.
        available: Vec<String>,
    },

    /// Logging in to the token failed. Deliberately generic: the PIN never appears.
    #[error("login to PKCS#11 token {token:?} failed: {reason}")]
    LoginFailed {
        /// Token label.
        token: String,
        /// Why, without the PIN.
        reason: LoginFailure,
    },

    /// Any other PKCS#11 failure (device error, session trouble, unsupported mechanism).
    #[error("PKCS#11 {operation} failed on token {token:?}: {source}")]
    Pkcs11 {
        /// What aedb was doing, e.g. `"C_Sign (derive)"`.
        operation: &'static str,
        /// Token label.
        token: String,
        /// The module's error (a PKCS#11 return code; never secret).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why a PKCS#11 login failed. Carries no PIN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginFailure {
    /// The token rejected the PIN (or another provider in this process is already logged
    /// in to the token with a different PIN).
    #[error(
        "the user PIN was rejected (check HsmConfig::user_pin; repeated failures may lock the token)"
    )]
    PinIncorrect,
    /// The PIN has the wrong length or characters for this token.
    #[error("the user PIN is malformed for this token (wrong length or characters)")]
    PinInvalid,
    /// The token locked the user PIN after too many failures.
    #[error("the user PIN is locked; the security officer must reset it")]
    PinLocked,
    /// The PIN expired and must be changed before use.
    #[error("the user PIN has expired; change it with the token's tools")]
    PinExpired,
    /// The token's user PIN was never initialised.
    #[error("the token has no user PIN yet; initialise it (softhsm2-util --init-token ... --pin)")]
    PinNotInitialized,
    /// The module failed the login for another reason.
    #[error("the module returned {0}")]
    Other(String),
}
