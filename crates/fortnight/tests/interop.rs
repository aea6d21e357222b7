//! Interoperability with fedora-messaging 3.x, the Python reference client, over the real
//! RabbitMQ on 127.0.0.1:5672: messages cross in both directions, record files cross in both
//! directions, and replays (from a file and from a datagrepper served on loopback) publish
//! exactly what was recorded.
//!
//! The reference client is `$FM_BIN`, else `fedora-messaging` on PATH, else
//! `/tmp/fmvenv/bin/fedora-messaging` (`.ci/run` installs it into a virtualenv). Every test
//! declares its own exchange and queues, named with a fresh UUID, and deletes them at the end.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bus::{Outcome, Publisher, Step};
use chrono::Utc;
use messages::schema;
use messages::{
    Incoming, KarmaSubmitted, Message, Outgoing, Override, OverrideBlock, PungiComposeOstree,
    RecordLine, TreeComposed, derived_id,
};
use serde_json::{Value, json};
use settings::Settings;

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2F";
/// Long enough for a slow CI machine; every wait polls a condition and stops early.
const DEADLINE: Duration = Duration::from_secs(60);
const PREFIX: &str = "org.fedoraproject.test";

fn fm_bin() -> PathBuf {
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
fn fm_python() -> PathBuf {
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
const ADMIN_PY: &str = r#"
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

/// A fedora-messaging callback that writes what the reference client saw, properties
/// included, and stops after `FORTNIGHT_TEST_LIMIT` messages.
const CALLBACK_PY: &str = r#"
import json, os
from fedora_messaging import exceptions

seen = []

def callback(message):
    p = message._properties
    seen.append(message.id)
    with open(os.environ["FORTNIGHT_TEST_OUT"], "a") as out:
        out.write(json.dumps({
            "topic": message.topic, "id": message.id, "body": message.body,
            "severity": message.severity, "content_type": p.content_type,
            "content_encoding": p.content_encoding, "delivery_mode": p.delivery_mode,
            "message_id": p.message_id, "headers": p.headers,
        }) + "\n")
    if len(seen) >= int(os.environ["FORTNIGHT_TEST_LIMIT"]):
        raise exceptions.HaltConsumer(exit_code=0, requeue=False)
"#;

/// One test's private corner of the broker and the file system.
struct Env {
    id: String,
    exchange: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    settings: Settings,
    /// Queues to delete at the end (auto-deleted ones need not be listed).
    queues: Mutex<Vec<String>>,
}

impl Env {
    fn new() -> Self {
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
[consumers.interop-probe]
queue = "fortnight.test.{id}.probe"
retry_delays_seconds = [1]
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

    fn admin(&self, op: &str, queues: &[String]) {
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

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fedora-messaging config with one auto-deleted queue bound to `#` on the exchange.
    /// `topic_prefix` stays empty: a recorded topic already carries its prefix.
    fn fm_config(&self, name: &str) -> (PathBuf, String) {
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

    fn fm(&self, config: &Path) -> Command {
        let mut command = Command::new(fm_bin());
        command
            .env("FEDORA_MESSAGING_CONF", config)
            .arg("--conf")
            .arg(config);
        command
    }

    fn fortnight(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fortnight"));
        command
            .arg("--config")
            .arg(&self.config)
            .env("FORTNIGHT_LOG", "info");
        command
    }

    /// Waits until `queue` is bound to this test's exchange.
    fn wait_for_binding(&self, queue: &str) {
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
    fn start_record(&self, file: &Path, limit: usize) -> Recorder {
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

    async fn publisher(&self) -> Publisher {
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

struct Recorder {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Recorder {
    fn finish(mut self) {
        let status = wait_child(&mut self.child, "fortnight record");
        assert!(
            status.success(),
            "fortnight record failed: {}",
            self.log.lock().unwrap()
        );
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_child(child: &mut Child, what: &str) -> std::process::ExitStatus {
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

fn run_ok(command: &mut Command, what: &str) -> Output {
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

fn read_records(path: &Path) -> Vec<RecordLine> {
    RecordLine::parse_all(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_records(path: &Path, records: &[RecordLine]) {
    let lines: String = records
        .iter()
        .map(|r| format!("{}\n", r.to_line()))
        .collect();
    std::fs::write(path, lines).unwrap();
}

fn tree_composed(n: u32) -> TreeComposed {
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
fn record_of<M: Message>(message: &M, topic: String) -> RecordLine {
    let outgoing = Outgoing::new(uuid::Uuid::new_v4(), message);
    let body = Value::Object(outgoing.body.clone());
    schema::validate(M::TOPIC, &body).unwrap();
    RecordLine {
        body,
        headers: outgoing.headers(Utc::now()),
        id: Some(outgoing.id.to_string()),
        priority: Some(0),
        queue: None,
        topic,
    }
}

fn without_queue(mut record: RecordLine) -> RecordLine {
    record.queue = None;
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fortnight_messages_reach_fedora_messaging_with_its_properties_and_headers() {
    let env = Env::new();
    let (fm_conf, queue) = env.fm_config("consume");
    let seen = env.path("seen.jsonl");
    let callback = env.path("callback.py");
    std::fs::write(&callback, CALLBACK_PY).unwrap();
    let mut consumer = env
        .fm(&fm_conf)
        .arg("consume")
        .arg("--callback-file")
        .arg(format!("{}:callback", callback.display()))
        .env("FORTNIGHT_TEST_OUT", &seen)
        .env("FORTNIGHT_TEST_LIMIT", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    env.wait_for_binding(&queue);

    // Two recorded messages through `fortnight publish`: one without the prefix (it is
    // added), one that already carries it (it must not be added again).
    let plain = record_of(&tree_composed(1), TreeComposed::TOPIC.to_owned());
    let prefixed = record_of(
        &tree_composed(2),
        format!("{PREFIX}.{}", TreeComposed::TOPIC),
    );
    let file = env.path("publish.jsonl");
    write_records(&file, &[plain.clone(), prefixed.clone()]);
    run_ok(
        env.fortnight().arg("publish").arg(&file),
        "fortnight publish",
    );

    // And one from the runtime's publisher, about a person.
    let block = OverrideBlock(Override {
        stream: "f43".parse().unwrap(),
        version: Some("43.20261127.1".parse().unwrap()),
        reason: "rpm-ostree upgrade breaks".into(),
        operator: "alice".parse().unwrap(),
        expires: None,
    });
    let outgoing = Outgoing::new(derived_id("interop", &[&env.id]), &block);
    schema::validate(OverrideBlock::TOPIC, &Value::Object(outgoing.body.clone())).unwrap();
    let publisher = env.publisher().await;
    publisher.publish(&outgoing).await.unwrap();
    publisher.close().await;

    let status = wait_child(&mut consumer, "fedora-messaging consume");
    let mut stderr = String::new();
    consumer
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "fedora-messaging consume failed: {stderr}"
    );

    let received: Vec<Value> = std::fs::read_to_string(&seen)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(received.len(), 3);
    let by_id: BTreeMap<String, &Value> = received
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_owned(), m))
        .collect();
    for m in &received {
        assert_eq!(m["content_type"], "application/json");
        assert_eq!(m["content_encoding"], "utf-8");
        assert_eq!(m["delivery_mode"], 2);
        assert_eq!(m["message_id"], m["id"]);
    }
    let expected_topic = format!("{PREFIX}.{}", TreeComposed::TOPIC);
    for record in [&plain, &prefixed] {
        let m = by_id[record.id.as_deref().unwrap()];
        assert_eq!(
            m["topic"],
            expected_topic.as_str(),
            "prefix added exactly once"
        );
        assert_eq!(m["body"], record.body);
        let headers: BTreeMap<String, Value> =
            serde_json::from_value(m["headers"].clone()).unwrap();
        assert_eq!(headers, record.headers);
        assert_eq!(m["severity"], 20);
    }
    let m = by_id[&outgoing.id.to_string()];
    assert_eq!(
        m["topic"],
        format!("{PREFIX}.{}", OverrideBlock::TOPIC).as_str()
    );
    assert_eq!(m["body"], Value::Object(outgoing.body.clone()));
    assert_eq!(m["severity"], 30);
    let headers = m["headers"].as_object().unwrap();
    assert_eq!(headers["fedora_messaging_user_alice"], true);
    assert_eq!(headers["fedora_messaging_schema"], OverrideBlock::TOPIC);
    assert_eq!(
        headers["fedora_messaging_schema_package"],
        "fortnight_messages"
    );
    assert_eq!(headers["priority"], 0);
    let sent_at = headers["sent-at"].as_str().unwrap();
    let parsed = chrono::DateTime::parse_from_rfc3339(sent_at).unwrap();
    assert_eq!(parsed.timestamp_subsec_nanos(), 0);
    assert!(
        sent_at.ends_with("+00:00") && !sent_at.contains('.'),
        "{sent_at}"
    );
}

/// A consumer that hands every message it gets to the test.
struct Probe {
    received: tokio::sync::mpsc::UnboundedSender<Incoming>,
}

impl Step for Probe {
    const NAME: &'static str = "interop-probe";

    fn topics(&self) -> Vec<String> {
        vec![PungiComposeOstree::TOPIC.to_owned()]
    }

    async fn handle(&self, message: &Incoming) -> Outcome {
        let _ = self.received.send(message.clone());
        Outcome::Done(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedora_messaging_publish_is_handled_by_a_fortnight_consumer() {
    let env = Env::new();
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let probe = Arc::new(Probe { received: sender });
    let topology = bus::topology::Topology::new(&env.settings, Probe::NAME, &probe.topics());
    env.queues.lock().unwrap().extend(topology.queues());

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings = env.settings.clone();
    let consumer = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        bus::run(&settings, probe, shutdown).await
    });
    env.wait_for_binding(&topology.queue);

    // Fedora's own message, as `fedora-messaging record` captured it, under this test's prefix.
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/messages/record-line.pungi.compose.ostree.jsonl"),
    )
    .unwrap();
    let mut record = RecordLine::parse_all(&fixture).unwrap().remove(0);
    record.topic = format!("{PREFIX}.{}", PungiComposeOstree::TOPIC);
    record.id = Some(uuid::Uuid::new_v4().to_string());
    let file = env.path("pungi.jsonl");
    write_records(&file, std::slice::from_ref(&record));
    let (fm_conf, _) = env.fm_config("publish");
    run_ok(
        env.fm(&fm_conf).arg("publish").arg(&file),
        "fedora-messaging publish",
    );

    let message = tokio::time::timeout(DEADLINE, received.recv())
        .await
        .expect("the consumer got no message")
        .unwrap();
    assert_eq!(message.id, record.id);
    assert_eq!(message.topic, PungiComposeOstree::TOPIC);
    assert_eq!(message.routing_key, record.topic);
    assert_eq!(message.schema(), "base.message");
    assert_eq!(message.severity(), messages::Severity::Info);
    let body: PungiComposeOstree = message.parse().unwrap();
    assert_eq!(body.ostree_ref, "fedora/28/x86_64/atomic-host");
    assert_eq!(Value::Object(message.body.clone()), record.body);

    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, consumer)
        .await
        .expect("the consumer did not stop")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_files_cross_between_fortnight_and_fedora_messaging() {
    let env = Env::new();

    // 1. `fortnight record` captures what Fortnight publishes.
    let first = env.path("fortnight-1.jsonl");
    let recorder = env.start_record(&first, 2);
    let vote = KarmaSubmitted {
        stream: "f43".parse().unwrap(),
        version: "43.20261127.3".parse().unwrap(),
        user: "bob".parse().unwrap(),
        karma: 1,
        comment: Some("boots, upgrades, rolls back".into()),
    };
    let publisher = env.publisher().await;
    for message in [
        Outgoing::new(uuid::Uuid::new_v4(), &tree_composed(3)),
        Outgoing::new(uuid::Uuid::new_v4(), &vote),
    ] {
        schema::validate(&message.topic, &Value::Object(message.body.clone())).unwrap();
        publisher.publish(&message).await.unwrap();
    }
    publisher.close().await;
    recorder.finish();
    let recorded = read_records(&first);
    assert_eq!(recorded.len(), 2);

    // 2. `fedora-messaging publish` replays that file; `fedora-messaging record` captures it.
    let (fm_conf, queue) = env.fm_config("record");
    let second = env.path("fedora-messaging.jsonl");
    let mut fm_record = env
        .fm(&fm_conf)
        .args(["record", "--limit", "2"])
        .arg(&second)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    env.wait_for_binding(&queue);
    run_ok(
        env.fm(&fm_conf).arg("publish").arg(&first),
        "fedora-messaging publish",
    );
    let status = wait_child(&mut fm_record, "fedora-messaging record");
    assert!(status.success(), "fedora-messaging record exited {status}");
    let replayed = read_records(&second);
    assert_eq!(replayed.len(), 2);
    for (ours, theirs) in recorded.iter().zip(&replayed) {
        assert_eq!(theirs.id, ours.id);
        assert_eq!(
            theirs.topic, ours.topic,
            "fedora-messaging kept the recorded prefix"
        );
        assert_eq!(theirs.body, ours.body);
        // Without Fortnight's schema package installed the reference client re-labels the
        // schema (and its package) as base.message; every other header survives.
        let strip = |h: &BTreeMap<String, Value>| {
            let mut h = h.clone();
            h.remove("fedora_messaging_schema");
            h.remove("fedora_messaging_schema_package");
            h
        };
        assert_eq!(strip(&theirs.headers), strip(&ours.headers));
        assert_eq!(theirs.headers["fedora_messaging_schema"], "base.message");
    }

    // 3. And back: `fortnight publish` takes fedora-messaging's file, unchanged.
    let third = env.path("fortnight-2.jsonl");
    let recorder = env.start_record(&third, 2);
    run_ok(
        env.fortnight().arg("publish").arg(&second),
        "fortnight publish",
    );
    recorder.finish();
    let back = read_records(&third);
    let expected: Vec<RecordLine> = replayed.into_iter().map(without_queue).collect();
    let back: Vec<RecordLine> = back.into_iter().map(without_queue).collect();
    assert_eq!(back, expected);
}

/// A datagrepper stand-in on loopback: answers `/v2/id?id=<id>&is_raw=true` for the
/// messages it holds, 404 for anything else, and remembers every request line.
struct Datagrepper {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Datagrepper {
    fn serve(messages: Vec<RecordLine>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let requests = requests.clone();
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    stream.set_nonblocking(false).unwrap();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut request_line = String::new();
                    reader.read_line(&mut request_line).unwrap();
                    // Skip the headers: the request has no body.
                    let mut line = String::new();
                    while reader.read_line(&mut line).unwrap_or(0) > 2 {
                        line.clear();
                    }
                    let target = request_line
                        .split(' ')
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    requests.lock().unwrap().push(target.clone());
                    let found = messages.iter().find(|m| {
                        let id = m.id.as_deref().unwrap_or_default();
                        target == format!("/v2/id?id={id}&is_raw=true")
                    });
                    let (status, body) = match found {
                        Some(message) => ("200 OK", serde_json::to_string(message).unwrap()),
                        None => ("404 NOT FOUND", r#"{"error": "not found"}"#.to_owned()),
                    };
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            }
        });
        Self {
            url,
            requests,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Datagrepper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_the_recorded_message_from_a_file_or_datagrepper() {
    let env = Env::new();
    let topic = format!("{PREFIX}.{}", TreeComposed::TOPIC);
    let a = record_of(&tree_composed(4), topic.clone());
    let b = record_of(&tree_composed(5), topic.clone());
    let file = env.path("two.jsonl");
    write_records(&file, &[a.clone(), b.clone()]);

    // From a file, choosing one message by id; the recorded prefix is not added again.
    let out = env.path("replayed-file.jsonl");
    let recorder = env.start_record(&out, 1);
    let b_id = b.id.clone().unwrap();
    run_ok(
        env.fortnight()
            .args(["replay", "--file"])
            .arg(&file)
            .args(["--id", &b_id]),
        "fortnight replay --file",
    );
    recorder.finish();
    let got = without_queue(read_records(&out).remove(0));
    assert_eq!(got, b);

    // A file with two messages and no --id is refused, naming the way out.
    let output = env
        .fortnight()
        .args(["replay", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("--id"),
        "{}",
        text(&output.stderr)
    );

    // From datagrepper.
    let server = Datagrepper::serve(vec![a.clone()]);
    let out = env.path("replayed-datagrepper.jsonl");
    let recorder = env.start_record(&out, 1);
    let a_id = a.id.clone().unwrap();
    run_ok(
        env.fortnight()
            .args(["replay", "--datagrepper", &server.url, &a_id]),
        "fortnight replay --datagrepper",
    );
    recorder.finish();
    let got = without_queue(read_records(&out).remove(0));
    assert_eq!(got, a);
    assert_eq!(
        server.requests.lock().unwrap().as_slice(),
        [format!("/v2/id?id={a_id}&is_raw=true")]
    );

    // An id datagrepper does not know fails with its status.
    let output = env
        .fortnight()
        .args(["replay", "--datagrepper", &server.url, "no-such-id"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("404"),
        "{}",
        text(&output.stderr)
    );
}
