//! The manifest parsers *behind* the HMAC chain: a manifest whose records carry
//! fuzzer-chosen bodies with valid MACs (golden manifest key and database), so
//! `verify_manifest_bytes` gets past the header MAC and every record MAC and runs the
//! record decoder and the live-state fold on arbitrary bodies.
//!
//! Input: `flags (u8) || tamper (u16 LE) || bodies` (each `u16 LE length || bytes`, see
//! `aedb_fuzz::split_pieces`). Flag bit 0 puts a library-encoded `DatabaseCreated`
//! record first (most records are only consistent after it); bit 1 cuts the last frame
//! short (a torn tail); bit 2 XORs one byte at `64 + tamper % (len - 64)` (never
//! combined with bit 1).
//!
//! Asserted: the verifier returns exactly what an independent walk over the bodies
//! predicts (the first out-of-range length is `BadFrame`, the first body that does not
//! decode is `BadRecord` with `ManifestRecord::decode`'s error, the first contradicting
//! record is `Inconsistent` with `LiveState::apply`'s error, at that record's index and
//! offset; otherwise `Ok` with exactly those records and a torn tail where one was cut);
//! every body that decodes re-encodes to the same bytes; a successful result passes
//! `aedb_fuzz::check_verified_manifest`; MACs never fail on the chain built here
//! (`ChainBroken` would mean the verifier and the format disagree); and a manifest with
//! one byte changed never verifies.
#![no_main]
use std::path::Path;

use aedb_manifest::file::MAX_RECORD_BODY_LEN;
use aedb_manifest::{LiveState, ManifestError, ManifestRecord, verify_manifest_bytes};
use aedb_fuzz::{
    FUZZ_DB, MANIFEST_KEY, chain_manifest, check_verified_manifest, manifest_key, split_pieces,
};
use libfuzzer_sys::fuzz_target;

/// What the verifier must report, from an independent walk over the bodies.
#[derive(Debug)]
enum Expected {
    Ok(Vec<ManifestRecord>),
    BadFrame(u64),
    BadRecord(u64, aedb_manifest::RecordError),
    Inconsistent(u64, aedb_manifest::LiveStateError),
}

fn expect(bodies: &[Vec<u8>]) -> Expected {
    let mut live = LiveState::new(FUZZ_DB);
    let mut records = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let i = i as u64;
        if body.is_empty() || body.len() > MAX_RECORD_BODY_LEN as usize {
            return Expected::BadFrame(i);
        }
        let record = match ManifestRecord::decode(body) {
            Ok(record) => record,
            Err(e) => return Expected::BadRecord(i, e),
        };
        assert_eq!(
            record.encode().as_deref(),
            Ok(&body[..]),
            "record body is not canonical"
        );
        if let Err(e) = live.apply(i, &record) {
            return Expected::Inconsistent(i, e);
        }
        records.push(record);
    }
    Expected::Ok(records)
}

fuzz_target!(|data: &[u8]| {
    let [flags, t0, t1, rest @ ..] = data else {
        return;
    };
    let tamper = u16::from_le_bytes([*t0, *t1]);
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    if flags & 1 != 0 {
        let created = ManifestRecord::DatabaseCreated {
            database_id: FUZZ_DB,
            created_at_unix_ms: 1_700_000_000_000,
        };
        bodies.push(created.encode().expect("DatabaseCreated encodes"));
    }
    bodies.extend(split_pieces(rest).into_iter().map(<[u8]>::to_vec));

    let key = manifest_key();
    let chained = chain_manifest(&MANIFEST_KEY, FUZZ_DB, &bodies);
    let path = Path::new("MANIFEST");
    let mut bytes = chained.bytes.clone();
    let mut expected = expect(&bodies);

    // Cut the last frame short: a torn tail, when every frame before it verifies and its
    // own length field is in range (an out-of-range one is BadFrame, never torn).
    let mut torn = None;
    if flags & 2 != 0
        && let Some(last) = bodies.last()
        && (1..=MAX_RECORD_BODY_LEN as usize).contains(&last.len())
    {
        let start = *chained.offsets.last().expect("one offset per body") as usize;
        let keep = 1 + usize::from(tamper) % (bytes.len() - start - 1);
        bytes.truncate(start + keep);
        torn = Some((start as u64, keep as u64));
        expected = expect(&bodies[..bodies.len() - 1]);
    }

    let verified = verify_manifest_bytes(path, &bytes, &key);
    match (&expected, &verified) {
        (Expected::Ok(records), Ok(v)) => {
            assert_eq!(&v.records, records);
            assert_eq!(v.database_id, FUZZ_DB);
            match torn {
                None => {
                    assert_eq!(v.torn_tail, None);
                    assert_eq!(v.record_offsets, chained.offsets);
                    assert_eq!(
                        v.head_mac,
                        chained.macs.last().copied().unwrap_or(chained.header_mac)
                    );
                }
                Some((offset, len)) => {
                    let t = v.torn_tail.expect("cut frame reported as torn");
                    assert_eq!((t.offset, t.len), (offset, len));
                }
            }
            check_verified_manifest(&bytes, &key, v);
        }
        (Expected::BadFrame(i), Err(ManifestError::BadFrame { index, offset, .. })) => {
            assert_eq!((index, offset), (i, &chained.offsets[*i as usize]));
        }
        (
            Expected::BadRecord(i, e),
            Err(ManifestError::BadRecord {
                index,
                offset,
                source,
                ..
            }),
        ) => {
            assert_eq!(
                (index, offset, source),
                (i, &chained.offsets[*i as usize], e)
            );
        }
        (
            Expected::Inconsistent(i, e),
            Err(ManifestError::Inconsistent {
                index,
                offset,
                source,
                ..
            }),
        ) => {
            assert_eq!(
                (index, offset, source),
                (i, &chained.offsets[*i as usize], e)
            );
        }
        (expected, got) => panic!("verifier disagrees: expected {expected:?}, got {got:?}"),
    }

    if flags & 4 != 0 && flags & 2 == 0 && bytes.len() > 64 {
        let mut bad = bytes.clone();
        let at = 64 + usize::from(tamper) % (bad.len() - 64);
        bad[at] ^= (flags >> 3) | 1;
        // Only a change that leaves the zeros of a lost sector piece in the final frame
        // (then indistinguishable from a torn append) may verify, cut there.
        match verify_manifest_bytes(path, &bad, &key) {
            Err(_) => {}
            Ok(v) => {
                let t = v.torn_tail.expect("a manifest with a changed byte verified whole");
                assert!(
                    t.offset <= at as u64
                        && aedb_manifest::file::is_torn_final_append(
                            &bad,
                            t.offset as usize
                        ),
                    "a manifest with a changed byte verified"
                );
            }
        }
    }
});
