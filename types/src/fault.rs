//! Fault injection at the engine's I/O sites: WAL segment writes, fsyncs, renames and
//! directory fsyncs, manifest appends, and checkpoint files.
//!
//! A [`FaultInjector`] is per instance (shared by cloning), so parallel tests never
//! interfere. When nothing is armed, [`FaultInjector::check`] costs one relaxed atomic
//! load. When a point is armed and reached, the operation returns an injected
//! [`std::io::Error`] *instead of* performing the real system call — or, for
//! [`FaultKind::ShortWrite`], after writing only the first half of the buffer, which is
//! what a disk that fills up in the middle of a `write` leaves behind. An `ENOSPC`
//! fault has the [`io::ErrorKind::StorageFull`] kind the kernel's error would have.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// An I/O site where a fault can be injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultPoint {
    /// Writing bytes into a segment file (batches, headers, trailers, tail repair).
    Write,
    /// `fdatasync`/`fsync` of a segment file.
    Fsync,
    /// Renaming a freshly created segment into place.
    Rename,
    /// `fsync` of the WAL directory after creating, renaming or removing files.
    DirSync,
    /// Writing or syncing a MANIFEST record (appends, creation and compaction).
    Manifest,
}

impl FaultPoint {
    /// Every fault point.
    pub const ALL: [FaultPoint; 5] = [
        FaultPoint::Write,
        FaultPoint::Fsync,
        FaultPoint::Rename,
        FaultPoint::DirSync,
        FaultPoint::Manifest,
    ];

    const fn index(self) -> usize {
        match self {
            FaultPoint::Write => 0,
            FaultPoint::Fsync => 1,
            FaultPoint::Rename => 2,
            FaultPoint::DirSync => 3,
            FaultPoint::Manifest => 4,
        }
    }
}

/// How often an armed fault point fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultMode {
    /// Fire on the next hit, then disarm that point.
    Once,
    /// Fire on every hit until [`FaultInjector::disarm_all`].
    Always,
}

/// What an armed fault point does when it fires.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// The call fails with an I/O error (`EIO`) and does nothing (the default).
    #[default]
    Eio,
    /// The call fails with `ENOSPC` (disk full) and does nothing.
    NoSpace,
    /// At a write site: the first half of the buffer is written, then the call fails
    /// with `ENOSPC`. At any other site it acts like [`FaultKind::NoSpace`].
    ShortWrite,
}

const MODE_OFF: u8 = 0;
const MODE_ONCE: u8 = 1;
const MODE_ALWAYS: u8 = 2;

#[derive(Default)]
struct Inner {
    /// Fast-path gate: false means no point is armed.
    armed: AtomicBool,
    modes: [AtomicU8; 5],
    kinds: [AtomicU8; 5],
}

/// Per-instance fault injector; `Default` is unarmed. Cheap to clone (one `Arc`).
#[derive(Clone, Default)]
pub struct FaultInjector {
    inner: Arc<Inner>,
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let armed: Vec<(FaultPoint, FaultMode)> = FaultPoint::ALL
            .into_iter()
            .filter_map(|p| self.mode(p).map(|m| (p, m)))
            .collect();
        f.debug_struct("FaultInjector")
            .field("armed", &armed)
            .finish()
    }
}

/// The error payload carried inside an injected [`io::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectedFault {
    /// The point that fired.
    pub point: FaultPoint,
    /// What it did.
    pub kind: FaultKind,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "injected fault at {:?} ({:?})", self.point, self.kind)
    }
}

impl std::error::Error for InjectedFault {}

impl FaultInjector {
    /// A new, unarmed injector.
    pub fn new() -> FaultInjector {
        FaultInjector::default()
    }

    /// Arms `point` with `mode` to fail with `EIO`; every clone of this injector sees it.
    pub fn arm(&self, point: FaultPoint, mode: FaultMode) {
        self.arm_with(point, mode, FaultKind::Eio);
    }

    /// Arms `point` with `mode` to fail as `kind` says.
    pub fn arm_with(&self, point: FaultPoint, mode: FaultMode, kind: FaultKind) {
        let kind = match kind {
            FaultKind::Eio => 0,
            FaultKind::NoSpace => 1,
            FaultKind::ShortWrite => 2,
        };
        self.inner.kinds[point.index()].store(kind, Ordering::SeqCst);
        let raw = match mode {
            FaultMode::Once => MODE_ONCE,
            FaultMode::Always => MODE_ALWAYS,
        };
        self.inner.modes[point.index()].store(raw, Ordering::SeqCst);
        self.inner.armed.store(true, Ordering::SeqCst);
    }

    /// Disarms every point.
    pub fn disarm_all(&self) {
        self.inner.armed.store(false, Ordering::SeqCst);
        for mode in &self.inner.modes {
            mode.store(MODE_OFF, Ordering::SeqCst);
        }
    }

    /// How `point` is currently armed, if at all.
    pub fn mode(&self, point: FaultPoint) -> Option<FaultMode> {
        match self.inner.modes[point.index()].load(Ordering::SeqCst) {
            MODE_ONCE => Some(FaultMode::Once),
            MODE_ALWAYS => Some(FaultMode::Always),
            _ => None,
        }
    }

    /// Called at an I/O site before the real operation: `Err` means "fail here instead".
    ///
    /// Costs one relaxed atomic load when nothing is armed.
    #[inline]
    pub fn check(&self, point: FaultPoint) -> io::Result<()> {
        if !self.inner.armed.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.check_armed(point)
    }

    /// `write(buf)` at `point`: an armed fault fails the write (after `write` got the
    /// first half of `buf` for [`FaultKind::ShortWrite`]).
    #[inline]
    pub fn write_with(
        &self,
        point: FaultPoint,
        buf: &[u8],
        write: impl FnOnce(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        match self.check(point) {
            Ok(()) => write(buf),
            Err(err) => {
                if self.kind(point) == FaultKind::ShortWrite {
                    write(&buf[..buf.len() / 2])?;
                }
                Err(err)
            }
        }
    }

    fn kind(&self, point: FaultPoint) -> FaultKind {
        match self.inner.kinds[point.index()].load(Ordering::SeqCst) {
            1 => FaultKind::NoSpace,
            2 => FaultKind::ShortWrite,
            _ => FaultKind::Eio,
        }
    }

    #[cold]
    fn check_armed(&self, point: FaultPoint) -> io::Result<()> {
        let slot = &self.inner.modes[point.index()];
        let fire = match slot.load(Ordering::SeqCst) {
            MODE_ALWAYS => true,
            // Only one hit may consume a `Once`.
            MODE_ONCE => slot
                .compare_exchange(MODE_ONCE, MODE_OFF, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok(),
            _ => false,
        };
        if fire {
            let kind = self.kind(point);
            let io_kind = match kind {
                FaultKind::Eio => io::ErrorKind::Other,
                FaultKind::NoSpace | FaultKind::ShortWrite => io::ErrorKind::StorageFull,
            };
            Err(io::Error::new(io_kind, InjectedFault { point, kind }))
        } else {
            Ok(())
        }
    }

    /// Whether `err` was produced by a fault injector (and at which point).
    pub fn injected_point(err: &io::Error) -> Option<FaultPoint> {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<InjectedFault>())
            .map(|fault| fault.point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unarmed_never_fires() {
        let faults = FaultInjector::new();
        for point in FaultPoint::ALL {
            assert!(faults.check(point).is_ok());
            assert_eq!(faults.mode(point), None);
        }
    }

    #[test]
    fn once_fires_exactly_once_and_is_visible_to_clones() {
        let faults = FaultInjector::new();
        let clone = faults.clone();
        faults.arm(FaultPoint::Fsync, FaultMode::Once);
        assert!(clone.check(FaultPoint::Write).is_ok());
        let err = clone.check(FaultPoint::Fsync).expect_err("armed");
        assert_eq!(FaultInjector::injected_point(&err), Some(FaultPoint::Fsync));
        assert!(faults.check(FaultPoint::Fsync).is_ok());
    }

    #[test]
    fn always_fires_until_disarmed() {
        let faults = FaultInjector::new();
        faults.arm(FaultPoint::Rename, FaultMode::Always);
        assert!(faults.check(FaultPoint::Rename).is_err());
        assert!(faults.check(FaultPoint::Rename).is_err());
        faults.disarm_all();
        assert!(faults.check(FaultPoint::Rename).is_ok());
        assert_eq!(
            FaultInjector::injected_point(&io::Error::other("real")),
            None
        );
    }

    #[test]
    fn instances_are_independent() {
        let a = FaultInjector::new();
        let b = FaultInjector::new();
        a.arm(FaultPoint::Write, FaultMode::Always);
        assert!(b.check(FaultPoint::Write).is_ok());
    }
}
