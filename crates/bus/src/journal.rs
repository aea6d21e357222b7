//! The job journal: how a step that runs for hours survives RabbitMQ's `consumer_timeout`
//! and the death of its process.
//!
//! RabbitMQ closes a channel whose delivery stays unacked past `consumer_timeout` (30 minutes
//! by default, broker-wide on 3.10) and requeues it, so a multi-hour image build cannot hold
//! its delivery. For a step whose [`Step::long_running`](crate::Step::long_running) is true,
//! the runtime instead:
//!
//! 1. validates the delivery like any other (bad input goes to the dead-letter queue);
//! 2. writes it to `<store.root>/.jobs/<consumer>/<key>.json` (write to a temporary file,
//!    fsync, rename, fsync the directory), `<key>` being the message id, so a redelivered
//!    copy replaces its own entry instead of adding one;
//! 3. acks the delivery: the journal now owns the message, and intake goes on while the job
//!    runs, so no delivery waits long unacked;
//! 4. runs the step while holding an exclusive `flock` on the job file;
//! 5. publishes the outcome with confirms (results, retry copy or dead letter) and only then
//!    deletes the job file.
//!
//! Jobs run one at a time, oldest first. At start, after every reconnect and every
//! [`RESCAN`] the runtime looks for job files whose lock is free and runs them: the kernel
//! releases the lock of a process that died, so a crash mid-step loses nothing and the job
//! runs again (steps are idempotent). Replicas that share the store root share the journal;
//! the lock keeps two of them from running one job.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::BusError;

/// How often the journal is scanned for jobs whose owner died.
pub const RESCAN: Duration = Duration::from_secs(30);

/// A message the journal owns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: Option<String>,
    /// The routing key the message was published with.
    pub routing_key: String,
    /// The publisher's headers (the runtime's own are kept apart).
    pub headers: BTreeMap<String, Value>,
    pub user_id: Option<String>,
    pub body: Map<String, Value>,
    /// Failed attempts before this one.
    pub attempts: u32,
}

/// The journal directory of one consumer.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

/// A job this process holds the lock of.
#[derive(Debug)]
pub struct Job {
    pub record: JobRecord,
    path: PathBuf,
    file: File,
}

impl Journal {
    /// Creates `<root>/.jobs/<consumer>` when missing.
    pub fn open(root: &Path, consumer: &str) -> Result<Self, BusError> {
        let dir = root.join(".jobs").join(consumer);
        fs::create_dir_all(&dir).map_err(|source| BusError::Journal {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Durably records a job (temp + fsync + rename + fsync of the directory).
    pub fn write(&self, record: &JobRecord) -> Result<PathBuf, BusError> {
        let path = self.dir.join(format!("{}.json", key(record)));
        let temp = self.dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
        let failed = |source| BusError::Journal {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_vec(record).map_err(|e| failed(std::io::Error::other(e)))?;
        let mut file = File::create(&temp).map_err(failed)?;
        file.write_all(&text).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        fs::rename(&temp, &path).map_err(failed)?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(failed)?;
        Ok(path)
    }

    /// The oldest job nobody holds, locked for this process.
    pub fn claim_next(&self) -> Result<Option<Job>, BusError> {
        let failed = |source| BusError::Journal {
            path: self.dir.clone(),
            source,
        };
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&self.dir)
            .map_err(failed)?
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'))
            })
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        entries.sort();
        for (_, path) in entries {
            if let Some(job) = Self::try_claim(&path)? {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    fn try_claim(path: &Path) -> Result<Option<Job>, BusError> {
        let failed = |source| BusError::Journal {
            path: path.to_owned(),
            source,
        };
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => file,
            // Finished and deleted by its owner since the directory was listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(failed(e)),
        }
        // The owner may have deleted (or a redelivery replaced) the file between our open and
        // our lock; only the file still at `path` is the job.
        if !same_file(&file, path) {
            return Ok(None);
        }
        // One read for the whole file: serde_json's reader would issue a read(2) per byte.
        let mut text = Vec::new();
        (&file).read_to_end(&mut text).map_err(failed)?;
        let record = match serde_json::from_slice(&text) {
            Ok(record) => record,
            Err(error) => {
                let aside = path.with_extension("corrupt");
                tracing::error!(path = %path.display(), error = %error, "unreadable job moved aside");
                fs::rename(path, &aside).map_err(failed)?;
                return Ok(None);
            }
        };
        Ok(Some(Job {
            record,
            path: path.to_owned(),
            file,
        }))
    }
}

impl Job {
    /// Deletes the job after its outcome was confirmed; the lock goes with the file handle.
    pub fn finish(self) -> Result<(), BusError> {
        if same_file(&self.file, &self.path) {
            fs::remove_file(&self.path).map_err(|source| BusError::Journal {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// A file name for the job: the message id when it is a safe name, else a digest of the
/// message, so a redelivered copy lands on the same entry.
fn key(record: &JobRecord) -> String {
    let safe = |id: &str| {
        !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    match record.id.as_deref() {
        Some(id) if safe(id) => id.to_owned(),
        _ => {
            let body = serde_json::to_string(&record.body).unwrap_or_default();
            messages::derived_id("journal", &[&record.routing_key, &body]).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: Option<&str>) -> JobRecord {
        JobRecord {
            id: id.map(str::to_owned),
            routing_key: "t".into(),
            headers: BTreeMap::new(),
            user_id: None,
            body: Map::new(),
            attempts: 0,
        }
    }

    #[test]
    fn a_claimed_job_is_invisible_to_others_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), "c").unwrap();
        journal.write(&record(Some("one"))).unwrap();
        let job = journal.claim_next().unwrap().expect("the job is free");
        assert!(
            journal.claim_next().unwrap().is_none(),
            "a held job must not be claimed twice"
        );
        drop(job);
        let job = journal
            .claim_next()
            .unwrap()
            .expect("a released job is claimable again");
        job.finish().unwrap();
        assert!(journal.claim_next().unwrap().is_none());
    }

    #[test]
    fn unsafe_ids_never_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), "c").unwrap();
        let path = journal.write(&record(Some("../../etc/passwd"))).unwrap();
        assert_eq!(path.parent(), Some(journal.dir()));
        let again = journal.write(&record(Some("../../etc/passwd"))).unwrap();
        assert_eq!(path, again, "a redelivered copy replaces its own entry");
    }
}
