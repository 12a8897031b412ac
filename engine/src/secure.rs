//! Secure instances: authenticated callers, the Authz and Audit actors, and reads
//! checked against the published policy on the caller's thread.
//!
//! [`AedbInstance::open_secure`](crate::AedbInstance::open_secure) starts two more
//! actors beside the commit pipeline: the Authz actor (owner of grants and owners,
//! publisher of immutable [`PolicySnapshot`]s) and the Audit actor (sole writer of the
//! `authz_audit` and `assertion_audit` system tables, HMAC-chained). Every
//! caller-facing operation then has an `*_as(caller, …)` form and the anonymous forms
//! fail with [`AccessError::CallerRequired`].

use std::ops::Bound;
use std::sync::Arc;

use aedb_actors::EpochTable;
use aedb_actors::audit::{self, AuditEvent, AuditHandle, AuditRef, AuditTable, Event};
use aedb_actors::authz_actor::{self, AuthzHandle, PolicyChange};
use aedb_actors::metrics::EngineMetrics;
use aedb_actors::{Keyring, Pipeline};
use aedb_authz::{AccessError, Action, CallerId, CallerPolicy, Denied, KvRange, PolicySnapshot};
use aedb_model::{
    Direction, KeyRange, KvEntry, KvKey, Namespace, Numeric, NumericType, Page, Row, State,
    TableName, TableSchema, Value,
};
use aedb_session::{
    IhpConfig, ServerEnvironmentProfile, ServerProfileId, SessionAuthority,
    compute_server_env_hash_checked,
};
use aedb_types::{DatabaseId, Lsn};

use crate::error::{Error, SecurityError, UsageError};

/// How a secure instance is set up.
///
/// ```
/// use aedb::{CallerId, SecureConfig};
/// let secure = SecureConfig::new(CallerId::new("root@ops")?);
/// assert_eq!(secure.bootstrap_admin().as_str(), "root@ops");
/// # Ok::<(), aedb::CallerIdError>(())
/// ```
#[derive(Clone, Debug)]
pub struct SecureConfig {
    bootstrap_admin: CallerId,
    audit_queue: usize,
    sessions: Option<SessionSetup>,
}

/// What the session-capsule authority of a secure instance needs (the IHP runbook).
#[derive(Clone, Debug)]
struct SessionSetup {
    config: IhpConfig,
    profile_id: ServerProfileId,
    environment: ServerEnvironmentProfile,
}

impl SecureConfig {
    /// A secure instance whose first `GlobalAdmin` is `bootstrap_admin`: installed
    /// (durably, and audited) when the database is created, so no one ever has to
    /// open it anonymously. On later opens the persisted policy applies and this name
    /// grants nothing by itself.
    pub fn new(bootstrap_admin: CallerId) -> SecureConfig {
        SecureConfig {
            bootstrap_admin,
            audit_queue: 4096,
            sessions: None,
        }
    }

    /// Enables caller session capsules: the instance issues and verifies capsules bound
    /// to this server's `profile_id` and the hash of `environment` (validated with
    /// `compute_server_env_hash_checked` at open; the hash is recorded in the manifest
    /// for audit whenever it changes), under `config`'s drift and replay limits.
    pub fn with_sessions(
        mut self,
        config: IhpConfig,
        profile_id: ServerProfileId,
        environment: ServerEnvironmentProfile,
    ) -> SecureConfig {
        self.sessions = Some(SessionSetup {
            config,
            profile_id,
            environment,
        });
        self
    }

    /// Bound of the Audit actor's mailbox (default 4096 events); a full mailbox makes
    /// callers wait (backpressure), never drops rows.
    pub fn audit_queue(mut self, bound: usize) -> SecureConfig {
        self.audit_queue = bound.clamp(1, 1 << 20);
        self
    }

    /// The bootstrap admin.
    pub fn bootstrap_admin(&self) -> &CallerId {
        &self.bootstrap_admin
    }
}

/// The running security actors of a secure instance.
#[derive(Debug)]
pub(crate) struct Security {
    pub(crate) authz: AuthzHandle,
    pub(crate) audit: AuditHandle,
    pub(crate) sessions: Option<SessionAuthority>,
    metrics: Arc<EngineMetrics>,
    keyring: Keyring,
    database: DatabaseId,
}

impl Security {
    /// Creates the system tables if needed, loads the policy, starts the actors and
    /// bootstraps the first admin of a new database.
    pub(crate) fn start(
        pipeline: &Pipeline,
        keyring: Keyring,
        config: &SecureConfig,
    ) -> Result<Security, Error> {
        for ddl in audit::missing_system_ddl(&pipeline.snapshot()) {
            pipeline.commit(
                aedb_actors::Request::Ddl(ddl),
                aedb_actors::Finality::Durable,
                aedb_actors::Admission::Wait,
            )?;
        }
        let database = pipeline.database_id();
        let (policy, next_seq) =
            authz_actor::load_policy(&pipeline.snapshot()).map_err(SecurityError::from)?;
        let (key, master) = keyring
            .audit_key(database)
            .map_err(SecurityError::AuditKey)?;
        let metrics = pipeline.engine_metrics();
        let audit = audit::spawn(
            pipeline.committer(),
            &pipeline.snapshot_cell(),
            key,
            master.to_string(),
            metrics.clone(),
            config.audit_queue,
        )
        .map_err(|e| match e {
            audit::AuditStartError::Chain(e) => Error::from(SecurityError::Audit(e)),
            audit::AuditStartError::Thread(source) => Error::from(SecurityError::Thread {
                what: "Audit",
                source,
            }),
        })?;
        let bootstrapped = policy.is_bootstrapped();
        let authz = authz_actor::spawn(
            policy,
            next_seq,
            pipeline.committer(),
            audit.mailbox.clone(),
            metrics.clone(),
        )
        .map_err(|e| match e {
            authz_actor::AuthzStartError::Thread(source) => Error::from(SecurityError::Thread {
                what: "Authz",
                source,
            }),
            _ => Error::Commit(aedb_actors::CommitError::Closed),
        })?;
        if !bootstrapped {
            authz.change(
                CallerId::system(),
                PolicyChange::Bootstrap(config.bootstrap_admin.clone()),
            )?;
        }
        let sessions = match &config.sessions {
            None => None,
            Some(setup) => Some(start_sessions(pipeline, &keyring, setup)?),
        };
        Ok(Security {
            authz,
            audit,
            sessions,
            metrics,
            keyring,
            database,
        })
    }

    /// The session authority, when sessions are enabled.
    pub(crate) fn sessions(&self) -> Result<&SessionAuthority, Error> {
        self.sessions
            .as_ref()
            .ok_or(Error::Usage(UsageError::SessionsDisabled))
    }

    /// Loads the session key of a new epoch (after `rotate_keys`) and issues under it.
    pub(crate) fn start_session_epoch(
        &self,
        pipeline: &Pipeline,
        epoch: aedb_types::KeyEpoch,
    ) -> Result<(), Error> {
        let Some(sessions) = &self.sessions else {
            return Ok(());
        };
        let live = pipeline.manifest_live_state()?;
        let epochs = EpochTable::from_live(&live).map_err(session_key_error)?;
        let master = epochs
            .master(epoch)
            .ok_or(SecurityError::NoRecordedMaster(epoch))?;
        let key = self
            .keyring
            .session_key(self.database, epoch, master)
            .map_err(session_key_error)?;
        sessions
            .add_epoch_key(epoch, key)
            .and_then(|()| sessions.set_current_epoch(epoch))
            .map_err(|e| SecurityError::from(e).into())
    }

    /// Retires, in the session authority, the key epochs the manifest has retired
    /// since: their capsules are refused from then on.
    pub(crate) fn sync_retired_epochs(&self, pipeline: &Pipeline) -> Result<(), Error> {
        let Some(sessions) = &self.sessions else {
            return Ok(());
        };
        let live = pipeline.manifest_live_state()?;
        for epoch in live.retired_epochs().keys() {
            sessions.retire_epoch(*epoch).map_err(SecurityError::from)?;
        }
        Ok(())
    }

    /// The newest published policy.
    pub(crate) fn policy(&self) -> Arc<PolicySnapshot> {
        self.authz.policy()
    }

    /// Checks `actions` for `caller` against the published policy; a denial is
    /// counted and audited.
    pub(crate) fn check<'a>(
        &self,
        caller: &CallerId,
        actions: impl IntoIterator<Item = &'a Action<'a>, IntoIter: Clone>,
        what: &str,
    ) -> Result<(), AccessError> {
        let admin = self.check_deferring_row(caller, actions, what)?;
        if admin {
            self.admin_row(caller, what, "");
        }
        Ok(())
    }

    /// [`Security::check`] without the `admin_action` row: returns whether an
    /// admin-only action was authorised (counted already), so the caller writes the one
    /// row itself once it knows the outcome (key rotation names the new epoch).
    pub(crate) fn check_deferring_row<'a>(
        &self,
        caller: &CallerId,
        actions: impl IntoIterator<Item = &'a Action<'a>, IntoIter: Clone>,
        what: &str,
    ) -> Result<bool, AccessError> {
        // The system caller acts only inside the engine (audit writes, bootstrap);
        // presented to a caller-facing API it is a forgery.
        // Iterated again (no copy) for the denial's project or the admin count.
        let mut actions = actions.into_iter();
        let result = if caller.is_system() {
            Err(Denied::new(aedb_authz::DenyReason::NoRights))
        } else {
            self.policy().check_all(caller, actions.clone())
        };
        if let Err(denied) = &result {
            let action = actions.clone().nth(denied.action_index().unwrap_or(0));
            let project = action.map_or_else(|| GLOBAL_LABEL.to_owned(), action_project);
            self.denied(caller, what, denied, &project);
        }
        result.map_err(AccessError::from)?;
        let admin = actions.any(|a| a.is_global());
        if admin {
            self.metrics.count_global_admin_action(caller.as_str());
        }
        Ok(admin)
    }

    /// Records an admin-only action authorised for `caller` in `authz_audit` (the
    /// runbook's "unexpected GlobalAdmin usage"): kind `admin_action`, subject `what`.
    /// Every `*_as` call that needs `GlobalAdmin` writes exactly one such row (key
    /// rotation writes its own `key_rotation` row instead, naming the new epoch).
    pub(crate) fn admin_row(&self, caller: &CallerId, what: &str, detail: &str) {
        self.audit(AuditEvent {
            table: AuditTable::Authz,
            caller: caller.to_string(),
            kind: "admin_action".into(),
            subject: what.into(),
            detail: detail.into(),
        });
    }

    /// Counts and audits a denial of `what` in `project` (see [`action_project`]).
    pub(crate) fn denied(&self, caller: &CallerId, what: &str, denied: &Denied, project: &str) {
        record_denial(
            &self.metrics,
            &self.audit.mailbox,
            caller,
            what,
            denied,
            project,
        );
    }

    /// Queues an audit event (waits when the audit mailbox is full).
    pub(crate) fn audit(&self, event: AuditEvent) {
        // A closed mailbox means the instance is shutting down.
        let _ = self.audit.mailbox.tell(Event(event));
    }

    /// Audit key lookup for verifying rows by their `key_id`.
    pub(crate) fn audit_key_for(&self, key_id: &str) -> Option<aedb_keys::SecretKey> {
        self.keyring.audit_key_for(self.database, key_id).ok()
    }

    pub(crate) fn reader(&self) -> Auditor {
        Auditor {
            metrics: self.metrics.clone(),
            audit: self.audit.mailbox.clone(),
        }
    }

    /// Stops the actors after everything queued is written.
    pub(crate) fn stop(self) {
        self.authz.stop();
        self.audit.stop();
    }
}

fn session_key_error(e: aedb_keys::KeyError) -> Error {
    SecurityError::SessionKey(e).into()
}

/// Builds the session authority: the environment hash (recorded in the manifest when it
/// changed), a session key per live key epoch, and the persisted revocations.
fn start_sessions(
    pipeline: &Pipeline,
    keyring: &Keyring,
    setup: &SessionSetup,
) -> Result<SessionAuthority, Error> {
    let env_hash = compute_server_env_hash_checked(&setup.environment, &setup.config)
        .map_err(Error::ServerProfile)?;
    let database = pipeline.database_id();
    let live = pipeline.manifest_live_state()?;
    let profile = setup.profile_id.to_string();
    if live.env_hash() != Some((profile.as_str(), env_hash.as_bytes())) {
        pipeline.record_manifest(vec![aedb_manifest::ManifestRecord::ServerEnvHash {
            profile_id: profile,
            hash: *env_hash.as_bytes(),
        }])?;
    }
    let authority = SessionAuthority::new(setup.config.clone(), setup.profile_id, env_hash);
    let epochs = EpochTable::from_live(&live).map_err(session_key_error)?;
    for epoch in live.key_epochs().keys() {
        if epochs.is_retired(*epoch) {
            authority
                .retire_epoch(*epoch)
                .map_err(SecurityError::from)?;
        } else if let Some(master) = epochs.master(*epoch) {
            let key = keyring
                .session_key(database, *epoch, master)
                .map_err(session_key_error)?;
            authority
                .add_epoch_key(*epoch, key)
                .map_err(SecurityError::from)?;
        }
    }
    if let Some((current, _)) = epochs.current() {
        authority
            .set_current_epoch(current)
            .map_err(SecurityError::from)?;
    }
    for revoked in authz_actor::load_session_revocations(&pipeline.snapshot()) {
        apply_revocation(&authority, &revoked);
    }
    Ok(authority)
}

/// Applies a persisted revocation key (`profile/<hex>`, `env/<hex>`, or
/// `caller/<issued-up-to unix micros>/<caller id>`).
pub(crate) fn apply_revocation(authority: &SessionAuthority, key: &str) {
    if let Some(id) = key.strip_prefix("profile/").and_then(|h| h.parse().ok()) {
        authority.revoke_profile(id);
    } else if let Some(hash) = key.strip_prefix("env/").and_then(|h| h.parse().ok()) {
        authority.revoke_env_hash(hash);
    } else if let Some((cutoff, caller)) = key
        .strip_prefix("caller/")
        .and_then(|rest| rest.split_once('/'))
        && let (Ok(cutoff), Ok(caller)) = (cutoff.parse::<i64>(), CallerId::new(caller))
    {
        authority.revoke_caller_sessions(&caller, aedb_session::UnixMicros::from_micros(cutoff));
    }
}

/// The label denials of admin-only actions are counted under.
pub(crate) const GLOBAL_LABEL: &str = aedb_actors::authz_actor::GLOBAL_LABEL;

/// The label of denials by the Sequencer (a caller's rights revoked while its commit
/// was queued), which no longer sees the transaction's project.
pub(crate) const SEQUENCER_LABEL: &str = "_sequencer";

/// The project an action works in, as a metrics label (`_global` for admin-only
/// actions): a project name, never a key or a value.
pub(crate) fn action_project(action: &Action<'_>) -> String {
    match (action, action.namespace()) {
        (_, Some(ns)) => ns.project.to_string(),
        (Action::CreateProject { project }, None) => project.to_string(),
        _ => GLOBAL_LABEL.to_owned(),
    }
}

fn record_denial(
    metrics: &EngineMetrics,
    audit: &AuditRef,
    caller: &CallerId,
    what: &str,
    denied: &Denied,
    project: &str,
) {
    metrics.count_denial(project);
    let _ = audit.tell(Event(AuditEvent {
        table: AuditTable::Authz,
        caller: caller.to_string(),
        kind: "denied".into(),
        subject: what.into(),
        detail: denied.reason().as_str().into(),
    }));
}

/// What a read snapshot needs to audit its denials.
#[derive(Clone, Debug)]
pub(crate) struct Auditor {
    metrics: Arc<EngineMetrics>,
    audit: AuditRef,
}

/// A read snapshot bound to an authenticated caller: every read is checked against
/// the policy published when the snapshot was taken, on the caller's thread (no actor
/// hop), and denials are audited. Denials are generic ([`AccessError::Denied`]): they
/// do not say whether the namespace, table or key exists.
#[derive(Clone, Debug)]
pub struct CallerSnapshot {
    state: Arc<State>,
    policy: Option<CallerPolicy>,
    caller: CallerId,
    auditor: Option<Auditor>,
}

impl CallerSnapshot {
    pub(crate) fn new(
        state: Arc<State>,
        policy: Option<CallerPolicy>,
        caller: CallerId,
        auditor: Option<Auditor>,
    ) -> CallerSnapshot {
        CallerSnapshot {
            state,
            policy,
            caller,
            auditor,
        }
    }

    fn allow(&self, action: &Action<'_>) -> Result<(), Error> {
        let Some(policy) = &self.policy else {
            return Ok(());
        };
        policy.check(action).map_err(|denied| {
            if let Some(a) = &self.auditor {
                record_denial(
                    &a.metrics,
                    &a.audit,
                    &self.caller,
                    &action.to_string(),
                    &denied,
                    &action_project(action),
                );
            }
            Error::Access(AccessError::Denied(denied))
        })
    }

    /// The caller.
    pub fn caller(&self) -> &CallerId {
        &self.caller
    }

    /// The LSN of the last commit this snapshot shows.
    pub fn lsn(&self) -> Lsn {
        self.state.lsn()
    }

    /// One KV entry (`KvRead` on the key).
    pub fn kv_get(&self, ns: &Namespace, key: &[u8]) -> Result<Option<KvEntry>, Error> {
        self.allow(&Action::KvRead { ns, key })?;
        Ok(self.state.kv_get(ns, key)?)
    }

    /// A number stored at `key` (missing = zero).
    pub fn kv_get_numeric(
        &self,
        ns: &Namespace,
        key: &[u8],
        ty: NumericType,
    ) -> Result<Numeric, Error> {
        self.allow(&Action::KvRead { ns, key })?;
        Ok(self.state.kv_get_numeric(ns, key, ty)?)
    }

    /// Keys starting with `prefix` (a readable prefix must cover `prefix`).
    pub fn kv_scan_prefix(
        &self,
        ns: &Namespace,
        prefix: &[u8],
        direction: Direction,
        limit: usize,
    ) -> Result<Page<(KvKey, aedb_model::KvEntry)>, Error> {
        self.allow(&Action::KvScan {
            ns,
            range: KvRange::Prefix(prefix),
        })?;
        Ok(self.state.kv_scan_prefix(ns, prefix, direction, limit)?)
    }

    /// Keys in a range (one readable prefix must cover the whole range).
    pub fn kv_scan_range(
        &self,
        ns: &Namespace,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Page<(KvKey, aedb_model::KvEntry)>, Error> {
        self.allow(&Action::KvScan {
            ns,
            range: KvRange::Bounds { start, end },
        })?;
        Ok(self.state.kv_scan_range(ns, start, end, direction, limit)?)
    }

    /// Entries in a key range handed to `visit` as borrowed slices (`KvScan` over the
    /// range), as [`ReadSnapshot::kv_scan_with`](crate::ReadSnapshot::kv_scan_with).
    pub fn kv_scan_with(
        &self,
        ns: &Namespace,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
        direction: Direction,
        limit: usize,
        visit: impl FnMut(&[u8], &[u8], aedb_types::Lsn) -> std::ops::ControlFlow<()>,
    ) -> Result<usize, Error> {
        self.allow(&Action::KvScan {
            ns,
            range: KvRange::Bounds { start, end },
        })?;
        Ok(self
            .state
            .kv_visit(ns, start, end, direction, limit, visit)?)
    }

    /// One row by primary key (`TableRead`).
    pub fn table_get(
        &self,
        ns: &Namespace,
        table: &TableName,
        pk: &[Value],
    ) -> Result<Option<Row>, Error> {
        self.allow(&Action::TableRead { ns, table })?;
        Ok(self.state.table_get(ns, table, pk)?)
    }

    /// Rows in a primary-key range (`TableRead`).
    pub fn table_scan(
        &self,
        ns: &Namespace,
        table: &TableName,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<Page<Row>, Error> {
        self.allow(&Action::TableRead { ns, table })?;
        Ok(self.state.table_scan(ns, table, range, direction, limit)?)
    }

    /// A table's schema (`TableRead`).
    pub fn table_schema(&self, ns: &Namespace, table: &TableName) -> Result<TableSchema, Error> {
        self.allow(&Action::TableRead { ns, table })?;
        Ok(self.state.table_schema(ns, table)?.clone())
    }

    /// Number of keys in the namespace's KV space (a readable prefix must cover every
    /// key: an empty prefix).
    pub fn kv_len(&self, ns: &Namespace) -> Result<usize, Error> {
        self.allow(&Action::KvScan {
            ns,
            range: KvRange::Prefix(b""),
        })?;
        Ok(self.state.kv_len(ns)?)
    }

    /// Number of rows in a table (`TableRead`).
    pub fn table_len(&self, ns: &Namespace, table: &TableName) -> Result<usize, Error> {
        self.allow(&Action::TableRead { ns, table })?;
        Ok(self.state.table_len(ns, table)?)
    }
}
