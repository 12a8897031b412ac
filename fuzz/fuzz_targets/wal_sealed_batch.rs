//! `open_sealed_batch` (encrypted WAL batches) on arbitrary payloads, under the engine
//! golden batch's key, database and segment (so the golden batch and the generator's
//! batches in the seed corpus open). Never panics; a payload that opens is canonical:
//! re-sealing its records with its own header (epoch, first LSN, nonce) reproduces it
//! byte for byte, so nothing but what the sealer produced ever authenticates.
#![no_main]
use aedb_fuzz::{FUZZ_DB, WAL_SEQ, fuzz_key};
use aedb_types::Lsn;
use aedb_wal::{
    FrameKind, SealedBatchHeader, SegmentSeq, decode_frame, open_sealed_batch, seal_batch,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = fuzz_key();
    let seq = SegmentSeq::new(WAL_SEQ);
    // The frame LSN the header claims (first_lsn + count - 1), so inputs get past the
    // LSN check; anything else is a typed header error.
    let lsn = match (data.get(6..14), data.get(14..18)) {
        (Some(first), Some(count)) => {
            let first = u64::from_le_bytes(first.try_into().unwrap_or([0; 8]));
            let count = u32::from_le_bytes(count.try_into().unwrap_or([0; 4]));
            first.wrapping_add(u64::from(count)).wrapping_sub(1)
        }
        _ => 1,
    };
    let lsn = Lsn::new(lsn);
    let Ok(opened) = open_sealed_batch(data, lsn, seq, FUZZ_DB, &key) else {
        return;
    };
    let header = *opened.header();
    assert_eq!(SealedBatchHeader::decode_for_frame(data, lsn), Ok(header));
    let records = opened.to_vec();
    assert_eq!(records.len(), header.count as usize);
    for (i, (record_lsn, _)) in records.iter().enumerate() {
        assert_eq!(record_lsn.get(), header.first_lsn.get() + i as u64);
    }
    let payloads: Vec<&[u8]> = records.iter().map(|(_, p)| p.as_slice()).collect();
    let frame = seal_batch(
        &key,
        header.epoch,
        FUZZ_DB,
        seq,
        header.first_lsn,
        header.nonce,
        &payloads,
    )
    .expect("an opened batch re-seals");
    let decoded = decode_frame(&frame).expect("sealed frame decodes");
    assert_eq!(decoded.kind, FrameKind::SealedBatch);
    assert_eq!(decoded.lsn, lsn);
    assert_eq!(decoded.payload, data, "opened batch is not canonical");
});
