//! The file-system seam of aedb.
//!
//! Every file the engine touches (WAL segments, the MANIFEST, checkpoint files, backups,
//! the directory lock) is reached through one small trait, [`FileSystem`], so that the
//! same engine code runs on the real disk ([`RealFs`], `std::fs` plus `memmap2`) or on a
//! simulated one whose power cuts drop what was never synced ([`SimFs`], for tests).
//!
//! This crate owns the trait, its real implementation and the simulated disk. It knows
//! nothing of the formats written through it.
//!
//! The seam is deliberately narrow and positional: files are written with
//! [`DiskFile::write_all_at`] and read with [`DiskFile::read_exact_at`] (plus
//! [`FileSystem::read_whole`] for recovery scans), so an implementation never has to
//! track a cursor, and every durability point is an explicit call
//! ([`DiskFile::sync_data`], [`DiskFile::sync_all`], [`FileSystem::sync_dir`]).
//!
//! ```
//! use aedb_fs::{FileSystem, OpenMode, RealFs};
//!
//! let dir = tempfile::tempdir()?;
//! let fs = RealFs::shared();
//! let path = dir.path().join("data");
//! let file = fs.open(&path, OpenMode::CreateNew)?;
//! file.write_all_at(b"hello", 0)?;
//! file.sync_data()?;
//! fs.sync_dir(dir.path())?;
//! assert_eq!(&fs.read_whole(&path)?[..], b"hello");
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(unsafe_code)]

mod real;
mod sim;

use std::fmt;
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use real::RealFs;
pub use sim::{DiskImage, FaultOp, MAX_DATA_LEN, OpKind, SECTOR_SIZE, SimFault, SimFs, SimOp};

/// How [`FileSystem::open`] opens a file. Every mode opens for reading and writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// Create the file if missing; keep its contents if present.
    Create,
    /// Create the file, failing with [`io::ErrorKind::AlreadyExists`] if present.
    CreateNew,
    /// Create the file if missing and cut it to zero length.
    Truncate,
}

/// An open file. Positional I/O only; cheap to share between threads.
pub trait DiskFile: Send + Sync + fmt::Debug {
    /// Writes all of `buf` at `offset`, extending the file as needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset`; [`io::ErrorKind::UnexpectedEof`] if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Sets the file's length (truncating or zero-extending).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves space up to `len` bytes (reading as zeros) without changing data below.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data (and the metadata needed to read it) durable: `fdatasync`.
    fn sync_data(&self) -> io::Result<()>;
    /// Makes the file's data and all its metadata durable: `fsync`.
    fn sync_all(&self) -> io::Result<()>;
}

/// A file's whole contents, read for a scan: a memory map on the real disk, a copy on a
/// simulated one.
pub enum FileBytes {
    /// A read-only memory map (see [`RealFs::read_whole`] for why it is sound).
    Mapped(memmap2::Mmap),
    /// An owned copy.
    Owned(Vec<u8>),
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Owned(bytes) => bytes,
        }
    }
}

impl fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileBytes({} bytes)", self.len())
    }
}

/// An exclusive advisory lock on a file, held until dropped.
pub trait DirLockGuard: Send + Sync + fmt::Debug {}

/// The file operations aedb performs. Paths are absolute or relative to the process's
/// working directory, exactly as with `std::fs`.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Opens `path` for reading and writing as `mode` says.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>>;
    /// The whole contents of `path` (a map or a copy), for scans.
    fn read_whole(&self, path: &Path) -> io::Result<FileBytes>;
    /// Renames `from` to `to`, replacing `to` if present. Durable only after
    /// [`FileSystem::sync_dir`] of both parents.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path`. Durable only after [`FileSystem::sync_dir`].
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes `link` a second name of the existing file `original` (a hard link: both
    /// names reach the same data, and removing one leaves the other), failing with
    /// [`io::ErrorKind::AlreadyExists`] if `link` exists. Durable only after
    /// [`FileSystem::sync_dir`] of `link`'s directory. Only for files that are never
    /// written again (a write through either name changes both).
    ///
    /// Implementations that cannot link answer [`io::ErrorKind::Unsupported`] (the
    /// default), and a real file system answers `EXDEV` across devices: see
    /// [`link_unsupported`] for the errors after which a caller copies instead.
    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        let _ = (original, link);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// Creates `path` and every missing parent directory.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes the empty directory at `path`. Implementations that cannot remove
    /// directories (the simulated disk) answer [`io::ErrorKind::Unsupported`], which
    /// callers treat as "left in place" (it is only used for cleanup).
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        let _ = path;
        Err(io::ErrorKind::Unsupported.into())
    }
    /// The entries of directory `path` (files and directories), in no particular order.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Makes `path`'s entries (creations, renames, removals) durable: `fsync` of the
    /// directory.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Whether something exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// Whether `path` is a directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// The length of the file at `path`.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Takes an exclusive lock on the file at `path` (created if missing) without
    /// waiting: [`io::ErrorKind::WouldBlock`] when another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn DirLockGuard>>;
    /// Takes a shared lock on the existing file at `path` without waiting (readers that
    /// must not run beside a writer): [`io::ErrorKind::WouldBlock`] while an exclusive
    /// holder has it. Implementations without shared locks may take an exclusive one.
    fn try_lock_shared(&self, path: &Path) -> io::Result<Box<dyn DirLockGuard>> {
        self.try_lock(path)
    }
}

/// Whether a [`FileSystem::hard_link`] failure means "this file system (or this pair of
/// directories) cannot link here" rather than an I/O failure: `EXDEV` (the two paths are
/// on different devices), [`io::ErrorKind::Unsupported`] / `EOPNOTSUPP` (no hard links),
/// `EPERM` (file systems such as FAT, or a hardened `protected_hardlinks` policy) and
/// `EMLINK` (the file has the most links it may have). A caller falls back to a copy after
/// these; any other error (EIO, ENOSPC, a missing source) is a failure.
pub fn link_unsupported(error: &io::Error) -> bool {
    const EPERM: i32 = 1;
    const EXDEV: i32 = 18;
    const EMLINK: i32 = 31;
    const EOPNOTSUPP: i32 = 95;
    matches!(
        error.kind(),
        io::ErrorKind::CrossesDevices | io::ErrorKind::Unsupported | io::ErrorKind::TooManyLinks
    ) || matches!(
        error.raw_os_error(),
        Some(EPERM | EXDEV | EMLINK | EOPNOTSUPP)
    )
}

/// A shared file system handle, as the engine's crates hold it.
pub type SharedFs = Arc<dyn FileSystem>;

/// Writes all of `bytes` to a new file at `path` (replacing it), fsyncs it and returns.
/// The directory entry is durable only after [`FileSystem::sync_dir`].
pub fn write_file(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file = fs.open(path, OpenMode::Truncate)?;
    file.write_all_at(bytes, 0)?;
    file.sync_all()
}

/// Reads the whole file at `path` into a vector.
pub fn read_file(fs: &dyn FileSystem, path: &Path) -> io::Result<Vec<u8>> {
    Ok(fs.read_whole(path)?.to_vec())
}

/// An [`io::Write`] that appends to a [`DiskFile`] from a starting offset (for encoders
/// that stream into a `Write`, wrapped in a `BufWriter`).
#[derive(Debug)]
pub struct FileWriter {
    file: Arc<dyn DiskFile>,
    offset: u64,
}

impl FileWriter {
    /// Writes to `file` from `offset` on.
    pub fn new(file: Arc<dyn DiskFile>, offset: u64) -> FileWriter {
        FileWriter { file, offset }
    }

    /// The offset the next write goes to (the bytes written so far, plus the start).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file.
    pub fn file(&self) -> &Arc<dyn DiskFile> {
        &self.file
    }
}

impl io::Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all_at(buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An [`io::Read`] over a [`DiskFile`] from a starting offset to its length at creation.
#[derive(Debug)]
pub struct FileReader {
    file: Arc<dyn DiskFile>,
    offset: u64,
    end: u64,
}

impl FileReader {
    /// Reads `file` from `offset` to its current end.
    pub fn new(file: Arc<dyn DiskFile>, offset: u64) -> io::Result<FileReader> {
        let end = file.len()?;
        Ok(FileReader { file, offset, end })
    }
}

impl io::Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.offset);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        self.file.read_exact_at(&mut buf[..n], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Whether `bytes[from..to)` holds the zeros a write leaves where one of its sector
/// pieces never reached the disk while a later write did. Sectors are written whole or
/// not at all (only the one being written when the power fails tears, and nothing of the
/// file after it survives), so a lost piece of a write that began at `from` is: a whole
/// [`SECTOR_SIZE`]-aligned sector of zeros; the write's head, `[from, next boundary)`
/// all zero; or its tail, `[a boundary, to)` all zero, `to` being where the next write
/// began (or the end of the file). A bit flip leaves no such zeros. Log readers use it to
/// tell a torn unsynced tail from corruption of acknowledged bytes.
pub fn has_lost_sector_piece(bytes: &[u8], from: usize, to: usize) -> bool {
    let sector = SECTOR_SIZE as usize;
    let zeros = |a: usize, b: usize| bytes.get(a..b).is_some_and(|r| r.iter().all(|&x| x == 0));
    let first_boundary = from.next_multiple_of(sector);
    // The head piece, when the write began mid-sector.
    if first_boundary > from && first_boundary <= to && zeros(from, first_boundary) {
        return true;
    }
    let mut start = first_boundary;
    while start < to {
        let end = start + sector;
        // A whole sector, or the tail piece ending where the next write begins.
        if (end <= to && zeros(start, end)) || (end > to && zeros(start, to)) {
            return true;
        }
        start = end;
    }
    false
}
