//! The block cipher of every sealed block: `aedb_keys::XChaCha20Poly1305` (HChaCha20
//! from the `chacha20` crate, then `ring`'s ChaCha20-Poly1305 assembly) against
//! RustCrypto's portable `chacha20poly1305::XChaCha20Poly1305`, the implementation it
//! replaced. Same algorithm, same bytes (`keys/src/aead.rs` tests that with a vector
//! and a proptest); this measures seal and open of one run-file block (4 KiB, the
//! default block size, and 1 KiB) with 100 bytes of associated data, as the run files
//! bind them.
//!
//! Run: `cargo bench -p aedb-benches --bench aead` (about 40 s). Each group prints
//! bytes/s; the summary at the end gives µs per block and the ratio.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aedb_benches::Summary;
use aedb_keys::{SecretKey, XChaCha20Poly1305};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use criterion::{Criterion, Throughput};

const KEY: [u8; 32] = [0x42; 32];
const NONCE: [u8; 24] = [7; 24];
const AAD: [u8; 100] = [9; 100];

/// µs per call of `f`, over enough calls to take about half a second.
fn micros_per(mut f: impl FnMut()) -> f64 {
    let calls = 50_000u32;
    let t = Instant::now();
    for _ in 0..calls {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / f64::from(calls)
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    let summary = Summary::default();
    let ours = XChaCha20Poly1305::new(&SecretKey::new(KEY));
    let theirs = chacha20poly1305::XChaCha20Poly1305::new((&KEY).into());
    let nonce = chacha20poly1305::XNonce::from(NONCE);

    for len in [4096usize, 1024] {
        let mut g = c.benchmark_group(format!("aead_{len}"));
        g.throughput(Throughput::Bytes(len as u64));
        let mut buf = vec![0x5Au8; len];
        g.bench_function("seal/aedb_ring", |b| {
            b.iter(|| black_box(ours.encrypt_in_place_detached(&NONCE, &AAD, &mut buf)))
        });
        g.bench_function("seal/rustcrypto", |b| {
            b.iter(|| black_box(theirs.encrypt_in_place_detached(&nonce, &AAD, &mut buf)))
        });
        // Open a block sealed once (both produce the same ciphertext and tag).
        let plain = vec![0x5Au8; len];
        let mut sealed = plain.clone();
        let tag = ours
            .encrypt_in_place_detached(&NONCE, &AAD, &mut sealed)
            .expect("seal");
        let mut check = plain.clone();
        let their_tag = theirs
            .encrypt_in_place_detached(&nonce, &AAD, &mut check)
            .expect("seal");
        assert_eq!(
            (check.as_slice(), their_tag.as_slice()),
            (sealed.as_slice(), &tag[..])
        );
        g.bench_function("open/aedb_ring", |b| {
            b.iter(|| {
                let mut buf = sealed.clone();
                ours.decrypt_in_place_detached(&NONCE, &AAD, &mut buf, &tag)
                    .expect("open");
                black_box(buf)
            })
        });
        g.bench_function("open/rustcrypto", |b| {
            b.iter(|| {
                let mut buf = sealed.clone();
                theirs
                    .decrypt_in_place_detached(&nonce, &AAD, &mut buf, (&tag).into())
                    .expect("open");
                black_box(buf)
            })
        });
        g.finish();

        let ring = micros_per(|| {
            let mut buf = sealed.clone();
            ours.decrypt_in_place_detached(&NONCE, &AAD, &mut buf, &tag)
                .expect("open");
            black_box(buf);
        });
        let rc = micros_per(|| {
            let mut buf = sealed.clone();
            theirs
                .decrypt_in_place_detached(&nonce, &AAD, &mut buf, (&tag).into())
                .expect("open");
            black_box(buf);
        });
        summary.line(format!(
            "open one {len}-byte block: aedb (ring) {ring:.2} µs, RustCrypto {rc:.2} µs: {:.2}x faster",
            rc / ring
        ));
    }
    c.final_summary();
    summary.print("aead");
}
