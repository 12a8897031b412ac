//! Manifest record bodies: the typed [`ManifestRecord`] and its version-1 codec.
//!
//! A body is `kind (u8) || fields`, all integers little-endian, text as
//! `len (u16) || UTF-8 bytes`, fixed-size hashes as raw bytes. The body must be consumed
//! exactly. Framing, MACs and chaining belong to `manifest.rs`.
//!
//! | kind | record | fields |
//! |-----:|--------|--------|
//! | 1 | `DatabaseCreated`  | database_id (16), created_at_unix_ms (u64) |
//! | 2 | `CheckpointAdded`  | lsn (u64), epoch (u32), file_name (text ≤ 255, a plain file name), sha256 (32), len (u64) |
//! | 3 | `SegmentSealed`    | seq (u64), first_lsn (u64), last_lsn (u64), sha256 (32) |
//! | 4 | `SegmentRetired`   | seq (u64) |
//! | 5 | `CheckpointRetired`| lsn (u64) |
//! | 6 | `KeyEpochChanged`  | epoch (u32), master_key_id (text ≤ 256), at_unix_ms (u64) |
//! | 7 | `BackupTaken`      | backup_id (text ≤ 256), first_lsn (u64), last_lsn (u64), manifest_sha256 (32), at_unix_ms (u64) |
//! | 8 | `ServerEnvHash`    | profile_id (text ≤ 256), hash (32) |
//! | 9 | `Compacted`        | replaces_head (32), records_replaced (u64), at_unix_ms (u64) |
//! | 10 | `KeyEpochRetired` | epoch (u32), at_unix_ms (u64) |
//! | 11 | `RecoveryEvent`   | event (u8, [`RecoveryEventKind`]), lsn (u64), at_unix_ms (u64), detail (text ≤ 256) |
//! | 12 | `VersionEdit`     | flushed_lsn (u64), next_file_id (u64), added count (u16), run*, removed count (u16), file_id (u64)*, [floor (u64, nonzero)] |
//!
//! A `run` of a `VersionEdit` is `file_id (u64), level (u8), epoch (u32), min_lsn (u64),
//! max_lsn (u64), entries (u64), len (u64), sha256 (32), first_key (bytes ≤ 64), last_key
//! (bytes ≤ 64)`, byte strings as `len (u16) || bytes`. The keys are prefixes of the file's
//! first and last key (at most [`MAX_RUN_KEY_PREFIX`] bytes), for people and for `check
//! invariants`; the file's own authenticated metadata holds the full keys.

use aedb_types::reader::{ByteReader, LenPrefix};
use aedb_types::{DatabaseId, DecodeError, DecodeErrorKind, KeyEpoch, Lsn, SegmentSeq};
use std::fmt;

/// Longest identifier text (`master_key_id`, `backup_id`, `profile_id`), in bytes.
pub const MAX_TEXT_LEN: usize = 256;
/// Longest `detail` text of a `RecoveryEvent` record, in bytes.
pub const MAX_DETAIL_LEN: usize = 256;
/// Longest file name in a `CheckpointAdded` record, in bytes.
pub const MAX_FILE_NAME_LEN: usize = 255;
/// Longest key prefix a [`RunRecord`] keeps of its file's first and last key, in bytes.
pub const MAX_RUN_KEY_PREFIX: usize = 64;
/// Deepest LSM level a run can be recorded at is `MAX_LEVELS - 1`.
pub const MAX_LEVELS: u8 = 7;
/// Most runs (added plus removed) one `VersionEdit` record may name: keeps a record
/// under the manifest's body limit whatever its key prefixes.
pub const MAX_EDIT_RUNS: usize = 256;

/// One run file (an incremental checkpoint file of the LSM) as a `VersionEdit` records it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunRecord {
    /// The file's id (its name is derived from it by `aedb-checkpoint`).
    pub file_id: u64,
    /// Its level (0 = freshly flushed, overlapping; deeper levels are sorted and disjoint).
    pub level: u8,
    /// The key epoch it is sealed under.
    pub epoch: KeyEpoch,
    /// Oldest LSN of an entry in it.
    pub min_lsn: Lsn,
    /// Newest LSN of an entry in it.
    pub max_lsn: Lsn,
    /// Number of entries (versions and tombstones).
    pub entries: u64,
    /// File length in bytes.
    pub len: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// Prefix (≤ [`MAX_RUN_KEY_PREFIX`] bytes) of its first key.
    pub first_key: Vec<u8>,
    /// Prefix (≤ [`MAX_RUN_KEY_PREFIX`] bytes) of its last key.
    pub last_key: Vec<u8>,
}

impl RunRecord {
    /// `key` cut to the prefix a record keeps.
    pub fn key_prefix(key: &[u8]) -> Vec<u8> {
        key[..key.len().min(MAX_RUN_KEY_PREFIX)].to_vec()
    }
}

/// One atomic change of the LSM's live run files (see [`ManifestRecord::VersionEdit`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VersionEdit {
    /// Every commit with an LSN up to this one is in the live runs (a flush raises it; a
    /// compaction passes the current value or zero). The live value is the maximum seen.
    pub flushed_lsn: Lsn,
    /// File ids below this are used or reserved; the live value is the maximum seen
    /// (and above every added id): the id allocator restarts above it at open.
    pub next_file_id: u64,
    /// Runs made live.
    pub added: Vec<RunRecord>,
    /// File ids of live runs no longer needed.
    pub removed: Vec<u64>,
    /// The retention floor a compaction merged to: versions older than the newest one
    /// at or before it may be gone, so reads as of earlier LSNs must be refused, after
    /// a restart too. Zero for flushes and moves (nothing dropped); the live value is
    /// the maximum seen. Encoded only when nonzero (an optional trailing `u64`), so
    /// edits without it keep their bytes.
    pub floor: Lsn,
}

/// One manifest record. Nothing in a record is secret: `master_key_id` names a key (alias
/// and version), it never contains key material.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ManifestRecord {
    /// The database was created. At most once per manifest file.
    DatabaseCreated {
        /// Its identity; must equal the manifest header's.
        database_id: DatabaseId,
        /// Creation time, milliseconds since the Unix epoch.
        created_at_unix_ms: u64,
    },
    /// A checkpoint file was written and made durable.
    CheckpointAdded {
        /// Its LSN.
        lsn: Lsn,
        /// The key epoch it is sealed under.
        epoch: KeyEpoch,
        /// Its file name in `<data_dir>/checkpoints/` (no directory part).
        file_name: String,
        /// SHA-256 of the whole file.
        sha256: [u8; 32],
        /// File length in bytes.
        len: u64,
    },
    /// A WAL segment was sealed (closed with its trailer).
    SegmentSealed {
        /// Segment sequence number.
        seq: SegmentSeq,
        /// First LSN in the segment.
        first_lsn: Lsn,
        /// Last LSN in the segment.
        last_lsn: Lsn,
        /// The segment's chain hash.
        sha256: [u8; 32],
    },
    /// A WAL segment is no longer needed and may be (or was) deleted.
    SegmentRetired {
        /// Segment sequence number.
        seq: SegmentSeq,
    },
    /// A checkpoint is no longer needed and may be (or was) deleted.
    CheckpointRetired {
        /// Its LSN.
        lsn: Lsn,
    },
    /// Keys were rotated: new files are sealed under `epoch`.
    KeyEpochChanged {
        /// The new epoch (strictly greater than the previous one).
        epoch: KeyEpoch,
        /// Non-secret identifier of the master key (alias and version).
        master_key_id: String,
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
    /// No live file needs `epoch` any more: its keys are no longer handed out and a
    /// file claiming to be sealed under it is refused as stale.
    KeyEpochRetired {
        /// The retired epoch (older than the current one).
        epoch: KeyEpoch,
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
    /// A backup was taken.
    BackupTaken {
        /// The backup's identifier.
        backup_id: String,
        /// First LSN the backup covers.
        first_lsn: Lsn,
        /// Last LSN the backup covers.
        last_lsn: Lsn,
        /// SHA-256 of the manifest copy stored in the backup.
        manifest_sha256: [u8; 32],
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
    /// The hash of the server environment profile the database was opened under.
    ServerEnvHash {
        /// The profile's identifier.
        profile_id: String,
        /// Its hash.
        hash: [u8; 32],
    },
    /// Recovery routed around damage (an integrity alert, recorded durably so `aedb
    /// inspect` and `aedb verify` show it after the fact).
    RecoveryEvent {
        /// What recovery did.
        event: RecoveryEventKind,
        /// The LSN it concerns (see [`RecoveryEventKind`]; 0 when none).
        lsn: Lsn,
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
        /// Which file and why, for people (≤ [`MAX_DETAIL_LEN`] bytes; never key
        /// material or user data).
        detail: String,
    },
    /// The LSM's run files changed: runs added (a flush or a compaction's output) and
    /// removed (a compaction's inputs), atomically.
    VersionEdit(VersionEdit),
    /// This file is a compaction of an earlier manifest. Only valid as record 0; the
    /// records after it restate the live set.
    Compacted {
        /// Chain head MAC of the manifest this one replaced.
        replaces_head: [u8; 32],
        /// How many records the replaced manifest held.
        records_replaced: u64,
        /// When, milliseconds since the Unix epoch.
        at_unix_ms: u64,
    },
}

/// The kind byte of each record type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// 1
    DatabaseCreated,
    /// 2
    CheckpointAdded,
    /// 3
    SegmentSealed,
    /// 4
    SegmentRetired,
    /// 5
    CheckpointRetired,
    /// 6
    KeyEpochChanged,
    /// 7
    BackupTaken,
    /// 8
    ServerEnvHash,
    /// 9
    Compacted,
    /// 10
    KeyEpochRetired,
    /// 11
    RecoveryEvent,
    /// 12
    VersionEdit,
}

/// What recovery routed around (the `event` byte of a `RecoveryEvent` record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecoveryEventKind {
    /// 1: the newest checkpoint did not load; recovery started from an older one
    /// (`lsn`: the checkpoint it loaded, 0 for none).
    CheckpointFallback,
    /// 2: a torn WAL tail was cut (`lsn`: the last valid LSN).
    WalTornTail,
    /// 3: a torn final manifest append was cut (`lsn`: 0).
    ManifestTornTail,
    /// 4: a lenient recovery restarted the WAL after the checkpoint (`lsn`: the
    /// checkpoint's LSN), or cut it at corruption.
    LenientRestart,
    /// 5: a lenient recovery retired a sealed segment whose bytes were lost (`lsn`: 0;
    /// the segment in `detail`).
    SegmentLost,
    /// 6: a file was skipped or removed (a checkpoint file the manifest never recorded;
    /// `lsn`: its LSN).
    FileSkipped,
}

impl RecoveryEventKind {
    /// Every kind, in id order.
    pub const ALL: [RecoveryEventKind; 6] = [
        RecoveryEventKind::CheckpointFallback,
        RecoveryEventKind::WalTornTail,
        RecoveryEventKind::ManifestTornTail,
        RecoveryEventKind::LenientRestart,
        RecoveryEventKind::SegmentLost,
        RecoveryEventKind::FileSkipped,
    ];

    /// The on-disk id.
    pub const fn id(self) -> u8 {
        match self {
            RecoveryEventKind::CheckpointFallback => 1,
            RecoveryEventKind::WalTornTail => 2,
            RecoveryEventKind::ManifestTornTail => 3,
            RecoveryEventKind::LenientRestart => 4,
            RecoveryEventKind::SegmentLost => 5,
            RecoveryEventKind::FileSkipped => 6,
        }
    }

    /// Parses an on-disk id.
    pub fn from_id(id: u8) -> Option<RecoveryEventKind> {
        RecoveryEventKind::ALL.into_iter().find(|k| k.id() == id)
    }

    /// A stable snake_case name (metrics labels, CLI output).
    pub const fn name(self) -> &'static str {
        match self {
            RecoveryEventKind::CheckpointFallback => "checkpoint_fallback",
            RecoveryEventKind::WalTornTail => "wal_torn_tail",
            RecoveryEventKind::ManifestTornTail => "manifest_torn_tail",
            RecoveryEventKind::LenientRestart => "lenient_restart",
            RecoveryEventKind::SegmentLost => "segment_lost",
            RecoveryEventKind::FileSkipped => "file_skipped",
        }
    }
}

impl fmt::Display for RecoveryEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl RecordKind {
    /// Every kind, in id order.
    pub const ALL: [RecordKind; 12] = [
        RecordKind::DatabaseCreated,
        RecordKind::CheckpointAdded,
        RecordKind::SegmentSealed,
        RecordKind::SegmentRetired,
        RecordKind::CheckpointRetired,
        RecordKind::KeyEpochChanged,
        RecordKind::BackupTaken,
        RecordKind::ServerEnvHash,
        RecordKind::Compacted,
        RecordKind::KeyEpochRetired,
        RecordKind::RecoveryEvent,
        RecordKind::VersionEdit,
    ];

    /// The on-disk id.
    pub const fn id(self) -> u8 {
        match self {
            RecordKind::DatabaseCreated => 1,
            RecordKind::CheckpointAdded => 2,
            RecordKind::SegmentSealed => 3,
            RecordKind::SegmentRetired => 4,
            RecordKind::CheckpointRetired => 5,
            RecordKind::KeyEpochChanged => 6,
            RecordKind::BackupTaken => 7,
            RecordKind::ServerEnvHash => 8,
            RecordKind::Compacted => 9,
            RecordKind::KeyEpochRetired => 10,
            RecordKind::RecoveryEvent => 11,
            RecordKind::VersionEdit => 12,
        }
    }

    /// Parses an on-disk id.
    pub fn from_id(id: u8) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.id() == id)
    }

    /// A snake_case name (used for golden fixture names).
    pub const fn name(self) -> &'static str {
        match self {
            RecordKind::DatabaseCreated => "database_created",
            RecordKind::CheckpointAdded => "checkpoint_added",
            RecordKind::SegmentSealed => "segment_sealed",
            RecordKind::SegmentRetired => "segment_retired",
            RecordKind::CheckpointRetired => "checkpoint_retired",
            RecordKind::KeyEpochChanged => "key_epoch_changed",
            RecordKind::BackupTaken => "backup_taken",
            RecordKind::ServerEnvHash => "server_env_hash",
            RecordKind::Compacted => "compacted",
            RecordKind::KeyEpochRetired => "key_epoch_retired",
            RecordKind::RecoveryEvent => "recovery_event",
            RecordKind::VersionEdit => "version_edit",
        }
    }
}

/// Why a record body cannot be encoded or decoded. Offsets are within the body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The body is not a well-formed record (truncated, unknown kind, over-long or
    /// non-UTF-8 text, trailing bytes).
    #[error(transparent)]
    Decode(Box<DecodeError>),
    /// A text field is longer than allowed.
    #[error("{field} is {len} bytes, longer than the {max}-byte limit")]
    TextTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A `VersionEdit` names more runs than [`MAX_EDIT_RUNS`], or a key prefix is
    /// longer than [`MAX_RUN_KEY_PREFIX`].
    #[error("version edit too large: {what}")]
    EditTooLarge {
        /// What was over its limit.
        what: &'static str,
    },
    /// A checkpoint file name is not a plain file name.
    #[error(
        "checkpoint file name {name:?} is not a plain file name (empty, `.`/`..`, or contains `/`, `\\` or NUL)"
    )]
    InvalidFileName {
        /// The rejected name.
        name: String,
    },
}

impl From<DecodeError> for RecordError {
    fn from(e: DecodeError) -> Self {
        // Boxed: manifest errors carry a record error, and stay small.
        RecordError::Decode(Box::new(e))
    }
}

fn encode_edit(out: &mut Vec<u8>, edit: &VersionEdit) -> Result<(), RecordError> {
    if edit.added.len() + edit.removed.len() > MAX_EDIT_RUNS {
        return Err(RecordError::EditTooLarge {
            what: "more runs than MAX_EDIT_RUNS",
        });
    }
    out.extend_from_slice(&edit.flushed_lsn.get().to_le_bytes());
    out.extend_from_slice(&edit.next_file_id.to_le_bytes());
    // Both counts are at most MAX_EDIT_RUNS, so they fit in u16.
    out.extend_from_slice(&(edit.added.len() as u16).to_le_bytes());
    for run in &edit.added {
        out.extend_from_slice(&run.file_id.to_le_bytes());
        out.push(run.level);
        out.extend_from_slice(&run.epoch.get().to_le_bytes());
        out.extend_from_slice(&run.min_lsn.get().to_le_bytes());
        out.extend_from_slice(&run.max_lsn.get().to_le_bytes());
        out.extend_from_slice(&run.entries.to_le_bytes());
        out.extend_from_slice(&run.len.to_le_bytes());
        out.extend_from_slice(&run.sha256);
        for key in [&run.first_key, &run.last_key] {
            if key.len() > MAX_RUN_KEY_PREFIX {
                return Err(RecordError::EditTooLarge {
                    what: "key prefix longer than MAX_RUN_KEY_PREFIX",
                });
            }
            out.extend_from_slice(&(key.len() as u16).to_le_bytes());
            out.extend_from_slice(key);
        }
    }
    out.extend_from_slice(&(edit.removed.len() as u16).to_le_bytes());
    for id in &edit.removed {
        out.extend_from_slice(&id.to_le_bytes());
    }
    if edit.floor > Lsn::ZERO {
        out.extend_from_slice(&edit.floor.get().to_le_bytes());
    }
    Ok(())
}

/// Smallest encoded run: fixed fields plus two empty key prefixes.
const MIN_RUN_LEN: usize = 8 + 1 + 4 + 8 + 8 + 8 + 8 + 32 + 2 + 2;

fn decode_edit(r: &mut ByteReader<'_>) -> Result<VersionEdit, DecodeError> {
    let flushed_lsn = Lsn::new(r.u64()?);
    let next_file_id = r.u64()?;
    let added_count = r.count(
        LenPrefix::U16,
        "added run",
        MIN_RUN_LEN,
        MAX_EDIT_RUNS as u64,
    )?;
    let mut added = Vec::with_capacity(added_count);
    for _ in 0..added_count {
        added.push(RunRecord {
            file_id: r.u64()?,
            level: r.u8()?,
            epoch: KeyEpoch::new(r.u32()?),
            min_lsn: Lsn::new(r.u64()?),
            max_lsn: Lsn::new(r.u64()?),
            entries: r.u64()?,
            len: r.u64()?,
            sha256: r.array()?,
            first_key: r
                .prefixed(LenPrefix::U16, "first key prefix", MAX_RUN_KEY_PREFIX)?
                .to_vec(),
            last_key: r
                .prefixed(LenPrefix::U16, "last key prefix", MAX_RUN_KEY_PREFIX)?
                .to_vec(),
        });
    }
    let removed_max = (MAX_EDIT_RUNS - added_count) as u64;
    let removed_count = r.count(LenPrefix::U16, "removed run", 8, removed_max)?;
    let mut removed = Vec::with_capacity(removed_count);
    for _ in 0..removed_count {
        removed.push(r.u64()?);
    }
    // The optional floor: present only when nonzero, so every edit has one encoding.
    let floor = if r.remaining() == 0 {
        Lsn::ZERO
    } else {
        match r.u64()? {
            0 => {
                return Err(r.err(DecodeErrorKind::Invalid {
                    what: "an encoded version-edit floor of zero",
                }));
            }
            floor => Lsn::new(floor),
        }
    };
    Ok(VersionEdit {
        flushed_lsn,
        next_file_id,
        added,
        removed,
        floor,
    })
}

fn check_file_name(name: &str) -> Result<(), RecordError> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > MAX_FILE_NAME_LEN
        || name.contains(['/', '\\', '\0']);
    if bad {
        Err(RecordError::InvalidFileName {
            name: name.chars().take(MAX_FILE_NAME_LEN).collect(),
        })
    } else {
        Ok(())
    }
}

fn put_text(
    out: &mut Vec<u8>,
    field: &'static str,
    text: &str,
    max: usize,
) -> Result<(), RecordError> {
    if text.len() > max {
        return Err(RecordError::TextTooLong {
            field,
            len: text.len(),
            max,
        });
    }
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn get_text(
    r: &mut ByteReader<'_>,
    field: &'static str,
    max: usize,
) -> Result<String, DecodeError> {
    Ok(r.str(LenPrefix::U16, field, max)?.to_owned())
}

/// Lowercase hex of a hash or MAC.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// The record for people and logs: the variant and its fields like `Debug`, but every
/// hash, MAC and id in lowercase hex and LSNs and epochs as plain numbers.
///
/// ```
/// use aedb_manifest::ManifestRecord;
/// use aedb_types::{Lsn, SegmentSeq};
///
/// let r = ManifestRecord::SegmentSealed {
///     seq: SegmentSeq::new(3),
///     first_lsn: Lsn::new(1),
///     last_lsn: Lsn::new(9),
///     sha256: [0xAB; 32],
/// };
/// assert_eq!(
///     r.to_string(),
///     format!("SegmentSealed {{ seq: 3, first_lsn: 1, last_lsn: 9, sha256: {} }}", "ab".repeat(32))
/// );
/// ```
impl fmt::Display for ManifestRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestRecord::DatabaseCreated {
                database_id,
                created_at_unix_ms,
            } => write!(
                f,
                "DatabaseCreated {{ database_id: {database_id}, created_at_unix_ms: {created_at_unix_ms} }}"
            ),
            ManifestRecord::CheckpointAdded {
                lsn,
                epoch,
                file_name,
                sha256,
                len,
            } => write!(
                f,
                "CheckpointAdded {{ lsn: {lsn}, epoch: {}, file_name: {file_name:?}, sha256: {}, len: {len} }}",
                epoch.get(),
                Hex(sha256)
            ),
            ManifestRecord::SegmentSealed {
                seq,
                first_lsn,
                last_lsn,
                sha256,
            } => write!(
                f,
                "SegmentSealed {{ seq: {seq}, first_lsn: {first_lsn}, last_lsn: {last_lsn}, sha256: {} }}",
                Hex(sha256)
            ),
            ManifestRecord::SegmentRetired { seq } => write!(f, "SegmentRetired {{ seq: {seq} }}"),
            ManifestRecord::CheckpointRetired { lsn } => {
                write!(f, "CheckpointRetired {{ lsn: {lsn} }}")
            }
            ManifestRecord::KeyEpochChanged {
                epoch,
                master_key_id,
                at_unix_ms,
            } => write!(
                f,
                "KeyEpochChanged {{ epoch: {}, master_key_id: {master_key_id:?}, at_unix_ms: {at_unix_ms} }}",
                epoch.get()
            ),
            ManifestRecord::KeyEpochRetired { epoch, at_unix_ms } => write!(
                f,
                "KeyEpochRetired {{ epoch: {}, at_unix_ms: {at_unix_ms} }}",
                epoch.get()
            ),
            ManifestRecord::BackupTaken {
                backup_id,
                first_lsn,
                last_lsn,
                manifest_sha256,
                at_unix_ms,
            } => write!(
                f,
                "BackupTaken {{ backup_id: {backup_id:?}, first_lsn: {first_lsn}, last_lsn: {last_lsn}, manifest_sha256: {}, at_unix_ms: {at_unix_ms} }}",
                Hex(manifest_sha256)
            ),
            ManifestRecord::ServerEnvHash { profile_id, hash } => write!(
                f,
                "ServerEnvHash {{ profile_id: {profile_id:?}, hash: {} }}",
                Hex(hash)
            ),
            ManifestRecord::RecoveryEvent {
                event,
                lsn,
                at_unix_ms,
                detail,
            } => write!(
                f,
                "RecoveryEvent {{ event: {event}, lsn: {lsn}, at_unix_ms: {at_unix_ms}, detail: {detail:?} }}"
            ),
            ManifestRecord::VersionEdit(edit) => {
                write!(
                    f,
                    "VersionEdit {{ flushed_lsn: {}, next_file_id: {}, added: (",
                    edit.flushed_lsn, edit.next_file_id
                )?;
                for (i, run) in edit.added.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(
                        f,
                        "{sep}{{ file_id: {}, level: {}, epoch: {}, lsn: {}..={}, entries: {}, len: {}, sha256: {}, keys: {}..{} }}",
                        run.file_id,
                        run.level,
                        run.epoch.get(),
                        run.min_lsn,
                        run.max_lsn,
                        run.entries,
                        run.len,
                        Hex(&run.sha256),
                        Hex(&run.first_key),
                        Hex(&run.last_key)
                    )?;
                }
                let removed: Vec<String> = edit.removed.iter().map(u64::to_string).collect();
                write!(f, "), removed: ({}) }}", removed.join(", "))
            }
            ManifestRecord::Compacted {
                replaces_head,
                records_replaced,
                at_unix_ms,
            } => write!(
                f,
                "Compacted {{ replaces_head: {}, records_replaced: {records_replaced}, at_unix_ms: {at_unix_ms} }}",
                Hex(replaces_head)
            ),
        }
    }
}

impl ManifestRecord {
    /// A `RecoveryEvent` record stamped now, its `detail` cut to [`MAX_DETAIL_LEN`] bytes
    /// (at a character boundary) so it always encodes.
    pub fn recovery_event(event: RecoveryEventKind, lsn: Lsn, detail: &str) -> ManifestRecord {
        let mut end = detail.len().min(MAX_DETAIL_LEN);
        while !detail.is_char_boundary(end) {
            end -= 1;
        }
        ManifestRecord::RecoveryEvent {
            event,
            lsn,
            at_unix_ms: aedb_types::clock::unix_millis(),
            detail: detail[..end].to_owned(),
        }
    }

    /// This record's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            ManifestRecord::DatabaseCreated { .. } => RecordKind::DatabaseCreated,
            ManifestRecord::CheckpointAdded { .. } => RecordKind::CheckpointAdded,
            ManifestRecord::SegmentSealed { .. } => RecordKind::SegmentSealed,
            ManifestRecord::SegmentRetired { .. } => RecordKind::SegmentRetired,
            ManifestRecord::CheckpointRetired { .. } => RecordKind::CheckpointRetired,
            ManifestRecord::KeyEpochChanged { .. } => RecordKind::KeyEpochChanged,
            ManifestRecord::BackupTaken { .. } => RecordKind::BackupTaken,
            ManifestRecord::ServerEnvHash { .. } => RecordKind::ServerEnvHash,
            ManifestRecord::Compacted { .. } => RecordKind::Compacted,
            ManifestRecord::KeyEpochRetired { .. } => RecordKind::KeyEpochRetired,
            ManifestRecord::RecoveryEvent { .. } => RecordKind::RecoveryEvent,
            ManifestRecord::VersionEdit(_) => RecordKind::VersionEdit,
        }
    }

    /// Encodes the record body (`kind || fields`).
    ///
    /// # Errors
    /// [`RecordError::TextTooLong`] or [`RecordError::InvalidFileName`].
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::with_capacity(64);
        out.push(self.kind().id());
        match self {
            ManifestRecord::DatabaseCreated {
                database_id,
                created_at_unix_ms,
            } => {
                out.extend_from_slice(database_id.as_bytes());
                out.extend_from_slice(&created_at_unix_ms.to_le_bytes());
            }
            ManifestRecord::CheckpointAdded {
                lsn,
                epoch,
                file_name,
                sha256,
                len,
            } => {
                check_file_name(file_name)?;
                out.extend_from_slice(&lsn.get().to_le_bytes());
                out.extend_from_slice(&epoch.get().to_le_bytes());
                put_text(&mut out, "file_name", file_name, MAX_FILE_NAME_LEN)?;
                out.extend_from_slice(sha256);
                out.extend_from_slice(&len.to_le_bytes());
            }
            ManifestRecord::SegmentSealed {
                seq,
                first_lsn,
                last_lsn,
                sha256,
            } => {
                out.extend_from_slice(&seq.get().to_le_bytes());
                out.extend_from_slice(&first_lsn.get().to_le_bytes());
                out.extend_from_slice(&last_lsn.get().to_le_bytes());
                out.extend_from_slice(sha256);
            }
            ManifestRecord::SegmentRetired { seq } => {
                out.extend_from_slice(&seq.get().to_le_bytes());
            }
            ManifestRecord::CheckpointRetired { lsn } => {
                out.extend_from_slice(&lsn.get().to_le_bytes());
            }
            ManifestRecord::KeyEpochChanged {
                epoch,
                master_key_id,
                at_unix_ms,
            } => {
                out.extend_from_slice(&epoch.get().to_le_bytes());
                put_text(&mut out, "master_key_id", master_key_id, MAX_TEXT_LEN)?;
                out.extend_from_slice(&at_unix_ms.to_le_bytes());
            }
            ManifestRecord::KeyEpochRetired { epoch, at_unix_ms } => {
                out.extend_from_slice(&epoch.get().to_le_bytes());
                out.extend_from_slice(&at_unix_ms.to_le_bytes());
            }
            ManifestRecord::BackupTaken {
                backup_id,
                first_lsn,
                last_lsn,
                manifest_sha256,
                at_unix_ms,
            } => {
                put_text(&mut out, "backup_id", backup_id, MAX_TEXT_LEN)?;
                out.extend_from_slice(&first_lsn.get().to_le_bytes());
                out.extend_from_slice(&last_lsn.get().to_le_bytes());
                out.extend_from_slice(manifest_sha256);
                out.extend_from_slice(&at_unix_ms.to_le_bytes());
            }
            ManifestRecord::ServerEnvHash { profile_id, hash } => {
                put_text(&mut out, "profile_id", profile_id, MAX_TEXT_LEN)?;
                out.extend_from_slice(hash);
            }
            ManifestRecord::RecoveryEvent {
                event,
                lsn,
                at_unix_ms,
                detail,
            } => {
                out.push(event.id());
                out.extend_from_slice(&lsn.get().to_le_bytes());
                out.extend_from_slice(&at_unix_ms.to_le_bytes());
                put_text(&mut out, "detail", detail, MAX_DETAIL_LEN)?;
            }
            ManifestRecord::VersionEdit(edit) => encode_edit(&mut out, edit)?,
            ManifestRecord::Compacted {
                replaces_head,
                records_replaced,
                at_unix_ms,
            } => {
                out.extend_from_slice(replaces_head);
                out.extend_from_slice(&records_replaced.to_le_bytes());
                out.extend_from_slice(&at_unix_ms.to_le_bytes());
            }
        }
        Ok(out)
    }

    /// Decodes a record body. Never panics; allocates at most the text field lengths,
    /// which are bounded by the body length.
    ///
    /// # Errors
    /// Any [`RecordError`] decode variant.
    pub fn decode(body: &[u8]) -> Result<ManifestRecord, RecordError> {
        let mut r = ByteReader::new("manifest record", body);
        let kind_id = r.u8()?;
        let kind = RecordKind::from_id(kind_id).ok_or_else(|| {
            r.err_at(
                0,
                DecodeErrorKind::UnknownTag {
                    what: "record kind",
                    tag: kind_id,
                },
            )
        })?;
        let lsn = |r: &mut ByteReader<'_>| r.u64().map(Lsn::new);
        let record = match kind {
            RecordKind::DatabaseCreated => ManifestRecord::DatabaseCreated {
                database_id: DatabaseId::from_bytes(r.array()?),
                created_at_unix_ms: r.u64()?,
            },
            RecordKind::CheckpointAdded => {
                let lsn = lsn(&mut r)?;
                let epoch = KeyEpoch::new(r.u32()?);
                let file_name = get_text(&mut r, "file_name", MAX_FILE_NAME_LEN)?;
                check_file_name(&file_name)?;
                ManifestRecord::CheckpointAdded {
                    lsn,
                    epoch,
                    file_name,
                    sha256: r.array()?,
                    len: r.u64()?,
                }
            }
            RecordKind::SegmentSealed => ManifestRecord::SegmentSealed {
                seq: SegmentSeq::new(r.u64()?),
                first_lsn: lsn(&mut r)?,
                last_lsn: lsn(&mut r)?,
                sha256: r.array()?,
            },
            RecordKind::SegmentRetired => ManifestRecord::SegmentRetired {
                seq: SegmentSeq::new(r.u64()?),
            },
            RecordKind::CheckpointRetired => {
                ManifestRecord::CheckpointRetired { lsn: lsn(&mut r)? }
            }
            RecordKind::KeyEpochChanged => ManifestRecord::KeyEpochChanged {
                epoch: KeyEpoch::new(r.u32()?),
                master_key_id: get_text(&mut r, "master_key_id", MAX_TEXT_LEN)?,
                at_unix_ms: r.u64()?,
            },
            RecordKind::KeyEpochRetired => ManifestRecord::KeyEpochRetired {
                epoch: KeyEpoch::new(r.u32()?),
                at_unix_ms: r.u64()?,
            },
            RecordKind::BackupTaken => ManifestRecord::BackupTaken {
                backup_id: get_text(&mut r, "backup_id", MAX_TEXT_LEN)?,
                first_lsn: lsn(&mut r)?,
                last_lsn: lsn(&mut r)?,
                manifest_sha256: r.array()?,
                at_unix_ms: r.u64()?,
            },
            RecordKind::ServerEnvHash => ManifestRecord::ServerEnvHash {
                profile_id: get_text(&mut r, "profile_id", MAX_TEXT_LEN)?,
                hash: r.array()?,
            },
            RecordKind::RecoveryEvent => {
                let at = r.pos();
                let id = r.u8()?;
                let event = RecoveryEventKind::from_id(id).ok_or_else(|| {
                    r.err_at(
                        at,
                        DecodeErrorKind::UnknownTag {
                            what: "recovery event kind",
                            tag: id,
                        },
                    )
                })?;
                ManifestRecord::RecoveryEvent {
                    event,
                    lsn: lsn(&mut r)?,
                    at_unix_ms: r.u64()?,
                    detail: get_text(&mut r, "detail", MAX_DETAIL_LEN)?,
                }
            }
            RecordKind::VersionEdit => ManifestRecord::VersionEdit(decode_edit(&mut r)?),
            RecordKind::Compacted => ManifestRecord::Compacted {
                replaces_head: r.array()?,
                records_replaced: r.u64()?,
                at_unix_ms: r.u64()?,
            },
        };
        r.finish()?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::from_id(k.id()), Some(k));
        }
        assert_eq!(RecordKind::from_id(0), None);
        assert_eq!(RecordKind::from_id(13), None);
        for k in RecoveryEventKind::ALL {
            assert_eq!(RecoveryEventKind::from_id(k.id()), Some(k));
        }
        assert_eq!(RecoveryEventKind::from_id(0), None);
        assert_eq!(RecoveryEventKind::from_id(7), None);
    }

    #[test]
    fn recovery_event_has_the_documented_layout() {
        let r = ManifestRecord::RecoveryEvent {
            event: RecoveryEventKind::CheckpointFallback,
            lsn: Lsn::new(40),
            at_unix_ms: 1_700_000_500_000,
            detail: "checkpoint at lsn 90: authentication failed".into(),
        };
        let body = r.encode().unwrap();
        let mut expected = vec![11u8, 1];
        expected.extend_from_slice(&40u64.to_le_bytes());
        expected.extend_from_slice(&1_700_000_500_000u64.to_le_bytes());
        expected.extend_from_slice(&43u16.to_le_bytes());
        expected.extend_from_slice(b"checkpoint at lsn 90: authentication failed");
        assert_eq!(body, expected);
        assert_eq!(ManifestRecord::decode(&body), Ok(r));
        // An unknown event byte is refused at its offset.
        let mut bad = body.clone();
        bad[1] = 0;
        let Err(RecordError::Decode(e)) = ManifestRecord::decode(&bad) else {
            panic!("event 0 decoded");
        };
        assert_eq!(e.offset, 1);
        // A long detail is cut at a character boundary by the constructor.
        let long = ManifestRecord::recovery_event(
            RecoveryEventKind::FileSkipped,
            Lsn::ZERO,
            &"é".repeat(MAX_DETAIL_LEN),
        );
        let ManifestRecord::RecoveryEvent { detail, .. } = &long else {
            unreachable!()
        };
        assert_eq!(detail.len(), MAX_DETAIL_LEN);
        assert!(long.encode().is_ok());
    }

    fn edit_with(added: usize, removed: usize, prefix: usize) -> ManifestRecord {
        let run = |i: usize| RunRecord {
            file_id: i as u64,
            level: (i % 7) as u8,
            epoch: KeyEpoch::new(3),
            min_lsn: Lsn::new(1),
            max_lsn: Lsn::new(9),
            entries: 5,
            len: 1 << 20,
            sha256: [i as u8; 32],
            first_key: vec![0xAA; prefix],
            last_key: vec![0xFF; prefix],
        };
        ManifestRecord::VersionEdit(VersionEdit {
            flushed_lsn: Lsn::new(9),
            next_file_id: 1 << 40,
            added: (0..added).map(run).collect(),
            removed: (0..removed as u64).map(|i| 1_000 + i).collect(),
            floor: Lsn::ZERO,
        })
    }

    #[test]
    fn version_edits_round_trip_up_to_their_limits() {
        for (a, r) in [
            (0, 0),
            (1, 0),
            (0, 1),
            (3, 5),
            (MAX_EDIT_RUNS, 0),
            (100, 156),
        ] {
            let edit = edit_with(a, r, MAX_RUN_KEY_PREFIX);
            let body = edit.encode().unwrap();
            assert!(body.len() <= crate::file::MAX_RECORD_BODY_LEN as usize);
            assert_eq!(ManifestRecord::decode(&body), Ok(edit.clone()));
            // Every truncation is a typed error, never a panic or a shorter edit.
            for cut in 0..body.len().min(400) {
                assert!(ManifestRecord::decode(&body[..cut]).is_err(), "cut {cut}");
            }
        }
        assert!(matches!(
            edit_with(MAX_EDIT_RUNS, 1, 0).encode(),
            Err(RecordError::EditTooLarge { .. })
        ));
        assert!(matches!(
            edit_with(1, 0, MAX_RUN_KEY_PREFIX + 1).encode(),
            Err(RecordError::EditTooLarge { .. })
        ));
        // A count over the limit is refused before anything is allocated.
        let mut body = vec![12u8];
        body.extend_from_slice(&[0; 16]);
        body.extend_from_slice(&((MAX_EDIT_RUNS + 1) as u16).to_le_bytes());
        assert!(ManifestRecord::decode(&body).is_err());
        assert_eq!(
            RunRecord::key_prefix(&[7; 100]),
            vec![7; MAX_RUN_KEY_PREFIX]
        );
        assert_eq!(RunRecord::key_prefix(b"ab"), b"ab".to_vec());
    }

    #[test]
    fn a_version_edit_floor_is_an_optional_trailing_field() {
        let ManifestRecord::VersionEdit(without) = edit_with(2, 1, 4) else {
            unreachable!()
        };
        let with = VersionEdit {
            floor: Lsn::new(77),
            ..without.clone()
        };
        let short = ManifestRecord::VersionEdit(without).encode().unwrap();
        let long = ManifestRecord::VersionEdit(with.clone()).encode().unwrap();
        // Without a floor the bytes are what they always were; with one, 8 more.
        assert_eq!(long.len(), short.len() + 8);
        assert_eq!(&long[..short.len()], &short[..]);
        assert_eq!(
            ManifestRecord::decode(&long),
            Ok(ManifestRecord::VersionEdit(with))
        );
        // An encoded zero floor has another encoding (none): refused.
        let mut zero = short.clone();
        zero.extend_from_slice(&0u64.to_le_bytes());
        assert!(ManifestRecord::decode(&zero).is_err());
        // A partial floor is refused. (Cut exactly before it, the body is the edit
        // without one: the manifest frame's length and MAC rule that cut out.)
        for cut in short.len() + 1..long.len() {
            assert!(ManifestRecord::decode(&long[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn file_names_must_be_plain() {
        for bad in ["", ".", "..", "a/b", "..\\x", "a\0b"] {
            let r = ManifestRecord::CheckpointAdded {
                lsn: Lsn::new(1),
                epoch: KeyEpoch::FIRST,
                file_name: bad.to_string(),
                sha256: [0; 32],
                len: 0,
            };
            assert!(
                matches!(r.encode(), Err(RecordError::InvalidFileName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn decode_rejects_trailing_bytes_and_long_text() {
        let r = ManifestRecord::SegmentRetired {
            seq: SegmentSeq::new(5),
        };
        let mut body = r.encode().unwrap();
        assert_eq!(ManifestRecord::decode(&body), Ok(r));
        body.push(0);
        assert_eq!(
            ManifestRecord::decode(&body),
            Err(RecordError::Decode(Box::new(DecodeError::new(
                "manifest record",
                9,
                DecodeErrorKind::TrailingBytes { count: 1 }
            ))))
        );
        let long = ManifestRecord::ServerEnvHash {
            profile_id: "x".repeat(MAX_TEXT_LEN + 1),
            hash: [0; 32],
        };
        assert!(matches!(
            long.encode(),
            Err(RecordError::TextTooLong { .. })
        ));
        let mut body = vec![8u8];
        body.extend_from_slice(&((MAX_TEXT_LEN + 1) as u16).to_le_bytes());
        let Err(RecordError::Decode(e)) = ManifestRecord::decode(&body) else {
            panic!("an over-long profile id decoded");
        };
        assert!(matches!(
            *e,
            DecodeError {
                offset: 1,
                kind: DecodeErrorKind::LengthTooLarge {
                    what: "profile_id",
                    ..
                },
                ..
            }
        ));
        assert_eq!(
            ManifestRecord::decode(&[]),
            Err(RecordError::Decode(Box::new(DecodeError::new(
                "manifest record",
                0,
                DecodeErrorKind::UnexpectedEnd {
                    needed: 1,
                    remaining: 0
                }
            ))))
        );
        assert_eq!(
            ManifestRecord::decode(&[42]),
            Err(RecordError::Decode(Box::new(DecodeError::new(
                "manifest record",
                0,
                DecodeErrorKind::UnknownTag {
                    what: "record kind",
                    tag: 42
                }
            ))))
        );
    }
}
