//! Audit exports: the JSON-lines file `export_audit_as` and `aedb audit export` write
//! (one row per line, both HMAC chains), and reading, parsing and verifying one from the
//! file alone plus the audit keys.

use std::io::Write;
use std::path::Path;

use aedb_actors::audit::{self, AuditRow, AuditTable};
use aedb_types::DatabaseId;

use crate::error::{AuditExportError, Error, SecurityError};

/// What [`AedbInstance::export_audit_as`](crate::AedbInstance::export_audit_as) wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditExport {
    /// Rows written per table.
    pub rows: Vec<(String, u64)>,
    /// Chain head MAC per table (hex), to keep beside the export.
    pub heads: Vec<(String, String)>,
}

/// Writes `rows` of both tables as JSON lines (one object per row, fields in a fixed
/// order, `mac` in hex) to `out`.
pub(crate) fn write_jsonl(
    database: DatabaseId,
    rows: &[AuditRow],
    out: &mut impl Write,
) -> std::io::Result<()> {
    for r in rows {
        let line = serde_json::json!({
            "database_id": database.to_string(),
            "table": r.table.name(),
            "seq": r.seq,
            "at_micros": r.at.as_micros(),
            "key_id": r.key_id,
            "caller": r.caller,
            "kind": r.kind,
            "subject": r.subject,
            "detail": r.detail,
            "mac": hex::encode(r.mac),
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Writes `rows` (both tables, verified) to a new file `path` as JSON lines, fsynced;
/// an existing file is refused.
pub(crate) fn export_rows(
    fs: &dyn aedb_fs::FileSystem,
    database: DatabaseId,
    rows: &[AuditRow],
    counts: &[(AuditTable, u64)],
    path: &Path,
) -> Result<AuditExport, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs.open(path, aedb_fs::OpenMode::CreateNew).map_err(io)?;
    let mut out = std::io::BufWriter::new(aedb_fs::FileWriter::new(file.clone(), 0));
    write_jsonl(database, rows, &mut out).map_err(io)?;
    std::io::Write::flush(&mut out).map_err(io)?;
    file.sync_all().map_err(io)?;
    let head = |t: AuditTable| {
        rows.iter()
            .rfind(|r| r.table == t)
            .map_or_else(|| hex::encode([0u8; 32]), |r| hex::encode(r.mac))
    };
    Ok(AuditExport {
        rows: counts
            .iter()
            .map(|(t, n)| (t.name().to_owned(), *n))
            .collect(),
        heads: AuditTable::ALL
            .iter()
            .map(|t| (t.name().to_owned(), head(*t)))
            .collect(),
    })
}

/// Verifies a JSON-lines audit export from the file alone plus the keys of `config`
/// (the database id is in every line): both chains, in order. Returns the database
/// and the row count per table.
pub fn verify_audit_export(
    path: &Path,
    config: &crate::AedbConfig,
) -> Result<(DatabaseId, Vec<(AuditTable, u64)>), Error> {
    let (database, rows) = read_export(&*config.fs, path)?;
    let keyring = config.keyring().map_err(SecurityError::AuditKey)?;
    let counts = verify_audit_rows(&rows, |id| keyring.audit_key_for(database, id).ok())?;
    Ok((database, counts))
}

/// Reads a JSON-lines audit export back into rows (both tables, file order).
pub fn read_audit_export(path: &Path) -> Result<Vec<AuditRow>, Error> {
    Ok(read_export(&aedb_fs::RealFs, path).map(|(_, rows)| rows)?)
}

fn read_export(
    fs: &dyn aedb_fs::FileSystem,
    path: &Path,
) -> Result<(DatabaseId, Vec<AuditRow>), AuditExportError> {
    let io = |source| AuditExportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = aedb_fs::read_file(fs, path).map_err(io)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    parse_export(&text)
}

/// Parses the text of a JSON-lines audit export (what [`read_audit_export`] reads)
/// into its database id and rows, checking every field's type and size; never panics.
pub fn parse_audit_export(text: &str) -> Result<(DatabaseId, Vec<AuditRow>), Error> {
    Ok(parse_export(text)?)
}

fn parse_export(text: &str) -> Result<(DatabaseId, Vec<AuditRow>), AuditExportError> {
    let mut rows = Vec::new();
    let mut database = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: &'static str| AuditExportError::Malformed {
            line: i + 1,
            reason,
        };
        let v: serde_json::Value = serde_json::from_str(line).map_err(|_| bad("not JSON"))?;
        let text = |k: &'static str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_owned)
                .ok_or_else(|| bad(missing_text_field(k)))
        };
        let id: [u8; 16] = hex::decode(text("database_id")?)
            .ok()
            .and_then(|m| m.try_into().ok())
            .ok_or_else(|| bad("database_id is not 16 hex bytes"))?;
        let id = DatabaseId::from_bytes(id);
        if *database.get_or_insert(id) != id {
            return Err(bad("rows of two databases"));
        }
        let table = AuditTable::from_name(&text("table")?).ok_or_else(|| bad("unknown table"))?;
        let mac: [u8; 32] = hex::decode(text("mac")?)
            .ok()
            .and_then(|m| m.try_into().ok())
            .ok_or_else(|| bad("mac is not 32 hex bytes"))?;
        rows.push(AuditRow {
            table,
            seq: v
                .get("seq")
                .and_then(|x| x.as_u64())
                .ok_or_else(|| bad("missing seq"))?,
            at: aedb_model::Timestamp::from_micros(
                v.get("at_micros")
                    .and_then(|x| x.as_i64())
                    .ok_or_else(|| bad("missing at_micros"))?,
            ),
            key_id: text("key_id")?,
            caller: text("caller")?,
            kind: text("kind")?,
            subject: text("subject")?,
            detail: text("detail")?,
            mac,
        });
    }
    Ok((database.unwrap_or_default(), rows))
}

/// Verifies both tables' chains in an export (rows grouped by table, in order) with
/// the audit keys `key_for(key_id)` returns; returns the row count per table.
pub fn verify_audit_rows(
    rows: &[AuditRow],
    mut key_for: impl FnMut(&str) -> Option<aedb_keys::SecretKey>,
) -> Result<Vec<(AuditTable, u64)>, Error> {
    let mut out = Vec::new();
    for table in AuditTable::ALL {
        let of_table: Vec<AuditRow> = rows.iter().filter(|r| r.table == table).cloned().collect();
        audit::verify_chain(&of_table, &mut key_for).map_err(AuditExportError::from)?;
        out.push((table, of_table.len() as u64));
    }
    Ok(out)
}

/// The audit-chain key for rows whose `key_id` names a master of `config`'s manifest
/// provider: what verifying an export needs besides the file (the CLI takes the key
/// from `AEDB_MANIFEST_KEY` or a key file).
pub fn audit_key_for(
    config: &crate::AedbConfig,
    database: DatabaseId,
    key_id: &str,
) -> Result<aedb_keys::SecretKey, Error> {
    Ok(config
        .keyring()
        .and_then(|k| k.audit_key_for(database, key_id))
        .map_err(SecurityError::AuditKey)?)
}

/// The description of a missing text field of an audit export line.
fn missing_text_field(field: &str) -> &'static str {
    match field {
        "database_id" => "missing text field database_id",
        "table" => "missing text field table",
        "mac" => "missing text field mac",
        "key_id" => "missing text field key_id",
        "caller" => "missing text field caller",
        "kind" => "missing text field kind",
        "subject" => "missing text field subject",
        "detail" => "missing text field detail",
        _ => "missing text field",
    }
}
