//! The in-memory database state owned by the single writer, and everything that
//! changes it: transactions, DDL, recorded rejections and replayed records.
//!
//! [`State`] is a persistent structure (imbl `OrdMap`s): `clone` is O(1) and an
//! immutable snapshot is just a clone. Every change is computed on a clone and
//! returned as a new `State`, so a failed transaction leaves the original
//! untouched and readers holding older snapshots never see partial work.

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use aedb_types::Lsn;
use imbl::{OrdMap, OrdSet};

use crate::assertion::Verdict;
use crate::error::{AlreadyExists, ApplyError, NotFound, OpError, ReadError, ReplayError};
use crate::idempotency::{IdempotencyKey, IdempotencyRecord, Outcome, Rejection};
use crate::key::{EncodedKey, KeyRange, encode_primary_key, prefix_successor};
use crate::kv::{KvEntry, KvKey, KvValue};
use crate::mutation::{Ddl, Mutation};
use crate::name::{Namespace, ProjectName, ScopeName, TableName};
use crate::numeric::{Numeric, NumericType, OutOfRange};
use crate::record::{CommitRecord, Effect};
use crate::row::Row;
use crate::scan::{Direction, Page};
use crate::schema::{RowError, TableSchema};
use crate::transaction::Transaction;
use crate::value::Value;

/// A project: when it was created and its scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProjectState {
    pub(crate) created: Lsn,
    pub(crate) scopes: OrdSet<ScopeName>,
}

/// A scope's contents: its KV space and tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamespaceState {
    pub(crate) created: Lsn,
    pub(crate) kv: OrdMap<KvKey, KvEntry>,
    pub(crate) tables: OrdMap<TableName, TableState>,
}

/// A table: its schema and rows keyed by encoded primary key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TableState {
    pub(crate) created: Lsn,
    pub(crate) schema: Arc<TableSchema>,
    pub(crate) rows: OrdMap<EncodedKey, Row>,
}

/// The whole database at one LSN. Cheap to clone; clones are snapshots.
///
/// Namespaces live in one flat map keyed by `(project, scope)`, so a point read
/// is one small namespace lookup plus one B-tree lookup.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct State {
    pub(crate) lsn: Lsn,
    pub(crate) projects: OrdMap<ProjectName, ProjectState>,
    pub(crate) namespaces: OrdMap<Namespace, NamespaceState>,
    pub(crate) idempotency: OrdMap<IdempotencyKey, IdempotencyRecord>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("lsn", &self.lsn)
            .field("projects", &self.projects.len())
            .field("namespaces", &self.namespaces.len())
            .field("idempotency_keys", &self.idempotency.len())
            .finish()
    }
}

fn missing_namespace(projects: &OrdMap<ProjectName, ProjectState>, ns: &Namespace) -> NotFound {
    if projects.contains_key(&ns.project) {
        NotFound::Scope(ns.clone())
    } else {
        NotFound::Project(ns.project.clone())
    }
}

/// Writes `key = value` at `lsn` into `n` and logs the resolved put.
fn put_kv(
    n: &mut NamespaceState,
    ns: &Namespace,
    key: &KvKey,
    value: KvValue,
    lsn: Lsn,
    effects: &mut Vec<Effect>,
) {
    n.kv.insert(
        key.clone(),
        KvEntry {
            value: value.clone(),
            lsn,
        },
    );
    effects.push(Effect::KvPut {
        ns: ns.clone(),
        key: key.clone(),
        value,
    });
}

fn namespace_mut<'a>(
    namespaces: &'a mut OrdMap<Namespace, NamespaceState>,
    projects: &OrdMap<ProjectName, ProjectState>,
    ns: &Namespace,
) -> Result<&'a mut NamespaceState, NotFound> {
    namespaces
        .get_mut(ns)
        .ok_or_else(|| missing_namespace(projects, ns))
}

fn table_mut<'a>(
    namespaces: &'a mut OrdMap<Namespace, NamespaceState>,
    projects: &OrdMap<ProjectName, ProjectState>,
    ns: &Namespace,
    table: &TableName,
) -> Result<&'a mut TableState, NotFound> {
    namespace_mut(namespaces, projects, ns)?
        .tables
        .get_mut(table)
        .ok_or_else(|| NotFound::Table {
            ns: ns.clone(),
            table: table.clone(),
        })
}

fn row_error(ns: &Namespace, table: &TableName) -> impl Fn(RowError) -> OpError {
    move |source| OpError::Row {
        ns: ns.clone(),
        table: table.clone(),
        source,
    }
}

fn show_key(values: impl IntoIterator<Item = impl fmt::Display>) -> String {
    let parts: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
    format!("({})", parts.join(", "))
}

fn key_of_row(schema: &TableSchema, row: &[Value]) -> String {
    show_key(schema.primary_key_indices().iter().map(|&i| &row[i]))
}

/// Whether byte bounds certainly select nothing (also keeps inverted ranges away
/// from the B-tree).
fn bounds_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    }
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl State {
    /// An empty state at [`Lsn::ZERO`].
    pub fn new() -> State {
        State::default()
    }

    /// The LSN of the last applied commit, DDL or recorded rejection.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    fn check_lsn(&self, lsn: Lsn) -> Result<(), ApplyError> {
        if lsn <= self.lsn {
            return Err(ApplyError::LsnNotIncreasing {
                current: self.lsn,
                given: lsn,
            });
        }
        Ok(())
    }

    // ------------------------------------------------------------------ reads

    fn namespace(&self, ns: &Namespace) -> Result<&NamespaceState, NotFound> {
        self.namespaces
            .get(ns)
            .ok_or_else(|| missing_namespace(&self.projects, ns))
    }

    fn table(&self, ns: &Namespace, table: &TableName) -> Result<&TableState, NotFound> {
        self.namespace(ns)?
            .tables
            .get(table)
            .ok_or_else(|| NotFound::Table {
                ns: ns.clone(),
                table: table.clone(),
            })
    }

    pub(crate) fn kv_entry(
        &self,
        ns: &Namespace,
        key: &[u8],
    ) -> Result<Option<&KvEntry>, NotFound> {
        Ok(self.namespace(ns)?.kv.get(key))
    }

    pub(crate) fn row_lookup(
        &self,
        ns: &Namespace,
        table: &TableName,
        pk: &[Value],
    ) -> Result<(Option<&Row>, &TableSchema), OpError> {
        let t = self.table(ns, table)?;
        let mut key = Vec::new();
        encode_primary_key(&t.schema, pk, &mut key).map_err(row_error(ns, table))?;
        Ok((t.rows.get(key.as_slice()), &t.schema))
    }

    /// The entry stored at `key`, if any.
    pub fn kv_get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<&KvEntry>, ReadError> {
        Ok(self.kv_entry(ns, key)?)
    }

    /// The number stored at `key` as `ty` (a missing key is zero).
    pub fn kv_get_numeric(
        &self,
        ns: &Namespace,
        key: &[u8],
        ty: NumericType,
    ) -> Result<Numeric, ReadError> {
        match self.namespace(ns)?.kv.get_key_value(key) {
            None => Ok(ty.zero()),
            Some((k, e)) => Numeric::decode(ty, Some(e.value.as_bytes())).map_err(|source| {
                ReadError::WrongNumericWidth {
                    key: k.clone(),
                    source,
                }
            }),
        }
    }

    /// Entries whose key starts with `prefix` (all entries for an empty prefix).
    pub fn kv_scan_prefix(
        &self,
        ns: &Namespace,
        prefix: &[u8],
        direction: Direction,
        limit: usize,
    ) -> Result<Page<(KvKey, KvEntry)>, ReadError> {
        let end = prefix_successor(prefix);
        let end = match &end {
            Some(e) => Bound::Excluded(e.as_slice()),
            None => Bound::Unbounded,
        };
        self.kv_scan_range(ns, Bound::Included(prefix), end, direction, limit)
    }

    /// Entries with keys between `start` and `end`, in `direction`, at most `limit`.
    pub fn kv_scan_range(
        &self,
        ns: &Namespace,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Page<(KvKey, KvEntry)>, ReadError> {
        let kv = &self.namespace(ns)?.kv;
        if bounds_empty(start, end) {
            return Ok(Page::empty());
        }
        let iter = kv
            .range::<_, [u8]>((start, end))
            .map(|(k, e)| (k.clone(), e.clone()));
        Ok(match direction {
            Direction::Forward => Page::collect(iter, limit),
            Direction::Reverse => Page::collect(iter.rev(), limit),
        })
    }

    /// Number of keys in the namespace's KV space.
    pub fn kv_len(&self, ns: &Namespace) -> Result<usize, ReadError> {
        Ok(self.namespace(ns)?.kv.len())
    }

    /// The row with primary key `pk` (values in key order), if any.
    pub fn table_get(
        &self,
        ns: &Namespace,
        table: &TableName,
        pk: &[Value],
    ) -> Result<Option<&Row>, ReadError> {
        let t = self.table(ns, table)?;
        let mut key = Vec::new();
        encode_primary_key(&t.schema, pk, &mut key).map_err(|source| ReadError::Row {
            table: table.clone(),
            source,
        })?;
        Ok(t.rows.get(key.as_slice()))
    }

    /// Rows whose primary keys fall in `range`, in `direction`, at most `limit`.
    pub fn table_scan(
        &self,
        ns: &Namespace,
        table: &TableName,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Page<Row>, ReadError> {
        let t = self.table(ns, table)?;
        let bounds = range
            .to_byte_bounds(&t.schema)
            .map_err(|source| ReadError::Row {
                table: table.clone(),
                source,
            })?;
        let Some((start, end)) = bounds else {
            return Ok(Page::empty());
        };
        let (start, end) = (as_ref_bound(&start), as_ref_bound(&end));
        if bounds_empty(start, end) {
            return Ok(Page::empty());
        }
        let iter = t
            .rows
            .range::<_, [u8]>((start, end))
            .map(|(_, r)| r.clone());
        Ok(match direction {
            Direction::Forward => Page::collect(iter, limit),
            Direction::Reverse => Page::collect(iter.rev(), limit),
        })
    }

    /// Number of rows in a table.
    pub fn table_len(&self, ns: &Namespace, table: &TableName) -> Result<usize, ReadError> {
        Ok(self.table(ns, table)?.rows.len())
    }

    /// The schema of a table.
    pub fn table_schema(
        &self,
        ns: &Namespace,
        table: &TableName,
    ) -> Result<&TableSchema, ReadError> {
        Ok(&self.table(ns, table)?.schema)
    }

    /// All projects, in name order.
    pub fn projects(&self) -> impl Iterator<Item = &ProjectName> + '_ {
        self.projects.keys()
    }

    /// Whether the project exists.
    pub fn has_project(&self, project: &ProjectName) -> bool {
        self.projects.contains_key(project)
    }

    /// The scopes of a project, in name order.
    pub fn scopes(
        &self,
        project: &ProjectName,
    ) -> Result<impl Iterator<Item = &ScopeName> + '_, ReadError> {
        let p = self
            .projects
            .get(project)
            .ok_or_else(|| NotFound::Project(project.clone()))?;
        Ok(p.scopes.iter())
    }

    /// Whether the namespace (project and scope) exists.
    pub fn has_namespace(&self, ns: &Namespace) -> bool {
        self.namespaces.contains_key(ns)
    }

    /// The tables of a namespace, in name order.
    pub fn tables(
        &self,
        ns: &Namespace,
    ) -> Result<impl Iterator<Item = &TableName> + '_, ReadError> {
        Ok(self.namespace(ns)?.tables.keys())
    }

    /// The remembered outcome of an idempotency key, if it was used.
    pub fn idempotency(&self, key: &[u8]) -> Option<&IdempotencyRecord> {
        self.idempotency.get(key)
    }

    /// Number of remembered idempotency keys.
    pub fn idempotency_len(&self) -> usize {
        self.idempotency.len()
    }

    // ------------------------------------------------------------------ writes

    /// Applies a transaction at `lsn` (which must be after [`State::lsn`]).
    ///
    /// Order: a known idempotency key returns [`ApplyError::AlreadySeen`] with
    /// the original outcome; then every assertion is evaluated against `self`;
    /// then mutations apply in order to a clone. On success returns the new state
    /// and the resolved record to log; on any error nothing is applied.
    pub fn apply(&self, tx: &Transaction, lsn: Lsn) -> Result<(State, CommitRecord), ApplyError> {
        self.check_lsn(lsn)?;
        if let Some(key) = &tx.idempotency_key
            && let Some(original) = self.idempotency.get(key)
        {
            return Err(ApplyError::AlreadySeen {
                key: key.clone(),
                original: original.clone(),
            });
        }
        for (i, assertion) in tx.assertions.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            match assertion.evaluate(self) {
                Ok(Verdict::Holds) => {}
                Ok(Verdict::Fails(detail)) => {
                    return Err(ApplyError::AssertionFailed { index, detail });
                }
                Err(source) => return Err(ApplyError::InvalidAssertion { index, source }),
            }
        }
        let mut next = self.clone();
        let mut effects = Vec::with_capacity(tx.mutations.len());
        for (i, m) in tx.mutations.iter().enumerate() {
            next.apply_mutation(m, lsn, &mut effects)
                .map_err(|source| ApplyError::Mutation {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    source,
                })?;
        }
        if let Some(key) = &tx.idempotency_key {
            next.idempotency.insert(
                key.clone(),
                IdempotencyRecord {
                    lsn,
                    outcome: Outcome::Committed,
                },
            );
        }
        next.lsn = lsn;
        let record = CommitRecord::Commit {
            idempotency_key: tx.idempotency_key.clone(),
            effects,
        };
        Ok((next, record))
    }

    /// Applies a DDL statement at `lsn`; returns the new state and its record.
    pub fn apply_ddl(&self, ddl: &Ddl, lsn: Lsn) -> Result<(State, CommitRecord), ApplyError> {
        self.check_lsn(lsn)?;
        let mut next = self.clone();
        next.ddl(ddl, lsn).map_err(ApplyError::Ddl)?;
        next.lsn = lsn;
        Ok((next, CommitRecord::Ddl(ddl.clone())))
    }

    /// Remembers at `lsn` that the transaction with `key` was rejected, so a
    /// retry returns `rejection`; returns the new state and the record to log.
    pub fn record_rejection(
        &self,
        key: &IdempotencyKey,
        rejection: Rejection,
        lsn: Lsn,
    ) -> Result<(State, CommitRecord), ApplyError> {
        self.check_lsn(lsn)?;
        if let Some(original) = self.idempotency.get(key) {
            return Err(ApplyError::AlreadySeen {
                key: key.clone(),
                original: original.clone(),
            });
        }
        let mut next = self.clone();
        next.idempotency.insert(
            key.clone(),
            IdempotencyRecord {
                lsn,
                outcome: Outcome::Rejected(rejection.clone()),
            },
        );
        next.lsn = lsn;
        Ok((
            next,
            CommitRecord::Rejected {
                idempotency_key: key.clone(),
                rejection,
            },
        ))
    }

    /// After [`State::apply`] failed with `error`: if `tx` has an idempotency
    /// key and the error is an outcome of the transaction
    /// ([`ApplyError::rejection`]), records the rejection at `lsn` (see
    /// [`State::record_rejection`]); otherwise returns `Ok(None)` and nothing
    /// needs logging.
    pub fn reject(
        &self,
        tx: &Transaction,
        error: &ApplyError,
        lsn: Lsn,
    ) -> Result<Option<(State, CommitRecord)>, ApplyError> {
        match (&tx.idempotency_key, error.rejection()) {
            (Some(key), Some(rejection)) => self.record_rejection(key, rejection, lsn).map(Some),
            _ => Ok(None),
        }
    }

    /// Applies a decoded record at `lsn` (recovery). Never evaluates assertions;
    /// any mismatch between record and state is a typed [`ReplayError`] and
    /// leaves `self` unchanged.
    pub fn replay(&mut self, record: &CommitRecord, lsn: Lsn) -> Result<(), ReplayError> {
        self.check_replay_lsn(lsn)?;
        let mut next = self.clone();
        next.replay_record(record, lsn)?;
        *self = next;
        Ok(())
    }

    /// Like [`State::replay`], but mutates `self` in place, without first taking
    /// a snapshot: faster for recovery, where nobody else holds the state.
    ///
    /// On error `self` may hold part of the record's effects and must be
    /// discarded (recovery stops on any replay error anyway).
    pub fn replay_in_place(&mut self, record: &CommitRecord, lsn: Lsn) -> Result<(), ReplayError> {
        self.check_replay_lsn(lsn)?;
        self.replay_record(record, lsn)
    }

    fn check_replay_lsn(&self, lsn: Lsn) -> Result<(), ReplayError> {
        if lsn <= self.lsn {
            return Err(ReplayError::LsnNotIncreasing {
                current: self.lsn,
                given: lsn,
            });
        }
        Ok(())
    }

    fn replay_record(&mut self, record: &CommitRecord, lsn: Lsn) -> Result<(), ReplayError> {
        match record {
            CommitRecord::Commit {
                idempotency_key,
                effects,
            } => {
                for (i, effect) in effects.iter().enumerate() {
                    self.replay_effect(u32::try_from(i).unwrap_or(u32::MAX), effect, lsn)?;
                }
                if let Some(key) = idempotency_key {
                    self.remember(key, lsn, Outcome::Committed)?;
                }
            }
            CommitRecord::Rejected {
                idempotency_key,
                rejection,
            } => self.remember(idempotency_key, lsn, Outcome::Rejected(rejection.clone()))?,
            CommitRecord::Ddl(ddl) => self.ddl(ddl, lsn).map_err(ReplayError::Ddl)?,
        }
        self.lsn = lsn;
        Ok(())
    }

    fn remember(
        &mut self,
        key: &IdempotencyKey,
        lsn: Lsn,
        outcome: Outcome,
    ) -> Result<(), ReplayError> {
        if self.idempotency.contains_key(key) {
            return Err(ReplayError::IdempotencyKeyReused { key: key.clone() });
        }
        self.idempotency
            .insert(key.clone(), IdempotencyRecord { lsn, outcome });
        Ok(())
    }

    fn ddl(&mut self, ddl: &Ddl, lsn: Lsn) -> Result<(), OpError> {
        match ddl {
            Ddl::CreateProject { project } => {
                if self.projects.contains_key(project) {
                    return Err(AlreadyExists::Project(project.clone()).into());
                }
                self.projects.insert(
                    project.clone(),
                    ProjectState {
                        created: lsn,
                        scopes: OrdSet::new(),
                    },
                );
            }
            Ddl::CreateScope { ns } => {
                let p = self
                    .projects
                    .get_mut(&ns.project)
                    .ok_or_else(|| NotFound::Project(ns.project.clone()))?;
                if p.scopes.contains(&ns.scope) {
                    return Err(AlreadyExists::Scope(ns.clone()).into());
                }
                p.scopes.insert(ns.scope.clone());
                self.namespaces.insert(
                    ns.clone(),
                    NamespaceState {
                        created: lsn,
                        kv: OrdMap::new(),
                        tables: OrdMap::new(),
                    },
                );
            }
            Ddl::CreateTable { ns, table, schema } => {
                let n = namespace_mut(&mut self.namespaces, &self.projects, ns)?;
                if n.tables.contains_key(table) {
                    return Err(AlreadyExists::Table {
                        ns: ns.clone(),
                        table: table.clone(),
                    }
                    .into());
                }
                n.tables.insert(
                    table.clone(),
                    TableState {
                        created: lsn,
                        schema: Arc::new(schema.clone()),
                        rows: OrdMap::new(),
                    },
                );
            }
            Ddl::DropTable { ns, table } => {
                let n = namespace_mut(&mut self.namespaces, &self.projects, ns)?;
                if n.tables.remove(table).is_none() {
                    return Err(NotFound::Table {
                        ns: ns.clone(),
                        table: table.clone(),
                    }
                    .into());
                }
            }
        }
        Ok(())
    }

    fn apply_mutation(
        &mut self,
        mutation: &Mutation,
        lsn: Lsn,
        effects: &mut Vec<Effect>,
    ) -> Result<(), OpError> {
        match mutation {
            Mutation::KvPut { ns, key, value } => {
                let n = namespace_mut(&mut self.namespaces, &self.projects, ns)?;
                put_kv(n, ns, key, value.clone(), lsn, effects);
            }
            Mutation::KvDelete { ns, key } => {
                let n = namespace_mut(&mut self.namespaces, &self.projects, ns)?;
                if n.kv.remove(key.as_bytes()).is_some() {
                    effects.push(Effect::KvDelete {
                        ns: ns.clone(),
                        key: key.clone(),
                    });
                }
            }
            Mutation::KvAdd { ns, key, delta } => {
                self.kv_numeric(ns, key, *delta, false, lsn, effects)?
            }
            Mutation::KvSub { ns, key, delta } => {
                self.kv_numeric(ns, key, *delta, true, lsn, effects)?
            }
            Mutation::TableInsert { ns, table, cells } => {
                let t = table_mut(&mut self.namespaces, &self.projects, ns, table)?;
                let err = row_error(ns, table);
                let row = t.schema.row_from_cells(cells).map_err(&err)?;
                let key = EncodedKey::for_row(&t.schema, &row).map_err(&err)?;
                if t.rows.contains_key(key.as_bytes()) {
                    return Err(OpError::DuplicatePrimaryKey {
                        ns: ns.clone(),
                        table: table.clone(),
                        key: key_of_row(&t.schema, &row),
                    });
                }
                put_row(t, key, row, lsn, ns, table, effects);
            }
            Mutation::TableUpsert { ns, table, cells } => {
                let t = table_mut(&mut self.namespaces, &self.projects, ns, table)?;
                let err = row_error(ns, table);
                let row = t.schema.row_from_cells(cells).map_err(&err)?;
                let key = EncodedKey::for_row(&t.schema, &row).map_err(&err)?;
                put_row(t, key, row, lsn, ns, table, effects);
            }
            Mutation::TableUpdate { ns, table, pk, set } => {
                let t = table_mut(&mut self.namespaces, &self.projects, ns, table)?;
                let err = row_error(ns, table);
                let mut key = Vec::new();
                encode_primary_key(&t.schema, pk, &mut key).map_err(&err)?;
                let updates = t.schema.check_update(set).map_err(&err)?;
                let Some((stored_key, old)) = t.rows.get_key_value(key.as_slice()) else {
                    return Err(OpError::RowNotFound {
                        ns: ns.clone(),
                        table: table.clone(),
                        key: show_key(pk),
                    });
                };
                let stored_key = stored_key.clone();
                let mut row = old.values.to_vec();
                for (i, v) in updates {
                    row[i] = v;
                }
                put_row(t, stored_key, row, lsn, ns, table, effects);
            }
            Mutation::TableDelete { ns, table, pk } => {
                let t = table_mut(&mut self.namespaces, &self.projects, ns, table)?;
                let mut key = Vec::new();
                encode_primary_key(&t.schema, pk, &mut key).map_err(row_error(ns, table))?;
                if t.rows.remove(key.as_slice()).is_some() {
                    effects.push(Effect::RowDelete {
                        ns: ns.clone(),
                        table: table.clone(),
                        pk: pk.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    fn kv_numeric(
        &mut self,
        ns: &Namespace,
        key: &KvKey,
        delta: Numeric,
        subtract: bool,
        lsn: Lsn,
        effects: &mut Vec<Effect>,
    ) -> Result<(), OpError> {
        let n = namespace_mut(&mut self.namespaces, &self.projects, ns)?;
        let ty = delta.ty();
        let current = Numeric::decode(ty, n.kv.get(key.as_bytes()).map(|e| e.value.as_bytes()))
            .map_err(|source| OpError::WrongNumericWidth {
                ns: ns.clone(),
                key: key.clone(),
                source,
            })?;
        let result = match current.checked_apply(delta, subtract) {
            Some(Ok(v)) => v,
            Some(Err(OutOfRange::Overflow)) => {
                return Err(OpError::Overflow {
                    ns: ns.clone(),
                    key: key.clone(),
                    ty,
                });
            }
            // `current` is decoded as `delta`'s type, so the types always match.
            Some(Err(OutOfRange::Underflow)) | None => {
                return Err(OpError::Underflow {
                    ns: ns.clone(),
                    key: key.clone(),
                    ty,
                });
            }
        };
        put_kv(n, ns, key, result.to_value(), lsn, effects);
        Ok(())
    }

    fn replay_effect(&mut self, index: u32, effect: &Effect, lsn: Lsn) -> Result<(), ReplayError> {
        let wrap = |source: OpError| ReplayError::Effect { index, source };
        match effect {
            Effect::KvPut { ns, key, value } => {
                let n = namespace_mut(&mut self.namespaces, &self.projects, ns)
                    .map_err(|e| wrap(e.into()))?;
                n.kv.insert(
                    key.clone(),
                    KvEntry {
                        value: value.clone(),
                        lsn,
                    },
                );
            }
            Effect::KvDelete { ns, key } => {
                let n = namespace_mut(&mut self.namespaces, &self.projects, ns)
                    .map_err(|e| wrap(e.into()))?;
                if n.kv.remove(key.as_bytes()).is_none() {
                    return Err(ReplayError::DeleteOfMissingKey {
                        index,
                        ns: ns.clone(),
                        key: key.clone(),
                    });
                }
            }
            Effect::RowPut { ns, table, row } => {
                let t = table_mut(&mut self.namespaces, &self.projects, ns, table)
                    .map_err(|e| wrap(e.into()))?;
                let err = |source| wrap(row_error(ns, table)(source));
                t.schema.check_row(row).map_err(err)?;
                let key = EncodedKey::for_row(&t.schema, row).map_err(err)?;
                t.rows.insert(
                    key,
                    Row {
                        values: row.clone(),
                        lsn,
                    },
                );
            }
            Effect::RowDelete { ns, table, pk } => {
                let t = table_mut(&mut self.namespaces, &self.projects, ns, table)
                    .map_err(|e| wrap(e.into()))?;
                let mut key = Vec::new();
                encode_primary_key(&t.schema, pk, &mut key)
                    .map_err(|source| wrap(row_error(ns, table)(source)))?;
                if t.rows.remove(key.as_slice()).is_none() {
                    return Err(ReplayError::DeleteOfMissingRow {
                        index,
                        ns: ns.clone(),
                        table: table.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn put_row(
    t: &mut TableState,
    key: EncodedKey,
    row: Vec<Value>,
    lsn: Lsn,
    ns: &Namespace,
    table: &TableName,
    effects: &mut Vec<Effect>,
) {
    let values: Arc<[Value]> = Arc::from(row);
    t.rows.insert(
        key,
        Row {
            values: values.clone(),
            lsn,
        },
    );
    effects.push(Effect::RowPut {
        ns: ns.clone(),
        table: table.clone(),
        row: values,
    });
}
