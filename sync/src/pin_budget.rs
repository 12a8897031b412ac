//! [`PinBudget`]: bytes that readers on many threads reserve against a limit, lock-free.
//!
//! The storage engine's block cache lets open runs pin table partitions outside the
//! cache while the pinned total stays under a limit. A reader that has just loaded a
//! partition reserves its bytes ([`PinBudget::try_reserve`]) and then tries to install
//! it in the run's slot; if another reader installed that partition first, it gives
//! the bytes back ([`PinBudget::release`]). The protocol guarantees that the reserved
//! total never passes the limit, whatever the interleaving (a compare-and-swap loop,
//! not a check followed by an add), and that every byte a loser reserved comes back, so
//! the total ends equal to what the installed partitions hold (`loom-tests/tests/
//! pin_budget.rs` model-checks both).
//!
//! ```
//! use aedb_sync::pin_budget::PinBudget;
//! let budget = PinBudget::new(10);
//! assert!(budget.try_reserve(6));
//! assert!(!budget.try_reserve(6), "6 + 6 would pass the limit");
//! budget.release(6);
//! assert_eq!(budget.reserved(), 0);
//! ```

use crate::shim::{AtomicU64, Ordering};

/// Bytes reserved against a limit; see the module docs.
#[derive(Debug)]
pub struct PinBudget {
    reserved: AtomicU64,
    limit: u64,
}

impl PinBudget {
    /// A budget of `limit` bytes, nothing reserved (`u64::MAX`: unlimited).
    pub fn new(limit: u64) -> PinBudget {
        PinBudget {
            reserved: AtomicU64::new(0),
            limit,
        }
    }

    /// Reserves `bytes` if the reserved total stays within the limit; false (and
    /// nothing reserved) otherwise. A refused caller only reads the counter, so readers
    /// that keep asking once the budget is full write no shared memory.
    pub fn try_reserve(&self, bytes: u64) -> bool {
        let mut reserved = self.reserved.load(Ordering::Relaxed);
        loop {
            let Some(next) = reserved.checked_add(bytes).filter(|&n| n <= self.limit) else {
                return false;
            };
            match self.reserved.compare_exchange_weak(
                reserved,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => reserved = now,
            }
        }
    }

    /// Gives back `bytes` a successful [`PinBudget::try_reserve`] took.
    pub fn release(&self, bytes: u64) {
        self.reserved.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}
