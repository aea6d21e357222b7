//! The image tester's decisions through its typed input, without a broker.

use std::path::Path;
use std::sync::Arc;

use messages::{Format, ImageBuilt};
use serde_json::json;
use tests::config::{Table, toml};
use tests::step::{published, refused, retried};

use super::*;

fn tester(root: &Path, stream_keys: Table) -> ImageTester {
    let settings =
        tests::config::store_settings(root, "fedora/43/x86_64/atomic-host", root, stream_keys);
    ImageTester::new(Arc::new(settings)).expect("the store opens")
}

/// A built qcow2 at `path`, and the image where the store keeps it.
fn built(root: &Path, path: Option<&str>) -> ImageBuilt {
    let store = Store::open(root).unwrap();
    let (stream, version, arch) = (
        "f43".parse().unwrap(),
        "43.1".parse().unwrap(),
        "x86_64".parse().unwrap(),
    );
    let format: Format = "qcow2".parse().unwrap();
    let image = store.image_path(&stream, &version, &arch, &format);
    store::write_atomic(&image, b"an image").unwrap();
    serde_json::from_value(json!({
        "stream": "f43", "version": "43.1", "arch": "x86_64",
        "tree": {"ref": "fedora/43/x86_64/atomic-host", "commit": "a".repeat(64), "repo": "/r"},
        "images": [{
            "format": "qcow2", "path": path.map_or_else(|| store.relative(&image), str::to_owned),
            "size": 8, "sha256": "b".repeat(64),
        }],
        "build_log": "f43/all/43.1/x86_64/logs/build.log",
    }))
    .expect("a valid body")
}

fn in_passed_autotest(root: &Path) -> bool {
    let store = Store::open(root).unwrap();
    store.in_tier(
        &"f43".parse().unwrap(),
        &"43.1".parse().unwrap(),
        Tier::PassedAutotest,
    )
}

#[tokio::test]
async fn images_that_pass_are_reported_and_linked_and_a_replay_repeats_the_report() {
    let root = tempfile::tempdir().unwrap();
    let step = tester(root.path(), Table::new());
    let message = tests::step::incoming(&built(root.path(), None), None);
    let passed = published(bus::outcome(&step, &message).await);
    assert_eq!(passed.len(), 1);
    assert_eq!(passed[0].topic, "fortnight.image.tests.passed");
    assert!(in_passed_autotest(root.path()));
    let again = published(bus::outcome(&step, &message).await);
    assert_eq!(again[0].id, passed[0].id, "tested once, reported again");
}

#[tokio::test]
async fn an_image_outside_its_slot_is_refused_and_nothing_is_tested() {
    let root = tempfile::tempdir().unwrap();
    let step = tester(root.path(), Table::new());
    let message = tests::step::incoming(&built(root.path(), Some("../../etc/passwd")), None);
    let reason = refused(bus::outcome(&step, &message).await);
    assert!(reason.contains("../../etc/passwd"), "{reason}");
    let store = Store::open(root.path()).unwrap();
    let report = store
        .read_tests(
            &"f43".parse().unwrap(),
            &"43.1".parse().unwrap(),
            &"x86_64".parse().unwrap(),
        )
        .unwrap();
    assert_eq!(report, None, "no report written");
}

#[tokio::test]
async fn a_suite_that_cannot_be_read_is_retried_for_an_operator_to_fix() {
    let root = tempfile::tempdir().unwrap();
    let step = tester(
        root.path(),
        toml! { test_suite = "/nonexistent/suite.toml" },
    );
    let message = tests::step::incoming(&built(root.path(), None), None);
    let reason = retried(bus::outcome(&step, &message).await);
    assert!(reason.contains("/nonexistent/suite.toml"), "{reason}");
    assert!(!in_passed_autotest(root.path()));
}
