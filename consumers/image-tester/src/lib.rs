//! The image-tester consumer: runs the stream's test suite over every image of a
//! `fortnight.image.built` message, keeps each test's output, `tests.json` and `junit.xml` in
//! the store, and publishes `fortnight.image.tests.passed` or `fortnight.image.tests.failed`.
//!
//! It also tells Fedora CI about each run and keeps other CI systems' results for the streams
//! that gate on them (see [`fedora_ci`]).
//!
//! When every configured arch of a version has passed, the version is linked into
//! `passed-autotest/`. Each replica re-reads every arch's `tests.json` under the version's
//! lock after writing its own, and the link is created with an exclusive `symlink(2)`, so
//! however the arches' results interleave across replicas the link appears exactly once. When
//! an arch is rebuilt and its new images fail, the same check removes the link again: the tier
//! always says what the arches' current reports say.

mod fedora_ci;
mod junit;
mod run;
pub mod suite;

pub use run::SCRATCH_PREFIX;

use std::collections::BTreeMap;
use std::sync::Arc;

use bus::{Outcome, Step};
use fedora_ci::{CiAnnouncer, CiRunMessages};
use messages::{
    CiTestComplete, ImageBuilt, ImageTestsFailed, ImageTestsPassed, Incoming, Message, Outgoing,
    Stream, TestReport, Version, derived_id,
};
use settings::{Settings, StreamSettings};
use store::{FileName, Store, StoreError, Tier};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use run::EXIT_SKIPPED;
use run::{ImageContext, LogTarget, Ran};
use suite::Suite;

pub const NAME: &str = "image-tester";

#[derive(Debug, thiserror::Error)]
pub enum TesterError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
}

/// The image-tester step.
#[derive(Debug)]
pub struct ImageTester {
    settings: Arc<Settings>,
    store: Store,
    ci: CiAnnouncer,
}

fn store_outcome(e: StoreError) -> Outcome {
    Outcome::failed(e.to_string(), e.is_retryable())
}

/// What a test report did to the version's place in `passed-autotest/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TierChange {
    Promoted,
    Demoted,
    Unchanged,
}

impl ImageTester {
    pub fn new(settings: Arc<Settings>) -> Result<Self, TesterError> {
        let store = Store::open(&settings.store.root)?;
        let ci = CiAnnouncer::new(settings.clone());
        Ok(Self {
            settings,
            store,
            ci,
        })
    }

    /// Checks that every image the message names is where the store keeps that format for
    /// this stream/version/arch, so a message cannot point the tests at another file.
    fn check_images(&self, built: &ImageBuilt) -> Result<(), String> {
        for image in &built.images {
            let expected =
                self.store
                    .image_path(&built.stream, &built.version, &built.arch, &image.format);
            let given = self.store.resolve(&image.path).map_err(|e| e.to_string())?;
            if given != expected {
                return Err(format!(
                    "image path {:?} is not where the store keeps the {} image ({})",
                    image.path,
                    image.format,
                    self.store.relative(&expected)
                ));
            }
            if !expected.is_file() {
                return Err(format!(
                    "image {} does not exist in the store",
                    expected.display()
                ));
            }
        }
        Ok(())
    }

    /// The environment of each image's tests. The repository comes from the configuration,
    /// not the message, so a message cannot point a test at another one.
    fn contexts(&self, built: &ImageBuilt, repo: &std::path::Path) -> Vec<ImageContext> {
        let checksum = self
            .store
            .checksum_path(&built.stream, &built.version, &built.arch);
        built
            .images
            .iter()
            .map(|image| {
                let path = self.store.image_path(
                    &built.stream,
                    &built.version,
                    &built.arch,
                    &image.format,
                );
                let env = vec![
                    ("FORTNIGHT_IMAGE".to_owned(), path.display().to_string()),
                    ("FORTNIGHT_FORMAT".to_owned(), image.format.to_string()),
                    ("FORTNIGHT_ARCH".to_owned(), built.arch.to_string()),
                    ("FORTNIGHT_VERSION".to_owned(), built.version.to_string()),
                    ("FORTNIGHT_STREAM".to_owned(), built.stream.to_string()),
                    ("FORTNIGHT_COMMIT".to_owned(), built.tree.commit.to_string()),
                    (
                        "FORTNIGHT_REF".to_owned(),
                        built.tree.ostree_ref.to_string(),
                    ),
                    ("FORTNIGHT_REPO".to_owned(), repo.display().to_string()),
                    (
                        "FORTNIGHT_CHECKSUM_FILE".to_owned(),
                        checksum.display().to_string(),
                    ),
                ];
                ImageContext {
                    env,
                    format: image.format.clone(),
                }
            })
            .collect()
    }

    /// Runs every applicable (test, image) pair, at most `image_tester.parallel` at a time,
    /// and returns the results in suite order, then format order.
    async fn run_suite(
        &self,
        built: &ImageBuilt,
        settings: &StreamSettings,
        suite: &Suite,
    ) -> Result<Vec<Ran>, Outcome> {
        let permits = Arc::new(Semaphore::new(self.settings.image_tester.parallel.max(1)));
        let mut tasks = JoinSet::new();
        let contexts = self.contexts(built, &settings.ostree_repo);
        for (test_index, test) in suite.tests.iter().enumerate() {
            for (image_index, context) in contexts.iter().enumerate() {
                if !test.applies_to(&context.format) {
                    continue;
                }
                let name: FileName = match run::log_name(test, &context.format).parse() {
                    Ok(name) => name,
                    Err(e) => return Err(Outcome::reject(e.to_string())),
                };
                let path = self
                    .store
                    .log_path(&built.stream, &built.version, &built.arch, &name);
                let log = LogTarget {
                    relative: self.store.relative(&path),
                    path,
                };
                let (test, context, permits) = (test.clone(), context.clone(), permits.clone());
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let ran = run::run_test(&test, &context, &log).await;
                    ((test_index, image_index), log, ran)
                });
            }
        }
        let mut results = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let (order, log, ran) =
                joined.map_err(|e| Outcome::retry(format!("a test task panicked: {e}")))?;
            let ran = ran.map_err(|e| {
                Outcome::retry(format!("cannot make a scratch directory for a test: {e}"))
            })?;
            store::write_atomic(&log.path, ran.log.as_bytes()).map_err(store_outcome)?;
            results.insert(order, ran);
        }
        Ok(results.into_values().collect())
    }

    /// Keeps `passed-autotest/` in step with the arches' reports, under one lock per version:
    /// the version is linked once every configured arch has passed, and unlinked when an arch
    /// that passed before was rebuilt and now fails.
    async fn settle_autotest_tier(
        &self,
        stream: &Stream,
        version: &Version,
        settings: &StreamSettings,
    ) -> Result<TierChange, StoreError> {
        let store = self.store.clone();
        let (stream, version, arches) = (stream.clone(), version.clone(), settings.arches.clone());
        tokio::task::spawn_blocking(move || {
            let lock_name: FileName = format!("autotest-{version}").parse()?;
            store::with_lock(&store.lock_path(&stream, &lock_name), || {
                let mut every_arch_passed = true;
                for arch in &arches {
                    let passed = store
                        .read_tests(&stream, &version, arch)?
                        .is_some_and(|report| report.failed.is_empty());
                    every_arch_passed &= passed;
                }
                Ok(if every_arch_passed {
                    match store.promote(&stream, &version, Tier::PassedAutotest)? {
                        true => TierChange::Promoted,
                        false => TierChange::Unchanged,
                    }
                } else {
                    match store.demote(&stream, &version, Tier::PassedAutotest)? {
                        true => TierChange::Demoted,
                        false => TierChange::Unchanged,
                    }
                })
            })
        })
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::io(
                "finish the promotion check for",
                std::path::Path::new("passed-autotest"),
            )(std::io::Error::other(e)))
        })
    }

    async fn finish(&self, report: TestReport, settings: &StreamSettings) -> Outcome {
        match self
            .settle_autotest_tier(&report.stream, &report.version, settings)
            .await
        {
            Ok(TierChange::Promoted) => {
                tracing::info!(stream = %report.stream, version = %report.version, "every arch passed; promoted to passed-autotest")
            }
            Ok(TierChange::Demoted) => {
                tracing::warn!(stream = %report.stream, version = %report.version, arch = %report.arch, failed = %report.failed.join(", "), "a rebuilt arch failed; removed from passed-autotest")
            }
            Ok(TierChange::Unchanged) => {}
            Err(e) => return store_outcome(e),
        }
        let identity = [
            report.stream.as_str(),
            report.version.as_str(),
            report.arch.as_str(),
            report.tree.commit.as_str(),
        ];
        let ci_complete = fedora_ci::complete(&self.settings, &self.store, &report);
        let outgoing = if report.failed.is_empty() {
            Outgoing::new(
                derived_id(NAME, &[&["passed"][..], &identity].concat()),
                &ImageTestsPassed(report),
            )
        } else {
            Outgoing::new(
                derived_id(NAME, &[&["failed"][..], &identity].concat()),
                &ImageTestsFailed(report),
            )
        };
        Outcome::Done(std::iter::once(outgoing).chain(ci_complete).collect())
    }

    async fn on_built(&self, message: &Incoming) -> Outcome {
        let built: ImageBuilt = match message.parse() {
            Ok(built) => built,
            Err(e) => return Outcome::reject(e.to_string()),
        };
        let settings = match self.settings.require_stream(&built.stream) {
            Ok(settings) => settings,
            Err(unknown) => return Outcome::reject(unknown.to_string()),
        };
        if !settings.arches.contains(&built.arch) {
            return Outcome::reject(format!(
                "stream `{}` does not build arch `{}`",
                built.stream, built.arch
            ));
        }
        if let Err(reason) = self.check_images(&built) {
            return Outcome::reject(reason);
        }
        match self
            .store
            .read_tests(&built.stream, &built.version, &built.arch)
        {
            Ok(Some(report)) if report.tree == built.tree && report.images == built.images => {
                tracing::info!(stream = %built.stream, version = %built.version, arch = %built.arch, "images already tested; result published again");
                return self.finish(report, settings).await;
            }
            Ok(_) => {}
            Err(e) if e.is_retryable() => return store_outcome(e),
            // An unreadable old report is replaced by this run.
            Err(e) => tracing::warn!(error = %e, "previous tests.json unreadable; testing again"),
        }
        let ci_run = CiRunMessages::of(
            &self.settings,
            &self.store,
            &built,
            fedora_ci::attempt_of(message),
        );
        if let Some(run) = &ci_run
            && let Err(outcome) = self.ci.announce(&run.queued()).await
        {
            return outcome;
        }
        let suite = match &settings.test_suite {
            Some(path) => match Suite::load(path) {
                Ok(suite) => suite,
                // The suite is configuration: retrying gives an operator the time to fix it.
                Err(e) => {
                    return self
                        .ci
                        .error(ci_run.as_ref(), Outcome::retry(e.to_string()))
                        .await;
                }
            },
            None => Suite::default(),
        };
        if let Some(run) = &ci_run
            && let Err(outcome) = self.ci.announce(&run.running()).await
        {
            return outcome;
        }
        let ran = match self.run_suite(&built, settings, &suite).await {
            Ok(ran) => ran,
            Err(outcome) => return self.ci.error(ci_run.as_ref(), outcome).await,
        };
        let tests: Vec<_> = ran.into_iter().map(|r| r.summary).collect();
        let mut failed: Vec<String> = tests
            .iter()
            .filter(|t| run::blocks(t))
            .map(|t| t.name.clone())
            .collect();
        failed.dedup();
        let report = TestReport {
            stream: built.stream.clone(),
            version: built.version.clone(),
            arch: built.arch.clone(),
            tree: built.tree.clone(),
            images: built.images.clone(),
            tests,
            failed,
        };
        let (stream, version, arch) = (&report.stream, &report.version, &report.arch);
        let junit = match junit::render(&report) {
            Ok(xml) => xml,
            Err(e) => {
                return Outcome::reject(format!(
                    "cannot write the JUnit report of {stream} {version} {arch}: {e}"
                ));
            }
        };
        let written = store::write_atomic(
            &self.store.junit_path(stream, version, arch),
            junit.as_bytes(),
        )
        .and_then(|()| {
            store::write_json(&self.store.tests_json_path(stream, version, arch), &report)
        });
        if let Err(e) = written {
            return store_outcome(e);
        }
        tracing::info!(stream = %stream, version = %version, arch = %arch, failed = ?report.failed, "tests finished");
        self.finish(report, settings).await
    }
}

impl ImageTester {
    /// Another CI system's result, for the streams that gate on its test.
    async fn on_ci_result(&self, message: &Incoming) -> Outcome {
        let (settings, store, message) =
            (self.settings.clone(), self.store.clone(), message.clone());
        tokio::task::spawn_blocking(move || {
            fedora_ci::record_external_result(&settings, &store, &message)
        })
        .await
        .unwrap_or_else(|e| Outcome::retry(format!("recording a CI result failed: {e}")))
    }
}

/// The topics the image tester consumes (the configured prefix is added when binding).
pub fn topics() -> Vec<String> {
    vec![
        ImageBuilt::TOPIC.to_owned(),
        CiTestComplete::TOPIC.to_owned(),
    ]
}

impl Step for ImageTester {
    const NAME: &'static str = NAME;

    fn topics(&self) -> Vec<String> {
        topics()
    }

    fn long_running(&self) -> bool {
        true
    }

    /// Clears the scratch directories that tests of a tester that died left behind.
    async fn on_start(&self) -> Result<(), String> {
        tokio::task::spawn_blocking(|| {
            let now = std::time::SystemTime::now();
            store::scratch::remove_abandoned(&std::env::temp_dir(), run::SCRATCH_PREFIX, now)
        })
        .await
        .map_err(|join| format!("the scratch clean-up task failed: {join}"))?
        .map(|removed| {
            for dir in &removed {
                tracing::info!(path = %dir.display(), "stale test scratch directory removed");
            }
        })
        .map_err(|e| format!("cannot clear stale test scratch directories: {e}"))
    }

    async fn handle(&self, message: &Incoming) -> Outcome {
        match message.topic.as_str() {
            ImageBuilt::TOPIC => self.on_built(message).await,
            CiTestComplete::TOPIC => self.on_ci_result(message).await,
            other => Outcome::reject(format!("image-tester does not handle topic `{other}`")),
        }
    }
}
