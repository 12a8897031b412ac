//! Checkpoint file behaviour: round trips, the writer's file protocol, and tamper evidence.

use aedb_checkpoint::{
    Algorithm, CHECKPOINT_HEADER_LEN, CheckpointDecoder, CheckpointError, CheckpointMeta,
    CheckpointWriter, FixedNonce, HeaderProblem, LoadedCheckpoint, OpenMode, OsNonceSource,
    TAG_LEN, checkpoint_path, list_checkpoints, open_checkpoint, open_checkpoint_bytes,
    open_checkpoint_stream, open_plaintext_checkpoint, remove_checkpoint, remove_stale_temp_files,
    seal_checkpoint_to_vec,
};
use aedb_keys::{EpochKey, SecretKey};
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use proptest::prelude::*;
use std::io::Write;
use std::path::Path;

const DB: DatabaseId = DatabaseId::from_bytes([0xD1; 16]);
const KEY: [u8; 32] = [0x11; 32];
const EPOCH: KeyEpoch = KeyEpoch::new(2);

fn key() -> SecretKey {
    SecretKey::new(KEY)
}

fn lookup(epoch: KeyEpoch) -> EpochKey {
    (epoch == EPOCH).then(key).into()
}

fn meta(lsn: u64, chunk: u32) -> CheckpointMeta {
    CheckpointMeta::new(DB, Lsn::new(lsn), EPOCH).with_chunk_size(chunk)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn sealed(payload: &[u8], chunk: u32, nonce: u8) -> Vec<u8> {
    seal_checkpoint_to_vec(
        &meta(5, chunk),
        Some(&key()),
        &mut FixedNonce([nonce; 24]),
        payload,
    )
    .unwrap()
}

fn open_sealed(bytes: &[u8]) -> Result<LoadedCheckpoint, CheckpointError> {
    open_checkpoint_bytes(bytes, DB, OpenMode::Sealed(&lookup))
}

#[test]
fn file_round_trip_records_metadata_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let data = payload(3 * 1024 * 1024 + 17);
    let mut w = CheckpointWriter::create(
        &aedb_fs::RealFs::shared(),
        dir.path(),
        meta(77, 1 << 20),
        Some(&key()),
        &mut OsNonceSource,
    )
    .unwrap();
    // Stream through the inherent API in uneven pieces, then through `io::Write`.
    let (head, tail) = data.split_at(1_500_000);
    for piece in head.chunks(100_003) {
        w.write_all(piece).unwrap();
    }
    std::io::copy(&mut &tail[..], &mut w).unwrap();
    Write::flush(&mut w).unwrap();
    let info = w.finish().unwrap();
    assert_eq!(info.path, checkpoint_path(dir.path(), Lsn::new(77)));
    assert_eq!(info.file_name, "00000000000000000077.ckpt");
    assert_eq!(info.chunk_count, 4);
    assert_eq!(info.payload_len, data.len() as u64);
    assert_eq!(info.algorithm, Algorithm::XChaCha20Poly1305);
    let on_disk = std::fs::read(&info.path).unwrap();
    assert_eq!(on_disk.len() as u64, info.len);
    assert_eq!(
        info.len,
        (CHECKPOINT_HEADER_LEN + 4 * TAG_LEN + data.len()) as u64
    );
    let loaded = open_checkpoint(&aedb_fs::RealFs, &info.path, DB, lookup).unwrap();
    assert_eq!(loaded.payload, data);
    assert_eq!(loaded.file_sha256, info.sha256);
    assert_eq!(loaded.header.lsn, Lsn::new(77));
    assert_eq!(loaded.header.epoch, EPOCH);
    // Sealed: the plaintext does not appear in the file.
    assert!(!on_disk.windows(64).any(|w| w == &data[1000..1064]));
    // The manifest record carries what was written.
    match info.manifest_record() {
        aedb_manifest::ManifestRecord::CheckpointAdded {
            lsn, sha256, len, ..
        } => assert_eq!((lsn, sha256, len), (Lsn::new(77), info.sha256, info.len)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn file_writer_bytes_equal_in_memory_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let data = payload(100);
    let mut w = CheckpointWriter::create(
        &aedb_fs::RealFs::shared(),
        dir.path(),
        meta(5, 16),
        Some(&key()),
        &mut FixedNonce([3; 24]),
    )
    .unwrap();
    w.write_all(&data).unwrap();
    let info = w.finish().unwrap();
    assert_eq!(std::fs::read(&info.path).unwrap(), sealed(&data, 16, 3));
}

#[test]
fn plaintext_mode_round_trips_and_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    let data = payload(50);
    let mut w = CheckpointWriter::create(
        &aedb_fs::RealFs::shared(),
        dir.path(),
        meta(9, 16),
        None,
        &mut OsNonceSource,
    )
    .unwrap();
    w.write_all(&data).unwrap();
    let info = w.finish().unwrap();
    assert_eq!(info.algorithm, Algorithm::PlaintextSha256);
    let loaded = open_plaintext_checkpoint(&aedb_fs::RealFs, &info.path, DB).unwrap();
    assert_eq!(loaded.payload, data);
    assert_eq!(loaded.header.algorithm, Algorithm::PlaintextSha256);
}

#[test]
fn sealed_reader_refuses_plaintext_downgrade_and_plaintext_reader_needs_key() {
    let plain =
        seal_checkpoint_to_vec(&meta(5, 16), None, &mut FixedNonce([1; 24]), b"data").unwrap();
    assert!(matches!(
        open_sealed(&plain),
        Err(CheckpointError::UnexpectedPlaintext { .. })
    ));
    let enc = sealed(b"data", 16, 1);
    assert!(matches!(
        open_checkpoint_bytes(&enc, DB, OpenMode::Plaintext),
        Err(CheckpointError::KeyRequired { epoch: EPOCH, .. })
    ));
}

#[test]
fn wrong_database_wrong_key_unknown_and_retired_epoch_are_typed() {
    let enc = sealed(b"payload", 16, 1);
    let other = DatabaseId::from_bytes([0xEE; 16]);
    match open_checkpoint_bytes(&enc, other, OpenMode::Sealed(&lookup)) {
        Err(CheckpointError::WrongDatabase {
            expected, found, ..
        }) => assert_eq!((expected, found), (other, DB)),
        r => panic!("expected WrongDatabase, got {r:?}"),
    }
    let wrong = |_: KeyEpoch| EpochKey::Key(SecretKey::new([0x99; 32]));
    assert!(matches!(
        open_checkpoint_bytes(&enc, DB, OpenMode::Sealed(&wrong)),
        Err(CheckpointError::WrongKey { epoch: EPOCH, .. })
    ));
    let none = |_: KeyEpoch| EpochKey::Unknown;
    assert!(matches!(
        open_checkpoint_bytes(&enc, DB, OpenMode::Sealed(&none)),
        Err(CheckpointError::UnknownEpoch { epoch: EPOCH, .. })
    ));
    let retired = |_: KeyEpoch| EpochKey::Retired;
    assert!(matches!(
        open_checkpoint_bytes(&enc, DB, OpenMode::Sealed(&retired)),
        Err(CheckpointError::RetiredEpoch { epoch: EPOCH, .. })
    ));
}

#[test]
fn wrong_key_error_never_shows_key_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = CheckpointWriter::create(
        &aedb_fs::RealFs::shared(),
        dir.path(),
        meta(1, 16),
        Some(&key()),
        &mut OsNonceSource,
    )
    .unwrap();
    let shown = format!("{w:?}");
    assert!(
        !shown.contains("17, 17") && !shown.contains("11111111"),
        "{shown}"
    );
    w.write_all(b"x").unwrap();
    let info = w.finish().unwrap();
    let err = open_checkpoint(&aedb_fs::RealFs, &info.path, DB, |_| {
        Some(SecretKey::new([0xAB; 32]))
    })
    .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(text.contains(&info.path.display().to_string()), "{text}");
    assert!(!text.to_lowercase().contains("abab"), "{text}");
    assert!(!text.contains("171"), "{text}");
}

#[test]
fn every_bit_flip_of_a_sealed_file_fails_to_open() {
    let enc = sealed(&payload(40), 16, 7);
    assert_eq!(enc.len(), CHECKPOINT_HEADER_LEN + 3 * TAG_LEN + 40);
    assert_eq!(open_sealed(&enc).unwrap().payload, payload(40));
    for i in 0..enc.len() {
        for bit in 0..8 {
            let mut t = enc.clone();
            t[i] ^= 1 << bit;
            let r = open_sealed(&t);
            assert!(r.is_err(), "flip of byte {i} bit {bit} was accepted");
        }
    }
}

#[test]
fn every_byte_flip_of_a_plaintext_file_fails_to_open() {
    let plain =
        seal_checkpoint_to_vec(&meta(5, 16), None, &mut FixedNonce([1; 24]), &payload(40)).unwrap();
    for i in 0..plain.len() {
        let mut t = plain.clone();
        t[i] ^= 0x5A;
        assert!(
            open_checkpoint_bytes(&t, DB, OpenMode::Plaintext).is_err(),
            "plaintext flip at {i} accepted"
        );
    }
}

#[test]
fn flips_are_reported_with_the_right_variant_and_location() {
    let enc = sealed(&payload(40), 16, 7);
    let mut t = enc.clone();
    t[20] ^= 1; // database id byte: caught by the header CRC, not mistaken for another db
    match open_sealed(&t) {
        Err(CheckpointError::BadHeader { problem, .. }) => {
            assert!(matches!(problem, HeaderProblem::BadCrc { .. }));
            assert_eq!(problem.offset(), 92);
        }
        r => panic!("{r:?}"),
    }
    let second_chunk = CHECKPOINT_HEADER_LEN + 16 + TAG_LEN;
    let mut t = enc.clone();
    t[second_chunk + 3] ^= 1;
    match open_sealed(&t) {
        Err(CheckpointError::AuthFailed { chunk, offset, .. }) => {
            assert_eq!((chunk, offset), (1, second_chunk as u64));
        }
        r => panic!("{r:?}"),
    }
}

#[test]
fn every_truncation_fails_to_open() {
    for (len, chunk) in [(40usize, 16u32), (48, 16), (0, 16), (5, 1)] {
        let enc = sealed(&payload(len), chunk, 9);
        for cut in 0..enc.len() {
            let r = open_sealed(&enc[..cut]);
            assert!(r.is_err(), "payload {len}: truncation to {cut} accepted");
        }
    }
}

#[test]
fn truncation_at_a_chunk_boundary_is_reported_as_truncated() {
    let enc = sealed(&payload(48), 16, 9); // three full chunks; the third is final
    let two_chunks = CHECKPOINT_HEADER_LEN + 2 * (16 + TAG_LEN);
    match open_sealed(&enc[..two_chunks]) {
        Err(CheckpointError::Truncated { chunks_present, .. }) => assert_eq!(chunks_present, 2),
        r => panic!("{r:?}"),
    }
    assert!(matches!(
        open_sealed(&enc[..CHECKPOINT_HEADER_LEN]),
        Err(CheckpointError::Truncated {
            chunks_present: 0,
            ..
        })
    ));
    assert!(matches!(
        open_sealed(&enc[..CHECKPOINT_HEADER_LEN + 5]),
        Err(CheckpointError::BadLength { .. })
    ));
}

#[test]
fn swapped_duplicated_and_spliced_chunks_fail() {
    let stride = 16 + TAG_LEN;
    let enc = sealed(&payload(48), 16, 9);
    let chunk = |b: &[u8], i: usize| {
        b[CHECKPOINT_HEADER_LEN + i * stride..CHECKPOINT_HEADER_LEN + (i + 1) * stride].to_vec()
    };
    let header = enc[..CHECKPOINT_HEADER_LEN].to_vec();
    let swapped = [
        header.clone(),
        chunk(&enc, 1),
        chunk(&enc, 0),
        chunk(&enc, 2),
    ]
    .concat();
    assert!(matches!(
        open_sealed(&swapped),
        Err(CheckpointError::AuthFailed { chunk: 0, .. })
    ));
    let duplicated = [
        header.clone(),
        chunk(&enc, 0),
        chunk(&enc, 0),
        chunk(&enc, 2),
    ]
    .concat();
    assert!(matches!(
        open_sealed(&duplicated),
        Err(CheckpointError::AuthFailed { chunk: 1, .. })
    ));
    let final_moved = [header.clone(), chunk(&enc, 0), chunk(&enc, 2)].concat();
    // The final chunk moved up a slot: it fails authentication at slot 1, where a
    // non-final chunk 1 was expected.
    let err = open_sealed(&final_moved).unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::AuthFailed { chunk: 1, offset, .. }
                if offset == (CHECKPOINT_HEADER_LEN + stride) as u64
        ),
        "{err:?}"
    );
    // Same database, LSN and key, different base nonce: chunks cannot be spliced across.
    let other = sealed(&payload(48), 16, 10);
    let spliced = [header, chunk(&enc, 0), chunk(&other, 1), chunk(&enc, 2)].concat();
    assert!(matches!(
        open_sealed(&spliced),
        Err(CheckpointError::AuthFailed { chunk: 1, .. })
    ));
    // Another file's header in front of these chunks.
    let reheaded = [
        other[..CHECKPOINT_HEADER_LEN].to_vec(),
        enc[CHECKPOINT_HEADER_LEN..].to_vec(),
    ]
    .concat();
    // The header authenticates on its own, but its nonce does not open the first chunk.
    let err = open_sealed(&reheaded).unwrap_err();
    assert!(
        matches!(
            err,
            CheckpointError::AuthFailed { chunk: 0, offset, .. }
                if offset == CHECKPOINT_HEADER_LEN as u64
        ),
        "{err:?}"
    );
}

#[test]
fn renamed_checkpoint_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = CheckpointWriter::create(
        &aedb_fs::RealFs::shared(),
        dir.path(),
        meta(10, 16),
        Some(&key()),
        &mut OsNonceSource,
    )
    .unwrap();
    w.write_all(b"old state").unwrap();
    let info = w.finish().unwrap();
    let newer = checkpoint_path(dir.path(), Lsn::new(20));
    std::fs::rename(&info.path, &newer).unwrap();
    match open_checkpoint(&aedb_fs::RealFs, &newer, DB, lookup) {
        Err(CheckpointError::LsnMismatch {
            name_lsn,
            header_lsn,
            ..
        }) => assert_eq!((name_lsn, header_lsn), (Lsn::new(20), Lsn::new(10))),
        r => panic!("{r:?}"),
    }
}

#[test]
fn writer_never_overwrites_and_cleans_up_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let mk = || {
        CheckpointWriter::create(
            &aedb_fs::RealFs::shared(),
            dir.path(),
            meta(3, 16),
            Some(&key()),
            &mut OsNonceSource,
        )
    };
    let mut w = mk().unwrap();
    let tmp = w.tmp_path().to_path_buf();
    assert!(tmp.exists());
    w.write_all(b"abc").unwrap();
    drop(w);
    assert!(
        !tmp.exists(),
        "dropping an unfinished writer removes its temp file"
    );

    let w = mk().unwrap();
    w.abort().unwrap();
    assert!(!tmp.exists());

    let mut w = mk().unwrap();
    w.write_all(b"abc").unwrap();
    w.finish().unwrap();
    assert!(matches!(mk(), Err(CheckpointError::AlreadyExists { .. })));

    assert!(matches!(
        CheckpointWriter::create(
            &aedb_fs::RealFs::shared(),
            dir.path(),
            meta(4, 0),
            None,
            &mut OsNonceSource
        ),
        Err(CheckpointError::InvalidChunkSize { size: 0 })
    ));
}

#[test]
fn list_remove_and_stale_temp_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        list_checkpoints(&aedb_fs::RealFs, dir.path())
            .unwrap()
            .is_empty()
    );
    for lsn in [30u64, 4, 100] {
        let mut w = CheckpointWriter::create(
            &aedb_fs::RealFs::shared(),
            dir.path(),
            meta(lsn, 16),
            None,
            &mut OsNonceSource,
        )
        .unwrap();
        w.write_all(&payload(lsn as usize)).unwrap();
        w.finish().unwrap();
    }
    let cdir = dir.path().join("checkpoints");
    std::fs::write(cdir.join("00000000000000000200.ckpt.tmp"), b"partial").unwrap();
    std::fs::write(cdir.join("notes.txt"), b"x").unwrap();
    let lsns: Vec<u64> = list_checkpoints(&aedb_fs::RealFs, dir.path())
        .unwrap()
        .iter()
        .map(|e| e.lsn.get())
        .collect();
    assert_eq!(lsns, vec![4, 30, 100]);
    let removed = remove_stale_temp_files(&aedb_fs::RealFs, dir.path()).unwrap();
    assert_eq!(removed, vec![cdir.join("00000000000000000200.ckpt.tmp")]);
    assert!(cdir.join("notes.txt").exists());
    remove_checkpoint(&aedb_fs::RealFs, dir.path(), Lsn::new(30)).unwrap();
    let lsns: Vec<u64> = list_checkpoints(&aedb_fs::RealFs, dir.path())
        .unwrap()
        .iter()
        .map(|e| e.lsn.get())
        .collect();
    assert_eq!(lsns, vec![4, 100]);
}

#[test]
fn streaming_reader_yields_chunks_and_only_then_completes() {
    let dir = tempfile::tempdir().unwrap();
    let data = payload(40);
    let mut w = CheckpointWriter::create(
        &aedb_fs::RealFs::shared(),
        dir.path(),
        meta(8, 16),
        Some(&key()),
        &mut OsNonceSource,
    )
    .unwrap();
    w.write_all(&data).unwrap();
    let info = w.finish().unwrap();
    let mut dec =
        open_checkpoint_stream(&aedb_fs::RealFs, &info.path, DB, OpenMode::Sealed(&lookup))
            .unwrap();
    assert_eq!((dec.chunk_count(), dec.payload_len()), (3, 40));
    let mut got = Vec::new();
    while let Some(c) = dec.next_chunk().unwrap() {
        assert!(c.len() <= 16);
        got.extend_from_slice(c);
    }
    assert_eq!(got, data);
    assert_eq!(dec.file_sha256(), Some(info.sha256));

    // A truncated stream yields authentic chunks, then fails instead of ending cleanly.
    let bytes = std::fs::read(&info.path).unwrap();
    let cut = &bytes[..CHECKPOINT_HEADER_LEN + 2 * (16 + TAG_LEN)];
    let mut dec = CheckpointDecoder::new(
        cut,
        cut.len() as u64,
        Path::new("cut"),
        DB,
        OpenMode::Sealed(&lookup),
    )
    .unwrap();
    assert!(dec.next_chunk().unwrap().is_some());
    assert!(matches!(
        dec.next_chunk(),
        Err(CheckpointError::Truncated {
            chunks_present: 2,
            ..
        })
    ));
    assert!(matches!(
        dec.next_chunk(),
        Err(CheckpointError::Poisoned { .. })
    ));
}

fn write_in_pieces(data: &[u8], chunk: u32, cuts: &[usize]) -> Vec<u8> {
    let mut enc = aedb_checkpoint::CheckpointEncoder::new(
        Vec::new(),
        "<memory>",
        &meta(5, chunk),
        Some(&key()),
        &mut FixedNonce([4; 24]),
    )
    .unwrap();
    let mut rest = data;
    for &c in cuts {
        let c = c.min(rest.len());
        enc.write_all(&rest[..c]).unwrap();
        rest = &rest[c..];
    }
    enc.write_all(rest).unwrap();
    let out = enc.finish().unwrap();
    assert_eq!(out.payload_len, data.len() as u64);
    out.sink
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_across_chunk_boundaries(
        chunk in prop::sample::select(vec![1u32, 7, 16, 64]),
        multiple in 0usize..4,
        extra in prop::sample::select(vec![0isize, 1, -1, 3]),
        cuts in prop::collection::vec(0usize..40, 0..6),
    ) {
        let len = ((multiple * chunk as usize) as isize + extra).max(0) as usize;
        let data = payload(len);
        let bytes = write_in_pieces(&data, chunk, &cuts);
        // Splitting the writes differently never changes the bytes.
        prop_assert_eq!(&bytes, &sealed(&data, chunk, 4));
        let chunks = len.div_ceil(chunk as usize).max(1);
        prop_assert_eq!(bytes.len(), CHECKPOINT_HEADER_LEN + chunks * TAG_LEN + len);
        let loaded = open_sealed(&bytes).unwrap();
        prop_assert_eq!(loaded.payload, data);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = open_sealed(&bytes);
        let _ = open_checkpoint_bytes(&bytes, DB, OpenMode::Plaintext);
    }

    #[test]
    fn decoder_never_accepts_mutated_files(
        edits in prop::collection::vec((0usize..184, 1u8..=255), 1..4),
    ) {
        let enc = sealed(&payload(40), 16, 7);
        let mut t = enc.clone();
        for (i, x) in edits { t[i] ^= x; }
        prop_assume!(t != enc);
        prop_assert!(open_sealed(&t).is_err());
    }

    #[test]
    fn header_with_valid_crc_but_random_fields_never_panics(
        plaintext in any::<bool>(),
        known_epoch in any::<bool>(),
        lsn in any::<u64>(),
        chunk in 1u32..64,
        nonce_and_check in prop::collection::vec(any::<u8>(), 40),
        tail in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        // Build a header that passes every structural check (valid CRC, our database) so
        // decoding reaches the key check and the chunk layout with random content.
        let mut h = sealed(b"", 16, 1)[..CHECKPOINT_HEADER_LEN].to_vec();
        h[12] = u8::from(!plaintext);
        let epoch = if known_epoch { EPOCH.get() } else { lsn as u32 };
        h[16..20].copy_from_slice(&epoch.to_le_bytes());
        h[36..44].copy_from_slice(&lsn.to_le_bytes());
        h[44..48].copy_from_slice(&chunk.to_le_bytes());
        h[48..88].copy_from_slice(&nonce_and_check);
        if plaintext {
            h[72..88].fill(0);
        }
        let crc = crc32(&h[..92]);
        h[92..].copy_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&tail);
        let sealed_result = open_sealed(&h);
        let plain_result = open_checkpoint_bytes(&h, DB, OpenMode::Plaintext);
        // Random bytes never authenticate (plaintext digests are 128-bit).
        prop_assert!(sealed_result.is_err());
        prop_assert!(plain_result.is_err());
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    // Bitwise CRC-32 (IEEE), so the test does not depend on the crate's CRC implementation.
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
