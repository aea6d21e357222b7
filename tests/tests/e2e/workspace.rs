//! The invariants of ARCHITECTURE.md that the manifests can show, checked on every member of
//! the workspace: a new crate that breaks one fails here, not in review.

use std::path::{Path, PathBuf};

use toml::Table;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Every member's directory and parsed `Cargo.toml`.
fn members() -> Vec<(PathBuf, Table)> {
    let root = repo();
    let mut dirs = vec![root.join("tests")];
    for group in ["crates", "consumers"] {
        for entry in std::fs::read_dir(root.join(group)).expect("a member group") {
            dirs.push(entry.expect("a member").path());
        }
    }
    dirs.into_iter()
        .map(|dir| {
            let text = std::fs::read_to_string(dir.join("Cargo.toml"))
                .unwrap_or_else(|e| panic!("{}/Cargo.toml: {e}", dir.display()));
            let manifest: Table = text
                .parse()
                .unwrap_or_else(|e| panic!("{}/Cargo.toml: {e}", dir.display()));
            (dir, manifest)
        })
        .collect()
}

fn depends_on(manifest: &Table, krate: &str) -> bool {
    ["dependencies", "dev-dependencies", "build-dependencies"]
        .iter()
        .filter_map(|section| manifest.get(*section).and_then(|s| s.as_table()))
        .any(|deps| deps.contains_key(krate))
}

fn name_of(dir: &Path) -> String {
    dir.file_name()
        .expect("a directory name")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn each_directory_is_named_after_its_crate_and_takes_the_workspace_lints() {
    for (dir, manifest) in members() {
        let package = manifest["package"].as_table().expect("[package]");
        assert_eq!(
            package["name"].as_str(),
            Some(name_of(&dir).as_str()),
            "{}: directory name = crate name",
            dir.display()
        );
        assert_eq!(
            manifest
                .get("lints")
                .and_then(|l| l.get("workspace"))
                .and_then(|w| w.as_bool()),
            Some(true),
            "{}: [lints] workspace = true",
            dir.display()
        );
    }
}

#[test]
fn only_the_bus_uses_lapin_and_only_the_cli_uses_anyhow() {
    let members = members();
    let users = |krate: &str| -> Vec<String> {
        members
            .iter()
            .filter(|(_, manifest)| depends_on(manifest, krate))
            .map(|(dir, _)| name_of(dir))
            .collect()
    };
    assert_eq!(users("lapin"), ["bus"], "only crates/bus talks AMQP");
    assert_eq!(
        users("anyhow"),
        ["fortnight"],
        "libraries return thiserror enums; anyhow is for the binary edge"
    );
}

#[test]
fn no_consumer_depends_on_another_but_on_the_timers_schedule() {
    let members = members();
    let consumers: Vec<String> = members
        .iter()
        .filter(|(dir, _)| {
            dir.parent()
                .is_some_and(|group| group.ends_with("consumers"))
        })
        .map(|(dir, _)| name_of(dir))
        .collect();
    let mut found = Vec::new();
    for (dir, manifest) in &members {
        let name = name_of(dir);
        if !consumers.contains(&name) {
            continue;
        }
        for other in consumers.iter().filter(|other| **other != name) {
            if depends_on(manifest, other) {
                found.push((name.clone(), other.clone()));
            }
        }
    }
    assert_eq!(
        found,
        [
            ("releaser".to_owned(), "release-timer".to_owned()),
            ("site-publisher".to_owned(), "release-timer".to_owned()),
        ],
        "shared state (the gates) lives in crates/gate, not in another consumer; only the \
         release timer's schedule is shared"
    );
}
