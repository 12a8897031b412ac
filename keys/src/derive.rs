//! Key purposes, the derivation-info encoding, and the one subkey construction every
//! [`crate::KeyProvider`] shares.
//!
//! # Construction
//!
//! ```text
//! subkey = HKDF-SHA256-Expand(PRK = K_master, info, L = 32)
//!        = HMAC-SHA256(K_master, info || 0x01)
//! ```
//!
//! The two lines are equal by RFC 5869 §2.3: for `L = HashLen` the expand step is the single
//! block `T(1) = HMAC(PRK, T(0) || info || 0x01)` with `T(0)` empty. There is no extract step:
//! `K_master` is already a uniformly random 256-bit key. The first form is what
//! [`expand_subkey`] computes (with `hkdf`); the second is one `CKM_SHA256_HMAC` `C_Sign`
//! over [`DerivationRequest::hmac_message`], which [`crate::HsmKeyProvider`] runs inside the
//! token so the master never leaves it.
//!
//! # Info encoding (version 1)
//!
//! All integers are little-endian. `field(x) = u32_le(len(x)) || x`.
//!
//! ```text
//! info = field(b"aedb/v1/subkey")            domain label, 14 bytes
//!     || field(purpose label)                b"wal" | b"checkpoint" | b"manifest" | b"audit" | b"session"
//!     || field(u32_le(epoch))                 4 bytes
//!     || field(database id)                  16 bytes
//!     || 0x00                                no context
//!      | 0x01 || field(context)              context present (0..=MAX_CONTEXT_LEN bytes)
//! ```
//!
//! Every variable part is length-prefixed and the context carries a presence tag, so the
//! encoding is injective: distinct requests always give distinct info (an absent context and
//! an empty one differ too). The domain label keeps aedb subkeys apart from any other use of
//! the same master, and its `v1` changes if this layout ever does.
//!
//! Example: `Wal`, epoch 1, database `00 01 .. 0f`, no context is 54 bytes:
//!
//! ```text
//! 0e000000 6165 6462 2f76 312f 7375 626b 6579     field("aedb/v1/subkey")
//! 03000000 77616c                                 field("wal")
//! 04000000 01000000                               field(u32_le(1))
//! 10000000 000102030405060708090a0b0c0d0e0f       field(database id)
//! 00                                              no context
//! ```

use crate::error::KeyError;
use crate::secret::{KEY_LEN, SecretKey};
use aedb_types::{DatabaseId, KeyEpoch};
use hkdf::Hkdf;
use sha2::Sha256;
use std::fmt;

/// The domain-separation label that opens every derivation info.
pub const INFO_LABEL: &[u8] = b"aedb/v1/subkey";

/// The byte appended to the info to form the HMAC message (`T(1)`'s block counter in HKDF).
pub const HMAC_BLOCK_COUNTER: u8 = 0x01;

/// Longest accepted derivation context, in bytes (channel bindings are 32–64 bytes).
pub const MAX_CONTEXT_LEN: usize = 1024;

/// What a subkey is for. One key never serves two purposes: the purpose is bound into the
/// derivation info, so each purpose gets an unrelated key from the same master.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyPurpose {
    /// Sealing WAL payloads (XChaCha20-Poly1305 per group-commit batch).
    Wal,
    /// Sealing checkpoint files.
    Checkpoint,
    /// The manifest HMAC chain (`k_manifest`).
    Manifest,
    /// Authenticating audit records and exports.
    Audit,
    /// Caller session capsules (usually with a channel binding as context).
    Session,
}

impl KeyPurpose {
    /// Every purpose, in encoding order.
    pub const ALL: [KeyPurpose; 5] = [
        KeyPurpose::Wal,
        KeyPurpose::Checkpoint,
        KeyPurpose::Manifest,
        KeyPurpose::Audit,
        KeyPurpose::Session,
    ];

    /// The ASCII label bound into the derivation info (and shown by `Display`).
    pub const fn label(self) -> &'static str {
        match self {
            KeyPurpose::Wal => "wal",
            KeyPurpose::Checkpoint => "checkpoint",
            KeyPurpose::Manifest => "manifest",
            KeyPurpose::Audit => "audit",
            KeyPurpose::Session => "session",
        }
    }
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Everything a subkey is bound to besides the master: purpose, key epoch, database and an
/// optional context. Not secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DerivationRequest<'a> {
    purpose: KeyPurpose,
    epoch: KeyEpoch,
    database: DatabaseId,
    context: Option<&'a [u8]>,
}

impl<'a> DerivationRequest<'a> {
    /// A request without context.
    pub const fn new(
        purpose: KeyPurpose,
        epoch: KeyEpoch,
        database: DatabaseId,
    ) -> DerivationRequest<'a> {
        DerivationRequest {
            purpose,
            epoch,
            database,
            context: None,
        }
    }

    /// Binds an extra context, e.g. a TLS channel binding for a session key. Length is
    /// checked (at most [`MAX_CONTEXT_LEN`]) when the info is encoded.
    pub const fn with_context(self, context: &'a [u8]) -> DerivationRequest<'a> {
        DerivationRequest {
            context: Some(context),
            ..self
        }
    }

    /// The purpose.
    pub const fn purpose(&self) -> KeyPurpose {
        self.purpose
    }

    /// The key epoch.
    pub const fn epoch(&self) -> KeyEpoch {
        self.epoch
    }

    /// The database.
    pub const fn database(&self) -> DatabaseId {
        self.database
    }

    /// The context, if any.
    pub const fn context(&self) -> Option<&'a [u8]> {
        self.context
    }

    /// A `tracing` span for deriving this subkey (`observability` feature): the purpose,
    /// epoch and provider kind only, never the master key, the subkey or the context bytes.
    #[cfg(feature = "observability")]
    pub(crate) fn span(&self, provider: &'static str) -> tracing::Span {
        tracing::debug_span!(
            "aedb.key.derive",
            purpose = self.purpose.label(),
            epoch = self.epoch.get(),
            provider,
            has_context = self.context.is_some(),
        )
    }

    /// The derivation info bytes (layout in the [module docs](crate::derive)).
    ///
    /// # Errors
    /// [`KeyError::ContextTooLong`] if the context exceeds [`MAX_CONTEXT_LEN`].
    pub fn info(&self) -> Result<Vec<u8>, KeyError> {
        let mut out = Vec::with_capacity(self.info_len());
        self.encode_info(&mut out)?;
        Ok(out)
    }

    /// `info || 0x01`: the message whose HMAC-SHA256 under `K_master` is the subkey.
    ///
    /// # Errors
    /// As [`Self::info`].
    pub fn hmac_message(&self) -> Result<Vec<u8>, KeyError> {
        let mut out = Vec::with_capacity(self.info_len() + 1);
        self.encode_info(&mut out)?;
        out.push(HMAC_BLOCK_COUNTER);
        Ok(out)
    }

    fn info_len(&self) -> usize {
        let fields = 4 * 4 + INFO_LABEL.len() + self.purpose.label().len() + 4 + 16;
        fields + 1 + self.context.map_or(0, |c| 4 + c.len())
    }

    fn encode_info(&self, out: &mut Vec<u8>) -> Result<(), KeyError> {
        if let Some(context) = self.context
            && context.len() > MAX_CONTEXT_LEN
        {
            return Err(KeyError::ContextTooLong {
                len: context.len(),
                max: MAX_CONTEXT_LEN,
            });
        }
        put_field(out, INFO_LABEL);
        put_field(out, self.purpose.label().as_bytes());
        put_field(out, &self.epoch.get().to_le_bytes());
        put_field(out, self.database.as_bytes());
        match self.context {
            None => out.push(0x00),
            Some(context) => {
                out.push(0x01);
                put_field(out, context);
            }
        }
        Ok(())
    }
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    // Every field is bounded (largest: MAX_CONTEXT_LEN), so the length always fits in u32.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(field);
}

/// Derives the subkey for `request` from a master held in memory:
/// `HKDF-SHA256-Expand(PRK = master, info, 32)`.
///
/// This is the reference implementation of the construction in the [module docs](crate::derive);
/// [`crate::InMemoryKeyProvider`] uses it, and any other provider must produce the same bytes.
///
/// # Errors
/// [`KeyError::ContextTooLong`] if the context exceeds [`MAX_CONTEXT_LEN`].
pub fn expand_subkey(
    master: &SecretKey,
    request: &DerivationRequest<'_>,
) -> Result<SecretKey, KeyError> {
    let info = request.info()?;
    master.with_bytes(|prk| {
        // A 32-byte PRK meets HKDF-SHA256's minimum (HashLen), and 32 bytes of output are far
        // below its maximum (255 * HashLen), so neither call can fail.
        let hkdf = Hkdf::<Sha256>::from_prk(prk).expect("a 32-byte PRK is valid for HKDF-SHA256");
        let subkey = SecretKey::try_from_fn(|out: &mut [u8; KEY_LEN]| hkdf.expand(&info, out))
            .expect("HKDF-SHA256 can always expand to 32 bytes");
        Ok(subkey)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use proptest::prelude::*;

    fn db(seed: u8) -> DatabaseId {
        DatabaseId::from_bytes(std::array::from_fn(|i| seed.wrapping_add(i as u8)))
    }

    /// Purpose, raw epoch, raw database id and context of a request.
    type Parts = (KeyPurpose, u32, [u8; 16], Option<Vec<u8>>);

    /// Parses info bytes back into their parts: a left inverse of `info()`, which proves the
    /// encoding injective. Returns `None` on any malformed input.
    fn parse_info(mut bytes: &[u8]) -> Option<Parts> {
        fn field<'b>(bytes: &mut &'b [u8]) -> Option<&'b [u8]> {
            let (len, rest) = bytes.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*len) as usize;
            let (value, rest) = (rest.get(..len)?, &rest[len..]);
            *bytes = rest;
            Some(value)
        }
        if field(&mut bytes)? != INFO_LABEL {
            return None;
        }
        let label = field(&mut bytes)?;
        let purpose = *KeyPurpose::ALL
            .iter()
            .find(|p| p.label().as_bytes() == label)?;
        let epoch = u32::from_le_bytes(field(&mut bytes)?.try_into().ok()?);
        let database: [u8; 16] = field(&mut bytes)?.try_into().ok()?;
        let (tag, rest) = bytes.split_first()?;
        bytes = rest;
        let context = match tag {
            0 => None,
            1 => Some(field(&mut bytes)?.to_vec()),
            _ => return None,
        };
        bytes
            .is_empty()
            .then_some((purpose, epoch, database, context))
    }

    #[test]
    fn info_layout_is_exactly_as_documented() {
        let request = DerivationRequest::new(KeyPurpose::Wal, KeyEpoch::new(1), db(0));
        let expected = hex::decode(concat!(
            "0e000000",
            "616564622f76312f7375626b6579",
            "03000000",
            "77616c",
            "04000000",
            "01000000",
            "10000000",
            "000102030405060708090a0b0c0d0e0f",
            "00",
        ))
        .unwrap();
        assert_eq!(request.info().unwrap(), expected);
        assert_eq!(expected.len(), 54);
        let mut message = expected.clone();
        message.push(0x01);
        assert_eq!(request.hmac_message().unwrap(), message);

        let with_ctx = request.with_context(b"cb");
        let mut expected_ctx = expected[..53].to_vec();
        expected_ctx.extend_from_slice(&hex::decode("01020000006362").unwrap());
        assert_eq!(with_ctx.info().unwrap(), expected_ctx);
    }

    #[test]
    fn absent_and_empty_context_differ() {
        let plain = DerivationRequest::new(KeyPurpose::Session, KeyEpoch::FIRST, db(1));
        let empty = plain.with_context(&[]);
        assert_ne!(plain.info().unwrap(), empty.info().unwrap());
    }

    #[test]
    fn oversized_context_is_refused() {
        let big = vec![0u8; MAX_CONTEXT_LEN + 1];
        let request =
            DerivationRequest::new(KeyPurpose::Session, KeyEpoch::FIRST, db(1)).with_context(&big);
        assert!(matches!(
            request.info(),
            Err(KeyError::ContextTooLong { len, max }) if len == MAX_CONTEXT_LEN + 1 && max == MAX_CONTEXT_LEN
        ));
        let master = SecretKey::new([1; KEY_LEN]);
        assert!(expand_subkey(&master, &request).is_err());
        let fits = &big[..MAX_CONTEXT_LEN];
        let request =
            DerivationRequest::new(KeyPurpose::Session, KeyEpoch::FIRST, db(1)).with_context(fits);
        // 54 bytes for "wal" without context; "session" is 4 longer; then the length prefix.
        assert_eq!(request.info().unwrap().len(), 54 + 4 + 4 + MAX_CONTEXT_LEN);
    }

    #[test]
    fn hkdf_expand_equals_hmac_of_info_and_counter() {
        for (i, purpose) in KeyPurpose::ALL.into_iter().enumerate() {
            let master_bytes: [u8; KEY_LEN] = std::array::from_fn(|j| (j * 7 + i) as u8);
            let master = SecretKey::new(master_bytes);
            let context = [i as u8; 40];
            for request in [
                DerivationRequest::new(purpose, KeyEpoch::new(i as u32 + 1), db(i as u8)),
                DerivationRequest::new(purpose, KeyEpoch::new(u32::MAX), db(9))
                    .with_context(&context),
            ] {
                let via_hkdf = expand_subkey(&master, &request).unwrap();
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&master_bytes).unwrap();
                mac.update(&request.info().unwrap());
                mac.update(&[0x01]);
                let via_hmac = mac.finalize().into_bytes();
                assert!(via_hkdf.with_bytes(|k| k[..] == via_hmac[..]));
                // And the single-message form the HSM signs.
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&master_bytes).unwrap();
                mac.update(&request.hmac_message().unwrap());
                assert!(via_hkdf.with_bytes(|k| k[..] == mac.finalize().into_bytes()[..]));
            }
        }
    }

    /// Pins the construction with a vector computed independently (Python's hmac module:
    /// `hmac.new(bytes([0x0b]*32), info + b"\x01", "sha256")`).
    #[test]
    fn golden_subkey_vector() {
        let master = SecretKey::new([0x0b; KEY_LEN]);
        let request = DerivationRequest::new(KeyPurpose::Wal, KeyEpoch::new(1), db(0));
        let subkey = expand_subkey(&master, &request).unwrap();
        let expected = hex::decode(GOLDEN_WAL_EPOCH1).unwrap();
        assert!(subkey.with_bytes(|k| k[..] == expected[..]));
    }

    const GOLDEN_WAL_EPOCH1: &str =
        "a23a4c6ffa7f383d69c2cc9d9ff013385a7a442b8cad0cbea44870ee66f19443";

    #[test]
    fn purposes_have_distinct_labels() {
        let mut labels: Vec<_> = KeyPurpose::ALL.iter().map(|p| p.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), KeyPurpose::ALL.len());
        assert_eq!(KeyPurpose::Checkpoint.to_string(), "checkpoint");
    }

    fn request_parts() -> impl Strategy<Value = Parts> {
        (
            prop::sample::select(KeyPurpose::ALL.to_vec()),
            prop_oneof![Just(0u32), Just(1), Just(u32::MAX), any::<u32>()],
            prop_oneof![Just([0u8; 16]), any::<[u8; 16]>()],
            prop::option::of(prop::collection::vec(any::<u8>(), 0..48)),
        )
    }

    fn request(parts: &Parts) -> DerivationRequest<'_> {
        let base = DerivationRequest::new(
            parts.0,
            KeyEpoch::new(parts.1),
            DatabaseId::from_bytes(parts.2),
        );
        match &parts.3 {
            Some(ctx) => base.with_context(ctx),
            None => base,
        }
    }

    proptest! {
        /// The encoding has a left inverse, so it is injective.
        #[test]
        fn info_round_trips(parts in request_parts()) {
            let info = request(&parts).info().unwrap();
            prop_assert_eq!(info.len(), request(&parts).info_len());
            prop_assert_eq!(parse_info(&info), Some(parts));
        }

        /// Distinct requests give distinct info (and so, under HMAC, unrelated subkeys).
        #[test]
        fn distinct_requests_give_distinct_info(a in request_parts(), b in request_parts()) {
            let (ra, rb) = (request(&a), request(&b));
            prop_assert_eq!(ra == rb, ra.info().unwrap() == rb.info().unwrap());
        }

        /// Changing any single field changes the info.
        #[test]
        fn each_field_matters(parts in request_parts(), which in 0..4usize, flip in 1..=255u8) {
            let mut other = parts.clone();
            match which {
                0 => {
                    let i = KeyPurpose::ALL.iter().position(|p| *p == parts.0).unwrap();
                    other.0 = KeyPurpose::ALL[(i + 1 + flip as usize % 4) % 5];
                }
                1 => other.1 ^= u32::from(flip),
                2 => other.2[flip as usize % 16] ^= flip,
                _ => other.3 = match parts.3.clone() {
                    None => Some(vec![]),
                    Some(mut c) if !c.is_empty() => { c[0] ^= flip; Some(c) }
                    Some(_) => None,
                },
            }
            prop_assert_ne!(request(&parts).info().unwrap(), request(&other).info().unwrap());
        }
    }
}
