//! Point-read benchmark: `kv_get` on one thread over 1,000,000 keys.
//!
//! Setup (untimed): a development-profile instance (no fsync; durability is not what is
//! measured) is loaded with keys `0..1_000_000` (16-byte keys, 16-byte values) in
//! multi-put transactions of 10,000 mutations. A pool of 1,048,576 uniformly random
//! existing keys (16 MiB, larger than the caches) is drawn up front and walked in order.
//!
//! Groups:
//! - `point_reads_1M/snapshot_once`: one `db.snapshot().expect("snapshot")` taken before timing, then
//!   `snapshot.kv_get(&ns, key)` for random keys (target: >= 2,000,000 reads/s).
//! - `point_reads_1M/snapshot_per_read`: `db.snapshot().expect("snapshot").kv_get(&ns, key)` per read.
//!
//! Each iteration does 1,024 reads; throughput is reported in reads/s.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench -p aedb-benches --bench reads`

use std::hint::black_box;
use std::time::{Duration, Instant};

use aedb_benches::{KEY_LEN, scratch_dir};
use aedb_benches::{SplitMix64, Summary, key_bytes, load_keys, namespace, open_development};
use criterion::{Criterion, Throughput};

const KEYS: u64 = 1_000_000;
const PER_TX: u64 = 10_000;
const POOL: usize = 1 << 20;
const BATCH: usize = 1024;

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    let summary = Summary::default();
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"));
    let db = open_development(dir.path());
    let ns = namespace();

    let t = Instant::now();
    load_keys(&db, KEYS, PER_TX);
    let load = t.elapsed();
    summary.line(format!(
        "loaded {KEYS} keys in {:.2}s ({:.0} puts/s, {PER_TX} puts per commit)",
        load.as_secs_f64(),
        KEYS as f64 / load.as_secs_f64()
    ));
    assert_eq!(
        db.snapshot()
            .expect("snapshot")
            .kv_len(&ns)
            .expect("kv_len"),
        KEYS as usize
    );

    let m = db.operational_metrics().storage;
    summary.line(format!(
        "shape: runs per level {:?}, {} memtables holding {} bytes",
        m.level_runs, m.memtables, m.memtable_bytes
    ));
    let mut rng = SplitMix64::new(0x5EED);
    let pool: Vec<[u8; KEY_LEN]> = (0..POOL).map(|_| key_bytes(rng.next() % KEYS)).collect();
    let snapshot = db.snapshot().expect("snapshot");
    assert!(
        pool.iter()
            .all(|k| snapshot.kv_get(&ns, k).expect("read").is_some()),
        "every pooled key exists"
    );

    let mut g = c.benchmark_group("point_reads_1M");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut offset = 0usize;
    g.bench_function("snapshot_once", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for key in &pool[offset..offset + BATCH] {
                found += snapshot.kv_get(&ns, key).expect("read").is_some() as usize;
            }
            offset = (offset + BATCH) % POOL;
            black_box(found)
        })
    });
    let mut offset = 0usize;
    g.bench_function("snapshot_per_read", |b| {
        b.iter(|| {
            let mut found = 0usize;
            for key in &pool[offset..offset + BATCH] {
                found += db
                    .snapshot()
                    .expect("snapshot")
                    .kv_get(&ns, key)
                    .expect("read")
                    .is_some() as usize;
            }
            offset = (offset + BATCH) % POOL;
            black_box(found)
        })
    });
    g.finish();

    // A plain timed loop as a cross-check of criterion's figure (three passes over the pool).
    for per_read in [false, true] {
        let t = Instant::now();
        let mut found = 0usize;
        for _ in 0..3 {
            for key in &pool {
                let hit = if per_read {
                    db.snapshot()
                        .expect("snapshot")
                        .kv_get(&ns, key)
                        .expect("read")
                        .is_some()
                } else {
                    snapshot.kv_get(&ns, key).expect("read").is_some()
                };
                found += hit as usize;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        summary.line(format!(
            "plain loop {}: {:.0} reads/s ({} reads, target >= 2,000,000/s)",
            if per_read {
                "snapshot_per_read"
            } else {
                "snapshot_once"
            },
            black_box(found) as f64 / secs,
            found
        ));
    }

    drop(snapshot);
    db.shutdown().expect("shutdown");
    c.final_summary();
    summary.print("reads");
}
