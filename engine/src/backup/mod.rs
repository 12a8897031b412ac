//! Hot backups forming an HMAC-authenticated hash chain, and strict restore.
//!
//! The database's run files (the LSM's sealed, sorted files) are immutable once renamed
//! into place: nothing writes them again, a compaction only deletes them. Backups rely
//! on that. A **full** backup ([`AedbInstance::backup_full`]) lists the live version
//! (the live runs and the LSN they hold every commit up to), opens every run (so a
//! compaction cannot take one away mid-backup) and **hard-links** each into the backup
//! where the file system allows ([`aedb_fs::FileSystem::hard_link`]; same device), or
//! copies it: across devices (`EXDEV`), without hard links, or with
//! [`AedbConfig::backup_hard_links`] off ([`BackupReport`] says how many were linked and
//! why it fell back to copies). A linked run is listed with the length and SHA-256 its
//! authenticated `MANIFEST` record states; a copied one is hashed as copied and must
//! match it. Then it copies the WAL after that LSN while commits continue: the WAL
//! writer opens every segment at a barrier and reports the synced LSN, sealed segments
//! are copied whole and the active one only up to the end of the synced frame (a copied
//! active segment recovers like a segment whose tail is empty).
//!
//! An **incremental** backup ([`AedbInstance::backup_incremental`]) costs the change
//! since its parent, not the data: the live runs its parent's chain does not hold (by
//! file id and SHA-256; linked or copied), a listing of the live runs it inherits from
//! that chain (the [`BackupRunSet`]: ids, levels, lengths, hashes, and the LSN the runs
//! hold), and the WAL since the parent's end: only the new bytes of the segment the
//! parent ended in (a [`BackupFileKind::WalTail`]) and the segments after it. When
//! flushes have retired the WAL since the parent's end, the runs carry what it held and
//! the backup holds the WAL from the runs' LSN on instead.
//!
//! Every backup directory holds `BACKUP`, a [`BackupManifest`] (format 2; format 1 stays
//! readable) listing each file with its length and SHA-256, the LSN range, the key
//! epochs, the run set, and the SHA-256 of the parent's `BACKUP`, closed by an
//! HMAC-SHA256 under a backup subkey derived from the manifest key provider (purpose
//! Manifest, context `aedb backup manifest v1`). Full plus incrementals thus form a
//! hash chain: changing any byte of any file, even with its hash and the listing
//! recomputed, breaks a MAC or a link.
//!
//! [`restore_from_backup_chain`] verifies all of that (every file's hash; every
//! inherited run is held by an earlier backup of the chain with that id, length and
//! hash), then starts from the newest backup whose runs hold an LSN at or below the
//! target (the full backup's runs, or an incremental's run set, reassembled from the
//! chain), replays the chain's WAL from there (segments reassembled from their pieces)
//! up to the chain's end or the target LSN, and writes a fresh data directory (same
//! database id, the runs copied, what the replay added flushed into one more run, an
//! empty WAL continuing after it) that opens normally. A target between an incremental's
//! first LSN and its runs' LSN whose WAL was retired before it was taken is refused
//! ([`BackupError::TargetUnreachable`]), never approximated.
//!
//! Also here: scheduled backups ([`AedbConfig::backup_policy`], `policy.rs`: an owner of
//! its own takes them, verifies each new full backup, prunes old chains;
//! [`list_backups`]) and forensic captures ([`AedbInstance::capture_as`],
//! [`capture_offline`], [`verify_capture`], `capture.rs`: a consistent, pinned copy of a
//! data directory with an authenticated listing in the backup manifest format).

mod capture;
mod chain;
mod manifest;
mod policy;
mod restore;
mod take;

use aedb_keys::KeyProvider;
use std::collections::BTreeMap;
use std::sync::Arc;

use aedb_fs::{DiskFile, FileSystem, OpenMode as FsMode};
use std::path::{Path, PathBuf};

use aedb_actors::EpochTable;
use aedb_actors::WalBackupView;
use aedb_actors::recovery::{self, WalReplay};
use aedb_actors::{CheckpointLoadError, FrameReplayError};
use aedb_checkpoint::OsNonceSource;
use aedb_keys::{DerivationRequest, KeyError, KeyPurpose, MasterKeyId, SecretKey};
use aedb_manifest::{Manifest, ManifestRecord};
use aedb_model::State;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use aedb_wal::{RecoverError, RecoveryMode, SegmentHeader};
use sha2::{Digest, Sha256};

pub use manifest::{
    BACKUP_FORMAT_MIN_VERSION, BACKUP_FORMAT_VERSION, BACKUP_MAC_LEN, BACKUP_MAGIC,
    BACKUP_MANIFEST_FILE, BackupFile, BackupFileKind, BackupKind, BackupManifest,
    BackupManifestError, BackupRunSet, InheritedRun, MAX_BACKUP_FILES, MAX_RUN_LEVEL,
    UnverifiedBackupManifest, valid_file_name,
};

use crate::{AedbConfig, AedbInstance, Error, Who};

/// The derivation context of the backup-manifest MAC key.
pub const BACKUP_KEY_CONTEXT: &[u8] = b"aedb backup manifest v1";

pub use crate::config::BackupPolicy;
pub use crate::error::{
    BackupError, ChainBreak, ChainOrder, KeyMismatch, RetiredWal, Tamper, WriteFailure,
};
pub use capture::{CAPTURE_LISTING_FILE, CaptureReport, capture_offline, verify_capture};
pub use chain::{VerifiedBackup, read_backup, verify_backup_chain, verify_chain_manifests};
pub use policy::{BackupChainListing, BackupPolicyStatus, ListedBackup, list_backups};
pub(crate) use policy::{RunningScheduler, start_scheduler};
pub use restore::{chain_state, restore_from_backup_chain};
// The submodules share their crate-private helpers through here (`use super::*`).
use chain::*;
use take::*;

/// Progress of a backup or restore: called with `(bytes done, bytes total)` as files
/// are copied or verified.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// What a backup wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// The backup directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: BackupManifest,
    /// SHA-256 of its `BACKUP` file (what a child's parent link holds).
    pub manifest_sha256: [u8; 32],
    /// Bytes of the files the backup holds: copied, or hard-linked (`linked_bytes`).
    /// Progress reports count to this total.
    pub bytes: u64,
    /// Run files hard-linked to the database's own files (same file system): no bytes
    /// copied; the backup's file and the live one are the same immutable file.
    pub linked_files: usize,
    /// Bytes of those linked run files.
    pub linked_bytes: u64,
    /// Run files copied (links disabled, not possible, or the run was deleted by a
    /// compaction after it was listed).
    pub copied_run_files: usize,
    /// Why run files were copied rather than linked although links were enabled: the
    /// first link error the file system answered (`EXDEV`: the backup is on another
    /// device; `EPERM`/`EOPNOTSUPP`: no hard links there). `None` when every run was
    /// linked, links are disabled, or there were no runs to place.
    pub link_fallback: Option<String>,
}

/// How to restore.
pub struct RestoreOptions {
    /// Keys (and the profile of the restored database's checkpoint sealing).
    pub config: AedbConfig,
    /// Strict: every manifest MAC, parent link and file hash, the WAL segment chain and
    /// every sealed-batch tag must verify, or nothing is restored. Non-strict (salvage)
    /// still requires every manifest MAC and link and the checkpoint's hash, but reads
    /// the WAL leniently: it restores up to the last frame that verifies.
    pub strict: bool,
    /// Restore up to this LSN instead of the chain's end.
    pub target_lsn: Option<Lsn>,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// The database restored.
    pub database_id: DatabaseId,
    /// The LSN the restored database is at.
    pub lsn: Lsn,
    /// The chain's end.
    pub chain_last_lsn: Lsn,
    /// Backups verified.
    pub backups: usize,
    /// Bytes of backup files verified.
    pub bytes_verified: u64,
    /// WAL commits replayed on top of the checkpoint.
    pub frames_replayed: u64,
}

/// Derives the backup-manifest MAC key of `database` under `master` (or the provider's
/// current master) from `config`'s manifest key provider.
pub fn backup_key(
    config: &AedbConfig,
    database: DatabaseId,
    master: Option<&MasterKeyId>,
) -> Result<(SecretKey, MasterKeyId), Error> {
    let provider = config.backup_key_provider().map_err(BackupError::Key)?;
    Ok(backup_key_from(&*provider, database, master).map_err(BackupError::Key)?)
}

fn backup_key_from(
    provider: &dyn KeyProvider,
    database: DatabaseId,
    master: Option<&MasterKeyId>,
) -> Result<(SecretKey, MasterKeyId), KeyError> {
    let master = match master {
        Some(m) => m.clone(),
        None => provider.current_master()?,
    };
    let key = provider.derive(
        &master,
        &DerivationRequest::new(KeyPurpose::Manifest, KeyEpoch::FIRST, database)
            .with_context(BACKUP_KEY_CONTEXT),
    )?;
    Ok((key, master))
}

/// Counts the bytes a backup or restore has copied or verified, reports `(done, total)`
/// and, for backups with a rate limit, sleeps to keep to it.
struct CopyProgress<'p> {
    done: u64,
    total: u64,
    report: Progress<'p>,
    bytes_per_sec: Option<u64>,
    started: std::time::Instant,
    /// Bytes counted without being copied (hard-linked run files): not paced.
    unpaced: u64,
}

impl<'p> CopyProgress<'p> {
    /// `bytes_per_sec == 0` means unlimited.
    fn new(total: u64, report: Progress<'p>, bytes_per_sec: u64) -> CopyProgress<'p> {
        CopyProgress {
            done: 0,
            total,
            report,
            bytes_per_sec: (bytes_per_sec > 0).then_some(bytes_per_sec),
            started: std::time::Instant::now(),
            unpaced: 0,
        }
    }

    /// Records `n` bytes placed without copying them (a hard link): reported, never
    /// paced.
    fn tick_unpaced(&mut self, n: u64) {
        self.unpaced += n;
        self.done += n;
        (self.report)(self.done, self.total);
    }

    /// Records `n` more bytes; sleeps until the bytes so far keep to the rate.
    fn tick(&mut self, n: u64) {
        self.done += n;
        (self.report)(self.done, self.total);
        if let Some(rate) = self.bytes_per_sec {
            let paced = self.done - self.unpaced;
            let due = std::time::Duration::from_secs_f64(paced as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { op, path, source }
}
