//! Operator overrides and their audit log: `<root>/<stream>/overrides.jsonl`, one JSON object
//! per line, append-only (rewritten whole through a temporary file, so a reader never sees a
//! torn line). What is in force is computed from the log, so the log is the only state.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use chrono::{DateTime, Utc};
use messages::{Override, Stream, UserName, Version};
use serde::{Deserialize, Serialize};
use store::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Block,
    Unblock,
    Release,
    Hold,
    Unhold,
    /// Two-week releases moved to the stream (`fortnight.override.switch`).
    Switch,
    /// The stream's end of life (`fortnight.override.end-of-life`).
    EndOfLife,
}

impl Action {
    /// Whether the action concerns one candidate (and so needs a version).
    pub fn needs_version(self) -> bool {
        matches!(self, Action::Block | Action::Unblock | Action::Release)
    }
}

/// One line of the audit log: who asked what, when, why and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The override message's id; a redelivered message is not logged twice.
    pub id: String,
    pub action: Action,
    pub stream: Stream,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    pub operator: UserName,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
    /// On the line that follows a forced release: how it ended (released, or skipped and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl AuditEntry {
    pub fn new(id: String, action: Action, body: &Override, at: DateTime<Utc>) -> Self {
        Self {
            id,
            action,
            stream: body.stream.clone(),
            version: body.version.clone(),
            operator: body.operator.clone(),
            reason: body.reason.clone(),
            expires: body.expires,
            at,
            outcome: None,
        }
    }

    /// The line recording how this override's forced release ended; its id derives from the
    /// override's, so recording the same outcome twice (a replay) adds nothing.
    pub fn outcome(&self, outcome: String, at: DateTime<Utc>) -> Self {
        Self {
            id: format!("{}/outcome", self.id),
            at,
            outcome: Some(outcome),
            ..self.clone()
        }
    }

    fn in_force(&self, now: DateTime<Utc>) -> bool {
        self.expires.is_none_or(|expires| now < expires)
    }

    /// "by alice until 2026-12-01T00:00:00Z: reason" for skip reasons and status.
    pub fn describe(&self) -> String {
        match self.expires {
            Some(until) => format!(
                "by {} until {}: {}",
                self.operator,
                until.to_rfc3339(),
                self.reason
            ),
            None => format!("by {}: {}", self.operator, self.reason),
        }
    }
}

fn read_text(path: &Path) -> Result<String, StoreError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(StoreError::io("read", path)(e)),
    }
}

fn parse(path: &Path, text: &str) -> Result<Vec<AuditEntry>, StoreError> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).map_err(|source| StoreError::Json {
                path: path.to_owned(),
                source,
            })
        })
        .collect()
}

/// Every entry of a stream's audit log, oldest first.
pub fn read_log(store: &Store, stream: &Stream) -> Result<Vec<AuditEntry>, StoreError> {
    let path = store.overrides_log_path(stream);
    parse(&path, &read_text(&path)?)
}

/// Appends `entry` unless an entry with the same id is there. Returns whether it was added.
/// The caller holds the stream's lock.
pub fn append(store: &Store, entry: &AuditEntry) -> Result<bool, StoreError> {
    let path = store.overrides_log_path(&entry.stream);
    let mut text = read_text(&path)?;
    if parse(&path, &text)?.iter().any(|e| e.id == entry.id) {
        return Ok(false);
    }
    let line = serde_json::to_string(entry).map_err(|source| StoreError::Json {
        path: path.clone(),
        source,
    })?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    store::write_atomic(&path, text.as_bytes())?;
    Ok(true)
}

/// The overrides in force at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Active {
    pub hold: Option<AuditEntry>,
    pub blocks: BTreeMap<Version, AuditEntry>,
}

impl Active {
    /// Replays the log: the latest block/unblock of a candidate and the latest hold/unhold of
    /// the stream win, unless expired.
    pub fn at(log: &[AuditEntry], now: DateTime<Utc>) -> Self {
        let mut active = Self::default();
        for entry in log {
            match (entry.action, &entry.version) {
                (Action::Hold, _) => active.hold = Some(entry.clone()),
                (Action::Unhold, _) => active.hold = None,
                (Action::Block, Some(version)) => {
                    active.blocks.insert(version.clone(), entry.clone());
                }
                (Action::Unblock, Some(version)) => {
                    active.blocks.remove(version);
                }
                _ => {}
            }
        }
        active.hold = active.hold.filter(|e| e.in_force(now));
        active.blocks.retain(|_, e| e.in_force(now));
        active
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn entry(
        id: &str,
        action: Action,
        version: Option<&str>,
        minute: i64,
        expires: Option<i64>,
    ) -> AuditEntry {
        let start: DateTime<Utc> = "2026-11-27T00:00:00Z".parse().unwrap();
        AuditEntry {
            id: id.into(),
            action,
            stream: "f43".parse().unwrap(),
            version: version.map(|v| v.parse().unwrap()),
            operator: "alice".parse().unwrap(),
            reason: "r".into(),
            expires: expires.map(|m| start + TimeDelta::minutes(m)),
            at: start + TimeDelta::minutes(minute),
            outcome: None,
        }
    }

    #[test]
    fn latest_entry_wins_and_expired_ones_lapse() {
        let start: DateTime<Utc> = "2026-11-27T00:00:00Z".parse().unwrap();
        let log = vec![
            entry("1", Action::Block, Some("43.1"), 0, None),
            entry("2", Action::Block, Some("43.2"), 1, Some(10)),
            entry("3", Action::Hold, None, 2, None),
            entry("4", Action::Unblock, Some("43.1"), 3, None),
            entry("5", Action::Unhold, None, 4, None),
            entry("6", Action::Hold, None, 5, Some(20)),
        ];
        let early = Active::at(&log, start + TimeDelta::minutes(6));
        assert_eq!(
            early.blocks.keys().map(Version::as_str).collect::<Vec<_>>(),
            ["43.2"]
        );
        assert_eq!(early.hold.as_ref().map(|e| e.id.as_str()), Some("6"));
        let late = Active::at(&log, start + TimeDelta::minutes(30));
        assert!(late.blocks.is_empty() && late.hold.is_none());
    }
}
