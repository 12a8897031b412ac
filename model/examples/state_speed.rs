//! Rough single-thread speed of `State`: 1M-key KV point reads, commits and
//! replay. Run with `cargo run --release -p aedb-model --example state_speed`.
//! Criterion benchmarks with recorded results live in `benches/`.

use std::hint::black_box;
use std::time::Instant;

use aedb_model::{CommitRecord, Ddl, KvKey, KvValue, Namespace, ProjectName, State, Transaction};
use aedb_types::Lsn;

/// Nanoseconds this thread has run on a CPU (Linux), so numbers stay honest on
/// a busy machine; `None` elsewhere.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const N: u64 = 1_000_000;
    let ns = Namespace::parse("bench", "kv")?;
    let mut state = State::new();
    for ddl in [
        Ddl::CreateProject {
            project: ProjectName::new("bench")?,
        },
        Ddl::CreateScope { ns: ns.clone() },
    ] {
        state = state.apply_ddl(&ddl, state.lsn().next())?.0;
    }
    let key = |i: u64| format!("user:{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let value = KvValue::new([7u8; 32])?;

    // Load in batches of 1000 puts per commit.
    let start = Instant::now();
    let mut records = Vec::new();
    for batch in 0..N / 1000 {
        let mut tx = Transaction::new();
        for i in batch * 1000..(batch + 1) * 1000 {
            tx = tx.kv_put(&ns, KvKey::new(key(i))?, value.clone());
        }
        let (next, record) = state.apply(&tx, state.lsn().next())?;
        state = next;
        records.push(record.to_bytes());
    }
    println!("load: {N} puts in {:?}", start.elapsed());

    // Single-put commits on the loaded state.
    let commits = 100_000u64;
    let start = Instant::now();
    for i in 0..commits {
        let tx = Transaction::new().kv_put(&ns, KvKey::new(key(i))?, value.clone());
        state = state.apply(&tx, state.lsn().next())?.0;
    }
    let el = start.elapsed();
    println!(
        "commit: {:.0} ns/commit ({:.0} commits/s)",
        el.as_nanos() as f64 / commits as f64,
        commits as f64 / el.as_secs_f64()
    );

    // Point reads in a scattered order.
    let reads = 2_000_000u64;
    let keys: Vec<String> = (0..reads).map(|i| key((i * 7919) % N)).collect();
    for _ in 0..2 {
        let start = Instant::now();
        let cpu = cpu_ns();
        let mut found = 0u64;
        for k in &keys {
            if black_box(state.kv_get(&ns, k.as_bytes())?).is_some() {
                found += 1;
            }
        }
        let el = start.elapsed();
        let on_cpu = cpu
            .zip(cpu_ns())
            .map(|(a, b)| (b - a) as f64 / reads as f64);
        assert_eq!(found, reads);
        println!(
            "kv_get (random order): {:.0} ns/read wall, {:.0} ns/read on-cpu ({:.2} M reads/s wall)",
            el.as_nanos() as f64 / reads as f64,
            on_cpu.unwrap_or(f64::NAN),
            reads as f64 / el.as_secs_f64() / 1e6
        );
    }
    let mut sorted = keys.clone();
    sorted.sort();
    let start = Instant::now();
    for k in &sorted {
        black_box(state.kv_get(&ns, k.as_bytes())?);
    }
    println!(
        "kv_get (key order): {:.0} ns/read wall",
        start.elapsed().as_nanos() as f64 / reads as f64
    );

    // Replay of the load log (each record staged, then installed into the memtable).
    {
        let start = Instant::now();
        let mut replayed = State::new();
        let mut lsn = Lsn::ZERO;
        for ddl in [
            Ddl::CreateProject {
                project: ProjectName::new("bench")?,
            },
            Ddl::CreateScope { ns: ns.clone() },
        ] {
            lsn = lsn.next();
            replayed.replay(&CommitRecord::Ddl(ddl), lsn)?;
        }
        for bytes in &records {
            lsn = lsn.next();
            let record = CommitRecord::decode(bytes)?;
            replayed.replay(&record, lsn)?;
        }
        println!("replay: {N} puts in {:?}", start.elapsed());
    }

    let start = Instant::now();
    let snap = state.to_snapshot_bytes()?;
    let enc = start.elapsed();
    let start = Instant::now();
    let back = State::decode_snapshot(&snap)?;
    println!(
        "snapshot: {} MB, encode {enc:?}, decode {:?}",
        snap.len() / 1_000_000,
        start.elapsed()
    );
    assert_eq!(back, state);
    Ok(())
}
