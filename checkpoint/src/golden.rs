//! Golden fixtures: byte-exact images of the checkpoint file formats (version 1 full
//! checkpoints, version 3 run files), produced from fixed keys and nonces (the
//! manifest's are in `aedb-manifest`), and the version-2 run files this build no longer
//! writes but still reads, frozen as they were written. `tests/golden.rs` compares them
//! with the hex files in `tests/golden/` (regenerate deliberately with
//! `AEDB_REGEN_GOLDEN=1`) and checks that the stored bytes still decode.

use crate::checkpoint_stream::{
    CheckpointMeta, OpenMode, open_checkpoint_bytes, seal_checkpoint_to_vec,
};
use crate::error::CheckpointError;
use crate::nonce::{CounterNonce, FixedNonce, NONCE_LEN};
use crate::run::{Compression, EntryKind, RunFile, RunFileMeta, RunOptions, RunWriter};
use aedb_fs::{FileSystem, SimFs};
use aedb_keys::SecretKey;
use aedb_types::{DatabaseId, KeyEpoch, Lsn};
use std::path::Path;

/// The checkpoint key used by the fixtures (test value, never a real key).
pub const GOLDEN_CHECKPOINT_KEY: [u8; 32] = [0x42; 32];
/// The database id used by the fixtures.
pub const GOLDEN_DATABASE_ID: DatabaseId = DatabaseId::from_bytes([
    0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB, 0xAC, 0xAD, 0xAE, 0xAF,
]);
/// The base nonce used by the checkpoint fixtures.
pub const GOLDEN_NONCE: [u8; NONCE_LEN] = [
    0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F,
    0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77,
];
/// The payload of the checkpoint fixtures: 40 bytes, so 3 chunks of at most 16 bytes.
pub const GOLDEN_PAYLOAD: &[u8] = b"aedb golden checkpoint: three chunks ok.";
/// Chunk size of the checkpoint fixtures.
pub const GOLDEN_CHUNK_SIZE: u32 = 16;
/// LSN of the checkpoint fixtures.
pub const GOLDEN_LSN: Lsn = Lsn::new(42);
/// Key epoch of the checkpoint fixtures.
pub const GOLDEN_EPOCH: KeyEpoch = KeyEpoch::new(3);

/// File id of the run-file fixtures.
pub const GOLDEN_RUN_FILE_ID: u64 = 7;
/// Data-block target size of the run-file fixtures (small, so the entries span blocks).
pub const GOLDEN_RUN_BLOCK_SIZE: usize = 48;
/// Index-partition target size of the version-3 run-file fixtures: 1, so each of the
/// three data blocks is its own partition.
pub const GOLDEN_RUN_PARTITION_SIZE: usize = 1;

/// The version-2 run-file fixtures, as the version-2 writer produced them.
const FROZEN_RUN_V2: [(&str, &str); 3] = [
    (
        "run_sealed_v2",
        include_str!("../tests/golden/run_sealed_v2.hex"),
    ),
    (
        "run_sealed_lz4_v2",
        include_str!("../tests/golden/run_sealed_lz4_v2.hex"),
    ),
    (
        "run_plaintext_v2",
        include_str!("../tests/golden/run_plaintext_v2.hex"),
    ),
];

/// The bytes of a golden hex file (`tests/golden/*.hex`: `#` lines are comments, the
/// rest hex digits and whitespace); `None` if it is not hex.
pub fn golden_hex_bytes(text: &str) -> Option<Vec<u8>> {
    let digits: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    hex::decode(digits).ok()
}

/// A frozen version-2 fixture's bytes and the description line it was stored with.
fn frozen_run_v2(name: &str) -> (Vec<u8>, String) {
    let text = FROZEN_RUN_V2
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, text)| text);
    let description = text
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("# "))
        .unwrap_or_default()
        .to_string();
    // A damaged fixture file decodes to no bytes, which then fail to decode as a run.
    (golden_hex_bytes(text).unwrap_or_default(), description)
}

/// The entries of the run-file fixtures, in run order: two versions of `alpha` (a Put
/// and an older Delete), a Put of `beta` and a Delete of `gamma`.
pub fn golden_run_entries() -> Vec<(Vec<u8>, Lsn, EntryKind, Vec<u8>)> {
    vec![
        (
            b"alpha".to_vec(),
            Lsn::new(12),
            EntryKind::Put,
            b"first value".to_vec(),
        ),
        (
            b"alpha".to_vec(),
            Lsn::new(9),
            EntryKind::Delete,
            Vec::new(),
        ),
        (
            b"beta".to_vec(),
            Lsn::new(10),
            EntryKind::Put,
            b"b".to_vec(),
        ),
        (
            b"gamma".to_vec(),
            Lsn::new(11),
            EntryKind::Delete,
            Vec::new(),
        ),
    ]
}

/// What a fixture must decode to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GoldenExpectation {
    /// A checkpoint file that opens (sealed with [`GOLDEN_CHECKPOINT_KEY`] at
    /// [`GOLDEN_EPOCH`], or plaintext) to `payload`.
    Checkpoint {
        /// Sealed (true) or plaintext mode.
        sealed: bool,
        /// The expected payload.
        payload: Vec<u8>,
    },
    /// A run file (checkpoint format version 2 or 3) with file id [`GOLDEN_RUN_FILE_ID`] at
    /// [`GOLDEN_EPOCH`], sealed with [`GOLDEN_CHECKPOINT_KEY`] or plaintext, that opens,
    /// verifies and holds exactly `entries`.
    RunFile {
        /// Sealed (true) or plaintext mode.
        sealed: bool,
        /// The header's compression.
        compression: Compression,
        /// The expected entries, in order.
        entries: Vec<(Vec<u8>, Lsn, EntryKind, Vec<u8>)>,
    },
}

/// One golden fixture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoldenFixture {
    /// Stable name; the hex file is `tests/golden/<name>.hex`.
    pub name: String,
    /// What the bytes are and how they were produced.
    pub description: String,
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// What they must decode to.
    pub expected: GoldenExpectation,
}

/// A fixture failed to decode to what it should.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GoldenError {
    /// The checkpoint decoder rejected it.
    #[error("golden fixture {name}: {source}")]
    Checkpoint {
        /// Fixture name.
        name: String,
        /// Why.
        #[source]
        source: CheckpointError,
    },
    /// It decoded, but to something else.
    #[error("golden fixture {name} decoded to different content: {what}")]
    Mismatch {
        /// Fixture name.
        name: String,
        /// What differed.
        what: String,
    },
}

fn golden_checkpoint(sealed: bool, payload: &[u8]) -> Vec<u8> {
    let key = SecretKey::new(GOLDEN_CHECKPOINT_KEY);
    let meta = CheckpointMeta::new(GOLDEN_DATABASE_ID, GOLDEN_LSN, GOLDEN_EPOCH)
        .with_chunk_size(GOLDEN_CHUNK_SIZE);
    let key = if sealed { Some(&key) } else { None };
    match seal_checkpoint_to_vec(&meta, key, &mut FixedNonce(GOLDEN_NONCE), payload) {
        Ok(bytes) => bytes,
        // In-memory sealing with a valid fixed configuration has no failure path.
        Err(e) => unreachable!("golden checkpoint cannot fail to seal: {e}"),
    }
}

fn golden_run_dir() -> &'static Path {
    Path::new("/golden/checkpoints")
}

/// The run-file fixture: the golden entries written by [`RunWriter`] on a simulated disk
/// with the golden key (or none), database and epoch, nonces counting up from
/// [`GOLDEN_NONCE`].
fn golden_run(sealed: bool, compression: Compression) -> Vec<u8> {
    let fs = SimFs::new(0).shared();
    let key = SecretKey::new(GOLDEN_CHECKPOINT_KEY);
    let meta = RunFileMeta {
        database: GOLDEN_DATABASE_ID,
        file_id: GOLDEN_RUN_FILE_ID,
        epoch: GOLDEN_EPOCH,
    };
    let options = RunOptions {
        block_size: GOLDEN_RUN_BLOCK_SIZE,
        bloom_bits_per_key: 10,
        compression,
        partition_size: GOLDEN_RUN_PARTITION_SIZE,
    };
    let written = RunWriter::create(
        &fs,
        golden_run_dir(),
        meta,
        sealed.then_some(&key),
        Box::new(CounterNonce::new(GOLDEN_NONCE)),
        options,
    )
    .and_then(|mut w| {
        for (k, lsn, kind, v) in golden_run_entries() {
            w.add(&k, lsn, kind, &v)?;
        }
        w.finish()
    })
    .and_then(|info| {
        aedb_fs::read_file(&*fs, &info.path).map_err(|source| CheckpointError::Io {
            op: "read",
            path: info.path,
            source,
        })
    });
    match written {
        Ok(bytes) => bytes,
        // Writing valid entries to an in-memory disk has no failure path.
        Err(e) => unreachable!("golden run file cannot fail to write: {e}"),
    }
}

/// Every golden fixture of this crate, in a stable order.
pub fn golden_fixtures() -> Vec<GoldenFixture> {
    let mut fixtures = vec![
        GoldenFixture {
            name: "checkpoint_sealed_v1".into(),
            description: format!(
                "checkpoint v1, XChaCha20-Poly1305, key 0x42*32, epoch 3, db a0..af, LSN 42, chunk size 16, nonce 60..77, payload {:?} (3 chunks)",
                String::from_utf8_lossy(GOLDEN_PAYLOAD)
            ),
            bytes: golden_checkpoint(true, GOLDEN_PAYLOAD),
            expected: GoldenExpectation::Checkpoint {
                sealed: true,
                payload: GOLDEN_PAYLOAD.to_vec(),
            },
        },
        GoldenFixture {
            name: "checkpoint_sealed_empty_v1".into(),
            description: "checkpoint v1, XChaCha20-Poly1305, same parameters, empty payload (one empty final chunk)".into(),
            bytes: golden_checkpoint(true, b""),
            expected: GoldenExpectation::Checkpoint {
                sealed: true,
                payload: Vec::new(),
            },
        },
        GoldenFixture {
            name: "checkpoint_plaintext_v1".into(),
            description: "checkpoint v1, plaintext + truncated SHA-256 digests (algorithm 0), same parameters and payload".into(),
            bytes: golden_checkpoint(false, GOLDEN_PAYLOAD),
            expected: GoldenExpectation::Checkpoint {
                sealed: false,
                payload: GOLDEN_PAYLOAD.to_vec(),
            },
        },
        GoldenFixture {
            name: "run_sealed_v3".into(),
            description: format!(
                "run file (checkpoint v3), XChaCha20-Poly1305, no compression, key 0x42*32, epoch 3, db a0..af, file id {GOLDEN_RUN_FILE_ID}, block size {GOLDEN_RUN_BLOCK_SIZE}, partition size {GOLDEN_RUN_PARTITION_SIZE} (three partitions of one block), 10 bloom bits/key, nonces counting up from 60..77; entries alpha@12 Put \"first value\", alpha@9 Delete, beta@10 Put \"b\", gamma@11 Delete"
            ),
            bytes: golden_run(true, Compression::None),
            expected: GoldenExpectation::RunFile {
                sealed: true,
                compression: Compression::None,
                entries: golden_run_entries(),
            },
        },
        GoldenFixture {
            name: "run_sealed_lz4_v3".into(),
            description: "run file (checkpoint v3), same parameters and entries, LZ4 block compression (lz4_flex block format, size prepended)".into(),
            bytes: golden_run(true, Compression::Lz4),
            expected: GoldenExpectation::RunFile {
                sealed: true,
                compression: Compression::Lz4,
                entries: golden_run_entries(),
            },
        },
        GoldenFixture {
            name: "run_plaintext_v3".into(),
            description: "run file (checkpoint v3), plaintext + truncated SHA-256 digests (algorithm 0), no compression, same parameters and entries".into(),
            bytes: golden_run(false, Compression::None),
            expected: GoldenExpectation::RunFile {
                sealed: false,
                compression: Compression::None,
                entries: golden_run_entries(),
            },
        },
    ];
    // Version 2 is read, not written: its fixtures are the bytes the version-2 writer
    // produced (same entries, block size and nonces; one index and one filter block).
    for (name, sealed, compression) in [
        ("run_sealed_v2", true, Compression::None),
        ("run_sealed_lz4_v2", true, Compression::Lz4),
        ("run_plaintext_v2", false, Compression::None),
    ] {
        let (bytes, description) = frozen_run_v2(name);
        fixtures.push(GoldenFixture {
            name: name.into(),
            description,
            bytes,
            expected: GoldenExpectation::RunFile {
                sealed,
                compression,
                entries: golden_run_entries(),
            },
        });
    }
    fixtures
}

impl GoldenFixture {
    /// Decodes `self.bytes` with the current decoders and the golden keys and checks the
    /// result equals `self.expected`.
    ///
    /// # Errors
    /// The decoder's error, or [`GoldenError::Mismatch`].
    pub fn verify_decodes(&self) -> Result<(), GoldenError> {
        let name = || self.name.clone();
        let mismatch = |what: String| GoldenError::Mismatch { name: name(), what };
        match &self.expected {
            GoldenExpectation::Checkpoint { sealed, payload } => {
                let lookup = |e: KeyEpoch| {
                    (e == GOLDEN_EPOCH)
                        .then(|| SecretKey::new(GOLDEN_CHECKPOINT_KEY))
                        .into()
                };
                let mode = if *sealed {
                    OpenMode::Sealed(&lookup)
                } else {
                    OpenMode::Plaintext
                };
                let loaded = open_checkpoint_bytes(&self.bytes, GOLDEN_DATABASE_ID, mode).map_err(
                    |source| GoldenError::Checkpoint {
                        name: name(),
                        source,
                    },
                )?;
                if loaded.payload != *payload {
                    return Err(mismatch("payload differs".into()));
                }
                if loaded.header.lsn != GOLDEN_LSN || loaded.header.epoch != GOLDEN_EPOCH {
                    return Err(mismatch(format!("header {:?}", loaded.header)));
                }
            }
            GoldenExpectation::RunFile {
                sealed,
                compression,
                entries,
            } => {
                let checkpoint = |source| GoldenError::Checkpoint {
                    name: name(),
                    source,
                };
                let fs = SimFs::new(0);
                let path = golden_run_dir().join(crate::run::run_file_name(GOLDEN_RUN_FILE_ID));
                let stored = fs
                    .create_dir_all(golden_run_dir())
                    .and_then(|()| aedb_fs::write_file(&*fs, &path, &self.bytes))
                    .map_err(|source| {
                        checkpoint(CheckpointError::Io {
                            op: "write",
                            path: path.clone(),
                            source,
                        })
                    });
                stored?;
                let run = if *sealed {
                    RunFile::open(&*fs, &path, GOLDEN_DATABASE_ID, |e| {
                        (e == GOLDEN_EPOCH).then(|| SecretKey::new(GOLDEN_CHECKPOINT_KEY))
                    })
                } else {
                    RunFile::open_plaintext(&*fs, &path, GOLDEN_DATABASE_ID)
                }
                .map_err(checkpoint)?;
                run.verify().map_err(checkpoint)?;
                let mut found = Vec::new();
                for p in 0..run.partition_count() {
                    let tables = run.load_partition(p).map_err(checkpoint)?;
                    for b in tables.blocks() {
                        let block = run.read_block(&tables, b).map_err(checkpoint)?;
                        found.extend(
                            block
                                .iter()
                                .map(|e| (e.key.to_vec(), e.lsn, e.kind, e.value.to_vec())),
                        );
                    }
                }
                if found != *entries {
                    return Err(mismatch("entries differ".into()));
                }
                let h = run.header();
                if (h.file_id, h.epoch, h.compression)
                    != (GOLDEN_RUN_FILE_ID, GOLDEN_EPOCH, *compression)
                {
                    return Err(mismatch(format!("header {h:?}")));
                }
            }
        }
        Ok(())
    }
}
