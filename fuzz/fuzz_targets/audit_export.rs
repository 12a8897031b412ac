//! JSON-lines audit exports: `parse_audit_export` and `verify_audit_rows` (audit key
//! `0x42 * 32` for every key id). Mode bit 0 of the first byte selects:
//!
//! * **text** (bit clear): the rest, as UTF-8 text, is parsed. Never panics; a failure is
//!   `Malformed` at a real line; anything that parses re-exports (in the engine's
//!   format) to text that parses to the same database and rows; and rows that verify
//!   really form the chains: per table, seq 1..=n and each MAC the chained
//!   `AuditRow::compute_mac` of the row, with the counts reported per table.
//! * **structured** (bit set): the rest is `arbitrary` input for rows (any text fields,
//!   timestamps, tables, interleaving) that are MACed into valid chains, exported,
//!   parsed back (to exactly those rows) and verified (must succeed). With one byte of
//!   the export changed, whatever still parses and verifies is exactly the original rows.
#![no_main]
use aedb::{
    AuditExportError, AuditRow, AuditTable, DatabaseId, parse_audit_export, verify_audit_rows,
};
use aedb_fuzz::{FUZZ_KEY, render_audit_jsonl};
use aedb_keys::SecretKey;
use aedb_model::Timestamp;
use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

fn key_for(_: &str) -> Option<SecretKey> {
    Some(SecretKey::new(FUZZ_KEY))
}

/// Re-checks a successful verification from first principles.
fn check_chains(rows: &[AuditRow], counts: &[(AuditTable, u64)]) {
    let key = SecretKey::new(FUZZ_KEY);
    let mut expected = Vec::new();
    for table in AuditTable::ALL {
        let mut prev = [0u8; 32];
        let mut n = 0u64;
        for row in rows.iter().filter(|r| r.table == table) {
            n += 1;
            assert_eq!(row.seq, n, "verified chain has a gap");
            assert_eq!(
                row.compute_mac(&key, &prev),
                row.mac,
                "verified row has a bad MAC"
            );
            prev = row.mac;
        }
        expected.push((table, n));
    }
    assert_eq!(counts, expected);
}

fn text_mode(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (db, rows) = match parse_audit_export(text) {
        Ok(parsed) => parsed,
        Err(aedb::Error::AuditExport(AuditExportError::Malformed { line, .. })) => {
            assert!(
                line >= 1 && line <= text.lines().count(),
                "error at line {line}"
            );
            return;
        }
        Err(other) => panic!("parsing reported {other:?}"),
    };
    let again = parse_audit_export(&render_audit_jsonl(db, &rows)).expect("re-export parses");
    assert_eq!(again, (db, rows.clone()), "re-export parses differently");
    match verify_audit_rows(&rows, key_for) {
        Ok(counts) => check_chains(&rows, &counts),
        Err(aedb::Error::AuditExport(AuditExportError::Chain(_))) => {}
        Err(other) => panic!("verification reported {other:?}"),
    }
}

#[derive(Arbitrary, Debug)]
struct RowSpec {
    assertion: bool,
    at_micros: i64,
    key_id: String,
    caller: String,
    kind: String,
    subject: String,
    detail: String,
}

#[derive(Arbitrary, Debug)]
struct Spec {
    database: [u8; 16],
    rows: Vec<RowSpec>,
    tamper: Option<(u16, u8)>,
}

fn structured_mode(data: &[u8]) {
    let Ok(spec) = Spec::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let key = SecretKey::new(FUZZ_KEY);
    let db = DatabaseId::from_bytes(spec.database);
    let mut heads = [(0u64, [0u8; 32]); 2];
    let rows: Vec<AuditRow> = spec
        .rows
        .into_iter()
        .map(|r| {
            let (table, head) = if r.assertion {
                (AuditTable::Assertion, &mut heads[1])
            } else {
                (AuditTable::Authz, &mut heads[0])
            };
            let mut row = AuditRow {
                table,
                seq: head.0 + 1,
                at: Timestamp::from_micros(r.at_micros),
                key_id: r.key_id,
                caller: r.caller,
                kind: r.kind,
                subject: r.subject,
                detail: r.detail,
                mac: [0; 32],
            };
            row.mac = row.compute_mac(&key, &head.1);
            *head = (row.seq, row.mac);
            row
        })
        .collect();
    let text = render_audit_jsonl(db, &rows);
    let (parsed_db, parsed) = parse_audit_export(&text).expect("own export parses");
    assert_eq!(parsed, rows, "export does not round-trip");
    if !rows.is_empty() {
        assert_eq!(parsed_db, db);
    }
    let counts = verify_audit_rows(&parsed, key_for).expect("own chain verifies");
    check_chains(&parsed, &counts);

    if let Some((at, mask)) = spec.tamper
        && !text.is_empty()
    {
        let mut bad = text.into_bytes();
        let at = usize::from(at) % bad.len();
        bad[at] ^= mask | 1;
        if let Ok(bad) = std::str::from_utf8(&bad)
            && let Ok((_, tampered)) = parse_audit_export(bad)
            && verify_audit_rows(&tampered, key_for).is_ok()
        {
            assert_eq!(
                tampered, rows,
                "a changed export verified with different rows"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        text_mode(rest);
    } else {
        structured_mode(rest);
    }
});
