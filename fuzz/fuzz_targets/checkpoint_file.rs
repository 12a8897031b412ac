//! Checkpoint files (header and every chunk), in sealed mode under the golden checkpoint
//! key (any epoch) and in plaintext mode, on arbitrary bytes, for the database the header
//! names (so golden and generated files in the seed corpus open). Never panics, and:
//!
//! * `CheckpointHeader::decode`: a header that decodes re-encodes to the same 96 bytes;
//! * a file that opens (in either mode) is canonical: sealing its payload again with its
//!   own header's database, LSN, epoch, chunk size and base nonce (and the key, in sealed
//!   mode) reproduces the file byte for byte, and the reported length and SHA-256 are the
//!   file's;
//! * no file opens in both modes;
//! * the payload of a file that opens is a snapshot as far as `State::decode_snapshot`
//!   goes: anything that decodes re-encodes to the same bytes.
#![no_main]
use aedb_checkpoint::{
    CheckpointHeader, CheckpointMeta, FixedNonce, LoadedCheckpoint, OpenMode,
    open_checkpoint_bytes, seal_checkpoint_to_vec,
};
use aedb_fuzz::{FUZZ_DB, fuzz_key};
use aedb_keys::{EpochKey, SecretKey};
use aedb_model::State;
use aedb_types::KeyEpoch;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fn check_canonical(data: &[u8], loaded: &LoadedCheckpoint, key: Option<&SecretKey>) {
    let h = loaded.header;
    assert_eq!(CheckpointHeader::decode(data), Ok(h));
    assert_eq!(loaded.file_len, data.len() as u64);
    let digest: [u8; 32] = Sha256::digest(data).into();
    assert_eq!(loaded.file_sha256, digest);
    let meta = CheckpointMeta::new(h.database_id, h.lsn, h.epoch).with_chunk_size(h.chunk_size);
    let again = seal_checkpoint_to_vec(&meta, key, &mut FixedNonce(h.base_nonce), &loaded.payload)
        .expect("an opened checkpoint re-seals");
    assert!(again == data, "opened checkpoint is not canonical");
    if let Ok(state) = State::decode_snapshot(&loaded.payload) {
        aedb_fuzz::assert_snapshot_canonical(&loaded.payload, &state);
    }
}

fuzz_target!(|data: &[u8]| {
    let header = CheckpointHeader::decode(data);
    if let Ok(h) = &header {
        assert_eq!(
            &h.encode()[..],
            &data[..96],
            "checkpoint header is not canonical"
        );
    }
    let db = header.map_or(FUZZ_DB, |h| h.database_id);
    let lookup = |_: KeyEpoch| EpochKey::Key(fuzz_key());
    let sealed = open_checkpoint_bytes(data, db, OpenMode::Sealed(&lookup));
    if let Ok(loaded) = &sealed {
        check_canonical(data, loaded, Some(&fuzz_key()));
    }
    let plain = open_checkpoint_bytes(data, db, OpenMode::Plaintext);
    if let Ok(loaded) = &plain {
        check_canonical(data, loaded, None);
    }
    assert!(
        sealed.is_err() || plain.is_err(),
        "a file opened in both modes"
    );
});
