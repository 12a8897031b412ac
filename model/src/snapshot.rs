//! The binary encoding of a full [`State`]: the payload a checkpoint seals.
//!
//! Little-endian, versioned, hand-written; layout in `docs/FORMAT-model.md`.
//! The decoder checks every length before allocating, requires every map's keys
//! in strictly ascending order (so duplicates and reordering are detected),
//! re-checks every row against its table schema and every version against the
//! snapshot LSN, and never panics.

use std::sync::Arc;

use aedb_types::Lsn;
use imbl::{OrdMap, OrdSet};

use crate::codec::{
    DResult, DecodeError, DecodeErrorKind, ReadModel, Reader, put_count, put_idempotency_key,
    put_kv_key, put_kv_value, put_lsn, put_name, put_rejection, put_schema, put_u8, put_values,
};
use crate::idempotency::{IdempotencyRecord, Outcome};
use crate::key::EncodedKey;
use crate::kv::KvEntry;
use crate::name::Namespace;
use crate::row::Row;
use crate::state::{NamespaceState, ProjectState, State, TableState};

/// The snapshot format version this build writes and reads.
pub const SNAPSHOT_VERSION: u8 = 1;

const OUTCOME_COMMITTED: u8 = 1;
const OUTCOME_REJECTED: u8 = 2;

impl State {
    /// Appends the snapshot encoding of the whole state to `out`.
    pub fn encode_snapshot(&self, out: &mut Vec<u8>) {
        put_u8(out, SNAPSHOT_VERSION);
        put_lsn(out, self.lsn);
        put_count(out, self.projects.len());
        for (project, p) in &self.projects {
            put_name(out, project.as_str());
            put_lsn(out, p.created);
            put_count(out, p.scopes.len());
            for scope in &p.scopes {
                let ns = Namespace::new(project.clone(), scope.clone());
                // Every scope in a project has a namespace entry (DDL keeps them
                // in step); an absent one encodes as empty.
                let empty = NamespaceState {
                    created: p.created,
                    kv: OrdMap::new(),
                    tables: OrdMap::new(),
                };
                let n = self.namespaces.get(&ns).unwrap_or(&empty);
                put_name(out, scope.as_str());
                put_lsn(out, n.created);
                put_count(out, n.kv.len());
                for (key, entry) in &n.kv {
                    put_kv_key(out, key);
                    put_kv_value(out, &entry.value);
                    put_lsn(out, entry.lsn);
                }
                put_count(out, n.tables.len());
                for (table, t) in &n.tables {
                    put_name(out, table.as_str());
                    put_lsn(out, t.created);
                    put_schema(out, &t.schema);
                    put_count(out, t.rows.len());
                    for row in t.rows.values() {
                        put_lsn(out, row.lsn);
                        put_values(out, &row.values);
                    }
                }
            }
        }
        put_count(out, self.idempotency.len());
        for (key, rec) in &self.idempotency {
            put_idempotency_key(out, key);
            put_lsn(out, rec.lsn);
            match &rec.outcome {
                Outcome::Committed => put_u8(out, OUTCOME_COMMITTED),
                Outcome::Rejected(r) => {
                    put_u8(out, OUTCOME_REJECTED);
                    put_rejection(out, r);
                }
            }
        }
    }

    /// The snapshot encoding as a new vector.
    pub fn to_snapshot_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_snapshot(&mut out);
        out
    }

    /// Decodes a snapshot produced by [`State::encode_snapshot`].
    pub fn decode_snapshot(bytes: &[u8]) -> Result<State, DecodeError> {
        let mut r = Reader::new("snapshot", bytes);
        let version = r.u8()?;
        if version != SNAPSHOT_VERSION {
            return Err(r.err_at(
                0,
                DecodeErrorKind::UnsupportedVersion {
                    found: version.into(),
                    supported: SNAPSHOT_VERSION.into(),
                },
            ));
        }
        let lsn = r.lsn()?;
        let mut state = State {
            lsn,
            ..State::default()
        };
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
            if state
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
                let n = decode_namespace(&mut r, &version_ok)?;
                state.namespaces.insert(ns, n);
            }
            state
                .projects
                .insert(project, ProjectState { created, scopes });
        }
        let keys = r.count32("idempotency record", 12)?;
        for _ in 0..keys {
            let key = r.idempotency_key()?;
            if state
                .idempotency
                .get_max()
                .is_some_and(|(last, _)| *last >= key)
            {
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
            state.idempotency.insert(
                key,
                IdempotencyRecord {
                    lsn: rec_lsn,
                    outcome,
                },
            );
        }
        r.finish()?;
        Ok(state)
    }
}

fn decode_namespace(
    r: &mut Reader<'_>,
    version_ok: &impl Fn(&Reader<'_>, Lsn, &'static str) -> DResult<Lsn>,
) -> DResult<NamespaceState> {
    let created = r.lsn()?;
    let created = version_ok(r, created, "scope creation lsn")?;
    let mut kv = OrdMap::new();
    let entries = r.count32("kv entry", 2 + 1 + 4 + 8)?;
    for _ in 0..entries {
        let key = r.kv_key()?;
        if kv.get_max().is_some_and(|(last, _)| *last >= key) {
            return Err(r.err(DecodeErrorKind::Invalid {
                what: "kv key order",
            }));
        }
        let value = r.kv_value()?;
        let entry_lsn = r.lsn()?;
        let entry_lsn = version_ok(r, entry_lsn, "kv entry lsn")?;
        kv.insert(
            key,
            KvEntry {
                value,
                lsn: entry_lsn,
            },
        );
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
        let mut rows: OrdMap<EncodedKey, Row> = OrdMap::new();
        let row_count = r.count32("row", 8 + 2)?;
        for _ in 0..row_count {
            let row_lsn = r.lsn()?;
            let row_lsn = version_ok(r, row_lsn, "row lsn")?;
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
            if rows.get_max().is_some_and(|(last, _)| *last >= key) {
                return Err(r.err(DecodeErrorKind::Invalid { what: "row order" }));
            }
            rows.insert(
                key,
                Row {
                    values,
                    lsn: row_lsn,
                },
            );
        }
        tables.insert(
            table,
            TableState {
                created: t_created,
                schema,
                rows,
            },
        );
    }
    Ok(NamespaceState {
        created,
        kv,
        tables,
    })
}
