//! Why a backup or a restore failed: [`BackupError`] and its typed causes.

use std::path::PathBuf;

use aedb_actors::{CheckpointFailure, FrameReplayError};
use aedb_keys::{KeyError, MasterKeyId};
use aedb_types::{DatabaseId, DecodeError, KeyEpoch, Lsn};
use aedb_wal::RecoverError;

#[cfg(doc)]
use super::Error;

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
        source: DecodeError,
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
    /// The target LSN is inside the chain's range but no file of the chain holds the
    /// state there: it lies strictly between an incremental's first LSN (its parent's
    /// end) and the LSN of its runs, and flushes had retired the WAL in between before
    /// that incremental was taken. Restore to `after` (or below) or to `before` (or
    /// above) instead.
    #[error(
        "target lsn {target} cannot be restored exactly: {} holds runs at lsn {before} but no WAL after its parent's end at lsn {after} (it was retired before the backup was taken); restore to lsn {after} or {before} and above",
        .backup.display()
    )]
    TargetUnreachable {
        /// Asked for.
        target: Lsn,
        /// The incremental backup whose gap it falls in.
        backup: PathBuf,
        /// The last restorable LSN below it (the incremental's first LSN).
        after: Lsn,
        /// The first restorable LSN above it (the incremental's run-set LSN).
        before: Lsn,
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
    /// An offline capture could not read the database id from the manifest header,
    /// which the capture listing's MAC key is derived for.
    #[error("cannot read the database id from {}: {source}", .path.display())]
    NoDatabaseId {
        /// The manifest.
        path: PathBuf,
        /// Why.
        source: Box<aedb_manifest::ManifestError>,
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
    /// A `CAPTURE` listing is not of kind capture (or a capture was given as a backup).
    #[error("the listing is not a forensic capture's")]
    NotACapture,
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
    /// The master a backup names cannot be derived, and the key epochs listed are
    /// sealed under it: a chain spanning a key rotation needs the old master version
    /// (keep it in the HSM, or add it to the provider) to restore.
    #[error(
        "key epoch(s) {} need master {master}, which the key provider cannot derive: {source}",
        .epochs.iter().map(|e| e.get().to_string()).collect::<Vec<_>>().join(", ")
    )]
    EpochMasterMissing {
        /// The epochs sealed under the missing master.
        epochs: Vec<KeyEpoch>,
        /// The master.
        master: MasterKeyId,
        /// Why it cannot be derived.
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
    /// A capture holds a file its listing does not list (it was added).
    #[error("the file is not in the authenticated listing")]
    Unlisted,
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
    /// The parent backup lists no WAL segment (no longer raised: an incremental whose
    /// parent lists none copies whole segments).
    #[error("the parent backup lists no WAL segment")]
    ParentWithoutWal,
    /// An incremental inherits a run no earlier backup of the chain holds (with that
    /// file id, length and SHA-256).
    #[error("inherits run file {file_id}, which no earlier backup of the chain holds")]
    InheritedRunMissing {
        /// The run's file id.
        file_id: u64,
    },
    /// A WAL tail continues a segment the chain holds a different number of bytes of.
    #[error(
        "a WAL segment tail from byte {offset}, but the chain holds {held} bytes of the segment"
    )]
    TailWithoutPrefix {
        /// Where the tail starts.
        offset: u64,
        /// How many bytes of the segment the earlier backups hold.
        held: u64,
    },
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
    /// The restored state could not be read back to seal it.
    #[error(transparent)]
    Unreadable(aedb_model::ReadError),
    /// A run file of the restored state could not be written.
    #[error(transparent)]
    Storage(aedb_storage::StorageError),
}
