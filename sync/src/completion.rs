//! One-shot hand-off of a value from a producer thread to one waiting consumer.
//!
//! The consumer may block ([`Waiter::wait`]) or `.await` the [`Waiter`]. Dropping the
//! [`Completer`] without completing wakes the waiter with [`Canceled`], so a caller
//! never hangs when the thread that owed it an answer goes away.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::shim::{self, Arc, Condvar, Mutex};

/// The producer went away without completing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Canceled;

impl fmt::Display for Canceled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the completing side was dropped before producing a value")
    }
}

impl std::error::Error for Canceled {}

enum Slot<T> {
    Empty { waker: Option<Waker> },
    Full(T),
    Canceled,
    Taken,
}

struct Shared<T> {
    slot: Mutex<Slot<T>>,
    ready: Condvar,
}

/// Creates a connected completer / waiter pair.
pub fn completion<T>() -> (Completer<T>, Waiter<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot::Empty { waker: None }),
        ready: Condvar::new(),
    });
    (
        Completer {
            shared: Some(shared.clone()),
        },
        Waiter { shared },
    )
}

/// The producing half: completes exactly once (or cancels on drop).
pub struct Completer<T> {
    shared: Option<Arc<Shared<T>>>,
}

impl<T> Completer<T> {
    /// Hands `value` to the waiter and wakes it.
    pub fn complete(mut self, value: T) {
        if let Some(shared) = self.shared.take() {
            settle(&shared, Slot::Full(value));
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            settle(&shared, Slot::Canceled);
        }
    }
}

impl<T> fmt::Debug for Completer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Completer")
    }
}

fn settle<T>(shared: &Shared<T>, outcome: Slot<T>) {
    let waker = {
        let mut slot = shim::lock(&shared.slot);
        match std::mem::replace(&mut *slot, outcome) {
            Slot::Empty { waker } => waker,
            // Unreachable by construction (one completer, settles once); keep the
            // earlier outcome rather than overwrite it.
            earlier => {
                *slot = earlier;
                None
            }
        }
    };
    shared.ready.notify_all();
    if let Some(w) = waker {
        w.wake();
    }
}

/// The consuming half.
pub struct Waiter<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Waiter<T> {
    /// Blocks the current thread until the value arrives (or the completer is dropped).
    pub fn wait(self) -> Result<T, Canceled> {
        let mut slot = shim::lock(&self.shared.slot);
        loop {
            match std::mem::replace(&mut *slot, Slot::Taken) {
                Slot::Full(v) => return Ok(v),
                Slot::Canceled | Slot::Taken => return Err(Canceled),
                empty @ Slot::Empty { .. } => {
                    *slot = empty;
                    slot = shim::wait(&self.shared.ready, slot);
                }
            }
        }
    }

    /// [`Waiter::wait`], but polls for up to `spin` before sleeping: an answer that
    /// arrives within it is taken without the wake-up of a sleeping thread (on a
    /// virtual machine, often tens of microseconds). Between polls the thread yields, so
    /// the threads producing the answer are not kept off the CPU. Loom builds do not
    /// spin (the model has no clock).
    pub fn wait_spinning(mut self, spin: std::time::Duration) -> Result<T, Canceled> {
        #[cfg(not(loom))]
        if !spin.is_zero() {
            let started = std::time::Instant::now();
            loop {
                if let Some(outcome) = self.try_take() {
                    return outcome;
                }
                if started.elapsed() >= spin {
                    break;
                }
                std::thread::yield_now();
            }
        }
        #[cfg(loom)]
        let _ = spin;
        self.wait()
    }

    /// Returns the value if it has already arrived, without blocking.
    pub fn try_take(&mut self) -> Option<Result<T, Canceled>> {
        let mut slot = shim::lock(&self.shared.slot);
        match std::mem::replace(&mut *slot, Slot::Taken) {
            Slot::Full(v) => Some(Ok(v)),
            Slot::Canceled | Slot::Taken => Some(Err(Canceled)),
            empty @ Slot::Empty { .. } => {
                *slot = empty;
                None
            }
        }
    }
}

impl<T> fmt::Debug for Waiter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Waiter")
    }
}

impl<T> Future for Waiter<T> {
    type Output = Result<T, Canceled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = shim::lock(&self.shared.slot);
        match std::mem::replace(&mut *slot, Slot::Taken) {
            Slot::Full(v) => Poll::Ready(Ok(v)),
            Slot::Canceled | Slot::Taken => Poll::Ready(Err(Canceled)),
            Slot::Empty { .. } => {
                *slot = Slot::Empty {
                    waker: Some(cx.waker().clone()),
                };
                Poll::Pending
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn value_crosses_threads() {
        let (c, w) = completion();
        let t = std::thread::spawn(move || c.complete(String::from("done")));
        assert_eq!(w.wait().as_deref(), Ok("done"));
        t.join().unwrap();
    }

    #[test]
    fn dropped_completer_cancels() {
        let (c, w) = completion::<u8>();
        drop(c);
        assert_eq!(w.wait(), Err(Canceled));
    }

    #[test]
    fn future_form_resolves() {
        let (c, w) = completion::<u8>();
        let t = std::thread::spawn(move || c.complete(3));
        assert_eq!(futures_lite_block_on(w), Ok(3));
        t.join().unwrap();
    }

    #[test]
    fn spinning_wait_takes_an_early_and_a_late_answer() {
        let (c, w) = completion::<u8>();
        c.complete(1);
        assert_eq!(w.wait_spinning(std::time::Duration::from_millis(5)), Ok(1));
        // An answer after the spin ends is still delivered (by the sleeping wait).
        let (c, w) = completion::<u8>();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            c.complete(2);
        });
        assert_eq!(w.wait_spinning(std::time::Duration::from_micros(50)), Ok(2));
        t.join().unwrap();
        let (c, w) = completion::<u8>();
        drop(c);
        assert_eq!(
            w.wait_spinning(std::time::Duration::from_millis(1)),
            Err(Canceled)
        );
    }

    #[test]
    fn try_take_before_and_after() {
        let (c, mut w) = completion::<u8>();
        assert!(w.try_take().is_none());
        c.complete(9);
        assert_eq!(w.try_take(), Some(Ok(9)));
    }

    /// Minimal executor for the test: park until woken.
    fn futures_lite_block_on<F: Future>(fut: F) -> F::Output {
        use std::sync::Arc as StdArc;
        use std::task::Wake;
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: StdArc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(StdArc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }
}
