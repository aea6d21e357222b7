//! Messages the tester must refuse without running anything, driven through `handle`.

use std::path::Path;
use std::sync::Arc;

use bus::Outcome;
use image_tester::ImageTester;
use messages::{ImageBuilt, Outgoing, derived_id};
use tests::config::{Table, store_settings};

fn tester(root: &Path) -> ImageTester {
    let settings = store_settings(
        root,
        "fedora/43/x86_64/atomic-host",
        Path::new("/nonexistent"),
        Table::new(),
    );
    ImageTester::new(Arc::new(settings)).unwrap()
}

fn built(path: &str) -> serde_json::Value {
    serde_json::json!({
        "stream": "f43", "version": "43.1", "arch": "x86_64",
        "tree": { "ref": "fedora/43/x86_64/atomic-host", "commit": "a".repeat(64), "repo": "/r" },
        "images": [ { "format": "qcow2", "path": path, "size": 1, "sha256": "b".repeat(64) } ],
        "build_log": "f43/all/43.1/x86_64/logs/build.log",
    })
}

/// A valid message whose body is then replaced by `body`, as a broker would deliver it.
async fn outcome(tester: &ImageTester, body: serde_json::Value) -> Outcome {
    let serde_json::Value::Object(body) = body else {
        unreachable!("test bodies are objects")
    };
    let valid: ImageBuilt = serde_json::from_value(built("x")).unwrap();
    let mut message = Outgoing::new(derived_id("test", &[]), &valid).to_incoming();
    message.body = body;
    bus::outcome(tester, &message).await
}

fn rejected(outcome: &Outcome, needle: &str) -> bool {
    matches!(outcome, Outcome::Reject { reason } if reason.contains(needle))
}

#[tokio::test]
async fn paths_outside_the_image_slot_are_rejected() {
    let root = tempfile::tempdir().unwrap();
    let tester = tester(root.path());
    for path in [
        "../../etc/passwd",
        "/etc/passwd",
        "f43/all/43.1/x86_64/build.json",
        "f43/.built/x",
        "$(reboot)",
    ] {
        let out = outcome(&tester, built(path)).await;
        assert!(matches!(out, Outcome::Reject { .. }), "{path}: {out:?}");
    }
    let missing = outcome(
        &tester,
        built("f43/all/43.1/x86_64/images/f43-43.1.x86_64.qcow2"),
    )
    .await;
    assert!(rejected(&missing, "does not exist"), "{missing:?}");
}

#[tokio::test]
async fn unknown_streams_arches_and_schema_violations_are_rejected_with_the_reason() {
    let root = tempfile::tempdir().unwrap();
    let tester = tester(root.path());
    let mut unknown = built("x");
    unknown["stream"] = "f99".into();
    assert!(rejected(
        &outcome(&tester, unknown).await,
        "unknown stream f99: not in the configuration, which has f43"
    ));
    let mut arch = built("x");
    arch["arch"] = "s390x".into();
    assert!(rejected(
        &outcome(&tester, arch).await,
        "does not build arch `s390x`"
    ));
    let mut hostile = built("x");
    hostile["version"] = "43;rm -rf /".into();
    assert!(rejected(
        &outcome(&tester, hostile).await,
        "invalid version"
    ));
    let mut missing = built("x");
    missing.as_object_mut().unwrap().remove("tree");
    assert!(rejected(&outcome(&tester, missing).await, "tree"));
}
