//! `fortnight topology export` against the real broker: in a fresh virtual host, what the
//! command writes is imported with `rabbitmqctl import_definitions`, and a consumer with
//! `passive_declares = true` (which declares nothing and binds nothing) then starts and routes
//! messages through every kind of queue it needs: its bound queue, a retry queue whose TTL and
//! dead-letter route bring the message back, and its dead-letter queue. A consumer that may
//! declare finds the same queues equivalent, so the arguments are exactly the ones it uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bus::Step;
use karma_tracker::KarmaTracker;
use messages::{KarmaSubmitted, Message, Outgoing};
use serde_json::{Value, json};
use settings::Settings;
use tests::broker::rabbitmqctl;
use tests::config::{self, Table, toml};
use tests::process::{DEADLINE, assert_success};
use tests::{Running, eventually};

/// A virtual host of its own, deleted when dropped (a failing test cleans up too).
struct Vhost {
    name: String,
}

impl Vhost {
    fn create(id: &str) -> Self {
        let name = format!("fortnight-test-{id}");
        rabbitmqctl(&["add_vhost", &name]).expect("rabbitmqctl add_vhost");
        let vhost = Self { name };
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ])
        .expect("rabbitmqctl set_permissions");
        vhost
    }

    /// The test broker's URL with this virtual host as its path.
    fn amqp_url(&self) -> String {
        let url = tests::amqp_url();
        let (server, _) = url.rsplit_once('/').expect("amqp_url has a vhost path");
        format!("{server}/{}", self.name)
    }

    /// `rabbitmqctl list_<what> -p VHOST COLUMNS...` as JSON objects.
    fn list(&self, what: &str, columns: &[&str]) -> Vec<BTreeMap<String, Value>> {
        let command = format!("list_{what}");
        let mut args = vec![
            command.as_str(),
            "-p",
            &self.name,
            "--formatter",
            "json",
            "-q",
        ];
        args.extend_from_slice(columns);
        let out = rabbitmqctl(&args).unwrap_or_else(|e| panic!("rabbitmqctl {command}: {e}"));
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("rabbitmqctl {command} is not JSON ({e}): {out}"))
    }

    /// Each queue's name -> `column` (consumers, messages, type).
    fn queue_column(&self, column: &str) -> BTreeMap<String, Value> {
        self.list("queues", &["name", column])
            .into_iter()
            .map(|mut row| {
                (
                    row["name"].as_str().unwrap().to_owned(),
                    row.remove(column).unwrap(),
                )
            })
            .collect()
    }

    /// Each queue's arguments as `{key: value}`, the types dropped.
    fn queue_arguments(&self) -> BTreeMap<String, Value> {
        self.list("queues", &["name", "arguments"])
            .into_iter()
            .map(|row| {
                let arguments: serde_json::Map<String, Value> = row["arguments"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|triple| (triple[0].as_str().unwrap().to_owned(), triple[2].clone()))
                    .collect();
                (
                    row["name"].as_str().unwrap().to_owned(),
                    Value::Object(arguments),
                )
            })
            .collect()
    }

    fn count(&self, queue: &str, column: &str) -> u64 {
        self.queue_column(column)
            .get(queue)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.name]);
    }
}

fn fortnight(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("FORTNIGHT_CONFIG")
        .output()
        .expect("the fortnight binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_definitions_are_all_a_passive_consumer_needs() {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let vhost = Vhost::create(&id);
    let dir = tempfile::tempdir().unwrap();
    let (exchange, prefix) = (format!("fortnight.test.{id}"), format!("test.{id}"));
    let queue = |consumer: &str| format!("fortnight.test.{id}.{consumer}");
    let mut config = toml! {
        amqp_url = (vhost.amqp_url())
        publish_exchange = (exchange.as_str())
        topic_prefix = (prefix.as_str())
        passive_declares = true

        // Robosignatory's topics: the signer's and releaser's bindings follow them.
        [signing_topics]
        requested = "coreos.build.request.artifacts-sign"
        finished = "coreos.build.request.artifacts-sign.finished"
    };
    let root = dir.path().join("store");
    config::merge(
        &mut config,
        config::store_config(
            &root,
            "fedora/43/x86_64/atomic-host",
            &root.join("repo"),
            Table::new(),
        ),
    );
    let consumers: Table = registry::names()
        .iter()
        .map(|consumer| {
            let keys = match *consumer {
                "karma-tracker" => toml! {
                    quorum_queue = true
                    retry_delays_seconds = [1, 2]
                    max_attempts = 2
                },
                _ => Table::new(),
            };
            let section = config::merged(toml! { queue = (queue(consumer)) }, keys);
            ((*consumer).to_owned(), toml::Value::Table(section))
        })
        .collect();
    config.insert("consumers".to_owned(), toml::Value::Table(consumers));
    let toml = config::to_toml(&config);
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &toml).unwrap();
    let settings = Settings::from_toml(&toml).expect("the test configuration is valid");
    assert!(
        bus::Publisher::connect(&settings, "topology-test")
            .await
            .is_err(),
        "the fresh vhost has no exchange, and a passive client may not declare it"
    );

    let file = dir.path().join("definitions.json");
    let output = fortnight(
        &config,
        &[
            "topology",
            "export",
            "--vhost",
            &vhost.name,
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert_success(&output, "fortnight topology export --output");
    let exported: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    // Without --vhost, the one amqp_url names.
    let output = fortnight(&config, &["topology", "export"]);
    assert_success(&output, "fortnight topology export to standard output");
    let printed: Value = serde_json::from_slice(&output.stdout).expect("stdout is the JSON");
    assert_eq!(
        printed, exported,
        "standard output and --output write the same, for amqp_url's vhost"
    );

    rabbitmqctl(&["import_definitions", file.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("rabbitmqctl import_definitions: {e}"));

    // What every consumer needs: its queue, dead-letter queue and one retry queue per delay.
    let mut expected: BTreeMap<String, Value> = BTreeMap::new();
    for consumer in registry::names() {
        // A quorum consumer's dead-letter and retry queues are quorum queues too, and its
        // retry queues dead-letter at least once.
        let (kind, delays) = match consumer {
            "karma-tracker" => (json!({"x-queue-type": "quorum"}), vec![1, 2]),
            _ => (json!({}), vec![10, 60, 300]),
        };
        let q = queue(consumer);
        expected.insert(q.clone(), kind.clone());
        expected.insert(format!("{q}.dead"), kind.clone());
        for delay in delays {
            let mut retry = json!({
                "x-message-ttl": delay * 1000,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": q,
            });
            if kind != json!({}) {
                retry["x-queue-type"] = "quorum".into();
                retry["x-dead-letter-strategy"] = "at-least-once".into();
                retry["x-overflow"] = "reject-publish".into();
            }
            expected.insert(format!("{q}.retry.{delay}s"), retry);
        }
    }
    // The import finishes in the background.
    let imported = eventually(DEADLINE, || {
        vhost.queue_column("name").len() >= expected.len()
    })
    .await;
    assert!(
        imported,
        "the import never created {} queues",
        expected.len()
    );
    assert_eq!(
        vhost.queue_arguments(),
        expected,
        "exactly these queues, with these arguments"
    );
    assert_eq!(
        vhost.queue_column("type")[&queue("karma-tracker")],
        "quorum",
        "the quorum flag made a quorum queue"
    );

    let exchanges = vhost.list("exchanges", &["name", "type", "durable"]);
    assert!(
        exchanges.iter().any(|e| e["name"] == exchange.as_str()
            && e["type"] == "topic"
            && e["durable"] == true),
        "a durable topic exchange {exchange}: {exchanges:?}"
    );
    let bindings: BTreeSet<(String, String)> = vhost
        .list(
            "bindings",
            &["source_name", "destination_name", "routing_key"],
        )
        .into_iter()
        .filter(|b| b["source_name"] == exchange.as_str())
        .map(|b| {
            let text = |key: &str| b[key].as_str().unwrap().to_owned();
            (text("destination_name"), text("routing_key"))
        })
        .collect();
    let topics: [(&str, Vec<String>); 6] = [
        (
            "image-builder",
            image_builder::ImageBuilder::topics(&settings),
        ),
        ("image-tester", image_tester::ImageTester::topics(&settings)),
        ("karma-tracker", KarmaTracker::topics(&settings)),
        ("releaser", releaser::Releaser::topics(&settings)),
        ("signer", signer::Signer::topics(&settings)),
        (
            "site-publisher",
            site_publisher::SitePublisher::topics(&settings),
        ),
    ];
    let wanted: BTreeSet<(String, String)> = topics
        .iter()
        .flat_map(|(consumer, topics)| {
            topics
                .iter()
                .map(|topic| (queue(consumer), format!("{prefix}.{topic}")))
        })
        .collect();
    assert_eq!(
        bindings, wanted,
        "every consumer's topics, with the prefix, and no others"
    );
    assert!(
        wanted.contains(&(
            queue("karma-tracker"),
            format!("{prefix}.fortnight.karma.submitted")
        )),
        "votes reach the karma tracker"
    );
    for (consumer, topic) in [
        ("signer", "coreos.build.request.artifacts-sign"),
        ("releaser", "coreos.build.request.artifacts-sign.finished"),
    ] {
        assert!(
            bindings.contains(&(queue(consumer), format!("{prefix}.{topic}"))),
            "the {consumer} reads the configured signing topic {topic}: {bindings:?}"
        );
    }

    // A consumer that may not declare starts on what was imported.
    let tracker_queue = queue("karma-tracker");
    let dead = format!("{tracker_queue}.dead");
    let running = Running::start(
        &settings,
        KarmaTracker::new(Arc::new(settings.clone())).expect("the karma tracker sets up"),
    );
    let consuming = eventually(DEADLINE, || vhost.count(&tracker_queue, "consumers") == 1).await;
    assert!(
        consuming,
        "the passive karma tracker never consumed {tracker_queue}"
    );

    let publisher = bus::Publisher::connect(&settings, "topology-test")
        .await
        .expect("the imported exchange passes the passive check");
    // Not JSON: dead-lettered at once, through the imported dead-letter queue.
    let garbage = publisher
        .publish_raw(KarmaSubmitted::TOPIC, b"not json", &BTreeMap::new())
        .await
        .unwrap();
    // A vote the store cannot be read for (the stream's directory is a file): retried once
    // through the 1s retry queue, whose TTL and dead-letter route must bring it back to the
    // consumer for its second and last attempt.
    std::fs::write(root.join("f43"), "not a directory").unwrap();
    let vote = Outgoing::new(
        uuid::Uuid::new_v4(),
        &KarmaSubmitted {
            stream: "f43".parse().unwrap(),
            version: "43.20260101.0".parse().unwrap(),
            user: "guest".parse().unwrap(),
            karma: 1,
            comment: None,
        },
    );
    publisher.publish_as(&vote, "guest").await.unwrap();

    let both = eventually(Duration::from_secs(30), || {
        vhost.count(&dead, "messages") >= 2
    })
    .await;
    let letters = bus::dead_letters::list(&settings, "karma-tracker")
        .await
        .expect("the dead-letter queue is readable");
    assert!(both, "two dead letters expected in {dead}: {letters:?}");
    let letter = |id: &str| {
        letters
            .iter()
            .find(|l| l.id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("no dead letter {id} in {letters:?}"))
    };
    let bad = letter(&garbage);
    assert_eq!(bad.attempts, 0, "bad input is not retried");
    assert_eq!(bad.body, b"not json");
    let retried = letter(&vote.id.to_string());
    assert_eq!(
        retried.attempts, 2,
        "back from the retry queue once: {retried:?}"
    );
    assert!(
        retried.reason.starts_with("gave up after 2 attempts")
            && retried
                .reason
                .contains("cannot read the candidate's test reports"),
        "{}",
        retried.reason
    );
    assert_eq!(
        retried.routing_key,
        format!("{prefix}.{}", KarmaSubmitted::TOPIC),
        "it came through the exchange binding"
    );
    publisher.close().await;
    running.stop().await;
    let stopped = eventually(DEADLINE, || vhost.count(&tracker_queue, "consumers") == 0).await;
    assert!(
        stopped,
        "the passive karma tracker still consumes after it stopped"
    );

    // A consumer that may declare accepts every imported queue as its own: RabbitMQ refuses a
    // declare whose arguments differ from the existing queue's, and it would never consume.
    let mut active = settings.clone();
    active.passive_declares = false;
    let running = Running::start(
        &active,
        KarmaTracker::new(Arc::new(active.clone())).expect("the karma tracker sets up"),
    );
    let consuming = eventually(DEADLINE, || vhost.count(&tracker_queue, "consumers") == 1).await;
    assert!(
        consuming,
        "declaring over the imported queues failed; see the consumer's log"
    );
    running.stop().await;
    assert_eq!(
        vhost.queue_column("name").len(),
        expected.len(),
        "declaring added no queue"
    );
}
