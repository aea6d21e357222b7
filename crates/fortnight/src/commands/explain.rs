//! `fortnight explain STREAM VERSION`: every gate of one candidate and whether the next tick
//! would release it, from the releaser's own decision code, and what it would change against
//! the current release (packages, commits, files).

use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::Utc;
use gate::succession::{Role, two_week_role};
use messages::{Stream, Version};
use releaser::{Decision, HumanGate, StreamView, Verdict, decide};
use store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub stream: Stream,
    pub version: Version,
}

pub async fn run(config: &std::path::Path, args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::load_settings(config)?;
    let store = Store::open(&settings.store.root).context("cannot open the store")?;
    let (stream_settings, twoweek) =
        releaser::twoweek_stream(&settings, &args.stream).map_err(anyhow::Error::msg)?;
    let now = Utc::now();
    // The named candidate alone (and, when it could be released, the newer ones that would
    // go first): never the years of older candidates.
    let view = StreamView::read_for(&store, &args.stream, stream_settings, &args.version, now)
        .with_context(|| super::status::cannot_read(&store, &args.stream))?;
    let Some((view, candidate)) = view
        .as_ref()
        .and_then(|view| Some((view, view.candidate(&args.version)?)))
    else {
        bail!(
            "{} has no candidate {} in the store ({}); see `fortnight status {}`",
            args.stream,
            args.version,
            store.version_dir(&args.stream, &args.version).display(),
            args.stream
        );
    };
    let verdict = Verdict::of(view, candidate, stream_settings, twoweek.karma_required);
    println!("{} {}", args.stream, args.version);
    let pending = releaser::signing::read(&store, &args.stream, &args.version)
        .context("cannot read the candidate's signing request")?;
    if let Some(pending) = pending {
        println!(
            "  released once signed: {} (request {})",
            pending.describe(super::status::signing_deadline(stream_settings)),
            pending.request.request_id
        );
    }
    if verdict.autotest.is_empty() {
        println!("  automated tests: passed on every arch");
    } else {
        println!("  automated tests: {}", verdict.autotest.join("; "));
    }
    if !stream_settings.external_gating.is_empty() {
        if verdict.external.is_empty() {
            println!("  external tests: passed on every arch");
        } else {
            println!("  external tests: {}", verdict.external.join("; "));
        }
    }
    let votes = candidate
        .tally
        .votes
        .iter()
        .map(|v| format!("{} {:+}", v.user, v.karma))
        .collect::<Vec<_>>();
    if votes.is_empty() {
        println!("  karma: {:+} (no votes yet)", candidate.tally.karma);
    } else {
        println!(
            "  karma: {:+} from {}",
            candidate.tally.karma,
            votes.join(", ")
        );
    }
    match &verdict.human {
        HumanGate::Passed => println!("  human testing: passed"),
        HumanGate::Failed(reason) => println!("  human testing: {reason}"),
        HumanGate::Advisory(reason) => println!(
            "  human testing: advisory for this stream{}",
            reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
    }
    match &verdict.blocked {
        Some(block) => println!("  blocked {}", block.describe()),
        None => println!("  not blocked"),
    }
    if let Some(current) = &verdict.not_newer_than {
        println!("  not newer than the current release {current}");
    }
    let mut reasons = verdict.reasons();
    // Whatever its gates say, a stream that handed its two-week releases on releases nothing.
    if let Some(ended) = releaser::endoflife::read(&store, &args.stream)
        .context("cannot read whether the stream reached its end of life")?
    {
        reasons.push(format!(
            "the stream is at its end of life {}",
            releaser::endoflife::describe(&ended)
        ));
    } else if let role @ Role::Retired { .. } = two_week_role(&settings, &store, &args.stream, now)
        .with_context(|| format!("cannot read whether stream {} switched", args.stream))?
    {
        reasons.push(role.to_string());
    }
    let (decision, _) = decide(view, stream_settings, twoweek.karma_required);
    match decision {
        _ if !reasons.is_empty() => println!("not releasable: {}", reasons.join("; ")),
        Decision::Release(chosen) if chosen == args.version => {
            println!("releasable: the next tick releases it")
        }
        Decision::Release(chosen) => {
            println!("releasable, but the next tick releases the newer {chosen}")
        }
        Decision::Held(hold) => println!(
            "releasable once the stream's hold is lifted ({})",
            hold.describe()
        ),
        Decision::Nothing => println!("releasable"),
    }
    match view.current_version() {
        Some(current) if current != &args.version => {
            match super::diff::compare(&settings, &store, &args.stream, current, &args.version) {
                Ok(notes) => print!(
                    "what it would change against the current release: {}",
                    notes.text(&args.version)
                ),
                Err(error) => println!("what it would change: unknown ({error:#})"),
            }
        }
        Some(_) => {}
        None => println!("what it would change: nothing to compare with, no release yet"),
    }
    Ok(ExitCode::SUCCESS)
}
