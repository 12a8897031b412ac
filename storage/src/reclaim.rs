//! Freeing large structures away from the thread that drops them.
//!
//! A full memtable holds hundreds of thousands of skip-list nodes and index entries;
//! freeing them takes milliseconds, on whichever thread drops the last reference to it.
//! That is often an owner on the commit path (the WAL writer replacing a published
//! snapshot, the Sequencer installing a flushed version), where milliseconds stall
//! every committer. [`drop_elsewhere`] hands such contents to one process-wide thread,
//! `aedb-reclaim`, that only drops what it receives; it sleeps while there is nothing
//! to free.

use std::sync::OnceLock;
use std::sync::mpsc::{Sender, channel};

type Garbage = Box<dyn Send>;

/// The reclaim thread's intake; `None` when the thread could not be started (then
/// everything is dropped where it is).
static RECLAIM: OnceLock<Option<Sender<Garbage>>> = OnceLock::new();

/// Drops `garbage` on the reclaim thread (or here, if that thread cannot run).
pub(crate) fn drop_elsewhere(garbage: Garbage) {
    let intake = RECLAIM.get_or_init(|| {
        let (tx, rx) = channel::<Garbage>();
        std::thread::Builder::new()
            .name("aedb-reclaim".into())
            .spawn(move || {
                for garbage in rx {
                    drop(garbage);
                }
            })
            .ok()
            .map(|_| tx)
    });
    if let Some(tx) = intake {
        // The thread never exits while the sender lives, so the send succeeds; were
        // it refused, the garbage comes back and is dropped here.
        let _ = tx.send(garbage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoteThread(std::sync::mpsc::Sender<Option<String>>);

    impl Drop for NoteThread {
        fn drop(&mut self) {
            let _ = self
                .0
                .send(std::thread::current().name().map(str::to_owned));
        }
    }

    #[test]
    fn garbage_is_dropped_on_the_reclaim_thread() {
        let (tx, rx) = std::sync::mpsc::channel();
        drop_elsewhere(Box::new(NoteThread(tx)));
        let dropped_on = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("dropped");
        assert_eq!(dropped_on.as_deref(), Some("aedb-reclaim"));
    }
}
