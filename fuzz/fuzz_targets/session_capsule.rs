//! Session capsules (IHP): `SessionCapsule::from_bytes`, `CapsuleHeader::decode` and
//! `SessionAuthority::verify` on arbitrary bytes never panic, and nothing verifies except
//! the genuine golden capsule. Mode bit 0 of the first byte selects between raw bytes
//! (bit 1: present them on the golden channel) and XOR-mutating the golden capsule
//! (header, nonce, ciphertext and tag alike).
#![no_main]
use std::sync::OnceLock;

use aedb_session::{
    CapsuleHeader, ChannelBinding, GoldenSessionCapsule, IhpConfig, SessionAuthority,
    SessionCapsule, golden_session_capsule,
};
use aedb_keys::SecretKey;
use libfuzzer_sys::fuzz_target;

fn golden() -> &'static GoldenSessionCapsule {
    static GOLDEN: OnceLock<GoldenSessionCapsule> = OnceLock::new();
    GOLDEN.get_or_init(golden_session_capsule)
}

fuzz_target!(|data: &[u8]| {
    let golden = golden();
    // A fresh authority per input, so the replay cache never carries state between runs.
    let authority =
        SessionAuthority::new(IhpConfig::production(), golden.profile_id, golden.env_hash);
    authority
        .add_epoch_key(golden.epoch, SecretKey::new(golden.session_subkey))
        .expect("fresh authority");
    let binding = ChannelBinding::from_slice(&golden.channel_binding).expect("golden binding");
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = SessionCapsule::from_bytes(rest);
        let _ = CapsuleHeader::decode(rest);
        let channel = (mode & 2 != 0).then_some(&binding);
        let verified = authority.verify(rest, golden.issued_at, channel);
        assert!(
            verified.is_err() || rest == golden.bytes.as_slice(),
            "bytes other than the golden capsule verified"
        );
    } else {
        let mut mutated = golden.bytes.clone();
        for (byte, mask) in mutated.iter_mut().zip(rest) {
            *byte ^= mask;
        }
        let verified = authority.verify(&mutated, golden.issued_at, Some(&binding));
        assert_eq!(
            verified.is_ok(),
            mutated == golden.bytes,
            "a mutated capsule verified, or the genuine one did not"
        );
    }
});
