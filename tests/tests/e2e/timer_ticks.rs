//! The release timer on the real broker: after downtime the missed period fires once, a
//! restart fires nothing new, cron schedules work, and operators can fire by hand.

use crate::release_support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use messages::{Message, Period, TwoweekTimerFired, derived_id};
use release_support::{BrokerUser, stream, wait_topic};
use release_timer::{TimerState, load_state};
use tests::{TestBus, Watch};
use tokio::sync::watch;

const FIRED: &str = TwoweekTimerFired::TOPIC;

fn timer_bus(schedule: &str) -> TestBus {
    TestBus::with_config(&format!(
        r#"
[streams.tw]
arches = ["x86_64"]
input_refs = {{ x86_64 = "fedora/tw/x86_64/atomic-host" }}
ostree_repo = "/nonexistent"
formats = ["qcow2"]
[streams.tw.twoweek]
release_refs = {{ x86_64 = "fedora/tw/x86_64/release" }}
{schedule}
"#
    ))
}

/// Runs the timer until it has published `expect` ticks (or for a second when none are
/// expected), then stops it.
async fn run_timer(bus: &TestBus, watch: &mut Watch, expect: usize) -> Vec<TwoweekTimerFired> {
    let settings = Arc::new(bus.settings());
    let (stop, mut stopped) = watch::channel(false);
    let timer = tokio::spawn(release_timer::run(settings, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let lines = wait_topic(watch, FIRED, expect).await;
    let lines = if expect == 0 {
        watch.settle(Duration::from_secs(1)).await.to_vec()
    } else {
        lines
    };
    stop.send(true).unwrap();
    timer.await.unwrap().expect("the timer stops cleanly");
    lines
        .iter()
        .map(|l| serde_json::from_value(l.body.clone()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_period_fires_once_at_start_and_a_restart_fires_nothing() {
    let anchor = (Utc::now() - TimeDelta::hours(5 * 24 + 12))
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap();
    let bus = timer_bus(&format!(
        "anchor = \"{}\"\nperiod_days = 1",
        anchor.to_rfc3339()
    ));
    // The timer last fired the anchor's period, then was down for five periods.
    let state_path = store::Store::open(bus.store_root())
        .unwrap()
        .timer_path(&stream());
    let last = TimerState {
        period: Period::starting_at(anchor),
        scheduled_for: anchor,
        fired_at: anchor,
    };
    store::write_json(&state_path, &last).unwrap();
    let mut watch = bus.watch(&[FIRED]).await;

    let fired = run_timer(&bus, &mut watch, 1).await;
    let seen = watch.settle(Duration::from_secs(1)).await.to_vec();
    assert_eq!(seen.len(), 1, "one tick for five missed periods");
    let current = anchor + TimeDelta::days(5);
    assert_eq!(
        fired[0].period,
        Period::starting_at(current),
        "the current period, not a missed one"
    );
    assert_eq!(fired[0].scheduled_for, current);
    assert!(fired[0].fired_at >= current);
    let expected_id = derived_id(
        release_timer::NAME,
        &["tw", &Period::starting_at(current).to_string()],
    )
    .to_string();
    assert_eq!(
        seen[0].id.as_deref(),
        Some(expected_id.as_str()),
        "deterministic id"
    );
    let state = load_state(&store::Store::open(bus.store_root()).unwrap(), &stream())
        .unwrap()
        .unwrap();
    assert_eq!(state.scheduled_for, current);

    let again = run_timer(&bus, &mut watch, 0).await;
    assert_eq!(
        again.len(),
        1,
        "a restart in the same period fires nothing new"
    );

    watch.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_schedule_fires_its_current_occurrence() {
    let bus = timer_bus("cron = \"0 0 1 1 *\"");
    let mut watch = bus.watch(&[FIRED]).await;
    let fired = run_timer(&bus, &mut watch, 1).await;
    let year = Utc::now().format("%Y");
    let expected: DateTime<Utc> = format!("{year}-01-01T00:00:00Z").parse().unwrap();
    assert_eq!(
        fired[0].scheduled_for, expected,
        "the latest 1 January, midnight UTC"
    );
    watch.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_fires_the_current_period_by_hand() {
    let operator = BrokerUser::create("operator");
    let bus = timer_bus("anchor = \"2026-01-06T12:00:00Z\"");
    let mut watch = bus.watch(&[FIRED]).await;
    let settings = bus.settings();
    let publisher = operator.publisher(&settings).await;
    let fired = release_timer::fire_now(&settings, &stream(), operator.name.clone(), &publisher)
        .await
        .expect("fired");
    let seen = wait_topic(&mut watch, FIRED, 1).await;
    let body: TwoweekTimerFired = serde_json::from_value(seen[0].body.clone()).unwrap();
    assert_eq!(body, fired);
    assert_eq!(body.operator.as_ref(), Some(&operator.name));
    let schedule = release_timer::Schedule::for_stream(
        &stream(),
        settings.streams[&stream()].twoweek.as_ref().unwrap(),
    )
    .unwrap();
    assert_eq!(Some(body.scheduled_for), schedule.current(body.fired_at));

    publisher.close().await;
    watch.close().await;
    bus.cleanup().await;
}
