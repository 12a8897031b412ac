//! `cfg(loom)` shims: the synchronisation primitives the protocols are written against.
//!
//! Normal builds use `std` (and `arc-swap` for the snapshot slot); loom builds use
//! loom's model-checked equivalents with the same API surface, so the model checks
//! the production code rather than a copy of it.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Locks a mutex, treating poisoning as still usable: every critical section in this
/// crate leaves the protected data consistent before any call that could panic.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Waits on a condition variable, ignoring poisoning as [`lock`] does.
pub(crate) fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    match cv.wait(guard) {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The slot a published snapshot lives in: readers borrow the current value without
/// writing to any memory another reader touches; the (serialised) publisher swaps it.
/// `arc-swap` in normal builds (a load borrows through a per-thread debt slot, no shared
/// reference-count or lock-word traffic).
#[cfg(not(loom))]
pub(crate) struct Slot<T>(arc_swap::ArcSwap<T>);

#[cfg(not(loom))]
impl<T> Slot<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        Slot(arc_swap::ArcSwap::new(value))
    }
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.0.load())
    }
    pub(crate) fn store(&self, value: Arc<T>) {
        self.0.store(value);
    }
}

/// The snapshot slot (loom model): a read-write lock around the `Arc`, with the same
/// guarantee a load gives (the value stored last, or a newer one).
#[cfg(loom)]
pub(crate) struct Slot<T>(loom::sync::RwLock<Arc<T>>);

#[cfg(loom)]
impl<T> Slot<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        Slot(loom::sync::RwLock::new(value))
    }
    pub(crate) fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let current = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        f(&current)
    }
    pub(crate) fn store(&self, value: Arc<T>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }
}
