//! The replay cache: every capsule (by nonce) is accepted at most once while it can still
//! pass the drift check.
//!
//! An entry for a capsule issued at `t` expires at `t + max_timestamp_drift`: after that
//! instant the drift check refuses the capsule anyway, so forgetting it is safe. The cache
//! also remembers the newest clock reading it has purged up to (the *watermark*) and
//! refuses capsules that would already have expired by it, so a verifier clock that steps
//! backwards cannot make a forgotten capsule acceptable again. When the cache holds
//! `capacity` live entries, new capsules are refused (fail closed) rather than evicting
//! entries that could still be replayed.

use std::collections::{BTreeSet, HashSet};

use crate::capsule::CAPSULE_NONCE_LEN;

type Nonce = [u8; CAPSULE_NONCE_LEN];

/// Why the cache refused a capsule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplayRefusal {
    /// The nonce is already present.
    Replayed,
    /// The entry would expire before the watermark (the clock went backwards).
    Expired {
        /// The watermark, in Unix microseconds.
        watermark: i64,
    },
    /// `capacity` live entries are present.
    Full,
}

/// Nonces of accepted capsules with their expiry (Unix microseconds).
#[derive(Debug)]
pub(crate) struct ReplayCache {
    capacity: usize,
    seen: HashSet<Nonce>,
    by_expiry: BTreeSet<(i64, Nonce)>,
    watermark: i64,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity,
            seen: HashSet::new(),
            by_expiry: BTreeSet::new(),
            watermark: i64::MIN,
        }
    }

    /// Records `nonce`, valid until `expires_at`, at verifier time `now`.
    pub(crate) fn insert(
        &mut self,
        nonce: &Nonce,
        expires_at: i64,
        now: i64,
    ) -> Result<(), ReplayRefusal> {
        self.purge(now);
        if self.seen.contains(nonce) {
            return Err(ReplayRefusal::Replayed);
        }
        if expires_at < self.watermark {
            return Err(ReplayRefusal::Expired {
                watermark: self.watermark,
            });
        }
        if self.seen.len() >= self.capacity {
            return Err(ReplayRefusal::Full);
        }
        self.seen.insert(*nonce);
        self.by_expiry.insert((expires_at, *nonce));
        Ok(())
    }

    /// Forgets every entry that expired before `now` (and before any earlier `now`).
    fn purge(&mut self, now: i64) {
        self.watermark = self.watermark.max(now);
        while let Some(&(expiry, nonce)) = self.by_expiry.first() {
            if expiry >= self.watermark {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&nonce);
        }
    }

    /// Live entries.
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u8) -> Nonce {
        [i; CAPSULE_NONCE_LEN]
    }

    #[test]
    fn accepts_once_and_forgets_after_expiry() {
        let mut cache = ReplayCache::new(8);
        assert_eq!(cache.insert(&n(1), 100, 0), Ok(()));
        assert_eq!(cache.insert(&n(1), 100, 50), Err(ReplayRefusal::Replayed));
        // Still live at exactly its expiry.
        assert_eq!(cache.insert(&n(1), 100, 100), Err(ReplayRefusal::Replayed));
        assert_eq!(cache.len(), 1);
        // Gone once expired (the drift check refuses the capsule by then anyway).
        assert_eq!(cache.insert(&n(2), 200, 101), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn full_cache_fails_closed_until_entries_expire() {
        let mut cache = ReplayCache::new(2);
        cache.insert(&n(1), 10, 0).unwrap();
        cache.insert(&n(2), 20, 0).unwrap();
        assert_eq!(cache.insert(&n(3), 30, 0), Err(ReplayRefusal::Full));
        assert_eq!(cache.insert(&n(1), 30, 0), Err(ReplayRefusal::Replayed));
        assert_eq!(cache.insert(&n(3), 30, 11), Ok(()));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn clock_going_backwards_cannot_revive_forgotten_capsules() {
        let mut cache = ReplayCache::new(4);
        cache.insert(&n(1), 100, 0).unwrap();
        cache.insert(&n(9), 1_000, 500).unwrap(); // purges n(1) at watermark 500
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.insert(&n(1), 100, 50),
            Err(ReplayRefusal::Expired { watermark: 500 })
        );
        assert_eq!(cache.insert(&n(2), 500, 50), Ok(()));
    }
}
