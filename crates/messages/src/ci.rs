//! Fedora CI's test messages, `ci.<artifact type>.test.queued|running|complete|error`, in
//! version 0.2 of the Fedora CI messages specification: the version ResultsDB's updater reads
//! (it takes `contact` from 0.2.1 on, and anything below 1.0.0). Fortnight publishes them for
//! each test run of a candidate on one arch, and reads other CI systems' `test.complete`
//! (openQA's, say) for the tests a stream gates on.
//!
//! The topics are Fedora's, without `fortnight.`: every CI system sends the same ones, and
//! ResultsDB, Greenwave and the dashboards key on them.

use chrono::{DateTime, NaiveDateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::envelope::{Message, Severity};
use crate::ids::{Arch, TestName, Version};

/// The specification version Fortnight writes in `version`.
pub const CI_MESSAGES_VERSION: &str = "0.2.1";

/// What was tested, in the specification's words. A candidate (one tree version across its
/// arches, the compose id in compose mode) is a `productmd-compose`, the type openQA and
/// ResultsDB use for composes. Each type has its own topics, so a new one needs its own
/// bodies here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CiArtifactType {
    #[default]
    ProductmdCompose,
}

/// Who runs the tests, so that someone reading a result in ResultsDB knows whom to ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CiContact {
    /// The CI system's name (`Fortnight`).
    pub name: String,
    pub team: String,
    pub email: String,
    /// Where the tests are documented.
    pub docs: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irc: Option<String>,
}

/// Where the run can be seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CiRun {
    /// The arch's directory of the candidate (images, reports, logs).
    pub url: String,
    /// The run's JUnit report.
    pub log: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CiArtifact {
    #[serde(rename = "type")]
    pub kind: CiArtifactType,
    /// The candidate's version (the compose id in compose mode).
    pub id: Version,
}

/// One test run: every message of a run carries the same id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CiPipeline {
    pub id: String,
    pub name: String,
}

/// The test, named `<namespace>.<type>.<category>` in ResultsDB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CiTest {
    pub namespace: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub category: String,
}

/// The system the tests ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CiSystem {
    /// The tree under test (its OSTree ref).
    pub os: String,
    pub provider: String,
    pub architecture: Arch,
}

/// A test's result, as the specification spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CiResult {
    Passed,
    Failed,
    Info,
    NeedsInspection,
}

impl CiResult {
    /// Reads a result as CI systems send it: the specification's lowercase words, or
    /// ResultsDB's uppercase outcomes (`PASSED`, `NEEDS_INSPECTION`).
    pub fn parse_lenient(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "passed" => Some(Self::Passed),
            "failed" => Some(Self::Failed),
            "info" => Some(Self::Info),
            "needs_inspection" => Some(Self::NeedsInspection),
            _ => None,
        }
    }

    /// Whether the result lets a gate pass; as Greenwave counts them, PASSED and INFO do.
    pub fn passes(self) -> bool {
        matches!(self, Self::Passed | Self::Info)
    }
}

/// A finished test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CiTestResult {
    #[serde(flatten)]
    pub test: CiTest,
    pub result: CiResult,
    /// The gating tests that failed, when the result is `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Why the test infrastructure could not finish the run (not a test failure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CiError {
    pub reason: String,
}

/// What every message of a run says about the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CiSubject {
    pub contact: CiContact,
    pub run: CiRun,
    pub artifact: CiArtifact,
    pub pipeline: CiPipeline,
    pub system: Vec<CiSystem>,
    pub generated_at: DateTime<Utc>,
    /// The specification's version, [`CI_MESSAGES_VERSION`].
    pub version: String,
}

/// A run that is queued or has started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CiTestStarted {
    #[serde(flatten)]
    pub subject: CiSubject,
    pub test: CiTest,
}

/// `ci.productmd-compose.test.queued`: the tester took the candidate's images of one arch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct CiTestQueued(pub CiTestStarted);

impl Message for CiTestQueued {
    const TOPIC: &'static str = "ci.productmd-compose.test.queued";
}

/// `ci.productmd-compose.test.running`: the tests started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct CiTestRunning(pub CiTestStarted);

impl Message for CiTestRunning {
    const TOPIC: &'static str = "ci.productmd-compose.test.running";
}

/// `ci.productmd-compose.test.complete`: the tests finished, passed or failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CiTestComplete {
    #[serde(flatten)]
    pub subject: CiSubject,
    pub test: CiTestResult,
}

impl Message for CiTestComplete {
    const TOPIC: &'static str = "ci.productmd-compose.test.complete";
}

/// `ci.productmd-compose.test.error`: the test infrastructure failed; the run is retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CiTestError {
    #[serde(flatten)]
    pub subject: CiSubject,
    pub test: CiTest,
    pub error: CiError,
}

impl Message for CiTestError {
    const TOPIC: &'static str = "ci.productmd-compose.test.error";
    fn severity(&self) -> Severity {
        Severity::Error
    }
}

/// What Fortnight reads of another CI system's `test.complete`. Only what the gate needs is
/// required, and read tolerantly: CI systems fill the rest of the specification unevenly
/// (`system` as one object or a list, results in either case, timestamps with `+0000`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CiReportedResult {
    pub artifact: ReportedArtifact,
    pub test: ReportedTest,
    #[serde(default)]
    pub system: ReportedSystems,
    #[serde(default)]
    pub run: Option<ReportedRun>,
    #[serde(default)]
    pub generated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReportedArtifact {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReportedTest {
    pub namespace: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub category: Option<String>,
    pub result: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReportedSystem {
    #[serde(default)]
    pub architecture: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ReportedSystems {
    List(Vec<ReportedSystem>),
    One(ReportedSystem),
}

impl Default for ReportedSystems {
    fn default() -> Self {
        Self::List(Vec::new())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReportedRun {
    #[serde(default)]
    pub url: Option<String>,
}

impl CiReportedResult {
    /// Whether the message is about `name`: `<namespace>.<type>`, or with the category too.
    pub fn is_about(&self, name: &TestName) -> bool {
        let short = format!("{}.{}", self.test.namespace, self.test.kind);
        name.as_str() == short
            || self
                .test
                .category
                .as_ref()
                .is_some_and(|category| name.as_str() == format!("{short}.{category}"))
    }

    /// The architecture of the (first) system the test ran on.
    pub fn architecture(&self) -> Option<&str> {
        match &self.system {
            ReportedSystems::List(systems) => systems.first()?.architecture.as_deref(),
            ReportedSystems::One(system) => system.architecture.as_deref(),
        }
    }

    /// `generated_at` in RFC 3339 or with a `+0000` offset, as CI systems write it.
    pub fn generated_at(&self) -> Option<DateTime<Utc>> {
        let text = self.generated_at.as_deref()?;
        DateTime::parse_from_rfc3339(text)
            .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
            .map(|at| at.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|at| at.and_utc())
            })
    }
}

/// One external test's latest result for one arch of a candidate, as the image-tester keeps
/// it in the store for the releaser's gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExternalTestResult {
    pub test: TestName,
    pub arch: Arch,
    pub result: CiResult,
    /// When the CI system generated the result (when it arrived, if it did not say).
    pub generated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
    /// The broker account that sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(body: serde_json::Value) -> CiReportedResult {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_result_is_about_a_test_by_namespace_and_type_or_with_its_category() {
        let result = reported(serde_json::json!({
            "artifact": {"type": "productmd-compose", "id": "Fedora-43-20261127.n.0"},
            "test": {"namespace": "openqa", "type": "install_default", "category": "validation", "result": "PASSED"},
            "system": {"architecture": "x86_64"},
            "generated_at": "2026-11-27T10:47:32+0000"
        }));
        assert!(result.is_about(&"openqa.install_default".parse().unwrap()));
        assert!(result.is_about(&"openqa.install_default.validation".parse().unwrap()));
        assert!(!result.is_about(&"openqa.install".parse().unwrap()));
        assert!(!result.is_about(&"openqa.install_default.functional".parse().unwrap()));
        assert_eq!(result.architecture(), Some("x86_64"));
        assert_eq!(
            result.generated_at().unwrap().to_rfc3339(),
            "2026-11-27T10:47:32+00:00"
        );
        assert_eq!(
            CiResult::parse_lenient(&result.test.result),
            Some(CiResult::Passed)
        );
    }

    #[test]
    fn results_read_in_either_case_and_only_passed_and_info_pass() {
        assert_eq!(
            CiResult::parse_lenient("needs_inspection"),
            Some(CiResult::NeedsInspection)
        );
        assert_eq!(CiResult::parse_lenient("FAILED"), Some(CiResult::Failed));
        assert_eq!(CiResult::parse_lenient("skipped"), None);
        assert!(CiResult::Passed.passes() && CiResult::Info.passes());
        assert!(!CiResult::Failed.passes() && !CiResult::NeedsInspection.passes());
    }
}
