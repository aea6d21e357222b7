//! A stream that stops moving, on the real broker with the real image-builder, image-tester,
//! site publisher and release timer, and thresholds of seconds: when nightlies stop passing
//! the timer announces the stream stale exactly once, the page and `fortnight status` say
//! so, its `/metrics` carry the stream's times; a new passing candidate ends the spell, and
//! the next standstill is announced again. A tick nobody answers makes the release overdue,
//! once, until the releaser answers it.

use crate::images_support::{GOOD_TREE, Work, publish, start_both, tree_composed};

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use messages::{
    ImageTestsPassed, Message, Period, StaleKind, StreamStale, TwoweekTimerFired, Version,
};
use release_timer::Schedule;
use site_publisher::SitePublisher;
use store::{Store, Tier};
use tests::browser::{StaticServer, dump_dom};
use tests::config::{self, Table, Value, toml};
use tests::process::{built_binaries, run_ok, text};
use tests::{Running, RunningTimer, TestBus, Watch, eventually, free_port, http_get};

const STREAM: &str = "st";
const INPUT_REF: &str = "fedora/st/x86_64/atomic-host";
const WAIT: Duration = Duration::from_secs(60);
const RECIPE: &str =
    "printf 'image %s\\n' \"$FORTNIGHT_VERSION\" > \"$FORTNIGHT_OUTPUT_DIR/image.qcow2\"";

/// The `st` stream, built and tested by trivial programs, with `stream_keys` merged into its
/// table and `twoweek_keys` into its `twoweek` table.
fn stream_config(work: &Work, stream_keys: Table, twoweek_keys: Table) -> Table {
    let recipe = work.script("recipe", RECIPE);
    let suite = work.dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        "[[test]]\nname = \"true\"\nargv = [\"/bin/true\"]\n",
    )
    .unwrap();
    let twoweek = config::merged(
        toml! {
            release_refs = { x86_64 = "fedora/st/x86_64/release" }
            anchor = "2026-01-13T12:00:00Z"
        },
        twoweek_keys,
    );
    let stream = config::merged(
        toml! {
            arches = ["x86_64"]
            input_refs = { x86_64 = (INPUT_REF) }
            ostree_repo = (config::path(work.repo.path()))
            formats = ["qcow2"]
            recipes = { qcow2 = (config::path(&recipe)) }
            test_suite = (config::path(&suite))
            twoweek = (Value::Table(twoweek))
        },
        stream_keys,
    );
    toml! {
        [streams]
        st = (Value::Table(stream))
    }
}

fn stream() -> messages::Stream {
    STREAM.parse().unwrap()
}

/// Commits nightly `n`, sends it through the builder and tester, and returns when it passed.
async fn nightly_passes(
    bus: &TestBus,
    work: &Work,
    passed: &mut Watch,
    n: usize,
) -> (Version, DateTime<Utc>) {
    let version = format!("43.20261201.{n}");
    let mut tree = GOOD_TREE.to_vec();
    tree.push(("usr/share/nightly", &version));
    let commit = work.commit(INPUT_REF, &version, &tree);
    publish(bus, &tree_composed(work, INPUT_REF, "x86_64", &commit)).await;
    let seen = passed.wait_for(n, WAIT).await.to_vec();
    assert_eq!(seen.len(), n, "nightly {n} passed its tests: {seen:?}");
    let version: Version = version.parse().unwrap();
    let store = Store::open(bus.store_root()).unwrap();
    let at = store
        .promoted_at(&stream(), &version, Tier::PassedAutotest)
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "{version} is linked in passed-autotest: {:?} {seen:?}",
                tests::entries(&store.tier_dir(&stream(), Tier::PassedAutotest))
            )
        });
    (version, at.into())
}

/// The sample of `name` for the stream (and `more` labels) on the timer's `/metrics`.
fn sample(addr: SocketAddr, name: &str, more: &str) -> Option<String> {
    let prefix = format!(
        "{name}{{consumer=\"{}\",stream=\"{STREAM}\"{more}}} ",
        release_timer::NAME
    );
    let (_, text) = http_get(addr, "/metrics")?;
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
}

async fn wait_sample(addr: SocketAddr, name: &str, more: &str, value: &str) {
    let seen = eventually(WAIT, || sample(addr, name, more).as_deref() == Some(value)).await;
    assert!(
        seen,
        "{name}{more} of {STREAM} is {value} on /metrics: {:?}",
        http_get(addr, "/metrics")
    );
}

fn stale_bodies(watch: &[messages::RecordLine]) -> Vec<StreamStale> {
    watch
        .iter()
        .map(|line| serde_json::from_value(line.body.clone()).unwrap())
        .collect()
}

/// `fortnight status st`, as an operator runs it.
fn status(fortnight: &Path, config: &Path) -> String {
    let output = run_ok(
        Command::new(fortnight)
            .arg("--config")
            .arg(config)
            .args(["status", STREAM]),
        "fortnight status",
    );
    text(&output.stdout)
}

fn page(bus: &TestBus) -> String {
    std::fs::read_to_string(bus.store_root().join("site/index.html")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightlies_that_stop_passing_make_the_stream_stale_once_per_spell() {
    let fortnight = built_binaries(&["fortnight"]).join("fortnight");
    let work = Work::new();
    let health = free_port();
    let bus = TestBus::with_config(stream_config(
        &work,
        toml! { stale_after = "10s" },
        Table::new(),
    ))
    .consumer("image-builder", Table::new())
    .consumer("image-tester", Table::new())
    .consumer("site-publisher", Table::new())
    .consumer(settings::RELEASE_TIMER, config::health_addr(health));
    let settings = Arc::new(bus.settings());
    let config = bus.write_config();
    let mut stale = bus.watch(&[StreamStale::TOPIC]).await;
    let mut passed = bus.watch(&[ImageTestsPassed::TOPIC]).await;
    // Binds the tick topic, so the timer's first tick finds a queue.
    let ticks = bus.watch(&[TwoweekTimerFired::TOPIC]).await;
    let (builder, tester) = start_both(&bus).await;
    let site = Running::start(
        &settings,
        SitePublisher::new(Arc::clone(&settings)).unwrap(),
    );
    bus.wait_consuming("site-publisher").await;

    let (first, first_passed) = nightly_passes(&bus, &work, &mut passed, 1).await;
    let timer = RunningTimer::start(bus.settings());
    let schedule = Schedule::for_stream(
        &stream(),
        settings.streams[&stream()].twoweek.as_ref().unwrap(),
    )
    .unwrap();
    let next_tick = schedule.next(Utc::now()).unwrap();
    wait_sample(
        health,
        "fortnight_stream_newest_candidate_timestamp_seconds",
        "",
        &first_passed.timestamp().to_string(),
    )
    .await;
    wait_sample(
        health,
        "fortnight_stream_next_tick_timestamp_seconds",
        "",
        &next_tick.timestamp().to_string(),
    )
    .await;
    assert_eq!(
        sample(
            health,
            "fortnight_stream_newest_release_timestamp_seconds",
            ""
        ),
        None,
        "nothing released, no release time"
    );
    assert!(
        !page(&bus).contains("class=\"alarm\""),
        "fresh: {}",
        page(&bus)
    );

    // The nightlies stop.
    let seen = stale.wait_for(1, WAIT).await.to_vec();
    let announced = stale_bodies(&seen);
    assert_eq!(announced.len(), 1, "{seen:?}");
    let spell = &announced[0];
    assert_eq!(spell.stream, stream());
    assert_eq!(spell.kind, StaleKind::NoCandidatePassed);
    assert_eq!(
        spell.since, first_passed,
        "the spell starts when the stream last moved"
    );
    assert_eq!(spell.newest_candidate.as_ref(), Some(&first));
    assert_eq!(spell.threshold_seconds, 10);
    assert!(spell.detected_at >= first_passed + chrono::TimeDelta::seconds(10));
    assert_eq!(
        seen[0]
            .headers
            .get("fedora_messaging_severity")
            .and_then(serde_json::Value::as_i64),
        Some(messages::Severity::Warning as i64)
    );
    wait_sample(
        health,
        "fortnight_stream_stale",
        ",kind=\"no-candidate-passed\"",
        "1",
    )
    .await;

    // The page shows it as soon as the stale message arrives, in a browser too.
    assert!(
        eventually(WAIT, || page(&bus).contains("class=\"alarm\"")).await,
        "the page warns: {}",
        page(&bus)
    );
    let server = StaticServer::start(&bus.store_root()).unwrap();
    let dom = dump_dom(&server.url("site/index.html")).expect("chromium loads the page");
    let alarm = &dom[dom
        .find("class=\"alarm\"")
        .expect("the alarm is in the DOM")..];
    let alarm = &alarm[..alarm.find("</p>").unwrap()];
    assert!(
        alarm.contains("STALE:")
            && alarm.contains("no candidate passed since")
            && alarm.contains(&format!(
                "threshold 10s); the newest that passed is {first}"
            )),
        "{alarm}"
    );
    let said = status(&fortnight, &config);
    assert!(
        said.contains("STALE: no candidate passed since")
            && said.contains(&format!(
                "threshold 10s); the newest that passed is {first}"
            )),
        "{said}"
    );

    // Once per spell: the timer keeps looking (every threshold while stale), sending nothing.
    let seen = stale.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(seen.len(), 1, "one message per spell: {seen:?}");

    // A new passing candidate ends the spell: the page and status say so at once.
    let (second, second_passed) = nightly_passes(&bus, &work, &mut passed, 2).await;
    let said = status(&fortnight, &config);
    assert!(!said.contains("STALE"), "{said}");
    assert!(
        eventually(Duration::from_secs(8), || !page(&bus)
            .contains("class=\"alarm\""))
        .await,
        "the page's warning is gone: {}",
        page(&bus)
    );

    // The next standstill is a spell of its own, announced again.
    let seen = stale.wait_for(2, WAIT).await.to_vec();
    let announced = stale_bodies(&seen);
    assert_eq!(announced.len(), 2, "{seen:?}");
    assert_eq!(announced[1].since, second_passed);
    assert_eq!(announced[1].newest_candidate.as_ref(), Some(&second));
    assert_ne!(seen[0].id, seen[1].id);
    wait_sample(
        health,
        "fortnight_stream_newest_candidate_timestamp_seconds",
        "",
        &second_passed.timestamp().to_string(),
    )
    .await;

    timer.stop().await;
    site.stop().await;
    builder.stop().await;
    tester.stop().await;
    stale.close().await;
    passed.close().await;
    ticks.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_nobody_answers_makes_the_release_overdue_until_the_releaser_does() {
    let fortnight = built_binaries(&["fortnight"]).join("fortnight");
    let work = Work::new();
    let bus = TestBus::with_config(stream_config(
        &work,
        Table::new(),
        toml! { overdue_after = "3s" },
    ))
    .consumer("releaser", Table::new());
    let config = bus.write_config();
    let mut stale = bus.watch(&[StreamStale::TOPIC]).await;
    // Stands in for the releaser's queue until the releaser runs: the tick is routed, and
    // nobody answers it.
    let mut ticks = bus.watch(&[TwoweekTimerFired::TOPIC]).await;
    let timer = RunningTimer::start(bus.settings());
    let tick = ticks.wait_for(1, WAIT).await[0].clone();
    let tick: TwoweekTimerFired = serde_json::from_value(tick.body).unwrap();

    let seen = stale.wait_for(1, WAIT).await.to_vec();
    let announced = stale_bodies(&seen);
    assert_eq!(announced.len(), 1, "{seen:?}");
    assert_eq!(announced[0].kind, StaleKind::ReleaseOverdue);
    assert_eq!(announced[0].period, Some(tick.period));
    assert_eq!(
        announced[0].since, tick.fired_at,
        "counted from when the tick fired"
    );
    let said = status(&fortnight, &config);
    assert!(
        said.contains(&format!(
            "STALE: release overdue: the tick of period {} at",
            tick.period
        )),
        "{said}"
    );
    assert_eq!(
        stale.wait_for(2, Duration::from_secs(8)).await.len(),
        1,
        "once per spell"
    );

    // The releaser answers the tick (a skip: nothing passed), which ends the spell.
    let settings = Arc::new(bus.settings());
    let releaser = Running::start(
        &settings,
        releaser::Releaser::new(Arc::clone(&settings)).unwrap(),
    );
    bus.wait_consuming("releaser").await;
    publish(&bus, &tick).await;
    let store = Store::open(bus.store_root()).unwrap();
    let decided = store.period_record_path(&stream(), &Period::starting_at(tick.scheduled_for));
    assert!(
        eventually(WAIT, || decided.exists()).await,
        "the releaser records its decision"
    );
    let said = status(&fortnight, &config);
    assert!(!said.contains("STALE"), "{said}");
    assert_eq!(
        stale.wait_for(2, Duration::from_secs(8)).await.len(),
        1,
        "an answered tick is not announced again"
    );

    timer.stop().await;
    releaser.stop().await;
    stale.close().await;
    ticks.close().await;
    bus.cleanup().await;
}
