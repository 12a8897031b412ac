//! The answer to "which key sealed files of this epoch?".

use crate::SecretKey;

/// What a key lookup found for a key epoch named in a file header: the key, nothing
/// (the epoch was never recorded), or a refusal because the epoch was **retired** (no
/// live file needs it any more, so its keys are no longer handed out and anything
/// claiming to be sealed under it is stale or planted).
///
/// Readers (checkpoint and WAL decoders) turn the last two into distinct typed errors.
///
/// ```
/// use aedb_keys::{EpochKey, SecretKey};
/// let found: EpochKey = Some(SecretKey::new([1; 32])).into();
/// assert!(matches!(found, EpochKey::Key(_)));
/// assert!(matches!(EpochKey::from(None), EpochKey::Unknown));
/// ```
#[derive(Debug)]
pub enum EpochKey {
    /// The key of the epoch.
    Key(SecretKey),
    /// No such epoch is known.
    Unknown,
    /// The epoch existed but was retired.
    Retired,
}

impl From<Option<SecretKey>> for EpochKey {
    fn from(key: Option<SecretKey>) -> EpochKey {
        key.map_or(EpochKey::Unknown, EpochKey::Key)
    }
}
