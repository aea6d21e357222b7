//! The demo's part of the pipeline: it publishes the tree events, releases the previous
//! release by override, votes for one candidate as a tester would, fires the two-week tick as
//! an operator would, and waits for the page.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use messages::{
    Arch, KarmaSubmitted, Outgoing, Override, OverrideRelease, Stream, TreeComposed, UserName,
    Version, derived_id,
};
use settings::Settings;
use store::Store;

use super::client::{self, Client};
use super::trees::Nightly;
use super::watch::Watch;
use super::{DemoKey, PREVIOUS, STREAM, VOTED};

/// What a client needs to follow the release ref: the demo's directory and key.
pub(super) struct Follow<'a> {
    pub(super) dir: &'a Path,
    pub(super) key: &'a DemoKey,
}

/// Returns the client set up on the previous release, when `follow` asked for one.
pub(super) async fn drive(
    settings: &Settings,
    publisher: &bus::Publisher,
    watch: &mut Watch<'_>,
    trees: &[Nightly],
    user: &UserName,
    follow: Option<Follow<'_>>,
) -> anyhow::Result<Option<Client>> {
    let progress = watch.progress;
    for nightly in trees {
        let body = TreeComposed {
            arch: nightly.arch.clone(),
            tree: nightly.tree.clone(),
            version: Some(nightly.version.clone()),
            compose_id: None,
            force: false,
        };
        let id = derived_id(
            "demo",
            &[
                nightly.tree.ostree_ref.as_str(),
                nightly.tree.commit.as_str(),
            ],
        );
        publisher
            .publish(&Outgoing::new(id, &body))
            .await
            .context("cannot publish a tree event")?;
    }
    progress.say(&format!(
        "published {} fortnight.tree.composed events",
        trees.len()
    ));

    let stream: Stream = STREAM.parse()?;
    // The stream's previous release, for the tick's release to have notes against: released
    // as soon as it passed, before any vote or tick.
    let previous: Version = PREVIOUS.parse()?;
    watch
        .until("the previous release's candidate to pass its tests", |s| {
            s.requested.contains(&previous)
        })
        .await?;
    let release = OverrideRelease(Override {
        stream: stream.clone(),
        version: Some(previous.clone()),
        reason: "the stream's previous release, for release notes to compare with".into(),
        operator: user.clone(),
        expires: None,
    });
    publisher
        .publish_as(
            &Outgoing::new(uuid::Uuid::new_v4(), &release),
            user.as_str(),
        )
        .await
        .context("cannot publish the override that releases the previous release")?;
    watch
        .until("the previous release", |s| s.forced.contains(&previous))
        .await?;
    let client = match follow {
        Some(Follow { dir, key }) => {
            let (_, twoweek) =
                releaser::twoweek_stream(settings, &stream).map_err(anyhow::Error::msg)?;
            let arch: Arch = client::ARCH.parse()?;
            let release_ref = twoweek
                .release_refs
                .get(&arch)
                .with_context(|| format!("the demo's stream has no {arch} release ref"))?;
            let key = Store::open(&settings.store.root)?
                .keys_dir()
                .join(format!("{}.asc", key.fingerprint));
            // Deploying reads and writes a few megabytes: off the consumers' threads.
            let (dir, release_ref, progress) = (dir.to_owned(), release_ref.clone(), *progress);
            Some(
                tokio::task::spawn_blocking(move || {
                    Client::follow(&dir, release_ref, &key, &progress)
                })
                .await??,
            )
        }
        None => None,
    };

    let expected = trees.len();
    let voted: Version = VOTED.parse()?;
    watch
        .until("every nightly to be built and tested", |s| {
            s.finished_nightlies() >= expected && s.requested.contains(&voted)
        })
        .await?;

    let vote = KarmaSubmitted {
        stream: stream.clone(),
        version: voted.clone(),
        user: user.clone(),
        karma: 1,
        comment: Some("boots and updates fine".into()),
    };
    publisher
        .publish_as(&Outgoing::new(uuid::Uuid::new_v4(), &vote), user.as_str())
        .await
        .context("cannot publish the vote")?;
    watch
        .until("the vote to reach the karma threshold", |s| {
            s.stable.contains(&voted)
        })
        .await?;

    release_timer::fire_now(settings, &stream, user.clone(), publisher)
        .await
        .context("cannot fire the two-week tick")?;
    watch.until("the release decision", |s| s.decided()).await?;

    // The site publisher reacts to the release; wait until the page shows it.
    let json = settings
        .store
        .root
        .join("site/streams")
        .join(format!("{STREAM}.json"));
    let wanted = watch.seen.released.as_ref().map(|r| r.version.to_string());
    loop {
        let shown = std::fs::read(&json)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|v| v["release"].as_str().map(str::to_owned));
        if wanted.is_none() || shown == wanted {
            break;
        }
        if tokio::time::Instant::now() > watch.deadline {
            bail!("the site did not show the release in {}", json.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(client)
}
