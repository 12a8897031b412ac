//! Sealing and opening one checkpoint chunk: nonce derivation, associated data, and the
//! two chunk protections (XChaCha20-Poly1305, or a plaintext SHA-256 digest).
//!
//! For chunk `i` of a file whose encoded header is `H` (96 bytes):
//!
//! * nonce  = `base_nonce` with bytes `[16, 24)` XORed with `i` as u64 little-endian;
//! * AAD    = `H || i (u64 LE) || final (u8: 1 for the last chunk, else 0)`;
//! * stored = `ciphertext || tag (16)` (sealed) or `plaintext || digest (16)` (plaintext),
//!   where `digest = SHA-256("aedb-ckpt plaintext chunk v1\0" || AAD || plaintext)[..16]`.
//!
//! Binding the index and the final flag detects reordering, duplication and truncation;
//! binding the whole header (which holds the random base nonce, the database id and the LSN)
//! detects splicing chunks across files. Index `u64::MAX` is reserved for the key check:
//! `key_check = tag of sealing the empty message with nonce(u64::MAX) and
//! AAD = "aedb-ckpt key-check v1\0" || H[0..72]`.

use crate::header::{CHECKPOINT_HEADER_LEN, KEY_CHECK_OFFSET, TAG_LEN};
use crate::nonce::NONCE_LEN;
use aedb_keys::SecretKey;
use aedb_keys::XChaCha20Poly1305;
use sha2::{Digest, Sha256};

/// Chunk index reserved for the key-check tag; no real chunk can reach it.
pub(crate) const KEY_CHECK_INDEX: u64 = u64::MAX;
const AAD_LEN: usize = CHECKPOINT_HEADER_LEN + 8 + 1;
const PLAINTEXT_DOMAIN: &[u8] = b"aedb-ckpt plaintext chunk v1\0";
const KEY_CHECK_DOMAIN: &[u8] = b"aedb-ckpt key-check v1\0";

/// The nonce for chunk `index`.
pub(crate) fn chunk_nonce(base: &[u8; NONCE_LEN], index: u64) -> [u8; NONCE_LEN] {
    let mut n = *base;
    for (b, i) in n[16..].iter_mut().zip(index.to_le_bytes()) {
        *b ^= i;
    }
    n
}

/// The associated data for chunk `index`.
pub(crate) fn chunk_aad(
    header: &[u8; CHECKPOINT_HEADER_LEN],
    index: u64,
    is_final: bool,
) -> [u8; AAD_LEN] {
    let mut aad = [0u8; AAD_LEN];
    aad[..CHECKPOINT_HEADER_LEN].copy_from_slice(header);
    aad[CHECKPOINT_HEADER_LEN..CHECKPOINT_HEADER_LEN + 8].copy_from_slice(&index.to_le_bytes());
    aad[AAD_LEN - 1] = u8::from(is_final);
    aad
}

fn key_check_aad(header_prefix: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(KEY_CHECK_DOMAIN.len() + header_prefix.len());
    aad.extend_from_slice(KEY_CHECK_DOMAIN);
    aad.extend_from_slice(header_prefix);
    aad
}

fn plaintext_digest(aad: &[u8], data: &[u8]) -> [u8; TAG_LEN] {
    domain_digest(PLAINTEXT_DOMAIN, aad, data)
}

/// `SHA-256(domain || aad || data)[..16]`: the integrity digest of plaintext-mode chunks
/// (v1) and blocks (run files, with their own domain string).
pub(crate) fn domain_digest(domain: &[u8], aad: &[u8], data: &[u8]) -> [u8; TAG_LEN] {
    let mut h = Sha256::new();
    h.update(domain);
    h.update(aad);
    h.update(data);
    let full = h.finalize();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// A chunk failed authentication (or its plaintext digest did not match).
#[derive(Debug)]
pub(crate) struct ChunkRejected;

/// The per-file chunk protection. Holds the cipher (which zeroizes its key on drop).
pub(crate) enum ChunkCipher {
    Plaintext,
    Sealed(Box<XChaCha20Poly1305>),
}

impl ChunkCipher {
    pub(crate) fn new(key: Option<&SecretKey>) -> ChunkCipher {
        match key {
            None => ChunkCipher::Plaintext,
            Some(k) => ChunkCipher::Sealed(Box::new(XChaCha20Poly1305::new(k))),
        }
    }

    /// Whether this is the sealed (XChaCha20-Poly1305) protection.
    pub(crate) fn is_sealed(&self) -> bool {
        matches!(self, ChunkCipher::Sealed(_))
    }

    /// Seals `buf` in place under an explicit `nonce` and `aad` and returns the tag; in
    /// plaintext mode leaves `buf` as it is and returns `SHA-256(domain || aad || buf)[..16]`.
    /// Used by run files, whose blocks carry their own random nonces.
    pub(crate) fn seal_detached(
        &self,
        domain: &[u8],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], ChunkRejected> {
        match self {
            ChunkCipher::Plaintext => Ok(domain_digest(domain, aad, buf)),
            ChunkCipher::Sealed(c) => {
                let tag = c
                    .encrypt_in_place_detached(nonce, aad, buf)
                    .map_err(|_| ChunkRejected)?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(&tag);
                Ok(out)
            }
        }
    }

    /// Verifies and (when sealed) decrypts `buf` in place, the inverse of
    /// [`ChunkCipher::seal_detached`]. On failure `buf` is zeroed when sealed (no unauthenticated
    /// plaintext survives) and unchanged in plaintext mode.
    pub(crate) fn open_detached(
        &self,
        domain: &[u8],
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), ChunkRejected> {
        match self {
            ChunkCipher::Plaintext => {
                let digest = domain_digest(domain, aad, buf);
                let diff = digest
                    .iter()
                    .zip(tag)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                if diff == 0 {
                    Ok(())
                } else {
                    Err(ChunkRejected)
                }
            }
            ChunkCipher::Sealed(c) => c
                .decrypt_in_place_detached(nonce, aad, buf, tag)
                .map_err(|_| ChunkRejected),
        }
    }

    /// The key-check tag for a header whose first 72 bytes are `header_prefix`.
    pub(crate) fn key_check(
        &self,
        header_prefix: &[u8],
        base: &[u8; NONCE_LEN],
    ) -> Result<[u8; TAG_LEN], ChunkRejected> {
        match self {
            ChunkCipher::Plaintext => Ok([0; TAG_LEN]),
            ChunkCipher::Sealed(c) => {
                let nonce = chunk_nonce(base, KEY_CHECK_INDEX);
                let tag = c
                    .encrypt_in_place_detached(&nonce, &key_check_aad(header_prefix), &mut [])
                    .map_err(|_| ChunkRejected)?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(&tag);
                Ok(out)
            }
        }
    }

    /// Verifies the key check of an encoded header (constant-time via the AEAD).
    pub(crate) fn verify_key_check(
        &self,
        header: &[u8; CHECKPOINT_HEADER_LEN],
        base: &[u8; NONCE_LEN],
    ) -> Result<(), ChunkRejected> {
        match self {
            ChunkCipher::Plaintext => Ok(()),
            ChunkCipher::Sealed(c) => {
                let nonce = chunk_nonce(base, KEY_CHECK_INDEX);
                let mut tag = [0u8; TAG_LEN];
                tag.copy_from_slice(&header[KEY_CHECK_OFFSET..KEY_CHECK_OFFSET + TAG_LEN]);
                c.decrypt_in_place_detached(
                    &nonce,
                    &key_check_aad(&header[..KEY_CHECK_OFFSET]),
                    &mut [],
                    &tag,
                )
                .map_err(|_| ChunkRejected)
            }
        }
    }

    /// Seals `buf` in place and returns its tag.
    pub(crate) fn seal(
        &self,
        header: &[u8; CHECKPOINT_HEADER_LEN],
        base: &[u8; NONCE_LEN],
        index: u64,
        is_final: bool,
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], ChunkRejected> {
        #[cfg(feature = "observability")]
        let _span = tracing::debug_span!(
            "aedb.checkpoint.seal",
            chunk = index,
            is_final,
            bytes = buf.len(),
            sealed = matches!(self, ChunkCipher::Sealed(_)),
        )
        .entered();
        let aad = chunk_aad(header, index, is_final);
        match self {
            ChunkCipher::Plaintext => Ok(plaintext_digest(&aad, buf)),
            ChunkCipher::Sealed(c) => {
                let nonce = chunk_nonce(base, index);
                let tag = c
                    .encrypt_in_place_detached(&nonce, &aad, buf)
                    .map_err(|_| ChunkRejected)?;
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(&tag);
                Ok(out)
            }
        }
    }

    /// Verifies and (when sealed) decrypts `buf` in place. On failure `buf` is zeroed when sealed (no unauthenticated
    /// plaintext survives) and unchanged in plaintext mode.
    pub(crate) fn open(
        &self,
        header: &[u8; CHECKPOINT_HEADER_LEN],
        base: &[u8; NONCE_LEN],
        index: u64,
        is_final: bool,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), ChunkRejected> {
        #[cfg(feature = "observability")]
        let _span = tracing::debug_span!(
            "aedb.checkpoint.open",
            chunk = index,
            is_final,
            bytes = buf.len(),
            sealed = matches!(self, ChunkCipher::Sealed(_)),
        )
        .entered();
        let aad = chunk_aad(header, index, is_final);
        match self {
            ChunkCipher::Plaintext => {
                let digest = plaintext_digest(&aad, buf);
                // Not a secret comparison (plaintext mode is unkeyed), but keep it branch-free.
                let diff = digest
                    .iter()
                    .zip(tag)
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b));
                if diff == 0 {
                    Ok(())
                } else {
                    Err(ChunkRejected)
                }
            }
            ChunkCipher::Sealed(c) => c
                .decrypt_in_place_detached(&chunk_nonce(base, index), &aad, buf, tag)
                .map_err(|_| ChunkRejected),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ_per_index_and_key_check_index_is_reserved() {
        let base = [0x33; NONCE_LEN];
        assert_eq!(chunk_nonce(&base, 0), base);
        assert_ne!(chunk_nonce(&base, 1), chunk_nonce(&base, 2));
        assert_eq!(&chunk_nonce(&base, 1)[..16], &base[..16]);
        assert_ne!(chunk_nonce(&base, KEY_CHECK_INDEX), chunk_nonce(&base, 0));
    }

    #[test]
    fn sealed_chunk_binds_index_final_flag_and_header() {
        let key = SecretKey::new([1; 32]);
        let c = ChunkCipher::new(Some(&key));
        let header = [7u8; CHECKPOINT_HEADER_LEN];
        let base = [2u8; NONCE_LEN];
        let mut buf = b"hello chunk".to_vec();
        let tag = c.seal(&header, &base, 3, false, &mut buf).unwrap();
        assert_ne!(buf, b"hello chunk");
        let sealed = buf.clone();
        let mut other = header;
        other[0] ^= 1;
        for (header, index, is_final) in
            [(&header, 4, false), (&header, 3, true), (&other, 3, false)]
        {
            let mut attempt = sealed.clone();
            assert!(
                c.open(header, &base, index, is_final, &mut attempt, &tag)
                    .is_err()
            );
            assert!(
                attempt.iter().all(|b| *b == 0),
                "a failed open leaves no unauthenticated plaintext"
            );
        }
        c.open(&header, &base, 3, false, &mut buf, &tag).unwrap();
        assert_eq!(buf, b"hello chunk");
    }

    #[test]
    fn plaintext_chunk_digest_detects_changes() {
        let c = ChunkCipher::new(None);
        let header = [7u8; CHECKPOINT_HEADER_LEN];
        let base = [0u8; NONCE_LEN];
        let mut buf = b"visible".to_vec();
        let tag = c.seal(&header, &base, 0, true, &mut buf).unwrap();
        assert_eq!(buf, b"visible");
        c.open(&header, &base, 0, true, &mut buf, &tag).unwrap();
        assert!(c.open(&header, &base, 0, false, &mut buf, &tag).is_err());
        buf[0] ^= 1;
        assert!(c.open(&header, &base, 0, true, &mut buf, &tag).is_err());
    }
}
