//! The primary-key encoding preserves order, round-trips, and makes prefix
//! range scans agree with value comparisons.

mod common;

use std::cmp::Ordering;
use std::ops::Bound;

use aedb_model::key::{decode_key, encode_key};
use aedb_model::{
    ColumnDef, ColumnName, ColumnType, Ddl, Direction, KeyRange, Namespace, ProjectName, State,
    TableName, TableSchema, Transaction, Value,
};
use aedb_types::Lsn;
use proptest::collection::vec;
use proptest::prelude::*;

fn cmp_keys(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match x.compare(y).expect("same types") {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

fn key_types() -> impl Strategy<Value = Vec<ColumnType>> {
    vec(common::column_type(), 1..4)
}

fn keys_of(types: Vec<ColumnType>, n: usize) -> impl Strategy<Value = Vec<Vec<Value>>> {
    let one: Vec<BoxedStrategy<Value>> = types.into_iter().map(common::value_of).collect();
    vec(one, n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn byte_order_equals_value_order((types, keys) in key_types().prop_flat_map(|t| (Just(t.clone()), keys_of(t, 2)))) {
        let (a, b) = (&keys[0], &keys[1]);
        let ea = encode_key(a).unwrap();
        let eb = encode_key(b).unwrap();
        prop_assert_eq!(ea.as_bytes().cmp(eb.as_bytes()), cmp_keys(a, b), "{:?} vs {:?}", a, b);
        prop_assert_eq!(&decode_key(types.iter().copied(), &ea).unwrap(), a);
        prop_assert_eq!(&decode_key(types.iter().copied(), &eb).unwrap(), b);
        // Any prefix of the key columns encodes to a byte prefix.
        for k in 0..a.len() {
            let p = encode_key(&a[..k]).unwrap();
            prop_assert!(ea.as_bytes().starts_with(p.as_bytes()));
        }
    }

    #[test]
    fn decode_of_arbitrary_bytes_never_panics(types in key_types(), bytes in vec(any::<u8>(), 0..64)) {
        if let Ok(values) = decode_key(types.iter().copied(), &bytes) {
            let again = encode_key(&values).unwrap();
            prop_assert_eq!(again.as_bytes(), &bytes[..]);
        }
    }

    #[test]
    fn table_range_scans_match_value_filtering(
        (types, keys, lo, hi) in key_types().prop_flat_map(|t| {
            (Just(t.clone()), keys_of(t.clone(), 12), keys_of(t.clone(), 1), keys_of(t, 1))
        }),
        lo_len in 0usize..4, hi_len in 0usize..4,
        lo_kind in 0u8..3, hi_kind in 0u8..3,
        reverse in any::<bool>(),
        limit in 0usize..15,
    ) {
        let col = |i: usize| ColumnName::new(&format!("k{i}")).unwrap();
        let schema = TableSchema::new(
            types.iter().enumerate().map(|(i, ty)| ColumnDef::new(col(i), *ty)).collect(),
            (0..types.len()).map(col).collect(),
        ).unwrap();
        let ns = Namespace::parse("p", "s").unwrap();
        let t = TableName::new("t").unwrap();
        let mut state = State::new();
        for (i, ddl) in [
            Ddl::CreateProject { project: ProjectName::new("p").unwrap() },
            Ddl::CreateScope { ns: ns.clone() },
            Ddl::CreateTable { ns: ns.clone(), table: t.clone(), schema },
        ].iter().enumerate() {
            state = state.apply_ddl(ddl, Lsn::new(i as u64 + 1)).unwrap().0;
        }
        let mut tx = Transaction::new();
        for k in &keys {
            tx = tx.table_upsert(&ns, &t, k.iter().enumerate().map(|(i, v)| (col(i), v.clone())).collect());
        }
        state = state.apply(&tx, Lsn::new(4)).unwrap().0;

        let bound = |kind: u8, p: &[Value], len: usize| -> Bound<Vec<Value>> {
            let p = p[..len.min(p.len())].to_vec();
            match kind { 0 => Bound::Unbounded, 1 => Bound::Included(p), _ => Bound::Excluded(p) }
        };
        let start = bound(lo_kind, &lo[0], lo_len);
        let end = bound(hi_kind, &hi[0], hi_len);
        // Compare only the bound's prefix of each key.
        let prefix_cmp = |k: &[Value], p: &[Value]| cmp_keys(&k[..p.len()], p);
        let in_range = |k: &[Value]| {
            let after_start = match &start {
                Bound::Unbounded => true,
                Bound::Included(p) => prefix_cmp(k, p) != Ordering::Less,
                Bound::Excluded(p) => prefix_cmp(k, p) == Ordering::Greater,
            };
            let before_end = match &end {
                Bound::Unbounded => true,
                Bound::Included(p) => prefix_cmp(k, p) != Ordering::Greater,
                Bound::Excluded(p) => prefix_cmp(k, p) == Ordering::Less,
            };
            after_start && before_end
        };
        let mut expected: Vec<Vec<Value>> = keys.clone();
        expected.sort_by(|a, b| cmp_keys(a, b));
        expected.dedup();
        expected.retain(|k| in_range(k));
        if reverse { expected.reverse(); }
        let more = expected.len() > limit;
        expected.truncate(limit);

        let dir = if reverse { Direction::Reverse } else { Direction::Forward };
        let page = state.table_scan(&ns, &t, &KeyRange::new(start.clone(), end.clone()), dir, limit).unwrap();
        let got: Vec<Vec<Value>> = page.items.iter().map(|r| r.values.to_vec()).collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(page.has_more, more);
    }
}
