//! Run files (checkpoint format version 2): round trips through the writer and reader,
//! the writer's file protocol on the simulated disk, and tamper evidence (every byte,
//! every truncation, swapped blocks, wrong keys and databases).

use aedb_checkpoint::{
    BlockKind, CheckpointError, CheckpointMeta, CheckpointWriter, Compression, CounterNonce,
    DataBlock, EntryKind, EntryProblem, FixedNonce, HeaderProblem, OpenMode, OsNonceSource,
    RUN_FOOTER_LEN, RUN_HEADER_LEN, RunFile, RunFileMeta, RunHeader, RunHeaderProblem, RunInfo,
    RunOptions, RunWriter, list_checkpoints, list_run_files, open_checkpoint,
    remove_stale_run_temp_files, run_file_name,
};
use aedb_fs::{FaultOp, SharedFs, SimFault, SimFs};
use aedb_keys::{EpochKey, SecretKey};
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const DB: DatabaseId = DatabaseId::from_bytes([0xD1; 16]);
const KEY: [u8; 32] = [0x11; 32];
const EPOCH: KeyEpoch = KeyEpoch::new(2);

type Entry = (Vec<u8>, u64, EntryKind, Vec<u8>);

fn key() -> SecretKey {
    SecretKey::new(KEY)
}

fn key_for(epoch: KeyEpoch) -> Option<SecretKey> {
    (epoch == EPOCH).then(key)
}

fn dir() -> PathBuf {
    PathBuf::from("/data/checkpoints")
}

fn sim() -> SharedFs {
    SimFs::new(7).shared()
}

fn meta(file_id: u64) -> RunFileMeta {
    RunFileMeta {
        database: DB,
        file_id,
        epoch: EPOCH,
    }
}

fn options(block_size: usize, compression: Compression) -> RunOptions {
    RunOptions {
        block_size,
        compression,
        ..RunOptions::default()
    }
}

fn write_run(
    fs: &SharedFs,
    dir: &Path,
    file_id: u64,
    sealed: bool,
    options: RunOptions,
    entries: &[Entry],
) -> RunInfo {
    let key = key();
    let mut w = RunWriter::create(
        fs,
        dir,
        meta(file_id),
        sealed.then_some(&key),
        Box::new(OsNonceSource),
        options,
    )
    .unwrap();
    for (k, l, kind, v) in entries {
        w.add(k, Lsn::new(*l), *kind, v).unwrap();
    }
    assert_eq!(w.entries(), entries.len() as u64);
    w.finish().unwrap()
}

fn open(fs: &SharedFs, path: &Path, sealed: bool) -> Result<RunFile, CheckpointError> {
    if sealed {
        RunFile::open(&**fs, path, DB, key_for)
    } else {
        RunFile::open_plaintext(&**fs, path, DB)
    }
}

/// Opens, reads every block and verifies: what every reader of a damaged file goes through.
fn open_read_verify(fs: &SharedFs, path: &Path, sealed: bool) -> Result<u64, CheckpointError> {
    let run = open(fs, path, sealed)?;
    for i in 0..run.block_count() {
        read_block(&run, i)?;
    }
    run.verify()
}

/// Reads block `b` through the table partition covering it (the last partition for a
/// block past the end), as the storage engine does.
fn read_block(run: &RunFile, b: usize) -> Result<DataBlock, CheckpointError> {
    let p = run
        .partition_of_block(b)
        .unwrap_or(run.partition_count() - 1);
    run.read_block(&run.load_partition(p)?, b)
}

/// A small run: a Put and a Delete among several versions, in several blocks.
fn small_entries() -> Vec<Entry> {
    vec![
        (b"apple".to_vec(), 9, EntryKind::Put, b"red".to_vec()),
        (b"apple".to_vec(), 4, EntryKind::Delete, Vec::new()),
        (b"apple".to_vec(), 2, EntryKind::Put, b"green".to_vec()),
        (b"banana".to_vec(), 7, EntryKind::Put, b"yellow".to_vec()),
        (b"cherry".to_vec(), 3, EntryKind::Delete, Vec::new()),
    ]
}

/// The newest version of `key` visible at `snapshot`, found the way a point lookup does:
/// bloom filter, `block_for`, `seek`, continuing into later blocks while the key's
/// versions do.
fn lookup(run: &RunFile, key: &[u8], snapshot: Lsn) -> Option<(Lsn, EntryKind, Vec<u8>)> {
    let tables = run.load_partition(run.partition_for(key)?).unwrap();
    if !tables.may_contain(key) {
        return None;
    }
    let mut b = tables.block_for(key)?;
    loop {
        let block = read_block(run, b).unwrap();
        let i = block.seek(key, snapshot);
        if i < block.len() {
            let e = block.entry(i);
            return (e.key == key).then(|| (e.lsn, e.kind, e.value.to_vec()));
        }
        b += 1;
        if b == run.block_count() {
            return None;
        }
    }
}

fn assert_run_matches(run: &RunFile, info: &RunInfo, entries: &[Entry]) {
    assert_eq!(run.entries(), entries.len() as u64);
    assert_eq!(run.verify().unwrap(), entries.len() as u64);
    assert_eq!(run.len(), info.len);
    assert_eq!(run.sha256().unwrap(), info.sha256);
    assert_eq!(run.first_key(), entries[0].0.as_slice());
    assert_eq!(run.last_key(), entries[entries.len() - 1].0.as_slice());
    assert_eq!(
        (info.first_key.as_slice(), info.last_key.as_slice()),
        (run.first_key(), run.last_key())
    );
    let min = entries.iter().map(|e| e.1).min().unwrap();
    let max = entries.iter().map(|e| e.1).max().unwrap();
    assert_eq!(
        (run.min_lsn(), run.max_lsn()),
        (Lsn::new(min), Lsn::new(max))
    );
    assert_eq!((info.min_lsn, info.max_lsn), (Lsn::new(min), Lsn::new(max)));
    let tombstones = entries.iter().filter(|e| e.2 == EntryKind::Delete).count() as u64;
    assert_eq!(
        (run.tombstones(), info.tombstones),
        (tombstones, tombstones)
    );
    assert_eq!(info.entries, entries.len() as u64);
    assert_eq!((run.file_id(), run.epoch()), (info.file_id, info.epoch));

    // Every entry, partition by partition and block by block, in order; the partitions
    // cover the blocks exactly.
    let mut all = Vec::new();
    let mut next_block = 0;
    for p in 0..run.partition_count() {
        let tables = run.load_partition(p).unwrap();
        assert_eq!((tables.partition(), tables.blocks().start), (p, next_block));
        assert!(!tables.blocks().is_empty());
        assert!(tables.heap_bytes() > 0);
        for b in tables.blocks() {
            assert_eq!(run.partition_of_block(b), Some(p));
            let block = run.read_block(&tables, b).unwrap();
            assert!(!block.is_empty());
            assert!(block.plaintext_len() >= 4 + 15 * block.len());
            for i in 0..block.len() {
                let e = block.entry(i);
                all.push((e.key.to_vec(), e.lsn.get(), e.kind, e.value.to_vec()));
                // seek to an entry's own (key, lsn) lands on it.
                assert_eq!(block.seek(e.key, e.lsn), i);
            }
            // The block's last key leads to this block or an earlier one of the key.
            let last = &all.last().unwrap().0;
            assert!(tables.block_for(last).is_some_and(|f| f <= b));
        }
        // A block of another partition is not read through this one.
        let outside = if p == 0 { tables.blocks().end } else { 0 };
        if outside < run.block_count() {
            assert!(matches!(
                run.read_block(&tables, outside),
                Err(CheckpointError::BlockOutOfRange { .. })
            ));
        }
        next_block = tables.blocks().end;
    }
    assert_eq!(next_block, run.block_count());
    assert_eq!(all, entries);
    assert!(read_block(run, run.block_count()).is_err());

    // Point lookups at every version, just below it and at the newest snapshot.
    let mut by_key: BTreeMap<&[u8], Vec<&Entry>> = BTreeMap::new();
    for e in entries {
        by_key.entry(&e.0).or_default().push(e);
    }
    for (k, versions) in &by_key {
        let p = run.partition_for(k).unwrap();
        assert!(run.load_partition(p).unwrap().may_contain(k));
        for v in versions {
            let found = lookup(run, k, Lsn::new(v.1));
            assert_eq!(found, Some((Lsn::new(v.1), v.2, v.3.clone())));
            if v.1 > 0 {
                let expected = versions
                    .iter()
                    .find(|o| o.1 < v.1)
                    .map(|o| (Lsn::new(o.1), o.2, o.3.clone()));
                assert_eq!(lookup(run, k, Lsn::new(v.1 - 1)), expected);
            }
        }
        let newest = versions[0];
        assert_eq!(
            lookup(run, k, Lsn::MAX),
            Some((Lsn::new(newest.1), newest.2, newest.3.clone()))
        );
    }
    // A key past the last one has no block.
    let mut past = run.last_key().to_vec();
    past.push(0);
    assert_eq!(run.partition_for(&past), None);
    let last = run.load_partition(run.partition_count() - 1).unwrap();
    assert_eq!(last.block_for(&past), None);
}

fn entries_strategy() -> impl Strategy<Value = Vec<Entry>> {
    let key = prop_oneof![
        proptest::collection::vec(0u8..4, 0..4),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    let version = (
        0u64..40,
        prop_oneof![
            Just(None),
            proptest::collection::vec(any::<u8>(), 0..60).prop_map(Some)
        ],
    );
    proptest::collection::btree_map(
        key,
        proptest::collection::btree_map(version.0, version.1, 1..5),
        1..60,
    )
    .prop_map(|m| {
        let mut out = Vec::new();
        for (k, versions) in m {
            for (lsn, value) in versions.into_iter().rev() {
                let lsn = lsn * 1000 + u64::from(k.first().copied().unwrap_or(0));
                match value {
                    None => out.push((k.clone(), lsn, EntryKind::Delete, Vec::new())),
                    Some(v) => out.push((k.clone(), lsn, EntryKind::Put, v)),
                }
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip_through_blocks_seek_and_bloom(
        entries in entries_strategy(),
        block_size in prop_oneof![1usize..80, 80usize..1000, Just(4096usize)],
        sealed in any::<bool>(),
        lz4 in any::<bool>(),
        bits in prop_oneof![Just(10u32), 0u32..=20],
        partition_size in prop_oneof![Just(1usize), 1usize..200, Just(4096usize)],
    ) {
        let fs = sim();
        let compression = if lz4 { Compression::Lz4 } else { Compression::None };
        let opts = RunOptions { block_size, bloom_bits_per_key: bits, compression, partition_size };
        let info = write_run(&fs, &dir(), 9, sealed, opts, &entries);
        prop_assert_eq!(info.path.clone(), dir().join(run_file_name(9)));
        prop_assert_eq!(info.file_name.clone(), run_file_name(9));
        let bytes = aedb_fs::read_file(&*fs, &info.path).unwrap();
        prop_assert_eq!(bytes.len() as u64, info.len);
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        prop_assert_eq!(digest, info.sha256);
        // Published: no temporary file left.
        let tmp = dir().join(format!("{}.tmp", run_file_name(9)));
        prop_assert!(!fs.exists(&tmp));
        let run = open(&fs, &info.path, sealed).unwrap();
        let header = RunHeader::decode(&bytes).unwrap();
        prop_assert_eq!(*run.header(), header);
        prop_assert_eq!(header.compression, compression);
        assert_run_matches(&run, &info, &entries);
        if block_size < 16 {
            // Every entry is larger than the target: one block each.
            prop_assert_eq!(run.block_count(), entries.len());
        }
    }
}

#[test]
fn blocks_hold_what_fits_and_large_entries_get_their_own_block() {
    let fs = sim();
    let big = vec![7u8; 300_000];
    let entries: Vec<Entry> = vec![
        (b"a".to_vec(), 1, EntryKind::Put, b"x".to_vec()),
        (b"b".to_vec(), 1, EntryKind::Put, b"y".to_vec()),
        (b"c".to_vec(), 1, EntryKind::Put, big.clone()),
        (b"d".to_vec(), 1, EntryKind::Put, b"z".to_vec()),
        (
            vec![b'k'; u16::MAX as usize],
            u64::MAX,
            EntryKind::Delete,
            Vec::new(),
        ),
        (vec![b'k'; u16::MAX as usize], 0, EntryKind::Put, Vec::new()),
    ];
    for compression in [Compression::None, Compression::Lz4] {
        let info = write_run(&fs, &dir(), 1, true, options(4096, compression), &entries);
        let run = open(&fs, &info.path, true).unwrap();
        // a+b share a block; c alone; d and the first long key do not fit together.
        assert_eq!(run.block_count(), 5);
        assert_eq!(read_block(&run, 0).unwrap().len(), 2);
        assert_eq!(read_block(&run, 1).unwrap().entry(0).value, &big[..]);
        assert_run_matches(&run, &info, &entries);
        if compression == Compression::Lz4 {
            assert!(info.len < 20_000, "{} bytes", info.len);
        } else {
            assert!(info.len > 300_000 + 2 * 65_535);
        }
        fs.remove_file(&info.path).unwrap();
    }
}

#[test]
fn real_disk_round_trip_and_listing() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = aedb_fs::RealFs::shared();
    let dir = aedb_checkpoint::checkpoints_dir(tmp.path());
    let entries = small_entries();
    let info = write_run(&fs, &dir, 42, true, RunOptions::default(), &entries);
    assert_eq!(info.path, aedb_checkpoint::run_path(tmp.path(), 42));
    let on_disk = std::fs::read(&info.path).unwrap();
    assert_eq!(on_disk.len() as u64, info.len);
    let run = open(&fs, &info.path, true).unwrap();
    assert_run_matches(&run, &info, &entries);
    // A full checkpoint beside it: each lister sees only its own kind.
    let ckpt = CheckpointWriter::create(
        &fs,
        tmp.path(),
        CheckpointMeta::new(DB, Lsn::new(5), EPOCH),
        Some(&key()),
        &mut OsNonceSource,
    )
    .unwrap();
    let ckpt = ckpt.finish().unwrap();
    assert_eq!(
        list_run_files(&*fs, &dir).unwrap(),
        vec![(42, info.path.clone())]
    );
    assert_eq!(list_checkpoints(&*fs, tmp.path()).unwrap().len(), 1);
    // Each opener refuses the other format with a precise header error.
    match open_checkpoint(&*fs, &info.path, DB, key_for) {
        Err(CheckpointError::BadHeader {
            problem: HeaderProblem::RunFile,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match RunFile::open(&*fs, &ckpt.path, DB, key_for) {
        Err(CheckpointError::BadRunHeader {
            problem: RunHeaderProblem::TooShort { .. } | RunHeaderProblem::FullCheckpoint,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_run_file_types_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<RunFile>();
    shared::<DataBlock>();
    fn send<T: Send>() {}
    send::<RunWriter>();

    let fs = sim();
    let info = write_run(
        &fs,
        &dir(),
        3,
        true,
        options(16, Compression::None),
        &small_entries(),
    );
    let run = std::sync::Arc::new(open(&fs, &info.path, true).unwrap());
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let run = std::sync::Arc::clone(&run);
            std::thread::spawn(move || {
                for i in 0..run.block_count() {
                    read_block(&run, i).unwrap();
                }
                run.verify().unwrap()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 5);
    }
}

/// Every configuration of the small file the tamper tests use.
fn configurations() -> Vec<(bool, Compression)> {
    vec![
        (true, Compression::None),
        (true, Compression::Lz4),
        (false, Compression::None),
    ]
}

#[test]
fn every_flipped_byte_is_an_error_at_open_or_block_read() {
    // One partition, and one partition per block (a directory of several).
    let layouts = configurations()
        .into_iter()
        .flat_map(|c| [(c, 1usize), (c, 4096)]);
    for ((sealed, compression), partition_size) in layouts {
        let fs = sim();
        let info = write_run(
            &fs,
            &dir(),
            5,
            sealed,
            RunOptions {
                partition_size,
                ..options(24, compression)
            },
            &small_entries(),
        );
        let good = aedb_fs::read_file(&*fs, &info.path).unwrap();
        let run = open(&fs, &info.path, sealed).unwrap();
        assert!(run.block_count() >= 3, "{}", run.block_count());
        let partitions = if partition_size == 1 {
            run.block_count()
        } else {
            1
        };
        assert_eq!(run.partition_count(), partitions);
        // The open run holds its directory: a record per partition.
        assert!(run.heap_bytes() >= partitions * 28, "{}", run.heap_bytes());
        drop(run);
        let mut kinds = BTreeMap::new();
        for i in 0..good.len() {
            for mask in [0x01u8, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= mask;
                aedb_fs::write_file(&*fs, &info.path, &bad).unwrap();
                let err = match open_read_verify(&fs, &info.path, sealed) {
                    Ok(n) => panic!(
                        "sealed={sealed} {compression}: flipping byte {i} by {mask:#x} went unnoticed ({n} entries)"
                    ),
                    Err(e) => e,
                };
                let kind = match &err {
                    CheckpointError::BadRunHeader { .. } => "header",
                    CheckpointError::BadFooter { .. } => "footer",
                    CheckpointError::BlockAuthFailed { .. } => "auth",
                    other => panic!("byte {i}: unexpected error {other:?}"),
                };
                *kinds.entry(kind).or_insert(0) += 1;
            }
        }
        aedb_fs::write_file(&*fs, &info.path, &good).unwrap();
        assert_eq!(open_read_verify(&fs, &info.path, sealed).unwrap(), 5);
        // Header flips are CRC errors, footer-field flips are CRC or layout errors, and
        // everything in between is a block that fails authentication.
        assert_eq!(kinds["header"], 2 * RUN_HEADER_LEN);
        assert_eq!(kinds["footer"], 2 * RUN_FOOTER_LEN);
        assert_eq!(
            kinds["auth"],
            2 * (good.len() - RUN_HEADER_LEN - RUN_FOOTER_LEN)
        );
    }
}

#[test]
fn a_footer_with_a_fixed_up_crc_fails_the_meta_block() {
    let fs = sim();
    let info = write_run(
        &fs,
        &dir(),
        5,
        true,
        options(24, Compression::None),
        &small_entries(),
    );
    let good = aedb_fs::read_file(&*fs, &info.path).unwrap();
    let footer = good.len() - RUN_FOOTER_LEN;
    // Move the index/filter boundary by one byte each way and fix the CRC: the layout
    // still tiles the file, so only the meta block's AAD catches it.
    for delta in [1i64, -1] {
        let mut bad = good.clone();
        let f = &mut bad[footer..];
        let index_len = u32::from_le_bytes(f[8..12].try_into().unwrap());
        let filter_offset = u64::from_le_bytes(f[12..20].try_into().unwrap());
        let filter_len = u32::from_le_bytes(f[20..24].try_into().unwrap());
        f[8..12].copy_from_slice(&((i64::from(index_len) + delta) as u32).to_le_bytes());
        f[12..20].copy_from_slice(&((filter_offset as i64 + delta) as u64).to_le_bytes());
        f[20..24].copy_from_slice(&((i64::from(filter_len) - delta) as u32).to_le_bytes());
        let crc = crc32fast::hash(&f[..44]);
        f[44..48].copy_from_slice(&crc.to_le_bytes());
        aedb_fs::write_file(&*fs, &info.path, &bad).unwrap();
        match open(&fs, &info.path, true) {
            Err(CheckpointError::BlockAuthFailed {
                kind: BlockKind::Meta,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
    // Same for the header's LSN bounds with a fixed-up header CRC.
    let mut bad = good.clone();
    bad[84] ^= 1;
    let crc = crc32fast::hash(&bad[..100]);
    bad[100..104].copy_from_slice(&crc.to_le_bytes());
    aedb_fs::write_file(&*fs, &info.path, &bad).unwrap();
    match open(&fs, &info.path, true) {
        Err(CheckpointError::BlockAuthFailed {
            kind: BlockKind::Meta,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_truncation_and_any_extension_is_an_error() {
    for (sealed, compression) in configurations() {
        let fs = sim();
        let info = write_run(
            &fs,
            &dir(),
            5,
            sealed,
            options(24, compression),
            &small_entries(),
        );
        let good = aedb_fs::read_file(&*fs, &info.path).unwrap();
        for len in 0..good.len() {
            aedb_fs::write_file(&*fs, &info.path, &good[..len]).unwrap();
            match open_read_verify(&fs, &info.path, sealed) {
                Err(
                    CheckpointError::BadRunHeader {
                        problem: RunHeaderProblem::TooShort { .. },
                        ..
                    }
                    | CheckpointError::BadFooter { .. },
                ) => {}
                other => panic!("truncated to {len}: {other:?}"),
            }
        }
        for extra in [&[0u8][..], &[0; 48], &good[good.len() - 48..]] {
            let mut longer = good.clone();
            longer.extend_from_slice(extra);
            aedb_fs::write_file(&*fs, &info.path, &longer).unwrap();
            assert!(
                matches!(
                    open_read_verify(&fs, &info.path, sealed),
                    Err(CheckpointError::BadFooter { .. })
                ),
                "{} extra bytes",
                extra.len()
            );
        }
    }
}

#[test]
fn blocks_swapped_between_files_or_within_a_file_fail_authentication() {
    // Two files with the same key, database, file id and layout (same-length entries),
    // written into different directories.
    let fs = sim();
    let a_entries: Vec<Entry> = (0..8u8)
        .map(|i| (vec![b'k', i], 10, EntryKind::Put, vec![b'a'; 8]))
        .collect();
    let b_entries: Vec<Entry> = (0..8u8)
        .map(|i| (vec![b'k', i], 10, EntryKind::Put, vec![b'b'; 8]))
        .collect();
    let opts = options(60, Compression::None);
    let a = write_run(&fs, Path::new("/a"), 4, true, opts, &a_entries);
    let b = write_run(&fs, Path::new("/b"), 4, true, opts, &b_entries);
    assert_eq!(a.len, b.len);
    let run_a = open(&fs, &a.path, true).unwrap();
    assert!(run_a.block_count() >= 3);
    let a_bytes = aedb_fs::read_file(&*fs, &a.path).unwrap();
    let b_bytes = aedb_fs::read_file(&*fs, &b.path).unwrap();
    drop(run_a);
    // Data blocks have equal lengths here; find block 1's span from block 0's length:
    // the envelope is 40 bytes around a plaintext of 4 + 2 entries of 15 + 2 + 8 bytes.
    let stored = 40 + 4 + 2 * (15 + 2 + 8);
    let block1 = RUN_HEADER_LEN + stored..RUN_HEADER_LEN + 2 * stored;
    let block0 = RUN_HEADER_LEN..RUN_HEADER_LEN + stored;

    // B's block 1 in A: A opens (metadata intact) but block 1 fails.
    let mut spliced = a_bytes.clone();
    spliced[block1.clone()].copy_from_slice(&b_bytes[block1.clone()]);
    aedb_fs::write_file(&*fs, &a.path, &spliced).unwrap();
    let run = open(&fs, &a.path, true).unwrap();
    read_block(&run, 0).unwrap();
    match read_block(&run, 1) {
        Err(CheckpointError::BlockAuthFailed {
            kind: BlockKind::Data,
            block: 1,
            offset,
            ..
        }) => assert_eq!(offset, block1.start as u64),
        other => panic!("{other:?}"),
    }
    assert!(run.verify().is_err());
    drop(run);

    // A's blocks 0 and 1 swapped.
    let mut swapped = a_bytes.clone();
    swapped[block0.clone()].copy_from_slice(&a_bytes[block1.clone()]);
    swapped[block1.clone()].copy_from_slice(&a_bytes[block0.clone()]);
    aedb_fs::write_file(&*fs, &a.path, &swapped).unwrap();
    let run = open(&fs, &a.path, true).unwrap();
    assert!(matches!(
        read_block(&run, 0),
        Err(CheckpointError::BlockAuthFailed { block: 0, .. })
    ));
    assert!(matches!(
        read_block(&run, 1),
        Err(CheckpointError::BlockAuthFailed { block: 1, .. })
    ));
    drop(run);

    // B's whole tail (index, filter, meta, footer) behind A's header and data.
    let tail = run_tail_start(&a_bytes);
    let mut mixed = a_bytes[..tail].to_vec();
    mixed.extend_from_slice(&b_bytes[tail..]);
    aedb_fs::write_file(&*fs, &a.path, &mixed).unwrap();
    assert!(matches!(
        open(&fs, &a.path, true),
        Err(CheckpointError::BlockAuthFailed { .. })
    ));
    // And B's header on A's body.
    let mut rehead = a_bytes.clone();
    rehead[..RUN_HEADER_LEN].copy_from_slice(&b_bytes[..RUN_HEADER_LEN]);
    aedb_fs::write_file(&*fs, &a.path, &rehead).unwrap();
    assert!(matches!(
        open(&fs, &a.path, true),
        Err(CheckpointError::BlockAuthFailed { .. })
    ));
}

/// Offset of the index block (from the footer).
fn run_tail_start(bytes: &[u8]) -> usize {
    let f = &bytes[bytes.len() - RUN_FOOTER_LEN..];
    u64::from_le_bytes(f[0..8].try_into().unwrap()) as usize
}

#[test]
fn wrong_key_epoch_mode_database_and_name_are_typed_errors() {
    let fs = sim();
    let info = write_run(
        &fs,
        &dir(),
        8,
        true,
        RunOptions::default(),
        &small_entries(),
    );
    let path = &info.path;
    let wrong = RunFile::open(&*fs, path, DB, |_| Some(SecretKey::new([0x12; 32])));
    assert!(matches!(wrong, Err(CheckpointError::WrongKey { epoch, .. }) if epoch == EPOCH));
    assert!(matches!(
        RunFile::open(&*fs, path, DB, |_| None),
        Err(CheckpointError::UnknownEpoch { .. })
    ));
    let retired = |_: KeyEpoch| EpochKey::Retired;
    assert!(matches!(
        RunFile::open_with(&*fs, path, DB, OpenMode::Sealed(&retired)),
        Err(CheckpointError::RetiredEpoch { .. })
    ));
    assert!(matches!(
        RunFile::open_plaintext(&*fs, path, DB),
        Err(CheckpointError::KeyRequired { .. })
    ));
    let other = DatabaseId::from_bytes([0xD2; 16]);
    match RunFile::open(&*fs, path, other, key_for) {
        Err(CheckpointError::WrongDatabase {
            expected, found, ..
        }) => assert_eq!((expected, found), (other, DB)),
        other => panic!("{other:?}"),
    }
    // A renamed file.
    let renamed = dir().join(run_file_name(9));
    fs.rename(path, &renamed).unwrap();
    assert!(matches!(
        RunFile::open(&*fs, &renamed, DB, key_for),
        Err(CheckpointError::FileIdMismatch {
            name_id: 9,
            header_id: 8,
            ..
        })
    ));
    // A plaintext file is a downgrade for a sealed reader.
    let plain = write_run(
        &fs,
        &dir(),
        10,
        false,
        RunOptions::default(),
        &small_entries(),
    );
    assert!(matches!(
        RunFile::open(&*fs, &plain.path, DB, key_for),
        Err(CheckpointError::UnexpectedPlaintext { .. })
    ));
    open(&fs, &plain.path, false).unwrap().verify().unwrap();
}

#[test]
fn refused_entries_leave_the_writer_usable_and_abandon_leaves_nothing() {
    let fs = sim();
    let tmp = dir().join(format!("{}.tmp", run_file_name(6)));
    let mut w = RunWriter::create(
        &fs,
        &dir(),
        meta(6),
        Some(&key()),
        Box::new(OsNonceSource),
        RunOptions::default(),
    )
    .unwrap();
    assert_eq!(w.tmp_path(), tmp.as_path());
    assert!(fs.exists(&tmp));
    assert_eq!(w.bytes_written(), RUN_HEADER_LEN as u64);
    w.add(b"m", Lsn::new(5), EntryKind::Put, b"v").unwrap();
    let rejected = |r: Result<(), CheckpointError>| match r {
        Err(CheckpointError::EntryRejected {
            entry: 1, problem, ..
        }) => problem,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rejected(w.add(b"a", Lsn::new(1), EntryKind::Put, b"")),
        EntryProblem::KeyOutOfOrder
    );
    assert_eq!(
        rejected(w.add(b"m", Lsn::new(5), EntryKind::Put, b"")),
        EntryProblem::LsnOutOfOrder {
            previous: Lsn::new(5),
            lsn: Lsn::new(5)
        }
    );
    assert!(matches!(
        rejected(w.add(b"m", Lsn::new(6), EntryKind::Put, b"")),
        EntryProblem::LsnOutOfOrder { .. }
    ));
    assert_eq!(
        rejected(w.add(&vec![b'z'; 65_536], Lsn::new(1), EntryKind::Put, b"")),
        EntryProblem::KeyTooLong { len: 65_536 }
    );
    assert_eq!(
        rejected(w.add(
            b"z",
            Lsn::new(1),
            EntryKind::Put,
            &vec![0; 16 * 1024 * 1024 + 1]
        )),
        EntryProblem::ValueTooLong {
            len: 16 * 1024 * 1024 + 1
        }
    );
    assert_eq!(
        rejected(w.add(b"z", Lsn::new(1), EntryKind::Delete, b"x")),
        EntryProblem::TombstoneWithValue { len: 1 }
    );
    // Still usable.
    w.add(b"m", Lsn::new(4), EntryKind::Delete, b"").unwrap();
    w.add(b"n", Lsn::new(9), EntryKind::Put, b"").unwrap();
    assert_eq!(w.entries(), 3);
    w.abandon().unwrap();
    assert!(!fs.exists(&tmp));
    assert!(!fs.exists(&dir().join(run_file_name(6))));
    assert_eq!(fs.read_dir(&dir()).unwrap(), Vec::<PathBuf>::new());

    // Dropping a writer removes its file too; finishing an empty one is refused.
    let mut w = RunWriter::create(
        &fs,
        &dir(),
        meta(6),
        None,
        Box::new(OsNonceSource),
        RunOptions::default(),
    )
    .unwrap();
    w.add(b"a", Lsn::new(1), EntryKind::Put, b"").unwrap();
    drop(w);
    assert_eq!(fs.read_dir(&dir()).unwrap(), Vec::<PathBuf>::new());
    let w = RunWriter::create(
        &fs,
        &dir(),
        meta(6),
        None,
        Box::new(OsNonceSource),
        RunOptions::default(),
    )
    .unwrap();
    assert!(matches!(w.finish(), Err(CheckpointError::EmptyRun { .. })));
    assert_eq!(fs.read_dir(&dir()).unwrap(), Vec::<PathBuf>::new());

    // Invalid options and an existing final file are refused up front.
    let bad = RunOptions {
        block_size: 0,
        ..RunOptions::default()
    };
    assert!(matches!(
        RunWriter::create(&fs, &dir(), meta(6), None, Box::new(OsNonceSource), bad),
        Err(CheckpointError::InvalidRunOptions {
            option: "block_size",
            ..
        })
    ));
    let info = write_run(
        &fs,
        &dir(),
        6,
        true,
        RunOptions::default(),
        &small_entries(),
    );
    assert!(matches!(
        RunWriter::create(
            &fs,
            &dir(),
            meta(6),
            None,
            Box::new(OsNonceSource),
            RunOptions::default()
        ),
        Err(CheckpointError::AlreadyExists { .. })
    ));
    assert!(fs.exists(&info.path));
}

#[test]
fn a_repeating_nonce_source_is_refused() {
    let fs = sim();
    let mut w = RunWriter::create(
        &fs,
        &dir(),
        meta(2),
        Some(&key()),
        Box::new(FixedNonce([3; 24])),
        options(1, Compression::None),
    )
    .unwrap();
    w.add(b"a", Lsn::new(1), EntryKind::Put, b"").unwrap();
    // The first block is sealed when the second entry arrives: its nonce would repeat
    // the file nonce.
    assert!(matches!(
        w.add(b"b", Lsn::new(1), EntryKind::Put, b""),
        Err(CheckpointError::NonceUnavailable { .. })
    ));
    assert!(matches!(
        w.add(b"c", Lsn::new(1), EntryKind::Put, b""),
        Err(CheckpointError::Poisoned { .. })
    ));
    assert!(matches!(w.finish(), Err(CheckpointError::Poisoned { .. })));
    assert_eq!(fs.read_dir(&dir()).unwrap(), Vec::<PathBuf>::new());
    // A counter source is fine, and reproducible.
    let bytes = |file_id| {
        let mut w = RunWriter::create(
            &fs,
            &dir(),
            meta(file_id),
            Some(&key()),
            Box::new(CounterNonce::new([3; 24])),
            options(1, Compression::None),
        )
        .unwrap();
        w.add(b"a", Lsn::new(1), EntryKind::Put, b"").unwrap();
        w.add(b"b", Lsn::new(1), EntryKind::Put, b"").unwrap();
        aedb_fs::read_file(&*fs, &w.finish().unwrap().path).unwrap()
    };
    let (one, two) = (bytes(20), bytes(21));
    assert_eq!(one.len(), two.len());
    assert_eq!(&one[44..68], &[3; 24], "the first nonce is the file nonce");
}

#[test]
fn published_runs_survive_a_power_cut_and_failed_writes_publish_nothing() {
    let disk = SimFs::new(11);
    let fs = disk.shared();
    let info = write_run(
        &fs,
        &dir(),
        1,
        true,
        options(64, Compression::Lz4),
        &small_entries(),
    );
    // A run still being written when the power fails leaves at most a temporary file.
    let mut w = RunWriter::create(
        &fs,
        &dir(),
        meta(2),
        Some(&key()),
        Box::new(OsNonceSource),
        RunOptions::default(),
    )
    .unwrap();
    w.add(b"a", Lsn::new(1), EntryKind::Put, b"x").unwrap();
    for seed in 0..20 {
        disk.crash_with(seed);
        let run = open(&fs, &info.path, true).unwrap();
        assert_eq!(run.verify().unwrap(), 5);
        assert!(!fs.exists(&dir().join(run_file_name(2))));
    }
    drop(w);
    let stale = remove_stale_run_temp_files(&*fs, &dir()).unwrap();
    assert!(stale.len() <= 1);
    assert_eq!(
        list_run_files(&*fs, &dir()).unwrap(),
        vec![(1, info.path.clone())]
    );

    // Faults at each step of finish: the error is reported and no run is published.
    for op in [FaultOp::Write, FaultOp::Sync, FaultOp::Rename] {
        let mut w = RunWriter::create(
            &fs,
            &dir(),
            meta(3),
            Some(&key()),
            Box::new(OsNonceSource),
            RunOptions::default(),
        )
        .unwrap();
        for (k, l, kind, v) in small_entries() {
            w.add(&k, Lsn::new(l), kind, &v).unwrap();
        }
        disk.fail_next(op, SimFault::Eio);
        assert!(
            matches!(w.finish(), Err(CheckpointError::Io { .. })),
            "{op:?}"
        );
        disk.clear_faults();
        assert!(!fs.exists(&dir().join(run_file_name(3))), "{op:?}");
        assert!(
            !fs.exists(&dir().join(format!("{}.tmp", run_file_name(3)))),
            "{op:?}"
        );
    }
    // A directory fsync failure after the rename: the file exists, and is complete.
    let mut w = RunWriter::create(
        &fs,
        &dir(),
        meta(3),
        Some(&key()),
        Box::new(OsNonceSource),
        RunOptions::default(),
    )
    .unwrap();
    w.add(b"k", Lsn::new(1), EntryKind::Put, b"v").unwrap();
    disk.fail_next(FaultOp::SyncDir, SimFault::Eio);
    assert!(matches!(
        w.finish(),
        Err(CheckpointError::Io {
            op: "fsync directory",
            ..
        })
    ));
    disk.clear_faults();
    assert_eq!(
        open(&fs, &dir().join(run_file_name(3)), true)
            .unwrap()
            .verify()
            .unwrap(),
        1
    );
}

#[test]
fn reading_a_block_past_the_end_is_a_typed_error() {
    let fs = sim();
    let info = write_run(
        &fs,
        &dir(),
        1,
        true,
        RunOptions::default(),
        &small_entries(),
    );
    let run = open(&fs, &info.path, true).unwrap();
    assert_eq!((run.block_count(), run.partition_count()), (1, 1));
    assert!(matches!(
        read_block(&run, 1),
        Err(CheckpointError::BlockOutOfRange {
            block: 1,
            count: 1,
            ..
        })
    ));
    assert_eq!(run.distinct_keys(), 3);
    assert_eq!(run.raw_key_bytes(), 5 + 5 + 5 + 6 + 6);
    assert_eq!(run.raw_value_bytes(), 3 + 5 + 6);
    assert!(!run.is_empty());
    assert!(run.partition_for(b"durian").is_none());
    assert!(matches!(
        run.load_partition(1),
        Err(CheckpointError::BlockOutOfRange {
            block: 1,
            count: 1,
            ..
        })
    ));
}

#[test]
fn the_error_type_stays_small() {
    // Results of CheckpointError are returned on every block read and nested in the
    // engine's errors; the run-file variants must not inflate it.
    assert!(std::mem::size_of::<CheckpointError>() <= 64);
}

#[test]
fn header_edits_with_a_fixed_up_crc_are_still_caught_at_open() {
    let fs = sim();
    let info = write_run(
        &fs,
        &dir(),
        5,
        true,
        RunOptions::default(),
        &small_entries(),
    );
    let good = aedb_fs::read_file(&*fs, &info.path).unwrap();
    for i in 0..100 {
        for mask in [0x01u8, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= mask;
            let crc = crc32fast::hash(&bad[..100]);
            bad[100..104].copy_from_slice(&crc.to_le_bytes());
            aedb_fs::write_file(&*fs, &info.path, &bad).unwrap();
            let expected = match i {
                0..=19 => matches!(
                    open(&fs, &info.path, true),
                    Err(CheckpointError::BadRunHeader { .. }
                        | CheckpointError::WrongKey { .. }
                        | CheckpointError::UnknownEpoch { .. })
                ),
                20..=35 => matches!(
                    open(&fs, &info.path, true),
                    Err(CheckpointError::WrongDatabase { .. })
                ),
                36..=83 => matches!(
                    open(&fs, &info.path, true),
                    Err(CheckpointError::WrongKey { .. })
                ),
                _ => matches!(
                    open(&fs, &info.path, true),
                    Err(CheckpointError::BadRunHeader { .. }
                        | CheckpointError::BlockAuthFailed {
                            kind: BlockKind::Meta,
                            ..
                        })
                ),
            };
            assert!(
                expected,
                "byte {i} mask {mask:#x}: {:?}",
                open(&fs, &info.path, true).err()
            );
        }
    }
}
