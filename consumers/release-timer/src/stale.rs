//! Streams that stopped moving. Nightlies that no longer pass, or a tick the releaser never
//! answered, change nothing anyone looks at, so the release timer, which wakes on a clock
//! anyway, looks for them: per stream, when did a candidate last pass its automated tests
//! (`streams.<s>.stale_after`), and has the current period's tick had its release or skip
//! (`twoweek.overdue_after`)?
//!
//! A standstill past its threshold is a stale spell. The timer announces each spell once with
//! `fortnight.stream.stale` and records it in `<stream>/.stale.json`, under the stream's lock
//! so that replicas announce it once between them; a restart finds the record and sends
//! nothing again. A spell is named by when the stream last moved (`since`), so a candidate
//! that passes ends it and the next standstill is a new spell, announced again. The message's
//! id is derived from the spell, so a crash between publishing and recording re-sends the
//! same message.
//!
//! The page and `fortnight status` read the same [`pulse`] from the store, so they say what
//! the timer sees without waiting for its message.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use gate::succession::{Role, two_week_role};
use messages::{
    Outgoing, Period, ReleasePublished, StaleKind, Stream, StreamStale, Version, derived_id,
    version_order,
};
use serde::{Deserialize, Serialize};
use settings::{Deadline, Settings, StreamSettings};
use store::{FileName, Store, Tier};

use crate::{NAME, Schedule, TimerError, load_state};

/// After a stale message could not be published (no queue bound for it yet, a broker
/// hiccup), the next attempt comes this soon.
const ANNOUNCE_RETRY: Duration = Duration::from_secs(10);

/// "3 days", "5 hours", "12 minutes", "40 seconds": a fresh release is not "0 minutes" old.
pub fn human_age(seconds: i64) -> String {
    let (amount, unit) = match seconds {
        s if s >= 2 * 86_400 => (s / 86_400, "days"),
        s if s >= 2 * 3600 => (s / 3600, "hours"),
        s if s >= 120 => (s / 60, "minutes"),
        s => (s.max(0), "seconds"),
    };
    format!("{amount} {unit}")
}

/// How a stream moves, as the store shows it at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulse {
    /// The candidate that passed its automated tests last, and when it did.
    pub newest_candidate: Option<(Version, DateTime<Utc>)>,
    /// The current release and when it was released.
    pub current_release: Option<(Version, DateTime<Utc>)>,
    /// The next tick after now (two-week streams).
    pub next_tick: Option<DateTime<Utc>>,
    /// What must move within its threshold, stale or not yet.
    pub watched: Vec<Standstill>,
}

impl Pulse {
    /// The standstills past their threshold at `now`.
    pub fn stale(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Standstill> {
        self.watched.iter().filter(move |w| w.is_stale(now))
    }
}

/// One thing that has not moved since `since`.
#[derive(Debug, Clone, PartialEq)]
pub struct Standstill {
    pub kind: StaleKind,
    /// When it last moved; names the spell.
    pub since: DateTime<Utc>,
    pub threshold: Deadline,
    /// The candidate that passed last.
    pub newest_candidate: Option<Version>,
    /// The period whose tick waits for its release or skip.
    pub period: Option<Period>,
}

impl Standstill {
    /// When it becomes stale.
    pub fn deadline(&self) -> DateTime<Utc> {
        self.since + chrono::TimeDelta::from_std(self.threshold.0).unwrap_or(chrono::TimeDelta::MAX)
    }

    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        now >= self.deadline()
    }

    /// What is wrong, in words: `no candidate passed since ... (3 days ago, threshold 2d)`.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let since = self.since.to_rfc3339_opts(SecondsFormat::Secs, true);
        let age = format!(
            "{} ago, threshold {}",
            human_age((now - self.since).num_seconds()),
            self.threshold
        );
        match (self.kind, &self.newest_candidate, &self.period) {
            (StaleKind::NoCandidatePassed, Some(newest), _) => format!(
                "no candidate passed since {since} ({age}); the newest that passed is {newest}"
            ),
            (StaleKind::NoCandidatePassed, None, _) => {
                format!("no candidate passed since {since}, when watching began ({age})")
            }
            (StaleKind::ReleaseOverdue, _, Some(period)) => format!(
                "release overdue: the tick of period {period} at {since} has had neither a release nor a skip ({age})"
            ),
            (StaleKind::ReleaseOverdue, _, None) => {
                format!("release overdue since {since} ({age})")
            }
        }
    }

    /// The announcement of this spell; its id is the same for every publication of it.
    pub fn message(&self, stream: &Stream, now: DateTime<Utc>) -> Outgoing {
        let since = self.since.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let id = derived_id(
            NAME,
            &["stale", stream.as_str(), self.kind.as_str(), &since],
        );
        let body = StreamStale {
            stream: stream.clone(),
            kind: self.kind,
            since: self.since,
            threshold_seconds: self.threshold.0.as_secs(),
            detected_at: now,
            newest_candidate: self.newest_candidate.clone(),
            period: self.period,
            reason: self.describe(now),
        };
        Outgoing::new(id, &body)
    }
}

/// What the timer keeps per stream in `<stream>/.stale.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaleRecord {
    /// When the timer began watching the stream: a stream where nothing ever passed, or a
    /// tick that fired before, is blamed only from then on.
    pub watched_since: DateTime<Utc>,
    /// The spells announced and not over, by kind: the `since` that names each.
    #[serde(default)]
    pub announced: BTreeMap<StaleKind, DateTime<Utc>>,
}

pub fn load_record(store: &Store, stream: &Stream) -> Result<Option<StaleRecord>, TimerError> {
    let path = store.stale_path(stream);
    store::read_json(&path).map_err(|source| TimerError::State { path, source })
}

fn save_record(store: &Store, stream: &Stream, record: &StaleRecord) -> Result<(), TimerError> {
    let path = store.stale_path(stream);
    store::write_json(&path, record).map_err(|source| TimerError::State { path, source })
}

/// The stream's pulse as the store shows it at `now`. Before the timer has watched the
/// stream, nothing counts as still since before `now`.
/// A stream whose two-week releases moved to its successor (`role`) has no more ticks, so
/// none is overdue.
pub fn pulse(
    store: &Store,
    stream: &Stream,
    settings: &StreamSettings,
    role: &Role,
    now: DateTime<Utc>,
) -> Result<Pulse, TimerError> {
    let watched_since = load_record(store, stream)?.map_or(now, |r| r.watched_since);
    pulse_watched_since(store, stream, settings, role, watched_since, now)
}

fn read_error(stream: &Stream) -> impl FnOnce(store::StoreError) -> TimerError {
    let stream = stream.clone();
    move |source| TimerError::Read { stream, source }
}

/// How many of the newest candidates (in version order) the staleness check looks at. A
/// nightly passes soon after it is built, so the newest pass is among the newest versions; a
/// re-test of a years-old one is no sign of the stream moving. Bounded, so that the check
/// (which `fortnight status` and every page render run too) costs the same after years of
/// nightlies as after a month.
const RECENT_CANDIDATES: usize = 32;

/// The [`RECENT_CANDIDATES`] newest of `versions`, found without sorting them all.
fn newest_versions(mut versions: Vec<Version>) -> Vec<Version> {
    if let Some(older) = versions.len().checked_sub(RECENT_CANDIDATES)
        && older > 0
    {
        versions.select_nth_unstable_by(older, version_order::compare);
        versions.drain(..older);
    }
    versions
}

fn pulse_watched_since(
    store: &Store,
    stream: &Stream,
    settings: &StreamSettings,
    role: &Role,
    watched_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Pulse, TimerError> {
    let mut newest_candidate: Option<(Version, DateTime<Utc>)> = None;
    for version in newest_versions(
        store
            .list_versions(stream, Tier::PassedAutotest)
            .map_err(read_error(stream))?,
    ) {
        let passed = store
            .promoted_at(stream, &version, Tier::PassedAutotest)
            .map_err(read_error(stream))?;
        if let Some(passed) = passed.map(DateTime::<Utc>::from)
            && newest_candidate.as_ref().is_none_or(|(_, at)| passed > *at)
        {
            newest_candidate = Some((version, passed));
        }
    }
    let current_release = match store.current_release(stream).map_err(read_error(stream))? {
        Some(version) => {
            store::read_json::<ReleasePublished>(&store.release_record_path(stream, &version))
                .map_err(read_error(stream))?
                .map(|release| (version, release.released_at))
        }
        None => None,
    };
    let mut watched = vec![Standstill {
        kind: StaleKind::NoCandidatePassed,
        since: newest_candidate
            .as_ref()
            .map_or(watched_since, |(_, at)| *at),
        threshold: settings.stale_after,
        newest_candidate: newest_candidate.as_ref().map(|(v, _)| v.clone()),
        period: None,
    }];
    let mut next_tick = None;
    let ticking = settings
        .twoweek
        .as_ref()
        .filter(|_| !matches!(role, Role::Retired { .. }));
    if let Some(twoweek) = ticking {
        let schedule = Schedule::for_stream(stream, twoweek)?;
        next_tick = schedule.next(now);
        if let Some(scheduled_for) = schedule.current(now) {
            let period = Period::starting_at(scheduled_for);
            if !store.period_record_path(stream, &period).exists() {
                // The releaser cannot answer a tick before it is sent: a late tick is
                // counted from when it fired, a tick never fired from its schedule.
                let fired = load_state(store, stream)?
                    .filter(|state| state.period == period)
                    .map_or(scheduled_for, |state| state.fired_at);
                watched.push(Standstill {
                    kind: StaleKind::ReleaseOverdue,
                    since: fired.max(watched_since),
                    threshold: twoweek.overdue_after,
                    newest_candidate: None,
                    period: Some(period),
                });
            }
        }
    }
    Ok(Pulse {
        newest_candidate,
        current_release,
        next_tick,
        watched,
    })
}

/// Announces the new stale spells of `stream` and records them, and records the end of
/// those that are over. Returns the stream's pulse.
async fn announce(
    store: &Store,
    stream: &Stream,
    settings: &StreamSettings,
    role: &Role,
    publisher: &bus::Publisher,
    now: DateTime<Utc>,
) -> Result<Pulse, TimerError> {
    let lock_name: FileName = "stale".parse().map_err(read_error(stream))?;
    let lock = store::try_lock(&store.lock_path(stream, &lock_name)).map_err(read_error(stream))?;
    let Some(_lock) = lock else {
        // Another replica is announcing this stream's spells right now.
        return pulse(store, stream, settings, role, now);
    };
    let recorded = load_record(store, stream)?;
    let mut record = recorded.clone().unwrap_or_else(|| StaleRecord {
        watched_since: now,
        announced: BTreeMap::new(),
    });
    let pulse = pulse_watched_since(store, stream, settings, role, record.watched_since, now)?;
    let mut stale_kinds = BTreeSet::new();
    for standstill in pulse.stale(now) {
        stale_kinds.insert(standstill.kind);
        if record.announced.get(&standstill.kind) == Some(&standstill.since) {
            continue;
        }
        let message = standstill.message(stream, now);
        publisher
            .publish(&message)
            .await
            .map_err(|source| TimerError::Announce {
                stream: stream.clone(),
                source: Box::new(source),
            })?;
        tracing::warn!(stream = %stream, kind = standstill.kind.as_str(), id = %message.id, reason = %standstill.describe(now), "stream is stale; announced");
        record.announced.insert(standstill.kind, standstill.since);
    }
    record.announced.retain(|kind, since| {
        let going_on = stale_kinds.contains(kind);
        if !going_on {
            tracing::info!(stream = %stream, kind = kind.as_str(), since = %since, "stale spell over");
        }
        going_on
    });
    if recorded.as_ref() != Some(&record) {
        save_record(store, stream, &record)?;
    }
    Ok(pulse)
}

/// Announces the stale spells of every configured stream, sets the per-stream gauges and
/// says when to look again: at the next deadline, and while a stream is stale, within its
/// threshold, so that the end of a spell (and the start of the next) is seen in time even
/// with thresholds of seconds. `None` when nothing needs a look before the timer's own
/// next wake-up.
pub async fn watch(
    store: &Store,
    settings: &Settings,
    publisher: &bus::Publisher,
    metrics: &bus::Metrics,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let mut pulses = Vec::new();
    let mut look_again: Option<Duration> = None;
    let mut sooner = |wait: Duration| {
        look_again = Some(look_again.map_or(wait, |w| w.min(wait)));
    };
    for (stream, stream_settings) in &settings.streams {
        let role = match two_week_role(settings, store, stream, now) {
            Ok(role) => role,
            Err(error) => {
                tracing::warn!(stream = %stream, error = %error, "cannot read the stream's switch; trying again shortly");
                sooner(ANNOUNCE_RETRY);
                continue;
            }
        };
        match announce(store, stream, stream_settings, &role, publisher, now).await {
            Ok(pulse) => pulses.push((stream, pulse)),
            Err(error) => {
                tracing::warn!(stream = %stream, error = %error, "cannot announce the stream's stale spells; trying again shortly");
                sooner(ANNOUNCE_RETRY);
            }
        }
    }
    for (_, pulse) in &pulses {
        for standstill in &pulse.watched {
            let wait = match standstill.is_stale(now) {
                true => standstill.threshold.0,
                false => (standstill.deadline() - now).to_std().unwrap_or_default(),
            };
            sooner(wait);
        }
    }
    for (name, gauge) in gauges(&pulses, now) {
        metrics.set_gauge(name, gauge);
    }
    look_again
}

/// The per-stream gauges: unix seconds of the newest passed candidate, of the current
/// release and of the next tick, and whether each watched standstill is stale. A time the
/// stream does not have (nothing released yet) has no sample.
fn gauges(
    pulses: &[(&Stream, Pulse)],
    now: DateTime<Utc>,
) -> Vec<(&'static str, bus::LabelledGauge)> {
    let stream_label = |stream: &Stream| vec![("stream", stream.to_string())];
    let times = |pick: fn(&Pulse) -> Option<DateTime<Utc>>| {
        pulses
            .iter()
            .filter_map(|(stream, pulse)| {
                pick(pulse).map(|at| (stream_label(stream), at.timestamp()))
            })
            .collect()
    };
    vec![
        (
            "stream_newest_candidate_timestamp_seconds",
            bus::LabelledGauge {
                help: "When the stream's newest candidate passed its automated tests (unix seconds)",
                samples: times(|p| p.newest_candidate.as_ref().map(|(_, at)| *at)),
            },
        ),
        (
            "stream_newest_release_timestamp_seconds",
            bus::LabelledGauge {
                help: "When the stream's current release was released (unix seconds)",
                samples: times(|p| p.current_release.as_ref().map(|(_, at)| *at)),
            },
        ),
        (
            "stream_next_tick_timestamp_seconds",
            bus::LabelledGauge {
                help: "When the stream's next two-week tick is due (unix seconds)",
                samples: times(|p| p.next_tick),
            },
        ),
        (
            "stream_stale",
            bus::LabelledGauge {
                help: "1 while the stream is stale in this way (kind), else 0",
                samples: pulses
                    .iter()
                    .flat_map(|(stream, pulse)| {
                        pulse.watched.iter().map(move |w| {
                            let mut labels = stream_label(stream);
                            labels.push(("kind", w.kind.as_str().to_owned()));
                            (labels, i64::from(w.is_stale(now)))
                        })
                    })
                    .collect(),
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    use messages::Message;

    const CONFIG: &str = r#"
[store]
root = "/nonexistent"
[streams.f43]
arches = ["x86_64"]
input_refs = { x86_64 = "fedora/43/x86_64/atomic-host" }
ostree_repo = "/nonexistent"
formats = ["qcow2"]
stale_after = "2d"
[streams.f43.twoweek]
release_refs = { x86_64 = "fedora/43/x86_64/release" }
anchor = "2026-11-10T12:00:00Z"
overdue_after = "1h"
"#;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn only_the_newest_candidates_by_version_count_for_staleness() {
        // Text order would put .9 after .10 and keep the wrong one of the two.
        let versions: Vec<Version> = (0..100)
            .rev()
            .map(|n| format!("43.20261101.{n}").parse().unwrap())
            .collect();
        let mut kept: Vec<String> = newest_versions(versions)
            .iter()
            .map(|v| v.as_str().to_owned())
            .collect();
        kept.sort_by_key(|v| v.rsplit('.').next().unwrap().parse::<u32>().unwrap());
        let expected: Vec<String> = (100 - RECENT_CANDIDATES..100)
            .map(|n| format!("43.20261101.{n}"))
            .collect();
        assert_eq!(kept, expected);
        let few: Vec<Version> = vec!["43.1".parse().unwrap(), "43.2".parse().unwrap()];
        assert_eq!(newest_versions(few.clone()), few);
    }

    fn f43() -> (Stream, StreamSettings) {
        let settings = Settings::from_toml(CONFIG).unwrap();
        let stream: Stream = "f43".parse().unwrap();
        let stream_settings = settings.streams[&stream].clone();
        (stream, stream_settings)
    }

    /// A store where `version` passed its tests (the link's time is when this ran).
    fn passed(store: &Store, stream: &Stream, version: &str) -> DateTime<Utc> {
        let version: Version = version.parse().unwrap();
        store::create_dir_all(&store.version_dir(stream, &version)).unwrap();
        store
            .promote(stream, &version, Tier::PassedAutotest)
            .unwrap();
        store
            .promoted_at(stream, &version, Tier::PassedAutotest)
            .unwrap()
            .unwrap()
            .into()
    }

    #[test]
    fn a_stream_is_stale_once_no_candidate_passed_for_its_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (stream, settings) = f43();
        let passed_at = passed(&store, &stream, "43.20261124.0");
        let pulse = pulse_watched_since(
            &store,
            &stream,
            &settings,
            &Role::Current,
            passed_at,
            passed_at,
        )
        .unwrap();
        let candidates = &pulse.watched[0];
        assert_eq!(candidates.kind, StaleKind::NoCandidatePassed);
        assert_eq!(candidates.since, passed_at);
        assert_eq!(
            candidates.deadline(),
            passed_at + chrono::TimeDelta::days(2)
        );
        assert!(!candidates.is_stale(passed_at + chrono::TimeDelta::hours(47)));
        let later = passed_at + chrono::TimeDelta::days(3);
        assert!(candidates.is_stale(later));
        let said = candidates.describe(later);
        assert!(
            said.starts_with("no candidate passed since ")
                && said.contains(
                    "(3 days ago, threshold 2d); the newest that passed is 43.20261124.0"
                ),
            "{said}"
        );
        let message = candidates.message(&stream, later);
        assert_eq!(message.topic, StreamStale::TOPIC);
        assert_eq!(
            message.id,
            candidates
                .message(&stream, later + chrono::TimeDelta::hours(1))
                .id,
            "one spell, one message id"
        );
    }

    #[test]
    fn a_stream_where_nothing_passed_is_counted_from_when_watching_began() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (stream, settings) = f43();
        let began = at("2026-11-20T00:00:00Z");
        let pulse =
            pulse_watched_since(&store, &stream, &settings, &Role::Current, began, began).unwrap();
        assert_eq!(pulse.newest_candidate, None);
        assert_eq!(pulse.watched[0].since, began);
        assert!(!pulse.watched[0].is_stale(began + chrono::TimeDelta::days(1)));
        assert!(pulse.watched[0].is_stale(began + chrono::TimeDelta::days(2)));
        let said = pulse.watched[0].describe(began + chrono::TimeDelta::days(2));
        assert!(
            said.ends_with("when watching began (2 days ago, threshold 2d)"),
            "{said}"
        );
    }

    #[test]
    fn a_tick_without_a_decision_is_overdue_after_its_grace_and_a_decision_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (stream, settings) = f43();
        let began = at("2026-11-01T00:00:00Z");
        let tick = at("2026-11-24T12:00:00Z");
        let now = tick + chrono::TimeDelta::minutes(90);
        let pulse =
            pulse_watched_since(&store, &stream, &settings, &Role::Current, began, now).unwrap();
        assert_eq!(pulse.next_tick, Some(at("2026-12-08T12:00:00Z")));
        let overdue: Vec<_> = pulse.stale(now).map(|s| s.kind).collect();
        assert!(overdue.contains(&StaleKind::ReleaseOverdue), "{pulse:?}");
        let standstill = pulse
            .watched
            .iter()
            .find(|w| w.kind == StaleKind::ReleaseOverdue)
            .unwrap();
        assert_eq!(
            standstill.since, tick,
            "never fired: counted from its schedule"
        );
        assert!(
            standstill.describe(now).contains(
                "the tick of period 2026-11-24T12:00:00Z at 2026-11-24T12:00:00Z has had neither a release nor a skip (90 minutes ago, threshold 1h)"
            ),
            "{}",
            standstill.describe(now)
        );

        let period = Period::starting_at(tick);
        store::write_json(&store.period_record_path(&stream, &period), &"skipped").unwrap();
        let pulse =
            pulse_watched_since(&store, &stream, &settings, &Role::Current, began, now).unwrap();
        assert!(
            pulse
                .watched
                .iter()
                .all(|w| w.kind != StaleKind::ReleaseOverdue),
            "{pulse:?}"
        );
    }

    #[test]
    fn a_tick_before_watching_began_is_counted_from_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (stream, settings) = f43();
        let began = at("2026-11-25T00:00:00Z");
        let pulse =
            pulse_watched_since(&store, &stream, &settings, &Role::Current, began, began).unwrap();
        let overdue = pulse
            .watched
            .iter()
            .find(|w| w.kind == StaleKind::ReleaseOverdue)
            .unwrap();
        assert_eq!(overdue.since, began);
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(human_age(20 * 86_400 + 5), "20 days");
        assert_eq!(human_age(86_400), "24 hours");
        assert_eq!(human_age(600), "10 minutes");
        assert_eq!(human_age(119), "119 seconds");
        assert_eq!(human_age(0), "0 seconds");
    }
}
