//! Power-loss exploration on the simulated disk (`aedb_fs::SimFs`).
//!
//! Each crash point runs the real engine in-process on a fresh simulated disk: a ledger
//! workload of durable and visible transfers guarded by assertions, idempotency keys,
//! on-demand checkpoints (which retire checkpoint files and WAL segments), a key
//! rotation with epoch retirement, WAL segment rotation, manifest compaction, a hot full
//! and an incremental backup, and a shutdown. The disk's N-th mutating file operation fails and the machine dies; the
//! disk then loses what a power cut loses (unsynced writes dropped or torn at sector
//! granularity, unsynced directory entries kept or not, all chosen by the seed), and the
//! database is reopened **strictly** on that image. It must open — a power cut is inside
//! the model, so no integrity refusal is acceptable — and:
//! - every commit acknowledged `Durable` before the crash is present, with its LSN and
//!   its idempotency record;
//! - no commit is partially applied: money is conserved (the funding transaction is
//!   all-or-nothing, so the total is 0 or the full amount), and each transfer's
//!   idempotency record is present exactly when its ledger row is;
//! - `check invariants` (the offline checks, called as a library) passes on the image;
//! - every backup acknowledged before the crash restores strictly, on the crashed disk,
//!   to its LSN with every durable commit up to it;
//! - the reopened database takes a new commit and survives a second reopen.
//!
//! Seven explorations: the sequential ledger above (crash at every operation, then at
//! drawn ones), the same under `low_latency` (only its flush window may be lost), under the
//! development profile (it must always reopen), a secure instance with two concurrent
//! tellers, automatic checkpoints and audit rows (a tenth of the points), a sequential
//! ingest whose runs compaction moves down a level, a dropped table whose run
//! compaction removes unread, and a full compaction split over two threads (crash at
//! every operation in the last three).
//!
//! Knobs: `AEDB_SIM_CRASH_POINTS` (default 10,000 in an optimised build — the test
//! command runs `cargo test --release -p aedb --test power_loss`, about 40 s — and 500 in
//! a debug build, which is some 17 times slower) and `AEDB_SIM_SEED` (first seed;
//! default 1). Point `i` uses seed `AEDB_SIM_SEED + i` and crashes at an operation
//! drawn from it (the first points crash at every operation in turn). A failure prints
//! the seed and the crash point; rerun one point with
//! `AEDB_SIM_SEED=<seed> AEDB_SIM_CRASH_AT=<op> AEDB_SIM_CRASH_POINTS=1`.

use std::path::Path;
use std::sync::Arc;

use aedb::offline::{CheckStatus, check_invariants};
use aedb::{
    AedbConfig, AedbInstance, Assertion, Finality, IdempotencyKey, KvKey, Lsn, Namespace, Numeric,
    NumericType, Transaction,
};
use aedb_fs::SimFs;
use aedb_model::Outcome;

const ACCOUNTS: u64 = 4;
const FUNDS: u64 = 1_000;
const TRANSFERS: u64 = 36;
const DIR: &str = "/data/db";
/// Crash points per run unless `AEDB_SIM_CRASH_POINTS` says otherwise.
const DEFAULT_POINTS: u64 = if cfg!(debug_assertions) { 500 } else { 10_000 };

fn config(sim: &Arc<SimFs>) -> AedbConfig {
    AedbConfig::production([0x51; 32])
        .with_checkpoint_key([0x62; 32])
        .with_file_system(sim.shared())
        .segment_size(64 * 1024)
        .preallocate(false)
        .manifest_compact_after(16)
        .checkpoint_wal_bytes(u64::MAX / 2)
}

fn ns() -> Namespace {
    Namespace::parse("ledger", "main").expect("valid namespace")
}

fn account(i: u64) -> KvKey {
    KvKey::new(format!("acct-{i}")).expect("key")
}

fn idem(name: &str) -> IdempotencyKey {
    IdempotencyKey::new(name).expect("idempotency key")
}

/// Transfer `i`: a deterministic pair of accounts and amount, guarded by the balance,
/// with a ledger row (a KV put) and an idempotency key.
fn transfer(i: u64) -> Transaction {
    let (src, dst) = (i % ACCOUNTS, (i * 7 + 1) % ACCOUNTS);
    let dst = if dst == src {
        (dst + 1) % ACCOUNTS
    } else {
        dst
    };
    let amount = 1 + i % 13;
    Transaction::new()
        .assert(Assertion::KvNumericAtLeast {
            ns: ns(),
            key: account(src),
            min: Numeric::U64(amount),
        })
        .kv_sub(&ns(), account(src), Numeric::U64(amount))
        .kv_add(&ns(), account(dst), Numeric::U64(amount))
        .kv_put(
            &ns(),
            KvKey::new(format!("row-{i:04}")).expect("key"),
            aedb::KvValue::new(vec![i as u8; 64]).expect("value"),
        )
        // Grows the WAL (segments rotate) without growing the state every checkpoint
        // rewrites.
        .kv_put(
            &ns(),
            KvKey::new("pad").expect("key"),
            aedb::KvValue::new(vec![i as u8; 3000]).expect("value"),
        )
        .idempotency_key(idem(&format!("t{i}")))
}

/// What the workload saw acknowledged as durable before the machine died.
#[derive(Debug, Default)]
struct Acked {
    /// (idempotency key, LSN) of every commit acknowledged `Durable`.
    durable: Vec<(String, Lsn)>,
    /// The namespace's DDL was acknowledged.
    schema: bool,
    /// Hot backups that returned `Ok` (their files were fsynced): the chain, in order,
    /// with the last LSN each covers.
    backups: Vec<(std::path::PathBuf, Lsn)>,
    /// The error that stopped the workload (the dead disk), if any.
    stopped_by: Option<String>,
}

/// Runs the workload until it ends or the first error (the dead disk). Errors are
/// expected here: the point is what was acknowledged before them.
fn workload(sim: &Arc<SimFs>, acked: &mut Acked) -> Option<aedb::OperationalMetrics> {
    let Ok(db) = AedbInstance::open(DIR, config(sim)) else {
        return None;
    };
    let mut run = || -> Result<(), Box<dyn std::error::Error>> {
        if !db
            .snapshot()?
            .has_project(&aedb::ProjectName::new("ledger")?)
        {
            db.create_project("ledger")?;
            db.create_scope("ledger", "main")?;
        }
        acked.schema = true;
        let mut fund = Transaction::new().idempotency_key(idem("fund"));
        for a in 0..ACCOUNTS {
            fund = fund.kv_add(&ns(), account(a), Numeric::U64(FUNDS));
        }
        let lsn = db.commit_with(fund, Finality::Durable)?.lsn;
        acked.durable.push(("fund".into(), lsn));
        for i in 0..TRANSFERS {
            if i % 6 == 5 {
                // A visible commit: acknowledged before its fsync, durable after flush.
                db.commit_with(transfer(i), Finality::Visible)?;
                db.flush()?;
            } else {
                let lsn = db.commit_with(transfer(i), Finality::Durable)?.lsn;
                acked.durable.push((format!("t{i}"), lsn));
            }
            if i % 4 == 3 {
                db.checkpoint_now()?;
            }
            if i == 9 {
                db.rotate_keys()?;
            }
            if i == 11 {
                // Re-seal the epoch-1 runs (compaction writes, a version edit, deletes).
                db.reseal_now()?;
            }
            if i == 16 {
                // Merge the level-0 runs (outputs, one edit, inputs deleted).
                db.compact_now()?;
            }
            if i == 12 {
                let full = std::path::PathBuf::from("/data/backup-full");
                let report = db.backup_full(&full, &mut |_, _| {})?;
                acked.backups.push((full, report.manifest.last_lsn));
            }
            if i == 14 && !acked.backups.is_empty() {
                let inc = std::path::PathBuf::from("/data/backup-inc");
                let report = db.backup_incremental(&inc, "/data/backup-full", &mut |_, _| {})?;
                acked.backups.push((inc, report.manifest.last_lsn));
            }
        }
        Ok(())
    };
    let result = run();
    let metrics = db.operational_metrics();
    let _ = db.shutdown();
    match result {
        Ok(()) => Some(metrics),
        Err(e) => {
            acked.stopped_by = Some(e.to_string());
            None
        }
    }
}

fn balance(snap: &aedb::ReadSnapshot, a: u64) -> u64 {
    match snap.kv_get_numeric(&ns(), account(a).as_bytes(), NumericType::U64) {
        Ok(Numeric::U64(v)) => v,
        Ok(other) => panic!("balance of {a} is {other:?}"),
        Err(e) => panic!("balance of {a}: {e}"),
    }
}

/// Recovers the crashed image and checks every promise; `Err` describes the breach.
fn verify(sim: &Arc<SimFs>, acked: &Acked) -> Result<(), String> {
    let db =
        AedbInstance::open(DIR, config(sim)).map_err(|e| format!("strict open refused: {e}"))?;
    let snap = db.snapshot().map_err(|e| e.to_string())?;
    for (key, lsn) in &acked.durable {
        let record = snap
            .idempotency(key.as_bytes())
            .expect("readable")
            .ok_or_else(|| format!("acknowledged durable commit {key} (lsn {lsn}) is lost"))?;
        if record.outcome != Outcome::Committed || record.lsn != *lsn {
            return Err(format!(
                "commit {key}: recorded {record:?}, acknowledged at lsn {lsn}"
            ));
        }
    }
    if acked.schema && !snap.has_project(&aedb::ProjectName::new("ledger").expect("valid")) {
        return Err("the acknowledged namespace is lost".into());
    }
    if snap.has_project(&aedb::ProjectName::new("ledger").expect("valid"))
        && snap.idempotency(b"fund").expect("readable").is_some()
    {
        let total: u64 = (0..ACCOUNTS).map(|a| balance(&snap, a)).sum();
        if total != ACCOUNTS * FUNDS {
            return Err(format!("money not conserved: total {total}"));
        }
        for i in 0..TRANSFERS {
            let row = snap
                .kv_get(&ns(), format!("row-{i:04}").as_bytes())
                .map_err(|e| e.to_string())?;
            let record = snap
                .idempotency(format!("t{i}").as_bytes())
                .expect("readable");
            if row.is_some() != record.is_some() {
                return Err(format!("transfer {i} is partially applied"));
            }
        }
    }
    let lsn = snap.lsn();
    drop(snap);
    let next = db
        .create_project("after")
        .map_err(|e| format!("commit after recovery: {e}"))?
        .lsn;
    if next != lsn.next() {
        return Err(format!("LSNs not dense after recovery: {lsn} then {next}"));
    }
    db.shutdown()
        .map_err(|e| format!("shutdown after recovery: {e}"))?;
    let checks = check_invariants(Path::new(DIR), &config(sim))
        .map_err(|e| format!("check invariants: {e}"))?;
    if let Some(bad) = checks.iter().find(|c| c.status == CheckStatus::Fail) {
        return Err(format!("check invariants: {}: {}", bad.name, bad.detail));
    }
    if let Some(&(_, backup_lsn)) = acked.backups.last() {
        verify_restore(sim, acked, backup_lsn)?;
    }
    let db = AedbInstance::open(DIR, config(sim)).map_err(|e| format!("second reopen: {e}"))?;
    if db.snapshot().map_err(|e| e.to_string())?.lsn() != next {
        return Err("the commit after recovery is lost on a clean reopen".into());
    }
    db.shutdown().map_err(|e| format!("final shutdown: {e}"))?;
    Ok(())
}

/// An acknowledged backup chain survives the power cut: it restores strictly into a
/// fresh directory on the crashed disk, at its last LSN, with every durable commit up
/// to it.
fn verify_restore(sim: &Arc<SimFs>, acked: &Acked, backup_lsn: Lsn) -> Result<(), String> {
    let chain: Vec<std::path::PathBuf> = acked.backups.iter().map(|(d, _)| d.clone()).collect();
    let target = "/data/restored";
    let report = aedb::restore_from_backup_chain(
        &chain,
        target,
        aedb::RestoreOptions {
            config: config(sim),
            strict: true,
            target_lsn: None,
        },
        &mut |_, _| {},
    )
    .map_err(|e| format!("restore of the acknowledged backups {chain:?}: {e}"))?;
    if report.lsn != backup_lsn {
        return Err(format!(
            "restored to {} instead of {backup_lsn}",
            report.lsn
        ));
    }
    let db = AedbInstance::open(target, config(sim))
        .map_err(|e| format!("open the restored directory: {e}"))?;
    let snap = db.snapshot().map_err(|e| e.to_string())?;
    for (key, lsn) in acked.durable.iter().filter(|(_, l)| *l <= backup_lsn) {
        if snap
            .idempotency(key.as_bytes())
            .expect("readable")
            .map(|r| r.lsn)
            != Some(*lsn)
        {
            return Err(format!(
                "the restore lacks durable commit {key} (lsn {lsn})"
            ));
        }
    }
    drop(snap);
    db.shutdown()
        .map_err(|e| format!("shutdown of the restored directory: {e}"))
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

/// How many mutating file operations the whole workload takes on a disk that never
/// fails (crash points are drawn below it).
fn full_run_ops() -> u64 {
    let sim = SimFs::new(0);
    let mut acked = Acked::default();
    let m = workload(&sim, &mut acked).unwrap_or_else(|| {
        panic!(
            "the workload completes on a healthy disk: {:?}",
            acked.stopped_by
        )
    });
    // The workload reaches every mechanism the crash points are meant to cut through.
    assert!(m.checkpoints >= 4, "checkpoints: {}", m.checkpoints);
    assert!(m.compactions >= 2, "compactions: {}", m.compactions);
    assert!(
        m.key_epochs_retired >= 1,
        "key epochs retired: {}",
        m.key_epochs_retired
    );
    assert!(
        m.manifest_compactions >= 1,
        "manifest compactions: {}",
        m.manifest_compactions
    );
    let newest_segment = sim
        .image()
        .files
        .keys()
        .filter_map(|p| {
            p.file_name()?
                .to_str()?
                .strip_suffix(".wal")?
                .parse::<u64>()
                .ok()
        })
        .max();
    assert!(
        newest_segment >= Some(1),
        "WAL segments rotated: {newest_segment:?}"
    );
    assert_eq!(acked.backups.len(), 2, "a full and an incremental backup");
    assert_eq!(
        acked.durable.len() as u64,
        1 + TRANSFERS - TRANSFERS / 6,
        "the workload runs to completion on a healthy disk"
    );
    verify(&sim, &acked).expect("a clean shutdown verifies");
    sim.op_count()
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[test]
fn acknowledged_commits_survive_power_loss_at_every_file_operation() {
    let points = env_u64("AEDB_SIM_CRASH_POINTS", DEFAULT_POINTS);
    let first = env_u64("AEDB_SIM_SEED", 1);
    let ops = full_run_ops();
    println!(
        "the workload takes {ops} file operations; exploring {points} crash points from seed {first}"
    );
    let failures = std::sync::Mutex::new(Vec::new());
    let explore = |seed: u64| {
        // Crash at every operation in turn (the first `ops` seeds cover each once),
        // then at operations drawn from the seed.
        let at = match std::env::var("AEDB_SIM_CRASH_AT") {
            Ok(at) => at.parse().expect("AEDB_SIM_CRASH_AT is a number"),
            Err(_) if seed - first < ops => 1 + (seed - first),
            Err(_) => 1 + splitmix(seed) % ops,
        };
        let sim = SimFs::new(seed);
        sim.arm_crash_after(at);
        let mut acked = Acked::default();
        workload(&sim, &mut acked);
        sim.crash();
        if let Err(why) = verify(&sim, &acked) {
            failures.lock().expect("failures").push(format!(
                "seed {seed}, crash at file operation {at} of {ops}: {why} \
                 (replay: AEDB_SIM_SEED={seed} AEDB_SIM_CRASH_AT={at} AEDB_SIM_CRASH_POINTS=1)"
            ));
        }
    };
    // Two workers (the machine has two cores); each takes every other seed.
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let explore = &explore;
            let failures = &failures;
            scope.spawn(move || {
                for seed in (first + worker..first + points).step_by(2) {
                    if failures.lock().expect("failures").len() >= 10 {
                        break;
                    }
                    explore(seed);
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    assert!(
        failures.is_empty(),
        "{} crash point(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `low_latency` acknowledges a commit before its fsync and promises it reaches the
/// disk within the flush interval. Commits whose flush the writer reported (its durable
/// head passed them, by the interval timer alone — nothing else syncs) survive a power
/// cut; what is lost is at most the commits after that head, and what survives of them
/// is a dense prefix.
#[test]
fn low_latency_loses_at_most_its_flush_window() {
    for seed in 0..40u64 {
        let sim = SimFs::new(seed);
        let config = || {
            AedbConfig::low_latency([0x51; 32])
                .with_file_system(sim.shared())
                .preallocate(false)
        };
        let db = AedbInstance::open(DIR, config()).expect("open");
        db.create_project("ledger").expect("project");
        db.create_scope("ledger", "main").expect("scope");
        let put = |n: u64| {
            db.commit(Transaction::new().kv_put(
                &ns(),
                KvKey::new(format!("v{n:03}")).expect("key"),
                aedb::KvValue::new(vec![n as u8; 500]).expect("value"),
            ))
            .expect("visible commit")
            .lsn
        };
        let flushed: Vec<Lsn> = (0..20).map(put).collect();
        let last = *flushed.last().expect("commits");
        // The interval timer makes them durable; wait for the writer to say so (bounded).
        let mut durable = false;
        for _ in 0..5_000 {
            if db.operational_metrics().durable_lsn >= last.get() {
                durable = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(
            durable,
            "seed {seed}: the flush timer never synced lsn {last}"
        );
        for n in 20..30 {
            put(n);
        }
        sim.power_off();
        drop(db);
        sim.crash();

        let db = AedbInstance::open(DIR, config())
            .unwrap_or_else(|e| panic!("seed {seed}: strict open after the power cut: {e}"));
        let snap = db.snapshot().expect("snapshot");
        for n in 0..20u64 {
            assert!(
                snap.kv_get(&ns(), format!("v{n:03}").as_bytes())
                    .expect("read")
                    .is_some(),
                "seed {seed}: commit {n} was flushed before the cut and is lost"
            );
        }
        let kept = (20..30u64)
            .take_while(|n| {
                snap.kv_get(&ns(), format!("v{n:03}").as_bytes())
                    .expect("read")
                    .is_some()
            })
            .count();
        for n in 20 + kept as u64..30 {
            assert!(
                snap.kv_get(&ns(), format!("v{n:03}").as_bytes())
                    .expect("read")
                    .is_none(),
                "seed {seed}: the surviving window is not a prefix"
            );
        }
        assert_eq!(
            snap.lsn(),
            Lsn::new(last.get() + kept as u64),
            "seed {seed}"
        );
        drop(snap);
        db.shutdown().expect("shutdown");
    }
}

/// The development profile never fsyncs: a power cut may take any unsynced byte, the
/// header of a new segment included. It must still open (lenient recovery cuts what was
/// lost) with a consistent prefix: money conserved, no transfer half applied.
#[test]
fn development_profile_opens_after_any_power_cut() {
    let points = env_u64("AEDB_SIM_CRASH_POINTS", DEFAULT_POINTS) / 20;
    let first = env_u64("AEDB_SIM_SEED", 1);
    let dev = |sim: &Arc<SimFs>| {
        AedbConfig::development()
            .with_file_system(sim.shared())
            .segment_size(64 * 1024)
            .preallocate(false)
            .checkpoint_wal_bytes(u64::MAX / 2)
    };
    for seed in first..first + points {
        let sim = SimFs::new(seed);
        sim.arm_crash_after(1 + splitmix(seed) % 120);
        if let Ok(db) = AedbInstance::open(DIR, dev(&sim)) {
            let _ = (|| -> Result<(), Box<dyn std::error::Error>> {
                db.create_project("ledger")?;
                db.create_scope("ledger", "main")?;
                let mut fund = Transaction::new().idempotency_key(idem("fund"));
                for a in 0..ACCOUNTS {
                    fund = fund.kv_add(&ns(), account(a), Numeric::U64(FUNDS));
                }
                db.commit(fund)?;
                for i in 0..TRANSFERS {
                    db.commit(transfer(i))?;
                    if i % 8 == 7 {
                        db.checkpoint_now()?;
                    }
                }
                Ok(())
            })();
            let _ = db.shutdown();
        }
        sim.crash();
        let db = AedbInstance::open(DIR, dev(&sim)).unwrap_or_else(|e| {
            panic!(
                "seed {seed}: the development profile refused to open after a power cut: {e} \
                 (replay: AEDB_SIM_SEED={seed} AEDB_SIM_CRASH_POINTS=20)"
            )
        });
        let snap = db.snapshot().expect("snapshot");
        if snap.has_project(&aedb::ProjectName::new("ledger").expect("valid"))
            && snap.idempotency(b"fund").expect("readable").is_some()
        {
            let total: u64 = (0..ACCOUNTS).map(|a| balance(&snap, a)).sum();
            assert_eq!(total, ACCOUNTS * FUNDS, "seed {seed}: money not conserved");
            for i in 0..TRANSFERS {
                let row = snap
                    .kv_get(&ns(), format!("row-{i:04}").as_bytes())
                    .expect("read");
                let record = snap
                    .idempotency(format!("t{i}").as_bytes())
                    .expect("readable");
                assert_eq!(row.is_some(), record.is_some(), "seed {seed}: transfer {i}");
            }
        }
        drop(snap);
        db.shutdown().expect("shutdown");
    }
}

/// The secure, concurrent variant: a secure instance (grants, denials and failed
/// assertions write HMAC-chained audit rows through the same commit path), two tellers
/// committing durable and visible transfers at once, and automatic checkpoints by WAL
/// volume. Thread interleaving makes the file-operation order vary from run to run, so a
/// seed replays the power cut's choices but not always the exact crash point. After each
/// power cut the database must open strictly, hold every acknowledged durable transfer
/// (its ledger row at its LSN), conserve money, verify both audit chains and pass
/// `check invariants`.
#[test]
fn secure_concurrent_workload_survives_power_loss() {
    use aedb::{CallerId, Permission, SecureConfig};
    let points = env_u64("AEDB_SIM_CRASH_POINTS", DEFAULT_POINTS) / 10;
    let first = env_u64("AEDB_SIM_SEED", 1);
    let root = CallerId::new("root").expect("caller");
    let tellers = [
        CallerId::new("teller-0").expect("caller"),
        CallerId::new("teller-1").expect("caller"),
    ];
    let secure_config = |sim: &Arc<SimFs>| {
        config(sim)
            .checkpoint_wal_bytes(24 * 1024)
            .manifest_compact_after(16)
    };
    let open = |sim: &Arc<SimFs>| {
        AedbInstance::open_secure(DIR, secure_config(sim), SecureConfig::new(root.clone()))
    };
    // Acknowledged durable transfers: (ledger row, LSN).
    let run = |sim: &Arc<SimFs>| -> Vec<(String, Lsn)> {
        let acked = std::sync::Mutex::new(Vec::new());
        let Ok(db) = open(sim) else {
            return Vec::new();
        };
        let setup = || -> Result<(), aedb::Error> {
            db.create_project_as(&root, "ledger")?;
            db.create_scope_as(&root, "ledger", "main")?;
            for teller in &tellers {
                let write = Permission::KvWrite {
                    ns: ns(),
                    prefix: Vec::new(),
                };
                db.grant_as(&root, teller, write, false)?;
                let read = Permission::KvRead {
                    ns: ns(),
                    prefix: Vec::new(),
                };
                db.grant_as(&root, teller, read, false)?;
            }
            let mut fund = Transaction::new().idempotency_key(idem("fund"));
            for a in 0..ACCOUNTS {
                fund = fund.kv_add(&ns(), account(a), Numeric::U64(FUNDS));
            }
            db.commit_with_as(&root, fund, Finality::Durable)?;
            Ok(())
        };
        if setup().is_ok() {
            std::thread::scope(|scope| {
                for (t, teller) in tellers.iter().enumerate() {
                    let (db, acked) = (&db, &acked);
                    scope.spawn(move || {
                        for i in 0..12u64 {
                            let n = t as u64 * 100 + i;
                            let finality = if i % 4 == 3 {
                                Finality::Visible
                            } else {
                                Finality::Durable
                            };
                            match db.commit_with_as(teller, transfer(n), finality) {
                                Ok(o) if finality == Finality::Durable => acked
                                    .lock()
                                    .expect("acked")
                                    .push((format!("row-{n:04}"), o.lsn)),
                                Ok(_) => {}
                                Err(aedb::Error::Commit(aedb::CommitError::Rejected(_))) => {}
                                Err(_) => return,
                            }
                            // A denial (audited): tellers may not create projects.
                            if i == 5 {
                                let _ = db.create_project_as(teller, "forbidden");
                            }
                        }
                    });
                }
            });
        }
        let _ = db.shutdown();
        acked.into_inner().expect("acked")
    };

    let healthy = SimFs::new(0);
    let acked = run(&healthy);
    assert_eq!(acked.len(), 18, "the workload completes on a healthy disk");
    let ops = healthy.op_count();
    for seed in first..first + points {
        let sim = SimFs::new(seed);
        let at = 1 + splitmix(seed) % ops;
        sim.arm_crash_after(at);
        let acked = run(&sim);
        sim.crash();
        let why = (|| -> Result<(), String> {
            let db = open(&sim).map_err(|e| format!("strict open refused: {e}"))?;
            let snap = db.snapshot_as(&root);
            for (row, lsn) in &acked {
                let entry = snap
                    .kv_get(&ns(), row.as_bytes())
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| format!("acknowledged transfer {row} (lsn {lsn}) is lost"))?;
                if entry.lsn != *lsn {
                    return Err(format!(
                        "transfer {row} at lsn {}, acknowledged at {lsn}",
                        entry.lsn
                    ));
                }
            }
            // The namespace exists once its DDL survived (an error here means it did not,
            // which only a crash before any acknowledged transfer allows: checked above).
            if matches!(snap.kv_get(&ns(), account(0).as_bytes()), Ok(Some(_))) {
                let total: u64 = (0..ACCOUNTS)
                    .map(|a| {
                        match snap.kv_get_numeric(&ns(), account(a).as_bytes(), NumericType::U64) {
                            Ok(Numeric::U64(v)) => v,
                            _ => 0,
                        }
                    })
                    .sum();
                if total != ACCOUNTS * FUNDS {
                    return Err(format!("money not conserved: total {total}"));
                }
            }
            db.verify_audit_as(&root)
                .map_err(|e| format!("audit chains: {e}"))?;
            db.shutdown().map_err(|e| format!("shutdown: {e}"))?;
            let checks = check_invariants(Path::new(DIR), &secure_config(&sim))
                .map_err(|e| format!("check invariants: {e}"))?;
            if let Some(bad) = checks.iter().find(|c| c.status == CheckStatus::Fail) {
                return Err(format!("check invariants: {}: {}", bad.name, bad.detail));
            }
            Ok(())
        })();
        if let Err(why) = why {
            panic!(
                "seed {seed}, crash at file operation {at} of about {ops}: {why} \
                 (replay: AEDB_SIM_SEED={seed} AEDB_SIM_CRASH_POINTS=10)"
            );
        }
    }
}

/// Runs `scenario` on a healthy disk (it must complete, and the image verify), then
/// once per file operation it took on a disk that dies at that operation (seed
/// `seed + operation`); every crashed image must pass `verify` against what the run
/// acknowledged. Answers the healthy run's metrics.
fn crash_at_every_operation<A: Default>(
    seed: u64,
    scenario: impl Fn(&Arc<SimFs>, &mut A) -> Option<aedb::OperationalMetrics>,
    verify: impl Fn(&Arc<SimFs>, &A) -> Result<(), String>,
) -> aedb::OperationalMetrics {
    let healthy = SimFs::new(0);
    let mut acked = A::default();
    let metrics = scenario(&healthy, &mut acked).expect("the scenario completes on a healthy disk");
    verify(&healthy, &acked).expect("a clean shutdown verifies");
    let ops = healthy.op_count();
    println!("the scenario takes {ops} file operations; crashing at each");
    let mut failures = Vec::new();
    for at in 1..=ops {
        let sim = SimFs::new(seed + at);
        sim.arm_crash_after(at);
        let mut acked = A::default();
        scenario(&sim, &mut acked);
        sim.crash();
        if let Err(why) = verify(&sim, &acked) {
            failures.push(format!("crash at file operation {at} of {ops}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    metrics
}

/// The end of a recovered image's verification: `db` (reopened on `sim`) takes a
/// commit and shuts down, `check invariants` passes, and it reopens once more.
fn commit_check_and_reopen(sim: &Arc<SimFs>, db: AedbInstance) -> Result<(), String> {
    db.create_project("after")
        .map_err(|e| format!("commit after recovery: {e}"))?;
    db.shutdown().map_err(|e| format!("shutdown: {e}"))?;
    let checks = check_invariants(Path::new(DIR), &config(sim))
        .map_err(|e| format!("check invariants: {e}"))?;
    if let Some(bad) = checks.iter().find(|c| c.status == CheckStatus::Fail) {
        return Err(format!("check invariants: {}: {}", bad.name, bad.detail));
    }
    AedbInstance::open(DIR, config(sim))
        .map_err(|e| format!("second reopen: {e}"))?
        .shutdown()
        .map_err(|e| format!("final shutdown: {e}"))
}

/// Shuts `db` down (on a dead disk that may fail; the image is what counts) and answers
/// its metrics when the scenario's steps completed.
fn metrics_if_completed(
    db: AedbInstance,
    steps: Result<(), Box<dyn std::error::Error>>,
) -> Option<aedb::OperationalMetrics> {
    let metrics = db.operational_metrics();
    let _ = db.shutdown();
    steps.ok().map(|()| metrics)
}

/// `len` pseudo-random bytes drawn from `seed` (xorshift): a value LZ4 cannot shrink,
/// so a run's size is what its values add up to.
fn incompressible(seed: u64, len: usize) -> aedb::KvValue {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    aedb::KvValue::new(bytes).expect("value")
}

/// A sequential ingest whose level-0 runs compaction **moves** down a level (one
/// manifest edit re-files them; no run file is written or deleted), cut at every file
/// operation in turn: the image opens strictly, every acknowledged batch reads back
/// whole, `check invariants` passes, and the database takes a commit and reopens.
#[test]
fn a_sequential_ingest_moved_down_survives_power_loss_at_every_file_operation() {
    const BATCHES: u64 = 4;
    const PER_BATCH: u64 = 64;
    let key = |k: u64| KvKey::new(format!("seq-{k:04}")).expect("key");
    // Incompressible 5 KiB values: each batch's run (~320 KiB) is over the move
    // threshold (`CompactionOptions::min_move_bytes`).
    let value = |k: u64| incompressible(k, 5 * 1024);
    // Batches acknowledged durable, then whether the move was seen installed.
    let ingest = |sim: &Arc<SimFs>, acked: &mut Vec<u64>| -> Option<aedb::OperationalMetrics> {
        let db = AedbInstance::open(DIR, config(sim)).ok()?;
        let mut run = || -> Result<(), Box<dyn std::error::Error>> {
            db.create_project("ledger")?;
            db.create_scope("ledger", "main")?;
            // No idempotency keys: each run holds only its batch's keys (the first also
            // the catalog), so the runs are disjoint and level 1 is empty.
            for b in 0..BATCHES {
                let tx = (b * PER_BATCH..(b + 1) * PER_BATCH).fold(Transaction::new(), |tx, k| {
                    tx.kv_put(&ns(), key(k), value(k))
                });
                db.commit_with(tx, Finality::Durable)?;
                acked.push(b);
                db.checkpoint_now()?;
            }
            // The background compactor moves them (within its tick); a dead disk
            // fails the move instead.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let m = db.operational_metrics();
                if m.compaction_moved_runs >= BATCHES {
                    return Ok(());
                }
                if m.checkpoint_failures > 0 || std::time::Instant::now() > deadline {
                    return Err("the move did not complete".into());
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        };
        let done = run();
        metrics_if_completed(db, done)
    };
    let verify = |sim: &Arc<SimFs>, acked: &Vec<u64>| -> Result<(), String> {
        let db = AedbInstance::open(DIR, config(sim)).map_err(|e| format!("strict open: {e}"))?;
        let snap = db.snapshot().map_err(|e| e.to_string())?;
        for &b in acked {
            for k in b * PER_BATCH..(b + 1) * PER_BATCH {
                let got = snap
                    .kv_get(&ns(), format!("seq-{k:04}").as_bytes())
                    .map_err(|e| format!("read seq-{k:04}: {e}"))?;
                if got.map(|e| e.value) != Some(value(k)) {
                    return Err(format!("acknowledged batch {b} lost key seq-{k:04}"));
                }
            }
        }
        drop(snap);
        commit_check_and_reopen(sim, db)
    };

    let m = crash_at_every_operation(1_000, ingest, verify);
    assert!(
        m.compaction_moved_runs >= BATCHES,
        "moved {}",
        m.compaction_moved_runs
    );
    assert_eq!(
        m.compaction_bytes_written, 0,
        "the runs were moved, not rewritten"
    );
}

/// A dropped table's run removed unread by compaction (one removal-only manifest edit,
/// then the file deleted) and the full compaction of the rest, cut at every file
/// operation in turn: the image opens strictly; the kept table holds every row once its
/// commit was acknowledged; the dropped table either holds every row (its drop was not
/// durable yet) or is gone, never partly there; `check invariants` passes, and the
/// database takes a commit and reopens.
#[test]
fn a_dropped_tables_run_removed_unread_survives_power_loss_at_every_file_operation() {
    use aedb::{ColumnDef, ColumnName, ColumnType, Ddl, TableName, TableSchema, Value};
    const KEPT: u64 = 10;
    const GONE: u64 = 60;
    let id = || ColumnName::new("id").expect("column");
    let (gone, kept) = (
        TableName::new("gone").expect("table"),
        TableName::new("kept").expect("table"),
    );
    let rows = |table: &TableName, n: u64| {
        (0..n).fold(Transaction::new(), |tx, i| {
            tx.table_insert(&ns(), table, vec![(id(), Value::U64(i))])
        })
    };
    // Steps acknowledged, in order: "kept", "gone", "drop"; the healthy run's metrics.
    let run = |sim: &Arc<SimFs>,
               acked: &mut Vec<&'static str>|
     -> Option<aedb::OperationalMetrics> {
        let db = AedbInstance::open(DIR, config(sim)).ok()?;
        let mut steps = || -> Result<(), Box<dyn std::error::Error>> {
            db.create_project("ledger")?;
            db.create_scope("ledger", "main")?;
            let schema = TableSchema::new(vec![ColumnDef::new(id(), ColumnType::U64)], vec![id()])?;
            for table in [&gone, &kept] {
                db.create_table(&ns(), table.as_str(), schema.clone())?;
            }
            db.commit_with(rows(&kept, KEPT), Finality::Durable)?;
            acked.push("kept");
            db.checkpoint_now()?;
            // `gone`'s rows alone in one run.
            db.commit_with(rows(&gone, GONE), Finality::Durable)?;
            acked.push("gone");
            db.checkpoint_now()?;
            db.ddl(Ddl::DropTable {
                ns: ns(),
                table: gone.clone(),
            })?;
            acked.push("drop");
            // The drop flushed; the floor (no history kept) past it.
            db.checkpoint_now()?;
            db.compact_now()?;
            Ok(())
        };
        let done = steps();
        metrics_if_completed(db, done)
    };
    let verify = |sim: &Arc<SimFs>, acked: &Vec<&str>| -> Result<(), String> {
        let db = AedbInstance::open(DIR, config(sim)).map_err(|e| format!("strict open: {e}"))?;
        let snap = db.snapshot().map_err(|e| e.to_string())?;
        if acked.contains(&"kept") {
            let n = snap
                .table_len(&ns(), &kept)
                .map_err(|e| format!("kept: {e}"))?;
            if n != KEPT as usize {
                return Err(format!("kept holds {n} rows"));
            }
        }
        // `gone` is all there (or, before its commit was acknowledged, empty), or gone
        // (a drop made durable even if unacknowledged); never partly there.
        match snap.table_len(&ns(), &gone) {
            Ok(_) if acked.contains(&"drop") => {
                return Err("the acknowledged drop is undone".into());
            }
            Ok(n) if n != GONE as usize && (acked.contains(&"gone") || n != 0) => {
                return Err(format!("gone holds {n} of {GONE} rows"));
            }
            Err(e) if e.code() != "read.not_found" => return Err(format!("gone: {e}")),
            _ => {}
        }
        drop(snap);
        commit_check_and_reopen(sim, db)
    };

    let m = crash_at_every_operation(2_000, run, verify);
    assert_eq!(
        m.compaction_dropped_runs, 1,
        "the dropped table's run removed unread"
    );
}

/// A full compaction split over two threads (subcompactions: two key ranges merged at
/// once, each writing its own runs, all recorded by one manifest edit), cut at every
/// file operation in turn. The two threads interleave their file operations, so a
/// seed replays the power cut's choices but not always the exact crash point. The
/// image opens strictly, every acknowledged batch reads back whole, `check invariants`
/// passes, and the database takes a commit and reopens.
#[test]
fn a_full_compaction_split_over_threads_survives_power_loss_at_every_file_operation() {
    // Three runs of incompressible 2 KiB values: keys 0..96 (~192 KiB), 96..192 (~192
    // KiB), then the even keys below 96 again (~96 KiB). Each run's index is one
    // partition, so the split can only cut at a run's last key: at 95, two ranges of
    // ~286 and ~194 KiB, each cut into several 64 KiB output runs.
    let batches: [Vec<u64>; 3] = [
        (0..96).collect(),
        (96..192).collect(),
        (0..96).step_by(2).collect(),
    ];
    let key = |k: u64| KvKey::new(format!("mix-{k:04}")).expect("key");
    let value = |k: u64, b: usize| incompressible(k * 4 + b as u64, 2 * 1024);
    let split_config =
        |sim: &Arc<SimFs>| config(sim).compaction_threads(2).run_file_bytes(64 * 1024);
    let scenario = |sim: &Arc<SimFs>, acked: &mut Vec<usize>| -> Option<aedb::OperationalMetrics> {
        let db = AedbInstance::open(DIR, split_config(sim)).ok()?;
        let mut run = || -> Result<(), Box<dyn std::error::Error>> {
            db.create_project("ledger")?;
            db.create_scope("ledger", "main")?;
            for (b, keys) in batches.iter().enumerate() {
                let tx = keys.iter().fold(Transaction::new(), |tx, &k| {
                    tx.kv_put(&ns(), key(k), value(k, b))
                });
                db.commit_with(tx, Finality::Durable)?;
                acked.push(b);
                db.checkpoint_now()?;
            }
            db.compact_now()?;
            Ok(())
        };
        let done = run();
        metrics_if_completed(db, done)
    };
    let verify = |sim: &Arc<SimFs>, acked: &Vec<usize>| -> Result<(), String> {
        // Each key of an acknowledged batch holds the value of its newest acknowledged
        // batch, or of a later batch (a commit may reach the disk unacknowledged).
        let mut newest = std::collections::BTreeMap::new();
        for &b in acked {
            for &k in &batches[b] {
                newest.insert(k, b);
            }
        }
        let db =
            AedbInstance::open(DIR, split_config(sim)).map_err(|e| format!("strict open: {e}"))?;
        let snap = db.snapshot().map_err(|e| e.to_string())?;
        for (k, acked_batch) in newest {
            let got = snap
                .kv_get(&ns(), format!("mix-{k:04}").as_bytes())
                .map_err(|e| format!("read mix-{k:04}: {e}"))?
                .map(|e| e.value);
            let found = (0..batches.len()).find(|&b| got.as_ref() == Some(&value(k, b)));
            if !found.is_some_and(|b| b >= acked_batch && batches[b].contains(&k)) {
                return Err(format!(
                    "mix-{k:04}: batch {acked_batch} was acknowledged, found {found:?}'s value"
                ));
            }
        }
        drop(snap);
        commit_check_and_reopen(sim, db)
    };

    let m = crash_at_every_operation(3_000, scenario, verify);
    assert_eq!(
        m.compaction_subcompactions, 2,
        "the full compaction ran as two ranges"
    );
    assert!(m.compaction_bytes_written > 0);
}
