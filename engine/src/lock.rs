//! The exclusive directory lock (`<data_dir>/LOCK`).

use std::path::{Path, PathBuf};

use aedb_fs::{DirLockGuard, FileSystem, OpenMode};

/// Holds `<data_dir>/LOCK` locked for the life of an instance.
///
/// The lock is an OS advisory lock on an open file (`flock`), so it is released when
/// the process dies, however it dies, and a second open of the same directory — from
/// this process or another — fails with [`LockError::Held`].
#[derive(Debug)]
pub(crate) struct DirLock {
    _guard: Box<dyn DirLockGuard>,
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another instance (this process or another) has the directory open.
    #[error(
        "data directory {} is already open by another aedb instance (LOCK is held{}); close it first",
        .path.display(),
        .holder_pid.map(|pid| format!(" by pid {pid}")).unwrap_or_default()
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The process id the holder recorded in the lock file, when it reads as one.
        holder_pid: Option<u32>,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl DirLock {
    pub(crate) fn acquire(fs: &dyn FileSystem, dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join("LOCK");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let guard = match fs.try_lock(&path) {
            Ok(guard) => guard,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let holder_pid = fs.read_whole(&path).ok().and_then(|b| {
                    std::str::from_utf8(&b)
                        .ok()?
                        .trim()
                        .strip_prefix("pid ")?
                        .parse()
                        .ok()
                });
                return Err(LockError::Held { path, holder_pid });
            }
            Err(e) => return Err(io(e)),
        };
        let file = fs.open(&path, OpenMode::Create).map_err(io)?;
        file.set_len(0).map_err(io)?;
        file.write_all_at(format!("pid {}", std::process::id()).as_bytes(), 0)
            .map_err(io)?;
        Ok(DirLock { _guard: guard })
    }
}
