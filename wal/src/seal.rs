//! Sealed batches: WAL encryption at rest, one XChaCha20-Poly1305 box per group commit.
//!
//! When [`crate::WalConfig::cipher`] is set, [`crate::WalWriter::flush`] packs every record
//! appended since the previous flush into **one** [`FrameKind::SealedBatch`] frame (more
//! than one only if the batch would exceed [`MAX_PAYLOAD_LEN`]). The frame's LSN is the
//! batch's *last* LSN; the frame covers `first_lsn ..= lsn`. Layout of the frame payload
//! (little-endian; see `docs/FORMAT.md`, "Sealed batch"):
//!
//! ```text
//! offset  size  field
//!      0     1  version     u8, 1
//!      1     1  algorithm   u8, 1 = XChaCha20-Poly1305
//!      2     4  epoch       u32 key epoch of the WAL subkey that sealed the batch
//!      6     8  first_lsn   u64 LSN of the first record (>= 1)
//!     14     4  count       u32 number of records (>= 1); frame lsn = first_lsn + count - 1
//!     18    24  nonce       random XChaCha20 nonce
//!     42     m  ciphertext  XChaCha20 encryption of the records (m = plaintext length)
//!   42+m    16  tag         Poly1305 tag
//!
//! plaintext = record*, record = kind u8 (1 = Commit) | len u32 | payload (len bytes)
//! AAD       = "aedb-wal sealed-batch v1\0" | database id (16) | segment seq u64
//!             | outer frame header (16 bytes: payload_len, lsn, kind, flags, reserved)
//!             | payload bytes [0, 42)
//! ```
//!
//! The payload header is plaintext so that the keyless scanner ([`crate::scan_segment`],
//! [`crate::verify`]) can check LSN density without a key; it is authenticated as AAD
//! together with the outer frame header, the segment sequence number and the database id,
//! so a batch cannot be altered, renumbered, moved to another segment or another database
//! without the tag failing. The frame CRC is computed over the ciphertext and still
//! distinguishes torn writes from corruption before any key is involved.
//!
//! Pure functions for tools and fuzzing: [`seal_batch`], [`open_sealed_batch`],
//! [`SealedBatchHeader::decode_for_frame`]. Decoders check every length before
//! allocating and never panic.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;

use aedb_keys::XChaCha20Poly1305;
use aedb_keys::{EpochKey, SecretKey};
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use zeroize::Zeroize;

use crate::frame::{
    DecodedFrame, FRAME_HEADER_LEN, FRAME_OVERHEAD, FrameKind, MAX_PAYLOAD_LEN, encode_header,
    read_u32, read_u64,
};
use crate::segment::SegmentSeq;

/// The sealed-batch payload version this crate writes (and the newest it reads).
pub const SEALED_BATCH_VERSION: u8 = 1;
/// Algorithm byte for XChaCha20-Poly1305 (the only one in version 1).
pub const ALGORITHM_XCHACHA20_POLY1305: u8 = 1;
/// Length of an XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;
/// Length of a Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Length of the plaintext payload header that precedes the ciphertext.
pub const SEALED_HEADER_LEN: usize = 42;
/// Payload bytes a sealed batch adds to its records: header and tag.
pub const SEALED_OVERHEAD: usize = SEALED_HEADER_LEN + TAG_LEN;
/// Bytes each record adds inside the plaintext: kind (1) and length (4).
pub const RECORD_HEADER_LEN: usize = 5;
/// Record kind byte of a commit record inside a sealed batch.
pub const RECORD_KIND_COMMIT: u8 = 1;
/// Largest record payload a sealed batch can carry (one record alone in a maximal frame).
pub const MAX_SEALED_RECORD_LEN: usize =
    MAX_PAYLOAD_LEN as usize - SEALED_OVERHEAD - RECORD_HEADER_LEN;

/// Domain separation for the AAD (distinct from the checkpoint's domains).
const AAD_DOMAIN: &[u8; 25] = b"aedb-wal sealed-batch v1\0";
const AAD_LEN: usize = AAD_DOMAIN.len() + 16 + 8 + FRAME_HEADER_LEN + SEALED_HEADER_LEN;

/// Why a sealed batch could not be sealed, parsed or opened. Never contains key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The payload is shorter than the sealed-batch header and tag.
    #[error("sealed batch truncated: need at least {needed} payload bytes, found {available}")]
    Truncated {
        /// Minimum payload length.
        needed: usize,
        /// Payload length found.
        available: usize,
    },
    /// The payload (or the payload sealing would produce) exceeds the frame limit.
    #[error("sealed batch payload of {len} bytes exceeds the {max}-byte frame maximum")]
    TooLarge {
        /// Payload length.
        len: usize,
        /// The maximum ([`MAX_PAYLOAD_LEN`]).
        max: u32,
    },
    /// The payload declares a version this crate does not know (a newer writer).
    #[error("unsupported sealed batch version {version} (written by a newer aedb version?)")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The payload declares an unknown algorithm.
    #[error("unsupported sealed batch algorithm {algorithm}")]
    UnsupportedAlgorithm {
        /// The algorithm byte found.
        algorithm: u8,
    },
    /// The header declares zero records (sealing an empty batch is refused, too).
    #[error("sealed batch declares no records")]
    EmptyBatch,
    /// `first_lsn` and `count` do not end at the frame's LSN (or are out of range).
    #[error(
        "sealed batch covers LSNs from {first_lsn} ({count} records) but the frame carries LSN {frame_lsn}"
    )]
    LsnMismatch {
        /// `first_lsn` from the header.
        first_lsn: Lsn,
        /// `count` from the header.
        count: u32,
        /// The outer frame's LSN (the batch's last LSN).
        frame_lsn: Lsn,
    },
    /// The header declares more records than the ciphertext can hold.
    #[error("sealed batch declares {count} records but has only {plaintext_len} plaintext bytes")]
    CountExceedsLength {
        /// `count` from the header.
        count: u32,
        /// Ciphertext (= plaintext) length.
        plaintext_len: usize,
    },
    /// The Poly1305 tag did not verify: the batch (or any AAD input: frame header, segment
    /// number, database id) was altered, or the key for this epoch is wrong. Nothing was
    /// decrypted.
    #[error(
        "sealed batch failed authentication under {epoch}: the data was tampered with, or the key is wrong"
    )]
    Authentication {
        /// The epoch named in the batch header.
        epoch: KeyEpoch,
    },
    /// The batch authenticated but its records do not parse (a writer bug, never damage).
    #[error("authenticated sealed batch has malformed record {index}: {reason}")]
    BadRecords {
        /// Index of the offending record in the batch.
        index: u32,
        /// What is wrong.
        reason: &'static str,
    },
}

/// The plaintext header of a sealed-batch payload (version 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedBatchHeader {
    /// Key epoch of the WAL subkey that sealed the batch.
    pub epoch: KeyEpoch,
    /// LSN of the first record.
    pub first_lsn: Lsn,
    /// Number of records (at least 1).
    pub count: u32,
    /// The XChaCha20 nonce (random for every batch).
    pub nonce: [u8; NONCE_LEN],
}

impl SealedBatchHeader {
    /// The LSN of the batch's last record (the outer frame's LSN), or `None` if
    /// `first_lsn`/`count` are out of range (zero LSN, zero count, overflow).
    pub fn last_lsn(&self) -> Option<Lsn> {
        if self.first_lsn == Lsn::ZERO || self.count == 0 {
            return None;
        }
        self.first_lsn
            .get()
            .checked_add(u64::from(self.count) - 1)
            .map(Lsn::new)
    }

    /// The 42 header bytes (version 1).
    pub fn encode(&self) -> [u8; SEALED_HEADER_LEN] {
        let mut out = [0u8; SEALED_HEADER_LEN];
        out[0] = SEALED_BATCH_VERSION;
        out[1] = ALGORITHM_XCHACHA20_POLY1305;
        out[2..6].copy_from_slice(&self.epoch.get().to_le_bytes());
        out[6..14].copy_from_slice(&self.first_lsn.get().to_le_bytes());
        out[14..18].copy_from_slice(&self.count.to_le_bytes());
        out[18..42].copy_from_slice(&self.nonce);
        out
    }

    /// Parses and checks the header of the sealed-batch `payload` of a frame carrying
    /// `frame_lsn`, without a key. Checks, in order: length (header + tag), version,
    /// algorithm, count ≥ 1, `first_lsn + count - 1 == frame_lsn` (with `first_lsn ≥ 1`),
    /// and that `count` records fit in the ciphertext. Never panics or allocates.
    pub fn decode_for_frame(
        payload: &[u8],
        frame_lsn: Lsn,
    ) -> Result<SealedBatchHeader, SealError> {
        if payload.len() > MAX_PAYLOAD_LEN as usize {
            return Err(SealError::TooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        let Some(bytes) = payload.get(..SEALED_HEADER_LEN) else {
            return Err(SealError::Truncated {
                needed: SEALED_OVERHEAD,
                available: payload.len(),
            });
        };
        if payload.len() < SEALED_OVERHEAD {
            return Err(SealError::Truncated {
                needed: SEALED_OVERHEAD,
                available: payload.len(),
            });
        }
        if bytes[0] != SEALED_BATCH_VERSION {
            return Err(SealError::UnsupportedVersion { version: bytes[0] });
        }
        if bytes[1] != ALGORITHM_XCHACHA20_POLY1305 {
            return Err(SealError::UnsupportedAlgorithm {
                algorithm: bytes[1],
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[18..42]);
        let header = SealedBatchHeader {
            epoch: KeyEpoch::new(read_u32(&bytes[2..6])),
            first_lsn: Lsn::new(read_u64(&bytes[6..14])),
            count: read_u32(&bytes[14..18]),
            nonce,
        };
        if header.count == 0 {
            return Err(SealError::EmptyBatch);
        }
        if header.last_lsn() != Some(frame_lsn) {
            return Err(SealError::LsnMismatch {
                first_lsn: header.first_lsn,
                count: header.count,
                frame_lsn,
            });
        }
        let plaintext_len = payload.len() - SEALED_OVERHEAD;
        if (header.count as usize).saturating_mul(RECORD_HEADER_LEN) > plaintext_len {
            return Err(SealError::CountExceedsLength {
                count: header.count,
                plaintext_len,
            });
        }
        Ok(header)
    }
}

/// Builds the AEAD for `key`. The cipher's copy of the key is zeroized when it drops.
pub(crate) fn aead_for(key: &SecretKey) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key)
}

/// The associated data of a batch (see the module docs).
fn batch_aad(
    database: &DatabaseId,
    seq: SegmentSeq,
    frame_header: &[u8; FRAME_HEADER_LEN],
    header: &[u8; SEALED_HEADER_LEN],
) -> [u8; AAD_LEN] {
    let mut aad = [0u8; AAD_LEN];
    let mut at = 0;
    for part in [
        &AAD_DOMAIN[..],
        &database.as_bytes()[..],
        &seq.get().to_le_bytes()[..],
        &frame_header[..],
        &header[..],
    ] {
        aad[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    aad
}

/// Appends one record (kind, length, payload) to a batch's plaintext. The caller checks
/// `payload.len() <= MAX_SEALED_RECORD_LEN`.
pub(crate) fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    out.push(RECORD_KIND_COMMIT);
    // Cannot truncate: the caller bounds the length far below u32::MAX.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Encoded frame length of a sealed batch with `plaintext_len` bytes of records.
pub(crate) const fn sealed_frame_len(plaintext_len: usize) -> usize {
    FRAME_OVERHEAD + SEALED_OVERHEAD + plaintext_len
}

/// Appends a complete `SealedBatch` frame to `out`: seals `plaintext` (already encoded
/// records, `header.count` of them) under `aead`, bound to `database` and `seq`. Appends
/// nothing on error. The caller sizes the batch; the plaintext is copied into `out` and
/// encrypted in place there (`out` has room reserved first, so it never reallocates
/// while holding plaintext).
pub(crate) fn seal_encoded(
    aead: &XChaCha20Poly1305,
    database: &DatabaseId,
    seq: SegmentSeq,
    header: &SealedBatchHeader,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, SealError> {
    #[cfg(feature = "observability")]
    let _span = tracing::debug_span!(
        "aedb.wal.seal",
        epoch = header.epoch.get(),
        segment = seq.get(),
        first_lsn = header.first_lsn.get(),
        records = header.count,
        bytes = plaintext.len(),
    )
    .entered();
    let payload_len = SEALED_OVERHEAD + plaintext.len();
    let len = u32::try_from(payload_len)
        .ok()
        .filter(|len| *len <= MAX_PAYLOAD_LEN)
        .ok_or(SealError::TooLarge {
            len: payload_len,
            max: MAX_PAYLOAD_LEN,
        })?;
    if header.count == 0 {
        return Err(SealError::EmptyBatch);
    }
    let last_lsn = header.last_lsn().ok_or(SealError::LsnMismatch {
        first_lsn: header.first_lsn,
        count: header.count,
        frame_lsn: Lsn::ZERO,
    })?;
    let frame_header = encode_header(len, last_lsn, FrameKind::SealedBatch);
    let header_bytes = header.encode();
    let aad = batch_aad(database, seq, &frame_header, &header_bytes);

    let start = out.len();
    out.reserve(sealed_frame_len(plaintext.len()));
    out.extend_from_slice(&frame_header);
    out.extend_from_slice(&header_bytes);
    let body = out.len();
    out.extend_from_slice(plaintext);
    let sealed = aead.encrypt_in_place_detached(&header.nonce, &aad, &mut out[body..]);
    let Ok(tag) = sealed else {
        // Only possible beyond the cipher's length limit (256 GiB); never leave plaintext.
        out[body..].zeroize();
        out.truncate(start);
        return Err(SealError::TooLarge {
            len: payload_len,
            max: MAX_PAYLOAD_LEN,
        });
    };
    out.extend_from_slice(&tag);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out.len() - start)
}

/// Verifies and decrypts the sealed-batch `payload` (whose header `header` was already
/// parsed from it) into `plain`, then checks that it holds exactly `header.count` records.
pub(crate) fn open_into(
    aead: &XChaCha20Poly1305,
    database: &DatabaseId,
    seq: SegmentSeq,
    header: &SealedBatchHeader,
    frame_lsn: Lsn,
    payload: &[u8],
    plain: &mut Vec<u8>,
) -> Result<(), SealError> {
    #[cfg(feature = "observability")]
    let _span = tracing::debug_span!(
        "aedb.wal.open",
        epoch = header.epoch.get(),
        segment = seq.get(),
        first_lsn = header.first_lsn.get(),
        records = header.count,
    )
    .entered();
    // `decode_for_frame` bounded the length; recheck so this is safe on its own.
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_PAYLOAD_LEN && payload.len() >= SEALED_OVERHEAD)
        .ok_or(SealError::Truncated {
            needed: SEALED_OVERHEAD,
            available: payload.len(),
        })?;
    let mut header_bytes = [0u8; SEALED_HEADER_LEN];
    header_bytes.copy_from_slice(&payload[..SEALED_HEADER_LEN]);
    let frame_header = encode_header(len, frame_lsn, FrameKind::SealedBatch);
    let aad = batch_aad(database, seq, &frame_header, &header_bytes);
    let tag_at = payload.len() - TAG_LEN;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&payload[tag_at..]);
    plain.clear();
    plain.extend_from_slice(&payload[SEALED_HEADER_LEN..tag_at]);
    aead.decrypt_in_place_detached(&header.nonce, &aad, plain, &tag)
        .map_err(|_| SealError::Authentication {
            epoch: header.epoch,
        })?;
    check_records(plain, header.count)
}

/// Checks that `plain` is exactly `count` well-formed records.
fn check_records(plain: &[u8], count: u32) -> Result<(), SealError> {
    let mut rest = plain;
    for index in 0..count {
        let Some(head) = rest.get(..RECORD_HEADER_LEN) else {
            return Err(SealError::BadRecords {
                index,
                reason: "record header truncated",
            });
        };
        if head[0] != RECORD_KIND_COMMIT {
            return Err(SealError::BadRecords {
                index,
                reason: "unknown record kind",
            });
        }
        let len = read_u32(&head[1..5]) as usize;
        let Some(next) = rest
            .get(RECORD_HEADER_LEN..)
            .and_then(|body| body.get(len..))
        else {
            return Err(SealError::BadRecords {
                index,
                reason: "record payload truncated",
            });
        };
        rest = next;
    }
    if !rest.is_empty() {
        return Err(SealError::BadRecords {
            index: count,
            reason: "bytes after the last record",
        });
    }
    Ok(())
}

/// The records of an opened batch, as frames of kind [`FrameKind::Commit`] with dense
/// LSNs from `first_lsn`. `encoded_len` is the record's length inside the plaintext.
#[derive(Clone, Debug)]
pub struct SealedRecords<'a> {
    rest: &'a [u8],
    next_lsn: u64,
    remaining: u32,
}

impl<'a> SealedRecords<'a> {
    /// Iterates `count` records of `plain` (checked by `check_records`; a malformed
    /// input ends the iteration early instead of panicking).
    pub(crate) fn new(plain: &'a [u8], first_lsn: Lsn, count: u32) -> SealedRecords<'a> {
        SealedRecords {
            rest: plain,
            next_lsn: first_lsn.get(),
            remaining: count,
        }
    }
}

impl<'a> Iterator for SealedRecords<'a> {
    type Item = DecodedFrame<'a>;

    fn next(&mut self) -> Option<DecodedFrame<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let len = read_u32(self.rest.get(1..RECORD_HEADER_LEN)?) as usize;
        let payload = self.rest.get(RECORD_HEADER_LEN..)?.get(..len)?;
        let frame = DecodedFrame {
            lsn: Lsn::new(self.next_lsn),
            kind: FrameKind::Commit,
            payload,
            encoded_len: RECORD_HEADER_LEN + len,
        };
        self.rest = &self.rest[RECORD_HEADER_LEN + len..];
        self.next_lsn = self.next_lsn.saturating_add(1);
        self.remaining -= 1;
        Some(frame)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

/// A decrypted, authenticated batch returned by [`open_sealed_batch`]. Its plaintext is
/// zeroized on drop and never printed by `Debug`.
pub struct OpenedBatch {
    header: SealedBatchHeader,
    plain: Vec<u8>,
}

impl OpenedBatch {
    /// The batch header (epoch, first LSN, count, nonce).
    pub fn header(&self) -> &SealedBatchHeader {
        &self.header
    }

    /// The records, in LSN order, as `Commit` frames.
    pub fn records(&self) -> SealedRecords<'_> {
        SealedRecords::new(&self.plain, self.header.first_lsn, self.header.count)
    }

    /// `(lsn, payload)` pairs, copied out.
    pub fn to_vec(&self) -> Vec<(Lsn, Vec<u8>)> {
        self.records()
            .map(|frame| (frame.lsn, frame.payload.to_vec()))
            .collect()
    }
}

impl Drop for OpenedBatch {
    fn drop(&mut self) {
        self.plain.zeroize();
    }
}

impl fmt::Debug for OpenedBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedBatch")
            .field("header", &self.header)
            .field("plaintext_len", &self.plain.len())
            .finish_non_exhaustive()
    }
}

/// Seals `records` (LSNs `first_lsn ..`) into one complete, encoded `SealedBatch` frame
/// (outer header, payload, CRC), bound to `database` and segment `seq`. For tools, tests
/// and golden fixtures; the writer seals with a fresh random nonce per batch. **Never seal
/// two different batches under one key with the same nonce.**
pub fn seal_batch(
    key: &SecretKey,
    epoch: KeyEpoch,
    database: DatabaseId,
    seq: SegmentSeq,
    first_lsn: Lsn,
    nonce: [u8; NONCE_LEN],
    records: &[&[u8]],
) -> Result<Vec<u8>, SealError> {
    let plaintext_len = records.iter().fold(0usize, |sum, record| {
        sum.saturating_add(RECORD_HEADER_LEN)
            .saturating_add(record.len())
    });
    let too_large = SealError::TooLarge {
        len: plaintext_len.saturating_add(SEALED_OVERHEAD),
        max: MAX_PAYLOAD_LEN,
    };
    if plaintext_len > MAX_PAYLOAD_LEN as usize - SEALED_OVERHEAD {
        return Err(too_large);
    }
    // At most 64 MiB / 5 records fit, far below u32::MAX.
    let count = u32::try_from(records.len()).map_err(|_| too_large)?;
    let header = SealedBatchHeader {
        epoch,
        first_lsn,
        count,
        nonce,
    };
    let mut plain = Vec::with_capacity(plaintext_len);
    for record in records {
        encode_record(record, &mut plain);
    }
    let mut out = Vec::new();
    let result = seal_encoded(&aead_for(key), &database, seq, &header, &plain, &mut out);
    plain.zeroize();
    result.map(|_| out)
}

/// Verifies and decrypts the payload of a `SealedBatch` frame carrying `frame_lsn` in
/// segment `seq` of database `database`, with the WAL key for the epoch named in its
/// header (see [`SealedBatchHeader::decode_for_frame`] to read the epoch first). Never
/// panics on any input; allocates at most the payload's length, after checking it.
pub fn open_sealed_batch(
    payload: &[u8],
    frame_lsn: Lsn,
    seq: SegmentSeq,
    database: DatabaseId,
    key: &SecretKey,
) -> Result<OpenedBatch, SealError> {
    let header = SealedBatchHeader::decode_for_frame(payload, frame_lsn)?;
    let mut plain = Vec::new();
    let opened = open_into(
        &aead_for(key),
        &database,
        seq,
        &header,
        frame_lsn,
        payload,
        &mut plain,
    );
    match opened {
        Ok(()) => Ok(OpenedBatch { header, plain }),
        Err(err) => {
            plain.zeroize();
            Err(err)
        }
    }
}

type NonceFn = dyn Fn(&mut [u8; NONCE_LEN]) -> io::Result<()> + Send + Sync;

/// Where the writer gets the 24-byte nonce of each sealed batch. The default draws from
/// the operating system's CSPRNG (`getrandom`); random 192-bit nonces never repeat in
/// practice, across processes and restarts, without any state.
#[derive(Clone, Default)]
pub struct NonceSource {
    custom: Option<Arc<NonceFn>>,
}

impl NonceSource {
    /// The operating system's CSPRNG (the default).
    pub fn os() -> NonceSource {
        NonceSource::default()
    }

    /// A custom source, for example to inject failures in tests. It must never return
    /// the same nonce twice for one key.
    pub fn from_fn(
        fill: impl Fn(&mut [u8; NONCE_LEN]) -> io::Result<()> + Send + Sync + 'static,
    ) -> NonceSource {
        NonceSource {
            custom: Some(Arc::new(fill)),
        }
    }

    /// Fills `nonce` with a fresh nonce.
    pub fn fill(&self, nonce: &mut [u8; NONCE_LEN]) -> io::Result<()> {
        match &self.custom {
            Some(fill) => fill(nonce),
            None => getrandom::fill(nonce)
                .map_err(|err| io::Error::other(format!("OS randomness unavailable: {err}"))),
        }
    }
}

impl fmt::Debug for NonceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.custom {
            None => "NonceSource::Os",
            Some(_) => "NonceSource::Custom",
        })
    }
}

/// The key the writer seals batches with: the WAL subkey of one key epoch, bound to one
/// database. Cheap to clone (the key is shared, and zeroized when the last clone drops);
/// `Debug` never shows the key.
#[derive(Clone)]
pub struct WalCipher {
    key: Arc<SecretKey>,
    epoch: KeyEpoch,
    database: DatabaseId,
    nonces: NonceSource,
}

impl WalCipher {
    /// A cipher sealing under `key` (the WAL subkey for `epoch`) for `database`, with
    /// nonces from the OS CSPRNG.
    pub fn new(key: SecretKey, epoch: KeyEpoch, database: DatabaseId) -> WalCipher {
        WalCipher {
            key: Arc::new(key),
            epoch,
            database,
            nonces: NonceSource::os(),
        }
    }

    /// Replaces the nonce source (tests, failure injection).
    pub fn with_nonce_source(mut self, nonces: NonceSource) -> WalCipher {
        self.nonces = nonces;
        self
    }

    /// The key epoch batches are sealed under.
    pub fn epoch(&self) -> KeyEpoch {
        self.epoch
    }

    /// The database batches are bound to.
    pub fn database(&self) -> DatabaseId {
        self.database
    }

    /// The nonce source.
    pub fn nonce_source(&self) -> &NonceSource {
        &self.nonces
    }

    pub(crate) fn aead(&self) -> XChaCha20Poly1305 {
        aead_for(&self.key)
    }
}

impl fmt::Debug for WalCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalCipher")
            .field("key", &"<redacted>")
            .field("epoch", &self.epoch)
            .field("database", &self.database)
            .field("nonces", &self.nonces)
            .finish()
    }
}

type KeyLookup = dyn Fn(KeyEpoch) -> EpochKey + Send + Sync;

/// Recovery's source of WAL keys: the database id batches are bound to and a lookup
/// returning the WAL subkey of any key epoch found on disk (for example backed by the
/// key provider, which keeps old epochs decrypt-only). Cheap to clone; `Debug` shows the
/// database id only. Recovery calls the lookup at most once per epoch per pass.
#[derive(Clone)]
pub struct WalKeyring {
    database: DatabaseId,
    lookup: Arc<KeyLookup>,
}

impl WalKeyring {
    /// A keyring for `database` that asks `lookup` for the key of an epoch; `None` means
    /// the epoch is unknown (recovery then fails with
    /// [`crate::RecoverError::UnknownKeyEpoch`]).
    pub fn new<K: Into<EpochKey>>(
        database: DatabaseId,
        lookup: impl Fn(KeyEpoch) -> K + Send + Sync + 'static,
    ) -> WalKeyring {
        WalKeyring {
            database,
            lookup: Arc::new(move |epoch| lookup(epoch).into()),
        }
    }

    /// A keyring holding a fixed set of keys.
    pub fn from_keys(
        database: DatabaseId,
        keys: impl IntoIterator<Item = (KeyEpoch, SecretKey)>,
    ) -> WalKeyring {
        let keys: HashMap<KeyEpoch, SecretKey> = keys.into_iter().collect();
        WalKeyring::new(database, move |epoch| {
            keys.get(&epoch).map(SecretKey::duplicate)
        })
    }

    /// The database id batches must be bound to.
    pub fn database(&self) -> DatabaseId {
        self.database
    }

    /// The key for `epoch`, or why there is none.
    pub fn key(&self, epoch: KeyEpoch) -> EpochKey {
        (self.lookup)(epoch)
    }
}

impl fmt::Debug for WalKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalKeyring")
            .field("database", &self.database)
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// Why recovery could not open a sealed batch.
#[derive(Debug)]
pub(crate) enum UnsealFailure {
    /// No key material is configured at all.
    NoKey { epoch: KeyEpoch },
    /// Keys are configured, but none for this epoch.
    UnknownEpoch { epoch: KeyEpoch },
    /// The epoch was retired: no live file may be sealed under it.
    RetiredEpoch { epoch: KeyEpoch },
    /// The batch did not parse, authenticate or hold valid records.
    Seal(SealError),
}

/// Recovery's batch opener: caches one AEAD per epoch and reuses one plaintext buffer
/// (zeroized on drop).
pub(crate) struct Unsealer<'c> {
    cipher: Option<&'c WalCipher>,
    keyring: Option<&'c WalKeyring>,
    aeads: Vec<(KeyEpoch, XChaCha20Poly1305)>,
    plain: Vec<u8>,
}

impl<'c> Unsealer<'c> {
    pub(crate) fn new(cipher: Option<&'c WalCipher>, keyring: Option<&'c WalKeyring>) -> Self {
        Unsealer {
            cipher,
            keyring,
            aeads: Vec::new(),
            plain: Vec::new(),
        }
    }

    /// Opens the sealed batch `frame` of segment `seq` and returns its records.
    pub(crate) fn open(
        &mut self,
        seq: SegmentSeq,
        frame: &DecodedFrame<'_>,
    ) -> Result<SealedRecords<'_>, UnsealFailure> {
        let header = SealedBatchHeader::decode_for_frame(frame.payload, frame.lsn)
            .map_err(UnsealFailure::Seal)?;
        let epoch = header.epoch;
        let database = match (self.keyring, self.cipher) {
            (Some(keyring), _) => keyring.database(),
            (None, Some(cipher)) => cipher.database(),
            (None, None) => return Err(UnsealFailure::NoKey { epoch }),
        };
        let index = match self.aeads.iter().position(|(e, _)| *e == epoch) {
            Some(index) => index,
            None => {
                let found = self
                    .keyring
                    .map_or(EpochKey::Unknown, |keyring| keyring.key(epoch));
                let aead = match found {
                    EpochKey::Key(key) => aead_for(&key),
                    EpochKey::Retired => return Err(UnsealFailure::RetiredEpoch { epoch }),
                    EpochKey::Unknown => match self.cipher.filter(|cipher| cipher.epoch() == epoch)
                    {
                        Some(cipher) => cipher.aead(),
                        None => return Err(UnsealFailure::UnknownEpoch { epoch }),
                    },
                };
                self.aeads.push((epoch, aead));
                self.aeads.len() - 1
            }
        };
        let aead = &self.aeads[index].1;
        open_into(
            aead,
            &database,
            seq,
            &header,
            frame.lsn,
            frame.payload,
            &mut self.plain,
        )
        .map_err(UnsealFailure::Seal)?;
        Ok(SealedRecords::new(
            &self.plain,
            header.first_lsn,
            header.count,
        ))
    }
}

impl Drop for Unsealer<'_> {
    fn drop(&mut self) {
        self.plain.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode_frame;

    const GOLDEN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/sealed_batch.hex");

    fn golden_key() -> SecretKey {
        SecretKey::new(std::array::from_fn(|i| i as u8))
    }

    fn golden_db() -> DatabaseId {
        DatabaseId::from_bytes(std::array::from_fn(|i| 0xD0 + i as u8))
    }

    const GOLDEN_RECORDS: [&[u8]; 3] = [b"alpha", b"", b"gamma: commit record #3"];

    fn golden_frame() -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| 0xA0 + i as u8);
        seal_batch(
            &golden_key(),
            KeyEpoch::new(7),
            golden_db(),
            SegmentSeq::new(3),
            Lsn::new(100),
            nonce,
            &GOLDEN_RECORDS,
        )
        .expect("seal")
    }

    /// Pins the sealed-batch layout, AAD and record encoding byte for byte. Regenerate
    /// deliberately with `AEDB_REGEN_GOLDEN=1` (a format change needs a new version).
    #[test]
    fn golden_sealed_batch_bytes() {
        let frame = golden_frame();
        let hex_now: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        if std::env::var_os("AEDB_REGEN_GOLDEN").is_some_and(|v| v == "1") {
            std::fs::write(GOLDEN_PATH, format!("{hex_now}\n")).expect("write golden");
        }
        let stored = std::fs::read_to_string(GOLDEN_PATH).expect("golden fixture present");
        assert_eq!(hex_now, stored.trim(), "sealed batch bytes changed");

        // The plaintext parts of the layout, independently of the encoder.
        let plaintext_len = GOLDEN_RECORDS
            .iter()
            .map(|r| RECORD_HEADER_LEN + r.len())
            .sum::<usize>();
        let payload_len = SEALED_OVERHEAD + plaintext_len;
        assert_eq!(frame.len(), FRAME_OVERHEAD + payload_len);
        assert_eq!(&frame[0..4], &(payload_len as u32).to_le_bytes());
        assert_eq!(&frame[4..12], &102u64.to_le_bytes());
        assert_eq!(&frame[12..16], &[2, 0, 0, 0]);
        let p = &frame[16..];
        assert_eq!(&p[0..2], &[1, 1]);
        assert_eq!(&p[2..6], &7u32.to_le_bytes());
        assert_eq!(&p[6..14], &100u64.to_le_bytes());
        assert_eq!(&p[14..18], &3u32.to_le_bytes());
        assert_eq!(p[18], 0xA0);
        assert_eq!(p[41], 0xA0 + 23);
        // No plaintext record bytes survive.
        assert!(!frame.windows(5).any(|w| w == b"gamma"));

        // And it decodes.
        let decoded = decode_frame(&frame).expect("frame");
        assert_eq!(decoded.kind, FrameKind::SealedBatch);
        assert_eq!(decoded.lsn, Lsn::new(102));
        let opened = open_sealed_batch(
            decoded.payload,
            decoded.lsn,
            SegmentSeq::new(3),
            golden_db(),
            &golden_key(),
        )
        .expect("open");
        let records: Vec<(u64, Vec<u8>)> = opened
            .to_vec()
            .into_iter()
            .map(|(lsn, p)| (lsn.get(), p))
            .collect();
        let expected: Vec<(u64, Vec<u8>)> = GOLDEN_RECORDS
            .iter()
            .enumerate()
            .map(|(i, r)| (100 + i as u64, r.to_vec()))
            .collect();
        assert_eq!(records, expected);
    }

    #[test]
    fn every_aad_input_is_bound() {
        let frame = golden_frame();
        let decoded = decode_frame(&frame).expect("frame");
        let (payload, lsn) = (decoded.payload, decoded.lsn);
        let key = golden_key();
        let auth = Err(SealError::Authentication {
            epoch: KeyEpoch::new(7),
        });
        let open = |seq: u64, db: DatabaseId, key: &SecretKey| {
            open_sealed_batch(payload, lsn, SegmentSeq::new(seq), db, key).map(|b| b.to_vec())
        };
        assert!(open(3, golden_db(), &key).is_ok());
        assert_eq!(open(4, golden_db(), &key), auth);
        assert_eq!(open(3, DatabaseId::from_bytes([0; 16]), &key), auth);
        assert_eq!(open(3, golden_db(), &SecretKey::new([9; 32])), auth);
        // The header's epoch, LSNs and nonce are AAD: change the epoch (still consistent).
        let mut tampered = payload.to_vec();
        tampered[2] ^= 1;
        assert!(matches!(
            open_sealed_batch(&tampered, lsn, SegmentSeq::new(3), golden_db(), &key),
            Err(SealError::Authentication { epoch }) if epoch == KeyEpoch::new(6)
        ));
    }

    #[test]
    fn header_checks_are_typed() {
        let frame = golden_frame();
        let decoded = decode_frame(&frame).expect("frame");
        let p = decoded.payload;
        let lsn = decoded.lsn;
        assert_eq!(
            SealedBatchHeader::decode_for_frame(&p[..SEALED_OVERHEAD - 1], lsn),
            Err(SealError::Truncated {
                needed: SEALED_OVERHEAD,
                available: SEALED_OVERHEAD - 1
            })
        );
        let with = |at: usize, byte: u8| {
            let mut v = p.to_vec();
            v[at] = byte;
            SealedBatchHeader::decode_for_frame(&v, lsn)
        };
        assert_eq!(
            with(0, 2),
            Err(SealError::UnsupportedVersion { version: 2 })
        );
        assert_eq!(
            with(1, 9),
            Err(SealError::UnsupportedAlgorithm { algorithm: 9 })
        );
        assert!(matches!(with(14, 4), Err(SealError::LsnMismatch { .. })));
        let mut zero_count = p.to_vec();
        zero_count[14..18].fill(0);
        assert_eq!(
            SealedBatchHeader::decode_for_frame(&zero_count, lsn),
            Err(SealError::EmptyBatch)
        );
        assert!(matches!(
            SealedBatchHeader::decode_for_frame(p, Lsn::new(103)),
            Err(SealError::LsnMismatch { .. })
        ));
    }

    #[test]
    fn record_checks_reject_malformed_plaintext() {
        let mut plain = Vec::new();
        encode_record(b"abc", &mut plain);
        assert_eq!(check_records(&plain, 1), Ok(()));
        assert!(matches!(
            check_records(&plain, 2),
            Err(SealError::BadRecords { index: 1, .. })
        ));
        assert!(matches!(
            check_records(&plain[..6], 1),
            Err(SealError::BadRecords { index: 0, .. })
        ));
        plain.push(0);
        assert!(matches!(
            check_records(&plain, 1),
            Err(SealError::BadRecords { index: 1, .. })
        ));
        plain[0] = 9;
        assert!(matches!(
            check_records(&plain, 1),
            Err(SealError::BadRecords { index: 0, .. })
        ));
    }

    #[test]
    fn configuration_and_writer_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<crate::WalConfig>();
        send_sync::<WalCipher>();
        send_sync::<WalKeyring>();
        send::<crate::WalWriter>();
    }

    #[test]
    fn debug_output_never_shows_keys() {
        let key_bytes = [0xABu8; 32];
        let cipher = WalCipher::new(SecretKey::new(key_bytes), KeyEpoch::FIRST, golden_db());
        let keyring = WalKeyring::from_keys(golden_db(), [(KeyEpoch::FIRST, golden_key())]);
        let config = crate::WalConfig {
            cipher: Some(cipher),
            keyring: Some(keyring),
            ..crate::WalConfig::default()
        };
        let shown = format!("{config:?} {config:#?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        assert!(!shown.contains("171, 171"), "{shown}");
        assert!(!shown.contains("0, 1, 2, 3"), "{shown}");
    }

    #[test]
    fn sealing_refuses_empty_and_oversized_batches() {
        let key = golden_key();
        let seal = |first: u64, records: &[&[u8]]| {
            seal_batch(
                &key,
                KeyEpoch::FIRST,
                golden_db(),
                SegmentSeq::FIRST,
                Lsn::new(first),
                [0; NONCE_LEN],
                records,
            )
        };
        assert_eq!(seal(1, &[]), Err(SealError::EmptyBatch));
        assert!(matches!(
            seal(0, &[b"x"]),
            Err(SealError::LsnMismatch { .. })
        ));
        assert!(matches!(
            seal(u64::MAX, &[b"x", b"y"]),
            Err(SealError::LsnMismatch { .. })
        ));
        let big = vec![0u8; MAX_SEALED_RECORD_LEN + 1];
        assert!(matches!(seal(1, &[&big]), Err(SealError::TooLarge { .. })));
    }
}
