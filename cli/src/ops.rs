//! The operational commands: check, verify, backup, restore, inspect.

use std::path::{Path, PathBuf};

use aedb::backup::{self, BackupReport, RestoreReport};
use aedb::offline::{self, CheckStatus};
use aedb::parity::{content_digest, first_difference};
use aedb::{AedbConfig, AedbInstance, Lsn, RestoreOptions, State};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::{CliError, Global, keys};

/// `aedb check ...`
#[derive(clap::Subcommand)]
pub enum CheckCmd {
    /// Verify a data directory offline and read-only: manifest HMAC chain, checkpoint
    /// and WAL authentication, LSN monotonicity, rows against their schemas, key epochs,
    /// idempotency records. Prints each check with pass/fail; exit 1 if any fails.
    Invariants(DataDirArg),
    /// Compare the logical content of two data directories (or one against a backup
    /// chain) by hash and report the first difference; exit 1 if they differ.
    Parity(ParityArgs),
}

/// A data directory.
#[derive(clap::Args)]
pub struct DataDirArg {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
}

/// Arguments of `check parity`.
#[derive(clap::Args)]
pub struct ParityArgs {
    /// Data directories to compare: give two, or one with --backup.
    #[arg(long, required = true, num_args = 1)]
    data_dir: Vec<PathBuf>,
    /// A backup chain (full first, then incrementals in order) to compare against.
    #[arg(long)]
    backup: Vec<PathBuf>,
}

/// `aedb backup ...`
#[derive(clap::Subcommand)]
pub enum BackupCmd {
    /// Take a full backup (checkpoint + WAL) of a data directory into an empty directory.
    Full(FullArgs),
    /// Take an incremental backup (the WAL since the parent backup's end).
    Incremental(IncrementalArgs),
    /// List the backups recorded in a data directory's manifest (--data-dir), or the
    /// backup chains in a directory of backups with each backup's age (--dir).
    List(crate::backup_list::ListArgs),
    /// Verify a backup chain strictly (manifest HMACs, parent links, file hashes, WAL
    /// chain and sealed-batch tags) without restoring it.
    Verify(ChainArg),
}

/// Arguments of `backup full`.
#[derive(clap::Args)]
pub struct FullArgs {
    /// The data directory (must not be open by another process).
    #[arg(long)]
    data_dir: PathBuf,
    /// Where to write the backup (created; must be empty).
    #[arg(long)]
    out: PathBuf,
    /// For a secure database: the caller the backup runs as (needs `GlobalAdmin`; the
    /// backup is checked and audited). Not needed for an open database.
    #[arg(long, value_name = "NAME")]
    caller: Option<String>,
}

/// Arguments of `backup incremental`.
#[derive(clap::Args)]
pub struct IncrementalArgs {
    /// The data directory (must not be open by another process).
    #[arg(long)]
    data_dir: PathBuf,
    /// The parent backup (the newest of the chain).
    #[arg(long)]
    parent: PathBuf,
    /// Where to write the backup (created; must be empty).
    #[arg(long)]
    out: PathBuf,
    /// For a secure database: the caller the backup runs as (needs `GlobalAdmin`; the
    /// backup is checked and audited). Not needed for an open database.
    #[arg(long, value_name = "NAME")]
    caller: Option<String>,
}

/// A backup chain.
#[derive(clap::Args)]
pub struct ChainArg {
    /// The backups, full first, then each incremental in order (repeat the flag).
    #[arg(long, required = true)]
    backup: Vec<PathBuf>,
}

/// Arguments of `restore`.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backups, full first, then each incremental in order (repeat the flag).
    #[arg(long, required = true)]
    backup: Vec<PathBuf>,
    /// The directory to restore into (created; must be empty).
    #[arg(long)]
    target: PathBuf,
    /// Verify everything (every HMAC, link, file hash, the WAL chain and every sealed
    /// batch) and restore nothing on any failure. Without it, the WAL is read leniently
    /// and the restore stops at the last frame that verifies.
    #[arg(long)]
    strict: bool,
    /// Restore up to this LSN instead of the chain's end.
    #[arg(long)]
    target_lsn: Option<u64>,
}

pub(crate) fn bar(global: &Global, what: &str) -> ProgressBar {
    if global.json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

pub(crate) fn emit(global: &Global, value: Value, text: impl FnOnce() -> String) {
    if global.json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

/// The configuration for a command on `data_dir` (whose `<data-dir>.key` is the
/// fallback key file), or on no data directory (`None`: backups, exports).
pub(crate) fn config(global: &Global, data_dir: Option<&Path>) -> Result<AedbConfig, CliError> {
    if let Some(config) = global.hsm.config()? {
        return Ok(config);
    }
    keys::config(global.key_file.as_deref(), data_dir)
}

fn offline_err(e: aedb::Error) -> CliError {
    match e {
        aedb::Error::Offline(offline::OfflineError::Integrity(s)) => {
            CliError::Integrity(s.to_string())
        }
        other => CliError::Failed(other.to_string()),
    }
}

/// Runs `check invariants` / `check parity`.
pub fn check(cmd: CheckCmd, global: &Global) -> Result<(), CliError> {
    match cmd {
        CheckCmd::Invariants(args) => {
            let checks =
                offline::check_invariants(&args.data_dir, &config(global, Some(&args.data_dir))?)
                    .map_err(offline_err)?;
            let failed = checks
                .iter()
                .filter(|c| c.status == CheckStatus::Fail)
                .count();
            emit(
                global,
                json!({
                    "data_dir": args.data_dir,
                    "ok": failed == 0,
                    "checks": checks.iter().map(|c| json!({
                        "name": c.name, "status": c.status.as_str(), "detail": c.detail,
                    })).collect::<Vec<_>>(),
                }),
                || {
                    let mut out = String::new();
                    for c in &checks {
                        out.push_str(&format!(
                            "[{}] {}: {}\n",
                            c.status.as_str().to_uppercase(),
                            c.name,
                            c.detail
                        ));
                    }
                    out.push_str(&if failed == 0 {
                        format!("invariants hold for {}", args.data_dir.display())
                    } else {
                        format!("{failed} invariant check(s) FAILED")
                    });
                    out
                },
            );
            if failed > 0 {
                return Err(CliError::Reported(format!(
                    "{failed} invariant check(s) failed"
                )));
            }
            Ok(())
        }
        CheckCmd::Parity(args) => parity(args, global),
    }
}

fn state_of_dir(dir: &Path, config: &AedbConfig) -> Result<State, CliError> {
    Ok(offline::verify_data_dir(dir, config)
        .map_err(offline_err)?
        .state)
}

fn parity(args: ParityArgs, global: &Global) -> Result<(), CliError> {
    let config = config(global, args.data_dir.first().map(PathBuf::as_path))?;
    let (a_name, a, b_name, b) = match (args.data_dir.as_slice(), args.backup.is_empty()) {
        ([a, b], true) => (
            a.display().to_string(),
            state_of_dir(a, &config)?,
            b.display().to_string(),
            state_of_dir(b, &config)?,
        ),
        ([a], false) => {
            let bar = bar(global, "verifying backup chain");
            let (_, state) = backup::chain_state(&args.backup, &config, true, None, &mut |d, t| {
                bar.set_length(t);
                bar.set_position(d);
            })
            .map_err(backup_err)?;
            bar.finish_and_clear();
            (
                a.display().to_string(),
                state_of_dir(a, &config)?,
                "backup chain".to_owned(),
                state,
            )
        }
        _ => {
            return Err(CliError::Usage(
                "give two --data-dir, or one --data-dir and a --backup chain".into(),
            ));
        }
    };
    let digest = |s: &State| content_digest(s).map_err(aedb::Error::from);
    let (da, db) = (digest(&a)?, digest(&b)?);
    let difference = first_difference(&a, &b);
    emit(
        global,
        json!({
            "equal": difference.is_none(),
            "a": {"source": a_name, "lsn": a.lsn().get(), "sha256": hex::encode(da)},
            "b": {"source": b_name, "lsn": b.lsn().get(), "sha256": hex::encode(db)},
            "first_difference": difference,
        }),
        || {
            format!(
                "{a_name}: lsn {} sha256 {}\n{b_name}: lsn {} sha256 {}\n{}",
                a.lsn(),
                hex::encode(da),
                b.lsn(),
                hex::encode(db),
                match &difference {
                    None => "parity: EQUAL".to_owned(),
                    Some(d) => format!("parity: DIFFERENT: {d}"),
                }
            )
        },
    );
    match difference {
        None => Ok(()),
        Some(d) => Err(CliError::Reported(format!("contents differ: {d}"))),
    }
}

/// Runs `verify`.
/// Arguments of `verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// Exit 0 even when recovery routed around damage (a fallback to an older
    /// checkpoint, a torn tail cut, a file skipped): the events are still listed.
    /// Without it such an integrity alert fails the command (exit 1).
    #[arg(long)]
    allow_fallback: bool,
}

/// The integrity alerts of a verified directory, as JSON and as text lines.
fn event_lists(v: &offline::VerifiedDir) -> (Vec<Value>, Vec<String>) {
    let mut json = Vec::new();
    let mut text = Vec::new();
    for e in v.recorded_events() {
        json.push(json!({
            "source": "manifest", "event": e.event.name(), "lsn": e.lsn.get(),
            "at_unix_ms": e.at_unix_ms, "detail": e.detail,
        }));
        text.push(format!(
            "  recorded at {} ms: {} at lsn {}: {}",
            e.at_unix_ms, e.event, e.lsn, e.detail
        ));
    }
    for e in &v.dry_run_events {
        json.push(json!({
            "source": "dry_run", "event": e.kind.name(), "lsn": e.lsn.get(),
            "detail": e.detail,
        }));
        text.push(format!("  found by this dry run: {e}"));
    }
    (json, text)
}

pub fn verify(args: VerifyArgs, global: &Global) -> Result<(), CliError> {
    let v = offline::verify_data_dir(&args.data_dir, &config(global, Some(&args.data_dir))?)
        .map_err(offline_err)?;
    let (events, event_lines) = event_lists(&v);
    let alert = v.routed_around_damage();
    let ok = !alert || args.allow_fallback;
    let digest = content_digest(&v.state).map_err(aedb::Error::from)?;
    emit(
        global,
        json!({
            "ok": ok,
            "integrity_events": events,
            "allow_fallback": args.allow_fallback,
            "database_id": v.database_id.to_string(),
            "manifest_records": v.manifest.records.len(),
            "checkpoint_lsn": v.checkpoint_lsn.get(),
            "lsn": v.state.lsn().get(),
            "wal_segments": v.wal.segments.len(),
            "wal_frames": v.wal.frames_replayed,
            "torn_tail_bytes": v.wal.torn_tail_bytes(),
            "sha256": hex::encode(digest),
        }),
        || {
            format!(
                "verified {}: database {}, checkpoint lsn {}, recovers to lsn {} ({} WAL segments, torn tail {} bytes), content sha256 {}",
                args.data_dir.display(),
                v.database_id,
                v.checkpoint_lsn,
                v.state.lsn(),
                v.wal.segments.len(),
                v.wal.torn_tail_bytes(),
                hex::encode(digest)
            ) + &if event_lines.is_empty() {
                String::new()
            } else {
                format!(
                    "\nINTEGRITY ALERT: recovery routed around damage ({} events{}):\n{}",
                    event_lines.len(),
                    if args.allow_fallback {
                        ", allowed by --allow-fallback"
                    } else {
                        "; pass --allow-fallback to accept"
                    },
                    event_lines.join("\n")
                )
            }
        },
    );
    if ok {
        Ok(())
    } else {
        Err(CliError::Reported(format!(
            "{}: recovery routed around damage ({} integrity events listed above); \
             rerun with --allow-fallback to accept",
            args.data_dir.display(),
            event_lines.len()
        )))
    }
}

pub(crate) fn backup_err(e: aedb::Error) -> CliError {
    use backup::BackupError as B;
    match e {
        aedb::Error::Backup(
            B::Io { .. }
            | B::SegmentHeader { .. }
            | B::Engine(_)
            | B::Write(_)
            | B::NonEmptyBackupDir(_)
            | B::NonEmptyTarget(_),
        )
        | aedb::Error::Checkpoint(_) => CliError::Failed(e.to_string()),
        other => CliError::Integrity(other.to_string()),
    }
}

fn report_json(r: &BackupReport) -> Value {
    json!({
        "dir": r.dir,
        "kind": r.manifest.kind.as_str(),
        "backup_id": r.manifest.backup_id_hex(),
        "database_id": r.manifest.database_id.to_string(),
        "first_lsn": r.manifest.first_lsn.get(),
        "last_lsn": r.manifest.last_lsn.get(),
        "files": r.manifest.files.len(),
        "bytes": r.bytes,
        "linked_run_files": r.linked_files,
        "linked_bytes": r.linked_bytes,
        "copied_run_files": r.copied_run_files,
        "link_fallback": r.link_fallback,
        "runs_lsn": r.manifest.base_lsn().map(|l| l.get()),
        "inherited_runs": r.manifest.runs.as_ref().map_or(0, |s| s.inherited.len()),
        "manifest_sha256": hex::encode(r.manifest_sha256),
        "parent_sha256": r.manifest.parent_sha256.map(hex::encode),
    })
}

/// Opens a stopped data directory for an administrative command (backup, freeze):
/// plainly, or — for a secure database — as `caller` (who needs `GlobalAdmin`; the
/// command is then checked and audited).
pub(crate) fn open_admin(
    dir: &Path,
    caller: Option<&str>,
    global: &Global,
) -> Result<(AedbInstance, aedb::CallerId), CliError> {
    let caller = caller
        .map(aedb::CallerId::new)
        .transpose()
        .map_err(|e| CliError::Usage(format!("--caller: {e}")))?;
    match AedbInstance::open(dir, config(global, Some(dir))?) {
        Ok(db) => Ok((db, caller.unwrap_or_else(operator))),
        Err(aedb::Error::Open(aedb::OpenError::SecureDatabase { .. })) => {
            let caller = caller.ok_or_else(|| {
                CliError::Usage(format!(
                    "{} is a secure database: pass --caller NAME (a GlobalAdmin)",
                    dir.display()
                ))
            })?;
            let secure = aedb::SecureConfig::new(caller.clone());
            Ok((
                AedbInstance::open_secure(dir, config(global, Some(dir))?, secure)?,
                caller,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The caller named in backups of open (non-secure) databases.
fn operator() -> aedb::CallerId {
    match aedb::CallerId::new("aedb-cli") {
        Ok(c) => c,
        Err(e) => unreachable!("a valid literal: {e}"),
    }
}

/// Runs one backup of `db` with a progress bar, shuts `db` down and prints the report.
fn run_backup(
    global: &Global,
    db: AedbInstance,
    what: &str,
    take: impl FnOnce(&AedbInstance, backup::Progress<'_>) -> Result<BackupReport, aedb::Error>,
) -> Result<(), CliError> {
    let bar = bar(global, what);
    let report = take(&db, &mut |d, t| {
        bar.set_length(t);
        bar.set_position(d);
    })
    .map_err(backup_err)?;
    bar.finish_and_clear();
    db.shutdown()?;
    print_backup(global, &report);
    Ok(())
}

/// Runs `backup ...`.
pub fn backup(cmd: BackupCmd, global: &Global) -> Result<(), CliError> {
    match cmd {
        BackupCmd::Full(args) => {
            let (db, caller) = open_admin(&args.data_dir, args.caller.as_deref(), global)?;
            run_backup(global, db, "full backup", |db, progress| {
                db.backup_full_as(&caller, &args.out, progress)
            })
        }
        BackupCmd::Incremental(args) => {
            let (db, caller) = open_admin(&args.data_dir, args.caller.as_deref(), global)?;
            run_backup(global, db, "incremental backup", |db, progress| {
                db.backup_incremental_as(&caller, &args.out, &args.parent, progress)
            })
        }
        BackupCmd::List(crate::backup_list::ListArgs {
            dir: Some(dir),
            data_dir: None,
        }) => crate::backup_list::run(&dir, global),
        BackupCmd::List(crate::backup_list::ListArgs { data_dir, .. }) => {
            let args = DataDirArg {
                data_dir: data_dir.ok_or_else(|| {
                    CliError::Usage("backup list needs --data-dir or --dir".into())
                })?,
            };
            let i = offline::inspect(&args.data_dir, &config(global, Some(&args.data_dir))?)
                .map_err(offline_err)?;
            let backups = i.manifest.live.backups();
            emit(
                global,
                json!({"backups": backups.iter().map(|b| json!({
                    "backup_id": b.backup_id,
                    "first_lsn": b.first_lsn.get(),
                    "last_lsn": b.last_lsn.get(),
                    "manifest_sha256": hex::encode(b.manifest_sha256),
                    "at_unix_ms": b.at_unix_ms,
                })).collect::<Vec<_>>()}),
                || {
                    if backups.is_empty() {
                        return "no backups recorded".to_owned();
                    }
                    backups
                        .iter()
                        .map(|b| {
                            format!(
                                "{}  lsn {}..={}  manifest sha256 {}  at {} ms",
                                b.backup_id,
                                b.first_lsn,
                                b.last_lsn,
                                hex::encode(b.manifest_sha256),
                                b.at_unix_ms
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
            Ok(())
        }
        BackupCmd::Verify(args) => {
            let bar = bar(global, "verifying backup chain");
            let report =
                backup::verify_backup_chain(&args.backup, &config(global, None)?, &mut |d, t| {
                    bar.set_length(t);
                    bar.set_position(d);
                })
                .map_err(backup_err)?;
            bar.finish_and_clear();
            print_restore(global, "backup chain verified", &report);
            Ok(())
        }
    }
}

fn print_backup(global: &Global, r: &BackupReport) {
    emit(global, report_json(r), || {
        let links = match &r.link_fallback {
            Some(why) => format!(", run files copied: cannot hard-link ({why})"),
            None if r.linked_files > 0 => format!(
                ", {} run files hard-linked ({} bytes not copied)",
                r.linked_files, r.linked_bytes
            ),
            None => String::new(),
        };
        format!(
            "{} backup {} of database {} in {}: lsn {}..={}, {} files, {} bytes{links}, manifest sha256 {}",
            r.manifest.kind.as_str(),
            r.manifest.backup_id_hex(),
            r.manifest.database_id,
            r.dir.display(),
            r.manifest.first_lsn,
            r.manifest.last_lsn,
            r.manifest.files.len(),
            r.bytes,
            hex::encode(r.manifest_sha256)
        )
    });
}

fn print_restore(global: &Global, what: &str, r: &RestoreReport) {
    emit(
        global,
        json!({
            "ok": true,
            "database_id": r.database_id.to_string(),
            "lsn": r.lsn.get(),
            "chain_last_lsn": r.chain_last_lsn.get(),
            "backups": r.backups,
            "bytes_verified": r.bytes_verified,
            "frames_replayed": r.frames_replayed,
        }),
        || {
            format!(
                "{what}: database {}, {} backups, lsn {} (chain ends at {}), {} WAL commits replayed, {} bytes verified",
                r.database_id,
                r.backups,
                r.lsn,
                r.chain_last_lsn,
                r.frames_replayed,
                r.bytes_verified
            )
        },
    );
}

/// Runs `restore`.
pub fn restore(args: RestoreArgs, global: &Global) -> Result<(), CliError> {
    let bar = bar(global, "restoring");
    let report = backup::restore_from_backup_chain(
        &args.backup,
        &args.target,
        RestoreOptions {
            config: config(global, None)?,
            strict: args.strict,
            target_lsn: args.target_lsn.map(Lsn::new),
        },
        &mut |d, t| {
            bar.set_length(t);
            bar.set_position(d);
        },
    )
    .map_err(backup_err)?;
    bar.finish_and_clear();
    print_restore(
        global,
        &format!("restored into {}", args.target.display()),
        &report,
    );
    Ok(())
}

/// Runs `inspect`.
pub fn inspect(args: DataDirArg, global: &Global) -> Result<(), CliError> {
    let i = offline::inspect(&args.data_dir, &config(global, Some(&args.data_dir))?)
        .map_err(offline_err)?;
    let live = &i.manifest.live;
    // The freeze is in the database's state: recovered read-only, best effort (a
    // directory that does not verify still inspects).
    let freeze = offline::verify_data_dir(&args.data_dir, &config(global, Some(&args.data_dir))?)
        .map(|v| aedb::write_freeze_of(&v.state));
    let freeze_json = match &freeze {
        Ok(Some(f)) => {
            json!({"frozen": true, "by": f.by, "reason": f.reason, "since_unix_millis": f.since_unix_millis})
        }
        Ok(None) => json!({"frozen": false}),
        Err(e) => json!({"frozen": null, "error": e.to_string()}),
    };
    let freeze_text = match &freeze {
        Ok(Some(f)) => format!(
            "write freeze: FROZEN by {} since {} ms after the epoch: {}",
            f.by, f.since_unix_millis, f.reason
        ),
        Ok(None) => "write freeze: not frozen".to_owned(),
        Err(e) => format!("write freeze: unknown (the state does not verify: {e})"),
    };
    let records: Vec<String> = i.manifest.records.iter().map(ToString::to_string).collect();
    let epochs: Vec<Value> = live
        .key_epochs()
        .iter()
        .map(|(e, info)| {
            json!({
                "epoch": e.get(),
                "master_key_id": info.master_key_id,
                "retired": live.is_epoch_retired(*e),
            })
        })
        .collect();
    let checkpoints: Vec<Value> = i
        .checkpoints
        .iter()
        .map(|c| json!({"path": c.path, "bytes": c.len}))
        .collect();
    let runs: Vec<Value> = live
        .runs()
        .values()
        .map(|r| {
            json!({
                "file_id": r.file_id,
                "file": aedb_checkpoint::run_file_name(r.file_id),
                "level": r.level,
                "first_key": hex::encode(&r.first_key),
                "last_key": hex::encode(&r.last_key),
                "min_lsn": r.min_lsn.get(),
                "max_lsn": r.max_lsn.get(),
                "epoch": r.epoch.get(),
                "entries": r.entries,
                "bytes": r.len,
                "sha256": hex::encode(r.sha256),
            })
        })
        .collect();
    let mut level_bytes = [0u64; aedb_manifest::MAX_LEVELS as usize];
    let mut level_runs = [0u64; aedb_manifest::MAX_LEVELS as usize];
    for r in live.runs().values() {
        level_bytes[usize::from(r.level)] += r.len;
        level_runs[usize::from(r.level)] += 1;
    }
    let levels: Vec<Value> = (0..level_bytes.len())
        .map(|l| json!({"level": l, "runs": level_runs[l], "bytes": level_bytes[l]}))
        .collect();
    let segments: Vec<Value> = i
        .segments
        .iter()
        .map(|(seq, f)| {
            json!({
                "seq": seq.get(), "path": f.path, "bytes": f.len,
                "sealed": live.segments().get(seq).map(|s| json!({
                    "first_lsn": s.first_lsn.get(), "last_lsn": s.last_lsn.get(),
                })),
            })
        })
        .collect();
    emit(
        global,
        json!({
            "database_id": i.manifest.database_id.to_string(),
            "manifest": {
                "records": records,
                "head_mac": hex::encode(i.manifest.head_mac),
                "bytes": i.manifest.valid_len,
            },
            "newest_checkpoint_lsn": live.newest_checkpoint().map(|(l, _)| l.get()),
            "checkpoints": checkpoints,
            "flushed_lsn": live.flushed_lsn().get(),
            "oldest_readable_lsn": live.floor().get(),
            "levels": levels,
            "runs": runs,
            "wal_segments": segments,
            "key_epochs": epochs,
            "backups": live.backups().len(),
            "write_freeze": freeze_json,
            "recovery_events": live.recovery_events().iter().map(|e| json!({
                "event": e.event.name(), "lsn": e.lsn.get(),
                "at_unix_ms": e.at_unix_ms, "detail": e.detail,
            })).collect::<Vec<_>>(),
        }),
        || {
            let mut out = format!(
                "database {}\nmanifest: {} records, {} bytes, head mac {}\n",
                i.manifest.database_id,
                records.len(),
                i.manifest.valid_len,
                hex::encode(i.manifest.head_mac)
            );
            for r in &records {
                out.push_str(&format!("  {r}\n"));
            }
            out.push_str("checkpoints:\n");
            for c in &i.checkpoints {
                out.push_str(&format!("  {} ({} bytes)\n", c.path.display(), c.len));
            }
            out.push_str(&format!(
                "LSM: flushed through lsn {}; history readable from lsn {}; runs per level {:?}, bytes per level {:?}\n",
                live.flushed_lsn(),
                live.floor(),
                level_runs,
                level_bytes
            ));
            for r in live.runs().values() {
                out.push_str(&format!(
                    "  L{} {} keys {}..{} lsn {}..={} epoch {} {} entries {} bytes sha256 {}\n",
                    r.level,
                    aedb_checkpoint::run_file_name(r.file_id),
                    hex::encode(&r.first_key),
                    hex::encode(&r.last_key),
                    r.min_lsn,
                    r.max_lsn,
                    r.epoch.get(),
                    r.entries,
                    r.len,
                    hex::encode(r.sha256)
                ));
            }
            out.push_str("WAL segments:\n");
            for (seq, f) in &i.segments {
                let state = live
                    .segments()
                    .get(seq)
                    .map_or("active or unrecorded".to_owned(), |s| {
                        format!("sealed, lsn {}..={}", s.first_lsn, s.last_lsn)
                    });
                out.push_str(&format!(
                    "  {} ({} bytes, {state})\n",
                    f.path.display(),
                    f.len
                ));
            }
            out.push_str("key epochs:\n");
            for (e, info) in live.key_epochs() {
                let retired = if live.is_epoch_retired(*e) {
                    " (retired)"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "  {} under {}{retired}\n",
                    e.get(),
                    info.master_key_id
                ));
            }
            if !live.recovery_events().is_empty() {
                out.push_str("recovery events (integrity alerts):\n");
                for e in live.recovery_events() {
                    out.push_str(&format!(
                        "  at {} ms: {} at lsn {}: {}\n",
                        e.at_unix_ms, e.event, e.lsn, e.detail
                    ));
                }
            }
            out.push_str(&format!(
                "heads: newest checkpoint lsn {}, {} backups recorded",
                live.newest_checkpoint()
                    .map_or("none".to_owned(), |(l, _)| l.to_string()),
                live.backups().len()
            ));
            out.push('\n');
            out.push_str(&freeze_text);
            out
        },
    );
    Ok(())
}

/// `audit` subcommands.
#[derive(Subcommand)]
pub enum AuditCmd {
    /// Export the `authz_audit` and `assertion_audit` tables of a stopped database as
    /// JSON lines (one row per line, with its chained MAC) for immutable storage. Both
    /// chains are verified first; the export verifies on its own (`audit verify`).
    Export(AuditExportArgs),
    /// Verify an audit export file: both HMAC chains, from the file alone plus the key.
    Verify(AuditVerifyArgs),
}

/// Arguments of `audit export`.
#[derive(clap::Args)]
pub struct AuditExportArgs {
    /// The data directory.
    #[arg(long)]
    data_dir: PathBuf,
    /// The file to write (must not exist).
    #[arg(long)]
    out: PathBuf,
}

/// Arguments of `audit verify`.
#[derive(clap::Args)]
pub struct AuditVerifyArgs {
    /// The export file.
    #[arg(long)]
    file: PathBuf,
}

/// Runs `audit export` / `audit verify`.
pub fn audit(cmd: AuditCmd, global: &Global) -> Result<(), CliError> {
    let data_dir = match &cmd {
        AuditCmd::Export(args) => Some(args.data_dir.as_path()),
        AuditCmd::Verify(_) => None,
    };
    let config = config(global, data_dir)?;
    match cmd {
        AuditCmd::Export(args) => {
            let report =
                offline::export_audit(&args.data_dir, &config, &args.out).map_err(offline_err)?;
            let counts: Vec<String> = report
                .rows
                .iter()
                .map(|(t, n)| format!("{t}: {n} rows"))
                .collect();
            emit(
                global,
                json!({
                    "ok": true,
                    "out": args.out,
                    "rows": report.rows.iter().map(|(t, n)| json!({"table": t, "rows": n})).collect::<Vec<_>>(),
                    "heads": report.heads.iter().map(|(t, h)| json!({"table": t, "head_mac": h})).collect::<Vec<_>>(),
                }),
                || {
                    format!(
                        "exported {} to {} ({}); chain heads: {}",
                        args.data_dir.display(),
                        args.out.display(),
                        counts.join(", "),
                        report
                            .heads
                            .iter()
                            .map(|(t, h)| format!("{t} {h}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            );
            Ok(())
        }
        AuditCmd::Verify(args) => {
            let (database, counts) = aedb::verify_audit_export(&args.file, &config)
                .map_err(|e| CliError::Integrity(e.to_string()))?;
            emit(
                global,
                json!({
                    "ok": true,
                    "database_id": database.to_string(),
                    "rows": counts.iter().map(|(t, n)| json!({"table": t.name(), "rows": n})).collect::<Vec<_>>(),
                }),
                || {
                    format!(
                        "audit export {} of database {database} verifies: {}",
                        args.file.display(),
                        counts
                            .iter()
                            .map(|(t, n)| format!("{} {n} rows", t.name()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            );
            Ok(())
        }
    }
}
