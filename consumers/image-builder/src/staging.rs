//! A hidden directory next to an arch's images where a build assembles its files; nothing in
//! it is visible in the store until [`Staging::install`] renames the images into place.
//!
//! A build holds the `flock` on `<staging>/.lock` for as long as its staging lives, and the
//! kernel drops it when the process dies. A staging directory whose lock nobody holds (or
//! that has no lock file) and that is older than [`STALE_AFTER`] belongs to a crashed build:
//! [`remove_stale`] deletes it. Another replica's build in progress always holds its lock,
//! and the age guard covers the moment between creating a directory and locking it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use messages::{Arch, Format, Image, ImageBuilt, Stream, Tree, Version};
use settings::Settings;
use store::{Digested, LockGuard, Store, StoreError, Tier, checksum};
use tempfile::TempDir;

/// Staging directories are named `<PREFIX><random>` inside an arch's directory.
const PREFIX: &str = ".build-";
/// The lock file a live build holds inside its staging directory.
const LOCK: &str = ".lock";
/// How old an unlocked staging directory must be before it counts as abandoned.
const STALE_AFTER: Duration = Duration::from_secs(60);

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
    dir: TempDir,
    /// Marks the directory as in use until it is removed or installed.
    _lock: LockGuard,
    images: Vec<Staged>,
    log: String,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::io("finish a store task for", Path::new("."))(
            std::io::Error::other(e),
        ))
    })
}

impl Staging {
    pub fn new(store: &Store, candidate: &Candidate) -> Result<Self, StoreError> {
        let arch_dir = store.arch_dir(&candidate.stream, &candidate.version, &candidate.arch);
        store::create_dir_all(&arch_dir)?;
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .tempdir_in(&arch_dir)
            .map_err(StoreError::io("create a staging directory in", &arch_dir))?;
        // The directory is brand new, so nobody else can hold its lock.
        let lock = store::lock(&dir.path().join(LOCK))?;
        Ok(Self {
            dir,
            _lock: lock,
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
    pub async fn keep_log(self, store: &Store, candidate: &Candidate) -> Result<(), StoreError> {
        let path = store.build_log_path(&candidate.stream, &candidate.version, &candidate.arch);
        blocking(move || store::write_atomic(&path, self.log.as_bytes())).await
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
    ) -> Result<ImageBuilt, StoreError> {
        let store = store.clone();
        let candidate = candidate.clone();
        blocking(move || {
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
/// candidates (see the module comment for the rule); returns what it removed.
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
                for dir in staging_dirs(&arch_dir)? {
                    if !is_abandoned(&dir, now)? {
                        continue;
                    }
                    match std::fs::remove_dir_all(&dir) {
                        Ok(()) => {}
                        // Another replica starting up removed it first.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            return Err(StoreError::io("remove stale staging directory", &dir)(e));
                        }
                    }
                    tracing::info!(path = %dir.display(), "stale staging directory removed");
                    removed.push(dir);
                }
            }
        }
    }
    Ok(removed)
}

/// The staging directories in an arch's directory (none when it does not exist).
fn staging_dirs(arch_dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut dirs = Vec::new();
    for entry in store::list_dir(arch_dir)? {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && entry.file_name().to_string_lossy().starts_with(PREFIX) {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// Whether no live build owns `dir`: old enough, and its lock free or never taken.
fn is_abandoned(dir: &Path, now: SystemTime) -> Result<bool, StoreError> {
    let modified = std::fs::symlink_metadata(dir)
        .and_then(|m| m.modified())
        .map_err(StoreError::io("read the age of", dir))?;
    if now.duration_since(modified).unwrap_or_default() < STALE_AFTER {
        return Ok(false);
    }
    let lock = dir.join(LOCK);
    if !lock.exists() {
        return Ok(true);
    }
    // Taken only to test it: the guard is dropped at once, before the directory goes.
    Ok(store::try_lock(&lock)?.is_some())
}
