//! The real file system: `std::fs`, `fallocate` through rustix, read-only `memmap2` maps.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::FallocateFlags;
use rustix::io::Errno;

use crate::{DirLockGuard, DiskFile, FileBytes, FileSystem, OpenMode, SharedFs};

/// The real disk. Stateless; every call is the `std::fs` call of the same name.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl RealFs {
    /// A shared handle to the real file system.
    pub fn shared() -> SharedFs {
        Arc::new(RealFs)
    }
}

#[derive(Debug)]
struct RealFile(File);

impl DiskFile for RealFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        match rustix::fs::fallocate(&self.0, FallocateFlags::empty(), 0, len) {
            Ok(()) => Ok(()),
            Err(errno) if errno == Errno::OPNOTSUPP || errno == Errno::NOSYS => {
                if self.0.metadata()?.len() < len {
                    self.0.set_len(len)?;
                }
                Ok(())
            }
            Err(errno) => Err(errno.into()),
        }
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

#[derive(Debug)]
struct RealLock(#[allow(dead_code)] File);

impl DirLockGuard for RealLock {}

impl FileSystem for RealFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::Create => {
                options.create(true).truncate(false);
            }
            OpenMode::CreateNew => {
                options.create_new(true);
            }
            OpenMode::Truncate => {
                options.create(true).truncate(true);
            }
        }
        Ok(Arc::new(RealFile(options.open(path)?)))
    }

    fn read_whole(&self, path: &Path) -> io::Result<FileBytes> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(FileBytes::Owned(Vec::new()));
        }
        #[allow(unsafe_code)]
        // SAFETY: `Mmap::map` is unsafe because the mapped file could be modified or
        // truncated by another process while the map is alive, which would change bytes
        // behind a `&[u8]` (or raise SIGBUS). aedb maps only files of a data directory it
        // holds the LOCK of (or a stopped directory the offline tools read), and drops
        // every map before it writes to or truncates that file. The map is read-only.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(FileBytes::Mapped(map))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn hard_link(&self, original: &Path, link: &Path) -> io::Result<()> {
        std::fs::hard_link(original, link)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(path)?
            .map(|entry| entry.map(|e| e.path()))
            .collect()
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Box<dyn DirLockGuard>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(RealLock(file))),
            Err(TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    fn try_lock_shared(&self, path: &Path) -> io::Result<Box<dyn DirLockGuard>> {
        let file = File::open(path)?;
        match file.try_lock_shared() {
            Ok(()) => Ok(Box::new(RealLock(file))),
            Err(TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn positional_writes_reads_and_lengths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = RealFs;
        let path = dir.path().join("f");
        let file = fs.open(&path, OpenMode::CreateNew).expect("create");
        assert_eq!(
            fs.open(&path, OpenMode::CreateNew)
                .expect_err("exists")
                .kind(),
            io::ErrorKind::AlreadyExists
        );
        file.write_all_at(b"world", 6).expect("write");
        file.write_all_at(b"hello ", 0).expect("write");
        let mut buf = [0u8; 11];
        file.read_exact_at(&mut buf, 0).expect("read");
        assert_eq!(&buf, b"hello world");
        assert_eq!(file.len().expect("len"), 11);
        file.allocate(4096).expect("allocate");
        assert_eq!(fs.file_len(&path).expect("len"), 4096);
        file.set_len(5).expect("truncate");
        assert_eq!(&fs.read_whole(&path).expect("read")[..], b"hello");
        let truncated = fs.open(&path, OpenMode::Truncate).expect("truncate");
        assert!(truncated.is_empty().expect("len"));
        assert_eq!(
            fs.open(&dir.path().join("missing"), OpenMode::Existing)
                .expect_err("missing")
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn streaming_adapters_and_directory_operations() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = RealFs;
        let sub = dir.path().join("a/b");
        fs.create_dir_all(&sub).expect("mkdir");
        assert!(fs.is_dir(&sub));
        let tmp = sub.join("x.tmp");
        let mut w = crate::FileWriter::new(fs.open(&tmp, OpenMode::Truncate).expect("open"), 0);
        w.write_all(b"abc")
            .and_then(|()| w.write_all(b"def"))
            .expect("write");
        assert_eq!(w.offset(), 6);
        fs.rename(&tmp, &sub.join("x")).expect("rename");
        fs.sync_dir(&sub).expect("sync dir");
        assert_eq!(fs.read_dir(&sub).expect("list"), vec![sub.join("x")]);
        let mut r = crate::FileReader::new(
            fs.open(&sub.join("x"), OpenMode::Existing).expect("open"),
            2,
        )
        .expect("reader");
        let mut s = String::new();
        r.read_to_string(&mut s).expect("read");
        assert_eq!(s, "cdef");
        fs.remove_file(&sub.join("x")).expect("remove");
        assert!(!fs.exists(&sub.join("x")));
    }

    #[test]
    fn a_hard_link_shares_the_inode_and_outlives_the_original() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = RealFs;
        let original = dir.path().join("run");
        crate::write_file(&fs, &original, b"sealed").expect("write");
        let link = dir.path().join("sub/run");
        fs.create_dir_all(&dir.path().join("sub")).expect("mkdir");
        fs.hard_link(&original, &link).expect("link");
        let ino = |p: &Path| std::fs::metadata(p).expect("stat").ino();
        assert_eq!(ino(&original), ino(&link));
        assert_eq!(
            fs.hard_link(&original, &link).expect_err("exists").kind(),
            io::ErrorKind::AlreadyExists
        );
        fs.remove_file(&original).expect("remove");
        assert_eq!(&fs.read_whole(&link).expect("read")[..], b"sealed");
        let missing = fs
            .hard_link(&original, &dir.path().join("x"))
            .expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        assert!(!crate::link_unsupported(&missing));
        assert!(crate::link_unsupported(&io::Error::from_raw_os_error(18)));
    }

    #[test]
    fn a_second_lock_would_block_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = RealFs;
        let path = dir.path().join("LOCK");
        let held = fs.try_lock(&path).expect("lock");
        assert_eq!(
            fs.try_lock(&path).expect_err("held").kind(),
            io::ErrorKind::WouldBlock
        );
        drop(held);
        fs.try_lock(&path).expect("free again");
    }
}
