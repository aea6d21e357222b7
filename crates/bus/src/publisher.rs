//! Publishing with publisher confirms, for the runtime and for operator tools.

use chrono::Utc;
use lapin::options::BasicPublishOptions;
use lapin::protocol::basic::AMQPProperties;
use lapin::publisher_confirm::PublisherConfirm;
use lapin::{Channel, Connection};
use messages::envelope::add_prefix;
use messages::{Outgoing, RecordLine};
use serde_json::Value;
use settings::Settings;
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
    pub(crate) fn outgoing(settings: &Settings, message: &Outgoing) -> Self {
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
    fn record(settings: &Settings, record: &RecordLine) -> Self {
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
fn signed(settings: &Settings, properties: AMQPProperties) -> AMQPProperties {
    match settings.broker_user() {
        Some(user) => properties.with_user_id(user.into()),
        None => properties,
    }
}

/// Sends every message, then waits for every confirm: one round trip for the batch.
pub(crate) async fn publish_all(
    channel: &Channel,
    wires: &[Wire],
    metrics: &crate::Metrics,
) -> Result<(), BusError> {
    let mut pending: Vec<(PublisherConfirm, &str)> = Vec::with_capacity(wires.len());
    for wire in wires {
        let confirm = channel
            .basic_publish(
                &wire.exchange,
                &wire.routing_key,
                BasicPublishOptions::default(),
                &wire.body,
                wire.properties.clone(),
            )
            .await
            .map_err(|source| BusError::amqp("publish", source))?;
        crate::Metrics::count(&metrics.published);
        pending.push((confirm, &wire.routing_key));
    }
    let mut refused = None;
    for (confirm, routing_key) in pending {
        let confirmation = confirm
            .await
            .map_err(|source| BusError::amqp("await a publish confirm", source))?;
        if confirmation.is_nack() {
            crate::Metrics::count(&metrics.nacked);
            refused.get_or_insert_with(|| routing_key.to_owned());
        } else {
            crate::Metrics::count(&metrics.confirmed);
        }
    }
    match refused {
        Some(routing_key) => Err(BusError::Nacked { routing_key }),
        None => Ok(()),
    }
}

/// A confirmed publisher for tools and tests (`fortnight publish`, replays).
#[derive(Debug)]
pub struct Publisher {
    settings: Settings,
    connection: Connection,
    channel: Channel,
    metrics: crate::Metrics,
}

impl Publisher {
    /// Connects as `name` (shown in the broker's connection list). The publish exchange is
    /// declared (checked with `passive_declares`): publishing to a missing one would close
    /// the channel.
    pub async fn connect(settings: &Settings, name: &str) -> Result<Self, BusError> {
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
            metrics: crate::Metrics::default(),
        })
    }

    /// Sends one message and waits for the broker's confirm.
    async fn publish_one(&self, wire: Wire) -> Result<(), BusError> {
        publish_all(&self.channel, &[wire], &self.metrics).await
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
    pub fn broker_user(settings: &Settings) -> Option<String> {
        settings.broker_user()
    }

    /// Publishes a recorded message as recorded, signed by this connection's broker user, and
    /// waits for the confirm.
    pub async fn publish_record(&self, record: &RecordLine) -> Result<(), BusError> {
        self.publish_one(Wire::record(&self.settings, record)).await
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

    /// Closes the connection politely.
    pub async fn close(self) {
        let _ = self.connection.close(200, "done").await;
    }
}
