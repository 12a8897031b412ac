//! Mutations (data changes inside a transaction) and DDL (creating the things
//! data lives in).

use crate::kv::{KvKey, KvValue};
use crate::name::{ColumnName, Namespace, ProjectName, TableName};
use crate::numeric::Numeric;
use crate::schema::TableSchema;
use crate::value::Value;

/// One data change of a [`Transaction`](crate::Transaction), applied in order.
///
/// Later mutations of a transaction see the effects of earlier ones; assertions
/// see none of them.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    /// Sets `key` to `value`.
    KvPut {
        /// Namespace of the KV space.
        ns: Namespace,
        /// The key.
        key: KvKey,
        /// The new value.
        value: KvValue,
    },
    /// Removes `key`; removing a missing key is a no-op.
    KvDelete {
        /// Namespace of the KV space.
        ns: Namespace,
        /// The key.
        key: KvKey,
    },
    /// Adds `delta` to the number stored at `key` (missing = 0), typed by `delta`.
    KvAdd {
        /// Namespace of the KV space.
        ns: Namespace,
        /// The key.
        key: KvKey,
        /// The amount and the numeric type of the stored value.
        delta: Numeric,
    },
    /// Subtracts `delta` from the number stored at `key` (missing = 0).
    KvSub {
        /// Namespace of the KV space.
        ns: Namespace,
        /// The key.
        key: KvKey,
        /// The amount and the numeric type of the stored value.
        delta: Numeric,
    },
    /// Inserts a row; fails if its primary key exists. Nullable columns left out
    /// are null.
    TableInsert {
        /// Namespace of the table.
        ns: Namespace,
        /// The table.
        table: TableName,
        /// Column values by name.
        cells: Vec<(ColumnName, Value)>,
    },
    /// Inserts a row or replaces the row with the same primary key.
    TableUpsert {
        /// Namespace of the table.
        ns: Namespace,
        /// The table.
        table: TableName,
        /// Column values by name.
        cells: Vec<(ColumnName, Value)>,
    },
    /// Sets some non-key columns of an existing row; fails if the row is missing.
    TableUpdate {
        /// Namespace of the table.
        ns: Namespace,
        /// The table.
        table: TableName,
        /// Primary-key values, in key order.
        pk: Vec<Value>,
        /// New values by column name.
        set: Vec<(ColumnName, Value)>,
    },
    /// Deletes the row with this primary key; deleting a missing row is a no-op.
    TableDelete {
        /// Namespace of the table.
        ns: Namespace,
        /// The table.
        table: TableName,
        /// Primary-key values, in key order.
        pk: Vec<Value>,
    },
}

/// A schema change, committed on its own (not inside a transaction).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ddl {
    /// Creates an empty project.
    CreateProject {
        /// The new project.
        project: ProjectName,
    },
    /// Creates a scope (with an empty KV space) in an existing project.
    CreateScope {
        /// The project and the new scope.
        ns: Namespace,
    },
    /// Creates an empty table in an existing namespace.
    CreateTable {
        /// The namespace.
        ns: Namespace,
        /// The new table.
        table: TableName,
        /// Its schema.
        schema: TableSchema,
    },
    /// Drops a table and all its rows.
    DropTable {
        /// The namespace.
        ns: Namespace,
        /// The table.
        table: TableName,
    },
}
