//! Which candidate a tick releases, and why every other one is not releasable. The same code
//! answers the releaser, `fortnight status`, `fortnight explain` and the demo.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use gate::{AutotestState, Tally};
use messages::{CandidateVerdict, ReleasePublished, Stream, Version};
use settings::StreamSettings;
use store::{Store, StoreError, Tier};

use crate::external::ExternalGate;
use crate::overrides::{self, Active, AuditEntry};
use crate::version_order;

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
    /// Every candidate in `all/`, newest first.
    pub candidates: Vec<CandidateView>,
    pub overrides: Active,
    pub now: DateTime<Utc>,
}

impl StreamView {
    pub fn read(
        store: &Store,
        stream: &Stream,
        settings: &StreamSettings,
        now: DateTime<Utc>,
    ) -> Result<Self, StoreError> {
        let current = match store.current_release(stream)? {
            Some(version) => {
                let record = store::read_json(&store.release_record_path(stream, &version))?;
                Some((version, record))
            }
            None => None,
        };
        let mut candidates = Vec::new();
        for version in store.list_versions(stream, Tier::All)? {
            let autotest = AutotestState::read(store, stream, settings, &version)?;
            let external = ExternalGate::read(store, stream, settings, &version)?;
            let tally = Tally::count(store.read_votes(stream, &version)?, &settings.karma);
            candidates.push(CandidateView {
                version,
                autotest,
                external,
                tally,
            });
        }
        candidates.sort_by(|a, b| version_order::compare(&b.version, &a.version));
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
        self.current_version()
            .is_none_or(|current| version_order::compare(version, current) == Ordering::Greater)
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
