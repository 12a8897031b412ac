//! Shared setup for the aedb criterion benchmarks (`benches/benches/*.rs`).
//!
//! **Owns:** where benchmark data lives ([`scratch_dir`]: a temp dir on the same file
//! system as the repository, so raw and engine figures hit the same disk), opening
//! instances ([`open_production`], [`open_development`], [`open_config`]), the workload
//! vocabulary (one benchmark namespace, fixed-size keys and values, [`small_put`]), the raw
//! append + `fdatasync` baseline ([`RawLog`]) that the engine's commit figures are
//! reported against, the concurrent-committer driver ([`run_committers`]), bulk loading
//! ([`load_keys`]) and waiting for its compactions to settle ([`settle_compactions`]),
//! building a WAL for recovery ([`build_wal`],
//! [`no_checkpoint_production`]), and reporting helpers
//! ([`Latencies`], [`MetricsDelta`], [`CpuSample`], [`Summary`]).
//!
//! **Does not own:** any engine behaviour, or the figures themselves: those are printed
//! by the bench binaries and recorded in `benches/RESULTS.md`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use aedb::{
    AedbConfig, AedbInstance, Finality, KvKey, KvValue, Lsn, Namespace, OperationalMetrics,
    Transaction,
};
use aedb_model::{CommitRecord, Effect};
use aedb_wal::{FrameKind, encode_frame};

/// Project of the benchmark namespace.
pub const PROJECT: &str = "bench";
/// Scope of the benchmark namespace.
pub const SCOPE: &str = "main";
/// Length of every benchmark KV key.
pub const KEY_LEN: usize = 16;
/// Length of every benchmark KV value.
pub const VALUE_LEN: usize = 16;
/// Segment size used by the production profile (the engine default, 64 MiB).
pub const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// The benchmark namespace `bench/main`.
pub fn namespace() -> Namespace {
    Namespace::parse(PROJECT, SCOPE).expect("valid benchmark namespace")
}

/// A fresh temporary directory for benchmark data under `root` (or under
/// `$AEDB_BENCH_DIR` when set). Pass `env!("CARGO_TARGET_TMPDIR")` from a bench, which
/// lies inside the target dir, on the same file system as the repository.
pub fn scratch_dir(root: &str) -> tempfile::TempDir {
    let root = std::env::var_os("AEDB_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(root));
    std::fs::create_dir_all(&root).expect("create bench root");
    tempfile::tempdir_in(&root).expect("create bench temp dir")
}

/// Opens a production-profile instance (fsync on, strict) in `dir` and creates the
/// benchmark namespace if it does not exist yet.
pub fn open_production(dir: &Path) -> AedbInstance {
    let db = AedbInstance::open(dir, AedbConfig::production([0u8; 32])).expect("open production");
    ensure_namespace(&db);
    db
}

/// Opens a development-profile instance (**no fsync**) in `dir`, for bulk loading
/// data sets whose durability is not what is being measured.
pub fn open_development(dir: &Path) -> AedbInstance {
    let db = AedbInstance::open(dir, AedbConfig::development()).expect("open development");
    ensure_namespace(&db);
    db
}

/// Opens an instance with `config` in `dir` and creates the benchmark namespace if it
/// does not exist yet (the peer comparison opens the sealed production profile with the
/// engine's default checkpoint policy this way).
pub fn open_config(dir: &Path, config: AedbConfig) -> AedbInstance {
    let db = AedbInstance::open(dir, config).expect("open");
    ensure_namespace(&db);
    db
}

fn ensure_namespace(db: &AedbInstance) {
    let ns = namespace();
    if !db.snapshot().expect("snapshot").has_namespace(&ns) {
        db.create_project(PROJECT).expect("create project");
        db.create_scope(PROJECT, SCOPE).expect("create scope");
    }
}

/// The fixed-length key of item `i` (`k` + 15 zero-padded digits).
pub fn key_bytes(i: u64) -> [u8; KEY_LEN] {
    let mut out = [b'0'; KEY_LEN];
    out[0] = b'k';
    let mut n = i;
    for slot in out[1..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// The fixed-length value stored for item `i`.
pub fn value_bytes(i: u64) -> [u8; VALUE_LEN] {
    let mut out = [0u8; VALUE_LEN];
    out[..8].copy_from_slice(&i.to_le_bytes());
    out[8..].copy_from_slice(&(!i).to_le_bytes());
    out
}

/// The committer workload: a one-mutation transaction putting a 16-byte value at a
/// 16-byte key. Committer `thread` cycles through 1024 keys of its own, so the state
/// stays small however long the benchmark runs.
pub fn small_put(ns: &Namespace, thread: u64, i: u64) -> Transaction {
    let item = thread * 1024 + i % 1024;
    Transaction::new().kv_put(
        ns,
        KvKey::new(key_bytes(item)).expect("key within limits"),
        KvValue::new(value_bytes(i)).expect("value within limits"),
    )
}

/// The exact WAL frame the engine writes for one [`small_put`] commit: the raw
/// baseline appends these same bytes.
pub fn small_put_frame() -> Vec<u8> {
    let record = CommitRecord::Commit {
        idempotency_key: None,
        request: None,
        effects: vec![Effect::KvPut {
            ns: namespace(),
            key: KvKey::new(key_bytes(0)).expect("key"),
            value: KvValue::new(value_bytes(0)).expect("value"),
        }],
    };
    let mut frame = Vec::new();
    encode_frame(
        Lsn::new(3),
        FrameKind::Commit,
        &record.to_bytes(),
        &mut frame,
    )
    .expect("small frame");
    frame
}

/// How the raw baseline file is laid out before the timed appends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawMode {
    /// A fresh file opened `O_APPEND`: every `fdatasync` also has to persist the grown
    /// file size (a journal commit on ext4). The "append + fdatasync".
    Append,
    /// A file preallocated with `fallocate` (exactly as the WAL writer prepares its
    /// segments), written with positioned writes: `fdatasync` converts unwritten extents.
    Preallocated,
    /// A file whose blocks were written with zeros and synced beforehand: `fdatasync`
    /// only flushes data, no metadata (the floor of any durable append).
    Overwrite,
}

impl RawMode {
    /// Every mode, in report order.
    pub const ALL: [RawMode; 3] = [RawMode::Append, RawMode::Preallocated, RawMode::Overwrite];

    /// Short name used in benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            RawMode::Append => "append",
            RawMode::Preallocated => "fallocated",
            RawMode::Overwrite => "prezeroed",
        }
    }
}

/// The raw baseline: appends a frame with one `write` and makes it durable with one
/// `File::sync_data` (`fdatasync`), nothing else.
pub struct RawLog {
    file: File,
    mode: RawMode,
    offset: u64,
    capacity: u64,
}

impl RawLog {
    /// Creates the baseline file `name` in `dir` laid out for `mode`.
    pub fn create(dir: &Path, name: &str, mode: RawMode) -> RawLog {
        let path = dir.join(name);
        let capacity = SEGMENT_SIZE;
        let file = match mode {
            RawMode::Append => OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .expect("create raw append file"),
            RawMode::Preallocated => {
                let f = OpenOptions::new()
                    .create_new(true)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .expect("create raw preallocated file");
                rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, capacity)
                    .expect("fallocate");
                f.sync_all().expect("sync preallocated file");
                f
            }
            RawMode::Overwrite => {
                let mut f = OpenOptions::new()
                    .create_new(true)
                    .read(true)
                    .write(true)
                    .open(&path)
                    .expect("create raw prezeroed file");
                let zeros = vec![0u8; 1 << 20];
                for _ in 0..capacity / zeros.len() as u64 {
                    f.write_all(&zeros).expect("zero-fill");
                }
                f.sync_all().expect("sync prezeroed file");
                f
            }
        };
        if let Some(parent) = path.parent() {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .expect("sync bench dir");
        }
        RawLog {
            file,
            mode,
            offset: 0,
            capacity,
        }
    }

    /// One durable append: `write` the bytes, then `fdatasync`.
    pub fn append_sync(&mut self, bytes: &[u8]) {
        match self.mode {
            RawMode::Append => (&self.file).write_all(bytes).expect("append"),
            RawMode::Preallocated | RawMode::Overwrite => {
                if self.offset + bytes.len() as u64 > self.capacity {
                    self.offset = 0;
                }
                self.file
                    .write_all_at(bytes, self.offset)
                    .expect("positioned write");
                self.offset += bytes.len() as u64;
            }
        }
        self.file.sync_data().expect("fdatasync");
    }
}

/// Runs `threads` committers against `db`, each doing `per_thread` commits of
/// [`small_put`] with `finality`, all released together by a barrier. Returns the wall
/// time from the release to the last commit's acknowledgement (thread start-up is not
/// timed).
pub fn run_committers(
    db: &AedbInstance,
    threads: usize,
    per_thread: u64,
    finality: Finality,
) -> Duration {
    let ns = namespace();
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ns, barrier) = (&ns, &barrier);
            std::thread::Builder::new()
                .name("bench-committer".into())
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || {
                    barrier.wait();
                    for i in 0..per_thread {
                        db.commit_with(small_put(ns, t as u64, i), finality)
                            .expect("commit");
                    }
                })
                .expect("spawn committer");
        }
        barrier.wait();
        let started = Instant::now();
        // Leaving the scope joins every committer.
        started
    })
    .elapsed()
}

/// Level-0 runs at which aedb's default compaction policy merges level 0
/// (`CompactionOptions::l0_runs`, not exposed through `AedbConfig`).
pub const AEDB_L0_TRIGGER: u64 = 4;

/// Waits (up to `cap`) until `db`'s background compaction has nothing left to do: no
/// bytes over any level's target and level 0 below its trigger. Whether it did.
pub fn settle_compactions(db: &AedbInstance, cap: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + cap;
    loop {
        let s = db.operational_metrics().storage;
        let l0 = s.level_runs.first().copied().unwrap_or(0);
        if s.pending_compaction_bytes == 0 && l0 < AEDB_L0_TRIGGER {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Loads keys `0..n` (values [`value_bytes`]) with multi-put transactions of
/// `per_tx` mutations each.
pub fn load_keys(db: &AedbInstance, n: u64, per_tx: u64) {
    for tx in key_batches(n, per_tx) {
        db.commit_with(tx, Finality::Visible).expect("load commit");
    }
    db.flush().expect("flush load");
}

/// The transactions [`load_keys`] commits: keys `0..n`, `per_tx` puts each.
pub fn key_batches(n: u64, per_tx: u64) -> impl Iterator<Item = Transaction> {
    let ns = namespace();
    (0..n).step_by(per_tx.max(1) as usize).map(move |i| {
        (i..(i + per_tx).min(n)).fold(Transaction::new(), |tx, j| {
            tx.kv_put(
                &ns,
                KvKey::new(key_bytes(j)).expect("key"),
                KvValue::new(value_bytes(j)).expect("value"),
            )
        })
    })
}

/// The production profile with automatic checkpoints pushed out of reach, so a WAL
/// built for the recovery benchmark is replayed in full at every open.
pub fn no_checkpoint_production() -> AedbConfig {
    AedbConfig::production([0u8; 32])
        .checkpoint_wal_bytes(u64::MAX)
        .checkpoint_interval(Duration::from_secs(24 * 3600))
        .checkpoint_on_shutdown(false)
}

/// Builds a WAL of `commits` one-put commits (distinct keys `0..commits`, plus the two
/// DDL commits creating the benchmark namespace) in `data_dir` through the engine
/// itself ([`no_checkpoint_production`], `Visible` finality, `threads` committers,
/// one flush at the end), so frames, segments and manifest are exactly what the engine
/// writes. Returns the instance's last LSN.
pub fn build_wal(data_dir: &Path, commits: u64, threads: u64) -> u64 {
    let db = AedbInstance::open(data_dir, no_checkpoint_production()).expect("open for build");
    ensure_namespace(&db);
    let ns = namespace();
    let per = commits.div_ceil(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (db, ns) = (&db, &ns);
            s.spawn(move || {
                for item in t * per..((t + 1) * per).min(commits) {
                    let tx = Transaction::new().kv_put(
                        ns,
                        KvKey::new(key_bytes(item)).expect("key"),
                        KvValue::new(value_bytes(item)).expect("value"),
                    );
                    db.commit_with(tx, Finality::Visible).expect("build commit");
                }
            });
        }
    });
    db.flush().expect("flush build");
    let lsn = db.snapshot().expect("snapshot").lsn().get();
    db.shutdown().expect("shutdown build");
    lsn
}

/// A SplitMix64 generator: deterministic, dependency-free random indices.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next pseudo-random value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Per-operation latencies collected across a benchmark's samples.
#[derive(Clone, Debug, Default)]
pub struct Latencies(Arc<Mutex<Vec<u64>>>);

impl Latencies {
    /// Records a batch of latencies in nanoseconds.
    pub fn extend(&self, nanos: &[u64]) {
        self.0
            .lock()
            .expect("latencies lock")
            .extend_from_slice(nanos);
    }

    /// Number of recorded operations.
    pub fn len(&self) -> usize {
        self.0.lock().expect("latencies lock").len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `q` quantile (0.0..=1.0) in microseconds, or `None` if empty.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        let mut v = self.0.lock().expect("latencies lock").clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let idx = ((v.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Some(v[idx] as f64 / 1000.0)
    }

    /// Mean in microseconds, or `None` if empty.
    pub fn mean_us(&self) -> Option<f64> {
        let v = self.0.lock().expect("latencies lock");
        if v.is_empty() {
            return None;
        }
        Some(v.iter().map(|&n| n as f64).sum::<f64>() / v.len() as f64 / 1000.0)
    }
}

/// What the engine's counters did between two [`OperationalMetrics`] copies.
#[derive(Clone, Debug)]
pub struct MetricsDelta {
    /// Commits applied.
    pub commits: u64,
    /// `fdatasync`s issued by the WAL writer.
    pub fsyncs: u64,
    /// Group-commit batches processed.
    pub batches: u64,
    /// Mean submissions per group-commit batch.
    pub mean_batch: f64,
    /// Largest batch seen since the instance opened.
    pub max_batch: u64,
    /// Mean `fdatasync` latency, microseconds.
    pub mean_fsync_us: f64,
    /// WAL bytes written.
    pub wal_bytes: u64,
}

impl MetricsDelta {
    /// The change from `before` to `after`.
    pub fn between(before: &OperationalMetrics, after: &OperationalMetrics) -> MetricsDelta {
        let b = &after.group_commit_batch_size;
        let b0 = &before.group_commit_batch_size;
        let f = &after.fsync_latency_us;
        let f0 = &before.fsync_latency_us;
        let batches = b.count - b0.count;
        let fsync_n = f.count - f0.count;
        MetricsDelta {
            commits: after.commits - before.commits,
            fsyncs: after.fsyncs - before.fsyncs,
            batches,
            mean_batch: ratio(b.sum - b0.sum, batches),
            max_batch: b.max,
            mean_fsync_us: ratio(f.sum - f0.sum, fsync_n),
            wal_bytes: after.wal_bytes - before.wal_bytes,
        }
    }

    /// Commits per `fdatasync`.
    pub fn commits_per_fsync(&self) -> f64 {
        ratio(self.commits, self.fsyncs)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Lines collected during a bench run and printed as one block at the end, so the
/// figures that RESULTS.md needs are easy to find in criterion's output.
#[derive(Debug, Default)]
pub struct Summary(Mutex<Vec<String>>);

impl Summary {
    /// Adds one line.
    pub fn line(&self, line: impl Into<String>) {
        let line = line.into();
        println!("SUMMARY {line}");
        self.0.lock().expect("summary lock").push(line);
    }

    /// Prints every line under a banner.
    pub fn print(&self, title: &str) {
        println!("\n===== {title} =====");
        for line in self.0.lock().expect("summary lock").iter() {
            println!("{line}");
        }
        println!("===== end =====");
    }
}

/// Name under which [`CpuSample::since`] reports CPU time of threads that exited between the two
/// samples (in the commit benchmarks: the committer threads).
pub const EXITED_THREADS: &str = "(exited threads)";

/// Per-thread CPU time of this process, read from `/proc/self/task/*/stat` (clock
/// ticks, normally 10 ms each: meaningful over seconds, not microseconds).
#[derive(Clone, Debug, Default)]
pub struct CpuSample {
    process_ticks: u64,
    tasks: BTreeMap<u32, (String, u64)>,
}

/// `utime + stime` and `comm` from a `stat` file.
fn stat_ticks(path: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // After the comm: state is field 3 of the stat line, utime 14 and stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

impl CpuSample {
    /// Reads the current figures (empty where `/proc` is unavailable).
    pub fn now() -> CpuSample {
        let process_ticks = stat_ticks(Path::new("/proc/self/stat")).map_or(0, |(_, t)| t);
        let mut tasks = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for entry in dir.flatten() {
                let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                if let Some(stat) = stat_ticks(&entry.path().join("stat")) {
                    tasks.insert(tid, stat);
                }
            }
        }
        CpuSample {
            process_ticks,
            tasks,
        }
    }

    /// CPU seconds spent since `earlier`, by thread name; threads that exited in between
    /// are reported together under [`EXITED_THREADS`].
    pub fn since(&self, earlier: &CpuSample) -> BTreeMap<String, f64> {
        let tick = 0.01; // USER_HZ is 100 on Linux
        let mut out = BTreeMap::new();
        let mut live = 0u64;
        for (tid, (comm, ticks)) in &self.tasks {
            let before = earlier.tasks.get(tid).map_or(0, |(_, t)| *t);
            let d = ticks.saturating_sub(before);
            live += d;
            *out.entry(comm.clone()).or_insert(0.0) += d as f64 * tick;
        }
        let exited = self
            .process_ticks
            .saturating_sub(earlier.process_ticks)
            .saturating_sub(live);
        out.insert(EXITED_THREADS.to_string(), exited as f64 * tick);
        out
    }
}

/// The at-rest data key the sealed-state benchmarks pass to
/// `AedbConfig::with_checkpoint_key` (WAL batches and checkpoints sealed with
/// XChaCha20-Poly1305).
pub const DATA_KEY: [u8; 32] = [0x42; 32];

/// The production profile, at-rest encryption on when `sealed` ([`DATA_KEY`]), with
/// automatic checkpoints pushed out of reach so that only `checkpoint_now()` takes them.
pub fn sealed_production(sealed: bool) -> AedbConfig {
    let config = no_checkpoint_production();
    if sealed {
        config.with_checkpoint_key(DATA_KEY)
    } else {
        config
    }
}

/// Opens [`sealed_production`] in `dir` and creates the benchmark namespace if needed.
pub fn open_sealed(dir: &Path, sealed: bool) -> AedbInstance {
    let db = AedbInstance::open(dir, sealed_production(sealed)).expect("open sealed production");
    ensure_namespace(&db);
    db
}

/// CPU time of the calling thread in nanoseconds (first field of
/// `/proc/thread-self/schedstat`), or 0 where that is unavailable. Unlike wall time it
/// does not count the time the thread waited for a core, so it holds up on a loaded
/// machine.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The number in environment variable `name`, or `default` when it is unset or not a
/// number (the benches' size and duration knobs).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `config` with `AEDB_COMPACTION_THREADS` threads per compaction when that knob is set
/// (`AedbConfig::compaction_threads`; unset: the engine's default), so one build
/// compares a single-threaded merge against split ones.
pub fn with_compaction_threads(config: AedbConfig) -> AedbConfig {
    match std::env::var("AEDB_COMPACTION_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(threads) => config.compaction_threads(threads),
        None => config,
    }
}
