//! A consumer's dead letters (`<queue>.dead`): list them with their reasons, put them back on
//! the consumer's queue, or drop them.
//!
//! Listing takes every message with `basic.get` without acking and then closes the channel,
//! which returns them all to the queue in their order: nothing is lost if the tool dies.

use std::collections::BTreeMap;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use serde_json::Value;
use settings::BusSettings;

use crate::amqp;
use crate::publisher::publish_routed;
use crate::runtime::Received;
use crate::topology::dead_letter_queue;
use crate::{BusError, HEADER_ATTEMPTS, HEADER_CONSUMER, HEADER_REASON, Metrics};

/// One dead letter, as the operator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub id: Option<String>,
    /// The consumer that gave up on it.
    pub consumer: Option<String>,
    pub reason: String,
    pub attempts: u64,
    /// The routing key it was first published with.
    pub routing_key: String,
    /// The publisher's headers.
    pub headers: BTreeMap<String, Value>,
    /// Who first sent it (the broker-checked `user_id`), when known.
    pub sender: Option<String>,
    /// The body as received (it may not be JSON: that can be why it is here).
    pub body: Vec<u8>,
}

impl DeadLetter {
    fn from_delivery(delivery: &Delivery, own_user: Option<&str>) -> Self {
        let all = amqp::headers(&delivery.properties);
        let text = |key: &str| all.get(key).and_then(Value::as_str).map(str::to_owned);
        let consumer = text(HEADER_CONSUMER);
        let reason = text(HEADER_REASON).unwrap_or_else(|| "no reason recorded".to_owned());
        let attempts = all
            .get(HEADER_ATTEMPTS)
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let received = Received::from_headers(delivery, all, own_user);
        Self {
            id: received.id,
            consumer,
            reason,
            attempts,
            routing_key: received.routing_key,
            headers: received.headers,
            sender: received.user_id,
            body: received.body,
        }
    }

    /// The body for display: JSON text, or the bytes made printable.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

struct Session {
    connection: Connection,
    channel: Channel,
    queue: String,
    dead: String,
    own_user: Option<String>,
}

impl Session {
    async fn open(settings: &BusSettings, consumer: &str) -> Result<Self, BusError> {
        let connection = amqp::connect(settings, "fortnight-dead-letters").await?;
        let channel = amqp::confirm_channel(&connection).await?;
        let queue = settings.queue_name(consumer);
        Ok(Self {
            dead: dead_letter_queue(&queue),
            queue,
            connection,
            channel,
            own_user: settings.broker_user(),
        })
    }

    /// The next dead letter, held unacked by this session.
    async fn get(&self) -> Result<Option<Delivery>, BusError> {
        let got = self
            .channel
            .basic_get(&self.dead, BasicGetOptions { no_ack: false })
            .await
            .map_err(|source| BusError::amqp("read the dead-letter queue", source))?;
        Ok(got.map(|message| message.delivery))
    }

    /// How many dead letters wait now (ready ones; this session holds none yet).
    async fn waiting(&self) -> Result<u32, BusError> {
        let queue = self
            .channel
            .queue_declare(
                &self.dead,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|source| BusError::declare("queue", &self.dead, source))?;
        Ok(queue.message_count())
    }

    /// Closing returns every unacked message to the queue.
    async fn close(self) {
        let _ = self.channel.close(200, "done").await;
        crate::amqp::close(self.connection, "done").await;
    }
}

/// Every dead letter of `consumer`, oldest first; the queue is left as it was.
pub async fn list(settings: &BusSettings, consumer: &str) -> Result<Vec<DeadLetter>, BusError> {
    let session = Session::open(settings, consumer).await?;
    let mut letters = Vec::new();
    let result = async {
        while let Some(delivery) = session.get().await? {
            letters.push(DeadLetter::from_delivery(
                &delivery,
                session.own_user.as_deref(),
            ));
        }
        Ok(())
    }
    .await;
    session.close().await;
    result.map(|()| letters)
}

/// The dead letter with message id `id`.
pub async fn show(
    settings: &BusSettings,
    consumer: &str,
    id: &str,
) -> Result<DeadLetter, BusError> {
    list(settings, consumer)
        .await?
        .into_iter()
        .find(|letter| letter.id.as_deref() == Some(id))
        .ok_or_else(|| BusError::NotFound {
            queue: dead_letter_queue(&settings.queue_name(consumer)),
            id: id.to_owned(),
        })
}

/// Moves dead letters back to the consumer's queue (all of them, or the one with id `only`),
/// keeping body, id, headers and routing key, with attempts reset. Returns how many moved.
///
/// Only the letters there when the replay starts are taken: a consumer that rejects a copy
/// again puts it at the end of the queue, past them, and it stays there instead of being
/// replayed in a loop. Each copy is published (mandatory, so a missing consumer queue is an
/// error, not a loss) and confirmed before its dead letter is acked: at least once, and a
/// replay killed between the two leaves one message both replayed and still dead-lettered.
pub async fn replay(
    settings: &BusSettings,
    consumer: &str,
    only: Option<&str>,
) -> Result<usize, BusError> {
    let session = Session::open(settings, consumer).await?;
    let metrics = Metrics::default();
    let mut moved = 0;
    let result = async {
        let waiting = session.waiting().await?;
        for _ in 0..waiting {
            let Some(delivery) = session.get().await? else {
                break;
            };
            let letter = Received::from_delivery(&delivery, session.own_user.as_deref());
            if only.is_some_and(|id| letter.id.as_deref() != Some(id)) {
                continue;
            }
            // No attempts header: the replayed copy starts counting again.
            let wire = letter.copy_to(session.own_user.as_deref(), &session.queue, &[]);
            publish_routed(&session.channel, &[wire], &metrics).await?;
            delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(|source| BusError::amqp("remove a replayed dead letter", source))?;
            tracing::info!(id = letter.id.as_deref().unwrap_or("-"), queue = %session.queue, "dead letter replayed");
            moved += 1;
        }
        Ok(())
    }
    .await;
    session.close().await;
    match (result, only) {
        (Err(error), _) => Err(error),
        (Ok(()), Some(id)) if moved == 0 => Err(BusError::NotFound {
            queue: dead_letter_queue(&settings.queue_name(consumer)),
            id: id.to_owned(),
        }),
        (Ok(()), _) => Ok(moved),
    }
}

/// Drops every dead letter of `consumer`; returns how many.
pub async fn purge(settings: &BusSettings, consumer: &str) -> Result<u32, BusError> {
    let session = Session::open(settings, consumer).await?;
    let purged = session
        .channel
        .queue_purge(&session.dead, QueuePurgeOptions::default())
        .await
        .map_err(|source| BusError::amqp("purge the dead-letter queue", source));
    session.close().await;
    purged
}
