//! The contract between a consumer's step and the runtime: a typed [`Input`] parsed before the
//! step runs, a [`Step`] (async) or [`BlockingStep`] (run on the blocking pool) handler, and a
//! [`StepError`] that says once whether trying again can help.

use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use messages::envelope::BodyError;
use messages::{Incoming, Outgoing};
use settings::BusSettings;

use crate::Outcome;

/// What a step publishes when it succeeds; the runtime acks the input once all are confirmed.
pub type Outputs = Vec<Outgoing>;

/// Why a message is not a step's input: dead-lettered with this reason, the step never runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl Refusal {
    /// A topic the step does not read (a binding left over from another version).
    pub fn topic(topic: &str, topics: &[&str]) -> Self {
        Self(format!(
            "topic {topic} is not one this consumer reads ({})",
            topics.join(", ")
        ))
    }
}

impl From<BodyError> for Refusal {
    fn from(error: BodyError) -> Self {
        Self(error.to_string())
    }
}

/// A step's input, parsed from the message before the step runs. Declare it with [`input!`]:
/// one variant per topic, carrying the topic's body type, so the topics are derived from it.
pub trait Input: Sized + Send + 'static {
    /// The topics this input is read from, without `topic_prefix`.
    const TOPICS: &'static [&'static str];

    /// The message as this input, or why it cannot be one.
    fn parse(message: &Incoming) -> Result<Self, Refusal>;
}

/// The input of a step that reads the message itself (a test's or benchmark's probe): its
/// step lists its topics in [`Step::topics`] and finds the body in the `Incoming`.
impl Input for () {
    const TOPICS: &'static [&'static str] = &[];

    fn parse(_: &Incoming) -> Result<Self, Refusal> {
        Ok(())
    }
}

/// Declares a step's input enum, one variant per topic with the topic's body type
/// (a `messages::Message`), and implements [`Input`] for it: `TOPICS` lists the bodies'
/// topics, `parse` picks the variant by topic and refuses a body that does not match.
///
/// ```ignore
/// bus::input! {
///     /// What the karma tracker reads.
///     pub enum KarmaInput {
///         TestsPassed(ImageTestsPassed),
///         Vote(KarmaSubmitted),
///     }
/// }
/// ```
#[macro_export]
macro_rules! input {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident($body:ty)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis enum $name {
            $($variant($body)),+
        }

        impl $crate::Input for $name {
            const TOPICS: &'static [&'static str] =
                &[$(<$body as $crate::__messages::Message>::TOPIC),+];

            fn parse(
                message: &$crate::__messages::Incoming,
            ) -> ::std::result::Result<Self, $crate::Refusal> {
                $(
                    if message.topic == <$body as $crate::__messages::Message>::TOPIC {
                        return Ok(Self::$variant(message.parse::<$body>()?));
                    }
                )+
                Err($crate::Refusal::topic(&message.topic, Self::TOPICS))
            }
        }
    };
}

/// Why a step failed, and whether trying the same message again later may succeed. The
/// conversions below are the one place where library errors are classified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct StepError {
    reason: String,
    retryable: bool,
}

impl StepError {
    /// A failure retrying cannot fix: the message is dead-lettered with `reason`.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retryable: false,
        }
    }

    /// A transient failure: the message comes back after the configured delay.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retryable: true,
        }
    }

    /// The same failure, its reason prefixed with what was being done.
    pub fn context(self, doing: impl Display) -> Self {
        Self {
            reason: format!("{doing}: {}", self.reason),
            ..self
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl From<Refusal> for StepError {
    fn from(refusal: Refusal) -> Self {
        Self::permanent(refusal.0)
    }
}

/// A stream the configuration does not have never becomes one by waiting.
impl From<settings::UnknownStream> for StepError {
    fn from(error: settings::UnknownStream) -> Self {
        Self::permanent(error.to_string())
    }
}

/// Disk full, permission denied, a network filesystem hiccup: retried; a corrupt file or an
/// invalid name: dead-lettered (see `StoreError::is_retryable`).
impl From<store::StoreError> for StepError {
    fn from(error: store::StoreError) -> Self {
        match error.is_retryable() {
            true => Self::retryable(error.to_string()),
            false => Self::permanent(error.to_string()),
        }
    }
}

/// `ostree` failing or missing, or a commit that has not reached the repository yet: an
/// operator or the mirror fixes it without the message changing.
impl From<ostree_cli::OstreeError> for StepError {
    fn from(error: ostree_cli::OstreeError) -> Self {
        Self::retryable(error.to_string())
    }
}

/// A log that cannot be created, a program that cannot start: configuration or the host,
/// fixed without the message changing.
impl From<runner::RunError> for StepError {
    fn from(error: runner::RunError) -> Self {
        Self::retryable(error.to_string())
    }
}

/// What a step made of a message, as the runtime settles it.
impl From<Result<Outputs, StepError>> for Outcome {
    fn from(result: Result<Outputs, StepError>) -> Self {
        match result {
            Ok(outputs) => Outcome::Done(outputs),
            Err(StepError {
                reason,
                retryable: false,
            }) => Outcome::Reject { reason },
            Err(StepError {
                reason,
                retryable: true,
            }) => Outcome::Retry { reason },
        }
    }
}

/// One consumer's step, run on the async workers: for steps that await processes or the
/// network. A step whose work is blocking (locks, fsync, hashing, `ostree`) implements
/// [`BlockingStep`] instead, and the runtime runs it on the blocking pool.
pub trait Step: Send + Sync + 'static {
    /// Consumer name, e.g. `image-builder`: names the queue, the connection and the config.
    const NAME: &'static str;

    /// What the step reads; a message that does not parse as it is dead-lettered unread.
    type Input: Input;

    /// Topics to bind (the configured prefix is added): those of [`Step::Input`], under the
    /// names the deployment gives them (`BusSettings::configured_topic`).
    fn topics(settings: &BusSettings) -> Vec<String> {
        Self::Input::TOPICS
            .iter()
            .map(|topic| settings.configured_topic(topic).to_owned())
            .collect()
    }

    /// Steps that may outlive the broker's `consumer_timeout` are journaled and acked before
    /// they run; see [`journal`](crate::journal).
    fn long_running(&self) -> bool {
        false
    }

    /// Runs once when [`run`](crate::run) starts, before the health endpoint and the first
    /// connection: for state a step keeps outside the bus (a rendered site, a scratch
    /// directory) that must be right before any message arrives. An error is the reason the
    /// consumer cannot start, and stops `run` with [`BusError::Start`](crate::BusError::Start).
    fn on_start(&self) -> impl Future<Output = Result<(), StepError>> + Send {
        std::future::ready(Ok(()))
    }

    /// Does the step for `input`, parsed from `message` (which has its id, sender and headers).
    fn handle(
        &self,
        input: Self::Input,
        message: &Incoming,
    ) -> impl Future<Output = Result<Outputs, StepError>> + Send;
}

/// A step whose work blocks (file locks, fsync, hashing, `ostree` and `gpg`): the runtime runs
/// [`BlockingStep::handle`] and [`BlockingStep::on_start`] on tokio's blocking pool, so the
/// step is plain synchronous code. Cloning is cheap (settings behind an `Arc`, a store path).
pub trait BlockingStep: Clone + Send + Sync + 'static {
    /// See [`Step::NAME`].
    const NAME: &'static str;

    /// See [`Step::Input`].
    type Input: Input;

    /// See [`Step::on_start`].
    fn on_start(&self) -> Result<(), StepError> {
        Ok(())
    }

    /// See [`Step::handle`].
    fn handle(&self, input: Self::Input, message: &Incoming) -> Result<Outputs, StepError>;
}

impl<B: BlockingStep> Step for B {
    const NAME: &'static str = B::NAME;
    type Input = B::Input;

    async fn on_start(&self) -> Result<(), StepError> {
        let step = self.clone();
        blocking(move || BlockingStep::on_start(&step)).await
    }

    async fn handle(&self, input: B::Input, message: &Incoming) -> Result<Outputs, StepError> {
        let (step, message) = (self.clone(), message.clone());
        blocking(move || BlockingStep::handle(&step, input, &message)).await
    }
}

/// Runs blocking work (a lock, an fsync, a process that is waited for) of an async step on
/// the blocking pool; a panic in it is a failure to retry. The work's error type is the
/// caller's, as long as a [`StepError`] converts into it.
pub async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StepError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| {
            Err(StepError::retryable(format!("the step panicked: {join}")).into())
        })
}

/// What the runtime makes of one message for `step`: the input parsed (a refusal is
/// dead-lettered without running the step), the step run, its result classified. A panic is
/// a failure to retry, not the end of the consumer. Tests drive a step through this, exactly
/// as the runtime does, without a broker; the message's topic is Fortnight's own name for it
/// (the runtime maps a deployment's renamed topics to those, see [`parse_input`]).
pub async fn outcome<S: Step>(step: &S, message: &Incoming) -> Outcome {
    match S::Input::parse(message) {
        Ok(input) => run_step(step, input, message).await,
        Err(refusal) => Outcome::Reject { reason: refusal.0 },
    }
}

/// The message as `I`, read under Fortnight's own name for its topic: a deployment may
/// rename some (`signing_topics`), and the step still sees the topic it was sent on.
pub(crate) fn parse_input<I: Input>(
    settings: &BusSettings,
    message: &Incoming,
) -> Result<I, Refusal> {
    let logical = settings.logical_topic(&message.topic);
    if logical == message.topic {
        return I::parse(message);
    }
    let mut renamed = message.clone();
    renamed.topic = logical.to_owned();
    I::parse(&renamed)
}

/// Runs the step on its parsed input; a panic is a failure to retry.
pub(crate) async fn run_step<S: Step>(step: &S, input: S::Input, message: &Incoming) -> Outcome {
    AssertUnwindSafe(step.handle(input, message))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(StepError::retryable("the step panicked")))
        .into()
}
