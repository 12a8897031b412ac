//! Error type for the manifest.
//!
//! Every variant that concerns a file names it; integrity failures also name the record
//! index and the byte offset. No variant ever carries key material.

use crate::live_state::LiveStateError;
use crate::record::RecordError;
use std::io;
use std::path::PathBuf;

/// Errors creating, verifying, appending to or compacting the manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// An operating-system call failed.
    #[error("manifest I/O error while trying to {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `create` found an existing manifest.
    #[error("manifest {path} already exists; open it instead of creating a new one")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// The manifest is larger than this build reads into memory; compact it.
    #[error(
        "manifest {path} is {len} bytes, over the {max}-byte limit; it should have been compacted"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The header is malformed or from a newer version.
    #[error("{path}: bad manifest header at byte {offset}: {reason}")]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// Offset of the failing field.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The header MAC does not verify: wrong manifest key, or the header was edited.
    #[error(
        "{path}: manifest header MAC mismatch: wrong manifest key, or the header (database id) was edited"
    )]
    HeaderAuthFailed {
        /// The file.
        path: PathBuf,
    },
    /// A frame's length field is corrupt (its check value does not match) or out of range.
    #[error("{path}: record {index} at byte {offset} has a corrupt frame: {reason}")]
    BadFrame {
        /// The file.
        path: PathBuf,
        /// Record index (0-based) in this file.
        index: u64,
        /// Byte offset of the frame.
        offset: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// A record's MAC does not verify: a record was edited, deleted, reordered or inserted
    /// (or the bytes are corrupt).
    #[error(
        "{path}: HMAC chain broken at record {index} (byte {offset}): a record was edited, deleted, reordered or inserted, or the file is corrupt"
    )]
    ChainBroken {
        /// The file.
        path: PathBuf,
        /// Record index (0-based) in this file.
        index: u64,
        /// Byte offset of the frame.
        offset: u64,
    },
    /// An authenticated record cannot be decoded (written by a buggy or newer writer).
    #[error("{path}: record {index} at byte {offset} is authentic but undecodable: {source}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// Record index.
        index: u64,
        /// Byte offset of the frame.
        offset: u64,
        /// The decode error.
        #[source]
        source: RecordError,
    },
    /// An authenticated record contradicts the records before it.
    #[error("{path}: record {index} at byte {offset} is inconsistent with the manifest: {source}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// Record index.
        index: u64,
        /// Byte offset of the frame.
        offset: u64,
        /// What contradicts what.
        #[source]
        source: LiveStateError,
    },
    /// The file ends with an incomplete record, as left by a crash during `append` (the
    /// record was never acknowledged). `Manifest::open` refuses; the caller may use
    /// `Manifest::open_and_repair_torn_tail` to cut it off.
    #[error(
        "{path}: torn final record: {len} byte(s) at byte {offset} after {valid_records} valid record(s) (crash during append?)"
    )]
    TornTail {
        /// The file.
        path: PathBuf,
        /// Where the incomplete record starts (= length of the valid prefix).
        offset: u64,
        /// Bytes in the torn tail.
        len: u64,
        /// Verified records before it.
        valid_records: u64,
    },
    /// A record to append or to compact with cannot be encoded.
    #[error("cannot encode manifest record for {path}: {source}")]
    InvalidRecord {
        /// The manifest.
        path: PathBuf,
        /// Why.
        #[source]
        source: RecordError,
    },
    /// A record to append (or a compaction summary) contradicts the current state.
    #[error("manifest {path}: record rejected: {source}")]
    Rejected {
        /// The manifest.
        path: PathBuf,
        /// What contradicts what.
        #[source]
        source: LiveStateError,
    },
    /// An earlier write failed, so the file may hold a torn record; reopen the manifest.
    #[error(
        "manifest {path} failed earlier and is poisoned; reopen it (open_and_repair_torn_tail)"
    )]
    Poisoned {
        /// The manifest.
        path: PathBuf,
    },
}
