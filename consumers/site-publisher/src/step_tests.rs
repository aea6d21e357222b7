//! The site publisher's decisions through its typed input, without a broker.

use std::path::Path;
use std::sync::Arc;

use messages::{KarmaThresholdReached, Message, ReleaseSkipped};
use serde_json::json;
use tests::step::{incoming, published, refused};

use super::*;

fn publisher(root: &Path) -> SitePublisher {
    let settings = tests::config::store_settings(
        root,
        "fedora/43/x86_64/atomic-host",
        root,
        tests::config::Table::new(),
    );
    SitePublisher::new(Arc::new(settings)).expect("the store opens")
}

fn skipped(stream: &str) -> ReleaseSkipped {
    serde_json::from_value(json!({
        "stream": stream, "period": "2026-11-17T12:00:00Z", "candidates": [], "policy": "skip",
    }))
    .expect("a valid body")
}

fn rendered(root: &Path) -> bool {
    root.join("site").join("index.html").exists()
}

#[tokio::test]
async fn a_change_to_a_configured_stream_renders_the_site_and_publishes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let step = publisher(root.path());
    let outcome = bus::outcome(&step, &incoming(&skipped("f43"), None)).await;
    assert_eq!(published(outcome), Vec::new());
    assert!(rendered(root.path()));
}

#[tokio::test]
async fn a_message_about_a_stream_not_configured_is_refused_and_renders_nothing() {
    let root = tempfile::tempdir().unwrap();
    let step = publisher(root.path());
    let reason = refused(bus::outcome(&step, &incoming(&skipped("f99"), None)).await);
    assert!(reason.contains("stream f99 is not configured"), "{reason}");
    assert!(!rendered(root.path()));
}

#[tokio::test]
async fn a_body_that_does_not_match_its_topic_is_refused_before_the_step_runs() {
    let root = tempfile::tempdir().unwrap();
    let step = publisher(root.path());
    let mut message = incoming(&skipped("f43"), None);
    message.topic = KarmaThresholdReached::TOPIC.to_owned();
    let reason = refused(bus::outcome(&step, &message).await);
    assert!(reason.contains("missing field"), "{reason}");
    assert!(!rendered(root.path()), "the step never ran");
}

#[tokio::test]
async fn a_topic_it_does_not_read_is_refused_naming_those_it_reads() {
    let root = tempfile::tempdir().unwrap();
    let step = publisher(root.path());
    let mut message = incoming(&skipped("f43"), None);
    message.topic = "fortnight.image.built".to_owned();
    let reason = refused(bus::outcome(&step, &message).await);
    assert!(
        reason.contains("fortnight.image.built is not one this consumer reads")
            && reason.contains(ReleaseSkipped::TOPIC),
        "{reason}"
    );
}
