//! [`Span`]: a length of time as people write it in the configuration (`45s`, `30m`, `12h`,
//! `3d`), kept in whole seconds.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A positive length of time: a whole number followed by `s`, `m`, `h` or `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Span {
    seconds: u64,
}

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)];

impl Span {
    pub const fn from_seconds(seconds: u64) -> Self {
        Self { seconds }
    }

    pub fn seconds(self) -> u64 {
        self.seconds
    }

    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }

    pub fn as_delta(self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(i64::try_from(self.seconds).unwrap_or(i64::MAX))
    }
}

/// Why a text is not a [`Span`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a length of time: write a positive whole number and a unit, s, m, h or d (45s, 30m, 12h, 3d)"
)]
pub struct InvalidSpan {
    pub text: String,
}

impl FromStr for Span {
    type Err = InvalidSpan;

    fn from_str(text: &str) -> Result<Self, InvalidSpan> {
        let invalid = || InvalidSpan {
            text: text.to_owned(),
        };
        let unit = text.chars().last().ok_or_else(invalid)?;
        let (_, scale) = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(invalid)?;
        let amount: u64 = text[..text.len() - 1].parse().map_err(|_| invalid())?;
        match amount.checked_mul(*scale) {
            // Beyond what a date can add, and no one waits that long.
            Some(seconds) if seconds > 0 && i64::try_from(seconds).is_ok() => Ok(Self { seconds }),
            _ => Err(invalid()),
        }
    }
}

impl TryFrom<String> for Span {
    type Error = InvalidSpan;
    fn try_from(text: String) -> Result<Self, InvalidSpan> {
        text.parse()
    }
}

/// The largest unit that divides it: 72 hours is `3d`, 90 minutes `90m`.
impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, scale) = UNITS
            .iter()
            .find(|(_, scale)| self.seconds.is_multiple_of(*scale))
            .unwrap_or(&('s', 1));
        write!(f, "{}{unit}", self.seconds / scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_and_print_as_written() {
        for (text, seconds) in [("45s", 45), ("30m", 1800), ("12h", 43_200), ("3d", 259_200)] {
            let span: Span = text.parse().unwrap();
            assert_eq!(span.seconds(), seconds, "{text}");
            assert_eq!(span.to_string(), text);
        }
        assert_eq!("90m".parse::<Span>().unwrap().to_string(), "90m");
        assert_eq!("72h".parse::<Span>().unwrap().to_string(), "3d");
    }

    #[test]
    fn anything_else_is_refused_saying_how_to_write_it() {
        for text in [
            "",
            "3",
            "d",
            "0d",
            "-1h",
            "1.5h",
            "3 d",
            "3w",
            "99999999999999999d",
        ] {
            let error = text.parse::<Span>().unwrap_err();
            assert!(
                error.to_string().contains("45s, 30m, 12h, 3d"),
                "{text}: {error}"
            );
        }
    }
}
