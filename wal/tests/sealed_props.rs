//! Property tests for the sealed-batch codec (`seal_batch`, `open_sealed_batch`).

use std::convert::Infallible;

use aedb_keys::SecretKey;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use aedb_wal::seal::{NONCE_LEN, SEALED_HEADER_LEN};
use aedb_wal::{
    FrameError, FrameKind, SealError, SealedBatchHeader, SegmentHash, SegmentHeader, SegmentSeq,
    decode_frame, open_sealed_batch, scan_segment, seal_batch,
};
use proptest::prelude::*;

const DB: DatabaseId = DatabaseId::from_bytes([0x42; 16]);

fn key() -> SecretKey {
    SecretKey::new([0x24; 32])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn open_sealed_batch_on_arbitrary_bytes_never_panics(
        payload in prop::collection::vec(any::<u8>(), 0..512),
        lsn in any::<u64>(),
        seq in any::<u64>(),
    ) {
        let _ = SealedBatchHeader::decode_for_frame(&payload, Lsn::new(lsn));
        let opened = open_sealed_batch(&payload, Lsn::new(lsn), SegmentSeq::new(seq), DB, &key());
        prop_assert!(opened.is_err());
    }

    #[test]
    fn open_with_a_consistent_header_and_arbitrary_body_never_panics(
        epoch in any::<u32>(),
        first in 1u64..u64::MAX / 2,
        count in 1u32..40,
        nonce in any::<[u8; NONCE_LEN]>(),
        body in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let header = SealedBatchHeader { epoch: KeyEpoch::new(epoch), first_lsn: Lsn::new(first), count, nonce };
        let mut payload = header.encode().to_vec();
        payload.extend_from_slice(&body);
        let last = Lsn::new(first + u64::from(count) - 1);
        let result = open_sealed_batch(&payload, last, SegmentSeq::new(0), DB, &key());
        prop_assert!(matches!(
            result,
            Err(SealError::Truncated { .. }
                | SealError::CountExceedsLength { .. }
                | SealError::Authentication { .. })
        ), "{:?}", result);
    }

    #[test]
    fn sealed_round_trip_for_arbitrary_records(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..20),
        first in 1u64..u64::MAX / 2,
        epoch in any::<u32>(),
        seq in any::<u64>(),
        nonce in any::<[u8; NONCE_LEN]>(),
    ) {
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let frame = seal_batch(&key(), KeyEpoch::new(epoch), DB, SegmentSeq::new(seq), Lsn::new(first), nonce, &slices)
            .expect("seal");
        let decoded = decode_frame(&frame).expect("frame decodes");
        let last = first + records.len() as u64 - 1;
        prop_assert_eq!(decoded.kind, FrameKind::SealedBatch);
        prop_assert_eq!(decoded.lsn, Lsn::new(last));
        prop_assert_eq!(decoded.encoded_len, frame.len());
        let opened = open_sealed_batch(decoded.payload, decoded.lsn, SegmentSeq::new(seq), DB, &key())
            .expect("open");
        prop_assert_eq!(opened.header().epoch, KeyEpoch::new(epoch));
        let expected: Vec<(Lsn, Vec<u8>)> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (Lsn::new(first + i as u64), r.clone()))
            .collect();
        prop_assert_eq!(opened.to_vec(), expected);

        // The keyless scanner counts the batch as covering first..=last.
        let mut segment = SegmentHeader {
            version: 1,
            seq: SegmentSeq::new(seq),
            base_lsn: Lsn::new(first),
            prev_hash: SegmentHash::ZERO,
        }
        .encode()
        .to_vec();
        segment.extend_from_slice(&frame);
        segment.resize(segment.len() + 600, 0);
        let mut delivered = 0;
        let scan = scan_segment::<Infallible>(&segment, true, |f| {
            assert_eq!(f.kind, FrameKind::SealedBatch);
            delivered += 1;
            Ok(())
        })
        .map_err(|_| "scan")
        .expect("scan");
        prop_assert_eq!(delivered, 1);
        prop_assert_eq!(scan.frames, records.len() as u64);
        prop_assert_eq!(scan.last_lsn, Lsn::new(last));
    }

    #[test]
    fn a_changed_byte_with_a_recomputed_crc_never_opens(
        records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..5),
        pick in any::<prop::sample::Index>(),
        mask in 1u8..,
    ) {
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let mut frame = seal_batch(&key(), KeyEpoch::FIRST, DB, SegmentSeq::new(1), Lsn::new(10), [9; NONCE_LEN], &slices)
            .expect("seal");
        let crc_at = frame.len() - 4;
        let at = pick.index(crc_at);
        frame[at] ^= mask;
        let crc = crc32fast::hash(&frame[..crc_at]);
        frame[crc_at..].copy_from_slice(&crc.to_le_bytes());
        // Frame header: payload length 0..4, LSN 4..12, kind 12, flags 13, reserved 14..16.
        // Every outcome is asserted: a frame that still decodes as a sealed batch must not
        // open, and every other outcome must be the one the changed field explains.
        match decode_frame(&frame) {
            Ok(decoded) if decoded.kind == FrameKind::SealedBatch => {
                let opened = open_sealed_batch(decoded.payload, decoded.lsn, SegmentSeq::new(1), DB, &key());
                prop_assert!(opened.is_err(), "byte {} (payload header ends at {}) opened", at, 16 + SEALED_HEADER_LEN);
            }
            // Another valid kind: never opened as a sealed batch.
            Ok(decoded) => prop_assert_eq!(at, 12, "kind {:?}", decoded.kind),
            Err(FrameError::UnknownKind { .. }) => prop_assert_eq!(at, 12),
            Err(FrameError::ReservedBitsSet { .. }) => prop_assert!((13..16).contains(&at), "byte {}", at),
            // A changed length moves the CRC (or runs past the frame, or over the limit).
            Err(FrameError::BadCrc { .. } | FrameError::Truncated { .. } | FrameError::BadLength { .. }) => {
                prop_assert!(at < 4, "byte {}", at)
            }
            Err(e) => prop_assert!(false, "byte {}: unexpected {:?}", at, e),
        }
    }
}
