//! What happened in each release period of a stream: `<root>/<stream>/.periods/<period>.json`.
//! This record is what makes a tick that arrives twice, is replayed, or races a karma event on
//! another replica release at most once, and what lets a replay finish a release that crashed
//! half-way (the version chosen is written before anything is changed).

use std::path::PathBuf;

use chrono::{DateTime, NaiveDateTime, Utc};
use messages::{Period, Stream, Version};
use serde::{Deserialize, Serialize};
use store::{Store, StoreError};

fn period_of_file_name(name: &str) -> Option<Period> {
    let stem = name.strip_suffix(store::PERIOD_RECORD_SUFFIX)?;
    NaiveDateTime::parse_from_str(stem, store::PERIOD_RECORD_FORMAT)
        .ok()
        .map(|start| Period::starting_at(start.and_utc()))
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
    pub period: Period,
    #[serde(flatten)]
    pub state: PeriodState,
    pub updated: DateTime<Utc>,
}

fn path(store: &Store, stream: &Stream, period: &Period) -> PathBuf {
    store.period_record_path(stream, period)
}

/// Which period waits for its next eligible candidate (`release-next-pass`).
fn waiting_path(store: &Store, stream: &Stream) -> PathBuf {
    store.periods_dir(stream).join("waiting.json")
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
        period: *period,
        state,
        updated: now,
    };
    store::write_json(&path(store, stream, period), &record)?;
    // The pointer names the newest period that waits, or nothing: a later period's tick ends
    // any earlier wait, so one period never releases on behalf of another.
    let superseded = waiting(store, stream)?.is_some_and(|pending| pending <= *period);
    if waits || superseded {
        let pointer: Option<Period> = waits.then_some(*period);
        store::write_json(&waiting_path(store, stream), &pointer)?;
    }
    Ok(())
}

/// The newest period that has a record and starts no later than `not_after`. A record from the
/// future (which an unchecked tick could leave) must not make every real tick a past one.
pub fn latest(
    store: &Store,
    stream: &Stream,
    not_after: DateTime<Utc>,
) -> Result<Option<Period>, StoreError> {
    let mut latest: Option<Period> = None;
    for entry in store::list_dir(&store.periods_dir(stream))? {
        let period = entry
            .file_name()
            .to_str()
            .and_then(period_of_file_name)
            .filter(|period| period.start() <= not_after);
        latest = latest.max(period);
    }
    Ok(latest)
}

/// The period that waits for a candidate, if any.
pub fn waiting(store: &Store, stream: &Stream) -> Result<Option<Period>, StoreError> {
    let pointer: Option<Option<Period>> = store::read_json(&waiting_path(store, stream))?;
    Ok(pointer.flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_without_colons() {
        let p: Period = "2026-11-17T13:00:00+01:00".parse().unwrap();
        let store = Store::open(tempfile::tempdir().unwrap().path()).unwrap();
        let path = path(&store, &"f43".parse().unwrap(), &p);
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, "2026-11-17T120000Z.json");
        assert_eq!(period_of_file_name(name), Some(p));
        assert_eq!(period_of_file_name("waiting.json"), None);
    }

    #[test]
    fn a_later_period_ends_an_earlier_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stream: Stream = "f43".parse().unwrap();
        let (first, second) = (
            "2026-11-03T12:00:00Z".parse().unwrap(),
            "2026-11-17T12:00:00Z".parse().unwrap(),
        );
        let now = Utc::now();
        write(&store, &stream, &first, PeriodState::Waiting, now).unwrap();
        assert_eq!(waiting(&store, &stream).unwrap(), Some(first));
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
            Some(second),
            "an older record leaves a newer wait alone"
        );
        assert_eq!(
            latest(&store, &stream, now).unwrap(),
            Some(second),
            "waiting.json is not a period"
        );
    }

    #[test]
    fn a_period_from_the_future_is_not_the_latest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stream: Stream = "f43".parse().unwrap();
        let now: DateTime<Utc> = "2026-11-27T03:00:00Z".parse().unwrap();
        let (past, future): (Period, Period) = (
            "2026-11-17T12:00:00Z".parse().unwrap(),
            "2099-01-05T12:00:00Z".parse().unwrap(),
        );
        write(&store, &stream, &past, PeriodState::Skipped, now).unwrap();
        write(&store, &stream, &future, PeriodState::Skipped, now).unwrap();
        assert_eq!(latest(&store, &stream, now).unwrap(), Some(past));
    }
}
