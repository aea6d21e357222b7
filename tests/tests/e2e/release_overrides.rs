//! Operator overrides on the real broker: a forced release past failed gates, a hold that stops
//! ticks until unhold, each with its audit entry; overrides from a spoofed or unlisted user are
//! refused.

use crate::release_support;

use messages::{OverrideHold, OverrideRelease, OverrideUnhold, ReleasePublished, ReleaseSkipped};
use release_support::{
    BrokerUser, Options, Pipeline, arch, dead_letter_with, stream, version, wait_topic,
};
use releaser::overrides::Action;

const SKIPPED: &str = "fortnight.release.skipped";
const PUBLISHED: &str = "fortnight.release.published";

/// A pipeline whose only operator is `operator`, releasing without karma.
async fn operated_by(operator: &BrokerUser) -> Pipeline {
    Pipeline::start(Options {
        operators: vec![operator.name.clone()],
        karma_required: false,
        ..Options::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_release_and_a_hold_are_applied_and_audited() {
    let operator = BrokerUser::create("operator");
    let p = operated_by(&operator).await;
    let mut watch = p.watch(&[SKIPPED, PUBLISHED]).await;

    // A candidate failing on aarch64, released anyway by an operator.
    let failing = p
        .nightly_tested("43.20261110.0", Some(("aarch64", "boot-smoke")))
        .await;
    let body = p.override_body(
        &operator,
        Some("43.20261110.0"),
        "security fix, aarch64 failure is a known flake",
    );
    p.override_as(&operator, OverrideRelease(body)).await;
    let published = wait_topic(&mut watch, PUBLISHED, 1).await;
    let release: ReleasePublished = serde_json::from_value(published[0].body.clone()).unwrap();
    assert_eq!(release.version, version("43.20261110.0"));
    assert!(release.forced, "recorded as forced");
    assert_eq!(release.period, None);
    assert!(
        release.reason.contains("security fix"),
        "{}",
        release.reason
    );
    assert_eq!(
        p.release_commit("aarch64").as_ref(),
        Some(&failing[&arch("aarch64")])
    );

    // Hold: the next tick releases nothing even though a candidate is eligible.
    p.nightly_tested("43.20261116.0", None).await;
    let hold = p.override_body(&operator, None, "mass rebuild in progress");
    p.override_as(&operator, OverrideHold(hold)).await;
    assert!(tests::eventually(release_support::WAIT, || p.audit_log().len() == 2).await);
    p.tick("2026-11-17T12:00:00Z").await;
    let skipped = wait_topic(&mut watch, SKIPPED, 1).await;
    let skipped: ReleaseSkipped = serde_json::from_value(skipped[0].body.clone()).unwrap();
    assert_eq!(skipped.policy, "hold");
    let reasons = skipped.candidates[0].reasons.join("; ");
    assert!(
        reasons.contains(&format!(
            "stream on hold by {}: mass rebuild in progress",
            operator.name
        )),
        "{reasons}"
    );
    assert_eq!(
        p.store.current_release(&stream()).unwrap(),
        Some(version("43.20261110.0"))
    );

    // Unhold, and the replayed tick of the same period releases the eligible candidate.
    let unhold = p.override_body(&operator, None, "rebuild done");
    p.override_as(&operator, OverrideUnhold(unhold)).await;
    assert!(tests::eventually(release_support::WAIT, || p.audit_log().len() == 3).await);
    p.tick("2026-11-17T12:00:00Z").await;
    let published = wait_topic(&mut watch, PUBLISHED, 2).await;
    let release: ReleasePublished = serde_json::from_value(published[1].body.clone()).unwrap();
    assert_eq!(
        (release.version.as_str(), release.forced),
        ("43.20261116.0", false)
    );

    let log = p.audit_log();
    let actions: Vec<Action> = log.iter().map(|e| e.action).collect();
    assert_eq!(actions, [Action::Release, Action::Hold, Action::Unhold]);
    for entry in &log {
        assert_eq!(entry.operator, operator.name, "who");
        assert!(!entry.reason.is_empty(), "why");
    }
    assert_eq!(log[0].version, Some(version("43.20261110.0")));
    assert!(
        log[0].at <= log[1].at && log[1].at <= log[2].at,
        "when, in order"
    );

    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overrides_from_a_spoofed_or_unlisted_user_are_refused() {
    let operator = BrokerUser::create("operator");
    let other = BrokerUser::create("operator");
    let mallory = BrokerUser::create("mallory");
    let p = Pipeline::start(Options {
        operators: vec![operator.name.clone(), other.name.clone()],
        karma_required: false,
        ..Options::default()
    })
    .await;
    p.nightly_tested("43.20261110.0", None).await;

    // What the releaser says of a message that claims another's name.
    let spoofed_by_other = |letter: bus::dead_letters::DeadLetter| {
        assert!(
            letter
                .reason
                .contains(&format!("published by broker user {}", other.name)),
            "{}",
            letter.reason
        );
    };
    // What the runtime says of a topic from an account that is not an operator.
    let refused = |topic: &str| {
        format!(
            "untrusted sender: broker user {} may not send {topic} ",
            mallory.name
        )
    };

    // One operator claims to be another.
    let claimed = p.override_body(&operator, Some("43.20261110.0"), "trust me");
    p.override_as(&other, OverrideRelease(claimed)).await;
    spoofed_by_other(dead_letter_with(&p, "releaser", "override claims operator").await);

    // Mallory, as himself, is not an operator: the override never reaches the releaser's step.
    let own = p.override_body(&mallory, Some("43.20261110.0"), "trust me");
    p.override_as(&mallory, OverrideRelease(own)).await;
    dead_letter_with(&p, "releaser", &refused("fortnight.override.release")).await;

    // A tick fired by hand is an operator's act too: an operator cannot claim to be another,
    // and Mallory cannot fire one at all.
    for (sender, claimed) in [(&other, &operator), (&mallory, &mallory)] {
        let tick = release_timer::tick_message(
            &stream(),
            "2026-11-17T12:00:00Z".parse().unwrap(),
            chrono::Utc::now(),
            Some(claimed.name.clone()),
        );
        p.send_signed(sender, &tick).await;
    }
    spoofed_by_other(dead_letter_with(&p, "releaser", "manual tick claims operator").await);
    dead_letter_with(&p, "releaser", &refused("fortnight.twoweek.timer.fired")).await;
    assert!(
        !p.store.stream_dir(&stream()).join(".periods").exists(),
        "refused ticks decide nothing"
    );

    assert!(
        p.audit_log().is_empty(),
        "refused overrides are not in force"
    );
    assert_eq!(
        p.store.current_release(&stream()).unwrap(),
        None,
        "nothing was released"
    );
    p.stop().await;
}
