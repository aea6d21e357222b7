//! Tests that restart or reconfigure the broker. They live in this one test binary and each
//! holds `broker::serial()`, so they never overlap with each other; cargo runs test binaries
//! one after another, so they never overlap with the rest either.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Outputs, Step, StepError};
use messages::Incoming;
use tests::broker::{self, ConsumerTimeout, Stopped};
use tests::config::Table;
use tests::probe::{DONE_TOPIC, Probe};
use tests::{Running, TestBus, eventually};

/// Collects the ids of the probe's results, duplicates included.
#[derive(Debug, Default)]
struct Sink {
    ids: Arc<Mutex<Vec<String>>>,
}

impl Step for Sink {
    const NAME: &'static str = "sink";
    type Input = ();

    fn topics(_: &settings::BusSettings) -> Vec<String> {
        vec![DONE_TOPIC.to_owned()]
    }

    async fn handle(&self, _: (), message: &Incoming) -> Result<Outputs, StepError> {
        let id = message.id.clone().unwrap_or_default();
        self.ids.lock().expect("sink lock").push(id);
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_with_hundreds_of_messages_in_flight_loses_nothing_and_doubles_nothing() {
    let _serial = broker::serial().await;
    const COUNT: usize = 300;
    let bus = TestBus::new()
        .consumer("probe", Table::new())
        .consumer("sink", Table::new());
    let dir = Probe::dir_of(&bus);
    let sink = Sink::default();
    let sink_ids = sink.ids.clone();
    let sink_task = Running::start(&bus.settings(), sink);
    let probe_task = Probe::run(&bus, bus.settings(), false);
    let keys: Vec<String> = (0..COUNT).map(|i| format!("m{i:03}")).collect();
    bus.wait_consuming("probe").await;
    bus.wait_consuming("sink").await;
    let publisher = bus.publisher().await;
    for key in &keys {
        publisher
            .publish(&Probe::message(key, Duration::from_millis(10)))
            .await
            .unwrap();
    }
    publisher.close().await;

    assert!(
        eventually(Duration::from_secs(60), || Probe::runs(&dir).len()
            >= COUNT / 5)
        .await,
        "work started before the restart"
    );
    {
        let _stopped = Stopped::stop();
        let done_before = Probe::runs(&dir).len();
        assert!(
            done_before < COUNT,
            "the restart happened with messages in flight ({done_before} done)"
        );
        // The outage lasts long enough for every client to notice its connection is gone.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    let all_done = eventually(Duration::from_secs(120), || {
        keys.iter().all(|k| Probe::effect_done(&dir, k))
    })
    .await;
    assert!(all_done, "every message was processed after the restart");
    let expected: BTreeSet<String> = keys.iter().map(|k| Probe::done_id(k)).collect();
    let delivered = eventually(Duration::from_secs(60), || {
        let ids = sink_ids.lock().expect("sink lock");
        ids.iter().cloned().collect::<BTreeSet<_>>() == expected
    })
    .await;
    let ids = sink_ids.lock().expect("sink lock").clone();
    assert!(
        delivered,
        "every result reached the next consumer ({} of {COUNT})",
        ids.len()
    );
    let distinct: BTreeSet<_> = ids.iter().collect();
    let runs = Probe::runs(&dir);
    let rerun = runs.values().filter(|n| **n > 1).count();
    println!(
        "{COUNT} messages: {rerun} ran again after the restart, {} duplicate results (same id), {} distinct",
        ids.len() - distinct.len(),
        distinct.len()
    );
    assert!(
        ids.iter().all(|id| expected.contains(id)),
        "duplicates carry the derived id, so downstream dedups"
    );

    probe_task.stop().await;
    sink_task.stop().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_longer_than_the_consumer_timeout_completes_once_when_journaled() {
    let _serial = broker::serial().await;
    let _timeout = ConsumerTimeout::set(Duration::from_secs(5));
    let step = Duration::from_secs(12);

    // Control: without the journal the broker takes the delivery back mid-step.
    let held = TestBus::new().consumer("probe", Table::new());
    let held_dir = Probe::dir_of(&held);
    let running = Probe::run(&held, held.settings(), false);
    held.wait_consuming("probe").await;
    let publisher = held.publisher().await;
    publisher
        .publish(&Probe::message("held", step))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(90), || Probe::runs(&held_dir)
            .get("held")
            .is_some_and(|n| *n >= 2))
        .await,
        "a delivery held past consumer_timeout is redelivered (so the timeout is in force)"
    );
    publisher.close().await;
    running.stop().await;
    held.cleanup().await;

    let bus = TestBus::new().consumer("probe", Table::new());
    let dir = Probe::dir_of(&bus);
    let running = Probe::run(&bus, bus.settings(), true);
    bus.wait_consuming("probe").await;
    let publisher = bus.publisher().await;
    publisher
        .publish(&Probe::message("journaled", step))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(90), || Probe::effect_done(
            &dir,
            "journaled"
        ))
        .await,
        "the long step finished"
    );
    let jobs = bus.store_root().join(".jobs").join("probe");
    assert!(
        eventually(Duration::from_secs(10), || std::fs::read_dir(&jobs)
            .is_ok_and(|d| d.count() == 0))
        .await,
        "the journal is empty once the result is confirmed"
    );
    assert_eq!(
        Probe::runs(&dir)["journaled"],
        1,
        "the step ran exactly once"
    );
    assert!(bus.dead_letters("probe").await.is_empty());
    publisher.close().await;
    running.stop().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificates_log_in_with_external_and_unknown_ones_are_refused() {
    let _serial = broker::serial().await;
    let node = tokio::task::spawn_blocking(broker::Node::start_tls)
        .await
        .expect("the TLS node starts");
    let config = |name: &str| {
        format!(
            "amqp_url = \"amqps://localhost:{port}/%2f\"\npublish_exchange = \"fortnight.tls\"\n\
             [tls]\nca_cert = \"{ca}\"\ncertfile = \"{cert}\"\nkeyfile = \"{key}\"\n\
             user = \"{user}\"\n[store]\nroot = \"{root}\"\n[streams]\n",
            port = node.port,
            ca = node.file("ca.pem").display(),
            cert = node.file(&format!("{name}.pem")).display(),
            key = node.file(&format!("{name}.key")).display(),
            root = node.dir().display(),
            user = broker::TLS_CLIENT,
        )
    };
    let settings = settings::Settings::from_toml(&config("client")).expect("TLS settings");
    let mut recording = bus::record::subscribe(&settings, &[tests::probe::RUN_TOPIC.to_owned()])
        .await
        .expect("the client certificate is accepted for consuming");
    let publisher = bus::Publisher::connect(&settings, "tls-test")
        .await
        .expect("the client certificate is accepted for publishing");
    let connections = node
        .ctl(&["list_connections", "user", "auth_mechanism", "ssl"])
        .expect("connections of the TLS node");
    assert!(
        connections.contains(&format!("{}\tEXTERNAL\ttrue", broker::TLS_CLIENT)),
        "logged in as the certificate's CN with EXTERNAL over TLS:\n{connections}"
    );
    // tls.user names the certificate's login, which the broker accepts as `user_id`: the
    // runtime signs its retry copies with it to carry a vote's sender through retries.
    assert_eq!(
        bus::Publisher::broker_user(&settings).as_deref(),
        Some(broker::TLS_CLIENT)
    );
    publisher
        .publish_as(
            &Probe::message("over-tls", Duration::ZERO),
            broker::TLS_CLIENT,
        )
        .await
        .expect("publish signed as tls.user confirmed over TLS");
    let line = tokio::time::timeout(Duration::from_secs(30), recording.next())
        .await
        .expect("the message arrives")
        .expect("the recording is open")
        .expect("a message");
    assert_eq!(line.body["key"], "over-tls");
    publisher.close().await;
    recording.close().await;

    let rogue = settings::Settings::from_toml(&config("rogue")).expect("TLS settings");
    let error = bus::Publisher::connect(&rogue, "rogue")
        .await
        .expect_err("a certificate from an unknown CA is refused");
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "cannot connect to amqps://localhost:{}",
            node.port
        )) && text.contains("[tls]"),
        "the error names the broker and what to check: {text}"
    );
    tokio::task::spawn_blocking(move || drop(node))
        .await
        .expect("the TLS node stops");
}
