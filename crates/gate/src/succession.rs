//! Which two-week stream is the current one: the role of each stream in a succession (`f44`
//! `succeeds = "f43"`), read the same way by the releaser, the release timer, the site
//! publisher and `fortnight status`.
//!
//! A successor takes over the two-week releases at the switch: an operator's
//! `fortnight.override.switch`, or its `switch_at`. The releaser alone performs it, writing
//! `<new stream>/.switch.json` ([`SwitchRecord`]) under the new stream's lock and announcing
//! `fortnight.stream.switched`.
//!
//! A `switch_at` that has passed counts as switched even before the record exists. The date
//! is configuration every reader has, so the releaser refusing the old stream's tick, the
//! timer no longer firing it and the page showing the new stream as current agree from the
//! same second, whether or not the releaser's clock has had its round yet (it may be down, or
//! a tick may race it). The record, once written, is what happened: an operator's switch
//! before the date, and the moment of a switch that the configuration no longer says (a
//! `switch_at` changed or removed afterwards does not undo it). The clock's round, seeing the
//! date passed without a record, writes it and announces the switch.

use chrono::{DateTime, Utc};
use messages::{Prerelease, Stream, StreamSwitched};
use serde::{Deserialize, Serialize};
use settings::Settings;
use store::{Store, StoreError};

/// The releaser's record of a switch, in the new stream's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchRecord {
    /// The id `fortnight.stream.switched` went out under; it goes out again under it.
    pub id: uuid::Uuid,
    /// The id of the operator's message that asked for the switch, if one did: that message
    /// delivered again is the same request, any other one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// The announcement, as sent.
    pub switched: StreamSwitched,
}

/// A stream's part in the two-week releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Its two-week releases are the current ones, unlabelled.
    Current,
    /// A stream for a coming release that has not switched yet: its releases carry the label
    /// (none when it only `succeeds` another without one).
    Prerelease {
        label: Option<Prerelease>,
        switches_at: Option<DateTime<Utc>>,
    },
    /// Its two-week releases moved to `to` at `at`; its nightlies go on.
    Retired { to: Stream, at: DateTime<Utc> },
    /// No `[twoweek]`: nightlies only.
    NightlyOnly,
}

impl Role {
    /// The label its releases carry now.
    pub fn label(&self) -> Option<&Prerelease> {
        match self {
            Role::Prerelease { label, .. } => label.as_ref(),
            _ => None,
        }
    }

    /// How `fortnight status` and the page name the role: "current", "beta, switches at
    /// ...", "retired: two-week releases moved to f44 at ...".
    pub fn describe(&self) -> String {
        let time = |at: &DateTime<Utc>| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match self {
            Role::Current => "current".to_owned(),
            Role::Prerelease { label, switches_at } => {
                let label = label.as_ref().map_or("upcoming", Prerelease::as_str);
                match switches_at {
                    Some(at) => format!("{label}, switches at {}", time(at)),
                    None => format!("{label}, switches when an operator says so"),
                }
            }
            Role::Retired { to, at } => {
                format!("retired: two-week releases moved to {to} at {}", time(at))
            }
            Role::NightlyOnly => "nightly only".to_owned(),
        }
    }

    /// The role's short name in the stream JSON: `current`, `prerelease`, `retired`,
    /// `nightly-only`.
    pub fn kind(&self) -> &'static str {
        match self {
            Role::Current => "current",
            Role::Prerelease { .. } => "prerelease",
            Role::Retired { .. } => "retired",
            Role::NightlyOnly => "nightly-only",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The switch recorded in `stream`'s directory, if the releaser made one.
pub fn read_switch(store: &Store, stream: &Stream) -> Result<Option<SwitchRecord>, StoreError> {
    store::read_json(&store.switch_record_path(stream))
}

/// When two-week releases moved to `stream`: its record, else its `switch_at` once passed.
/// `None` for a stream that succeeds nothing.
pub fn switched_at(
    settings: &Settings,
    store: &Store,
    stream: &Stream,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let Some(s) = settings.stream(stream).filter(|s| s.succeeds.is_some()) else {
        return Ok(None);
    };
    if let Some(record) = read_switch(store, stream)? {
        return Ok(Some(record.switched.at));
    }
    Ok(s.switch_at.filter(|at| *at <= now))
}

/// The role of `stream` at `now` (see the module doc for the date and the record).
pub fn two_week_role(
    settings: &Settings,
    store: &Store,
    stream: &Stream,
    now: DateTime<Utc>,
) -> Result<Role, StoreError> {
    let Some(s) = settings.stream(stream).filter(|s| s.twoweek.is_some()) else {
        return Ok(Role::NightlyOnly);
    };
    if let Some((next, _)) = settings.successor(stream)
        && let Some(at) = switched_at(settings, store, next, now)?
    {
        return Ok(Role::Retired {
            to: next.clone(),
            at,
        });
    }
    let waiting = s.prerelease.is_some() || s.succeeds.is_some();
    if waiting && switched_at(settings, store, stream, now)?.is_none() {
        return Ok(Role::Prerelease {
            label: s.prerelease.clone(),
            switches_at: s.switch_at,
        });
    }
    Ok(Role::Current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use messages::SwitchCause;

    fn settings(f44_extra: &str) -> Settings {
        let stream = |n: u32, extra: &str| {
            format!(
                r#"
                [streams.f{n}]
                arches = ["x86_64"]
                input_refs = {{ x86_64 = "fedora/{n}/x86_64/updates/atomic-host" }}
                ostree_repo = "/srv/repo"
                formats = ["qcow2"]
                {extra}
                [streams.f{n}.twoweek]
                release_refs = {{ x86_64 = "fedora/{n}/x86_64/atomic-host" }}
                anchor = "2026-01-06T00:00:00Z"
                "#
            )
        };
        Settings::from_toml(&format!(
            "[store]\nroot = \"/srv/fortnight\"\n{}{}\n[streams.rawhide]\narches = [\"x86_64\"]\ninput_refs = {{ x86_64 = \"fedora/rawhide/x86_64/atomic-host\" }}\nostree_repo = \"/srv/repo\"\nformats = [\"qcow2\"]\n",
            stream(43, ""),
            stream(44, &format!("prerelease = \"beta\"\nsucceeds = \"f43\"\n{f44_extra}"))
        ))
        .unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn roles(settings: &Settings, store: &Store, now: &str) -> [Role; 3] {
        ["f43", "f44", "rawhide"]
            .map(|s| two_week_role(settings, store, &s.parse().unwrap(), at(now)).unwrap())
    }

    fn record(store: &Store, switched_at: &str) {
        let switched = StreamSwitched {
            from: "f43".parse().unwrap(),
            to: "f44".parse().unwrap(),
            at: at(switched_at),
            cause: SwitchCause::Operator {
                operator: "alice".parse().unwrap(),
                reason: "Fedora 44 is out early".into(),
            },
            next_tick: None,
        };
        let record = SwitchRecord {
            id: uuid::Uuid::nil(),
            requested_by: Some("m1".into()),
            switched,
        };
        store::write_json(&store.switch_record_path(&record.switched.to), &record).unwrap();
    }

    #[test]
    fn the_date_switches_and_a_record_switches_earlier_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let dated = settings("switch_at = \"2027-04-20T14:00:00Z\"");
        let beta = Role::Prerelease {
            label: Some("beta".parse().unwrap()),
            switches_at: Some(at("2027-04-20T14:00:00Z")),
        };
        assert_eq!(
            roles(&dated, &store, "2027-04-20T13:59:59Z"),
            [Role::Current, beta.clone(), Role::NightlyOnly]
        );
        assert_eq!(beta.label().unwrap().as_str(), "beta");
        assert_eq!(beta.describe(), "beta, switches at 2027-04-20T14:00:00Z");
        // The date alone, before the releaser's clock wrote anything.
        let [old, new, _] = roles(&dated, &store, "2027-04-20T14:00:00Z");
        assert_eq!(
            old,
            Role::Retired {
                to: "f44".parse().unwrap(),
                at: at("2027-04-20T14:00:00Z")
            }
        );
        assert_eq!(
            old.describe(),
            "retired: two-week releases moved to f44 at 2027-04-20T14:00:00Z"
        );
        assert_eq!((new.clone(), new.label()), (Role::Current, None));

        // An operator's switch before the date holds, even once the date is gone.
        record(&store, "2027-04-01T09:00:00Z");
        let undated = settings("");
        for s in [&dated, &undated] {
            let [old, new, _] = roles(s, &store, "2027-04-02T00:00:00Z");
            assert_eq!(
                old,
                Role::Retired {
                    to: "f44".parse().unwrap(),
                    at: at("2027-04-01T09:00:00Z")
                }
            );
            assert_eq!(new, Role::Current);
        }
    }

    #[test]
    fn without_a_date_the_successor_waits_for_an_operator() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let [old, new, rawhide] = roles(&settings(""), &store, "2030-01-01T00:00:00Z");
        assert_eq!(old, Role::Current);
        assert_eq!(new.describe(), "beta, switches when an operator says so");
        assert_eq!(
            [old.kind(), new.kind(), rawhide.kind()],
            ["current", "prerelease", "nightly-only"]
        );
    }
}
