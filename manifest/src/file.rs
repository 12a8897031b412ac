//! The HMAC-chained manifest log, `<data_dir>/MANIFEST`.
//!
//! ```text
//! file   = header (64 bytes) || frame*
//! header = magic "AEDBMNFT" (8) || version u16 = 1 || header_len u16 = 64 || reserved u32 = 0
//!          || database_id (16) || header_mac (32)
//!          header_mac = HMAC-SHA256(k_manifest, "aedb manifest header v1\0" || header[0..32])
//! frame  = body_len u32 (1..=65536) || len_check u32 = CRC-32(body_len bytes)
//!          || body (body_len bytes, see record.rs) || mac (32)
//!          mac_i = HMAC-SHA256(k_manifest, mac_{i-1} || body_len || len_check || body)
//!          mac_{-1} = header_mac
//! ```
//!
//! The chain starts from the header MAC, a keyed, domain-separated value over the magic,
//! version and database id: so the header is authenticated even with no records, a
//! manifest cannot be moved to another database, and a wrong key fails at the header
//! ([`ManifestError::HeaderAuthFailed`]) rather than at some record.
//!
//! **Detected**: any edit of a byte, deletion, insertion, reordering or duplication of
//! records inside the chain (the next MAC fails: [`ManifestError::ChainBroken`] with the
//! record index and byte offset), a corrupt length field ([`ManifestError::BadFrame`]), a
//! wrong key or another database's manifest.
//!
//! **Not detected** without an external anchor: replacing the file with an *older* copy, or
//! cutting it at a record boundary. Both leave a valid chain (a prefix of the history).
//! Callers that need rollback protection must store [`Manifest::head_mac`] (and
//! [`Manifest::record_count`]) somewhere the attacker cannot roll back (a TPM/HSM counter, a
//! remote service, the backup catalogue) and compare after opening.
//!
//! **Torn tail rule.** `append` writes a whole frame and then `fdatasync`s, and a record
//! counts only once `append` returned. A crash can therefore leave only an incomplete final
//! frame: fewer bytes than the frame's (length-checked) size, or a zero-filled extension.
//! Such a tail is reported as [`ManifestError::TornTail`] by [`Manifest::open`] (nothing is
//! changed) and cut off by [`Manifest::open_and_repair_torn_tail`], which reports what it
//! cut. Cutting it is safe: it was never acknowledged, and an attacker who can write the
//! file can cut at a record boundary anyway (see above), so this rule gives them nothing
//! new. A frame that fails its length check or its MAC is torn only when it is a final
//! append some of whose sector pieces never reached the disk ([`is_torn_final_append`]);
//! otherwise it is corruption or tampering of an acknowledged record (`ChainBroken` /
//! `BadFrame`). A flipped length bit in the
//! middle of the file therefore cannot masquerade as a torn tail and get "repaired" away
//! together with the records after it.

use crate::chain::{HmacChain, hmac_sha256, hmac_sha256_verify};
use crate::error::ManifestError;
use crate::live_state::LiveState;
use crate::record::{ManifestRecord, RecordError};
use aedb_fs::{DiskFile, FileSystem, OpenMode as FsMode, SharedFs};
use aedb_keys::SecretKey;
use aedb_types::DatabaseId;
use aedb_types::fault::{FaultInjector, FaultPoint};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// File name of the manifest inside the data directory.
pub const MANIFEST_FILE_NAME: &str = "MANIFEST";
/// File magic of a manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"AEDBMNFT";
/// The newest (and only) manifest format version.
pub const MANIFEST_VERSION: u16 = 1;
/// Size of the version-1 header.
pub const MANIFEST_HEADER_LEN: usize = 64;
/// Bytes before the body in a frame (`body_len` and `len_check`).
pub const FRAME_PREFIX_LEN: usize = 8;
/// Length of a record MAC (HMAC-SHA256, [`crate::chain::CHAIN_MAC_LEN`]).
pub const MAC_LEN: usize = crate::chain::CHAIN_MAC_LEN;
/// Largest record body accepted (records are small; this bounds allocation).
pub const MAX_RECORD_BODY_LEN: u32 = 65536;
/// Longest frame: prefix, the longest body, MAC.
const MAX_FRAME_LEN: usize = FRAME_PREFIX_LEN + MAX_RECORD_BODY_LEN as usize + MAC_LEN;
/// Largest manifest file read into memory; compaction keeps manifests far smaller.
pub const MAX_MANIFEST_LEN: u64 = 256 * 1024 * 1024;

const HEADER_DOMAIN: &[u8] = b"aedb manifest header v1\0";
const HEADER_MAC_OFFSET: usize = 32;

/// Encodes a manifest header for `database_id`, including its MAC under `key`.
pub fn encode_manifest_header(
    database_id: DatabaseId,
    key: &SecretKey,
) -> [u8; MANIFEST_HEADER_LEN] {
    let mut h = [0u8; MANIFEST_HEADER_LEN];
    h[0..8].copy_from_slice(&MANIFEST_MAGIC);
    h[8..10].copy_from_slice(&MANIFEST_VERSION.to_le_bytes());
    h[10..12].copy_from_slice(&(MANIFEST_HEADER_LEN as u16).to_le_bytes());
    h[16..32].copy_from_slice(database_id.as_bytes());
    let mac = hmac_sha256(key, &[HEADER_DOMAIN, &h[..HEADER_MAC_OFFSET]]);
    h[HEADER_MAC_OFFSET..].copy_from_slice(&mac);
    h
}

/// Encodes one frame chained after `prev_mac`; returns the frame and its MAC (the next
/// `prev_mac`).
///
/// # Errors
/// If the record cannot be encoded.
pub fn encode_frame(
    key: &SecretKey,
    prev_mac: &[u8; MAC_LEN],
    record: &ManifestRecord,
) -> Result<(Vec<u8>, [u8; MAC_LEN]), RecordError> {
    let body = record.encode()?;
    // Bodies are bounded by the record codec's text limits (< MAX_RECORD_BODY_LEN).
    let n = body.len() as u32;
    let mut frame = Vec::with_capacity(FRAME_PREFIX_LEN + body.len() + MAC_LEN);
    frame.extend_from_slice(&n.to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&n.to_le_bytes()).to_le_bytes());
    frame.extend_from_slice(&body);
    let mac = HmacChain::new(*prev_mac).link_mac(key, &[], &frame);
    frame.extend_from_slice(&mac);
    Ok((frame, mac))
}

/// The directory a file lives in (`.` for a bare relative file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An incomplete final record left by a crash during `append`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Where it starts (the length of the valid prefix).
    pub offset: u64,
    /// How many bytes it has.
    pub len: u64,
}

/// The result of verifying a whole manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedManifest {
    /// The database the manifest belongs to.
    pub database_id: DatabaseId,
    /// Every verified record, in order.
    pub records: Vec<ManifestRecord>,
    /// Byte offset of each record's frame.
    pub record_offsets: Vec<u64>,
    /// The chain head: the last record's MAC (the header MAC if there are none).
    pub head_mac: [u8; MAC_LEN],
    /// Length of the verified prefix (header and complete records).
    pub valid_len: u64,
    /// An incomplete final record after the verified prefix, if any.
    pub torn_tail: Option<TornTail>,
    /// The records folded into the live set.
    pub live: LiveState,
}

enum Frame<'a> {
    Torn,
    Complete {
        body: &'a [u8],
        mac: [u8; MAC_LEN],
        len: usize,
    },
}

/// Whether the frame at `off` that failed its length check or its MAC is the last
/// append, torn by a crash before its `fdatasync` returned: some of its sector pieces
/// never reached the disk (they read as zeros, see `aedb_fs::has_lost_sector_piece`) and
/// nothing was appended after it.
///
/// - With an intact length field, the frame's extent is known: nothing non-zero may
///   follow it, and a sector piece inside it must be lost.
/// - With a damaged length check, the length field itself sat in a lost piece: the
///   append's head (`[off, next sector boundary)`) or the sector after it (when the
///   8-byte prefix straddles the boundary) reads as zeros, and the rest of the file fits
///   one frame.
/// - A well-formed length out of range was never written by an append: corruption.
pub fn is_torn_final_append(bytes: &[u8], off: usize) -> bool {
    let Some(rest) = bytes.get(off..) else {
        return false;
    };
    let zeros = |a: usize, b: usize| bytes.get(a..b).is_some_and(|r| r.iter().all(|&x| x == 0));
    let length = (rest.len() >= FRAME_PREFIX_LEN)
        .then(|| {
            let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let check = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
            (crc32fast::hash(&rest[..4]) == check).then_some(n)
        })
        .flatten();
    match length {
        Some(n) if (1..=MAX_RECORD_BODY_LEN).contains(&n) => {
            let end = off + FRAME_PREFIX_LEN + n as usize + MAC_LEN;
            end <= bytes.len()
                && zeros(end, bytes.len())
                && aedb_fs::has_lost_sector_piece(bytes, off, end)
        }
        Some(_) => false,
        None => {
            let sector = aedb_fs::SECTOR_SIZE as usize;
            let boundary = (off + 1).next_multiple_of(sector);
            rest.len() <= MAX_FRAME_LEN
                && (zeros(off, boundary.min(bytes.len()))
                    || (off + FRAME_PREFIX_LEN > boundary
                        && zeros(boundary, (boundary + sector).min(bytes.len()))))
        }
    }
}

fn parse_frame<'a>(
    path: &Path,
    rest: &'a [u8],
    prev: &[u8; MAC_LEN],
    key: &SecretKey,
    index: u64,
    offset: u64,
) -> Result<Frame<'a>, ManifestError> {
    let bad = |reason| ManifestError::BadFrame {
        path: path.to_path_buf(),
        index,
        offset,
        reason,
    };
    if rest.iter().all(|&b| b == 0) || rest.len() < FRAME_PREFIX_LEN {
        return Ok(Frame::Torn);
    }
    let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let check = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if crc32fast::hash(&rest[..4]) != check {
        return Err(bad("length check mismatch: the length field is corrupt"));
    }
    if n == 0 || n > MAX_RECORD_BODY_LEN {
        return Err(bad("record length out of range"));
    }
    let n = n as usize;
    let len = FRAME_PREFIX_LEN + n + MAC_LEN;
    if rest.len() < len {
        return Ok(Frame::Torn);
    }
    let framed = &rest[..FRAME_PREFIX_LEN + n];
    let stored = &rest[FRAME_PREFIX_LEN + n..len];
    if !HmacChain::new(*prev).verify_next(key, &[], framed, stored) {
        return Err(ManifestError::ChainBroken {
            path: path.to_path_buf(),
            index,
            offset,
        });
    }
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(stored);
    Ok(Frame::Complete {
        body: &framed[FRAME_PREFIX_LEN..],
        mac,
        len,
    })
}

/// Verifies and decodes one frame chained after `prev_mac` (the header MAC for record 0).
/// `frame` must be exactly one frame. Returns the record and its MAC.
///
/// # Errors
/// [`ManifestError::BadFrame`], [`ManifestError::ChainBroken`],
/// [`ManifestError::BadRecord`], or [`ManifestError::TornTail`] if `frame` is incomplete.
pub fn decode_frame(
    frame: &[u8],
    prev_mac: &[u8; MAC_LEN],
    key: &SecretKey,
) -> Result<(ManifestRecord, [u8; MAC_LEN]), ManifestError> {
    let path = Path::new("<memory>");
    match parse_frame(path, frame, prev_mac, key, 0, 0)? {
        Frame::Complete { len, .. } if len != frame.len() => Err(ManifestError::BadFrame {
            path: path.to_path_buf(),
            index: 0,
            offset: len as u64,
            reason: "trailing bytes after the frame",
        }),
        Frame::Complete { body, mac, .. } => {
            let record =
                ManifestRecord::decode(body).map_err(|source| ManifestError::BadRecord {
                    path: path.to_path_buf(),
                    index: 0,
                    offset: 0,
                    source,
                })?;
            Ok((record, mac))
        }
        Frame::Torn => Err(ManifestError::TornTail {
            path: path.to_path_buf(),
            offset: 0,
            len: frame.len() as u64,
            valid_records: 0,
        }),
    }
}

fn bad_header(path: &Path, offset: u64, reason: String) -> ManifestError {
    ManifestError::BadHeader {
        path: path.to_path_buf(),
        offset,
        reason,
    }
}

/// Verifies a whole manifest image: header, MAC chain, record decoding and consistency.
/// A torn tail is reported in [`VerifiedManifest::torn_tail`], not as an error. `path`
/// only names the file in errors. Never panics on any input.
///
/// # Errors
/// [`ManifestError::BadHeader`], [`ManifestError::HeaderAuthFailed`],
/// [`ManifestError::BadFrame`], [`ManifestError::ChainBroken`],
/// [`ManifestError::BadRecord`], [`ManifestError::Inconsistent`].
pub fn verify_manifest_bytes(
    path: &Path,
    bytes: &[u8],
    key: &SecretKey,
) -> Result<VerifiedManifest, ManifestError> {
    if bytes.len() < MANIFEST_HEADER_LEN {
        return Err(bad_header(
            path,
            bytes.len() as u64,
            format!(
                "file is {} bytes, shorter than the {MANIFEST_HEADER_LEN}-byte header (crash during create?)",
                bytes.len()
            ),
        ));
    }
    let h = &bytes[..MANIFEST_HEADER_LEN];
    if h[0..8] != MANIFEST_MAGIC {
        return Err(bad_header(
            path,
            0,
            "bad magic (not an aedb manifest)".into(),
        ));
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version == 0 || version > MANIFEST_VERSION {
        return Err(bad_header(
            path,
            8,
            format!(
                "unsupported manifest version {version} (this build reads 1..={MANIFEST_VERSION}); upgrade aedb"
            ),
        ));
    }
    let header_len = u16::from_le_bytes([h[10], h[11]]);
    if usize::from(header_len) != MANIFEST_HEADER_LEN {
        return Err(bad_header(
            path,
            10,
            format!("header_len {header_len} is not {MANIFEST_HEADER_LEN}"),
        ));
    }
    if !hmac_sha256_verify(
        key,
        &[HEADER_DOMAIN, &h[..HEADER_MAC_OFFSET]],
        &h[HEADER_MAC_OFFSET..],
    ) {
        return Err(ManifestError::HeaderAuthFailed {
            path: path.to_path_buf(),
        });
    }
    if h[12..16] != [0; 4] {
        return Err(bad_header(path, 12, "reserved bytes are not zero".into()));
    }
    let mut db = [0u8; 16];
    db.copy_from_slice(&h[16..32]);
    let database_id = DatabaseId::from_bytes(db);
    let mut prev = [0u8; MAC_LEN];
    prev.copy_from_slice(&h[HEADER_MAC_OFFSET..]);

    let mut live = LiveState::new(database_id);
    let mut records = Vec::new();
    let mut record_offsets = Vec::new();
    let mut off = MANIFEST_HEADER_LEN;
    let mut torn_tail = None;
    while off < bytes.len() {
        let index = records.len() as u64;
        let offset = off as u64;
        let parsed = match parse_frame(path, &bytes[off..], &prev, key, index, offset) {
            Err(ManifestError::BadFrame { .. } | ManifestError::ChainBroken { .. })
                if is_torn_final_append(bytes, off) =>
            {
                Frame::Torn
            }
            other => other?,
        };
        match parsed {
            Frame::Torn => {
                torn_tail = Some(TornTail {
                    offset,
                    len: (bytes.len() - off) as u64,
                });
                break;
            }
            Frame::Complete { body, mac, len } => {
                let record =
                    ManifestRecord::decode(body).map_err(|source| ManifestError::BadRecord {
                        path: path.to_path_buf(),
                        index,
                        offset,
                        source,
                    })?;
                live.apply(index, &record)
                    .map_err(|source| ManifestError::Inconsistent {
                        path: path.to_path_buf(),
                        index,
                        offset,
                        source,
                    })?;
                records.push(record);
                record_offsets.push(offset);
                prev = mac;
                off += len;
            }
        }
    }
    Ok(VerifiedManifest {
        database_id,
        records,
        record_offsets,
        head_mac: prev,
        valid_len: torn_tail.map_or(bytes.len() as u64, |t| t.offset),
        torn_tail,
        live,
    })
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ManifestError + 'a {
    move |source| ManifestError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn read_whole(file: &dyn DiskFile, path: &Path) -> Result<Vec<u8>, ManifestError> {
    let len = file.len().map_err(io_err("stat", path))?;
    if len > MAX_MANIFEST_LEN {
        return Err(ManifestError::TooLarge {
            path: path.to_path_buf(),
            len,
            max: MAX_MANIFEST_LEN,
        });
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len as usize)
        .map_err(|_| ManifestError::TooLarge {
            path: path.to_path_buf(),
            len,
            max: MAX_MANIFEST_LEN,
        })?;
    bytes.resize(len as usize, 0);
    file.read_exact_at(&mut bytes, 0)
        .map_err(io_err("read", path))?;
    Ok(bytes)
}

/// Reads and verifies a manifest without opening it for writing (for verification tools
/// and backups). A torn tail is reported, not an error.
///
/// # Errors
/// I/O errors and everything [`verify_manifest_bytes`] reports.
pub fn read_manifest(
    fs: &dyn FileSystem,
    path: &Path,
    key: &SecretKey,
) -> Result<VerifiedManifest, ManifestError> {
    let file = fs
        .open(path, FsMode::Existing)
        .map_err(io_err("open", path))?;
    let bytes = read_whole(&*file, path)?;
    verify_manifest_bytes(path, &bytes, key)
}

/// The open manifest: appends records and compacts. Owned by one actor (ManifestChain).
pub struct Manifest {
    fs: SharedFs,
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    key: SecretKey,
    database_id: DatabaseId,
    head_mac: [u8; MAC_LEN],
    len: u64,
    record_count: u64,
    live: LiveState,
    poisoned: bool,
    faults: FaultInjector,
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("path", &self.path)
            .field("database_id", &self.database_id)
            .field("record_count", &self.record_count)
            .field("len", &self.len)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Manifest {
    /// Creates a new manifest holding only the header (see [`Manifest::create_with`]).
    ///
    /// # Errors
    /// [`ManifestError::AlreadyExists`] or I/O errors.
    pub fn create(
        fs: &SharedFs,
        path: &Path,
        database_id: DatabaseId,
        key: SecretKey,
    ) -> Result<Manifest, ManifestError> {
        Manifest::create_with(fs, path, database_id, key, &[])
    }

    /// Creates a new manifest holding the header and `records` (a new database's
    /// `DatabaseCreated` and first `KeyEpochChanged`), **atomically**: the bytes are
    /// written to `MANIFEST.tmp`, fsynced, renamed into place and the directory fsynced,
    /// so a crash leaves either no manifest (and a stale temporary that the next open
    /// removes) or the whole one — never a header without the records a database needs.
    ///
    /// # Errors
    /// [`ManifestError::AlreadyExists`], [`ManifestError::Rejected`] for records a new
    /// manifest cannot start with, [`ManifestError::InvalidRecord`], or I/O errors.
    pub fn create_with(
        fs: &SharedFs,
        path: &Path,
        database_id: DatabaseId,
        key: SecretKey,
        records: &[ManifestRecord],
    ) -> Result<Manifest, ManifestError> {
        if fs.exists(path) {
            return Err(ManifestError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        let live = LiveState::from_records(database_id, records).map_err(|(_, source)| {
            ManifestError::Rejected {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let (bytes, head_mac) = encode_chain(path, database_id, &key, records)?;
        write_whole(&**fs, path, &bytes)?;
        let file = fs
            .open(path, FsMode::Existing)
            .map_err(io_err("open", path))?;
        Ok(Manifest {
            fs: fs.clone(),
            path: path.to_path_buf(),
            file,
            key,
            database_id,
            head_mac,
            len: bytes.len() as u64,
            record_count: records.len() as u64,
            live,
            poisoned: false,
            faults: FaultInjector::default(),
        })
    }

    /// Opens and verifies the whole chain; returns the manifest (positioned to append) and
    /// every record. A torn final record is an error here ([`ManifestError::TornTail`]) and
    /// the file is not modified; see [`Manifest::open_and_repair_torn_tail`].
    ///
    /// # Errors
    /// I/O errors and everything [`verify_manifest_bytes`] reports.
    pub fn open(
        fs: &SharedFs,
        path: &Path,
        key: SecretKey,
    ) -> Result<(Manifest, Vec<ManifestRecord>), ManifestError> {
        let (m, records, _) = Manifest::open_inner(fs, path, key, false)?;
        Ok((m, records))
    }

    /// Like [`Manifest::open`], but a torn final record (see the module docs for the exact
    /// rule) is truncated away (and the truncation fsynced); returns what was cut.
    ///
    /// # Errors
    /// As [`Manifest::open`], except for `TornTail`.
    pub fn open_and_repair_torn_tail(
        fs: &SharedFs,
        path: &Path,
        key: SecretKey,
    ) -> Result<(Manifest, Vec<ManifestRecord>, Option<TornTail>), ManifestError> {
        Manifest::open_inner(fs, path, key, true)
    }

    fn open_inner(
        fs: &SharedFs,
        path: &Path,
        key: SecretKey,
        repair: bool,
    ) -> Result<(Manifest, Vec<ManifestRecord>, Option<TornTail>), ManifestError> {
        let file = fs
            .open(path, FsMode::Existing)
            .map_err(io_err("open", path))?;
        let bytes = read_whole(&*file, path)?;
        let v = verify_manifest_bytes(path, &bytes, &key)?;
        drop(bytes);
        if let Some(t) = v.torn_tail {
            if !repair {
                return Err(ManifestError::TornTail {
                    path: path.to_path_buf(),
                    offset: t.offset,
                    len: t.len,
                    valid_records: v.records.len() as u64,
                });
            }
            file.set_len(t.offset).map_err(io_err("truncate", path))?;
            file.sync_all().map_err(io_err("fsync", path))?;
        }
        let manifest = Manifest {
            fs: fs.clone(),
            path: path.to_path_buf(),
            file,
            key,
            database_id: v.database_id,
            head_mac: v.head_mac,
            len: v.valid_len,
            record_count: v.records.len() as u64,
            live: v.live,
            poisoned: false,
            faults: FaultInjector::default(),
        };
        Ok((manifest, v.records, v.torn_tail))
    }

    /// Appends one record: checks it against the live state, writes the frame, and
    /// `fdatasync`s. The record is durable when this returns `Ok`. An I/O error poisons
    /// the manifest (the file may end in a torn frame); reopen it to continue.
    ///
    /// # Errors
    /// [`ManifestError::Rejected`] (nothing written), [`ManifestError::InvalidRecord`],
    /// I/O errors, [`ManifestError::Poisoned`].
    pub fn append(&mut self, record: &ManifestRecord) -> Result<(), ManifestError> {
        if self.poisoned {
            return Err(ManifestError::Poisoned {
                path: self.path.clone(),
            });
        }
        self.live
            .check(self.record_count, record)
            .map_err(|source| ManifestError::Rejected {
                path: self.path.clone(),
                source,
            })?;
        let (frame, mac) = encode_frame(&self.key, &self.head_mac, record).map_err(|source| {
            ManifestError::InvalidRecord {
                path: self.path.clone(),
                source,
            }
        })?;
        let (file, at) = (&self.file, self.len);
        let written = self
            .faults
            .write_with(FaultPoint::Manifest, &frame, |part| {
                file.write_all_at(part, at)
            })
            .map_err(io_err("write", &self.path))
            .and_then(|()| {
                self.faults
                    .check(FaultPoint::Manifest)
                    .and_then(|()| self.file.sync_data())
                    .map_err(io_err("fdatasync", &self.path))
            });
        if let Err(e) = written {
            self.poisoned = true;
            return Err(e);
        }
        // Cannot fail: checked above.
        let _ = self.live.apply(self.record_count, record);
        self.head_mac = mac;
        self.len += frame.len() as u64;
        self.record_count += 1;
        Ok(())
    }

    /// Rewrites the manifest as header + `Compacted` + `summary` (typically
    /// `self.live_state().to_records()`), via `MANIFEST.tmp`, fsync, atomic rename and a
    /// directory fsync. The `Compacted` record carries the old chain head and record count.
    ///
    /// On an error before the rename the old manifest is untouched and still usable; an
    /// error after it poisons this handle (reopen).
    ///
    /// # Errors
    /// [`ManifestError::Rejected`] if the summary is inconsistent (e.g. contains
    /// `Compacted`), [`ManifestError::InvalidRecord`], I/O errors.
    pub fn compact(
        &mut self,
        at_unix_ms: u64,
        summary: &[ManifestRecord],
    ) -> Result<(), ManifestError> {
        if self.poisoned {
            return Err(ManifestError::Poisoned {
                path: self.path.clone(),
            });
        }
        let mut records = Vec::with_capacity(summary.len() + 1);
        records.push(ManifestRecord::Compacted {
            replaces_head: self.head_mac,
            records_replaced: self.record_count,
            at_unix_ms,
        });
        records.extend_from_slice(summary);
        let live = LiveState::from_records(self.database_id, &records).map_err(|(_, source)| {
            ManifestError::Rejected {
                path: self.path.clone(),
                source,
            }
        })?;
        let (bytes, prev) = encode_chain(&self.path, self.database_id, &self.key, &records)?;
        write_staged(&*self.fs, &self.path, &bytes)?;
        // The new file is in place: from here on, failures leave this handle unusable.
        self.poisoned = true;
        let dir = parent_dir(&self.path);
        self.fs
            .sync_dir(dir)
            .map_err(io_err("fsync directory", dir))?;
        self.file = self
            .fs
            .open(&self.path, FsMode::Existing)
            .map_err(io_err("open", &self.path))?;
        self.poisoned = false;
        self.head_mac = prev;
        self.len = bytes.len() as u64;
        self.record_count = records.len() as u64;
        self.live = live;
        Ok(())
    }

    /// The chain head: the MAC of the last record (the header MAC if there are none).
    /// Store it outside the data directory to detect rollback to an older manifest.
    pub fn head_mac(&self) -> [u8; MAC_LEN] {
        self.head_mac
    }

    /// Records in the file (after compaction: the `Compacted` record plus the summary).
    pub fn record_count(&self) -> u64 {
        self.record_count
    }

    /// File length in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.len
    }

    /// The database this manifest belongs to.
    pub fn database_id(&self) -> DatabaseId {
        self.database_id
    }

    /// The manifest's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Consults `faults` at every record write and sync ([`FaultPoint::Manifest`]), so
    /// tests can fail a manifest append.
    pub fn set_fault_injector(&mut self, faults: FaultInjector) {
        self.faults = faults;
    }

    /// Whether an I/O error left this handle unusable (the file may end in a torn
    /// frame, or a compaction's rename happened but its directory sync failed): every
    /// later append fails with [`ManifestError::Poisoned`]; reopen to continue.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The live set folded from every record so far.
    pub fn live_state(&self) -> &LiveState {
        &self.live
    }

    /// The bytes of every record written so far (the file up to [`Manifest::len_bytes`]),
    /// read from the open file: a consistent copy of the chain at this instant, for a
    /// forensic capture. Only the owner appends, so nothing changes during the read.
    ///
    /// # Errors
    /// [`ManifestError::Io`] when the file cannot be read.
    pub fn durable_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        let len = usize::try_from(self.len).map_err(|_| ManifestError::TooLarge {
            path: self.path.clone(),
            len: self.len,
            max: MAX_MANIFEST_LEN,
        })?;
        let mut bytes = vec![0u8; len];
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(io_err("read", &self.path))?;
        Ok(bytes)
    }
}

/// The path of the staging copy of the manifest at `path` (`MANIFEST.tmp`).
pub fn manifest_temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| MANIFEST_FILE_NAME.into());
    name.push(".tmp");
    path.with_file_name(name)
}

/// A manifest file's bytes: the header then `records` chained after it; returns the
/// bytes and the chain head.
fn encode_chain(
    path: &Path,
    database_id: DatabaseId,
    key: &SecretKey,
    records: &[ManifestRecord],
) -> Result<(Vec<u8>, [u8; MAC_LEN]), ManifestError> {
    let header = encode_manifest_header(database_id, key);
    let mut bytes = header.to_vec();
    let mut prev = [0u8; MAC_LEN];
    prev.copy_from_slice(&header[HEADER_MAC_OFFSET..]);
    for r in records {
        let (frame, mac) =
            encode_frame(key, &prev, r).map_err(|source| ManifestError::InvalidRecord {
                path: path.to_path_buf(),
                source,
            })?;
        bytes.extend_from_slice(&frame);
        prev = mac;
    }
    Ok((bytes, prev))
}

/// Writes `bytes` to the staging copy, fsyncs it and renames it over `path`. On an error
/// the staging copy is removed and `path` is untouched. The directory is not synced.
fn write_staged(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> Result<(), ManifestError> {
    let tmp = manifest_temp_path(path);
    let staged = aedb_fs::write_file(fs, &tmp, bytes)
        .map_err(io_err("write", &tmp))
        .and_then(|()| fs.rename(&tmp, path).map_err(io_err("rename", &tmp)));
    if let Err(e) = staged {
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// [`write_staged`], then fsyncs the directory: `path` holds `bytes` durably.
fn write_whole(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> Result<(), ManifestError> {
    write_staged(fs, path, bytes)?;
    let dir = parent_dir(path);
    fs.sync_dir(dir).map_err(io_err("fsync directory", dir))
}

/// Reads the database id from a manifest's header **without authenticating it**, so the
/// caller can derive the manifest key (which is bound to the database id) and then
/// [`Manifest::open`] it, which authenticates the header: a forged id yields a
/// different key and fails there.
///
/// # Errors
/// I/O errors, or [`ManifestError::BadHeader`] when the file is too short or not a
/// manifest.
pub fn peek_database_id(fs: &dyn FileSystem, path: &Path) -> Result<DatabaseId, ManifestError> {
    let mut header = [0u8; MANIFEST_HEADER_LEN];
    let file = fs
        .open(path, FsMode::Existing)
        .map_err(io_err("open", path))?;
    let len = file.len().map_err(io_err("stat", path))?;
    let filled = header.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    file.read_exact_at(&mut header[..filled], 0)
        .map_err(io_err("read", path))?;
    if filled < MANIFEST_HEADER_LEN || header[0..8] != MANIFEST_MAGIC {
        return Err(bad_header(
            path,
            0,
            "not an aedb manifest (short file or bad magic)".into(),
        ));
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&header[16..32]);
    Ok(DatabaseId::from_bytes(id))
}
