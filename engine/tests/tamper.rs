//! The tamper matrix: a small sealed database (production profile, checkpoint key, 64 KiB
//! WAL segments, three segments, two kept checkpoints, a WAL tail after the newest one)
//! whose files are damaged one byte at a time, plus whole-file attacks: deleted segments,
//! swapped or deleted checkpoints, a truncated manifest, a rolled-back manifest.
//!
//! The rule every trial checks: a strict open either **refuses with an error whose
//! `Display` names the damaged file** (and changes nothing on disk), or — for the newest
//! checkpoint — **falls back** to the older one, or succeeds; and whatever succeeds returns
//! **exactly** the state captured before tampering (full `State` equality). The exceptions
//! documented in docs/FORMAT.md ("Recovery rules: torn tail versus corruption") are
//! asserted precisely rather than waved through:
//!
//! * a flipped byte in the preallocated zero tail of the last segment is cut as a torn
//!   tail, with no data lost;
//! * a flipped byte anywhere in the **final frame of the last segment** is indistinguishable
//!   from a torn write and is cut — which drops that frame's commit although it was
//!   acknowledged `Durable`. The trial asserts the state is then exactly the reference minus
//!   that one commit and that the cut is reported, and the summary counts these
//!   ("cut-acked").
//!
//! Recovery unseals every retained WAL batch and at least one checkpoint on every open,
//! which costs tens of milliseconds of CPU in a debug build, so files larger than
//! [`FULL_FLIP_LIMIT`] are sampled: every header byte, every N-th byte (N =
//! [`DEFAULT_STRIDE`] = 1361, env `AEDB_TAMPER_STRIDE`), the last byte of every checkpoint,
//! and in every segment its last frame (the trailer of a sealed segment; the newest commit
//! of the last one) as 16 header bytes + CRC + every 4th byte; in the last segment also the
//! frame before the final one (same pattern) and the first 16 bytes of the zero tail.
//! With the default stride that is ~105 flips per ~11.5 KiB checkpoint, ~136 per sealed
//! 64 KiB segment and ~210 for the last one; the MANIFEST (848 bytes) has all bytes flipped:
//! ~1550 trials in all. The printed summary gives the exact count per file. `LOCK` holds
//! only the owner's pid and is not part of the matrix.
//! Trials run on two threads, each on its own copy of the fixture (on tmpfs when
//! available), restored byte for byte after every trial.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aedb::{
    AedbConfig, AedbInstance, Finality, IdempotencyKey, KvKey, KvValue, Lsn, Namespace, Numeric,
    OpenError, ReadSnapshot, StartError, Transaction,
};

const MANIFEST_KEY: [u8; 32] = [0x3C; 32];
const DATA_KEY: [u8; 32] = [0xA7; 32];
const SEGMENT_SIZE: u64 = 64 * 1024;
/// Files up to this size have every byte flipped; larger ones are sampled.
const FULL_FLIP_LIMIT: usize = 8 * 1024;
/// Default sampling stride for files larger than [`FULL_FLIP_LIMIT`] (a prime, so the
/// sampled bytes land at varying offsets inside frames).
const DEFAULT_STRIDE: usize = 1361;
const STRIDE_ENV: &str = "AEDB_TAMPER_STRIDE";

const MANIFEST: &str = "MANIFEST";
const WAL_HEADER: usize = 64;
const CKPT_HEADER: usize = 96;
const MANIFEST_HEADER: usize = 64;
/// Commits after each segment rotation the fixture waits for.
const TAIL: u64 = 20;

fn config() -> AedbConfig {
    AedbConfig::production(MANIFEST_KEY)
        .with_checkpoint_key(DATA_KEY)
        .segment_size(SEGMENT_SIZE)
        // Only explicit checkpoints: the fixture must be deterministic.
        .checkpoint_wal_bytes(1 << 40)
        .checkpoint_interval(Duration::from_secs(24 * 3600))
}

fn stride() -> usize {
    std::env::var(STRIDE_ENV)
        .ok()
        .map(|v| v.parse().expect("AEDB_TAMPER_STRIDE is a number"))
        .unwrap_or(DEFAULT_STRIDE)
        .max(1)
}

/// Trial threads: at most two (the test machines have two shared cores).
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 2))
}

fn ns() -> Namespace {
    Namespace::parse("tamper", "main").expect("namespace")
}

/// Commit `i` of the fixture: puts (some overwriting), deletes, a numeric counter, and an
/// idempotency key on every tenth commit.
fn tx(i: u64) -> Transaction {
    let ns = ns();
    let key = |k: u64| KvKey::new(format!("key-{k:03}")).expect("key");
    let t = match i % 7 {
        3 => Transaction::new().kv_delete(&ns, key((i - 3) % 200)),
        5 => Transaction::new().kv_add(&ns, KvKey::new("counter").expect("key"), Numeric::U64(i)),
        _ => Transaction::new().kv_put(
            &ns,
            key(i % 200),
            KvValue::new(format!("value-{i:06}-{}", "v".repeat(24))).expect("value"),
        ),
    };
    if i.is_multiple_of(10) {
        t.idempotency_key(IdempotencyKey::new(format!("idem-{i}")).expect("idem"))
    } else {
        t
    }
}

/// Every file under `dir` except `LOCK` (it holds the last owner's pid), by path relative
/// to `dir`.
fn all_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir").to_path_buf();
                if rel != Path::new("LOCK") {
                    out.insert(rel, std::fs::read(&path).expect("read file"));
                }
            }
        }
    }
    out
}

fn files_with_ext(files: &BTreeMap<PathBuf, Vec<u8>>, ext: &str) -> Vec<PathBuf> {
    files
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .cloned()
        .collect()
}

/// Frames `(start, len)` of a WAL segment (docs/FORMAT.md: 64-byte header, frames of
/// `20 + payload_len` bytes, 16 zero bytes end the data).
fn wal_frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = WAL_HEADER;
    while at + 16 <= bytes.len() && bytes[at..at + 16].iter().any(|&b| b != 0) {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        out.push((at, 20 + len));
        at += 20 + len;
    }
    out
}

/// One manifest record (docs/FORMAT.md: u32 body_len, u32 len_check, body, 32-byte MAC).
struct ManifestRecord {
    start: usize,
    len: usize,
    kind: u8,
    /// The `u64` after the kind byte: the LSN of `CheckpointAdded` (2) and
    /// `CheckpointRetired` (5).
    first_field: u64,
}

const CHECKPOINT_ADDED: u8 = 2;
const CHECKPOINT_RETIRED: u8 = 5;
const KEY_EPOCH_CHANGED: u8 = 6;

fn manifest_records(bytes: &[u8]) -> Vec<ManifestRecord> {
    let mut out = Vec::new();
    let mut at = MANIFEST_HEADER;
    while at + 8 <= bytes.len() {
        let n = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let body = &bytes[at + 8..at + 8 + n];
        let first_field = body
            .get(1..9)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        out.push(ManifestRecord {
            start: at,
            len: 8 + n + 32,
            kind: body[0],
            first_field,
        });
        at += 8 + n + 32;
    }
    assert_eq!(at, bytes.len(), "the manifest parses exactly");
    out
}

fn checkpoint_rel_path(lsn: u64) -> PathBuf {
    Path::new("checkpoints").join(format!("{lsn:020}.ckpt"))
}

/// The database every test damages, kept in memory and materialized per test.
struct Fixture {
    files: BTreeMap<PathBuf, Vec<u8>>,
    /// The state before tampering (every commit was acknowledged `Durable`).
    reference: ReadSnapshot,
    /// The state one commit earlier (what a cut of the last frame leaves).
    before_last: ReadSnapshot,
    /// The state after every commit, by LSN (states are persistent maps: clones are cheap).
    history: BTreeMap<Lsn, ReadSnapshot>,
    /// Live checkpoints, oldest first.
    checkpoints: Vec<PathBuf>,
    /// WAL segments, oldest first.
    segments: Vec<PathBuf>,
    /// Copies of MANIFEST taken right after the first and the second checkpoint.
    manifest_after: [Vec<u8>; 2],
    /// LSNs of the three checkpoints taken (the first one is retired).
    checkpoint_lsns: Vec<Lsn>,
    /// The directory right after checkpoint 2 (taken while the instance was open).
    after_second: BTreeMap<PathBuf, Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

/// The highest WAL segment sequence number in `dir` (segments are named by it).
fn newest_segment_seq(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("wal"))
        .expect("wal dir")
        .filter_map(|e| {
            let name = e.expect("dir entry").file_name();
            name.to_str()?.strip_suffix(".wal")?.parse().ok()
        })
        .max()
        .expect("a segment")
}

fn commit(db: &AedbInstance, i: u64, history: &mut BTreeMap<Lsn, ReadSnapshot>) {
    let outcome = db
        .commit_with(tx(i), Finality::Durable)
        .expect("durable commit");
    let state = db.snapshot().expect("snapshot");
    assert_eq!(state.lsn(), outcome.lsn, "one commit at a time");
    history.insert(outcome.lsn, state);
}

/// A scratch directory, on tmpfs when the machine has one: trials measure integrity
/// checks, not fsync latency, and every open and shutdown fsyncs several times.
fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().expect("temp dir")
}

fn build_fixture() -> Fixture {
    let dir = scratch_dir();
    let db = AedbInstance::open(dir.path(), config()).expect("open fixture");
    db.create_project("tamper").expect("project");
    db.create_scope("tamper", "main").expect("scope");
    let mut i = 0u64;
    let mut manifest_after = Vec::new();
    let mut checkpoint_lsns = Vec::new();
    // Segment 0 fills and is sealed; checkpoint 1 lands early in segment 1 and checkpoint
    // 2 shortly after it (retiring segment 0). Segment 1 then fills, checkpoint 3 lands in
    // segment 2 (retiring checkpoint 1), and the tail fills segment 2 and spills into
    // segment 3, so the last segment holds only commits after the newest checkpoint.
    // Segments 1..=3 remain. Every commit is acknowledged `Durable`, one at a time, so
    // each is one sealed batch (one WAL frame).
    let mut history = BTreeMap::new();
    let mut after_second = BTreeMap::new();
    for (round, seq) in [1, 1, 2, 3].into_iter().enumerate() {
        while newest_segment_seq(dir.path()) < seq {
            i += 1;
            commit(&db, i, &mut history);
        }
        for _ in 0..TAIL {
            i += 1;
            commit(&db, i, &mut history);
        }
        if round < 3 {
            let report = db.checkpoint_now().expect("checkpoint");
            assert!(report.path.is_some(), "{report:?}");
            checkpoint_lsns.push(report.lsn);
            manifest_after.push(std::fs::read(dir.path().join(MANIFEST)).expect("manifest"));
            if round == 1 {
                // Every commit so far is durable and the checkpoint complete: a copy now is
                // what a crash right after checkpoint 2 would leave.
                after_second = all_files(dir.path());
            }
        }
    }
    let reference = db.snapshot().expect("snapshot");
    let before_last = history
        .range(..reference.lsn())
        .next_back()
        .expect("earlier states")
        .1
        .clone();
    db.shutdown().expect("shutdown");

    let files = all_files(dir.path());
    let checkpoints = files_with_ext(&files, "ckpt");
    let segments = files_with_ext(&files, "wal");
    assert_eq!(
        checkpoints.len(),
        2,
        "two checkpoints kept: {checkpoints:?}"
    );
    assert!(segments.len() >= 3, "at least three segments: {segments:?}");
    let newest_ckpt = *checkpoint_lsns.last().expect("checkpoints");
    let last_segment = &files[segments.last().expect("segments")];
    let first_frame_lsn = u64::from_le_bytes(
        last_segment[WAL_HEADER + 4..WAL_HEADER + 12]
            .try_into()
            .expect("8 bytes"),
    );
    assert!(
        reference.lsn() > newest_ckpt,
        "a WAL tail follows the newest checkpoint"
    );
    // A sealed batch's frame LSN is its last LSN; one commit per batch here.
    assert!(
        first_frame_lsn > newest_ckpt.get(),
        "the last segment holds only commits after the newest checkpoint"
    );
    // Sanity: the fixture reopens to exactly the reference.
    let db = AedbInstance::open(dir.path(), config()).expect("reopen fixture");
    assert!(db.snapshot().expect("snapshot") == reference);
    db.shutdown().expect("shutdown");
    assert!(
        all_files(dir.path()) == files,
        "a clean open changes no file"
    );
    Fixture {
        files,
        reference,
        before_last,
        history,
        checkpoints,
        segments,
        manifest_after: manifest_after[..2].to_vec().try_into().expect("two copies"),
        checkpoint_lsns,
        after_second,
    }
}

impl Fixture {
    fn materialize(&self) -> tempfile::TempDir {
        let dir = scratch_dir();
        self.restore(dir.path());
        dir
    }

    /// Makes `dir` byte-identical to the fixture again (removing anything new); returns
    /// the files that differed.
    fn restore(&self, dir: &Path) -> Vec<PathBuf> {
        restore_files(&self.files, dir)
    }

    fn len(&self, rel: &Path) -> usize {
        self.files[rel].len()
    }
}

/// Makes `dir` hold exactly `files`; returns the files that differed.
fn restore_files(files: &BTreeMap<PathBuf, Vec<u8>>, dir: &Path) -> Vec<PathBuf> {
    for sub in ["wal", "checkpoints"] {
        std::fs::create_dir_all(dir.join(sub)).expect("create dir");
    }
    let present = all_files(dir);
    let mut changed = Vec::new();
    for (rel, bytes) in &present {
        match files.get(rel) {
            None => std::fs::remove_file(dir.join(rel)).expect("remove extra file"),
            Some(want) if want != bytes => {
                std::fs::write(dir.join(rel), want).expect("restore file")
            }
            Some(_) => continue,
        }
        changed.push(rel.clone());
    }
    for (rel, want) in files {
        if !present.contains_key(rel) {
            std::fs::write(dir.join(rel), want).expect("restore missing file");
            changed.push(rel.clone());
        }
    }
    changed.sort();
    changed
}

/// What one strict open did.
enum Observed {
    Refused(OpenError),
    Opened {
        state: ReadSnapshot,
        fallbacks: u64,
        /// The torn tail recovery cut: file and offset.
        torn_tail: Option<(PathBuf, u64)>,
    },
}

fn open_once(dir: &Path) -> Observed {
    match AedbInstance::open(dir, config()) {
        Err(aedb::Error::Open(e)) => Observed::Refused(e),
        Err(other) => panic!("an open fails with an Open error, got {other:?}"),
        Ok(db) => {
            let state = db.snapshot().expect("snapshot");
            let fallbacks = db.operational_metrics().recovery_checkpoint_fallbacks;
            let torn_tail = db
                .recovery_report()
                .torn_tail
                .as_ref()
                .map(|cut| (cut.path.clone(), cut.offset));
            db.shutdown().expect("shutdown");
            Observed::Opened {
                state,
                fallbacks,
                torn_tail,
            }
        }
    }
}

impl Observed {
    /// The error message of a refused open; panics (with `what`) otherwise.
    fn refusal(self, fx: &Fixture, what: &str) -> String {
        self.refusal_error(fx, what).to_string()
    }

    /// The error of a refused open; panics (with `what`) otherwise.
    fn refusal_error(self, fx: &Fixture, what: &str) -> OpenError {
        match self {
            Observed::Refused(err) => err,
            Observed::Opened { state, .. } => panic!(
                "{what}: expected a refusal, but it opened at lsn {} ({})",
                state.lsn(),
                fx.judge(&state)
            ),
        }
    }

    /// Either a successful open (its state and fallback count), or a refusal whose
    /// message names a file inside `dir` (the engine noticed that a file the manifest
    /// records is missing). Panics on any other refusal.
    fn opened_or_refused_naming(self, dir: &Path, what: &str) -> Option<(ReadSnapshot, u64)> {
        match self {
            Observed::Refused(err) => {
                let message = err.to_string();
                assert!(
                    message.contains(&dir.display().to_string()),
                    "{what}: refused without naming a file: {message}"
                );
                None
            }
            Observed::Opened {
                state, fallbacks, ..
            } => Some((state, fallbacks)),
        }
    }

    /// The state and fallback count of a successful open; panics (with `what`) otherwise.
    fn opened(self, what: &str) -> (ReadSnapshot, u64) {
        match self {
            Observed::Refused(err) => panic!("{what}: expected an open, got: {err}"),
            Observed::Opened {
                state, fallbacks, ..
            } => (state, fallbacks),
        }
    }
}

impl Fixture {
    /// How a recovered state relates to the fixture's history.
    fn judge(&self, state: &ReadSnapshot) -> String {
        if *state == self.reference {
            "equal to the reference".into()
        } else if self.history.get(&state.lsn()) == Some(state) {
            format!(
                "an exact earlier state: {} acknowledged commits missing",
                self.reference.lsn().get() - state.lsn().get()
            )
        } else {
            "WRONG DATA: equal to no state the database ever had".into()
        }
    }
}

/// Where in which file a byte was flipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Region {
    Manifest,
    NewestCheckpoint,
    OlderCheckpoint,
    /// A segment other than the last (sealed).
    SealedSegment,
    /// The last segment's header, or a frame before its final one.
    LastSegmentBody,
    /// The last segment's final frame (the newest acknowledged commit).
    LastSegmentFinalFrame,
    /// The last segment's preallocated zero tail.
    LastSegmentZeroTail,
}

impl Region {
    fn kind(self) -> &'static str {
        match self {
            Region::Manifest => "MANIFEST",
            Region::NewestCheckpoint => "checkpoint (newest)",
            Region::OlderCheckpoint => "checkpoint (older)",
            Region::SealedSegment => "WAL segment (sealed)",
            Region::LastSegmentBody => "WAL last seg: header+frames",
            Region::LastSegmentFinalFrame => "WAL last seg: final frame",
            Region::LastSegmentZeroTail => "WAL last seg: zero tail",
        }
    }

    /// The only acceptable outcome of a flip here.
    fn expected(self) -> Verdict {
        match self {
            Region::Manifest | Region::SealedSegment | Region::LastSegmentBody => Verdict::Refused,
            // The older checkpoint authenticates; the older one is never read.
            Region::NewestCheckpoint => Verdict::FellBack,
            Region::OlderCheckpoint => Verdict::SucceededEqual,
            // docs/FORMAT.md: damage at the very end of the last segment is
            // indistinguishable from a torn write and is cut as one.
            Region::LastSegmentFinalFrame => Verdict::CutAcknowledgedCommit,
            Region::LastSegmentZeroTail => Verdict::SucceededEqual,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Refused,
    FellBack,
    SucceededEqual,
    /// Opened exactly one commit short: the acknowledged final commit was cut as a torn
    /// tail.
    CutAcknowledgedCommit,
}

struct Trial {
    file: PathBuf,
    offset: usize,
    region: Region,
    /// Where a torn-tail cut must be reported, for the regions that are cut.
    cut_at: Option<u64>,
}

/// The offsets flipped in a file of `len` bytes: every byte up to [`FULL_FLIP_LIMIT`],
/// else the header, every [`stride`]-th byte and `extra`.
fn offsets(len: usize, header: usize, extra: impl IntoIterator<Item = usize>) -> BTreeSet<usize> {
    if len <= FULL_FLIP_LIMIT {
        return (0..len).collect();
    }
    let mut set: BTreeSet<usize> = (0..header.min(len)).collect();
    set.extend((0..len).step_by(stride()));
    set.extend(extra.into_iter().filter(|&o| o < len));
    set
}

fn plan_trials(fx: &Fixture) -> Vec<Trial> {
    let mut trials = Vec::new();
    let manifest = PathBuf::from(MANIFEST);
    for offset in offsets(fx.len(&manifest), MANIFEST_HEADER, []) {
        trials.push(Trial {
            file: manifest.clone(),
            offset,
            region: Region::Manifest,
            cut_at: None,
        });
    }
    for (i, ckpt) in fx.checkpoints.iter().enumerate() {
        let len = fx.len(ckpt);
        let region = if i + 1 == fx.checkpoints.len() {
            Region::NewestCheckpoint
        } else {
            Region::OlderCheckpoint
        };
        for offset in offsets(len, CKPT_HEADER, [len - 1]) {
            trials.push(Trial {
                file: ckpt.clone(),
                offset,
                region,
                cut_at: None,
            });
        }
    }
    for (i, seg) in fx.segments.iter().enumerate() {
        let bytes = &fx.files[seg];
        let frames = wal_frames(bytes);
        let &(last_start, last_len) = frames.last().expect("frames");
        let data_end = last_start + last_len;
        let is_last = i + 1 == fx.segments.len();
        // The last frame: its header, its CRC, every 4th byte.
        let mut extra: BTreeSet<usize> = (last_start..data_end).step_by(4).collect();
        extra.extend(last_start..last_start + 16);
        extra.extend(data_end - 4..data_end);
        if is_last {
            // The first bytes of the zero tail, and the frame before the final one (damage
            // there must not pass for a torn tail: a valid frame follows it).
            extra.extend(data_end..data_end + 16);
            let &(prev_start, prev_len) = &frames[frames.len() - 2];
            extra.extend((prev_start..prev_start + prev_len).step_by(4));
            extra.extend(prev_start + prev_len - 4..prev_start + prev_len);
        }
        for offset in offsets(bytes.len(), WAL_HEADER, extra) {
            let (region, cut_at) = if !is_last {
                (Region::SealedSegment, None)
            } else if offset >= data_end {
                (Region::LastSegmentZeroTail, Some(data_end as u64))
            } else if offset >= last_start {
                (Region::LastSegmentFinalFrame, Some(last_start as u64))
            } else {
                (Region::LastSegmentBody, None)
            };
            trials.push(Trial {
                file: seg.clone(),
                offset,
                region,
                cut_at,
            });
        }
    }
    trials
}

/// Flips one byte, opens, judges, restores. Panics unless the outcome is the one expected
/// for the region (so in particular on wrong data, on an error that does not name the
/// file, and on a refused open that changed something on disk).
fn run_trial(fx: &Fixture, dir: &Path, trial: &Trial) -> Verdict {
    let path = dir.join(&trial.file);
    let original = fx.files[&trial.file][trial.offset];
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open the file to tamper with");
    file.write_all_at(&[!original], trial.offset as u64)
        .expect("flip a byte");
    drop(file);
    let what = format!(
        "{} byte {} ({:?}) flipped {original:#04x} -> {:#04x}",
        trial.file.display(),
        trial.offset,
        trial.region,
        !original
    );
    let verdict = match open_once(dir) {
        Observed::Refused(err) => {
            let message = err.to_string();
            assert!(
                message.contains(&path.display().to_string()),
                "{what}: the error does not name the damaged file: {message}"
            );
            let mut tampered = fx.files[&trial.file].clone();
            tampered[trial.offset] = !original;
            assert!(
                std::fs::read(&path).expect("read back") == tampered,
                "{what}: the refused open modified the file ({message})"
            );
            Verdict::Refused
        }
        Observed::Opened {
            state,
            fallbacks,
            torn_tail,
        } => {
            assert!(fallbacks <= 1, "{what}: {fallbacks} fallbacks");
            let cut = torn_tail.map(|(p, offset)| (p == path, offset));
            if state == fx.reference && fallbacks == 1 {
                assert_eq!(cut, None, "{what}");
                Verdict::FellBack
            } else if state == fx.reference {
                let expected_cut = trial.cut_at.map(|offset| (true, offset));
                assert_eq!(cut, expected_cut, "{what}: torn tail cut");
                Verdict::SucceededEqual
            } else if state == fx.before_last {
                assert_eq!(fallbacks, 0, "{what}");
                let expected_cut = trial.cut_at.map(|offset| (true, offset));
                assert_eq!(cut, expected_cut, "{what}: torn tail cut");
                Verdict::CutAcknowledgedCommit
            } else {
                panic!(
                    "{what}: opened at lsn {} and the state is {}",
                    state.lsn(),
                    fx.judge(&state)
                );
            }
        }
    };
    let changed = fx.restore(dir);
    if verdict == Verdict::Refused {
        assert_eq!(
            changed,
            vec![trial.file.clone()],
            "{what}: a refused open changed other files"
        );
    }
    assert_eq!(
        verdict,
        trial.region.expected(),
        "{what}: unexpected outcome"
    );
    verdict
}

#[test]
fn every_single_byte_flip_is_refused_or_recovered_exactly() {
    let fx = fixture();
    let trials = plan_trials(fx);
    let started = Instant::now();
    let results: Mutex<Vec<(usize, Verdict)>> = Mutex::new(Vec::new());
    let workers = workers();
    std::thread::scope(|s| {
        for w in 0..workers {
            let (trials, results) = (&trials, &results);
            s.spawn(move || {
                let dir = fx.materialize();
                for (i, trial) in trials.iter().enumerate().skip(w).step_by(workers) {
                    let verdict = run_trial(fx, dir.path(), trial);
                    results.lock().expect("results").push((i, verdict));
                }
            });
        }
    });
    let results = results.into_inner().expect("results");
    assert_eq!(results.len(), trials.len(), "every trial ran");

    let mut table: BTreeMap<Region, BTreeMap<Verdict, u64>> = BTreeMap::new();
    for (i, verdict) in &results {
        *table
            .entry(trials[*i].region)
            .or_default()
            .entry(*verdict)
            .or_default() += 1;
    }
    println!(
        "tamper matrix: {} single-byte flips (byte XOR 0xFF) in {:.1?} on {workers} thread(s). \
         Files <= {FULL_FLIP_LIMIT} bytes: every byte; larger: header + every {}th byte + \
         extras (module docs).",
        trials.len(),
        started.elapsed(),
        stride()
    );
    for (name, bytes) in &fx.files {
        let n = trials.iter().filter(|t| t.file == *name).count();
        println!(
            "  {:<42} {:>6} bytes {:>5} trials",
            name.display(),
            bytes.len(),
            n
        );
    }
    println!(
        "  {:<28} {:>6} {:>8} {:>10} {:>16} {:>10}",
        "file kind", "trials", "refused", "fell back", "succeeded-equal", "cut-acked"
    );
    for (region, verdicts) in &table {
        let get = |v| verdicts.get(&v).copied().unwrap_or(0);
        println!(
            "  {:<28} {:>6} {:>8} {:>10} {:>16} {:>10}",
            region.kind(),
            verdicts.values().sum::<u64>(),
            get(Verdict::Refused),
            get(Verdict::FellBack),
            get(Verdict::SucceededEqual),
            get(Verdict::CutAcknowledgedCommit),
        );
    }
    let cut = table
        .get(&Region::LastSegmentFinalFrame)
        .and_then(|v| v.get(&Verdict::CutAcknowledgedCommit))
        .copied()
        .unwrap_or(0);
    println!(
        "  NOTE: {cut} flips inside the last segment's final frame opened WITHOUT the newest \
         acknowledged Durable commit (cut as a torn tail, as docs/FORMAT.md documents)."
    );
    for region in [
        Region::Manifest,
        Region::NewestCheckpoint,
        Region::OlderCheckpoint,
        Region::SealedSegment,
        Region::LastSegmentBody,
        Region::LastSegmentFinalFrame,
        Region::LastSegmentZeroTail,
    ] {
        assert!(table.contains_key(&region), "no trial in {region:?}");
    }
}

// ------------------------------------------------------------------ whole-file attacks

#[test]
fn deleting_a_middle_segment_is_refused_naming_the_next_one() {
    let fx = fixture();
    let dir = fx.materialize();
    std::fs::remove_file(dir.path().join(&fx.segments[1])).expect("delete");
    let message = open_once(dir.path()).refusal(fx, "middle segment deleted");
    let next = dir.path().join(&fx.segments[2]);
    assert!(
        message.contains(&next.display().to_string()) && message.contains("sequence gap"),
        "{message}"
    );
}

#[test]
fn deleting_the_oldest_segment_loses_nothing_but_the_fallback() {
    let fx = fixture();
    let dir = fx.materialize();
    std::fs::remove_file(dir.path().join(&fx.segments[0])).expect("delete");
    // The manifest still lists the segment as live: strict open refuses, naming it.
    let segment = dir.path().join(&fx.segments[0]).display().to_string();
    let message = open_once(dir.path()).refusal(fx, "oldest segment deleted");
    assert!(message.contains(&segment), "{message}");
    fx.restore(dir.path());

    // Damaging the newest checkpoint as well is refused too, never opened with a gap.
    std::fs::remove_file(dir.path().join(&fx.segments[0])).expect("delete");
    let newest = dir.path().join(fx.checkpoints.last().expect("checkpoints"));
    let mut bytes = std::fs::read(&newest).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&newest, bytes).expect("write");
    // Recovery falls back to the older checkpoint, whose replay needs the deleted
    // segment's frames: the WAL gap refuses the open.
    let message = open_once(dir.path()).refusal(fx, "oldest segment + newest checkpoint");
    assert!(message.contains("WAL gap: expected lsn"), "{message}");
}

/// Deleting the newest WAL segment must not silently drop acknowledged commits: the
/// manifest records every sealed segment once its successor exists, so the successor of
/// the newest recorded one is required at open, and its absence is refused as exactly
/// `SegmentMissing` naming it.
#[test]
fn deleting_the_newest_segment_is_detected() {
    let fx = fixture();
    let dir = fx.materialize();
    let newest = fx.segments.last().expect("segments");
    std::fs::remove_file(dir.path().join(newest)).expect("delete");
    let err = open_once(dir.path()).refusal_error(fx, "newest segment deleted");
    let deleted = dir.path().join(newest);
    assert!(
        matches!(
            &err,
            OpenError::Recovery(e)
                if matches!(&**e, StartError::SegmentMissing { path } if *path == deleted)
        ),
        "expected SegmentMissing({}), got {err:?}",
        deleted.display()
    );
}

#[test]
fn swapped_or_deleted_checkpoints_never_yield_wrong_data() {
    let fx = fixture();
    let dir = fx.materialize();
    let d = dir.path();
    let [older, newest] = &fx.checkpoints[..] else {
        panic!("two checkpoints")
    };
    // Swap A <-> B: both names now disagree with their headers.
    let parking = d.join("checkpoints").join("swap");
    std::fs::rename(d.join(older), &parking).expect("rename");
    std::fs::rename(d.join(newest), d.join(older)).expect("rename");
    std::fs::rename(&parking, d.join(newest)).expect("rename");
    let message = open_once(d).refusal(fx, "checkpoints swapped");
    for file in [older, newest] {
        let path = d.join(file).display().to_string();
        assert!(message.contains(&path), "names {path}: {message}");
    }
    assert!(message.contains("renamed"), "{message}");
    fx.restore(d);

    // The newest deleted: fall back; the older deleted: not needed; both: refused.
    std::fs::remove_file(d.join(newest)).expect("delete");
    let (state, fallbacks) = open_once(d).opened("newest checkpoint deleted");
    assert!(state == fx.reference, "{}", fx.judge(&state));
    assert_eq!(fallbacks, 1);
    fx.restore(d);
    std::fs::remove_file(d.join(older)).expect("delete");
    let (state, fallbacks) = open_once(d).opened("older checkpoint deleted");
    assert!(state == fx.reference, "{}", fx.judge(&state));
    assert_eq!(fallbacks, 0);
    fx.restore(d);
    std::fs::remove_file(d.join(older)).expect("delete");
    std::fs::remove_file(d.join(newest)).expect("delete");
    let message = open_once(d).refusal(fx, "both checkpoints deleted");
    for file in [older, newest] {
        let path = d.join(file).display().to_string();
        assert!(message.contains(&path), "names {path}: {message}");
    }
}

/// What truncating the manifest at `cut` must do, from the records that remain whole.
#[derive(Debug, PartialEq, Eq)]
enum TruncationOutcome {
    /// Refused; the message names this file.
    RefusedNaming(PathBuf),
    /// Refused with this message (which names no file: see the report).
    RefusedSaying(&'static str),
    /// Opened with exactly the reference state.
    OpenedEqual,
}

fn expected_after_truncation(
    fx: &Fixture,
    records: &[ManifestRecord],
    cut: usize,
) -> TruncationOutcome {
    if cut < MANIFEST_HEADER {
        return TruncationOutcome::RefusedNaming(PathBuf::from(MANIFEST));
    }
    let whole = records.iter().take_while(|r| r.start + r.len <= cut);
    let mut live = BTreeSet::new();
    let mut has_epoch = false;
    for r in whole {
        match r.kind {
            CHECKPOINT_ADDED => {
                live.insert(r.first_field);
            }
            CHECKPOINT_RETIRED => {
                live.remove(&r.first_field);
            }
            KEY_EPOCH_CHANGED => has_epoch = true,
            _ => {}
        }
    }
    if !has_epoch {
        return TruncationOutcome::RefusedSaying("the manifest records no key epoch");
    }
    match live.last() {
        // No checkpoint: replay from LSN 1, but the WAL starts later (segment 0 retired).
        None => TruncationOutcome::RefusedSaying("WAL gap: expected lsn 1"),
        Some(&lsn) if !fx.files.contains_key(&checkpoint_rel_path(lsn)) => {
            TruncationOutcome::RefusedNaming(checkpoint_rel_path(lsn))
        }
        // A rolled-back manifest whose newest checkpoint still exists: the WAL after it is
        // all there, so the state is complete.
        Some(_) => TruncationOutcome::OpenedEqual,
    }
}

#[test]
fn manifest_truncation_is_repaired_or_refused_never_wrong_data() {
    let fx = fixture();
    let dir = fx.materialize();
    let d = dir.path();
    let manifest = &fx.files[Path::new(MANIFEST)];
    let records = manifest_records(manifest);
    // Inside the header; at every record boundary; inside every record's length prefix,
    // body and MAC.
    let mut cuts = BTreeSet::from([0, 10, MANIFEST_HEADER - 1]);
    for r in &records {
        cuts.extend([
            r.start,
            r.start + 3,
            r.start + 8,
            r.start + r.len / 2,
            r.start + r.len - 1,
        ]);
    }
    cuts.remove(&manifest.len());
    let mut summary: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &cut in &cuts {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(d.join(MANIFEST))
            .expect("open manifest");
        file.set_len(cut as u64).expect("truncate");
        drop(file);
        let at_boundary = cut == MANIFEST_HEADER || records.iter().any(|r| r.start + r.len == cut);
        let expected = expected_after_truncation(fx, &records, cut);
        let what = format!("manifest truncated at byte {cut} (expecting {expected:?})");
        let observed = open_once(d);
        let label = match (&expected, observed) {
            (TruncationOutcome::RefusedNaming(file), observed) => {
                let message = observed.refusal(fx, &what);
                let path = d.join(file).display().to_string();
                assert!(message.contains(&path), "{what}: {message}");
                format!("refused naming {}", file.display())
            }
            (TruncationOutcome::RefusedSaying(text), observed) => {
                let message = observed.refusal(fx, &what);
                assert!(message.contains(text), "{what}: {message}");
                format!("refused: {text} (no file named)")
            }
            (TruncationOutcome::OpenedEqual, observed) => {
                match observed.opened_or_refused_naming(d, &what) {
                    Some((state, fallbacks)) => {
                        assert!(state == fx.reference, "{what}: {}", fx.judge(&state));
                        assert_eq!(fallbacks, 0, "{what}");
                        "opened equal".to_owned()
                    }
                    // The shorter chain still lists files that later records retired.
                    None => "refused naming a file the shorter chain lists".to_owned(),
                }
            }
        };
        // A cut inside a record is a torn tail: it is truncated away to the previous
        // record boundary (even when the open then fails).
        if cut >= MANIFEST_HEADER {
            let boundary = records
                .iter()
                .map(|r| r.start + r.len)
                .chain([MANIFEST_HEADER])
                .filter(|&end| end <= cut)
                .max()
                .expect("header");
            let now = std::fs::read(d.join(MANIFEST)).expect("read manifest");
            assert!(
                now.len() >= boundary && now[..boundary] == manifest[..boundary],
                "{what}: the torn record was cut to the boundary"
            );
            // An open that went on records what it routed around (the torn append cut,
            // checkpoint files the shorter chain never recorded) after the boundary, and
            // nothing else.
            if now.len() > boundary {
                let kept = records
                    .iter()
                    .filter(|r| r.start + r.len <= boundary)
                    .count();
                let listed = aedb::offline::inspect(d, &config()).expect("inspect");
                let extra: Vec<String> = listed.manifest.records[kept..]
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                assert!(
                    !extra.is_empty() && extra.iter().all(|r| r.starts_with("RecoveryEvent")),
                    "{what}: {extra:?}"
                );
                assert_eq!(
                    boundary != cut,
                    extra
                        .iter()
                        .any(|r| r.starts_with("RecoveryEvent { event: manifest_torn_tail")),
                    "{what}: {extra:?}"
                );
            }
            assert_eq!(at_boundary, boundary == cut, "{what}");
        }
        let kind = if at_boundary { "boundary" } else { "in-record" };
        summary
            .entry(format!("{label} [{kind}]"))
            .or_default()
            .push(cut);
        fx.restore(d);
    }
    println!(
        "manifest truncation ({} bytes, {} records):",
        manifest.len(),
        records.len()
    );
    for (label, cuts) in &summary {
        println!("  {label}: cuts at {cuts:?}");
    }
}

#[test]
fn an_old_manifest_copy_is_refused_when_it_lists_a_deleted_segment_and_opens_complete_otherwise() {
    let fx = fixture();
    // Right after checkpoint 2, replay the copy taken after checkpoint 1: a valid, older
    // chain (not detectable from the files, docs/FORMAT.md). Checkpoint 1 and the WAL after
    // it still exist, so the open replays from checkpoint 1 and the state is complete.
    let dir = scratch_dir();
    restore_files(&fx.after_second, dir.path());
    std::fs::write(dir.path().join(MANIFEST), &fx.manifest_after[0]).expect("roll back");
    // The older chain still lists WAL segment 0, which checkpoint 2 retired and deleted:
    // strict open refuses with exactly `SegmentMissing` naming it.
    let oldest = Path::new("wal").join(aedb_wal::segment_file_name(aedb_wal::SegmentSeq::new(0)));
    assert!(
        !fx.after_second.contains_key(&oldest),
        "checkpoint 2 deleted {}",
        oldest.display()
    );
    let err = open_once(dir.path()).refusal_error(
        fx,
        "manifest after checkpoint 2 rolled back to checkpoint 1",
    );
    let missing = dir.path().join(&oldest);
    assert!(
        matches!(
            &err,
            OpenError::Recovery(e)
                if matches!(&**e, StartError::SegmentMissing { path } if *path == missing)
        ),
        "expected SegmentMissing({}), got {err:?}",
        missing.display()
    );
    drop(dir);

    // Over the final directory:
    let dir = fx.materialize();
    let d = dir.path();
    // the copy taken after checkpoint 1 names only that checkpoint, which checkpoint 3
    // retired and deleted: refused, naming the file.
    std::fs::write(d.join(MANIFEST), &fx.manifest_after[0]).expect("roll back");
    let first = checkpoint_rel_path(fx.checkpoint_lsns[0].get());
    assert!(!fx.files.contains_key(&first), "checkpoint 1 was retired");
    let message = open_once(d).refusal(fx, "manifest rolled back to after checkpoint 1");
    assert!(
        message.contains(&d.join(&first).display().to_string()),
        "{message}"
    );
    fx.restore(d);

    // The copy taken after checkpoint 2 is a valid, older chain (not detectable from the
    // files, docs/FORMAT.md); checkpoint 2 and the WAL after it still exist, so the state
    // is complete — but the rollback un-retires checkpoint 1 and forgets checkpoint 3.
    // It opens, with exactly the reference state and no fallback.
    std::fs::write(d.join(MANIFEST), &fx.manifest_after[1]).expect("roll back");
    let (state, fallbacks) = open_once(d).opened("manifest rolled back to after checkpoint 2");
    assert!(state == fx.reference, "{}", fx.judge(&state));
    assert_eq!(fallbacks, 0);
}
