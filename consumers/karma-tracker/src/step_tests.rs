//! The karma tracker's decisions through its typed input, without a broker.

use std::path::Path;
use std::sync::Arc;

use messages::{ImageTestsPassed, KarmaSubmitted, TestReport};
use serde_json::json;
use store::{Store, Tier};
use tests::step::{incoming, published, refused, topics};

use super::*;

fn tracker(root: &Path) -> KarmaTracker {
    let settings = tests::config::store_settings(
        root,
        "fedora/43/x86_64/atomic-host",
        root,
        tests::config::toml! { karma = { stable_threshold = 2 } },
    );
    KarmaTracker::new(Arc::new(settings)).expect("the store opens")
}

fn report(arch: &str, failed: &[&str]) -> TestReport {
    serde_json::from_value(json!({
        "stream": "f43", "version": "43.1", "arch": arch,
        "tree": {"ref": "fedora/43/x86_64/atomic-host", "commit": "a".repeat(64), "repo": "/r"},
        "images": [], "tests": [], "failed": failed,
    }))
    .expect("a valid report")
}

/// The candidate as the image tester leaves it when its one arch passed.
fn passed_in_store(root: &Path) {
    let store = Store::open(root).unwrap();
    let report = report("x86_64", &[]);
    let path = store.tests_json_path(&report.stream, &report.version, &report.arch);
    store::write_json(&path, &report).unwrap();
}

fn vote(user: &str, karma: i8) -> KarmaSubmitted {
    serde_json::from_value(
        json!({"stream": "f43", "version": "43.1", "user": user, "karma": karma}),
    )
    .expect("a valid vote")
}

fn in_passed_human(root: &Path) -> bool {
    let store = Store::open(root).unwrap();
    store.in_tier(
        &"f43".parse().unwrap(),
        &"43.1".parse().unwrap(),
        Tier::PassedHuman,
    )
}

#[tokio::test]
async fn every_arch_passed_asks_for_votes_with_the_same_id_each_time() {
    let root = tempfile::tempdir().unwrap();
    let step = tracker(root.path());
    let message = incoming(&ImageTestsPassed(report("x86_64", &[])), None);
    let first = published(bus::outcome(&step, &message).await);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].topic, CandidateTestingRequested::TOPIC);
    let again = published(bus::outcome(&step, &message).await);
    assert_eq!(
        again[0].id, first[0].id,
        "a replay announces the same request"
    );
}

#[tokio::test]
async fn a_passed_report_for_an_arch_not_built_or_naming_failures_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let step = tracker(root.path());
    let arch = incoming(&ImageTestsPassed(report("s390x", &[])), None);
    let reason = refused(bus::outcome(&step, &arch).await);
    assert!(reason.contains("arch s390x is not configured"), "{reason}");
    let failed = incoming(&ImageTestsPassed(report("x86_64", &["boot"])), None);
    let reason = refused(bus::outcome(&step, &failed).await);
    assert!(
        reason.contains("lists failed gating tests: boot"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_vote_is_refused_unless_its_sender_votes_on_a_candidate_that_passed() {
    let root = tempfile::tempdir().unwrap();
    let step = tracker(root.path());
    let reason = refused(bus::outcome(&step, &incoming(&vote("alice", 1), Some("alice"))).await);
    assert!(reason.contains("is not a known candidate"), "{reason}");
    passed_in_store(root.path());
    let reason = refused(bus::outcome(&step, &incoming(&vote("alice", 1), Some("mallory"))).await);
    assert!(reason.contains("claims user"), "{reason}");
    let reason = refused(bus::outcome(&step, &incoming(&vote("alice", 2), Some("alice"))).await);
    assert!(reason.contains("not one of -1, 0, +1"), "{reason}");
    assert!(!in_passed_human(root.path()));
}

#[tokio::test]
async fn the_stable_threshold_is_announced_once_and_falling_below_it_asks_for_votes_again() {
    let root = tempfile::tempdir().unwrap();
    passed_in_store(root.path());
    let step = tracker(root.path());
    let alice = incoming(&vote("alice", 1), Some("alice"));
    assert_eq!(
        topics(bus::outcome(&step, &alice).await),
        Vec::<String>::new()
    );
    let bob = incoming(&vote("bob", 1), Some("bob"));
    let reached = published(bus::outcome(&step, &bob).await);
    assert_eq!(reached.len(), 1);
    assert_eq!(reached[0].topic, KarmaThresholdReached::TOPIC);
    assert!(in_passed_human(root.path()));
    // Bob's vote replayed announces the same message; Carol's adds nothing.
    assert_eq!(
        published(bus::outcome(&step, &bob).await)[0].id,
        reached[0].id
    );
    let carol = incoming(&vote("carol", 0), Some("carol"));
    assert_eq!(
        topics(bus::outcome(&step, &carol).await),
        Vec::<String>::new()
    );
    // Bob changes his mind: below the threshold, out of passed-human, votes wanted again.
    let mut bob_again = incoming(&vote("bob", -1), Some("bob"));
    bob_again.id = Some(uuid::Uuid::new_v4().to_string());
    assert_eq!(
        topics(bus::outcome(&step, &bob_again).await),
        [CandidateTestingRequested::TOPIC]
    );
    assert!(!in_passed_human(root.path()));
}
