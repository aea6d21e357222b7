//! Bodhi's karma rules: only each tester's latest vote counts, the sum is compared with the
//! stream's stable and unstable thresholds.

use messages::{KarmaStatus, Vote};
use settings::KarmaSettings;

/// The karma of one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub karma: i32,
    /// The latest vote of each tester, oldest first.
    pub votes: Vec<Vote>,
    /// Set once a threshold is reached; unstable wins when both could apply.
    pub status: Option<KarmaStatus>,
}

impl Tally {
    /// Counts `votes`, keeping only each user's latest (by time, then by order given).
    pub fn count(votes: impl IntoIterator<Item = Vote>, thresholds: &KarmaSettings) -> Self {
        let mut latest: Vec<Vote> = Vec::new();
        for vote in votes {
            match latest.iter_mut().find(|v| v.user == vote.user) {
                Some(existing) if existing.at <= vote.at => *existing = vote,
                Some(_) => {}
                None => latest.push(vote),
            }
        }
        latest.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.user.cmp(&b.user)));
        let karma = latest.iter().map(|v| i32::from(v.karma)).sum();
        let status = if karma <= thresholds.unstable_threshold {
            Some(KarmaStatus::Unstable)
        } else if karma >= thresholds.stable_threshold {
            Some(KarmaStatus::Stable)
        } else {
            None
        };
        Self {
            karma,
            votes: latest,
            status,
        }
    }

    /// Why the human gate is not passed, or none when it is.
    pub fn gate_reason(&self, thresholds: &KarmaSettings) -> Option<String> {
        match self.status {
            Some(KarmaStatus::Stable) => None,
            Some(KarmaStatus::Unstable) => Some(format!(
                "karma {:+} reached the unstable threshold {:+}",
                self.karma, thresholds.unstable_threshold
            )),
            None => Some(format!(
                "karma {:+} is below the stable threshold {:+} ({} vote(s))",
                self.karma,
                thresholds.stable_threshold,
                self.votes.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};

    use super::*;

    fn vote(user: &str, karma: i8, minute: i64) -> Vote {
        let start: DateTime<Utc> = "2026-11-27T00:00:00Z".parse().unwrap();
        Vote {
            user: user.parse().unwrap(),
            karma,
            comment: None,
            at: start + TimeDelta::minutes(minute),
        }
    }

    #[test]
    fn only_the_latest_vote_of_each_user_counts() {
        let k = KarmaSettings::default();
        let t = Tally::count([vote("a", 1, 0), vote("a", 1, 1), vote("a", 1, 2)], &k);
        assert_eq!((t.karma, t.status, t.votes.len()), (1, None, 1));
        // An older vote delivered late does not replace a newer one.
        let t = Tally::count([vote("a", -1, 5), vote("a", 1, 1)], &k);
        assert_eq!(t.karma, -1);
    }

    #[test]
    fn thresholds_decide_the_status() {
        let k = KarmaSettings::default();
        let stable = Tally::count([vote("a", 1, 0), vote("b", 1, 1), vote("c", 1, 2)], &k);
        assert_eq!(stable.status, Some(KarmaStatus::Stable));
        assert_eq!(stable.gate_reason(&k), None);
        let unstable = Tally::count([vote("a", -1, 0), vote("b", -1, 1), vote("c", -1, 2)], &k);
        assert_eq!(unstable.status, Some(KarmaStatus::Unstable));
        assert!(
            unstable
                .gate_reason(&k)
                .unwrap()
                .contains("unstable threshold -3")
        );
        let changed_mind = Tally::count(
            [
                vote("a", 1, 0),
                vote("b", 1, 1),
                vote("c", 1, 2),
                vote("c", 0, 3),
            ],
            &k,
        );
        assert_eq!((changed_mind.karma, changed_mind.status), (2, None));
        assert!(
            changed_mind
                .gate_reason(&k)
                .unwrap()
                .contains("below the stable threshold +3")
        );
    }
}
