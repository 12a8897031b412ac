//! Proptest strategies shared by the integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use aedb_model::{
    ColumnDef, ColumnName, ColumnType, CommitRecord, Ddl, Effect, IdempotencyKey, KvKey, KvValue,
    Namespace, ProjectName, Rejection, RejectionKind, RequestFingerprint, RequestStamp, ScopeName,
    TableName, TableSchema, Timestamp, Value,
};
use proptest::collection::vec;
use proptest::prelude::*;

pub fn name_str() -> impl Strategy<Value = String> {
    "_?[A-Za-z0-9_-]{0,63}".prop_filter("non-empty", |s| !s.is_empty())
}

pub fn project() -> impl Strategy<Value = ProjectName> {
    name_str().prop_map(|s| ProjectName::reserved(&s).unwrap())
}

pub fn namespace() -> impl Strategy<Value = Namespace> {
    (project(), name_str()).prop_map(|(p, s)| Namespace::new(p, ScopeName::reserved(&s).unwrap()))
}

pub fn table() -> impl Strategy<Value = TableName> {
    name_str().prop_map(|s| TableName::reserved(&s).unwrap())
}

pub fn column() -> impl Strategy<Value = ColumnName> {
    name_str().prop_map(|s| ColumnName::reserved(&s).unwrap())
}

pub fn kv_key() -> impl Strategy<Value = KvKey> {
    prop_oneof![
        vec(any::<u8>(), 1..24),
        vec(any::<u8>(), 1..=aedb_model::limits::MAX_KV_KEY_LEN),
    ]
    .prop_map(|b| KvKey::from_vec(b).unwrap())
}

pub fn kv_value() -> impl Strategy<Value = KvValue> {
    vec(any::<u8>(), 0..64).prop_map(|b| KvValue::from_vec(b).unwrap())
}

pub fn column_type() -> impl Strategy<Value = ColumnType> {
    prop::sample::select(ColumnType::ALL.to_vec())
}

/// A non-null value of type `ty`.
pub fn value_of(ty: ColumnType) -> BoxedStrategy<Value> {
    match ty {
        ColumnType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        ColumnType::I64 => prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0),
            -3i64..3
        ]
        .prop_map(Value::I64)
        .boxed(),
        ColumnType::U64 => prop_oneof![any::<u64>(), Just(u64::MAX), 0u64..3]
            .prop_map(Value::U64)
            .boxed(),
        ColumnType::U128 => prop_oneof![any::<u128>(), Just(u128::MAX), 0u128..3]
            .prop_map(Value::U128)
            .boxed(),
        ColumnType::F64 => prop_oneof![
            any::<f64>(),
            Just(0.0),
            Just(-0.0),
            Just(f64::NAN),
            Just(-f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MIN_POSITIVE),
            any::<u64>().prop_map(f64::from_bits),
        ]
        .prop_map(Value::F64)
        .boxed(),
        ColumnType::Text => prop_oneof!["[a\\x00\\x01b\u{ff}é]{0,6}", ".{0,12}"]
            .prop_map(Value::Text)
            .boxed(),
        ColumnType::Bytes => prop_oneof![
            vec(prop::sample::select(vec![0u8, 1, 0xfe, 0xff, b'a']), 0..6),
            vec(any::<u8>(), 0..12)
        ]
        .prop_map(Value::Bytes)
        .boxed(),
        ColumnType::Timestamp => any::<i64>()
            .prop_map(|m| Value::Timestamp(Timestamp::from_micros(m)))
            .boxed(),
    }
}

pub fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Null), column_type().prop_flat_map(value_of)]
}

pub fn schema() -> impl Strategy<Value = TableSchema> {
    vec((column_type(), any::<bool>()), 1..6).prop_flat_map(|cols| {
        let n = cols.len();
        let defs: Vec<ColumnDef> = cols
            .iter()
            .enumerate()
            .map(|(i, (ty, nullable))| ColumnDef {
                name: ColumnName::new(&format!("c{i}")).unwrap(),
                ty: *ty,
                nullable: *nullable,
            })
            .collect();
        // Pick a non-empty key among non-nullable columns; make column 0 non-null.
        (
            Just(defs),
            prop::sample::subsequence((0..n).collect::<Vec<_>>(), 1..=n),
        )
            .prop_map(|(mut defs, pk)| {
                for &i in &pk {
                    defs[i].nullable = false;
                }
                let pk = pk.iter().map(|&i| defs[i].name.clone()).collect();
                TableSchema::new(defs, pk).unwrap()
            })
    })
}

pub fn idempotency_key() -> impl Strategy<Value = IdempotencyKey> {
    vec(any::<u8>(), 1..=256).prop_map(|b| IdempotencyKey::new(b).unwrap())
}

pub fn rejection() -> impl Strategy<Value = Rejection> {
    prop_oneof![
        any::<u32>().prop_map(|index| Rejection::AssertionFailed { index }),
        ((1u8..=8), ".{0,40}")
            .prop_map(|(code, m)| Rejection::failed(RejectionKind::from_code(code).unwrap(), &m)),
    ]
}

pub fn effect() -> impl Strategy<Value = Effect> {
    prop_oneof![
        (namespace(), kv_key(), kv_value()).prop_map(|(ns, key, value)| Effect::KvPut {
            ns,
            key,
            value
        }),
        (namespace(), kv_key()).prop_map(|(ns, key)| Effect::KvDelete { ns, key }),
        (namespace(), table(), vec(any_value(), 0..6)).prop_map(|(ns, table, row)| {
            Effect::RowPut {
                ns,
                table,
                row: Arc::from(row),
            }
        }),
        (namespace(), table(), vec(any_value(), 0..4))
            .prop_map(|(ns, table, pk)| Effect::RowDelete { ns, table, pk }),
    ]
}

pub fn ddl() -> impl Strategy<Value = Ddl> {
    prop_oneof![
        project().prop_map(|project| Ddl::CreateProject { project }),
        namespace().prop_map(|ns| Ddl::CreateScope { ns }),
        (namespace(), table(), schema()).prop_map(|(ns, table, schema)| Ddl::CreateTable {
            ns,
            table,
            schema
        }),
        (namespace(), table()).prop_map(|(ns, table)| Ddl::DropTable { ns, table }),
    ]
}

pub fn request() -> impl Strategy<Value = RequestStamp> {
    (any::<[u8; 32]>(), any::<u64>()).prop_map(|(fp, at_unix_ms)| RequestStamp {
        fingerprint: RequestFingerprint::from_bytes(fp),
        at_unix_ms,
    })
}

pub fn record() -> impl Strategy<Value = CommitRecord> {
    prop_oneof![
        (
            proptest::option::of(idempotency_key()),
            proptest::option::of(request()),
            vec(effect(), 0..6)
        )
            .prop_map(|(idempotency_key, request, effects)| CommitRecord::Commit {
                // A stamp is only encoded with a key.
                request: idempotency_key.as_ref().and(request),
                idempotency_key,
                effects
            }),
        (
            idempotency_key(),
            proptest::option::of(request()),
            rejection()
        )
            .prop_map(|(idempotency_key, request, rejection)| {
                CommitRecord::Rejected {
                    idempotency_key,
                    request,
                    rejection,
                }
            }),
        ddl().prop_map(CommitRecord::Ddl),
    ]
}
