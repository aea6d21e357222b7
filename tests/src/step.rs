//! A step driven as the runtime drives it, without a broker: the fast tier (`cargo test
//! --workspace --lib`) feeds each consumer's handler an `Incoming` built in memory and checks
//! what the runtime would do with the result (`bus::outcome`: parse, run, classify).

use bus::Outcome;
use messages::{Incoming, Message, Outgoing, derived_id};

/// `body` as a consumer receives it, published by `sender` (the broker-checked `user_id`).
/// The id derives from the topic and the body, so the same body is the same message.
pub fn incoming<M: Message>(body: &M, sender: Option<&str>) -> Incoming {
    let text = serde_json::to_string(body).expect("a body serializes");
    let mut incoming =
        Outgoing::new(derived_id("fast-tier", &[M::TOPIC, &text]), body).to_incoming();
    incoming.user_id = sender.map(str::to_owned);
    incoming
}

/// What the step published; panics with the outcome when it did not succeed.
pub fn published(outcome: Outcome) -> Vec<Outgoing> {
    match outcome {
        Outcome::Done(outputs) => outputs,
        other => panic!("expected the step to succeed, got {other:?}"),
    }
}

/// The topics of what the step published.
pub fn topics(outcome: Outcome) -> Vec<String> {
    published(outcome)
        .into_iter()
        .map(|out| out.topic)
        .collect()
}

/// Why the message was dead-lettered; panics with the outcome when it was not.
pub fn refused(outcome: Outcome) -> String {
    match outcome {
        Outcome::Reject { reason } => reason,
        other => panic!("expected the message to be dead-lettered, got {other:?}"),
    }
}

/// Why the message is retried; panics with the outcome when it is not.
pub fn retried(outcome: Outcome) -> String {
    match outcome {
        Outcome::Retry { reason, .. } => reason,
        other => panic!("expected the message to be retried, got {other:?}"),
    }
}
