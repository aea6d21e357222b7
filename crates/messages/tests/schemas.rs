//! The checked-in `schemas/` match the types and are valid draft-07. (That they accept what
//! the types produce and refuse what the types would refuse is tested where validation
//! lives, `tests::schema`.)

use messages::schema::{self, Drift, REGENERATE};
use messages::{
    KarmaSubmitted, Message, Outgoing, SignFinished, SignRequested, SignStatus, TreeComposed,
};
use serde_json::json;
use uuid::Uuid;

/// Fails when `schemas/` drifted from the code; `cargo run -p fortnight -- schemas write`
/// regenerates it.
#[test]
fn checked_in_schemas_match_the_generated_ones() {
    let drift = schema::drift();
    let report: Vec<String> = drift.iter().map(ToString::to_string).collect();
    assert!(
        drift.is_empty(),
        "schemas/ differs from the message types: {}. Regenerate with `{REGENERATE}` and commit \
         the result.",
        report.join(", ")
    );
}

fn pairs(files: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    files
        .iter()
        .map(|(file, text)| (file.as_str(), text.as_str()))
}

#[test]
fn drift_is_reported_per_file() {
    let generated: Vec<(String, String)> = schema::all()
        .iter()
        .map(|(topic, s)| (schema::file_name(topic), schema::render(s)))
        .collect();
    assert_eq!(schema::compare(pairs(&generated)), Vec::new());
    let removed = schema::file_name(KarmaSubmitted::TOPIC);
    let changed = schema::file_name(TreeComposed::TOPIC);
    let mut edited: Vec<(String, String)> = generated
        .into_iter()
        .filter(|(file, _)| *file != removed)
        .collect();
    for (file, text) in &mut edited {
        if *file == changed {
            *text = "{}\n".to_owned();
        }
    }
    edited.push(("fortnight.gone.json".to_owned(), "{}\n".to_owned()));
    let mut drift = schema::compare(pairs(&edited));
    drift.sort_by_key(|d| d.to_string());
    assert_eq!(
        drift,
        vec![
            Drift::Stale("fortnight.gone.json".into()),
            Drift::Missing("fortnight.karma.submitted.json".into()),
            Drift::Changed("fortnight.tree.composed.json".into()),
        ]
    );
}

/// Readers in other languages load these files with any draft-07 validator.
#[test]
fn checked_in_schemas_are_valid_draft_07() {
    assert_eq!(schema::checked_in().len(), schema::all().len());
    for (file, text) in schema::checked_in() {
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        if let Err(e) = jsonschema::draft7::meta::validate(&value) {
            panic!("schemas/{file} is not a valid draft-07 schema: {e}");
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
}
