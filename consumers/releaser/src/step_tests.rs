//! The releaser's decisions through its typed input, without a broker (and without a
//! candidate: releasing one needs an OSTree repository, which the broker suites have).

use std::path::Path;
use std::sync::Arc;

use messages::{
    KarmaThresholdReached, OverrideBlock, OverrideRelease, OverrideSwitch, ReleaseSkipped,
    StreamSwitched,
};
use serde_json::json;
use tests::config::toml;
use tests::step::{incoming, published, refused};

use super::*;

const ANCHOR: &str = "2026-01-01T00:00:00Z";

/// A two-week stream ticking every 14 days from [`ANCHOR`], operated by `ops`.
fn releaser(root: &Path) -> Releaser {
    let mut config = toml! { operators = ["ops"] };
    tests::config::merge(
        &mut config,
        tests::config::store_config(
            root,
            "fedora/43/x86_64/atomic-host",
            root,
            toml! {
                [twoweek]
                release_refs = { x86_64 = "fedora/43/x86_64/stable" }
                anchor = (ANCHOR)
            },
        ),
    );
    let settings =
        Settings::from_toml(&tests::config::to_toml(&config)).expect("a valid configuration");
    Releaser::new(Arc::new(settings)).expect("the store opens")
}

fn tick(stream: &str, period: &str, operator: Option<&str>) -> TwoweekTimerFired {
    serde_json::from_value(json!({
        "stream": stream, "period": period, "scheduled_for": period, "fired_at": period,
        "operator": operator,
    }))
    .expect("a valid tick")
}

fn body(operator: &str, version: Option<&str>, reason: &str) -> Override {
    serde_json::from_value(json!({
        "stream": "f43", "version": version, "operator": operator, "reason": reason,
    }))
    .expect("a valid override")
}

#[tokio::test]
async fn a_tick_with_no_candidate_skips_its_period_once() {
    let root = tempfile::tempdir().unwrap();
    let step = releaser(root.path());
    let message = incoming(&tick("f43", ANCHOR, None), Some("fortnight"));
    let skipped = published(bus::outcome(&step, &message).await);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].topic, ReleaseSkipped::TOPIC);
    let period: Period = ANCHOR.parse().unwrap();
    let state = periods::read(&step.store, &"f43".parse().unwrap(), &period).unwrap();
    assert_eq!(state, Some(PeriodState::Skipped));
    let again = published(bus::outcome(&step, &message).await);
    assert_eq!(
        again[0].id, skipped[0].id,
        "a replayed tick announces the same skip"
    );
}

#[tokio::test]
async fn ticks_off_the_schedule_from_the_future_or_of_an_unknown_stream_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let step = releaser(root.path());
    for (tick, expected) in [
        (
            tick("f43", "2026-01-02T00:00:00Z", None),
            "is not a tick of the stream's schedule",
        ),
        (
            tick("f43", "2099-01-01T00:00:00Z", None),
            "is in the future",
        ),
        (tick("f44", ANCHOR, None), "unknown stream f44"),
    ] {
        let reason = refused(bus::outcome(&step, &incoming(&tick, Some("fortnight"))).await);
        assert!(reason.contains(expected), "{expected}: {reason}");
    }
}

#[tokio::test]
async fn a_manual_tick_or_override_must_come_from_the_operator_it_names() {
    let root = tempfile::tempdir().unwrap();
    let step = releaser(root.path());
    let manual = incoming(&tick("f43", ANCHOR, Some("ops")), Some("mallory"));
    let reason = refused(bus::outcome(&step, &manual).await);
    assert!(reason.contains("manual tick claims operator"), "{reason}");
    let not_operator = incoming(
        &OverrideBlock(body("eve", Some("43.1"), "bad")),
        Some("eve"),
    );
    let reason = refused(bus::outcome(&step, &not_operator).await);
    assert!(reason.contains("eve is not an operator"), "{reason}");
    let stream = "f43".parse().unwrap();
    assert_eq!(
        overrides::read_log(&step.store, &stream).unwrap(),
        Vec::new()
    );
}

#[tokio::test]
async fn an_override_needs_a_reason_and_its_version_and_is_logged_once() {
    let root = tempfile::tempdir().unwrap();
    let step = releaser(root.path());
    let no_reason = incoming(&OverrideBlock(body("ops", Some("43.1"), " ")), Some("ops"));
    let reason = refused(bus::outcome(&step, &no_reason).await);
    assert!(reason.contains("needs a reason"), "{reason}");
    let no_version = incoming(&OverrideRelease(body("ops", None, "urgent")), Some("ops"));
    let reason = refused(bus::outcome(&step, &no_version).await);
    assert!(reason.contains("needs the candidate's version"), "{reason}");

    let block = incoming(
        &OverrideBlock(body("ops", Some("43.1"), "broken boot")),
        Some("ops"),
    );
    for _ in 0..2 {
        assert_eq!(published(bus::outcome(&step, &block).await), Vec::new());
    }
    let log = overrides::read_log(&step.store, &"f43".parse().unwrap()).unwrap();
    assert_eq!(
        log.len(),
        1,
        "a redelivered override is logged once: {log:?}"
    );
    assert_eq!(log[0].action, Action::Block);
}

#[tokio::test]
async fn a_changed_candidate_releases_nothing_where_skipped_periods_wait_for_no_pass() {
    let root = tempfile::tempdir().unwrap();
    let step = releaser(root.path());
    let unstable: KarmaThresholdReached = serde_json::from_value(json!({
        "stream": "f43", "version": "43.1", "status": "unstable", "karma": -3, "votes": [],
    }))
    .unwrap();
    assert_eq!(
        published(bus::outcome(&step, &incoming(&unstable, Some("fortnight"))).await),
        Vec::new()
    );
    let stable = KarmaThresholdReached {
        status: KarmaStatus::Stable,
        ..unstable
    };
    assert_eq!(
        published(bus::outcome(&step, &incoming(&stable, Some("fortnight"))).await),
        Vec::new()
    );
}

/// `f43` current and `f44`, its beta, succeeding it without a date, both ticking from
/// [`ANCHOR`] and operated by `ops`.
fn succession(root: &Path) -> Releaser {
    let stream = |n: u32| {
        toml! {
            arches = ["x86_64"]
            input_refs = { x86_64 = (format!("fedora/{n}/x86_64/atomic-host")) }
            ostree_repo = (tests::config::path(root))
            formats = ["qcow2"]
            [twoweek]
            release_refs = { x86_64 = (format!("fedora/{n}/x86_64/stable")) }
            anchor = (ANCHOR)
        }
    };
    let mut f44 = stream(44);
    tests::config::merge(
        &mut f44,
        toml! {
            prerelease = "beta"
            succeeds = "f43"
        },
    );
    let config = toml! {
        operators = ["ops"]
        [store]
        root = (tests::config::path(root))
        [streams]
        f43 = (stream(43))
        f44 = (f44)
    };
    let settings =
        Settings::from_toml(&tests::config::to_toml(&config)).expect("a valid configuration");
    Releaser::new(Arc::new(settings)).expect("the store opens")
}

fn switch(stream: &str, reason: &str) -> OverrideSwitch {
    serde_json::from_value(json!({
        "stream": stream, "operator": "ops", "reason": reason,
    }))
    .expect("a valid switch")
}

#[tokio::test]
async fn an_operators_switch_is_announced_once_and_ends_the_old_streams_ticks() {
    let root = tempfile::tempdir().unwrap();
    let step = succession(root.path());
    let old_tick = incoming(&tick("f43", ANCHOR, None), Some("fortnight"));

    let asked = incoming(&switch("f44", "Fedora 44 is out"), Some("ops"));
    let announced = published(bus::outcome(&step, &asked).await);
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].topic, StreamSwitched::TOPIC);
    assert_eq!(announced[0].body["from"], "f43");
    assert!(
        published(bus::outcome(&step, &old_tick).await).is_empty(),
        "the old stream's tick decides nothing"
    );
    let forced = incoming(
        &OverrideRelease(body("ops", Some("43.1"), "one more")),
        Some("ops"),
    );
    let reason = refused(bus::outcome(&step, &forced).await);
    assert!(
        reason.contains("cannot force-release f43 43.1: retired"),
        "{reason}"
    );
    let f43: Stream = "f43".parse().unwrap();
    assert!(
        overrides::read_log(&step.store, &f43).unwrap().is_empty(),
        "not logged"
    );
    assert_eq!(
        periods::read(&step.store, &f43, &ANCHOR.parse().unwrap()).unwrap(),
        None
    );

    let again = published(bus::outcome(&step, &asked).await);
    assert_eq!(
        again[0].id, announced[0].id,
        "asked again: the same announcement"
    );
    let other = incoming(&switch("f44", "once more"), Some("ops"));
    let reason = refused(bus::outcome(&step, &other).await);
    assert!(reason.contains("already moved to it from f43"), "{reason}");
    let log = overrides::read_log(&step.store, &"f44".parse().unwrap()).unwrap();
    assert_eq!(
        log.iter().map(|e| e.action).collect::<Vec<_>>(),
        [Action::Switch]
    );

    let nowhere = incoming(&switch("f43", "wrong way"), Some("ops"));
    let reason = refused(bus::outcome(&step, &nowhere).await);
    assert!(reason.contains("it succeeds no stream"), "{reason}");
}
