//! Every golden capsule reproduces its pinned bytes and decodes with the current code.
//! `AEDB_REGEN_GOLDEN=1` rewrites the engine-pinned fixtures (deliberate format changes
//! only; older versions must stay decodable).

#[test]
fn every_golden_capsule_is_reproduced_and_decodes() {
    let capsules = aedb::golden_capsules();
    let regen = std::env::var_os("AEDB_REGEN_GOLDEN").is_some_and(|v| v == "1");
    let names: Vec<&str> = capsules.iter().map(|c| c.name.as_str()).collect();
    for required in [
        "wal_frame_v1",
        "wal_segment_header_v1",
        "wal_sealed_batch_v1",
        "backup_manifest_full_v1",
        "backup_manifest_incremental_v1",
        "backup_manifest_incremental_v2",
    ] {
        assert!(
            names.contains(&required),
            "{required} missing from {names:?}"
        );
    }
    assert!(names.iter().any(|n| n.starts_with("commit_record_v1_")));
    assert!(names.iter().any(|n| n.starts_with("commit_record_v2_")));
    assert!(names.iter().any(|n| n.contains("checkpoint")));
    assert!(names.iter().any(|n| n.contains("manifest")));
    for capsule in &capsules {
        if regen
            && (capsule.name.starts_with("wal_") || capsule.name.starts_with("backup_manifest_"))
        {
            let path = format!("{}/golden/{}.hex", env!("CARGO_MANIFEST_DIR"), capsule.name);
            std::fs::write(&path, format!("{}\n", hex::encode(&capsule.bytes))).unwrap();
            continue;
        }
        capsule.verify().unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn a_changed_byte_is_caught() {
    let mut capsule = aedb::golden_capsules()
        .into_iter()
        .find(|c| c.name == "wal_sealed_batch_v1")
        .unwrap();
    let last = capsule.bytes.len() - 1;
    capsule.bytes[last] ^= 1;
    assert!(capsule.verify().is_err());
}
