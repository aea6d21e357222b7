//! Fortnight's fedora-messaging schema package (`schemas/python`), built from this checkout:
//! the reference client finds a class for every topic Fortnight publishes, validates and
//! describes each message with it, refuses bodies that break the schema, and the package
//! ships exactly the schemas in `schemas/`.

use crate::common;
use crate::interop::FmConsumer;

use std::collections::BTreeMap;
use std::path::Path;

use messages::{
    KarmaSubmitted, KarmaThresholdReached, Message, OverrideBlock, ReleasePublished, TreeComposed,
    TwoweekComplete, schema,
};
use serde_json::{Value, json};

use common::*;

const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fedora_messaging_reads_every_topic_with_its_class_and_summary() {
    let env = Env::new();
    let examples = tests::records::one_of_each_topic();
    let topics: Vec<&str> = examples.iter().map(|m| m.topic.as_str()).collect();
    let published: Vec<&str> = schema::all().into_iter().map(|(topic, _)| topic).collect();
    assert_eq!(
        topics, published,
        "tests::records::one_of_each_topic has one example per topic, in schema::all()'s order"
    );
    let consumer = FmConsumer::start(&env, examples.len());
    let publisher = env.publisher().await;
    for message in &examples {
        publisher.publish(message).await.unwrap();
    }
    publisher.close().await;
    let (received, log) = consumer.finish();

    assert!(
        !log.contains("not in the schema registry") && !log.contains("misbehaving"),
        "the reference client knows every schema: {log}"
    );
    let by_id: BTreeMap<&str, &Value> = received
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m))
        .collect();
    for sent in &examples {
        let topic = sent.topic.as_str();
        let m = by_id[sent.id.to_string().as_str()];
        assert_ne!(
            m["class"], "Message",
            "{topic} is read with a class of its own"
        );
        assert_eq!(m["schema_errors"], json!([]), "{topic}");
        assert_eq!(m["app_name"], "fortnight", "{topic}");
        assert_eq!(
            m["class_severity"], sent.severity as i64,
            "{topic}: the class's severity is the one Fortnight sends"
        );
        let summary = m["summary"].as_str().unwrap();
        assert!(
            !summary.is_empty() && summary != m["topic"] && !summary.starts_with("fortnight."),
            "{topic} has a summary of its own: {summary:?}"
        );
        let text = m["text"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("Fortnight: {summary}.")),
            "{topic}: {text:?}"
        );
        let mut users: Vec<String> = sent.users.iter().map(ToString::to_string).collect();
        users.sort();
        assert_eq!(
            m["usernames"],
            json!(users),
            "{topic}: the class names the people Fortnight's user headers name"
        );
    }
    let summary_of = |topic: &str| {
        let sent = examples.iter().find(|m| m.topic == topic).unwrap();
        by_id[sent.id.to_string().as_str()].clone()
    };
    let vote = summary_of(KarmaSubmitted::TOPIC);
    assert_eq!(vote["summary"], "bob voted +1 on f43 43.20261127.1");
    assert_eq!(vote["agent_name"], "bob");
    assert_eq!(vote["usernames"], json!(["bob"]));
    let block = summary_of(OverrideBlock::TOPIC);
    assert_eq!(
        block["summary"],
        "alice blocked f43 43.20261127.1: rpm-ostree upgrade breaks"
    );
    assert_eq!(block["agent_name"], "alice");
    let threshold = summary_of(KarmaThresholdReached::TOPIC);
    assert_eq!(threshold["usernames"], json!(["bob", "carol"]));
    assert_eq!(threshold["agent_name"], Value::Null);
    let legacy = summary_of(TwoweekComplete::TOPIC);
    assert_eq!(
        legacy["url"],
        "https://example.org/Fedora-Atomic-43-20261127.1.x86_64.qcow2"
    );
    assert_eq!(summary_of(ReleasePublished::TOPIC)["url"], Value::Null);
}

/// Validates a body with the class fedora-messaging finds for a schema name; prints the
/// error and exits 1 when it is refused.
const VALIDATE_PY: &str = r#"
import json, sys
import jsonschema
from fedora_messaging import message
cls = message.get_class(sys.argv[1])
assert cls is not message.Message, f"no class for {sys.argv[1]}"
try:
    cls(body=json.loads(sys.argv[2])).validate()
except jsonschema.ValidationError as e:
    print(e.message)
    sys.exit(1)
"#;

fn validate_in_python(topic: &str, body: &Value) -> std::process::Output {
    schema_python()
        .args(["-c", VALIDATE_PY, topic, &body.to_string()])
        .output()
        .unwrap()
}

#[test]
fn the_schema_package_accepts_what_fortnight_sends_and_refuses_what_breaks_the_schema() {
    for message in tests::records::one_of_each_topic() {
        let output = validate_in_python(&message.topic, &Value::Object(message.body.clone()));
        assert_success(&output, &format!("validating {} in Python", message.topic));
    }
    let vote = json!({"stream": "f43", "version": "43.1", "user": "bob", "karma": 5});
    let output = validate_in_python(KarmaSubmitted::TOPIC, &vote);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("5 is greater than the maximum of 1"),
        "{}",
        text(&output.stdout)
    );
    let output = validate_in_python(
        TreeComposed::TOPIC,
        &json!({"arch": "x86_64", "tree": {"ref": "a/b", "commit": "not hex", "repo": "/r"}}),
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
}

/// What the installed package registers: schema name -> `body_schema`.
const REGISTERED_PY: &str = r#"
import json
from importlib.metadata import entry_points
found = {}
for ep in entry_points(group="fedora.messages"):
    if ep.dist.name == "fortnight-messages":
        cls = ep.load()
        found[ep.name] = cls.body_schema
print(json.dumps(found))
"#;

#[test]
fn the_schema_package_ships_exactly_the_checked_in_schemas() {
    let output = run_ok(
        schema_python().args(["-c", REGISTERED_PY]),
        "list the schema package's classes",
    );
    let registered: BTreeMap<String, Value> = serde_json::from_slice(&output.stdout).unwrap();
    let mut on_disk = BTreeMap::new();
    for entry in std::fs::read_dir(SCHEMAS).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let topic = path.file_stem().unwrap().to_string_lossy().into_owned();
            let schema: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            on_disk.insert(topic, schema);
        }
    }
    assert!(on_disk.len() >= schema::all().len());
    assert_eq!(
        registered, on_disk,
        "one class per schemas/*.json, registered under its topic, with that file as its schema"
    );
}

#[test]
fn the_schema_package_python_tests_pass() {
    let tests_dir = Path::new(SCHEMAS).join("python/tests");
    let output = run_ok(
        schema_python()
            .args(["-m", "unittest", "discover", "-v", "-s"])
            .arg(&tests_dir),
        "python -m unittest in schemas/python/tests",
    );
    let log = text(&output.stderr);
    assert!(log.contains("\nOK"), "{log}");
    assert!(!log.contains("Ran 0 tests"), "{log}");
}
