//! Signed releases (streams with `[streams.<s>.signing]`): the release is staged (links and
//! CHECKSUMs, nothing promoted), `fortnight.sign.requested` names its images, CHECKSUMs and
//! commits, and only a `SUCCESS` reply finishes it. The request waits in
//! `<stream>/.signing/<version>.json`, so a restarted releaser still knows what it waits for
//! and since when, and a reply is matched to it by `request_id`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use messages::{
    Arch, Period, ReleasedArch, SignArtifact, SignCommit, SignRequested, Stream, Version,
    derived_id,
};
use serde::{Deserialize, Serialize};
use store::{Store, StoreError};

use crate::NAME;
use crate::release::Request;

/// A staged release waiting for its signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub request: SignRequested,
    pub period: Option<Period>,
    pub forced: bool,
    pub reason: String,
    /// When the signatures were first requested.
    pub since: DateTime<Utc>,
}

pub fn read(
    store: &Store,
    stream: &Stream,
    version: &Version,
) -> Result<Option<Pending>, StoreError> {
    store::read_json(&store.signing_request_path(stream, version))
}

pub fn write(store: &Store, pending: &Pending) -> Result<(), StoreError> {
    let path = store.signing_request_path(&pending.request.stream, &pending.request.version);
    if let Some(dir) = path.parent() {
        store::create_dir_all(dir)?;
    }
    store::write_json(&path, pending)
}

/// Every release of `stream` waiting for signatures, oldest request first.
pub fn waiting(store: &Store, stream: &Stream) -> Result<Vec<Pending>, StoreError> {
    let mut pending = Vec::new();
    for entry in store::list_dir(&store.signing_requests_dir(stream))? {
        if let Some(found) = store::read_json::<Pending>(&entry.path())? {
            pending.push(found);
        }
    }
    pending.sort_by_key(|p| p.since);
    Ok(pending)
}

/// Forgets the request once it was answered; a later reply to it is then stale.
pub fn remove(store: &Store, stream: &Stream, version: &Version) -> Result<(), StoreError> {
    let path = store.signing_request_path(stream, version);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StoreError::Io {
            op: "remove",
            path,
            source,
        }),
    }
}

/// The request for a staged release: every arch's images, CHECKSUM and commit. Its id derives from
/// the release, so asking again (a replayed tick) sends the same request.
pub fn request_for(
    store: &Store,
    request: &Request<'_>,
    arches: &BTreeMap<Arch, ReleasedArch>,
) -> Result<SignRequested, StoreError> {
    let (stream, version) = (request.stream, request.version);
    let period = request
        .period
        .map_or_else(|| "forced".to_owned(), |period| period.to_string());
    let mut artifacts = Vec::new();
    for (arch, released) in arches {
        artifacts.extend(
            released
                .images
                .iter()
                .map(|image| SignArtifact::new(image.path.clone(), &image.sha256)),
        );
        let path = store
            .release_arch_dir(stream, version, arch)
            .join(store::CHECKSUM);
        let digest = store::hash_file(&path)?;
        artifacts.push(SignArtifact::new(store.relative(&path), &digest.sha256));
    }
    Ok(SignRequested {
        request_id: derived_id(NAME, &[stream.as_str(), version.as_str(), &period, "sign"]),
        stream: stream.clone(),
        version: version.clone(),
        build_id: format!("{stream}-{version}"),
        artifacts,
        commits: arches
            .iter()
            .map(|(arch, released)| SignCommit {
                arch: arch.clone(),
                ostree_ref: released.release_ref.clone(),
                commit: released.tree.commit.clone(),
            })
            .collect(),
    })
}
