//! The parsers *behind* WAL encryption, reached through valid sealed batches built
//! around fuzzer-chosen plaintext (fixed key, nonce, database, segment and epoch).
//!
//! Input: `mode (u8) || tamper (u16 LE) || rest`.
//!
//! * **records** (mode bit 0 clear): `rest` is split into records (`u16 LE length ||
//!   bytes`, see `aedb_fuzz::split_pieces`) and sealed with `aedb_wal::seal_batch`. The
//!   frame equals an independent sealing of the same plaintext per `docs/FORMAT.md`; in a
//!   segment, `scan_segment` delivers exactly that frame; `open_sealed_batch` returns
//!   exactly the records, with dense LSNs. Each record is then what recovery makes of it:
//!   `CommitRecord::decode` (anything that decodes re-encodes to the same bytes) and
//!   `State::replay` from LSN 1 (an error leaves the state unchanged), and the resulting
//!   state's snapshot decodes and re-encodes to the same bytes.
//! * **raw plaintext** (mode bit 0 set): `rest = count (u8) || plaintext`, sealed as a
//!   batch claiming `count` records without going through the record encoder, so the
//!   record parser sees arbitrary authenticated plaintext. It opens exactly when the
//!   plaintext is `count` well-formed records (checked against an independent parser),
//!   to those records, and re-sealing them reproduces the frame; otherwise it fails with
//!   a typed record error, never an authentication error.
//! * **tamper** (mode bit 1): one payload byte at `tamper % len` is XORed with a non-zero
//!   mask before opening: it must never open.
#![no_main]
use std::convert::Infallible;

use aedb_fuzz::{
    FUZZ_DB, FUZZ_KEY, FUZZ_NONCE, WAL_EPOCH, WAL_SEQ, fuzz_key, parse_batch_records,
    seal_raw_batch, split_pieces,
};
use aedb_model::{CommitRecord, State};
use aedb_types::{KeyEpoch, Lsn};
use aedb_wal::reader::{ScanEnd, ScanError};
use aedb_wal::{
    FrameKind, SealError, SegmentHash, SegmentHeader, SegmentSeq, decode_frame, open_sealed_batch,
    scan_segment, seal_batch,
};
use libfuzzer_sys::fuzz_target;

const FIRST_LSN: u64 = 1;

fn seal(records: &[&[u8]]) -> Result<Vec<u8>, SealError> {
    seal_batch(
        &fuzz_key(),
        KeyEpoch::new(WAL_EPOCH),
        FUZZ_DB,
        SegmentSeq::new(WAL_SEQ),
        Lsn::new(FIRST_LSN),
        FUZZ_NONCE,
        records,
    )
}

fn open(payload: &[u8], lsn: Lsn) -> Result<Vec<(Lsn, Vec<u8>)>, SealError> {
    open_sealed_batch(payload, lsn, SegmentSeq::new(WAL_SEQ), FUZZ_DB, &fuzz_key())
        .map(|batch| batch.to_vec())
}

/// What recovery does with the records of an opened batch.
fn replay(records: &[(Lsn, Vec<u8>)]) {
    let mut state = State::new();
    let mut replayed = false;
    for (lsn, bytes) in records {
        let Ok(record) = CommitRecord::decode(bytes) else {
            continue;
        };
        aedb_fuzz::assert_record_canonical(bytes, &record);
        let before = state.clone();
        match state.replay(&record, *lsn) {
            Ok(()) => replayed = true,
            Err(_) => assert!(state == before, "a failed replay changed the state"),
        }
    }
    if replayed {
        let snapshot = state
            .to_snapshot_bytes()
            .expect("a decoded state is in memory");
        let again = State::decode_snapshot(&snapshot).expect("a replayed state's snapshot decodes");
        assert_eq!(
            again
                .to_snapshot_bytes()
                .expect("a decoded state is in memory"),
            snapshot,
            "snapshot is not canonical"
        );
    }
}

fn tampered(payload: &[u8], mode: u8, tamper: u16) -> Vec<u8> {
    let mut bad = payload.to_vec();
    let at = usize::from(tamper) % bad.len();
    bad[at] ^= (mode >> 2) | 1;
    bad
}

fn records_mode(mode: u8, tamper: u16, rest: &[u8]) {
    let records = split_pieces(rest);
    let frame = match seal(&records) {
        Ok(frame) => frame,
        Err(err) => {
            assert!(
                records.is_empty() && err == SealError::EmptyBatch,
                "{err:?}"
            );
            return;
        }
    };
    let count = records.len() as u64;
    let lsn = Lsn::new(FIRST_LSN + count - 1);
    let decoded = decode_frame(&frame).expect("a sealed batch decodes as a frame");
    assert_eq!((decoded.kind, decoded.lsn), (FrameKind::SealedBatch, lsn));
    assert_eq!(decoded.encoded_len, frame.len());

    // The library's sealer agrees with the format document.
    let mut plaintext = Vec::new();
    for record in &records {
        plaintext.push(1);
        plaintext.extend_from_slice(&(record.len() as u32).to_le_bytes());
        plaintext.extend_from_slice(record);
    }
    let independent = seal_raw_batch(
        &FUZZ_KEY,
        WAL_EPOCH,
        FUZZ_DB,
        WAL_SEQ,
        FIRST_LSN,
        records.len() as u32,
        FUZZ_NONCE,
        &plaintext,
    );
    assert_eq!(
        independent.as_deref(),
        Some(&frame[..]),
        "seal_batch disagrees with FORMAT.md"
    );

    // The keyless scanner accepts it as the only frame of a segment.
    let header = SegmentHeader {
        version: 1,
        seq: SegmentSeq::new(WAL_SEQ),
        base_lsn: Lsn::new(FIRST_LSN),
        prev_hash: SegmentHash::ZERO,
    };
    let mut segment = header.encode().to_vec();
    segment.extend_from_slice(&frame);
    let mut seen = Vec::new();
    let scan = scan_segment::<Infallible>(&segment, true, |f| {
        seen.push((f.lsn, f.kind, f.payload.to_vec()));
        Ok(())
    });
    let scan = match scan {
        Ok(scan) => scan,
        Err(ScanError::Header(err)) => panic!("own segment header rejected: {err}"),
        Err(ScanError::Callback(never)) => match never {},
    };
    assert_eq!(
        seen,
        vec![(lsn, FrameKind::SealedBatch, decoded.payload.to_vec())]
    );
    assert_eq!(
        (scan.frames, scan.last_lsn, &scan.end),
        (count, lsn, &ScanEnd::Open)
    );

    let opened = open(decoded.payload, lsn).expect("own batch opens");
    let expected: Vec<(Lsn, Vec<u8>)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (Lsn::new(FIRST_LSN + i as u64), r.to_vec()))
        .collect();
    assert_eq!(opened, expected);
    replay(&opened);

    if mode & 2 != 0 {
        let bad = tampered(decoded.payload, mode, tamper);
        assert!(open(&bad, lsn).is_err(), "a tampered batch opened");
    }
}

fn raw_mode(mode: u8, tamper: u16, rest: &[u8]) {
    let Some((&count, plaintext)) = rest.split_first() else {
        return;
    };
    let count = u32::from(count.max(1));
    let frame = seal_raw_batch(
        &FUZZ_KEY, WAL_EPOCH, FUZZ_DB, WAL_SEQ, FIRST_LSN, count, FUZZ_NONCE, plaintext,
    )
    .expect("small batch seals");
    let decoded = decode_frame(&frame).expect("a sealed batch decodes as a frame");
    let lsn = decoded.lsn;
    let opened = open(decoded.payload, lsn);
    match (parse_batch_records(plaintext, count), opened) {
        (Some(reference), Ok(opened)) => {
            let got: Vec<&[u8]> = opened.iter().map(|(_, r)| r.as_slice()).collect();
            assert_eq!(got, reference);
            for (i, (record_lsn, _)) in opened.iter().enumerate() {
                assert_eq!(record_lsn.get(), FIRST_LSN + i as u64);
            }
            assert_eq!(
                seal(&reference).as_deref(),
                Ok(&frame[..]),
                "re-seal differs"
            );
            replay(&opened);
        }
        (None, Err(SealError::BadRecords { .. } | SealError::CountExceedsLength { .. })) => {}
        (reference, opened) => panic!(
            "open_sealed_batch disagrees with the record format: reference {:?}, got {:?}",
            reference.map(|r| r.len()),
            opened.map(|r| r.len())
        ),
    }
    if mode & 2 != 0 {
        let bad = tampered(decoded.payload, mode, tamper);
        assert!(open(&bad, lsn).is_err(), "a tampered batch opened");
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, t0, t1, rest @ ..] = data else {
        return;
    };
    let tamper = u16::from_le_bytes([*t0, *t1]);
    if mode & 1 == 0 {
        records_mode(*mode, tamper, rest);
    } else {
        raw_mode(*mode, tamper, rest);
    }
});
