//! What the demo prints at the end: the release, what it changed against the previous one
//! (its release notes, as the releaser wrote them in `release.json`), how to verify its
//! signatures, why every other candidate was not released (in the releaser's own words, from
//! `releaser::decide`), and where the page is.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;
use messages::{ReleasePublished, Stream};
use ostree_cli::Repo;
use release_notes::ReleaseRecord;
use releaser::{Decision, StreamView, decide};
use settings::Settings;
use store::Store;

use super::{DemoKey, STREAM};

pub(super) fn summarize(
    settings: &Settings,
    dir: &Path,
    released: Option<&ReleasePublished>,
    key: &DemoKey,
) -> anyhow::Result<()> {
    let store = Store::open(&settings.store.root)?;
    println!();
    match released {
        Some(release) => print_release(&store, dir, release, key)?,
        None => println!("Nothing was released."),
    }
    print_not_released(settings, &store, released)?;
    let site = settings.store.root.join("site");
    println!("Page: file://{}", site.join("index.html").display());
    println!(
        "Stream metadata: {}",
        site.join("streams")
            .join(format!("{STREAM}.json"))
            .display()
    );
    let client = if dir.join(super::client::DIR).exists() {
        ", client/"
    } else {
        ""
    };
    println!(
        "Everything is under {} (repo/, store/, config.toml, suite/{client}).",
        dir.display()
    );
    Ok(())
}

fn print_release(
    store: &Store,
    dir: &Path,
    release: &ReleasePublished,
    key: &DemoKey,
) -> anyhow::Result<()> {
    println!(
        "Released {} {} (reason: {}).",
        release.stream, release.version, release.reason
    );
    let repo = Repo::new(dir.join("repo"));
    for (arch, released_arch) in &release.arches {
        let now_at = repo
            .rev_parse(&released_arch.release_ref)
            .context("cannot read the release ref")?
            .map_or_else(|| "nothing".to_owned(), |c| c.to_string());
        println!("  {arch}: {} -> {now_at}", released_arch.release_ref);
        for image in &released_arch.images {
            println!(
                "    {} {} bytes sha256 {}",
                image.path, image.size, image.sha256
            );
        }
    }
    print_notes(store, release)?;
    let public = store.keys_dir().join(format!("{}.asc", key.fingerprint));
    println!(
        "Signed with the demo's key {} ({}). Verify, in a keyring that has imported it:",
        key.fingerprint,
        public.display()
    );
    println!("  gpg --import {}", public.display());
    for arch in release.arches.keys() {
        let checksum = store
            .release_arch_dir(&release.stream, &release.version, arch)
            .join(store::CHECKSUM);
        println!(
            "  gpg --verify {}.asc {}",
            checksum.display(),
            checksum.display()
        );
    }
    println!(
        "  ostree remote add --gpg-import={} --set=gpg-verify=true demo file://{}",
        public.display(),
        dir.join("repo").display()
    );
    Ok(())
}

/// The release notes as the releaser recorded them, read back rather than recomputed.
fn print_notes(store: &Store, release: &ReleasePublished) -> anyhow::Result<()> {
    let path = store.release_record_path(&release.stream, &release.version);
    let record: Option<ReleaseRecord> = store::read_json(&path)
        .with_context(|| format!("cannot read the release record {}", path.display()))?;
    match record.and_then(|record| record.notes) {
        Some(notes) => {
            println!(
                "What it changed against {} (release notes in {}):",
                notes.against,
                path.display()
            );
            print!("{}", notes.text(&release.version));
        }
        None => println!(
            "No release notes in {} (the releaser's log says why).",
            path.display()
        ),
    }
    Ok(())
}

/// The tick's decision replayed on the store: against the release before it when it released
/// one, so every candidate it weighed is listed.
fn print_not_released(
    settings: &Settings,
    store: &Store,
    released: Option<&ReleasePublished>,
) -> anyhow::Result<()> {
    let stream: Stream = STREAM.parse()?;
    let (stream_settings, twoweek) =
        releaser::twoweek_stream(settings, &stream).map_err(anyhow::Error::msg)?;
    let view = match released {
        Some(release) => StreamView::read_against(
            store,
            &stream,
            stream_settings,
            release.previous.clone().map(|version| (version, None)),
            Utc::now(),
        ),
        None => StreamView::read(store, &stream, stream_settings, Utc::now()),
    }
    .context("cannot replay the tick's decision on the store")?;
    let (decision, verdicts) = decide(&view, stream_settings, twoweek.karma_required);
    println!("Not released:");
    for verdict in verdicts {
        let reasons = verdict.reasons();
        let why = match &decision {
            Decision::Release(chosen) if *chosen == verdict.version => continue,
            _ if !reasons.is_empty() => reasons.join("; "),
            Decision::Release(chosen) => format!("eligible, but {chosen} is newer"),
            Decision::Held(hold) => {
                format!("eligible, but the stream is on hold {}", hold.describe())
            }
            Decision::Nothing => "eligible".to_owned(),
        };
        println!("  {}: {why}", verdict.version);
    }
    Ok(())
}
