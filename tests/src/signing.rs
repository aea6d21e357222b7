//! GnuPG homes for the signing tests: a key made on the spot, and checks the way a user of a
//! release checks it (`gpg --verify` with only the published key, `ostree pull` with
//! `gpg-verify=true`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::process::assert_success;

/// A scratch GnuPG home under `/tmp` (gpg-agent's socket path must stay short) with one
/// signing key; its agent is stopped on drop.
#[derive(Debug)]
pub struct GpgHome {
    dir: tempfile::TempDir,
    pub fingerprint: String,
}

impl GpgHome {
    /// A home with a new passphrase-less ed25519 signing key for `name`.
    pub fn with_key(name: &str) -> Self {
        let mut home = Self::empty();
        home.fingerprint = signer::Gpg::new(home.path())
            .generate_key(&format!("{name} <{name}@example.org>"))
            .expect("gpg makes a key");
        home
    }

    /// An empty home (a user's keyring before they import anything).
    pub fn empty() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fngpg")
            .tempdir_in("/tmp")
            .unwrap();
        Self {
            dir,
            fingerprint: String::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `gpg --batch` in this home.
    pub fn gpg(&self) -> Command {
        let mut command = Command::new("gpg");
        command.env("GNUPGHOME", self.path()).arg("--batch");
        command
    }

    /// The armored public key.
    pub fn public_key(&self) -> Vec<u8> {
        let out = self
            .gpg()
            .args(["--armor", "--export", &self.fingerprint])
            .output()
            .unwrap();
        assert_success(&out, "gpg --export");
        out.stdout
    }

    /// `gpg --verify SIGNATURE FILE` in a fresh keyring holding only `key`.
    pub fn verify_with(key: &Path, signature: &Path, file: &Path) -> Output {
        let keyring = Self::empty();
        let imported = keyring.gpg().arg("--import").arg(key).output().unwrap();
        assert_success(&imported, "gpg --import");
        keyring
            .gpg()
            .arg("--verify")
            .arg(signature)
            .arg(file)
            .output()
            .unwrap()
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        signer::Gpg::new(self.path()).stop_agent();
    }
}

/// `ostree pull` of `release_ref` from `repo` into a fresh repository whose remote has
/// `gpg-verify=true` and trusts only `key`, checking the commit's signature and that it is
/// bound to `release_ref`, as a client following README's verify instructions does.
pub fn pull_verified(repo: &Path, release_ref: &str, key: &Path) -> Output {
    let scratch = tempfile::tempdir().unwrap();
    let client: PathBuf = scratch.path().join("client");
    let ostree = |args: &[&str]| {
        Command::new("ostree")
            .args(args)
            .arg(format!("--repo={}", client.display()))
            .output()
            .unwrap()
    };
    assert_success(&ostree(&["init", "--mode=archive"]), "ostree init");
    let added = ostree(&[
        "remote",
        "add",
        &format!("--gpg-import={}", key.display()),
        "--set=gpg-verify=true",
        "release",
        &format!("file://{}", repo.display()),
    ]);
    assert_success(&added, "ostree remote add");
    ostree(&["pull", "release", release_ref])
}
