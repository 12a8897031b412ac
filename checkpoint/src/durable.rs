//! Durability helpers: directory fsync and creating directories durably.

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// `fsync`s a directory so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory a file lives in (`.` for a bare relative file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` if it is missing and makes its creation durable by fsyncing its parent.
pub(crate) fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    sync_dir(parent_dir(dir))
}
