//! Instance lifecycle: the directory lock (same process, other process, SIGKILLed
//! holder), configuration errors, idempotency across restarts, `Visible` finality and
//! `flush`, `try_commit` under a burst, `commit_async`, operational metrics, and recovery
//! from a torn tail and from a corrupt sealed segment.
//!
//! Child processes are this test binary re-executed with `--exact <child test>`; the
//! child tests return immediately unless their environment variable is set.

mod child_process;

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use child_process::{KillableChild, child_env, emit};

use aedb::{
    AedbConfig, AedbInstance, Assertion, CommitError, ConfigError, Direction, Finality,
    IdempotencyKey, KvKey, KvValue, LockError, Namespace, Numeric, NumericType, OpenError,
    Recovery, StartError, Transaction, WAL_DIR,
};

const KEY: [u8; 32] = [0x5C; 32];

const PROBE_DIR_ENV: &str = "AEDB_LOCK_PROBE_DIR";
const HOLDER_DIR_ENV: &str = "AEDB_LOCK_HOLDER_DIR";
const VISIBLE_DIR_ENV: &str = "AEDB_VISIBLE_CHILD_DIR";

/// Exit codes of `lock_probe_child`.
const PROBE_OPENED: i32 = 0;
const PROBE_HELD: i32 = 10;
const PROBE_OTHER_ERROR: i32 = 11;

fn production() -> AedbConfig {
    AedbConfig::production(KEY).checkpoint_on_shutdown(false)
}

fn ns() -> Namespace {
    Namespace::parse("app", "main").expect("valid namespace")
}

fn key(k: &str) -> KvKey {
    KvKey::new(k).expect("valid key")
}

fn value(v: &str) -> KvValue {
    KvValue::new(v).expect("valid value")
}

fn idem(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).expect("valid idempotency key")
}

fn open_with_namespace(dir: &Path, config: AedbConfig) -> AedbInstance {
    let db = AedbInstance::open(dir, config).expect("open");
    db.create_project("app").expect("project");
    db.create_scope("app", "main").expect("scope");
    db
}

fn put(k: &str, v: &str) -> Transaction {
    Transaction::new().kv_put(&ns(), key(k), value(v))
}

/// Longest wait for a child's protocol line.
const LINE_TIMEOUT: Duration = Duration::from_secs(120);

fn spawn_child(test: &str, env: (&str, &Path)) -> KillableChild {
    KillableChild::spawn(test, &[(env.0, env.1.display().to_string())])
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("LOCK")
}

// ---------------------------------------------------------------- child processes

/// Tries to open the directory once; the exit code says what happened.
#[test]
#[ignore = "child process of `open_from_another_process_fails_while_the_lock_is_held`, which starts it"]
fn lock_probe_child() {
    let Some(dir) = child_env(PROBE_DIR_ENV) else {
        return;
    };
    let code = match AedbInstance::open(&dir, production()) {
        Ok(db) => {
            db.shutdown().expect("probe shutdown");
            PROBE_OPENED
        }
        Err(aedb::Error::Open(OpenError::Lock(LockError::Held { .. }))) => PROBE_HELD,
        Err(e) => {
            eprintln!("lock probe: {e}");
            PROBE_OTHER_ERROR
        }
    };
    std::process::exit(code);
}

/// Opens the directory, commits durably, reports, and waits to be killed.
#[test]
#[ignore = "child process of `lock_is_released_when_the_holder_is_sigkilled`, which starts it"]
fn lock_holder_child() {
    let Some(dir) = child_env(HOLDER_DIR_ENV) else {
        return;
    };
    let db = open_with_namespace(Path::new(&dir), production());
    let outcome = db
        .commit_with(put("holder", "was here"), Finality::Durable)
        .expect("durable commit");
    emit(&format!("READY {}", outcome.lsn.get()));
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(3);
}

/// Commits `Visible`, flushes, reports the flushed LSN, keeps committing until killed.
#[test]
#[ignore = "child process of `flushed_visible_commits_survive_sigkill`, which starts it"]
fn visible_flush_child() {
    let Some(dir) = child_env(VISIBLE_DIR_ENV) else {
        return;
    };
    let db = open_with_namespace(Path::new(&dir), AedbConfig::low_latency(KEY));
    for i in 0..200 {
        db.commit(put(&format!("flushed-{i:04}"), "v"))
            .expect("visible commit");
    }
    db.flush().expect("flush");
    let flushed = db.snapshot().expect("snapshot").lsn();
    emit(&format!("FLUSHED {}", flushed.get()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0u64;
    while Instant::now() < deadline {
        db.commit(put(&format!("unflushed-{i:08}"), "v"))
            .expect("visible commit");
        i += 1;
    }
    std::process::exit(3);
}

// ---------------------------------------------------------------- the lock

#[test]
fn second_open_in_the_same_process_fails_until_the_first_is_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = AedbInstance::open(dir.path(), production()).expect("first open");
    for config in [production(), AedbConfig::development()] {
        let err = AedbInstance::open(dir.path(), config).expect_err("second open");
        let aedb::Error::Open(OpenError::Lock(LockError::Held { path, holder_pid })) = &err else {
            panic!("expected LockError::Held, got {err:?}");
        };
        assert_eq!(*path, lock_path(dir.path()));
        assert_eq!(*holder_pid, Some(std::process::id()), "the holder's pid");
        let pid = format!("pid {}", std::process::id());
        assert!(err.to_string().contains(&pid), "{err} names {pid}");
        let message = err.to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("already open"), "{message}");
    }
    // The failed opens did not disturb the holder.
    db.create_project("app").expect("the holder still works");
    db.shutdown().expect("shutdown");

    let db = AedbInstance::open(dir.path(), production()).expect("reopen after shutdown");
    assert_eq!(db.snapshot().expect("snapshot").lsn().get(), 1);
    // Dropping without `shutdown` releases the lock too.
    drop(db);
    let db = AedbInstance::open(dir.path(), production()).expect("reopen after drop");
    db.shutdown().expect("shutdown");
}

#[test]
fn open_from_another_process_fails_while_the_lock_is_held() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = AedbInstance::open(dir.path(), production()).expect("open");
    spawn_child("lock_probe_child", (PROBE_DIR_ENV, dir.path()))
        .wait()
        .assert_exit_code(PROBE_HELD, "probe while held");
    db.shutdown().expect("shutdown");

    spawn_child("lock_probe_child", (PROBE_DIR_ENV, dir.path()))
        .wait()
        .assert_exit_code(PROBE_OPENED, "probe after shutdown");
    // And the lock is free again for this process.
    AedbInstance::open(dir.path(), production())
        .expect("open after the probe exited")
        .shutdown()
        .expect("shutdown");
}

#[test]
fn lock_is_released_when_the_holder_is_sigkilled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = spawn_child("lock_holder_child", (HOLDER_DIR_ENV, dir.path()));
    let lsn = child.wait_for_line("READY", LINE_TIMEOUT);
    let lsn: u64 = lsn.parse().expect("lsn");

    let err = AedbInstance::open(dir.path(), production()).expect_err("held by the child");
    let aedb::Error::Open(OpenError::Lock(LockError::Held { holder_pid, .. })) = &err else {
        panic!("expected LockError::Held, got {err:?}");
    };
    assert_eq!(*holder_pid, Some(child.id()), "the holder's pid");

    child.kill().assert_killed("lock holder");

    let db = AedbInstance::open(dir.path(), production()).expect("open after the holder died");
    let snap = db.snapshot().expect("snapshot");
    assert_eq!(snap.lsn().get(), lsn);
    let entry = snap
        .kv_get(&ns(), b"holder")
        .expect("read")
        .expect("durable commit");
    assert_eq!(entry.value.as_bytes(), b"was here");
    db.shutdown().expect("shutdown");
}

// ---------------------------------------------------------------- configuration

#[test]
fn invalid_configuration_is_rejected_before_touching_the_directory() {
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("never-created");
    type IsExpected = fn(&ConfigError) -> bool;
    let cases: Vec<(AedbConfig, IsExpected)> = vec![
        (production().segment_size(0), |e| {
            *e == ConfigError::SegmentSize(0)
        }),
        (production().segment_size(1 << 40), |e| {
            *e == ConfigError::SegmentSize(1 << 40)
        }),
        (production().flush_interval(Duration::ZERO), |e| {
            matches!(e, ConfigError::FlushInterval(_))
        }),
        (production().sequencer_queue(0), |e| {
            matches!(
                e,
                ConfigError::QueueBound {
                    name: "sequencer_queue",
                    bound: 0
                }
            )
        }),
        (AedbConfig::development().wal_queue(usize::MAX), |e| {
            matches!(
                e,
                ConfigError::QueueBound {
                    name: "wal_queue",
                    ..
                }
            )
        }),
        (production().max_batch(0), |e| {
            matches!(
                e,
                ConfigError::QueueBound {
                    name: "max_batch",
                    ..
                }
            )
        }),
        (production().recovery(Recovery::TruncateAtCorruption), |e| {
            *e == ConfigError::LenientRecoveryOutsideDevelopment
        }),
    ];
    for (config, expected) in cases {
        let shown = format!("{config:?}");
        match AedbInstance::open(&dir, config) {
            Err(aedb::Error::Open(OpenError::Config(e))) => {
                assert!(expected(&e), "{shown}: {e:?}");
                assert!(!e.to_string().is_empty());
            }
            other => panic!("{shown}: expected a configuration error, got {other:?}"),
        }
        assert!(
            !dir.exists(),
            "a rejected configuration must not create the directory"
        );
    }
    AedbInstance::open(
        &dir,
        AedbConfig::development()
            .checkpoint_on_shutdown(false)
            .recovery(Recovery::TruncateAtCorruption),
    )
    .expect("lenient recovery is fine in development")
    .shutdown()
    .expect("shutdown");
}

// ---------------------------------------------------------------- idempotency

#[test]
fn idempotent_outcomes_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ns = ns();
    let db = open_with_namespace(dir.path(), production());

    let pay = Transaction::new()
        .kv_add(&ns, key("balance"), Numeric::U64(10))
        .idempotency_key(idem("payment-1"));
    let first = db.commit(pay.clone()).expect("commit");
    assert!(!first.idempotent_replay);
    let retry = db.commit(pay.clone()).expect("retry");
    assert_eq!((retry.lsn, retry.idempotent_replay), (first.lsn, true));

    // Assertion 0 holds, assertion 1 fails: a keyed rejection is recorded.
    let guarded = Transaction::new()
        .assert(Assertion::KvAbsent {
            ns: ns.clone(),
            key: key("nobody"),
        })
        .assert(Assertion::KvExists {
            ns: ns.clone(),
            key: key("gate"),
        })
        .kv_add(&ns, key("balance"), Numeric::U64(1000))
        .idempotency_key(idem("guarded-1"));
    let err = db.commit(guarded.clone()).expect_err("gate is closed");
    assert_eq!(err.failed_assertion(), Some(1), "{err}");
    assert!(
        matches!(err, aedb::Error::Commit(CommitError::Rejected(ref e)) if !e.is_already_seen())
    );
    let rejected_at = db.snapshot().expect("snapshot").lsn();
    assert_eq!(
        rejected_at,
        first.lsn.next(),
        "a keyed rejection takes an LSN"
    );
    let replays_before = db.operational_metrics().idempotent_replays;
    db.shutdown().expect("shutdown");

    let db = AedbInstance::open(dir.path(), production()).expect("reopen");
    assert_eq!(db.snapshot().expect("snapshot").lsn(), rejected_at);
    let retry = db.commit(pay).expect("retry after restart");
    assert_eq!((retry.lsn, retry.idempotent_replay), (first.lsn, true));

    // Open the gate: the retried guarded commit would now pass, but its key already
    // has an outcome, which is returned as is.
    db.commit(put("gate", "open")).expect("open the gate");
    let lsn = db.snapshot().expect("snapshot").lsn();
    let err = db.commit(guarded).expect_err("the original rejection");
    assert_eq!(err.failed_assertion(), Some(1), "{err}");
    let aedb::Error::Commit(CommitError::Rejected(apply)) = &err else {
        panic!("{err:?}");
    };
    assert!(apply.is_already_seen(), "{err:?}");
    assert_eq!(
        db.snapshot().expect("snapshot").lsn(),
        lsn,
        "a replayed outcome takes no LSN"
    );
    assert_eq!(
        db.snapshot()
            .expect("snapshot")
            .kv_get_numeric(&ns, b"balance", NumericType::U64)
            .expect("balance"),
        Numeric::U64(10)
    );
    assert_eq!(db.operational_metrics().idempotent_replays, 2);
    assert!(replays_before >= 1);
    db.shutdown().expect("shutdown");
}

// ---------------------------------------------------------------- finality

#[test]
fn visible_commits_are_readable_at_once_and_flush_makes_them_durable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_with_namespace(dir.path(), AedbConfig::low_latency(KEY));
    let mut last = None;
    for i in 0..50 {
        let name = format!("k{i:03}");
        let outcome = db.commit(put(&name, "v")).expect("visible commit");
        let snap = db.snapshot().expect("snapshot");
        assert!(snap.lsn() >= outcome.lsn);
        assert!(
            snap.kv_get(&ns(), name.as_bytes()).expect("read").is_some(),
            "{name} is readable as soon as it is acknowledged"
        );
        last = Some(outcome.lsn);
    }
    let last = last.expect("commits");
    db.flush().expect("flush");
    let m = db.operational_metrics();
    assert_eq!(
        m.durable_lsn,
        last.get(),
        "flush makes every acknowledged commit durable"
    );
    assert!(m.visible_commits >= 50);
    db.shutdown().expect("shutdown");

    let db = AedbInstance::open(dir.path(), AedbConfig::low_latency(KEY)).expect("reopen");
    assert_eq!(db.snapshot().expect("snapshot").lsn(), last);
    assert_eq!(
        db.snapshot().expect("snapshot").kv_len(&ns()).expect("len"),
        50
    );
    db.shutdown().expect("shutdown");
}

#[test]
fn flushed_visible_commits_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = spawn_child("visible_flush_child", (VISIBLE_DIR_ENV, dir.path()));
    let flushed = child.wait_for_line("FLUSHED", LINE_TIMEOUT);
    let flushed: u64 = flushed.parse().expect("lsn");
    std::thread::sleep(Duration::from_millis(20));
    child.kill().assert_killed("visible flush child");

    let db = AedbInstance::open(dir.path(), AedbConfig::low_latency(KEY)).expect("reopen");
    let snap = db.snapshot().expect("snapshot");
    assert!(snap.lsn().get() >= flushed, "{} < {flushed}", snap.lsn());
    let page = snap
        .kv_scan_prefix(&ns(), b"flushed-", Direction::Forward, 1000)
        .expect("scan");
    assert_eq!(page.items.len(), 200, "every flushed commit survived");
    // Unflushed commits after the flush survive only as a gap-free prefix.
    let unflushed = snap
        .kv_scan_prefix(&ns(), b"unflushed-", Direction::Forward, usize::MAX)
        .expect("scan");
    for (i, (k, _)) in unflushed.items.iter().enumerate() {
        assert_eq!(k.as_bytes(), format!("unflushed-{i:08}").as_bytes());
    }
    assert_eq!(snap.lsn().get(), flushed + unflushed.items.len() as u64);
    db.shutdown().expect("shutdown");
}

// ---------------------------------------------------------------- admission

#[test]
fn try_commit_fails_fast_with_busy_and_counts_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = production().sequencer_queue(1).wal_queue(1).max_batch(1);
    let db = Arc::new(open_with_namespace(dir.path(), config));
    let start_lsn = db.snapshot().expect("snapshot").lsn().get();
    let ok = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (db, ok, busy) = (db.clone(), ok.clone(), busy.clone());
            std::thread::spawn(move || {
                for i in 0..20 {
                    match db.try_commit(put(&format!("t{t:02}-{i:02}"), "v"), Finality::Durable) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(aedb::Error::Commit(CommitError::Busy)) => {
                            busy.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => panic!("try_commit: {e:?}"),
                    };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("burst thread");
    }
    let (ok, busy) = (ok.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    println!("try_commit burst: {ok} committed, {busy} refused with Busy");
    assert_eq!(ok + busy, 16 * 20);
    let m = db.operational_metrics();
    assert_eq!(m.errors.busy, busy, "every Busy is counted");
    assert_eq!(
        m.sequencer_queue_depth, 0,
        "refused commits leave no queue depth behind"
    );
    let snap = db.snapshot().expect("snapshot");
    assert_eq!(snap.kv_len(&ns()).expect("len") as u64, ok);
    assert_eq!(
        snap.lsn().get(),
        start_lsn + ok,
        "a Busy commit takes no LSN"
    );
    // Waiting admission always gets in.
    db.commit_with(put("after-burst", "v"), Finality::Durable)
        .expect("commit waits for room");
    Arc::into_inner(db)
        .expect("threads are done")
        .shutdown()
        .expect("shutdown");
}

#[test]
fn commit_async_works_from_a_simple_executor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_with_namespace(dir.path(), production());
    let one = futures::executor::block_on(db.commit_async(put("async-0", "v"), Finality::Durable))
        .expect("async commit");
    assert_eq!(one.lsn, db.snapshot().expect("snapshot").lsn());

    let futures: Vec<_> = (1..=20)
        .map(|i| {
            let finality = if i % 2 == 0 {
                Finality::Durable
            } else {
                Finality::Visible
            };
            db.commit_async(put(&format!("async-{i}"), "v"), finality)
        })
        .collect();
    let outcomes = futures::executor::block_on(futures::future::join_all(futures));
    let lsns: BTreeSet<u64> = outcomes
        .into_iter()
        .map(|o| o.expect("async commit").lsn.get())
        .collect();
    assert_eq!(lsns.len(), 20, "distinct LSNs");
    assert_eq!(
        *lsns.last().expect("lsns"),
        one.lsn.get() + 20,
        "dense LSNs"
    );
    assert_eq!(
        db.snapshot().expect("snapshot").kv_len(&ns()).expect("len"),
        21
    );

    let rejected = futures::executor::block_on(db.commit_async(
        Transaction::new().assert(Assertion::KvAbsent {
            ns: ns(),
            key: key("async-0"),
        }),
        Finality::Durable,
    ))
    .expect_err("assertion fails");
    assert_eq!(rejected.failed_assertion(), Some(0));
    db.shutdown().expect("shutdown");
}

// ---------------------------------------------------------------- metrics

#[test]
fn operational_metrics_after_durable_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open_with_namespace(dir.path(), production());
    const N: u64 = 40;
    let mut last = 0;
    for i in 0..N {
        last = db
            .commit_with(put(&format!("m{i}"), "v"), Finality::Durable)
            .expect("durable commit")
            .lsn
            .get();
    }
    let failing = Transaction::new().assert(Assertion::KvExists {
        ns: ns(),
        key: key("missing"),
    });
    assert!(db.commit(failing).is_err());
    let m = db.operational_metrics();
    assert!(m.commits >= N, "{m:?}");
    assert!(m.durable_commits >= N, "{m:?}");
    assert!(m.fsyncs >= 1, "{m:?}");
    assert!(m.fsync_latency_us.count >= 1, "{m:?}");
    assert!(m.group_commit_batch_size.count >= 1, "{m:?}");
    assert!(m.group_commit_batch_size.sum >= N, "{m:?}");
    assert!(m.wal_bytes > 0, "{m:?}");
    assert_eq!(m.durable_lsn, last);
    assert_eq!(m.visible_lsn, last);
    assert_eq!(m.errors.assertion_failed, 1);
    assert_eq!(m.errors.busy + m.errors.wal_failure + m.errors.closed, 0);
    assert_eq!(m.sequencer_queue_depth, 0);
    assert_eq!(m.recovery_frames, 0, "fresh directory");
    db.shutdown().expect("shutdown");

    let db = AedbInstance::open(dir.path(), production()).expect("reopen");
    let m = db.operational_metrics();
    assert_eq!(m.recovery_frames, last, "every frame replayed");
    assert_eq!((m.durable_lsn, m.visible_lsn), (last, last));
    assert_eq!(m.commits, 0, "counters are per instance");
    db.shutdown().expect("shutdown");
}

// ---------------------------------------------------------------- recovery

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(WAL_DIR))
        .expect("wal dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Frame offsets `(start, len)` of a segment, per docs/FORMAT.md: a 64-byte header, then
/// frames of `20 + payload_len` bytes, until 16 zero bytes.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 64;
    while at + 16 <= bytes.len() && bytes[at..at + 16].iter().any(|&b| b != 0) {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        out.push((at, 20 + len));
        at += 20 + len;
    }
    out
}

#[test]
fn torn_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = || production().segment_size(1 << 20);
    let db = open_with_namespace(dir.path(), config());
    for i in 0..20 {
        db.commit(put(&format!("k{i:02}"), "some value"))
            .expect("commit");
    }
    let last = db.snapshot().expect("snapshot").lsn();
    db.shutdown().expect("shutdown");

    // Simulate a torn write: the first part of a copy of the last frame (with the next
    // LSN) lands after the data end; the rest never made it.
    let segments = segment_files(dir.path());
    let segment = segments.last().expect("a segment");
    let bytes = std::fs::read(segment).expect("read segment");
    let all = frames(&bytes);
    let &(start, len) = all.last().expect("frames");
    let end = start + len;
    let mut torn = bytes[start..start + len * 3 / 5].to_vec();
    torn[4..12].copy_from_slice(&(last.get() + 1).to_le_bytes());
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(segment)
        .expect("open segment");
    file.write_all_at(&torn, end as u64)
        .expect("write torn frame");
    file.sync_all().expect("sync");
    let nonzero = torn.iter().rposition(|&b| b != 0).expect("non-zero bytes") + 1;

    let db = AedbInstance::open(dir.path(), config()).expect("a torn tail is not corruption");
    let report = db.recovery_report();
    assert_eq!(report.torn_tail_bytes(), nonzero as u64);
    let cut = report.torn_tail.as_ref().expect("tail cut");
    assert_eq!(cut.path, *segment);
    assert_eq!(cut.offset, end as u64);
    assert_eq!(
        db.operational_metrics().recovery_torn_tail_bytes,
        nonzero as u64
    );
    assert_eq!(
        db.snapshot().expect("snapshot").lsn(),
        last,
        "every complete frame is kept"
    );
    assert_eq!(
        db.snapshot().expect("snapshot").kv_len(&ns()).expect("len"),
        20
    );
    let next = db
        .commit(put("after", "tail"))
        .expect("commit after repair");
    assert_eq!(next.lsn, last.next());
    db.shutdown().expect("shutdown");

    let db = AedbInstance::open(dir.path(), config()).expect("reopen");
    assert_eq!(
        db.recovery_report().torn_tail_bytes(),
        0,
        "the tail was cut for good"
    );
    assert_eq!(db.snapshot().expect("snapshot").lsn(), last.next());
    db.shutdown().expect("shutdown");
}

#[test]
fn corrupt_sealed_segment_fails_strict_open_naming_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = || production().segment_size(64 * 1024);
    let db = open_with_namespace(dir.path(), config());
    let big = "x".repeat(1024);
    // One commit at a time (Durable), so no group-commit batch outgrows a segment and
    // the rotation count is deterministic.
    for i in 0..150 {
        db.commit_with(put(&format!("k{i:03}"), &big), Finality::Durable)
            .expect("commit");
    }
    db.shutdown().expect("shutdown");
    let segments = segment_files(dir.path());
    assert!(segments.len() >= 3, "rotation happened: {segments:?}");

    // Flip one payload byte of the 6th frame (LSN 6) of the first, sealed segment.
    let sealed = &segments[0];
    let bytes = std::fs::read(sealed).expect("read segment");
    let (start, _) = frames(&bytes)[5];
    let at = start + 16 + 8;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(sealed)
        .expect("open segment");
    file.write_all_at(&[bytes[at] ^ 0x01], at as u64)
        .expect("flip");
    file.sync_all().expect("sync");

    for _ in 0..2 {
        let err = AedbInstance::open(dir.path(), config()).expect_err("strict open refuses");
        let message = err.to_string();
        assert!(message.contains(&sealed.display().to_string()), "{message}");
        let recovery = match &err {
            aedb::Error::Open(OpenError::Recovery(e)) => Some(&**e),
            _ => None,
        };
        match recovery {
            Some(StartError::Wal(aedb_wal::RecoverError::Corrupt { path, offset, .. })) => {
                assert_eq!(path, sealed);
                assert_eq!(*offset, start as u64, "{message}");
            }
            _ => panic!("expected WAL corruption, got {err:?}"),
        }
    }
    assert_eq!(std::fs::read(sealed).expect("read").len(), bytes.len());
    assert_eq!(
        segment_files(dir.path()),
        segments,
        "a refused open changes nothing"
    );

    // The manifest binds the directory to its key: opening it with another profile's
    // key (development has a public one) is refused before any WAL is read.
    let err = AedbInstance::open(
        dir.path(),
        AedbConfig::development()
            .checkpoint_on_shutdown(false)
            .segment_size(64 * 1024),
    )
    .expect_err("a different manifest key is refused");
    assert!(
        matches!(
            err,
            aedb::Error::Open(OpenError::Recovery(ref e)) if matches!(**e, StartError::Manifest(_))
        ),
        "{err:?}"
    );
}
