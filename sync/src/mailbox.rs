//! Bounded mailboxes for actors that run on a dedicated thread.
//!
//! Normal builds wrap a bounded `crossbeam-channel`; loom builds use a small
//! `Mutex`/`Condvar` queue with the same semantics so the writer loop built on top can be
//! model-checked. A full mailbox either blocks the sender ([`MailboxSender::send`],
//! backpressure) or refuses ([`MailboxSender::try_send`], a typed `Full`).

use std::time::Duration;

/// Why a non-blocking send did not enqueue.
#[derive(PartialEq, Eq)]
pub enum TrySendError<T> {
    /// The mailbox is at its bound.
    Full(T),
    /// The receiving actor has stopped.
    Closed(T),
}

/// The receiving actor has stopped; the message is handed back.
#[derive(PartialEq, Eq)]
pub struct Closed<T>(pub T);

impl<T> std::fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> std::fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Closed(..)")
    }
}

/// Result of a receive with a deadline.
#[derive(Debug, PartialEq, Eq)]
pub enum Recv<T> {
    /// A message.
    Message(T),
    /// The deadline passed with the mailbox empty.
    TimedOut,
    /// Every sender is gone and the mailbox is empty.
    Closed,
}

pub use imp::{MailboxReceiver, MailboxSender, mailbox};

#[cfg(not(loom))]
mod imp {
    use super::*;
    use crossbeam_channel as cc;

    /// Creates a mailbox holding at most `bound` messages (`bound` is raised to 1).
    pub fn mailbox<T>(bound: usize) -> (MailboxSender<T>, MailboxReceiver<T>) {
        let (tx, rx) = cc::bounded(bound.max(1));
        (MailboxSender(tx), MailboxReceiver(rx))
    }

    /// Sending half; cheap to clone.
    pub struct MailboxSender<T>(cc::Sender<T>);

    impl<T> std::fmt::Debug for MailboxSender<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "MailboxSender(len {})", self.0.len())
        }
    }

    impl<T> std::fmt::Debug for MailboxReceiver<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "MailboxReceiver(len {})", self.0.len())
        }
    }

    impl<T> Clone for MailboxSender<T> {
        fn clone(&self) -> Self {
            MailboxSender(self.0.clone())
        }
    }

    impl<T> MailboxSender<T> {
        /// Enqueues, blocking while the mailbox is full.
        pub fn send(&self, msg: T) -> Result<(), Closed<T>> {
            self.0.send(msg).map_err(|e| Closed(e.into_inner()))
        }
        /// Enqueues without blocking.
        pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
            self.0.try_send(msg).map_err(|e| match e {
                cc::TrySendError::Full(m) => TrySendError::Full(m),
                cc::TrySendError::Disconnected(m) => TrySendError::Closed(m),
            })
        }
        /// Messages currently queued.
        pub fn len(&self) -> usize {
            self.0.len()
        }
        /// Whether nothing is queued.
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }

    /// Receiving half, owned by the actor's thread.
    pub struct MailboxReceiver<T>(cc::Receiver<T>);

    impl<T> MailboxReceiver<T> {
        /// Blocks for the next message; `None` once every sender is gone.
        pub fn recv(&self) -> Option<T> {
            self.0.recv().ok()
        }
        /// Blocks for at most `timeout`.
        pub fn recv_timeout(&self, timeout: Duration) -> Recv<T> {
            match self.0.recv_timeout(timeout) {
                Ok(m) => Recv::Message(m),
                Err(cc::RecvTimeoutError::Timeout) => Recv::TimedOut,
                Err(cc::RecvTimeoutError::Disconnected) => Recv::Closed,
            }
        }
        /// Takes a queued message without blocking.
        pub fn try_recv(&self) -> Option<T> {
            self.0.try_recv().ok()
        }
        /// Messages currently queued.
        pub fn len(&self) -> usize {
            self.0.len()
        }
        /// Whether nothing is queued.
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }
}

#[cfg(loom)]
mod imp {
    use super::*;
    use crate::shim::{self, Arc, Condvar, Mutex};
    use std::collections::VecDeque;

    struct Queue<T> {
        items: VecDeque<T>,
        senders: usize,
        receiver_alive: bool,
    }

    struct Shared<T> {
        queue: Mutex<Queue<T>>,
        not_empty: Condvar,
        not_full: Condvar,
        bound: usize,
    }

    /// Creates a mailbox holding at most `bound` messages (`bound` is raised to 1).
    pub fn mailbox<T>(bound: usize) -> (MailboxSender<T>, MailboxReceiver<T>) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                senders: 1,
                receiver_alive: true,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            bound: bound.max(1),
        });
        (MailboxSender(shared.clone()), MailboxReceiver(shared))
    }

    /// Sending half (loom model).
    pub struct MailboxSender<T>(Arc<Shared<T>>);

    impl<T> Clone for MailboxSender<T> {
        fn clone(&self) -> Self {
            shim::lock(&self.0.queue).senders += 1;
            MailboxSender(self.0.clone())
        }
    }

    impl<T> Drop for MailboxSender<T> {
        fn drop(&mut self) {
            let mut q = shim::lock(&self.0.queue);
            q.senders -= 1;
            drop(q);
            self.0.not_empty.notify_all();
        }
    }

    impl<T> MailboxSender<T> {
        /// Enqueues, blocking while the mailbox is full.
        pub fn send(&self, msg: T) -> Result<(), Closed<T>> {
            let mut q = shim::lock(&self.0.queue);
            loop {
                if !q.receiver_alive {
                    return Err(Closed(msg));
                }
                if q.items.len() < self.0.bound {
                    q.items.push_back(msg);
                    drop(q);
                    self.0.not_empty.notify_one();
                    return Ok(());
                }
                q = shim::wait(&self.0.not_full, q);
            }
        }
        /// Enqueues without blocking.
        pub fn try_send(&self, msg: T) -> Result<(), TrySendError<T>> {
            let mut q = shim::lock(&self.0.queue);
            if !q.receiver_alive {
                return Err(TrySendError::Closed(msg));
            }
            if q.items.len() >= self.0.bound {
                return Err(TrySendError::Full(msg));
            }
            q.items.push_back(msg);
            drop(q);
            self.0.not_empty.notify_one();
            Ok(())
        }
        /// Messages currently queued.
        pub fn len(&self) -> usize {
            shim::lock(&self.0.queue).items.len()
        }
        /// Whether nothing is queued.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    }

    /// Receiving half (loom model).
    pub struct MailboxReceiver<T>(Arc<Shared<T>>);

    impl<T> Drop for MailboxReceiver<T> {
        fn drop(&mut self) {
            shim::lock(&self.0.queue).receiver_alive = false;
            self.0.not_full.notify_all();
        }
    }

    impl<T> MailboxReceiver<T> {
        /// Blocks for the next message; `None` once every sender is gone.
        pub fn recv(&self) -> Option<T> {
            let mut q = shim::lock(&self.0.queue);
            loop {
                if let Some(m) = q.items.pop_front() {
                    drop(q);
                    self.0.not_full.notify_one();
                    return Some(m);
                }
                if q.senders == 0 {
                    return None;
                }
                q = shim::wait(&self.0.not_empty, q);
            }
        }
        /// Loom cannot model wall-clock time: the deadline is treated as never reached,
        /// so this blocks like [`MailboxReceiver::recv`] (a model that needs a flush
        /// must send a barrier or close the mailbox).
        pub fn recv_timeout(&self, _timeout: Duration) -> Recv<T> {
            match self.recv() {
                Some(m) => Recv::Message(m),
                None => Recv::Closed,
            }
        }
        /// Takes a queued message without blocking.
        pub fn try_recv(&self) -> Option<T> {
            let mut q = shim::lock(&self.0.queue);
            let m = q.items.pop_front();
            drop(q);
            if m.is_some() {
                self.0.not_full.notify_one();
            }
            m
        }
        /// Messages currently queued.
        pub fn len(&self) -> usize {
            shim::lock(&self.0.queue).items.len()
        }
        /// Whether nothing is queued.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn full_mailbox_refuses_try_send() {
        let (tx, rx) = mailbox(1);
        tx.try_send(1).unwrap();
        assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
        assert_eq!(rx.recv(), Some(1));
        drop(rx);
        assert_eq!(tx.try_send(3), Err(TrySendError::Closed(3)));
    }

    #[test]
    fn closed_when_senders_gone() {
        let (tx, rx) = mailbox::<u8>(4);
        drop(tx);
        assert_eq!(rx.recv(), None);
        assert_eq!(rx.recv_timeout(Duration::from_millis(1)), Recv::Closed);
    }
}
