//! loom model of the block cache's pin budget (`aedb_sync::pin_budget`): readers on
//! several threads reserve the bytes of a table partition they loaded, install it in the
//! run's slot if no one did first, and give their bytes back when they lost that race.
//! Whatever the interleaving, the reserved total never passes the limit, and it ends
//! equal to what the installed partitions hold.
#![cfg(loom)]

use aedb_sync::pin_budget::PinBudget;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

#[test]
fn concurrent_reservations_never_pass_the_limit() {
    loom::model(|| {
        // Room for one of the two 6-byte reservations, not both.
        let budget = Arc::new(PinBudget::new(10));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let budget = budget.clone();
                thread::spawn(move || {
                    let won = budget.try_reserve(6);
                    assert!(budget.reserved() <= budget.limit(), "the limit was passed");
                    won
                })
            })
            .collect();
        let won: Vec<bool> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(won.iter().filter(|&&w| w).count(), 1, "exactly one fits");
        assert_eq!(budget.reserved(), 6);
    });
}

#[test]
fn a_reader_that_loses_the_install_race_gives_its_bytes_back() {
    loom::model(|| {
        let budget = Arc::new(PinBudget::new(100));
        // The run's slot for one partition (a `OnceLock` in the engine).
        let installed = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (budget, installed) = (budget.clone(), installed.clone());
                thread::spawn(move || {
                    if budget.try_reserve(8)
                        && installed
                            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                            .is_err()
                    {
                        budget.release(8);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(installed.load(Ordering::Acquire));
        assert_eq!(budget.reserved(), 8, "one partition is pinned, once");
    });
}
