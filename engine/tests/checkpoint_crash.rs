//! SIGKILL during checkpoint sealing: a child process holds a sealed database with a
//! large-ish state (50 000 keys, so sealing a checkpoint takes a noticeable time), keeps
//! calling `checkpoint_now()` on one thread while another commits `Durable` puts and
//! reports every acknowledgement, and is killed with SIGKILL at a random moment inside a
//! seal. After every kill the parent reopens the directory and checks that recovery
//! started from a recorded checkpoint (never a half-written `.ckpt.tmp`), that no
//! checkpoint failed to authenticate, that every acknowledged commit is there at its LSN,
//! that LSNs are dense, and that the whole key-value space equals a model recomputed from
//! the acknowledgements (the commit in flight at the kill may or may not have landed).
//!
//! The child is this test binary re-executed with `--exact checkpoint_crash_child`; it does
//! nothing unless `AEDB_CKPT_CRASH_CHILD_DIR` is set. Every cycle reuses the same data
//! directory. `AEDB_CKPT_CRASH_CYCLES` sets the number of kill cycles (default 8). The
//! kill times come from a seed printed at the start and on failure; set
//! `AEDB_CRASH_SEED=<seed>` to replay it. A child that panics on any thread aborts, and
//! the parent fails the test on anything but its own SIGKILL or on a panic in the
//! child's stderr.
//!
//! Two deterministic tests next to it reproduce the states a kill inside a seal can leave
//! behind — a `.ckpt.tmp` that was being written, and a `.ckpt` renamed into place but
//! not yet recorded in the manifest — and check what the next open and checkpoint do.

mod child_process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use child_process::{KillableChild, XorShift, announce_seed, child_env, cycles, emit};

use aedb::{
    AedbConfig, AedbInstance, Direction, Finality, KvKey, KvValue, Namespace, ProjectName,
    Transaction,
};

const CHILD_DIR_ENV: &str = "AEDB_CKPT_CRASH_CHILD_DIR";
const CHILD_CYCLE_ENV: &str = "AEDB_CKPT_CRASH_CHILD_CYCLE";
const CHILD_TEST: &str = "checkpoint_crash_child";
const CYCLES_ENV: &str = "AEDB_CKPT_CRASH_CYCLES";
const DEFAULT_CYCLES: u64 = 8;

const MANIFEST_KEY: [u8; 32] = [0x6B; 32];
const DATA_KEY: [u8; 32] = [0xD2; 32];
/// Keys loaded before the first checkpoint.
const BASE_KEYS: u64 = 50_000;
/// Puts per loading transaction.
const LOAD_BATCH: u64 = 1_000;
const LOADED_MARKER: &[u8] = b"~loaded";
/// The child gives up on its own after this long (only if the parent never kills it).
const CHILD_DEADLINE: Duration = Duration::from_secs(90);
/// How long the parent waits for a child line before declaring the child stuck.
const LINE_TIMEOUT: Duration = Duration::from_secs(240);

fn config() -> AedbConfig {
    AedbConfig::production(MANIFEST_KEY)
        .checkpoint_on_shutdown(false)
        .with_checkpoint_key(DATA_KEY)
        // Small segments, so checkpoints retire WAL segments while the child is killed.
        .segment_size(1024 * 1024)
        // Only the child's explicit checkpoints.
        .checkpoint_wal_bytes(1 << 40)
        .checkpoint_interval(Duration::from_secs(24 * 3600))
}

fn ns() -> Namespace {
    Namespace::parse("ckpt", "crash").expect("valid namespace")
}

fn key(bytes: impl AsRef<[u8]>) -> KvKey {
    KvKey::new(bytes).expect("valid key")
}

fn value(bytes: impl AsRef<[u8]>) -> KvValue {
    KvValue::new(bytes).expect("valid value")
}

fn base_key(i: u64) -> String {
    format!("base-{i:05}")
}

fn base_value(i: u64) -> String {
    format!("initial-{i:05}-{}", "b".repeat(16))
}

fn new_key(cycle: u64, n: u64) -> String {
    format!("new-c{cycle:03}-{n:06}")
}

fn new_value(cycle: u64, n: u64) -> String {
    format!("v-c{cycle:03}-{n:06}-{}", "n".repeat(16))
}

/// The base key commit `n` of `cycle` overwrites.
fn updated_base(cycle: u64, n: u64) -> u64 {
    (cycle * 7_919 + n * 31) % BASE_KEYS
}

fn updated_value(cycle: u64, n: u64) -> String {
    format!("updated-c{cycle:03}-{n:06}")
}

/// Commit `n` of `cycle`: one new key, one overwritten base key.
fn cycle_tx(cycle: u64, n: u64) -> Transaction {
    let ns = ns();
    Transaction::new()
        .kv_put(&ns, key(new_key(cycle, n)), value(new_value(cycle, n)))
        .kv_put(
            &ns,
            key(base_key(updated_base(cycle, n))),
            value(updated_value(cycle, n)),
        )
}

/// Creates the namespace and loads the base keys, unless an earlier child did.
fn setup(db: &AedbInstance) {
    let ns = ns();
    if !db
        .snapshot()
        .expect("snapshot")
        .has_project(&ProjectName::new("ckpt").expect("valid project"))
    {
        db.create_project("ckpt").expect("create project");
    }
    if !db.snapshot().expect("snapshot").has_namespace(&ns) {
        db.create_scope("ckpt", "crash").expect("create scope");
    }
    if db
        .kv_get(&ns, LOADED_MARKER)
        .expect("read marker")
        .is_some()
    {
        return;
    }
    for start in (0..BASE_KEYS).step_by(LOAD_BATCH as usize) {
        let mut tx = Transaction::new();
        for i in start..(start + LOAD_BATCH).min(BASE_KEYS) {
            tx = tx.kv_put(&ns, key(base_key(i)), value(base_value(i)));
        }
        if start + LOAD_BATCH >= BASE_KEYS {
            tx = tx.kv_put(&ns, key(LOADED_MARKER), value("yes"));
        }
        db.commit_with(tx, Finality::Durable).expect("load batch");
    }
}

/// The child: checkpoints in a loop while committing, until killed. Does nothing in a
/// normal test run.
#[test]
#[ignore = "child process of `sigkill_during_checkpoint_sealing_loses_nothing`, which starts it"]
fn checkpoint_crash_child() {
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
    let started = Instant::now();
    let first = db.checkpoint_now().expect("first checkpoint");
    emit(&format!(
        "READY {} {}",
        first.lsn.get(),
        started.elapsed().as_millis()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let committer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let outcome = db
                    .commit_with(cycle_tx(cycle, n), Finality::Durable)
                    .expect("durable commit");
                emit(&format!("ACK {} {n}", outcome.lsn.get()));
                n += 1;
            }
        })
    };
    let deadline = Instant::now() + CHILD_DEADLINE;
    let mut sealed = first.lsn;
    while Instant::now() < deadline {
        // Only calls that will write a checkpoint are reported as seals (a call with
        // nothing new since the last checkpoint returns at once without writing).
        let lsn = db.snapshot().expect("snapshot").lsn();
        if lsn <= sealed {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        emit(&format!("SEAL-START {}", lsn.get()));
        let report = db.checkpoint_now().expect("checkpoint");
        assert!(report.path.is_some() && report.lsn >= lsn, "{report:?}");
        sealed = report.lsn;
        emit(&format!("SEAL-END {}", report.lsn.get()));
    }
    stop.store(true, Ordering::Relaxed);
    committer.join().expect("committer thread");
    emit("DONE");
}

/// What the parent learnt from one child's stdout.
#[derive(Default)]
struct ChildReport {
    /// `(checkpoint lsn, milliseconds)` of the child's first checkpoint.
    ready: Option<(u64, u64)>,
    /// `(lsn, n)` of every acknowledged commit, in order.
    acked: Vec<(u64, u64)>,
    seals_started: u64,
    seals_finished: u64,
    /// Whether the last seal marker was a start (the kill landed inside a seal).
    in_seal: bool,
}

impl ChildReport {
    /// Parses one line of the child's stdout. Lines of the protocol (`READY <lsn> <ms>`,
    /// `ACK <lsn> <n>`, `SEAL-START <lsn>`, `SEAL-END <lsn>`) must parse exactly: a
    /// malformed one fails the test rather than being dropped. Other lines (libtest's
    /// own) are ignored.
    fn parse(&mut self, line: &str, hint: &str) {
        let mut words = line.split_whitespace();
        let Some(word) = words.next() else { return };
        let fields = match word {
            "READY" | "ACK" => 2,
            "SEAL-START" | "SEAL-END" => 1,
            _ => return,
        };
        let numbers: Vec<u64> = words.map_while(|w| w.parse().ok()).collect();
        assert_eq!(
            (numbers.len(), line.split_whitespace().count()),
            (fields, fields + 1),
            "malformed {word} line from the child: {line:?} ({hint})"
        );
        match word {
            "READY" => self.ready = Some((numbers[0], numbers[1])),
            "ACK" => self.acked.push((numbers[0], numbers[1])),
            "SEAL-START" => {
                self.seals_started += 1;
                self.in_seal = true;
            }
            _ => {
                self.seals_finished += 1;
                self.in_seal = false;
            }
        }
    }

    /// Reads lines until `done(self)` holds; fails the test (with the child's stderr) if
    /// the child goes quiet or exits first.
    fn read_until(
        &mut self,
        child: &mut KillableChild,
        what: &str,
        hint: &str,
        done: impl Fn(&Self) -> bool,
    ) {
        while !done(self) {
            match child.recv_line(LINE_TIMEOUT, what) {
                Some(line) => self.parse(&line, hint),
                None => child.fail(&format!("the child exited before {what}")),
            }
        }
    }
}

/// The expected key-value space, recomputed from acknowledgements.
struct Model {
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    /// LSN of the last commit the database holds.
    last_lsn: u64,
}

impl Model {
    fn loaded(last_lsn: u64) -> Model {
        let mut kv: BTreeMap<Vec<u8>, Vec<u8>> = (0..BASE_KEYS)
            .map(|i| (base_key(i).into_bytes(), base_value(i).into_bytes()))
            .collect();
        kv.insert(LOADED_MARKER.to_vec(), b"yes".to_vec());
        Model { kv, last_lsn }
    }

    fn apply(&mut self, cycle: u64, n: u64) {
        self.kv.insert(
            new_key(cycle, n).into_bytes(),
            new_value(cycle, n).into_bytes(),
        );
        self.kv.insert(
            base_key(updated_base(cycle, n)).into_bytes(),
            updated_value(cycle, n).into_bytes(),
        );
        self.last_lsn += 1;
    }
}

fn checkpoint_files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut done = Vec::new();
    let mut tmp = Vec::new();
    for entry in std::fs::read_dir(dir.join("checkpoints")).expect("checkpoints dir") {
        let path = entry.expect("dir entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".ckpt") {
            done.push(path);
        } else if name.ends_with(".ckpt.tmp") {
            tmp.push(path);
        }
    }
    done.sort();
    tmp.sort();
    (done, tmp)
}

fn tmp_path(dir: &Path, lsn: u64) -> PathBuf {
    dir.join("checkpoints").join(format!("{lsn:020}.ckpt.tmp"))
}

/// What one verified recovery looked like.
struct Recovered {
    checkpoint_lsn: u64,
    frames: u64,
    in_flight_landed: bool,
}

/// Reopens `dir` after the kill of `cycle` and checks everything against `model`, which
/// it then advances by the commits of this cycle that survived.
fn verify(dir: &Path, cycle: u64, report: &ChildReport, model: &mut Model) -> Recovered {
    let db = AedbInstance::open(dir, config()).expect("reopen after SIGKILL during a seal");
    let metrics = db.operational_metrics();
    let snap = db.snapshot().expect("snapshot");
    let ns = ns();
    // Recovery used a complete, recorded checkpoint file, and none failed to authenticate.
    assert_eq!(
        metrics.recovery_checkpoint_fallbacks, 0,
        "cycle {cycle}: a recorded checkpoint failed to load"
    );
    let checkpoint_lsn = metrics.checkpoint_lsn;
    assert!(
        checkpoint_lsn > 0,
        "cycle {cycle}: recovered from a checkpoint"
    );
    assert!(
        !checkpoint_files(dir).0.is_empty(),
        "cycle {cycle}: recovered from checkpoint lsn {checkpoint_lsn}, but no run file exists"
    );
    assert!(
        checkpoint_lsn >= report.ready.expect("ready").0,
        "cycle {cycle}: recovery used a checkpoint older than the one acknowledged at READY"
    );

    // This cycle's commits: a gap-free prefix 0..m of the child's sequence, holding every
    // acknowledged one at its acknowledged LSN, plus at most the one in flight.
    let mut m = 0;
    while snap
        .kv_get(&ns, new_key(cycle, m).as_bytes())
        .expect("read")
        .is_some()
    {
        m += 1;
    }
    for later in m + 1..m + 4 {
        assert!(
            snap.kv_get(&ns, new_key(cycle, later).as_bytes())
                .expect("read")
                .is_none(),
            "cycle {cycle}: gap before commit {later}"
        );
    }
    let acked = report.acked.len() as u64;
    assert!(
        m >= acked,
        "cycle {cycle}: {acked} commits acknowledged but only {m} recovered"
    );
    assert!(
        m <= acked + 1,
        "cycle {cycle}: {m} commits recovered but only {acked} acknowledged (one may be in flight)"
    );
    for (i, &(lsn, n)) in report.acked.iter().enumerate() {
        assert_eq!(n, i as u64, "cycle {cycle}: acknowledgements in order");
        let entry = snap
            .kv_get(&ns, new_key(cycle, n).as_bytes())
            .expect("read")
            .unwrap_or_else(|| panic!("cycle {cycle}: acknowledged commit {n} (lsn {lsn}) lost"));
        assert_eq!(entry.lsn.get(), lsn, "cycle {cycle}: commit {n}");
    }
    for n in 0..m {
        model.apply(cycle, n);
        let entry = snap
            .kv_get(&ns, new_key(cycle, n).as_bytes())
            .expect("read")
            .expect("present");
        assert_eq!(
            entry.lsn.get(),
            model.last_lsn,
            "cycle {cycle}: LSNs are dense (commit {n})"
        );
    }
    assert_eq!(
        snap.lsn().get(),
        model.last_lsn,
        "cycle {cycle}: nothing but the child's commits consumed LSNs"
    );

    // The whole key-value space equals the model.
    let page = snap
        .kv_scan_prefix(&ns, b"", Direction::Forward, usize::MAX)
        .expect("scan");
    assert!(!page.has_more);
    let actual: BTreeMap<Vec<u8>, Vec<u8>> = page
        .items
        .iter()
        .map(|(k, e)| (k.as_bytes().to_vec(), e.value.as_bytes().to_vec()))
        .collect();
    if actual != model.kv {
        let first_diff = model
            .kv
            .iter()
            .find(|(k, v)| actual.get(*k) != Some(*v))
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned());
        panic!(
            "cycle {cycle}: the recovered key-value space ({} keys) differs from the model \
             ({} keys); first differing model key {first_diff:?}",
            actual.len(),
            model.kv.len()
        );
    }
    let frames = db.recovery_report().frames_replayed;
    drop(snap);
    db.shutdown().expect("shutdown");
    Recovered {
        checkpoint_lsn,
        frames,
        in_flight_landed: m == acked + 1,
    }
}

#[test]
fn sigkill_during_checkpoint_sealing_loses_nothing() {
    let cycles = cycles(CYCLES_ENV, DEFAULT_CYCLES);
    assert!(cycles > 0);
    let seed = announce_seed("checkpoint crash test");
    let hint = seed.hint.as_str();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = XorShift::seeded(0);
    let mut model: Option<Model> = None;
    let started = Instant::now();
    let (mut killed_in_seal, mut tmp_after_kill, mut in_flight_landed) = (0, 0, 0);
    let mut acked_total = 0;
    let mut seal_ms_seen = Vec::new();
    let mut recovered_from = Vec::new();

    for cycle in 0..cycles {
        let mut child = KillableChild::spawn(
            CHILD_TEST,
            &[
                (CHILD_DIR_ENV, dir.path().display().to_string()),
                (CHILD_CYCLE_ENV, cycle.to_string()),
            ],
        );
        let mut report = ChildReport::default();
        report.read_until(&mut child, "READY", hint, |r| r.ready.is_some());
        let (ready_lsn, seal_ms) = report.ready.expect("ready");
        seal_ms_seen.push(seal_ms);
        if model.is_none() {
            // The first child loaded the base keys (two DDL statements, then batches).
            model = Some(Model::loaded(ready_lsn));
        }
        // Kill inside the 1st or 2nd seal after READY, at a random point of its expected
        // duration (the first seal's duration, at least 20 ms).
        let seals = 1 + rng.below(2);
        report.read_until(&mut child, "a seal", hint, |r| r.seals_started >= seals);
        let span = seal_ms.max(20) * 6 / 5;
        std::thread::sleep(Duration::from_millis(rng.below(span + 1)));
        let ended = child.kill();
        for line in &ended.rest {
            report.parse(line, hint);
        }
        // Anything but the parent's own SIGKILL (an abort from a panicking thread, an exit
        // of its own) fails the test, and so does a panic message on stderr.
        ended.assert_killed(&format!("cycle {cycle} ({hint})"));
        if report.in_seal {
            killed_in_seal += 1;
        }
        if !checkpoint_files(dir.path()).1.is_empty() {
            tmp_after_kill += 1;
        }
        acked_total += report.acked.len();

        let model = model.as_mut().expect("model");
        let recovered = verify(dir.path(), cycle, &report, model);
        if recovered.in_flight_landed {
            in_flight_landed += 1;
        }
        recovered_from.push((recovered.checkpoint_lsn, recovered.frames));
        println!(
            "cycle {cycle}: {} acks, seals {}/{} started/finished, killed {} a seal; \
             recovered from checkpoint lsn {} + {} WAL records, at lsn {}; .ckpt.tmp files: {:?}",
            report.acked.len(),
            report.seals_started,
            report.seals_finished,
            if report.in_seal { "inside" } else { "outside" },
            recovered.checkpoint_lsn,
            recovered.frames,
            model.last_lsn,
            checkpoint_files(dir.path()).1.len(),
        );
    }

    // A clean open, checkpoint and reopen still lands exactly on the model.
    let model = model.expect("model");
    let db = AedbInstance::open(dir.path(), config()).expect("final open");
    let report = db.checkpoint_now().expect("final checkpoint");
    assert_eq!(report.lsn.get(), model.last_lsn);
    db.shutdown().expect("shutdown");
    let db = AedbInstance::open(dir.path(), config()).expect("reopen");
    assert_eq!(db.snapshot().expect("snapshot").lsn().get(), model.last_lsn);
    assert_eq!(
        db.snapshot().expect("snapshot").kv_len(&ns()).expect("len"),
        model.kv.len(),
        "key count"
    );
    db.shutdown().expect("shutdown");
    let (ckpts, tmps) = checkpoint_files(dir.path());
    println!(
        "checkpoint crash test: {cycles} cycles in {:.1?}, {acked_total} acknowledged commits, \
         {killed_in_seal} kills inside a seal, {tmp_after_kill} kills left a .ckpt.tmp, \
         in-flight commit landed in {in_flight_landed} cycles, first-seal ms {seal_ms_seen:?}; \
         recovered from (checkpoint lsn, WAL records) {recovered_from:?}; at the end \
         {} .ckpt files and {} .ckpt.tmp files: {:?}",
        started.elapsed(),
        ckpts.len(),
        tmps.len(),
        ckpts.iter().chain(&tmps).collect::<Vec<_>>()
    );
    assert!(
        acked_total > 0,
        "the children acknowledged nothing ({hint})"
    );
    assert!(
        killed_in_seal > 0,
        "no child was killed inside a seal ({hint})"
    );
}

// ------------------------------------------------ what a kill inside a seal leaves behind

/// A small sealed database with one recorded checkpoint and a WAL tail after it; returns
/// the checkpoint's LSN and the last LSN.
fn small_database(dir: &Path) -> (u64, u64) {
    let db = AedbInstance::open(dir, config()).expect("open");
    setup_small(&db);
    let checkpoint = db.checkpoint_now().expect("checkpoint").lsn.get();
    for n in 0..10 {
        db.commit_with(cycle_tx(0, n), Finality::Durable)
            .expect("commit");
    }
    let last = db.snapshot().expect("snapshot").lsn().get();
    db.shutdown().expect("shutdown");
    (checkpoint, last)
}

fn setup_small(db: &AedbInstance) {
    db.create_project("ckpt").expect("project");
    db.create_scope("ckpt", "crash").expect("scope");
    for n in 0..10 {
        db.commit_with(cycle_tx(99, n), Finality::Durable)
            .expect("commit");
    }
}

/// ENGINE BUG (fails today): a kill while a checkpoint is being written leaves
/// `<lsn>.ckpt.tmp` (the sigkill test above sees one after almost every kill). Recovery
/// never uses it — but it never removes it either (`remove_stale_temp_files` exists in
/// `aedb-checkpoint` but the engine does not call it), so each crash during a seal leaks
/// up to a whole checkpoint of disk space, forever. WAL `.wal.tmp` files, by contrast,
/// are removed by recovery.
#[test]
fn a_half_written_checkpoint_temp_file_is_removed_by_the_next_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (checkpoint, last) = small_database(dir.path());
    // What a kill inside `CheckpointWriter::write_all` leaves: a partial temp file for an
    // LSN that will not be sealed again.
    let stray = tmp_path(dir.path(), checkpoint + 1);
    std::fs::write(&stray, vec![0xA5; 4096]).expect("write partial temp file");

    let db = AedbInstance::open(dir.path(), config()).expect("open with a stray temp file");
    assert_eq!(db.snapshot().expect("snapshot").lsn().get(), last);
    assert_eq!(db.operational_metrics().checkpoint_lsn, checkpoint);
    let report = db.checkpoint_now().expect("checkpoint");
    assert_eq!(report.lsn.get(), last);
    db.shutdown().expect("shutdown");
    assert!(
        !stray.exists(),
        "ENGINE BUG: the half-written checkpoint {} from a killed seal survived an open, a \
         checkpoint and a shutdown (stray .ckpt.tmp files are never cleaned up)",
        stray.display()
    );
}

/// ENGINE BUG (fails today): a kill after the sealer renamed `<lsn>.ckpt` into place but
/// before the manifest recorded it leaves an unrecorded checkpoint file. Recovery ignores
/// it (correctly: it is not in the manifest), replays the WAL up to the same LSN, and then
/// the next checkpoint of that same state fails with `AlreadyExists` — and keeps failing
/// until a new commit moves the LSN on (on an idle database, automatic checkpoints retry and
/// fail every poll). The orphaned file is never removed.
#[test]
fn a_checkpoint_renamed_but_not_recorded_does_not_block_the_next_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (checkpoint, last) = small_database(dir.path());
    let manifest = dir.path().join("MANIFEST");
    let before = std::fs::read(&manifest).expect("read manifest");
    let db = AedbInstance::open(dir.path(), config()).expect("open");
    let report = db.checkpoint_now().expect("checkpoint");
    assert_eq!(report.lsn.get(), last);
    assert_eq!(report.retired_checkpoints, 0, "nothing retired yet");
    db.shutdown().expect("shutdown");
    // The crash: the run file is in place, its manifest record never made it.
    std::fs::write(&manifest, &before).expect("restore the manifest before the records");
    let orphan = checkpoint_files(dir.path())
        .0
        .last()
        .cloned()
        .expect("the new run file");

    let db = AedbInstance::open(dir.path(), config()).expect("open after the crash");
    assert_eq!(db.snapshot().expect("snapshot").lsn().get(), last);
    assert_eq!(
        db.operational_metrics().checkpoint_lsn,
        checkpoint,
        "recovery ignores the unrecorded file"
    );
    let result = db.checkpoint_now();
    db.shutdown().expect("shutdown");
    assert!(
        result
            .as_ref()
            .is_ok_and(|r| r.path.as_ref() == Some(&orphan)),
        "the unrecorded run was removed at open and its id written again: {result:?}"
    );
    assert!(
        result.is_ok(),
        "ENGINE BUG: after a crash between the checkpoint rename and its manifest record, \
         checkpointing the recovered (unchanged) state fails: {}",
        result.map_or_else(|e| e.to_string(), |r| format!("{r:?}"))
    );
}
