//! `CommitRecord::decode` on arbitrary bytes: never panics; anything of the current
//! version that decodes re-encodes to the same bytes, and an older version (decode-only)
//! re-encodes as the current one to the same record.
#![no_main]
use aedb_model::CommitRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = CommitRecord::decode(data) {
        aedb_fuzz::assert_record_canonical(data, &record);
    }
});
