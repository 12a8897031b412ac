//! Encryption at rest: sealed group-commit batches through the writer and recovery.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aedb_keys::{EpochKey, SecretKey};
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use aedb_wal::{
    FrameKind, NonceSource, RecoverError, RecoveryMode, SealError, SyncPolicy, WalCipher,
    WalConfig, WalError, WalKeyring, WalWriter, recover, verify, verify_quiet, verify_with,
};
use common::*;

const DB: DatabaseId = DatabaseId::from_bytes([0x5D; 16]);
const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a9c";

fn key(byte: u8) -> SecretKey {
    SecretKey::new([byte; 32])
}

/// The WAL subkey of `epoch` in these tests.
fn epoch_key(epoch: u32) -> SecretKey {
    key(0x10 + epoch as u8)
}

fn cipher(epoch: u32) -> WalCipher {
    WalCipher::new(epoch_key(epoch), KeyEpoch::new(epoch), DB)
}

fn keyring(epochs: &[u32]) -> WalKeyring {
    WalKeyring::from_keys(
        DB,
        epochs
            .iter()
            .map(|e| (KeyEpoch::new(*e), epoch_key(*e)))
            .collect::<Vec<_>>(),
    )
}

/// Small, fast, unsynced segments with a cipher for `epoch` and a keyring for `known`.
fn sealed_config(segment_size: u64, epoch: u32, known: &[u32]) -> WalConfig {
    WalConfig {
        segment_size,
        sync: SyncPolicy::None,
        cipher: Some(cipher(epoch)),
        keyring: Some(keyring(known)),
        ..WalConfig::default()
    }
}

/// Collects every frame delivered by strict recovery, even when it fails.
fn recover_collect(
    dir: &Path,
    config: &WalConfig,
    mode: RecoveryMode,
) -> (
    Frames,
    Result<aedb_wal::RecoveredWal, RecoverError<Infallible>>,
) {
    let mut frames = Vec::new();
    let result = recover(dir, config, mode, |frame| {
        assert_eq!(frame.kind, FrameKind::Commit);
        frames.push((frame.lsn.get(), frame.payload.to_vec()));
        Ok::<(), Infallible>(())
    })
    .map(|(report, _writer)| report);
    (frames, result)
}

/// All segment bytes of the log, concatenated.
fn raw_log(dir: &Path) -> Vec<u8> {
    segments(dir)
        .iter()
        .flat_map(|path| std::fs::read(path).expect("read segment"))
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every frame of every segment, with its segment path.
fn all_frames(dir: &Path) -> Vec<(std::path::PathBuf, Located)> {
    segments(dir)
        .into_iter()
        .flat_map(|path| {
            frames_in(&path)
                .into_iter()
                .map(move |frame| (path.clone(), frame))
        })
        .collect()
}

#[test]
fn sealed_round_trip_across_rotations_and_key_epochs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = sealed_config(1024, 1, &[1, 2]);
    let mut writer = WalWriter::create(&dir, config).expect("create");
    write_synced_batches(&mut writer, 20);
    let mut batches = 20;
    writer
        .set_cipher(Some(cipher(2)))
        .expect("rotate key epoch");
    write_synced_batches(&mut writer, 20);
    batches += 20;
    let last = writer.last_lsn().get();
    drop(writer);

    // One sealed frame per flush; every data frame is sealed; LSN = batch's last LSN.
    let frames = all_frames(&dir);
    let data: Vec<_> = frames
        .iter()
        .filter(|(_, f)| f.kind != FrameKind::SegmentEnd)
        .collect();
    assert_eq!(data.len(), batches);
    assert!(data.iter().all(|(_, f)| f.kind == FrameKind::SealedBatch));
    assert_eq!(data.last().map(|(_, f)| f.lsn), Some(last));
    assert!(segments(&dir).len() > 4, "rotations happened");

    // Recovery with only a keyring (both epochs) replays everything as Commit frames.
    let keys_only = WalConfig {
        cipher: None,
        ..sealed_config(1024, 1, &[1, 2])
    };
    let (report, mut writer, got) =
        recover_all(&dir, &keys_only, RecoveryMode::Strict).expect("recover");
    assert_eq!(got, expected_frames(1, last));
    assert_eq!(report.last_lsn, Lsn::new(last));
    assert_eq!(report.frames_replayed, last);
    assert!(report.torn_tail.is_none() && report.corruption.is_none());
    // The recovered writer has no cipher: it appends plaintext frames (compatibility).
    write_synced_batches(&mut writer, 2);
    let last2 = writer.last_lsn().get();
    drop(writer);

    // Epoch 3 comes only from the cipher; epochs 1 and 2 from the keyring.
    let config3 = sealed_config(1024, 3, &[1, 2]);
    let (_, mut writer, got) = recover_all(&dir, &config3, RecoveryMode::Strict).expect("recover");
    assert_eq!(got, expected_frames(1, last2));
    write_synced_batches(&mut writer, 5);
    let last3 = writer.last_lsn().get();
    drop(writer);
    let (_, _, got) = recover_all(&dir, &config3, RecoveryMode::Strict).expect("recover");
    assert_eq!(got, expected_frames(1, last3));

    // Keyless verification checks structure and the chain, and counts records.
    let report = verify_quiet(&aedb_fs::RealFs, &dir, RecoveryMode::Strict).expect("verify");
    assert_eq!(report.last_lsn, Lsn::new(last3));
    assert_eq!(report.frames_replayed, last3);
    let mut opened = Vec::new();
    verify_with(&dir, &config3, RecoveryMode::Strict, |frame| {
        opened.push((frame.lsn.get(), frame.payload.to_vec()));
        Ok::<(), Infallible>(())
    })
    .expect("verify with keys");
    assert_eq!(opened, expected_frames(1, last3));
}

#[test]
fn no_plaintext_on_disk_when_sealed() {
    for sealed in [true, false] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let config = if sealed {
            sealed_config(2048, 1, &[1])
        } else {
            WalConfig {
                segment_size: 2048,
                sync: SyncPolicy::None,
                ..WalConfig::default()
            }
        };
        let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
        for lsn in 1..=40u64 {
            let mut payload = format!("record {lsn} ").into_bytes();
            payload.extend_from_slice(MARKER);
            writer
                .append(Lsn::new(lsn), FrameKind::Commit, &payload)
                .expect("append");
            if lsn % 3 == 0 {
                writer.flush_and_sync().expect("commit");
            }
        }
        writer.flush_and_sync().expect("commit");
        drop(writer);
        assert!(segments(&dir).len() > 1);
        assert_eq!(
            contains(&raw_log(&dir), MARKER),
            !sealed,
            "marker on disk with sealed = {sealed}"
        );
        let (_, _, got) = recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
        assert_eq!(got.len(), 40);
        assert!(got.iter().all(|(_, p)| contains(p, MARKER)));
    }
}

#[test]
fn wrong_key_or_database_is_a_typed_error_never_wrong_data() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let mut writer = WalWriter::create(&dir, sealed_config(4096, 1, &[1])).expect("create");
    write_synced_batches(&mut writer, 3);
    drop(writer);
    let first = segments(&dir)[0].clone();

    let wrong_key = WalConfig {
        keyring: Some(WalKeyring::from_keys(DB, [(KeyEpoch::new(1), key(0xEE))])),
        cipher: None,
        ..sealed_config(4096, 1, &[])
    };
    let wrong_cipher = WalConfig {
        keyring: None,
        cipher: Some(WalCipher::new(key(0xEE), KeyEpoch::new(1), DB)),
        ..sealed_config(4096, 1, &[])
    };
    let other = DatabaseId::from_bytes([0x11; 16]);
    let wrong_db = WalConfig {
        keyring: Some(WalKeyring::from_keys(
            other,
            [(KeyEpoch::new(1), epoch_key(1))],
        )),
        cipher: None,
        ..sealed_config(4096, 1, &[])
    };
    for (name, config) in [
        ("wrong key", wrong_key),
        ("wrong cipher", wrong_cipher),
        ("wrong database", wrong_db),
    ] {
        for mode in [RecoveryMode::Strict, RecoveryMode::TruncateAtCorruption] {
            let (got, result) = recover_collect(&dir, &config, mode);
            assert!(got.is_empty(), "{name}: delivered {got:?}");
            match result {
                Err(RecoverError::Unseal {
                    path,
                    offset,
                    lsn,
                    source: SealError::Authentication { epoch },
                }) => {
                    assert_eq!(path, first);
                    assert_eq!(offset, 64);
                    assert_eq!(lsn, Lsn::new(1));
                    assert_eq!(epoch, KeyEpoch::new(1));
                }
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
    }
    // Nothing was cut: the right key still reads everything.
    let (_, _, got) =
        recover_all(&dir, &sealed_config(4096, 1, &[1]), RecoveryMode::Strict).expect("recover");
    assert_eq!(got, expected_frames(1, 6));
}

#[test]
fn byte_changes_in_a_sealed_batch_of_a_sealed_segment_fail_strict_recovery() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = WalConfig {
        preallocate: false,
        ..sealed_config(4096, 1, &[1])
    };
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    let mut original = BTreeMap::new();
    let mut lsn = 0u64;
    for batch in [2u64, 3, 1] {
        for _ in 0..batch {
            lsn += 1;
            let payload = format!("rec-{lsn:04}").into_bytes();
            writer
                .append(Lsn::new(lsn), FrameKind::Commit, &payload)
                .expect("append");
            original.insert(lsn, payload);
        }
        writer.flush().expect("flush");
    }
    writer
        .rotate()
        .expect("rotate: segment 0 is sealed and not last");
    lsn += 1;
    writer
        .append(Lsn::new(lsn), FrameKind::Commit, b"rec-last")
        .expect("append");
    original.insert(lsn, b"rec-last".to_vec());
    writer.flush_and_sync().expect("commit");
    drop(writer);

    let seg0 = segments(&dir)[0].clone();
    let target = frames_in(&seg0)[1]; // the 3-record batch, LSNs 3..=5
    assert_eq!((target.kind, target.lsn), (FrameKind::SealedBatch, 5));
    let start = target.offset as usize;
    let end = start + target.len;
    let pristine = std::fs::read(&seg0).expect("read");
    // Payload bytes that only the AEAD protects once the CRC is recomputed: the nonce,
    // the ciphertext and the tag.
    let aead_only = start + 16 + 18..end - 4;

    let mut authentication_failures = 0;
    for at in start..end {
        for (mask, fix_crc) in [(0xFF, false), (0x01, true), (0x80, true)] {
            let fix_crc = fix_crc && at < end - 4;
            let mut bytes = pristine.clone();
            bytes[at] ^= mask;
            if fix_crc {
                let crc = crc32fast::hash(&bytes[start..end - 4]);
                bytes[end - 4..end].copy_from_slice(&crc.to_le_bytes());
            }
            overwrite(&seg0, start as u64, &bytes[start..end]);
            let (got, result) = recover_collect(&dir, &config, RecoveryMode::Strict);
            overwrite(&seg0, start as u64, &pristine[start..end]);
            for (lsn, payload) in &got {
                assert_eq!(original.get(lsn), Some(payload), "altered record at {at}");
            }
            assert!(
                got.len() <= 2,
                "byte {at}: records of the damaged batch delivered"
            );
            match result {
                Err(RecoverError::Unseal {
                    source: SealError::Authentication { .. },
                    offset,
                    ..
                }) => {
                    assert_eq!(offset, target.offset);
                    authentication_failures += 1;
                }
                Err(RecoverError::Corrupt { .. } | RecoverError::UnknownKeyEpoch { .. }) => {
                    assert!(
                        !(fix_crc && aead_only.contains(&at)),
                        "byte {at} mask {mask:#x}: expected an authentication failure"
                    );
                }
                other => panic!("byte {at} mask {mask:#x} fix_crc {fix_crc}: {other:?}"),
            }
        }
    }
    assert!(authentication_failures >= 2 * aead_only.len());
    let (got, result) = recover_collect(&dir, &config, RecoveryMode::Strict);
    result.expect("pristine log recovers");
    assert_eq!(got.len(), original.len());
}

#[test]
fn unknown_epoch_is_a_typed_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let mut writer = WalWriter::create(&dir, sealed_config(4096, 1, &[1])).expect("create");
    write_synced_batches(&mut writer, 2);
    let before = writer.last_lsn().get();
    writer.set_cipher(Some(cipher(2))).expect("epoch 2");
    write_synced_batches(&mut writer, 2);
    drop(writer);
    let epoch2 = all_frames(&dir)
        .into_iter()
        .find(|(_, f)| f.lsn > before)
        .expect("epoch-2 frame");

    // A keyring without epoch 2, and a cipher of yet another epoch.
    let config = sealed_config(4096, 3, &[1]);
    let (got, result) = recover_collect(&dir, &config, RecoveryMode::TruncateAtCorruption);
    assert_eq!(got, expected_frames(1, before));
    match result {
        Err(RecoverError::UnknownKeyEpoch {
            path,
            offset,
            epoch,
        }) => {
            assert_eq!((path, offset), (epoch2.0, epoch2.1.offset));
            assert_eq!(epoch, KeyEpoch::new(2));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn retired_epoch_is_a_distinct_typed_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let mut writer = WalWriter::create(&dir, sealed_config(4096, 1, &[1])).expect("create");
    write_synced_batches(&mut writer, 2);
    drop(writer);
    // The manifest retired epoch 1: its key is refused, not merely missing.
    let config = WalConfig {
        keyring: Some(WalKeyring::new(DB, |epoch: KeyEpoch| {
            if epoch == KeyEpoch::FIRST {
                EpochKey::Retired
            } else {
                EpochKey::Unknown
            }
        })),
        ..sealed_config(4096, 2, &[])
    };
    let (got, result) = recover_collect(&dir, &config, RecoveryMode::Strict);
    assert!(got.is_empty());
    match result {
        Err(e @ RecoverError::RetiredKeyEpoch { epoch, .. }) => {
            assert_eq!(epoch, KeyEpoch::FIRST);
            assert!(e.to_string().contains("retired"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn sealed_log_without_keys_is_a_distinct_error_and_verify_is_keyless() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let mut writer = WalWriter::create(&dir, sealed_config(4096, 4, &[])).expect("create");
    write_synced_batches(&mut writer, 3);
    let last = writer.last_lsn();
    drop(writer);

    let plain = WalConfig {
        sync: SyncPolicy::None,
        ..config(4096)
    };
    let (got, result) = recover_collect(&dir, &plain, RecoveryMode::Strict);
    assert!(got.is_empty());
    match result {
        Err(err @ RecoverError::Encrypted { .. }) => {
            let RecoverError::Encrypted { offset, epoch, .. } = &err else {
                unreachable!()
            };
            assert_eq!((*offset, *epoch), (64, KeyEpoch::new(4)));
            assert!(
                err.to_string()
                    .contains("this WAL is encrypted; configure the key")
            );
        }
        other => panic!("unexpected {other:?}"),
    }

    // Keyless verification: structure, chain and density; frames delivered sealed.
    let report = verify_quiet(&aedb_fs::RealFs, &dir, RecoveryMode::Strict).expect("verify");
    assert_eq!(report.last_lsn, last);
    assert_eq!(report.frames_replayed, last.get());
    let mut kinds = Vec::new();
    verify(&aedb_fs::RealFs, &dir, RecoveryMode::Strict, |frame| {
        kinds.push((frame.kind, frame.lsn.get()));
        Ok::<(), Infallible>(())
    })
    .expect("verify");
    assert_eq!(
        kinds,
        vec![
            (FrameKind::SealedBatch, 1),
            (FrameKind::SealedBatch, 3),
            (FrameKind::SealedBatch, 6)
        ]
    );
}

#[test]
fn plaintext_frames_from_before_encryption_are_replayed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let plain = WalConfig {
        sync: SyncPolicy::None,
        ..config(4096)
    };
    let mut writer = WalWriter::create(&dir, plain).expect("create");
    write_synced_batches(&mut writer, 3);
    drop(writer);

    let sealed = sealed_config(4096, 1, &[1]);
    let (_, mut writer, got) = recover_all(&dir, &sealed, RecoveryMode::Strict).expect("recover");
    assert_eq!(got, expected_frames(1, 6));
    write_synced_batches(&mut writer, 3);
    drop(writer);
    let kinds: Vec<FrameKind> = all_frames(&dir).iter().map(|(_, f)| f.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == FrameKind::Commit).count(), 6);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == FrameKind::SealedBatch)
            .count(),
        3
    );
    let (_, _, got) = recover_all(&dir, &sealed, RecoveryMode::Strict).expect("recover");
    assert_eq!(got, expected_frames(1, 12));
}

#[test]
fn torn_sealed_batch_at_the_tail_is_cut() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = sealed_config(8192, 1, &[1]);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 3);
    let durable = writer.last_lsn().get();
    write_batch(&mut writer, 4); // written, never synced
    let path = writer.segment_path().to_path_buf();
    drop(writer);
    let torn = *frames_in(&path).last().expect("frame");
    assert_eq!(torn.kind, FrameKind::SealedBatch);
    // Only the first half of the batch reached the disk.
    let half = torn.len / 2;
    overwrite(
        &path,
        torn.offset + half as u64,
        &vec![0u8; torn.len - half],
    );

    let (report, mut writer, got) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(got, expected_frames(1, durable));
    let cut = report.torn_tail.expect("torn tail reported");
    assert_eq!((cut.path, cut.offset), (path, torn.offset));
    write_synced_batches(&mut writer, 1);
    drop(writer);
    let (_, _, got) = recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(got, expected_frames(1, durable + 1));
}

#[test]
fn nonce_failure_writes_nothing_and_does_not_poison() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let nonces = NonceSource::from_fn(move |nonce| {
        let call = counter.fetch_add(1, Ordering::SeqCst);
        if call == 1 {
            return Err(io::Error::other("entropy pool on holiday"));
        }
        nonce.fill(0);
        nonce[..4].copy_from_slice(&call.to_le_bytes());
        Ok(())
    });
    let mut config = sealed_config(4096, 1, &[1]);
    config.cipher = Some(cipher(1).with_nonce_source(nonces));
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_batch(&mut writer, 2);
    writer
        .append(Lsn::new(3), FrameKind::Commit, &payload(3))
        .expect("append");
    let buffered = writer.buffered_bytes();
    assert!(matches!(writer.flush(), Err(WalError::Nonce { .. })));
    assert!(!writer.is_fail_stopped());
    assert_eq!(writer.written_lsn(), Lsn::new(2));
    assert_eq!(writer.buffered_bytes(), buffered);
    assert_eq!(writer.flush_and_sync().expect("retry"), Lsn::new(3));
    drop(writer);
    let (_, _, got) = recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(got, expected_frames(1, 3));
}

#[test]
fn cipher_and_keyring_must_name_the_same_database() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let other = DatabaseId::from_bytes([0x22; 16]);
    let mismatched = WalConfig {
        keyring: Some(WalKeyring::from_keys(other, [])),
        ..sealed_config(4096, 1, &[])
    };
    assert!(matches!(
        WalWriter::create(&dir, mismatched),
        Err(WalError::DatabaseMismatch { .. })
    ));
    let mut writer = WalWriter::create(&dir, sealed_config(4096, 1, &[1])).expect("create");
    let foreign = WalCipher::new(epoch_key(2), KeyEpoch::new(2), other);
    assert!(matches!(
        writer.set_cipher(Some(foreign)),
        Err(WalError::DatabaseMismatch { .. })
    ));
    assert_eq!(
        writer.config().cipher.as_ref().map(WalCipher::epoch),
        Some(KeyEpoch::new(1))
    );
    assert!(matches!(
        writer.append(
            Lsn::new(1),
            FrameKind::Commit,
            &vec![0u8; aedb_wal::MAX_SEALED_RECORD_LEN + 1]
        ),
        Err(WalError::PayloadTooLarge { .. })
    ));
}
