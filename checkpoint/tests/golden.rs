//! Golden checkpoint fixtures (the manifest's are in `aedb-manifest`): the current encoders
//! must reproduce `tests/golden/*.hex` byte for byte,
//! and the stored bytes must still decode. After an *intentional* format change, regenerate
//! with `AEDB_REGEN_GOLDEN=1 cargo test -p aedb-checkpoint --test golden` and review the diff.

use aedb_checkpoint::{
    GOLDEN_DATABASE_ID, GOLDEN_NONCE, GOLDEN_RUN_FILE_ID, GoldenFixture, RUN_FOOTER_LEN,
    RUN_HEADER_LEN, golden_fixtures, golden_hex_bytes,
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

fn stored(name: &str) -> Vec<u8> {
    let path = golden_dir().join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with AEDB_REGEN_GOLDEN=1 to create it",
            path.display()
        )
    });
    golden_hex_bytes(&text).expect("golden file is valid hex")
}

/// (The frozen version-2 run fixtures are read from their hex files, so for them this
/// compares the file with itself; what holds them to the format is that they still
/// decode, below, and the layout test.)
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
        "run_sealed_v2",
        "run_sealed_lz4_v2",
        "run_plaintext_v2",
        "run_sealed_v3",
        "run_sealed_lz4_v3",
        "run_plaintext_v3",
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

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn run_file_fixtures_have_the_documented_layout() {
    for (name, version, sealed, lz4) in [
        ("run_sealed_v2", 2, true, false),
        ("run_sealed_lz4_v2", 2, true, true),
        ("run_plaintext_v2", 2, false, false),
        ("run_sealed_v3", 3, true, false),
        ("run_sealed_lz4_v3", 3, true, true),
        ("run_plaintext_v3", 3, false, false),
    ] {
        let b = stored(name);
        assert_eq!(&b[0..8], b"AEDBCKPT", "{name}");
        assert_eq!(u16::from_le_bytes([b[8], b[9]]), version, "version");
        assert_eq!(u16::from_le_bytes([b[10], b[11]]), 104, "header_len");
        assert_eq!(b[12], u8::from(sealed), "algorithm");
        assert_eq!(b[13], u8::from(lz4), "compression");
        assert_eq!(&b[14..16], &[0, 0], "flags");
        assert_eq!(le_u32(&b, 16), 3, "epoch");
        assert_eq!(&b[20..36], GOLDEN_DATABASE_ID.as_bytes());
        assert_eq!(le_u64(&b, 36), GOLDEN_RUN_FILE_ID, "file id");
        assert_eq!(
            &b[44..68],
            &GOLDEN_NONCE,
            "file nonce: the first nonce drawn"
        );
        assert_eq!(b[68..84] == [0u8; 16], !sealed, "key check");
        assert_eq!((le_u64(&b, 84), le_u64(&b, 92)), (9, 12), "LSN range");
        assert_eq!(le_u32(&b, 100), crc32fast::hash(&b[..100]), "header CRC");

        let f = &b[b.len() - RUN_FOOTER_LEN..];
        assert_eq!(&f[36..44], b"AEDBRUN\0");
        assert_eq!(le_u32(f, 44), crc32fast::hash(&f[..44]), "footer CRC");
        let (index, index_len) = (le_u64(f, 0), le_u32(f, 8));
        let (filter, filter_len) = (le_u64(f, 12), le_u32(f, 20));
        let (meta, meta_len) = (le_u64(f, 24), le_u32(f, 32));
        assert_eq!(index + u64::from(index_len), filter);
        assert_eq!(filter + u64::from(filter_len), meta);
        assert_eq!(
            meta + u64::from(meta_len) + RUN_FOOTER_LEN as u64,
            b.len() as u64
        );
        assert!(index > RUN_HEADER_LEN as u64);
        if sealed {
            // The first block's nonce is the second nonce drawn: 60..77 plus one.
            let mut second = GOLDEN_NONCE;
            second[0] += 1;
            assert_eq!(&b[104..128], &second);
        }
    }
    // In plaintext mode the first data block is readable at offset 104: with a 48-byte
    // target, alpha@12 ("first value", 36 bytes) fills block 0 alone.
    let p = stored("run_plaintext_v2");
    assert_eq!(le_u32(&p, 104), 1, "entries in block 0");
    assert_eq!(u16::from_le_bytes([p[108], p[109]]), 5);
    assert_eq!(&p[110..115], b"alpha");
    assert_eq!(le_u64(&p, 115), 12, "lsn");
    assert_eq!(p[123], 1, "kind Put");
    assert_eq!(le_u32(&p, 124), 11);
    assert_eq!(&p[128..139], b"first value");
    // Then the 16-byte digest, and block 1 starts with its entry count: alpha@9 Delete
    // and beta@10 (4 + 20 + 20 bytes); gamma@11 would pass 48, so it starts block 2.
    assert_eq!(le_u32(&p, 155), 2, "entries in block 1");
    assert_eq!(le_u32(&p, 155 + 44 + 16), 1, "entries in block 2");
    assert_eq!(le_u64(&p, footer_at(&p)), 155 + 44 + 16 + 24 + 16);
}

/// Version 3 with a one-byte partition target: each of the three data blocks is its own
/// partition, whose index blocks and then filter blocks fill the footer's two regions,
/// and whose directory ends the meta block (read here in plaintext mode).
#[test]
fn version_3_fixture_has_the_documented_partition_directory() {
    let p = stored("run_plaintext_v3");
    let f = footer_at(&p);
    let (index, index_len) = (le_u64(&p, f) as usize, le_u32(&p, f + 8) as usize);
    let (filter, filter_len) = (le_u64(&p, f + 12) as usize, le_u32(&p, f + 20) as usize);
    let (meta, meta_len) = (le_u64(&p, f + 24) as usize, le_u32(&p, f + 32) as usize);
    // The data blocks are those of version 2 (same entries, block size and layout).
    assert_eq!(index, 155 + 44 + 16 + 24 + 16);
    // The meta block: fixed fields, first key "alpha", last key "gamma", four u64s,
    // then the directory; the 16-byte digest follows.
    let body = &p[meta..meta + meta_len - 16];
    assert_eq!(le_u32(body, 24), 3, "data blocks");
    let mut at = 28 + 2 + 5 + 2 + 5 + 32;
    assert_eq!(le_u32(body, at), 3, "partitions");
    at += 4;
    let (mut index_sum, mut filter_sum, mut data_sum) = (0, 0, 0);
    for (key, entries) in [(&b"alpha"[..], 1), (b"beta", 2), (b"gamma", 1)] {
        let key_len = u16::from_le_bytes([body[at], body[at + 1]]) as usize;
        assert_eq!(&body[at + 2..at + 2 + key_len], key);
        at += 2 + key_len;
        assert_eq!(le_u32(body, at), 1, "blocks of the partition");
        assert_eq!(le_u64(body, at + 4), entries, "entries of the partition");
        data_sum += le_u64(body, at + 12) as usize;
        // Each partition's index block: one record, in plaintext after the header.
        let index_at = index + index_sum;
        assert_eq!(le_u32(&p, index_at), 1, "index records");
        index_sum += le_u32(body, at + 20) as usize;
        filter_sum += le_u32(body, at + 24) as usize;
        at += 28;
    }
    assert_eq!(at, body.len(), "the directory ends the meta block");
    assert_eq!(data_sum, index - RUN_HEADER_LEN);
    assert_eq!((index_sum, filter_sum), (index_len, filter_len));
    assert_eq!(index + index_len, filter);
}

/// Where a run file's footer starts (its first field is the index offset).
fn footer_at(b: &[u8]) -> usize {
    b.len() - RUN_FOOTER_LEN
}
