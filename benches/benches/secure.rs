//! Secure-caller benchmarks (issue 4): what authorization costs on the read and the
//! durable commit paths, measured against an open (no access control) instance in the
//! same run.
//!
//! Part 1, point reads (target: authorized <= 1.2x anonymous). Setup (untimed): two
//! development-profile instances (no fsync; durability is not what is measured) side by
//! side, each loaded with the same 1,000,000 keys (16-byte keys and values) in commits
//! of 10,000 puts:
//! - **open**: `AedbInstance::open`; reads are `db.snapshot()?.kv_get(&ns, key)`;
//! - **secure**: `AedbInstance::open_secure` with a bootstrap admin, who creates the
//!   project and scope and loads the keys (`commit_with_as`). The reader holds
//!   `KvRead { ns, prefix: b"k" }` (covers every key) plus 4 other `KvRead` grants in the
//!   same namespace, and 100 other callers hold one grant each, so the policy has 105
//!   grants beside the admin's; reads are `db.snapshot_as(&reader).kv_get(&ns, key)`.
//!
//! Both walk the same pool of 1,048,576 uniformly random existing keys (16 MiB).
//! Variants: snapshot once then many reads, and a snapshot per read. The verdict comes
//! from a plain loop that interleaves the variants chunk by chunk (65,536 reads each,
//! ABBA order, the same keys for every variant in a round), so all of them see the same
//! machine conditions; it reports wall and thread-CPU ns per read. Three more variants
//! only decompose the difference: the anonymous read with the entry cloned (as
//! `CallerSnapshot::kv_get` returns it), `snapshot_as` on the open instance (no policy),
//! and `snapshot_as(CallerId::system())` on the secure instance (its state, with the
//! policy check short-circuited). Criterion groups
//! `secure_reads_1M/*` (1,024 reads per iteration) follow as a cross-check.
//!
//! Part 2, 64 durable committers (target: secure >= 0.9x open). Two production-profile
//! instances side by side, one open (`commit_with`) and one secure (`commit_with_as` by a
//! caller holding `KvWrite { ns, prefix: b"k" }`, with the same 105 other grants).
//! Small puts (`small_put`: 16-byte key and value). Phases of 3 s with 64 threads (8 per
//! instance; `AEDB_SECURE_PHASE_MS` and `AEDB_SECURE_PHASES` override),
//! alternating between the instances in ABBA order; a commit counts if it was
//! acknowledged before the phase ended. Process CPU per commit and the group-commit
//! figures are reported per instance.
//!
//! A `===== secure =====` block at the end prints every figure RESULTS.md needs.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench -p aedb-benches --bench secure`
//! (`AEDB_SECURE_PARTS=1` or `=2` runs one part only).

use std::hint::black_box;
use std::path::Path;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aedb::{AedbConfig, AedbInstance, CallerId, Finality, Namespace, Permission, SecureConfig};
use aedb_benches::{
    CpuSample, KEY_LEN, MetricsDelta, PROJECT, SCOPE, SplitMix64, Summary, key_batches, key_bytes,
    load_keys, namespace, open_development, open_production, scratch_dir, small_put, thread_cpu_ns,
};
use criterion::{Criterion, Throughput};

/// Keys loaded into each read instance.
const KEYS: u64 = 1_000_000;
/// Puts per load commit.
const PER_TX: u64 = 10_000;
/// Random keys in the read pool (16 MiB).
const POOL: usize = 1 << 20;
/// Reads per variant per round of the interleaved loop.
const CHUNK: usize = 1 << 16;
/// Rounds of the interleaved read loop (each variant reads ROUNDS * CHUNK keys).
const READ_ROUNDS: usize = 24;
/// Reads per criterion iteration.
const BATCH: usize = 1024;
/// Committer threads.
const COMMITTERS: usize = 64;
/// Length of one commit phase, ms (`AEDB_SECURE_PHASE_MS` overrides).
const PHASE_MS: u64 = 3000;
/// Commit phases per instance, ABBA order (`AEDB_SECURE_PHASES` overrides).
const PHASES: usize = 8;
/// Callers other than the reader or writer holding a grant.
const OTHER_CALLERS: usize = 100;

fn main() {
    let parts = std::env::var("AEDB_SECURE_PARTS").unwrap_or_else(|_| "12".into());
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    let summary = Summary::default();
    let root = scratch_dir(env!("CARGO_TARGET_TMPDIR"));
    summary.line(format!("bench dir: {}", root.path().display()));
    if parts.contains('1') {
        reads(&mut c, root.path(), &summary);
    }
    if parts.contains('2') {
        commits(root.path(), &summary);
    }
    c.final_summary();
    summary.print("secure");
}

fn admin() -> CallerId {
    CallerId::new("root@ops").expect("caller")
}

/// Opens a secure instance in `dir`, creates the benchmark namespace as the admin and
/// grants `main` the permission `main_grant`, plus the realistic rest of the policy:
/// 4 more `KvRead` grants to `main` and one grant each to [`OTHER_CALLERS`] callers.
fn open_secure(
    dir: &Path,
    config: AedbConfig,
    main: &CallerId,
    main_grant: Permission,
) -> AedbInstance {
    let admin = admin();
    let db = AedbInstance::open_secure(dir, config, SecureConfig::new(admin.clone()))
        .expect("open secure");
    db.create_project_as(&admin, PROJECT)
        .expect("create project");
    db.create_scope_as(&admin, PROJECT, SCOPE)
        .expect("create scope");
    let ns = namespace();
    for i in 0..4 {
        let prefix = format!("a{i}/").into_bytes();
        db.grant_as(
            &admin,
            main,
            Permission::KvRead {
                ns: ns.clone(),
                prefix,
            },
            false,
        )
        .expect("grant");
    }
    db.grant_as(&admin, main, main_grant, false).expect("grant");
    for i in 0..OTHER_CALLERS {
        let who = CallerId::new(&format!("svc-{i}@bench")).expect("caller");
        let prefix = format!("t{i}/").into_bytes();
        let permission = if i % 2 == 0 {
            Permission::KvRead {
                ns: ns.clone(),
                prefix,
            }
        } else {
            Permission::KvWrite {
                ns: ns.clone(),
                prefix,
            }
        };
        db.grant_as(&admin, &who, permission, false).expect("grant");
    }
    db
}

/// Loads keys `0..n` like [`load_keys`], on a secure instance as `caller`.
fn load_keys_as(db: &AedbInstance, caller: &CallerId, n: u64, per_tx: u64) {
    for tx in key_batches(n, per_tx) {
        db.commit_with_as(caller, tx, Finality::Visible)
            .expect("load commit");
    }
    db.flush().expect("flush load");
}

/// The read variants of part 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    AnonOnce,
    AuthOnce,
    AnonPerRead,
    AuthPerRead,
    /// Anonymous, snapshot once, with the entry cloned as `CallerSnapshot::kv_get`
    /// does (decomposition only). `ReadSnapshot::kv_get` now returns the entry owned
    /// too, so this measures the same read as `AnonOnce`; kept for comparable rows.
    AnonOnceCloned,
    /// `snapshot_as(reader)` once on the **open** instance: the `CallerSnapshot`
    /// wrapper without a policy (decomposition only).
    OpenAsOnce,
    /// `snapshot_as(CallerId::system())` once on the secure instance: the secure
    /// instance's state, the policy check short-circuits (decomposition only).
    SystemOnce,
}

impl Variant {
    const ALL: [Variant; 7] = [
        Variant::AnonOnce,
        Variant::AuthOnce,
        Variant::AnonPerRead,
        Variant::AuthPerRead,
        Variant::AnonOnceCloned,
        Variant::OpenAsOnce,
        Variant::SystemOnce,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::AnonOnce => "anonymous_snapshot_once",
            Variant::AuthOnce => "authorized_snapshot_once",
            Variant::AnonPerRead => "anonymous_snapshot_per_read",
            Variant::AuthPerRead => "authorized_snapshot_per_read",
            Variant::AnonOnceCloned => "anonymous_snapshot_once_cloned",
            Variant::OpenAsOnce => "open_instance_snapshot_as_once",
            Variant::SystemOnce => "secure_instance_system_once",
        }
    }
}

struct Readers<'a> {
    open: &'a AedbInstance,
    secure: &'a AedbInstance,
    reader: &'a CallerId,
    ns: &'a Namespace,
    anon: aedb::ReadSnapshot,
    auth: aedb::CallerSnapshot,
    open_as: aedb::CallerSnapshot,
    system: aedb::CallerSnapshot,
}

impl Readers<'_> {
    /// Reads every key of `keys` with `variant`; returns how many were found.
    fn read(&self, variant: Variant, keys: &[[u8; KEY_LEN]]) -> usize {
        let ns = self.ns;
        let mut found = 0usize;
        match variant {
            Variant::AnonOnce => {
                for k in keys {
                    found += self.anon.kv_get(ns, k).expect("read").is_some() as usize;
                }
            }
            Variant::AnonOnceCloned => {
                for k in keys {
                    found += self.anon.kv_get(ns, k).expect("read").is_some() as usize;
                }
            }
            Variant::AuthOnce => {
                for k in keys {
                    found += self.auth.kv_get(ns, k).expect("read").is_some() as usize;
                }
            }
            Variant::OpenAsOnce => {
                for k in keys {
                    found += self.open_as.kv_get(ns, k).expect("read").is_some() as usize;
                }
            }
            Variant::SystemOnce => {
                for k in keys {
                    found += self.system.kv_get(ns, k).expect("read").is_some() as usize;
                }
            }
            Variant::AnonPerRead => {
                for k in keys {
                    found += self
                        .open
                        .snapshot()
                        .expect("snapshot")
                        .kv_get(ns, k)
                        .expect("read")
                        .is_some() as usize;
                }
            }
            Variant::AuthPerRead => {
                for k in keys {
                    found += self
                        .secure
                        .snapshot_as(self.reader)
                        .kv_get(ns, k)
                        .expect("read")
                        .is_some() as usize;
                }
            }
        }
        black_box(found)
    }
}

fn reads(c: &mut Criterion, root: &Path, summary: &Summary) {
    let ns = namespace();
    let reader = CallerId::new("reader@bench").expect("caller");

    let open_dir = scratch_dir(root.to_str().expect("utf-8 path"));
    let open = open_development(open_dir.path());
    let t = Instant::now();
    load_keys(&open, KEYS, PER_TX);
    summary.line(format!(
        "reads: open instance loaded {KEYS} keys in {:.2}s",
        t.elapsed().as_secs_f64()
    ));

    let secure_dir = scratch_dir(root.to_str().expect("utf-8 path"));
    let secure = open_secure(
        secure_dir.path(),
        AedbConfig::development(),
        &reader,
        Permission::KvRead {
            ns: ns.clone(),
            prefix: b"k".to_vec(),
        },
    );
    let t = Instant::now();
    load_keys_as(&secure, &admin(), KEYS, PER_TX);
    summary.line(format!(
        "reads: secure instance loaded {KEYS} keys in {:.2}s; policy: reader holds 5 KvRead grants, {OTHER_CALLERS} other callers 1 grant each, admin GlobalAdmin",
        t.elapsed().as_secs_f64()
    ));

    let mut rng = SplitMix64::new(0x5EED);
    let pool: Vec<[u8; KEY_LEN]> = (0..POOL).map(|_| key_bytes(rng.next() % KEYS)).collect();
    let r = Readers {
        open: &open,
        secure: &secure,
        reader: &reader,
        ns: &ns,
        anon: open.snapshot().expect("snapshot"),
        auth: secure.snapshot_as(&reader),
        open_as: open.snapshot_as(&reader),
        system: secure.snapshot_as(&CallerId::system()),
    };
    assert_eq!(
        r.anon.kv_len(&ns).expect("kv_len"),
        KEYS as usize,
        "open instance holds every key"
    );
    for v in Variant::ALL {
        assert_eq!(
            r.read(v, &pool[..CHUNK]),
            CHUNK,
            "{} finds every key",
            v.name()
        );
    }

    // Interleaved loop: the verdict.
    let mut wall = [0u128; Variant::ALL.len()];
    let mut cpu = [0u64; Variant::ALL.len()];
    let mut per_round: Vec<[f64; Variant::ALL.len()]> = Vec::new();
    for round in 0..READ_ROUNDS {
        let start = (round * CHUNK) % POOL;
        let keys = &pool[start..start + CHUNK];
        let mut order = Variant::ALL;
        if round % 2 == 1 {
            order.reverse();
        }
        let mut this = [0f64; Variant::ALL.len()];
        for v in order {
            let i = Variant::ALL.iter().position(|x| *x == v).expect("variant");
            let c0 = thread_cpu_ns();
            let t = Instant::now();
            let found = r.read(v, keys);
            let ns_wall = t.elapsed().as_nanos();
            cpu[i] += thread_cpu_ns().saturating_sub(c0);
            wall[i] += ns_wall;
            this[i] = ns_wall as f64 / CHUNK as f64;
            assert_eq!(found, CHUNK);
        }
        per_round.push(this);
    }
    let reads = (READ_ROUNDS * CHUNK) as f64;
    let ns_per = |i: usize| wall[i] as f64 / reads;
    let cpu_per = |i: usize| cpu[i] as f64 / reads;
    for (i, v) in Variant::ALL.iter().enumerate() {
        summary.line(format!(
            "reads interleaved {:<32} {:>7.1} ns/read wall ({:>8.0} reads/s), {:>7.1} ns/read thread CPU ({} reads)",
            v.name(),
            ns_per(i),
            1e9 / ns_per(i),
            cpu_per(i),
            reads
        ));
    }
    for (auth, anon, what) in [(1, 0, "snapshot once"), (3, 2, "snapshot per read")] {
        let mut ratios: Vec<f64> = per_round.iter().map(|r| r[auth] / r[anon]).collect();
        ratios.sort_by(f64::total_cmp);
        summary.line(format!(
            "reads {what}: authorized / anonymous = {:.3}x wall, {:.3}x thread CPU; per-round min / median / max {:.3} / {:.3} / {:.3} (target <= 1.2x)",
            ns_per(auth) / ns_per(anon),
            cpu_per(auth) / cpu_per(anon),
            ratios[0],
            ratios[ratios.len() / 2],
            ratios[ratios.len() - 1],
        ));
    }
    for (a, b, what) in [
        (4, 0, "anonymous + clone of the entry / anonymous"),
        (5, 0, "open instance snapshot_as / anonymous"),
        (
            6,
            5,
            "secure instance as system caller / open instance snapshot_as",
        ),
        (1, 6, "authorized / secure instance as system caller"),
    ] {
        summary.line(format!(
            "reads decomposition (snapshot once): {what} = {:.3}x wall, {:.3}x CPU",
            ns_per(a) / ns_per(b),
            cpu_per(a) / cpu_per(b)
        ));
    }

    // Criterion cross-check.
    let mut g = c.benchmark_group("secure_reads_1M");
    g.throughput(Throughput::Elements(BATCH as u64));
    for v in [
        Variant::AnonOnce,
        Variant::AuthOnce,
        Variant::AnonPerRead,
        Variant::AuthPerRead,
    ] {
        let mut offset = 0usize;
        g.bench_function(v.name(), |b| {
            b.iter(|| {
                let found = r.read(v, &pool[offset..offset + BATCH]);
                offset = (offset + BATCH) % POOL;
                found
            })
        });
    }
    g.finish();

    drop(r);
    open.shutdown().expect("shutdown");
    secure.shutdown().expect("shutdown");
}

/// Totals of one instance over its commit phases.
#[derive(Default)]
struct Side {
    commits: u64,
    secs: f64,
    cpu_secs: f64,
    batches: u64,
    batch_sum: f64,
    fsyncs: u64,
    fsync_us_sum: f64,
    rates: Vec<f64>,
}

fn commits(root: &Path, summary: &Summary) {
    let ns = namespace();
    let writer = CallerId::new("writer@bench").expect("caller");
    let open_dir = scratch_dir(root.to_str().expect("utf-8 path"));
    let open = open_production(open_dir.path());
    let secure_dir = scratch_dir(root.to_str().expect("utf-8 path"));
    let secure = open_secure(
        secure_dir.path(),
        AedbConfig::production([0u8; 32]),
        &writer,
        Permission::KvWrite {
            ns: ns.clone(),
            prefix: b"k".to_vec(),
        },
    );
    let dbs: [(&AedbInstance, Option<&CallerId>); 2] = [(&open, None), (&secure, Some(&writer))];
    // Warm-up, untimed: one short phase each.
    for (db, caller) in dbs {
        phase(db, caller, Duration::from_secs(1));
    }
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let phase_len = Duration::from_millis(env("AEDB_SECURE_PHASE_MS").unwrap_or(PHASE_MS));
    let phases = env("AEDB_SECURE_PHASES").map_or(PHASES, |n| n as usize);
    summary.line(format!(
        "commits: {phases} phases of {} ms per instance, ABBA",
        phase_len.as_millis()
    ));
    let mut sides = [Side::default(), Side::default()];
    for round in 0..phases {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (db, caller) = dbs[i];
            let before = db.operational_metrics();
            let cpu0 = CpuSample::now();
            let (n, secs) = phase(db, caller, phase_len);
            let cpu: f64 = CpuSample::now().since(&cpu0).values().sum();
            let d = MetricsDelta::between(&before, &db.operational_metrics());
            let s = &mut sides[i];
            s.commits += n;
            s.secs += secs;
            s.cpu_secs += cpu;
            s.batches += d.batches;
            s.batch_sum += d.mean_batch * d.batches as f64;
            s.fsyncs += d.fsyncs;
            s.fsync_us_sum += d.mean_fsync_us * d.fsyncs as f64;
            s.rates.push(n as f64 / secs);
        }
    }
    for (s, name) in sides.iter().zip(["open", "secure"]) {
        summary.line(format!(
            "commits {name:<6} {COMMITTERS} committers: {:>8.0} commits/s ({} commits in {:.1}s); CPU {:.1}us/commit (process); batch mean {:.1}; fsync mean {:.0}us; per-phase rates {:?}",
            s.commits as f64 / s.secs,
            s.commits,
            s.secs,
            s.cpu_secs * 1e6 / s.commits.max(1) as f64,
            s.batch_sum / s.batches.max(1) as f64,
            s.fsync_us_sum / s.fsyncs.max(1) as f64,
            s.rates.iter().map(|r| r.round() as u64).collect::<Vec<_>>(),
        ));
    }
    let rate = |s: &Side| s.commits as f64 / s.secs;
    let mut ratios: Vec<f64> = sides[1]
        .rates
        .iter()
        .zip(&sides[0].rates)
        .map(|(s, o)| s / o)
        .collect();
    ratios.sort_by(f64::total_cmp);
    summary.line(format!(
        "commits secure / open = {:.3}x (target >= 0.9x); per-pair min / median / max {:.3} / {:.3} / {:.3}; CPU per commit secure / open = {:.3}x",
        rate(&sides[1]) / rate(&sides[0]),
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1],
        (sides[1].cpu_secs / sides[1].commits.max(1) as f64)
            / (sides[0].cpu_secs / sides[0].commits.max(1) as f64),
    ));
    open.shutdown().expect("shutdown");
    secure.shutdown().expect("shutdown");
}

/// Runs [`COMMITTERS`] threads of durable one-put commits for `length` (as `caller` when
/// given); returns the commits acknowledged before the end and the phase's length in
/// seconds.
fn phase(db: &AedbInstance, caller: Option<&CallerId>, length: Duration) -> (u64, f64) {
    let ns = namespace();
    let barrier = Barrier::new(COMMITTERS + 1);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let mut secs = 0.0;
    std::thread::scope(|s| {
        for t in 0..COMMITTERS {
            let (ns, barrier, stop, done) = (&ns, &barrier, &stop, &done);
            std::thread::Builder::new()
                .name("bench-committer".into())
                .stack_size(256 * 1024)
                .spawn_scoped(s, move || {
                    barrier.wait();
                    let mut n = 0u64;
                    let mut i = 0u64;
                    loop {
                        let tx = small_put(ns, t as u64, i);
                        i += 1;
                        match caller {
                            Some(c) => db.commit_with_as(c, tx, Finality::Durable),
                            None => db.commit_with(tx, Finality::Durable),
                        }
                        .expect("commit");
                        if stop.load(Ordering::Acquire) {
                            break;
                        }
                        n += 1;
                    }
                    done.fetch_add(n, Ordering::Relaxed);
                })
                .expect("spawn committer");
        }
        barrier.wait();
        let started = Instant::now();
        std::thread::sleep(length);
        stop.store(true, Ordering::Release);
        secs = started.elapsed().as_secs_f64();
    });
    (done.load(Ordering::Relaxed), secs)
}
