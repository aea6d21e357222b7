//! The site publisher: on every release, skipped tick and candidate change it rebuilds the
//! public site from the artifact tree into `<root>/site/`:
//!
//! ```text
//! site/index.html                  every stream: current release, staleness, candidates
//! site/streams/<stream>.html       one stream, with recent nightlies and release history
//! site/streams/<stream>.json       stream metadata modeled on Fedora CoreOS's
//! site/releases.atom               an Atom feed of releases
//! site/latest/<stream>-<arch>.<format>  stable link to the current release's image
//! ```
//!
//! `site` is a symlink to a generation under `<root>/.site/`, swapped in one rename. Pages are
//! rendered from the store, never from the triggering message alone, so a replay (or any
//! message) rebuilds the same site, and the step is idempotent.

mod model;
mod render;

use std::path::PathBuf;
use std::sync::Arc;

use bus::{Outcome, Step};
use messages::{
    CandidateTestingRequested, ImageTestsFailed, ImageTestsPassed, Incoming, KarmaThresholdReached,
    Message, ReleasePublished, ReleaseSkipped, Stream, StreamStale,
};
use settings::Settings;
use store::Store;

pub use render::{SiteError, publish};

/// The topics that change what the site shows.
const TOPICS: [&str; 7] = [
    ReleasePublished::TOPIC,
    ReleaseSkipped::TOPIC,
    ImageTestsPassed::TOPIC,
    ImageTestsFailed::TOPIC,
    CandidateTestingRequested::TOPIC,
    KarmaThresholdReached::TOPIC,
    // The page's warning appears once the stream is stale, not at the next candidate.
    StreamStale::TOPIC,
];

#[derive(Debug)]
pub struct SitePublisher {
    settings: Arc<Settings>,
    store: Store,
}

impl SitePublisher {
    pub fn new(settings: Arc<Settings>) -> Result<Self, SiteError> {
        let store = Store::open(&settings.store.root)?;
        Ok(Self { settings, store })
    }

    /// The stream a message is about, after checking that the body matches its topic's schema.
    fn stream_of(message: &Incoming) -> Result<Stream, String> {
        let stream = match message.topic.as_str() {
            ReleasePublished::TOPIC => message.parse::<ReleasePublished>().map(|m| m.stream),
            ReleaseSkipped::TOPIC => message.parse::<ReleaseSkipped>().map(|m| m.stream),
            ImageTestsPassed::TOPIC => message.parse::<ImageTestsPassed>().map(|m| m.0.stream),
            ImageTestsFailed::TOPIC => message.parse::<ImageTestsFailed>().map(|m| m.0.stream),
            CandidateTestingRequested::TOPIC => message
                .parse::<CandidateTestingRequested>()
                .map(|m| m.stream),
            KarmaThresholdReached::TOPIC => {
                message.parse::<KarmaThresholdReached>().map(|m| m.stream)
            }
            StreamStale::TOPIC => message.parse::<StreamStale>().map(|m| m.stream),
            other => return Err(format!("topic {other} is not one the site publisher binds")),
        };
        stream.map_err(|e| e.to_string())
    }

    /// Renders the site from the store and makes it live.
    async fn render(&self) -> Result<Result<PathBuf, SiteError>, tokio::task::JoinError> {
        let settings = Arc::clone(&self.settings);
        let store = self.store.clone();
        // Rendering reads and fsyncs many files: keep it off the async workers.
        tokio::task::spawn_blocking(move || render::publish(&settings, &store, chrono::Utc::now()))
            .await
    }
}

/// The topics the site publisher consumes (the configured prefix is added when binding).
pub fn topics() -> Vec<String> {
    TOPICS.iter().map(|t| (*t).to_owned()).collect()
}

impl Step for SitePublisher {
    const NAME: &'static str = "site-publisher";

    fn topics(&self) -> Vec<String> {
        topics()
    }

    /// The page exists, and shows what the store holds, from the moment the consumer starts,
    /// not only after the first message that changes it.
    async fn on_start(&self) -> Result<(), String> {
        match self.render().await {
            Ok(Ok(generation)) => {
                tracing::info!(generation = %generation.display(), "site rendered at start-up");
                Ok(())
            }
            Ok(Err(error)) => Err(format!("cannot render the site at start-up: {error}")),
            Err(join) => Err(format!("site rendering task failed at start-up: {join}")),
        }
    }

    async fn handle(&self, message: &Incoming) -> Outcome {
        let stream = match Self::stream_of(message) {
            Ok(stream) => stream,
            Err(reason) => return Outcome::reject(reason),
        };
        if self.settings.stream(&stream).is_none() {
            return Outcome::reject(format!("stream {stream} is not configured"));
        }
        match self.render().await {
            Ok(Ok(_)) => Outcome::Done(Vec::new()),
            Ok(Err(error)) => Outcome::failed(error.to_string(), error.is_retryable()),
            Err(join) => Outcome::retry(format!("site rendering task failed: {join}")),
        }
    }
}
