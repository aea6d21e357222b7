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
//!
//! Renders coalesce: every sender writes the store before it sends, so a render that started
//! after a message was sent already shows what the message announces. When one such render
//! has finished, the message is done without another; a burst of a thousand candidates costs
//! a few renders, not a thousand.

mod model;
mod render;
#[cfg(test)]
mod step_tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bus::{BlockingStep, Outputs, StepError};
use chrono::{DateTime, TimeDelta, Utc};
use messages::{
    CandidateTestingRequested, ImageTestsFailed, ImageTestsPassed, Incoming, KarmaThresholdReached,
    ReleasePublished, ReleaseSkipped, Stream, StreamEndOfLife, StreamStale, StreamSwitched,
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
        // Both streams' roles change at the switch, the new one's label goes.
        Switched(StreamSwitched),
        EndOfLife(StreamEndOfLife),
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
            Self::Switched(m) => &m.to,
            Self::EndOfLife(m) => &m.stream,
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

/// How much later than a message's `sent-at` a render must have started to show it: `sent-at`
/// has whole seconds (fedora-messaging's format), so the message may have left up to a second
/// after it says, and the sender's clock may run ahead of this host's by a little.
pub const SENT_AT_SLACK: TimeDelta = TimeDelta::seconds(2);

/// Clones share the record of renders: the runtime clones a step for each message.
#[derive(Debug, Clone)]
pub struct SitePublisher {
    settings: Arc<Settings>,
    store: Store,
    /// When the latest render that finished had started; `None` before the first.
    rendered_from: Arc<Mutex<Option<DateTime<Utc>>>>,
    renders: RenderCount,
}

/// How many times the site was rendered and made live since start, start-up included.
#[derive(Debug, Clone, Default)]
pub struct RenderCount(Arc<AtomicU64>);

impl RenderCount {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl SitePublisher {
    pub fn new(settings: Arc<Settings>) -> Result<Self, SiteError> {
        let store = Store::open(&settings.store.root)?;
        Ok(Self {
            settings,
            store,
            rendered_from: Arc::default(),
            renders: RenderCount::default(),
        })
    }

    /// The count of renders, to watch from outside (tests, benchmarks).
    pub fn renders(&self) -> RenderCount {
        self.renders.clone()
    }

    /// Whether a render that started after `message` was sent has finished. A message without
    /// a readable `sent-at` is never covered.
    fn already_shown(&self, message: &Incoming) -> bool {
        let rendered_from = *self
            .rendered_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (message.sent_at(), rendered_from) {
            (Some(sent_at), Some(started)) => started >= sent_at + SENT_AT_SLACK,
            _ => false,
        }
    }

    /// Renders the site from the store and makes it live.
    fn render(&self) -> Result<PathBuf, SiteError> {
        // Taken before the render waits for another replica's (and reads the store), so a
        // message is never thought shown by a render that read the store before it was sent.
        let started = Utc::now();
        let generation = render::publish(&self.settings, &self.store, started)?;
        self.renders.0.fetch_add(1, Ordering::Relaxed);
        let mut rendered_from = self
            .rendered_from
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *rendered_from = (*rendered_from).max(Some(started));
        Ok(generation)
    }
}

impl BlockingStep for SitePublisher {
    const NAME: &'static str = "site-publisher";
    type Input = SiteInput;

    /// The page exists, and shows what the store holds, from the moment the consumer starts,
    /// not only after the first message that changes it.
    fn on_start(&self) -> Result<(), StepError> {
        let generation = self.render().map_err(|error| {
            StepError::from(error).context("cannot render the site at start-up")
        })?;
        tracing::info!(generation = %generation.display(), "site rendered at start-up");
        Ok(())
    }

    /// Renders from the store, not from the message, so any message rebuilds the same site.
    /// Rendering reads and fsyncs many files: the runtime runs it on the blocking pool.
    fn handle(&self, input: SiteInput, message: &Incoming) -> Result<Outputs, StepError> {
        let stream = input.stream();
        if self.settings.stream(stream).is_none() {
            return Err(StepError::permanent(format!(
                "stream {stream} is not configured"
            )));
        }
        if self.already_shown(message) {
            tracing::debug!(
                "site not rendered again: a render that started after the message was sent has finished"
            );
            return Ok(Vec::new());
        }
        self.render()?;
        Ok(Vec::new())
    }
}
