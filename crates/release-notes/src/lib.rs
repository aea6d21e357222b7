//! Release notes read from the trees themselves: what changed between two OSTree commits.
//!
//! - **Packages**: each commit's RPM database (`usr/lib/sysimage/rpm`, or `usr/share/rpm` in
//!   older trees) is checked out alone into a scratch directory (`ostree checkout --subpath`,
//!   never the whole tree) and listed with `rpm --dbpath DIR -qa`. Debian's `rpm` reads every
//!   database format Fedora has shipped (SQLite since Fedora 33, Berkeley DB before, read-only),
//!   and an RPM database row is a binary RPM header that only rpm's own library decodes; so
//!   rpm, not a SQLite reader. Packages are then compared by name and arch, their versions in
//!   RPM's order ([`evr`]).
//! - **The tree**: commits between the two (`ostree log`) and files added, modified and
//!   removed (`ostree diff`).
//!
//! A commit without an RPM database says so ([`Packages::NoRpmDatabase`]) rather than
//! showing an empty diff.

pub mod evr;
mod rpmdb;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use messages::{
    Arch, ChangeCounts, Commit, FileCounts, PackageCounts, ReleaseChanges, ReleasePublished,
    Version,
};
use ostree_cli::{OstreeError, Repo};
use serde::{Deserialize, Serialize};

pub use evr::Evr;
pub use rpmdb::{RPMDB_PATHS, installed_packages};

#[derive(Debug, thiserror::Error)]
pub enum NotesError {
    #[error(transparent)]
    Ostree(#[from] OstreeError),
    #[error(
        "cannot run `rpm` to list the packages of {commit}: {source}; install rpm (Debian: apt-get install rpm)"
    )]
    RpmSpawn {
        commit: Commit,
        source: std::io::Error,
    },
    #[error("`rpm -qa` failed on the RPM database of {commit} ({status}): {stderr}")]
    RpmFailed {
        commit: Commit,
        status: String,
        stderr: String,
    },
    #[error(
        "`rpm -qa` printed {line:?} for {commit}, which is not name, epoch, version, release and arch"
    )]
    RpmOutput { commit: Commit, line: String },
    #[error(
        "cannot make a scratch directory for the RPM database of {commit}: {source}; check that TMPDIR is writable"
    )]
    Scratch {
        commit: Commit,
        source: std::io::Error,
    },
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub arch: String,
    /// `[epoch:]version-release`.
    #[serde(with = "evr_text")]
    pub evr: Evr,
}

/// A package present on both sides in another version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageChange {
    pub name: String,
    pub arch: String,
    #[serde(with = "evr_text")]
    pub from: Evr,
    #[serde(with = "evr_text")]
    pub to: Evr,
}

/// The packages of two trees compared, each list sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageDiff {
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
    pub upgraded: Vec<PackageChange>,
    pub downgraded: Vec<PackageChange>,
}

/// The package side of two trees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Packages {
    Compared(PackageDiff),
    /// These commits have no RPM database, so their packages cannot be compared.
    NoRpmDatabase(Vec<Commit>),
}

/// What changed between two commits of one arch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeChanges {
    pub from: Commit,
    pub to: Commit,
    /// Commits from `from` to `to`; absent when `from` is not an ancestor of `to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commits: Option<u64>,
    pub files: FileCounts,
    pub packages: Packages,
}

/// A release's notes: every arch's changes against the stream's previous release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseNotes {
    pub against: Version,
    pub arches: BTreeMap<Arch, TreeChanges>,
}

/// `releases/<version>/release.json`: the `fortnight.release.published` body as sent, plus
/// the full release notes, which the message only counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    #[serde(flatten)]
    pub published: ReleasePublished,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<ReleaseNotes>,
}

/// Compares two installed package lists.
pub fn diff_packages(from: &[Package], to: &[Package]) -> PackageDiff {
    type Versions<'a> = BTreeMap<(&'a str, &'a str), BTreeSet<&'a Evr>>;
    fn index(packages: &[Package]) -> Versions<'_> {
        let mut index = Versions::new();
        for p in packages {
            index
                .entry((p.name.as_str(), p.arch.as_str()))
                .or_default()
                .insert(&p.evr);
        }
        index
    }
    let (old, new) = (index(from), index(to));
    let mut diff = PackageDiff::default();
    let package = |(name, arch): (&str, &str), evr: &Evr| Package {
        name: name.to_owned(),
        arch: arch.to_owned(),
        evr: evr.clone(),
    };
    let keys: BTreeSet<_> = old.keys().chain(new.keys()).copied().collect();
    for key in keys {
        let none = BTreeSet::new();
        let (before, after) = (
            old.get(&key).unwrap_or(&none),
            new.get(&key).unwrap_or(&none),
        );
        if before == after {
            continue;
        }
        // One version on each side is an update; several (install-only packages such as
        // kernels) are compared as sets.
        if let ([from], [to]) = (
            before.iter().collect::<Vec<_>>().as_slice(),
            after.iter().collect::<Vec<_>>().as_slice(),
        ) {
            let change = PackageChange {
                name: key.0.to_owned(),
                arch: key.1.to_owned(),
                from: (**from).clone(),
                to: (**to).clone(),
            };
            match to.rpm_cmp(from) {
                std::cmp::Ordering::Greater => diff.upgraded.push(change),
                std::cmp::Ordering::Less => diff.downgraded.push(change),
                // Spelled otherwise but the same version to rpm (`0:1.0-1` and `1.0-1`),
                // which would not update one to the other.
                std::cmp::Ordering::Equal => {}
            }
            continue;
        }
        diff.removed
            .extend(before.difference(after).map(|evr| package(key, evr)));
        diff.added
            .extend(after.difference(before).map(|evr| package(key, evr)));
    }
    diff
}

/// Compares two commits of `repo`: commits between them, files, and packages.
pub fn compare(repo: &Repo, from: &Commit, to: &Commit) -> Result<TreeChanges, NotesError> {
    let (old, new) = std::thread::scope(|scope| {
        let old = scope.spawn(|| installed_packages(repo, from));
        let new = installed_packages(repo, to);
        (
            old.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            new,
        )
    });
    let packages = match (old?, new?) {
        (Some(old), Some(new)) => Packages::Compared(diff_packages(&old, &new)),
        (old, new) => Packages::NoRpmDatabase(
            [(old.is_none(), from), (new.is_none(), to)]
                .into_iter()
                .filter(|(missing, _)| *missing)
                .map(|(_, commit)| commit.clone())
                .collect(),
        ),
    };
    Ok(TreeChanges {
        from: from.clone(),
        to: to.clone(),
        commits: repo.commits_between(from, to)?,
        files: repo.diff_counts(from, to)?,
        packages,
    })
}

impl PackageDiff {
    pub fn counts(&self) -> PackageCounts {
        let count = |n: usize| n as u64;
        PackageCounts {
            added: count(self.added.len()),
            removed: count(self.removed.len()),
            upgraded: count(self.upgraded.len()),
            downgraded: count(self.downgraded.len()),
        }
    }
}

impl TreeChanges {
    pub fn counts(&self) -> ChangeCounts {
        ChangeCounts {
            packages: match &self.packages {
                Packages::Compared(diff) => Some(diff.counts()),
                Packages::NoRpmDatabase(_) => None,
            },
            commits: self.commits,
            files: self.files,
        }
    }

    /// Plain text, one line per package, for a terminal or a mail.
    pub fn write_text(&self, out: &mut String) {
        let commits = self
            .commits
            .map_or_else(|| "not a descendant".to_owned(), |n| format!("{n} commits"));
        let _ = writeln!(
            out,
            "  tree {} -> {} ({commits}; files: {} added, {} modified, {} removed)",
            short(&self.from),
            short(&self.to),
            self.files.added,
            self.files.modified,
            self.files.removed
        );
        let diff = match &self.packages {
            Packages::Compared(diff) => diff,
            Packages::NoRpmDatabase(commits) => {
                for commit in commits {
                    let _ = writeln!(out, "  no RPM database in {commit}");
                }
                return;
            }
        };
        let counts = diff.counts();
        let _ = writeln!(
            out,
            "  packages: {} upgraded, {} downgraded, {} added, {} removed",
            counts.upgraded, counts.downgraded, counts.added, counts.removed
        );
        for (what, changes) in [
            ("upgraded", &diff.upgraded),
            ("downgraded", &diff.downgraded),
        ] {
            for c in changes {
                let _ = writeln!(
                    out,
                    "    {what} {}.{} {} -> {}",
                    c.name, c.arch, c.from, c.to
                );
            }
        }
        for (what, packages) in [("added", &diff.added), ("removed", &diff.removed)] {
            for p in packages {
                let _ = writeln!(out, "    {what} {}.{} {}", p.name, p.arch, p.evr);
            }
        }
    }
}

impl ReleaseNotes {
    /// The counts `fortnight.release.published` carries, with where the full notes are.
    pub fn changes(&self, url: String) -> ReleaseChanges {
        ReleaseChanges {
            against: self.against.clone(),
            url,
            arches: self
                .arches
                .iter()
                .map(|(arch, changes)| (arch.clone(), changes.counts()))
                .collect(),
        }
    }

    /// Every arch's changes as plain text, under a heading naming both versions.
    pub fn text(&self, version: &Version) -> String {
        let mut out = format!("{} -> {version}\n", self.against);
        for (arch, changes) in &self.arches {
            let _ = writeln!(out, "{arch}:");
            changes.write_text(&mut out);
        }
        out
    }
}

fn short(commit: &Commit) -> &str {
    &commit.as_str()[..12]
}

/// `[epoch:]version-release` as one string in JSON, as people write it.
mod evr_text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::Evr;

    pub fn serialize<S: Serializer>(evr: &Evr, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(evr)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Evr, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, evr: &str) -> Package {
        Package {
            name: name.to_owned(),
            arch: "noarch".to_owned(),
            evr: evr.parse().unwrap(),
        }
    }

    #[test]
    fn a_diff_sorts_every_package_into_one_list() {
        let old = [
            package("same", "1.0-1"),
            package("up", "1.9-1"),
            package("down", "1:1.0-1"),
            package("gone", "1.0-1"),
            package("kernel", "6.1-1"),
            package("kernel", "6.2-1"),
        ];
        let new = [
            package("same", "1.0-1"),
            package("up", "1.10-1"),
            package("down", "2.0-1"),
            package("new", "0.1-1"),
            package("kernel", "6.2-1"),
            package("kernel", "6.3-1"),
        ];
        let diff = diff_packages(&old, &new);
        let names = |list: &[Package]| {
            list.iter()
                .map(|p| format!("{}-{}", p.name, p.evr))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&diff.added), ["kernel-6.3-1", "new-0.1-1"]);
        assert_eq!(names(&diff.removed), ["gone-1.0-1", "kernel-6.1-1"]);
        assert_eq!(diff.upgraded.len(), 1);
        assert_eq!(
            (
                diff.upgraded[0].name.as_str(),
                diff.upgraded[0].to.to_string()
            ),
            ("up", "1.10-1".to_owned())
        );
        assert_eq!(diff.downgraded.len(), 1);
        assert_eq!(diff.downgraded[0].name, "down");
        assert_eq!(
            diff.counts(),
            PackageCounts {
                added: 2,
                removed: 2,
                upgraded: 1,
                downgraded: 1
            }
        );
    }

    #[test]
    fn the_same_package_on_another_arch_is_another_package() {
        let mut i686 = package("glibc", "2.40-1");
        i686.arch = "i686".to_owned();
        let mut x86_64 = package("glibc", "2.40-1");
        x86_64.arch = "x86_64".to_owned();
        let diff = diff_packages(
            std::slice::from_ref(&x86_64),
            &[x86_64.clone(), i686.clone()],
        );
        assert_eq!(diff.added, [i686]);
        assert!(diff.removed.is_empty() && diff.upgraded.is_empty());
    }

    #[test]
    fn notes_read_back_as_written() {
        let changes = TreeChanges {
            from: "a".repeat(64).parse().unwrap(),
            to: "b".repeat(64).parse().unwrap(),
            commits: Some(2),
            files: FileCounts::default(),
            packages: Packages::Compared(diff_packages(
                &[package("up", "1-1")],
                &[package("up", "2:1-1")],
            )),
        };
        let json = serde_json::to_value(&changes).unwrap();
        assert_eq!(json["packages"]["compared"]["upgraded"][0]["to"], "2:1-1");
        assert_eq!(
            serde_json::from_value::<TreeChanges>(json).unwrap(),
            changes
        );
    }
}
