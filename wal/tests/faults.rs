//! Fault injection: fail-stop behaviour of the writer and recovery after failures.

mod common;

use aedb_types::Lsn;
use aedb_wal::{
    FaultInjector, FaultMode, FaultPoint, FrameKind, RecoverError, RecoveryMode, WalConfig,
    WalError, WalWriter,
};
use common::*;

/// Asserts every mutating call on `writer` is refused with `FailStopped`.
fn assert_fail_stopped(writer: &mut WalWriter) {
    assert!(writer.is_fail_stopped());
    let next = writer.last_lsn().next();
    assert!(matches!(
        writer.append(next, FrameKind::Commit, b"after"),
        Err(WalError::FailStopped)
    ));
    assert!(matches!(writer.flush(), Err(WalError::FailStopped)));
    assert!(matches!(writer.sync(), Err(WalError::FailStopped)));
    assert!(matches!(
        writer.flush_and_sync(),
        Err(WalError::FailStopped)
    ));
    assert!(matches!(writer.rotate(), Err(WalError::FailStopped)));
    assert!(matches!(
        writer.retire_segments_through(Lsn::MAX),
        Err(WalError::FailStopped)
    ));
}

fn injected(err: &WalError) -> Option<FaultPoint> {
    match err {
        WalError::Io { source, .. } => FaultInjector::injected_point(source),
        _ => None,
    }
}

#[test]
fn fsync_failure_fail_stops_and_recovery_keeps_the_synced_prefix() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(2048);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 20);
    let synced = writer.synced_lsn();
    let fsyncs = writer.fsync_count();

    config.faults.arm(FaultPoint::Fsync, FaultMode::Once);
    write_batch(&mut writer, 3);
    let err = writer.sync().expect_err("injected fsync failure");
    assert_eq!(injected(&err), Some(FaultPoint::Fsync));
    assert_eq!(
        writer.synced_lsn(),
        synced,
        "synced_lsn must not advance past a failed sync"
    );
    assert_eq!(writer.fsync_count(), fsyncs);
    assert_fail_stopped(&mut writer);
    // The fault was `Once`; the writer still refuses: no retry on the same file.
    assert_eq!(config.faults.mode(FaultPoint::Fsync), None);
    assert!(matches!(writer.sync(), Err(WalError::FailStopped)));
    drop(writer);

    let (report, mut writer, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert!(report.last_lsn >= synced);
    assert_eq!(
        frames[..synced.get() as usize],
        expected_frames(1, synced.get())[..]
    );
    write_synced_batches(&mut writer, 2);
}

#[test]
fn write_failure_fail_stops_and_nothing_of_the_batch_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(64 * 1024);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 5);
    let synced = writer.synced_lsn().get();
    let written = writer.written_bytes_total();

    config.faults.arm(FaultPoint::Write, FaultMode::Once);
    let next = synced + 1;
    writer
        .append(Lsn::new(next), FrameKind::Commit, &payload(next))
        .expect("append buffers only");
    let err = writer.flush().expect_err("injected write failure");
    assert_eq!(injected(&err), Some(FaultPoint::Write));
    assert_eq!(writer.written_bytes_total(), written);
    assert_eq!(writer.written_lsn().get(), synced);
    assert_fail_stopped(&mut writer);
    drop(writer);

    let (report, _, frames) = recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(frames, expected_frames(1, synced));
    assert_eq!(report.truncated_bytes(), 0);
}

#[test]
fn rename_failure_during_rotation_leaves_a_recoverable_sealed_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    config.faults.arm(FaultPoint::Rename, FaultMode::Once);
    // 1 KiB segments rotate within a few appends; a writer that never reaches the
    // armed rename fails the test instead of looping forever.
    const MAX_APPENDS: u64 = 1000;
    let err = (0..MAX_APPENDS)
        .find_map(|_| {
            let next = writer.last_lsn().get() + 1;
            writer
                .append(Lsn::new(next), FrameKind::Commit, &payload(next))
                .expect("append");
            writer.flush_and_sync().err()
        })
        .unwrap_or_else(|| panic!("no rotation (and so no rename) in {MAX_APPENDS} appends"));
    assert_eq!(injected(&err), Some(FaultPoint::Rename));
    assert_fail_stopped(&mut writer);
    // The old segment was sealed and synced before the new one was created.
    let synced = writer.synced_lsn().get();
    assert_eq!(writer.segment_seq().get(), 0);
    drop(writer);

    let (report, mut writer, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(frames, expected_frames(1, synced));
    assert_eq!(
        report.stray_temp_files.len(),
        1,
        "the unfinished new segment is cleaned up"
    );
    assert!(!report.stray_temp_files[0].exists());
    assert!(report.segments[0].sealed_hash.is_some());
    assert_eq!(
        writer.segment_seq().get(),
        1,
        "recovery starts the next segment"
    );
    let resealed = writer.take_sealed_segments();
    assert_eq!(resealed.len(), 1);
    assert_eq!(Some(resealed[0].hash), report.segments[0].sealed_hash);
    write_synced_batches(&mut writer, 10);
    let last = writer.last_lsn().get();
    drop(writer);
    let (_, _, frames) = recover_all(&dir, &config, RecoveryMode::Strict).expect("chain verifies");
    assert_eq!(frames, expected_frames(1, last));
}

#[test]
fn fsync_failure_while_sealing_fail_stops() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 3);
    let synced = writer.synced_lsn();
    config.faults.arm(FaultPoint::Fsync, FaultMode::Always);
    let err = writer.rotate().expect_err("sealing syncs");
    assert_eq!(injected(&err), Some(FaultPoint::Fsync));
    assert_eq!(writer.synced_lsn(), synced);
    assert_fail_stopped(&mut writer);
    drop(writer);

    // With the fault still armed, recovery cannot make the log durable and says so.
    let err = recover_all(&dir, &config, RecoveryMode::Strict).expect_err("fsync still failing");
    assert!(matches!(
        &err,
        RecoverError::Io { source, .. } if FaultInjector::injected_point(source) == Some(FaultPoint::Fsync)
    ));
    config.faults.disarm_all();
    let (_, _, frames) = recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(frames, expected_frames(1, synced.get()));
}

#[test]
fn directory_fsync_failure_fails_creation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(4096);
    config.faults.arm(FaultPoint::DirSync, FaultMode::Once);
    let err = WalWriter::create(&tmp.path().join("wal"), config.clone()).expect_err("dir sync");
    assert_eq!(injected(&err), Some(FaultPoint::DirSync));
}

#[test]
fn directory_fsync_failure_during_rotation_fail_stops() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(1024);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 2);
    config.faults.arm(FaultPoint::DirSync, FaultMode::Once);
    let err = writer.rotate().expect_err("dir sync");
    assert_eq!(injected(&err), Some(FaultPoint::DirSync));
    assert_fail_stopped(&mut writer);
    let synced = writer.synced_lsn().get();
    drop(writer);
    let (_, _, frames) = recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
    assert_eq!(frames, expected_frames(1, synced));
}

#[test]
fn write_failure_while_repairing_a_torn_tail_is_reported_and_retryable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("wal");
    let config = config(64 * 1024);
    let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
    write_synced_batches(&mut writer, 4);
    let last = writer.last_lsn().get();
    let path = writer.segment_path().to_path_buf();
    drop(writer);
    let end = frames_in(&path)
        .last()
        .map(|f| f.offset + f.len as u64)
        .expect("frames");
    overwrite(&path, end, &[0xEE; 30]);

    config.faults.arm(FaultPoint::Write, FaultMode::Once);
    let err = recover_all(&dir, &config, RecoveryMode::Strict).expect_err("repair write fails");
    // Exactly the injected write, while zeroing the torn tail of this segment.
    assert!(
        matches!(
            &err,
            RecoverError::Io { op: "zero damaged tail", path: p, source }
                if *p == path && FaultInjector::injected_point(source) == Some(FaultPoint::Write)
        ),
        "{err:?}"
    );
    let (report, _, frames) =
        recover_all(&dir, &config, RecoveryMode::Strict).expect("retry works");
    assert_eq!(report.torn_tail_bytes(), 30);
    assert_eq!(frames, expected_frames(1, last));
}

#[test]
fn unarmed_and_disarmed_injectors_do_nothing() {
    for disarm in [false, true] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let config = WalConfig {
            segment_size: 1024,
            ..WalConfig::default()
        };
        if disarm {
            for point in FaultPoint::ALL {
                config.faults.arm(point, FaultMode::Always);
            }
            config.faults.disarm_all();
        }
        let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
        write_synced_batches(&mut writer, 50);
        assert!(
            writer.segment_seq().get() > 2,
            "rotations exercised every fault site"
        );
        let last = writer.last_lsn().get();
        drop(writer);
        let (_, _, frames) = recover_all(&dir, &config, RecoveryMode::Strict).expect("recover");
        assert_eq!(frames, expected_frames(1, last));
    }
}

#[test]
fn writer_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<WalWriter>();
    assert_send::<FaultInjector>();
}
