//! The release pipeline on a three-node RabbitMQ cluster of this test's own (the shared broker
//! is not touched, so this binary may run beside the others): quorum queues, `amqp_urls`
//! naming every node, and the node leading the consumers' queues killed mid-pipeline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use messages::RecordLine;
use messages::{CandidateTestingRequested, ReleasePublished};
use tests::broker::Cluster;
use tests::eventually;
use tests::pipeline::{ARCHES, Options, Pipeline, arch, version, wait_topic};

const TESTING: &str = "fortnight.candidate.testing.requested";
const PUBLISHED: &str = "fortnight.release.published";
const CONSUMERS: [&str; 2] = ["karma-tracker", "releaser"];
const WAIT: Duration = Duration::from_secs(60);

/// The distinct message ids of `lines`: a redelivered step publishes the same id again.
fn distinct_ids(lines: &[RecordLine]) -> BTreeSet<String> {
    lines.iter().filter_map(|l| l.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_node_that_leads_the_queues_loses_nothing_doubles_nothing_and_releases() {
    let booting = Instant::now();
    // Declared first, so it is dropped last: every node stops even when an assertion fails.
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(3))
        .await
        .expect("the cluster starts");
    println!("three-node cluster up in {:.1?}", booting.elapsed());

    let mut p = Pipeline::start(Options {
        karma_required: false,
        brokers: cluster.amqp_urls(),
        quorum_queues: true,
        ..Options::default()
    })
    .await;
    let queues: Vec<String> = CONSUMERS.iter().map(|c| p.bus.queue(c)).collect();
    let leaders: BTreeMap<String, String> = cluster
        .list_queues(&["type", "leader"])
        .into_iter()
        .filter_map(|fields| match &fields[..] {
            [name, kind, leader] if queues.contains(name) => {
                assert_eq!(kind, "quorum", "{name} is a quorum queue");
                Some((name.clone(), leader.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        leaders.len(),
        2,
        "both consumers' queues exist: {leaders:?}"
    );
    // The karma-tracker's queue's leader, which also leads the releaser's when the two
    // consumers connected to the same node (a quorum queue's leader is placed on the node its
    // declaring client is connected to).
    let doomed = leaders[&queues[0]].clone();
    let survivors: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|node| node.name != doomed)
        .map(|node| node.amqp_url())
        .collect();
    // The recording is the test's instrument, not what is tested: it listens on a survivor.
    let mut observer = p.bus.settings();
    observer.amqp_urls = survivors;
    let mut watch = tests::Watch::start(&observer, &[TESTING, PUBLISHED]).await;

    let first = p.nightly_tested("43.20261125.0", None).await;
    let requested = wait_topic(&mut watch, TESTING, 1).await;
    assert_eq!(requested.len(), 1, "the first candidate went to testing");

    // The second nightly's results are confirmed (so on a majority of nodes) and in flight
    // when the node leading the queues dies.
    let newer = p.nightly_tested("43.20261126.0", None).await;
    let doomed_node = cluster.node(&doomed);
    tokio::task::block_in_place(|| doomed_node.kill());
    println!("killed {doomed}, which led {leaders:?}");
    p.reconnect_publisher().await;

    let deadline = Instant::now() + WAIT;
    let mut requested = wait_topic(&mut watch, TESTING, 2).await;
    while distinct_ids(&requested).len() < 2 && Instant::now() < deadline {
        requested = wait_topic(&mut watch, TESTING, requested.len() + 1).await;
    }
    let versions: BTreeSet<_> = requested
        .iter()
        .map(|l| {
            serde_json::from_value::<CandidateTestingRequested>(l.body.clone())
                .unwrap()
                .version
        })
        .collect();
    assert_eq!(
        versions,
        BTreeSet::from([version("43.20261125.0"), version("43.20261126.0")]),
        "the candidate in flight when the node died went to testing too"
    );

    p.tick("2026-11-17T12:00:00Z").await;
    let published = wait_topic(&mut watch, PUBLISHED, 1).await;
    assert!(
        !published.is_empty(),
        "the release happened after the node died"
    );
    // Anything that would be doubled by a redelivery arrives within a few quiet seconds.
    let seen = watch.settle(Duration::from_secs(3)).await.to_vec();
    let published: Vec<RecordLine> = seen
        .iter()
        .filter(|l| l.topic.ends_with(PUBLISHED))
        .cloned()
        .collect();
    let requested: Vec<RecordLine> = seen
        .iter()
        .filter(|l| l.topic.ends_with(TESTING))
        .cloned()
        .collect();
    assert_eq!(
        distinct_ids(&requested).len(),
        2,
        "one testing request per candidate, however often redelivered"
    );
    assert_eq!(
        distinct_ids(&published).len(),
        1,
        "exactly one release for the period"
    );
    let release: ReleasePublished = serde_json::from_value(published[0].body.clone()).unwrap();
    assert_eq!(
        release.version,
        version("43.20261126.0"),
        "the newest that passed"
    );
    for a in ARCHES {
        assert_eq!(
            p.release_commit(a).as_ref(),
            Some(&newer[&arch(a)]),
            "the release ref of {a} is the newest candidate's commit"
        );
        assert_ne!(first[&arch(a)], newer[&arch(a)]);
    }
    assert_eq!(
        p.store.current_release(&tests::pipeline::stream()).unwrap(),
        Some(version("43.20261126.0"))
    );

    for queue in &queues {
        let settled = eventually(WAIT, || {
            ["messages", "messages_unacknowledged"]
                .iter()
                .all(|column| cluster.queue_info(queue, column).as_deref() == Some("0"))
        })
        .await;
        assert!(settled, "{queue} has no message left, acked or not");
    }
    for consumer in CONSUMERS {
        let letters = p.bus.dead_letters(consumer).await;
        assert!(
            letters.is_empty(),
            "no dead letter of {consumer}: {:?}",
            letters.iter().map(|l| &l.reason).collect::<Vec<_>>()
        );
    }

    let forgetting = Instant::now();
    tokio::task::block_in_place(|| cluster.forget(&doomed));
    println!("forgot {doomed} in {:.1?}", forgetting.elapsed());
    watch.close().await;
    p.stop().await;
    drop(cluster);
}
