//! The shared end-to-end test harness. Everything talks to the real RabbitMQ on
//! 127.0.0.1:5672 (override with `FORTNIGHT_TEST_AMQP_URL`).
//!
//! [`TestBus`] gives each test its own exchange, topic prefix, queue names and store root, so
//! tests run in parallel without seeing each other's messages, and deletes what it declared
//! in [`TestBus::cleanup`]. [`broker`] drives the broker itself (restart, consumer timeout)
//! for the tests that must run alone, and starts RabbitMQ nodes of a test's own beside it (a
//! TLS node, a cluster). [`probe`] is a tiny consumer whose effects can be counted, used
//! in-process and as the `probe-consumer` binary. [`pipeline`] runs the
//! karma-tracker and releaser on a two-arch stream with a real OSTree repository.
//! [`container`] builds the deployed image with podman and runs containers of it. [`step`]
//! drives one step without any broker, for the consumers' fast unit tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::record::Recording;
use bus::{Publisher, Step};
use config::{Table, Value, toml};
use messages::RecordLine;
use settings::Settings;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod broker;
pub mod browser;
pub mod config;
pub mod container;
pub mod mount;
pub mod nginx;
pub mod pipeline;
pub mod probe;
pub mod process;
pub mod records;
pub mod reference;
pub mod schema;
pub mod signing;
pub mod step;

/// The broker the tests use.
pub fn amqp_url() -> String {
    std::env::var("FORTNIGHT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// One test's private corner of the broker and the file system.
#[derive(Debug)]
pub struct TestBus {
    /// Unique per test; part of every name below.
    pub id: String,
    pub exchange: String,
    pub prefix: String,
    /// Store root and config files; removed on drop.
    pub dir: tempfile::TempDir,
    /// Merged into every generated configuration (more streams, `[qos]`, ...).
    extra: Table,
    /// `amqp_urls` when the test runs on brokers of its own; the shared broker otherwise.
    brokers: Vec<String>,
    consumers: Vec<(String, Table)>,
    cleaned: bool,
}

impl TestBus {
    pub fn new() -> Self {
        Self::with_config(Table::new())
    }

    /// `extra` is merged into the configuration (`[qos]`, keys of `[streams.f43]`, another
    /// stream, ...); consumer sections come from [`TestBus::consumer`].
    pub fn with_config(extra: Table) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Self {
            exchange: format!("fortnight.test.{id}"),
            prefix: format!("test.{id}"),
            dir: tempfile::tempdir().expect("a temporary directory"),
            extra,
            brokers: Vec::new(),
            consumers: Vec::new(),
            cleaned: false,
            id,
        }
    }

    /// Registers a consumer: its queues get unique names and are cleaned up; `keys` go into
    /// its `[consumers.<name>]` section.
    pub fn consumer(mut self, name: &str, keys: Table) -> Self {
        self.consumers.push((name.to_owned(), keys));
        self
    }

    /// Runs the test on these broker addresses (`amqp_urls`, a cluster's nodes) instead of
    /// the shared broker.
    pub fn on_brokers(mut self, urls: Vec<String>) -> Self {
        self.brokers = urls;
        self
    }

    pub fn store_root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The queue of a registered consumer.
    pub fn queue(&self, consumer: &str) -> String {
        format!("test.{}.{consumer}", self.id)
    }

    /// The full configuration text.
    pub fn config_toml(&self) -> String {
        config::to_toml(&self.config())
    }

    /// The full configuration, to extend before writing it.
    pub fn config(&self) -> Table {
        self.config_with_store(&self.store_root())
    }

    /// The configuration with the store at `root` instead: where a container mounts it.
    pub fn config_toml_with_store(&self, root: &Path) -> String {
        config::to_toml(&self.config_with_store(root))
    }

    fn config_with_store(&self, root: &Path) -> Table {
        let mut config = match &self.brokers[..] {
            [] => toml! { amqp_url = (amqp_url()) },
            urls => toml! { amqp_urls = (urls.to_vec()) },
        };
        config::merge(
            &mut config,
            toml! {
                publish_exchange = (self.exchange.as_str())
                topic_prefix = (self.prefix.as_str())
            },
        );
        config::merge(
            &mut config,
            config::store_config(
                root,
                "fedora/43/x86_64/atomic-host",
                &root.join("repo"),
                Table::new(),
            ),
        );
        config::merge(&mut config, self.extra.clone());
        let mut consumers = Table::new();
        for (name, keys) in &self.consumers {
            // The release timer owns no queue; its section takes only `health_addr`.
            let queue = match name.as_str() {
                settings::RELEASE_TIMER => Table::new(),
                _ => toml! { queue = (self.queue(name)) },
            };
            consumers.insert(
                name.clone(),
                Value::Table(config::merged(queue, keys.clone())),
            );
        }
        config::merge(
            &mut config,
            Table::from_iter([("consumers".to_owned(), Value::Table(consumers))]),
        );
        config
    }

    pub fn settings(&self) -> Settings {
        Settings::from_toml(&self.config_toml()).expect("the test configuration is valid")
    }

    /// Writes the configuration for a consumer process and returns its path.
    pub fn write_config(&self) -> PathBuf {
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, self.config_toml()).expect("config written");
        path
    }

    pub async fn publisher(&self) -> Publisher {
        Publisher::connect(&self.settings(), &format!("test-{}", self.id))
            .await
            .expect("the test broker accepts connections")
    }

    /// Starts recording `topics` (logical; the prefix is added) before anything is published.
    pub async fn watch(&self, topics: &[&str]) -> Watch {
        Watch::start(&self.settings(), topics).await
    }

    /// Waits until a registered consumer's queue has a consumer, so that what is published
    /// next is routed to it.
    pub async fn wait_consuming(&self, consumer: &str) {
        wait_consumers(&self.queue(consumer), 1, Duration::from_secs(30)).await;
    }

    /// Every dead letter of a registered consumer.
    pub async fn dead_letters(&self, consumer: &str) -> Vec<bus::dead_letters::DeadLetter> {
        bus::dead_letters::list(&self.settings(), consumer)
            .await
            .expect("the dead-letter queue is readable")
    }

    /// Polls the dead-letter queue until it holds `count` messages or `deadline` passes.
    pub async fn wait_dead_letters(
        &self,
        consumer: &str,
        count: usize,
        deadline: Duration,
    ) -> Vec<bus::dead_letters::DeadLetter> {
        let until = Instant::now() + deadline;
        loop {
            let letters = self.dead_letters(consumer).await;
            if letters.len() >= count || Instant::now() > until {
                return letters;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls the dead-letter queue of `consumer` until a letter's reason contains `text`;
    /// fails the test, listing the reasons found, when `deadline` passes first.
    pub async fn wait_dead_letter_saying(
        &self,
        consumer: &str,
        text: &str,
        deadline: Duration,
    ) -> bus::dead_letters::DeadLetter {
        let until = Instant::now() + deadline;
        loop {
            let letters = self.dead_letters(consumer).await;
            if let Some(letter) = letters.iter().find(|l| l.reason.contains(text)) {
                return letter.clone();
            }
            assert!(
                Instant::now() < until,
                "no dead letter of {consumer} says {text:?}; found {:?}",
                letters.iter().map(|l| &l.reason).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes every queue of the registered consumers and the exchange. A test that fails
    /// before calling this still cleans up when its `TestBus` is dropped.
    pub async fn cleanup(mut self) {
        delete_all(&self.settings(), &self.consumer_names()).await;
        self.cleaned = true;
    }

    fn consumer_names(&self) -> Vec<String> {
        self.consumers
            .iter()
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Deletes the registered consumers' queues and the test's own exchange.
async fn delete_all(settings: &Settings, consumers: &[String]) {
    let consumers: Vec<&str> = consumers.iter().map(String::as_str).collect();
    bus::topology::delete_consumers(settings, &consumers)
        .await
        .expect("clean-up reaches the broker");
}

impl Drop for TestBus {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let settings = self.settings();
        let declared = self.consumer_names();
        // Drop cannot await, and may run inside a runtime: clean up from a thread of its own.
        let cleaner = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(delete_all(&settings, &declared));
            }
        });
        let _ = cleaner.join();
    }
}

impl Default for TestBus {
    fn default() -> Self {
        Self::new()
    }
}

/// Messages recorded since the watch started. Every message on a Fortnight topic is checked
/// against its schema in `schemas/` as it arrives, so each test that watches what the
/// consumers publish also proves that it matches the published contract.
#[derive(Debug)]
pub struct Watch {
    recording: Recording,
    prefix: String,
    seen: Vec<RecordLine>,
}

impl Watch {
    /// Starts recording `topics` (logical; the prefix is added) on the broker and exchange
    /// of `settings` (a test's private node, say).
    pub async fn start(settings: &Settings, topics: &[&str]) -> Self {
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        Self {
            recording: bus::record::subscribe(settings, &topics)
                .await
                .expect("a recording queue"),
            prefix: settings.topic_prefix.clone(),
            seen: Vec::new(),
        }
    }

    fn accept(&mut self, line: RecordLine) {
        let topic = messages::envelope::strip_prefix(&line.topic, &self.prefix);
        match schema::validate(topic, &line.body) {
            Ok(()) | Err(schema::SchemaError::UnknownTopic(_)) => {}
            Err(error) => panic!("a published message breaks its schema: {error}\n{line:?}"),
        }
        self.seen.push(line);
    }

    /// Waits until `count` messages arrived (or the deadline passed) and returns all seen.
    pub async fn wait_for(&mut self, count: usize, deadline: Duration) -> &[RecordLine] {
        let until = tokio::time::Instant::now() + deadline;
        while self.seen.len() < count {
            match tokio::time::timeout_at(until, self.recording.next()).await {
                Ok(Some(Ok(line))) => self.accept(line),
                Ok(Some(Err(error))) => panic!("recording failed: {error}"),
                Ok(None) => panic!("the recording connection closed"),
                Err(_) => break,
            }
        }
        &self.seen
    }

    /// Keeps collecting for `quiet` to catch duplicates that come late.
    pub async fn settle(&mut self, quiet: Duration) -> &[RecordLine] {
        while let Ok(Some(Ok(line))) = tokio::time::timeout(quiet, self.recording.next()).await {
            self.accept(line);
        }
        &self.seen
    }

    /// The recording's private queue.
    pub fn queue(&self) -> &str {
        self.recording.queue()
    }

    pub async fn close(self) {
        self.recording.close().await;
    }
}

/// Waits until `queue` has `consumers` consumers, so that what is published next is routed
/// to them.
pub async fn wait_consumers(queue: &str, consumers: usize, deadline: Duration) {
    let want = consumers.to_string();
    let consuming = eventually(deadline, || {
        broker::queue_info(queue, "consumers").as_deref() == Some(want.as_str())
    })
    .await;
    assert!(consuming, "{queue} never had {consumers} consumers");
}

/// A step run by the bus runtime in this process until [`Running::stop`]; dropping it shuts
/// the runtime down too.
#[derive(Debug)]
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), bus::BusError>>,
}

impl Running {
    pub fn start<S: Step>(settings: &Settings, step: S) -> Self {
        let settings = settings.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            bus::run(&settings, Arc::new(step), async move {
                let _ = stopped.await;
            })
            .await
        });
        Self { stop, task }
    }

    /// Runs `clock` on the bus runtime in this process, as its binary would.
    pub fn start_clock<C: bus::Clock>(settings: &Settings, clock: C) -> Self {
        let settings = settings.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            bus::run_clock(&settings, clock, async move {
                let _ = stopped.await;
            })
            .await
        });
        Self { stop, task }
    }

    /// Signals shutdown and checks that the runtime stopped cleanly, and in time.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the consumer stops within 60s of its shutdown signal")
            .expect("the consumer task does not panic")
            .expect("run returns Ok after shutdown");
    }
}

/// The release timer running in this process until [`RunningTimer::stop`].
#[derive(Debug)]
pub struct RunningTimer {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<Result<(), release_timer::TimerError>>,
}

impl RunningTimer {
    pub fn start(settings: Settings) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(release_timer::run(Arc::new(settings), async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Self { stop, task }
    }

    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().expect("the timer stops cleanly");
    }
}

/// Polls `condition` every 100 ms until it holds or `deadline` passes; returns whether it held.
pub async fn eventually(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The names in a directory, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Counts the lines of a file equal to each value (missing file: none).
pub fn count_lines(path: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *counts.entry(line.to_owned()).or_insert(0) += 1;
    }
    counts
}

/// A loopback address with a port nobody listens on right now.
pub fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}

/// Whether a consumer's health endpoint at `addr` answers `GET /ready` with 200.
pub fn is_ready(addr: std::net::SocketAddr) -> bool {
    http_get(addr, "/ready").is_some_and(|(status, _)| status == 200)
}

/// A plain HTTP/1.0 GET: `(status, body)`, or `None` when nothing answers.
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}
