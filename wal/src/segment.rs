//! Segment-level codecs: the segment header, the `SegmentEnd` trailer payload, and the
//! newtypes naming a segment ([`SegmentSeq`]) and its chain hash ([`SegmentHash`]).
//!
//! A segment file is `header | frame* | [SegmentEnd frame] | zero padding`. The header
//! (64 bytes, little-endian, see `docs/FORMAT.md`):
//!
//! ```text
//! offset  size  field
//!      0     8  magic        b"AEDB-WAL"
//!      8     2  version      u16, currently 1
//!     10     2  header_len   u16, 64 in version 1 (frames start here)
//!     12     8  seq          u64 segment sequence number (matches the file name)
//!     20     8  base_lsn     u64 first LSN this segment may contain (>= 1)
//!     28    32  prev_hash    SHA-256 of the previous sealed segment, zeros for seq 0
//!     60     4  header_crc   CRC-32 of bytes [0, 60)
//! ```
//!
//! **Chain hash.** The hash of a sealed segment is SHA-256 over the file's bytes
//! `[0, sealed_len)`, where `sealed_len = data_end + SEGMENT_END_LEN` and `data_end` is the
//! offset of the `SegmentEnd` frame, recorded in that frame's payload. Zero padding after
//! the trailer is not hashed, so preallocation never changes the hash.

use std::fmt;

use crate::frame::{FRAME_OVERHEAD, FrameKind, encode_checked_len, read_u32, read_u64};
use aedb_types::Lsn;
/// Re-exported from `aedb-types`, where every crate naming a segment finds it.
pub use aedb_types::SegmentSeq;

/// The eight magic bytes every segment starts with.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AEDB-WAL";
/// The segment format version this crate writes.
pub const SEGMENT_FORMAT_VERSION: u16 = 1;
/// Size of a version-1 segment header; the first frame starts at this offset.
pub const SEGMENT_HEADER_LEN: usize = 64;
/// Byte offset of the `seq` field in the header (for error reports).
pub const HEADER_SEQ_OFFSET: u64 = 12;
/// Byte offset of the `base_lsn` field in the header (for error reports).
pub const HEADER_BASE_LSN_OFFSET: u64 = 20;
/// Byte offset of the `prev_hash` field in the header (for error reports).
pub const HEADER_PREV_HASH_OFFSET: u64 = 28;
/// Size of the `SegmentEnd` payload.
pub const SEGMENT_END_PAYLOAD_LEN: usize = 16;
/// Size of the whole `SegmentEnd` frame (frame overhead + payload).
pub const SEGMENT_END_LEN: usize = FRAME_OVERHEAD + SEGMENT_END_PAYLOAD_LEN;

const HEADER_CRC_OFFSET: usize = 60;

/// A SHA-256 chain hash of a sealed segment (see the module docs for the covered bytes).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SegmentHash(pub [u8; 32]);

impl SegmentHash {
    /// The all-zero hash stored as `prev_hash` by the first segment of a log.
    pub const ZERO: SegmentHash = SegmentHash([0; 32]);

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for SegmentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SegmentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentHash({self})")
    }
}

/// The decoded header of a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version the segment was written with.
    pub version: u16,
    /// The segment's sequence number.
    pub seq: SegmentSeq,
    /// The first LSN this segment may contain; its first frame carries exactly this LSN.
    pub base_lsn: Lsn,
    /// Chain hash of the previous sealed segment ([`SegmentHash::ZERO`] for seq 0).
    pub prev_hash: SegmentHash,
}

/// Why bytes did not decode as a segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentHeaderError {
    /// Fewer bytes than a header: the file was cut short or never fully written.
    #[error("segment header truncated: need {needed} bytes, file has {available}")]
    Truncated {
        /// Bytes the header needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// The file does not start with [`SEGMENT_MAGIC`]: not an aedb WAL segment.
    #[error("not an aedb WAL segment: magic {found:02x?}")]
    BadMagic {
        /// The first eight bytes found.
        found: [u8; 8],
    },
    /// The segment was written by a format version this build cannot read.
    #[error("unsupported WAL segment format version {found} (this build reads 1..={supported})")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
        /// The newest version this build supports.
        supported: u16,
    },
    /// The header length field does not match the version's header size.
    #[error("segment header length {found} does not match {expected} for this format version")]
    BadHeaderLen {
        /// The length found.
        found: u16,
        /// The length the version requires.
        expected: u16,
    },
    /// The header CRC does not match: the header bytes were damaged.
    #[error("segment header CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the header.
        computed: u32,
    },
    /// The base LSN is 0, which no segment can have (the first commit is LSN 1).
    #[error("segment header has base LSN 0")]
    ZeroBaseLsn,
}

impl SegmentHeader {
    /// Encodes the header (always as the current format version).
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..10].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        out[10..12].copy_from_slice(&(SEGMENT_HEADER_LEN as u16).to_le_bytes());
        out[12..20].copy_from_slice(&self.seq.get().to_le_bytes());
        out[20..28].copy_from_slice(&self.base_lsn.get().to_le_bytes());
        out[28..60].copy_from_slice(&self.prev_hash.0);
        let crc = crc32fast::hash(&out[..HEADER_CRC_OFFSET]);
        out[HEADER_CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes the header at the start of `buf` (bytes after it are ignored). Never panics.
    ///
    /// The version is checked before the CRC so that a file from a newer format reports
    /// [`SegmentHeaderError::UnsupportedVersion`] rather than a CRC error.
    pub fn decode(buf: &[u8]) -> Result<SegmentHeader, SegmentHeaderError> {
        // The fixed prefix (magic, version, header_len) is the same in every version.
        let Some(prefix) = buf.get(..12) else {
            return Err(SegmentHeaderError::Truncated {
                needed: SEGMENT_HEADER_LEN,
                available: buf.len(),
            });
        };
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&prefix[0..8]);
        if magic != SEGMENT_MAGIC {
            return Err(SegmentHeaderError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes([prefix[8], prefix[9]]);
        if version == 0 || version > SEGMENT_FORMAT_VERSION {
            return Err(SegmentHeaderError::UnsupportedVersion {
                found: version,
                supported: SEGMENT_FORMAT_VERSION,
            });
        }
        let header_len = u16::from_le_bytes([prefix[10], prefix[11]]);
        if usize::from(header_len) != SEGMENT_HEADER_LEN {
            return Err(SegmentHeaderError::BadHeaderLen {
                found: header_len,
                expected: SEGMENT_HEADER_LEN as u16,
            });
        }
        let Some(header) = buf.get(..SEGMENT_HEADER_LEN) else {
            return Err(SegmentHeaderError::Truncated {
                needed: SEGMENT_HEADER_LEN,
                available: buf.len(),
            });
        };
        let stored = read_u32(&header[HEADER_CRC_OFFSET..]);
        let computed = crc32fast::hash(&header[..HEADER_CRC_OFFSET]);
        if stored != computed {
            return Err(SegmentHeaderError::BadCrc { stored, computed });
        }
        let base_lsn = read_u64(&header[20..28]);
        if base_lsn == 0 {
            return Err(SegmentHeaderError::ZeroBaseLsn);
        }
        let mut prev_hash = [0u8; 32];
        prev_hash.copy_from_slice(&header[28..60]);
        Ok(SegmentHeader {
            version,
            seq: SegmentSeq::new(read_u64(&header[12..20])),
            base_lsn: Lsn::new(base_lsn),
            prev_hash: SegmentHash(prev_hash),
        })
    }

    /// The header length of this header's format version (where its first frame starts).
    pub const fn header_len(&self) -> usize {
        SEGMENT_HEADER_LEN
    }
}

/// The payload of the `SegmentEnd` frame that seals a segment.
///
/// The frame's LSN field repeats the segment's last LSN (`base_lsn - 1` when the
/// segment holds no frames); it does not consume an LSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentEnd {
    /// Byte offset at which the `SegmentEnd` frame itself starts, i.e. the end of the
    /// header and data frames. The sealed length is `data_end + SEGMENT_END_LEN`.
    pub data_end: u64,
    /// Number of records in the segment's data frames (excluding the trailer): one per
    /// `Commit` frame, `count` per `SealedBatch` frame, i.e. the LSNs the segment covers.
    pub frame_count: u64,
}

/// Why a `SegmentEnd` payload did not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentEndError {
    /// The payload is not exactly [`SEGMENT_END_PAYLOAD_LEN`] bytes.
    #[error("SegmentEnd payload is {len} bytes, expected {expected}")]
    BadLength {
        /// Length found.
        len: usize,
        /// Length required.
        expected: usize,
    },
}

impl SegmentEnd {
    /// Encodes the payload.
    pub fn encode_payload(&self) -> [u8; SEGMENT_END_PAYLOAD_LEN] {
        let mut out = [0u8; SEGMENT_END_PAYLOAD_LEN];
        out[0..8].copy_from_slice(&self.data_end.to_le_bytes());
        out[8..16].copy_from_slice(&self.frame_count.to_le_bytes());
        out
    }

    /// Decodes a `SegmentEnd` payload. Never panics.
    pub fn decode_payload(payload: &[u8]) -> Result<SegmentEnd, SegmentEndError> {
        if payload.len() != SEGMENT_END_PAYLOAD_LEN {
            return Err(SegmentEndError::BadLength {
                len: payload.len(),
                expected: SEGMENT_END_PAYLOAD_LEN,
            });
        }
        Ok(SegmentEnd {
            data_end: read_u64(&payload[0..8]),
            frame_count: read_u64(&payload[8..16]),
        })
    }

    /// Appends the complete `SegmentEnd` frame (carrying `last_lsn`, the segment's last
    /// LSN or `base_lsn - 1` if it holds no frames) to `out`.
    pub fn encode_frame(&self, last_lsn: Lsn, out: &mut Vec<u8>) {
        let payload = self.encode_payload();
        encode_checked_len(
            last_lsn,
            FrameKind::SegmentEnd,
            SEGMENT_END_PAYLOAD_LEN as u32,
            &payload,
            out,
        );
    }

    /// Total sealed length of the segment: the bytes the chain hash covers.
    pub const fn sealed_len(&self) -> u64 {
        self.data_end.saturating_add(SEGMENT_END_LEN as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentHeader {
        SegmentHeader {
            version: SEGMENT_FORMAT_VERSION,
            seq: SegmentSeq::new(3),
            base_lsn: Lsn::new(1000),
            prev_hash: SegmentHash([0xab; 32]),
        }
    }

    #[test]
    fn header_round_trip() {
        let bytes = sample().encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn header_errors_are_typed() {
        let bytes = sample().encode();
        assert!(matches!(
            SegmentHeader::decode(&bytes[..40]),
            Err(SegmentHeaderError::Truncated {
                needed: 64,
                available: 40
            })
        ));
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(matches!(
            SegmentHeader::decode(&bad),
            Err(SegmentHeaderError::BadMagic { .. })
        ));
        let mut bad = bytes;
        bad[8] = 2;
        assert_eq!(
            SegmentHeader::decode(&bad),
            Err(SegmentHeaderError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        );
        let mut bad = bytes;
        bad[40] ^= 1;
        assert!(matches!(
            SegmentHeader::decode(&bad),
            Err(SegmentHeaderError::BadCrc { .. })
        ));
        let zero_base = SegmentHeader {
            base_lsn: Lsn::ZERO,
            ..sample()
        };
        assert_eq!(
            SegmentHeader::decode(&zero_base.encode()),
            Err(SegmentHeaderError::ZeroBaseLsn)
        );
    }

    #[test]
    fn golden_header_bytes() {
        let bytes = sample().encode();
        assert_eq!(&bytes[0..8], b"AEDB-WAL");
        assert_eq!(&bytes[8..12], &[1, 0, 64, 0]);
        assert_eq!(&bytes[12..20], &3u64.to_le_bytes());
        assert_eq!(&bytes[20..28], &1000u64.to_le_bytes());
        assert_eq!(&bytes[28..60], &[0xab; 32]);
        assert_eq!(&bytes[60..64], &crc32fast::hash(&bytes[..60]).to_le_bytes());
    }

    #[test]
    fn segment_end_round_trip() {
        let end = SegmentEnd {
            data_end: 4096,
            frame_count: 17,
        };
        assert_eq!(SegmentEnd::decode_payload(&end.encode_payload()), Ok(end));
        assert_eq!(end.sealed_len(), 4096 + SEGMENT_END_LEN as u64);
        assert!(SegmentEnd::decode_payload(&[0; 15]).is_err());
    }

    #[test]
    fn hash_displays_as_hex() {
        let mut raw = [0u8; 32];
        raw[0] = 0xde;
        raw[31] = 0x01;
        let text = SegmentHash(raw).to_string();
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("de00"));
        assert!(text.ends_with("01"));
    }
}
