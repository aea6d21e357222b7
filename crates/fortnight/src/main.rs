//! `fortnight`: the operator CLI. Each subcommand lives in its own module under `commands/`;
//! this file only parses and dispatches.
//!
//! Exit codes: 0 success, 1 failure (the message says what failed and what to do), 2 usage
//! error (from the argument parser).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

#[derive(Debug, Parser)]
#[command(
    name = "fortnight",
    version,
    about = "Fedora Atomic Host's two-week release pipeline on the message bus",
    after_help = "Exit codes: 0 success, 1 failure, 2 usage error."
)]
struct Cli {
    /// Configuration file (TOML); FORTNIGHT_* environment variables override its keys.
    /// [default: /etc/fortnight/config.toml; publish, record, replay, dead-letters and
    /// topology need none, like fedora-messaging: without it they use the local broker as guest]
    #[arg(long, global = true, env = "FORTNIGHT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish messages from a file in fedora-messaging's record format (JSON Lines).
    Publish(commands::publish::Args),
    /// Consume messages and write them in fedora-messaging's record format.
    Record(commands::record::Args),
    /// Re-publish one message (from a record file or datagrepper) to retry a step.
    Replay(commands::replay::Args),
    /// Inspect, replay or purge a consumer's dead letters.
    #[command(subcommand)]
    DeadLetters(commands::dead_letters::Command),
    /// Write or check the JSON Schemas of Fortnight's topics (schemas/).
    #[command(subcommand)]
    Schemas(commands::schemas::Command),
    /// Print the queues, exchange and bindings the consumers need, for an administrator to
    /// create on a broker where Fortnight may not declare (passive_declares).
    #[command(subcommand)]
    Topology(commands::topology::Command),
    /// Run every consumer and the release timer in one process (a single-host deployment).
    Up(commands::up::Args),
    /// Run the whole pipeline on this machine against the local RabbitMQ, from a scratch
    /// OSTree repository to a released image set and its download page.
    Demo(commands::demo::Args),
    /// Vote on a candidate: +1 (works), 0, -1 (broken); signed as your broker user.
    Vote(commands::vote::Args),
    /// Block, unblock or force-release a candidate; hold or unhold a stream.
    #[command(subcommand)]
    Override(commands::override_::Command),
    /// Fire a stream's two-week tick by hand.
    #[command(subcommand)]
    Timer(commands::timer::Command),
    /// Move the two-week releases to a stream from the one it succeeds, now (checked and
    /// audited like an override); without it the switch comes at the stream's `switch_at`.
    Switch(commands::switch::Args),
    /// End a stream's life now: its release refs get their end-of-life commit, which moves
    /// the machines following them to the stream that succeeds it.
    EndOfLife(commands::override_::EndOfLife),
    /// Current releases, candidates with each gate's state, overrides in force.
    Status(commands::status::Args),
    /// Why one candidate is or is not releasable, and what it would change.
    Explain(commands::explain::Args),
    /// What changed between two candidates or releases: packages, commits, files.
    Diff(commands::diff::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Demo(_)) {
        commands::demo::init_logs();
    }
    bus::init_tracing();
    // The bus commands read a file only when one is named or the default exists.
    let named = cli.config;
    let config = named
        .clone()
        .unwrap_or_else(|| PathBuf::from(commands::DEFAULT_CONFIG));
    let named = named.as_deref();
    let result = block_on(async move {
        match cli.command {
            Command::Publish(args) => commands::publish::run(named, args).await,
            Command::Record(args) => commands::record::run(named, args).await,
            Command::Replay(args) => commands::replay::run(named, args).await,
            Command::DeadLetters(command) => commands::dead_letters::run(named, command).await,
            Command::Up(args) => commands::up::run(&config, args).await,
            Command::Demo(args) => commands::demo::run(&config, args).await,
            Command::Vote(args) => commands::vote::run(&config, args).await,
            Command::Override(command) => commands::override_::run(&config, command).await,
            Command::Timer(command) => commands::timer::run(&config, command).await,
            Command::Switch(args) => commands::switch::run(&config, args).await,
            Command::EndOfLife(args) => commands::override_::end_of_life(&config, args).await,
            Command::Status(args) => commands::status::run(&config, args).await,
            Command::Explain(args) => commands::explain::run(&config, args).await,
            Command::Diff(args) => commands::diff::run(&config, args).await,
            Command::Schemas(command) => commands::schemas::run(command),
            Command::Topology(command) => commands::topology::run(named, command),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F: Future<Output = anyhow::Result<ExitCode>>>(future: F) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(future)
}
