//! Message bodies, one type per topic. Fortnight's own bodies carry everything the next step
//! needs (stream, arch, version, tree ref and commit, image paths and checksums), so no
//! consumer has to ask another one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::envelope::{Message, Severity};
use crate::ids::{Arch, Commit, Format, Prerelease, Ref, Sha256, Stream, UserName, Version};
use crate::period::Period;
use uuid::Uuid;

macro_rules! topic {
    ($type:ty, $topic:literal) => {
        impl Message for $type {
            const TOPIC: &'static str = $topic;
        }
    };
    ($type:ty, $topic:literal, severity = $severity:expr) => {
        impl Message for $type {
            const TOPIC: &'static str = $topic;
            fn severity(&self) -> Severity {
                $severity
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Inputs Fedora sends. Fields stay raw strings: a message about a ref no stream uses is ignored,
// not refused, so validation happens only once a stream claims the message.

/// `pungi.compose.ostree`: a compose committed an OSTree tree (current and 2016 field sets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PungiComposeOstree {
    pub arch: String,
    #[serde(rename = "ref")]
    pub ostree_ref: String,
    /// Null when the compose committed nothing new; such messages are ignored.
    pub commitid: Option<String>,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub compose_id: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub repo_path: Option<String>,
    #[serde(default)]
    pub local_repo_path: Option<String>,
}
topic!(PungiComposeOstree, "pungi.compose.ostree");

/// `pungi.compose.status.change`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PungiComposeStatusChange {
    pub compose_id: String,
    pub location: String,
    pub status: String,
}
topic!(PungiComposeStatusChange, "pungi.compose.status.change");

impl PungiComposeStatusChange {
    /// FINISHED and FINISHED_INCOMPLETE count as done.
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "FINISHED" | "FINISHED_INCOMPLETE")
    }
}

// ---------------------------------------------------------------------------------------------
// Trees and images.

/// The OSTree tree a candidate was built from, carried through every message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Tree {
    #[serde(rename = "ref")]
    pub ostree_ref: Ref,
    pub commit: Commit,
    /// Filesystem path of the OSTree repository holding the commit.
    pub repo: String,
}

/// `fortnight.tree.composed`: a tree is ready to be turned into images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TreeComposed {
    pub arch: Arch,
    pub tree: Tree,
    /// The tree's version; read from the commit's `version` metadata when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_id: Option<String>,
    /// Build again even when this (ref, commit) was built before (operator retry).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}
topic!(TreeComposed, "fortnight.tree.composed");

/// One image file in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Image {
    pub format: Format,
    /// Path relative to the artifact tree's root.
    pub path: String,
    pub size: u64,
    pub sha256: Sha256,
}

/// `fortnight.image.built`: every format of one stream/version/arch is in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageBuilt {
    pub stream: Stream,
    pub version: Version,
    pub arch: Arch,
    pub tree: Tree,
    pub images: Vec<Image>,
    /// Build log path relative to the artifact tree's root.
    pub build_log: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_id: Option<String>,
}
topic!(ImageBuilt, "fortnight.image.built");

/// `fortnight.image.build.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImageBuildFailed {
    pub stream: Stream,
    /// Absent when the failure happened before the version could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    pub arch: Arch,
    pub tree: Tree,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_log: Option<String>,
}
topic!(
    ImageBuildFailed,
    "fortnight.image.build.failed",
    severity = Severity::Error
);

/// How a test's result counts, as tunir had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TestKind {
    Gating,
    NonGating,
    ExpectedToFail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TestStatus {
    Passed,
    Failed,
    TimedOut,
    Skipped,
}

/// One test's outcome, summarised for messages; the full output stays in the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestSummary {
    pub name: String,
    pub kind: TestKind,
    pub format: Format,
    pub status: TestStatus,
    pub attempts: u32,
    pub duration_ms: u64,
    /// Log path relative to the artifact tree's root.
    pub log: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The result of running a stream's suite over one stream/version/arch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TestReport {
    pub stream: Stream,
    pub version: Version,
    pub arch: Arch,
    pub tree: Tree,
    pub images: Vec<Image>,
    pub tests: Vec<TestSummary>,
    /// Names of the gating tests that failed (empty when passed).
    #[serde(default)]
    pub failed: Vec<String>,
}

/// `fortnight.image.tests.passed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ImageTestsPassed(pub TestReport);
topic!(ImageTestsPassed, "fortnight.image.tests.passed");

/// `fortnight.image.tests.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct ImageTestsFailed(pub TestReport);
topic!(
    ImageTestsFailed,
    "fortnight.image.tests.failed",
    severity = Severity::Warning
);

// ---------------------------------------------------------------------------------------------
// Human testing.

/// `fortnight.candidate.testing.requested`: every arch passed; humans may now vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CandidateTestingRequested {
    pub stream: Stream,
    pub version: Version,
    /// The tree of each configured arch.
    pub arches: BTreeMap<Arch, Tree>,
}
topic!(
    CandidateTestingRequested,
    "fortnight.candidate.testing.requested"
);

/// `fortnight.karma.submitted`: one tester's vote. The voter is the AMQP `user_id`; `user`
/// is what the tester claims and must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KarmaSubmitted {
    pub stream: Stream,
    pub version: Version,
    pub user: UserName,
    #[schemars(range(min = -1, max = 1))]
    pub karma: i8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
impl Message for KarmaSubmitted {
    const TOPIC: &'static str = "fortnight.karma.submitted";
    fn users(&self) -> Vec<&UserName> {
        vec![&self.user]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum KarmaStatus {
    Stable,
    Unstable,
}

/// A tester's latest vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Vote {
    pub user: UserName,
    pub karma: i8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: DateTime<Utc>,
}

/// `fortnight.karma.threshold.reached`: once per candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KarmaThresholdReached {
    pub stream: Stream,
    pub version: Version,
    pub status: KarmaStatus,
    pub karma: i32,
    pub votes: Vec<Vote>,
}
impl Message for KarmaThresholdReached {
    const TOPIC: &'static str = "fortnight.karma.threshold.reached";
    fn users(&self) -> Vec<&UserName> {
        self.votes.iter().map(|vote| &vote.user).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The two-week timer, overrides and releases.

/// `fortnight.twoweek.timer.fired`: one per stream and period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TwoweekTimerFired {
    pub stream: Stream,
    /// The period's scheduled start; the dedup key for releases.
    pub period: Period,
    pub scheduled_for: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    /// Set when an operator fired it by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<UserName>,
}
impl Message for TwoweekTimerFired {
    const TOPIC: &'static str = "fortnight.twoweek.timer.fired";
    fn users(&self) -> Vec<&UserName> {
        self.operator.iter().collect()
    }
}

/// What an operator asks of a stream or candidate. The operator is the AMQP `user_id`;
/// `operator` is what they claim and must match it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Override {
    pub stream: Stream,
    /// The candidate concerned (block, unblock, release); absent for hold and unhold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    pub reason: String,
    pub operator: UserName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
}

macro_rules! override_topic {
    ($(#[$meta:meta])* $name:ident, $topic:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub Override);

        impl Message for $name {
            const TOPIC: &'static str = $topic;
            fn severity(&self) -> Severity {
                Severity::Warning
            }
            fn users(&self) -> Vec<&UserName> {
                vec![&self.0.operator]
            }
        }
    };
}
override_topic!(
    /// Keep a candidate from being released.
    OverrideBlock,
    "fortnight.override.block"
);
override_topic!(OverrideUnblock, "fortnight.override.unblock");
override_topic!(
    /// Release a named candidate now, even when its gates failed (recorded as forced).
    OverrideRelease,
    "fortnight.override.release"
);
override_topic!(
    /// Stop a stream's releases until unhold.
    OverrideHold,
    "fortnight.override.hold"
);
override_topic!(OverrideUnhold, "fortnight.override.unhold");
override_topic!(
    /// End a stream's life now: its release refs get their end-of-life commit, which moves
    /// its clients to the stream that succeeds it. `version` and `expires` are not used.
    OverrideEndOfLife,
    "fortnight.override.end-of-life"
);

/// `fortnight.override.switch`: an operator moves the two-week releases to `stream` from the
/// stream it `succeeds`, before (or without) its `switch_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OverrideSwitch {
    /// The stream that takes over (the one whose `succeeds` names the old one).
    pub stream: Stream,
    pub reason: String,
    pub operator: UserName,
    /// Its first two-week release comes at once (its current period's tick), not at its
    /// next tick.
    #[serde(default)]
    pub release_now: bool,
}
impl Message for OverrideSwitch {
    const TOPIC: &'static str = "fortnight.override.switch";
    fn severity(&self) -> Severity {
        Severity::Warning
    }
    fn users(&self) -> Vec<&UserName> {
        vec![&self.operator]
    }
}

/// What made a switch happen; the same shape as [`EndOfLifeCause`], so both announcements
/// say `how` alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "how", rename_all = "kebab-case")]
pub enum SwitchCause {
    /// The new stream's `switch_at` came.
    Date,
    /// An operator's `fortnight.override.switch`.
    Operator { operator: UserName, reason: String },
}

/// `fortnight.stream.switched`: two-week releases moved from one stream to its successor. Sent
/// once per switch (again, under the same id, when the switch is asked for again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamSwitched {
    /// The stream that gets no more two-week releases (its nightlies go on).
    pub from: Stream,
    /// The stream whose two-week releases are now the current ones, without a label.
    pub to: Stream,
    pub at: DateTime<Utc>,
    /// `how` (`date` or `operator`), with the operator's `operator` and `reason`.
    #[serde(flatten)]
    pub cause: SwitchCause,
    /// When `to`'s first two-week release is due: its next tick, or now with `release_now`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_tick: Option<DateTime<Utc>>,
}
impl Message for StreamSwitched {
    const TOPIC: &'static str = "fortnight.stream.switched";
    fn users(&self) -> Vec<&UserName> {
        match &self.cause {
            SwitchCause::Operator { operator, .. } => vec![operator],
            SwitchCause::Date => Vec::new(),
        }
    }
}

/// One arch of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReleasedArch {
    pub tree: Tree,
    /// The stream's release ref, now pointing at `tree.commit`.
    pub release_ref: Ref,
    pub images: Vec<Image>,
}

/// `fortnight.release.published`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReleasePublished {
    pub stream: Stream,
    pub version: Version,
    pub arches: BTreeMap<Arch, ReleasedArch>,
    /// The timer period this release belongs to (absent for a forced release).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// Released by an operator override, past failed gates.
    pub forced: bool,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Version>,
    pub released_at: DateTime<Utc>,
    /// What changed since `previous`, counted; absent for a stream's first release and for
    /// releases made before Fortnight computed release notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<ReleaseChanges>,
    /// The label of a release made while its stream was a pre-release (`beta`), before it
    /// became the current two-week stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prerelease: Option<Prerelease>,
}
topic!(ReleasePublished, "fortnight.release.published");

/// What changed between two releases, counted per arch. The lists themselves (every package
/// with its old and new version) are in the release's `release.json`, which `url` names: a
/// message stays small however many packages changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReleaseChanges {
    /// The release compared against (the stream's previous one).
    pub against: Version,
    /// Where the full release notes are (`release.json`, under `site.base_url`).
    pub url: String,
    pub arches: BTreeMap<Arch, ChangeCounts>,
}

/// One arch's changes between two trees, counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeCounts {
    /// Absent when either tree has no RPM database to compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<PackageCounts>,
    /// Commits from the older tree to the newer one; absent when the older one is not an
    /// ancestor of the newer one (a forced release moved the ref sideways).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commits: Option<u64>,
    pub files: FileCounts,
}

/// Packages added, removed, upgraded and downgraded between two trees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PackageCounts {
    pub added: u64,
    pub removed: u64,
    pub upgraded: u64,
    pub downgraded: u64,
}

/// Files (and directories) added, modified and removed between two trees (`ostree diff`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileCounts {
    pub added: u64,
    pub modified: u64,
    pub removed: u64,
}

/// Why one candidate was not released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CandidateVerdict {
    pub version: Version,
    pub reasons: Vec<String>,
}

/// `fortnight.release.skipped`: nothing was eligible on a tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReleaseSkipped {
    pub stream: Stream,
    pub period: Period,
    pub candidates: Vec<CandidateVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_release: Option<Version>,
    /// Age of the current release in seconds at the time of the tick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_release_age_seconds: Option<i64>,
    /// The stream's `when_nothing_passed` policy that now applies.
    pub policy: String,
}
topic!(
    ReleaseSkipped,
    "fortnight.release.skipped",
    severity = Severity::Warning
);

/// What kind of standstill a stale stream is in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum StaleKind {
    /// No candidate passed its automated tests for the stream's `stale_after`.
    NoCandidatePassed,
    /// A two-week tick went without a release or a skip for the stream's
    /// `twoweek.overdue_after`.
    ReleaseOverdue,
}

impl StaleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StaleKind::NoCandidatePassed => "no-candidate-passed",
            StaleKind::ReleaseOverdue => "release-overdue",
        }
    }
}

/// `fortnight.stream.stale`: a stream stopped moving. Sent once per stale spell, which ends
/// when a candidate passes (or the overdue tick gets its release or skip).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamStale {
    pub stream: Stream,
    pub kind: StaleKind,
    /// When the stream last moved: its newest candidate passed, or the overdue tick fired
    /// (never before the release timer started watching the stream).
    pub since: DateTime<Utc>,
    /// The configured threshold that `since` is now older than, in seconds.
    pub threshold_seconds: u64,
    pub detected_at: DateTime<Utc>,
    /// The candidate that passed last, if any ever did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_candidate: Option<Version>,
    /// The period whose tick is overdue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// What is wrong, in words, as `fortnight status` and the page say it.
    pub reason: String,
}
topic!(
    StreamStale,
    "fortnight.stream.stale",
    severity = Severity::Warning
);

/// One arch of a stream that reached its end of life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndOfLifeArch {
    /// The stream's release ref, now pointing at `commit`.
    pub release_ref: Ref,
    /// The end-of-life commit: the last release's tree and metadata, that release as its
    /// parent, plus `ostree.endoflife` and (with `rebase`) `ostree.endoflife-rebase`.
    pub commit: Commit,
    /// The release ref of the successor that `ostree admin upgrade` and rpm-ostree move the
    /// machine to (a ref on the same remote); absent when no stream succeeds this one on
    /// the arch, and the clients only see the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebase: Option<Ref>,
    /// What the machines on this arch show their users (`ostree.endoflife`).
    pub message: String,
}

/// Who ended a stream's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "how", rename_all = "kebab-case")]
pub enum EndOfLifeCause {
    /// The stream's configured `end_of_life` date came.
    Date,
    /// An operator's `fortnight.override.end-of-life`.
    Operator { operator: UserName, reason: String },
}

/// `fortnight.stream.end-of-life`: the stream's release refs point at their end-of-life
/// commits, and the stream gets no more two-week releases. Sent again, under the same id,
/// when the end of life is asked for again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamEndOfLife {
    pub stream: Stream,
    /// The stream whose release refs the clients move to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<Stream>,
    /// The arches whose release ref had a release to end.
    pub arches: BTreeMap<Arch, EndOfLifeArch>,
    /// The end of life in one sentence, for the page and the people reading the bus.
    pub message: String,
    pub at: DateTime<Utc>,
    /// `how` (`date` or `operator`), with the operator's `operator` and `reason`.
    #[serde(flatten)]
    pub cause: EndOfLifeCause,
}
impl Message for StreamEndOfLife {
    const TOPIC: &'static str = "fortnight.stream.end-of-life";
    fn severity(&self) -> Severity {
        Severity::Warning
    }
    fn users(&self) -> Vec<&UserName> {
        match &self.cause {
            EndOfLifeCause::Operator { operator, .. } => vec![operator],
            EndOfLifeCause::Date => Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signing, in robosignatory's shape so that Fedora's signer can answer a request.

/// One file to sign, with the digest the requester saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SignArtifact {
    /// Path relative to the artifact tree's root (a signer refuses anything outside it).
    pub file: String,
    /// `sha256:<hex>`; the signer checks it before signing.
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub checksum: String,
}

impl SignArtifact {
    const SHA256_PREFIX: &'static str = "sha256:";

    pub fn new(file: String, sha256: &Sha256) -> Self {
        Self {
            file,
            checksum: format!("{}{sha256}", Self::SHA256_PREFIX),
        }
    }

    /// The digest, when `checksum` is a well-formed `sha256:<hex>`.
    pub fn sha256(&self) -> Option<Sha256> {
        self.checksum
            .strip_prefix(Self::SHA256_PREFIX)
            .and_then(|hex| hex.parse().ok())
    }
}

/// One OSTree commit to sign in the stream's repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SignCommit {
    pub arch: Arch,
    #[serde(rename = "ref")]
    pub ostree_ref: Ref,
    pub commit: Commit,
}

/// `fortnight.sign.requested`: sign these files and commits of a release candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SignRequested {
    /// Matches the reply to the request; a re-sent request keeps it.
    pub request_id: Uuid,
    pub stream: Stream,
    pub version: Version,
    pub build_id: String,
    pub artifacts: Vec<SignArtifact>,
    pub commits: Vec<SignCommit>,
}

impl Message for SignRequested {
    const TOPIC: &'static str = "fortnight.sign.requested";
    /// robosignatory's requesters publish with priority 4.
    fn priority(&self) -> u8 {
        4
    }
}

/// How a signing request ended, spelled as robosignatory spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum SignStatus {
    Success,
    Failure,
}

/// `fortnight.sign.finished`: the request's body, with how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SignFinished {
    #[serde(flatten)]
    pub request: SignRequested,
    pub status: SignStatus,
    /// Why signing failed; null on success.
    #[serde(rename = "failure-message", default)]
    pub failure_message: Option<String>,
}

impl Message for SignFinished {
    const TOPIC: &'static str = "fortnight.sign.finished";
    fn severity(&self) -> Severity {
        match self.status {
            SignStatus::Success => Severity::Info,
            SignStatus::Failure => Severity::Error,
        }
    }
}

/// One artifact in the old `releng.atomic.twoweek.complete` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LegacyArtifact {
    pub compose_id: String,
    pub name: String,
    pub release: String,
    pub image_name: String,
    pub image_url: String,
    pub size: u64,
}

/// `releng.atomic.twoweek.complete`: arch -> artifact key (`atomic_qcow2`, ...) -> artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct TwoweekComplete(pub BTreeMap<String, BTreeMap<String, LegacyArtifact>>);
topic!(TwoweekComplete, "releng.atomic.twoweek.complete");
