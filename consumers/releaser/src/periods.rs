//! What happened in each release period of a stream: `<root>/<stream>/.periods/<period>.json`.
//! This record is what makes a tick that arrives twice, is replayed, or races a karma event on
//! another replica release at most once, and what lets a replay finish a release that crashed
//! half-way (the version chosen is written before anything is changed).

use std::path::PathBuf;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use messages::{Stream, Version};
use serde::{Deserialize, Serialize};
use store::{Store, StoreError};

const FILE_FORMAT: &str = "%Y-%m-%dT%H%M%SZ";
const FILE_SUFFIX: &str = ".json";

/// A period id as carried by `fortnight.twoweek.timer.fired`, validated: its RFC 3339 start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period(DateTime<Utc>);

impl Period {
    pub fn parse(text: &str) -> Result<Self, String> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| Self(t.with_timezone(&Utc)))
            .map_err(|e| {
                format!(
                    "period {:?} is not an RFC 3339 time: {e}",
                    text.chars().take(80).collect::<String>()
                )
            })
    }

    /// The canonical text, as the timer writes it.
    pub fn id(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    pub fn is_after(&self, other: &Period) -> bool {
        self.0 > other.0
    }

    /// A file name without ':' (which some web servers and filesystems mishandle).
    fn file_name(&self) -> String {
        format!("{}{FILE_SUFFIX}", self.0.format(FILE_FORMAT))
    }

    fn from_file_name(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(FILE_SUFFIX)?;
        NaiveDateTime::parse_from_str(stem, FILE_FORMAT)
            .ok()
            .map(|t| Self(t.and_utc()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum PeriodState {
    /// Nothing was eligible; the stream waits for the next tick.
    Skipped,
    /// Nothing was eligible; the next candidate that becomes eligible is released.
    Waiting,
    /// This version was chosen and the release started.
    Releasing { version: Version },
    /// This version was released.
    Released { version: Version },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodRecord {
    pub period: String,
    #[serde(flatten)]
    pub state: PeriodState,
    pub updated: DateTime<Utc>,
}

fn dir(store: &Store, stream: &Stream) -> PathBuf {
    store.stream_dir(stream).join(".periods")
}

fn path(store: &Store, stream: &Stream, period: &Period) -> PathBuf {
    dir(store, stream).join(period.file_name())
}

/// Which period waits for its next eligible candidate (`release-next-pass`).
fn waiting_path(store: &Store, stream: &Stream) -> PathBuf {
    dir(store, stream).join("waiting.json")
}

pub fn read(
    store: &Store,
    stream: &Stream,
    period: &Period,
) -> Result<Option<PeriodState>, StoreError> {
    Ok(store::read_json::<PeriodRecord>(&path(store, stream, period))?.map(|r| r.state))
}

pub fn write(
    store: &Store,
    stream: &Stream,
    period: &Period,
    state: PeriodState,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let waits = state == PeriodState::Waiting;
    let record = PeriodRecord {
        period: period.id(),
        state,
        updated: now,
    };
    store::write_json(&path(store, stream, period), &record)?;
    // The pointer names the newest period that waits, or nothing: a later period's tick ends
    // any earlier wait, so one period never releases on behalf of another.
    let superseded = waiting(store, stream)?.is_some_and(|pending| pending.0 <= period.0);
    if waits || superseded {
        let pointer: Option<String> = waits.then(|| period.id());
        store::write_json(&waiting_path(store, stream), &pointer)?;
    }
    Ok(())
}

/// The newest period that has a record.
pub fn latest(store: &Store, stream: &Stream) -> Result<Option<Period>, StoreError> {
    let mut latest: Option<Period> = None;
    for entry in store::list_dir(&dir(store, stream))? {
        let period = entry.file_name().to_str().and_then(Period::from_file_name);
        if let Some(period) = period
            && latest.as_ref().is_none_or(|l| period.is_after(l))
        {
            latest = Some(period);
        }
    }
    Ok(latest)
}

/// The period that waits for a candidate, if any.
pub fn waiting(store: &Store, stream: &Stream) -> Result<Option<Period>, StoreError> {
    let pointer: Option<Option<String>> = store::read_json(&waiting_path(store, stream))?;
    Ok(pointer.flatten().and_then(|text| Period::parse(&text).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_validated_and_canonical() {
        let p = Period::parse("2026-11-17T13:00:00+01:00").unwrap();
        assert_eq!(p.id(), "2026-11-17T12:00:00Z");
        assert_eq!(p.file_name(), "2026-11-17T120000Z.json");
        assert!(Period::parse("../../etc/passwd").is_err());
        assert!(Period::parse("2026-11-17T12:00:00Z; rm -rf /").is_err());
    }

    #[test]
    fn a_later_period_ends_an_earlier_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stream: Stream = "f43".parse().unwrap();
        let (first, second) = (
            Period::parse("2026-11-03T12:00:00Z").unwrap(),
            Period::parse("2026-11-17T12:00:00Z").unwrap(),
        );
        let now = Utc::now();
        write(&store, &stream, &first, PeriodState::Waiting, now).unwrap();
        assert_eq!(waiting(&store, &stream).unwrap(), Some(first.clone()));
        write(&store, &stream, &second, PeriodState::Skipped, now).unwrap();
        assert_eq!(
            waiting(&store, &stream).unwrap(),
            None,
            "the newer tick ended the wait"
        );
        write(&store, &stream, &second, PeriodState::Waiting, now).unwrap();
        write(&store, &stream, &first, PeriodState::Skipped, now).unwrap();
        assert_eq!(
            waiting(&store, &stream).unwrap(),
            Some(second.clone()),
            "an older record leaves a newer wait alone"
        );
        assert_eq!(
            latest(&store, &stream).unwrap(),
            Some(second),
            "waiting.json is not a period"
        );
    }
}
