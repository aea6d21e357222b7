//! The runtime of a service driven by a clock instead of a queue (the release timer): the
//! same health endpoints, reconnects and backoff as [`run`](crate::run), around rounds of
//! publishing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use settings::Settings;
use tokio::sync::Notify;

use crate::health::{self, Metrics};
use crate::runtime::backoff;
use crate::{BusError, Publisher};

/// When a [`Clock`] wants its next round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Everything due was published; the next round is due after this long.
    After(Duration),
    /// Something due could not be published (a broker hiccup, no queue bound yet): try again
    /// after the reconnect backoff, which grows while rounds keep failing.
    Retry,
}

/// A service that publishes on a schedule.
pub trait Clock: Send + 'static {
    /// Service name: names the connection and the `[consumers.<name>]` section whose
    /// `health_addr` it serves.
    const NAME: &'static str;

    /// Publishes what is due with `publisher`, which is [routed](Publisher::routed): a
    /// message no queue is bound for fails instead of being dropped, and sets the service's
    /// own gauges in `metrics`. Errors are the clock's to log; the answer says when to run
    /// again.
    fn round(
        &mut self,
        publisher: &Publisher,
        metrics: &Metrics,
    ) -> impl Future<Output = Next> + Send;
}

/// Runs `clock` until `shutdown` completes: serves `/live`, `/ready` (ready while connected)
/// and `/metrics` on the service's `health_addr`, connects, runs a round whenever one is due,
/// and replaces the connection when it is lost, with the capped backoff of [`run`](crate::run).
/// A round in hand finishes before shutdown. Returns `Err` only for configuration errors that
/// retrying cannot fix.
pub async fn run_clock<C: Clock>(
    settings: &Settings,
    mut clock: C,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BusError> {
    let metrics = Arc::new(Metrics::default());
    let health = match settings.consumer(C::NAME).health_addr {
        Some(addr) => Some(health::serve(addr, C::NAME, metrics.clone()).await?),
        None => None,
    };
    // Wakes the loop when the connection dies, so it reconnects (and stops claiming to be
    // ready) at once rather than at the next round, which may be a day away.
    let lost = Arc::new(Notify::new());
    tokio::pin!(shutdown);
    let mut publisher: Option<Publisher> = None;
    let mut failures = 0u32;
    let result = loop {
        if publisher.as_ref().is_some_and(|p| !p.is_connected()) {
            tracing::warn!(service = C::NAME, "connection lost, reconnecting");
            publisher = None;
        }
        metrics.set_ready(publisher.is_some());
        let wait = match &publisher {
            None => {
                let connected = tokio::select! {
                    () = &mut shutdown => break Ok(()),
                    connected = Publisher::connect_counting(settings, C::NAME, metrics.clone()) => connected,
                };
                match connected {
                    Ok(connected) => {
                        let (metrics, lost) = (metrics.clone(), lost.clone());
                        connected.on_connection_lost(move |_| {
                            metrics.set_ready(false);
                            lost.notify_one();
                        });
                        tracing::info!(service = C::NAME, "connected");
                        publisher = Some(connected.routed());
                        continue;
                    }
                    Err(error) if error.is_permanent() => break Err(error),
                    Err(error) => {
                        tracing::warn!(service = C::NAME, error = %error, "cannot connect");
                        retry_delay(&mut failures)
                    }
                }
            }
            Some(connected) => match clock.round(connected, &metrics).await {
                Next::After(wait) => {
                    failures = 0;
                    wait
                }
                Next::Retry => retry_delay(&mut failures),
            },
        };
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            () = tokio::time::sleep(wait) => {}
            () = lost.notified(), if publisher.is_some() => {}
        }
    };
    metrics.set_ready(false);
    if let Some(publisher) = publisher {
        publisher.close().await;
    }
    if let Some(health) = health {
        // Awaited so the port is closed when `run_clock` returns.
        health.abort();
        let _ = health.await;
    }
    tracing::info!(service = C::NAME, "service stopped");
    result
}

/// The backoff before the next attempt, counting this failure.
fn retry_delay(failures: &mut u32) -> Duration {
    let delay = backoff(*failures);
    *failures = failures.saturating_add(1);
    tracing::info!(
        delay_ms = delay.as_millis() as u64,
        "waiting before trying again"
    );
    delay
}

/// Runs `step` and `clock` side by side until `shutdown` completes, or until one of them stops
/// on an error, which then stops the other: for a consumer that also watches the time (the
/// releaser and its signing deadlines). Returns the first error.
pub async fn run_with_clock<S: crate::Step, C: Clock>(
    settings: &Settings,
    step: Arc<S>,
    clock: C,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), BusError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopped_too = stopped.clone();
    let consumer = crate::run(settings, step, async move {
        let mut stopped = stopped;
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    let clock = run_clock(settings, clock, async move {
        let mut stopped = stopped_too;
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    tokio::pin!(consumer, clock, shutdown);
    let (mut consumer_result, mut clock_result) = (None, None);
    tokio::select! {
        () = &mut shutdown => {}
        result = &mut consumer => consumer_result = Some(result),
        result = &mut clock => clock_result = Some(result),
    }
    let _ = stop.send(true);
    let consumer_result = match consumer_result {
        Some(result) => result,
        None => consumer.await,
    };
    let clock_result = match clock_result {
        Some(result) => result,
        None => clock.await,
    };
    consumer_result.and(clock_result)
}
