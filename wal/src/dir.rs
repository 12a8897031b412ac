//! The WAL directory: segment file naming, listing, creation and directory fsync.
//!
//! Segments live at `<wal_dir>/<seq:020>.wal` (zero-padded to 20 digits so lexical
//! order equals numeric order). A segment is first written as `<seq:020>.wal.tmp`, synced,
//! then renamed into place, so a `.wal` file always starts with a complete header. Stray
//! `.wal.tmp` files are leftovers of an interrupted rotation and are removed by recovery.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

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
pub fn segment_paths(dir: &Path) -> Result<Vec<(SegmentSeq, PathBuf)>, WalError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(WalError::io("list directory", dir, err)),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| WalError::io("list directory", dir, err))?;
        let name = entry.file_name();
        if let Some(seq) = name.to_str().and_then(parse_segment_file_name) {
            segments.push((seq, entry.path()));
        }
    }
    segments.sort_by_key(|(seq, _)| *seq);
    Ok(segments)
}

/// Lists leftover `*.wal.tmp` files in `dir` (missing directory: none).
pub(crate) fn temp_files(dir: &Path) -> Result<Vec<PathBuf>, WalError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(WalError::io("list directory", dir, err)),
    };
    let mut temps = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| WalError::io("list directory", dir, err))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(TEMP_SUFFIX))
        {
            temps.push(entry.path());
        }
    }
    temps.sort();
    Ok(temps)
}

/// `fsync`s a directory so that file creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path, faults: &FaultInjector) -> Result<(), WalError> {
    faults
        .check(FaultPoint::DirSync)
        .and_then(|()| File::open(dir)?.sync_all())
        .map_err(|err| WalError::io("fsync directory", dir, err))
}

/// Creates `dir` (and missing parents) if needed; when it had to be created and `sync` is
/// set, fsyncs the directory and its parent so the new entry survives a crash.
pub(crate) fn ensure_dir(dir: &Path, faults: &FaultInjector, sync: bool) -> Result<(), WalError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(WalError::io(
                "open WAL directory",
                dir,
                io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "path exists and is not a directory",
                ),
            ));
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(WalError::io("stat WAL directory", dir, err)),
    }
    fs::create_dir_all(dir).map_err(|err| WalError::io("create WAL directory", dir, err))?;
    if sync {
        sync_dir(dir, faults)?;
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        sync_dir(parent, faults)?;
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
