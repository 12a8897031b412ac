//! Hot backups forming an HMAC-authenticated hash chain, and strict restore.
//!
//! A **full** backup ([`AedbInstance::backup_full`]) takes a checkpoint, then copies the
//! sealed checkpoint file and the WAL after it while commits continue: the WAL writer
//! opens every segment at a barrier and reports the synced LSN, sealed segments are
//! copied whole and the active one only up to the end of the synced frame (a copied
//! active segment recovers like a segment whose tail is empty). An **incremental**
//! backup ([`AedbInstance::backup_incremental`]) copies the WAL from the parent's last
//! segment on. Files stay exactly as sealed on disk.
//!
//! Every backup directory holds `BACKUP`, a [`BackupManifest`] listing each file with its
//! length and SHA-256, the LSN range, the key epochs, and the SHA-256 of the parent's
//! `BACKUP`, closed by an HMAC-SHA256 under a backup subkey derived from the manifest key
//! provider (purpose Manifest, context `aedb backup manifest v1`). Full plus incrementals
//! thus form a hash chain: changing any byte of any file, even with its hash and the
//! listing recomputed, breaks a MAC or a link.
//!
//! [`restore_from_backup_chain`] verifies all of that, replays the chain up to its end or
//! a target LSN, and writes a fresh data directory (same database id, a new checkpoint
//! at the restored LSN, an empty WAL continuing after it) that opens normally.

mod manifest;

use aedb_keys::KeyProvider;
use std::collections::BTreeMap;
use std::sync::Arc;

use aedb_fs::{DiskFile, FileSystem, OpenMode as FsMode};
use std::path::{Path, PathBuf};

use aedb_actors::keyring::EpochTable;
use aedb_actors::recovery::{self, WalReplay};
use aedb_actors::wal_writer::WalBackupView;
use aedb_actors::{CheckpointFailure, CheckpointLoadError, FrameReplayError};
use aedb_checkpoint::{CheckpointMeta, CheckpointWriter, OsNonceSource};
use aedb_keys::{DerivationRequest, KeyError, KeyPurpose, MasterKeyId, SecretKey};
use aedb_manifest::{Manifest, ManifestRecord};
use aedb_model::State;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use aedb_wal::{RecoverError, RecoveryMode, SegmentHeader};
use sha2::{Digest, Sha256};

pub use manifest::{
    BACKUP_FORMAT_VERSION, BACKUP_MAC_LEN, BACKUP_MAGIC, BACKUP_MANIFEST_FILE, BackupFile,
    BackupFileKind, BackupKind, BackupManifest, BackupManifestError, MAX_BACKUP_FILES,
    UnverifiedBackupManifest, valid_file_name,
};

use crate::{AedbConfig, AedbInstance, Error, Who};

/// The derivation context of the backup-manifest MAC key.
pub const BACKUP_KEY_CONTEXT: &[u8] = b"aedb backup manifest v1";

/// Why a backup or a restore failed (the [`Error::Backup`] kind).
/// Every integrity failure has its own variant. A refused caller is
/// [`Error::Access`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The restore target exists and is not empty.
    #[error("restore target {0} is not empty: restore only into an empty directory")]
    NonEmptyTarget(PathBuf),
    /// A backup directory to write into is not empty.
    #[error("backup directory {0} is not empty")]
    NonEmptyBackupDir(PathBuf),
    /// The chain is missing a backup: an incremental's parent is not among those given.
    #[error(
        "backup chain has a gap: {} continues a parent (manifest sha256 {}) that is not in the chain; add the missing incremental",
        .backup.display(),
        hex::encode(.parent)
    )]
    MissingIncremental {
        /// The backup whose parent is missing.
        backup: PathBuf,
        /// SHA-256 of the missing parent's manifest.
        parent: [u8; 32],
    },
    /// The backups are not given in chain order (full first, then each child after its
    /// parent), or the chain does not start with a full backup.
    #[error("backup chain out of order at {}: {reason}", .backup.display())]
    OutOfOrder {
        /// The backup at the wrong position.
        backup: PathBuf,
        /// What is wrong.
        reason: ChainOrder,
    },
    /// A backup belongs to another database.
    #[error("{backup} is a backup of database {found}, but the chain is of database {expected}")]
    ForeignBackup {
        /// The backup.
        backup: PathBuf,
        /// The chain's database.
        expected: DatabaseId,
        /// The backup's database.
        found: DatabaseId,
    },
    /// The configured keys are not the ones the backup was written with.
    #[error(
        "wrong key for {}: its manifest was authenticated under another key ({detail})",
        .backup.display()
    )]
    WrongKey {
        /// The backup.
        backup: PathBuf,
        /// Which key.
        detail: Box<KeyMismatch>,
    },
    /// A listed file is shorter than listed.
    #[error("{path} is truncated: {found} bytes, the backup manifest lists {expected}")]
    TruncatedFile {
        /// The file.
        path: PathBuf,
        /// Listed length.
        expected: u64,
        /// Actual length.
        found: u64,
    },
    /// A listed file is missing.
    #[error("{0} is listed in the backup manifest but missing")]
    MissingFile(PathBuf),
    /// A file's content does not match the authenticated listing (or fails its own
    /// authentication: sealed-batch tag, checkpoint chunk tag).
    #[error("{} was tampered with: {detail}", .path.display())]
    TamperedFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        detail: Box<Tamper>,
    },
    /// A backup manifest does not authenticate, a parent link or LSN range does not
    /// chain, or the WAL segment chain across backups is broken.
    #[error("backup chain integrity failure at {}: {detail}", .path.display())]
    ChainMismatch {
        /// The manifest or file.
        path: PathBuf,
        /// What failed.
        detail: ChainBreak,
    },
    /// A backup manifest is malformed.
    #[error("{path}: {source}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The decoding error.
        source: BackupManifestError,
    },
    /// The target LSN is outside what the chain covers.
    #[error("target lsn {target} is outside the chain's range {first}..={last}")]
    TargetOutOfRange {
        /// Asked for.
        target: Lsn,
        /// The full backup's checkpoint LSN.
        first: Lsn,
        /// The chain's end.
        last: Lsn,
    },
    /// No backups were given.
    #[error("no backups given")]
    EmptyChain,
    /// The WAL the incremental needs has been retired since the parent was taken (or a
    /// checkpoint retired it during a full backup): take a full backup.
    #[error("the WAL needed since lsn {since} is no longer on disk ({detail}); take a full backup")]
    WalRetired {
        /// The LSN the backup had to start from.
        since: Lsn,
        /// What was missing.
        detail: RetiredWal,
    },
    /// Replaying the restored WAL failed.
    #[error("WAL replay failed during restore: {0}")]
    Replay(#[source] Box<RecoverError<FrameReplayError>>),
    /// The engine could not take the backup (checkpoint, WAL barrier, manifest).
    #[error("the engine could not take the backup: {0}")]
    Engine(#[from] CheckpointFailure),
    /// A key could not be derived.
    #[error("key derivation failed: {0}")]
    Key(#[from] KeyError),
    /// Writing the restored checkpoint or manifest failed.
    #[error("writing the restored database failed: {0}")]
    Write(#[source] WriteFailure),
    /// A live WAL segment's header does not decode.
    #[error("decode segment header {}: {source}", .path.display())]
    SegmentHeader {
        /// The segment.
        path: PathBuf,
        /// Why.
        source: aedb_wal::segment::SegmentHeaderError,
    },
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why a backup chain is out of order ([`BackupError::OutOfOrder`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainOrder {
    /// The full backup is not first (its 1-based position in the list).
    #[error("the full backup is at position {0} but must come first")]
    FullNotFirst(usize),
    /// No backup of the list is a full backup.
    #[error("the chain does not start with a full backup")]
    NoFull,
    /// A second full backup follows the chain's start.
    #[error("a full backup after the chain's start")]
    FullAfterStart,
    /// The backup's parent is elsewhere in the list (its 1-based position).
    #[error("its parent is backup {0} of the list, not the one before it")]
    ParentElsewhere(usize),
}

/// Which key does not fit ([`BackupError::WrongKey`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyMismatch {
    /// The backup key cannot be derived under the backup's master.
    #[error("cannot derive under master {master}: {source}")]
    Derive {
        /// The master the backup names.
        master: MasterKeyId,
        /// Why.
        source: KeyError,
    },
    /// The backup manifest was keyed under another backup key.
    #[error("backup manifest key under master {master}")]
    ManifestKey {
        /// The master the backup names.
        master: MasterKeyId,
    },
    /// The checkpoint is sealed and no data key is configured.
    #[error("the checkpoint is sealed and no data key is configured: {0}")]
    CheckpointSealed(#[source] aedb_checkpoint::CheckpointError),
    /// A WAL segment is encrypted and no data key is configured.
    #[error("{} is encrypted under {epoch} and no data key is configured", .path.display())]
    WalEncrypted {
        /// The backup's segment file.
        path: PathBuf,
        /// Its key epoch.
        epoch: KeyEpoch,
    },
    /// No key is configured for a WAL segment's key epoch.
    #[error("no key for {epoch} in {}", .path.display())]
    NoWalKey {
        /// The backup's segment file.
        path: PathBuf,
        /// Its key epoch.
        epoch: KeyEpoch,
    },
}

/// What a tampered backup file fails ([`BackupError::TamperedFile`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Tamper {
    /// The live checkpoint being copied does not match its manifest record.
    #[error("the live checkpoint does not match its manifest record")]
    LiveCheckpoint,
    /// The file is longer than listed.
    #[error("{len} bytes, the authenticated listing says {listed}")]
    Longer {
        /// Its length.
        len: u64,
        /// The listed length.
        listed: u64,
    },
    /// The file's SHA-256 differs from the listing.
    #[error("SHA-256 differs from the authenticated listing")]
    Hash,
    /// The checkpoint does not authenticate (or the data key is wrong).
    #[error("checkpoint does not authenticate (or wrong data key): {0}")]
    CheckpointAuth(#[source] aedb_checkpoint::CheckpointError),
    /// The checkpoint's hash differs from the listing.
    #[error("checkpoint hash differs from the listing")]
    CheckpointHash,
    /// The checkpoint's snapshot does not decode.
    #[error("snapshot does not decode: {0}")]
    Snapshot(#[source] aedb_model::DecodeError),
    /// The checkpoint cannot be used for another reason.
    #[error(transparent)]
    Checkpoint(aedb_actors::CheckpointLoadError),
    /// The WAL is corrupt.
    #[error("WAL corruption at byte {offset}: {corruption}")]
    WalCorrupt {
        /// Byte offset in the segment.
        offset: u64,
        /// What is wrong.
        corruption: aedb_wal::Corruption,
    },
    /// A sealed batch does not authenticate.
    #[error("sealed batch at byte {offset} (lsn {lsn}) does not authenticate: {source}")]
    Unseal {
        /// Byte offset in the segment.
        offset: u64,
        /// The batch's last LSN.
        lsn: Lsn,
        /// Why.
        source: aedb_wal::SealError,
    },
}

/// How a backup chain fails to link ([`BackupError::ChainMismatch`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainBreak {
    /// The backup manifest's HMAC does not verify.
    #[error("backup manifest HMAC does not verify: its content was changed")]
    ManifestMac,
    /// The parent backup lists no WAL segment.
    #[error("the parent backup lists no WAL segment")]
    ParentWithoutWal,
    /// The backup does not start where its parent ends.
    #[error("starts at lsn {first} but its parent ends at lsn {parent_last}")]
    LsnGap {
        /// The backup's first LSN.
        first: Lsn,
        /// The parent's last LSN.
        parent_last: Lsn,
    },
    /// A segment copied again does not extend the earlier copy.
    #[error("does not extend the copy of the same segment in {}", .earlier.display())]
    SegmentNotExtended {
        /// The earlier copy.
        earlier: PathBuf,
    },
    /// The full backup's checkpoint is not at the backup's first LSN.
    #[error("checkpoint is at lsn {checkpoint} but the full backup starts at {first}")]
    CheckpointLsn {
        /// The checkpoint's LSN.
        checkpoint: Lsn,
        /// The full backup's first LSN.
        first: Lsn,
    },
    /// The WAL ends before the LSN the backups claim.
    #[error("the WAL in the chain ends at lsn {wal_last} but the backups claim lsn {claimed}")]
    WalShort {
        /// The WAL's last LSN.
        wal_last: Lsn,
        /// The chain's last LSN.
        claimed: Lsn,
    },
}

/// What WAL an incremental backup misses ([`BackupError::WalRetired`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RetiredWal {
    /// The segment the parent backup ends in.
    #[error("segment {0} that the parent backup ends in")]
    ParentSegment(aedb_wal::SegmentSeq),
    /// No segment holds the LSN after the checkpoint.
    #[error("no segment holds the lsn after the checkpoint")]
    AfterCheckpoint,
}

/// What failed while writing a restored data directory ([`BackupError::Write`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteFailure {
    /// The manifest.
    #[error(transparent)]
    Manifest(aedb_manifest::ManifestError),
    /// The checkpoint.
    #[error(transparent)]
    Checkpoint(aedb_checkpoint::CheckpointError),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_path_buf();
    move |source| BackupError::Io { op, path, source }
}

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
    /// Bytes copied (checkpoint and WAL).
    pub bytes: u64,
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

/// A backup manifest read from disk and authenticated.
#[derive(Clone, Debug)]
pub struct VerifiedBackup {
    /// The backup directory.
    pub dir: PathBuf,
    /// The authenticated content.
    pub manifest: BackupManifest,
    /// SHA-256 of the whole `BACKUP` file.
    pub manifest_sha256: [u8; 32],
}

/// Reads `<dir>/BACKUP` and authenticates it with the backup key `config` derives:
/// [`BackupError::WrongKey`] when the key differs, [`BackupError::ChainMismatch`] when
/// the key is right but the content was changed.
pub fn read_backup(dir: &Path, config: &AedbConfig) -> Result<VerifiedBackup, Error> {
    Ok(read_backup_cfg(dir, config)?)
}

fn read_backup_cfg(dir: &Path, config: &AedbConfig) -> Result<VerifiedBackup, BackupError> {
    read_backup_with(&*config.fs, dir, &*config.backup_key_provider()?)
}

fn read_backup_with(
    fs: &dyn FileSystem,
    dir: &Path,
    provider: &dyn KeyProvider,
) -> Result<VerifiedBackup, BackupError> {
    let path = dir.join(BACKUP_MANIFEST_FILE);
    let bytes = match aedb_fs::read_file(fs, &path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::MissingFile(path));
        }
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let decoded =
        BackupManifest::decode_unverified(&bytes).map_err(|source| BackupError::Manifest {
            path: path.clone(),
            source,
        })?;
    let master: MasterKeyId =
        decoded
            .manifest
            .master_key_id
            .parse()
            .map_err(|_| BackupError::Manifest {
                path: path.clone(),
                source: BackupManifestError::new(
                    "backup manifest",
                    0,
                    aedb_types::DecodeErrorKind::Invalid {
                        what: "master key id (does not parse)",
                    },
                ),
            })?;
    let key = match backup_key_from(provider, decoded.manifest.database_id, Some(&master)) {
        Ok((key, _)) => key,
        Err(e) => {
            return Err(BackupError::WrongKey {
                backup: dir.to_path_buf(),
                detail: Box::new(KeyMismatch::Derive { master, source: e }),
            });
        }
    };
    if !decoded.key_matches(&key) {
        return Err(BackupError::WrongKey {
            backup: dir.to_path_buf(),
            detail: Box::new(KeyMismatch::ManifestKey { master }),
        });
    }
    if !decoded.mac_verifies(&bytes, &key) {
        return Err(BackupError::ChainMismatch {
            path,
            detail: ChainBreak::ManifestMac,
        });
    }
    Ok(VerifiedBackup {
        dir: dir.to_path_buf(),
        manifest: decoded.manifest,
        manifest_sha256: Sha256::digest(&bytes).into(),
    })
}

fn ensure_empty_dir(
    fs: &dyn FileSystem,
    dir: &Path,
    err: impl Fn(PathBuf) -> BackupError,
) -> Result<bool, BackupError> {
    match fs.read_dir(dir) {
        Ok(entries) => {
            if !entries.is_empty() {
                return Err(err(dir.to_path_buf()));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs.create_dir_all(dir).map_err(io_err("create", dir))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(err(dir.to_path_buf())),
        Err(e) => Err(io_err("read", dir)(e)),
    }
}

fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> Result<(), BackupError> {
    fs.sync_dir(dir).map_err(io_err("fsync directory", dir))
}

/// Copies `len` bytes of `src` (from its start) to `dst`, fsyncs it, and returns the
/// SHA-256 of what was copied.
/// How much a backup copy writes between `fdatasync`s.
const SYNC_STEP: u64 = 8 << 20;

fn copy_prefix(
    fs: &dyn FileSystem,
    src: &dyn DiskFile,
    src_path: &Path,
    dst: &Path,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<[u8; 32], BackupError> {
    let out = fs
        .open(dst, FsMode::Truncate)
        .map_err(io_err("create", dst))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    let mut at = 0u64;
    let mut unsynced = 0u64;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        src.read_exact_at(&mut buf[..n], at)
            .map_err(io_err("read", src_path))?;
        hasher.update(&buf[..n]);
        out.write_all_at(&buf[..n], at)
            .map_err(io_err("write", dst))?;
        at += n as u64;
        left -= n as u64;
        unsynced += n as u64;
        // Write back in steps: one fsync of a huge dirty file stalls every other
        // fsync on the disk (the commit path's) for its whole duration.
        if unsynced >= SYNC_STEP {
            out.sync_data().map_err(io_err("fsync", dst))?;
            unsynced = 0;
        }
        progress(n as u64);
    }
    out.sync_all().map_err(io_err("fsync", dst))?;
    Ok(hasher.finalize().into())
}

/// Counts the bytes a backup or restore has copied or verified, reports `(done, total)`
/// and, for backups with a rate limit, sleeps to keep to it.
struct CopyProgress<'p> {
    done: u64,
    total: u64,
    report: Progress<'p>,
    bytes_per_sec: Option<u64>,
    started: std::time::Instant,
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
        }
    }

    /// Records `n` more bytes; sleeps until the bytes so far keep to the rate.
    fn tick(&mut self, n: u64) {
        self.done += n;
        (self.report)(self.done, self.total);
        if let Some(rate) = self.bytes_per_sec {
            let due = std::time::Duration::from_secs_f64(self.done as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
    }
}

/// The byte length of the active segment's stable prefix: the end of the frame that
/// carries `synced` (or of the last frame at or below it). Frames after it may still be
/// being written and are never copied.
fn stable_prefix_len(file: &dyn DiskFile, path: &Path, synced: Lsn) -> Result<u64, BackupError> {
    let len = file.len().map_err(io_err("stat", path))?;
    let mut bytes = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut bytes, 0)
        .map_err(io_err("read", path))?;
    let header = SegmentHeader::decode(&bytes).map_err(|source| BackupError::SegmentHeader {
        path: path.to_path_buf(),
        source,
    })?;
    let mut at = header.header_len() as u64;
    let mut end = at;
    // The scan stops at the first frame past `synced` (the callback's error) or at the
    // first bytes that are not a complete frame; either way `end` is stable.
    let _ = aedb_wal::scan_segment(&bytes, true, |frame| {
        if frame.lsn > synced {
            return Err(());
        }
        at += frame.encoded_len as u64;
        end = at;
        Ok(())
    });
    Ok(end)
}

struct PlannedWal {
    seq: aedb_wal::SegmentSeq,
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    /// Bytes to copy.
    len: u64,
}

fn segment_base(file: &dyn DiskFile, path: &Path) -> Result<Lsn, BackupError> {
    let mut buf = [0u8; 64];
    file.read_exact_at(&mut buf, 0)
        .map_err(io_err("read", path))?;
    SegmentHeader::decode(&buf)
        .map(|h| h.base_lsn)
        .map_err(|source| BackupError::SegmentHeader {
            path: path.to_path_buf(),
            source,
        })
}

/// Chooses the segments to copy from `view`: those from `from_seq` on (incremental), or
/// those holding any LSN after `after` (full), and sizes each.
fn plan_wal(
    view: WalBackupView,
    after: Lsn,
    from_seq: Option<aedb_wal::SegmentSeq>,
) -> Result<Vec<PlannedWal>, BackupError> {
    let active = view.active;
    let synced = view.synced_lsn;
    let mut segs: Vec<(aedb_wal::SegmentSeq, PathBuf, Arc<dyn DiskFile>, Lsn)> = Vec::new();
    for (seq, path, file) in view.segments {
        let base = segment_base(&*file, &path)?;
        segs.push((seq, path, file, base));
    }
    let start = match from_seq {
        Some(first) => {
            let Some(i) = segs.iter().position(|s| s.0 == first) else {
                return Err(BackupError::WalRetired {
                    since: after,
                    detail: RetiredWal::ParentSegment(first),
                });
            };
            i
        }
        None => {
            // Segment i holds LSNs base_i ..= base_{i+1} - 1; the first needed one holds
            // after + 1 (or is the last).
            let i = (0..segs.len())
                .find(|&i| i + 1 == segs.len() || segs[i + 1].3 > after.next())
                .unwrap_or(0);
            if segs.get(i).is_none_or(|s| s.3 > after.next()) {
                return Err(BackupError::WalRetired {
                    since: after,
                    detail: RetiredWal::AfterCheckpoint,
                });
            }
            i
        }
    };
    let mut planned = Vec::new();
    for (seq, path, file, _) in segs.into_iter().skip(start) {
        let len = if seq == active {
            stable_prefix_len(&*file, &path, synced)?
        } else {
            file.len().map_err(io_err("stat", &path))?
        };
        planned.push(PlannedWal {
            seq,
            path,
            file,
            len,
        });
        if seq == active {
            break;
        }
    }
    Ok(planned)
}

impl AedbInstance {
    /// Takes a hot **full** backup into `dir` (created; must be empty): copies the newest
    /// sealed checkpoint (taking one first only if there is none) and the WAL after it
    /// while commits continue.
    /// The backup restores to its `last_lsn`: every commit durable when the WAL barrier
    /// ran. `progress` is called with `(bytes copied, bytes total)`. Records
    /// `BackupTaken` in the database's manifest.
    pub fn backup_full(
        &self,
        dir: impl AsRef<Path>,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.backup_full_by(Who::Anonymous, dir.as_ref(), progress)
    }

    /// [`AedbInstance::backup_full`] on behalf of `caller` (`GlobalAdmin`).
    pub fn backup_full_as(
        &self,
        caller: &aedb_authz::CallerId,
        dir: impl AsRef<Path>,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.backup_full_by(Who::Caller(caller), dir.as_ref(), progress)
    }

    /// [`AedbInstance::backup_incremental`] on behalf of `caller` (`GlobalAdmin`).
    pub fn backup_incremental_as(
        &self,
        caller: &aedb_authz::CallerId,
        dir: impl AsRef<Path>,
        parent: impl AsRef<Path>,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.backup_incremental_by(Who::Caller(caller), dir.as_ref(), parent.as_ref(), progress)
    }

    /// The one full-backup path of the anonymous and `*_as` forms.
    fn backup_full_by(
        &self,
        who: Who<'_>,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.permit(who, [&aedb_authz::Action::Backup], "backup")?;
        Ok(self.backup_full_unchecked(dir, progress)?)
    }

    /// The one incremental-backup path of the anonymous and `*_as` forms.
    fn backup_incremental_by(
        &self,
        who: Who<'_>,
        dir: &Path,
        parent: &Path,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.permit(who, [&aedb_authz::Action::Backup], "backup")?;
        Ok(self.backup_incremental_unchecked(dir, parent, progress)?)
    }

    fn backup_full_unchecked(
        &self,
        dir: &Path,
        progress: Progress<'_>,
    ) -> Result<BackupReport, BackupError> {
        ensure_empty_dir(&*self.fs, dir, BackupError::NonEmptyBackupDir)?;
        // The newest checkpoint plus the WAL after it is a full backup: sealing a fresh
        // checkpoint would cost the workload CPU the copy does not need (automatic
        // checkpoints bound the WAL after it by `checkpoint_wal_bytes`). Only a
        // database that has none yet gets one.
        if self
            .pipeline
            .manifest_live_state()?
            .newest_checkpoint()
            .is_none()
        {
            self.pipeline.checkpoint_now()?;
        }
        // A concurrent checkpoint may retire the file between listing and opening it:
        // list again then (it takes two newer checkpoints to retire one).
        let mut attempt = 0;
        let (live, checkpoint) = loop {
            let live = self.pipeline.manifest_live_state()?;
            let Some((lsn, rec)) = live.newest_checkpoint().map(|(l, r)| (l, r.clone())) else {
                break (live, None);
            };
            let path = self.dir.join("checkpoints").join(&rec.file_name);
            match self.fs.open(&path, FsMode::Existing) {
                Ok(file) => break (live, Some((lsn, rec, path, file))),
                Err(e) if attempt < 3 && e.kind() == std::io::ErrorKind::NotFound => {
                    attempt += 1;
                }
                Err(e) => return Err(io_err("open", &path)(e)),
            }
        };
        let base = checkpoint.as_ref().map_or(Lsn::ZERO, |c| c.0);
        let view = self.pipeline.wal_backup_view()?;
        let synced = view.synced_lsn;
        let wal = plan_wal(view, base, None)?;
        let total =
            checkpoint.as_ref().map_or(0, |c| c.1.len) + wal.iter().map(|w| w.len).sum::<u64>();
        let rate = self.backup_rate.load(std::sync::atomic::Ordering::Relaxed);
        let mut copied = CopyProgress::new(total, progress, rate);
        let mut tick = |n: u64| copied.tick(n);
        let mut files = Vec::new();
        if let Some((_, rec, path, file)) = checkpoint {
            let out_dir = dir.join(BackupFileKind::Checkpoint.dir());
            self.fs
                .create_dir_all(&out_dir)
                .map_err(io_err("create", &out_dir))?;
            let dst = out_dir.join(&rec.file_name);
            let sha = copy_prefix(&*self.fs, &*file, &path, &dst, rec.len, &mut tick)?;
            if sha != rec.sha256 {
                return Err(BackupError::TamperedFile {
                    path,
                    detail: Box::new(Tamper::LiveCheckpoint),
                });
            }
            sync_dir(&*self.fs, &out_dir)?;
            files.push(BackupFile {
                kind: BackupFileKind::Checkpoint,
                name: rec.file_name.clone(),
                len: rec.len,
                sha256: sha,
            });
        }
        files.extend(copy_wal(&*self.fs, dir, wal, &mut tick)?);
        self.finish_backup(
            dir,
            BackupKind::Full,
            base,
            synced.max(base),
            None,
            &live,
            files,
            copied.done,
        )
    }

    /// Takes a hot **incremental** backup into `dir` (created; must be empty): the WAL
    /// since `parent`'s end (a full or incremental backup of this database, verified
    /// first). Fails with [`BackupError::WalRetired`] when checkpoints have retired
    /// that WAL since: take a full backup then.
    pub fn backup_incremental(
        &self,
        dir: impl AsRef<Path>,
        parent: impl AsRef<Path>,
        progress: Progress<'_>,
    ) -> Result<BackupReport, Error> {
        self.backup_incremental_by(Who::Anonymous, dir.as_ref(), parent.as_ref(), progress)
    }

    fn backup_incremental_unchecked(
        &self,
        dir: &Path,
        parent: &Path,
        progress: Progress<'_>,
    ) -> Result<BackupReport, BackupError> {
        let parent = read_backup_with(&*self.fs, parent, &*self.backup_keys)?;
        if parent.manifest.database_id != self.database_id() {
            return Err(BackupError::ForeignBackup {
                backup: parent.dir.clone(),
                expected: self.database_id(),
                found: parent.manifest.database_id,
            });
        }
        let tail = parent
            .manifest
            .wal_files()
            .last()
            .and_then(|f| aedb_wal::dir::parse_segment_file_name(&f.name))
            .ok_or_else(|| BackupError::ChainMismatch {
                path: parent.dir.clone(),
                detail: ChainBreak::ParentWithoutWal,
            })?;
        ensure_empty_dir(&*self.fs, dir, BackupError::NonEmptyBackupDir)?;
        let live = self.pipeline.manifest_live_state()?;
        let view = self.pipeline.wal_backup_view()?;
        let synced = view.synced_lsn;
        let since = parent.manifest.last_lsn;
        let wal = plan_wal(view, since, Some(tail))?;
        let total = wal.iter().map(|w| w.len).sum::<u64>();
        let rate = self.backup_rate.load(std::sync::atomic::Ordering::Relaxed);
        let mut copied = CopyProgress::new(total, progress, rate);
        let mut tick = |n: u64| copied.tick(n);
        let files = copy_wal(&*self.fs, dir, wal, &mut tick)?;
        self.finish_backup(
            dir,
            BackupKind::Incremental,
            since,
            synced.max(since),
            Some(parent.manifest_sha256),
            &live,
            files,
            copied.done,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_backup(
        &self,
        dir: &Path,
        kind: BackupKind,
        first_lsn: Lsn,
        last_lsn: Lsn,
        parent_sha256: Option<[u8; 32]>,
        live: &aedb_manifest::LiveState,
        files: Vec<BackupFile>,
        bytes: u64,
    ) -> Result<BackupReport, BackupError> {
        let database_id = self.database_id();
        let (key, master) = backup_key_from(&*self.backup_keys, database_id, None)?;
        let mut backup_id = [0u8; 16];
        rand::fill(&mut backup_id);
        let manifest = BackupManifest {
            kind,
            database_id,
            backup_id,
            created_at_unix_ms: aedb_types::clock::unix_millis(),
            first_lsn,
            last_lsn,
            parent_sha256,
            master_key_id: master.to_string(),
            key_epochs: live
                .key_epochs()
                .iter()
                .map(|(e, info)| (*e, info.master_key_id.clone()))
                .collect(),
            files,
        };
        let bytes_out = manifest.encode(&key);
        let tmp = dir.join(format!("{BACKUP_MANIFEST_FILE}.tmp"));
        let path = dir.join(BACKUP_MANIFEST_FILE);
        aedb_fs::write_file(&*self.fs, &tmp, &bytes_out).map_err(io_err("write", &tmp))?;
        self.fs
            .rename(&tmp, &path)
            .map_err(io_err("rename", &tmp))?;
        sync_dir(&*self.fs, dir)?;
        let manifest_sha256: [u8; 32] = Sha256::digest(&bytes_out).into();
        // The id's prefix says the kind, so backup age by kind survives a restart.
        let prefix = match kind {
            BackupKind::Full => aedb_manifest::FULL_BACKUP_ID_PREFIX,
            BackupKind::Incremental => aedb_manifest::INCREMENTAL_BACKUP_ID_PREFIX,
        };
        self.pipeline
            .record_manifest(vec![ManifestRecord::BackupTaken {
                backup_id: format!("{prefix}{}", manifest.backup_id_hex()),
                first_lsn,
                last_lsn,
                manifest_sha256,
                at_unix_ms: manifest.created_at_unix_ms,
            }])?;
        self.pipeline
            .engine_metrics()
            .backups
            .record(kind == BackupKind::Full, manifest.created_at_unix_ms);
        Ok(BackupReport {
            dir: dir.to_path_buf(),
            manifest,
            manifest_sha256,
            bytes,
        })
    }
}

fn copy_wal(
    fs: &dyn FileSystem,
    dir: &Path,
    wal: Vec<PlannedWal>,
    tick: &mut dyn FnMut(u64),
) -> Result<Vec<BackupFile>, BackupError> {
    let out_dir = dir.join(BackupFileKind::WalSegment.dir());
    fs.create_dir_all(&out_dir)
        .map_err(io_err("create", &out_dir))?;
    let mut files = Vec::new();
    for w in wal {
        let name = aedb_wal::segment_file_name(w.seq);
        let dst = out_dir.join(&name);
        let sha = copy_prefix(fs, &*w.file, &w.path, &dst, w.len, tick)?;
        files.push(BackupFile {
            kind: BackupFileKind::WalSegment,
            name,
            len: w.len,
            sha256: sha,
        });
    }
    sync_dir(fs, &out_dir)?;
    Ok(files)
}

/// Reads and authenticates every backup of `backups` and checks that they form one
/// chain in order: a full backup first, each incremental's parent link equal to the
/// SHA-256 of the previous manifest, contiguous LSN ranges, one database.
pub fn verify_chain_manifests(
    backups: &[PathBuf],
    config: &AedbConfig,
) -> Result<Vec<VerifiedBackup>, Error> {
    Ok(chain_manifests(backups, config)?)
}

fn chain_manifests(
    backups: &[PathBuf],
    config: &AedbConfig,
) -> Result<Vec<VerifiedBackup>, BackupError> {
    if backups.is_empty() {
        return Err(BackupError::EmptyChain);
    }
    let read: Vec<VerifiedBackup> = backups
        .iter()
        .map(|b| read_backup_cfg(b, config))
        .collect::<Result<_, _>>()?;
    let database = read[0].manifest.database_id;
    for b in &read {
        if b.manifest.database_id != database {
            return Err(BackupError::ForeignBackup {
                backup: b.dir.clone(),
                expected: database,
                found: b.manifest.database_id,
            });
        }
    }
    if read[0].manifest.kind != BackupKind::Full {
        let reason = match read
            .iter()
            .position(|b| b.manifest.kind == BackupKind::Full)
        {
            Some(i) => ChainOrder::FullNotFirst(i + 1),
            None => ChainOrder::NoFull,
        };
        return Err(BackupError::OutOfOrder {
            backup: read[0].dir.clone(),
            reason,
        });
    }
    for i in 1..read.len() {
        let (prev, cur) = (&read[i - 1], &read[i]);
        if cur.manifest.kind == BackupKind::Full {
            return Err(BackupError::OutOfOrder {
                backup: cur.dir.clone(),
                reason: ChainOrder::FullAfterStart,
            });
        }
        let parent = cur.manifest.parent_sha256.unwrap_or([0; 32]);
        if parent != prev.manifest_sha256 {
            if let Some(j) = read.iter().position(|b| b.manifest_sha256 == parent) {
                return Err(BackupError::OutOfOrder {
                    backup: cur.dir.clone(),
                    reason: ChainOrder::ParentElsewhere(j + 1),
                });
            }
            return Err(BackupError::MissingIncremental {
                backup: cur.dir.clone(),
                parent,
            });
        }
        if cur.manifest.first_lsn != prev.manifest.last_lsn {
            return Err(BackupError::ChainMismatch {
                path: cur.dir.join(BACKUP_MANIFEST_FILE),
                detail: ChainBreak::LsnGap {
                    first: cur.manifest.first_lsn,
                    parent_last: prev.manifest.last_lsn,
                },
            });
        }
    }
    Ok(read)
}

/// Checks one listed file against the authenticated listing; returns its path.
fn verify_file(
    fs: &dyn FileSystem,
    backup: &VerifiedBackup,
    file: &BackupFile,
    check_hash: bool,
    tick: &mut dyn FnMut(u64),
) -> Result<PathBuf, BackupError> {
    let path = backup.dir.join(file.kind.dir()).join(&file.name);
    let f = match fs.open(&path, FsMode::Existing) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::MissingFile(path));
        }
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let len = f.len().map_err(io_err("stat", &path))?;
    if len < file.len {
        return Err(BackupError::TruncatedFile {
            path,
            expected: file.len,
            found: len,
        });
    }
    if len > file.len {
        return Err(BackupError::TamperedFile {
            path,
            detail: Box::new(Tamper::Longer {
                len,
                listed: file.len,
            }),
        });
    }
    if check_hash {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < len {
            let n = usize::try_from((len - at).min(buf.len() as u64)).unwrap_or(buf.len());
            f.read_exact_at(&mut buf[..n], at)
                .map_err(io_err("read", &path))?;
            hasher.update(&buf[..n]);
            at += n as u64;
            tick(n as u64);
        }
        let sha: [u8; 32] = hasher.finalize().into();
        if sha != file.sha256 {
            return Err(BackupError::TamperedFile {
                path,
                detail: Box::new(Tamper::Hash),
            });
        }
    } else {
        tick(len);
    }
    Ok(path)
}

/// Verifies a chain of backups without restoring it: manifests, links, every file, the
/// checkpoint and the WAL (strictly), as a restore would. Returns what a restore to
/// the chain's end would produce. Writes only to a temporary staging directory.
pub fn verify_backup_chain(
    backups: &[PathBuf],
    config: &AedbConfig,
    progress: Progress<'_>,
) -> Result<RestoreReport, Error> {
    chain_state(backups, config, true, None, progress).map(|(report, _)| report)
}

/// Verifies a chain like a restore and returns the state it restores to (up to
/// `target` or the chain's end), without writing a data directory: for parity checks
/// against a backup. Stages the WAL in a temporary directory it removes.
pub fn chain_state(
    backups: &[PathBuf],
    config: &AedbConfig,
    strict: bool,
    target: Option<Lsn>,
    progress: Progress<'_>,
) -> Result<(RestoreReport, State), Error> {
    let staging = std::env::temp_dir().join(format!(
        "aedb-verify-{}-{}",
        std::process::id(),
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let result = rebuild(backups, config, strict, target, &staging, progress)
        .map(|(report, rebuilt, _)| (report, rebuilt.state));
    remove_tree(&*config.fs, &staging);
    Ok(result?)
}

struct Rebuilt {
    state: State,
    epochs: Vec<(KeyEpoch, String)>,
}

/// Verifies the chain, stages its WAL in `staging` (created, left for the caller to
/// remove), and replays it into the full backup's checkpoint.
fn rebuild(
    backups: &[PathBuf],
    config: &AedbConfig,
    strict: bool,
    target: Option<Lsn>,
    staging: &Path,
    progress: Progress<'_>,
) -> Result<(RestoreReport, Rebuilt, DatabaseId), BackupError> {
    let chain = chain_manifests(backups, config)?;
    let database = chain[0].manifest.database_id;
    let first = chain[0].manifest.first_lsn;
    let last = chain[chain.len() - 1].manifest.last_lsn;
    if let Some(t) = target
        && (t < first || t > last)
    {
        return Err(BackupError::TargetOutOfRange {
            target: t,
            first,
            last,
        });
    }
    let total: u64 = chain
        .iter()
        .flat_map(|b| b.manifest.files.iter())
        .map(|f| f.len)
        .sum();
    let mut verified = CopyProgress::new(total, progress, 0);
    let mut tick = |n: u64| verified.tick(n);

    // Every file against its authenticated listing; the WAL staged segment by segment.
    let fs = &*config.fs;
    let wal_dir = staging.join("wal");
    fs.create_dir_all(&wal_dir)
        .map_err(io_err("create", &wal_dir))?;
    let mut staged: BTreeMap<String, (PathBuf, u64)> = BTreeMap::new();
    let mut checkpoint_path = None;
    for b in &chain {
        for file in &b.manifest.files {
            let check_hash = strict || file.kind == BackupFileKind::Checkpoint;
            let path = verify_file(fs, b, file, check_hash, &mut tick)?;
            match file.kind {
                BackupFileKind::Checkpoint => checkpoint_path = Some((path, file.clone())),
                BackupFileKind::WalSegment => {
                    if let Some((earlier, earlier_len)) = staged.get(&file.name) {
                        // A segment copied again (it was active when the parent was
                        // taken) must extend the earlier copy.
                        if !is_prefix(fs, earlier, *earlier_len, &path)? {
                            return Err(BackupError::ChainMismatch {
                                path,
                                detail: ChainBreak::SegmentNotExtended {
                                    earlier: earlier.clone(),
                                },
                            });
                        }
                    }
                    staged.insert(file.name.clone(), (path, file.len));
                }
            }
        }
    }
    for (name, (path, _)) in &staged {
        let dst = wal_dir.join(name);
        let bytes = aedb_fs::read_file(fs, path).map_err(io_err("stage", path))?;
        aedb_fs::write_file(fs, &dst, &bytes).map_err(io_err("stage", path))?;
    }

    // The checkpoint: authenticated (sealed) or digest-checked (plaintext).
    let keyring = config.keyring()?;
    let mut epochs = EpochTable::default();
    let epoch_list = chain[chain.len() - 1].manifest.key_epochs.clone();
    for (epoch, master) in &epoch_list {
        let master: MasterKeyId = master.parse()?;
        epochs.insert(*epoch, master);
    }
    let mut state = match &checkpoint_path {
        None => State::new(),
        Some((path, listed)) => {
            recovery::load_checkpoint(fs, path, database, &listed.sha256, first, &epochs, &keyring)
                .map_err(|e| match e {
                    CheckpointLoadError::Open {
                        source: e @ aedb_checkpoint::CheckpointError::KeyRequired { .. },
                        ..
                    } => BackupError::WrongKey {
                        backup: chain[0].dir.clone(),
                        detail: Box::new(KeyMismatch::CheckpointSealed(e)),
                    },
                    CheckpointLoadError::Open { source, .. } => BackupError::TamperedFile {
                        path: path.clone(),
                        detail: Box::new(Tamper::CheckpointAuth(source)),
                    },
                    CheckpointLoadError::HashMismatch { .. } => BackupError::TamperedFile {
                        path: path.clone(),
                        detail: Box::new(Tamper::CheckpointHash),
                    },
                    CheckpointLoadError::Decode { source, .. } => BackupError::TamperedFile {
                        path: path.clone(),
                        detail: Box::new(Tamper::Snapshot(source)),
                    },
                    CheckpointLoadError::LsnMismatch { found, .. } => BackupError::ChainMismatch {
                        path: path.clone(),
                        detail: ChainBreak::CheckpointLsn {
                            checkpoint: found,
                            first,
                        },
                    },
                    other => BackupError::TamperedFile {
                        path: path.clone(),
                        detail: Box::new(Tamper::Checkpoint(other)),
                    },
                })?
        }
    };

    // The WAL: segment chain, CRCs, density and every sealed-batch tag.
    let wal_config = crate::offline::wal_config(&config.fs, database, &epochs, &keyring);
    let stop = target.unwrap_or(last);
    let mode = if strict {
        RecoveryMode::Strict
    } else {
        RecoveryMode::TruncateAtCorruption
    };
    let WalReplay {
        wal: report,
        replayed,
    } = recovery::replay_wal(&wal_dir, &wal_config, mode, &mut state, Some(stop))
        .map_err(|e| wal_error(e, &wal_dir, &staged, &chain[0].dir))?;
    if let Some(cut) = &report.corruption {
        tracing::warn!(
            "salvage restore: WAL corruption in {} at byte {}: {}; restoring up to lsn {}",
            cut.path.display(),
            cut.offset,
            cut.corruption,
            state.lsn()
        );
    }
    if strict && state.lsn() != stop {
        return Err(BackupError::ChainMismatch {
            path: wal_dir,
            detail: ChainBreak::WalShort {
                wal_last: state.lsn(),
                claimed: stop,
            },
        });
    }
    Ok((
        RestoreReport {
            database_id: database,
            lsn: state.lsn(),
            chain_last_lsn: last,
            backups: chain.len(),
            bytes_verified: verified.done,
            frames_replayed: replayed,
        },
        Rebuilt {
            state,
            epochs: epoch_list,
        },
        database,
    ))
}

/// Maps a WAL verification failure on the staged copy back to the backup file.
fn wal_error(
    e: RecoverError<FrameReplayError>,
    wal_dir: &Path,
    staged: &BTreeMap<String, (PathBuf, u64)>,
    full: &Path,
) -> BackupError {
    let original = |p: &Path| -> PathBuf {
        p.strip_prefix(wal_dir)
            .ok()
            .and_then(|name| name.to_str())
            .and_then(|name| staged.get(name))
            .map_or_else(|| p.to_path_buf(), |(orig, _)| orig.clone())
    };
    match e {
        RecoverError::Corrupt {
            path,
            offset,
            corruption,
        } => BackupError::TamperedFile {
            path: original(&path),
            detail: Box::new(Tamper::WalCorrupt { offset, corruption }),
        },
        RecoverError::Unseal {
            path,
            offset,
            lsn,
            source,
        } => BackupError::TamperedFile {
            path: original(&path),
            detail: Box::new(Tamper::Unseal {
                offset,
                lsn,
                source,
            }),
        },
        RecoverError::Encrypted { path, epoch, .. } => BackupError::WrongKey {
            backup: full.to_path_buf(),
            detail: Box::new(KeyMismatch::WalEncrypted {
                path: original(&path),
                epoch,
            }),
        },
        RecoverError::UnknownKeyEpoch { path, epoch, .. } => BackupError::WrongKey {
            backup: full.to_path_buf(),
            detail: Box::new(KeyMismatch::NoWalKey {
                path: original(&path),
                epoch,
            }),
        },
        other => BackupError::Replay(Box::new(other)),
    }
}

fn is_prefix(
    fs: &dyn FileSystem,
    earlier: &Path,
    len: u64,
    later: &Path,
) -> Result<bool, BackupError> {
    let a = aedb_fs::read_file(fs, earlier).map_err(io_err("read", earlier))?;
    let b = fs
        .open(later, FsMode::Existing)
        .map_err(io_err("open", later))?;
    let mut head = vec![0u8; a.len()];
    if (a.len() as u64) != len || b.read_exact_at(&mut head, 0).is_err() {
        return Ok(false);
    }
    Ok(head == a)
}

/// Removes `dir` and everything under it, best effort (cleanup of staging copies and of
/// a failed restore's partial output).
fn remove_tree(fs: &dyn FileSystem, dir: &Path) {
    for entry in fs.read_dir(dir).unwrap_or_default() {
        if fs.is_dir(&entry) {
            remove_tree(fs, &entry);
        } else {
            let _ = fs.remove_file(&entry);
        }
    }
    let _ = fs.remove_dir(dir);
}

/// Restores a chain of backups (full first, then incrementals in order) into
/// `target_dir`, which must be empty or absent, up to the chain's end or
/// `options.target_lsn`. Verifies everything first (see [`RestoreOptions::strict`]),
/// then writes a fresh data directory: a `MANIFEST` for the same database id
/// (`DatabaseCreated`, the key epochs, `CheckpointAdded`), a checkpoint at the restored
/// LSN sealed under the newest epoch, and an empty WAL that continues after it. The
/// directory then opens normally with the same keys. On failure nothing is left in
/// `target_dir`.
pub fn restore_from_backup_chain(
    backups: &[PathBuf],
    target_dir: impl AsRef<Path>,
    options: RestoreOptions,
    progress: Progress<'_>,
) -> Result<RestoreReport, Error> {
    Ok(restore(backups, target_dir.as_ref(), options, progress)?)
}

fn restore(
    backups: &[PathBuf],
    target: &Path,
    options: RestoreOptions,
    progress: Progress<'_>,
) -> Result<RestoreReport, BackupError> {
    let created = ensure_empty_dir(&*options.config.fs, target, BackupError::NonEmptyTarget)?;
    let staging = target.join(".aedb-restore-staging");
    let result = (|| {
        let (report, rebuilt, database) = rebuild(
            backups,
            &options.config,
            options.strict,
            options.target_lsn,
            &staging,
            progress,
        )?;
        remove_tree(&*options.config.fs, &staging);
        write_data_dir(target, &options.config, database, &rebuilt)?;
        Ok(report)
    })();
    if result.is_err() {
        let fs = &*options.config.fs;
        if created {
            remove_tree(fs, target);
        } else {
            for entry in fs.read_dir(target).unwrap_or_default() {
                if fs.is_dir(&entry) {
                    remove_tree(fs, &entry);
                } else {
                    let _ = fs.remove_file(&entry);
                }
            }
        }
    }
    result
}

fn write_data_dir(
    target: &Path,
    config: &AedbConfig,
    database: DatabaseId,
    rebuilt: &Rebuilt,
) -> Result<(), BackupError> {
    let keyring = config.keyring()?;
    let write = |e: aedb_manifest::ManifestError| BackupError::Write(WriteFailure::Manifest(e));
    let mut manifest = Manifest::create(
        &config.fs,
        &target.join(aedb_manifest::MANIFEST_FILE_NAME),
        database,
        keyring.manifest_key(database)?,
    )
    .map_err(write)?;
    let now = aedb_types::clock::unix_millis();
    manifest
        .append(&ManifestRecord::DatabaseCreated {
            database_id: database,
            created_at_unix_ms: now,
        })
        .map_err(write)?;
    let mut epochs = rebuilt.epochs.clone();
    if epochs.is_empty() {
        epochs.push((KeyEpoch::FIRST, keyring.current_data_master()?.to_string()));
    }
    for (epoch, master) in &epochs {
        manifest
            .append(&ManifestRecord::KeyEpochChanged {
                epoch: *epoch,
                master_key_id: master.clone(),
                at_unix_ms: now,
            })
            .map_err(write)?;
    }
    let lsn = rebuilt.state.lsn();
    if lsn > Lsn::ZERO {
        let (epoch, master) = epochs[epochs.len() - 1].clone();
        let master: MasterKeyId = master.parse()?;
        let key = keyring.checkpoint_key(database, epoch, &master)?;
        let werr =
            |e: aedb_checkpoint::CheckpointError| BackupError::Write(WriteFailure::Checkpoint(e));
        let mut writer = CheckpointWriter::create(
            &config.fs,
            target,
            CheckpointMeta::new(database, lsn, epoch),
            key.as_ref(),
            &mut OsNonceSource,
        )
        .map_err(werr)?;
        writer
            .write_all(&rebuilt.state.to_snapshot_bytes())
            .map_err(werr)?;
        let info = writer.finish().map_err(werr)?;
        manifest.append(&info.manifest_record()).map_err(write)?;
    }
    let wal = target.join(aedb_actors::WAL_DIR);
    config
        .fs
        .create_dir_all(&wal)
        .map_err(io_err("create", &wal))?;
    config
        .fs
        .sync_dir(target)
        .map_err(io_err("fsync directory", target))
}
