//! `fortnight diff STREAM VERSION-A VERSION-B [--json]`: what changed between two candidates
//! or releases, per arch: packages (from each tree's RPM database), commits and files.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, bail};
use messages::{Arch, Commit, Stream, Version};
use ostree_cli::Repo;
use release_notes::{ReleaseNotes, ReleaseRecord};
use settings::Settings;
use store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    pub stream: Stream,
    /// The older candidate or release.
    pub from: Version,
    /// The newer one.
    pub to: Version,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: &std::path::Path, args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::load_settings(config)?;
    let store = Store::open(&settings.store.root).context("cannot open the store")?;
    let notes = compare(&settings, &store, &args.stream, &args.from, &args.to)?;
    if args.json {
        let json = serde_json::json!({
            "stream": args.stream,
            "from": args.from,
            "to": args.to,
            "arches": notes.arches,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{} {}", args.stream, notes.text(&args.to));
    }
    Ok(ExitCode::SUCCESS)
}

/// Every arch's changes from `from` to `to` (candidates or releases of `stream`).
pub fn compare(
    settings: &Settings,
    store: &Store,
    stream: &Stream,
    from: &Version,
    to: &Version,
) -> anyhow::Result<ReleaseNotes> {
    let stream_settings = settings.require_stream(stream)?;
    let repo = Repo::new(&stream_settings.ostree_repo);
    let (old, new) = (
        commits(store, stream, from, &stream_settings.arches)?,
        commits(store, stream, to, &stream_settings.arches)?,
    );
    let mut arches = BTreeMap::new();
    for (arch, new_commit) in &new {
        let Some(old_commit) = old.get(arch) else {
            continue;
        };
        let changes = release_notes::compare(&repo, old_commit, new_commit)
            .with_context(|| format!("cannot compare {stream} {from} and {to} on {arch}"))?;
        arches.insert(arch.clone(), changes);
    }
    Ok(ReleaseNotes {
        against: from.clone(),
        arches,
    })
}

/// The tree commit of each arch of a release (its release.json) or a candidate (its test
/// report, else its build record).
fn commits(
    store: &Store,
    stream: &Stream,
    version: &Version,
    arches: &[Arch],
) -> anyhow::Result<BTreeMap<Arch, Commit>> {
    let record_path = store.release_record_path(stream, version);
    if let Some(record) = store::read_json::<ReleaseRecord>(&record_path)? {
        return Ok(record
            .published
            .arches
            .into_iter()
            .map(|(arch, released)| (arch, released.tree.commit))
            .collect());
    }
    let mut commits = BTreeMap::new();
    for arch in arches {
        let tree = match store.read_tests(stream, version, arch)? {
            Some(report) => Some(report.tree),
            None => store.read_build(stream, version, arch)?.map(|b| b.tree),
        };
        if let Some(tree) = tree {
            commits.insert(arch.clone(), tree.commit);
        }
    }
    if commits.is_empty() {
        bail!(
            "{stream} has no release or candidate {version} in the store ({}); see `fortnight status {stream}`",
            store.version_dir(stream, version).display()
        );
    }
    Ok(commits)
}
