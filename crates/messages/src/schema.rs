//! JSON Schemas for Fortnight's own topics, generated from the types. `schemas/` holds the
//! checked-in copies so that other services can validate Fortnight's messages without Rust;
//! [`check_dir`] finds where they drifted from the code and [`write_dir`] regenerates them
//! (`cargo run -p fortnight -- schemas write`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::bodies::*;
use crate::envelope::Message;

/// The command that regenerates `schemas/`, named in every drift report.
pub const REGENERATE: &str = "cargo run -p fortnight -- schemas write";

fn schema_of<M: Message>() -> (&'static str, Value) {
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<M>().to_value();
    // Transparent wrappers come out as a bare `allOf`; say at the top what fedora-messaging
    // requires of every body, so readers in other languages see it without resolving refs.
    if let Value::Object(map) = &mut schema {
        map.entry("type").or_insert_with(|| Value::from("object"));
    }
    (M::TOPIC, schema)
}

/// Every topic Fortnight publishes, with its schema.
pub fn all() -> Vec<(&'static str, Value)> {
    vec![
        schema_of::<TreeComposed>(),
        schema_of::<ImageBuilt>(),
        schema_of::<ImageBuildFailed>(),
        schema_of::<ImageTestsPassed>(),
        schema_of::<ImageTestsFailed>(),
        schema_of::<CandidateTestingRequested>(),
        schema_of::<KarmaSubmitted>(),
        schema_of::<KarmaThresholdReached>(),
        schema_of::<TwoweekTimerFired>(),
        schema_of::<OverrideBlock>(),
        schema_of::<OverrideUnblock>(),
        schema_of::<OverrideRelease>(),
        schema_of::<OverrideHold>(),
        schema_of::<OverrideUnhold>(),
        schema_of::<ReleasePublished>(),
        schema_of::<ReleaseSkipped>(),
        schema_of::<StreamStale>(),
        schema_of::<SignRequested>(),
        schema_of::<SignFinished>(),
        schema_of::<TwoweekComplete>(),
    ]
}

/// The schema of one topic, if Fortnight publishes it.
pub fn for_topic(topic: &str) -> Option<Value> {
    all().into_iter().find(|(t, _)| *t == topic).map(|(_, s)| s)
}

/// The file name a topic's schema is kept under in `schemas/`.
pub fn file_name(topic: &str) -> String {
    format!("{topic}.json")
}

/// A schema as it is written to disk: pretty JSON with a final newline, so that diffs of
/// `schemas/` read well in review.
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "no schema for topic {0:?}: Fortnight publishes no such topic (strip the deployment's prefix first)"
    )]
    UnknownTopic(String),
    #[error("the generated schema of {topic} does not compile: {reason}")]
    Compile { topic: &'static str, reason: String },
    #[error("{topic} body does not match its schema: {errors}")]
    Invalid { topic: String, errors: String },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SchemaError {
    let path = path.to_owned();
    move |source| SchemaError::Io {
        action,
        path,
        source,
    }
}

type Validators = BTreeMap<&'static str, Result<jsonschema::Validator, String>>;

fn validators() -> &'static Validators {
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        all()
            .into_iter()
            .map(|(topic, schema)| {
                let validator = jsonschema::validator_for(&schema).map_err(|e| e.to_string());
                (topic, validator)
            })
            .collect()
    })
}

/// Checks a body against the schema of its logical `topic`, reporting every violation with
/// its JSON path. Tests run every message they publish through this.
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

/// How a directory of checked-in schemas differs from the generated ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// A topic has no file.
    Missing(String),
    /// A file's content differs from the generated schema.
    Changed(String),
    /// A `.json` file names no topic Fortnight publishes.
    Stale(String),
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::Missing(file) => write!(f, "{file} is missing"),
            Drift::Changed(file) => write!(f, "{file} differs from the generated schema"),
            Drift::Stale(file) => write!(f, "{file} belongs to no topic"),
        }
    }
}

fn json_files(dir: &Path) -> Result<Vec<String>, SchemaError> {
    let entries = std::fs::read_dir(dir).map_err(io_error("read directory", dir))?;
    let mut names = Vec::new();
    for entry in entries {
        let name = entry
            .map_err(io_error("read directory", dir))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".json") {
            names.push(name);
        }
    }
    Ok(names)
}

/// Compares `dir` with the generated schemas; empty when they agree.
pub fn check_dir(dir: &Path) -> Result<Vec<Drift>, SchemaError> {
    let generated: BTreeMap<String, String> = all()
        .iter()
        .map(|(topic, schema)| (file_name(topic), render(schema)))
        .collect();
    let mut drift = Vec::new();
    for (file, text) in &generated {
        let path = dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(on_disk) if on_disk == *text => {}
            Ok(_) => drift.push(Drift::Changed(file.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                drift.push(Drift::Missing(file.clone()))
            }
            Err(e) => return Err(io_error("read", &path)(e)),
        }
    }
    let mut stale: Vec<String> = json_files(dir)?
        .into_iter()
        .filter(|name| !generated.contains_key(name))
        .collect();
    stale.sort();
    drift.extend(stale.into_iter().map(Drift::Stale));
    Ok(drift)
}

/// Writes every generated schema into `dir` and removes files of topics that no longer exist.
/// Returns what changed.
pub fn write_dir(dir: &Path) -> Result<Vec<Drift>, SchemaError> {
    std::fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    let drift = check_dir(dir)?;
    for (topic, schema) in all() {
        let path = dir.join(file_name(topic));
        std::fs::write(&path, render(&schema)).map_err(io_error("write", &path))?;
    }
    for item in &drift {
        if let Drift::Stale(file) = item {
            let path = dir.join(file);
            std::fs::remove_file(&path).map_err(io_error("remove", &path))?;
        }
    }
    Ok(drift)
}
