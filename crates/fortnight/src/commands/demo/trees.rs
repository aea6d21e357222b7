//! The demo's nightlies: an archive OSTree repository with one commit per version and arch,
//! each tree with an RPM database (`deploy/tests/fixtures/rpmdb-tree`) so that releases carry
//! release notes, and the x86_64 trees with this machine's kernel when it has one, so that a
//! client can deploy them.

use std::path::Path;

use anyhow::{Context, bail};
use messages::{Arch, Ref, Tree, Version};
use ostree_cli::Repo;

use super::{ARCHES, PREVIOUS, Progress, tools};

/// One nightly as the demo makes it.
pub(super) struct Planned {
    pub(super) version: &'static str,
    /// The arch whose tree ships without `/usr/lib/os-release` (so its image fails the
    /// suite's `os-release` test).
    pub(super) broken_arch: Option<&'static str>,
    /// What its RPM database lists, as the fixture takes them (`NAME=[EPOCH:]VERSION-RELEASE`).
    pub(super) packages: &'static [&'static str],
}

/// What the previous release shipped: against it, the voted candidate upgrades one package,
/// adds one and removes one (the demo test asserts exactly that set).
const OLD_PACKAGES: &[&str] = &[
    "fortnight-base=1.0-1",
    "fortnight-tools=1.0-1",
    "fortnight-legacy=0.9-1",
];
const NEW_PACKAGES: &[&str] = &[
    "fortnight-base=1.0-1",
    "fortnight-tools=1.1-1",
    "fortnight-extra=0.1-1",
];

/// The nightlies, oldest first: the one the stream released two weeks earlier, then this
/// period's three.
pub(super) const NIGHTLIES: [Planned; 4] = [
    Planned {
        version: PREVIOUS,
        broken_arch: None,
        packages: OLD_PACKAGES,
    },
    Planned {
        version: "43.20261124.0",
        broken_arch: None,
        packages: OLD_PACKAGES,
    },
    Planned {
        version: "43.20261125.0",
        broken_arch: None,
        packages: NEW_PACKAGES,
    },
    Planned {
        version: "43.20261126.0",
        broken_arch: Some("aarch64"),
        packages: NEW_PACKAGES,
    },
];

/// One nightly tree of one arch, as committed.
#[derive(Debug, Clone)]
pub(super) struct Nightly {
    pub(super) version: Version,
    pub(super) arch: Arch,
    pub(super) tree: Tree,
}

/// Runs a tree fixture (a script of `deploy/tests/fixtures`) on `root`; the fixtures take no
/// shell, only arguments.
fn run_fixture(fixture: &Path, root: &Path, args: &[&str], what: &str) -> anyhow::Result<()> {
    let made = std::process::Command::new(fixture)
        .arg(root)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", fixture.display()))?;
    if !made.status.success() {
        bail!(
            "cannot make {what} ({}): {}",
            fixture.display(),
            String::from_utf8_lossy(&made.stderr).trim()
        );
    }
    Ok(())
}

/// Whether the x86_64 trees carry a kernel, an initramfs and a self-test
/// (`deploy/tests/fixtures/bootable-tree`): what the boot test boots and the client deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// `--boot`: a demo that cannot make them fails.
    Required,
    /// For the client: without what the fixture needs, the trees go without.
    IfAvailable,
    Without,
}

/// The demo's repository as made.
pub(super) struct Made {
    pub(super) nightlies: Vec<Nightly>,
    /// Why the x86_64 trees carry no kernel, when they do not.
    pub(super) no_kernel: Option<String>,
}

/// Commits the nightlies into a new archive repository, every tree with its RPM database and
/// the x86_64 ones with a kernel as `kernel` says.
pub(super) fn make_repo(dir: &Path, kernel: Kernel, progress: &Progress) -> anyhow::Result<Made> {
    let fixtures = tools::shipped_tests(&tools::recipes_dir()?)?.join("fixtures");
    let bootable_tree = fixtures.join("bootable-tree");
    let rpmdb_tree = fixtures.join("rpmdb-tree");
    let repo_path = dir.join("repo");
    let repo = Repo::new(&repo_path);
    repo.init_archive()
        .context("cannot create the demo's OSTree repository")?;
    let scratch = tempfile::tempdir_in(dir).context("cannot create a scratch directory")?;
    let mut nightlies = Vec::new();
    // The kernel, initramfs and userspace are the same in every x86_64 tree: committed once,
    // and each x86_64 nightly laid over them, so that its commit does not checksum them again.
    let (bootable, no_kernel) = match kernel {
        Kernel::Without => (None, Some("not asked for".to_owned())),
        Kernel::Required | Kernel::IfAvailable => {
            let root = scratch.path().join("bootable");
            match run_fixture(&bootable_tree, &root, &[], "a bootable tree for x86_64") {
                Ok(()) => {
                    let base = repo
                        .commit_orphan(&root)
                        .context("cannot commit the x86_64 trees' kernel")?;
                    (Some(base), None)
                }
                Err(error) if kernel == Kernel::IfAvailable => (None, Some(format!("{error:#}"))),
                Err(error) => return Err(error),
            }
        }
    };
    for Planned {
        version,
        broken_arch,
        packages,
    } in NIGHTLIES
    {
        for arch in ARCHES {
            let root = scratch.path().join(format!("{version}-{arch}"));
            // An empty cache argument is the fixture's default, `~/.cache/fortnight/rpms`:
            // the packages are built once and every later demo reuses them.
            let fixture_args: Vec<&str> = std::iter::once("")
                .chain(packages.iter().copied())
                .collect();
            run_fixture(
                &rpmdb_tree,
                &root,
                &fixture_args,
                &format!("the RPM database of {version} on {arch}"),
            )?;
            std::fs::create_dir_all(root.join("usr/lib"))?;
            std::fs::create_dir_all(root.join("usr/share/fortnight-demo"))?;
            std::fs::write(
                root.join("usr/share/fortnight-demo/README"),
                format!("nightly {version} for {arch}\n"),
            )?;
            if broken_arch != Some(arch) {
                std::fs::write(
                    root.join("usr/lib/os-release"),
                    format!(
                        "NAME=\"Fedora Atomic Host\"\nID=fedora\nVERSION_ID=43\nVERSION=\"{version}\"\n"
                    ),
                )?;
            }
            let input: Ref = format!("fedora/43/{arch}/updates/atomic-host").parse()?;
            let metadata = [("version", version)];
            let commit = match bootable.as_ref().filter(|_| arch == "x86_64") {
                Some(base) => repo.commit_over(&input, base, &root, &metadata),
                None => repo.commit(&input, &root, &metadata),
            }
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
    let kernels = if no_kernel.is_none() {
        ", x86_64 with a kernel"
    } else {
        ""
    };
    progress.say(&format!(
        "made an OSTree repo with {} nightlies (with RPM databases{kernels}) for {}: {}",
        NIGHTLIES.len(),
        ARCHES.join(" and "),
        repo_path.display()
    ));
    Ok(Made {
        nightlies,
        no_kernel,
    })
}
