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
//! With `passive_declares` everything is only checked, so an administrator creates these.

use std::time::Duration;

use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use messages::envelope::add_prefix;
use settings::Settings;

use crate::BusError;

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
    pub fn new(settings: &Settings, consumer: &str, topics: &[String]) -> Self {
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

    /// Declares (or, passively, checks) the exchange, the queues and the bindings.
    pub(crate) async fn declare(&self, channel: &Channel) -> Result<(), BusError> {
        declare_exchange(channel, &self.exchange, self.passive).await?;
        let mut main = FieldTable::default();
        if self.quorum {
            main.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        self.queue(channel, &self.queue, main).await?;
        self.queue(channel, &self.dead_letter_queue, FieldTable::default())
            .await?;
        for (delay, name) in &self.retry_queues {
            let mut args = FieldTable::default();
            let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString("".into()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(self.queue.as_str().into()),
            );
            self.queue(channel, name, args).await?;
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
                    durable: true,
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
        let mut all = vec![self.queue.clone(), self.dead_letter_queue.clone()];
        all.extend(self.retry_queues.iter().map(|(_, name)| name.clone()));
        all
    }
}

/// Declares (or, passively, checks) a durable topic exchange; `amq.*` ones always exist.
pub(crate) async fn declare_exchange(
    channel: &Channel,
    exchange: &str,
    passive: bool,
) -> Result<(), BusError> {
    if exchange.starts_with("amq.") {
        return Ok(());
    }
    channel
        .exchange_declare(
            exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                passive,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|source| BusError::declare("exchange", exchange, source))
}

/// Deletes queues and exchanges (test clean-up, decommissioning a consumer). Missing ones are
/// not an error.
pub async fn delete(
    settings: &Settings,
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
    let _ = connection.close(200, "done").await;
    Ok(())
}

/// Deletes everything the named consumers declare (their queues, dead-letter and retry
/// queues) and the publish exchange, unless it is one of the broker's own `amq.*`: how a
/// demo, a benchmark or a test that gave a run its own names leaves the broker as it was.
pub async fn delete_consumers(settings: &Settings, consumers: &[&str]) -> Result<(), BusError> {
    let queues: Vec<String> = consumers
        .iter()
        .flat_map(|consumer| Topology::new(settings, consumer, &[]).queues())
        .collect();
    let exchanges: &[String] = if settings.publish_exchange.starts_with("amq.") {
        &[]
    } else {
        std::slice::from_ref(&settings.publish_exchange)
    };
    delete(settings, &queues, exchanges).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
