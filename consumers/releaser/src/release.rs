//! The release procedure. Every step is idempotent, so a crash anywhere is finished by running
//! the whole procedure again:
//! 1. hard-link each arch's images into `releases/<version>/<arch>/` and write its CHECKSUM;
//! 2. make each arch's release commit (the tested commit's tree, bound to the release ref, so
//!    that clients verify the binding; the same commit on every run), check that every release
//!    ref moves forward (unless forced), then move them all and regenerate the OSTree summary;
//! 3. write `releases/<version>/release.json` with the release notes against the previous
//!    release (kept on replay, so the message is identical and the notes are not recomputed);
//! 4. flip `releases/latest`.

use std::collections::BTreeMap;
use std::path::Path;

use bus::StepError;
use chrono::{DateTime, Utc};
use messages::{
    Arch, Commit, Format, Image, LegacyArtifact, Period, Prerelease, ReleasePublished,
    ReleasedArch, Stream, Tree, TwoweekComplete, Version,
};
use ostree_cli::{OstreeError, Repo};
use release_notes::ReleaseRecord;
use settings::{StreamSettings, TwoWeekSettings};

use crate::notes;
use store::{FileName, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ostree(#[from] OstreeError),
    #[error(
        "{stream} {version}: {arch} has neither a test report nor a build record; build and test it, or release another candidate"
    )]
    MissingArch {
        stream: Stream,
        version: Version,
        arch: Arch,
    },
    #[error(
        "{stream} {version}: moving {release_ref} from {from} to {to} is not a fast-forward; release a descendant, or force it with `fortnight override release`"
    )]
    NotFastForward {
        stream: Stream,
        version: Version,
        release_ref: String,
        from: String,
        to: String,
    },
    #[error("{stream}: image path {path:?} has no file name")]
    ImagePath { stream: Stream, path: String },
}

/// A candidate that cannot be released as it is (an arch missing, not a fast-forward) is
/// refused; the store and `ostree` are classified as everywhere else.
impl From<ReleaseError> for StepError {
    fn from(error: ReleaseError) -> Self {
        match error {
            ReleaseError::Store(error) => error.into(),
            ReleaseError::Ostree(error) => error.into(),
            ReleaseError::MissingArch { .. }
            | ReleaseError::NotFastForward { .. }
            | ReleaseError::ImagePath { .. } => StepError::permanent(error.to_string()),
        }
    }
}

/// What to release and why.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub stream: &'a Stream,
    pub version: &'a Version,
    pub settings: &'a StreamSettings,
    pub twoweek: &'a TwoWeekSettings,
    pub period: Option<Period>,
    pub forced: bool,
    pub reason: String,
}

/// The tree and images of one arch: the tested ones, or for a forced release the built ones.
fn arch_source(
    store: &Store,
    request: &Request<'_>,
    arch: &Arch,
) -> Result<(Tree, Vec<Image>), ReleaseError> {
    let (stream, version) = (request.stream, request.version);
    if let Some(report) = store.read_tests(stream, version, arch)?
        && (report.failed.is_empty() || request.forced)
    {
        return Ok((report.tree, report.images));
    }
    if request.forced
        && let Some(built) = store.read_build(stream, version, arch)?
    {
        return Ok((built.tree, built.images));
    }
    Err(ReleaseError::MissingArch {
        stream: stream.clone(),
        version: version.clone(),
        arch: arch.clone(),
    })
}

fn file_name(stream: &Stream, path: &str) -> Result<FileName, ReleaseError> {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ReleaseError::ImagePath {
            stream: stream.clone(),
            path: path.to_owned(),
        })
}

/// Step 1 alone: the release directory with its hard links and CHECKSUMs, nothing promoted.
/// What a signed release has signed before [`perform`] finishes it.
pub fn stage(
    store: &Store,
    request: &Request<'_>,
) -> Result<BTreeMap<Arch, ReleasedArch>, ReleaseError> {
    let (stream, version) = (request.stream, request.version);
    let mut arches = BTreeMap::new();
    for arch in &request.settings.arches {
        let (tree, images) = arch_source(store, request, arch)?;
        let arch_dir = store.release_arch_dir(stream, version, arch);
        store::link_tree(&store.images_dir(stream, version, arch), &arch_dir)?;
        let mut sums = BTreeMap::new();
        let mut released = Vec::new();
        for image in images {
            let name = file_name(stream, &image.path)?;
            sums.insert(name.clone(), image.sha256.clone());
            released.push(Image {
                path: store.relative(&arch_dir.join(name.as_str())),
                ..image
            });
        }
        store::checksum::write(&arch_dir.join(store::CHECKSUM), &sums)?;
        let release_ref = request.twoweek.release_refs[arch].clone();
        arches.insert(
            arch.clone(),
            ReleasedArch {
                tree,
                release_ref,
                images: released,
            },
        );
    }
    Ok(arches)
}

/// Runs (or finishes) the release; returns the `fortnight.release.published` body, whose
/// release notes link starts with `base_url`, labelled `prerelease` while its stream is one.
pub fn perform(
    store: &Store,
    request: &Request<'_>,
    prerelease: Option<Prerelease>,
    now: DateTime<Utc>,
    base_url: &str,
) -> Result<ReleasePublished, ReleaseError> {
    let (stream, version) = (request.stream, request.version);
    let arches = stage(store, request)?;
    promote_refs(request, &arches)?;

    let record_path = store.release_record_path(stream, version);
    let existing: Option<ReleaseRecord> = store::read_json(&record_path)?;
    let record = match existing {
        Some(ReleaseRecord { published, .. })
            if published.period == request.period && published.forced == request.forced =>
        {
            published
        }
        _ => {
            let previous = store.current_release(stream)?.filter(|p| p != version);
            let notes = previous
                .as_ref()
                .and_then(|previous| notes::against_previous(store, request, previous, &arches));
            let url = format!(
                "{}/{}",
                base_url.trim_end_matches('/'),
                store.relative(&record_path)
            );
            let published = ReleasePublished {
                stream: stream.clone(),
                version: version.clone(),
                arches,
                period: request.period,
                forced: request.forced,
                reason: request.reason.clone(),
                previous,
                released_at: now,
                changes: notes.as_ref().map(|notes| notes.changes(url)),
                prerelease,
            };
            let record = ReleaseRecord { published, notes };
            store::write_json(&record_path, &record)?;
            record.published
        }
    };
    store.set_latest_release(stream, version)?;
    tracing::info!(stream = %stream, version = %version, forced = record.forced, "release in place");
    Ok(record)
}

/// Every arch's release commit ([`Repo::release_commit`]): what its release ref points at
/// and what a signed release has signed. Made from the release's trees, so asking again
/// returns the same commits and makes none.
pub fn release_commits(
    request: &Request<'_>,
    arches: &BTreeMap<Arch, ReleasedArch>,
) -> Result<BTreeMap<Arch, Commit>, ReleaseError> {
    let repo = Repo::new(&request.settings.ostree_repo);
    arches
        .iter()
        .map(|(arch, released)| {
            let commit = repo.release_commit(&released.tree.commit, &released.release_ref)?;
            Ok((arch.clone(), commit))
        })
        .collect()
}

/// Moves every arch's release ref to its release commit: checks them all first, so that a
/// refused arch leaves every ref where it was. Moving forward means that the tree the ref
/// ships now descends from the one it shipped.
fn promote_refs(
    request: &Request<'_>,
    arches: &BTreeMap<Arch, ReleasedArch>,
) -> Result<(), ReleaseError> {
    let repo = Repo::new(&request.settings.ostree_repo);
    let targets = release_commits(request, arches)?;
    for (arch, released) in arches {
        let Some(current) = repo.rev_parse(&released.release_ref)? else {
            continue;
        };
        let (shipped, source) = (repo.release_source(&current)?, &released.tree.commit);
        if current != targets[arch] && !request.forced && !repo.is_ancestor(&shipped, source)? {
            return Err(ReleaseError::NotFastForward {
                stream: request.stream.clone(),
                version: request.version.clone(),
                release_ref: released.release_ref.to_string(),
                from: shipped.to_string(),
                to: source.to_string(),
            });
        }
    }
    for (arch, released) in arches {
        repo.set_ref(&released.release_ref, &targets[arch])?;
        tracing::info!(arch = %arch, release_ref = %released.release_ref, commit = %targets[arch], source = %released.tree.commit, "release ref promoted");
    }
    repo.update_summary()?;
    Ok(())
}

/// The key the old two-week messages used for an image format.
fn legacy_key(format: &Format) -> String {
    let f = format.as_str();
    let key = if f == "qcow2" || f.starts_with("qcow2.") {
        "qcow2"
    } else if f.starts_with("raw") {
        "raw"
    } else if f.starts_with("vagrant-libvirt") {
        "vagrant_libvirt"
    } else if f.starts_with("vagrant-virtualbox") {
        "vagrant_virtualbox"
    } else if f.starts_with("iso") || f.starts_with("dvd") {
        "dvd_ostree"
    } else {
        return format!("atomic_{}", f.replace(['.', '-'], "_"));
    };
    format!("atomic_{key}")
}

/// The old `releng.atomic.twoweek.complete` body for tools that still read it.
pub fn legacy_complete(record: &ReleasePublished, base_url: &str) -> TwoweekComplete {
    let base = base_url.trim_end_matches('/');
    let body = record
        .arches
        .iter()
        .map(|(arch, released)| {
            let artifacts = released
                .images
                .iter()
                .map(|image| {
                    let image_name = Path::new(&image.path)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let artifact = LegacyArtifact {
                        compose_id: record.version.to_string(),
                        name: format!("Fedora-Atomic-{}", record.stream),
                        release: record.version.to_string(),
                        image_name,
                        image_url: format!("{base}/{}", image.path),
                        size: image.size,
                    };
                    (legacy_key(&image.format), artifact)
                })
                .collect();
            (arch.to_string(), artifacts)
        })
        .collect();
    TwoweekComplete(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_keys_match_the_old_messages() {
        let key = |f: &str| legacy_key(&f.parse().unwrap());
        assert_eq!(key("qcow2"), "atomic_qcow2");
        assert_eq!(key("raw.xz"), "atomic_raw");
        assert_eq!(key("vagrant-libvirt.box"), "atomic_vagrant_libvirt");
        assert_eq!(key("vagrant-virtualbox.box"), "atomic_vagrant_virtualbox");
        assert_eq!(key("iso"), "atomic_dvd_ostree");
        assert_eq!(key("vhd.gz"), "atomic_vhd_gz");
    }
}
