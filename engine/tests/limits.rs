//! Size limits are admission checks: every limit of `aedb::limits` is tried at
//! `limit - 1`, `limit` and `limit + 1`, plaintext and sealed, and an oversized request
//! gets its typed error while the instance goes on committing (it used to fail-stop the
//! WAL writer when a legal transaction's record exceeded one frame).

use aedb::limits::{
    MAX_CELL_LEN, MAX_KV_KEY_LEN, MAX_KV_VALUE_LEN, MAX_PRIMARY_KEY_LEN,
    MAX_SEALED_TRANSACTION_RECORD_LEN, MAX_TRANSACTION_RECORD_LEN,
};
use aedb::{
    AedbConfig, AedbInstance, ApplyError, ColumnDef, ColumnName, ColumnType, CommitError, Finality,
    KvKey, KvValue, LimitError, Namespace, TableName, TableSchema, Transaction, Value,
};
use aedb_model::{OpError, RowError};

const MANIFEST_KEY: [u8; 32] = [0x4c; 32];
const DATA_KEY: [u8; 32] = [0x5d; 32];

fn ns() -> Namespace {
    Namespace::parse("big", "main").expect("valid namespace")
}

fn col(name: &str) -> ColumnName {
    ColumnName::new(name).expect("valid column name")
}

fn blobs() -> TableName {
    TableName::new("blobs").expect("valid table name")
}

/// A WAL mode: its name, its configuration, the per-transaction limit it must enforce.
type Mode = (&'static str, fn() -> AedbConfig, usize);

/// The two WAL modes.
fn modes() -> [Mode; 2] {
    [
        (
            "plaintext",
            || AedbConfig::production(MANIFEST_KEY),
            MAX_TRANSACTION_RECORD_LEN,
        ),
        (
            "sealed",
            || AedbConfig::production(MANIFEST_KEY).with_checkpoint_key(DATA_KEY),
            MAX_SEALED_TRANSACTION_RECORD_LEN,
        ),
    ]
}

fn open(dir: &std::path::Path, config: AedbConfig) -> AedbInstance {
    let db = AedbInstance::open(dir, config).expect("open");
    if !db
        .snapshot()
        .expect("snapshot")
        .has_project(&aedb::ProjectName::new("big").expect("valid project"))
    {
        db.create_project("big").expect("project");
        db.create_scope("big", "main").expect("scope");
        let schema = TableSchema::new(
            vec![
                ColumnDef::new(col("id"), ColumnType::Bytes),
                ColumnDef::new(col("body"), ColumnType::Bytes),
            ],
            vec![col("id")],
        )
        .expect("valid schema");
        db.create_table(&ns(), "blobs", schema).expect("table");
    }
    db
}

/// Puts values of `sizes` bytes under keys `k0`, `k1`, … (byte `i` fills value `i`).
fn puts(sizes: &[usize]) -> Transaction {
    let ns = ns();
    sizes
        .iter()
        .enumerate()
        .fold(Transaction::new(), |tx, (i, &len)| {
            tx.kv_put(
                &ns,
                KvKey::new(format!("k{i}")).expect("valid key"),
                KvValue::new(vec![i as u8; len]).expect("value within the limit"),
            )
        })
}

/// The record length the sequencer reported for an oversized transaction.
fn too_large(result: Result<aedb::CommitOutcome, aedb::Error>, max: usize) -> usize {
    match result {
        Err(aedb::Error::Commit(CommitError::TooLarge { len, max: reported })) => {
            assert_eq!(reported, max, "the reported limit");
            assert!(len > max, "a refused record of {len} bytes is within {max}");
            len
        }
        other => panic!("expected aedb::Error::Commit(CommitError::TooLarge), got {other:?}"),
    }
}

fn assert_small_commit_works(db: &AedbInstance, tag: &str) {
    let ns = ns();
    let key = KvKey::new(format!("after-{tag}")).expect("valid key");
    db.commit_with(
        Transaction::new().kv_put(&ns, key.clone(), KvValue::new(tag).expect("value")),
        Finality::Durable,
    )
    .unwrap_or_else(|e| panic!("{tag}: a small commit after the refusal failed: {e}"));
    let entry = db
        .kv_get(&ns, key.as_bytes())
        .expect("read")
        .expect("present");
    assert_eq!(entry.value.as_bytes(), tag.as_bytes());
}

#[test]
fn whole_transactions_at_the_frame_limit() {
    for (mode, config, max) in modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), config());
        let before = db.operational_metrics();

        // Five values at the value limit (the report): refused, nothing applied.
        let len = too_large(db.commit(puts(&[MAX_KV_VALUE_LEN; 5])), max);
        assert!(len > 5 * MAX_KV_VALUE_LEN, "{mode}: record {len}");
        assert_eq!(
            db.snapshot().expect("snapshot").lsn(),
            aedb::Lsn::new(before.durable_lsn)
        );

        // Four values overshoot by the record overhead; shrinking the last value moves
        // the record length byte for byte, so the exact boundaries can be hit.
        let over = too_large(db.commit(puts(&[MAX_KV_VALUE_LEN; 4])), max) - max;
        let at = |delta: isize| {
            let last = (MAX_KV_VALUE_LEN as isize - over as isize + delta) as usize;
            puts(&[MAX_KV_VALUE_LEN, MAX_KV_VALUE_LEN, MAX_KV_VALUE_LEN, last])
        };
        let len = too_large(db.commit(at(1)), max);
        assert_eq!(len, max + 1, "{mode}: limit + 1");
        let at_limit = db
            .commit_with(at(0), Finality::Durable)
            .unwrap_or_else(|e| panic!("{mode}: a record of exactly {max} bytes: {e}"));
        let below = db
            .commit_with(at(-1), Finality::Durable)
            .unwrap_or_else(|e| panic!("{mode}: a record of {} bytes: {e}", max - 1));
        assert_eq!(below.lsn, at_limit.lsn.next(), "{mode}: LSNs stay dense");
        assert_small_commit_works(&db, mode);

        let m = db.operational_metrics();
        assert_eq!(m.errors.invalid - before.errors.invalid, 3, "{mode}");
        assert_eq!(m.errors.wal_failure, 0, "{mode}: nothing reached the WAL");
        db.shutdown().expect("shutdown");

        // The frame at the limit replays: the last value has the length it was given.
        let db = open(dir.path(), config());
        let snap = db.snapshot().expect("snapshot");
        let last = snap
            .kv_get(&ns(), b"k3")
            .expect("read")
            .expect("k3 present");
        assert_eq!(last.value.as_bytes().len(), MAX_KV_VALUE_LEN - over - 1);
        assert_eq!(last.lsn, below.lsn);
        assert_small_commit_works(&db, &format!("{mode}-reopened"));
        db.shutdown().expect("shutdown");
    }
}

#[test]
fn kv_keys_and_values_at_their_limits() {
    assert_eq!(
        KvKey::new(vec![b'k'; MAX_KV_KEY_LEN - 1]).map(|k| k.len()),
        Ok(MAX_KV_KEY_LEN - 1)
    );
    assert_eq!(
        KvKey::new(vec![b'k'; MAX_KV_KEY_LEN]).map(|k| k.len()),
        Ok(MAX_KV_KEY_LEN)
    );
    assert_eq!(
        KvKey::new(vec![b'k'; MAX_KV_KEY_LEN + 1]),
        Err(LimitError::KeyTooLong {
            len: MAX_KV_KEY_LEN + 1
        })
    );
    assert_eq!(KvKey::new(b""), Err(LimitError::EmptyKey));
    assert!(KvValue::new(vec![0; MAX_KV_VALUE_LEN - 1]).is_ok());
    assert!(KvValue::new(vec![0; MAX_KV_VALUE_LEN]).is_ok());
    assert_eq!(
        KvValue::new(vec![0; MAX_KV_VALUE_LEN + 1]),
        Err(LimitError::ValueTooLarge {
            len: MAX_KV_VALUE_LEN + 1
        })
    );
    // The convenience API reports the same typed error and commits nothing.
    for (mode, config, _) in modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), config());
        let lsn = db.snapshot().expect("snapshot").lsn();
        let err = db
            .kv_put(&ns(), vec![b'k'; MAX_KV_KEY_LEN + 1], b"v".as_slice())
            .expect_err("oversized key");
        assert!(
            matches!(err, aedb::Error::Limit(LimitError::KeyTooLong { len }) if len == MAX_KV_KEY_LEN + 1),
            "{mode}: {err:?}"
        );
        db.kv_put(
            &ns(),
            vec![b'k'; MAX_KV_KEY_LEN],
            vec![7u8; MAX_KV_VALUE_LEN],
        )
        .unwrap_or_else(|e| panic!("{mode}: key and value at their limits: {e}"));
        assert_eq!(db.snapshot().expect("snapshot").lsn(), lsn.next());
        assert_small_commit_works(&db, mode);
        db.shutdown().expect("shutdown");
    }
}

/// A row of `blobs` with a primary key of `id_len` bytes and a body of `body_len`.
fn row(id_len: usize, body_len: usize) -> Transaction {
    Transaction::new().table_insert(
        &ns(),
        &blobs(),
        vec![
            (col("id"), Value::Bytes(vec![b'i'; id_len])),
            (col("body"), Value::Bytes(vec![b'b'; body_len])),
        ],
    )
}

fn row_error(result: Result<aedb::CommitOutcome, aedb::Error>) -> RowError {
    match result {
        Err(aedb::Error::Commit(CommitError::Rejected(ApplyError::Mutation {
            index: 0,
            source: OpError::Row { source, .. },
        }))) => source,
        other => panic!("expected a row violation of mutation 0, got {other:?}"),
    }
}

#[test]
fn rows_at_their_limits() {
    // A `Bytes` primary-key component encodes with two bytes of framing.
    let max_id = MAX_PRIMARY_KEY_LEN - 2;
    for (mode, config, _) in modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path(), config());
        db.commit(row(max_id - 1, MAX_CELL_LEN - 1))
            .unwrap_or_else(|e| panic!("{mode}: row below the limits: {e}"));
        db.commit(row(max_id, MAX_CELL_LEN))
            .unwrap_or_else(|e| panic!("{mode}: row at the limits: {e}"));
        assert_eq!(
            row_error(db.commit(row(max_id + 1, 1))),
            RowError::PrimaryKeyTooLong {
                len: MAX_PRIMARY_KEY_LEN + 1
            },
            "{mode}"
        );
        assert_eq!(
            row_error(db.commit(row(1, MAX_CELL_LEN + 1))),
            RowError::CellTooLarge {
                column: col("body"),
                len: MAX_CELL_LEN + 1
            },
            "{mode}"
        );
        assert_small_commit_works(&db, mode);
        db.shutdown().expect("shutdown");

        let db = open(dir.path(), config());
        let snap = db.snapshot().expect("snapshot");
        let stored = snap
            .table_get(&ns(), &blobs(), &[Value::Bytes(vec![b'i'; max_id])])
            .expect("read")
            .expect("the row at the limits survived a reopen");
        assert_eq!(stored.values[1], Value::Bytes(vec![b'b'; MAX_CELL_LEN]));
        db.shutdown().expect("shutdown");
    }
}
