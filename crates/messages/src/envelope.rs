//! The fedora-messaging wire format: what a publisher sets on an AMQP message, and how a
//! receiver reads one tolerantly (headers may be missing, integers of any width, ids bridged
//! from fedmsg as `YYYY-<uuid>`, unknown schema names).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ids::UserName;

pub const HEADER_SCHEMA: &str = "fedora_messaging_schema";
pub const HEADER_SCHEMA_PACKAGE: &str = "fedora_messaging_schema_package";
pub const HEADER_SEVERITY: &str = "fedora_messaging_severity";
pub const HEADER_SENT_AT: &str = "sent-at";
pub const HEADER_PRIORITY: &str = "priority";
pub const HEADER_USER_PREFIX: &str = "fedora_messaging_user_";
/// The Python package that would provide these schemas, as fedora-messaging names it.
pub const SCHEMA_PACKAGE: &str = "fortnight_messages";
/// The schema name fedora-messaging uses for a message without a schema package.
pub const BASE_SCHEMA: &str = "base.message";

/// Severity levels, with the numbers fedora-messaging uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    Debug = 10,
    Info = 20,
    Warning = 30,
    Error = 40,
}

/// A typed Fortnight message body.
pub trait Message: Serialize + DeserializeOwned + schemars::JsonSchema {
    /// The logical topic (routing key without the deployment's prefix).
    const TOPIC: &'static str;

    fn severity(&self) -> Severity {
        Severity::Info
    }

    /// The people this message concerns; each becomes a `fedora_messaging_user_<name>` header.
    fn users(&self) -> Vec<&UserName> {
        Vec::new()
    }

    /// The AMQP priority fedora-messaging publishes with (`priority` header too).
    fn priority(&self) -> u8 {
        0
    }
}

/// A message ready to publish: everything fedora-messaging would put on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub id: Uuid,
    /// Logical topic; the publisher prepends the configured prefix.
    pub topic: String,
    pub body: Map<String, Value>,
    pub schema: String,
    pub severity: Severity,
    pub priority: u8,
    pub users: Vec<UserName>,
}

impl Outgoing {
    /// Wraps a typed body. `id` is usually [`derived_id`] so that a replayed step publishes the
    /// same id again and downstream deduplicates.
    pub fn new<M: Message>(id: Uuid, message: &M) -> Self {
        let body = match serde_json::to_value(message) {
            Ok(Value::Object(map)) => map,
            // Every Message is a struct with named fields; anything else is a programming error
            // caught by the schema tests, so degrade to an empty object rather than panic.
            _ => Map::new(),
        };
        Self {
            id,
            topic: M::TOPIC.to_owned(),
            body,
            schema: M::TOPIC.to_owned(),
            severity: message.severity(),
            priority: message.priority(),
            users: message.users().into_iter().cloned().collect(),
        }
    }

    /// The message as a consumer receives it from a broker without a topic prefix: lets a
    /// step's `handle` be driven directly (unit tests, benchmarks).
    pub fn to_incoming(&self) -> Incoming {
        Incoming {
            id: Some(self.id.to_string()),
            routing_key: self.topic.clone(),
            topic: self.topic.clone(),
            headers: self.headers(Utc::now()),
            body: self.body.clone(),
            user_id: None,
        }
    }

    /// The AMQP headers fedora-messaging sends, with `sent-at` at second precision.
    pub fn headers(&self, sent_at: DateTime<Utc>) -> BTreeMap<String, Value> {
        let mut headers = BTreeMap::new();
        headers.insert(HEADER_SCHEMA.to_owned(), Value::from(self.schema.clone()));
        headers.insert(
            HEADER_SCHEMA_PACKAGE.to_owned(),
            Value::from(SCHEMA_PACKAGE),
        );
        headers.insert(
            HEADER_SEVERITY.to_owned(),
            Value::from(self.severity as i64),
        );
        headers.insert(HEADER_PRIORITY.to_owned(), Value::from(self.priority));
        headers.insert(
            HEADER_SENT_AT.to_owned(),
            Value::from(sent_at.to_rfc3339_opts(SecondsFormat::Secs, false)),
        );
        for user in &self.users {
            headers.insert(format!("{HEADER_USER_PREFIX}{user}"), Value::Bool(true));
        }
        headers
    }
}

/// Namespace for derived message ids; fixed forever so ids stay stable across versions.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_746e_6967_6874_8000_0000_0000_0001);

/// A deterministic id for the message a step derives from its input: the same step over the
/// same identity always yields the same id.
pub fn derived_id(step: &str, identity: &[&str]) -> Uuid {
    let mut name = String::from(step);
    for part in identity {
        name.push('\u{1f}');
        name.push_str(part);
    }
    Uuid::new_v5(&ID_NAMESPACE, name.as_bytes())
}

/// A message as received, read the way the reference client reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The `message_id` property as sent (`<uuid>`, `YYYY-<uuid>`), if any.
    pub id: Option<String>,
    /// The full routing key as received.
    pub routing_key: String,
    /// The routing key with the configured prefix removed.
    pub topic: String,
    pub headers: BTreeMap<String, Value>,
    pub body: Map<String, Value>,
    /// The broker-validated `user_id` property: RabbitMQ refuses one that is not the
    /// connection's user, so it can be trusted to say who published.
    pub user_id: Option<String>,
}

/// Why a received body was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("body is JSON but not an object (got {0})")]
    NotObject(&'static str),
    #[error("body does not match the {topic} schema: {source}")]
    Schema {
        topic: &'static str,
        source: serde_json::Error,
    },
}

/// Parses raw bytes into a JSON object, as fedora-messaging requires of every body.
pub fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, BodyError> {
    match serde_json::from_slice::<Value>(bytes).map_err(BodyError::NotJson)? {
        Value::Object(map) => Ok(map),
        Value::Null => Err(BodyError::NotObject("null")),
        Value::Bool(_) => Err(BodyError::NotObject("a boolean")),
        Value::Number(_) => Err(BodyError::NotObject("a number")),
        Value::String(_) => Err(BodyError::NotObject("a string")),
        Value::Array(_) => Err(BodyError::NotObject("an array")),
    }
}

/// An integer header as any AMQP integer width arrives after conversion to JSON; the
/// reference client's header schema says "number", so an integral float counts too.
fn header_integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

/// Strips `prefix` (with or without its trailing dot) from a received routing key.
pub fn strip_prefix<'a>(routing_key: &'a str, prefix: &str) -> &'a str {
    let prefix = prefix.trim_end_matches('.');
    if prefix.is_empty() {
        return routing_key;
    }
    routing_key
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .unwrap_or(routing_key)
}

/// Prepends `prefix` unless the topic already carries it (a recorded message does).
pub fn add_prefix(topic: &str, prefix: &str) -> String {
    let prefix = prefix.trim_end_matches('.');
    if prefix.is_empty() || strip_prefix(topic, prefix) != topic {
        topic.to_owned()
    } else {
        format!("{prefix}.{topic}")
    }
}

impl Incoming {
    /// Deserializes the body as `M`, naming the topic in the error.
    pub fn parse<M: Message>(&self) -> Result<M, BodyError> {
        serde_json::from_value(Value::Object(self.body.clone())).map_err(|source| {
            BodyError::Schema {
                topic: M::TOPIC,
                source,
            }
        })
    }

    /// Checks that the broker-validated publisher is the user the body claims to act as;
    /// the error reads `<claim> <user> but ...`, e.g. with `claim` = "vote claims user".
    pub fn check_publisher(&self, claim: &str, user: &UserName) -> Result<(), String> {
        match self.user_id.as_deref() {
            Some(publisher) if publisher == user.as_str() => Ok(()),
            Some(publisher) => Err(format!(
                "{claim} {user} but was published by broker user {publisher}"
            )),
            None => Err(format!("{claim} {user} but carries no user_id property")),
        }
    }

    /// The schema name from the headers, or `base.message` when absent or not a string.
    pub fn schema(&self) -> &str {
        self.headers
            .get(HEADER_SCHEMA)
            .and_then(Value::as_str)
            .unwrap_or(BASE_SCHEMA)
    }

    /// Severity from the headers, accepting any integer width; `Info` when absent or odd.
    pub fn severity(&self) -> Severity {
        match self.headers.get(HEADER_SEVERITY).and_then(header_integer) {
            Some(10) => Severity::Debug,
            Some(30) => Severity::Warning,
            Some(40) => Severity::Error,
            _ => Severity::Info,
        }
    }

    /// When the message was sent (its `sent-at` header, whole seconds in fedora-messaging's
    /// format); `None` when absent or unreadable.
    pub fn sent_at(&self) -> Option<DateTime<Utc>> {
        let text = self.headers.get(HEADER_SENT_AT)?.as_str()?;
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The `priority` header, accepting any integer width; 0 when absent or odd.
    pub fn priority(&self) -> i64 {
        self.headers
            .get(HEADER_PRIORITY)
            .and_then(header_integer)
            .unwrap_or(0)
    }

    /// The UUID inside the message id, accepting fedmsg's `YYYY-<uuid>` form.
    pub fn uuid(&self) -> Option<Uuid> {
        let id = self.id.as_deref()?;
        Uuid::parse_str(id).ok().or_else(|| {
            let (year, rest) = id.split_once('-')?;
            (year.len() == 4 && year.chars().all(|c| c.is_ascii_digit()))
                .then(|| Uuid::parse_str(rest).ok())
                .flatten()
        })
    }

    /// A printable id for logs: the message id, or `-` when the publisher set none.
    pub fn log_id(&self) -> &str {
        self.id.as_deref().unwrap_or("-")
    }
}

/// One line of fedora-messaging's record/replay format (JSON Lines, keys sorted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordLine {
    pub body: Value,
    #[serde(default)]
    pub headers: BTreeMap<String, Value>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub priority: Option<i64>,
    #[serde(default)]
    pub queue: Option<String>,
    pub topic: String,
}

/// Why a line of a record file was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "line {line}: not a record (a JSON object with a string \"topic\" and an object \"body\"): {source}"
    )]
    Invalid {
        line: usize,
        source: serde_json::Error,
    },
    #[error("line {line}: \"body\" must be a JSON object, as fedora-messaging requires")]
    BodyNotObject { line: usize },
}

impl RecordLine {
    /// Gives a line the headers `fedora-messaging publish` puts on every message (schema
    /// `base.message`, severity info, `sent-at`, priority 0) where it lacks them, keeping
    /// those it carries, so a fedora-messaging consumer never reports a misbehaving publisher.
    pub fn with_publish_defaults(mut self, sent_at: DateTime<Utc>) -> Self {
        let defaults = [
            (HEADER_SCHEMA, Value::from(BASE_SCHEMA)),
            (HEADER_SEVERITY, Value::from(Severity::Info as i64)),
            (
                HEADER_SENT_AT,
                Value::from(sent_at.to_rfc3339_opts(SecondsFormat::Secs, false)),
            ),
        ];
        for (name, value) in defaults {
            self.headers.entry(name.to_owned()).or_insert(value);
        }
        // The publisher writes the priority header from this field.
        if self.priority.is_none() {
            let header = self.headers.get(HEADER_PRIORITY).and_then(header_integer);
            self.priority = Some(header.unwrap_or(0));
        }
        self
    }

    /// What `fortnight record` writes for a received message, as `fedora-messaging record` would.
    pub fn from_incoming(message: &Incoming, queue: Option<&str>) -> Self {
        Self {
            body: Value::Object(message.body.clone()),
            headers: message.headers.clone(),
            id: message.id.clone(),
            priority: Some(message.priority()),
            queue: queue.map(str::to_owned),
            topic: message.routing_key.clone(),
        }
    }

    /// Parses one line (1-based `line` for the error); blank lines are the caller's to skip.
    pub fn parse(text: &str, line: usize) -> Result<Self, RecordError> {
        let record: RecordLine =
            serde_json::from_str(text).map_err(|source| RecordError::Invalid { line, source })?;
        if !record.body.is_object() {
            return Err(RecordError::BodyNotObject { line });
        }
        Ok(record)
    }

    /// Parses a whole record file, skipping blank lines.
    pub fn parse_all(text: &str) -> Result<Vec<Self>, RecordError> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| Self::parse(l, i + 1))
            .collect()
    }

    /// The line exactly as fedora-messaging writes it (Python's `json.dumps(sort_keys=True,
    /// ensure_ascii=False)`: keys sorted, `", "` and `": "` separators), without the newline,
    /// so files from either tool diff cleanly against each other.
    pub fn to_line(&self) -> String {
        let mut out = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
        // Serializing plain JSON values into memory cannot fail.
        let _ = self.serialize(&mut serializer);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// serde_json's compact output with Python's default separators.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Python's item separator `", "` goes between array items and object members alike.
fn item_separator<W: ?Sized + std::io::Write>(writer: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_never_added_twice() {
        assert_eq!(
            add_prefix("fortnight.tree.composed", "org.fedoraproject.prod"),
            "org.fedoraproject.prod.fortnight.tree.composed"
        );
        assert_eq!(
            add_prefix(
                "org.fedoraproject.prod.fortnight.tree.composed",
                "org.fedoraproject.prod."
            ),
            "org.fedoraproject.prod.fortnight.tree.composed"
        );
        assert_eq!(add_prefix("x.y", ""), "x.y");
        assert_eq!(
            strip_prefix(
                "org.fedoraproject.stg.pungi.compose.ostree",
                "org.fedoraproject.stg"
            ),
            "pungi.compose.ostree"
        );
        assert_eq!(
            strip_prefix("pungi.compose.ostree", "org.fedoraproject.stg"),
            "pungi.compose.ostree"
        );
    }

    #[test]
    fn fedmsg_ids_and_missing_headers_are_tolerated() {
        let msg = Incoming {
            id: Some("2016-4c3b1f06-a3c4-4e61-8d7f-45c7b9a1d2e3".into()),
            routing_key: "t".into(),
            topic: "t".into(),
            headers: BTreeMap::new(),
            body: Map::new(),
            user_id: None,
        };
        assert!(msg.uuid().is_some());
        assert_eq!(msg.schema(), BASE_SCHEMA);
        assert_eq!(msg.severity(), Severity::Info);
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(matches!(
            parse_body(b"[1]"),
            Err(BodyError::NotObject("an array"))
        ));
        assert!(matches!(
            parse_body(b"not json"),
            Err(BodyError::NotJson(_))
        ));
        assert!(parse_body(b"{\"a\":1}").is_ok());
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(
            derived_id("build", &["a", "b"]),
            derived_id("build", &["a", "b"])
        );
        assert_ne!(
            derived_id("build", &["a", "b"]),
            derived_id("build", &["ab"])
        );
        assert_ne!(derived_id("build", &["a"]), derived_id("test", &["a"]));
    }
}
