//! The checkpoint file header (version 1, 96 bytes): codec and validation.
//!
//! ```text
//! offset size field
//!      0    8 magic        "AEDBCKPT"
//!      8    2 version      1
//!     10    2 header_len   96
//!     12    1 algorithm    0 = plaintext + SHA-256 integrity, 1 = XChaCha20-Poly1305
//!     13    1 flags        0
//!     14    2 reserved     0
//!     16    4 key_epoch    epoch of the sealing key (informational in plaintext mode)
//!     20   16 database_id
//!     36    8 lsn          the checkpoint's LSN
//!     44    4 chunk_size   plaintext bytes per chunk, 1 ..= 16 MiB
//!     48   24 base_nonce   random; per-chunk nonces are derived from it
//!     72   16 key_check    AEAD tag proving which key sealed the file; zeros in plaintext mode
//!     88    4 reserved     0
//!     92    4 header_crc   CRC-32 (IEEE) of bytes [0, 92)
//! ```
//!
//! The CRC only distinguishes accidental header corruption from other failures; the header's
//! authenticity comes from being the associated data of every chunk (see `chunk.rs`).

use crate::nonce::NONCE_LEN;
use aedb_types::ByteReader;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use std::fmt;

/// File magic of a checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"AEDBCKPT";
/// The version of full checkpoint files (this header and chunk layout), which this crate
/// writes and reads. Versions 2 and 3 are run files ([`crate::RUN_FILE_VERSION`]),
/// which share the magic but has its own header ([`crate::RunHeader`]).
pub const CHECKPOINT_VERSION: u16 = 1;
/// Size of the version-1 header in bytes.
pub const CHECKPOINT_HEADER_LEN: usize = 96;
/// Authentication tag (or plaintext digest) appended to every chunk, in bytes.
pub const TAG_LEN: usize = 16;
/// Smallest allowed chunk size (useful for tests; production uses the default).
pub const MIN_CHUNK_SIZE: u32 = 1;
/// Largest allowed chunk size: bounds the reader's per-chunk buffer.
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
/// Default chunk size: 1 MiB of plaintext per chunk.
pub const DEFAULT_CHUNK_SIZE: u32 = 1024 * 1024;

pub(crate) const KEY_CHECK_OFFSET: usize = 72;
const CRC_OFFSET: usize = 92;

/// How a checkpoint's chunks are protected. The id is stored at header offset 12.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Id 0: plaintext chunks, each followed by a truncated SHA-256 digest. Detects
    /// accidental corruption, truncation and reordering, but is **not authenticated**: anyone
    /// who can write the file can recompute the digests. For instances without a key.
    PlaintextSha256,
    /// Id 1: XChaCha20-Poly1305 per chunk; confidential and authenticated.
    XChaCha20Poly1305,
}

impl Algorithm {
    /// The on-disk id.
    pub const fn id(self) -> u8 {
        match self {
            Algorithm::PlaintextSha256 => 0,
            Algorithm::XChaCha20Poly1305 => 1,
        }
    }

    /// Parses an on-disk id.
    pub const fn from_id(id: u8) -> Option<Algorithm> {
        match id {
            0 => Some(Algorithm::PlaintextSha256),
            1 => Some(Algorithm::XChaCha20Poly1305),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::PlaintextSha256 => "plaintext+sha256",
            Algorithm::XChaCha20Poly1305 => "xchacha20poly1305",
        })
    }
}

/// A decoded checkpoint header. Contains nothing secret (the nonce and key check are public).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointHeader {
    /// How the chunks are protected.
    pub algorithm: Algorithm,
    /// The key epoch the file was sealed under.
    pub epoch: KeyEpoch,
    /// The database the checkpoint belongs to.
    pub database_id: DatabaseId,
    /// The LSN the snapshot reflects.
    pub lsn: Lsn,
    /// Plaintext bytes per chunk (every chunk but the last is exactly this long).
    pub chunk_size: u32,
    /// Random base nonce; chunk `i` uses `base_nonce` with `i` XORed into bytes 16..24.
    pub base_nonce: [u8; NONCE_LEN],
    /// Key-check tag (all zeros in plaintext mode).
    pub key_check: [u8; TAG_LEN],
}

/// Why a header failed to decode. `offset()` names the failing field's byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderProblem {
    /// Fewer than 96 bytes.
    #[error("file is {len} bytes, shorter than the {CHECKPOINT_HEADER_LEN}-byte header")]
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// Magic is not `AEDBCKPT`: not a checkpoint file.
    #[error("bad magic (not an aedb checkpoint file)")]
    BadMagic,
    /// Version 0 or newer than this build supports.
    #[error(
        "unsupported checkpoint format version {version} (this build reads 1..={CHECKPOINT_VERSION}); upgrade aedb"
    )]
    UnsupportedVersion {
        /// Version found.
        version: u16,
    },
    /// Version 2 or 3: a run file ([`crate::RunFile`]), not a full checkpoint.
    #[error(
        "checkpoint format versions 2 and 3 are run files (incremental checkpoints), not full checkpoints; open it as a run file"
    )]
    RunFile,
    /// `header_len` is not 96.
    #[error("header_len {len} is not {CHECKPOINT_HEADER_LEN}")]
    BadHeaderLen {
        /// Value found.
        len: u16,
    },
    /// CRC mismatch: the header bytes were corrupted.
    #[error(
        "header CRC mismatch (stored {stored:#010x}, computed {computed:#010x}): header corrupted"
    )]
    BadCrc {
        /// CRC stored in the file.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// Unknown algorithm id.
    #[error("unknown algorithm id {id}")]
    UnknownAlgorithm {
        /// Id found.
        id: u8,
    },
    /// A flags/reserved field that must be zero is not.
    #[error("reserved field at offset {offset} is not zero")]
    NonZeroReserved {
        /// Offset of the field.
        offset: usize,
    },
    /// Chunk size outside `1..=16 MiB`.
    #[error("chunk size {size} outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}")]
    BadChunkSize {
        /// Value found.
        size: u32,
    },
    /// A plaintext-mode header carries a non-zero key check.
    #[error("plaintext checkpoint has a non-zero key check")]
    PlaintextKeyCheck,
}

impl HeaderProblem {
    /// Byte offset (in the file) of the field that failed.
    pub fn offset(&self) -> u64 {
        match self {
            HeaderProblem::TooShort { len } => *len as u64,
            HeaderProblem::BadMagic => 0,
            HeaderProblem::UnsupportedVersion { .. } | HeaderProblem::RunFile => 8,
            HeaderProblem::BadHeaderLen { .. } => 10,
            HeaderProblem::BadCrc { .. } => CRC_OFFSET as u64,
            HeaderProblem::UnknownAlgorithm { .. } => 12,
            HeaderProblem::NonZeroReserved { offset } => *offset as u64,
            HeaderProblem::BadChunkSize { .. } => 44,
            HeaderProblem::PlaintextKeyCheck => KEY_CHECK_OFFSET as u64,
        }
    }
}

impl CheckpointHeader {
    /// Encodes the header, computing its CRC.
    pub fn encode(&self) -> [u8; CHECKPOINT_HEADER_LEN] {
        let mut out = [0u8; CHECKPOINT_HEADER_LEN];
        out[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
        out[8..10].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
        out[10..12].copy_from_slice(&(CHECKPOINT_HEADER_LEN as u16).to_le_bytes());
        out[12] = self.algorithm.id();
        // 13 flags, 14..16 reserved: zero.
        out[16..20].copy_from_slice(&self.epoch.get().to_le_bytes());
        out[20..36].copy_from_slice(self.database_id.as_bytes());
        out[36..44].copy_from_slice(&self.lsn.get().to_le_bytes());
        out[44..48].copy_from_slice(&self.chunk_size.to_le_bytes());
        out[48..72].copy_from_slice(&self.base_nonce);
        out[KEY_CHECK_OFFSET..KEY_CHECK_OFFSET + TAG_LEN].copy_from_slice(&self.key_check);
        // 88..92 reserved: zero.
        let crc = crc32fast::hash(&out[..CRC_OFFSET]);
        out[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates a header from the first bytes of a file.
    ///
    /// Checks, in order: length, magic, version (so a newer file reports "unsupported
    /// version" rather than "bad CRC"), `header_len`, CRC, then the CRC-protected fields.
    ///
    /// # Errors
    /// A [`HeaderProblem`] naming the failing field. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<CheckpointHeader, HeaderProblem> {
        if bytes.len() < CHECKPOINT_HEADER_LEN {
            return Err(HeaderProblem::TooShort { len: bytes.len() });
        }
        let h = &bytes[..CHECKPOINT_HEADER_LEN];
        let mut r: ByteReader<'_> = ByteReader::new("checkpoint header", h);
        let short = |_| HeaderProblem::TooShort { len: bytes.len() };
        let magic: [u8; 8] = r.array().map_err(short)?;
        if magic != CHECKPOINT_MAGIC {
            return Err(HeaderProblem::BadMagic);
        }
        let version = r.u16().map_err(short)?;
        if (crate::run::MIN_RUN_FILE_VERSION..=crate::run::RUN_FILE_VERSION).contains(&version) {
            return Err(HeaderProblem::RunFile);
        }
        if version == 0 || version > CHECKPOINT_VERSION {
            return Err(HeaderProblem::UnsupportedVersion { version });
        }
        let header_len = r.u16().map_err(short)?;
        if usize::from(header_len) != CHECKPOINT_HEADER_LEN {
            return Err(HeaderProblem::BadHeaderLen { len: header_len });
        }
        let stored = u32::from_le_bytes([h[92], h[93], h[94], h[95]]);
        let computed = crc32fast::hash(&h[..CRC_OFFSET]);
        if stored != computed {
            return Err(HeaderProblem::BadCrc { stored, computed });
        }
        let algorithm_id = r.u8().map_err(short)?;
        let flags = r.u8().map_err(short)?;
        let reserved = r.u16().map_err(short)?;
        let epoch = KeyEpoch::new(r.u32().map_err(short)?);
        let database_id = DatabaseId::from_bytes(r.array().map_err(short)?);
        let lsn = Lsn::new(r.u64().map_err(short)?);
        let chunk_size = r.u32().map_err(short)?;
        let base_nonce: [u8; NONCE_LEN] = r.array().map_err(short)?;
        let key_check: [u8; TAG_LEN] = r.array().map_err(short)?;
        let reserved2 = r.u32().map_err(short)?;
        if flags != 0 {
            return Err(HeaderProblem::NonZeroReserved { offset: 13 });
        }
        if reserved != 0 {
            return Err(HeaderProblem::NonZeroReserved { offset: 14 });
        }
        if reserved2 != 0 {
            return Err(HeaderProblem::NonZeroReserved { offset: 88 });
        }
        let algorithm = Algorithm::from_id(algorithm_id)
            .ok_or(HeaderProblem::UnknownAlgorithm { id: algorithm_id })?;
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
            return Err(HeaderProblem::BadChunkSize { size: chunk_size });
        }
        if algorithm == Algorithm::PlaintextSha256 && key_check != [0; TAG_LEN] {
            return Err(HeaderProblem::PlaintextKeyCheck);
        }
        Ok(CheckpointHeader {
            algorithm,
            epoch,
            database_id,
            lsn,
            chunk_size,
            base_nonce,
            key_check,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CheckpointHeader {
        CheckpointHeader {
            algorithm: Algorithm::XChaCha20Poly1305,
            epoch: KeyEpoch::new(3),
            database_id: DatabaseId::from_bytes([0xAB; 16]),
            lsn: Lsn::new(42),
            chunk_size: 4096,
            base_nonce: [9; NONCE_LEN],
            key_check: [5; TAG_LEN],
        }
    }

    #[test]
    fn header_round_trips() {
        let h = sample();
        let bytes = h.encode();
        assert_eq!(&bytes[..8], b"AEDBCKPT");
        assert_eq!(CheckpointHeader::decode(&bytes), Ok(h));
    }

    #[test]
    fn every_single_byte_flip_is_rejected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            let mut b = bytes;
            b[i] ^= 0x01;
            assert!(
                CheckpointHeader::decode(&b).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn newer_version_reports_version_not_crc() {
        let mut b = sample().encode();
        b[8] = 4;
        assert_eq!(
            CheckpointHeader::decode(&b),
            Err(HeaderProblem::UnsupportedVersion { version: 4 })
        );
        assert_eq!(HeaderProblem::UnsupportedVersion { version: 4 }.offset(), 8);
        for run_version in [2, 3] {
            b[8] = run_version;
            assert_eq!(CheckpointHeader::decode(&b), Err(HeaderProblem::RunFile));
        }
        assert_eq!(HeaderProblem::RunFile.offset(), 8);
    }

    #[test]
    fn semantic_fields_are_validated_after_crc() {
        let mut h = sample();
        h.chunk_size = 0;
        assert_eq!(
            CheckpointHeader::decode(&h.encode()),
            Err(HeaderProblem::BadChunkSize { size: 0 })
        );
        let mut h = sample();
        h.algorithm = Algorithm::PlaintextSha256;
        assert_eq!(
            CheckpointHeader::decode(&h.encode()),
            Err(HeaderProblem::PlaintextKeyCheck)
        );
        assert_eq!(
            CheckpointHeader::decode(&[0u8; 10]),
            Err(HeaderProblem::TooShort { len: 10 })
        );
    }
}
