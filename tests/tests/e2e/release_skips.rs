//! Ticks that release nothing: every candidate is listed with why it is not eligible, and the
//! `release-next-pass` policy releases the next candidate that becomes eligible without a tick.

use crate::release_support;

use messages::{OverrideBlock, ReleasePublished, ReleaseSkipped};
use release_support::{BrokerUser, Options, Pipeline, stream, testers, version, wait_topic};

const SKIPPED: &str = "fortnight.release.skipped";
const PUBLISHED: &str = "fortnight.release.published";
const THRESHOLD: &str = "fortnight.karma.threshold.reached";

fn reasons_of(skipped: &ReleaseSkipped, v: &str) -> String {
    skipped
        .candidates
        .iter()
        .find(|c| c.version == version(v))
        .unwrap_or_else(|| panic!("{v} is listed: {skipped:?}"))
        .reasons
        .join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstable_blocked_and_failing_candidates_are_skipped_each_with_its_reason() {
    let voters = testers();
    let operator = BrokerUser::create("operator");
    let p = Pipeline::start(Options {
        operators: vec![operator.name.clone()],
        ..Options::default()
    })
    .await;
    let mut watch = p.watch(&[SKIPPED, PUBLISHED, THRESHOLD]).await;

    p.nightly_tested("43.20261120.0", None).await;
    p.nightly_tested("43.20261121.0", None).await;
    p.nightly_tested("43.20261122.0", Some(("aarch64", "boot-smoke")))
        .await;
    for voter in &voters {
        p.vote(voter, "43.20261120.0", -1).await;
        p.vote(voter, "43.20261121.0", 1).await;
    }
    assert_eq!(
        wait_topic(&mut watch, THRESHOLD, 2).await.len(),
        2,
        "both candidates reached a threshold"
    );
    let block = p.override_body(
        &operator,
        Some("43.20261121.0"),
        "kernel regression, rhbz#1",
    );
    p.override_as(&operator, OverrideBlock(block)).await;
    assert!(
        tests::eventually(release_support::WAIT, || p.audit_log().len() == 1).await,
        "the block is in the audit log"
    );

    p.tick("2026-11-17T12:00:00Z").await;
    let skipped = wait_topic(&mut watch, SKIPPED, 1).await;
    let skipped: ReleaseSkipped = serde_json::from_value(skipped[0].body.clone()).unwrap();
    assert_eq!(skipped.candidates.len(), 3);
    assert!(
        reasons_of(&skipped, "43.20261120.0")
            .contains("karma -3 reached the unstable threshold -3")
    );
    assert!(reasons_of(&skipped, "43.20261121.0").contains(&format!(
        "blocked by {}: kernel regression, rhbz#1",
        operator.name
    )));
    assert!(reasons_of(&skipped, "43.20261122.0").contains("aarch64: failed tests: boot-smoke"));
    assert_eq!(
        (skipped.current_release, skipped.current_release_age_seconds),
        (None, None)
    );
    assert_eq!(skipped.policy, "skip");
    assert!(
        wait_topic(&mut watch, PUBLISHED, 0).await.is_empty(),
        "nothing was released"
    );
    assert_eq!(
        p.release_commit("x86_64"),
        None,
        "the release ref was not created"
    );

    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_eligible_reports_the_age_and_release_next_pass_releases_without_a_tick() {
    let p = Pipeline::start(Options {
        karma_required: false,
        release_next_pass: true,
        ..Options::default()
    })
    .await;
    let mut watch = p.watch(&[SKIPPED, PUBLISHED]).await;

    p.nightly_tested("43.20261101.0", None).await;
    p.tick("2026-11-03T12:00:00Z").await;
    assert_eq!(
        wait_topic(&mut watch, PUBLISHED, 1).await.len(),
        1,
        "the first period released"
    );

    p.nightly_tested("43.20261115.0", Some(("x86_64", "qemu-img-check")))
        .await;
    p.tick("2026-11-17T12:00:00Z").await;
    let skipped = wait_topic(&mut watch, SKIPPED, 1).await;
    let skipped: ReleaseSkipped = serde_json::from_value(skipped[0].body.clone()).unwrap();
    assert_eq!(skipped.period.to_string(), "2026-11-17T12:00:00Z");
    assert_eq!(skipped.current_release, Some(version("43.20261101.0")));
    let age = skipped
        .current_release_age_seconds
        .expect("the age of the current release");
    assert!((0..600).contains(&age), "released moments ago, age {age}s");
    assert_eq!(skipped.policy, "release-next-pass");
    assert_eq!(
        skipped.candidates.len(),
        1,
        "only candidates newer than the current release"
    );
    assert!(reasons_of(&skipped, "43.20261115.0").contains("x86_64: failed tests: qemu-img-check"));

    let next = p.nightly_tested("43.20261116.0", None).await;
    let published = wait_topic(&mut watch, PUBLISHED, 2).await;
    assert_eq!(
        published.len(),
        2,
        "released as soon as a candidate passed, with no tick"
    );
    let release: ReleasePublished = serde_json::from_value(published[1].body.clone()).unwrap();
    assert_eq!(release.version, version("43.20261116.0"));
    assert_eq!(
        release.period.map(|p| p.to_string()).as_deref(),
        Some("2026-11-17T12:00:00Z"),
        "the waiting period's release"
    );
    assert_eq!(release.previous, Some(version("43.20261101.0")));
    assert_eq!(
        p.release_commit("x86_64").as_ref(),
        Some(&next[&release_support::arch("x86_64")])
    );
    assert_eq!(
        p.store.current_release(&stream()).unwrap(),
        Some(version("43.20261116.0"))
    );

    watch.close().await;
    p.stop().await;
}
