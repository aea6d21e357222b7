//! What the CLI's tests against the real broker share: a private exchange and config per
//! test, the reference client, `fortnight record` as a child process, polling waits.
//!
//! Every test declares its own exchange and queues, named with a fresh UUID, and deletes them
//! when its `Env` is dropped.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bus::{Publisher, Step};
use chrono::Utc;
use messages::{Message, Outgoing, RecordLine, TreeComposed};
use serde_json::{Value, json};
use settings::Settings;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2F";
/// Long enough for a slow CI machine; every wait polls a condition and stops early.
pub const DEADLINE: Duration = Duration::from_secs(60);
pub const PREFIX: &str = "org.fedoraproject.test";

pub fn fm_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FM_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("fedora-messaging"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/tmp/fmvenv/bin/fedora-messaging"))
}

/// The Python that runs the reference client (its venv's, so pika is importable).
pub fn fm_python() -> PathBuf {
    let bin = fm_bin();
    let sibling = bin.with_file_name("python");
    if sibling.is_file() {
        sibling
    } else {
        PathBuf::from("python3")
    }
}

/// Declares or deletes broker objects with pika, the reference client's own AMQP library,
/// so a test can set up an exchange before any client binds to it.
pub const ADMIN_PY: &str = r#"
import sys, pika
op, url, exchange, *queues = sys.argv[1:]
connection = pika.BlockingConnection(pika.URLParameters(url))
for queue in queues:
    connection.channel().queue_delete(queue)
if op == "declare":
    connection.channel().exchange_declare(exchange, exchange_type="topic", durable=True)
else:
    connection.channel().exchange_delete(exchange)
connection.close()
"#;

/// One test's private corner of the broker and the file system.
pub struct Env {
    pub id: String,
    pub exchange: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub settings: Settings,
    /// Queues to delete at the end (auto-deleted ones need not be listed).
    pub queues: Mutex<Vec<String>>,
}

impl Env {
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let exchange = format!("fortnight.test.{id}");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("fortnight.toml");
        std::fs::write(
            &config,
            format!(
                r#"
amqp_url = "{AMQP_URL}"
publish_exchange = "{exchange}"
topic_prefix = "{PREFIX}"
[store]
root = "{root}"
[consumers.test-probe]
queue = "fortnight.test.{id}.probe"
retry_delays_seconds = [1]
max_attempts = 2
[streams.f43]
arches = ["x86_64"]
input_refs = {{ x86_64 = "fedora/43/x86_64/updates/atomic-host" }}
ostree_repo = "{root}/repo"
formats = ["qcow2"]
"#,
                root = dir.path().display()
            ),
        )
        .unwrap();
        let settings = Settings::from_toml(&std::fs::read_to_string(&config).unwrap()).unwrap();
        let env = Self {
            id,
            exchange,
            dir,
            config,
            settings,
            queues: Mutex::new(Vec::new()),
        };
        env.admin("declare", &[]);
        env
    }

    pub fn admin(&self, op: &str, queues: &[String]) {
        let output = Command::new(fm_python())
            .args(["-c", ADMIN_PY, op, AMQP_URL, &self.exchange])
            .args(queues)
            .output()
            .expect("run the reference client's python");
        assert!(
            output.status.success(),
            "pika {op} failed: {}",
            text(&output.stderr)
        );
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fedora-messaging config with one auto-deleted queue bound to `#` on the exchange.
    /// `topic_prefix` stays empty: a recorded topic already carries its prefix.
    pub fn fm_config(&self, name: &str) -> (PathBuf, String) {
        let queue = format!("fortnight.test.{}.{name}", self.id);
        let path = self.path(&format!("{name}.fm.toml"));
        std::fs::write(
            &path,
            format!(
                r##"
amqp_url = "{AMQP_URL}"
publish_exchange = "{exchange}"
topic_prefix = ""
passive_declares = false
[client_properties]
app = "fortnight-interop-{name}"
[exchanges."{exchange}"]
type = "topic"
durable = true
auto_delete = false
arguments = {{}}
[queues."{queue}"]
durable = false
auto_delete = true
exclusive = false
arguments = {{}}
[[bindings]]
queue = "{queue}"
exchange = "{exchange}"
routing_keys = ["#"]
[qos]
prefetch_size = 0
prefetch_count = 10
"##,
                exchange = self.exchange
            ),
        )
        .unwrap();
        self.queues.lock().unwrap().push(queue.clone());
        (path, queue)
    }

    pub fn fm(&self, config: &Path) -> Command {
        let mut command = Command::new(fm_bin());
        command
            .env("FEDORA_MESSAGING_CONF", config)
            .arg("--conf")
            .arg(config);
        command
    }

    pub fn fortnight(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fortnight"));
        command
            .arg("--config")
            .arg(&self.config)
            .env("FORTNIGHT_LOG", "info");
        command
    }

    /// Waits until `queue` is bound to this test's exchange.
    pub fn wait_for_binding(&self, queue: &str) {
        wait_until("the queue to be bound", || {
            let output = Command::new("rabbitmqctl")
                .args(["-q", "list_bindings", "source_name", "destination_name"])
                .output()
                .expect("run rabbitmqctl");
            text(&output.stdout).lines().any(|line| {
                let mut fields = line.split('\t');
                fields.next() == Some(&self.exchange) && fields.next() == Some(queue)
            })
        });
    }

    /// Starts `fortnight record FILE --limit N` and waits until it is subscribed.
    pub fn start_record(&self, file: &Path, limit: usize) -> Recorder {
        let mut child = self
            .fortnight()
            .args(["record", "--limit", &limit.to_string()])
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, seen) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let collected = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                collected.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match seen.recv_timeout(left) {
                Ok(line) if line.contains("recording started") => break,
                Ok(_) => {}
                Err(_) => panic!("fortnight record did not start: {}", log.lock().unwrap()),
            }
        }
        Recorder { child, log }
    }

    /// Runs `step` with the bus runtime until [`Running::stop`], once its queue is bound.
    pub fn start_consumer<S: Step>(&self, step: S) -> Running {
        let topology = bus::topology::Topology::new(&self.settings, S::NAME, &step.topics());
        self.queues.lock().unwrap().extend(topology.queues());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let settings = self.settings.clone();
        let handle = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            bus::run(&settings, Arc::new(step), shutdown).await
        });
        self.wait_for_binding(&topology.queue);
        Running { stop, handle }
    }

    pub async fn publisher(&self) -> Publisher {
        Publisher::connect(&self.settings, "fortnight-interop-test")
            .await
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let queues = self.queues.lock().map(|q| q.clone()).unwrap_or_default();
        self.admin("delete", &queues);
    }
}

/// A consumer started by [`Env::start_consumer`].
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), bus::BusError>>,
}

impl Running {
    /// Signals shutdown and checks that the runtime stopped cleanly.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(DEADLINE, self.handle)
            .await
            .expect("the consumer did not stop")
            .expect("the consumer task panicked")
            .expect("the consumer stopped with an error");
    }
}

pub struct Recorder {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Recorder {
    pub fn finish(mut self) {
        let status = wait_child(&mut self.child, "fortnight record");
        assert!(
            status.success(),
            "fortnight record failed: {}",
            self.log.lock().unwrap()
        );
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn wait_child(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn run_ok(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

pub fn read_records(path: &Path) -> Vec<RecordLine> {
    RecordLine::parse_all(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn write_records(path: &Path, records: &[RecordLine]) {
    let lines: String = records
        .iter()
        .map(|r| format!("{}\n", r.to_line()))
        .collect();
    std::fs::write(path, lines).unwrap();
}

pub fn tree_composed(n: u32) -> TreeComposed {
    serde_json::from_value(json!({
        "arch": "x86_64",
        "tree": {
            "ref": "fedora/43/x86_64/updates/atomic-host",
            "commit": format!("{n:064x}"),
            "repo": "/srv/fortnight/ostree/repo"
        },
        "version": format!("43.20261127.{n}")
    }))
    .unwrap()
}

/// A record line for a typed message, validated against its checked-in schema.
pub fn record_of<M: Message>(message: &M, topic: String) -> RecordLine {
    let outgoing = Outgoing::new(uuid::Uuid::new_v4(), message);
    outgoing.validate().unwrap();
    let body = Value::Object(outgoing.body.clone());
    RecordLine {
        body,
        headers: outgoing.headers(Utc::now()),
        id: Some(outgoing.id.to_string()),
        priority: Some(0),
        queue: None,
        topic,
    }
}

pub fn without_queue(mut record: RecordLine) -> RecordLine {
    record.queue = None;
    record
}
