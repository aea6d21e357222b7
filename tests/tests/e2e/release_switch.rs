//! Moving the two-week releases to the next release's stream, on the real broker: a beta
//! stream's releases carry the label on the message, in the stream JSON and on the page; at its
//! `switch_at` the releaser's clock announces the switch once, the old stream's ticks release
//! nothing and the new stream's releases lose the label; an operator's switch with
//! `release_now` releases at once, is audited, is not doubled when delivered again, and is
//! refused from an untrusted sender or once the stream has taken over; the release timer fires
//! no tick for the stream that handed over, so none is overdue.

use crate::release_support::{
    self, BrokerUser, Options, Pipeline, STREAM, SUCCESSOR, dead_letter_with, stream, version,
    wait_topic,
};

use chrono::Utc;
use gate::succession::{Role, two_week_role};
use messages::{
    Message, Outgoing, OverrideSwitch, ReleasePublished, ReleaseSkipped, Stream, StreamSwitched,
    SwitchCause,
};
use releaser::overrides::Action;
use tests::browser::{StaticServer, dump_dom};
use tests::config::{Table, Value, toml};

const PUBLISHED: &str = ReleasePublished::TOPIC;
const SKIPPED: &str = ReleaseSkipped::TOPIC;
const SWITCHED: &str = StreamSwitched::TOPIC;

/// [`SUCCESSOR`] succeeds [`STREAM`] as its beta, with `switch_at` when given; releases need
/// no karma.
async fn succession(switch_at: Option<&str>, operators: &[&BrokerUser]) -> Pipeline {
    let mut beta = toml! { prerelease = "beta" };
    if let Some(at) = switch_at {
        beta.insert("switch_at".to_owned(), Value::from(at));
    }
    Pipeline::start(Options {
        karma_required: false,
        operators: operators.iter().map(|o| o.name.clone()).collect(),
        successor: true,
        tables: Table::from_iter([(
            "streams".to_owned(),
            Value::Table(Table::from_iter([(
                SUCCESSOR.to_owned(),
                Value::Table(beta),
            )])),
        )]),
        ..Options::default()
    })
    .await
}

fn stream_named(name: &str) -> Stream {
    name.parse().unwrap()
}

fn body<T: serde::de::DeserializeOwned>(line: &messages::RecordLine) -> T {
    serde_json::from_value(line.body.clone()).unwrap()
}

fn role(p: &Pipeline, name: &str) -> Role {
    two_week_role(&p.settings, &p.store, &stream_named(name), Utc::now()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beta_release_is_labelled_on_the_message_the_json_and_the_page() {
    let p = succession(Some("2099-01-01T00:00:00Z"), &[]).await;
    let mut watch = p.watch(&[PUBLISHED]).await;
    p.nightly_tested_of(&stream_named(SUCCESSOR), "44.20261110.0")
        .await;
    p.tick_of(&stream_named(SUCCESSOR), "2026-11-17T12:00:00Z")
        .await;
    let published = wait_topic(&mut watch, PUBLISHED, 1).await;
    let release: ReleasePublished = body(&published[0]);
    assert_eq!(release.stream, stream_named(SUCCESSOR));
    assert_eq!(
        release.prerelease.as_ref().map(|l| l.as_str()),
        Some("beta")
    );
    assert_eq!(published[0].body["prerelease"], "beta", "on the wire");

    site_publisher::publish(&p.settings, &p.store, Utc::now()).expect("site published");
    let site = p.store.root().join("site");
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.join(format!("streams/{SUCCESSOR}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&json["prerelease"], &json["role"]),
        (&"beta".into(), &"prerelease".into())
    );
    let current: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.join(format!("streams/{STREAM}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(current["role"], "current");
    assert!(current["prerelease"].is_null(), "{current}");

    let server = StaticServer::start(p.store.root()).expect("HTTP server on 127.0.0.1");
    let dom = dump_dom(&server.url("site/index.html")).expect("chromium loads the page");
    let section = &dom[dom
        .find(&format!("id=\"stream-{SUCCESSOR}\""))
        .expect("the beta's section")..];
    for expected in [
        "Two-week releases: beta, switches at 2099-01-01T00:00:00Z.",
        "<strong>Beta:</strong> for testing the release that follows tw; expect bugs",
        "<strong>44.20261110.0</strong> <span class=\"label\">(beta)</span>",
    ] {
        assert!(section.contains(expected), "{expected:?} in\n{section}");
    }
    let old = &dom[dom.find(&format!("id=\"stream-{STREAM}\"")).unwrap()..];
    assert!(
        old.contains("Two-week releases: current."),
        "the current stream beside it:\n{old}"
    );

    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_its_date_the_successor_takes_over_once_and_the_old_stream_releases_no_more() {
    let p = succession(Some("2026-11-10T00:00:00Z"), &[]).await;
    let mut watch = p.watch(&[PUBLISHED, SKIPPED, SWITCHED]).await;
    // The releaser's clock saw the date passed at start; it announces once the topic routes.
    let switched = wait_topic(&mut watch, SWITCHED, 1).await;
    let switch: StreamSwitched = body(&switched[0]);
    assert_eq!(
        (switch.from.as_str(), switch.to.as_str(), &switch.cause),
        (STREAM, SUCCESSOR, &SwitchCause::Date)
    );
    assert_eq!(
        switch.at,
        "2026-11-10T00:00:00Z"
            .parse::<chrono::DateTime<Utc>>()
            .unwrap()
    );
    assert!(switch.next_tick.is_some(), "the new stream's next tick");
    assert!(
        tests::eventually(release_support::WAIT, || p
            .store
            .switch_record_path(&stream_named(SUCCESSOR))
            .exists())
        .await,
        "recorded after it was announced"
    );

    // Both streams have an eligible candidate; the old stream's tick goes first, and the
    // releaser handles one message at a time, so once the new stream's release is out the
    // old one's tick has been handled.
    p.nightly_tested("43.20261124.0", None).await;
    p.nightly_tested_of(&stream_named(SUCCESSOR), "44.20261124.0")
        .await;
    p.tick("2026-11-17T12:00:00Z").await;
    p.tick_of(&stream_named(SUCCESSOR), "2026-11-17T12:00:00Z")
        .await;
    let published = wait_topic(&mut watch, PUBLISHED, 1).await;
    let release: ReleasePublished = body(&published[0]);
    assert_eq!(
        (release.stream.as_str(), release.version.as_str()),
        (SUCCESSOR, "44.20261124.0")
    );
    assert_eq!(release.prerelease, None, "no label once it took over");
    let seen = watch.wait_for(0, std::time::Duration::ZERO).await.to_vec();
    let about_old: Vec<_> = seen
        .iter()
        .filter(|l| l.topic.ends_with(PUBLISHED) || l.topic.ends_with(SKIPPED))
        .filter(|l| l.body["stream"] == STREAM)
        .collect();
    assert!(
        about_old.is_empty(),
        "the retired stream's tick: {about_old:?}"
    );
    assert_eq!(p.store.current_release(&stream()).unwrap(), None);
    assert_eq!(
        release_support::of_topic(&seen, SWITCHED).len(),
        1,
        "announced once"
    );
    assert_eq!(role(&p, SUCCESSOR), Role::Current);
    assert!(
        matches!(role(&p, STREAM), Role::Retired { ref to, .. } if to.as_str() == SUCCESSOR),
        "{}",
        role(&p, STREAM)
    );

    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_switch_releases_at_once_is_audited_and_not_doubled() {
    let operator = BrokerUser::create("operator");
    let mallory = BrokerUser::create("mallory");
    let p = succession(None, &[&operator]).await;
    let mut watch = p.watch(&[PUBLISHED, SWITCHED]).await;
    p.nightly_tested_of(&stream_named(SUCCESSOR), "44.20261124.0")
        .await;
    let asked = OverrideSwitch {
        stream: stream_named(SUCCESSOR),
        reason: "Fedora 44 is out".into(),
        operator: operator.name.clone(),
        release_now: true,
    };

    // An account that is no operator: dead-lettered before the releaser acts.
    let forged = OverrideSwitch {
        operator: mallory.name.clone(),
        ..asked.clone()
    };
    p.publish_signed(&mallory, &forged).await;
    let dead = dead_letter_with(&p, releaser::NAME, mallory.name.as_str()).await;
    assert!(
        dead.reason.contains(OverrideSwitch::TOPIC),
        "{}",
        dead.reason
    );
    assert!(matches!(role(&p, SUCCESSOR), Role::Prerelease { .. }));

    let message = Outgoing::new(uuid::Uuid::new_v4(), &asked);
    p.send_signed(&operator, &message).await;
    let published = wait_topic(&mut watch, PUBLISHED, 1).await;
    let release: ReleasePublished = body(&published[0]);
    assert_eq!(
        (release.stream.as_str(), release.version.as_str()),
        (SUCCESSOR, "44.20261124.0")
    );
    assert_eq!(release.prerelease, None);
    let switched = wait_topic(&mut watch, SWITCHED, 1).await;
    let switch: StreamSwitched = body(&switched[0]);
    assert_eq!(
        switch.cause,
        SwitchCause::Operator {
            operator: operator.name.clone(),
            reason: "Fedora 44 is out".into(),
        }
    );

    // The same message again: the same announcements under the same ids, nothing new.
    p.send_signed(&operator, &message).await;
    let published_again = wait_topic(&mut watch, PUBLISHED, 2).await;
    let switched_again = wait_topic(&mut watch, SWITCHED, 2).await;
    assert_eq!(switched_again[1].id, switched[0].id);
    assert_eq!(published_again[1].id, published[0].id);
    let log = releaser::overrides::read_log(&p.store, &stream_named(SUCCESSOR)).unwrap();
    assert_eq!(
        log.iter().map(|e| e.action).collect::<Vec<_>>(),
        [Action::Switch]
    );
    assert_eq!(log[0].operator, operator.name);

    // Another request once it took over is refused.
    p.publish_signed(&operator, &asked).await;
    let refused = dead_letter_with(&p, releaser::NAME, "already moved to it").await;
    assert!(refused.reason.contains(SUCCESSOR), "{}", refused.reason);
    assert_eq!(
        p.store
            .list_versions(&stream_named(SUCCESSOR), store::Tier::Releases)
            .unwrap(),
        [version("44.20261124.0")]
    );

    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_fires_no_tick_for_a_stream_whose_successor_took_over() {
    let anchor = (Utc::now() - chrono::TimeDelta::days(3)).to_rfc3339();
    let stream = |n: u32| {
        toml! {
            arches = ["x86_64"]
            input_refs = { x86_64 = (format!("fedora/{n}/x86_64/atomic-host")) }
            ostree_repo = "/nonexistent"
            formats = ["qcow2"]
            [twoweek]
            release_refs = { x86_64 = (format!("fedora/{n}/x86_64/release")) }
            anchor = (anchor.as_str())
            period_days = 1
        }
    };
    let mut f44 = stream(44);
    tests::config::merge(
        &mut f44,
        toml! {
            succeeds = "f43"
            switch_at = "2026-01-01T00:00:00Z"
        },
    );
    let bus = tests::TestBus::with_config(toml! {
        [streams]
        f43 = (stream(43))
        f44 = (f44)
    });
    let mut watch = bus.watch(&[messages::TwoweekTimerFired::TOPIC]).await;
    let timer = tests::RunningTimer::start(bus.settings());
    // One round fires the streams in name order, so once f44's tick is out, f43's would be.
    let fired = wait_topic(&mut watch, messages::TwoweekTimerFired::TOPIC, 1).await;
    timer.stop().await;
    let streams: Vec<_> = fired.iter().map(|l| l.body["stream"].clone()).collect();
    assert_eq!(streams, ["f44"], "the retired f43 gets no tick");
    let store = store::Store::open(bus.store_root()).unwrap();
    let f43 = stream_named("f43");
    assert_eq!(release_timer::load_state(&store, &f43).unwrap(), None);
    let stale = release_timer::stale::pulse(
        &store,
        &f43,
        &bus.settings().streams[&f43],
        &two_week_role(&bus.settings(), &store, &f43, Utc::now()).unwrap(),
        Utc::now() + chrono::TimeDelta::days(1),
    )
    .unwrap();
    assert_eq!(stale.next_tick, None, "{stale:?}");
    assert!(
        stale
            .watched
            .iter()
            .all(|s| s.kind != messages::StaleKind::ReleaseOverdue),
        "no tick to be overdue: {stale:?}"
    );
    watch.close().await;
    bus.cleanup().await;
}
