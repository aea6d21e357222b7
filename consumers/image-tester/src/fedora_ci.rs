//! Fedora CI messages, both ways.
//!
//! Out: for a stream with `[streams.<s>.fedora_ci]`, each test run of one arch of a candidate
//! is also told as `ci.<artifact type>.test.queued` when the tester takes the images,
//! `.running` just before the first test starts, and `.complete` with the result, or `.error`
//! when the test infrastructure failed (the suite cannot be read, a scratch directory cannot
//! be made) and the run is retried. `queued`, `running` and `error` must leave while the step
//! runs, so [`CiAnnouncer`] publishes them itself, with confirms; `complete` goes with the
//! step's outcome, beside `fortnight.image.tests.passed`/`.failed`, and so is sent only once
//! the report is in the store. Ids are derived from the run (and, but for `complete`, from the
//! attempt), so a redelivered run sends the same ids again and a retried one new ones.
//!
//! In: another CI system's `test.complete` for a test a stream names in `external_gating` is
//! kept, newest `generated_at` first, in `<stream>/.external/`, where the releaser's gate
//! reads it ([`record_external_result`]).

use std::sync::Arc;

use bus::{HEADER_ATTEMPTS, Outputs, Publisher, StepError};
use chrono::Utc;
use messages::{
    CI_MESSAGES_VERSION, CiArtifact, CiError, CiPipeline, CiReportedResult, CiResult, CiRun,
    CiSubject, CiSystem, CiTest, CiTestComplete, CiTestError, CiTestQueued, CiTestResult,
    CiTestRunning, CiTestStarted, ExternalTestResult, ImageBuilt, Incoming, Message, Outgoing,
    Stream, TestReport, Version, derived_id,
};
use settings::{FedoraCiSettings, Settings};
use store::{FileName, Store, StoreError};
use tokio::sync::Mutex;

use crate::NAME;

/// The provider Fortnight names in `system`: the tester runs the images itself.
const PROVIDER: &str = "fortnight";
const NAMESPACE: &str = "fortnight";
const CATEGORY: &str = "functional";

/// One test run of one arch of a candidate, as Fedora CI messages describe it.
#[derive(Debug)]
pub struct CiRunMessages {
    subject: CiSubject,
    test: CiTest,
    /// The candidate's arch test run, the same in every message of it.
    identity: Vec<String>,
    attempt: String,
}

impl CiRunMessages {
    /// The run of `built`'s images, when the stream sends Fedora CI messages. `attempt`
    /// counts the retries of the `fortnight.image.built` delivery.
    pub fn of(
        settings: &Settings,
        store: &Store,
        built: &ImageBuilt,
        attempt: i64,
    ) -> Option<Self> {
        let ci = settings.stream(&built.stream)?.fedora_ci.as_ref()?;
        let identity = vec![
            built.stream.to_string(),
            built.version.to_string(),
            built.arch.to_string(),
            built.tree.commit.to_string(),
        ];
        let url = |path: &std::path::Path| {
            format!(
                "{}/{}",
                settings.site.base_url.trim_end_matches('/'),
                store.relative(path)
            )
        };
        let (stream, version, arch) = (&built.stream, &built.version, &built.arch);
        let subject = CiSubject {
            contact: ci.contact.clone(),
            run: CiRun {
                url: format!("{}/", url(&store.arch_dir(stream, version, arch))),
                log: url(&store.junit_path(stream, version, arch)),
            },
            artifact: artifact(ci, version),
            pipeline: CiPipeline {
                id: derived_id(NAME, &with_kind("ci-pipeline", &identity)).to_string(),
                name: format!("fortnight {stream} image tests"),
            },
            system: vec![CiSystem {
                os: built.tree.ostree_ref.to_string(),
                provider: PROVIDER.to_owned(),
                architecture: arch.clone(),
            }],
            generated_at: Utc::now(),
            version: CI_MESSAGES_VERSION.to_owned(),
        };
        Some(Self {
            subject,
            test: test_of(stream),
            identity,
            attempt: attempt.to_string(),
        })
    }

    /// `body` under an id of this run's attempt and `kind`.
    fn message<M: Message>(&self, kind: &str, body: &M) -> Outgoing {
        let mut identity = with_kind(kind, &self.identity);
        identity.push(&self.attempt);
        Outgoing::new(derived_id(NAME, &identity), body)
    }

    fn started(&self) -> CiTestStarted {
        CiTestStarted {
            subject: self.now(),
            test: self.test.clone(),
        }
    }

    fn now(&self) -> CiSubject {
        CiSubject {
            generated_at: Utc::now(),
            ..self.subject.clone()
        }
    }

    pub fn queued(&self) -> Outgoing {
        self.message("ci-queued", &CiTestQueued(self.started()))
    }

    pub fn running(&self) -> Outgoing {
        self.message("ci-running", &CiTestRunning(self.started()))
    }

    pub fn error(&self, reason: &str) -> Outgoing {
        let error = CiTestError {
            subject: self.now(),
            test: self.test.clone(),
            error: CiError {
                reason: reason.to_owned(),
            },
        };
        self.message("ci-error", &error)
    }
}

fn with_kind<'a>(kind: &'a str, identity: &'a [String]) -> Vec<&'a str> {
    std::iter::once(kind)
        .chain(identity.iter().map(String::as_str))
        .collect()
}

fn artifact(ci: &FedoraCiSettings, version: &Version) -> CiArtifact {
    CiArtifact {
        kind: ci.artifact_type,
        id: version.clone(),
    }
}

/// ResultsDB names the test `fortnight.<stream>.functional`.
fn test_of(stream: &Stream) -> CiTest {
    CiTest {
        namespace: NAMESPACE.to_owned(),
        kind: stream.to_string(),
        category: CATEGORY.to_owned(),
    }
}

/// The attempt a delivery is, from the runtime's retry header (0 for the first).
pub fn attempt_of(message: &Incoming) -> i64 {
    message
        .headers
        .get(HEADER_ATTEMPTS)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
}

/// `ci.<type>.test.complete` for a report the tester wrote (or wrote before, on a
/// redelivery): the same id for the same run, whenever it is sent again.
pub fn complete(settings: &Settings, store: &Store, report: &TestReport) -> Option<Outgoing> {
    let built = ImageBuilt {
        stream: report.stream.clone(),
        version: report.version.clone(),
        arch: report.arch.clone(),
        tree: report.tree.clone(),
        images: report.images.clone(),
        build_log: String::new(),
        compose_id: None,
    };
    let run = CiRunMessages::of(settings, store, &built, 0)?;
    let (result, note) = match report.failed.is_empty() {
        true => (CiResult::Passed, None),
        false => (
            CiResult::Failed,
            Some(format!("failed gating tests: {}", report.failed.join(", "))),
        ),
    };
    let complete = CiTestComplete {
        subject: run.now(),
        test: CiTestResult {
            test: run.test.clone(),
            result,
            note,
        },
    };
    let id = derived_id(NAME, &with_kind("ci-complete", &run.identity));
    Some(Outgoing::new(id, &complete))
}

/// Publishes the messages that must leave while the step runs, each confirmed before the
/// tests go on. Connects on first use and again after losing the broker.
#[derive(Debug)]
pub struct CiAnnouncer {
    settings: Arc<Settings>,
    publisher: Mutex<Option<Publisher>>,
}

impl CiAnnouncer {
    pub fn new(settings: Arc<Settings>) -> Self {
        Self {
            settings,
            publisher: Mutex::new(None),
        }
    }

    /// Publishes `message` and waits for the broker's confirm; a failure is a reason to
    /// retry the run (nothing has been tested yet when `queued` or `running` fails).
    pub async fn announce(&self, message: &Outgoing) -> Result<(), StepError> {
        let mut publisher = self.publisher.lock().await;
        if publisher.as_ref().is_none_or(|p| !p.is_connected()) {
            let connected = Publisher::connect(&self.settings, NAME)
                .await
                .map_err(|e| StepError::retryable(format!("cannot send {}: {e}", message.topic)))?;
            *publisher = Some(connected);
        }
        let Some(connected) = publisher.as_ref() else {
            return Err(StepError::retryable(
                "no connection to send Fedora CI messages",
            ));
        };
        connected.publish(message).await.map_err(|e| {
            *publisher = None;
            StepError::retryable(format!("cannot send {}: {e}", message.topic))
        })
    }

    /// Tells Fedora CI that the run failed for a reason of the infrastructure's, then
    /// returns the error, whose retry is what matters. Not telling (the broker is away too)
    /// does not change it.
    pub async fn error(&self, run: Option<&CiRunMessages>, error: StepError) -> StepError {
        if let Some(run) = run
            && error.is_retryable()
            && let Err(unsent) = self.announce(&run.error(error.reason())).await
        {
            tracing::warn!(error = %unsent, "cannot send the Fedora CI error message");
        }
        error
    }
}

/// Another CI system's `test.complete`, read tolerantly (other systems send more, and less,
/// than Fortnight's own messages), or why it is none.
pub fn reported_result(message: &Incoming) -> Result<CiReportedResult, String> {
    serde_json::from_value(serde_json::Value::Object(message.body.clone())).map_err(|e| {
        format!(
            "not a Fedora CI test.complete body (artifact, test with namespace, type and result): {e}"
        )
    })
}

/// Keeps another CI system's `test.complete` for every stream that gates on its test, on
/// the arch it ran on. A result for a test no stream gates on changes nothing; one that
/// names no arch, an unreadable version or result, or another artifact type is refused.
/// Blocking: reads and writes the store.
pub fn record_external_result(
    settings: &Settings,
    store: &Store,
    reported: &CiReportedResult,
    message: &Incoming,
) -> Result<Outputs, StepError> {
    let gating: Vec<(&Stream, &settings::StreamSettings, &messages::TestName)> = settings
        .streams
        .iter()
        .filter_map(|(stream, s)| {
            let test = s.external_gating.iter().find(|t| reported.is_about(t))?;
            Some((stream, s, test))
        })
        .collect();
    if gating.is_empty() {
        tracing::debug!(id = message.log_id(), namespace = %reported.test.namespace, kind = %reported.test.kind, "a CI result no stream gates on; ignored");
        return Ok(Vec::new());
    }
    let (version, arch, result) = read_result(reported).map_err(StepError::permanent)?;
    for (stream, stream_settings, test) in gating {
        if !stream_settings.arches.contains(&arch) {
            tracing::info!(id = message.log_id(), stream = %stream, arch = %arch, "a CI result for an arch the stream does not build; ignored");
            continue;
        }
        let record = ExternalTestResult {
            test: test.clone(),
            arch: arch.clone(),
            result,
            generated_at: reported.generated_at().unwrap_or_else(Utc::now),
            run_url: reported.run.as_ref().and_then(|run| run.url.clone()),
            sender: message.user_id.clone(),
            message_id: message.id.clone(),
        };
        match keep_newest(store, stream, &version, &record)? {
            true => {
                tracing::info!(id = message.log_id(), stream = %stream, version = %version, arch = %arch, test = %test, result = ?result, "external test result recorded")
            }
            false => {
                tracing::info!(id = message.log_id(), stream = %stream, version = %version, arch = %arch, test = %test, "an older external test result than the one kept; ignored")
            }
        }
    }
    Ok(Vec::new())
}

/// The candidate, arch and result a CI message names, or why it cannot be read.
fn read_result(reported: &CiReportedResult) -> Result<(Version, messages::Arch, CiResult), String> {
    let expected = CiTestComplete::TOPIC
        .strip_prefix("ci.")
        .and_then(|rest| rest.split('.').next())
        .unwrap_or_default();
    if reported.artifact.kind != expected {
        return Err(format!(
            "artifact type {:?} is not {expected:?}, the type of the topic",
            reported.artifact.kind
        ));
    }
    let version: Version = reported
        .artifact
        .id
        .parse()
        .map_err(|e| format!("artifact id is no candidate version: {e}"))?;
    let arch = reported
        .architecture()
        .ok_or("the result names no system architecture, so no arch of a candidate")?
        .parse()
        .map_err(|e| format!("system architecture: {e}"))?;
    let result = CiResult::parse_lenient(&reported.test.result).ok_or_else(|| {
        format!(
            "test result {:?} is none of passed, failed, info, needs_inspection",
            reported.test.result
        )
    })?;
    Ok((version, arch, result))
}

/// Writes `record` unless a result at least as new is kept already (a redelivery, or an
/// older run arriving late); under the candidate's lock, so replicas agree. Returns whether
/// it was written.
fn keep_newest(
    store: &Store,
    stream: &Stream,
    version: &Version,
    record: &ExternalTestResult,
) -> Result<bool, StoreError> {
    let lock_name: FileName = format!("external-{version}").parse()?;
    store::with_lock(&store.lock_path(stream, &lock_name), || {
        let kept = store.read_external_result(stream, version, &record.arch, &record.test)?;
        if kept.is_some_and(|kept: ExternalTestResult| kept.generated_at > record.generated_at) {
            return Ok(false);
        }
        let path = store.external_result_path(stream, version, &record.arch, &record.test);
        store::write_json(&path, record)?;
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gating() -> ::tests::config::Table {
        ::tests::config::toml! { external_gating = ["openqa.install_default"] }
    }

    /// What the runtime makes of the message: the tolerant parse, then the record.
    fn outcome_of(settings: &Settings, store: &Store, message: &Incoming) -> bus::Outcome {
        reported_result(message)
            .map_err(StepError::permanent)
            .and_then(|reported| record_external_result(settings, store, &reported, message))
            .into()
    }

    fn incoming(body: serde_json::Value) -> Incoming {
        let serde_json::Value::Object(body) = body else {
            panic!("a body is an object")
        };
        Incoming {
            id: Some("m1".into()),
            routing_key: CiTestComplete::TOPIC.into(),
            topic: CiTestComplete::TOPIC.into(),
            headers: Default::default(),
            body,
            user_id: Some("openqa".into()),
        }
    }

    fn result(test: &str, arch: &str, result: &str, at: &str) -> serde_json::Value {
        let (namespace, kind) = test.split_once('.').unwrap();
        json!({
            "artifact": {"type": "productmd-compose", "id": "43.20261127.0"},
            "test": {"namespace": namespace, "type": kind, "result": result},
            "system": [{"architecture": arch}],
            "generated_at": at
        })
    }

    fn kept(store: &Store, arch: &str) -> Option<ExternalTestResult> {
        store
            .read_external_result(
                &"f43".parse().unwrap(),
                &"43.20261127.0".parse().unwrap(),
                &arch.parse().unwrap(),
                &"openqa.install_default".parse().unwrap(),
            )
            .unwrap()
    }

    fn setup(stream_keys: ::tests::config::Table) -> (tempfile::TempDir, Settings, Store) {
        let root = tempfile::tempdir().unwrap();
        let settings = ::tests::config::store_settings(
            root.path(),
            "fedora/43/x86_64/atomic-host",
            &root.path().join("repo"),
            stream_keys,
        );
        let store = Store::open(root.path()).unwrap();
        (root, settings, store)
    }

    #[test]
    fn the_newest_result_is_kept_whatever_order_they_arrive_in() {
        let (_root, settings, store) = setup(gating());
        let record = |r: &str, at: &str| {
            let message = incoming(result("openqa.install_default", "x86_64", r, at));
            outcome_of(&settings, &store, &message)
        };
        assert_eq!(
            record("FAILED", "2026-11-27T10:00:00Z"),
            bus::Outcome::Done(vec![])
        );
        assert_eq!(kept(&store, "x86_64").unwrap().result, CiResult::Failed);
        record("passed", "2026-11-27T12:00:00Z");
        // A late copy of the older run changes nothing.
        record("FAILED", "2026-11-27T10:00:00Z");
        let newest = kept(&store, "x86_64").unwrap();
        assert_eq!(newest.result, CiResult::Passed);
        assert_eq!(newest.sender.as_deref(), Some("openqa"));
        assert_eq!(newest.message_id.as_deref(), Some("m1"));
    }

    #[test]
    fn a_result_no_stream_gates_on_changes_nothing_and_a_bad_one_is_refused() {
        let (root, settings, store) = setup(gating());
        let other = incoming(result("openqa.base_selinux", "x86_64", "PASSED", "x"));
        assert_eq!(
            outcome_of(&settings, &store, &other),
            bus::Outcome::Done(vec![])
        );
        assert!(!root.path().join("f43/.external").exists());
        let refusal = |body: serde_json::Value| match outcome_of(&settings, &store, &incoming(body))
        {
            bus::Outcome::Reject { reason } => reason,
            outcome => panic!("not refused: {outcome:?}"),
        };
        let mut no_arch = result("openqa.install_default", "x86_64", "PASSED", "x");
        no_arch["system"] = json!([]);
        assert!(refusal(no_arch).contains("no system architecture"));
        let odd = result("openqa.install_default", "x86_64", "SKIPPED", "x");
        assert!(refusal(odd).contains("\"SKIPPED\" is none of passed"));
        let mut koji = result("openqa.install_default", "x86_64", "PASSED", "x");
        koji["artifact"]["type"] = json!("koji-build");
        assert!(refusal(koji).contains("\"koji-build\" is not \"productmd-compose\""));
        assert!(refusal(json!({"test": {}})).contains("not a Fedora CI test.complete body"));
        assert_eq!(kept(&store, "x86_64"), None);
    }

    #[test]
    fn a_stream_without_external_gating_ignores_every_result() {
        let (root, settings, store) = setup(::tests::config::Table::new());
        let message = incoming(result("openqa.install_default", "x86_64", "PASSED", "x"));
        assert_eq!(
            outcome_of(&settings, &store, &message),
            bus::Outcome::Done(vec![])
        );
        assert!(!root.path().join("f43/.external").exists());
    }
}
