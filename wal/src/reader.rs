//! Reading one segment: memory-mapping the file and scanning its frames in order.
//!
//! [`scan_segment`] is a pure function over `&[u8]` (a fuzz target): it decodes the
//! header, streams every data frame to a callback, checks LSN contiguity and the
//! `SegmentEnd` trailer, hashes the bytes for the chain, and classifies how the segment
//! ends. It never modifies anything; [`crate::recover`] decides what to do with the result.
//!
//! # Torn tail versus corruption
//!
//! Only the **last** segment can have a torn tail: every earlier segment was sealed and
//! synced before its successor was created. In the last segment, when the frame at offset
//! `O` fails to decode (truncated, bad CRC, impossible length, or zero bytes followed by
//! data), let `E` be one past the last non-zero byte of the file. The damage is a
//! **torn tail** when either
//!
//! 1. no CRC-valid frame with a plausible LSN starts anywhere in `(O, E)` ("followed only
//!    by zeros, garbage or EOF"), or
//! 2. such a frame starts at `X`, but `[O, X)` holds the zeros of a sector piece of the
//!    unsynced write that never reached the disk while a later one did: an aligned
//!    512-byte sector of zeros, the write's head (`[O, next boundary)` all zero: the damaged
//!    frame is where the unsynced write began) or its tail (`[boundary, X)` all zero: `X`
//!    is where the next write began). Sectors are atomic; only the sector being written
//!    when the power failed tears, and nothing after it reached the disk (rule 1).
//!
//! Anything else (for example a bad CRC with intact later frames and no lost sector, an
//! LSN gap, an unknown frame kind with a valid CRC) is **corruption**. Data after a torn
//! point was necessarily written after the torn frame and so was never covered by a
//! successful fsync; discarding it loses nothing that was acknowledged as durable.

use std::path::PathBuf;

use aedb_types::Lsn;
use sha2::{Digest, Sha256};

use crate::frame::{DecodedFrame, FrameError, FrameKind, HeaderFields, decode_frame, is_all_zero};
use crate::seal::{RECORD_HEADER_LEN, SealError, SealedBatchHeader};
use crate::segment::{
    SegmentEnd, SegmentEndError, SegmentHash, SegmentHeader, SegmentHeaderError, SegmentSeq,
};

/// Sector size used to recognise lost (never persisted) regions of a torn write.
pub const TORN_SECTOR_LEN: usize = aedb_fs::SECTOR_SIZE as usize;

/// What is wrong with a segment or with the chain of segments.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// The segment header did not decode.
    #[error("bad segment header: {0}")]
    Header(SegmentHeaderError),
    /// A frame did not decode.
    #[error("bad frame: {0}")]
    Frame(FrameError),
    /// A run of zero bytes where a frame should start, followed by more data at `data_at`.
    #[error("zero bytes where a frame should start, but data follows at offset {data_at}")]
    ZeroGap {
        /// Offset of the first non-zero byte after the gap.
        data_at: u64,
    },
    /// A CRC-valid `SealedBatch` frame whose plaintext header is malformed or does not
    /// match the frame (checked without a key; see [`crate::seal`]).
    #[error("bad sealed batch: {0}")]
    SealedBatch(SealError),
    /// A CRC-valid frame carries the wrong LSN (LSNs must be dense and increasing; for a
    /// sealed batch, `found` is the batch's first LSN).
    #[error("LSN gap: expected LSN {expected}, found {found}")]
    LsnGap {
        /// The LSN required at this point.
        expected: Lsn,
        /// The LSN found.
        found: Lsn,
    },
    /// The `SegmentEnd` payload did not decode.
    #[error("bad SegmentEnd trailer: {0}")]
    Trailer(SegmentEndError),
    /// The `SegmentEnd` trailer disagrees with the segment it seals.
    #[error("SegmentEnd trailer records {field} = {recorded}, but the segment has {actual}")]
    TrailerMismatch {
        /// Which trailer field disagrees (`"lsn"`, `"data_end"` or `"frame_count"`).
        field: &'static str,
        /// The value recorded in the trailer.
        recorded: u64,
        /// The value observed while scanning.
        actual: u64,
    },
    /// Non-zero bytes after the `SegmentEnd` trailer of a sealed segment.
    #[error("data after the SegmentEnd trailer (sealed length {sealed_len})")]
    DataAfterTrailer {
        /// The sealed length of the segment.
        sealed_len: u64,
    },
    /// A segment other than the last one has no `SegmentEnd` trailer.
    #[error("segment is not sealed, yet a later segment exists")]
    Unsealed,
    /// A segment file is missing from the sequence (for example deleted).
    #[error("segment sequence gap: expected segment {expected}, found {found}")]
    SequenceGap {
        /// The sequence number that should come next.
        expected: SegmentSeq,
        /// The sequence number found instead.
        found: SegmentSeq,
    },
    /// The file name and the header disagree about the sequence number.
    #[error("file is named as segment {name_seq} but its header says {header_seq}")]
    NameMismatch {
        /// Sequence number in the file name.
        name_seq: SegmentSeq,
        /// Sequence number in the header.
        header_seq: SegmentSeq,
    },
    /// The segment's base LSN does not continue the previous segment.
    #[error("base LSN {found} does not continue the previous segment (expected {expected})")]
    BaseLsnMismatch {
        /// `last LSN of the previous segment + 1`.
        expected: Lsn,
        /// The base LSN in this header.
        found: Lsn,
    },
    /// The header's `prev_hash` is not the hash of the previous sealed segment: that
    /// segment was modified after sealing, or segments were swapped.
    #[error("chain hash mismatch: previous segment {} hashes to {actual}, header records {recorded}", previous.display())]
    ChainMismatch {
        /// The previous segment file.
        previous: PathBuf,
        /// SHA-256 of the previous segment's sealed bytes.
        actual: SegmentHash,
        /// The `prev_hash` recorded in this header.
        recorded: SegmentHash,
    },
    /// Segment 0 records a non-zero `prev_hash`, but nothing can precede it.
    #[error("segment 0 records a non-zero previous hash {found}")]
    NonZeroGenesisHash {
        /// The hash found.
        found: SegmentHash,
    },
}

/// Damage found while scanning a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the problem (the start of the failing frame, or the first
    /// offending byte after a trailer).
    pub offset: u64,
    /// What is wrong.
    pub corruption: Corruption,
    /// One past the last non-zero byte of the file: a repair zeroes
    /// `[data_end, nonzero_end)`.
    pub nonzero_end: u64,
    /// Whether this is a torn tail (see the module docs) rather than corruption.
    /// Always false outside the last segment.
    pub torn: bool,
}

/// How a scanned segment ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanEnd {
    /// Zeros or end-of-file follow the last frame: an unsealed (active) segment.
    Open,
    /// The segment ends with a valid `SegmentEnd` trailer followed only by zeros.
    Sealed {
        /// The decoded trailer.
        trailer: SegmentEnd,
        /// SHA-256 of bytes `[0, trailer.sealed_len())`: the chain hash.
        hash: SegmentHash,
    },
    /// Scanning stopped at damage; frames before it were delivered.
    Damaged(Damage),
}

/// The result of scanning one segment.
#[derive(Clone, Debug)]
pub struct SegmentScan {
    /// The decoded header.
    pub header: SegmentHeader,
    /// Records in the data frames delivered: one per `Commit` frame, `count` per
    /// `SealedBatch` frame (the trailer is not counted). Equals the LSNs covered.
    pub frames: u64,
    /// LSN of the last delivered frame, or `base_lsn - 1` if none.
    pub last_lsn: Lsn,
    /// Offset just after the last good data frame (where a trailer sits or appends resume).
    pub data_end: u64,
    /// How the segment ends.
    pub end: ScanEnd,
    /// SHA-256 state over bytes `[0, data_end)`, for resuming appends.
    pub(crate) hasher: Sha256,
}

/// Why [`scan_segment`] stopped without a result.
#[derive(Debug)]
pub enum ScanError<E> {
    /// The header did not decode; no frame was delivered.
    Header(SegmentHeaderError),
    /// The callback returned an error; scanning stopped there.
    Callback(E),
}

/// Scans the segment held in `bytes`, delivering each data frame (never the trailer) to
/// `on_frame` in order. `is_last` enables torn-tail classification. Never panics.
///
/// Frames are delivered as stored: a `SealedBatch` frame arrives still sealed (the
/// scanner has no key). Its plaintext header is checked ([`SealedBatchHeader::decode_for_frame`])
/// and it counts as covering LSNs `first_lsn ..= lsn` for the density checks and the
/// trailer's record count; its tag is verified only by [`crate::recover`] and
/// [`crate::verify_with`], which hold keys.
pub fn scan_segment<E>(
    bytes: &[u8],
    is_last: bool,
    mut on_frame: impl FnMut(DecodedFrame<'_>) -> Result<(), E>,
) -> Result<SegmentScan, ScanError<E>> {
    let header = SegmentHeader::decode(bytes).map_err(ScanError::Header)?;
    let mut hasher = Sha256::new();
    let mut offset = header.header_len();
    hasher.update(&bytes[..offset]);
    let base = header.base_lsn.get();
    // `last` is the LSN of the last good frame (base - 1 before any); `expected` the next.
    let mut last = base - 1;
    let mut expected = Some(base);
    let mut frames = 0u64;

    let end = loop {
        let rest = &bytes[offset..];
        if rest.is_empty() {
            break ScanEnd::Open;
        }
        let frame = match decode_frame(rest) {
            Ok(frame) => frame,
            Err(FrameError::Zeroed) => match first_non_zero(rest) {
                None => break ScanEnd::Open,
                Some(pos) => {
                    let corruption = Corruption::ZeroGap {
                        data_at: (offset + pos) as u64,
                    };
                    break damaged(bytes, offset, last, corruption, is_last, true);
                }
            },
            Err(err) => {
                let candidate = matches!(
                    err,
                    FrameError::Truncated { .. }
                        | FrameError::BadCrc { .. }
                        | FrameError::BadLength { .. }
                );
                break damaged(
                    bytes,
                    offset,
                    last,
                    Corruption::Frame(err),
                    is_last,
                    candidate,
                );
            }
        };
        if frame.kind == FrameKind::SegmentEnd {
            match check_trailer(&frame, offset, frames, last) {
                Err(corruption) => break damaged(bytes, offset, last, corruption, false, false),
                Ok(trailer) => {
                    let sealed_len = offset + frame.encoded_len;
                    if let Some(pos) = first_non_zero(&bytes[sealed_len..]) {
                        let corruption = Corruption::DataAfterTrailer {
                            sealed_len: sealed_len as u64,
                        };
                        let mut end = damaged(bytes, offset, last, corruption, false, false);
                        if let ScanEnd::Damaged(damage) = &mut end {
                            damage.offset = (sealed_len + pos) as u64;
                        }
                        break end;
                    }
                    let mut sealed = hasher.clone();
                    sealed.update(&rest[..frame.encoded_len]);
                    break ScanEnd::Sealed {
                        trailer,
                        hash: SegmentHash(sealed.finalize().into()),
                    };
                }
            }
        }
        // The first LSN the frame covers (a sealed batch covers first_lsn..=lsn).
        let first = if frame.kind == FrameKind::SealedBatch {
            match SealedBatchHeader::decode_for_frame(frame.payload, frame.lsn) {
                Ok(sealed) => sealed.first_lsn.get(),
                Err(err) => {
                    let corruption = Corruption::SealedBatch(err);
                    break damaged(bytes, offset, last, corruption, false, false);
                }
            }
        } else {
            frame.lsn.get()
        };
        if expected != Some(first) {
            let corruption = Corruption::LsnGap {
                expected: Lsn::new(expected.unwrap_or(u64::MAX)),
                found: Lsn::new(first),
            };
            break damaged(bytes, offset, last, corruption, false, false);
        }
        let encoded = &rest[..frame.encoded_len];
        on_frame(frame).map_err(ScanError::Callback)?;
        hasher.update(encoded);
        offset += encoded.len();
        // first <= lsn is guaranteed by decode_for_frame.
        frames += frame.lsn.get() - first + 1;
        last = frame.lsn.get();
        expected = last.checked_add(1);
    };

    Ok(SegmentScan {
        header,
        frames,
        last_lsn: Lsn::new(last),
        data_end: offset as u64,
        end,
        hasher,
    })
}

/// Position of the first non-zero byte; the common all-zero case (a preallocated tail
/// of many MiB) takes the vectorisable path.
fn first_non_zero(bytes: &[u8]) -> Option<usize> {
    if is_all_zero(bytes) {
        None
    } else {
        bytes.iter().position(|b| *b != 0)
    }
}

/// Validates a decoded `SegmentEnd` frame against what the scan observed.
fn check_trailer(
    frame: &DecodedFrame<'_>,
    offset: usize,
    frames: u64,
    last: u64,
) -> Result<SegmentEnd, Corruption> {
    let trailer = SegmentEnd::decode_payload(frame.payload).map_err(Corruption::Trailer)?;
    let checks = [
        ("lsn", frame.lsn.get(), last),
        ("data_end", trailer.data_end, offset as u64),
        ("frame_count", trailer.frame_count, frames),
    ];
    for (field, recorded, actual) in checks {
        if recorded != actual {
            return Err(Corruption::TrailerMismatch {
                field,
                recorded,
                actual,
            });
        }
    }
    Ok(trailer)
}

/// Builds the `Damaged` end for damage at `offset`, classifying torn versus corrupt.
fn damaged(
    bytes: &[u8],
    offset: usize,
    last: u64,
    corruption: Corruption,
    is_last: bool,
    torn_candidate: bool,
) -> ScanEnd {
    let nonzero_end = bytes
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |p| p + 1)
        .max(offset);
    let torn = is_last && torn_candidate && is_torn(bytes, offset, nonzero_end, last);
    ScanEnd::Damaged(Damage {
        offset: offset as u64,
        corruption,
        nonzero_end: nonzero_end as u64,
        torn,
    })
}

/// The torn-tail rule of the module docs, for damage at `offset` after LSN `last`.
fn is_torn(bytes: &[u8], offset: usize, nonzero_end: usize, last: u64) -> bool {
    match find_later_frame(bytes, offset, nonzero_end, last) {
        None => true,
        Some(later) => aedb_fs::has_lost_sector_piece(bytes, offset, later),
    }
}

/// Finds the first CRC-valid frame starting in `(offset, nonzero_end)` whose (first) LSN
/// could follow `last`. Each LSN in between takes at least [`RECORD_HEADER_LEN`] bytes
/// (a record inside a sealed batch; a plaintext frame takes more).
fn find_later_frame(bytes: &[u8], offset: usize, nonzero_end: usize, last: u64) -> Option<usize> {
    for pos in offset.saturating_add(1)..nonzero_end {
        // Fewer than a header's bytes left: no frame can start here or later.
        let fields = HeaderFields::peek(&bytes[pos..])?;
        if !fields.is_plausible() {
            continue;
        }
        let span = ((pos - offset) / RECORD_HEADER_LEN) as u64;
        let max_lsn = last.saturating_add(1).saturating_add(span);
        let min_lsn = if fields.kind == FrameKind::SegmentEnd.to_byte() {
            last
        } else {
            last.saturating_add(1)
        };
        if fields.kind == FrameKind::SealedBatch.to_byte() {
            // The frame LSN is the batch's last; its records take RECORD_HEADER_LEN each.
            let max_last =
                max_lsn.saturating_add(u64::from(fields.payload_len) / RECORD_HEADER_LEN as u64);
            if !(min_lsn..=max_last).contains(&fields.lsn) {
                continue;
            }
            let first = decode_frame(&bytes[pos..]).ok().and_then(|frame| {
                SealedBatchHeader::decode_for_frame(frame.payload, frame.lsn).ok()
            });
            if first.is_some_and(|sealed| (min_lsn..=max_lsn).contains(&sealed.first_lsn.get())) {
                return Some(pos);
            }
        } else if (min_lsn..=max_lsn).contains(&fields.lsn) && decode_frame(&bytes[pos..]).is_ok() {
            return Some(pos);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode_frame;
    use std::convert::Infallible;

    fn header(base: u64) -> Vec<u8> {
        SegmentHeader {
            version: 1,
            seq: SegmentSeq::new(0),
            base_lsn: Lsn::new(base),
            prev_hash: SegmentHash::ZERO,
        }
        .encode()
        .to_vec()
    }

    fn push(buf: &mut Vec<u8>, lsn: u64, payload: &[u8]) -> usize {
        let start = buf.len();
        encode_frame(Lsn::new(lsn), FrameKind::Commit, payload, buf).expect("small payload");
        start
    }

    fn scan(bytes: &[u8], is_last: bool) -> (SegmentScan, Vec<u64>) {
        let mut lsns = Vec::new();
        let scan = scan_segment::<Infallible>(bytes, is_last, |f| {
            lsns.push(f.lsn.get());
            Ok(())
        })
        .map_err(|_| "scan failed")
        .expect("header is valid");
        (scan, lsns)
    }

    #[test]
    fn open_segment_with_zero_tail() {
        let mut buf = header(5);
        push(&mut buf, 5, b"a");
        push(&mut buf, 6, b"b");
        let data_end = buf.len() as u64;
        buf.resize(4096, 0);
        let (scan, lsns) = scan(&buf, true);
        assert_eq!(lsns, vec![5, 6]);
        assert_eq!(scan.end, ScanEnd::Open);
        assert_eq!(scan.data_end, data_end);
        assert_eq!(scan.last_lsn, Lsn::new(6));
    }

    #[test]
    fn lsn_gap_is_corruption_even_in_last_segment() {
        let mut buf = header(1);
        push(&mut buf, 1, b"a");
        let at = push(&mut buf, 3, b"b");
        let (scan, lsns) = scan(&buf, true);
        assert_eq!(lsns, vec![1]);
        match scan.end {
            ScanEnd::Damaged(d) => {
                assert_eq!(d.offset, at as u64);
                assert!(!d.torn);
                assert!(matches!(d.corruption, Corruption::LsnGap { .. }));
            }
            other => panic!("unexpected end {other:?}"),
        }
    }

    #[test]
    fn garbage_then_zeros_is_torn_but_not_before_later_frame() {
        let mut buf = header(1);
        push(&mut buf, 1, b"a");
        let at = buf.len();
        buf.extend_from_slice(&[0x5a; 37]);
        buf.resize(4096, 0);
        let (scan1, _) = scan(&buf, true);
        assert!(matches!(
            scan1.end,
            ScanEnd::Damaged(Damage { torn: true, .. })
        ));

        // The same garbage followed by a valid later frame (no lost sector) is corruption.
        buf.truncate(at + 37);
        push(&mut buf, 3, &[7u8; 40]);
        let (scan2, _) = scan(&buf, true);
        match scan2.end {
            ScanEnd::Damaged(d) => {
                assert!(!d.torn);
                assert_eq!(d.offset, at as u64);
            }
            other => panic!("unexpected end {other:?}"),
        }
        // And never torn outside the last segment.
        let (scan3, _) = scan(&buf[..at + 37], false);
        assert!(matches!(
            scan3.end,
            ScanEnd::Damaged(Damage { torn: false, .. })
        ));
    }

    #[test]
    fn lost_sector_before_later_frame_is_torn() {
        let mut buf = header(1);
        push(&mut buf, 1, &[1u8; 100]);
        let at = push(&mut buf, 2, &[2u8; 1500]);
        push(&mut buf, 3, &[3u8; 100]);
        // Zero an aligned sector inside frame 2: its page never reached the disk.
        buf[512..1024].fill(0);
        let (scan, lsns) = scan(&buf, true);
        assert_eq!(lsns, vec![1]);
        match scan.end {
            ScanEnd::Damaged(d) => {
                assert!(d.torn, "{d:?}");
                assert_eq!(d.offset, at as u64);
            }
            other => panic!("unexpected end {other:?}"),
        }
    }

    /// The power-loss exploration found these: the first or last sector piece of an
    /// unsynced write lost while a later write reached the disk.
    #[test]
    fn lost_head_or_tail_piece_before_later_frame_is_torn() {
        let build = || {
            let mut buf = header(1);
            push(&mut buf, 1, &[1u8; 100]);
            let at = push(&mut buf, 2, &[2u8; 1500]);
            let next = push(&mut buf, 3, &[3u8; 100]);
            (buf, at, next)
        };
        let expect = |buf: &[u8], at: usize, torn: bool| match scan(buf, true).0.end {
            ScanEnd::Damaged(d) => {
                assert_eq!(d.torn, torn, "{d:?}");
                assert_eq!(d.offset, at as u64);
            }
            other => panic!("unexpected end {other:?}"),
        };
        let (mut head, at, _) = build();
        head[at..at.next_multiple_of(512)].fill(0);
        expect(&head, at, true);
        let (mut tail, at, next) = build();
        tail[(next - 1) / 512 * 512..next].fill(0);
        expect(&tail, at, true);
        // One flipped byte is no lost piece: corruption.
        let (mut flipped, at, _) = build();
        flipped[at + 40] ^= 0x10;
        expect(&flipped, at, false);
    }

    #[test]
    fn lost_piece_detection_follows_sector_pieces() {
        let mut bytes = vec![1u8; 2048];
        bytes[100..700].fill(0); // 600 zeros, but no piece of a write starting at 0
        assert!(!aedb_fs::has_lost_sector_piece(&bytes, 0, 2048));
        bytes[512..1024].fill(0); // a whole aligned sector
        assert!(aedb_fs::has_lost_sector_piece(&bytes, 0, 2048));
        // The tail piece: from a boundary up to where the next write begins.
        let mut bytes = vec![1u8; 2048];
        bytes[1024..1030].fill(0);
        assert!(aedb_fs::has_lost_sector_piece(&bytes, 0, 1030));
        assert!(!aedb_fs::has_lost_sector_piece(&bytes, 0, 1031));
        // The head piece: from the damaged frame (the write's start) to a boundary.
        let mut bytes = vec![1u8; 2048];
        bytes[1000..1024].fill(0);
        assert!(aedb_fs::has_lost_sector_piece(&bytes, 1000, 2048));
        assert!(!aedb_fs::has_lost_sector_piece(&bytes, 999, 2048));
    }
}
