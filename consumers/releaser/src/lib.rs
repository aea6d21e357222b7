//! The releaser: on each two-week tick, releases the newest candidate of the stream that
//! passed every gate, or publishes `fortnight.release.skipped` saying why each candidate is not
//! eligible. Operators steer it with overrides (block, unblock, release, hold, unhold,
//! switch), each kept in the stream's audit log. It alone moves the two-week releases from a
//! stream to its successor ([`switch`]) and ignores the ticks of a stream that moved them.
//! With `when_nothing_passed = "release-next-pass"`, a skipped period is released as soon as
//! a candidate becomes eligible (on tests passed or karma).
//!
//! Everything that reads and then changes a stream happens under the stream's lock in the
//! store, so replicas and duplicate messages release at most once per period.

pub mod deadlines;
pub mod decision;
pub mod endoflife;
pub mod external;
pub mod notes;
pub mod overrides;
pub mod periods;
pub mod release;
pub mod signing;
#[cfg(test)]
mod step_tests;
pub mod switch;

use std::sync::Arc;

use bus::{BlockingStep, Outputs, StepError};
use chrono::{DateTime, Utc};
use messages::{
    EndOfLifeCause, ImageTestsPassed, Incoming, KarmaStatus, KarmaThresholdReached, Message,
    Outgoing, Override, OverrideBlock, OverrideEndOfLife, OverrideHold, OverrideRelease,
    OverrideSwitch, OverrideUnblock, OverrideUnhold, Period, ReleasePublished, ReleaseSkipped,
    SignFinished, SignStatus, Stream, StreamEndOfLife, TwoweekComplete, TwoweekTimerFired,
    UserName, Version, derived_id,
};
use settings::{Settings, StreamSettings, TwoWeekSettings, WhenNothingPassed};
use store::{FileName, Store, StoreError};

pub use decision::{Decision, HumanGate, StreamView, Verdict, decide};
use endoflife::EndOfLifeError;
use gate::succession::{self, Role};
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

bus::input! {
    /// What the releaser reads: ticks, the two gates, the signer's replies and every override.
    pub enum ReleaserInput {
        Tick(TwoweekTimerFired),
        TestsPassed(ImageTestsPassed),
        Threshold(KarmaThresholdReached),
        Signed(SignFinished),
        Block(OverrideBlock),
        Unblock(OverrideUnblock),
        Release(OverrideRelease),
        Hold(OverrideHold),
        Unhold(OverrideUnhold),
        Switch(OverrideSwitch),
        EndOfLife(OverrideEndOfLife),
    }
}

/// Why a stream has no two-week releases.
#[derive(Debug, thiserror::Error)]
pub enum NoTwoweek {
    #[error(transparent)]
    Unknown(#[from] settings::UnknownStream),
    #[error("stream {0} has no two-week releases (no [streams.{0}.twoweek])")]
    NotConfigured(Stream),
}

/// A message about a stream without two-week releases is refused: no retry adds them.
impl From<NoTwoweek> for StepError {
    fn from(error: NoTwoweek) -> Self {
        StepError::permanent(error.to_string())
    }
}

/// The stream's settings when it has two-week releases.
pub fn twoweek_stream<'a>(
    settings: &'a Settings,
    stream: &Stream,
) -> Result<(&'a StreamSettings, &'a TwoWeekSettings), NoTwoweek> {
    let s = settings.require_stream(stream)?;
    let tw = s
        .twoweek
        .as_ref()
        .ok_or_else(|| NoTwoweek::NotConfigured(stream.clone()))?;
    Ok((s, tw))
}

/// A store error, with what the releaser was doing.
fn store_error(doing: &str) -> impl FnOnce(StoreError) -> StepError {
    move |error| StepError::from(error).context(doing)
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

    /// Runs `f` under the stream's lock.
    fn locked(
        &self,
        stream: &Stream,
        f: impl FnOnce() -> Result<Outputs, StepError>,
    ) -> Result<Outputs, StepError> {
        let _guard =
            store::lock(&self.lock_path(stream)).map_err(store_error("cannot lock the stream"))?;
        f()
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
            answered_by: None,
            end_of_life: None,
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
        let label = succession::two_week_role(&self.settings, &self.store, request.stream, now)?
            .label()
            .cloned();
        let record = release::perform(
            &self.store,
            request,
            label,
            now,
            &self.settings.site.base_url,
        )?;
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
    ) -> Result<Outputs, StepError> {
        let now = Utc::now();
        let releasing = PeriodState::Releasing {
            version: version.clone(),
        };
        periods::write(&self.store, stream, period, releasing, now)
            .map_err(store_error("cannot record the period's choice"))?;
        let request = Request {
            stream,
            version,
            settings,
            twoweek,
            period: Some(*period),
            forced: false,
            reason,
        };
        let progress = self.release(&request, now, None).inspect_err(|error| {
            tracing::error!(stream = %stream, version = %version, error = %error, "release failed");
        })?;
        match progress {
            Progress::Signing(out) => Ok(out),
            Progress::Released(out) => {
                let released = PeriodState::Released {
                    version: version.clone(),
                };
                periods::write(&self.store, stream, period, released, now)
                    .map_err(store_error("cannot record the release of the period"))?;
                Ok(out)
            }
        }
    }

    fn timer_fired(
        &self,
        tick: TwoweekTimerFired,
        message: &Incoming,
    ) -> Result<Outputs, StepError> {
        // A tick fired by hand is an operator's act, checked like an override; the timer's
        // own ticks name no operator.
        if let Some(operator) = &tick.operator {
            self.check_operator(message, "manual tick", operator)?;
        }
        let (settings, twoweek) = twoweek_stream(&self.settings, &tick.stream)?;
        let period = tick.period;
        let stream = &tick.stream;
        let now = Utc::now();
        let schedule = release_timer::Schedule::for_stream(stream, twoweek)
            .map_err(|error| StepError::permanent(format!("tick refused: {error}")))?;
        if let Some(reason) = schedule.refuse(period.start(), tick.operator.is_some(), now) {
            return Err(StepError::permanent(format!("tick refused: {reason}")));
        }
        self.locked(stream, || {
            self.refuse_if_ended(stream, "tick")?;
            self.tick_period(stream, settings, twoweek, &period, now)
        })
    }

    /// A period's tick, under the stream's lock: releases or skips it, or announces again
    /// (or finishes) what it released. A stream whose two-week releases moved to its successor
    /// decides nothing new: the tick is ignored with a log line, not skipped, since no release
    /// was due (what was released or under way before the switch is still announced).
    fn tick_period(
        &self,
        stream: &Stream,
        settings: &StreamSettings,
        twoweek: &TwoWeekSettings,
        period: &Period,
        now: DateTime<Utc>,
    ) -> Result<Outputs, StepError> {
        let state = periods::read(&self.store, stream, period)
            .map_err(store_error("cannot read the period record"))?;
        match state {
            Some(PeriodState::Released { version }) => {
                tracing::info!(stream = %stream, period = %period, version = %version, "period already released; announcing again");
                self.reannounce(stream, &version, twoweek)
            }
            Some(PeriodState::Releasing { version }) => {
                tracing::warn!(stream = %stream, period = %period, version = %version, "finishing an interrupted release");
                self.release_for_period(
                    stream,
                    settings,
                    twoweek,
                    period,
                    &version,
                    format!("two-week release for period {}", period),
                )
            }
            Some(PeriodState::Skipped | PeriodState::Waiting) | None => {
                if let Some(retired) = self.retired(stream, now)? {
                    tracing::info!(stream = %stream, period = %period, role = %retired, "tick of a retired stream ignored; its successor has the two-week releases");
                    return Ok(Vec::new());
                }
                let latest = periods::latest(&self.store, stream, now + release_timer::CLOCK_SKEW)
                    .map_err(store_error("cannot list the period records"))?;
                match latest {
                    // A replayed tick of a past period must not release today's candidate.
                    Some(latest) if latest > *period => {
                        tracing::warn!(stream = %stream, period = %period, latest = %latest, "tick of a past period ignored");
                        Ok(Vec::new())
                    }
                    _ => self.decide_tick(stream, settings, twoweek, period),
                }
            }
        }
    }

    /// The stream's role when its two-week releases moved to its successor, else `None`.
    fn retired(&self, stream: &Stream, now: DateTime<Utc>) -> Result<Option<Role>, StepError> {
        let role = succession::two_week_role(&self.settings, &self.store, stream, now)
            .map_err(store_error("cannot read the stream's switch"))?;
        Ok(matches!(role, Role::Retired { .. }).then_some(role))
    }

    fn reannounce(
        &self,
        stream: &Stream,
        version: &Version,
        twoweek: &TwoWeekSettings,
    ) -> Result<Outputs, StepError> {
        let record = store::read_json::<ReleasePublished>(&self.store.release_record_path(stream, version))
            .map_err(store_error("cannot read release.json"))?
            .ok_or_else(|| StepError::permanent(format!(
                "{stream} {version} is recorded as released but its release.json is missing; restore it from a backup or the release message"
            )))?;
        Ok(self.announce(&record, twoweek))
    }

    fn decide_tick(
        &self,
        stream: &Stream,
        settings: &StreamSettings,
        twoweek: &TwoWeekSettings,
        period: &Period,
    ) -> Result<Outputs, StepError> {
        let now = Utc::now();
        let view = StreamView::read(&self.store, stream, settings, now)
            .map_err(store_error("cannot read the stream's candidates"))?;
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
        periods::write(&self.store, stream, period, state, now)
            .map_err(store_error("cannot record the skipped period"))?;
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
        Ok(vec![Outgoing::new(id, &skipped)])
    }

    /// With `release-next-pass`, a candidate becoming eligible releases a waiting period.
    fn candidate_changed(&self, stream: &Stream) -> Result<Outputs, StepError> {
        let settings = self.settings.require_stream(stream)?;
        let Some(twoweek) = &settings.twoweek else {
            // A nightly-only stream has nothing to release.
            return Ok(Vec::new());
        };
        if twoweek.when_nothing_passed != WhenNothingPassed::ReleaseNextPass {
            return Ok(Vec::new());
        }
        self.locked(stream, || {
            let waiting = periods::waiting(&self.store, stream)
                .map_err(store_error("cannot read the waiting period"))?;
            let period = match waiting {
                // A period from the future (written before ticks were checked) waits for nothing.
                Some(period) if period.start() <= Utc::now() + release_timer::CLOCK_SKEW => period,
                _ => return Ok(Vec::new()),
            };
            let state = periods::read(&self.store, stream, &period)
                .map_err(store_error("cannot read the period record"))?;
            let ended = endoflife::read(&self.store, stream)
                .map_err(store_error("cannot read the stream's end of life"))?;
            if state != Some(PeriodState::Waiting) || ended.is_some() {
                return Ok(Vec::new());
            }
            if let Some(retired) = self.retired(stream, Utc::now())? {
                tracing::info!(stream = %stream, period = %period, role = %retired, "waiting period of a retired stream not released");
                return Ok(Vec::new());
            }
            let view = StreamView::read(&self.store, stream, settings, Utc::now())
                .map_err(store_error("cannot read the stream's candidates"))?;
            match decide(&view, settings, twoweek.karma_required).0 {
                Decision::Release(version) => {
                    let reason = format!(
                        "first candidate to pass every gate after the skipped tick of period {}",
                        period
                    );
                    self.release_for_period(stream, settings, twoweek, &period, &version, reason)
                }
                Decision::Held(_) | Decision::Nothing => Ok(Vec::new()),
            }
        })
    }

    /// A stream past its end of life gets no more two-week releases: `what` (a tick, a forced
    /// release) is refused, naming when and how it ended.
    fn refuse_if_ended(&self, stream: &Stream, what: &str) -> Result<(), StepError> {
        let ended = endoflife::read(&self.store, stream)
            .map_err(store_error("cannot read the stream's end of life"))?;
        match ended {
            None => Ok(()),
            Some(ended) => {
                let reason = format!(
                    "{what} refused: {stream} is at its end of life {}, so it gets no more two-week releases",
                    endoflife::describe(&ended)
                );
                tracing::warn!(stream = %stream, reason = %reason, "release refused after the end of life");
                Err(StepError::permanent(reason))
            }
        }
    }

    /// Ends `stream`'s life unless it already ended: returns its announcement (the same id
    /// each time, so a second ending is a duplicate downstream), or for a signed stream the
    /// request for the end-of-life commits' signatures. `by` is the operator's override, whose
    /// audit log gets a signed end's outcome. The caller holds the lock.
    fn end_locked(
        &self,
        stream: &Stream,
        cause: EndOfLifeCause,
        now: DateTime<Utc>,
        by: Option<&AuditEntry>,
    ) -> Result<Outgoing, EndOfLifeError> {
        if let Some(ended) = endoflife::read(&self.store, stream)? {
            tracing::info!(stream = %stream, at = %ended.at, "stream already at its end of life; announcing again");
            return Ok(endoflife::announcement(&ended));
        }
        let ended = endoflife::prepare(&self.settings, stream, cause, now)?;
        if endoflife::needs_signatures(&self.settings, &ended) {
            return self.ask_end_of_life_signatures(ended, now, by);
        }
        endoflife::promote(&self.settings, &ended)?;
        endoflife::write(&self.store, &ended)?;
        Ok(endoflife::announcement(&ended))
    }

    /// Records a signed stream's end of life as waiting for the signatures of its commits,
    /// and asks for them; asked again, the same request, still waiting since the first time
    /// and for the first end of life asked for. The caller holds the lock.
    pub(crate) fn ask_end_of_life_signatures(
        &self,
        ended: StreamEndOfLife,
        now: DateTime<Utc>,
        by: Option<&AuditEntry>,
    ) -> Result<Outgoing, EndOfLifeError> {
        let request = endoflife::sign_request(&self.store, &ended)?;
        let earlier = signing::read(&self.store, &ended.stream, &request.version)?;
        if let Some(busy) = earlier
            .as_ref()
            .filter(|p| p.request.request_id != request.request_id)
        {
            return Err(EndOfLifeError::SigningBusy {
                stream: ended.stream.clone(),
                version: busy.request.version.clone(),
            });
        }
        let pending = signing::Pending {
            period: None,
            forced: false,
            reason: ended.message.clone(),
            since: earlier.as_ref().map_or(now, |e| e.since),
            resent_at: earlier.as_ref().and_then(|e| e.resent_at),
            forced_by: earlier
                .as_ref()
                .and_then(|e| e.forced_by.clone())
                .or_else(|| by.cloned()),
            answered_by: None,
            end_of_life: Some(earlier.and_then(|e| e.end_of_life).unwrap_or(ended)),
            request,
        };
        signing::write(&self.store, &pending)?;
        tracing::info!(stream = %pending.request.stream, request_id = %pending.request.request_id, since = %pending.since, "end of life staged; waiting for signatures");
        Ok(self.sign_request_message(&pending.request, false))
    }

    /// An operator's `fortnight.override.end-of-life`, kept in the stream's audit log like
    /// the other overrides, with its outcome.
    fn end_of_life_requested(
        &self,
        body: Override,
        message: &Incoming,
    ) -> Result<Outputs, StepError> {
        self.check_operator(message, "end of life", &body.operator)?;
        twoweek_stream(&self.settings, &body.stream)?;
        if body.reason.trim().is_empty() {
            return Err(StepError::permanent("an end of life needs a reason"));
        }
        let now = Utc::now();
        let entry = AuditEntry::new(
            self.override_id(&body, message),
            Action::EndOfLife,
            &body,
            now,
        );
        let stream = &body.stream;
        self.locked(stream, || {
            if overrides::append(&self.store, &entry)
                .map_err(store_error("cannot append to the override audit log"))?
            {
                tracing::info!(stream = %stream, operator = %entry.operator, reason = %entry.reason, "end of life asked for");
            }
            let cause = EndOfLifeCause::Operator {
                operator: body.operator.clone(),
                reason: body.reason.clone(),
            };
            let (result, outcome) = match self.end_locked(stream, cause, now, Some(&entry)) {
                // Signed: the outcome is recorded when the signer answers.
                Ok(out) if out.topic != StreamEndOfLife::TOPIC => return Ok(vec![out]),
                Ok(out) => (
                    Ok(vec![out]),
                    "ended: the release refs point at their end-of-life commits".to_owned(),
                ),
                Err(error) if error.is_refusal() => {
                    tracing::error!(stream = %stream, error = %error, "end of life refused");
                    let outcome = format!("refused: {error}");
                    (Err(error.into()), outcome)
                }
                Err(error) => return Err(error.into()),
            };
            overrides::append(&self.store, &entry.outcome(outcome, now))
                .map_err(store_error("cannot append to the override audit log"))?;
            result
        })
    }

    /// An operator's message must be published by that operator's own broker account, and the
    /// account must be listed in `operators`.
    fn check_operator(
        &self,
        message: &Incoming,
        what: &str,
        operator: &UserName,
    ) -> Result<(), StepError> {
        message
            .check_publisher(&format!("{what} claims operator"), operator)
            .map_err(StepError::permanent)?;
        if !self.settings.operators.contains(operator) {
            return Err(StepError::permanent(format!(
                "{operator} is not an operator (see `operators` in the configuration)"
            )));
        }
        Ok(())
    }

    /// The id of an override's audit log line: the message's, so a redelivered override is a
    /// no-op in the log; without one, the body is the identity.
    fn override_id(&self, body: &impl serde::Serialize, message: &Incoming) -> String {
        message.id.clone().unwrap_or_else(|| {
            let body_text = serde_json::to_string(body).unwrap_or_default();
            derived_id(NAME, &[&body_text]).to_string()
        })
    }

    fn override_received(
        &self,
        action: Action,
        body: Override,
        message: &Incoming,
    ) -> Result<Outputs, StepError> {
        self.check_operator(message, "override", &body.operator)?;
        let (settings, twoweek) = twoweek_stream(&self.settings, &body.stream)?;
        if body.reason.trim().is_empty() {
            return Err(StepError::permanent("an override needs a reason"));
        }
        let version = match (&body.version, action.needs_version()) {
            (Some(version), true) => Some(version.clone()),
            (None, true) => {
                return Err(StepError::permanent(format!(
                    "override {action:?} needs the candidate's version"
                )));
            }
            (_, false) => None,
        };
        let now = Utc::now();
        let entry = AuditEntry::new(self.override_id(&body, message), action, &body, now);
        let stream = &body.stream;
        self.locked(stream, || {
            // Refused before it is logged: the log says what was done.
            if action == Action::Release
                && let Some(retired) = self.retired(stream, now)?
            {
                return Err(StepError::permanent(format!(
                    "cannot force-release {stream} {}: {retired}; release a candidate of the stream that took over",
                    entry.version.as_ref().map_or("", Version::as_str)
                )));
            }
            let appended = overrides::append(&self.store, &entry)
                .map_err(store_error("cannot append to the override audit log"))?;
            match appended {
                true => tracing::info!(stream = %stream, action = ?action, operator = %entry.operator, version = ?entry.version, reason = %entry.reason, "override recorded"),
                false => tracing::info!(stream = %stream, id = %entry.id, "override already recorded"),
            }
            let Some(version) = version.filter(|_| action == Action::Release) else {
                return Ok(Vec::new());
            };
            self.refuse_if_ended(stream, "forced release")?;
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
                Ok(Progress::Released(out) | Progress::Signing(out)) => Ok(out),
                Err(error) => {
                    tracing::error!(stream = %stream, version = %version, error = %error, "forced release failed");
                    Err(error.into())
                }
            }
        })
    }

    /// The signer's answer: a `SUCCESS` finishes the staged release it names, a `FAILURE`
    /// skips it (nothing was promoted). A reply to no request waiting here is stale: logged
    /// and acked.
    fn sign_finished(
        &self,
        finished: SignFinished,
        message: &Incoming,
    ) -> Result<Outputs, StepError> {
        let (stream, version) = (&finished.request.stream, &finished.request.version);
        let (settings, twoweek) = twoweek_stream(&self.settings, stream)?;
        self.locked(stream, || {
            let request_id = &finished.request.request_id;
            let waiting = signing::read(&self.store, stream, version)
                .map_err(store_error("cannot read the signing request"))?
                .filter(|pending| &pending.request.request_id == request_id);
            let pending = match (waiting, message.id.as_deref()) {
                (Some(pending), _) => pending,
                (None, Some(reply_id)) => {
                    match signing::answered_by(&self.store, stream, request_id, reply_id)
                        .map_err(store_error("cannot read the answered signing request"))?
                    {
                        Some(answered) => {
                            tracing::info!(stream = %stream, version = %version, request_id = %request_id, id = %reply_id, "signing reply delivered again; its outcome is announced again");
                            answered
                        }
                        None => return Ok(stale_reply(&finished, message)),
                    }
                }
                (None, None) => return Ok(stale_reply(&finished, message)),
            };
            let now = Utc::now();
            let failure = || {
                format!(
                    "signing failed ({} {}): {}",
                    message.topic,
                    message.id.as_deref().unwrap_or("without id"),
                    finished
                        .failure_message
                        .as_deref()
                        .unwrap_or("the signer gave no reason")
                )
            };
            let out = match (&pending.end_of_life, finished.status) {
                (Some(ended), SignStatus::Success) => {
                    endoflife::promote(&self.settings, ended)?;
                    endoflife::write(&self.store, ended)
                        .map_err(store_error("cannot record the end of life"))?;
                    let outcome = "ended, signed: the release refs point at their end-of-life commits";
                    self.record_forced_outcome(pending.forced_by.as_ref(), outcome.to_owned(), now)
                        .map_err(store_error("cannot append to the override audit log"))?;
                    vec![endoflife::announcement(ended)]
                }
                (Some(_), SignStatus::Failure) => {
                    let reason = failure();
                    tracing::error!(stream = %stream, request_id = %request_id, reason = %reason, "end-of-life commits not signed; nothing moved");
                    self.record_forced_outcome(pending.forced_by.as_ref(), format!("not ended: {reason}"), now)
                        .map_err(store_error("cannot append to the override audit log"))?;
                    Vec::new()
                }
                (None, SignStatus::Success) => {

                    let request = Request {
                        stream,
                        version,
                        settings,
                        twoweek,
                        period: pending.period,
                        forced: pending.forced,
                        reason: pending.reason.clone(),
                    };
                    let out = self.complete(&request, now).inspect_err(|error| {
                        tracing::error!(stream = %stream, version = %version, error = %error, "signed release failed");
                    })?;
                    if let Some(period) = &pending.period {
                        let released = PeriodState::Released {
                            version: version.clone(),
                        };
                        periods::write(&self.store, stream, period, released, now)
                            .map_err(store_error("cannot record the release of the period"))?;
                    }
                    let outcome = format!("released {version}, signed");
                    self.record_forced_outcome(pending.forced_by.as_ref(), outcome, now)
                        .map_err(store_error("cannot append to the override audit log"))?;
                    out
                }
                (None, SignStatus::Failure) => {
                    self.skip_unsigned(&pending, twoweek, failure(), now)
                        .map_err(store_error("cannot record the skipped release"))?
                }
            };
            match message.id.as_deref() {
                Some(reply_id) => signing::answer(&self.store, &pending, reply_id),
                None => signing::remove(&self.store, stream, version),
            }
            .map_err(store_error("cannot record the answered signing request"))?;
            Ok(out)
        })
    }
}

/// A reply to a request that is not waiting (answered by another reply, given up on, or never
/// made here) changes nothing.
fn stale_reply(finished: &SignFinished, message: &Incoming) -> Outputs {
    let request = &finished.request;
    tracing::info!(stream = %request.stream, version = %request.version, request_id = %request.request_id, id = ?message.id, "signing reply for an unknown or stale request; ignored");
    Vec::new()
}

impl BlockingStep for Releaser {
    const NAME: &'static str = NAME;
    type Input = ReleaserInput;

    /// Locks, hard links and `ostree`: the runtime runs this on the blocking pool.
    fn handle(&self, input: ReleaserInput, message: &Incoming) -> Result<Outputs, StepError> {
        match input {
            ReleaserInput::Tick(tick) => self.timer_fired(tick, message),
            ReleaserInput::TestsPassed(ImageTestsPassed(report)) => {
                self.candidate_changed(&report.stream)
            }
            ReleaserInput::Threshold(reached) => match reached.status {
                KarmaStatus::Stable => self.candidate_changed(&reached.stream),
                KarmaStatus::Unstable => Ok(Vec::new()),
            },
            ReleaserInput::Signed(finished) => self.sign_finished(finished, message),
            ReleaserInput::Block(OverrideBlock(body)) => {
                self.override_received(Action::Block, body, message)
            }
            ReleaserInput::Unblock(OverrideUnblock(body)) => {
                self.override_received(Action::Unblock, body, message)
            }
            ReleaserInput::Release(OverrideRelease(body)) => {
                self.override_received(Action::Release, body, message)
            }
            ReleaserInput::Hold(OverrideHold(body)) => {
                self.override_received(Action::Hold, body, message)
            }
            ReleaserInput::Unhold(OverrideUnhold(body)) => {
                self.override_received(Action::Unhold, body, message)
            }
            ReleaserInput::Switch(body) => self.switch_requested(body, message),
            ReleaserInput::EndOfLife(OverrideEndOfLife(body)) => {
                self.end_of_life_requested(body, message)
            }
        }
    }
}
