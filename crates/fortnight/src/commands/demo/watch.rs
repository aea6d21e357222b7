//! What the demo sees on the bus: every message of the run, printed as it arrives, and the
//! consumers' readiness.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::bail;
use bus::record::Recording;
use messages::envelope::strip_prefix;
use messages::{
    Arch, CandidateTestingRequested, ImageBuildFailed, ImageBuilt, ImageTestsFailed,
    ImageTestsPassed, KarmaSubmitted, KarmaThresholdReached, Message, RecordLine, ReleasePublished,
    ReleaseSkipped, TwoweekTimerFired, Version,
};
use settings::Settings;

use super::Progress;

/// What the demo has seen on the bus.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// (version, arch) of every nightly whose images were tested or failed to build.
    finished: BTreeSet<(Version, Arch)>,
    pub(super) requested: BTreeSet<Version>,
    pub(super) stable: BTreeSet<Version>,
    /// Released by an operator's override.
    pub(super) forced: BTreeSet<Version>,
    /// Released by the tick.
    pub(super) released: Option<ReleasePublished>,
    skipped: bool,
    topics: Vec<String>,
}

impl Seen {
    pub(super) fn finished_nightlies(&self) -> usize {
        self.finished.len()
    }

    /// The tick released or skipped.
    pub(super) fn decided(&self) -> bool {
        self.released.is_some() || self.skipped
    }

    /// Records a message and describes it for the progress output.
    fn absorb(&mut self, record: &RecordLine, prefix: &str) -> Option<String> {
        let topic = strip_prefix(&record.topic, prefix).to_owned();
        self.topics.push(topic.clone());
        let body = record.body.clone();
        fn parse<M: Message>(body: serde_json::Value) -> Option<M> {
            serde_json::from_value(body).ok()
        }
        match topic.as_str() {
            ImageBuilt::TOPIC => parse::<ImageBuilt>(body).map(|m| {
                let sizes: Vec<String> = m
                    .images
                    .iter()
                    .map(|i| format!("{} {} bytes", i.format, i.size))
                    .collect();
                format!(
                    "image built: {} {} {} ({})",
                    m.stream,
                    m.version,
                    m.arch,
                    sizes.join(", ")
                )
            }),
            ImageBuildFailed::TOPIC => parse::<ImageBuildFailed>(body).map(|m| {
                if let Some(version) = &m.version {
                    self.finished.insert((version.clone(), m.arch.clone()));
                }
                format!("image build failed: {} {}: {}", m.stream, m.arch, m.reason)
            }),
            ImageTestsPassed::TOPIC => {
                parse::<ImageTestsPassed>(body).map(|ImageTestsPassed(r)| {
                    self.finished.insert((r.version.clone(), r.arch.clone()));
                    format!(
                        "tests passed: {} {} {} ({} tests)",
                        r.stream,
                        r.version,
                        r.arch,
                        r.tests.len()
                    )
                })
            }
            ImageTestsFailed::TOPIC => {
                parse::<ImageTestsFailed>(body).map(|ImageTestsFailed(r)| {
                    self.finished.insert((r.version.clone(), r.arch.clone()));
                    format!(
                        "tests failed: {} {} {}: {}",
                        r.stream,
                        r.version,
                        r.arch,
                        r.failed.join(", ")
                    )
                })
            }
            CandidateTestingRequested::TOPIC => parse::<CandidateTestingRequested>(body).map(|m| {
                self.requested.insert(m.version.clone());
                format!(
                    "candidate {} {} passed on every arch; testers may vote",
                    m.stream, m.version
                )
            }),
            KarmaSubmitted::TOPIC => parse::<KarmaSubmitted>(body).map(|m| {
                format!(
                    "vote {:+} by {} on {} {}",
                    m.karma, m.user, m.stream, m.version
                )
            }),
            KarmaThresholdReached::TOPIC => parse::<KarmaThresholdReached>(body).map(|m| {
                self.stable.insert(m.version.clone());
                format!(
                    "karma threshold reached: {} {} is {:?} with karma {}",
                    m.stream, m.version, m.status, m.karma
                )
            }),
            TwoweekTimerFired::TOPIC => parse::<TwoweekTimerFired>(body)
                .map(|m| format!("two-week tick fired for {} (period {})", m.stream, m.period)),
            ReleasePublished::TOPIC => parse::<ReleasePublished>(body).map(|m| {
                let line = format!("released {} {}: {}", m.stream, m.version, m.reason);
                if m.forced {
                    self.forced.insert(m.version);
                } else {
                    self.released = Some(m);
                }
                line
            }),
            ReleaseSkipped::TOPIC => parse::<ReleaseSkipped>(body).map(|m| {
                self.skipped = true;
                format!("release skipped for {}: nothing was eligible", m.stream)
            }),
            _ => None,
        }
    }
}

/// The demo's view of the bus: what it recorded so far, printed as it arrives.
pub(super) struct Watch<'a> {
    pub(super) recording: &'a mut Recording,
    pub(super) seen: &'a mut Seen,
    pub(super) prefix: &'a str,
    pub(super) progress: &'a Progress,
    pub(super) deadline: tokio::time::Instant,
}

impl Watch<'_> {
    /// Reads messages, printing each, until `done` holds; fails past the deadline.
    pub(super) async fn until(
        &mut self,
        what: &str,
        done: impl Fn(&Seen) -> bool,
    ) -> anyhow::Result<()> {
        while !done(self.seen) {
            match tokio::time::timeout_at(self.deadline, self.recording.next()).await {
                Ok(Some(Ok(record))) => {
                    if let Some(line) = self.seen.absorb(&record, self.prefix) {
                        self.progress.say(&line);
                    }
                }
                Ok(Some(Err(error))) => {
                    return Err(anyhow::Error::from(error).context("lost the demo's subscription"));
                }
                Ok(None) => bail!("the demo's subscription closed while waiting for {what}"),
                Err(_) => bail!(
                    "gave up waiting for {what} (see the log lines above; --timeout raises the limit). Seen so far: {:?}",
                    self.seen.topics
                ),
            }
        }
        Ok(())
    }
}

/// Waits until every consumer answers `/ready` (connected, queue declared and bound): a tree
/// event published earlier would reach no queue and be lost.
pub(super) async fn wait_ready(
    settings: &Settings,
    deadline: tokio::time::Instant,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for consumer in registry::names() {
        let Some(addr) = settings.consumer(consumer).health_addr else {
            continue;
        };
        let url = format!("http://{addr}/ready");
        loop {
            let ready = client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the {consumer} consumer did not become ready ({url})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
