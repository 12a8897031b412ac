//! Exports aedb's metrics in the Prometheus text format.
//!
//! Installs a Prometheus recorder, runs a small workload against a database in a
//! temporary directory (commits, a denial, a failed assertion, a checkpoint, a
//! recovery, IHP session capsules), then prints the exposition to stdout:
//!
//! ```text
//! cargo run -p aedb --example prometheus --features observability | promtool check metrics
//! ```

#[path = "support/observability_workload.rs"]
mod workload;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Buckets make `ihp_timestamp_skew_seconds` a histogram (the default is a summary).
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("ihp_timestamp_skew_seconds".into()),
            aedb::IHP_TIMESTAMP_SKEW_BUCKETS,
        )?
        .install_recorder()?;
    aedb::describe_metrics();
    let dir = tempfile::tempdir()?;
    let secrets = workload::Secrets {
        manifest_key: std::array::from_fn(|i| i as u8),
        checkpoint_key: std::array::from_fn(|i| 0x80 | i as u8),
        session_master: std::array::from_fn(|i| 0x40 | i as u8),
        channel_binding: [0xCB; 32],
    };
    workload::run(dir.path(), &secrets)?;
    print!("{}", handle.render());
    Ok(())
}
