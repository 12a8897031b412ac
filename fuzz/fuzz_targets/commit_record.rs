//! `CommitRecord::decode` on arbitrary bytes: never panics; anything that decodes
//! re-encodes to the same bytes.
#![no_main]
use aedb_model::CommitRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = CommitRecord::decode(data) {
        let mut out = Vec::new();
        record.encode(&mut out);
        assert_eq!(out, data);
    }
});
