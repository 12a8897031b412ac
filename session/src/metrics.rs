//! [`IhpMetrics`]: always-on relaxed counters of capsule outcomes, read as a plain
//! [`IhpMetricsSnapshot`] through [`crate::SessionAuthority::metrics`].
//!
//! With the `observability` feature the same events are also emitted through the
//! [`metrics`](https://docs.rs/metrics) facade under the IHP runbook's names:
//!
//! | name | kind | when |
//! |---|---|---|
//! | `ihp_encrypt_success_total` | counter | a capsule was issued |
//! | `ihp_decrypt_success_total` | counter | a capsule verified |
//! | `ihp_header_mismatch_total` | counter | profile, environment-hash or channel mismatch |
//! | `ihp_version_mismatch_total` | counter | unsupported capsule version |
//! | `ihp_tag_failures_total` | counter | a capsule failed authentication (AEAD tag mismatch: altered, forged or under another key) |
//! | `ihp_timestamp_skew_seconds` | histogram | `|now - issued_at|` in seconds, on every verify that reaches the drift check |
//!
//! `ihp_timestamp_skew_seconds` is recorded as raw samples; the exporter decides its
//! shape. For a Prometheus **histogram** (rather than the exporter's default summary)
//! configure the buckets [`TIMESTAMP_SKEW_BUCKETS`] (seconds: 0.01, 0.05, 0.1, 0.5, 1, 5,
//! 15, 30, 60, 120, 300, 600 — fine resolution where clocks agree, then up to twice the
//! production drift limit of 5 min, so `max_timestamp_drift` can be tuned from
//! `histogram_quantile`), e.g. with `metrics-exporter-prometheus`:
//! `PrometheusBuilder::new().set_buckets_for_metric(Matcher::Full(METRIC_TIMESTAMP_SKEW.into()), TIMESTAMP_SKEW_BUCKETS)`
//! (the `prometheus` example of `aedb` does this).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::CapsuleError;

/// Counter name: capsules issued.
pub const METRIC_ENCRYPT_SUCCESS: &str = "ihp_encrypt_success_total";
/// Counter name: capsules verified.
pub const METRIC_DECRYPT_SUCCESS: &str = "ihp_decrypt_success_total";
/// Counter name: header (profile, environment hash, channel) mismatches.
pub const METRIC_HEADER_MISMATCH: &str = "ihp_header_mismatch_total";
/// Counter name: unsupported capsule versions.
pub const METRIC_VERSION_MISMATCH: &str = "ihp_version_mismatch_total";
/// Histogram name: absolute timestamp skew in seconds.
pub const METRIC_TIMESTAMP_SKEW: &str = "ihp_timestamp_skew_seconds";
/// Counter name: capsules that failed authentication (tag mismatch).
pub const METRIC_TAG_FAILURES: &str = "ihp_tag_failures_total";
/// Bucket upper bounds (seconds) that make [`METRIC_TIMESTAMP_SKEW`] a Prometheus
/// histogram (see the module documentation).
pub const TIMESTAMP_SKEW_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Registers the help text of every `ihp_*` metric with the installed `metrics`
/// recorder (exporters such as Prometheus print it as `# HELP`). Call once after
/// installing the recorder.
#[cfg(feature = "observability")]
pub fn describe_metrics() {
    ::metrics::describe_counter!(METRIC_ENCRYPT_SUCCESS, "Session capsules issued.");
    ::metrics::describe_counter!(METRIC_DECRYPT_SUCCESS, "Session capsules verified.");
    ::metrics::describe_counter!(
        METRIC_HEADER_MISMATCH,
        "Capsules refused for a profile, environment-hash or channel-binding mismatch."
    );
    ::metrics::describe_counter!(
        METRIC_VERSION_MISMATCH,
        "Capsules refused for an unsupported format version."
    );
    ::metrics::describe_counter!(
        METRIC_TAG_FAILURES,
        "Capsules refused because they failed authentication (altered, forged or under another key)."
    );
    ::metrics::describe_histogram!(
        METRIC_TIMESTAMP_SKEW,
        "Absolute difference between a capsule's issue time and the verifier's clock, seconds."
    );
}

/// Capsule outcome counters (relaxed atomics; each is monotonic, the set is not a
/// consistent cut).
#[derive(Debug, Default)]
pub struct IhpMetrics {
    encrypt_success: AtomicU64,
    encrypt_failures: AtomicU64,
    decrypt_success: AtomicU64,
    malformed: AtomicU64,
    version_mismatch: AtomicU64,
    header_mismatch: AtomicU64,
    revoked: AtomicU64,
    unknown_epoch: AtomicU64,
    tag_failures: AtomicU64,
    invalid_caller: AtomicU64,
    stale: AtomicU64,
    future: AtomicU64,
    replays: AtomicU64,
    replay_cache_full: AtomicU64,
}

/// A plain copy of [`IhpMetrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IhpMetricsSnapshot {
    /// Capsules issued.
    pub encrypt_success: u64,
    /// Issue attempts refused (revoked profile, system caller, no epoch, randomness).
    pub encrypt_failures: u64,
    /// Capsules verified.
    pub decrypt_success: u64,
    /// [`CapsuleError::Malformed`] on verify.
    pub malformed: u64,
    /// [`CapsuleError::VersionMismatch`].
    pub version_mismatch: u64,
    /// [`CapsuleError::HeaderMismatch`], [`CapsuleError::EnvHashMismatch`] and
    /// [`CapsuleError::ChannelBindingMismatch`].
    pub header_mismatch: u64,
    /// [`CapsuleError::RevokedProfile`] and [`CapsuleError::RevokedEnvHash`] on verify.
    pub revoked: u64,
    /// [`CapsuleError::UnknownEpoch`] and [`CapsuleError::RetiredEpoch`].
    pub unknown_epoch: u64,
    /// [`CapsuleError::TagMismatch`].
    pub tag_failures: u64,
    /// [`CapsuleError::InvalidCaller`].
    pub invalid_caller: u64,
    /// [`CapsuleError::Stale`].
    pub stale: u64,
    /// [`CapsuleError::FromFuture`].
    pub future: u64,
    /// [`CapsuleError::Replayed`].
    pub replays: u64,
    /// [`CapsuleError::ReplayCacheFull`].
    pub replay_cache_full: u64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl IhpMetrics {
    /// A copy of every counter.
    pub fn snapshot(&self) -> IhpMetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IhpMetricsSnapshot {
            encrypt_success: get(&self.encrypt_success),
            encrypt_failures: get(&self.encrypt_failures),
            decrypt_success: get(&self.decrypt_success),
            malformed: get(&self.malformed),
            version_mismatch: get(&self.version_mismatch),
            header_mismatch: get(&self.header_mismatch),
            revoked: get(&self.revoked),
            unknown_epoch: get(&self.unknown_epoch),
            tag_failures: get(&self.tag_failures),
            invalid_caller: get(&self.invalid_caller),
            stale: get(&self.stale),
            future: get(&self.future),
            replays: get(&self.replays),
            replay_cache_full: get(&self.replay_cache_full),
        }
    }

    pub(crate) fn issued(&self) {
        bump(&self.encrypt_success);
        #[cfg(feature = "observability")]
        ::metrics::counter!(METRIC_ENCRYPT_SUCCESS).increment(1);
    }

    pub(crate) fn issue_failed(&self) {
        bump(&self.encrypt_failures);
    }

    pub(crate) fn verified(&self) {
        bump(&self.decrypt_success);
        #[cfg(feature = "observability")]
        ::metrics::counter!(METRIC_DECRYPT_SUCCESS).increment(1);
    }

    /// Records the absolute skew of a capsule that reached the drift check.
    pub(crate) fn skew(&self, abs_skew_micros: u128) {
        #[cfg(feature = "observability")]
        ::metrics::histogram!(METRIC_TIMESTAMP_SKEW).record(abs_skew_micros as f64 / 1e6);
        #[cfg(not(feature = "observability"))]
        let _ = abs_skew_micros;
    }

    /// Counts a verify refusal under its cause.
    pub(crate) fn rejected(&self, err: &CapsuleError) {
        let counter = match err {
            CapsuleError::Malformed { .. } => &self.malformed,
            CapsuleError::VersionMismatch { .. } => {
                #[cfg(feature = "observability")]
                ::metrics::counter!(METRIC_VERSION_MISMATCH).increment(1);
                &self.version_mismatch
            }
            CapsuleError::HeaderMismatch { .. }
            | CapsuleError::EnvHashMismatch { .. }
            | CapsuleError::ChannelBindingMismatch => {
                #[cfg(feature = "observability")]
                ::metrics::counter!(METRIC_HEADER_MISMATCH).increment(1);
                &self.header_mismatch
            }
            CapsuleError::RevokedProfile { .. }
            | CapsuleError::RevokedEnvHash { .. }
            | CapsuleError::RevokedCaller { .. } => &self.revoked,
            CapsuleError::UnknownEpoch { .. } | CapsuleError::RetiredEpoch { .. } => {
                &self.unknown_epoch
            }
            CapsuleError::TagMismatch => {
                #[cfg(feature = "observability")]
                ::metrics::counter!(METRIC_TAG_FAILURES).increment(1);
                &self.tag_failures
            }
            CapsuleError::InvalidCaller(_) => &self.invalid_caller,
            CapsuleError::Stale { .. } => &self.stale,
            CapsuleError::FromFuture { .. } => &self.future,
            CapsuleError::Replayed => &self.replays,
            CapsuleError::ReplayCacheFull { .. } => &self.replay_cache_full,
            // Issue-side errors never come out of verify; count them as malformed rather
            // than dropping them if that ever changes.
            CapsuleError::SystemCaller
            | CapsuleError::NoCurrentEpoch
            | CapsuleError::Randomness { .. } => &self.malformed,
        };
        bump(counter);
    }
}
