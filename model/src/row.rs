//! Stored table rows.

use std::sync::Arc;

use aedb_types::Lsn;

use crate::schema::TableSchema;
use crate::value::Value;

/// A stored row: one value per schema column, in column order, and the LSN of
/// the commit that last wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The values, in the table schema's column order.
    pub values: Arc<[Value]>,
    /// The LSN of the commit that last wrote this row (its version).
    pub lsn: Lsn,
}

impl Row {
    /// The value of the column called `column`, if the schema has it.
    pub fn get<'a>(&'a self, schema: &TableSchema, column: &str) -> Option<&'a Value> {
        schema.column_index(column).and_then(|i| self.values.get(i))
    }

    /// The primary-key values, in key order.
    pub fn primary_key(&self, schema: &TableSchema) -> Vec<Value> {
        schema
            .primary_key_indices()
            .iter()
            .filter_map(|&i| self.values.get(i).cloned())
            .collect()
    }
}
