//! Table schemas, and checking rows against them.
//!
//! A [`TableSchema`] is validated once at construction (unique column names,
//! non-empty primary key of known, non-nullable columns), so code holding one can
//! rely on those invariants. Row checks report every violation as a typed
//! [`RowError`] naming the column.

use std::fmt;

use crate::limits::{MAX_CELL_LEN, MAX_COLUMNS, MAX_PRIMARY_KEY_COLUMNS, MAX_PRIMARY_KEY_LEN};
use crate::name::ColumnName;
use crate::value::{ColumnType, Value};

/// One column of a table schema.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ColumnDef {
    /// Column name, unique within the table.
    pub name: ColumnName,
    /// Column type.
    pub ty: ColumnType,
    /// Whether the column accepts [`Value::Null`]. Primary-key columns must not.
    pub nullable: bool,
}

impl ColumnDef {
    /// A non-nullable column.
    pub fn new(name: ColumnName, ty: ColumnType) -> ColumnDef {
        ColumnDef {
            name,
            ty,
            nullable: false,
        }
    }

    /// The same column, accepting nulls.
    pub fn nullable(mut self) -> ColumnDef {
        self.nullable = true;
        self
    }
}

/// A table definition is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A table needs at least one column.
    #[error("table schema has no columns")]
    NoColumns,
    /// More than [`MAX_COLUMNS`] columns.
    #[error("table schema has {count} columns; the maximum is {MAX_COLUMNS}")]
    TooManyColumns {
        /// Number of columns given.
        count: usize,
    },
    /// Two columns share a name.
    #[error("column `{column}` is defined more than once")]
    DuplicateColumn {
        /// The repeated name.
        column: ColumnName,
    },
    /// The primary key lists no columns.
    #[error("primary key is empty; name at least one column")]
    EmptyPrimaryKey,
    /// More than [`MAX_PRIMARY_KEY_COLUMNS`] primary-key columns.
    #[error("primary key has {count} columns; the maximum is {MAX_PRIMARY_KEY_COLUMNS}")]
    TooManyPrimaryKeyColumns {
        /// Number of primary-key columns given.
        count: usize,
    },
    /// The primary key names a column that is not defined.
    #[error("primary key column `{column}` is not a column of the table")]
    UnknownPrimaryKeyColumn {
        /// The unknown name.
        column: ColumnName,
    },
    /// The primary key names a column twice.
    #[error("primary key lists column `{column}` more than once")]
    DuplicatePrimaryKeyColumn {
        /// The repeated name.
        column: ColumnName,
    },
    /// Primary-key columns must be non-nullable.
    #[error("primary key column `{column}` is nullable; key columns must be non-null")]
    NullablePrimaryKeyColumn {
        /// The nullable key column.
        column: ColumnName,
    },
}

/// A row, key or update does not fit the table schema.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// A cell names a column the table does not have.
    #[error("unknown column `{column}`")]
    UnknownColumn {
        /// The unknown name.
        column: ColumnName,
    },
    /// A non-nullable column was given no value.
    #[error("missing value for non-nullable column `{column}`")]
    MissingColumn {
        /// The column left out.
        column: ColumnName,
    },
    /// The same column was given twice.
    #[error("column `{column}` is given more than once")]
    DuplicateColumn {
        /// The repeated column.
        column: ColumnName,
    },
    /// A value of the wrong type.
    #[error("column `{column}` is {expected}, got a {actual} value")]
    TypeMismatch {
        /// The column.
        column: ColumnName,
        /// Its type.
        expected: ColumnType,
        /// The type of the value given.
        actual: ColumnType,
    },
    /// `Null` in a non-nullable column (or a key column).
    #[error("column `{column}` is not nullable, got null")]
    NullNotAllowed {
        /// The column.
        column: ColumnName,
    },
    /// A text or bytes cell above [`MAX_CELL_LEN`].
    #[error("column `{column}` value is {len} bytes; the maximum is {MAX_CELL_LEN}")]
    CellTooLarge {
        /// The column.
        column: ColumnName,
        /// The value's length.
        len: usize,
    },
    /// A positional row with the wrong number of values.
    #[error("row has {actual} values; the table has {expected} columns")]
    RowArity {
        /// Number of columns.
        expected: usize,
        /// Number of values given.
        actual: usize,
    },
    /// A primary key (or key prefix) with the wrong number of values.
    #[error("primary key has {actual} values; the table's key has {expected} columns")]
    PrimaryKeyArity {
        /// Number of key columns (the maximum, for prefixes).
        expected: usize,
        /// Number of values given.
        actual: usize,
    },
    /// An update tries to change a key column.
    #[error("column `{column}` is part of the primary key and cannot be updated")]
    UpdatesPrimaryKey {
        /// The key column.
        column: ColumnName,
    },
    /// The encoded primary key is above [`MAX_PRIMARY_KEY_LEN`].
    #[error("encoded primary key is {len} bytes; the maximum is {MAX_PRIMARY_KEY_LEN}")]
    PrimaryKeyTooLong {
        /// The encoded length.
        len: usize,
    },
    /// A comparison against `Null` (use an equality or absence check instead).
    #[error("column `{column}` cannot be ordered against null")]
    NullComparison {
        /// The column.
        column: ColumnName,
    },
}

/// A validated table definition: columns in order and a primary key.
#[derive(Clone, PartialEq, Eq)]
pub struct TableSchema {
    columns: Vec<ColumnDef>,
    primary_key: Vec<ColumnName>,
    /// Positions of the key columns in `columns`, in key order.
    pk_indices: Vec<usize>,
    /// `(name, position)` sorted by name, for lookups by name.
    by_name: Vec<(ColumnName, usize)>,
}

impl fmt::Debug for TableSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableSchema")
            .field("columns", &self.columns)
            .field("primary_key", &self.primary_key)
            .finish()
    }
}

impl TableSchema {
    /// Validates and builds a schema.
    pub fn new(
        columns: Vec<ColumnDef>,
        primary_key: Vec<ColumnName>,
    ) -> Result<TableSchema, SchemaError> {
        if columns.is_empty() {
            return Err(SchemaError::NoColumns);
        }
        if columns.len() > MAX_COLUMNS {
            return Err(SchemaError::TooManyColumns {
                count: columns.len(),
            });
        }
        let mut by_name: Vec<(ColumnName, usize)> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        by_name.sort();
        if let Some(w) = by_name.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(SchemaError::DuplicateColumn {
                column: w[0].0.clone(),
            });
        }
        if primary_key.is_empty() {
            return Err(SchemaError::EmptyPrimaryKey);
        }
        if primary_key.len() > MAX_PRIMARY_KEY_COLUMNS {
            return Err(SchemaError::TooManyPrimaryKeyColumns {
                count: primary_key.len(),
            });
        }
        let mut pk_indices = Vec::with_capacity(primary_key.len());
        for name in &primary_key {
            let idx = by_name
                .binary_search_by(|(n, _)| n.cmp(name))
                .map(|i| by_name[i].1)
                .map_err(|_| SchemaError::UnknownPrimaryKeyColumn {
                    column: name.clone(),
                })?;
            if pk_indices.contains(&idx) {
                return Err(SchemaError::DuplicatePrimaryKeyColumn {
                    column: name.clone(),
                });
            }
            if columns[idx].nullable {
                return Err(SchemaError::NullablePrimaryKeyColumn {
                    column: name.clone(),
                });
            }
            pk_indices.push(idx);
        }
        Ok(TableSchema {
            columns,
            primary_key,
            pk_indices,
            by_name,
        })
    }

    /// The columns, in row order.
    pub fn columns(&self) -> &[ColumnDef] {
        &self.columns
    }

    /// The primary-key column names, in key order.
    pub fn primary_key(&self) -> &[ColumnName] {
        &self.primary_key
    }

    /// Positions (in row order) of the primary-key columns, in key order.
    pub fn primary_key_indices(&self) -> &[usize] {
        &self.pk_indices
    }

    /// The primary-key column types, in key order.
    pub fn primary_key_types(&self) -> impl ExactSizeIterator<Item = ColumnType> + '_ {
        self.pk_indices.iter().map(|&i| self.columns[i].ty)
    }

    /// Position of the column called `name`, if any.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.by_name
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.by_name[i].1)
    }

    /// The column called `name`, if any.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.column_index(name).map(|i| &self.columns[i])
    }

    /// Whether the column at `index` is part of the primary key.
    pub fn is_key_column(&self, index: usize) -> bool {
        self.pk_indices.contains(&index)
    }

    /// Checks one value against the column at `index` (which must exist).
    pub(crate) fn check_cell(&self, index: usize, value: &Value) -> Result<(), RowError> {
        let col = &self.columns[index];
        check_cell(col, value)
    }

    /// Builds a full row (in column order) from named cells; nullable columns
    /// left out become `Null`.
    pub fn row_from_cells(&self, cells: &[(ColumnName, Value)]) -> Result<Vec<Value>, RowError> {
        let mut row: Vec<Option<Value>> = vec![None; self.columns.len()];
        for (name, value) in cells {
            let idx = self
                .column_index(name.as_str())
                .ok_or_else(|| RowError::UnknownColumn {
                    column: name.clone(),
                })?;
            if row[idx].is_some() {
                return Err(RowError::DuplicateColumn {
                    column: name.clone(),
                });
            }
            self.check_cell(idx, value)?;
            row[idx] = Some(value.clone());
        }
        row.into_iter()
            .zip(&self.columns)
            .map(|(v, col)| match v {
                Some(v) => Ok(v),
                None if col.nullable => Ok(Value::Null),
                None => Err(RowError::MissingColumn {
                    column: col.name.clone(),
                }),
            })
            .collect()
    }

    /// Checks a full positional row (arity, types, nulls, sizes).
    pub fn check_row(&self, values: &[Value]) -> Result<(), RowError> {
        if values.len() != self.columns.len() {
            return Err(RowError::RowArity {
                expected: self.columns.len(),
                actual: values.len(),
            });
        }
        for (col, v) in self.columns.iter().zip(values) {
            check_cell(col, v)?;
        }
        Ok(())
    }

    /// Checks primary-key values: exactly one per key column, typed, non-null.
    pub fn check_primary_key(&self, pk: &[Value]) -> Result<(), RowError> {
        if pk.len() != self.pk_indices.len() {
            return Err(RowError::PrimaryKeyArity {
                expected: self.pk_indices.len(),
                actual: pk.len(),
            });
        }
        self.check_primary_key_prefix(pk)
    }

    /// Checks a key prefix: at most one value per key column, typed, non-null.
    pub fn check_primary_key_prefix(&self, prefix: &[Value]) -> Result<(), RowError> {
        if prefix.len() > self.pk_indices.len() {
            return Err(RowError::PrimaryKeyArity {
                expected: self.pk_indices.len(),
                actual: prefix.len(),
            });
        }
        for (&idx, v) in self.pk_indices.iter().zip(prefix) {
            check_cell(&self.columns[idx], v)?;
        }
        Ok(())
    }

    /// Checks an update's `set` list and returns `(position, value)` pairs.
    pub fn check_update(
        &self,
        set: &[(ColumnName, Value)],
    ) -> Result<Vec<(usize, Value)>, RowError> {
        let mut out: Vec<(usize, Value)> = Vec::with_capacity(set.len());
        for (name, value) in set {
            let idx = self
                .column_index(name.as_str())
                .ok_or_else(|| RowError::UnknownColumn {
                    column: name.clone(),
                })?;
            if self.is_key_column(idx) {
                return Err(RowError::UpdatesPrimaryKey {
                    column: name.clone(),
                });
            }
            if out.iter().any(|&(i, _)| i == idx) {
                return Err(RowError::DuplicateColumn {
                    column: name.clone(),
                });
            }
            self.check_cell(idx, value)?;
            out.push((idx, value.clone()));
        }
        Ok(out)
    }
}

fn check_cell(col: &ColumnDef, value: &Value) -> Result<(), RowError> {
    match value.column_type() {
        None if col.nullable => Ok(()),
        None => Err(RowError::NullNotAllowed {
            column: col.name.clone(),
        }),
        Some(ty) if ty != col.ty => Err(RowError::TypeMismatch {
            column: col.name.clone(),
            expected: col.ty,
            actual: ty,
        }),
        Some(_) if value.payload_len() > MAX_CELL_LEN => Err(RowError::CellTooLarge {
            column: col.name.clone(),
            len: value.payload_len(),
        }),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(n: &str) -> ColumnName {
        ColumnName::new(n).unwrap()
    }

    fn accounts() -> TableSchema {
        TableSchema::new(
            vec![
                ColumnDef::new(col("owner"), ColumnType::Text),
                ColumnDef::new(col("id"), ColumnType::U64),
                ColumnDef::new(col("balance"), ColumnType::I64),
                ColumnDef::new(col("note"), ColumnType::Text).nullable(),
            ],
            vec![col("owner"), col("id")],
        )
        .unwrap()
    }

    #[test]
    fn schema_errors() {
        let a = ColumnDef::new(col("a"), ColumnType::I64);
        assert_eq!(
            TableSchema::new(vec![], vec![col("a")]),
            Err(SchemaError::NoColumns)
        );
        assert_eq!(
            TableSchema::new(vec![a.clone(), a.clone()], vec![col("a")]),
            Err(SchemaError::DuplicateColumn { column: col("a") })
        );
        assert_eq!(
            TableSchema::new(vec![a.clone()], vec![]),
            Err(SchemaError::EmptyPrimaryKey)
        );
        assert_eq!(
            TableSchema::new(vec![a.clone()], vec![col("b")]),
            Err(SchemaError::UnknownPrimaryKeyColumn { column: col("b") })
        );
        assert_eq!(
            TableSchema::new(vec![a.clone()], vec![col("a"), col("a")]),
            Err(SchemaError::DuplicatePrimaryKeyColumn { column: col("a") })
        );
        assert_eq!(
            TableSchema::new(vec![a.clone().nullable()], vec![col("a")]),
            Err(SchemaError::NullablePrimaryKeyColumn { column: col("a") })
        );
        let many: Vec<ColumnDef> = (0..=MAX_COLUMNS)
            .map(|i| ColumnDef::new(col(&format!("c{i}")), ColumnType::Bool))
            .collect();
        assert_eq!(
            TableSchema::new(many, vec![col("c0")]),
            Err(SchemaError::TooManyColumns {
                count: MAX_COLUMNS + 1
            })
        );
        let many: Vec<ColumnDef> = (0..=MAX_PRIMARY_KEY_COLUMNS)
            .map(|i| ColumnDef::new(col(&format!("c{i}")), ColumnType::Bool))
            .collect();
        let pk = many.iter().map(|c| c.name.clone()).collect();
        assert_eq!(
            TableSchema::new(many, pk),
            Err(SchemaError::TooManyPrimaryKeyColumns {
                count: MAX_PRIMARY_KEY_COLUMNS + 1
            })
        );
    }

    #[test]
    fn schema_accessors() {
        let s = accounts();
        assert_eq!(s.primary_key_indices(), &[0, 1]);
        assert_eq!(
            s.primary_key_types().collect::<Vec<_>>(),
            vec![ColumnType::Text, ColumnType::U64]
        );
        assert_eq!(s.column_index("balance"), Some(2));
        assert_eq!(s.column("nope"), None);
        assert!(s.is_key_column(1) && !s.is_key_column(2));
    }

    #[test]
    fn row_from_cells_errors_name_the_column() {
        let s = accounts();
        let ok = s
            .row_from_cells(&[
                (col("id"), Value::U64(1)),
                (col("owner"), "ann".into()),
                (col("balance"), Value::I64(5)),
            ])
            .unwrap();
        assert_eq!(
            ok,
            vec!["ann".into(), Value::U64(1), Value::I64(5), Value::Null]
        );
        assert_eq!(
            s.row_from_cells(&[(col("zzz"), Value::U64(1))]),
            Err(RowError::UnknownColumn { column: col("zzz") })
        );
        assert_eq!(
            s.row_from_cells(&[(col("id"), Value::U64(1)), (col("owner"), "a".into())]),
            Err(RowError::MissingColumn {
                column: col("balance")
            })
        );
        assert_eq!(
            s.row_from_cells(&[(col("id"), Value::U64(1)), (col("id"), Value::U64(2))]),
            Err(RowError::DuplicateColumn { column: col("id") })
        );
        assert_eq!(
            s.row_from_cells(&[(col("id"), Value::I64(1))]),
            Err(RowError::TypeMismatch {
                column: col("id"),
                expected: ColumnType::U64,
                actual: ColumnType::I64
            })
        );
        assert_eq!(
            s.row_from_cells(&[(col("balance"), Value::Null)]),
            Err(RowError::NullNotAllowed {
                column: col("balance")
            })
        );
    }

    #[test]
    fn positional_row_key_and_update_checks() {
        let s = accounts();
        assert_eq!(
            s.check_row(&[Value::Null]),
            Err(RowError::RowArity {
                expected: 4,
                actual: 1
            })
        );
        assert_eq!(
            s.check_primary_key(&["a".into()]),
            Err(RowError::PrimaryKeyArity {
                expected: 2,
                actual: 1
            })
        );
        assert!(s.check_primary_key_prefix(&["a".into()]).is_ok());
        assert_eq!(
            s.check_primary_key(&["a".into(), Value::Null]),
            Err(RowError::NullNotAllowed { column: col("id") })
        );
        assert_eq!(
            s.check_update(&[(col("owner"), "b".into())]),
            Err(RowError::UpdatesPrimaryKey {
                column: col("owner")
            })
        );
        assert_eq!(
            s.check_update(&[(col("note"), Value::Null), (col("note"), Value::Null)]),
            Err(RowError::DuplicateColumn {
                column: col("note")
            })
        );
        assert_eq!(
            s.check_update(&[(col("note"), Value::Null)]),
            Ok(vec![(3, Value::Null)])
        );
    }

    #[test]
    fn oversized_cell_is_rejected() {
        let s = TableSchema::new(
            vec![
                ColumnDef::new(col("k"), ColumnType::U64),
                ColumnDef::new(col("blob"), ColumnType::Bytes),
            ],
            vec![col("k")],
        )
        .unwrap();
        assert_eq!(
            s.check_cell(1, &Value::Bytes(vec![0; MAX_CELL_LEN + 1])),
            Err(RowError::CellTooLarge {
                column: col("blob"),
                len: MAX_CELL_LEN + 1
            })
        );
    }
}
