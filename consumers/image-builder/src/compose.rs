//! Compose mode: when a pungi compose finishes, take the images its `metadata/images.json`
//! (productmd) lists for each stream's variant, arches and formats. A local location is hard
//! linked into the store (copied when on another filesystem), a remote one downloaded; every
//! image is checked against the SHA-256 in images.json and refused on mismatch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bus::{Outputs, StepError};
use messages::{
    Format, ImageBuildFailed, Outgoing, PungiComposeStatusChange, Ref, Sha256, Stream, Tree,
    Version, derived_id,
};
use ostree_cli::Repo;
use serde::Deserialize;
use settings::StreamSettings;
use store::{Digested, FileName, ImageWriter, StoreError};

use crate::staging::{Candidate, Staging};
use crate::{Failure, ImageBuilder, NAME};

/// The parts of productmd's images.json that Fortnight reads.
#[derive(Debug, Deserialize)]
struct ImagesJson {
    payload: Payload,
}

#[derive(Debug, Deserialize)]
struct Payload {
    compose: ComposeInfo,
    /// variant -> arch -> images
    images: BTreeMap<String, BTreeMap<String, Vec<ComposeImage>>>,
}

#[derive(Debug, Deserialize)]
struct ComposeInfo {
    id: String,
}

#[derive(Debug, Deserialize)]
struct ComposeImage {
    path: String,
    format: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    checksums: BTreeMap<String, String>,
}

/// Where a compose lives: a directory on this machine or a URL.
#[derive(Debug, Clone)]
enum Location {
    Local(PathBuf),
    Remote(String),
}

impl Location {
    fn parse(location: &str) -> Option<Self> {
        let location = location.trim_end_matches('/');
        if let Some(path) = location.strip_prefix("file://") {
            return Some(Location::Local(PathBuf::from(path)));
        }
        if location.starts_with('/') {
            return Some(Location::Local(PathBuf::from(location)));
        }
        if location.starts_with("http://") || location.starts_with("https://") {
            return Some(Location::Remote(location.to_owned()));
        }
        None
    }

    /// The file at `relative` (already checked to be plain names).
    fn describe(&self, relative: &[FileName]) -> String {
        let joined = relative
            .iter()
            .map(FileName::as_str)
            .collect::<Vec<_>>()
            .join("/");
        match self {
            Location::Local(dir) => dir.join(joined).display().to_string(),
            Location::Remote(url) => format!("{url}/{joined}"),
        }
    }
}

/// A path from images.json as plain names: never absolute, never `..`, never hidden.
fn plain_path(path: &str) -> Option<Vec<FileName>> {
    let parts: Option<Vec<FileName>> = path.split('/').map(|p| p.parse().ok()).collect();
    parts.filter(|p| !p.is_empty())
}

impl ImageBuilder {
    pub(crate) async fn on_compose_status(
        &self,
        body: PungiComposeStatusChange,
    ) -> Result<Outputs, StepError> {
        if !body.is_finished() {
            tracing::debug!(compose = %body.compose_id, status = %body.status, "compose not finished; ignored");
            return Ok(Vec::new());
        }
        let streams: Vec<(&Stream, &StreamSettings, &str)> = self
            .settings
            .streams
            .iter()
            .filter_map(|(name, s)| {
                let variant = s.compose_variant.as_deref()?;
                let prefix_ok = s
                    .compose_id_prefix
                    .as_deref()
                    .is_none_or(|p| body.compose_id.starts_with(p));
                prefix_ok.then_some((name, s, variant))
            })
            .collect();
        if streams.is_empty() {
            tracing::debug!(compose = %body.compose_id, "no stream takes images from this compose; ignored");
            return Ok(Vec::new());
        }
        let Some(location) = Location::parse(&body.location) else {
            return Err(StepError::permanent(format!(
                "compose location {:?} is neither a local path, file:// nor http(s)://",
                body.location
            )));
        };
        let metadata = match self.fetch_images_json(&location).await {
            Ok(metadata) => metadata,
            Err(Failure::Step(error)) => return Err(error),
            Err(Failure::Build { reason, .. }) => return Err(StepError::permanent(reason)),
        };
        let version: Version = metadata.payload.compose.id.parse().map_err(|e| {
            StepError::permanent(format!("images.json of {}: {e}", body.compose_id))
        })?;
        let mut outgoing = Vec::new();
        for (stream, stream_settings, variant) in streams {
            let Some(arches) = metadata.payload.images.get(variant) else {
                tracing::info!(compose = %version, stream = %stream, variant, "compose has no images for the stream's variant");
                continue;
            };
            for arch in &stream_settings.arches {
                let candidate = Candidate {
                    stream: stream.clone(),
                    version: version.clone(),
                    arch: arch.clone(),
                };
                let listed = arches
                    .get(arch.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                outgoing.extend(
                    self.take_compose_arch(&candidate, stream_settings, &location, listed)
                        .await?,
                );
            }
        }
        Ok(outgoing)
    }

    async fn fetch_images_json(&self, location: &Location) -> Result<ImagesJson, Failure> {
        let bytes = match location {
            Location::Local(dir) => {
                let path = dir.join("metadata").join("images.json");
                tokio::fs::read(&path)
                    .await
                    .map_err(|e| Failure::retry(format!("cannot read {}: {e}", path.display())))?
            }
            Location::Remote(url) => {
                let url = format!("{url}/metadata/images.json");
                let response = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| Failure::retry(format!("cannot fetch {url}: {e}")))?;
                response
                    .bytes()
                    .await
                    .map_err(|e| Failure::retry(format!("cannot fetch {url}: {e}")))?
                    .to_vec()
            }
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            Failure::build(
                None,
                format!("images.json is not productmd images metadata: {e}"),
            )
        })
    }

    /// The tree the input ref points at now: the best guess at a compose's tree when its
    /// `pungi.compose.ostree` never arrived.
    async fn input_ref_tree(
        &self,
        input_ref: &Ref,
        stream_settings: &StreamSettings,
    ) -> Result<Tree, StepError> {
        let repo = Repo::new(&stream_settings.ostree_repo);
        let lookup = input_ref.clone();
        let commit = bus::blocking(move || Ok::<_, StepError>(repo.rev_parse(&lookup)?))
            .await?
            .ok_or_else(|| {
                StepError::retryable(format!(
                    "ref {input_ref} is not in {}; the compose's tree must be there to tie images to a commit",
                    stream_settings.ostree_repo.display()
                ))
            })?;
        Ok(crate::stream_tree(
            stream_settings,
            input_ref.clone(),
            commit,
        ))
    }

    /// Brings one arch's images into the store.
    async fn take_compose_arch(
        &self,
        candidate: &Candidate,
        stream_settings: &StreamSettings,
        location: &Location,
        listed: &[ComposeImage],
    ) -> Result<Option<Outgoing>, StepError> {
        let Candidate {
            stream,
            version,
            arch,
        } = candidate;
        let id = derived_id(
            NAME,
            &["built", stream.as_str(), version.as_str(), arch.as_str()],
        );
        let (previous, recorded) = {
            let (store, candidate) = (self.store.clone(), candidate.clone());
            bus::blocking(move || -> Result<_, StepError> {
                let Candidate {
                    stream,
                    version,
                    arch,
                } = &candidate;
                let previous = store.read_build(stream, version, arch)?;
                // images.json does not name the tree; the compose's pungi.compose.ostree did.
                let recorded: Option<Tree> =
                    store::read_json(&store.compose_tree_path(stream, version, arch))?;
                Ok((previous, recorded))
            })
            .await?
        };
        if let Some(built) = previous {
            tracing::info!(compose = %version, stream = %stream, arch = %arch, "compose images already taken; published again");
            return Ok(Some(Outgoing::new(id, &built)));
        }
        let Some(input_ref) = stream_settings.input_refs.get(arch) else {
            return Ok(None);
        };
        let tree = match recorded {
            Some(tree) => tree,
            None => {
                let tree = self.input_ref_tree(input_ref, stream_settings).await?;
                tracing::warn!(compose = %version, stream = %stream, arch = %arch, commit = %tree.commit, "no pungi.compose.ostree seen for this compose; images tied to the input ref's current commit");
                tree
            }
        };
        let mut staging = Staging::new(&self.store, candidate).await?;
        let mut result = Ok(());
        for format in &stream_settings.formats {
            result = self
                .take_image(&mut staging, location, listed, format)
                .await;
            if result.is_err() {
                break;
            }
        }
        let failure = match result {
            Ok(()) => {
                // The images are verified; what can still fail is the store itself: retry.
                let built = staging
                    .install(&self.store, candidate, tree, Some(version.to_string()))
                    .await?;
                tracing::info!(compose = %version, stream = %stream, arch = %arch, images = built.images.len(), "compose images taken");
                return Ok(Some(Outgoing::new(id, &built)));
            }
            Err(failure) => failure,
        };
        match failure {
            Failure::Step(error) => Err(error),
            Failure::Build { format, reason } => {
                tracing::warn!(compose = %version, stream = %stream, arch = %arch, reason = %reason, "compose images refused");
                staging.log(&format!("### refused: {reason}"));
                staging.keep_log(&self.store, candidate).await?;
                let failed = ImageBuildFailed {
                    stream: stream.clone(),
                    version: Some(version.clone()),
                    arch: arch.clone(),
                    tree,
                    format,
                    reason,
                    build_log: Some(
                        self.store
                            .relative(&self.store.build_log_path(stream, version, arch)),
                    ),
                };
                let id = derived_id(
                    NAME,
                    &["failed", stream.as_str(), version.as_str(), arch.as_str()],
                );
                Ok(Some(Outgoing::new(id, &failed)))
            }
        }
    }

    /// Stages the compose's image of `format` and checks its digest against images.json.
    async fn take_image(
        &self,
        staging: &mut Staging,
        location: &Location,
        listed: &[ComposeImage],
        format: &Format,
    ) -> Result<(), Failure> {
        let fail = |reason: String| Failure::build(Some(format), reason);
        let Some(entry) = listed.iter().find(|i| i.format == format.as_str()) else {
            return Err(fail(format!(
                "the compose lists no {format} image for this arch"
            )));
        };
        let Some(relative) = plain_path(&entry.path) else {
            return Err(fail(format!(
                "images.json path {:?} is not a plain relative path; refused",
                entry.path
            )));
        };
        let source = location.describe(&relative);
        let expected: Sha256 = entry
            .checksums
            .get("sha256")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| fail(format!("images.json gives no valid sha256 for {source}")))?;
        let staged = staging.path().join(format!("compose.{format}"));
        let digest = match location {
            Location::Local(dir) => {
                let from: PathBuf = relative.iter().fold(dir.clone(), |p, part| p.join(part));
                link_or_copy(&from, &staged).await?
            }
            Location::Remote(_) => self.download(&source, &staged).await?,
        };
        let size_ok = entry.size.is_none_or(|size| size == digest.size);
        staging.log(&format!(
            "{format}: {source} ({} bytes, sha256 {})",
            digest.size, digest.sha256
        ));
        if digest.sha256 != expected || !size_ok {
            let _ = tokio::fs::remove_file(&staged).await;
            return Err(fail(format!(
                "checksum mismatch for {source}: images.json says sha256 {expected} ({} bytes), the file has {} ({} bytes); refused",
                entry.size.map_or("?".to_owned(), |s| s.to_string()),
                digest.sha256,
                digest.size
            )));
        }
        staging.add_image(format, staged, Some(digest));
        Ok(())
    }

    /// Streams `url` into `dest`, hashing while writing.
    async fn download(&self, url: &str, dest: &Path) -> Result<Digested, Failure> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Failure::retry(format!("cannot fetch {url}: {e}")))?;
        let status = response.status();
        if status.is_client_error() {
            return Err(Failure::build(
                None,
                format!("cannot fetch {url}: HTTP {status}"),
            ));
        }
        if !status.is_success() {
            return Err(Failure::retry(format!("cannot fetch {url}: HTTP {status}")));
        }
        let mut writer = ImageWriter::create(dest)?;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Failure::retry(format!("download of {url} broke off: {e}")))?
        {
            writer.write_all(&chunk)?;
        }
        // The fsync is what blocks; the writes above only fill the page cache.
        bus::blocking(move || Ok::<_, Failure>(writer.finish()?)).await
    }
}

/// Hard-links `from` to `dest` (instant, whatever the size), or copies it when the compose is
/// on another filesystem; then hashes it, which verification needs anyway.
async fn link_or_copy(from: &Path, dest: &Path) -> Result<Digested, Failure> {
    let (from, dest) = (from.to_owned(), dest.to_owned());
    bus::blocking(move || -> Result<Digested, Failure> {
        match std::fs::hard_link(&from, &dest) {
            Ok(()) => Ok(store::hash_file(&dest)?),
            Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                let mut source = std::fs::File::open(&from)
                    .map_err(|e| Failure::retry(format!("cannot open {}: {e}", from.display())))?;
                let mut writer = ImageWriter::create(&dest)?;
                writer.copy_from(&mut source)?;
                Ok(writer.finish()?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Failure::build(
                None,
                format!("the compose lists {} but it does not exist", from.display()),
            )),
            Err(e) => Err(Failure::from(StoreError::io("hard-link", &dest)(e))),
        }
    })
    .await
}
