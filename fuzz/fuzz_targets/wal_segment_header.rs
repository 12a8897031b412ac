//! `SegmentHeader::decode` on arbitrary bytes: never panics, and the format is canonical:
//! anything that decodes re-encodes to exactly the 64 bytes it was decoded from (and the
//! re-encoding decodes to the same header).
#![no_main]
use aedb_wal::SegmentHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = SegmentHeader::decode(data) {
        let encoded = header.encode();
        assert_eq!(
            &encoded[..],
            &data[..encoded.len()],
            "decoded header is not canonical"
        );
        assert_eq!(header.header_len(), encoded.len());
        assert_eq!(SegmentHeader::decode(&encoded), Ok(header));
    }
});
