//! The releaser: on each two-week tick, releases the newest candidate of the stream that
//! passed every gate, or publishes `fortnight.release.skipped` saying why each candidate is not
//! eligible. Operators steer it with overrides (block, unblock, release, hold, unhold), each
//! kept in the stream's audit log. With `when_nothing_passed = "release-next-pass"`, a skipped
//! period is released as soon as a candidate becomes eligible (on tests passed or karma).
//!
//! Everything that reads and then changes a stream happens under the stream's lock in the
//! store, so replicas and duplicate messages release at most once per period.

pub mod deadlines;
pub mod decision;
pub mod external;
pub mod notes;
pub mod overrides;
pub mod periods;
pub mod release;
pub mod signing;
pub mod version_order;

use std::sync::Arc;

use bus::Outcome;
use chrono::{DateTime, Utc};
use karma_tracker::store_outcome;
use messages::{
    ImageTestsPassed, Incoming, KarmaStatus, KarmaThresholdReached, Message, Outgoing, Override,
    OverrideBlock, OverrideHold, OverrideRelease, OverrideUnblock, OverrideUnhold, Period,
    ReleasePublished, ReleaseSkipped, SignFinished, SignStatus, Stream, TwoweekComplete,
    TwoweekTimerFired, UserName, Version, derived_id,
};
use settings::{BusSettings, Settings, StreamSettings, TwoWeekSettings, WhenNothingPassed};
use store::{FileName, Store, StoreError};

pub use decision::{Decision, HumanGate, StreamView, Verdict, decide};
use overrides::{Action, AuditEntry};
use periods::PeriodState;
use release::{ReleaseError, Request};

pub const NAME: &str = "releaser";

/// The releaser step.
#[derive(Debug, Clone)]
pub struct Releaser {
    settings: Arc<Settings>,
    store: Store,
}

/// How far a release got.
enum Progress {
    /// Released: the announcements.
    Released(Vec<Outgoing>),
    /// Staged, waiting for signatures: the signing request.
    Signing(Vec<Outgoing>),
}

fn release_outcome(error: &ReleaseError) -> Outcome {
    Outcome::failed(error.to_string(), error.is_retryable())
}

/// The stream's settings when it has two-week releases.
pub fn twoweek_stream<'a>(
    settings: &'a Settings,
    stream: &Stream,
) -> Result<(&'a StreamSettings, &'a TwoWeekSettings), String> {
    let s = settings
        .require_stream(stream)
        .map_err(|unknown| unknown.to_string())?;
    let tw = s.twoweek.as_ref().ok_or_else(|| {
        format!("stream {stream} has no two-week releases (no [streams.{stream}.twoweek])")
    })?;
    Ok((s, tw))
}

fn policy_name(policy: WhenNothingPassed) -> &'static str {
    match policy {
        WhenNothingPassed::Skip => "skip",
        WhenNothingPassed::ReleaseNextPass => "release-next-pass",
    }
}

impl Releaser {
    pub fn new(settings: Arc<Settings>) -> Result<Self, StoreError> {
        let store = Store::open(&settings.store.root)?;
        Ok(Self { settings, store })
    }

    fn lock_path(&self, stream: &Stream) -> std::path::PathBuf {
        let name: FileName = NAME
            .parse()
            .unwrap_or_else(|_| unreachable!("a constant valid file name"));
        self.store.lock_path(stream, &name)
    }

    /// Runs `f` under the stream's lock, turning store errors into outcomes.
    fn locked(&self, stream: &Stream, f: impl FnOnce() -> Outcome) -> Outcome {
        match store::lock(&self.lock_path(stream)) {
            Ok(_guard) => f(),
            Err(error) => store_outcome("cannot lock the stream", &error),
        }
    }

    /// The messages announcing a release: `release.published`, and the legacy body when the
    /// stream asks for it. Ids derive from the release, so a replay republishes the same ones.
    fn announce(&self, record: &ReleasePublished, twoweek: &TwoWeekSettings) -> Vec<Outgoing> {
        let period = record
            .period
            .map_or_else(|| "forced".to_owned(), |period| period.to_string());
        let identity = [record.stream.as_str(), record.version.as_str(), &period];
        let mut out = vec![Outgoing::new(
            derived_id(NAME, &[&identity[..], &[ReleasePublished::TOPIC]].concat()),
            record,
        )];
        if twoweek.legacy_messages {
            let legacy = release::legacy_complete(record, &self.settings.site.base_url);
            out.push(Outgoing::new(
                derived_id(NAME, &[&identity[..], &[TwoweekComplete::TOPIC]].concat()),
                &legacy,
            ));
        }
        out
    }

    /// Releases, or for a signed stream stages the release and asks for its signatures.
    /// `forced_by` is the override that forces the release, whose audit log gets the outcome.
    fn release(
        &self,
        request: &Request<'_>,
        now: DateTime<Utc>,
        forced_by: Option<&AuditEntry>,
    ) -> Result<Progress, ReleaseError> {
        if request.settings.signing.is_none() {
            return self.complete(request, now).map(Progress::Released);
        }
        let arches = release::stage(&self.store, request)?;
        let commits = release::release_commits(request, &arches)?;
        let signing_request = signing::request_for(&self.store, request, &arches, &commits)?;
        // Asked again (a replayed tick): the same request, still waiting since the first time.
        let earlier = signing::read(&self.store, request.stream, request.version)?
            .filter(|pending| pending.request.request_id == signing_request.request_id);
        let pending = signing::Pending {
            request: signing_request,
            period: request.period,
            forced: request.forced,
            reason: request.reason.clone(),
            since: earlier.as_ref().map_or(now, |e| e.since),
            resent_at: earlier.as_ref().and_then(|e| e.resent_at),
            forced_by: forced_by.cloned(),
        };
        signing::write(&self.store, &pending)?;
        tracing::info!(stream = %request.stream, version = %request.version, request_id = %pending.request.request_id, since = %pending.since, "release staged; waiting for signatures");
        Ok(Progress::Signing(vec![
            self.sign_request_message(&pending.request, false),
        ]))
    }

    /// Finishes a release: links, refs, release.json, `latest`; returns the announcements.
    fn complete(
        &self,
        request: &Request<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outgoing>, ReleaseError> {
        let record = release::perform(&self.store, request, now, &self.settings.site.base_url)?;
        tracing::info!(stream = %record.stream, version = %record.version, period = ?record.period.map(|p| p.to_string()), forced = record.forced, reason = %record.reason, "released");
        Ok(self.announce(&record, request.twoweek))
    }

    /// Releases `version` for `period`, recording the choice first so that a crash is finished
    /// by a replay.
    fn release_for_period(
        &self,
        stream: &Stream,
        settings: &StreamSettings,
        twoweek: &TwoWeekSettings,
        period: &Period,
        version: &Version,
        reason: String,
    ) -> Outcome {
        let now = Utc::now();
        let releasing = PeriodState::Releasing {
            version: version.clone(),
        };
        if let Err(error) = periods::write(&self.store, stream, period, releasing, now) {
            return store_outcome("cannot record the period's choice", &error);
        }
        let request = Request {
            stream,
            version,
            settings,
            twoweek,
            period: Some(*period),
            forced: false,
            reason,
        };
        match self.release(&request, now, None) {
            Ok(Progress::Signing(out)) => Outcome::Done(out),
            Ok(Progress::Released(out)) => match periods::write(
                &self.store,
                stream,
                period,
                PeriodState::Released {
                    version: version.clone(),
                },
                now,
            ) {
                Ok(()) => Outcome::Done(out),
                Err(error) => store_outcome("cannot record the release of the period", &error),
            },
            Err(error) => {
                tracing::error!(stream = %stream, version = %version, error = %error, "release failed");
                release_outcome(&error)
            }
        }
    }

    fn timer_fired(&self, message: &Incoming) -> Outcome {
        let tick = match message.parse::<TwoweekTimerFired>() {
            Ok(tick) => tick,
            Err(error) => return Outcome::reject(error.to_string()),
        };
        // A tick fired by hand is an operator's act, checked like an override; the timer's
        // own ticks name no operator.
        if let Some(operator) = &tick.operator
            && let Err(reason) = self.check_operator(message, "manual tick", operator)
        {
            return Outcome::reject(reason);
        }
        let (settings, twoweek) = match twoweek_stream(&self.settings, &tick.stream) {
            Ok(found) => found,
            Err(reason) => return Outcome::reject(reason),
        };
        let period = tick.period;
        let stream = &tick.stream;
        let now = Utc::now();
        let refused = release_timer::Schedule::for_stream(stream, twoweek)
            .map_err(|error| error.to_string())
            .and_then(|schedule| {
                match schedule.refuse(period.start(), tick.operator.is_some(), now) {
                    Some(reason) => Err(reason),
                    None => Ok(()),
                }
            });
        if let Err(reason) = refused {
            return Outcome::reject(format!("tick refused: {reason}"));
        }
        self.locked(stream, || {
            let state = match periods::read(&self.store, stream, &period) {
                Ok(state) => state,
                Err(error) => return store_outcome("cannot read the period record", &error),
            };
            match state {
                Some(PeriodState::Released { version }) => {
                    tracing::info!(stream = %stream, period = %period, version = %version, "period already released; announcing again");
                    self.reannounce(stream, &version, twoweek)
                }
                Some(PeriodState::Releasing { version }) => {
                    tracing::warn!(stream = %stream, period = %period, version = %version, "finishing an interrupted release");
                    self.release_for_period(stream, settings, twoweek, &period, &version, format!("two-week release for period {}", period))
                }
                Some(PeriodState::Skipped | PeriodState::Waiting) | None => match periods::latest(&self.store, stream, now + release_timer::CLOCK_SKEW) {
                    // A replayed tick of a past period must not release today's candidate.
                    Ok(Some(latest)) if latest > period => {
                        tracing::warn!(stream = %stream, period = %period, latest = %latest, "tick of a past period ignored");
                        Outcome::Done(Vec::new())
                    }
                    Ok(_) => self.decide_tick(stream, settings, twoweek, &period),
                    Err(error) => store_outcome("cannot list the period records", &error),
                },
            }
        })
    }

    fn reannounce(&self, stream: &Stream, version: &Version, twoweek: &TwoWeekSettings) -> Outcome {
        match store::read_json::<ReleasePublished>(&self.store.release_record_path(stream, version))
        {
            Ok(Some(record)) => Outcome::Done(self.announce(&record, twoweek)),
            Ok(None) => Outcome::reject(format!(
                "{stream} {version} is recorded as released but its release.json is missing; restore it from a backup or the release message"
            )),
            Err(error) => store_outcome("cannot read release.json", &error),
        }
    }

    fn decide_tick(
        &self,
        stream: &Stream,
        settings: &StreamSettings,
        twoweek: &TwoWeekSettings,
        period: &Period,
    ) -> Outcome {
        let now = Utc::now();
        let view = match StreamView::read(&self.store, stream, settings, now) {
            Ok(view) => view,
            Err(error) => return store_outcome("cannot read the stream's candidates", &error),
        };
        let (decision, verdicts) = decide(&view, settings, twoweek.karma_required);
        let mut candidates: Vec<_> = verdicts.iter().map(Verdict::as_message).collect();
        let policy = match decision {
            Decision::Release(version) => {
                let reason = format!(
                    "newest candidate passing every gate at the tick of period {}",
                    period
                );
                return self
                    .release_for_period(stream, settings, twoweek, period, &version, reason);
            }
            Decision::Held(hold) => {
                let held = format!("stream on hold {}", hold.describe());
                for candidate in &mut candidates {
                    candidate.reasons.push(held.clone());
                }
                tracing::info!(stream = %stream, period = %period, hold = %held, "stream on hold; nothing released");
                "hold"
            }
            Decision::Nothing => policy_name(twoweek.when_nothing_passed),
        };
        let state = if twoweek.when_nothing_passed == WhenNothingPassed::ReleaseNextPass {
            PeriodState::Waiting
        } else {
            PeriodState::Skipped
        };
        if let Err(error) = periods::write(&self.store, stream, period, state, now) {
            return store_outcome("cannot record the skipped period", &error);
        }
        let skipped = ReleaseSkipped {
            stream: stream.clone(),
            period: *period,
            candidates,
            current_release: view.current_version().cloned(),
            current_release_age_seconds: view.current_age_seconds(),
            policy: policy.to_owned(),
        };
        tracing::info!(stream = %stream, period = %period, candidates = skipped.candidates.len(), policy = policy, "nothing eligible; release skipped");
        let id = derived_id(
            NAME,
            &[stream.as_str(), &period.to_string(), ReleaseSkipped::TOPIC],
        );
        Outcome::Done(vec![Outgoing::new(id, &skipped)])
    }

    /// With `release-next-pass`, a candidate becoming eligible releases a waiting period.
    fn candidate_changed(&self, stream: &Stream) -> Outcome {
        let settings = match self.settings.require_stream(stream) {
            Ok(settings) => settings,
            Err(unknown) => return Outcome::reject(unknown.to_string()),
        };
        let Some(twoweek) = &settings.twoweek else {
            // A nightly-only stream has nothing to release.
            return Outcome::Done(Vec::new());
        };
        if twoweek.when_nothing_passed != WhenNothingPassed::ReleaseNextPass {
            return Outcome::Done(Vec::new());
        }
        self.locked(stream, || {
            let period = match periods::waiting(&self.store, stream) {
                // A period from the future (written before ticks were checked) waits for nothing.
                Ok(Some(period)) if period.start() <= Utc::now() + release_timer::CLOCK_SKEW => {
                    period
                }
                Ok(_) => return Outcome::Done(Vec::new()),
                Err(error) => return store_outcome("cannot read the waiting period", &error),
            };
            match periods::read(&self.store, stream, &period) {
                Ok(Some(PeriodState::Waiting)) => {}
                Ok(_) => return Outcome::Done(Vec::new()),
                Err(error) => return store_outcome("cannot read the period record", &error),
            }
            let view = match StreamView::read(&self.store, stream, settings, Utc::now()) {
                Ok(view) => view,
                Err(error) => return store_outcome("cannot read the stream's candidates", &error),
            };
            match decide(&view, settings, twoweek.karma_required).0 {
                Decision::Release(version) => {
                    let reason = format!(
                        "first candidate to pass every gate after the skipped tick of period {}",
                        period
                    );
                    self.release_for_period(stream, settings, twoweek, &period, &version, reason)
                }
                Decision::Held(_) | Decision::Nothing => Outcome::Done(Vec::new()),
            }
        })
    }

    fn tests_passed(&self, message: &Incoming) -> Outcome {
        match message.parse::<ImageTestsPassed>() {
            Ok(ImageTestsPassed(report)) => self.candidate_changed(&report.stream),
            Err(error) => Outcome::reject(error.to_string()),
        }
    }

    fn threshold_reached(&self, message: &Incoming) -> Outcome {
        match message.parse::<KarmaThresholdReached>() {
            Ok(reached) if reached.status == KarmaStatus::Stable => {
                self.candidate_changed(&reached.stream)
            }
            Ok(_) => Outcome::Done(Vec::new()),
            Err(error) => Outcome::reject(error.to_string()),
        }
    }

    fn parse_override(message: &Incoming, action: Action) -> Result<Override, String> {
        let parsed = match action {
            Action::Block => message.parse::<OverrideBlock>().map(|o| o.0),
            Action::Unblock => message.parse::<OverrideUnblock>().map(|o| o.0),
            Action::Release => message.parse::<OverrideRelease>().map(|o| o.0),
            Action::Hold => message.parse::<OverrideHold>().map(|o| o.0),
            Action::Unhold => message.parse::<OverrideUnhold>().map(|o| o.0),
        };
        parsed.map_err(|e| e.to_string())
    }

    /// An operator's message must be published by that operator's own broker account, and the
    /// account must be listed in `operators`.
    fn check_operator(
        &self,
        message: &Incoming,
        what: &str,
        operator: &UserName,
    ) -> Result<(), String> {
        message.check_publisher(&format!("{what} claims operator"), operator)?;
        if !self.settings.operators.contains(operator) {
            return Err(format!(
                "{operator} is not an operator (see `operators` in the configuration)"
            ));
        }
        Ok(())
    }

    fn override_received(&self, message: &Incoming, action: Action) -> Outcome {
        let body = match Self::parse_override(message, action) {
            Ok(body) => body,
            Err(reason) => return Outcome::reject(reason),
        };
        if let Err(reason) = self.check_operator(message, "override", &body.operator) {
            return Outcome::reject(reason);
        }
        let (settings, twoweek) = match twoweek_stream(&self.settings, &body.stream) {
            Ok(found) => found,
            Err(reason) => return Outcome::reject(reason),
        };
        if body.reason.trim().is_empty() {
            return Outcome::reject("an override needs a reason");
        }
        let version = match (&body.version, action.needs_version()) {
            (Some(version), true) => Some(version.clone()),
            (None, true) => {
                return Outcome::reject(format!(
                    "override {action:?} needs the candidate's version"
                ));
            }
            (_, false) => None,
        };
        let now = Utc::now();
        // The id makes a redelivered override a no-op in the log; without one, the body is
        // the identity.
        let id = message.id.clone().unwrap_or_else(|| {
            let body_text = serde_json::to_string(&body).unwrap_or_default();
            derived_id(NAME, &[&body_text]).to_string()
        });
        let entry = AuditEntry::new(id, action, &body, now);
        let stream = &body.stream;
        self.locked(stream, || {
            match overrides::append(&self.store, &entry) {
                Ok(true) => tracing::info!(stream = %stream, action = ?action, operator = %entry.operator, version = ?entry.version, reason = %entry.reason, "override recorded"),
                Ok(false) => tracing::info!(stream = %stream, id = %entry.id, "override already recorded"),
                Err(error) => return store_outcome("cannot append to the override audit log", &error),
            }
            let Some(version) = version.filter(|_| action == Action::Release) else {
                return Outcome::Done(Vec::new());
            };
            let request = Request {
                stream,
                version: &version,
                settings,
                twoweek,
                period: None,
                forced: true,
                reason: format!("forced {}", entry.describe()),
            };
            match self.release(&request, now, Some(&entry)) {
                Ok(Progress::Released(out) | Progress::Signing(out)) => Outcome::Done(out),
                Err(error) => {
                    tracing::error!(stream = %stream, version = %version, error = %error, "forced release failed");
                    release_outcome(&error)
                }
            }
        })
    }

    /// The signer's answer: a `SUCCESS` finishes the staged release it names, a `FAILURE`
    /// skips it (nothing was promoted). A reply to no request waiting here is stale: logged
    /// and acked.
    fn sign_finished(&self, message: &Incoming) -> Outcome {
        let finished = match message.parse::<SignFinished>() {
            Ok(finished) => finished,
            Err(error) => return Outcome::reject(error.to_string()),
        };
        let (stream, version) = (&finished.request.stream, &finished.request.version);
        let (settings, twoweek) = match twoweek_stream(&self.settings, stream) {
            Ok(found) => found,
            Err(reason) => return Outcome::reject(reason),
        };
        self.locked(stream, || {
            let pending = match signing::read(&self.store, stream, version) {
                Ok(Some(pending)) if pending.request.request_id == finished.request.request_id => {
                    pending
                }
                Ok(_) => {
                    tracing::info!(stream = %stream, version = %version, request_id = %finished.request.request_id, id = ?message.id, "signing reply for an unknown or stale request; ignored");
                    return Outcome::Done(Vec::new());
                }
                Err(error) => return store_outcome("cannot read the signing request", &error),
            };
            let now = Utc::now();
            let out = match finished.status {
                SignStatus::Success => {
                    let request = Request {
                        stream,
                        version,
                        settings,
                        twoweek,
                        period: pending.period,
                        forced: pending.forced,
                        reason: pending.reason.clone(),
                    };
                    let out = match self.complete(&request, now) {
                        Ok(out) => out,
                        Err(error) => {
                            tracing::error!(stream = %stream, version = %version, error = %error, "signed release failed");
                            return release_outcome(&error);
                        }
                    };
                    if let Some(period) = &pending.period {
                        let released = PeriodState::Released {
                            version: version.clone(),
                        };
                        if let Err(error) = periods::write(&self.store, stream, period, released, now) {
                            return store_outcome("cannot record the release of the period", &error);
                        }
                    }
                    let outcome = format!("released {version}, signed");
                    if let Err(error) = self.record_forced_outcome(pending.forced_by.as_ref(), outcome, now) {
                        return store_outcome("cannot append to the override audit log", &error);
                    }
                    out
                }
                SignStatus::Failure => {
                    let reason = format!(
                        "signing failed ({} {}): {}",
                        message.topic,
                        message.id.as_deref().unwrap_or("without id"),
                        finished
                            .failure_message
                            .as_deref()
                            .unwrap_or("the signer gave no reason")
                    );
                    match self.skip_unsigned(&pending, twoweek, reason, now) {
                        Ok(out) => out,
                        Err(error) => return store_outcome("cannot record the skipped release", &error),
                    }
                }
            };
            match signing::remove(&self.store, stream, version) {
                Ok(()) => Outcome::Done(out),
                Err(error) => store_outcome("cannot remove the answered signing request", &error),
            }
        })
    }

    fn handle_blocking(&self, message: &Incoming) -> Outcome {
        let topic = message.topic.as_str();
        if let Some(action) = Action::from_topic(topic) {
            return self.override_received(message, action);
        }
        match topic {
            TwoweekTimerFired::TOPIC => self.timer_fired(message),
            ImageTestsPassed::TOPIC => self.tests_passed(message),
            KarmaThresholdReached::TOPIC => self.threshold_reached(message),
            finished if finished == self.settings.signing_topics.finished => {
                self.sign_finished(message)
            }
            other => Outcome::reject(format!("the releaser does not handle topic {other}")),
        }
    }
}

/// The topics the releaser consumes (the configured prefix is added when binding): ticks,
/// the two gates, every override, and the signer's replies (`signing_topics.finished`).
pub fn topics(settings: &BusSettings) -> Vec<String> {
    let mut topics = vec![
        TwoweekTimerFired::TOPIC.to_owned(),
        ImageTestsPassed::TOPIC.to_owned(),
        KarmaThresholdReached::TOPIC.to_owned(),
        settings.signing_topics.finished.clone(),
    ];
    topics.extend(Action::TOPICS.iter().map(|(topic, _)| (*topic).to_owned()));
    topics
}

impl bus::Step for Releaser {
    const NAME: &'static str = NAME;

    fn topics(&self) -> Vec<String> {
        topics(&self.settings)
    }

    async fn handle(&self, message: &Incoming) -> Outcome {
        // Locks, hard links and ostree are blocking calls; keep them off the async workers.
        let this = self.clone();
        let message = message.clone();
        tokio::task::spawn_blocking(move || this.handle_blocking(&message))
            .await
            .unwrap_or_else(|error| Outcome::retry(format!("the release task panicked: {error}")))
    }
}
