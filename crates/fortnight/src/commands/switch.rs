//! `fortnight switch STREAM --reason ... [--release-now]`: move the two-week releases to
//! STREAM from the stream it `succeeds`, before (or without) its `switch_at`. The releaser
//! checks the request like an override (an operator's own account, a stream that succeeds
//! another and has not taken over yet), keeps it in STREAM's audit log and announces
//! `fortnight.stream.switched`.

use std::process::ExitCode;

use anyhow::bail;
use messages::{Message, OverrideSwitch, Stream};

use super::{Identity, publish_signed};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The stream that takes over (the one whose `succeeds` names the current one).
    pub stream: Stream,
    /// Why; kept in the audit log and carried by `fortnight.stream.switched`.
    #[arg(long, required = true)]
    pub reason: String,
    /// Release the stream's current period at once instead of waiting for its next tick.
    #[arg(long)]
    pub release_now: bool,
    #[command(flatten)]
    pub identity: Identity,
}

pub async fn run(config: &std::path::Path, args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::load_settings(config)?;
    let stream = &args.stream;
    let (stream_settings, _) =
        releaser::twoweek_stream(&settings, stream).map_err(anyhow::Error::msg)?;
    let Some(from) = &stream_settings.succeeds else {
        bail!(
            "{stream} succeeds no stream: set `succeeds = \"<stream>\"` in [streams.{stream}] to name the stream it takes over from"
        );
    };
    if args.reason.trim().is_empty() {
        bail!("--reason must say why");
    }
    let operator = args.identity.resolve_operator(&settings)?;
    let body = OverrideSwitch {
        stream: stream.clone(),
        reason: args.reason.clone(),
        operator: operator.clone(),
        release_now: args.release_now,
    };
    let message = publish_signed(&settings, &body, &operator).await?;
    println!(
        "{} to {stream} from {from} sent by {operator} (message {}){}; see `fortnight status {stream}`",
        OverrideSwitch::TOPIC,
        message.id,
        if args.release_now {
            ", its first two-week release at once"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
