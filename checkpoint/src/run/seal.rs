//! The run-file block envelope: associated data, per-block nonces, compression.
//!
//! A block's plaintext `P` (data, index, filter or meta encoding) becomes its *body*
//! `B = P` (compression 0) or `B = lz4_compress_prepend_size(P)` (compression 1), and is
//! stored as
//!
//! ```text
//! sealed:    nonce (24, fresh from the NonceSource) || XChaCha20-Poly1305(B) || tag (16)
//! plaintext: B || SHA-256("aedb-run plaintext block v2\0" || AAD || B)[..16]
//! ```
//!
//! with `AAD = H[0..84] || kind (u8) || ordinal (u64 LE) || offset (u64 LE)` for data,
//! index and filter blocks, and `AAD = H[0..104] || 4 || 0 (u64) || offset || F[0..44]`
//! for the meta block, where `H` is the header as stored and `F` the footer as stored.
//! `offset` is the block's byte offset in the file; `ordinal` is the data block's number
//! (0-based) and 0 for the other kinds.
//!
//! Decompression happens only after authentication, and its declared size is checked
//! against the kind's limit before anything is allocated.

use crate::chunk::{ChunkCipher, ChunkRejected};
use crate::error::BlockProblem;
use crate::header::{Algorithm, TAG_LEN};
use crate::nonce::NONCE_LEN;
use crate::run::header::{IDENTITY_LEN, RUN_HEADER_LEN};
use crate::run::{BlockKind, Compression};

/// Domain string of plaintext-mode block digests.
pub(crate) const PLAINTEXT_DOMAIN: &[u8] = b"aedb-run plaintext block v2\0";
/// Domain string of the run-file key check.
pub(crate) const KEY_CHECK_DOMAIN: &[u8] = b"aedb-run key-check v2\0";
/// Bytes of the LZ4 size prefix.
const LZ4_PREFIX: usize = 4;

/// Bytes a block's envelope adds to its body.
pub(crate) const fn overhead(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::XChaCha20Poly1305 => NONCE_LEN + TAG_LEN,
        Algorithm::PlaintextSha256 => TAG_LEN,
    }
}

/// The largest stored size of a block whose plaintext is at most `max_plain` bytes.
pub(crate) fn max_stored_len(
    algorithm: Algorithm,
    compression: Compression,
    max_plain: usize,
) -> u64 {
    let body = match compression {
        Compression::None => max_plain,
        Compression::Lz4 => LZ4_PREFIX + lz4_flex::block::get_maximum_output_size(max_plain),
    };
    (overhead(algorithm) + body) as u64
}

/// The smallest stored size of any block (every plaintext is at least one byte).
pub(crate) const fn min_stored_len(algorithm: Algorithm) -> u64 {
    (overhead(algorithm) + 1) as u64
}

/// The largest plaintext of each kind.
pub(crate) const fn max_plaintext(kind: BlockKind) -> usize {
    match kind {
        BlockKind::Data => crate::run::MAX_DATA_BLOCK_LEN,
        BlockKind::Index | BlockKind::Filter => crate::run::MAX_RUN_INDEX_LEN,
        BlockKind::Meta => crate::run::MAX_RUN_META_LEN,
    }
}

/// The associated data of a block. `header` is the identity prefix (`H[0..84]`) for data,
/// index and filter blocks and the whole header for the meta block, whose `footer` is the
/// footer's first 44 bytes (empty for the other kinds).
pub(crate) fn block_aad(
    header: &[u8; RUN_HEADER_LEN],
    kind: BlockKind,
    ordinal: u64,
    offset: u64,
    footer: &[u8],
) -> Vec<u8> {
    let head = match kind {
        BlockKind::Meta => &header[..],
        _ => &header[..IDENTITY_LEN],
    };
    let mut aad = Vec::with_capacity(head.len() + 17 + footer.len());
    aad.extend_from_slice(head);
    aad.push(kind.id());
    aad.extend_from_slice(&ordinal.to_le_bytes());
    aad.extend_from_slice(&offset.to_le_bytes());
    aad.extend_from_slice(footer);
    aad
}

/// Compresses a plaintext into a block body.
pub(crate) fn compress_body(compression: Compression, plaintext: Vec<u8>) -> Vec<u8> {
    match compression {
        Compression::None => plaintext,
        Compression::Lz4 => lz4_flex::block::compress_prepend_size(&plaintext),
    }
}

/// Seals `body` in place and returns `(nonce, tag)`; the stored block is
/// `nonce || body || tag` when sealed (the nonce is `None` in plaintext mode, where the
/// body is left as it is and the tag is its digest).
pub(crate) fn seal_body(
    cipher: &ChunkCipher,
    nonce: Option<&[u8; NONCE_LEN]>,
    aad: &[u8],
    body: &mut [u8],
) -> Result<[u8; TAG_LEN], ChunkRejected> {
    // Sizes only: never the key, the nonce or the contents.
    #[cfg(feature = "observability")]
    let _span = tracing::debug_span!(
        "aedb.checkpoint.seal",
        run_block = true,
        bytes = body.len(),
        sealed = cipher.is_sealed(),
    )
    .entered();
    let zero = [0u8; NONCE_LEN];
    cipher.seal_detached(PLAINTEXT_DOMAIN, nonce.unwrap_or(&zero), aad, body)
}

/// Authenticates (and decrypts) a stored block in place and returns its body, or
/// `Err(())` on an authentication failure. `stored` must be at least the envelope
/// overhead long (the reader checks lengths against the footer and index first).
pub(crate) fn open_stored(
    cipher: &ChunkCipher,
    aad: &[u8],
    mut stored: Vec<u8>,
) -> Result<Vec<u8>, ChunkRejected> {
    let body = open_in_place(cipher, aad, &mut stored)?;
    stored.truncate(body.end);
    if body.start > 0 {
        stored.copy_within(body.start.., 0);
        stored.truncate(body.len());
    }
    Ok(stored)
}

/// Authenticates (and decrypts) the stored block `stored` in place and returns where
/// its body is in it (between the nonce, if sealed, and the tag), or `Err(())` on an
/// authentication failure or a block shorter than its envelope.
pub(crate) fn open_in_place(
    cipher: &ChunkCipher,
    aad: &[u8],
    stored: &mut [u8],
) -> Result<std::ops::Range<usize>, ChunkRejected> {
    #[cfg(feature = "observability")]
    let _span = tracing::debug_span!(
        "aedb.checkpoint.open",
        run_block = true,
        bytes = stored.len(),
        sealed = cipher.is_sealed(),
    )
    .entered();
    let nonce_len = if cipher.is_sealed() { NONCE_LEN } else { 0 };
    if stored.len() < nonce_len + TAG_LEN {
        return Err(ChunkRejected);
    }
    let tag_at = stored.len() - TAG_LEN;
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&stored[tag_at..]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..nonce_len].copy_from_slice(&stored[..nonce_len]);
    cipher.open_detached(
        PLAINTEXT_DOMAIN,
        &nonce,
        aad,
        &mut stored[nonce_len..tag_at],
        &tag,
    )?;
    Ok(nonce_len..tag_at)
}

/// Turns an authenticated block body back into its plaintext: as it is (compression 0),
/// or LZ4-decompressed (compression 1) after checking the declared size against `max`
/// and before allocating for it. The result is exactly the declared size.
///
/// # Errors
/// [`BlockProblem::TooLarge`] for a declared size over `max`,
/// [`BlockProblem::Decompress`] for a malformed LZ4 body or a size mismatch.
pub(crate) fn decompress_body(
    compression: Compression,
    body: Vec<u8>,
    max: usize,
) -> Result<Vec<u8>, BlockProblem> {
    match compression {
        Compression::None => {
            if body.len() > max {
                return Err(BlockProblem::TooLarge {
                    len: body.len() as u64,
                    max: max as u64,
                });
            }
            Ok(body)
        }
        Compression::Lz4 => decompress_lz4(&body, max),
    }
}

/// Decompresses an authenticated LZ4 body (`u32_le(len) || LZ4 block`) after checking
/// the declared size against `max` and before allocating for it. The result is exactly
/// the declared size.
///
/// # Errors
/// As [`decompress_body`].
pub(crate) fn decompress_lz4(body: &[u8], max: usize) -> Result<Vec<u8>, BlockProblem> {
    let mut out = Vec::new();
    decompress_lz4_into(body, max, &mut out)?;
    Ok(out)
}

/// [`decompress_lz4`] into `out` (a reused buffer: its old contents are replaced, and
/// it is grown, never shrunk, to the declared size).
///
/// # Errors
/// As [`decompress_body`].
pub(crate) fn decompress_lz4_into(
    body: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), BlockProblem> {
    let Some((prefix, compressed)) = body.split_first_chunk::<LZ4_PREFIX>() else {
        return Err(BlockProblem::Decompress {
            detail: format!("body of {} bytes has no size prefix", body.len()),
        });
    };
    let declared = u32::from_le_bytes(*prefix) as usize;
    if declared > max {
        return Err(BlockProblem::TooLarge {
            len: declared as u64,
            max: max as u64,
        });
    }
    // Only the grown part is zeroed; the decompressor overwrites all `declared` bytes
    // or fails (and a short result is refused below).
    out.resize(declared, 0);
    let n = lz4_flex::block::decompress_into(compressed, out).map_err(|e| {
        BlockProblem::Decompress {
            detail: e.to_string(),
        }
    })?;
    if n != declared {
        return Err(BlockProblem::Decompress {
            detail: format!("decompressed to {n} bytes, {declared} declared"),
        });
    }
    Ok(())
}

/// Decompresses a block body as the reader does (for the `run_block` fuzz target):
/// [`Compression::None`] returns it as it is, [`Compression::Lz4`] checks the declared
/// size against `max` before allocating. Never panics.
///
/// # Errors
/// As the reader reports it inside [`crate::CheckpointError::BadBlock`].
#[doc(hidden)]
pub fn decode_block_body(
    compression: Compression,
    body: &[u8],
    max: usize,
) -> Result<Vec<u8>, BlockProblem> {
    decompress_body(compression, body.to_vec(), max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aedb_keys::SecretKey;

    #[test]
    fn sealed_and_plaintext_envelopes_round_trip_and_bind_the_aad() {
        let header = [7u8; RUN_HEADER_LEN];
        for key in [Some(SecretKey::new([1; 32])), None] {
            let cipher = ChunkCipher::new(key.as_ref());
            let aad = block_aad(&header, BlockKind::Data, 3, 200, &[]);
            let mut body = b"block body".to_vec();
            let nonce = [5u8; NONCE_LEN];
            let tag = seal_body(&cipher, Some(&nonce), &aad, &mut body).unwrap();
            let mut stored = Vec::new();
            if cipher.is_sealed() {
                stored.extend_from_slice(&nonce);
                assert_ne!(body, b"block body");
            } else {
                assert_eq!(body, b"block body");
            }
            stored.extend_from_slice(&body);
            stored.extend_from_slice(&tag);
            assert_eq!(
                stored.len(),
                10 + overhead(crate::run::algorithm_for(cipher.is_sealed()))
            );
            assert_eq!(
                open_stored(&cipher, &aad, stored.clone()).unwrap(),
                b"block body"
            );
            for other in [
                block_aad(&header, BlockKind::Data, 4, 200, &[]),
                block_aad(&header, BlockKind::Index, 3, 200, &[]),
                block_aad(&header, BlockKind::Data, 3, 201, &[]),
            ] {
                assert!(open_stored(&cipher, &other, stored.clone()).is_err());
            }
            let mut h2 = header;
            h2[50] ^= 1;
            let other = block_aad(&h2, BlockKind::Data, 3, 200, &[]);
            assert!(open_stored(&cipher, &other, stored.clone()).is_err());
            // The LSN bounds (bytes 84..104) are not in a data block's AAD, but are in
            // the meta block's, with the footer.
            h2 = header;
            h2[90] ^= 1;
            assert_eq!(aad, block_aad(&h2, BlockKind::Data, 3, 200, &[]));
            assert_ne!(
                block_aad(&header, BlockKind::Meta, 0, 9, &[1]),
                block_aad(&h2, BlockKind::Meta, 0, 9, &[1])
            );
            assert_ne!(
                block_aad(&header, BlockKind::Meta, 0, 9, &[1]),
                block_aad(&header, BlockKind::Meta, 0, 9, &[2])
            );
            let mut bad = stored.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(open_stored(&cipher, &aad, bad).is_err());
            assert!(open_stored(&cipher, &aad, vec![0; 3]).is_err());
        }
    }

    #[test]
    fn lz4_bodies_are_bounded_before_allocation() {
        let plain = vec![b'a'; 10_000];
        let body = compress_body(Compression::Lz4, plain.clone());
        assert!(body.len() < 200);
        assert_eq!(
            decompress_body(Compression::Lz4, body.clone(), 10_000).unwrap(),
            plain
        );
        assert_eq!(
            decompress_body(Compression::Lz4, body.clone(), 9_999),
            Err(BlockProblem::TooLarge {
                len: 10_000,
                max: 9_999
            })
        );
        // A prefix claiming 4 GiB is refused without allocating.
        let mut huge = body.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decompress_body(Compression::Lz4, huge, crate::run::MAX_DATA_BLOCK_LEN),
            Err(BlockProblem::TooLarge { .. })
        ));
        // A prefix claiming more than the data holds is a size mismatch.
        let mut more = body.clone();
        more[..4].copy_from_slice(&10_001u32.to_le_bytes());
        assert!(matches!(
            decompress_body(Compression::Lz4, more, 20_000),
            Err(BlockProblem::Decompress { .. })
        ));
        let mut less = body;
        less[..4].copy_from_slice(&9_000u32.to_le_bytes());
        assert!(matches!(
            decompress_body(Compression::Lz4, less, 20_000),
            Err(BlockProblem::Decompress { .. })
        ));
        assert!(matches!(
            decompress_body(Compression::Lz4, vec![1, 2], 20_000),
            Err(BlockProblem::Decompress { .. })
        ));
        assert!(matches!(
            decompress_body(Compression::None, vec![0; 11], 10),
            Err(BlockProblem::TooLarge { .. })
        ));
    }
}
