//! What a caller attempts ([`Action`]) and which rights allow it.
//!
//! Actions borrow their names and keys from the request, so building one and
//! checking it allocates nothing.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;

use aedb_model::{Assertion, Ddl, Mutation, Namespace, ProjectName, TableName, Transaction};

use crate::permission::{Permission, Resource};

/// The keys a KV scan asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvRange<'a> {
    /// Every key that starts with the prefix (the whole KV space when empty).
    Prefix(&'a [u8]),
    /// Every key between two bounds, as in `State::kv_scan_range`.
    ///
    /// `Unbounded` means "no limit" on that side: an unbounded start reaches down
    /// to the empty key and an unbounded end past every key, so a range with an
    /// unbounded start is readable only under the empty prefix, and one with an
    /// unbounded end only under a prefix with no successor (the empty prefix or
    /// one made only of `0xff` bytes, whose covered keys have no upper limit).
    Bounds {
        /// Lower bound.
        start: Bound<&'a [u8]>,
        /// Upper bound.
        end: Bound<&'a [u8]>,
    },
}

impl KvRange<'_> {
    /// Whether every key this range can yield starts with `prefix`.
    ///
    /// Exact for ranges that contain at least one byte string; an empty range
    /// (start after end) is judged by its bounds alone and may be refused.
    pub fn within_prefix(&self, prefix: &[u8]) -> bool {
        match *self {
            KvRange::Prefix(p) => p.starts_with(prefix),
            KvRange::Bounds { start, end } => range_within_prefix(start, end, prefix),
        }
    }
}

/// One caller-facing operation, as presented to
/// [`PolicySnapshot::check`](crate::PolicySnapshot::check).
///
/// A transaction is checked as the list of the actions of its mutations and
/// assertions (the engine builds that list); a table or KV read that an assertion
/// performs is a read action like any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<'a> {
    /// Read one KV key (get, or an assertion about it).
    KvRead {
        /// Where.
        ns: &'a Namespace,
        /// The key.
        key: &'a [u8],
    },
    /// Scan KV keys. Allowed only if the whole requested range lies inside one
    /// readable prefix (see [`KvRange`] for unbounded ends).
    KvScan {
        /// Where.
        ns: &'a Namespace,
        /// The keys asked for.
        range: KvRange<'a>,
    },
    /// Write one KV key (put, delete, numeric add/sub).
    KvWrite {
        /// Where.
        ns: &'a Namespace,
        /// The key.
        key: &'a [u8],
    },
    /// Read a table (get, scan, schema, or an assertion about a row).
    TableRead {
        /// Where.
        ns: &'a Namespace,
        /// The table.
        table: &'a TableName,
    },
    /// Write a table (insert, upsert, update, delete).
    TableWrite {
        /// Where.
        ns: &'a Namespace,
        /// The table.
        table: &'a TableName,
    },
    /// Create a project (global: `GlobalAdmin` only).
    CreateProject {
        /// The new project.
        project: &'a ProjectName,
    },
    /// Create a scope in a project.
    CreateScope {
        /// The project and the new scope.
        ns: &'a Namespace,
    },
    /// Create a table.
    CreateTable {
        /// Where.
        ns: &'a Namespace,
        /// The new table.
        table: &'a TableName,
    },
    /// Change a table's schema.
    AlterTable {
        /// Where.
        ns: &'a Namespace,
        /// The table.
        table: &'a TableName,
    },
    /// Drop a table.
    DropTable {
        /// Where.
        ns: &'a Namespace,
        /// The table.
        table: &'a TableName,
    },
    /// Take a checkpoint on demand (global).
    Checkpoint,
    /// Take a backup (global).
    Backup,
    /// Rotate the encryption keys (global).
    RotateKeys,
    /// Read the operational metrics (global).
    ReadMetrics,
    /// Read or export the audit tables (global).
    ReadAudit,
    /// Issue or revoke caller session profiles (global).
    ManageSessions,
    /// Freeze or unfreeze all writes (global).
    FreezeWrites,
    /// Change the commit admission rate limits (global).
    SetRateLimits,
}

impl<'a> Action<'a> {
    /// The namespace the action works in; `None` for global actions and
    /// [`Action::CreateProject`].
    pub fn namespace(&self) -> Option<&'a Namespace> {
        match *self {
            Action::KvRead { ns, .. }
            | Action::KvScan { ns, .. }
            | Action::KvWrite { ns, .. }
            | Action::TableRead { ns, .. }
            | Action::TableWrite { ns, .. }
            | Action::CreateScope { ns }
            | Action::CreateTable { ns, .. }
            | Action::AlterTable { ns, .. }
            | Action::DropTable { ns, .. } => Some(ns),
            _ => None,
        }
    }

    /// Whether only a `GlobalAdmin` (or the system caller) may perform it.
    pub fn is_global(&self) -> bool {
        matches!(
            self,
            Action::CreateProject { .. }
                | Action::Checkpoint
                | Action::Backup
                | Action::RotateKeys
                | Action::ReadMetrics
                | Action::ReadAudit
                | Action::ManageSessions
                | Action::FreezeWrites
                | Action::SetRateLimits
        )
    }

    /// A short, stable name of the kind of action, for audit rows and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::KvRead { .. } => "kv_read",
            Action::KvScan { .. } => "kv_scan",
            Action::KvWrite { .. } => "kv_write",
            Action::TableRead { .. } => "table_read",
            Action::TableWrite { .. } => "table_write",
            Action::CreateProject { .. } => "create_project",
            Action::CreateScope { .. } => "create_scope",
            Action::CreateTable { .. } => "create_table",
            Action::AlterTable { .. } => "alter_table",
            Action::DropTable { .. } => "drop_table",
            Action::Checkpoint => "checkpoint",
            Action::Backup => "backup",
            Action::RotateKeys => "rotate_keys",
            Action::ReadMetrics => "read_metrics",
            Action::ReadAudit => "read_audit",
            Action::ManageSessions => "manage_sessions",
            Action::FreezeWrites => "freeze_writes",
            Action::SetRateLimits => "set_rate_limits",
        }
    }

    /// Whether the action is table DDL in `ns` (create, alter or drop a table).
    fn is_table_ddl_in(&self, ns: &Namespace) -> bool {
        matches!(
            *self,
            Action::CreateTable { ns: a, .. } | Action::AlterTable { ns: a, .. } | Action::DropTable { ns: a, .. }
                if a == ns
        )
    }
}

/// The actions a transaction performs: a write per mutation, a read per assertion.
pub fn transaction_actions(tx: &Transaction) -> Vec<Action<'_>> {
    let mut out = Vec::with_capacity(tx.mutations.len() + tx.assertions.len());
    for m in &tx.mutations {
        out.push(match m {
            Mutation::KvPut { ns, key, .. }
            | Mutation::KvDelete { ns, key }
            | Mutation::KvAdd { ns, key, .. }
            | Mutation::KvSub { ns, key, .. } => Action::KvWrite {
                ns,
                key: key.as_bytes(),
            },
            Mutation::TableInsert { ns, table, .. }
            | Mutation::TableUpsert { ns, table, .. }
            | Mutation::TableUpdate { ns, table, .. }
            | Mutation::TableDelete { ns, table, .. } => Action::TableWrite { ns, table },
        });
    }
    for a in &tx.assertions {
        assertion_actions(a, &mut out);
    }
    out
}

fn assertion_actions<'a>(a: &'a Assertion, out: &mut Vec<Action<'a>>) {
    match a {
        Assertion::KvExists { ns, key }
        | Assertion::KvAbsent { ns, key }
        | Assertion::KvValueEquals { ns, key, .. }
        | Assertion::KvCompare { ns, key, .. }
        | Assertion::KvVersionEquals { ns, key, .. }
        | Assertion::KvNumericAtLeast { ns, key, .. } => out.push(Action::KvRead {
            ns,
            key: key.as_bytes(),
        }),
        Assertion::RowExists { ns, table, .. }
        | Assertion::RowAbsent { ns, table, .. }
        | Assertion::ColumnEquals { ns, table, .. }
        | Assertion::ColumnCompare { ns, table, .. }
        | Assertion::RowVersionEquals { ns, table, .. } => {
            out.push(Action::TableRead { ns, table })
        }
        Assertion::All(list) | Assertion::Any(list) => {
            for a in list {
                assertion_actions(a, out);
            }
        }
        Assertion::Not(a) => assertion_actions(a, out),
    }
}

/// The action a DDL statement performs.
pub fn ddl_action(ddl: &Ddl) -> Action<'_> {
    match ddl {
        Ddl::CreateProject { project } => Action::CreateProject { project },
        Ddl::CreateScope { ns } => Action::CreateScope { ns },
        Ddl::CreateTable { ns, table, .. } => Action::CreateTable { ns, table },
        Ddl::DropTable { ns, table } => Action::DropTable { ns, table },
    }
}

impl fmt::Display for Action<'_> {
    /// The kind and the target, for audit rows; key bytes are escaped and cut
    /// after 64 bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind())?;
        match *self {
            Action::KvRead { ns, key } | Action::KvWrite { ns, key } => {
                write!(f, " {ns} key ")?;
                write_bytes(f, key)
            }
            Action::KvScan { ns, range } => {
                write!(f, " {ns} ")?;
                match range {
                    KvRange::Prefix(prefix) => {
                        f.write_str("prefix ")?;
                        write_bytes(f, prefix)
                    }
                    KvRange::Bounds { start, end } => {
                        write_bound(f, start, '[', '(')?;
                        f.write_str("..")?;
                        write_bound(f, end, ']', ')')
                    }
                }
            }
            Action::TableRead { ns, table }
            | Action::TableWrite { ns, table }
            | Action::CreateTable { ns, table }
            | Action::AlterTable { ns, table }
            | Action::DropTable { ns, table } => write!(f, " {ns}/{table}"),
            Action::CreateProject { project } => write!(f, " {project}"),
            Action::CreateScope { ns } => write!(f, " {ns}"),
            _ => Ok(()),
        }
    }
}

const DISPLAY_BYTES: usize = 64;

fn write_bytes(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let shown = &bytes[..bytes.len().min(DISPLAY_BYTES)];
    write!(f, "\"{}\"", shown.escape_ascii())?;
    if bytes.len() > DISPLAY_BYTES {
        write!(f, "...({} bytes)", bytes.len())?;
    }
    Ok(())
}

fn write_bound(
    f: &mut fmt::Formatter<'_>,
    bound: Bound<&[u8]>,
    included: char,
    excluded: char,
) -> fmt::Result {
    match bound {
        Bound::Included(b) => {
            write_bytes(f, b)?;
            write!(f, "{included}")
        }
        Bound::Excluded(b) => {
            write_bytes(f, b)?;
            write!(f, "{excluded}")
        }
        Bound::Unbounded => f.write_str("*"),
    }
}

impl Permission {
    /// Whether this right alone allows `action` (ownership aside).
    pub fn allows(&self, action: &Action<'_>) -> bool {
        match self {
            Permission::GlobalAdmin => true,
            Permission::ProjectAdmin { project } => project_admin_allows(project, action),
            Permission::ScopeAdmin { ns } => scope_admin_allows(ns, action),
            Permission::TableDdl { ns } => action.is_table_ddl_in(ns),
            Permission::TableRead { ns, table } => {
                matches!(*action, Action::TableRead { ns: a, table: t } if a == ns && t == table)
            }
            Permission::TableWrite { ns, table } => {
                matches!(*action, Action::TableWrite { ns: a, table: t } if a == ns && t == table)
            }
            Permission::KvRead { ns, prefix } => match *action {
                Action::KvRead { ns: a, key } => a == ns && key.starts_with(prefix),
                Action::KvScan { ns: a, range } => a == ns && range.within_prefix(prefix),
                _ => false,
            },
            Permission::KvWrite { ns, prefix } => {
                matches!(*action, Action::KvWrite { ns: a, key } if a == ns && key.starts_with(prefix))
            }
        }
    }
}

impl Resource {
    /// Whether owning this resource allows `action`: a project owner has
    /// `ProjectAdmin` rights, a scope owner `ScopeAdmin` rights, and a table owner
    /// may read, write, alter and drop that table.
    pub fn owner_allows(&self, action: &Action<'_>) -> bool {
        match self {
            Resource::Project(project) => project_admin_allows(project, action),
            Resource::Scope(ns) => scope_admin_allows(ns, action),
            Resource::Table { ns, table } => matches!(
                *action,
                Action::TableRead { ns: a, table: t }
                | Action::TableWrite { ns: a, table: t }
                | Action::AlterTable { ns: a, table: t }
                | Action::DropTable { ns: a, table: t }
                    if a == ns && t == table
            ),
        }
    }
}

/// Everything inside the project, including creating scopes in it; no global
/// action.
fn project_admin_allows(project: &ProjectName, action: &Action<'_>) -> bool {
    action.namespace().is_some_and(|ns| &ns.project == project)
}

/// Everything inside the scope (KV, tables, table DDL), but not creating it.
fn scope_admin_allows(ns: &Namespace, action: &Action<'_>) -> bool {
    !matches!(action, Action::CreateScope { .. }) && action.namespace() == Some(ns)
}

/// Whether every byte string `k` with `start <= k <= end` (per the bounds) starts
/// with `prefix`. Works without allocating: the prefix's successor (the smallest
/// string greater than every string starting with it) is compared virtually.
fn range_within_prefix(start: Bound<&[u8]>, end: Bound<&[u8]>, prefix: &[u8]) -> bool {
    // Lower side: the smallest string in the range must be >= prefix.
    let lower_ok = match start {
        // The empty string is the smallest of all.
        Bound::Unbounded => prefix.is_empty(),
        Bound::Included(s) => s >= prefix,
        // The smallest string above `s` is `s ++ [0]`.
        Bound::Excluded(s) => {
            s >= prefix
                || (prefix.len() == s.len() + 1 && prefix.starts_with(s) && prefix[s.len()] == 0)
        }
    };
    if !lower_ok {
        return false;
    }
    // Upper side: every string in the range must be below the prefix's successor.
    match end {
        Bound::Unbounded => successor_cmp(&[], prefix).is_none(),
        Bound::Excluded(e) => successor_cmp(e, prefix).is_none_or(|o| o != Ordering::Greater),
        Bound::Included(e) => successor_cmp(e, prefix).is_none_or(|o| o == Ordering::Less),
    }
}

/// Compares `bytes` with the successor of `prefix` (the prefix cut after its last
/// byte that is not `0xff`, with that byte incremented). `None` when the prefix has
/// no successor (it is empty or all `0xff`): then no string is above its range.
fn successor_cmp(bytes: &[u8], prefix: &[u8]) -> Option<Ordering> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let head = &prefix[..last];
    let bumped = prefix[last] + 1;
    let n = head.len().min(bytes.len());
    match bytes[..n].cmp(&head[..n]) {
        Ordering::Equal => {}
        other => return Some(other),
    }
    if bytes.len() <= last {
        // `bytes` is a proper prefix of the successor.
        return Some(Ordering::Less);
    }
    match bytes[last].cmp(&bumped) {
        Ordering::Equal if bytes.len() == last + 1 => Some(Ordering::Equal),
        Ordering::Equal => Some(Ordering::Greater),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Bound::{Excluded, Included, Unbounded};
    use std::ops::RangeBounds;

    fn succ(prefix: &[u8]) -> Option<Vec<u8>> {
        let last = prefix.iter().rposition(|&b| b != 0xff)?;
        let mut s = prefix[..=last].to_vec();
        s[last] += 1;
        Some(s)
    }

    #[test]
    fn successor_comparison_matches_materialised_successor() {
        let samples: &[&[u8]] = &[
            b"",
            b"a",
            b"ab",
            b"b",
            b"a\xff",
            b"\xff",
            b"\xff\xff",
            b"a\x00",
            b"b\x00",
            b"ac",
            b"aa\xff",
        ];
        for &p in samples {
            for &b in samples {
                assert_eq!(
                    successor_cmp(b, p),
                    succ(p).map(|s| b.cmp(&s[..])),
                    "{b:?} vs succ({p:?})"
                );
            }
        }
    }

    #[test]
    fn ranges_inside_a_prefix() {
        let p = b"ab".as_slice();
        // [ab, ac) is exactly the prefix.
        assert!(range_within_prefix(Included(b"ab"), Excluded(b"ac"), p));
        assert!(range_within_prefix(Included(b"abc"), Included(b"abz"), p));
        // Reaches one key past the prefix.
        assert!(!range_within_prefix(Included(b"ab"), Included(b"ac"), p));
        // Starts below the prefix.
        assert!(!range_within_prefix(Included(b"aa"), Excluded(b"ac"), p));
        assert!(!range_within_prefix(Included(b"a"), Excluded(b"ab\x01"), p));
        // Excluded start just below: (ab, ..) starts at ab\0.
        assert!(range_within_prefix(Excluded(b"ab"), Excluded(b"ac"), p));
        assert!(range_within_prefix(
            Excluded(b"a"),
            Excluded(b"a\x01"),
            b"a\x00"
        ));
        assert!(!range_within_prefix(
            Excluded(b"a"),
            Excluded(b"ac"),
            b"a\x00"
        ));
        assert!(!range_within_prefix(
            Excluded(b"a"),
            Excluded(b"a\x01"),
            b"a\x01"
        ));
        // Unbounded ends.
        assert!(!range_within_prefix(Unbounded, Excluded(b"ab\x01"), p));
        assert!(!range_within_prefix(Included(b"ab"), Unbounded, p));
        assert!(range_within_prefix(Unbounded, Unbounded, b""));
        assert!(range_within_prefix(
            Included(b"\xff\xff"),
            Unbounded,
            b"\xff\xff"
        ));
        assert!(!range_within_prefix(
            Included(b"\xff"),
            Unbounded,
            b"\xff\xff"
        ));
    }

    #[test]
    fn prefix_scans() {
        assert!(KvRange::Prefix(b"abc").within_prefix(b"ab"));
        assert!(KvRange::Prefix(b"ab").within_prefix(b"ab"));
        assert!(!KvRange::Prefix(b"a").within_prefix(b"ab"));
        assert!(!KvRange::Prefix(b"").within_prefix(b"ab"));
        assert!(KvRange::Prefix(b"").within_prefix(b""));
    }

    /// Brute force over all strings up to length 3 from a small alphabet.
    #[test]
    fn range_rule_is_exact_for_non_empty_ranges() {
        // Bounds and prefixes use `edge`; members also use 2, so that the
        // successor of every prefix is among the enumerated strings.
        let edge = [0u8, 1, 0xfe, 0xff];
        let alphabet = [0u8, 1, 2, 0xfe, 0xff];
        let mut all: Vec<Vec<u8>> = vec![vec![]];
        for len in 1..=3 {
            let mut next = Vec::new();
            for s in all.iter().filter(|s| s.len() == len - 1) {
                for &b in &alphabet {
                    let mut t = s.clone();
                    t.push(b);
                    next.push(t);
                }
            }
            all.extend(next);
        }
        let bounds = |v: &Vec<u8>| [Included(v.clone()), Excluded(v.clone())];
        let mut starts: Vec<Bound<Vec<u8>>> = vec![Unbounded];
        let mut ends: Vec<Bound<Vec<u8>>> = vec![Unbounded];
        let short: Vec<&Vec<u8>> = all
            .iter()
            .filter(|v| v.len() <= 2 && v.iter().all(|b| edge.contains(b)))
            .collect();
        for v in &short {
            starts.extend(bounds(v));
            ends.extend(bounds(v));
        }
        for prefix in &short {
            for start in &starts {
                for end in &ends {
                    let s = start.as_ref().map(Vec::as_slice);
                    let e = end.as_ref().map(Vec::as_slice);
                    let inside: Vec<&Vec<u8>> = all
                        .iter()
                        .filter(|k| RangeBounds::contains(&(s, e), &k.as_slice()))
                        .collect();
                    // Only strings of up to 3 bytes are enumerated. That is
                    // enough: a non-empty range's smallest member (its start,
                    // `start ++ [0]` or the empty string) is enumerated, and so
                    // is the prefix's successor, the first string past it.
                    if inside.is_empty() {
                        continue;
                    }
                    let expected = inside.iter().all(|k| k.starts_with(prefix));
                    assert_eq!(
                        range_within_prefix(s, e, prefix),
                        expected,
                        "prefix {prefix:?} range {s:?}..{e:?}"
                    );
                }
            }
        }
    }
}
