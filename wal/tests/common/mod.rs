//! Shared helpers for the WAL integration tests (real files, real fsync).
#![allow(dead_code)]

use std::convert::Infallible;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use aedb_types::Lsn;
use aedb_wal::segment::SEGMENT_HEADER_LEN;
use aedb_wal::{
    FrameKind, RecoverError, RecoveredWal, RecoveryMode, WalConfig, WalWriter, decode_frame,
    recover, segment_paths,
};

/// A config with small segments and a fresh (unarmed) injector.
pub fn config(segment_size: u64) -> WalConfig {
    WalConfig {
        segment_size,
        ..WalConfig::default()
    }
}

/// Deterministic payload for `lsn`: 1..=150 bytes, never zero (so no zero sectors).
pub fn payload(lsn: u64) -> Vec<u8> {
    let len = (lsn.wrapping_mul(37) % 150 + 1) as usize;
    let mut state = lsn.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state as u8) | 1
        })
        .collect()
}

/// Appends and flushes one batch of `frames` frames after `writer.last_lsn()`.
pub fn write_batch(writer: &mut WalWriter, frames: u64) {
    let start = writer.last_lsn().get() + 1;
    for lsn in start..start + frames {
        writer
            .append(Lsn::new(lsn), FrameKind::Commit, &payload(lsn))
            .expect("append");
    }
    writer.flush().expect("flush");
}

/// Writes `batches` group commits of 1..=4 frames each, syncing each one.
pub fn write_synced_batches(writer: &mut WalWriter, batches: u64) {
    for i in 0..batches {
        write_batch(writer, i % 4 + 1);
        writer.sync().expect("sync");
    }
}

/// The frames a log should contain for LSNs `1..=last`.
pub fn expected_frames(first: u64, last: u64) -> Frames {
    (first..=last).map(|lsn| (lsn, payload(lsn))).collect()
}

/// Collected frames as (lsn, payload).
pub type Frames = Vec<(u64, Vec<u8>)>;

/// Recovers and collects every frame.
pub fn recover_all(
    dir: &Path,
    config: &WalConfig,
    mode: RecoveryMode,
) -> Result<(RecoveredWal, WalWriter, Frames), RecoverError<Infallible>> {
    let mut frames = Vec::new();
    let (report, writer) = recover(dir, config, mode, |frame| {
        assert_eq!(frame.kind, FrameKind::Commit);
        frames.push((frame.lsn.get(), frame.payload.to_vec()));
        Ok::<(), Infallible>(())
    })?;
    Ok((report, writer, frames))
}

/// A frame located in a segment file.
#[derive(Clone, Copy, Debug)]
pub struct Located {
    pub offset: u64,
    pub lsn: u64,
    pub len: usize,
    pub kind: FrameKind,
}

/// Decodes the frames of a segment file in order, up to the first error.
pub fn frames_in(path: &Path) -> Vec<Located> {
    let bytes = std::fs::read(path).expect("read segment");
    let mut offset = SEGMENT_HEADER_LEN;
    let mut out = Vec::new();
    while let Ok(frame) = decode_frame(&bytes[offset..]) {
        out.push(Located {
            offset: offset as u64,
            lsn: frame.lsn.get(),
            len: frame.encoded_len,
            kind: frame.kind,
        });
        offset += frame.encoded_len;
    }
    out
}

/// Segment files of `dir`, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    segment_paths(&aedb_fs::RealFs, dir)
        .expect("list segments")
        .into_iter()
        .map(|(_, path)| path)
        .collect()
}

/// Overwrites bytes of a file in place.
pub fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for tamper");
    file.write_all_at(bytes, offset).expect("tamper");
}

/// Reads `len` bytes at `offset`.
pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("read");
    bytes[offset as usize..offset as usize + len].to_vec()
}
