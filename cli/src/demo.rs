//! `aedb demo`: a ledger workload on a real, durable data directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aedb::{
    AedbInstance, Assertion, ColumnDef, ColumnName, ColumnType, Finality, IdempotencyKey, KvKey,
    Namespace, Numeric, NumericType, SecretKey, TableName, TableSchema, Timestamp, Transaction,
    Value,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::CliError;
use crate::keys::{self, Keys};

/// Arguments of `aedb demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Data directory (created if missing; an existing demo ledger is reused).
    #[arg(long, default_value = crate::DEFAULT_DEMO_DIR)]
    data_dir: PathBuf,
    /// Number of accounts.
    #[arg(long, default_value_t = 1_000)]
    accounts: u64,
    /// Opening balance of each account.
    #[arg(long, default_value_t = 1_000)]
    initial_balance: u64,
    /// Transfers to attempt.
    #[arg(long, default_value_t = 20_000)]
    transfers: u64,
    /// Concurrent committer threads.
    #[arg(long, default_value_t = 64)]
    threads: u64,
    /// Commit finality: durable (ack after fsync) or visible (ack after apply).
    #[arg(long, default_value = "durable", value_parser = ["durable", "visible"])]
    finality: String,
}

/// The demo's fixed keys. The demo's data is not secret; real deployments inject
/// their keys from a secret manager or use an HSM key provider.
const DEMO_KEY: [u8; 32] = *b"aedb-demo-key-not-for-production";
const DEMO_DATA_KEY: [u8; 32] = *b"aedb-demo-data-key-not-for-prod!";

/// The demo's keys: read from the key file beside the data directory
/// (`<data-dir>.key`) if it exists, else the demo's fixed keys, written there (mode 0600,
/// hex) so the other commands find them without key options. Returns the keys and what
/// to tell the user (never the key bytes).
fn demo_keys(data_dir: &Path) -> Result<(Keys, String), CliError> {
    let path = keys::key_file_beside(data_dir);
    if path.exists() {
        let found = keys::read_key_file(&path)?;
        if found.manifest.is_none() {
            return Err(CliError::Usage(format!(
                "{} has no manifest_key; the demo runs with the production profile",
                path.display()
            )));
        }
        return Ok((found, format!("keys: read from {}", path.display())));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", parent.display())))?;
    }
    let demo = Keys {
        manifest: Some(SecretKey::new(DEMO_KEY)),
        data: Some(SecretKey::new(DEMO_DATA_KEY)),
    };
    keys::write_key_file(
        &path,
        &demo,
        &format!(
            "aedb demo keys for {} (hex): the demo's fixed, public keys, not for production.\n\
             The aedb CLI reads this file for that data directory (or pass --key-file).",
            data_dir.display()
        ),
    )?;
    Ok((
        demo,
        format!(
            "keys: wrote {} (owner-only, hex); aedb check/verify/inspect/backup on this directory read it without key options",
            path.display()
        ),
    ))
}

const PROJECT: &str = "ledger";
const SCOPE: &str = "main";
const TRANSFERS: &str = "transfers";

fn account_key(id: u64) -> Result<KvKey, aedb::Error> {
    Ok(KvKey::new(format!("acct/{id:08}"))?)
}

fn col(name: &str) -> Result<ColumnName, aedb::Error> {
    Ok(ColumnName::new(name)?)
}

/// Runs the demo end to end.
pub fn run(args: DemoArgs) -> Result<(), CliError> {
    if args.accounts < 2 || args.threads == 0 || args.transfers == 0 {
        return Err(CliError::Usage(
            "demo needs --accounts >= 2, --threads >= 1 and --transfers >= 1".into(),
        ));
    }
    let finality = match args.finality.as_str() {
        "visible" => Finality::Visible,
        _ => Finality::Durable,
    };
    println!("aedb demo: ledger in {}", args.data_dir.display());
    let (keys, told) = demo_keys(&args.data_dir)?;
    println!("{told}");
    let db = Arc::new(AedbInstance::open(&args.data_dir, keys.config())?);
    let ns = Namespace::parse(PROJECT, SCOPE).map_err(aedb::Error::from)?;
    let table = TableName::new(TRANSFERS).map_err(aedb::Error::from)?;
    let expected_total = setup(&db, &ns, &table, &args)?;
    let rows_before = db.snapshot()?.table_len(&ns, &table)? as u64;

    let report = run_transfers(&db, &ns, &table, &args, finality)?;
    let metrics = db.operational_metrics();
    print_report(&report, &metrics, args.threads, finality);

    let db =
        Arc::try_unwrap(db).map_err(|_| CliError::Integrity("instance still shared".into()))?;
    let started = Instant::now();
    let checkpoint = db
        .checkpoint_now()
        .map_err(|e| CliError::Integrity(format!("checkpoint failed: {e}")))?;
    println!(
        "incremental checkpoint at lsn {}: {} bytes sealed (XChaCha20-Poly1305) into one run file in {:.1} ms; retired {} WAL segments",
        checkpoint.lsn,
        checkpoint.bytes,
        started.elapsed().as_secs_f64() * 1e3,
        checkpoint.retired_segments
    );
    print_memory(&db.operational_metrics());
    db.shutdown()?;

    // Reopen: everything acknowledged must have survived, and money is conserved.
    let started = Instant::now();
    let db = AedbInstance::open(&args.data_dir, keys.config())?;
    let reopen = started.elapsed();
    let snap = db.snapshot()?;
    let mut total: u128 = 0;
    for id in 0..args.accounts {
        match snap.kv_get_numeric(&ns, account_key(id)?.as_bytes(), NumericType::U64) {
            Ok(Numeric::U64(v)) => total += u128::from(v),
            Ok(other) => return Err(CliError::Integrity(format!("account {id} holds {other:?}"))),
            Err(e) => return Err(e.into()),
        }
    }
    let rows_after = snap.table_len(&ns, &table)? as u64;
    println!(
        "reopened in {:.1} ms from the run files' metadata ({} WAL frames replayed after the last checkpoint)",
        reopen.as_secs_f64() * 1e3,
        db.operational_metrics().recovery_frames
    );
    if total != u128::from(expected_total) {
        return Err(CliError::Integrity(format!(
            "total balance {total} != expected {expected_total}"
        )));
    }
    if rows_after != rows_before + report.committed {
        return Err(CliError::Integrity(format!(
            "{rows_after} transfer rows after reopen, expected {} + {}",
            rows_before, report.committed
        )));
    }
    println!(
        "verified: total balance {total} conserved across {} accounts; {} transfer rows",
        args.accounts, rows_after
    );
    db.shutdown()?;
    Ok(())
}

/// Resident memory of this process (Linux `/proc/self/status`), in KiB.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The memory the storage engine holds against its budget, and the LSM's shape.
fn print_memory(m: &aedb::OperationalMetrics) {
    let s = &m.storage;
    let rss = resident_kib().map_or("unknown".to_owned(), |k| {
        format!("{:.1} MiB", k as f64 / 1024.0)
    });
    println!(
        "memory: resident {rss}; memtables {:.1} KiB in {}; block cache {:.1} KiB of {:.1} MiB ({} hits, {} misses); runs per level {:?}; write amplification {:.2}",
        s.memtable_bytes as f64 / 1024.0,
        s.memtables,
        s.cache_bytes as f64 / 1024.0,
        s.cache_capacity as f64 / (1024.0 * 1024.0),
        s.cache_hits,
        s.cache_misses,
        s.level_runs,
        s.write_amplification
    );
}

/// Creates the project, scope, table and funded accounts unless they exist; returns
/// the total money in the ledger.
fn setup(
    db: &AedbInstance,
    ns: &Namespace,
    table: &TableName,
    args: &DemoArgs,
) -> Result<u64, CliError> {
    let snap = db.snapshot()?;
    if snap.has_namespace(ns) {
        let funded = snap
            .kv_get(ns, b"meta/funded")?
            .map(|e| e.value.as_bytes().to_vec());
        let Some(bytes) = funded else {
            return Err(CliError::Integrity(
                "existing demo ledger has no funding record".into(),
            ));
        };
        let text = String::from_utf8_lossy(&bytes).to_string();
        let mut parts = text.split(',');
        let accounts: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let total: u64 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if accounts != args.accounts {
            return Err(CliError::Usage(format!(
                "the ledger in this directory has {accounts} accounts; pass --accounts {accounts} or use another --data-dir"
            )));
        }
        println!("reusing existing ledger: {accounts} accounts, total {total}");
        return Ok(total);
    }
    db.create_project(PROJECT)?;
    db.create_scope(PROJECT, SCOPE)?;
    let schema = TableSchema::new(
        vec![
            ColumnDef::new(col("id")?, ColumnType::U64),
            ColumnDef::new(col("from_account")?, ColumnType::U64),
            ColumnDef::new(col("to_account")?, ColumnType::U64),
            ColumnDef::new(col("amount")?, ColumnType::U64),
            ColumnDef::new(col("at")?, ColumnType::Timestamp),
        ],
        vec![col("id")?],
    )
    .map_err(|e| CliError::Integrity(format!("demo schema: {e}")))?;
    db.create_table(ns, table.as_str(), schema)?;
    let total = args
        .accounts
        .checked_mul(args.initial_balance)
        .ok_or_else(|| CliError::Usage("accounts * initial balance overflows u64".into()))?;
    let ids: Vec<u64> = (0..args.accounts).collect();
    for chunk in ids.chunks(500) {
        let mut tx = Transaction::new();
        for &id in chunk {
            tx = tx.kv_add(ns, account_key(id)?, Numeric::U64(args.initial_balance));
        }
        db.commit_with(tx, Finality::Durable)?;
    }
    let meta = Transaction::new().kv_put(
        ns,
        KvKey::new(b"meta/funded").map_err(aedb::Error::from)?,
        aedb::KvValue::new(format!("{},{}", args.accounts, total)).map_err(aedb::Error::from)?,
    );
    db.commit_with(meta, Finality::Durable)?;
    println!(
        "created ledger: {} accounts x {} = {total}",
        args.accounts, args.initial_balance
    );
    Ok(total)
}

struct Report {
    committed: u64,
    insufficient: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

fn run_transfers(
    db: &Arc<AedbInstance>,
    ns: &Namespace,
    table: &TableName,
    args: &DemoArgs,
    finality: Finality,
) -> Result<Report, CliError> {
    let next_id = Arc::new(AtomicU64::new(
        db.snapshot()?.lsn().get().wrapping_mul(1_000_000),
    ));
    let remaining = Arc::new(AtomicU64::new(args.transfers));
    let bar = ProgressBar::new(args.transfers);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} transfers [{bar:40}] {pos}/{len} {per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let committed = Arc::new(AtomicU64::new(0));
    let insufficient = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(args.transfers as usize)));
    let failure: Arc<Mutex<Option<aedb::Error>>> = Arc::new(Mutex::new(None));
    let cols = [
        col("id")?,
        col("from_account")?,
        col("to_account")?,
        col("amount")?,
        col("at")?,
    ];
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..args.threads {
            let (db, ns, table, cols) = (db.clone(), ns.clone(), table.clone(), cols.clone());
            let (remaining, next_id, bar) = (remaining.clone(), next_id.clone(), bar.clone());
            let (committed, insufficient) = (committed.clone(), insufficient.clone());
            let (latencies, failure) = (latencies.clone(), failure.clone());
            let accounts = args.accounts;
            let max_amount = (args.initial_balance / 4).max(1);
            s.spawn(move || {
                let mut rng = XorShift::new(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                let mut local = Vec::new();
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                    .is_ok()
                {
                    let from = rng.next() % accounts;
                    let to = (from + 1 + rng.next() % (accounts - 1)) % accounts;
                    let amount = 1 + rng.next() % max_amount;
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let tx = match transfer(&ns, &table, &cols, id, from, to, amount) {
                        Ok(tx) => tx,
                        Err(e) => {
                            failure
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            return;
                        }
                    };
                    let t0 = Instant::now();
                    let result = db.commit_with(tx, finality);
                    local.push(t0.elapsed().as_micros() as u64);
                    match result {
                        Ok(_) => {
                            committed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) if e.failed_assertion() == Some(0) => {
                            insufficient.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failure
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            return;
                        }
                    }
                    bar.inc(1);
                }
                latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(local);
            });
        }
    });
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    if let Some(e) = failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e.into());
    }
    let mut latencies_us =
        std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    latencies_us.sort_unstable();
    Ok(Report {
        committed: committed.load(Ordering::Relaxed),
        insufficient: insufficient.load(Ordering::Relaxed),
        elapsed,
        latencies_us,
    })
}

/// One transfer: assert the payer covers it, move the money, record the transfer.
fn transfer(
    ns: &Namespace,
    table: &TableName,
    cols: &[ColumnName; 5],
    id: u64,
    from: u64,
    to: u64,
    amount: u64,
) -> Result<Transaction, aedb::Error> {
    let now = aedb_types::clock::unix_micros();
    let from_key = account_key(from)?;
    Ok(Transaction::new()
        .assert(Assertion::KvNumericAtLeast {
            ns: ns.clone(),
            key: from_key.clone(),
            min: Numeric::U64(amount),
        })
        .kv_sub(ns, from_key, Numeric::U64(amount))
        .kv_add(ns, account_key(to)?, Numeric::U64(amount))
        .table_insert(
            ns,
            table,
            vec![
                (cols[0].clone(), Value::U64(id)),
                (cols[1].clone(), Value::U64(from)),
                (cols[2].clone(), Value::U64(to)),
                (cols[3].clone(), Value::U64(amount)),
                (
                    cols[4].clone(),
                    Value::Timestamp(Timestamp::from_micros(now)),
                ),
            ],
        )
        .idempotency_key(IdempotencyKey::new(format!("xfer-{id}"))?))
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn print_report(report: &Report, m: &aedb::OperationalMetrics, threads: u64, finality: Finality) {
    let attempted = report.committed + report.insufficient;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let l = &report.latencies_us;
    println!(
        "{attempted} transfers by {threads} threads ({finality:?} finality) in {:.2} s: {:.0} commits/s",
        secs,
        attempted as f64 / secs
    );
    println!(
        "  committed {}, rejected by the balance assertion {}",
        report.committed, report.insufficient
    );
    println!(
        "  commit latency us: p50 {}  p90 {}  p99 {}  max {}",
        percentile(l, 0.50),
        percentile(l, 0.90),
        percentile(l, 0.99),
        l.last().copied().unwrap_or(0)
    );
    println!(
        "  fsyncs {} (p50 <= {} us), mean group-commit batch {:.1}, WAL bytes {}",
        m.fsyncs,
        m.fsync_latency_us.quantile_upper_bound(0.5),
        m.group_commit_batch_size.mean(),
        m.wal_bytes
    );
}

/// A tiny deterministic PRNG for workload generation.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
