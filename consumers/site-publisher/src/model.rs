//! What the site shows, read from the artifact tree alone (never from the triggering message),
//! so that replaying any message rebuilds the same pages.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use gate::succession::{Role, two_week_role};
use messages::{
    Arch, Format, Stream, StreamEndOfLife, TestReport, TestStatus, Version, version_order,
};
use release_notes::{ReleaseNotes, ReleaseRecord};
use serde::Serialize;
use settings::{Settings, StreamSettings};
use store::{Store, StoreError, Tier};

/// How many of the newest nightlies a stream page lists.
const NIGHTLIES_SHOWN: usize = 10;

/// Everything the templates and the JSON need.
#[derive(Debug, Serialize)]
pub struct Site {
    pub generated_at: String,
    pub intro: String,
    pub base_url: String,
    pub streams: Vec<StreamView>,
    /// The public keys releases are signed with, copied into `site/keys/`: (file name, key).
    #[serde(skip)]
    pub key_files: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Serialize)]
pub struct StreamView {
    pub name: Stream,
    /// Period between two-week releases; `None` for nightly-only streams.
    pub period_days: Option<u32>,
    /// Its part in the two-week releases (`gate::succession`): `current`, `prerelease`,
    /// `retired` or `nightly-only`, and the same in words.
    pub role: &'static str,
    pub role_text: String,
    /// While the stream is a pre-release: its label (`beta`) and what to expect of it.
    pub prerelease: Option<String>,
    pub prerelease_note: Option<String>,
    pub release: Option<ReleaseView>,
    /// Set when a two-week stream's newest release is older than its period (or missing).
    pub stale: Option<Staleness>,
    /// What the release timer announces as stale (`fortnight.stream.stale`), in words.
    pub alarms: Vec<String>,
    pub candidates: Vec<CandidateView>,
    pub nightlies: Vec<NightlyView>,
    /// Every release of the stream, newest first (for the feed).
    pub history: Vec<ReleaseView>,
    /// Set once the stream reached its end of life (the releaser's record).
    pub end_of_life: Option<EndOfLifeView>,
}

/// A stream at its end of life, as the page and the stream JSON show it.
#[derive(Debug, Clone, Serialize)]
pub struct EndOfLifeView {
    /// RFC 3339.
    pub at: String,
    /// `2027-05-18`, for people.
    pub on: String,
    pub message: String,
    /// The stream its machines move to.
    pub successor: Option<Stream>,
    pub arches: Vec<EndOfLifeArchView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndOfLifeArchView {
    pub arch: Arch,
    pub release_ref: String,
    pub commit: String,
    /// The successor's release ref the machines on this arch move to.
    pub rebase: Option<String>,
}

impl From<StreamEndOfLife> for EndOfLifeView {
    fn from(ended: StreamEndOfLife) -> Self {
        Self {
            at: ended.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            on: ended.at.format("%Y-%m-%d").to_string(),
            message: ended.message,
            successor: ended.successor,
            arches: ended
                .arches
                .into_iter()
                .map(|(arch, a)| EndOfLifeArchView {
                    arch,
                    release_ref: a.release_ref.to_string(),
                    commit: a.commit.to_string(),
                    rebase: a.rebase.map(|r| r.to_string()),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Staleness {
    /// Whole days since the newest release; `None` when there has never been one.
    pub age_days: Option<i64>,
    pub period_days: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleaseView {
    pub version: Version,
    /// RFC 3339, for machines and the feed.
    pub released_at: String,
    /// `2026-11-24`, for people.
    pub released_on: String,
    pub forced: bool,
    pub reason: String,
    /// The label the release was made with (`beta`), while its stream was a pre-release.
    pub prerelease: Option<String>,
    pub karma: KarmaView,
    pub arches: Vec<ReleasedArchView>,
    /// The key that signed the release, when it is signed and the key is published.
    pub key: Option<KeyView>,
    /// What changed since the previous release (absent for the first one).
    pub notes: Option<ReleaseNotes>,
}

/// A published signing key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    pub fingerprint: String,
    /// `<fingerprint>.asc`, under `site/keys/`.
    pub file: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReleasedArchView {
    pub arch: Arch,
    pub commit: String,
    pub tree_ref: String,
    pub release_ref: String,
    pub tests: TestsView,
    pub images: Vec<ImageView>,
    pub checksum_url: String,
    /// The CHECKSUM's detached signature, when it is signed.
    pub checksum_signature_url: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageView {
    pub format: Format,
    pub size: u64,
    pub size_human: String,
    pub sha256: String,
    /// Root-relative store path (the JSON's `location` is the base URL joined with it).
    pub path: String,
    pub url: String,
    /// The stable name under `site/latest/` that always points at the current release.
    pub latest_name: String,
    pub latest_url: String,
    /// The image's detached signature, when it is signed.
    pub signature_url: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TestsView {
    pub passed: usize,
    pub total: usize,
    pub failed: Vec<String>,
    /// False when the store holds no test report.
    pub known: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct KarmaView {
    pub total: i32,
    pub votes: usize,
    pub stable_threshold: i32,
}

#[derive(Debug, Serialize)]
pub struct CandidateView {
    pub version: Version,
    pub karma: KarmaView,
    pub arches: Vec<Arch>,
}

#[derive(Debug, Serialize)]
pub struct NightlyView {
    pub version: Version,
    pub arches: Vec<NightlyArch>,
}

#[derive(Debug, Serialize)]
pub struct NightlyArch {
    pub arch: Arch,
    /// `passed`, `failed`, `testing` (built, no report yet) or `building` (nothing built yet).
    pub status: &'static str,
}

/// Reads the whole site's state. A file that cannot be read or parsed is logged and left out,
/// so one damaged candidate never takes the page down; only listing directories can fail.
pub fn collect(settings: &Settings, store: &Store, now: DateTime<Utc>) -> Result<Site, StoreError> {
    let base_url = normalized_base(&settings.site.base_url);
    let streams: Vec<StreamView> = settings
        .streams
        .iter()
        .map(|(name, stream)| collect_stream(settings, store, &base_url, name, stream, now))
        .collect::<Result<_, _>>()?;
    let key_files = streams
        .iter()
        .flat_map(|s| s.history.iter().filter_map(|r| r.key.as_ref()))
        .filter_map(|key| {
            let path = store.keys_dir().join(&key.file);
            let bytes = tolerate(
                std::fs::read(&path)
                    .map(Some)
                    .map_err(StoreError::io("read", &path)),
                "public key",
            )?;
            Some((key.file.clone(), bytes))
        })
        .collect();
    Ok(Site {
        generated_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        intro: settings.site.intro.clone(),
        base_url,
        streams,
        key_files,
    })
}

/// The URL of `<path>.asc` when the signer wrote it.
fn signature_url(base_url: &str, relative: &str, path: &std::path::Path) -> Option<String> {
    let mut signature = path.as_os_str().to_owned();
    signature.push(".asc");
    std::path::Path::new(&signature)
        .is_file()
        .then(|| format!("{base_url}{relative}.asc"))
}

fn normalized_base(base: &str) -> String {
    format!("{}/", base.trim_end_matches('/'))
}

fn collect_stream(
    settings: &Settings,
    store: &Store,
    base_url: &str,
    name: &Stream,
    stream: &StreamSettings,
    now: DateTime<Utc>,
) -> Result<StreamView, StoreError> {
    let role = two_week_role(settings, store, name, now)?;
    let karma = |version: &Version| karma_of(store, name, version, stream.karma.stable_threshold);
    let mut history: Vec<(DateTime<Utc>, ReleaseView)> = store
        .list_versions(name, Tier::Releases)?
        .iter()
        .filter_map(|version| read_release(store, name, version))
        .map(
            |ReleaseRecord {
                 published: release,
                 notes,
             }| {
                let key = stream
                    .signing
                    .as_ref()
                    .and_then(|signing| signing.key_for(&release.version));
                let karma = karma(&release.version);
                let view = release_view(store, base_url, &release, karma, key, notes);
                (release.released_at, view)
            },
        )
        .collect();
    history.sort_by_key(|(at, _)| std::cmp::Reverse(*at));

    let end_of_life: Option<EndOfLifeView> = tolerate(
        store::read_json::<StreamEndOfLife>(&store.end_of_life_path(name)),
        "end of life",
    )
    .map(Into::into);
    let current = store.current_release(name)?;
    let current_release = current
        .as_ref()
        .and_then(|version| history.iter().find(|(_, r)| &r.version == version))
        .cloned();
    // A stream at its end of life, or whose successor took over, releases nothing more: its
    // age alarms nobody.
    let stale = stream
        .twoweek
        .as_ref()
        .filter(|_| end_of_life.is_none() && !matches!(role, Role::Retired { .. }))
        .and_then(|twoweek| {
            let age = current_release.as_ref().map(|(at, _)| now - *at);
            let period = chrono::Duration::days(i64::from(twoweek.period_days));
            match age {
                Some(age) if age <= period => None,
                age => Some(Staleness {
                    age_days: age.map(|a| a.num_days()),
                    period_days: twoweek.period_days,
                }),
            }
        });

    let released: Vec<&Version> = history.iter().map(|(_, r)| &r.version).collect();
    let candidates = store
        .list_versions(name, Tier::PassedAutotest)?
        .into_iter()
        .rev()
        // Older than the current release: it can no longer be released, so asking for votes
        // would waste testers' time. Checked first, so years of history cost no file system
        // call per old candidate.
        .filter(|v| {
            current
                .as_ref()
                .is_none_or(|c| version_order::compare(v, c).is_gt())
        })
        .filter(|v| !released.contains(&v) && !store.in_tier(name, v, Tier::PassedHuman))
        .map(|version| CandidateView {
            karma: karma(&version),
            arches: stream.arches.clone(),
            version,
        })
        .collect();

    let nightlies = store
        .list_versions(name, Tier::All)?
        .into_iter()
        .rev()
        .take(NIGHTLIES_SHOWN)
        .map(|version| NightlyView {
            arches: stream
                .arches
                .iter()
                .map(|arch| NightlyArch {
                    arch: arch.clone(),
                    status: nightly_status(store, name, &version, arch),
                })
                .collect(),
            version,
        })
        .collect();

    Ok(StreamView {
        name: name.clone(),
        period_days: stream.twoweek.as_ref().map(|t| t.period_days),
        release: current_release.map(|(_, r)| r),
        stale,
        alarms: match end_of_life {
            Some(_) => Vec::new(),
            None => alarms(store, name, stream, &role, now),
        },
        role: role.kind(),
        role_text: role.describe(),
        prerelease: role.label().map(|label| label.to_string()),
        prerelease_note: prerelease_note(stream, &role),
        candidates,
        nightlies,
        history: history.into_iter().map(|(_, r)| r).collect(),
        end_of_life,
    })
}

/// The stream's stale spells, by the release timer's rules; a store the rules cannot read is
/// logged and the page goes without them.
fn alarms(
    store: &Store,
    name: &Stream,
    stream: &StreamSettings,
    role: &Role,
    now: DateTime<Utc>,
) -> Vec<String> {
    match release_timer::stale::pulse(store, name, stream, role, now) {
        Ok(pulse) => pulse.stale(now).map(|s| s.describe(now)).collect(),
        Err(error) => {
            tracing::warn!(%error, stream = %name, "staleness left off the site");
            Vec::new()
        }
    }
}

/// What a pre-release's users should expect, shown beside its releases.
fn prerelease_note(stream: &StreamSettings, role: &Role) -> Option<String> {
    let Role::Prerelease {
        label: Some(label),
        switches_at,
    } = role
    else {
        return None;
    };
    let coming = stream
        .succeeds
        .as_ref()
        .map_or("the coming release".to_owned(), |old| {
            format!("the release that follows {old}")
        });
    let switch = switches_at.map_or("when the operators switch".to_owned(), |at| {
        format!("on {}", at.format("%Y-%m-%d"))
    });
    Some(format!(
        "for testing {coming}; expect bugs, and keep production machines on the current two-week release. Its {label} label goes when it becomes the current two-week release, {switch}."
    ))
}

/// Logs and drops a read failure: the page renders without the damaged entry.
fn tolerate<T>(result: Result<Option<T>, StoreError>, what: &str) -> Option<T> {
    result.unwrap_or_else(|error| {
        tracing::warn!(%error, what, "store entry left off the site");
        None
    })
}

fn read_release(store: &Store, stream: &Stream, version: &Version) -> Option<ReleaseRecord> {
    let path = store.release_record_path(stream, version);
    tolerate(store::read_json(&path), "release.json")
}

fn karma_of(store: &Store, stream: &Stream, version: &Version, stable_threshold: i32) -> KarmaView {
    let votes = store.read_votes(stream, version).unwrap_or_else(|error| {
        tracing::warn!(%error, %stream, %version, "votes left off the site");
        Vec::new()
    });
    KarmaView {
        total: votes.iter().map(|v| i32::from(v.karma)).sum(),
        votes: votes.len(),
        stable_threshold,
    }
}

fn tests_view(report: Option<TestReport>) -> TestsView {
    report.map_or_else(TestsView::default, |report| TestsView {
        passed: report
            .tests
            .iter()
            .filter(|t| t.status == TestStatus::Passed)
            .count(),
        total: report.tests.len(),
        failed: report.failed,
        known: true,
    })
}

fn nightly_status(store: &Store, stream: &Stream, version: &Version, arch: &Arch) -> &'static str {
    match tolerate(store.read_tests(stream, version, arch), "tests.json") {
        Some(report) if report.failed.is_empty() => "passed",
        Some(_) => "failed",
        None if store.build_json_path(stream, version, arch).exists() => "testing",
        None => "building",
    }
}

fn release_view(
    store: &Store,
    base_url: &str,
    release: &messages::ReleasePublished,
    karma: KarmaView,
    key: Option<&str>,
    notes: Option<ReleaseNotes>,
) -> ReleaseView {
    let stream = &release.stream;
    let arches: Vec<ReleasedArchView> = release
        .arches
        .iter()
        .map(|(arch, released)| {
            let checksum = store
                .release_arch_dir(stream, &release.version, arch)
                .join(store::CHECKSUM);
            let checksum_path = store.relative(&checksum);
            ReleasedArchView {
                arch: arch.clone(),
                commit: released.tree.commit.to_string(),
                tree_ref: released.tree.ostree_ref.to_string(),
                release_ref: released.release_ref.to_string(),
                tests: tests_view(tolerate(store.read_tests(stream, &release.version, arch), "tests.json")),
                images: released
                    .images
                    .iter()
                    // release.json is the releaser's, but a path that would leave the store
                    // must never become a link or a symlink target.
                    .filter_map(|image| match store.resolve(&image.path) {
                        Ok(path) => Some((image, path)),
                        Err(error) => {
                            tracing::warn!(%error, %stream, version = %release.version, "image left off the site");
                            None
                        }
                    })
                    .map(|(image, path)| {
                        let latest_name = latest_name(stream, arch, &image.format);
                        ImageView {
                            format: image.format.clone(),
                            size: image.size,
                            size_human: human_size(image.size),
                            sha256: image.sha256.to_string(),
                            url: format!("{base_url}{}", image.path),
                            latest_url: format!("{base_url}site/latest/{latest_name}"),
                            latest_name,
                            signature_url: signature_url(base_url, &image.path, &path),
                            path: image.path.clone(),
                        }
                    })
                    .collect(),
                checksum_url: format!("{base_url}{checksum_path}"),
                checksum_signature_url: signature_url(base_url, &checksum_path, &checksum),
            }
        })
        .collect();
    let signed = arches.iter().any(|a| a.checksum_signature_url.is_some());
    let key = key
        .filter(|key| signed && store.keys_dir().join(format!("{key}.asc")).is_file())
        .map(|key| KeyView {
            fingerprint: key.to_owned(),
            file: format!("{key}.asc"),
            url: format!("{base_url}site/keys/{key}.asc"),
        });
    ReleaseView {
        version: release.version.clone(),
        released_at: release
            .released_at
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        released_on: release.released_at.format("%Y-%m-%d").to_string(),
        forced: release.forced,
        reason: release.reason.clone(),
        prerelease: release.prerelease.as_ref().map(|label| label.to_string()),
        karma,
        arches,
        key,
        notes,
    }
}

/// `<stream>-<arch>.<format>`: built from validated ids only, so it is one safe file name.
fn latest_name(stream: &Stream, arch: &Arch, format: &Format) -> String {
    format!("{stream}-{arch}.{format}")
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Site {
    /// Per stream, the machine-readable metadata modeled on Fedora CoreOS stream metadata.
    pub fn stream_json(&self, stream: &StreamView) -> serde_json::Value {
        let release = stream.release.as_ref();
        let architectures: BTreeMap<&str, serde_json::Value> = release
            .map(|r| {
                r.arches
                    .iter()
                    .map(|arch| {
                        let formats: BTreeMap<&str, serde_json::Value> = arch
                            .images
                            .iter()
                            .map(|image| {
                                let mut disk = serde_json::json!({
                                    "location": image.url,
                                    "sha256": image.sha256,
                                    "size": image.size,
                                });
                                if let Some(signature) = &image.signature_url {
                                    disk["signature"] = serde_json::Value::from(signature.as_str());
                                }
                                (image.format.as_str(), serde_json::json!({ "disk": disk }))
                            })
                            .collect();
                        let mut entry = serde_json::json!({
                            "release": r.version,
                            "commit": arch.commit,
                            "ref": arch.release_ref,
                            "artifacts": { "atomic-host": { "release": r.version, "formats": formats } },
                        });
                        if let Some(signature) = &arch.checksum_signature_url {
                            entry["checksum"] = serde_json::json!({
                                "location": arch.checksum_url,
                                "signature": signature,
                            });
                        }
                        if let Some(key) = &r.key {
                            entry["signing-key"] = serde_json::json!({
                                "fingerprint": key.fingerprint,
                                "location": key.url,
                            });
                        }
                        (arch.arch.as_str(), entry)
                    })
                    .collect()
            })
            .unwrap_or_default();
        serde_json::json!({
            "stream": stream.name,
            "metadata": {
                // The release time, not the render time: a rebuild from the same tree writes
                // byte-identical metadata, so caches and mirrors see no change.
                "last-modified": release.map(|r| r.released_at.as_str()),
                "generator": concat!("fortnight site-publisher ", env!("CARGO_PKG_VERSION")),
            },
            "release": release.map(|r| &r.version),
            "prerelease": release.and_then(|r| r.prerelease.as_deref()),
            "role": stream.role,
            "role-description": stream.role_text,
            "architectures": architectures,
            "end_of_life": stream.end_of_life,
        })
    }

    /// Releases of every stream for the feed, newest first.
    pub fn feed_entries(&self) -> Vec<FeedEntry<'_>> {
        let mut entries: Vec<_> = self
            .streams
            .iter()
            .flat_map(|s| {
                s.history.iter().map(move |release| FeedEntry {
                    stream: &s.name,
                    release,
                })
            })
            .collect();
        entries.sort_by(|a, b| b.release.released_at.cmp(&a.release.released_at));
        entries
    }
}

/// One release in the feed. It names its stream instead of carrying the stream's view, whose
/// history holds every release again: with the whole view per entry, rendering the feed grew
/// with the square of the number of releases.
#[derive(Debug, Serialize)]
pub struct FeedEntry<'a> {
    pub stream: &'a Stream,
    pub release: &'a ReleaseView,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_download_page() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(human_size(700 * 1024 * 1024 * 1024), "700.0 GiB");
    }

    #[test]
    fn base_url_gets_exactly_one_trailing_slash() {
        assert_eq!(normalized_base("https://x/y"), "https://x/y/");
        assert_eq!(normalized_base("https://x/y//"), "https://x/y/");
    }
}
