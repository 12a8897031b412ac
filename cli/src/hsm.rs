//! HSM-keyed databases from the command line: the global `--hsm-*` options that open a
//! database whose keys derive from a PKCS#11 master (for `check`, `verify`, `backup`,
//! `restore`, `inspect`, `audit` and `capture`), `aedb hsm generate-master` (the
//! runbook's "rotate `K_master` in the HSM"), and `aedb profile new` (a fresh
//! `ServerProfileId` per host).
//!
//! The PIN is read from an environment variable (`--hsm-pin-env`, default
//! `AEDB_HSM_PIN`), never from an argument, and is held in a `SecretString`. Master key
//! values never leave the token: the CLI sees only their non-secret attributes.

use std::path::PathBuf;
use std::sync::Arc;

use aedb::{
    AedbConfig, HsmConfig, HsmKeyProvider, HsmProvisioner, MasterKeyId, SecretString, TokenSelector,
};
use serde_json::json;

use crate::ops::emit;
use crate::{CliError, Global};

/// The default environment variable holding the token's user PIN.
pub const PIN_ENV: &str = "AEDB_HSM_PIN";

/// Options selecting a PKCS#11 token and master key (global: every command accepts
/// them). With `--hsm-module`, every key of the database derives from the HSM master
/// `--hsm-master`/`--hsm-version` instead of `--key-file` or the environment keys.
#[derive(clap::Args, Default)]
pub struct HsmArgs {
    /// The PKCS#11 module (shared library), e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, global = true, value_name = "PATH")]
    pub hsm_module: Option<PathBuf>,
    /// The label of the token holding the master keys.
    #[arg(long, global = true, value_name = "LABEL")]
    pub hsm_token: Option<String>,
    /// The environment variable holding the token's user PIN.
    #[arg(long, global = true, value_name = "VAR", default_value = PIN_ENV)]
    pub hsm_pin_env: String,
    /// The master key alias the database's keys derive from.
    #[arg(long, global = true, value_name = "ALIAS")]
    pub hsm_master: Option<String>,
    /// The master key version new key epochs use (older versions stay derivable).
    #[arg(long, global = true, value_name = "N")]
    pub hsm_version: Option<u32>,
}

impl HsmArgs {
    fn token(&self) -> Result<(PathBuf, String, SecretString), CliError> {
        let module = self
            .hsm_module
            .clone()
            .ok_or_else(|| CliError::Usage("--hsm-module is required".into()))?;
        let token = self
            .hsm_token
            .clone()
            .ok_or_else(|| CliError::Usage("--hsm-token is required with --hsm-module".into()))?;
        let pin = std::env::var(&self.hsm_pin_env).map_err(|_| {
            CliError::Usage(format!(
                "the token PIN is read from the environment variable {} (--hsm-pin-env), which is not set",
                self.hsm_pin_env
            ))
        })?;
        Ok((module, token, SecretString::new(pin)))
    }

    fn master(&self) -> Result<MasterKeyId, CliError> {
        match (&self.hsm_master, self.hsm_version) {
            (Some(alias), Some(version)) => MasterKeyId::new(alias.clone(), version)
                .map_err(|e| CliError::Usage(format!("--hsm-master/--hsm-version: {e}"))),
            _ => Err(CliError::Usage(
                "--hsm-master and --hsm-version are required with --hsm-module".into(),
            )),
        }
    }

    /// The configuration of an HSM-keyed database, or `None` without `--hsm-module`.
    pub fn config(&self) -> Result<Option<AedbConfig>, CliError> {
        if self.hsm_module.is_none() {
            if self.hsm_master.is_some() || self.hsm_token.is_some() {
                return Err(CliError::Usage(
                    "--hsm-token and --hsm-master need --hsm-module".into(),
                ));
            }
            return Ok(None);
        }
        let (module, token, pin) = self.token()?;
        let master = self.master()?;
        let provider = HsmKeyProvider::open(HsmConfig::new(module, token, pin, master))
            .map_err(|e| CliError::Failed(format!("cannot open the HSM key provider: {e}")))?;
        // The production profile, every key derived from the HSM master (the placeholder
        // manifest key is replaced by the provider).
        Ok(Some(
            AedbConfig::production([0u8; 32]).with_key_provider(Arc::new(provider)),
        ))
    }
}

/// `aedb hsm ...`
#[derive(clap::Subcommand)]
pub enum HsmCmd {
    /// Generate a new master key version inside the token (256-bit, sensitive,
    /// non-extractable, sign-only): the "rotate K_master in the HSM" step. Then reopen
    /// the database with `--hsm-version` (or `HsmConfig::master`) at the new version.
    GenerateMaster(GenerateArgs),
}

/// Arguments of `hsm generate-master`.
#[derive(clap::Args)]
pub struct GenerateArgs {
    /// The master key alias.
    #[arg(long)]
    alias: String,
    /// The new version (at least 1; must not exist yet).
    #[arg(long)]
    version: u32,
}

/// Runs `hsm ...`.
pub fn hsm(cmd: HsmCmd, global: &Global) -> Result<(), CliError> {
    match cmd {
        HsmCmd::GenerateMaster(args) => {
            let id = MasterKeyId::new(args.alias, args.version)
                .map_err(|e| CliError::Usage(format!("--alias/--version: {e}")))?;
            let (module, token, pin) = global.hsm.token()?;
            let provisioner =
                HsmProvisioner::connect(&module, &TokenSelector::Label(token), pin)
                    .map_err(|e| CliError::Failed(format!("cannot connect to the token: {e}")))?;
            let info = provisioner
                .generate_master(&id)
                .map_err(|e| CliError::Failed(format!("cannot generate {id}: {e}")))?;
            emit(
                global,
                json!({
                    "ok": true,
                    "master": info.id.to_string(),
                    "token": provisioner.token_label(),
                    "key_type": info.key_type,
                    "value_len": info.value_len,
                    "can_sign": info.can_sign,
                }),
                || {
                    format!(
                        "generated master {} on token {:?} ({}, {} bytes, sign-only, non-extractable)",
                        info.id,
                        provisioner.token_label(),
                        info.key_type,
                        info.value_len.map_or("?".into(), |n| n.to_string()),
                    )
                },
            );
            Ok(())
        }
    }
}

/// `aedb profile ...`
#[derive(clap::Subcommand)]
pub enum ProfileCmd {
    /// Print a fresh random `ServerProfileId` (32 hex digits) for a host's provisioning.
    New,
}

/// Runs `profile ...`.
pub fn profile(cmd: ProfileCmd, global: &Global) -> Result<(), CliError> {
    match cmd {
        ProfileCmd::New => {
            let id = aedb::ServerProfileId::generate()
                .map_err(|e| CliError::Failed(format!("cannot generate a profile id: {e}")))?;
            emit(
                global,
                json!({"ok": true, "server_profile_id": id.to_string()}),
                || id.to_string(),
            );
            Ok(())
        }
    }
}
