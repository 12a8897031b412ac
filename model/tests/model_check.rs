//! Model-based test: random transactions applied to `State` and to a simple
//! BTreeMap reference model must agree on every outcome and every read; the
//! emitted records, encoded, decoded and replayed into a fresh state, must
//! rebuild an equal state; and so must a snapshot round trip. Idempotency keys are
//! retried with the same and with other payloads, under random retention windows
//! (by LSN and by commit time).

use std::collections::BTreeMap;

use aedb_model::{
    ApplyError, Assertion, ColumnDef, ColumnName, ColumnType, CommitContext, CommitRecord, Ddl,
    Direction, IdempotencyKey, IdempotencyRetention, KeyRange, KvKey, KvValue, Namespace, Numeric,
    NumericType, Outcome, ProjectName, Rejection, RejectionKind, State, TableName, TableSchema,
    Transaction, Value,
};
use aedb_types::Lsn;
use proptest::collection::vec;
use proptest::prelude::*;

const SCOPES: [&str; 2] = ["a", "b"];
const KEYS: [&str; 4] = ["k0", "k1", "k2", "k3"];
const GROUPS: [&str; 2] = ["g", "h"];

fn ns(i: usize) -> Namespace {
    Namespace::parse("p", SCOPES[i]).unwrap()
}
fn missing_ns() -> Namespace {
    Namespace::parse("p", "zz").unwrap()
}
fn col(n: &str) -> ColumnName {
    ColumnName::new(n).unwrap()
}
fn table() -> TableName {
    TableName::new("t").unwrap()
}

// ------------------------------------------------------------------ ops

#[derive(Clone, Debug)]
enum Op {
    Put(usize, usize, Vec<u8>),
    Delete(usize, usize),
    Add(usize, usize, Numeric, bool),
    PutMissingNs(usize),
    Insert(usize, u64, i64, Option<String>),
    Upsert(usize, u64, i64, Option<String>),
    Update(usize, u64, i64),
    DeleteRow(usize, u64),
}

#[derive(Clone, Debug)]
enum Check {
    Exists(usize, usize),
    Absent(usize, usize),
    AtLeast(usize, usize, u64),
    RowExists(usize, u64),
    Not(Box<Check>),
}

#[derive(Clone, Debug)]
struct Tx {
    ops: Vec<Op>,
    checks: Vec<Check>,
    key: Option<usize>,
}

fn numeric() -> impl Strategy<Value = Numeric> {
    prop_oneof![
        prop_oneof![0u64..5, Just(u64::MAX), Just(u64::MAX / 2)].prop_map(Numeric::U64),
        prop_oneof![-5i64..5, Just(i64::MAX), Just(i64::MIN)].prop_map(Numeric::I64),
        prop_oneof![0u128..5, Just(u128::MAX)].prop_map(Numeric::U128),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let note = proptest::option::of("[a-c]{0,3}");
    prop_oneof![
        (
            0..2usize,
            0..4usize,
            prop_oneof![vec(any::<u8>(), 0..4), vec(any::<u8>(), 8..=8)]
        )
            .prop_map(|(n, k, v)| Op::Put(n, k, v)),
        (0..2usize, 0..4usize).prop_map(|(n, k)| Op::Delete(n, k)),
        (0..2usize, 0..4usize, numeric(), any::<bool>())
            .prop_map(|(n, k, d, sub)| Op::Add(n, k, d, sub)),
        (0..4usize).prop_map(Op::PutMissingNs),
        (0..2usize, 0..3u64, -3i64..3, note.clone())
            .prop_map(|(g, i, v, n)| Op::Insert(g, i, v, n)),
        (0..2usize, 0..3u64, -3i64..3, note).prop_map(|(g, i, v, n)| Op::Upsert(g, i, v, n)),
        (0..2usize, 0..3u64, -3i64..3).prop_map(|(g, i, v)| Op::Update(g, i, v)),
        (0..2usize, 0..3u64).prop_map(|(g, i)| Op::DeleteRow(g, i)),
    ]
}

fn check() -> impl Strategy<Value = Check> {
    let leaf = prop_oneof![
        (0..2usize, 0..4usize).prop_map(|(n, k)| Check::Exists(n, k)),
        (0..2usize, 0..4usize).prop_map(|(n, k)| Check::Absent(n, k)),
        (0..2usize, 0..4usize, 0..4u64).prop_map(|(n, k, m)| Check::AtLeast(n, k, m)),
        (0..2usize, 0..3u64).prop_map(|(g, i)| Check::RowExists(g, i)),
    ];
    leaf.prop_recursive(2, 4, 1, |inner| inner.prop_map(|c| Check::Not(Box::new(c))))
}

fn tx() -> impl Strategy<Value = Tx> {
    (
        vec(op(), 0..5),
        vec(check(), 0..3),
        proptest::option::of(0..3usize),
    )
        .prop_map(|(ops, checks, key)| Tx { ops, checks, key })
}

fn idem(i: usize) -> IdempotencyKey {
    IdempotencyKey::new(format!("idem-{i}")).unwrap()
}

fn cells(g: usize, id: u64, v: i64, note: &Option<String>) -> Vec<(ColumnName, Value)> {
    let mut c = vec![
        (col("grp"), Value::from(GROUPS[g])),
        (col("id"), Value::U64(id)),
        (col("val"), Value::I64(v)),
    ];
    if let Some(n) = note {
        c.push((col("note"), n.as_str().into()));
    }
    c
}

fn to_assertion(c: &Check) -> Assertion {
    let key = |k: usize| KvKey::new(KEYS[k]).unwrap();
    match c {
        Check::Exists(n, k) => Assertion::KvExists {
            ns: ns(*n),
            key: key(*k),
        },
        Check::Absent(n, k) => Assertion::KvAbsent {
            ns: ns(*n),
            key: key(*k),
        },
        Check::AtLeast(n, k, m) => Assertion::KvNumericAtLeast {
            ns: ns(*n),
            key: key(*k),
            min: Numeric::U64(*m),
        },
        Check::RowExists(g, i) => Assertion::RowExists {
            ns: ns(0),
            table: table(),
            pk: vec![GROUPS[*g].into(), Value::U64(*i)],
        },
        Check::Not(inner) => Assertion::Not(Box::new(to_assertion(inner))),
    }
}

fn to_transaction(t: &Tx) -> Transaction {
    let mut tx = Transaction::new();
    let key = |k: usize| KvKey::new(KEYS[k]).unwrap();
    for o in &t.ops {
        tx = match o {
            Op::Put(n, k, v) => tx.kv_put(&ns(*n), key(*k), KvValue::new(v).unwrap()),
            Op::Delete(n, k) => tx.kv_delete(&ns(*n), key(*k)),
            Op::Add(n, k, d, false) => tx.kv_add(&ns(*n), key(*k), *d),
            Op::Add(n, k, d, true) => tx.kv_sub(&ns(*n), key(*k), *d),
            Op::PutMissingNs(k) => tx.kv_put(&missing_ns(), key(*k), KvValue::new(b"x").unwrap()),
            Op::Insert(g, i, v, n) => tx.table_insert(&ns(0), &table(), cells(*g, *i, *v, n)),
            Op::Upsert(g, i, v, n) => tx.table_upsert(&ns(0), &table(), cells(*g, *i, *v, n)),
            Op::Update(g, i, v) => tx.table_update(
                &ns(0),
                &table(),
                vec![GROUPS[*g].into(), Value::U64(*i)],
                vec![(col("val"), Value::I64(*v))],
            ),
            Op::DeleteRow(g, i) => {
                tx.table_delete(&ns(0), &table(), vec![GROUPS[*g].into(), Value::U64(*i)])
            }
        };
    }
    for c in &t.checks {
        tx = tx.assert(to_assertion(c));
    }
    if let Some(k) = t.key {
        tx = tx.idempotency_key(idem(k));
    }
    tx
}

// ------------------------------------------------------------------ reference model

type Row = (i64, Option<String>);

#[derive(Clone, Debug, PartialEq)]
enum RefOutcome {
    Committed,
    Assertion(u32),
    Failed(RejectionKind),
}

#[derive(Clone, Debug, Default)]
struct Reference {
    kv: BTreeMap<(usize, String), (Vec<u8>, u64)>,
    rows: BTreeMap<(String, u64), (Row, u64)>,
    /// Key -> (LSN, outcome, the request that used it).
    idem: BTreeMap<usize, (u64, RefOutcome, Transaction)>,
    /// Records older than this many LSNs are expired (the window in LSNs that both
    /// the LSN and the time limit come down to: commits are 10 ms apart).
    window: Option<u64>,
}

#[derive(Debug, PartialEq)]
enum RefResult {
    Ok,
    AlreadySeen(u64, RefOutcome),
    Mismatch(u64),
    AssertionFailed(u32),
    MutationFailed(u32, RejectionKind),
}

fn ref_numeric(stored: Option<&Vec<u8>>, ty: NumericType) -> Result<i128, ()> {
    let Some(b) = stored else { return Ok(0) };
    match ty {
        NumericType::U64 => {
            Ok(u64::from_be_bytes(b.as_slice().try_into().map_err(|_| ())?) as i128)
        }
        NumericType::I64 => {
            Ok(i64::from_be_bytes(b.as_slice().try_into().map_err(|_| ())?) as i128)
        }
        NumericType::U128 => {
            let v = u128::from_be_bytes(b.as_slice().try_into().map_err(|_| ())?);
            // Track u128 in i128 space only when it fits; otherwise use a marker.
            i128::try_from(v).map_err(|_| ())
        }
    }
}

impl Reference {
    fn holds(&self, c: &Check) -> Result<bool, RejectionKind> {
        Ok(match c {
            Check::Exists(n, k) => self.kv.contains_key(&(*n, KEYS[*k].into())),
            Check::Absent(n, k) => !self.kv.contains_key(&(*n, KEYS[*k].into())),
            Check::AtLeast(n, k, m) => {
                let stored = self.kv.get(&(*n, KEYS[*k].into())).map(|e| &e.0);
                match stored {
                    None => *m == 0,
                    Some(b) => {
                        let arr: [u8; 8] = b
                            .as_slice()
                            .try_into()
                            .map_err(|_| RejectionKind::InvalidAssertion)?;
                        u64::from_be_bytes(arr) >= *m
                    }
                }
            }
            Check::RowExists(g, i) => self.rows.contains_key(&(GROUPS[*g].into(), *i)),
            Check::Not(inner) => !self.holds(inner)?,
        })
    }

    fn numeric_op(
        &mut self,
        n: usize,
        k: usize,
        d: Numeric,
        sub: bool,
        lsn: u64,
    ) -> Result<(), RejectionKind> {
        let slot = (n, KEYS[k].to_owned());
        let stored = self.kv.get(&slot).map(|e| &e.0);
        let ty = d.ty();
        let new: Vec<u8> = match d {
            Numeric::U128(delta) => {
                let cur = match stored {
                    None => 0u128,
                    Some(b) => u128::from_be_bytes(
                        b.as_slice()
                            .try_into()
                            .map_err(|_| RejectionKind::WrongNumericWidth)?,
                    ),
                };
                let r = if sub {
                    cur.checked_sub(delta)
                } else {
                    cur.checked_add(delta)
                };
                r.ok_or(if sub {
                    RejectionKind::Underflow
                } else {
                    RejectionKind::Overflow
                })?
                .to_be_bytes()
                .to_vec()
            }
            _ => {
                let cur = ref_numeric(stored, ty).map_err(|_| RejectionKind::WrongNumericWidth)?;
                let delta = match d {
                    Numeric::U64(v) => v as i128,
                    Numeric::I64(v) => v as i128,
                    Numeric::U128(_) => unreachable!("handled above"),
                };
                let r = if sub { cur - delta } else { cur + delta };
                let (min, max) = match ty {
                    NumericType::U64 => (0i128, u64::MAX as i128),
                    _ => (i64::MIN as i128, i64::MAX as i128),
                };
                if r > max {
                    return Err(RejectionKind::Overflow);
                }
                if r < min {
                    return Err(RejectionKind::Underflow);
                }
                match ty {
                    NumericType::U64 => (r as u64).to_be_bytes().to_vec(),
                    _ => (r as i64).to_be_bytes().to_vec(),
                }
            }
        };
        self.kv.insert(slot, (new, lsn));
        Ok(())
    }

    fn op(&mut self, o: &Op, lsn: u64) -> Result<(), RejectionKind> {
        match o {
            Op::Put(n, k, v) => {
                self.kv.insert((*n, KEYS[*k].into()), (v.clone(), lsn));
            }
            Op::Delete(n, k) => {
                self.kv.remove(&(*n, KEYS[*k].into()));
            }
            Op::Add(n, k, d, sub) => self.numeric_op(*n, *k, *d, *sub, lsn)?,
            Op::PutMissingNs(_) => return Err(RejectionKind::NotFound),
            Op::Insert(g, i, v, note) => {
                let pk = (GROUPS[*g].to_owned(), *i);
                if self.rows.contains_key(&pk) {
                    return Err(RejectionKind::DuplicatePrimaryKey);
                }
                self.rows.insert(pk, ((*v, note.clone()), lsn));
            }
            Op::Upsert(g, i, v, note) => {
                self.rows
                    .insert((GROUPS[*g].to_owned(), *i), ((*v, note.clone()), lsn));
            }
            Op::Update(g, i, v) => {
                let pk = (GROUPS[*g].to_owned(), *i);
                let Some(((_, note), _)) = self.rows.get(&pk).cloned() else {
                    return Err(RejectionKind::NotFound);
                };
                self.rows.insert(pk, ((*v, note), lsn));
            }
            Op::DeleteRow(g, i) => {
                self.rows.remove(&(GROUPS[*g].to_owned(), *i));
            }
        }
        Ok(())
    }

    fn apply(&mut self, t: &Tx, lsn: u64) -> RefResult {
        if let Some(k) = t.key
            && let Some((l, o, original)) = self.idem.get(&k)
            && self.window.is_none_or(|w| lsn - *l <= w)
        {
            if *original != to_transaction(t) {
                return RefResult::Mismatch(*l);
            }
            return RefResult::AlreadySeen(*l, o.clone());
        }
        let result = (|| {
            for (i, c) in t.checks.iter().enumerate() {
                match self.holds(c) {
                    Ok(true) => {}
                    Ok(false) => return Err(RefResult::AssertionFailed(i as u32)),
                    Err(kind) => return Err(RefResult::MutationFailed(u32::MAX, kind)),
                }
            }
            let mut next = self.clone();
            for (i, o) in t.ops.iter().enumerate() {
                next.op(o, lsn)
                    .map_err(|kind| RefResult::MutationFailed(i as u32, kind))?;
            }
            Ok(next)
        })();
        match result {
            Ok(next) => {
                *self = next;
                if let Some(k) = t.key {
                    self.idem
                        .insert(k, (lsn, RefOutcome::Committed, to_transaction(t)));
                }
                RefResult::Ok
            }
            Err(e) => {
                if let Some(k) = t.key {
                    let outcome = match &e {
                        RefResult::AssertionFailed(i) => RefOutcome::Assertion(*i),
                        RefResult::MutationFailed(_, kind) => RefOutcome::Failed(*kind),
                        _ => unreachable!("only failures here"),
                    };
                    self.idem.insert(k, (lsn, outcome, to_transaction(t)));
                }
                e
            }
        }
    }
}

fn outcome_of(o: &Outcome) -> RefOutcome {
    match o {
        Outcome::Committed => RefOutcome::Committed,
        Outcome::Rejected(Rejection::AssertionFailed { index }) => RefOutcome::Assertion(*index),
        Outcome::Rejected(Rejection::Failed { kind, .. }) => RefOutcome::Failed(*kind),
    }
}

fn classify(r: &Result<(State, CommitRecord), ApplyError>) -> RefResult {
    match r {
        Ok(_) => RefResult::Ok,
        Err(ApplyError::AlreadySeen { original, .. }) => {
            RefResult::AlreadySeen(original.lsn.get(), outcome_of(&original.outcome))
        }
        Err(ApplyError::IdempotencyMismatch { original_lsn, .. }) => {
            RefResult::Mismatch(original_lsn.get())
        }
        Err(ApplyError::AssertionFailed { index, .. }) => RefResult::AssertionFailed(*index),
        Err(ApplyError::InvalidAssertion { .. }) => {
            RefResult::MutationFailed(u32::MAX, RejectionKind::InvalidAssertion)
        }
        Err(ApplyError::Mutation { index, source }) => {
            RefResult::MutationFailed(*index, source.rejection_kind())
        }
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

fn setup() -> (State, Vec<(Lsn, CommitRecord)>) {
    let schema = TableSchema::new(
        vec![
            ColumnDef::new(col("grp"), ColumnType::Text),
            ColumnDef::new(col("id"), ColumnType::U64),
            ColumnDef::new(col("val"), ColumnType::I64),
            ColumnDef::new(col("note"), ColumnType::Text).nullable(),
        ],
        vec![col("grp"), col("id")],
    )
    .unwrap();
    let ddls = vec![
        Ddl::CreateProject {
            project: ProjectName::new("p").unwrap(),
        },
        Ddl::CreateScope { ns: ns(0) },
        Ddl::CreateScope { ns: ns(1) },
        Ddl::CreateTable {
            ns: ns(0),
            table: table(),
            schema,
        },
    ];
    let mut state = State::new();
    let mut log = Vec::new();
    for d in ddls {
        let lsn = state.lsn().next();
        let (s, r) = state.apply_ddl(&d, lsn).unwrap();
        state = s;
        log.push((lsn, r));
    }
    (state, log)
}

fn assert_agrees(state: &State, model: &Reference) {
    for n in 0..SCOPES.len() {
        for k in KEYS {
            let got = state
                .kv_get(&ns(n), k.as_bytes())
                .unwrap()
                .map(|e| (e.value.to_vec(), e.lsn.get()));
            assert_eq!(got.as_ref(), model.kv.get(&(n, k.to_owned())), "kv {n}/{k}");
        }
        let page = state
            .kv_scan_prefix(&ns(n), b"k", Direction::Forward, 100)
            .unwrap();
        let keys: Vec<String> = page
            .items
            .iter()
            .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
            .collect();
        let expect: Vec<String> = model
            .kv
            .keys()
            .filter(|(m, _)| *m == n)
            .map(|(_, k)| k.clone())
            .collect();
        assert_eq!(keys, expect);
    }
    let rows = state
        .table_scan(&ns(0), &table(), &KeyRange::all(), Direction::Forward, 1000)
        .unwrap();
    let got: Vec<((String, u64), (Row, u64))> = rows
        .items
        .iter()
        .map(|r| match &r.values[..] {
            [Value::Text(g), Value::U64(i), Value::I64(v), note] => {
                let note = match note {
                    Value::Null => None,
                    Value::Text(t) => Some(t.clone()),
                    other => panic!("{other:?}"),
                };
                ((g.clone(), *i), ((*v, note), r.lsn.get()))
            }
            other => panic!("{other:?}"),
        })
        .collect();
    let expect: Vec<_> = model.rows.clone().into_iter().collect();
    assert_eq!(got, expect);
    for (k, (lsn, outcome, _)) in &model.idem {
        let rec = state
            .idempotency(idem(*k).as_bytes())
            .expect("readable")
            .expect("idempotency record");
        assert_eq!(
            (rec.lsn.get(), outcome_of(&rec.outcome)),
            (*lsn, outcome.clone())
        );
    }
    assert_eq!(state.idempotency_len().unwrap(), model.idem.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn state_matches_reference_and_replays(
        steps in vec((tx(), proptest::option::of(any::<prop::sample::Index>())), 1..40),
        window in proptest::option::of(1u64..8),
        by_time in any::<bool>(),
    ) {
        let (mut state, mut log) = setup();
        let mut model = Reference { window, ..Reference::default() };
        // The same window, as an LSN limit or as a time limit (commits 10 ms apart).
        let retention = match (window, by_time) {
            (None, _) => IdempotencyRetention::forever(),
            (Some(w), false) => IdempotencyRetention::lsns(w),
            (Some(w), true) => IdempotencyRetention::age(std::time::Duration::from_millis(w * 10)),
        };
        // Each step: a new transaction, then maybe a retry of an earlier one.
        let mut sent: Vec<Tx> = Vec::new();
        let mut plan = Vec::new();
        for (t, retry) in &steps {
            sent.push(t.clone());
            plan.push(t.clone());
            if let Some(i) = retry {
                plan.push(sent[i.index(sent.len())].clone());
            }
        }
        for t in &plan {
            let tx = to_transaction(t);
            let lsn = state.lsn().next();
            let ctx = CommitContext { at_unix_ms: lsn.get() * 10, retention };
            let before = state.clone();
            let result = state
                .stage_in(&tx, lsn, &ctx)
                .and_then(|(staged, record)| Ok((staged.install()?, record)));
            let expected = model.apply(t, lsn.get());
            prop_assert_eq!(classify(&result), expected, "tx {:?}", t);
            match result {
                Ok((next, record)) => {
                    state = next;
                    log.push((lsn, record));
                }
                Err(e) => {
                    prop_assert_eq!(&state, &before, "failed apply changed the state");
                    if let Some((staged, record)) = state.stage_reject_in(&tx, &e, lsn, &ctx).unwrap() {
                        state = staged.install().unwrap();
                        log.push((lsn, record));
                    }
                }
            }
            assert_agrees(&state, &model);
        }
        // Recovery from the log.
        let mut recovered = State::new();
        for (lsn, record) in &log {
            let bytes = record.to_bytes();
            let decoded = CommitRecord::decode(&bytes).unwrap();
            prop_assert_eq!(&decoded, record);
            recovered.replay(&decoded, *lsn).unwrap();
        }
        prop_assert_eq!(&recovered, &state);
        // Recovery from a snapshot.
        let snap = State::decode_snapshot(&state.to_snapshot_bytes().unwrap()).unwrap();
        prop_assert_eq!(&snap, &state);
    }
}
