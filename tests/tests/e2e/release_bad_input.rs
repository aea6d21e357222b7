//! Hostile or broken messages to the releaser and the karma-tracker are dead-lettered with a
//! reason, touch nothing in the store, and the consumers keep working.

use crate::release_support;

use chrono::Utc;
use messages::{KarmaSubmitted, Outgoing, TwoweekTimerFired};
use release_support::{
    BrokerUser, Options, Pipeline, dead_letter_with, stream, version, wait_topic,
};
use serde_json::json;

fn raw(topic: &str, body: serde_json::Value) -> messages::RecordLine {
    messages::RecordLine {
        body,
        headers: Default::default(),
        id: Some(uuid::Uuid::new_v4().to_string()),
        priority: None,
        queue: None,
        topic: topic.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ticks_and_votes_are_dead_lettered_and_the_consumers_carry_on() {
    let tester = BrokerUser::create("tester");
    let p = Pipeline::start(Options {
        karma_required: false,
        ..Options::default()
    })
    .await;
    let mut watch = p.watch(&["fortnight.release.published"]).await;
    let publisher = p.bus.publisher().await;
    let full = |topic: &str| format!("{}.{topic}", p.bus.prefix);

    // A period that tries to leave the store.
    let tick = raw(
        &full("fortnight.twoweek.timer.fired"),
        json!({"stream": "tw", "period": "../../../etc/passwd", "scheduled_for": Utc::now(), "fired_at": Utc::now()}),
    );
    publisher.publish_record(&tick).await.unwrap();
    dead_letter_with(&p, "releaser", "is not an RFC 3339 time").await;

    // A stream name with shell metacharacters, and a stream nobody configured.
    let tick = raw(
        &full("fortnight.twoweek.timer.fired"),
        json!({"stream": "tw;rm -rf /", "period": "2026-11-17T12:00:00Z", "scheduled_for": Utc::now(), "fired_at": Utc::now()}),
    );
    publisher.publish_record(&tick).await.unwrap();
    dead_letter_with(&p, "releaser", "invalid stream").await;
    let unknown = TwoweekTimerFired {
        stream: "f98".parse().unwrap(),
        period: "2026-11-17T12:00:00Z".parse().unwrap(),
        scheduled_for: Utc::now(),
        fired_at: Utc::now(),
        operator: None,
    };
    p.publish(&Outgoing::new(uuid::Uuid::new_v4(), &unknown))
        .await;
    dead_letter_with(&p, "releaser", "unknown stream f98").await;

    // A test report of a stream nobody configured reaches both consumers.
    p.nightly_tested("43.20261110.0", None).await;
    let report_path = p.store.tests_json_path(
        &stream(),
        &version("43.20261110.0"),
        &release_support::arch("x86_64"),
    );
    let mut report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_path).unwrap()).unwrap();
    report["stream"] = json!("f99");
    publisher
        .publish_record(&raw(&full("fortnight.image.tests.passed"), report))
        .await
        .unwrap();
    for consumer in ["karma-tracker", "releaser"] {
        let letter = dead_letter_with(&p, consumer, "unknown stream f99").await;
        assert!(
            letter.routing_key.ends_with("fortnight.image.tests.passed"),
            "{}",
            letter.routing_key
        );
    }

    // A vote of +5.
    let vote = KarmaSubmitted {
        stream: stream(),
        version: version("43.20261110.0"),
        user: tester.name.clone(),
        karma: 5,
        comment: None,
    };
    p.publish_signed(&tester, &vote).await;
    dead_letter_with(&p, "karma-tracker", "karma 5 is not one of -1, 0, +1").await;
    assert!(
        p.store
            .read_votes(&stream(), &version("43.20261110.0"))
            .unwrap()
            .is_empty()
    );
    assert!(
        !p.store.root().join("etc").exists()
            && !p.store.stream_dir(&stream()).join(".periods").exists()
    );

    // Both consumers still work.
    p.vote(&tester, "43.20261110.0", 1).await;
    assert!(
        tests::eventually(release_support::WAIT, || {
            p.store
                .read_votes(&stream(), &version("43.20261110.0"))
                .unwrap()
                .len()
                == 1
        })
        .await
    );
    p.tick("2026-11-17T12:00:00Z").await;
    assert_eq!(
        wait_topic(&mut watch, "fortnight.release.published", 1)
            .await
            .len(),
        1
    );

    publisher.close().await;
    watch.close().await;
    p.stop().await;
}
