//! The run-file header (checkpoint format versions 2 and 3, 104 bytes): codec and
//! validation. The two versions share the header; they differ in where the block index
//! and filter are (version 3 partitions them, see `directory.rs`).
//!
//! ```text
//! offset size field
//!      0    8 magic        "AEDBCKPT" (shared with version 1)
//!      8    2 version      3 (2 is still read)
//!     10    2 header_len   104
//!     12    1 algorithm    0 = plaintext + SHA-256 integrity, 1 = XChaCha20-Poly1305
//!     13    1 compression  0 = none, 1 = LZ4
//!     14    2 flags        0
//!     16    4 key_epoch    epoch of the sealing key (informational in plaintext mode)
//!     20   16 database_id
//!     36    8 file_id
//!     44   24 file_nonce   random per file: the key check's nonce, and a salt binding
//!                          every block to this file
//!     68   16 key_check    AEAD tag proving which key sealed the file; zeros in plaintext mode
//!     84    8 min_lsn      smallest LSN of any entry
//!     92    8 max_lsn      largest LSN of any entry
//!    100    4 header_crc   CRC-32 (IEEE) of bytes [0, 100)
//! ```
//!
//! Bytes `[0, 84)` (the *identity*) are known when the writer starts and are the first
//! part of every block's associated data. The LSN bounds are known only when the writer
//! finishes (the header is rewritten then), so they are authenticated by the meta block,
//! whose associated data holds the whole header. The CRC only tells accidental header
//! damage apart from other failures.

use crate::header::{Algorithm, CHECKPOINT_MAGIC, TAG_LEN};
use crate::nonce::NONCE_LEN;
use crate::run::Compression;
use aedb_types::ByteReader;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};

/// Format version of the run files this build writes: 3 (partitioned index and filter).
pub const RUN_FILE_VERSION: u16 = 3;
/// The oldest run-file version this build reads: 2 (one index block and one filter
/// block, read as a single partition).
pub const MIN_RUN_FILE_VERSION: u16 = 2;
/// Size of the run-file header in bytes.
pub const RUN_HEADER_LEN: usize = 104;
/// Length of the header's identity prefix (everything before the LSN bounds).
pub(crate) const IDENTITY_LEN: usize = 84;
/// Offset of the key check.
pub(crate) const KEY_CHECK_OFFSET: usize = 68;
const CRC_OFFSET: usize = 100;

/// A decoded run-file header. Contains nothing secret (the nonce and key check are public).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunHeader {
    /// The format version ([`MIN_RUN_FILE_VERSION`] ..= [`RUN_FILE_VERSION`]).
    pub version: u16,
    /// How the blocks are protected.
    pub algorithm: Algorithm,
    /// How the block plaintexts are compressed.
    pub compression: Compression,
    /// The key epoch the file was sealed under.
    pub epoch: KeyEpoch,
    /// The database the run belongs to.
    pub database_id: DatabaseId,
    /// The run's file id.
    pub file_id: u64,
    /// Random per-file nonce (key-check nonce and per-file salt of every block's AAD).
    pub file_nonce: [u8; NONCE_LEN],
    /// Key-check tag (all zeros in plaintext mode).
    pub key_check: [u8; TAG_LEN],
    /// Smallest LSN of any entry (authenticated by the meta block).
    pub min_lsn: Lsn,
    /// Largest LSN of any entry (authenticated by the meta block).
    pub max_lsn: Lsn,
}

/// Why a run-file header failed to decode. `offset()` names the failing field's offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunHeaderProblem {
    /// Fewer than 104 bytes.
    #[error("file is {len} bytes, shorter than the {RUN_HEADER_LEN}-byte run-file header")]
    TooShort {
        /// Bytes available.
        len: u64,
    },
    /// Magic is not `AEDBCKPT`: not a checkpoint file of any version.
    #[error("bad magic (not an aedb checkpoint or run file)")]
    BadMagic,
    /// Version 1: a full checkpoint, not a run file.
    #[error("checkpoint format version 1 is a full checkpoint, not a run file")]
    FullCheckpoint,
    /// Version 0 or newer than this build supports.
    #[error(
        "unsupported run-file format version {version} (this build reads {MIN_RUN_FILE_VERSION} to {RUN_FILE_VERSION}); upgrade aedb"
    )]
    UnsupportedVersion {
        /// Version found.
        version: u16,
    },
    /// `header_len` is not 104.
    #[error("header_len {len} is not {RUN_HEADER_LEN}")]
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
    /// Unknown compression id.
    #[error("unknown compression id {id}")]
    UnknownCompression {
        /// Id found.
        id: u8,
    },
    /// The flags field is not zero.
    #[error("flags {flags:#06x} are not zero")]
    NonZeroFlags {
        /// Value found.
        flags: u16,
    },
    /// A plaintext-mode header carries a non-zero key check.
    #[error("plaintext run file has a non-zero key check")]
    PlaintextKeyCheck,
    /// `min_lsn > max_lsn`.
    #[error("LSN range {min}..={max} is empty")]
    LsnRange {
        /// `min_lsn` found.
        min: Lsn,
        /// `max_lsn` found.
        max: Lsn,
    },
}

impl RunHeaderProblem {
    /// Byte offset (in the file) of the field that failed.
    pub fn offset(&self) -> u64 {
        match self {
            RunHeaderProblem::TooShort { len } => *len,
            RunHeaderProblem::BadMagic => 0,
            RunHeaderProblem::FullCheckpoint | RunHeaderProblem::UnsupportedVersion { .. } => 8,
            RunHeaderProblem::BadHeaderLen { .. } => 10,
            RunHeaderProblem::BadCrc { .. } => CRC_OFFSET as u64,
            RunHeaderProblem::UnknownAlgorithm { .. } => 12,
            RunHeaderProblem::UnknownCompression { .. } => 13,
            RunHeaderProblem::NonZeroFlags { .. } => 14,
            RunHeaderProblem::PlaintextKeyCheck => KEY_CHECK_OFFSET as u64,
            RunHeaderProblem::LsnRange { .. } => IDENTITY_LEN as u64,
        }
    }
}

impl RunHeader {
    /// Encodes the header, computing its CRC.
    pub fn encode(&self) -> [u8; RUN_HEADER_LEN] {
        let mut out = [0u8; RUN_HEADER_LEN];
        out[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
        out[8..10].copy_from_slice(&self.version.to_le_bytes());
        out[10..12].copy_from_slice(&(RUN_HEADER_LEN as u16).to_le_bytes());
        out[12] = self.algorithm.id();
        out[13] = self.compression.id();
        // 14..16 flags: zero.
        out[16..20].copy_from_slice(&self.epoch.get().to_le_bytes());
        out[20..36].copy_from_slice(self.database_id.as_bytes());
        out[36..44].copy_from_slice(&self.file_id.to_le_bytes());
        out[44..KEY_CHECK_OFFSET].copy_from_slice(&self.file_nonce);
        out[KEY_CHECK_OFFSET..IDENTITY_LEN].copy_from_slice(&self.key_check);
        out[84..92].copy_from_slice(&self.min_lsn.get().to_le_bytes());
        out[92..100].copy_from_slice(&self.max_lsn.get().to_le_bytes());
        let crc = crc32fast::hash(&out[..CRC_OFFSET]);
        out[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and validates a header from the first bytes of a file.
    ///
    /// Checks, in order: length, magic, version (a version-1 file is reported as a full
    /// checkpoint, a newer one as unsupported, rather than as a bad CRC), `header_len`,
    /// CRC, then the CRC-protected fields.
    ///
    /// # Errors
    /// A [`RunHeaderProblem`] naming the failing field. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<RunHeader, RunHeaderProblem> {
        let short = |_: aedb_types::DecodeError| RunHeaderProblem::TooShort {
            len: bytes.len() as u64,
        };
        if bytes.len() < RUN_HEADER_LEN {
            return Err(RunHeaderProblem::TooShort {
                len: bytes.len() as u64,
            });
        }
        let h = &bytes[..RUN_HEADER_LEN];
        let mut r: ByteReader<'_> = ByteReader::new("run-file header", h);
        let magic: [u8; 8] = r.array().map_err(short)?;
        if magic != CHECKPOINT_MAGIC {
            return Err(RunHeaderProblem::BadMagic);
        }
        let version = r.u16().map_err(short)?;
        if version == crate::header::CHECKPOINT_VERSION {
            return Err(RunHeaderProblem::FullCheckpoint);
        }
        if !(MIN_RUN_FILE_VERSION..=RUN_FILE_VERSION).contains(&version) {
            return Err(RunHeaderProblem::UnsupportedVersion { version });
        }
        let header_len = r.u16().map_err(short)?;
        if usize::from(header_len) != RUN_HEADER_LEN {
            return Err(RunHeaderProblem::BadHeaderLen { len: header_len });
        }
        let stored = u32::from_le_bytes([h[100], h[101], h[102], h[103]]);
        let computed = crc32fast::hash(&h[..CRC_OFFSET]);
        if stored != computed {
            return Err(RunHeaderProblem::BadCrc { stored, computed });
        }
        let algorithm_id = r.u8().map_err(short)?;
        let compression_id = r.u8().map_err(short)?;
        let flags = r.u16().map_err(short)?;
        let epoch = KeyEpoch::new(r.u32().map_err(short)?);
        let database_id = DatabaseId::from_bytes(r.array().map_err(short)?);
        let file_id = r.u64().map_err(short)?;
        let file_nonce: [u8; NONCE_LEN] = r.array().map_err(short)?;
        let key_check: [u8; TAG_LEN] = r.array().map_err(short)?;
        let min_lsn = Lsn::new(r.u64().map_err(short)?);
        let max_lsn = Lsn::new(r.u64().map_err(short)?);
        let algorithm = Algorithm::from_id(algorithm_id)
            .ok_or(RunHeaderProblem::UnknownAlgorithm { id: algorithm_id })?;
        let compression = Compression::from_id(compression_id)
            .ok_or(RunHeaderProblem::UnknownCompression { id: compression_id })?;
        if flags != 0 {
            return Err(RunHeaderProblem::NonZeroFlags { flags });
        }
        if algorithm == Algorithm::PlaintextSha256 && key_check != [0; TAG_LEN] {
            return Err(RunHeaderProblem::PlaintextKeyCheck);
        }
        if min_lsn > max_lsn {
            return Err(RunHeaderProblem::LsnRange {
                min: min_lsn,
                max: max_lsn,
            });
        }
        Ok(RunHeader {
            version,
            algorithm,
            compression,
            epoch,
            database_id,
            file_id,
            file_nonce,
            key_check,
            min_lsn,
            max_lsn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunHeader {
        RunHeader {
            version: RUN_FILE_VERSION,
            algorithm: Algorithm::XChaCha20Poly1305,
            compression: Compression::Lz4,
            epoch: KeyEpoch::new(3),
            database_id: DatabaseId::from_bytes([0xAB; 16]),
            file_id: 77,
            file_nonce: [9; NONCE_LEN],
            key_check: [5; TAG_LEN],
            min_lsn: Lsn::new(4),
            max_lsn: Lsn::new(42),
        }
    }

    #[test]
    fn header_round_trips_with_the_documented_offsets() {
        let h = sample();
        let b = h.encode();
        assert_eq!(&b[..8], b"AEDBCKPT");
        assert_eq!(u16::from_le_bytes([b[8], b[9]]), 3);
        assert_eq!(u16::from_le_bytes([b[10], b[11]]), 104);
        assert_eq!((b[12], b[13]), (1, 1));
        assert_eq!(&b[36..44], &77u64.to_le_bytes());
        assert_eq!(&b[44..68], &[9; NONCE_LEN]);
        assert_eq!(&b[68..84], &[5; TAG_LEN]);
        assert_eq!(&b[84..92], &4u64.to_le_bytes());
        assert_eq!(&b[92..100], &42u64.to_le_bytes());
        assert_eq!(RunHeader::decode(&b), Ok(h));
    }

    #[test]
    fn every_single_byte_flip_is_rejected() {
        let bytes = sample().encode();
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut b = bytes;
                b[i] ^= bit;
                assert!(RunHeader::decode(&b).is_err(), "flip at {i} accepted");
            }
        }
    }

    #[test]
    fn versions_and_semantic_fields() {
        let mut b = sample().encode();
        b[8] = 1;
        assert_eq!(RunHeader::decode(&b), Err(RunHeaderProblem::FullCheckpoint));
        b[8] = 4;
        assert_eq!(
            RunHeader::decode(&b),
            Err(RunHeaderProblem::UnsupportedVersion { version: 4 })
        );
        // Version 2 is still read, and re-encodes as itself.
        let mut v2 = sample();
        v2.version = 2;
        assert_eq!(RunHeader::decode(&v2.encode()), Ok(v2));
        let mut h = sample();
        h.min_lsn = Lsn::new(50);
        assert!(matches!(
            RunHeader::decode(&h.encode()),
            Err(RunHeaderProblem::LsnRange { .. })
        ));
        let mut h = sample();
        h.algorithm = Algorithm::PlaintextSha256;
        assert_eq!(
            RunHeader::decode(&h.encode()),
            Err(RunHeaderProblem::PlaintextKeyCheck)
        );
        let mut b = sample().encode();
        b[13] = 2;
        let crc = crc32fast::hash(&b[..100]);
        b[100..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            RunHeader::decode(&b),
            Err(RunHeaderProblem::UnknownCompression { id: 2 })
        );
        assert_eq!(
            RunHeader::decode(&[0u8; 10]),
            Err(RunHeaderProblem::TooShort { len: 10 })
        );
        // A version-1 checkpoint header is recognised as such.
        let v1 = crate::CheckpointHeader {
            algorithm: Algorithm::XChaCha20Poly1305,
            epoch: KeyEpoch::new(1),
            database_id: DatabaseId::from_bytes([1; 16]),
            lsn: Lsn::new(1),
            chunk_size: 16,
            base_nonce: [0; NONCE_LEN],
            key_check: [1; TAG_LEN],
        }
        .encode();
        let mut padded = v1.to_vec();
        padded.resize(RUN_HEADER_LEN, 0);
        assert_eq!(
            RunHeader::decode(&padded),
            Err(RunHeaderProblem::FullCheckpoint)
        );
    }
}
