//! [`ReadSnapshot`]: the read-only view of one published state.

use std::ops::Bound;
use std::sync::Arc;

use aedb_model::{
    Direction, IdempotencyRecord, KeyRange, KvEntry, KvKey, Namespace, Numeric, NumericType, Page,
    ProjectName, Row, ScopeName, State, TableName, TableSchema, Value,
};
use aedb_types::Lsn;

use crate::error::Error;
use crate::secure::CallerSnapshot;
use crate::{AedbInstance, Who};
use aedb_authz::{Action, CallerId, CallerPolicy};

/// An immutable snapshot of the database at one LSN, from
/// [`AedbInstance::snapshot`](crate::AedbInstance::snapshot): reads only, on the
/// caller's thread, never blocked by writers. Cloning it is cheap (one reference
/// count).
///
/// Its reads return the same types as the same reads of a
/// [`CallerSnapshot`](crate::CallerSnapshot). Two snapshots are equal when they show
/// the same content at the same LSN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadSnapshot(Arc<State>);

impl ReadSnapshot {
    pub(crate) fn new(state: Arc<State>) -> ReadSnapshot {
        ReadSnapshot(state)
    }

    /// The LSN of the last commit this snapshot shows.
    pub fn lsn(&self) -> Lsn {
        self.0.lsn()
    }

    /// One KV entry, if the key is set.
    pub fn kv_get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<KvEntry>, Error> {
        Ok(self.0.kv_get(ns, key)?)
    }

    /// A number stored at `key` as `ty` (a missing key is zero).
    pub fn kv_get_numeric(
        &self,
        ns: &Namespace,
        key: &[u8],
        ty: NumericType,
    ) -> Result<Numeric, Error> {
        Ok(self.0.kv_get_numeric(ns, key, ty)?)
    }

    /// Entries whose key starts with `prefix` (all entries for an empty prefix), in
    /// `direction`, at most `limit`.
    pub fn kv_scan_prefix(
        &self,
        ns: &Namespace,
        prefix: &[u8],
        direction: Direction,
        limit: usize,
    ) -> Result<Page<(KvKey, KvEntry)>, Error> {
        Ok(self.0.kv_scan_prefix(ns, prefix, direction, limit)?)
    }

    /// Entries with keys between `start` and `end`, in `direction`, at most `limit`.
    pub fn kv_scan_range(
        &self,
        ns: &Namespace,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Page<(KvKey, KvEntry)>, Error> {
        Ok(self.0.kv_scan_range(ns, start, end, direction, limit)?)
    }

    /// Visits the entries with keys between `start` and `end`, in `direction`, at most
    /// `limit`, handing each to `visit` as borrowed `(key, value, lsn)` slices: no
    /// copy and no allocation per entry (what [`ReadSnapshot::kv_scan_range`] builds a
    /// page from). `visit` returns `ControlFlow::Break(())` to stop early; the result
    /// is how many entries were visited.
    ///
    /// ```
    /// use std::ops::{Bound, ControlFlow};
    /// use aedb::{AedbConfig, AedbInstance, Direction, Namespace};
    /// let dir = tempfile::tempdir()?;
    /// let db = AedbInstance::open(dir.path(), AedbConfig::development())?;
    /// db.create_project("app")?;
    /// db.create_scope("app", "main")?;
    /// let ns = Namespace::parse("app", "main")?;
    /// for i in 0..5u8 {
    ///     db.kv_put(&ns, [b'k', i], [i])?;
    /// }
    /// let mut total = 0u32;
    /// let seen = db.snapshot()?.kv_scan_with(
    ///     &ns, Bound::Included(&b"k"[..]), Bound::Unbounded, Direction::Forward, 3,
    ///     |_key, value, _lsn| {
    ///         total += u32::from(value[0]);
    ///         ControlFlow::Continue(())
    ///     },
    /// )?;
    /// assert_eq!((seen, total), (3, 0 + 1 + 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// The namespace does not exist, or stored data could not be read.
    pub fn kv_scan_with(
        &self,
        ns: &Namespace,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
        limit: usize,
        visit: impl FnMut(&[u8], &[u8], Lsn) -> std::ops::ControlFlow<()>,
    ) -> Result<usize, Error> {
        Ok(self.0.kv_visit(ns, start, end, direction, limit, visit)?)
    }

    /// Number of keys in the namespace's KV space.
    pub fn kv_len(&self, ns: &Namespace) -> Result<usize, Error> {
        Ok(self.0.kv_len(ns)?)
    }

    /// One row by primary key (values in key order), if any.
    pub fn table_get(
        &self,
        ns: &Namespace,
        table: &TableName,
        pk: &[Value],
    ) -> Result<Option<Row>, Error> {
        Ok(self.0.table_get(ns, table, pk)?)
    }

    /// Rows whose primary keys fall in `range`, in `direction`, at most `limit`.
    pub fn table_scan(
        &self,
        ns: &Namespace,
        table: &TableName,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Page<Row>, Error> {
        Ok(self.0.table_scan(ns, table, range, direction, limit)?)
    }

    /// Number of rows in a table.
    pub fn table_len(&self, ns: &Namespace, table: &TableName) -> Result<usize, Error> {
        Ok(self.0.table_len(ns, table)?)
    }

    /// A table's schema.
    pub fn table_schema(&self, ns: &Namespace, table: &TableName) -> Result<TableSchema, Error> {
        Ok(self.0.table_schema(ns, table)?.clone())
    }

    /// All projects, in name order.
    pub fn projects(&self) -> Vec<ProjectName> {
        self.0.projects().cloned().collect()
    }

    /// Whether the project exists.
    pub fn has_project(&self, project: &ProjectName) -> bool {
        self.0.has_project(project)
    }

    /// The scopes of a project, in name order.
    pub fn scopes(&self, project: &ProjectName) -> Result<Vec<ScopeName>, Error> {
        Ok(self.0.scopes(project)?.cloned().collect())
    }

    /// Whether the namespace (project and scope) exists.
    pub fn has_namespace(&self, ns: &Namespace) -> bool {
        self.0.has_namespace(ns)
    }

    /// The tables of a namespace, in name order.
    pub fn tables(&self, ns: &Namespace) -> Result<Vec<TableName>, Error> {
        Ok(self.0.tables(ns)?.cloned().collect())
    }

    /// The remembered outcome of an idempotency key, if it was used, with the
    /// request's fingerprint and commit time (`None` for records written before
    /// format version 2). This is what is stored: a record past
    /// [`AedbConfig::idempotency_retention`](crate::AedbConfig::idempotency_retention)
    /// is still returned until a compaction removes it, although commits no longer
    /// honour it.
    ///
    /// # Errors
    /// The record could not be read (a run file failed to authenticate).
    pub fn idempotency(&self, key: &[u8]) -> Result<Option<IdempotencyRecord>, Error> {
        Ok(self.0.idempotency(key)?)
    }

    /// Number of stored idempotency records (a scan; expired ones count until a
    /// compaction removes them).
    ///
    /// # Errors
    /// A record cannot be read (a run file failed to authenticate).
    pub fn idempotency_len(&self) -> Result<usize, Error> {
        Ok(self.0.idempotency_len()?)
    }

    /// SHA-256 of the snapshot's canonical encoding: equal digests mean equal content
    /// (see [`crate::parity`]).
    ///
    /// # Errors
    /// Stored data could not be read.
    pub fn content_digest(&self) -> Result<[u8; 32], Error> {
        Ok(crate::parity::content_digest(&self.0)?)
    }

    /// The first difference between this snapshot and `other` (LSN, a project, scope,
    /// table, row or key), or `None` when their content is equal (see
    /// [`crate::parity::first_difference`]).
    pub fn first_difference(&self, other: &ReadSnapshot) -> Option<String> {
        crate::parity::first_difference(&self.0, &other.0)
    }
}

impl AedbInstance {
    /// Reads one KV entry from the latest snapshot.
    pub fn kv_get(&self, ns: &Namespace, key: impl AsRef<[u8]>) -> Result<Option<KvEntry>, Error> {
        self.kv_get_by(Who::Anonymous, ns, key.as_ref())
    }

    /// [`AedbInstance::kv_get`] on behalf of `caller` (`KvRead` covering the key).
    pub fn kv_get_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<KvEntry>, Error> {
        self.kv_get_by(Who::Caller(caller), ns, key.as_ref())
    }

    fn kv_get_by(
        &self,
        who: Who<'_>,
        ns: &Namespace,
        key: &[u8],
    ) -> Result<Option<KvEntry>, Error> {
        // One check against the published policy, without building a CallerSnapshot.
        self.permit(who, [&Action::KvRead { ns, key }], "kv_get")?;
        Ok(self.pipeline.with_snapshot(|state| state.kv_get(ns, key))?)
    }

    /// The latest published snapshot: an immutable view, read on the caller's thread,
    /// that never blocks or is blocked by writers (KV get and scans, table get and
    /// scans, schemas, listings). Refused on secure instances: use
    /// [`AedbInstance::snapshot_as`].
    pub fn snapshot(&self) -> Result<ReadSnapshot, Error> {
        self.anonymous()?;
        Ok(ReadSnapshot::new(self.pipeline.snapshot()))
    }

    /// The database as it was at `lsn` (reconciliation: "the balance as of LSN n"), for
    /// any LSN from the oldest the retention window keeps
    /// (`AedbConfig::history_retention`) up to the newest visible one. Reads never wait
    /// for the writer. Refused on secure instances: use
    /// [`AedbInstance::snapshot_at_as`].
    ///
    /// # Errors
    /// `read.too_old` naming the oldest readable LSN when compaction already dropped
    /// what `lsn` would need; `read.future_lsn` for an LSN not visible yet.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use aedb::{AedbConfig, AedbInstance, Namespace};
    /// let db = AedbInstance::open(dir.path(), AedbConfig::development())?;
    /// db.create_project("bank")?;
    /// db.create_scope("bank", "eu")?;
    /// let ns = Namespace::parse("bank", "eu")?;
    /// let first = db.kv_put(&ns, "alice", "100")?.lsn;
    /// db.kv_put(&ns, "alice", "40")?;
    /// let then = db.snapshot_at(first)?;
    /// assert_eq!(then.kv_get(&ns, b"alice")?.unwrap().value.as_bytes(), b"100");
    /// assert_eq!(db.snapshot()?.kv_get(&ns, b"alice")?.unwrap().value.as_bytes(), b"40");
    /// # db.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot_at(&self, lsn: Lsn) -> Result<ReadSnapshot, Error> {
        self.anonymous()?;
        Ok(ReadSnapshot::new(self.state_at(lsn)?))
    }

    /// [`AedbInstance::snapshot_at`] for `caller`: the database as it was at `lsn`,
    /// every read checked against the policy in force **now** (on the caller's thread;
    /// denials audited), so a revoked permission does not reach back into history.
    ///
    /// # Errors
    /// As [`AedbInstance::snapshot_at`] (every read of a forged system caller is
    /// denied, as on [`AedbInstance::snapshot_as`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use aedb::{AedbConfig, AedbInstance, CallerId, Namespace, Permission, SecureConfig};
    /// let root = CallerId::new("root")?;
    /// let db = AedbInstance::open_secure(
    ///     dir.path(),
    ///     AedbConfig::development(),
    ///     SecureConfig::new(root.clone()),
    /// )?;
    /// db.create_project_as(&root, "bank")?;
    /// db.create_scope_as(&root, "bank", "eu")?;
    /// let ns = Namespace::parse("bank", "eu")?;
    /// let first = db.kv_put_as(&root, &ns, "alice", "100")?.lsn;
    /// db.kv_put_as(&root, &ns, "alice", "40")?;
    /// let then = db.snapshot_at_as(&root, first)?;
    /// assert_eq!(then.kv_get(&ns, b"alice")?.unwrap().value.as_bytes(), b"100");
    /// // Anonymous reads of history are refused on a secure instance.
    /// assert!(db.snapshot_at(first).is_err());
    /// # db.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot_at_as(&self, caller: &CallerId, lsn: Lsn) -> Result<CallerSnapshot, Error> {
        Ok(self.caller_snapshot(caller, self.state_at(lsn)?))
    }

    /// The state as of `lsn`, if the retention window still keeps it.
    fn state_at(&self, lsn: Lsn) -> Result<Arc<State>, Error> {
        let state = self.pipeline.snapshot();
        let oldest = state.view().version().floor();
        if lsn < oldest {
            return Err(aedb_model::ReadError::TooOld {
                requested: lsn,
                oldest,
            }
            .into());
        }
        Ok(Arc::new(state.as_of(lsn)?))
    }

    /// The latest published snapshot for `caller`: every read on it is checked against
    /// the policy published at the same moment, on the caller's thread (no actor hop),
    /// and denials are audited. On an open instance nothing is checked.
    pub fn snapshot_as(&self, caller: &CallerId) -> CallerSnapshot {
        self.caller_snapshot(caller, self.pipeline.snapshot())
    }

    /// `state` as `caller` reads it, under the policy published now.
    fn caller_snapshot(&self, caller: &CallerId, state: Arc<State>) -> CallerSnapshot {
        match &self.security {
            Some(s) => {
                let policy = if caller.is_system() {
                    CallerPolicy::nothing()
                } else {
                    s.policy().for_caller(caller)
                };
                CallerSnapshot::new(state, Some(policy), caller.clone(), Some(s.reader()))
            }
            None if caller.is_system() => {
                CallerSnapshot::new(state, Some(CallerPolicy::nothing()), caller.clone(), None)
            }
            None => CallerSnapshot::new(state, None, caller.clone(), None),
        }
    }
}
