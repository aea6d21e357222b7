//! `/live`, `/ready` and `/metrics` (Prometheus text format) for one consumer.
//!
//! The exposition is prometheus-client's: each consumer owns its counters, and `fortnight up`
//! serves seven consumers from one process, each on its own port with its own numbers, which
//! a process-wide recorder could not keep apart.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::get;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::BusError;

/// Upper bounds (seconds) of the step duration histogram: from a no-op to a multi-hour build.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0, 14400.0,
];

/// Counters of one consumer; cheap to update from the hot path.
#[derive(Debug)]
pub struct Metrics {
    ready: Gauge,
    pub(crate) received: Counter,
    pub(crate) processed: Counter,
    pub(crate) retried: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) published: Counter,
    pub(crate) confirmed: Counter,
    pub(crate) nacked: Counter,
    pub(crate) unroutable: Counter,
    step_duration: Histogram,
    /// Gauges a service sets itself (the release timer's per-stream times), by name.
    labelled: Mutex<BTreeMap<&'static str, (&'static str, GaugeFamily)>>,
}

/// Gauges told apart by labels besides `consumer` (`stream`, `kind`).
type GaugeFamily = Family<Vec<(&'static str, String)>, Gauge>;

/// A gauge a service sets with all its samples at once, each with the labels that tell it
/// apart (the `consumer` label is added).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledGauge {
    pub help: &'static str,
    pub samples: Vec<(Vec<(&'static str, String)>, i64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            ready: Gauge::default(),
            received: Counter::default(),
            processed: Counter::default(),
            retried: Counter::default(),
            dead_lettered: Counter::default(),
            published: Counter::default(),
            confirmed: Counter::default(),
            nacked: Counter::default(),
            unroutable: Counter::default(),
            step_duration: Histogram::new(BUCKETS),
            labelled: Mutex::default(),
        }
    }
}

impl Metrics {
    pub(crate) fn count(counter: &Counter) {
        counter.inc();
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Connected and consuming.
    pub fn is_ready(&self) -> bool {
        self.ready.get() == 1
    }

    pub(crate) fn observe_step(&self, duration: Duration) {
        self.step_duration.observe(duration.as_secs_f64());
    }

    /// Replaces the samples of the gauge `fortnight_<name>`: a sample left out of `gauge`
    /// disappears from `/metrics`.
    pub fn set_gauge(&self, name: &'static str, gauge: LabelledGauge) {
        let mut labelled = self.labelled.lock().unwrap_or_else(PoisonError::into_inner);
        let (_, family) = labelled
            .entry(name)
            .or_insert_with(|| (gauge.help, GaugeFamily::default()));
        family.clear();
        for (labels, value) in gauge.samples {
            family.get_or_create(&labels).set(value);
        }
    }

    /// Every metric under its exposed name (`fortnight_<name>`, counters with `_total`),
    /// labelled with the consumer. The metrics are shared handles: the registry reads the
    /// live values.
    fn registry(&self, consumer: &str) -> Registry {
        let labels = [(Cow::Borrowed("consumer"), Cow::Owned(consumer.to_owned()))];
        let mut registry = Registry::with_prefix_and_labels("fortnight", labels.into_iter());
        let counters = [
            (
                "received",
                "Deliveries taken from the queue",
                &self.received,
            ),
            (
                "processed",
                "Messages whose step finished and whose input was acked",
                &self.processed,
            ),
            ("retried", "Messages sent to a retry queue", &self.retried),
            (
                "dead_lettered",
                "Messages sent to the dead-letter queue",
                &self.dead_lettered,
            ),
            ("published", "Messages published", &self.published),
            (
                "publish_confirmed",
                "Publishes confirmed by the broker",
                &self.confirmed,
            ),
            (
                "publish_nacked",
                "Publishes refused by the broker",
                &self.nacked,
            ),
            (
                "publish_unroutable",
                "Mandatory publishes the broker returned because no queue was bound",
                &self.unroutable,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "ready",
            "Whether the consumer is connected and consuming",
            self.ready.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Time a step took, from handle() to its outcome",
            self.step_duration.clone(),
        );
        let labelled = self.labelled.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, (help, family)) in labelled.iter() {
            registry.register(*name, *help, family.clone());
        }
        registry
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn render(&self, consumer: &str) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoding error would be a bug in a metric.
        if let Err(error) = prometheus_text::encode(&mut out, &self.registry(consumer)) {
            tracing::error!(%error, "cannot encode the metrics");
        }
        out
    }
}

/// The endpoints of one consumer.
fn router(consumer: &'static str, metrics: Arc<Metrics>) -> Router {
    Router::new()
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
            get(move |State(metrics): State<Arc<Metrics>>| async move {
                (
                    [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
                    metrics.render(consumer),
                )
            }),
        )
        .with_state(metrics)
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
    let app = router(consumer, metrics);
    tracing::info!(addr = %addr, "health endpoints listening");
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(error = %error, "health endpoints stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

    /// The names and labels README, dashboards and the end-to-end tests read.
    #[test]
    fn every_metric_keeps_its_name_type_and_consumer_label() {
        let metrics = Metrics::default();
        Metrics::count(&metrics.received);
        Metrics::count(&metrics.confirmed);
        metrics.set_ready(true);
        let text = metrics.render("site-publisher");
        for line in [
            "# TYPE fortnight_received_total counter",
            "fortnight_received_total{consumer=\"site-publisher\"} 1",
            "fortnight_processed_total{consumer=\"site-publisher\"} 0",
            "fortnight_retried_total{consumer=\"site-publisher\"} 0",
            "fortnight_dead_lettered_total{consumer=\"site-publisher\"} 0",
            "fortnight_published_total{consumer=\"site-publisher\"} 0",
            "fortnight_publish_confirmed_total{consumer=\"site-publisher\"} 1",
            "fortnight_publish_nacked_total{consumer=\"site-publisher\"} 0",
            "fortnight_publish_unroutable_total{consumer=\"site-publisher\"} 0",
            "# HELP fortnight_ready Whether the consumer is connected and consuming.",
            "# TYPE fortnight_ready gauge",
            "fortnight_ready{consumer=\"site-publisher\"} 1",
            "# TYPE fortnight_step_duration_seconds histogram",
            "fortnight_step_duration_seconds_bucket{consumer=\"site-publisher\",le=\"+Inf\"} 0",
            "fortnight_step_duration_seconds_sum{consumer=\"site-publisher\"} 0.0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn labelled_gauges_carry_their_labels_and_are_replaced_whole() {
        let metrics = Metrics::default();
        let gauge = |samples: Vec<(&str, i64)>| LabelledGauge {
            help: "When",
            samples: samples
                .into_iter()
                .map(|(stream, value)| (vec![("stream", stream.to_owned())], value))
                .collect(),
        };
        metrics.set_gauge("when_seconds", gauge(vec![("f43", 15), ("a\"b", 2)]));
        let text = metrics.render("x");
        assert!(
            text.contains("# TYPE fortnight_when_seconds gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("fortnight_when_seconds{consumer=\"x\",stream=\"f43\"} 15\n"),
            "{text}"
        );
        assert!(text.contains("stream=\"a\\\"b\"} 2\n"), "{text}");
        metrics.set_gauge("when_seconds", gauge(vec![("rawhide", 3)]));
        let text = metrics.render("x");
        assert!(!text.contains("f43"), "{text}");
        assert!(text.contains("stream=\"rawhide\"} 3\n"), "{text}");
    }

    /// Prometheus picks the parser by the content type; axum's default for text is plain
    /// `text/plain`, without the format version.
    #[tokio::test]
    async fn metrics_are_served_as_prometheus_text_format_0_0_4() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(
            axum::serve(listener, router("probe", Arc::new(Metrics::default()))).into_future(),
        );
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        server.abort();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(
            head.lines().any(|l| l
                .eq_ignore_ascii_case("content-type: text/plain; version=0.0.4; charset=utf-8")),
            "{head}"
        );
        assert!(
            body.contains("fortnight_ready{consumer=\"probe\"} 0"),
            "{body}"
        );
    }
}
