//! The small shared vocabulary of aedb.
//!
//! This crate owns the newtypes that several aedb crates must agree on, so that no
//! crate has to reach sideways into another for them: [`Lsn`], the log sequence
//! number every commit, WAL frame and row version carries; [`KeyEpoch`], the
//! generation of keys a file is sealed under; [`SegmentSeq`], the number of a WAL
//! segment file; and [`DatabaseId`], the random identity of one database that every
//! sealed file and manifest record is bound to.
//!
//! It owns no behaviour beyond ordering, arithmetic and formatting of those types;
//! encodings on disk belong to the crates that write them (`aedb-wal`, `aedb-model`),
//! but they all read through the one bounds-checked [`reader::ByteReader`] and report
//! the one [`DecodeError`]. It also holds the [`fault`] injector that every crate doing
//! file I/O consults, so tests can fail a WAL, manifest or checkpoint write the same
//! way, and the [`clock`] every record timestamp is read from.
//!
//! ```
//! use aedb_types::Lsn;
//! let first = Lsn::ZERO.next();
//! assert_eq!(first, Lsn::new(1));
//! assert!(first > Lsn::ZERO);
//! assert_eq!(first.to_string(), "1");
//! ```
#![forbid(unsafe_code)]

pub mod clock;
pub mod decode;
pub mod fault;
pub mod reader;

pub use decode::{DecodeError, DecodeErrorKind};
pub use reader::{ByteReader, LenPrefix};

use std::fmt;

/// A log sequence number: the position of a commit in the single-writer history.
///
/// `Lsn::ZERO` means "nothing committed yet"; the first commit gets `Lsn(1)`.
/// LSNs are dense and strictly increasing: the sequencer hands out `next()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(u64);

impl Lsn {
    /// The LSN before any commit.
    pub const ZERO: Lsn = Lsn(0);
    /// The largest representable LSN.
    pub const MAX: Lsn = Lsn(u64::MAX);

    /// Wraps a raw LSN value (as read from disk or given by a user).
    pub const fn new(raw: u64) -> Lsn {
        Lsn(raw)
    }

    /// The raw value, for encoders and metrics.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The LSN after this one.
    ///
    /// # Panics
    /// Never in practice: 2^64 commits cannot be reached; saturates at [`Lsn::MAX`].
    pub const fn next(self) -> Lsn {
        Lsn(self.0.saturating_add(1))
    }

    /// The LSN before this one, or `None` for [`Lsn::ZERO`].
    pub const fn prev(self) -> Option<Lsn> {
        match self.0.checked_sub(1) {
            Some(v) => Some(Lsn(v)),
            None => None,
        }
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<Lsn> for u64 {
    fn from(lsn: Lsn) -> u64 {
        lsn.0
    }
}

/// A key generation. Rotation starts a new epoch; files record the epoch they are
/// sealed under, and older epochs stay decrypt-only until nothing references them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyEpoch(u32);

impl KeyEpoch {
    /// The first epoch of a new database.
    pub const FIRST: KeyEpoch = KeyEpoch(1);

    /// Wraps a raw epoch number (as read from disk).
    pub const fn new(raw: u32) -> KeyEpoch {
        KeyEpoch(raw)
    }

    /// The raw value, for encoders.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The epoch after this one, or `None` at `u32::MAX`.
    pub const fn next(self) -> Option<KeyEpoch> {
        match self.0.checked_add(1) {
            Some(v) => Some(KeyEpoch(v)),
            None => None,
        }
    }
}

impl fmt::Display for KeyEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {}", self.0)
    }
}

/// A segment's sequence number: segment files are numbered 0, 1, 2, … without gaps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentSeq(u64);

impl SegmentSeq {
    /// The first segment of a log.
    pub const FIRST: SegmentSeq = SegmentSeq(0);

    /// Wraps a raw sequence number.
    pub const fn new(raw: u64) -> SegmentSeq {
        SegmentSeq(raw)
    }

    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The following sequence number (saturating; 2^64 segments cannot be reached).
    pub const fn next(self) -> SegmentSeq {
        SegmentSeq(self.0.saturating_add(1))
    }
}

impl fmt::Display for SegmentSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The random 128-bit identity of one database, fixed at creation. Sealed files and
/// manifest records are bound to it, so files cannot be moved between databases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatabaseId([u8; 16]);

impl DatabaseId {
    /// Wraps raw bytes (as generated at creation or read from disk).
    pub const fn from_bytes(bytes: [u8; 16]) -> DatabaseId {
        DatabaseId(bytes)
    }

    /// The raw bytes, for encoders.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for DatabaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_and_prev_are_inverse() {
        let l = Lsn::new(41);
        assert_eq!(l.next().prev(), Some(l));
        assert_eq!(Lsn::ZERO.prev(), None);
        assert_eq!(Lsn::MAX.next(), Lsn::MAX);
    }

    #[test]
    fn epochs_and_ids() {
        assert_eq!(KeyEpoch::FIRST.next(), Some(KeyEpoch::new(2)));
        assert_eq!(KeyEpoch::new(u32::MAX).next(), None);
        assert_eq!(SegmentSeq::FIRST.next(), SegmentSeq::new(1));
        assert_eq!(SegmentSeq::new(7).to_string(), "7");
        let id = DatabaseId::from_bytes([0xAB; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
    }
}
