//! The real `aedb` binary on real directories: exit codes, `--json`, keys from the
//! environment and key files, backup/restore/check/verify/inspect end to end.

use std::path::Path;
use std::process::{Command, Output};

use aedb::{AedbConfig, AedbInstance, Namespace};

const KEY: [u8; 32] = [0x11; 32];
const DATA_KEY: [u8; 32] = [0x22; 32];

fn aedb(args: &[&str]) -> Output {
    aedb_with(args, Some((KEY, DATA_KEY)))
}

fn aedb_with(args: &[&str], keys: Option<([u8; 32], [u8; 32])>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aedb"));
    cmd.args(args)
        .env_remove("AEDB_MANIFEST_KEY")
        .env_remove("AEDB_DATA_KEY");
    if let Some((m, d)) = keys {
        cmd.env("AEDB_MANIFEST_KEY", hex::encode(m))
            .env("AEDB_DATA_KEY", hex::encode(d));
    }
    cmd.output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn make_db(dir: &Path, from: u32, n: u32) {
    let db = AedbInstance::open(
        dir,
        AedbConfig::production(KEY).with_checkpoint_key(DATA_KEY),
    )
    .unwrap();
    if from == 0 {
        db.create_project("p").unwrap();
        db.create_scope("p", "s").unwrap();
    }
    let ns = Namespace::parse("p", "s").unwrap();
    for i in from..from + n {
        db.kv_put(&ns, format!("k{i}"), format!("v{i}")).unwrap();
    }
    db.shutdown().unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn j_str(v: &serde_json::Value) -> String {
    v.as_str().unwrap().to_owned()
}

/// Every `sha256`, `hash`, `replaces_head` and `head mac` value in `text` is 64 lowercase
/// hex digits (not a decimal byte array), and there is at least one.
fn assert_hashes_are_hex(text: &str) {
    let mut seen = 0;
    for label in ["sha256: ", "hash: ", "replaces_head: ", "head mac "] {
        for (at, _) in text.match_indices(label) {
            let value: String = text[at + label.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            assert!(
                value.len() == 64
                    && value
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{label:?} is followed by {value:?}, not 64 lowercase hex digits:\n{text}"
            );
            seen += 1;
        }
    }
    assert!(seen > 0, "no hash printed:\n{text}");
    assert!(!text.contains(": ["), "a byte array is printed:\n{text}");
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["check", "--help"],
        vec!["check", "invariants", "--help"],
        vec!["check", "parity", "--help"],
        vec!["verify", "--help"],
        vec!["backup", "--help"],
        vec!["backup", "full", "--help"],
        vec!["backup", "incremental", "--help"],
        vec!["backup", "list", "--help"],
        vec!["backup", "verify", "--help"],
        vec!["restore", "--help"],
        vec!["inspect", "--help"],
        vec!["capture", "--help"],
        vec!["compact", "--help"],
        vec!["reseal", "--help"],
    ] {
        let o = aedb(&args);
        assert_eq!(code(&o), 0, "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(code(&aedb(&["check", "invariants"])), 2);
    assert_eq!(code(&aedb(&["no-such-command"])), 2);
    let dir = tempfile::tempdir().unwrap();
    // A malformed key in the environment is a usage error too.
    let o = Command::new(env!("CARGO_BIN_EXE_aedb"))
        .args(["verify", "--data-dir", s(dir.path())])
        .env("AEDB_MANIFEST_KEY", "not-hex")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2);
}

#[test]
fn backup_restore_check_and_inspect_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    make_db(&db, 0, 50);
    let full = dir.path().join("full");
    let o = aedb(&[
        "backup",
        "full",
        "--data-dir",
        s(&db),
        "--out",
        s(&full),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let j = json(&o);
    assert_eq!(j["kind"], "full");
    make_db(&db, 50, 30);
    let inc = dir.path().join("inc");
    let o = aedb(&[
        "backup",
        "incremental",
        "--data-dir",
        s(&db),
        "--parent",
        s(&full),
        "--out",
        s(&inc),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let inc_json = json(&o);
    assert_eq!(inc_json["parent_sha256"], j["manifest_sha256"]);

    let o = aedb(&["backup", "list", "--data-dir", s(&db), "--json"]);
    assert_eq!(code(&o), 0);
    assert_eq!(json(&o)["backups"].as_array().unwrap().len(), 2);

    let o = aedb(&[
        "backup",
        "verify",
        "--backup",
        s(&full),
        "--backup",
        s(&inc),
        "--json",
    ]);
    assert_eq!(code(&o), 0);
    assert_eq!(json(&o)["lsn"], inc_json["last_lsn"]);

    let restored = dir.path().join("restored");
    let o = aedb(&[
        "restore",
        "--strict",
        "--backup",
        s(&full),
        "--backup",
        s(&inc),
        "--target",
        s(&restored),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["lsn"], inc_json["last_lsn"]);

    // Restoring into the now non-empty directory is refused (exit 1).
    let o = aedb(&[
        "restore",
        "--strict",
        "--backup",
        s(&full),
        "--target",
        s(&restored),
    ]);
    assert_eq!(code(&o), 1);

    let o = aedb(&["check", "invariants", "--data-dir", s(&restored), "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    let j = json(&o);
    assert_eq!(j["ok"], true);
    assert!(j["checks"].as_array().unwrap().len() >= 8);

    let o = aedb(&["check", "invariants", "--data-dir", s(&restored)]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("[PASS] manifest HMAC chain"));

    let o = aedb(&[
        "check",
        "parity",
        "--data-dir",
        s(&db),
        "--data-dir",
        s(&restored),
        "--json",
    ]);
    assert_eq!(code(&o), 0);
    assert_eq!(json(&o)["equal"], true);
    let o = aedb(&[
        "check",
        "parity",
        "--data-dir",
        s(&restored),
        "--backup",
        s(&full),
        "--backup",
        s(&inc),
    ]);
    assert_eq!(code(&o), 0);

    let o = aedb(&["verify", "--data-dir", s(&restored), "--json"]);
    assert_eq!(code(&o), 0);
    assert_eq!(json(&o)["lsn"], inc_json["last_lsn"]);

    let o = aedb(&["inspect", "--data-dir", s(&db), "--json"]);
    assert_eq!(code(&o), 0);
    let j = json(&o);
    assert!(!j["wal_segments"].as_array().unwrap().is_empty());
    assert_eq!(j["key_epochs"][0]["epoch"], 1);
    // No compaction dropped history here: every LSN is readable.
    assert_eq!(j["oldest_readable_lsn"], 0, "{j}");
    // The backups are recorded with their manifest hashes, printed as hex.
    let records: Vec<&str> = j["manifest"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let backup_hash = j_str(&inc_json["manifest_sha256"]);
    assert!(
        records
            .iter()
            .any(|r| r.starts_with("BackupTaken") && r.contains(&backup_hash)),
        "{records:?}"
    );
    let o = aedb(&["inspect", "--data-dir", s(&db)]);
    assert_eq!(code(&o), 0);
    assert_hashes_are_hex(&String::from_utf8_lossy(&o.stdout));

    // After more commits the source and the restore differ: exit 1, first difference.
    make_db(&db, 80, 1);
    let o = aedb(&[
        "check",
        "parity",
        "--data-dir",
        s(&db),
        "--data-dir",
        s(&restored),
        "--json",
    ]);
    assert_eq!(code(&o), 1);
    let j = json(&o);
    assert_eq!(j["equal"], false);
    assert!(j["first_difference"].as_str().unwrap().contains("lsn"));
}

#[test]
fn integrity_failures_exit_1_and_keys_come_from_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    make_db(&db, 0, 10);
    // Wrong key: the manifest chain check fails.
    let o = aedb_with(
        &["check", "invariants", "--data-dir", s(&db), "--json"],
        Some(([0x33; 32], DATA_KEY)),
    );
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["ok"], false);
    // The right keys from a key file work without any environment.
    let key_file = dir.path().join("keys");
    std::fs::write(
        &key_file,
        format!(
            "# aedb keys\nmanifest_key = {}\ndata_key = {}\n",
            hex::encode(KEY),
            hex::encode(DATA_KEY)
        ),
    )
    .unwrap();
    let o = aedb_with(
        &[
            "check",
            "invariants",
            "--data-dir",
            s(&db),
            "--key-file",
            s(&key_file),
        ],
        None,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    // A tampered WAL fails verification with exit 1 and a JSON error.
    let wal = std::fs::read_dir(db.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&wal).unwrap();
    bytes[120] ^= 0xff;
    std::fs::write(&wal, bytes).unwrap();
    let o = aedb(&["verify", "--data-dir", s(&db), "--json"]);
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["ok"], false);
    // A held lock is reported, not raced.
    make_db(&dir.path().join("live"), 0, 1);
    let live = AedbInstance::open(
        dir.path().join("live"),
        AedbConfig::production(KEY).with_checkpoint_key(DATA_KEY),
    )
    .unwrap();
    let o = aedb(&[
        "check",
        "invariants",
        "--data-dir",
        s(&dir.path().join("live")),
    ]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("LOCK is held"));
    live.shutdown().unwrap();
}

#[test]
fn audit_export_writes_a_verifiable_jsonl_file_and_tampering_fails_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let root = aedb::CallerId::new("root").unwrap();
    let teller = aedb::CallerId::new("teller").unwrap();
    {
        let db = AedbInstance::open_secure(
            &dir,
            AedbConfig::production(KEY).with_checkpoint_key(DATA_KEY),
            aedb::SecureConfig::new(root.clone()),
        )
        .unwrap();
        db.create_project_as(&root, "p").unwrap();
        db.create_scope_as(&root, "p", "s").unwrap();
        let ns = Namespace::parse("p", "s").unwrap();
        let perm = aedb::Permission::KvWrite {
            ns: ns.clone(),
            prefix: b"t/".to_vec(),
        };
        db.grant_as(&root, &teller, perm, false).unwrap();
        // Outside the granted prefix: denied, as not covered by the teller's grant.
        let err = db.kv_put_as(&teller, &ns, "x", "1").unwrap_err();
        assert!(
            matches!(
                &err,
                aedb::Error::Access(aedb::AccessError::Denied(d))
                    if d.reason() == aedb::DenyReason::NotCovered
            ),
            "{err:?}"
        );
        db.shutdown().unwrap();
    }
    let o = aedb(&["check", "invariants", "--data-dir", s(&dir), "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).contains("chains intact"));
    // A secure database is backed up as a GlobalAdmin (usage error without --caller,
    // a denial for a caller without the right).
    let b = |n: &str| tmp.path().join(n);
    let o = aedb(&[
        "backup",
        "full",
        "--data-dir",
        s(&dir),
        "--out",
        s(&b("b0")),
    ]);
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
    let expected = format!("{} is a secure database: pass --caller NAME", s(&dir));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&expected),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!b("b0").exists(), "nothing was written");
    let o = aedb(&[
        "backup",
        "full",
        "--data-dir",
        s(&dir),
        "--out",
        s(&b("b1")),
        "--caller",
        "teller",
    ]);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("permission denied"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!b("b1").exists(), "a denied backup wrote nothing");
    let o = aedb(&[
        "backup",
        "full",
        "--data-dir",
        s(&dir),
        "--out",
        s(&b("b2")),
        "--caller",
        "root",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["kind"], "full");
    let out = tmp.path().join("audit.jsonl");
    let o = aedb(&[
        "audit",
        "export",
        "--data-dir",
        s(&dir),
        "--out",
        s(&out),
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["ok"], true);
    let text = std::fs::read_to_string(&out).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
        .collect();
    for kind in ["\"bootstrap\"", "\"owner_set\"", "\"grant\"", "\"denied\""] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing in {kinds:?}"
        );
    }
    // A second export to the same file is refused (exports are append-only artefacts).
    let o = aedb(&["audit", "export", "--data-dir", s(&dir), "--out", s(&out)]);
    assert_eq!(code(&o), 1);
    let expected = format!("{}: {}", s(&out), std::io::Error::from_raw_os_error(17));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&expected),
        "expected {expected:?} (EEXIST), got {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        text,
        "the export is unchanged"
    );

    let o = aedb(&["audit", "verify", "--file", s(&out), "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // The wrong key, or an edited row, fails with exit code 1.
    let o = aedb_with(
        &["audit", "verify", "--file", s(&out)],
        Some(([0x99; 32], DATA_KEY)),
    );
    assert_eq!(code(&o), 1);
    // Under the wrong key the very first row fails its MAC.
    let first = aedb::AuditChainError::BadMac {
        table: aedb::AuditTable::Authz,
        seq: 1,
    };
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&first.to_string()),
        "expected {first}, got {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // An edited row fails its MAC: the first row naming the teller.
    let edited: serde_json::Value = text
        .lines()
        .find(|l| l.contains("\"teller\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    assert_eq!(edited["table"], "authz_audit", "{edited}");
    let edited = aedb::AuditChainError::BadMac {
        table: aedb::AuditTable::Authz,
        seq: edited["seq"].as_u64().unwrap(),
    };
    std::fs::write(&out, text.replacen("\"teller\"", "\"mallory\"", 1)).unwrap();
    let o = aedb(&["audit", "verify", "--file", s(&out)]);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stdout));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&edited.to_string()),
        "expected {edited}, got {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `aedb demo` writes its keys beside its data directory (`<dir>.key`, owner-only, hex,
/// never printed), and the other commands find them there without any key option.
#[test]
fn the_demo_directory_works_without_key_options() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("aedb-data").join("demo");
    let o = aedb_with(
        &[
            "demo",
            "--data-dir",
            s(&demo),
            "--accounts",
            "20",
            "--transfers",
            "100",
            "--threads",
            "4",
        ],
        None,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let key_file = dir.path().join("aedb-data").join("demo.key");
    assert!(
        out.contains(&format!("wrote {}", key_file.display())),
        "{out}"
    );
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(text.contains("manifest_key = ") && text.contains("data_key = "));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The key bytes are never printed.
    for line in text.lines().filter(|l| l.contains(" = ")) {
        let hex = line.split(" = ").nth(1).unwrap().trim();
        assert_eq!(hex.len(), 64);
        assert!(!out.contains(hex) && !String::from_utf8_lossy(&o.stderr).contains(hex));
    }

    for args in [
        vec!["inspect", "--data-dir", s(&demo)],
        vec!["verify", "--data-dir", s(&demo)],
        vec!["check", "invariants", "--data-dir", s(&demo)],
    ] {
        let o = aedb_with(&args, None);
        assert_eq!(
            code(&o),
            0,
            "{args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = aedb_with(&["inspect", "--data-dir", s(&demo)], None);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(text.contains("VersionEdit"), "{text}");
    assert_hashes_are_hex(&text);
    let o = aedb_with(&["inspect", "--data-dir", s(&demo), "--json"], None);
    let j = json(&o);
    assert_eq!(j["manifest"]["head_mac"].as_str().unwrap().len(), 64);
    assert_hashes_are_hex(&j["manifest"]["records"].to_string().replace('"', " "));

    // A second run reuses the ledger and its key file.
    let o = aedb_with(
        &[
            "demo",
            "--data-dir",
            s(&demo),
            "--accounts",
            "20",
            "--transfers",
            "10",
            "--threads",
            "2",
        ],
        None,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("read from {}", key_file.display()))
    );

    // Explicit keys win over the file beside the directory: other keys fail the header MAC.
    let other = dir.path().join("other.key");
    std::fs::write(
        &other,
        format!(
            "manifest_key = {}\ndata_key = {}\n",
            "11".repeat(32),
            "22".repeat(32)
        ),
    )
    .unwrap();
    let o = aedb_with(
        &["inspect", "--data-dir", s(&demo), "--key-file", s(&other)],
        None,
    );
    assert_eq!(code(&o), 1);
    let o = aedb_with(&["verify", "--data-dir", s(&demo)], Some((KEY, DATA_KEY)));
    assert_eq!(
        code(&o),
        1,
        "the environment wins over the file beside the directory"
    );
}

#[test]
fn freeze_and_unfreeze_round_trip_on_an_offline_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    make_db(&dir, 0, 3);
    let config = || AedbConfig::production(KEY).with_checkpoint_key(DATA_KEY);
    let ns = Namespace::parse("p", "s").unwrap();

    let o = aedb(&[
        "freeze",
        "--data-dir",
        s(&dir),
        "--reason",
        "incident 9",
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["frozen"], true);
    let o = aedb(&["inspect", "--data-dir", s(&dir), "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["write_freeze"]["frozen"], true);
    assert_eq!(json(&o)["write_freeze"]["reason"], "incident 9");
    let o = aedb(&["inspect", "--data-dir", s(&dir)]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("write freeze: FROZEN by aedb-cli"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    // The offline checks still pass on a frozen directory.
    let o = aedb(&["check", "invariants", "--data-dir", s(&dir)]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    {
        let db = AedbInstance::open(&dir, config()).unwrap();
        let e = db.kv_put(&ns, "k", "v").unwrap_err();
        assert_eq!(e.code(), "commit.frozen");
        assert_eq!(
            db.snapshot()
                .unwrap()
                .kv_get(&ns, b"k0")
                .unwrap()
                .unwrap()
                .value
                .as_bytes(),
            b"v0"
        );
        db.shutdown().unwrap();
    }

    let o = aedb(&["unfreeze", "--data-dir", s(&dir), "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["was_frozen"], true);
    let o = aedb(&["inspect", "--data-dir", s(&dir), "--json"]);
    assert_eq!(json(&o)["write_freeze"]["frozen"], false);
    let db = AedbInstance::open(&dir, config()).unwrap();
    db.kv_put(&ns, "k", "v").unwrap();
    db.shutdown().unwrap();

    // An empty reason is refused without touching the directory.
    let o = aedb(&["freeze", "--data-dir", s(&dir), "--reason", ""]);
    assert_eq!(code(&o), 1, "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn freezing_a_secure_directory_needs_a_global_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let root = aedb::CallerId::new("root").unwrap();
    let config = || AedbConfig::production(KEY).with_checkpoint_key(DATA_KEY);
    AedbInstance::open_secure(&dir, config(), aedb::SecureConfig::new(root.clone()))
        .unwrap()
        .shutdown()
        .unwrap();
    let o = aedb(&["freeze", "--data-dir", s(&dir), "--reason", "r"]);
    assert_eq!(code(&o), 2, "{}", String::from_utf8_lossy(&o.stderr));
    let o = aedb(&[
        "freeze",
        "--data-dir",
        s(&dir),
        "--reason",
        "r",
        "--caller",
        "mallory",
    ]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("permission denied"));
    let o = aedb(&[
        "freeze",
        "--data-dir",
        s(&dir),
        "--reason",
        "r",
        "--caller",
        "root",
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    {
        let db = AedbInstance::open_secure(&dir, config(), aedb::SecureConfig::new(root.clone()))
            .unwrap();
        assert_eq!(db.write_freeze().unwrap().by, "root");
        let rows = db.audit_rows_as(&root, aedb::AuditTable::Authz).unwrap();
        assert!(
            rows.iter()
                .any(|r| r.kind == "write_freeze" && r.subject == "r")
        );
        db.shutdown().unwrap();
    }
    let o = aedb(&["unfreeze", "--data-dir", s(&dir), "--caller", "root"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn capture_copies_a_stopped_directory_that_verify_and_check_accept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    make_db(&data, 0, 50);
    let cap = dir.path().join("capture");
    let o = aedb(&[
        "--json",
        "capture",
        "--data-dir",
        s(&data),
        "--out",
        s(&cap),
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&o);
    assert!(v["files"].as_array().unwrap().len() >= 2, "{v}");
    assert_eq!(v["files"][0]["kind"], "manifest");
    let o = aedb(&["capture", "--verify", s(&cap)]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(code(&aedb(&["verify", "--data-dir", s(&cap)])), 0);
    assert_eq!(
        code(&aedb(&["check", "invariants", "--data-dir", s(&cap)])),
        0
    );
    // A changed byte in a captured file fails the listing (exit 1).
    let manifest = cap.join("MANIFEST");
    let mut bytes = std::fs::read(&manifest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&manifest, bytes).unwrap();
    let o = aedb(&["capture", "--verify", s(&cap)]);
    assert_eq!(code(&o), 1);
    // Capturing into a non-empty directory, or without --out, is refused.
    assert_eq!(
        code(&aedb(&[
            "capture",
            "--data-dir",
            s(&data),
            "--out",
            s(&cap)
        ])),
        1
    );
    assert_eq!(code(&aedb(&["capture", "--data-dir", s(&data)])), 2);
}

#[test]
fn backup_list_dir_shows_chains_and_ages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("db");
    make_db(&data, 0, 20);
    let backups = dir.path().join("backups");
    let full = backups.join("full");
    let inc = backups.join("inc");
    let o = aedb(&["backup", "full", "--data-dir", s(&data), "--out", s(&full)]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    make_db(&data, 20, 10);
    let o = aedb(&[
        "backup",
        "incremental",
        "--data-dir",
        s(&data),
        "--parent",
        s(&full),
        "--out",
        s(&inc),
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let o = aedb(&["--json", "backup", "list", "--dir", s(&backups)]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&o);
    let chains = v["chains"].as_array().unwrap();
    assert_eq!(chains.len(), 1, "{v}");
    let list = chains[0]["backups"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    assert_eq!(list[0]["kind"], "full");
    assert_eq!(list[1]["kind"], "incremental");
    assert!(list[1]["age_secs"].is_u64(), "{v}");
    let o = aedb(&["backup", "list", "--dir", s(&backups)]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("chain 1 (2 backups"));
    assert_eq!(code(&aedb(&["backup", "list"])), 2);
}

/// Issue 13 item 10: one flipped byte in the newest checkpoint of a sealed database.
/// `verify` still recovers (from the older checkpoint) but lists the fallback and exits 1
/// unless `--allow-fallback`; after an `open` the event is recorded in the manifest and
/// `inspect` shows it.
#[test]
fn verify_fails_on_an_integrity_event_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let config = || AedbConfig::production(KEY).with_checkpoint_key(DATA_KEY);
    {
        let i = AedbInstance::open(&db, config()).unwrap();
        i.create_project("p").unwrap();
        i.create_scope("p", "s").unwrap();
        let ns = Namespace::parse("p", "s").unwrap();
        for round in 0..2u32 {
            for k in 0..20 {
                i.kv_put(&ns, format!("k{round}-{k}"), "v").unwrap();
            }
            i.checkpoint_now().unwrap();
        }
        i.shutdown().unwrap();
    }
    let o = aedb(&["verify", "--data-dir", s(&db)]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // `check invariants` authenticates every block of every run file.
    let o = aedb(&["check", "invariants", "--data-dir", s(&db)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 0, "{out}");
    assert!(out.contains("blocks authenticated"), "{out}");
    // A run file the manifest does not list (what a crash between a run's rename and
    // its version edit leaves): recovery removes it, and says so.
    let newest = std::fs::read_dir(db.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .max()
        .unwrap();
    let name = "run-00000000000000000999.ckpt";
    std::fs::copy(&newest, db.join("checkpoints").join(name)).unwrap();

    // Without the flag: exit 1, the event listed (text and JSON).
    let o = aedb(&["verify", "--data-dir", s(&db)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 1, "{out}");
    assert!(out.contains("INTEGRITY ALERT"), "{out}");
    assert!(out.contains("file_skipped"), "{out}");
    assert!(out.contains(name), "the file is named: {out}");
    let o = aedb(&["verify", "--data-dir", s(&db), "--json"]);
    assert_eq!(code(&o), 1);
    let v = json(&o);
    assert_eq!(v["ok"], false);
    assert_eq!(v["integrity_events"][0]["event"], "file_skipped");
    assert_eq!(v["integrity_events"][0]["source"], "dry_run");
    // With the flag: exit 0, still listed.
    let o = aedb(&["verify", "--data-dir", s(&db), "--allow-fallback", "--json"]);
    assert_eq!(code(&o), 0);
    let v = json(&o);
    assert_eq!(v["ok"], true);
    assert_eq!(v["integrity_events"][0]["event"], "file_skipped");

    // An open routes around it too, and records it durably: inspect shows it.
    let i = AedbInstance::open(&db, config()).unwrap();
    assert_eq!(
        i.operational_metrics().recovery_events.get("file_skipped"),
        Some(&1)
    );
    i.shutdown().unwrap();
    assert!(!db.join("checkpoints").join(name).exists());
    let o = aedb(&["inspect", "--data-dir", s(&db), "--json"]);
    assert_eq!(code(&o), 0);
    let v = json(&o);
    assert_eq!(v["recovery_events"][0]["event"], "file_skipped");
    assert_eq!(v["runs"].as_array().map(Vec::len), Some(2), "{v}");
    assert!(v["levels"][0]["runs"] == 2, "{v}");
    let o = aedb(&["inspect", "--data-dir", s(&db)]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("recovery events (integrity alerts)"), "{out}");
    assert!(out.contains("RecoveryEvent"), "{out}");
}

#[test]
fn compact_and_reseal_rewrite_runs_and_keep_every_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let config = || AedbConfig::production(KEY).with_checkpoint_key(DATA_KEY);
    {
        let db = AedbInstance::open(&dir, config()).unwrap();
        db.create_project("p").unwrap();
        db.create_scope("p", "s").unwrap();
        let ns = Namespace::parse("p", "s").unwrap();
        for round in 0..3u32 {
            for k in 0..30 {
                db.kv_put(&ns, format!("k{k:02}"), format!("v{round}"))
                    .unwrap();
            }
            db.checkpoint_now().unwrap();
        }
        db.shutdown().unwrap();
    }
    let runs = |dir: &Path| {
        let v = json(&aedb(&["inspect", "--data-dir", s(dir), "--json"]));
        v["runs"].as_array().cloned().unwrap_or_default()
    };
    assert_eq!(runs(&dir).len(), 3);

    // Three level-0 runs under epoch 1: compaction merges them into one level-1 run,
    // dropping the versions no snapshot needs.
    let o = aedb(&["compact", "--data-dir", s(&dir), "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let v = json(&o);
    assert!(v["compactions"].as_u64() >= Some(1), "{v}");
    assert!(v["dropped_versions"].as_u64() >= Some(60), "{v}");
    for field in [
        "expired_idempotency_records",
        "dropped_table_rows",
        "moved_runs",
        "dropped_runs",
        // A few kilobytes: far below two runs' worth, so nothing is split.
        "subcompactions",
    ] {
        assert_eq!(v[field].as_u64(), Some(0), "{field}: {v}");
    }
    let after = runs(&dir);
    assert!(
        after.iter().all(|r| r["level"].as_u64() >= Some(1)),
        "{after:?}"
    );

    assert!(after.iter().all(|r| r["epoch"] == 1), "{after:?}");

    // After a rotation the merged run is still sealed under epoch 1: `reseal` rewrites
    // it under epoch 2 (epoch 1 is retired once the WAL no longer holds its batches
    // either; here the first segment still does).
    let db = AedbInstance::open(&dir, config()).unwrap();
    assert_eq!(db.rotate_keys().unwrap().get(), 2);
    db.shutdown().unwrap();
    let o = aedb(&["reseal", "--data-dir", s(&dir), "--json"]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(json(&o)["compactions"].as_u64() >= Some(1));
    let after = runs(&dir);
    assert!(after.iter().all(|r| r["epoch"] == 2), "{after:?}");

    let o = aedb(&["check", "invariants", "--data-dir", s(&dir)]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stdout));
    let db = AedbInstance::open(&dir, config()).unwrap();
    let ns = Namespace::parse("p", "s").unwrap();
    let snap = db.snapshot().unwrap();
    assert_eq!(snap.kv_len(&ns).unwrap(), 30);
    assert_eq!(
        snap.kv_get(&ns, b"k07").unwrap().unwrap().value.as_bytes(),
        b"v2"
    );
    db.shutdown().unwrap();
}
