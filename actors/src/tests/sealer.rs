//! The CheckpointSealer: a checkpoint is made durable in the WAL first, written, recorded,
//! and only then are older checkpoints retired.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aedb_types::{KeyEpoch, Lsn};

use super::{DATABASE, SequencerRig, create_project, new_manifest};
use crate::actor::{self, Running};
use crate::checkpoint_sealer::{CheckpointPolicy, Rotate, SealNow, Sealer, SealerContext};
use crate::commit::Finality;
use crate::committer::Admission;
use crate::keyring::Keyring;
use crate::manifest_chain::{GetLiveState, ManifestChain};

struct Rig {
    seq: SequencerRig,
    manifest: Running<ManifestChain>,
    sealer: Running<Sealer>,
    dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let seq = SequencerRig::new(1 << 20);
    let manifest = actor::spawn(
        ManifestChain::new(
            new_manifest(dir.path()),
            4096,
            seq.metrics.clone(),
            Arc::new(AtomicBool::new(false)),
        ),
        8,
        seq.metrics.owners.manifest.clone(),
    )
    .unwrap();
    let keyring = Keyring::development().unwrap();
    let master = keyring.current_data_master().unwrap();
    let wal = seq.wal_sender.clone();
    let sealer = actor::spawn(
        Sealer::new(SealerContext {
            fs: aedb_fs::RealFs::shared(),
            data_dir: dir.path().to_path_buf(),
            database: DATABASE,
            keyring,
            epoch: (KeyEpoch::FIRST, master),
            snapshots: seq.snapshots.clone(),
            wal,
            manifest: manifest.addr().clone(),
            metrics: seq.metrics.clone(),
            // No automatic checkpoint during the test.
            policy: CheckpointPolicy {
                wal_bytes: u64::MAX,
                interval: Duration::from_secs(3600),
            },
            last_lsn: Lsn::ZERO,
            epoch_bounds: Default::default(),
        }),
        4,
        seq.metrics.owners.checkpoint.clone(),
    )
    .unwrap();
    Rig {
        seq,
        manifest,
        sealer,
        dir,
    }
}

#[test]
fn a_checkpoint_is_recorded_and_the_oldest_beyond_two_is_retired() {
    let mut rig = rig();
    let mut reports = Vec::new();
    for name in ["a", "b", "c"] {
        rig.seq
            .committer
            .commit(create_project(name), Finality::Visible, Admission::Wait)
            .unwrap();
        reports.push(rig.sealer.addr().ask(SealNow).unwrap().unwrap());
    }
    let lsns: Vec<u64> = reports.iter().map(|r| r.lsn.get()).collect();
    assert_eq!(lsns, vec![1, 2, 3]);
    assert!(reports.iter().all(|r| r.path.is_some() && r.bytes > 0));
    assert_eq!(reports[2].retired_checkpoints, 1);
    // Nothing new: no file.
    let again = rig.sealer.addr().ask(SealNow).unwrap().unwrap();
    assert_eq!((again.lsn.get(), again.path), (3, None));

    let live = rig.manifest.addr().ask(GetLiveState).unwrap();
    assert_eq!(
        live.checkpoints()
            .keys()
            .map(|l| l.get())
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(
        !reports[0].path.as_ref().unwrap().exists(),
        "retired file deleted"
    );
    assert!(reports[2].path.as_ref().unwrap().exists());
    rig.sealer.stop();
    let log = finish(rig);
    // Every checkpoint waited for a WAL barrier; once two were kept, each new one
    // retired the WAL behind the older of the two.
    assert_eq!(log.barriers, 3);
    assert_eq!(log.retired_through, vec![1, 2]);
}

#[test]
fn rotation_records_the_new_epoch_and_checkpoints_under_it() {
    let mut rig = rig();
    rig.seq
        .committer
        .commit(create_project("a"), Finality::Visible, Admission::Wait)
        .unwrap();
    let (epoch, report) = rig.sealer.addr().ask(Rotate).unwrap().unwrap();
    assert_eq!(epoch, KeyEpoch::FIRST.next().unwrap());
    assert_eq!(report.lsn.get(), 1);
    let live = rig.manifest.addr().ask(GetLiveState).unwrap();
    assert!(live.key_epochs().contains_key(&epoch));
    assert_eq!(live.checkpoints()[&Lsn::new(1)].epoch, epoch);
    rig.sealer.stop();
    finish(rig);
}

fn finish(rig: Rig) -> super::WalLog {
    let Rig {
        seq,
        mut manifest,
        sealer,
        dir,
    } = rig;
    drop(sealer);
    manifest.stop();
    drop(dir);
    seq.finish()
}
