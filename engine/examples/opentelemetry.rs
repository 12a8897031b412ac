//! Exports aedb's metrics through OpenTelemetry.
//!
//! aedb records its metrics (`aedb_*`, the IHP runbook's `ihp_*`) through the `metrics`
//! facade. This example installs a small facade-to-OpenTelemetry bridge as the recorder:
//! each counter, gauge and histogram becomes an OpenTelemetry instrument of the same name
//! (labels become attributes) on an `SdkMeterProvider`. Any OpenTelemetry exporter can
//! then ship them (OTLP to a collector in production; here the stdout exporter). It runs
//! the same workload as the Prometheus example and prints the exported metrics:
//!
//! ```text
//! cargo run -p aedb --example opentelemetry --features observability
//! ```
//!
//! The test below runs the workload against an in-memory exporter and checks that every
//! metric the runbooks and the alert rules name arrives (run by the README test command).

#[path = "support/observability_workload.rs"]
mod workload;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;

/// A `metrics` recorder that forwards every measurement to OpenTelemetry instruments.
struct OtelBridge {
    meter: Meter,
    /// One instrument per metric name (OpenTelemetry instruments are per name; labels
    /// are attributes of each measurement).
    counters: Mutex<HashMap<String, opentelemetry::metrics::Counter<u64>>>,
    gauges: Mutex<HashMap<String, opentelemetry::metrics::Gauge<f64>>>,
    histograms: Mutex<HashMap<String, opentelemetry::metrics::Histogram<f64>>>,
    /// The facade's gauges move by deltas and its counters may be set absolutely;
    /// OpenTelemetry gauges take values and counters take deltas: the current value
    /// per series bridges the two.
    series: Mutex<HashMap<Key, Arc<AtomicU64>>>,
}

impl OtelBridge {
    fn new(meter: Meter) -> OtelBridge {
        OtelBridge {
            meter,
            counters: Mutex::default(),
            gauges: Mutex::default(),
            histograms: Mutex::default(),
            series: Mutex::default(),
        }
    }

    fn series(&self, key: &Key) -> Arc<AtomicU64> {
        let mut series = self.series.lock().expect("series lock");
        series.entry(key.clone()).or_default().clone()
    }
}

fn attributes(key: &Key) -> Vec<KeyValue> {
    key.labels()
        .map(|l| KeyValue::new(l.key().to_owned(), l.value().to_owned()))
        .collect()
}

struct OtelCounter {
    counter: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
    total: Arc<AtomicU64>,
}

impl CounterFn for OtelCounter {
    fn increment(&self, value: u64) {
        self.total.fetch_add(value, Ordering::Relaxed);
        self.counter.add(value, &self.attributes);
    }

    fn absolute(&self, value: u64) {
        let before = self.total.fetch_max(value, Ordering::Relaxed);
        if value > before {
            self.counter.add(value - before, &self.attributes);
        }
    }
}

struct OtelGauge {
    gauge: opentelemetry::metrics::Gauge<f64>,
    attributes: Vec<KeyValue>,
    /// The current value, as `f64` bits.
    value: Arc<AtomicU64>,
}

impl OtelGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let mut now = 0.0;
        let _ = self
            .value
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                now = f(f64::from_bits(bits));
                Some(now.to_bits())
            });
        self.gauge.record(now, &self.attributes);
    }
}

impl GaugeFn for OtelGauge {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

struct OtelHistogram {
    histogram: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl HistogramFn for OtelHistogram {
    fn record(&self, value: f64) {
        self.histogram.record(value, &self.attributes);
    }
}

impl Recorder for OtelBridge {
    // Descriptions reach OpenTelemetry with the first registration of each name in a
    // production bridge; this example keeps instruments undescribed.
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let name = key.name().to_owned();
        let counter = self
            .counters
            .lock()
            .expect("counters lock")
            .entry(name.clone())
            .or_insert_with(|| self.meter.u64_counter(name).build())
            .clone();
        Counter::from_arc(Arc::new(OtelCounter {
            counter,
            attributes: attributes(key),
            total: self.series(key),
        }))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let name = key.name().to_owned();
        let gauge = self
            .gauges
            .lock()
            .expect("gauges lock")
            .entry(name.clone())
            .or_insert_with(|| self.meter.f64_gauge(name).build())
            .clone();
        Gauge::from_arc(Arc::new(OtelGauge {
            gauge,
            attributes: attributes(key),
            value: self.series(key),
        }))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let name = key.name().to_owned();
        let histogram = self
            .histograms
            .lock()
            .expect("histograms lock")
            .entry(name.clone())
            .or_insert_with(|| self.meter.f64_histogram(name).build())
            .clone();
        Histogram::from_arc(Arc::new(OtelHistogram {
            histogram,
            attributes: attributes(key),
        }))
    }
}

/// Installs the bridge over `provider` as the process's `metrics` recorder and runs the
/// observability workload in a temporary directory.
fn record_workload(provider: &SdkMeterProvider) -> Result<(), Box<dyn std::error::Error>> {
    metrics::set_global_recorder(OtelBridge::new(provider.meter("aedb")))?;
    aedb::describe_metrics();
    let dir = tempfile::tempdir()?;
    let secrets = workload::Secrets {
        manifest_key: std::array::from_fn(|i| i as u8),
        checkpoint_key: std::array::from_fn(|i| 0x80 | i as u8),
        session_master: std::array::from_fn(|i| 0x40 | i as u8),
        channel_binding: [0xCB; 32],
    };
    workload::run(dir.path(), &secrets)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(opentelemetry_stdout::MetricExporter::default())
        .build();
    record_workload(&provider)?;
    // Exports now (the periodic reader would every 60 s) and stops the exporter.
    provider.force_flush()?;
    provider.shutdown()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use opentelemetry_sdk::metrics::InMemoryMetricExporter;

    use super::*;

    #[test]
    fn every_runbook_and_alert_metric_reaches_opentelemetry() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_periodic_exporter(exporter.clone())
            .build();
        record_workload(&provider).unwrap();
        provider.force_flush().unwrap();
        let exported: BTreeSet<String> = exporter
            .get_finished_metrics()
            .unwrap()
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .map(|m| m.name().to_owned())
            .collect();
        // The IHP runbook's metrics, the security runbook's alert metrics (the rules in
        // docs/alerts.rules.yml) and the commit path's queue depth.
        for name in [
            "ihp_encrypt_success_total",
            "ihp_decrypt_success_total",
            "ihp_header_mismatch_total",
            "ihp_version_mismatch_total",
            "ihp_timestamp_skew_seconds",
            "aedb_assertion_failures_total",
            "aedb_global_admin_actions_total",
            "aedb_policy_changes_total",
            "aedb_authz_denials_total",
            "aedb_recovery_events_total",
            "aedb_backup_last_timestamp_seconds",
            "aedb_sequencer_queue_depth",
        ] {
            assert!(exported.contains(name), "{name} not exported: {exported:?}");
        }
        provider.shutdown().unwrap();
    }
}
