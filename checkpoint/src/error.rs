//! Error type for checkpoint files.
//!
//! Every variant that concerns a file names it; integrity failures also name the chunk or
//! record index and the byte offset. No variant ever carries key material.

use crate::header::HeaderProblem;
use crate::run::{BlockKind, FooterProblem, RunHeaderProblem};
use aedb_types::{DatabaseId, DecodeError, KeyEpoch, Lsn};
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
        "{path}: the key supplied for {epoch} is not the key that sealed this file (or the header's key-check bytes were altered)"
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
    /// A [`crate::RunOptions`] field is outside its allowed range.
    #[error("invalid run option {option} = {value}: {reason}")]
    InvalidRunOptions {
        /// The field.
        option: &'static str,
        /// The rejected value.
        value: u64,
        /// The allowed range.
        reason: &'static str,
    },
    /// [`crate::RunWriter::add`] refused an entry (the writer is unchanged and still usable).
    #[error("{path}: entry {entry} rejected: {problem}")]
    EntryRejected {
        /// The run file being written.
        path: PathBuf,
        /// How many entries were accepted before it.
        entry: u64,
        /// What is wrong with it.
        problem: EntryProblem,
    },
    /// [`crate::RunWriter::finish`] was called before any entry was added: a run file
    /// holds at least one entry.
    #[error("{path}: a run file needs at least one entry; abandon an empty one instead")]
    EmptyRun {
        /// The run file being written.
        path: PathBuf,
    },
    /// The run's index, filter or partition directory would exceed its size limit:
    /// split the output into more files (see [`crate::RunWriter::bytes_written`]).
    #[error(
        "{path}: the {what} would be {len} bytes, more than the {max}-byte limit; split the run into smaller files"
    )]
    RunTooLarge {
        /// The run file being written.
        path: PathBuf,
        /// What ("index", "filter", "partition directory", "block", ...).
        what: &'static str,
        /// Its size in bytes.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The cipher refused to seal a run-file block (cannot happen for blocks within the
    /// size limits).
    #[error("cannot seal {kind} block {block} of {path}")]
    BlockSealFailed {
        /// The run file being written.
        path: PathBuf,
        /// Which kind of block.
        kind: BlockKind,
        /// Its ordinal (data blocks count from 0; the others are 0).
        block: u64,
    },
    /// A run file's header is malformed (not a run file, corrupted, or a newer version).
    #[error("{path}: bad run-file header at byte {offset}: {problem}", offset = problem.offset())]
    BadRunHeader {
        /// The file.
        path: PathBuf,
        /// What was wrong (and where: [`RunHeaderProblem::offset`]).
        problem: RunHeaderProblem,
    },
    /// A run file's name says one file id, its header another (a renamed file).
    #[error(
        "{path} is named for run file {name_id} but its header says run file {header_id}: the file was renamed"
    )]
    FileIdMismatch {
        /// The file.
        path: PathBuf,
        /// File id from the name.
        name_id: u64,
        /// File id from the header.
        header_id: u64,
    },
    /// A run file's footer (its last bytes) is missing or malformed: the file is truncated,
    /// unfinished, has trailing bytes, or its footer was damaged.
    #[error("{path}: bad run-file footer at byte {offset}: {problem}")]
    BadFooter {
        /// The file.
        path: PathBuf,
        /// Byte offset of the footer (the file length minus the footer length, or 0).
        offset: u64,
        /// What was wrong.
        problem: FooterProblem,
    },
    /// A run-file block failed authentication (sealed) or its digest (plaintext): it was
    /// corrupted, tampered with, moved, or copied from another file.
    #[error(
        "{path}: {kind} block {block} at byte {offset} failed authentication: the file was corrupted or tampered with"
    )]
    BlockAuthFailed {
        /// The file.
        path: PathBuf,
        /// Which kind of block.
        kind: BlockKind,
        /// Its ordinal (data blocks count from 0; the others are 0).
        block: u64,
        /// Byte offset of the block in the file.
        offset: u64,
    },
    /// A run-file block authenticated but its contents are malformed or disagree with the
    /// rest of the file (only a faulty writer, or plaintext-mode damage that kept its
    /// digest, can produce one).
    #[error("{path}: {kind} block {block} at byte {offset} is invalid: {problem}")]
    BadBlock {
        /// The file.
        path: PathBuf,
        /// Which kind of block.
        kind: BlockKind,
        /// Its ordinal (data blocks count from 0; the others are 0).
        block: u64,
        /// Byte offset of the block in the file.
        offset: u64,
        /// What is wrong (boxed to keep the error small).
        problem: Box<BlockProblem>,
    },
    /// [`crate::RunFile::read_block`] was asked for a block the file does not have.
    #[error("{path} has {count} data blocks; there is no block {block}")]
    BlockOutOfRange {
        /// The file.
        path: PathBuf,
        /// The requested block.
        block: usize,
        /// How many data blocks the file has.
        count: usize,
    },
}

/// Why [`crate::RunWriter::add`] refused an entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryProblem {
    /// The key is longer than [`crate::MAX_RUN_KEY_LEN`].
    #[error("key of {len} bytes is longer than {max}", max = crate::MAX_RUN_KEY_LEN)]
    KeyTooLong {
        /// The key's length.
        len: usize,
    },
    /// The value is longer than [`crate::MAX_RUN_VALUE_LEN`].
    #[error("value of {len} bytes is longer than {max}", max = crate::MAX_RUN_VALUE_LEN)]
    ValueTooLong {
        /// The value's length.
        len: usize,
    },
    /// A [`crate::EntryKind::Delete`] carries a value; tombstones are empty.
    #[error("a tombstone (Delete) must have an empty value, not {len} bytes")]
    TombstoneWithValue {
        /// The value's length.
        len: usize,
    },
    /// The key sorts before the previous entry's key (keys must ascend).
    #[error("key sorts before the previous entry's key (entries must be in ascending key order)")]
    KeyOutOfOrder,
    /// Same key as the previous entry but not an older LSN (versions of one key must be
    /// added newest first, each LSN once).
    #[error(
        "LSN {lsn} for the same key as the previous entry (LSN {previous}) is not older: versions of a key go newest first, each LSN once"
    )]
    LsnOutOfOrder {
        /// The previous entry's LSN.
        previous: Lsn,
        /// The rejected entry's LSN.
        lsn: Lsn,
    },
}

/// What is wrong with a run-file block that authenticated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockProblem {
    /// Its stored or declared (decompressed) size exceeds the limit for its kind.
    #[error("size {len} exceeds the {max}-byte limit for this kind of block")]
    TooLarge {
        /// The size found.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// LZ4 decompression failed or produced another size than declared.
    #[error("LZ4 decompression failed: {detail}")]
    Decompress {
        /// The decompressor's message.
        detail: String,
    },
    /// The plaintext is not a valid encoding of its block kind.
    #[error("{0}")]
    Decode(DecodeError),
    /// The block is valid by itself but disagrees with the header, footer, index, meta
    /// block or a neighbouring block.
    #[error("inconsistent with the rest of the file: {what}")]
    Inconsistent {
        /// What disagrees.
        what: &'static str,
    },
}
