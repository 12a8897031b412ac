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
pub enum LockError {
    /// Another instance (this process or another) has the directory open.
    #[error(
        "data directory {path} is already open by another aedb instance (LOCK is held{holder}); close it first"
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// Text describing the holder, as recorded in the lock file (may be empty).
        holder: String,
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
                let holder = fs
                    .read_whole(&path)
                    .ok()
                    .and_then(|b| String::from_utf8(b.to_vec()).ok())
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .map(|s| format!(" by {s}"))
                    .unwrap_or_default();
                return Err(LockError::Held { path, holder });
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
