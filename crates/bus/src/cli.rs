//! What every binary shares: logging, signals, and the `main` of a consumer.

use std::fmt::{self, Display, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use settings::Settings;
use tracing::field::Field;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{Writer, debug_fn};

use crate::{Clock, Step};

/// Where a consumer reads its configuration when neither `--config` nor `FORTNIGHT_CONFIG`
/// says.
const DEFAULT_CONFIG: &str = "/etc/fortnight/config.toml";
/// Exit code for a configuration that cannot work (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;
/// Exit code for a command line that cannot be understood (sysexits' EX_USAGE).
const EXIT_USAGE: u8 = 64;

/// One log style for every binary: `FORTNIGHT_LOG` is an env filter (default `info`);
/// `FORTNIGHT_LOG_FORMAT=json` writes one JSON object per line. Logs go to stderr, one line
/// per event in either format (see [`escaped_fields`]).
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
        _ => builder.fmt_fields(escaped_fields()).try_init(),
    };
}

/// The text format's fields, laid out like tracing-subscriber's default (`message` bare, the
/// others `name=value`), with control characters escaped. Values from messages (a reason, a
/// routing key, a vote's comment) reach log lines, and a raw newline in one would forge a log
/// line of its own, a NUL or ESC would garble a terminal or a collector. The JSON format needs
/// none of this: serde escapes strings.
fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    debug_fn(
        |writer: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug| {
            let mut out = Escaping(writer);
            match field.name() {
                "message" => write!(out, "{value:?}"),
                name => write!(out, "{name}={value:?}"),
            }
        },
    )
    .delimited(" ")
}

/// Writes through to `W` with every control character (and the Unicode line and paragraph
/// separators, which some viewers break lines at) spelled as an escape.
struct Escaping<'a, W: ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) =
            rest.find(|c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
        {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..]
                .chars()
                .next()
                .expect("find returned a char boundary");
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                '\0' => self.0.write_str("\\0")?,
                other => write!(self.0, "\\u{{{:x}}}", u32::from(other))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
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

/// The `main` of a consumer that runs a clock beside its queue (the releaser and its signing
/// deadlines): [`consumer_main`] around [`run_with_clock`](crate::run_with_clock).
pub fn consumer_with_clock_main<S: Step, C: Clock, E: Display>(
    make: impl FnOnce(Arc<Settings>) -> Result<(S, C), E>,
) -> ExitCode {
    match prepare(S::NAME, make) {
        Ok((settings, (step, clock), runtime)) => stopped(
            S::NAME,
            runtime.block_on(crate::run_with_clock(
                &settings,
                Arc::new(step),
                clock,
                shutdown_signal(),
            )),
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

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn text_logs_escape_control_characters_so_every_event_is_one_line() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .fmt_fields(escaped_fields())
            .finish();
        let hostile = "k1\nINFO forged: line\0\x1b[31m\u{2028}";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("message", id = %hostile);
            let _entered = span.enter();
            tracing::warn!(reason = %hostile, text = hostile, count = 3, "step failed: {hostile}");
        });
        let output = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(output.matches('\n').count(), 1, "one line: {output:?}");
        assert!(output.ends_with('\n'), "{output:?}");
        assert!(
            !output.contains(['\0', '\x1b', '\r', '\u{2028}']),
            "{output:?}"
        );
        let escaped = r"k1\nINFO forged: line\0\u{1b}[31m\u{2028}";
        assert!(
            output.contains(&format!("step failed: {escaped}")),
            "{output:?}"
        );
        assert!(output.contains(&format!("reason={escaped}")), "{output:?}");
        assert!(output.contains(&format!("id={escaped}")), "{output:?}");
        assert!(output.contains("count=3"), "{output:?}");
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
