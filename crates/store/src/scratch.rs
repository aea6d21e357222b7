//! Working directories that belong to the process working in them: a build's staging next to
//! its images, a test's scratch space. The owner holds the `flock` on `<dir>/.lock` for as
//! long as the directory lives, and the kernel drops it when the process dies. A directory
//! whose lock nobody holds (or that has no lock file) and that is older than [`STALE_AFTER`]
//! belongs to a process that died: [`remove_abandoned`] deletes it when a consumer starts.
//! A live owner, in this process or another replica, always holds its lock, and the age guard
//! covers the moment between creating a directory and locking it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tempfile::TempDir;

use crate::atomic::{create_dir_all, list_dir};
use crate::error::{Result, StoreError};
use crate::lock::{LockGuard, lock, try_lock};

/// The lock file a live owner holds inside its directory.
const LOCK: &str = ".lock";
/// How old an unlocked directory must be before it counts as abandoned.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// A working directory, removed when dropped, and locked until then.
#[derive(Debug)]
pub struct Scratch {
    dir: TempDir,
    /// Marks the directory as in use; dropped after the directory is gone.
    _lock: LockGuard,
}

impl Scratch {
    /// A new directory `<parent>/<prefix><random>` (`parent` is created when missing).
    pub fn new_in(parent: &Path, prefix: &str) -> Result<Self> {
        create_dir_all(parent)?;
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(parent)
            .map_err(StoreError::io("create a working directory in", parent))?;
        // The directory is brand new, so nobody else can hold its lock.
        let lock = lock(&dir.path().join(LOCK))?;
        Ok(Self { dir, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Deletes the directories `<prefix>*` in `parent` that no live process owns (see the module
/// doc); returns what it removed. A missing `parent` has none.
pub fn remove_abandoned(parent: &Path, prefix: &str, now: SystemTime) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for entry in list_dir(parent)? {
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir || !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let dir = entry.path();
        if !is_abandoned(&dir, now)? {
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => removed.push(dir),
            // Another replica starting up removed it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove abandoned directory", &dir)(e)),
        }
    }
    Ok(removed)
}

/// Whether no live process owns `dir`: old enough, and its lock free or never taken.
fn is_abandoned(dir: &Path, now: SystemTime) -> Result<bool> {
    let modified = std::fs::symlink_metadata(dir)
        .and_then(|m| m.modified())
        .map_err(StoreError::io("read the age of", dir))?;
    if now.duration_since(modified).unwrap_or_default() < STALE_AFTER {
        return Ok(false);
    }
    let lock = dir.join(LOCK);
    if !lock.exists() {
        return Ok(true);
    }
    // Taken only to test it: the guard is dropped at once, before the directory goes.
    Ok(try_lock(&lock)?.is_some())
}
