//! `fortnight up`: every consumer in one process, for a single host. Each consumer is its own
//! task on the bus runtime with its own queue, exactly as when it runs from its own binary;
//! they only share the process and one shutdown signal.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use releaser::Releaser;
use settings::Settings;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(config: &std::path::Path, _args: Args) -> anyhow::Result<ExitCode> {
    let settings = Arc::new(super::load_settings(config)?);
    run_all(settings, bus::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// A shutdown signal every task can wait on.
pub fn shutdown_waiter(
    receiver: &watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let mut receiver = receiver.clone();
    async move {
        // An error means the sender is gone, which also means stop.
        let _ = receiver.wait_for(|stop| *stop).await;
    }
}

/// Runs every consumer, the release timer and the releaser's deadline clock until `shutdown`
/// resolves or one of them fails; then stops the others (each finishes the message in hand)
/// and returns the first error.
pub async fn run_all(
    settings: Arc<Settings>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for consumer in registry::CONSUMERS {
        let running = consumer.start(Arc::clone(&settings), shutdown_waiter(&stopped))?;
        tasks.spawn(async move { (consumer.name, running.await.map_err(anyhow::Error::from)) });
    }
    {
        let settings = Arc::clone(&settings);
        let shutdown = shutdown_waiter(&stopped);
        tasks.spawn(async move {
            let result = release_timer::run(settings, shutdown).await;
            (release_timer::NAME, result.map_err(anyhow::Error::from))
        });
    }
    {
        let releaser = Releaser::new(Arc::clone(&settings))
            .context("cannot set up the releaser's signing deadlines")?;
        let shutdown = shutdown_waiter(&stopped);
        tasks.spawn(async move {
            let result = releaser::deadlines::run(releaser, shutdown).await;
            (
                releaser::deadlines::Deadlines::NAME,
                result.map_err(anyhow::Error::from),
            )
        });
    }
    tracing::info!(tasks = tasks.len(), "all consumers started");

    tokio::pin!(shutdown);
    let mut first_error = None;
    tokio::select! {
        () = &mut shutdown => {}
        Some(joined) = tasks.join_next() => first_error = failure(joined),
    }
    let _ = stop.send(true);
    while let Some(joined) = tasks.join_next().await {
        if let Some(error) = failure(joined) {
            first_error.get_or_insert(error);
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The error of a finished task, if it failed.
fn failure(
    joined: Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>,
) -> Option<anyhow::Error> {
    match joined {
        Ok((name, Ok(()))) => {
            tracing::info!(consumer = name, "consumer stopped");
            None
        }
        Ok((name, Err(error))) => {
            tracing::error!(consumer = name, error = %format!("{error:#}"), "consumer failed");
            Some(error.context(format!("the {name} consumer stopped")))
        }
        Err(join) => Some(anyhow::anyhow!("a consumer task panicked: {join}")),
    }
}
