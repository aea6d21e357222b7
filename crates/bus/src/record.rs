//! Recording: a private queue bound to topic patterns, read as fedora-messaging record lines
//! (what `fortnight record` writes and `fedora-messaging publish` reads).

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use messages::RecordLine;
use messages::envelope::{HEADER_PRIORITY, add_prefix, parse_body};
use serde_json::Value;
use settings::BusSettings;

use crate::BusError;
use crate::amqp;

/// A live subscription; dropped or [closed](Recording::close), its queue goes away.
#[derive(Debug)]
pub struct Recording {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
    queue: String,
}

/// Binds an exclusive, auto-deleted queue to each pattern (the configured prefix is added
/// unless a pattern already carries it) on the publish exchange.
pub async fn subscribe(settings: &BusSettings, patterns: &[String]) -> Result<Recording, BusError> {
    let connection = amqp::connect(settings, "fortnight-record").await?;
    let channel = amqp::open_channel(&connection).await?;
    crate::topology::declare_exchange(
        &channel,
        &settings.publish_exchange,
        settings.passive_declares,
    )
    .await?;
    let queue = format!("fortnight.record.{}", uuid::Uuid::new_v4());
    channel
        .queue_declare(
            &queue,
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|source| BusError::declare("queue", &queue, source))?;
    for pattern in patterns {
        let key = add_prefix(pattern, &settings.topic_prefix);
        channel
            .queue_bind(
                &queue,
                &settings.publish_exchange,
                &key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| BusError::declare("binding", &format!("{queue} -> {key}"), source))?;
    }
    // A recording is a copy of traffic; nothing is lost if it stops halfway, so no acks.
    let consumer = channel
        .basic_consume(
            &queue,
            "fortnight-record",
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|source| BusError::amqp("start consuming", source))?;
    Ok(Recording {
        connection,
        channel,
        consumer,
        queue,
    })
}

impl Recording {
    /// The next message, or `None` when the connection closed.
    pub async fn next(&mut self) -> Option<Result<RecordLine, BusError>> {
        let delivery = match self.consumer.next().await? {
            Ok(delivery) => delivery,
            Err(source) => return Some(Err(BusError::amqp("receive a delivery", source))),
        };
        let headers = amqp::headers(&delivery.properties);
        // fedora-messaging only ever sends objects; anything else is kept as text so the
        // recording still shows what arrived.
        let body = parse_body(&delivery.data)
            .map(Value::Object)
            .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&delivery.data).into_owned()));
        Some(Ok(RecordLine {
            body,
            priority: Some(
                headers
                    .get(HEADER_PRIORITY)
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            ),
            headers,
            id: amqp::short(delivery.properties.message_id()),
            queue: Some(self.queue.clone()),
            topic: delivery.routing_key.to_string(),
        }))
    }

    /// The private queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    pub async fn close(self) {
        let _ = self.channel.close(200, "done").await;
        amqp::close(self.connection, "done").await;
    }
}
