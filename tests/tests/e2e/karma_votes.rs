//! Votes on the real broker: who voted is the `user_id` RabbitMQ checked, never what the body
//! claims; refused votes go to the dead-letter queue with the reason; only each tester's
//! latest vote counts and the threshold is announced once.

use crate::release_support;

use std::time::Duration;

use messages::{KarmaStatus, KarmaSubmitted, KarmaThresholdReached, Outgoing, RecordLine};
use release_support::{
    BrokerUser, Options, Pipeline, dead_letter_with, stream, testers, version, wait_topic,
};

const THRESHOLD: &str = "fortnight.karma.threshold.reached";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_disallowed_and_misplaced_votes_are_refused_with_a_reason() {
    let alice = BrokerUser::create("alice");
    let mallory = BrokerUser::create("mallory");
    let p = Pipeline::start(Options {
        voters: Some(vec![alice.name.clone()]),
        ..Options::default()
    })
    .await;
    p.nightly_tested("43.20261120.0", None).await;
    p.nightly_tested("43.20261121.0", Some(("aarch64", "boot-smoke")))
        .await;
    let settings = &p.settings;

    // Mallory claims to be Alice: the broker stamps Mallory's own user_id.
    let spoof = KarmaSubmitted {
        stream: stream(),
        version: version("43.20261120.0"),
        user: alice.name.clone(),
        karma: 1,
        comment: None,
    };
    let as_mallory = mallory.publisher(settings).await;
    as_mallory
        .publish_as(
            &Outgoing::new(uuid::Uuid::new_v4(), &spoof),
            mallory.name.as_str(),
        )
        .await
        .unwrap();
    let letter = dead_letter_with(&p, "karma-tracker", "claims user").await;
    assert!(letter.reason.contains(&format!(
        "claims user {} but was published by broker user {}",
        alice.name, mallory.name
    )));

    // Nor can Mallory make the broker vouch for Alice.
    let refused = as_mallory
        .publish_as(
            &Outgoing::new(uuid::Uuid::new_v4(), &spoof),
            alice.name.as_str(),
        )
        .await;
    assert!(
        refused.is_err(),
        "RabbitMQ refuses a user_id that is not the connection's user"
    );

    // A vote without user_id cannot be attributed (votes are open to any sender, so the
    // karma-tracker itself says why).
    let unsigned = tests::broker::unsigned_publisher(settings).await;
    unsigned
        .publish(&Outgoing::new(uuid::Uuid::new_v4(), &spoof))
        .await
        .unwrap();
    unsigned.close().await;
    dead_letter_with(&p, "karma-tracker", "carries no user_id").await;

    // Mallory as himself is not in the stream's voters.
    p.vote(&mallory, "43.20261120.0", 1).await;
    dead_letter_with(
        &p,
        "karma-tracker",
        &format!("user {} may not vote on stream tw", mallory.name),
    )
    .await;

    // Alice on a version that does not exist, and on one that failed on an arch.
    p.vote(&alice, "43.29991231.0", 1).await;
    dead_letter_with(
        &p,
        "karma-tracker",
        "43.29991231.0 of stream tw is not a known candidate",
    )
    .await;
    p.vote(&alice, "43.20261121.0", 1).await;
    let untested = dead_letter_with(&p, "karma-tracker", "has not passed automated tests").await;
    assert!(
        untested
            .reason
            .contains("aarch64: failed tests: boot-smoke"),
        "{}",
        untested.reason
    );

    let votes = p
        .store
        .read_votes(&stream(), &version("43.20261120.0"))
        .unwrap();
    assert!(votes.is_empty(), "no refused vote was recorded: {votes:?}");
    as_mallory.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_latest_vote_counts_and_the_threshold_is_announced_once() {
    let testers = testers();
    let p = Pipeline::start(Options::default()).await;
    let mut watch = p.watch(&[THRESHOLD]).await;
    p.nightly_tested("43.20261120.0", None).await;
    let candidate = version("43.20261120.0");

    // The first tester changes their mind: +1 then -1 then +1 again, one file all along.
    p.vote(&testers[0], "43.20261120.0", 1).await;
    p.vote(&testers[0], "43.20261120.0", -1).await;
    p.vote(&testers[1], "43.20261120.0", 1).await;
    assert!(
        tests::eventually(release_support::WAIT, || p
            .store
            .read_votes(&stream(), &candidate)
            .unwrap()
            .len()
            == 2)
        .await,
        "two testers' votes recorded"
    );
    let karma: i32 = p
        .store
        .read_votes(&stream(), &candidate)
        .unwrap()
        .iter()
        .map(|v| i32::from(v.karma))
        .sum();
    assert_eq!(
        karma, 0,
        "the first tester's latest vote (-1) replaced the +1"
    );

    p.vote(&testers[0], "43.20261120.0", 1).await;
    p.vote(&testers[2], "43.20261120.0", 1).await;
    let reached = wait_topic(&mut watch, THRESHOLD, 1).await;
    let reached: KarmaThresholdReached = serde_json::from_value(reached[0].body.clone()).unwrap();
    assert_eq!((reached.status, reached.karma), (KarmaStatus::Stable, 3));
    assert!(
        p.store
            .in_tier(&stream(), &candidate, store::Tier::PassedHuman)
    );

    // More votes after the threshold do not announce it again.
    p.vote(&testers[2], "43.20261120.0", 0).await;
    p.vote(&testers[1], "43.20261120.0", 1).await;
    assert!(
        tests::eventually(release_support::WAIT, || {
            p.store
                .read_votes(&stream(), &candidate)
                .unwrap()
                .iter()
                .any(|v| v.karma == 0)
        })
        .await
    );
    let seen = watch.settle(Duration::from_secs(1)).await;
    assert_eq!(
        release_support::of_topic(seen, THRESHOLD).len(),
        1,
        "announced once per candidate"
    );

    watch.close().await;
    p.stop().await;
}

/// The distinct message ids among `lines`, in the order they first came. The bus delivers at
/// least once and a step may say the same thing twice under the same id (two arches' passes
/// racing to request votes), so what a listener sees as news is a new id.
fn distinct_ids<'a>(lines: impl IntoIterator<Item = &'a RecordLine>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for id in lines.into_iter().filter_map(|l| l.id.clone()) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

/// Waits until `count` distinct messages of `topic` were seen; their ids.
async fn wait_distinct(watch: &mut tests::Watch, topic: &str, count: usize) -> Vec<String> {
    let mut seen = count;
    loop {
        let lines = wait_topic(watch, topic, seen).await;
        let ids = distinct_ids(&lines);
        if ids.len() >= count || lines.len() < seen {
            return ids;
        }
        seen = lines.len() + 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passed_human_follows_the_current_tally_down_and_up_again() {
    const REQUESTED: &str = "fortnight.candidate.testing.requested";
    let testers = testers();
    let p = Pipeline::start(Options::default()).await;
    let mut watch = p.watch(&[THRESHOLD, REQUESTED]).await;
    p.nightly_tested("43.20261120.0", None).await;
    let candidate = version("43.20261120.0");
    let in_human_tier = || {
        p.store
            .in_tier(&stream(), &candidate, store::Tier::PassedHuman)
    };
    let first_request = wait_distinct(&mut watch, REQUESTED, 1).await;
    assert_eq!(first_request.len(), 1, "votes were requested");

    for tester in &testers {
        p.vote(tester, "43.20261120.0", 1).await;
    }
    wait_topic(&mut watch, THRESHOLD, 1).await;
    assert!(in_human_tier(), "karma +3 links the candidate");

    // Two testers change their minds: karma +1, then -1, below the stable threshold (+3).
    p.vote(&testers[0], "43.20261120.0", -1).await;
    p.vote(&testers[1], "43.20261120.0", -1).await;
    let requests = wait_distinct(&mut watch, REQUESTED, 2).await;
    assert_eq!(
        requests.len(),
        2,
        "falling below the threshold asks for votes again, in a new request, not a replay"
    );
    assert_eq!(requests[0], first_request[0]);
    assert!(
        !in_human_tier(),
        "the link is gone before the new request is published"
    );
    assert!(
        tests::eventually(release_support::WAIT, || p
            .store
            .read_votes(&stream(), &candidate)
            .unwrap()
            .iter()
            .filter(|v| v.karma == -1)
            .count()
            == 2)
        .await,
        "both changed votes recorded"
    );
    assert!(!in_human_tier(), "karma -1 keeps it out");

    // Back to +3: linked and announced again, under a new id.
    p.vote(&testers[0], "43.20261120.0", 1).await;
    p.vote(&testers[1], "43.20261120.0", 1).await;
    let reached = wait_topic(&mut watch, THRESHOLD, 2).await;
    assert_eq!(
        reached.len(),
        2,
        "reaching the threshold again announces it"
    );
    assert_ne!(reached[0].id, reached[1].id);
    let again: KarmaThresholdReached = serde_json::from_value(reached[1].body.clone()).unwrap();
    assert_eq!((again.status, again.karma), (KarmaStatus::Stable, 3));
    assert!(in_human_tier(), "karma +3 links the candidate again");

    let seen = watch.settle(Duration::from_secs(1)).await;
    assert_eq!(
        distinct_ids(release_support::of_topic(seen, REQUESTED)).len(),
        2
    );
    assert_eq!(release_support::of_topic(seen, THRESHOLD).len(), 2);
    watch.close().await;
    p.stop().await;
}
