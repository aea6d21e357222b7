//! Running one test on one image: retries, the log kept in the store, the status.

use std::path::PathBuf;
use std::time::Duration;

use messages::{Format, TestKind, TestStatus, TestSummary};
use runner::{Ending, Job};
use store::Scratch;

use crate::suite::TestSpec;

/// Each attempt's `FORTNIGHT_SCRATCH` is `<TMPDIR>/<SCRATCH_PREFIX><random>`, a
/// [`store::Scratch`], so what a killed tester leaves there goes at the next start.
pub const SCRATCH_PREFIX: &str = "fortnight-test-";

/// Automake's convention for "skipped", which test scripts already know.
pub const EXIT_SKIPPED: i32 = 77;

/// Everything about one image that a test receives in its environment.
#[derive(Debug, Clone)]
pub struct ImageContext {
    pub env: Vec<(String, String)>,
    pub format: Format,
}

/// Where a test's log goes and the name the report uses for it.
#[derive(Debug, Clone)]
pub struct LogTarget {
    pub path: PathBuf,
    pub relative: String,
}

/// The result of a test, with its log text ready to be written to the store.
#[derive(Debug)]
pub struct Ran {
    pub summary: TestSummary,
    pub log: String,
}

/// The last non-empty line of a test's output: why it failed or was skipped.
fn last_line(output: &str) -> Option<String> {
    output
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}

fn status_of(ending: Ending) -> TestStatus {
    match ending {
        Ending::Exited(0) => TestStatus::Passed,
        Ending::Exited(EXIT_SKIPPED) => TestStatus::Skipped,
        Ending::TimedOut => TestStatus::TimedOut,
        Ending::Exited(_) | Ending::Signalled => TestStatus::Failed,
    }
}

/// Runs `test` on one image, again up to `retries` times while it fails. A test that cannot
/// even start fails with the reason; only a scratch directory that cannot be made is an
/// error (the machine, not the image, is at fault).
pub async fn run_test(
    test: &TestSpec,
    image: &ImageContext,
    log: &LogTarget,
) -> Result<Ran, std::io::Error> {
    let mut text = String::new();
    let mut attempts = 0;
    let mut total = Duration::ZERO;
    loop {
        attempts += 1;
        let scratch = Scratch::new_in(&std::env::temp_dir(), SCRATCH_PREFIX)
            .map_err(std::io::Error::other)?;
        let attempt_log = scratch.path().join(".log");
        let mut job = Job::new(&test.program, test.timeout)
            .envs(&test.env)
            .env("FORTNIGHT_SCRATCH", scratch.path())
            .env("TMPDIR", scratch.path())
            .cwd(scratch.path());
        for arg in &test.args {
            job = job.arg(arg);
        }
        for (key, value) in &image.env {
            job = job.env(key, value);
        }
        let (status, reason, output) = match runner::run(&job, &attempt_log).await {
            Ok(finished) => {
                total += finished.duration;
                let output = tokio::fs::read(&attempt_log).await.unwrap_or_default();
                let output = String::from_utf8_lossy(&output).into_owned();
                let status = status_of(finished.ending);
                let ending = finished.ending.describe(test.timeout);
                text.push_str(&format!(
                    "### {} on {} attempt {attempts}: {ending} ({:.1}s)\n",
                    test.name,
                    image.format,
                    finished.duration.as_secs_f64()
                ));
                let reason = match status {
                    TestStatus::Passed => None,
                    TestStatus::TimedOut => Some(ending),
                    TestStatus::Skipped => last_line(&output).or(Some(ending)),
                    TestStatus::Failed => Some(
                        last_line(&output).map_or(ending.clone(), |l| format!("{ending}: {l}")),
                    ),
                };
                (status, reason, output)
            }
            Err(e) => {
                text.push_str(&format!(
                    "### {} on {} attempt {attempts}: {e}\n",
                    test.name, image.format
                ));
                (TestStatus::Failed, Some(e.to_string()), String::new())
            }
        };
        text.push_str(&output);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let retry =
            matches!(status, TestStatus::Failed | TestStatus::TimedOut) && attempts <= test.retries;
        if !retry {
            let reason = match (test.kind, status) {
                (TestKind::ExpectedToFail, TestStatus::Passed) => {
                    Some("passed, though expected to fail; consider making it gating".to_owned())
                }
                _ => reason,
            };
            tracing::info!(test = %test.name, format = %image.format, status = ?status, attempts, "test finished");
            return Ok(Ran {
                summary: TestSummary {
                    name: test.name.to_string(),
                    kind: test.kind,
                    format: image.format.clone(),
                    status,
                    attempts,
                    duration_ms: total.as_millis() as u64,
                    log: log.relative.clone(),
                    reason,
                },
                log: text,
            });
        }
        tracing::info!(test = %test.name, format = %image.format, attempt = attempts, "test failed; retrying");
    }
}

/// Whether a result makes the candidate fail: only gating tests that failed or timed out.
pub fn blocks(summary: &TestSummary) -> bool {
    summary.kind == TestKind::Gating
        && matches!(summary.status, TestStatus::Failed | TestStatus::TimedOut)
}

/// The store path of a test's log.
pub fn log_name(test: &TestSpec, format: &Format) -> String {
    format!("test-{}.{format}.log", test.name)
}
