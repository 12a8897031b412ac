//! Golden fixtures: byte-exact images of the manifest format (header, one frame of every
//! record kind, whole chained files), produced from fixed keys and clock values. `tests/golden.rs` compares them with the hex files
//! in `tests/golden/` (regenerate deliberately with `AEDB_REGEN_GOLDEN=1`) and checks that
//! the stored bytes still decode.

use crate::error::ManifestError;
use crate::file::{
    MAC_LEN, decode_frame, encode_frame, encode_manifest_header, verify_manifest_bytes,
};
use crate::record::{ManifestRecord, RecoveryEventKind, RunRecord, VersionEdit};
use aedb_keys::SecretKey;
use aedb_types::{DatabaseId, KeyEpoch, Lsn, SegmentSeq};
use std::path::Path;

/// The manifest key used by the fixtures (test value, never a real key).
pub const GOLDEN_MANIFEST_KEY: [u8; 32] = [0x24; 32];
/// The database id used by the fixtures.
pub const GOLDEN_DATABASE_ID: DatabaseId = DatabaseId::from_bytes([
    0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF,
]);
/// What a fixture must decode to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoldenExpectation {
    /// A manifest file (header and records) under [`GOLDEN_MANIFEST_KEY`].
    ManifestFile {
        /// The expected records.
        records: Vec<ManifestRecord>,
    },
    /// A single frame, record 0 after the golden manifest header.
    ManifestFrame {
        /// The expected record.
        record: ManifestRecord,
    },
}

/// One golden fixture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoldenFixture {
    /// Stable name; the hex file is `tests/golden/<name>.hex`.
    pub name: String,
    /// What the bytes are and how they were produced.
    pub description: String,
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// What they must decode to.
    pub expected: GoldenExpectation,
}

/// A fixture failed to decode to what it should.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GoldenError {
    /// The manifest verifier rejected it.
    #[error("golden fixture {name}: {source}")]
    Manifest {
        /// Fixture name.
        name: String,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// It decoded, but to something else.
    #[error("golden fixture {name} decoded to different content: {what}")]
    Mismatch {
        /// Fixture name.
        name: String,
        /// What differed.
        what: String,
    },
}

fn golden_records() -> Vec<ManifestRecord> {
    vec![
        ManifestRecord::Compacted {
            replaces_head: [0xC0; 32],
            records_replaced: 17,
            at_unix_ms: 1_700_000_900_000,
        },
        ManifestRecord::DatabaseCreated {
            database_id: GOLDEN_DATABASE_ID,
            created_at_unix_ms: 1_700_000_000_000,
        },
        ManifestRecord::KeyEpochChanged {
            epoch: KeyEpoch::FIRST,
            master_key_id: "aedb-master/v1".into(),
            at_unix_ms: 1_700_000_000_001,
        },
        ManifestRecord::SegmentSealed {
            seq: SegmentSeq::new(0),
            first_lsn: Lsn::new(1),
            last_lsn: Lsn::new(100),
            sha256: [0x5E; 32],
        },
        ManifestRecord::CheckpointAdded {
            lsn: Lsn::new(100),
            epoch: KeyEpoch::FIRST,
            file_name: "00000000000000000100.ckpt".into(),
            sha256: [0xC4; 32],
            len: 4096,
        },
        ManifestRecord::SegmentRetired {
            seq: SegmentSeq::new(0),
        },
        ManifestRecord::CheckpointRetired { lsn: Lsn::new(100) },
        ManifestRecord::BackupTaken {
            backup_id: "backup-2023-11-14".into(),
            first_lsn: Lsn::new(1),
            last_lsn: Lsn::new(100),
            manifest_sha256: [0xBA; 32],
            at_unix_ms: 1_700_000_500_000,
        },
        ManifestRecord::ServerEnvHash {
            profile_id: "production".into(),
            hash: [0xE5; 32],
        },
    ]
}

/// Records appended after [`golden_records`] in the second file fixture: a rotation,
/// then the retirement of the first epoch (record kind 10, added after format v1
/// shipped; the first file fixture stays byte-identical).
fn golden_retirement_records() -> Vec<ManifestRecord> {
    vec![
        ManifestRecord::KeyEpochChanged {
            epoch: KeyEpoch::new(2),
            master_key_id: "aedb-master/v2".into(),
            at_unix_ms: 1_700_000_600_000,
        },
        ManifestRecord::KeyEpochRetired {
            epoch: KeyEpoch::FIRST,
            at_unix_ms: 1_700_000_700_000,
        },
    ]
}

/// Records appended after [`golden_retirement_records`] in the third file fixture: a
/// recovery event (record kind 11, added after kinds 1-10 shipped; the earlier fixtures
/// stay byte-identical).
fn golden_recovery_records() -> Vec<ManifestRecord> {
    vec![ManifestRecord::RecoveryEvent {
        event: RecoveryEventKind::CheckpointFallback,
        lsn: Lsn::new(100),
        at_unix_ms: 1_700_000_800_000,
        detail: "00000000000000000200.ckpt: authentication failed".into(),
    }]
}

/// Records appended after [`golden_recovery_records`] in the fourth file fixture: an LSM
/// flush and a compaction (record kind 12, added after kinds 1-11 shipped; the earlier
/// fixtures stay byte-identical).
fn golden_version_edits() -> Vec<ManifestRecord> {
    let run = |file_id: u64, level: u8, lsn: (u64, u64), keys: (&[u8], &[u8])| RunRecord {
        file_id,
        level,
        epoch: KeyEpoch::new(2),
        min_lsn: Lsn::new(lsn.0),
        max_lsn: Lsn::new(lsn.1),
        entries: 1000 + file_id,
        len: 65_536 + file_id,
        sha256: [0xF0 | file_id as u8; 32],
        first_key: keys.0.to_vec(),
        last_key: keys.1.to_vec(),
    };
    vec![
        ManifestRecord::VersionEdit(VersionEdit {
            flushed_lsn: Lsn::new(150),
            next_file_id: 2,
            added: vec![run(1, 0, (101, 150), (b"\x02acct/0001", b"\x02acct/9999"))],
            removed: Vec::new(),
            floor: Lsn::ZERO,
        }),
        ManifestRecord::VersionEdit(VersionEdit {
            flushed_lsn: Lsn::ZERO,
            next_file_id: 4,
            added: vec![
                run(2, 1, (101, 150), (b"\x02acct/0001", b"\x02acct/4999")),
                run(3, 1, (120, 150), (b"\x02acct/5000", b"\x02acct/9999")),
            ],
            removed: vec![1],
            floor: Lsn::ZERO,
        }),
    ]
}

fn golden_frame(
    key: &SecretKey,
    prev: &[u8; MAC_LEN],
    record: &ManifestRecord,
) -> (Vec<u8>, [u8; MAC_LEN]) {
    match encode_frame(key, prev, record) {
        Ok(f) => f,
        Err(e) => unreachable!("golden records are valid: {e}"),
    }
}

/// Every golden fixture of this crate, in a stable order.
pub fn golden_fixtures() -> Vec<GoldenFixture> {
    let mut out = Vec::new();
    let key = SecretKey::new(GOLDEN_MANIFEST_KEY);
    let header = encode_manifest_header(GOLDEN_DATABASE_ID, &key);
    let mut header_mac = [0u8; MAC_LEN];
    header_mac.copy_from_slice(&header[32..]);
    out.push(GoldenFixture {
        name: "manifest_header_v1".into(),
        description: "manifest v1 header only, key 0x24*32, db a0..af".into(),
        bytes: header.to_vec(),
        expected: GoldenExpectation::ManifestFile {
            records: Vec::new(),
        },
    });
    let records = golden_records();
    let retirement = golden_retirement_records();
    let recovery = golden_recovery_records();
    let edits = golden_version_edits();
    for r in records
        .iter()
        .chain(&retirement[1..])
        .chain(&recovery)
        .chain(&edits[..1])
    {
        let kind = r.kind();
        out.push(GoldenFixture {
            name: format!("manifest_record_{}_v1", kind.name()),
            description: format!(
                "manifest v1 frame, kind {} ({}), as record 0 after the golden header (prev_mac = header MAC): {r:?}",
                kind.id(),
                kind.name()
            ),
            bytes: golden_frame(&key, &header_mac, r).0,
            expected: GoldenExpectation::ManifestFrame { record: r.clone() },
        });
    }
    let file = |records: &[ManifestRecord]| {
        let mut file = header.to_vec();
        let mut prev = header_mac;
        for r in records {
            let (frame, mac) = golden_frame(&key, &prev, r);
            file.extend_from_slice(&frame);
            prev = mac;
        }
        file
    };
    out.push(GoldenFixture {
        name: "manifest_file_v1".into(),
        description: "manifest v1 file: header + one record of every kind, chained".into(),
        bytes: file(&records),
        expected: GoldenExpectation::ManifestFile {
            records: records.clone(),
        },
    });
    let all: Vec<ManifestRecord> = records.into_iter().chain(retirement).collect();
    out.push(GoldenFixture {
        name: "manifest_file_with_epoch_retirement_v1".into(),
        description: "manifest v1 file: the records of manifest_file_v1, a second key epoch, and the retirement of the first, chained".into(),
        bytes: file(&all),
        expected: GoldenExpectation::ManifestFile {
            records: all.clone(),
        },
    });
    let all: Vec<ManifestRecord> = all.into_iter().chain(recovery).collect();
    out.push(GoldenFixture {
        name: "manifest_file_with_recovery_event_v1".into(),
        description: "manifest v1 file: the records of manifest_file_with_epoch_retirement_v1 and a recovery event (kind 11), chained".into(),
        bytes: file(&all),
        expected: GoldenExpectation::ManifestFile {
            records: all.clone(),
        },
    });
    // A compaction's edit with its retention floor (the optional trailing field added
    // after kind 12 shipped; edits without one keep their bytes).
    let floored = ManifestRecord::VersionEdit(VersionEdit {
        floor: Lsn::new(140),
        ..match &edits[1] {
            ManifestRecord::VersionEdit(e) => e.clone(),
            _ => unreachable!("the second golden edit is a compaction"),
        }
    });
    out.push(GoldenFixture {
        name: "manifest_record_version_edit_with_floor_v1".into(),
        description: format!(
            "manifest v1 frame, kind 12 (version_edit) with a retention floor, as record 0 after the golden header (prev_mac = header MAC): {floored:?}"
        ),
        bytes: golden_frame(&key, &header_mac, &floored).0,
        expected: GoldenExpectation::ManifestFrame { record: floored },
    });
    let all: Vec<ManifestRecord> = all.into_iter().chain(edits).collect();
    out.push(GoldenFixture {
        name: "manifest_file_with_version_edits_v1".into(),
        description: "manifest v1 file: the records of manifest_file_with_recovery_event_v1, an LSM flush and a compaction (kind 12), chained".into(),
        bytes: file(&all),
        expected: GoldenExpectation::ManifestFile { records: all },
    });
    out
}

impl GoldenFixture {
    /// Decodes `self.bytes` with the current decoders and the golden keys and checks the
    /// result equals `self.expected`.
    ///
    /// # Errors
    /// The decoder's error, or [`GoldenError::Mismatch`].
    pub fn verify_decodes(&self) -> Result<(), GoldenError> {
        let name = || self.name.clone();
        let mismatch = |what: String| GoldenError::Mismatch { name: name(), what };
        match &self.expected {
            GoldenExpectation::ManifestFile { records } => {
                let key = SecretKey::new(GOLDEN_MANIFEST_KEY);
                let v = verify_manifest_bytes(Path::new(&self.name), &self.bytes, &key).map_err(
                    |source| GoldenError::Manifest {
                        name: name(),
                        source,
                    },
                )?;
                if v.records != *records
                    || v.torn_tail.is_some()
                    || v.database_id != GOLDEN_DATABASE_ID
                {
                    return Err(mismatch(format!("records {:?}", v.records)));
                }
            }
            GoldenExpectation::ManifestFrame { record } => {
                let key = SecretKey::new(GOLDEN_MANIFEST_KEY);
                let header = encode_manifest_header(GOLDEN_DATABASE_ID, &key);
                let mut prev = [0u8; MAC_LEN];
                prev.copy_from_slice(&header[32..]);
                let (decoded, _) = decode_frame(&self.bytes, &prev, &key).map_err(|source| {
                    GoldenError::Manifest {
                        name: name(),
                        source,
                    }
                })?;
                if decoded != *record {
                    return Err(mismatch(format!("record {decoded:?}")));
                }
            }
        }
        Ok(())
    }
}
