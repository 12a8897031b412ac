//! An immutable byte string that stores short strings inline.
//!
//! Keys are compared many times per B-tree lookup; storing keys of up to
//! [`INLINE_CAP`] bytes inside the tree node (instead of behind a pointer)
//! removes one cache miss per comparison, and cloning them copies 24 bytes
//! instead of touching a shared reference count. Longer strings share one
//! `Arc<[u8]>`. Equality, ordering and hashing are those of the bytes, whatever
//! the representation.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Longest byte string stored inline.
pub(crate) const INLINE_CAP: usize = 22;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE_CAP] },
    Heap(Arc<[u8]>),
}

/// Immutable bytes, inline when short (see the module docs).
#[derive(Clone)]
pub(crate) struct SmallBytes(Repr);

impl SmallBytes {
    pub(crate) fn new(bytes: &[u8]) -> SmallBytes {
        if bytes.len() <= INLINE_CAP {
            let mut buf = [0u8; INLINE_CAP];
            buf[..bytes.len()].copy_from_slice(bytes);
            SmallBytes(Repr::Inline {
                // INLINE_CAP < 256, so the length fits.
                len: bytes.len() as u8,
                buf,
            })
        } else {
            SmallBytes(Repr::Heap(Arc::from(bytes)))
        }
    }

    pub(crate) fn from_vec(bytes: Vec<u8>) -> SmallBytes {
        if bytes.len() <= INLINE_CAP {
            SmallBytes::new(&bytes)
        } else {
            SmallBytes(Repr::Heap(Arc::from(bytes)))
        }
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..usize::from(*len).min(INLINE_CAP)],
            Repr::Heap(b) => b,
        }
    }
}

impl PartialEq for SmallBytes {
    #[inline]
    fn eq(&self, other: &SmallBytes) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for SmallBytes {}

impl PartialOrd for SmallBytes {
    #[inline]
    fn partial_cmp(&self, other: &SmallBytes) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SmallBytes {
    #[inline]
    fn cmp(&self, other: &SmallBytes) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for SmallBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl std::fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.as_bytes().escape_ascii())
    }
}

impl Borrow<[u8]> for SmallBytes {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_heap_agree() {
        assert_eq!(std::mem::size_of::<SmallBytes>(), 24);
        for len in [0, 1, INLINE_CAP, INLINE_CAP + 1, 100] {
            let v: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let a = SmallBytes::new(&v);
            let b = SmallBytes::from_vec(v.clone());
            assert_eq!(a.as_bytes(), &v[..]);
            assert_eq!(a, b);
        }
        // Ordering is byte-wise across representations.
        let short = SmallBytes::new(&[1; INLINE_CAP]);
        let long = SmallBytes::new(&[1; INLINE_CAP + 1]);
        let bigger = SmallBytes::new(&[2]);
        assert!(short < long && long < bigger);
    }
}
