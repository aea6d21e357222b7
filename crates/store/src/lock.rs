use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::atomic::create_dir_all;
use crate::error::{Result, StoreError};

/// An exclusive advisory lock (`flock`) on a lock file, released when dropped or when the
/// process dies, so a crashed replica never leaves a stale lock behind.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        create_dir_all(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(StoreError::io("open lock file", path))
}

/// Waits for the lock on `path` (created if missing).
pub fn lock(path: &Path) -> Result<LockGuard> {
    let file = open(path)?;
    file.lock().map_err(StoreError::io("lock", path))?;
    Ok(LockGuard { _file: file })
}

/// Takes the lock on `path` if nobody holds it; `None` when another holder has it.
pub fn try_lock(path: &Path) -> Result<Option<LockGuard>> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(LockGuard { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(StoreError::io("lock", path)(e)),
    }
}

/// Runs `f` while holding the lock on `path`: the building block for check-and-set across
/// threads, processes and replicas sharing the tree. Blocks the calling thread; from async
/// code call it inside `spawn_blocking`.
pub fn with_lock<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let _guard = lock(path)?;
    f()
}
