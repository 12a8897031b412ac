//! Durability helpers: directory fsync and creating directories durably.

use std::io;
use std::path::Path;

use aedb_fs::FileSystem;

/// The directory a file lives in (`.` for a bare relative file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` if it is missing and makes its creation durable by fsyncing its parent.
pub(crate) fn ensure_dir(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    if fs.is_dir(dir) {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    fs.sync_dir(parent_dir(dir))
}
