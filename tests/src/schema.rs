//! Every message a test publishes or watches is checked against the checked-in schema of its
//! topic (`schemas/`, compiled into `messages`): the files other services validate with. The
//! consumers never validate (their typed bodies refuse what the schemas would), so the JSON
//! Schema validator lives here and no consumer links it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use messages::Outgoing;
use messages::schema::{self, REGENERATE};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "no schema for topic {0:?}: Fortnight publishes no such topic (strip the deployment's prefix first)"
    )]
    UnknownTopic(String),
    #[error(
        "the checked-in schema of {topic} does not compile: {reason}; regenerate with `{REGENERATE}`"
    )]
    Compile { topic: &'static str, reason: String },
    #[error("{topic} body does not match its schema: {errors}")]
    Invalid { topic: String, errors: String },
}

type Validators = BTreeMap<&'static str, Result<jsonschema::Validator, String>>;

fn validators() -> &'static Validators {
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        schema::all()
            .into_iter()
            .map(|(topic, _)| {
                let validator = schema::checked_in_for(topic)
                    .ok_or_else(|| format!("schemas/{} is missing", schema::file_name(topic)))
                    .and_then(|text| serde_json::from_str::<Value>(text).map_err(|e| e.to_string()))
                    .and_then(|schema| {
                        jsonschema::validator_for(&schema).map_err(|e| e.to_string())
                    });
                (topic, validator)
            })
            .collect()
    })
}

/// Checks a body against the checked-in schema of its logical `topic`, reporting every
/// violation with its JSON path.
pub fn validate(topic: &str, body: &Value) -> Result<(), SchemaError> {
    let (topic, validator) = validators()
        .get_key_value(topic)
        .ok_or_else(|| SchemaError::UnknownTopic(topic.to_owned()))?;
    let validator = validator.as_ref().map_err(|reason| SchemaError::Compile {
        topic,
        reason: reason.clone(),
    })?;
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("at '{}': {e}", e.instance_path))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::Invalid {
            topic: (*topic).to_owned(),
            errors: errors.join("; "),
        })
    }
}

/// Panics, naming every violation, unless `message` matches its schema (named by the body's
/// own topic, which a deployment may publish under another, as the signing topics).
pub fn assert_valid(message: &Outgoing) {
    if let Err(error) = validate(&message.schema, &Value::Object(message.body.clone())) {
        panic!("{error}\n{message:?}");
    }
}

#[cfg(test)]
mod tests {
    use messages::{
        KarmaSubmitted, Message, SignFinished, SignRequested, SignStatus, TreeComposed,
    };
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

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

    fn sign_requested() -> SignRequested {
        serde_json::from_value(json!({
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
        .unwrap()
    }

    #[test]
    fn typed_bodies_validate_against_their_schema() {
        assert_valid(&Outgoing::new(Uuid::nil(), &tree_composed()));
        let vote = KarmaSubmitted {
            stream: "f43".parse().unwrap(),
            version: "43.20261127.0".parse().unwrap(),
            user: "bob".parse().unwrap(),
            karma: -1,
            comment: Some("rpm-ostree upgrade fails".into()),
        };
        assert_valid(&Outgoing::new(Uuid::nil(), &vote));
        let request = sign_requested();
        assert_valid(&Outgoing::new(Uuid::nil(), &request));
        let reply = SignFinished {
            request,
            status: SignStatus::Failure,
            failure_message: Some("checksum mismatch".into()),
        };
        assert_valid(&Outgoing::new(Uuid::nil(), &reply));
    }

    #[test]
    fn violations_are_refused_with_their_path() {
        let mut body = serde_json::to_value(tree_composed()).unwrap();
        body["tree"]["commit"] = json!("abc");
        body["arch"] = json!("../etc");
        let err = validate(TreeComposed::TOPIC, &body).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, SchemaError::Invalid { .. }), "{text}");
        assert!(
            text.contains("/tree/commit") && text.contains("/arch"),
            "{text}"
        );

        let vote = json!({"stream": "f43", "version": "43.1", "user": "bob", "karma": 5});
        let text = validate(KarmaSubmitted::TOPIC, &vote)
            .unwrap_err()
            .to_string();
        assert!(text.contains("/karma"), "{text}");

        let missing = json!({"arch": "x86_64"});
        let text = validate(TreeComposed::TOPIC, &missing)
            .unwrap_err()
            .to_string();
        assert!(text.contains("tree"), "{text}");

        let mut body = serde_json::to_value(sign_requested()).unwrap();
        body["artifacts"] = json!([{"file": "x", "checksum": "md5:0"}]);
        let text = validate(SignRequested::TOPIC, &body)
            .unwrap_err()
            .to_string();
        assert!(text.contains("/artifacts/0/checksum"), "{text}");
    }

    #[test]
    fn unknown_topics_are_an_error_not_a_pass() {
        let err = validate("org.fedoraproject.prod.fortnight.tree.composed", &json!({}));
        assert!(matches!(err, Err(SchemaError::UnknownTopic(_))), "{err:?}");
    }
}
