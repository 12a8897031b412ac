//! The database state owned by the single writer, and everything that changes it:
//! transactions, DDL, recorded rejections and replayed records.
//!
//! A [`State`] is a small catalog (projects, scopes, tables and their schemas, in
//! persistent imbl maps) plus a storage [`View`]: every KV entry, row, catalog entry and
//! idempotency record lives in the LSM (`aedb-storage`) under the keys of
//! `crate::keyspace`, versioned by the LSN that wrote it. Cloning a state is a few
//! `Arc` increments and a clone is a snapshot: it reads as of its own LSN, so commits
//! applied after it are invisible to it although they go into the same memtable.
//!
//! A change is computed first ([`State::stage`]: assertions against the state, then
//! mutations into a private overlay that later mutations of the same transaction read
//! through) and installed only when the caller accepts it ([`Staged::install`]), so a
//! failed or refused transaction writes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

use aedb_storage::EntryKind;
use aedb_storage::{Direction, Memtable, Scan, View};
use aedb_types::Lsn;
use imbl::{OrdMap, OrdSet};

use crate::assertion::Verdict;
use crate::codec::{ReadModel, Reader, put_values};
use crate::error::{
    AlreadyExists, ApplyError, NotFound, OpError, ReadError, ReplayError, Unreadable,
};
use crate::idempotency::{
    IdempotencyKey, IdempotencyRecord, IdempotencyRetention, Outcome, Rejection, RequestStamp,
};
use crate::key::{EncodedKey, KeyRange, encode_primary_key};
use crate::keyspace::{self, CatalogEntry};
use crate::kv::{KvEntry, KvKey, KvValue};
use crate::mutation::{Ddl, Mutation};
use crate::name::{Namespace, ProjectName, ScopeName, TableName};
use crate::numeric::{Numeric, NumericType, OutOfRange};
use crate::record::{CommitRecord, Effect};
use crate::row::Row;
use crate::scan::Page;
use crate::schema::{RowError, TableSchema};
use crate::transaction::Transaction;
use crate::value::Value;

/// A project: when it was created and its scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProjectState {
    pub(crate) created: Lsn,
    pub(crate) scopes: OrdSet<ScopeName>,
}

/// A scope: when it was created and its tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamespaceState {
    pub(crate) created: Lsn,
    pub(crate) tables: OrdMap<TableName, TableState>,
}

/// A table: its id (the LSN that created it) and schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TableState {
    pub(crate) created: Lsn,
    pub(crate) schema: Arc<TableSchema>,
}

/// Projects, scopes and tables: small, kept in memory, stored in the LSM too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Catalog {
    pub(crate) projects: OrdMap<ProjectName, ProjectState>,
    pub(crate) namespaces: OrdMap<Namespace, NamespaceState>,
}

impl Catalog {
    fn namespace(&self, ns: &Namespace) -> Result<&NamespaceState, NotFound> {
        self.namespaces.get(ns).ok_or_else(|| {
            if self.projects.contains_key(&ns.project) {
                NotFound::Scope(ns.clone())
            } else {
                NotFound::Project(ns.project.clone())
            }
        })
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

    /// Rebuilds the catalog from the catalog entries visible in `view`.
    fn load(view: &View) -> Result<Catalog, Unreadable> {
        let (lo, hi) = keyspace::prefix_bounds(vec![keyspace::CATALOG]);
        let mut c = Catalog::default();
        let mut scopes = Vec::new();
        let mut tables = Vec::new();
        for item in view.scan(lo, hi, Direction::Forward)? {
            let item = item?;
            match keyspace::decode_catalog(&item.key, &item.value)
                .map_err(|e| Unreadable::entry("catalog", &e))?
            {
                CatalogEntry::Project { project, created } => {
                    c.projects.insert(
                        project,
                        ProjectState {
                            created,
                            scopes: OrdSet::new(),
                        },
                    );
                }
                CatalogEntry::Scope { ns, created } => scopes.push((ns, created)),
                CatalogEntry::Table {
                    ns,
                    table,
                    created,
                    schema,
                } => tables.push((ns, table, created, schema)),
            }
        }
        // Keys sort projects before scopes before tables, so parents exist by now.
        for (ns, created) in scopes {
            let p = c
                .projects
                .get_mut(&ns.project)
                .ok_or_else(|| Unreadable::message("catalog: a scope of a missing project"))?;
            p.scopes.insert(ns.scope.clone());
            c.namespaces.insert(
                ns,
                NamespaceState {
                    created,
                    tables: OrdMap::new(),
                },
            );
        }
        for (ns, table, created, schema) in tables {
            let n = c
                .namespaces
                .get_mut(&ns)
                .ok_or_else(|| Unreadable::message("catalog: a table of a missing scope"))?;
            n.tables.insert(
                table,
                TableState {
                    created,
                    schema: Arc::new(schema),
                },
            );
        }
        Ok(c)
    }
}

/// What the single writer knows about a commit besides the transaction: when it is
/// sequenced (stored in the records of idempotency keys) and how long idempotency
/// records are honoured.
///
/// The default (time 0, records honoured forever) is what [`State::stage`] uses;
/// the Sequencer passes its clock and the configured retention to
/// [`State::stage_in`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitContext {
    /// Milliseconds since the Unix epoch (the writer's clock, never decreasing).
    pub at_unix_ms: u64,
    /// How long idempotency records are honoured.
    pub retention: IdempotencyRetention,
}

impl Default for CommitContext {
    fn default() -> CommitContext {
        CommitContext {
            at_unix_ms: 0,
            retention: IdempotencyRetention::forever(),
        }
    }
}

/// The compaction filter of the data model: an idempotency record expires when it is
/// past `retention` as seen from the compaction's retention floor (its LSN window) and
/// from `now_unix_ms` (its time window). Every snapshot that can still be opened reads
/// at or after the floor, and every later commit is sequenced after both, so a
/// dropped record is one no later commit would honour. Anything else (other keys,
/// records that do not decode) is kept.
#[derive(Clone, Copy, Debug)]
pub struct IdempotencyExpiry {
    /// The configured retention.
    pub retention: IdempotencyRetention,
    /// The LSN the window is measured from: the compaction's retention floor, or the
    /// flushed LSN when that is lower (a record must stay while a recovery or restore
    /// can come back to a commit that still honours it).
    pub floor: Lsn,
    /// The compactor's clock.
    pub now_unix_ms: u64,
}

impl IdempotencyExpiry {
    /// Whether every key from `first` to `last` is an idempotency record and every
    /// version of them up to `max_lsn` is past the window by LSN at the floor (a record
    /// is written at its commit's LSN): a run with these bounds holds nothing a commit
    /// still honours, and can be removed unread where it holds its keys' oldest
    /// versions. Records past the window only by age are not found this way (that
    /// needs their stamps): merges drop those.
    pub fn expires_every_record_between(&self, first: &[u8], last: &[u8], max_lsn: Lsn) -> bool {
        first.first() == Some(&keyspace::IDEMPOTENCY)
            && last.first() == Some(&keyspace::IDEMPOTENCY)
            && self.retention.expired_by_lsn(max_lsn, self.floor)
    }
}

impl aedb_storage::compaction::CompactionFilter for IdempotencyExpiry {
    fn expired(&self, key: &[u8], _lsn: Lsn, value: &[u8]) -> bool {
        key.first() == Some(&keyspace::IDEMPOTENCY)
            && keyspace::decode_idempotency(value)
                .is_ok_and(|r| self.retention.expired(&r, self.floor, self.now_unix_ms))
    }
}

/// The compaction filter for rows of dropped tables, built from the state at the
/// compaction's retention floor ([`State::dropped_table_rows`]): a row is expired when
/// its table (namespace and table id) is not one of that state's tables.
///
/// It is asked only about versions at or below the floor, and a row was written while
/// its table existed; a table missing from the floor's catalog was therefore dropped at
/// or before the floor, and no snapshot that can still be opened (they all read at or
/// after it) sees the table. Table ids are creating LSNs, never reused, so a table
/// created again under the same name does not bring the old rows back; compaction
/// frees their space.
#[derive(Clone, Debug)]
pub struct DroppedTableRows {
    /// The row prefix (`3 ‖ project ‖ scope ‖ table id`) of every table that exists;
    /// `None` expires nothing ([`DroppedTableRows::none`]).
    live: Option<std::collections::HashSet<Vec<u8>>>,
}

impl DroppedTableRows {
    /// A filter that expires nothing (every row is treated as live): the safe choice
    /// when the catalog cannot be read.
    pub fn none() -> DroppedTableRows {
        DroppedTableRows { live: None }
    }

    /// Whether every key from `first` to `last` is a row of one table this filter
    /// finds dropped (both are rows of the same dropped table; the keys between share
    /// their table prefix): a run holding only such keys can be removed unread.
    pub fn drops_every_key_between(&self, first: &[u8], last: &[u8]) -> bool {
        let Some(live) = &self.live else {
            return false;
        };
        match (
            keyspace::row_table_prefix(first),
            keyspace::row_table_prefix(last),
        ) {
            (Some(a), Some(b)) => a == b && !live.contains(a),
            _ => false,
        }
    }
}

impl aedb_storage::compaction::CompactionFilter for DroppedTableRows {
    fn expired(&self, key: &[u8], _lsn: Lsn, _value: &[u8]) -> bool {
        self.live.as_ref().is_some_and(|live| {
            keyspace::row_table_prefix(key).is_some_and(|table| !live.contains(table))
        })
    }
}

/// Everything the data model lets a compaction discard, counted by kind: expired
/// idempotency records ([`IdempotencyExpiry`]) and rows of dropped tables
/// ([`DroppedTableRows`]).
#[derive(Debug)]
pub struct ModelExpiry {
    idempotency: IdempotencyExpiry,
    dropped: DroppedTableRows,
    expired_records: std::sync::atomic::AtomicU64,
    dropped_rows: std::sync::atomic::AtomicU64,
}

impl ModelExpiry {
    /// Both filters, with nothing counted yet.
    pub fn new(idempotency: IdempotencyExpiry, dropped: DroppedTableRows) -> ModelExpiry {
        ModelExpiry {
            idempotency,
            dropped,
            expired_records: Default::default(),
            dropped_rows: Default::default(),
        }
    }

    /// Idempotency records found expired so far.
    pub fn expired_idempotency_records(&self) -> u64 {
        self.expired_records
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Rows of dropped tables found so far.
    pub fn dropped_table_rows(&self) -> u64 {
        self.dropped_rows.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl aedb_storage::compaction::CompactionFilter for ModelExpiry {
    fn expired(&self, key: &[u8], lsn: Lsn, value: &[u8]) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if self.idempotency.expired(key, lsn, value) {
            self.expired_records.fetch_add(1, Relaxed);
            true
        } else if self.dropped.expired(key, lsn, value) {
            self.dropped_rows.fetch_add(1, Relaxed);
            true
        } else {
            false
        }
    }
}

/// The whole database at one LSN. Cheap to clone; clones are snapshots.
#[derive(Clone)]
pub struct State {
    lsn: Lsn,
    catalog: Catalog,
    view: View,
}

impl Default for State {
    fn default() -> State {
        State::new()
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("lsn", &self.lsn)
            .field("projects", &self.catalog.projects.len())
            .field("namespaces", &self.catalog.namespaces.len())
            .field("memtables", &self.view.memtables().len())
            .finish()
    }
}

/// Two states are equal when they hold the same LSN, catalog and visible contents
/// (a full scan of both; an unreadable entry makes them unequal).
impl PartialEq for State {
    fn eq(&self, other: &State) -> bool {
        if self.lsn != other.lsn || self.catalog != other.catalog {
            return false;
        }
        let all = || (Bound::Unbounded, Bound::Unbounded);
        let (Ok(a), Ok(b)) = (
            self.view.scan(all().0, all().1, Direction::Forward),
            other.view.scan(all().0, all().1, Direction::Forward),
        ) else {
            return false;
        };
        let mut b = b;
        for x in a {
            match (x, b.next()) {
                (Ok(x), Some(Ok(y))) if x == y => {}
                _ => return false,
            }
        }
        b.next().is_none()
    }
}

impl Eq for State {}

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

/// Whether byte bounds certainly select nothing.
fn bounds_empty(start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    match (start, end) {
        (Bound::Included(s), Bound::Included(e)) => s > e,
        (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
        | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
        _ => false,
    }
}

/// `bound` (relative to a KV space or table) as a storage-key bound under `prefix`;
/// unbounded ends become the range's own ends.
fn under(prefix: &[u8], bound: Bound<&[u8]>, start: bool) -> Bound<Vec<u8>> {
    let with = |k: &[u8]| {
        let mut v = prefix.to_vec();
        v.extend_from_slice(k);
        v
    };
    match bound {
        Bound::Included(k) => Bound::Included(with(k)),
        Bound::Excluded(k) => Bound::Excluded(with(k)),
        Bound::Unbounded if start => Bound::Included(prefix.to_vec()),
        Bound::Unbounded => keyspace::prefix_bounds(prefix.to_vec()).1,
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn kv_entry_from(lsn: Lsn, value: Vec<u8>) -> Result<KvEntry, Unreadable> {
    Ok(KvEntry {
        value: KvValue::from_vec(value)
            .map_err(|_| Unreadable::message("a stored KV value over the size limit"))?,
        lsn,
    })
}

pub(crate) fn row_from(lsn: Lsn, bytes: &[u8]) -> Result<Row, Unreadable> {
    let mut r = Reader::new("row", bytes);
    let values = r
        .values_arc("row value")
        .and_then(|v| r.finish().map(|()| v))
        .map_err(|e| Unreadable::entry("row", &e))?;
    Ok(Row { values, lsn })
}

pub(crate) fn encode_row(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    put_values(&mut out, values);
    out
}

impl State {
    /// An empty state at [`Lsn::ZERO`] over a fresh, empty memtable.
    pub fn new() -> State {
        State {
            lsn: Lsn::ZERO,
            catalog: Catalog::default(),
            view: View::empty(),
        }
    }

    /// The state stored in `view` (recovery: the runs of the manifest's version and the
    /// memtable the WAL is replayed into), as of the view's LSN.
    ///
    /// # Errors
    /// The catalog entries cannot be read or decoded.
    pub fn from_view(view: View) -> Result<State, ReadError> {
        Ok(State {
            lsn: view.lsn(),
            catalog: Catalog::load(&view)?,
            view,
        })
    }

    /// The LSN of the last applied commit, DDL or recorded rejection.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// The storage view this state reads.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// This state with its view's sources replaced (after a memtable was frozen or a
    /// version edit installed). `view` must hold the same data as of this state's LSN.
    pub fn with_view(&self, view: View) -> State {
        State {
            lsn: self.lsn,
            catalog: self.catalog.clone(),
            view: view.at(self.lsn),
        }
    }

    /// The state as of an earlier `lsn`, read from the same sources (the catalog is
    /// re-read as of `lsn`). Versions older than what the sources still hold read as
    /// their newest surviving version; callers check the retention window first.
    ///
    /// # Errors
    /// `lsn` is after this state's, or the catalog cannot be read.
    pub fn as_of(&self, lsn: Lsn) -> Result<State, ReadError> {
        if lsn > self.lsn {
            return Err(ReadError::FutureLsn {
                requested: lsn,
                current: self.lsn,
            });
        }
        State::from_view(self.view.at(lsn))
    }

    /// The filter that lets a compaction whose retention floor is this state's LSN
    /// drop the rows of every table this state no longer has (see
    /// [`DroppedTableRows`]).
    pub fn dropped_table_rows(&self) -> DroppedTableRows {
        let live = self
            .catalog
            .namespaces
            .iter()
            .flat_map(|(ns, n)| {
                n.tables
                    .values()
                    .map(move |t| keyspace::row_prefix(ns, t.created))
            })
            .collect();
        DroppedTableRows { live: Some(live) }
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

    pub(crate) fn kv_entry(&self, ns: &Namespace, key: &[u8]) -> Result<Option<KvEntry>, OpError> {
        self.catalog.namespace(ns)?;
        match self
            .view
            .get(&keyspace::kv_key(ns, key))
            .map_err(Unreadable::from)?
        {
            None => Ok(None),
            Some((lsn, v)) => Ok(Some(kv_entry_from(lsn, v)?)),
        }
    }

    pub(crate) fn row_lookup(
        &self,
        ns: &Namespace,
        table: &TableName,
        pk: &[Value],
    ) -> Result<(Option<Row>, Arc<TableSchema>), OpError> {
        let t = self.catalog.table(ns, table)?;
        let mut key = Vec::new();
        encode_primary_key(&t.schema, pk, &mut key).map_err(row_error(ns, table))?;
        let stored = self
            .view
            .get(&keyspace::row_key(ns, t.created, &key))
            .map_err(Unreadable::from)?;
        let row = stored.map(|(lsn, v)| row_from(lsn, &v)).transpose()?;
        Ok((row, t.schema.clone()))
    }

    /// The entry stored at `key`, if any.
    pub fn kv_get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<KvEntry>, ReadError> {
        self.kv_entry(ns, key).map_err(ReadError::from_op)
    }

    /// The number stored at `key` as `ty` (a missing key is zero).
    pub fn kv_get_numeric(
        &self,
        ns: &Namespace,
        key: &[u8],
        ty: NumericType,
    ) -> Result<Numeric, ReadError> {
        let Some(e) = self.kv_get(ns, key)? else {
            return Ok(ty.zero());
        };
        Numeric::decode(ty, Some(e.value.as_bytes())).map_err(|source| {
            match KvKey::new(key) {
                Ok(key) => ReadError::WrongNumericWidth { key, source },
                // A stored key is always a valid key.
                Err(_) => Unreadable::message("a stored KV key out of limits").into(),
            }
        })
    }

    /// Warms the block cache for the storage keys a transaction's assertions and
    /// mutations touch, so the single writer finds them in memory. Run on the
    /// committing caller's thread before the transaction is sequenced; errors are
    /// left for the writer to report.
    pub fn prefetch(&self, tx: &Transaction) {
        let mut keys = crate::evaluate::touched_keys(self, tx);
        // A key asserted on and written (a transfer's payer) is read once.
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            // A failed read here is reported when the writer reads the key.
            let _ = self.view.prefetch(&key);
        }
    }

    /// The storage key of a KV entry (for prefetching).
    pub(crate) fn storage_kv_key(&self, ns: &Namespace, key: &[u8]) -> Vec<u8> {
        keyspace::kv_key(ns, key)
    }

    /// The storage key of a row (for prefetching), if the table exists and `pk` fits.
    pub(crate) fn storage_row_key(
        &self,
        ns: &Namespace,
        table: &TableName,
        pk: &[Value],
    ) -> Option<Vec<u8>> {
        let t = self.catalog.table(ns, table).ok()?;
        let mut key = Vec::new();
        encode_primary_key(&t.schema, pk, &mut key).ok()?;
        Some(keyspace::row_key(ns, t.created, &key))
    }

    /// Entries whose key starts with `prefix` (all entries for an empty prefix).
    pub fn kv_scan_prefix(
        &self,
        ns: &Namespace,
        prefix: &[u8],
        direction: Direction,
        limit: usize,
    ) -> Result<Page<(KvKey, KvEntry)>, ReadError> {
        let end = crate::key::prefix_successor(prefix);
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
        Page::try_collect(self.kv_iter(ns, start, end, direction)?, limit)
    }

    /// Visits the entries with keys between `start` and `end`, in `direction`, at most
    /// `limit` of them, handing each to `visit` as `(key, value, lsn)` borrowed from the
    /// block or memtable that holds it: nothing is copied or allocated per entry.
    /// `visit` returns [`ControlFlow::Break`] to stop early. Returns how many entries
    /// were visited.
    ///
    /// # Errors
    /// The namespace does not exist, or a block could not be read or authenticated
    /// (entries visited before it stay visited).
    pub fn kv_visit(
        &self,
        ns: &Namespace,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
        limit: usize,
        mut visit: impl FnMut(&[u8], &[u8], Lsn) -> ControlFlow<()>,
    ) -> Result<usize, ReadError> {
        let Some((mut scan, skip)) = self.kv_scan(ns, start, end, direction)? else {
            return Ok(0);
        };
        let mut visited = 0;
        while visited < limit {
            let flow = scan.next_with(|key, lsn, value| visit(&key[skip..], value, lsn));
            match flow {
                None => break,
                Some(Err(e)) => return Err(ReadError::from(Unreadable::from(e))),
                Some(Ok(flow)) => {
                    visited += 1;
                    if flow.is_break() {
                        break;
                    }
                }
            }
        }
        Ok(visited)
    }

    /// Entries with keys between `start` and `end`, in `direction`, as a lazy iterator:
    /// blocks are read as it reaches them.
    pub fn kv_iter(
        &self,
        ns: &Namespace,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<impl Iterator<Item = Result<(KvKey, KvEntry), ReadError>> + use<>, ReadError> {
        let mut scan = self.kv_scan(ns, start, end, direction)?;
        // Keys and values are built straight from the borrowed entries (one copy each).
        Ok(std::iter::from_fn(move || {
            let (scan, skip) = scan.as_mut()?;
            let skip = *skip;
            let item = scan.next_with(|key, lsn, value| {
                let key = KvKey::new(&key[skip..])
                    .map_err(|_| Unreadable::message("a stored KV key out of limits"))?;
                let value = KvValue::new(value)
                    .map_err(|_| Unreadable::message("a stored KV value over the size limit"))?;
                Ok::<_, Unreadable>((key, KvEntry { value, lsn }))
            })?;
            Some(
                item.map_err(Unreadable::from)
                    .and_then(|r| r)
                    .map_err(ReadError::from),
            )
        }))
    }

    /// The scan under the namespace's KV prefix and the prefix's length (what to strip
    /// from stored keys), or `None` for bounds no key can fall between.
    fn kv_scan(
        &self,
        ns: &Namespace,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<Option<(Scan, usize)>, ReadError> {
        self.catalog.namespace(ns)?;
        if bounds_empty(start, end) {
            return Ok(None);
        }
        let prefix = keyspace::kv_prefix(ns);
        let scan = self.scan_under(&prefix, start, end, direction)?;
        Ok(Some((scan, prefix.len())))
    }

    /// Number of keys in the namespace's KV space (a scan).
    pub fn kv_len(&self, ns: &Namespace) -> Result<usize, ReadError> {
        let mut n = 0;
        for item in self.kv_iter(ns, Bound::Unbounded, Bound::Unbounded, Direction::Forward)? {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// The row with primary key `pk` (values in key order), if any.
    pub fn table_get(
        &self,
        ns: &Namespace,
        table: &TableName,
        pk: &[Value],
    ) -> Result<Option<Row>, ReadError> {
        match self.row_lookup(ns, table, pk) {
            Ok((row, _)) => Ok(row),
            Err(OpError::Row { source, .. }) => Err(ReadError::Row {
                table: table.clone(),
                source,
            }),
            Err(e) => Err(ReadError::from_op(e)),
        }
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
        Page::try_collect(self.table_iter(ns, table, range, direction)?, limit)
    }

    /// Rows whose primary keys fall in `range`, in `direction`, as a lazy iterator.
    pub fn table_iter(
        &self,
        ns: &Namespace,
        table: &TableName,
        range: &KeyRange,
        direction: Direction,
    ) -> Result<impl Iterator<Item = Result<Row, ReadError>> + use<>, ReadError> {
        let scan = self.table_scan_iter(ns, table, range, direction)?;
        Ok(scan.into_iter().flatten().map(|item| {
            let item = item.map_err(Unreadable::from)?;
            Ok(row_from(item.lsn, &item.value)?)
        }))
    }

    fn table_scan_iter(
        &self,
        ns: &Namespace,
        table: &TableName,
        range: &KeyRange,
        direction: Direction,
    ) -> Result<Option<Scan>, ReadError> {
        let t = self.catalog.table(ns, table)?;
        let bounds = range
            .to_byte_bounds(&t.schema)
            .map_err(|source| ReadError::Row {
                table: table.clone(),
                source,
            })?;
        let Some((start, end)) = bounds else {
            return Ok(None);
        };
        let (start, end) = (as_ref(&start), as_ref(&end));
        if bounds_empty(start, end) {
            return Ok(None);
        }
        let prefix = keyspace::row_prefix(ns, t.created);
        Ok(Some(self.scan_under(&prefix, start, end, direction)?))
    }

    /// A scan of the keys under `prefix` between `start` and `end` (relative to it).
    fn scan_under(
        &self,
        prefix: &[u8],
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
    ) -> Result<Scan, Unreadable> {
        Ok(self.view.scan(
            under(prefix, start, true),
            under(prefix, end, false),
            direction,
        )?)
    }

    /// Number of rows in a table (a scan).
    pub fn table_len(&self, ns: &Namespace, table: &TableName) -> Result<usize, ReadError> {
        let Some(scan) = self.table_scan_iter(ns, table, &KeyRange::all(), Direction::Forward)?
        else {
            return Ok(0);
        };
        let mut n = 0;
        for item in scan {
            item.map_err(Unreadable::from)?;
            n += 1;
        }
        Ok(n)
    }

    /// The schema of a table.
    pub fn table_schema(
        &self,
        ns: &Namespace,
        table: &TableName,
    ) -> Result<&TableSchema, ReadError> {
        Ok(&self.catalog.table(ns, table)?.schema)
    }

    /// All projects, in name order.
    pub fn projects(&self) -> impl Iterator<Item = &ProjectName> + '_ {
        self.catalog.projects.keys()
    }

    /// Whether the project exists.
    pub fn has_project(&self, project: &ProjectName) -> bool {
        self.catalog.projects.contains_key(project)
    }

    /// The scopes of a project, in name order.
    pub fn scopes(
        &self,
        project: &ProjectName,
    ) -> Result<impl Iterator<Item = &ScopeName> + '_, ReadError> {
        let p = self
            .catalog
            .projects
            .get(project)
            .ok_or_else(|| NotFound::Project(project.clone()))?;
        Ok(p.scopes.iter())
    }

    /// Whether the namespace (project and scope) exists.
    pub fn has_namespace(&self, ns: &Namespace) -> bool {
        self.catalog.namespaces.contains_key(ns)
    }

    /// The tables of a namespace, in name order.
    pub fn tables(
        &self,
        ns: &Namespace,
    ) -> Result<impl Iterator<Item = &TableName> + '_, ReadError> {
        Ok(self.catalog.namespace(ns)?.tables.keys())
    }

    /// The remembered outcome of an idempotency key, if it was used.
    ///
    /// # Errors
    /// The record cannot be read or decoded.
    pub fn idempotency(&self, key: &[u8]) -> Result<Option<IdempotencyRecord>, ReadError> {
        let stored = self
            .view
            .get(&keyspace::idempotency_key(key))
            .map_err(Unreadable::from)?;
        Ok(stored
            .map(|(_, v)| keyspace::decode_idempotency(&v))
            .transpose()
            .map_err(|e| Unreadable::entry("idempotency record", &e))?)
    }

    /// Every remembered idempotency key and its outcome, in key order (a lazy scan).
    pub fn idempotency_iter(
        &self,
    ) -> Result<
        impl Iterator<Item = Result<(IdempotencyKey, IdempotencyRecord), ReadError>> + use<>,
        ReadError,
    > {
        let (lo, hi) = keyspace::prefix_bounds(vec![keyspace::IDEMPOTENCY]);
        let scan = self
            .view
            .scan(lo, hi, Direction::Forward)
            .map_err(Unreadable::from)?;
        Ok(scan.map(|item| {
            let item = item.map_err(Unreadable::from)?;
            let key = IdempotencyKey::new(&item.key[1..])
                .map_err(|_| Unreadable::message("a stored idempotency key out of limits"))?;
            let rec = keyspace::decode_idempotency(&item.value)
                .map_err(|e| Unreadable::entry("idempotency record", &e))?;
            Ok((key, rec))
        }))
    }

    /// Number of remembered idempotency keys (a scan).
    ///
    /// # Errors
    /// A record cannot be read or decoded.
    pub fn idempotency_len(&self) -> Result<usize, ReadError> {
        let mut n = 0;
        for item in self.idempotency_iter()? {
            item?;
            n += 1;
        }
        Ok(n)
    }

    // ------------------------------------------------------------------ writes

    fn txn(&self, lsn: Lsn) -> Txn<'_> {
        Txn {
            base: self,
            catalog: self.catalog.clone(),
            writes: BTreeMap::new(),
            lsn,
        }
    }

    /// [`State::stage_in`] at time 0 with idempotency records honoured forever.
    pub fn stage(&self, tx: &Transaction, lsn: Lsn) -> Result<(Staged, CommitRecord), ApplyError> {
        self.stage_in(tx, lsn, &CommitContext::default())
    }

    /// The record of idempotency key `key` that a commit at `lsn` in `ctx` honours:
    /// none if there is none or it is past the retention window.
    fn live_idempotency(
        &self,
        key: &IdempotencyKey,
        lsn: Lsn,
        ctx: &CommitContext,
    ) -> Result<Option<IdempotencyRecord>, ApplyError> {
        let found = self
            .idempotency(key.as_bytes())
            .map_err(ApplyError::from_read)?;
        Ok(found.filter(|r| !ctx.retention.expired(r, lsn, ctx.at_unix_ms)))
    }

    /// Computes a transaction at `lsn` (which must be after [`State::lsn`]) without
    /// installing it, sequenced at `ctx.at_unix_ms`.
    ///
    /// Order: an idempotency key with a record inside `ctx.retention` returns
    /// [`ApplyError::AlreadySeen`] with the original outcome when the request's
    /// fingerprint equals the stored one (or none is stored: records of format
    /// version 1), and [`ApplyError::IdempotencyMismatch`] when it differs; a record
    /// past the window counts as absent (the key is used anew and its record
    /// replaced). Then every assertion is evaluated against `self`; then the
    /// mutations apply in order to a private overlay. On success returns the change
    /// and the resolved record to log (with the request's fingerprint and time when
    /// it has a key); on any error nothing is written.
    pub fn stage_in(
        &self,
        tx: &Transaction,
        lsn: Lsn,
        ctx: &CommitContext,
    ) -> Result<(Staged, CommitRecord), ApplyError> {
        self.check_lsn(lsn)?;
        let mut request = None;
        if let Some(key) = &tx.idempotency_key {
            let stamp = RequestStamp {
                fingerprint: tx.fingerprint(),
                at_unix_ms: ctx.at_unix_ms,
            };
            if let Some(original) = self.live_idempotency(key, lsn, ctx)? {
                return Err(match original.request {
                    Some(stored) if stored.fingerprint != stamp.fingerprint => {
                        ApplyError::IdempotencyMismatch {
                            key: key.clone(),
                            original_lsn: original.lsn,
                        }
                    }
                    _ => ApplyError::AlreadySeen {
                        key: key.clone(),
                        original,
                    },
                });
            }
            request = Some(stamp);
        }
        for (i, assertion) in tx.assertions.iter().enumerate() {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            match assertion.evaluate(self) {
                Ok(Verdict::Holds) => {}
                Ok(Verdict::Fails(detail)) => {
                    return Err(ApplyError::AssertionFailed { index, detail });
                }
                Err(OpError::Unreadable(e)) => return Err(ApplyError::Unreadable(e)),
                Err(source) => return Err(ApplyError::InvalidAssertion { index, source }),
            }
        }
        let mut txn = self.txn(lsn);
        let mut effects = Vec::with_capacity(tx.mutations.len());
        for (i, m) in tx.mutations.iter().enumerate() {
            txn.apply_mutation(m, &mut effects)
                .map_err(|source| match source {
                    OpError::Unreadable(e) => ApplyError::Unreadable(e),
                    source => ApplyError::Mutation {
                        index: u32::try_from(i).unwrap_or(u32::MAX),
                        source,
                    },
                })?;
        }
        if let Some(key) = &tx.idempotency_key {
            txn.remember(key, Outcome::Committed, request);
        }
        let record = CommitRecord::Commit {
            idempotency_key: tx.idempotency_key.clone(),
            request,
            effects,
        };
        Ok((txn.into_staged(), record))
    }

    /// [`State::stage`], installed: returns the new state and the record to log.
    pub fn apply(&self, tx: &Transaction, lsn: Lsn) -> Result<(State, CommitRecord), ApplyError> {
        let (staged, record) = self.stage(tx, lsn)?;
        Ok((staged.install()?, record))
    }

    /// Computes a DDL statement at `lsn` without installing it.
    pub fn stage_ddl(&self, ddl: &Ddl, lsn: Lsn) -> Result<(Staged, CommitRecord), ApplyError> {
        self.check_lsn(lsn)?;
        let mut txn = self.txn(lsn);
        txn.ddl(ddl).map_err(|e| match e {
            OpError::Unreadable(e) => ApplyError::Unreadable(e),
            e => ApplyError::Ddl(e),
        })?;
        Ok((txn.into_staged(), CommitRecord::Ddl(ddl.clone())))
    }

    /// Applies a DDL statement at `lsn`; returns the new state and its record.
    pub fn apply_ddl(&self, ddl: &Ddl, lsn: Lsn) -> Result<(State, CommitRecord), ApplyError> {
        let (staged, record) = self.stage_ddl(ddl, lsn)?;
        Ok((staged.install()?, record))
    }

    /// Computes, at `lsn`, remembering that the transaction with `key` was rejected, so
    /// a retry returns `rejection`. No fingerprint is stored (any retry with the key
    /// replays the rejection) and records are honoured forever; the Sequencer records
    /// rejections through [`State::stage_reject_in`].
    pub fn stage_rejection(
        &self,
        key: &IdempotencyKey,
        rejection: Rejection,
        lsn: Lsn,
    ) -> Result<(Staged, CommitRecord), ApplyError> {
        self.stage_rejection_in(key, None, rejection, lsn, &CommitContext::default())
    }

    fn stage_rejection_in(
        &self,
        key: &IdempotencyKey,
        request: Option<RequestStamp>,
        rejection: Rejection,
        lsn: Lsn,
        ctx: &CommitContext,
    ) -> Result<(Staged, CommitRecord), ApplyError> {
        self.check_lsn(lsn)?;
        if let Some(original) = self.live_idempotency(key, lsn, ctx)? {
            return Err(ApplyError::AlreadySeen {
                key: key.clone(),
                original,
            });
        }
        let mut txn = self.txn(lsn);
        txn.remember(key, Outcome::Rejected(rejection.clone()), request);
        Ok((
            txn.into_staged(),
            CommitRecord::Rejected {
                idempotency_key: key.clone(),
                request,
                rejection,
            },
        ))
    }

    /// Remembers at `lsn` that the transaction with `key` was rejected, so a retry
    /// returns `rejection`; returns the new state and the record to log.
    pub fn record_rejection(
        &self,
        key: &IdempotencyKey,
        rejection: Rejection,
        lsn: Lsn,
    ) -> Result<(State, CommitRecord), ApplyError> {
        let (staged, record) = self.stage_rejection(key, rejection, lsn)?;
        Ok((staged.install()?, record))
    }

    /// After [`State::stage`] failed with `error`: if `tx` has an idempotency key and
    /// the error is an outcome of the transaction ([`ApplyError::rejection`]), computes
    /// recording the rejection at `lsn`; otherwise `Ok(None)`: nothing needs logging.
    pub fn stage_reject(
        &self,
        tx: &Transaction,
        error: &ApplyError,
        lsn: Lsn,
    ) -> Result<Option<(Staged, CommitRecord)>, ApplyError> {
        self.stage_reject_in(tx, error, lsn, &CommitContext::default())
    }

    /// [`State::stage_reject`] for a transaction staged with [`State::stage_in`] in
    /// `ctx`: the rejection is stored with the request's fingerprint and time.
    pub fn stage_reject_in(
        &self,
        tx: &Transaction,
        error: &ApplyError,
        lsn: Lsn,
        ctx: &CommitContext,
    ) -> Result<Option<(Staged, CommitRecord)>, ApplyError> {
        match (&tx.idempotency_key, error.rejection()) {
            (Some(key), Some(rejection)) => {
                let request = RequestStamp {
                    fingerprint: tx.fingerprint(),
                    at_unix_ms: ctx.at_unix_ms,
                };
                self.stage_rejection_in(key, Some(request), rejection, lsn, ctx)
                    .map(Some)
            }
            _ => Ok(None),
        }
    }

    /// [`State::stage_reject`], installed.
    pub fn reject(
        &self,
        tx: &Transaction,
        error: &ApplyError,
        lsn: Lsn,
    ) -> Result<Option<(State, CommitRecord)>, ApplyError> {
        match self.stage_reject(tx, error, lsn)? {
            Some((staged, record)) => Ok(Some((staged.install()?, record))),
            None => Ok(None),
        }
    }

    /// Applies a decoded record at `lsn` (recovery). Never evaluates assertions; any
    /// mismatch between record and state is a typed [`ReplayError`] and leaves `self`
    /// unchanged.
    pub fn replay(&mut self, record: &CommitRecord, lsn: Lsn) -> Result<(), ReplayError> {
        if lsn <= self.lsn {
            return Err(ReplayError::LsnNotIncreasing {
                current: self.lsn,
                given: lsn,
            });
        }
        let mut txn = self.txn(lsn);
        txn.replay_record(record)?;
        *self = txn.into_staged().install().map_err(|e| match e {
            ApplyError::LsnNotIncreasing { current, given } => {
                ReplayError::LsnNotIncreasing { current, given }
            }
            other => ReplayError::Unreadable(Unreadable::message(&other.to_string())),
        })?;
        Ok(())
    }

    /// Writes every entry of a decoded full snapshot into `mem` and returns the state
    /// over it (used by the snapshot decoder).
    pub(crate) fn from_parts(lsn: Lsn, catalog: Catalog, mem: Arc<Memtable>) -> State {
        mem.mark_installed(lsn);
        let view = View::new(vec![mem], Arc::new(aedb_storage::Version::empty()), lsn);
        State { lsn, catalog, view }
    }

    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }
}

/// A computed change not yet written: the new catalog and the storage writes, at one
/// LSN. [`Staged::install`] writes it into the writer's memtable.
#[derive(Debug)]
pub struct Staged {
    view: View,
    catalog: Catalog,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    lsn: Lsn,
}

impl Staged {
    /// The LSN it will be installed at.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }

    /// Writes the change into the active memtable at its LSN and returns the new state.
    ///
    /// # Errors
    /// [`ApplyError::LsnNotIncreasing`] when the memtable already holds this LSN or a
    /// later one, or was frozen (the change was computed on a stale state); nothing is
    /// written then.
    pub fn install(self) -> Result<State, ApplyError> {
        let active = &self.view.memtables()[0];
        active
            .begin_install(self.lsn)
            .map_err(|current| ApplyError::LsnNotIncreasing {
                current,
                given: self.lsn,
            })?;
        for (key, value) in &self.writes {
            match value {
                Some(v) => active.insert(key, self.lsn, EntryKind::Put, v),
                None => active.insert(key, self.lsn, EntryKind::Delete, &[]),
            }
        }
        Ok(State {
            lsn: self.lsn,
            catalog: self.catalog,
            view: self.view.at(self.lsn),
        })
    }
}

/// A change being computed: reads go through its own writes first.
struct Txn<'a> {
    base: &'a State,
    catalog: Catalog,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    lsn: Lsn,
}

impl Txn<'_> {
    fn into_staged(self) -> Staged {
        Staged {
            view: self.base.view.clone(),
            catalog: self.catalog,
            writes: self.writes,
            lsn: self.lsn,
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<(Lsn, Vec<u8>)>, Unreadable> {
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone().map(|v| (self.lsn, v)));
        }
        Ok(self.base.view.get(key)?)
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    fn remember(&mut self, key: &IdempotencyKey, outcome: Outcome, request: Option<RequestStamp>) {
        let record = IdempotencyRecord {
            lsn: self.lsn,
            outcome,
            request,
        };
        self.put(
            keyspace::idempotency_key(key.as_bytes()),
            keyspace::idempotency_value(&record),
        );
    }

    fn table(&self, ns: &Namespace, table: &TableName) -> Result<TableState, NotFound> {
        self.catalog.table(ns, table).cloned()
    }

    fn ddl(&mut self, ddl: &Ddl) -> Result<(), OpError> {
        let lsn = self.lsn;
        match ddl {
            Ddl::CreateProject { project } => {
                if self.catalog.projects.contains_key(project) {
                    return Err(AlreadyExists::Project(project.clone()).into());
                }
                self.catalog.projects.insert(
                    project.clone(),
                    ProjectState {
                        created: lsn,
                        scopes: OrdSet::new(),
                    },
                );
                self.put(
                    keyspace::project_key(project),
                    keyspace::catalog_value(lsn, None),
                );
            }
            Ddl::CreateScope { ns } => {
                let p = self
                    .catalog
                    .projects
                    .get_mut(&ns.project)
                    .ok_or_else(|| NotFound::Project(ns.project.clone()))?;
                if p.scopes.contains(&ns.scope) {
                    return Err(AlreadyExists::Scope(ns.clone()).into());
                }
                p.scopes.insert(ns.scope.clone());
                self.catalog.namespaces.insert(
                    ns.clone(),
                    NamespaceState {
                        created: lsn,
                        tables: OrdMap::new(),
                    },
                );
                self.put(keyspace::scope_key(ns), keyspace::catalog_value(lsn, None));
            }
            Ddl::CreateTable { ns, table, schema } => {
                self.catalog.namespace(ns)?;
                let n = self
                    .catalog
                    .namespaces
                    .get_mut(ns)
                    .ok_or_else(|| NotFound::Scope(ns.clone()))?;
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
                    },
                );
                self.put(
                    keyspace::table_key(ns, table),
                    keyspace::catalog_value(lsn, Some(schema)),
                );
            }
            Ddl::DropTable { ns, table } => {
                self.catalog.namespace(ns)?;
                let n = self
                    .catalog
                    .namespaces
                    .get_mut(ns)
                    .ok_or_else(|| NotFound::Scope(ns.clone()))?;
                if n.tables.remove(table).is_none() {
                    return Err(NotFound::Table {
                        ns: ns.clone(),
                        table: table.clone(),
                    }
                    .into());
                }
                // The rows stay under the dropped table's id, unreachable (a table
                // created again gets a new id, its creating LSN), until compaction
                // frees them once the history window has passed this drop
                // (`DroppedTableRows`).
                self.delete(keyspace::table_key(ns, table));
            }
        }
        Ok(())
    }

    fn put_kv(&mut self, ns: &Namespace, key: &KvKey, value: KvValue, effects: &mut Vec<Effect>) {
        self.put(keyspace::kv_key(ns, key), value.as_bytes().to_vec());
        effects.push(Effect::KvPut {
            ns: ns.clone(),
            key: key.clone(),
            value,
        });
    }

    fn put_row(
        &mut self,
        ns: &Namespace,
        table: &TableName,
        t: &TableState,
        key: &[u8],
        values: Arc<[Value]>,
        effects: &mut Vec<Effect>,
    ) {
        self.put(keyspace::row_key(ns, t.created, key), encode_row(&values));
        effects.push(Effect::RowPut {
            ns: ns.clone(),
            table: table.clone(),
            row: values,
        });
    }

    fn apply_mutation(
        &mut self,
        mutation: &Mutation,
        effects: &mut Vec<Effect>,
    ) -> Result<(), OpError> {
        match mutation {
            Mutation::KvPut { ns, key, value } => {
                self.catalog.namespace(ns)?;
                self.put_kv(ns, key, value.clone(), effects);
            }
            Mutation::KvDelete { ns, key } => {
                self.catalog.namespace(ns)?;
                let skey = keyspace::kv_key(ns, key);
                if self.get(&skey)?.is_some() {
                    self.delete(skey);
                    effects.push(Effect::KvDelete {
                        ns: ns.clone(),
                        key: key.clone(),
                    });
                }
            }
            Mutation::KvAdd { ns, key, delta } => {
                self.kv_numeric(ns, key, *delta, false, effects)?
            }
            Mutation::KvSub { ns, key, delta } => {
                self.kv_numeric(ns, key, *delta, true, effects)?
            }
            Mutation::TableInsert { ns, table, cells } => {
                let t = self.table(ns, table)?;
                let err = row_error(ns, table);
                let row = t.schema.row_from_cells(cells).map_err(&err)?;
                let key = EncodedKey::for_row(&t.schema, &row).map_err(&err)?;
                if self
                    .get(&keyspace::row_key(ns, t.created, key.as_bytes()))?
                    .is_some()
                {
                    return Err(OpError::DuplicatePrimaryKey {
                        ns: ns.clone(),
                        table: table.clone(),
                        key: key_of_row(&t.schema, &row),
                    });
                }
                self.put_row(ns, table, &t, key.as_bytes(), Arc::from(row), effects);
            }
            Mutation::TableUpsert { ns, table, cells } => {
                let t = self.table(ns, table)?;
                let err = row_error(ns, table);
                let row = t.schema.row_from_cells(cells).map_err(&err)?;
                let key = EncodedKey::for_row(&t.schema, &row).map_err(&err)?;
                self.put_row(ns, table, &t, key.as_bytes(), Arc::from(row), effects);
            }
            Mutation::TableUpdate { ns, table, pk, set } => {
                let t = self.table(ns, table)?;
                let err = row_error(ns, table);
                let mut key = Vec::new();
                encode_primary_key(&t.schema, pk, &mut key).map_err(&err)?;
                let updates = t.schema.check_update(set).map_err(&err)?;
                let Some((lsn, stored)) = self.get(&keyspace::row_key(ns, t.created, &key))? else {
                    return Err(OpError::RowNotFound {
                        ns: ns.clone(),
                        table: table.clone(),
                        key: show_key(pk),
                    });
                };
                let old = row_from(lsn, &stored)?;
                let mut row = old.values.to_vec();
                for (i, v) in updates {
                    row[i] = v;
                }
                self.put_row(ns, table, &t, &key, Arc::from(row), effects);
            }
            Mutation::TableDelete { ns, table, pk } => {
                let t = self.table(ns, table)?;
                let mut key = Vec::new();
                encode_primary_key(&t.schema, pk, &mut key).map_err(row_error(ns, table))?;
                let skey = keyspace::row_key(ns, t.created, &key);
                if self.get(&skey)?.is_some() {
                    self.delete(skey);
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
        effects: &mut Vec<Effect>,
    ) -> Result<(), OpError> {
        self.catalog.namespace(ns)?;
        let ty = delta.ty();
        let stored = self.get(&keyspace::kv_key(ns, key))?;
        let current =
            Numeric::decode(ty, stored.as_ref().map(|(_, v)| v.as_slice())).map_err(|source| {
                OpError::WrongNumericWidth {
                    ns: ns.clone(),
                    key: key.clone(),
                    source,
                }
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
        self.put_kv(ns, key, result.to_value(), effects);
        Ok(())
    }

    fn replay_record(&mut self, record: &CommitRecord) -> Result<(), ReplayError> {
        match record {
            CommitRecord::Commit {
                idempotency_key,
                request,
                effects,
            } => {
                for (i, effect) in effects.iter().enumerate() {
                    self.replay_effect(u32::try_from(i).unwrap_or(u32::MAX), effect)?;
                }
                if let Some(key) = idempotency_key {
                    self.replay_remember(key, Outcome::Committed, *request)?;
                }
            }
            CommitRecord::Rejected {
                idempotency_key,
                request,
                rejection,
            } => self.replay_remember(
                idempotency_key,
                Outcome::Rejected(rejection.clone()),
                *request,
            )?,
            CommitRecord::Ddl(ddl) => self.ddl(ddl).map_err(|e| match e {
                OpError::Unreadable(e) => ReplayError::Unreadable(e),
                e => ReplayError::Ddl(e),
            })?,
        }
        Ok(())
    }

    /// Replays remembering `key`. A stamped record (format version 2) may replace an
    /// existing one: the writer reuses a key only once its record expired, a decision
    /// taken under the retention in force then and logged as this record, so replay
    /// never re-evaluates it (the retention may have changed since). An unstamped
    /// record (version 1, written when keys were never reused) must find none.
    fn replay_remember(
        &mut self,
        key: &IdempotencyKey,
        outcome: Outcome,
        request: Option<RequestStamp>,
    ) -> Result<(), ReplayError> {
        if request.is_none()
            && self
                .get(&keyspace::idempotency_key(key.as_bytes()))?
                .is_some()
        {
            return Err(ReplayError::IdempotencyKeyReused { key: key.clone() });
        }
        self.remember(key, outcome, request);
        Ok(())
    }

    fn replay_effect(&mut self, index: u32, effect: &Effect) -> Result<(), ReplayError> {
        let wrap = |source: OpError| match source {
            OpError::Unreadable(e) => ReplayError::Unreadable(e),
            source => ReplayError::Effect { index, source },
        };
        match effect {
            Effect::KvPut { ns, key, value } => {
                self.catalog.namespace(ns).map_err(|e| wrap(e.into()))?;
                self.put(keyspace::kv_key(ns, key), value.as_bytes().to_vec());
            }
            Effect::KvDelete { ns, key } => {
                self.catalog.namespace(ns).map_err(|e| wrap(e.into()))?;
                let skey = keyspace::kv_key(ns, key);
                if self.get(&skey)?.is_none() {
                    return Err(ReplayError::DeleteOfMissingKey {
                        index,
                        ns: ns.clone(),
                        key: key.clone(),
                    });
                }
                self.delete(skey);
            }
            Effect::RowPut { ns, table, row } => {
                let t = self.table(ns, table).map_err(|e| wrap(e.into()))?;
                let err = |source| wrap(row_error(ns, table)(source));
                t.schema.check_row(row).map_err(err)?;
                let key = EncodedKey::for_row(&t.schema, row).map_err(err)?;
                self.put(
                    keyspace::row_key(ns, t.created, key.as_bytes()),
                    encode_row(row),
                );
            }
            Effect::RowDelete { ns, table, pk } => {
                let t = self.table(ns, table).map_err(|e| wrap(e.into()))?;
                let mut key = Vec::new();
                encode_primary_key(&t.schema, pk, &mut key)
                    .map_err(|source| wrap(row_error(ns, table)(source)))?;
                let skey = keyspace::row_key(ns, t.created, &key);
                if self.get(&skey)?.is_none() {
                    return Err(ReplayError::DeleteOfMissingRow {
                        index,
                        ns: ns.clone(),
                        table: table.clone(),
                    });
                }
                self.delete(skey);
            }
        }
        Ok(())
    }
}
