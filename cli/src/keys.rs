//! How the CLI gets keys: environment variables or a key file, never a bare argument.
//!
//! * `AEDB_MANIFEST_KEY` — 64 hex digits: the manifest (and backup manifest) MAC key;
//!   selects the production profile.
//! * `AEDB_DATA_KEY` — 64 hex digits: the at-rest encryption key (checkpoints, WAL).
//! * `--key-file PATH` — lines `manifest_key = <hex>` and `data_key = <hex>` (`#`
//!   comments); overrides the environment.
//!
//! Without a manifest key the development profile (a public key) is used, which only
//! fits databases created with it.

use std::path::Path;

use aedb::AedbConfig;

use crate::CliError;

/// Environment variable holding the manifest key (hex).
pub const MANIFEST_KEY_ENV: &str = "AEDB_MANIFEST_KEY";
/// Environment variable holding the data key (hex).
pub const DATA_KEY_ENV: &str = "AEDB_DATA_KEY";

fn parse_key(what: &str, text: &str) -> Result<[u8; 32], CliError> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| CliError::Usage(format!("{what} is not valid hex: {e}")))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| CliError::Usage(format!("{what} must be 32 bytes (64 hex digits)")))
}

/// Builds the configuration from `--key-file` or the environment.
pub fn config(key_file: Option<&Path>) -> Result<AedbConfig, CliError> {
    let (mut manifest, mut data) = (None, None);
    if let Some(path) = key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!("cannot read key file {}: {e}", path.display()))
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, value)) = line.split_once('=') else {
                return Err(CliError::Usage(format!(
                    "{}:{}: expected `name = hex`",
                    path.display(),
                    n + 1
                )));
            };
            match name.trim() {
                "manifest_key" => manifest = Some(parse_key("manifest_key", value)?),
                "data_key" => data = Some(parse_key("data_key", value)?),
                other => {
                    return Err(CliError::Usage(format!(
                        "{}:{}: unknown key name {other:?} (use manifest_key or data_key)",
                        path.display(),
                        n + 1
                    )));
                }
            }
        }
    } else {
        if let Ok(v) = std::env::var(MANIFEST_KEY_ENV) {
            manifest = Some(parse_key(MANIFEST_KEY_ENV, &v)?);
        }
        if let Ok(v) = std::env::var(DATA_KEY_ENV) {
            data = Some(parse_key(DATA_KEY_ENV, &v)?);
        }
    }
    let config = match manifest {
        Some(k) => AedbConfig::production(k),
        None => AedbConfig::development(),
    };
    Ok(match data {
        Some(k) => config.with_checkpoint_key(k),
        None => config,
    })
}
