//! `fortnight dead-letters`: what a consumer gave up on, and why; put it back or drop it.

use std::process::ExitCode;

use anyhow::Context;
use bus::dead_letters::{self, DeadLetter};
use serde_json::json;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List a consumer's dead letters, oldest first, with attempts, routing key and reason.
    List {
        /// The consumer (`image-builder`, `releaser`, ...).
        consumer: String,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter in full: reason, headers and body.
    Show {
        consumer: String,
        /// The message id, as `list` prints it.
        id: String,
    },
    /// Put dead letters back on the consumer's queue (all, or one with --id), attempts reset.
    Replay {
        consumer: String,
        #[arg(long, value_name = "ID")]
        id: Option<String>,
    },
    /// Drop every dead letter of a consumer.
    Purge {
        consumer: String,
        /// Confirms that the messages are to be dropped for good.
        #[arg(long, required = true)]
        yes: bool,
    },
}

fn as_json(letter: &DeadLetter) -> serde_json::Value {
    let body = serde_json::from_slice::<serde_json::Value>(&letter.body)
        .unwrap_or_else(|_| letter.body_text().into());
    json!({
        "id": letter.id,
        "consumer": letter.consumer,
        "reason": letter.reason,
        "attempts": letter.attempts,
        "routing_key": letter.routing_key,
        "headers": letter.headers,
        "body": body,
    })
}

pub async fn run(config: Option<&std::path::Path>, command: Command) -> anyhow::Result<ExitCode> {
    let settings = super::load_bus_settings(config)?;
    let context = |consumer: &str| {
        format!(
            "cannot reach the dead letters of {consumer} (queue {}.dead)",
            settings.queue_name(consumer)
        )
    };
    match command {
        Command::List { consumer, json } => {
            let letters = dead_letters::list(&settings, &consumer)
                .await
                .with_context(|| context(&consumer))?;
            for letter in &letters {
                if json {
                    println!("{}", as_json(letter));
                } else {
                    println!(
                        "{}\tattempts={}\t{}\t{}",
                        letter.id.as_deref().unwrap_or("-"),
                        letter.attempts,
                        letter.routing_key,
                        letter.reason
                    );
                }
            }
            if !json {
                eprintln!("{} dead letter(s) for {consumer}", letters.len());
            }
        }
        Command::Show { consumer, id } => {
            let letter = dead_letters::show(&settings, &consumer, &id)
                .await
                .with_context(|| context(&consumer))?;
            println!("{:#}", as_json(&letter));
        }
        Command::Replay { consumer, id } => {
            let moved = dead_letters::replay(&settings, &consumer, id.as_deref())
                .await
                .with_context(|| context(&consumer))?;
            println!(
                "{moved} dead letter(s) put back on {}",
                settings.queue_name(&consumer)
            );
        }
        Command::Purge { consumer, yes: _ } => {
            let dropped = dead_letters::purge(&settings, &consumer)
                .await
                .with_context(|| context(&consumer))?;
            println!("{dropped} dead letter(s) of {consumer} dropped");
        }
    }
    Ok(ExitCode::SUCCESS)
}
