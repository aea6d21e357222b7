//! Which candidate a tick releases, and why every other one is not releasable. The same code
//! answers the releaser, `fortnight status`, `fortnight explain` and the demo.
//!
//! A candidate not newer than the current release can never be released, so its gates are
//! not read: candidates are listed by name (a directory listing), put in version order, and
//! only the newer ones' reports and votes are opened. A decision costs the same after years
//! of nightlies as after a week.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use gate::{AutotestState, Tally};
use messages::{CandidateVerdict, ReleasePublished, Stream, Version};
use settings::StreamSettings;
use store::{Store, StoreError, Tier};

use crate::external::ExternalGate;
use crate::overrides::{self, Active, AuditEntry};
use messages::version_order;

/// One candidate and what the store says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateView {
    pub version: Version,
    pub autotest: AutotestState,
    /// The results of the stream's `external_gating` tests.
    pub external: ExternalGate,
    pub tally: Tally,
}

/// A stream as the releaser sees it at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamView {
    pub stream: Stream,
    /// What `releases/latest` points at, with its `release.json` when readable.
    pub current: Option<(Version, Option<ReleasePublished>)>,
    /// The candidates whose gates were read, newest first: those newer than the current
    /// release (every one when nothing was released), or the one [`StreamView::read_for`]
    /// names.
    pub candidates: Vec<CandidateView>,
    pub overrides: Active,
    pub now: DateTime<Utc>,
}

impl CandidateView {
    /// Reads a candidate's gates: its arches' test reports, its external results, its votes.
    pub fn read(
        store: &Store,
        stream: &Stream,
        settings: &StreamSettings,
        version: Version,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            autotest: AutotestState::read(store, stream, settings, &version)?,
            external: ExternalGate::read(store, stream, settings, &version)?,
            tally: Tally::count(store.read_votes(stream, &version)?, &settings.karma),
            version,
        })
    }
}

/// The versions in `all/` that `keep` accepts, newest first. Listing reads directory names
/// only, and only what is kept is put in version order: the history behind the current
/// release costs one comparison per candidate.
fn versions_newest_first(
    store: &Store,
    stream: &Stream,
    keep: impl Fn(&Version) -> bool,
) -> Result<Vec<Version>, StoreError> {
    let mut versions: Vec<Version> = store
        .list_versions(stream, Tier::All)?
        .into_iter()
        .filter(|version| keep(version))
        .collect();
    versions.sort_by(|a, b| version_order::compare(b, a));
    Ok(versions)
}

fn is_newer_than(version: &Version, current: Option<&Version>) -> bool {
    current.is_none_or(|current| version_order::compare(version, current) == Ordering::Greater)
}

impl StreamView {
    /// The stream with the gates of every candidate newer than the current release. An older
    /// candidate can never be released, so its reports and votes are not read: a tick costs
    /// the same after years of nightlies as after a week.
    pub fn read(
        store: &Store,
        stream: &Stream,
        settings: &StreamSettings,
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let current = read_current(store, stream)?;
        Self::read_against(store, stream, settings, current, now)
    }

    /// [`StreamView::read`] as if `current` were the current release (the demo replays the
    /// tick that released against the release before it).
    pub fn read_against(
        store: &Store,
        stream: &Stream,
        settings: &StreamSettings,
        current: Option<(Version, Option<ReleasePublished>)>,
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let floor = current.as_ref().map(|(version, _)| version);
        let newer = versions_newest_first(store, stream, |version| is_newer_than(version, floor))?;
        Self::with_candidates(store, stream, settings, current, newer, now)
    }

    /// The stream with the gates of `version` alone when it is not newer than the current
    /// release, else of it and every candidate newer than it: enough for [`decide`] to say
    /// whether the tick releases it or a newer one, and nothing older. `None` when the store
    /// has no such candidate.
    pub fn read_for(
        store: &Store,
        stream: &Stream,
        settings: &StreamSettings,
        version: &Version,
        now: DateTime<Utc>,
    ) -> Result<Option<Self>, StoreError> {
        if !store.in_tier(stream, version, Tier::All) {
            return Ok(None);
        }
        let current = read_current(store, stream)?;
        let floor = current.as_ref().map(|(current, _)| current);
        let read = if is_newer_than(version, floor) {
            versions_newest_first(store, stream, |other| {
                version_order::compare(other, version) != Ordering::Less
            })?
        } else {
            vec![version.clone()]
        };
        Self::with_candidates(store, stream, settings, current, read, now).map(Some)
    }

    /// `versions` (newest first) with their gates read.
    fn with_candidates(
        store: &Store,
        stream: &Stream,
        settings: &StreamSettings,
        current: Option<(Version, Option<ReleasePublished>)>,
        versions: Vec<Version>,
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let candidates = versions
            .into_iter()
            .map(|version| CandidateView::read(store, stream, settings, version))
            .collect::<Result<_, _>>()?;
        let overrides = Active::at(&overrides::read_log(store, stream)?, now);
        Ok(Self {
            stream: stream.clone(),
            current,
            candidates,
            overrides,
            now,
        })
    }

    pub fn current_version(&self) -> Option<&Version> {
        self.current.as_ref().map(|(v, _)| v)
    }

    /// Seconds since the current release, when its record says when it happened.
    pub fn current_age_seconds(&self) -> Option<i64> {
        let (_, record) = self.current.as_ref()?;
        record
            .as_ref()
            .map(|r| (self.now - r.released_at).num_seconds())
    }

    pub fn candidate(&self, version: &Version) -> Option<&CandidateView> {
        self.candidates.iter().find(|c| &c.version == version)
    }

    /// Candidates newer than the current release (all of them when nothing was released).
    pub fn newer_candidates(&self) -> impl Iterator<Item = &CandidateView> {
        self.candidates.iter().filter(|c| self.is_newer(&c.version))
    }

    fn is_newer(&self, version: &Version) -> bool {
        is_newer_than(version, self.current_version())
    }
}

/// What `releases/latest` points at, with its `release.json` when there is one.
fn read_current(
    store: &Store,
    stream: &Stream,
) -> Result<Option<(Version, Option<ReleasePublished>)>, StoreError> {
    match store.current_release(stream)? {
        Some(version) => {
            let record = store::read_json(&store.release_record_path(stream, &version))?;
            Ok(Some((version, record)))
        }
        None => Ok(None),
    }
}

/// The state of the human gate of one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HumanGate {
    Passed,
    /// Karma is advisory for the stream: shown, never blocking.
    Advisory(Option<String>),
    Failed(String),
}

/// Every gate of one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub version: Version,
    /// One reason per arch that did not pass; empty when every arch passed.
    pub autotest: Vec<String>,
    /// One reason per external gating test and arch that did not pass.
    pub external: Vec<String>,
    pub human: HumanGate,
    pub blocked: Option<AuditEntry>,
    /// Set when the candidate is not newer than the current release.
    pub not_newer_than: Option<Version>,
}

impl Verdict {
    pub fn of(
        view: &StreamView,
        candidate: &CandidateView,
        settings: &StreamSettings,
        karma_required: bool,
    ) -> Self {
        let reason = candidate.tally.gate_reason(&settings.karma);
        let human = match (reason, karma_required) {
            (None, _) => HumanGate::Passed,
            (Some(reason), true) => HumanGate::Failed(reason),
            (Some(reason), false) => HumanGate::Advisory(Some(reason)),
        };
        Self {
            version: candidate.version.clone(),
            autotest: candidate.autotest.reasons(),
            external: candidate.external.reasons(),
            human,
            blocked: view.overrides.blocks.get(&candidate.version).cloned(),
            not_newer_than: (!view.is_newer(&candidate.version))
                .then(|| view.current_version().cloned())
                .flatten(),
        }
    }

    /// Why the candidate cannot be released; empty when it can.
    pub fn reasons(&self) -> Vec<String> {
        let mut reasons: Vec<String> = self
            .autotest
            .iter()
            .map(|r| format!("automated tests: {r}"))
            .chain(self.external.iter().map(|r| format!("external tests: {r}")))
            .collect();
        if let HumanGate::Failed(reason) = &self.human {
            reasons.push(format!("human testing: {reason}"));
        }
        if let Some(block) = &self.blocked {
            reasons.push(format!("blocked {}", block.describe()));
        }
        if let Some(current) = &self.not_newer_than {
            reasons.push(format!("not newer than the current release {current}"));
        }
        reasons
    }

    pub fn is_eligible(&self) -> bool {
        self.reasons().is_empty()
    }

    pub fn as_message(&self) -> CandidateVerdict {
        CandidateVerdict {
            version: self.version.clone(),
            reasons: self.reasons(),
        }
    }
}

/// What a tick does for a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Release this candidate, the newest eligible one.
    Release(Version),
    /// The stream is on hold; nothing is released until unhold or expiry.
    Held(AuditEntry),
    /// Nothing newer than the current release is eligible.
    Nothing,
}

/// The decision for a stream, with the verdict of every candidate newer than the current
/// release (newest first).
pub fn decide(
    view: &StreamView,
    settings: &StreamSettings,
    karma_required: bool,
) -> (Decision, Vec<Verdict>) {
    let verdicts: Vec<Verdict> = view
        .newer_candidates()
        .map(|c| Verdict::of(view, c, settings, karma_required))
        .collect();
    let decision = if let Some(hold) = &view.overrides.hold {
        Decision::Held(hold.clone())
    } else if let Some(chosen) = verdicts.iter().find(|v| v.is_eligible()) {
        Decision::Release(chosen.version.clone())
    } else {
        Decision::Nothing
    };
    (decision, verdicts)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeDelta;
    use gate::ArchResult;
    use messages::{Arch, TestReport, Tree, Vote};
    use settings::Settings;

    use super::*;
    use crate::overrides::Action;

    const CONFIG: &str = r#"
        [store]
        root = "/srv/fortnight"
        [streams.f43]
        arches = ["x86_64", "aarch64"]
        input_refs = { x86_64 = "fedora/43/x86_64/atomic-host", aarch64 = "fedora/43/aarch64/atomic-host" }
        ostree_repo = "/srv/repo"
        formats = ["qcow2"]
    "#;

    fn now() -> DateTime<Utc> {
        "2026-11-27T00:00:00Z".parse().unwrap()
    }

    fn f43() -> StreamSettings {
        let mut settings = Settings::from_toml(CONFIG).unwrap();
        settings.streams.remove(&"f43".parse().unwrap()).unwrap()
    }

    /// f43 at [`now`] with no overrides.
    fn view(current: Option<&str>, candidates: Vec<CandidateView>) -> StreamView {
        StreamView {
            stream: "f43".parse().unwrap(),
            current: current.map(|v| (v.parse().unwrap(), None)),
            candidates,
            overrides: Active::default(),
            now: now(),
        }
    }

    fn report(version: &str, arch: &str, failed: &[&str]) -> TestReport {
        TestReport {
            stream: "f43".parse().unwrap(),
            version: version.parse().unwrap(),
            arch: arch.parse().unwrap(),
            tree: Tree {
                ostree_ref: format!("fedora/43/{arch}/atomic-host").parse().unwrap(),
                commit: "a".repeat(64).parse().unwrap(),
                repo: "/srv/repo".into(),
            },
            images: Vec::new(),
            tests: Vec::new(),
            failed: failed.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn candidate(
        version: &str,
        aarch64_failed: bool,
        karma: &[i8],
        settings: &StreamSettings,
    ) -> CandidateView {
        let mut arches = BTreeMap::new();
        arches.insert(
            "x86_64".parse::<Arch>().unwrap(),
            ArchResult::Passed(Box::new(report(version, "x86_64", &[]))),
        );
        let aarch64 = if aarch64_failed {
            ArchResult::Failed(Box::new(report(version, "aarch64", &["boot"])))
        } else {
            ArchResult::Passed(Box::new(report(version, "aarch64", &[])))
        };
        arches.insert("aarch64".parse().unwrap(), aarch64);
        let votes = karma.iter().enumerate().map(|(i, k)| Vote {
            user: format!("tester{i}").parse().unwrap(),
            karma: *k,
            comment: None,
            at: now(),
        });
        CandidateView {
            version: version.parse().unwrap(),
            autotest: AutotestState { arches },
            external: ExternalGate::default(),
            tally: Tally::count(votes, &settings.karma),
        }
    }

    fn block(version: &str) -> AuditEntry {
        AuditEntry {
            id: "b".into(),
            action: Action::Block,
            stream: "f43".parse().unwrap(),
            version: Some(version.parse().unwrap()),
            operator: "alice".parse().unwrap(),
            reason: "kernel regression".into(),
            expires: None,
            at: now() - TimeDelta::hours(1),
            outcome: None,
        }
    }

    #[test]
    fn newest_candidate_passing_every_gate_is_released_and_others_say_why() {
        let s = &f43();
        let mut view = view(
            Some("43.20261101.0"),
            vec![
                candidate("43.20261126.0", false, &[-1, -1, -1], s),
                candidate("43.20261125.0", false, &[1, 1, 1], s),
                candidate("43.20261124.0", true, &[1, 1, 1], s),
                candidate("43.20261123.0", false, &[1, 1, 1], s),
                candidate("43.20261122.0", false, &[1, 1, 1], s),
                candidate("43.20261031.0", false, &[1, 1, 1], s),
            ],
        );
        view.overrides
            .blocks
            .insert("43.20261125.0".parse().unwrap(), block("43.20261125.0"));
        let (decision, verdicts) = decide(&view, s, true);
        assert_eq!(
            decision,
            Decision::Release("43.20261123.0".parse().unwrap())
        );
        let reasons: Vec<_> = verdicts.iter().map(|v| v.reasons().join("; ")).collect();
        assert!(reasons[0].contains("unstable threshold"), "{reasons:?}");
        assert!(
            reasons[1].contains("blocked by alice: kernel regression"),
            "{reasons:?}"
        );
        assert!(
            reasons[2].contains("aarch64: failed tests: boot"),
            "{reasons:?}"
        );
        assert_eq!(
            verdicts.len(),
            5,
            "the candidate older than the current release is not considered"
        );
        let old = Verdict::of(
            &view,
            view.candidate(&"43.20261031.0".parse().unwrap()).unwrap(),
            s,
            true,
        );
        assert!(old.reasons()[0].contains("not newer than the current release 43.20261101.0"));
    }

    /// A store holding `released` as the current release, then for each `(version, readable)`
    /// a candidate that passed on both arches with three +1 votes, or whose x86_64 report
    /// is not JSON.
    fn store_with(released: &str, candidates: &[(&str, bool)]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stream: Stream = "f43".parse().unwrap();
        for (version, readable) in candidates {
            let v: Version = version.parse().unwrap();
            for arch in ["x86_64", "aarch64"] {
                let path = store.tests_json_path(&stream, &v, &arch.parse().unwrap());
                if *readable || arch == "aarch64" {
                    store::write_json(&path, &report(version, arch, &[])).unwrap();
                } else {
                    store::write_atomic(&path, b"{ damaged").unwrap();
                }
            }
            for user in ["ann", "bob", "cy"] {
                let vote = Vote {
                    user: user.parse().unwrap(),
                    karma: 1,
                    comment: None,
                    at: now(),
                };
                store.write_vote(&stream, &v, &vote).unwrap();
            }
        }
        store
            .set_latest_release(&stream, &released.parse().unwrap())
            .unwrap();
        (dir, store)
    }

    #[test]
    fn the_decision_reads_no_candidate_older_than_the_current_release() {
        let s = &f43();
        let stream: Stream = "f43".parse().unwrap();
        // The damaged one is older than the release by version order, newer by text order.
        let (_dir, store) = store_with(
            "43.20261101.10",
            &[("43.20261101.9", false), ("43.20261102.0", true)],
        );
        let view = StreamView::read(&store, &stream, s, now()).unwrap();
        assert_eq!(
            decide(&view, s, true).0,
            Decision::Release("43.20261102.0".parse().unwrap())
        );
        let read: Vec<_> = view.candidates.iter().map(|c| c.version.as_str()).collect();
        assert_eq!(read, ["43.20261102.0"]);

        let old =
            StreamView::read_for(&store, &stream, s, &"43.20261101.9".parse().unwrap(), now());
        assert!(
            matches!(old, Err(StoreError::Json { .. })),
            "explain of the damaged candidate itself reads it: {old:?}"
        );
        let missing = StreamView::read_for(&store, &stream, s, &"43.1".parse().unwrap(), now());
        assert_eq!(missing.unwrap(), None);
    }

    #[test]
    fn explaining_a_candidate_reads_it_and_only_the_newer_ones_that_would_go_first() {
        let s = &f43();
        let stream: Stream = "f43".parse().unwrap();
        let (_dir, store) = store_with(
            "43.20261101.0",
            &[
                ("43.20261031.0", false),
                ("43.20261101.0", true),
                ("43.20261102.0", false),
                ("43.20261103.0", true),
                ("43.20261104.0", true),
            ],
        );
        let read = |version: &str| {
            let view = StreamView::read_for(&store, &stream, s, &version.parse().unwrap(), now())
                .unwrap()
                .unwrap();
            let decision = decide(&view, s, true).0;
            let read: Vec<String> = view
                .candidates
                .iter()
                .map(|c| c.version.to_string())
                .collect();
            (read, decision)
        };
        let newest = Decision::Release("43.20261104.0".parse().unwrap());
        assert_eq!(
            read("43.20261103.0"),
            (
                vec!["43.20261104.0".into(), "43.20261103.0".into()],
                newest.clone()
            ),
            "an eligible candidate is weighed against the newer ones"
        );
        assert_eq!(
            read("43.20261104.0"),
            (vec!["43.20261104.0".into()], newest)
        );
        assert_eq!(
            read("43.20261101.0").0,
            ["43.20261101.0"],
            "the release itself"
        );
    }

    #[test]
    fn advisory_karma_does_not_block_and_hold_stops_everything() {
        let s = &f43();
        let mut view = view(None, vec![candidate("43.1", false, &[], s)]);
        assert_eq!(
            decide(&view, s, false).0,
            Decision::Release("43.1".parse().unwrap())
        );
        assert_eq!(decide(&view, s, true).0, Decision::Nothing);
        let mut hold = block("43.1");
        hold.action = Action::Hold;
        view.overrides.hold = Some(hold.clone());
        assert_eq!(decide(&view, s, false).0, Decision::Held(hold));
    }
}
