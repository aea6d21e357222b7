//! `/live`, `/ready` and `/metrics` (Prometheus text format) for one consumer.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::BusError;

/// Upper bounds (seconds) of the step duration histogram: from a no-op to a multi-hour build.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 14400.0,
];

/// Counters of one consumer; cheap to update from the hot path.
#[derive(Debug, Default)]
pub struct Metrics {
    ready: AtomicBool,
    pub(crate) received: AtomicU64,
    pub(crate) processed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) confirmed: AtomicU64,
    pub(crate) nacked: AtomicU64,
    pub(crate) unroutable: AtomicU64,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
    /// Gauges a service sets itself (the release timer's per-stream times), by name.
    gauges: Mutex<BTreeMap<&'static str, Gauge>>,
}

/// One gauge and its samples, each with the labels that tell it apart (the `consumer` label
/// is added when rendering).
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    pub help: &'static str,
    pub samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// A label value as the text format requires: `\`, `"` and newlines escaped.
fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Connected and consuming.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub(crate) fn observe_step(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.duration_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.duration_sum_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// Replaces the samples of the gauge `fortnight_<name>`; a sample left out of `gauge`
    /// disappears from `/metrics`.
    pub fn set_gauge(&self, name: &'static str, gauge: Gauge) {
        self.gauges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, gauge);
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self, consumer: &str) -> String {
        let mut out = String::new();
        let counters = [
            (
                "received",
                "Deliveries taken from the queue.",
                &self.received,
            ),
            (
                "processed",
                "Messages whose step finished and whose input was acked.",
                &self.processed,
            ),
            ("retried", "Messages sent to a retry queue.", &self.retried),
            (
                "dead_lettered",
                "Messages sent to the dead-letter queue.",
                &self.dead_lettered,
            ),
            ("published", "Messages published.", &self.published),
            (
                "publish_confirmed",
                "Publishes confirmed by the broker.",
                &self.confirmed,
            ),
            (
                "publish_nacked",
                "Publishes refused by the broker.",
                &self.nacked,
            ),
            (
                "publish_unroutable",
                "Mandatory publishes the broker returned because no queue was bound.",
                &self.unroutable,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP fortnight_{name}_total {help}");
            let _ = writeln!(out, "# TYPE fortnight_{name}_total counter");
            let _ = writeln!(
                out,
                "fortnight_{name}_total{{consumer=\"{consumer}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP fortnight_ready Whether the consumer is connected and consuming."
        );
        let _ = writeln!(out, "# TYPE fortnight_ready gauge");
        let _ = writeln!(
            out,
            "fortnight_ready{{consumer=\"{consumer}\"}} {}",
            u8::from(self.is_ready())
        );
        let name = "fortnight_step_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time a step took, from handle() to its outcome."
        );
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.duration_buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{consumer=\"{consumer}\",le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{consumer=\"{consumer}\",le=\"+Inf\"}} {count}"
        );
        let sum = self.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{consumer=\"{consumer}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{consumer=\"{consumer}\"}} {count}");
        let gauges = self.gauges.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, gauge) in gauges.iter() {
            let _ = writeln!(out, "# HELP fortnight_{name} {}", gauge.help);
            let _ = writeln!(out, "# TYPE fortnight_{name} gauge");
            for (labels, value) in &gauge.samples {
                let labels: String = labels
                    .iter()
                    .map(|(label, value)| format!(",{label}=\"{}\"", label_value(value)))
                    .collect();
                let _ = writeln!(
                    out,
                    "fortnight_{name}{{consumer=\"{consumer}\"{labels}}} {value}"
                );
            }
        }
        out
    }
}

/// Binds `addr` and serves the endpoints until the returned task is aborted.
pub(crate) async fn serve(
    addr: SocketAddr,
    consumer: &'static str,
    metrics: Arc<Metrics>,
) -> Result<tokio::task::JoinHandle<()>, BusError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BusError::Health { addr, source })?;
    let app = Router::new()
        .route("/live", get(|| async { "ok\n" }))
        .route(
            "/ready",
            get(|State(metrics): State<Arc<Metrics>>| async move {
                if metrics.is_ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not connected\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(move |State(metrics): State<Arc<Metrics>>| async move { metrics.render(consumer) }),
        )
        .with_state(metrics);
    tracing::info!(addr = %addr, "health endpoints listening");
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(error = %error, "health endpoints stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.observe_step(Duration::from_millis(3));
        metrics.observe_step(Duration::from_secs(2));
        let text = metrics.render("x");
        assert!(text.contains("le=\"0.001\"} 0"), "{text}");
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("le=\"5\"} 2"), "{text}");
        assert!(
            text.contains("fortnight_step_duration_seconds_count{consumer=\"x\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn gauges_carry_their_labels_and_are_replaced_whole() {
        let metrics = Metrics::default();
        let gauge = |samples: Vec<(&str, f64)>| Gauge {
            help: "When.",
            samples: samples
                .into_iter()
                .map(|(stream, value)| (vec![("stream", stream.to_owned())], value))
                .collect(),
        };
        metrics.set_gauge("when_seconds", gauge(vec![("f43", 1.5), ("a\"b", 2.0)]));
        let text = metrics.render("x");
        assert!(
            text.contains("# TYPE fortnight_when_seconds gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("fortnight_when_seconds{consumer=\"x\",stream=\"f43\"} 1.5\n"),
            "{text}"
        );
        assert!(text.contains("stream=\"a\\\"b\"} 2\n"), "{text}");
        metrics.set_gauge("when_seconds", gauge(vec![("rawhide", 3.0)]));
        let text = metrics.render("x");
        assert!(!text.contains("f43"), "{text}");
        assert!(text.contains("stream=\"rawhide\"} 3\n"), "{text}");
    }
}
