//! The one sorted key space everything is stored in, and the values stored there.
//!
//! The LSM (`aedb-storage`) stores byte keys and values; this module maps the data
//! model onto them. The first byte of a key says what it holds:
//!
//! | tag | key | value |
//! |----:|-----|-------|
//! | 1 | `1 ‖ 1 ‖ project` | project created at (u64 LE) |
//! | 1 | `1 ‖ 2 ‖ project ‖ scope` | scope created at (u64 LE) |
//! | 1 | `1 ‖ 3 ‖ project ‖ scope ‖ table` | table created at (u64 LE) ‖ schema |
//! | 2 | `2 ‖ project ‖ scope ‖ kv key` | the KV value, as is |
//! | 3 | `3 ‖ project ‖ scope ‖ table id (u64 BE) ‖ encoded primary key` | the row's values |
//! | 4 | `4 ‖ idempotency key` | LSN (u64 LE) ‖ outcome (1 committed, 2 rejected ‖ rejection) ‖ [request stamp] |
//!
//! Names are `u8 len ‖ bytes` (at most 64 bytes), so a namespace prefix never is a
//! prefix of another namespace's and every KV space, table and the catalog is one
//! contiguous range, in the order the data model promises (KV keys byte-wise, rows by
//! their order-preserving primary-key encoding). A table's id is the LSN that created
//! it: a table dropped and created again starts with an empty range. The LSN of a
//! version is the LSN the storage layer keeps with it, so it is not repeated here.

use aedb_types::Lsn;

use crate::codec::{
    DResult, DecodeErrorKind, ReadModel, Reader, put_lsn, put_rejection, put_request, put_schema,
    put_u8,
};
use crate::idempotency::{IdempotencyRecord, Outcome};
use crate::key::prefix_successor;
use crate::name::{Namespace, ProjectName, TableName};
use crate::schema::TableSchema;

pub(crate) const CATALOG: u8 = 1;
pub(crate) const KV: u8 = 2;
pub(crate) const ROW: u8 = 3;
pub(crate) const IDEMPOTENCY: u8 = 4;

pub(crate) const CATALOG_PROJECT: u8 = 1;
pub(crate) const CATALOG_SCOPE: u8 = 2;
pub(crate) const CATALOG_TABLE: u8 = 3;

const OUTCOME_COMMITTED: u8 = 1;
const OUTCOME_REJECTED: u8 = 2;

fn put_name(out: &mut Vec<u8>, name: &str) {
    // Names are at most 64 bytes (reserved `_system` names included).
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

fn put_ns(out: &mut Vec<u8>, ns: &Namespace) {
    put_name(out, ns.project.as_str());
    put_name(out, ns.scope.as_str());
}

/// `tag ‖ project ‖ scope`: the start of a namespace's KV space or rows.
fn ns_prefix(tag: u8, ns: &Namespace) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + ns.project.as_str().len() + ns.scope.as_str().len() + 1);
    k.push(tag);
    put_ns(&mut k, ns);
    k
}

/// The storage key of KV `key` in `ns`.
pub(crate) fn kv_key(ns: &Namespace, key: &[u8]) -> Vec<u8> {
    let mut k = ns_prefix(KV, ns);
    k.extend_from_slice(key);
    k
}

/// The prefix of every KV key of `ns`.
pub(crate) fn kv_prefix(ns: &Namespace) -> Vec<u8> {
    ns_prefix(KV, ns)
}

/// The prefix of every row of the table with id `table_id` in `ns`.
pub(crate) fn row_prefix(ns: &Namespace, table_id: Lsn) -> Vec<u8> {
    let mut k = ns_prefix(ROW, ns);
    k.extend_from_slice(&table_id.get().to_be_bytes());
    k
}

/// The `3 ‖ project ‖ scope ‖ table id` prefix of a row's storage key (what
/// [`row_prefix`] builds); `None` for any other key, or one too short to be a row's.
pub(crate) fn row_table_prefix(key: &[u8]) -> Option<&[u8]> {
    if key.first() != Some(&ROW) {
        return None;
    }
    let scope_at = 2 + usize::from(*key.get(1)?);
    let end = scope_at + 1 + usize::from(*key.get(scope_at)?) + 8;
    key.get(..end)
}

/// The storage key of the row with encoded primary key `pk`.
pub(crate) fn row_key(ns: &Namespace, table_id: Lsn, pk: &[u8]) -> Vec<u8> {
    let mut k = row_prefix(ns, table_id);
    k.extend_from_slice(pk);
    k
}

/// The storage key of an idempotency record.
pub(crate) fn idempotency_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(IDEMPOTENCY);
    k.extend_from_slice(key);
    k
}

/// The storage key of a project's catalog entry.
pub(crate) fn project_key(project: &ProjectName) -> Vec<u8> {
    let mut k = vec![CATALOG, CATALOG_PROJECT];
    put_name(&mut k, project.as_str());
    k
}

/// The storage key of a scope's catalog entry.
pub(crate) fn scope_key(ns: &Namespace) -> Vec<u8> {
    let mut k = vec![CATALOG, CATALOG_SCOPE];
    put_ns(&mut k, ns);
    k
}

/// The storage key of a table's catalog entry.
pub(crate) fn table_key(ns: &Namespace, table: &TableName) -> Vec<u8> {
    let mut k = vec![CATALOG, CATALOG_TABLE];
    put_ns(&mut k, ns);
    put_name(&mut k, table.as_str());
    k
}

/// The bounds of every key starting with `prefix`.
pub(crate) fn prefix_bounds(
    prefix: Vec<u8>,
) -> (std::ops::Bound<Vec<u8>>, std::ops::Bound<Vec<u8>>) {
    let end = match prefix_successor(&prefix) {
        Some(e) => std::ops::Bound::Excluded(e),
        None => std::ops::Bound::Unbounded,
    };
    (std::ops::Bound::Included(prefix), end)
}

/// A catalog value: the creation LSN, and for a table its schema.
pub(crate) fn catalog_value(created: Lsn, schema: Option<&TableSchema>) -> Vec<u8> {
    let mut v = Vec::with_capacity(8);
    put_lsn(&mut v, created);
    if let Some(s) = schema {
        put_schema(&mut v, s);
    }
    v
}

/// A decoded catalog entry.
pub(crate) enum CatalogEntry {
    Project {
        project: ProjectName,
        created: Lsn,
    },
    Scope {
        ns: Namespace,
        created: Lsn,
    },
    Table {
        ns: Namespace,
        table: TableName,
        created: Lsn,
        schema: TableSchema,
    },
}

/// Decodes a catalog key and its value.
pub(crate) fn decode_catalog(key: &[u8], value: &[u8]) -> DResult<CatalogEntry> {
    let mut k = Reader::new("catalog key", key);
    if k.u8()? != CATALOG {
        return Err(k.err_at(
            0,
            DecodeErrorKind::Invalid {
                what: "catalog tag",
            },
        ));
    }
    let kind = k.u8()?;
    let mut v = Reader::new("catalog value", value);
    let created = v.lsn()?;
    let entry = match kind {
        CATALOG_PROJECT => CatalogEntry::Project {
            project: k.project()?,
            created,
        },
        CATALOG_SCOPE => CatalogEntry::Scope {
            ns: Namespace::new(k.project()?, k.scope()?),
            created,
        },
        CATALOG_TABLE => CatalogEntry::Table {
            ns: Namespace::new(k.project()?, k.scope()?),
            table: k.table()?,
            created,
            schema: v.schema()?,
        },
        tag => {
            return Err(k.err_at(
                1,
                DecodeErrorKind::UnknownTag {
                    what: "catalog entry",
                    tag,
                },
            ));
        }
    };
    k.finish()?;
    v.finish()?;
    Ok(entry)
}

/// An idempotency record's stored value: `lsn ‖ outcome`, then (value version 2) the
/// request stamp `1 ‖ fingerprint[32] ‖ at_unix_ms u64` when the record has one. A
/// version-1 value (written before fingerprints existed, or carried over from a
/// version-1 commit record) simply ends after the outcome.
pub(crate) fn idempotency_value(record: &IdempotencyRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + 41);
    put_lsn(&mut v, record.lsn);
    match &record.outcome {
        Outcome::Committed => put_u8(&mut v, OUTCOME_COMMITTED),
        Outcome::Rejected(r) => {
            put_u8(&mut v, OUTCOME_REJECTED);
            put_rejection(&mut v, r);
        }
    }
    if let Some(stamp) = &record.request {
        put_request(&mut v, Some(stamp));
    }
    v
}

/// Decodes an idempotency record's stored value (either version).
pub(crate) fn decode_idempotency(value: &[u8]) -> DResult<IdempotencyRecord> {
    let mut r = Reader::new("idempotency record", value);
    let lsn = r.lsn()?;
    let outcome = match r.u8()? {
        OUTCOME_COMMITTED => Outcome::Committed,
        OUTCOME_REJECTED => Outcome::Rejected(r.rejection()?),
        tag => {
            return Err(r.back(1).err(DecodeErrorKind::UnknownTag {
                what: "idempotency outcome",
                tag,
            }));
        }
    };
    // Version 2 appends a stamp; its tag must say "stamped" (an explicit "unknown"
    // tag is never written, so the encoding stays canonical).
    let request = if r.remaining() == 0 {
        None
    } else {
        match r.request()? {
            Some(stamp) => Some(stamp),
            None => {
                return Err(r.back(1).err(DecodeErrorKind::UnknownTag {
                    what: "idempotency request stamp",
                    tag: 0,
                }));
            }
        }
    };
    r.finish()?;
    Ok(IdempotencyRecord {
        lsn,
        outcome,
        request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::{Rejection, RequestFingerprint, RequestStamp};

    #[test]
    fn idempotency_values_of_both_versions_decode_and_never_panic() {
        let v1 = IdempotencyRecord {
            lsn: Lsn::new(7),
            outcome: Outcome::Rejected(Rejection::AssertionFailed { index: 2 }),
            request: None,
        };
        let v2 = IdempotencyRecord {
            lsn: Lsn::new(9),
            outcome: Outcome::Committed,
            request: Some(RequestStamp {
                fingerprint: RequestFingerprint::from_bytes([0xAB; 32]),
                at_unix_ms: 1_700_000_000_000,
            }),
        };
        // Version 1 layout, byte for byte: lsn, rejected, assertion 2.
        assert_eq!(
            idempotency_value(&v1),
            [7, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 0, 0, 0]
        );
        for rec in [v1, v2] {
            let bytes = idempotency_value(&rec);
            assert_eq!(decode_idempotency(&bytes), Ok(rec.clone()));
            for cut in 0..bytes.len() {
                // A cut right after the outcome is a valid version-1 value.
                if let Ok(short) = decode_idempotency(&bytes[..cut]) {
                    assert_eq!(short.request, None);
                    assert_eq!(idempotency_value(&short), bytes[..cut]);
                }
            }
            let mut extra = bytes.clone();
            extra.push(0);
            assert!(decode_idempotency(&extra).is_err());
            for i in 0..bytes.len() {
                for b in [0u8, 1, 2, 0xff] {
                    let mut bad = bytes.clone();
                    bad[i] = b;
                    if let Ok(r) = decode_idempotency(&bad) {
                        assert_eq!(idempotency_value(&r), bad);
                    }
                }
            }
        }
        // An explicit "unknown" stamp tag is not canonical and is refused.
        let mut explicit = idempotency_value(&IdempotencyRecord {
            lsn: Lsn::new(1),
            outcome: Outcome::Committed,
            request: None,
        });
        explicit.push(0);
        assert!(decode_idempotency(&explicit).is_err());
    }

    #[test]
    fn namespaces_never_prefix_each_other_and_keep_kv_order() {
        let a = Namespace::parse("p", "s").unwrap();
        let b = Namespace::parse("p", "s2").unwrap();
        let (lo, hi) = prefix_bounds(kv_prefix(&a));
        let inside = |k: &Vec<u8>| {
            matches!(&lo, std::ops::Bound::Included(l) if k >= l)
                && matches!(&hi, std::ops::Bound::Excluded(h) if k < h)
        };
        assert!(inside(&kv_key(&a, b"x")));
        assert!(!inside(&kv_key(&b, b"x")));
        assert!(kv_key(&a, b"a") < kv_key(&a, b"ab"));
        assert!(kv_key(&a, b"ab") < kv_key(&a, b"b"));
        assert!(row_key(&a, Lsn::new(1), b"\xff") < row_key(&a, Lsn::new(2), b"\x00"));
    }
}
