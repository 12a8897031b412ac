//! Scale: the disk-resident LSM under a memory budget.
//!
//! Loads `AEDB_SCALE_KEYS` keys (default 1,000,000; the figure is 16,000,000)
//! with 100-byte values in 10,000-put commits into a sealed production instance with a
//! memory budget of `AEDB_SCALE_BUDGET_MB` (default 256: a 32 MiB memtable, two more
//! frozen ones at most waiting for their flush, and a 128 MiB block cache), then reports, each against the budget: resident memory after the load,
//! after a full compaction and after reopening (in a fresh child process, so the figure
//! is the reopened instance's and not what the allocator kept from the load); open time
//! after a clean shutdown, and after a child process that wrote 50,000 more durable puts
//! was killed with SIGKILL (the WAL since the last checkpoint replayed);
//! the cost of a checkpoint after N more puts for N = 100, 10,000 and 1,000,000 (capped
//! at the key count); disk use against raw key+value bytes; point reads per second
//! with a cold and a warm cache.
//!
//! Run-file blocks are LZ4-compressed (the engine's default); `AEDB_SCALE_UNCOMPRESSED=1`
//! stores them as they are; `AEDB_SCALE_TABLES=pinned|incache` places run tables other
//! than the default `auto` (`pinned` shows their whole size as "pinned"). Values here
//! are 30 bytes of digits and 70 bytes of filler: compressible, so the disk saving LZ4
//! shows is an upper bound.
//!
//! Run: `cargo bench -p aedb-benches --bench scale` (knobs above, `AEDB_BENCH_DIR`
//! for the data directory, `AEDB_COMPACTION_THREADS` for
//! `AedbConfig::compaction_threads`). Figures go to `benches/RESULTS.md` by hand, with the machine
//! and its load.

use std::path::Path;
use std::time::Instant;

use aedb::{
    AedbConfig, AedbInstance, BlockCompression, KvKey, KvValue, MemoryBudget, Namespace,
    TablePlacement, Transaction,
};
use aedb_benches::{env_u64, with_compaction_threads};

const VALUE_LEN: usize = 100;
const PER_COMMIT: u64 = 10_000;

fn config(budget_mb: u64) -> AedbConfig {
    // Half for the block cache; an eighth for each of the active memtable and the two
    // frozen ones the budget lets wait for their flush.
    let cache = (budget_mb / 2).max(1) << 20;
    let memtable = (budget_mb / 8).max(1) << 20;
    let compression = if std::env::var_os("AEDB_SCALE_UNCOMPRESSED").is_some() {
        BlockCompression::None
    } else {
        BlockCompression::Lz4
    };
    let tables = match std::env::var("AEDB_SCALE_TABLES").as_deref() {
        Ok("pinned") => TablePlacement::Pinned,
        Ok("incache") => TablePlacement::InCache,
        Ok("auto") | Err(_) => TablePlacement::Auto,
        Ok(other) => panic!("AEDB_SCALE_TABLES={other}: expected auto, pinned or incache"),
    };
    with_compaction_threads(
        AedbConfig::production([7; 32])
            .with_checkpoint_key([9; 32])
            .block_compression(compression)
            .run_tables(tables)
            .memory_budget(MemoryBudget {
                memtable_bytes: memtable as usize,
                immutable_memtables: 2,
                block_cache_bytes: cache,
            }),
    )
}

fn key(i: u64) -> Vec<u8> {
    // Spread keys: a multiplicative hash keeps inserts random, as a ledger's accounts.
    format!("acct{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).into_bytes()
}

fn value(i: u64, round: u64) -> Vec<u8> {
    let mut v = format!("{i:020}-{round:08}-").into_bytes();
    v.resize(VALUE_LEN, b'v');
    v
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += dir_bytes(&path);
        } else if let Ok(m) = entry.metadata() {
            total += m.len();
        }
    }
    total
}

fn put_range(db: &AedbInstance, ns: &Namespace, from: u64, to: u64, round: u64) {
    let mut i = from;
    while i < to {
        let end = (i + PER_COMMIT).min(to);
        let mut tx = Transaction::new();
        for k in i..end {
            tx = tx.kv_put(
                ns,
                KvKey::new(key(k)).expect("key"),
                KvValue::new(value(k, round)).expect("value"),
            );
        }
        db.commit(tx).expect("commit");
        i = end;
        if std::env::var("AEDB_SCALE_TRACE").is_ok() && i.is_multiple_of(500_000) {
            let m = db.operational_metrics();
            eprintln!(
                "  {i} keys: levels {:?}, {} compactions, {} stalls, {:.1} s stalled, {} slowed, {:.0} MB RSS",
                m.storage.level_runs,
                m.compactions,
                m.write_stalls,
                m.write_stall_micros as f64 / 1e6,
                m.write_slowdowns,
                rss_mb()
            );
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let keys = env_u64("AEDB_SCALE_KEYS", 1_000_000);
    let budget = env_u64("AEDB_SCALE_BUDGET_MB", 256);
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        return open_phase(Path::new(&dir), keys, budget);
    }
    if let Some(dir) = std::env::var_os(CRASH_DIR) {
        return crash_phase(Path::new(&dir), keys, budget);
    }
    let root =
        std::env::var("AEDB_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").into());
    std::fs::create_dir_all(&root).expect("bench root");
    let tmp = tempfile::tempdir_in(&root).expect("temp dir");
    let dir = tmp.path().join("db");
    if std::env::var_os("AEDB_SCALE_KEEP").is_some() {
        // Kept for inspection or profiling (`AEDB_SCALE_OPEN_DIR=<dir>` reruns the open
        // phase on it).
        println!("data directory kept: {}", tmp.keep().join("db").display());
    }
    let raw = keys * (key(0).len() as u64 + VALUE_LEN as u64);
    println!(
        "scale: {keys} keys x {VALUE_LEN} B values ({:.1} MB raw), budget {budget} MB, sealed production, {} puts per commit, blocks {}",
        raw as f64 / 1e6,
        PER_COMMIT,
        if std::env::var_os("AEDB_SCALE_UNCOMPRESSED").is_some() {
            "uncompressed"
        } else {
            "LZ4"
        }
    );

    let db = AedbInstance::open(&dir, config(budget)).expect("open");
    db.create_project("scale").expect("project");
    db.create_scope("scale", "main").expect("scope");
    let ns = Namespace::parse("scale", "main").expect("ns");
    let started = Instant::now();
    put_range(&db, &ns, 0, keys, 0);
    let load = started.elapsed();
    let m = db.operational_metrics();
    println!(
        "load: {:.1} s ({:.0} puts/s); RSS {:.0} MB (budget {budget} MB + 64 MB = {} MB); levels {:?}; {} write stalls, {:.1} s stalled; {} commits slowed, {:.1} s slowed; {} compactions",
        load.as_secs_f64(),
        keys as f64 / load.as_secs_f64(),
        rss_mb(),
        budget + 64,
        m.storage.level_runs,
        m.write_stalls,
        m.write_stall_micros as f64 / 1e6,
        m.write_slowdowns,
        m.write_slowdown_micros as f64 / 1e6,
        m.compactions,
    );

    // What the load left in the memtable, then the checkpoint cost after N more puts
    // (only what changed is written).
    let started = Instant::now();
    let report = db.checkpoint_now().expect("checkpoint");
    println!(
        "checkpoint after the load (its last memtable): {:.1} ms, {} bytes written",
        started.elapsed().as_secs_f64() * 1e3,
        report.bytes
    );
    for n in [100u64, 10_000, 1_000_000] {
        let n = n.min(keys);
        put_range(&db, &ns, 0, n, 1);
        let started = Instant::now();
        let report = db.checkpoint_now().expect("checkpoint");
        println!(
            "checkpoint after {n} puts: {:.1} ms, {} bytes written",
            started.elapsed().as_secs_f64() * 1e3,
            report.bytes
        );
    }
    let started = Instant::now();
    let report = db.compact_now().expect("compact");
    let m = db.operational_metrics();
    println!(
        "full compaction: {:.1} s, {} merges, {:.0} MB read, {:.0} MB written; RSS {:.0} MB; levels {:?}; write amp {:.2}",
        started.elapsed().as_secs_f64(),
        report.compactions,
        report.bytes_read as f64 / 1e6,
        report.bytes_written as f64 / 1e6,
        rss_mb(),
        m.storage.level_runs,
        m.storage.write_amplification
    );
    db.shutdown().expect("shutdown");
    let disk = dir_bytes(&dir.join("checkpoints"));
    println!(
        "disk after compaction: {:.1} MB of run files ({:.2}x raw; sealed); {:.1} MB with WAL and manifest",
        disk as f64 / 1e6,
        disk as f64 / raw as f64,
        dir_bytes(&dir) as f64 / 1e6
    );

    // Open, reads and the reopen after unflushed writes run in a fresh process, so
    // resident memory is the reopened instance's own (not what this process's
    // allocator kept from the load and the compaction).
    let child = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .env(CHILD_DIR, &dir)
        .env("AEDB_SCALE_KEYS", keys.to_string())
        .env("AEDB_SCALE_BUDGET_MB", budget.to_string())
        .status()
        .expect("run the open phase");
    assert!(child.success(), "open phase failed: {child}");

    // Open after SIGKILL: a child writes 50,000 more puts (durable), says so, and is
    // killed with SIGKILL; the open then replays the WAL since the last checkpoint.
    let mut crash = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .env(CRASH_DIR, &dir)
        .env("AEDB_SCALE_KEYS", keys.to_string())
        .env("AEDB_SCALE_BUDGET_MB", budget.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the crash phase");
    let out = crash.stdout.take().expect("child stdout");
    let ready = std::io::BufRead::lines(std::io::BufReader::new(out))
        .any(|l| l.is_ok_and(|l| l == CRASH_READY));
    assert!(
        ready,
        "the crash phase ended before its writes were acknowledged"
    );
    crash.kill().expect("SIGKILL the writer");
    let status = crash.wait().expect("reap the writer");
    assert!(!status.success(), "the writer was killed: {status}");
    let started = Instant::now();
    let db = AedbInstance::open(&dir, config(budget)).expect("open after SIGKILL");
    let open = started.elapsed();
    let m = db.operational_metrics();
    println!(
        "open after SIGKILL with 50,000 unflushed durable puts: {:.1} ms ({} WAL frames replayed)",
        open.as_secs_f64() * 1e3,
        m.recovery_frames
    );
    let ns = Namespace::parse("scale", "main").expect("ns");
    for k in [0, 49_999.min(keys - 1)] {
        let e = db.kv_get(&ns, key(k)).expect("read").expect("present");
        assert_eq!(
            e.value.as_bytes(),
            value(k, 3).as_slice(),
            "key {k} after SIGKILL"
        );
    }
    db.shutdown().expect("shutdown");
}

/// Set in the child process that writes, reports [`CRASH_READY`], and waits for its
/// SIGKILL.
const CRASH_DIR: &str = "AEDB_SCALE_CRASH_DIR";
/// What the crash phase prints once its writes are acknowledged (durable).
const CRASH_READY: &str = "crash phase: writes acknowledged";

/// Writes 50,000 puts (round 3) in durable commits, says so, and waits to be killed.
fn crash_phase(dir: &Path, keys: u64, budget: u64) {
    let ns = Namespace::parse("scale", "main").expect("ns");
    let db = AedbInstance::open(dir, config(budget)).expect("open");
    put_range(&db, &ns, 0, 50_000.min(keys), 3);
    println!("{CRASH_READY}");
    std::io::Write::flush(&mut std::io::stdout()).expect("flush stdout");
    loop {
        std::thread::park();
    }
}

/// Set in the child process that measures open and reads on this directory.
const CHILD_DIR: &str = "AEDB_SCALE_OPEN_DIR";

/// The open phase, in its own process: open after a clean shutdown, point reads with a
/// cold then warm cache, then unflushed writes and a reopen that replays them.
fn open_phase(dir: &Path, keys: u64, budget: u64) {
    let ns = Namespace::parse("scale", "main").expect("ns");
    println!("RSS of a fresh process before open: {:.0} MB", rss_mb());
    let started = Instant::now();
    let db = AedbInstance::open(dir, config(budget)).expect("reopen");
    let open = started.elapsed();
    println!(
        "open after a clean shutdown: {:.1} ms ({} WAL frames replayed); RSS {:.0} MB",
        open.as_secs_f64() * 1e3,
        db.operational_metrics().recovery_frames,
        rss_mb()
    );
    let snap = db.snapshot().expect("snapshot");
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let reads = 200_000u64.min(keys * 2);
    for pass in ["cold", "warm"] {
        let started = Instant::now();
        for _ in 0..reads {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % keys;
            let e = snap.kv_get(&ns, &key(k)).expect("read").expect("present");
            assert_eq!(e.value.len(), VALUE_LEN);
        }
        let s = db.operational_metrics().storage;
        println!(
            "random point reads ({pass} cache): {:.0}/s, 1 thread; cache {} hits / {} misses, {:.0} MB held, {:.1} MB of table partitions pinned",
            reads as f64 / started.elapsed().as_secs_f64(),
            s.cache_hits,
            s.cache_misses,
            s.cache_bytes as f64 / 1e6,
            s.cache_pinned_bytes as f64 / 1e6
        );
    }
    println!("RSS after reads: {:.0} MB", rss_mb());
    drop(snap);
    // More writes, a clean shutdown (which checkpoints), and a reopen.
    put_range(&db, &ns, 0, 50_000.min(keys), 2);
    db.shutdown().expect("shutdown");
    let started = Instant::now();
    let db = AedbInstance::open(dir, config(budget)).expect("reopen");
    println!(
        "reopen after 50,000 more puts and a clean shutdown: {:.1} ms ({} WAL frames replayed)",
        started.elapsed().as_secs_f64() * 1e3,
        db.operational_metrics().recovery_frames
    );
    db.shutdown().expect("shutdown");
}
