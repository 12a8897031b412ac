//! Recovery benchmark: replay rate (frames/s) of a 1,000,000-frame WAL.
//!
//! Setup (untimed, once per run): 1,000,000 one-put commits (16-byte keys and values,
//! distinct keys, plus the two DDL commits creating the namespace) are committed through
//! the engine (production profile, `Visible` finality, 8 threads, automatic checkpoints
//! disabled so that every open replays the whole WAL), one frame per commit, in 64 MiB
//! preallocated segments.
//!
//! Groups (throughput in frames/s):
//! - `recovery_1M/open`: `AedbInstance::open` in the production profile (checkpoints
//!   disabled), i.e. the full recovery (manifest, segment scan, CRC and chain checks,
//!   record decode, state replay, writer resume), then `shutdown` (untimed).
//! - `recovery_1M/wal_scan_only`: `aedb_wal::verify_quiet`, the WAL read pass alone.
//! - `recovery_1M/wal_scan_decode`: the read pass plus `CommitRecord::decode` of every
//!   frame, without applying it.
//!
//! The two partial figures split the time of `open` into reading, decoding and applying.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench -p aedb-benches --bench recovery`

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aedb::AedbInstance;
use aedb_benches::{Summary, build_wal, no_checkpoint_production, scratch_dir};
use aedb_model::CommitRecord;
use aedb_wal::RecoveryMode;
use criterion::{Criterion, SamplingMode, Throughput};

const COMMITS: u64 = 1_000_000;

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
        .configure_from_args();
    let summary = Summary::default();
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"));

    let t = Instant::now();
    let last_lsn = build_wal(dir.path(), COMMITS, 8);
    let build = t.elapsed();
    let frames = AedbInstance::open(dir.path(), no_checkpoint_production())
        .map(|db| {
            let n = db.recovery_report().frames_replayed;
            db.shutdown().expect("shutdown");
            n
        })
        .expect("first open");
    assert!(frames >= COMMITS, "the WAL holds {frames} frames");
    summary.line(format!(
        "built a WAL of {frames} frames (last LSN {last_lsn}) through the engine in {:.2}s",
        build.as_secs_f64()
    ));
    let wal_dir = dir.path().join(aedb::WAL_DIR);
    let wal_bytes: u64 = std::fs::read_dir(&wal_dir)
        .expect("wal dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    summary.line(format!(
        "WAL files: {:.1} MiB on disk (preallocated)",
        wal_bytes as f64 / (1024.0 * 1024.0)
    ));

    let mut g = c.benchmark_group("recovery_1M");
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(frames));

    let mut open_total = (0u32, Duration::ZERO, 0u64);
    g.bench_function("open", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let db = AedbInstance::open(dir.path(), no_checkpoint_production()).expect("open");
                timed += t.elapsed();
                assert_eq!(db.recovery_report().frames_replayed, frames);
                open_total.0 += 1;
                open_total.2 += db.operational_metrics().recovery_micros;
                db.shutdown().expect("shutdown");
            }
            open_total.1 += timed;
            timed
        })
    });

    let mut scan_total = (0u32, Duration::ZERO);
    g.bench_function("wal_scan_only", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let report =
                    aedb_wal::verify_quiet(&aedb_fs::RealFs, &wal_dir, RecoveryMode::Strict)
                        .expect("scan");
                assert_eq!(report.frames_replayed, frames);
            }
            let timed = t.elapsed();
            scan_total.0 += iters as u32;
            scan_total.1 += timed;
            timed
        })
    });

    let mut decode_total = (0u32, Duration::ZERO);
    g.bench_function("wal_scan_decode", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                let report =
                    aedb_wal::verify(&aedb_fs::RealFs, &wal_dir, RecoveryMode::Strict, |frame| {
                        black_box(CommitRecord::decode(frame.payload).expect("decode"));
                        Ok::<(), Infallible>(())
                    })
                    .expect("scan");
                assert_eq!(report.frames_replayed, frames);
            }
            let timed = t.elapsed();
            decode_total.0 += iters as u32;
            decode_total.1 += timed;
            timed
        })
    });
    g.finish();

    let per = |(n, d): (u32, Duration)| d.as_secs_f64() / f64::from(n.max(1));
    let open_s = per((open_total.0, open_total.1));
    let scan_s = per(scan_total);
    let decode_s = per(decode_total);
    summary.line(format!(
        "open (full recovery): {:.3}s per open = {:.0} frames/s (engine recovery_micros mean {:.3}s)",
        open_s,
        frames as f64 / open_s,
        open_total.2 as f64 / 1e6 / f64::from(open_total.0.max(1)),
    ));
    summary.line(format!(
        "wal scan only:        {:.3}s = {:.0} frames/s ({:.0}% of open)",
        scan_s,
        frames as f64 / scan_s,
        100.0 * scan_s / open_s
    ));
    summary.line(format!(
        "wal scan + decode:    {:.3}s = {:.0} frames/s (decode {:.0}% of open, apply+rest {:.0}%)",
        decode_s,
        frames as f64 / decode_s,
        100.0 * (decode_s - scan_s) / open_s,
        100.0 * (open_s - decode_s) / open_s
    ));

    c.final_summary();
    summary.print("recovery");
}
