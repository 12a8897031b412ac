//! The pattern itself, with a toy owner.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::actor::{self, Ask, AskError, Owner, OwnerStats};

#[derive(Default)]
struct Counter {
    total: u64,
    log: Arc<Mutex<Vec<String>>>,
    ticks: Option<mpsc::Sender<()>>,
}

impl Owner for Counter {
    const NAME: &'static str = "test-counter";
    const DRAINS: bool = true;

    fn tick_interval(&self) -> Option<Duration> {
        self.ticks.as_ref().map(|_| Duration::from_millis(1))
    }

    fn tick(&mut self) {
        if let Some(t) = &self.ticks {
            let _ = t.send(());
        }
    }

    fn drained(&mut self) {
        self.log
            .lock()
            .unwrap()
            .push(format!("drained at {}", self.total));
    }

    fn stopped(&mut self) {
        self.log
            .lock()
            .unwrap()
            .push(format!("stopped at {}", self.total));
    }
}

struct Add(u64);

impl Ask<Counter> for Add {
    type Reply = u64;

    fn handle(self, c: &mut Counter) -> u64 {
        c.total += self.0;
        c.total
    }
}

/// Holds the owner until the test lets it go.
struct Block(mpsc::Receiver<()>);

impl Ask<Counter> for Block {
    type Reply = ();

    fn handle(self, _: &mut Counter) {
        let _ = self.0.recv();
    }
}

fn stats() -> Arc<OwnerStats> {
    Arc::new(OwnerStats::new("test-counter"))
}

#[test]
fn ask_returns_the_typed_reply_and_the_pattern_counts_it() {
    let stats = stats();
    let mut running = actor::spawn(Counter::default(), 4, stats.clone()).unwrap();
    assert_eq!(running.addr().ask(Add(2)).unwrap(), 2);
    assert_eq!(running.addr().ask(Add(3)).unwrap(), 5);
    let m = stats.snapshot();
    assert_eq!((m.name, m.queue_depth, m.handled), ("test-counter", 0, 2));
    assert_eq!(m.latency_us.count, 2);
    running.stop();
}

#[test]
fn a_full_mailbox_refuses_try_ask_and_hands_the_message_back() {
    let stats = stats();
    let mut running = actor::spawn(Counter::default(), 1, stats.clone()).unwrap();
    let (release, held) = mpsc::channel();
    running.addr().try_ask(Block(held)).unwrap();
    // The owner is busy with `Block`: the bounded mailbox fills, then refuses.
    let mut refused = None;
    for i in 0..64 {
        match running.addr().try_ask(Add(i)) {
            Ok(()) => {}
            Err(AskError::Full(Add(n))) => {
                refused = Some(n);
                break;
            }
            Err(AskError::Closed) => panic!("the owner is running"),
        }
    }
    let n = refused.expect("a mailbox of one message refuses within 64 sends");
    assert!(stats.queue_depth() >= 1, "queued messages are counted");
    release.send(()).unwrap();
    // Everything accepted is handled in order after the owner is released.
    let accepted: u64 = (0..n).sum();
    assert_eq!(running.addr().ask(Add(0)).unwrap(), accepted);
    assert_eq!(stats.queue_depth(), 0);
    running.stop();
}

#[test]
fn stop_handles_everything_sent_before_then_drains_and_stops_once() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let owner = Counter {
        log: log.clone(),
        ..Counter::default()
    };
    let mut running = actor::spawn(owner, 8, stats()).unwrap();
    let addr = running.addr().clone();
    for _ in 0..5 {
        addr.tell(Add(1)).unwrap();
    }
    running.stop();
    running.stop(); // idempotent
    let log = log.lock().unwrap();
    assert_eq!(log.last().map(String::as_str), Some("stopped at 5"));
    assert_eq!(log.iter().filter(|l| l.starts_with("stopped")).count(), 1);
    assert!(log.iter().any(|l| l == "drained at 5"), "{log:?}");
    assert!(matches!(addr.ask(Add(1)), Err(AskError::Closed)));
    assert!(matches!(addr.try_ask(Add(1)), Err(AskError::Closed)));
}

#[test]
fn the_timer_ticks_between_messages() {
    let (tx, rx) = mpsc::channel();
    let owner = Counter {
        ticks: Some(tx),
        ..Counter::default()
    };
    let mut running = actor::spawn(owner, 4, stats()).unwrap();
    for _ in 0..3 {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a 1 ms timer ticks");
    }
    running.stop();
}

#[test]
fn the_owner_runs_on_its_named_thread() {
    struct Name;
    impl Ask<Counter> for Name {
        type Reply = Option<String>;
        fn handle(self, _: &mut Counter) -> Option<String> {
            std::thread::current().name().map(str::to_owned)
        }
    }
    let mut running = actor::spawn(Counter::default(), 4, stats()).unwrap();
    assert_eq!(
        running.addr().ask(Name).unwrap().as_deref(),
        Some("aedb-test-counter")
    );
    running.stop();
}

#[test]
fn an_owner_that_panics_is_stopped_for_good() {
    struct Boom;
    impl Ask<Counter> for Boom {
        type Reply = ();
        fn handle(self, _: &mut Counter) {
            panic!("owner failure injected by the test");
        }
    }
    let mut running = actor::spawn(Counter::default(), 4, stats()).unwrap();
    let addr = running.addr().clone();
    assert!(matches!(addr.ask(Boom), Err(AskError::Closed)));
    // Fail-stop: no restart; every later request is refused.
    assert!(matches!(addr.ask(Add(1)), Err(AskError::Closed)));
    assert!(matches!(addr.try_ask(Add(1)), Err(AskError::Closed)));
    running.stop();
}

/// An owner that asks another owner many times within one handler (one poll of its
/// tokio task) gets every reply. tokio's cooperative budget used to run out after
/// about 128 reply channels polled in one task poll; the next reply's wake-up was
/// deferred until the task yielded, which a blocked `ask` never does: it slept forever.
#[test]
fn an_owner_asking_another_many_times_in_one_handler_never_hangs() {
    struct Relay(crate::actor::OwnerRef<Counter>);
    impl Owner for Relay {
        const NAME: &'static str = "test-relay";
    }
    struct Forward(u64);
    impl Ask<Relay> for Forward {
        type Reply = u64;
        fn handle(self, relay: &mut Relay) -> u64 {
            let mut last = 0;
            for _ in 0..self.0 {
                last = relay.0.ask(Add(1)).unwrap();
            }
            last
        }
    }
    let mut counter = actor::spawn(Counter::default(), 4, stats()).unwrap();
    let relay = actor::spawn(
        Relay(counter.addr().clone()),
        4,
        Arc::new(OwnerStats::new("test-relay")),
    )
    .unwrap();
    let addr = relay.addr().clone();
    let (done, answered) = mpsc::channel();
    // Detached: a hung relay fails the test below instead of hanging it.
    std::thread::spawn(move || done.send(addr.ask(Forward(1_000)).unwrap()));
    match answered.recv_timeout(Duration::from_secs(30)) {
        Ok(total) => assert_eq!(total, 1_000),
        Err(_) => {
            std::mem::forget(relay);
            std::mem::forget(counter);
            panic!("an ask from inside an owner was never answered");
        }
    }
    let mut relay = relay;
    relay.stop();
    counter.stop();
}

/// A polling owner is hosted like any other: typed replies, its timer, stop.
#[test]
fn a_polling_owner_answers_ticks_and_stops() {
    let (tx, rx) = mpsc::channel();
    let owner = Counter {
        ticks: Some(tx),
        ..Counter::default()
    };
    let stats = stats();
    let mut running =
        actor::spawn_polling(owner, 4, stats.clone(), Duration::from_micros(200)).unwrap();
    for i in 1..=50 {
        assert_eq!(running.addr().ask(Add(1)).unwrap(), i);
    }
    for _ in 0..3 {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a 1 ms timer ticks");
    }
    assert_eq!(stats.snapshot().handled, 50);
    running.stop();
    assert!(matches!(running.addr().ask(Add(1)), Err(AskError::Closed)));
}

/// Before its thread sleeps, an owner that handled one message since it last slept
/// polls until the next is sent or the spin is over; after a burst it does not poll.
#[test]
fn the_idle_poll_follows_lone_messages_and_ends_when_one_is_sent() {
    let stats = stats();
    let last_park = std::sync::atomic::AtomicU64::new(0);
    let handle_one = |stats: &OwnerStats| {
        stats.sent();
        stats.handled(Instant::now());
    };

    // A lone message, then nothing: it polls for the whole spin.
    handle_one(&stats);
    let started = Instant::now();
    actor::poll_before_sleep(&stats, &last_park, Duration::from_millis(30));
    assert!(started.elapsed() >= Duration::from_millis(30));

    // Nothing handled since the last sleep: no poll.
    let started = Instant::now();
    actor::poll_before_sleep(&stats, &last_park, Duration::from_secs(60));
    assert!(started.elapsed() < Duration::from_secs(30));

    // A burst of two: no poll.
    handle_one(&stats);
    handle_one(&stats);
    let started = Instant::now();
    actor::poll_before_sleep(&stats, &last_park, Duration::from_secs(60));
    assert!(started.elapsed() < Duration::from_secs(30));

    // A lone message, then another is sent while it polls: the poll ends there.
    handle_one(&stats);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            stats.sent();
        });
        let started = Instant::now();
        actor::poll_before_sleep(&stats, &last_park, Duration::from_secs(60));
        let polled = started.elapsed();
        assert!(polled >= Duration::from_millis(20), "{polled:?}");
        assert!(polled < Duration::from_secs(30), "{polled:?}");
    });
}
