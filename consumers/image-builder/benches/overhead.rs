//! What the image-builder adds on top of a recipe, per message: reading the tree's version
//! with `ostree show`, the dedup marker and lock, staging, hashing, renaming, CHECKSUM,
//! build.json and the log. Prints figures, asserts nothing. `cargo bench -p image-builder`.
//!
//! The recipe writes a 64 MiB image (the size of the shipped recipes' smallest disk). Its own
//! time is measured by running it directly through the same runner, and subtracted.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::Outcome;
use image_builder::ImageBuilder;
use messages::{Outgoing, Ref, Tree, TreeComposed, derived_id};
use ostree_cli::Repo;
use tests::config::{self, store_settings, toml};

const MESSAGES: usize = 15;
const RECIPE: &str =
    "#!/bin/sh\nhead -c 67108864 /dev/zero > \"$FORTNIGHT_OUTPUT_DIR/disk.qcow2\"\n";

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory");
    let root = dir.path();
    let recipe = root.join("recipe");
    std::fs::write(&recipe, RECIPE).unwrap();
    std::fs::set_permissions(&recipe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = Repo::new(root.join("repo"));
    repo.init_archive().expect("ostree init");
    let tree_ref: Ref = "fedora/43/x86_64/atomic-host".parse().unwrap();
    let settings = store_settings(
        &root.join("store"),
        tree_ref.as_str(),
        &root.join("repo"),
        toml! { recipes = { qcow2 = (config::path(&recipe)) } },
    );
    let builder = ImageBuilder::new(Arc::new(settings)).expect("builder");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let recipe_alone: Vec<Duration> = (0..MESSAGES)
        .map(|_| {
            let out = tempfile::tempdir_in(root).unwrap();
            let job = runner::Job::new(&recipe, Duration::from_secs(60))
                .env("FORTNIGHT_OUTPUT_DIR", out.path());
            runtime
                .block_on(runner::run(&job, &out.path().join(".log")))
                .expect("recipe runs")
                .duration
        })
        .collect();

    let per_message: Vec<Duration> = (0..MESSAGES)
        .map(|i| {
            let tree = root.join(format!("tree-{i}"));
            std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
            std::fs::write(
                tree.join("usr/lib/os-release"),
                format!("NAME=Fedora\nBUILD={i}\n"),
            )
            .unwrap();
            let version = format!("43.20261127.{i}");
            let commit = repo
                .commit(&tree_ref, &tree, &[("version", &version)])
                .expect("commit");
            let body = TreeComposed {
                arch: "x86_64".parse().unwrap(),
                tree: Tree {
                    ostree_ref: tree_ref.clone(),
                    commit,
                    repo: repo.path().display().to_string(),
                },
                version: None,
                compose_id: None,
                force: false,
            };
            let message = Outgoing::new(derived_id("bench", &[&version]), &body).to_incoming();
            let started = Instant::now();
            let outcome = runtime.block_on(bus::outcome(&builder, &message));
            let took = started.elapsed();
            assert!(
                matches!(&outcome, Outcome::Done(out) if out.len() == 1),
                "{outcome:?}"
            );
            took
        })
        .collect();

    let (alone, whole) = (median(recipe_alone), median(per_message));
    println!(
        "image-builder, median of {MESSAGES} messages with a 64 MiB image: recipe alone {:.1} ms, whole step {:.1} ms, builder overhead {:.1} ms per message",
        alone.as_secs_f64() * 1000.0,
        whole.as_secs_f64() * 1000.0,
        whole.saturating_sub(alone).as_secs_f64() * 1000.0
    );
}
