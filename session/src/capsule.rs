//! The session capsule wire format, version 1 (`docs/FORMAT.md`, "Session capsule").
//!
//! Every capsule is exactly [`CAPSULE_LEN`] = 255 bytes (the caller id is padded, so the
//! length reveals nothing about it). Integers are little-endian.
//!
//! ```text
//! offset size field
//!      0    8 magic        b"AEDBSCAP"
//!      8    1 version      1
//!      9    4 key epoch    u32, epoch of the session subkey
//!     13   16 profile id   ServerProfileId of the issuer
//!     29   32 env hash     ServerEnvHash of the issuer
//!     61   16 channel id   public id of the channel binding; zeros when unbound
//!     77    8 issued_at    i64, microseconds since the Unix epoch
//!     85   24 nonce        random XChaCha20 nonce
//!    109  130 ciphertext   XChaCha20(capsule key, nonce, plaintext)
//!    239   16 tag          Poly1305 tag
//!
//! plaintext (130 bytes) = u16 caller id length (1..=128) || caller id || zero padding
//! AAD                   = bytes [0, 109)  (the whole header, nonce included)
//! capsule key           = see `channel` (HMAC-SHA256 of the session subkey and binding)
//! ```

use std::fmt;

use aedb_keys::SecretKey;
use aedb_types::KeyEpoch;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use zeroize::Zeroize;

use crate::channel::{ChannelBinding, ChannelId, derive_capsule_key};
use crate::error::CapsuleError;
use crate::profile::{ServerEnvHash, ServerProfileId};
use crate::time::UnixMicros;
use aedb_authz::{CallerId, MAX_CALLER_ID_LEN};

/// The first 8 bytes of every capsule.
pub const CAPSULE_MAGIC: [u8; 8] = *b"AEDBSCAP";
/// The capsule format version this crate writes and reads.
pub const CAPSULE_VERSION: u8 = 1;
/// XChaCha20 nonce length.
pub const CAPSULE_NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub const CAPSULE_TAG_LEN: usize = 16;
/// Plaintext header length (magic through nonce); all of it is the AAD.
pub const CAPSULE_HEADER_LEN: usize = 109;
/// Plaintext length: the caller id's u16 length, the id, zero padding to the longest id.
pub const CAPSULE_PLAINTEXT_LEN: usize = 2 + MAX_CALLER_ID_LEN;
/// Total length of a version-1 capsule.
pub const CAPSULE_LEN: usize = CAPSULE_HEADER_LEN + CAPSULE_PLAINTEXT_LEN + CAPSULE_TAG_LEN;

const VERSION_AT: usize = 8;
const EPOCH_AT: usize = 9;
const PROFILE_AT: usize = 13;
const ENV_AT: usize = 29;
const CHANNEL_AT: usize = 61;
const ISSUED_AT: usize = 77;
const NONCE_AT: usize = 85;
const TAG_AT: usize = CAPSULE_HEADER_LEN + CAPSULE_PLAINTEXT_LEN;

/// The plaintext (authenticated, not encrypted) header of a capsule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapsuleHeader {
    /// Epoch of the session subkey the capsule key was derived from.
    pub epoch: KeyEpoch,
    /// The issuing server's profile.
    pub profile_id: ServerProfileId,
    /// The issuing server's environment hash.
    pub env_hash: ServerEnvHash,
    /// The channel the capsule is bound to ([`ChannelId::UNBOUND`] when none).
    pub channel_id: ChannelId,
    /// When it was issued (issuer's clock).
    pub issued_at: UnixMicros,
    /// The XChaCha20 nonce; unique per capsule, also the replay-cache key.
    pub nonce: [u8; CAPSULE_NONCE_LEN],
}

impl CapsuleHeader {
    /// Parses the header of `bytes`, which must be a whole capsule: checks magic
    /// ([`CapsuleError::Malformed`]), version ([`CapsuleError::VersionMismatch`]) and the
    /// exact length ([`CapsuleError::Malformed`]), in that order. Authenticates nothing.
    pub fn decode(bytes: &[u8]) -> Result<CapsuleHeader, CapsuleError> {
        check_envelope(bytes)?;
        Ok(CapsuleHeader {
            epoch: KeyEpoch::new(u32::from_le_bytes(array(&bytes[EPOCH_AT..PROFILE_AT]))),
            profile_id: ServerProfileId::from_bytes(array(&bytes[PROFILE_AT..ENV_AT])),
            env_hash: ServerEnvHash::from_bytes(array(&bytes[ENV_AT..CHANNEL_AT])),
            channel_id: ChannelId::from_bytes(array(&bytes[CHANNEL_AT..ISSUED_AT])),
            issued_at: UnixMicros::from_micros(i64::from_le_bytes(array(
                &bytes[ISSUED_AT..NONCE_AT],
            ))),
            nonce: array(&bytes[NONCE_AT..CAPSULE_HEADER_LEN]),
        })
    }

    /// The header's [`CAPSULE_HEADER_LEN`] bytes (magic and version included).
    pub fn encode(&self) -> [u8; CAPSULE_HEADER_LEN] {
        let mut out = [0u8; CAPSULE_HEADER_LEN];
        let mut at = 0;
        for part in [
            &CAPSULE_MAGIC[..],
            &[CAPSULE_VERSION],
            &self.epoch.get().to_le_bytes(),
            self.profile_id.as_bytes(),
            self.env_hash.as_bytes(),
            self.channel_id.as_bytes(),
            &self.issued_at.as_micros().to_le_bytes(),
            &self.nonce,
        ] {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        debug_assert_eq!(at, CAPSULE_HEADER_LEN);
        out
    }
}

/// Copies a slice whose length the caller has established into an array.
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    out
}

/// Magic, version, then exact length — so a newer version is reported as such whatever
/// its length.
fn check_envelope(bytes: &[u8]) -> Result<(), CapsuleError> {
    if bytes.len() < VERSION_AT + 1 || bytes[..VERSION_AT] != CAPSULE_MAGIC {
        return Err(CapsuleError::Malformed {
            reason: "not a session capsule (bad magic or too short)",
        });
    }
    if bytes[VERSION_AT] != CAPSULE_VERSION {
        return Err(CapsuleError::VersionMismatch {
            found: bytes[VERSION_AT],
            supported: CAPSULE_VERSION,
        });
    }
    if bytes.len() != CAPSULE_LEN {
        return Err(CapsuleError::Malformed {
            reason: "a version-1 session capsule is exactly 255 bytes",
        });
    }
    Ok(())
}

/// A sealed session capsule: [`CAPSULE_LEN`] bytes, structurally valid (magic, version,
/// length), not necessarily authentic — only [`crate::SessionAuthority::verify`] says
/// that. It is a bearer credential: `Debug` shows the header, never the sealed part.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCapsule {
    bytes: [u8; CAPSULE_LEN],
    header: CapsuleHeader,
}

impl SessionCapsule {
    /// Parses `bytes` (see [`CapsuleHeader::decode`] for the checks). Never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<SessionCapsule, CapsuleError> {
        let header = CapsuleHeader::decode(bytes)?;
        Ok(SessionCapsule {
            bytes: array(bytes),
            header,
        })
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The wire bytes, owned.
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes.to_vec()
    }

    /// The plaintext header.
    pub fn header(&self) -> &CapsuleHeader {
        &self.header
    }
}

impl fmt::Debug for SessionCapsule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCapsule")
            .field("epoch", &self.header.epoch)
            .field("profile_id", &self.header.profile_id)
            .field("issued_at", &self.header.issued_at)
            .finish_non_exhaustive()
    }
}

/// Builds the AEAD for a capsule key (the cipher zeroizes its copy of the key on drop).
pub(crate) fn aead_for(capsule_key: &SecretKey) -> XChaCha20Poly1305 {
    capsule_key.with_bytes(|bytes| XChaCha20Poly1305::new(Key::from_slice(bytes)))
}

/// Seals `caller` under `aead` with `header` (whose nonce must be fresh for this key).
pub(crate) fn seal(
    aead: &XChaCha20Poly1305,
    header: &CapsuleHeader,
    caller: &CallerId,
) -> Result<SessionCapsule, CapsuleError> {
    #[cfg(feature = "observability")]
    let _span = tracing::debug_span!("ihp.seal", epoch = header.epoch.get()).entered();
    if caller.is_system() {
        return Err(CapsuleError::SystemCaller);
    }
    let name = caller.as_str().as_bytes();
    if name.len() > MAX_CALLER_ID_LEN {
        // Unreachable through CallerId's own validation; kept so sealing cannot panic.
        return Err(CapsuleError::InvalidCaller(
            aedb_authz::CallerIdError::TooLong,
        ));
    }
    let mut bytes = [0u8; CAPSULE_LEN];
    let header_bytes = header.encode();
    bytes[..CAPSULE_HEADER_LEN].copy_from_slice(&header_bytes);
    let body = &mut bytes[CAPSULE_HEADER_LEN..TAG_AT];
    // Fits: name.len() <= 128.
    body[..2].copy_from_slice(&(name.len() as u16).to_le_bytes());
    body[2..2 + name.len()].copy_from_slice(name);
    let tag = aead
        .encrypt_in_place_detached(XNonce::from_slice(&header.nonce), &header_bytes, body)
        .map_err(|_| CapsuleError::Malformed {
            // Only possible beyond the cipher's 256 GiB message limit.
            reason: "the cipher refused to seal",
        });
    let tag = match tag {
        Ok(tag) => tag,
        Err(err) => {
            bytes.zeroize();
            return Err(err);
        }
    };
    bytes[TAG_AT..].copy_from_slice(&tag);
    Ok(SessionCapsule {
        bytes,
        header: *header,
    })
}

/// Verifies the tag of `capsule` under `aead` and returns the caller it names.
pub(crate) fn open(
    aead: &XChaCha20Poly1305,
    capsule: &SessionCapsule,
) -> Result<CallerId, CapsuleError> {
    #[cfg(feature = "observability")]
    let _span = tracing::debug_span!("ihp.open", epoch = capsule.header.epoch.get()).entered();
    let bytes = &capsule.bytes;
    let mut plain: [u8; CAPSULE_PLAINTEXT_LEN] = array(&bytes[CAPSULE_HEADER_LEN..TAG_AT]);
    aead.decrypt_in_place_detached(
        XNonce::from_slice(&capsule.header.nonce),
        &bytes[..CAPSULE_HEADER_LEN],
        &mut plain,
        Tag::from_slice(&bytes[TAG_AT..]),
    )
    .map_err(|_| CapsuleError::TagMismatch)?;
    let caller = parse_plaintext(&plain);
    plain.zeroize();
    caller
}

fn parse_plaintext(plain: &[u8; CAPSULE_PLAINTEXT_LEN]) -> Result<CallerId, CapsuleError> {
    let len = usize::from(u16::from_le_bytes([plain[0], plain[1]]));
    if len > MAX_CALLER_ID_LEN {
        return Err(CapsuleError::Malformed {
            reason: "caller id length exceeds the maximum",
        });
    }
    let (name, padding) = plain[2..].split_at(len);
    if padding.iter().any(|&b| b != 0) {
        return Err(CapsuleError::Malformed {
            reason: "non-zero padding after the caller id",
        });
    }
    let name = std::str::from_utf8(name)
        .map_err(|_| CapsuleError::InvalidCaller(aedb_authz::CallerIdError::InvalidCharacter))?;
    // CallerId::new refuses `_system` (and every `_` name): the system caller can never
    // come out of a capsule.
    CallerId::new(name).map_err(CapsuleError::InvalidCaller)
}

/// **Deterministic sealing, for fixtures only** ([`crate::golden_session_capsule`]
/// and compatibility tests): seals `caller` with the nonce, clock and everything else
/// given in `header`, under the capsule key derived from `session_subkey` and `channel`.
///
/// Production code issues capsules with [`crate::SessionAuthority::issue`], which
/// draws a fresh random nonce. Reusing a nonce under one key breaks the cipher: never call
/// this with a nonce that is not unique for the key.
///
/// Refuses `header.channel_id` other than the id of `channel`
/// ([`CapsuleError::ChannelBindingMismatch`]) and the system caller.
pub fn seal_with_nonce(
    session_subkey: &SecretKey,
    header: &CapsuleHeader,
    channel: Option<&ChannelBinding>,
    caller: &CallerId,
) -> Result<SessionCapsule, CapsuleError> {
    if header.channel_id != ChannelId::of(channel) {
        return Err(CapsuleError::ChannelBindingMismatch);
    }
    let key = derive_capsule_key(session_subkey, header.epoch, channel);
    seal(&aead_for(&key), header, caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> CapsuleHeader {
        CapsuleHeader {
            epoch: KeyEpoch::new(0x0403_0201),
            profile_id: ServerProfileId::from_bytes([0x11; 16]),
            env_hash: ServerEnvHash::from_bytes([0x22; 32]),
            channel_id: ChannelId::UNBOUND,
            issued_at: UnixMicros::from_micros(-2),
            nonce: [0x33; 24],
        }
    }

    #[test]
    fn layout_constants() {
        assert_eq!(CAPSULE_PLAINTEXT_LEN, 130);
        assert_eq!(CAPSULE_LEN, 255);
        assert_eq!(NONCE_AT + CAPSULE_NONCE_LEN, CAPSULE_HEADER_LEN);
        assert_eq!(
            [PROFILE_AT, ENV_AT, CHANNEL_AT, ISSUED_AT, NONCE_AT],
            [13, 29, 61, 77, 85]
        );
    }

    #[test]
    fn header_round_trips_and_sits_at_the_documented_offsets() {
        let key = SecretKey::new([1; 32]);
        let caller = CallerId::new("alice").unwrap();
        let capsule = seal_with_nonce(&key, &header(), None, &caller).unwrap();
        let b = capsule.as_bytes();
        assert_eq!(b.len(), CAPSULE_LEN);
        assert_eq!(&b[..8], b"AEDBSCAP");
        assert_eq!(b[8], 1);
        assert_eq!(&b[9..13], &[1, 2, 3, 4]);
        assert_eq!(&b[13..29], &[0x11; 16]);
        assert_eq!(&b[29..61], &[0x22; 32]);
        assert_eq!(&b[61..77], &[0; 16]);
        assert_eq!(&b[77..85], &(-2i64).to_le_bytes());
        assert_eq!(&b[85..109], &[0x33; 24]);
        assert_eq!(CapsuleHeader::decode(b), Ok(header()));
        assert_eq!(SessionCapsule::from_bytes(b).as_ref(), Ok(&capsule));
        let aead = aead_for(&derive_capsule_key(&key, header().epoch, None));
        assert_eq!(open(&aead, &capsule), Ok(caller));
        let shown = format!("{capsule:?}");
        assert!(shown.starts_with("SessionCapsule { epoch"), "{shown}");
    }

    #[test]
    fn envelope_checks_in_order() {
        let malformed = |r: Result<CapsuleHeader, CapsuleError>| {
            matches!(r, Err(CapsuleError::Malformed { .. }))
        };
        assert!(malformed(CapsuleHeader::decode(b"")));
        assert!(malformed(CapsuleHeader::decode(b"AEDBSCAP")));
        assert!(malformed(CapsuleHeader::decode(&[0; CAPSULE_LEN])));
        assert_eq!(
            CapsuleHeader::decode(b"AEDBSCAP\x02"),
            Err(CapsuleError::VersionMismatch {
                found: 2,
                supported: 1
            })
        );
        assert!(malformed(CapsuleHeader::decode(b"AEDBSCAP\x01")));
        let mut long = vec![0u8; CAPSULE_LEN + 1];
        long[..9].copy_from_slice(b"AEDBSCAP\x01");
        assert!(malformed(CapsuleHeader::decode(&long)));
        assert!(CapsuleHeader::decode(&long[..CAPSULE_LEN]).is_ok());
    }

    #[test]
    fn plaintext_rules() {
        let mut plain = [0u8; CAPSULE_PLAINTEXT_LEN];
        plain[..7].copy_from_slice(b"\x05\x00alice");
        assert_eq!(parse_plaintext(&plain), Ok(CallerId::new("alice").unwrap()));
        plain[129] = 1;
        assert!(matches!(
            parse_plaintext(&plain),
            Err(CapsuleError::Malformed { .. })
        ));
        let mut plain = [0u8; CAPSULE_PLAINTEXT_LEN];
        plain[..9].copy_from_slice(b"\x07\x00_system");
        assert_eq!(
            parse_plaintext(&plain),
            Err(CapsuleError::InvalidCaller(
                aedb_authz::CallerIdError::Reserved
            ))
        );
        let mut plain = [0u8; CAPSULE_PLAINTEXT_LEN];
        plain[0] = 129;
        assert!(matches!(
            parse_plaintext(&plain),
            Err(CapsuleError::Malformed { .. })
        ));
        plain[0] = 0;
        assert_eq!(
            parse_plaintext(&plain),
            Err(CapsuleError::InvalidCaller(
                aedb_authz::CallerIdError::Empty
            ))
        );
        plain[..4].copy_from_slice(b"\x02\x00\xff\xfe");
        assert_eq!(
            parse_plaintext(&plain),
            Err(CapsuleError::InvalidCaller(
                aedb_authz::CallerIdError::InvalidCharacter
            ))
        );
    }

    #[test]
    fn system_caller_and_wrong_channel_are_refused() {
        let key = SecretKey::new([1; 32]);
        assert_eq!(
            seal_with_nonce(&key, &header(), None, &CallerId::system()),
            Err(CapsuleError::SystemCaller)
        );
        let binding = ChannelBinding::new(vec![1; 32]).unwrap();
        let caller = CallerId::new("bob").unwrap();
        assert_eq!(
            seal_with_nonce(&key, &header(), Some(&binding), &caller),
            Err(CapsuleError::ChannelBindingMismatch)
        );
    }
}
