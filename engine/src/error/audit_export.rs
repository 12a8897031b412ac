//! Why an audit export does not read or verify: [`AuditExportError`].

use aedb_actors::audit;

/// Why an audit export does not read or verify (the
/// [`Error::AuditExport`](crate::Error::AuditExport) kind).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditExportError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line is not an audit row.
    #[error("line {line}: not an audit row: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// Why (a fixed description, naming the field at fault).
        reason: &'static str,
    },
    /// The chain of a table does not verify.
    #[error(transparent)]
    Chain(#[from] audit::AuditChainError),
}
