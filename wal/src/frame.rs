//! The WAL frame codec: one logged record, self-delimiting and CRC-protected.
//!
//! Layout (little-endian, see `docs/FORMAT.md`, section "WAL"):
//!
//! ```text
//! offset  size  field
//!      0     4  payload_len   u32, at most MAX_PAYLOAD_LEN
//!      4     8  lsn           u64
//!     12     1  kind          u8, see FrameKind (0 is never valid)
//!     13     1  flags         u8, must be 0 in format version 1
//!     14     2  reserved      u16, must be 0 in format version 1
//!     16     n  payload       payload_len bytes, opaque to the WAL
//!   16+n     4  crc32         CRC-32 (IEEE, crc32fast) of bytes [0, 16+n)
//! ```
//!
//! Because `kind` is never 0, a frame header of sixteen zero bytes cannot be a real
//! frame: it marks the end of data in a preallocated (zero-filled) segment and decodes
//! to [`FrameError::Zeroed`].

use aedb_types::Lsn;

/// Size of the fixed frame header that precedes the payload.
pub const FRAME_HEADER_LEN: usize = 16;
/// Size of the CRC-32 that follows the payload.
pub const FRAME_CRC_LEN: usize = 4;
/// Bytes a frame occupies in addition to its payload.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + FRAME_CRC_LEN;
/// Largest payload a frame may carry (64 MiB). Checked before any allocation or read.
pub const MAX_PAYLOAD_LEN: u32 = 64 * 1024 * 1024;

/// What a frame holds. Stored as one byte; unknown bytes are a typed decode error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// A plaintext commit record (payload format owned by the commit pipeline). Byte `1`.
    Commit,
    /// A group-commit batch of commit records sealed with XChaCha20-Poly1305 (see
    /// [`crate::seal`]); its LSN is the batch's last LSN and it covers
    /// `first_lsn ..= lsn`. Written only by the writer when a
    /// [`crate::WalConfig::cipher`] is configured; [`crate::WalWriter::append`] rejects
    /// it, and recovery delivers its records as `Commit` frames. Byte `2`.
    SealedBatch,
    /// The trailer that seals a segment (see [`crate::segment::SegmentEnd`]). Written
    /// only by the writer when it rotates; [`crate::WalWriter::append`] rejects it. Byte `3`.
    SegmentEnd,
}

impl FrameKind {
    /// Every kind this version of the codec knows, in byte order.
    pub const ALL: [FrameKind; 3] = [
        FrameKind::Commit,
        FrameKind::SealedBatch,
        FrameKind::SegmentEnd,
    ];

    /// The on-disk byte for this kind.
    pub const fn to_byte(self) -> u8 {
        match self {
            FrameKind::Commit => 1,
            FrameKind::SealedBatch => 2,
            FrameKind::SegmentEnd => 3,
        }
    }

    /// The kind for an on-disk byte, or `None` if this version does not know it.
    pub const fn from_byte(byte: u8) -> Option<FrameKind> {
        match byte {
            1 => Some(FrameKind::Commit),
            2 => Some(FrameKind::SealedBatch),
            3 => Some(FrameKind::SegmentEnd),
            _ => None,
        }
    }

    /// Whether callers may append frames of this kind: only `Commit`; `SealedBatch` and
    /// `SegmentEnd` are produced by the writer itself.
    pub const fn is_user_kind(self) -> bool {
        matches!(self, FrameKind::Commit)
    }
}

/// A frame decoded in place: the payload borrows the input buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedFrame<'a> {
    /// The frame's log sequence number.
    pub lsn: Lsn,
    /// What the frame holds.
    pub kind: FrameKind,
    /// The payload bytes, exactly as appended.
    pub payload: &'a [u8],
    /// Total bytes the frame occupies in the buffer (header + payload + CRC); the next
    /// frame starts this many bytes after this one. For a record unpacked from a sealed
    /// batch (as recovery delivers them), the record's length inside the batch plaintext.
    pub encoded_len: usize,
}

/// Why bytes did not decode as a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The buffer ends before the frame does: `needed` bytes are required, only
    /// `available` are present. In a stream, read more; at the end of a WAL, a torn tail.
    #[error("frame truncated: need {needed} bytes, only {available} available")]
    Truncated {
        /// Bytes the frame (or its header) needs.
        needed: usize,
        /// Bytes present in the buffer.
        available: usize,
    },
    /// The header bytes are all zero: this is not a frame but the end of written data in
    /// a preallocated segment (no valid frame has kind 0).
    #[error("all-zero frame header (end of data in a preallocated segment)")]
    Zeroed,
    /// The declared payload length exceeds [`MAX_PAYLOAD_LEN`]; nothing was allocated.
    #[error("frame declares a {len}-byte payload, above the {max}-byte maximum")]
    BadLength {
        /// The declared payload length.
        len: u32,
        /// The maximum allowed ([`MAX_PAYLOAD_LEN`]).
        max: u32,
    },
    /// The stored CRC does not match the header and payload: the bytes were damaged.
    #[error("frame CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC stored after the payload.
        stored: u32,
        /// CRC computed over header and payload.
        computed: u32,
    },
    /// The CRC is valid but the kind byte is unknown to this version (a newer writer).
    #[error("unknown frame kind byte {kind} (written by a newer aedb version?)")]
    UnknownKind {
        /// The kind byte found.
        kind: u8,
    },
    /// The CRC is valid but flag or reserved bits that format version 1 requires to be
    /// zero are set (a newer writer).
    #[error("frame has flags {flags:#04x} / reserved {reserved:#06x} set; version 1 requires zero")]
    ReservedBitsSet {
        /// The flags byte found.
        flags: u8,
        /// The reserved field found.
        reserved: u16,
    },
}

impl FrameError {
    /// True for [`FrameError::Zeroed`]: the bytes are the zero tail of a preallocated
    /// segment, i.e. a clean end of data rather than damage.
    pub const fn is_end_of_data(&self) -> bool {
        matches!(self, FrameError::Zeroed)
    }
}

/// The payload handed to [`encode_frame`] is longer than [`MAX_PAYLOAD_LEN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("frame payload is {len} bytes; the maximum is {max}")]
pub struct PayloadTooLarge {
    /// The payload length given.
    pub len: usize,
    /// The maximum allowed ([`MAX_PAYLOAD_LEN`]).
    pub max: u32,
}

/// Bytes a frame with a `payload_len`-byte payload occupies once encoded.
pub const fn encoded_frame_len(payload_len: usize) -> usize {
    FRAME_OVERHEAD + payload_len
}

/// Appends the encoding of one frame to `out` and returns how many bytes were appended.
///
/// Fails (appending nothing) if the payload exceeds [`MAX_PAYLOAD_LEN`].
pub fn encode_frame(
    lsn: Lsn,
    kind: FrameKind,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, PayloadTooLarge> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_PAYLOAD_LEN)
        .ok_or(PayloadTooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD_LEN,
        })?;
    encode_checked_len(lsn, kind, len, payload, out);
    Ok(encoded_frame_len(payload.len()))
}

/// Appends a frame whose payload length `len` (== `payload.len()`) the caller has
/// already checked against [`MAX_PAYLOAD_LEN`].
pub(crate) fn encode_checked_len(
    lsn: Lsn,
    kind: FrameKind,
    len: u32,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.reserve(encoded_frame_len(payload.len()));
    out.extend_from_slice(&encode_header(len, lsn, kind));
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The 16 header bytes of a version-1 frame (flags and reserved zero).
pub(crate) fn encode_header(len: u32, lsn: Lsn, kind: FrameKind) -> [u8; FRAME_HEADER_LEN] {
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[0..4].copy_from_slice(&len.to_le_bytes());
    header[4..12].copy_from_slice(&lsn.get().to_le_bytes());
    header[12] = kind.to_byte();
    // [13] flags and [14, 16) reserved stay zero.
    header
}

/// Decodes the frame at the start of `buf`. Never panics and never allocates.
///
/// Checks run in this order: header present (else [`FrameError::Truncated`], or
/// [`FrameError::Zeroed`] if the available header bytes are all zero), header all zero
/// ([`FrameError::Zeroed`]), payload length bound ([`FrameError::BadLength`]), whole frame
/// present ([`FrameError::Truncated`]), CRC ([`FrameError::BadCrc`]), then the fields the
/// CRC vouches for: kind ([`FrameError::UnknownKind`]) and reserved bits
/// ([`FrameError::ReservedBitsSet`]). Bytes after the frame are ignored.
pub fn decode_frame(buf: &[u8]) -> Result<DecodedFrame<'_>, FrameError> {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        if !buf.is_empty() && is_all_zero(buf) {
            return Err(FrameError::Zeroed);
        }
        return Err(FrameError::Truncated {
            needed: FRAME_HEADER_LEN,
            available: buf.len(),
        });
    };
    if is_all_zero(header) {
        return Err(FrameError::Zeroed);
    }
    let fields = HeaderFields::parse(header);
    if fields.payload_len > MAX_PAYLOAD_LEN {
        return Err(FrameError::BadLength {
            len: fields.payload_len,
            max: MAX_PAYLOAD_LEN,
        });
    }
    // Cannot overflow: payload_len <= 64 MiB.
    let body_end = FRAME_HEADER_LEN + fields.payload_len as usize;
    let total = body_end + FRAME_CRC_LEN;
    let (Some(body), Some(crc_bytes)) = (buf.get(..body_end), buf.get(body_end..total)) else {
        return Err(FrameError::Truncated {
            needed: total,
            available: buf.len(),
        });
    };
    let stored = read_u32(crc_bytes);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(FrameError::BadCrc { stored, computed });
    }
    let kind =
        FrameKind::from_byte(fields.kind).ok_or(FrameError::UnknownKind { kind: fields.kind })?;
    if fields.flags != 0 || fields.reserved != 0 {
        return Err(FrameError::ReservedBitsSet {
            flags: fields.flags,
            reserved: fields.reserved,
        });
    }
    Ok(DecodedFrame {
        lsn: Lsn::new(fields.lsn),
        kind,
        payload: &body[FRAME_HEADER_LEN..],
        encoded_len: total,
    })
}

/// The raw fields of a frame header, unvalidated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderFields {
    pub(crate) payload_len: u32,
    pub(crate) lsn: u64,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) reserved: u16,
}

impl HeaderFields {
    /// Parses the first [`FRAME_HEADER_LEN`] bytes of `header` (caller guarantees length).
    fn parse(header: &[u8]) -> HeaderFields {
        HeaderFields {
            payload_len: read_u32(&header[0..4]),
            lsn: read_u64(&header[4..12]),
            kind: header[12],
            flags: header[13],
            reserved: u16::from_le_bytes([header[14], header[15]]),
        }
    }

    /// Parses a header if `buf` holds one, without any validation.
    pub(crate) fn peek(buf: &[u8]) -> Option<HeaderFields> {
        buf.get(..FRAME_HEADER_LEN).map(HeaderFields::parse)
    }

    /// Whether the header's fixed fields are ones a version-1 writer could produce.
    pub(crate) fn is_plausible(&self) -> bool {
        self.payload_len <= MAX_PAYLOAD_LEN
            && FrameKind::from_byte(self.kind).is_some()
            && self.flags == 0
            && self.reserved == 0
    }
}

/// Reads a little-endian u32 from the first four bytes (caller guarantees length).
pub(crate) fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Reads a little-endian u64 from the first eight bytes (caller guarantees length).
pub(crate) fn read_u64(bytes: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(raw)
}

/// Whether every byte is zero. Folds in blocks so the compiler can vectorise it; used to
/// scan the preallocated tails of segments, which can be tens of MiB.
pub(crate) fn is_all_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, b| acc | b) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(lsn: u64, kind: FrameKind, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(Lsn::new(lsn), kind, payload, &mut out).expect("payload within bounds");
        out
    }

    #[test]
    fn round_trip_with_trailing_bytes() {
        let mut buf = encode(7, FrameKind::Commit, b"hello");
        let len = buf.len();
        buf.extend_from_slice(b"next frame");
        let frame = decode_frame(&buf).expect("valid frame");
        assert_eq!(frame.lsn, Lsn::new(7));
        assert_eq!(frame.kind, FrameKind::Commit);
        assert_eq!(frame.payload, b"hello");
        assert_eq!(frame.encoded_len, len);
        assert_eq!(len, encoded_frame_len(5));
    }

    #[test]
    fn zero_header_is_end_of_data() {
        assert_eq!(decode_frame(&[0u8; 64]), Err(FrameError::Zeroed));
        assert_eq!(decode_frame(&[0u8; 3]), Err(FrameError::Zeroed));
        assert!(FrameError::Zeroed.is_end_of_data());
        assert_eq!(
            decode_frame(&[]),
            Err(FrameError::Truncated {
                needed: FRAME_HEADER_LEN,
                available: 0
            })
        );
    }

    #[test]
    fn oversized_length_is_rejected_before_reading() {
        let mut buf = encode(1, FrameKind::Commit, b"x");
        buf[0..4].copy_from_slice(&(MAX_PAYLOAD_LEN + 1).to_le_bytes());
        assert_eq!(
            decode_frame(&buf),
            Err(FrameError::BadLength {
                len: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
    }

    #[test]
    fn unknown_kind_and_reserved_bits_are_typed_when_crc_is_valid() {
        let mut buf = encode(1, FrameKind::Commit, b"x");
        buf[12] = 0x42;
        let n = buf.len();
        let crc = crc32fast::hash(&buf[..n - 4]);
        buf[n - 4..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_frame(&buf),
            Err(FrameError::UnknownKind { kind: 0x42 })
        );

        let mut buf = encode(1, FrameKind::Commit, b"x");
        buf[13] = 1;
        let crc = crc32fast::hash(&buf[..n - 4]);
        buf[n - 4..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode_frame(&buf),
            Err(FrameError::ReservedBitsSet {
                flags: 1,
                reserved: 0
            })
        );
    }

    #[test]
    fn kind_bytes_round_trip() {
        for kind in FrameKind::ALL {
            assert_eq!(FrameKind::from_byte(kind.to_byte()), Some(kind));
        }
        assert_eq!(FrameKind::from_byte(0), None);
        assert!(!FrameKind::SegmentEnd.is_user_kind());
        assert!(!FrameKind::SealedBatch.is_user_kind());
        assert!(FrameKind::Commit.is_user_kind());
    }

    #[test]
    fn golden_frame_bytes() {
        // Pins the v1 layout byte for byte.
        let buf = encode(0x0102_0304_0506_0708, FrameKind::Commit, b"ab");
        let mut expected = vec![
            2, 0, 0, 0, // payload_len
            8, 7, 6, 5, 4, 3, 2, 1, // lsn
            1, 0, 0, 0, // kind, flags, reserved
            b'a', b'b',
        ];
        let crc = crc32fast::hash(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(buf, expected);
    }
}
