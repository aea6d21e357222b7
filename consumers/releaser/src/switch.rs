//! The switch: the two-week releases move from a stream to the one that `succeeds` it, by an
//! operator's `fortnight.override.switch` or at the successor's `switch_at` (noticed by the
//! releaser's clock, [`crate::deadlines`]). The releaser alone performs it, because it owns the
//! two-week state: under both streams' locks (the old one's first, as everywhere), it writes
//! `<new stream>/.switch.json` ([`SwitchRecord`], read by everyone through
//! [`gate::succession`]) and announces `fortnight.stream.switched` under an id derived from the
//! new stream, so a switch asked again, or a clock round run again, announces the same message.
//!
//! An operator's switch is checked like the other overrides (an operator's own account, a
//! reason) and kept in the new stream's audit log. A request that cannot switch (a stream that
//! succeeds nothing, or one that already took over, by the date or another request) is refused
//! and dead-lettered, as an invalid override is; the same request delivered again (its message
//! id is in the record) announces the switch again. With `release_now`, the new stream's
//! current period is ticked at once; otherwise its first two-week release comes at its next
//! tick.

use chrono::{DateTime, Utc};
use gate::succession::{self, SwitchRecord};
use messages::{
    Incoming, Message, Outgoing, OverrideSwitch, Period, Stream, StreamSwitched, SwitchCause,
    derived_id,
};
use settings::{StreamSettings, TwoWeekSettings};
use store::StoreError;

use crate::overrides::{self, Action, AuditEntry};
use crate::{NAME, Releaser, store_error, twoweek_stream};

/// The id of the announcement that two-week releases moved to `to`: one per stream, whoever
/// switched it.
fn announcement_id(to: &Stream) -> uuid::Uuid {
    derived_id(NAME, &[to.as_str(), StreamSwitched::TOPIC])
}

/// The announcement of a recorded switch.
pub fn announcement(record: &SwitchRecord) -> Outgoing {
    Outgoing::new(record.id, &record.switched)
}

/// When `to`'s first two-week release is due after a switch at `at`: its next tick.
fn next_tick(to: &Stream, twoweek: &TwoWeekSettings, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    release_timer::Schedule::for_stream(to, twoweek)
        .ok()
        .and_then(|schedule| schedule.next(at))
}

/// The switches a round of the clock makes: the streams whose `switch_at` came without a
/// switch recorded, and the next `switch_at` still to come.
#[derive(Debug, Default)]
pub(crate) struct DueSwitches {
    pub due: Vec<Stream>,
    pub next: Option<DateTime<Utc>>,
}

impl Releaser {
    /// The locks of the stream that hands over and of the one that takes over, in that order.
    pub(crate) fn switch_locks(
        &self,
        from: &Stream,
        to: &Stream,
    ) -> Result<[store::LockGuard; 2], StoreError> {
        Ok([
            store::lock(&self.lock_path(from))?,
            store::lock(&self.lock_path(to))?,
        ])
    }

    /// An operator's `fortnight.override.switch`.
    pub(crate) fn switch_requested(
        &self,
        body: OverrideSwitch,
        message: &Incoming,
    ) -> Result<bus::Outputs, bus::StepError> {
        self.check_operator(message, "switch", &body.operator)?;
        if body.reason.trim().is_empty() {
            return Err(bus::StepError::permanent("a switch needs a reason"));
        }
        let to = &body.stream;
        let (settings, twoweek) = twoweek_stream(&self.settings, to)?;
        let Some(from) = &settings.succeeds else {
            return Err(bus::StepError::permanent(format!(
                "cannot switch to {to}: it succeeds no stream; set `succeeds` in [streams.{to}]"
            )));
        };
        let request_id = self.override_id(&body, message);
        let now = Utc::now();
        let _locks = self
            .switch_locks(from, to)
            .map_err(store_error("cannot lock the streams"))?;
        let record = match succession::read_switch(&self.store, to)
            .map_err(store_error("cannot read the switch record"))?
        {
            Some(record) if record.requested_by.as_deref() == Some(request_id.as_str()) => {
                tracing::info!(from = %from, to = %to, id = %request_id, "switch asked again; announced again");
                record
            }
            Some(record) => {
                return Err(bus::StepError::permanent(format!(
                    "cannot switch to {to}: two-week releases already moved to it from {from} at {}; nothing to do",
                    record.switched.at.to_rfc3339()
                )));
            }
            None => {
                if let Some(at) = succession::switched_at(&self.settings, &self.store, to, now)
                    .map_err(store_error("cannot read the switch record"))?
                {
                    return Err(bus::StepError::permanent(format!(
                        "cannot switch to {to}: its switch_at ({}) has passed, so it already took over from {from}; nothing to do",
                        at.to_rfc3339()
                    )));
                }
                let switched = StreamSwitched {
                    from: from.clone(),
                    to: to.clone(),
                    at: now,
                    cause: SwitchCause::Operator {
                        operator: body.operator.clone(),
                        reason: body.reason.clone(),
                    },
                    next_tick: if body.release_now {
                        Some(now)
                    } else {
                        next_tick(to, twoweek, now)
                    },
                };
                let entry = AuditEntry {
                    id: request_id.clone(),
                    action: Action::Switch,
                    stream: to.clone(),
                    version: None,
                    operator: body.operator.clone(),
                    reason: format!("from {from}: {}", body.reason),
                    expires: None,
                    at: now,
                    outcome: None,
                };
                // The log first: a crash before the record is finished by the redelivery,
                // which finds no record and logs nothing twice.
                overrides::append(&self.store, &entry)
                    .map_err(store_error("cannot append to the override audit log"))?;
                let record = SwitchRecord {
                    id: announcement_id(to),
                    requested_by: Some(request_id.clone()),
                    switched,
                };
                store::write_json(&self.store.switch_record_path(to), &record)
                    .map_err(store_error("cannot record the switch"))?;
                tracing::warn!(from = %from, to = %to, operator = %body.operator, reason = %body.reason, release_now = body.release_now, "two-week releases switched by an operator");
                record
            }
        };
        let mut out = vec![announcement(&record)];
        if body.release_now {
            out.extend(self.release_now(to, settings, twoweek, now)?);
        }
        Ok(out)
    }

    /// The new stream's current period, ticked at once (an operator's `release_now`).
    fn release_now(
        &self,
        to: &Stream,
        settings: &StreamSettings,
        twoweek: &TwoWeekSettings,
        now: DateTime<Utc>,
    ) -> Result<bus::Outputs, bus::StepError> {
        let scheduled = release_timer::Schedule::for_stream(to, twoweek)
            .map_err(|error| bus::StepError::permanent(error.to_string()))?
            .current(now)
            .unwrap_or(now);
        let period = Period::starting_at(scheduled);
        tracing::info!(stream = %to, period = %period, "first two-week release after the switch, at once");
        self.tick_period(to, settings, twoweek, &period, now)
    }

    /// The streams whose `switch_at` came without a switch recorded, and when the next one
    /// that has not come yet is due.
    pub(crate) fn due_switches(
        &self,
        now: DateTime<Utc>,
    ) -> Result<DueSwitches, (Stream, StoreError)> {
        let mut switches = DueSwitches::default();
        for (to, s) in &self.settings.streams {
            let Some(at) = s.switch_at.filter(|_| s.succeeds.is_some()) else {
                continue;
            };
            if at > now {
                switches.next = Some(switches.next.map_or(at, |n| n.min(at)));
            } else if succession::read_switch(&self.store, to)
                .map_err(|error| (to.clone(), error))?
                .is_none()
            {
                switches.due.push(to.clone());
            }
        }
        Ok(switches)
    }

    /// The switch of `to` at its `switch_at`, as the clock announces it before recording it:
    /// `None` when it is recorded already. The body derives from the configuration only, so a
    /// round cut short between the announcement and the record announces the same again.
    pub(crate) fn switch_by_date(&self, to: &Stream) -> Result<Option<SwitchRecord>, StoreError> {
        let Some((s, Some(from), Some(at))) = self
            .settings
            .stream(to)
            .map(|s| (s, s.succeeds.as_ref(), s.switch_at))
        else {
            return Ok(None);
        };
        if succession::read_switch(&self.store, to)?.is_some() {
            return Ok(None);
        }
        let switched = StreamSwitched {
            from: from.clone(),
            to: to.clone(),
            at,
            cause: SwitchCause::Date,
            next_tick: s.twoweek.as_ref().and_then(|tw| next_tick(to, tw, at)),
        };
        Ok(Some(SwitchRecord {
            id: announcement_id(to),
            requested_by: None,
            switched,
        }))
    }

    /// Records a switch the clock announced.
    pub(crate) fn record_switch(&self, record: &SwitchRecord) -> Result<(), StoreError> {
        store::write_json(&self.store.switch_record_path(&record.switched.to), record)?;
        tracing::warn!(from = %record.switched.from, to = %record.switched.to, at = %record.switched.at, "two-week releases switched at the configured date");
        Ok(())
    }
}
