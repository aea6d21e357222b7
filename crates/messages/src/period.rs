//! The two-week period a tick, a release or a skip belongs to.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// A release period, identified by its scheduled start at second precision, in UTC.
///
/// Its text is always RFC 3339 with a `Z` (`2026-11-17T12:00:00Z`), so the same period has one
/// spelling wherever it is compared, hashed into a message id or written into the store; any
/// RFC 3339 offset is accepted on input and normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Period(DateTime<Utc>);

/// A period that is not an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "period {value:?} is not an RFC 3339 time ({reason}); a period looks like 2026-11-17T12:00:00Z"
)]
pub struct InvalidPeriod {
    value: String,
    reason: String,
}

impl Period {
    /// The period that starts at `start` (sub-second digits are dropped).
    pub fn starting_at(start: DateTime<Utc>) -> Self {
        Self(start.trunc_subsecs(0))
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.0
    }
}

impl FromStr for Period {
    type Err = InvalidPeriod;
    fn from_str(text: &str) -> Result<Self, InvalidPeriod> {
        DateTime::parse_from_rfc3339(text)
            .map(|start| Self::starting_at(start.with_timezone(&Utc)))
            .map_err(|error| InvalidPeriod {
                value: text.chars().take(80).collect(),
                reason: error.to_string(),
            })
    }
}

impl TryFrom<String> for Period {
    type Error = InvalidPeriod;
    fn try_from(text: String) -> Result<Self, InvalidPeriod> {
        text.parse()
    }
}

impl From<Period> for String {
    fn from(period: Period) -> String {
        period.to_string()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

impl JsonSchema for Period {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Period")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "a release period: its scheduled start, RFC 3339 in UTC at second precision"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_whatever_the_offset_or_fraction() {
        let period: Period = "2026-11-17T13:00:00.250+01:00".parse().unwrap();
        assert_eq!(period.to_string(), "2026-11-17T12:00:00Z");
        assert_eq!(period, "2026-11-17T12:00:00Z".parse().unwrap());
    }

    #[test]
    fn paths_and_shell_text_are_refused() {
        for bad in [
            "../../etc/passwd",
            "2026-11-17T12:00:00Z; rm -rf /",
            "",
            "2026-11-17",
        ] {
            let error = bad.parse::<Period>().unwrap_err().to_string();
            assert!(error.contains("is not an RFC 3339 time"), "{bad}: {error}");
        }
    }

    #[test]
    fn serialises_as_its_text() {
        let period = Period::starting_at("2026-11-03T12:00:00Z".parse().unwrap());
        let json = serde_json::to_string(&period).unwrap();
        assert_eq!(json, r#""2026-11-03T12:00:00Z""#);
        assert_eq!(serde_json::from_str::<Period>(&json).unwrap(), period);
        assert!(serde_json::from_str::<Period>(r#""tomorrow""#).is_err());
    }
}
