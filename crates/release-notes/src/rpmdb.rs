//! Lists the packages of a commit from its RPM database, without checking out the tree.

use std::path::Path;
use std::process::Command;

use messages::Commit;
use ostree_cli::Repo;

use crate::{NotesError, Package};

/// Where trees keep their RPM database, newest layout first (Fedora moved it to
/// `/usr/lib/sysimage/rpm` and left `/usr/share/rpm` as a link to it).
pub const RPMDB_PATHS: [&str; 2] = ["/usr/lib/sysimage/rpm", "/usr/share/rpm"];

/// One line per package: name, epoch, version, release, arch.
const QUERY_FORMAT: &str = "%{NAME}\\t%{EPOCH}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n";

/// What rpm prints for a tag the header lacks (a package without an epoch).
const NONE: &str = "(none)";

/// The packages installed in `commit`'s tree; `None` when the tree has no RPM database.
pub fn installed_packages(
    repo: &Repo,
    commit: &Commit,
) -> Result<Option<Vec<Package>>, NotesError> {
    let scratch = tempfile::Builder::new()
        .prefix("fortnight-rpmdb-")
        .tempdir()
        .map_err(|source| NotesError::Scratch {
            commit: commit.clone(),
            source,
        })?;
    for (index, path) in RPMDB_PATHS.iter().enumerate() {
        let dbpath = scratch.path().join(index.to_string());
        if repo.checkout_subpath(commit, path, &dbpath)? && holds_database(&dbpath) {
            return query(commit, &dbpath, scratch.path()).map(Some);
        }
    }
    Ok(None)
}

/// A directory (not a link to one elsewhere in the tree) with a database of any format rpm
/// has used: SQLite, Berkeley DB, NDB.
fn holds_database(dir: &Path) -> bool {
    ["rpmdb.sqlite", "Packages", "Packages.db"]
        .iter()
        .any(|file| dir.join(file).is_file())
}

fn query(commit: &Commit, dbpath: &Path, home: &Path) -> Result<Vec<Package>, NotesError> {
    // rpm reads macros from $HOME; an empty scratch HOME keeps a user's ~/.rpmmacros (another
    // dbpath, another backend) out of the answer.
    let output = Command::new("rpm")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("LC_ALL", "C")
        .arg("--dbpath")
        .arg(dbpath)
        .args(["-qa", "--queryformat", QUERY_FORMAT])
        .output()
        .map_err(|source| NotesError::RpmSpawn {
            commit: commit.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(NotesError::RpmFailed {
            commit: commit.clone(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut packages = Vec::new();
    for line in stdout.lines() {
        match parse_line(line) {
            Ok(Some(package)) => packages.push(package),
            Ok(None) => {}
            Err(()) => {
                return Err(NotesError::RpmOutput {
                    commit: commit.clone(),
                    line: line.to_owned(),
                });
            }
        }
    }
    Ok(packages)
}

/// One package of `rpm -qa` output; `None` for the imported signing keys, which rpm lists
/// as `gpg-pubkey` packages without an arch: they are keys, not software.
fn parse_line(line: &str) -> Result<Option<Package>, ()> {
    let [name, epoch, version, release, arch] = line
        .split('\t')
        .collect::<Vec<_>>()
        .try_into()
        .map_err(drop)?;
    if name == "gpg-pubkey" {
        return Ok(None);
    }
    let epoch = match epoch {
        NONE => None,
        epoch => Some(epoch.parse().map_err(drop)?),
    };
    if name.is_empty() || version.is_empty() || release.is_empty() || arch == NONE {
        return Err(());
    }
    Ok(Some(Package {
        name: name.to_owned(),
        arch: arch.to_owned(),
        evr: crate::Evr {
            epoch,
            version: version.to_owned(),
            release: release.to_owned(),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_rpm_qa() {
        let package = parse_line("bash\t(none)\t5.2.26\t3.fc41\tx86_64")
            .unwrap()
            .unwrap();
        assert_eq!(package.name, "bash");
        assert_eq!(package.evr.to_string(), "5.2.26-3.fc41");
        let package = parse_line("shadow-utils\t2\t4.15.1\t1.fc41\tx86_64")
            .unwrap()
            .unwrap();
        assert_eq!(package.evr.to_string(), "2:4.15.1-1.fc41");
        assert_eq!(
            parse_line("gpg-pubkey\t(none)\te99d6ad1\t64d2612c\t(none)"),
            Ok(None)
        );
        assert!(parse_line("bash\t(none)\t5.2").is_err());
        assert!(parse_line("bash\tx\t5.2\t1\tx86_64").is_err());
    }
}
