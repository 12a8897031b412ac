//! Regenerates the checked-in seed corpora, `fuzz/corpus/<target>/`, from the golden
//! fixtures and from files the real code writes:
//!
//! ```sh
//! cd fuzz && cargo run --release --example gen_corpus
//! ```
//!
//! Sources: `aedb::golden_capsules()` (WAL frame, segment header and sealed batch,
//! commit records, sealed/plaintext checkpoints, run files of versions 2 and 3, manifest
//! header, files and every record kind, backup manifests of versions 1 and 2, the IHP
//! session capsule); a secure engine instance in a temporary directory (schema, KV and
//! table commits, a failed assertion, grants, a checkpoint, a backup, an audit export),
//! whose plaintext WAL segments, commit records, run files, manifest, backup manifest
//! and audit export are taken as they are; `WalWriter` with small segments and a
//! fixed-nonce cipher (sealed and rotated segments over the real commit records);
//! `Manifest` under the golden key (every record kind, compaction, a torn tail);
//! full-state checkpoints (the format older databases migrate from) of the replayed
//! records sealed under the fuzz key; run files (checkpoint format version 3) written by
//! `RunWriter` and their block plaintexts; and policy records from
//! `aedb_authz::PolicyState`.
//!
//! Each target directory is emptied and rewritten. Everything keyed uses the fixed
//! keys of `aedb_fuzz`, so the seeds get past the MACs the targets check. The engine's
//! files carry a fresh database id and timestamps, so a rerun changes some bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fs;
use std::path::{Path, PathBuf};

use aedb::backup::BACKUP_MANIFEST_FILE;
use aedb::{
    AedbConfig, AedbInstance, Assertion, AuditRow, CallerId, ColumnDef, ColumnName, ColumnType,
    KvKey, KvValue, Namespace, Numeric, Permission, SecureConfig, TableName, TableSchema,
    Transaction, Value,
};
use aedb_authz::PolicyState;
use aedb_checkpoint::{
    CheckpointMeta, FixedNonce, GOLDEN_EPOCH, GOLDEN_LSN, seal_checkpoint_to_vec,
};
use aedb_fuzz::{
    FUZZ_DB, FUZZ_KEY, FUZZ_NONCE, WAL_EPOCH, WAL_SEQ, fuzz_key, join_pieces, manifest_key,
    render_audit_jsonl,
};
use aedb_manifest::{LiveState, ManifestRecord};
use aedb_model::{CommitRecord, State};
use aedb_types::{KeyEpoch, Lsn};
use aedb_wal::reader::ScanEnd;
use aedb_wal::{
    FrameKind, NonceSource, SegmentSeq, WalCipher, WalConfig, WalWriter, decode_frame,
    scan_segment, seal_batch,
};

/// Seeds per target, by file name.
#[derive(Default)]
struct Corpus(BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>);

impl Corpus {
    fn add(&mut self, target: &'static str, name: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        self.0
            .entry(target)
            .or_default()
            .insert(name.into(), bytes.into());
    }

    fn write(&self, root: &Path) {
        for (target, seeds) in &self.0 {
            let dir = root.join(target);
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create corpus dir");
            let mut total = 0;
            for (name, bytes) in seeds {
                fs::write(dir.join(name), bytes).expect("write seed");
                total += bytes.len();
            }
            println!("{target:>20}: {:>3} seeds, {total:>7} bytes", seeds.len());
        }
    }
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("aedb-gen-corpus-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The files `<number>.<extension>` in `dir` (WAL segments, checkpoints), by number.
/// (Read directly rather than through the crates' directory helpers, whose file-system
/// parameters change more often than the file names.)
fn numbered_files(dir: &Path, extension: &str) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == extension))
        .filter_map(|path| {
            let n = path.file_stem()?.to_str()?.parse().ok()?;
            Some((n, path))
        })
        .collect();
    out.sort();
    out
}

/// The file with zero padding after its last non-zero byte cut to `keep` zeros.
fn trim_zeros(bytes: &[u8], keep: usize) -> Vec<u8> {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    bytes[..(end + keep).min(bytes.len())].to_vec()
}

fn golden(c: &mut Corpus) {
    for capsule in aedb::golden_capsules() {
        let name = capsule.name.as_str();
        let bytes = capsule.bytes.clone();
        let seed = format!("golden-{name}");
        match name {
            "wal_frame_v1" => c.add("wal_frame", seed, bytes),
            "wal_segment_header_v1" => c.add("wal_segment_header", seed, bytes),
            "wal_sealed_batch_v1" => {
                let frame = decode_frame(&bytes).expect("golden frame");
                c.add("wal_sealed_batch", seed.clone(), frame.payload);
                c.add("wal_frame", seed, bytes);
            }
            n if n.starts_with("commit_record_v") => c.add("commit_record", seed, bytes),
            n if n.starts_with("checkpoint_") => c.add("checkpoint_file", seed, bytes),
            n if n.starts_with("run_") => c.add("run_file", seed, bytes),
            n if n.starts_with("manifest_record_") => {
                // A frame chained after the golden header: its body is a record.
                let body = bytes[8..bytes.len() - 32].to_vec();
                c.add("manifest", format!("{seed}-body"), body.clone());
                c.add(
                    "manifest_records",
                    seed.clone(),
                    [&[0u8, 0, 0][..], &join_pieces(&[&body])].concat(),
                );
                c.add("manifest", seed, bytes);
            }
            n if n.starts_with("manifest_") => c.add("manifest", seed, bytes),
            // Versions 1 and 2 (WAL tails, an incremental's run set), under the golden
            // key, which is the fuzz key.
            n if n.starts_with("backup_manifest_") => c.add("backup_manifest", seed, bytes),
            n if n.starts_with("session_capsule") => {
                // Raw (mode 0), on the golden channel (mode 2), and mutated by an all-zero
                // mask, i.e. unchanged (mode 1).
                c.add(
                    "session_capsule",
                    "golden-raw",
                    [&[0u8][..], &bytes].concat(),
                );
                c.add(
                    "session_capsule",
                    "golden-channel",
                    [&[2u8][..], &bytes].concat(),
                );
                c.add(
                    "session_capsule",
                    "golden-unmutated",
                    [vec![1u8], vec![0; bytes.len()]].concat(),
                );
                let mut flip = vec![0u8; bytes.len()];
                flip[bytes.len() / 2] = 1;
                c.add(
                    "session_capsule",
                    "golden-one-bit",
                    [vec![1u8], flip].concat(),
                );
            }
            other => println!("(golden capsule {other} not used)"),
        }
    }
}

/// What the engine run leaves behind: its commit records, in LSN order.
struct EngineFiles {
    records: Vec<Vec<u8>>,
}

fn caller(name: &str) -> CallerId {
    CallerId::new(name).expect("caller id")
}

fn engine(c: &mut Corpus) -> EngineFiles {
    let tmp = TempDir::new("engine");
    let data = tmp.0.join("db");
    let config = || {
        // No checkpoint at shutdown, so the WAL the run wrote is still there to take.
        AedbConfig::production([0x11; 32])
            .segment_size(64 * 1024)
            .preallocate(false)
            .checkpoint_on_shutdown(false)
    };
    let root = caller("root");
    let db = AedbInstance::open_secure(&data, config(), SecureConfig::new(root.clone()))
        .expect("open secure instance");
    db.create_project_as(&root, "bank").expect("project");
    db.create_scope_as(&root, "bank", "eu").expect("scope");
    let ns = Namespace::parse("bank", "eu").expect("ns");
    let id = ColumnName::new("id").expect("column");
    let note = ColumnName::new("note").expect("column");
    let schema = TableSchema::new(
        vec![
            ColumnDef::new(id.clone(), ColumnType::U64),
            ColumnDef::new(note.clone(), ColumnType::Text),
        ],
        vec![id.clone()],
    )
    .expect("schema");
    db.create_table_as(&root, &ns, "acct", schema)
        .expect("table");
    let table = TableName::new("acct").expect("table name");
    let key = |k: &str| KvKey::new(k).expect("kv key");
    db.kv_put_as(&root, &ns, "acct/alice", 100u64.to_le_bytes())
        .expect("put");
    let tx = Transaction::new()
        .kv_put(&ns, key("acct/bob"), KvValue::new("fifty").expect("value"))
        .kv_add(&ns, key("counter"), Numeric::U64(7))
        .table_insert(
            &ns,
            &table,
            vec![
                (id.clone(), Value::U64(1)),
                (note.clone(), Value::Text("first".into())),
            ],
        );
    db.commit_as(&root, tx).expect("commit");
    let alice = caller("alice");
    db.grant_as(
        &root,
        &alice,
        Permission::KvRead {
            ns: ns.clone(),
            prefix: b"acct/".to_vec(),
        },
        false,
    )
    .expect("grant");
    db.grant_as(
        &root,
        &alice,
        Permission::TableWrite {
            ns: ns.clone(),
            table: table.clone(),
        },
        true,
    )
    .expect("grant");
    // A failed assertion (an assertion-audit row).
    let failing = Transaction::new()
        .assert(Assertion::KvNumericAtLeast {
            ns: ns.clone(),
            key: key("counter"),
            min: Numeric::U64(1000),
        })
        .kv_sub(&ns, key("counter"), Numeric::U64(1000));
    assert!(db.commit_as(&root, failing).is_err());
    db.checkpoint_now_as(&root).expect("checkpoint");
    let tx = Transaction::new()
        .kv_delete(&ns, key("acct/bob"))
        .table_upsert(
            &ns,
            &table,
            vec![
                (id.clone(), Value::U64(2)),
                (note, Value::Text("second".into())),
            ],
        );
    db.commit_as(&root, tx).expect("commit");
    let export = tmp.0.join("audit.jsonl");
    db.export_audit_as(&root, &export).expect("audit export");
    let backup = tmp.0.join("backup");
    db.backup_full_as(&root, &backup, &mut |_, _| {})
        .expect("backup");
    let database = db.database_id();
    db.shutdown().expect("shutdown");

    // The WAL: the (open) segment as written, its frames, and the commit records.
    let mut records = Vec::new();
    let wal = numbered_files(&data.join(aedb::WAL_DIR), "wal");
    for (seq, path) in &wal {
        let bytes = trim_zeros(&fs::read(path).expect("read segment"), 16);
        let mut frames = Vec::new();
        let scan = scan_segment::<Infallible>(&bytes, true, |f| {
            let mut frame = Vec::new();
            aedb_wal::encode_frame(f.lsn, f.kind, f.payload, &mut frame).expect("frame");
            frames.push(frame);
            if f.kind == FrameKind::Commit {
                records.push(f.payload.to_vec());
            }
            Ok(())
        })
        .expect("scan engine segment");
        assert!(
            !matches!(scan.end, ScanEnd::Damaged(_)),
            "engine segment damaged"
        );
        c.add(
            "wal_segment_header",
            format!("engine-seg{seq}"),
            &bytes[..64],
        );
        if bytes.len() <= 48 * 1024 {
            c.add(
                "wal_segment_scan",
                format!("engine-seg{seq}"),
                bytes.clone(),
            );
        }
        for (i, frame) in frames.iter().enumerate().take(6) {
            c.add(
                "wal_frame",
                format!("engine-seg{seq}-frame{i}"),
                frame.clone(),
            );
        }
    }
    assert!(!records.is_empty(), "the engine wrote no commit records");
    let distinct: BTreeSet<&Vec<u8>> = records.iter().collect();
    for (i, record) in distinct.iter().enumerate().take(32) {
        c.add("commit_record", format!("engine-{i:02}"), (*record).clone());
    }

    // The run files the checkpoint wrote (plaintext mode: no checkpoint key is set).
    let runs = numbered_run_files(&data.join("checkpoints"));
    assert!(!runs.is_empty(), "the checkpoint wrote no run file");
    for (i, path) in runs.iter().enumerate() {
        c.add(
            "run_file",
            format!("engine-run-{i}"),
            fs::read(path).expect("read run file"),
        );
    }

    // The engine's own manifest (under its derived key; exercises the header checks).
    c.add(
        "manifest",
        "engine-MANIFEST",
        fs::read(data.join("MANIFEST")).expect("manifest"),
    );
    let backup_bytes = fs::read(backup.join(BACKUP_MANIFEST_FILE)).expect("backup");
    // The same manifest re-encoded under the fuzz key, so it authenticates in the target.
    let decoded =
        aedb::backup::BackupManifest::decode_unverified(&backup_bytes).expect("backup decodes");
    c.add(
        "backup_manifest",
        "engine-full-fuzz-key",
        decoded.manifest.encode(&fuzz_key()),
    );
    c.add("backup_manifest", "engine-full", backup_bytes);

    // The audit export as written, and the same rows re-chained under the fuzz key (so
    // the target's chain verification succeeds on it).
    let text = fs::read_to_string(&export).expect("audit export");
    c.add(
        "audit_export",
        "engine-export",
        [b"\0".as_slice(), text.as_bytes()].concat(),
    );
    let (exported_db, mut rows) = aedb::parse_audit_export(&text).expect("parse export");
    let key = aedb::SecretKey::new(FUZZ_KEY);
    let mut heads: BTreeMap<&'static str, [u8; 32]> = BTreeMap::new();
    for row in &mut rows {
        let prev = heads.entry(row.table.name()).or_insert([0; 32]);
        row.mac = row.compute_mac(&key, prev);
        *prev = row.mac;
    }
    let rechained: String = render_audit_jsonl(exported_db, &rows);
    c.add(
        "audit_export",
        "engine-export-fuzz-key",
        [b"\0".as_slice(), rechained.as_bytes()].concat(),
    );
    let first: Vec<AuditRow> = rows.into_iter().take(1).collect();
    c.add(
        "audit_export",
        "one-row",
        [
            b"\0".as_slice(),
            render_audit_jsonl(exported_db, &first).as_bytes(),
        ]
        .concat(),
    );

    EngineFiles { records }
}

/// The engine's run files (`run-<id>.ckpt`) in `dir`, in file-id order.
fn numbered_run_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read checkpoints dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(aedb_checkpoint::parse_run_file_name)
                .is_some()
        })
        .collect();
    files.sort();
    files
}

/// Sealed and rotated WAL segments over the engine's commit records, from `WalWriter`
/// with 1 KiB segments and a cipher with a fixed key and a counting nonce.
fn wal(c: &mut Corpus, records: &[Vec<u8>]) {
    for (label, sealed) in [("plain", false), ("sealed", true)] {
        let tmp = TempDir::new(&format!("wal-{label}"));
        let dir = tmp.0.join("wal");
        let counter = std::sync::atomic::AtomicU64::new(0);
        let cipher = WalCipher::new(fuzz_key(), KeyEpoch::new(WAL_EPOCH), FUZZ_DB)
            .with_nonce_source(NonceSource::from_fn(move |nonce| {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *nonce = FUZZ_NONCE;
                nonce[..8].copy_from_slice(&n.to_le_bytes());
                Ok(())
            }));
        let config = WalConfig {
            segment_size: 1024,
            preallocate: false,
            cipher: sealed.then_some(cipher),
            ..WalConfig::default()
        };
        let mut writer = WalWriter::create(&dir, config).expect("wal writer");
        let mut lsn = 1;
        for batch in records.chunks(3).take(12) {
            for record in batch {
                if record.len() > 700 {
                    continue;
                }
                writer
                    .append(Lsn::new(lsn), FrameKind::Commit, record)
                    .expect("append");
                lsn += 1;
            }
            writer.flush_and_sync().expect("sync");
        }
        drop(writer);
        let segments = numbered_files(&dir, "wal");
        for (seq, path) in segments.iter().take(3) {
            let bytes = trim_zeros(&fs::read(path).expect("read segment"), 8);
            c.add(
                "wal_segment_header",
                format!("{label}-seg{seq}"),
                &bytes[..64],
            );
            c.add(
                "wal_segment_scan",
                format!("{label}-seg{seq}"),
                bytes.clone(),
            );
            if sealed {
                let frame = decode_frame(&bytes[64..]).expect("first frame");
                c.add(
                    "wal_frame",
                    format!("{label}-seg{seq}-first"),
                    &bytes[64..64 + frame.encoded_len],
                );
            }
        }
        // A torn copy of the last segment: cut mid-frame.
        if let Some((seq, path)) = segments.last() {
            let bytes = trim_zeros(&fs::read(path).expect("read segment"), 0);
            let cut = 64 + (bytes.len() - 64) * 2 / 3;
            c.add(
                "wal_segment_scan",
                format!("{label}-seg{seq}-torn"),
                &bytes[..cut],
            );
        }
    }

    // Sealed batches of real records under the fuzz key and segment, and the
    // `wal_sealed_records` inputs: records mode (with and without tampering), raw mode.
    let small: Vec<&[u8]> = records
        .iter()
        .map(Vec::as_slice)
        .filter(|r| r.len() <= 600)
        .collect();
    for (i, group) in small.chunks(4).take(6).enumerate() {
        let frame = seal_batch(
            &fuzz_key(),
            KeyEpoch::new(WAL_EPOCH),
            FUZZ_DB,
            SegmentSeq::new(WAL_SEQ),
            Lsn::new(10 + i as u64),
            FUZZ_NONCE,
            group,
        )
        .expect("seal");
        let payload = decode_frame(&frame).expect("frame").payload.to_vec();
        c.add("wal_sealed_batch", format!("engine-records-{i}"), payload);
        let joined = join_pieces(group);
        c.add(
            "wal_sealed_records",
            format!("records-{i}"),
            [&[0u8, 0, 0][..], &joined].concat(),
        );
        let mut plaintext = vec![group.len() as u8];
        for record in group {
            plaintext.push(1);
            plaintext.extend_from_slice(&(record.len() as u32).to_le_bytes());
            plaintext.extend_from_slice(record);
        }
        c.add(
            "wal_sealed_records",
            format!("raw-{i}"),
            [&[1u8, 0, 0][..], &plaintext].concat(),
        );
        if i == 0 {
            c.add(
                "wal_sealed_records",
                "records-tampered",
                [&[0x06u8, 0x2a, 0][..], &joined].concat(),
            );
        }
    }
    // The whole engine history in one batch (LSN order, so it replays).
    let history: Vec<&[u8]> = records.iter().map(Vec::as_slice).take(40).collect();
    let joined = join_pieces(&history);
    if joined.len() <= 48 * 1024 {
        c.add(
            "wal_sealed_records",
            "records-history",
            [&[0u8, 0, 0][..], &joined].concat(),
        );
    }
}

/// Snapshots: the empty state and the engine's records replayed; each also
/// sealed into checkpoint files and as `checkpoint_chunks` inputs.
fn snapshots(c: &mut Corpus, files: &EngineFiles) {
    let mut state = State::new();
    for (i, record) in files.records.iter().enumerate() {
        let record = CommitRecord::decode(record).expect("engine record decodes");
        state
            .replay(&record, Lsn::new(i as u64 + 1))
            .expect("engine records replay");
    }
    let replayed = state.to_snapshot_bytes().expect("an in-memory state reads");
    let empty = State::new()
        .to_snapshot_bytes()
        .expect("an in-memory state reads");
    c.add("state_snapshot", "empty", empty.clone());
    c.add("state_snapshot", "engine-replayed", replayed.clone());

    for (name, payload) in [
        ("replayed", &replayed),
        ("empty", &empty),
    ] {
        for (mode, key) in [("sealed", Some(fuzz_key())), ("plaintext", None)] {
            let meta = CheckpointMeta::new(FUZZ_DB, GOLDEN_LSN, GOLDEN_EPOCH).with_chunk_size(256);
            let file =
                seal_checkpoint_to_vec(&meta, key.as_ref(), &mut FixedNonce(FUZZ_NONCE), payload)
                    .expect("seal checkpoint");
            c.add("checkpoint_file", format!("{name}-{mode}-256"), file);
        }
        // chunk selector (size 1 + s % 64, 4096 from 192, 1 MiB at 255), flags, tamper.
        c.add(
            "checkpoint_chunks",
            format!("{name}-sealed-16"),
            [&[15u8, 0, 0, 0][..], payload].concat(),
        );
        c.add(
            "checkpoint_chunks",
            format!("{name}-plaintext-64"),
            [&[63u8, 1, 0, 0][..], payload].concat(),
        );
    }
    let golden = aedb_checkpoint::GOLDEN_PAYLOAD;
    c.add(
        "checkpoint_chunks",
        "golden-sealed-16",
        [&[15u8, 0, 0, 0][..], golden].concat(),
    );
    c.add(
        "checkpoint_chunks",
        "golden-sealed-4096",
        [&[200u8, 0, 0, 0][..], golden].concat(),
    );
    c.add(
        "checkpoint_chunks",
        "golden-sealed-tampered",
        [&[15u8, 0x06, 0x30, 0][..], golden].concat(),
    );
    c.add(
        "checkpoint_chunks",
        "golden-truncated",
        [&[15u8, 0x02, 0x70, 0][..], golden].concat(),
    );
    c.add(
        "checkpoint_chunks",
        "empty-default-chunk",
        vec![255u8, 0, 0, 0],
    );
}

/// Run files (checkpoint format version 2) written by `RunWriter` on a simulated disk
/// under the fuzz key (nonces counting up from the fuzz nonce) and in plaintext mode, with
/// and without LZ4, as `run_file` seeds; the plaintext files' block plaintexts (data,
/// index, filter, meta; LZ4 bodies as they are stored) as `run_block` seeds.
fn runs(c: &mut Corpus) {
    use aedb_checkpoint::{
        Compression, CounterNonce, EntryKind, RunFileMeta, RunOptions, RunWriter,
    };
    let fs = aedb_fs::SimFs::new(0).shared();
    let dir = Path::new("/corpus");
    let mut entries: Vec<(Vec<u8>, u64, EntryKind, Vec<u8>)> = Vec::new();
    for k in 0..40u32 {
        let key = format!("user/{:04}", k * 7).into_bytes();
        for v in (0..(k % 4) + 1).rev() {
            let lsn = u64::from(k) * 10 + u64::from(v) + 1;
            if (k + v) % 5 == 0 {
                entries.push((key.clone(), lsn, EntryKind::Delete, Vec::new()));
            } else {
                let value = format!("value {k} v{v} {}", "x".repeat((k % 9) as usize));
                entries.push((key.clone(), lsn, EntryKind::Put, value.into_bytes()));
            }
        }
    }
    let mut file_id = 100;
    for (mode, sealed) in [("sealed", true), ("plaintext", false)] {
        for (comp, compression) in [("raw", Compression::None), ("lz4", Compression::Lz4)] {
            // One partition per block (a directory of several) and the default.
            for (block_size, partition_size) in [(96usize, 1usize), (96, 4096), (4096, 4096)] {
                file_id += 1;
                let key = fuzz_key();
                let mut w = RunWriter::create(
                    &fs,
                    dir,
                    RunFileMeta {
                        database: FUZZ_DB,
                        file_id,
                        epoch: GOLDEN_EPOCH,
                    },
                    sealed.then_some(&key),
                    Box::new(CounterNonce::new(FUZZ_NONCE)),
                    RunOptions {
                        block_size,
                        bloom_bits_per_key: 10,
                        compression,
                        partition_size,
                    },
                )
                .expect("create run");
                for (k, lsn, kind, v) in &entries {
                    w.add(k, Lsn::new(*lsn), *kind, v).expect("add");
                }
                let info = w.finish().expect("finish run");
                let bytes = aedb_fs::read_file(&*fs, &info.path).expect("read run");
                let name = match partition_size {
                    1 => format!("generated-v3-{mode}-{comp}-{block_size}-partitioned"),
                    _ => format!("generated-v3-{mode}-{comp}-{block_size}"),
                };
                c.add("run_file", name, bytes.clone());
                // (Block extraction below reads a one-partition file's footer regions.)
                if !sealed && partition_size != 1 {
                    run_blocks(c, &format!("{comp}-{block_size}"), &bytes, compression);
                }
            }
        }
    }
    // A hand-made data block: every kind, an empty key and value, LSN extremes.
    let mut block = 3u32.to_le_bytes().to_vec();
    for (key, lsn, kind, value) in [
        (&b""[..], u64::MAX, 1u8, &b"v"[..]),
        (b"", 0, 2, b""),
        (b"k", 5, 1, b""),
    ] {
        block.extend_from_slice(&(key.len() as u16).to_le_bytes());
        block.extend_from_slice(key);
        block.extend_from_slice(&lsn.to_le_bytes());
        block.push(kind);
        block.extend_from_slice(&(value.len() as u32).to_le_bytes());
        block.extend_from_slice(value);
    }
    c.add("run_block", "data-handmade", [&[0u8][..], &block].concat());
    c.add(
        "run_block",
        "all-kinds-handmade",
        [&[5u8][..], &block].concat(),
    );
}

/// Splits a plaintext-mode run file into its blocks (per the footer and the index, each
/// without its 16-byte digest) and adds them as `run_block` seeds with their mode byte.
fn run_blocks(c: &mut Corpus, name: &str, bytes: &[u8], compression: aedb_checkpoint::Compression) {
    let le64 =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8")) as usize;
    let le32 =
        |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4")) as usize;
    let f = &bytes[bytes.len() - 48..];
    let body = |off: usize, len: usize| bytes[off..off + len - 16].to_vec();
    let lz4 = compression == aedb_checkpoint::Compression::Lz4;
    let plain = |b: Vec<u8>| {
        if lz4 {
            aedb_checkpoint::decode_block_body(compression, &b, 1 << 30).expect("lz4 body")
        } else {
            b
        }
    };
    let index = plain(body(le64(f, 0), le32(f, 8)));
    let filter = plain(body(le64(f, 12), le32(f, 20)));
    let meta = plain(body(le64(f, 24), le32(f, 32)));
    let mut blocks = Vec::new();
    let mut p = 4;
    for _ in 0..le32(&index, 0) {
        let key_len = usize::from(u16::from_le_bytes([index[p], index[p + 1]]));
        p += 2 + key_len;
        blocks.push(body(le64(&index, p), le32(&index, p + 8)));
        p += 16;
    }
    let first = blocks.first().cloned().expect("a data block");
    let last = blocks.last().cloned().expect("a data block");
    if lz4 {
        c.add(
            "run_block",
            format!("lz4-first-{name}"),
            [&[1u8][..], &first].concat(),
        );
        c.add(
            "run_block",
            format!("lz4-last-{name}"),
            [&[1u8][..], &last].concat(),
        );
    } else {
        c.add(
            "run_block",
            format!("data-first-{name}"),
            [&[0u8][..], &first].concat(),
        );
        c.add(
            "run_block",
            format!("data-last-{name}"),
            [&[0u8][..], &last].concat(),
        );
        c.add(
            "run_block",
            format!("index-{name}"),
            [&[2u8][..], &index].concat(),
        );
        c.add(
            "run_block",
            format!("filter-{name}"),
            [&[3u8][..], &filter].concat(),
        );
        c.add(
            "run_block",
            format!("meta-{name}"),
            [&[4u8][..], &meta].concat(),
        );
    }
}

/// A manifest image of `records` under the golden key, built by the library's own header
/// and frame encoders (what `Manifest::create`/`append`/`compact` write).
fn manifest_image(records: &[ManifestRecord]) -> Vec<u8> {
    let key = manifest_key();
    let header = aedb_manifest::file::encode_manifest_header(FUZZ_DB, &key);
    let mut prev = [0u8; 32];
    prev.copy_from_slice(&header[32..]);
    let mut bytes = header.to_vec();
    for record in records {
        let (frame, mac) =
            aedb_manifest::file::encode_frame(&key, &prev, record).expect("encode frame");
        bytes.extend_from_slice(&frame);
        prev = mac;
    }
    bytes
}

/// A manifest under the golden key holding every record kind, its compaction, a torn
/// copy, and the bodies as `manifest_records` inputs.
fn manifests(c: &mut Corpus) {
    let records = vec![
        ManifestRecord::DatabaseCreated {
            database_id: FUZZ_DB,
            created_at_unix_ms: 1_700_000_000_000,
        },
        ManifestRecord::KeyEpochChanged {
            epoch: KeyEpoch::new(1),
            master_key_id: "aedb-master:v1".into(),
            at_unix_ms: 1_700_000_000_001,
        },
        ManifestRecord::ServerEnvHash {
            profile_id: "prod-eu-1".into(),
            hash: [0x5E; 32],
        },
        ManifestRecord::SegmentSealed {
            seq: SegmentSeq::new(0),
            first_lsn: Lsn::new(1),
            last_lsn: Lsn::new(40),
            sha256: [0x11; 32],
        },
        ManifestRecord::CheckpointAdded {
            lsn: Lsn::new(40),
            epoch: KeyEpoch::new(1),
            file_name: aedb_checkpoint::checkpoint_file_name(Lsn::new(40)),
            sha256: [0x22; 32],
            len: 4096,
        },
        ManifestRecord::SegmentSealed {
            seq: SegmentSeq::new(1),
            first_lsn: Lsn::new(41),
            last_lsn: Lsn::new(90),
            sha256: [0x33; 32],
        },
        ManifestRecord::KeyEpochChanged {
            epoch: KeyEpoch::new(2),
            master_key_id: "aedb-master:v2".into(),
            at_unix_ms: 1_700_000_100_000,
        },
        ManifestRecord::CheckpointAdded {
            lsn: Lsn::new(90),
            epoch: KeyEpoch::new(2),
            file_name: aedb_checkpoint::checkpoint_file_name(Lsn::new(90)),
            sha256: [0x44; 32],
            len: 8192,
        },
        ManifestRecord::SegmentRetired {
            seq: SegmentSeq::new(0),
        },
        ManifestRecord::CheckpointRetired { lsn: Lsn::new(40) },
        ManifestRecord::KeyEpochRetired {
            epoch: KeyEpoch::new(1),
            at_unix_ms: 1_700_000_200_000,
        },
        ManifestRecord::BackupTaken {
            backup_id: "0123456789abcdef".into(),
            first_lsn: Lsn::new(1),
            last_lsn: Lsn::new(90),
            manifest_sha256: [0x55; 32],
            at_unix_ms: 1_700_000_300_000,
        },
        // Kind 11, last so the bodies before it keep their seed file names.
        ManifestRecord::RecoveryEvent {
            event: aedb_manifest::RecoveryEventKind::CheckpointFallback,
            lsn: Lsn::new(40),
            at_unix_ms: 1_700_000_500_000,
            detail: "checkpoint at lsn 90: authentication failed".into(),
        },
    ];
    let live = LiveState::from_records(FUZZ_DB, &records).expect("consistent records");
    let full = manifest_image(&records);
    c.add("manifest", "generated-full", full.clone());
    let last_start = full.len()
        - (8 + records
            .last()
            .expect("records")
            .encode()
            .expect("encode")
            .len()
            + 32);
    c.add("manifest", "generated-torn", &full[..last_start + 20]);
    c.add(
        "manifest",
        "generated-zero-tail",
        [full.clone(), vec![0; 24]].concat(),
    );
    // Compaction as `Manifest::compact` writes it: `Compacted`, then the live summary.
    let head: [u8; 32] = full[full.len() - 32..].try_into().expect("head MAC");
    let mut compacted = vec![ManifestRecord::Compacted {
        replaces_head: head,
        records_replaced: records.len() as u64,
        at_unix_ms: 1_700_000_400_000,
    }];
    compacted.extend(live.to_records());
    LiveState::from_records(FUZZ_DB, &compacted).expect("compaction restates");
    c.add(
        "manifest",
        "generated-compacted",
        manifest_image(&compacted),
    );

    let bodies: Vec<Vec<u8>> = records
        .iter()
        .map(|r| r.encode().expect("encode"))
        .collect();
    c.add(
        "manifest_records",
        "generated-all",
        [&[0u8, 0, 0][..], &join_pieces(&bodies)].concat(),
    );
    c.add(
        "manifest_records",
        "generated-after-created",
        [&[1u8, 0, 0][..], &join_pieces(&bodies[1..])].concat(),
    );
    c.add(
        "manifest_records",
        "generated-torn",
        [&[3u8, 0x10, 0][..], &join_pieces(&bodies[1..])].concat(),
    );
    c.add(
        "manifest_records",
        "generated-tampered",
        [&[0x0du8, 0x99, 0][..], &join_pieces(&bodies[1..6])].concat(),
    );
    // Out of order: a retirement of something never added (Inconsistent).
    c.add(
        "manifest_records",
        "generated-inconsistent",
        [&[1u8, 0, 0][..], &join_pieces(&[&bodies[8], &bodies[3]])].concat(),
    );
    for (i, body) in bodies.iter().enumerate() {
        c.add("manifest", format!("generated-body-{i:02}"), body.clone());
    }
}

fn authz(c: &mut Corpus) {
    let mut policy = PolicyState::new();
    let root = caller("root");
    let alice = caller("alice");
    let ns = Namespace::parse("bank", "eu").expect("ns");
    policy.bootstrap_admin(root.clone()).expect("bootstrap");
    policy
        .grant(
            &root,
            alice.clone(),
            Permission::ScopeAdmin { ns: ns.clone() },
            true,
        )
        .expect("grant");
    policy
        .grant(
            &alice,
            caller("bob"),
            Permission::KvRead {
                ns: ns.clone(),
                prefix: b"acct/".to_vec(),
            },
            false,
        )
        .expect("grant");
    policy
        .grant(
            &root,
            caller("carol"),
            Permission::TableRead {
                ns,
                table: TableName::new("acct").expect("table"),
            },
            false,
        )
        .expect("grant");
    let records = policy.to_records();
    for (i, record) in records.iter().enumerate() {
        c.add("authz_record", format!("policy-{i}"), record.encode());
    }
    c.add(
        "authz_record",
        "policy-all",
        aedb_authz::encode_records(&records),
    );
}

/// Checks that the seeds reach what they are for: keyed seeds get past the MACs under
/// the targets' fixed keys, and format seeds decode.
fn validate(c: &Corpus) {
    let seeds = |target: &str| c.0.get(target).cloned().unwrap_or_default();
    let key = manifest_key();
    for name in [
        "generated-full",
        "generated-compacted",
        "generated-torn",
        "golden-manifest_file_v1",
    ] {
        let bytes = &seeds("manifest")[name];
        let verified = aedb_manifest::verify_manifest_bytes(Path::new(name), bytes, &key)
            .unwrap_or_else(|e| panic!("manifest seed {name}: {e}"));
        assert_eq!(
            verified.torn_tail.is_some(),
            name.ends_with("torn"),
            "{name}"
        );
    }
    for (name, bytes) in seeds("checkpoint_file") {
        let header = aedb_checkpoint::CheckpointHeader::decode(&bytes).expect("checkpoint header");
        let lookup = |_: KeyEpoch| aedb_keys::EpochKey::Key(fuzz_key());
        let sealed = aedb_checkpoint::open_checkpoint_bytes(
            &bytes,
            header.database_id,
            aedb_checkpoint::OpenMode::Sealed(&lookup),
        );
        let plain = aedb_checkpoint::open_checkpoint_bytes(
            &bytes,
            header.database_id,
            aedb_checkpoint::OpenMode::Plaintext,
        );
        assert!(
            sealed.is_ok() || plain.is_ok(),
            "checkpoint seed {name} opens in neither mode"
        );
    }
    for (name, bytes) in seeds("run_file") {
        let header = aedb_checkpoint::RunHeader::decode(&bytes).expect("run header");
        let fs = aedb_fs::SimFs::new(0);
        let dir = Path::new("/validate");
        aedb_fs::FileSystem::create_dir_all(&*fs, dir).expect("mkdir");
        let path = dir.join(aedb_checkpoint::run_file_name(header.file_id));
        aedb_fs::write_file(&*fs, &path, &bytes).expect("write");
        let sealed =
            aedb_checkpoint::RunFile::open(&*fs, &path, header.database_id, |_| Some(fuzz_key()));
        let plain = aedb_checkpoint::RunFile::open_plaintext(&*fs, &path, header.database_id);
        let run = sealed
            .or(plain)
            .unwrap_or_else(|e| panic!("run seed {name} opens in neither mode: {e}"));
        run.verify()
            .unwrap_or_else(|e| panic!("run seed {name} does not verify: {e}"));
    }
    for (name, bytes) in seeds("run_block") {
        let (mode, body) = bytes.split_first().expect("mode byte");
        let ok = match mode % 8 {
            0 | 5..=7 => aedb_checkpoint::decode_data_block(body).is_ok(),
            1 => aedb_checkpoint::decode_block_body(
                aedb_checkpoint::Compression::Lz4,
                body,
                aedb_checkpoint::MAX_DATA_BLOCK_LEN,
            )
            .is_ok_and(|p| aedb_checkpoint::decode_data_block(&p).is_ok()),
            2 => aedb_checkpoint::decode_run_block(aedb_checkpoint::BlockKind::Index, body).is_ok(),
            3 => {
                aedb_checkpoint::decode_run_block(aedb_checkpoint::BlockKind::Filter, body).is_ok()
            }
            _ => aedb_checkpoint::decode_run_block(aedb_checkpoint::BlockKind::Meta, body).is_ok(),
        };
        assert!(ok, "run block seed {name} does not decode");
    }
    for (name, payload) in seeds("wal_sealed_batch") {
        let first = u64::from_le_bytes(payload[6..14].try_into().expect("8 bytes"));
        let count = u32::from_le_bytes(payload[14..18].try_into().expect("4 bytes"));
        let lsn = Lsn::new(first + u64::from(count) - 1);
        aedb_wal::open_sealed_batch(
            &payload,
            lsn,
            SegmentSeq::new(WAL_SEQ),
            FUZZ_DB,
            &fuzz_key(),
        )
        .unwrap_or_else(|e| panic!("sealed batch seed {name}: {e}"));
    }
    let text = &seeds("audit_export")["engine-export-fuzz-key"];
    let text = std::str::from_utf8(&text[1..]).expect("utf-8");
    let (_, rows) = aedb::parse_audit_export(text).expect("audit seed parses");
    aedb::verify_audit_rows(&rows, |_| Some(aedb::SecretKey::new(FUZZ_KEY)))
        .expect("audit seed verifies under the fuzz key");
    for (name, bytes) in seeds("wal_segment_scan") {
        let scan = scan_segment::<Infallible>(&bytes, true, |_| Ok(()))
            .unwrap_or_else(|_| panic!("segment seed {name}: bad header"));
        let torn = matches!(&scan.end, ScanEnd::Damaged(d) if d.torn);
        assert!(
            torn == name.ends_with("torn") && !matches!(&scan.end, ScanEnd::Damaged(d) if !d.torn),
            "segment seed {name}: {:?}",
            scan.end
        );
    }
    for (name, bytes) in seeds("commit_record") {
        CommitRecord::decode(&bytes).unwrap_or_else(|e| panic!("commit record seed {name}: {e}"));
    }
    for (name, bytes) in seeds("state_snapshot") {
        State::decode_snapshot(&bytes).unwrap_or_else(|e| panic!("snapshot seed {name}: {e}"));
    }
    for (name, bytes) in seeds("backup_manifest") {
        aedb::backup::BackupManifest::decode_unverified(&bytes)
            .unwrap_or_else(|e| panic!("backup manifest seed {name}: {e}"));
    }
    for (name, bytes) in seeds("authz_record") {
        let ok = aedb_authz::PolicyRecord::decode(&bytes).is_ok()
            || aedb_authz::decode_records(&bytes).is_ok();
        assert!(ok, "policy record seed {name} does not decode");
    }
}

/// The storage key space's entries of a small state (`stored_entry`: one length byte,
/// the key, the value).
fn stored_entries(c: &mut Corpus) {
    for (i, (key, value)) in aedb_model::fuzzing::sample_entries().iter().enumerate() {
        let mut seed = vec![u8::try_from(key.len()).expect("a short sample key")];
        seed.extend_from_slice(key);
        seed.extend_from_slice(value);
        c.add("stored_entry", format!("sample-{i}"), seed);
    }
}

/// Targets whose seeds come only from the golden fixtures and the run writer, which
/// `gen_corpus run_file run_block` regenerates without the engine section.
const RUN_TARGETS: [&str; 2] = ["run_file", "run_block"];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let only: Vec<String> = std::env::args().skip(1).collect();
    let mut c = Corpus::default();
    golden(&mut c);
    if only.is_empty() {
        let files = engine(&mut c);
        wal(&mut c, &files.records);
        snapshots(&mut c, &files);
    } else {
        assert!(
            only.iter().all(|t| RUN_TARGETS.contains(&t.as_str())),
            "only {RUN_TARGETS:?} can be regenerated alone"
        );
    }
    runs(&mut c);
    if only.is_empty() {
        manifests(&mut c);
        authz(&mut c);
        stored_entries(&mut c);
        validate(&c);
    } else {
        c.0.retain(|target, _| only.iter().any(|t| t == target));
    }
    c.write(&root);
}
