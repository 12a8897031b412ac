//! The ManifestChain actor: the owner of `<data_dir>/MANIFEST`.
//!
//! Every record (checkpoint added or retired, segment sealed or retired, key epoch
//! changed) is appended here, HMAC-chained and `fdatasync`ed before the reply, so a
//! caller that hears `Ok` knows the record is durable. Other actors reach the file only
//! through its messages ([`Record`], [`SegmentsSealed`], [`GetLiveState`]).
//!
//! A failed write (of any record, or of a compaction after its rename) **fail-stops the
//! instance** exactly like a failed WAL fsync: the shared fail-stop flag is raised, the
//! sequencer refuses every later commit, and the host must reopen. Going on would let the
//! log outrun the manifest — a sealed segment whose hash was never recorded escapes the
//! tamper check at the next open.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aedb_manifest::{LiveState, Manifest, ManifestError, ManifestRecord};

use crate::actor::{Ask, Owner, OwnerRef};
use crate::metrics::EngineMetrics;

/// A manifest failure shared with every waiter.
pub type SharedManifestError = Arc<ManifestError>;

/// The address of the ManifestChain.
pub type ManifestRef = OwnerRef<ManifestChain>;

/// Append `records` in order, each durable before the reply.
#[derive(Debug)]
pub struct Record(pub Vec<ManifestRecord>);

/// The WAL writer sealed these segments (and created each one's successor): record
/// them, skipping any the manifest already has. Sent with `tell`.
#[derive(Debug)]
pub struct SegmentsSealed(pub Vec<ManifestRecord>);

/// A copy of the live state the chain describes.
#[derive(Debug)]
pub struct GetLiveState;

/// A consistent copy of the manifest for a forensic capture: its bytes up to the last
/// durable record and the live state they describe.
#[derive(Debug)]
pub struct GetManifestCopy;

/// A consistent copy of the manifest (what the ManifestChain answers a capture).
#[derive(Debug)]
pub struct ManifestCopy {
    /// The manifest file's bytes (every durable record, nothing after).
    pub bytes: Vec<u8>,
    /// The live state those records describe.
    pub live: LiveState,
}

/// The ManifestChain: owns the open, verified manifest.
pub struct ManifestChain {
    manifest: Manifest,
    compact_after: u64,
    metrics: Arc<EngineMetrics>,
    fail_stop: Arc<AtomicBool>,
}

impl ManifestChain {
    /// The owner of `manifest`. Once the log holds `compact_after` records it is
    /// compacted: rewritten (temporary file, fsync, atomic rename, directory fsync) to a
    /// `Compacted` record plus the live set. A write failure raises `fail_stop` (shared
    /// with the sequencer and the WAL writer).
    pub fn new(
        manifest: Manifest,
        compact_after: u64,
        metrics: Arc<EngineMetrics>,
        fail_stop: Arc<AtomicBool>,
    ) -> ManifestChain {
        ManifestChain {
            manifest,
            compact_after,
            metrics,
            fail_stop,
        }
    }

    fn stop_on_write_failure(&self, e: &ManifestError, what: &str) {
        // A record refused before anything was written changes nothing on disk.
        if !matches!(
            e,
            ManifestError::Rejected { .. } | ManifestError::InvalidRecord { .. }
        ) {
            tracing::error!("{what} failed, fail-stopping the instance: {e}");
            self.fail_stop.store(true, Ordering::Release);
        }
    }

    fn compact_if_due(&mut self) {
        if self.manifest.record_count() < self.compact_after {
            return;
        }
        let summary = self.manifest.live_state().to_records();
        match self
            .manifest
            .compact(aedb_types::clock::unix_millis(), &summary)
        {
            Ok(()) => {
                self.metrics
                    .manifest_compactions
                    .fetch_add(1, Ordering::Relaxed);
            }
            // Before the rename the old manifest is intact and in use.
            Err(e) if !self.manifest.is_poisoned() => {
                tracing::warn!("manifest compaction failed, will retry: {e}");
            }
            Err(e) => self.stop_on_write_failure(&e, "manifest compaction"),
        }
    }
}

impl Owner for ManifestChain {
    const NAME: &'static str = "manifest";
}

impl Ask<ManifestChain> for Record {
    type Reply = Result<(), SharedManifestError>;

    fn handle(self, chain: &mut ManifestChain) -> Self::Reply {
        let result = self.0.iter().try_for_each(|r| chain.manifest.append(r));
        if let Err(e) = &result {
            chain.stop_on_write_failure(e, "a manifest append");
        }
        chain.compact_if_due();
        result.map_err(Arc::new)
    }
}

impl Ask<ManifestChain> for SegmentsSealed {
    type Reply = ();

    fn handle(self, chain: &mut ManifestChain) {
        for record in self.0 {
            let known = matches!(&record, ManifestRecord::SegmentSealed { seq, .. }
                if chain.manifest.live_state().segments().contains_key(seq));
            if !known && let Err(e) = chain.manifest.append(&record) {
                chain.stop_on_write_failure(&e, "recording a sealed WAL segment");
                break;
            }
        }
        chain.compact_if_due();
    }
}

impl Ask<ManifestChain> for GetLiveState {
    type Reply = LiveState;

    fn handle(self, chain: &mut ManifestChain) -> LiveState {
        chain.manifest.live_state().clone()
    }
}

impl Ask<ManifestChain> for GetManifestCopy {
    type Reply = Result<ManifestCopy, SharedManifestError>;

    fn handle(self, chain: &mut ManifestChain) -> Self::Reply {
        let bytes = chain.manifest.durable_bytes().map_err(Arc::new)?;
        Ok(ManifestCopy {
            bytes,
            live: chain.manifest.live_state().clone(),
        })
    }
}
