//! The commit-record codec: round trips, robustness against arbitrary and
//! truncated input, typed errors, and golden fixtures pinning formats v1 (decoded
//! forever) and v2 (written now).

mod common;

use std::sync::Arc;

use aedb_model::{
    ColumnDef, ColumnName, ColumnType, CommitRecord, Ddl, DecodeErrorKind, Effect, FieldError,
    IdempotencyKey, KvKey, KvValue, Namespace, ProjectName, RECORD_VERSION, Rejection,
    RejectionKind, RequestFingerprint, RequestStamp, TableName, TableSchema, Timestamp, Value,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn round_trip(rec in common::record()) {
        let bytes = rec.to_bytes();
        prop_assert_eq!(CommitRecord::decode(&bytes), Ok(rec));
    }

    #[test]
    fn every_truncation_errors(rec in common::record()) {
        let bytes = rec.to_bytes();
        for cut in 0..bytes.len() {
            prop_assert!(CommitRecord::decode(&bytes[..cut]).is_err(), "prefix of {} bytes decoded", cut);
        }
        let mut extra = bytes.clone();
        extra.push(0);
        let trailing = matches!(
            CommitRecord::decode(&extra),
            Err(e) if e.kind == DecodeErrorKind::TrailingBytes { count: 1 }
        );
        prop_assert!(trailing);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = CommitRecord::decode(&bytes);
        let mut versioned = vec![RECORD_VERSION];
        versioned.extend_from_slice(&bytes);
        if let Ok(rec) = CommitRecord::decode(&versioned) {
            // Whatever decodes re-encodes to the same bytes (the encoding is canonical).
            prop_assert_eq!(rec.to_bytes(), versioned);
        }
    }

    #[test]
    fn arbitrary_v1_bytes_survive_re_encoding(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut v1 = vec![aedb_model::OLDEST_RECORD_VERSION];
        v1.extend_from_slice(&bytes);
        if let Ok(rec) = CommitRecord::decode(&v1) {
            // Version 1 is decode-only: it re-encodes as the current version, to the
            // same record.
            let again = rec.to_bytes();
            prop_assert_eq!(again[0], RECORD_VERSION);
            prop_assert_eq!(CommitRecord::decode(&again), Ok(rec));
        }
    }

    #[test]
    fn arbitrary_snapshot_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = aedb_model::State::decode_snapshot(&bytes);
        let mut versioned = vec![aedb_model::SNAPSHOT_VERSION];
        versioned.extend_from_slice(&bytes);
        if let Ok(state) = aedb_model::State::decode_snapshot(&versioned) {
            prop_assert_eq!(state.to_snapshot_bytes().unwrap(), versioned);
        }
    }

    #[test]
    fn corrupted_bytes_never_panic(rec in common::record(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = rec.to_bytes();
        let i = pos.index(bytes.len());
        bytes[i] = byte;
        if let Ok(decoded) = CommitRecord::decode(&bytes) {
            prop_assert_eq!(decoded.to_bytes(), bytes);
        }
    }
}

#[test]
fn typed_decode_errors() {
    let kind = |b: &[u8]| CommitRecord::decode(b).unwrap_err().kind;
    assert_eq!(
        kind(&[]),
        DecodeErrorKind::UnexpectedEnd {
            needed: 1,
            remaining: 0
        }
    );
    assert_eq!(
        kind(&[9]),
        DecodeErrorKind::UnsupportedVersion {
            found: 9,
            supported: 2
        }
    );
    assert_eq!(
        kind(&[1, 7]),
        DecodeErrorKind::UnknownTag {
            what: "record kind",
            tag: 7
        }
    );
    assert_eq!(
        kind(&[1, 1, 2]),
        DecodeErrorKind::InvalidByte {
            what: "idempotency key flag",
            byte: 2
        }
    );
    // A huge effect count with no bytes behind it is refused before allocating.
    let e = CommitRecord::decode(&[1, 1, 0, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
    assert!(matches!(
        e.kind,
        DecodeErrorKind::CountTooLarge { what: "effect", .. }
    ));
    assert_eq!(e.offset, 7);
    // Empty idempotency key.
    assert!(matches!(
        kind(&[1, 2, 0, 0]),
        DecodeErrorKind::Domain(FieldError::Limit(
            aedb_model::LimitError::EmptyIdempotencyKey
        ))
    ));
    // Over-long idempotency key length prefix.
    assert!(matches!(
        kind(&[1, 2, 0xff, 0xff]),
        DecodeErrorKind::LengthTooLarge { .. }
    ));
    // A name with an invalid character.
    assert!(matches!(
        kind(&[1, 3, 1, 1, b' ']),
        DecodeErrorKind::Domain(FieldError::Name(aedb_model::NameError::InvalidChar { .. }))
    ));
    // A schema that decodes but is invalid (no primary key).
    let mut b = vec![1, 3, 3, 1, b'p', 1, b's', 1, b't'];
    b.extend_from_slice(&[1, 0, 1, b'c', 2, 0, 0, 0]);
    assert!(matches!(
        kind(&b),
        DecodeErrorKind::Domain(FieldError::Schema(aedb_model::SchemaError::EmptyPrimaryKey))
    ));
    // Bad column flags.
    let mut b = vec![1, 3, 3, 1, b'p', 1, b's', 1, b't'];
    b.extend_from_slice(&[1, 0, 1, b'c', 2, 4, 1, 0, 1, b'c']);
    assert!(matches!(
        kind(&b),
        DecodeErrorKind::InvalidByte {
            what: "column flags",
            byte: 4
        }
    ));
    // Invalid UTF-8 in a rejection message.
    assert!(matches!(
        kind(&[1, 2, 1, 0, b'k', 2, 1, 1, 0, 0xff]),
        DecodeErrorKind::InvalidUtf8 { .. }
    ));
    // Unknown rejection kind.
    assert!(matches!(
        kind(&[1, 2, 1, 0, b'k', 2, 99, 0, 0]),
        DecodeErrorKind::UnknownTag {
            what: "rejection kind",
            tag: 99
        }
    ));
}

/// The records of `records-v1.hex`: what version 1 could say (no request stamps).
fn golden_records_v1() -> Vec<CommitRecord> {
    let ns = Namespace::parse("bank", "eu").unwrap();
    let col = |n: &str| ColumnName::new(n).unwrap();
    let table = TableName::new("acct").unwrap();
    vec![
        CommitRecord::Ddl(Ddl::CreateProject {
            project: ProjectName::system(),
        }),
        CommitRecord::Ddl(Ddl::CreateScope { ns: ns.clone() }),
        CommitRecord::Ddl(Ddl::CreateTable {
            ns: ns.clone(),
            table: table.clone(),
            schema: TableSchema::new(
                vec![
                    ColumnDef::new(col("id"), ColumnType::U64),
                    ColumnDef::new(col("note"), ColumnType::Text).nullable(),
                ],
                vec![col("id")],
            )
            .unwrap(),
        }),
        CommitRecord::Ddl(Ddl::DropTable {
            ns: ns.clone(),
            table: table.clone(),
        }),
        CommitRecord::Commit {
            idempotency_key: Some(IdempotencyKey::new("req-1").unwrap()),
            request: None,
            effects: vec![
                Effect::KvPut {
                    ns: ns.clone(),
                    key: KvKey::new("k").unwrap(),
                    value: KvValue::new([0, 0, 0, 0, 0, 0, 0, 5]).unwrap(),
                },
                Effect::KvDelete {
                    ns: ns.clone(),
                    key: KvKey::new("old").unwrap(),
                },
                Effect::RowPut {
                    ns: ns.clone(),
                    table: table.clone(),
                    row: Arc::from(vec![
                        Value::Null,
                        Value::Bool(true),
                        Value::I64(-2),
                        Value::U64(3),
                        Value::U128(4),
                        Value::F64(1.5),
                        Value::Text("hé".into()),
                        Value::Bytes(vec![0, 255]),
                        Value::Timestamp(Timestamp::from_micros(-1)),
                    ]),
                },
                Effect::RowDelete {
                    ns: ns.clone(),
                    table,
                    pk: vec![Value::U64(7)],
                },
            ],
        },
        CommitRecord::Commit {
            idempotency_key: None,
            request: None,
            effects: vec![],
        },
        CommitRecord::Rejected {
            idempotency_key: IdempotencyKey::new("req-2").unwrap(),
            request: None,
            rejection: Rejection::AssertionFailed { index: 3 },
        },
        CommitRecord::Rejected {
            idempotency_key: IdempotencyKey::new("req-3").unwrap(),
            request: None,
            rejection: Rejection::failed(RejectionKind::Underflow, "u64 underflow"),
        },
    ]
}

/// A fixed request stamp for the v2 fixture.
fn stamp(byte: u8, at_unix_ms: u64) -> Option<RequestStamp> {
    Some(RequestStamp {
        fingerprint: RequestFingerprint::from_bytes([byte; 32]),
        at_unix_ms,
    })
}

/// The records of `records-v2.hex`: the v1 records with request stamps on every key
/// (what the writer logs now), plus a keyed commit with an explicit "unknown" stamp
/// (what a v1 record re-encodes to).
fn golden_records_v2() -> Vec<CommitRecord> {
    let mut records: Vec<CommitRecord> = golden_records_v1()
        .into_iter()
        .map(|r| match r {
            CommitRecord::Commit {
                idempotency_key: Some(k),
                effects,
                ..
            } => CommitRecord::Commit {
                idempotency_key: Some(k),
                request: stamp(0x11, 1_700_000_000_123),
                effects,
            },
            CommitRecord::Rejected {
                idempotency_key,
                rejection,
                ..
            } => CommitRecord::Rejected {
                idempotency_key,
                request: stamp(0x22, 1_700_000_000_456),
                rejection,
            },
            other => other,
        })
        .collect();
    records.push(CommitRecord::Commit {
        idempotency_key: Some(IdempotencyKey::new("req-4").unwrap()),
        request: None,
        effects: vec![],
    });
    records
}

fn fixture_lines(name: &str) -> Vec<String> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).expect("fixture file");
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Format v1 stays decodable forever: every line of `tests/fixtures/records-v1.hex`
/// decodes to its record (with no request stamps), and re-encodes as version 2 to
/// the same record.
#[test]
fn golden_fixture_v1_still_decodes() {
    let lines = fixture_lines("records-v1.hex");
    let records = golden_records_v1();
    assert_eq!(lines.len(), records.len());
    for (line, rec) in lines.iter().zip(&records) {
        let bytes = hex_decode(line);
        assert_eq!(bytes[0], 1, "a version-1 record");
        assert_eq!(CommitRecord::decode(&bytes).as_ref(), Ok(rec));
        let reencoded = rec.to_bytes();
        assert_eq!(reencoded[0], RECORD_VERSION);
        assert_eq!(CommitRecord::decode(&reencoded).as_ref(), Ok(rec));
    }
}

/// Format v2 is pinned byte for byte: one hex line per record in
/// `tests/fixtures/records-v2.hex`. Old fixtures must keep decoding forever.
#[test]
fn golden_fixture_v2() {
    let lines = fixture_lines("records-v2.hex");
    let records = golden_records_v2();
    assert_eq!(lines.len(), records.len());
    for (line, rec) in lines.iter().zip(&records) {
        let bytes = hex_decode(line);
        assert_eq!(
            hex_encode(&rec.to_bytes()),
            *line,
            "encoding of {rec:?} changed"
        );
        assert_eq!(CommitRecord::decode(&bytes).as_ref(), Ok(rec));
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Prints the current version's fixture lines (run with `--ignored --nocapture` to
/// create the fixture of a new version, after a deliberate format change that bumps
/// the version; never rewrite an existing fixture).
#[test]
#[ignore]
fn print_golden_fixture() {
    for rec in golden_records_v2() {
        println!("{}", hex_encode(&rec.to_bytes()));
    }
}
