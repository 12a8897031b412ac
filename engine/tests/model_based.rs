//! Model-based property test: random sequences of transactions (KV put/delete/add/sub
//! on u64/i64/u128 with overflow and underflow, table insert/upsert/update/delete on a
//! composite primary key, assertions with all/any/not, idempotency keys with retries of
//! the same request and reuse by other requests)
//! and restarts run against a real instance and against a small reference model built
//! from `BTreeMap`s. After every step the commit result (success and LSN, or which
//! error at which index) and the full visible contents must match the model.

use std::collections::BTreeMap;
use std::ops::Bound;

use aedb::{
    AedbConfig, AedbInstance, ApplyError, Assertion, ColumnDef, ColumnName, ColumnType,
    CommitError, CompareOp, Direction, Finality, IdempotencyKey, KeyRange, KvKey, KvOperand,
    KvValue, Lsn, Namespace, Numeric, TableName, TableSchema, Transaction, Value,
};
use aedb_model::{Outcome, Rejection, RejectionKind};
use proptest::prelude::*;

const KV_KEYS: u8 = 6;
const IDEM_KEYS: u8 = 16;
/// Small segments: recovery scans a preallocated segment's zero tail, which is slow in
/// unoptimised test builds; 64 KiB also makes the longer runs rotate.
const SEGMENT_SIZE: u64 = 64 * 1024;
/// Setup DDL: project, scope, table.
const SETUP_LSN: u64 = 3;

fn ns() -> Namespace {
    Namespace::parse("model", "main").expect("valid namespace")
}

fn table() -> TableName {
    TableName::new("items").expect("valid table")
}

fn col(name: &str) -> ColumnName {
    ColumnName::new(name).expect("valid column")
}

fn schema() -> TableSchema {
    TableSchema::new(
        vec![
            ColumnDef::new(col("a"), ColumnType::U64),
            ColumnDef::new(col("b"), ColumnType::Text),
            ColumnDef::new(col("v"), ColumnType::I64),
            ColumnDef::new(col("note"), ColumnType::Text).nullable(),
        ],
        vec![col("a"), col("b")],
    )
    .expect("valid schema")
}

fn kv_name(k: u8) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

fn kv_key(k: u8) -> KvKey {
    KvKey::new(kv_name(k)).expect("valid key")
}

fn b_text(b: u8) -> String {
    format!("b{b}")
}

fn note_text(n: u8) -> String {
    format!("note-{n}")
}

fn pk(a: u64, b: u8) -> Vec<Value> {
    vec![Value::U64(a), Value::Text(b_text(b))]
}

// ---------------------------------------------------------------- generated operations

#[derive(Clone, Debug)]
enum MutSpec {
    Put(u8, Vec<u8>),
    Delete(u8),
    Add(u8, Numeric),
    Sub(u8, Numeric),
    /// `omit_v` leaves out a required column (a schema violation).
    Insert {
        a: u64,
        b: u8,
        v: i64,
        note: Option<u8>,
        omit_v: bool,
    },
    Upsert {
        a: u64,
        b: u8,
        v: i64,
        note: Option<u8>,
    },
    /// `note: Some(None)` sets the note to null.
    Update {
        a: u64,
        b: u8,
        v: Option<i64>,
        note: Option<Option<u8>>,
    },
    DeleteRow(u64, u8),
}

#[derive(Clone, Debug)]
struct TxSpec {
    mutations: Vec<MutSpec>,
    assertions: Vec<Assertion>,
    key: Option<u8>,
    visible: bool,
}

#[derive(Clone, Debug)]
enum Op {
    Commit(TxSpec),
    /// Re-commit an earlier keyed transaction (by index among them), unchanged.
    Retry(usize),
    Restart,
}

fn numeric() -> impl Strategy<Value = Numeric> {
    prop_oneof![
        prop_oneof![
            Just(u64::MAX),
            Just(u64::MAX - 1),
            Just(u64::MAX / 2 + 1),
            Just(0u64),
            0u64..1000
        ]
        .prop_map(Numeric::U64),
        prop_oneof![
            Just(i64::MIN),
            Just(i64::MAX),
            Just(i64::MIN + 1),
            Just(-1i64),
            -1000i64..1000
        ]
        .prop_map(Numeric::I64),
        prop_oneof![
            Just(u128::MAX),
            Just(u128::MAX / 2 + 1),
            Just(u128::from(u64::MAX)),
            0u128..1000
        ]
        .prop_map(Numeric::U128),
    ]
}

fn kv_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..20),
        // Widths of stored numbers, so later numeric ops can decode them.
        prop::collection::vec(any::<u8>(), 8),
        prop::collection::vec(any::<u8>(), 16),
    ]
}

fn mutation() -> impl Strategy<Value = MutSpec> {
    let key = 0..KV_KEYS;
    let a = 0u64..3;
    let b = 0u8..2;
    prop_oneof![
        (key.clone(), kv_bytes()).prop_map(|(k, v)| MutSpec::Put(k, v)),
        key.clone().prop_map(MutSpec::Delete),
        (key.clone(), numeric()).prop_map(|(k, d)| MutSpec::Add(k, d)),
        (key, numeric()).prop_map(|(k, d)| MutSpec::Sub(k, d)),
        (
            a.clone(),
            b.clone(),
            any::<i64>(),
            prop::option::of(0u8..3),
            prop::bool::weighted(0.1)
        )
            .prop_map(|(a, b, v, note, omit_v)| MutSpec::Insert {
                a,
                b,
                v,
                note,
                omit_v
            }),
        (a.clone(), b.clone(), -5i64..5, prop::option::of(0u8..3))
            .prop_map(|(a, b, v, note)| MutSpec::Upsert { a, b, v, note }),
        (
            a.clone(),
            b.clone(),
            prop::option::of(-5i64..5),
            prop::option::of(prop::option::of(0u8..3))
        )
            .prop_map(|(a, b, v, note)| MutSpec::Update { a, b, v, note }),
        (a, b).prop_map(|(a, b)| MutSpec::DeleteRow(a, b)),
    ]
}

fn leaf_assertion() -> impl Strategy<Value = Assertion> {
    let key = 0..KV_KEYS;
    prop_oneof![
        key.clone().prop_map(|k| Assertion::KvExists {
            ns: ns(),
            key: kv_key(k)
        }),
        key.clone().prop_map(|k| Assertion::KvAbsent {
            ns: ns(),
            key: kv_key(k)
        }),
        (key.clone(), kv_bytes()).prop_map(|(k, v)| Assertion::KvValueEquals {
            ns: ns(),
            key: kv_key(k),
            value: KvValue::new(v).expect("small value")
        }),
        (key.clone(), numeric()).prop_map(|(k, min)| Assertion::KvNumericAtLeast {
            ns: ns(),
            key: kv_key(k),
            min
        }),
        (
            key,
            prop_oneof![
                Just(CompareOp::Lt),
                Just(CompareOp::Ge),
                Just(CompareOp::Ne)
            ],
            numeric()
        )
            .prop_map(|(k, op, n)| Assertion::KvCompare {
                ns: ns(),
                key: kv_key(k),
                op,
                operand: KvOperand::Numeric(n)
            }),
        (0u64..3, 0u8..2).prop_map(|(a, b)| Assertion::RowExists {
            ns: ns(),
            table: table(),
            pk: pk(a, b)
        }),
        (0u64..3, 0u8..2).prop_map(|(a, b)| Assertion::RowAbsent {
            ns: ns(),
            table: table(),
            pk: pk(a, b)
        }),
        (0u64..3, 0u8..2, -5i64..5).prop_map(|(a, b, v)| Assertion::ColumnEquals {
            ns: ns(),
            table: table(),
            pk: pk(a, b),
            column: col("v"),
            value: Value::I64(v)
        }),
        (0u64..3, 0u8..2, prop::option::of(0u8..3)).prop_map(|(a, b, n)| {
            Assertion::ColumnEquals {
                ns: ns(),
                table: table(),
                pk: pk(a, b),
                column: col("note"),
                value: n.map_or(Value::Null, |n| Value::Text(note_text(n))),
            }
        }),
    ]
}

fn assertion() -> impl Strategy<Value = Assertion> {
    leaf_assertion().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Assertion::All),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Assertion::Any),
            inner.prop_map(|a| Assertion::Not(Box::new(a))),
        ]
    })
}

fn tx_spec() -> impl Strategy<Value = TxSpec> {
    (
        prop::collection::vec(mutation(), 0..4),
        prop_oneof![
            2 => Just(Vec::new()),
            2 => prop::collection::vec(assertion(), 1),
            1 => prop::collection::vec(assertion(), 2),
        ],
        prop::option::weighted(0.35, 0..IDEM_KEYS),
        any::<bool>(),
    )
        .prop_map(|(mutations, assertions, key, visible)| TxSpec {
            mutations,
            assertions,
            key,
            visible,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => tx_spec().prop_map(Op::Commit),
        2 => any::<usize>().prop_map(Op::Retry),
        1 => Just(Op::Restart),
    ]
}

// ---------------------------------------------------------------- building transactions

fn idem_name(k: u8) -> Vec<u8> {
    format!("idem-{k}").into_bytes()
}

fn build(spec: &TxSpec) -> Transaction {
    let ns = ns();
    let t = table();
    let mut tx = Transaction::new();
    for a in &spec.assertions {
        tx = tx.assert(a.clone());
    }
    for m in &spec.mutations {
        tx = match m {
            MutSpec::Put(k, v) => tx.kv_put(&ns, kv_key(*k), KvValue::new(v).expect("value")),
            MutSpec::Delete(k) => tx.kv_delete(&ns, kv_key(*k)),
            MutSpec::Add(k, d) => tx.kv_add(&ns, kv_key(*k), *d),
            MutSpec::Sub(k, d) => tx.kv_sub(&ns, kv_key(*k), *d),
            MutSpec::Insert {
                a,
                b,
                v,
                note,
                omit_v,
            } => {
                let mut cells = vec![
                    (col("a"), Value::U64(*a)),
                    (col("b"), Value::Text(b_text(*b))),
                ];
                if !omit_v {
                    cells.push((col("v"), Value::I64(*v)));
                }
                if let Some(n) = note {
                    cells.push((col("note"), Value::Text(note_text(*n))));
                }
                tx.table_insert(&ns, &t, cells)
            }
            MutSpec::Upsert { a, b, v, note } => {
                let mut cells = vec![
                    (col("b"), Value::Text(b_text(*b))),
                    (col("v"), Value::I64(*v)),
                    (col("a"), Value::U64(*a)),
                ];
                if let Some(n) = note {
                    cells.push((col("note"), Value::Text(note_text(*n))));
                }
                tx.table_upsert(&ns, &t, cells)
            }
            MutSpec::Update { a, b, v, note } => {
                let mut set = Vec::new();
                if let Some(v) = v {
                    set.push((col("v"), Value::I64(*v)));
                }
                if let Some(n) = note {
                    set.push((
                        col("note"),
                        n.map_or(Value::Null, |n| Value::Text(note_text(n))),
                    ));
                }
                tx.table_update(&ns, &t, pk(*a, *b), set)
            }
            MutSpec::DeleteRow(a, b) => tx.table_delete(&ns, &t, pk(*a, *b)),
        };
    }
    if let Some(k) = spec.key {
        tx = tx.idempotency_key(IdempotencyKey::new(idem_name(k)).expect("key"));
    }
    tx
}

// ---------------------------------------------------------------- the reference model

/// A remembered outcome of an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Remembered {
    Committed,
    AssertionFailed(u32),
    Failed(RejectionKind),
}

/// What a commit returned, reduced to what the model can predict.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Res {
    Ok {
        lsn: u64,
        replay: bool,
    },
    AssertionFailed(u32),
    InvalidAssertion(u32),
    Mutation(u32, RejectionKind),
    AlreadyRejected {
        lsn: u64,
        outcome: Remembered,
    },
    /// The key was used by another request (`commit.idempotency_mismatch`).
    Mismatch {
        lsn: u64,
    },
}

type RowKey = (u64, String);

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelRow {
    v: i64,
    note: Option<String>,
    lsn: u64,
}

#[derive(Clone, Debug, Default)]
struct Model {
    lsn: u64,
    kv: BTreeMap<Vec<u8>, (Vec<u8>, u64)>,
    rows: BTreeMap<RowKey, ModelRow>,
    /// Key -> (LSN, outcome, the request that used it).
    idem: BTreeMap<Vec<u8>, (u64, Remembered, Transaction)>,
}

#[derive(Clone, Copy, Debug)]
enum Num {
    U64,
    I64,
    U128,
}

fn num_type(n: Numeric) -> Num {
    match n {
        Numeric::U64(_) => Num::U64,
        Numeric::I64(_) => Num::I64,
        Numeric::U128(_) => Num::U128,
    }
}

/// The stored number at `bytes` read as `ty` (missing is zero); `None` on a width mismatch.
fn decode(ty: Num, bytes: Option<&[u8]>) -> Option<Wide> {
    let Some(bytes) = bytes else {
        return Some(match ty {
            Num::U128 => Wide::U(0),
            _ => Wide::I(0),
        });
    };
    match ty {
        Num::U64 => Some(Wide::I(i128::from(u64::from_be_bytes(
            bytes.try_into().ok()?,
        )))),
        Num::I64 => Some(Wide::I(i128::from(i64::from_be_bytes(
            bytes.try_into().ok()?,
        )))),
        Num::U128 => Some(Wide::U(u128::from_be_bytes(bytes.try_into().ok()?))),
    }
}

/// A model number: u64 and i64 fit an i128, u128 is kept as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Wide {
    I(i128),
    U(u128),
}

fn numeric_value(n: Numeric) -> Wide {
    match n {
        Numeric::U64(v) => Wide::I(i128::from(v)),
        Numeric::I64(v) => Wide::I(i128::from(v)),
        Numeric::U128(v) => Wide::U(v),
    }
}

impl Model {
    fn kv_bytes(&self, k: &KvKey) -> Option<&[u8]> {
        self.kv.get(k.as_bytes()).map(|(v, _)| v.as_slice())
    }

    /// `Ok(holds)`, or `Err(())` when the assertion is malformed for this state.
    fn eval(&self, a: &Assertion) -> Result<bool, ()> {
        Ok(match a {
            Assertion::KvExists { key, .. } => self.kv_bytes(key).is_some(),
            Assertion::KvAbsent { key, .. } => self.kv_bytes(key).is_none(),
            Assertion::KvValueEquals { key, value, .. } => {
                self.kv_bytes(key) == Some(value.as_bytes())
            }
            Assertion::KvNumericAtLeast { key, min, .. } => {
                let actual = decode(num_type(*min), self.kv_bytes(key)).ok_or(())?;
                actual >= numeric_value(*min)
            }
            Assertion::KvCompare {
                key,
                op,
                operand: KvOperand::Numeric(n),
                ..
            } => {
                let actual = decode(num_type(*n), self.kv_bytes(key)).ok_or(())?;
                op.holds(actual.cmp(&numeric_value(*n)))
            }
            Assertion::RowExists { pk, .. } => self.rows.contains_key(&row_key(pk)),
            Assertion::RowAbsent { pk, .. } => !self.rows.contains_key(&row_key(pk)),
            Assertion::ColumnEquals {
                pk, column, value, ..
            } => match self.rows.get(&row_key(pk)) {
                None => false,
                Some(row) => match column.as_str() {
                    "v" => *value == Value::I64(row.v),
                    "note" => *value == row.note.clone().map_or(Value::Null, Value::Text),
                    other => unreachable!("no assertions on column {other}"),
                },
            },
            Assertion::All(items) => {
                for item in items {
                    if !self.eval(item)? {
                        return Ok(false);
                    }
                }
                true
            }
            Assertion::Any(items) => {
                for item in items {
                    if self.eval(item)? {
                        return Ok(true);
                    }
                }
                false
            }
            Assertion::Not(inner) => !self.eval(inner)?,
            other => unreachable!("not generated: {other:?}"),
        })
    }

    /// Applies one mutation to `self` (a scratch copy) at `lsn`.
    fn mutate(&mut self, m: &MutSpec, lsn: u64) -> Result<(), RejectionKind> {
        match m {
            MutSpec::Put(k, v) => {
                self.kv.insert(kv_name(*k), (v.clone(), lsn));
            }
            MutSpec::Delete(k) => {
                self.kv.remove(&kv_name(*k));
            }
            MutSpec::Add(k, d) | MutSpec::Sub(k, d) => {
                let subtract = matches!(m, MutSpec::Sub(..));
                let name = kv_name(*k);
                let current = decode(num_type(*d), self.kv.get(&name).map(|(v, _)| v.as_slice()))
                    .ok_or(RejectionKind::WrongNumericWidth)?;
                let bytes = match (current, *d) {
                    (Wide::U(c), Numeric::U128(d)) => {
                        let r = if subtract {
                            c.checked_sub(d).ok_or(RejectionKind::Underflow)?
                        } else {
                            c.checked_add(d).ok_or(RejectionKind::Overflow)?
                        };
                        r.to_be_bytes().to_vec()
                    }
                    (Wide::I(c), d) => {
                        let dv = match d {
                            Numeric::U64(v) => i128::from(v),
                            Numeric::I64(v) => i128::from(v),
                            Numeric::U128(_) => unreachable!("u128 decodes to U"),
                        };
                        let r = if subtract { c - dv } else { c + dv };
                        let (min, max) = match d {
                            Numeric::U64(_) => (0, i128::from(u64::MAX)),
                            _ => (i128::from(i64::MIN), i128::from(i64::MAX)),
                        };
                        if r > max {
                            return Err(RejectionKind::Overflow);
                        }
                        if r < min {
                            return Err(RejectionKind::Underflow);
                        }
                        match d {
                            Numeric::U64(_) => (r as u64).to_be_bytes().to_vec(),
                            _ => (r as i64).to_be_bytes().to_vec(),
                        }
                    }
                    (Wide::U(_), _) => unreachable!("only u128 decodes to U"),
                };
                self.kv.insert(name, (bytes, lsn));
            }
            MutSpec::Insert {
                a,
                b,
                v,
                note,
                omit_v,
            } => {
                if *omit_v {
                    return Err(RejectionKind::SchemaViolation);
                }
                let key = (*a, b_text(*b));
                if self.rows.contains_key(&key) {
                    return Err(RejectionKind::DuplicatePrimaryKey);
                }
                self.rows.insert(
                    key,
                    ModelRow {
                        v: *v,
                        note: note.map(note_text),
                        lsn,
                    },
                );
            }
            MutSpec::Upsert { a, b, v, note } => {
                self.rows.insert(
                    (*a, b_text(*b)),
                    ModelRow {
                        v: *v,
                        note: note.map(note_text),
                        lsn,
                    },
                );
            }
            MutSpec::Update { a, b, v, note } => {
                let row = self
                    .rows
                    .get_mut(&(*a, b_text(*b)))
                    .ok_or(RejectionKind::NotFound)?;
                if let Some(v) = v {
                    row.v = *v;
                }
                if let Some(n) = note {
                    row.note = n.map(note_text);
                }
                row.lsn = lsn;
            }
            MutSpec::DeleteRow(a, b) => {
                self.rows.remove(&(*a, b_text(*b)));
            }
        }
        Ok(())
    }

    fn commit(&mut self, spec: &TxSpec) -> Res {
        let key = spec.key.map(idem_name);
        if let Some(k) = &key
            && let Some((lsn, outcome, original)) = self.idem.get(k)
        {
            if *original != build(spec) {
                return Res::Mismatch { lsn: *lsn };
            }
            return match outcome {
                Remembered::Committed => Res::Ok {
                    lsn: *lsn,
                    replay: true,
                },
                other => Res::AlreadyRejected {
                    lsn: *lsn,
                    outcome: other.clone(),
                },
            };
        }
        let lsn = self.lsn + 1;
        let mut rejection = None;
        for (i, a) in spec.assertions.iter().enumerate() {
            let i = i as u32;
            match self.eval(a) {
                Ok(true) => {}
                Ok(false) => {
                    rejection = Some((Res::AssertionFailed(i), Remembered::AssertionFailed(i)));
                    break;
                }
                Err(()) => {
                    rejection = Some((
                        Res::InvalidAssertion(i),
                        Remembered::Failed(RejectionKind::InvalidAssertion),
                    ));
                    break;
                }
            }
        }
        if rejection.is_none() {
            let mut next = self.clone();
            for (i, m) in spec.mutations.iter().enumerate() {
                if let Err(kind) = next.mutate(m, lsn) {
                    rejection = Some((Res::Mutation(i as u32, kind), Remembered::Failed(kind)));
                    break;
                }
            }
            if rejection.is_none() {
                *self = next;
                self.lsn = lsn;
                if let Some(k) = key {
                    self.idem
                        .insert(k, (lsn, Remembered::Committed, build(spec)));
                }
                return Res::Ok { lsn, replay: false };
            }
        }
        let (res, remembered) = rejection.expect("rejected");
        if let Some(k) = key {
            self.lsn = lsn;
            self.idem.insert(k, (lsn, remembered, build(spec)));
        }
        res
    }
}

fn row_key(pk: &[Value]) -> RowKey {
    match pk {
        [Value::U64(a), Value::Text(b)] => (*a, b.clone()),
        other => unreachable!("generated keys are (u64, text): {other:?}"),
    }
}

fn remembered(outcome: &Outcome) -> Remembered {
    match outcome {
        Outcome::Committed => Remembered::Committed,
        Outcome::Rejected(Rejection::AssertionFailed { index }) => {
            Remembered::AssertionFailed(*index)
        }
        Outcome::Rejected(Rejection::Failed { kind, .. }) => Remembered::Failed(*kind),
    }
}

fn observed(result: Result<aedb::CommitOutcome, aedb::Error>) -> Res {
    match result {
        Ok(o) => Res::Ok {
            lsn: o.lsn.get(),
            replay: o.idempotent_replay,
        },
        Err(aedb::Error::Commit(CommitError::Rejected(e))) => match e {
            ApplyError::AssertionFailed { index, .. } => Res::AssertionFailed(index),
            ApplyError::InvalidAssertion { index, .. } => Res::InvalidAssertion(index),
            ApplyError::Mutation { index, source } => Res::Mutation(index, source.rejection_kind()),
            ApplyError::AlreadySeen { original, .. } => Res::AlreadyRejected {
                lsn: original.lsn.get(),
                outcome: remembered(&original.outcome),
            },
            ApplyError::IdempotencyMismatch { original_lsn, .. } => Res::Mismatch {
                lsn: original_lsn.get(),
            },
            other => panic!("unexpected rejection {other:?}"),
        },
        Err(other) => panic!("unexpected commit error {other:?}"),
    }
}

// ---------------------------------------------------------------- comparing

fn assert_matches_model(db: &AedbInstance, model: &Model) {
    let snap = db.snapshot().expect("snapshot");
    assert_eq!(snap.lsn(), Lsn::new(model.lsn), "lsn");

    let kv = snap
        .kv_scan_range(
            &ns(),
            Bound::Unbounded,
            Bound::Unbounded,
            Direction::Forward,
            usize::MAX,
        )
        .expect("kv scan");
    assert!(!kv.has_more);
    let actual: Vec<(Vec<u8>, Vec<u8>, u64)> = kv
        .items
        .iter()
        .map(|(k, e)| {
            (
                k.as_bytes().to_vec(),
                e.value.as_bytes().to_vec(),
                e.lsn.get(),
            )
        })
        .collect();
    let expected: Vec<(Vec<u8>, Vec<u8>, u64)> = model
        .kv
        .iter()
        .map(|(k, (v, lsn))| (k.clone(), v.clone(), *lsn))
        .collect();
    assert_eq!(actual, expected, "KV contents (ascending)");
    let reverse = snap
        .kv_scan_prefix(&ns(), b"", Direction::Reverse, usize::MAX)
        .expect("reverse scan");
    let mut reversed: Vec<Vec<u8>> = reverse
        .items
        .iter()
        .map(|(k, _)| k.as_bytes().to_vec())
        .collect();
    reversed.reverse();
    assert_eq!(
        reversed,
        model.kv.keys().cloned().collect::<Vec<_>>(),
        "reverse KV scan"
    );

    let rows = snap
        .table_scan(
            &ns(),
            &table(),
            &KeyRange::all(),
            Direction::Forward,
            usize::MAX,
        )
        .expect("table scan");
    let actual: Vec<(RowKey, ModelRow)> = rows
        .items
        .iter()
        .map(|r| match &r.values[..] {
            [Value::U64(a), Value::Text(b), Value::I64(v), note] => (
                (*a, b.clone()),
                ModelRow {
                    v: *v,
                    note: match note {
                        Value::Null => None,
                        Value::Text(t) => Some(t.clone()),
                        other => panic!("note is {other:?}"),
                    },
                    lsn: r.lsn.get(),
                },
            ),
            other => panic!("malformed row {other:?}"),
        })
        .collect();
    let expected: Vec<(RowKey, ModelRow)> = model
        .rows
        .iter()
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect();
    assert_eq!(actual, expected, "table contents (in primary-key order)");

    assert_eq!(
        snap.idempotency_len().expect("readable"),
        model.idem.len(),
        "idempotency keys"
    );
    for (k, (lsn, outcome, _)) in &model.idem {
        let record = snap
            .idempotency(k)
            .expect("readable")
            .unwrap_or_else(|| panic!("idempotency key {k:?} missing"));
        assert_eq!(record.lsn.get(), *lsn);
        assert_eq!(remembered(&record.outcome), *outcome);
    }
}

fn setup(db: &AedbInstance) {
    db.create_project("model").expect("project");
    db.create_scope("model", "main").expect("scope");
    db.create_table(&ns(), "items", schema()).expect("table");
    assert_eq!(db.snapshot().expect("snapshot").lsn().get(), SETUP_LSN);
}

fn run(ops: &[Op], config: impl Fn() -> AedbConfig) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut db = AedbInstance::open(dir.path(), config()).expect("open");
    setup(&db);
    let mut model = Model {
        lsn: SETUP_LSN,
        ..Model::default()
    };
    let mut keyed: Vec<TxSpec> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let spec = match op {
            Op::Restart => {
                db.shutdown().expect("shutdown");
                db = AedbInstance::open(dir.path(), config()).expect("reopen");
                assert_eq!(db.recovery_report().torn_tail_bytes(), 0);
                assert_matches_model(&db, &model);
                continue;
            }
            Op::Retry(_) if keyed.is_empty() => continue,
            Op::Retry(i) => keyed[i % keyed.len()].clone(),
            Op::Commit(spec) => spec.clone(),
        };
        let finality = if spec.visible {
            Finality::Visible
        } else {
            Finality::Durable
        };
        let expected = model.commit(&spec);
        let actual = observed(db.commit_with(build(&spec), finality));
        assert_eq!(actual, expected, "step {step}: result of {spec:?}");
        assert_matches_model(&db, &model);
        if spec.key.is_some() {
            keyed.push(spec);
        }
    }
    db.shutdown().expect("shutdown");
    let db = AedbInstance::open(dir.path(), config()).expect("final reopen");
    assert_matches_model(&db, &model);
    db.shutdown().expect("shutdown");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_the_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        run(&ops, || AedbConfig::development().segment_size(SEGMENT_SIZE));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn durable_engine_matches_the_reference_model(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops, || AedbConfig::production([0x3D; 32]).segment_size(SEGMENT_SIZE));
    }
}
