//! The `aedb` command-line tool.
//!
//! Exit codes: 0 success, 1 an integrity or invariant failure, 2 a usage error.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod demo;

/// aedb: an actor-based embedded database engine.
#[derive(Parser)]
#[command(name = "aedb", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a ledger workload (concurrent durable transfers guarded by assertions),
    /// report throughput and latency, reopen, and verify the balance is conserved.
    Demo(demo::DemoArgs),
}

/// Default data directory of the demo, relative to the working directory.
pub const DEFAULT_DEMO_DIR: &str = "aedb-data/demo";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
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
    /// Opening the database failed (exit code 1).
    #[error(transparent)]
    Open(#[from] aedb::OpenError),
    /// A commit failed unexpectedly (exit code 1).
    #[error(transparent)]
    Commit(#[from] aedb::CommitError),
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
