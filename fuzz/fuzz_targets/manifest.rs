//! The manifest: whole-file chain verification and single record bodies, on arbitrary
//! bytes: never panics; random bytes never verify as a chain under the key.
#![no_main]
use aedb_checkpoint::{ManifestRecord, verify_manifest_bytes};
use aedb_keys::SecretKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = ManifestRecord::decode(data) {
        let _ = format!("{record:?}");
    }
    let key = SecretKey::new([0x42; 32]);
    let verified = verify_manifest_bytes(std::path::Path::new("MANIFEST"), data, &key);
    assert!(verified.is_err(), "random bytes verified as a manifest chain");
});
