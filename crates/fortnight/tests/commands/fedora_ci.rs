//! Fedora CI's test messages, both ways, against the real broker and fedora-messaging's own
//! client: the image-tester's runs reach `fedora-messaging consume` as `ci.*.test.queued`,
//! `.running` and `.complete` (or `.error`), each read and validated with its class from
//! Fortnight's schema package; and openQA's `test.complete`, published with fedora-messaging
//! as openQA does, joins a candidate's gate, which `fortnight explain` shows and the releaser
//! obeys.

use crate::common;
use crate::interop::FmConsumer;
use crate::operators::{cli_config, fortnight_ok};

use std::sync::Arc;

use image_tester::ImageTester;
use messages::{
    Arch, CiTestComplete, CiTestError, CiTestQueued, CiTestRunning, ImageBuilt, Message, Outgoing,
    ReleasePublished, Stream, TestName, Version,
};
use serde_json::{Value, json};
use store::Store;
use tests::config::{self as config, Table, toml};
use tests::pipeline::{
    BrokerUser, Options, Pipeline, WAIT, dead_letter_with, image_built, wait_topic,
};

use common::*;

/// `[streams.f43.fedora_ci]` as a deployment writes it.
/// The stream's `fedora_ci` table: Fortnight's own contact block.
fn fedora_ci() -> Table {
    toml! {
        [streams.f43.fedora_ci]
        artifact_type = "productmd-compose"
        contact = {
            name = "Fortnight",
            team = "Fedora Release Engineering",
            email = "releng@example.org",
            docs = "https://example.org/fortnight/"
        }
    }
}

/// The `fortnight.image.built` of one qcow2 image of `version`, put in the store.
fn built(settings: &settings::Settings, version: &str) -> ImageBuilt {
    let store = Store::open(&settings.store.root).unwrap();
    let (stream, version, arch): (Stream, Version, Arch) = (
        "f43".parse().unwrap(),
        version.parse().unwrap(),
        "x86_64".parse().unwrap(),
    );
    image_built(
        &store,
        (&stream, &version, &arch),
        "fedora/43/x86_64/updates/atomic-host",
        b"an image",
    )
}

/// Runs the image-tester of `env` on one built image, its message delivered `times` times,
/// while `fedora-messaging consume` takes the first `limit` messages of the exchange; returns
/// the Fedora CI ones, in order.
async fn ci_messages_of_a_run(env: &Env, version: &str, times: usize, limit: usize) -> Vec<Value> {
    let consumer = FmConsumer::start(env, limit);
    let tester = env.start_consumer(ImageTester::new(Arc::new(env.settings.clone())).unwrap());
    let publisher = env.publisher().await;
    let message = Outgoing::new(uuid::Uuid::new_v4(), &built(&env.settings, version));
    for _ in 0..times {
        publisher.publish(&message).await.unwrap();
    }
    publisher.close().await;
    let (received, log) = consumer.finish();
    tester.stop().await;
    assert!(
        !log.contains("not in the schema registry") && !log.contains("misbehaving"),
        "the reference client knows the Fedora CI schemas: {log}"
    );
    received
        .into_iter()
        .filter(|m| {
            m["topic"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{PREFIX}.ci."))
        })
        .collect()
}

/// The topic without the test's prefix.
fn topic(message: &Value) -> &str {
    message["topic"]
        .as_str()
        .unwrap()
        .strip_prefix(&format!("{PREFIX}."))
        .unwrap()
}

/// fedora-messaging found the message's class by its schema header and validated it (a body
/// that fails its class's schema never reaches the callback), and so does the schema file.
fn assert_read_with_its_class(message: &Value, class: &str) {
    let topic = topic(message);
    assert_eq!(message["class"], class, "{topic}");
    assert_eq!(message["headers"]["fedora_messaging_schema"], topic);
    assert_eq!(message["schema_errors"], json!([]), "{topic}");
    assert_eq!(message["body"]["version"], "0.2.1", "{topic}");
    assert_eq!(
        message["body"]["contact"]["team"],
        "Fedora Release Engineering"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_run_reaches_fedora_messaging_as_queued_running_then_complete() {
    let suite_dir = tempfile::tempdir().unwrap();
    let suite = suite_dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        "[[test]]\nname = \"boots\"\nargv = [\"true\"]\nkind = \"gating\"\ntimeout_seconds = 60\n",
    )
    .unwrap();
    let env = Env::with(toml! { test_suite = (config::path(&suite)) }, fedora_ci());
    const V: &str = "43.20261127.5";
    // image.built, queued, running, complete and tests.passed; then the redelivered
    // image.built, and the recorded result again: complete and tests.passed.
    let ci = ci_messages_of_a_run(&env, V, 2, 8).await;

    let topics: Vec<&str> = ci.iter().map(topic).collect();
    assert_eq!(
        topics,
        [
            CiTestQueued::TOPIC,
            CiTestRunning::TOPIC,
            CiTestComplete::TOPIC,
            CiTestComplete::TOPIC
        ],
        "one run, told in the order it happened; a redelivery runs nothing again"
    );
    assert_eq!(
        ci[3]["id"], ci[2]["id"],
        "the result told again keeps its id, so Fedora's consumers see one result"
    );
    assert_read_with_its_class(&ci[0], "CiProductmdComposeTestQueued");
    assert_read_with_its_class(&ci[1], "CiProductmdComposeTestRunning");
    assert_read_with_its_class(&ci[2], "CiProductmdComposeTestComplete");
    for message in &ci {
        let body = &message["body"];
        assert_eq!(
            body["pipeline"], ci[0]["body"]["pipeline"],
            "one run, one pipeline id"
        );
        assert_eq!(
            body["artifact"],
            json!({"type": "productmd-compose", "id": V})
        );
        assert_eq!(body["system"][0]["architecture"], "x86_64");
        assert_eq!(
            body["run"]["log"],
            format!("https://dl.example.org/fortnight/f43/all/{V}/x86_64/junit.xml")
        );
    }
    let complete = &ci[2]["body"]["test"];
    assert_eq!(
        complete,
        &json!({"namespace": "fortnight", "type": "f43", "category": "functional", "result": "passed"})
    );
    assert_eq!(
        ci[0]["summary"],
        format!("{V} queued for fortnight.f43.functional on x86_64")
    );
    assert_eq!(
        ci[2]["summary"],
        format!("{V} passed fortnight.f43.functional on x86_64")
    );
    let ids: std::collections::BTreeSet<&str> =
        ci.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "each message of the run has an id of its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suite_that_cannot_be_read_is_a_ci_error_not_a_test_result() {
    let missing = "/nonexistent/fortnight/suite.toml";
    let env = Env::with(toml! { test_suite = (missing) }, fedora_ci());
    const V: &str = "43.20261127.6";
    // image.built, queued and error; the run is retried later, and fails again.
    let ci = ci_messages_of_a_run(&env, V, 1, 3).await;

    let topics: Vec<&str> = ci.iter().map(topic).collect();
    assert_eq!(
        topics,
        [CiTestQueued::TOPIC, CiTestError::TOPIC],
        "no test ran: neither running nor complete"
    );
    let error = &ci[1];
    assert_read_with_its_class(error, "CiProductmdComposeTestError");
    assert_eq!(error["class_severity"], 40);
    let reason = error["body"]["error"]["reason"].as_str().unwrap();
    assert!(reason.contains(missing), "{reason}");
    assert!(
        !env.settings
            .store
            .root
            .join(format!("f43/all/{V}/x86_64/tests.json"))
            .exists(),
        "an infrastructure failure records no test result"
    );
}

/// Publishes a `ci.productmd-compose.test.complete` with fedora-messaging, as openQA does
/// (a plain `Message`, schema `base.message`), over `user`'s own connection with `user_id`
/// set: RabbitMQ accepts it only from that account, which is what Fortnight's trust checks.
const PUBLISH_PY: &str = r#"
import json, sys
from fedora_messaging import api, message
topic, body, user = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
msg = message.Message(topic=topic, body=body)
msg._properties.user_id = user
api.publish(msg)
"#;

/// openQA's result of `install_default` for a candidate on one arch.
fn openqa_result(version: &str, arch: &str, result: &str) -> Value {
    json!({
        "artifact": {"type": "productmd-compose", "id": version, "compose_type": "nightly"},
        "contact": {
            "name": "Fedora openQA", "team": "Fedora QA", "email": "qa@example.org",
            "docs": "https://example.org/openqa/", "url": "https://openqa.example.org"
        },
        "run": {"url": format!("https://openqa.example.org/tests/{version}-{arch}"), "log": "log"},
        "pipeline": {"id": format!("openqa-{version}-{arch}"), "name": "openqa"},
        "test": {
            "namespace": "openqa", "type": "install_default", "category": "validation",
            "result": result
        },
        "system": [{"os": "fedora", "provider": "openqa", "architecture": arch}],
        "generated_at": "2026-11-27T10:47:32+0000",
        "version": "0.2.1"
    })
}

fn publish_as(p: &Pipeline, user: &BrokerUser, body: &Value) {
    let conf = p.bus.dir.path().join(format!("{}.fm.toml", user.name));
    std::fs::write(
        &conf,
        format!(
            "amqp_url = \"{}\"\npublish_exchange = \"{}\"\ntopic_prefix = \"{}\"\n",
            user.amqp_url(),
            p.bus.exchange,
            p.bus.prefix
        ),
    )
    .unwrap();
    run_ok(
        schema_python().env("FEDORA_MESSAGING_CONF", &conf).args([
            "-c",
            PUBLISH_PY,
            CiTestComplete::TOPIC,
            &body.to_string(),
            user.name.as_str(),
        ]),
        &format!("fedora-messaging publishes a CI result as {}", user.name),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openqa_results_gate_a_candidate_missing_waits_passed_releases_failed_blocks() {
    let openqa = BrokerUser::create("openqa");
    let mallory = BrokerUser::create("mallory");
    let p = Pipeline::start(Options {
        karma_required: false,
        stream_keys: toml! { external_gating = ["openqa.install_default"] },
        tables: Table::from_iter([(
            "trust".to_owned(),
            toml::Value::Table(Table::from_iter([(
                "topics".to_owned(),
                toml::Value::Table(Table::from_iter([(
                    CiTestComplete::TOPIC.to_owned(),
                    toml::Value::from(vec![openqa.name.as_str()]),
                )])),
            )])),
        )]),
        other_consumers: vec![image_tester::NAME],
        ..Options::default()
    })
    .await;
    let tester = tests::Running::start(&p.settings, ImageTester::new(p.settings.clone()).unwrap());
    tests::wait_consumers(&p.bus.queue(image_tester::NAME), 1, WAIT).await;
    let config = cli_config(&p, &[]);
    const OLDER: &str = "43.20261124.0";
    const NEWER: &str = "43.20261125.0";
    p.nightly_tested(OLDER, None).await;
    p.nightly_tested(NEWER, None).await;

    // Fortnight's own tests passed, but openQA has said nothing yet: both wait.
    let explained = fortnight_ok(&config, &openqa, &["explain", "tw", NEWER]).await;
    assert!(
        explained.contains(
            "external tests: waiting for openqa.install_default on aarch64; \
             waiting for openqa.install_default on x86_64"
        ) && explained.contains("not releasable:"),
        "{explained}"
    );

    // Someone who is not openQA says it passed: dead-lettered, nothing recorded.
    publish_as(&p, &mallory, &openqa_result(NEWER, "x86_64", "PASSED"));
    let letter = dead_letter_with(&p, image_tester::NAME, "untrusted sender").await;
    assert!(
        letter.reason.contains(mallory.name.as_str()),
        "{}",
        letter.reason
    );
    let test: TestName = "openqa.install_default".parse().unwrap();
    let kept = |version: &str, arch: &str| {
        p.store
            .read_external_result(
                &tests::pipeline::stream(),
                &version.parse().unwrap(),
                &arch.parse().unwrap(),
                &test,
            )
            .unwrap()
    };
    assert_eq!(kept(NEWER, "x86_64"), None);

    // openQA: the older candidate passes on both arches (INFO counts as passed); the newer
    // one fails on x86_64.
    publish_as(&p, &openqa, &openqa_result(OLDER, "x86_64", "PASSED"));
    publish_as(&p, &openqa, &openqa_result(OLDER, "aarch64", "INFO"));
    publish_as(&p, &openqa, &openqa_result(NEWER, "aarch64", "passed"));
    publish_as(&p, &openqa, &openqa_result(NEWER, "x86_64", "FAILED"));
    let recorded = tests::eventually(WAIT, || {
        [
            (OLDER, "x86_64"),
            (OLDER, "aarch64"),
            (NEWER, "aarch64"),
            (NEWER, "x86_64"),
        ]
        .iter()
        .all(|(version, arch)| kept(version, arch).is_some())
    })
    .await;
    assert!(recorded, "the image-tester keeps every result openQA sent");
    assert_eq!(
        kept(NEWER, "x86_64").unwrap().sender.as_deref(),
        Some(openqa.name.as_str())
    );

    let explained = fortnight_ok(&config, &openqa, &["explain", "tw", NEWER]).await;
    assert!(
        explained.contains("external tests: openqa.install_default failed on x86_64"),
        "{explained}"
    );
    let explained = fortnight_ok(&config, &openqa, &["explain", "tw", OLDER]).await;
    assert!(
        explained.contains("external tests: passed on every arch")
            && explained.contains("releasable: the next tick releases it"),
        "{explained}"
    );

    // The tick releases the older candidate: the newer one is blocked by openQA.
    let mut watch = p.watch(&[ReleasePublished::TOPIC]).await;
    p.tick("2026-11-17T12:00:00Z").await;
    let published = wait_topic(&mut watch, ReleasePublished::TOPIC, 1).await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].body["version"], OLDER);
    watch.close().await;
    tester.stop().await;
    p.stop().await;
}
