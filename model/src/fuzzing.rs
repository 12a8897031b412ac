//! Entry points for the cargo-fuzz targets (`fuzz/`): not a stable API.
//!
//! Entries of the storage key space come back from run files (authenticated, but still
//! bytes): the decoders that turn them into catalog entries, rows and idempotency
//! records must refuse any bytes with a typed error and never panic.

use aedb_types::Lsn;

use crate::keyspace::{self, CatalogEntry};
use crate::{Ddl, IdempotencyKey, Numeric, State, Transaction};

/// Decodes one stored entry as a read would, by the key's tag: a catalog entry (key and
/// value), a row value (and its key's table prefix, as the compaction filter parses
/// it), or an idempotency record. What decodes re-encodes to the same
/// bytes (the stored formats are canonical).
pub fn stored_entry(key: &[u8], value: &[u8]) {
    match key.first() {
        Some(&keyspace::CATALOG) => {
            if let Ok(entry) = keyspace::decode_catalog(key, value) {
                let (k, v) = match &entry {
                    CatalogEntry::Project { project, created } => (
                        keyspace::project_key(project),
                        keyspace::catalog_value(*created, None),
                    ),
                    CatalogEntry::Scope { ns, created } => (
                        keyspace::scope_key(ns),
                        keyspace::catalog_value(*created, None),
                    ),
                    CatalogEntry::Table {
                        ns,
                        table,
                        created,
                        schema,
                    } => (
                        keyspace::table_key(ns, table),
                        keyspace::catalog_value(*created, Some(schema)),
                    ),
                };
                assert_eq!((k.as_slice(), v.as_slice()), (key, value));
            }
        }
        Some(&keyspace::ROW) => {
            if let Ok(row) = crate::state::row_from(Lsn::new(1), value) {
                assert_eq!(crate::state::encode_row(&row.values), value);
            }
            // The compaction filter's parse of the key: a prefix of it, or nothing.
            if let Some(table) = keyspace::row_table_prefix(key) {
                assert!(key.starts_with(table) && table.len() >= 11);
            }
        }
        Some(&keyspace::IDEMPOTENCY) => {
            if let Ok(record) = keyspace::decode_idempotency(value) {
                assert_eq!(keyspace::idempotency_value(&record), value);
            }
        }
        _ => {}
    }
}

/// The stored entries of a small state (a project, a scope, a table, KV entries, a row,
/// committed and rejected idempotency records), as `(key, value)`: seeds for
/// [`stored_entry`].
pub fn sample_entries() -> Vec<(Vec<u8>, Vec<u8>)> {
    use crate::{ColumnDef, ColumnName, ColumnType, KvKey, Namespace, ProjectName};
    use crate::{TableName, TableSchema, Value};
    let ns = Namespace::parse("bank", "eu").expect("namespace");
    let table = TableName::new("transfers").expect("table");
    let column = |n: &str, ty| ColumnDef::new(ColumnName::new(n).expect("column"), ty);
    let schema = TableSchema::new(
        vec![
            column("id", ColumnType::U64),
            column("memo", ColumnType::Text),
        ],
        vec![ColumnName::new("id").expect("column")],
    )
    .expect("schema");
    let mut state = State::new();
    let mut lsn = 0;
    let mut next = || {
        lsn += 1;
        Lsn::new(lsn)
    };
    for ddl in [
        Ddl::CreateProject {
            project: ProjectName::new("bank").expect("project"),
        },
        Ddl::CreateScope { ns: ns.clone() },
        Ddl::CreateTable {
            ns: ns.clone(),
            table: table.clone(),
            schema,
        },
    ] {
        state = state.apply_ddl(&ddl, next()).expect("ddl").0;
    }
    let alice = KvKey::new("alice").expect("key");
    let tx = Transaction::new()
        .kv_add(&ns, alice.clone(), Numeric::U64(100))
        .table_insert(
            &ns,
            &table,
            vec![
                (ColumnName::new("id").expect("column"), Value::U64(7)),
                (
                    ColumnName::new("memo").expect("column"),
                    Value::Text("rent".into()),
                ),
            ],
        )
        .idempotency_key(IdempotencyKey::new("xfer-1").expect("key"));
    state = state.apply(&tx, next()).expect("transfer").0;
    let overdraw = Transaction::new()
        .assert(crate::Assertion::KvNumericAtLeast {
            ns: ns.clone(),
            key: alice,
            min: Numeric::U64(1_000),
        })
        .idempotency_key(IdempotencyKey::new("xfer-2").expect("key"));
    let at = next();
    if let Err(error) = state.apply(&overdraw, at)
        && let Ok(Some((staged, _))) = state.stage_reject(&overdraw, &error, at)
    {
        state = staged.install().expect("install the rejection");
    }
    let mut out = Vec::new();
    for mem in state.view().memtables() {
        let _ = mem.for_each(|k, _, _, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok::<(), std::convert::Infallible>(())
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samples_cover_every_decoded_entry_kind_and_round_trip() {
        let samples = sample_entries();
        for tag in [
            keyspace::CATALOG,
            keyspace::KV,
            keyspace::ROW,
            keyspace::IDEMPOTENCY,
        ] {
            assert!(
                samples.iter().any(|(k, _)| k.first() == Some(&tag)),
                "no entry with tag {tag}"
            );
        }
        // Two idempotency records: one committed, one rejected.
        let idem = samples
            .iter()
            .filter(|(k, _)| k.first() == Some(&keyspace::IDEMPOTENCY))
            .count();
        assert_eq!(idem, 2);
        for (k, v) in &samples {
            stored_entry(k, v);
            // Truncations are refused without a panic.
            for cut in 0..v.len() {
                stored_entry(k, &v[..cut]);
            }
        }
    }
}
