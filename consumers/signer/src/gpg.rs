//! The `gpg` commands the signer runs: one argument per value, never a shell, and an
//! environment holding only what gpg needs, so the consumer's own (the broker's password)
//! never reaches it.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GpgError {
    #[error("cannot run `gpg {args}`: {source}; is gnupg installed and on PATH?")]
    Spawn {
        args: String,
        source: std::io::Error,
    },
    #[error("`gpg {args}` failed ({status}): {stderr}")]
    Failed {
        args: String,
        status: String,
        stderr: String,
    },
    #[error("cannot create the GnuPG home {home}: {source}")]
    Home {
        home: String,
        source: std::io::Error,
    },
    #[error(
        "the GnuPG home {home} has no key {key}; import it there or fix streams.<stream>.signing.keys"
    )]
    NoKey { home: String, key: String },
}

/// A GnuPG home holding the signing keys.
#[derive(Debug, Clone, Copy)]
pub struct Gpg<'a> {
    home: &'a Path,
}

impl<'a> Gpg<'a> {
    pub fn new(home: &'a Path) -> Self {
        Self { home }
    }

    /// PATH (to find gpg and its agent), and the home as both HOME and GNUPGHOME.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            (
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            ),
            ("HOME", self.home.as_os_str().to_owned()),
            ("GNUPGHOME", self.home.as_os_str().to_owned()),
        ]
    }

    /// Runs `gpg --batch ARGS`; returns its stdout.
    fn run(&self, args: &[&OsStr]) -> Result<Vec<u8>, GpgError> {
        let shown = args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let output = Command::new("gpg")
            .env_clear()
            .envs(self.env())
            .arg("--batch")
            .args(args)
            .output()
            .map_err(|source| GpgError::Spawn {
                args: shown.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(GpgError::Failed {
                args: shown,
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        Ok(output.stdout)
    }

    /// Makes a passphrase-less ed25519 signing key for `user_id` (`Name <mail>`) in this home,
    /// creating the home when needed; returns its fingerprint. For the demo and tests: a real
    /// deployment imports its release keys.
    pub fn generate_key(&self, user_id: &str) -> Result<String, GpgError> {
        let created = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.home);
        created.map_err(|source| GpgError::Home {
            home: self.home.display().to_string(),
            source,
        })?;
        self.run(&[
            OsStr::new("--pinentry-mode"),
            OsStr::new("loopback"),
            OsStr::new("--passphrase"),
            OsStr::new(""),
            OsStr::new("--quick-gen-key"),
            OsStr::new(user_id),
            OsStr::new("ed25519"),
            OsStr::new("sign"),
            OsStr::new("never"),
        ])?;
        let listed = self.run(&[
            OsStr::new("--with-colons"),
            OsStr::new("--list-secret-keys"),
            OsStr::new("--"),
            OsStr::new(user_id),
        ])?;
        String::from_utf8_lossy(&listed)
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|fields| fields.split(':').find(|f| !f.is_empty()))
            .map(str::to_owned)
            .ok_or_else(|| GpgError::NoKey {
                home: self.home.display().to_string(),
                key: user_id.to_owned(),
            })
    }

    /// Stops the home's gpg-agent (gpg starts one per home and leaves it running).
    pub fn stop_agent(&self) {
        let _ = Command::new("gpgconf")
            .env_clear()
            .envs(self.env())
            .args(["--kill", "gpg-agent"])
            .output();
    }

    /// An armored detached signature of `file` by `key`.
    pub fn detach_sign(&self, key: &str, file: &Path) -> Result<Vec<u8>, GpgError> {
        self.run(&[
            OsStr::new("--armor"),
            OsStr::new("--local-user"),
            OsStr::new(key),
            OsStr::new("--output"),
            OsStr::new("-"),
            OsStr::new("--detach-sign"),
            OsStr::new("--"),
            file.as_os_str(),
        ])
    }

    /// The armored public key of `key`.
    pub fn export(&self, key: &str) -> Result<Vec<u8>, GpgError> {
        let armored = self.run(&[
            OsStr::new("--armor"),
            OsStr::new("--export"),
            OsStr::new("--"),
            OsStr::new(key),
        ])?;
        // gpg exports nothing, successfully, for a key it does not have.
        if armored.is_empty() {
            return Err(GpgError::NoKey {
                home: self.home.display().to_string(),
                key: key.to_owned(),
            });
        }
        Ok(armored)
    }
}
