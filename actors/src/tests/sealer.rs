//! The CheckpointSealer: a checkpoint is a flush: made durable in the WAL first, written
//! as a run, recorded as a version edit, installed; only then is the WAL it covers retired.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aedb_types::{KeyEpoch, Lsn};

use super::{DATABASE, SequencerRig, create_project, new_manifest};
use crate::actor::{self, Running};
use crate::checkpoint_sealer::{CheckpointPolicy, Rotate, SealNow, Sealer, SealerContext};
use crate::commit::Finality;
use crate::committer::Admission;
use crate::keyring::EpochTable;
use crate::keyring::Keyring;
use crate::manifest_chain::{GetLiveState, ManifestChain};
use crate::runs::{FileIds, RunOpener};

fn epochs() -> EpochTable {
    let mut t = EpochTable::default();
    t.insert(
        KeyEpoch::FIRST,
        Keyring::development()
            .unwrap()
            .current_data_master()
            .unwrap(),
    );
    t
}

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
            sequencer: seq.sequencer.addr().clone(),
            runs: RunOpener {
                fs: aedb_fs::RealFs::shared(),
                data_dir: dir.path().to_path_buf(),
                database: DATABASE,
                keyring: Keyring::development().unwrap(),
                epochs: epochs(),
                cache: Arc::new(aedb_storage::BlockCache::new(1 << 20)),
            },
            file_ids: Arc::new(FileIds::new(1)),
            run_options: aedb_checkpoint::RunOptions::default(),
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
fn a_checkpoint_flushes_only_what_changed_into_a_recorded_run() {
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
    // Nothing new: no file.
    let again = rig.sealer.addr().ask(SealNow).unwrap().unwrap();
    assert_eq!((again.lsn.get(), again.path), (3, None));

    // Three level-0 runs, one per checkpoint, each holding only its own commit.
    let live = rig.manifest.addr().ask(GetLiveState).unwrap();
    assert_eq!(live.flushed_lsn(), Lsn::new(3));
    let runs: Vec<(u64, u64, u64)> = live
        .runs()
        .values()
        .map(|r| (r.min_lsn.get(), r.max_lsn.get(), u64::from(r.level)))
        .collect();
    assert_eq!(runs, vec![(1, 1, 0), (2, 2, 0), (3, 3, 0)]);
    assert!(live.checkpoints().is_empty());
    // The published state reads through the runs (its memtables were dropped).
    let (_, state) = rig.seq.snapshots.load();
    assert_eq!(state.projects().count(), 3);
    assert_eq!(state.view().version().level(0).len(), 3);
    assert_eq!(state.view().memtables().len(), 1);
    assert!(state.view().memtables()[0].is_empty());
    rig.sealer.stop();
    let log = finish(rig);
    // Every flush waited for a WAL barrier and retired the WAL it covers (the fake WAL
    // seals no segment, so nothing recorded is retired); the no-op checkpoint retires
    // again (what a re-seal or compaction freed).
    assert_eq!(log.barriers, 3);
    assert_eq!(log.retired_through, vec![0, 0, 0, 0]);
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
    let run = live.runs().values().next().expect("a run");
    assert_eq!((run.epoch, run.max_lsn), (epoch, Lsn::new(1)));
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
