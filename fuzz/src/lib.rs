//! Shared pieces of the aedb fuzz targets and of the seed-corpus generator
//! (`examples/gen_corpus.rs`): the fixed keys and ids every target uses, the simple
//! length-prefixed framing that turns one fuzz input into several byte strings, and
//! *independent* (test-side) re-implementations of the containers whose library encoders
//! only accept well-formed contents:
//!
//! * [`seal_raw_batch`] seals arbitrary plaintext as a WAL `SealedBatch` frame (the
//!   library's `seal_batch` always encodes well-formed records itself);
//! * [`chain_manifest`] MACs arbitrary record bodies into a manifest (the library's
//!   `encode_frame` takes a typed `ManifestRecord`);
//! * [`render_audit_jsonl`] writes audit rows the way the engine's (crate-private)
//!   exporter does.
//!
//! It also holds the version-aware canonicity checks of the model's decoders
//! ([`assert_record_canonical`], [`assert_snapshot_canonical`]).
//!
//! Each follows `docs/FORMAT.md`; a disagreement with the library shows up as an
//! authentication failure on input the target sealed itself, which the targets assert
//! never happens.

use aedb::{AuditRow, DatabaseId};
use aedb_keys::SecretKey;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Key of every sealed or MACed container the WAL and checkpoint targets build: the
/// golden fixtures' `0x42 * 32` (checkpoint golden key, engine WAL golden key).
pub const FUZZ_KEY: [u8; 32] = aedb_checkpoint::GOLDEN_CHECKPOINT_KEY;
/// Manifest HMAC key: the golden manifest key (`0x24 * 32`).
pub const MANIFEST_KEY: [u8; 32] = aedb_manifest::GOLDEN_MANIFEST_KEY;
/// Database id bound into every container: the golden fixtures' `a0..af`.
pub const FUZZ_DB: DatabaseId = aedb_checkpoint::GOLDEN_DATABASE_ID;
/// WAL segment the sealed-batch targets bind batches to (the engine golden batch's).
pub const WAL_SEQ: u64 = 3;
/// WAL key epoch of the sealed-batch targets (the engine golden batch's).
pub const WAL_EPOCH: u32 = 7;
/// Base nonce of sealed batches and checkpoints built by the targets (the engine golden
/// batch's `0x60 * 24`). Reusing a nonce is harmless here: nothing is secret.
pub const FUZZ_NONCE: [u8; 24] = [0x60; 24];

/// The fuzz key as a [`SecretKey`].
pub fn fuzz_key() -> SecretKey {
    SecretKey::new(FUZZ_KEY)
}

/// The manifest key as a [`SecretKey`].
pub fn manifest_key() -> SecretKey {
    SecretKey::new(MANIFEST_KEY)
}

/// Splits `data` into pieces, each `len (u16 LE) || len bytes`; a piece whose declared
/// length runs past the end takes the rest, and a lone trailing byte is a one-byte piece.
/// [`join_pieces`] is the inverse (for pieces of at most `u16::MAX` bytes).
pub fn split_pieces(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 2 {
            out.push(data);
            break;
        }
        let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    out
}

/// Joins pieces in the format [`split_pieces`] reads.
///
/// # Panics
/// If a piece is longer than `u16::MAX` bytes (the generator's seeds never are).
pub fn join_pieces<P: AsRef<[u8]>>(pieces: &[P]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        let piece = piece.as_ref();
        let len = u16::try_from(piece.len()).expect("piece longer than u16::MAX");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// Length of the plaintext header of a sealed-batch payload.
pub const SEALED_HEADER_LEN: usize = 42;

/// Seals `plaintext` (arbitrary bytes claimed to hold `count` records) as one complete
/// `SealedBatch` WAL frame, exactly as `docs/FORMAT.md` ("Sealed batch") specifies:
/// frame header (payload_len, lsn = first_lsn + count - 1, kind 2) || version 1 ||
/// algorithm 1 || epoch || first_lsn || count || nonce || XChaCha20-Poly1305(plaintext)
/// || tag || CRC-32, with AAD = `"aedb-wal sealed-batch v1\0" || db || seq ||
/// frame header || payload[0..42]`. `None` if `first_lsn + count - 1` overflows.
#[allow(clippy::too_many_arguments)]
pub fn seal_raw_batch(
    key: &[u8; 32],
    epoch: u32,
    db: DatabaseId,
    seq: u64,
    first_lsn: u64,
    count: u32,
    nonce: [u8; 24],
    plaintext: &[u8],
) -> Option<Vec<u8>> {
    let last = first_lsn.checked_add(u64::from(count).checked_sub(1)?)?;
    let payload_len = u32::try_from(SEALED_HEADER_LEN + plaintext.len() + 16).ok()?;
    let mut frame_header = [0u8; 16];
    frame_header[0..4].copy_from_slice(&payload_len.to_le_bytes());
    frame_header[4..12].copy_from_slice(&last.to_le_bytes());
    frame_header[12] = 2;
    let mut header = [0u8; SEALED_HEADER_LEN];
    header[0] = 1;
    header[1] = 1;
    header[2..6].copy_from_slice(&epoch.to_le_bytes());
    header[6..14].copy_from_slice(&first_lsn.to_le_bytes());
    header[14..18].copy_from_slice(&count.to_le_bytes());
    header[18..42].copy_from_slice(&nonce);
    let mut aad = Vec::with_capacity(25 + 16 + 8 + 16 + SEALED_HEADER_LEN);
    aad.extend_from_slice(b"aedb-wal sealed-batch v1\0");
    aad.extend_from_slice(db.as_bytes());
    aad.extend_from_slice(&seq.to_le_bytes());
    aad.extend_from_slice(&frame_header);
    aad.extend_from_slice(&header);
    let mut body = plaintext.to_vec();
    let tag = XChaCha20Poly1305::new(Key::from_slice(key))
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut body)
        .ok()?;
    let mut frame = Vec::with_capacity(16 + payload_len as usize + 4);
    frame.extend_from_slice(&frame_header);
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&body);
    frame.extend_from_slice(&tag);
    let crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    Some(frame)
}

/// Parses a sealed batch's plaintext as exactly `count` records (`kind 1 || len u32 ||
/// payload`), independently of the WAL crate: the reference the `wal_sealed_records`
/// target compares `open_sealed_batch` with. `None` if it is anything else.
pub fn parse_batch_records(plaintext: &[u8], count: u32) -> Option<Vec<&[u8]>> {
    let mut rest = plaintext;
    let mut out = Vec::new();
    for _ in 0..count {
        let (&kind, after) = rest.split_first()?;
        if kind != 1 || after.len() < 4 {
            return None;
        }
        let len = u32::from_le_bytes([after[0], after[1], after[2], after[3]]) as usize;
        let body = after.get(4..4 + len)?;
        out.push(body);
        rest = &after[4 + len..];
    }
    rest.is_empty().then_some(out)
}

/// A manifest image built by [`chain_manifest`].
#[derive(Clone, Debug)]
pub struct ChainedManifest {
    /// The whole file: header and one frame per body.
    pub bytes: Vec<u8>,
    /// Byte offset of each frame.
    pub offsets: Vec<u64>,
    /// The header MAC (`prev` of record 0).
    pub header_mac: [u8; 32],
    /// The MAC of each frame.
    pub macs: Vec<[u8; 32]>,
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Builds a manifest for `db` whose records are the raw `bodies` (any bytes, any length
/// up to `u32::MAX`), each framed as `body_len u32 || CRC-32(body_len) || body ||
/// HMAC-SHA256(key, prev_mac || body_len || len_check || body)` after the
/// library-encoded header, per the manifest module docs / `docs/FORMAT.md`.
pub fn chain_manifest<B: AsRef<[u8]>>(
    key: &[u8; 32],
    db: DatabaseId,
    bodies: &[B],
) -> ChainedManifest {
    let header = aedb_manifest::file::encode_manifest_header(db, &SecretKey::new(*key));
    let mut header_mac = [0u8; 32];
    header_mac.copy_from_slice(&header[32..64]);
    let mut bytes = header.to_vec();
    let mut prev = header_mac;
    let mut offsets = Vec::new();
    let mut macs = Vec::new();
    for body in bodies {
        let body = body.as_ref();
        offsets.push(bytes.len() as u64);
        let start = bytes.len();
        let n = (body.len() as u32).to_le_bytes();
        bytes.extend_from_slice(&n);
        bytes.extend_from_slice(&crc32fast::hash(&n).to_le_bytes());
        bytes.extend_from_slice(body);
        let mac = hmac(key, &[&prev, &bytes[start..]]);
        bytes.extend_from_slice(&mac);
        macs.push(mac);
        prev = mac;
    }
    ChainedManifest {
        bytes,
        offsets,
        header_mac,
        macs,
    }
}

/// Renders audit rows as the engine's JSON-lines export does (one compact object per
/// row, `mac` in hex), so the `audit_export` target can re-export what it parsed.
pub fn render_audit_jsonl(database: DatabaseId, rows: &[AuditRow]) -> String {
    let mut out = String::new();
    for r in rows {
        let line = serde_json::json!({
            "database_id": database.to_string(),
            "table": r.table.name(),
            "seq": r.seq,
            "at_micros": r.at.as_micros(),
            "key_id": r.key_id,
            "caller": r.caller,
            "kind": r.kind,
            "subject": r.subject,
            "detail": r.detail,
            "mac": hex::encode(r.mac),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// Whether every byte is zero.
pub fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Checks everything a successful `verify_manifest_bytes(data)` under `key` claims:
///
/// * canonical: the library's own header and frame encoders, chained from the header
///   MAC, rebuild `data[..valid_len]` byte for byte, at the reported offsets, ending at
///   the reported head MAC;
/// * a reported torn tail is the whole rest of the file and really is torn (all zeros,
///   shorter than a frame prefix, or a length-checked frame that is incomplete);
/// * the live state is the fold of the records (`LiveState::from_records`);
/// * compaction works on it: folding `Compacted` plus the state's own summary
///   (`LiveState::to_records`, as the manifest actor compacts) succeeds and restates the
///   same live set.
pub fn check_verified_manifest(data: &[u8], key: &SecretKey, v: &aedb_manifest::VerifiedManifest) {
    use aedb_manifest::file::{FRAME_PREFIX_LEN, MAC_LEN, MAX_RECORD_BODY_LEN};
    use aedb_manifest::{LiveState, ManifestRecord};

    let header = aedb_manifest::file::encode_manifest_header(v.database_id, key);
    assert_eq!(
        &header[..],
        &data[..header.len()],
        "manifest header is not canonical"
    );
    let mut prev = [0u8; MAC_LEN];
    prev.copy_from_slice(&header[32..]);
    let mut rebuilt = header.to_vec();
    assert_eq!(v.records.len(), v.record_offsets.len());
    for (record, offset) in v.records.iter().zip(&v.record_offsets) {
        assert_eq!(*offset, rebuilt.len() as u64, "record offset");
        let (frame, mac) = aedb_manifest::file::encode_frame(key, &prev, record)
            .expect("a verified record re-encodes");
        rebuilt.extend_from_slice(&frame);
        prev = mac;
    }
    assert_eq!(v.head_mac, prev, "head MAC");
    assert_eq!(v.valid_len, rebuilt.len() as u64, "valid length");
    assert!(
        rebuilt[..] == data[..rebuilt.len()],
        "verified manifest is not canonical"
    );
    let tail = &data[rebuilt.len()..];
    match v.torn_tail {
        None => assert!(tail.is_empty(), "bytes after the chain without a torn tail"),
        Some(torn) => {
            assert_eq!((torn.offset, torn.len), (v.valid_len, tail.len() as u64));
            assert!(!tail.is_empty());
            let shape_ok = all_zero(tail)
                || aedb_manifest::file::is_torn_final_append(data, rebuilt.len())
                || tail.len() < FRAME_PREFIX_LEN
                || (crc32fast::hash(&tail[..4]).to_le_bytes() == tail[4..8] && {
                    let n = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
                    (1..=MAX_RECORD_BODY_LEN).contains(&n)
                        && tail.len() < FRAME_PREFIX_LEN + n as usize + MAC_LEN
                });
            assert!(
                shape_ok,
                "a complete or corrupt frame reported as a torn tail"
            );
        }
    }
    let folded = LiveState::from_records(v.database_id, &v.records);
    assert_eq!(
        folded.as_ref(),
        Ok(&v.live),
        "live state is not the fold of the records"
    );

    let mut compacted = vec![ManifestRecord::Compacted {
        replaces_head: v.head_mac,
        records_replaced: v.records.len() as u64,
        at_unix_ms: 0,
    }];
    compacted.extend(v.live.to_records());
    let restated = LiveState::from_records(v.database_id, &compacted)
        .unwrap_or_else(|e| panic!("compaction of a verified manifest is refused: {e:?}"));
    let live = &v.live;
    assert_eq!(restated.database_id(), live.database_id());
    assert_eq!(restated.created_at_unix_ms(), live.created_at_unix_ms());
    assert_eq!(restated.checkpoints(), live.checkpoints());
    assert_eq!(restated.segments(), live.segments());
    assert_eq!(restated.key_epochs(), live.key_epochs());
    assert_eq!(restated.retired_epochs(), live.retired_epochs());
    assert_eq!(restated.backups(), live.backups());
    assert_eq!(restated.env_hash(), live.env_hash());
    assert_eq!(restated.current_epoch(), live.current_epoch());
    // Every restated record re-encodes (compaction writes them with `encode_frame`).
    for record in &compacted {
        record.encode().expect("a restated record encodes");
    }
}

/// Canonical decoding of a commit record across format versions: a record of the
/// current version re-encodes to exactly `bytes`; an older one (decode-only) re-encodes
/// as the current version, and that decodes back to the same record.
pub fn assert_record_canonical(bytes: &[u8], record: &aedb_model::CommitRecord) {
    let again = record.to_bytes();
    if bytes.first() == Some(&aedb_model::RECORD_VERSION) {
        assert_eq!(again, bytes, "commit record is not canonical");
    } else {
        assert_eq!(again.first(), Some(&aedb_model::RECORD_VERSION));
        let back = aedb_model::CommitRecord::decode(&again).expect("a re-encoded record decodes");
        assert_eq!(&back, record, "an old record does not survive re-encoding");
    }
}

/// [`assert_record_canonical`] for state snapshots (checkpoint payloads).
pub fn assert_snapshot_canonical(bytes: &[u8], state: &aedb_model::State) {
    let again = state
        .to_snapshot_bytes()
        .expect("a decoded state is in memory");
    if bytes.first() == Some(&aedb_model::SNAPSHOT_VERSION) {
        assert_eq!(again, bytes, "snapshot is not canonical");
    } else {
        assert_eq!(again.first(), Some(&aedb_model::SNAPSHOT_VERSION));
        let back =
            aedb_model::State::decode_snapshot(&again).expect("a re-encoded snapshot decodes");
        assert!(
            &back == state,
            "an old snapshot does not survive re-encoding"
        );
    }
}
