//! The site publisher on the real broker: hostile and broken messages are dead-lettered with
//! a reason and render nothing; a valid one afterwards still rebuilds the site.

use std::sync::Arc;
use std::time::Duration;

use messages::RecordLine;
use serde_json::json;
use site_publisher::SitePublisher;
use tests::config::toml;
use tests::{Running, TestBus, eventually, free_port, is_ready};

const WAIT: Duration = Duration::from_secs(30);

fn record(bus: &TestBus, topic: &str, body: serde_json::Value) -> RecordLine {
    RecordLine {
        body,
        headers: Default::default(),
        id: Some(uuid::Uuid::new_v4().to_string()),
        priority: None,
        queue: None,
        topic: format!("{}.{topic}", bus.prefix),
    }
}

async fn dead_letter_saying(bus: &TestBus, text: &str) -> bus::dead_letters::DeadLetter {
    bus.wait_dead_letter_saying("site-publisher", text, WAIT)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_dead_lettered_and_a_good_one_still_publishes_the_site() {
    let health = free_port();
    let bus = TestBus::new().consumer(
        "site-publisher",
        toml! {
            max_attempts = 1
            retry_delays_seconds = [1]
            health_addr = (health.to_string())
        },
    );
    let settings = Arc::new(bus.settings());
    let consumer = Running::start(
        &settings,
        SitePublisher::new(Arc::clone(&settings)).unwrap(),
    );
    let ready = eventually(WAIT, || is_ready(health)).await;
    assert!(ready, "the site publisher did not become ready");
    // The site rendered at start-up; a refused message must not render another generation.
    let site = settings.store.root.join("site");
    let started_with = std::fs::read_link(&site).expect("the site is rendered at start-up");
    let publisher = bus.publisher().await;
    let skipped = |stream: &str| json!({"stream": stream, "period": "2026-11-24T12:00:00Z", "candidates": [], "policy": "skip"});

    for (body, topic, reason) in [
        (
            skipped("../../etc"),
            "fortnight.release.skipped",
            "invalid stream",
        ),
        (
            skipped("f43;rm -rf /"),
            "fortnight.release.skipped",
            "invalid stream",
        ),
        (
            skipped("f99"),
            "fortnight.release.skipped",
            "stream f99 is not configured",
        ),
        (
            json!({"stream": "f43"}),
            "fortnight.karma.threshold.reached",
            "missing field",
        ),
    ] {
        publisher
            .publish_record(&record(&bus, topic, body))
            .await
            .unwrap();
        let letter = dead_letter_saying(&bus, reason).await;
        assert!(
            letter.routing_key.ends_with(topic),
            "{}",
            letter.routing_key
        );
    }
    assert_eq!(
        std::fs::read_link(&site).unwrap(),
        started_with,
        "a refused message renders nothing"
    );

    publisher
        .publish_record(&record(&bus, "fortnight.release.skipped", skipped("f43")))
        .await
        .unwrap();
    let index = site.join("index.html");
    assert!(
        eventually(WAIT, || std::fs::read_link(&site)
            .is_ok_and(|generation| generation != started_with))
        .await,
        "the site was not published again"
    );
    let page = std::fs::read_to_string(&index).unwrap();
    assert!(page.contains("id=\"stream-f43\""), "{page}");
    // The test configuration's f43 has no two-week releases.
    assert!(page.contains("Nightly builds only"), "{page}");

    consumer.stop().await;
    publisher.close().await;
    bus.cleanup().await;
}
