//! Golden manifest fixtures: the current encoders must reproduce `tests/golden/*.hex` byte
//! for byte,
//! and the stored bytes must still decode. After an *intentional* format change, regenerate
//! with `AEDB_REGEN_GOLDEN=1 cargo test -p aedb-manifest --test golden` and review the diff.

use aedb_manifest::{
    GOLDEN_DATABASE_ID, GoldenExpectation, GoldenFixture, RecordKind, golden_fixtures,
};
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
fn fixtures_are_deterministic_and_cover_every_record_kind() {
    let a = golden_fixtures();
    assert_eq!(a, golden_fixtures());
    let names: BTreeSet<&str> = a.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.len(), a.len(), "fixture names are unique");
    for kind in RecordKind::ALL {
        let name = format!("manifest_record_{}_v1", kind.name());
        assert!(names.contains(name.as_str()), "missing {name}");
    }
    for name in [
        "manifest_header_v1",
        "manifest_file_v1",
        "manifest_file_with_epoch_retirement_v1",
        "manifest_file_with_recovery_event_v1",
        "manifest_file_with_version_edits_v1",
    ] {
        assert!(names.contains(name), "missing {name}");
    }
    let file = a
        .iter()
        .find(|f| f.name == "manifest_file_with_version_edits_v1")
        .unwrap();
    match &file.expected {
        GoldenExpectation::ManifestFile { records } => {
            let kinds: BTreeSet<u8> = records.iter().map(|r| r.kind().id()).collect();
            assert_eq!(kinds.len(), RecordKind::ALL.len());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn manifest_fixtures_have_the_documented_layout() {
    let m = stored("manifest_header_v1");
    assert_eq!(&m[0..8], b"AEDBMNFT");
    assert_eq!(m.len(), 64);
    assert_eq!(&m[16..32], GOLDEN_DATABASE_ID.as_bytes());
    let r = stored("manifest_record_segment_retired_v1");
    assert_eq!(
        u32::from_le_bytes(r[0..4].try_into().unwrap()),
        9,
        "body_len: kind + u64"
    );
    assert_eq!(r[8], 4, "kind SegmentRetired");
    assert_eq!(r.len(), 8 + 9 + 32);
}
