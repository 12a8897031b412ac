//! The ManifestChain actor: a dedicated thread that owns `<data_dir>/MANIFEST`.
//!
//! Every record (checkpoint added or retired, segment sealed or retired, key epoch
//! changed) is appended here, HMAC-chained and `fdatasync`ed before the reply, so a
//! caller that hears `Ok` knows the record is durable. Other actors reach the file only
//! through [`ManifestMsg`].
//!
//! A failed write (of any record, or of a compaction after its rename) **fail-stops the
//! instance** exactly like a failed WAL fsync: the shared fail-stop flag is raised, the
//! sequencer refuses every later commit, and the host must reopen. Going on would let the
//! log outrun the manifest — a sealed segment whose hash was never recorded escapes the
//! tamper check at the next open.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use aedb_checkpoint::{LiveState, Manifest, ManifestError, ManifestRecord};
use aedb_sync::Completer;
use aedb_sync::mailbox::{MailboxSender, mailbox};

use crate::metrics::EngineMetrics;

/// A manifest failure shared with every waiter.
pub type SharedManifestError = Arc<ManifestError>;

/// Messages to the ManifestChain actor.
#[derive(Debug)]
pub enum ManifestMsg {
    /// Append `records` in order (each durable before the reply).
    Record {
        /// The records.
        records: Vec<ManifestRecord>,
        /// Where the answer goes.
        reply: Completer<Result<(), SharedManifestError>>,
    },
    /// The WAL writer sealed these segments (and created each one's successor):
    /// record them, skipping any the manifest already has. Fire-and-forget.
    SegmentsSealed {
        /// `SegmentSealed` records.
        records: Vec<ManifestRecord>,
    },
    /// A copy of the live state the chain describes.
    LiveState {
        /// Where the answer goes.
        reply: Completer<LiveState>,
    },
}

/// Handle to the running actor.
#[derive(Debug)]
pub struct ManifestHandle {
    /// The mailbox.
    pub mailbox: MailboxSender<ManifestMsg>,
    /// The thread, joined on shutdown.
    pub thread: JoinHandle<()>,
}

/// Starts the actor over an open, verified manifest. Once the log holds
/// `compact_after` records it is compacted: rewritten (temporary file, fsync, atomic
/// rename, directory fsync) to a `Compacted` record plus the live set. A write failure
/// raises `fail_stop` (shared with the sequencer and the WAL writer).
pub fn spawn(
    mut manifest: Manifest,
    compact_after: u64,
    metrics: Arc<EngineMetrics>,
    fail_stop: Arc<AtomicBool>,
) -> std::io::Result<ManifestHandle> {
    let stop_on_write_failure = move |e: &ManifestError, what: &str| {
        // A record refused before anything was written changes nothing on disk.
        if !matches!(
            e,
            ManifestError::Rejected { .. } | ManifestError::InvalidRecord { .. }
        ) {
            tracing::error!("{what} failed, fail-stopping the instance: {e}");
            fail_stop.store(true, Ordering::Release);
        }
    };
    let (tx, rx) = mailbox::<ManifestMsg>(64);
    let thread = std::thread::Builder::new()
        .name("aedb-manifest".into())
        .spawn(move || {
            while let Some(msg) = rx.recv() {
                match msg {
                    ManifestMsg::Record { records, reply } => {
                        let result = records.iter().try_for_each(|r| manifest.append(r));
                        if let Err(e) = &result {
                            stop_on_write_failure(e, "a manifest append");
                        }
                        reply.complete(result.map_err(Arc::new));
                    }
                    ManifestMsg::SegmentsSealed { records } => {
                        for record in records {
                            let known = matches!(&record, ManifestRecord::SegmentSealed { seq, .. }
                                if manifest.live_state().segments().contains_key(seq));
                            if !known && let Err(e) = manifest.append(&record) {
                                stop_on_write_failure(&e, "recording a sealed WAL segment");
                                break;
                            }
                        }
                    }
                    ManifestMsg::LiveState { reply } => {
                        reply.complete(manifest.live_state().clone());
                    }
                }
                if manifest.record_count() >= compact_after {
                    let summary = manifest.live_state().to_records();
                    match manifest.compact(aedb_types::clock::unix_millis(), &summary) {
                        Ok(()) => {
                            metrics
                                .manifest_compactions
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        // Before the rename the old manifest is intact and in use.
                        Err(e) if !manifest.is_poisoned() => {
                            tracing::warn!("manifest compaction failed, will retry: {e}");
                        }
                        Err(e) => stop_on_write_failure(&e, "manifest compaction"),
                    }
                }
            }
        })?;
    Ok(ManifestHandle {
        mailbox: tx,
        thread,
    })
}
