//! The signer's decisions through its typed input, without a broker (and without gpg: every
//! request here is refused before anything is signed).

use std::path::Path;
use std::sync::Arc;

use messages::{SignFinished, SignRequested, SignStatus, TwoweekTimerFired};
use serde_json::json;
use tests::config::{Table, toml};
use tests::step::{incoming, published, refused};

use super::*;

/// The stream's `[signing]`: a key for major version 43, in a GnuPG home never reached.
fn signed_stream() -> Table {
    toml! {
        [signing]
        gnupg_home = "/nonexistent"
        keys = { "43" = "F947C79A0123456789ABCDEF0123456789ABCDEF" }
    }
}

fn signer(root: &Path, stream_keys: Table) -> Signer {
    let config =
        tests::config::store_config(root, "fedora/43/x86_64/atomic-host", root, stream_keys);
    let settings = settings::Settings::from_toml(&tests::config::to_toml(&config))
        .expect("a valid configuration");
    Signer::new(Arc::new(settings)).expect("the store opens")
}

/// A new request (its own request id: the signer answers a request id once).
fn request(version: &str, file: &str, checksum: &str) -> SignRequested {
    serde_json::from_value(json!({
        "request_id": uuid::Uuid::new_v4(),
        "stream": "f43", "version": version, "build_id": format!("f43-{version}"),
        "artifacts": [{"file": file, "checksum": checksum}],
        "commits": [],
    }))
    .expect("a valid request")
}

/// The one reply the signer published, as its body.
fn reply(outcome: bus::Outcome) -> (uuid::Uuid, SignFinished) {
    let mut out = published(outcome);
    assert_eq!(out.len(), 1, "{out:?}");
    let out = out.remove(0);
    assert_eq!(out.topic, SignFinished::TOPIC);
    let body = serde_json::from_value(serde_json::Value::Object(out.body)).expect("a reply");
    (out.id, body)
}

#[tokio::test]
async fn a_stream_without_signing_is_answered_failure_and_the_answer_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let step = signer(root.path(), Table::new());
    let message = incoming(&request("43.1", "f43/CHECKSUM", "sha256:00"), None);
    let (id, finished) = reply(bus::outcome(&step, &message).await);
    assert_eq!(finished.status, SignStatus::Failure);
    let reason = finished.failure_message.unwrap_or_default();
    assert!(reason.contains("has no [streams.f43.signing]"), "{reason}");
    // A replay is answered again, with the same message.
    let (again, _) = reply(bus::outcome(&step, &message).await);
    assert_eq!(again, id);
}

#[tokio::test]
async fn a_version_without_a_key_a_bad_checksum_or_a_path_outside_the_store_signs_nothing() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("f43")).unwrap();
    std::fs::write(root.path().join("f43/CHECKSUM"), "text").unwrap();
    let step = signer(root.path(), signed_stream());
    for (request, expected) in [
        (
            request("44.1", "f43/CHECKSUM", "sha256:00"),
            "no key for major version",
        ),
        (
            request("43.1", "f43/CHECKSUM", "md5:00"),
            "is not sha256:<hex>",
        ),
        (
            request(
                "43.1",
                "f43/CHECKSUM",
                &format!("sha256:{}", "0".repeat(64)),
            ),
            "the file changed since it was requested",
        ),
        (
            request(
                "43.1",
                "../etc/passwd",
                &format!("sha256:{}", "0".repeat(64)),
            ),
            "is not a path in the store",
        ),
    ] {
        let (_, finished) = reply(bus::outcome(&step, &incoming(&request, None)).await);
        assert_eq!(finished.status, SignStatus::Failure);
        let reason = finished.failure_message.unwrap_or_default();
        assert!(reason.contains(expected), "{expected}: {reason}");
    }
    assert!(!root.path().join("f43/CHECKSUM.asc").exists());
}

#[tokio::test]
async fn a_body_that_is_no_request_is_refused_unanswered() {
    let root = tempfile::tempdir().unwrap();
    let step = signer(root.path(), signed_stream());
    let tick: TwoweekTimerFired = serde_json::from_value(json!({
        "stream": "f43", "period": "2026-11-17T12:00:00Z",
        "scheduled_for": "2026-11-17T12:00:00Z", "fired_at": "2026-11-17T12:00:00Z",
    }))
    .unwrap();
    let mut message = incoming(&tick, None);
    message.topic = SignRequested::TOPIC.to_owned();
    let reason = refused(bus::outcome(&step, &message).await);
    assert!(reason.contains("missing field"), "{reason}");
}
