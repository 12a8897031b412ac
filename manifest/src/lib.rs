//! aedb manifest: the HMAC-chained version-edit log `<data_dir>/MANIFEST`.
//!
//! This crate owns (byte-level specification in `docs/FORMAT.md`, section "Checkpoint
//! files and manifest"):
//!
//! * **The manifest file**: an append-only log of typed [`ManifestRecord`]s (database
//!   created, key epoch changed or retired, WAL segment sealed or retired, checkpoint added
//!   or retired, backup taken, server environment hash, compaction), each framed and
//!   carrying `HMAC-SHA256(k_manifest, prev_mac || frame)` chained from an authenticated
//!   header, with torn-tail handling and compaction by atomic rewrite. See [`Manifest`] and
//!   the [`file`](mod@file) module docs for what is and is not detectable.
//! * **The live state** ([`LiveState`]): the records folded into what is live now —
//!   checkpoints, sealed segments, backups, and the key-epoch lifecycle (which epochs exist,
//!   under which master, and which are retired).
//! * **The HMAC chain helper** ([`chain`]): the one implementation of chained HMAC-SHA256
//!   links, also used by the audit tables (`aedb-actors`) and backup manifests (`aedb`).
//! * [`golden_fixtures`]: byte-exact images of the format from fixed keys.
//!
//! It does **not** own: checkpoint files, their encryption or codec (`aedb-checkpoint`,
//! which produces the [`ManifestRecord::CheckpointAdded`] record for a file it sealed), key
//! derivation or providers (`aedb-keys`; callers pass the derived manifest subkey as a
//! [`aedb_keys::SecretKey`]), deciding *what* to record or when (the ManifestChain actor and
//! the pipeline in `aedb-actors`), or the backup manifest format (`aedb`).
//!
//! ```
//! use aedb_keys::SecretKey;
//! use aedb_manifest::{Manifest, ManifestRecord};
//! use aedb_types::{DatabaseId, KeyEpoch, Lsn};
//!
//! let dir = std::env::temp_dir().join(format!("aedb-manifest-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let fs = aedb_fs::RealFs::shared(); // every file operation goes through this seam
//! let db = DatabaseId::from_bytes([7; 16]);
//! let path = dir.join("MANIFEST");
//!
//! let mut m = Manifest::create(&fs, &path, db, SecretKey::new([2; 32]))?;
//! m.append(&ManifestRecord::DatabaseCreated { database_id: db, created_at_unix_ms: 0 })?;
//! m.append(&ManifestRecord::CheckpointAdded {
//!     lsn: Lsn::new(10),
//!     epoch: KeyEpoch::FIRST,
//!     file_name: "00000000000000000010.ckpt".into(),
//!     sha256: [0xC4; 32],
//!     len: 4096,
//! })?;
//! let head = m.head_mac();
//! drop(m);
//!
//! // Reopen: the whole chain is verified, and the live state is folded from it.
//! let (m, records) = Manifest::open(&fs, &path, SecretKey::new([2; 32]))?;
//! assert_eq!(records.len(), 2);
//! assert_eq!(m.head_mac(), head);
//! assert_eq!(m.live_state().newest_checkpoint().map(|(lsn, _)| lsn), Some(Lsn::new(10)));
//! // Another key fails at the header.
//! assert!(Manifest::open(&fs, &path, SecretKey::new([3; 32])).is_err());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod chain;
mod error;
pub mod file;
mod golden;
mod live_state;
mod record;

pub use chain::{ChainBreak, ChainLink, ChainMac, HmacChain, hmac_sha256, hmac_sha256_verify};
pub use error::ManifestError;
pub use file::{
    MANIFEST_FILE_NAME, Manifest, TornTail, VerifiedManifest, manifest_temp_path, peek_database_id,
    read_manifest, verify_manifest_bytes,
};
pub use golden::{
    GOLDEN_DATABASE_ID, GOLDEN_MANIFEST_KEY, GoldenError, GoldenExpectation, GoldenFixture,
    golden_fixtures,
};
pub use live_state::{
    BackupInfo, CompactionInfo, EpochInfo, FULL_BACKUP_ID_PREFIX, INCREMENTAL_BACKUP_ID_PREFIX,
    LiveCheckpoint, LiveRun, LiveSegment, LiveState, LiveStateError, MAX_LIVE_RECOVERY_EVENTS,
    RecoveryEventInfo,
};
pub use record::{
    MAX_DETAIL_LEN, MAX_EDIT_RUNS, MAX_FILE_NAME_LEN, MAX_LEVELS, MAX_RUN_KEY_PREFIX, MAX_TEXT_LEN,
    ManifestRecord, RecordError, RecordKind, RecoveryEventKind, RunRecord, VersionEdit,
};
