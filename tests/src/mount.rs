//! Filesystems a test mounts for itself (the tests run as root): a small tmpfs to fill up, a
//! directory made read-only. Each is unmounted when dropped, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::run_ok;

/// A mount over `target`, undone on drop.
#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
}

impl Mount {
    /// A tmpfs of `size_kib` KiB over the (existing) directory `target`.
    pub fn tmpfs(target: &Path, size_kib: u64) -> Self {
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size_kib}k"))
                .arg("tmpfs")
                .arg(target),
            "mount a tmpfs",
        );
        Self {
            target: target.to_owned(),
        }
    }

    /// `target` bound onto itself read-only: writes fail with EROFS, even for root.
    pub fn read_only(target: &Path) -> Self {
        run_ok(
            Command::new("mount").arg("--bind").arg(target).arg(target),
            "bind-mount a directory onto itself",
        );
        let mount = Self {
            target: target.to_owned(),
        };
        run_ok(
            Command::new("mount")
                .args(["-o", "remount,ro,bind"])
                .arg(target),
            "remount a bind mount read-only",
        );
        mount
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy, so a process that still has a file open there (a consumer being stopped)
        // cannot keep the test's mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.target).status();
    }
}
