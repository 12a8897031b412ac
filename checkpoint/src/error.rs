//! Error type for checkpoint files.
//!
//! Every variant that concerns a file names it; integrity failures also name the chunk or
//! record index and the byte offset. No variant ever carries key material.

use crate::header::HeaderProblem;
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
