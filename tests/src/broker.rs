//! Driving the broker itself, for the tests that restart or reconfigure it. Such tests live in
//! one test binary and hold [`serial`] so they never overlap.

use std::process::Command;
use std::time::Duration;

/// The broker's default `consumer_timeout` (30 minutes), restored after a test lowers it.
pub const DEFAULT_CONSUMER_TIMEOUT_MS: u64 = 1_800_000;

/// An async mutex: each test has its own runtime and holds the guard across awaits. A test
/// that panicked releases it like any other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Holds every other disruptive test off.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// Runs `rabbitmqctl` with `args`; `Err` has its output.
pub fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

pub fn stop_app() {
    rabbitmqctl(&["stop_app"]).expect("rabbitmqctl stop_app");
}

pub fn start_app() {
    rabbitmqctl(&["start_app"]).expect("rabbitmqctl start_app");
    rabbitmqctl(&["await_startup"]).expect("rabbitmqctl await_startup");
}

/// Starts the app again when dropped, so a failing test never leaves the broker down.
#[derive(Debug)]
pub struct Stopped(());

impl Stopped {
    pub fn stop() -> Self {
        stop_app();
        Self(())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        start_app();
    }
}

/// The broker's default `channel_tick_interval`: how often a channel checks the timeout.
pub const DEFAULT_CHANNEL_TICK_MS: u64 = 60_000;

/// Lowers the broker-wide `consumer_timeout` until dropped (restored even when the test
/// fails). Channels only check it every `channel_tick_interval`, so that is shortened too;
/// both are read when a channel opens.
#[derive(Debug)]
pub struct ConsumerTimeout(());

impl ConsumerTimeout {
    pub fn set(timeout: Duration) -> Self {
        set_env("channel_tick_interval", 1000);
        set_env("consumer_timeout", timeout.as_millis() as u64);
        Self(())
    }
}

impl Drop for ConsumerTimeout {
    fn drop(&mut self) {
        set_env("consumer_timeout", DEFAULT_CONSUMER_TIMEOUT_MS);
        set_env("channel_tick_interval", DEFAULT_CHANNEL_TICK_MS);
    }
}

fn set_env(key: &str, value: u64) {
    rabbitmqctl(&[
        "eval",
        &format!("application:set_env(rabbit, {key}, {value})."),
    ])
    .unwrap_or_else(|out| panic!("rabbitmqctl eval cannot set {key}: {out}"));
}
