//! Run files (checkpoint format versions 2 and 3) on arbitrary bytes: the bytes are written to a
//! simulated disk as `run-<file_id>.ckpt` (the file id the header names, so the name check
//! passes) and opened, sealed under the fuzz key (any epoch) and in plaintext mode, for
//! the database the header names; every data block is read and the file verified. Never
//! panics, and:
//!
//! * `RunHeader::decode`: a header that decodes re-encodes to the same 104 bytes;
//! * no file opens in both modes;
//! * a file that opens and verifies is what it claims: its blocks' entries are in strict
//!   `(key ascending, LSN descending)` order across blocks, their count, tombstones,
//!   distinct keys, key range and LSN range are the reported ones, the bloom filter
//!   of the partition answering for a key finds it, `block_for` finds each key's first
//!   block and `seek` each entry, the partitions cover the blocks in order, and
//!   `sha256()` is the file's SHA-256.
#![no_main]
use aedb_checkpoint::{
    CheckpointError, EntryKind, RUN_HEADER_LEN, RunFile, RunHeader, run_file_name,
};
use aedb_fs::{FileSystem, SimFs};
use aedb_fuzz::{FUZZ_DB, fuzz_key};
use aedb_types::Lsn;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Reads block `b` through the partition covering it.
fn read(run: &RunFile, b: usize) -> aedb_checkpoint::DataBlock {
    let p = run.partition_of_block(b).expect("a block of the run has a partition");
    let tables = run.load_partition(p).expect("a verified file's partitions load");
    run.read_block(&tables, b).expect("a verified file's blocks read")
}

fn check(data: &[u8], run: &RunFile) {
    let mut all: Vec<(Vec<u8>, Lsn, EntryKind)> = Vec::new();
    let mut next = 0;
    for p in 0..run.partition_count() {
        let tables = run.load_partition(p).expect("a verified file's partitions load");
        assert_eq!(tables.blocks().start, next, "partitions cover the blocks in order");
        next = tables.blocks().end;
        for b in tables.blocks() {
            let block = run
                .read_block(&tables, b)
                .expect("a verified file's blocks read");
            for i in 0..block.len() {
                let e = block.entry(i);
                assert_eq!(block.seek(e.key, e.lsn), i, "seek to an entry");
                all.push((e.key.to_vec(), e.lsn, e.kind));
            }
        }
    }
    assert_eq!(next, run.block_count());
    assert_eq!(all.len() as u64, run.entries());
    for pair in all.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(a.0 < b.0 || (a.0 == b.0 && a.1 > b.1), "entry order");
    }
    let tombstones = all.iter().filter(|e| e.2 == EntryKind::Delete).count() as u64;
    assert_eq!(tombstones, run.tombstones());
    let mut distinct = 0;
    for (i, e) in all.iter().enumerate() {
        if i == 0 || all[i - 1].0 != e.0 {
            distinct += 1;
            let p = run.partition_for(&e.0).expect("a key of the run has a partition");
            let tables = run.load_partition(p).expect("partition");
            assert!(tables.may_contain(&e.0), "bloom false negative");
            let b = tables.block_for(&e.0).expect("a key of the run has a block");
            let first = read(run, b).entry(0).key.to_vec();
            assert!(first <= e.0, "block_for skipped the key's first block");
        }
    }
    assert_eq!(distinct, run.distinct_keys());
    assert_eq!(run.first_key(), all[0].0.as_slice());
    assert_eq!(run.last_key(), all[all.len() - 1].0.as_slice());
    let min = all.iter().map(|e| e.1).min();
    let max = all.iter().map(|e| e.1).max();
    assert_eq!((Some(run.min_lsn()), Some(run.max_lsn())), (min, max));
    let digest: [u8; 32] = Sha256::digest(data).into();
    assert_eq!(run.sha256().expect("hash"), digest);
    assert_eq!(run.len(), data.len() as u64);
}

fn open_all(
    fs: &dyn FileSystem,
    path: &Path,
    sealed: bool,
    db: aedb_types::DatabaseId,
) -> Result<RunFile, CheckpointError> {
    let run = if sealed {
        RunFile::open(fs, path, db, |_| Some(fuzz_key()))?
    } else {
        RunFile::open_plaintext(fs, path, db)?
    };
    run.verify()?;
    Ok(run)
}

fuzz_target!(|data: &[u8]| {
    let header = RunHeader::decode(data);
    if let Ok(h) = &header {
        assert_eq!(
            &h.encode()[..],
            &data[..RUN_HEADER_LEN],
            "run-file header is not canonical"
        );
    }
    let (db, file_id) = header.map_or((FUZZ_DB, 0), |h| (h.database_id, h.file_id));
    let fs = SimFs::new(0);
    let dir = Path::new("/fuzz");
    fs.create_dir_all(dir).expect("mkdir");
    let path = dir.join(run_file_name(file_id));
    aedb_fs::write_file(&*fs, &path, data).expect("write");
    let sealed = open_all(&*fs, &path, true, db);
    if let Ok(run) = &sealed {
        check(data, run);
    }
    let plain = open_all(&*fs, &path, false, db);
    if let Ok(run) = &plain {
        check(data, run);
    }
    assert!(
        sealed.is_err() || plain.is_err(),
        "a run file opened in both modes"
    );
});
