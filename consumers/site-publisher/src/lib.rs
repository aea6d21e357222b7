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
#[cfg(test)]
mod step_tests;

use std::sync::Arc;

use bus::{BlockingStep, Outputs, StepError};
use messages::{
    CandidateTestingRequested, ImageTestsFailed, ImageTestsPassed, Incoming, KarmaThresholdReached,
    ReleasePublished, ReleaseSkipped, Stream, StreamStale,
};
use settings::Settings;
use store::Store;

pub use render::{SiteError, publish};

bus::input! {
    /// The messages that change what the site shows; each names the stream it is about.
    pub enum SiteInput {
        Released(ReleasePublished),
        Skipped(ReleaseSkipped),
        TestsPassed(ImageTestsPassed),
        TestsFailed(ImageTestsFailed),
        TestingRequested(CandidateTestingRequested),
        Threshold(KarmaThresholdReached),
        // The page's warning appears once the stream is stale, not at the next candidate.
        Stale(StreamStale),
    }
}

impl SiteInput {
    fn stream(&self) -> &Stream {
        match self {
            Self::Released(m) => &m.stream,
            Self::Skipped(m) => &m.stream,
            Self::TestsPassed(m) => &m.0.stream,
            Self::TestsFailed(m) => &m.0.stream,
            Self::TestingRequested(m) => &m.stream,
            Self::Threshold(m) => &m.stream,
            Self::Stale(m) => &m.stream,
        }
    }
}

/// A template error is a bug no retry fixes; anything else (a full disk, a directory where
/// the site's symlink belongs) an operator fixes without the message changing.
impl From<SiteError> for StepError {
    fn from(error: SiteError) -> Self {
        match error {
            SiteError::Store(error) => error.into(),
            SiteError::SiteIsDirectory { .. } => StepError::retryable(error.to_string()),
            SiteError::Template { .. } => StepError::permanent(error.to_string()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SitePublisher {
    settings: Arc<Settings>,
    store: Store,
}

impl SitePublisher {
    pub fn new(settings: Arc<Settings>) -> Result<Self, SiteError> {
        let store = Store::open(&settings.store.root)?;
        Ok(Self { settings, store })
    }
}

impl BlockingStep for SitePublisher {
    const NAME: &'static str = "site-publisher";
    type Input = SiteInput;

    /// The page exists, and shows what the store holds, from the moment the consumer starts,
    /// not only after the first message that changes it.
    fn on_start(&self) -> Result<(), StepError> {
        let generation =
            render::publish(&self.settings, &self.store, chrono::Utc::now()).map_err(|error| {
                StepError::from(error).context("cannot render the site at start-up")
            })?;
        tracing::info!(generation = %generation.display(), "site rendered at start-up");
        Ok(())
    }

    /// Renders from the store, not from the message, so any message rebuilds the same site.
    /// Rendering reads and fsyncs many files: the runtime runs it on the blocking pool.
    fn handle(&self, input: SiteInput, _message: &Incoming) -> Result<Outputs, StepError> {
        let stream = input.stream();
        if self.settings.stream(stream).is_none() {
            return Err(StepError::permanent(format!(
                "stream {stream} is not configured"
            )));
        }
        render::publish(&self.settings, &self.store, chrono::Utc::now())?;
        Ok(Vec::new())
    }
}
