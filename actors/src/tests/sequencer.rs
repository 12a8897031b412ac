//! The Sequencer: LSNs, apply, admission, fail-stop; the WAL is a double.

use std::sync::atomic::Ordering;

use aedb_sync::completion::completion;

use super::{SequencerRig, create_project};
use crate::commit::Finality;
use crate::committer::Admission;
use crate::error::CommitError;
use crate::sequencer::Flush;

#[test]
fn commits_get_dense_lsns_and_are_logged_then_published() {
    let rig = SequencerRig::new(1 << 20);
    let a = rig
        .committer
        .commit(create_project("a"), Finality::Durable, Admission::Wait)
        .unwrap();
    let b = rig
        .committer
        .commit(create_project("b"), Finality::Visible, Admission::Wait)
        .unwrap();
    assert_eq!((a.lsn.get(), b.lsn.get()), (1, 2));
    assert!(!a.idempotent_replay);
    let (version, state) = rig.snapshots.load();
    assert_eq!((version, state.lsn().get()), (2, 2));
    assert_eq!(rig.metrics.commits.load(Ordering::Relaxed), 2);
    assert_eq!(rig.metrics.durable_commits.load(Ordering::Relaxed), 1);
    assert_eq!(rig.metrics.visible_commits.load(Ordering::Relaxed), 1);
    assert_eq!(rig.finish().lsns, vec![1, 2]);
}

#[test]
fn a_rejected_commit_uses_no_lsn_and_changes_nothing() {
    let rig = SequencerRig::new(1 << 20);
    rig.committer
        .commit(create_project("a"), Finality::Durable, Admission::Wait)
        .unwrap();
    let again = rig
        .committer
        .commit(create_project("a"), Finality::Durable, Admission::Wait);
    assert!(matches!(again, Err(CommitError::Rejected(_))), "{again:?}");
    let next = rig
        .committer
        .commit(create_project("b"), Finality::Durable, Admission::Wait)
        .unwrap();
    assert_eq!(next.lsn.get(), 2);
    assert_eq!(rig.metrics.snapshot(0).errors.invalid, 1);
    assert_eq!(rig.finish().lsns, vec![1, 2]);
}

#[test]
fn a_record_larger_than_a_wal_frame_is_refused_before_it_is_applied() {
    let rig = SequencerRig::new(2);
    let refused = rig
        .committer
        .commit(create_project("a"), Finality::Durable, Admission::Wait);
    match refused {
        Err(CommitError::TooLarge { len, max }) => assert!(len > max && max == 2),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(rig.snapshots.load().1.lsn().get(), 0);
    assert!(rig.finish().lsns.is_empty(), "the WAL never sees it");
}

#[test]
fn after_a_fail_stop_every_commit_is_refused() {
    let rig = SequencerRig::new(1 << 20);
    rig.fail_stopped.store(true, Ordering::Release);
    let refused = rig
        .committer
        .commit(create_project("a"), Finality::Visible, Admission::Wait);
    assert!(
        matches!(refused, Err(CommitError::FailStopped)),
        "{refused:?}"
    );
    assert_eq!(rig.metrics.snapshot(0).errors.wal_failure, 1);
    assert!(rig.finish().lsns.is_empty());
}

#[test]
fn flush_is_a_barrier_behind_every_sequenced_commit() {
    let rig = SequencerRig::new(1 << 20);
    rig.committer
        .commit(create_project("a"), Finality::Visible, Admission::Wait)
        .unwrap();
    let (reply, waiter) = completion();
    rig.sequencer.addr().ask(Flush { reply }).unwrap();
    assert!(matches!(waiter.wait(), Ok(Ok(()))));
    let log = rig.finish();
    assert_eq!((log.lsns, log.barriers), (vec![1], 1));
}

#[test]
fn a_stopped_sequencer_answers_closed() {
    let mut rig = SequencerRig::new(1 << 20);
    rig.sequencer.stop();
    let closed = rig
        .committer
        .commit(create_project("a"), Finality::Durable, Admission::FailFast);
    assert!(matches!(closed, Err(CommitError::Closed)), "{closed:?}");
    assert!(rig.finish().lsns.is_empty());
}

/// A policy with `admin` bootstrapped and, if `bob_writes`, Bob allowed to write every
/// key of `bank/main`.
fn policy(bob_writes: bool) -> std::sync::Arc<aedb_authz::PolicySnapshot> {
    use aedb_authz::{CallerId, Permission, PolicyState};
    let admin = CallerId::new("admin").unwrap();
    let mut p = PolicyState::new();
    p.bootstrap_admin(admin.clone()).unwrap();
    if bob_writes {
        let ns = aedb_model::Namespace::new(
            aedb_model::ProjectName::new("bank").unwrap(),
            aedb_model::ScopeName::new("main").unwrap(),
        );
        let write = Permission::KvWrite {
            ns,
            prefix: Vec::new(),
        };
        p.grant(&admin, CallerId::new("bob").unwrap(), write, false)
            .unwrap();
    }
    std::sync::Arc::new(p.snapshot())
}

fn bob_put(n: u8) -> crate::commit::Request {
    let ns = aedb_model::Namespace::new(
        aedb_model::ProjectName::new("bank").unwrap(),
        aedb_model::ScopeName::new("main").unwrap(),
    );
    crate::commit::Request::Transaction(aedb_model::Transaction {
        mutations: vec![aedb_model::Mutation::KvPut {
            ns,
            key: aedb_model::KvKey::new(vec![n]).unwrap(),
            value: aedb_model::KvValue::new(vec![n]).unwrap(),
        }],
        ..aedb_model::Transaction::new()
    })
}

#[test]
fn rights_are_checked_against_the_policy_in_force_at_sequencing() {
    use crate::commit::Authority;
    use aedb_authz::{AccessError, CallerId};

    let rig = SequencerRig::new(1 << 20);
    let c = &rig.committer;
    for ddl in [
        create_project("bank"),
        crate::commit::Request::Ddl(aedb_model::Ddl::CreateScope {
            ns: aedb_model::Namespace::new(
                aedb_model::ProjectName::new("bank").unwrap(),
                aedb_model::ScopeName::new("main").unwrap(),
            ),
        }),
    ] {
        c.commit(ddl, Finality::Visible, Admission::Wait).unwrap();
    }
    let bob = || Authority::caller(CallerId::new("bob").unwrap());
    // No policy installed (an open instance): nothing to check.
    c.submit(bob(), bob_put(1), Finality::Visible, Admission::Wait)
        .unwrap();

    c.install_policy(policy(true)).unwrap();
    c.submit(bob(), bob_put(2), Finality::Visible, Admission::Wait)
        .unwrap();

    // The revoke is a commit that installs the new policy: every commit sequenced after
    // it is checked against it, whenever its caller was checked before.
    let revoke = c
        .submit(
            Authority::installing(policy(false)),
            create_project("audit-trail"),
            Finality::Visible,
            Admission::Wait,
        )
        .unwrap();
    let denied = c.submit(bob(), bob_put(3), Finality::Visible, Admission::Wait);
    assert!(
        matches!(denied, Err(CommitError::Access(AccessError::Denied(_)))),
        "{denied:?}"
    );
    // A denied commit uses no LSN; the engine's own commits are not checked.
    let next = c
        .commit(create_project("later"), Finality::Visible, Admission::Wait)
        .unwrap();
    assert_eq!(next.lsn, revoke.lsn.next());

    // A rejected commit installs nothing: the policy stays the revoked one.
    let rejected = c.submit(
        Authority::installing(policy(true)),
        create_project("later"),
        Finality::Visible,
        Admission::Wait,
    );
    assert!(
        matches!(rejected, Err(CommitError::Rejected(_))),
        "{rejected:?}"
    );
    let still = c.submit(bob(), bob_put(4), Finality::Visible, Admission::Wait);
    assert!(matches!(still, Err(CommitError::Access(_))), "{still:?}");
    rig.finish();
}

/// Puts a 1 KiB value under `key` (the namespace `a/main` exists).
fn put(key: &str) -> crate::commit::Request {
    use aedb_model::{KvKey, KvValue, Namespace, Transaction};
    let ns = Namespace::parse("a", "main").unwrap();
    crate::commit::Request::Transaction(Transaction::new().kv_put(
        &ns,
        KvKey::new(key).unwrap(),
        KvValue::new(vec![7u8; 1024]).unwrap(),
    ))
}

/// A rig whose memtables freeze at 4 KiB, one frozen memtable at most, and no
/// CheckpointSealer: nothing flushes until the test installs a flush by hand.
fn stalling_rig() -> SequencerRig {
    rig_with_namespace(crate::sequencer::WriteLimits {
        memtable_bytes: 4 << 10,
        immutable_memtables: 1,
        max_stall: std::time::Duration::from_millis(300),
        ..crate::sequencer::WriteLimits::default()
    })
}

/// A rig with `limits` and the namespace `a/main`.
fn rig_with_namespace(limits: crate::sequencer::WriteLimits) -> SequencerRig {
    let rig = SequencerRig::with_limits(aedb_model::State::new(), 1 << 20, limits);
    for ddl in [
        create_project("a"),
        crate::commit::Request::Ddl(aedb_model::Ddl::CreateScope {
            ns: aedb_model::Namespace::parse("a", "main").unwrap(),
        }),
    ] {
        rig.committer
            .commit(ddl, Finality::Visible, Admission::Wait)
            .unwrap();
    }
    rig
}

/// Commits 1 KiB puts until the Sequencer stops taking them (a write stall): the
/// first memtable freezes, the second fills, and the next commit waits.
fn fill_until_stalled(rig: &SequencerRig) -> usize {
    let mut n = 0;
    while rig.metrics.write_stalls.load(Ordering::Relaxed) == 0 {
        assert!(n < 64, "no stall after {n} puts");
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
        let r = rig.committer.submit_until(
            crate::commit::Authority::engine(),
            put(&format!("k{n}")),
            Finality::Visible,
            Admission::Wait,
            Some(deadline),
        );
        n += 1;
        if rig.metrics.write_stalls.load(Ordering::Relaxed) > 0 {
            // The stalled commit waited out its deadline: refused, nothing applied.
            assert!(matches!(r, Err(CommitError::Timeout)), "{r:?}");
        } else {
            r.unwrap();
        }
    }
    n
}

#[test]
fn commits_wait_when_the_frozen_memtables_fill_the_budget_and_resume_after_a_flush() {
    use crate::sequencer::{Freeze, InstallRuns};
    let rig = stalling_rig();
    let puts = fill_until_stalled(&rig);
    let (_, state) = rig.snapshots.load();
    assert_eq!(state.view().memtables().len(), 2, "active + one frozen");
    let lsn = state.lsn();
    assert!(
        state
            .kv_get(
                &aedb_model::Namespace::parse("a", "main").unwrap(),
                format!("k{}", puts - 1).as_bytes()
            )
            .unwrap()
            .is_none(),
        "the timed-out commit applied nothing"
    );
    assert_eq!(rig.metrics.snapshot(0).errors.timeout, 1);

    // A commit without a deadline waits until the frozen memtable is flushed.
    let committer = rig.committer.clone();
    let waiting = std::thread::spawn(move || {
        committer.commit(put("after"), Finality::Visible, Admission::Wait)
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!waiting.is_finished(), "the commit waits out the stall");
    assert_eq!(rig.snapshots.load().1.lsn(), lsn);

    // The flush's edit drops the frozen memtable (the run itself does not matter here).
    let frozen = rig.sequencer.addr().ask(Freeze { force: false }).unwrap();
    assert_eq!(frozen.len(), 1);
    rig.sequencer
        .addr()
        .ask(InstallRuns {
            edit: aedb_storage::Edit::default(),
            flushed: Some(frozen[0].memtable.id()),
        })
        .unwrap();
    let outcome = waiting.join().unwrap().unwrap();
    assert_eq!(outcome.lsn, lsn.next());
    let m = rig.metrics.snapshot(0);
    assert_eq!(m.write_stalls, 1);
    assert!(m.write_stall_micros >= 100_000, "{}", m.write_stall_micros);
    rig.finish();
}

/// Stalls `rig`, then starts a commit (without a deadline) that waits out the stall.
fn commit_waiting_in_a_stall(
    rig: &SequencerRig,
) -> std::thread::JoinHandle<Result<crate::commit::CommitOutcome, CommitError>> {
    fill_until_stalled(rig);
    let committer = rig.committer.clone();
    let waiting =
        std::thread::spawn(move || committer.commit(put("x"), Finality::Visible, Admission::Wait));
    std::thread::sleep(std::time::Duration::from_millis(50));
    waiting
}

#[test]
fn stalled_commits_are_refused_when_the_instance_fail_stops_or_shuts_down() {
    let rig = stalling_rig();
    let waiting = commit_waiting_in_a_stall(&rig);
    rig.fail_stopped.store(true, Ordering::Release);
    let r = waiting.join().unwrap();
    assert!(matches!(r, Err(CommitError::FailStopped)), "{r:?}");

    let rig = stalling_rig();
    let waiting = commit_waiting_in_a_stall(&rig);
    let before = rig.snapshots.load().1.lsn();
    let snapshots = rig.snapshots.clone();
    rig.finish();
    let r = waiting.join().unwrap();
    assert!(matches!(r, Err(CommitError::Closed)), "{r:?}");
    assert_eq!(snapshots.load().1.lsn(), before, "nothing applied");
}

#[test]
fn a_stall_while_flushes_fail_ends_in_busy_and_a_slow_one_only_waits() {
    let rig = stalling_rig();
    let waiting = commit_waiting_in_a_stall(&rig);
    // Past `max_stall`, but nothing failed: the commit still waits.
    std::thread::sleep(std::time::Duration::from_millis(550));
    assert!(
        !waiting.is_finished(),
        "a slow flush only makes commits wait"
    );
    // A flush fails (a full disk): commits that waited `max_stall` are refused.
    rig.metrics
        .checkpoint_failures
        .fetch_add(1, Ordering::Relaxed);
    let r = waiting.join().unwrap();
    assert!(matches!(r, Err(CommitError::Busy)), "{r:?}");
    assert_eq!(rig.metrics.snapshot(0).errors.busy, 1);
    rig.finish();
}

/// A flush installed while a durable commit is still on its way to the WAL writer:
/// that commit's snapshot was built on the old sources (the flushed memtable), so once
/// it is published the Sequencer's `Repoint`, queued behind it, moves the published
/// snapshot onto the new ones. Without it the flushed memtable stays pinned by the
/// published snapshot until the next commit.
#[test]
fn a_snapshot_published_after_an_install_is_repointed_at_the_new_sources() {
    use crate::sequencer::{Freeze, InstallRuns, WriteLimits};
    use aedb_sync::group_commit::{Acknowledge, Durability, WriterMsg};
    use std::sync::Arc;
    let state = aedb_model::State::new();
    let snapshots = Arc::new(aedb_sync::SnapshotCell::new(0, Arc::new(state.clone())));
    let metrics = Arc::new(crate::metrics::EngineMetrics::default());
    // This test is the WAL writer: it takes the records itself and decides when to
    // publish them.
    let (wal, log) = aedb_sync::mailbox::mailbox::<crate::wal_writer::WalMsg>(16);
    let limits = WriteLimits {
        memtable_bytes: 1 << 20,
        immutable_memtables: 2,
        max_stall: crate::sequencer::MAX_STALL,
        ..crate::sequencer::WriteLimits::default()
    };
    let sequencer = crate::actor::spawn(
        crate::sequencer::Sequencer::new(
            state,
            wal,
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
            snapshots.clone(),
            metrics.clone(),
            1 << 20,
            limits,
        ),
        16,
        metrics.owners.sequencer.clone(),
    )
    .unwrap();
    let committer = crate::committer::Committer::new(
        sequencer.addr().clone(),
        metrics,
        std::time::Duration::ZERO,
    );
    let durable = std::thread::spawn(move || {
        committer.commit(create_project("a"), Finality::Durable, Admission::Wait)
    });
    let Some(WriterMsg::Append(record)) = log.recv() else {
        panic!("the commit's record")
    };
    let (lsn, state) = record.publish.clone().expect("a durable commit publishes");
    // The flush installs while the record is held: its snapshot still reads the
    // memtable that is now flushed.
    let frozen = sequencer.addr().ask(Freeze { force: true }).unwrap();
    assert_eq!(frozen.len(), 1);
    let flushed = frozen[0].memtable.id();
    sequencer
        .addr()
        .ask(InstallRuns {
            edit: aedb_storage::Edit::default(),
            flushed: Some(flushed),
        })
        .unwrap();
    let holds = |s: &aedb_model::State| s.view().memtables().iter().any(|m| m.id() == flushed);
    assert!(
        holds(&state),
        "the in-flight snapshot was built before the install"
    );
    snapshots.publish(lsn.get(), state);
    if let Durability::AckAfterSync(ack) = record.durability {
        ack.acknowledge(Ok(()));
    }
    assert_eq!(durable.join().unwrap().unwrap().lsn, lsn);
    assert!(holds(&snapshots.load().1), "published as built");
    // The Repoint queued behind it, applied as the WAL writer applies it.
    let aedb_sync::mailbox::Recv::Message(WriterMsg::Control(
        crate::wal_writer::WalControl::Repoint { view },
    )) = log.recv_timeout(std::time::Duration::from_secs(10))
    else {
        panic!("a repoint follows the record")
    };
    let at = view.lsn();
    snapshots.refresh(|p| (p.lsn() <= at).then(|| Arc::new(p.with_view(view))));
    let (version, published) = snapshots.load();
    assert_eq!(version, lsn.get());
    assert!(
        !holds(&published),
        "the flushed memtable is no longer pinned"
    );
    assert_eq!(published.lsn(), lsn);
}

/// A rig whose writes are always in the slowdown (`l0_slowdown_runs` 0) at
/// `bytes_per_sec`, in namespace `a/main`.
fn slowed_rig(bytes_per_sec: u64) -> SequencerRig {
    rig_with_namespace(crate::sequencer::WriteLimits {
        memtable_bytes: 1 << 20,
        l0_slowdown_runs: 0,
        slowdown_bytes_per_sec: bytes_per_sec,
        ..crate::sequencer::WriteLimits::default()
    })
}

/// While level 0 is in its slowdown depth, commits are paced to the byte rate: they
/// wait in the Sequencer's queue (counted), and a deadline still refuses one that
/// waits past it, with nothing applied. Without a slowdown nothing waits.
#[test]
fn a_write_slowdown_paces_commits_to_its_byte_rate_and_keeps_deadlines() {
    // 16 KiB/s and 1 KiB puts: about 65 ms per commit.
    let rig = slowed_rig(16 << 10);
    let started = std::time::Instant::now();
    for i in 0..6 {
        rig.committer
            .commit(put(&format!("k{i}")), Finality::Visible, Admission::Wait)
            .unwrap();
    }
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(250), "{took:?}");
    let m = rig.metrics.snapshot(0);
    assert!(m.write_slowdowns >= 4, "{}", m.write_slowdowns);
    assert!(
        m.write_slowdown_micros >= 200_000,
        "{}",
        m.write_slowdown_micros
    );
    assert_eq!(m.write_stalls, 0, "a slowdown is not a stall");

    // A commit whose deadline passes while it is paced is refused, nothing applied.
    let lsn = rig.snapshots.load().1.lsn();
    let r = rig.committer.submit_until(
        crate::commit::Authority::engine(),
        put("late"),
        Finality::Visible,
        Admission::Wait,
        Some(std::time::Instant::now() + std::time::Duration::from_millis(5)),
    );
    assert!(matches!(r, Err(CommitError::Timeout)), "{r:?}");
    assert_eq!(rig.snapshots.load().1.lsn(), lsn);
    rig.finish();

    // Without a rate: no slowdown.
    let rig = slowed_rig(0);
    for i in 0..6 {
        rig.committer
            .commit(put(&format!("k{i}")), Finality::Visible, Admission::Wait)
            .unwrap();
    }
    assert_eq!(rig.metrics.snapshot(0).write_slowdowns, 0);
    rig.finish();
}
