//! What release notes cost at release time: two trees whose RPM databases list about 2,000
//! packages each (made by `deploy/tests/fixtures/rpmdb-tree`, cached in the target directory),
//! 40 upgraded, 10 added and 10 removed between them, compared as the releaser compares one
//! arch (`release_notes::compare`: two partial checkouts, two `rpm -qa`, `ostree log`,
//! `ostree diff`). `cargo bench -p release-notes --bench diff [-- RUNS]`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use messages::Ref;
use ostree_cli::Repo;
use release_notes::{Packages, compare};

const PACKAGES: usize = 2000;

fn tree(root: &Path, packages: &[String]) {
    let made = Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/tests/fixtures/rpmdb-tree"),
    )
    .arg(root)
    .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-rpms"))
    .args(packages)
    .output()
    .expect("rpmdb-tree runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new(dir.path().join("repo"));
    repo.init_archive().unwrap();
    let old: Vec<String> = (0..PACKAGES)
        .map(|i| format!("fortnight-bench-{i}=1.{i}-1"))
        .collect();
    let mut new: Vec<String> = (10..PACKAGES)
        .map(|i| {
            let minor = if i < 50 { i + 1 } else { i };
            format!("fortnight-bench-{i}=1.{minor}-1")
        })
        .collect();
    new.extend((0..10).map(|i| format!("fortnight-bench-new-{i}=0.1-1")));
    let started = Instant::now();
    let branch: Ref = "fedora/43/x86_64/atomic-host".parse().unwrap();
    let mut commits = Vec::new();
    for (name, packages) in [("old", &old), ("new", &new)] {
        let root = dir.path().join(name);
        tree(&root, packages);
        commits.push(repo.commit(&branch, &root, &[]).unwrap());
    }
    println!(
        "made two trees of {PACKAGES} packages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..=runs {
        let started = Instant::now();
        let changes = compare(&repo, &commits[0], &commits[1]).unwrap();
        times.push(started.elapsed());
        let Packages::Compared(diff) = changes.packages else {
            panic!("both trees have a database")
        };
        assert_eq!(
            (diff.upgraded.len(), diff.added.len(), diff.removed.len()),
            (40, 10, 10)
        );
    }
    times.remove(0);
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "compare one arch, {PACKAGES} packages, {runs} runs: p50 {:.0} ms, max {:.0} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
}
