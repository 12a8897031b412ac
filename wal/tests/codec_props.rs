//! Property tests for the frame and segment codecs and the segment scanner.
//!
//! What CRC-32 guarantees, and what these tests therefore assert: CRC-32 detects every
//! single-bit error in a codeword of fixed length. A flip anywhere except the
//! `payload_len` field leaves the frame's boundaries unchanged, so it is always detected.
//! A flip in `payload_len` moves the boundaries: the decoder then needs more bytes
//! (`Truncated`), rejects the length (`BadLength`), or compares a CRC read from a
//! different position, which a different payload matches with probability 2^-32. No
//! test below observes such a collision; the properties assert the stronger statement
//! "a single-bit flip never decodes successfully", which holds deterministically outside
//! the length field and with probability 1 - 2^-32 per case inside it.

use std::convert::Infallible;

use aedb_types::Lsn;
use aedb_wal::frame::{FRAME_HEADER_LEN, encoded_frame_len};
use aedb_wal::segment::SEGMENT_HEADER_LEN;
use aedb_wal::{
    FrameError, FrameKind, SegmentEnd, SegmentHash, SegmentHeader, SegmentSeq, decode_frame,
    encode_frame, scan_segment,
};
use proptest::prelude::*;

/// A frame as (lsn, kind, payload).
type Frame = (u64, FrameKind, Vec<u8>);

fn user_kind() -> impl Strategy<Value = FrameKind> {
    prop_oneof![Just(FrameKind::Commit), Just(FrameKind::SealedBatch)]
}

fn any_kind() -> impl Strategy<Value = FrameKind> {
    prop::sample::select(FrameKind::ALL.to_vec())
}

fn frames() -> impl Strategy<Value = Vec<Frame>> {
    prop::collection::vec(
        (
            any::<u64>(),
            any_kind(),
            prop::collection::vec(any::<u8>(), 0..200),
        ),
        1..6,
    )
}

fn encode_all(frames: &[Frame]) -> (Vec<u8>, Vec<usize>) {
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    for (lsn, kind, payload) in frames {
        encode_frame(Lsn::new(*lsn), *kind, payload, &mut buf).expect("small payload");
        ends.push(buf.len());
    }
    (buf, ends)
}

/// Decodes frames from the start of `buf` until the first error.
fn decode_all(buf: &[u8]) -> (Vec<Frame>, Option<FrameError>) {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        match decode_frame(&buf[offset..]) {
            Ok(frame) => {
                out.push((frame.lsn.get(), frame.kind, frame.payload.to_vec()));
                offset += frame.encoded_len;
            }
            Err(err) => return (out, Some(err)),
        }
        if offset == buf.len() {
            return (out, None);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frame_round_trip(lsn in any::<u64>(), kind in any_kind(), payload in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut buf = vec![0xEE; 3]; // encode appends
        let n = encode_frame(Lsn::new(lsn), kind, &payload, &mut buf).expect("small payload");
        prop_assert_eq!(n, encoded_frame_len(payload.len()));
        let frame = decode_frame(&buf[3..]).expect("round trip");
        prop_assert_eq!(frame.lsn, Lsn::new(lsn));
        prop_assert_eq!(frame.kind, kind);
        prop_assert_eq!(frame.payload, &payload[..]);
        prop_assert_eq!(frame.encoded_len, n);
    }

    #[test]
    fn decode_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(frame) = decode_frame(&bytes) {
            prop_assert!(frame.encoded_len <= bytes.len());
        }
    }

    #[test]
    fn decode_arbitrary_header_with_plausible_length(
        len in 0u32..300,
        rest in prop::collection::vec(any::<u8>(), 12..400),
    ) {
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(&rest);
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn every_truncation_of_a_frame_is_an_error(lsn in any::<u64>(), kind in any_kind(), payload in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut buf = Vec::new();
        encode_frame(Lsn::new(lsn), kind, &payload, &mut buf).expect("small payload");
        for cut in 0..buf.len() {
            match decode_frame(&buf[..cut]) {
                Err(FrameError::Truncated { needed, available }) => {
                    prop_assert_eq!(available, cut);
                    prop_assert!(needed > cut);
                }
                // A prefix shorter than a header can be all zero (payload_len 0, LSN 0).
                Err(FrameError::Zeroed) => prop_assert!(cut < FRAME_HEADER_LEN),
                other => prop_assert!(false, "prefix of {} bytes decoded as {:?}", cut, other),
            }
        }
    }

    #[test]
    fn every_truncation_of_a_frame_sequence_yields_exactly_the_complete_prefix(frames in frames()) {
        let (buf, ends) = encode_all(&frames);
        for cut in 0..=buf.len() {
            let (decoded, err) = decode_all(&buf[..cut]);
            let complete = ends.iter().filter(|end| **end <= cut).count();
            prop_assert_eq!(&decoded[..], &frames[..complete]);
            if cut == 0 || ends.contains(&cut) {
                // Ends on a frame boundary: nothing is left over.
                prop_assert!(err.is_none() || cut == 0);
            } else {
                prop_assert!(
                    matches!(err, Some(FrameError::Truncated { .. } | FrameError::Zeroed)),
                    "cut {} gave {:?}", cut, err
                );
            }
        }
    }

    #[test]
    fn single_bit_flips_never_decode(lsn in any::<u64>(), kind in any_kind(), payload in prop::collection::vec(any::<u8>(), 0..100)) {
        let mut buf = Vec::new();
        encode_frame(Lsn::new(lsn), kind, &payload, &mut buf).expect("small payload");
        for bit in 0..buf.len() * 8 {
            let mut flipped = buf.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let result = decode_frame(&flipped);
            prop_assert!(result.is_err(), "flip of bit {} decoded as {:?}", bit, result);
        }
    }

    #[test]
    fn single_bit_flips_in_a_sequence_never_yield_a_different_frame(frames in frames(), pick in any::<prop::sample::Index>()) {
        let (buf, _) = encode_all(&frames);
        let bit = pick.index(buf.len() * 8);
        let mut flipped = buf.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let (decoded, _) = decode_all(&flipped);
        // Whatever decodes must be an unchanged prefix of the original frames.
        prop_assert!(decoded.len() < frames.len());
        prop_assert_eq!(&decoded[..], &frames[..decoded.len()]);
    }

    #[test]
    fn segment_header_round_trip(seq in any::<u64>(), base in 1u64.., hash in any::<[u8; 32]>()) {
        let header = SegmentHeader {
            version: 1,
            seq: SegmentSeq::new(seq),
            base_lsn: Lsn::new(base),
            prev_hash: SegmentHash(hash),
        };
        let bytes = header.encode();
        prop_assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for bit in 0..SEGMENT_HEADER_LEN * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(SegmentHeader::decode(&flipped).is_err(), "flip of bit {}", bit);
        }
        for cut in 0..SEGMENT_HEADER_LEN {
            prop_assert!(SegmentHeader::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn segment_header_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = SegmentHeader::decode(&bytes);
        let _ = SegmentEnd::decode_payload(&bytes);
    }

    #[test]
    fn scan_arbitrary_segment_bytes_never_panics(
        frames in prop::collection::vec((user_kind(), prop::collection::vec(any::<u8>(), 0..64)), 0..8),
        noise in prop::collection::vec(any::<u8>(), 0..256),
        noise_at in any::<prop::sample::Index>(),
        is_last in any::<bool>(),
    ) {
        let mut bytes = SegmentHeader {
            version: 1,
            seq: SegmentSeq::new(0),
            base_lsn: Lsn::new(1),
            prev_hash: SegmentHash::ZERO,
        }
        .encode()
        .to_vec();
        for (i, (kind, payload)) in frames.iter().enumerate() {
            encode_frame(Lsn::new(i as u64 + 1), *kind, payload, &mut bytes).expect("small payload");
        }
        let at = SEGMENT_HEADER_LEN + noise_at.index(bytes.len() - SEGMENT_HEADER_LEN + 1);
        for (i, b) in noise.iter().enumerate() {
            match bytes.get_mut(at + i) {
                Some(slot) => *slot ^= b,
                None => bytes.push(*b),
            }
        }
        bytes.resize(bytes.len() + 700, 0);
        let mut lsns = Vec::new();
        if let Ok(scan) = scan_segment::<Infallible>(&bytes, is_last, |f| {
            lsns.push(f.lsn.get());
            Ok(())
        }) {
            // Delivered frames are always the dense prefix 1..=n.
            let expected: Vec<u64> = (1..=lsns.len() as u64).collect();
            prop_assert_eq!(&lsns, &expected);
            prop_assert_eq!(scan.frames, lsns.len() as u64);
            prop_assert!(scan.data_end as usize <= bytes.len());
        }
    }

    #[test]
    fn scan_fully_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..1024), is_last in any::<bool>()) {
        let _ = scan_segment::<Infallible>(&bytes, is_last, |_| Ok(()));
        let mut with_header = SegmentHeader {
            version: 1,
            seq: SegmentSeq::new(0),
            base_lsn: Lsn::new(u64::MAX),
            prev_hash: SegmentHash::ZERO,
        }
        .encode()
        .to_vec();
        with_header.extend_from_slice(&bytes);
        let _ = scan_segment::<Infallible>(&with_header, is_last, |_| Ok(()));
    }
}
