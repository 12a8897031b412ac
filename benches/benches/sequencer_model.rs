//! What the sequencer's state handling costs per commit, without actors, WAL or fsync:
//! evidence for the durable-throughput analysis in RESULTS.md.
//!
//! A `State` holding 65,536 keys (16-byte keys and values) takes one-put commits on one
//! thread, cycling over 1,024 of its keys like one committer of the commit bench; each
//! variant also encodes the commit record, as the sequencer does.
//! - `sequencer_state/apply_snapshot_per_commit`: today's sequencer: `State::apply`
//!   (functional: clones the state, then copies the touched tree paths), then
//!   `Arc::new(state.clone())` per commit handed to another thread, which drops them in
//!   batches of 128 (as the WAL writer drops every unpublished snapshot of a batch).
//! - `sequencer_state/apply_no_snapshot`: `State::apply` alone.
//! - `sequencer_state/in_place_snapshot_per_128`: `State::replay` of the same effect
//!   (before the LSM an in-place apply; since, `replay` and `apply` both install into the
//!   memtable, so these variants measure replay without assertion evaluation), with one
//!   snapshot per 128 commits (one per batch).
//! - `sequencer_state/in_place_no_snapshot`: `State::replay` alone.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench -p aedb-benches --bench sequencer_model`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aedb::{Ddl, KvKey, KvValue, Lsn, Namespace, ProjectName, State};
use aedb_benches::{PROJECT, key_bytes, namespace, small_put, value_bytes};
use aedb_model::{CommitRecord, Effect};
use criterion::{Criterion, Throughput};

const KEYS: u64 = 65_536;
const BATCH: u64 = 128;

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .configure_from_args();
    let ns = namespace();
    let mut base = State::new();
    let mut lsn = 0u64;
    let mut next_lsn = || {
        lsn += 1;
        Lsn::new(lsn)
    };
    for ddl in [
        Ddl::CreateProject {
            project: ProjectName::new(PROJECT).expect("project"),
        },
        Ddl::CreateScope { ns: ns.clone() },
    ] {
        base = base.apply_ddl(&ddl, next_lsn()).expect("ddl").0;
    }
    for i in 0..KEYS {
        let record = put_record(&ns, i);
        base.replay(&record, next_lsn()).expect("load");
    }
    let start_lsn = base.lsn().get();

    // Snapshots are dropped on another thread, as the WAL writer does.
    let (drop_tx, drop_rx) = mpsc::channel::<Vec<Arc<State>>>();
    let dropper = std::thread::spawn(move || {
        for batch in drop_rx {
            drop(batch);
        }
    });

    let mut g = c.benchmark_group("sequencer_state");
    g.throughput(Throughput::Elements(1));
    for variant in [
        "apply_snapshot_per_commit",
        "apply_no_snapshot",
        "in_place_snapshot_per_128",
        "in_place_no_snapshot",
    ] {
        let mut state = base.clone();
        let mut lsn = start_lsn;
        let mut i = 0u64;
        g.bench_function(variant, |b| {
            b.iter_custom(|iters| {
                let mut pending = Vec::new();
                let mut payload = Vec::new();
                let t = Instant::now();
                for _ in 0..iters {
                    lsn += 1;
                    i += 1;
                    payload.clear();
                    match variant {
                        "apply_snapshot_per_commit" | "apply_no_snapshot" => {
                            let tx = small_put(&ns, 0, i);
                            let (next, record) = state.apply(&tx, Lsn::new(lsn)).expect("apply");
                            record.encode(&mut payload);
                            state = next;
                            if variant == "apply_snapshot_per_commit" {
                                pending.push(Arc::new(state.clone()));
                            }
                        }
                        _ => {
                            // The same key small_put(_, 0, i) writes.
                            let record = put_record(&ns, i % 1024);
                            state
                                .replay(&record, Lsn::new(lsn))
                                .expect("apply in place");
                            record.encode(&mut payload);
                            if variant == "in_place_snapshot_per_128" && i.is_multiple_of(BATCH) {
                                pending.push(Arc::new(state.clone()));
                            }
                        }
                    }
                    black_box(&payload);
                    if pending.len() as u64 >= BATCH
                        || (i.is_multiple_of(BATCH) && !pending.is_empty())
                    {
                        drop_tx
                            .send(std::mem::take(&mut pending))
                            .expect("dropper alive");
                    }
                }
                let elapsed = t.elapsed();
                drop_tx.send(pending).expect("dropper alive");
                elapsed
            })
        });
    }
    g.finish();
    drop(drop_tx);
    dropper.join().expect("dropper");
    c.final_summary();
}

/// The resolved record of one benchmark put of item `i`.
fn put_record(ns: &Namespace, i: u64) -> CommitRecord {
    CommitRecord::Commit {
        idempotency_key: None,
        request: None,
        effects: vec![Effect::KvPut {
            ns: ns.clone(),
            key: KvKey::new(key_bytes(i)).expect("key"),
            value: KvValue::new(value_bytes(i)).expect("value"),
        }],
    }
}
