//! Head-guided binary search over sorted keys (an in-memory aid, not a format).
//!
//! A data block's or a run index's keys share a prefix (the namespace, often more).
//! [`Heads`] keeps, per key, the 8 bytes that follow that prefix as a big-endian `u64`
//! (its *head*) in one contiguous array. A search compares the probe's head with those
//! integers and reads a key's bytes only where heads tie, so a lookup touches a few
//! cache lines instead of one or two per probe.

use std::cmp::Ordering;

/// The heads of a sorted list of keys; see the module docs. Used by run files (block
/// index, partition directory) and by the storage engine's levels (runs' last keys).
///
/// ```
/// use aedb_checkpoint::Heads;
/// let keys: [&[u8]; 4] = [b"acct/0001", b"acct/0005", b"acct/0005", b"acct/0100"];
/// let heads = Heads::build(keys.len(), |i| keys[i]);
/// // The first key >= the probe, as `partition_point` would find it.
/// let probe: &[u8] = b"acct/0005";
/// assert_eq!(heads.search(probe, |i| keys[i] < probe), 1);
/// assert_eq!(heads.search(b"zzz", |i| keys[i] < &b"zzz"[..]), 4);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heads {
    /// The prefix every key shares (a copy, so a search reads no key to learn it).
    prefix: Box<[u8]>,
    /// Each key's head; non-decreasing.
    heads: Vec<u64>,
}

/// The head of `rest` (a key with the shared prefix stripped): its first 8 bytes,
/// big-endian, zero-padded. A strictly smaller head means a strictly smaller key;
/// equal heads say nothing.
pub(crate) fn head(rest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = rest.len().min(8);
    b[..n].copy_from_slice(&rest[..n]);
    u64::from_be_bytes(b)
}

impl Heads {
    /// The heads of `n` keys sorted ascending (`key(i)` is key `i`; duplicates allowed).
    pub fn build<'a>(n: usize, key: impl Fn(usize) -> &'a [u8]) -> Heads {
        if n == 0 {
            return Heads::default();
        }
        let first = key(0);
        let prefix_len = shared_prefix_len(first, key(n - 1));
        Heads {
            prefix: first[..prefix_len].into(),
            heads: (0..n).map(|i| head(&key(i)[prefix_len..])).collect(),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.heads.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    /// Heap bytes held.
    pub fn heap_len(&self) -> usize {
        self.heads.len() * 8 + self.prefix.len()
    }

    /// The first position `i` at which `before(i)` is false, for a probe `key` and a
    /// `before` that is false from some position on and agrees with key order
    /// (`before(i)` implies key `i` <= `key`; key `i` < `key` implies `before(i)`).
    pub fn search(&self, key: &[u8], before: impl Fn(usize) -> bool) -> usize {
        search(
            &self.prefix,
            self.heads.len(),
            |i| self.heads[i],
            key,
            before,
        )
    }
}

/// How many leading bytes sorted keys from `first` to `last` all share: what the first
/// and the last share.
pub(crate) fn shared_prefix_len(first: &[u8], last: &[u8]) -> usize {
    first.iter().zip(last).take_while(|(a, b)| a == b).count()
}

/// The head-guided search over `n` sorted keys that all start with `prefix`, whose
/// heads `head_at(i)` are non-decreasing: the first position `i` at which `before(i)`
/// is false (see [`Heads::search`]). Shared by [`Heads`] and the packed heads of a data
/// block.
pub(crate) fn search(
    prefix: &[u8],
    n: usize,
    head_at: impl Fn(usize) -> u64,
    key: &[u8],
    before: impl Fn(usize) -> bool,
) -> usize {
    let Some(rest) = key.strip_prefix(prefix) else {
        // The probe leaves the shared prefix: it sorts before or after every key.
        return if key < prefix { 0 } else { n };
    };
    let probe = head(rest);
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let is_before = match head_at(mid).cmp(&probe) {
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
