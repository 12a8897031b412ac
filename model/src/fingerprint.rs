//! Request fingerprints: SHA-256 over a canonical encoding of a transaction.
//!
//! The encoding (version 1, documented in `docs/FORMAT.md`, "Request fingerprint") is
//! only ever hashed, never decoded, but it is part of the on-disk contract: stored
//! fingerprints are compared with fingerprints of retries computed by later builds, so
//! it must never change (a new encoding needs a new domain string, and old records
//! would then compare as different requests). Every field is length-prefixed or
//! fixed-width and every choice is tagged, so two different transactions never share
//! an encoding.

use sha2::{Digest, Sha256};

use crate::assertion::{Assertion, CompareOp, KvOperand};
use crate::codec::{
    put_count, put_idempotency_key, put_kv_key, put_kv_value, put_lsn, put_name, put_namespace,
    put_u8, put_value,
};
use crate::idempotency::RequestFingerprint;
use crate::mutation::Mutation;
use crate::name::ColumnName;
use crate::numeric::Numeric;
use crate::transaction::Transaction;
use crate::value::Value;

/// Domain separation: the first bytes hashed.
const DOMAIN: &[u8] = b"aedb request fingerprint v1\0";

/// Flush the staging buffer into the hash once it holds this much.
const CHUNK: usize = 64 * 1024;

impl Transaction {
    /// The fingerprint of this request: SHA-256 over its idempotency key, its
    /// mutations and its assertions, each in order and exactly as given (reordering
    /// mutations, assertions or the cells of a row, or a different float bit pattern,
    /// makes another request). The commit's finality, deadline and caller are not
    /// part of it: they say how to acknowledge the request, not what it does.
    ///
    /// ```
    /// use aedb_model::{IdempotencyKey, KvKey, KvValue, Namespace, Transaction};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ns = Namespace::parse("bank", "eu")?;
    /// let key = IdempotencyKey::new("req-1")?;
    /// let tx = |v: &str| -> Result<Transaction, Box<dyn std::error::Error>> {
    ///     Ok(Transaction::new()
    ///         .kv_put(&ns, KvKey::new("k")?, KvValue::new(v)?)
    ///         .idempotency_key(key.clone()))
    /// };
    /// assert_eq!(tx("a")?.fingerprint(), tx("a")?.fingerprint());
    /// assert_ne!(tx("a")?.fingerprint(), tx("b")?.fingerprint());
    /// # Ok(()) }
    /// ```
    pub fn fingerprint(&self) -> RequestFingerprint {
        let mut h = Hasher {
            sha: Sha256::new(),
            buf: Vec::with_capacity(256),
        };
        h.buf.extend_from_slice(DOMAIN);
        match &self.idempotency_key {
            None => put_u8(&mut h.buf, 0),
            Some(k) => {
                put_u8(&mut h.buf, 1);
                put_idempotency_key(&mut h.buf, k);
            }
        }
        put_count(&mut h.buf, self.mutations.len());
        for m in &self.mutations {
            mutation(&mut h.buf, m);
            h.spill();
        }
        put_count(&mut h.buf, self.assertions.len());
        for a in &self.assertions {
            assertion(&mut h.buf, a);
            h.spill();
        }
        h.sha.update(&h.buf);
        RequestFingerprint::from_bytes(h.sha.finalize().into())
    }
}

struct Hasher {
    sha: Sha256,
    buf: Vec<u8>,
}

impl Hasher {
    fn spill(&mut self) {
        if self.buf.len() >= CHUNK {
            self.sha.update(&self.buf);
            self.buf.clear();
        }
    }
}

fn numeric(out: &mut Vec<u8>, n: Numeric) {
    match n {
        Numeric::U64(v) => {
            put_u8(out, 1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Numeric::I64(v) => {
            put_u8(out, 2);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Numeric::U128(v) => {
            put_u8(out, 3);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

fn values(out: &mut Vec<u8>, vs: &[Value]) {
    put_count(out, vs.len());
    for v in vs {
        put_value(out, v);
    }
}

fn cells(out: &mut Vec<u8>, cs: &[(ColumnName, Value)]) {
    put_count(out, cs.len());
    for (c, v) in cs {
        put_name(out, c.as_str());
        put_value(out, v);
    }
}

fn op(out: &mut Vec<u8>, op: CompareOp) {
    put_u8(
        out,
        match op {
            CompareOp::Eq => 1,
            CompareOp::Ne => 2,
            CompareOp::Lt => 3,
            CompareOp::Le => 4,
            CompareOp::Gt => 5,
            CompareOp::Ge => 6,
        },
    );
}

fn mutation(out: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::KvPut { ns, key, value } => {
            put_u8(out, 1);
            put_namespace(out, ns);
            put_kv_key(out, key);
            put_kv_value(out, value);
        }
        Mutation::KvDelete { ns, key } => {
            put_u8(out, 2);
            put_namespace(out, ns);
            put_kv_key(out, key);
        }
        Mutation::KvAdd { ns, key, delta } => {
            put_u8(out, 3);
            put_namespace(out, ns);
            put_kv_key(out, key);
            numeric(out, *delta);
        }
        Mutation::KvSub { ns, key, delta } => {
            put_u8(out, 4);
            put_namespace(out, ns);
            put_kv_key(out, key);
            numeric(out, *delta);
        }
        Mutation::TableInsert {
            ns,
            table,
            cells: c,
        } => {
            put_u8(out, 5);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            cells(out, c);
        }
        Mutation::TableUpsert {
            ns,
            table,
            cells: c,
        } => {
            put_u8(out, 6);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            cells(out, c);
        }
        Mutation::TableUpdate { ns, table, pk, set } => {
            put_u8(out, 7);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            values(out, pk);
            cells(out, set);
        }
        Mutation::TableDelete { ns, table, pk } => {
            put_u8(out, 8);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            values(out, pk);
        }
    }
}

fn assertion(out: &mut Vec<u8>, a: &Assertion) {
    match a {
        Assertion::KvExists { ns, key } => {
            put_u8(out, 1);
            put_namespace(out, ns);
            put_kv_key(out, key);
        }
        Assertion::KvAbsent { ns, key } => {
            put_u8(out, 2);
            put_namespace(out, ns);
            put_kv_key(out, key);
        }
        Assertion::KvValueEquals { ns, key, value } => {
            put_u8(out, 3);
            put_namespace(out, ns);
            put_kv_key(out, key);
            put_kv_value(out, value);
        }
        Assertion::KvCompare {
            ns,
            key,
            op: o,
            operand,
        } => {
            put_u8(out, 4);
            put_namespace(out, ns);
            put_kv_key(out, key);
            op(out, *o);
            match operand {
                KvOperand::Numeric(n) => {
                    put_u8(out, 1);
                    numeric(out, *n);
                }
                KvOperand::Bytes(v) => {
                    put_u8(out, 2);
                    put_kv_value(out, v);
                }
            }
        }
        Assertion::KvVersionEquals { ns, key, lsn } => {
            put_u8(out, 5);
            put_namespace(out, ns);
            put_kv_key(out, key);
            put_lsn(out, *lsn);
        }
        Assertion::KvNumericAtLeast { ns, key, min } => {
            put_u8(out, 6);
            put_namespace(out, ns);
            put_kv_key(out, key);
            numeric(out, *min);
        }
        Assertion::RowExists { ns, table, pk } => {
            put_u8(out, 7);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            values(out, pk);
        }
        Assertion::RowAbsent { ns, table, pk } => {
            put_u8(out, 8);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            values(out, pk);
        }
        Assertion::ColumnEquals {
            ns,
            table,
            pk,
            column,
            value,
        } => {
            put_u8(out, 9);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            values(out, pk);
            put_name(out, column.as_str());
            put_value(out, value);
        }
        Assertion::ColumnCompare {
            ns,
            table,
            pk,
            column,
            op: o,
            value,
        } => {
            put_u8(out, 10);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            values(out, pk);
            put_name(out, column.as_str());
            op(out, *o);
            put_value(out, value);
        }
        Assertion::RowVersionEquals { ns, table, pk, lsn } => {
            put_u8(out, 11);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            values(out, pk);
            put_lsn(out, *lsn);
        }
        Assertion::All(list) => {
            put_u8(out, 12);
            put_count(out, list.len());
            for a in list {
                assertion(out, a);
            }
        }
        Assertion::Any(list) => {
            put_u8(out, 13);
            put_count(out, list.len());
            for a in list {
                assertion(out, a);
            }
        }
        Assertion::Not(inner) => {
            put_u8(out, 14);
            assertion(out, inner);
        }
    }
}
