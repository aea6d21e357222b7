//! `fortnight vote STREAM VERSION +1|0|-1`: a tester's karma on a candidate, signed with the
//! broker-checked `user_id`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use messages::{KarmaSubmitted, Message, Outgoing, Stream, UserName, Version};
use settings::Settings;

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

/// Who signs a vote, an override or a manual tick.
#[derive(Debug, clap::Args)]
pub struct Identity {
    /// The broker user you connect as; taken from `amqp_url` when it names one. Needed with
    /// TLS client certificates, where the broker takes the user from the certificate.
    #[arg(long, value_name = "NAME")]
    pub user: Option<UserName>,
}

impl Identity {
    /// The account the broker will stamp as `user_id`, which receivers trust.
    pub fn resolve(&self, settings: &Settings) -> anyhow::Result<UserName> {
        if let Some(user) = &self.user {
            return Ok(user.clone());
        }
        let Some(name) = bus::Publisher::url_user(settings) else {
            bail!("cannot tell which broker user you are: amqp_url names none; pass --user NAME");
        };
        name.parse().with_context(|| {
            format!(
                "the broker user {name:?} of amqp_url is not a valid account name; pass --user NAME"
            )
        })
    }

    /// The account, which must be in `operators`: overrides and manual ticks steer releases,
    /// and the releaser refuses overrides from anyone else.
    pub fn resolve_operator(&self, settings: &Settings) -> anyhow::Result<UserName> {
        let operator = self.resolve(settings)?;
        if !settings.operators.contains(&operator) {
            bail!(
                "{operator} is not in `operators` of the configuration; only operators may override releases or fire the timer"
            );
        }
        Ok(operator)
    }
}

fn parse_karma(text: &str) -> Result<i8, String> {
    match text {
        "+1" | "1" => Ok(1),
        "0" => Ok(0),
        "-1" => Ok(-1),
        other => Err(format!("{other:?} is not a vote; use +1, 0 or -1")),
    }
}

/// Publishes `body` signed by `user`, waiting for the broker's confirm.
pub async fn publish_signed<M: Message>(
    settings: &Settings,
    body: &M,
    user: &UserName,
) -> anyhow::Result<Outgoing> {
    let message = Outgoing::new(uuid::Uuid::new_v4(), body);
    let publisher = bus::Publisher::connect(settings, super::CONNECTION_NAME)
        .await
        .context("cannot connect to the broker (check amqp_url and [tls] in the configuration)")?;
    publisher
        .publish_as(&message, user.as_str())
        .await
        .with_context(|| {
            format!(
                "the broker refused {} signed as {user}; is {user} the user you connect as?",
                M::TOPIC
            )
        })?;
    publisher.close().await;
    Ok(message)
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
