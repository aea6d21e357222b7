//! The image `deploy/Containerfile` describes, built with podman from the binaries of the
//! current build (`--target host`: the Rust builder image cannot be pulled where the tests
//! run), and podman run the way every test runs it.
//!
//! The Debian base image is made with debootstrap when podman does not have it yet, and kept
//! between runs; the image a test builds is its own, removed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::process::{assert_success, run_ok};

/// Both limits must be explicit: podman's defaults are above the hard limits of machines like
/// CI's (20000 open files), which the runtime may not raise. A consumer needs far fewer.
pub const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
];

/// podman with the OCI runtime every call uses: crun fails on hybrid cgroup hierarchies.
pub fn podman() -> Command {
    let mut command = Command::new("podman");
    command.args(["--runtime", "runc"]);
    command
}

/// `podman run` on the host's network, so a container reaches a broker on 127.0.0.1 and its
/// health port is reachable from the test; `options` go before the image.
pub fn podman_run(options: &[&str], image: &str) -> Command {
    let mut command = podman();
    command
        .args(["run", "--network=host"])
        .args(ULIMITS)
        .args(options)
        .arg(image);
    command
}

/// Whether podman is installed here.
pub fn available() -> bool {
    succeeds(Command::new("podman").arg("--version"))
}

/// Whether `command` runs and exits 0; its output is discarded.
pub fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// What the tests read out of `deploy/Containerfile`.
#[derive(Debug, Clone)]
pub struct Containerfile {
    pub text: String,
}

impl Containerfile {
    pub fn path() -> PathBuf {
        workspace().join("deploy/Containerfile")
    }

    pub fn read() -> Self {
        let text = std::fs::read_to_string(Self::path()).expect("deploy/Containerfile");
        Self { text }
    }

    /// The value on the one line that starts with `prefix`.
    pub fn line(&self, prefix: &str) -> &str {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("the Containerfile has no line starting {prefix:?}"))
            .trim()
    }

    /// Every program the image ships (`ARG PROGRAMS`).
    pub fn programs(&self) -> Vec<String> {
        self.line("ARG PROGRAMS=")
            .trim_matches('"')
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// The numeric uid the image runs as (`USER`).
    pub fn user(&self) -> u32 {
        let user = self.line("USER ");
        user.parse()
            .unwrap_or_else(|_| panic!("the Containerfile's USER {user:?} is not numeric"))
    }

    /// Where the image declares the store's volume (`VOLUME`).
    pub fn volume(&self) -> PathBuf {
        PathBuf::from(self.line("VOLUME ").trim_matches(['[', ']', '"']))
    }

    /// The base image of the runtime stage.
    pub fn runtime_base(&self) -> &str {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("FROM "))
            .find_map(|l| l.strip_suffix(" AS runtime"))
            .expect("the Containerfile has a runtime stage")
    }
}

/// Makes `image` (a Debian `<suite>-slim` name) with debootstrap unless podman has it.
pub fn ensure_base_image(image: &str) {
    if succeeds(podman().args(["image", "exists", image])) {
        return;
    }
    let suite = image
        .rsplit(':')
        .next()
        .and_then(|tag| tag.split('-').next())
        .unwrap_or_else(|| panic!("cannot tell the Debian suite of the base image {image}"));
    let root = tempfile::tempdir().expect("a directory for the base image's root");
    run_ok(
        Command::new("debootstrap")
            .args(["--variant=minbase", suite])
            .arg(root.path()),
        &format!("debootstrap {suite} (install debootstrap to make the base image {image})"),
    );
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tar runs");
    let imported = podman()
        .args(["import", "-", image])
        .stdin(tar.stdout.take().expect("tar's output"))
        .output()
        .expect("podman import runs");
    assert!(
        tar.wait().expect("tar finishes").success(),
        "tar of {root:?} failed"
    );
    assert_success(&imported, &format!("podman import of {image}"));
}

/// The image built from the Containerfile's `host` target and the current build's binaries
/// (debug ones under `cargo test`: a release build would double the build time). Removed
/// when dropped.
#[derive(Debug)]
pub struct Image {
    pub tag: String,
}

impl Image {
    /// Builds every program the image ships, then the image, tagged `tag`.
    pub fn build(tag: &str) -> Self {
        let containerfile = Containerfile::read();
        ensure_base_image(containerfile.runtime_base());
        let programs = containerfile.programs();
        let binaries = crate::process::built_binaries(
            &programs.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let context = workspace();
        let host_binaries = binaries.strip_prefix(&context).unwrap_or_else(|_| {
            panic!(
                "the binaries in {} are outside the build context {}: unset CARGO_TARGET_DIR",
                binaries.display(),
                context.display()
            )
        });
        // Made before the build, so that a failed build is cleaned up too; without
        // intermediate layers, removing the image removes all the build made.
        let image = Self {
            tag: tag.to_owned(),
        };
        run_ok(
            podman()
                .args([
                    "build",
                    "--network=host",
                    "--layers=false",
                    "--target",
                    "host",
                ])
                .arg("--file")
                .arg(Containerfile::path())
                .arg("--build-arg")
                .arg(format!("HOST_BINARIES={}", host_binaries.display()))
                .args(["--tag", tag])
                .arg(&context),
            "podman build --target host",
        );
        image
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman().args(["rmi", "--force", &self.tag]).output();
    }
}
