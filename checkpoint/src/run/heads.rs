//! Head-guided binary search over sorted keys (an in-memory aid, not a format).
//!
//! A data block's or a run index's keys share a prefix (the namespace, often more).
//! [`Heads`] keeps, per key, the 8 bytes that follow that prefix as a big-endian `u64`
//! (its *head*) in one contiguous array. A search compares the probe's head with those
//! integers and reads a key's bytes only where heads tie, so a lookup touches a few
//! cache lines instead of one or two per probe.

use std::cmp::Ordering;

/// The heads of a sorted list of keys; see the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Heads {
    /// The prefix every key shares (a copy, so a search reads no key to learn it).
    prefix: Box<[u8]>,
    /// Each key's head; non-decreasing.
    heads: Vec<u64>,
}

/// The head of `rest` (a key with the shared prefix stripped): its first 8 bytes,
/// big-endian, zero-padded. A strictly smaller head means a strictly smaller key;
/// equal heads say nothing.
fn head(rest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = rest.len().min(8);
    b[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(b)
}

impl Heads {
    /// The heads of `n` keys sorted ascending (`key(i)` is key `i`; duplicates allowed).
    pub(crate) fn build<'a>(n: usize, key: impl Fn(usize) -> &'a [u8]) -> Heads {
        if n == 0 {
            return Heads::default();
        }
        // Sorted keys: the first and the last share what every key shares.
        let (first, last) = (key(0), key(n - 1));
        let prefix_len = first.iter().zip(last).take_while(|(a, b)| a == b).count();
        Heads {
            prefix: first[..prefix_len].into(),
            heads: (0..n).map(|i| head(&key(i)[prefix_len..])).collect(),
        }
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.heads.len()
    }

    /// Heap bytes held.
    pub(crate) fn heap_len(&self) -> usize {
        self.heads.len() * 8 + self.prefix.len()
    }

    /// The first position `i` at which `before(i)` is false, for a probe `key` and a
    /// `before` that is false from some position on and agrees with key order
    /// (`before(i)` implies key `i` <= `key`; key `i` < `key` implies `before(i)`).
    pub(crate) fn search(&self, key: &[u8], before: impl Fn(usize) -> bool) -> usize {
        let prefix = &self.prefix[..];
        let Some(rest) = key.strip_prefix(prefix) else {
            // The probe leaves the shared prefix: it sorts before or after every key.
            return if key < prefix { 0 } else { self.heads.len() };
        };
        let probe = head(rest);
        let (mut lo, mut hi) = (0, self.heads.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let is_before = match self.heads[mid].cmp(&probe) {
                Ordering::Less => true,
                Ordering::Greater => false,
                Ordering::Equal => before(mid),
            };
            if is_before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}
