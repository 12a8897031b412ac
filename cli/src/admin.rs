//! Incident-response commands on a stopped data directory: `aedb freeze` and
//! `aedb unfreeze` (the security runbook's "freeze writes"). Each opens the directory
//! with the engine's public API (a secure database as `--caller`, a GlobalAdmin),
//! records or lifts the durable write freeze (audited), and closes it again.

use std::path::PathBuf;

use serde_json::json;

use crate::ops::{emit, open_admin};
use crate::{CliError, Global};

/// Arguments of `freeze`.
#[derive(clap::Args)]
pub struct FreezeArgs {
    /// The data directory (must not be open by another process).
    #[arg(long)]
    data_dir: PathBuf,
    /// Why writes are frozen (1 ..= 1024 bytes; stored and audited, so no secrets).
    #[arg(long)]
    reason: String,
    /// For a secure database: the caller that freezes (needs `GlobalAdmin`; audited).
    #[arg(long, value_name = "NAME")]
    caller: Option<String>,
}

/// Arguments of `unfreeze`.
#[derive(clap::Args)]
pub struct UnfreezeArgs {
    /// The data directory (must not be open by another process).
    #[arg(long)]
    data_dir: PathBuf,
    /// For a secure database: the caller that lifts the freeze (needs `GlobalAdmin`).
    #[arg(long, value_name = "NAME")]
    caller: Option<String>,
}

/// Runs `freeze`: every commit is refused (`commit.frozen`) from now on, across
/// restarts, until `unfreeze`.
pub fn freeze(args: FreezeArgs, global: &Global) -> Result<(), CliError> {
    let (db, caller) = open_admin(&args.data_dir, args.caller.as_deref(), global)?;
    let result = db.freeze_writes_as(&caller, &args.reason);
    db.shutdown()?;
    let lsn = result?;
    emit(
        global,
        json!({"ok": true, "frozen": true, "lsn": lsn.get(), "by": caller.as_str(), "reason": args.reason}),
        || format!("writes frozen at lsn {lsn} by {caller}: {}", args.reason),
    );
    Ok(())
}

/// Runs `unfreeze`.
pub fn unfreeze(args: UnfreezeArgs, global: &Global) -> Result<(), CliError> {
    let (db, caller) = open_admin(&args.data_dir, args.caller.as_deref(), global)?;
    let was = db.write_freeze();
    let result = db.unfreeze_writes_as(&caller);
    db.shutdown()?;
    let lsn = result?;
    emit(
        global,
        json!({"ok": true, "frozen": false, "lsn": lsn.get(), "was_frozen": was.is_some()}),
        || match was {
            Some(_) => format!("writes unfrozen at lsn {lsn} by {caller}"),
            None => "writes were not frozen".to_owned(),
        },
    );
    Ok(())
}

/// Arguments of `compact` and `reseal`.
#[derive(clap::Args)]
pub struct StorageArgs {
    /// The data directory (must not be open by another process).
    #[arg(long)]
    data_dir: PathBuf,
    /// For a secure database: the caller (needs `GlobalAdmin`; audited).
    #[arg(long, value_name = "NAME")]
    caller: Option<String>,
}

/// Runs `compact`: merges run files until no level is over its trigger.
pub fn compact(args: StorageArgs, global: &Global) -> Result<(), CliError> {
    let (db, caller) = open_admin(&args.data_dir, args.caller.as_deref(), global)?;
    let result = db.compact_now_as(&caller);
    db.shutdown()?;
    report(global, "compacted", result?);
    Ok(())
}

/// Runs `reseal`: re-seals every run file under the current key epoch, so older
/// epochs can be retired.
pub fn reseal(args: StorageArgs, global: &Global) -> Result<(), CliError> {
    let (db, caller) = open_admin(&args.data_dir, args.caller.as_deref(), global)?;
    let result = db.reseal_now_as(&caller);
    db.shutdown()?;
    report(global, "re-sealed", result?);
    Ok(())
}

fn report(global: &Global, what: &str, r: aedb::CompactionReport) {
    emit(
        global,
        json!({
            "ok": true,
            "compactions": r.compactions,
            "bytes_read": r.bytes_read,
            "bytes_written": r.bytes_written,
            "dropped_versions": r.dropped_versions,
            "dropped_tombstones": r.dropped_tombstones,
            "expired_idempotency_records": r.expired_idempotency_records,
            "dropped_table_rows": r.dropped_table_rows,
            "moved_runs": r.moved_runs,
            "dropped_runs": r.dropped_runs,
            "subcompactions": r.subcompactions,
        }),
        || {
            format!(
                "{what}: {} merges ({} key ranges on threads of their own), {} runs moved, {} runs removed unread (dropped tables, expired idempotency records), {} bytes read, {} bytes written, {} hidden versions, {} tombstones, {} expired idempotency records and {} rows of dropped tables dropped",
                r.compactions,
                r.subcompactions,
                r.moved_runs,
                r.dropped_runs,
                r.bytes_read,
                r.bytes_written,
                r.dropped_versions,
                r.dropped_tombstones,
                r.expired_idempotency_records,
                r.dropped_table_rows
            )
        },
    );
}
