//! The two-week timer: for every stream with `[twoweek]` settings, publishes
//! `fortnight.twoweek.timer.fired` once per release period, with an id derived from the stream
//! and the period so that two timer replicas, or a restart, publish the same message and the
//! releaser deduplicates it.
//!
//! Unlike the other consumers this is a clock, not a queue consumer. What it last fired is kept
//! per stream in the store (`<root>/<stream>/timer.json`): after downtime the current period's
//! tick fires once at start, however many periods were missed, because only the newest
//! candidate matters to a release.
//!
//! A stream whose two-week releases moved to its successor (`gate::succession`) gets no more
//! ticks.
//!
//! Each round also looks for streams that stopped moving and announces each stale spell once
//! ([`stale`]), and sets the per-stream gauges on `/metrics`.

mod schedule;
pub mod stale;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gate::succession::{Role, two_week_role};
use messages::{Message, Outgoing, Period, Stream, TwoweekTimerFired, UserName, derived_id};
use serde::{Deserialize, Serialize};
use settings::Settings;
use store::Store;

pub use schedule::{CLOCK_SKEW, Schedule};

/// The consumer name: connection name, id namespace and log target.
pub const NAME: &str = settings::RELEASE_TIMER;

/// How long the loop sleeps at most before looking at the clock again, so that a clock that
/// jumps (suspend, NTP step) delays a tick by no more than this.
const MAX_SLEEP: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error(
        "stream {stream}: invalid cron expression {expression:?}: {reason}; fix `streams.{stream}.twoweek.cron`"
    )]
    Cron {
        stream: Stream,
        expression: String,
        reason: String,
    },
    #[error("stream {stream}: no schedule; set `streams.{stream}.twoweek.anchor` or `cron`")]
    NoSchedule { stream: Stream },
    #[error("stream {stream} has no `[streams.{stream}.twoweek]` settings, so it has no timer")]
    NotTwoweek { stream: Stream },
    #[error("cannot read or write the timer state {path}: {source}")]
    State {
        path: PathBuf,
        source: store::StoreError,
    },
    #[error(
        "the broker account the timer publishes as is unknown, so the releaser would trust none of its ticks; with [tls] set tls.user to the user the client certificate logs in as, otherwise name the user in amqp_url"
    )]
    UnknownAccount,
    #[error("the timer cannot run: {0}")]
    Run(Box<bus::BusError>),
    #[error("cannot publish the tick of stream {stream}: {source}")]
    Publish {
        stream: Stream,
        source: Box<bus::BusError>,
    },
    #[error("cannot announce that stream {stream} is stale: {source}")]
    Announce {
        stream: Stream,
        source: Box<bus::BusError>,
    },
    #[error("cannot read stream {stream} from the store: {source}")]
    Read {
        stream: Stream,
        source: store::StoreError,
    },
}

/// What the timer last fired for a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerState {
    pub period: Period,
    pub scheduled_for: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
}

/// The last tick fired for `stream`, if any.
pub fn load_state(store: &Store, stream: &Stream) -> Result<Option<TimerState>, TimerError> {
    let path = store.timer_path(stream);
    store::read_json(&path).map_err(|source| TimerError::State { path, source })
}

fn save_state(store: &Store, stream: &Stream, state: &TimerState) -> Result<(), TimerError> {
    let path = store.timer_path(stream);
    store::write_json(&path, state).map_err(|source| TimerError::State { path, source })
}

/// The body of one tick.
fn tick_body(
    stream: &Stream,
    scheduled_for: DateTime<Utc>,
    fired_at: DateTime<Utc>,
    operator: Option<UserName>,
) -> TwoweekTimerFired {
    TwoweekTimerFired {
        stream: stream.clone(),
        period: Period::starting_at(scheduled_for),
        scheduled_for,
        fired_at,
        operator,
    }
}

/// The message carrying a tick. Scheduled ticks get an id derived from (stream, period) so
/// that every publication of the same tick is one message downstream; an operator's tick gets
/// its own id, because firing by hand is a deliberate retry of the period.
fn message_for(tick: &TwoweekTimerFired) -> Outgoing {
    let id = match &tick.operator {
        None => derived_id(NAME, &[tick.stream.as_str(), &tick.period.to_string()]),
        Some(_) => uuid::Uuid::new_v4(),
    };
    Outgoing::new(id, tick)
}

/// The message for one tick: a scheduled tick's id is derived from (stream, period), so every
/// publication of it is one message downstream; an operator's tick gets a fresh id.
pub fn tick_message(
    stream: &Stream,
    scheduled_for: DateTime<Utc>,
    fired_at: DateTime<Utc>,
    operator: Option<UserName>,
) -> Outgoing {
    message_for(&tick_body(stream, scheduled_for, fired_at, operator))
}

/// Publishes a tick; an operator's carries their broker-checked `user_id`. Returns the
/// message sent.
async fn publish(
    publisher: &bus::Publisher,
    tick: &TwoweekTimerFired,
) -> Result<Outgoing, TimerError> {
    let message = message_for(tick);
    let sent = match &tick.operator {
        Some(user) => publisher.publish_as(&message, user.as_str()).await,
        None => publisher.publish(&message).await,
    };
    sent.map_err(|source| TimerError::Publish {
        stream: tick.stream.clone(),
        source: Box::new(source),
    })?;
    Ok(message)
}

/// The schedule of every stream that has two-week releases.
pub fn schedules(settings: &Settings) -> Result<Vec<(Stream, Schedule)>, TimerError> {
    settings
        .streams
        .iter()
        .filter_map(|(stream, s)| s.twoweek.as_ref().map(|tw| (stream, tw)))
        .map(|(stream, tw)| Ok((stream.clone(), Schedule::for_stream(stream, tw)?)))
        .collect()
}

/// Publishes the current period's tick of every stream that has not had it yet, then records
/// it. The state is written only after the broker confirmed the message: a crash in between
/// publishes the same (deterministic) message again, never loses it.
pub async fn fire_due(
    store: &Store,
    settings: &Settings,
    schedules: &[(Stream, Schedule)],
    publisher: &bus::Publisher,
    now: DateTime<Utc>,
) -> Result<Vec<TwoweekTimerFired>, TimerError> {
    let mut fired = Vec::new();
    for (stream, schedule) in schedules {
        let Some(scheduled_for) = schedule.current(now) else {
            continue;
        };
        let role =
            two_week_role(settings, store, stream, now).map_err(|source| TimerError::Read {
                stream: stream.clone(),
                source,
            })?;
        if let Role::Retired { .. } = role {
            // Its successor has the two-week releases; a tick would only be ignored.
            tracing::debug!(stream = %stream, role = %role, "no tick for a retired stream");
            continue;
        }
        let last = load_state(store, stream)?;
        if last
            .as_ref()
            .is_some_and(|last| last.scheduled_for >= scheduled_for)
        {
            continue;
        }
        let tick = tick_body(stream, scheduled_for, now, None);
        let message = publish(publisher, &tick).await?;
        let missed = last.map(|l| l.period);
        tracing::info!(stream = %stream, period = %tick.period, id = %message.id, previous = ?missed, "tick fired");
        save_state(
            store,
            stream,
            &TimerState {
                period: tick.period,
                scheduled_for,
                fired_at: now,
            },
        )?;
        fired.push(tick);
    }
    Ok(fired)
}

/// Publishes an operator's tick for the stream's current period (or now, before the schedule
/// starts), signed with `operator`, who must be the publisher's broker user. The releaser
/// still releases at most once per period.
pub async fn fire_now(
    settings: &Settings,
    stream: &Stream,
    operator: UserName,
    publisher: &bus::Publisher,
) -> Result<TwoweekTimerFired, TimerError> {
    let twoweek = settings
        .stream(stream)
        .and_then(|s| s.twoweek.as_ref())
        .ok_or_else(|| TimerError::NotTwoweek {
            stream: stream.clone(),
        })?;
    let now = Utc::now();
    let scheduled_for = Schedule::for_stream(stream, twoweek)?
        .current(now)
        .unwrap_or(now);
    let tick = tick_body(stream, scheduled_for, now, Some(operator.clone()));
    publish(publisher, &tick).await?;
    tracing::info!(stream = %stream, period = %tick.period, operator = %operator, "tick fired by hand");
    Ok(tick)
}

/// The timer as a [`bus::Clock`]: every round fires what is due and announces stale
/// streams, then sleeps until the next tick of any stream or the next look at staleness.
#[derive(Debug)]
pub struct Ticks {
    settings: Arc<Settings>,
    store: Store,
    schedules: Vec<(Stream, Schedule)>,
}

impl Ticks {
    /// The schedules of the configured streams and the store their state lives in.
    pub fn new(settings: Arc<Settings>) -> Result<Self, TimerError> {
        let schedules = schedules(&settings)?;
        let store = Store::open(&settings.store.root).map_err(|source| TimerError::State {
            path: settings.store.root.clone(),
            source,
        })?;
        Ok(Self {
            settings,
            store,
            schedules,
        })
    }
}

impl bus::Clock for Ticks {
    const NAME: &'static str = NAME;

    async fn round(&mut self, publisher: &bus::Publisher, metrics: &bus::Metrics) -> bus::Next {
        let now = Utc::now();
        match fire_due(&self.store, &self.settings, &self.schedules, publisher, now).await {
            Ok(_) => {}
            // Typical of a fresh broker, where the releaser has not bound its queue yet.
            Err(TimerError::Publish { stream, source })
                if matches!(*source, bus::BusError::Unroutable { .. }) =>
            {
                tracing::warn!(stream = %stream, topic = TwoweekTimerFired::TOPIC, error = %source, "no queue is bound for the tick topic; the tick is not recorded as fired and is published again shortly");
                return bus::Next::Retry;
            }
            // A broker or disk hiccup must not stop the clock; the tick is retried.
            Err(error) => {
                tracing::error!(error = %error, "cannot fire due ticks; retrying");
                return bus::Next::Retry;
            }
        }
        let look_again = stale::watch(&self.store, &self.settings, publisher, metrics, now).await;
        let next = self.schedules.iter().filter_map(|(_, s)| s.next(now)).min();
        let until_tick = next.and_then(|next| (next - Utc::now()).to_std().ok());
        bus::Next::After(
            [until_tick, look_again]
                .into_iter()
                .flatten()
                .fold(MAX_SLEEP, Duration::min),
        )
    }
}

/// Runs the timer until `shutdown` resolves: fires what is due at start (missed ticks once),
/// then whenever a stream's next tick is due, on the bus runtime's [`bus::run_clock`].
pub async fn run(
    settings: Arc<Settings>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), TimerError> {
    if settings.broker_user().is_none() {
        return Err(TimerError::UnknownAccount);
    }
    let ticks = Ticks::new(settings.clone())?;
    bus::run_clock(&settings, ticks, shutdown)
        .await
        .map_err(|error| TimerError::Run(Box::new(error)))
}
