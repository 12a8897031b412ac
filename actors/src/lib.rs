//! aedb's owners (actors) and the commit pipeline.
//!
//! This crate owns the running engine: every resource has one owner, hosted by the one
//! actor pattern of [`actor`] (each owner on its own named thread, a bounded mailbox, a
//! typed reply per request, queue depth and latency kept by the pattern):
//!
//! - the Sequencer (`sequencer`): the single writer, owner of the live state and the LSN
//!   counter;
//! - the WAL writer (`wal_writer`): the active segment, group commit over a bounded batch
//!   mailbox;
//! - the CheckpointSealer (`checkpoint_sealer`): checkpoint files and key rotation;
//! - the ManifestChain (`manifest_chain`): the MANIFEST and its HMAC chain;
//! - Authz ([`authz_actor`]) and Audit ([`audit`]) on secure instances.
//!
//! Around them: the recovery walk from files to a running state ([`recovery`]: one walk
//! shared by `open`, the offline checks and restore), startup and shutdown wiring
//! ([`Pipeline`]), the caller side of the commit path ([`Committer`], with the commit
//! rate limits of [`admission`]), the write freeze ([`freeze`]), key providers by
//! epoch ([`Keyring`]) and the engine counters behind `operational_metrics()`.
//!
//! It does not own formats (`aedb-wal`, `aedb-model`, `aedb-checkpoint`,
//! `aedb-manifest`), the concurrency protocols themselves (`aedb-sync`, loom-checked), or
//! the user-facing API and configuration (`aedb`).
//!
//! ```
//! use aedb_actors::{Admission, Finality, Pipeline, PipelineConfig, Request};
//! use aedb_model::{Ddl, ProjectName};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let config = PipelineConfig {
//!     wal: aedb_wal::WalConfig::development(),
//!     recovery: aedb_wal::RecoveryMode::Strict,
//!     flush_interval: Duration::from_millis(5),
//!     sequencer_queue: 64,
//!     wal_queue: 64,
//!     max_batch: 64,
//!     commit_spin: Duration::ZERO,
//!     keyring: aedb_actors::Keyring::development().unwrap(),
//!     checkpoints: aedb_actors::CheckpointPolicy {
//!         wal_bytes: 64 << 20,
//!         interval: Duration::from_secs(600),
//!     },
//!     checkpoint_on_shutdown: true,
//!     manifest_compact_after: 4096,
//!     storage: aedb_actors::StorageConfig::default(),
//! };
//! let (mut pipeline, _recovered) = Pipeline::start(dir.path(), config).unwrap();
//! let project = ProjectName::new("bank").unwrap();
//! let outcome = pipeline
//!     .commit(
//!         Request::Ddl(Ddl::CreateProject { project }),
//!         Finality::Durable,
//!         Admission::Wait,
//!     )
//!     .unwrap();
//! assert_eq!(outcome.lsn.get(), 1);
//! assert_eq!(pipeline.snapshot().lsn().get(), 1);
//! pipeline.shutdown().unwrap();
//! ```
#![deny(unsafe_code)]

pub mod actor;
pub mod admission;
pub mod audit;
pub mod authz_actor;
mod checkpoint_sealer;
mod commit;
mod committer;
mod compactor;
mod error;
pub mod freeze;
mod keyring;
mod manifest_chain;
pub mod metrics;
mod pipeline;
pub mod recovery;
pub mod runs;
mod sequencer;
mod system;
mod wal_writer;

#[cfg(test)]
mod tests;

pub use admission::{ProjectAdmission, RateLimit, RateLimitError, RateLimits};
pub use checkpoint_sealer::{
    CaptureFailure, CaptureView, CapturedCheckpoint, CapturedRun, CheckpointFailure,
    CheckpointPolicy, CheckpointReport,
};
pub use commit::{Authority, CommitOutcome, Finality, Request};
pub use committer::{Admission, Committer};
pub use compactor::CompactionReport;
pub use error::{CheckpointLoadError, CommitError, FrameReplayError, StartError};
pub use freeze::{FreezeReasonError, WriteFreeze};
pub use keyring::{EpochTable, Keyring};
pub use manifest_chain::ManifestCopy;
pub use metrics::{ErrorCounts, HistogramSnapshot, OperationalMetrics, StorageMetrics};
pub use pipeline::{BackupPort, Pipeline, PipelineConfig, StorageConfig};
pub use recovery::{RecoveryEvent, WAL_DIR};
pub use sequencer::{MAX_STALL, WriteLimits};
pub use wal_writer::WalBackupView;
