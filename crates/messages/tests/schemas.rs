//! The checked-in `schemas/` match the types, and `schema::validate` accepts what the types
//! produce and refuses what they would refuse.

use std::path::PathBuf;

use messages::schema::{self, Drift, REGENERATE, SchemaError};
use messages::{
    KarmaSubmitted, Message, Outgoing, SignFinished, SignRequested, SignStatus, TreeComposed,
};
use serde_json::json;
use uuid::Uuid;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

/// Fails when `schemas/` drifted from the code. `UPDATE_SCHEMAS=1 cargo test -p messages`
/// rewrites the files instead, like `cargo run -p fortnight -- schemas write`.
#[test]
fn checked_in_schemas_match_the_generated_ones() {
    let dir = schemas_dir();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        schema::write_dir(&dir).unwrap();
    }
    let drift = schema::check_dir(&dir).unwrap();
    let report: Vec<String> = drift.iter().map(ToString::to_string).collect();
    assert!(
        drift.is_empty(),
        "schemas/ differs from the message types: {}. Regenerate with `{REGENERATE}` \
         (or `UPDATE_SCHEMAS=1 cargo test -p messages`) and commit the result.",
        report.join(", ")
    );
}

#[test]
fn drift_is_reported_per_file() {
    let dir = tempfile::tempdir().unwrap();
    schema::write_dir(dir.path()).unwrap();
    assert_eq!(schema::check_dir(dir.path()).unwrap(), Vec::new());
    let changed = dir.path().join(schema::file_name(TreeComposed::TOPIC));
    std::fs::write(&changed, "{}\n").unwrap();
    std::fs::remove_file(dir.path().join(schema::file_name(KarmaSubmitted::TOPIC))).unwrap();
    std::fs::write(dir.path().join("fortnight.gone.json"), "{}\n").unwrap();
    let mut drift = schema::check_dir(dir.path()).unwrap();
    drift.sort_by_key(|d| d.to_string());
    assert_eq!(
        drift,
        vec![
            Drift::Stale("fortnight.gone.json".into()),
            Drift::Missing("fortnight.karma.submitted.json".into()),
            Drift::Changed("fortnight.tree.composed.json".into()),
        ]
    );
    let fixed = schema::write_dir(dir.path()).unwrap();
    assert_eq!(fixed.len(), 3);
    assert!(schema::check_dir(dir.path()).unwrap().is_empty());
    assert!(!dir.path().join("fortnight.gone.json").exists());
}

/// Readers in other languages load these files with any draft-07 validator.
#[test]
fn checked_in_schemas_are_valid_draft_07() {
    for (topic, _) in schema::all() {
        let path = schemas_dir().join(schema::file_name(topic));
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Err(e) = jsonschema::draft7::meta::validate(&value) {
            panic!("{} is not a valid draft-07 schema: {e}", path.display());
        }
    }
}

#[test]
fn every_topic_has_a_schema_file_named_after_it() {
    for (topic, schema) in schema::all() {
        assert_eq!(
            schema["$schema"], "http://json-schema.org/draft-07/schema#",
            "{topic}"
        );
        assert_eq!(
            schema["type"], "object",
            "{topic}: fedora-messaging bodies are objects"
        );
        assert!(schema::for_topic(topic).is_some());
    }
    assert!(schema::for_topic("pungi.compose.ostree").is_none());
}

fn tree_composed() -> TreeComposed {
    serde_json::from_value(json!({
        "arch": "x86_64",
        "tree": {
            "ref": "fedora/43/x86_64/updates/atomic-host",
            "commit": "d428d3ad8ae8ec0d9c1bc6f9e3a8b1f4b2e7c1d0a9f8e7d6c5b4a39281706f5e",
            "repo": "/srv/repo"
        },
        "version": "43.20261127.0"
    }))
    .unwrap()
}

#[test]
fn typed_bodies_validate_against_their_schema() {
    let message = Outgoing::new(Uuid::nil(), &tree_composed());
    message.validate().unwrap();
    let vote = KarmaSubmitted {
        stream: "f43".parse().unwrap(),
        version: "43.20261127.0".parse().unwrap(),
        user: "bob".parse().unwrap(),
        karma: -1,
        comment: Some("rpm-ostree upgrade fails".into()),
    };
    let message = Outgoing::new(Uuid::nil(), &vote);
    message.validate().unwrap();
}

#[test]
fn violations_are_refused_with_their_path() {
    let mut body = serde_json::to_value(tree_composed()).unwrap();
    body["tree"]["commit"] = json!("abc");
    body["arch"] = json!("../etc");
    let err = schema::validate(TreeComposed::TOPIC, &body).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, SchemaError::Invalid { .. }), "{text}");
    assert!(
        text.contains("/tree/commit") && text.contains("/arch"),
        "{text}"
    );

    let vote = json!({"stream": "f43", "version": "43.1", "user": "bob", "karma": 5});
    let text = schema::validate(KarmaSubmitted::TOPIC, &vote)
        .unwrap_err()
        .to_string();
    assert!(text.contains("/karma"), "{text}");

    let missing = json!({"arch": "x86_64"});
    let text = schema::validate(TreeComposed::TOPIC, &missing)
        .unwrap_err()
        .to_string();
    assert!(text.contains("tree"), "{text}");
}

#[test]
fn unknown_topics_are_an_error_not_a_pass() {
    let err = schema::validate("org.fedoraproject.prod.fortnight.tree.composed", &json!({}));
    assert!(matches!(err, Err(SchemaError::UnknownTopic(_))), "{err:?}");
}

/// A robosignatory-shaped reply: the request's fields at the top level, plus `status` and
/// `failure-message`.
#[test]
fn sign_reply_is_the_request_body_plus_status_and_failure_message() {
    let request: SignRequested = serde_json::from_value(json!({
        "request_id": "6f1c5a1e-9b1d-4c8e-8a43-0a1b2c3d4e5f",
        "stream": "f43",
        "version": "43.20261127.0",
        "build_id": "f43-43.20261127.0",
        "artifacts": [{
            "file": "streams/f43/releases/43.20261127.0/x86_64/CHECKSUM",
            "checksum": "sha256:d428d3ad8ae8ec0d9c1bc6f9e3a8b1f4b2e7c1d0a9f8e7d6c5b4a39281706f5e"
        }],
        "commits": [{
            "arch": "x86_64",
            "ref": "fedora/43/x86_64/atomic-host",
            "commit": "d428d3ad8ae8ec0d9c1bc6f9e3a8b1f4b2e7c1d0a9f8e7d6c5b4a39281706f5e"
        }]
    }))
    .unwrap();
    let sent = Outgoing::new(Uuid::nil(), &request);
    sent.validate().unwrap();
    assert_eq!(
        sent.priority, 4,
        "robosignatory's requests go with priority 4"
    );
    assert!(request.artifacts[0].sha256().is_some());

    let reply = SignFinished {
        request: request.clone(),
        status: SignStatus::Failure,
        failure_message: Some("checksum mismatch".into()),
    };
    let body = serde_json::to_value(&reply).unwrap();
    assert_eq!(body["status"], "FAILURE");
    assert_eq!(body["failure-message"], "checksum mismatch");
    assert_eq!(body["request_id"], "6f1c5a1e-9b1d-4c8e-8a43-0a1b2c3d4e5f");
    Outgoing::new(Uuid::nil(), &reply).validate().unwrap();

    let bad = json!({"file": "x", "checksum": "md5:0"});
    let mut body = serde_json::to_value(&request).unwrap();
    body["artifacts"] = json!([bad]);
    let text = schema::validate(SignRequested::TOPIC, &body)
        .unwrap_err()
        .to_string();
    assert!(text.contains("/artifacts/0/checksum"), "{text}");
}
