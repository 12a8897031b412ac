//! Caller session capsule (IHP) benchmark: `SessionAuthority::issue` and `verify` on one
//! thread, unbound and channel-bound (32-byte binding), production config (5-minute
//! drift, replay cache on with the default capacity).
//!
//! Every verified capsule is fresh (issued ahead, untimed, by `iter_batched` setup), so
//! every timed `verify` does the full path including a replay-cache insert. The clock
//! advances 10 ms per capsule, so the cache settles at ~30,000 live entries (5 min /
//! 10 ms) and each insert also purges about one expired entry — the steady state of a
//! server verifying 100 capsules/s per drift window.
//!
//! Groups (`capsule/*`, throughput in capsules/s):
//! - `issue_unbound`, `issue_bound`: one capsule (random nonce, seal); the bound variant
//!   also derives the per-channel capsule key (HMAC-SHA256).
//! - `verify_unbound`, `verify_bound`: one fresh capsule verified and remembered.
//! - `verify_reject_tag`: a capsule with one flipped ciphertext bit (the cost of refusing
//!   a forgery; nothing reaches the replay cache).
//!
//! A `===== capsule =====` block at the end repeats issue and verify over a fixed batch of
//! 100,000 capsules and reports wall-clock and thread-CPU rates (the latter does not
//! depend on other load on the machine).
//!
//! Run: `cargo bench -p aedb-benches --bench capsule -- --warm-up-time 1 --measurement-time 3`

use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aedb::{KeyEpoch, SecretKey};
use aedb_authz::CallerId;
use aedb_benches::{Summary, thread_cpu_ns};
use aedb_session::{
    ChannelBinding, IhpConfig, ServerEnvHash, ServerProfileId, SessionAuthority, SessionCapsule,
    UnixMicros,
};
use criterion::{BatchSize, Criterion, Throughput};

/// Clock step between consecutive capsules.
const STEP: Duration = Duration::from_millis(10);
/// Capsules in the fixed-batch summary run.
const BATCH: usize = 100_000;

fn authority() -> SessionAuthority {
    let authority = SessionAuthority::new(
        IhpConfig::production(),
        ServerProfileId::from_bytes([0x42; 16]),
        ServerEnvHash::from_bytes([0x24; 32]),
    );
    authority
        .add_epoch_key(KeyEpoch::FIRST, SecretKey::new([0x5a; 32]))
        .expect("fresh authority");
    authority
}

/// A monotonic fake clock advancing `STEP` per reading.
struct Clock(Cell<UnixMicros>);

impl Clock {
    fn new() -> Clock {
        Clock(Cell::new(UnixMicros::from_secs(1_700_000_000)))
    }

    fn tick(&self) -> UnixMicros {
        let now = self.0.get().saturating_add(STEP);
        self.0.set(now);
        now
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let caller = CallerId::new("svc:payments-7@ledger").expect("valid caller");
    let tls = ChannelBinding::new(vec![0x77; 32]).expect("valid binding");

    let mut group = c.benchmark_group("capsule");
    group.throughput(Throughput::Elements(1));
    for (name, channel) in [("unbound", None), ("bound", Some(&tls))] {
        let a = authority();
        let clock = Clock::new();
        group.bench_function(format!("issue_{name}"), |b| {
            b.iter(|| black_box(a.issue(&caller, clock.tick(), channel).expect("issue")))
        });

        let a = authority();
        let clock = Clock::new();
        group.bench_function(format!("verify_{name}"), |b| {
            b.iter_batched(
                || {
                    let now = clock.tick();
                    (a.issue(&caller, now, channel).expect("issue"), now)
                },
                |(capsule, now): (SessionCapsule, UnixMicros)| {
                    black_box(a.verify(capsule.as_bytes(), now, channel).expect("verify"))
                },
                BatchSize::SmallInput,
            )
        });
    }
    let a = authority();
    let clock = Clock::new();
    group.bench_function("verify_reject_tag", |b| {
        b.iter_batched(
            || {
                let now = clock.tick();
                let mut bytes = a.issue(&caller, now, None).expect("issue").to_vec();
                bytes[150] ^= 1;
                (bytes, now)
            },
            |(bytes, now): (Vec<u8>, UnixMicros)| {
                black_box(a.verify(&bytes, now, None).expect_err("forgery refused"))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let summary = Summary::default();
    for (name, channel) in [("unbound", None), ("bound", Some(&tls))] {
        let a = authority();
        let clock = Clock::new();
        let times: Vec<UnixMicros> = (0..BATCH).map(|_| clock.tick()).collect();

        let (wall, cpu) = timed(|| {
            times
                .iter()
                .map(|&now| a.issue(&caller, now, channel).expect("issue"))
                .collect::<Vec<_>>()
        });
        let capsules = wall.1;
        summary.line(rate_line(&format!("issue_{name}"), wall.0, cpu));

        let (wall, cpu) = timed(|| {
            for (capsule, &now) in capsules.iter().zip(&times) {
                black_box(a.verify(capsule.as_bytes(), now, channel).expect("verify"));
            }
        });
        summary.line(rate_line(&format!("verify_{name}"), wall.0, cpu));
        summary.line(format!(
            "verify_{name}: replay cache holds {} live capsules at the end",
            a.replay_cache_len()
        ));
    }
    summary.print("capsule");
}

/// Runs `f` once; returns (wall time, its output) and the thread's CPU time.
fn timed<R>(f: impl FnOnce() -> R) -> ((Duration, R), Duration) {
    let cpu0 = thread_cpu_ns();
    let t = Instant::now();
    let out = f();
    let wall = t.elapsed();
    let cpu = Duration::from_nanos(thread_cpu_ns().saturating_sub(cpu0));
    ((wall, out), cpu)
}

fn rate_line(name: &str, wall: Duration, cpu: Duration) -> String {
    let per_sec = |d: Duration| BATCH as f64 / d.as_secs_f64().max(1e-9);
    format!(
        "{name}: {BATCH} capsules, {:.0}/s wall ({:.2} us each), {:.0}/s of thread CPU",
        per_sec(wall),
        wall.as_secs_f64() * 1e6 / BATCH as f64,
        per_sec(cpu)
    )
}
