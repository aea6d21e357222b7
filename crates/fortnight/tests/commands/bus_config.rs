//! The bus commands (`publish`, `record`, `replay`, `dead-letters`, `topology export`) work
//! like fedora-messaging's: with no configuration file at all they talk to the local broker as
//! guest, publish to `amq.topic` and add no prefix.

use crate::common;

use std::path::Path;
use std::process::Command;

use messages::{Message, RecordLine, TreeComposed};
use serde_json::{Value, json};

use common::*;
use tests::records::{read_records, record_of, tree_composed, write_records};

/// `fortnight` with no `--config`, no `FORTNIGHT_CONFIG` and no other `FORTNIGHT_*`
/// override, run in `dir`.
fn unconfigured(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fortnight"));
    for (name, _) in std::env::vars() {
        if name.starts_with("FORTNIGHT_") {
            command.env_remove(name);
        }
    }
    command.current_dir(dir).env("FORTNIGHT_LOG", "info");
    command
}

/// A record line with none of fedora-messaging's headers, as a hand-written file has it.
pub fn bare_line(topic: &str) -> RecordLine {
    serde_json::from_value(json!({
        "topic": topic,
        "id": uuid::Uuid::new_v4().to_string(),
        "body": {"note": "written by hand"}
    }))
    .unwrap()
}

/// The headers `fedora-messaging publish` would have added to [`bare_line`].
pub fn assert_publish_defaults(received: &RecordLine) {
    let headers = &received.headers;
    assert_eq!(
        headers["fedora_messaging_schema"], "base.message",
        "{headers:?}"
    );
    assert_eq!(headers["fedora_messaging_severity"], 20, "{headers:?}");
    assert_eq!(headers["priority"], 0, "{headers:?}");
    let sent_at = headers["sent-at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(sent_at).unwrap();
}

#[test]
fn bus_commands_run_without_a_configuration_file() {
    assert!(
        !Path::new("/etc/fortnight/config.toml").exists(),
        "this test needs a machine without /etc/fortnight/config.toml"
    );
    // Its own exchange and queues: `Env` deletes the queues this test adds to it.
    let env = Env::new();
    let dir = env.dir.path();
    // Routing keys of their own on the shared amq.topic, which the defaults publish to.
    let base = format!("fortnight.test.{}", env.id);
    let out = env.path("recorded.jsonl");
    let recorder = Recorder::start(unconfigured(dir), &out, 3, &[&format!("{base}.#")]);

    let bare = bare_line(&format!("{base}.bare"));
    let full = record_of(&tree_composed(1), format!("{base}.{}", TreeComposed::TOPIC));
    let file = env.path("publish.jsonl");
    write_records(&file, &[bare.clone(), full.clone()]);
    run_ok(
        unconfigured(dir).arg("publish").arg(&file),
        "fortnight publish without a configuration",
    );
    let again = env.path("replay.jsonl");
    let replayed = record_of(&tree_composed(2), format!("{base}.{}", TreeComposed::TOPIC));
    write_records(&again, std::slice::from_ref(&replayed));
    run_ok(
        unconfigured(dir).args(["replay", "--file"]).arg(&again),
        "fortnight replay without a configuration",
    );
    recorder.finish();
    let recorded = read_records(&out);
    let ids: Vec<_> = recorded.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids, [bare.id, full.id, replayed.id.clone()]);
    assert_eq!(recorded[1].headers, full.headers, "no prefix was added");
    assert_eq!(recorded[2].headers, replayed.headers);
    assert_eq!(recorded[0].topic, format!("{base}.bare"));
    assert_publish_defaults(&recorded[0]);

    // The dead letters of a consumer under its default queue name.
    let consumer = format!("nocfg-{}", env.id);
    let dead = format!("fortnight.{consumer}.dead");
    env.queues.lock().unwrap().push(dead.clone());
    run_ok(
        Command::new(fm_python()).args([
            "-c",
            "import pika, sys\n\
             c = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))\n\
             c.channel().queue_declare(sys.argv[2], durable=True)\nc.close()",
            &tests::amqp_url(),
            &dead,
        ]),
        "declare a dead-letter queue",
    );
    let output = run_ok(
        unconfigured(dir).args(["dead-letters", "list", &consumer]),
        "fortnight dead-letters list without a configuration",
    );
    assert!(
        text(&output.stderr).contains(&format!("0 dead letter(s) for {consumer}")),
        "{}",
        text(&output.stderr)
    );

    let output = run_ok(
        unconfigured(dir).args(["topology", "export"]),
        "fortnight topology export without a configuration",
    );
    let definitions: Value = serde_json::from_slice(&output.stdout).unwrap();
    let queues: Vec<&str> = definitions["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert!(queues.contains(&"fortnight.image-builder"), "{queues:?}");
    assert!(
        definitions["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["source"] == "amq.topic"
                && !b["routing_key"].as_str().unwrap().starts_with('.')),
        "bound on the default exchange without a prefix: {}",
        definitions["bindings"]
    );
}

#[test]
fn a_named_configuration_file_that_is_missing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = unconfigured(dir.path())
        .args(["--config", "missing.toml", "topology", "export"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("missing.toml"),
        "{}",
        text(&output.stderr)
    );
}
