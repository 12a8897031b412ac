//! Transaction, DDL, idempotency and read behaviour of `State`, one typed error
//! path at a time.

use std::ops::Bound;

use aedb_model::{
    AlreadyExists, ApplyError, Assertion, ColumnDef, ColumnName, ColumnType, CommitRecord,
    CompareOp, Ddl, Direction, Effect, IdempotencyKey, KeyRange, KvKey, KvOperand, KvValue,
    Mutation, Namespace, NotFound, Numeric, NumericType, OpError, Outcome, ProjectName, ReadError,
    Rejection, RejectionKind, ReplayError, RequestStamp, RowError, State, TableName, TableSchema,
    Transaction, Value,
};
use aedb_types::Lsn;

fn col(n: &str) -> ColumnName {
    ColumnName::new(n).unwrap()
}
fn key(k: &str) -> KvKey {
    KvKey::new(k).unwrap()
}
fn val(v: &str) -> KvValue {
    KvValue::new(v).unwrap()
}
fn ns() -> Namespace {
    Namespace::parse("p", "s").unwrap()
}
fn accounts() -> TableName {
    TableName::new("accounts").unwrap()
}

/// A state with project `p`, scope `p/s` and table `accounts(owner text, id u64,
/// balance i64, note text null)` keyed by (owner, id), at LSN 3.
struct Db {
    state: State,
    log: Vec<(Lsn, CommitRecord)>,
}

impl Db {
    fn new() -> Db {
        let mut db = Db {
            state: State::new(),
            log: Vec::new(),
        };
        db.ddl(Ddl::CreateProject {
            project: ProjectName::new("p").unwrap(),
        })
        .unwrap();
        db.ddl(Ddl::CreateScope { ns: ns() }).unwrap();
        let schema = TableSchema::new(
            vec![
                ColumnDef::new(col("owner"), ColumnType::Text),
                ColumnDef::new(col("id"), ColumnType::U64),
                ColumnDef::new(col("balance"), ColumnType::I64),
                ColumnDef::new(col("note"), ColumnType::Text).nullable(),
            ],
            vec![col("owner"), col("id")],
        )
        .unwrap();
        db.ddl(Ddl::CreateTable {
            ns: ns(),
            table: accounts(),
            schema,
        })
        .unwrap();
        db
    }

    fn next_lsn(&self) -> Lsn {
        self.state.lsn().next()
    }

    fn ddl(&mut self, ddl: Ddl) -> Result<(), ApplyError> {
        let lsn = self.next_lsn();
        let (s, r) = self.state.apply_ddl(&ddl, lsn)?;
        self.state = s;
        self.log.push((lsn, r));
        Ok(())
    }

    /// Applies like a sequencer: commit, or record a keyed rejection.
    fn commit(&mut self, tx: &Transaction) -> Result<Lsn, ApplyError> {
        let lsn = self.next_lsn();
        match self.state.apply(tx, lsn) {
            Ok((s, r)) => {
                self.state = s;
                self.log.push((lsn, r));
                Ok(lsn)
            }
            Err(e) => {
                if let Some((s, r)) = self.state.reject(tx, &e, lsn).unwrap() {
                    self.state = s;
                    self.log.push((lsn, r));
                }
                Err(e)
            }
        }
    }

    fn replayed(&self) -> State {
        let mut s = State::new();
        for (lsn, r) in &self.log {
            let decoded = CommitRecord::decode(&r.to_bytes()).unwrap();
            assert_eq!(&decoded, r);
            s.replay(&decoded, *lsn).unwrap();
        }
        s
    }

    fn row(&self, owner: &str, id: u64) -> Option<Vec<Value>> {
        self.state
            .table_get(&ns(), &accounts(), &[owner.into(), Value::U64(id)])
            .unwrap()
            .map(|r| r.values.to_vec())
    }
}

fn cells(owner: &str, id: u64, balance: i64) -> Vec<(ColumnName, Value)> {
    vec![
        (col("owner"), owner.into()),
        (col("id"), Value::U64(id)),
        (col("balance"), Value::I64(balance)),
    ]
}

fn mutation_err(e: ApplyError) -> (u32, OpError) {
    match e {
        ApplyError::Mutation { index, source } => (index, source),
        other => panic!("expected a mutation error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- DDL

#[test]
fn ddl_already_exists_and_not_found() {
    let mut db = Db::new();
    let p = ProjectName::new("p").unwrap();
    assert_eq!(
        db.ddl(Ddl::CreateProject { project: p.clone() }),
        Err(ApplyError::Ddl(OpError::AlreadyExists(
            AlreadyExists::Project(p.clone())
        )))
    );
    assert_eq!(
        db.ddl(Ddl::CreateScope { ns: ns() }),
        Err(ApplyError::Ddl(AlreadyExists::Scope(ns()).into()))
    );
    let schema = db.state.table_schema(&ns(), &accounts()).unwrap().clone();
    assert_eq!(
        db.ddl(Ddl::CreateTable {
            ns: ns(),
            table: accounts(),
            schema: schema.clone()
        }),
        Err(ApplyError::Ddl(
            AlreadyExists::Table {
                ns: ns(),
                table: accounts()
            }
            .into()
        ))
    );
    let missing_p = Namespace::parse("q", "s").unwrap();
    assert_eq!(
        db.ddl(Ddl::CreateScope {
            ns: missing_p.clone()
        }),
        Err(ApplyError::Ddl(
            NotFound::Project(missing_p.project.clone()).into()
        ))
    );
    let missing_s = Namespace::parse("p", "t").unwrap();
    assert_eq!(
        db.ddl(Ddl::CreateTable {
            ns: missing_s.clone(),
            table: accounts(),
            schema
        }),
        Err(ApplyError::Ddl(NotFound::Scope(missing_s).into()))
    );
    let other = TableName::new("other").unwrap();
    assert_eq!(
        db.ddl(Ddl::DropTable {
            ns: ns(),
            table: other.clone()
        }),
        Err(ApplyError::Ddl(
            NotFound::Table {
                ns: ns(),
                table: other
            }
            .into()
        ))
    );
    db.ddl(Ddl::DropTable {
        ns: ns(),
        table: accounts(),
    })
    .unwrap();
    assert_eq!(db.state.tables(&ns()).unwrap().count(), 0);
    assert_eq!(db.replayed(), db.state);
}

#[test]
fn system_project_and_listings() {
    let mut db = Db::new();
    db.ddl(Ddl::CreateProject {
        project: ProjectName::system(),
    })
    .unwrap();
    let sys = Namespace::new(
        ProjectName::system(),
        aedb_model::ScopeName::new("audit").unwrap(),
    );
    db.ddl(Ddl::CreateScope { ns: sys.clone() }).unwrap();
    let projects: Vec<&str> = db.state.projects().map(|p| p.as_str()).collect();
    assert_eq!(projects, vec!["_system", "p"]);
    let scopes: Vec<&str> = db
        .state
        .scopes(&ProjectName::system())
        .unwrap()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(scopes, vec!["audit"]);
    assert!(db.state.has_namespace(&sys));
    assert!(db.state.has_project(&ProjectName::system()));
    assert_eq!(
        db.state.tables(&ns()).unwrap().collect::<Vec<_>>(),
        vec![&accounts()]
    );
    assert!(matches!(
        db.state.scopes(&ProjectName::new("zz").unwrap()),
        Err(ReadError::NotFound(NotFound::Project(_)))
    ));
    assert_eq!(db.replayed(), db.state);
}

#[test]
fn lsn_must_increase() {
    let db = Db::new();
    let tx = Transaction::new().kv_put(&ns(), key("a"), val("1"));
    assert_eq!(
        db.state.apply(&tx, Lsn::new(3)),
        Err(ApplyError::LsnNotIncreasing {
            current: Lsn::new(3),
            given: Lsn::new(3)
        })
    );
    assert!(matches!(
        db.state.apply_ddl(
            &Ddl::CreateProject {
                project: ProjectName::new("x").unwrap()
            },
            Lsn::new(1)
        ),
        Err(ApplyError::LsnNotIncreasing { .. })
    ));
    let mut s = db.state.clone();
    let (_, rec) = db.state.apply(&tx, Lsn::new(4)).unwrap();
    assert_eq!(
        s.replay(&rec, Lsn::new(2)),
        Err(ReplayError::LsnNotIncreasing {
            current: Lsn::new(3),
            given: Lsn::new(2)
        })
    );
}

// ---------------------------------------------------------------- KV

#[test]
fn kv_put_get_delete_and_versions() {
    let mut db = Db::new();
    let l1 = db
        .commit(&Transaction::new().kv_put(&ns(), key("a"), val("1")))
        .unwrap();
    let e = db.state.kv_get(&ns(), b"a").unwrap().unwrap();
    assert_eq!((e.value.as_bytes(), e.lsn), (&b"1"[..], l1));
    let l2 = db
        .commit(&Transaction::new().kv_put(&ns(), key("a"), val("2")))
        .unwrap();
    assert_eq!(db.state.kv_get(&ns(), b"a").unwrap().unwrap().lsn, l2);
    db.commit(&Transaction::new().kv_delete(&ns(), key("a")))
        .unwrap();
    assert_eq!(db.state.kv_get(&ns(), b"a").unwrap(), None);
    // Deleting a missing key is a no-op with no effect.
    let lsn = db.next_lsn();
    let (_, rec) = db
        .state
        .apply(&Transaction::new().kv_delete(&ns(), key("a")), lsn)
        .unwrap();
    assert_eq!(
        rec,
        CommitRecord::Commit {
            idempotency_key: None,
            request: None,
            effects: vec![]
        }
    );
    assert_eq!(db.replayed(), db.state);
}

#[test]
fn kv_missing_namespace_is_typed() {
    let db = Db::new();
    let bad_scope = Namespace::parse("p", "nope").unwrap();
    let bad_project = Namespace::parse("nope", "s").unwrap();
    assert_eq!(
        db.state.kv_get(&bad_scope, b"a"),
        Err(ReadError::NotFound(NotFound::Scope(bad_scope.clone())))
    );
    assert_eq!(
        db.state.kv_get(&bad_project, b"a"),
        Err(ReadError::NotFound(NotFound::Project(
            bad_project.project.clone()
        )))
    );
    let tx = Transaction::new().kv_put(&bad_scope, key("a"), val("1"));
    assert_eq!(
        mutation_err(db.state.apply(&tx, Lsn::new(4)).unwrap_err()),
        (0, OpError::NotFound(NotFound::Scope(bad_scope)))
    );
}

#[test]
fn kv_scans_prefix_range_reverse_and_limits() {
    let mut db = Db::new();
    let mut tx = Transaction::new();
    for k in ["a", "b1", "b2", "b3", "c", "\u{7f}"] {
        tx = tx.kv_put(&ns(), key(k), val(k));
    }
    tx = tx.kv_put(&ns(), KvKey::new([0xffu8, 0xff]).unwrap(), val("ff"));
    db.commit(&tx).unwrap();
    let keys = |p: aedb_model::Page<(KvKey, aedb_model::KvEntry)>| {
        p.items
            .iter()
            .map(|(k, _)| k.as_bytes().to_vec())
            .collect::<Vec<_>>()
    };
    let s = &db.state;
    let p = s
        .kv_scan_prefix(&ns(), b"b", Direction::Forward, 10)
        .unwrap();
    assert!(!p.has_more);
    assert_eq!(
        keys(p),
        vec![b"b1".to_vec(), b"b2".to_vec(), b"b3".to_vec()]
    );
    let p = s
        .kv_scan_prefix(&ns(), b"b", Direction::Forward, 2)
        .unwrap();
    assert!(p.has_more);
    assert_eq!(keys(p), vec![b"b1".to_vec(), b"b2".to_vec()]);
    let p = s
        .kv_scan_prefix(&ns(), b"b", Direction::Reverse, 2)
        .unwrap();
    assert_eq!(keys(p), vec![b"b3".to_vec(), b"b2".to_vec()]);
    let p = s
        .kv_scan_prefix(&ns(), &[0xff], Direction::Forward, 10)
        .unwrap();
    assert_eq!(keys(p), vec![vec![0xff, 0xff]]);
    assert_eq!(
        s.kv_scan_prefix(&ns(), b"", Direction::Forward, 100)
            .unwrap()
            .items
            .len(),
        7
    );
    let p = s
        .kv_scan_range(
            &ns(),
            Bound::Excluded(b"a"),
            Bound::Included(b"b2"),
            Direction::Forward,
            10,
        )
        .unwrap();
    assert_eq!(keys(p), vec![b"b1".to_vec(), b"b2".to_vec()]);
    // Inverted and empty ranges are empty, not a panic.
    for (lo, hi) in [
        (Bound::Included(&b"c"[..]), Bound::Included(&b"a"[..])),
        (Bound::Included(&b"b1"[..]), Bound::Excluded(&b"b1"[..])),
        (Bound::Excluded(&b"b1"[..]), Bound::Included(&b"b1"[..])),
    ] {
        let p = s
            .kv_scan_range(&ns(), lo, hi, Direction::Forward, 10)
            .unwrap();
        assert_eq!(p.items.len(), 0);
    }
    let p = s
        .kv_scan_prefix(&ns(), b"b", Direction::Forward, 0)
        .unwrap();
    assert!(p.items.is_empty() && p.has_more);
    assert_eq!(s.kv_len(&ns()).unwrap(), 7);
}

// ---------------------------------------------------------------- numeric KV

#[test]
fn numeric_add_sub_each_type() {
    let mut db = Db::new();
    let n = ns();
    db.commit(
        &Transaction::new()
            .kv_add(&n, key("u"), Numeric::U64(5))
            .kv_sub(&n, key("u"), Numeric::U64(2))
            .kv_sub(&n, key("i"), Numeric::I64(7))
            .kv_add(&n, key("w"), Numeric::U128(u128::MAX)),
    )
    .unwrap();
    let s = &db.state;
    assert_eq!(
        s.kv_get_numeric(&n, b"u", NumericType::U64).unwrap(),
        Numeric::U64(3)
    );
    assert_eq!(
        s.kv_get_numeric(&n, b"i", NumericType::I64).unwrap(),
        Numeric::I64(-7)
    );
    assert_eq!(
        s.kv_get_numeric(&n, b"w", NumericType::U128).unwrap(),
        Numeric::U128(u128::MAX)
    );
    assert_eq!(
        s.kv_get_numeric(&n, b"missing", NumericType::U64).unwrap(),
        Numeric::U64(0)
    );
    assert_eq!(
        s.kv_get(&n, b"u").unwrap().unwrap().value.as_bytes(),
        &[0, 0, 0, 0, 0, 0, 0, 3]
    );
    assert!(matches!(
        s.kv_get_numeric(&n, b"u", NumericType::U128),
        Err(ReadError::WrongNumericWidth { .. })
    ));
    assert_eq!(db.replayed(), db.state);
}

#[test]
fn numeric_overflow_and_underflow_are_typed_per_type() {
    let mut db = Db::new();
    let n = ns();
    db.commit(
        &Transaction::new()
            .kv_put(&n, key("u"), Numeric::U64(u64::MAX).to_value())
            .kv_put(&n, key("i"), Numeric::I64(i64::MAX).to_value())
            .kv_put(&n, key("j"), Numeric::I64(i64::MIN).to_value())
            .kv_put(&n, key("w"), Numeric::U128(u128::MAX).to_value()),
    )
    .unwrap();
    let cases: Vec<(Mutation, bool, NumericType)> = vec![
        (
            Mutation::KvAdd {
                ns: n.clone(),
                key: key("u"),
                delta: Numeric::U64(1),
            },
            true,
            NumericType::U64,
        ),
        (
            Mutation::KvSub {
                ns: n.clone(),
                key: key("zero"),
                delta: Numeric::U64(1),
            },
            false,
            NumericType::U64,
        ),
        (
            Mutation::KvAdd {
                ns: n.clone(),
                key: key("i"),
                delta: Numeric::I64(1),
            },
            true,
            NumericType::I64,
        ),
        (
            Mutation::KvSub {
                ns: n.clone(),
                key: key("i"),
                delta: Numeric::I64(-1),
            },
            true,
            NumericType::I64,
        ),
        (
            Mutation::KvSub {
                ns: n.clone(),
                key: key("j"),
                delta: Numeric::I64(1),
            },
            false,
            NumericType::I64,
        ),
        (
            Mutation::KvAdd {
                ns: n.clone(),
                key: key("j"),
                delta: Numeric::I64(-1),
            },
            false,
            NumericType::I64,
        ),
        (
            Mutation::KvAdd {
                ns: n.clone(),
                key: key("w"),
                delta: Numeric::U128(1),
            },
            true,
            NumericType::U128,
        ),
        (
            Mutation::KvSub {
                ns: n.clone(),
                key: key("zero"),
                delta: Numeric::U128(1),
            },
            false,
            NumericType::U128,
        ),
    ];
    for (m, overflow, ty) in cases {
        let before = db.state.clone();
        // A good mutation first, to show it is rolled back too.
        let tx = Transaction::new()
            .kv_put(&n, key("touched"), val("x"))
            .mutation(m);
        let err = mutation_err(db.state.apply(&tx, db.next_lsn()).unwrap_err());
        match (overflow, err) {
            (true, (1, OpError::Overflow { ty: t, .. }))
            | (false, (1, OpError::Underflow { ty: t, .. })) => assert_eq!(t, ty),
            (o, e) => panic!("overflow={o}: unexpected {e:?}"),
        }
        assert_eq!(db.state, before);
        assert_eq!(db.state.kv_get(&n, b"touched").unwrap(), None);
    }
}

#[test]
fn numeric_wrong_width_is_typed() {
    let mut db = Db::new();
    db.commit(&Transaction::new().kv_put(&ns(), key("k"), val("abc")))
        .unwrap();
    let tx = Transaction::new().kv_add(&ns(), key("k"), Numeric::U64(1));
    match mutation_err(db.state.apply(&tx, db.next_lsn()).unwrap_err()) {
        (0, OpError::WrongNumericWidth { source, .. }) => {
            assert_eq!((source.expected, source.actual), (8, 3))
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- tables

#[test]
fn table_insert_upsert_update_delete() {
    let mut db = Db::new();
    let (n, t) = (ns(), accounts());
    let l1 = db
        .commit(&Transaction::new().table_insert(&n, &t, cells("ann", 1, 10)))
        .unwrap();
    assert_eq!(
        db.row("ann", 1),
        Some(vec![
            "ann".into(),
            Value::U64(1),
            Value::I64(10),
            Value::Null
        ])
    );
    let pk = vec![Value::from("ann"), Value::U64(1)];
    assert_eq!(db.state.table_get(&n, &t, &pk).unwrap().unwrap().lsn, l1);
    // Duplicate insert.
    let err = db
        .commit(&Transaction::new().table_insert(&n, &t, cells("ann", 1, 99)))
        .unwrap_err();
    assert!(matches!(
        mutation_err(err),
        (0, OpError::DuplicatePrimaryKey { .. })
    ));
    // Upsert replaces.
    db.commit(&Transaction::new().table_upsert(&n, &t, cells("ann", 1, 20)))
        .unwrap();
    assert_eq!(db.row("ann", 1).unwrap()[2], Value::I64(20));
    // Update one column, keep the others.
    db.commit(&Transaction::new().table_update(
        &n,
        &t,
        pk.clone(),
        vec![(col("note"), "hi".into())],
    ))
    .unwrap();
    assert_eq!(
        db.row("ann", 1),
        Some(vec![
            "ann".into(),
            Value::U64(1),
            Value::I64(20),
            "hi".into()
        ])
    );
    // Update a missing row.
    let err = db
        .commit(&Transaction::new().table_update(
            &n,
            &t,
            vec!["bob".into(), Value::U64(1)],
            vec![(col("balance"), Value::I64(1))],
        ))
        .unwrap_err();
    assert!(matches!(
        mutation_err(err),
        (0, OpError::RowNotFound { .. })
    ));
    // Insert then update in one transaction: later mutations see earlier ones.
    db.commit(
        &Transaction::new()
            .table_insert(&n, &t, cells("bob", 2, 1))
            .table_update(
                &n,
                &t,
                vec!["bob".into(), Value::U64(2)],
                vec![(col("balance"), Value::I64(2))],
            ),
    )
    .unwrap();
    assert_eq!(db.row("bob", 2).unwrap()[2], Value::I64(2));
    // Delete (and delete of a missing row is a no-op).
    db.commit(
        &Transaction::new()
            .table_delete(&n, &t, pk.clone())
            .table_delete(&n, &t, pk.clone()),
    )
    .unwrap();
    assert_eq!(db.row("ann", 1), None);
    assert_eq!(db.state.table_len(&n, &t).unwrap(), 1);
    assert_eq!(db.replayed(), db.state);
}

#[test]
fn table_schema_violations_name_the_column() {
    let db = Db::new();
    let (n, t) = (ns(), accounts());
    let lsn = db.next_lsn();
    let apply = |m: Mutation| -> OpError {
        mutation_err(
            db.state
                .apply(&Transaction::new().mutation(m), lsn)
                .unwrap_err(),
        )
        .1
    };
    let row_err = |e: OpError| match e {
        OpError::Row { source, .. } => source,
        other => panic!("expected a row error, got {other:?}"),
    };
    let insert = |cells| Mutation::TableInsert {
        ns: n.clone(),
        table: t.clone(),
        cells,
    };
    let mut c = cells("a", 1, 1);
    c[2].1 = Value::U64(1);
    assert_eq!(
        row_err(apply(insert(c))),
        RowError::TypeMismatch {
            column: col("balance"),
            expected: ColumnType::I64,
            actual: ColumnType::U64
        }
    );
    let mut c = cells("a", 1, 1);
    c[2].1 = Value::Null;
    assert_eq!(
        row_err(apply(insert(c))),
        RowError::NullNotAllowed {
            column: col("balance")
        }
    );
    let mut c = cells("a", 1, 1);
    c.push((col("bogus"), Value::Null));
    assert_eq!(
        row_err(apply(insert(c))),
        RowError::UnknownColumn {
            column: col("bogus")
        }
    );
    let mut c = cells("a", 1, 1);
    c.remove(2);
    assert_eq!(
        row_err(apply(insert(c))),
        RowError::MissingColumn {
            column: col("balance")
        }
    );
    assert_eq!(
        row_err(apply(Mutation::TableDelete {
            ns: n.clone(),
            table: t.clone(),
            pk: vec!["a".into()]
        })),
        RowError::PrimaryKeyArity {
            expected: 2,
            actual: 1
        }
    );
    assert_eq!(
        row_err(apply(Mutation::TableUpdate {
            ns: n.clone(),
            table: t.clone(),
            pk: vec!["a".into(), Value::U64(1)],
            set: vec![(col("id"), Value::U64(2))]
        })),
        RowError::UpdatesPrimaryKey { column: col("id") }
    );
    let long = "x".repeat(5000);
    assert!(matches!(
        row_err(apply(insert(cells(&long, 1, 1)))),
        RowError::PrimaryKeyTooLong { .. }
    ));
    let missing = TableName::new("missing").unwrap();
    assert_eq!(
        apply(Mutation::TableInsert {
            ns: n.clone(),
            table: missing.clone(),
            cells: cells("a", 1, 1)
        }),
        OpError::NotFound(NotFound::Table {
            ns: n.clone(),
            table: missing.clone()
        })
    );
    assert!(matches!(
        db.state.table_get(&n, &t, &[Value::U64(1)]),
        Err(ReadError::Row {
            source: RowError::PrimaryKeyArity { .. },
            ..
        })
    ));
    assert!(matches!(
        db.state.table_get(&n, &missing, &[]),
        Err(ReadError::NotFound(NotFound::Table { .. }))
    ));
}

#[test]
fn table_scans_by_key_prefix() {
    let mut db = Db::new();
    let (n, t) = (ns(), accounts());
    let mut tx = Transaction::new();
    for (owner, id) in [("ann", 1), ("ann", 2), ("ann", 3), ("bob", 1), ("a", 9)] {
        tx = tx.table_insert(&n, &t, cells(owner, id, 0));
    }
    db.commit(&tx).unwrap();
    let ids = |r: &KeyRange, d: Direction, limit: usize| -> (Vec<(String, u64)>, bool) {
        let p = db.state.table_scan(&n, &t, r, d, limit).unwrap();
        let items = p
            .items
            .iter()
            .map(|row| match (&row.values[0], &row.values[1]) {
                (Value::Text(o), Value::U64(i)) => (o.clone(), *i),
                other => panic!("{other:?}"),
            })
            .collect();
        (items, p.has_more)
    };
    let s = |o: &str, i: u64| (o.to_owned(), i);
    assert_eq!(
        ids(&KeyRange::all(), Direction::Forward, 100).0,
        vec![
            s("a", 9),
            s("ann", 1),
            s("ann", 2),
            s("ann", 3),
            s("bob", 1)
        ]
    );
    assert_eq!(
        ids(
            &KeyRange::prefix(vec!["ann".into()]),
            Direction::Forward,
            100
        )
        .0,
        vec![s("ann", 1), s("ann", 2), s("ann", 3)]
    );
    assert_eq!(
        ids(&KeyRange::prefix(vec!["ann".into()]), Direction::Reverse, 2),
        (vec![s("ann", 3), s("ann", 2)], true)
    );
    let r = KeyRange::new(
        Bound::Excluded(vec!["ann".into(), Value::U64(1)]),
        Bound::Excluded(vec!["bob".into()]),
    );
    assert_eq!(
        ids(&r, Direction::Forward, 100).0,
        vec![s("ann", 2), s("ann", 3)]
    );
    let r = KeyRange::new(Bound::Excluded(vec!["ann".into()]), Bound::Unbounded);
    assert_eq!(ids(&r, Direction::Forward, 100).0, vec![s("bob", 1)]);
    let r = KeyRange::new(
        Bound::Included(vec!["bob".into()]),
        Bound::Excluded(vec!["ann".into()]),
    );
    assert_eq!(ids(&r, Direction::Forward, 100).0, vec![]);
    let bad = KeyRange::prefix(vec![Value::U64(1)]);
    assert!(matches!(
        db.state.table_scan(&n, &t, &bad, Direction::Forward, 1),
        Err(ReadError::Row {
            source: RowError::TypeMismatch { .. },
            ..
        })
    ));
}

// ---------------------------------------------------------------- assertions

#[test]
fn assertions_report_top_level_index_and_apply_nothing() {
    let mut db = Db::new();
    let n = ns();
    let l1 = db
        .commit(
            &Transaction::new()
                .kv_put(&n, key("bal"), Numeric::U64(50).to_value())
                .kv_put(&n, key("name"), val("bob")),
        )
        .unwrap();
    let holds = [
        Assertion::KvExists {
            ns: n.clone(),
            key: key("bal"),
        },
        Assertion::KvAbsent {
            ns: n.clone(),
            key: key("nope"),
        },
        Assertion::KvValueEquals {
            ns: n.clone(),
            key: key("name"),
            value: val("bob"),
        },
        Assertion::KvCompare {
            ns: n.clone(),
            key: key("bal"),
            op: CompareOp::Gt,
            operand: KvOperand::Numeric(Numeric::U64(49)),
        },
        Assertion::KvCompare {
            ns: n.clone(),
            key: key("name"),
            op: CompareOp::Lt,
            operand: KvOperand::Bytes(val("bobby")),
        },
        Assertion::KvCompare {
            ns: n.clone(),
            key: key("nope"),
            op: CompareOp::Eq,
            operand: KvOperand::Numeric(Numeric::I64(0)),
        },
        Assertion::KvVersionEquals {
            ns: n.clone(),
            key: key("bal"),
            lsn: l1,
        },
        Assertion::KvVersionEquals {
            ns: n.clone(),
            key: key("nope"),
            lsn: Lsn::ZERO,
        },
        Assertion::KvNumericAtLeast {
            ns: n.clone(),
            key: key("bal"),
            min: Numeric::U64(50),
        },
    ];
    let fails = [
        Assertion::KvNumericAtLeast {
            ns: n.clone(),
            key: key("bal"),
            min: Numeric::U64(51),
        },
        Assertion::KvExists {
            ns: n.clone(),
            key: key("nope"),
        },
        Assertion::KvAbsent {
            ns: n.clone(),
            key: key("bal"),
        },
        Assertion::KvValueEquals {
            ns: n.clone(),
            key: key("name"),
            value: val("ann"),
        },
        Assertion::KvCompare {
            ns: n.clone(),
            key: key("nope"),
            op: CompareOp::Eq,
            operand: KvOperand::Bytes(val("")),
        },
        Assertion::KvVersionEquals {
            ns: n.clone(),
            key: key("bal"),
            lsn: Lsn::new(1),
        },
    ];
    for a in &holds {
        let tx = Transaction::new()
            .assert(a.clone())
            .kv_put(&n, key("x"), val("1"));
        assert!(
            db.state.stage(&tx, db.next_lsn()).is_ok(),
            "should hold: {a:?}"
        );
    }
    for f in &fails {
        let mut tx = Transaction::new();
        for a in &holds {
            tx = tx.assert(a.clone());
        }
        let tx = tx.assert(f.clone()).kv_put(&n, key("x"), val("1"));
        let before = db.state.clone();
        match db.state.stage(&tx, db.next_lsn()) {
            Err(ApplyError::AssertionFailed { index, detail }) => {
                assert_eq!(index as usize, holds.len(), "{f:?}");
                assert!(!detail.is_empty());
            }
            other => panic!("{f:?}: {other:?}"),
        }
        assert_eq!(db.state, before);
    }
    // Assertions see the state before the transaction's own mutations.
    let tx = Transaction::new()
        .kv_put(&n, key("new"), val("1"))
        .assert(Assertion::KvAbsent {
            ns: n.clone(),
            key: key("new"),
        });
    assert!(db.state.stage(&tx, db.next_lsn()).is_ok());
}

#[test]
fn assertion_combinators() {
    let mut db = Db::new();
    let n = ns();
    db.commit(&Transaction::new().kv_put(&n, key("a"), val("1")))
        .unwrap();
    let yes = Assertion::KvExists {
        ns: n.clone(),
        key: key("a"),
    };
    let no = Assertion::KvExists {
        ns: n.clone(),
        key: key("b"),
    };
    let check = |a: Assertion| -> bool {
        match db.state.stage(&Transaction::new().assert(a), db.next_lsn()) {
            Ok(_) => true,
            Err(ApplyError::AssertionFailed { index: 0, .. }) => false,
            Err(e) => panic!("{e:?}"),
        }
    };
    assert!(check(Assertion::All(vec![yes.clone(), yes.clone()])));
    assert!(!check(Assertion::All(vec![yes.clone(), no.clone()])));
    assert!(check(Assertion::All(vec![])));
    assert!(check(Assertion::Any(vec![no.clone(), yes.clone()])));
    assert!(!check(Assertion::Any(vec![no.clone(), no.clone()])));
    assert!(!check(Assertion::Any(vec![])));
    assert!(check(Assertion::Not(Box::new(no.clone()))));
    assert!(!check(Assertion::Not(Box::new(yes.clone()))));
    assert!(check(Assertion::Not(Box::new(Assertion::All(vec![
        yes.clone(),
        no.clone()
    ])))));
    // Depth limit.
    let mut deep = yes.clone();
    for _ in 0..=aedb_model::MAX_ASSERTION_DEPTH {
        deep = Assertion::Not(Box::new(Assertion::Not(Box::new(deep))));
    }
    assert!(matches!(
        db.state
            .apply(&Transaction::new().assert(deep), db.next_lsn()),
        Err(ApplyError::InvalidAssertion {
            index: 0,
            source: OpError::AssertionTooDeep { .. }
        })
    ));
}

#[test]
fn row_assertions() {
    let mut db = Db::new();
    let (n, t) = (ns(), accounts());
    let l = db
        .commit(&Transaction::new().table_insert(&n, &t, cells("ann", 1, 10)))
        .unwrap();
    let pk = vec![Value::from("ann"), Value::U64(1)];
    let missing = vec![Value::from("zed"), Value::U64(1)];
    let check = |a: Assertion| -> Result<bool, ApplyError> {
        match db.state.stage(&Transaction::new().assert(a), db.next_lsn()) {
            Ok(_) => Ok(true),
            Err(ApplyError::AssertionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    };
    let exists = |pk: &Vec<Value>| Assertion::RowExists {
        ns: n.clone(),
        table: t.clone(),
        pk: pk.clone(),
    };
    let absent = |pk: &Vec<Value>| Assertion::RowAbsent {
        ns: n.clone(),
        table: t.clone(),
        pk: pk.clone(),
    };
    let eq = |column: &str, value: Value| Assertion::ColumnEquals {
        ns: n.clone(),
        table: t.clone(),
        pk: pk.clone(),
        column: col(column),
        value,
    };
    let cmp = |column: &str, op, value: Value| Assertion::ColumnCompare {
        ns: n.clone(),
        table: t.clone(),
        pk: pk.clone(),
        column: col(column),
        op,
        value,
    };
    let version = |lsn| Assertion::RowVersionEquals {
        ns: n.clone(),
        table: t.clone(),
        pk: pk.clone(),
        lsn,
    };
    assert_eq!(check(exists(&pk)), Ok(true));
    assert_eq!(check(exists(&missing)), Ok(false));
    assert_eq!(check(absent(&missing)), Ok(true));
    assert_eq!(check(absent(&pk)), Ok(false));
    assert_eq!(check(eq("balance", Value::I64(10))), Ok(true));
    assert_eq!(check(eq("balance", Value::I64(11))), Ok(false));
    assert_eq!(check(eq("note", Value::Null)), Ok(true));
    assert_eq!(
        check(cmp("balance", CompareOp::Ge, Value::I64(10))),
        Ok(true)
    );
    assert_eq!(
        check(cmp("balance", CompareOp::Lt, Value::I64(10))),
        Ok(false)
    );
    assert_eq!(check(cmp("note", CompareOp::Ne, "x".into())), Ok(false));
    assert_eq!(check(version(l)), Ok(true));
    assert_eq!(check(version(Lsn::ZERO)), Ok(false));
    // Malformed assertions are typed errors naming the column.
    let invalid = |r: Result<bool, ApplyError>| match r {
        Err(ApplyError::InvalidAssertion {
            index: 0,
            source: OpError::Row { source, .. },
        }) => source,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        invalid(check(eq("bogus", Value::I64(1)))),
        RowError::UnknownColumn {
            column: col("bogus")
        }
    );
    assert!(matches!(
        invalid(check(eq("balance", "x".into()))),
        RowError::TypeMismatch { .. }
    ));
    assert_eq!(
        invalid(check(cmp("balance", CompareOp::Eq, Value::Null))),
        RowError::NullComparison {
            column: col("balance")
        }
    );
    assert!(matches!(
        invalid(check(exists(&vec![Value::U64(1)]))),
        RowError::PrimaryKeyArity { .. }
    ));
}

// ---------------------------------------------------------------- idempotency

#[test]
fn idempotent_commit_returns_original_outcome() {
    let mut db = Db::new();
    let n = ns();
    let k = IdempotencyKey::new("req-1").unwrap();
    let tx = Transaction::new()
        .kv_add(&n, key("c"), Numeric::U64(1))
        .idempotency_key(k.clone());
    let l = db.commit(&tx).unwrap();
    assert_eq!(
        db.commit(&tx),
        Err(ApplyError::AlreadySeen {
            key: k.clone(),
            original: aedb_model::IdempotencyRecord {
                lsn: l,
                outcome: Outcome::Committed,
                request: Some(RequestStamp {
                    fingerprint: tx.fingerprint(),
                    at_unix_ms: 0
                })
            }
        })
    );
    assert_eq!(
        db.state.kv_get_numeric(&n, b"c", NumericType::U64).unwrap(),
        Numeric::U64(1)
    );
    // After a restart (replay), the retry still returns the original outcome.
    let recovered = db.replayed();
    assert_eq!(recovered, db.state);
    assert!(matches!(
        recovered.apply(&tx, recovered.lsn().next()),
        Err(ApplyError::AlreadySeen { original, .. }) if original.lsn == l
    ));
}

#[test]
fn idempotent_rejection_is_recorded_and_survives_replay() {
    let mut db = Db::new();
    let n = ns();
    let k = IdempotencyKey::new("req-2").unwrap();
    let tx = Transaction::new()
        .assert(Assertion::KvExists {
            ns: n.clone(),
            key: key("gate"),
        })
        .kv_put(&n, key("x"), val("1"))
        .idempotency_key(k.clone());
    let err = db.commit(&tx).unwrap_err();
    assert!(matches!(err, ApplyError::AssertionFailed { index: 0, .. }));
    let rejected_at = db.state.lsn();
    assert_eq!(
        db.log.last().unwrap().1,
        CommitRecord::Rejected {
            idempotency_key: k.clone(),
            request: Some(RequestStamp {
                fingerprint: tx.fingerprint(),
                at_unix_ms: 0
            }),
            rejection: Rejection::AssertionFailed { index: 0 }
        }
    );
    // Even once the gate opens, the retry returns the original rejection.
    db.commit(&Transaction::new().kv_put(&n, key("gate"), val("open")))
        .unwrap();
    let expect = aedb_model::IdempotencyRecord {
        lsn: rejected_at,
        outcome: Outcome::Rejected(Rejection::AssertionFailed { index: 0 }),
        request: Some(RequestStamp {
            fingerprint: tx.fingerprint(),
            at_unix_ms: 0,
        }),
    };
    assert_eq!(
        db.state.apply(&tx, db.next_lsn()),
        Err(ApplyError::AlreadySeen {
            key: k.clone(),
            original: expect.clone()
        })
    );
    let recovered = db.replayed();
    assert_eq!(
        recovered.idempotency(k.as_bytes()),
        Ok(Some(expect.clone()))
    );
    assert_eq!(recovered, db.state);
    // Mutation failures are recorded with their kind.
    let k2 = IdempotencyKey::new("req-3").unwrap();
    let tx = Transaction::new()
        .kv_sub(&n, key("empty"), Numeric::U64(1))
        .idempotency_key(k2.clone());
    db.commit(&tx).unwrap_err();
    match &db
        .state
        .idempotency(k2.as_bytes())
        .unwrap()
        .unwrap()
        .outcome
    {
        Outcome::Rejected(Rejection::Failed { kind, message }) => {
            assert_eq!(*kind, RejectionKind::Underflow);
            assert!(message.contains("underflow"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Rejections without a key, and non-outcome errors, are not recorded.
    let lsn = db.next_lsn();
    let plain = Transaction::new().kv_sub(&n, key("empty"), Numeric::U64(1));
    let e = db.state.apply(&plain, lsn).unwrap_err();
    assert_eq!(db.state.reject(&plain, &e, lsn), Ok(None));
    let e = ApplyError::LsnNotIncreasing {
        current: lsn,
        given: lsn,
    };
    assert_eq!(e.rejection(), None);
    // Recording twice for one key is refused.
    assert!(matches!(
        db.state
            .record_rejection(&k2, Rejection::AssertionFailed { index: 1 }, lsn),
        Err(ApplyError::AlreadySeen { .. })
    ));
    assert_eq!(db.replayed(), db.state);
}

// ---------------------------------------------------------------- replay

#[test]
fn replay_detects_divergence_and_changes_nothing() {
    let mut db = Db::new();
    let n = ns();
    db.commit(&Transaction::new().kv_put(&n, key("a"), val("1")))
        .unwrap();
    let before = db.state.clone();
    let mut s = db.state.clone();
    let lsn = s.lsn().next();
    let cases = [
        CommitRecord::Commit {
            idempotency_key: None,
            request: None,
            effects: vec![
                Effect::KvPut {
                    ns: n.clone(),
                    key: key("z"),
                    value: val("1"),
                },
                Effect::KvDelete {
                    ns: n.clone(),
                    key: key("missing"),
                },
            ],
        },
        CommitRecord::Commit {
            idempotency_key: None,
            request: None,
            effects: vec![Effect::RowPut {
                ns: n.clone(),
                table: accounts(),
                row: vec![Value::U64(1)].into(),
            }],
        },
        CommitRecord::Commit {
            idempotency_key: None,
            request: None,
            effects: vec![Effect::RowDelete {
                ns: n.clone(),
                table: accounts(),
                pk: vec!["a".into(), Value::U64(1)],
            }],
        },
        CommitRecord::Commit {
            idempotency_key: None,
            request: None,
            effects: vec![Effect::KvPut {
                ns: Namespace::parse("p", "zz").unwrap(),
                key: key("a"),
                value: val("1"),
            }],
        },
        CommitRecord::Ddl(Ddl::CreateScope { ns: n.clone() }),
    ];
    let expected: Vec<fn(&ReplayError) -> bool> = vec![
        |e| matches!(e, ReplayError::DeleteOfMissingKey { index: 1, .. }),
        |e| {
            matches!(
                e,
                ReplayError::Effect {
                    index: 0,
                    source: OpError::Row {
                        source: RowError::RowArity { .. },
                        ..
                    }
                }
            )
        },
        |e| matches!(e, ReplayError::DeleteOfMissingRow { index: 0, .. }),
        |e| {
            matches!(
                e,
                ReplayError::Effect {
                    index: 0,
                    source: OpError::NotFound(NotFound::Scope(_))
                }
            )
        },
        |e| matches!(e, ReplayError::Ddl(OpError::AlreadyExists(_))),
    ];
    for (rec, check) in cases.iter().zip(expected) {
        let err = s.replay(rec, lsn).unwrap_err();
        assert!(check(&err), "{err:?}");
        assert_eq!(s, before);
    }
    let k = IdempotencyKey::new("k").unwrap();
    let rec = CommitRecord::Rejected {
        idempotency_key: k.clone(),
        request: None,
        rejection: Rejection::AssertionFailed { index: 0 },
    };
    s.replay(&rec, lsn).unwrap();
    // A version-1 (unstamped) record never reuses a key.
    assert_eq!(
        s.replay(&rec, lsn.next()),
        Err(ReplayError::IdempotencyKeyReused { key: k.clone() })
    );
    // A stamped record replaces an existing one: the writer reused the key after
    // its record expired, under the retention in force then.
    let stamp = RequestStamp {
        fingerprint: aedb_model::RequestFingerprint::from_bytes([5; 32]),
        at_unix_ms: 9,
    };
    let reuse = CommitRecord::Commit {
        idempotency_key: Some(k.clone()),
        request: Some(stamp),
        effects: vec![],
    };
    s.replay(&reuse, lsn.next()).unwrap();
    let now = s.idempotency(k.as_bytes()).unwrap().unwrap();
    assert_eq!(now.lsn, lsn.next());
    assert_eq!(now.outcome, Outcome::Committed);
    assert_eq!(now.request, Some(stamp));
}

#[test]
fn snapshots_are_isolated_from_later_commits() {
    let mut db = Db::new();
    let n = ns();
    db.commit(&Transaction::new().kv_put(&n, key("a"), val("1")))
        .unwrap();
    let snapshot = db.state.clone();
    db.commit(&Transaction::new().kv_put(&n, key("a"), val("2")))
        .unwrap();
    assert_eq!(snapshot.kv_get(&n, b"a").unwrap().unwrap().value, val("1"));
    assert_eq!(db.state.kv_get(&n, b"a").unwrap().unwrap().value, val("2"));
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<State>();
}

#[test]
fn snapshot_codec_round_trips_the_state() {
    let mut db = Db::new();
    let (n, t) = (ns(), accounts());
    db.commit(
        &Transaction::new()
            .kv_put(&n, key("a"), val("1"))
            .kv_add(&n, key("c"), Numeric::I64(-4))
            .table_insert(&n, &t, cells("ann", 1, 10))
            .idempotency_key(IdempotencyKey::new("k1").unwrap()),
    )
    .unwrap();
    // A keyed rejection, so the snapshot holds a rejected idempotency outcome too:
    // -4 - i64::MAX underflows at the first mutation.
    let err = db
        .commit(
            &Transaction::new()
                .kv_sub(&n, key("c"), Numeric::I64(i64::MAX))
                .kv_sub(&n, key("c"), Numeric::I64(i64::MAX))
                .idempotency_key(IdempotencyKey::new("k2").unwrap()),
        )
        .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Mutation {
            index: 0,
            source: OpError::Underflow {
                ns: n.clone(),
                key: key("c"),
                ty: NumericType::I64,
            },
        }
    );
    let k2 = db
        .state
        .idempotency(b"k2")
        .expect("readable")
        .expect("the rejection is recorded");
    assert!(
        matches!(
            &k2.outcome,
            Outcome::Rejected(Rejection::Failed {
                kind: RejectionKind::Underflow,
                ..
            })
        ),
        "{k2:?}"
    );
    db.ddl(Ddl::CreateProject {
        project: ProjectName::system(),
    })
    .unwrap();
    let bytes = db.state.to_snapshot_bytes().unwrap();
    let decoded = State::decode_snapshot(&bytes).unwrap();
    assert_eq!(decoded, db.state);
    assert_eq!(decoded.lsn(), db.state.lsn());
    assert_eq!(
        State::decode_snapshot(&State::new().to_snapshot_bytes().unwrap()),
        Ok(State::new())
    );
    for cut in 0..bytes.len() {
        assert!(State::decode_snapshot(&bytes[..cut]).is_err(), "cut {cut}");
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(State::decode_snapshot(&extra).is_err());
}

/// A snapshot whose row is older than its table (the table created at LSN 3, the
/// row's LSN patched to 2 or 1) is refused: compaction's dropped-table rule relies on
/// rows never predating their table.
#[test]
fn a_snapshot_row_older_than_its_table_is_refused() {
    let mut db = Db::new();
    assert_eq!(db.state.lsn(), Lsn::new(3), "project, scope, table");
    db.commit(&Transaction::new().table_insert(&ns(), &accounts(), cells("ann", 1, 10)))
        .unwrap();
    let row_lsn = db.state.lsn();
    db.commit(&Transaction::new().kv_put(&ns(), key("k"), val("v")))
        .unwrap();
    let bytes = db.state.to_snapshot_bytes().unwrap();
    let at: Vec<usize> = (0..bytes.len() - 8)
        .filter(|&i| bytes[i..i + 8] == row_lsn.get().to_le_bytes())
        .collect();
    assert_eq!(at.len(), 1, "the row's LSN appears once");
    let with_row_lsn = |lsn: u64| {
        let mut b = bytes.clone();
        b[at[0]..at[0] + 8].copy_from_slice(&lsn.to_le_bytes());
        State::decode_snapshot(&b)
    };
    assert!(with_row_lsn(3).is_ok(), "a row at its table's creation");
    for older in [1, 2] {
        let e = with_row_lsn(older).unwrap_err();
        assert!(e.to_string().contains("before its table"), "{e}");
    }
}

#[test]
fn a_change_on_a_stale_state_is_refused_and_a_dropped_stage_writes_nothing() {
    let p = |n: &str| Ddl::CreateProject {
        project: ProjectName::new(n).unwrap(),
    };
    let s0 = State::new();
    let (s1, _) = s0.apply_ddl(&p("a"), Lsn::new(1)).unwrap();
    // Another change computed on the old state would reuse LSN 1 in the shared
    // memtable: refused, nothing written.
    assert_eq!(
        s0.apply_ddl(&p("b"), Lsn::new(1)).unwrap_err(),
        ApplyError::LsnNotIncreasing {
            current: Lsn::new(1),
            given: Lsn::new(1)
        }
    );
    // A staged change that is never installed leaves no trace.
    let (staged, _) = s1.stage_ddl(&p("c"), Lsn::new(2)).unwrap();
    assert_eq!(staged.lsn(), Lsn::new(2));
    drop(staged);
    let (s2, _) = s1.apply_ddl(&p("d"), Lsn::new(2)).unwrap();
    let reloaded = State::from_view(s2.view().clone()).unwrap();
    let names: Vec<String> = reloaded.projects().map(|p| p.as_str().to_owned()).collect();
    assert_eq!(names, vec!["a".to_owned(), "d".to_owned()]);
    assert_eq!(reloaded, s2);
    // The older snapshot still reads as of its own LSN.
    assert_eq!(
        State::from_view(s1.view().clone())
            .unwrap()
            .projects()
            .count(),
        1
    );
}

// ---------------------------------------------------------------- fingerprints and retention

fn stage_in(
    state: &State,
    tx: &Transaction,
    ctx: &aedb_model::CommitContext,
) -> Result<(State, CommitRecord), ApplyError> {
    let (staged, record) = state.stage_in(tx, state.lsn().next(), ctx)?;
    Ok((staged.install()?, record))
}

fn transfer(amount: u64, key: &str) -> Transaction {
    Transaction::new()
        .assert(Assertion::KvAbsent {
            ns: ns(),
            key: self::key("frozen"),
        })
        .kv_add(&ns(), self::key("bob"), Numeric::U64(amount))
        .idempotency_key(IdempotencyKey::new(key).unwrap())
}

mod fingerprint_props {
    use super::*;
    use proptest::prelude::*;

    fn tx_of(puts: &[(u8, Vec<u8>)], min: Option<u64>, k: &str) -> Transaction {
        let mut tx = Transaction::new();
        for (key, value) in puts {
            tx = tx.kv_put(
                &ns(),
                KvKey::new([b'k', *key]).unwrap(),
                KvValue::new(value).unwrap(),
            );
        }
        if let Some(min) = min {
            tx = tx.assert(Assertion::KvNumericAtLeast {
                ns: ns(),
                key: key("bal"),
                min: Numeric::U64(min),
            });
        }
        tx.idempotency_key(IdempotencyKey::new(k).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Equal requests have equal fingerprints; changing any mutation, assertion or
        /// the key changes it.
        #[test]
        fn fingerprint_is_equal_exactly_for_equal_requests(
            puts in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..8)), 0..4),
            other in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..8)), 0..4),
            min in proptest::option::of(any::<u64>()),
            other_min in proptest::option::of(any::<u64>()),
            k in "[a-z]{1,4}",
            other_k in "[a-z]{1,4}",
        ) {
            let a = tx_of(&puts, min, &k);
            prop_assert_eq!(a.fingerprint(), a.clone().fingerprint());
            prop_assert_eq!(a.fingerprint(), tx_of(&puts, min, &k).fingerprint());
            let b = tx_of(&other, other_min, &other_k);
            prop_assert_eq!(a.fingerprint() == b.fingerprint(), a == b, "{:?} vs {:?}", a, b);
        }
    }

    #[test]
    fn order_and_kind_of_parts_matter() {
        let ab = tx_of(&[(1, vec![1]), (2, vec![2])], None, "k");
        let ba = tx_of(&[(2, vec![2]), (1, vec![1])], None, "k");
        assert_ne!(ab.fingerprint(), ba.fingerprint());
        // The same bytes as a put or inside an assertion are different requests.
        let put = Transaction::new().kv_put(&ns(), key("x"), val("1"));
        let check = Transaction::new().assert(Assertion::KvValueEquals {
            ns: ns(),
            key: key("x"),
            value: val("1"),
        });
        assert_ne!(put.fingerprint(), check.fingerprint());
        // With and without a key.
        let keyed = put
            .clone()
            .idempotency_key(IdempotencyKey::new("k").unwrap());
        assert_ne!(put.fingerprint(), keyed.fingerprint());
        // Pinned: the encoding is part of the on-disk contract (stored fingerprints are
        // compared with those of later builds), so it must never change. The value was
        // computed independently from the layout in docs/FORMAT.md.
        assert_eq!(
            keyed.fingerprint().to_string(),
            "aca57aa9461a11d4c335215e8c01b0accdb93a211ce659da235602453797c5a5"
        );
    }
}

#[test]
fn a_retry_with_another_payload_is_refused_and_applies_nothing() {
    let mut db = Db::new();
    let ctx = aedb_model::CommitContext {
        at_unix_ms: 1_000,
        retention: aedb_model::IdempotencyRetention::forever(),
    };
    let (s, rec) = stage_in(&db.state, &transfer(10, "pay-1"), &ctx).unwrap();
    let first = s.lsn();
    db.state = s;
    db.log.push((first, rec.clone()));
    let CommitRecord::Commit {
        request: Some(stamp),
        ..
    } = rec
    else {
        panic!("a keyed commit is stamped: {rec:?}")
    };
    assert_eq!(stamp.fingerprint, transfer(10, "pay-1").fingerprint());
    assert_eq!(stamp.at_unix_ms, 1_000);
    let check = |state: &State| {
        // Same payload: the original outcome.
        assert!(matches!(
            stage_in(state, &transfer(10, "pay-1"), &ctx),
            Err(ApplyError::AlreadySeen { original, .. })
                if original.lsn == first && original.request == Some(stamp)
        ));
        // Another payload under the same key: refused, typed.
        let err = stage_in(state, &transfer(11, "pay-1"), &ctx).unwrap_err();
        assert_eq!(
            err,
            ApplyError::IdempotencyMismatch {
                key: IdempotencyKey::new("pay-1").unwrap(),
                original_lsn: first,
            }
        );
        assert_eq!(err.rejection(), None, "a mismatch is never recorded");
        assert_eq!(
            state.reject(&transfer(11, "pay-1"), &err, state.lsn().next()),
            Ok(None)
        );
        assert_eq!(
            state
                .kv_get_numeric(&ns(), b"bob", NumericType::U64)
                .unwrap(),
            Numeric::U64(10)
        );
    };
    check(&db.state);
    // After replay and after a snapshot round trip.
    let replayed = db.replayed();
    assert_eq!(replayed, db.state);
    check(&replayed);
    let snap = State::decode_snapshot(&db.state.to_snapshot_bytes().unwrap()).unwrap();
    check(&snap);
    // A rejected request is fingerprinted too.
    let frozen = Transaction::new().kv_put(&ns(), key("frozen"), val("y"));
    db.commit(&frozen).unwrap();
    let lsn = db.state.lsn().next();
    let err = db
        .state
        .stage_in(&transfer(5, "pay-2"), lsn, &ctx)
        .unwrap_err();
    let (staged, _) = db
        .state
        .stage_reject_in(&transfer(5, "pay-2"), &err, lsn, &ctx)
        .unwrap()
        .unwrap();
    db.state = staged.install().unwrap();
    assert!(matches!(
        stage_in(&db.state, &transfer(5, "pay-2"), &ctx),
        Err(ApplyError::AlreadySeen { original, .. })
            if matches!(original.outcome, Outcome::Rejected(Rejection::AssertionFailed { index: 0 }))
    ));
    assert!(matches!(
        stage_in(&db.state, &transfer(6, "pay-2"), &ctx),
        Err(ApplyError::IdempotencyMismatch { .. })
    ));
}

#[test]
fn records_of_format_v1_replay_any_retry() {
    let mut db = Db::new();
    let k = IdempotencyKey::new("old").unwrap();
    // What a version-1 record leaves behind: no stamp.
    let (s, _) = db
        .state
        .record_rejection(&k, Rejection::AssertionFailed { index: 0 }, db.next_lsn())
        .unwrap();
    db.state = s;
    assert_eq!(db.state.idempotency(b"old").unwrap().unwrap().request, None);
    for amount in [1, 2] {
        assert!(matches!(
            db.state.apply(&transfer(amount, "old"), db.next_lsn()),
            Err(ApplyError::AlreadySeen { .. })
        ));
    }
}

#[test]
fn expired_records_are_not_honoured_and_are_replaced() {
    use aedb_model::{CommitContext, IdempotencyRetention};
    use std::time::Duration;
    for (retention, step) in [
        (IdempotencyRetention::lsns(3), 1u64),
        (IdempotencyRetention::age(Duration::from_millis(30)), 10),
    ] {
        let mut db = Db::new();
        let ctx = |state: &State| CommitContext {
            at_unix_ms: state.lsn().next().get() * step,
            retention,
        };
        let c = ctx(&db.state);
        let (s, rec) = stage_in(&db.state, &transfer(10, "pay"), &c).unwrap();
        let first = s.lsn();
        db.state = s;
        db.log.push((first, rec));
        // Three more commits: still inside the window (3 LSNs or 30 ms).
        for i in 0..2 {
            let tx = Transaction::new().kv_put(&ns(), key("n"), val(&i.to_string()));
            let c = ctx(&db.state);
            let (s, rec) = stage_in(&db.state, &tx, &c).unwrap();
            db.log.push((s.lsn(), rec));
            db.state = s;
        }
        let c = ctx(&db.state);
        assert!(
            matches!(
                stage_in(&db.state, &transfer(99, "pay"), &c),
                Err(ApplyError::IdempotencyMismatch { .. })
            ),
            "{retention:?}"
        );
        let tx = Transaction::new().kv_put(&ns(), key("n"), val("x"));
        let (s, rec) = stage_in(&db.state, &tx, &c).unwrap();
        db.log.push((s.lsn(), rec));
        db.state = s;
        // Now 4 LSNs (40 ms) later: expired, so the other payload applies anew.
        let c = ctx(&db.state);
        let (s, rec) = stage_in(&db.state, &transfer(99, "pay"), &c).unwrap();
        let second = s.lsn();
        db.log.push((second, rec));
        db.state = s;
        assert_eq!(
            db.state
                .kv_get_numeric(&ns(), b"bob", NumericType::U64)
                .unwrap(),
            Numeric::U64(109)
        );
        let now = db.state.idempotency(b"pay").unwrap().unwrap();
        assert_eq!(now.lsn, second);
        assert_eq!(
            now.request.map(|r| r.fingerprint),
            Some(transfer(99, "pay").fingerprint())
        );
        assert_eq!(db.state.idempotency_len().unwrap(), 1);
        // Replay takes the writer's decision from the log (whatever retention is in
        // force at replay), so it rebuilds the same state.
        assert_eq!(db.replayed(), db.state);
        // The record of the first use is still readable as of its LSN.
        assert_eq!(
            db.state
                .as_of(first)
                .unwrap()
                .idempotency(b"pay")
                .unwrap()
                .unwrap()
                .lsn,
            first
        );
    }
}

/// Every stored version of `state`'s key space, in order: `(key, lsn, value)`.
fn stored_entries(state: &State) -> Vec<(Vec<u8>, Lsn, Vec<u8>)> {
    state
        .view()
        .scan(
            Bound::Unbounded,
            Bound::Unbounded,
            aedb_storage::Direction::Forward,
        )
        .unwrap()
        .map(|i| i.unwrap())
        .map(|i| (i.key, i.lsn, i.value))
        .collect()
}

#[test]
fn unstamped_records_expire_by_lsn_only_and_the_filter_agrees() {
    use aedb_model::{
        IdempotencyExpiry, IdempotencyRecord, IdempotencyRetention, RequestFingerprint,
    };
    use aedb_storage::compaction::CompactionFilter;
    use std::time::Duration;
    let stamped = IdempotencyRecord {
        lsn: Lsn::new(10),
        outcome: Outcome::Committed,
        request: Some(RequestStamp {
            fingerprint: RequestFingerprint::from_bytes([1; 32]),
            at_unix_ms: 1_000,
        }),
    };
    let legacy = IdempotencyRecord {
        request: None,
        ..stamped.clone()
    };
    let both = IdempotencyRetention {
        max_lsns: Some(100),
        max_age: Some(Duration::from_secs(1)),
    };
    // Inside both windows.
    assert!(!both.expired(&stamped, Lsn::new(110), 2_000));
    // Past the time window: only the stamped record knows its time.
    assert!(both.expired(&stamped, Lsn::new(20), 2_001));
    assert!(!both.expired(&legacy, Lsn::new(20), u64::MAX));
    // Past the LSN window: both.
    assert!(both.expired(&stamped, Lsn::new(111), 1_000));
    assert!(both.expired(&legacy, Lsn::new(111), 0));
    // A clock that went backwards never expires anything by time.
    assert!(!both.expired(&stamped, Lsn::new(11), 0));
    assert!(!IdempotencyRetention::forever().expired(&stamped, Lsn::new(u64::MAX), u64::MAX));

    // The compaction filter: only idempotency records (tag 4) that decode and are
    // expired as seen from the floor.
    let mut db = Db::new();
    let (s, _) = db.state.apply(&transfer(1, "f"), db.next_lsn()).unwrap();
    db.state = s;
    let (item_key, item_lsn, item_value) = stored_entries(&db.state)
        .into_iter()
        .rfind(|(k, ..)| k.first() == Some(&4))
        .expect("the idempotency record is in the key space");
    let filter = |floor: u64| IdempotencyExpiry {
        retention: IdempotencyRetention::lsns(2),
        floor: Lsn::new(floor),
        now_unix_ms: 0,
    };
    let at = item_lsn.get();
    assert!(!filter(at + 2).expired(&item_key, item_lsn, &item_value));
    assert!(filter(at + 3).expired(&item_key, item_lsn, &item_value));
    assert!(!filter(at + 3).expired(b"\x02other", item_lsn, &item_value));
    assert!(!filter(at + 3).expired(&item_key, item_lsn, b"not a record"));
}

#[test]
fn the_dropped_table_filter_expires_rows_of_tables_missing_at_the_floor_only() {
    use aedb_storage::compaction::CompactionFilter;
    let mut db = Db::new();
    let (n, t) = (ns(), accounts());
    db.commit(
        &Transaction::new()
            .table_insert(&n, &t, cells("ann", 1, 10))
            .kv_put(&n, key("k"), val("v")),
    )
    .unwrap();
    let all = stored_entries(&db.state);
    let row = all
        .iter()
        .find(|(k, ..)| k[0] == 3)
        .expect("the row")
        .clone();
    let before_drop = db.state.clone();
    db.ddl(Ddl::DropTable {
        ns: n.clone(),
        table: t.clone(),
    })
    .unwrap();
    // As of before the drop nothing is expired; as of after, the row only.
    let live = before_drop.dropped_table_rows();
    let dropped = db.state.dropped_table_rows();
    for (k, lsn, v) in &all {
        assert!(!live.expired(k, *lsn, v), "{k:?}");
        assert_eq!(dropped.expired(k, *lsn, v), k[0] == 3, "{k:?}");
    }
    // A table created again under the name has a new id: its rows are live, the old
    // ones still expired.
    let schema = before_drop.table_schema(&n, &t).unwrap().clone();
    db.ddl(Ddl::CreateTable {
        ns: n.clone(),
        table: t.clone(),
        schema,
    })
    .unwrap();
    db.commit(&Transaction::new().table_insert(&n, &t, cells("ann", 1, 11)))
        .unwrap();
    let again = db.state.dropped_table_rows();
    assert!(again.expired(&row.0, row.1, &row.2));
    // The fallback for an unreadable catalog expires nothing.
    assert!(!aedb_model::DroppedTableRows::none().expired(&row.0, row.1, &row.2));
    // A span of keys is wholly dropped only from a dropped table's row to another of
    // the same table: not across a live table's row, a KV key, or with the fallback.
    assert!(again.drops_every_key_between(&row.0, &row.0));
    assert!(!live.drops_every_key_between(&row.0, &row.0));
    assert!(!aedb_model::DroppedTableRows::none().drops_every_key_between(&row.0, &row.0));
    let new_row = stored_entries(&db.state)
        .into_iter()
        .find(|(k, ..)| k[0] == 3 && *k != row.0)
        .expect("the new row");
    assert!(!again.expired(&new_row.0, new_row.1, &new_row.2));
    let (lo, hi) = if row.0 < new_row.0 {
        (&row.0, &new_row.0)
    } else {
        (&new_row.0, &row.0)
    };
    assert!(!again.drops_every_key_between(lo, hi));
    let kv = all.iter().find(|(k, ..)| k[0] != 3).expect("a KV key");
    assert!(!again.drops_every_key_between(&kv.0, &row.0));
    // Keys too short to be a row's are kept, whatever their tag.
    for short in [&b"\x03"[..], b"\x03\x01p", b"\x03\x01p\x01s\x00\x00"] {
        assert!(!again.expired(short, Lsn::new(1), b""));
    }
}

#[test]
fn snapshots_of_version_1_still_decode() {
    let mut db = Db::new();
    let (s, _) = db
        .state
        .record_rejection(
            &IdempotencyKey::new("old").unwrap(),
            Rejection::AssertionFailed { index: 0 },
            db.next_lsn(),
        )
        .unwrap();
    db.state = s;
    let v2 = db.state.to_snapshot_bytes().unwrap();
    assert_eq!(v2[0], aedb_model::SNAPSHOT_VERSION);
    // Version 1 is version 2 without the request stamp of each idempotency record
    // (here one, unstamped: its last byte).
    assert_eq!(v2.last(), Some(&0));
    let mut v1 = v2[..v2.len() - 1].to_vec();
    v1[0] = 1;
    let decoded = State::decode_snapshot(&v1).unwrap();
    assert_eq!(decoded, db.state);
    assert_eq!(decoded.to_snapshot_bytes().unwrap(), v2);
}
