//! JSON Schemas for Fortnight's own topics, generated from the types. `schemas/` holds the
//! checked-in copies so that other services can validate Fortnight's messages without Rust;
//! they are compiled in ([`checked_in`]), [`drift`] says where they drifted from the code, and
//! `fortnight schemas write` regenerates them (the CLI does the file I/O; this crate does none).
//! Validating bodies against them is the test harness's (`tests::schema`): no consumer does
//! it, so none links a JSON Schema validator.

use std::collections::BTreeMap;
use std::fmt;

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::bodies::*;
use crate::ci::{CiTestComplete, CiTestError, CiTestQueued, CiTestRunning};
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

/// Every topic Fortnight publishes, with its schema (Fedora CI's `ci.*` topics included).
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
        schema_of::<OverrideSwitch>(),
        schema_of::<OverrideEndOfLife>(),
        schema_of::<ReleasePublished>(),
        schema_of::<ReleaseSkipped>(),
        schema_of::<StreamStale>(),
        schema_of::<StreamSwitched>(),
        schema_of::<StreamEndOfLife>(),
        schema_of::<SignRequested>(),
        schema_of::<SignFinished>(),
        schema_of::<TwoweekComplete>(),
        schema_of::<CiTestQueued>(),
        schema_of::<CiTestRunning>(),
        schema_of::<CiTestComplete>(),
        schema_of::<CiTestError>(),
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

/// The checked-in `schemas/*.json`, as (file name, text), compiled in by `build.rs`.
pub fn checked_in() -> &'static [(&'static str, &'static str)] {
    include!(concat!(env!("OUT_DIR"), "/checked_in.rs"))
}

/// The checked-in schema text of one topic, if Fortnight publishes it and `schemas/` has it.
pub fn checked_in_for(topic: &str) -> Option<&'static str> {
    let file = file_name(topic);
    checked_in()
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, text)| *text)
}

/// How a set of schema files differs from the generated schemas.
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

/// Compares schema files, as (`.json` file name, text), with the generated schemas; empty
/// when they agree. Missing and changed files come in topic file order, then stale ones.
pub fn compare<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Drift> {
    let files: BTreeMap<&str, &str> = files.into_iter().collect();
    let generated: BTreeMap<String, String> = all()
        .iter()
        .map(|(topic, schema)| (file_name(topic), render(schema)))
        .collect();
    let mut drift = Vec::new();
    for (file, text) in &generated {
        match files.get(file.as_str()) {
            Some(found) if found == text => {}
            Some(_) => drift.push(Drift::Changed(file.clone())),
            None => drift.push(Drift::Missing(file.clone())),
        }
    }
    drift.extend(
        files
            .keys()
            .filter(|name| !generated.contains_key(**name))
            .map(|name| Drift::Stale((*name).to_owned())),
    );
    drift
}

/// How the checked-in `schemas/` (as compiled in) differ from the message types.
pub fn drift() -> Vec<Drift> {
    compare(checked_in().iter().copied())
}
