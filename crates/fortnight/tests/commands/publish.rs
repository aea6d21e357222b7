//! `fortnight publish` with a window of confirms outstanding: what the broker refuses is
//! named line by line, nothing after the stop is sent, and the connection is closed before
//! the program exits.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use messages::RecordLine;
use serde_json::json;
use tests::TestBus;
use tests::broker::{Policy, rabbitmqctl};
use tests::config::toml;

const WAIT: Duration = Duration::from_secs(10);
const ACCEPTED: &str = "test.accepted";
const REFUSED: &str = "test.refused";

fn line(topic: &str, n: u32) -> RecordLine {
    RecordLine {
        body: json!({ "n": n }),
        headers: Default::default(),
        id: Some(format!("{topic}-{n}")),
        priority: None,
        queue: None,
        topic: topic.to_owned(),
    }
}

fn publish(config: &Path, file: &Path, window: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .arg("--config")
        .arg(config)
        .args(["publish", "--window", window])
        .arg(file)
        .output()
        .expect("fortnight publish runs")
}

/// Lines 1, 2 and 5 go to a queue that takes them, 4 and 6 to one the broker refuses
/// (`max-length` 0, `reject-publish`: a nack per message), 7 would be taken. Line 3 is blank,
/// so line numbers are the file's, not the records' positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_stops_publish_and_every_record_is_reported_confirmed_or_not() {
    let bus = TestBus::new();
    let config = bus.write_config();
    let mut accepted = bus.watch(&[ACCEPTED]).await;
    let refused = bus.watch(&[REFUSED]).await;
    let _policy = Policy::apply(
        &format!("refuse-{}", bus.id),
        refused.queue(),
        r#"{"max-length":0,"overflow":"reject-publish"}"#,
    );
    let file = bus.dir.path().join("backlog.jsonl");
    let lines = [
        Some(line(ACCEPTED, 1)),
        Some(line(ACCEPTED, 2)),
        None,
        Some(line(REFUSED, 4)),
        Some(line(ACCEPTED, 5)),
        Some(line(REFUSED, 6)),
        Some(line(ACCEPTED, 7)),
    ];
    let text: String = lines
        .iter()
        .map(|l| l.as_ref().map_or(String::new(), RecordLine::to_line) + "\n")
        .collect();
    std::fs::write(&file, text).unwrap();

    // A window of 2: line 4's nack is seen when the window is full again after line 5 was
    // sent, so 5 is still confirmed and nothing from line 6 on is sent.
    let output = publish(&config, &file, "2");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let prefix = &bus.prefix;
    assert!(
        stderr.contains(&format!(
            "3 record(s) confirmed; not confirmed: line 4 (id test.refused-4, topic {prefix}.test.refused): the broker refused it (nack); nothing after line 5 was sent"
        )),
        "{stderr}"
    );
    let got: Vec<_> = accepted
        .settle(Duration::from_secs(1))
        .await
        .iter()
        .map(|r| r.id.clone().unwrap())
        .collect();
    assert_eq!(
        got,
        ["test.accepted-1", "test.accepted-2", "test.accepted-5"]
    );

    // With a window larger than the file every record is sent before the first confirm is
    // awaited: each refused one is named, the others are confirmed.
    let output = publish(&config, &file, "25");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "4 record(s) confirmed; not confirmed: line 4 (id test.refused-4, topic {prefix}.test.refused): the broker refused it (nack); line 6 (id test.refused-6, topic {prefix}.test.refused): the broker refused it (nack); nothing after line 7 was sent"
        )),
        "{stderr}"
    );
    let got = accepted.wait_for(6, WAIT).await.len();
    assert_eq!(got, 6, "1, 2, 5, then 1, 2, 5 and 7");

    accepted.close().await;
    refused.close().await;
    bus.cleanup().await;
}

/// lapin's I/O thread outlives a close by a moment; a program that ended its async runtime
/// then printed "A Tokio 1.x context was found, but it is being shutdown" as a connection
/// error, on about one run in four before `Publisher::close` waited for that thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_exits_without_connection_errors_whether_it_succeeds_or_fails() {
    let bus = TestBus::new();
    let config = bus.write_config();
    let watch = bus.watch(&[ACCEPTED]).await;
    let good = bus.dir.path().join("good.jsonl");
    std::fs::write(&good, line(ACCEPTED, 1).to_line() + "\n").unwrap();
    // Nothing is bound for this one: the broker returns it and publish fails.
    let unrouted = bus.dir.path().join("unrouted.jsonl");
    std::fs::write(&unrouted, line("test.unbound", 1).to_line() + "\n").unwrap();
    for (file, code) in [(&good, 0), (&unrouted, 1)] {
        for _ in 0..15 {
            let output = publish(&config, file, "25");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(code), "{stderr}");
            assert!(
                !stderr.contains("ERROR") && !stderr.contains("being shutdown"),
                "{stderr}"
            );
        }
    }
    watch.close().await;
    bus.cleanup().await;
}

/// The numbers in `text` that follow `before` and are followed by `after`: every `line N (id`
/// of a report, say.
fn numbers_between(text: &str, before: &str, after: &str) -> Vec<usize> {
    text.split(before)
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            rest[digits.len()..]
                .starts_with(after)
                .then(|| digits.parse().ok())
                .flatten()
        })
        .collect()
}

/// The broker drops publish's connection in the middle of a 100,000-record backlog (an
/// operator's `rabbitmqctl close_connection`): publish exits 1, and its report accounts for
/// every record. Each one it calls confirmed is in the queue, the ones in flight are named
/// as not confirmed, and nothing after the last line it names as sent arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_halfway_is_reported_record_by_record() {
    // Far more than can be published in the moment it takes to see the first one arrive,
    // even on a fast machine: the connection is closed long before the end.
    const RECORDS: usize = 100_000;
    let app = format!("fortnight-publish-test-{}", uuid::Uuid::new_v4().simple());
    let bus = TestBus::with_config(toml! { [client_properties] app = (app.clone()) });
    let config = bus.write_config();
    let mut watch = bus.watch(&[ACCEPTED]).await;
    let file = bus.dir.path().join("backlog.jsonl");
    let text: String = (1..=RECORDS as u32)
        .map(|n| line(ACCEPTED, n).to_line() + "\n")
        .collect();
    std::fs::write(&file, text).unwrap();

    let publish = Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .arg("--config")
        .arg(&config)
        .arg("publish")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        !watch.wait_for(1, Duration::from_secs(60)).await.is_empty(),
        "publish started"
    );
    let connections = rabbitmqctl(&["-q", "list_connections", "pid", "client_properties"])
        .expect("rabbitmqctl lists connections");
    let pid = connections
        .lines()
        // The recording's connection carries the same `app`.
        .find(|l| l.contains(&app) && l.contains(r#"{"connection_name","fortnight-cli"}"#))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("publish's connection in {connections}"));
    rabbitmqctl(&["close_connection", pid, "closed by a test"]).expect("connection closed");

    let output = publish.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let confirmed = numbers_between(&stderr, ": ", " record(s) confirmed");
    let stopped_after = numbers_between(&stderr, "nothing after line ", " was sent");
    let (&[confirmed], &[stopped_after]) = (&confirmed[..], &stopped_after[..]) else {
        panic!("a count of confirmed records and a last line sent: {stderr}");
    };
    let unconfirmed = numbers_between(&stderr, "line ", " (id ");
    assert!(stderr.contains("no confirm came"), "{stderr}");
    assert!(
        !unconfirmed.is_empty() && stopped_after < RECORDS,
        "{stderr}"
    );

    let arrived: std::collections::BTreeSet<usize> = watch
        .settle(Duration::from_secs(2))
        .await
        .iter()
        .map(|r| r.body["n"].as_u64().unwrap() as usize)
        .collect();
    let reported_confirmed: Vec<usize> = (1..=stopped_after)
        .filter(|n| !unconfirmed.contains(n))
        .collect();
    assert_eq!(reported_confirmed.len(), confirmed, "{stderr}");
    let missing: Vec<_> = reported_confirmed
        .iter()
        .filter(|n| !arrived.contains(n))
        .collect();
    assert!(missing.is_empty(), "confirmed but not queued: {missing:?}");
    assert!(
        arrived.iter().all(|n| *n <= stopped_after),
        "nothing after line {stopped_after} was sent, yet {:?} arrived",
        arrived.range(stopped_after + 1..).collect::<Vec<_>>()
    );
    watch.close().await;
    bus.cleanup().await;
}
