//! [`UnixMicros`]: the clock every capsule operation takes explicitly.
//!
//! Issue and verify never read the system clock themselves: the caller passes `now`, so
//! tests, fixtures and the engine's own clock abstraction decide what time it is.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time as signed microseconds since the Unix epoch (1970-01-01T00:00:00Z).
/// This is the capsule's `issued_at` encoding.
///
/// ```
/// use aedb_session::UnixMicros;
/// let t = UnixMicros::from_micros(1_700_000_000_000_000);
/// assert_eq!(t.as_micros(), 1_700_000_000_000_000);
/// assert_eq!(UnixMicros::try_from(t.to_system_time().unwrap()), Ok(t));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMicros(i64);

/// A [`SystemTime`] outside the range of [`UnixMicros`] (about ±292,000 years).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the time is outside the range of signed 64-bit Unix microseconds")]
pub struct TimeOutOfRange;

impl UnixMicros {
    /// The Unix epoch itself.
    pub const EPOCH: UnixMicros = UnixMicros(0);

    /// Wraps a raw count of microseconds since the Unix epoch.
    pub const fn from_micros(micros: i64) -> UnixMicros {
        UnixMicros(micros)
    }

    /// Whole seconds since the Unix epoch (may be negative).
    pub const fn from_secs(secs: i64) -> UnixMicros {
        UnixMicros(secs.saturating_mul(1_000_000))
    }

    /// The raw count of microseconds since the Unix epoch.
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The system clock now (saturating at the ends of the range, which no real clock
    /// reaches).
    pub fn now() -> UnixMicros {
        UnixMicros(aedb_types::clock::unix_micros())
    }

    /// This time as a [`SystemTime`], or `None` where the platform cannot represent it.
    pub fn to_system_time(self) -> Option<SystemTime> {
        let magnitude = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH.checked_add(magnitude)
        } else {
            UNIX_EPOCH.checked_sub(magnitude)
        }
    }

    /// `self + by`, saturating at the ends of the range.
    pub const fn saturating_add(self, by: Duration) -> UnixMicros {
        let by = duration_micros_saturating(by);
        UnixMicros(self.0.saturating_add(by))
    }

    /// `self - by`, saturating at the ends of the range.
    pub const fn saturating_sub(self, by: Duration) -> UnixMicros {
        let by = duration_micros_saturating(by);
        UnixMicros(self.0.saturating_sub(by))
    }
}

/// A duration in whole microseconds, saturating at `i64::MAX`.
pub(crate) const fn duration_micros_saturating(d: Duration) -> i64 {
    let micros = d.as_micros();
    if micros > i64::MAX as u128 {
        i64::MAX
    } else {
        micros as i64
    }
}

impl TryFrom<SystemTime> for UnixMicros {
    type Error = TimeOutOfRange;

    fn try_from(time: SystemTime) -> Result<UnixMicros, TimeOutOfRange> {
        let micros = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_micros()).map_err(|_| TimeOutOfRange)?,
            Err(before) => i64::try_from(before.duration().as_micros())
                .map_err(|_| TimeOutOfRange)?
                .checked_neg()
                .ok_or(TimeOutOfRange)?,
        };
        Ok(UnixMicros(micros))
    }
}

impl fmt::Display for UnixMicros {
    /// `seconds.micros` since the Unix epoch, e.g. `1700000000.000042`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_saturate() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -86_400_000_000] {
            let t = UnixMicros::from_micros(micros);
            let system = t.to_system_time().unwrap();
            assert_eq!(UnixMicros::try_from(system), Ok(t));
        }
        assert_eq!(UnixMicros::from_secs(2).as_micros(), 2_000_000);
        assert_eq!(
            UnixMicros::from_micros(i64::MAX).saturating_add(Duration::from_secs(1)),
            UnixMicros::from_micros(i64::MAX)
        );
        assert_eq!(
            UnixMicros::from_micros(0).saturating_sub(Duration::MAX),
            UnixMicros::from_micros(-i64::MAX)
        );
        assert_eq!(UnixMicros::from_micros(-1_500_000).to_string(), "-1.500000");
        assert_eq!(UnixMicros::from_micros(42).to_string(), "0.000042");
        assert!(UnixMicros::now() > UnixMicros::from_secs(1_600_000_000));
    }
}
