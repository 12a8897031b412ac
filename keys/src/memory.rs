//! [`InMemoryKeyProvider`]: master keys held in process memory, for tests and simple
//! deployments without an HSM.

use crate::derive::{DerivationRequest, expand_subkey};
use crate::error::KeyError;
use crate::master::MasterKeyId;
use crate::provider::KeyProvider;
use crate::secret::{KEY_LEN, SecretKey};
use std::collections::BTreeMap;
use std::fmt;

/// A [`KeyProvider`] holding one alias's master versions in memory (each in a
/// [`SecretKey`]). The current master is the highest version; every held version stays
/// derivable, so files sealed under older epochs stay readable after a rotation.
///
/// `Debug` shows the alias and version numbers only.
///
/// ```
/// use aedb_keys::{DerivationRequest, InMemoryKeyProvider, KeyProvider, KeyPurpose};
/// use aedb_types::{DatabaseId, KeyEpoch};
///
/// let provider = InMemoryKeyProvider::new("local", [1; 32])?.with_version(2, [2; 32])?;
/// let current = provider.current_master()?;
/// assert_eq!(current.to_string(), "local:v2");
/// let request = DerivationRequest::new(KeyPurpose::Wal, KeyEpoch::FIRST, DatabaseId::from_bytes([0; 16]));
/// let new_key = provider.derive(&current, &request)?;
/// let old_key = provider.derive(&current.with_version(1)?, &request)?;
/// assert!(!new_key.with_bytes(|a| old_key.with_bytes(|b| a == b)));
/// # Ok::<(), aedb_keys::KeyError>(())
/// ```
pub struct InMemoryKeyProvider {
    alias: String,
    versions: BTreeMap<u32, SecretKey>,
}

impl InMemoryKeyProvider {
    /// A provider whose only master is `alias:v1`.
    ///
    /// # Errors
    /// [`KeyError::InvalidAlias`] for an alias [`MasterKeyId::new`] refuses.
    pub fn new(
        alias: impl Into<String>,
        master: [u8; KEY_LEN],
    ) -> Result<InMemoryKeyProvider, KeyError> {
        let master = SecretKey::new(master);
        let id = MasterKeyId::new(alias, 1)?;
        let mut versions = BTreeMap::new();
        versions.insert(1, master);
        Ok(InMemoryKeyProvider {
            alias: id.alias().to_owned(),
            versions,
        })
    }

    /// Adds master `version` of the same alias (e.g. after a rotation). The highest version
    /// becomes current; lower ones stay derivable.
    ///
    /// # Errors
    /// [`KeyError::InvalidVersion`] for 0, [`KeyError::DuplicateVersion`] if already held.
    pub fn with_version(
        self,
        version: u32,
        master: [u8; KEY_LEN],
    ) -> Result<InMemoryKeyProvider, KeyError> {
        self.with_secret_version(version, SecretKey::new(master))
    }

    /// As [`Self::with_version`], taking the master already wrapped in a [`SecretKey`].
    ///
    /// # Errors
    /// As [`Self::with_version`].
    pub fn with_secret_version(
        mut self,
        version: u32,
        master: SecretKey,
    ) -> Result<InMemoryKeyProvider, KeyError> {
        let id = MasterKeyId::new(self.alias.clone(), version)?;
        if self.versions.contains_key(&version) {
            return Err(KeyError::DuplicateVersion { key: id });
        }
        self.versions.insert(version, master);
        Ok(self)
    }

    /// The alias every held version belongs to.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The held versions, ascending.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.versions.keys().copied()
    }
}

impl KeyProvider for InMemoryKeyProvider {
    fn current_master(&self) -> Result<MasterKeyId, KeyError> {
        let version = self.versions.keys().next_back().copied().unwrap_or(1);
        MasterKeyId::new(self.alias.clone(), version)
    }

    fn derive(
        &self,
        master: &MasterKeyId,
        request: &DerivationRequest<'_>,
    ) -> Result<SecretKey, KeyError> {
        #[cfg(feature = "observability")]
        let _span = request.span("in-memory").entered();
        let key = (master.alias() == self.alias)
            .then(|| self.versions.get(&master.version()))
            .flatten()
            .ok_or_else(|| KeyError::KeyNotFound {
                key: master.clone(),
                provider: self.describe(),
            })?;
        expand_subkey(key, request)
    }

    fn describe(&self) -> String {
        "in-memory".to_owned()
    }
}

impl fmt::Debug for InMemoryKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryKeyProvider")
            .field("alias", &self.alias)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::KeyPurpose;
    use aedb_types::{DatabaseId, KeyEpoch};

    fn request(purpose: KeyPurpose) -> DerivationRequest<'static> {
        DerivationRequest::new(purpose, KeyEpoch::FIRST, DatabaseId::from_bytes([4; 16]))
    }

    fn same(a: &SecretKey, b: &SecretKey) -> bool {
        a.with_bytes(|x| b.with_bytes(|y| x == y))
    }

    #[test]
    fn current_is_highest_and_all_versions_derive() {
        let p = InMemoryKeyProvider::new("app", [1; KEY_LEN])
            .unwrap()
            .with_version(3, [3; KEY_LEN])
            .unwrap()
            .with_version(2, [2; KEY_LEN])
            .unwrap();
        assert_eq!(p.current_master().unwrap().to_string(), "app:v3");
        assert_eq!(p.versions().collect::<Vec<_>>(), vec![1, 2, 3]);
        let keys: Vec<_> = (1..=3)
            .map(|v| {
                p.derive(
                    &MasterKeyId::new("app", v).unwrap(),
                    &request(KeyPurpose::Wal),
                )
                .unwrap()
            })
            .collect();
        assert!(!same(&keys[0], &keys[1]) && !same(&keys[1], &keys[2]));
        // Deterministic: deriving again gives the same key.
        let again = p
            .derive(
                &MasterKeyId::new("app", 1).unwrap(),
                &request(KeyPurpose::Wal),
            )
            .unwrap();
        assert!(same(&keys[0], &again));
    }

    #[test]
    fn unknown_alias_or_version_is_key_not_found() {
        let p = InMemoryKeyProvider::new("app", [1; KEY_LEN]).unwrap();
        for id in [
            MasterKeyId::new("app", 2).unwrap(),
            MasterKeyId::new("other", 1).unwrap(),
        ] {
            let err = p.derive(&id, &request(KeyPurpose::Audit)).unwrap_err();
            assert!(matches!(&err, KeyError::KeyNotFound { key, .. } if *key == id));
            assert!(err.to_string().contains(&id.to_string()), "{err}");
        }
    }

    #[test]
    fn construction_errors_are_typed() {
        assert!(matches!(
            InMemoryKeyProvider::new("bad alias", [0; KEY_LEN]),
            Err(KeyError::InvalidAlias { .. })
        ));
        let p = InMemoryKeyProvider::new("app", [0; KEY_LEN]).unwrap();
        assert!(matches!(
            p.with_version(1, [9; KEY_LEN]),
            Err(KeyError::DuplicateVersion { .. })
        ));
        let p = InMemoryKeyProvider::new("app", [0; KEY_LEN]).unwrap();
        assert!(matches!(
            p.with_version(0, [9; KEY_LEN]),
            Err(KeyError::InvalidVersion { .. })
        ));
    }

    #[test]
    fn purposes_give_unrelated_keys_and_describe_is_stable() {
        let p = InMemoryKeyProvider::new("app", [5; KEY_LEN]).unwrap();
        let master = p.current_master().unwrap();
        let keys: Vec<_> = KeyPurpose::ALL
            .iter()
            .map(|&purpose| p.derive(&master, &request(purpose)).unwrap())
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert!(!same(a, b));
            }
        }
        assert_eq!(p.describe(), "in-memory");
        assert_eq!(
            format!("{p:?}"),
            r#"InMemoryKeyProvider { alias: "app", versions: [1] }"#
        );
    }
}
