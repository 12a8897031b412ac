//! The backup manifest: a hand-written, versioned, little-endian binary file
//! (`<backup_dir>/BACKUP`) listing what one backup holds, authenticated with
//! HMAC-SHA256 under the backup subkey. Layout in `docs/FORMAT.md`, section "Backups".
//!
//! The decoder checks every length before allocating and never panics on any input
//! (`fuzz/fuzz_targets/backup_manifest.rs`).

use aedb_keys::SecretKey;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The file name of a backup manifest inside a backup directory.
pub const BACKUP_MANIFEST_FILE: &str = "BACKUP";
/// Magic bytes opening every backup manifest.
pub const BACKUP_MAGIC: [u8; 8] = *b"AEDBBKUP";
/// The format version this build writes and reads.
pub const BACKUP_FORMAT_VERSION: u16 = 1;
/// Length of the MAC that closes the file.
pub const BACKUP_MAC_LEN: usize = 32;
/// Most files one backup may list.
pub const MAX_BACKUP_FILES: u32 = 1 << 20;
/// Longest text field (file names, master key ids).
pub const MAX_BACKUP_TEXT: usize = 255;
/// The message the key-check value is the MAC of: it tells "wrong key" from "tampered".
const KEY_CHECK_MESSAGE: &[u8] = b"aedb backup key check v1";

type HmacSha256 = Hmac<Sha256>;

/// Whether a backup is self-contained or continues a parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackupKind {
    /// A checkpoint plus the WAL after it.
    Full,
    /// The WAL since the parent backup's end.
    Incremental,
}

impl BackupKind {
    fn id(self) -> u8 {
        match self {
            BackupKind::Full => 1,
            BackupKind::Incremental => 2,
        }
    }

    /// `"full"` or `"incremental"`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Full => "full",
            BackupKind::Incremental => "incremental",
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
}

impl BackupFileKind {
    fn id(self) -> u8 {
        match self {
            BackupFileKind::Checkpoint => 1,
            BackupFileKind::WalSegment => 2,
        }
    }

    /// The sub-directory of the backup directory holding files of this kind.
    pub fn dir(self) -> &'static str {
        match self {
            BackupFileKind::Checkpoint => "checkpoints",
            BackupFileKind::WalSegment => "wal",
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
    /// The files, checkpoint first, then WAL segments in sequence order.
    pub files: Vec<BackupFile>,
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

/// Why bytes are not a well-formed backup manifest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackupManifestError {
    /// The file ends early.
    #[error("backup manifest truncated at byte {offset}: {what} needs {needed} more bytes")]
    Truncated {
        /// Where.
        offset: usize,
        /// The field being read.
        what: &'static str,
        /// Bytes missing.
        needed: usize,
    },
    /// Not a backup manifest.
    #[error("not a backup manifest (bad magic)")]
    BadMagic,
    /// A newer or unknown version.
    #[error("unsupported backup manifest version {0} (this build reads {BACKUP_FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    /// A field holds an invalid value.
    #[error("invalid backup manifest at byte {offset}: {what}")]
    Invalid {
        /// Where.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// Bytes follow the MAC.
    #[error("{0} trailing bytes after the backup manifest's MAC")]
    TrailingBytes(usize),
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], BackupManifestError> {
        let rest = self.bytes.len() - self.at;
        if rest < n {
            return Err(BackupManifestError::Truncated {
                offset: self.at,
                what,
                needed: n - rest,
            });
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], BackupManifestError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, BackupManifestError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, BackupManifestError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, BackupManifestError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, BackupManifestError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn text(&mut self, what: &'static str) -> Result<String, BackupManifestError> {
        let at = self.at;
        let len = usize::from(self.u16(what)?);
        if len > MAX_BACKUP_TEXT {
            return Err(BackupManifestError::Invalid {
                offset: at,
                what: "text field longer than 255 bytes",
            });
        }
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| BackupManifestError::Invalid {
            offset: at,
            what: "text field is not UTF-8",
        })
    }

    fn invalid(&self, what: &'static str) -> BackupManifestError {
        BackupManifestError::Invalid {
            offset: self.at,
            what,
        }
    }
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
        BackupFileKind::WalSegment => aedb_wal::dir::parse_segment_file_name(name).is_some(),
    }
}

/// `HMAC-SHA256(key, KEY_CHECK_MESSAGE)`.
pub fn key_check(key: &SecretKey) -> [u8; 32] {
    mac_of(key, KEY_CHECK_MESSAGE)
}

fn mac_of(key: &SecretKey, bytes: &[u8]) -> [u8; 32] {
    key.with_bytes(|k| {
        // HMAC accepts keys of any length; 32 bytes never fails.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(k).unwrap_or_else(|_| unreachable!());
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    })
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
            out.extend_from_slice(&f.len.to_le_bytes());
            out.extend_from_slice(&f.sha256);
        }
        let mac = mac_of(key, &out);
        out.extend_from_slice(&mac);
        out
    }

    /// Decodes without authenticating. Never panics; checks every length first.
    pub fn decode_unverified(
        bytes: &[u8],
    ) -> Result<UnverifiedBackupManifest, BackupManifestError> {
        let mut r = Reader { bytes, at: 0 };
        if r.array::<8>("magic")? != BACKUP_MAGIC {
            return Err(BackupManifestError::BadMagic);
        }
        let version = r.u16("version")?;
        if version != BACKUP_FORMAT_VERSION {
            return Err(BackupManifestError::UnsupportedVersion(version));
        }
        let kind = match r.u8("kind")? {
            1 => BackupKind::Full,
            2 => BackupKind::Incremental,
            _ => return Err(r.invalid("unknown backup kind")),
        };
        let has_parent = match r.u8("flags")? {
            0 => false,
            1 => true,
            _ => return Err(r.invalid("unknown flags")),
        };
        if has_parent != (kind == BackupKind::Incremental) {
            return Err(r.invalid("only incremental backups have a parent"));
        }
        let database_id = DatabaseId::from_bytes(r.array("database id")?);
        let backup_id = r.array("backup id")?;
        let created_at_unix_ms = r.u64("created at")?;
        let first_lsn = Lsn::new(r.u64("first lsn")?);
        let last_lsn = Lsn::new(r.u64("last lsn")?);
        if last_lsn < first_lsn {
            return Err(r.invalid("last lsn below first lsn"));
        }
        let parent: [u8; 32] = r.array("parent hash")?;
        if !has_parent && parent != [0; 32] {
            return Err(r.invalid("a full backup's parent hash must be zero"));
        }
        let master_key_id = r.text("master key id")?;
        let key_check = r.array("key check")?;
        let epoch_count = r.u16("epoch count")?;
        // Each epoch takes at least 6 bytes: refuse counts the input cannot hold.
        if usize::from(epoch_count) * 6 > bytes.len() - r.at {
            return Err(r.invalid("epoch count exceeds the file"));
        }
        let mut key_epochs = Vec::with_capacity(usize::from(epoch_count));
        for _ in 0..epoch_count {
            let epoch = KeyEpoch::new(r.u32("epoch")?);
            let master = r.text("epoch master")?;
            if key_epochs.last().is_some_and(|(last, _)| *last >= epoch) {
                return Err(r.invalid("key epochs not strictly increasing"));
            }
            key_epochs.push((epoch, master));
        }
        let file_count = r.u32("file count")?;
        // Each file entry takes at least 43 bytes.
        if file_count > MAX_BACKUP_FILES || file_count as usize * 43 > bytes.len() - r.at {
            return Err(r.invalid("file count exceeds the file"));
        }
        let mut files = Vec::with_capacity(file_count as usize);
        for _ in 0..file_count {
            let kind = match r.u8("file kind")? {
                1 => BackupFileKind::Checkpoint,
                2 => BackupFileKind::WalSegment,
                _ => return Err(r.invalid("unknown file kind")),
            };
            let name = r.text("file name")?;
            if !valid_file_name(kind, &name) {
                return Err(r.invalid("file name breaks its kind's naming rule"));
            }
            let len = r.u64("file length")?;
            let sha256 = r.array("file hash")?;
            files.push(BackupFile {
                kind,
                name,
                len,
                sha256,
            });
        }
        let signed_len = r.at;
        let mac = r.array("mac")?;
        if r.at != bytes.len() {
            return Err(BackupManifestError::TrailingBytes(bytes.len() - r.at));
        }
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

    /// The WAL segments listed, in order.
    pub fn wal_files(&self) -> impl Iterator<Item = &BackupFile> {
        self.files
            .iter()
            .filter(|f| f.kind == BackupFileKind::WalSegment)
    }

    /// The checkpoint listed (full backups).
    pub fn checkpoint_file(&self) -> Option<&BackupFile> {
        self.files
            .iter()
            .find(|f| f.kind == BackupFileKind::Checkpoint)
    }
}

impl UnverifiedBackupManifest {
    /// Whether `key` is the key the manifest was written with.
    pub fn key_matches(&self, key: &SecretKey) -> bool {
        constant_time_eq(&key_check(key), &self.key_check)
    }

    /// Whether the MAC over `bytes` (the file this was decoded from) verifies under `key`.
    pub fn mac_verifies(&self, bytes: &[u8], key: &SecretKey) -> bool {
        let Some(signed) = bytes.get(..self.signed_len) else {
            return false;
        };
        key.with_bytes(|k| {
            let Ok(mut mac) = <HmacSha256 as Mac>::new_from_slice(k) else {
                return false;
            };
            mac.update(signed);
            mac.verify_slice(&self.mac).is_ok()
        })
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        assert!(matches!(
            BackupManifest::decode_unverified(&bytes),
            Err(BackupManifestError::Invalid { .. })
        ));
    }
}
