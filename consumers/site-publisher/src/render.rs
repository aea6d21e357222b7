//! Renders the site into a new directory and swaps it in with one rename, so a reader (or the
//! web server) sees the old site or the new one, never a mix.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use minijinja::{Environment, context};
use settings::Settings;
use store::{Store, StoreError};

use crate::model::{self, Site};

/// Where generations live, relative to the store root. Hidden, so the store's path checks
/// keep every message-derived path out of it.
/// Generations kept after a swap: the live one plus older ones a slow reader may still be in.
const KEEP: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot render {template}: {source}; this is a bug in the site templates")]
    Template {
        template: &'static str,
        source: minijinja::Error,
    },
    #[error(
        "{path} is a directory, not the symlink the site publisher swaps; move it away and replay the message"
    )]
    SiteIsDirectory { path: PathBuf },
}

/// The templates, compiled on the first render and kept for the life of the process.
fn environment() -> Result<&'static Environment<'static>, SiteError> {
    static ENVIRONMENT: OnceLock<Environment<'static>> = OnceLock::new();
    if let Some(env) = ENVIRONMENT.get() {
        return Ok(env);
    }
    let mut env = Environment::new();
    // The `.html`/`.xml` names turn on minijinja's HTML escaping for every value.
    for (name, source) in [
        ("layout.html", include_str!("../templates/layout.html")),
        ("changes.html", include_str!("../templates/changes.html")),
        ("stream.html", include_str!("../templates/stream.html")),
        ("index.html", include_str!("../templates/index.html")),
        (
            "stream_page.html",
            include_str!("../templates/stream_page.html"),
        ),
        ("releases.xml", include_str!("../templates/releases.atom")),
    ] {
        env.add_template(name, source)
            .map_err(|source| SiteError::Template {
                template: name,
                source,
            })?;
    }
    Ok(ENVIRONMENT.get_or_init(|| env))
}

fn render(
    env: &Environment<'_>,
    template: &'static str,
    ctx: minijinja::Value,
) -> Result<String, SiteError> {
    env.get_template(template)
        .and_then(|t| t.render(ctx))
        .map_err(|source| SiteError::Template { template, source })
}

/// The files of one site generation, as (path relative to the site root, contents).
fn render_files(site: &Site) -> Result<Vec<(String, Vec<u8>)>, SiteError> {
    let env = environment()?;
    let mut files = vec![(
        "index.html".to_owned(),
        render(env, "index.html", context! { site, root => "" })?.into_bytes(),
    )];
    for stream in &site.streams {
        let page = render(
            env,
            "stream_page.html",
            context! { site, stream, root => "../" },
        )?;
        files.push((format!("streams/{}.html", stream.name), page.into_bytes()));
        let json = serde_json::to_vec_pretty(&site.stream_json(stream)).unwrap_or_default();
        files.push((format!("streams/{}.json", stream.name), json));
    }
    let entries = site.feed_entries();
    let updated = entries.first().map_or(site.generated_at.as_str(), |e| {
        e.release.released_at.as_str()
    });
    // Only the base URL of the site: the feed need not serialize every stream's history again.
    let feed_site = context! { base_url => &site.base_url };
    let feed = render(
        env,
        "releases.xml",
        context! { site => feed_site, entries, updated },
    )?;
    files.push(("releases.atom".to_owned(), feed.into_bytes()));
    for (name, key) in &site.key_files {
        files.push((format!("keys/{name}"), key.clone()));
    }
    Ok(files)
}

/// Reads the store, renders every page into a new generation and makes it the live site.
/// Returns the directory of the new generation.
pub fn publish(
    settings: &Settings,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<PathBuf, SiteError> {
    let generations = store.site_generations_dir();
    store::create_dir_all(&generations)?;
    // Replicas share the tree: one renders and swaps at a time, so cleanup never removes a
    // generation another replica is about to point `site` at.
    let _guard = store::lock(&generations.join(".lock"))?;
    let site = model::collect(settings, store, now)?;
    let files = render_files(&site)?;

    let name = format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%S%.9fZ"),
        std::process::id()
    );
    let dir = generations.join(&name);
    for (relative, bytes) in &files {
        store::write_atomic(&dir.join(relative), bytes)?;
    }
    link_latest(&site, &dir)?;

    let live = store.site_dir();
    if fs::symlink_metadata(&live).is_ok_and(|m| m.is_dir()) {
        return Err(SiteError::SiteIsDirectory { path: live });
    }
    store::symlink_replace(&Path::new(store::SITE_GENERATIONS).join(&name), &live)?;
    remove_old_generations(&generations, &dir);
    tracing::info!(site = %live.display(), generation = %name, files = files.len(), "site published");
    Ok(dir)
}

/// `latest/<stream>-<arch>.<format>` -> the current release's image, for stable download links.
fn link_latest(site: &Site, dir: &Path) -> Result<(), SiteError> {
    let latest = dir.join("latest");
    store::create_dir_all(&latest)?;
    for release in site.streams.iter().filter_map(|s| s.release.as_ref()) {
        for image in release.arches.iter().flat_map(|a| &a.images) {
            // Only paths that resolve inside the store reach here (see model::release_view).
            // From <root>/.site/<generation>/latest/ back up to <root>.
            let target = Path::new("../../..").join(&image.path);
            store::symlink_replace(&target, &latest.join(&image.latest_name))?;
        }
    }
    Ok(())
}

/// Removes all but the newest generations by name (a timestamp), never the live one `live`
/// (which is not the newest by name if the clock stepped back).
fn remove_old_generations(generations: &Path, live: &Path) {
    let Ok(entries) = fs::read_dir(generations) else {
        return;
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    names.sort();
    for old in names
        .iter()
        .rev()
        .skip(KEEP)
        .filter(|old| old.as_path() != live)
    {
        if let Err(error) = fs::remove_dir_all(old) {
            tracing::warn!(path = %old.display(), %error, "old site generation not removed");
        }
    }
}
