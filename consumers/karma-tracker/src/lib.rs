//! The human gate. Once every configured arch of a candidate passed automated tests, asks
//! testers to vote (`fortnight.candidate.testing.requested`); then records each tester's
//! latest vote in the store and, when the sum reaches the stream's stable or unstable
//! threshold, publishes `fortnight.karma.threshold.reached` once.
//!
//! `passed-human/` follows the current tally, like `passed-autotest/` follows the test
//! reports: after every vote the candidate is linked there exactly when its karma is at or
//! above the stable threshold, the rule the releaser's human gate applies. A vote that takes
//! a candidate out again publishes `fortnight.candidate.testing.requested` (it needs votes
//! again, and the site lists it so); a vote that brings it back publishes
//! `fortnight.karma.threshold.reached` again.
//!
//! The voter is the AMQP `user_id` property, which RabbitMQ checks against the connection's
//! user; the `user` a body claims must match it. A vote from anyone else, from someone the
//! stream does not allow, or on a candidate that is unknown or has not passed, is refused
//! (dead-lettered with the reason).

#[cfg(test)]
mod step_tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use bus::{BlockingStep, Outputs, StepError};
use chrono::{DateTime, Utc};
use gate::{ArchResult, AutotestState, Tally};
use messages::{
    Arch, CandidateTestingRequested, ImageTestsPassed, Incoming, KarmaStatus, KarmaSubmitted,
    KarmaThresholdReached, Message, Outgoing, Stream, TestReport, UserName, Version, Vote,
    derived_id,
};
use serde::{Deserialize, Serialize};
use settings::{Settings, StreamSettings};
use store::{FileName, Store, StoreError, Tier};

pub const NAME: &str = "karma-tracker";

/// The karma-tracker step.
#[derive(Debug, Clone)]
pub struct KarmaTracker {
    settings: Arc<Settings>,
    store: Store,
}

/// Which vote made a candidate reach a threshold, kept so that replaying that vote publishes
/// the same message again while later votes publish nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ThresholdRecord {
    trigger: String,
    message: KarmaThresholdReached,
    /// Set when the stable threshold was reached again after the candidate had fallen below
    /// it; absent for the first announcement, whose id depends on the candidate alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<uuid::Uuid>,
}

/// Why `user` may not vote on `version` of `stream` now, if they may not: they are not among
/// the stream's voters, or the version is not a candidate that passed automated tests on every
/// arch. The tracker refuses such a vote; `fortnight vote` says so before sending it.
pub fn vote_refusal(
    store: &Store,
    settings: &StreamSettings,
    stream: &Stream,
    version: &Version,
    user: &UserName,
) -> Result<Option<String>, StoreError> {
    if let Some(voters) = &settings.karma.voters
        && !voters.contains(user)
    {
        return Ok(Some(format!("user {user} may not vote on stream {stream}")));
    }
    let autotest = AutotestState::read(store, stream, settings, version)?;
    if autotest.all_passed().is_some() {
        return Ok(None);
    }
    let known = autotest.arches.values().any(|r| *r != ArchResult::Pending);
    let what = if known {
        "has not passed automated tests"
    } else {
        "is not a known candidate"
    };
    Ok(Some(format!(
        "version {version} of stream {stream} {what} ({})",
        autotest.reasons().join("; ")
    )))
}

bus::input! {
    /// What the karma tracker reads: a passed arch (the automated gate) and votes.
    pub enum KarmaInput {
        TestsPassed(ImageTestsPassed),
        Vote(KarmaSubmitted),
    }
}

/// The time a message was sent (its `sent-at` header), or now when absent or unreadable.
fn sent_at(message: &Incoming) -> DateTime<Utc> {
    message.sent_at().unwrap_or_else(Utc::now)
}

impl KarmaTracker {
    pub fn new(settings: Arc<Settings>) -> Result<Self, StoreError> {
        let store = Store::open(&settings.store.root)?;
        Ok(Self { settings, store })
    }

    fn tests_passed(&self, report: TestReport) -> Result<Outputs, StepError> {
        let settings = self.settings.require_stream(&report.stream)?;
        if !settings.arches.contains(&report.arch) {
            return Err(StepError::permanent(format!(
                "arch {} is not configured for stream {}",
                report.arch, report.stream
            )));
        }
        if !report.failed.is_empty() {
            return Err(StepError::permanent(format!(
                "tests.passed lists failed gating tests: {}",
                report.failed.join(", ")
            )));
        }
        let (stream, version) = (report.stream.clone(), report.version.clone());
        let state = AutotestState::read(&self.store, &stream, settings, &version)
            .map_err(|e| StepError::from(e).context("cannot read the candidate's test reports"))?
            .with_report(report);
        let Some(passed) = state.all_passed() else {
            tracing::info!(stream = %stream, version = %version, waiting = ?state.reasons(), "waiting for other arches");
            return Ok(Vec::new());
        };
        tracing::info!(stream = %stream, version = %version, "every arch passed; human testing requested");
        let id = derived_id(
            NAME,
            &[
                stream.as_str(),
                version.as_str(),
                CandidateTestingRequested::TOPIC,
            ],
        );
        Ok(vec![Outgoing::new(
            id,
            &testing_requested(&stream, &version, passed),
        )])
    }

    fn karma_submitted(
        &self,
        vote: KarmaSubmitted,
        message: &Incoming,
    ) -> Result<Outputs, StepError> {
        if !(-1..=1).contains(&vote.karma) {
            return Err(StepError::permanent(format!(
                "karma {} is not one of -1, 0, +1",
                vote.karma
            )));
        }
        let settings = self.settings.require_stream(&vote.stream)?;
        message
            .check_publisher("vote claims user", &vote.user)
            .map_err(StepError::permanent)?;
        let (stream, version) = (&vote.stream, &vote.version);
        let refusal = vote_refusal(&self.store, settings, stream, version, &vote.user)
            .map_err(|e| StepError::from(e).context("cannot read the candidate's test reports"))?;
        if let Some(reason) = refusal {
            return Err(StepError::permanent(reason));
        }
        let lock_name: FileName = format!("karma-{version}")
            .parse()
            .map_err(|e| StepError::from(e).context("cannot name the candidate's lock"))?;
        let lock = self.store.lock_path(stream, &lock_name);
        let trigger = message.log_id().to_owned();
        let record = Vote {
            user: vote.user.clone(),
            karma: vote.karma,
            comment: vote.comment.clone(),
            at: sent_at(message),
        };
        store::with_lock(&lock, || {
            self.record_vote(settings, stream, version, record, &trigger)
        })
        .map_err(|e| StepError::from(e).context("cannot record the vote"))
    }

    /// Stores the vote (unless a newer one of the same tester is there), links or unlinks the
    /// candidate in `passed-human/` to match the tally, and returns what this vote changed:
    /// the threshold message when it reached a threshold, a new testing request when it took
    /// the candidate out of `passed-human/`.
    fn record_vote(
        &self,
        settings: &StreamSettings,
        stream: &Stream,
        version: &Version,
        vote: Vote,
        trigger: &str,
    ) -> Result<Vec<Outgoing>, StoreError> {
        let store = &self.store;
        let previous: Option<Vote> =
            store::read_json(&store.karma_path(stream, version, &vote.user))?;
        if previous.as_ref().is_none_or(|p| p.at <= vote.at) {
            store.write_vote(stream, version, &vote)?;
            tracing::info!(stream = %stream, version = %version, user = %vote.user, karma = vote.karma, "vote recorded");
        } else {
            tracing::info!(stream = %stream, version = %version, user = %vote.user, "older vote ignored; a newer one is recorded");
        }
        let tally = Tally::count(store.read_votes(stream, version)?, &settings.karma);
        let stable = tally.status == Some(KarmaStatus::Stable);
        let was_linked = store.in_tier(stream, version, Tier::PassedHuman);
        let first_id = derived_id(
            NAME,
            &[
                stream.as_str(),
                version.as_str(),
                KarmaThresholdReached::TOPIC,
            ],
        );
        let marker = store.threshold_path(stream, version);
        let recorded = store::read_json::<ThresholdRecord>(&marker)?;
        let mut outgoing = Vec::new();
        match (&recorded, tally.status) {
            // Only a replay of the vote that reached it publishes the announcement again.
            (Some(reached), _) if reached.trigger == trigger => {
                let id = reached.id.unwrap_or(first_id);
                outgoing.push(Outgoing::new(id, &reached.message));
            }
            // Once per candidate, and again each time it climbs back into passed-human.
            (None, Some(status)) | (Some(_), Some(status @ KarmaStatus::Stable))
                if recorded.is_none() || !was_linked =>
            {
                let id = recorded
                    .is_some()
                    .then(|| derived_id(NAME, &[stream.as_str(), version.as_str(), trigger]));
                let message = KarmaThresholdReached {
                    stream: stream.clone(),
                    version: version.clone(),
                    status,
                    karma: tally.karma,
                    votes: tally.votes,
                };
                store::write_json(
                    &marker,
                    &ThresholdRecord {
                        trigger: trigger.to_owned(),
                        message: message.clone(),
                        id,
                    },
                )?;
                tracing::info!(stream = %stream, version = %version, status = ?status, karma = message.karma, "karma threshold reached");
                outgoing.push(Outgoing::new(id.unwrap_or(first_id), &message));
            }
            _ => {}
        }
        // The tier is settled after the marker: a crash between the two replays this vote
        // into the recorded announcement (its trigger matches) and then into the link.
        let left = match stable {
            true => {
                store.promote(stream, version, Tier::PassedHuman)?;
                false
            }
            false => store.demote(stream, version, Tier::PassedHuman)?,
        };
        if left {
            tracing::warn!(stream = %stream, version = %version, karma = tally.karma, stable_threshold = settings.karma.stable_threshold, "karma fell below the stable threshold; removed from passed-human");
            let autotest = AutotestState::read(store, stream, settings, version)?;
            if let Some(passed) = autotest.all_passed() {
                let id = derived_id(
                    NAME,
                    &[
                        stream.as_str(),
                        version.as_str(),
                        CandidateTestingRequested::TOPIC,
                        trigger,
                    ],
                );
                outgoing.push(Outgoing::new(
                    id,
                    &testing_requested(stream, version, passed),
                ));
            }
        }
        Ok(outgoing)
    }
}

/// The request for votes on a candidate every arch of which passed (`passed`, by arch).
fn testing_requested(
    stream: &Stream,
    version: &Version,
    passed: BTreeMap<Arch, &TestReport>,
) -> CandidateTestingRequested {
    CandidateTestingRequested {
        stream: stream.clone(),
        version: version.clone(),
        arches: passed
            .into_iter()
            .map(|(arch, report)| (arch, report.tree.clone()))
            .collect(),
    }
}

impl BlockingStep for KarmaTracker {
    const NAME: &'static str = NAME;
    type Input = KarmaInput;

    /// Locks, reads and fsyncs in the store: plain blocking code on the blocking pool.
    fn handle(&self, input: KarmaInput, message: &Incoming) -> Result<Outputs, StepError> {
        match input {
            KarmaInput::TestsPassed(ImageTestsPassed(report)) => self.tests_passed(report),
            KarmaInput::Vote(vote) => self.karma_submitted(vote, message),
        }
    }
}
