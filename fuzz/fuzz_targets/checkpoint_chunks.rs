//! The checkpoint parsers *behind* authentication: fuzzer-chosen payloads sealed into
//! checkpoint files (golden key, database, LSN and epoch; fixed base nonce) with
//! fuzzer-chosen chunk sizes, in sealed and plaintext mode, then opened by the real
//! readers.
//!
//! Input: `chunk (u8) || flags (u8) || tamper (u16 LE) || payload`. Chunk size is
//! `1 + chunk % 64` for `chunk < 192`, 4096 below 255, and the 1 MiB default at 255.
//! Flag bit 0 selects plaintext mode; bit 1 tampers with the file (bits 2..8 = `m`:
//! `m = 0` truncates it to `tamper % len` bytes, `m = 63` appends a byte, anything else
//! XORs the byte at `tamper % len` with `m`).
//!
//! Asserted: the file has the documented length (header + payload + one tag per chunk,
//! at least one chunk); `open_checkpoint_bytes` returns the payload and header; the
//! streaming `CheckpointDecoder` returns the same payload in chunks of exactly the chunk
//! size (the last one shorter or equal) and the file's SHA-256 once complete; the other
//! mode, another database, a wrong key and an unknown or retired epoch are refused with
//! their typed errors; a tampered file never opens; and a payload that decodes as a
//! snapshot (the engine's checkpoint payload) re-encodes to the same bytes.
#![no_main]
use aedb_checkpoint::{
    CheckpointDecoder, CheckpointError, CheckpointMeta, DEFAULT_CHUNK_SIZE, FixedNonce,
    GOLDEN_EPOCH, GOLDEN_LSN, OpenMode, TAG_LEN, open_checkpoint_bytes, seal_checkpoint_to_vec,
};
use aedb_fuzz::{FUZZ_DB, FUZZ_NONCE, fuzz_key};
use aedb_keys::{EpochKey, SecretKey};
use aedb_model::State;
use aedb_types::{DatabaseId, KeyEpoch};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fn chunk_size(selector: u8) -> u32 {
    match selector {
        0..=191 => 1 + u32::from(selector % 64),
        192..=254 => 4096,
        255 => DEFAULT_CHUNK_SIZE,
    }
}

fuzz_target!(|data: &[u8]| {
    let [selector, flags, t0, t1, payload @ ..] = data else {
        return;
    };
    let tamper = u16::from_le_bytes([*t0, *t1]);
    let size = chunk_size(*selector);
    let sealed = flags & 1 == 0;
    let key = fuzz_key();
    let meta = CheckpointMeta::new(FUZZ_DB, GOLDEN_LSN, GOLDEN_EPOCH).with_chunk_size(size);
    let bytes = seal_checkpoint_to_vec(
        &meta,
        sealed.then_some(&key),
        &mut FixedNonce(FUZZ_NONCE),
        payload,
    )
    .expect("seal");

    let chunks = payload.len().div_ceil(size as usize).max(1);
    assert_eq!(bytes.len(), 96 + payload.len() + chunks * TAG_LEN);

    let good_key = |epoch: KeyEpoch| {
        if epoch == GOLDEN_EPOCH {
            EpochKey::Key(fuzz_key())
        } else {
            EpochKey::Unknown
        }
    };
    let (mode, other_mode) = if sealed {
        (OpenMode::Sealed(&good_key), OpenMode::Plaintext)
    } else {
        (OpenMode::Plaintext, OpenMode::Sealed(&good_key))
    };

    let loaded = open_checkpoint_bytes(&bytes, FUZZ_DB, mode).expect("own checkpoint opens");
    assert_eq!(loaded.payload, payload);
    assert_eq!(
        (
            loaded.header.database_id,
            loaded.header.lsn,
            loaded.header.epoch
        ),
        (FUZZ_DB, GOLDEN_LSN, GOLDEN_EPOCH)
    );
    assert_eq!(
        (loaded.header.chunk_size, loaded.header.base_nonce),
        (size, FUZZ_NONCE)
    );
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    assert_eq!(
        (loaded.file_len, loaded.file_sha256),
        (bytes.len() as u64, digest)
    );

    // The streaming decoder, chunk by chunk.
    let mut decoder =
        CheckpointDecoder::new(&bytes[..], bytes.len() as u64, "<fuzz>", FUZZ_DB, mode)
            .expect("own checkpoint header");
    assert_eq!(decoder.chunk_count(), chunks as u64);
    assert_eq!(decoder.payload_len(), payload.len() as u64);
    let mut streamed = Vec::new();
    let mut index = 0;
    while let Some(chunk) = decoder.next_chunk().expect("own chunk opens") {
        let expected = if index + 1 == chunks {
            payload.len() - (chunks - 1) * size as usize
        } else {
            size as usize
        };
        assert_eq!(chunk.len(), expected, "chunk {index} length");
        streamed.extend_from_slice(chunk);
        index += 1;
    }
    assert_eq!(index, chunks);
    assert_eq!(streamed, payload);
    assert_eq!(decoder.file_sha256(), Some(digest));

    // Refusals, each with its typed error.
    let err = open_checkpoint_bytes(&bytes, FUZZ_DB, other_mode).expect_err("other mode");
    if sealed {
        assert!(
            matches!(err, CheckpointError::KeyRequired { .. }),
            "{err:?}"
        );
    } else {
        assert!(
            matches!(err, CheckpointError::UnexpectedPlaintext { .. }),
            "{err:?}"
        );
    }
    let elsewhere = DatabaseId::from_bytes([0x5A; 16]);
    let err = open_checkpoint_bytes(&bytes, elsewhere, mode).expect_err("other database");
    assert!(
        matches!(err, CheckpointError::WrongDatabase { .. }),
        "{err:?}"
    );
    if sealed {
        let wrong = |_: KeyEpoch| EpochKey::Key(SecretKey::new([0x43; 32]));
        let err =
            open_checkpoint_bytes(&bytes, FUZZ_DB, OpenMode::Sealed(&wrong)).expect_err("key");
        assert!(matches!(err, CheckpointError::WrongKey { .. }), "{err:?}");
        let unknown = |_: KeyEpoch| EpochKey::Unknown;
        let err =
            open_checkpoint_bytes(&bytes, FUZZ_DB, OpenMode::Sealed(&unknown)).expect_err("epoch");
        assert!(
            matches!(err, CheckpointError::UnknownEpoch { .. }),
            "{err:?}"
        );
        let retired = |_: KeyEpoch| EpochKey::Retired;
        let err = open_checkpoint_bytes(&bytes, FUZZ_DB, OpenMode::Sealed(&retired))
            .expect_err("retired");
        assert!(
            matches!(err, CheckpointError::RetiredEpoch { .. }),
            "{err:?}"
        );
    }

    if let Ok(state) = State::decode_snapshot(payload) {
        aedb_fuzz::assert_snapshot_canonical(&payload, &state);
    }

    if flags & 2 != 0 {
        let mut bad = bytes.clone();
        let at = usize::from(tamper) % bad.len();
        match flags >> 2 {
            0 => bad.truncate(at),
            63 => bad.push(*t0),
            m => bad[at] ^= m,
        }
        assert!(
            open_checkpoint_bytes(&bad, FUZZ_DB, mode).is_err(),
            "a tampered checkpoint opened"
        );
    }
});
