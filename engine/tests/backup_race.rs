//! Hot backups racing checkpoint and segment retirement.
//!
//! One thread commits numbered puts and checkpoints every few commits with small WAL
//! segments, so checkpoint files and segments are retired continuously (a checkpoint
//! retires the one two versions older, and the segments it covers); another takes full
//! and incremental hot backups in a loop meanwhile. Every full backup must succeed (it
//! re-lists when the checkpoint it picked is retired under it, and holds open handles
//! on the segments it copies) and restore to exactly the source's state at its LSN: the
//! keys `0..=lsn` of the committed history. So must every incremental: when retirement
//! removed the segment its parent ends in, it holds the runs flushed since (which carry
//! what the retired WAL held) and the WAL after them — it no longer fails with
//! `BackupError::WalRetired`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aedb::{
    AedbConfig, AedbInstance, Finality, KvKey, KvValue, Lsn, Namespace, RestoreOptions,
    Transaction, restore_from_backup_chain,
};

const KEY: [u8; 32] = [0x3b; 32];

fn config() -> AedbConfig {
    AedbConfig::production(KEY)
        .with_checkpoint_key([0x4c; 32])
        .segment_size(64 * 1024)
        .preallocate(false)
}

fn ns() -> Namespace {
    Namespace::parse("race", "main").expect("valid namespace")
}

/// Key `n` is put by the commit that makes it, with a value naming `n`.
fn put(n: u64) -> Transaction {
    Transaction::new().kv_put(
        &ns(),
        KvKey::new(format!("k{n:06}")).expect("key"),
        KvValue::new(format!("{n}:{}", "x".repeat(900))).expect("value"),
    )
}

/// Restores `chain` and checks the state is exactly the puts committed up to the
/// restored LSN (`history[lsn]` says which put, if any, each LSN carried).
fn assert_restores_history(chain: &[std::path::PathBuf], history: &[Option<u64>], into: &Path) {
    let report = restore_from_backup_chain(
        chain,
        into,
        RestoreOptions {
            config: config(),
            strict: true,
            target_lsn: None,
        },
        &mut |_, _| {},
    )
    .unwrap_or_else(|e| panic!("restore of {chain:?}: {e}"));
    let db = AedbInstance::open(into, config()).expect("open the restored directory");
    let snap = db.snapshot().expect("snapshot");
    assert_eq!(snap.lsn(), report.lsn);
    let upto = usize::try_from(report.lsn.get()).expect("lsn fits");
    assert!(upto < history.len(), "restored past the recorded history");
    for (lsn, n) in history.iter().enumerate().skip(1) {
        let Some(n) = n else { continue };
        let entry = snap
            .kv_get(&ns(), format!("k{n:06}").as_bytes())
            .expect("read");
        if lsn <= upto {
            let entry = entry.unwrap_or_else(|| panic!("put {n} at lsn {lsn} missing"));
            assert!(
                entry
                    .value
                    .as_bytes()
                    .starts_with(format!("{n}:").as_bytes())
            );
            assert_eq!(entry.lsn, Lsn::new(lsn as u64));
        } else {
            assert!(entry.is_none(), "put {n} at lsn {lsn} is past the backup");
        }
    }
    db.shutdown().expect("shutdown");
}

/// A copy of the history once it records every LSN up to `lsn` (the committer records
/// each commit right after it returns).
fn history_through(history: &Mutex<Vec<Option<u64>>>, lsn: u64) -> Vec<Option<u64>> {
    let want = usize::try_from(lsn).expect("lsn fits");
    for _ in 0..10_000 {
        let h = history.lock().expect("history");
        if h.len() > want {
            return h.clone();
        }
        drop(h);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("the committer did not record lsn {lsn} within 10 s of its publication");
}

#[test]
fn hot_backups_racing_retirement_restore_exactly_or_fail_typed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(AedbInstance::open(dir.path(), config()).expect("open"));
    db.create_project("race").expect("project");
    db.create_scope("race", "main").expect("scope");
    let base = db.snapshot().expect("snapshot").lsn().get();
    // history[lsn] = the put committed at that LSN (filled by the committer).
    let history: Arc<Mutex<Vec<Option<u64>>>> =
        Arc::new(Mutex::new(vec![None; usize::try_from(base).unwrap() + 1]));
    let stop = Arc::new(AtomicBool::new(false));

    let committer = {
        let (db, history, stop) = (db.clone(), history.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            let mut checkpoints = 0u32;
            while !stop.load(Ordering::Relaxed) && n < 4000 {
                let lsn = db
                    .commit_with(put(n), Finality::Durable)
                    .expect("commit")
                    .lsn;
                let mut h = history.lock().expect("history");
                let at = usize::try_from(lsn.get()).expect("lsn fits");
                if h.len() <= at {
                    h.resize(at + 1, None);
                }
                h[at] = Some(n);
                drop(h);
                n += 1;
                if n.is_multiple_of(25) {
                    db.checkpoint_now().expect("checkpoint");
                    checkpoints += 1;
                }
            }
            checkpoints
        })
    };

    let (mut fulls, mut incrementals, mut after_retirement) = (0u32, 0u32, 0u32);
    for round in 0..12 {
        let full = out.path().join(format!("full-{round}"));
        let report = db
            .backup_full(&full, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("full backup {round} racing retirement: {e}"));
        fulls += 1;
        let mut chain = vec![full.clone()];
        // Let commits and checkpoints run, then try an incremental on top.
        let target = report.manifest.last_lsn.get() + 60;
        for _ in 0..100_000 {
            if db.snapshot().expect("snapshot").lsn().get() >= target {
                break;
            }
            std::thread::yield_now();
        }
        let inc = out.path().join(format!("inc-{round}"));
        let report = db
            .backup_incremental(&inc, &full, &mut |_, _| {})
            .unwrap_or_else(|e| panic!("incremental {round} racing retirement: {e}"));
        incrementals += 1;
        if report
            .manifest
            .runs
            .as_ref()
            .is_some_and(|set| !set.wal_from_parent)
        {
            after_retirement += 1;
        }
        chain.push(inc);
        // A backup may hold a durable commit whose `commit` call has not returned to
        // the committer yet: wait (bounded) until the history covers every commit
        // published now, which includes everything the backups copied.
        let published = db.snapshot().expect("snapshot").lsn().get();
        let history = history_through(&history, published);
        assert_restores_history(
            &chain,
            &history,
            &out.path().join(format!("restored-{round}")),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let checkpoints = committer.join().expect("committer");
    assert!(
        checkpoints >= 2,
        "the committer checkpointed {checkpoints} times"
    );
    println!(
        "{fulls} full backups, {incrementals} incrementals ({after_retirement} after the \
         parent's WAL was retired)"
    );
    Arc::try_unwrap(db)
        .expect("sole owner")
        .shutdown()
        .expect("shutdown");
}
