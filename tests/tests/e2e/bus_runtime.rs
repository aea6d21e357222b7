//! The bus runtime against the real broker: settling, poison messages, retries, dead letters,
//! health, and consumer processes killed or stopped mid-step. Nothing here disturbs the broker
//! itself (see bus_disruptive.rs for that), so these tests run in parallel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Outputs, Step, StepError};
use messages::{Incoming, Outgoing};
use serde_json::Value;
use tests::broker::{BrokerUser, queue_info};
use tests::config::{Table, health_addr, toml};
use tests::probe::{DONE_TOPIC, Probe, ProbeProcess, RUN_TOPIC, probe_message};
use tests::{Running, TestBus, eventually, free_port, http_get, is_ready};
use tokio::sync::oneshot;

const PROBE_BIN: &str = env!("CARGO_BIN_EXE_probe-consumer");
const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_outcomes_are_published_with_the_fedora_messaging_envelope_and_acked() {
    let bus = TestBus::new().consumer("probe", Table::new());
    let mut watch = bus.watch(&[DONE_TOPIC]).await;
    let probe = Probe::run(&bus, bus.settings(), false);
    bus.wait_consuming("probe").await;
    let publisher = bus.publisher().await;
    publisher
        .publish(&Probe::message("k1", Duration::ZERO))
        .await
        .unwrap();

    let seen = watch.wait_for(1, DEADLINE).await.to_vec();
    assert_eq!(seen.len(), 1, "one done message");
    let done = &seen[0];
    assert_eq!(
        done.topic,
        format!("{}.{DONE_TOPIC}", bus.prefix),
        "prefix added exactly once"
    );
    assert_eq!(done.id.as_deref(), Some(Probe::done_id("k1").as_str()));
    assert_eq!(done.body["key"], "k1");
    assert_eq!(done.headers["fedora_messaging_schema"], DONE_TOPIC);
    assert_eq!(done.headers["fedora_messaging_severity"], 20);
    assert_eq!(done.headers["priority"], 0);
    let sent_at = done.headers["sent-at"].as_str().unwrap();
    assert!(
        chrono_like(sent_at),
        "sent-at at second precision: {sent_at}"
    );
    assert!(Probe::effect_done(&Probe::dir_of(&bus), "k1"));

    probe.stop().await;
    let queue = bus.queue("probe");
    assert_eq!(
        queue_info(&queue, "messages").as_deref(),
        Some("0"),
        "the input was acked"
    );
    publisher.close().await;
    watch.close().await;
    bus.cleanup().await;
}

/// `2026-11-27T02:49:31+00:00`: no fractional seconds.
fn chrono_like(text: &str) -> bool {
    text.len() == 25
        && text.ends_with("+00:00")
        && text.as_bytes()[10] == b'T'
        && !text.contains('.')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_with_their_reason_and_the_consumer_goes_on() {
    let bus = TestBus::new().consumer("probe", toml! { max_body_bytes = 1048576 });
    let probe = Probe::run(&bus, bus.settings(), false);
    bus.wait_consuming("probe").await;
    let publisher = bus.publisher().await;
    let huge = format!(
        r#"{{"key":"big","stream":"f43","pad":"{}"}}"#,
        "x".repeat(10 * 1024 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("not-json", b"this is not json".to_vec(), "not valid JSON"),
        ("not-object", b"[1, 2, 3]".to_vec(), "not an object"),
        (
            "schema",
            br#"{"stream":"f43"}"#.to_vec(),
            "does not match the probe schema",
        ),
        (
            "unknown-stream",
            br#"{"key":"a","stream":"f99"}"#.to_vec(),
            "unknown stream `f99`",
        ),
        (
            "traversal",
            br#"{"key":"../../etc/passwd","stream":"f43"}"#.to_vec(),
            "not a safe file name",
        ),
        (
            "shell",
            br#"{"key":"a;rm -rf $HOME","stream":"f43"}"#.to_vec(),
            "not a safe file name",
        ),
        (
            "oversized",
            huge.into_bytes(),
            "over consumers.probe.max_body_bytes",
        ),
    ];
    let mut expected = BTreeMap::new();
    for (name, body, reason) in &cases {
        let headers = BTreeMap::from([("test-case".to_owned(), Value::from(*name))]);
        let id = publisher
            .publish_raw(RUN_TOPIC, body, &headers)
            .await
            .unwrap();
        expected.insert(id, (*name, *reason, body.clone()));
    }
    publisher
        .publish(&Probe::message("after-poison", Duration::ZERO))
        .await
        .unwrap();

    let dir = Probe::dir_of(&bus);
    assert!(
        eventually(DEADLINE, || Probe::effect_done(&dir, "after-poison")).await,
        "the consumer went on with the next message"
    );
    let letters = bus.wait_dead_letters("probe", cases.len(), DEADLINE).await;
    assert_eq!(
        letters.len(),
        cases.len(),
        "every poison message is dead-lettered once"
    );
    for letter in &letters {
        let id = letter.id.clone().expect("the id is kept");
        let (name, reason, body) = &expected[&id];
        assert!(
            letter.reason.contains(reason),
            "{name}: reason {:?} should mention {reason:?}",
            letter.reason
        );
        assert_eq!(letter.consumer.as_deref(), Some("probe"), "{name}");
        assert_eq!(
            letter.routing_key,
            format!("{}.{RUN_TOPIC}", bus.prefix),
            "{name}"
        );
        assert_eq!(
            letter.headers["test-case"], *name,
            "{name}: original headers kept"
        );
        assert_eq!(&letter.body, body, "{name}: body kept byte for byte");
    }
    let runs = Probe::runs(&dir);
    assert_eq!(
        runs.keys().collect::<Vec<_>>(),
        vec!["after-poison"],
        "no poison message got to work"
    );

    probe.stop().await;
    publisher.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_end_in_the_dead_letter_queue_which_can_be_listed_replayed_and_purged() {
    let bus = TestBus::new().consumer(
        "probe",
        toml! {
            max_attempts = 3
            retry_delays_seconds = [1]
        },
    );
    // Sent by a tester's own account with the broker-checked user_id, which steps use to
    // authorize votes and overrides; the consumer runs as another account. Listed as an
    // operator, the tester may send the probe's topic, as on every topic of Fortnight's own.
    let tester = BrokerUser::create("tester");
    let mut settings = bus.settings();
    settings.operators = vec![tester.name.clone()];
    let probe = Probe::run(&bus, settings, false);
    bus.wait_consuming("probe").await;
    let publisher = bus.publisher().await;
    let mut message = Probe::message("flaky", Duration::ZERO);
    message.body.insert("fail".into(), Value::Bool(true));
    tester
        .publisher(&bus.settings())
        .await
        .publish_as(&message, tester.name.as_str())
        .await
        .unwrap();
    let id = message.id.to_string();
    let dir = Probe::dir_of(&bus);

    let letters = bus.wait_dead_letters("probe", 1, DEADLINE).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].id.as_deref(), Some(id.as_str()));
    assert_eq!(letters[0].attempts, 3);
    assert!(
        letters[0].reason.contains("gave up after 3 attempts"),
        "{}",
        letters[0].reason
    );
    assert_eq!(
        letters[0].routing_key,
        format!("{}.{RUN_TOPIC}", bus.prefix)
    );
    assert_eq!(
        Probe::runs(&dir)["flaky"],
        3,
        "each attempt ran the step once"
    );
    assert_eq!(
        Probe::senders(&dir, "flaky"),
        [tester.name.as_str(); 3],
        "retried copies still say who sent the message"
    );
    assert_eq!(letters[0].sender.as_deref(), Some(tester.name.as_str()));
    assert_eq!(
        letters[0].headers["fedora_messaging_schema"], RUN_TOPIC,
        "publisher headers kept"
    );

    let settings = bus.settings();
    let shown = bus::dead_letters::show(&settings, "probe", &id)
        .await
        .unwrap();
    assert_eq!(shown, letters[0]);
    assert!(
        bus::dead_letters::show(&settings, "probe", "no-such-id")
            .await
            .is_err()
    );
    assert_eq!(
        bus.dead_letters("probe").await.len(),
        1,
        "listing leaves the queue as it was"
    );

    // Replayed with attempts reset: three more runs, then dead again.
    assert_eq!(
        bus::dead_letters::replay(&settings, "probe", Some(&id))
            .await
            .unwrap(),
        1
    );
    assert!(
        eventually(DEADLINE, || Probe::runs(&dir)["flaky"] == 6).await,
        "the replayed message ran three more times"
    );
    let letters = bus.wait_dead_letters("probe", 1, DEADLINE).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3, "attempts were reset by the replay");
    assert_eq!(
        Probe::senders(&dir, "flaky"),
        [tester.name.as_str(); 6],
        "a replayed dead letter still says who sent it"
    );
    assert_eq!(
        letters[0].id.as_deref(),
        Some(id.as_str()),
        "the id survives the replay"
    );

    assert_eq!(
        bus::dead_letters::purge(&settings, "probe").await.unwrap(),
        1
    );
    assert!(bus.dead_letters("probe").await.is_empty());

    probe.stop().await;
    publisher.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_report_readiness_and_counts() {
    let addr = free_port();
    let bus = TestBus::new().consumer("probe", health_addr(addr));
    let probe = Probe::run(&bus, bus.settings(), false);
    assert!(
        eventually(DEADLINE, || is_ready(addr)).await,
        "ready once consuming"
    );
    assert_eq!(http_get(addr, "/live").map(|(s, _)| s), Some(200));
    let publisher = bus.publisher().await;
    publisher
        .publish(&Probe::message("counted", Duration::ZERO))
        .await
        .unwrap();
    let processed = |text: &str| text.contains("fortnight_processed_total{consumer=\"probe\"} 1");
    assert!(
        eventually(DEADLINE, || http_get(addr, "/metrics")
            .is_some_and(|(_, body)| processed(&body)))
        .await,
        "processed counter reaches 1"
    );
    let (_, metrics) = http_get(addr, "/metrics").unwrap();
    for line in [
        "fortnight_received_total{consumer=\"probe\"} 1",
        "fortnight_published_total{consumer=\"probe\"} 1",
        "fortnight_publish_confirmed_total{consumer=\"probe\"} 1",
        "fortnight_step_duration_seconds_count{consumer=\"probe\"} 1",
        "fortnight_ready{consumer=\"probe\"} 1",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
    probe.stop().await;
    assert!(
        http_get(addr, "/live").is_none(),
        "endpoints close with the consumer"
    );
    publisher.close().await;
    bus.cleanup().await;
}

/// A probe process with a health address, ready to take messages.
async fn start_probe(
    bus: &TestBus,
    long_running: bool,
    health: std::net::SocketAddr,
) -> ProbeProcess {
    ProbeProcess::start(
        Path::new(PROBE_BIN),
        &bus.write_config(),
        &Probe::dir_of(bus),
        long_running,
        health,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_step_gets_the_message_again_and_the_effect_happens_once() {
    let health = free_port();
    let bus = TestBus::new().consumer("probe", health_addr(health));
    let mut watch = bus.watch(&[DONE_TOPIC]).await;
    let dir = Probe::dir_of(&bus);
    let mut probe = start_probe(&bus, false, health).await;
    let publisher = bus.publisher().await;
    publisher
        .publish(&Probe::message("killed", Duration::from_secs(3)))
        .await
        .unwrap();

    assert!(
        eventually(DEADLINE, || Probe::runs(&dir).contains_key("killed")).await,
        "the step started"
    );
    probe.signal("KILL");
    probe
        .wait_exit(DEADLINE)
        .await
        .expect("SIGKILL ends the process");
    assert!(
        !Probe::effect_done(&dir, "killed"),
        "killed before the effect"
    );

    let _probe = start_probe(&bus, false, health).await;
    assert!(
        eventually(DEADLINE, || Probe::effect_done(&dir, "killed")).await,
        "redelivered and done"
    );
    let seen = watch.wait_for(1, DEADLINE).await.to_vec();
    assert_eq!(
        Probe::runs(&dir)["killed"],
        2,
        "the step ran once per delivery"
    );
    let ids: BTreeSet<_> = seen.iter().filter_map(|m| m.id.clone()).collect();
    assert_eq!(
        ids,
        BTreeSet::from([Probe::done_id("killed")]),
        "one result, with its derived id"
    );

    publisher.close().await;
    watch.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_step_finishes_the_message_and_exits_0() {
    let health = free_port();
    let bus = TestBus::new().consumer("probe", health_addr(health));
    let dir = Probe::dir_of(&bus);
    let mut probe = start_probe(&bus, false, health).await;
    let publisher = bus.publisher().await;
    publisher
        .publish(&Probe::message("in-hand", Duration::from_secs(2)))
        .await
        .unwrap();
    publisher
        .publish(&Probe::message("queued", Duration::ZERO))
        .await
        .unwrap();

    assert!(
        eventually(DEADLINE, || Probe::runs(&dir).contains_key("in-hand")).await,
        "the step started"
    );
    probe.signal("TERM");
    let status = probe
        .wait_exit(DEADLINE)
        .await
        .expect("SIGTERM ends the process");
    assert_eq!(status.code(), Some(0), "clean exit");
    assert!(
        Probe::effect_done(&dir, "in-hand"),
        "the message in hand was finished"
    );

    // The message that was prefetched but not started is still on the queue.
    let _probe = start_probe(&bus, false, health).await;
    assert!(
        eventually(DEADLINE, || Probe::effect_done(&dir, "queued")).await,
        "nothing lost"
    );
    assert_eq!(
        Probe::runs(&dir)["in-hand"],
        1,
        "the finished message was acked, not redelivered"
    );

    publisher.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_long_step_resumes_after_its_process_dies() {
    let health = free_port();
    let bus = TestBus::new().consumer("probe", health_addr(health));
    let dir = Probe::dir_of(&bus);
    let jobs = bus.store_root().join(".jobs").join("probe");
    let mut probe = start_probe(&bus, true, health).await;
    let publisher = bus.publisher().await;
    let message = Probe::message("long", Duration::from_secs(3));
    publisher.publish(&message).await.unwrap();

    assert!(
        eventually(DEADLINE, || Probe::runs(&dir).contains_key("long")).await,
        "the job started"
    );
    let job = jobs.join(format!("{}.json", message.id));
    assert!(job.exists(), "the job is in the journal while it runs");
    probe.signal("KILL");
    probe
        .wait_exit(DEADLINE)
        .await
        .expect("SIGKILL ends the process");

    let _probe = start_probe(&bus, true, health).await;
    assert!(
        eventually(DEADLINE, || Probe::effect_done(&dir, "long")).await,
        "the job resumed and finished"
    );
    assert!(
        eventually(DEADLINE, || !job.exists()).await,
        "a finished job leaves the journal"
    );
    assert_eq!(
        Probe::runs(&dir)["long"],
        2,
        "resumed once from the journal"
    );

    publisher.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_is_declared_when_configured_and_consumed_like_any_other() {
    let bus = TestBus::new().consumer("probe", toml! { quorum_queue = true });
    let probe = Probe::run(&bus, bus.settings(), false);
    bus.wait_consuming("probe").await;
    let queue = bus.queue("probe");
    assert_eq!(
        queue_info(&queue, "type").as_deref(),
        Some("quorum"),
        "{queue} is a quorum queue"
    );
    let publisher = bus.publisher().await;
    publisher
        .publish(&Probe::message("quorum", Duration::ZERO))
        .await
        .unwrap();
    let dir = Probe::dir_of(&bus);
    assert!(eventually(DEADLINE, || Probe::effect_done(&dir, "quorum")).await);
    probe.stop().await;
    publisher.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_quorum_queue_the_dead_letter_and_retry_queues_are_quorum_queues_too() {
    let bus = TestBus::new().consumer(
        "probe",
        toml! {
            quorum_queue = true
            max_attempts = 2
            retry_delays_seconds = [1]
        },
    );
    let probe = Probe::run(&bus, bus.settings(), false);
    bus.wait_consuming("probe").await;
    let queue = bus.queue("probe");
    for name in [
        queue.clone(),
        format!("{queue}.dead"),
        format!("{queue}.retry.1s"),
    ] {
        assert_eq!(
            queue_info(&name, "type").as_deref(),
            Some("quorum"),
            "{name} is replicated, so it outlives any one node of a cluster"
        );
    }
    let publisher = bus.publisher().await;
    let mut message = Probe::message("flaky", Duration::ZERO);
    message.body.insert("fail".into(), Value::Bool(true));
    publisher.publish(&message).await.unwrap();
    let letter = bus
        .wait_dead_letter_saying("probe", "gave up after 2 attempts", DEADLINE)
        .await;
    assert_eq!(letter.id, Some(message.id.to_string()));
    assert_eq!(
        Probe::runs(&Probe::dir_of(&bus))["flaky"],
        2,
        "the retry came back through the quorum retry queue"
    );
    probe.stop().await;
    publisher.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_addresses_are_tried_in_turn_and_a_round_that_fails_names_each() {
    let dead = || format!("amqp://guest:s3cret@127.0.0.1:{}/%2f", free_port().port());
    let (first, last) = (dead(), dead());
    let bus = TestBus::new()
        .consumer("probe", Table::new())
        .on_brokers(vec![first.clone(), tests::amqp_url(), last.clone()]);
    let probe = Probe::run(&bus, bus.settings(), false);
    bus.wait_consuming("probe").await;
    // Whichever address a connection starts at, the dead ones are passed over.
    for round in 0..3 {
        let publisher = bus.publisher().await;
        publisher
            .publish(&Probe::message(&format!("m{round}"), Duration::ZERO))
            .await
            .unwrap();
        publisher.close().await;
    }
    let dir = Probe::dir_of(&bus);
    assert!(
        eventually(DEADLINE, || (0..3)
            .all(|round| Probe::effect_done(&dir, &format!("m{round}"))))
        .await,
        "the consumer found the live address and consumed"
    );
    probe.stop().await;

    let mut nowhere = bus.settings();
    nowhere.amqp_urls = vec![first.clone(), last.clone()];
    let error = bus::Publisher::connect(&nowhere, "nowhere")
        .await
        .unwrap_err()
        .to_string();
    for url in [&first, &last] {
        assert!(
            error.contains(&settings::redact_url(url)),
            "{url} is named: {error}"
        );
    }
    assert!(!error.contains("s3cret"), "{error}");
    bus.cleanup().await;
}

#[test]
fn a_consumer_with_a_bad_configuration_exits_78_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "amqp_url = \"http://nope\"\n").unwrap();
    let output = std::process::Command::new(PROBE_BIN)
        .arg("--config")
        .arg(&config)
        .env("PROBE_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&config.display().to_string()), "{stderr}");

    let output = std::process::Command::new(PROBE_BIN)
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(64),
        "bad arguments are a usage error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_the_broker_refuses_send_the_input_through_retries_to_the_dead_letter_queue() {
    let bus = TestBus::new().consumer(
        "probe",
        toml! {
            max_attempts = 2
            retry_delays_seconds = [1]
        },
    );
    // A full queue that rejects publishes makes the broker nack every result routed to it.
    let blocker = bus.watch(&[DONE_TOPIC]).await;
    let _policy = tests::broker::Policy::apply(
        &format!("reject-{}", bus.id),
        blocker.queue(),
        r#"{"max-length":0,"overflow":"reject-publish"}"#,
    );
    let probe = Probe::run(&bus, bus.settings(), false);
    bus.wait_consuming("probe").await;
    let publisher = bus.publisher().await;
    publisher
        .publish(&Probe::message("refused", Duration::ZERO))
        .await
        .unwrap();

    let letters = bus.wait_dead_letters("probe", 1, DEADLINE).await;
    assert_eq!(letters.len(), 1, "the input ends in the dead-letter queue");
    assert_eq!(letters[0].attempts, 2);
    assert!(
        letters[0].reason.contains("the broker refused the result"),
        "{}",
        letters[0].reason
    );
    assert_eq!(
        Probe::runs(&Probe::dir_of(&bus))["refused"],
        2,
        "one run per attempt, no tight requeue loop"
    );
    probe.stop().await;
    publisher.close().await;
    blocker.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declares_use_what_exists_and_name_what_is_missing() {
    let bus = TestBus::new().consumer("probe", Table::new());
    // An administrator's part: the topology exists before the passive consumer starts.
    let probe = Probe::run(&bus, bus.settings(), false);
    bus.wait_consuming("probe").await;
    probe.stop().await;

    let mut passive = bus.settings();
    passive.passive_declares = true;
    let probe = Probe::run(&bus, passive.clone(), false);
    bus.wait_consuming("probe").await;
    let publisher = bus.publisher().await;
    publisher
        .publish(&Probe::message("passive", Duration::ZERO))
        .await
        .unwrap();
    let dir = Probe::dir_of(&bus);
    assert!(eventually(DEADLINE, || Probe::effect_done(&dir, "passive")).await);
    probe.stop().await;

    let mut missing = passive;
    missing.publish_exchange = format!("{}.missing", bus.exchange);
    let error = bus::Publisher::connect(&missing, "passive-test")
        .await
        .expect_err("a missing exchange is not declared in passive mode");
    let text = error.to_string();
    assert!(
        text.contains(&missing.publish_exchange) && text.contains("passive_declares"),
        "the error names the exchange and the setting: {text}"
    );
    publisher.close().await;
    bus.cleanup().await;
}

/// The `delay_ms` of each "waiting before reconnecting" line of a consumer's text log.
fn reconnect_delays(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("waiting before reconnecting"))
        .filter_map(|line| {
            let value = line.split("delay_ms=").nth(1)?;
            value.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_journal_backs_off_instead_of_reconnecting_in_a_tight_loop() {
    let health = free_port();
    let bus = TestBus::new().consumer("probe", health_addr(health));
    let journal = bus.store_root().join(".jobs/probe");
    std::fs::create_dir_all(&journal).unwrap();
    let _read_only = tests::mount::Mount::read_only(&journal);
    let log = bus.dir.path().join("probe.log");
    let _probe = ProbeProcess::start_logging(
        Path::new(PROBE_BIN),
        &bus.write_config(),
        &Probe::dir_of(&bus),
        true,
        health,
        std::fs::File::create(&log).unwrap(),
    )
    .await;
    let publisher = bus.publisher().await;
    publisher
        .publish(&Probe::message("unjournaled", Duration::ZERO))
        .await
        .unwrap();

    // Every session connects fine and ends at the delivery it cannot journal; the delay
    // before the next one must still grow: 0.25-0.5 s, then 0.5-1 s, 1-2 s, 2-4 s.
    assert!(
        eventually(DEADLINE, || reconnect_delays(&log).len() >= 4).await,
        "the consumer never reconnected four times:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let delays = reconnect_delays(&log);
    for (attempt, delay) in delays.iter().take(4).enumerate() {
        let floor = 250u64 << attempt;
        assert!(
            *delay >= floor,
            "reconnect {attempt} waited {delay} ms, under the backoff's {floor} ms: {delays:?}"
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Read-only file system"),
        "the log says why: {text}"
    );
    assert!(!Probe::runs(&Probe::dir_of(&bus)).contains_key("unjournaled"));

    publisher.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_value_in_a_message_cannot_forge_a_log_line() {
    let health = free_port();
    let bus = TestBus::new().consumer("probe", health_addr(health));
    let log = bus.dir.path().join("probe.log");
    let _probe = ProbeProcess::start_logging(
        Path::new(PROBE_BIN),
        &bus.write_config(),
        &Probe::dir_of(&bus),
        false,
        health,
        std::fs::File::create(&log).unwrap(),
    )
    .await;
    let publisher = bus.publisher().await;
    let mut hostile = Probe::message("hostile", Duration::ZERO);
    hostile.body.insert(
        "stream".into(),
        Value::from("f43\n2026-11-30T00:00:00Z  INFO forged: all is well\u{0}\u{1b}[2J"),
    );
    publisher.publish(&hostile).await.unwrap();

    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(DEADLINE, || text().contains("message dead-lettered")).await,
        "the hostile message was not dead-lettered:\n{}",
        text()
    );
    let text = text();
    assert!(
        !text
            .lines()
            .any(|line| line.starts_with("2026-11-30T00:00:00Z  INFO forged")),
        "a value from a message started a log line of its own:\n{text}"
    );
    assert!(!text.contains(['\0', '\x1b']), "{text:?}");

    publisher.close().await;
    bus.cleanup().await;
}

/// What the window tests' step consumes: `{"n": 7}`.
const NUMBERED_RUN: &str = "fortnight.window.run";
/// Where its results go.
const KEPT: &str = "fortnight.window.kept";
/// Where its results for the numbers it is told to send there go.
const REFUSED: &str = "fortnight.window.refused";

/// The first run of one number stops until the test says go.
type Pause = (
    u64,
    Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
);

/// A step for watching many deliveries in flight at once: each input `{"n": 7}` gives one
/// result `{"n": 7}` (its id derived from `n`) on [`KEPT`], or on [`REFUSED`] for the numbers
/// in `refused`. It counts its runs per number; with `pause`, the first run of that number
/// tells the test and waits for its go-ahead before returning its result.
struct Numbered {
    refused: BTreeSet<u64>,
    runs: Arc<Mutex<BTreeMap<u64, usize>>>,
    pause: Option<Pause>,
}

impl Numbered {
    const INPUTS: u64 = 40;

    fn new(refused: BTreeSet<u64>) -> Self {
        Self {
            refused,
            runs: Arc::default(),
            pause: None,
        }
    }

    fn message(topic: &str, id: uuid::Uuid, n: u64) -> Outgoing {
        probe_message(
            id,
            topic,
            serde_json::Map::from_iter([("n".into(), Value::from(n))]),
        )
    }

    /// Every input, from 0 on, published (each confirmed) while no consumer takes them, so
    /// that the consumer that starts next gets a full window at once.
    async fn queue_inputs(bus: &TestBus) {
        let publisher = bus.publisher().await;
        for n in 0..Self::INPUTS {
            let message = Self::message(NUMBERED_RUN, uuid::Uuid::new_v4(), n);
            publisher.publish(&message).await.unwrap();
        }
        publisher.close().await;
    }

    fn runs(&self) -> Arc<Mutex<BTreeMap<u64, usize>>> {
        self.runs.clone()
    }
}

impl Step for Numbered {
    const NAME: &'static str = "window";
    type Input = ();

    fn topics(_: &settings::BusSettings) -> Vec<String> {
        vec![NUMBERED_RUN.to_owned()]
    }

    async fn handle(&self, _: (), message: &Incoming) -> Result<Outputs, StepError> {
        let n = message
            .body
            .get("n")
            .and_then(Value::as_u64)
            .ok_or_else(|| StepError::permanent("no `n`"))?;
        *self.runs.lock().unwrap().entry(n).or_default() += 1;
        let paused = self
            .pause
            .as_ref()
            .filter(|(at, _)| *at == n)
            .and_then(|(_, pause)| pause.lock().unwrap().take());
        if let Some((paused, go)) = paused {
            let _ = paused.send(());
            let _ = go.await;
        }
        let topic = match self.refused.contains(&n) {
            true => REFUSED,
            false => KEPT,
        };
        let id = messages::derived_id("window", &[&n.to_string()]);
        Ok(vec![Self::message(topic, id, n)])
    }
}

/// The `n` of each recorded message, and how often each came.
fn numbers(seen: &[messages::RecordLine]) -> BTreeMap<u64, usize> {
    let mut numbers = BTreeMap::new();
    for line in seen {
        let n = line.body["n"].as_u64().expect("every result has its n");
        *numbers.entry(n).or_default() += 1;
    }
    numbers
}

/// Starts and stops the window consumer once, so its queue exists and holds what is
/// published next until a consumer takes it.
async fn declare_window_queue(bus: &TestBus) {
    let running = Running::start(&bus.settings(), Numbered::new(BTreeSet::new()));
    bus.wait_consuming(Numbered::NAME).await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_result_in_a_full_window_retries_exactly_its_input() {
    let bus = TestBus::new().consumer(
        Numbered::NAME,
        toml! {
            max_attempts = 2
            retry_delays_seconds = [1]
        },
    );
    let mut kept = bus.watch(&[KEPT]).await;
    // A full queue that rejects publishes: the broker nacks every result routed to it.
    let blocker = bus.watch(&[REFUSED]).await;
    let _policy = tests::broker::Policy::apply(
        &format!("reject-{}", bus.id),
        blocker.queue(),
        r#"{"max-length":0,"overflow":"reject-publish"}"#,
    );
    declare_window_queue(&bus).await;
    Numbered::queue_inputs(&bus).await;
    // Scattered through the first window of 25 and the next.
    let refused = BTreeSet::from([1, 2, 9, 24, 25, 33]);
    let step = Numbered::new(refused.clone());
    let runs = step.runs();
    let running = Running::start(&bus.settings(), step);

    let letters = bus
        .wait_dead_letters(Numbered::NAME, refused.len(), DEADLINE)
        .await;
    let lettered: BTreeSet<u64> = letters
        .iter()
        .map(|letter| {
            serde_json::from_slice::<Value>(&letter.body).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        lettered, refused,
        "exactly the refused inputs are dead-lettered"
    );
    for letter in &letters {
        assert_eq!(letter.attempts, 2, "retried once, then given up");
        assert!(
            letter.reason.contains("the broker refused the result"),
            "{}",
            letter.reason
        );
    }
    let others = Numbered::INPUTS as usize - refused.len();
    kept.wait_for(others, DEADLINE).await;
    // Late duplicates, if any, would come within a moment of the others.
    let results = numbers(kept.settle(Duration::from_secs(1)).await);
    let expected: BTreeMap<u64, usize> = (0..Numbered::INPUTS)
        .filter(|n| !refused.contains(n))
        .map(|n| (n, 1))
        .collect();
    assert_eq!(results, expected, "every other input's result, once");
    let expected_runs: BTreeMap<u64, usize> = (0..Numbered::INPUTS)
        .map(|n| (n, if refused.contains(&n) { 2 } else { 1 }))
        .collect();
    assert_eq!(
        *runs.lock().unwrap(),
        expected_runs,
        "the refused inputs ran once per attempt, every other input once: none was requeued"
    );

    running.stop().await;
    assert_eq!(
        queue_info(&bus.queue(Numbered::NAME), "messages").as_deref(),
        Some("0"),
        "every input was acked, none is left to deliver again"
    );
    kept.close().await;
    blocker.close().await;
    bus.cleanup().await;
}

/// The broker's id (`pid`) of the one connection whose client properties name `app`.
fn connection_of(app: &str) -> String {
    let listed = tests::broker::rabbitmqctl(&[
        "list_connections",
        "pid",
        "client_properties",
        "--no-table-headers",
        "--quiet",
    ])
    .expect("rabbitmqctl list_connections");
    let mine: Vec<&str> = listed
        .lines()
        .filter(|line| line.contains(&format!("{{\"app\",\"{app}\"}}")))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(mine.len(), 1, "one connection is {app}'s: {listed}");
    mine[0].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_with_a_window_in_flight_loses_no_input_and_acks_each_once() {
    let bus = TestBus::new().consumer(Numbered::NAME, Table::new());
    let mut kept = bus.watch(&[KEPT]).await;
    declare_window_queue(&bus).await;
    Numbered::queue_inputs(&bus).await;
    let (paused, at_pause) = oneshot::channel();
    let (go, gone) = oneshot::channel();
    let pause_at = 10;
    let mut step = Numbered::new(BTreeSet::new());
    step.pause = Some((pause_at, Mutex::new(Some((paused, gone)))));
    let runs = step.runs();
    // Its own name in the broker's connection list, so the test closes no other connection.
    let app = format!("window-{}", bus.id);
    let mut settings = bus.settings();
    settings.client_properties.app = Some(app.clone());
    let running = Running::start(&settings, step);

    // The step is at input 10: the inputs before it are published and maybe not yet acked,
    // the rest of the window is delivered and waiting.
    at_pause.await.expect("the step reaches its pause");
    let connection = connection_of(&app);
    tests::broker::rabbitmqctl(&["close_connection", &connection, "closed by the test"])
        .expect("rabbitmqctl close_connection");
    let _ = go.send(());

    // Results whose inputs were not acked before the close come again, so 40 results may
    // not yet be 40 numbers.
    let mut count = Numbered::INPUTS as usize;
    let results = loop {
        let seen = kept.wait_for(count, DEADLINE).await;
        let results = numbers(seen);
        if results.len() == Numbered::INPUTS as usize || seen.len() < count {
            break results;
        }
        count = seen.len() + 1;
    };
    let all: BTreeSet<u64> = (0..Numbered::INPUTS).collect();
    assert_eq!(
        results.keys().copied().collect::<BTreeSet<_>>(),
        all,
        "every input's result arrived at least once"
    );
    assert!(
        eventually(DEADLINE, || queue_info(
            &bus.queue(Numbered::NAME),
            "messages"
        )
        .as_deref()
            == Some("0"))
        .await,
        "every input is acked in the end"
    );
    assert!(
        runs.lock().unwrap()[&pause_at] >= 2,
        "the input in hand when the connection closed ran again on the new one"
    );
    running.stop().await;
    assert_eq!(
        queue_info(&bus.queue(Numbered::NAME), "messages").as_deref(),
        Some("0"),
        "nothing was left unacked to come back"
    );
    assert!(
        bus.dead_letters(Numbered::NAME).await.is_empty(),
        "nothing dead-lettered"
    );
    kept.close().await;
    bus.cleanup().await;
}
