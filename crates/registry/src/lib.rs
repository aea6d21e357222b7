//! The one list of Fortnight's queue consumers: each one's name, queue, topics and how to
//! start it. `fortnight up` starts them from it, `fortnight topology export` describes their
//! queues from it, the demo and the tests configure and wait for the consumers it names. The
//! release timer reads no queue, so it is not here: it is [`RELEASE_TIMER`], and `fortnight
//! up` runs it beside these.
//!
//! A consumer's topics come from its step's input type (`bus::Step::topics`), its queue from
//! the configuration (`consumers.<name>.queue`), so neither is written here a second time.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bus::topology::Topology;
use bus::{BusError, Step};
use image_builder::ImageBuilder;
use image_tester::ImageTester;
use karma_tracker::KarmaTracker;
use releaser::Releaser;
use settings::{BusSettings, Settings};
use signer::Signer;
use site_publisher::SitePublisher;

pub use settings::RELEASE_TIMER;

/// What stops a consumer: it finishes the message in hand, and its run ends.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;
/// A consumer running on the bus runtime until its shutdown; see `bus::run`.
pub type Running = Pin<Box<dyn Future<Output = Result<(), BusError>> + Send>>;

/// A consumer whose step cannot be set up (its store cannot be opened, ...).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the {consumer} consumer: {reason}")]
pub struct SetupError {
    pub consumer: &'static str,
    pub reason: String,
}

/// One queue consumer.
#[derive(Debug, Clone, Copy)]
pub struct Consumer {
    /// Names the queue, the connection and the `[consumers.<name>]` section.
    pub name: &'static str,
    /// The topics it binds under a configuration (`topic_prefix` is added).
    pub topics: fn(&BusSettings) -> Vec<String>,
    start: fn(Arc<Settings>, Shutdown) -> Result<Running, SetupError>,
}

impl Consumer {
    /// The queue it reads under `settings`.
    pub fn queue(&self, settings: &BusSettings) -> String {
        settings.queue_name(self.name)
    }

    /// Everything it declares on the broker under `settings`.
    pub fn topology(&self, settings: &BusSettings) -> Topology {
        Topology::new(settings, self.name, &(self.topics)(settings))
    }

    /// Sets up its step and returns its run on the bus runtime, which ends after `shutdown`.
    pub fn start(
        &self,
        settings: Arc<Settings>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Running, SetupError> {
        (self.start)(settings, Box::pin(shutdown))
    }
}

/// Sets up the step `new` makes and returns its run.
fn start<S: Step, E: Display>(
    new: fn(Arc<Settings>) -> Result<S, E>,
    settings: Arc<Settings>,
    shutdown: Shutdown,
) -> Result<Running, SetupError> {
    let step = new(Arc::clone(&settings)).map_err(|error| SetupError {
        consumer: S::NAME,
        reason: error.to_string(),
    })?;
    Ok(Box::pin(async move {
        bus::run(&settings, Arc::new(step), shutdown).await
    }))
}

/// The registry entry of a step type and its constructor.
macro_rules! consumer {
    ($step:ty, $new:path) => {
        Consumer {
            name: <$step as Step>::NAME,
            topics: <$step as Step>::topics,
            start: |settings, shutdown| start::<$step, _>($new, settings, shutdown),
        }
    };
}

/// Every queue consumer, in the order `fortnight up` starts them.
pub const CONSUMERS: [Consumer; 6] = [
    consumer!(ImageBuilder, ImageBuilder::new),
    consumer!(ImageTester, ImageTester::new),
    consumer!(KarmaTracker, KarmaTracker::new),
    consumer!(Releaser, Releaser::new),
    consumer!(Signer, Signer::new),
    consumer!(SitePublisher, SitePublisher::new),
];

/// The queue consumers' names, in [`CONSUMERS`] order.
pub fn names() -> Vec<&'static str> {
    CONSUMERS.iter().map(|consumer| consumer.name).collect()
}

/// The queue consumer called `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Consumer> {
    CONSUMERS.iter().find(|consumer| consumer.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_none_is_the_release_timer() {
        let mut names = names();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CONSUMERS.len());
        assert!(find(RELEASE_TIMER).is_none());
    }

    #[test]
    fn every_consumer_binds_topics_and_the_releaser_its_overrides() {
        let settings = BusSettings::load(None).expect("the defaults are valid");
        for consumer in CONSUMERS {
            assert!(
                !(consumer.topics)(&settings).is_empty(),
                "{}",
                consumer.name
            );
        }
        let releaser = find("releaser").expect("the releaser is registered");
        assert!(
            (releaser.topics)(&settings)
                .iter()
                .any(|topic| topic == "fortnight.override.release")
        );
    }
}
