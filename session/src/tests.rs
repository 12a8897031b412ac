//! End-to-end tests of [`SessionAuthority`]: every [`CapsuleError`] path of issue and
//! verify, each with the [`IhpMetricsSnapshot`] counter it must move.

use std::sync::Arc;
use std::time::Duration;

use aedb_keys::SecretKey;
use aedb_types::KeyEpoch;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use super::*;
use aedb_authz::{CallerId, CallerIdError};

const PROFILE: ServerProfileId = ServerProfileId::from_bytes([0x50; 16]);
const ENV: ServerEnvHash = ServerEnvHash::from_bytes([0xe0; 32]);
const SUBKEY_1: [u8; 32] = [0xA1; 32];
const SUBKEY_2: [u8; 32] = [0xA2; 32];
const T0: UnixMicros = UnixMicros::from_micros(1_700_000_000_000_000);
const DRIFT: Duration = Duration::from_secs(300);

fn config() -> IhpConfig {
    IhpConfig::builder()
        .max_timestamp_drift(DRIFT)
        .build()
        .unwrap()
}

fn authority() -> SessionAuthority {
    authority_with(config())
}

fn authority_with(config: IhpConfig) -> SessionAuthority {
    let a = SessionAuthority::new(config, PROFILE, ENV);
    a.add_epoch_key(KeyEpoch::FIRST, SecretKey::new(SUBKEY_1))
        .unwrap();
    a
}

fn alice() -> CallerId {
    CallerId::new("alice@ledger").unwrap()
}

fn binding(byte: u8) -> ChannelBinding {
    ChannelBinding::new(vec![byte; 32]).unwrap()
}

/// The counters after `f`, minus those before.
fn delta(a: &SessionAuthority, f: impl FnOnce()) -> IhpMetricsSnapshot {
    let before = a.metrics();
    f();
    let after = a.metrics();
    let d = |x: u64, y: u64| y - x;
    IhpMetricsSnapshot {
        encrypt_success: d(before.encrypt_success, after.encrypt_success),
        encrypt_failures: d(before.encrypt_failures, after.encrypt_failures),
        decrypt_success: d(before.decrypt_success, after.decrypt_success),
        malformed: d(before.malformed, after.malformed),
        version_mismatch: d(before.version_mismatch, after.version_mismatch),
        header_mismatch: d(before.header_mismatch, after.header_mismatch),
        revoked: d(before.revoked, after.revoked),
        unknown_epoch: d(before.unknown_epoch, after.unknown_epoch),
        tag_failures: d(before.tag_failures, after.tag_failures),
        invalid_caller: d(before.invalid_caller, after.invalid_caller),
        stale: d(before.stale, after.stale),
        future: d(before.future, after.future),
        replays: d(before.replays, after.replays),
        replay_cache_full: d(before.replay_cache_full, after.replay_cache_full),
    }
}

/// Verifies and asserts the result and that exactly `counter` moved by one.
#[track_caller]
fn expect_refusal(
    a: &SessionAuthority,
    bytes: &[u8],
    now: UnixMicros,
    channel: Option<&ChannelBinding>,
    expected: CapsuleError,
    counter: fn(&IhpMetricsSnapshot) -> u64,
) {
    let mut result = None;
    let d = delta(a, || result = Some(a.verify(bytes, now, channel)));
    assert_eq!(result, Some(Err(expected)));
    assert_eq!(counter(&d), 1, "{d:?}");
    let total = d.malformed
        + d.version_mismatch
        + d.header_mismatch
        + d.revoked
        + d.unknown_epoch
        + d.tag_failures
        + d.invalid_caller
        + d.stale
        + d.future
        + d.replays
        + d.replay_cache_full
        + d.decrypt_success;
    assert_eq!(total, 1, "exactly one counter moves: {d:?}");
}

#[track_caller]
fn expect_ok(
    a: &SessionAuthority,
    bytes: &[u8],
    now: UnixMicros,
    channel: Option<&ChannelBinding>,
) -> VerifiedCaller {
    let mut result = None;
    let d = delta(a, || result = Some(a.verify(bytes, now, channel)));
    assert_eq!(d.decrypt_success, 1, "{d:?}");
    result.unwrap().unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn issue_and_verify_round_trip_with_and_without_binding() {
    let a = authority();
    let d = delta(&a, || {
        let c = a.issue(&alice(), T0, None).unwrap();
        assert_eq!(c.as_bytes().len(), CAPSULE_LEN);
        assert_eq!(c.header().epoch, KeyEpoch::FIRST);
        assert_eq!(c.header().channel_id, ChannelId::UNBOUND);
        let v = expect_ok(&a, c.as_bytes(), T0, None);
        assert_eq!(v.caller(), &alice());
        assert_eq!(v.issued_at(), T0);
        assert_eq!(v.epoch(), KeyEpoch::FIRST);
        assert!(!v.channel_bound());
        assert_eq!(v.into_caller(), alice());
    });
    assert_eq!(d.encrypt_success, 1);

    let tls = binding(7);
    let c = a.issue(&alice(), T0, Some(&tls)).unwrap();
    assert_eq!(c.header().channel_id, tls.channel_id());
    assert!(expect_ok(&a, c.as_bytes(), T0, Some(&tls)).channel_bound());
    // Two capsules for the same caller and time differ (random nonces).
    let c1 = a.issue(&alice(), T0, None).unwrap();
    let c2 = a.issue(&alice(), T0, None).unwrap();
    assert_ne!(c1.as_bytes(), c2.as_bytes());
    // A longest-possible caller name fits.
    let long = CallerId::new(&"x".repeat(aedb_authz::MAX_CALLER_ID_LEN)).unwrap();
    let c = a.issue(&long, T0, None).unwrap();
    assert_eq!(expect_ok(&a, c.as_bytes(), T0, None).caller(), &long);
}

#[test]
fn malformed_and_version_mismatch() {
    let a = authority();
    let c = a.issue(&alice(), T0, None).unwrap();
    let malformed = |s: &IhpMetricsSnapshot| s.malformed;
    for bytes in [
        &[][..],
        b"AEDBSCA",
        &c.as_bytes()[..CAPSULE_LEN - 1],
        &[0u8; CAPSULE_LEN][..],
    ] {
        let Err(err) = a.verify(bytes, T0, None) else {
            panic!("accepted")
        };
        assert!(matches!(err, CapsuleError::Malformed { .. }), "{err}");
    }
    let mut longer = c.to_vec();
    longer.push(0);
    let err = a.verify(&longer, T0, None).unwrap_err();
    expect_refusal(&a, &longer, T0, None, err, malformed);

    let mut v2 = c.to_vec();
    v2[8] = 2;
    expect_refusal(
        &a,
        &v2,
        T0,
        None,
        CapsuleError::VersionMismatch {
            found: 2,
            supported: 1,
        },
        |s| s.version_mismatch,
    );
    // A future version is reported as such whatever its length.
    expect_refusal(
        &a,
        b"AEDBSCAP\x07",
        T0,
        None,
        CapsuleError::VersionMismatch {
            found: 7,
            supported: 1,
        },
        |s| s.version_mismatch,
    );
    assert_eq!(a.metrics().malformed, 6);
}

#[test]
fn capsules_of_other_profiles_and_environments_are_refused() {
    let a = authority();
    let other_profile = ServerProfileId::from_bytes([0x51; 16]);
    let other_env = ServerEnvHash::from_bytes([0xe1; 32]);

    let b = SessionAuthority::new(config(), other_profile, ENV);
    b.add_epoch_key(KeyEpoch::FIRST, SecretKey::new(SUBKEY_1))
        .unwrap();
    let c = b.issue(&alice(), T0, None).unwrap();
    expect_refusal(
        &a,
        c.as_bytes(),
        T0,
        None,
        CapsuleError::HeaderMismatch {
            found: other_profile,
            expected: PROFILE,
        },
        |s| s.header_mismatch,
    );

    let e = SessionAuthority::new(config(), PROFILE, other_env);
    e.add_epoch_key(KeyEpoch::FIRST, SecretKey::new(SUBKEY_1))
        .unwrap();
    let c = e.issue(&alice(), T0, None).unwrap();
    expect_refusal(
        &a,
        c.as_bytes(),
        T0,
        None,
        CapsuleError::EnvHashMismatch {
            found: other_env,
            expected: ENV,
        },
        |s| s.header_mismatch,
    );

    // Rewriting the header to this server's values does not help: the tag covers it.
    let mut forged = c.to_vec();
    forged[29..61].copy_from_slice(ENV.as_bytes());
    expect_refusal(&a, &forged, T0, None, CapsuleError::TagMismatch, |s| {
        s.tag_failures
    });
}

#[test]
fn wrong_channel_binding_is_refused_before_decryption() {
    let a = authority();
    let (one, two) = (binding(1), binding(2));
    let bound = a.issue(&alice(), T0, Some(&one)).unwrap();
    let unbound = a.issue(&alice(), T0, None).unwrap();
    let mismatch = |s: &IhpMetricsSnapshot| s.header_mismatch;
    for (capsule, presented) in [(&bound, Some(&two)), (&bound, None), (&unbound, Some(&one))] {
        expect_refusal(
            &a,
            capsule.as_bytes(),
            T0,
            presented,
            CapsuleError::ChannelBindingMismatch,
            mismatch,
        );
    }
    // Rewriting the channel id to the presented channel's id fails the tag: the binding
    // is in the key, not only in the header.
    let mut moved = bound.to_vec();
    moved[61..77].copy_from_slice(two.channel_id().as_bytes());
    expect_refusal(&a, &moved, T0, Some(&two), CapsuleError::TagMismatch, |s| {
        s.tag_failures
    });
    expect_ok(&a, bound.as_bytes(), T0, Some(&one));
    expect_ok(&a, unbound.as_bytes(), T0, None);
}

#[test]
fn revoked_profile_and_env_hash_refuse_issue_and_verify() {
    let a = authority();
    let c = a.issue(&alice(), T0, None).unwrap();
    // Revoking someone else's profile changes nothing here.
    assert!(a.revoke_profile(ServerProfileId::from_bytes([9; 16])));
    assert!(a.revoke_profile(PROFILE));
    assert!(!a.revoke_profile(PROFILE));
    expect_refusal(
        &a,
        c.as_bytes(),
        T0,
        None,
        CapsuleError::RevokedProfile { profile: PROFILE },
        |s| s.revoked,
    );
    let d = delta(&a, || {
        assert_eq!(
            a.issue(&alice(), T0, None).unwrap_err(),
            CapsuleError::RevokedProfile { profile: PROFILE }
        );
    });
    assert_eq!((d.encrypt_failures, d.encrypt_success), (1, 0));

    let a = authority();
    let c = a.issue(&alice(), T0, None).unwrap();
    assert!(a.revoke_env_hash(ENV));
    expect_refusal(
        &a,
        c.as_bytes(),
        T0,
        None,
        CapsuleError::RevokedEnvHash { env_hash: ENV },
        |s| s.revoked,
    );
    assert_eq!(
        a.issue(&alice(), T0, None).unwrap_err(),
        CapsuleError::RevokedEnvHash { env_hash: ENV }
    );
    assert_eq!(
        a.revoked(),
        Revocations {
            profiles: vec![],
            env_hashes: vec![ENV]
        }
    );
}

#[test]
fn revocations_are_listed_for_persistence_and_reload() {
    let a = authority();
    let p = [
        ServerProfileId::from_bytes([3; 16]),
        ServerProfileId::from_bytes([1; 16]),
    ];
    let h = ServerEnvHash::from_bytes([4; 32]);
    for id in p {
        a.revoke_profile(id);
    }
    a.revoke_env_hash(h);
    let listed = a.revoked();
    assert_eq!(listed.profiles, vec![p[1], p[0]]);
    assert_eq!(listed.env_hashes, vec![h]);
    // Reload into a fresh authority ("on open").
    let b = authority();
    for id in &listed.profiles {
        b.revoke_profile(*id);
    }
    for hash in &listed.env_hashes {
        b.revoke_env_hash(*hash);
    }
    assert_eq!(b.revoked(), listed);
}

#[test]
fn tampering_anywhere_fails_the_tag() {
    let a = authority();
    let c = a.issue(&alice(), T0, None).unwrap();
    // Epoch (13..) is checked against the keyring first; every other byte after the
    // profile, env hash and channel id is covered only by the tag.
    for at in [77, 84, 85, 108, 109, 200, 238, 239, 254] {
        let mut bad = c.to_vec();
        bad[at] ^= 0x01;
        expect_refusal(&a, &bad, T0, None, CapsuleError::TagMismatch, |s| {
            s.tag_failures
        });
    }
    // Another key under the same epoch number.
    let other = SessionAuthority::new(config(), PROFILE, ENV);
    other
        .add_epoch_key(KeyEpoch::FIRST, SecretKey::new([0xEE; 32]))
        .unwrap();
    expect_refusal(
        &other,
        c.as_bytes(),
        T0,
        None,
        CapsuleError::TagMismatch,
        |s| s.tag_failures,
    );
    // The untouched capsule is still good (tag failures do not consume it).
    expect_ok(&a, c.as_bytes(), T0, None);
}

#[test]
fn drift_boundaries_both_ways() {
    let a = authority();
    let drift = DRIFT;
    let max_drift = drift;
    let micro = Duration::from_micros(1);

    // Issued exactly `drift` before now: accepted; one microsecond more: stale.
    let c = a.issue(&alice(), T0, None).unwrap();
    expect_ok(&a, c.as_bytes(), T0.saturating_add(drift), None);
    let c = a.issue(&alice(), T0, None).unwrap();
    expect_refusal(
        &a,
        c.as_bytes(),
        T0.saturating_add(drift + micro),
        None,
        CapsuleError::Stale {
            age: drift + micro,
            max_drift,
        },
        |s| s.stale,
    );
    // Issued exactly `drift` after now: accepted; one microsecond more: from the future.
    let c = a.issue(&alice(), T0, None).unwrap();
    expect_ok(&a, c.as_bytes(), T0.saturating_sub(drift), None);
    let c = a.issue(&alice(), T0, None).unwrap();
    expect_refusal(
        &a,
        c.as_bytes(),
        T0.saturating_sub(drift + micro),
        None,
        CapsuleError::FromFuture {
            ahead: drift + micro,
            max_drift,
        },
        |s| s.future,
    );
    // Extreme clocks never overflow.
    let c = a
        .issue(&alice(), UnixMicros::from_micros(i64::MIN), None)
        .unwrap();
    assert!(matches!(
        a.verify(c.as_bytes(), UnixMicros::from_micros(i64::MAX), None),
        Err(CapsuleError::Stale { .. })
    ));
    let c = a
        .issue(&alice(), UnixMicros::from_micros(i64::MAX), None)
        .unwrap();
    assert!(matches!(
        a.verify(c.as_bytes(), UnixMicros::from_micros(i64::MIN), None),
        Err(CapsuleError::FromFuture { .. })
    ));
    expect_ok(&a, c.as_bytes(), UnixMicros::from_micros(i64::MAX), None);
}

#[test]
fn replays_are_refused_while_the_capsule_could_pass_the_drift_check() {
    let a = authority();
    let c = a.issue(&alice(), T0, None).unwrap();
    expect_ok(&a, c.as_bytes(), T0, None);
    expect_refusal(&a, c.as_bytes(), T0, None, CapsuleError::Replayed, |s| {
        s.replays
    });
    expect_refusal(
        &a,
        c.as_bytes(),
        T0.saturating_add(DRIFT),
        None,
        CapsuleError::Replayed,
        |s| s.replays,
    );
    assert_eq!(a.replay_cache_len(), 1);
    // Past the window the drift check refuses it; the entry can go.
    expect_refusal(
        &a,
        c.as_bytes(),
        T0.saturating_add(DRIFT + Duration::from_micros(1)),
        None,
        CapsuleError::Stale {
            age: DRIFT + Duration::from_micros(1),
            max_drift: DRIFT,
        },
        |s| s.stale,
    );
    let later = T0.saturating_add(DRIFT * 3);
    let fresh = a.issue(&alice(), later, None).unwrap();
    expect_ok(&a, fresh.as_bytes(), later, None);
    assert_eq!(a.replay_cache_len(), 1);
    // The verifier clock stepping back cannot revive the forgotten capsule.
    expect_refusal(
        &a,
        c.as_bytes(),
        T0,
        None,
        CapsuleError::Stale {
            age: DRIFT * 3,
            max_drift: DRIFT,
        },
        |s| s.stale,
    );
}

#[test]
fn a_full_replay_cache_fails_closed() {
    let a = authority_with(
        IhpConfig::builder()
            .max_timestamp_drift(DRIFT)
            .replay_cache_capacity(2)
            .build()
            .unwrap(),
    );
    let first = a.issue(&alice(), T0, None).unwrap();
    expect_ok(&a, first.as_bytes(), T0, None);
    let c = a.issue(&alice(), T0, None).unwrap();
    expect_ok(&a, c.as_bytes(), T0, None);
    let c = a.issue(&alice(), T0, None).unwrap();
    expect_refusal(
        &a,
        c.as_bytes(),
        T0,
        None,
        CapsuleError::ReplayCacheFull { capacity: 2 },
        |s| s.replay_cache_full,
    );
    // A replay of a remembered capsule is still reported as a replay.
    expect_refusal(
        &a,
        first.as_bytes(),
        T0,
        None,
        CapsuleError::Replayed,
        |s| s.replays,
    );
    // Once the remembered capsules expire there is room again.
    let later = T0.saturating_add(DRIFT + Duration::from_secs(1));
    let c = a.issue(&alice(), later, None).unwrap();
    expect_ok(&a, c.as_bytes(), later, None);
    assert_eq!(a.replay_cache_len(), 1);
}

#[test]
fn rotation_keeps_old_epochs_verifiable_until_retired() {
    let a = authority();
    let old = a.issue(&alice(), T0, None).unwrap();
    let old_bound = a.issue(&alice(), T0, Some(&binding(3))).unwrap();
    let epoch2 = KeyEpoch::new(2);
    a.add_epoch_key(epoch2, SecretKey::new(SUBKEY_2)).unwrap();
    assert_eq!(a.current_epoch(), Some(KeyEpoch::FIRST));
    a.set_current_epoch(epoch2).unwrap();
    assert_eq!(a.epochs(), vec![KeyEpoch::FIRST, epoch2]);

    let new = a.issue(&alice(), T0, None).unwrap();
    assert_eq!(new.header().epoch, epoch2);
    assert_eq!(
        expect_ok(&a, old.as_bytes(), T0, None).epoch(),
        KeyEpoch::FIRST
    );
    assert_eq!(expect_ok(&a, new.as_bytes(), T0, None).epoch(), epoch2);

    assert_eq!(
        a.retire_epoch(epoch2),
        Err(KeyringError::RetiringCurrent(epoch2))
    );
    a.retire_epoch(KeyEpoch::FIRST).unwrap();
    a.retire_epoch(KeyEpoch::FIRST).unwrap();
    assert_eq!(a.epochs(), vec![epoch2]);
    assert_eq!(a.retired_epochs(), vec![KeyEpoch::FIRST]);
    expect_refusal(
        &a,
        old_bound.as_bytes(),
        T0,
        Some(&binding(3)),
        CapsuleError::RetiredEpoch {
            epoch: KeyEpoch::FIRST,
        },
        |s| s.unknown_epoch,
    );
    assert_eq!(
        a.add_epoch_key(KeyEpoch::FIRST, SecretKey::new(SUBKEY_1)),
        Err(KeyringError::Retired(KeyEpoch::FIRST))
    );
    assert_eq!(
        a.set_current_epoch(KeyEpoch::FIRST),
        Err(KeyringError::Retired(KeyEpoch::FIRST))
    );

    // A capsule of an epoch this authority never loaded.
    let b = SessionAuthority::new(config(), PROFILE, ENV);
    b.add_epoch_key(KeyEpoch::new(9), SecretKey::new(SUBKEY_2))
        .unwrap();
    let c9 = b.issue(&alice(), T0, None).unwrap();
    expect_refusal(
        &a,
        c9.as_bytes(),
        T0,
        None,
        CapsuleError::UnknownEpoch {
            epoch: KeyEpoch::new(9),
        },
        |s| s.unknown_epoch,
    );
}

#[test]
fn keyring_rules() {
    let a = SessionAuthority::new(config(), PROFILE, ENV);
    assert_eq!(a.current_epoch(), None);
    assert_eq!(
        a.issue(&alice(), T0, None),
        Err(CapsuleError::NoCurrentEpoch)
    );
    assert_eq!(
        a.set_current_epoch(KeyEpoch::FIRST),
        Err(KeyringError::UnknownEpoch(KeyEpoch::FIRST))
    );
    a.add_epoch_key(KeyEpoch::new(5), SecretKey::new(SUBKEY_1))
        .unwrap();
    assert_eq!(a.current_epoch(), Some(KeyEpoch::new(5)));
    assert_eq!(
        a.add_epoch_key(KeyEpoch::new(5), SecretKey::new(SUBKEY_2)),
        Err(KeyringError::DuplicateEpoch(KeyEpoch::new(5)))
    );
    // Retiring an epoch never loaded records it.
    a.retire_epoch(KeyEpoch::new(4)).unwrap();
    assert_eq!(a.retired_epochs(), vec![KeyEpoch::new(4)]);
}

#[test]
fn the_system_caller_never_gets_in_or_out() {
    let a = authority();
    let d = delta(&a, || {
        assert_eq!(
            a.issue(&CallerId::system(), T0, None),
            Err(CapsuleError::SystemCaller)
        );
    });
    assert_eq!(d.encrypt_failures, 1);

    // Even a correctly sealed capsule naming `_system` (only a key holder can make one)
    // is refused after the tag verifies.
    let header = CapsuleHeader {
        epoch: KeyEpoch::FIRST,
        profile_id: PROFILE,
        env_hash: ENV,
        channel_id: ChannelId::UNBOUND,
        issued_at: T0,
        nonce: [0x77; CAPSULE_NONCE_LEN],
    };
    let header_bytes = header.encode();
    let mut body = [0u8; CAPSULE_PLAINTEXT_LEN];
    body[..9].copy_from_slice(b"\x07\x00_system");
    let key = derive_capsule_key(&SecretKey::new(SUBKEY_1), KeyEpoch::FIRST, None);
    let aead = key.with_bytes(|k| XChaCha20Poly1305::new(Key::from_slice(k)));
    let tag = aead
        .encrypt_in_place_detached(XNonce::from_slice(&header.nonce), &header_bytes, &mut body)
        .unwrap();
    let forged = [&header_bytes[..], &body, &tag].concat();
    expect_refusal(
        &a,
        &forged,
        T0,
        None,
        CapsuleError::InvalidCaller(CallerIdError::Reserved),
        |s| s.invalid_caller,
    );
}

#[test]
fn debug_output_never_shows_key_or_binding_bytes() {
    let a = SessionAuthority::new(config(), PROFILE, ENV);
    a.add_epoch_key(KeyEpoch::FIRST, SecretKey::new([0xAB; 32]))
        .unwrap();
    let shown = format!("{a:?} {a:#?}");
    assert!(!shown.to_lowercase().contains("ab, "), "{shown}");
    assert!(!shown.to_lowercase().contains("abab"), "{shown}");
    assert!(!shown.contains("171"), "{shown}");
    assert!(shown.contains("profile_id"), "{shown}");
    let tls = ChannelBinding::new(vec![0xAB; 32]).unwrap();
    let shown = format!("{tls:?} {tls:#?}");
    assert!(!shown.to_lowercase().contains("ab"), "{shown}");
    // Error messages carry no key, binding or ciphertext bytes either.
    let c = a.issue(&alice(), T0, Some(&tls)).unwrap();
    for err in [
        a.verify(c.as_bytes(), T0, None).unwrap_err(),
        a.verify(&c.as_bytes()[..200], T0, Some(&tls)).unwrap_err(),
    ] {
        let text = format!("{err} {err:?}");
        assert!(!text.to_lowercase().contains("abab"), "{text}");
    }
}

#[test]
fn authority_is_shareable_and_accepts_each_capsule_once_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SessionAuthority>();
    assert_send_sync::<SessionCapsule>();
    assert_send_sync::<ChannelBinding>();

    let a = Arc::new(authority());
    let c = a.issue(&alice(), T0, None).unwrap();
    let accepted: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let a = Arc::clone(&a);
                let bytes = c.to_vec();
                s.spawn(move || usize::from(a.verify(&bytes, T0, None).is_ok()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(accepted, 1);
    let m = a.metrics();
    assert_eq!((m.decrypt_success, m.replays), (1, 7));
}

#[cfg(feature = "observability")]
mod observability {
    //! The runbook's metric names reach the `metrics` facade.

    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use ::metrics::{
        Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };
    use parking_lot::Mutex;

    use super::*;

    #[derive(Default)]
    struct Capture {
        counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
        histograms: Mutex<BTreeMap<String, Arc<Mutex<Vec<f64>>>>>,
    }

    struct CounterCell(Arc<AtomicU64>);
    impl CounterFn for CounterCell {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.fetch_max(value, Ordering::Relaxed);
        }
    }

    struct HistogramCell(Arc<Mutex<Vec<f64>>>);
    impl HistogramFn for HistogramCell {
        fn record(&self, value: f64) {
            self.0.lock().push(value);
        }
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let cell = Arc::clone(
                self.counters
                    .lock()
                    .entry(key.name().to_owned())
                    .or_default(),
            );
            Counter::from_arc(Arc::new(CounterCell(cell)))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let cell = Arc::clone(
                self.histograms
                    .lock()
                    .entry(key.name().to_owned())
                    .or_default(),
            );
            Histogram::from_arc(Arc::new(HistogramCell(cell)))
        }
    }

    #[test]
    fn runbook_metric_names_are_emitted() {
        let capture = Capture::default();
        ::metrics::with_local_recorder(&capture, || {
            let a = authority();
            let c = a.issue(&alice(), T0, None).unwrap();
            a.verify(
                c.as_bytes(),
                T0.saturating_add(Duration::from_secs(2)),
                None,
            )
            .unwrap();
            let mut v9 = c.to_vec();
            v9[8] = 9;
            assert!(a.verify(&v9, T0, None).is_err());
            assert!(a.verify(c.as_bytes(), T0, Some(&binding(1))).is_err());
            // Replay: reaches the drift check, so the skew is recorded again.
            assert!(a.verify(c.as_bytes(), T0, None).is_err());
        });
        let counters = capture.counters.lock();
        let count = |name: &str| counters.get(name).map_or(0, |c| c.load(Ordering::Relaxed));
        assert_eq!(count(metrics::METRIC_ENCRYPT_SUCCESS), 1);
        assert_eq!(count("ihp_encrypt_success_total"), 1);
        assert_eq!(count("ihp_decrypt_success_total"), 1);
        assert_eq!(count("ihp_header_mismatch_total"), 1);
        assert_eq!(count("ihp_version_mismatch_total"), 1);
        let histograms = capture.histograms.lock();
        let skews = histograms
            .get("ihp_timestamp_skew_seconds")
            .map(|h| h.lock().clone())
            .unwrap_or_default();
        assert_eq!(skews, vec![2.0, 0.0]);
    }
}
