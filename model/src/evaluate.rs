//! Evaluating an [`Assertion`] against a [`State`]: the read side of a transaction's
//! checks, kept apart from the assertion's definition so the data model's types do not
//! depend on the state that holds them.

use std::cmp::Ordering;

use aedb_types::Lsn;

use crate::assertion::{Assertion, KvOperand, MAX_ASSERTION_DEPTH, Verdict};
use crate::error::OpError;
use crate::kv::KvKey;
use crate::name::{ColumnName, Namespace, TableName};
use crate::numeric::Numeric;
use crate::schema::RowError;
use crate::state::State;
use crate::value::Value;

fn verdict(ok: bool, detail: impl FnOnce() -> String) -> Verdict {
    if ok {
        Verdict::Holds
    } else {
        Verdict::Fails(detail())
    }
}

impl Assertion {
    /// Evaluates the assertion against `state`.
    ///
    /// Errors mean the assertion itself is malformed for this state (missing
    /// namespace or table, wrong key or value types, stored number of the wrong
    /// width), not that it failed.
    pub fn evaluate(&self, state: &State) -> Result<Verdict, OpError> {
        self.eval(state, 0)
    }

    fn eval(&self, state: &State, depth: usize) -> Result<Verdict, OpError> {
        if depth > MAX_ASSERTION_DEPTH {
            return Err(OpError::AssertionTooDeep {
                max: MAX_ASSERTION_DEPTH,
            });
        }
        Ok(match self {
            Assertion::KvExists { ns, key } => {
                let entry = state.kv_entry(ns, key)?;
                verdict(entry.is_some(), || format!("key `{key}` is absent"))
            }
            Assertion::KvAbsent { ns, key } => match state.kv_entry(ns, key)? {
                None => Verdict::Holds,
                Some(e) => Verdict::Fails(format!("key `{key}` exists (version {})", e.lsn)),
            },
            Assertion::KvValueEquals { ns, key, value } => match state.kv_entry(ns, key)? {
                None => Verdict::Fails(format!("key `{key}` is absent")),
                Some(e) => verdict(e.value == *value, || {
                    format!("key `{key}` holds {:?}", e.value)
                }),
            },
            Assertion::KvCompare {
                ns,
                key,
                op,
                operand,
            } => match operand {
                KvOperand::Numeric(n) => {
                    let actual = numeric_at(state, ns, key, *n)?;
                    let ord = actual.compare(*n).unwrap_or(Ordering::Equal);
                    verdict(op.holds(ord), || {
                        format!("key `{key}`: {actual} {op} {n} is false")
                    })
                }
                KvOperand::Bytes(v) => match state.kv_entry(ns, key)? {
                    None => Verdict::Fails(format!("key `{key}` is absent")),
                    Some(e) => verdict(op.holds(e.value.as_bytes().cmp(v.as_bytes())), || {
                        format!("key `{key}`: {:?} {op} {v:?} is false", e.value)
                    }),
                },
            },
            Assertion::KvVersionEquals { ns, key, lsn } => {
                let actual = state.kv_entry(ns, key)?.map_or(Lsn::ZERO, |e| e.lsn);
                verdict(actual == *lsn, || {
                    format!("key `{key}` is at version {actual}")
                })
            }
            Assertion::KvNumericAtLeast { ns, key, min } => {
                let actual = numeric_at(state, ns, key, *min)?;
                let ord = actual.compare(*min).unwrap_or(Ordering::Equal);
                verdict(ord != Ordering::Less, || {
                    format!("key `{key}` holds {actual}, below {min}")
                })
            }
            Assertion::RowExists { ns, table, pk } => {
                let (row, _) = state.row_lookup(ns, table, pk)?;
                verdict(row.is_some(), || {
                    format!("no row with key {} in `{table}`", show_key(pk))
                })
            }
            Assertion::RowAbsent { ns, table, pk } => match state.row_lookup(ns, table, pk)?.0 {
                None => Verdict::Holds,
                Some(r) => Verdict::Fails(format!(
                    "row {} exists in `{table}` (version {})",
                    show_key(pk),
                    r.lsn
                )),
            },
            Assertion::ColumnEquals {
                ns,
                table,
                pk,
                column,
                value,
            } => {
                let (row, schema) = state.row_lookup(ns, table, pk)?;
                let idx = column_for(ns, table, &schema, column, value)?;
                match row {
                    None => {
                        Verdict::Fails(format!("no row with key {} in `{table}`", show_key(pk)))
                    }
                    Some(r) => {
                        let actual = &r.values[idx];
                        verdict(actual == value, || format!("column `{column}` is {actual}"))
                    }
                }
            }
            Assertion::ColumnCompare {
                ns,
                table,
                pk,
                column,
                op,
                value,
            } => {
                let (row, schema) = state.row_lookup(ns, table, pk)?;
                if value.is_null() {
                    return Err(OpError::Row {
                        ns: ns.clone(),
                        table: table.clone(),
                        source: RowError::NullComparison {
                            column: column.clone(),
                        },
                    });
                }
                let idx = column_for(ns, table, &schema, column, value)?;
                match row {
                    None => {
                        Verdict::Fails(format!("no row with key {} in `{table}`", show_key(pk)))
                    }
                    Some(r) => {
                        let actual = &r.values[idx];
                        match actual.compare(value) {
                            None => Verdict::Fails(format!("column `{column}` is null")),
                            Some(ord) => verdict(op.holds(ord), || {
                                format!("column `{column}`: {actual} {op} {value} is false")
                            }),
                        }
                    }
                }
            }
            Assertion::RowVersionEquals { ns, table, pk, lsn } => {
                let actual = state
                    .row_lookup(ns, table, pk)?
                    .0
                    .map_or(Lsn::ZERO, |r| r.lsn);
                verdict(actual == *lsn, || {
                    format!("row {} is at version {actual}", show_key(pk))
                })
            }
            Assertion::All(items) => {
                for (i, a) in items.iter().enumerate() {
                    if let Verdict::Fails(d) = a.eval(state, depth + 1)? {
                        return Ok(Verdict::Fails(format!("all[{i}]: {d}")));
                    }
                }
                Verdict::Holds
            }
            Assertion::Any(items) => {
                let mut first = None;
                for a in items {
                    match a.eval(state, depth + 1)? {
                        Verdict::Holds => return Ok(Verdict::Holds),
                        Verdict::Fails(d) => {
                            first.get_or_insert(d);
                        }
                    }
                }
                Verdict::Fails(match first {
                    None => "any() of no assertions".to_owned(),
                    Some(d) => format!("none of {} held; any[0]: {d}", items.len()),
                })
            }
            Assertion::Not(inner) => match inner.eval(state, depth + 1)? {
                Verdict::Holds => Verdict::Fails("negated assertion held".to_owned()),
                Verdict::Fails(_) => Verdict::Holds,
            },
        })
    }
}

fn numeric_at(
    state: &State,
    ns: &Namespace,
    key: &KvKey,
    like: Numeric,
) -> Result<Numeric, OpError> {
    let entry = state.kv_entry(ns, key)?;
    Numeric::decode(like.ty(), entry.as_ref().map(|e| e.value.as_bytes())).map_err(|source| {
        OpError::WrongNumericWidth {
            ns: ns.clone(),
            key: key.clone(),
            source,
        }
    })
}

/// Resolves `column` and checks `value` fits it.
fn column_for(
    ns: &Namespace,
    table: &TableName,
    schema: &crate::schema::TableSchema,
    column: &ColumnName,
    value: &Value,
) -> Result<usize, OpError> {
    let row_err = |source| OpError::Row {
        ns: ns.clone(),
        table: table.clone(),
        source,
    };
    let idx = schema.column_index(column.as_str()).ok_or_else(|| {
        row_err(RowError::UnknownColumn {
            column: column.clone(),
        })
    })?;
    schema.check_cell(idx, value).map_err(row_err)?;
    Ok(idx)
}

fn show_key(pk: &[Value]) -> String {
    let parts: Vec<String> = pk.iter().map(ToString::to_string).collect();
    format!("({})", parts.join(", "))
}

/// The storage keys a transaction's assertions and mutations read (what the
/// committing caller prefetches before the writer evaluates them).
pub(crate) fn touched_keys(state: &State, tx: &crate::transaction::Transaction) -> Vec<Vec<u8>> {
    use crate::mutation::Mutation;
    let mut keys = Vec::new();
    fn visit(state: &State, a: &Assertion, keys: &mut Vec<Vec<u8>>) {
        match a {
            Assertion::KvExists { ns, key }
            | Assertion::KvAbsent { ns, key }
            | Assertion::KvValueEquals { ns, key, .. }
            | Assertion::KvCompare { ns, key, .. }
            | Assertion::KvVersionEquals { ns, key, .. }
            | Assertion::KvNumericAtLeast { ns, key, .. } => {
                keys.push(state.storage_kv_key(ns, key));
            }
            Assertion::RowExists { ns, table, pk }
            | Assertion::RowAbsent { ns, table, pk }
            | Assertion::ColumnEquals { ns, table, pk, .. }
            | Assertion::ColumnCompare { ns, table, pk, .. }
            | Assertion::RowVersionEquals { ns, table, pk, .. } => {
                keys.extend(state.storage_row_key(ns, table, pk));
            }
            Assertion::All(items) | Assertion::Any(items) => {
                for a in items {
                    visit(state, a, keys);
                }
            }
            Assertion::Not(inner) => visit(state, inner, keys),
        }
    }
    for a in &tx.assertions {
        visit(state, a, &mut keys);
    }
    for m in &tx.mutations {
        match m {
            // Blind writes read nothing.
            Mutation::KvPut { .. }
            | Mutation::TableUpsert { .. }
            | Mutation::TableInsert { .. } => {}
            Mutation::KvDelete { ns, key }
            | Mutation::KvAdd { ns, key, .. }
            | Mutation::KvSub { ns, key, .. } => {
                keys.push(state.storage_kv_key(ns, key));
            }
            Mutation::TableUpdate { ns, table, pk, .. }
            | Mutation::TableDelete { ns, table, pk } => {
                keys.extend(state.storage_row_key(ns, table, pk));
            }
        }
    }
    keys
}
