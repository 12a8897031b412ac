//! The write API of [`AedbInstance`]: commits (with their finality, admission and
//! caller), DDL and the KV shorthands. The anonymous and `*_as` forms of each call share
//! one implementation (`Who`).

use super::*;

impl AedbInstance {
    /// Commits `tx` with the configured default finality, waiting for room in the
    /// commit queue if it is full. Refused on secure instances (use
    /// [`AedbInstance::commit_as`]).
    pub fn commit(&self, tx: Transaction) -> Result<CommitOutcome, Error> {
        self.commit_by(Who::Anonymous, tx, self.default_finality, Admission::Wait)
    }

    /// Commits `tx` with an explicit finality.
    pub fn commit_with(&self, tx: Transaction, finality: Finality) -> Result<CommitOutcome, Error> {
        self.commit_by(Who::Anonymous, tx, finality, Admission::Wait)
    }

    /// Like [`AedbInstance::commit_with`], but fails with [`CommitError::Busy`]
    /// (class [`ErrorClass::Retryable`]) instead of waiting when the commit queue is
    /// full.
    pub fn try_commit(&self, tx: Transaction, finality: Finality) -> Result<CommitOutcome, Error> {
        self.commit_by(Who::Anonymous, tx, finality, Admission::FailFast)
    }

    /// Async form of [`AedbInstance::commit_with`] for callers on an async runtime: it
    /// never blocks the executor thread.
    pub async fn commit_async(
        &self,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, Error> {
        self.commit_async_by(Who::Anonymous, tx, finality).await
    }

    /// Commits `tx` on behalf of `caller` with the default finality: every mutation
    /// needs the matching write right (`KvWrite` covering the key, `TableWrite`) and
    /// every assertion the matching read right. A denial changes nothing, is generic
    /// ([`AccessError::Denied`]) and is audited; a failed assertion is recorded in
    /// `assertion_audit` with the assertion's index and the actual value.
    pub fn commit_as(&self, caller: &CallerId, tx: Transaction) -> Result<CommitOutcome, Error> {
        self.commit_by(
            Who::Caller(caller),
            tx,
            self.default_finality,
            Admission::Wait,
        )
    }

    /// [`AedbInstance::commit_as`] with an explicit finality.
    pub fn commit_with_as(
        &self,
        caller: &CallerId,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, Error> {
        self.commit_by(Who::Caller(caller), tx, finality, Admission::Wait)
    }

    /// [`AedbInstance::try_commit`] on behalf of `caller`.
    pub fn try_commit_as(
        &self,
        caller: &CallerId,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, Error> {
        self.commit_by(Who::Caller(caller), tx, finality, Admission::FailFast)
    }

    /// [`AedbInstance::commit_async`] on behalf of `caller`.
    pub async fn commit_async_as(
        &self,
        caller: &CallerId,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, Error> {
        self.commit_async_by(Who::Caller(caller), tx, finality)
            .await
    }

    /// The commit path of the anonymous and `*_as` forms without a deadline.
    pub(crate) fn commit_by(
        &self,
        who: Who<'_>,
        tx: Transaction,
        finality: Finality,
        admission: Admission,
    ) -> Result<CommitOutcome, Error> {
        self.commit_until_by(who, tx, finality, admission, None)
    }

    /// The one commit path of the anonymous and `*_as` forms: refused with
    /// [`CommitError::Timeout`] if the Sequencer dequeues it after `deadline`.
    pub(crate) fn commit_until_by(
        &self,
        who: Who<'_>,
        tx: Transaction,
        finality: Finality,
        admission: Admission,
        deadline: Option<std::time::Instant>,
    ) -> Result<CommitOutcome, Error> {
        self.authorize_commit(who, &tx)?;
        let result = self.pipeline.submit_until(
            who.authority(),
            Request::Transaction(tx),
            finality,
            admission,
            deadline,
        );
        self.audit_outcome(who, &result);
        Ok(result?)
    }

    async fn commit_async_by(
        &self,
        who: Who<'_>,
        tx: Transaction,
        finality: Finality,
    ) -> Result<CommitOutcome, Error> {
        self.authorize_commit(who, &tx)?;
        let result = self
            .pipeline
            .submit_async(who.authority(), Request::Transaction(tx), finality)
            .await;
        self.audit_outcome(who, &result);
        Ok(result?)
    }

    pub(crate) fn authorize_commit(
        &self,
        who: Who<'_>,
        tx: &Transaction,
    ) -> Result<(), AccessError> {
        let Who::Caller(caller) = who else {
            return self.anonymous();
        };
        let actions = aedb_authz::transaction_actions(tx);
        self.authorize(caller, &actions, "commit").inspect_err(|e| {
            if let (Some(s), AccessError::Denied(denied)) = (&self.security, e) {
                let index = denied.action_index().unwrap_or(0);
                s.audit(AuditEvent {
                    table: AuditTable::Assertion,
                    caller: caller.to_string(),
                    kind: "policy_denied".into(),
                    subject: actions
                        .get(index)
                        .map_or(String::new(), ToString::to_string),
                    detail: denied.reason().as_str().into(),
                });
            }
        })
    }

    /// Records a failed assertion in `assertion_audit`, and a denial by the Sequencer
    /// (the caller's rights were revoked between the check on its thread and
    /// sequencing) like any other denial (secure instances).
    pub(crate) fn audit_outcome(&self, who: Who<'_>, result: &Result<CommitOutcome, CommitError>) {
        if let (Some(s), Who::Caller(caller), Err(CommitError::Access(AccessError::Denied(d)))) =
            (&self.security, who, result)
        {
            // Refused by the Sequencer (rights revoked while the commit was queued):
            // the transaction is gone by now, so it counts under its own label.
            s.denied(caller, "commit", d, secure::SEQUENCER_LABEL);
        }
        if let (
            Some(s),
            Who::Caller(caller),
            Err(CommitError::Rejected(ApplyError::AssertionFailed { index, detail })),
        ) = (&self.security, who, result)
        {
            s.audit(AuditEvent {
                table: AuditTable::Assertion,
                caller: caller.to_string(),
                kind: "assertion_failed".into(),
                subject: index.to_string(),
                detail: detail.clone(),
            });
        }
    }

    /// Applies a DDL statement durably. Refused on secure instances (use
    /// [`AedbInstance::ddl_as`]).
    pub fn ddl(&self, ddl: Ddl) -> Result<CommitOutcome, Error> {
        self.ddl_by(Who::Anonymous, ddl)
    }

    /// Applies a DDL statement on behalf of `caller`: creating a project needs
    /// `GlobalAdmin`, a scope `ProjectAdmin` (or ownership of the project), a table
    /// `TableDdl`/`ScopeAdmin` (or ownership of the scope). The creator becomes the
    /// owner of what it creates; a dropped table's grants and owner are forgotten.
    pub fn ddl_as(&self, caller: &CallerId, ddl: Ddl) -> Result<CommitOutcome, Error> {
        self.ddl_by(Who::Caller(caller), ddl)
    }

    /// The one DDL path of the anonymous and `*_as` forms.
    pub(crate) fn ddl_by(&self, who: Who<'_>, ddl: Ddl) -> Result<CommitOutcome, Error> {
        let action = aedb_authz::ddl_action(&ddl);
        self.permit(who, [&action], "ddl")?;
        let ownership = match (&ddl, &self.security, who) {
            (_, None, _) | (_, _, Who::Anonymous) => None,
            (Ddl::CreateProject { project }, Some(_), Who::Caller(caller)) => {
                Some(authz_actor::PolicyChange::SetOwner {
                    resource: Resource::Project(project.clone()),
                    owner: caller.clone(),
                })
            }
            (Ddl::CreateScope { ns }, Some(_), Who::Caller(caller)) => {
                Some(authz_actor::PolicyChange::SetOwner {
                    resource: Resource::Scope(ns.clone()),
                    owner: caller.clone(),
                })
            }
            (Ddl::CreateTable { ns, table, .. }, Some(_), Who::Caller(caller)) => {
                Some(authz_actor::PolicyChange::SetOwner {
                    resource: Resource::Table {
                        ns: ns.clone(),
                        table: table.clone(),
                    },
                    owner: caller.clone(),
                })
            }
            (Ddl::DropTable { ns, table }, Some(_), Who::Caller(_)) => {
                Some(authz_actor::PolicyChange::Forget(Resource::Table {
                    ns: ns.clone(),
                    table: table.clone(),
                }))
            }
        };
        let result = self.pipeline.submit(
            who.authority(),
            Request::Ddl(ddl),
            Finality::Durable,
            Admission::Wait,
        );
        self.audit_outcome(who, &result);
        let outcome = result?;
        if let (Some(change), Some(s)) = (ownership, &self.security) {
            s.authz.change(CallerId::system(), change)?;
        }
        Ok(outcome)
    }

    /// Creates a project.
    pub fn create_project(&self, project: &str) -> Result<CommitOutcome, Error> {
        let project = ProjectName::new(project)?;
        self.ddl_by(Who::Anonymous, Ddl::CreateProject { project })
    }

    /// Creates a project on behalf of `caller` (`GlobalAdmin`), who becomes its owner.
    pub fn create_project_as(
        &self,
        caller: &CallerId,
        project: &str,
    ) -> Result<CommitOutcome, Error> {
        let project = ProjectName::new(project)?;
        self.ddl_by(Who::Caller(caller), Ddl::CreateProject { project })
    }

    /// Creates a scope (with its KV space) in an existing project.
    pub fn create_scope(&self, project: &str, scope: &str) -> Result<CommitOutcome, Error> {
        let ns = Namespace::parse(project, scope)?;
        self.ddl_by(Who::Anonymous, Ddl::CreateScope { ns })
    }

    /// Creates a scope on behalf of `caller`, who becomes its owner.
    pub fn create_scope_as(
        &self,
        caller: &CallerId,
        project: &str,
        scope: &str,
    ) -> Result<CommitOutcome, Error> {
        let ns = Namespace::parse(project, scope)?;
        self.ddl_by(Who::Caller(caller), Ddl::CreateScope { ns })
    }

    /// Creates a table in a namespace.
    pub fn create_table(
        &self,
        ns: &Namespace,
        table: &str,
        schema: TableSchema,
    ) -> Result<CommitOutcome, Error> {
        self.create_table_by(Who::Anonymous, ns, table, schema)
    }

    /// Creates a table on behalf of `caller`, who becomes its owner.
    pub fn create_table_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        table: &str,
        schema: TableSchema,
    ) -> Result<CommitOutcome, Error> {
        self.create_table_by(Who::Caller(caller), ns, table, schema)
    }

    pub(crate) fn create_table_by(
        &self,
        who: Who<'_>,
        ns: &Namespace,
        table: &str,
        schema: TableSchema,
    ) -> Result<CommitOutcome, Error> {
        let table = TableName::new(table)?;
        self.ddl_by(
            who,
            Ddl::CreateTable {
                ns: ns.clone(),
                table,
                schema,
            },
        )
    }

    /// A one-mutation commit with the default finality.
    pub(crate) fn commit_one(&self, who: Who<'_>, tx: Transaction) -> Result<CommitOutcome, Error> {
        self.commit_by(who, tx, self.default_finality, Admission::Wait)
    }

    /// Puts one KV pair (a one-mutation commit with the default finality).
    pub fn kv_put(
        &self,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_put(ns, KvKey::new(key)?, KvValue::new(value)?);
        self.commit_one(Who::Anonymous, tx)
    }

    /// [`AedbInstance::kv_put`] on behalf of `caller` (`KvWrite` covering the key).
    pub fn kv_put_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_put(ns, KvKey::new(key)?, KvValue::new(value)?);
        self.commit_one(Who::Caller(caller), tx)
    }

    /// Deletes one KV key (a one-mutation commit with the default finality).
    pub fn kv_delete(&self, ns: &Namespace, key: impl AsRef<[u8]>) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_delete(ns, KvKey::new(key)?);
        self.commit_one(Who::Anonymous, tx)
    }

    /// [`AedbInstance::kv_delete`] on behalf of `caller` (`KvWrite`).
    pub fn kv_delete_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_delete(ns, KvKey::new(key)?);
        self.commit_one(Who::Caller(caller), tx)
    }

    /// Atomically adds `delta` to the number stored at `key` (missing counts as zero);
    /// overflow is an error and changes nothing.
    pub fn kv_add(
        &self,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        delta: Numeric,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_add(ns, KvKey::new(key)?, delta);
        self.commit_one(Who::Anonymous, tx)
    }

    /// [`AedbInstance::kv_add`] on behalf of `caller` (`KvWrite`).
    pub fn kv_add_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        delta: Numeric,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_add(ns, KvKey::new(key)?, delta);
        self.commit_one(Who::Caller(caller), tx)
    }

    /// Atomically subtracts `delta`; underflow is an error and changes nothing.
    pub fn kv_sub(
        &self,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        delta: Numeric,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_sub(ns, KvKey::new(key)?, delta);
        self.commit_one(Who::Anonymous, tx)
    }

    /// [`AedbInstance::kv_sub`] on behalf of `caller` (`KvWrite`).
    pub fn kv_sub_as(
        &self,
        caller: &CallerId,
        ns: &Namespace,
        key: impl AsRef<[u8]>,
        delta: Numeric,
    ) -> Result<CommitOutcome, Error> {
        let tx = Transaction::new().kv_sub(ns, KvKey::new(key)?, delta);
        self.commit_one(Who::Caller(caller), tx)
    }
}
