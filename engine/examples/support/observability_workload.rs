//! The workload behind `examples/prometheus.rs` and `tests/observability.rs`: one pass
//! over every instrumented path, so each `aedb_*` and `ihp_*` metric and each span
//! appears at least once.
//!
//! Opens a secure production instance (sealed WAL and checkpoints), commits, is denied,
//! fails an assertion, checkpoints, commits again, grants, revokes and transfers
//! ownership, takes a full and an incremental backup, plants a torn WAL tail and reopens
//! (recovery from the checkpoint plus the WAL tail, with one integrity alert), then issues and verifies IHP session capsules, including a
//! version mismatch and a channel-binding (header) mismatch.

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use aedb::{
    AedbConfig, AedbInstance, Assertion, CallerId, KvKey, Namespace, Permission, Resource,
    SecureConfig, Transaction,
};
use aedb_keys::{DerivationRequest, InMemoryKeyProvider, KeyProvider, KeyPurpose};
use aedb_session::{
    ChannelBinding, IhpConfig, ServerEnvHash, ServerProfileId, SessionAuthority, UnixMicros,
};
use aedb_types::KeyEpoch;

/// The secrets the workload is given.
pub struct Secrets {
    /// Manifest (and audit) master key.
    pub manifest_key: [u8; 32],
    /// Checkpoint and WAL master key.
    pub checkpoint_key: [u8; 32],
    /// Master key the IHP session subkey is derived from.
    pub session_master: [u8; 32],
    /// The channel binding (e.g. a TLS exporter) one capsule is bound to.
    pub channel_binding: [u8; 32],
}

/// Runs the workload in `dir` (empty or absent). Returns the bytes of the subkeys it
/// derived itself, so a caller can check they never leak.
pub fn run(dir: &Path, secrets: &Secrets) -> Result<Vec<Vec<u8>>, Box<dyn Error>> {
    let config = || {
        // The reopen below replays the WAL the shutdown leaves (the recovery spans).
        AedbConfig::production(secrets.manifest_key)
            .with_checkpoint_key(secrets.checkpoint_key)
            .checkpoint_on_shutdown(false)
    };
    let root = CallerId::new("root")?;
    let teller = CallerId::new("teller-1")?;
    let db = AedbInstance::open_secure(dir, config(), SecureConfig::new(root.clone()))?;
    db.create_project_as(&root, "bank")?;
    db.create_scope_as(&root, "bank", "main")?;
    let ns = Namespace::parse("bank", "main")?;
    db.grant_as(
        &root,
        &teller,
        Permission::KvWrite {
            ns: ns.clone(),
            prefix: b"acct/".to_vec(),
        },
        false,
    )?;
    for i in 0..20 {
        db.kv_put_as(&teller, &ns, format!("acct/{i:03}"), format!("{}", 100 + i))?;
    }
    // Outside the teller's prefix: denied (and audited).
    assert!(db.kv_put_as(&teller, &ns, "admin/flag", "1").is_err());
    // A failed assertion (and its audit row).
    let failing = Transaction::new().assert(Assertion::KvExists {
        ns: ns.clone(),
        key: KvKey::new("acct/missing")?,
    });
    assert!(db.commit_as(&root, failing).is_err());
    db.checkpoint_now_as(&root)?;
    for i in 20..25 {
        db.kv_put_as(&teller, &ns, format!("acct/{i:03}"), "1")?;
    }
    // Permission churn (`aedb_policy_changes_total{change}`): a grant and a revoke, an
    // ownership transfer.
    let auditor = CallerId::new("auditor")?;
    let read = Permission::KvRead {
        ns: ns.clone(),
        prefix: b"acct/".to_vec(),
    };
    db.grant_as(&root, &auditor, read.clone(), false)?;
    db.revoke_as(&root, &auditor, read)?;
    db.transfer_ownership_as(&root, Resource::Scope(ns.clone()), &teller)?;
    // Hot backups (`aedb_backup_last_timestamp_seconds{kind}`), admin-only calls
    // (`aedb_global_admin_actions_total{caller}`), a metrics read (backup ages).
    let backups = dir.join("backups");
    db.backup_full_as(&root, backups.join("full"), &mut |_, _| {})?;
    db.backup_incremental_as(
        &root,
        backups.join("incremental"),
        backups.join("full"),
        &mut |_, _| {},
    )?;
    db.operational_metrics_as(&root)?;
    let database = db.database_id();
    db.shutdown()?;

    // An integrity alert (`aedb_recovery_events_total{event}`): a non-zero byte in the
    // preallocated zero tail of the active WAL segment, cut as a torn tail at open.
    let segment = std::fs::read_dir(dir.join("wal"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .ok_or("no WAL segment")?;
    let mut bytes = std::fs::read(&segment)?;
    let at = bytes.len() - 64;
    bytes[at] = 0xA5;
    std::fs::write(&segment, bytes)?;

    // Recovery: the checkpoint is opened, then the sealed WAL tail replayed.
    let db = AedbInstance::open_secure(dir, config(), SecureConfig::new(root.clone()))?;
    assert!(db.kv_get_as(&root, &ns, "acct/024")?.is_some());
    assert_eq!(
        db.operational_metrics()
            .recovery_events
            .get("wal_torn_tail"),
        Some(&1)
    );
    db.shutdown()?;

    // IHP session capsules under a session subkey derived through a key provider.
    let provider = InMemoryKeyProvider::new("ihp-demo", secrets.session_master)?;
    let master = provider.current_master()?;
    let subkey = provider.derive(
        &master,
        &DerivationRequest::new(KeyPurpose::Session, KeyEpoch::FIRST, database),
    )?;
    let derived = vec![subkey.with_bytes(|b| b.to_vec())];
    let authority = SessionAuthority::new(
        IhpConfig::production(),
        ServerProfileId::from_bytes([0x50; 16]),
        ServerEnvHash::from_bytes([0xe0; 32]),
    );
    authority.add_epoch_key(KeyEpoch::FIRST, subkey)?;
    let binding = || ChannelBinding::new(secrets.channel_binding.to_vec());
    let now = UnixMicros::now();
    let later = now.saturating_add(Duration::from_secs(1));

    let capsule = authority.issue(&teller, now, None)?;
    authority.verify(capsule.as_bytes(), later, None)?;
    let bound = authority.issue(&teller, now, Some(&binding()?))?;
    authority.verify(bound.as_bytes(), later, Some(&binding()?))?;
    // An unsupported version byte: `ihp_version_mismatch_total`.
    let mut future_version = capsule.to_vec();
    future_version[8] = 9;
    assert!(authority.verify(&future_version, later, None).is_err());
    // One flipped ciphertext byte: `ihp_tag_failures_total`.
    let mut tampered = authority.issue(&teller, now, None)?.to_vec();
    tampered[120] ^= 1;
    assert!(authority.verify(&tampered, later, None).is_err());
    // An unbound capsule presented on a bound channel: `ihp_header_mismatch_total`.
    let fresh = authority.issue(&teller, now, None)?;
    assert!(
        authority
            .verify(fresh.as_bytes(), later, Some(&binding()?))
            .is_err()
    );
    Ok(derived)
}
