//! How the CLI gets keys: a key file or environment variables, never a bare argument.
//!
//! In order of precedence:
//!
//! 1. `--key-file PATH` — lines `manifest_key = <hex>` and `data_key = <hex>` (`#`
//!    comments);
//! 2. `AEDB_MANIFEST_KEY` (64 hex digits: the manifest and backup manifest MAC key;
//!    selects the production profile) and `AEDB_DATA_KEY` (64 hex digits: the at-rest
//!    encryption key of checkpoints and the WAL), if either is set;
//! 3. the key file beside the data directory, `<data-dir>.key` (for example
//!    `aedb-data/demo.key` for `aedb-data/demo`, which `aedb demo` writes), if it exists;
//! 4. otherwise the development profile (a public key), which only fits databases created
//!    with it.
//!
//! Key bytes live in [`SecretKey`]s (zeroized on drop, read only through
//! [`SecretKey::with_bytes`]); the text they were parsed from is zeroized too. Keys are
//! never printed.

use std::io::Write;
use std::path::{Path, PathBuf};

use aedb::{AedbConfig, SecretKey};
use zeroize::Zeroizing;

use crate::CliError;

/// Environment variable holding the manifest key (hex).
pub const MANIFEST_KEY_ENV: &str = "AEDB_MANIFEST_KEY";
/// Environment variable holding the data key (hex).
pub const DATA_KEY_ENV: &str = "AEDB_DATA_KEY";

/// The keys a command runs with.
#[derive(Default)]
pub struct Keys {
    /// The manifest MAC key; none means the development profile.
    pub manifest: Option<SecretKey>,
    /// The at-rest encryption key; none means unencrypted files.
    pub data: Option<SecretKey>,
}

impl Keys {
    /// The engine configuration for these keys.
    pub fn config(&self) -> AedbConfig {
        let config = match &self.manifest {
            Some(k) => AedbConfig::production(k.with_bytes(|b| *b)),
            None => AedbConfig::development(),
        };
        match &self.data {
            Some(k) => config.with_checkpoint_key(k.with_bytes(|b| *b)),
            None => config,
        }
    }
}

fn parse_key(what: &str, text: &str) -> Result<SecretKey, CliError> {
    let text = text.trim();
    if text.len() != 64 {
        // Say why as before: not hex at all, or hex of the wrong length.
        return Err(match hex::decode(text).map(Zeroizing::new) {
            Err(e) => CliError::Usage(format!("{what} is not valid hex: {e}")),
            Ok(_) => CliError::Usage(format!("{what} must be 32 bytes (64 hex digits)")),
        });
    }
    SecretKey::try_from_fn(|out| hex::decode_to_slice(text, out))
        .map_err(|e| CliError::Usage(format!("{what} is not valid hex: {e}")))
}

/// The key file beside a data directory: `<data-dir>.key`.
pub fn key_file_beside(data_dir: &Path) -> PathBuf {
    let mut name = data_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "aedb-data".into());
    name.push(".key");
    data_dir.with_file_name(name)
}

/// Reads a key file (`manifest_key = <hex>`, `data_key = <hex>`, `#` comments).
pub fn read_key_file(path: &Path) -> Result<Keys, CliError> {
    let text =
        Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!("cannot read key file {}: {e}", path.display()))
        })?);
    let mut keys = Keys::default();
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
            "manifest_key" => keys.manifest = Some(parse_key("manifest_key", value)?),
            "data_key" => keys.data = Some(parse_key("data_key", value)?),
            other => {
                return Err(CliError::Usage(format!(
                    "{}:{}: unknown key name {other:?} (use manifest_key or data_key)",
                    path.display(),
                    n + 1
                )));
            }
        }
    }
    Ok(keys)
}

/// Writes `keys` as a new key file readable by its owner only (mode 0600 on Unix). Fails
/// if the file exists.
pub fn write_key_file(path: &Path, keys: &Keys, comment: &str) -> Result<(), CliError> {
    let mut text = Zeroizing::new(String::new());
    for line in comment.lines() {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    for (name, key) in [("manifest_key", &keys.manifest), ("data_key", &keys.data)] {
        if let Some(key) = key {
            text.push_str(name);
            text.push_str(" = ");
            key.with_bytes(|b| {
                let hex = Zeroizing::new(hex::encode(b));
                text.push_str(&hex);
            });
            text.push('\n');
        }
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let failed = |e: std::io::Error| {
        CliError::Failed(format!("cannot write key file {}: {e}", path.display()))
    };
    let mut file = options.open(path).map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)?;
    file.sync_all().map_err(failed)
}

/// The keys for a command: `--key-file`, else the environment, else the key file beside
/// `data_dir` (when the command has one and the file exists), else none.
pub fn keys(key_file: Option<&Path>, data_dir: Option<&Path>) -> Result<Keys, CliError> {
    if let Some(path) = key_file {
        return read_key_file(path);
    }
    let manifest = std::env::var(MANIFEST_KEY_ENV).ok().map(Zeroizing::new);
    let data = std::env::var(DATA_KEY_ENV).ok().map(Zeroizing::new);
    if manifest.is_some() || data.is_some() {
        return Ok(Keys {
            manifest: manifest
                .map(|v| parse_key(MANIFEST_KEY_ENV, &v))
                .transpose()?,
            data: data.map(|v| parse_key(DATA_KEY_ENV, &v)).transpose()?,
        });
    }
    if let Some(dir) = data_dir {
        let beside = key_file_beside(dir);
        if beside.is_file() {
            return read_key_file(&beside);
        }
    }
    Ok(Keys::default())
}

/// Builds the configuration (see [`keys`] for where keys come from).
pub fn config(key_file: Option<&Path>, data_dir: Option<&Path>) -> Result<AedbConfig, CliError> {
    Ok(keys(key_file, data_dir)?.config())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_sits_beside_the_data_directory() {
        assert_eq!(
            key_file_beside(Path::new("aedb-data/demo")),
            Path::new("aedb-data/demo.key")
        );
        assert_eq!(
            key_file_beside(Path::new("aedb-data/demo/")),
            Path::new("aedb-data/demo.key")
        );
        assert_eq!(key_file_beside(Path::new("db")), Path::new("db.key"));
    }

    #[test]
    fn key_files_round_trip_with_owner_only_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.key");
        let keys = Keys {
            manifest: Some(SecretKey::new([0xAB; 32])),
            data: Some(SecretKey::new([0x01; 32])),
        };
        write_key_file(&path, &keys, "test keys\nsecond line").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# test keys\n# second line\n"));
        assert!(text.contains(&format!("manifest_key = {}\n", "ab".repeat(32))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let read = read_key_file(&path).unwrap();
        assert!(read.manifest.unwrap().with_bytes(|b| *b == [0xAB; 32]));
        assert!(read.data.unwrap().with_bytes(|b| *b == [0x01; 32]));
        // Never overwritten.
        assert!(write_key_file(&path, &keys, "again").is_err());
    }

    #[test]
    fn malformed_keys_are_usage_errors() {
        for bad in [
            "",
            "zz",
            &"g".repeat(64),
            &"ab".repeat(31),
            &"ab".repeat(33),
        ] {
            assert!(
                matches!(parse_key("k", bad), Err(CliError::Usage(_))),
                "{bad}"
            );
        }
        assert!(parse_key("k", &format!(" {} ", "0f".repeat(32))).is_ok());
    }
}
