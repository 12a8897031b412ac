//! Sealed-state benchmarks (issue 3): what at-rest encryption (XChaCha20-Poly1305,
//! `AedbConfig::with_checkpoint_key`) and checkpoints cost.
//!
//! Setup (untimed, once per run): one data directory in the production profile with the
//! data key on and automatic checkpoints disabled; 1,000,000 keys (16-byte keys and
//! values) loaded in commits of 10,000 puts, one `checkpoint_now()`, then 100,000
//! one-put commits on new keys (8 threads, `Visible`, one flush) that stay in the WAL.
//!
//! Groups, in run order:
//! - `checkpoint_seal/*` (target 1, MB/s of one thread): the real snapshot of that
//!   1M-key state (`State::encode_snapshot`) sealed in memory (`seal_checkpoint_to_vec`),
//!   opened and verified in memory (`open_checkpoint_bytes`), written to a file with
//!   `CheckpointWriter` (including its `fsync`, rename and directory `fsync`), and opened
//!   from the file (`open_checkpoint`), plus the plaintext (SHA-256) mode for comparison.
//!   Figures are payload bytes per second of wall time, and per second of the thread's
//!   own CPU time (`/proc/thread-self/schedstat`), which does not depend on the load.
//! - `open_1M_plus_100k_tail/open` (target 4): `AedbInstance::open` of that directory:
//!   load and verify the sealed checkpoint, decode the state, replay the 100k-frame
//!   sealed WAL tail.
//! - `durable_64_committers/{plain,sealed}` (target 2): 64 durable committers against an
//!   instance without and with WAL encryption. The verdict comes from the **paired**
//!   loop that follows: rounds alternate between the two instances (ABBA order), so
//!   both see the same disk and CPU conditions; the ratio is the sum over the rounds.
//! - commit p99 under checkpointing (target 3), on the 1M-key directory: one durable
//!   committer, in alternating phases with a background thread calling `checkpoint_now()`
//!   in a loop and without it.
//!
//! A `===== sealed =====` block at the end prints every figure RESULTS.md needs.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench -p aedb-benches --bench sealed`

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aedb::{
    AedbInstance, DatabaseId, EpochKey, Finality, KeyEpoch, KvKey, KvValue, Lsn, SecretKey,
};
use aedb_benches::{
    CpuSample, Latencies, MetricsDelta, Summary, key_bytes, load_keys, namespace, open_sealed,
    run_committers, scratch_dir, sealed_production, small_put, thread_cpu_ns, value_bytes,
};
use aedb_checkpoint::{
    CheckpointMeta, CheckpointWriter, OpenMode, OsNonceSource, open_checkpoint,
    open_checkpoint_bytes, remove_checkpoint, seal_checkpoint_to_vec,
};
use criterion::{Criterion, SamplingMode, Throughput};

/// Keys in the checkpointed state.
const KEYS: u64 = 1_000_000;
/// One-put commits in the WAL tail after the checkpoint.
const TAIL: u64 = 100_000;
/// Commits per committer thread per round of the 64-committer comparison.
const PER_THREAD: u64 = 100;
/// Paired rounds per instance in the 64-committer comparison.
const ROUNDS: usize = 8;
/// Phases per mode in the checkpoint-interference comparison, and their length.
const PHASES: usize = 6;
const PHASE: Duration = Duration::from_secs(2);

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .configure_from_args();
    let summary = Summary::default();
    let root = scratch_dir(env!("CARGO_TARGET_TMPDIR"));
    summary.line(format!("bench dir: {}", root.path().display()));
    summary.line(format!("load average at start: {}", loadavg()));

    let data = scratch_dir(root.path().to_str().expect("utf-8 path"));
    let payload = build(data.path(), &summary);

    seal_open(&mut c, root.path(), &payload, &summary);
    drop(payload);
    open_time(&mut c, data.path(), &summary);
    summary.line(format!("load average: {}", loadavg()));
    durable_64(&mut c, root.path(), &summary);
    summary.line(format!("load average: {}", loadavg()));
    checkpoint_interference(data.path(), &summary);
    summary.line(format!("load average at end: {}", loadavg()));

    c.final_summary();
    summary.print("sealed");
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Builds the 1M-key + 100k-tail directory; returns the snapshot payload of the
/// checkpointed 1M-key state.
fn build(dir: &Path, summary: &Summary) -> Vec<u8> {
    let t = Instant::now();
    let db = open_sealed(dir, true);
    load_keys(&db, KEYS, 10_000);
    let loaded = t.elapsed();
    let report = db.checkpoint_now().expect("checkpoint");
    let m = db.operational_metrics();
    // Readers see only reads: the state to encode is the one the checkpoint sealed,
    // read back offline (the same content the snapshot held: nothing committed since).
    db.shutdown().expect("shutdown after load");
    let state = aedb::offline::verify_data_dir(dir, &aedb_benches::sealed_production(true))
        .expect("verify loaded directory")
        .state;
    let t = Instant::now();
    let cpu = thread_cpu_ns();
    let mut payload = Vec::new();
    state.encode_snapshot(&mut payload).expect("readable");
    let (enc_wall, enc_cpu) = (t.elapsed(), thread_cpu_ns() - cpu);
    drop(state);
    let t = Instant::now();
    let decoded = aedb::State::decode_snapshot(&payload).expect("decode snapshot");
    let dec_wall = t.elapsed();
    drop(decoded);
    summary.line(format!(
        "state: State::decode_snapshot of {KEYS} keys in {:.0} ms ({:.0} MB/s wall)",
        dec_wall.as_secs_f64() * 1e3,
        mb_per_s(payload.len(), dec_wall.as_secs_f64()),
    ));
    summary.line(format!(
        "state: {KEYS} keys loaded in {:.2}s; State::encode_snapshot {:.1} MiB in {:.0} ms ({:.0} MB/s wall, {:.0} MB/s CPU)",
        loaded.as_secs_f64(),
        mib(payload.len()),
        enc_wall.as_secs_f64() * 1e3,
        mb_per_s(payload.len(), enc_wall.as_secs_f64()),
        mb_per_s(payload.len(), enc_cpu as f64 / 1e9),
    ));
    summary.line(format!(
        "engine checkpoint_now of 1M keys: {:.1} MiB sealed file, checkpoint_micros {:.0} ms (lsn {})",
        mib(report.bytes as usize),
        m.checkpoint_micros as f64 / 1e3,
        report.lsn.get(),
    ));
    let db = open_sealed(dir, true);
    let t = Instant::now();
    let ns = namespace();
    std::thread::scope(|s| {
        for th in 0..8u64 {
            let (db, ns) = (&db, &ns);
            s.spawn(move || {
                let per = TAIL / 8;
                for item in KEYS + th * per..KEYS + (th + 1) * per {
                    let tx = aedb::Transaction::new().kv_put(
                        ns,
                        KvKey::new(key_bytes(item)).expect("key"),
                        KvValue::new(value_bytes(item)).expect("value"),
                    );
                    db.commit_with(tx, Finality::Visible).expect("tail commit");
                }
            });
        }
    });
    db.flush().expect("flush tail");
    summary.line(format!(
        "WAL tail: {TAIL} one-put commits after the checkpoint in {:.2}s",
        t.elapsed().as_secs_f64()
    ));
    db.shutdown().expect("shutdown build");
    payload
}

fn mib(n: usize) -> f64 {
    n as f64 / (1024.0 * 1024.0)
}

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

/// Wall and thread-CPU time over every timed iteration of one function.
#[derive(Default)]
struct Timed {
    iters: u64,
    wall: Duration,
    cpu_ns: u64,
}

impl Timed {
    fn line(&self, name: &str, bytes: usize) -> String {
        let n = self.iters.max(1) as f64;
        let wall = self.wall.as_secs_f64() / n;
        let cpu = self.cpu_ns as f64 / 1e9 / n;
        format!(
            "{name:<28} {:>7.1} ms/op  {:>7.0} MB/s wall  {:>7.0} MB/s per core (thread CPU)",
            wall * 1e3,
            mb_per_s(bytes, wall),
            mb_per_s(bytes, cpu),
        )
    }
}

/// Runs `op` (which returns its own timed span) `iters` times, accumulating its wall
/// time and the thread's CPU time (the whole loop, untimed parts included) into `acc`.
fn timed(iters: u64, acc: &mut Timed, mut op: impl FnMut() -> Duration) -> Duration {
    let mut wall = Duration::ZERO;
    let cpu = thread_cpu_ns();
    for _ in 0..iters {
        wall += op();
    }
    acc.iters += iters;
    acc.wall += wall;
    acc.cpu_ns += thread_cpu_ns() - cpu;
    wall
}

/// Target 1: seal and open throughput of the real 1M-key snapshot, one thread.
fn seal_open(c: &mut Criterion, root: &Path, payload: &[u8], summary: &Summary) {
    let db_id = DatabaseId::from_bytes([7; 16]);
    let key = SecretKey::new([1; 32]);
    let meta = CheckpointMeta::new(db_id, Lsn::new(1), KeyEpoch::FIRST);
    let lookup = |_: KeyEpoch| EpochKey::Key(SecretKey::new([1; 32]));
    let sealed = seal_checkpoint_to_vec(&meta, Some(&key), &mut OsNonceSource, payload)
        .expect("seal in memory");
    let plain =
        seal_checkpoint_to_vec(&meta, None, &mut OsNonceSource, payload).expect("plaintext");
    let dir = scratch_dir(root.to_str().expect("utf-8 path"));
    let mut g = c.benchmark_group("checkpoint_seal");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(payload.len() as u64));
    let mut figures: Vec<(&str, Timed)> = Vec::new();

    let mut t = Timed::default();
    g.bench_function("seal_to_vec", |b| {
        b.iter_custom(|iters| {
            timed(iters, &mut t, || {
                let s = Instant::now();
                let out = seal_checkpoint_to_vec(&meta, Some(&key), &mut OsNonceSource, payload)
                    .expect("seal");
                let d = s.elapsed();
                black_box(out);
                d
            })
        })
    });
    figures.push(("seal_to_vec (sealed)", t));

    let mut t = Timed::default();
    g.bench_function("open_bytes", |b| {
        b.iter_custom(|iters| {
            timed(iters, &mut t, || {
                let s = Instant::now();
                let out =
                    open_checkpoint_bytes(&sealed, db_id, OpenMode::Sealed(&lookup)).expect("open");
                let d = s.elapsed();
                black_box(out);
                d
            })
        })
    });
    figures.push(("open_bytes (sealed)", t));

    let mut t = Timed::default();
    g.bench_function("seal_to_vec_plaintext", |b| {
        b.iter_custom(|iters| {
            timed(iters, &mut t, || {
                let s = Instant::now();
                let out =
                    seal_checkpoint_to_vec(&meta, None, &mut OsNonceSource, payload).expect("seal");
                let d = s.elapsed();
                black_box(out);
                d
            })
        })
    });
    figures.push(("seal_to_vec (plaintext)", t));

    let mut t = Timed::default();
    g.bench_function("open_bytes_plaintext", |b| {
        b.iter_custom(|iters| {
            timed(iters, &mut t, || {
                let s = Instant::now();
                let out = open_checkpoint_bytes(&plain, db_id, OpenMode::Plaintext).expect("open");
                let d = s.elapsed();
                black_box(out);
                d
            })
        })
    });
    figures.push(("open_bytes (plaintext)", t));

    let mut t = Timed::default();
    let mut lsn = 1u64;
    g.bench_function("writer_file", |b| {
        b.iter_custom(|iters| {
            timed(iters, &mut t, || {
                lsn += 1;
                let m = CheckpointMeta::new(db_id, Lsn::new(lsn), KeyEpoch::FIRST);
                let s = Instant::now();
                let mut w = CheckpointWriter::create(
                    &aedb_fs::RealFs::shared(),
                    dir.path(),
                    m,
                    Some(&key),
                    &mut OsNonceSource,
                )
                .expect("create");
                w.write_all(payload).expect("write");
                let info = w.finish().expect("finish");
                let d = s.elapsed();
                black_box(info);
                remove_checkpoint(&aedb_fs::RealFs, dir.path(), Lsn::new(lsn)).expect("remove");
                d
            })
        })
    });
    figures.push(("CheckpointWriter file+fsync", t));

    // One file to open repeatedly (kept warm in the page cache, as right after a write).
    let m = CheckpointMeta::new(db_id, Lsn::new(u64::MAX / 2), KeyEpoch::FIRST);
    let mut w = CheckpointWriter::create(
        &aedb_fs::RealFs::shared(),
        dir.path(),
        m,
        Some(&key),
        &mut OsNonceSource,
    )
    .expect("create");
    w.write_all(payload).expect("write");
    let info = w.finish().expect("finish");
    let mut t = Timed::default();
    g.bench_function("open_file", |b| {
        b.iter_custom(|iters| {
            timed(iters, &mut t, || {
                let s = Instant::now();
                let out =
                    open_checkpoint(&aedb_fs::RealFs, &info.path, db_id, lookup).expect("open");
                let d = s.elapsed();
                black_box(out);
                d
            })
        })
    });
    figures.push(("open_checkpoint file", t));
    g.finish();

    summary.line(format!(
        "target 1: payload = State::encode_snapshot of {KEYS} keys = {} bytes ({:.1} MiB), sealed image {} bytes",
        payload.len(),
        mib(payload.len()),
        sealed.len()
    ));
    for (name, t) in &figures {
        summary.line(format!("target 1: {}", t.line(name, payload.len())));
    }
}

/// Target 4: open time of 1M keys from a checkpoint plus a 100k-frame WAL tail.
fn open_time(c: &mut Criterion, dir: &Path, summary: &Summary) {
    let mut g = c.benchmark_group("open_1M_plus_100k_tail");
    g.sampling_mode(SamplingMode::Flat);
    let (mut n, mut wall, mut rec_us, mut frames) = (0u32, Duration::ZERO, 0u64, 0u64);
    g.bench_function("open", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let db = AedbInstance::open(dir, sealed_production(true)).expect("open");
                timed += t.elapsed();
                n += 1;
                rec_us += db.operational_metrics().recovery_micros;
                frames = db.recovery_report().frames_replayed;
                assert!(
                    db.snapshot()
                        .expect("snapshot")
                        .kv_get(&namespace(), &key_bytes(KEYS + TAIL - 1))
                        .expect("read")
                        .is_some()
                );
                db.shutdown().expect("shutdown");
            }
            wall += timed;
            timed
        })
    });
    g.finish();
    let db = AedbInstance::open(dir, sealed_production(true)).expect("open");
    let keys = db
        .snapshot()
        .expect("snapshot")
        .kv_get(&namespace(), &key_bytes(KEYS + TAIL - 1))
        .expect("read")
        .is_some();
    db.shutdown().expect("shutdown");
    summary.line(format!(
        "target 4: open (sealed checkpoint of {KEYS} keys + WAL tail of {frames} frames replayed): {:.3}s per open over {n} opens (engine recovery_micros mean {:.3}s); last tail key present: {keys}",
        wall.as_secs_f64() / f64::from(n.max(1)),
        rec_us as f64 / 1e6 / f64::from(n.max(1)),
    ));
}

/// One round of 64 durable committers; returns (commits/s, process CPU µs per commit).
fn round(db: &AedbInstance) -> (f64, f64, MetricsDelta) {
    let before = db.operational_metrics();
    let cpu = CpuSample::now();
    let d = run_committers(db, 64, PER_THREAD, Finality::Durable);
    let cpu_s: f64 = CpuSample::now().since(&cpu).values().sum();
    let commits = 64 * PER_THREAD;
    (
        commits as f64 / d.as_secs_f64(),
        cpu_s * 1e6 / commits as f64,
        MetricsDelta::between(&before, &db.operational_metrics()),
    )
}

/// Target 2: 64 durable committers, WAL encryption off vs on, paired.
fn durable_64(c: &mut Criterion, root: &Path, summary: &Summary) {
    let dirs = [
        scratch_dir(root.to_str().expect("utf-8 path")),
        scratch_dir(root.to_str().expect("utf-8 path")),
    ];
    let dbs = [
        open_sealed(dirs[0].path(), false),
        open_sealed(dirs[1].path(), true),
    ];
    let names = ["plain", "sealed"];
    let mut g = c.benchmark_group("durable_64_committers");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(64));
    for (db, name) in dbs.iter().zip(names) {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| run_committers(db, 64, iters, Finality::Durable))
        });
    }
    g.finish();

    // Paired: ABBA rounds, same disk and CPU conditions for both.
    let mut commits = [0u64; 2];
    let mut secs = [0f64; 2];
    let mut cpu = [0f64; 2];
    let mut batch = [0f64; 2];
    let mut ratios = Vec::new();
    for r in 0..ROUNDS {
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut rate = [0f64; 2];
        for i in order {
            let (rt, cp, delta) = round(&dbs[i]);
            rate[i] = rt;
            commits[i] += 64 * PER_THREAD;
            secs[i] += (64 * PER_THREAD) as f64 / rt;
            cpu[i] += cp;
            batch[i] += delta.mean_batch;
        }
        ratios.push(rate[1] / rate[0]);
    }
    ratios.sort_by(f64::total_cmp);
    let total = [commits[0] as f64 / secs[0], commits[1] as f64 / secs[1]];
    for i in 0..2 {
        summary.line(format!(
            "target 2: paired {:<6} 64 committers: {:>8.0} commits/s over {ROUNDS} rounds of {} commits; CPU {:.1} us/commit (all threads); mean batch {:.1}",
            names[i],
            total[i],
            64 * PER_THREAD,
            cpu[i] / ROUNDS as f64,
            batch[i] / ROUNDS as f64,
        ));
    }
    summary.line(format!(
        "target 2: sealed/plain = {:.3}x (total), per-round ratios min {:.2} median {:.2} max {:.2}  (target >= 0.9x)",
        total[1] / total[0],
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1],
    ));
    for db in dbs {
        db.shutdown().expect("shutdown");
    }
}

/// Target 3: one durable committer's latency with `checkpoint_now()` looping in the
/// background vs without, alternating phases.
fn checkpoint_interference(dir: &Path, summary: &Summary) {
    let db = open_sealed(dir, true);
    let ns = namespace();
    let lat = [Latencies::default(), Latencies::default()];
    let checkpoints = AtomicU64::new(0);
    let ckpt_micros = AtomicU64::new(0);
    let ckpt_bytes = AtomicU64::new(0);
    let mut i = 0u64;
    for p in 0..2 * PHASES {
        let with = p % 2 == 1;
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            if with {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let r = db.checkpoint_now().expect("checkpoint");
                        if r.path.is_some() {
                            checkpoints.fetch_add(1, Ordering::Relaxed);
                            let m = db.operational_metrics();
                            ckpt_micros.fetch_add(m.checkpoint_micros, Ordering::Relaxed);
                            ckpt_bytes.store(r.bytes, Ordering::Relaxed);
                        } else {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                });
            }
            let mut nanos = Vec::new();
            let started = Instant::now();
            while started.elapsed() < PHASE {
                let tx = small_put(&ns, 7, i);
                i += 1;
                let t = Instant::now();
                db.commit_with(tx, Finality::Durable).expect("commit");
                nanos.push(t.elapsed().as_nanos() as u64);
            }
            stop.store(true, Ordering::Relaxed);
            lat[usize::from(with)].extend(&nanos);
        });
    }
    let n = checkpoints.load(Ordering::Relaxed);
    summary.line(format!(
        "target 3: {n} checkpoints of {:.1} MiB during {PHASES} x {:.0}s phases, mean checkpoint_micros {:.0} ms",
        mib(ckpt_bytes.load(Ordering::Relaxed) as usize),
        PHASE.as_secs_f64(),
        ckpt_micros.load(Ordering::Relaxed) as f64 / 1e3 / n.max(1) as f64,
    ));
    for (l, name) in lat.iter().zip(["no checkpoint", "checkpointing"]) {
        summary.line(format!(
            "target 3: 1 durable committer, {name:<13}: n={:<6} p50={:>8.1}us p99={:>8.1}us p99.9={:>8.1}us mean={:>8.1}us",
            l.len(),
            l.quantile_us(0.5).unwrap_or(0.0),
            l.quantile_us(0.99).unwrap_or(0.0),
            l.quantile_us(0.999).unwrap_or(0.0),
            l.mean_us().unwrap_or(0.0),
        ));
    }
    let p99 = |l: &Latencies| l.quantile_us(0.99).unwrap_or(0.0);
    summary.line(format!(
        "target 3: p99 checkpointing / none = {:.2}x (target <= 2x); p50 ratio {:.2}x",
        p99(&lat[1]) / p99(&lat[0]),
        lat[1].quantile_us(0.5).unwrap_or(0.0) / lat[0].quantile_us(0.5).unwrap_or(1.0),
    ));
    db.shutdown().expect("shutdown");
}
