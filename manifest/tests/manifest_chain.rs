//! Manifest behaviour: chain verification, tamper evidence, torn tails, replay, compaction.

use aedb_keys::SecretKey;
use aedb_manifest::file::{FRAME_PREFIX_LEN, MAC_LEN};
use aedb_manifest::{
    LiveStateError, MANIFEST_FILE_NAME, Manifest, ManifestError, ManifestRecord, RecordKind,
    read_manifest, verify_manifest_bytes,
};
use aedb_types::{DatabaseId, KeyEpoch, Lsn, SegmentSeq};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const DB: DatabaseId = DatabaseId::from_bytes([0x5D; 16]);
const KEY: [u8; 32] = [0x77; 32];

fn key() -> SecretKey {
    SecretKey::new(KEY)
}

fn history() -> Vec<ManifestRecord> {
    let seg = |seq: u64, first: u64, last: u64| ManifestRecord::SegmentSealed {
        seq: SegmentSeq::new(seq),
        first_lsn: Lsn::new(first),
        last_lsn: Lsn::new(last),
        sha256: [seq as u8; 32],
    };
    let ckpt = |lsn: u64, epoch: u32| ManifestRecord::CheckpointAdded {
        lsn: Lsn::new(lsn),
        epoch: KeyEpoch::new(epoch),
        file_name: format!("{lsn:020}.ckpt"),
        sha256: [lsn as u8; 32],
        len: lsn * 10,
    };
    vec![
        ManifestRecord::DatabaseCreated {
            database_id: DB,
            created_at_unix_ms: 1_000,
        },
        ManifestRecord::KeyEpochChanged {
            epoch: KeyEpoch::FIRST,
            master_key_id: "master/v1".into(),
            at_unix_ms: 1_001,
        },
        ManifestRecord::ServerEnvHash {
            profile_id: "prod".into(),
            hash: [1; 32],
        },
        seg(0, 1, 10),
        seg(1, 11, 20),
        ckpt(20, 1),
        ManifestRecord::SegmentRetired {
            seq: SegmentSeq::new(0),
        },
        ManifestRecord::KeyEpochChanged {
            epoch: KeyEpoch::new(2),
            master_key_id: "master/v2".into(),
            at_unix_ms: 2_000,
        },
        seg(2, 21, 30),
        ckpt(30, 2),
        ManifestRecord::CheckpointRetired { lsn: Lsn::new(20) },
        ManifestRecord::BackupTaken {
            backup_id: "nightly-1".into(),
            first_lsn: Lsn::new(1),
            last_lsn: Lsn::new(30),
            manifest_sha256: [9; 32],
            at_unix_ms: 3_000,
        },
        ManifestRecord::ServerEnvHash {
            profile_id: "prod".into(),
            hash: [2; 32],
        },
    ]
}

fn write_manifest(dir: &Path, records: &[ManifestRecord]) -> (PathBuf, Manifest) {
    let path = dir.join(MANIFEST_FILE_NAME);
    let mut m = Manifest::create(&aedb_fs::RealFs::shared(), &path, DB, key()).unwrap();
    for r in records {
        m.append(r).unwrap();
    }
    (path, m)
}

/// The bytes of a manifest holding `history()`, and its record offsets.
fn sample_bytes() -> (Vec<u8>, Vec<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let (path, _m) = write_manifest(dir.path(), &history());
    let bytes = std::fs::read(&path).unwrap();
    let v = verify_manifest_bytes(&path, &bytes, &key()).unwrap();
    (bytes, v.record_offsets)
}

fn verify(bytes: &[u8]) -> Result<Vec<ManifestRecord>, ManifestError> {
    let v = verify_manifest_bytes(Path::new("MANIFEST"), bytes, &key())?;
    match v.torn_tail {
        // What strict `Manifest::open` does with a torn tail.
        Some(t) => Err(ManifestError::TornTail {
            path: "MANIFEST".into(),
            offset: t.offset,
            len: t.len,
            valid_records: v.records.len() as u64,
        }),
        None => Ok(v.records),
    }
}

#[test]
fn append_then_open_round_trips_and_folds_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = write_manifest(dir.path(), &history());
    let head = m.head_mac();
    assert_eq!(m.record_count(), history().len() as u64);
    drop(m);
    let (m, records) = Manifest::open(&aedb_fs::RealFs::shared(), &path, key()).unwrap();
    assert_eq!(records, history());
    assert_eq!(m.head_mac(), head);
    assert_eq!(m.database_id(), DB);
    let live = m.live_state();
    assert_eq!(
        live.checkpoints().keys().copied().collect::<Vec<_>>(),
        vec![Lsn::new(30)]
    );
    assert_eq!(
        live.segments().keys().copied().collect::<Vec<_>>(),
        vec![SegmentSeq::new(1), SegmentSeq::new(2)]
    );
    assert_eq!(live.current_epoch(), Some(KeyEpoch::new(2)));
    assert_eq!(live.env_hash(), Some(("prod", &[2; 32])));
    assert_eq!(live.backups().len(), 1);
    assert_eq!(live.created_at_unix_ms(), Some(1_000));
}

#[test]
fn reopened_manifest_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = write_manifest(dir.path(), &history()[..5]);
    drop(m);
    let (mut m, _) = Manifest::open(&aedb_fs::RealFs::shared(), &path, key()).unwrap();
    for r in &history()[5..] {
        m.append(r).unwrap();
    }
    drop(m);
    let (_, records) = Manifest::open(&aedb_fs::RealFs::shared(), &path, key()).unwrap();
    assert_eq!(records, history());
}

#[test]
fn every_byte_flip_fails_to_open() {
    let (bytes, _) = sample_bytes();
    for i in 0..bytes.len() {
        for x in [0x01u8, 0x80, 0xFF] {
            let mut t = bytes.clone();
            t[i] ^= x;
            assert!(verify(&t).is_err(), "flip {x:#x} at byte {i} accepted");
        }
    }
}

#[test]
fn flips_name_the_record_index_and_offset() {
    let (bytes, offsets) = sample_bytes();
    // A body byte of record 4 → the chain breaks exactly there.
    let mut t = bytes.clone();
    t[offsets[4] as usize + FRAME_PREFIX_LEN + 2] ^= 1;
    match verify(&t) {
        Err(ManifestError::ChainBroken { index, offset, .. }) => {
            assert_eq!((index, offset), (4, offsets[4]))
        }
        r => panic!("{r:?}"),
    }
    // A length byte of record 3 → corrupt frame, never mistaken for a torn tail.
    let mut t = bytes.clone();
    t[offsets[3] as usize] ^= 0x40;
    match verify(&t) {
        Err(ManifestError::BadFrame { index, offset, .. }) => {
            assert_eq!((index, offset), (3, offsets[3]))
        }
        r => panic!("{r:?}"),
    }
    // The last record's MAC → ChainBroken (a complete frame is never "torn").
    let mut t = bytes.clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    assert!(matches!(
        verify(&t),
        Err(ManifestError::ChainBroken { index: 12, .. })
    ));
    // The header's database id → header MAC fails.
    let mut t = bytes;
    t[20] ^= 1;
    assert!(matches!(
        verify(&t),
        Err(ManifestError::HeaderAuthFailed { .. })
    ));
}

fn frames(bytes: &[u8], offsets: &[u64]) -> Vec<Vec<u8>> {
    let mut ends: Vec<usize> = offsets[1..].iter().map(|&o| o as usize).collect();
    ends.push(bytes.len());
    offsets
        .iter()
        .zip(ends)
        .map(|(&s, e)| bytes[s as usize..e].to_vec())
        .collect()
}

#[test]
fn deleted_swapped_inserted_and_duplicated_records_fail() {
    let (bytes, offsets) = sample_bytes();
    let header = bytes[..offsets[0] as usize].to_vec();
    let f = frames(&bytes, &offsets);
    let rebuild = |order: &[usize]| {
        let mut out = header.clone();
        for &i in order {
            out.extend_from_slice(&f[i]);
        }
        out
    };
    let n = f.len();
    let all: Vec<usize> = (0..n).collect();
    for del in 0..n - 1 {
        let order: Vec<usize> = all.iter().copied().filter(|&i| i != del).collect();
        match verify(&rebuild(&order)) {
            Err(ManifestError::ChainBroken { index, .. }) => assert_eq!(index, del as u64),
            r => panic!("deleting record {del}: {r:?}"),
        }
    }
    for a in 0..n - 1 {
        let mut order = all.clone();
        order.swap(a, a + 1);
        assert!(
            matches!(verify(&rebuild(&order)), Err(ManifestError::ChainBroken { index, .. }) if index == a as u64),
            "swap {a}"
        );
    }
    let mut order = all.clone();
    order.insert(6, 2); // a copy of an earlier, authentic record
    assert!(matches!(
        verify(&rebuild(&order)),
        Err(ManifestError::ChainBroken { index: 6, .. })
    ));
    // Frames from another database's manifest (even under the same key) cannot be spliced
    // in: the chain starts from a header MAC that binds the database id.
    let dir = tempfile::tempdir().unwrap();
    let other_db = DatabaseId::from_bytes([0x0B; 16]);
    let mut other = Manifest::create(
        &aedb_fs::RealFs::shared(),
        &dir.path().join("OTHER"),
        other_db,
        key(),
    )
    .unwrap();
    other
        .append(&ManifestRecord::SegmentSealed {
            seq: SegmentSeq::new(0),
            first_lsn: Lsn::new(1),
            last_lsn: Lsn::new(10),
            sha256: [0; 32],
        })
        .unwrap();
    drop(other);
    let other_bytes = std::fs::read(dir.path().join("OTHER")).unwrap();
    let foreign = &other_bytes[offsets[0] as usize..];
    let mut spliced = header.clone();
    spliced.extend_from_slice(foreign);
    assert!(matches!(
        verify(&spliced),
        Err(ManifestError::ChainBroken { index: 0, .. })
    ));
    let mut spliced = rebuild(&all[..3]);
    spliced.extend_from_slice(foreign);
    assert!(matches!(
        verify(&spliced),
        Err(ManifestError::ChainBroken { index: 3, .. })
    ));
    // Replaying record 0 as record 1 breaks the chain.
    let mut dup = rebuild(&all[..1]);
    dup.extend_from_slice(&f[0]);
    assert!(matches!(
        verify(&dup),
        Err(ManifestError::ChainBroken { index: 1, .. })
    ));
}

#[test]
fn truncation_yields_an_error_or_exactly_a_verified_prefix() {
    let (bytes, offsets) = sample_bytes();
    let history = history();
    let boundaries: Vec<usize> = offsets.iter().map(|&o| o as usize).collect();
    for cut in 0..bytes.len() {
        match verify(&bytes[..cut]) {
            Ok(records) => {
                // Only a cut exactly at a record boundary opens (an older, valid chain:
                // undetectable without an external anchor, see the manifest docs).
                let k = boundaries
                    .iter()
                    .position(|&b| b == cut)
                    .expect("cut at a boundary");
                assert_eq!(records, history[..k]);
            }
            Err(ManifestError::TornTail {
                offset,
                valid_records,
                ..
            }) => {
                let k = valid_records as usize;
                assert_eq!(offset as usize, boundaries[k]);
                assert!(
                    cut > boundaries[k]
                        && cut < boundaries.get(k + 1).copied().unwrap_or(bytes.len())
                );
            }
            Err(ManifestError::BadHeader { .. }) => assert!(cut < offsets[0] as usize),
            Err(e) => panic!("cut at {cut}: unexpected {e}"),
        }
    }
}

#[test]
fn torn_tail_is_refused_by_open_and_cut_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = write_manifest(dir.path(), &history()[..4]);
    let good_len = m.len_bytes();
    drop(m);
    // Simulate a crash in the middle of appending record 4.
    let (frame_bytes, _) = sample_bytes();
    let full = std::fs::read(&path).unwrap();
    let partial = &frame_bytes[full.len()..full.len() + 11];
    std::fs::write(&path, [full.as_slice(), partial].concat()).unwrap();
    match Manifest::open(&aedb_fs::RealFs::shared(), &path, key()) {
        Err(ManifestError::TornTail {
            offset,
            len,
            valid_records,
            ..
        }) => assert_eq!((offset, len, valid_records), (good_len, 11, 4)),
        r => panic!("{r:?}"),
    }
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        good_len + 11,
        "strict open changes nothing"
    );
    let (mut m, records, torn) =
        Manifest::open_and_repair_torn_tail(&aedb_fs::RealFs::shared(), &path, key()).unwrap();
    assert_eq!(records, history()[..4]);
    assert_eq!(torn.map(|t| (t.offset, t.len)), Some((good_len, 11)));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    for r in &history()[4..] {
        m.append(r).unwrap();
    }
    drop(m);
    assert_eq!(
        Manifest::open(&aedb_fs::RealFs::shared(), &path, key())
            .unwrap()
            .1,
        history()
    );
}

#[test]
fn zero_filled_tail_is_torn_not_corrupt() {
    let (bytes, _) = sample_bytes();
    let mut t = bytes.clone();
    t.extend_from_slice(&[0u8; 100]);
    assert!(matches!(
        verify(&t),
        Err(ManifestError::TornTail {
            len: 100,
            valid_records: 13,
            ..
        })
    ));
}

/// Found by the power-loss exploration: the final append's first sector piece never
/// reached the disk while its second did (a crash between its write and its fdatasync),
/// so its length field reads as zeros with data after it. That is a torn append, cut like
/// any torn tail; a flipped length bit, or zeros in a frame followed by a later record,
/// stays corruption.
#[test]
fn a_final_append_whose_first_sector_piece_was_lost_is_torn() {
    let (bytes, offsets) = sample_bytes();
    // The first record whose frame crosses a sector boundary becomes the final append.
    let mut ends: Vec<usize> = offsets.iter().skip(1).map(|&o| o as usize).collect();
    ends.push(bytes.len());
    let k = (0..offsets.len())
        .find(|&k| (offsets[k] as usize + 1).next_multiple_of(512) < ends[k])
        .expect("some frame crosses a sector boundary");
    let start = offsets[k] as usize;
    let padded = bytes[..ends[k]].to_vec();
    let boundary = (start + 1).next_multiple_of(512);
    let mut lost_head = padded.clone();
    lost_head[start..boundary].fill(0);
    assert!(matches!(
        verify(&lost_head),
        Err(ManifestError::TornTail { offset, valid_records, .. })
            if offset == start as u64 && valid_records == k as u64
    ));
    // One flipped bit of the length field is corruption, not a lost piece.
    let mut flipped = padded.clone();
    flipped[start] ^= 0x01;
    assert!(matches!(
        verify(&flipped),
        Err(ManifestError::BadFrame { .. })
    ));
    // Zeros in a frame that has a record after it: corruption of an acknowledged record.
    assert!(k >= 1, "a record before the final one");
    let before = offsets[k - 1] as usize;
    let mut middle = padded;
    middle[before + 8..before + 16].fill(0);
    assert!(matches!(
        verify(&middle),
        Err(ManifestError::ChainBroken { .. } | ManifestError::BadRecord { .. })
    ));
}

#[test]
fn replaying_an_older_copy_is_not_detectable_without_an_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = write_manifest(dir.path(), &history()[..6]);
    let old_head = m.head_mac();
    drop(m);
    let old_copy = std::fs::read(&path).unwrap();
    let (mut m, _) = Manifest::open(&aedb_fs::RealFs::shared(), &path, key()).unwrap();
    for r in &history()[6..] {
        m.append(r).unwrap();
    }
    let new_head = m.head_mac();
    drop(m);
    std::fs::write(&path, &old_copy).unwrap();
    // The old copy is a valid chain: it opens and yields the older state …
    let (m, records) = Manifest::open(&aedb_fs::RealFs::shared(), &path, key()).unwrap();
    assert_eq!(records, history()[..6]);
    assert!(m.live_state().checkpoints().contains_key(&Lsn::new(20)));
    // … and only an externally stored head MAC reveals the rollback.
    assert_eq!(m.head_mac(), old_head);
    assert_ne!(m.head_mac(), new_head);
}

#[test]
fn wrong_key_fails_at_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = write_manifest(dir.path(), &history());
    drop(m);
    let err = Manifest::open(
        &aedb_fs::RealFs::shared(),
        &path,
        SecretKey::new([0x78; 32]),
    )
    .unwrap_err();
    assert!(matches!(err, ManifestError::HeaderAuthFailed { .. }));
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("MANIFEST") && !text.contains("120, 120"),
        "{text}"
    );
    assert!(
        format!(
            "{:?}",
            Manifest::open(&aedb_fs::RealFs::shared(), &path, key())
                .unwrap()
                .0
        )
        .contains("record_count")
    );
}

#[test]
fn create_refuses_existing_and_short_files_are_bad_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = write_manifest(dir.path(), &[]);
    drop(m);
    assert!(matches!(
        Manifest::create(&aedb_fs::RealFs::shared(), &path, DB, key()),
        Err(ManifestError::AlreadyExists { .. })
    ));
    let (m, records) = Manifest::open(&aedb_fs::RealFs::shared(), &path, key()).unwrap();
    assert!(records.is_empty());
    assert_eq!(m.record_count(), 0);
    std::fs::write(&path, b"AEDBMN").unwrap();
    assert!(matches!(
        Manifest::open(&aedb_fs::RealFs::shared(), &path, key()),
        Err(ManifestError::BadHeader { offset: 6, .. })
    ));
}

#[test]
fn inconsistent_appends_are_rejected_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut m) = write_manifest(dir.path(), &history()[..3]);
    let len = m.len_bytes();
    let head = m.head_mac();
    let bad = [
        ManifestRecord::SegmentRetired {
            seq: SegmentSeq::new(99),
        },
        ManifestRecord::CheckpointRetired { lsn: Lsn::new(5) },
        ManifestRecord::DatabaseCreated {
            database_id: DB,
            created_at_unix_ms: 0,
        },
        ManifestRecord::KeyEpochChanged {
            epoch: KeyEpoch::FIRST,
            master_key_id: "again".into(),
            at_unix_ms: 0,
        },
        ManifestRecord::Compacted {
            replaces_head: [0; 32],
            records_replaced: 0,
            at_unix_ms: 0,
        },
    ];
    for r in &bad {
        assert!(
            matches!(m.append(r), Err(ManifestError::Rejected { .. })),
            "{r:?}"
        );
    }
    let bad_name = ManifestRecord::CheckpointAdded {
        lsn: Lsn::new(1),
        epoch: KeyEpoch::FIRST,
        file_name: "../escape".into(),
        sha256: [0; 32],
        len: 0,
    };
    assert!(matches!(
        m.append(&bad_name),
        Err(ManifestError::InvalidRecord { .. })
    ));
    assert_eq!((m.len_bytes(), m.head_mac()), (len, head));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    let other_db = DatabaseId::from_bytes([1; 16]);
    let dir2 = tempfile::tempdir().unwrap();
    let mut m2 = Manifest::create(
        &aedb_fs::RealFs::shared(),
        &dir2.path().join("M"),
        other_db,
        key(),
    )
    .unwrap();
    assert!(matches!(
        m2.append(&history()[0]),
        Err(ManifestError::Rejected {
            source: LiveStateError::DatabaseMismatch { .. },
            ..
        })
    ));
}

#[test]
fn compaction_preserves_live_state_and_links_the_old_head() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut m) = write_manifest(dir.path(), &history());
    let before = m.live_state().clone();
    let old_head = m.head_mac();
    let old_len = m.len_bytes();
    let summary = before.to_records();
    m.compact(9_999, &summary).unwrap();
    assert!(m.len_bytes() < old_len);
    assert_eq!(m.live_state().to_records(), before.to_records());
    assert!(!dir.path().join("MANIFEST.tmp").exists());
    // Appending after compaction continues the new chain.
    let extra = ManifestRecord::SegmentRetired {
        seq: SegmentSeq::new(1),
    };
    m.append(&extra).unwrap();
    let head = m.head_mac();
    drop(m);
    let (m, records) = Manifest::open(&aedb_fs::RealFs::shared(), &path, key()).unwrap();
    assert_eq!(m.head_mac(), head);
    assert_eq!(
        records[0],
        ManifestRecord::Compacted {
            replaces_head: old_head,
            records_replaced: history().len() as u64,
            at_unix_ms: 9_999,
        }
    );
    assert_eq!(records[1..records.len() - 1], summary[..]);
    assert_eq!(
        m.live_state().compacted_from().map(|c| c.replaces_head),
        Some(old_head)
    );
    assert!(!m.live_state().segments().contains_key(&SegmentSeq::new(1)));
    // The compacted file is as tamper-evident as any other.
    let bytes = std::fs::read(&path).unwrap();
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x10;
        assert!(
            verify(&t).is_err(),
            "flip at {i} of compacted manifest accepted"
        );
    }
}

#[test]
fn compaction_rejects_inconsistent_summaries_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut m) = write_manifest(dir.path(), &history());
    let before = std::fs::read(&path).unwrap();
    let mut summary = m.live_state().to_records();
    summary.push(ManifestRecord::Compacted {
        replaces_head: [0; 32],
        records_replaced: 0,
        at_unix_ms: 0,
    });
    assert!(matches!(
        m.compact(1, &summary),
        Err(ManifestError::Rejected { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    m.append(&ManifestRecord::SegmentRetired {
        seq: SegmentSeq::new(1),
    })
    .unwrap();
}

#[test]
fn read_manifest_reports_torn_tail_without_modifying() {
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = write_manifest(dir.path(), &history()[..2]);
    drop(m);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[7, 0, 0]);
    std::fs::write(&path, &bytes).unwrap();
    let v = read_manifest(&aedb_fs::RealFs, &path, &key()).unwrap();
    assert_eq!(v.records, history()[..2]);
    assert_eq!(v.torn_tail.map(|t| t.len), Some(3));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

fn arb_record() -> impl Strategy<Value = ManifestRecord> {
    let text = "[a-z0-9/ _.-]{0,40}";
    let h = any::<[u8; 32]>();
    prop_oneof![
        (any::<[u8; 16]>(), any::<u64>()).prop_map(|(d, t)| ManifestRecord::DatabaseCreated {
            database_id: DatabaseId::from_bytes(d),
            created_at_unix_ms: t
        }),
        (
            any::<u64>(),
            any::<u32>(),
            "[a-z0-9.]{1,60}",
            h,
            any::<u64>()
        )
            .prop_filter("plain name", |(_, _, n, _, _)| n != "." && n != "..")
            .prop_map(
                |(l, e, file_name, sha256, len)| ManifestRecord::CheckpointAdded {
                    lsn: Lsn::new(l),
                    epoch: KeyEpoch::new(e),
                    file_name,
                    sha256,
                    len
                }
            ),
        (any::<u64>(), any::<u64>(), any::<u64>(), h).prop_map(|(seq, a, b, sha256)| {
            ManifestRecord::SegmentSealed {
                seq: SegmentSeq::new(seq),
                first_lsn: Lsn::new(a),
                last_lsn: Lsn::new(b),
                sha256,
            }
        }),
        any::<u64>().prop_map(|seq| ManifestRecord::SegmentRetired {
            seq: SegmentSeq::new(seq)
        }),
        any::<u64>().prop_map(|l| ManifestRecord::CheckpointRetired { lsn: Lsn::new(l) }),
        (any::<u32>(), text, any::<u64>()).prop_map(|(e, id, at)| {
            ManifestRecord::KeyEpochChanged {
                epoch: KeyEpoch::new(e),
                master_key_id: id,
                at_unix_ms: at,
            }
        }),
        (text, any::<u64>(), any::<u64>(), h, any::<u64>()).prop_map(|(id, a, b, m, at)| {
            ManifestRecord::BackupTaken {
                backup_id: id,
                first_lsn: Lsn::new(a),
                last_lsn: Lsn::new(b),
                manifest_sha256: m,
                at_unix_ms: at,
            }
        }),
        (text, h).prop_map(|(p, hash)| ManifestRecord::ServerEnvHash {
            profile_id: p,
            hash
        }),
        (h, any::<u64>(), any::<u64>()).prop_map(|(r, n, at)| ManifestRecord::Compacted {
            replaces_head: r,
            records_replaced: n,
            at_unix_ms: at
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn record_codec_round_trips(r in arb_record()) {
        let body = r.encode().unwrap();
        prop_assert_eq!(body[0], r.kind().id());
        prop_assert_eq!(RecordKind::from_id(body[0]), Some(r.kind()));
        prop_assert_eq!(ManifestRecord::decode(&body).unwrap(), r);
        // Every strict prefix fails.
        for cut in 0..body.len() {
            prop_assert!(ManifestRecord::decode(&body[..cut]).is_err());
        }
    }

    #[test]
    fn record_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = ManifestRecord::decode(&bytes);
    }

    #[test]
    fn manifest_verifier_never_panics_on_arbitrary_bytes(
        tail in prop::collection::vec(any::<u8>(), 0..300),
        with_header in any::<bool>(),
    ) {
        let (sample, offsets) = sample_bytes_cached();
        let mut bytes = if with_header { sample[..offsets[0] as usize].to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        let _ = verify_manifest_bytes(Path::new("x"), &bytes, &key());
    }

    #[test]
    fn mutated_manifests_open_only_to_a_prefix(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let (sample, _) = sample_bytes_cached();
        let mut t = sample.clone();
        for (i, x) in edits { let i = i.index(t.len()); t[i] = x; }
        let t = &t[..cut.index(t.len() + 1)];
        if let Ok(v) = verify_manifest_bytes(Path::new("x"), t, &key()) {
            // Whatever verifies is authentic history: a prefix of what was written.
            prop_assert!(v.records.len() <= history().len());
            prop_assert_eq!(&v.records[..], &history()[..v.records.len()]);
            prop_assert_eq!(&t[..v.valid_len as usize], &sample[..v.valid_len as usize]);
        }
    }
}

fn sample_bytes_cached() -> &'static (Vec<u8>, Vec<u64>) {
    static CELL: std::sync::OnceLock<(Vec<u8>, Vec<u64>)> = std::sync::OnceLock::new();
    CELL.get_or_init(sample_bytes)
}

#[test]
fn mac_len_and_frame_prefix_are_as_documented() {
    let (bytes, offsets) = sample_bytes();
    let f = frames(&bytes, &offsets);
    for (frame, r) in f.iter().zip(history()) {
        assert_eq!(
            frame.len(),
            FRAME_PREFIX_LEN + r.encode().unwrap().len() + MAC_LEN
        );
    }
}

#[test]
fn largest_records_fit_the_frame_limit_and_round_trip() {
    use aedb_manifest::file::MAX_RECORD_BODY_LEN;
    use aedb_manifest::{MAX_FILE_NAME_LEN, MAX_TEXT_LEN};
    let long = "k".repeat(MAX_TEXT_LEN);
    let records = vec![
        ManifestRecord::DatabaseCreated {
            database_id: DB,
            created_at_unix_ms: u64::MAX,
        },
        ManifestRecord::KeyEpochChanged {
            epoch: KeyEpoch::new(u32::MAX),
            master_key_id: long.clone(),
            at_unix_ms: u64::MAX,
        },
        ManifestRecord::CheckpointAdded {
            lsn: Lsn::MAX,
            epoch: KeyEpoch::new(u32::MAX),
            file_name: "n".repeat(MAX_FILE_NAME_LEN),
            sha256: [0xFF; 32],
            len: u64::MAX,
        },
        ManifestRecord::BackupTaken {
            backup_id: long.clone(),
            first_lsn: Lsn::ZERO,
            last_lsn: Lsn::MAX,
            manifest_sha256: [0xFF; 32],
            at_unix_ms: u64::MAX,
        },
        ManifestRecord::ServerEnvHash {
            profile_id: long,
            hash: [0xFF; 32],
        },
    ];
    for r in &records {
        assert!(r.encode().unwrap().len() <= MAX_RECORD_BODY_LEN as usize);
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = write_manifest(dir.path(), &records);
    drop(m);
    assert_eq!(
        Manifest::open(&aedb_fs::RealFs::shared(), &path, key())
            .unwrap()
            .1,
        records
    );
}
