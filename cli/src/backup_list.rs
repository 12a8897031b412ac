//! `aedb backup list --dir BACKUPS`: the backup chains in a directory of backups (a
//! backup policy's `chain-*/` or backups side by side), each backup with its age.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::ops::{backup_err, config, emit};
use crate::{CliError, Global};

/// Arguments of `backup list`.
#[derive(clap::Args)]
pub struct ListArgs {
    /// The data directory whose manifest records the backups (`BackupTaken`).
    #[arg(long, required_unless_present = "dir", conflicts_with = "dir")]
    pub data_dir: Option<PathBuf>,
    /// A directory of backups (for example a backup policy's): list its chains, each
    /// backup authenticated, with its kind, LSN range and age.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Lists the chains under `dir`.
pub fn run(dir: &Path, global: &Global) -> Result<(), CliError> {
    let chains = aedb::backup::list_backups(dir, &config(global, None)?).map_err(backup_err)?;
    emit(
        global,
        json!({"chains": chains.iter().map(|c| json!({
            "backups": c.backups.iter().map(|b| json!({
                "dir": b.dir,
                "kind": b.manifest.kind.as_str(),
                "backup_id": b.manifest.backup_id_hex(),
                "first_lsn": b.manifest.first_lsn.get(),
                "last_lsn": b.manifest.last_lsn.get(),
                "created_at_unix_ms": b.manifest.created_at_unix_ms,
                "age_secs": b.age_secs,
                "manifest_sha256": hex::encode(b.manifest_sha256),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>()}),
        || {
            if chains.is_empty() {
                return format!("no backups under {}", dir.display());
            }
            let mut out = String::new();
            for (i, c) in chains.iter().enumerate() {
                let last = c.backups.last().map_or(0, |b| b.manifest.last_lsn.get());
                out.push_str(&format!(
                    "chain {} ({} backups, restorable to lsn {last}):\n",
                    i + 1,
                    c.backups.len()
                ));
                for b in &c.backups {
                    out.push_str(&format!(
                        "  {:<11} {}  lsn {}..={}  age {} s\n",
                        b.manifest.kind.as_str(),
                        b.dir.display(),
                        b.manifest.first_lsn,
                        b.manifest.last_lsn,
                        b.age_secs
                    ));
                }
            }
            out.trim_end().to_owned()
        },
    );
    Ok(())
}
