//! Publishing with publisher confirms, for the runtime and for operator tools.

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use chrono::Utc;
use lapin::options::BasicPublishOptions;
use lapin::protocol::basic::AMQPProperties;
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::{Channel, Connection};
use messages::envelope::add_prefix;
use messages::{Outgoing, RecordLine};
use serde_json::Value;
use settings::BusSettings;
use uuid::Uuid;

use crate::BusError;
use crate::amqp::{self, to_table};

/// One message ready for the wire.
#[derive(Debug)]
pub(crate) struct Wire {
    pub exchange: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub properties: AMQPProperties,
}

impl Wire {
    /// A step's message, as fedora-messaging would publish it, signed by this connection's
    /// broker user.
    pub(crate) fn outgoing(settings: &BusSettings, message: &Outgoing) -> Self {
        let headers = message.headers(Utc::now());
        Self {
            exchange: settings.publish_exchange.clone(),
            routing_key: add_prefix(&message.topic, &settings.topic_prefix),
            body: serde_json::to_vec(&message.body).unwrap_or_else(|_| b"{}".to_vec()),
            properties: signed(
                settings,
                amqp::properties(Some(&message.id.to_string()), to_table(&headers)),
            ),
        }
    }

    /// A recorded message, replayed as recorded (topic as is, headers, id and priority kept)
    /// by this connection's account.
    fn record(settings: &BusSettings, record: &RecordLine) -> Self {
        let id = record
            .id
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        let mut headers = record.headers.clone();
        if let Some(priority) = record.priority {
            headers.insert(
                messages::envelope::HEADER_PRIORITY.to_owned(),
                Value::from(priority),
            );
        }
        // Re-sent by this account: a recorded `user_id` is someone else's, which the broker
        // would refuse.
        let properties = signed(settings, amqp::properties(Some(&id), to_table(&headers)));
        Self {
            exchange: settings.publish_exchange.clone(),
            routing_key: record.topic.clone(),
            body: serde_json::to_vec(&record.body).unwrap_or_else(|_| b"{}".to_vec()),
            properties,
        }
    }
}

/// `properties` with `user_id` set to the connection's broker user, so that consumers, which
/// trust a topic only from the accounts `trust` names, can tell who sent it. Without a known
/// user (TLS without `tls.user`) the message goes unsigned, and only topics open to any
/// sender accept it.
fn signed(settings: &BusSettings, properties: AMQPProperties) -> AMQPProperties {
    match settings.broker_user() {
        Some(user) => properties.with_user_id(user.into()),
        None => properties,
    }
}

/// Sends every message, then waits for every confirm: one round trip for the batch.
///
/// The runtime publishes steps' results this way, without `mandatory`: Fedora's bus is
/// publish-and-forget, and a result nobody listens to yet (`release.published` on a broker
/// without subscribers) has done its job once the broker took it.
pub(crate) async fn publish_all(
    channel: &Channel,
    wires: &[Wire],
    metrics: &crate::Metrics,
) -> Result<(), BusError> {
    publish_confirmed(channel, wires, BasicPublishOptions::default(), metrics).await
}

/// [`publish_all`] for messages that are lost unless a queue takes them (a tick, an
/// operator's replay, a dead letter put back): published `mandatory`, so the broker returns
/// one that no queue is bound for, and that is [`BusError::Unroutable`].
pub(crate) async fn publish_routed(
    channel: &Channel,
    wires: &[Wire],
    metrics: &crate::Metrics,
) -> Result<(), BusError> {
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    publish_confirmed(channel, wires, mandatory, metrics).await
}

async fn publish_confirmed(
    channel: &Channel,
    wires: &[Wire],
    options: BasicPublishOptions,
    metrics: &crate::Metrics,
) -> Result<(), BusError> {
    send_all(channel, wires, options, metrics)
        .await?
        .wait(metrics)
        .await
}

/// Messages handed to the broker whose confirms are still to come, so that a caller can go
/// on (take the next delivery, publish the next results) while the broker works.
#[derive(Debug)]
pub(crate) struct Confirms(Vec<(PublisherConfirm, String)>);

impl Confirms {
    /// Waits for every confirm: `Nacked` (naming the first refused routing key) when the
    /// broker refused one, else `Unroutable` when one came back, counted in `metrics`.
    pub(crate) async fn wait(self, metrics: &crate::Metrics) -> Result<(), BusError> {
        let mut refused = None;
        let mut unrouted = None;
        for (confirm, routing_key) in self.0 {
            let confirmation = confirm
                .await
                .map_err(|source| BusError::amqp("await a publish confirm", source))?;
            match settle(confirmation, metrics) {
                Err(NotTaken::Nacked) => {
                    refused.get_or_insert(routing_key);
                }
                Err(NotTaken::Unroutable) => {
                    unrouted.get_or_insert(routing_key);
                }
                Err(NotTaken::Lost(_)) | Ok(()) => {}
            }
        }
        match (refused, unrouted) {
            (Some(routing_key), _) => Err(BusError::Nacked { routing_key }),
            (None, Some(routing_key)) => Err(BusError::Unroutable { routing_key }),
            (None, None) => Ok(()),
        }
    }
}

/// Sends every message, without waiting for a confirm: the runtime's results and its retry
/// and dead-letter copies, published as [`publish_all`] does.
pub(crate) async fn send_unconfirmed(
    channel: &Channel,
    wires: &[Wire],
    metrics: &crate::Metrics,
) -> Result<Confirms, BusError> {
    send_all(channel, wires, BasicPublishOptions::default(), metrics).await
}

async fn send_all(
    channel: &Channel,
    wires: &[Wire],
    options: BasicPublishOptions,
    metrics: &crate::Metrics,
) -> Result<Confirms, BusError> {
    let mut pending = Vec::with_capacity(wires.len());
    for wire in wires {
        let confirm = send(channel, wire, options, metrics).await?;
        pending.push((confirm, wire.routing_key.clone()));
    }
    Ok(Confirms(pending))
}

/// Hands one message to the broker; its confirm comes later.
async fn send(
    channel: &Channel,
    wire: &Wire,
    options: BasicPublishOptions,
    metrics: &crate::Metrics,
) -> Result<PublisherConfirm, BusError> {
    let confirm = channel
        .basic_publish(
            &wire.exchange,
            &wire.routing_key,
            options,
            &wire.body,
            wire.properties.clone(),
        )
        .await
        .map_err(|source| BusError::amqp("publish", source))?;
    crate::Metrics::count(&metrics.published);
    Ok(confirm)
}

/// What a confirm says, counted in `metrics`.
fn settle(confirmation: Confirmation, metrics: &crate::Metrics) -> Result<(), NotTaken> {
    match confirmation {
        Confirmation::Nack(_) => {
            crate::Metrics::count(&metrics.nacked);
            Err(NotTaken::Nacked)
        }
        // A mandatory message no queue took comes back (basic.return) before its ack.
        Confirmation::Ack(Some(_)) => {
            crate::Metrics::count(&metrics.confirmed);
            crate::Metrics::count(&metrics.unroutable);
            Err(NotTaken::Unroutable)
        }
        Confirmation::Ack(None) | Confirmation::NotRequested => {
            crate::Metrics::count(&metrics.confirmed);
            Ok(())
        }
    }
}

/// Why a published message is not known to be in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotTaken {
    /// The broker refused it (a full queue that rejects publishes, an internal error).
    Nacked,
    /// No queue is bound for its routing key; the broker returned it.
    Unroutable,
    /// No confirm came: the channel or connection failed first (the error's text). The broker
    /// may or may not have it.
    Lost(String),
}

impl fmt::Display for NotTaken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Nacked => f.write_str("the broker refused it (nack)"),
            Self::Unroutable => {
                f.write_str("no queue is bound for its topic, the broker returned it")
            }
            Self::Lost(error) => write!(
                f,
                "no confirm came ({error}); it may or may not have arrived"
            ),
        }
    }
}

/// One record sent whose confirm did not say that a queue took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconfirmed {
    /// The record's line in its file.
    pub line: usize,
    pub id: Option<String>,
    pub topic: String,
    pub reason: NotTaken,
}

/// How [`Publisher::publish_records`] stopped when a record was not confirmed. Every record
/// before `stopped_after` that is not in `unconfirmed` was confirmed; no record after it was
/// sent.
#[derive(Debug, thiserror::Error)]
#[error(
    "{confirmed} record(s) confirmed; not confirmed: {}; nothing after line {stopped_after} was sent",
    list_unconfirmed(unconfirmed)
)]
pub struct RecordsNotConfirmed {
    pub confirmed: usize,
    /// In the order they were sent.
    pub unconfirmed: Vec<Unconfirmed>,
    /// The line of the last record handed to the broker (or refused by a dead connection).
    pub stopped_after: usize,
}

fn list_unconfirmed(unconfirmed: &[Unconfirmed]) -> String {
    unconfirmed
        .iter()
        .map(|record| {
            format!(
                "line {} (id {}, topic {}): {}",
                record.line,
                record.id.as_deref().unwrap_or("-"),
                record.topic,
                record.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A record handed to the broker, as a report names it.
struct Sent {
    line: usize,
    id: Option<String>,
    topic: String,
}

impl Sent {
    fn not_taken(self, reason: NotTaken) -> Unconfirmed {
        Unconfirmed {
            line: self.line,
            id: self.id,
            topic: self.topic,
            reason,
        }
    }
}

/// Records sent and not yet confirmed, oldest first.
struct InFlight<'a> {
    publisher: &'a Publisher,
    confirms: VecDeque<(Sent, PublisherConfirm)>,
    confirmed: usize,
    unconfirmed: Vec<Unconfirmed>,
}

impl InFlight<'_> {
    /// Waits for the oldest confirm; `false` when it did not say a queue took the record.
    async fn settle_oldest(&mut self) -> bool {
        let Some((sent, confirm)) = self.confirms.pop_front() else {
            return true;
        };
        let outcome = match confirm.await {
            Ok(confirmation) => settle(confirmation, &self.publisher.metrics),
            Err(error) => Err(NotTaken::Lost(error.to_string())),
        };
        match outcome {
            Ok(()) => {
                self.confirmed += 1;
                true
            }
            Err(reason) => {
                self.unconfirmed.push(sent.not_taken(reason));
                false
            }
        }
    }
}

/// A confirmed publisher for tools and tests (`fortnight publish`, replays).
#[derive(Debug)]
pub struct Publisher {
    settings: BusSettings,
    connection: Connection,
    channel: Channel,
    metrics: Arc<crate::Metrics>,
    /// Every publish must reach a queue; see [`Publisher::routed`].
    routed: bool,
}

impl Publisher {
    /// Connects as `name` (shown in the broker's connection list). The publish exchange is
    /// declared (checked with `passive_declares`): publishing to a missing one would close
    /// the channel.
    pub async fn connect(settings: &BusSettings, name: &str) -> Result<Self, BusError> {
        Self::connect_counting(settings, name, Arc::default()).await
    }

    /// [`Publisher::connect`], counting what it publishes in `metrics` (a service's
    /// `/metrics`).
    pub(crate) async fn connect_counting(
        settings: &BusSettings,
        name: &str,
        metrics: Arc<crate::Metrics>,
    ) -> Result<Self, BusError> {
        let connection = amqp::connect(settings, name).await?;
        let channel = amqp::confirm_channel(&connection).await?;
        crate::topology::declare_exchange(
            &channel,
            &settings.publish_exchange,
            settings.passive_declares,
        )
        .await?;
        Ok(Self {
            settings: settings.clone(),
            connection,
            channel,
            metrics,
            routed: false,
        })
    }

    /// This publisher, with every publish required to reach at least one queue: a message
    /// that no queue is bound for fails with [`BusError::Unroutable`] instead of being dropped
    /// by the broker. For messages whose loss nobody would notice (a tick, an operator's
    /// replay).
    pub fn routed(mut self) -> Self {
        self.routed = true;
        self
    }

    /// Whether its connection and channel are still open. Neither reopens: a publisher that
    /// lost them is replaced.
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    /// Runs `lost` once the connection fails (a broker restart, a network cut), so a
    /// service can tell at once instead of at its next publish.
    pub(crate) fn on_connection_lost(&self, lost: impl FnMut(lapin::Error) + Send + 'static) {
        self.connection.on_error(lost);
    }

    /// Sends one message and waits for the broker's confirm.
    async fn publish_one(&self, wire: Wire) -> Result<(), BusError> {
        let wires = [wire];
        if self.routed {
            publish_routed(&self.channel, &wires, &self.metrics).await
        } else {
            publish_all(&self.channel, &wires, &self.metrics).await
        }
    }

    /// Publishes a step message (prefix added) and waits for the broker's confirm.
    pub async fn publish(&self, message: &Outgoing) -> Result<(), BusError> {
        self.publish_one(Wire::outgoing(&self.settings, message))
            .await
    }

    /// Publishes a step message with the AMQP `user_id` property set to `user`. RabbitMQ
    /// refuses it unless `user` is the connection's own user, which is what lets a receiver
    /// trust who sent a vote or an override.
    pub async fn publish_as(&self, message: &Outgoing, user: &str) -> Result<(), BusError> {
        let mut wire = Wire::outgoing(&self.settings, message);
        wire.properties = wire.properties.with_user_id(user.into());
        self.publish_one(wire).await
    }

    /// The broker user this publisher connects as: `tls.user` with client certificates, else
    /// the user `amqp_url` names.
    pub fn broker_user(settings: &BusSettings) -> Option<String> {
        settings.broker_user()
    }

    /// Publishes a recorded message as recorded, signed by this connection's broker user, and
    /// waits for the confirm.
    pub async fn publish_record(&self, record: &RecordLine) -> Result<(), BusError> {
        self.publish_one(Wire::record(&self.settings, record)).await
    }

    /// Publishes `(line, record)`s in order, as [`publish_record`](Self::publish_record) does,
    /// keeping up to `window` of them sent and unconfirmed: one confirm round trip per window
    /// instead of per record, and only `window` records held, however many the iterator
    /// yields. Returns how many were confirmed, which is all of them. At the first record not
    /// confirmed it sends nothing more, waits for the confirms of those in flight and reports
    /// exactly which were not confirmed.
    pub async fn publish_records(
        &self,
        records: impl IntoIterator<Item = (usize, RecordLine)>,
        window: NonZeroUsize,
    ) -> Result<usize, RecordsNotConfirmed> {
        let options = BasicPublishOptions {
            mandatory: self.routed,
            ..BasicPublishOptions::default()
        };
        let mut in_flight = InFlight {
            publisher: self,
            confirms: VecDeque::with_capacity(window.get()),
            confirmed: 0,
            unconfirmed: Vec::new(),
        };
        let mut last_sent = 0;
        let mut failed = false;
        for (line, record) in records {
            if in_flight.confirms.len() == window.get() && !in_flight.settle_oldest().await {
                failed = true;
                break;
            }
            last_sent = line;
            let wire = Wire::record(&self.settings, &record);
            let sent = Sent {
                line,
                id: amqp::short(wire.properties.message_id()),
                topic: record.topic,
            };
            match send(&self.channel, &wire, options, &self.metrics).await {
                Ok(confirm) => in_flight.confirms.push_back((sent, confirm)),
                Err(error) => {
                    in_flight
                        .unconfirmed
                        .push(sent.not_taken(NotTaken::Lost(error.to_string())));
                    failed = true;
                    break;
                }
            }
        }
        // Once one record failed, the others in flight are still waited for: each is reported
        // as confirmed or not, never guessed.
        while !in_flight.confirms.is_empty() {
            failed |= !in_flight.settle_oldest().await;
        }
        if failed {
            return Err(RecordsNotConfirmed {
                confirmed: in_flight.confirmed,
                unconfirmed: in_flight.unconfirmed,
                stopped_after: last_sent,
            });
        }
        Ok(in_flight.confirmed)
    }

    /// Publishes raw bytes to a logical topic (prefix added), signed like every message, to
    /// see how consumers treat bad input. Returns the message id.
    pub async fn publish_raw(
        &self,
        topic: &str,
        body: &[u8],
        headers: &std::collections::BTreeMap<String, Value>,
    ) -> Result<String, BusError> {
        let id = Uuid::new_v4().to_string();
        let wire = Wire {
            exchange: self.settings.publish_exchange.clone(),
            routing_key: add_prefix(topic, &self.settings.topic_prefix),
            body: body.to_vec(),
            properties: signed(
                &self.settings,
                amqp::properties(Some(&id), to_table(headers)),
            ),
        };
        self.publish_one(wire).await?;
        Ok(id)
    }

    /// Closes the connection politely, and only returns once it is closed: call it before the
    /// program's async runtime ends, on every path.
    pub async fn close(self) {
        amqp::close(self.connection, "done").await;
    }
}
