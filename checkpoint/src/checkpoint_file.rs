//! Checkpoint files on disk: `<data_dir>/checkpoints/<lsn:020>.ckpt`.
//!
//! [`CheckpointWriter`] streams a payload into `<lsn:020>.ckpt.tmp`, then `finish` fsyncs
//! it, renames it to `<lsn:020>.ckpt` and fsyncs the directory, so a `.ckpt` file is always
//! complete. An existing `.ckpt` is never overwritten. [`open_checkpoint`] verifies a file
//! completely before returning its payload; [`open_checkpoint_stream`] yields it chunk by
//! chunk. [`list_checkpoints`], [`remove_checkpoint`] and [`remove_stale_temp_files`] manage
//! the directory.

use crate::checkpoint_stream::{
    CheckpointDecoder, CheckpointEncoder, CheckpointMeta, LoadedCheckpoint, OpenMode,
    check_chunk_size,
};
use crate::durable::ensure_dir;
use crate::error::CheckpointError;
use crate::header::Algorithm;
use crate::nonce::NonceSource;
use aedb_fs::{FileReader, FileSystem, FileWriter, OpenMode as FsMode, SharedFs};
use aedb_keys::{EpochKey, SecretKey};
use aedb_manifest::ManifestRecord;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Name of the checkpoint directory inside the data directory.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
const EXTENSION: &str = ".ckpt";
const TMP_SUFFIX: &str = ".tmp";
const WRITE_BUFFER: usize = 256 * 1024;

/// `<data_dir>/checkpoints`.
pub fn checkpoints_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(CHECKPOINTS_DIR)
}

/// The file name of the checkpoint at `lsn`: 20 zero-padded digits + `.ckpt`, so lexical
/// order is LSN order.
pub fn checkpoint_file_name(lsn: Lsn) -> String {
    format!("{:020}{EXTENSION}", lsn.get())
}

/// `<data_dir>/checkpoints/<lsn:020>.ckpt`.
pub fn checkpoint_path(data_dir: &Path, lsn: Lsn) -> PathBuf {
    checkpoints_dir(data_dir).join(checkpoint_file_name(lsn))
}

/// Parses a checkpoint file name (exactly 20 ASCII digits + `.ckpt`).
pub fn parse_checkpoint_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(EXTENSION)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok().map(Lsn::new)
}

/// A checkpoint written and made durable by [`CheckpointWriter::finish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Final path of the file.
    pub path: PathBuf,
    /// File name (what the manifest records).
    pub file_name: String,
    /// The checkpoint's LSN.
    pub lsn: Lsn,
    /// The key epoch recorded in the header.
    pub epoch: KeyEpoch,
    /// Sealed or plaintext.
    pub algorithm: Algorithm,
    /// File length in bytes.
    pub len: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// Plaintext payload length.
    pub payload_len: u64,
    /// Number of chunks.
    pub chunk_count: u64,
}

impl CheckpointInfo {
    /// The manifest record announcing this checkpoint.
    pub fn manifest_record(&self) -> ManifestRecord {
        ManifestRecord::CheckpointAdded {
            lsn: self.lsn,
            epoch: self.epoch,
            file_name: self.file_name.clone(),
            sha256: self.sha256,
            len: self.len,
        }
    }
}

/// Streams one checkpoint into a temporary file and publishes it atomically.
///
/// Dropping a writer without calling [`CheckpointWriter::finish`] removes the temporary
/// file. Any error poisons the writer. One writer per LSN at a time (the CheckpointSealer
/// actor owns the directory).
pub struct CheckpointWriter {
    encoder: Option<CheckpointEncoder<BufWriter<FileWriter>>>,
    fs: SharedFs,
    dir: PathBuf,
    tmp_path: PathBuf,
    final_path: PathBuf,
    file_name: String,
    meta: CheckpointMeta,
    published: bool,
}

impl fmt::Debug for CheckpointWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckpointWriter")
            .field("tmp_path", &self.tmp_path)
            .field("meta", &self.meta)
            .field("poisoned", &self.encoder.is_none())
            .finish_non_exhaustive()
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CheckpointError + 'a {
    move |source| CheckpointError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl CheckpointWriter {
    /// Creates `<data_dir>/checkpoints/<lsn:020>.ckpt.tmp` (and the `checkpoints`
    /// directory if needed) and writes the header.
    ///
    /// `key = None` writes a plaintext-mode checkpoint (integrity only, not authenticated).
    /// Use [`crate::OsNonceSource`] as `nonce_source` outside tests.
    ///
    /// # Errors
    /// [`CheckpointError::AlreadyExists`] if the final file exists, invalid chunk size,
    /// nonce or I/O failures.
    pub fn create(
        fs: &SharedFs,
        data_dir: &Path,
        meta: CheckpointMeta,
        key: Option<&SecretKey>,
        nonce_source: &mut dyn NonceSource,
    ) -> Result<CheckpointWriter, CheckpointError> {
        check_chunk_size(meta.chunk_size)?;
        let dir = checkpoints_dir(data_dir);
        ensure_dir(&**fs, &dir).map_err(io_err("create directory", &dir))?;
        let file_name = checkpoint_file_name(meta.lsn);
        let final_path = dir.join(&file_name);
        if fs.exists(&final_path) {
            return Err(CheckpointError::AlreadyExists { path: final_path });
        }
        let tmp_path = dir.join(format!("{file_name}{TMP_SUFFIX}"));
        let file = fs
            .open(&tmp_path, FsMode::Truncate)
            .map_err(io_err("create", &tmp_path))?;
        let encoder = match CheckpointEncoder::new(
            BufWriter::with_capacity(WRITE_BUFFER, FileWriter::new(file, 0)),
            &tmp_path,
            &meta,
            key,
            nonce_source,
        ) {
            Ok(e) => e,
            Err(e) => {
                let _ = fs.remove_file(&tmp_path);
                return Err(e);
            }
        };
        Ok(CheckpointWriter {
            encoder: Some(encoder),
            fs: fs.clone(),
            dir,
            tmp_path,
            final_path,
            file_name,
            meta,
            published: false,
        })
    }

    /// The temporary file being written.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp_path
    }

    /// Appends payload bytes.
    ///
    /// # Errors
    /// I/O errors; [`CheckpointError::Poisoned`] after any earlier error.
    pub fn write_all(&mut self, data: &[u8]) -> Result<(), CheckpointError> {
        let Some(enc) = self.encoder.as_mut() else {
            return Err(CheckpointError::Poisoned {
                path: self.tmp_path.clone(),
            });
        };
        let r = enc.write_all(data);
        if r.is_err() {
            self.encoder = None;
        }
        r
    }

    /// Seals the final chunk, fsyncs the file, renames it to its final name, fsyncs the
    /// directory, and returns what the manifest needs to record it.
    ///
    /// If the directory fsync fails the file may already carry its final name; do not
    /// record it in the manifest (retire it, or let a later checkpoint supersede it).
    ///
    /// # Errors
    /// I/O errors; [`CheckpointError::AlreadyExists`] if the final name appeared meanwhile;
    /// [`CheckpointError::Poisoned`] after any earlier error.
    pub fn finish(mut self) -> Result<CheckpointInfo, CheckpointError> {
        let Some(enc) = self.encoder.take() else {
            return Err(CheckpointError::Poisoned {
                path: self.tmp_path.clone(),
            });
        };
        let out = enc.finish()?;
        let file = out
            .sink
            .into_inner()
            .map_err(|e| io_err("flush", &self.tmp_path)(e.into_error()))?;
        file.file()
            .sync_all()
            .map_err(io_err("fsync", &self.tmp_path))?;
        drop(file);
        if self.fs.exists(&self.final_path) {
            return Err(CheckpointError::AlreadyExists {
                path: self.final_path.clone(),
            });
        }
        self.fs
            .rename(&self.tmp_path, &self.final_path)
            .map_err(io_err("rename", &self.tmp_path))?;
        self.published = true;
        self.fs
            .sync_dir(&self.dir)
            .map_err(io_err("fsync directory", &self.dir))?;
        Ok(CheckpointInfo {
            path: self.final_path.clone(),
            file_name: self.file_name.clone(),
            lsn: self.meta.lsn,
            epoch: self.meta.epoch,
            algorithm: out.header.algorithm,
            len: out.len,
            sha256: out.sha256,
            payload_len: out.payload_len,
            chunk_count: out.chunk_count,
        })
    }

    /// Abandons the checkpoint and removes the temporary file.
    ///
    /// # Errors
    /// The error removing the temporary file, if any.
    pub fn abort(mut self) -> Result<(), CheckpointError> {
        self.encoder = None;
        self.published = true; // nothing left for Drop to do
        match self.fs.remove_file(&self.tmp_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", &self.tmp_path)(e)),
        }
    }
}

impl Drop for CheckpointWriter {
    fn drop(&mut self) {
        if !self.published {
            self.encoder = None;
            let _ = self.fs.remove_file(&self.tmp_path);
        }
    }
}

impl Write for CheckpointWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CheckpointWriter::write_all(self, buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    /// A no-op: data is durable only after [`CheckpointWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens a checkpoint file for streaming verification, checking the header, database id,
/// key and (when the file name is a checkpoint name) that the name matches the header LSN.
///
/// # Errors
/// As [`CheckpointDecoder::new`], plus [`CheckpointError::LsnMismatch`] and I/O errors.
pub fn open_checkpoint_stream(
    fs: &dyn FileSystem,
    path: &Path,
    expected_db: DatabaseId,
    mode: OpenMode<'_>,
) -> Result<CheckpointDecoder<FileReader>, CheckpointError> {
    let file = fs
        .open(path, FsMode::Existing)
        .map_err(io_err("open", path))?;
    let len = file.len().map_err(io_err("stat", path))?;
    let reader = FileReader::new(file, 0).map_err(io_err("stat", path))?;
    let decoder = CheckpointDecoder::new(reader, len, path, expected_db, mode)?;
    let name_lsn = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_checkpoint_file_name);
    if let Some(name_lsn) = name_lsn
        && name_lsn != decoder.header().lsn
    {
        return Err(CheckpointError::LsnMismatch {
            path: path.to_path_buf(),
            name_lsn,
            header_lsn: decoder.header().lsn,
        });
    }
    Ok(decoder)
}

/// Opens a checkpoint file in the given mode and verifies all of it before returning.
///
/// # Errors
/// As [`open_checkpoint_stream`] and [`CheckpointDecoder::read_to_end`].
pub fn open_checkpoint_with(
    fs: &dyn FileSystem,
    path: &Path,
    expected_db: DatabaseId,
    mode: OpenMode<'_>,
) -> Result<LoadedCheckpoint, CheckpointError> {
    open_checkpoint_stream(fs, path, expected_db, mode)?.read_to_end()
}

/// Opens a **sealed** checkpoint: authenticates the header (via every chunk's AAD and the
/// key check) and every chunk, and returns the payload only if all of it verified and the
/// final chunk is present. Plaintext files are refused ([`CheckpointError::UnexpectedPlaintext`]).
///
/// # Errors
/// [`CheckpointError::WrongDatabase`], [`CheckpointError::UnknownEpoch`],
/// [`CheckpointError::RetiredEpoch`],
/// [`CheckpointError::WrongKey`], [`CheckpointError::AuthFailed`],
/// [`CheckpointError::Truncated`], [`CheckpointError::BadHeader`], ….
pub fn open_checkpoint<K>(
    fs: &dyn FileSystem,
    path: &Path,
    expected_db: DatabaseId,
    key_for_epoch: impl Fn(KeyEpoch) -> K,
) -> Result<LoadedCheckpoint, CheckpointError>
where
    K: Into<EpochKey>,
{
    open_checkpoint_with(
        fs,
        path,
        expected_db,
        OpenMode::Sealed(&|epoch| key_for_epoch(epoch).into()),
    )
}

/// Opens a **plaintext-mode** checkpoint (for instances without a checkpoint key). Verifies
/// the integrity digests, which detect accidental corruption but not deliberate tampering.
/// Sealed files are refused ([`CheckpointError::KeyRequired`]).
///
/// # Errors
/// As [`open_checkpoint`].
pub fn open_plaintext_checkpoint(
    fs: &dyn FileSystem,
    path: &Path,
    expected_db: DatabaseId,
) -> Result<LoadedCheckpoint, CheckpointError> {
    open_checkpoint_with(fs, path, expected_db, OpenMode::Plaintext)
}

/// A checkpoint file found by [`list_checkpoints`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointEntry {
    /// LSN from the file name (verified against the header when opened).
    pub lsn: Lsn,
    /// Full path.
    pub path: PathBuf,
}

/// Lists `<data_dir>/checkpoints/*.ckpt` in ascending LSN order. Temporary files and other
/// names are ignored; a missing directory yields an empty list. Nothing is opened or
/// verified.
///
/// # Errors
/// I/O errors reading the directory.
pub fn list_checkpoints(
    fs: &dyn FileSystem,
    data_dir: &Path,
) -> Result<Vec<CheckpointEntry>, CheckpointError> {
    let dir = checkpoints_dir(data_dir);
    let mut out = Vec::new();
    for path in list_dir(fs, &dir)? {
        if let Some(lsn) = file_name(&path).and_then(parse_checkpoint_file_name) {
            out.push(CheckpointEntry { lsn, path });
        }
    }
    out.sort_by_key(|e| e.lsn);
    Ok(out)
}

/// Removes the checkpoint at `lsn` (retirement) and fsyncs the directory. Only call this
/// after the manifest records a newer checkpoint and the retirement.
///
/// # Errors
/// I/O errors, including `NotFound`.
pub fn remove_checkpoint(
    fs: &dyn FileSystem,
    data_dir: &Path,
    lsn: Lsn,
) -> Result<(), CheckpointError> {
    let path = checkpoint_path(data_dir, lsn);
    fs.remove_file(&path).map_err(io_err("remove", &path))?;
    let dir = checkpoints_dir(data_dir);
    fs.sync_dir(&dir).map_err(io_err("fsync directory", &dir))
}

/// Removes `*.ckpt.tmp` files left by a crash during a checkpoint and returns their paths.
/// Call only while no [`CheckpointWriter`] is active.
///
/// # Errors
/// I/O errors.
pub fn remove_stale_temp_files(
    fs: &dyn FileSystem,
    data_dir: &Path,
) -> Result<Vec<PathBuf>, CheckpointError> {
    let dir = checkpoints_dir(data_dir);
    let mut removed = Vec::new();
    for p in list_dir(fs, &dir)? {
        let is_tmp = file_name(&p)
            .and_then(|n| n.strip_suffix(TMP_SUFFIX))
            .and_then(parse_checkpoint_file_name)
            .is_some();
        if is_tmp {
            fs.remove_file(&p).map_err(io_err("remove", &p))?;
            removed.push(p);
        }
    }
    if !removed.is_empty() {
        fs.sync_dir(&dir).map_err(io_err("fsync directory", &dir))?;
    }
    Ok(removed)
}

/// The entries of `dir` (a missing directory has none).
fn list_dir(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    match fs.read_dir(dir) {
        Ok(entries) => Ok(entries),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("list", dir)(e)),
    }
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_lexically() {
        assert_eq!(
            checkpoint_file_name(Lsn::new(7)),
            "00000000000000000007.ckpt"
        );
        assert_eq!(
            parse_checkpoint_file_name("00000000000000000007.ckpt"),
            Some(Lsn::new(7))
        );
        assert_eq!(
            parse_checkpoint_file_name(&checkpoint_file_name(Lsn::MAX)),
            Some(Lsn::MAX)
        );
        for bad in [
            "7.ckpt",
            "0000000000000000000x.ckpt",
            "00000000000000000007.ckpt.tmp",
            "99999999999999999999.ckpt",
            "+0000000000000000007.ckpt",
        ] {
            assert_eq!(parse_checkpoint_file_name(bad), None, "{bad}");
        }
        assert!(checkpoint_file_name(Lsn::new(9)) < checkpoint_file_name(Lsn::new(10)));
    }
}
