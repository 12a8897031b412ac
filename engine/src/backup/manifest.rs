//! The backup manifest: a hand-written, versioned, little-endian binary file
//! (`<backup_dir>/BACKUP`) listing what one backup holds, authenticated with
//! HMAC-SHA256 under the backup subkey (computed and checked with the chain helper's
//! [`hmac_sha256`] / [`hmac_sha256_verify`] from `aedb-manifest`). Layout in `docs/FORMAT.md`, section "Backups".
//!
//! The decoder checks every length before allocating and never panics on any input
//! (`fuzz/fuzz_targets/backup_manifest.rs`).

use aedb_keys::SecretKey;
use aedb_manifest::chain::{hmac_sha256, hmac_sha256_verify};
use aedb_types::reader::{ByteReader, LenPrefix};
use aedb_types::{DatabaseId, DecodeError, DecodeErrorKind, KeyEpoch, Lsn};

/// The file name of a backup manifest inside a backup directory.
pub const BACKUP_MANIFEST_FILE: &str = "BACKUP";
/// Magic bytes opening every backup manifest.
pub const BACKUP_MAGIC: [u8; 8] = *b"AEDBBKUP";
/// The format version this build writes: 2 (WAL tails, the run set an incremental
/// restores from). Version 1 stays readable.
pub const BACKUP_FORMAT_VERSION: u16 = 2;
/// The oldest format version this build reads.
pub const BACKUP_FORMAT_MIN_VERSION: u16 = 1;
/// Length of the MAC that closes the file.
pub const BACKUP_MAC_LEN: usize = 32;
/// Most files one backup may list (and most runs it may inherit).
pub const MAX_BACKUP_FILES: u32 = 1 << 20;
/// The deepest LSM level a run file may be listed at.
pub const MAX_RUN_LEVEL: u8 = 6;
/// Longest text field (file names, master key ids).
pub const MAX_BACKUP_TEXT: usize = 255;
/// The message the key-check value is the MAC of: it tells "wrong key" from "tampered".
const KEY_CHECK_MESSAGE: &[u8] = b"aedb backup key check v1";

/// Whether a backup is self-contained or continues a parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackupKind {
    /// The run files (or a version-1 checkpoint) plus the WAL after them.
    Full,
    /// What changed since the parent backup: the run files the database wrote since
    /// (format 2), and the WAL since the parent's end (or, where flushes retired it, since
    /// the run set's LSN).
    Incremental,
    /// A forensic capture (`CAPTURE`, not `BACKUP`): the manifest, every live
    /// checkpoint and every WAL segment of a data directory, as found. Never part of a
    /// restore chain.
    Capture,
}

impl BackupKind {
    fn id(self) -> u8 {
        match self {
            BackupKind::Full => 1,
            BackupKind::Incremental => 2,
            BackupKind::Capture => 3,
        }
    }

    /// `"full"`, `"incremental"` or `"capture"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incremental",
            BackupKind::Capture => "capture",
        }
    }
}

/// What kind of file a backup lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackupFileKind {
    /// A sealed checkpoint, stored under `checkpoints/`.
    Checkpoint,
    /// A WAL segment (or the synced prefix of the active one), stored under `wal/`.
    WalSegment,
    /// The database's `MANIFEST` (forensic captures only), stored at the top level.
    Manifest,
    /// A run file of the LSM (an incremental checkpoint file) and the level it is live
    /// at, stored under `checkpoints/`. Id `10 + level`.
    Run {
        /// Its level (0 ..= 6).
        level: u8,
    },
    /// The bytes of a WAL segment from `offset` on (format 2, incrementals only): what
    /// an incremental adds to a segment whose first `offset` bytes an earlier backup of
    /// the chain holds, stored under `wal/` with the segment's name. Id 4.
    WalTail {
        /// Where in the segment the stored bytes start.
        offset: u64,
    },
}

impl BackupFileKind {
    fn id(self) -> u8 {
        match self {
            BackupFileKind::Checkpoint => 1,
            BackupFileKind::WalSegment => 2,
            BackupFileKind::Manifest => 3,
            BackupFileKind::Run { level } => 10 + level,
            BackupFileKind::WalTail { .. } => 4,
        }
    }

    /// Whether this is a piece of a WAL segment (whole from its start, or a tail).
    pub fn is_wal(self) -> bool {
        matches!(
            self,
            BackupFileKind::WalSegment | BackupFileKind::WalTail { .. }
        )
    }

    /// The sub-directory of the backup directory holding files of this kind (`""`: the
    /// directory itself).
    pub fn dir(self) -> &'static str {
        match self {
            BackupFileKind::Checkpoint | BackupFileKind::Run { .. } => "checkpoints",
            BackupFileKind::WalSegment | BackupFileKind::WalTail { .. } => "wal",
            BackupFileKind::Manifest => "",
        }
    }
}

/// One file a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackupFile {
    /// Checkpoint or WAL segment.
    pub kind: BackupFileKind,
    /// File name (no directory part; validated against the kind's naming rule).
    pub name: String,
    /// Length in bytes.
    pub len: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
}

/// A backup manifest's content.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackupManifest {
    /// Full or incremental.
    pub kind: BackupKind,
    /// The database the backup belongs to.
    pub database_id: DatabaseId,
    /// Random identity of this backup.
    pub backup_id: [u8; 16],
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_unix_ms: u64,
    /// The state the backup starts from: the checkpoint's LSN (full) or the parent's
    /// `last_lsn` (incremental).
    pub first_lsn: Lsn,
    /// Every commit up to this LSN is restorable from the chain ending here.
    pub last_lsn: Lsn,
    /// SHA-256 of the parent's whole backup manifest file (incremental only).
    pub parent_sha256: Option<[u8; 32]>,
    /// The master the MAC key was derived under (alias and version; not secret).
    pub master_key_id: String,
    /// Every key epoch the database records, with its master (the files may need any).
    pub key_epochs: Vec<(KeyEpoch, String)>,
    /// The files, checkpoint or run files first, then WAL segments (and tails) in
    /// sequence order.
    pub files: Vec<BackupFile>,
    /// The run set an incremental restores from (format 2; `None` for full backups,
    /// captures, and format-1 incrementals, which hold only WAL and restore on top of
    /// their parent).
    pub runs: Option<BackupRunSet>,
}

/// The LSM version an incremental backup restores from: its own run files plus the runs
/// it inherits from its ancestors, which together were the database's live runs, holding
/// every commit up to `base_lsn`; the chain's WAL after `base_lsn` brings it to the
/// backup's `last_lsn`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BackupRunSet {
    /// Every commit up to this LSN (and none after it) is in the runs: the database's
    /// flushed LSN when the backup was taken. At most the backup's `last_lsn`.
    pub base_lsn: Lsn,
    /// Whether the backup's WAL continues from its `first_lsn` (the parent's end), so
    /// that every LSN of the chain up to `last_lsn` is restorable. When `false`, flushes
    /// had retired that WAL before the backup was taken: its WAL starts at the segment
    /// holding `base_lsn + 1`, `base_lsn >= first_lsn`, and the LSNs strictly between
    /// `first_lsn` and `base_lsn` cannot be restored exactly.
    pub wal_from_parent: bool,
    /// The live runs an ancestor backup of the chain holds (by file id, strictly
    /// increasing), each with the level it was live at, its length and its SHA-256.
    pub inherited: Vec<InheritedRun>,
}

/// A live run an incremental backup does not hold itself: an ancestor in its chain
/// holds the file (`run-<file_id:020>.ckpt` with this length and SHA-256).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InheritedRun {
    /// The run's file id.
    pub file_id: u64,
    /// The level it was live at (0 ..= 6).
    pub level: u8,
    /// Its length in bytes.
    pub len: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
}

/// A decoded but not yet authenticated manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnverifiedBackupManifest {
    /// The content.
    pub manifest: BackupManifest,
    /// HMAC of a fixed message under the key the file was written with.
    pub key_check: [u8; 32],
    /// The MAC closing the file.
    pub mac: [u8; BACKUP_MAC_LEN],
    /// Length of the authenticated prefix (everything before `mac`).
    pub signed_len: usize,
}

/// Why bytes are not a well-formed backup manifest: the shared decode error, naming
/// the failing field and its byte offset.
pub type BackupManifestError = DecodeError;

/// What decode errors name as the thing being decoded.
const CONTEXT: &str = "backup manifest";

fn text(r: &mut ByteReader<'_>, what: &'static str) -> Result<String, BackupManifestError> {
    Ok(r.str(LenPrefix::U16, what, MAX_BACKUP_TEXT)?.to_owned())
}

fn invalid(r: &ByteReader<'_>, what: &'static str) -> BackupManifestError {
    r.err(DecodeErrorKind::Invalid { what })
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    // Callers validate lengths; clamp defensively so the encoding stays decodable.
    let bytes = &text.as_bytes()[..text.len().min(MAX_BACKUP_TEXT)];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Whether `name` is a valid file name for `kind` (no directory part, the kind's
/// naming rule), so a manifest can never point outside the backup directory.
pub fn valid_file_name(kind: BackupFileKind, name: &str) -> bool {
    match kind {
        BackupFileKind::Checkpoint => aedb_checkpoint::parse_checkpoint_file_name(name).is_some(),
        BackupFileKind::WalSegment | BackupFileKind::WalTail { .. } => {
            aedb_wal::dir::parse_segment_file_name(name).is_some()
        }
        BackupFileKind::Manifest => name == aedb_manifest::MANIFEST_FILE_NAME,
        BackupFileKind::Run { .. } => aedb_checkpoint::parse_run_file_name(name).is_some(),
    }
}

/// `HMAC-SHA256(key, KEY_CHECK_MESSAGE)`.
pub fn key_check(key: &SecretKey) -> [u8; 32] {
    hmac_sha256(key, &[KEY_CHECK_MESSAGE])
}

impl BackupManifest {
    /// Encodes and authenticates the manifest under `key` (the backup subkey).
    pub fn encode(&self, key: &SecretKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.files.len() * 64);
        out.extend_from_slice(&BACKUP_MAGIC);
        out.extend_from_slice(&BACKUP_FORMAT_VERSION.to_le_bytes());
        out.push(self.kind.id());
        out.push(u8::from(self.parent_sha256.is_some()));
        out.extend_from_slice(self.database_id.as_bytes());
        out.extend_from_slice(&self.backup_id);
        out.extend_from_slice(&self.created_at_unix_ms.to_le_bytes());
        out.extend_from_slice(&self.first_lsn.get().to_le_bytes());
        out.extend_from_slice(&self.last_lsn.get().to_le_bytes());
        out.extend_from_slice(&self.parent_sha256.unwrap_or([0; 32]));
        put_text(&mut out, &self.master_key_id);
        out.extend_from_slice(&key_check(key));
        let epochs = self.key_epochs.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&(epochs as u16).to_le_bytes());
        for (epoch, master) in &self.key_epochs[..epochs] {
            out.extend_from_slice(&epoch.get().to_le_bytes());
            put_text(&mut out, master);
        }
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for f in &self.files {
            out.push(f.kind.id());
            put_text(&mut out, &f.name);
            if let BackupFileKind::WalTail { offset } = f.kind {
                out.extend_from_slice(&offset.to_le_bytes());
            }
            out.extend_from_slice(&f.len.to_le_bytes());
            out.extend_from_slice(&f.sha256);
        }
        match &self.runs {
            None => out.push(0),
            Some(set) => {
                out.push(1);
                out.extend_from_slice(&set.base_lsn.get().to_le_bytes());
                out.push(u8::from(set.wal_from_parent));
                out.extend_from_slice(&(set.inherited.len() as u32).to_le_bytes());
                for run in &set.inherited {
                    out.push(run.level);
                    out.extend_from_slice(&run.file_id.to_le_bytes());
                    out.extend_from_slice(&run.len.to_le_bytes());
                    out.extend_from_slice(&run.sha256);
                }
            }
        }
        let mac = hmac_sha256(key, &[&out]);
        out.extend_from_slice(&mac);
        out
    }

    /// Decodes without authenticating. Never panics; checks every length first.
    pub fn decode_unverified(
        bytes: &[u8],
    ) -> Result<UnverifiedBackupManifest, BackupManifestError> {
        let mut r: ByteReader<'_> = ByteReader::new(CONTEXT, bytes);
        r.magic(&BACKUP_MAGIC)?;
        let version = r.u16()?;
        if !(BACKUP_FORMAT_MIN_VERSION..=BACKUP_FORMAT_VERSION).contains(&version) {
            return Err(r.back(2).err(DecodeErrorKind::UnsupportedVersion {
                found: version.into(),
                supported: BACKUP_FORMAT_VERSION.into(),
            }));
        }
        let v2 = version >= 2;
        let kind = match r.u8()? {
            1 => BackupKind::Full,
            2 => BackupKind::Incremental,
            3 => BackupKind::Capture,
            tag => {
                return Err(r.back(1).err(DecodeErrorKind::UnknownTag {
                    what: "backup kind",
                    tag,
                }));
            }
        };
        let has_parent = r.bool("backup flags")?;
        if has_parent != (kind == BackupKind::Incremental) {
            return Err(invalid(
                &r,
                "parent flag (only incremental backups have a parent)",
            ));
        }
        let database_id = DatabaseId::from_bytes(r.array()?);
        let backup_id = r.array()?;
        let created_at_unix_ms = r.u64()?;
        let first_lsn = Lsn::new(r.u64()?);
        let last_lsn = Lsn::new(r.u64()?);
        if last_lsn < first_lsn {
            return Err(invalid(&r, "lsn range (last lsn below first lsn)"));
        }
        let parent: [u8; 32] = r.array()?;
        if !has_parent && parent != [0; 32] {
            return Err(invalid(&r, "parent hash (a full backup's must be zero)"));
        }
        let master_key_id = text(&mut r, "master key id")?;
        let key_check = r.array()?;
        // Each epoch takes at least 6 bytes: refuse counts the input cannot hold.
        let epoch_count = r.count(LenPrefix::U16, "key epoch", 6, u64::MAX)?;
        let mut key_epochs = Vec::with_capacity(epoch_count);
        for _ in 0..epoch_count {
            let epoch = KeyEpoch::new(r.u32()?);
            let master = text(&mut r, "epoch master")?;
            if key_epochs.last().is_some_and(|(last, _)| *last >= epoch) {
                return Err(invalid(&r, "key epoch order (not strictly increasing)"));
            }
            key_epochs.push((epoch, master));
        }
        // Each file entry takes at least 43 bytes.
        let file_count = r.count(LenPrefix::U32, "file", 43, MAX_BACKUP_FILES.into())?;
        let mut files = Vec::with_capacity(file_count);
        let mut paths = std::collections::BTreeSet::new();
        for _ in 0..file_count {
            let tag = r.u8()?;
            let mut file_kind = match tag {
                1 => BackupFileKind::Checkpoint,
                2 => BackupFileKind::WalSegment,
                3 => BackupFileKind::Manifest,
                4 if v2 && kind == BackupKind::Incremental => BackupFileKind::WalTail { offset: 0 },
                id @ 10..=16 => BackupFileKind::Run { level: id - 10 },
                tag => {
                    return Err(r.back(1).err(DecodeErrorKind::UnknownTag {
                        what: "file kind",
                        tag,
                    }));
                }
            };
            let name = text(&mut r, "file name")?;
            if !valid_file_name(file_kind, &name) {
                return Err(invalid(&r, "file name (breaks its kind's naming rule)"));
            }
            if !paths.insert((file_kind.dir(), name.clone())) {
                return Err(invalid(&r, "file name (listed twice)"));
            }
            if let BackupFileKind::WalTail { offset } = &mut file_kind {
                *offset = r.u64()?;
            }
            let len = r.u64()?;
            let sha256 = r.array()?;
            files.push(BackupFile {
                kind: file_kind,
                name,
                len,
                sha256,
            });
        }
        let runs = if v2 {
            decode_run_set(&mut r, kind, first_lsn, last_lsn, &files)?
        } else {
            None
        };
        let signed_len = r.pos();
        let mac = r.array()?;
        r.finish()?;
        Ok(UnverifiedBackupManifest {
            manifest: BackupManifest {
                kind,
                database_id,
                backup_id,
                created_at_unix_ms,
                first_lsn,
                last_lsn,
                parent_sha256: has_parent.then_some(parent),
                master_key_id,
                key_epochs,
                files,
                runs,
            },
            key_check,
            mac,
            signed_len,
        })
    }

    /// The backup id as 32 hex digits.
    pub fn backup_id_hex(&self) -> String {
        hex::encode(self.backup_id)
    }

    /// The WAL segments (and segment tails) listed, in order.
    pub fn wal_files(&self) -> impl Iterator<Item = &BackupFile> {
        self.files.iter().filter(|f| f.kind.is_wal())
    }

    /// The LSN the backup's own runs (or checkpoint) hold every commit up to, if it can
    /// be restored without replaying its parent's WAL: a full backup's first LSN, a
    /// format-2 incremental's run-set LSN. `None` for captures and WAL-only incrementals.
    pub fn base_lsn(&self) -> Option<Lsn> {
        match (self.kind, &self.runs) {
            (BackupKind::Full, _) => Some(self.first_lsn),
            (BackupKind::Incremental, Some(set)) => Some(set.base_lsn),
            _ => None,
        }
    }

    /// The run files listed (full backups), with their levels.
    pub fn run_files(&self) -> impl Iterator<Item = (&BackupFile, u8)> {
        self.files.iter().filter_map(|f| match f.kind {
            BackupFileKind::Run { level } => Some((f, level)),
            _ => None,
        })
    }

    /// The checkpoint listed (full backups).
    pub fn checkpoint_file(&self) -> Option<&BackupFile> {
        self.files
            .iter()
            .find(|f| f.kind == BackupFileKind::Checkpoint)
    }
}

/// Decodes the format-2 run-set section (after the file list) and checks it against the
/// rest of the manifest.
fn decode_run_set(
    r: &mut ByteReader<'_>,
    kind: BackupKind,
    first_lsn: Lsn,
    last_lsn: Lsn,
    files: &[BackupFile],
) -> Result<Option<BackupRunSet>, BackupManifestError> {
    if !r.bool("run set flag")? {
        return Ok(None);
    }
    if kind != BackupKind::Incremental {
        return Err(invalid(r, "run set (only incrementals list one)"));
    }
    let base_lsn = Lsn::new(r.u64()?);
    if base_lsn > last_lsn {
        return Err(invalid(r, "run set lsn (above the last lsn)"));
    }
    let wal_from_parent = r.bool("run set WAL flag")?;
    if !wal_from_parent && base_lsn < first_lsn {
        return Err(invalid(
            r,
            "run set lsn (below the first lsn, yet the WAL does not continue the parent's)",
        ));
    }
    // Each inherited run takes 49 bytes.
    let count = r.count(LenPrefix::U32, "inherited run", 49, MAX_BACKUP_FILES.into())?;
    let own: std::collections::BTreeSet<u64> = files
        .iter()
        .filter(|f| matches!(f.kind, BackupFileKind::Run { .. }))
        .filter_map(|f| aedb_checkpoint::parse_run_file_name(&f.name))
        .collect();
    let mut inherited: Vec<InheritedRun> = Vec::with_capacity(count);
    for _ in 0..count {
        let level = r.u8()?;
        if level > MAX_RUN_LEVEL {
            return Err(r.back(1).err(DecodeErrorKind::UnknownTag {
                what: "inherited run level",
                tag: level,
            }));
        }
        let file_id = r.u64()?;
        if inherited.last().is_some_and(|last| last.file_id >= file_id) {
            return Err(invalid(r, "inherited run ids (not strictly increasing)"));
        }
        if own.contains(&file_id) {
            return Err(invalid(
                r,
                "inherited run id (the backup also holds the file)",
            ));
        }
        let len = r.u64()?;
        let sha256 = r.array()?;
        inherited.push(InheritedRun {
            file_id,
            level,
            len,
            sha256,
        });
    }
    Ok(Some(BackupRunSet {
        base_lsn,
        wal_from_parent,
        inherited,
    }))
}

impl UnverifiedBackupManifest {
    /// Whether `key` is the key the manifest was written with.
    pub fn key_matches(&self, key: &SecretKey) -> bool {
        hmac_sha256_verify(key, &[KEY_CHECK_MESSAGE], &self.key_check)
    }

    /// Whether the MAC over `bytes` (the file this was decoded from) verifies under `key`.
    pub fn mac_verifies(&self, bytes: &[u8], key: &SecretKey) -> bool {
        let Some(signed) = bytes.get(..self.signed_len) else {
            return false;
        };
        hmac_sha256_verify(key, &[signed], &self.mac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BackupManifest {
        BackupManifest {
            kind: BackupKind::Incremental,
            database_id: DatabaseId::from_bytes([3; 16]),
            backup_id: [9; 16],
            created_at_unix_ms: 1_700_000_000_000,
            first_lsn: Lsn::new(10),
            last_lsn: Lsn::new(20),
            parent_sha256: Some([5; 32]),
            master_key_id: "aedb-manifest@v1".into(),
            key_epochs: vec![(KeyEpoch::new(1), "aedb-data@v1".into())],
            files: vec![BackupFile {
                kind: BackupFileKind::WalSegment,
                name: aedb_wal::segment_file_name(aedb_wal::SegmentSeq::FIRST),
                len: 4096,
                sha256: [7; 32],
            }],
            runs: None,
        }
    }

    /// A format-2 incremental: a new run, a WAL tail, a whole segment, inherited runs.
    fn sample_v2() -> BackupManifest {
        let mut m = sample();
        m.files = vec![
            BackupFile {
                kind: BackupFileKind::Run { level: 0 },
                name: aedb_checkpoint::run_file_name(9),
                len: 700,
                sha256: [8; 32],
            },
            BackupFile {
                kind: BackupFileKind::WalTail { offset: 4096 },
                name: aedb_wal::segment_file_name(aedb_wal::SegmentSeq::new(2)),
                len: 300,
                sha256: [6; 32],
            },
            BackupFile {
                kind: BackupFileKind::WalSegment,
                name: aedb_wal::segment_file_name(aedb_wal::SegmentSeq::new(3)),
                len: 900,
                sha256: [5; 32],
            },
        ];
        m.runs = Some(BackupRunSet {
            base_lsn: Lsn::new(15),
            wal_from_parent: true,
            inherited: vec![
                InheritedRun {
                    file_id: 3,
                    level: 2,
                    len: 5000,
                    sha256: [4; 32],
                },
                InheritedRun {
                    file_id: 7,
                    level: 0,
                    len: 600,
                    sha256: [3; 32],
                },
            ],
        });
        m
    }

    #[test]
    fn version_2_round_trips_tails_and_run_sets_and_checks_them() {
        let key = SecretKey::new([1; 32]);
        let m = sample_v2();
        let bytes = m.encode(&key);
        assert_eq!(&bytes[8..10], &2u16.to_le_bytes());
        let decoded = BackupManifest::decode_unverified(&bytes).unwrap();
        assert_eq!(decoded.manifest, m);
        assert!(decoded.mac_verifies(&bytes, &key));
        assert_eq!(m.base_lsn(), Some(Lsn::new(15)));
        assert_eq!(m.wal_files().count(), 2);
        let refused = |m: &BackupManifest, what: &'static str| {
            let e = BackupManifest::decode_unverified(&m.encode(&key)).unwrap_err();
            assert_eq!(e.kind, DecodeErrorKind::Invalid { what }, "{what}");
        };
        let mut bad = m.clone();
        bad.runs.as_mut().unwrap().inherited.swap(0, 1);
        refused(&bad, "inherited run ids (not strictly increasing)");
        let mut bad = m.clone();
        bad.runs.as_mut().unwrap().inherited[1].file_id = 9;
        refused(&bad, "inherited run id (the backup also holds the file)");
        let mut bad = m.clone();
        bad.runs.as_mut().unwrap().base_lsn = Lsn::new(21);
        refused(&bad, "run set lsn (above the last lsn)");
        let mut bad = m.clone();
        bad.runs.as_mut().unwrap().wal_from_parent = false;
        bad.runs.as_mut().unwrap().base_lsn = Lsn::new(5);
        refused(
            &bad,
            "run set lsn (below the first lsn, yet the WAL does not continue the parent's)",
        );
        let mut bad = m.clone();
        bad.files[2].kind = BackupFileKind::WalTail { offset: 0 };
        bad.files[2].name = bad.files[1].name.clone();
        refused(&bad, "file name (listed twice)");
        // Only incrementals have a run set or WAL tails.
        let mut full = m.clone();
        full.kind = BackupKind::Full;
        full.parent_sha256 = None;
        let tail = full.files.remove(1);
        refused(&full, "run set (only incrementals list one)");
        full.runs = None;
        full.files.insert(1, tail);
        let e = BackupManifest::decode_unverified(&full.encode(&key)).unwrap_err();
        assert!(
            matches!(e.kind, DecodeErrorKind::UnknownTag { tag: 4, .. }),
            "{e}"
        );
        // A level beyond the deepest is refused.
        let mut deep = m.clone();
        deep.runs.as_mut().unwrap().inherited[0].level = MAX_RUN_LEVEL + 1;
        assert!(BackupManifest::decode_unverified(&deep.encode(&key)).is_err());
        // Every truncation and flip is caught without panicking.
        for len in 0..bytes.len() {
            assert!(BackupManifest::decode_unverified(&bytes[..len]).is_err());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            if let Ok(d) = BackupManifest::decode_unverified(&b) {
                assert!(
                    !(d.key_matches(&key) && d.mac_verifies(&b, &key)),
                    "byte {i}"
                );
            }
        }
    }

    #[test]
    fn version_1_is_read_and_unknown_versions_are_refused() {
        let key = SecretKey::new([1; 32]);
        // The version-1 encoding of `sample()`: today's bytes without the run-set flag,
        // version 1, re-MACed.
        let v2 = sample().encode(&key);
        let mut v1 = v2[..v2.len() - BACKUP_MAC_LEN - 1].to_vec();
        v1[8..10].copy_from_slice(&1u16.to_le_bytes());
        let mac = hmac_sha256(&key, &[&v1]);
        v1.extend_from_slice(&mac);
        let decoded = BackupManifest::decode_unverified(&v1).unwrap();
        assert_eq!(decoded.manifest, sample());
        assert!(decoded.mac_verifies(&v1, &key));
        // A version-1 file cannot hold tails.
        let mut tail = v1.clone();
        let at = tail.len() - BACKUP_MAC_LEN - (1 + 2 + 24 + 8 + 32);
        assert_eq!(tail[at], 2, "the WAL entry's kind byte");
        tail[at] = 4;
        assert!(matches!(
            BackupManifest::decode_unverified(&tail).unwrap_err().kind,
            DecodeErrorKind::UnknownTag { tag: 4, .. }
        ));
        for version in [0u16, 3] {
            let mut b = v2.clone();
            b[8..10].copy_from_slice(&version.to_le_bytes());
            assert!(matches!(
                BackupManifest::decode_unverified(&b).unwrap_err().kind,
                DecodeErrorKind::UnsupportedVersion { .. }
            ));
        }
    }

    #[test]
    fn round_trips_and_authenticates() {
        let key = SecretKey::new([1; 32]);
        let bytes = sample().encode(&key);
        let decoded = BackupManifest::decode_unverified(&bytes).unwrap();
        assert_eq!(decoded.manifest, sample());
        assert!(decoded.key_matches(&key));
        assert!(decoded.mac_verifies(&bytes, &key));
        let other = SecretKey::new([2; 32]);
        assert!(!decoded.key_matches(&other));
        assert!(!decoded.mac_verifies(&bytes, &other));
    }

    #[test]
    fn run_files_keep_their_level_and_bad_levels_or_names_are_refused() {
        let key = SecretKey::new([1; 32]);
        let mut m = sample();
        m.kind = BackupKind::Full;
        m.parent_sha256 = None;
        for level in [0u8, 3, 6] {
            m.files.insert(
                0,
                BackupFile {
                    kind: BackupFileKind::Run { level },
                    name: aedb_checkpoint::run_file_name(u64::from(level) + 1),
                    len: 100,
                    sha256: [level; 32],
                },
            );
        }
        let bytes = m.encode(&key);
        let decoded = BackupManifest::decode_unverified(&bytes).unwrap().manifest;
        assert_eq!(decoded, m);
        let levels: Vec<u8> = decoded.run_files().map(|(_, l)| l).collect();
        assert_eq!(levels, vec![6, 3, 0]);
        // The kind byte of the first file is 10 + level; 17 is no kind.
        let name = b"run-00000000000000000007.ckpt";
        let at = bytes
            .windows(name.len())
            .position(|w| w == name)
            .expect("the level-6 run's entry")
            - 3;
        assert_eq!(bytes[at], 16);
        let mut bad = bytes.clone();
        bad[at] = 17;
        assert!(BackupManifest::decode_unverified(&bad).is_err());
        // A run kind with a name that is not a run file name is refused.
        let mut wrong = m.clone();
        wrong.files[0].name = aedb_wal::segment_file_name(aedb_wal::SegmentSeq::FIRST);
        assert!(BackupManifest::decode_unverified(&wrong.encode(&key)).is_err());
    }

    #[test]
    fn every_truncation_and_flip_is_caught_without_panicking() {
        let key = SecretKey::new([1; 32]);
        let bytes = sample().encode(&key);
        for len in 0..bytes.len() {
            assert!(BackupManifest::decode_unverified(&bytes[..len]).is_err());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            if let Ok(d) = BackupManifest::decode_unverified(&b) {
                assert!(
                    !(d.key_matches(&key) && d.mac_verifies(&b, &key)),
                    "byte {i}"
                );
            }
        }
    }

    #[test]
    fn path_traversal_names_are_refused() {
        let key = SecretKey::new([1; 32]);
        let mut m = sample();
        m.files[0].name = "../../etc/passwd".into();
        let bytes = m.encode(&key);
        let e = BackupManifest::decode_unverified(&bytes).unwrap_err();
        assert_eq!(
            e.kind,
            DecodeErrorKind::Invalid {
                what: "file name (breaks its kind's naming rule)"
            }
        );
        assert_eq!(e.context, "backup manifest");
    }
}
