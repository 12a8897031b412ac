//! Property tests of session capsules: arbitrary bytes never panic `verify` (and never
//! verify), valid capsules round-trip for any caller, clock and channel, and flipping any
//! single bit of a valid capsule makes it fail.

use aedb_authz::CallerId;
use aedb_keys::SecretKey;
use aedb_session::{
    CAPSULE_LEN, CAPSULE_MAGIC, CAPSULE_VERSION, CapsuleHeader, ChannelBinding, IhpConfig,
    ServerEnvHash, ServerProfileId, SessionAuthority, SessionCapsule, UnixMicros,
};
use aedb_types::KeyEpoch;
use proptest::prelude::*;

const PROFILE: ServerProfileId = ServerProfileId::from_bytes([0x3c; 16]);
const ENV: ServerEnvHash = ServerEnvHash::from_bytes([0x9d; 32]);

fn authority() -> SessionAuthority {
    let a = SessionAuthority::new(IhpConfig::production(), PROFILE, ENV);
    a.add_epoch_key(KeyEpoch::FIRST, SecretKey::new([0x61; 32]))
        .expect("fresh authority");
    a
}

fn caller() -> impl Strategy<Value = CallerId> {
    "[A-Za-z0-9.@:-][A-Za-z0-9._@:-]{0,127}"
        .prop_map(|name| CallerId::new(&name).expect("the regex only makes valid ids"))
}

fn binding() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 1..=64))
}

/// Arbitrary bytes, and bytes that pass the envelope checks so the deeper checks run.
fn presented_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::collection::vec(any::<u8>(), CAPSULE_LEN - 9..=CAPSULE_LEN - 9).prop_map(
            |tail| {
                let mut bytes = CAPSULE_MAGIC.to_vec();
                bytes.push(CAPSULE_VERSION);
                bytes.extend_from_slice(&tail);
                bytes
            }
        ),
        // Right header for this authority (epoch 1, profile, env hash, unbound), random
        // time, nonce, ciphertext and tag.
        (
            any::<i64>(),
            proptest::collection::vec(any::<u8>(), 24 + 146..=24 + 146)
        )
            .prop_map(|(issued_at, rest)| {
                let mut bytes = CAPSULE_MAGIC.to_vec();
                bytes.push(CAPSULE_VERSION);
                bytes.extend_from_slice(&1u32.to_le_bytes());
                bytes.extend_from_slice(PROFILE.as_bytes());
                bytes.extend_from_slice(ENV.as_bytes());
                bytes.extend_from_slice(&[0; 16]);
                bytes.extend_from_slice(&issued_at.to_le_bytes());
                bytes.extend_from_slice(&rest);
                bytes
            }),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_or_verify(
        bytes in presented_bytes(),
        now in any::<i64>(),
        channel in binding(),
    ) {
        let a = authority();
        let channel = channel.map(|b| ChannelBinding::new(b).expect("non-empty"));
        let verified = a.verify(&bytes, UnixMicros::from_micros(now), channel.as_ref());
        prop_assert!(verified.is_err());
        // Decoding alone never panics either.
        let _ = CapsuleHeader::decode(&bytes);
        let _ = SessionCapsule::from_bytes(&bytes);
    }

    #[test]
    fn valid_capsules_round_trip(
        who in caller(),
        issued_at in -(1i64 << 60)..(1i64 << 60),
        skew_secs in -300i64..=300,
        channel in binding(),
    ) {
        let a = authority();
        let channel = channel.map(|b| ChannelBinding::new(b).expect("non-empty"));
        let issued_at = UnixMicros::from_micros(issued_at);
        let capsule = a.issue(&who, issued_at, channel.as_ref()).expect("issue");
        prop_assert_eq!(capsule.as_bytes().len(), CAPSULE_LEN);
        let now = UnixMicros::from_micros(issued_at.as_micros() + skew_secs * 1_000_000);
        let verified = a.verify(capsule.as_bytes(), now, channel.as_ref()).expect("verify");
        prop_assert_eq!(verified.caller(), &who);
        prop_assert_eq!(verified.issued_at(), issued_at);
        prop_assert_eq!(verified.epoch(), KeyEpoch::FIRST);
        prop_assert_eq!(verified.channel_bound(), channel.is_some());
        // Parsed back from bytes, the header is what was issued.
        let parsed = SessionCapsule::from_bytes(capsule.as_bytes()).expect("parse");
        prop_assert_eq!(parsed.header(), capsule.header());
    }

    #[test]
    fn any_single_bit_flip_is_rejected(
        who in caller(),
        bit in 0..CAPSULE_LEN * 8,
        channel in binding(),
    ) {
        let a = authority();
        let channel = channel.map(|b| ChannelBinding::new(b).expect("non-empty"));
        let now = UnixMicros::from_secs(1_700_000_000);
        let capsule = a.issue(&who, now, channel.as_ref()).expect("issue");
        let mut flipped = capsule.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(a.verify(&flipped, now, channel.as_ref()).is_err());
        // The rejection did not consume the genuine capsule.
        prop_assert!(a.verify(capsule.as_bytes(), now, channel.as_ref()).is_ok());
    }
}
