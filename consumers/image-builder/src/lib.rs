//! The image-builder consumer: the first step of the choreography.
//!
//! - `pungi.compose.ostree` and `fortnight.tree.composed` (recipe mode): for every stream that
//!   lists the tree's ref as an input, run the stream's recipe for each format and put the
//!   images in the store. A (stream, ref, commit) is built once: pungi re-sends the same tree
//!   every five minutes until it is signed, and only an operator's `force` builds it again.
//! - `pungi.compose.status.change` (compose mode): when a compose finishes, take the images
//!   its `metadata/images.json` lists for each stream's variant, arches and formats, and
//!   verify them against the listed checksums.
//!
//! Either way the result is `fortnight.image.built` per stream/version/arch, or
//! `fortnight.image.build.failed` with the reason and the build log. Images are staged in a
//! hidden directory next to their destination and renamed into place only when every format
//! of the arch succeeded, so a failed, timed-out or interrupted build leaves nothing visible.

mod compose;
mod recipe;
mod staging;
#[cfg(test)]
mod step_tests;

use std::sync::Arc;
use std::time::Duration;

use bus::{Outputs, Step, StepError};
use messages::{
    Arch, Commit, Format, ImageBuildFailed, ImageBuilt, Incoming, Outgoing, PungiComposeOstree,
    PungiComposeStatusChange, Ref, Stream, Tree, TreeComposed, Version, derived_id,
};
use ostree_cli::Repo;
use serde::{Deserialize, Serialize};
use settings::Settings;
use store::{FileName, Store, StoreError};
use uuid::Uuid;

use crate::staging::Staging;

pub const NAME: &str = "image-builder";

#[derive(Debug, thiserror::Error)]
pub enum BuilderError {
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot create the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// The image-builder step.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    settings: Arc<Settings>,
    store: Store,
    http: reqwest::Client,
}

bus::input! {
    /// What the image builder reads: new trees (from pungi, or an operator's or another
    /// system's `fortnight.tree.composed`) and finished composes.
    pub enum BuilderInput {
        PungiTree(PungiComposeOstree),
        Tree(TreeComposed),
        ComposeStatus(PungiComposeStatusChange),
    }
}

/// Why a build did not produce images.
#[derive(Debug)]
enum Failure {
    /// Not the build's fault (store full, a download's server down): the message is retried,
    /// or refused, as the error says.
    Step(StepError),
    /// The build failed for good: publish `fortnight.image.build.failed`.
    Build {
        format: Option<Format>,
        reason: String,
    },
}

impl Failure {
    fn build(format: Option<&Format>, reason: impl Into<String>) -> Self {
        Failure::Build {
            format: format.cloned(),
            reason: reason.into(),
        }
    }

    fn retry(reason: impl Into<String>) -> Self {
        Failure::Step(StepError::retryable(reason))
    }
}

impl From<StepError> for Failure {
    fn from(error: StepError) -> Self {
        Failure::Step(error)
    }
}

/// A store error no retry fixes (a corrupt file, an invalid name) fails the build, so that
/// the next step hears of it; the others are retried.
impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        match StepError::from(error) {
            error if error.is_retryable() => Failure::Step(error),
            error => Failure::build(None, error.reason()),
        }
    }
}

/// One tree to build for one stream and arch.
#[derive(Debug, Clone)]
struct TreeRequest {
    stream: Stream,
    arch: Arch,
    tree_ref: Ref,
    commit: Commit,
    version: Option<Version>,
    force: bool,
}

/// The dedup marker of (stream, ref, commit): the message its build published. A repeat
/// (pungi's re-sends, an operator's replay without force, a journaled job resumed after a
/// crash between marker and publish) publishes it again with the same id instead of building
/// again, so no result is lost and downstream can drop the duplicate by id.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
enum Marker {
    Built { id: Uuid, message: ImageBuilt },
    Failed { id: Uuid, message: ImageBuildFailed },
}

impl Marker {
    fn outgoing(&self) -> Outgoing {
        match self {
            Marker::Built { id, message } => Outgoing::new(*id, message),
            Marker::Failed { id, message } => Outgoing::new(*id, message),
        }
    }
}

/// A tree of `stream_settings`' OSTree repository, as messages carry it.
fn stream_tree(
    stream_settings: &settings::StreamSettings,
    ostree_ref: Ref,
    commit: Commit,
) -> Tree {
    Tree {
        ostree_ref,
        commit,
        repo: stream_settings.ostree_repo.display().to_string(),
    }
}

/// A stream and arch that take a tree, with the stream's input ref for that arch.
type Target = (Stream, Arch, Ref);

impl ImageBuilder {
    pub fn new(settings: Arc<Settings>) -> Result<Self, BuilderError> {
        let store = Store::open(&settings.store.root)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            // Per read, not per download: a multi-gigabyte image may take long, a stall may not.
            .read_timeout(Duration::from_secs(120))
            .build()?;
        Ok(Self {
            settings,
            store,
            http,
        })
    }

    fn recipe_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.image_builder.recipe_timeout_seconds)
    }

    /// Every (stream, arch) whose input ref is `tree_ref`, optionally only for `arch`.
    fn streams_for(&self, tree_ref: &str, arch: Option<&Arch>) -> Vec<Target> {
        let mut found = Vec::new();
        for (stream, s) in &self.settings.streams {
            for (a, r) in &s.input_refs {
                if r.as_str() == tree_ref && arch.is_none_or(|want| want == a) {
                    found.push((stream.clone(), a.clone(), r.clone()));
                }
            }
        }
        found
    }

    async fn on_pungi_tree(
        &self,
        body: PungiComposeOstree,
        message: &Incoming,
    ) -> Result<Outputs, StepError> {
        let Some(commit) = body.commitid.as_deref() else {
            tracing::info!(tree_ref = %body.ostree_ref, "compose committed nothing new; ignored");
            return Ok(Vec::new());
        };
        let targets = self.streams_for(&body.ostree_ref, None);
        if targets.is_empty() {
            tracing::debug!(tree_ref = %body.ostree_ref, "no stream builds this ref; ignored");
            return Ok(Vec::new());
        }
        let commit: Commit = commit
            .parse()
            .map_err(|e: messages::InvalidId| StepError::permanent(e.to_string()))?;
        let (from_composes, from_recipes) = self.by_mode(targets);
        {
            let (this, commit) = (self.clone(), commit.clone());
            bus::blocking(move || this.remember_compose_trees(&body, &commit, from_composes))
                .await?;
        }
        self.build_all(message, from_recipes, commit, None, false)
            .await
    }

    /// Splits targets into streams that take a compose's images (compose mode) and streams
    /// that build images with their recipes.
    fn by_mode(&self, targets: Vec<Target>) -> (Vec<Target>, Vec<Target>) {
        targets.into_iter().partition(|(stream, ..)| {
            self.settings
                .stream(stream)
                .is_some_and(|s| s.compose_variant.is_some())
        })
    }

    /// Compose mode builds nothing from a tree: it records which commit the compose made, so
    /// that the compose's images, taken when it finishes, are tied to that commit and not to
    /// wherever the input ref has moved since. Blocking: writes to the store.
    fn remember_compose_trees(
        &self,
        body: &PungiComposeOstree,
        commit: &Commit,
        targets: Vec<Target>,
    ) -> Result<(), StepError> {
        if targets.is_empty() {
            return Ok(());
        }
        let Some(compose_id) = body.compose_id.as_deref() else {
            tracing::warn!(tree_ref = %body.ostree_ref, %commit, "tree message without compose_id; its compose's images will be tied to the input ref when they are taken");
            return Ok(());
        };
        let compose: Version = compose_id
            .parse()
            .map_err(|e: messages::InvalidId| StepError::permanent(format!("compose_id: {e}")))?;
        for (stream, arch, tree_ref) in targets {
            let Some(stream_settings) = self.settings.stream(&stream) else {
                continue;
            };
            let tree = stream_tree(stream_settings, tree_ref, commit.clone());
            let path = self.store.compose_tree_path(&stream, &compose, &arch);
            store::write_json(&path, &tree)
                .map_err(|e| StepError::from(e).context("cannot record the compose's tree"))?;
            tracing::info!(stream = %stream, compose = %compose, arch = %arch, %commit, "compose tree recorded; its images are taken when the compose finishes");
        }
        Ok(())
    }

    async fn on_tree_composed(
        &self,
        body: TreeComposed,
        message: &Incoming,
    ) -> Result<Outputs, StepError> {
        let targets = self.streams_for(body.tree.ostree_ref.as_str(), Some(&body.arch));
        let (from_composes, targets) = self.by_mode(targets);
        for (stream, ..) in from_composes {
            tracing::info!(stream = %stream, tree_ref = %body.tree.ostree_ref, "stream takes its images from composes; tree event ignored");
        }
        if targets.is_empty() {
            tracing::info!(tree_ref = %body.tree.ostree_ref, arch = %body.arch, "no stream builds this ref; ignored");
            return Ok(Vec::new());
        }
        self.build_all(message, targets, body.tree.commit, body.version, body.force)
            .await
    }

    /// Builds `commit` for every (stream, arch, ref) that takes it.
    async fn build_all(
        &self,
        message: &Incoming,
        targets: Vec<Target>,
        commit: Commit,
        version: Option<Version>,
        force: bool,
    ) -> Result<Outputs, StepError> {
        let mut outgoing = Vec::new();
        for (stream, arch, tree_ref) in targets {
            let request = TreeRequest {
                stream,
                arch,
                tree_ref,
                commit: commit.clone(),
                version: version.clone(),
                force,
            };
            outgoing.extend(self.build_tree(message, request).await?);
        }
        Ok(outgoing)
    }

    /// Builds one tree for one stream/arch; `Ok(None)` when it was built before (or is being
    /// built by another replica right now).
    async fn build_tree(
        &self,
        message: &Incoming,
        request: TreeRequest,
    ) -> Result<Option<Outgoing>, StepError> {
        let Some(stream_settings) = self.settings.stream(&request.stream) else {
            return Ok(None);
        };
        let tree = stream_tree(
            stream_settings,
            request.tree_ref.clone(),
            request.commit.clone(),
        );
        let marker = self
            .store
            .built_marker(&request.stream, &request.tree_ref, &request.commit);
        let lock_name: FileName = format!("build-{}-{}", request.arch, request.commit).parse()?;
        let lock_path = self.store.lock_path(&request.stream, &lock_name);
        let (lock, done) = {
            let (marker, force) = (marker.clone(), request.force);
            bus::blocking(move || -> Result<_, StepError> {
                let Some(lock) = store::try_lock(&lock_path)? else {
                    return Ok((None, None));
                };
                let done = match force {
                    true => None,
                    false => read_marker(&marker)?,
                };
                Ok((Some(lock), done))
            })
            .await?
        };
        let Some(_lock) = lock else {
            tracing::info!(stream = %request.stream, commit = %request.commit, "another replica is building this tree; skipped");
            return Ok(None);
        };
        if let Some(done) = done {
            tracing::info!(stream = %request.stream, arch = %request.arch, commit = %request.commit, "tree already built; result published again");
            return Ok(Some(done.outgoing()));
        }
        let mut version = request.version.clone();
        let result = self
            .build_recipes(&request, stream_settings, &tree, &mut version)
            .await;
        // A forced build is a new result: the forcing message's id makes its id new too.
        let key = if request.force { message.log_id() } else { "" };
        let result_id =
            |outcome: &str, about: &[&str]| derived_id(NAME, &[&[outcome], about, &[key]].concat());
        let record = match result {
            Ok(built) => {
                tracing::info!(stream = %built.stream, version = %built.version, arch = %built.arch, images = built.images.len(), "images built");
                let id = result_id(
                    "built",
                    &[
                        built.stream.as_str(),
                        built.version.as_str(),
                        built.arch.as_str(),
                        built.tree.commit.as_str(),
                    ],
                );
                Marker::Built { id, message: built }
            }
            Err(Failure::Step(error)) => return Err(error),
            Err(Failure::Build { format, reason }) => {
                tracing::warn!(stream = %request.stream, arch = %request.arch, commit = %request.commit, reason = %reason, "build failed");
                let build_log = version.as_ref().map(|v| {
                    self.store.relative(&self.store.build_log_path(
                        &request.stream,
                        v,
                        &request.arch,
                    ))
                });
                let failed = ImageBuildFailed {
                    stream: request.stream.clone(),
                    version: version.clone(),
                    arch: request.arch.clone(),
                    tree: tree.clone(),
                    format,
                    reason,
                    build_log,
                };
                let id = result_id(
                    "failed",
                    &[
                        request.stream.as_str(),
                        request.arch.as_str(),
                        request.commit.as_str(),
                    ],
                );
                Marker::Failed {
                    id,
                    message: failed,
                }
            }
        };
        let outgoing = record.outgoing();
        bus::blocking(move || Ok::<_, StepError>(store::write_json(&marker, &record)?)).await?;
        Ok(Some(outgoing))
    }

    /// Runs every format's recipe and installs the images; `version` is filled in as soon as
    /// it is known so that a failure message can carry it.
    async fn build_recipes(
        &self,
        request: &TreeRequest,
        stream_settings: &settings::StreamSettings,
        tree: &Tree,
        version: &mut Option<Version>,
    ) -> Result<ImageBuilt, Failure> {
        let resolved = match version.clone() {
            Some(v) => v,
            None => {
                let v = tree_version(&stream_settings.ostree_repo, &request.commit).await?;
                *version = Some(v.clone());
                v
            }
        };
        let candidate = staging::Candidate {
            stream: request.stream.clone(),
            version: resolved,
            arch: request.arch.clone(),
        };
        let mut staging = Staging::new(&self.store, &candidate).await?;
        let result = async {
            for format in &stream_settings.formats {
                recipe::build(
                    &mut staging,
                    stream_settings,
                    tree,
                    &candidate,
                    format,
                    self.recipe_timeout(),
                )
                .await?;
            }
            Ok::<_, Failure>(())
        }
        .await;
        match result {
            Ok(()) => Ok(staging
                .install(&self.store, &candidate, tree.clone(), None)
                .await?),
            Err(failure) => {
                if let Failure::Build { reason, .. } = &failure {
                    staging.log(&format!("### build failed: {reason}"));
                }
                staging.keep_log(&self.store, &candidate).await?;
                Err(failure)
            }
        }
    }
}

/// The tree's version from the commit's `version` metadata.
async fn tree_version(repo: &std::path::Path, commit: &Commit) -> Result<Version, Failure> {
    let repo = Repo::new(repo);
    let c = commit.clone();
    let read =
        bus::blocking(move || Ok::<_, StepError>(repo.metadata_string(&c, "version"))).await?;
    match read {
        Ok(Some(text)) => text.parse().map_err(|e| {
            Failure::build(
                None,
                format!("commit {commit} has version metadata that is not a valid version: {e}"),
            )
        }),
        Ok(None) => Err(Failure::build(
            None,
            format!(
                "commit {commit} has no `version` metadata; commit with --add-metadata-string=version=... or send fortnight.tree.composed with a version"
            ),
        )),
        // The commit may not have reached this repository yet (mirroring lag): retry.
        Err(e) => Err(Failure::Step(e.into())),
    }
}

/// The dedup marker at `path`, if there is a readable one.
fn read_marker(path: &std::path::Path) -> Result<Option<Marker>, StepError> {
    match store::read_json::<Marker>(path) {
        Ok(done) => Ok(done),
        Err(e) if e.is_retryable() => Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable build marker; building again");
            Ok(None)
        }
    }
}

impl Step for ImageBuilder {
    const NAME: &'static str = NAME;
    type Input = BuilderInput;

    fn long_running(&self) -> bool {
        true
    }

    /// Clears what builds that crashed left behind, before this one builds anything.
    async fn on_start(&self) -> Result<(), StepError> {
        let (settings, store) = (Arc::clone(&self.settings), self.store.clone());
        let removed = bus::blocking(move || {
            staging::remove_stale(&settings, &store, std::time::SystemTime::now())
                .map_err(|e| StepError::from(e).context("cannot clear stale staging directories"))
        })
        .await?;
        tracing::info!(removed = removed.len(), "staging directories checked");
        Ok(())
    }

    async fn handle(&self, input: BuilderInput, message: &Incoming) -> Result<Outputs, StepError> {
        match input {
            BuilderInput::PungiTree(body) => self.on_pungi_tree(body, message).await,
            BuilderInput::Tree(body) => self.on_tree_composed(body, message).await,
            BuilderInput::ComposeStatus(body) => self.on_compose_status(body).await,
        }
    }
}
