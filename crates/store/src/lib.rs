//! The artifact tree (the "location to put things"): plain files that any web server can
//! serve and that several replicas of a consumer can share over a network filesystem.
//!
//! # Layout
//!
//! ```text
//! <root>/<stream>/all/<version>/<arch>/images/<stream>-<version>.<arch>.<format>
//! <root>/<stream>/all/<version>/<arch>/images/CHECKSUM     SHA256 (name) = <hex>, per image
//! <root>/<stream>/all/<version>/<arch>/build.json          the fortnight.image.built body
//! <root>/<stream>/all/<version>/<arch>/tests.json          the test report (messages::TestReport)
//! <root>/<stream>/all/<version>/<arch>/junit.xml           the same, for CI dashboards
//! <root>/<stream>/all/<version>/<arch>/logs/               build.log, one log per test and format
//! <root>/<stream>/all/<version>/karma/<user>.json          a voter's latest vote (messages::Vote)
//! <root>/<stream>/passed-autotest/<version> -> ../all/<version>
//! <root>/<stream>/passed-human/<version>    -> ../all/<version>
//! <root>/<stream>/releases/<version>/...                   hard links, CHECKSUM, release.json
//! <root>/<stream>/releases/latest           -> <version>
//! <root>/<stream>/all/<version>/karma/.threshold.json      karma-tracker: threshold announced
//! <root>/<stream>/.built/<ref>/<commit>.json               image-builder's dedup markers
//! <root>/<stream>/.compose-trees/<compose>/<arch>.json     image-builder: the tree a compose made
//! <root>/<stream>/.external/<version>/<arch>/<test>.json   image-tester: another CI system's result
//! <root>/<stream>/.locks/<name>.lock                       flock files for check-and-set
//! <root>/<stream>/timer.json                               release-timer: last period fired
//! <root>/<stream>/.stale.json                              release-timer: stale spells announced
//! <root>/<stream>/overrides.jsonl                          releaser: override audit log
//! <root>/<stream>/.periods/<period>.json                   releaser: each period's decision
//! <root>/<stream>/.periods/waiting.json                    releaser: the period awaiting a pass
//! <root>/<stream>/.endoflife.json                          releaser: the stream's end of life
//! <root>/<stream>/.signed/<request id>.json               signer: the reply to each request
//! <root>/<stream>/.signing/<version>.json                  releaser: a release awaiting signatures
//! <root>/<stream>/.signing-answered/<request id>.json      releaser: an answered request and its reply
//! <root>/<stream>/.switch.json                             releaser: two-week releases moved here
//! <root>/.keys/<fingerprint>.asc                           signer: the public keys it signs with
//! <root>/site -> .site/<generation>/                       site-publisher: page, JSON, feed
//! <root>/.jobs/<consumer>/                                 the bus runtime's job journal
//! ```
//!
//! Who writes what: image-builder writes `images/`, `build.json`, `logs/build.log`, `.built/`
//! and `.compose-trees/`; image-tester writes `tests.json`, `junit.xml`, test logs, `.external/` and `passed-autotest/`;
//! karma-tracker writes `karma/` and `passed-human/`; releaser writes `releases/`,
//! `overrides.jsonl`, `.periods/`, `.signing/`, `.signing-answered/`, `.switch.json` and `.endoflife.json`; release-timer writes `timer.json` and
//! `.stale.json`; signer writes
//! `.signed/`, `.keys/` and a detached `<file>.asc` next to each file it signs; site-publisher
//! writes `site` and `.site/`. Everyone may read everything.
//!
//! Every path is built from validated values only ([`messages::Stream`], [`Version`], [`Arch`],
//! [`Format`], [`UserName`], [`Ref`], [`Commit`] and [`FileName`]), none of which can hold
//! `/`, `..` or a leading `.`, so nothing from a message can escape the root or collide with
//! the hidden names (`.built`, `.locks`, `.tmp*`) the store keeps for itself.
//!
//! # Writes
//!
//! Every file is written to a temporary file in its own directory, fsynced, renamed over its
//! destination and the directory fsynced ([`write_atomic`], [`write_json`], [`ImageWriter`]),
//! so a reader never sees half a file and a retried step overwrites its own output cleanly.
//! Promotion between tiers is a symlink ([`Store::promote`]) or a tree of hard links
//! ([`link_tree`]), never a copy. Disk full and permission denied surface as
//! [`StoreError::is_retryable`] errors naming the path, with the temporary file removed.
//!
//! # Modes
//!
//! The web server runs as a user of its own, so whatever the writer's umask, every file the
//! store writes is [`FILE_MODE`] (0644) and every directory it creates is [`DIR_MODE`] (0755):
//! images (a recipe's output too, see [`move_into_place`]), logs, CHECKSUM, JSON, the site's
//! generations, release trees. The bookkeeping written through the same functions (`.built`,
//! `.compose-trees`, `.external`, `.periods`, `.threshold.json`, `timer.json`, `overrides.jsonl`) gets the
//! same modes: replicas and the operator CLI (`fortnight status`, `explain`) read it under
//! other users, and it holds nothing secret (no credential ever reaches the store). It stays
//! unserved because the web server refuses every name starting with `.`, and `timer.json` and
//! `overrides.jsonl` by name (see `deploy/kubernetes/web.conf`), not because of its mode. Lock files (`.locks`) and the bus's
//! job journal (`.jobs`) are opened in place by their one writer and keep its umask.
//!
//! # Concurrency
//!
//! [`Store::promote`] relies on `symlink(2)` being exclusive: however many replicas race,
//! exactly one creates the link. Anything wider (read several files, then decide) goes through
//! [`with_lock`] on [`Store::lock_path`], an `flock` that the kernel releases if the holder
//! dies. On NFS, Linux maps `flock` to POSIX byte-range locks, which the server arbitrates.

mod atomic;
pub mod checksum;
mod error;
mod lock;
mod names;
pub mod scratch;

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use messages::{
    Arch, Commit, ExternalTestResult, Format, ImageBuilt, Period, Ref, Stream, TestName,
    TestReport, UserName, Version, Vote,
};

pub use atomic::{
    DIR_MODE, Digested, FILE_MODE, ImageWriter, create_dir_all, hash_file, link_tree, list_dir,
    move_into_place, read_json, remove_symlink, symlink_once, symlink_replace, sync_dir,
    write_atomic, write_json,
};
pub use error::{Result, StoreError};
pub use lock::{LockGuard, lock, try_lock, with_lock};
pub use names::FileName;
pub use scratch::Scratch;

/// The promotion tiers of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Every nightly, built or not yet tested.
    All,
    /// Every configured arch passed its gating tests.
    PassedAutotest,
    /// Stable karma from human testers.
    PassedHuman,
    /// Released on a two-week tick.
    Releases,
}

impl Tier {
    pub fn dir_name(self) -> &'static str {
        match self {
            Tier::All => "all",
            Tier::PassedAutotest => "passed-autotest",
            Tier::PassedHuman => "passed-human",
            Tier::Releases => "releases",
        }
    }
}

/// Name of the symlink to the current release in `releases/`.
pub const LATEST: &str = "latest";
pub const CHECKSUM: &str = "CHECKSUM";
/// How a period record's file name spells the period's start (see [`Store::period_record_path`]).
pub const PERIOD_RECORD_FORMAT: &str = "%Y-%m-%dT%H%M%SZ";
pub const PERIOD_RECORD_SUFFIX: &str = ".json";
/// The directory under the root holding the site's generations; `site` links into it.
pub const SITE_GENERATIONS: &str = ".site";

/// Handle on the artifact tree; cheap to clone, holds no open files.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the tree at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        create_dir_all(&root)?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn stream_dir(&self, stream: &Stream) -> PathBuf {
        self.root.join(stream)
    }

    pub fn tier_dir(&self, stream: &Stream, tier: Tier) -> PathBuf {
        self.stream_dir(stream).join(tier.dir_name())
    }

    /// `<stream>/all/<version>`: a candidate across its arches.
    pub fn version_dir(&self, stream: &Stream, version: &Version) -> PathBuf {
        self.tier_dir(stream, Tier::All).join(version)
    }

    pub fn arch_dir(&self, stream: &Stream, version: &Version, arch: &Arch) -> PathBuf {
        self.version_dir(stream, version).join(arch)
    }

    pub fn images_dir(&self, stream: &Stream, version: &Version, arch: &Arch) -> PathBuf {
        self.arch_dir(stream, version, arch).join("images")
    }

    /// The file name of an image: `<stream>-<version>.<arch>.<format>`.
    pub fn image_file_name(
        stream: &Stream,
        version: &Version,
        arch: &Arch,
        format: &Format,
    ) -> FileName {
        FileName(format!("{stream}-{version}.{arch}.{format}"))
    }

    pub fn image_path(
        &self,
        stream: &Stream,
        version: &Version,
        arch: &Arch,
        format: &Format,
    ) -> PathBuf {
        self.images_dir(stream, version, arch)
            .join(Self::image_file_name(stream, version, arch, format))
    }

    pub fn checksum_path(&self, stream: &Stream, version: &Version, arch: &Arch) -> PathBuf {
        self.images_dir(stream, version, arch).join(CHECKSUM)
    }

    pub fn build_json_path(&self, stream: &Stream, version: &Version, arch: &Arch) -> PathBuf {
        self.arch_dir(stream, version, arch).join("build.json")
    }

    pub fn tests_json_path(&self, stream: &Stream, version: &Version, arch: &Arch) -> PathBuf {
        self.arch_dir(stream, version, arch).join("tests.json")
    }

    pub fn junit_path(&self, stream: &Stream, version: &Version, arch: &Arch) -> PathBuf {
        self.arch_dir(stream, version, arch).join("junit.xml")
    }

    pub fn logs_dir(&self, stream: &Stream, version: &Version, arch: &Arch) -> PathBuf {
        self.arch_dir(stream, version, arch).join("logs")
    }

    pub fn log_path(
        &self,
        stream: &Stream,
        version: &Version,
        arch: &Arch,
        name: &FileName,
    ) -> PathBuf {
        self.logs_dir(stream, version, arch).join(name)
    }

    /// `logs/build.log`: the image-builder's log for one arch (every format's recipe output).
    pub fn build_log_path(&self, stream: &Stream, version: &Version, arch: &Arch) -> PathBuf {
        self.logs_dir(stream, version, arch).join("build.log")
    }

    /// `.external/<version>/<arch>/<test>.json`: the latest result another CI system sent
    /// for one of the stream's `external_gating` tests. Outside `all/`: a result may arrive
    /// before the candidate is built (openQA tests a compose while the builder fetches its
    /// images), and must not make a version look like a candidate.
    pub fn external_result_path(
        &self,
        stream: &Stream,
        version: &Version,
        arch: &Arch,
        test: &TestName,
    ) -> PathBuf {
        self.stream_dir(stream)
            .join(".external")
            .join(version)
            .join(arch)
            .join(format!("{test}.json"))
    }

    pub fn karma_dir(&self, stream: &Stream, version: &Version) -> PathBuf {
        self.version_dir(stream, version).join("karma")
    }

    pub fn karma_path(&self, stream: &Stream, version: &Version, user: &UserName) -> PathBuf {
        self.karma_dir(stream, version).join(format!("{user}.json"))
    }

    /// `<stream>/releases/<version>`.
    pub fn release_dir(&self, stream: &Stream, version: &Version) -> PathBuf {
        self.tier_dir(stream, Tier::Releases).join(version)
    }

    /// `<stream>/releases/<version>/<arch>`: one arch's released images and CHECKSUM.
    pub fn release_arch_dir(&self, stream: &Stream, version: &Version, arch: &Arch) -> PathBuf {
        self.release_dir(stream, version).join(arch)
    }

    /// `<stream>/releases/<version>/release.json`: the release as it was published, with its
    /// release notes (`release_notes::ReleaseRecord`).
    pub fn release_record_path(&self, stream: &Stream, version: &Version) -> PathBuf {
        self.release_dir(stream, version).join("release.json")
    }

    /// The karma-tracker's record that a candidate reached a threshold, and by which vote.
    /// Its leading dot keeps it apart from the voters' files ([`UserName`] cannot start with one).
    pub fn threshold_path(&self, stream: &Stream, version: &Version) -> PathBuf {
        self.karma_dir(stream, version).join(".threshold.json")
    }

    /// The release-timer's record of the last period it fired for `stream`.
    pub fn timer_path(&self, stream: &Stream) -> PathBuf {
        self.stream_dir(stream).join("timer.json")
    }

    /// The releaser's append-only audit log of overrides for `stream`.
    pub fn overrides_log_path(&self, stream: &Stream) -> PathBuf {
        self.stream_dir(stream).join("overrides.jsonl")
    }

    /// The releaser's per-period decisions for `stream`.
    pub fn periods_dir(&self, stream: &Stream) -> PathBuf {
        self.stream_dir(stream).join(".periods")
    }

    /// The releaser's decision for one period (file names carry no ':', which some web
    /// servers and filesystems mishandle). It exists once the releaser handled the tick.
    pub fn period_record_path(&self, stream: &Stream, period: &Period) -> PathBuf {
        self.periods_dir(stream).join(format!(
            "{}{PERIOD_RECORD_SUFFIX}",
            period.start().format(PERIOD_RECORD_FORMAT)
        ))
    }

    /// The releaser's record that two-week releases moved to `stream` from the stream it
    /// succeeds (`fortnight.stream.switched`); kept in the new stream's directory.
    pub fn switch_record_path(&self, stream: &Stream) -> PathBuf {
        self.stream_dir(stream).join(".switch.json")
    }

    /// The releaser's record of the stream's end of life (the `fortnight.stream.end-of-life`
    /// body); it exists once the release refs point at their end-of-life commits.
    pub fn end_of_life_path(&self, stream: &Stream) -> PathBuf {
        self.stream_dir(stream).join(".endoflife.json")
    }

    /// The release-timer's record of the stale spells it announced for `stream`.
    pub fn stale_path(&self, stream: &Stream) -> PathBuf {
        self.stream_dir(stream).join(".stale.json")
    }

    /// The signer's record of its reply to a signing request, so that a replayed request is
    /// answered again without signing twice.
    pub fn signed_record_path(&self, stream: &Stream, request_id: &uuid::Uuid) -> PathBuf {
        self.stream_dir(stream)
            .join(".signed")
            .join(format!("{request_id}.json"))
    }

    /// The releaser's signing requests of `stream`, until the signer answers them.
    pub fn signing_requests_dir(&self, stream: &Stream) -> PathBuf {
        self.stream_dir(stream).join(".signing")
    }

    /// The releaser's signing request for a staged release, until the signer answers.
    pub fn signing_request_path(&self, stream: &Stream, version: &Version) -> PathBuf {
        self.signing_requests_dir(stream)
            .join(format!("{version}.json"))
    }

    /// A signing request once answered, with the id of the reply acted on: a redelivery of
    /// that reply announces the outcome again instead of being taken for a stale one.
    pub fn signing_answer_path(&self, stream: &Stream, request_id: &uuid::Uuid) -> PathBuf {
        self.stream_dir(stream)
            .join(".signing-answered")
            .join(format!("{request_id}.json"))
    }

    /// The armored public keys the signer signs with, one `<fingerprint>.asc` each.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join(".keys")
    }

    pub fn site_dir(&self) -> PathBuf {
        self.root.join("site")
    }

    /// Where the site-publisher renders each generation before `site` is pointed at it.
    pub fn site_generations_dir(&self) -> PathBuf {
        self.root.join(SITE_GENERATIONS)
    }

    /// A lock file for check-and-set within a stream, to pass to [`with_lock`].
    pub fn lock_path(&self, stream: &Stream, name: &FileName) -> PathBuf {
        self.stream_dir(stream)
            .join(".locks")
            .join(format!("{name}.lock"))
    }

    /// The image-builder's marker that (ref, commit) was built for `stream`.
    pub fn built_marker(&self, stream: &Stream, tree_ref: &Ref, commit: &Commit) -> PathBuf {
        // Each `/`-separated part of a Ref is a validated component, so joining keeps it inside.
        self.stream_dir(stream)
            .join(".built")
            .join(tree_ref.as_str())
            .join(format!("{commit}.json"))
    }

    /// The tree (ref and commit) that compose `compose` committed for `arch`, as its
    /// `pungi.compose.ostree` said: compose mode ties the compose's images to it.
    pub fn compose_tree_path(&self, stream: &Stream, compose: &Version, arch: &Arch) -> PathBuf {
        self.stream_dir(stream)
            .join(".compose-trees")
            .join(compose)
            .join(format!("{arch}.json"))
    }

    /// Creates `<stream>/<tier>/<version> -> ../all/<version>` unless it exists. Returns whether
    /// this call created it; exactly one of any number of concurrent callers does.
    pub fn promote(&self, stream: &Stream, version: &Version, tier: Tier) -> Result<bool> {
        if tier == Tier::All {
            return Ok(false);
        }
        let target = Path::new("..").join(Tier::All.dir_name()).join(version);
        symlink_once(&target, &self.tier_dir(stream, tier).join(version))
    }

    /// Removes `<stream>/<tier>/<version>` when a candidate no longer qualifies for the tier
    /// (a rebuilt image failed its tests). Returns whether this call removed it.
    pub fn demote(&self, stream: &Stream, version: &Version, tier: Tier) -> Result<bool> {
        if matches!(tier, Tier::All | Tier::Releases) {
            return Ok(false);
        }
        remove_symlink(&self.tier_dir(stream, tier).join(version))
    }

    /// Versions present in a tier, sorted; ignores anything that is not a valid version
    /// (temporary files, `latest`).
    pub fn list_versions(&self, stream: &Stream, tier: Tier) -> Result<Vec<Version>> {
        let mut versions = Vec::new();
        for entry in list_dir(&self.tier_dir(stream, tier))? {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name == LATEST {
                continue;
            }
            if let Ok(version) = name.parse::<Version>() {
                versions.push(version);
            }
        }
        versions.sort();
        Ok(versions)
    }

    /// When `version` entered `tier`: the time its link there was made. `None` when it is not
    /// in the tier.
    pub fn promoted_at(
        &self,
        stream: &Stream,
        version: &Version,
        tier: Tier,
    ) -> Result<Option<SystemTime>> {
        let link = self.tier_dir(stream, tier).join(version);
        match fs::symlink_metadata(&link).and_then(|m| m.modified()) {
            Ok(time) => Ok(Some(time)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read the time of", &link)(e)),
        }
    }

    /// Whether `version` is present in `tier`.
    pub fn in_tier(&self, stream: &Stream, version: &Version, tier: Tier) -> bool {
        fs::symlink_metadata(self.tier_dir(stream, tier).join(version)).is_ok()
    }

    pub fn read_build(
        &self,
        stream: &Stream,
        version: &Version,
        arch: &Arch,
    ) -> Result<Option<ImageBuilt>> {
        read_json(&self.build_json_path(stream, version, arch))
    }

    pub fn read_tests(
        &self,
        stream: &Stream,
        version: &Version,
        arch: &Arch,
    ) -> Result<Option<TestReport>> {
        read_json(&self.tests_json_path(stream, version, arch))
    }

    pub fn read_external_result(
        &self,
        stream: &Stream,
        version: &Version,
        arch: &Arch,
        test: &TestName,
    ) -> Result<Option<ExternalTestResult>> {
        read_json(&self.external_result_path(stream, version, arch, test))
    }

    /// Records a voter's latest vote (replacing their previous one).
    pub fn write_vote(&self, stream: &Stream, version: &Version, vote: &Vote) -> Result<()> {
        write_json(&self.karma_path(stream, version, &vote.user), vote)
    }

    /// Every voter's latest vote for a candidate, sorted by user.
    pub fn read_votes(&self, stream: &Stream, version: &Version) -> Result<Vec<Vote>> {
        let mut votes = Vec::new();
        for entry in list_dir(&self.karma_dir(stream, version))? {
            let path = entry.path();
            let is_vote = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && n.ends_with(".json"));
            if is_vote && let Some(vote) = read_json::<Vote>(&path)? {
                votes.push(vote);
            }
        }
        votes.sort_by(|a, b| a.user.cmp(&b.user));
        Ok(votes)
    }

    /// Points `releases/latest` at `version` in one rename.
    pub fn set_latest_release(&self, stream: &Stream, version: &Version) -> Result<()> {
        symlink_replace(
            Path::new(version.as_str()),
            &self.tier_dir(stream, Tier::Releases).join(LATEST),
        )
    }

    /// The version `releases/latest` points at, if any.
    pub fn current_release(&self, stream: &Stream) -> Result<Option<Version>> {
        let link = self.tier_dir(stream, Tier::Releases).join(LATEST);
        match fs::read_link(&link) {
            Ok(target) => Ok(target.to_str().and_then(|t| t.parse().ok())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read symlink", &link)(e)),
        }
    }

    /// `path` relative to the root with `/` separators, as messages carry it.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// The absolute path of a root-relative path taken from a message, refusing anything
    /// that could leave the root or reach the store's hidden files.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf> {
        let mut path = self.root.clone();
        let mut parts = 0;
        for component in Path::new(relative).components() {
            match component {
                Component::Normal(part) => {
                    let name: FileName = part.to_str().unwrap_or("\u{0}").parse()?;
                    path.push(name);
                    parts += 1;
                }
                _ => {
                    return Err(StoreError::FileName {
                        name: relative.chars().take(80).collect(),
                        rule: "must be a relative path of plain names (no '/', '..' or '.' prefix)",
                    });
                }
            }
        }
        if parts == 0 {
            return Err(StoreError::FileName {
                name: relative.to_owned(),
                rule: "must not be empty",
            });
        }
        Ok(path)
    }
}
