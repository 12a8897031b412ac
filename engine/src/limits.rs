//! Every size limit a caller can meet, in one place.
//!
//! Keys, values, cells and names are checked when the value is built ([`crate::KvKey::new`],
//! [`crate::KvValue::new`], …) or when a row is checked against its schema. A whole
//! transaction is checked by the single writer after it applied the transaction to a
//! scratch copy of the state and encoded its commit record, and **before** that state
//! is published or an LSN is used: a transaction whose record exceeds the limit below
//! gets [`crate::CommitError::TooLarge`] (an invalid-input error, counted in
//! `ErrorCounts::invalid`), and the instance goes on committing.
//!
//! | what | limit |
//! |---|---|
//! | KV key | 1..=[`MAX_KV_KEY_LEN`] bytes (4 KiB) |
//! | KV value | [`MAX_KV_VALUE_LEN`] bytes (16 MiB) |
//! | `Text` / `Bytes` cell | [`MAX_CELL_LEN`] bytes (16 MiB) |
//! | encoded primary key | [`MAX_PRIMARY_KEY_LEN`] bytes |
//! | columns per table / per primary key | [`MAX_COLUMNS`] / [`MAX_PRIMARY_KEY_COLUMNS`] |
//! | idempotency key | 1..=[`MAX_IDEMPOTENCY_KEY_LEN`] bytes |
//! | one transaction's commit record, plaintext WAL | [`MAX_TRANSACTION_RECORD_LEN`] bytes (64 MiB) |
//! | one transaction's commit record, sealed WAL (`with_checkpoint_key` or a key provider) | [`MAX_SEALED_TRANSACTION_RECORD_LEN`] bytes (64 MiB − 63) |
//!
//! The commit record holds each mutation as resolved at apply time (a numeric add is
//! logged as the value it produced, an update as the whole new row), plus a few dozen bytes
//! per mutation for its kind, namespace and lengths; four 16 MiB values therefore do not fit in one
//! transaction, three do.
//!
//! A transaction is one WAL frame, on purpose: one CRC (and, sealed, one AEAD tag) makes
//! it all-or-nothing on disk and a torn tail can never leave half of it. Letting a
//! transaction span frames would need a commit marker and a recovery rule for
//! unterminated spans to buy transactions above 64 MiB, which an OLTP workload does not
//! need; split such work into several transactions (with assertions or an idempotency
//! key to make the sequence safe to retry).

pub use aedb_model::limits::{
    MAX_CELL_LEN, MAX_COLUMNS, MAX_IDEMPOTENCY_KEY_LEN, MAX_KV_KEY_LEN, MAX_KV_VALUE_LEN,
    MAX_PRIMARY_KEY_COLUMNS, MAX_PRIMARY_KEY_LEN,
};
pub use aedb_model::name::MAX_NAME_LEN;

/// Largest commit record of one transaction when the WAL is plaintext: one frame's payload.
pub const MAX_TRANSACTION_RECORD_LEN: usize = aedb_wal::MAX_PAYLOAD_LEN as usize;

/// Largest commit record of one transaction when the WAL is sealed: a frame's payload
/// less the sealed-batch header and tag and the record header.
pub const MAX_SEALED_TRANSACTION_RECORD_LEN: usize = aedb_wal::MAX_SEALED_RECORD_LEN;
