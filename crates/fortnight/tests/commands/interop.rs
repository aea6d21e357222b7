//! Interoperability with fedora-messaging 3.x, the Python reference client, over the real
//! RabbitMQ on 127.0.0.1:5672: messages cross in both directions, record files cross in both
//! directions, and replays (from a file and from a datagrepper served on loopback) publish
//! exactly what was recorded.
//!
//! The reference client is `$FM_BIN`, else `fedora-messaging` on PATH, else
//! `/tmp/fmvenv/bin/fedora-messaging` (`.ci/run` installs it into a virtualenv).

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Outputs, Step, StepError};
use messages::{
    Incoming, KarmaSubmitted, Message, Outgoing, Override, OverrideBlock, PungiComposeOstree,
    RecordLine, SignArtifact, SignCommit, SignFinished, SignRequested, SignStatus, TreeComposed,
    derived_id,
};
use serde_json::{Value, json};

use common::*;
use tests::records::{read_records, record_of, tree_composed, without_queue, write_records};

/// A fedora-messaging callback that writes what the reference client saw, properties
/// included, and what its message class (from Fortnight's schema package) says about it,
/// validates each body with Python's jsonschema against the checked-in
/// `schemas/<topic>.json`, and stops after `FORTNIGHT_TEST_LIMIT` messages.
const CALLBACK_PY: &str = r#"
import json, os
import jsonschema
from fedora_messaging import exceptions

seen = []

def schema_errors(message):
    topic = message.topic.removeprefix(os.environ["FORTNIGHT_TEST_PREFIX"] + ".")
    path = os.path.join(os.environ["FORTNIGHT_TEST_SCHEMAS"], topic + ".json")
    with open(path) as f:
        validator = jsonschema.Draft7Validator(json.load(f))
    return [e.message for e in validator.iter_errors(message.body)]

def callback(message):
    p = message._properties
    seen.append(message.id)
    with open(os.environ["FORTNIGHT_TEST_OUT"], "a") as out:
        out.write(json.dumps({
            "topic": message.topic, "id": message.id, "body": message.body,
            "severity": message.severity, "content_type": p.content_type,
            "content_encoding": p.content_encoding, "delivery_mode": p.delivery_mode,
            "message_id": p.message_id, "headers": p.headers,
            "schema_errors": schema_errors(message),
            "class": type(message).__name__, "class_severity": type(message).severity,
            "summary": message.summary, "text": str(message), "app_name": message.app_name,
            "agent_name": message.agent_name, "usernames": message.usernames,
            "url": message.url,
        }) + "\n")
    if len(seen) >= int(os.environ["FORTNIGHT_TEST_LIMIT"]):
        raise exceptions.HaltConsumer(exit_code=0, requeue=False)
"#;

/// `fedora-messaging consume` on the test's exchange with [`CALLBACK_PY`], bound and waiting
/// for `limit` messages.
pub struct FmConsumer {
    child: std::process::Child,
    seen: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl FmConsumer {
    pub fn start(env: &Env, limit: usize) -> Self {
        let (fm_conf, queue) = env.fm_config("consume");
        let seen = env.path("seen.jsonl");
        let callback = env.path("callback.py");
        std::fs::write(&callback, CALLBACK_PY).unwrap();
        // fedora-messaging logs to standard output; a file never fills up like a pipe.
        let log = env.path("consume.log");
        let output = std::fs::File::create(&log).unwrap();
        let child = fm(&fm_conf)
            .arg("consume")
            .arg("--callback-file")
            .arg(format!("{}:callback", callback.display()))
            .env("FORTNIGHT_TEST_OUT", &seen)
            .env("FORTNIGHT_TEST_LIMIT", limit.to_string())
            .env("FORTNIGHT_TEST_PREFIX", PREFIX)
            .env(
                "FORTNIGHT_TEST_SCHEMAS",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas"),
            )
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap();
        env.wait_for_binding(&queue);
        Self { child, seen, log }
    }

    /// Waits for the consumer to stop after its `limit`; returns what it saw, in order, and
    /// its log.
    pub fn finish(mut self) -> (Vec<Value>, String) {
        let status = wait_child(&mut self.child, "fedora-messaging consume");
        let log = std::fs::read_to_string(&self.log).unwrap();
        assert!(status.success(), "fedora-messaging consume failed: {log}");
        let received = std::fs::read_to_string(&self.seen)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        (received, log)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fortnight_messages_reach_fedora_messaging_with_its_properties_and_headers() {
    let env = Env::new();
    let consumer = FmConsumer::start(&env, 3);

    // Two recorded messages through `fortnight publish`: one without the prefix (it is
    // added), one that already carries it (it must not be added again).
    let plain = record_of(&tree_composed(1), TreeComposed::TOPIC.to_owned());
    let prefixed = record_of(
        &tree_composed(2),
        format!("{PREFIX}.{}", TreeComposed::TOPIC),
    );
    // A file with a bad line publishes nothing, not even the good lines before it (were
    // this one sent, the consumer below would see an id it does not expect).
    let bad = env.path("bad.jsonl");
    let early = record_of(&tree_composed(9), TreeComposed::TOPIC.to_owned());
    std::fs::write(&bad, format!("{}\n{{\"topic\": \"x\"}}\n", early.to_line())).unwrap();
    let output = env.fortnight().arg("publish").arg(&bad).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("line 2"),
        "{}",
        text(&output.stderr)
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
    tests::schema::assert_valid(&outgoing);
    let publisher = env.publisher().await;
    publisher.publish(&outgoing).await.unwrap();
    publisher.close().await;

    let (received, _) = consumer.finish();
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
        assert_eq!(
            m["schema_errors"],
            json!([]),
            "Python's jsonschema accepts the body"
        );
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

/// fedora-messaging warns of a misbehaving publisher when a message lacks its headers; what
/// `fortnight publish` sends from a hand-written line carries them, and a recorded line keeps
/// its own.
#[test]
fn fortnight_publish_gives_a_bare_line_the_headers_fedora_messaging_expects() {
    let env = Env::new();
    let consumer = FmConsumer::start(&env, 2);
    let bare = crate::bus_config::bare_line(TreeComposed::TOPIC);
    let mut full = record_of(&tree_composed(7), TreeComposed::TOPIC.to_owned());
    full.headers
        .insert("fedora_messaging_severity".into(), Value::from(30));
    let file = env.path("publish.jsonl");
    write_records(&file, &[bare.clone(), full.clone()]);
    run_ok(
        env.fortnight().arg("publish").arg(&file),
        "fortnight publish",
    );
    let (received, log) = consumer.finish();
    assert!(!log.contains("misbehaving"), "{log}");
    let by_id: BTreeMap<&str, &Value> = received
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m))
        .collect();
    let m = by_id[bare.id.as_deref().unwrap()];
    assert_eq!(
        m["class"], "Message",
        "base.message is fedora-messaging's own class"
    );
    assert_eq!(m["severity"], 20);
    let headers = serde_json::from_value(m["headers"].clone()).unwrap();
    crate::bus_config::assert_publish_defaults(&RecordLine {
        headers,
        ..bare.clone()
    });
    let m = by_id[full.id.as_deref().unwrap()];
    let headers: BTreeMap<String, Value> = serde_json::from_value(m["headers"].clone()).unwrap();
    assert_eq!(headers, full.headers, "a line's own headers are kept");
    assert_eq!(m["severity"], 30);
}

/// A consumer that hands every message it gets to the test.
struct Probe {
    received: tokio::sync::mpsc::UnboundedSender<Incoming>,
}

impl Step for Probe {
    const NAME: &'static str = "test-probe";
    type Input = ();

    fn topics(_: &settings::BusSettings) -> Vec<String> {
        vec![PungiComposeOstree::TOPIC.to_owned()]
    }

    async fn handle(&self, _: (), message: &Incoming) -> Result<Outputs, StepError> {
        let _ = self.received.send(message.clone());
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedora_messaging_publish_is_handled_by_a_fortnight_consumer() {
    let env = Env::new();
    let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
    let consumer = env.start_consumer(Probe { received: sender });

    // Fedora's own message, as `fedora-messaging record` captured it, under this test's prefix.
    let fixture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/messages/record-line.pungi.compose.ostree.jsonl"),
    )
    .unwrap();
    let mut record = RecordLine::parse_all(&fixture).unwrap().remove(0);
    record.topic = format!("{PREFIX}.{}", PungiComposeOstree::TOPIC);
    record.id = Some(uuid::Uuid::new_v4().to_string());
    // pungi sends this topic with priority 3; a warning severity makes the header's value
    // distinguishable from the default a missing header would give.
    record.priority = Some(3);
    record
        .headers
        .insert("fedora_messaging_severity".into(), Value::from(30));
    let file = env.path("pungi.jsonl");
    write_records(&file, std::slice::from_ref(&record));
    let (fm_conf, _) = env.fm_config("publish");
    run_ok(
        fm(&fm_conf).arg("publish").arg(&file),
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
    // pika sends these as AMQP integers of its choosing; they arrive as the numbers sent.
    assert_eq!(message.severity(), messages::Severity::Warning);
    assert_eq!(message.priority(), 3);
    let body: PungiComposeOstree = message.parse().unwrap();
    assert_eq!(body.ostree_ref, "fedora/28/x86_64/atomic-host");
    assert_eq!(Value::Object(message.body.clone()), record.body);

    consumer.stop().await;
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
        tests::schema::assert_valid(&message);
        publisher.publish(&message).await.unwrap();
    }
    publisher.close().await;
    recorder.finish();
    let recorded = read_records(&first);
    assert_eq!(recorded.len(), 2);

    // 2. `fedora-messaging publish` replays that file; `fedora-messaging record` captures it.
    let (fm_conf, queue) = env.fm_config("record");
    let second = env.path("fedora-messaging.jsonl");
    let mut fm_record = fm(&fm_conf)
        .args(["record", "--limit", "2"])
        .arg(&second)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    env.wait_for_binding(&queue);
    run_ok(
        fm(&fm_conf).arg("publish").arg(&first),
        "fedora-messaging publish",
    );
    let status = wait_child(&mut fm_record, "fedora-messaging record");
    assert!(status.success(), "fedora-messaging record exited {status}");
    let replayed = read_records(&second);
    assert_eq!(replayed.len(), 2);
    // Fortnight writes the very bytes fedora-messaging wrote for the same message.
    let written = std::fs::read_to_string(&second).unwrap();
    for (line, record) in written.lines().zip(&replayed) {
        assert_eq!(record.to_line(), line);
    }
    for (ours, theirs) in recorded.iter().zip(&replayed) {
        assert_eq!(theirs.id, ours.id);
        assert_eq!(
            theirs.topic, ours.topic,
            "fedora-messaging kept the recorded prefix"
        );
        assert_eq!(theirs.body, ours.body);
        // With Fortnight's schema package the reference client knows the schema names, so
        // every header survives (without it, it re-labels them base.message).
        assert_eq!(theirs.headers, ours.headers);
    }

    // 3. And back: `fortnight publish` takes fedora-messaging's file, unchanged (from standard
    // input this time).
    let third = env.path("fortnight-2.jsonl");
    let recorder = env.start_record(&third, 2);
    run_ok(
        env.fortnight()
            .args(["publish", "-"])
            .stdin(std::fs::File::open(&second).unwrap()),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_a_topic_without_the_prefix_fails_naming_it() {
    let env = Env::new();
    // What the consumers bind: the topic with the configured prefix.
    let mut bound = bus::record::subscribe(&env.settings, &[TreeComposed::TOPIC.to_owned()])
        .await
        .unwrap();

    let bare = record_of(&tree_composed(6), TreeComposed::TOPIC.to_owned());
    let file = env.path("bare.jsonl");
    write_records(&file, std::slice::from_ref(&bare));
    let output = env
        .fortnight()
        .args(["replay", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("with topic {}", TreeComposed::TOPIC))
            && stderr.contains(&format!("`{PREFIX}.{}`", TreeComposed::TOPIC)),
        "names the topic and the prefixed one: {stderr}"
    );

    let prefixed = record_of(
        &tree_composed(6),
        format!("{PREFIX}.{}", TreeComposed::TOPIC),
    );
    write_records(&file, std::slice::from_ref(&prefixed));
    run_ok(
        env.fortnight().args(["replay", "--file"]).arg(&file),
        "fortnight replay --file",
    );
    let got = tokio::time::timeout(DEADLINE, bound.next())
        .await
        .expect("the replayed message arrives")
        .unwrap()
        .unwrap();
    assert_eq!(got.id, prefixed.id);
    bound.close().await;
}

/// The signing protocol in robosignatory's shape: Fortnight's request reaches
/// fedora-messaging (priority 4, valid under `schemas/`), and a reply published with
/// fedora-messaging, as robosignatory would send it, reaches Fortnight as a typed body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_request_and_reply_round_trip_through_fedora_messaging() {
    let env = Env::new();
    let consumer = FmConsumer::start(&env, 2);

    let commit = "d428d3ad8ae8ec0d9c1bc6f9e3a8b1f4b2e7c1d0a9f8e7d6c5b4a39281706f5e";
    let request = SignRequested {
        request_id: uuid::Uuid::new_v4(),
        stream: "f43".parse().unwrap(),
        version: "43.20261127.0".parse().unwrap(),
        build_id: "f43-43.20261127.0".into(),
        artifacts: vec![SignArtifact::new(
            "f43/releases/43.20261127.0/x86_64/CHECKSUM".into(),
            &commit.parse().unwrap(),
        )],
        commits: vec![SignCommit {
            arch: "x86_64".parse().unwrap(),
            ostree_ref: "fedora/43/x86_64/atomic-host".parse().unwrap(),
            commit: commit.parse().unwrap(),
        }],
    };
    let sent = Outgoing::new(uuid::Uuid::new_v4(), &request);
    let publisher = env.publisher().await;
    publisher.publish(&sent).await.unwrap();
    publisher.close().await;

    // The reply, as robosignatory publishes it with fedora-messaging.
    let recorded = env.path("finished.jsonl");
    let recorder = env.start_record(&recorded, 1);
    let reply = SignFinished {
        request: request.clone(),
        status: SignStatus::Failure,
        failure_message: Some("no key for major version \"43\"".into()),
    };
    let file = env.path("reply.jsonl");
    write_records(
        &file,
        &[record_of(
            &reply,
            format!("{PREFIX}.{}", SignFinished::TOPIC),
        )],
    );
    let (publish_conf, _) = env.fm_config("publish-reply");
    run_ok(
        fm(&publish_conf).arg("publish").arg(&file),
        "fedora-messaging publish",
    );
    recorder.finish();
    let received = read_records(&recorded);
    assert_eq!(received.len(), 1);
    let parsed: SignFinished = serde_json::from_value(received[0].body.clone()).unwrap();
    assert_eq!(parsed, reply, "the reply reaches Fortnight as sent");

    let (seen, _) = consumer.finish();
    assert_eq!(seen.len(), 2);
    for m in &seen {
        assert_eq!(
            m["schema_errors"],
            json!([]),
            "Python's jsonschema accepts {m}"
        );
    }
    let theirs = seen
        .iter()
        .find(|m| m["id"] == sent.id.to_string().as_str())
        .expect("fedora-messaging got the request");
    assert_eq!(
        theirs["topic"],
        format!("{PREFIX}.{}", SignRequested::TOPIC).as_str()
    );
    assert_eq!(theirs["body"], Value::Object(sent.body.clone()));
    assert_eq!(theirs["headers"]["priority"], 4);
    let answer = seen
        .iter()
        .find(|m| m["topic"] == format!("{PREFIX}.{}", SignFinished::TOPIC).as_str())
        .expect("fedora-messaging got the reply");
    assert_eq!(answer["body"]["status"], "FAILURE");
    assert_eq!(
        answer["body"]["request_id"],
        request.request_id.to_string().as_str()
    );
}
