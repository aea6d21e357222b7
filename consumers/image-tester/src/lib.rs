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
#[cfg(test)]
mod step_tests;
pub mod suite;

pub use run::SCRATCH_PREFIX;

use std::collections::BTreeMap;
use std::sync::Arc;

use bus::{Input, Outputs, Refusal, Step, StepError};
use fedora_ci::{CiAnnouncer, CiRunMessages};
use messages::{
    CiReportedResult, CiTestComplete, ImageBuilt, ImageTestsFailed, ImageTestsPassed, Incoming,
    Message, Outgoing, Stream, TestReport, Version, derived_id,
};
use settings::Settings;
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
#[derive(Debug, Clone)]
pub struct ImageTester {
    settings: Arc<Settings>,
    store: Store,
    ci: Arc<CiAnnouncer>,
}

/// What the image tester reads: built images, and other CI systems' results.
#[derive(Debug)]
pub enum TesterInput {
    Built(ImageBuilt),
    /// Read tolerantly: other CI systems send more, and less, than Fortnight's own messages.
    CiResult(CiReportedResult),
}

impl Input for TesterInput {
    const TOPICS: &'static [&'static str] = &[ImageBuilt::TOPIC, CiTestComplete::TOPIC];

    fn parse(message: &Incoming) -> Result<Self, Refusal> {
        match message.topic.as_str() {
            ImageBuilt::TOPIC => Ok(Self::Built(message.parse()?)),
            CiTestComplete::TOPIC => fedora_ci::reported_result(message)
                .map(Self::CiResult)
                .map_err(Refusal),
            other => Err(Refusal::topic(other, Self::TOPICS)),
        }
    }
}

/// What to do with a `fortnight.image.built`, decided from the store before any test runs.
#[derive(Debug)]
enum Plan {
    /// These images were tested before: publish the report again.
    Tested(Box<TestReport>),
    /// Run the suite.
    Run,
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
        let ci = Arc::new(CiAnnouncer::new(settings.clone()));
        Ok(Self {
            settings,
            store,
            ci,
        })
    }

    /// Checks that every image the message names is where the store keeps that format for
    /// this stream/version/arch, so a message cannot point the tests at another file.
    fn check_images(&self, built: &ImageBuilt) -> Result<(), StepError> {
        for image in &built.images {
            let expected =
                self.store
                    .image_path(&built.stream, &built.version, &built.arch, &image.format);
            let given = self
                .store
                .resolve(&image.path)
                .map_err(|e| StepError::permanent(e.to_string()))?;
            if given != expected {
                return Err(StepError::permanent(format!(
                    "image path {:?} is not where the store keeps the {} image ({})",
                    image.path,
                    image.format,
                    self.store.relative(&expected)
                )));
            }
            if !expected.is_file() {
                return Err(StepError::permanent(format!(
                    "image {} does not exist in the store",
                    expected.display()
                )));
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

    /// Checks the message against the configuration and the store, and decides whether its
    /// images need testing. Reads files: runs on the blocking pool.
    fn plan(&self, built: &ImageBuilt) -> Result<Plan, StepError> {
        let settings = self.settings.require_stream(&built.stream)?;
        if !settings.arches.contains(&built.arch) {
            return Err(StepError::permanent(format!(
                "stream `{}` does not build arch `{}`",
                built.stream, built.arch
            )));
        }
        self.check_images(built)?;
        match self
            .store
            .read_tests(&built.stream, &built.version, &built.arch)
        {
            Ok(Some(report)) if report.tree == built.tree && report.images == built.images => {
                tracing::info!(stream = %built.stream, version = %built.version, arch = %built.arch, "images already tested; result published again");
                return Ok(Plan::Tested(Box::new(report)));
            }
            Ok(_) => {}
            Err(e) if e.is_retryable() => return Err(e.into()),
            // An unreadable old report is replaced by this run.
            Err(e) => tracing::warn!(error = %e, "previous tests.json unreadable; testing again"),
        }
        Ok(Plan::Run)
    }

    /// The stream's test suite. Blocking: reads the suite file.
    fn suite(&self, stream: &Stream) -> Result<Suite, StepError> {
        match &self.settings.require_stream(stream)?.test_suite {
            Some(path) => Suite::load(path)
                // The suite is configuration: retrying gives an operator the time to fix it.
                .map_err(|e| StepError::retryable(e.to_string())),
            None => Ok(Suite::default()),
        }
    }

    /// Runs every applicable (test, image) pair, at most `image_tester.parallel` at a time,
    /// keeps each one's log in the store as it finishes, and returns the results in suite
    /// order, then format order.
    async fn run_suite(&self, built: &ImageBuilt, suite: &Suite) -> Result<Vec<Ran>, StepError> {
        let settings = self.settings.require_stream(&built.stream)?;
        let permits = Arc::new(Semaphore::new(self.settings.image_tester.parallel.max(1)));
        let mut tasks = JoinSet::new();
        let contexts = self.contexts(built, &settings.ostree_repo);
        for (test_index, test) in suite.tests.iter().enumerate() {
            for (image_index, context) in contexts.iter().enumerate() {
                if !test.applies_to(&context.format) {
                    continue;
                }
                let name: FileName = run::log_name(test, &context.format).parse()?;
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
                joined.map_err(|e| StepError::retryable(format!("a test task panicked: {e}")))?;
            let ran = ran.map_err(|e| {
                StepError::retryable(format!("cannot make a scratch directory for a test: {e}"))
            })?;
            let text = ran.log.clone();
            bus::blocking(move || {
                Ok::<_, StepError>(store::write_atomic(&log.path, text.as_bytes())?)
            })
            .await?;
            results.insert(order, ran);
        }
        Ok(results.into_values().collect())
    }

    /// Writes the `junit.xml` and `tests.json` of a run. Blocking: fsyncs both.
    fn write_report(&self, report: &TestReport) -> Result<(), StepError> {
        let (stream, version, arch) = (&report.stream, &report.version, &report.arch);
        let junit = junit::render(report).map_err(|e| {
            StepError::permanent(format!(
                "cannot write the JUnit report of {stream} {version} {arch}: {e}"
            ))
        })?;
        store::write_atomic(
            &self.store.junit_path(stream, version, arch),
            junit.as_bytes(),
        )?;
        store::write_json(&self.store.tests_json_path(stream, version, arch), report)?;
        tracing::info!(stream = %stream, version = %version, arch = %arch, failed = ?report.failed, "tests finished");
        Ok(())
    }

    /// Keeps `passed-autotest/` in step with the arches' reports, under one lock per version:
    /// the version is linked once every configured arch has passed, and unlinked when an arch
    /// that passed before was rebuilt and now fails. Blocking: a lock and links.
    fn settle_autotest_tier(
        &self,
        stream: &Stream,
        version: &Version,
    ) -> Result<TierChange, StoreError> {
        let Some(settings) = self.settings.stream(stream) else {
            return Ok(TierChange::Unchanged);
        };
        let store = &self.store;
        let lock_name: FileName = format!("autotest-{version}").parse()?;
        store::with_lock(&store.lock_path(stream, &lock_name), || {
            let mut every_arch_passed = true;
            for arch in &settings.arches {
                let passed = store
                    .read_tests(stream, version, arch)?
                    .is_some_and(|report| report.failed.is_empty());
                every_arch_passed &= passed;
            }
            Ok(if every_arch_passed {
                match store.promote(stream, version, Tier::PassedAutotest)? {
                    true => TierChange::Promoted,
                    false => TierChange::Unchanged,
                }
            } else {
                match store.demote(stream, version, Tier::PassedAutotest)? {
                    true => TierChange::Demoted,
                    false => TierChange::Unchanged,
                }
            })
        })
    }

    /// Settles the tier for `report` and returns its announcement. Blocking.
    fn finish(&self, report: TestReport) -> Result<Outputs, StepError> {
        match self.settle_autotest_tier(&report.stream, &report.version)? {
            TierChange::Promoted => {
                tracing::info!(stream = %report.stream, version = %report.version, "every arch passed; promoted to passed-autotest")
            }
            TierChange::Demoted => {
                tracing::warn!(stream = %report.stream, version = %report.version, arch = %report.arch, failed = %report.failed.join(", "), "a rebuilt arch failed; removed from passed-autotest")
            }
            TierChange::Unchanged => {}
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
        Ok(std::iter::once(outgoing).chain(ci_complete).collect())
    }

    async fn on_built(&self, built: ImageBuilt, message: &Incoming) -> Result<Outputs, StepError> {
        let built = Arc::new(built);
        let plan = {
            let (this, built) = (self.clone(), Arc::clone(&built));
            bus::blocking(move || this.plan(&built)).await?
        };
        if let Plan::Tested(report) = plan {
            let this = self.clone();
            return bus::blocking(move || this.finish(*report)).await;
        }
        let ci_run = CiRunMessages::of(
            &self.settings,
            &self.store,
            &built,
            fedora_ci::attempt_of(message),
        );
        if let Some(run) = &ci_run {
            self.ci.announce(&run.queued()).await?;
        }
        let suite = {
            let (this, stream) = (self.clone(), built.stream.clone());
            match bus::blocking(move || this.suite(&stream)).await {
                Ok(suite) => suite,
                Err(error) => return Err(self.ci.error(ci_run.as_ref(), error).await),
            }
        };
        if let Some(run) = &ci_run {
            self.ci.announce(&run.running()).await?;
        }
        let ran = match self.run_suite(&built, &suite).await {
            Ok(ran) => ran,
            Err(error) => return Err(self.ci.error(ci_run.as_ref(), error).await),
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
        let this = self.clone();
        bus::blocking(move || {
            this.write_report(&report)?;
            this.finish(report)
        })
        .await
    }
}

impl Step for ImageTester {
    const NAME: &'static str = NAME;
    type Input = TesterInput;

    fn long_running(&self) -> bool {
        true
    }

    /// Clears the scratch directories that tests of a tester that died left behind.
    async fn on_start(&self) -> Result<(), StepError> {
        let removed = bus::blocking(|| {
            let now = std::time::SystemTime::now();
            store::scratch::remove_abandoned(&std::env::temp_dir(), run::SCRATCH_PREFIX, now)
                .map_err(|e| {
                    StepError::permanent(format!(
                        "cannot clear stale test scratch directories: {e}"
                    ))
                })
        })
        .await?;
        for dir in &removed {
            tracing::info!(path = %dir.display(), "stale test scratch directory removed");
        }
        Ok(())
    }

    async fn handle(&self, input: TesterInput, message: &Incoming) -> Result<Outputs, StepError> {
        match input {
            TesterInput::Built(built) => self.on_built(built, message).await,
            TesterInput::CiResult(reported) => {
                let (settings, store, message) =
                    (self.settings.clone(), self.store.clone(), message.clone());
                bus::blocking(move || {
                    fedora_ci::record_external_result(&settings, &store, &reported, &message)
                })
                .await
            }
        }
    }
}
