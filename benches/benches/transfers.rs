//! Assertion-guarded transfers (the demo's workload) on a large and a small set of
//! accounts: does the single writer stall on disk for the keys it checks?
//!
//! Two sealed production instances with the same memory budget (a 128 MiB block cache):
//! one holding `AEDB_TRANSFER_ACCOUNTS` accounts (default 1,000,000; the figure
//! is 16,000,000), loaded in 10,000-put commits and flushed to run files, the other
//! 1,000 accounts; after the load, the bench waits until the load's compactions have
//! settled. On each, `AEDB_TRANSFER_COMMITTERS` threads (default 64) run durable
//! transfers for `AEDB_TRANSFER_SECS` seconds (default 10): assert the payer holds at
//! least the amount, subtract it, add it to the payee; payer and payee uniformly random.
//! Every commit's assertion and its two read-modify-writes read keys that, on the large
//! instance, are mostly not in memory: the committing thread prefetches their blocks
//! before the transaction is sequenced, so the Sequencer finds them in the cache.
//!
//! Prints commits/s, p50/p99 latency and cache figures for both, and the ratio
//! large/small (target: ≥ 0.8). On the large instance the workload then runs again while
//! `compact_now()` merges every run beside it: commit p99 during a compaction against
//! idle (target: ≤ 2x).
//!
//! Run: `AEDB_TRANSFER_ACCOUNTS=16000000 cargo bench -p aedb-benches --bench transfers`
//! (`AEDB_BENCH_DIR` for the data directory, `AEDB_COMPACTION_THREADS` for
//! `AedbConfig::compaction_threads`).

use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aedb::{
    AedbConfig, AedbInstance, Assertion, Finality, KvKey, MemoryBudget, Namespace, Numeric,
    Transaction,
};
use aedb_benches::{Latencies, SplitMix64, env_u64, settle_compactions, with_compaction_threads};

const INITIAL: u64 = 1_000_000_000;
const PER_COMMIT: u64 = 10_000;

fn config() -> AedbConfig {
    with_compaction_threads(
        AedbConfig::production([7; 32])
            .with_checkpoint_key([9; 32])
            .memory_budget(MemoryBudget {
                block_cache_bytes: 128 << 20,
                ..MemoryBudget::default()
            }),
    )
}

fn account(i: u64) -> KvKey {
    // Spread: a multiplicative hash keeps accounts in random key order.
    KvKey::new(format!(
        "acct{:016x}",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    ))
    .expect("key")
}

fn load(db: &AedbInstance, ns: &Namespace, accounts: u64) {
    let mut i = 0;
    while i < accounts {
        let end = (i + PER_COMMIT).min(accounts);
        let tx = (i..end).fold(Transaction::new(), |tx, a| {
            tx.kv_put(ns, account(a), Numeric::U64(INITIAL).to_value())
        });
        db.commit_with(tx, Finality::Visible).expect("load");
        i = end;
    }
    db.checkpoint_now().expect("flush the load");
}

fn transfer(ns: &Namespace, from: u64, to: u64) -> Transaction {
    Transaction::new()
        .assert(Assertion::KvNumericAtLeast {
            ns: ns.clone(),
            key: account(from),
            min: Numeric::U64(1),
        })
        .kv_sub(ns, account(from), Numeric::U64(1))
        .kv_add(ns, account(to), Numeric::U64(1))
}

struct Run {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    hits: u64,
    misses: u64,
}

fn run(db: &AedbInstance, ns: &Namespace, accounts: u64, committers: usize, secs: u64) -> Run {
    let before = db.operational_metrics();
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(committers + 1);
    let latencies = Latencies::default();
    let (commits, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..committers)
            .map(|t| {
                let (stop, barrier, latencies) = (&stop, &barrier, &latencies);
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || {
                        let mut rng = SplitMix64::new(t as u64 + 1);
                        let mut mine = Vec::new();
                        barrier.wait();
                        while !stop.load(Ordering::Relaxed) {
                            let from = rng.next() % accounts;
                            let to = rng.next() % accounts;
                            let started = Instant::now();
                            db.commit_with(transfer(ns, from, to), Finality::Durable)
                                .expect("transfer");
                            mine.push(started.elapsed().as_nanos() as u64);
                        }
                        latencies.extend(&mine);
                        mine.len() as u64
                    })
                    .expect("spawn")
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        let commits: u64 = handles.into_iter().map(|h| h.join().expect("join")).sum();
        (commits, started.elapsed())
    });
    let after = db.operational_metrics();
    Run {
        rate: commits as f64 / elapsed.as_secs_f64(),
        p50_us: latencies.quantile_us(0.5).unwrap_or(0.0),
        p99_us: latencies.quantile_us(0.99).unwrap_or(0.0),
        hits: after.storage.cache_hits - before.storage.cache_hits,
        misses: after.storage.cache_misses - before.storage.cache_misses,
    }
}

/// The same workload while a full compaction runs beside it: commit latency with the
/// compactor busy against `idle` (target: p99 ≤ 2x idle).
fn interference(
    db: &AedbInstance,
    ns: &Namespace,
    accounts: u64,
    committers: usize,
    secs: u64,
    idle: &Run,
) {
    let (busy, compaction) = std::thread::scope(|s| {
        let compactor = s.spawn(|| {
            let started = Instant::now();
            let report = db.compact_now().expect("compaction");
            (started.elapsed(), report)
        });
        // Let the compaction get going before timing.
        std::thread::sleep(Duration::from_millis(200));
        let busy = run(db, ns, accounts, committers, secs);
        (busy, compactor.join().expect("compactor"))
    });
    let (took, report) = compaction;
    println!(
        "during a full compaction ({:.1} s, {} merges, {:.0} MB written): {:.0} commits/s, p50 {:.0} us, p99 {:.0} us; p99 {:.2}x idle (target <= 2x)",
        took.as_secs_f64(),
        report.compactions,
        report.bytes_written as f64 / 1e6,
        busy.rate,
        busy.p50_us,
        busy.p99_us,
        busy.p99_us / idle.p99_us
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let accounts = env_u64("AEDB_TRANSFER_ACCOUNTS", 1_000_000);
    let committers = env_u64("AEDB_TRANSFER_COMMITTERS", 64) as usize;
    let secs = env_u64("AEDB_TRANSFER_SECS", 10);
    let root =
        std::env::var("AEDB_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").into());
    std::fs::create_dir_all(&root).expect("bench root");
    let ns = Namespace::parse("bank", "main").expect("ns");
    let mut results = Vec::new();
    for n in [accounts, 1_000] {
        let tmp = tempfile::tempdir_in(&root).expect("temp dir");
        let db = AedbInstance::open(tmp.path(), config()).expect("open");
        db.create_project("bank").expect("project");
        db.create_scope("bank", "main").expect("scope");
        let started = Instant::now();
        load(&db, &ns, n);
        let loaded = started.elapsed();
        // The load's own compaction backlog is not the workload's: wait it out.
        let settled = settle_compactions(&db, Duration::from_secs(600));
        let m = db.operational_metrics();
        println!(
            "{n} accounts: loaded in {:.1} s, compactions {} after {:.1} s more; levels {:?}",
            loaded.as_secs_f64(),
            if settled { "settled" } else { "NOT settled" },
            (started.elapsed() - loaded).as_secs_f64(),
            m.storage.level_runs
        );
        let r = run(&db, &ns, n, committers, secs);
        println!(
            "{n} accounts, {committers} committers, durable transfers: {:.0} commits/s, p50 {:.0} us, p99 {:.0} us; cache {} hits / {} misses",
            r.rate, r.p50_us, r.p99_us, r.hits, r.misses
        );
        if n == accounts && n > 1_000 {
            interference(&db, &ns, n, committers, secs, &r);
        }
        // Money is conserved (checked on the small instance, where reading every
        // account is cheap).
        let snap = db.snapshot().expect("snapshot");
        if n <= 1_000 {
            let total: u64 = (0..n)
                .map(|a| {
                    let e = snap.kv_get(&ns, account(a).as_bytes()).expect("read");
                    e.map_or(0, |e| {
                        u64::from_be_bytes(e.value.as_bytes().try_into().expect("u64"))
                    })
                })
                .sum();
            assert_eq!(total, n * INITIAL, "money is conserved");
        }
        drop(snap);
        db.shutdown().expect("shutdown");
        results.push(r.rate);
    }
    println!(
        "ratio {} accounts / 1000 accounts: {:.2} (target >= 0.8)",
        accounts,
        results[0] / results[1]
    );
}
