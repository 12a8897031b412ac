//! Streaming checkpoint codec over any `Write` / `Read`: [`CheckpointEncoder`] seals a
//! payload chunk by chunk, [`CheckpointDecoder`] authenticates and opens it chunk by chunk.
//!
//! Memory use is one chunk buffer on either side (plus the caller's own output), so a
//! 100 MB snapshot never needs a second full copy. The file-level types in
//! `checkpoint_file.rs` are thin wrappers that add temp files, fsync and renames.
//!
//! File layout: `header (96 bytes) || chunk_0 || … || chunk_{n-1}`, where every chunk is
//! `data (chunk_size bytes; the last chunk 0..=chunk_size) || tag (16 bytes)` and
//! `n = max(1, ceil(payload_len / chunk_size))`. An empty payload is one empty final chunk.
//! The header holds no payload length (it is AAD of the first chunk, sealed before the
//! length is known); the chunk count follows from the file length, and the final flag in
//! each chunk's AAD makes a file that stops early fail authentication.

use crate::chunk::ChunkCipher;
use crate::error::CheckpointError;
use crate::header::{
    Algorithm, CHECKPOINT_HEADER_LEN, CheckpointHeader, KEY_CHECK_OFFSET, MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE, TAG_LEN,
};
use crate::nonce::{NONCE_LEN, NonceSource};
use aedb_keys::{EpochKey, SecretKey};
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// What a new checkpoint is: which database, which LSN, which key epoch, how it is chunked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointMeta {
    /// The database the snapshot belongs to.
    pub database_id: DatabaseId,
    /// The LSN the snapshot reflects (also the file name).
    pub lsn: Lsn,
    /// The epoch of the key passed to the writer (recorded, informational without a key).
    pub epoch: KeyEpoch,
    /// Plaintext bytes per chunk; [`crate::DEFAULT_CHUNK_SIZE`] unless changed.
    pub chunk_size: u32,
}

impl CheckpointMeta {
    /// Metadata with the default 1 MiB chunk size.
    pub fn new(database_id: DatabaseId, lsn: Lsn, epoch: KeyEpoch) -> CheckpointMeta {
        CheckpointMeta {
            database_id,
            lsn,
            epoch,
            chunk_size: crate::header::DEFAULT_CHUNK_SIZE,
        }
    }

    /// Overrides the chunk size (validated when the writer is created).
    pub fn with_chunk_size(mut self, chunk_size: u32) -> CheckpointMeta {
        self.chunk_size = chunk_size;
        self
    }
}

/// What [`CheckpointEncoder::finish`] returns.
#[derive(Debug)]
pub struct EncodedCheckpoint<W> {
    /// The sink, flushed.
    pub sink: W,
    /// The header that was written.
    pub header: CheckpointHeader,
    /// Total bytes written (header and chunks).
    pub len: u64,
    /// SHA-256 of all bytes written.
    pub sha256: [u8; 32],
    /// Plaintext payload bytes.
    pub payload_len: u64,
    /// Number of chunks written (at least 1).
    pub chunk_count: u64,
}

/// Seals a checkpoint payload into a sink, one chunk at a time.
///
/// The header is written by [`CheckpointEncoder::new`]; a full chunk is sealed only when
/// more data arrives, so the last chunk can be marked final by [`CheckpointEncoder::finish`].
/// Any error poisons the encoder.
pub struct CheckpointEncoder<W: Write> {
    sink: W,
    label: PathBuf,
    header: CheckpointHeader,
    header_bytes: [u8; CHECKPOINT_HEADER_LEN],
    cipher: ChunkCipher,
    buf: Vec<u8>,
    next_index: u64,
    hasher: Sha256,
    len: u64,
    payload_len: u64,
    failed: bool,
}

impl<W: Write> fmt::Debug for CheckpointEncoder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointEncoder")
            .field("label", &self.label)
            .field("header", &self.header)
            .field("chunks_sealed", &self.next_index)
            .field("payload_len", &self.payload_len)
            .finish_non_exhaustive()
    }
}

pub(crate) fn check_chunk_size(size: u32) -> Result<(), CheckpointError> {
    if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&size) {
        Ok(())
    } else {
        Err(CheckpointError::InvalidChunkSize { size })
    }
}

impl<W: Write> CheckpointEncoder<W> {
    /// Starts a checkpoint: draws the base nonce, builds and writes the header.
    ///
    /// `key = None` selects plaintext mode ([`Algorithm::PlaintextSha256`]). `label` names
    /// the destination in errors.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidChunkSize`], [`CheckpointError::NonceUnavailable`], or an
    /// I/O error writing the header.
    pub fn new(
        sink: W,
        label: impl Into<PathBuf>,
        meta: &CheckpointMeta,
        key: Option<&SecretKey>,
        nonce_source: &mut dyn NonceSource,
    ) -> Result<CheckpointEncoder<W>, CheckpointError> {
        let label = label.into();
        check_chunk_size(meta.chunk_size)?;
        let mut base_nonce = [0u8; NONCE_LEN];
        nonce_source.fill_nonce(&mut base_nonce).map_err(|source| {
            CheckpointError::NonceUnavailable {
                path: label.clone(),
                source,
            }
        })?;
        let cipher = ChunkCipher::new(key);
        let mut header = CheckpointHeader {
            algorithm: if key.is_some() {
                Algorithm::XChaCha20Poly1305
            } else {
                Algorithm::PlaintextSha256
            },
            epoch: meta.epoch,
            database_id: meta.database_id,
            lsn: meta.lsn,
            chunk_size: meta.chunk_size,
            base_nonce,
            key_check: [0; TAG_LEN],
        };
        let prefix = header.encode();
        header.key_check = cipher
            .key_check(&prefix[..KEY_CHECK_OFFSET], &base_nonce)
            .map_err(|_| CheckpointError::SealFailed {
                path: label.clone(),
                chunk: crate::chunk::KEY_CHECK_INDEX,
            })?;
        let header_bytes = header.encode();
        let mut enc = CheckpointEncoder {
            sink,
            label,
            header,
            header_bytes,
            cipher,
            buf: Vec::with_capacity(meta.chunk_size as usize),
            next_index: 0,
            hasher: Sha256::new(),
            len: 0,
            payload_len: 0,
            failed: false,
        };
        enc.emit_header()?;
        Ok(enc)
    }

    /// The header being written.
    pub fn header(&self) -> &CheckpointHeader {
        &self.header
    }

    fn emit_header(&mut self) -> Result<(), CheckpointError> {
        let h = self.header_bytes;
        self.emit(&h)
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), CheckpointError> {
        if let Err(source) = self.sink.write_all(bytes) {
            self.failed = true;
            return Err(CheckpointError::Io {
                op: "write",
                path: self.label.clone(),
                source,
            });
        }
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Appends payload bytes, sealing and writing every chunk that is complete and known
    /// not to be the last.
    ///
    /// # Errors
    /// I/O errors from the sink; [`CheckpointError::Poisoned`] after any earlier error.
    pub fn write_all(&mut self, mut data: &[u8]) -> Result<(), CheckpointError> {
        if self.failed {
            return Err(CheckpointError::Poisoned {
                path: self.label.clone(),
            });
        }
        let chunk_size = self.header.chunk_size as usize;
        while !data.is_empty() {
            if self.buf.len() == chunk_size {
                self.seal_buffered(false)?;
            }
            let take = (chunk_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            self.payload_len += take as u64;
            data = &data[take..];
        }
        Ok(())
    }

    fn seal_buffered(&mut self, is_final: bool) -> Result<(), CheckpointError> {
        let index = self.next_index;
        let mut buf = std::mem::take(&mut self.buf);
        let sealed = self.cipher.seal(
            &self.header_bytes,
            &self.header.base_nonce,
            index,
            is_final,
            &mut buf,
        );
        let tag = match sealed {
            Ok(tag) => tag,
            Err(_) => {
                self.failed = true;
                return Err(CheckpointError::SealFailed {
                    path: self.label.clone(),
                    chunk: index,
                });
            }
        };
        let written = self.emit(&buf).and_then(|()| self.emit(&tag));
        buf.clear();
        self.buf = buf;
        written?;
        self.next_index += 1;
        Ok(())
    }

    /// Seals the last (final) chunk, flushes the sink and returns it with the file's
    /// length and SHA-256.
    ///
    /// # Errors
    /// I/O errors from the sink; [`CheckpointError::Poisoned`] after any earlier error.
    pub fn finish(mut self) -> Result<EncodedCheckpoint<W>, CheckpointError> {
        if self.failed {
            return Err(CheckpointError::Poisoned { path: self.label });
        }
        self.seal_buffered(true)?;
        if let Err(source) = self.sink.flush() {
            return Err(CheckpointError::Io {
                op: "flush",
                path: self.label,
                source,
            });
        }
        Ok(EncodedCheckpoint {
            sha256: self.hasher.finalize().into(),
            sink: self.sink,
            header: self.header,
            len: self.len,
            payload_len: self.payload_len,
            chunk_count: self.next_index,
        })
    }
}

impl<W: Write> Write for CheckpointEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    /// A no-op: a partial chunk cannot be sealed before more data or `finish` arrives.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Seals `payload` into an in-memory checkpoint image (the exact bytes a file would hold).
///
/// # Errors
/// As [`CheckpointEncoder::new`].
pub fn seal_checkpoint_to_vec(
    meta: &CheckpointMeta,
    key: Option<&SecretKey>,
    nonce_source: &mut dyn NonceSource,
    payload: &[u8],
) -> Result<Vec<u8>, CheckpointError> {
    let mut enc = CheckpointEncoder::new(Vec::new(), "<memory>", meta, key, nonce_source)?;
    enc.write_all(payload)?;
    Ok(enc.finish()?.sink)
}

/// What protection the reader requires, and where its keys come from.
///
/// There is deliberately no "whatever the file says" mode: a reader that holds keys must
/// not silently accept a plaintext file someone substituted (a downgrade).
#[derive(Clone, Copy)]
pub enum OpenMode<'a> {
    /// Accept only plaintext-mode files (instances without a checkpoint key).
    Plaintext,
    /// Accept only sealed files; look up the key for the header's epoch.
    Sealed(&'a dyn Fn(KeyEpoch) -> EpochKey),
}

impl fmt::Debug for OpenMode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenMode::Plaintext => "OpenMode::Plaintext",
            OpenMode::Sealed(_) => "OpenMode::Sealed(<key lookup>)",
        })
    }
}

/// A fully verified checkpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct LoadedCheckpoint {
    /// The authenticated header.
    pub header: CheckpointHeader,
    /// The plaintext payload (every chunk authenticated, the final chunk present).
    pub payload: Vec<u8>,
    /// Length of the file in bytes.
    pub file_len: u64,
    /// SHA-256 of the whole file, to compare with the manifest's `CheckpointAdded` record.
    pub file_sha256: [u8; 32],
}

impl fmt::Debug for LoadedCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCheckpoint")
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .field("file_len", &self.file_len)
            .finish_non_exhaustive()
    }
}

/// Authenticates and opens a checkpoint from a reader, one chunk at a time.
///
/// [`CheckpointDecoder::new`] validates the header, the database id, the mode and the key
/// (via the key check) before returning. Each chunk returned by
/// [`CheckpointDecoder::next_chunk`] is authenticated, but the stream as a whole is only
/// known to be complete once `next_chunk` returns `Ok(None)`: a consumer must not act on
/// the data before that (or use [`CheckpointDecoder::read_to_end`]).
pub struct CheckpointDecoder<R: Read> {
    source: R,
    label: PathBuf,
    header: CheckpointHeader,
    header_bytes: [u8; CHECKPOINT_HEADER_LEN],
    cipher: ChunkCipher,
    total_len: u64,
    chunk_count: u64,
    final_len: usize,
    payload_len: u64,
    next_index: u64,
    offset: u64,
    hasher: Sha256,
    sha256: Option<[u8; 32]>,
    buf: Vec<u8>,
    failed: bool,
}

impl<R: Read> fmt::Debug for CheckpointDecoder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointDecoder")
            .field("label", &self.label)
            .field("header", &self.header)
            .field("chunk_count", &self.chunk_count)
            .field("next_index", &self.next_index)
            .finish_non_exhaustive()
    }
}

fn read_fully<R: Read>(source: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match source.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> CheckpointDecoder<R> {
    /// Reads and validates the header from `source`, whose total length is `total_len`.
    ///
    /// # Errors
    /// [`CheckpointError::BadHeader`], [`CheckpointError::WrongDatabase`],
    /// [`CheckpointError::KeyRequired`], [`CheckpointError::UnexpectedPlaintext`],
    /// [`CheckpointError::UnknownEpoch`], [`CheckpointError::WrongKey`],
    /// [`CheckpointError::Truncated`] (no chunks), [`CheckpointError::BadLength`], I/O errors.
    pub fn new(
        mut source: R,
        total_len: u64,
        label: impl Into<PathBuf>,
        expected_db: DatabaseId,
        mode: OpenMode<'_>,
    ) -> Result<CheckpointDecoder<R>, CheckpointError> {
        let label = label.into();
        let mut header_bytes = [0u8; CHECKPOINT_HEADER_LEN];
        let want = total_len.min(CHECKPOINT_HEADER_LEN as u64) as usize;
        let got = read_fully(&mut source, &mut header_bytes[..want]).map_err(|source| {
            CheckpointError::Io {
                op: "read",
                path: label.clone(),
                source,
            }
        })?;
        let header = CheckpointHeader::decode(&header_bytes[..got]).map_err(|problem| {
            CheckpointError::BadHeader {
                path: label.clone(),
                problem,
            }
        })?;
        if header.database_id != expected_db {
            return Err(CheckpointError::WrongDatabase {
                path: label,
                expected: expected_db,
                found: header.database_id,
            });
        }
        let cipher = match (mode, header.algorithm) {
            (OpenMode::Plaintext, Algorithm::PlaintextSha256) => ChunkCipher::new(None),
            (OpenMode::Plaintext, Algorithm::XChaCha20Poly1305) => {
                return Err(CheckpointError::KeyRequired {
                    path: label,
                    epoch: header.epoch,
                });
            }
            (OpenMode::Sealed(_), Algorithm::PlaintextSha256) => {
                return Err(CheckpointError::UnexpectedPlaintext { path: label });
            }
            (OpenMode::Sealed(lookup), Algorithm::XChaCha20Poly1305) => {
                let key = match lookup(header.epoch) {
                    EpochKey::Key(key) => key,
                    EpochKey::Unknown => {
                        return Err(CheckpointError::UnknownEpoch {
                            path: label,
                            epoch: header.epoch,
                        });
                    }
                    EpochKey::Retired => {
                        return Err(CheckpointError::RetiredEpoch {
                            path: label,
                            epoch: header.epoch,
                        });
                    }
                };
                let cipher = ChunkCipher::new(Some(&key));
                if cipher
                    .verify_key_check(&header_bytes, &header.base_nonce)
                    .is_err()
                {
                    return Err(CheckpointError::WrongKey {
                        path: label,
                        epoch: header.epoch,
                    });
                }
                cipher
            }
        };
        // Chunk layout from the file length.
        let body = total_len - CHECKPOINT_HEADER_LEN as u64;
        let stride = u64::from(header.chunk_size) + TAG_LEN as u64;
        if body == 0 {
            return Err(CheckpointError::Truncated {
                path: label,
                chunks_present: 0,
            });
        }
        let (full, rem) = (body / stride, body % stride);
        let (chunk_count, final_len) = if rem == 0 {
            (full, header.chunk_size as usize)
        } else if rem < TAG_LEN as u64 {
            return Err(CheckpointError::BadLength {
                path: label,
                len: total_len,
                chunk_size: header.chunk_size,
            });
        } else {
            (full + 1, (rem - TAG_LEN as u64) as usize)
        };
        let payload_len = body - chunk_count * TAG_LEN as u64;
        let mut hasher = Sha256::new();
        hasher.update(header_bytes);
        Ok(CheckpointDecoder {
            source,
            label,
            header,
            header_bytes,
            cipher,
            total_len,
            chunk_count,
            final_len,
            payload_len,
            next_index: 0,
            offset: CHECKPOINT_HEADER_LEN as u64,
            hasher,
            sha256: None,
            buf: Vec::new(),
            failed: false,
        })
    }

    /// The validated header.
    pub fn header(&self) -> &CheckpointHeader {
        &self.header
    }

    /// Plaintext payload length implied by the file length.
    pub fn payload_len(&self) -> u64 {
        self.payload_len
    }

    /// Number of chunks implied by the file length.
    pub fn chunk_count(&self) -> u64 {
        self.chunk_count
    }

    /// SHA-256 of the whole file, once every chunk has been read and verified.
    pub fn file_sha256(&self) -> Option<[u8; 32]> {
        self.sha256
    }

    /// Appends the next authenticated chunk's plaintext to `out` and returns its length, or
    /// `None` once the final chunk has been verified. On error `out` is left as it was.
    ///
    /// # Errors
    /// [`CheckpointError::AuthFailed`], [`CheckpointError::Truncated`], I/O errors;
    /// [`CheckpointError::Poisoned`] after any earlier error.
    pub fn next_chunk_into(&mut self, out: &mut Vec<u8>) -> Result<Option<usize>, CheckpointError> {
        if self.failed {
            return Err(CheckpointError::Poisoned {
                path: self.label.clone(),
            });
        }
        if self.next_index == self.chunk_count {
            return Ok(None);
        }
        let start = out.len();
        let result = self.read_chunk(out);
        if result.is_err() {
            out.truncate(start);
            self.failed = true;
        }
        result.map(Some)
    }

    fn read_chunk(&mut self, out: &mut Vec<u8>) -> Result<usize, CheckpointError> {
        let index = self.next_index;
        let is_final = index + 1 == self.chunk_count;
        let len = if is_final {
            self.final_len
        } else {
            self.header.chunk_size as usize
        };
        let start = out.len();
        out.try_reserve(len + TAG_LEN)
            .map_err(|_| CheckpointError::TooLarge {
                path: self.label.clone(),
                len: self.payload_len,
            })?;
        out.resize(start + len + TAG_LEN, 0);
        let got = read_fully(&mut self.source, &mut out[start..]).map_err(|source| {
            CheckpointError::Io {
                op: "read",
                path: self.label.clone(),
                source,
            }
        })?;
        if got < len + TAG_LEN {
            // The source ended before the length it declared (e.g. the file shrank).
            return Err(CheckpointError::BadLength {
                path: self.label.clone(),
                len: self.total_len,
                chunk_size: self.header.chunk_size,
            });
        }
        self.hasher.update(&out[start..]);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&out[start + len..]);
        out.truncate(start + len);
        let chunk_offset = self.offset;
        let data = &mut out[start..];
        // A full-size last chunk is opened a second time, as non-final, if it fails:
        // keep its ciphertext (a failed open zeroes the buffer).
        let full_final =
            (is_final && len == self.header.chunk_size as usize).then(|| data.to_vec());
        if self
            .cipher
            .open(
                &self.header_bytes,
                &self.header.base_nonce,
                index,
                is_final,
                data,
                &tag,
            )
            .is_err()
        {
            // A full-size last chunk that authenticates as *non*-final means chunks were
            // cut off after it: report truncation rather than tampering.
            if let Some(mut ciphertext) = full_final
                && self
                    .cipher
                    .open(
                        &self.header_bytes,
                        &self.header.base_nonce,
                        index,
                        false,
                        &mut ciphertext,
                        &tag,
                    )
                    .is_ok()
            {
                return Err(CheckpointError::Truncated {
                    path: self.label.clone(),
                    chunks_present: index + 1,
                });
            }
            return Err(CheckpointError::AuthFailed {
                path: self.label.clone(),
                chunk: index,
                offset: chunk_offset,
            });
        }
        self.offset += (len + TAG_LEN) as u64;
        self.next_index += 1;
        if is_final {
            self.sha256 = Some(self.hasher.clone().finalize().into());
        }
        Ok(len)
    }

    /// Returns the next authenticated chunk, or `None` once the final chunk has been
    /// verified (only then is the payload known to be complete).
    ///
    /// # Errors
    /// As [`CheckpointDecoder::next_chunk_into`].
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>, CheckpointError> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let r = self.next_chunk_into(&mut buf);
        self.buf = buf;
        match r {
            Ok(Some(_)) => Ok(Some(&self.buf)),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads, authenticates and opens every remaining chunk into one buffer.
    ///
    /// # Errors
    /// As [`CheckpointDecoder::next_chunk_into`]; [`CheckpointError::TooLarge`] if the
    /// payload cannot be allocated.
    pub fn read_to_end(mut self) -> Result<LoadedCheckpoint, CheckpointError> {
        let too_large = |label: &Path, len| CheckpointError::TooLarge {
            path: label.to_path_buf(),
            len,
        };
        let cap = usize::try_from(self.payload_len)
            .map_err(|_| too_large(&self.label, self.payload_len))?;
        let mut payload = Vec::new();
        payload
            .try_reserve_exact(cap.saturating_add(TAG_LEN))
            .map_err(|_| too_large(&self.label, self.payload_len))?;
        while self.next_chunk_into(&mut payload)?.is_some() {}
        let file_sha256 = match self.sha256 {
            Some(h) => h,
            None => {
                return Err(CheckpointError::Poisoned { path: self.label });
            }
        };
        Ok(LoadedCheckpoint {
            header: self.header,
            payload,
            file_len: self.total_len,
            file_sha256,
        })
    }
}

/// Verifies and opens an in-memory checkpoint image.
///
/// # Errors
/// As [`CheckpointDecoder::new`] and [`CheckpointDecoder::read_to_end`]. Never panics.
pub fn open_checkpoint_bytes(
    bytes: &[u8],
    expected_db: DatabaseId,
    mode: OpenMode<'_>,
) -> Result<LoadedCheckpoint, CheckpointError> {
    CheckpointDecoder::new(bytes, bytes.len() as u64, "<memory>", expected_db, mode)?.read_to_end()
}
