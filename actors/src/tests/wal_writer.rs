//! The WAL writer: appends are acknowledged after they are written and synced, their
//! snapshot published first; the log on disk holds exactly what was acknowledged.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aedb_model::State;
use aedb_sync::SnapshotCell;
use aedb_sync::completion::completion;
use aedb_sync::group_commit::{Durability, LoopConfig, Submission, WriterMsg};
use aedb_types::Lsn;
use aedb_wal::{RecoveryMode, WalConfig};

use super::new_manifest;
use crate::actor;
use crate::commit::CommitOutcome;
use crate::manifest_chain::ManifestChain;
use crate::metrics::EngineMetrics;
use crate::wal_writer::{self, PendingAck, WalRecord};

#[test]
fn durable_appends_are_acknowledged_after_sync_and_replay_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let config = WalConfig::development();
    let (_, writer) =
        aedb_wal::recover_after(&wal_dir, &config, RecoveryMode::Strict, Lsn::ZERO, |_| {
            Ok::<(), std::convert::Infallible>(())
        })
        .unwrap();
    let metrics = Arc::new(EngineMetrics::default());
    let snapshots = Arc::new(SnapshotCell::new(0, Arc::new(State::new())));
    let fail_stopped = Arc::new(AtomicBool::new(false));
    let mut manifest = actor::spawn(
        ManifestChain::new(
            new_manifest(dir.path()),
            4096,
            metrics.clone(),
            fail_stopped.clone(),
        ),
        8,
        metrics.owners.manifest.clone(),
    )
    .unwrap();
    let mut handle = wal_writer::spawn(
        writer,
        snapshots.clone(),
        metrics.clone(),
        16,
        LoopConfig {
            flush_interval: Duration::from_millis(5),
            max_batch: 8,
            idle_spin: Duration::ZERO,
        },
        manifest.addr().clone(),
        fail_stopped.clone(),
    )
    .unwrap();

    let mut waiters = Vec::new();
    for n in 1..=3u64 {
        let (reply, waiter) = completion();
        let outcome = Ok(CommitOutcome {
            lsn: Lsn::new(n),
            idempotent_replay: false,
        });
        handle
            .mailbox
            .send(WriterMsg::Append(Submission {
                record: WalRecord {
                    lsn: Lsn::new(n),
                    payload: vec![n as u8; 10],
                },
                publish: Some((Lsn::new(n), Arc::new(State::new()))),
                durability: Durability::AckAfterSync(PendingAck {
                    reply,
                    outcome,
                    metrics: metrics.clone(),
                }),
            }))
            .unwrap();
        waiters.push(waiter);
    }
    for (n, waiter) in waiters.into_iter().enumerate() {
        let outcome = waiter.wait().unwrap().unwrap();
        assert_eq!(outcome.lsn.get(), n as u64 + 1);
    }
    assert_eq!(snapshots.version(), 3, "published before the ack");
    assert_eq!(metrics.durable_commits.load(Ordering::Relaxed), 3);
    assert_eq!(metrics.durable_lsn.load(Ordering::Relaxed), 3);
    let (reply, waiter) = completion();
    handle.mailbox.send(WriterMsg::Barrier(reply)).unwrap();
    assert!(matches!(waiter.wait(), Ok(Ok(()))));
    assert!(!fail_stopped.load(Ordering::Acquire));

    // The loop ends once its last sender is gone; then the owner stops.
    drop(handle.mailbox);
    handle.owner.stop();
    manifest.stop();
    let mut frames = Vec::new();
    aedb_wal::verify_with(&wal_dir, &config, RecoveryMode::Strict, |f| {
        frames.push((f.lsn.get(), f.payload.to_vec()));
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap();
    assert_eq!(
        frames,
        (1..=3u64)
            .map(|n| (n, vec![n as u8; 10]))
            .collect::<Vec<_>>()
    );
}
