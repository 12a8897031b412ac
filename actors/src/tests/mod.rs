//! Unit tests of each owner on its own: a message in, its reply and its effect out,
//! with the owners it talks to replaced by test doubles where that keeps the test to
//! one owner (a fake WAL that acknowledges at once, a manifest in a temporary
//! directory).

mod audit;
mod authz;
mod manifest_chain;
mod pattern;
mod sealer;
mod sequencer;
mod wal_writer;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use aedb_manifest::{Manifest, ManifestRecord};
use aedb_model::{Ddl, ProjectName, State};
use aedb_sync::SnapshotCell;
use aedb_sync::group_commit::{Acknowledge, Durability, WriterMsg};
use aedb_sync::mailbox::{MailboxSender, mailbox};
use aedb_types::{DatabaseId, KeyEpoch, Lsn};

use crate::actor::{self, Running};
use crate::commit::Request;
use crate::committer::Committer;
use crate::keyring::Keyring;
use crate::metrics::EngineMetrics;
use crate::sequencer::{Sequencer, WriteLimits};
use crate::wal_writer::{RetiredSegments, WalControl, WalMsg};

/// What a [`fake_wal`] saw.
#[derive(Debug, Default)]
pub(crate) struct WalLog {
    /// LSNs of the appended records, in order.
    pub lsns: Vec<u64>,
    /// Barriers answered.
    pub barriers: usize,
    /// `RetireThrough` LSNs, in order.
    pub retired_through: Vec<u64>,
}

/// A WAL writer double: acknowledges every durable append at once (publishing its
/// snapshot first, as the real writer does after `fsync`) and answers barriers.
/// Returns the mailbox and a thread that ends, with what it saw, once every sender is
/// gone.
pub(crate) fn fake_wal(
    snapshots: Arc<SnapshotCell<State>>,
) -> (MailboxSender<WalMsg>, JoinHandle<WalLog>) {
    let (tx, rx) = mailbox::<WalMsg>(64);
    let thread = std::thread::spawn(move || {
        let mut log = WalLog::default();
        while let Some(msg) = rx.recv() {
            match msg {
                WriterMsg::Append(sub) => {
                    log.lsns.push(sub.record.lsn.get());
                    if let Some((lsn, state)) = sub.publish {
                        snapshots.publish(lsn.get(), state);
                    }
                    if let Durability::AckAfterSync(ack) = sub.durability {
                        ack.acknowledge(Ok(()));
                    }
                }
                WriterMsg::Barrier(reply) => {
                    log.barriers += 1;
                    reply.complete(Ok(()));
                }
                WriterMsg::Control(control) => match control {
                    WalControl::SetCipher { reply, .. } => {
                        reply.complete(Ok(Lsn::new(log.lsns.last().copied().unwrap_or(0))));
                    }
                    WalControl::RetireThrough { lsn, reply } => {
                        log.retired_through.push(lsn.get());
                        reply.complete(Ok(RetiredSegments {
                            removed: Vec::new(),
                            oldest_lsn: lsn.next(),
                        }));
                    }
                    // Needs real segment files; the WAL writer's own tests cover it.
                    WalControl::BackupView { .. } => {}
                    WalControl::RotateCovered { reply, .. } => reply.complete(Ok(false)),
                    WalControl::Repoint { view } => {
                        let at = view.lsn();
                        snapshots.refresh(|published| {
                            (published.lsn() <= at).then(|| Arc::new(published.with_view(view)))
                        });
                    }
                },
            }
        }
        log
    });
    (tx, thread)
}

/// A Sequencer over an empty state, logging to a [`fake_wal`].
pub(crate) struct SequencerRig {
    pub sequencer: Running<Sequencer>,
    pub committer: Committer,
    pub snapshots: Arc<SnapshotCell<State>>,
    pub metrics: Arc<EngineMetrics>,
    pub fail_stopped: Arc<AtomicBool>,
    /// The WAL double's mailbox, for owners that talk to the WAL directly.
    pub wal_sender: MailboxSender<WalMsg>,
    pub wal: Option<JoinHandle<WalLog>>,
}

impl SequencerRig {
    pub fn new(max_record_len: usize) -> SequencerRig {
        Self::with_state(State::new(), max_record_len)
    }

    pub fn with_state(state: State, max_record_len: usize) -> SequencerRig {
        let limits = WriteLimits {
            memtable_bytes: 1 << 20,
            immutable_memtables: 2,
            ..WriteLimits::default()
        };
        Self::with_limits(state, max_record_len, limits)
    }

    pub fn with_limits(state: State, max_record_len: usize, limits: WriteLimits) -> SequencerRig {
        let metrics = Arc::new(EngineMetrics::default());
        let snapshots = Arc::new(SnapshotCell::new(
            state.lsn().get(),
            Arc::new(state.clone()),
        ));
        let fail_stopped = Arc::new(AtomicBool::new(false));
        let (wal, log) = fake_wal(snapshots.clone());
        let sequencer = actor::spawn(
            Sequencer::new(
                state,
                wal.clone(),
                fail_stopped.clone(),
                snapshots.clone(),
                metrics.clone(),
                max_record_len,
                limits,
            ),
            16,
            metrics.owners.sequencer.clone(),
        )
        .unwrap();
        SequencerRig {
            committer: Committer::new(
                sequencer.addr().clone(),
                metrics.clone(),
                std::time::Duration::ZERO,
            ),
            sequencer,
            snapshots,
            metrics,
            fail_stopped,
            wal_sender: wal,
            wal: Some(log),
        }
    }

    /// Stops the sequencer (releasing the WAL mailbox) and returns what the WAL saw.
    pub fn finish(self) -> WalLog {
        let SequencerRig {
            mut sequencer,
            committer,
            wal_sender,
            wal,
            ..
        } = self;
        sequencer.stop();
        drop((committer, wal_sender));
        wal.unwrap().join().unwrap()
    }
}

pub(crate) fn create_project(name: &str) -> Request {
    Request::Ddl(Ddl::CreateProject {
        project: ProjectName::new(name).unwrap(),
    })
}

/// The database id of [`new_manifest`].
pub(crate) const DATABASE: DatabaseId = DatabaseId::from_bytes([7; 16]);

/// A fresh manifest in `dir` under the development keyring, as `open` creates it.
pub(crate) fn new_manifest(dir: &std::path::Path) -> Manifest {
    let fs = aedb_fs::RealFs::shared();
    let keyring = Keyring::development().unwrap();
    let database = DATABASE;
    Manifest::create_with(
        &fs,
        &dir.join(aedb_manifest::MANIFEST_FILE_NAME),
        database,
        keyring.manifest_key(database).unwrap(),
        &[
            ManifestRecord::DatabaseCreated {
                database_id: database,
                created_at_unix_ms: 1,
            },
            ManifestRecord::KeyEpochChanged {
                epoch: KeyEpoch::FIRST,
                master_key_id: keyring.current_data_master().unwrap().to_string(),
                at_unix_ms: 1,
            },
        ],
    )
    .unwrap()
}
