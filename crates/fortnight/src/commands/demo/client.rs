//! The demo's last step, from the side of a machine: a scratch OSTree sysroot (`<dir>/client`)
//! deploys the x86_64 release ref when it holds the previous release, and `ostree admin
//! upgrade` after the tick must bring exactly the released commit. It pulls from the demo's
//! repository checking the release's signatures with the demo's key, as the page tells users
//! to.

use std::path::Path;

use anyhow::Context;
use messages::{Commit, Ref};
use ostree_cli::{OsName, RemoteName, Sysroot};

use super::Progress;

/// The arch of this machine: the x86_64 trees are the ones that carry its kernel.
pub(super) const ARCH: &str = "x86_64";
/// The sysroot, under the demo's directory.
pub(super) const DIR: &str = "client";
const OS: &str = "fedora";
const REMOTE: &str = "demo";

/// Why the client step cannot run here, if it cannot: `ostree admin deploy` refuses to run
/// without root.
pub(super) fn unavailable() -> Option<String> {
    (!rustix::process::geteuid().is_root())
        .then(|| "the demo does not run as root, and `ostree admin deploy` needs root".to_owned())
}

/// A machine following one release ref of the demo's repository.
#[derive(Debug)]
pub(super) struct Client {
    sysroot: Sysroot,
    release_ref: Ref,
    /// What it ran when it was set up.
    first: Running,
}

/// What a machine boots next: its default deployment's commit and os-release VERSION.
#[derive(Debug)]
struct Running {
    commit: Commit,
    version: String,
}

impl Client {
    /// Makes the sysroot at `<dir>/client` and deploys `release_ref` from `<dir>/repo`,
    /// trusting `key` (an armored public key) for the commits' signatures.
    pub(super) fn follow(
        dir: &Path,
        release_ref: Ref,
        key: &Path,
        progress: &Progress,
    ) -> anyhow::Result<Self> {
        let path = dir.join(DIR);
        let sysroot = Sysroot::init(&path, OS.parse::<OsName>()?)
            .with_context(|| format!("cannot make the client's sysroot {}", path.display()))?;
        let remote = remote()?;
        let url = format!("file://{}", dir.join("repo").display());
        sysroot
            .repo()
            .add_remote(&remote, &url, Some(key))
            .with_context(|| format!("cannot add {url} as the client's remote"))?;
        sysroot
            .deploy(&remote, &release_ref)
            .with_context(|| format!("the client cannot deploy {release_ref}"))?;
        let client = Self {
            first: running(&sysroot)?,
            sysroot,
            release_ref,
        };
        progress.say(&format!(
            "a client following {} deployed {} ({})",
            client.release_ref, client.first.version, client.first.commit
        ));
        Ok(client)
    }

    /// `ostree admin upgrade`, then says what the machine now runs and what it ran before.
    /// The sysroot stays for a look, but without its immutable flags, so it can be deleted
    /// like the rest of the demo's directory.
    pub(super) fn upgrade(self) -> anyhow::Result<()> {
        self.sysroot
            .upgrade()
            .with_context(|| format!("the client cannot upgrade {}", self.release_ref))?;
        let now = running(&self.sysroot)?;
        println!(
            "A client following {} now runs {} (commit {}; it ran {} before the tick).",
            self.release_ref, now.version, now.commit, self.first.version
        );
        println!(
            "  ostree admin status --sysroot={}",
            self.sysroot.path().display()
        );
        Sysroot::unlock(self.sysroot.path()).context("cannot unlock the client's deployments")?;
        Ok(())
    }
}

fn remote() -> anyhow::Result<RemoteName> {
    Ok(REMOTE.parse()?)
}

/// What the machine at `sysroot` boots next.
fn running(sysroot: &Sysroot) -> anyhow::Result<Running> {
    let deployment = sysroot
        .default_deployment()
        .context("cannot read the client's deployments")?
        .context("the client has no deployment")?;
    let version = sysroot
        .os_release_version(&deployment)
        .context("cannot read what the client runs")?
        .unwrap_or_else(|| "an unnamed version".to_owned());
    Ok(Running {
        commit: deployment.checksum,
        version,
    })
}
