//! `aedb-wal`: the aedb write-ahead log.
//!
//! **Owns:** the on-disk WAL format (the [frame codec](frame), [segment headers and
//! trailers](segment), segment file naming in the [WAL directory](dir)), the
//! [`WalWriter`] that appends group-commit batches with one write and one `fdatasync`
//! (preallocating, rotating and SHA-256-chaining segments, fail-stopping on I/O errors),
//! [`recover`]/[`verify`] which read segments via memory maps, verify the chain and LSNs,
//! and cut torn tails, the per-instance [`FaultInjector`], and [encryption at rest](seal):
//! with a [`WalCipher`] configured, each group-commit batch is sealed into one
//! XChaCha20-Poly1305 [`FrameKind::SealedBatch`] frame, which recovery opens with the keys
//! of a [`WalKeyring`] and replays as ordinary `Commit` frames.
//!
//! **Does not own:** what a payload means (commit records), where keys come from (the
//! key provider derives the WAL subkey per epoch and hands it in), when to sync (the
//! actors' group-commit policy), which segments a checkpoint makes obsolete (the
//! manifest), or locking the data directory (the engine). The byte layout is specified in
//! `docs/FORMAT.md`.
//!
//! ```
//! use aedb_types::Lsn;
//! use aedb_wal::{FrameKind, RecoveryMode, WalConfig, WalWriter, recover};
//! use std::convert::Infallible;
//!
//! let dir = tempfile::tempdir()?;
//! let wal_dir = dir.path().join("wal");
//! let config = WalConfig { segment_size: 1 << 20, ..WalConfig::default() };
//!
//! let mut writer = WalWriter::create(&wal_dir, config.clone())?;
//! writer.append(Lsn::new(1), FrameKind::Commit, b"first")?;
//! writer.append(Lsn::new(2), FrameKind::Commit, b"second")?;
//! assert_eq!(writer.flush_and_sync()?, Lsn::new(2)); // one write, one fdatasync
//! drop(writer);
//!
//! let mut payloads = Vec::new();
//! let (report, mut writer) = recover(&wal_dir, &config, RecoveryMode::Strict, |frame| {
//!     payloads.push(frame.payload.to_vec());
//!     Ok::<(), Infallible>(())
//! })?;
//! assert_eq!(payloads, vec![b"first".to_vec(), b"second".to_vec()]);
//! assert_eq!(report.last_lsn, Lsn::new(2));
//! writer.append(Lsn::new(3), FrameKind::Commit, b"third")?;
//! writer.flush_and_sync()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

pub mod dir;
pub mod error;
pub use aedb_types::fault;
pub mod frame;
pub mod reader;
pub mod recovery;
pub mod seal;
pub mod segment;
pub mod writer;

pub use dir::{segment_file_name, segment_path, segment_paths};
pub use error::WalError;
pub use fault::{FaultInjector, FaultKind, FaultMode, FaultPoint};
pub use frame::{
    DecodedFrame, FrameError, FrameKind, MAX_PAYLOAD_LEN, PayloadTooLarge, decode_frame,
    encode_frame,
};
pub use reader::{Corruption, scan_segment};
pub use recovery::{
    RecoverError, RecoveredWal, RecoveryMode, recover, recover_after, restart_after, verify,
    verify_quiet, verify_with,
};
pub use seal::{
    MAX_SEALED_RECORD_LEN, NonceSource, OpenedBatch, SealError, SealedBatchHeader, WalCipher,
    WalKeyring, open_sealed_batch, seal_batch,
};
pub use segment::{SegmentEnd, SegmentHash, SegmentHeader, SegmentSeq};
pub use writer::{
    MIN_SEGMENT_SIZE, SealedSegment, SyncPolicy, WalConfig, WalWriter, read_segment_header,
};
