//! `fortnight vote STREAM VERSION +1|0|-1`: a tester's karma on a candidate, signed with the
//! broker-checked `user_id`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use messages::{KarmaSubmitted, Stream, Version};
use store::Store;

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
    let stream_settings = settings.require_stream(&args.stream)?;
    let user = args.identity.resolve(&settings)?;
    // The tracker would refuse the vote into its dead-letter queue, where a tester never
    // looks; where this machine sees the store, say why now and send nothing.
    let root = &settings.store.root;
    if root.is_dir() {
        let store = Store::open(root)?;
        let refusal = karma_tracker::vote_refusal(
            &store,
            stream_settings,
            &args.stream,
            &args.version,
            &user,
        )
        .with_context(|| {
            format!(
                "cannot check the candidate in the store at {}",
                root.display()
            )
        })?;
        if let Some(reason) = refusal {
            bail!(
                "{reason}; nothing was sent. `fortnight status {}` lists the candidates awaiting votes",
                args.stream
            );
        }
    } else {
        eprintln!(
            "note: the store ({}) is not visible from here, so the vote is sent unchecked",
            root.display()
        );
    }
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
