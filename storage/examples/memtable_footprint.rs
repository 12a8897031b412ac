//! Prints the resident bytes one memtable entry really costs, to check
//! `ENTRY_OVERHEAD`: inserts 1,000,000 distinct 24-byte keys with 16-byte values and
//! compares RSS before and after; then times inserts of the same keys in a scrambled
//! order, as the commit path sees them.
//!
//! Run: `cargo run --release -p aedb-storage --example memtable_footprint`

use aedb_checkpoint::EntryKind;
use aedb_storage::{ENTRY_OVERHEAD, Memtable};
use aedb_types::Lsn;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    const N: u64 = 1_000_000;
    let before = rss_bytes();
    let t = std::time::Instant::now();
    let m = Memtable::with_budget(1, 240 << 20);
    for i in 0..N {
        let key = format!("key-{:020}", i);
        m.insert(key.as_bytes(), Lsn::new(i + 1), EntryKind::Put, &[7u8; 16]);
    }
    let insert = t.elapsed();
    let after = rss_bytes();
    let per_entry = (after - before) as f64 / N as f64;
    println!(
        "inserts: {:.0} ns each",
        insert.as_nanos() as f64 / N as f64
    );
    println!(
        "{N} entries: {per_entry:.0} resident bytes per entry (24 B key + 16 B value); \
         charged {} ({ENTRY_OVERHEAD} overhead)",
        m.approximate_bytes() as u64 / N
    );
    drop(m);
    // The commit path inserts keys in no particular order: every insert searches a
    // skip list that does not fit the CPU cache.
    let m = Memtable::with_budget(2, 240 << 20);
    let t = std::time::Instant::now();
    for i in 0..N {
        let key = format!("key-{:020}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % N);
        m.insert(key.as_bytes(), Lsn::new(i + 1), EntryKind::Put, &[7u8; 150]);
    }
    println!(
        "random-order inserts (150 B values): {:.0} ns each",
        t.elapsed().as_nanos() as f64 / N as f64
    );
}
