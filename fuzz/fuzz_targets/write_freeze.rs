//! `aedb::WriteFreeze::decode` (the persisted write freeze, `_system/authz/write_freeze`)
//! on arbitrary bytes: never panics, and anything that decodes re-encodes to the same
//! bytes (the format is canonical).
#![no_main]
use aedb::WriteFreeze;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(freeze) = WriteFreeze::decode(data) {
        assert_eq!(freeze.encode(), data);
    }
});
