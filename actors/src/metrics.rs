//! Engine counters: lock-free atomics written on the hot path, read as a plain struct.
//!
//! Every counter is a relaxed atomic: they are statistics, not synchronisation.
//! [`EngineMetrics::snapshot`] copies them into [`OperationalMetrics`], the plain struct
//! behind `AedbInstance::operational_metrics()`.
//!
//! With the `observability` feature the recording points also emit through the `metrics`
//! facade (see `export`, compiled with the feature), so any installed recorder (Prometheus, OpenTelemetry) sees
//! them; without it they compile to nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use aedb_manifest::RecoveryEventKind;

pub use crate::actor::{OwnerMetrics, OwnerStats};

/// Buckets of a [`Histogram`]: bucket `i` counts values in `[2^(i-1), 2^i)` (bucket 0
/// counts zero).
const BUCKETS: usize = 65;

/// A lock-free power-of-two histogram.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one value.
    pub fn record(&self, value: u64) {
        let idx = (u64::BITS - value.leading_zeros()) as usize;
        self.buckets[idx].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
        self.max.fetch_max(value, Relaxed);
    }

    /// Records a duration in microseconds.
    pub fn record_duration(&self, d: Duration) {
        self.record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Copies the current figures.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            count: self.count.load(Relaxed),
            sum: self.sum.load(Relaxed),
            max: self.max.load(Relaxed),
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let n = b.load(Relaxed);
                    (n > 0).then(|| (bucket_upper_bound(i), n))
                })
                .collect(),
        }
    }
}

fn bucket_upper_bound(i: usize) -> u64 {
    match i {
        0 => 0,
        64 => u64::MAX,
        _ => (1u64 << i) - 1,
    }
}

/// A copy of a [`Histogram`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Values recorded.
    pub count: u64,
    /// Sum of the values.
    pub sum: u64,
    /// Largest value.
    pub max: u64,
    /// `(inclusive upper bound, count)` of each non-empty power-of-two bucket.
    pub buckets: Vec<(u64, u64)>,
}

impl HistogramSnapshot {
    /// Mean value, or 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// Upper bound of the bucket holding quantile `q` (0.0..=1.0): an over-estimate by
    /// at most 2x, capped at the observed maximum.
    pub fn quantile_upper_bound(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for &(bound, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return bound.min(self.max);
            }
        }
        self.max
    }
}

/// Why a commit did not succeed, for the error counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCause {
    /// An assertion evaluated false.
    AssertionFailed,
    /// The transaction broke a schema, limit or namespace rule.
    Invalid,
    /// The mailbox was full and the caller asked not to wait.
    Busy,
    /// The WAL failed (or had already failed) to write or sync.
    WalFailure,
    /// The pipeline is shut down.
    Closed,
    /// Writes are frozen.
    Frozen,
    /// The commit's deadline passed before it was sequenced.
    Timeout,
    /// The admission rate limit refused the commit.
    RateLimited,
}

/// Distinct label values a [`LabeledCounter`] keeps; later ones are counted under
/// [`OTHER_LABEL`] so a metric's cardinality stays bounded whatever callers do.
pub const MAX_LABELS: usize = 256;
/// The label value counts beyond [`MAX_LABELS`] distinct values go to.
pub const OTHER_LABEL: &str = "_other";

/// A counter by one low-cardinality label (a project or caller name; never a key or a
/// value), capped at [`MAX_LABELS`] distinct values.
#[derive(Debug, Default)]
pub struct LabeledCounter {
    counts: parking_lot::Mutex<BTreeMap<String, u64>>,
}

impl LabeledCounter {
    /// Adds one under `label`; returns the label value the count went to (`label`, or
    /// [`OTHER_LABEL`] once the cap is reached).
    pub fn increment(&self, label: &str) -> String {
        let mut counts = self.counts.lock();
        let label = if counts.contains_key(label) || counts.len() < MAX_LABELS {
            label
        } else {
            OTHER_LABEL
        };
        *counts.entry(label.to_owned()).or_default() += 1;
        label.to_owned()
    }

    /// A copy of every count, by label.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().clone()
    }
}

/// Milliseconds since the Unix epoch of the newest backup of each kind (0 = none).
#[derive(Debug, Default)]
pub struct BackupTimes {
    /// The newest full backup.
    pub full_unix_ms: AtomicU64,
    /// The newest incremental backup.
    pub incremental_unix_ms: AtomicU64,
}

impl BackupTimes {
    /// Notes a backup taken at `at_unix_ms` (keeps the newest).
    pub fn record(&self, full: bool, at_unix_ms: u64) {
        let slot = if full {
            &self.full_unix_ms
        } else {
            &self.incremental_unix_ms
        };
        slot.fetch_max(at_unix_ms, Relaxed);
        #[cfg(feature = "observability")]
        export::backup_taken(full, slot.load(Relaxed));
    }

    /// Seconds since the newest backup of each kind `(full, incremental)` at `now_ms`.
    pub fn ages(&self, now_ms: u64) -> (Option<u64>, Option<u64>) {
        let age = |slot: &AtomicU64| match slot.load(Relaxed) {
            0 => None,
            at => Some(now_ms.saturating_sub(at) / 1000),
        };
        (age(&self.full_unix_ms), age(&self.incremental_unix_ms))
    }
}

/// The actor pattern's counters of every owner ([`crate::actor::OwnerRef`] keeps them).
#[derive(Debug)]
pub struct Owners {
    /// The single writer.
    pub sequencer: Arc<OwnerStats>,
    /// The WAL writer (its data path is its batch mailbox, see `wal_queue_depth`).
    pub wal_writer: Arc<OwnerStats>,
    /// The ManifestChain.
    pub manifest: Arc<OwnerStats>,
    /// The CheckpointSealer.
    pub checkpoint: Arc<OwnerStats>,
    /// The Compactor.
    pub compactor: Arc<OwnerStats>,
    /// The Authz actor (secure instances).
    pub authz: Arc<OwnerStats>,
    /// The Audit actor (secure instances).
    pub audit: Arc<OwnerStats>,
}

impl Default for Owners {
    fn default() -> Self {
        let stats = |name| Arc::new(OwnerStats::new(name));
        Owners {
            sequencer: stats("sequencer"),
            wal_writer: stats("wal-writer"),
            manifest: stats("manifest"),
            checkpoint: stats("checkpoint"),
            compactor: stats("compactor"),
            authz: stats("authz"),
            audit: stats("audit"),
        }
    }
}

impl Owners {
    fn snapshot(&self) -> Vec<OwnerMetrics> {
        [
            &self.sequencer,
            &self.wal_writer,
            &self.manifest,
            &self.checkpoint,
            &self.compactor,
            &self.authz,
            &self.audit,
        ]
        .into_iter()
        .map(|s| s.snapshot())
        .collect()
    }
}

/// The LSM's shape and costs at one moment (see [`OperationalMetrics::storage`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StorageMetrics {
    /// Bytes held by the memtables (the active one and those waiting to be flushed).
    pub memtable_bytes: u64,
    /// Memtables (the active one included).
    pub memtables: u64,
    /// Run files per level (level 0 first).
    pub level_runs: Vec<u64>,
    /// Run-file bytes per level (level 0 first).
    pub level_bytes: Vec<u64>,
    /// The oldest LSN `snapshot_at` reads exactly (older ones are refused with
    /// `read.too_old`): the highest retention floor a compaction merged to, kept in the
    /// manifest across restarts. Zero while no compaction dropped history.
    pub oldest_readable_lsn: u64,
    /// Bytes compaction still has to process to bring every level under its target.
    /// Level-0 runs its next compaction moves down unread (a sequential load's) do not
    /// count; a deeper level's excess does, though a move may take it too, so that
    /// part is an upper bound.
    pub pending_compaction_bytes: u64,
    /// Block cache lookups answered from memory since open.
    pub cache_hits: u64,
    /// Block cache lookups that read (and authenticated) a block since open.
    pub cache_misses: u64,
    /// Bytes the block cache holds now, and its capacity.
    pub cache_bytes: u64,
    /// The block cache's capacity in bytes.
    pub cache_capacity: u64,
    /// Bytes of run-table partitions (block index and bloom filter) open runs pin
    /// outside the cache (within the capacity under `TablePlacement::Auto`, which
    /// shrinks the cache by them; beyond it under `TablePlacement::Pinned`).
    pub cache_pinned_bytes: u64,
    /// Run-file bytes written (flushes and compactions) per byte flushed since open
    /// (1.0 before any compaction; 0 before any flush).
    pub write_amplification: f64,
    /// Live run-file bytes per byte of the newest version of every key, estimated from
    /// the deepest level (≥ 1; 0 when there are no runs).
    pub space_amplification: f64,
}

/// The engine's live counters (shared by the actors, read by `operational_metrics`).
#[derive(Debug, Default)]
pub struct EngineMetrics {
    /// Commits applied (both finalities), DDL included.
    pub commits: AtomicU64,
    /// Commits acknowledged after fsync.
    pub durable_commits: AtomicU64,
    /// Commits acknowledged after apply.
    pub visible_commits: AtomicU64,
    /// Retries answered from the idempotency table.
    pub idempotent_replays: AtomicU64,
    /// Commits refused because their idempotency key was used by a different request.
    pub idempotency_mismatches: AtomicU64,
    /// Expired idempotency records compactions dropped (or hid behind a tombstone).
    pub idempotency_expired_dropped: AtomicU64,
    /// Rows of dropped tables compactions dropped (or hid behind a tombstone).
    pub dropped_table_rows: AtomicU64,
    /// Runs compaction moved one level down without rewriting them.
    pub compaction_moved_runs: AtomicU64,
    /// Runs compaction removed unread: all their keys were rows of dropped tables, or
    /// idempotency records past their window.
    pub compaction_dropped_runs: AtomicU64,
    /// Key ranges compactions merged on threads of their own (split merges).
    pub compaction_subcompactions: AtomicU64,
    /// Failures by [`ErrorCause`].
    pub errors_assertion: AtomicU64,
    /// See [`ErrorCause::Invalid`].
    pub errors_invalid: AtomicU64,
    /// See [`ErrorCause::Busy`].
    pub errors_busy: AtomicU64,
    /// See [`ErrorCause::WalFailure`].
    pub errors_wal: AtomicU64,
    /// See [`ErrorCause::Closed`].
    pub errors_closed: AtomicU64,
    /// See [`ErrorCause::Frozen`].
    pub errors_frozen: AtomicU64,
    /// See [`ErrorCause::Timeout`].
    pub errors_timeout: AtomicU64,
    /// See [`ErrorCause::RateLimited`].
    pub errors_rate_limited: AtomicU64,
    /// Commits rejected because a version or value-comparison assertion failed
    /// (optimistic-concurrency conflicts; also counted as assertion failures).
    pub optimistic_conflicts: AtomicU64,
    /// Mailbox figures of every owner, kept by the actor pattern.
    pub owners: Owners,
    /// Successful WAL syncs.
    pub fsyncs: AtomicU64,
    /// WAL sync latency, microseconds.
    pub fsync_latency_us: Histogram,
    /// Submissions per group-commit batch.
    pub batch_size: Histogram,
    /// Bytes handed to the WAL.
    pub wal_bytes: AtomicU64,
    /// Highest LSN known durable.
    pub durable_lsn: AtomicU64,
    /// Highest LSN published to readers.
    pub visible_lsn: AtomicU64,
    /// Frames replayed by the last recovery.
    pub recovery_frames: AtomicU64,
    /// Duration of the last recovery, microseconds.
    pub recovery_micros: AtomicU64,
    /// Bytes of torn tail cut off by the last recovery.
    pub recovery_torn_tail_bytes: AtomicU64,
    /// Checkpoints skipped by the last recovery because they failed to authenticate
    /// (recovery fell back to an older one).
    pub recovery_checkpoint_fallbacks: AtomicU64,
    /// Checkpoints written since open.
    pub checkpoints: AtomicU64,
    /// Memtables frozen (full, or by `checkpoint_now`) since open.
    pub memtables_frozen: AtomicU64,
    /// Write stalls since open: times commits began waiting for a flush or a
    /// compaction (the memory budget's memtables full, or level 0 too deep).
    pub write_stalls: AtomicU64,
    /// Microseconds commits spent stalled since open (ended stalls).
    pub write_stall_micros: AtomicU64,
    /// Commits held back by the write slowdown since open (level 0 between
    /// `CompactionOptions::l0_slowdown_runs` and its stop depth).
    pub write_slowdowns: AtomicU64,
    /// Microseconds commits spent held back by the write slowdown since open.
    pub write_slowdown_micros: AtomicU64,
    /// Compactions completed since open.
    pub compactions: AtomicU64,
    /// Run-file bytes compactions read since open.
    pub compaction_bytes_read: AtomicU64,
    /// Run-file bytes compactions wrote since open.
    pub compaction_bytes_written: AtomicU64,
    /// Run-file bytes flushes wrote since open.
    pub flush_bytes_written: AtomicU64,
    /// Automatic checkpoints that failed.
    pub checkpoint_failures: AtomicU64,
    /// LSN of the newest checkpoint.
    pub checkpoint_lsn: AtomicU64,
    /// Size of the newest checkpoint file written.
    pub checkpoint_bytes: AtomicU64,
    /// Duration of the newest checkpoint, microseconds.
    pub checkpoint_micros: AtomicU64,
    /// The current key epoch.
    pub key_epoch: AtomicU64,
    /// Key epochs retired since open.
    pub key_epochs_retired: AtomicU64,
    /// Caller requests refused by the access policy (secure instances).
    pub authz_denials: AtomicU64,
    /// Grants, revokes and ownership changes applied.
    pub authz_changes: AtomicU64,
    /// Audit rows written.
    pub audit_rows: AtomicU64,
    /// Audit rows that could not be written (the commit failed).
    pub audit_failures: AtomicU64,
    /// Manifest compactions since open.
    pub manifest_compactions: AtomicU64,
    /// Commits rejected by a failed assertion, by the project the assertion reads.
    pub assertion_failures_by_project: LabeledCounter,
    /// Caller requests refused by the access policy, by project (`_global` for
    /// admin-only actions).
    pub authz_denials_by_project: LabeledCounter,
    /// Admin-only actions (those only `GlobalAdmin` may perform) authorised, by caller.
    pub global_admin_actions_by_caller: LabeledCounter,
    /// Grants applied.
    pub grants: AtomicU64,
    /// Revokes applied.
    pub revokes: AtomicU64,
    /// Ownership transfers applied.
    pub ownership_transfers: AtomicU64,
    /// Integrity alerts of the last recovery (places it routed around damage), by kind.
    pub recovery_events: LabeledCounter,
    /// When the newest full and incremental backups were taken.
    pub backups: BackupTimes,
}

impl EngineMetrics {
    /// Counts one commit rejected by a failed assertion reading `project`.
    pub fn count_assertion_failure(&self, project: &str) {
        let _label = self.assertion_failures_by_project.increment(project);
        #[cfg(feature = "observability")]
        export::assertion_failure_in(&_label);
    }

    /// Counts one request refused by the access policy in `project` (`_global` for
    /// admin-only actions).
    pub fn count_denial(&self, project: &str) {
        self.authz_denials.fetch_add(1, Relaxed);
        let _label = self.authz_denials_by_project.increment(project);
        #[cfg(feature = "observability")]
        export::authz_denial(&_label);
    }

    /// Counts one admin-only action authorised for `caller`.
    pub fn count_global_admin_action(&self, caller: &str) {
        let _label = self.global_admin_actions_by_caller.increment(caller);
        #[cfg(feature = "observability")]
        export::global_admin_action(&_label);
    }

    /// Counts one applied policy change of `kind` (`"grant"`, `"revoke"`,
    /// `"ownership_transfer"`; anything else only in `authz_changes`).
    pub fn count_policy_change(&self, kind: &'static str) {
        self.authz_changes.fetch_add(1, Relaxed);
        let c = match kind {
            "grant" => &self.grants,
            "revoke" => &self.revokes,
            "ownership_transfer" => &self.ownership_transfers,
            _ => return,
        };
        c.fetch_add(1, Relaxed);
        #[cfg(feature = "observability")]
        export::policy_change(kind);
    }

    /// Counts one integrity alert of the recovery walk.
    pub fn count_recovery_event(&self, kind: RecoveryEventKind) {
        self.recovery_events.increment(kind.name());
        #[cfg(feature = "observability")]
        export::recovery_event(kind.name());
    }

    /// Counts one failure.
    pub fn count_error(&self, cause: ErrorCause) {
        let c = match cause {
            ErrorCause::AssertionFailed => &self.errors_assertion,
            ErrorCause::Invalid => &self.errors_invalid,
            ErrorCause::Busy => &self.errors_busy,
            ErrorCause::WalFailure => &self.errors_wal,
            ErrorCause::Closed => &self.errors_closed,
            ErrorCause::Frozen => &self.errors_frozen,
            ErrorCause::Timeout => &self.errors_timeout,
            ErrorCause::RateLimited => &self.errors_rate_limited,
        };
        c.fetch_add(1, Relaxed);
    }

    /// Copies every figure into the plain [`OperationalMetrics`] struct.
    pub fn snapshot(&self, wal_queue_depth: usize) -> OperationalMetrics {
        let (full_age, incremental_age) = self.backups.ages(aedb_types::clock::unix_millis());
        #[cfg(feature = "observability")]
        export::backup_ages(full_age, incremental_age);
        OperationalMetrics {
            commits: self.commits.load(Relaxed),
            durable_commits: self.durable_commits.load(Relaxed),
            visible_commits: self.visible_commits.load(Relaxed),
            idempotent_replays: self.idempotent_replays.load(Relaxed),
            idempotency_mismatches: self.idempotency_mismatches.load(Relaxed),
            idempotency_expired_dropped: self.idempotency_expired_dropped.load(Relaxed),
            dropped_table_rows: self.dropped_table_rows.load(Relaxed),
            errors: ErrorCounts {
                assertion_failed: self.errors_assertion.load(Relaxed),
                invalid: self.errors_invalid.load(Relaxed),
                busy: self.errors_busy.load(Relaxed),
                wal_failure: self.errors_wal.load(Relaxed),
                closed: self.errors_closed.load(Relaxed),
                frozen: self.errors_frozen.load(Relaxed),
                timeout: self.errors_timeout.load(Relaxed),
                rate_limited: self.errors_rate_limited.load(Relaxed),
            },
            optimistic_conflicts: self.optimistic_conflicts.load(Relaxed),
            frozen: false,
            freeze_reason: None,
            admission: Vec::new(),
            sequencer_queue_depth: self.owners.sequencer.queue_depth(),
            wal_queue_depth: wal_queue_depth as u64,
            fsyncs: self.fsyncs.load(Relaxed),
            fsync_latency_us: self.fsync_latency_us.snapshot(),
            group_commit_batch_size: self.batch_size.snapshot(),
            wal_bytes: self.wal_bytes.load(Relaxed),
            durable_lsn: self.durable_lsn.load(Relaxed),
            visible_lsn: self.visible_lsn.load(Relaxed),
            recovery_frames: self.recovery_frames.load(Relaxed),
            recovery_micros: self.recovery_micros.load(Relaxed),
            recovery_torn_tail_bytes: self.recovery_torn_tail_bytes.load(Relaxed),
            recovery_checkpoint_fallbacks: self.recovery_checkpoint_fallbacks.load(Relaxed),
            checkpoints: self.checkpoints.load(Relaxed),
            memtables_frozen: self.memtables_frozen.load(Relaxed),
            write_stalls: self.write_stalls.load(Relaxed),
            write_stall_micros: self.write_stall_micros.load(Relaxed),
            write_slowdowns: self.write_slowdowns.load(Relaxed),
            write_slowdown_micros: self.write_slowdown_micros.load(Relaxed),
            compactions: self.compactions.load(Relaxed),
            compaction_bytes_read: self.compaction_bytes_read.load(Relaxed),
            compaction_bytes_written: self.compaction_bytes_written.load(Relaxed),
            compaction_moved_runs: self.compaction_moved_runs.load(Relaxed),
            compaction_dropped_runs: self.compaction_dropped_runs.load(Relaxed),
            compaction_subcompactions: self.compaction_subcompactions.load(Relaxed),
            flush_bytes_written: self.flush_bytes_written.load(Relaxed),
            storage: StorageMetrics::default(),
            checkpoint_failures: self.checkpoint_failures.load(Relaxed),
            checkpoint_lsn: self.checkpoint_lsn.load(Relaxed),
            checkpoint_bytes: self.checkpoint_bytes.load(Relaxed),
            checkpoint_micros: self.checkpoint_micros.load(Relaxed),
            key_epoch: self.key_epoch.load(Relaxed),
            key_epochs_retired: self.key_epochs_retired.load(Relaxed),
            authz_denials: self.authz_denials.load(Relaxed),
            authz_changes: self.authz_changes.load(Relaxed),
            audit_rows: self.audit_rows.load(Relaxed),
            audit_failures: self.audit_failures.load(Relaxed),
            manifest_compactions: self.manifest_compactions.load(Relaxed),
            owners: self.owners.snapshot(),
            assertion_failures_by_project: self.assertion_failures_by_project.snapshot(),
            authz_denials_by_project: self.authz_denials_by_project.snapshot(),
            global_admin_actions_by_caller: self.global_admin_actions_by_caller.snapshot(),
            grants: self.grants.load(Relaxed),
            revokes: self.revokes.load(Relaxed),
            ownership_transfers: self.ownership_transfers.load(Relaxed),
            recovery_events: self.recovery_events.snapshot(),
            last_full_backup_age_seconds: full_age,
            last_incremental_backup_age_seconds: incremental_age,
        }
    }
}

/// `metrics` facade emission of the engine's figures (`observability` feature).
///
/// Each function is called next to the matching [`EngineMetrics`] update; with no recorder
/// installed the `metrics` macros are a no-op.
#[cfg(feature = "observability")]
pub mod export {
    use std::time::Duration;

    /// Histogram: seconds from submitting a commit to its answer (`aedb_commit_latency_seconds`).
    pub const COMMIT_LATENCY: &str = "aedb_commit_latency_seconds";
    /// Histogram: seconds per successful WAL `fdatasync`.
    pub const FSYNC_LATENCY: &str = "aedb_fsync_latency_seconds";
    /// Histogram: submissions per group-commit batch.
    pub const BATCH_SIZE: &str = "aedb_group_commit_batch_size";
    /// Counter: commits applied (both finalities), DDL included.
    pub const COMMITS: &str = "aedb_commits_total";
    /// Counter: caller requests refused by the access policy.
    pub const AUTHZ_DENIALS: &str = "aedb_authz_denials_total";
    /// Counter: commits rejected by a failed assertion, by `project`.
    pub const ASSERTION_FAILURES: &str = "aedb_assertion_failures_total";
    /// Counter: admin-only actions authorised (only `GlobalAdmin` may perform them), by
    /// `caller`.
    pub const GLOBAL_ADMIN_ACTIONS: &str = "aedb_global_admin_actions_total";
    /// Counter: policy changes applied, by `change` (`grant`, `revoke`,
    /// `ownership_transfer`).
    pub const POLICY_CHANGES: &str = "aedb_policy_changes_total";
    /// Counter: integrity alerts of recovery, by `event`.
    pub const RECOVERY_EVENTS: &str = "aedb_recovery_events_total";
    /// Gauge: Unix time (seconds) of the newest backup, by `kind` (`full`,
    /// `incremental`).
    pub const BACKUP_LAST_TIMESTAMP: &str = "aedb_backup_last_timestamp_seconds";
    /// Gauge: seconds since the newest backup at the last metrics read, by `kind`.
    pub const BACKUP_AGE: &str = "aedb_backup_age_seconds";
    /// Counter: audit rows written.
    pub const AUDIT_ROWS: &str = "aedb_audit_rows_total";
    /// Gauge: commits submitted to the sequencer and not yet handled by it.
    pub const SEQUENCER_QUEUE_DEPTH: &str = "aedb_sequencer_queue_depth";
    /// Gauge: messages sent to an owner and not yet handled, by `owner`.
    pub const OWNER_QUEUE_DEPTH: &str = "aedb_owner_queue_depth";

    /// Registers the help text of every `aedb_*` metric with the installed recorder
    /// (Prometheus prints it as `# HELP`). Call once after installing the recorder.
    pub fn describe_metrics() {
        metrics::describe_histogram!(
            COMMIT_LATENCY,
            "Seconds from submitting a commit to its answer (visible or durable)."
        );
        metrics::describe_histogram!(FSYNC_LATENCY, "Seconds per successful WAL fdatasync.");
        metrics::describe_histogram!(BATCH_SIZE, "Commits per WAL group-commit batch.");
        metrics::describe_counter!(COMMITS, "Commits applied (both finalities), DDL included.");
        metrics::describe_counter!(
            AUTHZ_DENIALS,
            "Caller requests refused by the access policy, by project (_global: admin-only actions)."
        );
        metrics::describe_counter!(
            ASSERTION_FAILURES,
            "Commits rejected by a failed assertion, by the project the assertion reads."
        );
        metrics::describe_counter!(
            GLOBAL_ADMIN_ACTIONS,
            "Admin-only actions authorised through GlobalAdmin, by caller."
        );
        metrics::describe_counter!(
            POLICY_CHANGES,
            "Policy changes applied, by change (grant, revoke, ownership_transfer)."
        );
        metrics::describe_counter!(
            RECOVERY_EVENTS,
            "Integrity alerts: places recovery routed around damage, by event."
        );
        metrics::describe_gauge!(
            BACKUP_LAST_TIMESTAMP,
            "Unix time in seconds of the newest backup, by kind (full, incremental)."
        );
        metrics::describe_gauge!(
            BACKUP_AGE,
            "Seconds since the newest backup at the last metrics read, by kind."
        );
        metrics::describe_counter!(AUDIT_ROWS, "Audit rows written.");
        metrics::describe_gauge!(
            SEQUENCER_QUEUE_DEPTH,
            "Commits submitted to the sequencer and not yet handled by it."
        );
        metrics::describe_gauge!(
            OWNER_QUEUE_DEPTH,
            "Messages sent to an owner (actor) and not yet handled, by owner."
        );
    }

    /// One commit answered after `latency`.
    pub fn commit_latency(latency: Duration) {
        metrics::histogram!(COMMIT_LATENCY).record(latency.as_secs_f64());
    }

    /// One successful WAL sync that took `latency`.
    pub fn fsync_latency(latency: Duration) {
        metrics::histogram!(FSYNC_LATENCY).record(latency.as_secs_f64());
    }

    /// One group-commit batch of `submissions`.
    pub fn batch_size(submissions: usize) {
        metrics::histogram!(BATCH_SIZE).record(submissions as f64);
    }

    /// One commit applied.
    pub fn commit() {
        metrics::counter!(COMMITS).increment(1);
    }

    /// One request refused by the access policy in `project`.
    pub fn authz_denial(project: &str) {
        metrics::counter!(AUTHZ_DENIALS, "project" => project.to_owned()).increment(1);
    }

    /// One commit rejected by a failed assertion reading `project`.
    pub fn assertion_failure_in(project: &str) {
        metrics::counter!(ASSERTION_FAILURES, "project" => project.to_owned()).increment(1);
    }

    /// One admin-only action authorised for `caller`.
    pub fn global_admin_action(caller: &str) {
        metrics::counter!(GLOBAL_ADMIN_ACTIONS, "caller" => caller.to_owned()).increment(1);
    }

    /// One policy change of `change` applied.
    pub fn policy_change(change: &'static str) {
        metrics::counter!(POLICY_CHANGES, "change" => change).increment(1);
    }

    /// One integrity alert of recovery.
    pub fn recovery_event(event: &'static str) {
        metrics::counter!(RECOVERY_EVENTS, "event" => event).increment(1);
    }

    /// The newest backup of its kind is now the one at `at_unix_ms`.
    pub fn backup_taken(full: bool, at_unix_ms: u64) {
        let kind = if full { "full" } else { "incremental" };
        metrics::gauge!(BACKUP_LAST_TIMESTAMP, "kind" => kind).set(at_unix_ms as f64 / 1000.0);
    }

    /// Backup ages at a metrics read (`None`: no backup of that kind).
    pub fn backup_ages(full: Option<u64>, incremental: Option<u64>) {
        for (kind, age) in [("full", full), ("incremental", incremental)] {
            if let Some(age) = age {
                metrics::gauge!(BACKUP_AGE, "kind" => kind).set(age as f64);
            }
        }
    }

    /// `rows` audit rows written.
    pub fn audit_rows(rows: u64) {
        metrics::counter!(AUDIT_ROWS).increment(rows);
    }

    /// A commit entered (`+1.0`) or left (`-1.0`) the sequencer's queue.
    pub fn owner_queue(owner: &'static str, delta: f64) {
        if owner == "sequencer" {
            metrics::gauge!(SEQUENCER_QUEUE_DEPTH).increment(delta);
        }
        metrics::gauge!(OWNER_QUEUE_DEPTH, "owner" => owner).increment(delta);
    }
}

/// Failures by cause.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Commits rejected by a failed assertion.
    pub assertion_failed: u64,
    /// Commits rejected for breaking a schema, limit or namespace rule.
    pub invalid: u64,
    /// Commits refused because a mailbox was full.
    pub busy: u64,
    /// Commits failed by a WAL write/sync error or fail-stop.
    pub wal_failure: u64,
    /// Commits refused because the instance is shut down.
    pub closed: u64,
    /// Commits refused because writes are frozen.
    pub frozen: u64,
    /// Commits refused because their deadline passed before they were sequenced
    /// (the runbook's "commit timeout" signal).
    pub timeout: u64,
    /// Commits refused by the admission rate limits.
    pub rate_limited: u64,
}

/// A plain snapshot of the engine's operational figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperationalMetrics {
    /// Commits applied (both finalities), DDL included.
    pub commits: u64,
    /// Commits acknowledged after fsync.
    pub durable_commits: u64,
    /// Commits acknowledged after apply.
    pub visible_commits: u64,
    /// Retried commits answered from the idempotency table.
    pub idempotent_replays: u64,
    /// Commits refused with `commit.idempotency_mismatch`: their idempotency key was
    /// used, inside its retention window, by a different request (each is also in
    /// `errors.invalid`).
    pub idempotency_mismatches: u64,
    /// Expired idempotency records compactions dropped since open (past the
    /// configured retention window; see `AedbConfig::idempotency_retention`).
    pub idempotency_expired_dropped: u64,
    /// Rows of dropped tables compactions freed since open: a dropped table's rows stay
    /// on disk, unreachable, until the retention window has passed the drop and a
    /// compaction rewrites them.
    pub dropped_table_rows: u64,
    /// Failures by cause.
    pub errors: ErrorCounts,
    /// Commits rejected because a version or value-comparison assertion failed: the
    /// optimistic-concurrency conflicts of the runbook's "conflict spikes" (each is
    /// also in `errors.assertion_failed`).
    pub optimistic_conflicts: u64,
    /// Whether writes are frozen (`freeze_writes_as`; durable until lifted).
    pub frozen: bool,
    /// The reason given for the freeze in force.
    pub freeze_reason: Option<String>,
    /// Admitted and rate-limited commits per project, sorted by project.
    pub admission: Vec<crate::admission::ProjectAdmission>,
    /// Commits waiting for the sequencer.
    pub sequencer_queue_depth: u64,
    /// Records waiting for the WAL writer.
    pub wal_queue_depth: u64,
    /// Successful WAL syncs (`fdatasync`).
    pub fsyncs: u64,
    /// WAL sync latency in microseconds.
    pub fsync_latency_us: HistogramSnapshot,
    /// Submissions per group-commit batch.
    pub group_commit_batch_size: HistogramSnapshot,
    /// Bytes handed to the WAL.
    pub wal_bytes: u64,
    /// Highest LSN known durable (the durable head).
    pub durable_lsn: u64,
    /// Highest LSN visible to readers (the visible head).
    pub visible_lsn: u64,
    /// Commits the last recovery replayed from the WAL on top of its checkpoint.
    pub recovery_frames: u64,
    /// Duration of the last recovery, microseconds.
    pub recovery_micros: u64,
    /// Torn-tail bytes cut off by the last recovery.
    pub recovery_torn_tail_bytes: u64,
    /// Checkpoints the last recovery skipped because they failed to authenticate.
    pub recovery_checkpoint_fallbacks: u64,
    /// Checkpoints written since open.
    pub checkpoints: u64,
    /// Memtables frozen since open.
    pub memtables_frozen: u64,
    /// Write stalls since open (see `WriteLimits`).
    pub write_stalls: u64,
    /// Microseconds commits spent stalled since open.
    pub write_stall_micros: u64,
    /// Commits held back by the write slowdown since open: level 0 was deep enough
    /// (`l0_slowdown_runs`) that commits were paced to a byte rate rather than run at
    /// full speed into the stop.
    pub write_slowdowns: u64,
    /// Microseconds commits spent held back by the write slowdown since open.
    pub write_slowdown_micros: u64,
    /// Compactions completed since open.
    pub compactions: u64,
    /// Run-file bytes compactions read since open.
    pub compaction_bytes_read: u64,
    /// Run-file bytes compactions wrote since open.
    pub compaction_bytes_written: u64,
    /// Runs compactions moved one level down without rewriting them since open (they
    /// overlapped nothing there: a sequential load is written once).
    pub compaction_moved_runs: u64,
    /// Runs compactions removed without reading them since open: every key in them was
    /// a row of a table dropped at or below the retention floor (dropping a large table
    /// frees its files), or an idempotency record past its window by LSN.
    pub compaction_dropped_runs: u64,
    /// Key ranges compactions merged at once, each on a thread of its own, since open:
    /// merges split over `AedbConfig::compaction_threads` (those behind the writers,
    /// and `compact_now`'s). 0 while every merge runs on the compactor's thread.
    pub compaction_subcompactions: u64,
    /// Run-file bytes flushes wrote since open.
    pub flush_bytes_written: u64,
    /// The LSM now: memtables, levels, block cache, pending compaction and
    /// amplification (filled in by the pipeline from the live version).
    pub storage: StorageMetrics,
    /// Automatic checkpoints that failed.
    pub checkpoint_failures: u64,
    /// LSN of the newest checkpoint (recovery starts there).
    pub checkpoint_lsn: u64,
    /// Size in bytes of the newest checkpoint written since open.
    pub checkpoint_bytes: u64,
    /// Duration of the newest checkpoint written since open, microseconds.
    pub checkpoint_micros: u64,
    /// The current key epoch.
    pub key_epoch: u64,
    /// Key epochs retired since open (no live file needed them any more).
    pub key_epochs_retired: u64,
    /// Caller requests refused by the access policy since open (secure instances).
    pub authz_denials: u64,
    /// Grants, revokes and ownership changes applied since open.
    pub authz_changes: u64,
    /// Audit rows written since open.
    pub audit_rows: u64,
    /// Audit rows lost because their commit failed, since open.
    pub audit_failures: u64,
    /// Manifest compactions since open.
    pub manifest_compactions: u64,
    /// Each owner's mailbox: queue depth, messages handled, send-to-handled latency.
    pub owners: Vec<OwnerMetrics>,
    /// Commits rejected by a failed assertion since open, by the project the failed
    /// assertion reads (the runbook's "repeated failed assertions").
    pub assertion_failures_by_project: BTreeMap<String, u64>,
    /// Requests refused by the access policy since open, by project (`_global` for
    /// admin-only actions).
    pub authz_denials_by_project: BTreeMap<String, u64>,
    /// Admin-only actions (backups, checkpoints, key rotation, audit reads and exports,
    /// metrics reads, session management, project creation) authorised since open, by
    /// caller (the runbook's "unexpected GlobalAdmin usage").
    pub global_admin_actions_by_caller: BTreeMap<String, u64>,
    /// Grants applied since open (the runbook's "unusual permission churn").
    pub grants: u64,
    /// Revokes applied since open.
    pub revokes: u64,
    /// Ownership transfers applied since open.
    pub ownership_transfers: u64,
    /// Integrity alerts of the last recovery, by kind (`checkpoint_fallback`,
    /// `wal_torn_tail`, `manifest_torn_tail`, `lenient_restart`, `segment_lost`,
    /// `file_skipped`); each is also recorded in the manifest.
    pub recovery_events: BTreeMap<String, u64>,
    /// Seconds since the newest full backup recorded in the manifest (`None`: none).
    pub last_full_backup_age_seconds: Option<u64>,
    /// Seconds since the newest incremental backup recorded in the manifest.
    pub last_incremental_backup_age_seconds: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_bound_the_values() {
        let h = Histogram::default();
        for v in [0u64, 1, 2, 3, 100, 1000] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!((s.count, s.sum, s.max), (6, 1106, 1000));
        assert_eq!(s.quantile_upper_bound(0.0), 0);
        assert_eq!(s.quantile_upper_bound(0.5), 3);
        assert_eq!(s.quantile_upper_bound(1.0), 1000);
        assert!(s.quantile_upper_bound(0.8) >= 100);
    }

    #[test]
    fn errors_are_counted_by_cause() {
        let m = EngineMetrics::default();
        m.count_error(ErrorCause::Busy);
        m.count_error(ErrorCause::Busy);
        m.count_error(ErrorCause::AssertionFailed);
        let s = m.snapshot(3);
        assert_eq!(s.errors.busy, 2);
        assert_eq!(s.errors.assertion_failed, 1);
        assert_eq!(s.wal_queue_depth, 3);
    }
}
