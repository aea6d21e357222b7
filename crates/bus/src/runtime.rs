//! The consume loop: connect, declare, consume, settle each delivery, reconnect.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, MaybeDone, maybe_done};
use futures::{FutureExt, StreamExt};
use lapin::acker::Acker;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::protocol::basic::AMQPProperties;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use messages::Incoming;
use messages::envelope::{parse_body, strip_prefix};
use rand::Rng;
use serde_json::{Map, Value};
use settings::{ConsumerSettings, Settings};
use tracing::Instrument;

use crate::amqp;
use crate::health::{self, Metrics};
use crate::journal::{Job, JobRecord, Journal, RESCAN};
use crate::publisher::{Confirms, Wire, send_unconfirmed};
use crate::step::{parse_input, run_step};
use crate::topology::Topology;
use crate::{
    BusError, HEADER_ATTEMPTS, HEADER_CONSUMER, HEADER_REASON, HEADER_ROUTING_KEY, Outcome, Step,
};

const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Runs `step` until `shutdown` completes: consumes its queue, settles every message, and
/// reconnects after connection loss. Returns `Ok` after a clean shutdown and `Err` only for
/// configuration errors that retrying cannot fix. Several consumers may run in one process,
/// each with its own connection, sharing one shutdown signal (e.g. clones of a
/// `tokio::sync::watch` receiver).
pub async fn run<S: Step>(
    settings: &Settings,
    step: Arc<S>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BusError> {
    // Every message a consumer publishes is signed with its broker user, and the next
    // consumer trusts it by that name alone: unsigned, the pipeline would stop at the first hop.
    if settings.broker_user().is_none() {
        return Err(BusError::Start {
            consumer: S::NAME,
            reason: "the broker account it publishes as is unknown; with [tls] set tls.user to the user the client certificate logs in as, otherwise name the user in amqp_url".to_owned(),
        });
    }
    step.on_start().await.map_err(|error| BusError::Start {
        consumer: S::NAME,
        reason: error.to_string(),
    })?;
    let journal = match step.long_running() {
        true => Some(Journal::open(&settings.store.root, S::NAME)?),
        false => None,
    };
    let ctx = Arc::new(Context {
        settings: settings.clone(),
        name: S::NAME,
        config: settings.consumer(S::NAME),
        topology: Topology::new(settings, S::NAME, &S::topics(settings)),
        metrics: Arc::new(Metrics::default()),
        journal,
        own_user: settings.broker_user(),
        rotation: amqp::Rotation::new(),
    });
    let health = match ctx.config.health_addr {
        Some(addr) => Some(health::serve(addr, S::NAME, ctx.metrics.clone()).await?),
        None => None,
    };
    tokio::pin!(shutdown);
    let mut failures = 0u32;
    let result = loop {
        let opened = tokio::select! {
            () = &mut shutdown => break Ok(()),
            opened = Session::open(&ctx) => opened,
        };
        match opened {
            Ok(session) => {
                let opened_at = Instant::now();
                let mut settled = false;
                match session
                    .serve(&ctx, &step, &mut shutdown, &mut settled)
                    .await
                {
                    Ok(()) => break Ok(()),
                    Err(error) => {
                        // Only a session that was healthy starts the backoff afresh. A fault
                        // that ends every session at its first delivery (an unwritable
                        // journal, a full disk) would otherwise reconnect in a tight loop,
                        // since connecting itself succeeds.
                        if settled || opened_at.elapsed() >= BACKOFF_CAP {
                            failures = 0;
                        }
                        tracing::warn!(consumer = S::NAME, error = %error, "connection lost, reconnecting")
                    }
                }
            }
            Err(error) if error.is_permanent() => break Err(error),
            Err(error) => {
                tracing::warn!(consumer = S::NAME, error = %error, "cannot start consuming")
            }
        }
        ctx.metrics.set_ready(false);
        let delay = backoff(failures);
        failures = failures.saturating_add(1);
        tracing::info!(
            consumer = S::NAME,
            delay_ms = delay.as_millis() as u64,
            "waiting before reconnecting"
        );
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    };
    ctx.metrics.set_ready(false);
    if let Some(health) = health {
        // Awaited so the port is closed when `run` returns.
        health.abort();
        let _ = health.await;
    }
    tracing::info!(consumer = S::NAME, "consumer stopped");
    result
}

/// Capped exponential backoff with jitter, so replicas do not reconnect in lockstep.
pub(crate) fn backoff(failures: u32) -> Duration {
    let full = BACKOFF_FIRST
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(BACKOFF_CAP);
    let low = full / 2;
    low + full
        .saturating_sub(low)
        .mul_f64(rand::rng().random::<f64>())
}

/// Everything a consumer needs across reconnects.
struct Context {
    settings: Settings,
    name: &'static str,
    config: ConsumerSettings,
    topology: Topology,
    metrics: Arc<Metrics>,
    journal: Option<Journal>,
    /// The broker user this consumer connects as, when known; see [`amqp::sender`].
    own_user: Option<String>,
    /// Which broker address the next connection tries first.
    rotation: amqp::Rotation,
}

type JobFuture = Pin<Box<dyn Future<Output = Result<bool, BusError>> + Send>>;

/// One connection's worth of consuming.
struct Session {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

impl Session {
    async fn open(ctx: &Context) -> Result<Self, BusError> {
        let (connection, url) =
            amqp::connect_in_turn(&ctx.settings, ctx.name, &ctx.rotation).await?;
        let channel = amqp::confirm_channel(&connection).await?;
        ctx.topology.declare(&channel).await?;
        channel
            .basic_qos(ctx.settings.qos.prefetch_count, BasicQosOptions::default())
            .await
            .map_err(|source| BusError::amqp("set the prefetch count", source))?;
        let tag = format!("{}-{}", ctx.name, uuid::Uuid::new_v4());
        let consumer = channel
            .basic_consume(
                &ctx.topology.queue,
                &tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| BusError::amqp("start consuming", source))?;
        ctx.metrics.set_ready(true);
        tracing::info!(consumer = ctx.name, url = %url, queue = %ctx.topology.queue, bindings = ?ctx.topology.bindings, "consuming");
        Ok(Self {
            connection,
            channel,
            consumer,
        })
    }

    /// Consumes until shutdown (`Ok`) or until the connection fails (`Err`); sets `settled`
    /// once a delivery or a job was settled. Closes the connection either way, and returns
    /// once its I/O thread has stopped.
    async fn serve<S: Step>(
        self,
        ctx: &Arc<Context>,
        step: &Arc<S>,
        shutdown: &mut Pin<&mut impl Future<Output = ()>>,
        settled: &mut bool,
    ) -> Result<(), BusError> {
        let Self {
            connection,
            channel,
            mut consumer,
        } = self;
        let served = consume(ctx, step, &channel, &mut consumer, shutdown, settled).await;
        let reason = match served {
            Ok(()) => "shutting down",
            Err(_) => "reconnecting",
        };
        amqp::close_channel(&channel, reason).await;
        drop((consumer, channel));
        amqp::close(connection, reason).await;
        served
    }
}

/// The session's loop. One step runs at a time, in delivery order, while the broker confirms
/// the publishes of the deliveries before it: those wait in a [`Window`] until acked.
async fn consume<S: Step>(
    ctx: &Arc<Context>,
    step: &Arc<S>,
    channel: &Channel,
    consumer: &mut Consumer,
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
    settled: &mut bool,
) -> Result<(), BusError> {
    let mut job: Option<JobFuture> = None;
    let mut stepping: Option<BoxFuture<'_, Result<InFlight, BusError>>> = None;
    let mut window = Window::default();
    // The connection failed while a step ran; the session ends when the step is done.
    let mut lost: Option<BusError> = None;
    let mut scan = ctx.journal.is_some();
    let mut rescan = tokio::time::interval(RESCAN);
    loop {
        // Only one job runs at a time; the journal is read when something may have changed.
        if job.is_none()
            && std::mem::take(&mut scan)
            && let Some(journal) = &ctx.journal
            && let Some(claimed) = journal.claim_next()?
        {
            job = Some(Box::pin(run_job(
                ctx.clone(),
                step.clone(),
                channel.clone(),
                claimed,
            )));
        }
        tokio::select! {
            biased;
            () = shutdown.as_mut() => {
                // A running job stays in the journal.
                drop(job);
                // Intake stops; what was delivered and not started is requeued when the
                // connection closes. The step in hand finishes, and every delivery whose
                // publishes the broker confirms is acked before the connection closes.
                if let Err(error) = channel
                    .basic_cancel(consumer.tag().as_str(), BasicCancelOptions::default())
                    .await
                {
                    tracing::debug!(%error, "cannot cancel consuming, closing anyway");
                }
                let drained = async {
                    if let Some(started) = stepping.take() {
                        window.push(started.await?);
                    }
                    loop {
                        *settled |= window.settle_ready(ctx, channel).await? > 0;
                        if !window.is_waiting() {
                            return Ok::<_, BusError>(());
                        }
                        window.oldest_confirmed().await;
                    }
                };
                // Shutdown is done either way; what was not acked is delivered again.
                if let Err(error) = drained.await {
                    tracing::warn!(consumer = ctx.name, error = %error, "cannot settle every delivery before stopping; the broker delivers the others again");
                }
                return Ok(());
            }
            () = window.oldest_confirmed(), if window.is_waiting() && lost.is_none() => {
                match window.settle_ready(ctx, channel).await {
                    Ok(count) => *settled |= count > 0,
                    // The bus never cuts a step short: the one in hand finishes first.
                    Err(error) if stepping.is_some() => lost = Some(error),
                    Err(error) => return Err(error),
                }
            }
            started = async { stepping.as_mut().expect("guarded by the condition").await }, if stepping.is_some() => {
                stepping = None;
                if let Some(error) = lost.take() {
                    return Err(error);
                }
                window.push(started?);
                // A journaled delivery is acked at once, before the next one is taken.
                *settled |= window.settle_ready(ctx, channel).await? > 0;
                scan = ctx.journal.is_some();
            }
            finished = async { job.as_mut().expect("guarded by the condition").await }, if job.is_some() => {
                job = None;
                scan = finished?;
                *settled = true;
            }
            _ = rescan.tick(), if ctx.journal.is_some() => scan = true,
            // The broker sends at most `qos.prefetch_count` unacked deliveries, which bounds
            // the window.
            delivery = consumer.next(), if stepping.is_none() => match delivery {
                Some(Ok(delivery)) => {
                    stepping = Some(Box::pin(process(ctx, step.as_ref(), channel, delivery)));
                }
                Some(Err(source)) => return Err(BusError::amqp("receive a delivery", source)),
                None => return Err(BusError::ConnectionLost),
            },
        }
    }
}

type ConfirmFuture = MaybeDone<BoxFuture<'static, Result<(), BusError>>>;

/// A delivery the step is done with, until it is acked or requeued.
struct InFlight {
    acker: Acker,
    received: Received,
    span: tracing::Span,
    state: State,
}

enum State {
    /// Its publishes are sent; `confirms` completes once the broker answered for each.
    /// `retry_on_refusal`: a refused result sends the input down the retry path (see
    /// [`settle_or_retry`]); a refused retry or dead-letter copy requeues it.
    Confirming {
        confirms: ConfirmFuture,
        settled: Settled,
        retry_on_refusal: bool,
    },
    /// Everything it called for is durable (confirmed, or journaled): ack it.
    Done,
    /// The broker refused the copy meant to retry or dead-letter it: requeue it.
    Requeue { routing_key: String },
}

impl State {
    fn confirming(ctx: &Context, (confirms, settled): (Confirms, Settled), retry: bool) -> Self {
        let metrics = ctx.metrics.clone();
        Self::Confirming {
            confirms: maybe_done(async move { confirms.wait(&metrics).await }.boxed()),
            settled,
            retry_on_refusal: retry,
        }
    }
}

impl InFlight {
    /// Moves on from `Confirming`, whose confirms have all come.
    async fn confirmed(&mut self, ctx: &Context, channel: &Channel) -> Result<(), BusError> {
        let State::Confirming {
            mut confirms,
            settled,
            retry_on_refusal,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Ok(());
        };
        let answer = Pin::new(&mut confirms)
            .take_output()
            .expect("called once the confirms completed");
        self.state = match answer {
            Ok(()) => {
                self.span.in_scope(|| settled.record(ctx));
                State::Done
            }
            Err(BusError::Nacked { routing_key }) if retry_on_refusal => {
                let sent = send(ctx, channel, &self.received, refused(&routing_key))
                    .instrument(self.span.clone())
                    .await?;
                State::confirming(ctx, sent, false)
            }
            Err(BusError::Nacked { routing_key }) => State::Requeue { routing_key },
            Err(error) => return Err(error),
        };
        Ok(())
    }
}

/// The deliveries whose step is done and that are not acked yet, in delivery order: the
/// broker confirms one's publishes while the step works on the next. Each is acked only once
/// every publish it called for is confirmed, and only after every delivery before it is
/// settled, so one `multiple` ack covers a contiguous run.
#[derive(Default)]
struct Window(VecDeque<InFlight>);

impl Window {
    fn push(&mut self, delivery: InFlight) {
        self.0.push_back(delivery);
    }

    /// Whether the oldest delivery waits for confirms (after [`Window::settle_ready`], the
    /// only thing it can wait for).
    fn is_waiting(&self) -> bool {
        matches!(
            self.0.front().map(|oldest| &oldest.state),
            Some(State::Confirming { .. })
        )
    }

    /// Completes once the oldest delivery's confirms have all come; never while it waits for
    /// none.
    async fn oldest_confirmed(&mut self) {
        match self.0.front_mut().map(|oldest| &mut oldest.state) {
            Some(State::Confirming { confirms, .. }) => confirms.await,
            _ => std::future::pending().await,
        }
    }

    /// Settles deliveries from the oldest while their confirms are in: acks each contiguous
    /// run of done ones with one ack, requeues one whose retry copy was refused, and sends
    /// the retry copy of one whose results were refused (which then waits for its confirm).
    /// Returns how many it settled.
    async fn settle_ready(&mut self, ctx: &Context, channel: &Channel) -> Result<usize, BusError> {
        let mut run: Option<(Acker, usize)> = None;
        let mut count = 0;
        while let Some(mut oldest) = self.0.pop_front() {
            match &mut oldest.state {
                State::Confirming { confirms, .. } => {
                    let ready = confirms.now_or_never().is_some();
                    if ready {
                        oldest.confirmed(ctx, channel).await?;
                    }
                    self.0.push_front(oldest);
                    if !ready {
                        break;
                    }
                }
                State::Done => {
                    count += 1;
                    let length = run.map_or(0, |(_, length)| length);
                    run = Some((oldest.acker, length + 1));
                }
                State::Requeue { routing_key } => {
                    count += 1;
                    ack(run.take()).await?;
                    oldest.span.in_scope(|| tracing::warn!(routing_key = %routing_key, "broker refused a publish, requeueing the input"));
                    oldest
                        .acker
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await
                        .map_err(|source| BusError::amqp("requeue a delivery", source))?;
                }
            }
        }
        ack(run).await?;
        Ok(count)
    }
}

/// Acks a run of `length` deliveries that ends with `last`: every delivery before it on the
/// channel is settled, so one `multiple` ack covers them all.
async fn ack(run: Option<(Acker, usize)>) -> Result<(), BusError> {
    let Some((last, length)) = run else {
        return Ok(());
    };
    last.ack(BasicAckOptions {
        multiple: length > 1,
    })
    .await
    .map_err(|source| BusError::amqp("ack a delivery", source))
}

/// A delivery read the tolerant way, with the runtime's own headers taken apart.
pub(crate) struct Received {
    pub(crate) id: Option<String>,
    /// The routing key the publisher used (kept in a header while in a retry queue).
    pub(crate) routing_key: String,
    /// The publisher's headers.
    pub(crate) headers: BTreeMap<String, Value>,
    /// Who sent it (see [`amqp::sender`]).
    pub(crate) user_id: Option<String>,
    pub(crate) body: Vec<u8>,
    /// Failed attempts so far.
    attempts: u32,
    properties: AMQPProperties,
}

impl Received {
    pub(crate) fn from_delivery(delivery: &Delivery, own_user: Option<&str>) -> Self {
        Self::from_headers(delivery, amqp::headers(&delivery.properties), own_user)
    }

    /// [`Received::from_delivery`] for a caller that also reads `all`, the delivery's headers.
    pub(crate) fn from_headers(
        delivery: &Delivery,
        all: BTreeMap<String, Value>,
        own_user: Option<&str>,
    ) -> Self {
        let attempts = all
            .get(HEADER_ATTEMPTS)
            .and_then(Value::as_u64)
            .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let routing_key = all
            .get(HEADER_ROUTING_KEY)
            .and_then(Value::as_str)
            .map_or_else(|| delivery.routing_key.to_string(), str::to_owned);
        Self {
            id: amqp::short(delivery.properties.message_id()),
            routing_key,
            user_id: amqp::sender(&delivery.properties, &all, own_user),
            headers: publisher_headers(all),
            body: delivery.data.clone(),
            attempts,
            properties: delivery.properties.clone(),
        }
    }

    fn from_record(record: &JobRecord) -> Self {
        let properties = amqp::properties(record.id.as_deref(), FieldTable::default());
        Self {
            id: record.id.clone(),
            routing_key: record.routing_key.clone(),
            headers: record.headers.clone(),
            user_id: record.user_id.clone(),
            body: serde_json::to_vec(&record.body).unwrap_or_default(),
            attempts: record.attempts,
            properties,
        }
    }

    /// Why the sender may not send this topic, if it may not (see `settings::BusSettings::senders`).
    fn untrusted(&self, ctx: &Context) -> Option<String> {
        let topic = strip_prefix(&self.routing_key, &ctx.settings.topic_prefix);
        let senders = ctx.settings.senders(topic);
        if senders.allows(self.user_id.as_deref()) {
            return None;
        }
        let sender = match &self.user_id {
            Some(user) => format!("broker user {user}"),
            None => "a message without user_id".to_owned(),
        };
        Some(format!(
            "untrusted sender: {sender} may not send {topic} (allowed: {senders}); to trust it, list it in trust.topics.\"{topic}\" of the configuration"
        ))
    }

    /// The message as a step sees it, or why it cannot be one.
    fn incoming(&self, ctx: &Context) -> Result<Incoming, String> {
        if let Some(reason) = self.untrusted(ctx) {
            return Err(reason);
        }
        if self.body.len() > ctx.config.max_body_bytes {
            return Err(format!(
                "body is {} bytes, over consumers.{}.max_body_bytes = {}",
                self.body.len(),
                ctx.name,
                ctx.config.max_body_bytes
            ));
        }
        let body = parse_body(&self.body).map_err(|e| e.to_string())?;
        Ok(self.with_body(ctx, body))
    }

    /// The message as a step sees it, with its already parsed `body`.
    fn with_body(&self, ctx: &Context, body: Map<String, Value>) -> Incoming {
        Incoming {
            id: self.id.clone(),
            topic: strip_prefix(&self.routing_key, &ctx.settings.topic_prefix).to_owned(),
            routing_key: self.routing_key.clone(),
            headers: self.headers.clone(),
            body,
            user_id: self.user_id.clone(),
        }
    }

    /// A copy for a retry, dead-letter or consumer queue: body, id and the publisher's headers
    /// kept, plus the runtime's bookkeeping. `user_id` is dropped: the broker only accepts the
    /// publishing connection's own user (`own_user`) there.
    pub(crate) fn copy_to(
        &self,
        own_user: Option<&str>,
        queue: &str,
        extra: &[(&str, Value)],
    ) -> Wire {
        let mut headers = self.headers.clone();
        headers.insert(
            HEADER_ROUTING_KEY.to_owned(),
            Value::from(self.routing_key.clone()),
        );
        for (key, value) in extra {
            headers.insert((*key).to_owned(), value.clone());
        }
        let properties =
            amqp::copy_properties(&self.properties, headers, self.user_id.as_deref(), own_user);
        Wire {
            exchange: String::new(),
            routing_key: queue.to_owned(),
            body: self.body.clone(),
            properties,
        }
    }

    fn job(&self, incoming: &Incoming) -> JobRecord {
        JobRecord {
            id: self.id.clone(),
            routing_key: self.routing_key.clone(),
            headers: self.headers.clone(),
            user_id: self.user_id.clone(),
            body: incoming.body.clone(),
            attempts: self.attempts,
        }
    }
}

/// Headers a publisher set, without the runtime's bookkeeping and the broker's `x-death`.
fn publisher_headers(mut all: BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    all.retain(|key, _| {
        !key.starts_with("x-fortnight-")
            && !key.starts_with("x-death")
            && !key.starts_with("x-first-death-")
    });
    all
}

fn message_span(
    ctx: &Context,
    received: &Received,
    body: Option<&serde_json::Map<String, Value>>,
) -> tracing::Span {
    let field = |name: &str| {
        body.and_then(|b| b.get(name))
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    tracing::info_span!(
        "message",
        consumer = ctx.name,
        id = received.id.as_deref().unwrap_or("-"),
        topic = %received.routing_key,
        stream = %field("stream"),
        version = %field("version"),
        arch = %field("arch"),
    )
}

/// Starts settling one delivery: runs its step (or journals it, or refuses it) and sends what
/// the outcome calls for; the confirms come later. `Err` only when the channel is unusable or
/// the journal cannot be written.
async fn process<S: Step>(
    ctx: &Arc<Context>,
    step: &S,
    channel: &Channel,
    delivery: Delivery,
) -> Result<InFlight, BusError> {
    Metrics::count(&ctx.metrics.received);
    let received = Received::from_delivery(&delivery, ctx.own_user.as_deref());
    let incoming = received.incoming(ctx);
    let span = message_span(ctx, &received, incoming.as_ref().ok().map(|i| &i.body));
    let state = async {
        // A message that is not the step's input is refused here, before it is journaled.
        let parsed =
            incoming.and_then(
                |incoming| match parse_input::<S::Input>(&ctx.settings, &incoming) {
                    Ok(input) => Ok((incoming, input)),
                    Err(refusal) => Err(refusal.0),
                },
            );
        match parsed {
            Err(reason) => {
                let sent =
                    send_dead_letter(ctx, channel, &received, reason, received.attempts).await?;
                Ok(State::confirming(ctx, sent, false))
            }
            Ok((incoming, input)) => match &ctx.journal {
                Some(journal) => {
                    let path = journal.write(&received.job(&incoming))?;
                    tracing::info!(path = %path.display(), "job journaled");
                    Ok(State::Done)
                }
                None => {
                    let started = Instant::now();
                    let outcome = run_step(step, input, &incoming).await;
                    ctx.metrics.observe_step(started.elapsed());
                    let sent = send(ctx, channel, &received, outcome).await?;
                    Ok::<_, BusError>(State::confirming(ctx, sent, true))
                }
            },
        }
    }
    .instrument(span.clone())
    .await?;
    Ok(InFlight {
        acker: delivery.acker,
        received,
        span,
        state,
    })
}

/// Runs a journaled job; `Ok(true)` when it finished and the journal may be scanned again.
async fn run_job<S: Step>(
    ctx: Arc<Context>,
    step: Arc<S>,
    channel: Channel,
    job: Job,
) -> Result<bool, BusError> {
    let received = Received::from_record(&job.record);
    let incoming = received.with_body(&ctx, job.record.body.clone());
    let span = message_span(&ctx, &received, Some(&incoming.body));
    async {
        tracing::info!(path = %job.path().display(), "job started");
        // Checked again: a job journaled before the sender's trust was withdrawn must not run.
        let outcome = match received.untrusted(&ctx) {
            Some(reason) => Outcome::Reject { reason },
            None => match parse_input::<S::Input>(&ctx.settings, &incoming) {
                Err(refusal) => Outcome::Reject { reason: refusal.0 },
                Ok(input) => {
                    let started = Instant::now();
                    let outcome = run_step(step.as_ref(), input, &incoming).await;
                    ctx.metrics.observe_step(started.elapsed());
                    outcome
                }
            },
        };
        match settle_or_retry(&ctx, &channel, &received, outcome).await {
            Ok(()) => {
                job.finish()?;
                Ok(true)
            }
            // Kept in the journal; the next scan tries again.
            Err(BusError::Nacked { routing_key }) => {
                tracing::warn!(routing_key = %routing_key, "broker refused a publish, job kept");
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }
    .instrument(span)
    .await
}

/// Settles an outcome; when the broker refuses (nacks) a result, the input takes the retry
/// path instead, so a refusal that persists is delayed, counted and finally dead-lettered
/// rather than requeued in a tight loop. `Err(Nacked)` only when the retry copy was refused
/// too.
async fn settle_or_retry(
    ctx: &Context,
    channel: &Channel,
    received: &Received,
    outcome: Outcome,
) -> Result<(), BusError> {
    match settle(ctx, channel, received, outcome).await {
        Err(BusError::Nacked { routing_key }) => {
            settle(ctx, channel, received, refused(&routing_key)).await
        }
        settled => settled,
    }
}

/// The retry of an input whose result the broker refused.
fn refused(routing_key: &str) -> Outcome {
    Outcome::Retry {
        reason: format!("the broker refused the result published to `{routing_key}`"),
    }
}

/// Publishes what the outcome calls for and waits for the confirms. The caller acks after
/// `Ok`.
async fn settle(
    ctx: &Context,
    channel: &Channel,
    received: &Received,
    outcome: Outcome,
) -> Result<(), BusError> {
    let (confirms, settled) = send(ctx, channel, received, outcome).await?;
    confirms.wait(&ctx.metrics).await?;
    settled.record(ctx);
    Ok(())
}

/// What a delivery's publishes stand for, told (counted, logged) once they are confirmed.
enum Settled {
    Processed {
        published: usize,
    },
    Retried {
        reason: String,
        attempts: u32,
        delay: Duration,
    },
    DeadLettered {
        reason: String,
        attempts: u32,
    },
}

impl Settled {
    /// Counts and logs it, in the message's span.
    fn record(&self, ctx: &Context) {
        match self {
            Self::Processed { published } => {
                Metrics::count(&ctx.metrics.processed);
                tracing::info!(published, "message processed");
            }
            Self::Retried {
                reason,
                attempts,
                delay,
            } => {
                Metrics::count(&ctx.metrics.retried);
                tracing::warn!(reason = %reason, attempts, delay_s = delay.as_secs(), "step failed, retrying later");
            }
            Self::DeadLettered { reason, attempts } => {
                Metrics::count(&ctx.metrics.dead_lettered);
                tracing::warn!(reason = %reason, attempts, queue = %ctx.topology.dead_letter_queue, "message dead-lettered");
            }
        }
    }
}

/// Sends what the outcome calls for, without waiting for the confirms.
async fn send(
    ctx: &Context,
    channel: &Channel,
    received: &Received,
    outcome: Outcome,
) -> Result<(Confirms, Settled), BusError> {
    match outcome {
        Outcome::Done(messages) => {
            let wires: Vec<Wire> = messages
                .iter()
                .map(|m| Wire::outgoing(&ctx.settings, m))
                .collect();
            let confirms = send_unconfirmed(channel, &wires, &ctx.metrics).await?;
            let published = wires.len();
            Ok((confirms, Settled::Processed { published }))
        }
        Outcome::Retry { reason } => {
            let attempts = received.attempts.saturating_add(1);
            if attempts >= ctx.config.max_attempts {
                let reason = format!("gave up after {attempts} attempts: {reason}");
                return send_dead_letter(ctx, channel, received, reason, attempts).await;
            }
            let wanted = ctx.config.retry_delay(attempts);
            let (delay, queue) = ctx.topology.retry_queue(wanted);
            let wire = received.copy_to(
                ctx.own_user.as_deref(),
                queue,
                &[
                    (HEADER_ATTEMPTS, Value::from(attempts)),
                    (HEADER_REASON, Value::from(reason.clone())),
                ],
            );
            let confirms = send_unconfirmed(channel, &[wire], &ctx.metrics).await?;
            let retried = Settled::Retried {
                reason,
                attempts,
                delay: *delay,
            };
            Ok((confirms, retried))
        }
        Outcome::Reject { reason } => {
            send_dead_letter(ctx, channel, received, reason, received.attempts).await
        }
    }
}

async fn send_dead_letter(
    ctx: &Context,
    channel: &Channel,
    received: &Received,
    reason: String,
    attempts: u32,
) -> Result<(Confirms, Settled), BusError> {
    let wire = received.copy_to(
        ctx.own_user.as_deref(),
        &ctx.topology.dead_letter_queue,
        &[
            (HEADER_CONSUMER, Value::from(ctx.name)),
            (HEADER_REASON, Value::from(reason.as_str())),
            (HEADER_ATTEMPTS, Value::from(attempts)),
        ],
    );
    let confirms = send_unconfirmed(channel, &[wire], &ctx.metrics).await?;
    Ok((confirms, Settled::DeadLettered { reason, attempts }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        for failures in 0..40 {
            let delay = backoff(failures);
            let full = BACKOFF_FIRST
                .saturating_mul(2u32.saturating_pow(failures.min(16)))
                .min(BACKOFF_CAP);
            assert!(
                delay >= full / 2 && delay <= full,
                "{failures}: {delay:?} vs {full:?}"
            );
        }
        assert!(backoff(30) <= BACKOFF_CAP);
    }

    #[test]
    fn runtime_headers_are_not_the_publishers() {
        let all: BTreeMap<String, Value> = [
            ("x-fortnight-attempts", Value::from(2)),
            ("x-death", Value::Array(vec![])),
            ("fedora_messaging_schema", Value::from("base.message")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let kept = publisher_headers(all);
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            vec!["fedora_messaging_schema"]
        );
    }
}
