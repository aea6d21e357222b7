//! The demo's nightlies: an archive OSTree repository with one commit per version and arch.

use std::path::Path;

use anyhow::{Context, bail};
use messages::{Arch, Ref, Tree, Version};
use ostree_cli::Repo;

use super::{ARCHES, Progress, tools};

/// The nightlies: version, and the arch whose tree ships without `/usr/lib/os-release` (so
/// its image fails the suite's `os-release` test).
pub(super) const NIGHTLIES: [(&str, Option<&str>); 3] = [
    ("43.20261124.0", None),
    ("43.20261125.0", None),
    ("43.20261126.0", Some("aarch64")),
];

/// One nightly tree of one arch, as committed.
#[derive(Debug, Clone)]
pub(super) struct Nightly {
    pub(super) version: Version,
    pub(super) arch: Arch,
    pub(super) tree: Tree,
}

/// Commits the nightlies into a new archive repository; with `boot`, the x86_64 trees carry
/// a kernel, an initramfs and a self-test (`deploy/tests/fixtures/bootable-tree`).
pub(super) fn make_repo(
    dir: &Path,
    boot: bool,
    progress: &Progress,
) -> anyhow::Result<Vec<Nightly>> {
    let bootable_tree = if boot {
        Some(tools::shipped_tests(&tools::recipes_dir()?)?.join("fixtures/bootable-tree"))
    } else {
        None
    };
    let repo_path = dir.join("repo");
    let repo = Repo::new(&repo_path);
    repo.init_archive()
        .context("cannot create the demo's OSTree repository")?;
    let scratch = tempfile::tempdir_in(dir).context("cannot create a scratch directory")?;
    let mut nightlies = Vec::new();
    for (version, broken_arch) in NIGHTLIES {
        for arch in ARCHES {
            let root = scratch.path().join(format!("{version}-{arch}"));
            if let Some(fixture) = bootable_tree.as_deref().filter(|_| arch == "x86_64") {
                let made = std::process::Command::new(fixture)
                    .arg(&root)
                    .output()
                    .with_context(|| format!("cannot run {}", fixture.display()))?;
                if !made.status.success() {
                    bail!(
                        "cannot make a bootable tree for {version} on {arch}: {}",
                        String::from_utf8_lossy(&made.stderr).trim()
                    );
                }
            }
            std::fs::create_dir_all(root.join("usr/lib"))?;
            std::fs::create_dir_all(root.join("usr/share/fortnight-demo"))?;
            std::fs::write(
                root.join("usr/share/fortnight-demo/README"),
                format!("nightly {version} for {arch}\n"),
            )?;
            if broken_arch != Some(arch) {
                std::fs::write(
                    root.join("usr/lib/os-release"),
                    format!("NAME=\"Fedora Atomic Host\"\nVERSION_ID=43\nVERSION=\"{version}\"\n"),
                )?;
            }
            let input: Ref = format!("fedora/43/{arch}/updates/atomic-host").parse()?;
            let commit = repo
                .commit(&input, &root, &[("version", version)])
                .with_context(|| format!("cannot commit nightly {version} for {arch}"))?;
            nightlies.push(Nightly {
                version: version.parse()?,
                arch: arch.parse()?,
                tree: Tree {
                    ostree_ref: input,
                    commit,
                    repo: repo_path.to_string_lossy().into_owned(),
                },
            });
        }
    }
    progress.say(&format!(
        "made an OSTree repo with {} nightlies for {}: {}",
        NIGHTLIES.len(),
        ARCHES.join(" and "),
        repo_path.display()
    ));
    Ok(nightlies)
}
