//! Peer comparison: aedb against redb, SQLite, fjall and RocksDB, every workload against
//! every engine in **one run**, so the ratios between engines hold on a noisy machine.
//! It is a throughput and latency harness with its own `main` (no criterion): each run
//! is one fixed amount of work, released to every thread by a barrier and timed from the
//! first thread starting to the last one finishing (each thread reads the clock itself).
//!
//! The one command is `bash scripts/peers.sh`: it installs RocksDB's `db_bench` when
//! missing, builds this bench, prints the machine and its load, runs it and prints the
//! tables. By hand: `cargo bench -p aedb-benches --bench peers`.
//!
//! # Engines
//!
//! | engine | how it is opened | what "durable commit" means |
//! | --- | --- | --- |
//! | aedb | `AedbConfig::production(key).with_checkpoint_key(key)` (sealed production profile, default checkpoint policy) | `commit_with(tx, Finality::Durable)`: acknowledged after the WAL writer's `fdatasync` (group commit) |
//! | redb 2.x | `Builder::set_cache_size(cache)` | one write transaction, `Durability::Immediate` |
//! | SQLite (rusqlite, bundled) | `journal_mode=WAL`, `synchronous=FULL`, `cache_size=-cache` per connection, table `kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID` | one `INSERT OR REPLACE` in autocommit mode on the writer connection (a `Mutex<Connection>`: SQLite has one writer; a thread waits for the mutex, not in a busy-sleep loop) |
//! | fjall 3 | `Database::builder(dir).cache_size(cache)`, one keyspace, no compression | `Keyspace::insert` then `Database::persist(PersistMode::SyncData)` (fjall's plain database has no per-write durability flag; `fdatasync`, as the others use) |
//! | RocksDB | Debian's `db_bench` (`rocksdb-tools`), a separate process, `--cache_size=cache --compression_type=none` | `--sync=true`: the WAL is synced before each write returns (group commit) |
//!
//! Keys are 24 bytes (an 8-byte big-endian index padded with `'0'`, `db_bench`'s layout),
//! values 150 bytes. Committers (1, 64, 256 threads) each do their own one-put
//! transactions of random keys on a fresh database; engines with one writer (redb,
//! SQLite) serialize them, which is what a user of them gets. Reads and scans run on a
//! database preloaded with keys `0..AEDB_PEERS_KEYS` in key order (10,000 per
//! transaction), then settled: aedb takes a checkpoint, SQLite checkpoints its WAL into
//! the database file, fjall and RocksDB flush their memtable and wait for compactions.
//! Every read or scan picks a uniformly random loaded key and sees the latest commit:
//! aedb reads the latest published snapshot per operation (`AedbInstance::kv_get` for a
//! point read, `snapshot()` then `kv_scan_with` for a scan: borrowed key and value
//! slices, as the peers' iterators hand them out), redb opens a read transaction per
//! operation, SQLite runs each statement in autocommit mode, fjall and RocksDB read the
//! latest sequence number.
//!
//! `AEDB_PEERS_CACHE_MB` sizes every engine's cache: aedb's block cache
//! (`MemoryBudget::block_cache_bytes`; its memtable stays at the default 64 MiB) and the
//! four peers' (SQLite's per connection); the operating system's page cache holds every
//! engine's files at the default data-set size either way.
//!
//! # Knobs (environment)
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `AEDB_PEERS_COMMITS` | 20000 | durable commits per run (one engine, one committer count), split evenly over the committers (`db_bench --num` = this / threads) |
//! | `AEDB_PEERS_COMMIT_SECS` | 15 | time cap of one in-process commit run: a committer stops once this has passed (the report says so; throughput is what was done over the time taken). Keeps a run on a stalling disk bounded; `db_bench` has no such cap with `--num` |
//! | `AEDB_PEERS_COMMITTERS` | `1,64,256` | committer thread counts |
//! | `AEDB_PEERS_COMMIT_PRELOAD` | 0 | when > 0, aedb also runs the commit workload on a database already holding this many keys (loaded as for reads, then settled), beside its run on a fresh one: the "durable commits on a database holding 16M keys" (`16000000`) |
//! | `AEDB_PEERS_KEYS` | 1000000 | preloaded keys for reads and scans (16000000 for the large set) |
//! | `AEDB_PEERS_READS` | 2000000 | point reads per run, split over the reader threads |
//! | `AEDB_PEERS_SCANS` | 200000 | range scans per run, split over the reader threads |
//! | `AEDB_PEERS_SCAN_LEN` | 100 | entries read per scan, from the seek position on (`db_bench --seek_nexts`) |
//! | `AEDB_PEERS_READERS` | `1,2` | reader thread counts for reads and scans |
//! | `AEDB_PEERS_CACHE_MB` | 128 | cache of aedb (block cache), redb, SQLite, fjall and RocksDB (`db_bench --cache_size`) |
//! | `AEDB_PEERS_AEDB_BLOCK` | 4096 | aedb's `AedbConfig::run_block_size` (RocksDB's `db_bench` uses its default 4 KiB blocks) |
//! | `AEDB_PEERS_TABLES` | `default` | where aedb and RocksDB keep index and filter blocks: `default` = each engine's default (aedb `TablePlacement::Auto`, which charges them to the cache and pins up to half of it; `db_bench` holds them outside its cache); `outside` = both outside the cache (aedb `TablePlacement::Pinned`); `inside` = both in the cache (aedb `TablePlacement::InCache`, `db_bench --cache_index_and_filter_blocks=true`) |
//! | `AEDB_PEERS_ENGINES` | `aedb,redb,sqlite,fjall,rocksdb` | engines to run, in this order |
//! | `AEDB_PEERS_WORKLOADS` | `commits,reads,scans` | workloads to run |
//! | `AEDB_PEERS_DIR` | `<workspace>/bench-data/peers` | where the databases go (one fresh temporary directory per run, deleted after it) |
//! | `AEDB_PEERS_DB_BENCH` | `/usr/bin/db_bench`, else `db_bench` on `PATH` | RocksDB's `db_bench`; without it the RocksDB column says why it was not run |
//! | `AEDB_PEERS_OUT` | unset | also write the final report (markdown) to this file |
//!
//! With `--test` (as `cargo test --benches` runs it) the defaults shrink to a smoke run
//! of a few seconds.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use aedb::{AedbConfig, AedbInstance, Direction, Finality, KvKey, KvValue, Namespace, Transaction};
use aedb_benches::{DATA_KEY, Latencies, SplitMix64, namespace, open_config};

/// Length of every key (as `db_bench --key_size`).
const KEY_LEN: usize = 24;
/// Length of every value (as `db_bench --value_size`).
const VALUE_LEN: usize = 150;
/// Puts per transaction when preloading the read data set.
const LOAD_BATCH: u64 = 10_000;
/// The peers' versions as locked for this build.
const CARGO_LOCK: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"));

/// Result of one step; the error is a sentence for the report.
type Res<T> = Result<T, String>;

/// Adds what was being done to an error.
trait Ctx<T> {
    /// Maps the error to `"{what}: {error}"`.
    fn ctx(self, what: &str) -> Res<T>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Res<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// The key of item `i`: its 8-byte big-endian index padded with `'0'` to [`KEY_LEN`]
/// bytes, the layout `db_bench` uses, so every engine stores the same key shapes.
fn key(i: u64) -> [u8; KEY_LEN] {
    let mut out = [b'0'; KEY_LEN];
    out[..8].copy_from_slice(&i.to_be_bytes());
    out
}

/// A [`VALUE_LEN`]-byte pseudo-random value derived from `seed` (incompressible; no
/// engine compresses here anyway).
fn value(seed: u64) -> [u8; VALUE_LEN] {
    let mut rng = SplitMix64::new(seed);
    let mut out = [0u8; VALUE_LEN];
    for chunk in out.chunks_mut(8) {
        let word = rng.next().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    out
}

/// The engines compared, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Engine {
    /// aedb, sealed production profile.
    Aedb,
    /// redb 2.x.
    Redb,
    /// SQLite through rusqlite (bundled).
    Sqlite,
    /// fjall 3.
    Fjall,
    /// RocksDB through `db_bench`.
    Rocksdb,
}

impl Engine {
    /// Every engine, in report order.
    const ALL: [Engine; 5] = [
        Engine::Aedb,
        Engine::Redb,
        Engine::Sqlite,
        Engine::Fjall,
        Engine::Rocksdb,
    ];

    /// The name used by `AEDB_PEERS_ENGINES`.
    fn id(self) -> &'static str {
        match self {
            Engine::Aedb => "aedb",
            Engine::Redb => "redb",
            Engine::Sqlite => "sqlite",
            Engine::Fjall => "fjall",
            Engine::Rocksdb => "rocksdb",
        }
    }

    /// The name printed in the tables.
    fn label(self) -> &'static str {
        match self {
            Engine::Aedb => "aedb",
            Engine::Redb => "redb",
            Engine::Sqlite => "SQLite",
            Engine::Fjall => "fjall",
            Engine::Rocksdb => "RocksDB",
        }
    }
}

/// The workload families, selectable with `AEDB_PEERS_WORKLOADS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// Durable one-put commits from N committers.
    Commits,
    /// Random point reads over the preloaded keys.
    Reads,
    /// Seek to a random key and read the next entries.
    Scans,
}

/// One row of the report: a workload at one thread count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Row {
    /// Durable commits with this many committers.
    Commits(usize),
    /// Durable commits with `threads` committers on a database already holding `keys`
    /// keys (`AEDB_PEERS_COMMIT_PRELOAD`; aedb only).
    LoadedCommits { threads: usize, keys: u64 },
    /// Point reads with this many reader threads.
    Reads(usize),
    /// Range scans with this many reader threads.
    Scans(usize),
}

impl Row {
    /// The row a peer's figure for this row comes from: peers run commits on a fresh
    /// database only, so aedb's loaded-database commits compare with those.
    fn peer_row(self) -> Row {
        match self {
            Row::LoadedCommits { threads, .. } => Row::Commits(threads),
            other => other,
        }
    }

    /// The row's label in the tables.
    fn label(self, scan_len: usize) -> String {
        match self {
            Row::Commits(n) => format!(
                "durable commits, {n} committer{} (commits/s)",
                if n == 1 { "" } else { "s" }
            ),
            Row::LoadedCommits { threads, keys } => format!(
                "durable commits on {keys} keys, {threads} committer{} (commits/s)",
                if threads == 1 { "" } else { "s" }
            ),
            Row::Reads(n) => format!(
                "random point reads, {n} thread{} (reads/s)",
                if n == 1 { "" } else { "s" }
            ),
            Row::Scans(n) => format!(
                "seek + {scan_len} entries, {n} thread{} (scans/s)",
                if n == 1 { "" } else { "s" }
            ),
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug)]
struct Figure {
    /// Operations done (commits, reads or scans).
    ops: u64,
    /// Wall time from release to the last thread finishing, seconds.
    secs: f64,
    /// Median latency per operation, microseconds (commits only).
    p50_us: Option<f64>,
    /// 99th percentile latency per operation, microseconds (commits only).
    p99_us: Option<f64>,
    /// Anything worth knowing about the run (entries per scan, keys found).
    note: String,
}

impl Figure {
    /// Operations per second.
    fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ops as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// Every knob of the run (see the module docs).
#[derive(Clone, Debug)]
struct Knobs {
    /// Durable commits per run.
    commits: u64,
    /// Keys aedb's loaded-database commit runs start with (0: not run).
    commit_preload: u64,
    /// Time cap of one in-process commit run, seconds.
    commit_secs: u64,
    /// Committer thread counts.
    committers: Vec<usize>,
    /// Preloaded keys.
    keys: u64,
    /// Point reads per run.
    reads: u64,
    /// Scans per run.
    scans: u64,
    /// Entries per scan.
    scan_len: usize,
    /// Reader thread counts.
    readers: Vec<usize>,
    /// Peer cache size in MiB.
    cache_mb: u64,
    /// aedb's run-file block size.
    aedb_block: usize,
    /// Where aedb and RocksDB keep index and filter blocks.
    tables: Tables,
    /// Engines to run.
    engines: Vec<Engine>,
    /// Workloads to run.
    workloads: Vec<Workload>,
    /// Root of the data directories.
    dir: PathBuf,
    /// `db_bench`, if found.
    db_bench: Option<PathBuf>,
    /// Where to write the report too.
    out: Option<PathBuf>,
}

/// Where aedb and RocksDB keep run-file index and filter blocks (`AEDB_PEERS_TABLES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tables {
    /// Each engine's default: aedb charges them to its cache (pinning up to half of
    /// it), `db_bench` keeps them outside its cache.
    Default,
    /// Both outside the cache.
    Outside,
    /// Both in the cache.
    Inside,
}

impl Tables {
    fn parse(s: &str) -> Option<Tables> {
        match s {
            "default" => Some(Tables::Default),
            "outside" => Some(Tables::Outside),
            "inside" => Some(Tables::Inside),
            _ => None,
        }
    }

    /// aedb's placement for this choice.
    fn aedb(self) -> aedb::TablePlacement {
        match self {
            Tables::Default => aedb::TablePlacement::Auto,
            Tables::Outside => aedb::TablePlacement::Pinned,
            Tables::Inside => aedb::TablePlacement::InCache,
        }
    }
}

/// Reads a number from the environment (`_` separators allowed), or `default`.
fn env_u64(name: &str, default: u64) -> Res<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .trim()
            .parse()
            .ctx(&format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

/// Reads a comma-separated list from the environment, or `default`.
fn env_list<T>(name: &str, default: &str, parse: impl Fn(&str) -> Option<T>) -> Res<Vec<T>> {
    let raw = std::env::var(name).unwrap_or_else(|_| default.to_string());
    let items: Vec<T> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse(s).ok_or_else(|| format!("{name}: cannot use {s:?}")))
        .collect::<Res<_>>()?;
    if items.is_empty() {
        return Err(format!("{name} is empty"));
    }
    Ok(items)
}

/// A positive thread count.
fn parse_threads(s: &str) -> Option<usize> {
    s.parse().ok().filter(|&n| n > 0)
}

impl Knobs {
    /// The knobs from the environment; `smoke` shrinks the defaults to a few seconds.
    fn from_env(smoke: bool) -> Res<Knobs> {
        let (commits, committers, keys, reads, scans) = if smoke {
            (64, "1,4", 5_000, 5_000, 500)
        } else {
            (20_000, "1,64,256", 1_000_000, 2_000_000, 200_000)
        };
        let engines = env_list(
            "AEDB_PEERS_ENGINES",
            "aedb,redb,sqlite,fjall,rocksdb",
            |s| Engine::ALL.into_iter().find(|e| e.id() == s),
        )?;
        let workloads = env_list("AEDB_PEERS_WORKLOADS", "commits,reads,scans", |s| match s {
            "commits" => Some(Workload::Commits),
            "reads" => Some(Workload::Reads),
            "scans" => Some(Workload::Scans),
            _ => None,
        })?;
        let dir = std::env::var_os("AEDB_PEERS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-data/peers"));
        let db_bench = match std::env::var_os("AEDB_PEERS_DB_BENCH") {
            Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
            None => find_db_bench(),
        };
        let knobs = Knobs {
            commits: env_u64("AEDB_PEERS_COMMITS", commits)?.max(1),
            commit_preload: env_u64("AEDB_PEERS_COMMIT_PRELOAD", 0)?,
            commit_secs: env_u64("AEDB_PEERS_COMMIT_SECS", 15)?.max(1),
            committers: env_list("AEDB_PEERS_COMMITTERS", committers, parse_threads)?,
            keys: env_u64("AEDB_PEERS_KEYS", keys)?.max(1),
            reads: env_u64("AEDB_PEERS_READS", reads)?.max(1),
            scans: env_u64("AEDB_PEERS_SCANS", scans)?.max(1),
            scan_len: env_u64("AEDB_PEERS_SCAN_LEN", 100)?.max(1) as usize,
            readers: env_list("AEDB_PEERS_READERS", "1,2", parse_threads)?,
            cache_mb: env_u64("AEDB_PEERS_CACHE_MB", 128)?.max(1),
            aedb_block: env_u64(
                "AEDB_PEERS_AEDB_BLOCK",
                aedb_checkpoint::DEFAULT_RUN_BLOCK_SIZE as u64,
            )? as usize,
            tables: {
                let raw = std::env::var("AEDB_PEERS_TABLES").unwrap_or_else(|_| "default".into());
                Tables::parse(raw.trim()).ok_or_else(|| {
                    format!("AEDB_PEERS_TABLES={raw}: use default, outside or inside")
                })?
            },
            engines,
            workloads,
            dir,
            db_bench,
            out: std::env::var_os("AEDB_PEERS_OUT").map(PathBuf::from),
        };
        Ok(knobs)
    }

    /// Peer cache size in bytes.
    fn cache_bytes(&self) -> u64 {
        self.cache_mb * 1024 * 1024
    }

    /// Whether a workload was asked for.
    fn wants(&self, w: Workload) -> bool {
        self.workloads.contains(&w)
    }
}

/// `/usr/bin/db_bench`, else the first `db_bench` on `PATH`.
fn find_db_bench() -> Option<PathBuf> {
    let usr = PathBuf::from("/usr/bin/db_bench");
    if usr.is_file() {
        return Some(usr);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("db_bench"))
        .find(|p| p.is_file())
}

/// One in-process engine, opened on one directory.
trait Store: Sync {
    /// One transaction putting `value` at `key`, durable when this returns.
    fn put_durable(&self, key: &[u8], value: &[u8]) -> Res<()>;
    /// Loads keys `0..n` ([`key`], [`value`]) in key order, [`LOAD_BATCH`] per
    /// transaction, and returns once all of it is durable and settled: aedb takes a
    /// checkpoint and waits for its compactions, SQLite checkpoints its WAL, fjall
    /// flushes its memtable and waits for compactions (as `db_bench` does
    /// `flush,waitforcompaction` for RocksDB).
    fn load(&self, n: u64) -> Res<()>;
    /// A reader for one thread.
    fn reader(&self) -> Res<Box<dyn Reader + '_>>;
    /// Closes the engine cleanly.
    fn close(self: Box<Self>) -> Res<()>;
}

/// Reads of one thread; each sees the latest commit.
trait Reader {
    /// Whether `key` is present (its value is read).
    fn get(&mut self, key: &[u8]) -> Res<bool>;
    /// Reads up to `len` entries from the first key `>= start` on; returns how many.
    fn scan(&mut self, start: &[u8], len: usize) -> Res<usize>;
}

/// Opens `engine` (not RocksDB, which runs in `db_bench`) in `dir`.
fn open_store(engine: Engine, dir: &Path, knobs: &Knobs) -> Res<Box<dyn Store>> {
    Ok(match engine {
        Engine::Aedb => Box::new(AedbStore::open(dir, knobs)),
        Engine::Redb => Box::new(RedbStore::open(dir, knobs.cache_bytes())?),
        Engine::Sqlite => Box::new(SqliteStore::open(dir, knobs.cache_bytes())?),
        Engine::Fjall => Box::new(FjallStore::open(dir, knobs.cache_bytes())?),
        Engine::Rocksdb => return Err("RocksDB runs in db_bench".into()),
    })
}

// ---------------------------------------------------------------------------------
// aedb

/// aedb with the sealed production profile (as the commit bench opens it, plus the
/// at-rest key) and the engine's default checkpoint policy.
struct AedbStore {
    /// The instance.
    db: AedbInstance,
    /// The benchmark namespace.
    ns: Namespace,
}

impl AedbStore {
    /// Waits (up to `cap`) until background compaction has nothing left to do.
    fn settle_compactions(&self, cap: Duration) -> bool {
        aedb_benches::settle_compactions(&self.db, cap)
    }

    /// Opens (creating) the instance in `dir` with the knobs' block cache and block size.
    fn open(dir: &Path, knobs: &Knobs) -> AedbStore {
        let config = AedbConfig::production([0u8; 32])
            .with_checkpoint_key(DATA_KEY)
            .run_block_size(knobs.aedb_block)
            .run_tables(knobs.tables.aedb())
            .memory_budget(aedb::MemoryBudget {
                block_cache_bytes: knobs.cache_bytes(),
                ..aedb::MemoryBudget::default()
            });
        AedbStore {
            db: open_config(dir, config),
            ns: namespace(),
        }
    }
}

impl Store for AedbStore {
    fn put_durable(&self, key: &[u8], value: &[u8]) -> Res<()> {
        let tx = Transaction::new().kv_put(
            &self.ns,
            KvKey::new(key).ctx("aedb key")?,
            KvValue::new(value).ctx("aedb value")?,
        );
        self.db
            .commit_with(tx, Finality::Durable)
            .ctx("aedb commit")?;
        Ok(())
    }

    fn load(&self, n: u64) -> Res<()> {
        for start in (0..n).step_by(LOAD_BATCH as usize) {
            let mut tx = Transaction::new();
            for i in start..(start + LOAD_BATCH).min(n) {
                tx = tx.kv_put(
                    &self.ns,
                    KvKey::new(key(i)).ctx("aedb key")?,
                    KvValue::new(value(i)).ctx("aedb value")?,
                );
            }
            self.db
                .commit_with(tx, Finality::Durable)
                .ctx("aedb load commit")?;
        }
        // Settle, as the LSM engines flush and wait for compactions: checkpoint the
        // loaded state now, so no automatic checkpoint runs during the reads, and let
        // the compactions it starts finish (as `db_bench` does `waitforcompaction`).
        self.db.checkpoint_now().ctx("aedb checkpoint")?;
        if !self.settle_compactions(Duration::from_secs(600)) {
            return Err("aedb compactions did not settle within 600 s".into());
        }
        Ok(())
    }

    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        Ok(Box::new(AedbReader {
            db: &self.db,
            ns: &self.ns,
        }))
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.db.shutdown().ctx("aedb shutdown")
    }
}

/// aedb reads: a point read is `AedbInstance::kv_get` (the latest published snapshot,
/// borrowed), a scan takes a snapshot.
struct AedbReader<'a> {
    /// The instance.
    db: &'a AedbInstance,
    /// The benchmark namespace.
    ns: &'a Namespace,
}

impl Reader for AedbReader<'_> {
    fn get(&mut self, key: &[u8]) -> Res<bool> {
        Ok(self.db.kv_get(self.ns, key).ctx("aedb get")?.is_some())
    }

    fn scan(&mut self, start: &[u8], len: usize) -> Res<usize> {
        // Entries are visited as borrowed slices, as the peers' iterators hand them
        // out (`kv_scan_range` would build an owned page).
        let snapshot = self.db.snapshot().ctx("aedb snapshot")?;
        let mut bytes = 0usize;
        let n = snapshot
            .kv_scan_with(
                self.ns,
                Bound::Included(start),
                Bound::Unbounded,
                Direction::Forward,
                len,
                |k, v, _| {
                    bytes += k.len() + v.len();
                    std::ops::ControlFlow::Continue(())
                },
            )
            .ctx("aedb scan")?;
        std::hint::black_box(bytes);
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------
// redb

/// The one redb table.
const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

/// redb, every write transaction with `Durability::Immediate`.
struct RedbStore {
    /// The database.
    db: redb::Database,
}

impl RedbStore {
    /// Creates `dir/redb.db` with a `cache`-byte cache and the table.
    fn open(dir: &Path, cache: u64) -> Res<RedbStore> {
        let db = redb::Builder::new()
            .set_cache_size(cache as usize)
            .create(dir.join("redb.db"))
            .ctx("redb create")?;
        let store = RedbStore { db };
        store.write(|_| Ok(()))?;
        Ok(store)
    }

    /// One durable write transaction doing `f` on the table.
    fn write(&self, f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Res<()>) -> Res<()> {
        let mut tx = self.db.begin_write().ctx("redb begin_write")?;
        tx.set_durability(redb::Durability::Immediate);
        {
            let mut table = tx.open_table(REDB_TABLE).ctx("redb open_table")?;
            f(&mut table)?;
        }
        tx.commit().ctx("redb commit")
    }
}

impl Store for RedbStore {
    fn put_durable(&self, key: &[u8], value: &[u8]) -> Res<()> {
        self.write(|t| t.insert(key, value).map(drop).ctx("redb insert"))
    }

    fn load(&self, n: u64) -> Res<()> {
        for start in (0..n).step_by(LOAD_BATCH as usize) {
            self.write(|t| {
                for i in start..(start + LOAD_BATCH).min(n) {
                    t.insert(&key(i)[..], &value(i)[..]).ctx("redb insert")?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        Ok(Box::new(RedbReader { db: &self.db }))
    }

    fn close(self: Box<Self>) -> Res<()> {
        drop(self.db);
        Ok(())
    }
}

/// redb reads: one read transaction per operation.
struct RedbReader<'a> {
    /// The database.
    db: &'a redb::Database,
}

impl RedbReader<'_> {
    /// The table in a fresh read transaction.
    fn table(&self) -> Res<redb::ReadOnlyTable<&'static [u8], &'static [u8]>> {
        let tx = self.db.begin_read().ctx("redb begin_read")?;
        tx.open_table(REDB_TABLE).ctx("redb open_table")
    }
}

impl Reader for RedbReader<'_> {
    fn get(&mut self, key: &[u8]) -> Res<bool> {
        let table = self.table()?;
        let got = table.get(key).ctx("redb get")?;
        Ok(got.is_some_and(|v| !v.value().is_empty()))
    }

    fn scan(&mut self, start: &[u8], len: usize) -> Res<usize> {
        let table = self.table()?;
        let mut n = 0;
        for item in table.range(start..).ctx("redb range")?.take(len) {
            let (k, v) = item.ctx("redb next")?;
            n += usize::from(!k.value().is_empty() && !v.value().is_empty());
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------
// SQLite

/// SQLite in WAL mode with `synchronous=FULL`; one writer connection shared behind a
/// mutex, one connection per reader thread.
struct SqliteStore {
    /// The database file.
    path: PathBuf,
    /// `PRAGMA cache_size` in KiB (per connection).
    cache_kib: i64,
    /// The writer connection.
    writer: Mutex<rusqlite::Connection>,
}

/// Opens a connection with the bench's pragmas.
fn sqlite_connection(path: &Path, cache_kib: i64) -> Res<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path).ctx("sqlite open")?;
    conn.busy_timeout(Duration::from_secs(120))
        .ctx("sqlite busy_timeout")?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .ctx("sqlite journal_mode")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("sqlite refused WAL mode (got {mode})"));
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .ctx("sqlite synchronous")?;
    conn.pragma_update(None, "cache_size", -cache_kib)
        .ctx("sqlite cache_size")?;
    Ok(conn)
}

impl SqliteStore {
    /// Creates `dir/sqlite.db` and the table.
    fn open(dir: &Path, cache: u64) -> Res<SqliteStore> {
        let path = dir.join("sqlite.db");
        let cache_kib = (cache / 1024) as i64;
        let writer = sqlite_connection(&path, cache_kib)?;
        writer
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID",
            )
            .ctx("sqlite create table")?;
        Ok(SqliteStore {
            path,
            cache_kib,
            writer: Mutex::new(writer),
        })
    }

    /// The writer connection.
    fn writer(&self) -> Res<std::sync::MutexGuard<'_, rusqlite::Connection>> {
        self.writer
            .lock()
            .map_err(|_| "sqlite writer mutex poisoned".to_string())
    }
}

/// The upsert every SQLite write uses.
const SQLITE_PUT: &str = "INSERT OR REPLACE INTO kv(k, v) VALUES (?1, ?2)";

impl Store for SqliteStore {
    fn put_durable(&self, key: &[u8], value: &[u8]) -> Res<()> {
        let conn = self.writer()?;
        conn.prepare_cached(SQLITE_PUT)
            .ctx("sqlite prepare")?
            .execute((key, value))
            .ctx("sqlite insert")?;
        Ok(())
    }

    fn load(&self, n: u64) -> Res<()> {
        let mut conn = self.writer()?;
        for start in (0..n).step_by(LOAD_BATCH as usize) {
            let tx = conn.transaction().ctx("sqlite begin")?;
            {
                let mut put = tx.prepare_cached(SQLITE_PUT).ctx("sqlite prepare")?;
                for i in start..(start + LOAD_BATCH).min(n) {
                    put.execute((&key(i)[..], &value(i)[..]))
                        .ctx("sqlite insert")?;
                }
            }
            tx.commit().ctx("sqlite commit")?;
        }
        // Settle: move the WAL into the database file.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .ctx("sqlite wal_checkpoint")
    }

    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        Ok(Box::new(SqliteReader {
            conn: sqlite_connection(&self.path, self.cache_kib)?,
        }))
    }

    fn close(self: Box<Self>) -> Res<()> {
        let conn = self
            .writer
            .into_inner()
            .map_err(|_| "sqlite writer mutex poisoned".to_string())?;
        conn.close().map_err(|(_, e)| format!("sqlite close: {e}"))
    }
}

/// SQLite reads on the thread's own connection, each statement its own transaction.
struct SqliteReader {
    /// The thread's connection.
    conn: rusqlite::Connection,
}

impl Reader for SqliteReader {
    fn get(&mut self, key: &[u8]) -> Res<bool> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT v FROM kv WHERE k = ?1")
            .ctx("sqlite prepare")?;
        let mut rows = stmt.query([key]).ctx("sqlite get")?;
        match rows.next().ctx("sqlite get")? {
            Some(row) => {
                let v = row.get_ref(0).ctx("sqlite column")?;
                Ok(!v.as_blob().ctx("sqlite blob")?.is_empty())
            }
            None => Ok(false),
        }
    }

    fn scan(&mut self, start: &[u8], len: usize) -> Res<usize> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT k, v FROM kv WHERE k >= ?1 ORDER BY k LIMIT ?2")
            .ctx("sqlite prepare")?;
        let mut rows = stmt.query((start, len as i64)).ctx("sqlite scan")?;
        let mut n = 0;
        while let Some(row) = rows.next().ctx("sqlite scan")? {
            let k = row.get_ref(0).ctx("sqlite column")?;
            let v = row.get_ref(1).ctx("sqlite column")?;
            let (k, v) = (
                k.as_blob().ctx("sqlite blob")?,
                v.as_blob().ctx("sqlite blob")?,
            );
            n += usize::from(!k.is_empty() && !v.is_empty());
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------
// fjall

/// fjall: one keyspace, no compression (built without its `lz4` feature), each commit
/// an insert followed by `persist(PersistMode::SyncData)`.
struct FjallStore {
    /// The database (journal, caches, background work).
    db: fjall::Database,
    /// The keyspace holding the data.
    ks: fjall::Keyspace,
}

impl FjallStore {
    /// Creates the database in `dir/fjall` with a `cache`-byte block cache.
    fn open(dir: &Path, cache: u64) -> Res<FjallStore> {
        let db = fjall::Database::builder(dir.join("fjall"))
            .cache_size(cache)
            .open()
            .ctx("fjall open")?;
        let ks = db
            .keyspace("kv", fjall::KeyspaceCreateOptions::default)
            .ctx("fjall keyspace")?;
        Ok(FjallStore { db, ks })
    }
}

impl Store for FjallStore {
    fn put_durable(&self, key: &[u8], value: &[u8]) -> Res<()> {
        self.ks.insert(key, value).ctx("fjall insert")?;
        self.db
            .persist(fjall::PersistMode::SyncData)
            .ctx("fjall persist")
    }

    fn load(&self, n: u64) -> Res<()> {
        for start in (0..n).step_by(LOAD_BATCH as usize) {
            let mut batch = self.db.batch();
            for i in start..(start + LOAD_BATCH).min(n) {
                batch.insert(&self.ks, &key(i)[..], &value(i)[..]);
            }
            batch.commit().ctx("fjall batch")?;
        }
        self.db
            .persist(fjall::PersistMode::SyncData)
            .ctx("fjall persist")?;
        self.ks
            .rotate_memtable_and_wait()
            .ctx("fjall flush memtable")?;
        // Settle, as `db_bench`'s waitforcompaction: until no flush or compaction has
        // run for a while (at most a minute).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut quiet = 0;
        while quiet < 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            let idle = self.db.outstanding_flushes() == 0 && self.db.active_compactions() == 0;
            quiet = if idle { quiet + 1 } else { 0 };
        }
        Ok(())
    }

    fn reader(&self) -> Res<Box<dyn Reader + '_>> {
        Ok(Box::new(FjallReader { ks: &self.ks }))
    }

    fn close(self: Box<Self>) -> Res<()> {
        self.db
            .persist(fjall::PersistMode::SyncAll)
            .ctx("fjall persist")
    }
}

/// fjall reads at the latest sequence number.
struct FjallReader<'a> {
    /// The keyspace.
    ks: &'a fjall::Keyspace,
}

impl Reader for FjallReader<'_> {
    fn get(&mut self, key: &[u8]) -> Res<bool> {
        let got = self.ks.get(key).ctx("fjall get")?;
        Ok(got.is_some_and(|v| !v.is_empty()))
    }

    fn scan(&mut self, start: &[u8], len: usize) -> Res<usize> {
        let mut n = 0;
        for guard in self.ks.range(start..).take(len) {
            let (k, v) = guard.into_inner().ctx("fjall next")?;
            n += usize::from(!k.is_empty() && !v.is_empty());
        }
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------
// RocksDB through db_bench

/// What one `db_bench` benchmark printed.
#[derive(Clone, Debug)]
struct DbBenchOut {
    /// Operations done, all threads.
    ops: u64,
    /// Seconds, first thread start to last thread end.
    secs: f64,
    /// Median microseconds per operation (with `--histogram=1`).
    p50_us: Option<f64>,
    /// 99th percentile microseconds per operation (with `--histogram=1`).
    p99_us: Option<f64>,
    /// `(found, of)` for reads and seeks.
    found: Option<(u64, u64)>,
}

impl DbBenchOut {
    /// As a report figure.
    fn figure(&self, note: String) -> Figure {
        Figure {
            ops: self.ops,
            secs: self.secs,
            p50_us: self.p50_us,
            p99_us: self.p99_us,
            note,
        }
    }
}

/// Runs `db_bench` on `dir`: the shared flags (24-byte keys, 150-byte values, no
/// compression, the peer cache size, a fixed seed) plus `args`; returns its stdout and
/// stderr (where it prints its header and progress).
fn db_bench(exe: &Path, dir: &Path, knobs: &Knobs, args: &[String]) -> Res<(String, String)> {
    let out = Command::new(exe)
        .arg(format!("--db={}", dir.display()))
        .arg(format!("--key_size={KEY_LEN}"))
        .arg(format!("--value_size={VALUE_LEN}"))
        .arg("--compression_type=none")
        .arg(format!("--cache_size={}", knobs.cache_bytes()))
        .arg(format!(
            "--cache_index_and_filter_blocks={}",
            knobs.tables == Tables::Inside
        ))
        .arg("--seed=1")
        .args(args)
        .output()
        .ctx(&format!("run {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(format!(
            "db_bench {} failed ({}): {}",
            args.join(" "),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    Ok((stdout, stderr))
}

/// Parses `name`'s result line (`name : X micros/op Y ops/sec S seconds N operations;
/// … (F of T found)`) and the `Percentiles:` line after it.
fn parse_db_bench(stdout: &str, name: &str) -> Res<DbBenchOut> {
    let mut lines = stdout.lines();
    let line = lines
        .by_ref()
        .find(|l| {
            let mut t = l.split_whitespace();
            t.next() == Some(name) && t.next() == Some(":")
        })
        .ok_or_else(|| format!("db_bench printed no {name} result"))?;
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let at = tokens
        .iter()
        .position(|&t| t == "ops/sec")
        .ok_or_else(|| format!("no ops/sec in {line:?}"))?;
    let num = |i: usize| -> Res<f64> {
        tokens
            .get(i)
            .and_then(|t| t.trim_end_matches(';').parse().ok())
            .ok_or_else(|| format!("cannot parse {line:?}"))
    };
    let secs = num(at + 1)?;
    let ops = num(at + 3)? as u64;
    let found = line.rsplit_once('(').and_then(|(_, tail)| {
        let (f, rest) = tail.split_once(" of ")?;
        let (t, _) = rest.split_once(' ')?;
        Some((f.trim().parse().ok()?, t.trim().parse().ok()?))
    });
    let (mut p50_us, mut p99_us) = (None, None);
    for l in lines {
        if l.split_whitespace().nth(1) == Some(":") && l.contains("ops/sec") {
            break; // the next benchmark's result
        }
        if let Some(rest) = l.strip_prefix("Percentiles:") {
            let t: Vec<&str> = rest.split_whitespace().collect();
            let pick = |label: &str| {
                t.iter()
                    .position(|&x| x == label)
                    .and_then(|i| t.get(i + 1)?.parse().ok())
            };
            p50_us = pick("P50:");
            p99_us = pick("P99:");
            break;
        }
    }
    Ok(DbBenchOut {
        ops,
        secs,
        p50_us,
        p99_us,
        found,
    })
}

/// The RocksDB version `db_bench` prints in its header (on stderr).
fn db_bench_version(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find(|l| l.starts_with("RocksDB:"))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_string)
}

// ---------------------------------------------------------------------------------
// running

/// Starts `threads` threads; each runs `setup`, waits at a barrier with the others, then
/// runs `work`. Returns the wall time from the first thread starting `work` to the last
/// one finishing (each thread reads the clock itself: the spawning thread may not be
/// scheduled for a while after the release on a busy machine) and every thread's result.
fn run_threads<S, T: Send>(
    threads: usize,
    setup: impl Fn(usize) -> Res<S> + Sync,
    work: impl Fn(usize, S) -> Res<T> + Sync,
) -> Res<(Duration, Vec<T>)> {
    let barrier = Barrier::new(threads);
    let spans: Vec<Res<(Instant, Instant, T)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, setup, work) = (&barrier, &setup, &work);
                std::thread::Builder::new()
                    .name("peers-worker".into())
                    .stack_size(1 << 20)
                    .spawn_scoped(s, move || {
                        let state = setup(t);
                        barrier.wait();
                        let started = Instant::now();
                        let out = work(t, state?)?;
                        Ok((started, Instant::now(), out))
                    })
                    .expect("spawn worker thread")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("worker panicked".into())))
            .collect()
    });
    let spans = spans.into_iter().collect::<Res<Vec<_>>>()?;
    let first = spans.iter().map(|s| s.0).min();
    let last = spans.iter().map(|s| s.1).max();
    let elapsed = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a),
        _ => Duration::ZERO,
    };
    Ok((elapsed, spans.into_iter().map(|s| s.2).collect()))
}

/// `threads` committers each doing `commits / threads` durable one-put commits of
/// random keys (any `u64` index, or one in `0..key_space` when that is not 0), each
/// stopping early once `cap` has passed since it started.
fn commit_run(
    store: &dyn Store,
    threads: usize,
    commits: u64,
    cap: Duration,
    key_space: u64,
) -> Res<Figure> {
    let per = (commits / threads as u64).max(1);
    let lat = Latencies::default();
    let (elapsed, done) = run_threads(
        threads,
        |_| Ok(()),
        |t, ()| {
            let mut rng = SplitMix64::new(0xC0FF_EE00 + t as u64);
            let mut nanos = Vec::with_capacity(per as usize);
            let stop = Instant::now() + cap;
            for _ in 0..per {
                let index = match key_space {
                    0 => rng.next(),
                    n => rng.next() % n,
                };
                let (k, v) = (key(index), value(rng.next()));
                let started = Instant::now();
                if started >= stop {
                    break;
                }
                store.put_durable(&k, &v)?;
                nanos.push(started.elapsed().as_nanos() as u64);
            }
            lat.extend(&nanos);
            Ok(nanos.len() as u64)
        },
    )?;
    let ops: u64 = done.iter().sum();
    let planned = per * threads as u64;
    let note = if ops < planned {
        format!(
            "stopped at the {} s cap after {ops} of {planned} commits",
            cap.as_secs()
        )
    } else {
        String::new()
    };
    Ok(Figure {
        ops,
        secs: elapsed.as_secs_f64(),
        p50_us: lat.quantile_us(0.5),
        p99_us: lat.quantile_us(0.99),
        note,
    })
}

/// `threads` readers each doing `ops / threads` point reads (`scan_len` = `None`) or
/// scans of random keys in `0..keys`; checks that every read found its key.
fn read_run(
    store: &dyn Store,
    threads: usize,
    ops: u64,
    keys: u64,
    scan_len: Option<usize>,
) -> Res<Figure> {
    let per = (ops / threads as u64).max(1);
    let (elapsed, counts) = run_threads(
        threads,
        |_| store.reader(),
        |t, mut reader| {
            let mut rng = SplitMix64::new(0x5EED_0000 + t as u64);
            let mut got = 0u64;
            for _ in 0..per {
                let k = key(rng.next() % keys);
                got += match scan_len {
                    None => u64::from(reader.get(&k)?),
                    Some(len) => reader.scan(&k, len)? as u64,
                };
            }
            Ok(got)
        },
    )?;
    let total = per * threads as u64;
    let got: u64 = counts.iter().sum();
    let note = match scan_len {
        None if got != total => return Err(format!("only {got} of {total} keys found")),
        None => String::new(),
        Some(_) => format!("{:.1} entries per scan", got as f64 / total as f64),
    };
    Ok(Figure {
        ops: total,
        secs: elapsed.as_secs_f64(),
        p50_us: None,
        p99_us: None,
        note,
    })
}

/// The machine's 1, 5 and 15 minute load averages.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// CPU and I/O pressure (`some avg10` of `/proc/pressure/{cpu,io}`: the share of the
/// last 10 s in which some runnable task waited for a core, or for I/O).
fn pressure() -> String {
    let avg10 = |what: &str| {
        std::fs::read_to_string(format!("/proc/pressure/{what}"))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("some"))?;
                let v = line
                    .split_whitespace()
                    .find_map(|t| t.strip_prefix("avg10="))?;
                Some(format!("{what} {v}%"))
            })
            .unwrap_or_else(|| format!("{what} ?"))
    };
    format!("{}, {}", avg10("cpu"), avg10("io"))
}

/// Everything measured, and what happened along the way.
struct Report {
    /// Figures by row and engine.
    figures: BTreeMap<Row, BTreeMap<Engine, Res<Figure>>>,
    /// Lines for the notes section (load times, versions, failures).
    notes: Vec<String>,
    /// RocksDB's version, from `db_bench`'s header.
    rocksdb_version: Option<String>,
}

impl Report {
    /// Records one result and prints a progress line.
    fn record(&mut self, row: Row, engine: Engine, result: Res<Figure>, scan_len: usize) {
        let label = row.label(scan_len);
        match &result {
            Ok(f) => println!(
                "peers: {label:<48} {:<8} {:>12}/s  p50 {:>9}  p99 {:>9}  ({} ops in {:.2}s; after: load {}, pressure {}){}",
                engine.label(),
                thousands(f.rate()),
                f.p50_us.map_or("-".into(), micros),
                f.p99_us.map_or("-".into(), micros),
                f.ops,
                f.secs,
                loadavg(),
                pressure(),
                if f.note.is_empty() {
                    String::new()
                } else {
                    format!("; {}", f.note)
                }
            ),
            Err(e) => println!("peers: {label:<48} {:<8} NOT RUN: {e}", engine.label()),
        }
        if let Err(e) = &result {
            self.notes
                .push(format!("{} / {label}: not run: {e}", engine.label()));
        }
        self.figures.entry(row).or_default().insert(engine, result);
    }
}

/// `n` rounded, with thousands separators.
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds as `µs` below a millisecond, else `ms`.
fn micros(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

/// A fresh data directory for one run under the root (deleted when dropped).
fn run_dir(knobs: &Knobs, what: &str) -> Res<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{what}-"))
        .tempdir_in(&knobs.dir)
        .ctx(&format!(
            "create a data directory in {}",
            knobs.dir.display()
        ))
}

/// The durable-commit workload: for each committer count, every engine on a fresh
/// database, back to back; then, with `AEDB_PEERS_COMMIT_PRELOAD`, aedb on a loaded one.
fn commits_phase(knobs: &Knobs, report: &mut Report) {
    for &threads in &knobs.committers {
        let row = Row::Commits(threads);
        for &engine in &knobs.engines {
            let result = commit_engine(knobs, engine, threads, report);
            report.record(row, engine, result, knobs.scan_len);
        }
    }
    if knobs.commit_preload > 0 && knobs.engines.contains(&Engine::Aedb) {
        for &threads in &knobs.committers {
            let row = Row::LoadedCommits {
                threads,
                keys: knobs.commit_preload,
            };
            let result = loaded_commit_run(knobs, threads, report);
            report.record(row, Engine::Aedb, result, knobs.scan_len);
        }
    }
}

/// aedb's durable-commit run with `threads` committers on a database loaded with
/// `AEDB_PEERS_COMMIT_PRELOAD` keys (in key order, checkpointed, then left until its
/// background compactions are done, as `db_bench` waits for compactions); the commits
/// then put random keys over the loaded range, so they overwrite loaded keys.
fn loaded_commit_run(knobs: &Knobs, threads: usize, report: &mut Report) -> Res<Figure> {
    let dir = run_dir(knobs, &format!("loaded-commits-aedb-{threads}"))?;
    let store = Box::new(AedbStore::open(dir.path(), knobs));
    let t = Instant::now();
    // `load` returns once the compactions it started are done.
    store.load(knobs.commit_preload)?;
    report.notes.push(format!(
        "aedb loaded {} keys and its compactions settled in {:.1} s, before its {threads}-committer loaded-database commit run",
        knobs.commit_preload,
        t.elapsed().as_secs_f64(),
    ));
    let cap = Duration::from_secs(knobs.commit_secs);
    let figure = commit_run(
        store.as_ref(),
        threads,
        knobs.commits,
        cap,
        knobs.commit_preload,
    );
    store.close()?;
    figure
}

/// One engine's durable-commit run with `threads` committers.
fn commit_engine(
    knobs: &Knobs,
    engine: Engine,
    threads: usize,
    report: &mut Report,
) -> Res<Figure> {
    let dir = run_dir(knobs, &format!("commits-{}-{threads}", engine.id()))?;
    if engine == Engine::Rocksdb {
        let exe = knobs
            .db_bench
            .as_deref()
            .ok_or("db_bench not found (install the Debian package rocksdb-tools)")?;
        let per = (knobs.commits / threads as u64).max(1);
        let args = [
            "--benchmarks=fillrandom".to_string(),
            "--sync=true".into(),
            format!("--threads={threads}"),
            format!("--num={per}"),
            "--histogram=1".into(),
        ];
        let (stdout, stderr) = db_bench(exe, dir.path(), knobs, &args)?;
        if report.rocksdb_version.is_none() {
            report.rocksdb_version = db_bench_version(&stderr);
        }
        return Ok(parse_db_bench(&stdout, "fillrandom")?.figure(String::new()));
    }
    let store = open_store(engine, dir.path(), knobs)?;
    let cap = Duration::from_secs(knobs.commit_secs);
    let figure = commit_run(store.as_ref(), threads, knobs.commits, cap, 0);
    store.close()?;
    figure
}

/// The read and scan workloads: each engine loads the key set once, then runs reads
/// and scans at every reader count, then its database is deleted.
fn reads_phase(knobs: &Knobs, report: &mut Report) {
    for &engine in &knobs.engines {
        if let Err(e) = read_engine(knobs, engine, report) {
            for &threads in &knobs.readers {
                for row in [Row::Reads(threads), Row::Scans(threads)] {
                    let wanted = match row {
                        Row::Reads(_) => knobs.wants(Workload::Reads),
                        _ => knobs.wants(Workload::Scans),
                    };
                    let done = report
                        .figures
                        .get(&row)
                        .is_some_and(|m| m.contains_key(&engine));
                    if wanted && !done {
                        report.record(row, engine, Err(e.clone()), knobs.scan_len);
                    }
                }
            }
        }
    }
}

/// One engine's load, reads and scans.
fn read_engine(knobs: &Knobs, engine: Engine, report: &mut Report) -> Res<()> {
    let dir = run_dir(knobs, &format!("reads-{}", engine.id()))?;
    let scan_len = knobs.scan_len;
    if engine == Engine::Rocksdb {
        let exe = knobs
            .db_bench
            .as_deref()
            .ok_or("db_bench not found (install the Debian package rocksdb-tools)")?;
        let load = [
            "--benchmarks=fillseq,flush,waitforcompaction".to_string(),
            format!("--num={}", knobs.keys),
            "--threads=1".into(),
        ];
        let (stdout, stderr) = db_bench(exe, dir.path(), knobs, &load)?;
        if report.rocksdb_version.is_none() {
            report.rocksdb_version = db_bench_version(&stderr);
        }
        let fill = parse_db_bench(&stdout, "fillseq")?;
        report.notes.push(format!(
            "RocksDB loaded {} keys in {:.1} s (db_bench fillseq; then flush and waitforcompaction, not timed)",
            knobs.keys, fill.secs
        ));
        let run = |name: &str, threads: usize, ops: u64, extra: Option<String>| -> Res<Figure> {
            let per = (ops / threads as u64).max(1);
            let mut args = vec![
                "--use_existing_db=1".to_string(),
                format!("--benchmarks={name}"),
                format!("--num={}", knobs.keys),
                format!("--reads={per}"),
                format!("--threads={threads}"),
            ];
            args.extend(extra);
            let out = parse_db_bench(&db_bench(exe, dir.path(), knobs, &args)?.0, name)?;
            let note = match (name, out.found) {
                ("readrandom", Some((f, t))) if f != t => {
                    return Err(format!("only {f} of {t} keys found"));
                }
                ("seekrandom", Some((f, t))) => format!("{f} of {t} seeks found a key"),
                _ => String::new(),
            };
            Ok(out.figure(note))
        };
        for &threads in &knobs.readers {
            if knobs.wants(Workload::Reads) {
                let r = run("readrandom", threads, knobs.reads, None);
                report.record(Row::Reads(threads), engine, r, scan_len);
            }
        }
        for &threads in &knobs.readers {
            if knobs.wants(Workload::Scans) {
                let extra = Some(format!("--seek_nexts={scan_len}"));
                let r = run("seekrandom", threads, knobs.scans, extra);
                report.record(Row::Scans(threads), engine, r, scan_len);
            }
        }
        return Ok(());
    }
    let store = open_store(engine, dir.path(), knobs)?;
    let started = Instant::now();
    store.load(knobs.keys)?;
    report.notes.push(format!(
        "{} loaded and settled {} keys in {:.1} s ({} puts per transaction)",
        engine.label(),
        knobs.keys,
        started.elapsed().as_secs_f64(),
        LOAD_BATCH
    ));
    for &threads in &knobs.readers {
        if knobs.wants(Workload::Reads) {
            let r = read_run(store.as_ref(), threads, knobs.reads, knobs.keys, None);
            report.record(Row::Reads(threads), engine, r, scan_len);
        }
    }
    for &threads in &knobs.readers {
        if knobs.wants(Workload::Scans) {
            let r = read_run(
                store.as_ref(),
                threads,
                knobs.scans,
                knobs.keys,
                Some(scan_len),
            );
            report.record(Row::Scans(threads), engine, r, scan_len);
        }
    }
    store.close()
}

/// The version of crate `name` in the workspace's lock file.
fn locked_version(name: &str) -> String {
    let mut lines = CARGO_LOCK.lines();
    let wanted = format!("name = \"{name}\"");
    while let Some(line) = lines.next() {
        if line == wanted
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = "))
        {
            return v.trim_matches('"').to_string();
        }
    }
    "?".into()
}

/// The markdown report: throughput table, commit latencies, ratios, notes.
fn render(knobs: &Knobs, report: &Report, load_start: &str, wall: Duration) -> String {
    let engines = &knobs.engines;
    let mut out = String::new();
    let _ = writeln!(out, "## Peer comparison\n");
    let versions: Vec<String> = engines
        .iter()
        .map(|e| match e {
            Engine::Aedb => format!(
                "aedb {} (sealed production profile)",
                env!("CARGO_PKG_VERSION")
            ),
            Engine::Redb => format!("redb {}", locked_version("redb")),
            Engine::Sqlite => format!(
                "SQLite {} (rusqlite {}, bundled)",
                rusqlite::version(),
                locked_version("rusqlite")
            ),
            Engine::Fjall => format!("fjall {}", locked_version("fjall")),
            Engine::Rocksdb => format!(
                "RocksDB {} (`db_bench`)",
                report.rocksdb_version.as_deref().unwrap_or("(not run)")
            ),
        })
        .collect();
    let _ = writeln!(out, "Engines: {}.", versions.join(", "));
    let _ = writeln!(
        out,
        "Machine: {} CPUs; load average (1/5/15 min) {load_start} at the start, {} at the end; {:.0} s for the whole run.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        wall.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "Sizes: {KEY_LEN}-byte keys, {VALUE_LEN}-byte values; {} durable commits per run (in-process runs capped at {} s); {} preloaded keys; {} point reads and {} scans of {} entries per run; cache {} MiB for every engine (aedb: its block cache); index and filter blocks {}.\n",
        knobs.commits,
        knobs.commit_secs,
        knobs.keys,
        knobs.reads,
        knobs.scans,
        knobs.scan_len,
        knobs.cache_mb,
        match knobs.tables {
            Tables::Default =>
                "where each engine keeps them by default (aedb: charged to its cache, up to half pinned; RocksDB: outside its cache)",
            Tables::Outside =>
                "outside the cache for aedb and RocksDB (aedb `TablePlacement::Pinned`)",
            Tables::Inside =>
                "in the cache for aedb and RocksDB (aedb `TablePlacement::InCache`, `--cache_index_and_filter_blocks=true`)",
        }
    );

    let header = |first: &str, cols: &[String]| {
        let mut h = format!("| {first} |");
        let mut sep = String::from("| --- |");
        for c in cols {
            let _ = write!(h, " {c} |");
            sep.push_str(" ---: |");
        }
        format!("{h}\n{sep}\n")
    };
    let labels: Vec<String> = engines.iter().map(|e| e.label().to_string()).collect();
    let cell = |row: Row, e: Engine| -> Option<&Figure> {
        report.figures.get(&row)?.get(&e)?.as_ref().ok()
    };

    let _ = writeln!(out, "### Throughput (higher is better)\n");
    out.push_str(&header("workload", &labels));
    for &row in report.figures.keys() {
        let _ = write!(out, "| {} |", row.label(knobs.scan_len));
        for &e in engines {
            let text = cell(row, e).map_or("not run".into(), |f| thousands(f.rate()));
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }

    let commit_rows: Vec<Row> = report
        .figures
        .keys()
        .copied()
        .filter(|r| matches!(r, Row::Commits(_) | Row::LoadedCommits { .. }))
        .collect();
    if !commit_rows.is_empty() {
        let _ = writeln!(
            out,
            "\n### Durable commit latency, p50 / p99 (lower is better)\n"
        );
        out.push_str(&header("committers", &labels));
        for &row in &commit_rows {
            match row {
                Row::LoadedCommits { threads, keys } => {
                    let _ = write!(out, "| {threads} (aedb on {keys} keys) |");
                }
                _ => {
                    let Row::Commits(n) = row else { continue };
                    let _ = write!(out, "| {n} |");
                }
            }
            for &e in engines {
                let text = cell(row, e).map_or("not run".into(), |f| {
                    format!(
                        "{} / {}",
                        f.p50_us.map_or("-".into(), micros),
                        f.p99_us.map_or("-".into(), micros)
                    )
                });
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
    }

    let peers: Vec<Engine> = engines
        .iter()
        .copied()
        .filter(|&e| e != Engine::Aedb)
        .collect();
    if engines.contains(&Engine::Aedb) && !peers.is_empty() {
        let _ = writeln!(
            out,
            "\n### aedb ÷ peer, throughput (above 1: aedb is faster)\n"
        );
        let cols: Vec<String> = peers.iter().map(|e| format!("÷ {}", e.label())).collect();
        out.push_str(&header("workload", &cols));
        for &row in report.figures.keys() {
            let _ = write!(out, "| {} |", row.label(knobs.scan_len));
            for &e in &peers {
                let text = match (cell(row, Engine::Aedb), cell(row.peer_row(), e)) {
                    (Some(a), Some(p)) if p.rate() > 0.0 => format!("{:.2}×", a.rate() / p.rate()),
                    _ => "-".into(),
                };
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
    }

    let loaded: Vec<String> = report
        .figures
        .keys()
        .filter_map(|&row| {
            let Row::LoadedCommits { threads, keys } = row else {
                return None;
            };
            let (l, f) = (
                cell(row, Engine::Aedb)?,
                cell(row.peer_row(), Engine::Aedb)?,
            );
            Some(format!(
                "{threads} committer(s): {} on {keys} keys vs {} fresh = {:.2}×",
                thousands(l.rate()),
                thousands(f.rate()),
                l.rate() / f.rate().max(f64::MIN_POSITIVE)
            ))
        })
        .collect();
    if !loaded.is_empty() {
        let _ = writeln!(
            out,
            "\n### aedb on a loaded database ÷ aedb on a fresh one, same run\n\n{}",
            loaded.join("; ")
        );
    }

    let _ = writeln!(out, "\n### Notes\n");
    let notes = [
        "Durable means: aedb `Finality::Durable` (ack after the WAL writer's `fdatasync`, group commit); redb `Durability::Immediate`; SQLite WAL + `synchronous=FULL` (one writer connection behind a mutex); fjall insert + `persist(PersistMode::SyncData)`; RocksDB `db_bench --sync=true`.".to_string(),
        "Reads see the latest commit: aedb the latest published snapshot per operation (`kv_get`; a snapshot per scan, visited with `kv_scan_with`), redb one read transaction per operation, SQLite one autocommit statement per operation on the thread's own connection, fjall and RocksDB plain gets and iterators.".to_string(),
    ];
    let rocksdb_note = "RocksDB runs as a separate process (`db_bench`, flags in `benches/benches/peers.rs`); the Debian build warns that its assertions are enabled, which makes its figures somewhat pessimistic.".to_string();
    let rocksdb = engines.contains(&Engine::Rocksdb).then_some(&rocksdb_note);
    for n in notes.iter().chain(rocksdb).chain(&report.notes) {
        let _ = writeln!(out, "- {n}");
    }
    for (row, by_engine) in &report.figures {
        let row_notes: Vec<String> = by_engine
            .iter()
            .filter_map(|(e, f)| {
                let f = f.as_ref().ok().filter(|f| !f.note.is_empty())?;
                Some(format!("{} {}", e.label(), f.note))
            })
            .collect();
        if !row_notes.is_empty() {
            let _ = writeln!(
                out,
                "- {}: {}",
                row.label(knobs.scan_len),
                row_notes.join("; ")
            );
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let smoke = args.iter().any(|a| a == "--test");
    let knobs = match Knobs::from_env(smoke) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("peers: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&knobs.dir) {
        eprintln!("peers: cannot create {}: {e}", knobs.dir.display());
        std::process::exit(2);
    }
    println!("peers: knobs {knobs:?}");
    println!(
        "peers: every engine's cache is {} MiB (aedb: its block cache)",
        knobs.cache_mb
    );
    if knobs.engines.contains(&Engine::Rocksdb) && knobs.db_bench.is_none() {
        println!("peers: db_bench not found: RocksDB will not run (install rocksdb-tools)");
    }
    let load_start = loadavg();
    let started = Instant::now();
    let mut report = Report {
        figures: BTreeMap::new(),
        notes: Vec::new(),
        rocksdb_version: None,
    };
    if knobs.wants(Workload::Commits) {
        commits_phase(&knobs, &mut report);
    }
    if knobs.wants(Workload::Reads) || knobs.wants(Workload::Scans) {
        reads_phase(&knobs, &mut report);
    }
    let text = render(&knobs, &report, &load_start, started.elapsed());
    println!("\n{text}");
    if let Some(path) = &knobs.out
        && let Err(e) = std::fs::write(path, &text)
    {
        eprintln!("peers: cannot write {}: {e}", path.display());
    }
}
