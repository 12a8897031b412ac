//! `BackupManifest::decode_unverified` on arbitrary bytes: never panics; anything that
//! decodes re-encodes (under the key whose check value it carries, when that is the
//! fuzz key) to the same bytes, and never authenticates under a key it was not made with.
#![no_main]
use aedb::backup::BackupManifest;
use aedb_keys::SecretKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = BackupManifest::decode_unverified(data) {
        let key = SecretKey::new([0x42; 32]);
        let encoded = decoded.manifest.encode(&key);
        let again = BackupManifest::decode_unverified(&encoded).expect("own encoding decodes");
        assert_eq!(again.manifest, decoded.manifest);
        assert!(again.key_matches(&key) && again.mac_verifies(&encoded, &key));
        if decoded.key_matches(&key) && decoded.mac_verifies(data, &key) {
            assert_eq!(encoded, data);
        }
    }
});
