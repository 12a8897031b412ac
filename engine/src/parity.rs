//! Logical content comparison of two states: a digest, and the first difference.
//!
//! The digest is the SHA-256 of the canonical snapshot encoding (the same bytes a
//! checkpoint seals), so two databases with equal digests hold the same projects,
//! scopes, KV entries, tables, rows, versions and idempotency records at the same LSN.

use aedb_model::{Direction, KeyRange, Namespace, State};
use sha2::{Digest, Sha256};

/// SHA-256 of the canonical snapshot encoding of `state`.
///
/// # Errors
/// Stored data could not be read.
pub fn content_digest(state: &State) -> Result<[u8; 32], aedb_model::ReadError> {
    Ok(Sha256::digest(state.to_snapshot_bytes()?).into())
}

/// The first logical difference between `a` and `b`, in a stable walk order (LSN,
/// projects, scopes, KV keys, tables, schemas, rows, idempotency), or `None` when their
/// encodings are identical.
pub fn first_difference(a: &State, b: &State) -> Option<String> {
    match (a.to_snapshot_bytes(), b.to_snapshot_bytes()) {
        (Ok(x), Ok(y)) if x == y => return None,
        (Err(e), _) | (_, Err(e)) => return Some(format!("unreadable: {e}")),
        _ => {}
    }
    if a.lsn() != b.lsn() {
        return Some(format!("lsn: {} vs {}", a.lsn(), b.lsn()));
    }
    let pa: Vec<_> = a.projects().cloned().collect();
    let pb: Vec<_> = b.projects().cloned().collect();
    if pa != pb {
        return Some(format!("projects: {pa:?} vs {pb:?}"));
    }
    for project in &pa {
        let sa: Vec<_> = a
            .scopes(project)
            .map(|s| s.cloned().collect())
            .unwrap_or_default();
        let sb: Vec<_> = b
            .scopes(project)
            .map(|s| s.cloned().collect())
            .unwrap_or_default();
        if sa != sb {
            return Some(format!("scopes of {project}: {sa:?} vs {sb:?}"));
        }
        for scope in sa {
            let ns = Namespace::new(project.clone(), scope);
            if let Some(d) = namespace_difference(a, b, &ns) {
                return Some(d);
            }
        }
    }
    if a.idempotency_len() != b.idempotency_len() {
        return Some(format!(
            "idempotency records: {} vs {}",
            a.idempotency_len(),
            b.idempotency_len()
        ));
    }
    Some("creation versions or idempotency outcomes differ (encodings differ)".into())
}

fn namespace_difference(a: &State, b: &State, ns: &Namespace) -> Option<String> {
    let ka = a
        .kv_scan_prefix(ns, b"", Direction::Forward, usize::MAX)
        .ok()?
        .items;
    let kb = b
        .kv_scan_prefix(ns, b"", Direction::Forward, usize::MAX)
        .ok()?
        .items;
    for i in 0..ka.len().max(kb.len()) {
        match (ka.get(i), kb.get(i)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                return Some(format!(
                    "kv in {ns}: first difference at entry {i}: {:?} vs {:?}",
                    x.map(|(k, _)| k),
                    y.map(|(k, _)| k)
                ));
            }
        }
    }
    let ta: Vec<_> = a
        .tables(ns)
        .map(|t| t.cloned().collect())
        .unwrap_or_default();
    let tb: Vec<_> = b
        .tables(ns)
        .map(|t| t.cloned().collect())
        .unwrap_or_default();
    if ta != tb {
        return Some(format!("tables of {ns}: {ta:?} vs {tb:?}"));
    }
    for table in &ta {
        if a.table_schema(ns, table).ok() != b.table_schema(ns, table).ok() {
            return Some(format!("schema of {ns}.{table} differs"));
        }
        let ra = a
            .table_scan(ns, table, &KeyRange::all(), Direction::Forward, usize::MAX)
            .ok()?
            .items;
        let rb = b
            .table_scan(ns, table, &KeyRange::all(), Direction::Forward, usize::MAX)
            .ok()?
            .items;
        for i in 0..ra.len().max(rb.len()) {
            if ra.get(i) != rb.get(i) {
                return Some(format!(
                    "rows of {ns}.{table}: first difference at row {i}: {:?} vs {:?}",
                    ra.get(i).map(|r| &r.values),
                    rb.get(i).map(|r| &r.values)
                ));
            }
        }
    }
    None
}
