//! The write freeze: an administrator stops every commit (an incident's "freeze
//! writes") while reads, snapshots, backups, checkpoints and the offline checks go on.
//!
//! The freeze is engine state like the access policy: one KV entry of `_system/authz`
//! (key [`FREEZE_KEY`], value [`WriteFreeze::encode`], format in `docs/FORMAT.md`),
//! written through the normal durable commit path by the Sequencer itself when it
//! handles `SetWriteFreeze`. So it is in the WAL,
//! the checkpoints and the backups, survives a restart until it is lifted, and takes
//! effect in the single writer at one LSN: every commit sequenced after the freeze
//! commit is refused with [`CommitError::Frozen`](crate::CommitError::Frozen), except
//! the engine's own (audit rows, policy records), so a frozen instance still audits and
//! can be unfrozen. At start the Sequencer reads the entry from the recovered state.

use aedb_model::{Ddl, KvKey, KvValue, Mutation, State, Transaction};
use aedb_types::reader::{ByteReader, LenPrefix};

use crate::system::authz_namespace;

/// Key of the freeze entry in `_system/authz` (absent: writes are not frozen).
pub const FREEZE_KEY: &[u8] = b"write_freeze";
/// Longest freeze reason, in bytes.
pub const MAX_FREEZE_REASON: usize = 1024;
/// Longest caller name stored with a freeze.
const MAX_FREEZE_BY: usize = 256;
/// Format version of the freeze entry's value.
const FREEZE_VERSION: u8 = 1;

/// A write freeze in force: who set it, why and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteFreeze {
    /// The administrator who froze writes.
    pub by: String,
    /// The reason they gave (operator text, recorded in the audit trail too).
    pub reason: String,
    /// When, in milliseconds since the Unix epoch.
    pub since_unix_millis: u64,
}

/// A freeze reason is empty or longer than [`MAX_FREEZE_REASON`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a freeze reason must be 1 ..= 1024 bytes, got {len}")]
pub struct FreezeReasonError {
    /// The reason's length in bytes.
    pub len: usize,
}

impl WriteFreeze {
    /// A freeze by `by` for `reason`, now.
    pub fn new(by: &str, reason: &str) -> Result<WriteFreeze, FreezeReasonError> {
        if reason.is_empty() || reason.len() > MAX_FREEZE_REASON {
            return Err(FreezeReasonError { len: reason.len() });
        }
        Ok(WriteFreeze {
            by: truncate(by, MAX_FREEZE_BY).to_string(),
            reason: reason.to_string(),
            since_unix_millis: aedb_types::clock::unix_millis(),
        })
    }

    /// The stored value: version `1` (u8), `since_unix_millis` (u64 LE), `by` and
    /// `reason` (each a u16 LE length and UTF-8 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let by = truncate(&self.by, MAX_FREEZE_BY);
        let reason = truncate(&self.reason, MAX_FREEZE_REASON);
        let mut out = Vec::with_capacity(13 + by.len() + reason.len());
        out.push(FREEZE_VERSION);
        out.extend_from_slice(&self.since_unix_millis.to_le_bytes());
        for s in [by, reason] {
            // Both are at most 1024 bytes.
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out
    }

    /// Decodes [`WriteFreeze::encode`]'s output; never panics.
    pub fn decode(bytes: &[u8]) -> Result<WriteFreeze, aedb_types::DecodeError> {
        let mut r: ByteReader<'_> = ByteReader::new("write freeze", bytes);
        let version_at = r.pos();
        let version = r.u8()?;
        if version != FREEZE_VERSION {
            return Err(r.err_at(
                version_at,
                aedb_types::DecodeErrorKind::UnsupportedVersion {
                    found: u64::from(version),
                    supported: u64::from(FREEZE_VERSION),
                },
            ));
        }
        let since_unix_millis = r.u64()?;
        let by = r
            .str(LenPrefix::U16, "freeze caller", MAX_FREEZE_BY)?
            .to_string();
        let reason = r
            .str(LenPrefix::U16, "freeze reason", MAX_FREEZE_REASON)?
            .to_string();
        r.finish()?;
        Ok(WriteFreeze {
            by,
            reason,
            since_unix_millis,
        })
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The freeze recorded in `state`, if any. An entry that does not decode counts as a
/// freeze (failing closed) with the reason saying so.
pub fn load_write_freeze(state: &State) -> Option<WriteFreeze> {
    let entry = state.kv_get(&authz_namespace(), FREEZE_KEY).ok()??;
    Some(
        WriteFreeze::decode(entry.value.as_bytes()).unwrap_or_else(|e| WriteFreeze {
            by: String::new(),
            reason: format!("the stored freeze does not decode: {e}"),
            since_unix_millis: 0,
        }),
    )
}

/// The DDL that creates `_system/authz` where it is missing (an open instance has no
/// system namespaces until it is first frozen).
pub(crate) fn missing_namespace_ddl(state: &State) -> Vec<Ddl> {
    let ns = authz_namespace();
    let mut out = Vec::new();
    if !state.has_project(&ns.project) {
        out.push(Ddl::CreateProject {
            project: ns.project.clone(),
        });
    }
    if !state.has_namespace(&ns) {
        out.push(Ddl::CreateScope { ns });
    }
    out
}

/// The transaction that records `freeze` (`None`: lifts it).
pub(crate) fn freeze_transaction(freeze: Option<&WriteFreeze>) -> Transaction {
    let ns = authz_namespace();
    let key = KvKey::new(FREEZE_KEY).unwrap_or_else(|_| unreachable!("a short constant key"));
    let mutation = match freeze.map(|f| KvValue::new(f.encode())) {
        Some(Ok(value)) => Mutation::KvPut { ns, key, value },
        // The encoded freeze is a few KiB at most, far below the value limit.
        Some(Err(_)) => unreachable!("a freeze record fits a KV value"),
        None => Mutation::KvDelete { ns, key },
    };
    Transaction {
        mutations: vec![mutation],
        ..Transaction::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freeze_round_trips_and_bad_bytes_are_errors() {
        let f = WriteFreeze::new("root", "integrity alert #42").unwrap();
        assert_eq!(WriteFreeze::decode(&f.encode()).unwrap(), f);
        let bytes = f.encode();
        for cut in 0..bytes.len() {
            assert!(WriteFreeze::decode(&bytes[..cut]).is_err());
        }
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert!(WriteFreeze::decode(&v2).is_err());
        assert!(WriteFreeze::new("root", "").is_err());
        assert!(WriteFreeze::new("root", &"x".repeat(1025)).is_err());
        assert_eq!(truncate("é", 1), "");
    }
}
