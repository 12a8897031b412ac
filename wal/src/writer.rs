//! [`WalWriter`]: the single owner of the active segment.
//!
//! The writer buffers frames ([`WalWriter::append`]), writes a whole group-commit batch
//! with one `write` ([`WalWriter::flush`]) and makes it durable with one `fdatasync`
//! ([`WalWriter::sync`]). Segments are preallocated, rotated by size, sealed with a
//! `SegmentEnd` trailer and chained by SHA-256 (see [`crate::segment`]).
//!
//! **Encryption at rest.** With a [`WalConfig::cipher`], `append` buffers encoded records
//! instead of frames, and `flush` seals them into one `SealedBatch` frame per group commit
//! (XChaCha20-Poly1305 with a fresh random nonce, bound to the segment it lands in; see
//! [`crate::seal`]) just before the single write. [`WalWriter::set_cipher`] switches key
//! epochs between batches.
//!
//! **Fail-stop.** Any error from a write, fsync, rename or directory fsync poisons the
//! writer: that call returns the error and every later call returns
//! [`WalError::FailStopped`]. A failed fsync is never retried on the same file (the
//! kernel may already have dropped the dirty pages and cleared the error), and
//! [`WalWriter::synced_lsn`] never advances past a failed sync. To continue, reopen the
//! log with [`crate::recover`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aedb_fs::{DiskFile, FileSystem, OpenMode, RealFs, SharedFs};
use aedb_types::Lsn;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::dir::{ensure_dir, segment_path, segment_paths, sync_dir, temp_segment_path};
use crate::error::WalError;
use crate::fault::{FaultInjector, FaultPoint};
use crate::frame::{FrameKind, MAX_PAYLOAD_LEN, PayloadTooLarge, encode_frame};
use crate::seal::{
    MAX_SEALED_RECORD_LEN, NONCE_LEN, RECORD_HEADER_LEN, SEALED_OVERHEAD, SealedBatchHeader,
    WalCipher, WalKeyring, encode_record, seal_encoded, sealed_frame_len,
};
use crate::segment::{
    SEGMENT_END_LEN, SEGMENT_FORMAT_VERSION, SEGMENT_HEADER_LEN, SegmentEnd, SegmentHash,
    SegmentHeader, SegmentSeq,
};

/// Smallest accepted [`WalConfig::segment_size`].
pub const MIN_SEGMENT_SIZE: u64 = 256;
/// Default [`WalConfig::segment_size`]: 64 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 * 1024 * 1024;

/// Whether the writer issues `fdatasync`/`fsync` at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SyncPolicy {
    /// `fdatasync` on [`WalWriter::sync`] and whenever a segment is sealed; `fsync` of new
    /// segments and of the directory. Required for durability.
    #[default]
    Fdatasync,
    /// **Development only: no durability.** No fsync of any kind is issued; `sync`
    /// only records that written data was handed to the OS, so [`WalWriter::synced_lsn`]
    /// means "written", and a power loss can lose or tear any recent data.
    None,
}

/// Writer configuration.
#[derive(Clone, Debug)]
pub struct WalConfig {
    /// Target segment size in bytes (default 64 MiB). A segment is rotated when the next
    /// batch plus the trailer would not fit; a batch larger than a segment goes alone into
    /// a fresh segment, which then grows beyond this size.
    pub segment_size: u64,
    /// Preallocate each new segment to `segment_size` with `fallocate` (falling back to
    /// `set_len` where unsupported), so appends do not grow the file (default true).
    /// Preallocated ranges read as zeros, which recovery treats as end of data. Writing
    /// explicit zeros instead (to spare `fdatasync` the unwritten-extent conversion) was
    /// measured on the development VM without a conclusive gain, so it is not done; the
    /// benches are the place to revisit it.
    pub preallocate: bool,
    /// Sync policy (default [`SyncPolicy::Fdatasync`]).
    pub sync: SyncPolicy,
    /// Fault injector consulted at every write, fsync, rename and directory fsync.
    pub faults: FaultInjector,
    /// Encryption at rest (default `None`: plaintext `Commit` frames). When set, every
    /// [`WalWriter::flush`] seals the records appended since the previous flush into one
    /// [`FrameKind::SealedBatch`] frame under this key epoch (see [`crate::seal`]), and
    /// recovery can open batches of this epoch even without a [`keyring`](Self::keyring).
    /// Change it on a live writer with [`WalWriter::set_cipher`].
    pub cipher: Option<WalCipher>,
    /// Keys for recovery (default `None`): the WAL subkey of every key epoch that sealed
    /// batches still on disk. Recovery asks the keyring first and falls back to
    /// [`cipher`](Self::cipher) for the cipher's own epoch. Sealed batches with no key at
    /// all fail with [`crate::RecoverError::Encrypted`], an epoch with no key with
    /// [`crate::RecoverError::UnknownKeyEpoch`]. Plaintext `Commit` frames (written before
    /// encryption was enabled) are always replayed, with or without keys.
    pub keyring: Option<WalKeyring>,
    /// The file system every segment operation goes through (default the real disk;
    /// tests substitute a simulated one).
    pub fs: SharedFs,
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            segment_size: DEFAULT_SEGMENT_SIZE,
            preallocate: true,
            sync: SyncPolicy::Fdatasync,
            faults: FaultInjector::default(),
            cipher: None,
            keyring: None,
            fs: RealFs::shared(),
        }
    }
}

impl WalConfig {
    /// The development profile: like the default but with [`SyncPolicy::None`]
    /// (**no durability**).
    pub fn development() -> WalConfig {
        WalConfig {
            sync: SyncPolicy::None,
            ..WalConfig::default()
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), WalError> {
        if self.segment_size < MIN_SEGMENT_SIZE {
            return Err(WalError::SegmentSizeTooSmall {
                size: self.segment_size,
                min: MIN_SEGMENT_SIZE,
            });
        }
        if let (Some(cipher), Some(keyring)) = (&self.cipher, &self.keyring)
            && cipher.database() != keyring.database()
        {
            return Err(WalError::DatabaseMismatch {
                cipher: cipher.database(),
                keyring: keyring.database(),
            });
        }
        Ok(())
    }

    /// Largest record payload [`WalWriter::append`] accepts under this configuration:
    /// [`MAX_PAYLOAD_LEN`] for plaintext frames, [`MAX_SEALED_RECORD_LEN`] when batches are
    /// sealed (the sealed-batch header, tag and record header take the difference). A
    /// caller that builds records from user input checks this **before** appending, so
    /// an oversized request is refused instead of fail-stopping the writer.
    pub fn max_record_len(&self) -> usize {
        if self.cipher.is_some() {
            MAX_SEALED_RECORD_LEN
        } else {
            MAX_PAYLOAD_LEN as usize
        }
    }

    fn syncs(&self) -> bool {
        self.sync == SyncPolicy::Fdatasync
    }
}

/// A segment the writer sealed: what the manifest records and the next header chains to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedSegment {
    /// Sequence number of the sealed segment.
    pub seq: SegmentSeq,
    /// Its file.
    pub path: PathBuf,
    /// Its base LSN.
    pub base_lsn: Lsn,
    /// Its last LSN (`base_lsn - 1` if it holds no frames).
    pub last_lsn: Lsn,
    /// Number of records (LSNs) in its data frames.
    pub frames: u64,
    /// Bytes covered by the chain hash.
    pub sealed_len: u64,
    /// The chain hash: SHA-256 of bytes `[0, sealed_len)`.
    pub hash: SegmentHash,
}

/// The segment being appended to.
struct ActiveSegment {
    file: Arc<dyn DiskFile>,
    path: PathBuf,
    header: SegmentHeader,
    /// Write position: end of the last written frame.
    offset: u64,
    frames: u64,
    /// Last LSN written into this segment (`base_lsn - 1` if none).
    last_lsn: Lsn,
    /// SHA-256 over `[0, offset)`.
    hasher: Sha256,
}

/// Records buffered in sealed mode, with the cipher they were appended under.
#[derive(Debug)]
struct PendingSeal {
    cipher: WalCipher,
    /// How `WalWriter::plain` splits into frames (one unless a frame would overflow).
    spans: Vec<PlainSpan>,
}

/// A run of buffered records (in sealed mode) that becomes one `SealedBatch` frame.
#[derive(Clone, Copy, Debug)]
struct PlainSpan {
    /// Offset of the span's first record in `WalWriter::plain`.
    start: usize,
    /// LSN of the first record.
    first_lsn: Lsn,
    /// Number of records.
    count: u32,
}

/// Where [`WalWriter::resume`] continues, as determined by recovery.
pub(crate) enum ResumePoint {
    /// Continue appending inside an unsealed segment at `data_end`.
    Open {
        path: PathBuf,
        header: SegmentHeader,
        data_end: u64,
        frames: u64,
        last_lsn: Lsn,
        hasher: Sha256,
    },
    /// The last segment is sealed: start the next one.
    Sealed(SealedSegment),
}

/// The WAL writer: single owner of the active segment file.
///
/// Not shared between threads (`&mut self` everywhere); the actors crate runs it on a
/// dedicated thread. Dropping the writer neither flushes nor syncs: buffered frames are
/// discarded, written-but-unsynced frames may or may not survive a crash.
pub struct WalWriter {
    dir: PathBuf,
    config: WalConfig,
    active: ActiveSegment,
    /// Encoded frames of the next write: plaintext frames buffered by `append`, or (with
    /// a cipher) the sealed frames `flush` builds just before writing.
    batch: Vec<u8>,
    /// Sealed mode: encoded records appended since the last flush (zeroized when sealed).
    plain: Vec<u8>,
    /// Sealed mode: the cipher and frame boundaries for `plain`; `None` when empty.
    pending: Option<PendingSeal>,
    /// Largest sealed-batch payload (`MAX_PAYLOAD_LEN`; lowered by unit tests).
    seal_limit: usize,
    /// Last LSN accepted by `append` (buffered or written).
    last_lsn: Lsn,
    /// Last LSN handed to the OS by `flush`.
    written_lsn: Lsn,
    /// Last LSN covered by a successful sync.
    synced_lsn: Lsn,
    written_bytes_total: u64,
    fsync_count: u64,
    failed: bool,
    sealed: Vec<SealedSegment>,
}

impl fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalWriter")
            .field("dir", &self.dir)
            .field("segment", &self.active.path)
            .field("offset", &self.active.offset)
            .field("last_lsn", &self.last_lsn)
            .field("written_lsn", &self.written_lsn)
            .field("synced_lsn", &self.synced_lsn)
            .field("buffered_bytes", &self.buffered_bytes())
            .field("cipher", &self.config.cipher)
            .field("failed", &self.failed)
            .finish()
    }
}

impl WalWriter {
    /// Creates a fresh log in `dir` (created if missing) whose first LSN is 1.
    ///
    /// Fails with [`WalError::AlreadyExists`] if `dir` already holds segments.
    pub fn create(dir: &Path, config: WalConfig) -> Result<WalWriter, WalError> {
        WalWriter::create_starting_at(dir, config, Lsn::new(1))
    }

    /// Creates a fresh log whose first frame will carry `first_lsn` (for example the LSN
    /// after a restored checkpoint). `first_lsn` must be at least 1.
    pub fn create_starting_at(
        dir: &Path,
        config: WalConfig,
        first_lsn: Lsn,
    ) -> Result<WalWriter, WalError> {
        WalWriter::create_fresh(dir, config, SegmentSeq::FIRST, first_lsn)
    }

    /// Creates a fresh log whose first segment is number `seq` (recovery restarting a
    /// log whose only segment never got its header to disk keeps that segment's number,
    /// so the manifest's record of earlier, retired segments stays consistent).
    pub(crate) fn create_fresh(
        dir: &Path,
        config: WalConfig,
        seq: SegmentSeq,
        first_lsn: Lsn,
    ) -> Result<WalWriter, WalError> {
        config.validate()?;
        if first_lsn == Lsn::ZERO {
            return Err(WalError::LsnOutOfOrder {
                expected: Lsn::new(1),
                got: first_lsn,
            });
        }
        ensure_dir(&*config.fs, dir, &config.faults, config.syncs())?;
        if !segment_paths(&*config.fs, dir)?.is_empty() {
            return Err(WalError::AlreadyExists {
                dir: dir.to_path_buf(),
            });
        }
        let active = create_segment(dir, seq, first_lsn, SegmentHash::ZERO, &config)?;
        let before = Lsn::new(first_lsn.get() - 1);
        let mut writer = WalWriter::with_active(dir, config, active, before);
        writer.count_segment_creation();
        Ok(writer)
    }

    /// Reopens the log at the point recovery determined. Everything up to the recovered
    /// last LSN has been synced by recovery.
    pub(crate) fn resume(
        dir: &Path,
        config: WalConfig,
        point: ResumePoint,
    ) -> Result<WalWriter, WalError> {
        config.validate()?;
        match point {
            ResumePoint::Open {
                path,
                header,
                data_end,
                frames,
                last_lsn,
                hasher,
            } => {
                let file = config
                    .fs
                    .open(&path, OpenMode::Existing)
                    .map_err(|err| WalError::io("open segment", &path, err))?;
                if config.preallocate {
                    let len = file
                        .len()
                        .map_err(|err| WalError::io("stat segment", &path, err))?;
                    if len < config.segment_size {
                        file.allocate(config.segment_size)
                            .map_err(|err| WalError::io("preallocate segment", &path, err))?;
                    }
                }
                let active = ActiveSegment {
                    file,
                    path,
                    header,
                    offset: data_end,
                    frames,
                    last_lsn,
                    hasher,
                };
                Ok(WalWriter::with_active(dir, config, active, last_lsn))
            }
            ResumePoint::Sealed(sealed) => {
                let seq = next_seq(sealed.seq)?;
                let active =
                    create_segment(dir, seq, sealed.last_lsn.next(), sealed.hash, &config)?;
                let mut writer = WalWriter::with_active(dir, config, active, sealed.last_lsn);
                writer.count_segment_creation();
                // The manifest may not have recorded it before the crash; report it again.
                writer.sealed.push(sealed);
                Ok(writer)
            }
        }
    }

    fn with_active(
        dir: &Path,
        config: WalConfig,
        active: ActiveSegment,
        last_lsn: Lsn,
    ) -> WalWriter {
        WalWriter {
            dir: dir.to_path_buf(),
            config,
            active,
            batch: Vec::new(),
            plain: Vec::new(),
            pending: None,
            seal_limit: MAX_PAYLOAD_LEN as usize,
            last_lsn,
            written_lsn: last_lsn,
            synced_lsn: last_lsn,
            written_bytes_total: 0,
            fsync_count: 0,
            failed: false,
            sealed: Vec::new(),
        }
    }

    fn count_segment_creation(&mut self) {
        self.written_bytes_total += SEGMENT_HEADER_LEN as u64;
        if self.config.syncs() {
            self.fsync_count += 2; // the new file and the directory
        }
    }

    /// Buffers one frame for the next [`flush`](Self::flush). `lsn` must be exactly
    /// `last_lsn() + 1` (LSNs are dense); `kind` must be a user kind (`Commit`).
    ///
    /// With a [`WalConfig::cipher`], the record is buffered for the next sealed batch and
    /// its payload may be at most [`MAX_SEALED_RECORD_LEN`] bytes.
    pub fn append(&mut self, lsn: Lsn, kind: FrameKind, payload: &[u8]) -> Result<(), WalError> {
        self.ensure_live()?;
        if !kind.is_user_kind() {
            return Err(WalError::ReservedFrameKind(kind));
        }
        let expected = self.last_lsn.get().checked_add(1);
        if expected != Some(lsn.get()) {
            return Err(WalError::LsnOutOfOrder {
                expected: Lsn::new(expected.unwrap_or(u64::MAX)),
                got: lsn,
            });
        }
        if let Some(cipher) = &self.config.cipher {
            let cipher = cipher.clone();
            self.buffer_record(cipher, lsn, payload)?;
        } else {
            encode_frame(lsn, kind, payload, &mut self.batch)
                .map_err(|PayloadTooLarge { len, max }| WalError::PayloadTooLarge { len, max })?;
        }
        self.last_lsn = lsn;
        Ok(())
    }

    /// Sealed mode: appends a record to the plaintext of the current span, starting a new
    /// span (frame) when the record would push the sealed payload over the limit.
    fn buffer_record(
        &mut self,
        cipher: WalCipher,
        lsn: Lsn,
        payload: &[u8],
    ) -> Result<(), WalError> {
        let max = MAX_SEALED_RECORD_LEN.min(
            self.seal_limit
                .saturating_sub(SEALED_OVERHEAD + RECORD_HEADER_LEN),
        );
        if payload.len() > max {
            return Err(WalError::PayloadTooLarge {
                len: payload.len(),
                max: max as u32,
            });
        }
        let record_len = RECORD_HEADER_LEN + payload.len();
        let plain_len = self.plain.len();
        let seal_limit = self.seal_limit;
        let pending = self.pending.get_or_insert_with(|| PendingSeal {
            cipher,
            spans: Vec::new(),
        });
        match pending.spans.last_mut() {
            Some(span)
                if span.count < u32::MAX
                    && plain_len - span.start + record_len + SEALED_OVERHEAD <= seal_limit =>
            {
                span.count += 1;
            }
            _ => pending.spans.push(PlainSpan {
                start: plain_len,
                first_lsn: lsn,
                count: 1,
            }),
        }
        encode_record(payload, &mut self.plain);
        Ok(())
    }

    /// Sealed mode: appends one sealed frame per pending span to `self.batch`, bound to
    /// the active segment, using the nonces drawn in advance (one per span). Appends
    /// nothing on error. `flush` zeroizes the plaintext after the write.
    fn seal_pending(
        &mut self,
        pending: &PendingSeal,
        nonces: &[[u8; NONCE_LEN]],
    ) -> Result<(), WalError> {
        let aead = pending.cipher.aead();
        let database = pending.cipher.database();
        let seq = self.active.header.seq;
        let before = self.batch.len();
        self.batch.reserve(sealed_batch_len(pending, &self.plain));
        for (index, (span, nonce)) in pending.spans.iter().zip(nonces).enumerate() {
            let end = pending
                .spans
                .get(index + 1)
                .map_or(self.plain.len(), |next| next.start);
            let header = SealedBatchHeader {
                epoch: pending.cipher.epoch(),
                first_lsn: span.first_lsn,
                count: span.count,
                nonce: *nonce,
            };
            let sealed = seal_encoded(
                &aead,
                &database,
                seq,
                &header,
                &self.plain[span.start..end],
                &mut self.batch,
            );
            if let Err(err) = sealed {
                self.batch.truncate(before);
                return Err(err.into());
            }
        }
        Ok(())
    }

    /// Writes every buffered frame with one `write` at the end of the active segment,
    /// rotating first if the batch (plus the trailer) would not fit. Does not sync.
    ///
    /// With a [`WalConfig::cipher`], everything buffered since the last flush is sealed
    /// into one [`FrameKind::SealedBatch`] frame (split into several only if it would
    /// exceed [`MAX_PAYLOAD_LEN`]), bound to the segment it is written into. A nonce
    /// failure ([`WalError::Nonce`]) writes nothing and leaves the batch buffered.
    pub fn flush(&mut self) -> Result<(), WalError> {
        self.ensure_live()?;
        if self.batch.is_empty() && self.pending.is_none() {
            return Ok(());
        }
        let mut nonces = Vec::new();
        if let Some(pending) = &self.pending {
            for _ in &pending.spans {
                let mut nonce = [0u8; NONCE_LEN];
                pending
                    .cipher
                    .nonce_source()
                    .fill(&mut nonce)
                    .map_err(|source| WalError::Nonce { source })?;
                nonces.push(nonce);
            }
        }
        let sealed_len = self
            .pending
            .as_ref()
            .map_or(0, |pending| sealed_batch_len(pending, &self.plain));
        let len = (self.batch.len() + sealed_len) as u64;
        let needed = self
            .active
            .offset
            .saturating_add(len)
            .saturating_add(SEGMENT_END_LEN as u64);
        if self.active.frames > 0 && needed > self.config.segment_size {
            self.rotate()?;
        }
        // After any rotation: batches are bound to the segment they are written into.
        if let Some(pending) = self.pending.take() {
            let sealed = self.seal_pending(&pending, &nonces);
            self.pending = Some(pending);
            sealed?;
        }
        let len = self.batch.len() as u64; // equals the estimate above
        let offset = self.active.offset;
        let result = self
            .config
            .faults
            .write_with(FaultPoint::Write, &self.batch, |part| {
                self.active.file.write_all_at(part, offset)
            });
        if let Err(err) = result {
            return Err(self.fail("write batch", err));
        }
        let active = &mut self.active;
        active.hasher.update(&self.batch);
        active.offset += len;
        // Records in the batch = LSNs since the last write (LSNs are dense).
        active.frames += self.last_lsn.get() - self.written_lsn.get();
        active.last_lsn = self.last_lsn;
        self.written_lsn = self.last_lsn;
        self.written_bytes_total += len;
        self.batch.clear();
        if self.pending.take().is_some() {
            // Only the used part: the buffer keeps its capacity for the next batch.
            self.plain.as_mut_slice().zeroize();
            self.plain.clear();
        }
        Ok(())
    }

    /// Changes the cipher for later batches, for example to a new key epoch after key
    /// rotation, or `None` to stop sealing. Flushes first, so records already appended
    /// are sealed under the old cipher (if any). Recovery needs the keys of every epoch
    /// still on disk: give them to [`WalConfig::keyring`].
    pub fn set_cipher(&mut self, cipher: Option<WalCipher>) -> Result<(), WalError> {
        self.flush()?;
        let mut config = self.config.clone();
        config.cipher = cipher;
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// Makes everything written so far durable with one `fdatasync` of the active segment
    /// (earlier segments were synced when sealed). A no-op when nothing new was written.
    /// Buffered, unflushed frames are not covered.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.ensure_live()?;
        if self.written_lsn == self.synced_lsn {
            return Ok(());
        }
        self.sync_active("fdatasync")
    }

    /// One (fault-checked) `fdatasync` of the active segment, unless syncing is off;
    /// everything written so far is then synced. Poisons the writer on failure.
    fn sync_active(&mut self, op: &'static str) -> Result<(), WalError> {
        if self.config.syncs() {
            let result = self
                .config
                .faults
                .check(FaultPoint::Fsync)
                .and_then(|()| self.active.file.sync_data());
            if let Err(err) = result {
                return Err(self.fail(op, err));
            }
            self.fsync_count += 1;
        }
        self.synced_lsn = self.written_lsn;
        Ok(())
    }

    /// [`flush`](Self::flush) then [`sync`](Self::sync): one group commit. Returns the
    /// durable LSN.
    pub fn flush_and_sync(&mut self) -> Result<Lsn, WalError> {
        self.flush()?;
        self.sync()?;
        Ok(self.synced_lsn)
    }

    /// Seals the active segment and starts the next one, even if not full.
    pub fn rotate(&mut self) -> Result<(), WalError> {
        self.ensure_live()?;
        let sealed = self.seal_active()?;
        let seq = next_seq(sealed.seq).inspect_err(|_| self.failed = true)?;
        let created = create_segment(
            &self.dir,
            seq,
            sealed.last_lsn.next(),
            sealed.hash,
            &self.config,
        );
        self.active = created.inspect_err(|_| self.failed = true)?;
        self.count_segment_creation();
        self.sealed.push(sealed);
        Ok(())
    }

    /// Writes the `SegmentEnd` trailer, syncs, and returns the sealed segment's identity.
    fn seal_active(&mut self) -> Result<SealedSegment, WalError> {
        let trailer = SegmentEnd {
            data_end: self.active.offset,
            frame_count: self.active.frames,
        };
        let mut bytes = Vec::with_capacity(SEGMENT_END_LEN);
        trailer.encode_frame(self.active.last_lsn, &mut bytes);
        let offset = self.active.offset;
        let result = self
            .config
            .faults
            .write_with(FaultPoint::Write, &bytes, |part| {
                self.active.file.write_all_at(part, offset)
            });
        if let Err(err) = result {
            return Err(self.fail("write segment trailer", err));
        }
        self.active.offset += bytes.len() as u64;
        self.active.hasher.update(&bytes);
        self.written_bytes_total += bytes.len() as u64;
        self.sync_active("fdatasync sealed segment")?;
        let active = &self.active;
        Ok(SealedSegment {
            seq: active.header.seq,
            path: active.path.clone(),
            base_lsn: active.header.base_lsn,
            last_lsn: active.last_lsn,
            frames: active.frames,
            sealed_len: trailer.sealed_len(),
            hash: SegmentHash(active.hasher.clone().finalize().into()),
        })
    }

    /// Removes sealed segments all of whose frames have LSN `<= through` (e.g. covered by
    /// a checkpoint recorded in the manifest), oldest first, never the active segment, and
    /// fsyncs the directory. Returns the removed paths. Does not poison the writer.
    pub fn retire_segments_through(&mut self, through: Lsn) -> Result<Vec<PathBuf>, WalError> {
        self.ensure_live()?;
        let segments = segment_paths(&*self.config.fs, &self.dir)?;
        let mut removed = Vec::new();
        for pair in segments.windows(2) {
            let (seq, path) = &pair[0];
            let (next_seq, next_path) = &pair[1];
            if *seq >= self.active.header.seq {
                break;
            }
            let next_base = if *next_seq == self.active.header.seq {
                self.active.header.base_lsn
            } else {
                read_segment_header(&*self.config.fs, next_path)?.base_lsn
            };
            // base_lsn >= 1 is guaranteed by the header decoder.
            if next_base.get() - 1 > through.get() {
                break;
            }
            self.config
                .fs
                .remove_file(path)
                .map_err(|err| WalError::io("remove retired segment", path, err))?;
            removed.push(path.clone());
        }
        if !removed.is_empty() && self.config.syncs() {
            sync_dir(&*self.config.fs, &self.dir, &self.config.faults)?;
            self.fsync_count += 1;
        }
        Ok(removed)
    }

    /// The lowest LSN the log on disk may still hold: the base LSN of the oldest
    /// remaining segment.
    pub fn oldest_retained_lsn(&self) -> Result<Lsn, WalError> {
        match segment_paths(&*self.config.fs, &self.dir)?.first() {
            Some((seq, path)) if *seq != self.active.header.seq => {
                Ok(read_segment_header(&*self.config.fs, path)?.base_lsn)
            }
            _ => Ok(self.active.header.base_lsn),
        }
    }

    /// Takes the list of segments sealed since the last call (for the manifest). After
    /// recovery it may repeat a segment sealed just before a crash.
    pub fn take_sealed_segments(&mut self) -> Vec<SealedSegment> {
        std::mem::take(&mut self.sealed)
    }

    fn ensure_live(&self) -> Result<(), WalError> {
        if self.failed {
            Err(WalError::FailStopped)
        } else {
            Ok(())
        }
    }

    /// Poisons the writer and builds the error for the failed operation.
    fn fail(&mut self, op: &'static str, err: io::Error) -> WalError {
        self.failed = true;
        WalError::io(op, &self.active.path, err)
    }

    /// Last LSN accepted by `append` (buffered or written).
    pub fn last_lsn(&self) -> Lsn {
        self.last_lsn
    }

    /// Last LSN written to the OS by `flush`.
    pub fn written_lsn(&self) -> Lsn {
        self.written_lsn
    }

    /// Highest LSN covered by a successful sync (durable unless [`SyncPolicy::None`]).
    pub fn synced_lsn(&self) -> Lsn {
        self.synced_lsn
    }

    /// Bytes written to segment files by this writer (headers, frames and trailers).
    pub fn written_bytes_total(&self) -> u64 {
        self.written_bytes_total
    }

    /// Number of fsync-family calls issued by this writer (file `fdatasync`/`fsync` and
    /// directory `fsync`); 0 under [`SyncPolicy::None`].
    pub fn fsync_count(&self) -> u64 {
        self.fsync_count
    }

    /// Frames written to the active segment.
    pub fn active_frames(&self) -> u64 {
        self.active.frames
    }

    /// Sequence number of the active segment.
    pub fn segment_seq(&self) -> SegmentSeq {
        self.active.header.seq
    }

    /// Path of the active segment.
    pub fn segment_path(&self) -> &Path {
        &self.active.path
    }

    /// Bytes buffered by `append` and not yet flushed: encoded frames, or with a cipher
    /// the encoded records awaiting sealing (5 bytes of overhead each).
    pub fn buffered_bytes(&self) -> usize {
        self.batch.len() + self.plain.len()
    }

    /// Whether an earlier I/O error fail-stopped this writer.
    pub fn is_fail_stopped(&self) -> bool {
        self.failed
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration in use.
    pub fn config(&self) -> &WalConfig {
        &self.config
    }
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        // Unflushed records of a sealed log are plaintext user data: do not leave them
        // in freed memory.
        self.plain.zeroize();
    }
}

/// Bytes the pending spans occupy once sealed.
fn sealed_batch_len(pending: &PendingSeal, plain: &[u8]) -> usize {
    sealed_frame_len(0) * pending.spans.len() + plain.len()
}

fn next_seq(seq: SegmentSeq) -> Result<SegmentSeq, WalError> {
    seq.get()
        .checked_add(1)
        .map(SegmentSeq::new)
        .ok_or(WalError::SequenceExhausted(seq))
}

/// Reads and decodes the header of the segment at `path`.
pub fn read_segment_header(fs: &dyn FileSystem, path: &Path) -> Result<SegmentHeader, WalError> {
    let file = fs
        .open(path, OpenMode::Existing)
        .map_err(|err| WalError::io("open segment", path, err))?;
    let len = file
        .len()
        .map_err(|err| WalError::io("stat segment", path, err))?;
    let mut buf = [0u8; SEGMENT_HEADER_LEN];
    let filled = buf.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    file.read_exact_at(&mut buf[..filled], 0)
        .map_err(|err| WalError::io("read segment header", path, err))?;
    SegmentHeader::decode(&buf[..filled]).map_err(|source| WalError::BadHeader {
        path: path.to_path_buf(),
        source,
    })
}

/// Creates segment `seq` atomically: write header into `<seq>.wal.tmp`, preallocate,
/// fsync, rename to `<seq>.wal`, fsync the directory.
fn create_segment(
    dir: &Path,
    seq: SegmentSeq,
    base_lsn: Lsn,
    prev_hash: SegmentHash,
    config: &WalConfig,
) -> Result<ActiveSegment, WalError> {
    let header = SegmentHeader {
        version: SEGMENT_FORMAT_VERSION,
        seq,
        base_lsn,
        prev_hash,
    };
    let tmp = temp_segment_path(dir, seq);
    let path = segment_path(dir, seq);
    let file = config
        .fs
        .open(&tmp, OpenMode::Truncate)
        .map_err(|err| WalError::io("create segment", &tmp, err))?;
    if config.preallocate {
        file.allocate(config.segment_size)
            .map_err(|err| WalError::io("preallocate segment", &tmp, err))?;
    }
    let bytes = header.encode();
    config
        .faults
        .write_with(FaultPoint::Write, &bytes, |part| file.write_all_at(part, 0))
        .map_err(|err| WalError::io("write segment header", &tmp, err))?;
    if config.syncs() {
        config
            .faults
            .check(FaultPoint::Fsync)
            .and_then(|()| file.sync_all())
            .map_err(|err| WalError::io("fsync new segment", &tmp, err))?;
    }
    config
        .faults
        .check(FaultPoint::Rename)
        .and_then(|()| config.fs.rename(&tmp, &path))
        .map_err(|err| WalError::io("rename new segment into place", &tmp, err))?;
    if config.syncs() {
        sync_dir(&*config.fs, dir, &config.faults)?;
    }
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    Ok(ActiveSegment {
        file,
        path,
        header,
        offset: SEGMENT_HEADER_LEN as u64,
        frames: 0,
        last_lsn: Lsn::new(base_lsn.get() - 1),
        hasher,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode_frame;
    use crate::seal::{SealedBatchHeader, WalCipher, WalKeyring};
    use aedb_keys::SecretKey;
    use aedb_types::{DatabaseId, KeyEpoch};
    use std::convert::Infallible;

    #[test]
    fn a_batch_over_the_frame_limit_splits_into_several_sealed_frames() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("wal");
        let db = DatabaseId::from_bytes([3; 16]);
        let config = WalConfig {
            segment_size: 1 << 16,
            sync: SyncPolicy::None,
            cipher: Some(WalCipher::new(SecretKey::new([7; 32]), KeyEpoch::FIRST, db)),
            keyring: Some(WalKeyring::from_keys(db, [])),
            ..WalConfig::default()
        };
        let mut writer = WalWriter::create(&dir, config.clone()).expect("create");
        writer.seal_limit = 250; // room for 3 records of 50 (+5) bytes + 58 overhead per frame
        for lsn in 1..=10u64 {
            writer
                .append(Lsn::new(lsn), FrameKind::Commit, &[lsn as u8; 50])
                .expect("append");
        }
        assert_eq!(writer.pending.as_ref().map(|p| p.spans.len()), Some(4));
        writer.flush_and_sync().expect("one write");
        assert_eq!(writer.buffered_bytes(), 0);
        let path = writer.segment_path().to_path_buf();
        drop(writer);

        let bytes = std::fs::read(&path).expect("read");
        let mut offset = crate::segment::SEGMENT_HEADER_LEN;
        let mut covered = Vec::new();
        while let Ok(frame) = decode_frame(&bytes[offset..]) {
            assert_eq!(frame.kind, FrameKind::SealedBatch);
            assert!(frame.payload.len() <= 250);
            let header =
                SealedBatchHeader::decode_for_frame(frame.payload, frame.lsn).expect("header");
            covered.push((header.first_lsn.get(), frame.lsn.get()));
            offset += frame.encoded_len;
        }
        assert_eq!(covered, vec![(1, 3), (4, 6), (7, 9), (10, 10)]);

        let mut got = Vec::new();
        crate::recover(&dir, &config, crate::RecoveryMode::Strict, |frame| {
            got.push((frame.lsn.get(), frame.payload.to_vec()));
            Ok::<(), Infallible>(())
        })
        .expect("recover");
        let expected: Vec<(u64, Vec<u8>)> = (1..=10u64).map(|l| (l, vec![l as u8; 50])).collect();
        assert_eq!(got, expected);
    }
}
