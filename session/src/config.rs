//! [`IhpConfig`]: timestamp drift, replay-cache capacity and fingerprint limits, built and
//! validated by [`IhpConfigBuilder`].

use std::time::Duration;

use crate::time::duration_micros_saturating;

/// Default `max_timestamp_drift`: 5 minutes (the production value of the IHP runbook).
pub const DEFAULT_MAX_TIMESTAMP_DRIFT: Duration = Duration::from_secs(5 * 60);
/// Largest accepted `max_timestamp_drift`: 24 hours. A longer window keeps capsules
/// replayable-in-principle for longer than any clock skew justifies and makes the replay
/// cache hold a day's worth of capsules.
pub const MAX_TIMESTAMP_DRIFT_CAP: Duration = Duration::from_secs(24 * 60 * 60);
/// Default replay-cache capacity (capsules remembered at once; about 100 bytes each).
pub const DEFAULT_REPLAY_CACHE_CAPACITY: usize = 262_144;
/// Largest accepted replay-cache capacity (about 1.6 GiB of entries at the cap).
pub const MAX_REPLAY_CACHE_CAPACITY: usize = 1 << 24;
/// Default longest accepted server-environment fingerprint field, in bytes.
pub const DEFAULT_MAX_FINGERPRINT_LEN: usize = 256;
/// Largest accepted `max_fingerprint_len`, in bytes.
pub const MAX_FINGERPRINT_LEN_CAP: usize = 4096;

/// Validated settings of the caller session capsules (IHP).
///
/// ```
/// use std::time::Duration;
/// use aedb_session::{IhpConfig, IhpConfigError};
///
/// let config = IhpConfig::builder().max_timestamp_drift(Duration::from_secs(30)).build()?;
/// assert_eq!(config.max_timestamp_drift(), Duration::from_secs(30));
/// assert_eq!(IhpConfig::production().max_timestamp_drift(), Duration::from_secs(300));
/// assert_eq!(
///     IhpConfig::builder().max_timestamp_drift_secs(-5).build(),
///     Err(IhpConfigError::NegativeDrift { secs: -5 })
/// );
/// # Ok::<(), IhpConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IhpConfig {
    max_timestamp_drift: Duration,
    replay_cache_capacity: usize,
    max_fingerprint_len: usize,
}

/// Why an [`IhpConfigBuilder`] refused its settings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IhpConfigError {
    /// `max_timestamp_drift_secs` was negative.
    #[error("max_timestamp_drift cannot be negative (got {secs} s)")]
    NegativeDrift {
        /// The value given.
        secs: i64,
    },
    /// The drift was shorter than one microsecond: no capsule could ever verify.
    #[error("max_timestamp_drift must be at least 1 microsecond")]
    ZeroDrift,
    /// The drift exceeds [`MAX_TIMESTAMP_DRIFT_CAP`] (this includes `Duration::MAX`).
    #[error("max_timestamp_drift of {given:?} exceeds the cap of {max:?}")]
    UnboundedDrift {
        /// The value given.
        given: Duration,
        /// [`MAX_TIMESTAMP_DRIFT_CAP`].
        max: Duration,
    },
    /// `replay_cache_capacity` was zero: every capsule would be refused.
    #[error("replay_cache_capacity must be at least 1")]
    ZeroReplayCapacity,
    /// `replay_cache_capacity` exceeds [`MAX_REPLAY_CACHE_CAPACITY`].
    #[error("replay_cache_capacity of {given} exceeds the cap of {max}")]
    ReplayCapacityTooLarge {
        /// The value given.
        given: usize,
        /// [`MAX_REPLAY_CACHE_CAPACITY`].
        max: usize,
    },
    /// `max_fingerprint_len` was zero: no profile could be hashed.
    #[error("max_fingerprint_len must be at least 1")]
    ZeroFingerprintLen,
    /// `max_fingerprint_len` exceeds [`MAX_FINGERPRINT_LEN_CAP`].
    #[error("max_fingerprint_len of {given} exceeds the cap of {max}")]
    FingerprintLenTooLarge {
        /// The value given.
        given: usize,
        /// [`MAX_FINGERPRINT_LEN_CAP`].
        max: usize,
    },
}

impl IhpConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> IhpConfigBuilder {
        IhpConfigBuilder::default()
    }

    /// The production profile: 5-minute drift, default replay capacity and fingerprint
    /// limit. Equal to [`IhpConfig::default`].
    pub fn production() -> IhpConfig {
        IhpConfig {
            max_timestamp_drift: DEFAULT_MAX_TIMESTAMP_DRIFT,
            replay_cache_capacity: DEFAULT_REPLAY_CACHE_CAPACITY,
            max_fingerprint_len: DEFAULT_MAX_FINGERPRINT_LEN,
        }
    }

    /// How far a capsule's `issued_at` may lie before or after the verifier's clock.
    /// Bounds are inclusive: a capsule exactly `max_timestamp_drift` old still verifies.
    pub fn max_timestamp_drift(&self) -> Duration {
        self.max_timestamp_drift
    }

    /// The drift in whole microseconds (the unit of `issued_at`).
    pub(crate) fn max_timestamp_drift_micros(&self) -> i64 {
        duration_micros_saturating(self.max_timestamp_drift)
    }

    /// Most capsules the replay cache remembers at once. When it is full of capsules that
    /// can still pass the drift check, verification fails closed
    /// ([`crate::CapsuleError::ReplayCacheFull`]).
    pub fn replay_cache_capacity(&self) -> usize {
        self.replay_cache_capacity
    }

    /// Longest accepted field of a [`crate::ServerEnvironmentProfile`], in bytes.
    pub fn max_fingerprint_len(&self) -> usize {
        self.max_fingerprint_len
    }
}

impl Default for IhpConfig {
    fn default() -> IhpConfig {
        IhpConfig::production()
    }
}

/// How the drift was given to the builder (validated only in [`IhpConfigBuilder::build`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DriftInput {
    Duration(Duration),
    Secs(i64),
}

/// Builds an [`IhpConfig`]; every setting is validated in [`IhpConfigBuilder::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IhpConfigBuilder {
    drift: DriftInput,
    replay_cache_capacity: usize,
    max_fingerprint_len: usize,
}

impl Default for IhpConfigBuilder {
    fn default() -> IhpConfigBuilder {
        IhpConfigBuilder {
            drift: DriftInput::Duration(DEFAULT_MAX_TIMESTAMP_DRIFT),
            replay_cache_capacity: DEFAULT_REPLAY_CACHE_CAPACITY,
            max_fingerprint_len: DEFAULT_MAX_FINGERPRINT_LEN,
        }
    }
}

impl IhpConfigBuilder {
    /// Sets the drift window: 1 µs ..= [`MAX_TIMESTAMP_DRIFT_CAP`] (sub-microsecond parts
    /// are truncated).
    pub fn max_timestamp_drift(mut self, drift: Duration) -> IhpConfigBuilder {
        self.drift = DriftInput::Duration(drift);
        self
    }

    /// Sets the drift window in whole seconds, as read from a configuration file. Negative
    /// values are refused by [`IhpConfigBuilder::build`] with
    /// [`IhpConfigError::NegativeDrift`].
    pub fn max_timestamp_drift_secs(mut self, secs: i64) -> IhpConfigBuilder {
        self.drift = DriftInput::Secs(secs);
        self
    }

    /// Sets the replay-cache capacity: 1 ..= [`MAX_REPLAY_CACHE_CAPACITY`].
    pub fn replay_cache_capacity(mut self, capacity: usize) -> IhpConfigBuilder {
        self.replay_cache_capacity = capacity;
        self
    }

    /// Sets the longest accepted fingerprint field: 1 ..= [`MAX_FINGERPRINT_LEN_CAP`].
    pub fn max_fingerprint_len(mut self, len: usize) -> IhpConfigBuilder {
        self.max_fingerprint_len = len;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<IhpConfig, IhpConfigError> {
        let drift = match self.drift {
            DriftInput::Secs(secs) if secs < 0 => {
                return Err(IhpConfigError::NegativeDrift { secs });
            }
            DriftInput::Secs(secs) => Duration::from_secs(secs.unsigned_abs()),
            DriftInput::Duration(drift) => drift,
        };
        if drift > MAX_TIMESTAMP_DRIFT_CAP {
            return Err(IhpConfigError::UnboundedDrift {
                given: drift,
                max: MAX_TIMESTAMP_DRIFT_CAP,
            });
        }
        if drift.as_micros() == 0 {
            return Err(IhpConfigError::ZeroDrift);
        }
        // Whole microseconds only, so the getter reports exactly what is enforced.
        let drift = Duration::from_micros(duration_micros_saturating(drift).unsigned_abs());
        if self.replay_cache_capacity == 0 {
            return Err(IhpConfigError::ZeroReplayCapacity);
        }
        if self.replay_cache_capacity > MAX_REPLAY_CACHE_CAPACITY {
            return Err(IhpConfigError::ReplayCapacityTooLarge {
                given: self.replay_cache_capacity,
                max: MAX_REPLAY_CACHE_CAPACITY,
            });
        }
        if self.max_fingerprint_len == 0 {
            return Err(IhpConfigError::ZeroFingerprintLen);
        }
        if self.max_fingerprint_len > MAX_FINGERPRINT_LEN_CAP {
            return Err(IhpConfigError::FingerprintLenTooLarge {
                given: self.max_fingerprint_len,
                max: MAX_FINGERPRINT_LEN_CAP,
            });
        }
        Ok(IhpConfig {
            max_timestamp_drift: drift,
            replay_cache_capacity: self.replay_cache_capacity,
            max_fingerprint_len: self.max_fingerprint_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(d: Duration) -> Result<IhpConfig, IhpConfigError> {
        IhpConfig::builder().max_timestamp_drift(d).build()
    }

    #[test]
    fn defaults_are_the_production_profile() {
        let config = IhpConfig::default();
        assert_eq!(config, IhpConfig::production());
        assert_eq!(config, IhpConfig::builder().build().unwrap());
        assert_eq!(config.max_timestamp_drift(), Duration::from_secs(300));
        assert_eq!(config.max_timestamp_drift_micros(), 300_000_000);
        assert_eq!(
            config.replay_cache_capacity(),
            DEFAULT_REPLAY_CACHE_CAPACITY
        );
        assert_eq!(config.max_fingerprint_len(), DEFAULT_MAX_FINGERPRINT_LEN);
    }

    #[test]
    fn drift_boundaries() {
        assert_eq!(drift(Duration::ZERO), Err(IhpConfigError::ZeroDrift));
        assert_eq!(
            drift(Duration::from_nanos(999)),
            Err(IhpConfigError::ZeroDrift)
        );
        assert_eq!(
            drift(Duration::from_micros(1))
                .unwrap()
                .max_timestamp_drift(),
            Duration::from_micros(1)
        );
        assert_eq!(
            drift(Duration::from_nanos(1_500))
                .unwrap()
                .max_timestamp_drift(),
            Duration::from_micros(1)
        );
        assert_eq!(
            drift(MAX_TIMESTAMP_DRIFT_CAP)
                .unwrap()
                .max_timestamp_drift(),
            MAX_TIMESTAMP_DRIFT_CAP
        );
        for too_long in [
            MAX_TIMESTAMP_DRIFT_CAP + Duration::from_nanos(1),
            Duration::MAX,
        ] {
            assert_eq!(
                drift(too_long),
                Err(IhpConfigError::UnboundedDrift {
                    given: too_long,
                    max: MAX_TIMESTAMP_DRIFT_CAP
                })
            );
        }
    }

    #[test]
    fn drift_in_signed_seconds() {
        let secs = |s| IhpConfig::builder().max_timestamp_drift_secs(s).build();
        assert_eq!(secs(-1), Err(IhpConfigError::NegativeDrift { secs: -1 }));
        assert_eq!(
            secs(i64::MIN),
            Err(IhpConfigError::NegativeDrift { secs: i64::MIN })
        );
        assert_eq!(secs(0), Err(IhpConfigError::ZeroDrift));
        assert_eq!(
            secs(1).unwrap().max_timestamp_drift(),
            Duration::from_secs(1)
        );
        assert!(secs(86_400).is_ok());
        assert!(matches!(
            secs(86_401),
            Err(IhpConfigError::UnboundedDrift { .. })
        ));
        assert!(matches!(
            secs(i64::MAX),
            Err(IhpConfigError::UnboundedDrift { .. })
        ));
        // The last setter wins.
        let config = IhpConfig::builder()
            .max_timestamp_drift_secs(-3)
            .max_timestamp_drift(Duration::from_secs(9))
            .build()
            .unwrap();
        assert_eq!(config.max_timestamp_drift(), Duration::from_secs(9));
    }

    #[test]
    fn capacity_and_fingerprint_boundaries() {
        let cap = |c| IhpConfig::builder().replay_cache_capacity(c).build();
        assert_eq!(cap(0), Err(IhpConfigError::ZeroReplayCapacity));
        assert_eq!(cap(1).unwrap().replay_cache_capacity(), 1);
        assert!(cap(MAX_REPLAY_CACHE_CAPACITY).is_ok());
        assert_eq!(
            cap(MAX_REPLAY_CACHE_CAPACITY + 1),
            Err(IhpConfigError::ReplayCapacityTooLarge {
                given: MAX_REPLAY_CACHE_CAPACITY + 1,
                max: MAX_REPLAY_CACHE_CAPACITY
            })
        );
        let fp = |l| IhpConfig::builder().max_fingerprint_len(l).build();
        assert_eq!(fp(0), Err(IhpConfigError::ZeroFingerprintLen));
        assert_eq!(fp(1).unwrap().max_fingerprint_len(), 1);
        assert!(fp(MAX_FINGERPRINT_LEN_CAP).is_ok());
        assert!(matches!(
            fp(MAX_FINGERPRINT_LEN_CAP + 1),
            Err(IhpConfigError::FingerprintLenTooLarge { .. })
        ));
    }
}
