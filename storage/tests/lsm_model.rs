//! The LSM against a reference model: random puts and deletes at increasing LSNs, some
//! memtables flushed into real (sealed or plaintext) run files and compacted level by
//! level, then every point read and scan, in both directions with random bounds, at
//! random snapshot LSNs, must equal what a map of every version says — down to the
//! retention floor compaction was told to keep.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aedb_checkpoint::{OsNonceSource, RunFile, RunFileMeta, RunOptions, RunWriter, run_path};
use aedb_fs::{RealFs, SharedFs};
use aedb_keys::SecretKey;
use aedb_storage::compaction::{self, CompactionOptions};
use aedb_storage::flush::flush;
use aedb_storage::{
    BlockCache, Direction, Edit, EntryKind, Memtable, Run, ScanItem, StorageError, TablePlacement,
    Version, View,
};
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use proptest::prelude::*;

const DB: DatabaseId = DatabaseId::from_bytes([3; 16]);

/// Every version ever written: key -> lsn -> value (None = tombstone).
type Model = BTreeMap<Vec<u8>, BTreeMap<u64, Option<Vec<u8>>>>;

fn visible(model: &Model, key: &[u8], at: u64) -> Option<(u64, Vec<u8>)> {
    let (lsn, v) = model.get(key)?.range(..=at).next_back()?;
    v.clone().map(|v| (*lsn, v))
}

fn in_bounds(key: &[u8], lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    let above = match lo {
        Bound::Included(l) => key >= l.as_slice(),
        Bound::Excluded(l) => key > l.as_slice(),
        Bound::Unbounded => true,
    };
    let below = match hi {
        Bound::Included(h) => key <= h.as_slice(),
        Bound::Excluded(h) => key < h.as_slice(),
        Bound::Unbounded => true,
    };
    above && below
}

struct Lsm {
    fs: SharedFs,
    dir: std::path::PathBuf,
    key: Option<SecretKey>,
    cache: Arc<BlockCache>,
    next_file: AtomicU64,
    memtables: Vec<Arc<Memtable>>,
    version: Arc<Version>,
    options: RunOptions,
}

impl Lsm {
    fn new(dir: &Path, sealed: bool, block_size: usize) -> Lsm {
        Lsm {
            fs: RealFs::shared(),
            dir: dir.to_path_buf(),
            key: sealed.then(|| SecretKey::new([9; 32])),
            cache: Arc::new(BlockCache::new(64 * 1024)),
            next_file: AtomicU64::new(1),
            memtables: vec![Arc::new(Memtable::new(0))],
            version: Arc::new(Version::empty()),
            options: RunOptions {
                block_size,
                ..RunOptions::default()
            },
        }
    }

    /// A writer of the next file id (callable from a merge's several threads).
    fn writer(&self) -> Result<RunWriter, StorageError> {
        let file_id = self.next_file.fetch_add(1, Ordering::Relaxed);
        RunWriter::create(
            &self.fs,
            &aedb_checkpoint::checkpoints_dir(&self.dir),
            RunFileMeta {
                database: DB,
                file_id,
                epoch: KeyEpoch::FIRST,
            },
            self.key.as_ref(),
            Box::new(OsNonceSource),
            self.options,
        )
        .map_err(|e| StorageError::Write(Arc::new(e)))
    }

    fn open(&self, file_id: u64) -> Arc<Run> {
        let path = run_path(&self.dir, file_id);
        let file = match &self.key {
            Some(k) => RunFile::open(&*self.fs, &path, DB, |_| Some(k.duplicate())),
            None => RunFile::open_plaintext(&*self.fs, &path, DB),
        }
        .expect("open run");
        Arc::new(Run::new(file, path, self.cache.clone()))
    }

    fn view(&self, at: u64) -> View {
        View::new(self.memtables.clone(), self.version.clone(), Lsn::new(at))
    }

    /// Freezes the active memtable and flushes the oldest frozen one.
    fn flush(&mut self) {
        let frozen = self.memtables[0].clone();
        frozen.freeze();
        self.memtables
            .insert(0, Arc::new(Memtable::new(frozen.id() + 1)));
        let oldest = self.memtables.pop().expect("a frozen memtable");
        let w = self.writer().expect("writer");
        if let Some(info) = flush(&oldest, w).expect("flush") {
            let run = self.open(info.file_id);
            self.version = Arc::new(self.version.apply(&Edit {
                added: vec![(0, run)],
                ..Edit::default()
            }));
        }
    }

    fn compact(&mut self, floor: u64, opts: &CompactionOptions) -> bool {
        let Some(task) = compaction::pick(&self.version, opts) else {
            return false;
        };
        self.execute(&task, floor, opts);
        true
    }

    /// A full compaction in its bounded steps; how many it took.
    fn compact_fully(&mut self, floor: u64, opts: &CompactionOptions) -> usize {
        let mut full = compaction::FullCompaction::new(&self.version, opts);
        let mut steps = 0;
        while let Some(task) = full.next(&self.version) {
            let added = self.execute(&task, floor, opts);
            full.record(added);
            steps += 1;
            assert!(steps < 10_000, "a full compaction that does not end");
        }
        steps
    }

    /// Runs `task` and installs its result, as the Compactor does, answering the ids
    /// it added; every edit stays within `opts.max_edit_runs`.
    fn execute(
        &mut self,
        task: &compaction::Task,
        floor: u64,
        opts: &CompactionOptions,
    ) -> Vec<u64> {
        if task.method == compaction::Method::Move {
            self.version = Arc::new(
                self.version.apply(&Edit {
                    added: task
                        .inputs
                        .iter()
                        .map(|(_, r)| (task.output_level, r.clone()))
                        .collect(),
                    removed: task.inputs.iter().map(|(_, r)| r.id()).collect(),
                    floor: Lsn::ZERO,
                }),
            );
            return task.inputs.iter().map(|(_, r)| r.id()).collect();
        }
        let writer = || self.writer();
        let out = compaction::compact_parallel(task, Lsn::new(floor), None, opts.threads, &writer)
            .expect("compact");
        assert!(
            task.inputs.len() + out.outputs.len() <= opts.max_edit_runs,
            "an edit of {} inputs and {} outputs",
            task.inputs.len(),
            out.outputs.len()
        );
        let added: Vec<(usize, Arc<Run>)> = out
            .outputs
            .iter()
            .map(|o| (task.output_level, self.open(o.file_id)))
            .collect();
        let ids = added.iter().map(|(_, r)| r.id()).collect();
        self.version = Arc::new(self.version.apply(&Edit {
            added,
            removed: task.inputs.iter().map(|(_, r)| r.id()).collect(),
            floor: Lsn::new(floor),
        }));
        ids
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Delete(u8),
    Flush,
    Compact,
    CompactFully,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..40, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
        2 => (0u8..40).prop_map(Op::Delete),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::CompactFully),
    ]
}

fn key_of(k: u8) -> Vec<u8> {
    // Shared prefixes and different lengths exercise the ordering; 62 and 63 bytes
    // straddle the memtable's inline key limit, and 102 bytes is stored apart.
    let mut key = b"k".to_vec();
    key.extend(std::iter::repeat_n(
        b'x',
        [0, 1, 2, 60, 61, 100][usize::from(k % 6)],
    ));
    key.push(k);
    key
}

fn bound(k: Option<(u8, bool)>) -> Bound<Vec<u8>> {
    match k {
        None => Bound::Unbounded,
        Some((k, true)) => Bound::Included(key_of(k)),
        Some((k, false)) => Bound::Excluded(key_of(k)),
    }
}

fn check(lsm: &Lsm, model: &Model, floor: u64, last: u64, probes: &[(u8, u64)]) {
    for &(k, at) in probes {
        // Snapshots older than the retention floor are not promised.
        let at = floor + at % (last - floor + 1);
        let key = key_of(k);
        let got = lsm.view(at).get(&key).expect("get");
        let want = visible(model, &key, at);
        assert_eq!(got.map(|(l, v)| (l.get(), v)), want, "get {key:?} at {at}");
    }
}

fn check_scan(
    lsm: &Lsm,
    model: &Model,
    at: u64,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    direction: Direction,
) {
    let got: Vec<ScanItem> = lsm
        .view(at)
        .scan(lo.clone(), hi.clone(), direction)
        .expect("scan")
        .collect::<Result<_, _>>()
        .expect("scan items");
    let mut want: Vec<ScanItem> = model
        .keys()
        .filter(|k| in_bounds(k, &lo, &hi))
        .filter_map(|k| {
            visible(model, k, at).map(|(lsn, value)| ScanItem {
                key: k.clone(),
                lsn: Lsn::new(lsn),
                value,
            })
        })
        .collect();
    if direction == Direction::Reverse {
        want.reverse();
    }
    assert_eq!(got, want, "scan {lo:?}..{hi:?} {direction:?} at {at}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn reads_match_the_model_through_flushes_and_compactions(
        ops in proptest::collection::vec(op(), 1..160),
        sealed in any::<bool>(),
        block_size in prop_oneof![Just(64usize), Just(300), Just(4096)],
        keep in 0u64..40,
        threads in 1usize..4,
        probes in proptest::collection::vec((0u8..42, any::<u64>()), 24),
        scans in proptest::collection::vec(
            (proptest::option::of((0u8..42, any::<bool>())), proptest::option::of((0u8..42, any::<bool>())), any::<bool>(), any::<u64>()),
            8,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut lsm = Lsm::new(dir.path(), sealed, block_size);
        let opts = CompactionOptions {
            l0_runs: 2,
            // Partial level-0 merges (the oldest two) leave newer runs above the output.
            max_l0_inputs: 2,
            l0_stop_runs: 8,
            l0_slowdown_runs: 6,
            level1_bytes: 2048,
            multiplier: 2,
            target_file_bytes: 1024,
            // Tiny runs: let some level-0 runs move (those over 200 bytes) and others merge.
            min_move_bytes: 200,
            // Tiny edits (three inputs at most) and grandparent cuts after one run, so
            // merges are bounded, consolidated and cut, and full compactions take steps.
            max_grandparent_overlap: 1,
            max_edit_runs: 6,
            // Cold runs with a fifth of their entries droppable are rewritten.
            garbage_percent: 20,
            // Merges of more than a kilobyte per thread are split into key ranges.
            threads,
        };
        let mut model = Model::new();
        let mut lsn = 0u64;
        let mut floor = 0u64;
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    lsn += 1;
                    let value = vec![v; usize::from(v % 7)];
                    lsm.memtables[0].insert(&key_of(k), Lsn::new(lsn), EntryKind::Put, &value);
                    model.entry(key_of(k)).or_default().insert(lsn, Some(value));
                }
                Op::Delete(k) => {
                    lsn += 1;
                    lsm.memtables[0].insert(&key_of(k), Lsn::new(lsn), EntryKind::Delete, &[]);
                    model.entry(key_of(k)).or_default().insert(lsn, None);
                }
                Op::Flush => {
                    lsm.flush();
                }
                Op::Compact => {
                    // Keep at least `keep` LSNs of history readable.
                    floor = floor.max(lsn.saturating_sub(keep));
                    while lsm.compact(floor, &opts) {}
                    let mut rewrites = 0;
                    while let Some(task) = compaction::pick_garbage(&lsm.version, &opts, Lsn::new(floor)) {
                        lsm.execute(&task, floor, &opts);
                        rewrites += 1;
                        prop_assert!(rewrites < 100, "garbage rewrites that do not end");
                    }
                }
                Op::CompactFully => {
                    floor = floor.max(lsn.saturating_sub(keep));
                    lsm.compact_fully(floor, &opts);
                    // Every run that was there is merged into the bottom level.
                    let bottom = lsm.version.deepest_level();
                    for level in 0..bottom {
                        prop_assert!(lsm.version.level(level).is_empty(), "level {level} of {bottom}");
                    }
                }
            }
        }
        check(&lsm, &model, floor, lsn.max(floor), &probes);
        for (lo, hi, rev, at) in scans {
            let at = floor + at % (lsn.max(floor) - floor + 1);
            let direction = if rev { Direction::Reverse } else { Direction::Forward };
            check_scan(&lsm, &model, at, bound(lo), bound(hi), direction);
        }
        // Sorted levels stay disjoint and sorted.
        for level in 1..aedb_storage::LEVELS {
            let runs = lsm.version.level(level);
            for pair in runs.windows(2) {
                prop_assert!(pair[0].file().last_key() < pair[1].file().first_key());
            }
        }
    }
}

/// The committing caller's prefetch reads what the writer's read of the key will need
/// and no more: the block of the newest run holding the key (the read after it misses
/// nothing), not the blocks of older runs that hold it too, and nothing at all for a key
/// a memtable holds.
#[test]
fn prefetch_warms_what_the_read_needs_and_stops_at_the_newest_source() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    let key = |i: u64| format!("key{i:06}").into_bytes();
    let m = lsm.memtables[0].clone();
    for i in 0..300 {
        m.insert(&key(i), Lsn::new(i + 1), EntryKind::Put, b"old");
    }
    lsm.flush();
    let m = lsm.memtables[0].clone();
    m.insert(&key(100), Lsn::new(1000), EntryKind::Put, b"new");
    m.insert(&key(200), Lsn::new(1001), EntryKind::Put, b"new");
    lsm.flush();
    let m = lsm.memtables[0].clone();
    m.insert(&key(50), Lsn::new(2000), EntryKind::Put, b"mem");
    let (newer, older) = (
        lsm.version.level(0)[0].clone(),
        lsm.version.level(0)[1].clone(),
    );
    assert!(newer.file().max_lsn() > older.file().max_lsn());
    let view = lsm.view(5000);
    let cached = |run: &Run, k: &[u8]| {
        let block = run.block_for(k).unwrap().expect("the run covers the key");
        lsm.cache.contains(run.id(), block as u32)
    };
    let misses = || lsm.cache.stats().misses;

    // In the newer run (and the older): only the newer run's block is read.
    view.prefetch(&key(100)).unwrap();
    assert!(cached(&newer, &key(100)));
    assert!(
        !cached(&older, &key(100)),
        "the older run's block was read too"
    );
    let before = misses();
    let got = view.get(&key(100)).unwrap().map(|(_, v)| v);
    assert_eq!(got.as_deref(), Some(&b"new"[..]));
    assert_eq!(misses(), before, "the read after the prefetch missed");

    // Only in the older run: its block is read, and the read then misses nothing.
    view.prefetch(&key(20)).unwrap();
    assert!(cached(&older, &key(20)));
    let before = misses();
    let got = view.get(&key(20)).unwrap().map(|(_, v)| v);
    assert_eq!(got.as_deref(), Some(&b"old"[..]));
    assert_eq!(misses(), before, "the read after the prefetch missed");

    // In the memtable: nothing is read.
    let before = lsm.cache.stats();
    view.prefetch(&key(50)).unwrap();
    assert_eq!(lsm.cache.stats(), before);
}

#[test]
fn compaction_drops_hidden_versions_and_bottom_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    let m = lsm.memtables[0].clone();
    for lsn in 1..=10u64 {
        m.insert(b"a", Lsn::new(lsn), EntryKind::Put, &[lsn as u8]);
    }
    m.insert(b"b", Lsn::new(11), EntryKind::Put, b"x");
    m.insert(b"b", Lsn::new(12), EntryKind::Delete, b"");
    lsm.flush();
    lsm.flush();
    let opts = CompactionOptions {
        l0_runs: 1,
        ..CompactionOptions::default()
    };
    let task = compaction::pick(&lsm.version, &opts).expect("level 0 is over its trigger");
    assert!(task.bottommost);
    let out = compaction::compact(&task, Lsn::new(12), || lsm_writer(dir.path(), 99)).unwrap();
    assert_eq!(out.entries_in, 12);
    // a@1..9 are hidden by a@10 at the floor; b@11 by its tombstone, which then goes too.
    assert_eq!(out.dropped_versions, 10);
    assert_eq!(out.dropped_tombstones, 1);
    assert_eq!(out.outputs.len(), 1);
    assert_eq!(out.outputs[0].entries, 1);
}

/// A level-0 backlog is merged oldest first, a bounded number of runs at a time; the
/// newer runs stay above the output and reads still see the newest version.
#[test]
fn a_level0_backlog_is_merged_oldest_first_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    for lsn in 1..=10u64 {
        lsm.memtables[0].insert(b"k", Lsn::new(lsn), EntryKind::Put, &[lsn as u8]);
        lsm.flush();
    }
    let l0: Vec<u64> = lsm.version.level(0).iter().map(|r| r.id()).collect();
    assert_eq!(l0.len(), 10);
    let opts = CompactionOptions {
        l0_runs: 4,
        max_l0_inputs: 3,
        ..CompactionOptions::default()
    };
    let task = compaction::pick(&lsm.version, &opts).expect("level 0 is over its trigger");
    let mut inputs: Vec<u64> = task.inputs.iter().map(|(_, r)| r.id()).collect();
    inputs.sort_unstable();
    let mut oldest: Vec<u64> = l0[l0.len() - 3..].to_vec();
    oldest.sort_unstable();
    assert_eq!(inputs, oldest, "the three oldest runs");
    assert!(lsm.compact(0, &opts));
    assert_eq!(lsm.version.level(0).len(), 7);
    assert_eq!(lsm.version.level(1).len(), 1);
    let got = lsm.view(10).get(b"k").unwrap().expect("present");
    assert_eq!(got.1, vec![10u8]);
    let at3 = lsm.view(3).get(b"k").unwrap().expect("present");
    assert_eq!(at3.1, vec![3u8]);
}

fn lsm_writer(dir: &Path, file_id: u64) -> Result<RunWriter, StorageError> {
    RunWriter::create(
        &RealFs::shared(),
        &aedb_checkpoint::checkpoints_dir(dir),
        RunFileMeta {
            database: DB,
            file_id,
            epoch: KeyEpoch::FIRST,
        },
        Some(&SecretKey::new([9; 32])),
        Box::new(OsNonceSource),
        RunOptions::default(),
    )
    .map_err(|e| StorageError::Write(Arc::new(e)))
}

#[test]
fn a_tampered_block_is_an_error_never_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 64);
    for i in 0..50u64 {
        lsm.memtables[0].insert(
            format!("key{i:03}").as_bytes(),
            Lsn::new(i + 1),
            EntryKind::Put,
            b"value",
        );
    }
    lsm.flush();
    lsm.flush();
    let run = lsm.version.level(0)[0].clone();
    let path = run.path().to_path_buf();
    drop(run);
    lsm.version = Arc::new(Version::empty());
    // Flip one byte inside the first data block, then reopen with a cold cache.
    let mut bytes = std::fs::read(&path).unwrap();
    let header = aedb_checkpoint::RUN_HEADER_LEN;
    bytes[header + 40] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    lsm.cache = Arc::new(BlockCache::new(64 * 1024));
    let run = lsm.open(1);
    lsm.version = Arc::new(Version::empty().apply(&Edit {
        added: vec![(0, run)],
        ..Edit::default()
    }));
    assert!(lsm.view(100).get(b"key000").is_err());
    let scan: Result<Vec<_>, _> = lsm
        .view(100)
        .scan(Bound::Unbounded, Bound::Unbounded, Direction::Forward)
        .and_then(|s| s.collect());
    assert!(scan.is_err());
}

/// Expires every put whose value starts with `x`.
struct ExpireX;

impl compaction::CompactionFilter for ExpireX {
    fn expired(&self, _key: &[u8], _lsn: Lsn, value: &[u8]) -> bool {
        value.first() == Some(&b'x')
    }
}

#[test]
fn the_compaction_filter_drops_expired_floor_versions_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    let m = lsm.memtables[0].clone();
    m.insert(b"e", Lsn::new(1), EntryKind::Put, b"v-old");
    m.insert(b"e", Lsn::new(5), EntryKind::Put, b"x-expired");
    m.insert(b"f", Lsn::new(20), EntryKind::Put, b"x-above-the-floor");
    m.insert(b"k", Lsn::new(3), EntryKind::Put, b"kept");
    lsm.flush();
    lsm.flush();
    let opts = CompactionOptions {
        l0_runs: 1,
        ..CompactionOptions::default()
    };
    let task = compaction::pick(&lsm.version, &opts).expect("level 0 is over its trigger");
    assert!(task.bottommost);
    let out = compaction::compact_filtered(&task, Lsn::new(10), Some(&ExpireX), || {
        lsm_writer(dir.path(), 99)
    })
    .unwrap();
    assert_eq!(out.entries_in, 4);
    // e@5 is expired (dropped: this is the bottom), e@1 is hidden below the floor,
    // f@20 is newer than the floor and stays whatever its value.
    assert_eq!(out.filtered, 1);
    assert_eq!(out.dropped_versions, 1);
    assert_eq!(out.outputs[0].entries, 2);
    // Without a filter nothing expires.
    let plain = compaction::compact(&task, Lsn::new(10), || lsm_writer(dir.path(), 98)).unwrap();
    assert_eq!(plain.filtered, 0);
    assert_eq!(plain.outputs[0].entries, 3);
}

#[test]
fn an_expired_version_above_the_bottom_becomes_a_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), false, 128);
    // An older version deep down, the expired one in level 0.
    let m = lsm.memtables[0].clone();
    m.insert(b"e", Lsn::new(1), EntryKind::Put, b"v-old");
    lsm.flush();
    lsm.flush();
    let deep: Vec<(usize, Arc<Run>)> = lsm.version.runs().map(|(_, r)| (2, r.clone())).collect();
    lsm.version = Arc::new(Version::empty().apply(&Edit {
        added: deep,
        ..Edit::default()
    }));
    lsm.memtables[0].insert(b"e", Lsn::new(5), EntryKind::Put, b"x-expired");
    lsm.flush();
    lsm.flush();
    let inputs: Vec<(usize, Arc<Run>)> = lsm
        .version
        .runs()
        .filter(|(level, _)| *level == 0)
        .map(|(l, r)| (l, r.clone()))
        .collect();
    assert_eq!(inputs.len(), 1);
    let task = compaction::Task::merge(inputs.clone(), 1, false, u64::MAX);
    let mut writer = || lsm.writer();
    let out =
        compaction::compact_filtered(&task, Lsn::new(10), Some(&ExpireX), &mut writer).unwrap();
    assert_eq!(out.filtered, 1);
    let added = out
        .outputs
        .iter()
        .map(|o| (1, lsm.open(o.file_id)))
        .collect();
    lsm.version = Arc::new(lsm.version.apply(&Edit {
        added,
        removed: inputs.iter().map(|(_, r)| r.id()).collect(),
        floor: Lsn::new(10),
    }));
    // The tombstone hides the older version below it: no resurrection.
    assert_eq!(lsm.view(10).get(b"e").unwrap(), None);
    assert_eq!(
        lsm.view(1).get(b"e").unwrap().map(|(l, _)| l),
        Some(Lsn::new(1))
    );
}

/// One level-0 run of `keys` keys `{prefix}{i:06}` (value `v`), in 128-byte blocks,
/// opened behind a cache of `cache_bytes` placing tables as `placement` says.
fn one_run(dir: &Path, placement: TablePlacement, cache_bytes: u64, keys: u64) -> (Lsm, Arc<Run>) {
    let mut lsm = Lsm::new(dir, true, 128);
    lsm.cache = Arc::new(BlockCache::with_placement(cache_bytes, placement));
    let m = lsm.memtables[0].clone();
    for i in 0..keys {
        m.insert(
            format!("key{i:06}").as_bytes(),
            Lsn::new(i + 1),
            EntryKind::Put,
            b"v",
        );
    }
    lsm.flush();
    lsm.flush();
    let run = lsm.version.level(0)[0].clone();
    (lsm, run)
}

/// Reads every `step`-th of the `keys` keys of [`one_run`] and one absent key.
fn read_back(run: &Run, keys: u64, step: usize) {
    for i in (0..keys).step_by(step) {
        let got = run.get(format!("key{i:06}").as_bytes(), Lsn::MAX).unwrap();
        assert_eq!(got.map(|v| v.value), Some(Some(b"v".to_vec())));
    }
    assert_eq!(run.get(b"absent", Lsn::MAX).unwrap(), None);
}

/// Where run tables go: `InCache` weighs them in the block cache (nothing pinned);
/// `Pinned` and `Auto` (while they fit in half the cache) have each run keep them once
/// read, outside the cache, and release them when the run goes. Reads are the same.
#[test]
fn run_tables_are_cached_or_pinned_as_configured() {
    // (cache bytes, pinned bytes, the tables' size) per placement.
    let mut seen = Vec::new();
    for placement in [
        TablePlacement::InCache,
        TablePlacement::Pinned,
        TablePlacement::Auto,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut lsm, run) = one_run(dir.path(), placement, 1 << 20, 200);
        assert_eq!(lsm.cache.stats().pinned_bytes, 0, "nothing is read at open");
        read_back(&run, 200, 1);
        let tables = tables_bytes(&run);
        let stats = lsm.cache.stats();
        seen.push((stats.bytes, stats.pinned_bytes, tables));
        lsm.version = Arc::new(Version::empty());
        drop(run);
        assert_eq!(
            lsm.cache.stats().pinned_bytes,
            0,
            "a dropped run releases them"
        );
    }
    let [
        (cached_bytes, cached_pinned, tables),
        (pinned_cache_bytes, pinned, t2),
        (auto_cache_bytes, auto_pinned, t3),
    ] = seen[..]
    else {
        unreachable!()
    };
    assert_eq!((tables, tables), (t2, t3));
    assert_eq!((cached_pinned, pinned, auto_pinned), (0, tables, tables));
    // The same data blocks are cached either way; in the cache, the tables too.
    assert_eq!(pinned_cache_bytes, auto_cache_bytes);
    assert!(
        cached_bytes >= pinned_cache_bytes + tables,
        "{cached_bytes} vs {pinned_cache_bytes} + {tables}"
    );
    assert!(cached_bytes < pinned_cache_bytes + tables + 1024);
}

/// Heap bytes of all of a run's table partitions (read through the run).
fn tables_bytes(run: &Run) -> u64 {
    (0..run.file().partition_count())
        .map(|p| run.partition(p).unwrap().heap_bytes() as u64)
        .sum()
}

/// `Auto` pins partitions only while the pinned ones fit in half the cache: the
/// partitions of a run whose tables do not fit are pinned up to that limit and cached
/// beyond it, and reads are right either way.
#[test]
fn auto_placement_pins_only_what_fits_in_half_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    // Tables of 3,000 keys in 128-byte blocks: tens of KiB, over half of 64 KiB.
    let (lsm, run) = one_run(dir.path(), TablePlacement::Auto, 64 * 1024, 3_000);
    assert!(
        run.file().partition_count() > 4,
        "the tables are partitioned"
    );
    read_back(&run, 3_000, 97);
    let tables = tables_bytes(&run);
    assert!(tables > 32 * 1024, "{tables} bytes of tables");
    let pinned = lsm.cache.stats().pinned_bytes;
    assert!(pinned > 0 && pinned <= 32 * 1024, "{pinned} bytes pinned");
    read_back(&run, 3_000, 1);
}

/// A version-2 run (one index and one filter block, as the golden fixture froze it) is
/// read through the same partitioned path as version 3: as one partition.
#[test]
fn version_2_runs_are_read_as_one_partition() {
    use aedb_checkpoint::{
        GOLDEN_CHECKPOINT_KEY, GOLDEN_DATABASE_ID, GOLDEN_EPOCH, GOLDEN_RUN_FILE_ID,
        golden_fixtures,
    };
    let dir = tempfile::tempdir().unwrap();
    let mut versions = Vec::new();
    for name in ["run_sealed_v2", "run_sealed_v3"] {
        let fixture = golden_fixtures()
            .into_iter()
            .find(|f| f.name == name)
            .unwrap();
        let path = run_path(dir.path(), GOLDEN_RUN_FILE_ID);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fixture.bytes).unwrap();
        let file = RunFile::open(&RealFs, &path, GOLDEN_DATABASE_ID, |e| {
            (e == GOLDEN_EPOCH).then(|| SecretKey::new(GOLDEN_CHECKPOINT_KEY))
        })
        .unwrap();
        versions.push((file.header().version, file.partition_count()));
        let run = Run::new(file, path.clone(), Arc::new(BlockCache::new(1 << 20)));
        let get = |key: &[u8], at: u64| run.get(key, Lsn::new(at)).unwrap();
        let put = |lsn: u64, v: &[u8]| {
            Some(aedb_storage::Versioned {
                lsn: Lsn::new(lsn),
                value: Some(v.to_vec()),
            })
        };
        let tombstone = |lsn: u64| {
            Some(aedb_storage::Versioned {
                lsn: Lsn::new(lsn),
                value: None,
            })
        };
        assert_eq!(get(b"alpha", 100), put(12, b"first value"), "{name}");
        assert_eq!(get(b"alpha", 11), tombstone(9), "{name}");
        assert_eq!(get(b"alpha", 8), None, "{name}");
        assert_eq!(get(b"beta", 100), put(10, b"b"), "{name}");
        assert_eq!(get(b"gamma", 100), tombstone(11), "{name}");
        for absent in [&b"aaa"[..], b"delta", b"zzz"] {
            assert_eq!(get(absent, 100), None, "{name}");
        }
        std::fs::remove_file(&path).unwrap();
    }
    assert_eq!(versions, [(2, 1), (3, 3)]);
}

/// Level-0 runs that overlap nothing in level 1 (nor each other) are moved there, the
/// same files re-filed; a run that overlaps is merged. Reads see the same data either
/// way.
#[test]
fn disjoint_runs_are_moved_down_and_overlapping_ones_merged() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    let mut lsn = 0;
    let mut fill = |lsm: &mut Lsm, keys: std::ops::Range<u32>| {
        for k in keys {
            lsn += 1;
            let key = format!("key{k:05}");
            lsm.memtables[0].insert(key.as_bytes(), Lsn::new(lsn), EntryKind::Put, b"v");
        }
        lsm.flush();
    };
    // A sequential load: three runs, each after the last.
    for part in 0..3 {
        fill(&mut lsm, part * 100..(part + 1) * 100);
    }
    // Small level-0 runs (frequent checkpoints) are merged into one, not moved.
    let coalesce = CompactionOptions {
        l0_runs: 3,
        ..CompactionOptions::default()
    };
    let task = compaction::pick(&lsm.version, &coalesce).expect("level 0 is over its trigger");
    assert_eq!(task.method, compaction::Method::Merge);
    let level0 = lsm.version.level_bytes(0);
    assert_eq!(
        compaction::picker::pending_bytes(&lsm.version, &coalesce),
        level0
    );
    let opts = CompactionOptions {
        min_move_bytes: 0,
        ..coalesce
    };
    let task = compaction::pick(&lsm.version, &opts).expect("level 0 is over its trigger");
    assert_eq!(task.method, compaction::Method::Move);
    // Runs about to move are not a backlog: nothing is pending.
    assert_eq!(compaction::picker::pending_bytes(&lsm.version, &opts), 0);
    let mut l0: Vec<u64> = lsm.version.level(0).iter().map(|r| r.id()).collect();
    assert!(lsm.compact(0, &opts));
    let mut l1: Vec<u64> = lsm.version.level(1).iter().map(|r| r.id()).collect();
    l0.sort_unstable();
    l1.sort_unstable();
    assert_eq!(l1, l0, "the same files, one level down");
    assert!(lsm.version.level(0).is_empty());
    // Overlapping runs (with each other, or with level 1) are merged.
    fill(&mut lsm, 50..60);
    fill(&mut lsm, 55..65);
    fill(&mut lsm, 300..310);
    let task = compaction::pick(&lsm.version, &opts).expect("level 0 is over its trigger");
    assert_eq!(task.method, compaction::Method::Merge);
    assert!(lsm.compact(0, &opts));
    let view = lsm.view(lsn);
    for k in [0u32, 57, 150, 299, 305] {
        let key = format!("key{k:05}");
        assert!(view.get(key.as_bytes()).unwrap().is_some(), "{key}");
    }
    // A level-1 run over its level's target, with nothing below it, moves too.
    let opts = CompactionOptions {
        l0_runs: 100,
        level1_bytes: 1,
        ..CompactionOptions::default()
    };
    // (Level 1 and deeper: a lone run with nothing below moves whatever its size.)
    let task = compaction::pick(&lsm.version, &opts).expect("level 1 is over its target");
    assert_eq!(
        (task.method, task.output_level),
        (compaction::Method::Move, 2)
    );
}

/// Flushes `entries` (`(key, lsn, value)`, `None` a tombstone) into one run placed at
/// `level`, as a compaction would have left it.
fn place(lsm: &mut Lsm, level: usize, entries: &[(String, u64, Option<&[u8]>)]) {
    for (key, lsn, value) in entries {
        let (kind, value) = match value {
            Some(v) => (EntryKind::Put, *v),
            None => (EntryKind::Delete, &[][..]),
        };
        lsm.memtables[0].insert(key.as_bytes(), Lsn::new(*lsn), kind, value);
    }
    lsm.flush();
    let run = lsm.version.level(0)[0].clone();
    lsm.version = Arc::new(lsm.version.apply(&Edit {
        added: vec![(level, run.clone())],
        removed: vec![run.id()],
        floor: Lsn::ZERO,
    }));
}

fn key_n(i: u32) -> String {
    format!("key{i:04}")
}

/// Ten disjoint level-2 runs of ten keys each (`key0000`..`key0099`, LSNs 1..=100).
fn ten_runs_at_level2(lsm: &mut Lsm) {
    for part in 0..10u32 {
        let entries: Vec<_> = (part * 10..part * 10 + 10)
            .map(|i| (key_n(i), u64::from(i) + 1, Some(&b"old"[..])))
            .collect();
        place(lsm, 2, &entries);
    }
}

/// A tombstone in an input that reaches past the run picked to be merged down still
/// hides the older version deeper down: whether a merge may drop tombstones is decided
/// over all of its inputs' keys, not only the picked run's.
#[test]
fn a_tombstone_beyond_the_picked_run_is_kept_while_a_deeper_level_holds_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    // Level 2: the old `key0000`. Level 1: its tombstone and `key0099`, one run.
    place(&mut lsm, 2, &[(key_n(0), 1, Some(&b"old"[..]))]);
    place(
        &mut lsm,
        1,
        &[(key_n(0), 2, None), (key_n(99), 3, Some(&b"x"[..]))],
    );
    // Level 0: a run inside level 1's range, away from level 2's.
    place(&mut lsm, 0, &[(key_n(50), 4, Some(&b"y"[..]))]);
    let opts = CompactionOptions {
        l0_runs: 1,
        ..CompactionOptions::default()
    };
    let task = compaction::pick(&lsm.version, &opts).expect("level 0 is over its trigger");
    assert_eq!((task.inputs.len(), task.output_level), (2, 1));
    assert!(!task.bottommost, "level 2 holds a key of the level-1 input");
    lsm.execute(&task, 4, &opts);
    assert_eq!(lsm.view(4).get(key_n(0).as_bytes()).unwrap(), None);
}

/// A run overlapping more runs one level down than one version edit can name is merged
/// down in steps that each fit: the runs below are first merged into fewer, larger
/// ones (consolidated), then the run is merged with them. Reads never change.
#[test]
fn a_run_overlapping_too_many_runs_below_is_merged_in_edits_that_fit() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    ten_runs_at_level2(&mut lsm);
    // One level-1 run spanning all ten: a new value and a tombstone.
    place(
        &mut lsm,
        1,
        &[(key_n(5), 200, Some(&b"new"[..])), (key_n(95), 201, None)],
    );
    // Level 1 is over its target, level 2 far under its own; one edit names six runs
    // (three inputs).
    let opts = CompactionOptions {
        level1_bytes: 1,
        multiplier: 1 << 30,
        max_edit_runs: 6,
        ..CompactionOptions::default()
    };
    let mut consolidations = 0;
    while let Some(task) = compaction::pick(&lsm.version, &opts) {
        assert!(task.inputs.len() <= 3, "{} inputs", task.inputs.len());
        if task.inputs.iter().all(|(level, _)| *level == 2) {
            assert_eq!(task.output_level, 2);
            consolidations += 1;
        }
        lsm.execute(&task, 201, &opts);
    }
    assert!(consolidations >= 2, "{consolidations} consolidations");
    assert!(lsm.version.level(1).is_empty());
    assert!(lsm.version.level(2).len() < 10);
    let view = lsm.view(201);
    for i in 0..100 {
        let got = view.get(key_n(i).as_bytes()).unwrap().map(|(_, v)| v);
        let want = match i {
            5 => Some(b"new".to_vec()),
            95 => None,
            _ => Some(b"old".to_vec()),
        };
        assert_eq!(got, want, "{}", key_n(i));
    }
}

/// A full compaction of more runs than one edit can name merges every run into the
/// bottom level in steps that each fit: the levels above are pushed down, then the
/// bottom runs no push reached are rewritten a few at a time, dropping what the floor
/// hides and every tombstone.
#[test]
fn a_full_compaction_of_more_runs_than_an_edit_names_reaches_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    // Ten level-2 runs; the first key of each has a version the floor hides.
    for part in 0..10u32 {
        let mut entries: Vec<_> = (part * 10..part * 10 + 10)
            .map(|i| (key_n(i), u64::from(i) + 1, Some(&b"old"[..])))
            .collect();
        entries.push((key_n(part * 10), 500 + u64::from(part), Some(&b"newer"[..])));
        place(&mut lsm, 2, &entries);
    }
    // Above the first level-2 run only: a tombstone at level 1, a put at level 0.
    place(&mut lsm, 1, &[(key_n(3), 300, None)]);
    place(&mut lsm, 0, &[(key_n(1), 400, Some(&b"l0"[..]))]);
    let before: Vec<u64> = lsm.version.runs().map(|(_, r)| r.id()).collect();
    assert_eq!(before.len(), 12);
    let opts = CompactionOptions {
        max_edit_runs: 6,
        ..CompactionOptions::default()
    };
    let steps = lsm.compact_fully(600, &opts);
    // Level 0 into 1, level 1 into 2, then the nine untouched runs three at a time.
    assert_eq!(steps, 5);
    for level in [0, 1] {
        assert!(lsm.version.level(level).is_empty(), "level {level}");
    }
    let after: Vec<u64> = lsm.version.runs().map(|(_, r)| r.id()).collect();
    assert!(
        after.iter().all(|id| !before.contains(id)),
        "every run rewritten"
    );
    let view = lsm.view(600);
    for i in 0..100 {
        let got = view.get(key_n(i).as_bytes()).unwrap();
        let want = match i {
            1 => Some((400, b"l0".to_vec())),
            3 => None,
            i if i % 10 == 0 => Some((500 + u64::from(i / 10), b"newer".to_vec())),
            i => Some((u64::from(i) + 1, b"old".to_vec())),
        };
        assert_eq!(got.map(|(l, v)| (l.get(), v)), want, "{}", key_n(i));
    }
    // One version per key is left, and no tombstone.
    let entries: u64 = lsm.version.runs().map(|(_, r)| r.file().entries()).sum();
    assert_eq!(entries, 99);
}

/// Outputs are cut once they overlap `max_grandparent_overlap` runs of the level below
/// theirs, so merging one down later reads few runs; and however many cuts that asks
/// for, a merge never writes more outputs than its edit has room for.
#[test]
fn outputs_are_cut_at_grandparent_overlap_within_the_edit_limit() {
    let build = |dir: &Path| {
        let mut lsm = Lsm::new(dir, true, 128);
        // 120 small disjoint level-3 runs, then a level-2 and a level-1 run spanning
        // them all.
        for i in 0..120u32 {
            place(
                &mut lsm,
                3,
                &[(key_n(i * 10), u64::from(i) + 1, Some(&b"g"[..]))],
            );
        }
        let entries: Vec<_> = (0..1200u32)
            .step_by(7)
            .map(|i| (key_n(i), 1000 + u64::from(i), Some(&b"p"[..])))
            .collect();
        place(&mut lsm, 2, &entries);
        place(
            &mut lsm,
            1,
            &[
                (key_n(0), 5000, Some(&b"x"[..])),
                (key_n(1199), 5001, Some(&b"y"[..])),
            ],
        );
        lsm
    };
    // Level 1 over its target, level 2 far under its own.
    let opts = CompactionOptions {
        level1_bytes: 1,
        multiplier: 1 << 30,
        max_grandparent_overlap: 25,
        ..CompactionOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = build(dir.path());
    let task = compaction::pick(&lsm.version, &opts).expect("level 1 is over its target");
    assert_eq!((task.inputs.len(), task.output_level), (2, 2));
    lsm.execute(&task, 0, &opts);
    let outputs = lsm.version.level(2);
    assert!(outputs.len() >= 4, "{} outputs", outputs.len());
    let grandparents = lsm.version.level(3);
    for run in outputs {
        let (first, last) = (run.file().first_key(), run.file().last_key());
        let overlapped = grandparents
            .iter()
            .filter(|g| g.file().first_key() <= last && g.file().last_key() >= first)
            .count();
        assert!(
            overlapped <= 27,
            "an output overlaps {overlapped} runs below"
        );
    }
    // Six runs per edit: two inputs leave room for four outputs, cuts or not.
    let small = CompactionOptions {
        max_edit_runs: 6,
        ..opts
    };
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = build(dir.path());
    let task = compaction::pick(&lsm.version, &small).expect("level 1 is over its target");
    assert_eq!(task.max_outputs, 4);
    lsm.execute(&task, 0, &small);
    assert!(lsm.version.level(2).len() <= 4);
    let view = lsm.view(6000);
    assert_eq!(view.get(key_n(0).as_bytes()).unwrap().unwrap().1, b"x");
    assert_eq!(view.get(key_n(7).as_bytes()).unwrap().unwrap().1, b"p");
    assert_eq!(view.get(key_n(10).as_bytes()).unwrap().unwrap().1, b"g");
}

/// A run flushed while a full compaction works is newer than everything it merges: it
/// stays in level 0, untouched, and the full compaction still ends with every run it
/// started from merged into the bottom.
#[test]
fn a_flush_during_a_full_compaction_stays_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    ten_runs_at_level2(&mut lsm);
    place(&mut lsm, 1, &[(key_n(3), 300, None)]);
    place(&mut lsm, 0, &[(key_n(1), 400, Some(&b"l0"[..]))]);
    let old: Vec<u64> = lsm.version.runs().map(|(_, r)| r.id()).collect();
    let opts = CompactionOptions {
        max_edit_runs: 6,
        ..CompactionOptions::default()
    };
    let mut full = compaction::FullCompaction::new(&lsm.version, &opts);
    let mut steps = 0;
    let mut flushed = None;
    while let Some(task) = full.next(&lsm.version) {
        let added = lsm.execute(&task, 600, &opts);
        full.record(added);
        steps += 1;
        if steps == 1 {
            lsm.memtables[0].insert(key_n(5).as_bytes(), Lsn::new(700), EntryKind::Put, b"new");
            lsm.flush();
            flushed = Some(lsm.version.level(0)[0].id());
        }
        assert!(steps < 100, "a full compaction that does not end");
    }
    let flushed = flushed.expect("a flush after the first step");
    assert_eq!(
        lsm.version
            .level(0)
            .iter()
            .map(|r| r.id())
            .collect::<Vec<_>>(),
        vec![flushed],
        "the newer run stays in level 0"
    );
    assert!(lsm.version.level(1).is_empty());
    assert!(lsm.version.runs().all(|(_, r)| !old.contains(&r.id())));
    let view = lsm.view(700);
    assert_eq!(view.get(key_n(5).as_bytes()).unwrap().unwrap().1, b"new");
    assert_eq!(view.get(key_n(1).as_bytes()).unwrap().unwrap().1, b"l0");
    assert_eq!(view.get(key_n(3).as_bytes()).unwrap(), None);
    assert_eq!(view.get(key_n(50).as_bytes()).unwrap().unwrap().1, b"old");
}

/// A cold run written at or below the floor whose hidden versions (and, at the bottom,
/// tombstones) pass `garbage_percent` of its entries is rewritten alone, from its meta
/// block's counts; what it writes has none left, so it is not picked again. A run
/// newer than the floor, under the threshold, or overlapped from the level above is
/// left alone, and tombstones above the bottom do not count.
#[test]
fn a_cold_run_with_garbage_is_rewritten_alone_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    // Ten keys with four versions each, and two keys put then deleted: 44 entries,
    // 12 distinct keys, 2 tombstones.
    let mut entries = Vec::new();
    let mut lsn = 0;
    for round in [&b"a"[..], b"b", b"c", b"d"] {
        for i in 0..10 {
            lsn += 1;
            entries.push((key_n(i), lsn, Some(round)));
        }
    }
    for i in [20, 21] {
        entries.push((key_n(i), 41 + u64::from(i - 20), Some(&b"x"[..])));
        entries.push((key_n(i), 43 + u64::from(i - 20), None));
    }
    place(&mut lsm, 1, &entries);
    let opts = CompactionOptions::default();
    let run = lsm.version.level(1)[0].clone();
    assert_eq!(
        (
            run.file().entries(),
            run.file().distinct_keys(),
            run.file().tombstones()
        ),
        (44, 12, 2)
    );
    assert!(
        compaction::pick_garbage(&lsm.version, &opts, Lsn::new(43)).is_none(),
        "newer than the floor"
    );
    let strict = CompactionOptions {
        garbage_percent: 90,
        ..opts
    };
    assert!(
        compaction::pick_garbage(&lsm.version, &strict, Lsn::new(100)).is_none(),
        "under the threshold"
    );
    let task =
        compaction::pick_garbage(&lsm.version, &opts, Lsn::new(100)).expect("34 of 44 entries go");
    assert_eq!(
        (task.inputs.len(), task.output_level, task.bottommost),
        (1, 1, true)
    );
    lsm.execute(&task, 100, &opts);
    let run = lsm.version.level(1)[0].clone();
    assert_eq!((run.file().entries(), run.file().tombstones()), (10, 0));
    assert!(
        compaction::pick_garbage(&lsm.version, &opts, Lsn::new(100)).is_none(),
        "nothing left"
    );
    let view = lsm.view(100);
    assert_eq!(
        view.get(key_n(3).as_bytes()).unwrap(),
        Some((Lsn::new(34), b"d".to_vec()))
    );
    assert_eq!(view.get(key_n(20).as_bytes()).unwrap(), None);

    // Above a level holding its keys, a run's tombstones are not garbage.
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    place(&mut lsm, 2, &[(key_n(20), 1, Some(&b"old"[..]))]);
    let deletes: Vec<_> = (20..30)
        .map(|i| (key_n(i), 10 + u64::from(i), None))
        .collect();
    place(&mut lsm, 1, &deletes);
    assert!(compaction::pick_garbage(&lsm.version, &opts, Lsn::new(100)).is_none());

    // A run that a run of the level above overlaps is not cold: that merge comes first.
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 128);
    place(&mut lsm, 1, &entries);
    assert!(compaction::pick_garbage(&lsm.version, &opts, Lsn::new(100)).is_some());
    place(&mut lsm, 0, &[(key_n(5), 90, Some(&b"new"[..]))]);
    assert!(compaction::pick_garbage(&lsm.version, &opts, Lsn::new(100)).is_none());
}

/// A merge split into key ranges (subcompactions, one thread each) keeps and drops
/// exactly what the same merge on one thread does: the same entries counted, the same
/// versions and tombstones dropped, the same reads at every LSN from the floor up; its
/// outputs are disjoint and in key order, and the ranges ran on their own threads.
#[test]
fn a_merge_split_into_key_ranges_matches_the_merge_on_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut lsm = Lsm::new(dir.path(), true, 256);
    let key = |i: u64| format!("account/{:06}", i * 7919 % 3000).into_bytes();
    let mut lsn = 0;
    for round in 0..4u64 {
        let m = lsm.memtables[0].clone();
        for i in 0..1500u64 {
            lsn += 1;
            if (i + round) % 11 == 0 {
                m.insert(&key(i + round * 500), Lsn::new(lsn), EntryKind::Delete, &[]);
            } else {
                let value = vec![(i % 251) as u8; 40 + (i % 13) as usize];
                m.insert(&key(i + round * 500), Lsn::new(lsn), EntryKind::Put, &value);
            }
        }
        lsm.flush();
    }
    lsm.flush();
    let inputs: Vec<(usize, Arc<Run>)> = lsm
        .version
        .level(0)
        .iter()
        .map(|r| (0, r.clone()))
        .collect();
    let input_bytes: u64 = inputs.iter().map(|(_, r)| r.file().len()).sum();
    // Room for three ranges of at least one output each.
    let task = compaction::Task::merge(inputs, 1, true, input_bytes / 3);
    let floor = Lsn::new(lsn - 2000);
    let threads_used = std::sync::Mutex::new(Vec::new());
    let writer = || {
        let name = std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string();
        // A subcompaction's thread yields to commits (Linux: nice 10 or lower still).
        #[cfg(target_os = "linux")]
        if name == "aedb-subcompact" {
            let nice =
                rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
            assert!(
                nice >= compaction::SUBCOMPACTION_NICE,
                "a subcompaction at nice {nice}"
            );
        }
        threads_used.lock().unwrap().push(name);
        lsm.writer()
    };
    let one = compaction::compact_parallel(&task, floor, None, 1, &writer).unwrap();
    assert!(
        threads_used
            .lock()
            .unwrap()
            .iter()
            .all(|t| t != "aedb-subcompact")
    );
    threads_used.lock().unwrap().clear();
    let split = compaction::compact_parallel(&task, floor, None, 3, &writer).unwrap();
    let subcompactions = threads_used
        .lock()
        .unwrap()
        .iter()
        .filter(|t| *t == "aedb-subcompact")
        .count();
    assert_eq!(subcompactions, 3, "three ranges, each on its own thread");
    assert_eq!((one.ranges, split.ranges), (0, 3));

    assert_eq!(
        (
            split.entries_in,
            split.dropped_versions,
            split.dropped_tombstones
        ),
        (one.entries_in, one.dropped_versions, one.dropped_tombstones)
    );
    assert!(one.dropped_versions > 0 && one.dropped_tombstones > 0);
    for pair in split.outputs.windows(2) {
        assert!(
            pair[0].last_key < pair[1].first_key,
            "outputs overlap or are out of order"
        );
    }
    let version_of = |outputs: &[aedb_checkpoint::RunInfo]| {
        let added = outputs.iter().map(|o| (1, lsm.open(o.file_id))).collect();
        Arc::new(Version::empty().apply(&Edit {
            added,
            ..Edit::default()
        }))
    };
    let (a, b) = (version_of(&one.outputs), version_of(&split.outputs));
    for at in [floor.get(), floor.get() + 700, lsn] {
        let read = |v: &Arc<Version>| -> Vec<ScanItem> {
            View::new(vec![], v.clone(), Lsn::new(at))
                .scan(Bound::Unbounded, Bound::Unbounded, Direction::Forward)
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let (x, y) = (read(&a), read(&b));
        assert!(!x.is_empty());
        assert_eq!(x, y, "reads at {at} differ");
    }
}
