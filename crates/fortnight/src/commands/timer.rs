//! `fortnight timer fire STREAM`: publish the stream's two-week tick now, for its current
//! period. The releaser still releases at most once per period, so this retries a tick; to
//! release outside the schedule use `fortnight override release`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use gate::succession::{Role, two_week_role};
use messages::Stream;

use super::Identity;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Publish the tick of the stream's current period, signed by you (an operator).
    Fire {
        /// The stream, as named in the configuration.
        stream: Stream,
        #[command(flatten)]
        identity: Identity,
    },
}

pub async fn run(config: &std::path::Path, command: Command) -> anyhow::Result<ExitCode> {
    let settings = super::load_settings(config)?;
    let Command::Fire { stream, identity } = command;
    // Checked before connecting, so a typo is not reported as a broker problem.
    releaser::twoweek_stream(&settings, &stream).map_err(anyhow::Error::msg)?;
    let store = store::Store::open(&settings.store.root).context("cannot open the store")?;
    let role = two_week_role(&settings, &store, &stream, chrono::Utc::now())
        .with_context(|| format!("cannot read whether stream {stream} switched"))?;
    if let Role::Retired { to, .. } = &role {
        bail!("{stream} has no more ticks ({role}): the releaser would ignore one; fire {to}'s");
    }
    let operator = identity.resolve_operator(&settings)?;
    let publisher = super::connect(&settings).await?;
    let fired = release_timer::fire_now(&settings, &stream, operator, &publisher).await;
    // Closed on every path, before the async runtime ends (see `bus::Publisher::close`).
    publisher.close().await;
    let fired = fired?;
    println!("tick of {} for period {} sent", fired.stream, fired.period);
    Ok(ExitCode::SUCCESS)
}
