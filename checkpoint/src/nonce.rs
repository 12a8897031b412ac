//! Where checkpoint base nonces come from.
//!
//! Production code uses [`OsNonceSource`] (the operating system's CSPRNG). Tests and golden
//! fixtures inject a [`FixedNonce`] so that sealed bytes are reproducible.

use std::io;

/// Length of an XChaCha20-Poly1305 nonce (and of a checkpoint's base nonce), in bytes.
pub const NONCE_LEN: usize = 24;

/// A source of 24-byte base nonces for sealed checkpoints.
///
/// Every sealed checkpoint must get a fresh, unpredictable nonce: the per-chunk nonces are
/// derived from it, and two files sealed under the same key with the same base nonce would
/// reuse keystream.
pub trait NonceSource {
    /// Fills `nonce` with a new base nonce.
    ///
    /// # Errors
    /// Returns the underlying error if randomness is unavailable; the checkpoint is then
    /// not written.
    fn fill_nonce(&mut self, nonce: &mut [u8; NONCE_LEN]) -> io::Result<()>;
}

/// Draws nonces from the operating system's CSPRNG (`getrandom`). The default.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsNonceSource;

impl NonceSource for OsNonceSource {
    fn fill_nonce(&mut self, nonce: &mut [u8; NONCE_LEN]) -> io::Result<()> {
        getrandom::fill(nonce)
            .map_err(|e| io::Error::other(format!("OS randomness unavailable: {e}")))
    }
}

/// Always returns the same nonce. **For golden fixtures and tests only**: sealing two
/// different payloads under one key with a `FixedNonce` reuses keystream and breaks
/// confidentiality.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedNonce(pub [u8; NONCE_LEN]);

impl NonceSource for FixedNonce {
    fn fill_nonce(&mut self, nonce: &mut [u8; NONCE_LEN]) -> io::Result<()> {
        *nonce = self.0;
        Ok(())
    }
}

/// Returns `start`, then `start + 1`, `start + 2`, … (the nonce read as a little-endian
/// 192-bit counter, wrapping). **For golden fixtures and tests only**: the nonces are
/// distinct but predictable. Run files draw one nonce per block, so a [`FixedNonce`] would
/// seal every block of a file under the same nonce; this gives reproducible bytes without
/// that reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterNonce {
    next: [u8; NONCE_LEN],
}

impl CounterNonce {
    /// A counter whose first nonce is `start`.
    pub const fn new(start: [u8; NONCE_LEN]) -> CounterNonce {
        CounterNonce { next: start }
    }
}

impl NonceSource for CounterNonce {
    fn fill_nonce(&mut self, nonce: &mut [u8; NONCE_LEN]) -> io::Result<()> {
        *nonce = self.next;
        for byte in &mut self.next {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_nonces_differ_and_fixed_nonce_is_fixed() {
        let (mut a, mut b) = ([0u8; NONCE_LEN], [0u8; NONCE_LEN]);
        OsNonceSource.fill_nonce(&mut a).unwrap();
        OsNonceSource.fill_nonce(&mut b).unwrap();
        assert_ne!(a, b);
        let mut f = FixedNonce([7; NONCE_LEN]);
        f.fill_nonce(&mut a).unwrap();
        assert_eq!(a, [7; NONCE_LEN]);
    }

    #[test]
    fn counter_nonce_counts_little_endian_with_carry() {
        let mut start = [0u8; NONCE_LEN];
        start[0] = 0xFE;
        let mut c = CounterNonce::new(start);
        let mut n = [0u8; NONCE_LEN];
        c.fill_nonce(&mut n).unwrap();
        assert_eq!(n, start);
        c.fill_nonce(&mut n).unwrap();
        assert_eq!((n[0], n[1]), (0xFF, 0));
        c.fill_nonce(&mut n).unwrap();
        assert_eq!((n[0], n[1]), (0x00, 1));
        let mut wrap = CounterNonce::new([0xFF; NONCE_LEN]);
        wrap.fill_nonce(&mut n).unwrap();
        wrap.fill_nonce(&mut n).unwrap();
        assert_eq!(n, [0; NONCE_LEN]);
    }
}
