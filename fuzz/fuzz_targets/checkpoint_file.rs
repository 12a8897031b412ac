//! Checkpoint files (header and every chunk), sealed and plaintext modes, on arbitrary
//! bytes: never panics; a sealed file never opens without being sealed under the key.
#![no_main]
use aedb_checkpoint::{CheckpointHeader, OpenMode, open_checkpoint_bytes};
use aedb_keys::{EpochKey, SecretKey};
use aedb_types::{DatabaseId, KeyEpoch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = CheckpointHeader::decode(data);
    let db = DatabaseId::from_bytes([7; 16]);
    let lookup = |_: KeyEpoch| EpochKey::Key(SecretKey::new([0x42; 32]));
    let sealed = open_checkpoint_bytes(data, db, OpenMode::Sealed(&lookup));
    assert!(sealed.is_err(), "random bytes authenticated as a sealed checkpoint");
    let _ = open_checkpoint_bytes(data, db, OpenMode::Plaintext);
});
