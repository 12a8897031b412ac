//! Which subkey protects what: the engine's view of its key providers.
//!
//! The keyring holds the [`KeyProvider`]s (never raw master keys) and derives, per
//! database and key epoch, the subkeys the actors need: the manifest MAC key, and —
//! when encryption at rest is configured — the checkpoint key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use aedb_keys::{
    DerivationRequest, EpochKey, InMemoryKeyProvider, KeyError, KeyProvider, KeyPurpose,
    MasterKeyId, SecretKey,
};
use aedb_manifest::LiveState;
use aedb_types::{DatabaseId, KeyEpoch};

/// The public, fixed manifest master used by the development profile, which has no
/// key: the manifest is still chained and checked against accidental corruption, but
/// anyone can forge it. Production profiles always bring their own key.
const DEVELOPMENT_MANIFEST_MASTER: [u8; 32] = *b"aedb development manifest key v1";

/// The engine's key providers.
#[derive(Clone)]
pub struct Keyring {
    manifest: Arc<dyn KeyProvider>,
    data: Option<Arc<dyn KeyProvider>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("manifest", &self.manifest.describe())
            .field("data", &self.data.as_ref().map(|p| p.describe()))
            .finish()
    }
}

impl Keyring {
    /// A keyring with a manifest provider and, optionally, a data (at-rest encryption)
    /// provider. They may be the same provider: purposes keep the subkeys apart.
    pub fn new(manifest: Arc<dyn KeyProvider>, data: Option<Arc<dyn KeyProvider>>) -> Keyring {
        Keyring { manifest, data }
    }

    /// The development keyring: a public manifest key, no encryption.
    pub fn development() -> Result<Keyring, KeyError> {
        let provider = InMemoryKeyProvider::new("aedb-development", DEVELOPMENT_MANIFEST_MASTER)?;
        Ok(Keyring::new(Arc::new(provider), None))
    }

    /// The same keyring with at-rest encryption from `data`.
    pub fn with_data_provider(mut self, data: Arc<dyn KeyProvider>) -> Keyring {
        self.data = Some(data);
        self
    }

    /// The WAL key for `epoch`, or `None` when at-rest encryption is off.
    pub fn wal_key(
        &self,
        database: DatabaseId,
        epoch: KeyEpoch,
        master: &MasterKeyId,
    ) -> Result<Option<SecretKey>, KeyError> {
        self.data_key(KeyPurpose::Wal, database, epoch, master)
    }

    /// Whether checkpoints (and WAL batches) are sealed.
    pub fn encrypts(&self) -> bool {
        self.data.is_some()
    }

    /// The master new epochs of at-rest encryption use (the manifest master when no
    /// data provider is configured), as recorded in `KeyEpochChanged`.
    pub fn current_data_master(&self) -> Result<MasterKeyId, KeyError> {
        self.data
            .as_ref()
            .unwrap_or(&self.manifest)
            .current_master()
    }

    /// The manifest MAC key of `database` under the manifest provider's current master.
    pub fn manifest_key(&self, database: DatabaseId) -> Result<SecretKey, KeyError> {
        let master = self.manifest.current_master()?;
        self.manifest_key_under(database, &master)
    }

    fn manifest_key_under(
        &self,
        database: DatabaseId,
        master: &MasterKeyId,
    ) -> Result<SecretKey, KeyError> {
        self.manifest_provider_key(KeyPurpose::Manifest, database, master)
    }

    /// A database-wide (epoch 1) subkey from the manifest provider: the manifest MAC
    /// and audit-chain keys, which stay with the master they were created under.
    fn manifest_provider_key(
        &self,
        purpose: KeyPurpose,
        database: DatabaseId,
        master: &MasterKeyId,
    ) -> Result<SecretKey, KeyError> {
        self.manifest.derive(
            master,
            &DerivationRequest::new(purpose, KeyEpoch::FIRST, database),
        )
    }

    /// The audit-chain key new audit rows are MACed with, and the (non-secret) id of
    /// the manifest master it is derived under, which each row records.
    pub fn audit_key(&self, database: DatabaseId) -> Result<(SecretKey, MasterKeyId), KeyError> {
        let master = self.manifest.current_master()?;
        let key = self.manifest_provider_key(KeyPurpose::Audit, database, &master)?;
        Ok((key, master))
    }

    /// The audit-chain key under the master `key_id` names (for verifying rows written
    /// before a rotation).
    pub fn audit_key_for(&self, database: DatabaseId, key_id: &str) -> Result<SecretKey, KeyError> {
        self.manifest_provider_key(KeyPurpose::Audit, database, &key_id.parse()?)
    }

    /// The session-capsule subkey of `epoch` (whose master the manifest records), from
    /// the data provider, or the manifest provider when no data key is configured:
    /// capsules work whether or not files are encrypted at rest.
    pub fn session_key(
        &self,
        database: DatabaseId,
        epoch: KeyEpoch,
        master: &MasterKeyId,
    ) -> Result<SecretKey, KeyError> {
        self.data.as_ref().unwrap_or(&self.manifest).derive(
            master,
            &DerivationRequest::new(KeyPurpose::Session, epoch, database),
        )
    }

    /// Manifest keys to try when opening, newest master version first: the manifest
    /// keeps the key of the master it was created under. Never empty.
    pub fn manifest_key_candidates(
        &self,
        database: DatabaseId,
    ) -> Result<Vec<SecretKey>, KeyError> {
        let current = self.manifest.current_master()?;
        let mut keys = vec![self.manifest_key_under(database, &current)?];
        for version in (1..current.version()).rev() {
            let older = MasterKeyId::new(current.alias(), version)?;
            // Versions the provider no longer holds are simply not candidates.
            if let Ok(key) = self.manifest_key_under(database, &older) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    /// The checkpoint key for `epoch` (whose master the manifest records), or `None`
    /// when at-rest encryption is off.
    pub fn checkpoint_key(
        &self,
        database: DatabaseId,
        epoch: KeyEpoch,
        master: &MasterKeyId,
    ) -> Result<Option<SecretKey>, KeyError> {
        self.data_key(KeyPurpose::Checkpoint, database, epoch, master)
    }

    fn data_key(
        &self,
        purpose: KeyPurpose,
        database: DatabaseId,
        epoch: KeyEpoch,
        master: &MasterKeyId,
    ) -> Result<Option<SecretKey>, KeyError> {
        self.data
            .as_ref()
            .map(|p| p.derive(master, &DerivationRequest::new(purpose, epoch, database)))
            .transpose()
    }
}

/// The key epochs a manifest records, with their masters, and which were retired.
///
/// Retired epochs get no keys: every lookup answers [`EpochKey::Retired`], so a file
/// claiming one is refused with a typed error instead of being decrypted.
#[derive(Clone, Debug, Default)]
pub struct EpochTable {
    epochs: BTreeMap<KeyEpoch, MasterKeyId>,
    retired: BTreeSet<KeyEpoch>,
}

impl EpochTable {
    /// The epochs (and retirements) a verified manifest records.
    pub fn from_live(live: &LiveState) -> Result<EpochTable, KeyError> {
        let mut table = EpochTable::default();
        for (epoch, info) in live.key_epochs() {
            table.insert(*epoch, info.master_key_id.parse()?);
        }
        table.retired.extend(live.retired_epochs().keys().copied());
        Ok(table)
    }

    /// Records `epoch` as using `master`.
    pub fn insert(&mut self, epoch: KeyEpoch, master: MasterKeyId) {
        self.epochs.insert(epoch, master);
    }

    /// Marks `epoch` retired: its keys are no longer handed out.
    pub fn retire(&mut self, epoch: KeyEpoch) {
        self.retired.insert(epoch);
    }

    /// Whether `epoch` was retired.
    pub fn is_retired(&self, epoch: KeyEpoch) -> bool {
        self.retired.contains(&epoch)
    }

    /// The newest epoch and its master.
    pub fn current(&self) -> Option<(KeyEpoch, &MasterKeyId)> {
        self.epochs.iter().next_back().map(|(e, m)| (*e, m))
    }

    /// Epochs older than the current one and not retired: files may still be sealed
    /// under them, so they stay decrypt-only.
    pub fn decrypt_only(&self) -> Vec<KeyEpoch> {
        let current = self.current().map(|(e, _)| e);
        self.epochs
            .keys()
            .copied()
            .filter(|e| Some(*e) != current && !self.is_retired(*e))
            .collect()
    }

    /// The master of `epoch`, unless it is unknown or retired.
    pub fn master(&self, epoch: KeyEpoch) -> Option<&MasterKeyId> {
        if self.is_retired(epoch) {
            None
        } else {
            self.epochs.get(&epoch)
        }
    }

    /// The WAL key of `epoch` for readers: the key, or why there is none.
    pub fn wal_key(&self, keyring: &Keyring, database: DatabaseId, epoch: KeyEpoch) -> EpochKey {
        self.key(epoch, |master| keyring.wal_key(database, epoch, master))
    }

    /// The checkpoint key of `epoch` for readers: the key, or why there is none.
    pub fn checkpoint_key(
        &self,
        keyring: &Keyring,
        database: DatabaseId,
        epoch: KeyEpoch,
    ) -> EpochKey {
        self.key(epoch, |master| {
            keyring.checkpoint_key(database, epoch, master)
        })
    }

    fn key(
        &self,
        epoch: KeyEpoch,
        derive: impl FnOnce(&MasterKeyId) -> Result<Option<SecretKey>, KeyError>,
    ) -> EpochKey {
        if self.is_retired(epoch) {
            return EpochKey::Retired;
        }
        self.epochs
            .get(&epoch)
            .and_then(|master| derive(master).ok().flatten())
            .into()
    }
}
