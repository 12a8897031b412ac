//! `HsmKeyProvider` and `HsmProvisioner` against a real PKCS#11 token: SoftHSM2.
//!
//! `main` runs `scripts/softhsm-setup.sh` (installs SoftHSM2 if missing, creates the private
//! token store under `target/softhsm/`, initialises the `aedb-test` token), then re-executes
//! this binary with the `SOFTHSM2_CONF` it printed, because the module reads that variable
//! when it is initialised and a test cannot set it safely once threads run. No test is
//! skipped: a missing token or module fails the run.
//!
//! Tests share the one token. Each uses its own aliases (`<test>-<pid>-<time>`) and destroys
//! its keys when done; the two that log the whole process out of the token take an
//! exclusive lock. The rest take it too, so tests run one at a time: once (2026-12-07, a
//! CI run beside a disk-heavy benchmark) SoftHSM2 answered `CKR_GENERAL_ERROR` to a key
//! import while other tests' sessions were creating and destroying objects, and the
//! suite takes 0.1 s anyway. Concurrency inside one provider is still exercised by
//! `concurrent_derivations_share_one_session`.

use aedb_keys::{
    DerivationRequest, HsmConfig, HsmKeyProvider, HsmProvisioner, InMemoryKeyProvider, KEY_LEN,
    KeyError, KeyProvider, KeyPurpose, LoginFailure, MasterKeyAttributes, MasterKeyId, SecretKey,
    SecretString, TokenSelector,
};
use aedb_types::{DatabaseId, KeyEpoch};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use libtest_mimic::{Arguments, Failed, Trial};
use parking_lot::RwLock;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

const REEXEC_MARK: &str = "AEDB_KEYS_HSM_TEST_CHILD";

/// The token prepared by the setup script.
struct Token {
    conf: PathBuf,
    module: PathBuf,
    label: String,
    pin: String,
}

/// One test of this suite.
type TestFn = fn(&Token) -> Result<(), Failed>;

static TOKEN: OnceLock<Token> = OnceLock::new();
static EXCLUSIVE: RwLock<()> = RwLock::new(());

fn main() -> ExitCode {
    let token = match prepare_token() {
        Ok(token) => token,
        Err(message) => {
            eprintln!("SoftHSM2 token setup failed: {message}");
            return ExitCode::FAILURE;
        }
    };
    if std::env::var_os("SOFTHSM2_CONF").as_deref() != Some(token.conf.as_os_str()) {
        if std::env::var_os(REEXEC_MARK).is_some() {
            eprintln!(
                "SOFTHSM2_CONF is still not {} after re-exec",
                token.conf.display()
            );
            return ExitCode::FAILURE;
        }
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => {
                eprintln!("cannot find the test binary to re-execute: {e}");
                return ExitCode::FAILURE;
            }
        };
        let status = Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("SOFTHSM2_CONF", &token.conf)
            .env(REEXEC_MARK, "1")
            .status();
        return match status {
            Ok(status) if status.success() => ExitCode::SUCCESS,
            Ok(status) => ExitCode::from(status.code().map_or(101, |c| c.clamp(1, 255) as u8)),
            Err(e) => {
                eprintln!("cannot re-execute the test binary: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if TOKEN.set(token).is_err() {
        return ExitCode::FAILURE;
    }

    let args = Arguments::from_args();
    let shared: &[(&str, TestFn)] = &[
        ("derivation_matches_in_memory", derivation_matches_in_memory),
        (
            "distinct_inputs_give_distinct_keys",
            distinct_inputs_give_distinct_keys,
        ),
        (
            "version_selection_and_rotation",
            version_selection_and_rotation,
        ),
        (
            "missing_alias_or_version_is_key_not_found",
            missing_alias_or_version_is_key_not_found,
        ),
        (
            "extractable_or_non_sensitive_key_is_refused",
            extractable_or_non_sensitive_key_is_refused,
        ),
        (
            "generated_key_derives_and_its_value_is_unreadable",
            generated_key_derives_and_its_value_is_unreadable,
        ),
        (
            "token_and_module_errors_are_typed",
            token_and_module_errors_are_typed,
        ),
        (
            "concurrent_derivations_share_one_session",
            concurrent_derivations_share_one_session,
        ),
        (
            "provisioning_refuses_duplicates_and_lists_versions",
            provisioning_refuses_duplicates_and_lists_versions,
        ),
        ("debug_output_redacts_the_pin", debug_output_redacts_the_pin),
    ];
    let exclusive: &[(&str, TestFn)] = &[
        (
            "wrong_pin_is_typed_and_never_shown",
            wrong_pin_is_typed_and_never_shown,
        ),
        (
            "lost_login_is_recovered_transparently",
            lost_login_is_recovered_transparently,
        ),
    ];
    let mut trials = Vec::new();
    for &(name, test) in shared {
        trials.push(Trial::test(name, move || {
            let _one_at_a_time = EXCLUSIVE.write();
            test(shared_token())
        }));
    }
    for &(name, test) in exclusive {
        trials.push(Trial::test(name, move || {
            let _exclusive = EXCLUSIVE.write();
            test(shared_token())
        }));
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// Runs the setup script and reads the `export NAME=value` lines it prints.
fn prepare_token() -> Result<Token, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/softhsm-setup.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} exited with {}: {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let var = |name: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("export {name}=")))
            .map(unescape)
            .ok_or_else(|| format!("{} did not print {name}: {stdout}", script.display()))
    };
    Ok(Token {
        conf: PathBuf::from(var("SOFTHSM2_CONF")?),
        module: PathBuf::from(var("AEDB_PKCS11_MODULE")?),
        label: var("AEDB_HSM_TOKEN_LABEL")?,
        pin: var("AEDB_HSM_USER_PIN")?,
    })
}

/// Undoes bash's `printf %q` backslash escaping (e.g. `a\ b` for a path with a space).
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        out.extend(if c == '\\' { chars.next() } else { Some(c) });
    }
    out
}

fn shared_token() -> &'static Token {
    TOKEN
        .get()
        .expect("main sets the token before running tests")
}

// ---------------------------------------------------------------------------------------
// Helpers

/// A test-unique, valid alias: `<tag>-<pid>-<nanos>`.
fn unique_alias(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{tag}-{}-{nanos:x}", std::process::id())
}

fn id(alias: &str, version: u32) -> MasterKeyId {
    MasterKeyId::new(alias, version).expect("test aliases are valid")
}

fn master_bytes(seed: u8) -> [u8; KEY_LEN] {
    std::array::from_fn(|i| seed ^ (i as u8).wrapping_mul(29) ^ 0x5a)
}

fn database(seed: u8) -> DatabaseId {
    DatabaseId::from_bytes(std::array::from_fn(|i| seed.wrapping_mul(7) ^ i as u8))
}

fn provisioner(t: &Token) -> Result<HsmProvisioner, KeyError> {
    HsmProvisioner::connect(
        &t.module,
        &TokenSelector::Label(t.label.clone()),
        SecretString::from(t.pin.as_str()),
    )
}

fn config(t: &Token, master: &MasterKeyId) -> HsmConfig {
    HsmConfig::new(
        &t.module,
        &t.label,
        SecretString::from(t.pin.as_str()),
        master.clone(),
    )
}

fn bytes(key: &SecretKey) -> [u8; KEY_LEN] {
    key.with_bytes(|b| *b)
}

/// Destroys the keys a test created, also when the test fails.
struct Cleanup {
    provisioner: HsmProvisioner,
    keys: Vec<MasterKeyId>,
}

impl Cleanup {
    fn new(t: &Token) -> Result<Cleanup, KeyError> {
        Ok(Cleanup {
            provisioner: provisioner(t)?,
            keys: Vec::new(),
        })
    }

    fn import(&mut self, id: &MasterKeyId, seed: u8) -> Result<(), KeyError> {
        self.import_with(id, seed, MasterKeyAttributes::PROTECTED)
    }

    fn import_with(
        &mut self,
        id: &MasterKeyId,
        seed: u8,
        attributes: MasterKeyAttributes,
    ) -> Result<(), KeyError> {
        self.keys.push(id.clone());
        let info =
            self.provisioner
                .import_master(id, &SecretKey::new(master_bytes(seed)), attributes)?;
        assert_eq!(info.id, *id);
        assert_eq!(info.extractable, attributes.extractable);
        assert_eq!(info.sensitive, attributes.sensitive);
        assert!(!info.generated_on_token, "imported keys are not CKA_LOCAL");
        Ok(())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.keys {
            match self.provisioner.destroy_master(id) {
                Ok(()) | Err(KeyError::KeyNotFound { .. }) => {}
                Err(e) => eprintln!("cleanup of {id} failed: {e}"),
            }
        }
    }
}

/// Opens a raw cryptoki session to the test token (bypassing aedb-keys), for checks the
/// provider must not offer, e.g. trying to read a key's value.
fn raw_session(t: &Token) -> Result<(Pkcs11, Session), Failed> {
    let pkcs11 = Pkcs11::new(&t.module)?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(e.into()),
    }
    let slot = pkcs11
        .get_slots_with_token()?
        .into_iter()
        .find(|slot| {
            pkcs11
                .get_token_info(*slot)
                .is_ok_and(|info| info.label().trim_end() == t.label)
        })
        .ok_or("test token not found")?;
    let session = pkcs11.open_rw_session(slot)?;
    Ok((pkcs11, session))
}

// ---------------------------------------------------------------------------------------
// Tests

/// Same master bytes, same subkeys: HMAC inside the token equals HKDF in memory, for every
/// purpose, several epochs, databases and contexts.
fn derivation_matches_in_memory(t: &Token) -> Result<(), Failed> {
    let alias = unique_alias("match");
    let mut keys = Cleanup::new(t)?;
    keys.import(&id(&alias, 1), 11)?;
    let hsm = HsmKeyProvider::open(config(t, &id(&alias, 1)))?;
    let memory = InMemoryKeyProvider::new(&alias, master_bytes(11))?;
    assert_eq!(hsm.current_master()?, memory.current_master()?);
    assert_eq!(hsm.describe(), format!("pkcs11:{}", t.label));

    let binding = [0xc7u8; 48];
    let mut checked = 0;
    for purpose in KeyPurpose::ALL {
        for epoch in [1, 2, 77, u32::MAX] {
            for db in [database(0), database(200)] {
                let base = DerivationRequest::new(purpose, KeyEpoch::new(epoch), db);
                for request in [base, base.with_context(&binding), base.with_context(&[])] {
                    let master = hsm.current_master()?;
                    let inside = hsm.derive(&master, &request)?;
                    let outside = memory.derive(&master, &request)?;
                    if bytes(&inside) != bytes(&outside) {
                        return Err(
                            format!("{purpose} epoch {epoch}: HSM and memory differ").into()
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 5 * 4 * 2 * 3);
    Ok(())
}

/// Purposes, epochs, databases and contexts each select unrelated subkeys.
fn distinct_inputs_give_distinct_keys(t: &Token) -> Result<(), Failed> {
    let alias = unique_alias("distinct");
    let mut keys = Cleanup::new(t)?;
    keys.import(&id(&alias, 1), 22)?;
    let hsm = HsmKeyProvider::open(config(t, &id(&alias, 1)))?;
    let master = hsm.current_master()?;
    let contexts: [Option<&[u8]>; 4] = [None, Some(b""), Some(b"a"), Some(b"b")];
    let mut seen = HashSet::new();
    let mut count = 0;
    for purpose in KeyPurpose::ALL {
        for epoch in [1, 2] {
            for db in [database(1), database(2)] {
                for context in contexts {
                    let base = DerivationRequest::new(purpose, KeyEpoch::new(epoch), db);
                    let request = context.map_or(base, |c| base.with_context(c));
                    seen.insert(bytes(&hsm.derive(&master, &request)?));
                    count += 1;
                }
            }
        }
    }
    assert_eq!(count, 5 * 2 * 2 * 4);
    assert_eq!(
        seen.len(),
        count,
        "some distinct requests gave the same subkey"
    );
    // And deriving is deterministic.
    let request = DerivationRequest::new(KeyPurpose::Audit, KeyEpoch::FIRST, database(1));
    assert_eq!(
        bytes(&hsm.derive(&master, &request)?),
        bytes(&hsm.derive(&master, &request)?)
    );
    Ok(())
}

/// v1 and v2 give different keys; after rotating to v2, v1 stays derivable (old epochs stay
/// decryptable) and agrees with memory; destroying v1 retires it.
fn version_selection_and_rotation(t: &Token) -> Result<(), Failed> {
    let alias = unique_alias("rotate");
    let (v1, v2) = (id(&alias, 1), id(&alias, 2));
    let request = DerivationRequest::new(KeyPurpose::Checkpoint, KeyEpoch::new(3), database(9));
    let mut keys = Cleanup::new(t)?;
    keys.import(&v1, 31)?;
    let before = HsmKeyProvider::open(config(t, &v1))?;
    let old_key = bytes(&before.derive(&v1, &request)?);
    assert!(matches!(
        before.derive(&v2, &request),
        Err(KeyError::KeyNotFound { ref key, .. }) if *key == v2
    ));

    // Rotate K_master in the HSM, redeploy pointed at the new version.
    keys.import(&v2, 32)?;
    let after = HsmKeyProvider::open(config(t, &v2))?;
    assert_eq!(after.current_master()?, v2);
    let new_key = bytes(&after.derive(&v2, &request)?);
    assert_ne!(old_key, new_key);
    assert_eq!(bytes(&after.derive(&v1, &request)?), old_key);
    assert_eq!(bytes(&before.derive(&v2, &request)?), new_key);

    let memory =
        InMemoryKeyProvider::new(&alias, master_bytes(31))?.with_version(2, master_bytes(32))?;
    assert_eq!(memory.current_master()?, v2);
    assert_eq!(bytes(&memory.derive(&v1, &request)?), old_key);
    assert_eq!(bytes(&memory.derive(&v2, &request)?), new_key);
    assert_eq!(after.inspect(1)?.id, v1);

    // Retiring v1 (once no epoch references it) makes it underivable, also for providers
    // that had already used it.
    keys.provisioner.destroy_master(&v1)?;
    assert!(matches!(
        after.derive(&v1, &request),
        Err(KeyError::KeyNotFound { .. })
    ));
    assert!(matches!(
        before.derive(&v1, &request),
        Err(KeyError::KeyNotFound { .. })
    ));
    assert_eq!(bytes(&after.derive(&v2, &request)?), new_key);
    Ok(())
}

fn wrong_pin_is_typed_and_never_shown(t: &Token) -> Result<(), Failed> {
    let wrong = "wrong-pin-8675309";
    let check = |result: Result<(), KeyError>| -> Result<(), Failed> {
        let err = result.err().ok_or("a wrong PIN was accepted")?;
        let shown = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
        if !matches!(
            &err,
            KeyError::LoginFailed { reason: LoginFailure::PinIncorrect, token } if *token == t.label
        ) {
            return Err(format!("expected LoginFailed(PinIncorrect), got {shown}").into());
        }
        for secret in [wrong, &t.pin] {
            assert!(!shown.contains(secret), "PIN in error text: {shown}");
            assert!(
                !shown.contains(&hex::encode(secret)),
                "hex PIN in error text: {shown}"
            );
        }
        Ok(())
    };
    let connect_wrong = || {
        HsmProvisioner::connect(
            &t.module,
            &TokenSelector::Label(t.label.clone()),
            SecretString::from(wrong),
        )
        .map(drop)
    };

    // Nothing else in the process is logged in (exclusive test): the token itself refuses.
    check(connect_wrong())?;
    let alias = unique_alias("pin");
    let mut keys = Cleanup::new(t)?;
    keys.import(&id(&alias, 1), 41)?;
    // While a correct login is live, a wrong PIN is still refused (not let in on the
    // process-wide login), for provisioners and providers alike.
    check(connect_wrong())?;
    let mut bad = config(t, &id(&alias, 1));
    bad.user_pin = SecretString::from(wrong);
    check(HsmKeyProvider::open(bad).map(drop))?;
    // The right PIN still works.
    HsmKeyProvider::open(config(t, &id(&alias, 1)))?;
    Ok(())
}

fn missing_alias_or_version_is_key_not_found(t: &Token) -> Result<(), Failed> {
    let alias = unique_alias("missing");
    let never = id(&unique_alias("never"), 1);
    match HsmKeyProvider::open(config(t, &never)) {
        Err(KeyError::KeyNotFound { key, provider }) => {
            assert_eq!(key, never);
            assert_eq!(provider, format!("pkcs11:{}", t.label));
        }
        other => return Err(format!("expected KeyNotFound, got {other:?}").into()),
    }
    let mut keys = Cleanup::new(t)?;
    keys.import(&id(&alias, 1), 51)?;
    assert!(matches!(
        HsmKeyProvider::open(config(t, &id(&alias, 9))),
        Err(KeyError::KeyNotFound { ref key, .. }) if *key == id(&alias, 9)
    ));
    let hsm = HsmKeyProvider::open(config(t, &id(&alias, 1)))?;
    let request = DerivationRequest::new(KeyPurpose::Wal, KeyEpoch::FIRST, database(5));
    for absent in [id(&alias, 2), never.clone()] {
        let err = hsm
            .derive(&absent, &request)
            .err()
            .ok_or("derived an absent key")?;
        assert!(
            matches!(&err, KeyError::KeyNotFound { key, .. } if *key == absent),
            "{err}"
        );
        assert!(err.to_string().contains(&absent.to_string()), "{err}");
    }
    assert!(matches!(
        keys.provisioner.inspect_master(&never),
        Err(KeyError::KeyNotFound { .. })
    ));
    assert!(matches!(
        keys.provisioner.destroy_master(&never),
        Err(KeyError::KeyNotFound { .. })
    ));
    Ok(())
}

fn extractable_or_non_sensitive_key_is_refused(t: &Token) -> Result<(), Failed> {
    let alias = unique_alias("extract");
    let mut keys = Cleanup::new(t)?;
    let cases = [
        (1, true, true, "extractable"),
        (2, false, false, "not sensitive"),
        (3, true, false, "extractable and not sensitive"),
    ];
    for (version, extractable, sensitive, what_expected) in cases {
        let master = id(&alias, version);
        keys.import_with(
            &master,
            60 + version as u8,
            MasterKeyAttributes {
                extractable,
                sensitive,
            },
        )?;
        match HsmKeyProvider::open(config(t, &master)) {
            Err(KeyError::KeyExtractable { key, token, what }) => {
                assert_eq!(
                    (key, token.as_str(), what),
                    (master.clone(), t.label.as_str(), what_expected)
                );
            }
            other => return Err(format!("{master}: expected KeyExtractable, got {other:?}").into()),
        }
        // Explicit opt-in (tests, migrations) accepts it, and it derives like memory.
        let hsm = HsmKeyProvider::open(config(t, &master).allow_extractable(true))?;
        let request = DerivationRequest::new(KeyPurpose::Session, KeyEpoch::FIRST, database(6))
            .with_context(b"tls-exporter");
        let memory = InMemoryKeyProvider::new(&alias, master_bytes(60 + version as u8))?;
        assert_eq!(
            bytes(&hsm.derive(&master, &request)?),
            bytes(&memory.derive(&id(&alias, 1), &request)?)
        );
    }
    // A conforming version of the same alias is accepted without the opt-in, but the
    // provider still refuses to derive from the extractable versions.
    let good = id(&alias, 4);
    keys.import(&good, 64)?;
    let hsm = HsmKeyProvider::open(config(t, &good))?;
    let request = DerivationRequest::new(KeyPurpose::Wal, KeyEpoch::FIRST, database(6));
    hsm.derive(&good, &request)?;
    assert!(matches!(
        hsm.derive(&id(&alias, 1), &request),
        Err(KeyError::KeyExtractable { .. })
    ));
    Ok(())
}

fn generated_key_derives_and_its_value_is_unreadable(t: &Token) -> Result<(), Failed> {
    let alias = unique_alias("generated");
    let master = id(&alias, 1);
    let mut keys = Cleanup::new(t)?;
    keys.keys.push(master.clone());
    let info = keys.provisioner.generate_master(&master)?;
    assert_eq!(info.id, master);
    assert_eq!(info.key_type, "CKK_GENERIC_SECRET");
    assert_eq!(info.value_len, Some(KEY_LEN));
    assert!(info.can_sign && info.sensitive && !info.extractable);
    assert!(info.always_sensitive && info.never_extractable && info.generated_on_token);

    let hsm = HsmKeyProvider::open(config(t, &master))?;
    assert_eq!(hsm.inspect(1)?, info);
    let request = DerivationRequest::new(KeyPurpose::Manifest, KeyEpoch::new(4), database(7));
    let first = bytes(&hsm.derive(&master, &request)?);
    assert_eq!(first, bytes(&hsm.derive(&master, &request)?));
    assert_ne!(first, [0; KEY_LEN]);
    let other = DerivationRequest::new(KeyPurpose::Wal, KeyEpoch::new(4), database(7));
    assert_ne!(first, bytes(&hsm.derive(&master, &other)?));

    // Bypass aedb-keys: C_GetAttributeValue(CKA_VALUE) must not reveal the key. The process
    // is logged in (the provider above holds the session), so the object is visible.
    let (_pkcs11, session) = raw_session(t)?;
    let found = session.find_objects(&[
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Label(master.label().into_bytes()),
    ])?;
    let [object] = found.as_slice() else {
        return Err(format!(
            "expected one object labelled {master}, found {}",
            found.len()
        )
        .into());
    };
    let value_info = session.get_attribute_info(*object, &[AttributeType::Value])?;
    assert!(
        matches!(value_info.as_slice(), [AttributeInfo::Sensitive]),
        "CKA_VALUE is readable: {value_info:?}"
    );
    let values = session.get_attributes(*object, &[AttributeType::Value, AttributeType::Label])?;
    assert!(
        values.iter().all(|a| !matches!(a, Attribute::Value(_))),
        "C_GetAttributeValue returned CKA_VALUE"
    );
    assert!(values.iter().any(|a| matches!(a, Attribute::Label(_))));
    Ok(())
}

fn token_and_module_errors_are_typed(t: &Token) -> Result<(), Failed> {
    let master = id("anything", 1);
    let mut wrong_token = config(t, &master);
    wrong_token.token = TokenSelector::Label("no-such-token".into());
    match HsmKeyProvider::open(wrong_token) {
        Err(KeyError::TokenNotFound {
            selector,
            available,
            ..
        }) => {
            assert!(selector.contains("no-such-token"), "{selector}");
            assert!(available.contains(&t.label), "{available:?}");
        }
        other => return Err(format!("expected TokenNotFound, got {other:?}").into()),
    }
    let mut wrong_slot = config(t, &master);
    wrong_slot.token = TokenSelector::Slot(u64::from(u32::MAX) - 7);
    assert!(matches!(
        HsmKeyProvider::open(wrong_slot),
        Err(KeyError::TokenNotFound { .. })
    ));
    let mut wrong_module = config(t, &master);
    wrong_module.module_path = PathBuf::from("/nonexistent/libpkcs11-missing.so");
    let err = HsmKeyProvider::open(wrong_module)
        .err()
        .ok_or("opened a missing module")?;
    assert!(
        matches!(&err, KeyError::ModuleLoad { path, .. } if path.ends_with("libpkcs11-missing.so"))
    );
    assert!(err.to_string().contains("libpkcs11-missing.so"), "{err}");
    // A file that is not a PKCS#11 module.
    let mut not_module = config(t, &master);
    not_module.module_path = t.conf.clone();
    assert!(matches!(
        HsmKeyProvider::open(not_module),
        Err(KeyError::ModuleLoad { .. })
    ));
    Ok(())
}

fn concurrent_derivations_share_one_session(t: &Token) -> Result<(), Failed> {
    let alias = unique_alias("threads");
    let mut keys = Cleanup::new(t)?;
    keys.import(&id(&alias, 1), 71)?;
    let hsm: Arc<dyn KeyProvider> = Arc::new(HsmKeyProvider::open(config(t, &id(&alias, 1)))?);
    let memory = Arc::new(InMemoryKeyProvider::new(&alias, master_bytes(71))?);
    let threads: Vec<_> = (0..4u8)
        .map(|thread| {
            let (hsm, memory) = (Arc::clone(&hsm), Arc::clone(&memory));
            std::thread::spawn(move || -> Result<usize, String> {
                let master = hsm.current_master().map_err(|e| e.to_string())?;
                for i in 0..40u32 {
                    let request = DerivationRequest::new(
                        KeyPurpose::ALL[(i % 5) as usize],
                        KeyEpoch::new(i),
                        database(thread),
                    );
                    let inside = hsm.derive(&master, &request).map_err(|e| e.to_string())?;
                    let outside = memory
                        .derive(&master, &request)
                        .map_err(|e| e.to_string())?;
                    if bytes(&inside) != bytes(&outside) {
                        return Err(format!("thread {thread} request {i} differs"));
                    }
                }
                Ok(40)
            })
        })
        .collect();
    let mut total = 0;
    for thread in threads {
        total += thread.join().map_err(|_| "derivation thread panicked")??;
    }
    assert_eq!(total, 160);
    Ok(())
}

fn provisioning_refuses_duplicates_and_lists_versions(t: &Token) -> Result<(), Failed> {
    let alias = unique_alias("provision");
    let mut keys = Cleanup::new(t)?;
    assert_eq!(keys.provisioner.list_versions(&alias)?, Vec::<u32>::new());
    keys.import(&id(&alias, 1), 81)?;
    keys.keys.push(id(&alias, 3));
    keys.provisioner.generate_master(&id(&alias, 3))?;
    assert_eq!(keys.provisioner.list_versions(&alias)?, vec![1, 3]);
    assert_eq!(keys.provisioner.token_label(), t.label);
    for attempt in [
        keys.provisioner.generate_master(&id(&alias, 1)).map(drop),
        keys.provisioner
            .import_master(
                &id(&alias, 3),
                &SecretKey::new([1; KEY_LEN]),
                MasterKeyAttributes::PROTECTED,
            )
            .map(drop),
    ] {
        assert!(
            matches!(attempt, Err(KeyError::KeyAlreadyExists { .. })),
            "{attempt:?}"
        );
    }
    // The existing v1 was not overwritten.
    let hsm = HsmKeyProvider::open(config(t, &id(&alias, 1)))?;
    let memory = InMemoryKeyProvider::new(&alias, master_bytes(81))?;
    let request = DerivationRequest::new(KeyPurpose::Audit, KeyEpoch::FIRST, database(8));
    assert_eq!(
        bytes(&hsm.derive(&id(&alias, 1), &request)?),
        bytes(&memory.derive(&id(&alias, 1), &request)?)
    );
    keys.provisioner.destroy_master(&id(&alias, 3))?;
    assert_eq!(keys.provisioner.list_versions(&alias)?, vec![1]);
    assert!(matches!(
        keys.provisioner.list_versions("bad alias"),
        Err(KeyError::InvalidAlias { .. })
    ));
    Ok(())
}

fn debug_output_redacts_the_pin(t: &Token) -> Result<(), Failed> {
    let alias = unique_alias("debug");
    let mut keys = Cleanup::new(t)?;
    keys.import(&id(&alias, 1), 91)?;
    let cfg = config(t, &id(&alias, 1));
    let cfg_shown = format!("{cfg:?} {cfg:#?}");
    let hsm = HsmKeyProvider::open(cfg)?;
    let shown = format!(
        "{cfg_shown} {hsm:?} {hsm:#?} {:?} {}",
        keys.provisioner,
        hsm.describe()
    );
    assert!(
        shown.contains(&alias) && shown.contains(&t.label),
        "{shown}"
    );
    assert!(shown.contains("<redacted>"), "{shown}");
    for form in [
        t.pin.clone(),
        hex::encode(&t.pin),
        hex::encode_upper(&t.pin),
        format!("{:?}", t.pin.as_bytes()),
    ] {
        assert!(!shown.contains(&form), "PIN form {form:?} in {shown}");
    }
    let key = hsm.derive(
        &id(&alias, 1),
        &DerivationRequest::new(KeyPurpose::Wal, KeyEpoch::FIRST, database(9)),
    )?;
    assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    Ok(())
}

/// Logging the process out of the token (as a token reset would) is invisible to callers:
/// the next derivation reopens the session, logs in again and succeeds.
fn lost_login_is_recovered_transparently(t: &Token) -> Result<(), Failed> {
    let alias = unique_alias("relogin");
    let mut keys = Cleanup::new(t)?;
    keys.import(&id(&alias, 1), 95)?;
    keys.import(&id(&alias, 2), 96)?;
    let hsm = HsmKeyProvider::open(config(t, &id(&alias, 2)))?;
    let memory =
        InMemoryKeyProvider::new(&alias, master_bytes(95))?.with_version(2, master_bytes(96))?;
    let request = DerivationRequest::new(KeyPurpose::Wal, KeyEpoch::new(8), database(10));
    let (_pkcs11, raw) = raw_session(t)?;
    let logout = || -> Result<(), Failed> {
        raw.logout()?;
        // Really logged out: logging in again from the raw session is now possible.
        raw.login(UserType::User, Some(&AuthPin::from(t.pin.clone())))?;
        raw.logout()?;
        Ok(())
    };
    // v2 is cached (used at open): the sign fails as not logged in and is retried.
    logout()?;
    assert_eq!(
        bytes(&hsm.derive(&id(&alias, 2), &request)?),
        bytes(&memory.derive(&id(&alias, 2), &request)?)
    );
    // v1 is not cached: the lookup finds nothing while logged out, which must be reported
    // as a lost login and retried, not as "key not found".
    logout()?;
    assert_eq!(
        bytes(&hsm.derive(&id(&alias, 1), &request)?),
        bytes(&memory.derive(&id(&alias, 1), &request)?)
    );
    Ok(())
}
