//! Backup benchmarks (issue 5): hot full backup, strict restore, incremental backup cost
//! against the WAL written since the parent, and commit throughput while a full backup
//! runs.
//!
//! Setup (untimed, once per run): a data directory in the production profile with the
//! at-rest key on (`AedbConfig::production(..).with_checkpoint_key(..)`, so checkpoints
//! and WAL batches are sealed like production) and automatic checkpoints pushed out of
//! reach, so that the only checkpoints are the ones `backup_full` takes itself and none
//! runs in the background of a timed backup. 1,000,000 keys are loaded in commits of
//! 10,000 puts: 16-byte keys, values of 32..=100 bytes (mean 66).
//!
//! Groups, in run order:
//! - `backup_1M/full` (part 1): `backup_full` of the 1M-key database into a fresh
//!   directory. Before each, one small durable commit (untimed), so every backup takes a
//!   real checkpoint of the 1M-key state, as a hot backup of a live database does. The
//!   time therefore includes that checkpoint (encode + seal + `fsync`) as well as the
//!   copy (read, SHA-256, write, `fsync`) of the checkpoint and of the WAL after it.
//! - `backup_1M/restore_strict` (part 1): `restore_from_backup_chain` of one full backup
//!   into a fresh directory, `strict: true` (every file hashed, every sealed batch
//!   authenticated, checkpoint opened and decoded, WAL replayed, new checkpoint written).
//! - `incremental_1M/{1,8,64}MB` (part 2): per iteration, an untimed full backup as the
//!   parent, then N MB of WAL (durable commits of 1,000 puts overwriting existing keys,
//!   so the database stays at 1M keys), then the timed `backup_incremental`.
//! - `incremental_10k/{8,64}MB` (part 2): the same on a 10,000-key database, to show what
//!   the incremental cost does not depend on.
//! - commit throughput with and without a full backup running (part 3, not criterion):
//!   64 durable committers (one-put commits) on the 1M-key database for 3 s phases, in
//!   ABCDE EDCBA order: (A) nothing else, (B) a background thread looping `backup_full`,
//!   and three controls for the profile: (C) the same with the backup thread and the
//!   engine's checkpoint thread at nice 19, (D) I/O only: the same files written as one
//!   `backup_full` writes them, with in-kernel `std::fs::copy` + `fsync`, paced to the
//!   measured backup period, (E) CPU only: one thread spinning with the backup threads'
//!   measured CPU share, no I/O.
//!   Per mode: commits/s and the ratio to (A), group-commit batch and `fdatasync`
//!   latency, CPU by thread, system CPU and disk utilisation.
//!
//! A `===== backup =====` block at the end prints every figure RESULTS.md needs.
//! `AEDB_BACKUP_PARTS=1,3` runs only the listed parts (the database is built either way).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench -p aedb-benches --bench backup`
//! (data goes under the target dir's `tmp/`, or `$AEDB_BENCH_DIR`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use aedb::{
    AedbInstance, BackupReport, Finality, KvKey, KvValue, Namespace, RestoreOptions, Transaction,
    restore_from_backup_chain,
};
use aedb_benches::{
    CpuSample, EXITED_THREADS, MetricsDelta, SplitMix64, Summary, key_bytes, namespace,
    open_sealed, scratch_dir, sealed_production, small_put,
};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};

/// Keys of the large database.
const KEYS: u64 = 1_000_000;
/// Keys of the small database (incremental comparison).
const SMALL_KEYS: u64 = 10_000;
/// Puts per load transaction.
const LOAD_TX: u64 = 10_000;
/// Puts per transaction when writing WAL for the incremental benchmark.
const WAL_TX: u64 = 1_000;
/// WAL written since the parent, in MiB, for the incremental benchmark.
const INC_SIZES_MIB: [u64; 3] = [1, 8, 64];
/// The same on the small database.
const SMALL_INC_SIZES_MIB: [u64; 2] = [8, 64];
/// Committer threads of part 3.
const COMMITTERS: usize = 64;
/// Phases of part 3 (a fifth per load, ABCDE EDCBA order) and their length.
const PHASES: usize = 20;
const PHASE: Duration = Duration::from_secs(3);

const MIB: u64 = 1024 * 1024;

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10)
        .configure_from_args();
    let summary = Summary::default();
    let root = scratch_dir(env!("CARGO_TARGET_TMPDIR"));
    summary.line(format!("bench dir: {}", root.path().display()));
    summary.line(format!("load average at start: {}", loadavg()));

    let big_dir = scratch_dir(root.path().to_str().expect("utf-8 path"));
    let db = build(big_dir.path(), KEYS, &summary);
    let mut generation = 1u64;
    // `AEDB_BACKUP_PARTS=1,3` runs only those parts (default: all).
    let parts = std::env::var("AEDB_BACKUP_PARTS").unwrap_or_else(|_| "1,2,3".into());
    let part = |n: &str| parts.split(',').any(|p| p.trim() == n);

    if part("1") {
        full_and_restore(&mut c, &db, root.path(), &summary);
        summary.line(format!("load average: {}", loadavg()));
    }
    if part("2") {
        incremental(
            &mut c,
            &db,
            KEYS,
            "incremental_1M",
            &INC_SIZES_MIB,
            root.path(),
            &mut generation,
            &summary,
        );
        summary.line(format!("load average: {}", loadavg()));
        let small_dir = scratch_dir(root.path().to_str().expect("utf-8 path"));
        let small = build(small_dir.path(), SMALL_KEYS, &summary);
        incremental(
            &mut c,
            &small,
            SMALL_KEYS,
            "incremental_10k",
            &SMALL_INC_SIZES_MIB,
            root.path(),
            &mut generation,
            &summary,
        );
        small.shutdown().expect("shutdown small");
        summary.line(format!("load average: {}", loadavg()));
    }
    if part("3") {
        commits_during_backup(&db, root.path(), &summary);
    }
    summary.line(format!("load average at end: {}", loadavg()));
    db.shutdown().expect("shutdown");

    c.final_summary();
    summary.print("backup");
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    mb(bytes) / d.as_secs_f64().max(1e-9)
}

/// The value stored for key `i` in generation `generation`: 32..=100 pseudo-random bytes.
fn value_for(i: u64, generation: u64) -> KvValue {
    let mut rng = SplitMix64::new(i ^ generation.rotate_left(40));
    let len = 32 + (rng.next() % 69) as usize;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(len);
    KvValue::new(v).expect("value within limits")
}

/// A transaction putting keys `from..to` (modulo `keys`) with generation `generation`.
fn puts(ns: &Namespace, from: u64, to: u64, keys: u64, generation: u64) -> Transaction {
    let mut tx = Transaction::new();
    for j in from..to {
        let k = j % keys;
        tx = tx.kv_put(
            ns,
            KvKey::new(key_bytes(k)).expect("key"),
            value_for(k, generation),
        );
    }
    tx
}

/// Opens a sealed production database in `dir` and loads `keys` keys.
fn build(dir: &Path, keys: u64, summary: &Summary) -> AedbInstance {
    let t = Instant::now();
    let db = open_sealed(dir, true);
    let ns = namespace();
    let mut i = 0;
    while i < keys {
        let end = (i + LOAD_TX).min(keys);
        db.commit_with(puts(&ns, i, end, keys, 0), Finality::Visible)
            .expect("load commit");
        i = end;
    }
    db.flush().expect("flush load");
    let m = db.operational_metrics();
    summary.line(format!(
        "build: {keys} keys (16-byte keys, 32..=100-byte values) loaded in {:.2}s, {:.1} MB of WAL",
        t.elapsed().as_secs_f64(),
        mb(m.wal_bytes),
    ));
    db
}

/// Writes at least `target` bytes of WAL with durable commits of [`WAL_TX`] puts that
/// overwrite existing keys from `cursor` on; returns the WAL bytes written.
fn write_wal(db: &AedbInstance, keys: u64, cursor: &mut u64, target: u64, generation: u64) -> u64 {
    let ns = namespace();
    let start = db.operational_metrics().wal_bytes;
    loop {
        let written = db.operational_metrics().wal_bytes - start;
        if written >= target {
            return written;
        }
        let tx = puts(&ns, *cursor, *cursor + WAL_TX, keys, generation);
        db.commit_with(tx, Finality::Durable).expect("wal commit");
        *cursor += WAL_TX;
    }
}

/// One small durable commit, so the next `checkpoint_now` has something new to write.
fn touch(db: &AedbInstance, i: u64) {
    db.commit_with(small_put(&namespace(), 1000, i), Finality::Durable)
        .expect("touch commit");
}

fn no_progress() -> impl FnMut(u64, u64) {
    |_, _| {}
}

fn remove(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("remove bench dir");
    }
}

/// Checkpoint and WAL bytes of a backup.
fn split(report: &BackupReport) -> (u64, u64) {
    let ckpt = report.manifest.checkpoint_file().map_or(0, |f| f.len);
    let wal = report.manifest.wal_files().map(|f| f.len).sum();
    (ckpt, wal)
}

/// Median, min and max of `xs`.
fn stats(mut xs: Vec<f64>) -> (f64, f64, f64) {
    if xs.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

struct FullRun {
    wall: Duration,
    bytes: u64,
    ckpt: u64,
    wal: u64,
    ckpt_micros: u64,
}

struct RestoreRun {
    wall: Duration,
    bytes: u64,
    frames: u64,
}

/// Part 1: full backup and strict restore throughput of the 1M-key database.
fn full_and_restore(c: &mut Criterion, db: &AedbInstance, root: &Path, summary: &Summary) {
    // The restore source (and the bytes for criterion's throughput), untimed.
    touch(db, 0);
    let src = root.join("full-src");
    let t = Instant::now();
    let src_report = db.backup_full(&src, &mut no_progress()).expect("backup");
    let first = t.elapsed();
    let (ckpt, wal) = split(&src_report);
    summary.line(format!(
        "part 1: first backup_full (restore source): {:.1} MB ({:.1} MB checkpoint + {:.1} MB WAL in {} segment(s)) in {:.2}s, lsn {}..={}",
        mb(src_report.bytes),
        mb(ckpt),
        mb(wal),
        src_report.manifest.wal_files().count(),
        first.as_secs_f64(),
        src_report.manifest.first_lsn.get(),
        src_report.manifest.last_lsn.get(),
    ));

    let mut g = c.benchmark_group("backup_1M");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Bytes(src_report.bytes));
    let runs = Mutex::new(Vec::new());
    let mut n = 0u64;
    g.bench_function("full", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                touch(db, n);
                let dir = root.join(format!("full-{n}"));
                let t = Instant::now();
                let report = db.backup_full(&dir, &mut no_progress()).expect("backup");
                let wall = t.elapsed();
                total += wall;
                let (ckpt, wal) = split(&report);
                runs.lock().expect("runs").push(FullRun {
                    wall,
                    bytes: report.bytes,
                    ckpt,
                    wal,
                    ckpt_micros: db.operational_metrics().checkpoint_micros,
                });
                remove(&dir);
            }
            total
        })
    });

    let restores = Mutex::new(Vec::new());
    let chain = [src.clone()];
    g.bench_function("restore_strict", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let target = root.join(format!("restore-{n}"));
                let options = RestoreOptions {
                    config: sealed_production(true),
                    strict: true,
                    target_lsn: None,
                };
                let t = Instant::now();
                let report =
                    restore_from_backup_chain(&chain, &target, options, &mut no_progress())
                        .expect("restore");
                let wall = t.elapsed();
                total += wall;
                assert_eq!(report.lsn, src_report.manifest.last_lsn);
                restores.lock().expect("restores").push(RestoreRun {
                    wall,
                    bytes: report.bytes_verified,
                    frames: report.frames_replayed,
                });
                remove(&target);
            }
            total
        })
    });
    g.finish();

    // Sanity, untimed: a restored directory opens and holds the data.
    let target = root.join("restore-check");
    let options = RestoreOptions {
        config: sealed_production(true),
        strict: true,
        target_lsn: None,
    };
    restore_from_backup_chain(&chain, &target, options, &mut no_progress()).expect("restore");
    let t = Instant::now();
    let restored = AedbInstance::open(&target, sealed_production(true)).expect("open restored");
    let open = t.elapsed();
    let ns = namespace();
    let last = restored
        .snapshot()
        .expect("snapshot")
        .kv_get(&ns, &key_bytes(KEYS - 1))
        .expect("read");
    assert_eq!(
        last,
        db.snapshot()
            .expect("snapshot")
            .kv_get(&ns, &key_bytes(KEYS - 1))
            .expect("read")
    );
    assert_eq!(
        restored.snapshot().expect("snapshot").lsn(),
        src_report.manifest.last_lsn
    );
    restored.shutdown().expect("shutdown restored");
    remove(&target);
    remove(&src);

    let runs = runs.into_inner().expect("runs");
    let (t50, tmin, tmax) = stats(runs.iter().map(|r| r.wall.as_secs_f64()).collect());
    let (r50, rmin, rmax) = stats(runs.iter().map(|r| mb_per_s(r.bytes, r.wall)).collect());
    let (ck50, _, _) = stats(runs.iter().map(|r| r.ckpt_micros as f64 / 1e3).collect());
    let (b50, bmin, bmax) = stats(runs.iter().map(|r| mb(r.bytes)).collect());
    let (c50, _, _) = stats(runs.iter().map(|r| mb(r.ckpt)).collect());
    let (w50, wmin, wmax) = stats(runs.iter().map(|r| mb(r.wal)).collect());
    let (cp50, cpmin, cpmax) = stats(
        runs.iter()
            .map(|r| {
                mb_per_s(
                    r.bytes,
                    r.wall.saturating_sub(Duration::from_micros(r.ckpt_micros)),
                )
            })
            .collect(),
    );
    summary.line(format!(
        "part 1: backup_full x{}: {b50:.1} MB copied (min {bmin:.1}, max {bmax:.1}; checkpoint {c50:.1} MB + WAL {w50:.1} MB, WAL min {wmin:.1} max {wmax:.1}) in {t50:.2}s median (min {tmin:.2}, max {tmax:.2})",
        runs.len(),
    ));
    summary.line(format!(
        "part 1: backup_full throughput {r50:.0} MB/s median (min {rmin:.0}, max {rmax:.0}); of which the checkpoint it takes: {ck50:.0} ms median (engine checkpoint_micros); copy alone {cp50:.0} MB/s median (min {cpmin:.0}, max {cpmax:.0})",
    ));
    let restores = restores.into_inner().expect("restores");
    let (t50, tmin, tmax) = stats(restores.iter().map(|r| r.wall.as_secs_f64()).collect());
    let (r50, rmin, rmax) = stats(restores.iter().map(|r| mb_per_s(r.bytes, r.wall)).collect());
    summary.line(format!(
        "part 1: restore_from_backup_chain strict x{}: {:.1} MB verified, {} frames replayed, {t50:.2}s median (min {tmin:.2}, max {tmax:.2}) = {r50:.0} MB/s median (min {rmin:.0}, max {rmax:.0})",
        restores.len(),
        mb(restores.first().map_or(0, |r| r.bytes)),
        restores.first().map_or(0, |r| r.frames),
    ));
    summary.line(format!(
        "part 1: restored directory opens in {:.2}s at the backup's last lsn; last key equal to the source",
        open.as_secs_f64()
    ));
}

struct IncRun {
    wall: Duration,
    wal_since: u64,
    bytes: u64,
    parent_tail: u64,
    segments: usize,
}

/// Part 2: incremental backup time against the WAL written since the parent.
#[allow(clippy::too_many_arguments)]
fn incremental(
    c: &mut Criterion,
    db: &AedbInstance,
    keys: u64,
    group: &str,
    sizes_mib: &[u64],
    root: &Path,
    generation: &mut u64,
    summary: &Summary,
) {
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat);
    let mut cursor = 0u64;
    let mut n = 0u64;
    let mut all: BTreeMap<u64, Vec<IncRun>> = BTreeMap::new();
    for &size in sizes_mib {
        let runs = Mutex::new(Vec::new());
        g.throughput(Throughput::Bytes(size * MIB));
        g.bench_function(BenchmarkId::from_parameter(format!("{size}MB")), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    *generation += 1;
                    let parent: PathBuf = root.join(format!("{group}-parent-{n}"));
                    let child: PathBuf = root.join(format!("{group}-child-{n}"));
                    let p = db.backup_full(&parent, &mut no_progress()).expect("parent");
                    let parent_tail = p.manifest.wal_files().last().map_or(0, |f| f.len);
                    let wal_since = write_wal(db, keys, &mut cursor, size * MIB, *generation);
                    let t = Instant::now();
                    let report = db
                        .backup_incremental(&child, &parent, &mut no_progress())
                        .expect("incremental");
                    let wall = t.elapsed();
                    total += wall;
                    runs.lock().expect("runs").push(IncRun {
                        wall,
                        wal_since,
                        bytes: report.bytes,
                        parent_tail,
                        segments: report.manifest.wal_files().count(),
                    });
                    remove(&child);
                    remove(&parent);
                }
                total
            })
        });
        all.insert(size, runs.into_inner().expect("runs"));
    }
    g.finish();
    for (size, runs) in &all {
        let (t50, tmin, tmax) = stats(runs.iter().map(|r| r.wall.as_secs_f64() * 1e3).collect());
        let (ws50, _, _) = stats(runs.iter().map(|r| mb(r.wal_since)).collect());
        let (b50, bmin, bmax) = stats(runs.iter().map(|r| mb(r.bytes)).collect());
        let (pt50, ptmin, ptmax) = stats(runs.iter().map(|r| mb(r.parent_tail)).collect());
        let (wr50, _, _) = stats(runs.iter().map(|r| mb_per_s(r.wal_since, r.wall)).collect());
        let (br50, brmin, brmax) = stats(runs.iter().map(|r| mb_per_s(r.bytes, r.wall)).collect());
        let (s50, _, _) = stats(runs.iter().map(|r| r.segments as f64).collect());
        summary.line(format!(
            "part 2: {group} {size:>2} MiB x{}: WAL since parent {ws50:.1} MB; copied {b50:.1} MB (min {bmin:.1}, max {bmax:.1}) in {s50:.0} segment(s), of which re-copied parent tail segment prefix {pt50:.1} MB (min {ptmin:.1}, max {ptmax:.1}); time {t50:.0} ms median (min {tmin:.0}, max {tmax:.0}); {wr50:.0} MB/s of WAL since parent, {br50:.0} MB/s copied (min {brmin:.0}, max {brmax:.0})",
            runs.len(),
        ));
    }
}

/// Cumulative counters of the `vda`-like disk with the most I/O time (io_ticks, ms) and
/// system CPU (busy and iowait jiffies, total jiffies).
#[derive(Clone, Copy, Default)]
struct SysSample {
    disk_io_ms: u64,
    disk_write_sectors: u64,
    cpu_busy: u64,
    cpu_iowait: u64,
    cpu_total: u64,
}

impl SysSample {
    fn now() -> SysSample {
        let mut s = SysSample::default();
        if let Ok(text) = std::fs::read_to_string("/proc/diskstats") {
            for line in text.lines() {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() < 13 || f[2].starts_with("loop") || f[2].starts_with("ram") {
                    continue;
                }
                // Whole disks only (vda, sda, nvme0n1), not partitions.
                let name = f[2];
                let whole = !name.chars().last().is_some_and(|c| c.is_ascii_digit())
                    || (name.starts_with("nvme") && !name.contains('p'));
                if !whole {
                    continue;
                }
                let io_ms: u64 = f[12].parse().unwrap_or(0);
                if io_ms >= s.disk_io_ms {
                    s.disk_io_ms = io_ms;
                    s.disk_write_sectors = f[9].parse().unwrap_or(0);
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = text.lines().next()
        {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            if v.len() >= 5 {
                s.cpu_total = v.iter().sum();
                s.cpu_iowait = v[4];
                s.cpu_busy = s.cpu_total - v[3] - v[4];
            }
        }
        s
    }
}

/// The backup rate limit of the `BackupLimited` phases.
const LIMITED_RATE: u64 = 64 << 20;

/// What runs next to the committers in a phase of part 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Load {
    /// Nothing.
    None,
    /// `backup_full` in a loop.
    Backup,
    /// `backup_full` in a loop with `set_backup_rate_limit(LIMITED_RATE)`.
    BackupLimited,
    /// Control for the disk: the writes of one `backup_full` (the checkpoint file it
    /// writes, then its copy of the checkpoint and the WAL, each file `fsync`ed), done
    /// with `std::fs::copy` (in-kernel, almost no CPU), paced to the measured period of
    /// the `backup_full` loop so the disk sees the same bytes per second.
    CopyOnly,
    /// Control for the CPU: one thread spinning with the duty cycle the backup's threads
    /// used (measured in the `backup_full` phases), no I/O.
    CpuOnly,
}

impl Load {
    const ALL: [Load; 5] = [
        Load::None,
        Load::Backup,
        Load::BackupLimited,
        Load::CopyOnly,
        Load::CpuOnly,
    ];

    fn name(self) -> &'static str {
        match self {
            Load::None => "no backup",
            Load::Backup => "backup_full",
            Load::BackupLimited => "backup 64MB/s",
            Load::CopyOnly => "I/O only",
            Load::CpuOnly => "CPU only",
        }
    }
}

/// What one mode of part 3 accumulated over its phases.
#[derive(Default)]
struct Mode {
    commits: u64,
    secs: f64,
    rates: Vec<f64>,
    cpu: BTreeMap<String, f64>,
    batch: f64,
    batches: f64,
    fsync_us: f64,
    fsyncs: u64,
    disk_busy_ms: u64,
    disk_write_mb: f64,
    cpu_busy: u64,
    cpu_iowait: u64,
    cpu_total: u64,
    backups: u64,
    backup_bytes: u64,
    backup_secs: f64,
}

/// The kernel thread ids of this process's threads named `comm`.
fn tids(comm: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let name = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            if name.trim() == comm {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Part 3: 64 durable committers with and without `backup_full` looping in the
/// background, phases alternating ABCD DCBA, plus the two control loads.
fn commits_during_backup(db: &AedbInstance, root: &Path, summary: &Summary) {
    let ns = namespace();
    let mut modes = Load::ALL.map(|_| Mode::default());
    let mut k = 0u64;
    // The files the I/O control writes: one full backup's checkpoint (twice: the file
    // `checkpoint_now` writes, and the backup's copy of it) and WAL.
    let copy_src = root.join("copy-src");
    let r = db
        .backup_full(&copy_src, &mut no_progress())
        .expect("backup");
    let mut copy_files = Vec::new();
    for f in &r.manifest.files {
        let path = copy_src.join(f.kind.dir()).join(&f.name);
        if f.kind == aedb::backup::BackupFileKind::Checkpoint {
            copy_files.push(path.clone());
        }
        copy_files.push(path);
    }
    // Measured in the `backup_full` phases, used by the controls.
    let mut pace = Duration::from_secs(1);
    let mut duty = 0.5f64;
    let checkpoint_tids = tids("aedb-checkpoint");
    summary.line(format!(
        "part 3: {COMMITTERS} durable committers, {} phases of {:.0}s in ABCDE EDCBA order; checkpoint thread tids {checkpoint_tids:?}",
        PHASES,
        PHASE.as_secs_f64(),
    ));
    for p in 0..PHASES {
        let n_loads = Load::ALL.len();
        let cycle = p % (2 * n_loads);
        let load = Load::ALL[if cycle < n_loads {
            cycle
        } else {
            2 * n_loads - 1 - cycle
        }];
        let mode = &mut modes[Load::ALL.iter().position(|l| *l == load).unwrap_or(0)];
        let limit = (load == Load::BackupLimited).then_some(LIMITED_RATE);
        db.set_backup_rate_limit(limit).expect("rate limit");
        let stop = AtomicBool::new(false);
        let committed = AtomicU64::new(0);
        let backups = Mutex::new(Vec::<(PathBuf, u64, Duration)>::new());
        let barrier = Barrier::new(COMMITTERS + 1);
        let before = db.operational_metrics();
        let mut after = None;
        let mut elapsed = Duration::ZERO;
        let mut cpu = BTreeMap::new();
        let (mut sys0, mut sys1) = (SysSample::default(), SysSample::default());
        std::thread::scope(|s| {
            for t in 0..COMMITTERS {
                let (ns, barrier, stop, committed) = (&ns, &barrier, &stop, &committed);
                std::thread::Builder::new()
                    .name("bench-committer".into())
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || {
                        barrier.wait();
                        let mut i = 0u64;
                        let mut done = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            db.commit_with(small_put(ns, t as u64, i), Finality::Durable)
                                .expect("commit");
                            i += 1;
                            // Only commits acknowledged inside the phase count.
                            if !stop.load(Ordering::Relaxed) {
                                done += 1;
                            }
                        }
                        committed.fetch_add(done, Ordering::Relaxed);
                    })
                    .expect("spawn committer");
            }
            if load != Load::None {
                let (stop, backups, k, copy_files) = (&stop, &backups, &mut k, &copy_files);
                let (pace, duty) = (pace, duty);
                std::thread::Builder::new()
                    .name("bench-backup".into())
                    .spawn_scoped(s, move || {
                        while !stop.load(Ordering::Relaxed) {
                            *k += 1;
                            let dir = root.join(format!("during-{p}-{k}"));
                            let t = Instant::now();
                            let bytes = match load {
                                Load::CopyOnly => {
                                    std::fs::create_dir_all(&dir).expect("create");
                                    let mut bytes = 0;
                                    for (i, f) in copy_files.iter().enumerate() {
                                        let dst = dir.join(format!("f{i}"));
                                        bytes += std::fs::copy(f, &dst).expect("copy");
                                        std::fs::File::open(&dst)
                                            .and_then(|f| f.sync_all())
                                            .expect("fsync");
                                    }
                                    while t.elapsed() < pace && !stop.load(Ordering::Relaxed) {
                                        std::thread::sleep(Duration::from_millis(5));
                                    }
                                    bytes
                                }
                                Load::CpuOnly => {
                                    // 10 ms slices: spin `duty` of each, sleep the rest.
                                    let slice = Duration::from_millis(10);
                                    while !stop.load(Ordering::Relaxed) {
                                        let s0 = Instant::now();
                                        while s0.elapsed() < slice.mul_f64(duty) {
                                            std::hint::spin_loop();
                                        }
                                        std::thread::sleep(slice.mul_f64(1.0 - duty));
                                    }
                                    0
                                }
                                _ => {
                                    db.backup_full(&dir, &mut no_progress())
                                        .expect("backup")
                                        .bytes
                                }
                            };
                            backups
                                .lock()
                                .expect("backups")
                                .push((dir, bytes, t.elapsed()));
                        }
                    })
                    .expect("spawn backup");
            }
            let cpu0 = CpuSample::now();
            sys0 = SysSample::now();
            barrier.wait();
            let started = Instant::now();
            std::thread::sleep(PHASE);
            // Sampled while every thread is still alive, so CPU is attributed by name.
            cpu = CpuSample::now().since(&cpu0);
            sys1 = SysSample::now();
            after = Some(db.operational_metrics());
            elapsed = started.elapsed();
            stop.store(true, Ordering::Relaxed);
        });
        let delta = MetricsDelta::between(&before, &after.expect("metrics"));
        let n = committed.load(Ordering::Relaxed);
        let rate = n as f64 / elapsed.as_secs_f64();
        let backups = backups.into_inner().expect("backups");
        summary.line(format!(
            "part 3: phase {p:>2} ({:<12}): {rate:>6.0} commits/s, mean batch {:>5.1}, mean fdatasync {:>5.0} us, {} loops of the load completed",
            load.name(),
            delta.mean_batch,
            delta.mean_fsync_us,
            backups.len(),
        ));
        mode.commits += n;
        mode.secs += elapsed.as_secs_f64();
        mode.rates.push(rate);
        for (name, secs) in cpu {
            *mode.cpu.entry(name).or_insert(0.0) += secs;
        }
        mode.batch += delta.mean_batch * delta.batches as f64;
        mode.batches += delta.batches as f64;
        mode.fsync_us += delta.mean_fsync_us * delta.fsyncs as f64;
        mode.fsyncs += delta.fsyncs;
        mode.disk_busy_ms += sys1.disk_io_ms - sys0.disk_io_ms;
        mode.disk_write_mb +=
            (sys1.disk_write_sectors - sys0.disk_write_sectors) as f64 * 512.0 / 1e6;
        mode.cpu_busy += sys1.cpu_busy - sys0.cpu_busy;
        mode.cpu_iowait += sys1.cpu_iowait - sys0.cpu_iowait;
        mode.cpu_total += sys1.cpu_total - sys0.cpu_total;
        for (dir, bytes, d) in backups {
            mode.backups += 1;
            mode.backup_bytes += bytes;
            mode.backup_secs += d.as_secs_f64();
            remove(&dir);
        }
        if load == Load::Backup && mode.backups > 0 {
            pace = Duration::from_secs_f64(mode.backup_secs / mode.backups as f64);
            let cpu_s = |n: &str| mode.cpu.get(n).copied().unwrap_or(0.0);
            duty =
                ((cpu_s("aedb-checkpoint") + cpu_s("bench-backup")) / mode.secs).clamp(0.05, 1.0);
        }
    }
    remove(&copy_src);
    summary.line(format!(
        "part 3: controls used: I/O-only pace {:.2}s per loop, CPU-only duty {:.2} of one core",
        pace.as_secs_f64(),
        duty
    ));
    let base = modes[0].commits as f64 / modes[0].secs;
    for (load, m) in Load::ALL.iter().zip(&modes) {
        let name = load.name();
        let total = m.commits as f64 / m.secs;
        let cpu_s = |n: &str| m.cpu.get(n).copied().unwrap_or(0.0);
        // Per-thread figures are whole clock ticks: the 64 short-lived committer slices
        // round down, and the remainder shows up as EXITED_THREADS; count it with them.
        let committers = cpu_s("bench-committer") + cpu_s(EXITED_THREADS);
        let per = |secs: f64| secs * 1e6 / m.commits.max(1) as f64;
        let all: f64 = m.cpu.values().sum();
        let path = committers + cpu_s("aedb-sequencer") + cpu_s("aedb-wal-writer");
        let load_cpu = cpu_s("aedb-checkpoint") + cpu_s("bench-backup");
        let pair: Vec<f64> = m
            .rates
            .iter()
            .zip(&modes[0].rates)
            .map(|(w, wo)| w / wo)
            .collect();
        let (r50, rmin, rmax) = stats(pair);
        summary.line(format!(
            "part 3: {name:<12}: {total:>6.0} commits/s over {:.1}s ({} commits) = {:.3}x no backup (phase-pair ratios median {r50:.2}, min {rmin:.2}, max {rmax:.2}); per-phase {:?}",
            m.secs,
            m.commits,
            total / base,
            m.rates.iter().map(|r| r.round() as u64).collect::<Vec<_>>(),
        ));
        summary.line(format!(
            "part 3: {name:<12}: mean batch {:.1}, mean fdatasync {:.0} us ({} fdatasyncs); commit-path CPU {:.1} us/commit (committers {:.1} + sequencer {:.1} + WAL writer {:.1}) = {:.2} cores; load CPU: checkpoint thread {:.2} + backup/copy thread {:.2} = {:.2} cores; process {:.2} cores",
            m.batch / m.batches.max(1.0),
            m.fsync_us / m.fsyncs.max(1) as f64,
            m.fsyncs,
            per(path),
            per(committers),
            per(cpu_s("aedb-sequencer")),
            per(cpu_s("aedb-wal-writer")),
            path / m.secs,
            cpu_s("aedb-checkpoint") / m.secs,
            cpu_s("bench-backup") / m.secs,
            load_cpu / m.secs,
            all / m.secs,
        ));
        summary.line(format!(
            "part 3: {name:<12}: system CPU busy {:.0}% of 2 cores (iowait {:.0}%), other processes about {:.2} cores; disk busy {:.0}% of wall, {:.0} MB/s written",
            100.0 * m.cpu_busy as f64 / m.cpu_total.max(1) as f64,
            100.0 * m.cpu_iowait as f64 / m.cpu_total.max(1) as f64,
            (2.0 * m.cpu_busy as f64 / m.cpu_total.max(1) as f64 - all / m.secs).max(0.0),
            100.0 * m.disk_busy_ms as f64 / (m.secs * 1e3),
            m.disk_write_mb / m.secs,
        ));
        if m.backups > 0 {
            summary.line(format!(
                "part 3: {name:<12}: {} loops completed, {:.1} MB each, {:.2}s each ({:.0} MB/s under load)",
                m.backups,
                mb(m.backup_bytes) / m.backups as f64,
                m.backup_secs / m.backups as f64,
                mb(m.backup_bytes) / m.backup_secs,
            ));
        }
    }
}
