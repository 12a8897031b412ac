//! The binary encoding of a full [`State`]: the payload a checkpoint seals.
//!
//! Little-endian, versioned, hand-written; layout in `docs/FORMAT.md`.
//! The decoder checks every length before allocating, requires every map's keys
//! in strictly ascending order (so duplicates and reordering are detected),
//! re-checks every row against its table schema and every version against the
//! snapshot LSN, and never panics.

use std::sync::Arc;

use aedb_storage::EntryKind;
use aedb_storage::Memtable;
use aedb_types::Lsn;
use imbl::{OrdMap, OrdSet};

use crate::codec::{
    DResult, DecodeError, DecodeErrorKind, ReadModel, Reader, put_count, put_idempotency_key,
    put_kv_key, put_kv_value, put_lsn, put_name, put_rejection, put_request, put_schema, put_u8,
    put_values,
};
use crate::error::ReadError;
use crate::idempotency::{IdempotencyKey, IdempotencyRecord, Outcome};
use crate::key::EncodedKey;
use crate::keyspace;
use crate::kv::KvKey;
use crate::name::Namespace;
use crate::state::{Catalog, NamespaceState, ProjectState, State, TableState};

/// The snapshot format version this build writes (it also reads version 1, whose
/// idempotency records have no request stamp).
pub const SNAPSHOT_VERSION: u8 = 2;

const OUTCOME_COMMITTED: u8 = 1;
const OUTCOME_REJECTED: u8 = 2;

impl State {
    /// Appends the snapshot encoding of the whole state to `out` (format version 2;
    /// version 1 was the payload of a version-1 full checkpoint; reads every entry).
    ///
    /// # Errors
    /// Stored data could not be read.
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) -> Result<(), ReadError> {
        let catalog = self.catalog();
        put_u8(out, SNAPSHOT_VERSION);
        put_lsn(out, self.lsn());
        put_count(out, catalog.projects.len());
        for (project, p) in &catalog.projects {
            put_name(out, project.as_str());
            put_lsn(out, p.created);
            put_count(out, p.scopes.len());
            for scope in &p.scopes {
                let ns = Namespace::new(project.clone(), scope.clone());
                let n = catalog.namespaces.get(&ns);
                put_name(out, scope.as_str());
                put_lsn(out, n.map_or(p.created, |n| n.created));
                let mut entries = Vec::new();
                for item in self.kv_iter(
                    &ns,
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Unbounded,
                    crate::Direction::Forward,
                )? {
                    entries.push(item?);
                }
                put_count(out, entries.len());
                for (key, entry) in &entries {
                    put_kv_key(out, key);
                    put_kv_value(out, &entry.value);
                    put_lsn(out, entry.lsn);
                }
                let tables = n.map(|n| n.tables.clone()).unwrap_or_default();
                put_count(out, tables.len());
                for (table, t) in &tables {
                    put_name(out, table.as_str());
                    put_lsn(out, t.created);
                    put_schema(out, &t.schema);
                    let mut rows = Vec::new();
                    for row in self.table_iter(
                        &ns,
                        table,
                        &crate::KeyRange::all(),
                        crate::Direction::Forward,
                    )? {
                        rows.push(row?);
                    }
                    put_count(out, rows.len());
                    for row in &rows {
                        put_lsn(out, row.lsn);
                        put_values(out, &row.values);
                    }
                }
            }
        }
        let mut records = Vec::new();
        for item in self.idempotency_iter()? {
            records.push(item?);
        }
        put_count(out, records.len());
        for (key, rec) in &records {
            put_idempotency_key(out, key);
            put_lsn(out, rec.lsn);
            match &rec.outcome {
                Outcome::Committed => put_u8(out, OUTCOME_COMMITTED),
                Outcome::Rejected(r) => {
                    put_u8(out, OUTCOME_REJECTED);
                    put_rejection(out, r);
                }
            }
            put_request(out, rec.request.as_ref());
        }
        Ok(())
    }

    /// The snapshot encoding as a new vector.
    ///
    /// # Errors
    /// Stored data could not be read.
    pub fn to_snapshot_bytes(&self) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::new();
        self.encode_snapshot(&mut out)?;
        Ok(out)
    }

    /// Decodes a snapshot produced by [`State::encode_snapshot`] into a fresh memtable
    /// (a version-1 full checkpoint being loaded or migrated).
    pub fn decode_snapshot(bytes: &[u8]) -> Result<State, DecodeError> {
        let mut r = Reader::new("snapshot", bytes);
        let version = r.u8()?;
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(r.err_at(
                0,
                DecodeErrorKind::UnsupportedVersion {
                    found: version.into(),
                    supported: SNAPSHOT_VERSION.into(),
                },
            ));
        }
        let lsn = r.lsn()?;
        let mem = Arc::new(Memtable::new(0));
        let mut catalog = Catalog::default();
        let version_ok = |r: &Reader<'_>, v: Lsn, what: &'static str| -> DResult<Lsn> {
            if v > lsn {
                Err(r.err(DecodeErrorKind::Invalid { what }))
            } else {
                Ok(v)
            }
        };
        let projects = r.count32("project", 13)?;
        for _ in 0..projects {
            let project = r.project()?;
            if catalog
                .projects
                .get_max()
                .is_some_and(|(last, _)| *last >= project)
            {
                return Err(r.err(DecodeErrorKind::Invalid {
                    what: "project order",
                }));
            }
            let created = r.lsn()?;
            let created = version_ok(&r, created, "project creation lsn")?;
            mem.insert(
                &keyspace::project_key(&project),
                created,
                EntryKind::Put,
                &keyspace::catalog_value(created, None),
            );
            let mut scopes = OrdSet::new();
            let scope_count = r.count32("scope", 17)?;
            for _ in 0..scope_count {
                let scope = r.scope()?;
                if scopes.get_max().is_some_and(|last| *last >= scope) {
                    return Err(r.err(DecodeErrorKind::Invalid {
                        what: "scope order",
                    }));
                }
                scopes.insert(scope.clone());
                let ns = Namespace::new(project.clone(), scope);
                let n = decode_namespace(&mut r, &ns, &mem, &version_ok)?;
                catalog.namespaces.insert(ns, n);
            }
            catalog
                .projects
                .insert(project, ProjectState { created, scopes });
        }
        let keys = r.count32("idempotency record", 12)?;
        let mut last_key: Option<IdempotencyKey> = None;
        for _ in 0..keys {
            let key = r.idempotency_key()?;
            if last_key.as_ref().is_some_and(|last| *last >= key) {
                return Err(r.err(DecodeErrorKind::Invalid {
                    what: "idempotency key order",
                }));
            }
            let rec_lsn = r.lsn()?;
            let rec_lsn = version_ok(&r, rec_lsn, "idempotency record lsn")?;
            let outcome = match r.u8()? {
                OUTCOME_COMMITTED => Outcome::Committed,
                OUTCOME_REJECTED => Outcome::Rejected(r.rejection()?),
                tag => {
                    return Err(r.back(1).err(DecodeErrorKind::UnknownTag {
                        what: "idempotency outcome",
                        tag,
                    }));
                }
            };
            let request = if version >= 2 { r.request()? } else { None };
            let record = IdempotencyRecord {
                lsn: rec_lsn,
                outcome,
                request,
            };
            mem.insert(
                &keyspace::idempotency_key(key.as_bytes()),
                rec_lsn,
                EntryKind::Put,
                &keyspace::idempotency_value(&record),
            );
            last_key = Some(key);
        }
        r.finish()?;
        Ok(State::from_parts(lsn, catalog, mem))
    }
}

fn decode_namespace(
    r: &mut Reader<'_>,
    ns: &Namespace,
    mem: &Memtable,
    version_ok: &impl Fn(&Reader<'_>, Lsn, &'static str) -> DResult<Lsn>,
) -> DResult<NamespaceState> {
    let created = r.lsn()?;
    let created = version_ok(r, created, "scope creation lsn")?;
    mem.insert(
        &keyspace::scope_key(ns),
        created,
        EntryKind::Put,
        &keyspace::catalog_value(created, None),
    );
    let entries = r.count32("kv entry", 2 + 1 + 4 + 8)?;
    let mut last: Option<KvKey> = None;
    for _ in 0..entries {
        let key = r.kv_key()?;
        if last.as_ref().is_some_and(|l| *l >= key) {
            return Err(r.err(DecodeErrorKind::Invalid {
                what: "kv key order",
            }));
        }
        let value = r.kv_value()?;
        let entry_lsn = r.lsn()?;
        let entry_lsn = version_ok(r, entry_lsn, "kv entry lsn")?;
        mem.insert(
            &keyspace::kv_key(ns, &key),
            entry_lsn,
            EntryKind::Put,
            value.as_bytes(),
        );
        last = Some(key);
    }
    let mut tables = OrdMap::new();
    let table_count = r.count32("table", 2 + 8 + 4)?;
    for _ in 0..table_count {
        let table = r.table()?;
        if tables.get_max().is_some_and(|(last, _)| *last >= table) {
            return Err(r.err(DecodeErrorKind::Invalid {
                what: "table order",
            }));
        }
        let t_created = r.lsn()?;
        let t_created = version_ok(r, t_created, "table creation lsn")?;
        let schema = Arc::new(r.schema()?);
        mem.insert(
            &keyspace::table_key(ns, &table),
            t_created,
            EntryKind::Put,
            &keyspace::catalog_value(t_created, Some(&schema)),
        );
        let row_count = r.count32("row", 8 + 2)?;
        let mut last: Option<EncodedKey> = None;
        for _ in 0..row_count {
            let row_lsn = r.lsn()?;
            let row_lsn = version_ok(r, row_lsn, "row lsn")?;
            // A row is never older than its table (compaction's dropped-table rule
            // relies on it).
            if row_lsn < t_created {
                return Err(r.err(DecodeErrorKind::Invalid {
                    what: "row lsn before its table's creation",
                }));
            }
            let start = r.pos();
            let values = r.values_arc("row value")?;
            let key = schema
                .check_row(&values)
                .and_then(|()| EncodedKey::for_row(&schema, &values))
                .map_err(|_| {
                    r.err_at(
                        start,
                        DecodeErrorKind::Invalid {
                            what: "row (does not fit its table schema)",
                        },
                    )
                })?;
            if last.as_ref().is_some_and(|l| *l >= key) {
                return Err(r.err(DecodeErrorKind::Invalid { what: "row order" }));
            }
            let mut encoded = Vec::new();
            put_values(&mut encoded, &values);
            mem.insert(
                &keyspace::row_key(ns, t_created, key.as_bytes()),
                row_lsn,
                EntryKind::Put,
                &encoded,
            );
            last = Some(key);
        }
        tables.insert(
            table,
            TableState {
                created: t_created,
                schema,
            },
        );
    }
    Ok(NamespaceState { created, tables })
}
