//! What the demo needs before it starts: the programs its recipe and tests run, the shipped
//! recipes and boot test, and a directory of its own.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Marks a directory as made by the demo, so a second run may replace its contents.
const MARKER: &str = ".fortnight-demo";

/// The programs the demo's recipe and tests run, with the Debian package that has each.
const TOOLS: &[(&str, &str)] = &[
    ("ostree", "ostree"),
    ("mke2fs", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("qemu-img", "qemu-utils"),
    ("gpg", "gnupg"),
    // The trees' RPM databases (`deploy/tests/fixtures/rpmdb-tree`) and their release notes.
    ("rpmbuild", "rpm"),
    ("rpm", "rpm"),
];
/// What `--boot` needs too: the fixture builds an initramfs from busybox with cpio for the
/// installed kernel, which it finds itself (and names the package when it is missing).
/// `qemu-system-x86_64` is not listed: on Debian 12 its package would replace a newer
/// qemu-utils; the boot test says where to get one (README).
const BOOT_TOOLS: &[(&str, &str)] = &[("busybox", "busybox-static"), ("cpio", "cpio")];

/// Fails up front, naming what to install, rather than minutes later in a build log.
pub(super) fn require_tools(boot: bool) -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let boot_tools = if boot { BOOT_TOOLS } else { &[] };
    let missing: Vec<&(&str, &str)> = TOOLS
        .iter()
        .chain(boot_tools)
        .filter(|(tool, _)| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<&str> = missing.iter().map(|(tool, _)| *tool).collect();
    let mut packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
    packages.dedup();
    bail!(
        "the demo needs {} on PATH; install with `apt-get install {}` (or run .ci/run, which installs them)",
        tools.join(", "),
        packages.join(" ")
    )
}

/// Creates (or reclaims) the demo directory; refuses a non-empty directory the demo did not make.
pub(super) fn prepare_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut entries = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?;
            if dir.join(MARKER).exists() {
                // ostree made the client's deployments immutable; nothing else deletes them.
                let client = dir.join(super::client::DIR);
                ostree_cli::Sysroot::unlock(&client).with_context(|| {
                    format!("cannot unlock the previous demo's {}", client.display())
                })?;
                for entry in std::fs::read_dir(&dir)? {
                    let path = entry?.path();
                    let removed = if path.is_dir() && !path.is_symlink() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.with_context(|| {
                        format!("cannot remove the previous demo's {}", path.display())
                    })?;
                }
            } else if entries.next().is_some() {
                bail!(
                    "{} is not empty and was not made by `fortnight demo`; pass an empty or new directory",
                    dir.display()
                );
            }
            dir
        }
        None => tempfile::Builder::new()
            .prefix("fortnight-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?
            .keep(),
    };
    std::fs::write(
        dir.join(MARKER),
        "made by fortnight demo; a new run replaces everything here\n",
    )?;
    // Absolute, so the config and the links on the page work from anywhere.
    std::fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

/// The recipes shipped with Fortnight: installed with the container image, or in this
/// source tree when run with `cargo run`.
pub(super) fn recipes_dir() -> anyhow::Result<PathBuf> {
    let candidates = [
        std::env::var_os("FORTNIGHT_RECIPES").map(PathBuf::from),
        Some(PathBuf::from("/usr/share/fortnight/recipes")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/recipes")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("qcow2").is_file())
        .and_then(|dir| std::fs::canonicalize(dir).ok())
        .context(
            "cannot find the image recipes; set FORTNIGHT_RECIPES to the deploy/recipes directory",
        )
}

/// The shipped test suite's directory, beside the recipes (`deploy/tests`).
pub(super) fn shipped_tests(recipes: &Path) -> anyhow::Result<PathBuf> {
    let tests = recipes.with_file_name("tests");
    if tests.join("bin/boot").is_file() {
        Ok(tests)
    } else {
        bail!(
            "cannot find the shipped boot test at {}; set FORTNIGHT_RECIPES to a deploy/recipes directory that has deploy/tests beside it",
            tests.join("bin/boot").display()
        )
    }
}
