//! Signed releases (streams with `[streams.<s>.signing]`): the release is staged (links and
//! CHECKSUMs, nothing promoted), `fortnight.sign.requested` names its images, CHECKSUMs and
//! commits, and only a `SUCCESS` reply finishes it. The request waits in
//! `<stream>/.signing/<version>.json`, so a restarted releaser still knows what it waits for
//! and since when, and a reply is matched to it by `request_id`.
//!
//! A request nobody answers is re-sent once after the stream's `signing.deadline`, and given
//! up (the release skipped) after another: [`Pending::due`] says which, and the releaser's
//! [`crate::deadlines::Deadlines`] clock acts on it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use messages::{
    Arch, CandidateVerdict, Commit, Message, Outgoing, Period, ReleaseSkipped, ReleasedArch,
    SignArtifact, SignCommit, SignRequested, Stream, StreamEndOfLife, Version, derived_id,
};
use serde::{Deserialize, Serialize};
use settings::{TwoWeekSettings, WhenNothingPassed};
use store::{Store, StoreError};

use crate::overrides::{self, AuditEntry};
use crate::periods::{self, PeriodState};
use crate::release::Request;
use crate::{NAME, Releaser, policy_name};

/// A staged release waiting for its signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub request: SignRequested,
    pub period: Option<Period>,
    pub forced: bool,
    pub reason: String,
    /// When the signatures were first requested.
    pub since: DateTime<Utc>,
    /// When the request was sent again after the first deadline passed without a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent_at: Option<DateTime<Utc>>,
    /// The override that forced the release, whose audit log gets the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_by: Option<AuditEntry>,
    /// The message id of the reply acted on, once answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// Set when what waits is the stream's end of life ([`crate::endoflife`]), not a release:
    /// its announcement, whose commits the request names and whose refs move on `SUCCESS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_life: Option<StreamEndOfLife>,
}

/// What an unanswered request is due for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The first deadline passed: send the same request (same `request_id`) once more.
    Resend,
    /// The deadline after the re-send passed too: skip the release.
    GiveUp { resent_at: DateTime<Utc> },
}

/// `deadline` after `at`.
pub fn after(at: DateTime<Utc>, deadline: Duration) -> DateTime<Utc> {
    at + TimeDelta::from_std(deadline).unwrap_or(TimeDelta::MAX)
}

impl Pending {
    /// When the next step is due: the re-send, or after it the giving up.
    pub fn next_deadline(&self, deadline: Duration) -> DateTime<Utc> {
        after(self.resent_at.unwrap_or(self.since), deadline)
    }

    /// When the release is given up if no reply comes.
    pub fn gives_up_at(&self, deadline: Duration) -> DateTime<Utc> {
        match self.resent_at {
            Some(resent_at) => after(resent_at, deadline),
            None => after(after(self.since, deadline), deadline),
        }
    }

    /// What is due at `now`, if anything.
    pub fn due(&self, deadline: Duration, now: DateTime<Utc>) -> Option<Due> {
        if now < self.next_deadline(deadline) {
            return None;
        }
        Some(match self.resent_at {
            None => Due::Resend,
            Some(resent_at) => Due::GiveUp { resent_at },
        })
    }

    /// "waiting for signatures since <t> (re-sent at <t>; gives up at <t>)", for `status`
    /// and `explain`.
    pub fn describe(&self, deadline: Duration) -> String {
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let resend = match self.resent_at {
            Some(resent_at) => format!("re-sent at {}", time(resent_at)),
            None => format!("re-sends at {}", time(self.next_deadline(deadline))),
        };
        format!(
            "waiting for signatures since {} ({resend}; gives up at {})",
            time(self.since),
            time(self.gives_up_at(deadline))
        )
    }
}

pub fn read(
    store: &Store,
    stream: &Stream,
    version: &Version,
) -> Result<Option<Pending>, StoreError> {
    store::read_json(&store.signing_request_path(stream, version))
}

pub fn write(store: &Store, pending: &Pending) -> Result<(), StoreError> {
    let path = store.signing_request_path(&pending.request.stream, &pending.request.version);
    if let Some(dir) = path.parent() {
        store::create_dir_all(dir)?;
    }
    store::write_json(&path, pending)
}

/// Every release of `stream` waiting for signatures, oldest request first.
pub fn waiting(store: &Store, stream: &Stream) -> Result<Vec<Pending>, StoreError> {
    let mut pending = Vec::new();
    for entry in store::list_dir(&store.signing_requests_dir(stream))? {
        if let Some(found) = store::read_json::<Pending>(&entry.path())? {
            pending.push(found);
        }
    }
    pending.sort_by_key(|p| p.since);
    Ok(pending)
}

/// Moves the request out of the waiting ones once `reply_id` answered it. The answer is kept
/// (written before the request is removed), so a redelivery of that same reply, which comes
/// when the releaser stopped before the broker confirmed the outcome's messages, announces the
/// outcome again; any other reply to it is stale.
pub fn answer(store: &Store, pending: &Pending, reply_id: &str) -> Result<(), StoreError> {
    let (stream, request_id) = (&pending.request.stream, &pending.request.request_id);
    let path = store.signing_answer_path(stream, request_id);
    if let Some(dir) = path.parent() {
        store::create_dir_all(dir)?;
    }
    let answered = Pending {
        answered_by: Some(reply_id.to_owned()),
        ..pending.clone()
    };
    store::write_json(&path, &answered)?;
    remove(store, stream, &pending.request.version)
}

/// The answered request `request_id`, if `reply_id` is the reply that answered it.
pub fn answered_by(
    store: &Store,
    stream: &Stream,
    request_id: &uuid::Uuid,
    reply_id: &str,
) -> Result<Option<Pending>, StoreError> {
    let answered: Option<Pending> =
        store::read_json(&store.signing_answer_path(stream, request_id))?;
    Ok(answered.filter(|a| a.answered_by.as_deref() == Some(reply_id)))
}

/// Forgets the request; a later reply to it is then stale.
pub fn remove(store: &Store, stream: &Stream, version: &Version) -> Result<(), StoreError> {
    let path = store.signing_request_path(stream, version);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            op: "remove",
            path,
            source,
        }),
    }
}

impl Releaser {
    /// The message carrying `request` on the deployment's request topic. A re-send has an id
    /// of its own (a bus that dropped the first as a duplicate takes the second); its
    /// `request_id` is the same, so a signer that answered the first signs nothing twice.
    pub(crate) fn sign_request_message(&self, request: &SignRequested, resend: bool) -> Outgoing {
        let request_id = request.request_id.to_string();
        let mut identity = vec![request_id.as_str(), SignRequested::TOPIC];
        if resend {
            identity.push("resent");
        }
        let mut message = Outgoing::new(derived_id(NAME, &identity), request);
        message
            .topic
            .clone_from(&self.settings.signing_topics.requested);
        message
    }

    /// Appends how a forced release that waited for signatures ended to its override's audit
    /// log (nothing for a release no override forced). An unsigned forced release ends while
    /// its override is handled, so the override's line and `release.json` tell its outcome.
    /// The caller holds the stream's lock.
    pub(crate) fn record_forced_outcome(
        &self,
        forced_by: Option<&AuditEntry>,
        outcome: String,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let Some(entry) = forced_by else {
            return Ok(());
        };
        if overrides::append(&self.store, &entry.outcome(outcome.clone(), now))? {
            tracing::info!(stream = %entry.stream, id = %entry.id, outcome = %outcome, "forced release's outcome recorded");
        }
        Ok(())
    }

    /// Skips a staged release that will not be signed (the signer refused, or never answered):
    /// nothing was promoted, so nothing is undone. The period, if any, is recorded as skipped;
    /// a forced release is skipped in the period it was forced in (without touching that
    /// period's own record) and its override's log gets the reason. Returns the
    /// `release.skipped` message; the caller removes the request once it is sent.
    pub(crate) fn skip_unsigned(
        &self,
        pending: &Pending,
        twoweek: &TwoWeekSettings,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<Vec<Outgoing>, StoreError> {
        let (stream, version) = (&pending.request.stream, &pending.request.version);
        tracing::warn!(stream = %stream, version = %version, request_id = %pending.request.request_id, reason = %reason, "release not signed; skipped, nothing promoted");
        let (period, id) = match pending.period {
            Some(period) => {
                periods::write(&self.store, stream, &period, PeriodState::Skipped, now)?;
                let id = derived_id(
                    NAME,
                    &[stream.as_str(), &period.to_string(), ReleaseSkipped::TOPIC],
                );
                (period, id)
            }
            None => {
                let forced_in = release_timer::Schedule::for_stream(stream, twoweek)
                    .ok()
                    .and_then(|schedule| schedule.current(pending.since))
                    .unwrap_or(pending.since);
                let request_id = pending.request.request_id.to_string();
                let id = derived_id(NAME, &[&request_id, ReleaseSkipped::TOPIC]);
                (Period::starting_at(forced_in), id)
            }
        };
        self.record_forced_outcome(
            pending.forced_by.as_ref(),
            format!("skipped {version}: {reason}"),
            now,
        )?;
        let skipped = ReleaseSkipped {
            stream: stream.clone(),
            period,
            candidates: vec![CandidateVerdict {
                version: version.clone(),
                reasons: vec![reason],
            }],
            current_release: self.store.current_release(stream)?,
            current_release_age_seconds: None,
            policy: policy_name(WhenNothingPassed::Skip).to_owned(),
        };
        Ok(vec![Outgoing::new(id, &skipped)])
    }
}

/// The request for a staged release: every arch's images, CHECKSUM and release commit
/// (`release_commits`, what the release ref will point at). Its id derives from the release,
/// so asking again (a replayed tick) sends the same request.
pub fn request_for(
    store: &Store,
    request: &Request<'_>,
    arches: &BTreeMap<Arch, ReleasedArch>,
    release_commits: &BTreeMap<Arch, Commit>,
) -> Result<SignRequested, StoreError> {
    let (stream, version) = (request.stream, request.version);
    let period = request
        .period
        .map_or_else(|| "forced".to_owned(), |period| period.to_string());
    let mut artifacts = Vec::new();
    for (arch, released) in arches {
        artifacts.extend(
            released
                .images
                .iter()
                .map(|image| SignArtifact::new(image.path.clone(), &image.sha256)),
        );
        let path = store
            .release_arch_dir(stream, version, arch)
            .join(store::CHECKSUM);
        let digest = store::hash_file(&path)?;
        artifacts.push(SignArtifact::new(store.relative(&path), &digest.sha256));
    }
    Ok(SignRequested {
        request_id: derived_id(NAME, &[stream.as_str(), version.as_str(), &period, "sign"]),
        stream: stream.clone(),
        version: version.clone(),
        build_id: format!("{stream}-{version}"),
        artifacts,
        commits: arches
            .iter()
            .map(|(arch, released)| SignCommit {
                arch: arch.clone(),
                ostree_ref: released.release_ref.clone(),
                commit: release_commits[arch].clone(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(resent_at: Option<&str>) -> Pending {
        let stream: Stream = "f43".parse().unwrap();
        let version: Version = "43.1".parse().unwrap();
        Pending {
            request: SignRequested {
                request_id: derived_id(NAME, &["test"]),
                stream: stream.clone(),
                version: version.clone(),
                build_id: format!("{stream}-{version}"),
                artifacts: Vec::new(),
                commits: Vec::new(),
            },
            period: None,
            forced: false,
            reason: "r".into(),
            since: "2026-11-17T12:00:00Z".parse().unwrap(),
            resent_at: resent_at.map(|t| t.parse().unwrap()),
            forced_by: None,
            answered_by: None,
            end_of_life: None,
        }
    }

    #[test]
    fn a_request_is_re_sent_after_one_deadline_and_given_up_after_the_next() {
        let hour = Duration::from_secs(3600);
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        let fresh = pending(None);
        assert_eq!(fresh.due(hour, at("2026-11-17T12:59:59Z")), None);
        assert_eq!(
            fresh.due(hour, at("2026-11-17T13:00:00Z")),
            Some(Due::Resend)
        );
        assert_eq!(
            fresh.describe(hour),
            "waiting for signatures since 2026-11-17T12:00:00Z (re-sends at 2026-11-17T13:00:00Z; gives up at 2026-11-17T14:00:00Z)"
        );
        // Re-sent late (the releaser was down): the second deadline counts from the re-send.
        let resent = pending(Some("2026-11-17T13:30:00Z"));
        assert_eq!(resent.due(hour, at("2026-11-17T14:29:59Z")), None);
        assert_eq!(
            resent.due(hour, at("2026-11-17T14:30:00Z")),
            Some(Due::GiveUp {
                resent_at: at("2026-11-17T13:30:00Z")
            })
        );
        assert_eq!(
            resent.describe(hour),
            "waiting for signatures since 2026-11-17T12:00:00Z (re-sent at 2026-11-17T13:30:00Z; gives up at 2026-11-17T14:30:00Z)"
        );
    }
}
