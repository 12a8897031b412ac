//! The one actor pattern every owner follows.
//!
//! An owner is a plain struct that implements [`Owner`] and owns one resource (the live
//! state, the MANIFEST, the checkpoint files, the policy, the audit tables, the active
//! WAL segment). Each request it answers is its own type implementing [`Ask`], with a
//! typed reply. [`spawn`] hosts the owner on actix: an actor ([`Host`]) in its own actix
//! `System` on its own named OS thread (`aedb-<name>`), so an owner that blocks on file
//! I/O or `fsync` never stalls another, and profilers and the benches can attribute CPU
//! to each owner by thread name. The [`OwnerRef`] it returns is the only way in:
//!
//! - **bounded mailbox**: the actix mailbox capacity is set at start; [`OwnerRef::ask`]
//!   waits for room (backpressure), [`OwnerRef::try_ask`] refuses with
//!   [`AskError::Full`] instead;
//! - **typed reply**: `ask(msg)` returns `M::Reply`; an owner that answers later (the
//!   Sequencer's durable commits are answered by the WAL writer after `fsync`) replies
//!   through a `Completer` carried inside the message;
//! - **metrics kept here**, not by each owner: queue depth (sent, not yet handled),
//!   messages handled, and the latency from send to the end of handling, per owner
//!   ([`OwnerStats`], reported in `operational_metrics().owners`);
//! - **stop**: [`Running::stop`] queues a stop behind everything already sent, runs
//!   [`Owner::stopped`], ends the owner's System and joins its thread.
//!
//! - **supervision is fail-stop**: an owner that panics ends its thread; every later
//!   request to it gets [`AskError::Closed`] (the engine reports `commit.closed` and the
//!   like) instead of being handled by a restarted owner whose in-memory state (the
//!   live state, the manifest's chain head) would no longer match the files. The host
//!   reopens the instance, and recovery rebuilds every owner from disk.
//!
//! Timers are the pattern's too: [`Owner::tick_interval`] / [`Owner::tick`] (automatic
//! checkpoints). The commit data path between the Sequencer and the WAL writer does not
//! go through actix envelopes: it is the loom-checked bounded batch mailbox of
//! `aedb-sync` that the WAL writer owns and drains in [`Owner::started`] (see
//! `docs/ARCHITECTURE.md` for why).

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix::dev::SendError;
use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message, MessageResult,
};

use crate::metrics::{Histogram, HistogramSnapshot};

/// An owner of one resource, hosted by [`spawn`].
pub trait Owner: Sized + Send + Unpin + 'static {
    /// Thread name suffix (`aedb-<NAME>`) and metrics label.
    const NAME: &'static str;

    /// Runs once on the owner's thread before any message.
    fn started(&mut self) {}

    /// How often [`Owner::tick`] runs (`None`: never).
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic work between messages.
    fn tick(&mut self) {}

    /// Whether [`Owner::drained`] runs after each burst of messages.
    const DRAINS: bool = false;

    /// Runs after the messages queued together were handled one by one, when
    /// [`Owner::DRAINS`] is set: an owner that batches (the Audit actor writes every
    /// event of a burst in one commit) does its batch here.
    fn drained(&mut self) {}

    /// Runs once after the last message, when the owner stops.
    fn stopped(&mut self) {}
}

/// One request an owner answers, with its typed reply.
pub trait Ask<O>: Send + 'static {
    /// What the owner answers.
    type Reply: Send + 'static;

    /// Handles the request on the owner's thread.
    fn handle(self, owner: &mut O) -> Self::Reply;
}

/// Counters the pattern keeps for each owner.
#[derive(Debug)]
pub struct OwnerStats {
    name: &'static str,
    depth: AtomicU64,
    handled: AtomicU64,
    latency_us: Histogram,
}

impl OwnerStats {
    /// Counters of the owner called `name`.
    pub fn new(name: &'static str) -> OwnerStats {
        OwnerStats {
            name,
            depth: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            latency_us: Histogram::default(),
        }
    }

    pub(crate) fn sent(&self) {
        self.depth.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "observability")]
        crate::metrics::export::owner_queue(self.name, 1.0);
    }

    fn unsent(&self) {
        self.depth.fetch_sub(1, Ordering::Relaxed);
        #[cfg(feature = "observability")]
        crate::metrics::export::owner_queue(self.name, -1.0);
    }

    pub(crate) fn handled(&self, sent_at: Instant) {
        self.unsent();
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.latency_us.record_duration(sent_at.elapsed());
    }

    /// Messages sent and not yet handled.
    pub fn queue_depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// A plain copy.
    pub fn snapshot(&self) -> OwnerMetrics {
        OwnerMetrics {
            name: self.name,
            queue_depth: self.queue_depth(),
            handled: self.handled.load(Ordering::Relaxed),
            latency_us: self.latency_us.snapshot(),
        }
    }
}

/// One owner's mailbox figures, as `operational_metrics()` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerMetrics {
    /// The owner (`sequencer`, `manifest`, `checkpoint`, `authz`, `audit`, `wal-writer`).
    pub name: &'static str,
    /// Messages sent and not yet handled.
    pub queue_depth: u64,
    /// Messages handled.
    pub handled: u64,
    /// Microseconds from send to the end of handling.
    pub latency_us: HistogramSnapshot,
}

/// Why a request did not reach its owner.
#[derive(PartialEq, Eq)]
pub enum AskError<M> {
    /// The mailbox is at its bound ([`OwnerRef::try_ask`] only); the request is handed
    /// back.
    Full(M),
    /// The owner has stopped.
    Closed,
}

impl<M> std::fmt::Debug for AskError<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AskError::Full(_) => f.write_str("Full(..)"),
            AskError::Closed => f.write_str("Closed"),
        }
    }
}

/// The actix actor hosting an [`Owner`].
pub struct Host<O: Owner> {
    owner: O,
    stats: Arc<OwnerStats>,
    drain_scheduled: bool,
}

impl<O: Owner> Host<O> {
    /// After a handled message: when the owner batches, run [`Owner::drained`] once the
    /// messages queued now are handled (actix polls a context's spawned futures only
    /// after its mailbox is empty).
    fn schedule_drain(&mut self, ctx: &mut Context<Self>) {
        if O::DRAINS && !self.drain_scheduled {
            self.drain_scheduled = true;
            ctx.spawn(actix::fut::ready(()).map(|(), host: &mut Host<O>, _| {
                host.drain_scheduled = false;
                host.owner.drained();
            }));
        }
    }
}

/// Runs the owner's tick `every` after the previous one *ended*: a tick that ran long
/// (a compaction) is not followed by a burst of the ticks it missed, as actix's
/// `run_interval` would do.
fn schedule_tick<O: Owner>(ctx: &mut Context<Host<O>>, every: Duration) {
    ctx.run_later(every, move |host, ctx| {
        host.owner.tick();
        schedule_tick(ctx, every);
    });
}

impl<O: Owner> Actor for Host<O> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(every) = self.owner.tick_interval() {
            schedule_tick(ctx, every);
        }
        self.owner.started();
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if O::DRAINS {
            self.owner.drained();
        }
        self.owner.stopped();
        actix::System::current().stop();
    }
}

/// A request in flight, stamped when sent.
pub struct Envelope<O, M> {
    msg: M,
    sent_at: Instant,
    owner: PhantomData<fn() -> O>,
}

impl<O: Owner, M: Ask<O>> Message for Envelope<O, M> {
    type Result = M::Reply;
}

impl<O: Owner, M: Ask<O>> Handler<Envelope<O, M>> for Host<O> {
    type Result = MessageResult<Envelope<O, M>>;

    fn handle(&mut self, envelope: Envelope<O, M>, ctx: &mut Context<Self>) -> Self::Result {
        let reply = envelope.msg.handle(&mut self.owner);
        self.stats.handled(envelope.sent_at);
        self.schedule_drain(ctx);
        MessageResult(reply)
    }
}

/// Waits for `fut` on this thread: an owner asking another owner from inside its own
/// handler or tick, or a caller's thread.
///
/// Owners run inside a tokio task (actix), and tokio's cooperative budget counts every
/// reply channel polled during one poll of that task; once it is spent, the reply
/// channel answers `Pending` and defers its wake-up until the task yields to tokio,
/// which a thread blocked here never does. An owner that asked more than about 128
/// times within one poll (a burst of catch-up ticks after a long compaction) slept
/// forever: the Compactor waiting on the ManifestChain's reply under load. The wait is
/// therefore exempt from the budget.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    futures::executor::block_on(tokio::task::coop::unconstrained(fut))
}

/// Runs just before an owner's thread sleeps: after a lone message since the last
/// sleep, polls for `spin` until a message is sent (it then does not sleep: the send's
/// wake-up is already pending).
pub(crate) fn poll_before_sleep(
    stats: &OwnerStats,
    handled_at_last_park: &AtomicU64,
    spin: Duration,
) {
    let handled = stats.handled.load(Ordering::Relaxed);
    let since = handled.wrapping_sub(handled_at_last_park.swap(handled, Ordering::Relaxed));
    if since != 1 {
        return;
    }
    let started = Instant::now();
    while stats.depth.load(Ordering::Relaxed) == 0 && started.elapsed() < spin {
        std::thread::yield_now();
    }
}

/// Stop after everything sent before.
struct Stop;

impl Message for Stop {
    type Result = ();
}

impl<O: Owner> Handler<Stop> for Host<O> {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The address of a running owner: cheap to clone, usable from any thread.
pub struct OwnerRef<O: Owner> {
    addr: actix::Addr<Host<O>>,
    stats: Arc<OwnerStats>,
}

impl<O: Owner> Clone for OwnerRef<O> {
    fn clone(&self) -> Self {
        OwnerRef {
            addr: self.addr.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<O: Owner> std::fmt::Debug for OwnerRef<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnerRef")
            .field("owner", &O::NAME)
            .field("queue_depth", &self.stats.queue_depth())
            .finish()
    }
}

impl<O: Owner> OwnerRef<O> {
    fn envelope<M: Ask<O>>(&self, msg: M) -> Envelope<O, M> {
        self.stats.sent();
        Envelope {
            msg,
            sent_at: Instant::now(),
            owner: PhantomData,
        }
    }

    /// Sends `msg`, waiting for room in the mailbox, and waits for the reply.
    pub fn ask<M: Ask<O>>(&self, msg: M) -> Result<M::Reply, AskError<M>> {
        block_on(self.ask_async(msg))
    }

    /// Async form of [`OwnerRef::ask`]: awaits room and the reply without blocking the
    /// executor thread.
    pub async fn ask_async<M: Ask<O>>(&self, msg: M) -> Result<M::Reply, AskError<M>> {
        let sent = self.addr.send(self.envelope(msg)).await;
        sent.map_err(|_| {
            // The owner stopped before handling it (it was never counted as handled).
            self.stats.unsent();
            AskError::Closed
        })
    }

    /// Enqueues `msg` without waiting for room; hands it back when the mailbox is full.
    /// The reply, if any, is dropped: an owner that answers a `try_ask` request replies
    /// through a completer inside it.
    pub fn try_ask<M: Ask<O>>(&self, msg: M) -> Result<(), AskError<M>> {
        match self.addr.try_send(self.envelope(msg)) {
            Ok(()) => Ok(()),
            Err(SendError::Full(envelope)) => {
                self.stats.unsent();
                Err(AskError::Full(envelope.msg))
            }
            Err(SendError::Closed(_)) => {
                self.stats.unsent();
                Err(AskError::Closed)
            }
        }
    }

    /// Enqueues `msg` without waiting for its reply: immediately when there is room,
    /// otherwise after waiting until the owner has handled it (backpressure).
    pub fn tell<M: Ask<O>>(&self, msg: M) -> Result<(), AskError<M>> {
        match self.try_ask(msg) {
            Err(AskError::Full(msg)) => self.ask(msg).map(drop),
            other => other,
        }
    }

    /// The pattern's counters for this owner.
    pub fn stats(&self) -> &Arc<OwnerStats> {
        &self.stats
    }
}

/// A started owner: its address and its thread.
pub struct Running<O: Owner> {
    owner: OwnerRef<O>,
    thread: Option<JoinHandle<()>>,
}

impl<O: Owner> std::fmt::Debug for Running<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("owner", &self.owner)
            .finish()
    }
}

impl<O: Owner> Running<O> {
    /// The owner's address.
    pub fn addr(&self) -> &OwnerRef<O> {
        &self.owner
    }

    /// Stops the owner once everything sent before is handled, and joins its thread.
    /// Idempotent.
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        // Waits for room like any sender; a closed mailbox means it already stopped.
        let _ = block_on(self.owner.addr.send(Stop));
        // The thread only exits; a panic there was already reported by the panic hook.
        let _ = thread.join();
    }
}

impl<O: Owner> Drop for Running<O> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `owner` on its own thread `aedb-<O::NAME>` with a mailbox of `capacity`
/// messages, counting into `stats`.
pub fn spawn<O: Owner>(
    owner: O,
    capacity: usize,
    stats: Arc<OwnerStats>,
) -> std::io::Result<Running<O>> {
    spawn_polling(owner, capacity, stats, Duration::ZERO)
}

/// [`spawn`], with an owner thread that polls its mailbox for `idle_spin` (yielding
/// between polls) before it sleeps, whenever it goes idle after handling a lone
/// message: the next message of a caller that sends one at a time then finds the
/// thread awake, sparing the wake-up of a sleeping thread (tens of microseconds on a
/// virtual machine). A burst of messages never polls, and zero never does.
pub fn spawn_polling<O: Owner>(
    owner: O,
    capacity: usize,
    stats: Arc<OwnerStats>,
    idle_spin: Duration,
) -> std::io::Result<Running<O>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let host_stats = stats.clone();
    let thread = std::thread::Builder::new()
        .name(format!("aedb-{}", O::NAME))
        .spawn(move || {
            let system = if idle_spin.is_zero() {
                actix::System::new()
            } else {
                let stats = host_stats.clone();
                actix::System::with_tokio_rt(move || {
                    let handled_at_last_park = AtomicU64::new(0);
                    // Timers only: owners do no async I/O, and without the I/O driver a
                    // send to a thread that has not gone to sleep yet (it is polling)
                    // costs no system call on either side.
                    tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .on_thread_park(move || {
                            poll_before_sleep(&stats, &handled_at_last_park, idle_spin);
                        })
                        .build()
                        .expect("an owner thread's runtime")
                })
            };
            // The address exists before the owner starts: `Owner::started` may run for
            // the owner's whole life (the WAL writer's group-commit loop).
            let mut ctx = Context::new();
            ctx.set_mailbox_capacity(capacity.max(1));
            if tx.send(ctx.address()).is_err() {
                return;
            }
            let host = Host {
                owner,
                stats: host_stats,
                drain_scheduled: false,
            };
            system.block_on(async move {
                ctx.run(host);
            });
            // Runs until the host stops its System (after `Stop`).
            let _ = system.run();
        })?;
    let addr = rx.recv().map_err(|_| {
        std::io::Error::other(format!("the {} thread exited while starting", O::NAME))
    })?;
    Ok(Running {
        owner: OwnerRef { addr, stats },
        thread: Some(thread),
    })
}
