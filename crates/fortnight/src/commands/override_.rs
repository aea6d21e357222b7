//! `fortnight override block|unblock|release|hold|unhold` and `fortnight end-of-life`: steer
//! the releaser. Each override carries a reason, the operator (signed with the broker-checked
//! `user_id`) and an optional expiry; the releaser keeps every one in the stream's audit log.

use std::process::ExitCode;

use anyhow::bail;
use chrono::{DateTime, Utc};
use messages::{
    Message, Override, OverrideBlock, OverrideEndOfLife, OverrideHold, OverrideRelease,
    OverrideUnblock, OverrideUnhold, Stream, Version,
};

use super::{Identity, publish_signed};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Keep a candidate from being released.
    Block(Candidate),
    /// Lift a block.
    Unblock(Candidate),
    /// Release a candidate now, even when its gates failed (recorded as forced).
    Release(Candidate),
    /// Stop the stream's releases until unhold (or the expiry).
    Hold(Whole),
    /// Lift a stream's hold.
    Unhold(Whole),
}

#[derive(Debug, clap::Args)]
pub struct Candidate {
    /// The stream, as named in the configuration.
    pub stream: Stream,
    /// The candidate's version, as `fortnight status` lists it.
    pub version: Version,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Whole {
    /// The stream, as named in the configuration.
    pub stream: Stream,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// Why; shown in skip reasons, `fortnight status` and the audit log.
    #[arg(long, required = true)]
    pub reason: String,
    /// When the override lapses: an RFC 3339 time, or a delay such as `30m`, `12h` or `7d`.
    #[arg(long, value_parser = parse_expiry)]
    pub expires: Option<DateTime<Utc>>,
    #[command(flatten)]
    pub identity: Identity,
}

#[derive(Debug, clap::Args)]
pub struct EndOfLife {
    /// The stream, as named in the configuration.
    pub stream: Stream,
    /// Why; kept in the stream's audit log and the end-of-life message.
    #[arg(long, required = true)]
    pub reason: String,
    #[command(flatten)]
    pub identity: Identity,
}

fn parse_expiry(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    settings::Deadline::try_from(text.to_owned())
        .ok()
        .and_then(|delay| chrono::TimeDelta::from_std(delay.0).ok())
        .map(|delay| Utc::now() + delay)
        .ok_or_else(|| {
            format!("{text:?} is neither an RFC 3339 time nor a delay like 30m, 12h or 7d")
        })
}

async fn send<M: Message>(
    settings: &settings::Settings,
    body: M,
    what: &Override,
) -> anyhow::Result<ExitCode> {
    let message = publish_signed(settings, &body, &what.operator).await?;
    let until = what
        .expires
        .map(|t| format!(" until {}", t.to_rfc3339()))
        .unwrap_or_default();
    println!(
        "{} for {}{} sent by {}{until} (message {}); see `fortnight status {}`",
        M::TOPIC,
        what.stream,
        what.version
            .as_ref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        what.operator,
        message.id,
        what.stream
    );
    Ok(ExitCode::SUCCESS)
}

/// `fortnight end-of-life`: an override without a candidate or an expiry.
pub async fn end_of_life(config: &std::path::Path, args: EndOfLife) -> anyhow::Result<ExitCode> {
    let settings = super::load_settings(config)?;
    if let Err(reason) = releaser::twoweek_stream(&settings, &args.stream) {
        bail!("{reason}");
    }
    let operator = args.identity.resolve_operator(&settings)?;
    if args.reason.trim().is_empty() {
        bail!("--reason must say why");
    }
    let body = Override {
        stream: args.stream,
        version: None,
        reason: args.reason,
        operator,
        expires: None,
    };
    send(&settings, OverrideEndOfLife(body.clone()), &body).await
}

pub async fn run(config: &std::path::Path, command: Command) -> anyhow::Result<ExitCode> {
    let settings = super::load_settings(config)?;
    let (stream, version, common) = match &command {
        Command::Block(c) | Command::Unblock(c) | Command::Release(c) => {
            (&c.stream, Some(c.version.clone()), &c.common)
        }
        Command::Hold(w) | Command::Unhold(w) => (&w.stream, None, &w.common),
    };
    if let Err(reason) = releaser::twoweek_stream(&settings, stream) {
        bail!("{reason}");
    }
    let operator = common.identity.resolve_operator(&settings)?;
    if common.reason.trim().is_empty() {
        bail!("--reason must say why");
    }
    let body = Override {
        stream: stream.clone(),
        version,
        reason: common.reason.clone(),
        operator,
        expires: common.expires,
    };
    match command {
        Command::Block(_) => send(&settings, OverrideBlock(body.clone()), &body).await,
        Command::Unblock(_) => send(&settings, OverrideUnblock(body.clone()), &body).await,
        Command::Release(_) => send(&settings, OverrideRelease(body.clone()), &body).await,
        Command::Hold(_) => send(&settings, OverrideHold(body.clone()), &body).await,
        Command::Unhold(_) => send(&settings, OverrideUnhold(body.clone()), &body).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_a_time_or_a_positive_delay() {
        assert_eq!(
            parse_expiry("2026-12-01T00:00:00Z").unwrap(),
            "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let in_a_week = parse_expiry("7d").unwrap() - Utc::now();
        assert!((chrono::TimeDelta::days(7) - in_a_week).num_seconds().abs() < 5);
        assert!(parse_expiry("0d").is_err());
        assert!(parse_expiry("7w").is_err());
        assert!(parse_expiry("soon").is_err());
    }
}
