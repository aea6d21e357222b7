//! A hidden directory next to an arch's images where a build assembles its files; nothing in
//! it is visible in the store until [`Staging::install`] renames the images into place.
//!
//! It is a [`store::Scratch`]: a build holds its lock for as long as its staging lives, and
//! [`remove_stale`] deletes, at start-up, the staging that crashed or killed builds left (the
//! rule is in [`store::scratch`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bus::StepError;
use messages::{Arch, Format, Image, ImageBuilt, Stream, Tree, Version};
use settings::Settings;
use store::{Digested, Scratch, Store, StoreError, Tier, checksum};

/// Staging directories are named `<PREFIX><random>` inside an arch's directory.
const PREFIX: &str = ".build-";

/// One stream/version/arch.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub stream: Stream,
    pub version: Version,
    pub arch: Arch,
}

#[derive(Debug)]
struct Staged {
    format: Format,
    path: PathBuf,
    /// Known when the file was hashed while it was written (downloads).
    digest: Option<Digested>,
}

#[derive(Debug)]
pub(crate) struct Staging {
    dir: Scratch,
    images: Vec<Staged>,
    log: String,
}

impl Staging {
    pub async fn new(store: &Store, candidate: &Candidate) -> Result<Self, StepError> {
        let arch_dir = store.arch_dir(&candidate.stream, &candidate.version, &candidate.arch);
        let dir =
            bus::blocking(move || Ok::<_, StepError>(Scratch::new_in(&arch_dir, PREFIX)?)).await?;
        Ok(Self {
            dir,
            images: Vec::new(),
            log: String::new(),
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn add_image(&mut self, format: &Format, path: PathBuf, digest: Option<Digested>) {
        self.images.push(Staged {
            format: format.clone(),
            path,
            digest,
        });
    }

    pub fn log(&mut self, text: &str) {
        self.log.push_str(text);
        if !text.ends_with('\n') {
            self.log.push('\n');
        }
    }

    /// Writes the build log into the store (after a failure, so build.failed can point at it).
    pub async fn keep_log(self, store: &Store, candidate: &Candidate) -> Result<(), StepError> {
        let path = store.build_log_path(&candidate.stream, &candidate.version, &candidate.arch);
        bus::blocking(move || Ok::<_, StepError>(store::write_atomic(&path, self.log.as_bytes())?))
            .await
    }

    /// Hashes the images that were not hashed while written, renames them into place, then
    /// writes CHECKSUM, the build log and build.json, in that order, so that build.json (what
    /// readers look for) appears only once everything it names is there.
    pub async fn install(
        self,
        store: &Store,
        candidate: &Candidate,
        tree: Tree,
        compose_id: Option<String>,
    ) -> Result<ImageBuilt, StepError> {
        let store = store.clone();
        let candidate = candidate.clone();
        bus::blocking(move || -> Result<_, StepError> {
            let Candidate {
                stream,
                version,
                arch,
            } = &candidate;
            let mut images = Vec::new();
            let mut sums = BTreeMap::new();
            for staged in &self.images {
                let digest = match &staged.digest {
                    Some(digest) => digest.clone(),
                    None => store::hash_file(&staged.path)?,
                };
                let dest = store.image_path(stream, version, arch, &staged.format);
                store::move_into_place(&staged.path, &dest)?;
                sums.insert(
                    Store::image_file_name(stream, version, arch, &staged.format),
                    digest.sha256.clone(),
                );
                images.push(Image {
                    format: staged.format.clone(),
                    path: store.relative(&dest),
                    size: digest.size,
                    sha256: digest.sha256,
                });
            }
            checksum::write(&store.checksum_path(stream, version, arch), &sums)?;
            let log = store.build_log_path(stream, version, arch);
            store::write_atomic(&log, self.log.as_bytes())?;
            let built = ImageBuilt {
                stream: stream.clone(),
                version: version.clone(),
                arch: arch.clone(),
                tree,
                images,
                build_log: store.relative(&log),
                compose_id,
            };
            store::write_json(&store.build_json_path(stream, version, arch), &built)?;
            Ok(built)
        })
        .await
    }
}

/// Deletes the staging directories that crashed builds left in the configured streams'
/// candidates (see [`store::scratch`] for the rule); returns what it removed.
pub(crate) fn remove_stale(
    settings: &Settings,
    store: &Store,
    now: SystemTime,
) -> Result<Vec<PathBuf>, StoreError> {
    let mut removed = Vec::new();
    for (stream, stream_settings) in &settings.streams {
        for version in store.list_versions(stream, Tier::All)? {
            for arch in &stream_settings.arches {
                let arch_dir = store.arch_dir(stream, &version, arch);
                for dir in store::scratch::remove_abandoned(&arch_dir, PREFIX, now)? {
                    tracing::info!(path = %dir.display(), "stale staging directory removed");
                    removed.push(dir);
                }
            }
        }
    }
    Ok(removed)
}
