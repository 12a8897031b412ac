//! `aedb capture`: forensic capture of a data directory no instance has open, and
//! verification of a capture's authenticated listing.

use std::path::PathBuf;

use aedb::backup::{self, CaptureReport};
use serde_json::json;

use crate::ops::{backup_err, bar, config, emit};
use crate::{CliError, Global};

/// Arguments of `capture`.
#[derive(clap::Args)]
pub struct CaptureArgs {
    /// The data directory to capture (must not be open: a running instance captures
    /// itself with `capture_as`).
    #[arg(long, required_unless_present = "verify", requires = "out")]
    data_dir: Option<PathBuf>,
    /// Where to write the capture (created; must be empty). It has a data directory's
    /// layout, so `aedb verify` and `aedb check invariants` run on it.
    #[arg(long, requires = "data_dir")]
    out: Option<PathBuf>,
    /// Instead of capturing: verify the capture in this directory (listing MAC, every
    /// file's length and SHA-256, no added files); exit 1 on any mismatch.
    #[arg(long, value_name = "CAPTURE_DIR", conflicts_with_all = ["data_dir", "out"])]
    verify: Option<PathBuf>,
}

fn print(global: &Global, what: &str, dir: &std::path::Path, listing: &aedb::BackupManifest) {
    emit(
        global,
        json!({
            "ok": true,
            "dir": dir,
            "database_id": listing.database_id.to_string(),
            "capture_id": listing.backup_id_hex(),
            "checkpoint_lsn": listing.first_lsn.get(),
            "synced_lsn": listing.last_lsn.get(),
            "files": listing.files.iter().map(|f| json!({
                "kind": match f.kind {
                    backup::BackupFileKind::Manifest => "manifest",
                    backup::BackupFileKind::Checkpoint => "checkpoint",
                    backup::BackupFileKind::WalSegment => "wal",
                    backup::BackupFileKind::Run { .. } => "run",
                    // Only incremental backups hold tails; a capture never does.
                    backup::BackupFileKind::WalTail { .. } => "wal-tail",
                },
                "name": f.name,
                "len": f.len,
                "sha256": hex::encode(f.sha256),
            })).collect::<Vec<_>>(),
        }),
        || {
            let mut out = format!(
                "{what} {} (database {}, checkpoint lsn {}, wal through lsn {}):",
                dir.display(),
                listing.database_id,
                listing.first_lsn,
                listing.last_lsn
            );
            for f in &listing.files {
                let path = if f.kind.dir().is_empty() {
                    f.name.clone()
                } else {
                    format!("{}/{}", f.kind.dir(), f.name)
                };
                out.push_str(&format!(
                    "\n  {path}  {} bytes  sha256 {}",
                    f.len,
                    hex::encode(f.sha256)
                ));
            }
            out
        },
    );
}

/// Runs `capture`.
pub fn run(args: CaptureArgs, global: &Global) -> Result<(), CliError> {
    if let Some(dir) = args.verify {
        let listing =
            backup::verify_capture(&dir, &config(global, Some(&dir))?).map_err(backup_err)?;
        print(global, "verified capture", &dir, &listing);
        return Ok(());
    }
    let (Some(data_dir), Some(out)) = (args.data_dir, args.out) else {
        return Err(CliError::Usage(
            "capture needs --data-dir and --out (or --verify)".into(),
        ));
    };
    let cfg = config(global, Some(&data_dir))?;
    let bar = bar(global, "capture");
    let report: CaptureReport = backup::capture_offline(&data_dir, &out, &cfg, &mut |d, t| {
        bar.set_length(t);
        bar.set_position(d);
    })
    .map_err(|e| match e {
        e @ aedb::Error::Offline(aedb::OfflineError::Locked(_)) => CliError::Failed(format!(
            "{e} (a running instance captures itself: AedbInstance::capture_as)"
        )),
        other => backup_err(other),
    })?;
    bar.finish_and_clear();
    print(global, "captured", &report.dir, &report.listing);
    Ok(())
}
