//! RPM's version order: `epoch:version-release`, each part compared as `rpmvercmp` does
//! (rpm 4.18's `rpmio/rpmvercmp.c`), so that `1.10` is newer than `1.9`, `1.0~rc1` older
//! than `1.0` and `1.0^git1` newer than `1.0`.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// An installed package's `[epoch:]version-release`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Evr {
    /// Absent when the package has none, which orders as 0.
    pub epoch: Option<u64>,
    pub version: String,
    pub release: String,
}

impl Ord for Evr {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .unwrap_or(0)
            .cmp(&other.epoch.unwrap_or(0))
            .then_with(|| rpmvercmp(&self.version, &other.version))
            .then_with(|| rpmvercmp(&self.release, &other.release))
            // Equal in rpm's eyes (`1.01` and `1.1`, a missing and a zero epoch) but not the
            // same text: any fixed order keeps `Ord` consistent with `Eq`.
            .then_with(|| self.epoch.cmp(&other.epoch))
            .then_with(|| self.version.cmp(&other.version))
            .then_with(|| self.release.cmp(&other.release))
    }
}

impl PartialOrd for Evr {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Evr {
    /// RPM's own verdict, which calls `1.01` and `1.1` equal.
    pub fn rpm_cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .unwrap_or(0)
            .cmp(&other.epoch.unwrap_or(0))
            .then_with(|| rpmvercmp(&self.version, &other.version))
            .then_with(|| rpmvercmp(&self.release, &other.release))
    }
}

impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(epoch) = self.epoch {
            write!(f, "{epoch}:")?;
        }
        write!(f, "{}-{}", self.version, self.release)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an RPM [epoch:]version-release")]
pub struct InvalidEvr(String);

impl FromStr for Evr {
    type Err = InvalidEvr;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidEvr(text.to_owned());
        let (epoch, rest) = match text.split_once(':') {
            Some((epoch, rest)) => (Some(epoch.parse().map_err(|_| invalid())?), rest),
            None => (None, text),
        };
        let (version, release) = rest.rsplit_once('-').ok_or_else(invalid)?;
        if version.is_empty() || release.is_empty() || version.contains('-') {
            return Err(invalid());
        }
        Ok(Self {
            epoch,
            version: version.to_owned(),
            release: release.to_owned(),
        })
    }
}

/// rpm's `rpmvercmp`: alternating runs of digits and of letters compared one by one (digits
/// as numbers, letters as text, a number newer than letters); anything else separates runs,
/// except `~`, which sorts before everything (even the end), and `^`, which sorts after the
/// end but before anything else.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let is_separator = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    let (mut one, mut two) = (a.as_bytes(), b.as_bytes());
    while !one.is_empty() || !two.is_empty() {
        while one.first().is_some_and(|&c| is_separator(c)) {
            one = &one[1..];
        }
        while two.first().is_some_and(|&c| is_separator(c)) {
            two = &two[1..];
        }
        match (one.first(), two.first()) {
            (Some(b'~'), Some(b'~')) => {
                (one, two) = (&one[1..], &two[1..]);
                continue;
            }
            (Some(b'~'), _) => return Ordering::Less,
            (_, Some(b'~')) => return Ordering::Greater,
            _ => {}
        }
        match (one.first(), two.first()) {
            (None, Some(b'^')) => return Ordering::Less,
            (Some(b'^'), None) => return Ordering::Greater,
            (Some(b'^'), Some(b'^')) => {
                (one, two) = (&one[1..], &two[1..]);
                continue;
            }
            (Some(b'^'), _) => return Ordering::Less,
            (_, Some(b'^')) => return Ordering::Greater,
            _ => {}
        }
        if one.is_empty() || two.is_empty() {
            break;
        }
        let numeric = one[0].is_ascii_digit();
        let in_run = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let run_one = one.iter().take_while(|c| in_run(c)).count();
        let run_two = two.iter().take_while(|c| in_run(c)).count();
        if run_two == 0 {
            // Different kinds of run: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut segment_one, mut segment_two) = (&one[..run_one], &two[..run_two]);
        if numeric {
            let zeros = |s: &[u8]| s.iter().take_while(|&&c| c == b'0').count();
            segment_one = &segment_one[zeros(segment_one)..];
            segment_two = &segment_two[zeros(segment_two)..];
            match segment_one.len().cmp(&segment_two.len()) {
                Ordering::Equal => {}
                longer_wins => return longer_wins,
            }
        }
        match segment_one.cmp(segment_two) {
            Ordering::Equal => {}
            decided => return decided,
        }
        (one, two) = (&one[run_one..], &two[run_two..]);
    }
    match (one.is_empty(), two.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, _) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rpm's own test cases (`tests/rpmvercmp.at`, rpm 4.18): (a, b, rpmvercmp(a, b)).
    const RPM_CASES: &[(&str, &str, i8)] = &[
        ("1.0", "1.0", 0),
        ("1.0", "2.0", -1),
        ("2.0", "1.0", 1),
        ("2.0.1", "2.0.1", 0),
        ("2.0", "2.0.1", -1),
        ("2.0.1", "2.0", 1),
        ("2.0.1a", "2.0.1a", 0),
        ("2.0.1a", "2.0.1", 1),
        ("2.0.1", "2.0.1a", -1),
        ("5.5p1", "5.5p1", 0),
        ("5.5p1", "5.5p2", -1),
        ("5.5p2", "5.5p1", 1),
        ("5.5p10", "5.5p10", 0),
        ("5.5p1", "5.5p10", -1),
        ("5.5p10", "5.5p1", 1),
        ("10xyz", "10.1xyz", -1),
        ("10.1xyz", "10xyz", 1),
        ("xyz10", "xyz10", 0),
        ("xyz10", "xyz10.1", -1),
        ("xyz10.1", "xyz10", 1),
        ("xyz.4", "xyz.4", 0),
        ("xyz.4", "8", -1),
        ("8", "xyz.4", 1),
        ("xyz.4", "2", -1),
        ("2", "xyz.4", 1),
        ("5.5p2", "5.6p1", -1),
        ("5.6p1", "5.5p2", 1),
        ("5.6p1", "6.5p1", -1),
        ("6.5p1", "5.6p1", 1),
        ("6.0.rc1", "6.0", 1),
        ("6.0", "6.0.rc1", -1),
        ("10b2", "10a1", 1),
        ("10a2", "10b2", -1),
        ("1.0aa", "1.0aa", 0),
        ("1.0a", "1.0aa", -1),
        ("1.0aa", "1.0a", 1),
        ("10.0001", "10.0001", 0),
        ("10.0001", "10.1", 0),
        ("10.1", "10.0001", 0),
        ("10.0001", "10.0039", -1),
        ("10.0039", "10.0001", 1),
        ("4.999.9", "5.0", -1),
        ("5.0", "4.999.9", 1),
        ("20101121", "20101121", 0),
        ("20101121", "20101122", -1),
        ("20101122", "20101121", 1),
        ("2_0", "2_0", 0),
        ("2.0", "2_0", 0),
        ("2_0", "2.0", 0),
        ("a", "a", 0),
        ("a+", "a+", 0),
        ("a+", "a_", 0),
        ("a_", "a+", 0),
        ("+a", "+a", 0),
        ("+a", "_a", 0),
        ("_a", "+a", 0),
        ("+_", "+_", 0),
        ("_+", "+_", 0),
        ("_+", "_+", 0),
        ("+", "_", 0),
        ("_", "+", 0),
        ("1.0~rc1", "1.0~rc1", 0),
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0~rc1", 1),
        ("1.0~rc1", "1.0~rc2", -1),
        ("1.0~rc2", "1.0~rc1", 1),
        ("1.0~rc1~git123", "1.0~rc1~git123", 0),
        ("1.0~rc1~git123", "1.0~rc1", -1),
        ("1.0~rc1", "1.0~rc1~git123", 1),
        ("1.0^", "1.0^", 0),
        ("1.0^", "1.0", 1),
        ("1.0", "1.0^", -1),
        ("1.0^git1", "1.0^git1", 0),
        ("1.0^git1", "1.0", 1),
        ("1.0", "1.0^git1", -1),
        ("1.0^git1", "1.0^git2", -1),
        ("1.0^git2", "1.0^git1", 1),
        ("1.0^git1", "1.01", -1),
        ("1.01", "1.0^git1", 1),
        ("1.0^20160101", "1.0^20160101", 0),
        ("1.0^20160101", "1.0.1", -1),
        ("1.0.1", "1.0^20160101", 1),
        ("1.0^20160101^git1", "1.0^20160101^git1", 0),
        ("1.0^20160102", "1.0^20160101^git1", 1),
        ("1.0^20160101^git1", "1.0^20160102", -1),
        ("1.0~rc1^git1", "1.0~rc1^git1", 0),
        ("1.0~rc1^git1", "1.0~rc1", 1),
        ("1.0~rc1", "1.0~rc1^git1", -1),
        ("1.0^git1~pre", "1.0^git1~pre", 0),
        ("1.0^git1", "1.0^git1~pre", 1),
        ("1.0^git1~pre", "1.0^git1", -1),
    ];

    #[test]
    fn rpmvercmp_agrees_with_rpms_own_cases() {
        for (a, b, expected) in RPM_CASES {
            assert_eq!(rpmvercmp(a, b), expected.cmp(&0), "rpmvercmp({a:?}, {b:?})");
        }
    }

    #[test]
    fn epoch_wins_over_version_and_release_last() {
        let evr = |text: &str| text.parse::<Evr>().unwrap();
        assert!(evr("1:1.0-1") > evr("9.9-9"));
        assert!(evr("1.0-10.fc43") > evr("1.0-9.fc43"));
        assert_eq!(evr("0:1.0-1").rpm_cmp(&evr("1.0-1")), Ordering::Equal);
        assert_ne!(evr("0:1.0-1"), evr("1.0-1"));
        assert_eq!(evr("2:1.0-1").to_string(), "2:1.0-1");
        assert_eq!(evr("1.0-1").to_string(), "1.0-1");
        assert!("1.0".parse::<Evr>().is_err());
        assert!("x:1.0-1".parse::<Evr>().is_err());
    }
}
