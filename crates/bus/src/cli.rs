//! What every binary shares: logging, signals, and the `main` of a consumer.

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use settings::Settings;
use tracing_subscriber::EnvFilter;

use crate::{Clock, Step};

/// Where a consumer reads its configuration when neither `--config` nor `FORTNIGHT_CONFIG`
/// says.
const DEFAULT_CONFIG: &str = "/etc/fortnight/config.toml";
/// Exit code for a configuration that cannot work (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// Exit code for a command line that cannot be understood (sysexits' EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// One log style for every binary: `FORTNIGHT_LOG` is an env filter (default `info`);
/// `FORTNIGHT_LOG_FORMAT=json` writes one JSON object per line. Logs go to stderr.
pub fn init_tracing() {
    let filter =
        EnvFilter::try_from_env("FORTNIGHT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never in journald or collected logs.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second call (tests, several entry points) keeps the first subscriber.
    let _ = match std::env::var("FORTNIGHT_LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().try_init(),
        _ => builder.try_init(),
    };
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
}

fn usage(name: &str) -> String {
    format!(
        "usage: {name} [--config PATH]\n\n\
         Runs the {name} consumer until SIGTERM or SIGINT.\n\
         --config PATH   configuration file (default: $FORTNIGHT_CONFIG or {DEFAULT_CONFIG})\n\n\
         Exit codes: 0 stopped cleanly, 1 runtime failure, {EXIT_USAGE} bad arguments, \
         {EXIT_CONFIG} bad configuration."
    )
}

/// Parses `--config PATH`; `Err` carries the exit code and what to print.
fn config_path(name: &str, args: &[String]) -> Result<PathBuf, (u8, String)> {
    let mut path = std::env::var_os("FORTNIGHT_CONFIG").map(PathBuf::from);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err((0, usage(name))),
            "--config" => match args.next() {
                Some(value) => path = Some(PathBuf::from(value)),
                None => {
                    return Err((
                        EXIT_USAGE,
                        format!("--config needs a path\n\n{}", usage(name)),
                    ));
                }
            },
            other => match other.strip_prefix("--config=") {
                Some(value) => path = Some(PathBuf::from(value)),
                None => {
                    return Err((
                        EXIT_USAGE,
                        format!("unknown argument `{other}`\n\n{}", usage(name)),
                    ));
                }
            },
        }
    }
    Ok(path.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG)))
}

/// Arguments, logging and configuration, shared by every long-running binary; `Err` is the
/// exit code after printing why.
fn start(name: &str) -> Result<Arc<Settings>, ExitCode> {
    init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = match config_path(name, &args) {
        Ok(path) => path,
        Err((0, text)) => {
            println!("{text}");
            return Err(ExitCode::SUCCESS);
        }
        Err((code, text)) => {
            eprintln!("{text}");
            return Err(ExitCode::from(code));
        }
    };
    match Settings::load(&path) {
        Ok(settings) => Ok(Arc::new(settings)),
        Err(error) => {
            tracing::error!(error = %error, "cannot start");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|error| {
        tracing::error!(error = %error, "cannot start the async runtime");
        ExitCode::FAILURE
    })
}

/// Configuration, the service made from it, and the async runtime; `Err` is the exit code
/// after logging why.
fn prepare<T, E: Display>(
    name: &str,
    make: impl FnOnce(Arc<Settings>) -> Result<T, E>,
) -> Result<(Arc<Settings>, T, tokio::runtime::Runtime), ExitCode> {
    let settings = start(name)?;
    let made = make(settings.clone()).map_err(|error| {
        tracing::error!(consumer = name, error = %error, "cannot set up the step");
        ExitCode::from(EXIT_CONFIG)
    })?;
    Ok((settings, made, runtime()?))
}

/// The exit code for how `run` or `run_clock` ended.
fn stopped(name: &str, result: Result<(), crate::BusError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is_permanent() => {
            tracing::error!(consumer = name, error = %error, "stopped");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => {
            tracing::error!(consumer = name, error = %error, "stopped");
            ExitCode::FAILURE
        }
    }
}

/// The whole `main` of a consumer binary: arguments, configuration, logging, the step, the
/// runtime, signals and exit codes.
pub fn consumer_main<S: Step, E: Display>(
    make: impl FnOnce(Arc<Settings>) -> Result<S, E>,
) -> ExitCode {
    match prepare(S::NAME, make) {
        Ok((settings, step, runtime)) => stopped(
            S::NAME,
            runtime.block_on(crate::run(&settings, Arc::new(step), shutdown_signal())),
        ),
        Err(code) => code,
    }
}

/// The `main` of a service driven by a clock instead of a queue (the release timer): the
/// same arguments, configuration, logging, health endpoints, reconnects and exit codes as
/// [`consumer_main`].
pub fn clock_main<C: Clock, E: Display>(
    make: impl FnOnce(Arc<Settings>) -> Result<C, E>,
) -> ExitCode {
    match prepare(C::NAME, make) {
        Ok((settings, clock, runtime)) => stopped(
            C::NAME,
            runtime.block_on(crate::run_clock(&settings, clock, shutdown_signal())),
        ),
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn config_flag_in_both_spellings() {
        assert_eq!(
            config_path("c", &args(&["--config", "/a"])).unwrap(),
            PathBuf::from("/a")
        );
        assert_eq!(
            config_path("c", &args(&["--config=/b"])).unwrap(),
            PathBuf::from("/b")
        );
        assert_eq!(
            config_path("c", &args(&["--bogus"])).unwrap_err().0,
            EXIT_USAGE
        );
        assert_eq!(
            config_path("c", &args(&["--config"])).unwrap_err().0,
            EXIT_USAGE
        );
        assert_eq!(config_path("c", &args(&["--help"])).unwrap_err().0, 0);
    }
}
