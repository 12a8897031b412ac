//! The wall clock, read in the units aedb records store.
//!
//! Nothing in aedb injects time through a trait: code that must be testable against a
//! chosen time (IHP capsules, audit rows) takes the time as an argument, and callers
//! read it here.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (zero if the clock is before it, saturating at
/// `u64::MAX`). Manifest and backup records store this.
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Signed microseconds since the Unix epoch (negative before it, saturating at the
/// ends of `i64`). Timestamps and session capsules store this.
pub fn unix_micros() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_after_2020_and_units_agree() {
        let ms = unix_millis();
        let us = unix_micros();
        assert!(ms > 1_577_836_800_000);
        assert!(us / 1000 >= ms as i64 - 60_000);
    }
}
