//! Connecting to the broker and translating between AMQP and the fedora-messaging envelope.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use lapin::auth::SASLMechanism;
use lapin::options::ConfirmSelectOptions;
use lapin::protocol::basic::AMQPProperties;
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldArray, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use rand::Rng;
use serde_json::{Map, Number, Value};
use settings::BusSettings;

use crate::BusError;

/// Heartbeat asked for when the URL does not say (fedora-messaging's default).
const DEFAULT_HEARTBEAT_SECONDS: u16 = 60;

/// Largest frame asked for when the URL names no `frame_max`. lapin keeps a send and a
/// receive buffer of 32 frames per connection, so RabbitMQ's default of 128 KiB frames costs
/// 8 MiB a connection, most of an idle consumer's memory. Fortnight's bodies are a few KiB;
/// a larger one is split into more frames. Measured in the README (Benchmarks).
pub(crate) const DEFAULT_FRAME_MAX: u32 = 16384;

/// Where the next connection starts among [`BusSettings::broker_urls`]. Each one starts at a
/// random address, so that replicas given the same list spread over the nodes of a cluster
/// instead of all crowding the first; after a connection of the runtime is lost, the address
/// after the one it used comes first, since the node behind that one is the likeliest down.
#[derive(Debug)]
pub(crate) struct Rotation(AtomicUsize);

impl Rotation {
    pub(crate) fn new() -> Self {
        Self(AtomicUsize::new(rand::rng().random::<u32>() as usize))
    }
}

/// Opens a connection named `name` (shown in the broker's connection list) to the first
/// broker address that accepts it.
pub(crate) async fn connect(settings: &BusSettings, name: &str) -> Result<Connection, BusError> {
    Ok(connect_in_turn(settings, name, &Rotation::new()).await?.0)
}

/// [`connect`] trying the addresses from where `rotation` points, each once; returns the
/// connection and the (redacted) address it went to. The caller's backoff applies only when a
/// whole round failed: one node down is no reason to wait.
pub(crate) async fn connect_in_turn(
    settings: &BusSettings,
    name: &str,
    rotation: &Rotation,
) -> Result<(Connection, String), BusError> {
    let urls = settings.broker_urls();
    // Every address is read before any is tried: a typo in the third one is a configuration
    // error to report at once, not a node that happens to be down.
    let uris = urls
        .iter()
        .map(|url| uri(settings, url))
        .collect::<Result<Vec<_>, _>>()?;
    let start = rotation.0.load(Ordering::Relaxed);
    let mut failures = Vec::new();
    for offset in 0..urls.len() {
        let index = start.wrapping_add(offset) % urls.len();
        let url = settings::redact_url(&urls[index]);
        match Connection::connect_uri_with_config(
            uris[index].clone(),
            connection_properties(settings, name),
            tls(settings)?,
        )
        .await
        {
            Ok(connection) => {
                rotation.0.store(index + 1, Ordering::Relaxed);
                return Ok((connection, url));
            }
            Err(source) => {
                if urls.len() > 1 {
                    tracing::warn!(url = %url, name, error = %source, "cannot connect to this broker address, trying the next");
                }
                failures.push((url, source));
            }
        }
    }
    Err(match failures.pop() {
        Some((url, source)) if failures.is_empty() => BusError::Connect {
            url,
            name: name.to_owned(),
            source,
        },
        last => BusError::Unreachable {
            name: name.to_owned(),
            failures: failures
                .into_iter()
                .chain(last)
                .map(|(url, source)| format!("{url}: {source}"))
                .collect::<Vec<_>>()
                .join("; "),
        },
    })
}

/// One address as lapin reads it, with Fortnight's defaults filled in.
fn uri(settings: &BusSettings, url: &str) -> Result<AMQPUri, BusError> {
    let mut uri = AMQPUri::from_str(url).map_err(|reason| BusError::Url {
        url: settings::redact_url(url),
        reason,
    })?;
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(DEFAULT_HEARTBEAT_SECONDS);
    }
    if uri.query.frame_max.is_none() {
        uri.query.frame_max = Some(DEFAULT_FRAME_MAX);
    }
    // fedora-messaging authenticates with the client certificate whenever one is configured;
    // a URL that names a mechanism explicitly still wins.
    if settings.tls.is_some() && !url.contains("auth_mechanism=") {
        uri.query.auth_mechanism = Some(SASLMechanism::External);
    }
    Ok(uri)
}

fn tls(settings: &BusSettings) -> Result<OwnedTLSConfig, BusError> {
    match &settings.tls {
        Some(tls) => tls_config(&tls.ca_cert, &tls.certfile, &tls.keyfile),
        None => Ok(OwnedTLSConfig::default()),
    }
}

fn connection_properties(settings: &BusSettings, name: &str) -> ConnectionProperties {
    let mut properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
        .with_connection_name(name.into());
    if let Some(app) = &settings.client_properties.app {
        properties
            .client_properties
            .insert("app".into(), AMQPValue::LongString(app.as_str().into()));
    }
    properties
}

/// Closes `connection` and waits until its I/O thread has stopped. lapin's I/O thread
/// outlives the close handshake by a moment and uses the tokio reactor; a program that returns
/// from `main` in that moment shuts the runtime down under it, and lapin logs "A Tokio 1.x
/// context was found, but it is being shutdown" as a connection error. Gives up after
/// [`CLOSE_WAIT`]: a connection to a broker that stopped answering would otherwise hold the
/// caller until the heartbeat gives up on it.
pub(crate) async fn close(connection: Connection, reason: &str) {
    let closed = async {
        if let Err(error) = connection.close(200, reason).await {
            tracing::debug!(%error, "connection already closed");
        }
        // `run` joins the I/O thread, which ends soon after a close (or has already ended
        // with a failed connection); blocking on it belongs off the async workers.
        match tokio::task::spawn_blocking(move || connection.run()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::debug!(%error, "connection ended with an error after close"),
            Err(error) => tracing::warn!(%error, "cannot wait for the connection's I/O thread"),
        }
    };
    if tokio::time::timeout(CLOSE_WAIT, closed).await.is_err() {
        tracing::warn!(
            wait_s = CLOSE_WAIT.as_secs(),
            "the broker did not answer the connection's close in time, leaving it"
        );
    }
}

/// Closes `channel` and waits for the broker's answer, before its connection is closed:
/// a channel dropped instead closes in the background, and races the connection's close
/// (lapin logs "invalid channel state: Closing" as a connection error). Gives up after
/// [`CLOSE_WAIT`].
pub(crate) async fn close_channel(channel: &Channel, reason: &str) {
    match tokio::time::timeout(CLOSE_WAIT, channel.close(200, reason)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "channel already closed"),
        Err(_) => tracing::debug!("the broker did not answer the channel's close in time"),
    }
}

/// How long [`close`] and [`close_channel`] wait for the broker and the I/O thread.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub(crate) async fn open_channel(connection: &Connection) -> Result<Channel, BusError> {
    connection
        .create_channel()
        .await
        .map_err(|source| BusError::amqp("open a channel", source))
}

/// A channel in confirm mode: every publish on it is acknowledged by the broker.
pub(crate) async fn confirm_channel(connection: &Connection) -> Result<Channel, BusError> {
    let channel = open_channel(connection).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|source| BusError::amqp("enable publisher confirms", source))?;
    Ok(channel)
}

/// Builds the TLS settings from PEM files. lapin only takes a client identity as PKCS#12, so
/// the PEM certificate chain and PKCS#8 key are packed into one in memory.
fn tls_config(ca_cert: &Path, certfile: &Path, keyfile: &Path) -> Result<OwnedTLSConfig, BusError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| BusError::Tls {
            path: path.to_owned(),
            reason: source.to_string(),
        })
    };
    let ca = String::from_utf8(read(ca_cert)?).map_err(|_| BusError::Tls {
        path: ca_cert.to_owned(),
        reason: "not a PEM text file".to_owned(),
    })?;
    let chain = rustls_pemfile::certs(&mut read(certfile)?.as_slice())
        .map(|cert| {
            cert.map_err(|e| e.to_string()).and_then(|der| {
                p12_keystore::Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| BusError::Tls {
            path: certfile.to_owned(),
            reason,
        })?;
    if chain.is_empty() {
        return Err(BusError::Tls {
            path: certfile.to_owned(),
            reason: "no CERTIFICATE block found".to_owned(),
        });
    }
    let key = rustls_pemfile::pkcs8_private_keys(&mut read(keyfile)?.as_slice())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| BusError::Tls {
            path: keyfile.to_owned(),
            reason:
                "no PKCS#8 `PRIVATE KEY` block found (convert with `openssl pkcs8 -topk8 -nocrypt`)"
                    .to_owned(),
        })?;
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        "client",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            key.secret_pkcs8_der(),
            b"client",
            chain,
        )),
    );
    // The PKCS#12 blob never leaves this process; the password only satisfies the format.
    let password = uuid::Uuid::new_v4().to_string();
    let der = store.writer(&password).write().map_err(|e| BusError::Tls {
        path: certfile.to_owned(),
        reason: format!("cannot pack certificate and key: {e}"),
    })?;
    Ok(OwnedTLSConfig {
        identity: Some(OwnedIdentity { der, password }),
        cert_chain: Some(ca),
    })
}

/// The properties fedora-messaging sets on every message, and nothing else.
pub(crate) fn properties(id: Option<&str>, headers: FieldTable) -> AMQPProperties {
    let properties = AMQPProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_headers(headers);
    match id {
        Some(id) => properties.with_message_id(id.into()),
        None => properties,
    }
}

/// Properties for the runtime's copy of a received message (retry, dead letter, replay): id,
/// content type and encoding kept, new headers. The broker only accepts the publishing
/// connection's own user as `user_id`, so the original `sender` travels in
/// [`HEADER_USER_ID`](crate::HEADER_USER_ID) under the runtime's `own_user`; see [`sender`].
pub(crate) fn copy_properties(
    original: &AMQPProperties,
    mut headers: BTreeMap<String, Value>,
    sender: Option<&str>,
    own_user: Option<&str>,
) -> AMQPProperties {
    let carried = match (sender, own_user) {
        (Some(sender), Some(own)) => {
            headers.insert(crate::HEADER_USER_ID.to_owned(), Value::from(sender));
            Some(own)
        }
        _ => None,
    };
    let mut copy = properties(
        original.message_id().as_ref().map(ShortString::as_str),
        to_table(&headers),
    );
    if let Some(own) = carried {
        copy = copy.with_user_id(own.into());
    }
    if let Some(content_type) = original.content_type() {
        copy = copy.with_content_type(content_type.clone());
    }
    if let Some(encoding) = original.content_encoding() {
        copy = copy.with_content_encoding(encoding.clone());
    }
    copy
}

/// A delivery's headers as JSON values (empty when it has none).
pub(crate) fn headers(properties: &AMQPProperties) -> BTreeMap<String, Value> {
    properties
        .headers()
        .as_ref()
        .map(from_table)
        .unwrap_or_default()
}

/// Who sent a delivery: its broker-checked `user_id`, or, on the runtime's own copy (whose
/// `user_id` is `own_user`, which nobody else can set), the sender it carried.
pub(crate) fn sender(
    properties: &AMQPProperties,
    headers: &BTreeMap<String, Value>,
    own_user: Option<&str>,
) -> Option<String> {
    let checked = short(properties.user_id());
    match headers.get(crate::HEADER_USER_ID).and_then(Value::as_str) {
        Some(carried) if own_user.is_some() && checked.as_deref() == own_user => {
            Some(carried.to_owned())
        }
        _ => checked,
    }
}

/// The virtual host the broker addresses name (`/` when the path is empty or `%2f`).
pub(crate) fn vhost(settings: &BusSettings) -> Option<String> {
    let uri: AMQPUri = settings.broker_urls()[0].parse().ok()?;
    Some(uri.vhost)
}

/// JSON header values to an AMQP table, with integers as narrow as they fit (as pika does).
pub(crate) fn to_table<'a>(
    headers: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in headers {
        table.insert(ShortString::from(key.as_str()), to_amqp(value));
    }
    table
}

fn to_amqp(value: &Value) -> AMQPValue {
    match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => match i32::try_from(i) {
                Ok(small) => AMQPValue::LongInt(small),
                Err(_) => AMQPValue::LongLongInt(i),
            },
            (None, Some(f)) => AMQPValue::Double(f),
            (None, None) => AMQPValue::LongString(n.to_string().into()),
        },
        Value::String(s) => AMQPValue::LongString(s.as_str().into()),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(to_amqp).collect::<Vec<_>>(),
        )),
        Value::Object(map) => AMQPValue::FieldTable(to_table(map)),
    }
}

/// An AMQP table to JSON, accepting every integer width and string kind a publisher may use.
pub(crate) fn from_table(table: &FieldTable) -> BTreeMap<String, Value> {
    table
        .inner()
        .iter()
        .map(|(key, value)| (key.to_string(), from_amqp(value)))
        .collect()
}

fn from_amqp(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(i) => Value::from(*i),
        AMQPValue::ShortShortUInt(i) => Value::from(*i),
        AMQPValue::ShortInt(i) => Value::from(*i),
        AMQPValue::ShortUInt(i) => Value::from(*i),
        AMQPValue::LongInt(i) => Value::from(*i),
        AMQPValue::LongUInt(i) => Value::from(*i),
        AMQPValue::LongLongInt(i) => Value::from(*i),
        AMQPValue::Timestamp(t) => Value::from(*t),
        AMQPValue::Float(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        AMQPValue::Double(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        AMQPValue::DecimalValue(d) => {
            let value = f64::from(d.value) / 10f64.powi(i32::from(d.scale));
            Number::from_f64(value).map_or(Value::Null, Value::Number)
        }
        AMQPValue::ShortString(s) => Value::from(s.as_str()),
        AMQPValue::LongString(s) => Value::from(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ByteArray(b) => Value::from(String::from_utf8_lossy(b.as_slice()).into_owned()),
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(from_amqp).collect())
        }
        AMQPValue::FieldTable(table) => {
            Value::Object(from_table(table).into_iter().collect::<Map<_, _>>())
        }
        AMQPValue::Void => Value::Null,
    }
}

/// A string property as text.
pub(crate) fn short(value: &Option<ShortString>) -> Option<String> {
    value.as_ref().map(ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_through_amqp_tables() {
        let headers: BTreeMap<String, Value> = serde_json::from_str(
            r#"{"a": 1, "big": 12345678901, "s": "x", "b": true, "n": null, "f": 1.5,
                "list": [1, "two"], "nested": {"k": -3}}"#,
        )
        .unwrap();
        assert_eq!(from_table(&to_table(&headers)), headers);
    }

    fn delivered_by(
        user: &str,
        carried: Option<&str>,
    ) -> (AMQPProperties, BTreeMap<String, Value>) {
        let mut headers = BTreeMap::new();
        if let Some(carried) = carried {
            headers.insert(crate::HEADER_USER_ID.to_owned(), Value::from(carried));
        }
        let properties = AMQPProperties::default().with_user_id(user.into());
        (properties, headers)
    }

    #[test]
    fn a_carried_sender_is_believed_only_from_the_runtimes_own_user() {
        let (props, headers) = delivered_by("fortnight", Some("alice"));
        assert_eq!(
            sender(&props, &headers, Some("fortnight")).as_deref(),
            Some("alice")
        );
        // Anyone else who sets the header is who they are, not whom they claim.
        let (props, headers) = delivered_by("mallory", Some("alice"));
        assert_eq!(
            sender(&props, &headers, Some("fortnight")).as_deref(),
            Some("mallory")
        );
        // Without knowing its own user the runtime believes no header.
        let (props, headers) = delivered_by("fortnight", Some("alice"));
        assert_eq!(sender(&props, &headers, None).as_deref(), Some("fortnight"));
        let (props, headers) = delivered_by("alice", None);
        assert_eq!(
            sender(&props, &headers, Some("fortnight")).as_deref(),
            Some("alice")
        );
    }

    #[test]
    fn a_copy_carries_the_sender_under_the_runtimes_own_user() {
        let original = AMQPProperties::default()
            .with_message_id("id-1".into())
            .with_user_id("alice".into());
        let copy = copy_properties(&original, BTreeMap::new(), Some("alice"), Some("fortnight"));
        assert_eq!(short(copy.user_id()).as_deref(), Some("fortnight"));
        assert_eq!(
            sender(&copy, &headers(&copy), Some("fortnight")).as_deref(),
            Some("alice")
        );
        assert_eq!(short(copy.message_id()).as_deref(), Some("id-1"));
    }

    #[test]
    fn frames_are_small_unless_the_url_names_a_size() {
        let settings = BusSettings::load(None).unwrap();
        let plain = uri(&settings, "amqp://guest:guest@localhost:5672/%2f").unwrap();
        assert_eq!(plain.query.frame_max, Some(DEFAULT_FRAME_MAX));
        let named = uri(
            &settings,
            "amqp://guest:guest@localhost:5672/%2f?frame_max=131072",
        )
        .unwrap();
        assert_eq!(named.query.frame_max, Some(131072));
    }

    #[test]
    fn every_integer_width_reads_as_a_number() {
        let mut table = FieldTable::default();
        table.insert("a".into(), AMQPValue::ShortShortInt(-1));
        table.insert("b".into(), AMQPValue::ShortUInt(20));
        table.insert("c".into(), AMQPValue::LongUInt(30));
        table.insert("d".into(), AMQPValue::LongLongInt(40));
        table.insert("e".into(), AMQPValue::ShortString("text".into()));
        let json = from_table(&table);
        assert_eq!(json["a"], Value::from(-1));
        assert_eq!(json["b"], Value::from(20));
        assert_eq!(json["c"].as_i64(), Some(30));
        assert_eq!(json["d"].as_i64(), Some(40));
        assert_eq!(json["e"], Value::from("text"));
    }
}
