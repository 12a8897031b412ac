//! The `aedb` command-line tool (crate `aedb-cli`, binary `aedb`).
//!
//! This crate owns the operator's commands: `demo`, `check`, `verify`, `backup`,
//! `restore`, `inspect`, `audit`, `freeze`, `unfreeze`, `capture`, `hsm` and `profile`,
//! their arguments (clap), progress bars (indicatif), text and `--json` output, and how keys reach them (`keys.rs`). It does **not** own any
//! engine logic: every command calls the public API of the `aedb` library (`aedb::offline`,
//! `aedb::backup`, `AedbInstance`), which has no CLI dependencies.
//!
//! Exit codes: 0 success, 1 an integrity or invariant failure (or any other failed
//! operation), 2 a usage error. Keys come from `--key-file`, `AEDB_MANIFEST_KEY` /
//! `AEDB_DATA_KEY` (hex) or the key file beside the data directory (`<data-dir>.key`,
//! which `aedb demo` writes), never from a bare argument (see `keys.rs`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;
mod backup_list;
mod capture;
mod demo;
mod hsm;
mod keys;
mod ops;

/// aedb: an actor-based embedded database engine.
#[derive(Parser)]
#[command(
    name = "aedb",
    version,
    about = "aedb: an actor-based embedded database engine with durable group commit, transactions with assertions, and encrypted tamper-evident files."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(clap::Args)]
pub struct Global {
    /// Print one JSON object on stdout instead of text (errors too), for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read keys from this file (`manifest_key = <hex>`, `data_key = <hex>`) instead of
    /// the AEDB_MANIFEST_KEY / AEDB_DATA_KEY environment variables. Without either, the
    /// key file beside the data directory (`<data-dir>.key`, as `aedb demo` writes) is
    /// used if it exists, else the development profile's public key.
    #[arg(long, global = true, value_name = "PATH")]
    pub key_file: Option<PathBuf>,
    /// An HSM-keyed database: PKCS#11 module, token, PIN variable, master alias and
    /// version (see `hsm.rs`).
    #[command(flatten)]
    pub hsm: hsm::HsmArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a ledger workload (concurrent durable transfers guarded by assertions),
    /// report throughput and latency, reopen, and verify the balance is conserved.
    Demo(demo::DemoArgs),
    /// Offline checks of a data directory: invariants, parity.
    #[command(subcommand)]
    Check(ops::CheckCmd),
    /// Full strict recovery dry run of a data directory (read-only). Lists every place
    /// recovery routed around damage (recorded by earlier opens, or found by the dry
    /// run) and exits 1 on any unless --allow-fallback.
    Verify(ops::VerifyArgs),
    /// Hot full and incremental backups forming an HMAC-authenticated hash chain.
    #[command(subcommand)]
    Backup(ops::BackupCmd),
    /// Restore a backup chain into an empty directory (to its end or --target-lsn).
    Restore(ops::RestoreArgs),
    /// Show a data directory's manifest records, checkpoints, WAL segments, key epochs
    /// and heads (read-only).
    Inspect(ops::DataDirArg),
    /// Export or verify the audit tables (JSON lines, HMAC-chained).
    #[command(subcommand)]
    Audit(ops::AuditCmd),
    /// Freeze all writes of a stopped data directory, durably until `unfreeze`: every
    /// commit is refused (code commit.frozen) while reads, backups and checks work.
    Freeze(admin::FreezeArgs),
    /// Lift the write freeze of a stopped data directory.
    Unfreeze(admin::UnfreezeArgs),
    /// Merge the run files of a stopped data directory until no level is over its
    /// trigger (compaction also runs by itself in the background).
    Compact(admin::StorageArgs),
    /// Re-seal every run file of a stopped data directory under the current key epoch
    /// (after a key rotation), so older epochs are retired.
    Reseal(admin::StorageArgs),
    /// Forensic capture of a stopped data directory (manifest, checkpoints, WAL, with an
    /// authenticated SHA-256 listing), or verify one with --verify.
    Capture(capture::CaptureArgs),
    /// Master keys in a PKCS#11 token (the PIN comes from --hsm-pin-env).
    #[command(subcommand)]
    Hsm(hsm::HsmCmd),
    /// Server profiles for caller sessions.
    #[command(subcommand)]
    Profile(hsm::ProfileCmd),
}

/// Default data directory of the demo, relative to the working directory.
pub const DEFAULT_DEMO_DIR: &str = "aedb-data/demo";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = cli.global;
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Check(cmd) => ops::check(cmd, &global),
        Command::Verify(args) => ops::verify(args, &global),
        Command::Backup(cmd) => ops::backup(cmd, &global),
        Command::Restore(args) => ops::restore(args, &global),
        Command::Inspect(args) => ops::inspect(args, &global),
        Command::Audit(cmd) => ops::audit(cmd, &global),
        Command::Freeze(args) => admin::freeze(args, &global),
        Command::Unfreeze(args) => admin::unfreeze(args, &global),
        Command::Compact(args) => admin::compact(args, &global),
        Command::Reseal(args) => admin::reseal(args, &global),
        Command::Capture(args) => capture::run(args, &global),
        Command::Hsm(cmd) => hsm::hsm(cmd, &global),
        Command::Profile(cmd) => hsm::profile(cmd, &global),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if global.json && !matches!(e, CliError::Reported(_)) {
                println!(
                    "{}",
                    serde_json::json!({"ok": false, "error": e.to_string(), "exit_code": e.exit_code()})
                );
            }
            eprintln!("aedb: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// A failed command, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The data failed a check (exit code 1).
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// The engine reported an error (exit code 1).
    #[error(transparent)]
    Engine(#[from] aedb::Error),
    /// A check failed and its result was already printed (exit code 1).
    #[error("{0}")]
    Reported(String),
    /// An operation failed for a reason other than integrity (exit code 1).
    #[error("{0}")]
    Failed(String),
    /// Bad arguments (exit code 2).
    #[error("{0}")]
    Usage(String),
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}
