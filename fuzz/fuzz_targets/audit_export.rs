//! `parse_audit_export` (JSON-lines audit exports) on arbitrary bytes: never panics, and
//! anything that parses verifies or fails with a typed chain error, never a panic.
#![no_main]
use aedb_keys::SecretKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((_, rows)) = aedb::parse_audit_export(text) {
        let _ = aedb::verify_audit_rows(&rows, |_| Some(SecretKey::new([0x42; 32])));
    }
});
