//! Commit records — the resolved effects of one commit, as logged in a WAL frame —
//! and their hand-written, versioned, little-endian binary codec.
//!
//! A record never needs the state it was produced from to be understood, and
//! replaying it never re-evaluates assertions or arithmetic: numeric adds are
//! logged as the resulting put, table writes as full rows. The layout is
//! documented in `docs/FORMAT.md`; in short:
//!
//! ```text
//! record  := version:u8 (=2) kind:u8 body
//! kind 1  := Commit   has_key:u8 [idempotency_key request] effect_count:u32 effect*
//! kind 2  := Rejected idempotency_key request rejection
//! kind 3  := Ddl      ddl
//! request := 0 (unknown) | 1 fingerprint[32] at_unix_ms:u64
//! ```
//!
//! Version 1 (still decoded) has no `request` fields; its records decode with
//! `request: None`.

use std::sync::Arc;

use crate::codec::{
    DResult, DecodeError, DecodeErrorKind, ReadModel, Reader, put_count, put_idempotency_key,
    put_kv_key, put_kv_value, put_name, put_namespace, put_rejection, put_request, put_schema,
    put_u8, put_values,
};
use crate::idempotency::{IdempotencyKey, Rejection, RequestStamp};
use crate::kv::{KvKey, KvValue};
use crate::mutation::Ddl;
use crate::name::{Namespace, TableName};
use crate::value::Value;

/// The record format version this build writes (it reads this one and every older
/// one: version 1 has no request stamps).
pub const RECORD_VERSION: u8 = 2;

/// The oldest record format version this build reads.
pub const OLDEST_RECORD_VERSION: u8 = 1;

const KIND_COMMIT: u8 = 1;
const KIND_REJECTED: u8 = 2;
const KIND_DDL: u8 = 3;

const EFFECT_KV_PUT: u8 = 1;
const EFFECT_KV_DELETE: u8 = 2;
const EFFECT_ROW_PUT: u8 = 3;
const EFFECT_ROW_DELETE: u8 = 4;

const DDL_CREATE_PROJECT: u8 = 1;
const DDL_CREATE_SCOPE: u8 = 2;
const DDL_CREATE_TABLE: u8 = 3;
const DDL_DROP_TABLE: u8 = 4;

/// Smallest encoded effect: tag + two one-byte names (+ their length bytes) + a
/// minimal payload.
const MIN_EFFECT_LEN: usize = 1 + 2 + 2 + 2;

/// One resolved change to the state, applied at the record's LSN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Sets a KV key.
    KvPut {
        /// Namespace.
        ns: Namespace,
        /// Key.
        key: KvKey,
        /// New value.
        value: KvValue,
    },
    /// Removes an existing KV key.
    KvDelete {
        /// Namespace.
        ns: Namespace,
        /// Key.
        key: KvKey,
    },
    /// Inserts or replaces a full row (values in schema column order).
    RowPut {
        /// Namespace.
        ns: Namespace,
        /// Table.
        table: TableName,
        /// The full row.
        row: Arc<[Value]>,
    },
    /// Removes an existing row.
    RowDelete {
        /// Namespace.
        ns: Namespace,
        /// Table.
        table: TableName,
        /// Its primary key, in key order.
        pk: Vec<Value>,
    },
}

/// What one LSN did: the unit logged in a WAL frame and replayed on recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitRecord {
    /// A committed transaction's effects.
    Commit {
        /// The transaction's idempotency key, remembered as committed.
        idempotency_key: Option<IdempotencyKey>,
        /// The request's fingerprint and commit time, stored with the key; `None` in
        /// records decoded from format version 1 (and meaningless, so not encoded,
        /// without a key).
        request: Option<RequestStamp>,
        /// Effects, in application order.
        effects: Vec<Effect>,
    },
    /// A rejected transaction that carried an idempotency key: only the outcome
    /// is remembered, so a retry gets the same rejection after a restart.
    Rejected {
        /// The key.
        idempotency_key: IdempotencyKey,
        /// The request's fingerprint and commit time; `None` in records decoded from
        /// format version 1.
        request: Option<RequestStamp>,
        /// Why it was rejected.
        rejection: Rejection,
    },
    /// A DDL statement.
    Ddl(Ddl),
}

impl CommitRecord {
    /// Appends the encoding of this record to `out`.
    ///
    /// Records built by [`State`](crate::State) always respect the model's
    /// limits and encode losslessly; the decoder rejects anything beyond them.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u8(out, RECORD_VERSION);
        match self {
            CommitRecord::Commit {
                idempotency_key,
                request,
                effects,
            } => {
                put_u8(out, KIND_COMMIT);
                match idempotency_key {
                    None => put_u8(out, 0),
                    Some(k) => {
                        put_u8(out, 1);
                        put_idempotency_key(out, k);
                        put_request(out, request.as_ref());
                    }
                }
                put_count(out, effects.len());
                for e in effects {
                    encode_effect(e, out);
                }
            }
            CommitRecord::Rejected {
                idempotency_key,
                request,
                rejection,
            } => {
                put_u8(out, KIND_REJECTED);
                put_idempotency_key(out, idempotency_key);
                put_request(out, request.as_ref());
                put_rejection(out, rejection);
            }
            CommitRecord::Ddl(ddl) => {
                put_u8(out, KIND_DDL);
                encode_ddl(ddl, out);
            }
        }
    }

    /// The encoding as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes exactly one record of any supported version from `bytes` (trailing
    /// bytes are an error). Records of the current version re-encode to the same
    /// bytes; older ones re-encode in the current version.
    pub fn decode(bytes: &[u8]) -> Result<CommitRecord, DecodeError> {
        let mut r = Reader::new("commit record", bytes);
        let version = r.u8()?;
        if !(OLDEST_RECORD_VERSION..=RECORD_VERSION).contains(&version) {
            return Err(r.err_at(
                0,
                DecodeErrorKind::UnsupportedVersion {
                    found: version.into(),
                    supported: RECORD_VERSION.into(),
                },
            ));
        }
        let record = match r.u8()? {
            KIND_COMMIT => {
                let (idempotency_key, request) = if r.bool("idempotency key flag")? {
                    let key = r.idempotency_key()?;
                    let request = if version >= 2 { r.request()? } else { None };
                    (Some(key), request)
                } else {
                    (None, None)
                };
                let n = r.count32("effect", MIN_EFFECT_LEN)?;
                let mut effects = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    effects.push(decode_effect(&mut r)?);
                }
                CommitRecord::Commit {
                    idempotency_key,
                    request,
                    effects,
                }
            }
            KIND_REJECTED => CommitRecord::Rejected {
                idempotency_key: r.idempotency_key()?,
                request: if version >= 2 { r.request()? } else { None },
                rejection: r.rejection()?,
            },
            KIND_DDL => CommitRecord::Ddl(decode_ddl(&mut r)?),
            tag => {
                return Err(r.err_at(
                    1,
                    DecodeErrorKind::UnknownTag {
                        what: "record kind",
                        tag,
                    },
                ));
            }
        };
        r.finish()?;
        Ok(record)
    }
}

fn encode_effect(e: &Effect, out: &mut Vec<u8>) {
    match e {
        Effect::KvPut { ns, key, value } => {
            put_u8(out, EFFECT_KV_PUT);
            put_namespace(out, ns);
            put_kv_key(out, key);
            put_kv_value(out, value);
        }
        Effect::KvDelete { ns, key } => {
            put_u8(out, EFFECT_KV_DELETE);
            put_namespace(out, ns);
            put_kv_key(out, key);
        }
        Effect::RowPut { ns, table, row } => {
            put_u8(out, EFFECT_ROW_PUT);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            put_values(out, row);
        }
        Effect::RowDelete { ns, table, pk } => {
            put_u8(out, EFFECT_ROW_DELETE);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            put_values(out, pk);
        }
    }
}

fn decode_effect(r: &mut Reader<'_>) -> DResult<Effect> {
    Ok(match r.u8()? {
        EFFECT_KV_PUT => Effect::KvPut {
            ns: r.namespace()?,
            key: r.kv_key()?,
            value: r.kv_value()?,
        },
        EFFECT_KV_DELETE => Effect::KvDelete {
            ns: r.namespace()?,
            key: r.kv_key()?,
        },
        EFFECT_ROW_PUT => Effect::RowPut {
            ns: r.namespace()?,
            table: r.table()?,
            row: r.values_arc("row value")?,
        },
        EFFECT_ROW_DELETE => Effect::RowDelete {
            ns: r.namespace()?,
            table: r.table()?,
            pk: r.values("key value")?,
        },
        tag => {
            return Err(r.back(1).err(DecodeErrorKind::UnknownTag {
                what: "effect",
                tag,
            }));
        }
    })
}

pub(crate) fn encode_ddl(ddl: &Ddl, out: &mut Vec<u8>) {
    match ddl {
        Ddl::CreateProject { project } => {
            put_u8(out, DDL_CREATE_PROJECT);
            put_name(out, project.as_str());
        }
        Ddl::CreateScope { ns } => {
            put_u8(out, DDL_CREATE_SCOPE);
            put_namespace(out, ns);
        }
        Ddl::CreateTable { ns, table, schema } => {
            put_u8(out, DDL_CREATE_TABLE);
            put_namespace(out, ns);
            put_name(out, table.as_str());
            put_schema(out, schema);
        }
        Ddl::DropTable { ns, table } => {
            put_u8(out, DDL_DROP_TABLE);
            put_namespace(out, ns);
            put_name(out, table.as_str());
        }
    }
}

fn decode_ddl(r: &mut Reader<'_>) -> DResult<Ddl> {
    Ok(match r.u8()? {
        DDL_CREATE_PROJECT => Ddl::CreateProject {
            project: r.project()?,
        },
        DDL_CREATE_SCOPE => Ddl::CreateScope { ns: r.namespace()? },
        DDL_CREATE_TABLE => Ddl::CreateTable {
            ns: r.namespace()?,
            table: r.table()?,
            schema: r.schema()?,
        },
        DDL_DROP_TABLE => Ddl::DropTable {
            ns: r.namespace()?,
            table: r.table()?,
        },
        tag => {
            return Err(r
                .back(1)
                .err(DecodeErrorKind::UnknownTag { what: "ddl", tag }));
        }
    })
}
