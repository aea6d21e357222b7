//! `fortnight vote STREAM VERSION +1|0|-1`: a tester's karma on a candidate, signed with the
//! broker-checked `user_id`.

use std::process::ExitCode;

use messages::{KarmaSubmitted, Stream, Version};

use super::{Identity, publish_signed};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream, as named in the configuration.
    pub stream: Stream,
    /// The candidate's version, as `fortnight status` lists it.
    pub version: Version,
    /// +1 (works), 0 (neutral comment), -1 (broken).
    #[arg(allow_hyphen_values = true, value_parser = parse_karma)]
    pub karma: i8,
    /// What you tried and what you saw; kept with the vote.
    #[arg(long)]
    pub comment: Option<String>,
    #[command(flatten)]
    pub identity: Identity,
}

fn parse_karma(text: &str) -> Result<i8, String> {
    match text {
        "+1" | "1" => Ok(1),
        "0" => Ok(0),
        "-1" => Ok(-1),
        other => Err(format!("{other:?} is not a vote; use +1, 0 or -1")),
    }
}

pub async fn run(config: &std::path::Path, args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::load_settings(config)?;
    settings.require_stream(&args.stream)?;
    let user = args.identity.resolve(&settings)?;
    let body = KarmaSubmitted {
        stream: args.stream,
        version: args.version,
        user: user.clone(),
        karma: args.karma,
        comment: args.comment,
    };
    let message = publish_signed(&settings, &body, &user).await?;
    println!(
        "vote {:+} by {user} on {} {} sent (message {}); the karma-tracker dead-letters it with a reason if it is refused",
        body.karma, body.stream, body.version, message.id
    );
    Ok(ExitCode::SUCCESS)
}
