//! `open_sealed_batch` (encrypted WAL batches) on arbitrary payloads: never panics, and
//! never opens bytes that were not sealed under the key.
#![no_main]
use aedb_keys::SecretKey;
use aedb_types::{DatabaseId, Lsn};
use aedb_wal::{SegmentSeq, open_sealed_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::new([0x42; 32]);
    let db = DatabaseId::from_bytes([7; 16]);
    let lsn = data
        .get(6..14)
        .map_or(1, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let opened = open_sealed_batch(data, Lsn::new(lsn), SegmentSeq::new(0), db, &key);
    assert!(opened.is_err(), "random bytes authenticated as a sealed batch");
});
