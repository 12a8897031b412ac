//! `aedb_authz::PolicyRecord::decode` and `decode_records` on arbitrary bytes: never
//! panic; anything that decodes re-encodes to the same bytes (the format is
//! canonical); and replaying decoded records into a policy never panics.
#![no_main]
use aedb_authz::{PolicyRecord, PolicyState, decode_records, encode_records};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = PolicyRecord::decode(data) {
        assert_eq!(record.encode(), data);
        let _ = PolicyState::from_records([record]);
    }
    if let Ok(records) = decode_records(data) {
        assert_eq!(encode_records(&records), data);
        if let Ok(state) = PolicyState::from_records(records) {
            let _ = state.snapshot();
            let again = PolicyState::from_records(state.to_records()).expect("own records replay");
            assert_eq!(again, state);
        }
    }
});
