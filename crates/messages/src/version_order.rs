//! Which of two tree versions is newer. Versions are `43.20261127.0` or compose ids
//! (`Fedora-43-20261127.n.1`): comparing digit runs as numbers and the rest as text orders
//! both the way people read them (`.10` after `.9`), which plain string order does not.

use std::cmp::Ordering;

use crate::Version;

fn runs(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let digits = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digits)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some(run)
    })
}

fn compare_runs(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| s.starts_with(|c: char| c.is_ascii_digit());
    if numeric(a) && numeric(b) {
        let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

/// Orders versions oldest first.
pub fn compare(a: &Version, b: &Version) -> Ordering {
    let (mut left, mut right) = (runs(a.as_str()), runs(b.as_str()));
    loop {
        match (left.next(), right.next()) {
            (None, None) => return a.as_str().cmp(b.as_str()),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match compare_runs(x, y) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    #[test]
    fn digit_runs_compare_as_numbers() {
        assert_eq!(
            compare(&v("43.20261127.10"), &v("43.20261127.9")),
            Ordering::Greater
        );
        assert_eq!(
            compare(&v("43.20261128.0"), &v("43.20261127.3")),
            Ordering::Greater
        );
        assert_eq!(
            compare(&v("Fedora-43-20261110.n.1"), &v("Fedora-43-20261110.n.0")),
            Ordering::Greater
        );
        assert_eq!(compare(&v("43.1"), &v("43.1.1")), Ordering::Less);
        assert_eq!(
            compare(&v("43.01"), &v("43.1")),
            Ordering::Less,
            "equal numbers fall back to text order"
        );
        assert_eq!(compare(&v("43.1"), &v("43.1")), Ordering::Equal);
    }
}
