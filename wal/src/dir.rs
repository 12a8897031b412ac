//! The WAL directory: segment file naming, listing, creation and directory fsync.
//!
//! Segments live at `<wal_dir>/<seq:020>.wal` (zero-padded to 20 digits so lexical
//! order equals numeric order). A segment is first written as `<seq:020>.wal.tmp`, synced,
//! then renamed into place, so a `.wal` file always starts with a complete header. Stray
//! `.wal.tmp` files are leftovers of an interrupted rotation and are removed by recovery.

use std::io;
use std::path::{Path, PathBuf};

use aedb_fs::FileSystem;

use crate::error::WalError;
use crate::fault::{FaultInjector, FaultPoint};
use crate::segment::SegmentSeq;

/// File extension of a segment.
pub const SEGMENT_EXTENSION: &str = "wal";
const TEMP_SUFFIX: &str = ".wal.tmp";
const SEQ_DIGITS: usize = 20;

/// The file name of segment `seq`, e.g. `00000000000000000007.wal`.
pub fn segment_file_name(seq: SegmentSeq) -> String {
    format!("{:020}.{SEGMENT_EXTENSION}", seq.get())
}

/// The path of segment `seq` inside `dir`.
pub fn segment_path(dir: &Path, seq: SegmentSeq) -> PathBuf {
    dir.join(segment_file_name(seq))
}

/// The temporary path a segment is written at before being renamed into place.
pub(crate) fn temp_segment_path(dir: &Path, seq: SegmentSeq) -> PathBuf {
    dir.join(format!("{:020}{TEMP_SUFFIX}", seq.get()))
}

/// Parses a segment file name (`<20 digits>.wal`); anything else is `None`.
pub fn parse_segment_file_name(name: &str) -> Option<SegmentSeq> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(SegmentSeq::new)
}

/// Lists the segment files in `dir`, sorted by sequence number. A missing directory is
/// an empty log. Files that are not named like segments are ignored.
pub fn segment_paths(
    fs: &dyn FileSystem,
    dir: &Path,
) -> Result<Vec<(SegmentSeq, PathBuf)>, WalError> {
    let mut segments = Vec::new();
    for path in list(fs, dir)? {
        let name = path.file_name().and_then(|n| n.to_str());
        if let Some(seq) = name.and_then(parse_segment_file_name) {
            segments.push((seq, path));
        }
    }
    segments.sort_by_key(|(seq, _)| *seq);
    Ok(segments)
}

/// Lists leftover `*.wal.tmp` files in `dir` (missing directory: none).
pub(crate) fn temp_files(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<PathBuf>, WalError> {
    let mut temps: Vec<PathBuf> = list(fs, dir)?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(TEMP_SUFFIX))
        })
        .collect();
    temps.sort();
    Ok(temps)
}

/// The entries of `dir`; a missing directory has none.
fn list(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<PathBuf>, WalError> {
    match fs.read_dir(dir) {
        Ok(entries) => Ok(entries),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(WalError::io("list directory", dir, err)),
    }
}

/// `fsync`s a directory so that file creations, renames and removals in it are durable.
pub(crate) fn sync_dir(
    fs: &dyn FileSystem,
    dir: &Path,
    faults: &FaultInjector,
) -> Result<(), WalError> {
    faults
        .check(FaultPoint::DirSync)
        .and_then(|()| fs.sync_dir(dir))
        .map_err(|err| WalError::io("fsync directory", dir, err))
}

/// Creates `dir` (and missing parents) if needed; when it had to be created and `sync` is
/// set, fsyncs the directory and its parent so the new entry survives a crash.
pub(crate) fn ensure_dir(
    fs: &dyn FileSystem,
    dir: &Path,
    faults: &FaultInjector,
    sync: bool,
) -> Result<(), WalError> {
    if fs.is_dir(dir) {
        return Ok(());
    }
    if fs.exists(dir) {
        return Err(WalError::io(
            "open WAL directory",
            dir,
            io::Error::new(
                io::ErrorKind::NotADirectory,
                "path exists and is not a directory",
            ),
        ));
    }
    fs.create_dir_all(dir)
        .map_err(|err| WalError::io("create WAL directory", dir, err))?;
    if sync {
        sync_dir(fs, dir, faults)?;
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        sync_dir(fs, parent, faults)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_numerically() {
        let name = segment_file_name(SegmentSeq::new(7));
        assert_eq!(name, "00000000000000000007.wal");
        assert_eq!(parse_segment_file_name(&name), Some(SegmentSeq::new(7)));
        let max = segment_file_name(SegmentSeq::new(u64::MAX));
        assert_eq!(
            parse_segment_file_name(&max),
            Some(SegmentSeq::new(u64::MAX))
        );
        assert!(segment_file_name(SegmentSeq::new(9)) < segment_file_name(SegmentSeq::new(10)));
        for bad in [
            "7.wal",
            "0000000000000000000x.wal",
            "00000000000000000007.wal.tmp",
            "99999999999999999999.wal",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
    }
}
