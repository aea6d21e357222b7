//! What a consumer declares on the broker.
//!
//! For a consumer whose queue is `Q`:
//! - the publish exchange (a durable topic exchange; `amq.*` exchanges already exist);
//! - `Q`, durable (a quorum queue when `consumers.<name>.quorum_queue`), bound to
//!   `topic_prefix + topic` for each of the step's topics;
//! - `Q.dead`, the dead-letter queue: the runtime publishes there itself (through the default
//!   exchange) so that every dead letter carries the consumer, the reason, the attempts and the
//!   original routing key as headers;
//! - `Q.retry.<N>s` for every configured retry delay: a queue nobody consumes, with a message
//!   TTL of N seconds whose expired messages are dead-lettered back to `Q`. RabbitMQ 3.10 has
//!   no delayed delivery, and one queue per delay (instead of per-message TTLs in one queue)
//!   keeps a long delay from holding shorter ones behind it.
//!
//! With `consumers.<name>.quorum_queue` all three kinds are quorum queues, replicated over a
//! cluster's nodes (see [`Topology::queue_specs`]).
//!
//! With `passive_declares` everything is only checked, so an administrator creates these:
//! [`Definitions`] lists them in RabbitMQ's definitions format (`fortnight topology export`).
//! [`Topology::queue_specs`] is the one list of queues and their arguments that both
//! `Topology::declare` and [`Definitions`] read, so what an administrator imports is what a
//! consumer would have declared, argument for argument.

use std::collections::BTreeMap;
use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use messages::envelope::add_prefix;
use serde::{Deserialize, Serialize};
use settings::BusSettings;

use crate::BusError;

/// Every exchange and queue Fortnight declares survives a broker restart; none is
/// auto-deleted (the recording queues of `fortnight record` are the CLI's own).
const DURABLE: bool = true;

/// The names a consumer uses on the broker.
#[derive(Debug, Clone)]
pub struct Topology {
    pub exchange: String,
    pub queue: String,
    pub dead_letter_queue: String,
    /// `(delay, queue)`, shortest delay first.
    pub retry_queues: Vec<(Duration, String)>,
    /// Full routing keys bound to `queue`.
    pub bindings: Vec<String>,
    quorum: bool,
    passive: bool,
}

/// The dead-letter queue of a consumer queue.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

impl Topology {
    pub fn new(settings: &BusSettings, consumer: &str, topics: &[String]) -> Self {
        let queue = settings.queue_name(consumer);
        let config = settings.consumer(consumer);
        let mut delays = config.retry_delays_seconds.clone();
        delays.sort_unstable();
        delays.dedup();
        Self {
            exchange: settings.publish_exchange.clone(),
            dead_letter_queue: dead_letter_queue(&queue),
            retry_queues: delays
                .into_iter()
                .map(|seconds| {
                    (
                        Duration::from_secs(seconds),
                        format!("{queue}.retry.{seconds}s"),
                    )
                })
                .collect(),
            bindings: topics
                .iter()
                .map(|t| add_prefix(t, &settings.topic_prefix))
                .collect(),
            queue,
            quorum: config.quorum_queue,
            passive: settings.passive_declares,
        }
    }

    /// The retry queue for a wanted delay: the shortest configured delay at least that long,
    /// or the longest one.
    pub fn retry_queue(&self, wanted: Duration) -> &(Duration, String) {
        self.retry_queues
            .iter()
            .find(|(delay, _)| *delay >= wanted)
            .or_else(|| self.retry_queues.last())
            .expect("settings validation guarantees at least one retry delay")
    }

    /// Every queue this consumer owns with the arguments it is declared with: the main queue
    /// (`x-queue-type = quorum` when configured), the dead-letter queue, and the retry queues
    /// (a TTL and a dead-letter route back to the main queue through the default exchange).
    /// The one source for `Topology::declare` and [`Definitions`].
    ///
    /// With `quorum_queue` all of them are quorum queues. On a cluster a classic queue lives
    /// on the one node that declared it, so a dead-letter or retry queue left classic would
    /// die with that node and keep the consumer from declaring its topology anywhere else.
    /// A quorum retry queue dead-letters at least once (`x-dead-letter-strategy`, which needs
    /// `x-overflow = reject-publish`): a message whose delay ends while the main queue has no
    /// majority waits instead of being dropped.
    pub fn queue_specs(&self) -> Vec<QueueSpec> {
        let replicated = |spec: QueueSpec| match self.quorum {
            true => spec.with("x-queue-type", Argument::Text("quorum".to_owned())),
            false => spec,
        };
        let mut all = vec![
            replicated(QueueSpec::new(&self.queue)),
            replicated(QueueSpec::new(&self.dead_letter_queue)),
        ];
        all.extend(self.retry_queues.iter().map(|(delay, name)| {
            let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            let retry = replicated(QueueSpec::new(name))
                .with("x-message-ttl", Argument::Integer(ttl))
                .with("x-dead-letter-exchange", Argument::Text(String::new()))
                .with(
                    "x-dead-letter-routing-key",
                    Argument::Text(self.queue.clone()),
                );
            match self.quorum {
                true => retry
                    .with(
                        "x-dead-letter-strategy",
                        Argument::Text("at-least-once".to_owned()),
                    )
                    .with("x-overflow", Argument::Text("reject-publish".to_owned())),
                false => retry,
            }
        }));
        all
    }

    /// Declares (or, passively, checks) the exchange, the queues and the bindings.
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), BusError> {
        declare_exchange(channel, &self.exchange, self.passive).await?;
        for spec in self.queue_specs() {
            self.queue(channel, &spec.name, spec.field_table()).await?;
        }
        if !self.passive {
            for key in &self.bindings {
                channel
                    .queue_bind(
                        &self.queue,
                        &self.exchange,
                        key,
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|source| {
                        BusError::declare("binding", &format!("{} -> {key}", self.queue), source)
                    })?;
            }
        }
        Ok(())
    }

    async fn queue(
        &self,
        channel: &Channel,
        name: &str,
        arguments: FieldTable,
    ) -> Result<(), BusError> {
        channel
            .queue_declare(
                name,
                QueueDeclareOptions {
                    durable: DURABLE,
                    passive: self.passive,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .map(drop)
            .map_err(|source| BusError::declare("queue", name, source))
    }

    /// Every queue this consumer owns.
    pub fn queues(&self) -> Vec<String> {
        self.queue_specs()
            .into_iter()
            .map(|spec| spec.name)
            .collect()
    }
}

/// A queue argument. RabbitMQ's own (`x-message-ttl`, `x-dead-letter-exchange`, ...) are
/// integers or strings; in JSON each is the plain value, on the wire a long long integer or a
/// long string, which is how RabbitMQ compares them when a queue is declared again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Argument {
    Integer(i64),
    Text(String),
}

impl Argument {
    fn to_amqp(&self) -> AMQPValue {
        match self {
            Self::Integer(n) => AMQPValue::LongLongInt(*n),
            Self::Text(text) => AMQPValue::LongString(text.as_str().into()),
        }
    }
}

/// One queue and the arguments it is declared with (all queues are durable and never
/// auto-deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub arguments: BTreeMap<String, Argument>,
}

impl QueueSpec {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            arguments: BTreeMap::new(),
        }
    }

    fn with(mut self, key: &str, value: Argument) -> Self {
        self.arguments.insert(key.to_owned(), value);
        self
    }

    /// The arguments as `queue.declare` sends them.
    pub fn field_table(&self) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in &self.arguments {
            table.insert(key.as_str().into(), value.to_amqp());
        }
        table
    }
}

/// What consumers need on a broker where they may not declare, in RabbitMQ's definitions
/// format: the `queues`, `exchanges` and `bindings` parts of what `rabbitmqctl
/// export_definitions` writes, so `rabbitmqctl import_definitions FILE`, the management API's
/// `POST /api/definitions` or Ansible create them. Serialize it with `serde_json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    pub queues: Vec<QueueDefinition>,
    pub exchanges: Vec<ExchangeDefinition>,
    pub bindings: Vec<BindingDefinition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDefinition {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub arguments: BTreeMap<String, Argument>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    Topic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDefinition {
    pub name: String,
    pub vhost: String,
    #[serde(rename = "type")]
    pub kind: ExchangeType,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: BTreeMap<String, Argument>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationType {
    Queue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingDefinition {
    pub source: String,
    pub vhost: String,
    pub destination: String,
    pub destination_type: DestinationType,
    pub routing_key: String,
    pub arguments: BTreeMap<String, Argument>,
}

/// Why consumers' topologies cannot be one set of definitions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionsError {
    #[error(
        "queue `{queue}` is wanted with different arguments ({first:?} and {second:?}); give each consumer its own `queue` in [consumers.<name>]"
    )]
    ConflictingQueue {
        queue: String,
        first: BTreeMap<String, Argument>,
        second: BTreeMap<String, Argument>,
    },
}

impl Definitions {
    /// The definitions for `topologies` in virtual host `vhost`: every queue with its
    /// arguments, the publish exchange unless it is one of the broker's own `amq.*`, and every
    /// binding. What several consumers share (the exchange) is listed once; a queue two
    /// consumers want with different arguments is an error.
    pub fn new(vhost: &str, topologies: &[Topology]) -> Result<Self, DefinitionsError> {
        let mut definitions = Self {
            queues: Vec::new(),
            exchanges: Vec::new(),
            bindings: Vec::new(),
        };
        for topology in topologies {
            definitions.add_exchange(vhost, &topology.exchange);
            for spec in topology.queue_specs() {
                definitions.add_queue(vhost, spec)?;
            }
            for key in &topology.bindings {
                let binding = BindingDefinition {
                    source: topology.exchange.clone(),
                    vhost: vhost.to_owned(),
                    destination: topology.queue.clone(),
                    destination_type: DestinationType::Queue,
                    routing_key: key.clone(),
                    arguments: BTreeMap::new(),
                };
                if !definitions.bindings.contains(&binding) {
                    definitions.bindings.push(binding);
                }
            }
        }
        Ok(definitions)
    }

    fn add_exchange(&mut self, vhost: &str, name: &str) {
        if is_broker_exchange(name) || self.exchanges.iter().any(|e| e.name == name) {
            return;
        }
        self.exchanges.push(ExchangeDefinition {
            name: name.to_owned(),
            vhost: vhost.to_owned(),
            kind: ExchangeType::Topic,
            durable: DURABLE,
            auto_delete: false,
            internal: false,
            arguments: BTreeMap::new(),
        });
    }

    fn add_queue(&mut self, vhost: &str, spec: QueueSpec) -> Result<(), DefinitionsError> {
        if let Some(known) = self.queues.iter().find(|q| q.name == spec.name) {
            if known.arguments == spec.arguments {
                return Ok(());
            }
            return Err(DefinitionsError::ConflictingQueue {
                queue: spec.name,
                first: known.arguments.clone(),
                second: spec.arguments,
            });
        }
        self.queues.push(QueueDefinition {
            name: spec.name,
            vhost: vhost.to_owned(),
            durable: DURABLE,
            auto_delete: false,
            arguments: spec.arguments,
        });
        Ok(())
    }
}

/// Whether `exchange` is one of the broker's own (`amq.*`): it always exists, and may be
/// neither declared, exported nor deleted.
fn is_broker_exchange(exchange: &str) -> bool {
    exchange.starts_with("amq.")
}

/// Declares (or, passively, checks) a durable topic exchange; `amq.*` ones always exist.
pub(crate) async fn declare_exchange(
    channel: &Channel,
    exchange: &str,
    passive: bool,
) -> Result<(), BusError> {
    if is_broker_exchange(exchange) {
        return Ok(());
    }
    channel
        .exchange_declare(
            exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: DURABLE,
                passive,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|source| BusError::declare("exchange", exchange, source))
}

/// The virtual host the consumers use: the one `amqp_url` names, or `None` when the URL does
/// not parse (the consumers would refuse it at start too).
pub fn configured_vhost(settings: &BusSettings) -> Option<String> {
    crate::amqp::vhost(settings)
}

/// Deletes queues and exchanges (test clean-up, decommissioning a consumer). Missing ones are
/// not an error.
pub async fn delete(
    settings: &BusSettings,
    queues: &[String],
    exchanges: &[String],
) -> Result<(), BusError> {
    let connection = crate::amqp::connect(settings, "fortnight-admin").await?;
    for queue in queues {
        // A failed delete closes the channel, so each one gets its own.
        let channel = crate::amqp::open_channel(&connection).await?;
        let _ = channel
            .queue_delete(queue, QueueDeleteOptions::default())
            .await;
    }
    for exchange in exchanges {
        let channel = crate::amqp::open_channel(&connection).await?;
        let _ = channel
            .exchange_delete(exchange, lapin::options::ExchangeDeleteOptions::default())
            .await;
    }
    crate::amqp::close(connection, "done").await;
    Ok(())
}

/// Deletes everything the named consumers declare (their queues, dead-letter and retry
/// queues) and the publish exchange, unless it is one of the broker's own `amq.*`: how a
/// demo, a benchmark or a test that gave a run its own names leaves the broker as it was.
pub async fn delete_consumers(settings: &BusSettings, consumers: &[&str]) -> Result<(), BusError> {
    let queues: Vec<String> = consumers
        .iter()
        .flat_map(|consumer| Topology::new(settings, consumer, &[]).queues())
        .collect();
    let exchanges: &[String] = if is_broker_exchange(&settings.publish_exchange) {
        &[]
    } else {
        std::slice::from_ref(&settings.publish_exchange)
    };
    delete(settings, &queues, exchanges).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use settings::Settings;

    fn settings(extra: &str) -> Settings {
        Settings::from_toml(&format!(
            "topic_prefix = \"org.fedoraproject.prod\"\n[store]\nroot = \"/srv\"\n[streams]\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn names_and_bindings_follow_the_configuration() {
        let s = settings("[consumers.c]\nqueue = \"q\"\nretry_delays_seconds = [60, 10, 60]\n");
        let t = Topology::new(&s, "c", &["fortnight.image.built".to_owned()]);
        assert_eq!(t.queue, "q");
        assert_eq!(t.dead_letter_queue, "q.dead");
        assert_eq!(t.bindings, ["org.fedoraproject.prod.fortnight.image.built"]);
        let retry: Vec<_> = t.retry_queues.iter().map(|(_, q)| q.as_str()).collect();
        assert_eq!(
            retry,
            ["q.retry.10s", "q.retry.60s"],
            "sorted, without duplicates"
        );
        assert_eq!(t.queues().len(), 4);
    }

    #[test]
    fn queue_specs_carry_the_arguments_declare_sends() {
        let s = settings(
            "[consumers.c]\nqueue = \"q\"\nquorum_queue = true\nretry_delays_seconds = [10]\n",
        );
        let t = Topology::new(&s, "c", &[]);
        let specs = t.queue_specs();
        let names: Vec<_> = specs.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(names, ["q", "q.dead", "q.retry.10s"]);
        assert_eq!(t.queues(), names, "the queues are the specs' names");

        let main = specs[0].field_table();
        assert_eq!(
            main.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(
            specs[1].field_table().inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into())),
            "the dead-letter queue is replicated too"
        );
        let retry = specs[2].field_table();
        let retry = retry.inner();
        assert_eq!(
            retry.get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(10_000)),
            "a long long integer, in milliseconds"
        );
        assert_eq!(
            retry.get("x-dead-letter-exchange"),
            Some(&AMQPValue::LongString("".into()))
        );
        assert_eq!(
            retry.get("x-dead-letter-routing-key"),
            Some(&AMQPValue::LongString("q".into()))
        );
        assert_eq!(
            retry.get("x-dead-letter-strategy"),
            Some(&AMQPValue::LongString("at-least-once".into())),
            "a quorum retry queue never drops a message whose delay ended"
        );
        assert_eq!(
            retry.get("x-overflow"),
            Some(&AMQPValue::LongString("reject-publish".into()))
        );
        assert_eq!(retry.len(), 6);

        let classic = settings("[consumers.c]\nqueue = \"q\"\n");
        let t = Topology::new(&classic, "c", &[]);
        let specs = t.queue_specs();
        assert!(specs[0].arguments.is_empty(), "classic by default");
        assert!(specs[1].arguments.is_empty());
        assert_eq!(specs[2].arguments.len(), 3, "ttl and the route back only");
    }

    #[test]
    fn definitions_have_rabbitmqs_shape() {
        let s = Settings::from_toml(
            "topic_prefix = \"org.fedoraproject.prod\"\npublish_exchange = \"fortnight\"\n\
             [store]\nroot = \"/srv\"\n[streams]\n\
             [consumers.a]\nqueue = \"qa\"\nquorum_queue = true\nretry_delays_seconds = [5]\n\
             [consumers.b]\nqueue = \"qb\"\nretry_delays_seconds = [1]\n",
        )
        .unwrap();
        let topologies = [
            Topology::new(&s, "a", &["x.one".to_owned(), "x.two".to_owned()]),
            Topology::new(&s, "b", &["x.one".to_owned()]),
        ];
        let definitions = Definitions::new("/fedora", &topologies).unwrap();
        let json = serde_json::to_value(&definitions).unwrap();
        let queue = |name: &str, arguments: serde_json::Value| {
            serde_json::json!({
                "name": name, "vhost": "/fedora", "durable": true, "auto_delete": false,
                "arguments": arguments,
            })
        };
        let binding = |queue: &str, key: &str| {
            serde_json::json!({
                "source": "fortnight", "vhost": "/fedora", "destination": queue,
                "destination_type": "queue", "routing_key": key, "arguments": {},
            })
        };
        let retry = |ttl: u64, back_to: &str| {
            serde_json::json!({
                "x-message-ttl": ttl,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": back_to,
            })
        };
        let mut quorum_retry = retry(5000, "qa");
        for (key, value) in [
            ("x-queue-type", "quorum"),
            ("x-dead-letter-strategy", "at-least-once"),
            ("x-overflow", "reject-publish"),
        ] {
            quorum_retry[key] = value.into();
        }
        let expected = serde_json::json!({
            "queues": [
                queue("qa", serde_json::json!({"x-queue-type": "quorum"})),
                queue("qa.dead", serde_json::json!({"x-queue-type": "quorum"})),
                queue("qa.retry.5s", quorum_retry),
                queue("qb", serde_json::json!({})),
                queue("qb.dead", serde_json::json!({})),
                queue("qb.retry.1s", retry(1000, "qb")),
            ],
            "exchanges": [{
                "name": "fortnight", "vhost": "/fedora", "type": "topic", "durable": true,
                "auto_delete": false, "internal": false, "arguments": {},
            }],
            "bindings": [
                binding("qa", "org.fedoraproject.prod.x.one"),
                binding("qa", "org.fedoraproject.prod.x.two"),
                binding("qb", "org.fedoraproject.prod.x.one"),
            ],
        });
        assert_eq!(
            json, expected,
            "one shared exchange, every queue and binding"
        );
        let back: Definitions = serde_json::from_value(json).unwrap();
        assert_eq!(back, definitions, "the typed form reads its own output");
    }

    #[test]
    fn the_brokers_own_exchanges_are_not_defined() {
        let s = settings("[consumers.c]\nqueue = \"q\"\n");
        assert_eq!(s.publish_exchange, "amq.topic");
        let t = Topology::new(&s, "c", &["x.one".to_owned()]);
        let definitions = Definitions::new("/", &[t]).unwrap();
        assert!(definitions.exchanges.is_empty());
        assert_eq!(
            definitions.bindings[0].source, "amq.topic",
            "still bound to it"
        );
        assert_eq!(
            definitions.queues.len(),
            5,
            "main, dead and three default delays"
        );
    }

    #[test]
    fn a_queue_two_consumers_want_differently_is_an_error() {
        let s = settings(
            "[consumers.a]\nqueue = \"q\"\nquorum_queue = true\n[consumers.b]\nqueue = \"q\"\n",
        );
        let error = Definitions::new(
            "/",
            &[Topology::new(&s, "a", &[]), Topology::new(&s, "b", &[])],
        )
        .unwrap_err();
        assert!(
            matches!(&error, DefinitionsError::ConflictingQueue { queue, .. } if queue == "q"),
            "{error}"
        );
        let same = Definitions::new(
            "/",
            &[Topology::new(&s, "a", &[]), Topology::new(&s, "a", &[])],
        )
        .unwrap();
        assert_eq!(same.queues.len(), 5, "an identical queue is listed once");
    }

    #[test]
    fn a_wanted_delay_maps_to_the_nearest_configured_one_not_shorter() {
        let s = settings("[consumers.c]\nretry_delays_seconds = [10, 60, 300]\n");
        let t = Topology::new(&s, "c", &[]);
        let pick = |secs| t.retry_queue(Duration::from_secs(secs)).0.as_secs();
        assert_eq!(pick(0), 10);
        assert_eq!(pick(10), 10);
        assert_eq!(pick(11), 60);
        assert_eq!(pick(3600), 300, "longer than any: the longest");
    }
}
