//! The filter block: a bloom filter over the run's distinct user keys.
//!
//! ```text
//! k u8 (1 ..= 30) || num_bits u64 (a multiple of 8) || bits (num_bits / 8 bytes)
//! ```
//!
//! With `h = xxh3_64(user_key)` (seed 0) and `delta = h.rotate_left(32) | 1`, probe `i`
//! (`0 <= i < k`) sets bit `p = (h + i * delta) mod num_bits` (wrapping u64 arithmetic),
//! which is bit `p % 8` (least significant first) of byte `p / 8`. The writer sizes the
//! filter as `num_bits = round_up(max(64, n * bits_per_key), 64)` for `n` distinct keys
//! and `k = round(bits_per_key * ln 2)` clamped to `1 ..= 30`; `bits_per_key = 0` writes
//! `num_bits = 0`, a filter that answers "maybe" for every key. A key that was added is
//! always found (no false negatives).

use crate::run::MAX_RUN_INDEX_LEN;
use aedb_types::{ByteReader, DecodeError, DecodeErrorKind};

/// Most probes per key.
const MAX_PROBES: u32 = 30;

/// The filter's hash of a user key.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Probes per key for `bits_per_key`: `round(bits_per_key * ln 2)` clamped to `1..=30`.
pub(crate) fn probes(bits_per_key: u32) -> u8 {
    let k = (f64::from(bits_per_key) * std::f64::consts::LN_2).round() as u32;
    k.clamp(1, MAX_PROBES) as u8
}

/// `num_bits` for `distinct` keys at `bits_per_key`.
pub(crate) fn num_bits(distinct: u64, bits_per_key: u32) -> u64 {
    if bits_per_key == 0 {
        return 0;
    }
    distinct
        .saturating_mul(u64::from(bits_per_key))
        .max(64)
        .saturating_add(63)
        / 64
        * 64
}

/// Encoded size of a filter over `distinct` keys.
pub(crate) fn encoded_len(distinct: u64, bits_per_key: u32) -> u64 {
    9 + num_bits(distinct, bits_per_key) / 8
}

/// A decoded or freshly built bloom filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BloomFilter {
    k: u8,
    num_bits: u64,
    bits: Vec<u8>,
}

impl BloomFilter {
    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bits.capacity()
    }

    /// A filter holding the key hashes `hashes` (each distinct key once).
    pub(crate) fn build(hashes: &[u64], bits_per_key: u32) -> BloomFilter {
        let num_bits = num_bits(hashes.len() as u64, bits_per_key);
        let mut filter = BloomFilter {
            k: probes(bits_per_key),
            num_bits,
            bits: vec![0; (num_bits / 8) as usize],
        };
        if num_bits > 0 {
            for &h in hashes {
                filter.for_each_probe(h, |bits, byte, mask| bits[byte] |= mask);
            }
        }
        filter
    }

    fn for_each_probe(&mut self, h: u64, mut f: impl FnMut(&mut [u8], usize, u8)) {
        let delta = h.rotate_left(32) | 1;
        let mut p = h;
        for _ in 0..self.k {
            let bit = p % self.num_bits;
            f(&mut self.bits, (bit / 8) as usize, 1 << (bit % 8));
            p = p.wrapping_add(delta);
        }
    }

    /// Whether the key with hash `h` may have been added (false: certainly not).
    pub(crate) fn may_contain_hash(&self, h: u64) -> bool {
        if self.num_bits == 0 {
            return true;
        }
        let delta = h.rotate_left(32) | 1;
        let mut p = h;
        for _ in 0..self.k {
            let bit = p % self.num_bits;
            if self.bits[(bit / 8) as usize] & (1 << (bit % 8)) == 0 {
                return false;
            }
            p = p.wrapping_add(delta);
        }
        true
    }

    /// Whether `key` may have been added (false: certainly not).
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(key_hash(key))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.bits.len());
        out.push(self.k);
        out.extend_from_slice(&self.num_bits.to_le_bytes());
        out.extend_from_slice(&self.bits);
        out
    }

    /// Decodes and validates a filter-block plaintext.
    ///
    /// # Errors
    /// A [`DecodeError`] (context `"run filter block"`): `k` outside `1..=30`, `num_bits`
    /// not a multiple of 8 or not matching the bytes present. Never panics.
    pub(crate) fn decode(bytes: &[u8]) -> Result<BloomFilter, DecodeError> {
        let mut r: ByteReader<'_> = ByteReader::new("run filter block", bytes);
        let k = r.u8()?;
        if !(1..=MAX_PROBES as u8).contains(&k) {
            return Err(r.back(1).err(DecodeErrorKind::Invalid {
                what: "probe count (must be 1..=30)",
            }));
        }
        let num_bits = r.u64()?;
        if num_bits % 8 != 0 || num_bits / 8 > MAX_RUN_INDEX_LEN as u64 {
            return Err(r.back(8).err(DecodeErrorKind::Invalid {
                what: "filter size (a multiple of 8 bits, at most the limit)",
            }));
        }
        // num_bits / 8 <= MAX_RUN_INDEX_LEN, so it fits in usize.
        let bits = r.bytes((num_bits / 8) as usize)?.to_vec();
        r.finish()?;
        Ok(BloomFilter { k, num_bits, bits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_and_probes() {
        assert_eq!(probes(10), 7);
        assert_eq!(probes(0), 1);
        assert_eq!(probes(1), 1);
        assert_eq!(probes(64), 30);
        assert_eq!(num_bits(0, 10), 64);
        assert_eq!(num_bits(7, 10), 128);
        assert_eq!(num_bits(1000, 0), 0);
        assert_eq!(encoded_len(7, 10), 9 + 16);
    }

    #[test]
    fn false_positive_rate_is_about_one_percent_at_ten_bits() {
        let keys: Vec<u64> = (0..10_000u32).map(|i| key_hash(&i.to_le_bytes())).collect();
        let f = BloomFilter::build(&keys, 10);
        let fp = (10_000..110_000u32)
            .filter(|i| f.may_contain(&i.to_le_bytes()))
            .count();
        assert!(fp < 2_000, "{fp} false positives in 100000");
        let none = BloomFilter::build(&keys, 0);
        assert!(none.may_contain(b"anything"));
        assert_eq!(BloomFilter::decode(&none.encode()).unwrap(), none);
    }

    #[test]
    fn invalid_filters_are_rejected() {
        let f = BloomFilter::build(&[1, 2, 3], 10).encode();
        assert_eq!(BloomFilter::decode(&f).unwrap().encode(), f);
        for cut in 0..f.len() {
            assert!(BloomFilter::decode(&f[..cut]).is_err());
        }
        let mut k0 = f.clone();
        k0[0] = 0;
        assert!(BloomFilter::decode(&k0).is_err());
        let mut k31 = f.clone();
        k31[0] = 31;
        assert!(BloomFilter::decode(&k31).is_err());
        let mut odd = f.clone();
        odd[1] = 63;
        assert!(BloomFilter::decode(&odd).is_err());
        let mut trailing = f;
        trailing.push(0);
        assert!(BloomFilter::decode(&trailing).is_err());
    }

    proptest! {
        #[test]
        fn never_a_false_negative(
            keys in proptest::collection::btree_set(proptest::collection::vec(any::<u8>(), 0..24), 0..300),
            bits_per_key in 0u32..=64,
        ) {
            let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k)).collect();
            let f = BloomFilter::build(&hashes, bits_per_key);
            let f = BloomFilter::decode(&f.encode()).unwrap();
            for k in &keys {
                prop_assert!(f.may_contain(k));
            }
        }
    }
}
