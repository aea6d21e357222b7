//! One release per stream and period: a tick delivered twice to two releaser replicas, the
//! same tick replayed later, and a release interrupted half-way then finished by the replay.

use crate::release_support;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use messages::Period;
use messages::ReleasePublished;
use release_support::{ARCHES, Options, Pipeline, arch, stream, version, wait_topic};
use releaser::periods::{self, PeriodState};

const PUBLISHED: &str = "fortnight.release.published";

fn ids(lines: &[messages::RecordLine]) -> BTreeSet<String> {
    lines.iter().filter_map(|l| l.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_and_a_replayed_tick_on_two_replicas_release_once() {
    let p = Pipeline::start(Options {
        karma_required: false,
        releaser_replicas: 2,
        ..Options::default()
    })
    .await;
    let mut watch = p.watch(&[PUBLISHED]).await;
    p.nightly_tested("43.20261110.0", None).await;

    let tick = p.tick("2026-11-17T12:00:00Z").await;
    p.publish(&tick).await;
    let first = wait_topic(&mut watch, PUBLISHED, 2).await;
    let record = p.release_dir("43.20261110.0").join("release.json");
    let written = std::fs::read(&record).unwrap();

    // Later, an operator replays the same tick.
    p.publish(&tick).await;
    let all = wait_topic(&mut watch, PUBLISHED, 3).await;
    watch.settle(Duration::from_secs(1)).await;
    assert_eq!(first.len(), 2, "each delivery of the tick is answered");
    assert_eq!(all.len(), 3);
    assert_eq!(
        ids(&all).len(),
        1,
        "every answer is the same message, which downstream deduplicates"
    );
    let bodies: BTreeSet<String> = all.iter().map(|l| l.body.to_string()).collect();
    assert_eq!(bodies.len(), 1, "identical bodies");
    assert_eq!(
        std::fs::read(&record).unwrap(),
        written,
        "release.json was written once"
    );
    let released = tests::entries(&p.store.tier_dir(&stream(), store::Tier::Releases));
    assert_eq!(
        released.len(),
        2,
        "one release directory and `latest`: {released:?}"
    );

    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_interrupted_half_way_is_finished_by_replaying_the_tick() {
    let p = Pipeline::start(Options {
        karma_required: false,
        ..Options::default()
    })
    .await;
    let mut watch = p.watch(&[PUBLISHED]).await;
    let commits = p.nightly("43.20261110.0");

    // The state a releaser leaves when it dies after choosing the candidate and linking the
    // first arch's images: the period says "releasing", nothing else moved.
    let period: Period = "2026-11-17T12:00:00Z".parse().unwrap();
    let candidate = version("43.20261110.0");
    periods::write(
        &p.store,
        &stream(),
        &period,
        PeriodState::Releasing {
            version: candidate.clone(),
        },
        Utc::now(),
    )
    .unwrap();
    for (a, commit) in &commits {
        // Test reports in place, but no tests.passed messages: only the tick may finish it.
        p.write_report("43.20261110.0", a.as_str(), commit, &[]);
    }
    let first_arch = arch(ARCHES[0]);
    store::link_tree(
        &p.store.images_dir(&stream(), &candidate, &first_arch),
        &p.release_dir("43.20261110.0").join(first_arch.as_str()),
    )
    .unwrap();
    assert_eq!(p.store.current_release(&stream()).unwrap(), None);

    let tick = p.tick("2026-11-17T12:00:00Z").await;
    let published = wait_topic(&mut watch, PUBLISHED, 1).await;
    let release: ReleasePublished = serde_json::from_value(published[0].body.clone()).unwrap();
    assert_eq!(release.version, candidate);
    for a in ARCHES {
        assert_eq!(
            p.release_commit(a).as_ref(),
            Some(&commits[&arch(a)]),
            "{a} promoted"
        );
    }
    assert_eq!(
        p.store.current_release(&stream()).unwrap(),
        Some(candidate.clone())
    );
    assert_eq!(
        periods::read(&p.store, &stream(), &period).unwrap(),
        Some(PeriodState::Released { version: candidate })
    );

    p.publish(&tick).await;
    let again = wait_topic(&mut watch, PUBLISHED, 2).await;
    watch.settle(Duration::from_secs(1)).await;
    assert_eq!(
        ids(&again).len(),
        1,
        "the replay announces the same release, nothing new"
    );

    // A newer eligible candidate, then a replayed tick of a past period: nothing is released
    // for it. The current period's tick after it (one consumer, so handled in order) shows
    // the stale one was handled.
    p.nightly_tested("43.20261111.0", None).await;
    p.tick("2026-11-03T12:00:00Z").await;
    p.publish(&tick).await;
    let after = wait_topic(&mut watch, PUBLISHED, 3).await;
    assert_eq!(after.len(), 3);
    assert_eq!(ids(&after).len(), 1, "still the one release");
    assert_eq!(
        p.store.current_release(&stream()).unwrap(),
        Some(version("43.20261110.0"))
    );

    watch.close().await;
    p.stop().await;
}
