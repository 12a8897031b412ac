//! `SegmentHeader::decode` on arbitrary bytes: never panics; round-trips.
#![no_main]
use aedb_wal::SegmentHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = SegmentHeader::decode(data) {
        let encoded = header.encode();
        assert_eq!(SegmentHeader::decode(&encoded).ok(), Some(header));
    }
});
