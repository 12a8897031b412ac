//! Error types for checkpoint files and the manifest.
//!
//! Every variant that concerns a file names it; integrity failures also name the chunk or
//! record index and the byte offset. No variant ever carries key material.

use crate::header::HeaderProblem;
use crate::live_state::LiveStateError;
use crate::record::RecordError;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use std::io;
use std::path::PathBuf;

/// Errors writing or reading a checkpoint file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// An operating-system call failed.
    #[error("checkpoint I/O error while trying to {op} {path}: {source}")]
    Io {
        /// What was being done ("create", "write", "fsync", "rename", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The requested chunk size is outside the allowed range.
    #[error("invalid checkpoint chunk size {size}: must be between {min} and {max} bytes", min = crate::header::MIN_CHUNK_SIZE, max = crate::header::MAX_CHUNK_SIZE)]
    InvalidChunkSize {
        /// The rejected size.
        size: u32,
    },
    /// The nonce source could not produce a nonce.
    #[error("cannot obtain a random nonce for checkpoint {path}: {source}")]
    NonceUnavailable {
        /// The checkpoint being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A checkpoint for this LSN already exists; it may be recorded in the manifest, so it
    /// is never overwritten.
    #[error("checkpoint {path} already exists; refusing to overwrite it (retire it first)")]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// An earlier write failed; this writer can only be dropped.
    #[error("checkpoint writer for {path} failed earlier and is poisoned; start a new checkpoint")]
    Poisoned {
        /// The temporary file being written.
        path: PathBuf,
    },
    /// The cipher refused to seal a chunk (cannot happen for chunks within the size limit).
    #[error("cannot seal chunk {chunk} of {path}")]
    SealFailed {
        /// The checkpoint being written.
        path: PathBuf,
        /// The chunk index.
        chunk: u64,
    },
    /// The header is malformed (not a checkpoint, corrupted, or from a newer version).
    #[error("{path}: bad checkpoint header at byte {offset}: {problem}", offset = problem.offset())]
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What was wrong (and where: [`HeaderProblem::offset`]).
        problem: HeaderProblem,
    },
    /// The checkpoint belongs to another database.
    #[error(
        "{path} belongs to database {found}, not {expected}: it was copied from another database"
    )]
    WrongDatabase {
        /// The file.
        path: PathBuf,
        /// The database being opened.
        expected: DatabaseId,
        /// The database id in the file.
        found: DatabaseId,
    },
    /// The file name says one LSN, the authenticated header another (a renamed file).
    #[error(
        "{path} is named for LSN {name_lsn} but its header says LSN {header_lsn}: the file was renamed"
    )]
    LsnMismatch {
        /// The file.
        path: PathBuf,
        /// LSN from the file name.
        name_lsn: Lsn,
        /// LSN from the header.
        header_lsn: Lsn,
    },
    /// The file is sealed under an epoch the key lookup does not know.
    #[error("{path} is sealed under key {epoch}, which the key provider does not have")]
    UnknownEpoch {
        /// The file.
        path: PathBuf,
        /// The epoch in the header.
        epoch: KeyEpoch,
    },
    /// The file is sealed under a key epoch the manifest retired: no live file needs it,
    /// so the file is stale (or planted) and its key is no longer handed out.
    #[error("{path} is sealed under key {epoch}, which was retired; the file is stale")]
    RetiredEpoch {
        /// The file.
        path: PathBuf,
        /// The epoch in the header.
        epoch: KeyEpoch,
    },
    /// A sealed checkpoint was expected but the file is plaintext. Refused, because
    /// accepting it would let anyone who can write the directory substitute unauthenticated
    /// data (a downgrade). Open it with `open_plaintext_checkpoint` only deliberately.
    #[error(
        "{path} is a plaintext checkpoint but a sealed one was required (possible downgrade); refusing"
    )]
    UnexpectedPlaintext {
        /// The file.
        path: PathBuf,
    },
    /// A plaintext checkpoint was expected but the file is sealed: configure the key.
    #[error("{path} is sealed under key {epoch}; a checkpoint key is required to open it")]
    KeyRequired {
        /// The file.
        path: PathBuf,
        /// The epoch in the header.
        epoch: KeyEpoch,
    },
    /// The supplied key for the header's epoch is not the key that sealed the file.
    #[error(
        "{path}: the key supplied for {epoch} is not the key that sealed this checkpoint (or the key-check bytes at offset 72 were altered)"
    )]
    WrongKey {
        /// The file.
        path: PathBuf,
        /// The epoch in the header.
        epoch: KeyEpoch,
    },
    /// A chunk failed authentication: tampered, corrupted, reordered or spliced.
    #[error(
        "{path}: chunk {chunk} at byte {offset} failed authentication: the file was corrupted or tampered with"
    )]
    AuthFailed {
        /// The file.
        path: PathBuf,
        /// The failing chunk's index.
        chunk: u64,
        /// Byte offset of the chunk in the file.
        offset: u64,
    },
    /// The file ends cleanly after a non-final chunk: chunks are missing from the end.
    #[error("{path} is truncated: it ends after {chunks_present} chunk(s) without the final chunk")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Complete, authentic chunks present.
        chunks_present: u64,
    },
    /// The file length cannot be a whole number of chunks: truncated inside a chunk or has
    /// trailing bytes.
    #[error(
        "{path}: length {len} does not fit the chunk layout (chunk size {chunk_size}): truncated or has trailing bytes"
    )]
    BadLength {
        /// The file.
        path: PathBuf,
        /// The file length.
        len: u64,
        /// The header's chunk size.
        chunk_size: u32,
    },
    /// Not enough memory to hold the payload.
    #[error("{path}: cannot allocate {len} bytes for the checkpoint payload")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Payload length.
        len: u64,
    },
}

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
