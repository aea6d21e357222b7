//! The image builder's decisions through its typed input, without a broker (and without a
//! recipe run: the stream here has none, so every build fails the same way).

use std::path::Path;
use std::sync::Arc;

use messages::{
    ImageBuildFailed, Message, PungiComposeOstree, PungiComposeStatusChange, TreeComposed,
};
use serde_json::json;
use tests::step::{incoming, published, refused};

use super::*;

const REF: &str = "fedora/43/x86_64/atomic-host";

fn builder(root: &Path) -> ImageBuilder {
    let settings = tests::config::store_settings(root, REF, root, tests::config::Table::new());
    ImageBuilder::new(Arc::new(settings)).expect("the store opens")
}

fn tree(force: bool) -> TreeComposed {
    serde_json::from_value(json!({
        "arch": "x86_64",
        "tree": {"ref": REF, "commit": "c".repeat(64), "repo": "/r"},
        "version": "43.1",
        "force": force,
    }))
    .expect("a valid body")
}

fn pungi(tree_ref: &str, commit: Option<&str>) -> PungiComposeOstree {
    serde_json::from_value(json!({"arch": "x86_64", "ref": tree_ref, "commitid": commit}))
        .expect("a valid body")
}

#[tokio::test]
async fn a_failed_build_is_announced_once_and_only_force_builds_it_again() {
    let root = tempfile::tempdir().unwrap();
    let step = builder(root.path());
    let first = published(bus::outcome(&step, &incoming(&tree(false), None)).await);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].topic, ImageBuildFailed::TOPIC);
    let failed: ImageBuildFailed =
        serde_json::from_value(serde_json::Value::Object(first[0].body.clone())).unwrap();
    assert!(
        failed.reason.contains("has no recipe for format qcow2"),
        "{}",
        failed.reason
    );
    assert!(
        failed
            .build_log
            .is_some_and(|log| root.path().join(log).is_file()),
        "the failure points at its kept build log"
    );

    let again = published(bus::outcome(&step, &incoming(&tree(false), None)).await);
    assert_eq!(again[0].id, first[0].id, "the marker answers a repeat");
    let forced = published(bus::outcome(&step, &incoming(&tree(true), None)).await);
    assert_ne!(forced[0].id, first[0].id, "a forced build is a new result");
}

#[tokio::test]
async fn trees_and_composes_no_stream_takes_are_ignored() {
    let root = tempfile::tempdir().unwrap();
    let step = builder(root.path());
    for message in [
        incoming(&pungi(REF, None), None),
        incoming(
            &pungi("fedora/99/x86_64/atomic-host", Some(&"c".repeat(64))),
            None,
        ),
    ] {
        assert_eq!(published(bus::outcome(&step, &message).await), Vec::new());
    }
    let unfinished: PungiComposeStatusChange = serde_json::from_value(
        json!({"compose_id": "Fedora-43-20261127.0", "location": "/c", "status": "STARTED"}),
    )
    .unwrap();
    let outcome = bus::outcome(&step, &incoming(&unfinished, None)).await;
    assert_eq!(published(outcome), Vec::new());
}

#[tokio::test]
async fn a_commit_that_is_no_commit_id_is_refused_before_anything_is_built() {
    let root = tempfile::tempdir().unwrap();
    let step = builder(root.path());
    let reason =
        refused(bus::outcome(&step, &incoming(&pungi(REF, Some("$(reboot)")), None)).await);
    assert!(reason.contains("$(reboot)"), "{reason}");
    let mut hostile = incoming(&tree(false), None);
    hostile.body["tree"]["commit"] = "../../etc".into();
    let reason = refused(bus::outcome(&step, &hostile).await);
    assert!(
        reason.contains("fortnight.tree.composed"),
        "refused by the parse: {reason}"
    );
    let store = Store::open(root.path()).unwrap();
    assert_eq!(
        store
            .list_versions(&"f43".parse().unwrap(), store::Tier::All)
            .unwrap(),
        Vec::<Version>::new(),
        "nothing was staged"
    );
}
