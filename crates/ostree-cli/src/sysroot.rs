//! The machine's side of OSTree: a sysroot (`ostree admin`) that follows a ref of a remote,
//! as a client installed from a release does. Used to show what such a machine deploys.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use messages::{Commit, Ref};

use super::{OstreeError, Repo, command, output};

/// A name `ostree` takes as a positional argument (an OS, a remote): letters, digits, `-` and
/// `_`, not starting with `-`, so it cannot be read as an option.
fn plain_name(kind: &'static str, name: &str) -> Result<String, OstreeError> {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain && !name.is_empty() && !name.starts_with('-') {
        Ok(name.to_owned())
    } else {
        Err(OstreeError::Name {
            kind,
            name: name.to_owned(),
        })
    }
}

macro_rules! plain_name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = OstreeError;

            fn from_str(name: &str) -> Result<Self, OstreeError> {
                plain_name($kind, name).map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

plain_name_type!(
    /// The name of an OS in a sysroot (`ostree admin os-init`): its deployments' directory.
    OsName,
    "OS"
);
plain_name_type!(
    /// The name of a remote of a repository (`ostree remote add`).
    RemoteName,
    "remote"
);

/// A deployment of a sysroot, as `ostree admin status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub checksum: Commit,
    pub serial: u32,
}

/// A sysroot with one OS whose bootloader is none: ostree writes its boot entries and touches
/// no real bootloader, so a scratch directory can play a machine. `ostree admin` deploys only
/// as root.
#[derive(Debug, Clone)]
pub struct Sysroot {
    path: PathBuf,
    os: OsName,
}

impl Sysroot {
    /// `ostree admin init-fs PATH` (a new directory, or an empty one), `os-init OS`, and no
    /// bootloader.
    pub fn init(path: impl Into<PathBuf>, os: OsName) -> Result<Self, OstreeError> {
        let sysroot = Self {
            path: path.into(),
            os,
        };
        std::fs::create_dir_all(&sysroot.path).map_err(|source| OstreeError::Io {
            what: "create the sysroot",
            path: sysroot.path.clone(),
            source,
        })?;
        let mut init = vec![OsString::from("admin"), "init-fs".into()];
        init.push(sysroot.path.clone().into());
        let (init, shown) = command(init);
        output(init, shown)?;
        sysroot.admin(["os-init", sysroot.os.as_str()])?;
        sysroot
            .repo()
            .run(["config", "set", "sysroot.bootloader", "none"])?;
        Ok(sysroot)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sysroot's own repository, where deployments come from.
    pub fn repo(&self) -> Repo {
        Repo::new(self.path.join("ostree/repo"))
    }

    /// `ostree admin SUBCOMMAND --sysroot=PATH ARGS`; its trimmed stdout.
    fn admin<const N: usize>(&self, args: [&str; N]) -> Result<String, OstreeError> {
        let mut all = vec![OsString::from("admin")];
        let mut args = args.into_iter();
        all.extend(args.next().map(OsString::from));
        let mut sysroot = OsString::from("--sysroot=");
        sysroot.push(&self.path);
        all.push(sysroot);
        all.extend(args.map(OsString::from));
        let (admin, shown) = command(all);
        output(admin, shown).map(|(out, _)| out)
    }

    /// Pulls `tree_ref` from `remote` and deploys it, following `remote:tree_ref` from then
    /// on, as an installer does.
    pub fn deploy(&self, remote: &RemoteName, tree_ref: &Ref) -> Result<(), OstreeError> {
        self.repo().pull(remote, tree_ref)?;
        self.admin([
            "deploy",
            &format!("--os={}", self.os),
            &format!("{remote}:{tree_ref}"),
        ])
        .map(drop)
    }

    /// `ostree admin upgrade`: pulls what the default deployment's origin follows and deploys
    /// it when it moved (or, at its end of life, the ref it is told to move to).
    pub fn upgrade(&self) -> Result<(), OstreeError> {
        self.admin(["upgrade", &format!("--os={}", self.os)])
            .map(drop)
    }

    /// The OS's deployments, the default (the one that boots next) first.
    pub fn deployments(&self) -> Result<Vec<Deployment>, OstreeError> {
        let status = self.admin(["status"])?;
        Ok(status
            .lines()
            .filter_map(|line| {
                let mut words = line.trim_start_matches([' ', '*']).split_whitespace();
                if words.next()? != self.os.as_str() {
                    return None;
                }
                let (checksum, serial) = words.next()?.split_once('.')?;
                Some(Deployment {
                    checksum: checksum.parse().ok()?,
                    serial: serial.parse().ok()?,
                })
            })
            .collect())
    }

    /// The deployment that boots next; `None` before the first deploy.
    pub fn default_deployment(&self) -> Result<Option<Deployment>, OstreeError> {
        Ok(self.deployments()?.into_iter().next())
    }

    /// Where `deployment`'s tree is checked out.
    pub fn deployment_dir(&self, deployment: &Deployment) -> PathBuf {
        self.path
            .join(format!("ostree/deploy/{}/deploy", self.os))
            .join(format!("{}.{}", deployment.checksum, deployment.serial))
    }

    /// The deployment's origin file: what `ostree admin upgrade` follows next.
    pub fn origin(&self, deployment: &Deployment) -> Result<String, OstreeError> {
        let mut path = self.deployment_dir(deployment).into_os_string();
        path.push(".origin");
        read(PathBuf::from(path))
    }

    /// The VERSION of the deployment's `usr/lib/os-release`: what the machine says it runs.
    /// `None` when it names none.
    pub fn os_release_version(
        &self,
        deployment: &Deployment,
    ) -> Result<Option<String>, OstreeError> {
        let text = read(self.deployment_dir(deployment).join("usr/lib/os-release"))?;
        Ok(text.lines().find_map(|line| {
            let value = line.strip_prefix("VERSION=")?;
            Some(value.trim_matches(['"', '\'']).to_owned())
        }))
    }

    /// Clears the immutable flag ostree sets on every deployment's root, so that the sysroot
    /// at `path` can be deleted like any directory (a deployment that stays immutable makes the
    /// deletion fail, saying so). Nothing to do where there is no sysroot.
    pub fn unlock(path: &Path) -> Result<(), OstreeError> {
        let oses = match std::fs::read_dir(path.join("ostree/deploy")) {
            Ok(oses) => oses,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(OstreeError::Io {
                    what: "read the deployments of",
                    path: path.join("ostree/deploy"),
                    source,
                });
            }
        };
        for os in oses.flatten() {
            let deploy = os.path().join("deploy");
            for deployment in std::fs::read_dir(&deploy).into_iter().flatten().flatten() {
                if !deployment.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                // A filesystem without the flag (tmpfs) refuses chattr and has nothing to
                // clear.
                let _ = Command::new("chattr")
                    .arg("-i")
                    .arg(deployment.path())
                    .output();
            }
        }
        Ok(())
    }
}

fn read(path: PathBuf) -> Result<String, OstreeError> {
    std::fs::read_to_string(&path).map_err(|source| OstreeError::Io {
        what: "read",
        path,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_be_read_as_options_are_refused() {
        assert_eq!("fedora".parse::<OsName>().unwrap().as_str(), "fedora");
        assert_eq!(
            "fedora-atomic_2".parse::<RemoteName>().unwrap().to_string(),
            "fedora-atomic_2"
        );
        for bad in ["", "-fedora", "--os=x", "a b", "a/b", "a:b"] {
            assert!(
                matches!(
                    bad.parse::<OsName>(),
                    Err(OstreeError::Name { kind: "OS", .. })
                ),
                "{bad:?}"
            );
            assert!(bad.parse::<RemoteName>().is_err(), "{bad:?}");
        }
    }
}
