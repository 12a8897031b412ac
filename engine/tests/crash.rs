//! Real crash test: a child process runs a concurrent durable ledger and is killed with
//! SIGKILL at a random moment; the parent reopens the directory and checks that every
//! acknowledged commit survived, that no commit is partial, and that LSNs are dense.
//!
//! The child is this test binary re-executed with `--exact crash_child`; the child test
//! does nothing unless `AEDB_CRASH_CHILD_DIR` is set. Every cycle reuses the same data
//! directory, so state (and WAL segments) accumulate across crashes.
//!
//! `AEDB_CRASH_CYCLES` sets the number of kill cycles (default 50). The kill times and the
//! child's workload come from one seed, printed at the start and on failure; set
//! `AEDB_CRASH_SEED=<seed>` to replay it. A child that panics on any thread aborts, and
//! the parent fails the test on anything but its own SIGKILL or on a panic in the
//! child's stderr.

mod child_process;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use child_process::{KillableChild, XorShift, announce_seed, child_env, cycles, emit};

use aedb::{
    AedbConfig, AedbInstance, Assertion, ColumnDef, ColumnName, ColumnType, Direction, Finality,
    IdempotencyKey, KeyRange, KvKey, Namespace, Numeric, NumericType, ProjectName, TableName,
    TableSchema, Transaction, Value,
};
use aedb_model::{Outcome, Rejection};

const CHILD_DIR_ENV: &str = "AEDB_CRASH_CHILD_DIR";
const CHILD_CYCLE_ENV: &str = "AEDB_CRASH_CHILD_CYCLE";
const CHILD_TEST: &str = "crash_child";
const CYCLES_ENV: &str = "AEDB_CRASH_CYCLES";
const DEFAULT_CYCLES: u64 = 50;

const ACCOUNTS: u64 = 16;
const INITIAL_BALANCE: u64 = 1_000;
const CHILD_THREADS: u64 = 4;
/// Small segments so that rotation happens while the child is being killed.
const SEGMENT_SIZE: u64 = 256 * 1024;
/// DDL statements of the setup: project, scope, table. Each consumes one LSN.
const SETUP_DDL: u64 = 3;
/// The child gives up on its own after this long (only if the parent never kills it).
const CHILD_DEADLINE: Duration = Duration::from_secs(20);
/// How long the parent waits for the child's READY line.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
const FUND_KEY: &[u8] = b"fund";

fn config() -> AedbConfig {
    AedbConfig::production([0x42; 32])
        .checkpoint_on_shutdown(false)
        .segment_size(SEGMENT_SIZE)
}

fn ns() -> Namespace {
    Namespace::parse("ledger", "main").expect("valid namespace")
}

fn transfers() -> TableName {
    TableName::new("transfers").expect("valid table name")
}

fn col(name: &str) -> ColumnName {
    ColumnName::new(name).expect("valid column name")
}

fn schema() -> TableSchema {
    TableSchema::new(
        vec![
            ColumnDef::new(col("id"), ColumnType::Text),
            ColumnDef::new(col("src"), ColumnType::U64),
            ColumnDef::new(col("dst"), ColumnType::U64),
            ColumnDef::new(col("amount"), ColumnType::U64),
        ],
        vec![col("id")],
    )
    .expect("valid schema")
}

fn account(i: u64) -> KvKey {
    KvKey::new(format!("acct-{i:02}")).expect("valid key")
}

fn transfer_id(cycle: u64, thread: u64, n: u64) -> String {
    format!("c{cycle:04}-t{thread}-{n:07}")
}

fn fund_tx() -> Transaction {
    let ns = ns();
    let mut tx = Transaction::new()
        .idempotency_key(IdempotencyKey::new(FUND_KEY).expect("valid idempotency key"));
    for i in 0..ACCOUNTS {
        tx = tx.kv_add(&ns, account(i), Numeric::U64(INITIAL_BALANCE));
    }
    tx
}

fn transfer_tx(id: &str, src: u64, dst: u64, amount: u64) -> Transaction {
    let ns = ns();
    Transaction::new()
        .assert(Assertion::KvNumericAtLeast {
            ns: ns.clone(),
            key: account(src),
            min: Numeric::U64(amount),
        })
        .kv_sub(&ns, account(src), Numeric::U64(amount))
        .kv_add(&ns, account(dst), Numeric::U64(amount))
        .table_insert(
            &ns,
            &transfers(),
            vec![
                (col("id"), Value::Text(id.to_owned())),
                (col("src"), Value::U64(src)),
                (col("dst"), Value::U64(dst)),
                (col("amount"), Value::U64(amount)),
            ],
        )
        .idempotency_key(IdempotencyKey::new(id).expect("valid idempotency key"))
}

/// Creates whatever of the schema a previous (killed) child did not get to, then funds
/// the accounts exactly once (idempotently).
fn setup(db: &AedbInstance) {
    let ns = ns();
    let snap = db.snapshot().expect("snapshot");
    if !snap.has_project(&ProjectName::new("ledger").expect("valid project")) {
        db.create_project("ledger").expect("create project");
    }
    if !db.snapshot().expect("snapshot").has_namespace(&ns) {
        db.create_scope("ledger", "main").expect("create scope");
    }
    let has_table = db
        .snapshot()
        .expect("snapshot")
        .tables(&ns)
        .expect("namespace exists")
        .contains(&transfers());
    if !has_table {
        db.create_table(&ns, "transfers", schema())
            .expect("create table");
    }
    db.commit_with(fund_tx(), Finality::Durable)
        .expect("fund accounts");
}

/// The child: runs the ledger until killed. Does nothing in a normal test run.
#[test]
#[ignore = "child process of `acknowledged_commits_survive_sigkill`, which starts it"]
fn crash_child() {
    // Also makes a panic on any thread abort the child (the parent then fails the test).
    let Some(dir) = child_env(CHILD_DIR_ENV) else {
        return;
    };
    let cycle: u64 = std::env::var(CHILD_CYCLE_ENV)
        .expect("cycle number")
        .parse()
        .expect("numeric cycle");
    let db = Arc::new(AedbInstance::open(&dir, config()).expect("child opens the directory"));
    setup(&db);
    emit("READY");
    let deadline = Instant::now() + CHILD_DEADLINE;
    let workers: Vec<_> = (0..CHILD_THREADS)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut rng = XorShift::seeded(cycle * 64 + t);
                let mut n = 0;
                while Instant::now() < deadline {
                    let id = transfer_id(cycle, t, n);
                    n += 1;
                    let src = rng.below(ACCOUNTS);
                    let dst = (src + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
                    let amount = 1 + rng.below(INITIAL_BALANCE / 3);
                    match db.commit_with(transfer_tx(&id, src, dst, amount), Finality::Durable) {
                        Ok(outcome) => {
                            assert!(!outcome.idempotent_replay, "{id} is a fresh key");
                            emit(&format!("ACK {} {id}", outcome.lsn.get()));
                        }
                        Err(e) if e.failed_assertion() == Some(0) => {
                            emit(&format!("REJ {id} {src} {dst} {amount}"));
                        }
                        Err(e) => panic!("transfer {id} failed unexpectedly: {e}"),
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker thread");
    }
    emit("DONE");
}

/// What the parent learnt from the child's stdout.
#[derive(Default)]
struct ChildReport {
    ready: bool,
    acked: Vec<(String, u64)>,
    /// Rejected transfers: id, source, destination, amount (a retry must send the same
    /// request to get the original rejection back).
    rejected: Vec<(String, u64, u64, u64)>,
}

/// Parses one line of the child's stdout. Lines of the protocol (`READY`, `ACK <lsn>
/// <id>`, `REJ <id> <src> <dst> <amount>`) must parse exactly: a malformed acknowledgement fails the test
/// rather than being dropped. Other lines (libtest's own) are ignored.
fn parse_line(line: &str, report: &mut ChildReport, hint: &str) {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("READY") => report.ready = true,
        Some("ACK") => {
            let lsn = words.next().and_then(|w| w.parse().ok());
            let (Some(lsn), Some(id), None) = (lsn, words.next(), words.next()) else {
                panic!("malformed ACK line from the child: {line:?} ({hint})");
            };
            report.acked.push((id.to_owned(), lsn));
        }
        Some("REJ") => {
            let id = words.next();
            let mut num = || words.next().and_then(|w| w.parse::<u64>().ok());
            let (Some(id), Some(src), Some(dst), Some(amount)) = (id, num(), num(), num()) else {
                panic!("malformed REJ line from the child: {line:?} ({hint})");
            };
            assert!(
                words.next().is_none(),
                "malformed REJ line from the child: {line:?} ({hint})"
            );
            report.rejected.push((id.to_owned(), src, dst, amount));
        }
        _ => {}
    }
}

/// Everything acknowledged so far, over all cycles.
#[derive(Default)]
struct Ledger {
    acked: BTreeMap<String, u64>,
    rejected: BTreeSet<String>,
}

struct Recovery {
    frames: u64,
    segments: usize,
    torn_tail_bytes: u64,
    stray_temp_files: usize,
    transfers: usize,
}

/// Reopens `dir` and checks every invariant; re-commits this cycle's acknowledged
/// transfers and expects idempotent replays.
fn verify(dir: &Path, cycles_run: u64, ledger: &Ledger, this_cycle: &ChildReport) -> Recovery {
    let db = AedbInstance::open(dir, config()).expect("reopen after SIGKILL");
    let report = db.recovery_report().clone();
    let snap = db.snapshot().expect("snapshot");
    let last = snap.lsn().get();

    // LSNs are dense: recovery replayed every LSN from the base to the last one.
    assert_eq!(
        report.last_lsn,
        snap.lsn(),
        "recovered state ends at the log's end"
    );
    assert_eq!(report.base_lsn.get(), 1, "nothing was ever retired");
    assert_eq!(
        report.frames_replayed,
        last - report.base_lsn.get() + 1,
        "frames are dense from the base LSN"
    );
    let metrics = db.operational_metrics();
    assert_eq!(metrics.durable_lsn, last);
    assert_eq!(metrics.visible_lsn, last);
    assert_eq!(metrics.recovery_frames, report.frames_replayed);

    let ns = ns();
    let table_exists = snap.has_namespace(&ns)
        && snap
            .tables(&ns)
            .expect("namespace exists")
            .contains(&transfers());
    let funded = snap.idempotency(FUND_KEY).expect("readable");
    if !table_exists || funded.is_none() {
        // The child never got through its setup.
        assert!(ledger.acked.is_empty() && ledger.rejected.is_empty());
        assert!(
            last <= SETUP_DDL,
            "only setup DDL can be in the log, found lsn {last}"
        );
        assert_eq!(snap.idempotency_len().expect("readable"), 0);
        db.shutdown().expect("shutdown");
        return Recovery {
            frames: report.frames_replayed,
            segments: report.segments.len(),
            torn_tail_bytes: report.torn_tail_bytes(),
            stray_temp_files: report.stray_temp_files.len(),
            transfers: 0,
        };
    }
    let funded = funded.expect("checked above");
    assert_eq!(funded.outcome, Outcome::Committed);

    // LSNs of every record that is not setup DDL.
    let mut lsns = BTreeSet::from([funded.lsn.get()]);

    // Rows: each is a committed transfer, consistent with its idempotency record.
    let page = snap
        .table_scan(
            &ns,
            &transfers(),
            &KeyRange::all(),
            Direction::Forward,
            usize::MAX,
        )
        .expect("scan transfers");
    assert!(!page.has_more);
    let mut balances = vec![i128::from(INITIAL_BALANCE); ACCOUNTS as usize];
    let mut rows = BTreeMap::new();
    for row in &page.items {
        let [
            Value::Text(id),
            Value::U64(src),
            Value::U64(dst),
            Value::U64(amount),
        ] = &row.values[..]
        else {
            panic!("malformed transfer row {row:?}");
        };
        assert!(*src < ACCOUNTS && *dst < ACCOUNTS && src != dst, "{row:?}");
        assert!(*amount >= 1 && *amount <= INITIAL_BALANCE / 3, "{row:?}");
        let record = snap
            .idempotency(id.as_bytes())
            .expect("readable")
            .unwrap_or_else(|| panic!("row {id} has no idempotency record"));
        assert_eq!(record.outcome, Outcome::Committed, "{id}");
        assert_eq!(
            record.lsn, row.lsn,
            "row {id} was written by its own commit"
        );
        balances[*src as usize] -= i128::from(*amount);
        balances[*dst as usize] += i128::from(*amount);
        rows.insert(id.clone(), (row.lsn.get(), *src, *dst, *amount));
    }

    // Balances: exactly what the rows say, so no commit applied partially; the total is
    // conserved.
    assert_eq!(snap.kv_len(&ns).expect("kv len"), ACCOUNTS as usize);
    let mut total = 0u128;
    for (i, expected) in balances.iter().enumerate() {
        let Numeric::U64(actual) = snap
            .kv_get_numeric(&ns, account(i as u64).as_bytes(), NumericType::U64)
            .expect("balance")
        else {
            panic!("balance is not a u64");
        };
        assert_eq!(i128::from(actual), *expected, "balance of account {i}");
        total += u128::from(actual);
    }
    assert_eq!(
        total,
        u128::from(ACCOUNTS * INITIAL_BALANCE),
        "money is conserved"
    );

    // Idempotency records: every child thread committed its ids in order, one at a time,
    // so each thread's ids form a gap-free prefix.
    let mut committed = 0usize;
    let mut rejected = 0usize;
    for cycle in 0..cycles_run {
        for thread in 0..CHILD_THREADS {
            let mut n = 0;
            loop {
                let id = transfer_id(cycle, thread, n);
                let Some(record) = snap.idempotency(id.as_bytes()).expect("readable") else {
                    break;
                };
                assert!(
                    lsns.insert(record.lsn.get()),
                    "lsn {} used twice",
                    record.lsn
                );
                match &record.outcome {
                    Outcome::Committed => {
                        assert!(rows.contains_key(&id), "committed {id} has no row");
                        committed += 1;
                    }
                    Outcome::Rejected(r) => {
                        assert_eq!(*r, Rejection::AssertionFailed { index: 0 }, "{id}");
                        assert!(!rows.contains_key(&id), "rejected {id} has a row");
                        rejected += 1;
                    }
                }
                n += 1;
            }
            for later in n + 1..n + 4 {
                let id = transfer_id(cycle, thread, later);
                assert!(
                    snap.idempotency(id.as_bytes()).expect("readable").is_none(),
                    "gap before {id}"
                );
            }
        }
    }
    assert_eq!(
        committed,
        rows.len(),
        "every row has exactly one committed key"
    );
    assert_eq!(
        committed + rejected + 1,
        snap.idempotency_len().expect("readable"),
        "no unexpected idempotency records"
    );
    // Every LSN is accounted for: setup DDL plus one per keyed record, all distinct.
    assert_eq!(lsns.len() as u64 + SETUP_DDL, last, "LSNs are dense");
    assert!(lsns.iter().all(|&l| (1..=last).contains(&l)));

    // Every acknowledgement, from every cycle, survived.
    for (id, lsn) in &ledger.acked {
        let Some((row_lsn, ..)) = rows.get(id) else {
            panic!("acknowledged transfer {id} (lsn {lsn}) was lost");
        };
        assert_eq!(row_lsn, lsn, "acknowledged transfer {id}");
    }
    for id in &ledger.rejected {
        let record = snap
            .idempotency(id.as_bytes())
            .expect("readable")
            .unwrap_or_else(|| panic!("acknowledged rejection {id} was lost"));
        assert_eq!(
            record.outcome,
            Outcome::Rejected(Rejection::AssertionFailed { index: 0 })
        );
    }

    // Retrying this cycle's acknowledged commits is answered from the idempotency table.
    for (id, lsn) in &this_cycle.acked {
        let (_, src, dst, amount) = rows[id];
        let outcome = db
            .commit_with(transfer_tx(id, src, dst, amount), Finality::Durable)
            .expect("idempotent retry");
        assert!(outcome.idempotent_replay, "{id}");
        assert_eq!(outcome.lsn.get(), *lsn, "{id}");
    }
    for (id, src, dst, amount) in &this_cycle.rejected {
        let err = db
            .commit_with(transfer_tx(id, *src, *dst, *amount), Finality::Durable)
            .expect_err("a rejected key stays rejected");
        assert_eq!(err.failed_assertion(), Some(0), "{id}: {err}");
        // Another request under the same key is refused, not answered.
        let other = db
            .commit_with(transfer_tx(id, *src, *dst, *amount + 1), Finality::Durable)
            .expect_err("another request under a used key");
        assert_eq!(other.code(), "commit.idempotency_mismatch", "{id}: {other}");
    }
    assert_eq!(
        db.snapshot().expect("snapshot").lsn().get(),
        last,
        "retries consumed no LSN"
    );
    db.shutdown().expect("shutdown");
    Recovery {
        frames: report.frames_replayed,
        segments: report.segments.len(),
        torn_tail_bytes: report.torn_tail_bytes(),
        stray_temp_files: report.stray_temp_files.len(),
        transfers: rows.len(),
    }
}

#[test]
fn acknowledged_commits_survive_sigkill() {
    let cycles = cycles(CYCLES_ENV, DEFAULT_CYCLES);
    assert!(cycles > 0);
    let seed = announce_seed("crash test");
    let hint = seed.hint.as_str();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = XorShift::seeded(0);
    let mut ledger = Ledger::default();
    let mut killed_while_committing = 0u64;
    let mut torn_tails = 0u64;
    let mut stray_temp_files = 0usize;
    let mut last = None;

    for cycle in 0..cycles {
        let mut child = KillableChild::spawn(
            CHILD_TEST,
            &[
                (CHILD_DIR_ENV, dir.path().display().to_string()),
                (CHILD_CYCLE_ENV, cycle.to_string()),
            ],
        );
        let mut report = ChildReport::default();
        // One cycle in eight is killed at a random moment after spawn (possibly during
        // its own recovery); the others a random moment after the child is running.
        let early = rng.below(8) == 0;
        let delay = if early {
            Duration::from_millis(1 + rng.below(150))
        } else {
            while !report.ready {
                // An early exit is reported by `assert_killed` below, with the stderr.
                let Some(line) = child.recv_line(READY_TIMEOUT, "READY") else {
                    break;
                };
                parse_line(&line, &mut report, hint);
            }
            Duration::from_millis(3 + rng.below(300))
        };
        std::thread::sleep(delay);
        let ended = child.kill();
        for line in &ended.rest {
            parse_line(line, &mut report, hint);
        }
        // Anything but the parent's own SIGKILL (an abort from a panicking worker, an
        // exit of its own) fails the test, and so does a panic message on stderr.
        ended.assert_killed(&format!("cycle {cycle} ({hint})"));
        if !report.acked.is_empty() || !report.rejected.is_empty() {
            killed_while_committing += 1;
        }

        for (id, lsn) in &report.acked {
            let previous = ledger.acked.insert(id.clone(), *lsn);
            assert!(previous.is_none(), "{id} acknowledged twice ({hint})");
        }
        ledger
            .rejected
            .extend(report.rejected.iter().map(|(id, ..)| id.clone()));

        let recovered = verify(dir.path(), cycle + 1, &ledger, &report);
        if recovered.torn_tail_bytes > 0 {
            torn_tails += 1;
        }
        stray_temp_files += recovered.stray_temp_files;
        last = Some(recovered);
    }

    let last = last.expect("at least one cycle");
    println!(
        "crash test: {cycles} cycles, all killed mid-run ({killed_while_committing} while \
         committing), {} acknowledged commits and {} acknowledged rejections, {} \
         transfers recovered, last recovery replayed {} frames from {} segments, torn tails \
         cut in {torn_tails} recoveries, {stray_temp_files} interrupted segment creations \
         cleaned up",
        ledger.acked.len(),
        ledger.rejected.len(),
        last.transfers,
        last.frames,
        last.segments,
    );
    assert!(
        !ledger.acked.is_empty(),
        "the children acknowledged nothing ({hint})"
    );
    assert!(
        killed_while_committing > 0,
        "no child was killed while committing ({hint})"
    );
    assert!(last.transfers >= ledger.acked.len(), "{hint}");
}
