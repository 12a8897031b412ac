//! The tamper matrix: a small sealed LSM database (production profile, checkpoint key,
//! 64 KiB WAL segments) whose files are damaged one byte at a time, plus whole-file
//! attacks: deleted WAL segments, swapped, overwritten, deleted or stale run files, a
//! truncated manifest, rolled-back manifests.
//!
//! # The fixture
//!
//! Built once, deterministically (explicit checkpoints and compactions only; every commit
//! acknowledged `Durable`, one at a time, so each is one sealed batch, one WAL frame):
//!
//! 1. *Bulk*: the catalog, [`SEED_KEYS`] `seed-*` keys, then large values on four `bulk-*`
//!    keys until WAL segment 0 is sealed and segment 1 started, then those four keys are
//!    deleted and a few small commits made. `checkpoint_now()` writes all of it as run 1
//!    (≈60 KiB) and retires segment 0; `compact_now()` merges run 1 into run 2 at level 1,
//!    dropping every hidden version and tombstone (≈6 KiB left: the catalog, the seed and
//!    small keys, in two data blocks), and deletes run 1.
//! 2. *Small*: three rounds of [`ROUND`] small commits (puts, deletes, a numeric counter,
//!    idempotency keys), each followed by `checkpoint_now()`: level-0 runs 3, 4 and 5
//!    (≈1 KiB, one data block each; automatic compaction starts at four level-0 runs).
//! 3. *Tail*: large values on three `tail-*` keys until segment 3 exists (segments 1 and
//!    2 sealed), then [`TAIL`] small commits: the last segment holds only commits after
//!    the newest checkpoint, and its final frames are small.
//!
//! What stays: `MANIFEST` (11 records), four live run files (one level-1, three level-0)
//! and WAL segments 1 to 3; the oldest holds the frames right after the flushed LSN
//! (retirement deletes exactly the segments the runs cover). The run files are small on
//! purpose, so that **every byte of every run file is flipped**; the WAL holds few, large
//! frames, so that an open (it unseals every retained batch and replays every frame after
//! the flushed LSN) is cheap. The fixture also keeps copies of MANIFEST taken along the
//! way ([`Milestone`]) and the bytes of the compacted-away run 1.
//!
//! # The rules every trial checks
//!
//! An open is strict. It either **refuses with an error whose `Display` names the damaged
//! file** and then changes nothing on disk — in particular it removes no run file the
//! manifest does not list (that sweep runs only after a successful recovery) — or it
//! succeeds, and then every read of the recovered state (a full forward scan, `kv_len`,
//! `kv_get` of every key the fixture ever wrote and of one it never wrote, `idempotency`
//! of every idempotency key it used and of one it never used, `content_digest`, the
//! catalog and the LSN) either returns **exactly** what it returned before the damage, or
//! fails with error code `storage.unreadable`, naming the damaged file and the block, and
//! returns no data. There is no checkpoint fallback any more: `recovery_checkpoint_fallbacks`
//! must be 0 after every successful open, and `checkpoint_lsn` is the flushed LSN of the
//! manifest the open used.
//!
//! Per region of a byte flip (docs/FORMAT.md, "Run files" and "Recovery rules: torn tail
//! versus corruption"):
//!
//! * MANIFEST, sealed WAL segments, the last segment's header and every frame but its
//!   final one: refused, naming the file.
//! * a run file's header, index, filter and meta blocks, and footer: refused at open,
//!   naming the file, and not as a data-block failure: open authenticates all of them (and
//!   checks the run against its manifest record) but no data block. Where the data blocks
//!   end comes from the plaintext footer (`index_offset`); the regions tile the file.
//! * a run file's data blocks: detected **when the block is read**: either the open
//!   succeeds and some reads fail with `storage.unreadable` while every read that succeeds
//!   is exact ("refused-at-read"), or recovery itself reads the block (loading the catalog)
//!   and the open is refused naming the file. Both report the block (`data block <n> at
//!   byte <offset>`): the test checks that the flipped byte lies in the reported block,
//!   using the block starts the trials themselves report (every block's first byte is
//!   flipped and must report that block), that the blocks are numbered 0, 1, .. from byte
//!   104 on, and that refused-at-read does occur (data blocks are read lazily).
//! * the preallocated zero tail of the last segment: cut as a torn tail, nothing lost.
//! * the **final frame of the last segment**: indistinguishable from a torn write and cut,
//!   which drops that frame's commit although it was acknowledged `Durable`. The trial
//!   asserts every read is then exactly the state one commit earlier and that the cut is
//!   reported; the summary counts these ("cut-acked").
//!
//! Anything else fails the test: an open or a read that returns a value that differs, a
//! key missing or extra, another LSN; a read error of another code or not naming the
//! damaged file; a refusal that changed a file; a flip nothing detects.
//!
//! `ReadSnapshot::idempotency_len()` is among the reads: it scans, and over an
//! unreadable block it fails like every other read.
//!
//! # Whole-file attacks
//!
//! * A WAL segment deleted (newest, middle or oldest): `SegmentMissing` naming it, from
//!   the check that every recorded segment is present, which strict recovery runs before
//!   it opens runs or replays anything.
//! * Run files swapped (every pair), one overwritten with another, deleted (each, all):
//!   refused, naming the (lowest-id) affected run; nothing on disk changes. Run files the
//!   manifest does not list (the compacted-away run put back, a copy under an unused id)
//!   are never read and are removed once the open succeeded, each with a `file_skipped`
//!   recovery event.
//! * MANIFEST truncated (in the header, at every record boundary, inside every record) or
//!   replaced by an older copy: the outcome is computed from the records that remain,
//!   following recovery's order (every recorded segment and the successor of the newest,
//!   the key epoch, every listed run, the WAL from the flushed LSN on): refused naming
//!   the missing file or as a WAL gap (a lost version edit whose WAL was retired), with
//!   nothing but the manifest's torn tail touched; or opened with exactly the reference
//!   state (the WAL after an older flushed LSN still holds everything) and the runs the
//!   shorter chain does not list removed. Never wrong data.
//!
//! # Sampling
//!
//! Files up to [`FULL_FLIP_LIMIT`] bytes (the MANIFEST and every run file; the fixture
//! asserts this for run files) have every byte flipped. WAL segments (64 KiB) are sampled:
//! every header byte, every N-th byte (N = [`DEFAULT_STRIDE`] = 1361, env
//! `AEDB_TAMPER_STRIDE`), and in every segment its last frame (the trailer of a sealed
//! segment; the newest commit of the last one) as 16 header bytes + CRC + every 4th byte;
//! in the last segment also the frame before the final one (same pattern) and the first
//! 16 bytes of the zero tail. That is ≈11 150 trials: 1372 for the MANIFEST, ≈9300 for the
//! run files, ≈480 for the WAL; the printed summary gives the exact count per file and per
//! region and verdict. `LOCK` holds only the owner's pid and is not part of the matrix.
//! Trials run on two threads, each on its own copy of the fixture (on tmpfs when
//! available), restored byte for byte after every trial.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aedb::{
    AedbConfig, AedbInstance, Direction, Finality, IdempotencyKey, IdempotencyRecord, KvEntry,
    KvKey, KvValue, Lsn, Namespace, Numeric, OpenError, ProjectName, ReadSnapshot, ScopeName,
    StartError, Transaction,
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
const MANIFEST_HEADER: usize = 64;
/// docs/FORMAT.md, "Run files": header and footer sizes.
const RUN_HEADER: usize = 104;
const RUN_FOOTER: usize = 48;
/// Small commits at the end of the bulk phase (they survive its compaction).
const BULK_SMALL: u64 = 12;
/// Small commits before each of the three level-0 checkpoints.
const ROUND: u64 = 12;
/// Small commits at the very end (the last segment's final frames).
const TAIL: u64 = 20;
/// Distinct small keys (`key-000` ..).
const KEYS: u64 = 24;
/// Keys that get large values: in the bulk phase (deleted before its checkpoint), and
/// in the WAL tail.
const BULK_KEYS: u64 = 4;
const TAIL_KEYS: u64 = 3;
const LARGE_VALUE: usize = 3000;
/// Keys written once in the bulk phase with medium values: they survive its compaction
/// and give the compacted run two data blocks (blocks close at 4 KiB of plaintext).
const SEED_KEYS: u64 = 56;

fn config() -> AedbConfig {
    AedbConfig::production(MANIFEST_KEY)
        .checkpoint_on_shutdown(false)
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

fn small_key(k: u64) -> String {
    format!("key-{k:03}")
}

fn kv_key(name: &str) -> KvKey {
    KvKey::new(name).expect("key")
}

fn idempotency_name(i: u64) -> String {
    format!("idem-{i}")
}

/// Small commit `i`: puts (some overwriting), deletes of a key put three commits
/// earlier, a numeric counter, and an idempotency key on every tenth commit.
fn tx(i: u64) -> Transaction {
    let ns = ns();
    let t = match i % 7 {
        3 => Transaction::new().kv_delete(&ns, kv_key(&small_key((i - 3) % KEYS))),
        5 => Transaction::new().kv_add(&ns, kv_key("counter"), Numeric::U64(i)),
        _ => Transaction::new().kv_put(
            &ns,
            kv_key(&small_key(i % KEYS)),
            KvValue::new(format!("value-{i:06}")).expect("value"),
        ),
    };
    if i.is_multiple_of(10) {
        t.idempotency_key(IdempotencyKey::new(idempotency_name(i)).expect("idem"))
    } else {
        t
    }
}

fn seed_key(k: u64) -> String {
    format!("seed-{k:02}")
}

/// The commit writing seed key `k`.
fn seed_put(k: u64) -> Transaction {
    let value = format!("seed-value-{k:02}-").repeat(4);
    Transaction::new().kv_put(
        &ns(),
        kv_key(&seed_key(k)),
        KvValue::new(value).expect("value"),
    )
}

/// A commit with a large value on `key`.
fn large_put(i: u64, key: &str) -> Transaction {
    let value = format!("{i:06}-").repeat(LARGE_VALUE / 7);
    Transaction::new().kv_put(&ns(), kv_key(key), KvValue::new(value).expect("value"))
}

/// Every key the fixture ever wrote, and one it never wrote.
fn probe_keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..KEYS).map(small_key).collect();
    keys.extend((0..SEED_KEYS).map(seed_key));
    keys.extend((0..BULK_KEYS).map(|k| format!("bulk-{k}")));
    keys.extend((0..TAIL_KEYS).map(|k| format!("tail-{k}")));
    keys.push("counter".into());
    keys.push("never-written".into());
    keys
}

/// Every idempotency key the fixture used (commits up to `last`), and one it never used.
fn probe_idempotency_keys(last: u64) -> Vec<String> {
    let mut keys: Vec<String> = (1..=last)
        .filter(|i| i.is_multiple_of(10))
        .map(idempotency_name)
        .collect();
    keys.push("idem-never".into());
    keys
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

/// The LSN of a segment's first frame (a sealed batch's frame LSN is its last LSN; one
/// commit per batch here).
fn first_frame_lsn(segment: &[u8]) -> u64 {
    u64::from_le_bytes(
        segment[WAL_HEADER + 4..WAL_HEADER + 12]
            .try_into()
            .expect("8 bytes"),
    )
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u16_at(bytes: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes(
        bytes[at..at + 2].try_into().expect("2 bytes"),
    ))
}

/// What one manifest record does to the state the truncation test folds.
#[derive(Debug)]
enum RecordEffect {
    KeyEpoch,
    SegmentSealed(u64),
    SegmentRetired(u64),
    /// `VersionEdit` (kind 12): flushed LSN, run ids added, run ids removed.
    VersionEdit {
        flushed_lsn: u64,
        added: Vec<u64>,
        removed: Vec<u64>,
    },
    Other,
}

/// One manifest record (docs/FORMAT.md: u32 body_len, u32 len_check, body, 32-byte MAC).
struct ManifestRecord {
    start: usize,
    len: usize,
    effect: RecordEffect,
}

const SEGMENT_SEALED: u8 = 3;
const SEGMENT_RETIRED: u8 = 4;
const KEY_EPOCH_CHANGED: u8 = 6;
const VERSION_EDIT: u8 = 12;

/// Decodes the body of a `VersionEdit` (docs/FORMAT.md, "Version edits (kind 12)").
fn version_edit(body: &[u8]) -> RecordEffect {
    let flushed_lsn = u64_at(body, 1);
    let mut at = 17;
    let added_count = u16_at(body, at);
    at += 2;
    let mut added = Vec::new();
    for _ in 0..added_count {
        added.push(u64_at(body, at));
        // file_id, level, epoch, min_lsn, max_lsn, entries, len, sha256
        at += 8 + 1 + 4 + 8 + 8 + 8 + 8 + 32;
        for _ in 0..2 {
            at += 2 + u16_at(body, at);
        }
    }
    let removed_count = u16_at(body, at);
    at += 2;
    let removed = (0..removed_count)
        .map(|k| u64_at(body, at + 8 * k))
        .collect();
    // An optional trailing retention floor (a compaction's edit).
    let end = at + 8 * removed_count;
    assert!(
        body.len() == end || body.len() == end + 8,
        "a version edit parses"
    );
    RecordEffect::VersionEdit {
        flushed_lsn,
        added,
        removed,
    }
}

fn manifest_records(bytes: &[u8]) -> Vec<ManifestRecord> {
    let mut out = Vec::new();
    let mut at = MANIFEST_HEADER;
    while at + 8 <= bytes.len() {
        let n = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let body = &bytes[at + 8..at + 8 + n];
        let effect = match body[0] {
            KEY_EPOCH_CHANGED => RecordEffect::KeyEpoch,
            SEGMENT_SEALED => RecordEffect::SegmentSealed(u64_at(body, 1)),
            SEGMENT_RETIRED => RecordEffect::SegmentRetired(u64_at(body, 1)),
            VERSION_EDIT => version_edit(body),
            _ => RecordEffect::Other,
        };
        out.push(ManifestRecord {
            start: at,
            len: 8 + n + 32,
            effect,
        });
        at += 8 + n + 32;
    }
    assert_eq!(at, bytes.len(), "the manifest parses exactly");
    out
}

fn run_rel_path(file_id: u64) -> PathBuf {
    Path::new("checkpoints").join(format!("run-{file_id:020}.ckpt"))
}

fn segment_rel_path(seq: u64) -> PathBuf {
    Path::new("wal").join(aedb_wal::segment_file_name(aedb_wal::SegmentSeq::new(seq)))
}

/// Where a run file's data blocks are: `[RUN_HEADER, index_offset)`, `index_offset`
/// from the (plaintext, CRC-checked) footer; the index, filter and meta blocks follow
/// up to the footer (docs/FORMAT.md, "Layout").
fn run_data_end(bytes: &[u8]) -> usize {
    let footer = &bytes[bytes.len() - RUN_FOOTER..];
    assert_eq!(&footer[36..44], b"AEDBRUN\0", "a run footer");
    let index_offset = usize::try_from(u64_at(footer, 0)).expect("offset");
    assert!(
        (RUN_HEADER < index_offset) && (index_offset < bytes.len() - RUN_FOOTER),
        "the footer locates the data blocks"
    );
    index_offset
}

/// Where a run file's meta block starts (after the data, index and filter blocks).
fn run_meta_start(bytes: &[u8]) -> usize {
    let footer = &bytes[bytes.len() - RUN_FOOTER..];
    usize::try_from(u64_at(footer, 24)).expect("offset")
}

/// Every read the trials compare, of one recovered state. A failed read keeps its error
/// code and message (it returned no data).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Reads {
    lsn: Lsn,
    projects: Vec<ProjectName>,
    scopes: Vec<Result<Vec<ScopeName>, ReadFailure>>,
    scan: Result<Vec<(KvKey, KvEntry)>, ReadFailure>,
    len: Result<usize, ReadFailure>,
    idempotency_len: Result<usize, ReadFailure>,
    gets: Vec<(String, Result<Option<KvEntry>, ReadFailure>)>,
    idempotency: Vec<(String, Result<Option<IdempotencyRecord>, ReadFailure>)>,
    digest: Result<[u8; 32], ReadFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ReadFailure {
    code: &'static str,
    message: String,
}

fn failure(e: aedb::Error) -> ReadFailure {
    ReadFailure {
        code: e.code(),
        message: e.to_string(),
    }
}

/// Every read the trials compare.
fn read_all(state: &ReadSnapshot, idempotency_last: u64) -> Reads {
    let ns = ns();
    let projects = state.projects();
    let scopes = projects
        .iter()
        .map(|p| state.scopes(p).map_err(failure))
        .collect();
    Reads {
        lsn: state.lsn(),
        scopes,
        projects,
        scan: state
            .kv_scan_prefix(&ns, b"", Direction::Forward, usize::MAX)
            .map(|page| {
                assert!(!page.has_more, "one page holds everything");
                page.items
            })
            .map_err(failure),
        len: state.kv_len(&ns).map_err(failure),
        idempotency_len: state.idempotency_len().map_err(failure),
        gets: probe_keys()
            .into_iter()
            .map(|k| {
                let got = state.kv_get(&ns, k.as_bytes()).map_err(failure);
                (k, got)
            })
            .collect(),
        idempotency: probe_idempotency_keys(idempotency_last)
            .into_iter()
            .map(|k| {
                let got = state.idempotency(k.as_bytes()).map_err(failure);
                (k, got)
            })
            .collect(),
        digest: state.content_digest().map_err(failure),
    }
}

/// How a state's reads compare with the expected ones: the reads that failed, and the
/// reads that returned something else (wrong data).
#[derive(Debug, Default)]
struct Comparison {
    failed: Vec<(String, ReadFailure)>,
    differ: Vec<String>,
}

fn compare(got: &Reads, want: &Reads) -> Comparison {
    fn one<T: PartialEq + std::fmt::Debug>(
        c: &mut Comparison,
        what: String,
        got: &Result<T, ReadFailure>,
        want: &Result<T, ReadFailure>,
    ) {
        let want = want.as_ref().expect("the reference reads cleanly");
        match got {
            Err(e) => c.failed.push((what, e.clone())),
            Ok(v) if v == want => {}
            Ok(v) => c.differ.push(format!("{what}: got {v:?}, want {want:?}")),
        }
    }
    let mut c = Comparison::default();
    if got.lsn != want.lsn {
        c.differ
            .push(format!("lsn: got {}, want {}", got.lsn, want.lsn));
    }
    if got.projects != want.projects || got.scopes.len() != want.scopes.len() {
        c.differ.push(format!(
            "projects: got {:?}, want {:?}",
            got.projects, want.projects
        ));
    } else {
        for (i, (g, w)) in got.scopes.iter().zip(&want.scopes).enumerate() {
            one(&mut c, format!("scopes of project {i}"), g, w);
        }
    }
    one(&mut c, "full scan".into(), &got.scan, &want.scan);
    one(
        &mut c,
        "idempotency_len".into(),
        &got.idempotency_len,
        &want.idempotency_len,
    );
    one(&mut c, "kv_len".into(), &got.len, &want.len);
    assert_eq!(got.gets.len(), want.gets.len());
    for ((k, g), (_, w)) in got.gets.iter().zip(&want.gets) {
        one(&mut c, format!("kv_get({k})"), g, w);
    }
    assert_eq!(got.idempotency.len(), want.idempotency.len());
    for ((k, g), (_, w)) in got.idempotency.iter().zip(&want.idempotency) {
        one(&mut c, format!("idempotency({k})"), g, w);
    }
    one(&mut c, "content_digest".into(), &got.digest, &want.digest);
    c
}

/// The database every test damages, kept in memory and materialized per test.
struct Fixture {
    files: BTreeMap<PathBuf, Vec<u8>>,
    /// The last commit's number (for the idempotency keys to probe).
    last_commit: u64,
    /// Every read of the state before tampering (every commit was acknowledged
    /// `Durable`).
    reference: Reads,
    /// The same reads one commit earlier (what a cut of the last frame leaves).
    before_last: Reads,
    /// The state after every commit of the small and tail phases, by LSN (for
    /// diagnostics: states are persistent maps, clones are cheap).
    history: BTreeMap<Lsn, ReadSnapshot>,
    /// Live run files, by file id.
    runs: BTreeMap<u64, PathBuf>,
    /// The run the bulk checkpoint wrote and the compaction deleted: its id and bytes.
    compacted_away: (u64, Vec<u8>),
    /// WAL segments, oldest first.
    segments: Vec<PathBuf>,
    /// The flushed LSN of the manifest (the newest checkpoint's).
    flushed_lsn: Lsn,
    /// Copies of MANIFEST taken at the milestones of [`Milestone`].
    manifests: BTreeMap<Milestone, Vec<u8>>,
}

/// When the fixture copied the MANIFEST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Milestone {
    /// Segment 0 sealed, no checkpoint yet.
    BeforeFirstCheckpoint,
    /// After the bulk checkpoint (run 1, segment 0 retired).
    AfterBulkCheckpoint,
    /// After the compaction (run 1 replaced by run 2).
    AfterCompaction,
    /// After each level-0 checkpoint (runs 3, 4, 5).
    AfterCheckpoint(u64),
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

/// Skips commit numbers so that the next small commit is number `7k` (a put): a delete
/// (`7k + 3`) then always deletes the key put three commits earlier.
fn align(i: &mut u64) {
    while !(*i + 1).is_multiple_of(7) {
        *i += 1;
    }
}

/// Commits `t` durably; returns its LSN.
fn commit(db: &AedbInstance, t: Transaction) -> Lsn {
    db.commit_with(t, Finality::Durable)
        .expect("durable commit")
        .lsn
}

/// Commits `t` durably and records the state after it in `history`.
fn commit_recorded(db: &AedbInstance, t: Transaction, history: &mut BTreeMap<Lsn, ReadSnapshot>) {
    let lsn = commit(db, t);
    let state = db.snapshot().expect("snapshot");
    assert_eq!(state.lsn(), lsn, "one commit at a time");
    history.insert(lsn, state);
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

/// A copy of the MANIFEST once it is quiet (the WAL writer records sealed segments
/// asynchronously): two reads 20 ms apart agree.
fn manifest_copy(dir: &Path) -> Vec<u8> {
    let read = || std::fs::read(dir.join(MANIFEST)).expect("manifest");
    let mut copy = read();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let again = read();
        if again == copy {
            manifest_records(&copy);
            return copy;
        }
        copy = again;
    }
}

fn build_fixture() -> Fixture {
    let dir = scratch_dir();
    let d = dir.path();
    let db = AedbInstance::open(d, config()).expect("open fixture");
    db.create_project("tamper").expect("project");
    db.create_scope("tamper", "main").expect("scope");
    let mut manifests = BTreeMap::new();
    let mut i = 0u64;

    for k in 0..SEED_KEYS {
        commit(&db, seed_put(k));
    }
    // Bulk: large values until segment 0 is sealed (and recorded), overwritten, then
    // deleted; a few small keys; checkpoint (run 1, retiring segment 0); compaction.
    while newest_segment_seq(d) < 1 {
        i += 1;
        commit(&db, large_put(i, &format!("bulk-{}", i % BULK_KEYS)));
    }
    for k in 0..BULK_KEYS {
        i += 1;
        commit(
            &db,
            Transaction::new().kv_delete(&ns(), kv_key(&format!("bulk-{k}"))),
        );
    }
    manifests.insert(Milestone::BeforeFirstCheckpoint, manifest_copy(d));
    align(&mut i);
    for _ in 0..BULK_SMALL {
        i += 1;
        commit(&db, tx(i));
    }
    let bulk = db.checkpoint_now().expect("bulk checkpoint");
    let bulk_run = bulk.path.clone().expect("a run file");
    let bulk_bytes = std::fs::read(&bulk_run).expect("read the bulk run");
    assert_eq!(bulk.retired_segments, 1, "{bulk:?}");
    manifests.insert(Milestone::AfterBulkCheckpoint, manifest_copy(d));
    let compaction = db.compact_now().expect("compaction");
    assert!(
        compaction.compactions == 1 && compaction.dropped_tombstones > 0,
        "{compaction:?}"
    );
    // The replaced run is deleted once no snapshot reads it (the compactor's next tick).
    let deadline = Instant::now() + Duration::from_secs(30);
    while bulk_run.exists() {
        assert!(
            Instant::now() < deadline,
            "the compacted run was not deleted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    manifests.insert(Milestone::AfterCompaction, manifest_copy(d));

    // Small: three level-0 runs.
    let mut history = BTreeMap::new();
    let mut flushed_lsn = Lsn::ZERO;
    for round in 0..3 {
        for _ in 0..ROUND {
            i += 1;
            commit_recorded(&db, tx(i), &mut history);
        }
        let report = db.checkpoint_now().expect("checkpoint");
        assert!(report.path.is_some(), "{report:?}");
        flushed_lsn = report.lsn;
        manifests.insert(Milestone::AfterCheckpoint(round), manifest_copy(d));
    }

    // Tail: large values until segment 3 exists, then small commits.
    while newest_segment_seq(d) < 3 {
        i += 1;
        commit_recorded(
            &db,
            large_put(i, &format!("tail-{}", i % TAIL_KEYS)),
            &mut history,
        );
    }
    align(&mut i);
    for _ in 0..TAIL {
        i += 1;
        commit_recorded(&db, tx(i), &mut history);
    }
    let snapshot = db.snapshot().expect("snapshot");
    let reference = read_all(&snapshot, i);
    let before_last = read_all(
        history
            .range(..snapshot.lsn())
            .next_back()
            .expect("earlier states")
            .1,
        i,
    );
    let metrics = db.operational_metrics();
    assert_eq!(metrics.checkpoint_lsn, flushed_lsn.get());
    db.shutdown().expect("shutdown");

    let files = all_files(d);
    let segments = files_with_ext(&files, "wal");
    let runs: BTreeMap<u64, PathBuf> = files_with_ext(&files, "ckpt")
        .into_iter()
        .map(|p| {
            let id = p
                .file_name()
                .and_then(|n| n.to_str()?.strip_prefix("run-")?.strip_suffix(".ckpt"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{} is a run file", p.display()));
            (id, p)
        })
        .collect();
    let compacted_away = (1, bulk_bytes);
    assert_eq!(
        runs.keys().copied().collect::<Vec<_>>(),
        [2, 3, 4, 5],
        "one compacted run and three level-0 runs: {runs:?}"
    );
    assert_eq!(bulk_run, d.join(run_rel_path(compacted_away.0)));
    for run in runs.values() {
        let len = files[run].len();
        assert!(
            len <= FULL_FLIP_LIMIT,
            "{} ({len} bytes) is small enough to flip every byte",
            run.display()
        );
        run_data_end(&files[run]);
    }
    assert_eq!(
        segments,
        (1..=3).map(segment_rel_path).collect::<Vec<_>>(),
        "segment 0 retired, 1 to 3 kept"
    );
    let last_segment = &files[segments.last().expect("segments")];
    assert!(
        reference.lsn > flushed_lsn,
        "a WAL tail follows the newest checkpoint"
    );
    assert!(
        first_frame_lsn(last_segment) > flushed_lsn.get(),
        "the last segment holds only commits after the newest checkpoint"
    );
    assert!(
        first_frame_lsn(&files[&segments[0]]) <= flushed_lsn.get(),
        "the oldest segment holds commits the runs cover"
    );
    // Sanity: the fixture reopens to exactly the reference, and changes nothing.
    let db = AedbInstance::open(d, config()).expect("reopen fixture");
    assert!(read_all(&db.snapshot().expect("snapshot"), i) == reference);
    let metrics = db.operational_metrics();
    assert_eq!(metrics.checkpoint_lsn, flushed_lsn.get());
    assert_eq!(metrics.recovery_checkpoint_fallbacks, 0);
    db.shutdown().expect("shutdown");
    assert!(all_files(d) == files, "a clean open changes no file");
    Fixture {
        files,
        last_commit: i,
        reference,
        before_last,
        history,
        runs,
        compacted_away,
        segments,
        flushed_lsn,
        manifests,
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

    /// Panics unless `dir` holds exactly the fixture's files except those in `except`.
    fn assert_unchanged_except(&self, dir: &Path, except: &[&Path], what: &str) {
        let now = all_files(dir);
        let names: BTreeSet<&PathBuf> = now.keys().chain(self.files.keys()).collect();
        for name in names {
            if except.contains(&name.as_path()) {
                continue;
            }
            assert!(
                now.get(name) == self.files.get(name),
                "{what}: {} was {}",
                name.display(),
                match (now.get(name), self.files.get(name)) {
                    (None, _) => "removed",
                    (_, None) => "created",
                    _ => "modified",
                }
            );
        }
    }

    /// How a recovered state relates to the fixture's history (for failure messages).
    fn judge(&self, state: &ReadSnapshot) -> String {
        if read_all(state, self.last_commit) == self.reference {
            "equal to the reference".into()
        } else if self.history.get(&state.lsn()) == Some(state) {
            format!(
                "an exact earlier state: {} acknowledged commits missing",
                self.reference.lsn.get() - state.lsn().get()
            )
        } else {
            "WRONG DATA: equal to no state the database had since the compaction".into()
        }
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
        /// Every read of the recovered state, taken before shutdown.
        reads: Box<Reads>,
        /// The state itself (for diagnostics).
        state: ReadSnapshot,
        /// The flushed LSN recovery started from (`checkpoint_lsn`).
        checkpoint_lsn: u64,
        /// The torn tail recovery cut: file and offset.
        torn_tail: Option<(PathBuf, u64)>,
    },
}

fn open_once(dir: &Path) -> Observed {
    let fx = fixture();
    match AedbInstance::open(dir, config()) {
        Err(aedb::Error::Open(e)) => Observed::Refused(e),
        Err(other) => panic!("an open fails with an Open error, got {other:?}"),
        Ok(db) => {
            let state = db.snapshot().expect("snapshot");
            let reads = Box::new(read_all(&state, fx.last_commit));
            let metrics = db.operational_metrics();
            assert_eq!(
                metrics.recovery_checkpoint_fallbacks, 0,
                "there is no checkpoint fallback any more"
            );
            let torn_tail = db
                .recovery_report()
                .torn_tail
                .as_ref()
                .map(|cut| (cut.path.clone(), cut.offset));
            db.shutdown().expect("shutdown");
            Observed::Opened {
                reads,
                state,
                checkpoint_lsn: metrics.checkpoint_lsn,
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

    /// Panics (with `what`) unless the open succeeded and every read is exactly the
    /// reference; returns the flushed LSN it recovered from.
    fn opened_equal(self, fx: &Fixture, what: &str) -> u64 {
        match self {
            Observed::Refused(err) => panic!("{what}: expected an open, got: {err}"),
            Observed::Opened {
                reads,
                state,
                checkpoint_lsn,
                ..
            } => {
                let c = compare(&reads, &fx.reference);
                assert!(
                    c.failed.is_empty() && c.differ.is_empty(),
                    "{what}: {c:?} ({})",
                    fx.judge(&state)
                );
                checkpoint_lsn
            }
        }
    }
}

/// Where in which file a byte was flipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Region {
    Manifest,
    /// A run file's 104-byte header.
    RunHeader,
    /// A run file's data blocks.
    RunDataBlock,
    /// A run file's index and filter blocks (its tables, read lazily like data blocks).
    RunTables,
    /// A run file's meta block (read at open).
    RunMeta,
    /// A run file's 48-byte footer.
    RunFooter,
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
            Region::RunHeader => "run: header",
            Region::RunDataBlock => "run: data blocks",
            Region::RunTables => "run: index+filter",
            Region::RunMeta => "run: meta",
            Region::RunFooter => "run: footer",
            Region::SealedSegment => "WAL segment (sealed)",
            Region::LastSegmentBody => "WAL last seg: header+frames",
            Region::LastSegmentFinalFrame => "WAL last seg: final frame",
            Region::LastSegmentZeroTail => "WAL last seg: zero tail",
        }
    }

    /// The acceptable outcomes of a flip here.
    fn expected(self) -> &'static [Verdict] {
        match self {
            Region::Manifest
            | Region::RunHeader
            | Region::RunMeta
            | Region::RunFooter
            | Region::SealedSegment
            | Region::LastSegmentBody => &[Verdict::Refused],
            // Detected when the block is read: by a read after the open, or by recovery
            // itself (the catalog, a replayed numeric add).
            Region::RunDataBlock | Region::RunTables => &[Verdict::RefusedAtRead, Verdict::Refused],
            // docs/FORMAT.md: damage at the very end of the last segment is
            // indistinguishable from a torn write and is cut as one.
            Region::LastSegmentFinalFrame => &[Verdict::CutAcknowledgedCommit],
            Region::LastSegmentZeroTail => &[Verdict::SucceededEqual],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// The open was refused, naming the file.
    Refused,
    /// The open succeeded; some reads failed with `storage.unreadable` naming the file,
    /// every other read was exact.
    RefusedAtRead,
    /// The open succeeded and every read was exact.
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

/// What one trial observed.
struct Outcome {
    verdict: Verdict,
    /// For a data-block, index or filter flip: the block the error reported (ordinal,
    /// offset).
    block: Option<(u64, u64)>,
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
    for run in fx.runs.values() {
        let bytes = &fx.files[run];
        let data_end = run_data_end(bytes);
        let meta_start = run_meta_start(bytes);
        let footer = bytes.len() - RUN_FOOTER;
        // Every byte (the fixture asserts run files are small).
        for offset in 0..bytes.len() {
            let region = if offset < RUN_HEADER {
                Region::RunHeader
            } else if offset < data_end {
                Region::RunDataBlock
            } else if offset < meta_start {
                Region::RunTables
            } else if offset < footer {
                Region::RunMeta
            } else {
                Region::RunFooter
            };
            trials.push(Trial {
                file: run.clone(),
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

/// The block a run-file error message reports, if any: its kind (`data`, `index`,
/// `filter`), ordinal and offset, from
/// `<path>: <kind> block <n> at byte <offset> failed authentication`.
fn reported_block<'m>(message: &'m str, path: &Path) -> Option<(&'m str, u64, u64)> {
    let prefix = format!("{}: ", path.display());
    let rest = &message[message.find(&prefix)? + prefix.len()..];
    let mut words = rest.split_whitespace();
    let kind = words.next()?;
    (words.next()? == "block").then_some(())?;
    let block = words.next()?.parse().ok()?;
    (words.next()? == "at" && words.next()? == "byte").then_some(())?;
    let offset = words.next()?.trim_end_matches(':').parse().ok()?;
    Some((kind, block, offset))
}

/// The kinds of block a flip in `region` may be reported in (none: not read lazily).
fn lazily_read_kinds(region: Region) -> &'static [&'static str] {
    match region {
        Region::RunDataBlock => &["data"],
        Region::RunTables => &["index", "filter"],
        _ => &[],
    }
}

/// Flips one byte, opens, reads everything, judges, restores. Panics unless the outcome
/// is one expected for the region (so in particular on wrong data, on an error that does
/// not name the file, and on a refusal that changed something on disk).
fn run_trial(fx: &Fixture, dir: &Path, trial: &Trial) -> Outcome {
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
    let kinds = lazily_read_kinds(trial.region);
    // A reported block is one of `kinds` and the same in every failure.
    let matches = |reported: Option<(&str, u64, u64)>, block: Option<(u64, u64)>| {
        reported.is_some_and(|(kind, ordinal, offset)| {
            kinds.contains(&kind) && block.is_none_or(|b| b == (ordinal, offset))
        })
    };
    let mut block = None;
    let verdict = match open_once(dir) {
        Observed::Refused(err) => {
            let message = err.to_string();
            assert!(
                message.contains(&path.display().to_string()),
                "{what}: the error does not name the damaged file: {message}"
            );
            let reported = reported_block(&message, &path);
            assert_eq!(
                reported.is_some(),
                !kinds.is_empty(),
                "{what}: a refusal for a lazily read block reports it, and only then: {message}"
            );
            if !kinds.is_empty() {
                assert!(matches(reported, None), "{what}: {message}");
            }
            block = reported.map(|(_, ordinal, offset)| (ordinal, offset));
            let mut tampered = fx.files[&trial.file].clone();
            tampered[trial.offset] = !original;
            assert!(
                std::fs::read(&path).expect("read back") == tampered,
                "{what}: the refused open modified the file ({message})"
            );
            Verdict::Refused
        }
        Observed::Opened {
            reads,
            state,
            checkpoint_lsn,
            torn_tail,
        } => {
            assert_eq!(checkpoint_lsn, fx.flushed_lsn.get(), "{what}");
            let cut = torn_tail.map(|(p, offset)| (p == path, offset));
            let c = compare(&reads, &fx.reference);
            if c.failed.is_empty() && c.differ.is_empty() {
                let expected_cut = trial.cut_at.map(|offset| (true, offset));
                assert_eq!(cut, expected_cut, "{what}: torn tail cut");
                Verdict::SucceededEqual
            } else if c.differ.is_empty() {
                // Detected at read: every failure is an unreadable block of this file
                // (the same one), and every read that succeeded was exact.
                assert_eq!(cut, None, "{what}");
                for (read, e) in &c.failed {
                    assert!(
                        e.code == "storage.unreadable"
                            && e.message.contains(&path.display().to_string()),
                        "{what}: {read} failed with {} ({}), not an unreadable block of the \
                         damaged file",
                        e.code,
                        e.message
                    );
                    let reported = reported_block(&e.message, &path);
                    assert!(matches(reported, block), "{what}: {read}: {}", e.message);
                    block = reported.map(|(_, ordinal, offset)| (ordinal, offset));
                }
                Verdict::RefusedAtRead
            } else {
                let short = compare(&reads, &fx.before_last);
                if short.failed.is_empty() && short.differ.is_empty() {
                    let expected_cut = trial.cut_at.map(|offset| (true, offset));
                    assert_eq!(cut, expected_cut, "{what}: torn tail cut");
                    Verdict::CutAcknowledgedCommit
                } else {
                    panic!(
                        "{what}: WRONG DATA: opened at lsn {}, reads that differ: {:#?}, \
                         reads that failed: {:#?} ({})",
                        reads.lsn,
                        c.differ,
                        c.failed,
                        fx.judge(&state)
                    );
                }
            }
        }
    };
    if let Some((_, offset)) = block {
        let bytes = &fx.files[&trial.file];
        let end = match trial.region {
            Region::RunDataBlock => run_data_end(bytes),
            _ => run_meta_start(bytes),
        };
        assert!(
            offset as usize <= trial.offset && trial.offset < end,
            "{what}: the reported block at byte {offset} cannot hold the flipped byte"
        );
    }
    let changed = fx.restore(dir);
    if matches!(verdict, Verdict::Refused | Verdict::RefusedAtRead) {
        assert_eq!(
            changed,
            vec![trial.file.clone()],
            "{what}: the open ({verdict:?}) changed other files"
        );
    }
    assert!(
        trial.region.expected().contains(&verdict),
        "{what}: unexpected outcome {verdict:?}"
    );
    Outcome { verdict, block }
}

#[test]
fn every_single_byte_flip_is_refused_or_recovered_exactly() {
    let fx = fixture();
    let trials = plan_trials(fx);
    let started = Instant::now();
    let results: Mutex<Vec<(usize, Outcome)>> = Mutex::new(Vec::new());
    let workers = workers();
    std::thread::scope(|s| {
        for w in 0..workers {
            let (trials, results) = (&trials, &results);
            s.spawn(move || {
                let dir = fx.materialize();
                for (i, trial) in trials.iter().enumerate().skip(w).step_by(workers) {
                    let outcome = run_trial(fx, dir.path(), trial);
                    results.lock().expect("results").push((i, outcome));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(i, _)| *i);
    assert_eq!(results.len(), trials.len(), "every trial ran");

    // Data-block attribution: the blocks the trials reported, per file, must tile the
    // data region (ordinals 0, 1, .. from byte 104 on), and every flip must have been
    // reported in the block that holds it.
    let mut blocks: BTreeMap<&Path, BTreeMap<u64, u64>> = BTreeMap::new();
    for (i, outcome) in &results {
        let trial = &trials[*i];
        if trial.region == Region::RunDataBlock {
            let (ordinal, offset) = outcome.block.unwrap_or_else(|| {
                panic!("{} byte {}: no block", trial.file.display(), trial.offset)
            });
            let previous = blocks
                .entry(&trial.file)
                .or_default()
                .insert(offset, ordinal);
            assert!(
                previous.is_none_or(|p| p == ordinal),
                "{}: two ordinals for the block at byte {offset}",
                trial.file.display()
            );
        }
    }
    assert_eq!(
        blocks.len(),
        fx.runs.len(),
        "every run has data-block trials"
    );
    for (file, starts) in &blocks {
        let ordinals: Vec<u64> = starts.values().copied().collect();
        assert_eq!(
            ordinals,
            (0..starts.len() as u64).collect::<Vec<_>>(),
            "{}: blocks {starts:?}",
            file.display()
        );
        assert_eq!(starts.keys().next(), Some(&(RUN_HEADER as u64)));
    }
    for (i, outcome) in &results {
        let trial = &trials[*i];
        if let (Region::RunTables, Some((ordinal, offset))) = (trial.region, outcome.block) {
            // The index block starts where the data ends, the filter where the footer says.
            let bytes = &fx.files[&trial.file];
            let footer = &bytes[bytes.len() - RUN_FOOTER..];
            let filter_start = u64_at(footer, 12);
            let holder = if (trial.offset as u64) < filter_start {
                run_data_end(bytes) as u64
            } else {
                filter_start
            };
            assert_eq!(
                (ordinal, offset),
                (0, holder),
                "{} byte {}: reported in the block at {offset}",
                trial.file.display(),
                trial.offset
            );
        }
        if let (Region::RunDataBlock, Some((_, offset))) = (trial.region, outcome.block) {
            let holder = blocks[trial.file.as_path()]
                .range(..=trial.offset as u64)
                .next_back()
                .map(|(&start, _)| start);
            assert_eq!(
                holder,
                Some(offset),
                "{} byte {}: reported in the block at {offset}",
                trial.file.display(),
                trial.offset
            );
        }
    }

    let mut table: BTreeMap<Region, BTreeMap<Verdict, u64>> = BTreeMap::new();
    for (i, outcome) in &results {
        *table
            .entry(trials[*i].region)
            .or_default()
            .entry(outcome.verdict)
            .or_default() += 1;
    }
    println!(
        "tamper matrix: {} single-byte flips (byte XOR 0xFF) in {:.1?} on {workers} thread(s). \
         MANIFEST and run files: every byte; WAL segments: header + every {}th byte + \
         extras (module docs).",
        trials.len(),
        started.elapsed(),
        stride()
    );
    for (name, bytes) in &fx.files {
        let n = trials.iter().filter(|t| t.file == *name).count();
        let detail = match blocks.get(name.as_path()) {
            Some(starts) => format!(
                "  data [{RUN_HEADER}, {}) in {} block(s) at {:?}",
                run_data_end(bytes),
                starts.len(),
                starts.keys().collect::<Vec<_>>()
            ),
            None => String::new(),
        };
        println!(
            "  {:<42} {:>6} bytes {:>5} trials{detail}",
            name.display(),
            bytes.len(),
            n
        );
    }
    println!(
        "  (run {} was compacted away: {} bytes, not part of the matrix)",
        fx.compacted_away.0,
        fx.compacted_away.1.len()
    );
    println!(
        "  {:<28} {:>6} {:>8} {:>15} {:>16} {:>10}",
        "region", "trials", "refused", "refused-at-read", "succeeded-equal", "cut-acked"
    );
    for (region, verdicts) in &table {
        let get = |v| verdicts.get(&v).copied().unwrap_or(0);
        println!(
            "  {:<28} {:>6} {:>8} {:>15} {:>16} {:>10}",
            region.kind(),
            verdicts.values().sum::<u64>(),
            get(Verdict::Refused),
            get(Verdict::RefusedAtRead),
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
        Region::RunHeader,
        Region::RunDataBlock,
        Region::RunTables,
        Region::RunMeta,
        Region::RunFooter,
        Region::SealedSegment,
        Region::LastSegmentBody,
        Region::LastSegmentFinalFrame,
        Region::LastSegmentZeroTail,
    ] {
        assert!(table.contains_key(&region), "no trial in {region:?}");
    }
    // Data blocks really are read lazily: damage the open does not read is found by
    // the reads after it.
    assert!(
        table[&Region::RunDataBlock].contains_key(&Verdict::RefusedAtRead),
        "no data-block flip was detected at read: {:?}",
        table[&Region::RunDataBlock]
    );
    // So are a run's index and filter (an open reads only its header, footer and meta).
    assert!(
        table[&Region::RunTables].contains_key(&Verdict::RefusedAtRead),
        "no index or filter flip was detected at read: {:?}",
        table[&Region::RunTables]
    );
}

// ------------------------------------------------------------------ whole-file attacks

/// How a refused open reports a WAL gap: recovery replays from the flushed LSN on, and
/// the first frame it finds is later. This message names no file.
fn wal_gap(expected: u64, found: u64) -> String {
    format!("WAL gap: expected lsn {expected} after the checkpoint, found {found}")
}

/// The manifest records every sealed segment: a deleted one is named before recovery
/// reads anything else.
#[test]
fn deleting_a_middle_segment_is_refused_naming_it() {
    let fx = fixture();
    let dir = fx.materialize();
    let d = dir.path();
    std::fs::remove_file(d.join(&fx.segments[1])).expect("delete");
    let message = open_once(d).refusal(fx, "middle segment deleted");
    let missing = d.join(&fx.segments[1]);
    assert!(
        message.contains(&missing.display().to_string()) && message.contains("is missing"),
        "{message}"
    );
    fx.assert_unchanged_except(d, &[&fx.segments[1]], "middle segment deleted");
}

/// Retirement deletes exactly the segments whose frames the runs cover, so the oldest
/// segment left always holds the first frames after the flushed LSN: deleting it loses
/// acknowledged commits, and the open must refuse — with the gap at exactly the flushed
/// LSN (the replay runs before the check that every recorded segment is present), or
/// naming the segment — and change nothing on disk.
#[test]
fn deleting_the_oldest_segment_is_refused() {
    let fx = fixture();
    let [oldest, next, ..] = &fx.segments[..] else {
        panic!("segments: {:?}", fx.segments)
    };
    let resume = fx.flushed_lsn.get() + 1;
    let next_first = first_frame_lsn(&fx.files[next]);
    assert!(
        first_frame_lsn(&fx.files[oldest]) <= resume && resume < next_first,
        "the oldest segment holds the frames right after the flushed LSN"
    );
    let dir = fx.materialize();
    let d = dir.path();
    std::fs::remove_file(d.join(oldest)).expect("delete");
    let err = open_once(d).refusal_error(fx, "oldest segment deleted");
    let message = err.to_string();
    let missing = d.join(oldest);
    let names_it = matches!(
        &err,
        OpenError::Recovery(e)
            if matches!(&**e, StartError::SegmentMissing { path } if *path == missing)
    );
    assert!(
        names_it || message.contains(&wal_gap(resume, next_first)),
        "expected SegmentMissing({}) or a WAL gap at lsn {resume}, got {err:?}",
        missing.display()
    );
    fx.assert_unchanged_except(d, &[oldest], "oldest segment deleted");
    fx.restore(d);

    // The newest run deleted as well: refused (naming the segment: recorded segments
    // are checked before runs are opened), and still nothing on disk changes; with the
    // segment back, naming the run.
    let (_, newest_run) = fx.runs.iter().next_back().expect("runs");
    std::fs::remove_file(d.join(oldest)).expect("delete");
    std::fs::remove_file(d.join(newest_run)).expect("delete");
    let message = open_once(d).refusal(fx, "oldest segment and newest run deleted");
    assert!(
        message.contains(&d.join(oldest).display().to_string()),
        "{message}"
    );
    fx.assert_unchanged_except(
        d,
        &[oldest, newest_run],
        "oldest segment and newest run deleted",
    );
    fx.restore(d);
    std::fs::remove_file(d.join(newest_run)).expect("delete");
    let message = open_once(d).refusal(fx, "newest run deleted");
    assert!(
        message.contains(&d.join(newest_run).display().to_string()),
        "{message}"
    );
    fx.assert_unchanged_except(d, &[newest_run], "newest run deleted");
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
    fx.assert_unchanged_except(dir.path(), &[newest], "newest segment deleted");
}

/// The `RecoveryEvent` records `dir`'s manifest holds after its first `kept` records.
fn events_after(dir: &Path, kept: usize) -> Vec<String> {
    let listed = aedb::offline::inspect(dir, &config()).expect("inspect");
    listed.manifest.records[kept..]
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn swapped_or_deleted_runs_never_yield_wrong_data() {
    let fx = fixture();
    let dir = fx.materialize();
    let d = dir.path();
    let runs: Vec<&PathBuf> = fx.runs.values().collect();
    let named = |run: &Path| d.join(run).display().to_string();
    // Every pair swapped (renamed onto each other): both names now disagree with the
    // file ids in their headers. Recovery opens runs by id, so the lower one is named.
    for (i, &first) in runs.iter().enumerate() {
        for &second in &runs[i + 1..] {
            let what = format!("{} and {} swapped", first.display(), second.display());
            let parking = d.join("checkpoints").join("swap");
            std::fs::rename(d.join(first), &parking).expect("rename");
            std::fs::rename(d.join(second), d.join(first)).expect("rename");
            std::fs::rename(&parking, d.join(second)).expect("rename");
            let message = open_once(d).refusal(fx, &what);
            assert!(
                message.contains(&named(first)) && message.contains("renamed"),
                "{what}: {message}"
            );
            // The refusal changed nothing: exactly the two files still differ.
            assert_eq!(fx.restore(d), vec![first.clone(), second.clone()], "{what}");
        }
    }
    // A run overwritten with a copy of another one: refused, naming it.
    for pair in runs.windows(2) {
        let (victim, source) = (pair[1], pair[0]);
        let what = format!("{} overwritten with {}", victim.display(), source.display());
        std::fs::write(d.join(victim), &fx.files[source]).expect("overwrite");
        let message = open_once(d).refusal(fx, &what);
        assert!(
            message.contains(&named(victim)) && message.contains("renamed"),
            "{what}: {message}"
        );
        assert_eq!(fx.restore(d), vec![victim.clone()], "{what}");
    }
    // Each run deleted, then all of them: refused, naming the (first) missing one, and
    // no file touched (unlisted runs are swept only after a successful recovery).
    for &run in &runs {
        let what = format!("{} deleted", run.display());
        std::fs::remove_file(d.join(run)).expect("delete");
        let message = open_once(d).refusal(fx, &what);
        assert!(message.contains(&named(run)), "{what}: {message}");
        fx.assert_unchanged_except(d, &[run], &what);
        fx.restore(d);
    }
    for &run in &runs {
        std::fs::remove_file(d.join(run)).expect("delete");
    }
    let message = open_once(d).refusal(fx, "every run deleted");
    assert!(message.contains(&named(runs[0])), "{message}");
    let all: Vec<&Path> = runs.iter().map(|p| p.as_path()).collect();
    fx.assert_unchanged_except(d, &all, "every run deleted");
    fx.restore(d);

    // Run files the manifest does not list are never read, and are removed once the
    // open succeeded: the run the compaction replaced (an authentic older file of this
    // database, put back) and a copy of a live run under an id never handed out.
    let (stale_id, stale_bytes) = &fx.compacted_away;
    let stale = run_rel_path(*stale_id);
    let foreign = run_rel_path(99);
    std::fs::write(d.join(&stale), stale_bytes).expect("put back");
    std::fs::write(d.join(&foreign), &fx.files[runs[runs.len() - 1]]).expect("copy");
    let kept = manifest_records(&fx.files[Path::new(MANIFEST)]).len();
    let flushed = open_once(d).opened_equal(fx, "unlisted run files present");
    assert_eq!(flushed, fx.flushed_lsn.get());
    assert!(!d.join(&stale).exists() && !d.join(&foreign).exists());
    let events = events_after(d, kept);
    assert_eq!(events.len(), 2, "{events:?}");
    for file in [&stale, &foreign] {
        assert!(
            events
                .iter()
                .any(|e| e.contains("file_skipped") && e.contains(&named(file))),
            "{}: {events:?}",
            file.display()
        );
    }
    assert_eq!(fx.restore(d), vec![PathBuf::from(MANIFEST)]);
}

/// The live state a prefix of the manifest's records describes (what recovery folds).
#[derive(Debug, Default)]
struct Folded {
    has_epoch: bool,
    runs: BTreeSet<u64>,
    flushed_lsn: u64,
    segments: BTreeSet<u64>,
}

fn fold<'a>(records: impl IntoIterator<Item = &'a ManifestRecord>) -> Folded {
    let mut f = Folded::default();
    for r in records {
        match &r.effect {
            RecordEffect::KeyEpoch => f.has_epoch = true,
            RecordEffect::SegmentSealed(seq) => {
                f.segments.insert(*seq);
            }
            RecordEffect::SegmentRetired(seq) => {
                f.segments.remove(seq);
            }
            RecordEffect::VersionEdit {
                flushed_lsn,
                added,
                removed,
            } => {
                // A compaction writes flushed_lsn = 0: the live value is the maximum.
                f.flushed_lsn = f.flushed_lsn.max(*flushed_lsn);
                f.runs.extend(added);
                for id in removed {
                    assert!(f.runs.remove(id), "removes a live run");
                }
            }
            RecordEffect::Other => {}
        }
    }
    f
}

/// What a strict open of the fixture's files under a manifest folding to `live` must
/// do, following recovery's order (actors/src/recovery.rs, `walk`).
#[derive(Debug, PartialEq, Eq)]
enum RecoveryOutcome {
    /// Refused; the message names this file.
    RefusedNaming(PathBuf),
    /// Refused with this message (which names no file: see the report).
    RefusedSaying(String),
    /// Opened with exactly the reference state, from this flushed LSN; the run files
    /// the manifest does not list are removed.
    OpenedEqual {
        flushed_lsn: u64,
        unlisted: Vec<PathBuf>,
    },
}

fn expected_recovery(fx: &Fixture, live: &Folded) -> RecoveryOutcome {
    // Before anything else (strict): every recorded segment, then the successor of the
    // newest one, must exist.
    for &seq in &live.segments {
        let segment = segment_rel_path(seq);
        if !fx.files.contains_key(&segment) {
            return RecoveryOutcome::RefusedNaming(segment);
        }
    }
    if let Some(&newest) = live.segments.last() {
        let successor = segment_rel_path(newest + 1);
        if !fx.files.contains_key(&successor) {
            return RecoveryOutcome::RefusedNaming(successor);
        }
    }
    if !live.has_epoch {
        return RecoveryOutcome::RefusedSaying("the manifest records no key epoch".into());
    }
    // Every listed run is opened and checked against its record, lowest id first.
    for &id in &live.runs {
        let run = run_rel_path(id);
        if !fx.files.contains_key(&run) {
            return RecoveryOutcome::RefusedNaming(run);
        }
    }
    // The WAL must continue the flushed LSN.
    let first = first_frame_lsn(&fx.files[&fx.segments[0]]);
    if live.flushed_lsn + 1 < first {
        return RecoveryOutcome::RefusedSaying(wal_gap(live.flushed_lsn + 1, first));
    }
    RecoveryOutcome::OpenedEqual {
        flushed_lsn: live.flushed_lsn,
        unlisted: fx
            .runs
            .iter()
            .filter(|(id, _)| !live.runs.contains(id))
            .map(|(_, run)| run.clone())
            .collect(),
    }
}

/// Opens `d` (whose MANIFEST was replaced or truncated), checks the outcome against
/// `expected` and what the open did to the other files: a refusal touches none of them,
/// a successful open removes exactly the unlisted runs. Returns a label for summaries.
fn check_recovery(fx: &Fixture, d: &Path, expected: &RecoveryOutcome, what: &str) -> String {
    let observed = open_once(d);
    let manifest = Path::new(MANIFEST);
    match expected {
        RecoveryOutcome::RefusedNaming(file) => {
            let message = observed.refusal(fx, what);
            let path = d.join(file).display().to_string();
            assert!(message.contains(&path), "{what}: {message}");
            fx.assert_unchanged_except(d, &[manifest], what);
            format!("refused naming {}", file.display())
        }
        RecoveryOutcome::RefusedSaying(text) => {
            let message = observed.refusal(fx, what);
            assert!(message.contains(text.as_str()), "{what}: {message}");
            fx.assert_unchanged_except(d, &[manifest], what);
            format!("refused: {text} (no file named)")
        }
        RecoveryOutcome::OpenedEqual {
            flushed_lsn,
            unlisted,
        } => {
            let flushed = observed.opened_equal(fx, what);
            assert_eq!(
                flushed, *flushed_lsn,
                "{what}: recovered from the flushed LSN"
            );
            let mut except: Vec<&Path> = unlisted.iter().map(PathBuf::as_path).collect();
            except.push(manifest);
            fx.assert_unchanged_except(d, &except, what);
            for run in unlisted {
                assert!(
                    !d.join(run).exists(),
                    "{what}: the unlisted {} was not removed",
                    run.display()
                );
            }
            format!(
                "opened equal from lsn {flushed}, {} unlisted runs removed",
                unlisted.len()
            )
        }
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
        let whole = records.iter().take_while(|r| r.start + r.len <= cut);
        let kept = whole.clone().count();
        let expected = if cut < MANIFEST_HEADER {
            RecoveryOutcome::RefusedNaming(PathBuf::from(MANIFEST))
        } else {
            expected_recovery(fx, &fold(whole))
        };
        let what = format!("manifest truncated at byte {cut} (expecting {expected:?})");
        let label = check_recovery(fx, d, &expected, &what);
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
            // An open records what it routed around (the torn append it cut, the run
            // files the shorter chain does not list, once it succeeded) after the
            // boundary, and nothing else.
            let extra = if now.len() > boundary {
                events_after(d, kept)
            } else {
                Vec::new()
            };
            assert!(
                extra.iter().all(|r| r.starts_with("RecoveryEvent")),
                "{what}: {extra:?}"
            );
            assert_eq!(
                boundary != cut,
                extra
                    .iter()
                    .any(|r| r.starts_with("RecoveryEvent { event: manifest_torn_tail")),
                "{what}: {extra:?}"
            );
            let removed = match &expected {
                RecoveryOutcome::OpenedEqual { unlisted, .. } => unlisted.len(),
                _ => 0,
            };
            assert_eq!(
                extra.iter().filter(|r| r.contains("file_skipped")).count(),
                removed,
                "{what}: {extra:?}"
            );
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
    // The interesting cases all occur: a lost version edit whose WAL is gone, a listed
    // run the compaction deleted, and an older chain that recovers completely.
    for needle in [
        "refused naming wal/",
        "refused naming checkpoints/run-",
        "opened equal",
    ] {
        assert!(
            summary.keys().any(|label| label.contains(needle)),
            "no cut gave {needle}: {summary:?}"
        );
    }
}

#[test]
fn an_old_manifest_copy_is_refused_when_it_lists_a_deleted_file_and_opens_complete_otherwise() {
    let fx = fixture();
    let dir = fx.materialize();
    let d = dir.path();
    for (milestone, copy) in &fx.manifests {
        // Replaying an older copy is not detectable from the files (docs/FORMAT.md):
        // it is a valid, older chain.
        std::fs::write(d.join(MANIFEST), copy).expect("roll back");
        let records = manifest_records(copy);
        let live = fold(&records);
        let expected = expected_recovery(fx, &live);
        let what = format!("MANIFEST rolled back to {milestone:?} (expecting {expected:?})");
        match milestone {
            // Lists segment 0 (retired and deleted since) and no run: refused naming
            // the missing segment before anything is replayed.
            Milestone::BeforeFirstCheckpoint => assert_eq!(
                expected,
                RecoveryOutcome::RefusedNaming(segment_rel_path(0)),
                "{what}"
            ),
            // Lists run 1, which the compaction replaced and deleted.
            Milestone::AfterBulkCheckpoint => assert_eq!(
                expected,
                RecoveryOutcome::RefusedNaming(run_rel_path(fx.compacted_away.0)),
                "{what}"
            ),
            // Its runs exist and the WAL after its flushed LSN is complete: the state is
            // complete; the runs written later are not listed.
            Milestone::AfterCompaction | Milestone::AfterCheckpoint(_) => assert!(
                matches!(&expected, RecoveryOutcome::OpenedEqual { unlisted, .. }
                    if unlisted.iter().all(|run| fx.runs.iter().any(|(id, r)| r == run && !live.runs.contains(id)))),
                "{what}"
            ),
        }
        check_recovery(fx, d, &expected, &what);
        if matches!(expected, RecoveryOutcome::OpenedEqual { .. }) {
            // The recovered directory (the older chain, its runs, the whole WAL) opens
            // to the same state again.
            open_once(d).opened_equal(fx, &format!("{what}, reopened"));
        } else {
            // A refusal leaves the rolled-back manifest as it was, too.
            assert!(
                std::fs::read(d.join(MANIFEST)).expect("read") == *copy,
                "{what}: the refused open changed the manifest"
            );
        }
        fx.restore(d);
    }
}
