//! The Audit actor: the only writer of the `authz_audit` and `assertion_audit` system
//! tables.
//!
//! Events arrive on its bounded mailbox ([`Event`]); after each burst the actor writes
//! what arrived as **one durable commit through the normal pipeline** (so audit rows
//! are replicated by backups, covered by checkpoints and visible to admins through the
//! ordinary read API). Each table is an HMAC chain:
//!
//! ```text
//! mac_n = HMAC-SHA256(k_audit[key_id_n], "aedb/audit/v1" || lp(table) || mac_{n-1}
//!                     || seq_n (u64 LE) || at_n (i64 LE) || lp(key_id_n) || lp(caller_n)
//!                     || lp(kind_n) || lp(subject_n) || lp(detail_n))
//! ```
//!
//! with `mac_0 = 32 zero bytes`, `lp(x) = u32 LE length || bytes`, and `k_audit` the
//! [`KeyPurpose::Audit`](aedb_keys::KeyPurpose) subkey of the manifest provider's master
//! named by `key_id` (so rows written before a master rotation stay verifiable). An
//! edited, deleted or reordered row breaks every later MAC; [`verify_chain`] checks it
//! from the rows alone, for example from a JSON-lines export.
//!
//! What the chain cannot show on its own: removal of the newest rows (truncation) —
//! compare the exported head with a copy kept elsewhere.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use aedb_keys::SecretKey;
use aedb_manifest::chain::HmacChain;
use aedb_model::{
    ColumnDef, ColumnName, ColumnType, Ddl, Direction, KeyRange, Mutation, State, TableName,
    TableSchema, Timestamp, Transaction, Value,
};
use aedb_sync::SnapshotCell;

use crate::actor::{self, Ask, Owner, OwnerRef, Running};
use crate::commit::{Finality, Request};
use crate::committer::{Admission, Committer};
use crate::error::CommitError;
use crate::metrics::EngineMetrics;
use crate::system::reserved;
pub use crate::system::{
    AUDIT_SCOPE, AUTHZ_SCOPE, SYSTEM_PROJECT, audit_namespace, authz_namespace,
};

/// Most events written in one commit.
const MAX_BATCH: usize = 512;
const DOMAIN: &[u8] = b"aedb/audit/v1";

/// One of the two audit tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuditTable {
    /// `authz_audit`: grants, revokes, ownership changes, key rotations, session
    /// revocations, and every denial.
    Authz,
    /// `assertion_audit`: failed assertions and policy-enforcement failures.
    Assertion,
}

impl AuditTable {
    /// Both tables.
    pub const ALL: [AuditTable; 2] = [AuditTable::Authz, AuditTable::Assertion];

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            AuditTable::Authz => "authz_audit",
            AuditTable::Assertion => "assertion_audit",
        }
    }

    /// The table's name as a [`TableName`].
    pub fn table_name(self) -> TableName {
        reserved(TableName::reserved(self.name()))
    }

    /// Parses a table name.
    pub fn from_name(name: &str) -> Option<AuditTable> {
        AuditTable::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The schema both audit tables share.
pub fn audit_schema() -> TableSchema {
    let col = |name: &str, ty| ColumnDef::new(reserved(ColumnName::new(name)), ty);
    let columns = vec![
        col("seq", ColumnType::U64),
        col("at", ColumnType::Timestamp),
        col("key_id", ColumnType::Text),
        col("caller", ColumnType::Text),
        col("kind", ColumnType::Text),
        col("subject", ColumnType::Text),
        col("detail", ColumnType::Text),
        col("mac", ColumnType::Bytes),
    ];
    match TableSchema::new(columns, vec![reserved(ColumnName::new("seq"))]) {
        Ok(schema) => schema,
        Err(e) => unreachable!("the audit schema is valid: {e}"),
    }
}

/// The DDL that creates the system project, its scopes and the audit tables, minus
/// what already exists in `state`.
pub fn missing_system_ddl(state: &State) -> Vec<Ddl> {
    let audit = audit_namespace();
    let authz = authz_namespace();
    let mut out = Vec::new();
    if !state.has_project(&audit.project) {
        out.push(Ddl::CreateProject {
            project: audit.project.clone(),
        });
    }
    for ns in [&audit, &authz] {
        if !state.has_namespace(ns) {
            out.push(Ddl::CreateScope { ns: ns.clone() });
        }
    }
    for table in AuditTable::ALL {
        if state.table_schema(&audit, &table.table_name()).is_err() {
            out.push(Ddl::CreateTable {
                ns: audit.clone(),
                table: table.table_name(),
                schema: audit_schema(),
            });
        }
    }
    out
}

/// Something to audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Which table.
    pub table: AuditTable,
    /// Who acted (a caller id, `_system`, or `anonymous`).
    pub caller: String,
    /// What happened (`grant`, `revoke`, `denied`, `assertion_failed`, …).
    pub kind: String,
    /// What it was about (a permission, an action, an assertion index).
    pub subject: String,
    /// Further facts (the actual value of a failed assertion, cascaded grants, …).
    pub detail: String,
}

/// One audit row, as stored and exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    /// Which table.
    pub table: AuditTable,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When, microseconds since the Unix epoch.
    pub at: Timestamp,
    /// The master key (alias and version) the row's MAC key was derived under.
    pub key_id: String,
    /// Who acted.
    pub caller: String,
    /// What happened.
    pub kind: String,
    /// What it was about.
    pub subject: String,
    /// Further facts.
    pub detail: String,
    /// The chained MAC.
    pub mac: [u8; 32],
}

fn lp(out: &mut Vec<u8>, bytes: &[u8]) {
    // Fields are bounded by the KV/table value limits, far below 4 GiB.
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl AuditRow {
    /// The MAC of this row's fields chained after `prev`.
    pub fn compute_mac(&self, key: &SecretKey, prev: &[u8; 32]) -> [u8; 32] {
        let (before, after) = self.link_bytes();
        HmacChain::new(*prev).link_mac(key, &before, &after)
    }

    /// The row's authenticated bytes before and after the previous MAC.
    fn link_bytes(&self) -> (Vec<u8>, Vec<u8>) {
        let mut before = Vec::with_capacity(DOMAIN.len() + 32);
        before.extend_from_slice(DOMAIN);
        lp(&mut before, self.table.name().as_bytes());
        let mut after = Vec::with_capacity(96 + self.detail.len());
        after.extend_from_slice(&self.seq.to_le_bytes());
        after.extend_from_slice(&self.at.as_micros().to_le_bytes());
        for field in [
            &self.key_id,
            &self.caller,
            &self.kind,
            &self.subject,
            &self.detail,
        ] {
            lp(&mut after, field.as_bytes());
        }
        (before, after)
    }

    /// The row's cells for a table insert.
    pub fn cells(&self) -> Vec<(ColumnName, Value)> {
        let col = |name: &str| reserved(ColumnName::new(name));
        vec![
            (col("seq"), Value::U64(self.seq)),
            (col("at"), Value::Timestamp(self.at)),
            (col("key_id"), Value::Text(self.key_id.clone())),
            (col("caller"), Value::Text(self.caller.clone())),
            (col("kind"), Value::Text(self.kind.clone())),
            (col("subject"), Value::Text(self.subject.clone())),
            (col("detail"), Value::Text(self.detail.clone())),
            (col("mac"), Value::Bytes(self.mac.to_vec())),
        ]
    }

    /// Reads a stored row back; `None` if it does not have the audit shape.
    pub fn from_values(table: AuditTable, values: &[Value]) -> Option<AuditRow> {
        let text = |v: &Value| match v {
            Value::Text(t) => Some(t.clone()),
            _ => None,
        };
        match values {
            [
                Value::U64(seq),
                Value::Timestamp(at),
                key_id,
                caller,
                kind,
                subject,
                detail,
                Value::Bytes(mac),
            ] => Some(AuditRow {
                table,
                seq: *seq,
                at: *at,
                key_id: text(key_id)?,
                caller: text(caller)?,
                kind: text(kind)?,
                subject: text(subject)?,
                detail: text(detail)?,
                mac: mac.as_slice().try_into().ok()?,
            }),
            _ => None,
        }
    }
}

/// Every row of `table` in `state`, in chain order.
pub fn read_rows(state: &State, table: AuditTable) -> Result<Vec<AuditRow>, AuditChainError> {
    let page = state
        .table_scan(
            &audit_namespace(),
            &table.table_name(),
            &KeyRange::all(),
            Direction::Forward,
            usize::MAX,
        )
        .map_err(|_| AuditChainError::Missing { table })?;
    page.items
        .iter()
        .map(|row| {
            AuditRow::from_values(table, &row.values).ok_or(AuditChainError::Malformed { table })
        })
        .collect()
}

/// Why an audit chain does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditChainError {
    /// The table does not exist.
    #[error("audit table {} does not exist", .table.name())]
    Missing {
        /// The table.
        table: AuditTable,
    },
    /// A row does not have the audit table's shape.
    #[error("audit table {} holds a malformed row", .table.name())]
    Malformed {
        /// The table.
        table: AuditTable,
    },
    /// Sequence numbers are not 1, 2, 3, … (a row was deleted or inserted).
    #[error("audit table {}: expected row {expected}, found {found}", .table.name())]
    Gap {
        /// The table.
        table: AuditTable,
        /// The sequence number expected.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// A row's MAC does not match: it, or a row before it, was edited.
    #[error("audit table {}: row {seq} fails its chained MAC (edited or forged)", .table.name())]
    BadMac {
        /// The table.
        table: AuditTable,
        /// The first row that failed.
        seq: u64,
    },
    /// No audit key for a row's `key_id`.
    #[error("audit table {}: row {seq} names key {key_id}, which the provider cannot derive", .table.name())]
    UnknownKey {
        /// The table.
        table: AuditTable,
        /// The row.
        seq: u64,
        /// The key it names.
        key_id: String,
    },
}

/// Verifies one table's chain (`rows` in order, all of the same table) with the audit
/// keys `key_for(key_id)` returns. Returns the head MAC (zeros for an empty table).
pub fn verify_chain(
    rows: &[AuditRow],
    mut key_for: impl FnMut(&str) -> Option<SecretKey>,
) -> Result<[u8; 32], AuditChainError> {
    let mut keys: BTreeMap<String, SecretKey> = BTreeMap::new();
    let mut chain = HmacChain::new([0u8; 32]);
    for (i, row) in rows.iter().enumerate() {
        let expected = i as u64 + 1;
        if row.seq != expected {
            return Err(AuditChainError::Gap {
                table: row.table,
                expected,
                found: row.seq,
            });
        }
        if !keys.contains_key(&row.key_id) {
            let key = key_for(&row.key_id).ok_or_else(|| AuditChainError::UnknownKey {
                table: row.table,
                seq: row.seq,
                key_id: row.key_id.clone(),
            })?;
            keys.insert(row.key_id.clone(), key);
        }
        let key = &keys[&row.key_id];
        let (before, after) = row.link_bytes();
        if !chain.verify_next(key, &before, &after, &row.mac) {
            return Err(AuditChainError::BadMac {
                table: row.table,
                seq: row.seq,
            });
        }
    }
    Ok(chain.head())
}

/// Record an event (batched with whatever else is queued). Sent with `tell`.
#[derive(Debug)]
pub struct Event(pub AuditEvent);

/// Answer once every event sent before this one is durable.
#[derive(Debug)]
pub struct Flush;

/// The address of the Audit actor.
pub type AuditRef = OwnerRef<AuditActor>;

/// Where the actor's chains stand.
#[derive(Clone, Copy, Debug, Default)]
struct ChainHead {
    seq: u64,
    mac: [u8; 32],
}

/// Handle to the running Audit actor.
#[derive(Debug)]
pub struct AuditHandle {
    /// Its address (events are sent with `tell(Event(..))`).
    pub mailbox: AuditRef,
    running: Running<AuditActor>,
}

impl AuditHandle {
    /// Waits until every event sent so far is durable.
    pub fn flush(&self) -> Result<(), CommitError> {
        self.mailbox.ask(Flush).unwrap_or(Err(CommitError::Closed))
    }

    /// Writes what is queued and stops the actor (addresses still held elsewhere, such
    /// as read snapshots, then see it closed).
    pub fn stop(mut self) {
        self.running.stop();
    }
}

/// Starts the Audit actor. The system tables must exist; chain heads are read from
/// the newest published state.
pub fn spawn(
    committer: Committer,
    snapshots: &Arc<SnapshotCell<State>>,
    key: SecretKey,
    key_id: String,
    metrics: Arc<EngineMetrics>,
    queue: usize,
) -> Result<AuditHandle, AuditStartError> {
    let (_, state) = snapshots.load();
    let mut heads = BTreeMap::new();
    for table in AuditTable::ALL {
        let rows = read_rows(&state, table)?;
        let head = rows.last().map_or(ChainHead::default(), |r| ChainHead {
            seq: r.seq,
            mac: r.mac,
        });
        heads.insert(table, head);
    }
    drop(state);
    let stats = metrics.owners.audit.clone();
    let actor = AuditActor {
        committer,
        key,
        key_id,
        heads,
        metrics,
        pending: Vec::new(),
    };
    let running = actor::spawn(actor, queue, stats).map_err(AuditStartError::Thread)?;
    Ok(AuditHandle {
        mailbox: running.addr().clone(),
        running,
    })
}

/// Why the Audit actor did not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditStartError {
    /// An audit table is damaged.
    #[error(transparent)]
    Chain(#[from] AuditChainError),
    /// Its thread could not be started.
    #[error("cannot start the audit thread: {0}")]
    Thread(std::io::Error),
}

impl Owner for AuditActor {
    const NAME: &'static str = "audit";
    const DRAINS: bool = true;

    /// Writes the events of the burst just handled, at most 512 per commit.
    fn drained(&mut self) {
        // A failure is counted and logged by `write`; a `Flush` reports it.
        let _ = self.write_pending();
    }
}

impl Ask<AuditActor> for Event {
    type Reply = ();

    fn handle(self, actor: &mut AuditActor) {
        actor.pending.push(self.0);
    }
}

impl Ask<AuditActor> for Flush {
    type Reply = Result<(), CommitError>;

    fn handle(self, actor: &mut AuditActor) -> Self::Reply {
        actor.write_pending()
    }
}

/// The Audit actor: owns both audit tables' chain heads.
pub struct AuditActor {
    committer: Committer,
    key: SecretKey,
    key_id: String,
    heads: BTreeMap<AuditTable, ChainHead>,
    metrics: Arc<EngineMetrics>,
    pending: Vec<AuditEvent>,
}

impl AuditActor {
    /// Writes every pending event; the first failure is the answer.
    fn write_pending(&mut self) -> Result<(), CommitError> {
        let mut result = Ok(());
        while !self.pending.is_empty() {
            let rest = self.pending.split_off(self.pending.len().min(MAX_BATCH));
            let batch = std::mem::replace(&mut self.pending, rest);
            let written = self.write(batch);
            if result.is_ok() {
                result = written;
            }
        }
        result
    }

    /// Chains `events` after the heads and commits them durably in one transaction;
    /// the heads advance only if the commit succeeded.
    fn write(&mut self, events: Vec<AuditEvent>) -> Result<(), CommitError> {
        if events.is_empty() {
            return Ok(());
        }
        let at = Timestamp::from_micros(aedb_types::clock::unix_micros());
        let mut heads = self.heads.clone();
        let ns = audit_namespace();
        let mut mutations = Vec::with_capacity(events.len());
        for e in &events {
            let head = heads.entry(e.table).or_default();
            let mut row = AuditRow {
                table: e.table,
                seq: head.seq + 1,
                at,
                key_id: self.key_id.clone(),
                caller: e.caller.clone(),
                kind: e.kind.clone(),
                subject: e.subject.clone(),
                detail: e.detail.clone(),
                mac: [0; 32],
            };
            row.mac = row.compute_mac(&self.key, &head.mac);
            *head = ChainHead {
                seq: row.seq,
                mac: row.mac,
            };
            mutations.push(Mutation::TableInsert {
                ns: ns.clone(),
                table: e.table.table_name(),
                cells: row.cells(),
            });
        }
        let tx = Transaction {
            mutations,
            ..Transaction::new()
        };
        match self
            .committer
            .commit(Request::Transaction(tx), Finality::Durable, Admission::Wait)
        {
            Ok(_) => {
                self.heads = heads;
                self.metrics
                    .audit_rows
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                #[cfg(feature = "observability")]
                crate::metrics::export::audit_rows(events.len() as u64);
                Ok(())
            }
            Err(e) => {
                self.metrics
                    .audit_failures
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                tracing::warn!(
                    "writing {} audit rows failed: {e}; they are lost",
                    events.len()
                );
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, detail: &str, key: &SecretKey, prev: &[u8; 32]) -> AuditRow {
        let mut r = AuditRow {
            table: AuditTable::Authz,
            seq,
            at: Timestamp::from_micros(seq as i64),
            key_id: "k:v1".into(),
            caller: "alice".into(),
            kind: "grant".into(),
            subject: "KvRead".into(),
            detail: detail.into(),
            mac: [0; 32],
        };
        r.mac = r.compute_mac(key, prev);
        r
    }

    #[test]
    fn the_chain_detects_edits_deletions_and_reordering() {
        let key = SecretKey::new([5; 32]);
        let mut rows = Vec::new();
        let mut prev = [0; 32];
        for i in 1..=4 {
            let r = row(i, &format!("d{i}"), &key, &prev);
            prev = r.mac;
            rows.push(r);
        }
        let keys = |id: &str| (id == "k:v1").then(|| SecretKey::new([5; 32]));
        assert_eq!(verify_chain(&rows, keys), Ok(prev));

        let mut edited = rows.clone();
        edited[1].detail = "forged".into();
        assert_eq!(
            verify_chain(&edited, keys),
            Err(AuditChainError::BadMac {
                table: AuditTable::Authz,
                seq: 2
            })
        );
        let mut deleted = rows.clone();
        deleted.remove(1);
        assert!(matches!(
            verify_chain(&deleted, keys),
            Err(AuditChainError::Gap {
                expected: 2,
                found: 3,
                ..
            })
        ));
        // Deleting a row and renumbering the rest still breaks the MAC chain.
        for (i, r) in deleted.iter_mut().enumerate() {
            r.seq = i as u64 + 1;
        }
        assert!(matches!(
            verify_chain(&deleted, keys),
            Err(AuditChainError::BadMac { seq: 2, .. })
        ));
        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        assert!(verify_chain(&swapped, keys).is_err());
        assert!(matches!(
            verify_chain(&rows, |_| None),
            Err(AuditChainError::UnknownKey { seq: 1, .. })
        ));
    }

    #[test]
    fn rows_round_trip_through_table_values() {
        let key = SecretKey::new([1; 32]);
        let r = row(1, "x", &key, &[0; 32]);
        let values: Vec<Value> = r.cells().into_iter().map(|(_, v)| v).collect();
        assert_eq!(AuditRow::from_values(AuditTable::Authz, &values), Some(r));
        assert_eq!(AuditRow::from_values(AuditTable::Authz, &values[1..]), None);
    }
}
