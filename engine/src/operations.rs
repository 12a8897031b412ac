//! Incident-response controls of a running instance (the security runbook's "freeze
//! writes" and "reduce admission rate", and per-commit deadlines): thin `*_as` and
//! anonymous forms over one implementation each.
//!
//! - The **write freeze** is recorded by the Sequencer itself as an entry of
//!   `_system/authz` through the durable commit path (see `aedb_actors::freeze`), so it
//!   survives restarts until lifted and no commit sequenced after it applies.
//! - The **rate limits** are token buckets checked on the caller's thread before the
//!   Sequencer's mailbox (see `aedb_actors::admission`).
//! - A **deadline** travels with the commit and is checked by the Sequencer when it
//!   takes the commit from its mailbox.

use std::time::Instant;

use aedb_actors::{Admission, RateLimits, WriteFreeze};
use aedb_authz::{Action, CallerId};
use aedb_model::{State, Transaction};
use aedb_types::Lsn;

use crate::{
    AedbInstance, AuditEvent, AuditTable, CommitOutcome, ConfigError, Error, Finality, Who,
};

/// The write freeze recorded in `state` (for example the state an offline check
/// recovered), if writes are frozen there.
pub fn write_freeze_of(state: &State) -> Option<WriteFreeze> {
    aedb_actors::freeze::load_write_freeze(state)
}

impl AedbInstance {
    /// Freezes all writes (the runbook's "on integrity alert: freeze writes"): from the
    /// returned LSN on, every commit — KV, tables, DDL, from any caller, waiting,
    /// failing fast or async — is refused with [`CommitError::Frozen`](crate::CommitError::Frozen)
    /// (code `commit.frozen`, class Retryable) and applies nothing, until
    /// [`AedbInstance::unfreeze_writes_as`]. Reads, snapshots, backups, checkpoints,
    /// audit reads and exports and the offline checks go on; the engine's own audit and
    /// policy commits too. The freeze is durable (it survives a restart until lifted),
    /// is shown by `operational_metrics()` (`frozen`, `freeze_reason`) and
    /// `aedb inspect`, and is recorded in `authz_audit` with `reason` (1 ..= 1024 bytes;
    /// it is stored, so it must not contain secrets). Needs `GlobalAdmin`; others get
    /// the generic denial (audited).
    ///
    /// ```
    /// use aedb::{AedbConfig, AedbInstance, CallerId, ErrorClass, Namespace, SecureConfig};
    /// let dir = tempfile::tempdir()?;
    /// let root = CallerId::new("root")?;
    /// let db = AedbInstance::open_secure(dir.path(), AedbConfig::production([1; 32]), SecureConfig::new(root.clone()))?;
    /// db.create_project_as(&root, "bank")?;
    /// db.create_scope_as(&root, "bank", "main")?;
    /// let ns = Namespace::parse("bank", "main")?;
    /// db.freeze_writes_as(&root, "integrity alert 17")?;
    /// let refused = db.kv_put_as(&root, &ns, "k", "v").unwrap_err();
    /// assert_eq!((refused.code(), refused.class()), ("commit.frozen", ErrorClass::Retryable));
    /// assert!(db.operational_metrics().frozen);
    /// db.unfreeze_writes_as(&root)?;
    /// db.kv_put_as(&root, &ns, "k", "v")?;
    /// db.shutdown()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn freeze_writes_as(&self, caller: &CallerId, reason: &str) -> Result<Lsn, Error> {
        self.freeze_writes_by(Who::Caller(caller), reason)
    }

    /// [`AedbInstance::freeze_writes_as`] on an open instance (refused on secure ones).
    pub fn freeze_writes(&self, reason: &str) -> Result<Lsn, Error> {
        self.freeze_writes_by(Who::Anonymous, reason)
    }

    /// Lifts the write freeze (durably; audited): commits are accepted again. Returns
    /// the LSN at which it was lifted (the current LSN if writes were not frozen).
    /// Needs `GlobalAdmin`.
    pub fn unfreeze_writes_as(&self, caller: &CallerId) -> Result<Lsn, Error> {
        self.unfreeze_writes_by(Who::Caller(caller))
    }

    /// [`AedbInstance::unfreeze_writes_as`] on an open instance (refused on secure ones).
    pub fn unfreeze_writes(&self) -> Result<Lsn, Error> {
        self.unfreeze_writes_by(Who::Anonymous)
    }

    /// The write freeze in force, if any (who, why, since when). Reveals no stored
    /// data, like `operational_metrics()`.
    pub fn write_freeze(&self) -> Option<WriteFreeze> {
        self.pipeline.write_freeze()
    }

    fn freeze_writes_by(&self, who: Who<'_>, reason: &str) -> Result<Lsn, Error> {
        self.permit(who, [&Action::FreezeWrites], "freeze_writes")?;
        let freeze = WriteFreeze::new(&who_name(who), reason)?;
        let outcome = self.pipeline.set_write_freeze(Some(freeze))?;
        self.audit_admin(who, "write_freeze", reason, &format!("lsn {}", outcome.lsn));
        Ok(outcome.lsn)
    }

    fn unfreeze_writes_by(&self, who: Who<'_>) -> Result<Lsn, Error> {
        self.permit(who, [&Action::FreezeWrites], "unfreeze_writes")?;
        let outcome = self.pipeline.set_write_freeze(None)?;
        self.audit_admin(who, "write_unfreeze", "", &format!("lsn {}", outcome.lsn));
        Ok(outcome.lsn)
    }

    /// Replaces the commit admission limits at run time (the runbook's "reduce
    /// admission rate"): in force for the next commit, with full buckets. Validated
    /// like [`AedbConfig::commit_rate_limits`](crate::AedbConfig::commit_rate_limits)
    /// (a zero or absurd limit is [`ConfigError::CommitRateLimit`] and changes
    /// nothing); recorded in `authz_audit`. Not persisted: a reopen uses the
    /// configuration's limits. Needs `GlobalAdmin`.
    pub fn set_rate_limits_as(&self, caller: &CallerId, limits: RateLimits) -> Result<(), Error> {
        self.set_rate_limits_by(Who::Caller(caller), limits)
    }

    /// [`AedbInstance::set_rate_limits_as`] on an open instance (refused on secure
    /// ones).
    pub fn set_rate_limits(&self, limits: RateLimits) -> Result<(), Error> {
        self.set_rate_limits_by(Who::Anonymous, limits)
    }

    /// The commit admission limits in force.
    pub fn rate_limits(&self) -> RateLimits {
        self.pipeline.rate_limits()
    }

    fn set_rate_limits_by(&self, who: Who<'_>, limits: RateLimits) -> Result<(), Error> {
        self.permit(who, [&Action::SetRateLimits], "set_rate_limits")?;
        limits.validate().map_err(ConfigError::CommitRateLimit)?;
        let described = format!("{limits:?}");
        self.pipeline.set_rate_limits(limits);
        self.audit_admin(who, "rate_limits_changed", &described, "");
        Ok(())
    }

    /// Commits `tx` unless its `deadline` passes first: a commit the Sequencer takes
    /// from its mailbox after `deadline` is refused with
    /// [`CommitError::Timeout`](crate::CommitError::Timeout) (code `commit.timeout`,
    /// class Retryable) and applies nothing; a rate-limit wait never runs past it. A
    /// commit sequenced before its deadline is not undone: it completes with its
    /// finality. Counted in `operational_metrics().errors.timeout`.
    pub fn commit_with_deadline(
        &self,
        tx: Transaction,
        finality: Finality,
        deadline: Instant,
    ) -> Result<CommitOutcome, Error> {
        self.commit_until_by(
            Who::Anonymous,
            tx,
            finality,
            Admission::Wait,
            Some(deadline),
        )
    }

    /// [`AedbInstance::commit_with_deadline`] on behalf of `caller`.
    pub fn commit_with_deadline_as(
        &self,
        caller: &CallerId,
        tx: Transaction,
        finality: Finality,
        deadline: Instant,
    ) -> Result<CommitOutcome, Error> {
        self.commit_until_by(
            Who::Caller(caller),
            tx,
            finality,
            Admission::Wait,
            Some(deadline),
        )
    }

    /// Records an administrative action of `who` in `authz_audit` (secure instances).
    fn audit_admin(&self, who: Who<'_>, kind: &str, subject: &str, detail: &str) {
        if let (Some(s), Who::Caller(caller)) = (&self.security, who) {
            s.audit(AuditEvent {
                table: AuditTable::Authz,
                caller: caller.to_string(),
                kind: kind.into(),
                subject: subject.into(),
                detail: detail.into(),
            });
        }
    }
}

/// The name a freeze records for `who`.
fn who_name(who: Who<'_>) -> String {
    match who {
        Who::Caller(caller) => caller.to_string(),
        Who::Anonymous => "anonymous".into(),
    }
}
