//! JSON Schemas for Fortnight's own topics, generated from the types. `schemas/` holds the
//! checked-in copies; a test fails when they drift.

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::bodies::*;
use crate::envelope::Message;

fn schema_of<M: Message>() -> (&'static str, Value) {
    let generator = SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<M>();
    (M::TOPIC, schema.to_value())
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
