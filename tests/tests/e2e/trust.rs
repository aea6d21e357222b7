//! Who may move a release: every topic that moves a candidate, sent by a broker account the
//! configuration does not trust for it or without a `user_id`, is dead-lettered naming the
//! sender and the topic, and changes nothing; the same message from a trusted account is acted
//! on. Ticks must name a begun period of the stream's schedule.

use crate::images_support::{self, GOOD_TREE, StreamConfig, Work, bodies};
use crate::release_support::{
    self, BrokerUser, Options, Pipeline, arch, stream, version, wait_topic,
};

use std::sync::Arc;

use bus::Publisher;
use chrono::Utc;
use image_builder::ImageBuilder;
use image_tester::ImageTester;
use messages::{
    ImageBuilt, ImageTestsFailed, ImageTestsPassed, KarmaStatus, KarmaThresholdReached, Message,
    Outgoing, OverrideBlock, OverrideEndOfLife, OverrideHold, OverrideRelease, OverrideUnblock,
    OverrideUnhold, Period, TestReport, Tree, TreeComposed,
};
use settings::Settings;
use site_publisher::SitePublisher;
use store::Store;
use tests::config::Table;
use tests::{Running, TestBus};

const V: &str = "43.20261110.0";
const REF: &str = "fortnight/trust/x86_64/atomic-host";
/// The images test's stream (the harness's own configuration already has `f43`).
const STREAM: &str = "trusted";

/// The untrusted senders: an account of its own (the broker stamps its `user_id`) and a
/// message without `user_id`; each with the words the dead letter names it by.
async fn untrusted(mallory: &BrokerUser, settings: &Settings) -> Vec<(Publisher, String)> {
    vec![
        (
            mallory.publisher(settings).await,
            format!("broker user {}", mallory.name),
        ),
        (
            tests::broker::unsigned_publisher(settings).await,
            "a message without user_id".to_owned(),
        ),
    ]
}

/// Sends each message from each sender, under a fresh id each time.
async fn send_from_each(senders: &[(Publisher, String)], messages: &[Outgoing]) {
    for (publisher, _) in senders {
        for message in messages {
            let mut copy = message.clone();
            copy.id = uuid::Uuid::new_v4();
            publisher.publish(&copy).await.expect("the broker confirms");
        }
    }
}

/// Waits until `consumer` dead-lettered every message of `messages` from every sender, each
/// with a reason naming the sender and the topic.
async fn refused_by(
    bus: &TestBus,
    consumer: &str,
    senders: &[(Publisher, String)],
    messages: &[Outgoing],
) {
    for (_, sender) in senders {
        for message in messages {
            let text = format!("untrusted sender: {sender} may not send {} ", message.topic);
            let letter = bus
                .wait_dead_letter_saying(consumer, &text, release_support::WAIT)
                .await;
            assert!(
                letter
                    .reason
                    .contains(&format!("trust.topics.\"{}\"", message.topic)),
                "the reason names the key to change: {}",
                letter.reason
            );
        }
    }
}

async fn close_all(senders: Vec<(Publisher, String)>) {
    for (publisher, _) in senders {
        publisher.close().await;
    }
}

fn message<M: Message>(body: &M) -> Outgoing {
    Outgoing::new(uuid::Uuid::new_v4(), body)
}

fn tick(period: &str, operator: Option<messages::UserName>) -> Outgoing {
    release_timer::tick_message(&stream(), period.parse().unwrap(), Utc::now(), operator)
}

/// The topics the karma-tracker and releaser publish.
const RELEASE_OUTPUTS: [&str; 4] = [
    "fortnight.candidate.testing.requested",
    "fortnight.release.published",
    "fortnight.release.skipped",
    "releng.atomic.twoweek.complete",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_topics_from_an_untrusted_account_or_without_user_id_change_nothing() {
    let operator = BrokerUser::create("operator");
    let mallory = BrokerUser::create("mallory");
    let p = Pipeline::start(Options {
        karma_required: false,
        operators: vec![operator.name.clone()],
        ..Options::default()
    })
    .await;
    let mut watch = p.watch(&RELEASE_OUTPUTS).await;
    let reports: Vec<TestReport> = p
        .nightly(V)
        .iter()
        .map(|(a, commit)| p.write_report(V, a.as_str(), commit, &[]))
        .collect();

    // Valid bodies that, trusted, would request testing, release on the tick, or override;
    // the overrides claim the real operator.
    let claimed = p.override_body(&operator, Some(V), "trust me");
    let reached = KarmaThresholdReached {
        stream: stream(),
        version: version(V),
        status: KarmaStatus::Stable,
        karma: 3,
        votes: Vec::new(),
    };
    let releaser_topics = vec![
        message(&reached),
        message(&OverrideBlock(claimed.clone())),
        message(&OverrideUnblock(claimed.clone())),
        message(&OverrideRelease(claimed.clone())),
        message(&OverrideHold(claimed.clone())),
        message(&OverrideUnhold(claimed.clone())),
        message(&OverrideEndOfLife(claimed.clone())),
        tick("2026-11-17T12:00:00Z", None),
        tick("2026-11-17T12:00:00Z", Some(operator.name.clone())),
    ];
    let senders = untrusted(&mallory, &p.settings).await;
    // Both arches' results, so that trusted they would complete the candidate.
    let passed: Vec<Outgoing> = reports
        .iter()
        .map(|r| message(&ImageTestsPassed(r.clone())))
        .collect();
    send_from_each(&senders, &passed).await;
    send_from_each(&senders, &releaser_topics).await;
    refused_by(&p.bus, "karma-tracker", &senders, &passed).await;
    refused_by(&p.bus, "releaser", &senders, &passed).await;
    refused_by(&p.bus, "releaser", &senders, &releaser_topics).await;

    let seen = watch.wait_for(0, std::time::Duration::ZERO).await.to_vec();
    assert!(seen.is_empty(), "nothing was published: {seen:?}");
    assert!(
        !p.store.periods_dir(&stream()).exists(),
        "no period was decided"
    );
    assert!(p.audit_log().is_empty(), "no override is in force");
    assert_eq!(p.store.current_release(&stream()).unwrap(), None);
    assert_eq!(p.release_commit("x86_64"), None, "no ref moved");

    // The control: the same messages from Fortnight's own account and an operator's.
    for message in &passed {
        p.publish(message).await;
    }
    wait_topic(&mut watch, "fortnight.candidate.testing.requested", 1).await;
    p.override_as(&operator, OverrideUnblock(claimed.clone()))
        .await;
    p.tick("2026-11-17T12:00:00Z").await;
    let published = wait_topic(&mut watch, "fortnight.release.published", 1).await;
    assert_eq!(published.len(), 1, "the trusted tick releases");
    assert_eq!(
        p.store.current_release(&stream()).unwrap(),
        Some(version(V))
    );
    assert_eq!(
        p.audit_log().len(),
        1,
        "the operator's override is recorded"
    );

    close_all(senders).await;
    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_and_image_topics_from_an_untrusted_account_or_without_user_id_change_nothing() {
    let mallory = BrokerUser::create("mallory");
    let work = Work::new();
    let commit = work.commit(REF, V, GOOD_TREE);
    let runs = work.dir.path().join("runs");
    let recipe = work.script(
        "qcow2",
        &format!(
            "echo run >> '{}'\nprintf image > \"$FORTNIGHT_OUTPUT_DIR/disk.qcow2\"",
            runs.display()
        ),
    );
    let config = StreamConfig {
        name: STREAM,
        arches: &[("x86_64", REF)],
        repo: work.repo.path(),
        formats: &["qcow2"],
        recipes: vec![("qcow2", recipe)],
        suite: None,
        extra: Table::new(),
    };
    let bus = TestBus::with_config(config.config())
        .consumer("image-builder", Table::new())
        .consumer("image-tester", Table::new())
        .consumer("site-publisher", Table::new());
    let mut watch = bus
        .watch(&[
            "fortnight.image.built",
            "fortnight.image.build.failed",
            "fortnight.image.tests.passed",
            "fortnight.image.tests.failed",
        ])
        .await;
    let settings = Arc::new(bus.settings());
    let consumers = [
        Running::start(&settings, ImageBuilder::new(settings.clone()).unwrap()),
        Running::start(&settings, ImageTester::new(settings.clone()).unwrap()),
        Running::start(&settings, SitePublisher::new(settings.clone()).unwrap()),
    ];
    for consumer in ["image-builder", "image-tester", "site-publisher"] {
        bus.wait_consuming(consumer).await;
    }
    // Rendered at start-up, before the site publisher consumed.
    let site = settings.store.root.join("site");
    let at_start = std::fs::read_link(&site).expect("the site is rendered at start-up");

    // The control first, so that the untrusted copies below are of real results: a tree from
    // Fortnight's own account is built, tested and rendered.
    let tree = TreeComposed {
        arch: arch("x86_64"),
        tree: Tree {
            ostree_ref: REF.parse().unwrap(),
            commit,
            repo: work.repo.path().display().to_string(),
        },
        version: None,
        compose_id: None,
        force: true,
    };
    images_support::publish(&bus, &tree).await;
    let seen = watch.wait_for(2, images_support::WAIT).await.to_vec();
    let built: Vec<ImageBuilt> = bodies(&seen);
    let passed: Vec<ImageTestsPassed> = bodies(&seen);
    assert_eq!((built.len(), passed.len()), (1, 1), "{seen:?}");
    let rendered = tests::eventually(release_support::WAIT, || {
        std::fs::read_link(&site).is_ok_and(|generation| generation != at_start)
    })
    .await;
    assert!(rendered, "the tested candidate renders the site again");
    let generation = std::fs::read_link(&site).unwrap();
    let report_path = Store::open(&settings.store.root).unwrap().tests_json_path(
        &STREAM.parse().unwrap(),
        &version(V),
        &arch("x86_64"),
    );
    let report_before = std::fs::read(&report_path).unwrap();

    // The same messages from untrusted senders: a forced rebuild, the built images, and the
    // candidate's result either way.
    let mut failed = passed[0].0.clone();
    failed.failed = vec!["boot".to_owned()];
    let senders = untrusted(&mallory, &settings).await;
    let to_builder = vec![message(&tree)];
    let to_tester = vec![message(&built[0])];
    let to_site = vec![message(&ImageTestsFailed(failed)), message(&passed[0])];
    send_from_each(&senders, &to_builder).await;
    send_from_each(&senders, &to_tester).await;
    send_from_each(&senders, &to_site).await;
    refused_by(&bus, "image-builder", &senders, &to_builder).await;
    refused_by(&bus, "image-tester", &senders, &to_tester).await;
    refused_by(&bus, "site-publisher", &senders, &to_site).await;

    let seen = watch.wait_for(0, std::time::Duration::ZERO).await;
    assert_eq!(seen.len(), 2, "nothing but the control's results: {seen:?}");
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap(),
        "run\n",
        "no rebuild"
    );
    assert_eq!(
        std::fs::read(&report_path).unwrap(),
        report_before,
        "no new test run"
    );
    assert_eq!(
        std::fs::read_link(&site).unwrap(),
        generation,
        "no new site generation"
    );

    close_all(senders).await;
    for consumer in consumers {
        consumer.stop().await;
    }
    watch.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_off_the_schedule_or_from_the_future_are_refused_and_never_block_a_later_one() {
    let p = Pipeline::start(Options {
        karma_required: false,
        ..Options::default()
    })
    .await;
    let mut watch = p
        .watch(&["fortnight.release.published", "fortnight.release.skipped"])
        .await;
    p.nightly_tested(V, None).await;

    // From Fortnight's own account, but not a begun period of the schedule (anchor
    // 2026-01-13T12:00:00Z, 14 days): a week off, and one in 2099.
    for (period, reason) in [
        (
            "2026-11-10T12:00:00Z",
            "period 2026-11-10T12:00:00Z is not a tick of the stream's schedule",
        ),
        (
            "2099-01-05T12:00:00Z",
            "period 2099-01-05T12:00:00Z is in the future",
        ),
    ] {
        p.tick(period).await;
        let letter = release_support::dead_letter_with(&p, "releaser", reason).await;
        assert!(
            letter.reason.starts_with("tick refused: "),
            "{}",
            letter.reason
        );
    }
    assert!(
        !p.store.periods_dir(&stream()).exists(),
        "refused ticks decide nothing"
    );

    // A record from the future, as an unchecked tick of an older version left it, does not
    // make the real tick a past one.
    let future: Period = "2099-01-05T12:00:00Z".parse().unwrap();
    releaser::periods::write(
        &p.store,
        &stream(),
        &future,
        releaser::periods::PeriodState::Skipped,
        Utc::now(),
    )
    .unwrap();
    p.tick("2026-11-17T12:00:00Z").await;
    let published = wait_topic(&mut watch, "fortnight.release.published", 1).await;
    assert_eq!(published.len(), 1);
    assert_eq!(
        p.store.current_release(&stream()).unwrap(),
        Some(version(V))
    );

    watch.close().await;
    p.stop().await;
}

#[tokio::test]
async fn a_consumer_that_cannot_sign_what_it_publishes_does_not_start() {
    let bus = TestBus::new();
    let mut settings = bus.settings();
    // Client certificates without `tls.user`: the account the broker takes from the
    // certificate is unknown here.
    settings.tls = Some(settings::Tls {
        ca_cert: "ca.pem".into(),
        keyfile: "client.key".into(),
        certfile: "client.pem".into(),
        user: None,
    });
    let probe = tests::probe::Probe::new(
        &tests::probe::Probe::dir_of(&bus),
        Arc::new(settings.clone()),
        false,
    );
    let error = bus::run(&settings, Arc::new(probe), std::future::pending())
        .await
        .expect_err("no consumer without a known account");
    let text = error.to_string();
    assert!(
        text.contains("the broker account it publishes as is unknown") && text.contains("tls.user"),
        "{text}"
    );
    assert!(error.is_permanent(), "retrying cannot help: {error:?}");
    bus.cleanup().await;
}
