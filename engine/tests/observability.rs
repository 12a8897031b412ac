//! The `observability` feature end to end: the Prometheus exposition of one workload
//! passes `promtool check metrics` and names every runbook and engine metric, and the
//! `tracing` spans of key derivation, sealing, commit, checkpoint and recovery are
//! emitted without ever carrying key or channel-binding bytes.
//!
//! `promtool` comes from the Debian package `prometheus` (scripts/test-all.sh installs
//! it); this test fails, not skips, without it.
#![cfg(feature = "observability")]

#[path = "../examples/support/observability_workload.rs"]
mod workload;

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const SECRETS: workload::Secrets = workload::Secrets {
    manifest_key: [
        0x3c, 0x91, 0x5e, 0x07, 0xd2, 0x4a, 0xb8, 0x66, 0x1f, 0xe3, 0x70, 0x29, 0x8d, 0xc4, 0x52,
        0x0b, 0x96, 0x3e, 0xa1, 0x7f, 0x14, 0xcb, 0x58, 0xe9, 0x02, 0x6d, 0xb3, 0x47, 0xfa, 0x81,
        0x1c, 0x65,
    ],
    checkpoint_key: [
        0xa7, 0x12, 0x6f, 0xd8, 0x33, 0x9c, 0x41, 0xee, 0x05, 0x7a, 0xc9, 0x5b, 0x20, 0xf4, 0x8e,
        0x63, 0xbd, 0x19, 0x72, 0xc6, 0x0a, 0x57, 0xe1, 0x38, 0x94, 0x4f, 0xdb, 0x26, 0x8a, 0x71,
        0xcf, 0x03,
    ],
    session_master: [
        0x5d, 0xe8, 0x27, 0x94, 0x61, 0x0c, 0xfb, 0x3a, 0xb6, 0x49, 0x17, 0xd5, 0x8c, 0x72, 0x2e,
        0xa3, 0x0f, 0x66, 0xc1, 0x38, 0x9d, 0x54, 0xe7, 0x1b, 0x82, 0x4d, 0xfa, 0x36, 0x69, 0xb0,
        0x15, 0xce,
    ],
    channel_binding: [
        0xc3, 0x5a, 0x1e, 0x87, 0x4b, 0xf0, 0x29, 0x96, 0x62, 0xdd, 0x08, 0x7e, 0xb1, 0x34, 0xea,
        0x5f, 0x13, 0xa8, 0x4c, 0x77, 0xd9, 0x20, 0x8b, 0x65, 0xfe, 0x31, 0x9a, 0x0d, 0xc8, 0x56,
        0x2b, 0x74,
    ],
};

/// Everything one run of the workload produced: the exposition, the captured trace and
/// the secrets it must not contain.
struct Run {
    rendered: String,
    trace: String,
    secrets: Vec<Vec<u8>>,
}

/// The workload runs once per test binary, under a global Prometheus recorder and a
/// global capturing subscriber (the actors run on their own threads).
fn run() -> &'static Run {
    static RUN: OnceLock<Run> = OnceLock::new();
    RUN.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::default());
        tracing::subscriber::set_global_default(CaptureRef(capture)).expect("first subscriber");
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("ihp_timestamp_skew_seconds".into()),
                aedb::IHP_TIMESTAMP_SKEW_BUCKETS,
            )
            .expect("buckets")
            .install_recorder()
            .expect("first recorder");
        aedb::describe_metrics();
        let dir = tempfile::tempdir().unwrap();
        let mut secrets = workload::run(dir.path(), &SECRETS).expect("workload");
        secrets.extend([
            SECRETS.manifest_key.to_vec(),
            SECRETS.checkpoint_key.to_vec(),
            SECRETS.session_master.to_vec(),
            SECRETS.channel_binding.to_vec(),
        ]);
        Run {
            rendered: handle.render(),
            trace: capture.text.lock().unwrap().clone(),
            secrets,
        }
    })
}

#[test]
fn prometheus_exposition_passes_promtool_and_names_every_metric() {
    let run = run();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &run.rendered).unwrap();
    let output = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::from(std::fs::File::open(file.path()).unwrap()))
        .output()
        .expect("promtool (Debian package `prometheus`; scripts/test-all.sh installs it)");
    assert!(
        output.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- exposition ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        run.rendered
    );
    for name in [
        "ihp_encrypt_success_total",
        "ihp_decrypt_success_total",
        "ihp_header_mismatch_total",
        "ihp_version_mismatch_total",
        "ihp_timestamp_skew_seconds",
        "ihp_tag_failures_total",
        "aedb_commit_latency_seconds",
        "aedb_fsync_latency_seconds",
        "aedb_group_commit_batch_size",
        "aedb_commits_total",
        "aedb_authz_denials_total",
        "aedb_assertion_failures_total",
        "aedb_audit_rows_total",
        "aedb_sequencer_queue_depth",
        "aedb_global_admin_actions_total",
        "aedb_policy_changes_total",
        "aedb_recovery_events_total",
        "aedb_backup_last_timestamp_seconds",
        "aedb_backup_age_seconds",
    ] {
        assert!(
            run.rendered.contains(&format!("# TYPE {name} ")),
            "{name} missing from:\n{}",
            run.rendered
        );
    }
    assert!(
        run.rendered
            .contains("# TYPE ihp_timestamp_skew_seconds histogram"),
        "the skew buckets make a histogram:\n{}",
        run.rendered
    );
    assert_no_secret("exposition", &run.rendered, &run.secrets);
}

/// The alert rules of `docs/alerts.rules.yml` pass `promtool check rules`, and every
/// metric a rule uses is in the exposition of the workload (with the labels the rules
/// group by), so no rule watches a metric that does not exist.
#[test]
fn alert_rules_pass_promtool_and_use_only_exported_metrics() {
    let run = run();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/alerts.rules.yml");
    let output = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("promtool (Debian package `prometheus`)");
    assert!(
        output.status.success(),
        "promtool check rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&rules).unwrap();
    let mut used = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with("expr:")) {
        let mut rest = line;
        while let Some(at) = rest.find("aedb_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            used.insert(name);
        }
    }
    assert!(used.len() >= 6, "rules use {used:?}");
    // The alert behind `aedb_recovery_events_total` is also a tracing warning.
    assert!(
        run.trace
            .contains("integrity alert: recovery routed around damage"),
        "the torn tail cut at open was not logged"
    );
    for name in &used {
        assert!(
            run.rendered.contains(&format!("# TYPE {name} ")),
            "rule metric {name} missing from the exposition:\n{}",
            run.rendered
        );
    }
    // The labels the rules group by are there, with the values the workload produced.
    for series in [
        "aedb_assertion_failures_total{project=\"bank\"}",
        "aedb_global_admin_actions_total{caller=\"root\"}",
        "aedb_policy_changes_total{change=\"grant\"}",
        "aedb_policy_changes_total{change=\"revoke\"}",
        "aedb_policy_changes_total{change=\"ownership_transfer\"}",
        "aedb_authz_denials_total{project=\"bank\"}",
        "aedb_recovery_events_total{event=\"wal_torn_tail\"}",
        "aedb_backup_last_timestamp_seconds{kind=\"full\"}",
        "aedb_backup_last_timestamp_seconds{kind=\"incremental\"}",
    ] {
        assert!(
            run.rendered.contains(series),
            "{series} missing from:\n{}",
            run.rendered
        );
    }
}

#[test]
fn spans_cover_every_path_and_never_carry_secrets() {
    let run = run();
    for name in [
        "aedb.key.derive",
        "aedb.wal.seal",
        "aedb.wal.open",
        "aedb.checkpoint.seal",
        "aedb.checkpoint.open",
        "aedb.commit.sequence",
        "aedb.commit.write",
        "aedb.commit.fsync",
        "aedb.checkpoint",
        "aedb.recovery",
        "ihp.derive_capsule_key",
    ] {
        assert!(
            run.trace.contains(&format!("span {name} "))
                || run.trace.contains(&format!("span {name}\n")),
            "span {name} not emitted; trace starts:\n{}",
            &run.trace[..run.trace.len().min(4000)]
        );
    }
    assert!(
        run.trace.contains("purpose=\"session\""),
        "derive spans name the purpose"
    );
    assert!(run.trace.contains("epoch=1"), "spans name the epoch");
    assert_no_secret("trace", &run.trace, &run.secrets);
}

/// Fails if `text` holds any secret as lower or upper hex, as a Rust `Debug` byte list
/// (decimal or hex), or as raw bytes.
fn assert_no_secret(what: &str, text: &str, secrets: &[Vec<u8>]) {
    for secret in secrets {
        let lower = hex::encode(secret);
        let forms = [
            lower.clone(),
            lower.to_uppercase(),
            format!("{:?}", &secret[..8])
                .trim_end_matches(']')
                .to_owned(),
            format!("{:x?}", &secret[..8])
                .trim_end_matches(']')
                .to_owned(),
            // Any 8-byte window of the hex, in case a span printed a slice.
            lower[16..32].to_owned(),
        ];
        for form in forms {
            assert!(
                !text.contains(&form),
                "{what} contains secret bytes ({form})"
            );
        }
        assert!(
            !text.as_bytes().windows(8).any(|w| w == &secret[..8]),
            "{what} contains raw secret bytes"
        );
    }
}

/// A subscriber that writes every span (name and fields), field update and event as a
/// line of text.
#[derive(Default)]
struct Capture {
    next_id: AtomicU64,
    text: Mutex<String>,
}

struct CaptureRef(&'static Capture);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl CaptureRef {
    fn push(&self, line: String) {
        let mut text = self.0.text.lock().unwrap();
        text.push_str(&line);
        text.push('\n');
    }
}

impl Subscriber for CaptureRef {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("span {}", span.metadata().name());
        span.record(&mut Fields(&mut line));
        self.push(line);
        Id::from_u64(self.0.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut line = format!("record {}", span.into_u64());
        values.record(&mut Fields(&mut line));
        self.push(line);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = format!("event {}", event.metadata().target());
        event.record(&mut Fields(&mut line));
        self.push(line);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[test]
fn trace_capture_sees_a_planted_secret() {
    // The checker itself works: a span that did carry a key would be caught.
    let mut line = String::new();
    let key = SECRETS.checkpoint_key;
    let _ = write!(line, "span leak key={}", hex::encode(key));
    let caught = std::panic::catch_unwind(|| assert_no_secret("planted", &line, &[key.to_vec()]));
    assert!(caught.is_err());
}
