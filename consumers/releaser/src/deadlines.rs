//! Signing deadlines: a request nobody answers is sent once more after the stream's
//! `signing.deadline`, and after another deadline the release is skipped. The same clock
//! switches the two-week releases to a successor whose `switch_at` came ([`crate::switch`]):
//! it announces the switch first and records it after, with a body and id derived from the
//! configuration, so a round cut short is finished by the next with the same message. And it
//! ends a stream's life when its `end_of_life` date comes ([`crate::endoflife`]).
//!
//! The releaser's queue only wakes it when a message comes, and a signer that is down sends
//! none, so the deadlines are watched by a [`bus::Clock`] that runs beside the releaser's
//! consumer (in its binary and in `fortnight up`). The clock holds no state of its own: each
//! round it reads the requests waiting in `<stream>/.signing/` (what the releaser recorded
//! when it asked), so a restart, or a replica that takes over, carries on where the last one
//! stopped. Each due request is handled under the stream's lock, the lock the releaser's
//! steps take, so a reply arriving at the deadline either finishes the release or finds the
//! request gone, never both. Messages go out before the request's record changes, with ids
//! derived from the request, so a round cut short is finished by the next with the same
//! messages.

use std::time::Duration;

use chrono::{DateTime, Utc};
use messages::{EndOfLifeCause, Stream};
use settings::{Deadline, Settings};

use crate::endoflife;
use crate::signing::{self, Due, Pending};
use crate::{NAME, Releaser};

/// How long a round sleeps at most: a clock that jumped is noticed within this. A request
/// recorded after a round is noticed within this or its stream's deadline, whichever is
/// shorter, so it is sent again at most that late.
const MAX_SLEEP: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DeadlineError {
    #[error("stream {stream}: {source}")]
    Store {
        stream: Stream,
        source: store::StoreError,
    },
    #[error("stream {stream}: cannot announce its switch: {source}")]
    Switch {
        stream: Stream,
        source: Box<bus::BusError>,
    },
    #[error("stream {stream}: {source}")]
    EndOfLife {
        stream: Stream,
        source: endoflife::EndOfLifeError,
    },
    #[error("stream {stream}: cannot publish its end of life or its signing request: {source}")]
    PublishEndOfLife {
        stream: Stream,
        source: Box<bus::BusError>,
    },
    #[error("stream {stream}: cannot publish for signing request {request_id}: {source}")]
    Publish {
        stream: Stream,
        request_id: String,
        source: Box<bus::BusError>,
    },
}

/// The releaser's deadline clock.
#[derive(Debug, Clone)]
pub struct Deadlines {
    releaser: Releaser,
}

impl Deadlines {
    /// The clock's name: its connection and its `[consumers.releaser-deadlines]` section,
    /// whose `health_addr` it serves (the releaser's own port is the consumer's).
    pub const NAME: &'static str = "releaser-deadlines";

    pub fn new(releaser: Releaser) -> Self {
        Self { releaser }
    }

    /// The signed two-week streams and their deadlines.
    fn streams(settings: &Settings) -> impl Iterator<Item = (&Stream, Deadline)> {
        settings
            .streams
            .iter()
            .filter(|(_, s)| s.twoweek.is_some())
            .filter_map(|(stream, s)| s.signing.as_ref().map(|g| (stream, g.deadline)))
    }

    /// Acts on every request of `stream` that is due at `now`; returns when the next one is.
    pub async fn check_stream(
        &self,
        stream: &Stream,
        deadline: Deadline,
        publisher: &bus::Publisher,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, DeadlineError> {
        let store_error = |source| DeadlineError::Store {
            stream: stream.clone(),
            source,
        };
        let releaser = &self.releaser;
        let mut next = None::<DateTime<Utc>>;
        for waiting in signing::waiting(&releaser.store, stream).map_err(store_error)? {
            if waiting.due(deadline.0, now).is_none() {
                let at = waiting.next_deadline(deadline.0);
                next = Some(next.map_or(at, |n| n.min(at)));
                continue;
            }
            let _guard = store::lock(&releaser.lock_path(stream)).map_err(store_error)?;
            // Read again under the lock: a reply may have finished it meanwhile.
            let Some(pending) = signing::read(&releaser.store, stream, &waiting.request.version)
                .map_err(store_error)?
                .filter(|p| p.request.request_id == waiting.request.request_id)
            else {
                continue;
            };
            match pending.due(deadline.0, now) {
                None => {}
                Some(Due::Resend) => {
                    self.resend(pending, publisher, now).await?;
                    let at = signing::after(now, deadline.0);
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
                Some(Due::GiveUp { resent_at }) => {
                    self.give_up(&pending, deadline, resent_at, publisher, now)
                        .await?;
                }
            }
        }
        Ok(next)
    }

    /// Switches, at their date, the streams whose `switch_at` came without a switch recorded;
    /// returns when the next date is.
    pub async fn switch_due(
        &self,
        publisher: &bus::Publisher,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, DeadlineError> {
        let releaser = &self.releaser;
        let switches = releaser
            .due_switches(now)
            .map_err(|(stream, source)| DeadlineError::Store { stream, source })?;
        for to in switches.due {
            let store_error = |source| DeadlineError::Store {
                stream: to.clone(),
                source,
            };
            let Some(from) = releaser
                .settings
                .stream(&to)
                .and_then(|s| s.succeeds.as_ref())
            else {
                continue;
            };
            let _locks = releaser.switch_locks(from, &to).map_err(store_error)?;
            // Read again under the locks: an operator may have switched it meanwhile.
            let Some(record) = releaser.switch_by_date(&to).map_err(store_error)? else {
                continue;
            };
            publisher
                .publish(&crate::switch::announcement(&record))
                .await
                .map_err(|source| DeadlineError::Switch {
                    stream: to.clone(),
                    source: Box::new(source),
                })?;
            releaser.record_switch(&record).map_err(store_error)?;
        }
        Ok(switches.next)
    }

    /// Ends `stream`'s life by date unless it already ended: moves its release refs,
    /// publishes the announcement, then records it, so a round cut short is finished by the
    /// next with the same commits and the same message. A signed stream's end of life is
    /// recorded as waiting for signatures and the request published instead. A stream that cannot end yet (its
    /// successor has not released) is logged and tried again next round.
    pub async fn end_by_date(
        &self,
        stream: &Stream,
        publisher: &bus::Publisher,
        now: DateTime<Utc>,
    ) -> Result<(), DeadlineError> {
        let releaser = &self.releaser;
        let store_error = |source| DeadlineError::Store {
            stream: stream.clone(),
            source,
        };
        if endoflife::read(&releaser.store, stream)
            .map_err(store_error)?
            .is_some()
        {
            return Ok(());
        }
        let _guard = store::lock(&releaser.lock_path(stream)).map_err(store_error)?;
        // Read again under the lock: an operator may have ended it meanwhile.
        if endoflife::read(&releaser.store, stream)
            .map_err(store_error)?
            .is_some()
        {
            return Ok(());
        }
        // A signed end of life already asked for: the deadlines above take care of it.
        let waiting = signing::waiting(&releaser.store, stream).map_err(store_error)?;
        if waiting.iter().any(|p| p.end_of_life.is_some()) {
            return Ok(());
        }
        let prepared = endoflife::prepare(&releaser.settings, stream, EndOfLifeCause::Date, now)
            .and_then(|ended| {
                if endoflife::needs_signatures(&releaser.settings, &ended) {
                    return releaser
                        .ask_end_of_life_signatures(ended, now, None)
                        .map(|request| (request, None));
                }
                endoflife::promote(&releaser.settings, &ended)?;
                Ok((endoflife::announcement(&ended), Some(ended)))
            });
        let (message, in_place) = match prepared {
            Ok(prepared) => prepared,
            Err(error) if error.is_refusal() => {
                tracing::warn!(stream = %stream, error = %error, "end-of-life date passed, but the stream cannot end yet");
                return Ok(());
            }
            Err(source) => {
                return Err(DeadlineError::EndOfLife {
                    stream: stream.clone(),
                    source,
                });
            }
        };
        publisher
            .publish(&message)
            .await
            .map_err(|source| DeadlineError::PublishEndOfLife {
                stream: stream.clone(),
                source: Box::new(source),
            })?;
        match in_place {
            Some(ended) => endoflife::write(&releaser.store, &ended).map_err(store_error),
            None => Ok(()),
        }
    }

    async fn publish(
        &self,
        pending: &Pending,
        message: &messages::Outgoing,
        publisher: &bus::Publisher,
    ) -> Result<(), DeadlineError> {
        publisher
            .publish(message)
            .await
            .map_err(|source| DeadlineError::Publish {
                stream: pending.request.stream.clone(),
                request_id: pending.request.request_id.to_string(),
                source: Box::new(source),
            })
    }

    /// Sends the request once more, then records when.
    async fn resend(
        &self,
        mut pending: Pending,
        publisher: &bus::Publisher,
        now: DateTime<Utc>,
    ) -> Result<(), DeadlineError> {
        let message = self.releaser.sign_request_message(&pending.request, true);
        self.publish(&pending, &message, publisher).await?;
        pending.resent_at = Some(now);
        signing::write(&self.releaser.store, &pending).map_err(|source| DeadlineError::Store {
            stream: pending.request.stream.clone(),
            source,
        })?;
        tracing::warn!(stream = %pending.request.stream, version = %pending.request.version, request_id = %pending.request.request_id, since = %pending.since, "no signature within the deadline; request sent again");
        Ok(())
    }

    /// Skips the release, sends `release.skipped`, then forgets the request.
    async fn give_up(
        &self,
        pending: &Pending,
        deadline: Deadline,
        resent_at: DateTime<Utc>,
        publisher: &bus::Publisher,
        now: DateTime<Utc>,
    ) -> Result<(), DeadlineError> {
        let releaser = &self.releaser;
        let stream = &pending.request.stream;
        let store_error = |source| DeadlineError::Store {
            stream: stream.clone(),
            source,
        };
        let Some(twoweek) = releaser
            .settings
            .stream(stream)
            .and_then(|s| s.twoweek.as_ref())
        else {
            return Ok(());
        };
        let reason = format!(
            "no signature from {} within {deadline}, re-sent at {}",
            releaser.settings.signing_topics.requested,
            resent_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        if pending.end_of_life.is_some() {
            tracing::error!(stream = %stream, request_id = %pending.request.request_id, reason = %reason, "end-of-life commits not signed; nothing moved");
            releaser
                .record_forced_outcome(
                    pending.forced_by.as_ref(),
                    format!("not ended: {reason}"),
                    now,
                )
                .map_err(store_error)?;
            return signing::remove(&releaser.store, stream, &pending.request.version)
                .map_err(store_error);
        }
        let skipped = releaser
            .skip_unsigned(pending, twoweek, reason, now)
            .map_err(store_error)?;
        for message in &skipped {
            self.publish(pending, message, publisher).await?;
        }
        signing::remove(&releaser.store, stream, &pending.request.version).map_err(store_error)
    }
}

impl bus::Clock for Deadlines {
    const NAME: &'static str = Deadlines::NAME;

    async fn round(&mut self, publisher: &bus::Publisher, _metrics: &bus::Metrics) -> bus::Next {
        let now = Utc::now();
        let settings = self.releaser.settings.clone();
        let mut next = Self::streams(&settings)
            .map(|(_, deadline)| signing::after(now, deadline.0))
            .chain(endoflife::next(&settings, now))
            .min();
        // A switch that cannot be announced does not hold up the signing deadlines, nor
        // the reverse: each is tried, and the round is retried if either failed.
        let mut failed = false;
        match self.switch_due(publisher, now).await {
            Ok(Some(at)) => next = Some(next.map_or(at, |n| n.min(at))),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(consumer = NAME, error = %error, "cannot switch a stream at its date; retrying");
                failed = true;
            }
        }
        for stream in endoflife::due(&settings, now) {
            if let Err(error) = self.end_by_date(stream, publisher, now).await {
                tracing::error!(consumer = NAME, error = %error, "cannot end a stream's life; retrying");
                return bus::Next::Retry;
            }
        }
        for (stream, deadline) in Self::streams(&settings) {
            match self.check_stream(stream, deadline, publisher, now).await {
                Ok(Some(at)) => next = Some(next.map_or(at, |n| n.min(at))),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(consumer = NAME, error = %error, "cannot act on a signing deadline; retrying");
                    return bus::Next::Retry;
                }
            }
        }
        if failed {
            return bus::Next::Retry;
        }
        bus::Next::After(
            next.and_then(|at| (at - Utc::now()).to_std().ok())
                .map_or(MAX_SLEEP, |wait| wait.min(MAX_SLEEP)),
        )
    }
}

/// Runs the deadline clock of `releaser` until `shutdown`.
pub async fn run(
    releaser: Releaser,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), bus::BusError> {
    let settings = releaser.settings.clone();
    bus::run_clock(&settings, Deadlines::new(releaser), shutdown).await
}
