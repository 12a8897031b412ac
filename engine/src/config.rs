//! Instance configuration: profiles, knobs, and their validation.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use aedb_checkpoint::Compression as BlockCompression;
pub use aedb_storage::TablePlacement;

use std::sync::Arc;

use aedb_actors::{CheckpointPolicy, Finality, Keyring, RateLimit, RateLimitError, RateLimits};
use aedb_fs::{RealFs, SharedFs};
use aedb_keys::{InMemoryKeyProvider, KeyProvider};
use aedb_model::{IdempotencyRetention, RetentionError};

/// Slowest allowed backup rate limit.
pub(crate) const MIN_BACKUP_RATE: u64 = 1 << 20;
/// Smallest accepted WAL segment size (64 KiB).
pub const MIN_SEGMENT_SIZE: u64 = 64 * 1024;
/// Largest accepted WAL segment size (4 GiB).
pub const MAX_SEGMENT_SIZE: u64 = 4 * 1024 * 1024 * 1024;
/// Longest accepted flush interval for `Visible` finality.
pub const MAX_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// The accepted [`AedbConfig::run_block_size`]s, in bytes.
pub const RUN_BLOCK_SIZES: std::ops::RangeInclusive<usize> = 512..=(1 << 20);
/// Longest [`AedbConfig::commit_spin`].
pub const MAX_COMMIT_SPIN: Duration = Duration::from_millis(10);
/// [`AedbConfig::commit_spin`] on a machine with two or more CPUs: longer than one
/// `fdatasync` of a fast SSD, so a lone commit's answer is usually caught polling.
pub const DEFAULT_COMMIT_SPIN: Duration = Duration::from_micros(200);

/// [`DEFAULT_COMMIT_SPIN`] where another CPU can run the writer while a caller polls;
/// zero on one CPU, where polling would only delay the thread it waits for.
fn default_commit_spin() -> Duration {
    match std::thread::available_parallelism() {
        Ok(n) if n.get() >= 2 => DEFAULT_COMMIT_SPIN,
        _ => Duration::ZERO,
    }
}
/// Longest accepted automatic checkpoint interval.
pub const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Largest accepted mailbox bound.
pub const MAX_QUEUE_BOUND: usize = 1 << 20;

fn in_memory(alias: &str, key: [u8; 32]) -> Arc<dyn KeyProvider> {
    match InMemoryKeyProvider::new(alias, key) {
        Ok(p) => Arc::new(p),
        // The aliases passed here are constants that satisfy the alias rules.
        Err(e) => unreachable!("constant key alias {alias} rejected: {e}"),
    }
}

/// The deployment profile a configuration started from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Durable by default, strict recovery, every durable ack after `fdatasync`.
    Production,
    /// Visible by default with a short flush interval; strict recovery.
    LowLatency,
    /// **No fsync at all** and lenient recovery: for tests and local development only.
    /// A crash or power loss can lose any amount of acknowledged data.
    Development,
}

/// What recovery does on a corrupt (not merely torn) WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Refuse to open, naming the file and offset (production and low-latency).
    Strict,
    /// Replay up to the corruption, cut the log there, and open (development only).
    TruncateAtCorruption,
}

/// Configuration of an [`AedbInstance`](crate::AedbInstance).
///
/// Start from a profile and adjust knobs with the builder methods; everything is
/// checked by [`AedbConfig::validate`] when the instance opens.
///
/// ```
/// use std::time::Duration;
/// use aedb::{AedbConfig, Finality};
/// let config = AedbConfig::production([7u8; 32])
///     .segment_size(16 * 1024 * 1024)
///     .flush_interval(Duration::from_millis(2))
///     .default_finality(Finality::Durable);
/// assert!(config.validate().is_ok());
/// assert!(AedbConfig::development().segment_size(0).validate().is_err());
/// ```
pub struct AedbConfig {
    pub(crate) profile: Profile,
    pub(crate) manifest_provider: Option<Arc<dyn KeyProvider>>,
    pub(crate) data_provider: Option<Arc<dyn KeyProvider>>,
    pub(crate) checkpoints: CheckpointPolicy,
    pub(crate) checkpoint_on_shutdown: bool,
    pub(crate) manifest_compact_after: u64,
    pub(crate) default_finality: Finality,
    pub(crate) recovery: Recovery,
    pub(crate) fsync: bool,
    pub(crate) segment_size: u64,
    pub(crate) preallocate: bool,
    pub(crate) flush_interval: Duration,
    pub(crate) sequencer_queue: usize,
    pub(crate) wal_queue: usize,
    pub(crate) max_batch: usize,
    pub(crate) commit_spin: Duration,
    pub(crate) compaction_threads: usize,
    pub(crate) run_file_bytes: u64,
    pub(crate) backup_bytes_per_sec: Option<u64>,
    pub(crate) backup_hard_links: bool,
    pub(crate) rate_limits: RateLimits,
    pub(crate) backup_policy: Option<BackupPolicy>,
    pub(crate) memory: MemoryBudget,
    pub(crate) history_retention: u64,
    pub(crate) block_compression: BlockCompression,
    pub(crate) run_block_size: usize,
    pub(crate) table_placement: TablePlacement,
    pub(crate) idempotency_retention: IdempotencyRetention,
    pub(crate) fs: SharedFs,
}

/// How much memory the storage engine may hold, whatever the data size: the active
/// memtable (recent writes, frozen and flushed to a run file once full), at most
/// `immutable_memtables` frozen ones waiting for their flush, and the block cache
/// (decrypted data blocks of run files, and their block indexes and bloom filters).
/// Resident memory stays near
/// `memtable_bytes × (1 + immutable_memtables) + block_cache_bytes` plus a constant
/// (a few hundred bytes per open run file, the process itself).
///
/// When writes outrun the flushes (every frozen slot taken) or the compactions (level
/// 0 twenty runs deep), commits wait in the Sequencer until storage catches up (a
/// *write stall*, counted in `operational_metrics().write_stalls`), instead of growing
/// memory; a commit's deadline still applies while it waits. From twelve level-0 runs
/// on, commits are first paced to a byte rate that falls as level 0 deepens (counted in
/// `operational_metrics().write_slowdowns`), so latency grows gradually before a stall.
///
/// ```
/// use aedb::{AedbConfig, MemoryBudget};
/// let config = AedbConfig::production([7u8; 32]).memory_budget(MemoryBudget {
///     memtable_bytes: 32 << 20,
///     block_cache_bytes: 256 << 20,
///     ..MemoryBudget::default()
/// });
/// assert!(config.validate().is_ok());
/// let tiny = MemoryBudget { memtable_bytes: 1, ..MemoryBudget::default() };
/// assert!(AedbConfig::development().memory_budget(tiny).validate().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    /// Freeze and flush the active memtable once it holds this many bytes (default
    /// 64 MiB; 64 KiB ..= 4 GiB).
    pub memtable_bytes: usize,
    /// Frozen memtables that may wait for their flush before commits wait (default 2;
    /// 1 ..= 16).
    pub immutable_memtables: usize,
    /// Bytes of decoded run-file blocks, indexes and filters to cache (default
    /// 128 MiB; at least 64 KiB).
    pub block_cache_bytes: u64,
}

impl Default for MemoryBudget {
    fn default() -> MemoryBudget {
        MemoryBudget {
            memtable_bytes: 64 << 20,
            immutable_memtables: 2,
            block_cache_bytes: 128 << 20,
        }
    }
}

/// Most frozen memtables a budget may allow.
const MAX_IMMUTABLE_MEMTABLES: usize = 16;
const MIN_BUDGET_BYTES: u64 = 64 << 10;
const MAX_MEMTABLE_BYTES: u64 = 4 << 30;
/// Most threads one compaction may use.
const MAX_COMPACTION_THREADS: usize = 64;
/// Largest `run_file_bytes`: level 1's target size (a larger run would keep level 1
/// over its target for good).
const MAX_RUN_FILE_BYTES: u64 = 64 << 20;

impl AedbConfig {
    fn base(profile: Profile, manifest_key: Option<[u8; 32]>) -> AedbConfig {
        AedbConfig {
            profile,
            manifest_provider: manifest_key.map(|k| in_memory("aedb-manifest", k)),
            data_provider: None,
            checkpoints: CheckpointPolicy {
                wal_bytes: 64 * 1024 * 1024,
                interval: Duration::from_secs(600),
            },
            checkpoint_on_shutdown: true,
            manifest_compact_after: 4096,
            backup_bytes_per_sec: None,
            backup_hard_links: true,
            rate_limits: RateLimits::new(),
            backup_policy: None,
            memory: MemoryBudget::default(),
            history_retention: 0,
            block_compression: BlockCompression::Lz4,
            run_block_size: aedb_checkpoint::DEFAULT_RUN_BLOCK_SIZE,
            table_placement: TablePlacement::Auto,
            idempotency_retention: IdempotencyRetention::DEFAULT,
            default_finality: Finality::Durable,
            recovery: Recovery::Strict,
            fsync: true,
            segment_size: 64 * 1024 * 1024,
            preallocate: true,
            flush_interval: Duration::from_millis(5),
            sequencer_queue: 16 * 1024,
            wal_queue: 16 * 1024,
            max_batch: 4096,
            commit_spin: default_commit_spin(),
            compaction_threads: aedb_storage::compaction::CompactionOptions::default().threads,
            run_file_bytes: aedb_storage::compaction::CompactionOptions::default()
                .target_file_bytes,
            fs: RealFs::shared(),
        }
    }

    /// Runs the instance (and the offline tools given this configuration) on `fs`
    /// instead of the real disk: every file operation of the data directory goes through
    /// it. For tests, with `aedb_fs::SimFs`, a simulated disk that loses unsynced writes
    /// on a power cut; the default is [`aedb_fs::RealFs`].
    pub fn with_file_system(mut self, fs: SharedFs) -> Self {
        self.fs = fs;
        self
    }

    /// The file system this configuration runs on.
    pub fn file_system(&self) -> &SharedFs {
        &self.fs
    }

    /// Durable-by-default, strict profile. `manifest_key` is the HMAC key baseline for
    /// the manifest chain (kept zeroizing inside a [`SecretKey`](aedb_keys::SecretKey)).
    pub fn production(manifest_key: [u8; 32]) -> AedbConfig {
        AedbConfig::base(Profile::Production, Some(manifest_key))
    }

    /// Visible-by-default profile with a 1 ms flush interval, still strict.
    pub fn low_latency(manifest_key: [u8; 32]) -> AedbConfig {
        let mut c = AedbConfig::base(Profile::LowLatency, Some(manifest_key));
        c.default_finality = Finality::Visible;
        c.flush_interval = Duration::from_millis(1);
        c
    }

    /// Development profile: **skips fsync** and recovers leniently. Never use it for
    /// data you want to keep; `open` logs a warning to stderr when it is used.
    pub fn development() -> AedbConfig {
        let mut c = AedbConfig::base(Profile::Development, None);
        c.fsync = false;
        c.recovery = Recovery::TruncateAtCorruption;
        c
    }

    /// Encrypts checkpoints and WAL batches at rest (XChaCha20-Poly1305) under subkeys
    /// derived from `key`. Without it, files are integrity-checked but readable.
    pub fn with_checkpoint_key(mut self, key: [u8; 32]) -> Self {
        self.data_provider = Some(in_memory("aedb-data", key));
        self
    }

    /// Replaces both keys with a [`KeyProvider`] (for example an `HsmKeyProvider`):
    /// the manifest MAC key and the at-rest encryption keys are all derived from it.
    pub fn with_key_provider(mut self, provider: Arc<dyn KeyProvider>) -> Self {
        self.manifest_provider = Some(provider.clone());
        self.data_provider = Some(provider);
        self
    }

    /// Compress run-file blocks before sealing them (default [`BlockCompression::Lz4`]).
    /// Measured at 4M keys (`benches/RESULTS.md`): with LZ4 every block is smaller, so
    /// less is encrypted on flush and compaction and less decrypted on a cache miss —
    /// point reads were 34 % faster, the full compaction 35 % faster and open 3x faster
    /// on compressible values, and incompressible blocks only grow by LZ4's few bytes.
    /// `BlockCompression::None` stores blocks as they are. Files written either way stay
    /// readable whatever the setting.
    ///
    /// ```
    /// use aedb::{AedbConfig, BlockCompression};
    /// let config = AedbConfig::development().block_compression(BlockCompression::Lz4);
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn block_compression(mut self, compression: BlockCompression) -> Self {
        self.block_compression = compression;
        self
    }

    /// Target plaintext size of a run file's data blocks (default
    /// [`aedb_checkpoint::DEFAULT_RUN_BLOCK_SIZE`], 4 KiB; [`RUN_BLOCK_SIZES`]: 512 B ..= 1 MiB). A point
    /// read that misses the block cache reads, authenticates, decompresses and decodes
    /// one block, so smaller blocks make such reads cheaper for small values; the block
    /// index grows in proportion (one record per block) and the cache holds more,
    /// smaller entries. Larger blocks favour scans and compress better. Applies to run
    /// files written from now on (flushes and compactions); existing files keep theirs.
    ///
    /// ```
    /// use aedb::AedbConfig;
    /// let config = AedbConfig::production([7u8; 32]).run_block_size(2048);
    /// assert!(config.validate().is_ok());
    /// assert!(config.run_block_size(100).validate().is_err());
    /// ```
    pub fn run_block_size(mut self, bytes: usize) -> Self {
        self.run_block_size = bytes;
        self
    }

    /// About how large the run files compaction writes are (default 16 MiB; 64 KiB ..=
    /// 64 MiB, level 1's size): a merge cuts its output into runs of this size (larger
    /// when one merge would otherwise write more runs than a manifest edit names).
    /// Larger runs mean fewer files and bigger merges; smaller ones let a merge into a
    /// level touch less of it, and split a merge over more threads
    /// ([`AedbConfig::compaction_threads`]: a range is at least a run's worth). Flushes
    /// write one run per memtable whatever this says.
    ///
    /// ```
    /// use aedb::AedbConfig;
    /// let config = AedbConfig::production([7u8; 32]).run_file_bytes(64 << 20);
    /// assert!(config.validate().is_ok());
    /// assert!(config.run_file_bytes(1024).validate().is_err());
    /// ```
    pub fn run_file_bytes(mut self, bytes: u64) -> Self {
        self.run_file_bytes = bytes;
        self
    }

    /// Where open run files keep their tables, the block index and bloom filter every
    /// point read and seek of a run needs, read in partitions of about 4 KiB of index
    /// (and its filter) each. The default, [`TablePlacement::Auto`], pins partitions (a
    /// read of a pinned one touches no shared memory) while they fit in half the block
    /// cache, which gives up what they take, and keeps the rest in the cache: resident
    /// memory stays under the [`MemoryBudget`] whatever the data size. The tables are
    /// about 3 % of the plaintext data (~60 MB at 16M keys of 100-byte values,
    /// `benches/RESULTS.md`); once they outgrow the cache, a point read that misses
    /// loads one partition (a few KiB) besides its data block.
    /// [`TablePlacement::Pinned`] keeps every open run's tables resident instead,
    /// outside the budget: memory then grows with the data by their size, and reads
    /// never reload them; [`TablePlacement::InCache`] never pins.
    ///
    /// ```
    /// use aedb::{AedbConfig, TablePlacement};
    /// let config = AedbConfig::development().run_tables(TablePlacement::Pinned);
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn run_tables(mut self, placement: TablePlacement) -> Self {
        self.table_placement = placement;
        self
    }

    /// Keep every version of the last `lsns` commits readable through
    /// `AedbInstance::snapshot_at` (default 0: compaction keeps only what the newest
    /// state needs; older LSNs stay readable until a compaction drops them). Larger
    /// windows cost disk: compaction keeps the versions the window needs.
    pub fn history_retention(mut self, lsns: u64) -> Self {
        self.history_retention = lsns;
        self
    }

    /// How long idempotency keys are remembered: a retry inside the window gets the
    /// original outcome (or `commit.idempotency_mismatch` if its payload differs); a
    /// retry after it is applied as a **new request**. Records past the window are
    /// dropped by compaction. Default [`IdempotencyRetention::DEFAULT`]: 24 hours or
    /// 10 million LSNs, whichever passes first (at 10 000 keyed commits per second the
    /// LSN limit ends the window after about 17 minutes: raise it if clients retry
    /// later than that under such load). [`IdempotencyRetention::forever`] keeps every
    /// record. A zero window is refused by [`AedbConfig::validate`]
    /// ([`ConfigError::IdempotencyRetention`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use aedb::{AedbConfig, IdempotencyRetention};
    /// let config = AedbConfig::production([7u8; 32]).idempotency_retention(IdempotencyRetention {
    ///     max_lsns: Some(50_000_000),
    ///     max_age: Some(Duration::from_secs(3600)),
    /// });
    /// assert!(config.validate().is_ok());
    /// let zero = AedbConfig::production([7u8; 32])
    ///     .idempotency_retention(IdempotencyRetention::age(Duration::ZERO));
    /// assert!(zero.validate().is_err());
    /// ```
    pub fn idempotency_retention(mut self, retention: IdempotencyRetention) -> Self {
        self.idempotency_retention = retention;
        self
    }

    /// The storage engine's memory budget (see [`MemoryBudget`]).
    pub fn memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.memory = budget;
        self
    }

    /// Take a checkpoint automatically after this many WAL bytes (default 64 MiB).
    pub fn checkpoint_wal_bytes(mut self, bytes: u64) -> Self {
        self.checkpoints.wal_bytes = bytes;
        self
    }

    /// Checkpoint at a clean shutdown (default on): the memtable is flushed to a run
    /// file and the WAL it covered retired, so the next open reads run metadata and
    /// replays nothing. Off, a shutdown only syncs the WAL and the next open replays
    /// what the last checkpoint did not cover.
    ///
    /// ```
    /// let config = aedb::AedbConfig::development().checkpoint_on_shutdown(false);
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn checkpoint_on_shutdown(mut self, on: bool) -> Self {
        self.checkpoint_on_shutdown = on;
        self
    }

    /// Take a checkpoint at least this often while commits arrive (default 10 min).
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoints.interval = interval;
        self
    }

    /// Caps how fast hot backups copy (bytes per second, at least 1 MiB/s), so a
    /// backup leaves the disk and CPU to the commit path; unlimited by default.
    pub fn backup_rate_limit(mut self, bytes_per_sec: u64) -> Self {
        self.backup_bytes_per_sec = Some(bytes_per_sec);
        self
    }

    /// Whether backups may hard-link run files instead of copying them (default true).
    /// Run files are immutable once sealed, so a backup on the data directory's file
    /// system links them (no bytes copied; a compaction that deletes the original leaves
    /// the backup's name); on another device, or a file system without hard links, they
    /// are copied ([`crate::backup::BackupReport::link_fallback`] says why). A linked
    /// backup shares the disk with the database: it survives the database's mistakes
    /// (deletes, compactions, a bad restore), not the disk's failure, and changing a
    /// linked file's permissions changes the live file's. Set false to always copy.
    pub fn backup_hard_links(mut self, allow: bool) -> Self {
        self.backup_hard_links = allow;
        self
    }

    /// Commit admission limits (token buckets on commits per second: global, per
    /// project, per caller), replacing any set before; none by default. Over a limit,
    /// `commit` waits up to the limits' `max_wait` and `try_commit` fails at once, both
    /// with `CommitError::RateLimited` (code `commit.rate_limited`, class Retryable).
    /// The engine's own commits (audit rows, policy) are never limited. An admin can
    /// change them at run time (`AedbInstance::set_rate_limits_as`). Zero or absurd
    /// values are refused by [`AedbConfig::validate`] ([`ConfigError::CommitRateLimit`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use aedb::{AedbConfig, RateLimit, RateLimits};
    /// let config = AedbConfig::production([7u8; 32]).commit_rate_limits(
    ///     RateLimits::new()
    ///         .global(RateLimit::per_second(20_000))
    ///         .per_project(RateLimit::per_second(5_000).burst(200))
    ///         .max_wait(Duration::from_millis(20)),
    /// );
    /// assert!(config.validate().is_ok());
    /// let zero = AedbConfig::production([7u8; 32]).global_commit_rate_limit(RateLimit::per_second(0));
    /// assert!(zero.validate().is_err());
    /// ```
    pub fn commit_rate_limits(mut self, limits: RateLimits) -> Self {
        self.rate_limits = limits;
        self
    }

    /// Limits all commits together (see [`AedbConfig::commit_rate_limits`]).
    pub fn global_commit_rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limits = self.rate_limits.global(limit);
        self
    }

    /// Limits the commits of each project separately (see
    /// [`AedbConfig::commit_rate_limits`]).
    pub fn per_project_commit_rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limits = self.rate_limits.per_project(limit);
        self
    }

    /// Limits each authenticated caller's commits separately (see
    /// [`AedbConfig::commit_rate_limits`]).
    pub fn per_caller_commit_rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limits = self.rate_limits.per_caller(limit);
        self
    }

    /// Longest a waiting commit waits for a rate-limit token (default 100 ms, at most
    /// 60 s).
    pub fn commit_admission_wait(mut self, wait: Duration) -> Self {
        self.rate_limits = self.rate_limits.max_wait(wait);
        self
    }

    /// Compact the manifest once it holds this many records (default 4096, at least
    /// 16): it is rewritten atomically to a single `Compacted` record plus the live set.
    pub fn manifest_compact_after(mut self, records: u64) -> Self {
        self.manifest_compact_after = records;
        self
    }

    /// The keyring the instance uses.
    pub(crate) fn keyring(&self) -> Result<Keyring, aedb_keys::KeyError> {
        match &self.manifest_provider {
            Some(m) => Ok(Keyring::new(m.clone(), self.data_provider.clone())),
            None => {
                let dev = Keyring::development()?;
                Ok(match &self.data_provider {
                    Some(d) => dev.with_data_provider(d.clone()),
                    None => dev,
                })
            }
        }
    }

    /// The provider the backup-manifest MAC key is derived from: the manifest provider,
    /// or for the development profile (no key) a public, fixed development master, so
    /// development backups are chained and checked against accidents but forgeable.
    pub(crate) fn backup_key_provider(&self) -> Result<Arc<dyn KeyProvider>, aedb_keys::KeyError> {
        match &self.manifest_provider {
            Some(m) => Ok(m.clone()),
            None => Ok(Arc::new(InMemoryKeyProvider::new(
                "aedb-development-backup",
                *b"aedb-development-backup-key-v1.0",
            )?)),
        }
    }

    /// Finality of commits that do not ask for one.
    pub fn default_finality(mut self, finality: Finality) -> Self {
        self.default_finality = finality;
        self
    }

    /// WAL segment size in bytes (64 KiB ..= 4 GiB).
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// Whether new WAL segments are preallocated (default true).
    pub fn preallocate(mut self, yes: bool) -> Self {
        self.preallocate = yes;
        self
    }

    /// Longest a `Visible` commit may wait for its fsync (1 µs ..= 10 s).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval;
        self
    }

    /// Bound of the sequencer's mailbox (commits waiting to be sequenced).
    pub fn sequencer_queue(mut self, bound: usize) -> Self {
        self.sequencer_queue = bound;
        self
    }

    /// Bound of the WAL writer's mailbox (records waiting to be written).
    pub fn wal_queue(mut self, bound: usize) -> Self {
        self.wal_queue = bound;
        self
    }

    /// Most records written by one group-commit batch.
    pub fn max_batch(mut self, records: usize) -> Self {
        self.max_batch = records;
        self
    }

    /// Threads one compaction may use while it is behind the writers (commits slowed
    /// or waiting for it) and for [`crate::AedbInstance::compact_now`]: the merge's key
    /// range is split into at most that many parts of at least one output file each,
    /// merged at once on threads of lower CPU priority (subcompactions). Otherwise a
    /// compaction runs on the compactor's one thread, leaving the other cores to
    /// commits. Default: the machine's cores, at most 4; 1 ..= 64.
    ///
    /// ```
    /// use aedb::AedbConfig;
    /// let config = AedbConfig::production([7u8; 32]).compaction_threads(2);
    /// assert!(config.validate().is_ok());
    /// assert!(config.compaction_threads(0).validate().is_err());
    /// ```
    pub fn compaction_threads(mut self, threads: usize) -> Self {
        self.compaction_threads = threads;
        self
    }

    /// How long a lone durable commit (no other in flight) polls for its `fsync`
    /// instead of sleeping, and the Sequencer and the WAL writer for a lone committer's
    /// next commit, before they sleep (at most 10 ms; zero never polls). Polling spares the
    /// wake-up of a sleeping thread on each hand-off, tens of microseconds on a virtual
    /// machine; it spends CPU only while a single committer is active. Default
    /// [`DEFAULT_COMMIT_SPIN`] on a machine with two or more CPUs, zero on one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use aedb::AedbConfig;
    /// let config = AedbConfig::production([7u8; 32]).commit_spin(Duration::ZERO);
    /// assert!(config.validate().is_ok());
    /// assert!(config.commit_spin(Duration::from_secs(1)).validate().is_err());
    /// ```
    pub fn commit_spin(mut self, spin: Duration) -> Self {
        self.commit_spin = spin;
        self
    }

    /// Recovery behaviour on WAL corruption.
    pub fn recovery(mut self, recovery: Recovery) -> Self {
        self.recovery = recovery;
        self
    }

    /// The profile this configuration started from.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Whether WAL writes are followed by `fdatasync`.
    pub fn fsync_enabled(&self) -> bool {
        self.fsync
    }

    /// [`AedbConfig::validate`] plus what `open_production` demands: durable by
    /// default, fsync on, strict recovery, a manifest key.
    pub fn validate_production(&self) -> Result<(), ConfigError> {
        self.validate()?;
        if self.default_finality != Finality::Durable {
            return Err(ConfigError::NotProductionGrade(
                "the default finality must be Durable",
            ));
        }
        if !self.fsync {
            return Err(ConfigError::NotProductionGrade("fsync must be on"));
        }
        if self.recovery != Recovery::Strict {
            return Err(ConfigError::NotProductionGrade("recovery must be strict"));
        }
        if self.manifest_provider.is_none() {
            return Err(ConfigError::NotProductionGrade(
                "a manifest key (or key provider) is required",
            ));
        }
        Ok(())
    }

    /// Checks every knob; `open` calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size) {
            return Err(ConfigError::SegmentSize(self.segment_size));
        }
        if self.flush_interval.is_zero() || self.flush_interval > MAX_FLUSH_INTERVAL {
            return Err(ConfigError::FlushInterval(self.flush_interval));
        }
        if !RUN_BLOCK_SIZES.contains(&self.run_block_size) {
            return Err(ConfigError::RunBlockSize(self.run_block_size));
        }
        if self.commit_spin > MAX_COMMIT_SPIN {
            return Err(ConfigError::CommitSpin(self.commit_spin));
        }
        if !(1..=MAX_COMPACTION_THREADS).contains(&self.compaction_threads) {
            return Err(ConfigError::CompactionThreads(self.compaction_threads));
        }
        if !(MIN_BUDGET_BYTES..=MAX_RUN_FILE_BYTES).contains(&self.run_file_bytes) {
            return Err(ConfigError::RunFileBytes(self.run_file_bytes));
        }
        for (name, bound) in [
            ("sequencer_queue", self.sequencer_queue),
            ("wal_queue", self.wal_queue),
            ("max_batch", self.max_batch),
        ] {
            if bound == 0 || bound > MAX_QUEUE_BOUND {
                return Err(ConfigError::QueueBound { name, bound });
            }
        }
        let m = &self.memory;
        if !(MIN_BUDGET_BYTES..=MAX_MEMTABLE_BYTES).contains(&(m.memtable_bytes as u64))
            || m.block_cache_bytes < MIN_BUDGET_BYTES
            || !(1..=MAX_IMMUTABLE_MEMTABLES).contains(&m.immutable_memtables)
        {
            return Err(ConfigError::MemoryBudget(*m));
        }
        if let Some(policy) = &self.backup_policy {
            check_backup_policy(policy)?;
        }
        self.idempotency_retention
            .validate()
            .map_err(ConfigError::IdempotencyRetention)?;
        if self.manifest_compact_after < 16 {
            return Err(ConfigError::ManifestCompactAfter(
                self.manifest_compact_after,
            ));
        }
        if self
            .backup_bytes_per_sec
            .is_some_and(|b| b < MIN_BACKUP_RATE)
        {
            return Err(ConfigError::BackupRateLimit(
                self.backup_bytes_per_sec.unwrap_or(0),
            ));
        }
        self.rate_limits
            .validate()
            .map_err(ConfigError::CommitRateLimit)?;
        if self.checkpoints.wal_bytes == 0 {
            return Err(ConfigError::CheckpointWalBytes);
        }
        if self.checkpoints.interval.is_zero()
            || self.checkpoints.interval > MAX_CHECKPOINT_INTERVAL
        {
            return Err(ConfigError::CheckpointInterval(self.checkpoints.interval));
        }
        if self.profile != Profile::Development && self.recovery != Recovery::Strict {
            return Err(ConfigError::LenientRecoveryOutsideDevelopment);
        }
        Ok(())
    }
}

impl fmt::Debug for AedbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AedbConfig")
            .field("profile", &self.profile)
            .field(
                "manifest_keys",
                &self.manifest_provider.as_ref().map(|p| p.describe()),
            )
            .field(
                "at_rest_keys",
                &self.data_provider.as_ref().map(|p| p.describe()),
            )
            .field("checkpoints", &self.checkpoints)
            .field("manifest_compact_after", &self.manifest_compact_after)
            .field("default_finality", &self.default_finality)
            .field("recovery", &self.recovery)
            .field("fsync", &self.fsync)
            .field("segment_size", &self.segment_size)
            .field("preallocate", &self.preallocate)
            .field("flush_interval", &self.flush_interval)
            .field("sequencer_queue", &self.sequencer_queue)
            .field("wal_queue", &self.wal_queue)
            .field("max_batch", &self.max_batch)
            .field("commit_spin", &self.commit_spin)
            .field("block_compression", &self.block_compression)
            .field("run_block_size", &self.run_block_size)
            .field("run_file_bytes", &self.run_file_bytes)
            .field("compaction_threads", &self.compaction_threads)
            .field("rate_limits", &self.rate_limits)
            .field("history_retention", &self.history_retention)
            .field("idempotency_retention", &self.idempotency_retention)
            .field("fs", &self.fs)
            .finish()
    }
}

/// A configuration knob is out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A backup policy knob is out of range.
    #[error("backup_policy: {0}")]
    BackupPolicy(&'static str),
    /// Segment size outside 64 KiB ..= 4 GiB.
    #[error("segment_size {0} bytes is out of range: use 64 KiB ..= 4 GiB")]
    SegmentSize(u64),
    /// A memory budget knob is out of range.
    #[error(
        "memory budget {0:?} is out of range: memtable 64 KiB ..= 4 GiB, 1 ..= 16 immutable memtables, block cache at least 64 KiB"
    )]
    MemoryBudget(MemoryBudget),
    /// Flush interval zero or longer than 10 s.
    #[error("flush_interval {0:?} is out of range: use more than zero and at most 10 s")]
    FlushInterval(Duration),
    /// `run_block_size` outside 512 B ..= 1 MiB.
    #[error("run_block_size {0} bytes is out of range: use 512 B ..= 1 MiB")]
    RunBlockSize(usize),
    /// `commit_spin` longer than 10 ms.
    #[error("commit_spin {0:?} is out of range: use at most 10 ms (zero never polls)")]
    CommitSpin(Duration),
    /// `run_file_bytes` outside 64 KiB ..= 64 MiB.
    #[error("run_file_bytes {0} is out of range: use 64 KiB ..= 64 MiB (level 1's size)")]
    RunFileBytes(u64),
    /// `compaction_threads` zero or more than 64.
    #[error("compaction_threads {0} is out of range: use 1 ..= 64")]
    CompactionThreads(usize),
    /// A mailbox or batch bound is zero or absurd.
    #[error("{name} = {bound} is out of range: use 1 ..= 1048576")]
    QueueBound {
        /// Which knob.
        name: &'static str,
        /// The rejected value.
        bound: usize,
    },
    /// `manifest_compact_after` below 16.
    #[error("manifest_compact_after {0} is too small: use at least 16 records")]
    ManifestCompactAfter(u64),
    /// `checkpoint_wal_bytes(0)`.
    #[error("checkpoint_wal_bytes must be more than zero")]
    CheckpointWalBytes,
    /// Checkpoint interval zero or longer than a day.
    #[error("checkpoint_interval {0:?} is out of range: use more than zero and at most 24 h")]
    CheckpointInterval(Duration),
    /// Lenient recovery was asked for in a strict profile.
    #[error("TruncateAtCorruption recovery is only allowed in the development profile")]
    LenientRecoveryOutsideDevelopment,
    /// `backup_rate_limit` below 1 MiB/s.
    #[error("backup_rate_limit {0} bytes/s is too low: use at least 1 MiB/s")]
    BackupRateLimit(u64),
    /// A commit rate limit is zero, absurd or out of range.
    #[error(transparent)]
    CommitRateLimit(RateLimitError),
    /// An idempotency retention window of zero LSNs or zero time.
    #[error(transparent)]
    IdempotencyRetention(RetentionError),
    /// `open_production` needs a durable-by-default, fsyncing, strict configuration
    /// with a manifest key (`AedbConfig::production(key)`).
    #[error("open_production refuses this configuration: {0}")]
    NotProductionGrade(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_files_are_at_most_level_1s_size() {
        let level1 = aedb_storage::compaction::CompactionOptions::default().level1_bytes;
        assert_eq!(MAX_RUN_FILE_BYTES, level1);
        let c = AedbConfig::development;
        assert!(c().run_file_bytes(level1).validate().is_ok());
        assert_eq!(
            c().run_file_bytes(level1 + 1).validate(),
            Err(ConfigError::RunFileBytes(level1 + 1))
        );
    }

    #[test]
    fn profiles_have_their_documented_defaults() {
        let p = AedbConfig::production([1; 32]);
        assert_eq!(p.default_finality, Finality::Durable);
        assert!(p.fsync);
        assert_eq!(p.recovery, Recovery::Strict);
        let l = AedbConfig::low_latency([1; 32]);
        assert_eq!(l.default_finality, Finality::Visible);
        assert_eq!(l.recovery, Recovery::Strict);
        let d = AedbConfig::development();
        assert!(!d.fsync);
        for c in [p, l, d] {
            assert_eq!(c.validate(), Ok(()));
        }
    }

    #[test]
    fn nonsense_is_rejected_with_typed_errors() {
        let d = || AedbConfig::development();
        assert_eq!(
            d().segment_size(0).validate(),
            Err(ConfigError::SegmentSize(0))
        );
        assert_eq!(
            d().segment_size(u64::MAX).validate(),
            Err(ConfigError::SegmentSize(u64::MAX))
        );
        assert!(matches!(
            d().flush_interval(Duration::ZERO).validate(),
            Err(ConfigError::FlushInterval(_))
        ));
        assert!(matches!(
            d().flush_interval(Duration::from_secs(3600)).validate(),
            Err(ConfigError::FlushInterval(_))
        ));
        for bad in [0, 511, (1 << 20) + 1] {
            assert_eq!(
                d().run_block_size(bad).validate(),
                Err(ConfigError::RunBlockSize(bad))
            );
        }
        assert_eq!(
            d().commit_spin(Duration::from_millis(11)).validate(),
            Err(ConfigError::CommitSpin(Duration::from_millis(11)))
        );
        assert!(matches!(
            d().wal_queue(0).validate(),
            Err(ConfigError::QueueBound {
                name: "wal_queue",
                ..
            })
        ));
        assert_eq!(
            AedbConfig::production([0; 32])
                .recovery(Recovery::TruncateAtCorruption)
                .validate(),
            Err(ConfigError::LenientRecoveryOutsideDevelopment)
        );
        assert_eq!(
            d().idempotency_retention(IdempotencyRetention::lsns(0))
                .validate(),
            Err(ConfigError::IdempotencyRetention(RetentionError::ZeroLsns))
        );
        assert_eq!(
            d().idempotency_retention(IdempotencyRetention {
                max_lsns: Some(5),
                max_age: Some(Duration::ZERO),
            })
            .validate(),
            Err(ConfigError::IdempotencyRetention(RetentionError::ZeroAge))
        );
        assert_eq!(
            d().idempotency_retention(IdempotencyRetention::forever())
                .validate(),
            Ok(())
        );
        for bad in [
            d().global_commit_rate_limit(RateLimit::per_second(0)),
            d().per_project_commit_rate_limit(RateLimit::new(1, Duration::ZERO)),
            d().per_caller_commit_rate_limit(RateLimit::per_second(u64::MAX)),
            d().global_commit_rate_limit(RateLimit::per_second(10).burst(0)),
            d().commit_admission_wait(Duration::from_secs(3600)),
        ] {
            assert!(
                matches!(bad.validate(), Err(ConfigError::CommitRateLimit(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_redacts_the_key() {
        let c = AedbConfig::production([0x5A; 32]);
        let c = c.with_checkpoint_key([0x5A; 32]);
        let s = format!("{c:?}");
        assert!(
            s.contains("in-memory") || s.contains("aedb-manifest"),
            "{s}"
        );
        assert!(!s.contains("90"), "{s}");
        assert!(!s.to_lowercase().contains("5a"), "{s}");
    }
}

/// When and where [`AedbConfig::backup_policy`] takes backups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupPolicy {
    /// The directory holding the chains (created if missing).
    pub dir: PathBuf,
    /// A new full backup (a new chain) this long after the newest full.
    pub full_every: Duration,
    /// An incremental this long after the chain's newest backup.
    pub incremental_every: Duration,
    /// Chains kept (at least 1); older ones are deleted once a newer full verified.
    pub keep: usize,
}

impl AedbConfig {
    /// Takes hot full and incremental backups into `dir` on a schedule, off the commit
    /// path (see [`crate::backup`]'s policy section): a full backup every `full_every`
    /// (starting a new chain), an incremental every `incremental_every` in between, and
    /// once a new full backup has verified, deletes the oldest chains beyond `keep`.
    /// Progress is read with [`AedbInstance::backup_policy_status`](crate::AedbInstance::backup_policy_status).
    pub fn backup_policy(
        mut self,
        dir: impl Into<PathBuf>,
        full_every: Duration,
        incremental_every: Duration,
        keep: usize,
    ) -> Self {
        self.backup_policy = Some(BackupPolicy {
            dir: dir.into(),
            full_every,
            incremental_every,
            keep,
        });
        self
    }
}

/// Checks a policy's knobs (part of `AedbConfig::validate`).
pub(crate) fn check_backup_policy(policy: &BackupPolicy) -> Result<(), ConfigError> {
    if policy.keep == 0 {
        return Err(ConfigError::BackupPolicy("keep must be at least 1"));
    }
    if policy.full_every.is_zero() || policy.incremental_every.is_zero() {
        return Err(ConfigError::BackupPolicy(
            "full_every and incremental_every must be more than zero",
        ));
    }
    Ok(())
}
