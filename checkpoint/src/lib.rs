//! aedb checkpoints: sealed checkpoint files and run files, their encryption and codecs.
//!
//! This crate owns two on-disk formats of one family (same magic, same keys) and their
//! file I/O (the byte-level specification is in `docs/FORMAT.md`, sections "Checkpoint
//! files" and "Run files (checkpoint format versions 3 and 2)"):
//!
//! * **Checkpoint files** `<data_dir>/checkpoints/<lsn:020>.ckpt`: an opaque snapshot payload
//!   split into chunks, each sealed with XChaCha20-Poly1305 under a nonce derived from a
//!   random per-file base nonce and the chunk index, with the whole header plus the chunk
//!   index and a final flag as associated data, so tampering, truncation, reordering,
//!   duplication and splicing across files are detected. Without a key, a plaintext mode
//!   with SHA-256 digests detects accidental corruption only (it is **not** authenticated).
//!   See [`CheckpointWriter`], [`open_checkpoint`], [`CheckpointDecoder`], [`list_checkpoints`].
//! * **Run files** (checkpoint format version 3; version 2 still read)
//!   `<data_dir>/checkpoints/run-<id:020>.ckpt`: the sorted runs of the disk-resident LSM
//!   (the project's "incremental checkpoint files"). Entries `(user_key, lsn, Put |
//!   Delete, value)` sorted by key ascending, then LSN descending, in data blocks
//!   followed by an index block and a bloom-filter block per partition (~100 data
//!   blocks), a meta block ending with the partition directory, and a fixed-size footer. Every block is compressed (optionally, LZ4) and
//!   sealed under its own random nonce, with the file's header, the block's kind, ordinal
//!   and offset as associated data (the meta block's also binds the footer), so any
//!   changed, moved or transplanted byte is detected. [`RunWriter`] streams entries into
//!   a file; [`RunFile`] opens one, authenticating only its metadata, loads one table
//!   partition and reads one [`DataBlock`] at a time with positioned reads. The same plaintext mode exists.
//! * [`golden_fixtures`]: byte-exact images of both formats from fixed keys and nonces.
//!
//! It does **not** own: the manifest that records checkpoint files (`aedb-manifest`; a
//! sealed file hands back its [`aedb_manifest::ManifestRecord`] through
//! [`CheckpointInfo::manifest_record`]), the snapshot encoding (the data model's
//! `State::encode_snapshot` produces the payload; this crate never interprets it), key
//! derivation or providers (`aedb-keys`; callers pass the already-derived checkpoint
//! subkey as [`aedb_keys::SecretKey`]), the WAL, deciding *when* to checkpoint or retire
//! files, or the actors that own these files (`aedb-actors`); nor, for run files, the
//! memtable, merging, compaction, block caching or choosing file ids (the storage layer).
//!
//! ```
//! use aedb_checkpoint::{
//!     CheckpointMeta, CheckpointWriter, FixedNonce, OsNonceSource, open_checkpoint,
//! };
//! use aedb_manifest::{Manifest, ManifestRecord};
//! use aedb_keys::SecretKey;
//! use aedb_types::{DatabaseId, KeyEpoch, Lsn};
//!
//! let dir = std::env::temp_dir().join(format!("aedb-ckpt-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let fs = aedb_fs::RealFs::shared(); // every file operation goes through this seam
//! let db = DatabaseId::from_bytes([7; 16]);
//! let key = SecretKey::new([1; 32]);
//!
//! // Seal a checkpoint (streamed; chunked), then open and verify it.
//! let meta = CheckpointMeta::new(db, Lsn::new(10), KeyEpoch::FIRST);
//! let mut w = CheckpointWriter::create(&fs, &dir, meta, Some(&key), &mut OsNonceSource)?;
//! w.write_all(b"snapshot bytes")?;
//! let info = w.finish()?;
//! let loaded = open_checkpoint(&*fs, &info.path, db, |_epoch| Some(key.duplicate()))?;
//! assert_eq!(loaded.payload, b"snapshot bytes");
//! assert_eq!(loaded.file_sha256, info.sha256);
//!
//! // Record it in the manifest (crate `aedb-manifest`), then reopen and verify the chain.
//! let path = dir.join("MANIFEST");
//! let mut m = Manifest::create(&fs, &path, db, SecretKey::new([2; 32]))?;
//! m.append(&ManifestRecord::DatabaseCreated { database_id: db, created_at_unix_ms: 0 })?;
//! m.append(&info.manifest_record())?;
//! let head = m.head_mac();
//! drop(m);
//! let (m, records) = Manifest::open(&fs, &path, SecretKey::new([2; 32]))?;
//! assert_eq!(records.len(), 2);
//! assert_eq!(m.head_mac(), head);
//! assert_eq!(m.live_state().newest_checkpoint().map(|(lsn, _)| lsn), Some(Lsn::new(10)));
//! # let _ = FixedNonce([0; 24]);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A run file: write sorted entries, open it (metadata only), find and read a block.
//!
//! ```
//! use aedb_checkpoint::{EntryKind, OsNonceSource, RunFile, RunFileMeta, RunOptions, RunWriter};
//! use aedb_keys::SecretKey;
//! use aedb_types::{DatabaseId, KeyEpoch, Lsn};
//!
//! let data_dir = tempfile::tempdir()?;
//! let dir = aedb_checkpoint::checkpoints_dir(data_dir.path());
//! let fs = aedb_fs::RealFs::shared();
//! let db = DatabaseId::from_bytes([7; 16]);
//! let key = SecretKey::new([1; 32]);
//! let meta = RunFileMeta { database: db, file_id: 1, epoch: KeyEpoch::FIRST };
//! let mut w = RunWriter::create(
//!     &fs, &dir, meta, Some(&key), Box::new(OsNonceSource), RunOptions::default(),
//! )?;
//! w.add(b"apple", Lsn::new(9), EntryKind::Put, b"red")?;
//! w.add(b"apple", Lsn::new(4), EntryKind::Delete, b"")?; // older version: newest first
//! w.add(b"pear", Lsn::new(7), EntryKind::Put, b"green")?;
//! let info = w.finish()?;
//!
//! let run = RunFile::open(&*fs, &info.path, db, |_epoch| Some(key.duplicate()))?;
//! assert_eq!((run.entries(), run.tombstones()), (3, 1));
//! // The partition of the index and bloom filter that answers for a key, read when needed.
//! let tables = run.load_partition(run.partition_for(b"pear").unwrap())?;
//! assert!(tables.may_contain(b"pear"));
//! let tables = run.load_partition(run.partition_for(b"apple").unwrap())?;
//! let block = run.read_block(&tables, tables.block_for(b"apple").unwrap())?;
//! // The newest version of "apple" visible at LSN 5 is the Delete at LSN 4.
//! let e = block.entry(block.seek(b"apple", Lsn::new(5)));
//! assert_eq!((e.key, e.lsn, e.kind), (&b"apple"[..], Lsn::new(4), EntryKind::Delete));
//! assert_eq!(run.verify()?, 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod checkpoint_file;
mod checkpoint_stream;
mod chunk;
mod durable;
mod error;
mod golden;
mod header;
mod nonce;
mod run;

pub use checkpoint_file::{
    CHECKPOINTS_DIR, CheckpointEntry, CheckpointInfo, CheckpointWriter, checkpoint_file_name,
    checkpoint_path, checkpoints_dir, list_checkpoints, open_checkpoint, open_checkpoint_stream,
    open_checkpoint_with, open_plaintext_checkpoint, parse_checkpoint_file_name, remove_checkpoint,
    remove_stale_temp_files,
};
pub use checkpoint_stream::{
    CheckpointDecoder, CheckpointEncoder, CheckpointMeta, EncodedCheckpoint, LoadedCheckpoint,
    OpenMode, open_checkpoint_bytes, seal_checkpoint_to_vec,
};
pub use error::{BlockProblem, CheckpointError, EntryProblem};
pub use golden::{
    GOLDEN_CHECKPOINT_KEY, GOLDEN_CHUNK_SIZE, GOLDEN_DATABASE_ID, GOLDEN_EPOCH, GOLDEN_LSN,
    GOLDEN_NONCE, GOLDEN_PAYLOAD, GOLDEN_RUN_BLOCK_SIZE, GOLDEN_RUN_FILE_ID,
    GOLDEN_RUN_PARTITION_SIZE, GoldenError, GoldenExpectation, GoldenFixture, golden_fixtures,
    golden_hex_bytes, golden_run_entries,
};
pub use header::{
    Algorithm, CHECKPOINT_HEADER_LEN, CHECKPOINT_MAGIC, CHECKPOINT_VERSION, CheckpointHeader,
    DEFAULT_CHUNK_SIZE, HeaderProblem, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, TAG_LEN,
};
pub use nonce::{CounterNonce, FixedNonce, NONCE_LEN, NonceSource, OsNonceSource};
pub use run::{
    BlockKind, Compression, DEFAULT_BLOOM_BITS_PER_KEY, DEFAULT_RUN_BLOCK_SIZE,
    DEFAULT_RUN_PARTITION_SIZE, DataBlock, EntryKind, EntryPos, EntryRef, FooterProblem, Heads,
    MAX_BLOOM_BITS_PER_KEY, MAX_DATA_BLOCK_LEN, MAX_RUN_BLOCK_SIZE, MAX_RUN_INDEX_LEN,
    MAX_RUN_KEY_LEN, MAX_RUN_META_LEN, MAX_RUN_VALUE_LEN, MIN_RUN_FILE_VERSION, RUN_ENTRY_OVERHEAD,
    RUN_FILE_PREFIX, RUN_FILE_VERSION, RUN_FOOTER_LEN, RUN_FOOTER_MAGIC, RUN_HEADER_LEN, RunFile,
    RunFileMeta, RunHeader, RunHeaderProblem, RunInfo, RunOptions, RunWriter, TablePartition,
    decode_block_body, decode_data_block, decode_run_block, list_run_files, parse_run_file_name,
    remove_stale_run_temp_files, run_file_name, run_path,
};
