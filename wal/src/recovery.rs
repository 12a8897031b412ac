//! Recovery: verify the whole log, stream its frames, repair the tail, reopen the writer.
//!
//! [`recover`] reads every segment with a memory map, in sequence order, and verifies:
//! every header; contiguous segment sequence numbers (and file names matching headers);
//! the SHA-256 chain (each header's `prev_hash` is the hash of the previous sealed
//! segment); dense, strictly increasing LSNs within and across segments; every
//! `SegmentEnd` trailer. Frames are streamed to a callback as they are read, so a log of
//! millions of frames is never collected in memory.
//!
//! A torn tail in the last segment (see [`crate::reader`] for the exact rule) is cut off
//! in every mode: the bytes are zeroed and synced, so later appends and recoveries start
//! clean. Any other damage is corruption: [`RecoveryMode::Strict`] refuses with
//! [`RecoverError::Corrupt`] naming the file and byte offset;
//! [`RecoveryMode::TruncateAtCorruption`] (development only) cuts the log there instead,
//! removing later segments.
//!
//! Because frames are streamed before later segments are verified, a caller that gets an
//! error must discard everything it received.
//!
//! **Sealed batches.** With keys configured ([`WalConfig::cipher`], [`WalConfig::keyring`]),
//! `recover` opens every [`FrameKind::SealedBatch`] frame (verifying its Poly1305 tag under
//! the key of the epoch in its header) and delivers its records to the callback as ordinary
//! `Commit` frames, so callers never see whether a record was sealed. Plaintext `Commit`
//! frames (written before encryption was enabled) are delivered as well. A batch that fails
//! authentication, a sealed log without keys, and an epoch without a key are reported as
//! [`RecoverError::Unseal`], [`RecoverError::Encrypted`] and [`RecoverError::UnknownKeyEpoch`]
//! in **every** mode: a wrong key cannot be told from tampering, and cutting the log on a
//! wrong key would destroy it. (Damage to a sealed frame's bytes is caught first by its CRC
//! and handled like any other damaged frame, including the torn-tail rule.)
//!
//! [`verify`] performs the same checks without modifying anything or opening a writer;
//! it has no keys, so it checks sealed batches structurally only and delivers them sealed.
//! [`verify_with`] also opens them.

use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};

use aedb_types::Lsn;

use crate::dir::{ensure_dir, segment_paths, sync_dir, temp_files};
use crate::error::WalError;
use crate::fault::FaultPoint;
use aedb_types::KeyEpoch;

use crate::frame::{DecodedFrame, FrameKind, is_all_zero};
use crate::reader::{Corruption, ScanEnd, ScanError, scan_segment};
use crate::seal::{SealError, UnsealFailure, Unsealer};
use crate::segment::{
    HEADER_BASE_LSN_OFFSET, HEADER_PREV_HASH_OFFSET, HEADER_SEQ_OFFSET, SEGMENT_HEADER_LEN,
    SegmentHash, SegmentHeader, SegmentSeq,
};
use crate::writer::{ResumePoint, SealedSegment, WalConfig, WalWriter};
use aedb_fs::{FileSystem, OpenMode};

/// What recovery does with corruption (torn tails are always cut).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RecoveryMode {
    /// Refuse to open on any integrity failure, naming the file and byte offset.
    #[default]
    Strict,
    /// **Development only.** Stop replay at the first corruption, cut the log there
    /// (zeroing the rest of that segment and removing every later segment) and report it.
    /// Sealed batches that fail authentication, or whose key is missing, are never cut:
    /// they fail recovery in this mode too (see the module docs).
    TruncateAtCorruption,
}

/// A torn tail cut from the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailCut {
    /// The segment file.
    pub path: PathBuf,
    /// Offset of the torn frame: the segment's valid data ends here.
    pub offset: u64,
    /// Non-zero bytes discarded (from `offset` to the last non-zero byte).
    pub bytes: u64,
    /// What the torn frame looked like.
    pub corruption: Corruption,
}

/// Corruption cut by [`RecoveryMode::TruncateAtCorruption`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptionCut {
    /// The file where corruption was found.
    pub path: PathBuf,
    /// Byte offset of the corruption in that file.
    pub offset: u64,
    /// What was wrong.
    pub corruption: Corruption,
    /// Non-zero bytes discarded in `path` (whole segments removed are not counted here).
    pub bytes: u64,
    /// Later segment files removed (including `path` itself if its header was bad).
    pub removed_segments: Vec<PathBuf>,
}

/// Summary of one segment read by recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Sequence number.
    pub seq: SegmentSeq,
    /// The file.
    pub path: PathBuf,
    /// Base LSN from the header.
    pub base_lsn: Lsn,
    /// Last valid LSN (`base_lsn - 1` if none).
    pub last_lsn: Lsn,
    /// Records in the valid data frames (a sealed batch counts its records).
    pub frames: u64,
    /// The chain hash, if the segment is sealed.
    pub sealed_hash: Option<SegmentHash>,
}

/// What recovery (or verification) found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveredWal {
    /// No segment was resumed: a fresh log was started (by `recover`), because the
    /// directory held none or a lenient cut removed them all.
    pub fresh: bool,
    /// The first LSN the log can contain (base LSN of the oldest segment; 1 if fresh).
    pub base_lsn: Lsn,
    /// The last valid LSN (`base_lsn - 1` if the log holds no frames).
    pub last_lsn: Lsn,
    /// Records replayed: one per `Commit` frame and `count` per sealed batch (what
    /// `recover` delivers to its callback; keyless [`verify`] delivers each sealed batch
    /// as one frame but counts its records here).
    pub frames_replayed: u64,
    /// The segments read, oldest first (after any cut).
    pub segments: Vec<SegmentSummary>,
    /// The torn tail cut from the last segment, if any.
    pub torn_tail: Option<TailCut>,
    /// Corruption cut in [`RecoveryMode::TruncateAtCorruption`], if any.
    pub corruption: Option<CorruptionCut>,
    /// Leftover `*.wal.tmp` files of an interrupted rotation (removed by `recover`).
    pub stray_temp_files: Vec<PathBuf>,
    /// Outside [`RecoveryMode::Strict`]: segments removed by [`restart_after`] because the
    /// log no longer continued the checkpoint (it ended before it, or its first frame after
    /// it was lost); the log restarts after the checkpoint with the next segment number. Callers that record segments elsewhere (the manifest) retire
    /// them there.
    pub superseded: Vec<PathBuf>,
}

impl RecoveredWal {
    /// Non-zero bytes of the torn tail (0 if none).
    pub fn torn_tail_bytes(&self) -> u64 {
        self.torn_tail.as_ref().map_or(0, |cut| cut.bytes)
    }

    /// All non-zero bytes cut from kept segments (torn tail plus corruption cut).
    pub fn truncated_bytes(&self) -> u64 {
        self.torn_tail_bytes() + self.corruption.as_ref().map_or(0, |cut| cut.bytes)
    }
}

/// Why recovery or verification failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoverError<E> {
    /// Integrity failure (strict mode, or unrecoverable in any mode). Restore the WAL from
    /// a backup, or open with `TruncateAtCorruption` in development.
    #[error("WAL corruption in {} at byte offset {offset}: {corruption}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage in that file.
        offset: u64,
        /// What is wrong.
        corruption: Corruption,
    },
    /// A file-system operation failed while reading or repairing.
    #[error("WAL recovery I/O error during {op} on {}: {source}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The frame callback failed; recovery stopped without repairing anything.
    #[error("WAL replay callback failed: {0}")]
    Callback(#[source] E),
    /// The log holds a sealed (encrypted) batch but neither [`WalConfig::keyring`] nor
    /// [`WalConfig::cipher`] is configured. Nothing was modified.
    #[error(
        "this WAL is encrypted; configure the key: {} holds a sealed batch at byte offset {offset} under {epoch}, but no WAL keyring or cipher is configured",
        path.display()
    )]
    Encrypted {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the sealed frame.
        offset: u64,
        /// The key epoch the batch was sealed under.
        epoch: KeyEpoch,
    },
    /// A sealed batch names a key epoch the manifest retired: no live segment may hold
    /// one, so the segment is stale or planted. Nothing was modified.
    #[error(
        "sealed batch in {} at byte offset {offset} is under {epoch}, which was retired; the segment is stale",
        path.display()
    )]
    RetiredKeyEpoch {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the sealed frame.
        offset: u64,
        /// The key epoch the batch was sealed under.
        epoch: KeyEpoch,
    },
    /// A sealed batch names a key epoch for which no key is configured (the keyring
    /// returned `None` and the cipher is of another epoch). Nothing was modified.
    #[error(
        "no WAL key for {epoch}: sealed batch in {} at byte offset {offset}; the keyring does not know this epoch",
        path.display()
    )]
    UnknownKeyEpoch {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the sealed frame.
        offset: u64,
        /// The key epoch the batch was sealed under.
        epoch: KeyEpoch,
    },
    /// A sealed batch could not be opened: most importantly
    /// [`SealError::Authentication`] (tampered bytes with a recomputed CRC, or the wrong
    /// key for its epoch). Fails closed in every mode; nothing was modified, and no record
    /// of the batch was delivered.
    #[error("cannot open sealed batch in {} at byte offset {offset} (LSN {lsn}): {source}", path.display())]
    Unseal {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the sealed frame.
        offset: u64,
        /// The frame's LSN (the batch's last LSN).
        lsn: Lsn,
        /// Why it could not be opened.
        #[source]
        source: SealError,
    },
    /// Opening the writer after recovery (or a directory operation) failed.
    #[error(transparent)]
    Writer(#[from] WalError),
}

/// What the read pass decided.
struct Plan {
    report: RecoveredWal,
    /// Zero `[from, to)` in `path`.
    repair: Option<(PathBuf, u64, u64)>,
    remove: Vec<PathBuf>,
    resume: Option<ResumePoint>,
    /// Sequence number of the fresh log started when nothing is resumed.
    fresh_seq: SegmentSeq,
}

/// A corruption found in the read pass.
struct Found {
    path: PathBuf,
    offset: u64,
    corruption: Corruption,
}

/// Recovers the log in `dir`: verifies it, streams every valid data frame to `on_frame`
/// in LSN order, cuts a torn tail (and, in `TruncateAtCorruption`, corruption), syncs the
/// result, and returns a writer positioned to append the next LSN.
///
/// An empty or missing directory is a fresh log starting at LSN 1 (to start elsewhere,
/// use [`WalWriter::create_starting_at`] instead). If `on_frame` fails, recovery stops
/// and returns [`RecoverError::Callback`] without modifying anything.
pub fn recover<E, F>(
    dir: &Path,
    config: &WalConfig,
    mode: RecoveryMode,
    on_frame: F,
) -> Result<(RecoveredWal, WalWriter), RecoverError<E>>
where
    F: FnMut(DecodedFrame<'_>) -> Result<(), E>,
{
    recover_after(dir, config, mode, Lsn::ZERO, on_frame)
}

/// [`recover`] for a log that continues a checkpoint at `covered` (the state already
/// holds every LSN up to it): when the log turns out to be empty — no segment at all, or
/// (outside [`RecoveryMode::Strict`]) a single segment whose header a power cut never let
/// reach the disk — the fresh log starts at `covered + 1` instead of LSN 1.
pub fn recover_after<E, F>(
    dir: &Path,
    config: &WalConfig,
    mode: RecoveryMode,
    covered: Lsn,
    on_frame: F,
) -> Result<(RecoveredWal, WalWriter), RecoverError<E>>
where
    F: FnMut(DecodedFrame<'_>) -> Result<(), E>,
{
    config.validate()?;
    let unsealer = Unsealer::new(config.cipher.as_ref(), config.keyring.as_ref());
    let synced = config.sync == crate::SyncPolicy::Fdatasync;
    let fs = &*config.fs;
    let plan = read_pass(fs, dir, mode, synced, Some(unsealer), on_frame)?;
    let Plan {
        mut report,
        repair,
        remove,
        resume,
        fresh_seq,
    } = plan;
    let syncs = config.sync == crate::SyncPolicy::Fdatasync;
    let faults = &config.faults;

    for tmp in &report.stray_temp_files {
        fs.remove_file(tmp)
            .map_err(|err| io_err("remove stray temp segment", tmp, err))?;
    }
    for path in &remove {
        fs.remove_file(path)
            .map_err(|err| io_err("remove segment after corruption", path, err))?;
    }
    if let Some((path, from, to)) = &repair {
        zero_range(path, *from, *to, config)?;
    }
    let writer = match resume {
        None => {
            ensure_dir(fs, dir, faults, syncs)?;
            report.fresh = true;
            report.base_lsn = covered.next();
            report.last_lsn = covered;
            WalWriter::create_fresh(dir, config.clone(), fresh_seq, covered.next())?
        }
        Some(point) => {
            if syncs {
                // Data read back may have come from the page cache of a crashed process:
                // make it durable before anything is acknowledged on top of it.
                let path = match &point {
                    ResumePoint::Open { path, .. } => path,
                    ResumePoint::Sealed(sealed) => &sealed.path,
                };
                sync_file(path, config)?;
                sync_dir(fs, dir, faults)?;
            }
            WalWriter::resume(dir, config.clone(), point)?
        }
    };
    Ok((report, writer))
}

/// Lenient recovery only: the log in `dir` does not continue the checkpoint at
/// `covered` (its first frame after `covered` is missing: a power cut kept the segment
/// holding it off the disk in a profile without fsync). Every segment is removed — the
/// checkpoint already holds everything the log could still replay up to `covered`, and
/// nothing after the gap can be replayed — and a fresh log starts after `covered` with
/// the next segment number. The report lists the removed segments as
/// [`RecoveredWal::superseded`].
pub fn restart_after<E>(
    dir: &Path,
    config: &WalConfig,
    covered: Lsn,
) -> Result<(RecoveredWal, WalWriter), RecoverError<E>> {
    config.validate()?;
    let fs = &*config.fs;
    let segments = segment_paths(fs, dir)?;
    let next = segments
        .last()
        .map_or(SegmentSeq::FIRST, |(seq, _)| seq.next());
    for (_, path) in &segments {
        fs.remove_file(path)
            .map_err(|err| io_err("remove segment behind a gap", path, err))?;
    }
    let writer = WalWriter::create_fresh(dir, config.clone(), next, covered.next())?;
    let report = RecoveredWal {
        fresh: true,
        base_lsn: covered.next(),
        last_lsn: covered,
        frames_replayed: 0,
        segments: Vec::new(),
        torn_tail: None,
        corruption: None,
        stray_temp_files: Vec::new(),
        superseded: segments.into_iter().map(|(_, path)| path).collect(),
    };
    Ok((report, writer))
}

/// Verifies the log in `dir` exactly as [`recover`] would, streaming frames to
/// `on_frame`, but modifies nothing and opens no writer. The report says what `recover`
/// would cut. For inspection, backups and the `verify` command.
///
/// Keyless: `SealedBatch` frames are checked structurally (CRC, plaintext header, LSN
/// range, chain) and delivered **as stored** (kind `SealedBatch`, sealed payload); their
/// tags are not verified. Use [`verify_with`] to open them.
pub fn verify<E, F>(
    fs: &dyn FileSystem,
    dir: &Path,
    mode: RecoveryMode,
    on_frame: F,
) -> Result<RecoveredWal, RecoverError<E>>
where
    F: FnMut(DecodedFrame<'_>) -> Result<(), E>,
{
    read_pass(fs, dir, mode, false, None, on_frame).map(|plan| plan.report)
}

/// [`verify`] with the keys of `config`: like [`recover`], it opens and authenticates
/// every sealed batch and delivers its records as `Commit` frames, failing exactly as
/// `recover` would; like `verify`, it modifies nothing and opens no writer.
pub fn verify_with<E, F>(
    dir: &Path,
    config: &WalConfig,
    mode: RecoveryMode,
    on_frame: F,
) -> Result<RecoveredWal, RecoverError<E>>
where
    F: FnMut(DecodedFrame<'_>) -> Result<(), E>,
{
    config.validate()?;
    let unsealer = Unsealer::new(config.cipher.as_ref(), config.keyring.as_ref());
    let synced = config.sync == crate::SyncPolicy::Fdatasync;
    read_pass(&*config.fs, dir, mode, synced, Some(unsealer), on_frame).map(|plan| plan.report)
}

/// [`verify`] without a callback, for callers that only need the report.
pub fn verify_quiet(
    fs: &dyn FileSystem,
    dir: &Path,
    mode: RecoveryMode,
) -> Result<RecoveredWal, RecoverError<Infallible>> {
    verify(fs, dir, mode, |_| Ok::<(), Infallible>(()))
}

/// Why delivering a frame during the read pass failed.
enum Replay<E> {
    /// The caller's callback failed.
    Callback(E),
    /// A sealed batch at `offset` could not be opened.
    Unseal {
        offset: u64,
        lsn: Lsn,
        failure: UnsealFailure,
    },
}

/// Delivers one outer frame at `offset` of segment `seq`: opens a sealed batch (when
/// keys are in play) and delivers its records, or passes the frame through.
fn deliver<E, F>(
    unsealer: &mut Option<Unsealer<'_>>,
    seq: SegmentSeq,
    offset: u64,
    frame: DecodedFrame<'_>,
    on_frame: &mut F,
) -> Result<(), Replay<E>>
where
    F: FnMut(DecodedFrame<'_>) -> Result<(), E>,
{
    match unsealer {
        Some(unsealer) if frame.kind == FrameKind::SealedBatch => {
            let records = unsealer
                .open(seq, &frame)
                .map_err(|failure| Replay::Unseal {
                    offset,
                    lsn: frame.lsn,
                    failure,
                })?;
            for record in records {
                on_frame(record).map_err(Replay::Callback)?;
            }
            Ok(())
        }
        _ => on_frame(frame).map_err(Replay::Callback),
    }
}

/// Maps a failure to open a sealed batch to its recovery error.
fn unseal_error<E>(path: &Path, offset: u64, lsn: Lsn, failure: UnsealFailure) -> RecoverError<E> {
    let path = path.to_path_buf();
    match failure {
        UnsealFailure::NoKey { epoch } => RecoverError::Encrypted {
            path,
            offset,
            epoch,
        },
        UnsealFailure::UnknownEpoch { epoch } => RecoverError::UnknownKeyEpoch {
            path,
            offset,
            epoch,
        },
        UnsealFailure::RetiredEpoch { epoch } => RecoverError::RetiredKeyEpoch {
            path,
            offset,
            epoch,
        },
        UnsealFailure::Seal(source) => RecoverError::Unseal {
            path,
            offset,
            lsn,
            source,
        },
    }
}

/// `synced`: the log was written with fsync, so a segment header (synced when the
/// segment was created) can only be missing through corruption, never a power cut.
fn read_pass<E, F>(
    fs: &dyn FileSystem,
    dir: &Path,
    mode: RecoveryMode,
    synced: bool,
    mut unsealer: Option<Unsealer<'_>>,
    mut on_frame: F,
) -> Result<Plan, RecoverError<E>>
where
    F: FnMut(DecodedFrame<'_>) -> Result<(), E>,
{
    let segments = segment_paths(fs, dir)?;
    let mut report = RecoveredWal {
        fresh: segments.is_empty(),
        base_lsn: Lsn::new(1),
        last_lsn: Lsn::ZERO,
        frames_replayed: 0,
        segments: Vec::new(),
        torn_tail: None,
        corruption: None,
        stray_temp_files: temp_files(fs, dir)?,
        superseded: Vec::new(),
    };
    if segments.is_empty() {
        return Ok(Plan {
            report,
            repair: None,
            remove: Vec::new(),
            resume: None,
            fresh_seq: SegmentSeq::FIRST,
        });
    }

    // A missing segment is detected from the names before any frame is delivered.
    let mut scan_count = segments.len();
    let mut gap: Option<Found> = None;
    for (index, pair) in segments.windows(2).enumerate() {
        let expected = pair[0].0.next();
        if pair[1].0 != expected {
            gap = Some(Found {
                path: pair[1].1.clone(),
                offset: HEADER_SEQ_OFFSET,
                corruption: Corruption::SequenceGap {
                    expected,
                    found: pair[1].0,
                },
            });
            scan_count = index + 1;
            break;
        }
    }
    if let Some(found) = &gap
        && mode == RecoveryMode::Strict
    {
        return Err(corrupt(found));
    }

    let mut repair = None;
    let mut remove = Vec::new();
    let mut resume = None;
    let mut fresh_seq = SegmentSeq::FIRST;
    let mut previous: Option<SealedSegment> = None;

    for (index, (name_seq, path)) in segments.iter().take(scan_count).enumerate() {
        let is_last = index + 1 == scan_count && gap.is_none();
        let mapped = fs
            .read_whole(path)
            .map_err(|err| io_err("map segment", path, err))?;
        let bytes: &[u8] = &mapped;

        // Header-level checks come before any frame of this segment is delivered.
        let mut frames_start = 0u64;
        let header_problem = match SegmentHeader::decode(bytes) {
            Err(err) => Some((0, Corruption::Header(err))),
            Ok(header) => {
                frames_start = header.header_len() as u64;
                check_header(&header, *name_seq, previous.as_ref())
            }
        };
        if let Some((offset, corruption)) = header_problem {
            let found = Found {
                path: path.clone(),
                offset,
                corruption,
            };
            if mode == RecoveryMode::Strict {
                return Err(corrupt(&found));
            }
            // With nothing before it to continue from, only a header that never reached
            // the disk is cut (the log then starts afresh with this segment's number);
            // any other damage to the first segment refuses even in development mode.
            let prev = previous.take();
            if prev.is_none() && !(index == 0 && header_never_written(bytes, synced)) {
                return Err(corrupt(&found));
            }
            let removed: Vec<PathBuf> = segments[index..].iter().map(|(_, p)| p.clone()).collect();
            remove.extend(removed.iter().cloned());
            report.corruption = Some(CorruptionCut {
                path: found.path,
                offset: found.offset,
                corruption: found.corruption,
                bytes: nonzero_len(bytes),
                removed_segments: removed,
            });
            match prev {
                Some(prev) => {
                    report.last_lsn = prev.last_lsn;
                    resume = Some(ResumePoint::Sealed(prev));
                }
                None => {
                    report.segments.clear();
                    fresh_seq = *name_seq;
                }
            }
            gap = None;
            break;
        }

        // Frames are contiguous from the header on: track each one's offset for errors.
        let mut at = frames_start;
        let scan = scan_segment(bytes, is_last, |frame: DecodedFrame<'_>| {
            let offset = at;
            at += frame.encoded_len as u64;
            deliver(&mut unsealer, *name_seq, offset, frame, &mut on_frame)
        });
        let scan = scan.map_err(|err| match err {
            ScanError::Callback(Replay::Callback(err)) => RecoverError::Callback(err),
            ScanError::Callback(Replay::Unseal {
                offset,
                lsn,
                failure,
            }) => unseal_error(path, offset, lsn, failure),
            ScanError::Header(err) => RecoverError::Corrupt {
                path: path.clone(),
                offset: 0,
                corruption: Corruption::Header(err),
            },
        })?;
        report.frames_replayed += scan.frames;
        report.last_lsn = scan.last_lsn;
        if index == 0 {
            report.base_lsn = scan.header.base_lsn;
        }
        let sealed_hash = match &scan.end {
            ScanEnd::Sealed { hash, .. } => Some(*hash),
            _ => None,
        };
        report.segments.push(SegmentSummary {
            seq: scan.header.seq,
            path: path.clone(),
            base_lsn: scan.header.base_lsn,
            last_lsn: scan.last_lsn,
            frames: scan.frames,
            sealed_hash,
        });

        // Where the log continues if it is cut in this segment.
        let open_here = |scan: crate::reader::SegmentScan| ResumePoint::Open {
            path: path.clone(),
            header: scan.header,
            data_end: scan.data_end,
            frames: scan.frames,
            last_lsn: scan.last_lsn,
            hasher: scan.hasher,
        };
        let cut: Option<(Found, u64)> = match &scan.end {
            ScanEnd::Sealed { trailer, hash } => {
                let sealed = SealedSegment {
                    seq: scan.header.seq,
                    path: path.clone(),
                    base_lsn: scan.header.base_lsn,
                    last_lsn: scan.last_lsn,
                    frames: scan.frames,
                    sealed_len: trailer.sealed_len(),
                    hash: *hash,
                };
                // The last segment read (also before a gap cut in development mode).
                if index + 1 == scan_count {
                    resume = Some(ResumePoint::Sealed(sealed.clone()));
                }
                previous = Some(sealed);
                None
            }
            ScanEnd::Open if is_last => {
                resume = Some(open_here(scan));
                break;
            }
            ScanEnd::Open => Some((
                Found {
                    path: path.clone(),
                    offset: scan.data_end,
                    corruption: Corruption::Unsealed,
                },
                scan.data_end,
            )),
            ScanEnd::Damaged(damage) if damage.torn => {
                report.torn_tail = Some(TailCut {
                    path: path.clone(),
                    offset: damage.offset,
                    bytes: damage.nonzero_end - scan.data_end,
                    corruption: damage.corruption.clone(),
                });
                repair = Some((path.clone(), scan.data_end, damage.nonzero_end));
                resume = Some(open_here(scan));
                break;
            }
            ScanEnd::Damaged(damage) => Some((
                Found {
                    path: path.clone(),
                    offset: damage.offset,
                    corruption: damage.corruption.clone(),
                },
                damage.nonzero_end,
            )),
        };
        if let Some((found, nonzero_end)) = cut {
            if mode == RecoveryMode::Strict {
                return Err(corrupt(&found));
            }
            let removed: Vec<PathBuf> = segments[index + 1..]
                .iter()
                .map(|(_, p)| p.clone())
                .collect();
            remove.extend(removed.iter().cloned());
            let bytes_cut = nonzero_end.saturating_sub(scan.data_end);
            if bytes_cut > 0 {
                repair = Some((path.clone(), scan.data_end, nonzero_end));
            }
            report.corruption = Some(CorruptionCut {
                path: found.path,
                offset: found.offset,
                corruption: found.corruption,
                bytes: bytes_cut,
                removed_segments: removed,
            });
            gap = None;
            resume = Some(open_here(scan));
            break;
        }
    }

    // A sequence gap in development mode: everything after it is dropped.
    if let Some(found) = gap {
        let removed: Vec<PathBuf> = segments[scan_count..]
            .iter()
            .map(|(_, p)| p.clone())
            .collect();
        remove.extend(removed.iter().cloned());
        report.corruption = Some(CorruptionCut {
            path: found.path,
            offset: found.offset,
            corruption: found.corruption,
            bytes: 0,
            removed_segments: removed,
        });
    }
    Ok(Plan {
        report,
        repair,
        remove,
        resume,
        fresh_seq,
    })
}

/// Whether a segment whose header does not decode is one whose header a power cut kept
/// from the disk, rather than a damaged one: the header bytes are missing or all zero
/// (the file was created and possibly extended, but the sector holding the header was
/// never persisted), and either the log was written without fsync (so no byte of it was
/// ever promised durable) or nothing else of the file reached the disk either.
fn header_never_written(bytes: &[u8], synced: bool) -> bool {
    let lost = bytes.len() < SEGMENT_HEADER_LEN || is_all_zero(&bytes[..SEGMENT_HEADER_LEN]);
    lost && (!synced || nonzero_len(bytes) == 0)
}

/// One past the last non-zero byte of `bytes` (0 if all zero).
fn nonzero_len(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1)
}

/// Header checks that depend on context: name, genesis hash, chain, base LSN.
fn check_header(
    header: &SegmentHeader,
    name_seq: SegmentSeq,
    previous: Option<&SealedSegment>,
) -> Option<(u64, Corruption)> {
    if header.seq != name_seq {
        return Some((
            HEADER_SEQ_OFFSET,
            Corruption::NameMismatch {
                name_seq,
                header_seq: header.seq,
            },
        ));
    }
    match previous {
        None => {
            if header.seq == SegmentSeq::FIRST && header.prev_hash != SegmentHash::ZERO {
                return Some((
                    HEADER_PREV_HASH_OFFSET,
                    Corruption::NonZeroGenesisHash {
                        found: header.prev_hash,
                    },
                ));
            }
        }
        Some(prev) => {
            if header.prev_hash != prev.hash {
                return Some((
                    HEADER_PREV_HASH_OFFSET,
                    Corruption::ChainMismatch {
                        previous: prev.path.clone(),
                        actual: prev.hash,
                        recorded: header.prev_hash,
                    },
                ));
            }
            let expected = prev.last_lsn.next();
            if header.base_lsn != expected {
                return Some((
                    HEADER_BASE_LSN_OFFSET,
                    Corruption::BaseLsnMismatch {
                        expected,
                        found: header.base_lsn,
                    },
                ));
            }
        }
    }
    None
}

fn corrupt<E>(found: &Found) -> RecoverError<E> {
    RecoverError::Corrupt {
        path: found.path.clone(),
        offset: found.offset,
        corruption: found.corruption.clone(),
    }
}

fn io_err<E>(op: &'static str, path: &Path, source: io::Error) -> RecoverError<E> {
    RecoverError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Overwrites `[from, to)` of `path` with zeros and syncs it (unless sync is disabled).
fn zero_range<E>(
    path: &Path,
    from: u64,
    to: u64,
    config: &WalConfig,
) -> Result<(), RecoverError<E>> {
    let file = config
        .fs
        .open(path, OpenMode::Existing)
        .map_err(|err| io_err("open segment for repair", path, err))?;
    let zeros = vec![0u8; 64 * 1024];
    let mut at = from;
    while at < to {
        let len = usize::try_from(to - at).map_or(zeros.len(), |n| n.min(zeros.len()));
        config
            .faults
            .write_with(FaultPoint::Write, &zeros[..len], |part| {
                file.write_all_at(part, at)
            })
            .map_err(|err| io_err("zero damaged tail", path, err))?;
        at += len as u64;
    }
    if config.sync == crate::SyncPolicy::Fdatasync {
        config
            .faults
            .check(FaultPoint::Fsync)
            .and_then(|()| file.sync_data())
            .map_err(|err| io_err("fdatasync repaired segment", path, err))?;
    }
    Ok(())
}

/// `fdatasync`s an existing segment file.
fn sync_file<E>(path: &Path, config: &WalConfig) -> Result<(), RecoverError<E>> {
    config
        .faults
        .check(FaultPoint::Fsync)
        .and_then(|()| config.fs.open(path, OpenMode::Existing)?.sync_data())
        .map_err(|err| io_err("fdatasync recovered segment", path, err))
}
