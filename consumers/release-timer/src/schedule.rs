//! When a stream's release periods start: `anchor + n * period` or a cron expression, in UTC.

use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use croner::Cron;
use messages::Stream;
use settings::TwoWeekSettings;

use crate::TimerError;

/// How far a tick's period may lie ahead of the receiver's clock. The timer fires at the period's
/// start by its own clock, which may run a little ahead of the releaser's; NTP keeps hosts
/// within seconds, so five minutes tolerates a sloppy clock while a period further ahead can
/// only be a mistake or an attack.
pub const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// A stream's tick schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Periodic {
        anchor: DateTime<Utc>,
        period: TimeDelta,
    },
    Cron(Box<Cron>),
}

impl Schedule {
    /// The schedule a stream's settings describe; a cron expression wins over the anchor.
    pub fn for_stream(stream: &Stream, twoweek: &TwoWeekSettings) -> Result<Self, TimerError> {
        if let Some(expression) = &twoweek.cron {
            let cron = Cron::from_str(expression).map_err(|source| TimerError::Cron {
                stream: stream.clone(),
                expression: expression.clone(),
                reason: source.to_string(),
            })?;
            return Ok(Self::Cron(Box::new(cron)));
        }
        let anchor = twoweek.anchor.ok_or_else(|| TimerError::NoSchedule {
            stream: stream.clone(),
        })?;
        Ok(Self::Periodic {
            anchor,
            period: TimeDelta::days(i64::from(twoweek.period_days)),
        })
    }

    /// The start of the period that contains `now`: the latest tick at or before it, or none
    /// when the schedule has not started yet.
    pub fn current(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Periodic { anchor, period } => {
                if now < *anchor {
                    return None;
                }
                let elapsed = (now - *anchor).num_seconds();
                let periods = elapsed / period.num_seconds();
                Some(*anchor + TimeDelta::seconds(periods * period.num_seconds()))
            }
            Self::Cron(cron) => cron.find_previous_occurrence(&now, true).ok(),
        }
    }

    /// Why `tick` cannot be a tick of this schedule seen at `now`, if it cannot: it must be
    /// one the schedule produces (or, for an operator's tick before the schedule starts, any
    /// moment then, as [`fire_now`](crate::fire_now) sends) and must not lie in the future
    /// beyond [`CLOCK_SKEW`]. A period from the future would make every real tick look like a
    /// past one and stop releases.
    pub fn refuse(&self, tick: DateTime<Utc>, manual: bool, now: DateTime<Utc>) -> Option<String> {
        let text = |time: DateTime<Utc>| time.to_rfc3339_opts(SecondsFormat::Secs, true);
        let (tick_text, now_text) = (text(tick), text(now));
        if tick > now + CLOCK_SKEW {
            return Some(format!(
                "period {tick_text} is in the future (now {now_text}, clock skew allowed {}s); a tick names a period that has begun",
                CLOCK_SKEW.num_seconds()
            ));
        }
        match self.current(tick) {
            Some(start) if start == tick => None,
            None if manual => None,
            Some(start) => Some(format!(
                "period {tick_text} is not a tick of the stream's schedule (the period containing it starts at {}); a tick names the start of a period",
                text(start)
            )),
            None => Some(format!(
                "period {tick_text} is before the stream's schedule starts; only an operator's tick may name such a time"
            )),
        }
    }

    /// The first tick strictly after `after`.
    pub fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Periodic { anchor, period } => match self.current(after) {
                Some(current) => Some(current + *period),
                None => Some(*anchor),
            },
            Self::Cron(cron) => cron.find_next_occurrence(&after, false).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn periodic(anchor: &str, days: i64) -> Schedule {
        Schedule::Periodic {
            anchor: at(anchor),
            period: TimeDelta::days(days),
        }
    }

    #[test]
    fn periodic_ticks_are_anchor_plus_whole_periods() {
        let s = periodic("2026-11-03T12:00:00Z", 14);
        assert_eq!(s.current(at("2026-11-03T11:59:59Z")), None);
        assert_eq!(
            s.current(at("2026-11-03T12:00:00Z")),
            Some(at("2026-11-03T12:00:00Z"))
        );
        assert_eq!(
            s.current(at("2026-11-27T03:00:00Z")),
            Some(at("2026-11-17T12:00:00Z"))
        );
        assert_eq!(
            s.next(at("2026-11-27T03:00:00Z")),
            Some(at("2026-12-01T12:00:00Z"))
        );
        assert_eq!(
            s.next(at("2026-11-01T00:00:00Z")),
            Some(at("2026-11-03T12:00:00Z"))
        );
        // A tick exactly at `after` is not "next".
        assert_eq!(
            s.next(at("2026-11-17T12:00:00Z")),
            Some(at("2026-12-01T12:00:00Z"))
        );
    }

    #[test]
    fn only_begun_periods_of_the_schedule_are_ticks() {
        let s = periodic("2026-11-03T12:00:00Z", 14);
        let now = at("2026-11-27T03:00:00Z");
        assert_eq!(s.refuse(at("2026-11-17T12:00:00Z"), false, now), None);
        assert_eq!(
            s.refuse(at("2026-11-03T12:00:00Z"), false, now),
            None,
            "a past tick"
        );
        let off = s.refuse(at("2026-11-10T12:00:00Z"), false, now).unwrap();
        assert!(off.contains("not a tick of the stream's schedule"), "{off}");
        let far = s.refuse(at("2099-01-05T12:00:00Z"), false, now).unwrap();
        assert!(far.contains("is in the future"), "{far}");
        let next = at("2026-12-01T12:00:00Z");
        assert!(
            s.refuse(next, false, now).is_some(),
            "the next period has not begun"
        );
        assert_eq!(
            s.refuse(next, false, next - TimeDelta::minutes(1)),
            None,
            "a timer whose clock runs a minute ahead"
        );
        let early = at("2026-11-01T00:00:00Z");
        assert!(s.refuse(early, false, now).is_some(), "before the schedule");
        assert_eq!(
            s.refuse(early, true, now),
            None,
            "an operator fires before it starts"
        );
        let cron = Schedule::Cron(Box::new(Cron::from_str("0 15 * * TUE").unwrap()));
        assert_eq!(cron.refuse(at("2026-11-24T15:00:00Z"), false, now), None);
        assert!(cron.refuse(at("2026-11-25T15:00:00Z"), true, now).is_some());
    }

    #[test]
    fn a_six_field_cron_ticks_on_seconds_and_its_ticks_pass_validation() {
        // A leading seconds field is what compressed test seasons use; five fields still
        // mean minute granularity.
        let settings = settings::Settings::from_toml(
            r#"
            [store]
            root = "/srv/fortnight"
            [streams.f43]
            arches = ["x86_64"]
            input_refs = { x86_64 = "fedora/43/x86_64/atomic-host" }
            ostree_repo = "/srv/repo"
            formats = ["qcow2"]
            [streams.f43.twoweek]
            release_refs = { x86_64 = "fedora/43/x86_64/release" }
            cron = "*/20 * * * * *"
            "#,
        )
        .unwrap();
        let (stream, schedule) = crate::schedules(&settings).unwrap().remove(0);
        assert_eq!(stream.as_str(), "f43");
        let s = schedule;
        let now = at("2026-11-27T03:00:47Z");
        assert_eq!(s.current(now), Some(at("2026-11-27T03:00:40Z")));
        assert_eq!(s.next(now), Some(at("2026-11-27T03:01:00Z")));
        assert_eq!(s.refuse(at("2026-11-27T03:00:40Z"), false, now), None);
        let off = s.refuse(at("2026-11-27T03:00:30Z"), false, now).unwrap();
        assert!(off.contains("not a tick of the stream's schedule"), "{off}");
    }

    #[test]
    fn cron_ticks_follow_the_expression_in_utc() {
        let s = Schedule::Cron(Box::new(Cron::from_str("0 15 * * TUE").unwrap()));
        // 2026-11-27 is a Friday; the previous Tuesday is the 24th.
        assert_eq!(
            s.current(at("2026-11-27T03:00:00Z")),
            Some(at("2026-11-24T15:00:00Z"))
        );
        assert_eq!(
            s.next(at("2026-11-27T03:00:00Z")),
            Some(at("2026-12-01T15:00:00Z"))
        );
        assert_eq!(
            s.current(at("2026-11-24T15:00:00Z")),
            Some(at("2026-11-24T15:00:00Z"))
        );
    }
}
