//! The Audit actor: events become chained rows in one durable commit per burst.

use aedb_keys::SecretKey;

use super::SequencerRig;
use crate::audit::{self, AuditEvent, AuditTable, Event, Flush};
use crate::commit::{Finality, Request};
use crate::committer::Admission;

/// A sequencer rig whose state has the system tables.
pub(crate) fn rig_with_system_tables() -> SequencerRig {
    let rig = SequencerRig::new(1 << 20);
    for ddl in audit::missing_system_ddl(&rig.snapshots.load().1) {
        rig.committer
            .commit(Request::Ddl(ddl), Finality::Durable, Admission::Wait)
            .unwrap();
    }
    rig
}

fn event(table: AuditTable, n: usize) -> AuditEvent {
    AuditEvent {
        table,
        caller: "alice".into(),
        kind: "denied".into(),
        subject: format!("subject {n}"),
        detail: String::new(),
    }
}

#[test]
fn events_become_chained_rows_once_flushed() {
    let rig = rig_with_system_tables();
    let key = || SecretKey::new([9; 32]);
    let handle = audit::spawn(
        rig.committer.clone(),
        &rig.snapshots,
        key(),
        "k:v1".into(),
        rig.metrics.clone(),
        16,
    )
    .unwrap();
    for n in 0..10 {
        let table = if n % 2 == 0 {
            AuditTable::Authz
        } else {
            AuditTable::Assertion
        };
        handle.mailbox.tell(Event(event(table, n))).unwrap();
    }
    handle.mailbox.ask(Flush).unwrap().unwrap();
    let state = rig.snapshots.load().1;
    for table in AuditTable::ALL {
        let rows = audit::read_rows(&state, table).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert!(
            rows.iter()
                .all(|r| r.key_id == "k:v1" && r.caller == "alice")
        );
        let keys = |id: &str| (id == "k:v1").then(key);
        audit::verify_chain(&rows, keys).unwrap();
    }
    assert_eq!(
        rig.metrics
            .audit_rows
            .load(std::sync::atomic::Ordering::Relaxed),
        10
    );
    handle.stop();
    rig.finish();
}

#[test]
fn stop_writes_the_events_still_queued_and_continues_the_chain_after_a_restart() {
    let rig = rig_with_system_tables();
    let key = || SecretKey::new([9; 32]);
    let start = |rig: &SequencerRig| {
        audit::spawn(
            rig.committer.clone(),
            &rig.snapshots,
            key(),
            "k:v1".into(),
            rig.metrics.clone(),
            16,
        )
        .unwrap()
    };
    let first = start(&rig);
    for n in 0..3 {
        first
            .mailbox
            .tell(Event(event(AuditTable::Authz, n)))
            .unwrap();
    }
    first.stop();
    // A new actor reads the chain head back from the state.
    let second = start(&rig);
    second
        .mailbox
        .tell(Event(event(AuditTable::Authz, 3)))
        .unwrap();
    second.flush().unwrap();
    let rows = audit::read_rows(&rig.snapshots.load().1, AuditTable::Authz).unwrap();
    assert_eq!(rows.len(), 4);
    audit::verify_chain(&rows, |_| Some(key())).unwrap();
    second.stop();
    rig.finish();
}
