//! Incremental checkpoints end to end: each one a sealed run file holding only what
//! changed, recovery from the runs plus the WAL tail, retirement of segments and key
//! epochs, compaction, and tampering.

use aedb::{
    AedbConfig, AedbInstance, Finality, KvKey, KvValue, Namespace, OpenError, StartError,
    Transaction,
};
use aedb_manifest::ManifestError;

const KEY: [u8; 32] = [7; 32];
const DATA_KEY: [u8; 32] = [9; 32];

fn config() -> AedbConfig {
    AedbConfig::production(KEY)
        .checkpoint_on_shutdown(false)
        .with_checkpoint_key(DATA_KEY)
        .segment_size(64 * 1024)
}

fn put(db: &AedbInstance, ns: &Namespace, i: u32, marker: &str) {
    let tx = Transaction::new().kv_put(
        ns,
        KvKey::new(format!("k{i:05}")).unwrap(),
        KvValue::new(format!("{marker}-{i:05}-{}", "x".repeat(200))).unwrap(),
    );
    db.commit_with(tx, Finality::Durable).unwrap();
}

fn setup(dir: &std::path::Path) -> (AedbInstance, Namespace) {
    let db = AedbInstance::open(dir, config()).unwrap();
    db.create_project("p").unwrap();
    db.create_scope("p", "s").unwrap();
    (db, Namespace::parse("p", "s").unwrap())
}

fn files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn recovery_starts_from_the_newest_checkpoint_and_retires_history() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ns) = setup(dir.path());
    for round in 0..3u32 {
        for i in 0..400 {
            put(&db, &ns, round * 400 + i, "SECRETMARKER");
        }
        let report = db.checkpoint_now().unwrap();
        assert_eq!(report.lsn, db.snapshot().expect("snapshot").lsn());
        assert!(report.path.is_some());
    }
    // A second checkpoint with nothing new is a no-op.
    assert!(db.checkpoint_now().unwrap().path.is_none());
    for i in 1200..1300 {
        put(&db, &ns, i, "SECRETMARKER");
    }
    let last = db.snapshot().expect("snapshot").lsn();
    let metrics = db.operational_metrics();
    assert_eq!(metrics.checkpoints, 3);
    db.shutdown().unwrap();

    // One run file per checkpoint, each holding only that round's writes (the third is
    // no bigger than the first: nothing is rewritten); the WAL they cover is retired.
    let ckpts = files_in(&dir.path().join("checkpoints"));
    assert_eq!(ckpts.len(), 3, "{ckpts:?}");
    let sizes: Vec<u64> = ckpts
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .collect();
    assert!(sizes[2] < sizes[0] * 3 / 2, "incremental: {sizes:?}");
    // Nothing a user stored is in plaintext anywhere on disk.
    for file in ckpts.iter().chain(files_in(&dir.path().join("wal")).iter()) {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !bytes.windows(12).any(|w| w == b"SECRETMARKER"),
            "plaintext in {}",
            file.display()
        );
    }

    let db = AedbInstance::open(dir.path(), config()).unwrap();
    assert_eq!(db.snapshot().expect("snapshot").lsn(), last);
    // Only the tail after the newest checkpoint was replayed (the WAL scan also reads
    // the rest of the segment the checkpoint ends in).
    assert_eq!(db.operational_metrics().recovery_frames, 100);
    assert!(
        db.recovery_report().frames_replayed <= 100 + 300,
        "{:?}",
        db.recovery_report().frames_replayed
    );
    let v = db.kv_get(&ns, "k00007").unwrap().unwrap();
    assert!(v.value.as_bytes().starts_with(b"SECRETMARKER-00007"));
    assert_eq!(db.snapshot().expect("snapshot").kv_len(&ns).unwrap(), 1300);
    db.shutdown().unwrap();
}

#[test]
fn a_tampered_run_is_refused_never_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ns) = setup(dir.path());
    for round in 0..2u32 {
        for i in 0..50 {
            put(&db, &ns, round * 50 + i, "v");
        }
        db.checkpoint_now().unwrap();
    }
    for i in 100..120 {
        put(&db, &ns, i, "v");
    }
    db.shutdown().unwrap();
    let ckpts = files_in(&dir.path().join("checkpoints"));
    let newest = ckpts.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    // A byte inside the data blocks: open authenticates metadata only, so the damage
    // surfaces when the block is read, as a typed error and never as data.
    let at = bytes.len() / 3;
    bytes[at] ^= 0x40;
    std::fs::write(newest, &bytes).unwrap();

    let db = AedbInstance::open(dir.path(), config()).unwrap();
    let mut unreadable = 0;
    for i in 0..120u32 {
        match db.kv_get(&ns, format!("k{i:05}").as_str()) {
            Ok(Some(e)) => assert!(
                e.value
                    .as_bytes()
                    .starts_with(format!("v-{i:05}").as_bytes()),
                "wrong data for k{i:05}"
            ),
            Ok(None) => panic!("k{i:05} lost without an error"),
            Err(e) => {
                assert_eq!(e.code(), "storage.unreadable", "{e}");
                unreadable += 1;
            }
        }
    }
    assert!(unreadable > 0, "the flipped block was never noticed");
    let scan = db
        .snapshot()
        .expect("snapshot")
        .kv_len(&ns)
        .expect_err("a full scan reads the damaged block");
    assert_eq!(scan.code(), "storage.unreadable");
    db.shutdown().unwrap();

    // Damage to the metadata (the footer at the very end) is refused at open, naming
    // the file.
    bytes[at] ^= 0x40;
    let end = bytes.len() - 10;
    bytes[end] ^= 0x01;
    std::fs::write(newest, &bytes).unwrap();
    let err = AedbInstance::open(dir.path(), config()).unwrap_err();
    assert!(err.to_string().contains("run-"), "{err}");
}

#[test]
fn wrong_keys_and_a_deleted_manifest_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ns) = setup(dir.path());
    put(&db, &ns, 1, "v");
    db.checkpoint_now().unwrap();
    db.shutdown().unwrap();

    let wrong_manifest_key = AedbInstance::open(
        dir.path(),
        AedbConfig::production([8; 32]).with_checkpoint_key(DATA_KEY),
    )
    .unwrap_err();
    // The manifest's header MAC is the first thing checked with the key.
    let manifest = dir.path().join("MANIFEST");
    assert!(
        matches!(
            &wrong_manifest_key,
            aedb::Error::Open(OpenError::Recovery(e))
                if matches!(&**e, StartError::Manifest(ManifestError::HeaderAuthFailed { path }) if *path == manifest)
        ),
        "expected HeaderAuthFailed({}), got {wrong_manifest_key:?}",
        manifest.display()
    );

    let wrong_data_key = AedbInstance::open(
        dir.path(),
        AedbConfig::production(KEY).with_checkpoint_key([1; 32]),
    )
    .unwrap_err();
    assert!(
        matches!(
            &wrong_data_key,
            aedb::Error::Open(OpenError::Recovery(e))
                if matches!(**e, StartError::NoUsableCheckpoint { .. })
        ),
        "{wrong_data_key:?}"
    );

    std::fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    let missing = AedbInstance::open(dir.path(), config()).unwrap_err();
    assert!(
        matches!(
            &missing,
            aedb::Error::Open(OpenError::Recovery(e))
                if matches!(**e, StartError::MissingManifest { .. })
        ),
        "{missing:?}"
    );
}

#[test]
fn rotated_keys_keep_every_epoch_readable() {
    let dir = tempfile::tempdir().unwrap();
    let (db, ns) = setup(dir.path());
    assert_eq!(db.operational_metrics().key_epoch, 1);
    for i in 0..50 {
        put(&db, &ns, i, "epoch1");
    }
    let epoch = db.rotate_keys().unwrap();
    assert_eq!(epoch.get(), 2);
    assert_eq!(db.operational_metrics().key_epoch, 2);
    // The WAL now holds batches of both epochs after the rotation's checkpoint.
    for i in 50..100 {
        put(&db, &ns, i, "epoch2");
    }
    assert_eq!(db.rotate_keys().unwrap().get(), 3);
    for i in 100..120 {
        put(&db, &ns, i, "epoch3");
    }
    let last = db.snapshot().expect("snapshot").lsn();
    db.shutdown().unwrap();

    let db = AedbInstance::open(dir.path(), config()).unwrap();
    assert_eq!(db.snapshot().expect("snapshot").lsn(), last);
    assert_eq!(db.operational_metrics().key_epoch, 3);
    assert_eq!(db.snapshot().expect("snapshot").kv_len(&ns).unwrap(), 120);
    let v = db.kv_get(&ns, "k00060").unwrap().unwrap();
    assert!(v.value.as_bytes().starts_with(b"epoch2-00060"));
    db.shutdown().unwrap();
}

#[test]
fn a_provider_pointed_at_a_new_master_version_starts_a_new_epoch() {
    use aedb::InMemoryKeyProvider;
    use std::sync::Arc;
    let v1 = || InMemoryKeyProvider::new("hsm-like", [3; 32]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_v1 = || {
        AedbConfig::production(KEY)
            .with_key_provider(Arc::new(v1()))
            .segment_size(64 * 1024)
    };
    let db = AedbInstance::open(dir.path(), config_v1()).unwrap();
    db.create_project("p").unwrap();
    db.create_scope("p", "s").unwrap();
    let ns = Namespace::parse("p", "s").unwrap();
    for i in 0..30 {
        put(&db, &ns, i, "v1");
    }
    db.checkpoint_now().unwrap();
    put(&db, &ns, 30, "v1");
    db.shutdown().unwrap();

    // Redeploy pointed at master v2 (v1 still held, as an HSM keeps old versions).
    let v2 = Arc::new(v1().with_version(2, [4; 32]).unwrap());
    let config_v2 = AedbConfig::production(KEY)
        .with_key_provider(v2)
        .segment_size(64 * 1024);
    let db = AedbInstance::open(dir.path(), config_v2).unwrap();
    assert_eq!(db.operational_metrics().key_epoch, 2);
    assert_eq!(db.snapshot().expect("snapshot").kv_len(&ns).unwrap(), 31);
    put(&db, &ns, 31, "v2");
    db.checkpoint_now().unwrap();
    db.shutdown().unwrap();

    // Without the old master version the database cannot be opened: the manifest stays
    // keyed under the master it was created with (v1), so with v1 gone the only candidate
    // key (v2's) fails the manifest's header MAC.
    let only_v2 = Arc::new(WithoutVersion {
        inner: v1().with_version(2, [4; 32]).unwrap(),
        lost: 1,
    });
    let err = AedbInstance::open(
        dir.path(),
        AedbConfig::production(KEY)
            .with_key_provider(only_v2)
            .segment_size(64 * 1024),
    )
    .unwrap_err();
    let manifest = dir.path().join("MANIFEST");
    assert!(
        matches!(
            &err,
            aedb::Error::Open(OpenError::Recovery(e))
                if matches!(&**e, StartError::Manifest(ManifestError::HeaderAuthFailed { path }) if *path == manifest)
        ),
        "expected HeaderAuthFailed({}), got {err:?}",
        manifest.display()
    );
}

/// A key provider that no longer holds master version `lost` (as an HSM from which the
/// old version was deleted): deriving under it fails with `KeyNotFound`.
#[derive(Debug)]
struct WithoutVersion {
    inner: aedb::InMemoryKeyProvider,
    lost: u32,
}

impl aedb::KeyProvider for WithoutVersion {
    fn current_master(&self) -> Result<aedb_keys::MasterKeyId, aedb_keys::KeyError> {
        self.inner.current_master()
    }

    fn derive(
        &self,
        master: &aedb_keys::MasterKeyId,
        request: &aedb_keys::DerivationRequest<'_>,
    ) -> Result<aedb::SecretKey, aedb_keys::KeyError> {
        if master.version() == self.lost {
            return Err(aedb_keys::KeyError::KeyNotFound {
                key: master.clone(),
                provider: self.describe(),
            });
        }
        self.inner.derive(master, request)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Key-epoch retirement, the end of the HSM rotation runbook: once checkpoints and the
/// WAL no longer hold anything sealed under the old epoch, it is retired (recorded in the
/// manifest), its keys are no longer handed out, and a stale file sealed under the
/// retired epoch is refused with a typed error.
#[test]
fn old_epochs_are_retired_once_no_file_needs_them() {
    use aedb::InMemoryKeyProvider;
    use aedb_checkpoint::CheckpointError;
    use std::sync::Arc;
    let v1 = || InMemoryKeyProvider::new("hsm-like", [3; 32]).unwrap();
    let config_with = |provider: InMemoryKeyProvider| {
        AedbConfig::production(KEY)
            .with_key_provider(Arc::new(provider))
            .segment_size(64 * 1024)
    };
    let dir = tempfile::tempdir().unwrap();
    let db = AedbInstance::open(dir.path(), config_with(v1())).unwrap();
    db.create_project("p").unwrap();
    db.create_scope("p", "s").unwrap();
    let ns = Namespace::parse("p", "s").unwrap();
    for i in 0..300 {
        put(&db, &ns, i, "epoch1");
    }
    let written = db.checkpoint_now().unwrap().path.unwrap();
    let stale_dir = tempfile::tempdir().unwrap();
    let stale = stale_dir.path().join(written.file_name().unwrap());
    std::fs::copy(&written, &stale).unwrap();

    assert_eq!(db.rotate_keys().unwrap().get(), 2);
    assert_eq!(db.operational_metrics().key_epochs_retired, 0);
    // Two more checkpoints under epoch 2 with enough commits between them to seal and
    // retire every segment that held epoch-1 batches.
    for round in 1..3u32 {
        for i in 0..400 {
            put(&db, &ns, 400 * round - 100 + i, "epoch2");
        }
        db.checkpoint_now().unwrap();
    }
    // The epoch-1 run is still live: the epoch stays until it is re-sealed.
    assert_eq!(db.operational_metrics().key_epochs_retired, 0);
    let resealed = db.reseal_now().unwrap();
    assert!(resealed.compactions >= 1, "{resealed:?}");
    assert_eq!(db.operational_metrics().key_epochs_retired, 1);
    let last = db.snapshot().expect("snapshot").lsn();
    db.shutdown().unwrap();

    let config_v1_v2 = || config_with(v1().with_version(2, [4; 32]).unwrap());
    let inspection = aedb::offline::inspect(dir.path(), &config_v1_v2()).unwrap();
    let live = &inspection.manifest.live;
    assert!(live.is_epoch_retired(aedb::KeyEpoch::FIRST));
    assert!(!live.is_epoch_retired(aedb::KeyEpoch::new(2)));
    match aedb::offline::open_checkpoint_file(dir.path(), &stale, &config_v1_v2()) {
        Err(aedb::Error::Offline(aedb::offline::OfflineError::Checkpoint(
            CheckpointError::RetiredEpoch { epoch, .. },
        ))) => assert_eq!(epoch, aedb::KeyEpoch::FIRST),
        other => panic!("expected RetiredEpoch, got {other:?}"),
    }

    // Recovery needs no epoch-1 key any more and the data is intact.
    let db = AedbInstance::open(dir.path(), config_v1_v2()).unwrap();
    assert_eq!(db.snapshot().expect("snapshot").lsn(), last);
    assert_eq!(db.snapshot().expect("snapshot").kv_len(&ns).unwrap(), 1100);
    db.shutdown().unwrap();
}

#[test]
fn the_manifest_is_compacted_and_still_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let config = || config().manifest_compact_after(16);
    let db = AedbInstance::open(dir.path(), config()).unwrap();
    db.create_project("p").unwrap();
    db.create_scope("p", "s").unwrap();
    let ns = Namespace::parse("p", "s").unwrap();
    for round in 0..12u32 {
        for i in 0..20 {
            put(&db, &ns, round * 20 + i, "v");
        }
        db.checkpoint_now().unwrap();
    }
    let compactions = db.operational_metrics().manifest_compactions;
    assert!(compactions >= 1, "no compaction after 12 checkpoints");
    let last = db.snapshot().expect("snapshot").lsn();
    db.shutdown().unwrap();
    let manifest_len = std::fs::metadata(dir.path().join("MANIFEST"))
        .unwrap()
        .len();
    let db = AedbInstance::open(dir.path(), config()).unwrap();
    assert_eq!(db.snapshot().expect("snapshot").lsn(), last);
    assert_eq!(db.snapshot().expect("snapshot").kv_len(&ns).unwrap(), 240);
    db.shutdown().unwrap();
    assert!(
        manifest_len < 16 * 1024,
        "manifest stays small: {manifest_len} bytes"
    );
    assert!(matches!(
        AedbConfig::development()
            .manifest_compact_after(3)
            .validate(),
        Err(aedb::ConfigError::ManifestCompactAfter(3))
    ));
}
