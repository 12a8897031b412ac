//! `BackupManifest::decode_unverified` on arbitrary bytes (format versions 1 and 2: WAL
//! tails, incremental run sets): never panics; anything that decodes re-encodes (in the
//! current version) to bytes that decode to the same manifest, and never authenticates
//! under a key it was not made with; input of the current version that authenticates
//! under the fuzz key re-encodes to itself byte for byte.
#![no_main]
use aedb::backup::{BACKUP_FORMAT_VERSION, BackupManifest};
use aedb_keys::SecretKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decoded) = BackupManifest::decode_unverified(data) {
        let key = SecretKey::new([0x42; 32]);
        let encoded = decoded.manifest.encode(&key);
        let again = BackupManifest::decode_unverified(&encoded).expect("own encoding decodes");
        assert_eq!(again.manifest, decoded.manifest);
        assert!(again.key_matches(&key) && again.mac_verifies(&encoded, &key));
        let current = data.get(8..10) == Some(&BACKUP_FORMAT_VERSION.to_le_bytes()[..]);
        if current && decoded.key_matches(&key) && decoded.mac_verifies(data, &key) {
            assert_eq!(encoded, data);
        }
    }
});
