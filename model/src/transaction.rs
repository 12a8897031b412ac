//! Transactions: mutations, assertions and an optional idempotency key, with a
//! builder API.

use crate::assertion::Assertion;
use crate::idempotency::IdempotencyKey;
use crate::kv::{KvKey, KvValue};
use crate::mutation::Mutation;
use crate::name::{ColumnName, Namespace, TableName};
use crate::numeric::Numeric;
use crate::value::Value;

/// An atomic unit of change: every assertion must hold against the state before
/// the transaction, then every mutation is applied in order — or nothing is.
///
/// ```
/// use aedb_model::{Assertion, KvKey, KvValue, Namespace, Numeric, Transaction};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ns = Namespace::parse("bank", "eu")?;
/// let alice = KvKey::new("alice")?;
/// let tx = Transaction::new()
///     .assert(Assertion::KvNumericAtLeast { ns: ns.clone(), key: alice.clone(), min: Numeric::U64(10) })
///     .kv_sub(&ns, alice, Numeric::U64(10))
///     .kv_add(&ns, KvKey::new("bob")?, Numeric::U64(10))
///     .kv_put(&ns, KvKey::new("last")?, KvValue::new("alice->bob")?);
/// assert_eq!(tx.mutations.len(), 3);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transaction {
    /// Data changes, applied in order.
    pub mutations: Vec<Mutation>,
    /// Conditions checked against the state before the transaction.
    pub assertions: Vec<Assertion>,
    /// Makes the commit safe to retry.
    pub idempotency_key: Option<IdempotencyKey>,
}

impl Transaction {
    /// An empty transaction.
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// Appends any mutation.
    pub fn mutation(mut self, mutation: Mutation) -> Transaction {
        self.mutations.push(mutation);
        self
    }

    /// Appends an assertion.
    pub fn assert(mut self, assertion: Assertion) -> Transaction {
        self.assertions.push(assertion);
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: IdempotencyKey) -> Transaction {
        self.idempotency_key = Some(key);
        self
    }

    /// Appends [`Mutation::KvPut`].
    pub fn kv_put(self, ns: &Namespace, key: KvKey, value: KvValue) -> Transaction {
        self.mutation(Mutation::KvPut {
            ns: ns.clone(),
            key,
            value,
        })
    }

    /// Appends [`Mutation::KvDelete`].
    pub fn kv_delete(self, ns: &Namespace, key: KvKey) -> Transaction {
        self.mutation(Mutation::KvDelete {
            ns: ns.clone(),
            key,
        })
    }

    /// Appends [`Mutation::KvAdd`].
    pub fn kv_add(self, ns: &Namespace, key: KvKey, delta: Numeric) -> Transaction {
        self.mutation(Mutation::KvAdd {
            ns: ns.clone(),
            key,
            delta,
        })
    }

    /// Appends [`Mutation::KvSub`].
    pub fn kv_sub(self, ns: &Namespace, key: KvKey, delta: Numeric) -> Transaction {
        self.mutation(Mutation::KvSub {
            ns: ns.clone(),
            key,
            delta,
        })
    }

    /// Appends [`Mutation::TableInsert`].
    pub fn table_insert(
        self,
        ns: &Namespace,
        table: &TableName,
        cells: Vec<(ColumnName, Value)>,
    ) -> Transaction {
        self.mutation(Mutation::TableInsert {
            ns: ns.clone(),
            table: table.clone(),
            cells,
        })
    }

    /// Appends [`Mutation::TableUpsert`].
    pub fn table_upsert(
        self,
        ns: &Namespace,
        table: &TableName,
        cells: Vec<(ColumnName, Value)>,
    ) -> Transaction {
        self.mutation(Mutation::TableUpsert {
            ns: ns.clone(),
            table: table.clone(),
            cells,
        })
    }

    /// Appends [`Mutation::TableUpdate`].
    pub fn table_update(
        self,
        ns: &Namespace,
        table: &TableName,
        pk: Vec<Value>,
        set: Vec<(ColumnName, Value)>,
    ) -> Transaction {
        self.mutation(Mutation::TableUpdate {
            ns: ns.clone(),
            table: table.clone(),
            pk,
            set,
        })
    }

    /// Appends [`Mutation::TableDelete`].
    pub fn table_delete(self, ns: &Namespace, table: &TableName, pk: Vec<Value>) -> Transaction {
        self.mutation(Mutation::TableDelete {
            ns: ns.clone(),
            table: table.clone(),
            pk,
        })
    }
}
