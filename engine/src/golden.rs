//! `golden_capsules()`: fixed-input fixtures of every on-disk format, pinned byte for
//! byte, so wire compatibility is checked after any change — and after key rotation
//! (the IHP runbook: "validate with `golden_capsules()`").
//!
//! Each capsule is produced by the current code from fixed inputs (keys, nonces,
//! clocks, payloads — named in its description) and compared with the bytes committed
//! under `engine/golden/` (WAL and model formats) or `checkpoint/tests/golden/`
//! (checkpoint and manifest formats, pinned by that crate's own test). `verify()` also
//! decodes the bytes with the current decoder.

use aedb_keys::SecretKey;
use aedb_model::CommitRecord;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use aedb_wal::{FrameKind, SegmentHash, SegmentHeader, SegmentSeq};

/// One pinned fixture.
pub struct GoldenCapsule {
    /// Stable name.
    pub name: String,
    /// The format and the fixed inputs it was produced from.
    pub description: String,
    /// What the current code produces from those inputs.
    pub bytes: Vec<u8>,
    /// The committed bytes the output must equal, when pinned here (`None` when the
    /// owning crate pins it in its own golden test).
    pub pinned_hex: Option<&'static str>,
    decode: Decoder,
}

/// Decodes a capsule's bytes and checks they mean what the inputs said.
type Decoder = Box<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>;

impl std::fmt::Debug for GoldenCapsule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoldenCapsule")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A capsule no longer matches its pinned bytes or no longer decodes.
#[derive(Debug, thiserror::Error)]
#[error("golden capsule {name}: {problem}")]
pub struct GoldenMismatch {
    /// The capsule.
    pub name: String,
    /// What differs.
    pub problem: String,
}

impl GoldenCapsule {
    /// Checks the bytes against the pinned fixture and decodes them.
    pub fn verify(&self) -> Result<(), GoldenMismatch> {
        let fail = |problem: String| GoldenMismatch {
            name: self.name.clone(),
            problem,
        };
        if let Some(hex_text) = self.pinned_hex {
            let pinned = hex::decode(hex_text.trim())
                .map_err(|e| fail(format!("pinned fixture is not hex: {e}")))?;
            if pinned != self.bytes {
                return Err(fail(format!(
                    "current code produces {} bytes that differ from the pinned {} bytes",
                    self.bytes.len(),
                    pinned.len()
                )));
            }
        }
        (self.decode)(&self.bytes).map_err(fail)
    }
}

const GOLDEN_KEY: [u8; 32] = [0x42; 32];
const GOLDEN_DB: [u8; 16] = [
    0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF,
];
const GOLDEN_NONCE: [u8; 24] = [0x60; 24];

fn wal_frame() -> GoldenCapsule {
    let mut bytes = Vec::new();
    let _ = aedb_wal::encode_frame(Lsn::new(42), FrameKind::Commit, b"golden", &mut bytes);
    GoldenCapsule {
        name: "wal_frame_v1".into(),
        description: "WAL frame v1: Commit, LSN 42, payload \"golden\"".into(),
        bytes,
        pinned_hex: Some(include_str!("../golden/wal_frame_v1.hex")),
        decode: Box::new(|b| {
            let f = aedb_wal::decode_frame(b).map_err(|e| e.to_string())?;
            (f.lsn == Lsn::new(42) && f.payload == b"golden")
                .then_some(())
                .ok_or_else(|| "decoded to different content".into())
        }),
    }
}

fn wal_segment_header() -> GoldenCapsule {
    let header = SegmentHeader {
        version: 1,
        seq: SegmentSeq::new(3),
        base_lsn: Lsn::new(1000),
        prev_hash: SegmentHash([0xAB; 32]),
    };
    GoldenCapsule {
        name: "wal_segment_header_v1".into(),
        description: "WAL segment header v1: seq 3, base LSN 1000, prev hash 0xAB*32".into(),
        bytes: header.encode().to_vec(),
        pinned_hex: Some(include_str!("../golden/wal_segment_header_v1.hex")),
        decode: Box::new(move |b| {
            let h = SegmentHeader::decode(b).map_err(|e| e.to_string())?;
            (h == header)
                .then_some(())
                .ok_or_else(|| "decoded to a different header".into())
        }),
    }
}

fn wal_sealed_batch() -> GoldenCapsule {
    let key = || SecretKey::new(GOLDEN_KEY);
    let db = DatabaseId::from_bytes(GOLDEN_DB);
    let records: [&[u8]; 3] = [b"alpha", b"beta", b"gamma"];
    let bytes = aedb_wal::seal_batch(
        &key(),
        KeyEpoch::new(7),
        db,
        SegmentSeq::new(3),
        Lsn::new(100),
        GOLDEN_NONCE,
        &records,
    )
    .unwrap_or_default();
    GoldenCapsule {
        name: "wal_sealed_batch_v1".into(),
        description: "WAL sealed batch v1: key 0x42*32, epoch 7, db a0..af, segment 3, \
                      LSNs 100..=102, nonce 0x60*24, records alpha/beta/gamma"
            .into(),
        bytes,
        pinned_hex: Some(include_str!("../golden/wal_sealed_batch_v1.hex")),
        decode: Box::new(move |b| {
            let f = aedb_wal::decode_frame(b).map_err(|e| e.to_string())?;
            let opened =
                aedb_wal::open_sealed_batch(f.payload, f.lsn, SegmentSeq::new(3), db, &key())
                    .map_err(|e| e.to_string())?;
            let got: Vec<Vec<u8>> = opened.to_vec().into_iter().map(|(_, r)| r).collect();
            (got == records.map(<[u8]>::to_vec))
                .then_some(())
                .ok_or_else(|| "opened to different records".into())
        }),
    }
}

fn fixture_lines(text: &'static str) -> impl Iterator<Item = (usize, &'static str)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
}

fn model_records() -> Vec<GoldenCapsule> {
    // Version 1 is read-only now: its bytes must still decode, and what they decode
    // to must survive a round trip through the current version.
    let v1 = fixture_lines(include_str!("../../model/tests/fixtures/records-v1.hex")).map(
        |(i, line)| GoldenCapsule {
            name: format!("commit_record_v1_{i}"),
            description: format!(
                "commit record v1 #{i} of model/tests/fixtures/records-v1.hex (decode-only: \
                 re-encoded as the current version)"
            ),
            bytes: hex::decode(line).unwrap_or_default(),
            pinned_hex: Some(line),
            decode: Box::new(|b| {
                let record = CommitRecord::decode(b).map_err(|e| e.to_string())?;
                let again = CommitRecord::decode(&record.to_bytes()).map_err(|e| e.to_string())?;
                (again == record)
                    .then_some(())
                    .ok_or_else(|| "does not survive re-encoding as the current version".into())
            }),
        },
    );
    // Version 2 (written now) is pinned byte for byte: re-encoding must reproduce it.
    let v2 = fixture_lines(include_str!("../../model/tests/fixtures/records-v2.hex")).map(
        |(i, line)| {
            let pinned = hex::decode(line).unwrap_or_default();
            let bytes = CommitRecord::decode(&pinned)
                .map(|r| r.to_bytes())
                .unwrap_or_default();
            GoldenCapsule {
                name: format!("commit_record_v2_{i}"),
                description: format!(
                    "commit record v2 #{i} of model/tests/fixtures/records-v2.hex, re-encoded"
                ),
                bytes,
                pinned_hex: Some(line),
                decode: Box::new(|b| {
                    CommitRecord::decode(b)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }),
            }
        },
    );
    v1.chain(v2).collect()
}

/// Every golden fixture: WAL frame, segment header and sealed batch; commit records;
/// sealed and plaintext checkpoints; manifest header and every record type.
pub fn golden_capsules() -> Vec<GoldenCapsule> {
    let mut out = vec![wal_frame(), wal_segment_header(), wal_sealed_batch()];
    out.extend(model_records());
    out.extend(aedb_checkpoint::golden_fixtures().into_iter().map(|f| {
        let bytes = f.bytes.clone();
        GoldenCapsule {
            name: f.name.clone(),
            description: f.description.clone(),
            bytes,
            pinned_hex: None,
            decode: Box::new(move |_| f.verify_decodes().map_err(|e| e.to_string())),
        }
    }));
    out.extend(aedb_manifest::golden_fixtures().into_iter().map(|f| {
        let bytes = f.bytes.clone();
        GoldenCapsule {
            name: f.name.clone(),
            description: f.description.clone(),
            bytes,
            pinned_hex: None,
            decode: Box::new(move |_| f.verify_decodes().map_err(|e| e.to_string())),
        }
    }));
    out.push(session_capsule());
    out.extend(backup_manifests());
    out
}

/// The backup manifests' fixed inputs: database a0..af, backup id 0x11*16, created at
/// 1 700 000 000 000 ms, master `aedb-manifest@v1`, epoch 1 under `aedb-data@v1`.
fn golden_backup(kind: crate::backup::BackupKind) -> crate::backup::BackupManifest {
    use crate::backup::{BackupFile, BackupFileKind, BackupKind, BackupManifest};
    let wal = |seq: u64, len: u64, fill: u8| BackupFile {
        kind: BackupFileKind::WalSegment,
        name: aedb_wal::segment_file_name(SegmentSeq::new(seq)),
        len,
        sha256: [fill; 32],
    };
    let run = |id: u64, level: u8, len: u64, fill: u8| BackupFile {
        kind: BackupFileKind::Run { level },
        name: aedb_checkpoint::run_file_name(id),
        len,
        sha256: [fill; 32],
    };
    let full = kind == BackupKind::Full;
    BackupManifest {
        kind,
        database_id: DatabaseId::from_bytes(GOLDEN_DB),
        backup_id: [0x11; 16],
        created_at_unix_ms: 1_700_000_000_000,
        first_lsn: Lsn::new(if full { 100 } else { 250 }),
        last_lsn: Lsn::new(if full { 250 } else { 400 }),
        parent_sha256: (!full).then_some([0x22; 32]),
        master_key_id: "aedb-manifest@v1".into(),
        key_epochs: vec![(KeyEpoch::new(1), "aedb-data@v1".into())],
        files: if full {
            vec![
                run(3, 0, 5000, 0x31),
                run(2, 1, 9000, 0x32),
                wal(4, 65_536, 0x33),
                wal(5, 1024, 0x34),
            ]
        } else {
            vec![wal(5, 4096, 0x35), wal(6, 2048, 0x36)]
        },
        runs: None,
    }
}

/// Backup manifest capsules: version 1 (full with run files, WAL-only incremental),
/// pinned bytes written by the version-1 encoder and read by today's decoder; version 2
/// (an incremental with a new run, a WAL tail, a whole segment and inherited runs),
/// produced by today's encoder.
fn backup_manifests() -> Vec<GoldenCapsule> {
    use crate::backup::{BackupFile, BackupFileKind, BackupKind, BackupManifest};
    let check = |manifest: BackupManifest, version: u16| -> Decoder {
        Box::new(move |b| {
            if b.get(8..10) != Some(&version.to_le_bytes()[..]) {
                return Err(format!("not a version-{version} backup manifest"));
            }
            let d = BackupManifest::decode_unverified(b).map_err(|e| e.to_string())?;
            let key = SecretKey::new(GOLDEN_KEY);
            if !(d.key_matches(&key) && d.mac_verifies(b, &key)) {
                return Err("does not authenticate under the golden key".into());
            }
            (d.manifest == manifest)
                .then_some(())
                .ok_or_else(|| "decoded to a different manifest".into())
        })
    };
    let v1 = |name: &str, kind: BackupKind, pinned: &'static str| GoldenCapsule {
        name: name.into(),
        description: format!(
            "backup manifest v1, {}: key 0x42*32, db a0..af, backup id 0x11*16, created \
             1700000000000, fixed files and hashes (written by the version-1 encoder)",
            kind.as_str()
        ),
        // Today's encoder writes version 2: the pinned bytes are the capsule.
        bytes: hex::decode(pinned.trim()).unwrap_or_default(),
        pinned_hex: Some(pinned),
        decode: check(golden_backup(kind), 1),
    };
    let mut v2 = golden_backup(BackupKind::Incremental);
    v2.files = vec![
        BackupFile {
            kind: BackupFileKind::Run { level: 0 },
            name: aedb_checkpoint::run_file_name(9),
            len: 700,
            sha256: [0x37; 32],
        },
        BackupFile {
            kind: BackupFileKind::WalTail { offset: 1024 },
            name: aedb_wal::segment_file_name(SegmentSeq::new(5)),
            len: 3072,
            sha256: [0x38; 32],
        },
        BackupFile {
            kind: BackupFileKind::WalSegment,
            name: aedb_wal::segment_file_name(SegmentSeq::new(6)),
            len: 2048,
            sha256: [0x39; 32],
        },
    ];
    v2.runs = Some(crate::backup::BackupRunSet {
        base_lsn: Lsn::new(300),
        wal_from_parent: true,
        inherited: vec![
            crate::backup::InheritedRun {
                file_id: 2,
                level: 1,
                len: 9000,
                sha256: [0x32; 32],
            },
            crate::backup::InheritedRun {
                file_id: 3,
                level: 0,
                len: 5000,
                sha256: [0x31; 32],
            },
        ],
    });
    let v2_bytes = v2.encode(&SecretKey::new(GOLDEN_KEY));
    vec![
        v1(
            "backup_manifest_full_v1",
            BackupKind::Full,
            include_str!("../golden/backup_manifest_full_v1.hex"),
        ),
        v1(
            "backup_manifest_incremental_v1",
            BackupKind::Incremental,
            include_str!("../golden/backup_manifest_incremental_v1.hex"),
        ),
        GoldenCapsule {
            name: "backup_manifest_incremental_v2".into(),
            description: "backup manifest v2, incremental: the v1 inputs, files run 9 \
                          (level 0), a tail of segment 5 from byte 1024, segment 6; run set \
                          at lsn 300 continuing the parent's WAL, inheriting runs 2 and 3"
                .into(),
            bytes: v2_bytes,
            pinned_hex: Some(include_str!("../golden/backup_manifest_incremental_v2.hex")),
            decode: check(v2, 2),
        },
    ]
}
/// The IHP session capsule (pinned by `aedb-session`'s own fixture, re-checked here):
/// after a rotation its bytes and verification must not change.
fn session_capsule() -> GoldenCapsule {
    let golden = aedb_session::golden_session_capsule();
    GoldenCapsule {
        name: aedb_session::GoldenSessionCapsule::NAME.into(),
        description: golden.description(),
        bytes: golden.bytes.clone(),
        pinned_hex: Some(aedb_session::GOLDEN_SESSION_CAPSULE_V1_HEX),
        decode: Box::new(move |_| golden.check().map(drop).map_err(|e| e.to_string())),
    }
}
