//! Writer and recovery integration tests on real files with real fsync.

mod common;

use std::fs;

use aedb_types::Lsn;
use aedb_wal::reader::Corruption;
use aedb_wal::segment::{HEADER_PREV_HASH_OFFSET, HEADER_SEQ_OFFSET, SEGMENT_HEADER_LEN};
use aedb_wal::{
    FrameError, FrameKind, RecoverError, RecoveryMode, SegmentHeader, SegmentSeq, SyncPolicy,
    WalConfig, WalError, WalWriter, read_segment_header, verify_quiet,
};
use common::*;

#[test]
fn round_trip_across_rotations_with_verified_chain() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 120);
    let last = writer.last_lsn().get();
    assert_eq!(writer.synced_lsn(), writer.last_lsn());
    assert!(
        writer.segment_seq().get() >= 3,
        "expected several rotations"
    );
    assert!(writer.fsync_count() >= 120);
    let sealed = writer.take_sealed_segments();
    assert_eq!(sealed.len() as u64, writer.segment_seq().get());
    drop(writer);

    // Each sealed hash is exactly what the next header records.
    for pair in sealed.windows(2) {
        assert_eq!(pair[1].base_lsn, pair[0].last_lsn.next());
    }
    for s in &sealed {
        let next = read_segment_header(
            &aedb_fs::RealFs,
            &aedb_wal::segment_path(&dir, s.seq.next()),
        )
        .expect("header");
        assert_eq!(next.prev_hash, s.hash);
    }
    // The preallocated files have the configured size (or more for oversized batches).
    for path in segments(&dir) {
        assert!(fs::metadata(&path).expect("stat").len() >= 1024);
    }

    let (report, mut writer, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(frames, expected_frames(1, last));
    assert_eq!(report.last_lsn, Lsn::new(last));
    assert_eq!(report.frames_replayed, last);
    assert_eq!(report.base_lsn, Lsn::new(1));
    assert_eq!(report.segments.len(), sealed.len() + 1);
    assert_eq!(report.truncated_bytes(), 0);
    assert!(report.torn_tail.is_none() && report.corruption.is_none() && !report.fresh);
    for (summary, s) in report.segments.iter().zip(&sealed) {
        assert_eq!(summary.sealed_hash, Some(s.hash));
        assert_eq!(summary.last_lsn, s.last_lsn);
    }

    // The recovered writer continues the same log.
    assert_eq!(writer.synced_lsn(), Lsn::new(last));
    write_synced_batches(&mut writer, 40);
    let last2 = writer.last_lsn().get();
    drop(writer);
    let (_, _, frames) = recover_all(&dir, &config, RecoveryMode::Strict).expect("recover again");
    assert_eq!(frames, expected_frames(1, last2));
}

#[test]
fn oversized_batch_goes_alone_into_a_fresh_segment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(512);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_batch(&mut writer, 1);
    assert_eq!(writer.segment_seq(), SegmentSeq::new(0));
    let big = vec![0xA5u8; 3000];
    writer
        .append(Lsn::new(2), FrameKind::Commit, &big)
        .expect("append");
    writer.flush().expect("flush");
    assert_eq!(writer.segment_seq(), SegmentSeq::new(1));
    assert!(fs::metadata(writer.segment_path()).expect("stat").len() > 3000);
    // The next batch does not fit behind it: another rotation.
    writer
        .append(Lsn::new(3), FrameKind::Commit, b"x")
        .expect("append");
    writer.flush_and_sync().expect("commit");
    assert_eq!(writer.segment_seq(), SegmentSeq::new(2));
    drop(writer);

    let mut got = Vec::new();
    let (report, _writer) = aedb_wal::recover(&dir, &config, RecoveryMode::Strict, |f| {
        got.push((f.lsn.get(), f.kind, f.payload.len()));
        Ok::<(), std::convert::Infallible>(())
    })
    .expect("recover");
    assert_eq!(
        got,
        vec![
            (1, FrameKind::Commit, payload(1).len()),
            (2, FrameKind::Commit, 3000),
            (3, FrameKind::Commit, 1)
        ]
    );
    assert_eq!(report.segments.len(), 3);
}

/// Builds a log with at least `min_segments` segments; returns the last LSN.
fn build_log(dir: &std::path::Path, config: &WalConfig, min_segments: u64) -> u64 {
    let mut writer = WalWriter::create(dir, config.clone()).expect("create");
    while writer.segment_seq().get() + 1 < min_segments {
        write_synced_batches(&mut writer, 4);
    }
    write_synced_batches(&mut writer, 3);
    writer.last_lsn().get()
}

#[test]
fn tampered_byte_in_sealed_segment_names_file_and_offset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    build_log(&dir, &config, 4);
    let target = segments(&dir)[1].clone();
    let frame = frames_in(&target)[2];
    let byte_at = frame.offset + 20; // inside the payload
    let original = read_at(&target, byte_at, 1)[0];
    overwrite(&target, byte_at, &[original ^ 0x10]);

    let err = recover_all(&dir, &config, RecoveryMode::Strict).expect_err("must fail closed");
    match &err {
        RecoverError::Corrupt {
            path,
            offset,
            corruption,
        } => {
            assert_eq!(path, &target);
            assert_eq!(*offset, frame.offset);
            assert!(matches!(
                corruption,
                Corruption::Frame(FrameError::BadCrc { .. })
            ));
        }
        other => panic!("unexpected error {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(&target.display().to_string()), "{message}");
    assert!(
        message.contains(&format!("offset {}", frame.offset)),
        "{message}"
    );
    // Strict recovery modified nothing.
    assert_eq!(read_at(&target, byte_at, 1)[0], original ^ 0x10);
}

#[test]
fn tamper_with_recomputed_crc_is_a_chain_mismatch() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    build_log(&dir, &config, 4);
    let files = segments(&dir);
    let target = files[1].clone();
    let frame = frames_in(&target)[1];
    let mut bytes = read_at(&target, frame.offset, frame.len);
    bytes[20] ^= 0x01;
    let body = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    overwrite(&target, frame.offset, &bytes);

    match recover_all(&dir, &config, RecoveryMode::Strict).expect_err("chain must break") {
        RecoverError::Corrupt {
            path,
            offset,
            corruption: Corruption::ChainMismatch { previous, .. },
        } => {
            assert_eq!(path, files[2]);
            assert_eq!(offset, HEADER_PREV_HASH_OFFSET);
            assert_eq!(previous, target);
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn deleted_middle_segment_is_detected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    build_log(&dir, &config, 5);
    let files = segments(&dir);
    let last_kept = frames_in(&files[1]).last().expect("frames").lsn;
    fs::remove_file(&files[2]).expect("delete");

    match recover_all(&dir, &config, RecoveryMode::Strict).expect_err("gap") {
        RecoverError::Corrupt {
            path,
            offset,
            corruption: Corruption::SequenceGap { expected, found },
        } => {
            assert_eq!(path, files[3]);
            assert_eq!(offset, HEADER_SEQ_OFFSET);
            assert_eq!(expected, SegmentSeq::new(2));
            assert_eq!(found, SegmentSeq::new(3));
        }
        other => panic!("unexpected error {other:?}"),
    }

    // Development mode keeps the prefix and drops everything after the gap.
    let (report, mut writer, frames) =
        recover_all(&dir, &config, RecoveryMode::TruncateAtCorruption)
            .expect("truncating recovery");
    assert_eq!(frames, expected_frames(1, last_kept));
    let cut = report.corruption.expect("reported");
    assert_eq!(cut.removed_segments, files[3..].to_vec());
    assert_eq!(writer.segment_seq(), SegmentSeq::new(2));
    write_synced_batches(&mut writer, 2);
    let last = writer.last_lsn().get();
    drop(writer);
    let (_, _, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("clean afterwards");
    assert_eq!(frames, expected_frames(1, last));
}

/// Writes a synced log, then one more batch of `frames` frames that is flushed but not
/// synced. Returns (last synced LSN, path of the active segment, the unsynced frames).
fn log_with_unsynced_batch(
    dir: &std::path::Path,
    config: &WalConfig,
    frames: u64,
) -> (u64, std::path::PathBuf, Vec<Located>) {
    let mut writer = WalWriter::create(dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 10);
    let synced = writer.synced_lsn().get();
    let seq = writer.segment_seq();
    write_batch(&mut writer, frames);
    assert_eq!(writer.segment_seq(), seq, "test batch must not rotate");
    let path = writer.segment_path().to_path_buf();
    drop(writer);
    let unsynced = frames_in(&path)
        .into_iter()
        .filter(|f| f.lsn > synced)
        .collect();
    (synced, path, unsynced)
}

#[test]
fn torn_tail_cut_mid_frame_by_truncation_is_repaired() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(64 * 1024);
    let (synced, path, unsynced) = log_with_unsynced_batch(&dir, &config, 3);
    // The file ends in the middle of the second unsynced frame (after its first payload
    // byte, which is never zero).
    let torn = unsynced[1];
    let cut = torn.offset + 17;
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(cut)
        .expect("truncate");

    let (report, mut writer, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(frames, expected_frames(1, synced + 1));
    let tail = report.torn_tail.clone().expect("torn tail reported");
    assert_eq!(tail.path, path);
    assert_eq!(tail.offset, torn.offset);
    assert_eq!(tail.bytes, cut - torn.offset);
    assert_eq!(report.torn_tail_bytes(), tail.bytes);

    write_synced_batches(&mut writer, 5);
    let last = writer.last_lsn().get();
    drop(writer);
    let (report, _, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("recover again");
    assert_eq!(frames, expected_frames(1, last));
    assert!(report.torn_tail.is_none());
}

#[test]
fn torn_tail_with_unpersisted_end_of_batch_is_repaired() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(64 * 1024);
    let (synced, path, unsynced) = log_with_unsynced_batch(&dir, &config, 4);
    // Everything from the middle of the first unsynced frame on never reached the disk.
    let first = unsynced[0];
    let last = unsynced[3];
    let from = first.offset + 17;
    let to = last.offset + last.len as u64;
    overwrite(&path, from, &vec![0u8; (to - from) as usize]);

    let (report, mut writer, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(frames, expected_frames(1, synced));
    assert_eq!(
        report.torn_tail.as_ref().map(|t| t.offset),
        Some(first.offset)
    );
    assert_eq!(report.torn_tail_bytes(), 17);
    assert_eq!(writer.last_lsn().get(), synced);
    write_synced_batches(&mut writer, 2);
    let end = writer.last_lsn().get();
    drop(writer);
    let (report, _, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("recover again");
    assert_eq!(frames, expected_frames(1, end));
    assert!(report.torn_tail.is_none());
}

#[test]
fn garbage_then_zeros_in_last_segment_is_a_torn_tail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(64 * 1024);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 10);
    let last = writer.last_lsn().get();
    let path = writer.segment_path().to_path_buf();
    drop(writer);
    let end = frames_in(&path)
        .last()
        .map(|f| f.offset + f.len as u64)
        .expect("frames");
    let garbage: Vec<u8> = (0..50u8).map(|i| i.wrapping_mul(73) | 0x80).collect();
    overwrite(&path, end, &garbage);

    let report = verify_quiet(&aedb_fs::RealFs, &dir, RecoveryMode::Strict).expect("verify");
    assert_eq!(
        report.torn_tail_bytes(),
        50,
        "verify reports what recover would cut"
    );
    assert_eq!(read_at(&path, end, 50), garbage, "verify modifies nothing");

    let (report, mut writer, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(frames, expected_frames(1, last));
    assert_eq!(report.torn_tail_bytes(), 50);
    assert_eq!(read_at(&path, end, 50), vec![0u8; 50], "tail zeroed");
    write_synced_batches(&mut writer, 3);
    let last = writer.last_lsn().get();
    drop(writer);
    let (report, _, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("recover again");
    assert_eq!(frames, expected_frames(1, last));
    assert_eq!(report.truncated_bytes(), 0);
}

#[test]
fn corruption_followed_by_valid_frames_fails_strict_and_truncates_in_development() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(64 * 1024);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 10);
    let path = writer.segment_path().to_path_buf();
    drop(writer);
    let located = frames_in(&path);
    let victim = located[located.len() / 2];
    let flipped = read_at(&path, victim.offset + 18, 1)[0] ^ 0x40;
    overwrite(&path, victim.offset + 18, &[flipped]);

    match recover_all(&dir, &config, RecoveryMode::Strict).expect_err("must fail closed") {
        RecoverError::Corrupt {
            path: p, offset, ..
        } => {
            assert_eq!(p, path);
            assert_eq!(offset, victim.offset);
        }
        other => panic!("unexpected error {other:?}"),
    }

    let (report, mut writer, frames) =
        recover_all(&dir, &config, RecoveryMode::TruncateAtCorruption)
            .expect("truncating recovery");
    assert_eq!(frames, expected_frames(1, victim.lsn - 1));
    let cut = report.corruption.clone().expect("reported");
    assert_eq!(
        (cut.path.clone(), cut.offset),
        (path.clone(), victim.offset)
    );
    assert!(cut.bytes > 0);
    assert_eq!(report.truncated_bytes(), cut.bytes);
    write_synced_batches(&mut writer, 2);
    let last = writer.last_lsn().get();
    drop(writer);
    let (_, _, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("strict afterwards");
    assert_eq!(frames, expected_frames(1, last));
}

#[test]
fn lost_sector_inside_an_unsynced_batch_is_a_torn_tail() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(64 * 1024);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 3);
    let synced = writer.synced_lsn().get();
    let start = synced + 1;
    for lsn in start..start + 12 {
        writer
            .append(Lsn::new(lsn), FrameKind::Commit, &[0x5Au8; 300])
            .expect("append");
    }
    writer.flush().expect("flush");
    let path = writer.segment_path().to_path_buf();
    drop(writer);
    // A page in the middle of the batch was never persisted; later pages were.
    let batch = frames_in(&path)
        .into_iter()
        .filter(|f| f.lsn >= start)
        .collect::<Vec<_>>();
    let hole = (batch[2].offset + 600).next_multiple_of(512);
    overwrite(&path, hole, &[0u8; 512]);
    let damaged = batch
        .iter()
        .find(|f| f.offset + f.len as u64 > hole)
        .copied()
        .expect("a frame overlaps the hole");
    assert!(
        batch.last().expect("frames").offset > hole + 512,
        "valid frames follow the hole"
    );

    let (report, _, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("torn, not corrupt");
    assert_eq!(frames.len() as u64, damaged.lsn - 1);
    assert_eq!(report.torn_tail.map(|t| t.offset), Some(damaged.offset));
}

#[test]
fn unsealed_segment_before_another_is_corruption() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    build_log(&dir, &config, 3);
    let target = segments(&dir)[0].clone();
    let trailer = *frames_in(&target).last().expect("frames");
    assert_eq!(trailer.kind, FrameKind::SegmentEnd);
    overwrite(&target, trailer.offset, &vec![0u8; trailer.len]);
    match recover_all(&dir, &config, RecoveryMode::Strict).expect_err("unsealed") {
        RecoverError::Corrupt {
            path,
            offset,
            corruption: Corruption::Unsealed,
        } => {
            assert_eq!(path, target);
            assert_eq!(offset, trailer.offset);
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn base_lsn_that_skips_lsns_is_corruption() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    build_log(&dir, &config, 3);
    let target = segments(&dir)[1].clone();
    let mut header = read_segment_header(&aedb_fs::RealFs, &target).expect("header");
    header.base_lsn = header.base_lsn.next();
    overwrite(&target, 0, &header.encode());
    match recover_all(&dir, &config, RecoveryMode::Strict).expect_err("gap") {
        RecoverError::Corrupt {
            path,
            corruption: Corruption::BaseLsnMismatch { .. },
            ..
        } => assert_eq!(path, target),
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn missing_or_empty_directory_is_a_fresh_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(4096);
    for dir in [tmp.path().join("a/b/wal"), tmp.path().to_path_buf()] {
        let (report, mut writer, frames) =
            recover_all(&dir, &config, RecoveryMode::Strict).expect("fresh");
        assert!(report.fresh);
        assert!(frames.is_empty());
        assert_eq!(report.last_lsn, Lsn::ZERO);
        assert_eq!(writer.segment_seq(), SegmentSeq::new(0));
        write_synced_batches(&mut writer, 2);
        drop(writer);
        let (report, _, frames) = recover_all(&dir, &config, RecoveryMode::Strict).expect("reopen");
        assert!(!report.fresh);
        assert_eq!(frames, expected_frames(1, 3));
    }
}

#[test]
fn create_refuses_an_existing_log_and_bad_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    drop(WalWriter::create(&dir, config(4096)).expect("create"));
    assert!(matches!(
        WalWriter::create(&dir, config(4096)),
        Err(WalError::AlreadyExists { .. })
    ));
    let other = tmp.path().join("other");
    assert!(matches!(
        WalWriter::create(&other, config(100)),
        Err(WalError::SegmentSizeTooSmall { size: 100, .. })
    ));
}

#[test]
fn append_rejects_out_of_order_lsns_and_reserved_kinds_without_poisoning() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let mut writer = WalWriter::create(&dir, config(4096)).expect("create");
    assert!(matches!(
        writer.append(Lsn::new(2), FrameKind::Commit, b"x"),
        Err(WalError::LsnOutOfOrder { expected, got }) if expected == Lsn::new(1) && got == Lsn::new(2)
    ));
    writer
        .append(Lsn::new(1), FrameKind::Commit, b"x")
        .expect("append");
    assert!(matches!(
        writer.append(Lsn::new(1), FrameKind::Commit, b"x"),
        Err(WalError::LsnOutOfOrder { .. })
    ));
    assert!(matches!(
        writer.append(Lsn::new(2), FrameKind::SegmentEnd, b"x"),
        Err(WalError::ReservedFrameKind(FrameKind::SegmentEnd))
    ));
    // Sealed batches are built by the writer itself (WalConfig::cipher).
    assert!(matches!(
        writer.append(Lsn::new(2), FrameKind::SealedBatch, b"x"),
        Err(WalError::ReservedFrameKind(FrameKind::SealedBatch))
    ));
    assert!(!writer.is_fail_stopped());
    assert_eq!(writer.buffered_bytes(), 21);
    assert_eq!(writer.flush_and_sync().expect("commit"), Lsn::new(1));
    assert_eq!(writer.buffered_bytes(), 0);
}

#[test]
fn development_sync_policy_issues_no_fsync() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = WalConfig {
        segment_size: 1024,
        sync: SyncPolicy::None,
        ..WalConfig::default()
    };
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 30);
    assert_eq!(writer.fsync_count(), 0);
    assert_eq!(writer.synced_lsn(), writer.last_lsn());
    assert!(writer.segment_seq().get() > 0);
    let last = writer.last_lsn().get();
    drop(writer);
    let (_, _, frames) = recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(frames, expected_frames(1, last));
}

#[test]
fn create_starting_at_continues_after_a_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    let mut writer =
        WalWriter::create_starting_at(&dir, config.clone(), Lsn::new(500)).expect("create");
    assert_eq!(writer.last_lsn(), Lsn::new(499));
    write_synced_batches(&mut writer, 20);
    let last = writer.last_lsn().get();
    drop(writer);
    let (report, _, frames) = recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(report.base_lsn, Lsn::new(500));
    assert_eq!(frames, expected_frames(500, last));
}

#[test]
fn retire_removes_only_fully_covered_sealed_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 60);
    let sealed = writer.take_sealed_segments();
    assert!(sealed.len() >= 4);
    // A checkpoint in the middle of segment 2 covers segments 0 and 1 only.
    let through = Lsn::new(sealed[2].last_lsn.get() - 1);
    let removed = writer.retire_segments_through(through).expect("retire");
    assert_eq!(
        removed,
        vec![sealed[0].path.clone(), sealed[1].path.clone()]
    );
    // Retiring everything never removes the active segment.
    let removed = writer
        .retire_segments_through(writer.last_lsn())
        .expect("retire all");
    assert_eq!(removed.len(), sealed.len() - 2);
    assert!(writer.segment_path().exists());
    write_synced_batches(&mut writer, 2);
    let last = writer.last_lsn().get();
    let first = fs_first_lsn(&dir);
    drop(writer);
    let (report, _, frames) = recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(report.base_lsn.get(), first);
    assert_eq!(frames, expected_frames(first, last));
}

fn fs_first_lsn(dir: &std::path::Path) -> u64 {
    let first = segments(dir)[0].clone();
    read_segment_header(&aedb_fs::RealFs, &first)
        .expect("header")
        .base_lsn
        .get()
}

#[test]
fn callback_error_stops_recovery_without_repair() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(64 * 1024);
    let (_, path, unsynced) = log_with_unsynced_batch(&dir, &config, 2);
    let torn = unsynced[1];
    overwrite(&path, torn.offset + 5, &[0u8; 8]);
    let before = fs::read(&path).expect("read");

    let mut seen = 0;
    let err = aedb_wal::recover(&dir, &config, RecoveryMode::Strict, |_| {
        seen += 1;
        if seen == 3 { Err("stop") } else { Ok(()) }
    })
    .expect_err("callback error");
    assert!(matches!(err, RecoverError::Callback("stop")));
    assert_eq!(fs::read(&path).expect("read"), before);
}

#[test]
fn segment_header_of_every_file_matches_its_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    build_log(&dir, &config(1024), 3);
    for (seq, path) in aedb_wal::segment_paths(&aedb_fs::RealFs, &dir).expect("list") {
        let bytes = fs::read(&path).expect("read");
        let header = SegmentHeader::decode(&bytes[..SEGMENT_HEADER_LEN]).expect("header");
        assert_eq!(header.seq, seq);
    }
}

#[test]
fn development_mode_cuts_a_damaged_sealed_segment_and_drops_later_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    build_log(&dir, &config, 5);
    let files = segments(&dir);
    let target = files[1].clone();
    let victim = frames_in(&target)[1];
    let flipped = read_at(&target, victim.offset + 17, 1)[0] ^ 0x01;
    overwrite(&target, victim.offset + 17, &[flipped]);

    let (report, mut writer, frames) =
        recover_all(&dir, &config, RecoveryMode::TruncateAtCorruption)
            .expect("truncating recovery");
    assert_eq!(frames, expected_frames(1, victim.lsn - 1));
    let cut = report.corruption.expect("reported");
    assert_eq!((cut.path, cut.offset), (target.clone(), victim.offset));
    assert_eq!(cut.removed_segments, files[2..].to_vec());
    // Appends continue inside the cut segment, which is no longer sealed.
    assert_eq!(writer.segment_path(), target.as_path());
    write_synced_batches(&mut writer, 12);
    let last = writer.last_lsn().get();
    drop(writer);
    let (_, _, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("strict afterwards");
    assert_eq!(frames, expected_frames(1, last));
}

#[test]
fn development_mode_drops_segments_from_a_chain_break_on() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    build_log(&dir, &config, 4);
    let files = segments(&dir);
    let mut header = read_segment_header(&aedb_fs::RealFs, &files[2]).expect("header");
    header.prev_hash.0[0] ^= 0xFF;
    overwrite(&files[2], 0, &header.encode());
    let last_kept = frames_in(&files[1])
        .iter()
        .rfind(|f| f.kind == FrameKind::Commit)
        .expect("frames")
        .lsn;

    let (report, mut writer, frames) =
        recover_all(&dir, &config, RecoveryMode::TruncateAtCorruption)
            .expect("truncating recovery");
    assert_eq!(frames, expected_frames(1, last_kept));
    let cut = report.corruption.expect("reported");
    assert!(matches!(cut.corruption, Corruption::ChainMismatch { .. }));
    assert_eq!(cut.removed_segments, files[2..].to_vec());
    // Segment 1 is intact and sealed: the writer starts a new segment 2 chained to it.
    assert_eq!(writer.segment_seq(), SegmentSeq::new(2));
    write_synced_batches(&mut writer, 3);
    let last = writer.last_lsn().get();
    drop(writer);
    let (_, _, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("strict afterwards");
    assert_eq!(frames, expected_frames(1, last));
}
