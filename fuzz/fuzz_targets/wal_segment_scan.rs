//! `scan_segment` (the recovery reader over a whole mapped segment) on arbitrary bytes,
//! as the last and as a sealed (non-last) segment. Never panics, and what it reports is
//! exactly what the bytes hold:
//!
//! * a header error is `SegmentHeader::decode`'s error and delivers no frame;
//! * the delivered frames tile the file from the end of the header: each one is the frame
//!   `decode_frame` finds at that offset and re-encodes to exactly those bytes, with dense
//!   LSNs from the header's base LSN (a sealed batch covering `first_lsn..=lsn`);
//! * `frames`, `last_lsn` and `data_end` agree with the delivered frames;
//! * `Open` means only zeros follow; `Sealed` means a `SegmentEnd` frame at `data_end`
//!   whose trailer matches, zeros after it, and `hash` = SHA-256 of the sealed bytes;
//!   `Damaged` points at or after `data_end` and is torn only in the last segment;
//! * `is_last` changes nothing but the torn flag.
#![no_main]
use std::convert::Infallible;

use aedb_fuzz::all_zero;
use aedb_types::Lsn;
use aedb_wal::reader::{Corruption, ScanEnd, ScanError, SegmentScan};
use aedb_wal::segment::SEGMENT_END_LEN;
use aedb_wal::{
    FrameKind, SealedBatchHeader, SegmentEnd, SegmentHeader, decode_frame, encode_frame,
    scan_segment,
};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

type Delivered = Vec<(Lsn, FrameKind, Vec<u8>, usize)>;

fn check(data: &[u8], scan: &SegmentScan, delivered: &Delivered, is_last: bool) {
    let header = SegmentHeader::decode(data).expect("scan accepted the header");
    assert_eq!(scan.header, header);
    let mut offset = header.header_len();
    let mut expected = header.base_lsn.get();
    let mut records = 0u64;
    for (lsn, kind, payload, encoded_len) in delivered {
        let frame = decode_frame(&data[offset..]).expect("delivered frame decodes in place");
        assert_eq!(
            (frame.lsn, frame.kind, frame.payload, frame.encoded_len),
            (*lsn, *kind, &payload[..], *encoded_len)
        );
        let mut out = Vec::new();
        encode_frame(*lsn, *kind, payload, &mut out).expect("payload within limit");
        assert_eq!(
            &out[..],
            &data[offset..offset + encoded_len],
            "frame not canonical"
        );
        let first = match kind {
            FrameKind::Commit => lsn.get(),
            FrameKind::SealedBatch => {
                let sealed = SealedBatchHeader::decode_for_frame(payload, *lsn)
                    .expect("delivered sealed batch has a valid header");
                sealed.first_lsn.get()
            }
            other => panic!("scan delivered a {other:?} frame"),
        };
        assert_eq!(first, expected, "LSNs not dense");
        records += lsn.get() - first + 1;
        expected = lsn.get() + 1;
        offset += encoded_len;
    }
    assert_eq!(scan.frames, records);
    assert_eq!(scan.last_lsn, Lsn::new(expected - 1));
    assert_eq!(scan.data_end, offset as u64);
    match &scan.end {
        ScanEnd::Open => assert!(all_zero(&data[offset..]), "Open with data after data_end"),
        ScanEnd::Sealed { trailer, hash } => {
            let frame = decode_frame(&data[offset..]).expect("trailer frame decodes");
            assert_eq!(frame.kind, FrameKind::SegmentEnd);
            assert_eq!(frame.lsn, scan.last_lsn);
            assert_eq!(SegmentEnd::decode_payload(frame.payload), Ok(*trailer));
            assert_eq!(trailer.data_end, offset as u64);
            assert_eq!(trailer.frame_count, records);
            let sealed_len = offset + SEGMENT_END_LEN;
            assert_eq!(trailer.sealed_len(), sealed_len as u64);
            assert!(
                all_zero(&data[sealed_len..]),
                "Sealed with data after the trailer"
            );
            let digest: [u8; 32] = Sha256::digest(&data[..sealed_len]).into();
            assert_eq!(hash.0, digest, "chain hash does not cover the sealed bytes");
        }
        ScanEnd::Damaged(damage) => {
            if matches!(damage.corruption, Corruption::DataAfterTrailer { .. }) {
                assert!(damage.offset > offset as u64);
            } else {
                assert_eq!(damage.offset, offset as u64);
            }
            assert!(damage.offset <= data.len() as u64);
            assert!(damage.nonzero_end >= offset as u64 && damage.nonzero_end <= data.len() as u64);
            assert!(
                is_last || !damage.torn,
                "torn tail outside the last segment"
            );
        }
    }
}

fn without_torn(end: &ScanEnd) -> ScanEnd {
    let mut end = end.clone();
    if let ScanEnd::Damaged(damage) = &mut end {
        damage.torn = false;
    }
    end
}

fuzz_target!(|data: &[u8]| {
    let mut runs = Vec::new();
    for is_last in [true, false] {
        let mut delivered: Delivered = Vec::new();
        let result = scan_segment::<Infallible>(data, is_last, |frame| {
            delivered.push((
                frame.lsn,
                frame.kind,
                frame.payload.to_vec(),
                frame.encoded_len,
            ));
            Ok(())
        });
        match result {
            Err(ScanError::Header(err)) => {
                assert!(delivered.is_empty());
                assert_eq!(SegmentHeader::decode(data), Err(err));
                runs.push(None);
            }
            Err(ScanError::Callback(never)) => match never {},
            Ok(scan) => {
                check(data, &scan, &delivered, is_last);
                runs.push(Some((
                    delivered,
                    scan.frames,
                    scan.data_end,
                    without_torn(&scan.end),
                )));
            }
        }
    }
    assert_eq!(runs[0], runs[1], "is_last changed more than the torn flag");
});
