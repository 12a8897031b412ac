//! Commit benchmarks: the engine's durable and visible commit paths against the raw
//! cost of appending the same bytes and `fdatasync`ing them in the same directory,
//! measured in the same run.
//!
//! Groups, in run order:
//! - `raw_fdatasync/{append,fallocated,prezeroed}`: one `write` of one engine WAL frame
//!   (the exact bytes of a one-put commit) plus `File::sync_data`, on a growing
//!   `O_APPEND` file, on a file preallocated with `fallocate` like the WAL segments, and
//!   on a file whose blocks were written and synced beforehand.
//! - `durable_1_committer/kv_put`: one thread, `Finality::Durable`, 16-byte key and value,
//!   production profile (real `fdatasync`). Its per-commit p50 is reported as a ratio to
//!   the raw p50s (target: <= 1.3x raw append + fdatasync). `kv_put_no_spin`: the same
//!   with `commit_spin(0)` (the caller and the WAL writer sleep on every hand-off).
//! - `durable_committers/{1,4,16,64,256}`: that many threads, each doing the same number
//!   of durable commits per iteration; throughput in commits/s (targets: >= 25x the
//!   1-committer rate at 64, >= 100,000/s at 256). The group-commit mean batch size and
//!   commits per `fdatasync` are taken from `operational_metrics()`.
//! - `visible_committers/16`: 16 threads with `Finality::Visible`.
//!
//! A `===== commit =====` block at the end prints every figure RESULTS.md needs,
//! including CPU time per commit split by thread (sequencer actor, WAL writer,
//! committers) from `/proc/self/task/*/stat`.
//!
//! Profiling mode (no criterion): `AEDB_PROFILE_COMMITTERS=256 [AEDB_PROFILE_SECS=10]
//! [AEDB_PROFILE_VISIBLE=1]` runs only that many committers in a loop and prints the
//! rate, the group-commit figures and the CPU split; run the bench binary under
//! `perf record` this way.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench -p aedb-benches --bench commit`
//! (data goes under the target dir's `tmp/`, or `$AEDB_BENCH_DIR`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aedb::{AedbConfig, AedbInstance, Finality};
use aedb_benches::{
    CpuSample, EXITED_THREADS, Latencies, MetricsDelta, RawLog, RawMode, Summary, namespace,
    open_config, open_production, run_committers, scratch_dir, small_put, small_put_frame,
};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

/// Committer counts of the throughput curve.
const CONCURRENCY: [usize; 5] = [1, 4, 16, 64, 256];

fn main() {
    if let Some(n) = std::env::var("AEDB_PROFILE_COMMITTERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        profile(n);
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .configure_from_args();
    let summary = Summary::default();
    let root = scratch_dir(env!("CARGO_TARGET_TMPDIR"));
    summary.line(format!("bench dir: {}", root.path().display()));

    let frame = small_put_frame();
    summary.line(format!("frame bytes per one-put commit: {}", frame.len()));

    // 1. Raw append + fdatasync of the same bytes, same directory.
    let mut raw_p50 = Vec::new();
    let mut logs: Vec<(RawMode, RawLog)> = RawMode::ALL
        .iter()
        .map(|&mode| {
            let name = format!("raw-{}.log", mode.name());
            (mode, RawLog::create(root.path(), &name, mode))
        })
        .collect();
    {
        let mut g = c.benchmark_group("raw_fdatasync");
        g.sampling_mode(SamplingMode::Flat);
        g.throughput(Throughput::Elements(1));
        for (mode, log) in logs.iter_mut() {
            let mode = *mode;
            let lat = Latencies::default();
            g.bench_function(mode.name(), |b| {
                b.iter_custom(|iters| {
                    let mut nanos = Vec::with_capacity(iters as usize);
                    for _ in 0..iters {
                        let t = Instant::now();
                        log.append_sync(black_box(&frame));
                        nanos.push(t.elapsed().as_nanos() as u64);
                    }
                    lat.extend(&nanos);
                    Duration::from_nanos(nanos.iter().sum())
                })
            });
            let p50 = lat.quantile_us(0.5).unwrap_or(0.0);
            summary.line(format!(
                "raw {:<10} n={:<6} p50={:>8.1}us p99={:>8.1}us mean={:>8.1}us",
                mode.name(),
                lat.len(),
                p50,
                lat.quantile_us(0.99).unwrap_or(0.0),
                lat.mean_us().unwrap_or(0.0),
            ));
            raw_p50.push((mode, p50));
        }
        g.finish();
    }

    // 2. One committer, Durable, small KV put: per-commit latency, with the default
    //    commit spin and without it (`commit_spin(0)`: every hand-off sleeps).
    for (name, spin) in [("kv_put", None), ("kv_put_no_spin", Some(Duration::ZERO))] {
        let dir = scratch_dir(root.path().to_str().expect("utf-8 path"));
        let db = match spin {
            None => open_production(dir.path()),
            Some(spin) => open_config(
                dir.path(),
                AedbConfig::production([0u8; 32]).commit_spin(spin),
            ),
        };
        let ns = namespace();
        let lat = Latencies::default();
        let before = db.operational_metrics();
        let mut next = 0u64;
        let mut g = c.benchmark_group("durable_1_committer");
        g.sampling_mode(SamplingMode::Flat);
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut nanos = Vec::with_capacity(iters as usize);
                for _ in 0..iters {
                    let tx = small_put(&ns, 0, next);
                    next += 1;
                    let t = Instant::now();
                    db.commit_with(tx, Finality::Durable).expect("commit");
                    nanos.push(t.elapsed().as_nanos() as u64);
                }
                lat.extend(&nanos);
                Duration::from_nanos(nanos.iter().sum())
            })
        });
        g.finish();
        let delta = MetricsDelta::between(&before, &db.operational_metrics());
        let p50 = lat.quantile_us(0.5).unwrap_or(0.0);
        let label = match spin {
            None => "durable 1 committer".to_string(),
            Some(_) => "durable 1 committer (commit_spin 0)".to_string(),
        };
        summary.line(format!(
            "{label} n={} p50={:.1}us p99={:.1}us mean={:.1}us; engine fsync mean={:.1}us; batch mean={:.2}",
            lat.len(),
            p50,
            lat.quantile_us(0.99).unwrap_or(0.0),
            lat.mean_us().unwrap_or(0.0),
            delta.mean_fsync_us,
            delta.mean_batch,
        ));
        for (mode, raw) in &raw_p50 {
            summary.line(format!(
                "{label} p50 / raw {} p50 = {:.3}x{}",
                mode.name(),
                p50 / raw,
                if *mode == RawMode::Append && spin.is_none() {
                    "  (target <= 1.3x)"
                } else {
                    ""
                }
            ));
        }
        if spin.is_none() {
            paired(&db, &mut logs, &frame, &summary);
        }
        db.shutdown().expect("shutdown");
    }

    // 3. Concurrent durable committers: throughput curve.
    let mut rates = Vec::new();
    {
        let mut g = c.benchmark_group("durable_committers");
        g.sampling_mode(SamplingMode::Flat);
        for n in CONCURRENCY {
            let (rate, delta, cpu) = committers(&mut g, root.path(), n, Finality::Durable);
            summary.line(format!(
                "durable {n:>3} committers: {rate:>10.0} commits/s; batch mean={:.2} max={}; commits/fsync={:.2}; fsync mean={:.1}us; fsyncs={}",
                delta.mean_batch,
                delta.max_batch,
                delta.commits_per_fsync(),
                delta.mean_fsync_us,
                delta.fsyncs,
            ));
            summary.line(format!(
                "durable {n:>3} committers: {}",
                cpu_line(&cpu, &delta)
            ));
            rates.push((n, rate));
        }
        g.finish();
    }
    let base = rates[0].1;
    for (n, rate) in &rates {
        summary.line(format!(
            "durable {n:>3} committers / 1 committer = {:.2}x",
            rate / base
        ));
    }

    // 4. Visible finality, 16 committers.
    {
        let mut g = c.benchmark_group("visible_committers");
        g.sampling_mode(SamplingMode::Flat);
        let (rate, delta, cpu) = committers(&mut g, root.path(), 16, Finality::Visible);
        summary.line(format!(
            "visible  16 committers: {rate:>10.0} commits/s; batch mean={:.2} max={}; commits/fsync={:.2}; fsync mean={:.1}us",
            delta.mean_batch,
            delta.max_batch,
            delta.commits_per_fsync(),
            delta.mean_fsync_us,
        ));
        summary.line(format!(
            "visible  16 committers: {}",
            cpu_line(&cpu, &delta)
        ));
        g.finish();
    }

    c.final_summary();
    summary.print("commit");
}

/// Interleaves single durable commits with the raw appends for about three seconds, so
/// the engine and the raw baselines see the same disk conditions; reports p50 ratios.
fn paired(db: &AedbInstance, logs: &mut [(RawMode, RawLog)], frame: &[u8], summary: &Summary) {
    let ns = namespace();
    let engine = Latencies::default();
    let raws: Vec<Latencies> = logs.iter().map(|_| Latencies::default()).collect();
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        for ((_, log), lat) in logs.iter_mut().zip(&raws) {
            let t = Instant::now();
            log.append_sync(frame);
            lat.extend(&[t.elapsed().as_nanos() as u64]);
            let tx = small_put(&ns, 1, i);
            i += 1;
            let t = Instant::now();
            db.commit_with(tx, Finality::Durable).expect("commit");
            engine.extend(&[t.elapsed().as_nanos() as u64]);
        }
    }
    let p50 = engine.quantile_us(0.5).unwrap_or(0.0);
    summary.line(format!(
        "paired run: engine durable commit n={} p50={p50:.1}us p99={:.1}us",
        engine.len(),
        engine.quantile_us(0.99).unwrap_or(0.0)
    ));
    for ((mode, _), lat) in logs.iter().zip(&raws) {
        let raw = lat.quantile_us(0.5).unwrap_or(0.0);
        summary.line(format!(
            "paired run: raw {:<10} n={} p50={raw:.1}us p99={:.1}us -> engine/raw p50 = {:.3}x",
            mode.name(),
            lat.len(),
            lat.quantile_us(0.99).unwrap_or(0.0),
            p50 / raw
        ));
    }
}

/// CPU seconds by thread between two samples.
type CpuSplit = BTreeMap<String, f64>;

/// Benchmarks `n` concurrent committers on a fresh production instance; returns the
/// commits/s over every timed iteration, what the engine's counters did, and the CPU
/// time by thread (warm-up included, like the counters).
fn committers(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    root: &std::path::Path,
    n: usize,
    finality: Finality,
) -> (f64, MetricsDelta, CpuSplit) {
    let dir = scratch_dir(root.to_str().expect("utf-8 path"));
    let db: AedbInstance = open_production(dir.path());
    let before = db.operational_metrics();
    let cpu_before = CpuSample::now();
    let mut commits = 0u64;
    let mut timed = Duration::ZERO;
    g.throughput(Throughput::Elements(n as u64));
    g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
        b.iter_custom(|iters| {
            let elapsed = run_committers(&db, n, iters, finality);
            commits += iters * n as u64;
            timed += elapsed;
            elapsed
        })
    });
    let delta = MetricsDelta::between(&before, &db.operational_metrics());
    let cpu = CpuSample::now().since(&cpu_before);
    db.shutdown().expect("shutdown");
    (commits as f64 / timed.as_secs_f64(), delta, cpu)
}

/// CPU microseconds per commit: sequencer actor thread, WAL writer thread, committer
/// threads (they exit after every timed iteration).
fn cpu_line(cpu: &CpuSplit, delta: &MetricsDelta) -> String {
    let per =
        |name: &str| cpu.get(name).copied().unwrap_or(0.0) * 1e6 / delta.commits.max(1) as f64;
    let (actors, writer, committers) = (
        per("aedb-sequencer"),
        per("aedb-wal-writer"),
        per(EXITED_THREADS),
    );
    format!(
        "CPU per commit: sequencer {actors:.1}us + wal writer {writer:.1}us + committers {committers:.1}us = {:.1}us",
        actors + writer + committers
    )
}

/// Profiling mode: `n` committers in a plain loop for `AEDB_PROFILE_SECS` seconds.
fn profile(n: usize) {
    let secs: u64 = std::env::var("AEDB_PROFILE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let finality = if std::env::var_os("AEDB_PROFILE_VISIBLE").is_some() {
        Finality::Visible
    } else {
        Finality::Durable
    };
    let root = scratch_dir(env!("CARGO_TARGET_TMPDIR"));
    let db = open_production(root.path());
    let before = db.operational_metrics();
    let cpu_before = CpuSample::now();
    let (mut commits, mut timed) = (0u64, Duration::ZERO);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(secs) {
        timed += run_committers(&db, n, 200, finality);
        commits += 200 * n as u64;
    }
    let delta = MetricsDelta::between(&before, &db.operational_metrics());
    let cpu = CpuSample::now().since(&cpu_before);
    println!(
        "profile {n} committers {finality:?}: {:.0} commits/s; batch mean={:.2}; commits/fsync={:.2}; fsync mean={:.1}us",
        commits as f64 / timed.as_secs_f64(),
        delta.mean_batch,
        delta.commits_per_fsync(),
        delta.mean_fsync_us
    );
    println!("{}", cpu_line(&cpu, &delta));
    println!(
        "CPU seconds by thread: {cpu:?} over {:.1}s wall",
        started.elapsed().as_secs_f64()
    );
    db.shutdown().expect("shutdown");
}
