//! A backup chain spanning a master key rotation: the full backup is sealed under key
//! epoch 1 (master v1), the incremental holds WAL under epochs 1 and 2 (master v2 after
//! the redeploy). Restoring needs both master versions; without v1 the restore fails
//! with a typed error naming epoch 1 and its master, and nothing is restored.

use std::sync::Arc;

use aedb::backup::{BackupError, KeyMismatch};
use aedb::{
    AedbConfig, AedbInstance, Error, InMemoryKeyProvider, KeyEpoch, Namespace, RestoreOptions,
    restore_from_backup_chain,
};

const KEY: [u8; 32] = [0x91; 32];

fn v1() -> InMemoryKeyProvider {
    InMemoryKeyProvider::new("rotating", [0x31; 32]).expect("provider")
}

fn v1_and_v2() -> InMemoryKeyProvider {
    v1().with_version(2, [0x32; 32]).expect("version 2")
}

fn config(provider: Arc<dyn aedb::KeyProvider>) -> AedbConfig {
    AedbConfig::production(KEY)
        .with_key_provider(provider)
        .segment_size(64 * 1024)
        .preallocate(false)
}

/// A provider that has lost master version 1 (deleted from the HSM).
#[derive(Debug)]
struct WithoutV1(InMemoryKeyProvider);

impl aedb::KeyProvider for WithoutV1 {
    fn current_master(&self) -> Result<aedb::MasterKeyId, aedb::KeyError> {
        self.0.current_master()
    }

    fn derive(
        &self,
        master: &aedb::MasterKeyId,
        request: &aedb_keys::DerivationRequest<'_>,
    ) -> Result<aedb::SecretKey, aedb::KeyError> {
        if master.version() == 1 {
            return Err(aedb::KeyError::KeyNotFound {
                key: master.clone(),
                provider: self.describe(),
            });
        }
        self.0.derive(master, request)
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}

fn ns() -> Namespace {
    Namespace::parse("rot", "main").expect("namespace")
}

#[test]
fn a_chain_spanning_a_rotation_restores_with_both_masters_and_names_the_missing_epoch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let full = out.path().join("full");
    let inc = out.path().join("inc");

    let db = AedbInstance::open(dir.path(), config(Arc::new(v1()))).expect("open v1");
    db.create_project("rot").expect("project");
    db.create_scope("rot", "main").expect("scope");
    for i in 0..20 {
        db.kv_put(&ns(), format!("a{i:03}"), "epoch-1")
            .expect("put");
    }
    db.backup_full(&full, &mut |_, _| {}).expect("full backup");
    for i in 0..10 {
        db.kv_put(&ns(), format!("b{i:03}"), "epoch-1")
            .expect("put");
    }
    db.shutdown().expect("shutdown");

    // Redeploy pointed at master v2: a new key epoch; commits are sealed under it.
    let db = AedbInstance::open(dir.path(), config(Arc::new(v1_and_v2()))).expect("open v2");
    assert_eq!(db.operational_metrics().key_epoch, 2);
    for i in 0..10 {
        db.kv_put(&ns(), format!("c{i:03}"), "epoch-2")
            .expect("put");
    }
    let report = db
        .backup_incremental(&inc, &full, &mut |_, _| {})
        .expect("incremental across the rotation");
    assert_eq!(
        report
            .manifest
            .key_epochs
            .iter()
            .map(|(e, _)| *e)
            .collect::<Vec<_>>(),
        vec![KeyEpoch::new(1), KeyEpoch::new(2)]
    );
    db.shutdown().expect("shutdown");
    let chain = vec![full.clone(), inc.clone()];

    // Without master v1 the restore is refused, naming epoch 1 and its master.
    let target = out.path().join("without-v1");
    let err = restore_from_backup_chain(
        &chain,
        &target,
        RestoreOptions {
            config: config(Arc::new(WithoutV1(v1_and_v2()))),
            strict: true,
            target_lsn: None,
        },
        &mut |_, _| {},
    )
    .expect_err("master v1 is missing");
    match &err {
        Error::Backup(BackupError::WrongKey { detail, .. }) => match &**detail {
            KeyMismatch::EpochMasterMissing { epochs, master, .. } => {
                assert_eq!(epochs, &vec![KeyEpoch::new(1)]);
                assert_eq!(master.to_string(), "rotating:v1");
            }
            other => panic!("expected EpochMasterMissing, got {other:?}"),
        },
        other => panic!("expected WrongKey, got {other:?}"),
    }
    assert_eq!(err.code(), "backup.wrong_key");
    assert!(err.to_string().contains("key epoch(s) 1"), "{err}");
    assert!(
        std::fs::read_dir(&target).map_or(true, |mut d| d.next().is_none()),
        "nothing restored"
    );

    // With both versions the chain restores every commit, across the rotation.
    let target = out.path().join("restored");
    restore_from_backup_chain(
        &chain,
        &target,
        RestoreOptions {
            config: config(Arc::new(v1_and_v2())),
            strict: true,
            target_lsn: None,
        },
        &mut |_, _| {},
    )
    .expect("restore with both masters");
    let db = AedbInstance::open(&target, config(Arc::new(v1_and_v2()))).expect("open restored");
    for (prefix, n, value) in [
        ("a", 20, "epoch-1"),
        ("b", 10, "epoch-1"),
        ("c", 10, "epoch-2"),
    ] {
        for i in 0..n {
            let entry = db
                .kv_get(&ns(), format!("{prefix}{i:03}"))
                .expect("read")
                .unwrap_or_else(|| panic!("{prefix}{i:03} missing"));
            assert_eq!(entry.value.as_bytes(), value.as_bytes());
        }
    }
    db.shutdown().expect("shutdown");
}
