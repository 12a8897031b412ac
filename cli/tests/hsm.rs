//! The `aedb` binary against a real PKCS#11 token (SoftHSM2, a private token store in a
//! temporary directory prepared by `scripts/softhsm-setup.sh`): `hsm generate-master`,
//! and an HSM-keyed database created, backed up, verified, checked, inspected and
//! restored through the `--hsm-*` options, across a master rotation; `profile new`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Token {
    conf: String,
    module: String,
    label: String,
    pin: String,
}

fn token(store: &Path) -> Token {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/softhsm-setup.sh");
    let out = Command::new("bash")
        .arg(&script)
        .env("AEDB_SOFTHSM_DIR", store)
        .env("AEDB_HSM_TOKEN_LABEL", "aedb-cli-test")
        .output()
        .expect("run the setup script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let var = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("{name} not printed: {stdout}"))
            .replace('\\', "")
    };
    Token {
        conf: var("SOFTHSM2_CONF"),
        module: var("AEDB_PKCS11_MODULE"),
        label: var("AEDB_HSM_TOKEN_LABEL"),
        pin: var("AEDB_HSM_USER_PIN"),
    }
}

fn aedb(t: &Token, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aedb"))
        .args(args)
        .env_remove("AEDB_MANIFEST_KEY")
        .env_remove("AEDB_DATA_KEY")
        .env("SOFTHSM2_CONF", &t.conf)
        .env("AEDB_TEST_PIN", &t.pin)
        .output()
        .expect("run aedb")
}

fn ok(o: &Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn an_hsm_keyed_database_is_operated_from_the_command_line_across_a_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = token(&dir.path().join("softhsm"));
    let alias = format!("cli-{}", std::process::id());
    let hsm = |version: &str| -> Vec<String> {
        [
            "--hsm-module",
            &t.module,
            "--hsm-token",
            &t.label,
            "--hsm-pin-env",
            "AEDB_TEST_PIN",
            "--hsm-master",
            &alias,
            "--hsm-version",
            version,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let run = |args: &[&str], version: &str| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(hsm(version));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        aedb(&t, &refs)
    };

    let o = run(
        &[
            "--json",
            "hsm",
            "generate-master",
            "--alias",
            &alias,
            "--version",
            "1",
        ],
        "1",
    );
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["master"], format!("{alias}:v1"));
    // The same version twice is refused.
    let again = run(
        &[
            "hsm",
            "generate-master",
            "--alias",
            &alias,
            "--version",
            "1",
        ],
        "1",
    );
    assert_eq!(again.status.code(), Some(1));

    // `backup full` opens (and so creates) the database under the HSM master.
    let data = dir.path().join("db");
    let b1 = dir.path().join("b1");
    ok(&run(
        &["backup", "full", "--data-dir", s(&data), "--out", s(&b1)],
        "1",
    ));
    ok(&run(&["verify", "--data-dir", s(&data)], "1"));
    ok(&run(&["check", "invariants", "--data-dir", s(&data)], "1"));
    ok(&run(&["inspect", "--data-dir", s(&data)], "1"));
    // Without the HSM the files do not authenticate.
    let plain = aedb(&t, &["verify", "--data-dir", s(&data)]);
    assert_eq!(plain.status.code(), Some(1));

    // Rotate K_master in the HSM, then open at the new version: a new key epoch.
    ok(&run(
        &[
            "hsm",
            "generate-master",
            "--alias",
            &alias,
            "--version",
            "2",
        ],
        "1",
    ));
    let b2 = dir.path().join("b2");
    ok(&run(
        &["backup", "full", "--data-dir", s(&data), "--out", s(&b2)],
        "2",
    ));
    ok(&run(&["verify", "--data-dir", s(&data)], "2"));
    let restored = dir.path().join("restored");
    ok(&run(
        &[
            "restore",
            "--strict",
            "--backup",
            s(&b1),
            "--target",
            s(&restored),
        ],
        "2",
    ));
    ok(&run(&["verify", "--data-dir", s(&restored)], "2"));
    let cap = dir.path().join("capture");
    ok(&run(
        &["capture", "--data-dir", s(&data), "--out", s(&cap)],
        "2",
    ));
    ok(&run(&["capture", "--verify", s(&cap)], "2"));

    // A missing PIN variable is a usage error.
    let o = Command::new(env!("CARGO_BIN_EXE_aedb"))
        .args(["verify", "--data-dir", s(&data)])
        .args(hsm("2"))
        .env("SOFTHSM2_CONF", &t.conf)
        .env_remove("AEDB_TEST_PIN")
        .output()
        .expect("run aedb");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn profile_new_prints_a_fresh_server_profile_id() {
    let a = Command::new(env!("CARGO_BIN_EXE_aedb"))
        .args(["profile", "new"])
        .output()
        .expect("run");
    let b = Command::new(env!("CARGO_BIN_EXE_aedb"))
        .args(["--json", "profile", "new"])
        .output()
        .expect("run");
    ok(&a);
    ok(&b);
    let a = String::from_utf8_lossy(&a.stdout).trim().to_owned();
    let v: serde_json::Value = serde_json::from_slice(&b.stdout).expect("json");
    let b = v["server_profile_id"].as_str().expect("id").to_owned();
    for id in [&a, &b] {
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(a, b);
}
