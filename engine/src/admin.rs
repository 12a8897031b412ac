//! The administrative API of [`AedbInstance`] on secure instances: grants, revokes and
//! ownership, audit reads and exports, session capsules and their revocations.

use super::*;

impl AedbInstance {
    /// [`AedbInstance::operational_metrics`] on behalf of `caller` (`ReadMetrics`).
    pub fn operational_metrics_as(&self, caller: &CallerId) -> Result<OperationalMetrics, Error> {
        self.authorize(caller, [&Action::ReadMetrics], "read_metrics")?;
        Ok(self.pipeline.metrics())
    }

    /// Grants `permission` to `grantee` on behalf of `caller`, who needs authority
    /// over it (`GlobalAdmin`, an admin or owner covering it, or a delegable grant of
    /// it). Durable and audited before it returns; visible to the next read.
    pub fn grant_as(
        &self,
        caller: &CallerId,
        grantee: &CallerId,
        permission: Permission,
        delegable: bool,
    ) -> Result<AuthzChange, Error> {
        Self::not_system(caller)?;
        Ok(self.security()?.authz.change(
            caller.clone(),
            authz_actor::PolicyChange::Grant {
                grantee: grantee.clone(),
                permission,
                delegable,
            },
        )?)
    }

    /// Revokes `permission` from `grantee` on behalf of `caller`; delegated grants
    /// that relied on it are revoked with it. Durable and audited.
    pub fn revoke_as(
        &self,
        caller: &CallerId,
        grantee: &CallerId,
        permission: Permission,
    ) -> Result<AuthzChange, Error> {
        Self::not_system(caller)?;
        Ok(self.security()?.authz.change(
            caller.clone(),
            authz_actor::PolicyChange::Revoke {
                grantee: grantee.clone(),
                permission,
            },
        )?)
    }

    /// Transfers ownership of `resource` to `new_owner` on behalf of `caller` (its
    /// owner, or an admin covering it). Durable and audited.
    pub fn transfer_ownership_as(
        &self,
        caller: &CallerId,
        resource: Resource,
        new_owner: &CallerId,
    ) -> Result<AuthzChange, Error> {
        Self::not_system(caller)?;
        Ok(self.security()?.authz.change(
            caller.clone(),
            authz_actor::PolicyChange::TransferOwnership {
                resource,
                new_owner: new_owner.clone(),
            },
        )?)
    }

    /// The rows of one audit table, after every event queued so far is written
    /// (`GlobalAdmin`, through the normal read path).
    pub fn audit_rows_as(
        &self,
        caller: &CallerId,
        table: AuditTable,
    ) -> Result<Vec<AuditRow>, Error> {
        let s = self.security()?;
        s.check(caller, [&Action::ReadAudit], "read_audit")?;
        self.audit_rows_checked(s, table)
    }

    /// The rows of `table` after everything queued is written; the caller was checked.
    pub(crate) fn audit_rows_checked(
        &self,
        s: &secure::Security,
        table: AuditTable,
    ) -> Result<Vec<AuditRow>, Error> {
        s.audit.flush()?;
        aedb_actors::audit::read_rows(&self.pipeline.snapshot(), table)
            .map_err(|e| Error::Security(SecurityError::Audit(e)))
    }

    /// Both audit tables for one admin call (`what`): one check, one `admin_action`
    /// row (written before the read, so the rows returned include it).
    pub(crate) fn all_audit_rows(
        &self,
        caller: &CallerId,
        what: &str,
    ) -> Result<Vec<AuditRow>, Error> {
        let s = self.security()?;
        s.check(caller, [&Action::ReadAudit], what)?;
        let mut rows = self.audit_rows_checked(s, AuditTable::Authz)?;
        rows.extend(self.audit_rows_checked(s, AuditTable::Assertion)?);
        Ok(rows)
    }

    /// Verifies both audit chains as stored (`GlobalAdmin`); returns the row count of
    /// each table.
    pub fn verify_audit_as(&self, caller: &CallerId) -> Result<Vec<(AuditTable, u64)>, Error> {
        let s = self.security()?;
        let rows = self.all_audit_rows(caller, "verify_audit")?;
        audit_export::verify_audit_rows(&rows, |id| s.audit_key_for(id))
    }

    /// Writes both audit tables as JSON lines to `out` (created; an existing file is
    /// refused) for immutable storage, after verifying their chains. The export alone,
    /// with the audit key, verifies ([`read_audit_export`], [`verify_audit_rows`],
    /// `aedb audit verify`). Needs `GlobalAdmin`.
    pub fn export_audit_as(
        &self,
        caller: &CallerId,
        out: impl AsRef<Path>,
    ) -> Result<AuditExport, Error> {
        let s = self.security()?;
        let rows = self.all_audit_rows(caller, "export_audit")?;
        let counts = audit_export::verify_audit_rows(&rows, |id| s.audit_key_for(id))?;
        audit_export::export_rows(&*self.fs, self.database_id(), &rows, &counts, out.as_ref())
    }

    /// Issues a sealed session capsule for `subject` (the IHP runbook): bound to this
    /// server's profile id and environment hash, the current key epoch, the issue time
    /// and — when given — the connection's channel binding (for example its TLS exporter
    /// material), so it verifies only on that channel. `issuer` may issue for itself;
    /// issuing for another caller needs `GlobalAdmin` (`ManageSessions`).
    pub fn issue_session_as(
        &self,
        issuer: &CallerId,
        subject: &CallerId,
        channel: Option<&ChannelBinding>,
    ) -> Result<SessionCapsule, Error> {
        let s = self.security()?;
        if issuer != subject {
            s.check(issuer, [&Action::ManageSessions], "issue_session")?;
        }
        Ok(s.sessions()?.issue(subject, UnixMicros::now(), channel)?)
    }

    /// Verifies a presented capsule on `channel` and returns the caller it
    /// authenticates, for the `*_as` calls. Checks version, header, tag, environment
    /// hash, channel, revocations, key epoch, timestamp drift and the replay cache (a
    /// capsule is accepted once); each refusal is a distinct [`CapsuleError`].
    pub fn verify_session(
        &self,
        capsule: &[u8],
        channel: Option<&ChannelBinding>,
    ) -> Result<CallerId, Error> {
        let s = self.security()?;
        Ok(s.sessions()?
            .verify(capsule, UnixMicros::now(), channel)?
            .into_caller())
    }

    /// Revokes a server profile durably (recorded in `_system/authz`, audited in
    /// `authz_audit`, reloaded at every open): capsules bound to it are refused from
    /// now on. Needs `GlobalAdmin`.
    pub fn revoke_server_profile_as(
        &self,
        caller: &CallerId,
        profile: ServerProfileId,
    ) -> Result<(), Error> {
        self.revoke_session_key(caller, format!("profile/{profile}"))
    }

    /// Revokes a server environment hash durably, like
    /// [`AedbInstance::revoke_server_profile_as`].
    pub fn revoke_server_env_hash_as(
        &self,
        caller: &CallerId,
        env_hash: ServerEnvHash,
    ) -> Result<(), Error> {
        self.revoke_session_key(caller, format!("env/{env_hash}"))
    }

    /// Revokes every session capsule of `subject` issued up to now, durably (recorded in
    /// `_system/authz`, audited in `authz_audit` as `session_revoked`, reloaded at every
    /// open): the runbook's "rotate application credentials". Capsules issued afterwards
    /// are accepted, so the caller re-authenticates and carries on. Needs `GlobalAdmin`.
    pub fn revoke_caller_sessions_as(
        &self,
        caller: &CallerId,
        subject: &CallerId,
    ) -> Result<(), Error> {
        let cutoff = UnixMicros::now().as_micros();
        self.revoke_session_key(caller, format!("caller/{cutoff}/{subject}"))
    }

    pub(crate) fn revoke_session_key(&self, caller: &CallerId, key: String) -> Result<(), Error> {
        Self::not_system(caller)?;
        let s = self.security()?;
        s.authz.change(
            caller.clone(),
            authz_actor::PolicyChange::RevokeSession { key: key.clone() },
        )?;
        if let Some(sessions) = &s.sessions {
            secure::apply_revocation(sessions, &key);
        }
        Ok(())
    }

    /// The session capsule counters (issued, verified, each refusal cause), when
    /// sessions are enabled.
    pub fn session_metrics(&self) -> Option<IhpMetricsSnapshot> {
        self.security
            .as_ref()
            .and_then(|s| s.sessions.as_ref())
            .map(SessionAuthority::metrics)
    }

    /// This server's environment hash (recorded in the manifest), when sessions are
    /// enabled.
    pub fn server_env_hash(&self) -> Option<ServerEnvHash> {
        self.security
            .as_ref()
            .and_then(|s| s.sessions.as_ref())
            .map(SessionAuthority::env_hash)
    }

    /// The security actors; [`UsageError::NotSecure`] on an instance opened without
    /// `open_secure`.
    pub(crate) fn security(&self) -> Result<&Security, Error> {
        self.security
            .as_ref()
            .ok_or(Error::Usage(UsageError::NotSecure))
    }
}
