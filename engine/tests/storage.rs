//! The disk-resident LSM through the public API: a small memory budget makes memtables
//! flush into run files by themselves, background compaction keeps level 0 short,
//! reads as of older LSNs work inside the retention window and are refused (typed,
//! naming the oldest readable LSN) outside it, and everything survives a reopen.

use std::path::Path;
use std::time::{Duration, Instant};

use aedb::{AedbConfig, AedbInstance, Lsn, MemoryBudget, Namespace};

const KEY: [u8; 32] = [0x11; 32];
const DATA_KEY: [u8; 32] = [0x22; 32];

fn config(retention: u64) -> AedbConfig {
    AedbConfig::production(KEY)
        .with_checkpoint_key(DATA_KEY)
        .memory_budget(MemoryBudget {
            memtable_bytes: 64 << 10,
            block_cache_bytes: 256 << 10,
            ..MemoryBudget::default()
        })
        .history_retention(retention)
}

fn setup(db: &AedbInstance) -> Namespace {
    db.create_project("ledger").unwrap();
    db.create_scope("ledger", "main").unwrap();
    Namespace::parse("ledger", "main").unwrap()
}

fn value(key: u32, round: u32) -> String {
    format!("{key:05}-round{round}-{}", "x".repeat(100))
}

/// The value of account `k` in `snap` (which must hold it).
fn account(snap: &aedb::ReadSnapshot, ns: &Namespace, k: u32) -> Vec<u8> {
    snap.kv_get(ns, format!("acct{k:05}").as_bytes())
        .unwrap()
        .unwrap_or_else(|| panic!("account {k} is missing"))
        .value
        .as_bytes()
        .to_vec()
}

#[test]
fn a_small_budget_flushes_and_compacts_by_itself_and_reads_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = AedbInstance::open(dir.path(), config(0)).unwrap();
    let ns = setup(&db);
    // 5 rounds over 1,000 keys: ~120 KB per round, several memtables' worth.
    for round in 0..5u32 {
        for k in 0..1000u32 {
            db.kv_put(&ns, format!("acct{k:05}"), value(k, round))
                .unwrap();
        }
    }
    let m = db.operational_metrics();
    assert!(
        m.memtables_frozen >= 4,
        "memtables frozen: {}",
        m.memtables_frozen
    );
    // The sealer flushes frozen memtables within its tick; compaction follows.
    let deadline = Instant::now() + Duration::from_secs(20);
    let settled = |m: &aedb::OperationalMetrics| {
        m.compactions > 0 && m.storage.level_runs[0] < 4 && m.storage.memtables == 1
    };
    while !settled(&db.operational_metrics()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = db.operational_metrics();
    assert!(
        m.compactions >= 1,
        "no background compaction: {:?}",
        m.storage
    );
    // Every frozen memtable was flushed and level 0 compacted below its trigger.
    assert!(settled(&m), "{:?}", m.storage);
    assert!(m.storage.memtable_bytes < 64 << 10, "{:?}", m.storage);
    assert!(m.storage.cache_capacity >= 256 << 10);
    let snap = db.snapshot().unwrap();
    assert_eq!(snap.kv_len(&ns).unwrap(), 1000);
    for k in (0..1000u32).step_by(37) {
        assert_eq!(account(&snap, &ns, k), value(k, 4).as_bytes());
    }
    let last = snap.lsn();
    drop(snap);
    db.shutdown().unwrap();

    let db = AedbInstance::open(dir.path(), config(0)).unwrap();
    let snap = db.snapshot().unwrap();
    assert_eq!(snap.lsn(), last);
    assert_eq!(snap.kv_len(&ns).unwrap(), 1000);
    // Open replayed only the WAL after the last flush, not the history.
    assert!(
        db.operational_metrics().recovery_frames < 1000,
        "replayed {}",
        db.operational_metrics().recovery_frames
    );
    drop(snap);
    db.shutdown().unwrap();
}

/// Flushes keep landing while background compactions write their outputs: a
/// compaction allocated its output ids before a later flush was recorded, and both
/// edits must be accepted (a compaction recorded out of id order used to be refused as
/// a reused id, so under load nothing was ever compacted).
#[test]
fn compactions_and_flushes_interleave_under_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(AedbInstance::open(dir.path(), config(0)).unwrap());
    let ns = setup(&db);
    let writers: Vec<_> = (0..4u32)
        .map(|t| {
            let (db, ns) = (db.clone(), ns.clone());
            std::thread::spawn(move || {
                for round in 0..3u32 {
                    for k in 0..1000u32 {
                        let key = t * 1000 + k;
                        db.kv_put(&ns, format!("acct{key:05}"), value(key, round))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let m = db.operational_metrics();
    assert_eq!(m.checkpoint_failures, 0, "a flush or compaction failed");
    assert!(m.compactions >= 2, "compactions: {}", m.compactions);
    let snap = db.snapshot().unwrap();
    assert_eq!(snap.kv_len(&ns).unwrap(), 4000);
    for key in (0..4000u32).step_by(97) {
        assert_eq!(account(&snap, &ns, key), value(key, 2).as_bytes());
    }
    drop(snap);
    let db = std::sync::Arc::into_inner(db).unwrap();
    db.shutdown().unwrap();
    let db = AedbInstance::open(dir.path(), config(0)).unwrap();
    assert_eq!(db.snapshot().unwrap().kv_len(&ns).unwrap(), 4000);
    db.shutdown().unwrap();
}

#[test]
fn snapshot_at_reads_history_inside_the_retention_window_and_refuses_older() {
    for retention in [0u64, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let db = AedbInstance::open(dir.path(), config(retention)).unwrap();
        let ns = setup(&db);
        let mut at = Vec::new();
        // Three checkpoints: three level-0 runs, below the background compaction's
        // trigger (four), so nothing is compacted until `compact_now`.
        for round in 0..3u32 {
            for k in 0..50u32 {
                db.kv_put(&ns, format!("acct{k:05}"), value(k, round))
                    .unwrap();
            }
            at.push(db.snapshot().unwrap().lsn());
            db.checkpoint_now().unwrap();
        }
        // Before any compaction every LSN is readable, exactly.
        for (round, lsn) in at.iter().enumerate() {
            let then = db.snapshot_at(*lsn).unwrap();
            let e = then.kv_get(&ns, b"acct00007").unwrap().unwrap();
            assert_eq!(e.value.as_bytes(), value(7, round as u32).as_bytes());
            assert_eq!(then.lsn(), *lsn);
        }
        let newest = at[2];
        let future = db.snapshot_at(Lsn::new(newest.get() + 1_000)).unwrap_err();
        assert_eq!(future.code(), "read.future_lsn");

        let report = db.compact_now().unwrap();
        assert!(report.compactions >= 1);
        if retention == 0 {
            // The full compaction kept only the newest versions: older LSNs are refused,
            // naming the oldest readable one.
            assert!(report.dropped_versions >= 100, "{report:?}");
            assert_eq!(
                db.operational_metrics().storage.oldest_readable_lsn,
                newest.get()
            );
            let err = db.snapshot_at(at[0]).unwrap_err();
            assert_eq!(err.code(), "read.too_old");
            assert!(err.to_string().contains(&newest.to_string()), "{err}");
        } else {
            // Inside the window nothing was dropped and history stays exact.
            assert_eq!(report.dropped_versions, 0, "{report:?}");
            for (round, lsn) in at.iter().enumerate() {
                let then = db.snapshot_at(*lsn).unwrap();
                let e = then.kv_get(&ns, b"acct00007").unwrap().unwrap();
                assert_eq!(e.value.as_bytes(), value(7, round as u32).as_bytes());
            }
        }
        let now = db.snapshot_at(newest).unwrap();
        assert_eq!(now.kv_len(&ns).unwrap(), 50);
        drop(now);
        db.shutdown().unwrap();
        // The floor is in the manifest: after a restart the same LSNs are refused (or
        // read exactly), not silently read from what compaction left.
        let db = AedbInstance::open(dir.path(), config(retention)).unwrap();
        let oldest = db.operational_metrics().storage.oldest_readable_lsn;
        if retention == 0 {
            assert_eq!(oldest, newest.get());
            let err = db.snapshot_at(at[0]).unwrap_err();
            assert_eq!(err.code(), "read.too_old");
        } else {
            assert_eq!(oldest, 0);
            for (round, lsn) in at.iter().enumerate() {
                let then = db.snapshot_at(*lsn).unwrap();
                let e = then.kv_get(&ns, b"acct00007").unwrap().unwrap();
                assert_eq!(e.value.as_bytes(), value(7, round as u32).as_bytes());
            }
        }
        db.shutdown().unwrap();
    }
}

/// A clean shutdown checkpoints (the memtable becomes a run, the WAL segment it covered
/// is sealed and retired), so the next open reads run metadata and replays nothing; with
/// `checkpoint_on_shutdown(false)` the WAL is replayed instead. Same data either way.
#[test]
fn a_clean_shutdown_checkpoints_so_the_next_open_replays_nothing() {
    for on in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        // A memtable that holds all 200 puts, so only the shutdown can checkpoint them.
        let config = || {
            config(0)
                .memory_budget(MemoryBudget {
                    memtable_bytes: 1 << 20,
                    block_cache_bytes: 256 << 10,
                    ..MemoryBudget::default()
                })
                .checkpoint_on_shutdown(on)
        };
        let db = AedbInstance::open(dir.path(), config()).unwrap();
        let ns = setup(&db);
        for k in 0..200u32 {
            db.kv_put(&ns, format!("acct{k:05}"), value(k, 1)).unwrap();
        }
        let last = db.snapshot().unwrap().lsn();
        db.shutdown().unwrap();
        let segments = std::fs::read_dir(dir.path().join("wal")).unwrap().count();

        let db = AedbInstance::open(dir.path(), config()).unwrap();
        let snap = db.snapshot().unwrap();
        assert_eq!(snap.lsn(), last, "checkpoint_on_shutdown({on})");
        assert_eq!(snap.kv_len(&ns).unwrap(), 200);
        let e = snap.kv_get(&ns, b"acct00123").unwrap().unwrap();
        assert_eq!(e.value.as_bytes(), value(123, 1).as_bytes());
        let frames = db.operational_metrics().recovery_frames;
        if on {
            assert_eq!(frames, 0, "nothing to replay");
            assert_eq!(segments, 1, "only the fresh, empty segment is left");
        } else {
            assert!(frames >= 200, "the puts are replayed: {frames}");
        }
        drop(snap);
        db.shutdown().unwrap();
    }
}

/// Opens `dir` with `config`, writes accounts `0..2000` (version 0), flushes and
/// compacts them into run files, and shuts down; returns the namespace.
fn write_accounts_compacted(dir: &std::path::Path, config: AedbConfig) -> Namespace {
    let db = AedbInstance::open(dir, config).unwrap();
    let ns = setup(&db);
    for k in 0..2000u32 {
        db.kv_put(&ns, format!("acct{k:05}"), value(k, 0)).unwrap();
    }
    db.checkpoint_now().unwrap();
    db.compact_now().unwrap();
    db.shutdown().unwrap();
    ns
}

/// Runs written with LZ4 block compression read back exactly, through compaction and a
/// reopen with compression off (each file says how its blocks are stored), and take
/// less disk for compressible values.
#[test]
fn lz4_compressed_runs_read_back_and_mix_with_uncompressed_ones() {
    let run_bytes = |dir: &std::path::Path| -> u64 {
        std::fs::read_dir(dir.join("checkpoints"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let mut sizes = Vec::new();
    for compression in [aedb::BlockCompression::None, aedb::BlockCompression::Lz4] {
        let dir = tempfile::tempdir().unwrap();
        let ns = write_accounts_compacted(dir.path(), config(0).block_compression(compression));
        sizes.push(run_bytes(dir.path()));

        // Reopened with compression off: the compressed runs still read, and new runs
        // are written uncompressed beside them.
        let db = AedbInstance::open(dir.path(), config(0)).unwrap();
        for k in (0..2000u32).step_by(2) {
            db.kv_put(&ns, format!("acct{k:05}"), value(k, 1)).unwrap();
        }
        db.checkpoint_now().unwrap();
        let snap = db.snapshot().unwrap();
        assert_eq!(snap.kv_len(&ns).unwrap(), 2000);
        for k in (0..2000u32).step_by(7) {
            assert_eq!(
                account(&snap, &ns, k),
                value(k, 1 - k % 2).as_bytes(),
                "{compression:?}"
            );
        }
        drop(snap);
        db.compact_now().unwrap();
        assert_eq!(db.snapshot().unwrap().kv_len(&ns).unwrap(), 2000);
        db.shutdown().unwrap();
    }
    assert!(
        sizes[1] < sizes[0] * 3 / 4,
        "LZ4 runs of compressible values are smaller: {sizes:?}"
    );
}

/// `run_block_size` shapes the run files written from then on: reading every key once
/// from a cold cache loads about one block per `run_block_size` bytes, so 512-byte
/// blocks take several times the loads of 4 KiB ones, and every value reads back.
#[test]
fn run_block_size_sets_the_blocks_new_runs_are_cut_into() {
    let mut misses = Vec::new();
    for block_size in [512, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = || config(0).run_block_size(block_size);
        let ns = write_accounts_compacted(dir.path(), cfg());
        let db = AedbInstance::open(dir.path(), cfg()).unwrap();
        let before = db.operational_metrics().storage.cache_misses;
        let snap = db.snapshot().unwrap();
        for k in 0..2000u32 {
            assert_eq!(account(&snap, &ns, k), value(k, 0).as_bytes());
        }
        drop(snap);
        misses.push(db.operational_metrics().storage.cache_misses - before);
        db.shutdown().unwrap();
    }
    assert!(
        misses[0] > 3 * misses[1],
        "512-byte blocks load several times the 4 KiB ones: {misses:?}"
    );
}

/// `kv_scan_with` visits exactly what `kv_scan_range` returns (keys, values, LSNs, order),
/// across the memtable and run files, both directions, under limits, and stops when the
/// visitor breaks.
#[test]
fn kv_scan_with_visits_what_kv_scan_range_returns() {
    use std::ops::{Bound, ControlFlow};

    use aedb::Direction;

    let dir = tempfile::tempdir().unwrap();
    let db = AedbInstance::open(dir.path(), config(0)).unwrap();
    let ns = setup(&db);
    for k in 0..1500u32 {
        db.kv_put(&ns, format!("acct{k:05}"), value(k, 0)).unwrap();
    }
    db.checkpoint_now().unwrap();
    // Newer versions of some keys, and new keys, in the memtable over the runs.
    for k in (0..1500u32).step_by(7).chain(1500..1600) {
        db.kv_put(&ns, format!("acct{k:05}"), value(k, 1)).unwrap();
    }
    let snap = db.snapshot().unwrap();
    type Range<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);
    let ranges: [Range<'_>; 3] = [
        (Bound::Unbounded, Bound::Unbounded),
        (Bound::Included(b"acct00100"), Bound::Excluded(b"acct01555")),
        (Bound::Excluded(b"acct00007"), Bound::Included(b"acct00100")),
    ];
    for (start, end) in ranges {
        for direction in [Direction::Forward, Direction::Reverse] {
            for limit in [0, 1, 50, 10_000] {
                let page = snap
                    .kv_scan_range(&ns, start, end, direction, limit)
                    .unwrap();
                let mut seen = Vec::new();
                let n = snap
                    .kv_scan_with(&ns, start, end, direction, limit, |k, v, lsn| {
                        seen.push((k.to_vec(), v.to_vec(), lsn));
                        ControlFlow::Continue(())
                    })
                    .unwrap();
                let expected: Vec<_> = page
                    .items
                    .iter()
                    .map(|(k, e)| (k.as_bytes().to_vec(), e.value.as_bytes().to_vec(), e.lsn))
                    .collect();
                assert_eq!(n, expected.len());
                assert_eq!(seen, expected, "{start:?}..{end:?} {direction:?} {limit}");
            }
        }
    }
    // A visitor that breaks after 3 entries has visited 3.
    let mut count = 0;
    let n = snap
        .kv_scan_with(
            &ns,
            Bound::Unbounded,
            Bound::Unbounded,
            Direction::Forward,
            100,
            |_, _, _| {
                count += 1;
                if count == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .unwrap();
    assert_eq!((n, count), (3, 3));
}

/// A table of `id` (U64, the key) and `note` (text).
fn id_note_schema() -> aedb::TableSchema {
    use aedb::{ColumnDef, ColumnName, ColumnType, TableSchema};
    TableSchema::new(
        vec![
            ColumnDef::new(ColumnName::new("id").unwrap(), ColumnType::U64),
            ColumnDef::new(ColumnName::new("note").unwrap(), ColumnType::Text),
        ],
        vec![ColumnName::new("id").unwrap()],
    )
    .unwrap()
}

/// Inserts rows `0..rows` of an [`id_note_schema`] table in one commit.
fn fill(db: &AedbInstance, ns: &Namespace, table: &aedb::TableName, rows: u64) {
    use aedb::{ColumnName, Transaction, Value};
    let mut tx = Transaction::new();
    for id in 0..rows {
        tx = tx.table_insert(
            ns,
            table,
            vec![
                (ColumnName::new("id").unwrap(), Value::U64(id)),
                (
                    ColumnName::new("note").unwrap(),
                    Value::Text("x".repeat(40)),
                ),
            ],
        );
    }
    db.commit(tx).unwrap();
}

/// An instance (history window of 5 LSNs) with two empty tables, `gone` (to be
/// dropped) and `kept`.
fn gone_and_kept(dir: &Path) -> (AedbInstance, Namespace, aedb::TableName, aedb::TableName) {
    let (gone, kept) = (
        aedb::TableName::new("gone").unwrap(),
        aedb::TableName::new("kept").unwrap(),
    );
    let db = AedbInstance::open(dir, config(5)).unwrap();
    let ns = setup(&db);
    for table in [&gone, &kept] {
        db.create_table(&ns, table.as_str(), id_note_schema())
            .unwrap();
    }
    (db, ns, gone, kept)
}

/// A dropped table's rows stay on disk, unreachable, while the history window still
/// reaches back before the drop (`snapshot_at` there reads them); once the window has
/// passed the drop, compaction frees them. Other tables keep theirs, and a table
/// created again under the same name starts empty.
#[test]
fn compaction_frees_the_rows_of_a_dropped_table_once_the_window_has_passed_the_drop() {
    use aedb::Ddl;
    let dir = tempfile::tempdir().unwrap();
    let (db, ns, gone, kept) = gone_and_kept(dir.path());
    fill(&db, &ns, &gone, 200);
    fill(&db, &ns, &kept, 20);
    db.checkpoint_now().unwrap();
    let before_drop = db.snapshot().unwrap().lsn();
    db.ddl(Ddl::DropTable {
        ns: ns.clone(),
        table: gone.clone(),
    })
    .unwrap();
    // The drop reaches the runs (a compaction only acts on drops its inputs hold).
    db.checkpoint_now().unwrap();

    // Inside the window the rows stay: a read as of before the drop sees them.
    let report = db.compact_now().unwrap();
    assert_eq!(report.dropped_table_rows, 0, "{report:?}");
    let then = db.snapshot_at(before_drop).unwrap();
    assert_eq!(then.table_len(&ns, &gone).unwrap(), 200);
    drop(then);

    // Past the window: freed, and counted, even though they sit in one bottom-level
    // run (a full compaction rewrites a lone run too).
    for i in 0..6 {
        db.kv_put(&ns, format!("filler{i}"), "y").unwrap();
    }
    let report = db.compact_now().unwrap();
    assert_eq!(report.dropped_table_rows, 200, "{report:?}");
    assert_eq!(db.operational_metrics().dropped_table_rows, 200);
    assert_eq!(
        db.snapshot_at(before_drop).unwrap_err().code(),
        "read.too_old"
    );
    let now = db.snapshot().unwrap();
    assert_eq!(now.table_len(&ns, &kept).unwrap(), 20);
    assert!(now.table_len(&ns, &gone).is_err(), "the table is gone");
    drop(now);

    // The same name again: a new, empty table; nothing comes back after a reopen either.
    db.create_table(&ns, gone.as_str(), id_note_schema())
        .unwrap();
    assert_eq!(db.snapshot().unwrap().table_len(&ns, &gone).unwrap(), 0);
    fill(&db, &ns, &gone, 3);
    db.shutdown().unwrap();
    let db = AedbInstance::open(dir.path(), config(5)).unwrap();
    let snap = db.snapshot().unwrap();
    assert_eq!(snap.table_len(&ns, &gone).unwrap(), 3);
    assert_eq!(snap.table_len(&ns, &kept).unwrap(), 20);
    drop(snap);
    let report = db.compact_now().unwrap();
    assert_eq!(report.dropped_table_rows, 0, "{report:?}");
    db.shutdown().unwrap();
}

/// A run holding only rows of a table dropped at or below the retention floor is
/// removed without being read (dropping a large table frees its files at once, however
/// cold they are); runs with anything else in them stay, and reads elsewhere are
/// unchanged, after a reopen too.
#[test]
fn runs_holding_only_a_dropped_tables_rows_are_removed_unread() {
    use aedb::Ddl;
    let dir = tempfile::tempdir().unwrap();
    let (db, ns, gone, kept) = gone_and_kept(dir.path());
    fill(&db, &ns, &kept, 20);
    db.checkpoint_now().unwrap();
    // One run of `gone`'s rows alone.
    fill(&db, &ns, &gone, 200);
    db.checkpoint_now().unwrap();
    let runs = db.operational_metrics().storage.level_runs[0];
    assert_eq!(
        runs, 2,
        "the catalog with `kept`'s rows, then `gone`'s rows"
    );
    let before_drop = db.snapshot().unwrap().lsn();
    db.ddl(Ddl::DropTable {
        ns: ns.clone(),
        table: gone.clone(),
    })
    .unwrap();
    // Inside the window a read as of before the drop still sees the rows.
    assert_eq!(
        db.snapshot_at(before_drop)
            .unwrap()
            .table_len(&ns, &gone)
            .unwrap(),
        200
    );
    // Past the window, once the drop is flushed: that run is removed unread (its rows
    // are never merged, so none is counted as dropped by a merge). An idle
    // compactor's sweep may get there first; either way it is counted once.
    for i in 0..6 {
        db.kv_put(&ns, format!("filler{i}"), "y").unwrap();
    }
    db.checkpoint_now().unwrap();
    let report = db.compact_now().unwrap();
    assert_eq!(report.dropped_table_rows, 0, "{report:?}");
    assert_eq!(db.operational_metrics().compaction_dropped_runs, 1);
    assert_eq!(
        db.snapshot_at(before_drop).unwrap_err().code(),
        "read.too_old"
    );
    assert_eq!(db.snapshot().unwrap().table_len(&ns, &kept).unwrap(), 20);
    db.shutdown().unwrap();
    let db = AedbInstance::open(dir.path(), config(5)).unwrap();
    let snap = db.snapshot().unwrap();
    assert_eq!(snap.table_len(&ns, &kept).unwrap(), 20);
    assert!(snap.table_len(&ns, &gone).is_err(), "the table is gone");
    assert_eq!(
        db.snapshot_at(before_drop).unwrap_err().code(),
        "read.too_old"
    );
    drop(snap);
    db.shutdown().unwrap();
}

/// A drop that is not flushed yet removes nothing, even past the history window:
/// recovery starts from the flushed runs (and a backup from their LSN), where the
/// table still exists, so its rows must still be there.
#[test]
fn an_unflushed_drop_removes_no_run() {
    use aedb::{Ddl, TableName};
    let gone = TableName::new("gone").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = AedbInstance::open(dir.path(), config(5)).unwrap();
    let ns = setup(&db);
    db.create_table(&ns, gone.as_str(), id_note_schema())
        .unwrap();
    db.checkpoint_now().unwrap();
    fill(&db, &ns, &gone, 200);
    db.checkpoint_now().unwrap();
    db.ddl(Ddl::DropTable {
        ns: ns.clone(),
        table: gone.clone(),
    })
    .unwrap();
    for i in 0..6 {
        db.kv_put(&ns, format!("filler{i}"), "y").unwrap();
    }
    let report = db.compact_now().unwrap();
    assert_eq!(
        (report.dropped_runs, report.dropped_table_rows),
        (0, 0),
        "{report:?}"
    );
    assert_eq!(db.operational_metrics().compaction_dropped_runs, 0);
    assert!(db.snapshot().unwrap().table_len(&ns, &gone).is_err());
    db.shutdown().unwrap();
}

/// A sequential load is written once: its level-0 runs (full memtables' flushes) overlap
/// nothing, so compaction moves them down a level (the same files, re-filed by one
/// manifest edit) instead of rewriting them, and the moved runs read back, survive a
/// reopen and pass the offline invariant check. The small runs of frequent checkpoints
/// are merged instead (see `CompactionOptions::min_move_bytes`).
#[test]
fn a_sequential_load_is_moved_down_not_rewritten() {
    // Full 1 MiB memtables of incompressible 1 KiB values: runs of ~800 KB, each over
    // the move threshold.
    let config = || {
        AedbConfig::production(KEY)
            .with_checkpoint_key(DATA_KEY)
            .memory_budget(MemoryBudget {
                memtable_bytes: 1 << 20,
                block_cache_bytes: 1 << 20,
                ..MemoryBudget::default()
            })
            .history_retention(0)
    };
    let noise = |k: u32, round: u32| -> Vec<u8> {
        let mut x = u64::from(k) << 32 | u64::from(round) | 1;
        (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    const KEYS: u32 = 5000;
    let dir = tempfile::tempdir().unwrap();
    let db = AedbInstance::open(dir.path(), config()).unwrap();
    let ns = setup(&db);
    let load = |db: &AedbInstance, keys: &mut dyn Iterator<Item = u32>, round: u32| loop {
        let batch: Vec<u32> = keys.take(100).collect();
        if batch.is_empty() {
            break;
        }
        let tx = batch.iter().fold(aedb::Transaction::new(), |tx, &k| {
            tx.kv_put(
                &ns,
                aedb::KvKey::new(format!("acct{k:05}")).unwrap(),
                aedb::KvValue::new(noise(k, round)).unwrap(),
            )
        });
        db.commit(tx).unwrap();
    };
    load(&db, &mut (0..KEYS), 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let settled = |m: &aedb::OperationalMetrics| {
        m.compaction_moved_runs >= 4 && m.storage.level_runs[0] < 4 && m.storage.memtables == 1
    };
    while !settled(&db.operational_metrics()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = db.operational_metrics();
    assert!(
        settled(&m),
        "moved {}: {:?}",
        m.compaction_moved_runs,
        m.storage
    );
    assert_eq!(m.compaction_bytes_written, 0, "nothing was rewritten");
    assert!(m.storage.level_runs[1] >= 4, "{:?}", m.storage);
    let read = |db: &AedbInstance, k: u32| -> Vec<u8> {
        db.snapshot()
            .unwrap()
            .kv_get(&ns, format!("acct{k:05}").as_bytes())
            .unwrap()
            .unwrap_or_else(|| panic!("acct{k:05} is missing"))
            .value
            .as_bytes()
            .to_vec()
    };
    assert_eq!(db.snapshot().unwrap().kv_len(&ns).unwrap(), KEYS as usize);
    for k in (0..KEYS).step_by(97) {
        assert_eq!(read(&db, k), noise(k, 0));
    }
    db.shutdown().unwrap();

    for c in aedb::offline::check_invariants(dir.path(), &config()).unwrap() {
        assert_eq!(
            c.status,
            aedb::offline::CheckStatus::Pass,
            "{}: {}",
            c.name,
            c.detail
        );
    }
    let db = AedbInstance::open(dir.path(), config()).unwrap();
    assert_eq!(db.snapshot().unwrap().kv_len(&ns).unwrap(), KEYS as usize);
    assert_eq!(read(&db, KEYS - 1), noise(KEYS - 1, 0));
    // Moved runs are merged like any other once writes overlap them.
    load(&db, &mut (0..KEYS).step_by(3), 1);
    db.checkpoint_now().unwrap();
    let report = db.compact_now().unwrap();
    assert!(report.compactions >= 1, "{report:?}");
    assert!(db.operational_metrics().compaction_bytes_written > 0);
    assert_eq!(read(&db, 3), noise(3, 1));
    assert_eq!(read(&db, 4), noise(4, 0));
    db.shutdown().unwrap();
}

/// A cold run keeping versions the history window needed when it was written sheds
/// them by itself once the window has moved on: an idle compactor's sweep (one runs
/// soon after open, so this one or the next instance's) rewrites it alone, and reads
/// are unchanged.
#[test]
fn an_idle_compactor_rewrites_a_cold_run_whose_history_expired() {
    let dir = tempfile::tempdir().unwrap();
    let db = AedbInstance::open(dir.path(), config(50)).unwrap();
    let ns = setup(&db);
    for round in 0..5 {
        for k in 0..20 {
            db.kv_put(&ns, format!("g{k:02}"), format!("round{round}"))
                .unwrap();
        }
    }
    // Flushed and merged into the bottom level, keeping the versions of the last 50
    // LSNs.
    db.checkpoint_now().unwrap();
    db.compact_now().unwrap();
    let bottom = db.operational_metrics().storage;
    assert_eq!(bottom.level_runs[..2], [0, 1], "{bottom:?}");
    // The window moves on; the new keys sort after the old run's, so nothing merges
    // into it.
    for i in 0..100 {
        db.kv_put(&ns, format!("z{i:03}"), "y").unwrap();
    }
    db.shutdown().unwrap();
    let db = AedbInstance::open(dir.path(), config(50)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = db.operational_metrics().storage;
        if now.level_bytes[1] < bottom.level_bytes[1] {
            assert_eq!(now.level_runs[1], 1, "{now:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cold run was not rewritten: {bottom:?} then {now:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let snap = db.snapshot().unwrap();
    for k in 0..20 {
        let got = snap.kv_get(&ns, format!("g{k:02}").as_bytes()).unwrap();
        assert_eq!(got.unwrap().value.as_bytes(), b"round4");
    }
    drop(snap);
    db.shutdown().unwrap();
}
