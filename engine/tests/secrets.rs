//! No key material in any `Debug` or `Display` output: configurations of every profile,
//! with a checkpoint key or a key provider, `SecretKey`, `SecretString`, `HsmConfig`,
//! `InMemoryKeyProvider`, the WAL's `WalCipher`/`WalKeyring`/`WalConfig`, the actors'
//! `Keyring`/`PipelineConfig`, an open `AedbInstance`, and the errors that wrong keys
//! produce (with their whole `source()` chains).
//!
//! The keys are distinctive non-repeating byte patterns, and every formatted string is
//! searched for every 6-byte window of every master key *and of the subkeys derived from
//! them* in lower- and upper-case hex (contiguous and as `{:x?}` / `0x..` lists), as a
//! decimal list (`[u8]` `Debug`), and as raw bytes. A self-test shows the detector finds
//! each form, so the test can fail.

use std::sync::Arc;
use std::time::Duration;

use aedb::{
    AedbConfig, AedbInstance, DatabaseId, Finality, HsmConfig, InMemoryKeyProvider, KeyEpoch,
    KeyProvider, KvKey, KvValue, Namespace, SecretKey, Transaction,
};
use aedb_keys::{DerivationRequest, KeyPurpose, MasterKeyId, SecretString};

/// Distinctive key patterns: no byte repeats within a key. `PROVIDER_KEY_V2` is all
/// printable ASCII, so a raw-byte leak of it would be valid text.
const fn pattern(start: u8, step: u8) -> [u8; 32] {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = start.wrapping_add((i as u8).wrapping_mul(step));
        i += 1;
    }
    k
}

const MANIFEST_KEY: [u8; 32] = pattern(0xA7, 0x3D);
const DATA_KEY: [u8; 32] = pattern(0x3C, 0x47);
const PROVIDER_KEY: [u8; 32] = pattern(0x5E, 0x29);
const PROVIDER_KEY_V2: [u8; 32] = pattern(0x21, 0x03);
const WRONG_KEY: [u8; 32] = pattern(0x11, 0x6B);
const PIN: &str = "pin-7Q9x-Zr4k-Lw2m";

/// Every pattern under which 6 consecutive bytes of `key` could show up in text with its
/// whitespace removed (so pretty-printed, multi-line lists are found too), and the raw
/// bytes (searched in the text as is).
fn leak_patterns(key: &[u8]) -> (Vec<String>, Vec<Vec<u8>>) {
    let mut text = Vec::new();
    let mut raw = Vec::new();
    for w in key.windows(6) {
        let hex: String = w.iter().map(|b| format!("{b:02x}")).collect();
        text.push(hex.to_uppercase());
        text.push(hex);
        let join = |f: &dyn Fn(&u8) -> String| w.iter().map(f).collect::<Vec<_>>().join(",");
        text.push(join(&|b| b.to_string()));
        text.push(join(&|b| format!("{b:x}")));
        text.push(join(&|b| format!("{b:X}")));
        text.push(join(&|b| format!("{b:#x}")));
        text.push(join(&|b| format!("{b:#X}")));
        raw.push(w.to_vec());
    }
    (text, raw)
}

/// Finds the first leak of any of `keys` in `text`.
fn find_leak(text: &str, keys: &[(&str, Vec<u8>)]) -> Option<String> {
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for (name, key) in keys {
        let (forms, raw) = leak_patterns(key);
        if let Some(form) = forms
            .iter()
            .find(|f| contains(squeezed.as_bytes(), f.as_bytes()))
        {
            return Some(format!("{name} leaked as {form:?}"));
        }
        if let Some(bytes) = raw.iter().find(|r| contains(text.as_bytes(), r)) {
            return Some(format!("{name} leaked as raw bytes {bytes:?}"));
        }
    }
    None
}

/// Collects formatted strings and checks them all.
#[derive(Default)]
struct Outputs(Vec<(String, String)>);

impl Outputs {
    fn debug(&mut self, what: &str, value: &dyn std::fmt::Debug) {
        self.0
            .push((format!("{what} {{:?}}"), format!("{value:?}")));
        self.0
            .push((format!("{what} {{:#?}}"), format!("{value:#?}")));
    }

    fn display(&mut self, what: &str, value: &dyn std::fmt::Display) {
        self.0.push((format!("{what} {{}}"), format!("{value}")));
    }

    /// `Display` and `Debug` of an error and of every error in its `source()` chain.
    fn error(&mut self, what: &str, e: &(dyn std::error::Error + 'static)) {
        self.display(what, e);
        self.debug(what, e);
        let mut depth = 0;
        let mut source = e.source();
        while let Some(s) = source {
            depth += 1;
            self.display(&format!("{what} source #{depth}"), s);
            self.debug(&format!("{what} source #{depth}"), s);
            source = s.source();
        }
    }

    fn assert_clean(&self, keys: &[(&str, Vec<u8>)]) {
        assert!(!self.0.is_empty());
        for (what, text) in &self.0 {
            if let Some(leak) = find_leak(text, keys) {
                panic!("{what}: {leak}\n{text}");
            }
        }
    }
}

fn master_keys() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("manifest key", MANIFEST_KEY.to_vec()),
        ("data key", DATA_KEY.to_vec()),
        ("provider key v1", PROVIDER_KEY.to_vec()),
        ("provider key v2", PROVIDER_KEY_V2.to_vec()),
        ("wrong key", WRONG_KEY.to_vec()),
        ("PIN", PIN.as_bytes().to_vec()),
    ]
}

/// Every subkey the engine derives from `master` (as `alias`) for `database`, epoch 1.
fn subkeys(alias: &str, master: [u8; 32], database: DatabaseId) -> Vec<(String, Vec<u8>)> {
    let provider = InMemoryKeyProvider::new(alias, master).expect("provider");
    let id = provider.current_master().expect("master id");
    KeyPurpose::ALL
        .iter()
        .map(|&purpose| {
            let key = provider
                .derive(
                    &id,
                    &DerivationRequest::new(purpose, KeyEpoch::FIRST, database),
                )
                .expect("derive");
            (
                format!("{alias} {purpose} subkey"),
                key.with_bytes(|b| b.to_vec()),
            )
        })
        .collect()
}

fn provider() -> Arc<InMemoryKeyProvider> {
    Arc::new(
        InMemoryKeyProvider::new("test-provider", PROVIDER_KEY)
            .expect("provider")
            .with_version(2, PROVIDER_KEY_V2)
            .expect("version 2"),
    )
}

fn configs() -> Vec<(&'static str, AedbConfig)> {
    vec![
        ("production", AedbConfig::production(MANIFEST_KEY)),
        ("low_latency", AedbConfig::low_latency(MANIFEST_KEY)),
        ("development", AedbConfig::development()),
        (
            "production+checkpoint key",
            AedbConfig::production(MANIFEST_KEY).with_checkpoint_key(DATA_KEY),
        ),
        (
            "low_latency+checkpoint key",
            AedbConfig::low_latency(MANIFEST_KEY).with_checkpoint_key(DATA_KEY),
        ),
        (
            "development+checkpoint key",
            AedbConfig::development().with_checkpoint_key(DATA_KEY),
        ),
        (
            "production+key provider",
            AedbConfig::production(MANIFEST_KEY).with_key_provider(provider()),
        ),
        (
            "development+key provider",
            AedbConfig::development().with_key_provider(provider()),
        ),
    ]
}

#[test]
fn the_detector_finds_every_form_of_a_leak() {
    let keys = master_keys();
    let leaky = [
        format!("{MANIFEST_KEY:?}"),
        format!("{DATA_KEY:x?}"),
        format!("{PROVIDER_KEY:#04x?}"),
        format!("{:#?}", &MANIFEST_KEY[3..12]),
        MANIFEST_KEY.iter().map(|b| format!("{b:02x}")).collect(),
        DATA_KEY.iter().map(|b| format!("{b:02X}")).collect(),
        format!(
            "key={}",
            std::str::from_utf8(&PROVIDER_KEY_V2[4..12]).expect("ASCII")
        ),
        format!("pin {PIN}"),
    ];
    for text in &leaky {
        assert!(find_leak(text, &keys).is_some(), "not detected: {text}");
    }
    // And no false positive on the other keys' formatted forms.
    let others = vec![("only the wrong key", WRONG_KEY.to_vec())];
    for text in &leaky[..6] {
        assert!(find_leak(text, &others).is_none(), "false positive: {text}");
    }
}

#[test]
fn configurations_and_key_holders_print_no_key_bytes() {
    let database = DatabaseId::from_bytes([0x42; 16]);
    let mut out = Outputs::default();
    for (name, config) in configs() {
        out.debug(&format!("AedbConfig {name}"), &config);
    }
    out.debug("SecretKey", &SecretKey::new(MANIFEST_KEY));
    out.debug("SecretString", &SecretString::new(PIN.to_owned()));
    let p = provider();
    out.debug("InMemoryKeyProvider", &*p);
    out.display("InMemoryKeyProvider::describe", &p.describe());
    out.display(
        "InMemoryKeyProvider::current_master",
        &p.current_master().expect("master"),
    );
    let missing = p
        .derive(
            &MasterKeyId::new("test-provider", 3).expect("id"),
            &DerivationRequest::new(KeyPurpose::Wal, KeyEpoch::FIRST, database),
        )
        .expect_err("no version 3");
    out.error("KeyError (unknown version)", &missing);
    let derived = p
        .derive(
            &p.current_master().expect("master"),
            &DerivationRequest::new(KeyPurpose::Checkpoint, KeyEpoch::FIRST, database),
        )
        .expect("derive");
    out.debug("derived SecretKey", &derived);
    out.debug(
        "HsmConfig",
        &HsmConfig::new(
            "/nonexistent/libsofthsm2.so",
            "aedb-test-token",
            SecretString::new(PIN.to_owned()),
            MasterKeyId::new("aedb-master", 1).expect("id"),
        ),
    );

    let cipher = aedb_wal::WalCipher::new(SecretKey::new(DATA_KEY), KeyEpoch::FIRST, database);
    out.debug("WalCipher", &cipher);
    let wal_keyring =
        aedb_wal::WalKeyring::from_keys(database, [(KeyEpoch::FIRST, SecretKey::new(DATA_KEY))]);
    out.debug("WalKeyring", &wal_keyring);
    let wal = aedb_wal::WalConfig {
        cipher: Some(cipher),
        keyring: Some(wal_keyring),
        ..aedb_wal::WalConfig::default()
    };
    out.debug("WalConfig", &wal);
    let manifest_provider: Arc<dyn KeyProvider> =
        Arc::new(InMemoryKeyProvider::new("aedb-manifest", MANIFEST_KEY).expect("provider"));
    let keyring = aedb_actors::Keyring::new(manifest_provider, Some(p.clone()));
    out.debug("actors Keyring", &keyring);
    out.debug(
        "PipelineConfig",
        &aedb_actors::PipelineConfig {
            wal,
            recovery: aedb_wal::RecoveryMode::Strict,
            flush_interval: Duration::from_millis(5),
            sequencer_queue: 16,
            wal_queue: 16,
            max_batch: 16,
            commit_spin: Duration::ZERO,
            keyring,
            checkpoints: aedb_actors::CheckpointPolicy {
                wal_bytes: 1 << 20,
                interval: Duration::from_secs(60),
            },
            checkpoint_on_shutdown: true,
            manifest_compact_after: 4096,
            storage: aedb_actors::StorageConfig::default(),
        },
    );

    let mut keys = master_keys();
    let derived_bytes = derived.with_bytes(|b| b.to_vec());
    keys.push(("derived checkpoint subkey", derived_bytes));
    for (alias, master) in [
        ("aedb-manifest", MANIFEST_KEY),
        ("aedb-data", DATA_KEY),
        ("test-provider", PROVIDER_KEY_V2),
    ] {
        for (name, key) in subkeys(alias, master, database) {
            keys.push((Box::leak(name.into_boxed_str()), key));
        }
    }
    out.assert_clean(&keys);
    println!("{} formatted strings checked, no key bytes", out.0.len());
}

fn ns() -> Namespace {
    Namespace::parse("secret", "main").expect("namespace")
}

/// A sealed database holding one commit and, if `checkpoint`, one checkpoint.
fn database(config: AedbConfig, checkpoint: bool) -> (tempfile::TempDir, DatabaseId) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = AedbInstance::open(dir.path(), config).expect("open");
    db.create_project("secret").expect("project");
    db.create_scope("secret", "main").expect("scope");
    let tx = Transaction::new().kv_put(
        &ns(),
        KvKey::new("k").expect("key"),
        KvValue::new("v").expect("value"),
    );
    db.commit_with(tx, Finality::Durable).expect("commit");
    if checkpoint {
        db.checkpoint_now().expect("checkpoint");
    }
    let id = db.database_id();
    db.shutdown().expect("shutdown");
    (dir, id)
}

#[test]
fn wrong_key_errors_and_open_instances_print_no_key_bytes() {
    let mut out = Outputs::default();
    let mut keys = master_keys();
    let mut ids = Vec::new();
    let sealed = || AedbConfig::production(MANIFEST_KEY).with_checkpoint_key(DATA_KEY);

    // With a checkpoint, and with the WAL only (so the wrong data key meets a sealed batch).
    for checkpoint in [true, false] {
        let (dir, id) = database(sealed(), checkpoint);
        ids.push(id);
        let db = AedbInstance::open(dir.path(), sealed()).expect("the right keys open it");
        out.debug("AedbInstance", &db);
        db.shutdown().expect("shutdown");
        let attempts = [
            (
                "wrong manifest key",
                AedbConfig::production(WRONG_KEY).with_checkpoint_key(DATA_KEY),
            ),
            (
                "wrong data key",
                AedbConfig::production(MANIFEST_KEY).with_checkpoint_key(WRONG_KEY),
            ),
            ("no data key", AedbConfig::production(MANIFEST_KEY)),
            ("development profile", AedbConfig::development()),
            (
                "wrong key provider",
                AedbConfig::production(MANIFEST_KEY).with_key_provider(provider()),
            ),
        ];
        for (name, config) in attempts {
            let what = format!("OpenError ({name}, checkpoint: {checkpoint})");
            match AedbInstance::open(dir.path(), config) {
                Err(e) => out.error(&what, &e),
                Ok(db) => panic!("{what}: opened a sealed database: {db:?}"),
            }
        }
    }
    let (dir, id) = database(
        AedbConfig::production(MANIFEST_KEY).with_key_provider(provider()),
        true,
    );
    ids.push(id);
    let err = AedbInstance::open(
        dir.path(),
        AedbConfig::production(MANIFEST_KEY).with_checkpoint_key(DATA_KEY),
    )
    .expect_err("a provider-keyed database refuses the wrong keys");
    out.error("OpenError (provider database, static keys)", &err);

    for id in ids {
        for (alias, master) in [
            ("aedb-manifest", MANIFEST_KEY),
            ("aedb-data", DATA_KEY),
            ("test-provider", PROVIDER_KEY_V2),
            ("aedb-manifest", WRONG_KEY),
            ("aedb-data", WRONG_KEY),
        ] {
            for (name, key) in subkeys(alias, master, id) {
                keys.push((Box::leak(name.into_boxed_str()), key));
            }
        }
    }
    out.assert_clean(&keys);
    for (what, text) in out.0.iter().filter(|(w, _)| w.ends_with("{}")) {
        println!("{what}: {text}");
    }
}

#[test]
fn secure_instances_sessions_and_audit_exports_print_no_key_bytes() {
    use aedb::{CallerId, ChannelBinding, Permission, SecureConfig};
    const CHANNEL: [u8; 32] = pattern(0x63, 0x1F);
    let mut out = Outputs::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = CallerId::new("root").expect("caller");
    let profile = aedb::ServerProfileId::from_bytes([5; 16]);
    let environment = aedb::ServerEnvironmentProfile {
        hostname: "h".into(),
        os: "linux".into(),
        os_version: "6".into(),
        binary_sha256: [1; 32],
        tls_certificate_fingerprint: Vec::new(),
        deployment: "d".into(),
        region: String::new(),
    };
    let secure = SecureConfig::new(root.clone()).with_sessions(
        aedb::IhpConfig::production(),
        profile,
        environment,
    );
    out.debug("SecureConfig", &secure);
    let config = AedbConfig::production(MANIFEST_KEY).with_checkpoint_key(DATA_KEY);
    let db = AedbInstance::open_secure(dir.path(), config, secure).expect("open");
    out.debug("secure AedbInstance", &db);
    db.create_project_as(&root, "p").expect("project");
    db.create_scope_as(&root, "p", "s").expect("scope");
    let change = db
        .grant_as(
            &root,
            &root,
            Permission::KvRead {
                ns: ns(),
                prefix: Vec::new(),
            },
            false,
        )
        .expect("grant");
    out.debug("AuthzChange", &change);
    let channel = ChannelBinding::from_slice(&CHANNEL).expect("binding");
    out.debug("ChannelBinding", &channel);
    let capsule = db
        .issue_session_as(&root, &root, Some(&channel))
        .expect("issue");
    out.debug("SessionCapsule", &capsule);
    db.verify_session(capsule.as_bytes(), Some(&channel))
        .expect("verify");
    for (what, result) in [
        (
            "replayed capsule",
            db.verify_session(capsule.as_bytes(), Some(&channel)),
        ),
        (
            "unbound capsule",
            db.verify_session(capsule.as_bytes(), None),
        ),
        ("garbage capsule", db.verify_session(&[0u8; 255], None)),
    ] {
        let e = result.expect_err(what);
        out.error(what, &e);
    }
    let anonymous = db.kv_get(&ns(), "k").expect_err("anonymous");
    out.error("anonymous read", &anonymous);
    let export = dir.path().join("audit.jsonl");
    db.export_audit_as(&root, &export).expect("export");
    let exported = std::fs::read_to_string(&export).expect("read export");
    out.display("audit export file", &exported);
    let id = db.database_id();
    db.shutdown().expect("shutdown");

    let mut keys = master_keys();
    keys.push(("channel binding", CHANNEL.to_vec()));
    for (alias, master) in [("aedb-manifest", MANIFEST_KEY), ("aedb-data", DATA_KEY)] {
        for (name, key) in subkeys(alias, master, id) {
            keys.push((Box::leak(name.into_boxed_str()), key));
        }
    }
    out.assert_clean(&keys);
}
