//! `fortnight`: the operator CLI. Each subcommand lives in its own module under `commands/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

#[derive(Debug, Parser)]
#[command(name = "fortnight", version, about = "Fedora Atomic Host's two-week release pipeline on the message bus")]
struct Cli {
    /// Configuration file (TOML); FORTNIGHT_* environment variables override its keys.
    #[arg(long, global = true, env = "FORTNIGHT_CONFIG", default_value = "/etc/fortnight/config.toml")]
    config: std::path::PathBuf,
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
}

fn main() -> ExitCode {
    bus::init_tracing();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Publish(args) => commands::publish::run(&cli.config, args).await,
            Command::Record(args) => commands::record::run(&cli.config, args).await,
            Command::Replay(args) => commands::replay::run(&cli.config, args).await,
            Command::DeadLetters(command) => commands::dead_letters::run(&cli.config, command).await,
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
