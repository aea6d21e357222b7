//! `fortnight status [STREAM]`: each stream's current release and its age, the candidates
//! newer than it with the state of every gate, the overrides in force, and whether the stream
//! is stale, and its part in the two-week releases (current, a pre-release that switches at a
//! date, or retired to its successor: `gate::succession`). Read from the store with the releaser's own decision code and the release timer's
//! own staleness rules, so it says what the next tick would do and what the timer announces.

use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::Utc;
use gate::succession::{Role, two_week_role};
use messages::Stream;
use release_timer::stale::human_age;
use releaser::{Decision, StreamView, decide};
use settings::{Settings, StreamSettings, TwoWeekSettings, WhenNothingPassed};
use store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this stream (default: every stream with two-week releases).
    pub stream: Option<Stream>,
}

/// How long the releaser waits for each answer to a signing request of the stream.
pub fn signing_deadline(settings: &StreamSettings) -> std::time::Duration {
    settings
        .signing
        .as_ref()
        .map(|signing| signing.deadline.0)
        .unwrap_or_default()
}

/// Reads a stream as the releaser sees it now, with the stream's settings and two-week
/// settings that decide what it releases.
pub fn read_view<'a>(
    settings: &'a Settings,
    store: &Store,
    stream: &Stream,
) -> anyhow::Result<(StreamView, &'a StreamSettings, &'a TwoWeekSettings)> {
    let (stream_settings, twoweek) =
        releaser::twoweek_stream(settings, stream).map_err(anyhow::Error::msg)?;
    let view = StreamView::read(store, stream, stream_settings, Utc::now())
        .with_context(|| cannot_read(store, stream))?;
    Ok((view, stream_settings, twoweek))
}

/// What failed when a stream cannot be read from the store.
pub fn cannot_read(store: &Store, stream: &Stream) -> String {
    format!(
        "cannot read stream {stream} from the store at {}",
        store.root().display()
    )
}

fn print_stream(settings: &Settings, store: &Store, stream: &Stream) -> anyhow::Result<()> {
    let (view, stream_settings, twoweek) = read_view(settings, store, stream)?;
    match (&view.current, view.current_age_seconds()) {
        (Some((version, _)), Some(age)) => println!(
            "{stream}: current release {version}, {} old",
            human_age(age)
        ),
        (Some((version, _)), None) => {
            println!("{stream}: current release {version} (no release.json)")
        }
        (None, _) => println!("{stream}: nothing released yet"),
    }
    let ended = releaser::endoflife::read(store, stream)
        .with_context(|| format!("cannot read the end of life of {stream}"))?;
    if let Some(ended) = &ended {
        println!("  END OF LIFE {}", releaser::endoflife::describe(ended));
        for (arch, at) in &ended.arches {
            let rebase = at.rebase.as_ref().map_or_else(
                || "no successor".to_owned(),
                |r| format!("machines move to {r}"),
            );
            println!("    {arch}: {} at {} ({rebase})", at.release_ref, at.commit);
        }
    }
    // The instant the view was read at, so the role and the decision see the same side of a
    // `switch_at`.
    let now = view.now;
    let role = two_week_role(settings, store, stream, now)
        .with_context(|| format!("cannot read whether stream {stream} switched"))?;
    println!("  two-week releases: {role}");
    let pulse = release_timer::stale::pulse(store, stream, stream_settings, &role, now)
        .with_context(|| format!("cannot tell whether stream {stream} is stale"))?;
    for standstill in pulse.stale(now) {
        println!("  STALE: {}", standstill.describe(now));
    }
    let waiting = releaser::signing::waiting(store, stream)
        .with_context(|| format!("cannot read the signing requests of {stream}"))?;
    for pending in &waiting {
        println!(
            "  {} {} (request {})",
            pending.request.version,
            pending.describe(signing_deadline(stream_settings)),
            pending.request.request_id
        );
    }
    match &view.overrides.hold {
        Some(hold) => println!("  ON HOLD {}", hold.describe()),
        None => println!("  not on hold"),
    }
    for (version, block) in &view.overrides.blocks {
        println!("  {version} blocked {}", block.describe());
    }
    let (decision, verdicts) = decide(&view, stream_settings, twoweek.karma_required);
    if verdicts.is_empty() {
        println!("  no candidate newer than the current release");
    }
    for verdict in &verdicts {
        let reasons = verdict.reasons();
        let state = if reasons.is_empty() {
            "eligible".to_owned()
        } else {
            reasons.join("; ")
        };
        let karma = view
            .candidate(&verdict.version)
            .map_or(0, |c| c.tally.karma);
        println!("  {}  karma {karma:+}  {state}", verdict.version);
    }
    if let Role::Retired { to, .. } = &role {
        println!("  no next tick: {to} has the two-week releases");
        return Ok(());
    }
    match decision {
        _ if ended.is_some() => {
            println!("  next tick releases nothing: the stream is at its end of life")
        }
        Decision::Release(version) => println!("  next tick releases {version}"),
        Decision::Held(_) => println!("  next tick releases nothing: the stream is on hold"),
        Decision::Nothing => println!(
            "  next tick releases nothing: no candidate is eligible ({})",
            match twoweek.when_nothing_passed {
                WhenNothingPassed::Skip => "it then waits for the tick after",
                WhenNothingPassed::ReleaseNextPass =>
                    "the first candidate to become eligible after it is released at once",
            }
        ),
    }
    Ok(())
}

pub async fn run(config: &std::path::Path, args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::load_settings(config)?;
    let store = Store::open(&settings.store.root).context("cannot open the store")?;
    let streams: Vec<Stream> = match args.stream {
        Some(stream) => vec![stream],
        None => settings
            .streams
            .iter()
            .filter(|(_, s)| s.twoweek.is_some())
            .map(|(name, _)| name.clone())
            .collect(),
    };
    if streams.is_empty() {
        bail!("no stream has two-week releases ([streams.<name>.twoweek] in the configuration)");
    }
    for stream in &streams {
        print_stream(&settings, &store, stream)?;
    }
    Ok(ExitCode::SUCCESS)
}
