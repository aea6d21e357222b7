//! The site publisher renders the site from the store as soon as it starts: a release
//! engineer finds the page, showing what the store holds, before any message arrives.

use crate::site_support::site_on_bus;

use std::sync::Arc;
use std::time::Duration;

use site_publisher::SitePublisher;
use tests::{Running, eventually, free_port, http_get, is_ready};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_exists_and_shows_the_store_once_the_consumer_is_ready() {
    let health = free_port();
    let (bus, f, settings) = site_on_bus(health);
    let index = f.store.site_dir().join("index.html");
    assert!(!index.exists(), "the fixture renders no site by itself");

    let consumer = Running::start(
        &settings,
        SitePublisher::new(Arc::clone(&settings)).unwrap(),
    );
    let ready = eventually(WAIT, || is_ready(health)).await;
    assert!(ready, "the site publisher did not become ready");

    let page = std::fs::read_to_string(&index).expect("the site is rendered at start-up");
    assert!(
        page.contains("43.20261101.0"),
        "the release is shown: {page}"
    );
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(f.store.site_dir().join("streams/f43.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["release"], "43.20261101.0");
    let feed = std::fs::read_to_string(f.store.site_dir().join("releases.atom")).unwrap();
    let released_at = f.released_at.format("%Y-%m-%dT%H:%M:%S").to_string();
    assert!(
        feed.contains(&released_at),
        "the feed dates the release: {feed}"
    );
    // Nothing was published: the page comes from start-up, not from a message.
    let (_, metrics) = http_get(health, "/metrics").expect("the metrics endpoint answers");
    assert!(
        metrics.contains("fortnight_received_total{consumer=\"site-publisher\"} 0"),
        "{metrics}"
    );

    consumer.stop().await;
    bus.cleanup().await;
}
