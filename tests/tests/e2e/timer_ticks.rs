//! The release timer on the real broker: after downtime the missed period fires once, a
//! restart fires nothing new, cron schedules work, operators can fire by hand, a tick no
//! queue takes is not recorded as fired, and the timer serves health endpoints and survives a
//! broker restart.

use crate::release_support;

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use messages::{Message, Period, TwoweekTimerFired, derived_id};
use release_support::{BrokerUser, stream, wait_topic};
use release_timer::{TimerState, load_state};
use tests::broker::Node;
use tests::config::{self, Table, Value, toml};
use tests::{RunningTimer, TestBus, Watch, eventually, free_port, http_get, is_ready};

const FIRED: &str = TwoweekTimerFired::TOPIC;

/// The `tw` stream with two-week releases on `schedule` (keys of its `twoweek` table).
fn timer_config(schedule: Table) -> Table {
    let twoweek = config::merged(
        toml! { release_refs = { x86_64 = "fedora/tw/x86_64/release" } },
        schedule,
    );
    toml! {
        [streams.tw]
        arches = ["x86_64"]
        input_refs = { x86_64 = "fedora/tw/x86_64/atomic-host" }
        ostree_repo = "/nonexistent"
        formats = ["qcow2"]
        twoweek = (Value::Table(twoweek))
    }
}

fn timer_bus(schedule: Table) -> TestBus {
    TestBus::with_config(timer_config(schedule))
}

/// [`timer_bus`] with the timer's health endpoints on `addr`.
fn timer_bus_serving(schedule: Table, addr: SocketAddr) -> TestBus {
    TestBus::with_config(config::merged(
        timer_config(schedule),
        toml! {
            [consumers.release-timer]
            health_addr = (addr.to_string())
        },
    ))
}

/// Runs the timer until it has published `expect` ticks (or for a second when none are
/// expected), then stops it.
async fn run_timer(bus: &TestBus, watch: &mut Watch, expect: usize) -> Vec<TwoweekTimerFired> {
    let timer = RunningTimer::start(bus.settings());
    let lines = wait_topic(watch, FIRED, expect).await;
    let lines = if expect == 0 {
        watch.settle(Duration::from_secs(1)).await.to_vec()
    } else {
        lines
    };
    timer.stop().await;
    lines
        .iter()
        .map(|l| serde_json::from_value(l.body.clone()).unwrap())
        .collect()
}

/// A periodic schedule starting at `anchor`, one period a day.
fn daily(anchor: DateTime<Utc>) -> Table {
    toml! {
        anchor = (anchor.to_rfc3339())
        period_days = 1
    }
}

/// A counter of the timer's `/metrics`; 0 while nothing answers.
fn counter(addr: SocketAddr, name: &str) -> u64 {
    let prefix = format!("{name}{{consumer=\"{}\"}} ", release_timer::NAME);
    http_get(addr, "/metrics")
        .and_then(|(_, text)| {
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
        })
        .unwrap_or(0)
}

fn state(bus: &TestBus) -> Option<TimerState> {
    load_state(&store::Store::open(bus.store_root()).unwrap(), &stream()).unwrap()
}

fn tick_id(scheduled_for: DateTime<Utc>) -> String {
    derived_id(
        release_timer::NAME,
        &["tw", &Period::starting_at(scheduled_for).to_string()],
    )
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_period_fires_once_at_start_and_a_restart_fires_nothing() {
    let anchor = (Utc::now() - TimeDelta::hours(5 * 24 + 12))
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap();
    let bus = timer_bus(daily(anchor));
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
    let bus = timer_bus(toml! { cron = "0 0 1 1 *" });
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
    let bus = timer_bus(toml! { anchor = "2026-01-06T12:00:00Z" });
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_serves_health_endpoints_and_is_ready_while_connected() {
    let addr = free_port();
    let bus = timer_bus_serving(daily(Utc::now() - TimeDelta::hours(1)), addr);
    let mut watch = bus.watch(&[FIRED]).await;
    let timer = RunningTimer::start(bus.settings());

    assert!(
        eventually(Duration::from_secs(30), || is_ready(addr)).await,
        "/ready answers 200 once the timer is connected"
    );
    assert_eq!(http_get(addr, "/live"), Some((200, "ok\n".to_owned())));
    assert_eq!(wait_topic(&mut watch, FIRED, 1).await.len(), 1);
    assert!(
        eventually(Duration::from_secs(30), || counter(
            addr,
            "fortnight_publish_confirmed_total"
        ) == 1)
        .await,
        "/metrics counts the confirmed tick"
    );
    assert_eq!(counter(addr, "fortnight_ready"), 1);

    timer.stop().await;
    assert_eq!(
        http_get(addr, "/live"),
        None,
        "the port is closed after stopping"
    );
    watch.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_no_queue_takes_is_not_recorded_and_is_published_once_one_is_bound() {
    let addr = free_port();
    let current = (Utc::now() - TimeDelta::hours(1))
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap();
    let bus = timer_bus_serving(daily(current), addr);
    // A fresh broker: nothing is bound for the tick's topic yet.
    let timer = RunningTimer::start(bus.settings());
    assert!(
        eventually(Duration::from_secs(30), || counter(
            addr,
            "fortnight_publish_unroutable_total"
        ) >= 1)
        .await,
        "the broker returned the first tick"
    );
    assert_eq!(
        state(&bus),
        None,
        "an unrouted tick is not recorded as fired"
    );

    // The releaser's queue appears; the next round publishes the same tick and records it.
    let mut watch = bus.watch(&[FIRED]).await;
    assert_eq!(wait_topic(&mut watch, FIRED, 1).await.len(), 1);
    assert!(
        eventually(Duration::from_secs(30), || state(&bus)
            .is_some_and(|s| s.scheduled_for == current))
        .await,
        "the routed tick is recorded"
    );
    let seen = watch.settle(Duration::from_secs(2)).await.to_vec();
    assert_eq!(seen.len(), 1, "exactly one tick reaches the queue");
    assert_eq!(seen[0].id.as_deref(), Some(tick_id(current).as_str()));

    timer.stop().await;
    watch.close().await;
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_reconnects_after_a_broker_restart_and_fires_the_next_tick() {
    // A node of this test's own: restarting the shared broker would break everyone's tests.
    let node = tokio::task::spawn_blocking(Node::start).await.unwrap();
    let addr = free_port();
    // The schedule starts after the restart, so its first tick needs a live connection.
    let first = (Utc::now() + TimeDelta::seconds(20))
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap();
    let bus = timer_bus_serving(daily(first), addr);
    let mut settings = bus.settings();
    settings.amqp_url = node.amqp_url();
    let timer = RunningTimer::start(settings.clone());
    // The timer is the node's only client so far.
    let connected = || {
        node.ctl(&["list_connections", "--no-table-headers", "--quiet", "state"])
            .is_ok_and(|out| out.contains("running"))
    };
    assert!(
        eventually(Duration::from_secs(30), connected).await,
        "the timer connects to the node"
    );

    tokio::task::block_in_place(|| node.restart());
    // Recording queues do not outlive a restart; this one is made after it.
    let mut watch = Watch::start(&settings, &[FIRED]).await;
    let seen = watch.wait_for(1, Duration::from_secs(90)).await.to_vec();
    assert_eq!(seen.len(), 1, "the tick due after the restart is published");
    assert_eq!(seen[0].id.as_deref(), Some(tick_id(first).as_str()));
    assert!(
        eventually(Duration::from_secs(30), || state(&bus)
            .is_some_and(|s| s.scheduled_for == first))
        .await,
        "and recorded as fired"
    );
    assert!(is_ready(addr), "ready again after reconnecting");

    timer.stop().await;
    watch.close().await;
    bus.cleanup().await;
    drop(node);
}
