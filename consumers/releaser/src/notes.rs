//! A release's notes: what changed on every arch since the stream's previous release, read
//! from the two trees (`release-notes`). Computed once, when `release.json` is first written;
//! a replayed release reuses them with the rest of the record.

use std::collections::BTreeMap;

use messages::{Arch, ReleasedArch, Version};
use ostree_cli::Repo;
use release_notes::{ReleaseNotes, ReleaseRecord};
use store::Store;

use crate::release::Request;

/// The notes against `previous`, or `None` when there is nothing to compare with. Notes are a
/// courtesy: a tree that cannot be read (rpm missing, a damaged database) is logged and the
/// release goes on without them, rather than waiting on them.
pub fn against_previous(
    store: &Store,
    request: &Request<'_>,
    previous: &Version,
    arches: &BTreeMap<Arch, ReleasedArch>,
) -> Option<ReleaseNotes> {
    let (stream, version) = (request.stream, request.version);
    let path = store.release_record_path(stream, previous);
    let before = match store::read_json::<ReleaseRecord>(&path) {
        Ok(Some(record)) => record.published,
        Ok(None) => {
            tracing::warn!(stream = %stream, version = %version, previous = %previous, "previous release has no release.json; no release notes");
            return None;
        }
        Err(error) => {
            tracing::warn!(stream = %stream, version = %version, previous = %previous, error = %error, "cannot read the previous release; no release notes");
            return None;
        }
    };
    let repo = Repo::new(&request.settings.ostree_repo);
    let mut notes = BTreeMap::new();
    for (arch, released) in arches {
        // An arch the previous release did not have has nothing to compare with.
        let Some(old) = before.arches.get(arch) else {
            continue;
        };
        match release_notes::compare(&repo, &old.tree.commit, &released.tree.commit) {
            Ok(changes) => {
                notes.insert(arch.clone(), changes);
            }
            Err(error) => {
                tracing::warn!(stream = %stream, version = %version, arch = %arch, error = %error, "cannot compute release notes; releasing without them");
                return None;
            }
        }
    }
    Some(ReleaseNotes {
        against: previous.clone(),
        arches: notes,
    })
}
