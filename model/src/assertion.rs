//! Assertions: conditions a transaction requires of the state before it applies.
//!
//! Every assertion is evaluated against the state as it was *before* the
//! transaction's mutations. A missing KV key counts as zero for numeric checks
//! and has version [`Lsn::ZERO`]; a missing row has version [`Lsn::ZERO`].

use std::cmp::Ordering;
use std::fmt;

use aedb_types::Lsn;

use crate::kv::{KvKey, KvValue};
use crate::name::{ColumnName, Namespace, TableName};
use crate::numeric::Numeric;
use crate::value::Value;

/// Deepest nesting of `All`/`Any`/`Not` combinators accepted.
pub const MAX_ASSERTION_DEPTH: usize = 64;

/// A comparison operator: `actual OP operand`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
}

impl CompareOp {
    /// Whether `actual OP operand` holds, given `actual.cmp(operand)`.
    pub fn holds(self, ordering: Ordering) -> bool {
        match self {
            CompareOp::Eq => ordering == Ordering::Equal,
            CompareOp::Ne => ordering != Ordering::Equal,
            CompareOp::Lt => ordering == Ordering::Less,
            CompareOp::Le => ordering != Ordering::Greater,
            CompareOp::Gt => ordering == Ordering::Greater,
            CompareOp::Ge => ordering != Ordering::Less,
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        })
    }
}

/// The right-hand side of a KV comparison.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOperand {
    /// Compare the stored value decoded as this number's type (missing = 0).
    Numeric(Numeric),
    /// Compare the stored bytes lexicographically (missing never matches).
    Bytes(KvValue),
}

/// A condition on the state before a transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum Assertion {
    /// The KV key exists.
    KvExists {
        /// Namespace.
        ns: Namespace,
        /// Key.
        key: KvKey,
    },
    /// The KV key does not exist.
    KvAbsent {
        /// Namespace.
        ns: Namespace,
        /// Key.
        key: KvKey,
    },
    /// The KV key exists and holds exactly `value`.
    KvValueEquals {
        /// Namespace.
        ns: Namespace,
        /// Key.
        key: KvKey,
        /// Expected value.
        value: KvValue,
    },
    /// `stored OP operand` holds (numeric or byte-wise, see [`KvOperand`]).
    KvCompare {
        /// Namespace.
        ns: Namespace,
        /// Key.
        key: KvKey,
        /// Operator.
        op: CompareOp,
        /// Right-hand side.
        operand: KvOperand,
    },
    /// The key's version (LSN of its last write; `Lsn::ZERO` if absent) equals `lsn`.
    KvVersionEquals {
        /// Namespace.
        ns: Namespace,
        /// Key.
        key: KvKey,
        /// Expected version.
        lsn: Lsn,
    },
    /// The number stored at the key (missing = 0) is at least `min`.
    KvNumericAtLeast {
        /// Namespace.
        ns: Namespace,
        /// Key.
        key: KvKey,
        /// Minimum, and the numeric type of the stored value.
        min: Numeric,
    },
    /// A row with this primary key exists.
    RowExists {
        /// Namespace.
        ns: Namespace,
        /// Table.
        table: TableName,
        /// Primary key.
        pk: Vec<Value>,
    },
    /// No row with this primary key exists.
    RowAbsent {
        /// Namespace.
        ns: Namespace,
        /// Table.
        table: TableName,
        /// Primary key.
        pk: Vec<Value>,
    },
    /// The row exists and its column equals `value` (`Null` checks for null).
    ColumnEquals {
        /// Namespace.
        ns: Namespace,
        /// Table.
        table: TableName,
        /// Primary key.
        pk: Vec<Value>,
        /// Column.
        column: ColumnName,
        /// Expected value.
        value: Value,
    },
    /// The row exists, its column is not null, and `column OP value` holds.
    ColumnCompare {
        /// Namespace.
        ns: Namespace,
        /// Table.
        table: TableName,
        /// Primary key.
        pk: Vec<Value>,
        /// Column.
        column: ColumnName,
        /// Operator.
        op: CompareOp,
        /// Right-hand side (non-null, of the column's type).
        value: Value,
    },
    /// The row's version (`Lsn::ZERO` if absent) equals `lsn`.
    RowVersionEquals {
        /// Namespace.
        ns: Namespace,
        /// Table.
        table: TableName,
        /// Primary key.
        pk: Vec<Value>,
        /// Expected version.
        lsn: Lsn,
    },
    /// Every inner assertion holds (true when empty).
    All(Vec<Assertion>),
    /// At least one inner assertion holds (false when empty).
    Any(Vec<Assertion>),
    /// The inner assertion does not hold.
    Not(Box<Assertion>),
}

/// The result of evaluating a well-formed assertion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The assertion holds.
    Holds,
    /// It does not; a short description of what was found.
    Fails(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_op_truth_table() {
        use CompareOp::*;
        use Ordering::*;
        let table = [
            (Eq, [false, true, false]),
            (Ne, [true, false, true]),
            (Lt, [true, false, false]),
            (Le, [true, true, false]),
            (Gt, [false, false, true]),
            (Ge, [false, true, true]),
        ];
        for (op, expect) in table {
            for (ord, e) in [Less, Equal, Greater].into_iter().zip(expect) {
                assert_eq!(op.holds(ord), e, "{op} {ord:?}");
            }
        }
    }
}
