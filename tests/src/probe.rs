//! A consumer whose work can be counted: each message names a key, the step records that it
//! ran, optionally sleeps, and makes its effect (a marker file per key) idempotently. Tests
//! run it in-process or as the `probe-consumer` binary to kill it mid-step.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bus::{Outputs, Step, StepError};
use messages::{Outgoing, Severity, Stream, derived_id};
use serde::Deserialize;
use serde_json::{Map, Value};
use settings::Settings;

use crate::{Running, TestBus};

/// What the probe consumes.
pub const RUN_TOPIC: &str = "fortnight.probe.run";
/// What the probe publishes when done; its id is derived from the key.
pub const DONE_TOPIC: &str = "fortnight.probe.done";

/// The probe's order, as strict as a real step's body type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Order {
    key: String,
    stream: Stream,
    #[serde(default)]
    sleep_ms: u64,
    /// Return `Retry` instead of working.
    #[serde(default)]
    fail: bool,
}

/// The probe step. Files in `dir`: `runs` (one line per time the step started, with the
/// key), `effects/<key>` (the effect, made once).
#[derive(Debug)]
pub struct Probe {
    dir: PathBuf,
    settings: Arc<Settings>,
    long_running: bool,
}

impl Probe {
    pub fn new(dir: &Path, settings: Arc<Settings>, long_running: bool) -> Self {
        Self {
            dir: dir.to_owned(),
            settings,
            long_running,
        }
    }

    /// Where the probe on a test's bus keeps its files.
    pub fn dir_of(bus: &TestBus) -> PathBuf {
        bus.dir.path().join("probe")
    }

    /// Runs the probe on `bus` in this process, with the bus's settings or ones the test
    /// changed, until stopped or dropped.
    pub fn run(bus: &TestBus, settings: Settings, long_running: bool) -> Running {
        let step = Self::new(&Self::dir_of(bus), Arc::new(settings.clone()), long_running);
        Running::start(&settings, step)
    }

    /// Configured from `PROBE_DIR` and `PROBE_LONG_RUNNING=1`.
    pub fn from_env(settings: Arc<Settings>) -> Result<Self, String> {
        let dir = std::env::var_os("PROBE_DIR")
            .ok_or("PROBE_DIR must name the directory for the probe's files")?;
        let long = std::env::var("PROBE_LONG_RUNNING").is_ok_and(|v| v == "1");
        Ok(Self::new(Path::new(&dir), settings, long))
    }

    /// The order for `key`, as a body to publish on [`RUN_TOPIC`].
    pub fn order(key: &str, sleep: Duration) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("key".into(), Value::from(key));
        body.insert("stream".into(), Value::from("f43"));
        body.insert("sleep_ms".into(), Value::from(sleep.as_millis() as u64));
        body
    }

    /// The order as a message.
    pub fn message(key: &str, sleep: Duration) -> Outgoing {
        probe_message(uuid::Uuid::new_v4(), RUN_TOPIC, Self::order(key, sleep))
    }

    /// The id the probe's done message carries for `key`.
    pub fn done_id(key: &str) -> String {
        derived_id("probe", &[key]).to_string()
    }

    /// How many times the step started per key.
    pub fn runs(dir: &Path) -> std::collections::BTreeMap<String, usize> {
        crate::count_lines(&dir.join("runs"))
    }

    /// Who sent each run, in order: the `user_id` the step saw (`-` for none), per key.
    pub fn senders(dir: &Path, key: &str) -> Vec<String> {
        std::fs::read_to_string(dir.join("senders"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(' '))
            .filter(|(k, _)| *k == key)
            .map(|(_, user)| user.to_owned())
            .collect()
    }

    /// Whether the effect for `key` exists.
    pub fn effect_done(dir: &Path, key: &str) -> bool {
        dir.join("effects").join(key).exists()
    }

    fn effect(&self, key: &str) -> std::io::Result<()> {
        let effects = self.dir.join("effects");
        std::fs::create_dir_all(&effects)?;
        // create_new makes the effect happen at most once however often the step runs.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(effects.join(key))
        {
            Ok(mut file) => file.write_all(key.as_bytes()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn record_run(&self, key: &str, sender: Option<&str>) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let append = |name: &str, line: String| {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.dir.join(name))?
                .write_all(line.as_bytes())
        };
        append("senders", format!("{key} {}\n", sender.unwrap_or("-")))?;
        append("runs", format!("{key}\n"))
    }
}

fn safe_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Step for Probe {
    const NAME: &'static str = "probe";
    type Input = ();

    fn topics(_: &settings::BusSettings) -> Vec<String> {
        vec![RUN_TOPIC.to_owned()]
    }

    fn long_running(&self) -> bool {
        self.long_running
    }

    async fn handle(&self, _: (), message: &messages::Incoming) -> Result<Outputs, StepError> {
        let order: Order = match serde_json::from_value(Value::Object(message.body.clone())) {
            Ok(order) => order,
            Err(error) => {
                return Err(StepError::permanent(format!(
                    "body does not match the probe schema: {error}"
                )));
            }
        };
        if self.settings.stream(&order.stream).is_none() {
            return Err(StepError::permanent(format!(
                "unknown stream `{}`",
                order.stream
            )));
        }
        if !safe_key(&order.key) {
            return Err(StepError::permanent(format!(
                "key {:?} is not a safe file name",
                order.key
            )));
        }
        if let Err(error) = self.record_run(&order.key, message.user_id.as_deref()) {
            return Err(StepError::retryable(format!(
                "cannot record the run: {error}"
            )));
        }
        if order.fail {
            return Err(StepError::retryable("the order asks to fail"));
        }
        tokio::time::sleep(Duration::from_millis(order.sleep_ms)).await;
        if let Err(error) = self.effect(&order.key) {
            return Err(StepError::retryable(format!(
                "cannot make the effect: {error}"
            )));
        }
        let mut body = Map::new();
        body.insert("key".into(), Value::from(order.key.clone()));
        Ok(vec![probe_message(
            derived_id("probe", &[&order.key]),
            DONE_TOPIC,
            body,
        )])
    }
}

/// A message of a topic with no body type (the probe's, a benchmark's or test's own): the
/// envelope is filled in with fedora-messaging's defaults.
pub fn probe_message(id: uuid::Uuid, topic: &str, body: Map<String, Value>) -> Outgoing {
    Outgoing {
        id,
        topic: topic.to_owned(),
        body,
        schema: topic.to_owned(),
        severity: Severity::Info,
        priority: 0,
        users: Vec::new(),
    }
}

/// A `probe-consumer` process.
#[derive(Debug)]
pub struct ProbeProcess {
    pub child: Child,
    pub health: std::net::SocketAddr,
}

impl ProbeProcess {
    /// Starts `binary` with `config` and waits until it reports ready on its health address
    /// (`consumers.probe.health_addr` in the config, see [`crate::free_port`]).
    pub async fn start(
        binary: &Path,
        config: &Path,
        dir: &Path,
        long_running: bool,
        health: std::net::SocketAddr,
    ) -> Self {
        Self::start_logging(binary, config, dir, long_running, health, Stdio::inherit()).await
    }

    /// [`ProbeProcess::start`] with the process's log (its stderr) going to `log`.
    pub async fn start_logging(
        binary: &Path,
        config: &Path,
        dir: &Path,
        long_running: bool,
        health: std::net::SocketAddr,
        log: impl Into<Stdio>,
    ) -> Self {
        let child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .env("PROBE_DIR", dir)
            .env("PROBE_LONG_RUNNING", if long_running { "1" } else { "0" })
            .env("FORTNIGHT_LOG", "info")
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("probe-consumer starts");
        let process = Self { child, health };
        assert!(
            crate::eventually(Duration::from_secs(20), || process.ready()).await,
            "probe-consumer did not become ready on {health}"
        );
        process
    }

    /// `GET /ready` answered 200.
    pub fn ready(&self) -> bool {
        crate::is_ready(self.health)
    }

    /// Sends a signal by pid (the process is ours).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `deadline`.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ProbeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
