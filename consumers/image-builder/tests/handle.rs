//! Messages the builder must ignore or refuse without building, driven through `handle`.

use std::path::Path;
use std::sync::Arc;

use bus::Outcome;
use image_builder::ImageBuilder;
use messages::{Message, Outgoing, PungiComposeOstree, PungiComposeStatusChange, derived_id};
use tests::config::{store_settings, toml};

const REF: &str = "fedora/43/x86_64/atomic-host";

fn builder(root: &Path) -> ImageBuilder {
    let settings = store_settings(
        root,
        REF,
        Path::new("/nonexistent"),
        toml! { compose_variant = "AtomicHost" },
    );
    ImageBuilder::new(Arc::new(settings)).unwrap()
}

async fn handle<M: Message>(builder: &ImageBuilder, body: &M) -> Outcome {
    bus::outcome(
        builder,
        &Outgoing::new(derived_id("test", &[]), body).to_incoming(),
    )
    .await
}

fn pungi(tree_ref: &str, commit: Option<&str>) -> PungiComposeOstree {
    PungiComposeOstree {
        arch: "x86_64".to_owned(),
        ostree_ref: tree_ref.to_owned(),
        commitid: commit.map(str::to_owned),
        variant: None,
        compose_id: None,
        location: None,
        repo_path: None,
        local_repo_path: None,
    }
}

#[tokio::test]
async fn null_commits_and_unknown_refs_are_ignored() {
    let root = tempfile::tempdir().unwrap();
    let builder = builder(root.path());
    assert_eq!(
        handle(&builder, &pungi(REF, None)).await,
        Outcome::Done(Vec::new())
    );
    let other = pungi("fedora/42/x86_64/atomic-host", Some(&"a".repeat(64)));
    assert_eq!(handle(&builder, &other).await, Outcome::Done(Vec::new()));
    // Nothing was written for either.
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn a_hostile_commit_on_a_built_ref_is_rejected_unrun() {
    let root = tempfile::tempdir().unwrap();
    let builder = builder(root.path());
    let out = handle(&builder, &pungi(REF, Some("$(touch /tmp/pwned); --help"))).await;
    assert!(
        matches!(&out, Outcome::Reject { reason } if reason.contains("invalid commit")),
        "{out:?}"
    );
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn unfinished_composes_are_ignored_and_odd_locations_rejected() {
    let root = tempfile::tempdir().unwrap();
    let builder = builder(root.path());
    let mut status = PungiComposeStatusChange {
        compose_id: "Fedora-43-20261127.n.0".to_owned(),
        location: "ftp://example.org/compose".to_owned(),
        status: "STARTED".to_owned(),
    };
    assert_eq!(handle(&builder, &status).await, Outcome::Done(Vec::new()));
    status.status = "FINISHED".to_owned();
    let out = handle(&builder, &status).await;
    assert!(
        matches!(&out, Outcome::Reject { reason } if reason.contains("ftp://")),
        "{out:?}"
    );
}
