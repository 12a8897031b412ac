//! The ManifestChain: appends are durable before the reply; a failed append fail-stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aedb_manifest::{ManifestError, ManifestRecord};
use aedb_types::fault::{FaultInjector, FaultMode, FaultPoint};
use aedb_types::{Lsn, SegmentSeq};

use super::new_manifest;
use crate::actor;
use crate::manifest_chain::{GetLiveState, ManifestChain, Record, SegmentsSealed};
use crate::metrics::EngineMetrics;

fn sealed(seq: u64) -> ManifestRecord {
    ManifestRecord::SegmentSealed {
        seq: SegmentSeq::new(seq),
        first_lsn: Lsn::new(seq * 10 + 1),
        last_lsn: Lsn::new(seq * 10 + 10),
        sha256: [seq as u8; 32],
    }
}

#[test]
fn records_are_appended_and_visible_in_the_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let fail_stop = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(EngineMetrics::default());
    let chain = ManifestChain::new(
        new_manifest(dir.path()),
        4096,
        metrics.clone(),
        fail_stop.clone(),
    );
    let mut running = actor::spawn(chain, 8, metrics.owners.manifest.clone()).unwrap();
    running
        .addr()
        .ask(Record(vec![sealed(1)]))
        .unwrap()
        .unwrap();
    // A segment the WAL writer reports twice is recorded once.
    running
        .addr()
        .tell(SegmentsSealed(vec![sealed(1), sealed(2)]))
        .unwrap();
    let live = running.addr().ask(GetLiveState).unwrap();
    assert_eq!(
        live.segments().keys().map(|s| s.get()).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // A record the live state refuses is a typed error and changes nothing on disk.
    let dup = running.addr().ask(Record(vec![sealed(2)])).unwrap();
    assert!(
        matches!(
            dup.as_ref().map_err(|e| &**e),
            Err(ManifestError::Rejected { .. })
        ),
        "{dup:?}"
    );
    assert!(!fail_stop.load(Ordering::Acquire));
    running.stop();
    assert_eq!(metrics.owners.manifest.snapshot().handled, 4);
}

#[test]
fn a_failed_append_fail_stops_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let fail_stop = Arc::new(AtomicBool::new(false));
    let mut manifest = new_manifest(dir.path());
    let faults = FaultInjector::new();
    manifest.set_fault_injector(faults.clone());
    let chain = ManifestChain::new(
        manifest,
        4096,
        Arc::new(EngineMetrics::default()),
        fail_stop.clone(),
    );
    let mut running = actor::spawn(chain, 8, Arc::new(actor::OwnerStats::new("manifest"))).unwrap();
    faults.arm(FaultPoint::Manifest, FaultMode::Once);
    let failed = running.addr().ask(Record(vec![sealed(1)])).unwrap();
    assert!(failed.is_err());
    assert!(
        fail_stop.load(Ordering::Acquire),
        "the shared flag is raised"
    );
    // Fire-and-forget records from the WAL writer fail-stop the same way.
    let fail_stop2 = Arc::new(AtomicBool::new(false));
    let second_dir = tempfile::tempdir().unwrap();
    let mut manifest = new_manifest(second_dir.path());
    let faults = FaultInjector::new();
    manifest.set_fault_injector(faults.clone());
    let chain = ManifestChain::new(
        manifest,
        4096,
        Arc::new(EngineMetrics::default()),
        fail_stop2.clone(),
    );
    let mut second = actor::spawn(chain, 8, Arc::new(actor::OwnerStats::new("manifest"))).unwrap();
    faults.arm(FaultPoint::Manifest, FaultMode::Once);
    second.addr().tell(SegmentsSealed(vec![sealed(1)])).unwrap();
    let live = second.addr().ask(GetLiveState).unwrap();
    assert!(live.segments().is_empty());
    assert!(fail_stop2.load(Ordering::Acquire));
    running.stop();
    second.stop();
}

#[test]
fn the_log_is_compacted_once_it_holds_enough_records() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(EngineMetrics::default());
    let chain = ManifestChain::new(
        new_manifest(dir.path()),
        6,
        metrics.clone(),
        Arc::new(AtomicBool::new(false)),
    );
    let mut running = actor::spawn(chain, 8, metrics.owners.manifest.clone()).unwrap();
    for seq in 1..=6 {
        running
            .addr()
            .ask(Record(vec![sealed(seq)]))
            .unwrap()
            .unwrap();
    }
    assert!(metrics.manifest_compactions.load(Ordering::Relaxed) >= 1);
    let live = running.addr().ask(GetLiveState).unwrap();
    assert_eq!(live.segments().len(), 6, "compaction keeps the live set");
    running.stop();
}
