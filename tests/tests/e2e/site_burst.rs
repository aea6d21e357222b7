//! A burst of candidates reaches the site publisher: it renders a few times, not once per
//! message, and the last page shows every candidate of the burst.

use crate::fixture;
use crate::site_support::site_on_bus;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use messages::{CandidateTestingRequested, Outgoing, Version};
use site_publisher::{SENT_AT_SLACK, SitePublisher};
use store::Tier;
use tests::{Running, eventually, free_port, http_get, is_ready};

const WAIT: Duration = Duration::from_secs(60);
const BURST: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_candidates_costs_two_renders_and_the_last_page_shows_them_all() {
    let health = free_port();
    let (bus, f, settings) = site_on_bus(health);
    let step = SitePublisher::new(Arc::clone(&settings)).unwrap();
    let renders = step.renders();
    let consumer = Running::start(&settings, step);
    assert!(
        eventually(WAIT, || is_ready(health)).await,
        "the site publisher did not become ready"
    );
    assert_eq!(renders.get(), 1, "rendered once at start-up");

    // Another replica is rendering: it holds the lock every render takes, so the first
    // message's render waits while the rest of the burst queues up behind it.
    let other_replica = store::lock(&f.store.site_generations_dir().join(".lock")).unwrap();
    let stream = "f43".parse().unwrap();
    let versions: Vec<Version> = (0..BURST)
        .map(|n| fixture::v(&format!("43.20261201.{n}")))
        .collect();
    // As the tester and the karma-tracker leave the store: reports, then the tier, then the
    // message.
    for version in &versions {
        for arch in ["x86_64", "aarch64"] {
            fixture::nightly(&f.store, version, &arch.parse().unwrap(), true);
        }
        f.store
            .promote(&stream, version, Tier::PassedAutotest)
            .unwrap();
    }
    let publisher = bus.publisher().await;
    for version in &versions {
        let body = CandidateTestingRequested {
            stream: stream.clone(),
            version: version.clone(),
            arches: ["x86_64", "aarch64"]
                .into_iter()
                .map(|arch| (arch.parse().unwrap(), fixture::tree(arch)))
                .collect(),
        };
        publisher
            .publish(&Outgoing::new(uuid::Uuid::new_v4(), &body))
            .await
            .unwrap();
    }
    // Once this much time has passed, any render that starts shows the whole burst, whatever
    // `sent-at` the messages carry.
    let all_sent = Utc::now() + SENT_AT_SLACK;
    while Utc::now() <= all_sent {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(other_replica);

    let processed = format!("fortnight_processed_total{{consumer=\"site-publisher\"}} {BURST}\n");
    assert!(
        eventually(WAIT, || http_get(health, "/metrics")
            .is_some_and(|(_, metrics)| metrics.contains(&processed)))
        .await,
        "the burst was not processed"
    );
    // The first message's render had started before the burst was sent, so the next message
    // needs one more; every later one was sent before that one started.
    let burst_renders = renders.get() - 1;
    assert!(
        (1..=2).contains(&burst_renders),
        "{burst_renders} renders for {BURST} messages"
    );
    let page = std::fs::read_to_string(f.store.site_dir().join("index.html")).unwrap();
    for version in &versions {
        assert!(page.contains(version.as_str()), "{version} missing: {page}");
    }

    consumer.stop().await;
    publisher.close().await;
    bus.cleanup().await;
}
