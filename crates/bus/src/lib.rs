//! The message bus runtime. Steps (the consumers' libraries) never see AMQP: they implement
//! [`Step`] (or [`BlockingStep`]) over a typed [`Input`], return their [`Outputs`] or a
//! [`StepError`], and [`run`] publishes with confirms and acks.
//!
//! Guarantees of [`run`]:
//! - at least once: the input is acked only after every message the step returned was
//!   confirmed by the broker (or, for a [long-running](journal) step, after the input is on
//!   disk); a redelivered input runs the step again, so steps are idempotent;
//! - acks in delivery order: steps run one at a time, in delivery order, but the runtime does
//!   not wait for a delivery's confirms before taking the next one. Up to
//!   `qos.prefetch_count` deliveries wait between "published" and "acked"; a delivery is acked
//!   once all its publishes are confirmed and every delivery before it is settled, with one
//!   `multiple` ack per contiguous run. A refused (nacked) publish retries exactly the
//!   delivery it belongs to; a lost connection leaves every delivery not yet acked to the
//!   broker, which delivers it again;
//! - bad input never reaches the step and never stops the consumer: a topic from a sender the
//!   configuration does not trust for it (`BusSettings::senders`, checked against the
//!   broker-validated `user_id`), an oversized body, a body that is not JSON or not an object,
//!   or one that does not parse as the step's [`Input`] goes to the dead-letter queue
//!   `<queue>.dead` with the reason in a header;
//! - a [`BlockingStep`] runs on tokio's blocking pool, never on the async workers;
//! - everything the runtime and [`Publisher`] publish carries the connection's broker user as
//!   `user_id`, so the next consumer can trust it; a consumer whose broker user is unknown
//!   (TLS without `tls.user`) does not start;
//! - a retryable [`StepError`] ([`Outcome::Retry`]) goes through a delay queue (see [`topology`]) and, past
//!   `consumers.<name>.max_attempts`, to the dead-letter queue; a permanent one
//!   ([`Outcome::Reject`]) goes there at once. Dead letters keep body, id and original headers so [`dead_letters`] can replay
//!   them;
//! - a lost connection is retried with capped exponential backoff and jitter, the topology is
//!   declared again and consuming resumes; a delivery from a dead channel is never acked;
//! - the shutdown future stops intake, lets the message in hand finish, waits for the
//!   confirms of every delivery in the window and acks them, closes the connection and waits
//!   for its I/O thread, and `run` returns.
//!
//! Limits worth knowing:
//! - steps run one at a time; the others of a prefetch wait unacked, and the
//!   broker's `consumer_timeout` counts for them too. A step that can take longer than
//!   `consumer_timeout / qos.prefetch_count` should be [long-running](journal) (or run with a
//!   smaller prefetch);
//! - the broker only accepts the publishing connection's own user as `user_id`, so a copy on
//!   a retry or dead-letter queue carries the original sender in [`HEADER_USER_ID`] and the
//!   runtime's own user as `user_id`. That header is believed only on a message whose
//!   broker-checked `user_id` is the runtime's own user (so nobody else can forge it).

use std::path::PathBuf;

use messages::Outgoing;

mod amqp;
mod cli;
mod clock;
pub mod dead_letters;
mod health;
pub mod journal;
mod publisher;
pub mod record;
mod runtime;
mod step;
pub mod topology;

// For `input!`, which names messages' types from the crate that uses it.
#[doc(hidden)]
pub use messages as __messages;

pub use cli::{clock_main, consumer_main, consumer_with_clock_main, init_tracing, shutdown_signal};
pub use clock::{Clock, Next, run_clock, run_with_clock};
pub use health::{LabelledGauge, Metrics};
pub use publisher::{NotTaken, Publisher, RecordsNotConfirmed, Unconfirmed};
pub use runtime::run;
pub use step::{BlockingStep, Input, Outputs, Refusal, Step, StepError, blocking, outcome};

/// Header counting failed attempts on a retried copy.
pub const HEADER_ATTEMPTS: &str = "x-fortnight-attempts";
/// Header naming the consumer that dead-lettered a message.
pub const HEADER_CONSUMER: &str = "x-fortnight-consumer";
/// Header with the reason a message was retried or dead-lettered.
pub const HEADER_REASON: &str = "x-fortnight-reason";
/// Header keeping the original routing key while a message sits in a retry or dead-letter queue.
pub const HEADER_ROUTING_KEY: &str = "x-fortnight-routing-key";
/// Header carrying the original sender's broker-checked `user_id` on the runtime's own copies.
pub const HEADER_USER_ID: &str = "x-fortnight-user-id";

/// What the runtime does with one message once the step ran (or refused its input).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The step's effect is durable; publish these, then ack.
    Done(Vec<Outgoing>),
    /// A transient failure: try again after the configured delay for its attempt.
    Retry { reason: String },
    /// The message can never succeed: dead-letter it with this reason.
    Reject { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid broker address {url} (amqp_url or amqp_urls): {reason}")]
    Url { url: String, reason: String },
    #[error("cannot use TLS file {path}: {reason}; check the [tls] section of the configuration")]
    Tls { path: PathBuf, reason: String },
    #[error(
        "cannot connect to {url} as {name}: {source}; check that the broker runs and that amqp_url and [tls] are right"
    )]
    Connect {
        url: String,
        name: String,
        source: lapin::Error,
    },
    #[error(
        "cannot connect as {name} to any broker address ({failures}); check that the cluster runs and that amqp_urls and [tls] are right"
    )]
    Unreachable { name: String, failures: String },
    #[error("cannot {operation}: {source}")]
    Amqp {
        operation: &'static str,
        source: lapin::Error,
    },
    #[error(
        "cannot declare {kind} `{name}`: {source} (with passive_declares an administrator must create it)"
    )]
    Declare {
        kind: &'static str,
        name: String,
        source: lapin::Error,
    },
    #[error("the broker refused (nacked) a message to `{routing_key}`; it will be retried")]
    Nacked { routing_key: String },
    #[error(
        "no queue is bound for `{routing_key}`, so the broker returned the message undelivered; start the consumer that reads it, or check the topic against `topic_prefix`"
    )]
    Unroutable { routing_key: String },
    #[error("the connection to the broker was lost")]
    ConnectionLost,
    #[error("job journal {path}: {source}")]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot serve health endpoints on {addr}: {source}; change consumers.<name>.health_addr"
    )]
    Health {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("message `{id}` not found in `{queue}`")]
    NotFound { queue: String, id: String },
    #[error("the {consumer} consumer cannot start: {reason}")]
    Start {
        consumer: &'static str,
        reason: String,
    },
}

impl BusError {
    fn amqp(operation: &'static str, source: lapin::Error) -> Self {
        Self::Amqp { operation, source }
    }

    fn declare(kind: &'static str, name: &str, source: lapin::Error) -> Self {
        Self::Declare {
            kind,
            name: name.to_owned(),
            source,
        }
    }

    /// Errors that retrying cannot fix: the configuration must change.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::Url { .. } | Self::Tls { .. } | Self::Health { .. } | Self::Start { .. }
        )
    }
}
