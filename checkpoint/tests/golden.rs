//! Golden checkpoint fixtures (the manifest's are in `aedb-manifest`): the current encoders
//! must reproduce `tests/golden/*.hex` byte for byte,
//! and the stored bytes must still decode. After an *intentional* format change, regenerate
//! with `AEDB_REGEN_GOLDEN=1 cargo test -p aedb-checkpoint --test golden` and review the diff.

use aedb_checkpoint::{GOLDEN_DATABASE_ID, GOLDEN_NONCE, GoldenFixture, golden_fixtures};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
}

fn regenerating() -> bool {
    std::env::var("AEDB_REGEN_GOLDEN").as_deref() == Ok("1")
}

fn render(f: &GoldenFixture) -> String {
    let mut out = format!("# {}\n# {}\n", f.name, f.description);
    for line in f.bytes.chunks(32) {
        out.push_str(&hex::encode(line));
        out.push('\n');
    }
    out
}

fn parse(text: &str) -> Vec<u8> {
    let hex: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(hex).expect("golden file is valid hex")
}

fn stored(name: &str) -> Vec<u8> {
    let path = golden_dir().join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with AEDB_REGEN_GOLDEN=1 to create it",
            path.display()
        )
    });
    parse(&text)
}

#[test]
fn golden_fixtures_match_stored_hex_byte_for_byte() {
    let fixtures = golden_fixtures();
    if regenerating() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        for f in &fixtures {
            std::fs::write(golden_dir().join(format!("{}.hex", f.name)), render(f)).unwrap();
        }
    }
    for f in &fixtures {
        let bytes = stored(&f.name);
        assert!(
            bytes == f.bytes,
            "golden fixture {} changed: the encoder no longer produces the stored bytes.\n\
             If this format change is intentional, bump the version, keep the old decoder, and \
             regenerate with AEDB_REGEN_GOLDEN=1.\nstored:  {}\ncurrent: {}",
            f.name,
            hex::encode(&bytes),
            hex::encode(&f.bytes)
        );
    }
    // No stale fixture files.
    let on_disk: BTreeSet<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".hex")
                .map(String::from)
        })
        .collect();
    let expected: BTreeSet<String> = fixtures.iter().map(|f| f.name.clone()).collect();
    assert_eq!(on_disk, expected);
}

#[test]
fn stored_golden_bytes_decode_with_the_current_decoders() {
    for f in golden_fixtures() {
        let from_disk = GoldenFixture {
            bytes: stored(&f.name),
            ..f.clone()
        };
        from_disk
            .verify_decodes()
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        // And a corrupted copy must not.
        let mut bad = from_disk.clone();
        let mid = bad.bytes.len() / 2;
        bad.bytes[mid] ^= 0x01;
        assert!(
            bad.verify_decodes().is_err(),
            "{}: corrupted copy decoded",
            f.name
        );
    }
}

#[test]
fn fixtures_are_deterministic() {
    let a = golden_fixtures();
    assert_eq!(a, golden_fixtures());
    let names: BTreeSet<&str> = a.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.len(), a.len(), "fixture names are unique");
    for name in [
        "checkpoint_sealed_v1",
        "checkpoint_plaintext_v1",
        "checkpoint_sealed_empty_v1",
    ] {
        assert!(names.contains(name), "missing {name}");
    }
}

#[test]
fn sealed_checkpoint_fixture_has_the_documented_layout() {
    let b = stored("checkpoint_sealed_v1");
    assert_eq!(&b[0..8], b"AEDBCKPT");
    assert_eq!(u16::from_le_bytes([b[8], b[9]]), 1, "version");
    assert_eq!(u16::from_le_bytes([b[10], b[11]]), 96, "header_len");
    assert_eq!(b[12], 1, "algorithm XChaCha20-Poly1305");
    assert_eq!(&b[13..16], &[0, 0, 0], "flags and reserved");
    assert_eq!(
        u32::from_le_bytes(b[16..20].try_into().unwrap()),
        3,
        "epoch"
    );
    assert_eq!(&b[20..36], GOLDEN_DATABASE_ID.as_bytes());
    assert_eq!(u64::from_le_bytes(b[36..44].try_into().unwrap()), 42, "lsn");
    assert_eq!(
        u32::from_le_bytes(b[44..48].try_into().unwrap()),
        16,
        "chunk size"
    );
    assert_eq!(&b[48..72], &GOLDEN_NONCE);
    assert_ne!(&b[72..88], &[0u8; 16], "key check");
    assert_eq!(&b[88..92], &[0; 4]);
    // 40-byte payload in chunks of 16, 16 and 8, each followed by a 16-byte tag.
    assert_eq!(b.len(), 96 + (16 + 16) + (16 + 16) + (8 + 16));
    let plain = stored("checkpoint_plaintext_v1");
    assert_eq!(plain[12], 0, "algorithm plaintext");
    assert_eq!(&plain[72..88], &[0u8; 16], "no key check in plaintext mode");
    assert_eq!(
        &plain[96..112],
        b"aedb golden chec",
        "plaintext chunk 0 is visible"
    );
}
