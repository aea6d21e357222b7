//! Release notes of real trees: commits made with `ostree`, RPM databases written by Debian's
//! `rpm` through the test fixture (`deploy/tests/fixtures/rpmdb-tree`), versions compared
//! against rpm's own `rpm.vercmp`.

use std::path::{Path, PathBuf};
use std::process::Command;

use messages::{Commit, FileCounts, Ref};
use ostree_cli::Repo;
use release_notes::{Packages, compare, evr::rpmvercmp, installed_packages};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/tests/fixtures/rpmdb-tree")
}

/// Commits `files` plus an RPM database of `packages` (none when empty) onto `branch`.
fn commit(repo: &Repo, dir: &Path, packages: &[&str], files: &[(&str, &str)]) -> Commit {
    let tree = dir.join(format!("tree-{}", uuid()));
    std::fs::create_dir_all(&tree).unwrap();
    if !packages.is_empty() {
        let made = Command::new(fixture())
            .arg(&tree)
            .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("rpms"))
            .args(packages)
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "rpmdb-tree failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    for (path, content) in files {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let branch: Ref = "fedora/43/x86_64/atomic-host".parse().unwrap();
    let commit = repo.commit(&branch, &tree, &[]).unwrap();
    std::fs::remove_dir_all(&tree).unwrap();
    commit
}

fn uuid() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

fn repo(dir: &Path) -> Repo {
    let repo = Repo::new(dir.join("repo"));
    repo.init_archive().unwrap();
    repo
}

#[test]
fn two_trees_differ_by_one_upgrade_one_addition_one_removal_and_a_downgrade() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let old = commit(
        &repo,
        dir.path(),
        &[
            "fortnight-base=1.0-1",
            "fortnight-tools=1.9-1",
            "fortnight-legacy=0.5-2",
            "fortnight-pinned=1:2.0-1",
        ],
        &[("usr/lib/os-release", "VERSION=1\n"), ("usr/lib/gone", "x")],
    );
    let middle = commit(&repo, dir.path(), &["fortnight-base=1.0-1"], &[]);
    let new = commit(
        &repo,
        dir.path(),
        &[
            "fortnight-base=1.0-1",
            "fortnight-tools=1.10-1",
            "fortnight-extra=0.1-1",
            "fortnight-pinned=1:1.5-1",
        ],
        &[("usr/lib/os-release", "VERSION=2\n"), ("usr/lib/new", "y")],
    );

    let changes = compare(&repo, &old, &new).unwrap();
    assert_eq!(changes.commits, Some(2), "{old} -> {middle} -> {new}");
    let Packages::Compared(diff) = &changes.packages else {
        panic!("both trees have a database: {:?}", changes.packages);
    };
    let upgraded: Vec<_> = diff
        .upgraded
        .iter()
        .map(|c| format!("{} {} -> {}", c.name, c.from, c.to))
        .collect();
    assert_eq!(upgraded, ["fortnight-tools 1.9-1 -> 1.10-1"]);
    let downgraded: Vec<_> = diff
        .downgraded
        .iter()
        .map(|c| format!("{} {} -> {}", c.name, c.from, c.to))
        .collect();
    assert_eq!(downgraded, ["fortnight-pinned 1:2.0-1 -> 1:1.5-1"]);
    let listed = |list: &[release_notes::Package]| -> Vec<String> {
        list.iter()
            .map(|p| format!("{}.{} {}", p.name, p.arch, p.evr))
            .collect()
    };
    assert_eq!(listed(&diff.added), ["fortnight-extra.noarch 0.1-1"]);
    assert_eq!(listed(&diff.removed), ["fortnight-legacy.noarch 0.5-2"]);
    assert_eq!(
        changes.files,
        FileCounts {
            added: 1,
            // os-release, and the database that changed with the packages.
            modified: 2,
            removed: 1
        }
    );
    let text = {
        let mut text = String::new();
        changes.write_text(&mut text);
        text
    };
    assert!(
        text.contains("upgraded fortnight-tools.noarch 1.9-1 -> 1.10-1"),
        "{text}"
    );
    assert!(text.contains("2 commits"), "{text}");
}

#[test]
fn a_tree_without_an_rpm_database_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let bare = commit(&repo, dir.path(), &[], &[("usr/lib/os-release", "A\n")]);
    let with_db = commit(&repo, dir.path(), &["fortnight-base=1.0-1"], &[]);
    assert_eq!(installed_packages(&repo, &bare).unwrap(), None);
    let installed = installed_packages(&repo, &with_db).unwrap().unwrap();
    assert_eq!(installed.len(), 1);
    let changes = compare(&repo, &bare, &with_db).unwrap();
    assert_eq!(
        changes.packages,
        Packages::NoRpmDatabase(vec![bare.clone()])
    );
    let mut text = String::new();
    changes.write_text(&mut text);
    assert!(
        text.contains(&format!("no RPM database in {bare}")),
        "{text}"
    );
}

#[test]
fn an_older_tree_keeps_its_database_in_usr_share_rpm() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let tree = dir.path().join("old-layout");
    let made = Command::new(fixture())
        .arg(&tree)
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("rpms"))
        .arg("fortnight-base=1.0-1")
        .status()
        .unwrap();
    assert!(made.success());
    // Fedora before the move: the database itself in usr/share/rpm, nothing in sysimage.
    std::fs::remove_file(tree.join("usr/share/rpm")).unwrap();
    std::fs::rename(
        tree.join("usr/lib/sysimage/rpm"),
        tree.join("usr/share/rpm"),
    )
    .unwrap();
    let branch: Ref = "fedora/27/x86_64/atomic-host".parse().unwrap();
    let commit = repo.commit(&branch, &tree, &[]).unwrap();
    let installed = installed_packages(&repo, &commit).unwrap().unwrap();
    assert_eq!(installed[0].name, "fortnight-base");
}

#[test]
fn version_order_agrees_with_rpm_itself() {
    let versions = [
        "1.0",
        "1.0.0",
        "1.00",
        "1.0a",
        "1.0~rc1",
        "1.0~rc2",
        "1.0^git1",
        "1.0^git1~pre",
        "1.01",
        "1.1",
        "1.10",
        "1.9",
        "2",
        "a",
        "b1",
        "1_0",
        "1.0.fc43",
        "20261201",
        "0.0001",
        "1..0",
    ];
    // One rpm process for every pair: rpm's Lua exposes rpmvercmp as rpm.vercmp (its
    // print() adds no newline, hence the commas).
    let pairs: Vec<(&str, &str)> = versions
        .iter()
        .flat_map(|a| versions.iter().map(move |b| (*a, *b)))
        .collect();
    let script: String = pairs
        .iter()
        .map(|(a, b)| format!("print(rpm.vercmp(\"{a}\", \"{b}\") .. \",\") "))
        .collect();
    let out = Command::new("rpm")
        .arg("--eval")
        .arg(format!("%{{lua: {script}}}"))
        .output()
        .expect("rpm runs");
    assert!(out.status.success());
    let answers: Vec<i32> = String::from_utf8(out.stdout)
        .unwrap()
        .split(',')
        .map(str::trim)
        .filter(|answer| !answer.is_empty())
        .map(|answer| answer.parse().unwrap())
        .collect();
    assert_eq!(answers.len(), pairs.len());
    for ((a, b), rpm_says) in pairs.iter().zip(answers) {
        assert_eq!(
            rpmvercmp(a, b),
            rpm_says.cmp(&0),
            "rpmvercmp({a:?}, {b:?}); rpm says {rpm_says}"
        );
    }
}
