//! What the CLI's tests against the real broker share: a private exchange and config per
//! test, and `fortnight record` as a child process. The reference client, record files and
//! blocking waits come from the `tests` harness and are re-exported here.
//!
//! Every test declares its own exchange and queues, named with a fresh UUID, and deletes them
//! when its `Env` is dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use bus::{Publisher, Step};
use settings::Settings;
use tests::Running;
use tests::config::{self, Table, toml};
pub use tests::process::*;
pub use tests::reference::*;

pub const PREFIX: &str = "org.fedoraproject.test";

/// One test's private corner of the broker and the file system.
pub struct Env {
    pub id: String,
    pub exchange: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub settings: Settings,
    /// Queues to delete at the end (auto-deleted ones need not be listed).
    pub queues: Mutex<Vec<String>>,
}

impl Env {
    pub fn new() -> Self {
        Self::with(Table::new(), Table::new())
    }

    /// An `Env` whose `f43` stream has `stream_keys` too, and the configuration `tables`.
    pub fn with(stream_keys: Table, tables: Table) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let exchange = format!("fortnight.test.{id}");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("fortnight.toml");
        let mut toml = toml! {
            amqp_url = (tests::amqp_url())
            publish_exchange = (exchange.as_str())
            topic_prefix = (PREFIX)

            [consumers.test-probe]
            queue = (format!("fortnight.test.{id}.probe"))
            retry_delays_seconds = [1]
            max_attempts = 2

            [consumers.image-tester]
            queue = (format!("fortnight.test.{id}.image-tester"))
        };
        config::merge(
            &mut toml,
            config::store_config(
                dir.path(),
                "fedora/43/x86_64/updates/atomic-host",
                &dir.path().join("repo"),
                stream_keys,
            ),
        );
        config::merge(&mut toml, tables);
        std::fs::write(&config, config::to_toml(&toml)).unwrap();
        let settings = Settings::from_toml(&std::fs::read_to_string(&config).unwrap()).unwrap();
        let env = Self {
            id,
            exchange,
            dir,
            config,
            settings,
            queues: Mutex::new(Vec::new()),
        };
        env.admin("declare", &[]);
        env
    }

    pub fn admin(&self, op: &str, queues: &[String]) {
        admin(op, &self.exchange, queues);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A fedora-messaging config with one auto-deleted queue bound to `#` on the exchange.
    pub fn fm_config(&self, name: &str) -> (PathBuf, String) {
        let queue = format!("fortnight.test.{}.{name}", self.id);
        let path = self.path(&format!("{name}.fm.toml"));
        write_fm_config(
            &path,
            &self.exchange,
            &queue,
            &format!("fortnight-interop-{name}"),
        );
        self.queues.lock().unwrap().push(queue.clone());
        (path, queue)
    }

    pub fn fortnight(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fortnight"));
        command
            .arg("--config")
            .arg(&self.config)
            .env("FORTNIGHT_LOG", "info");
        command
    }

    /// Waits until `queue` is bound to this test's exchange.
    pub fn wait_for_binding(&self, queue: &str) {
        wait_until("the queue to be bound", || is_bound(&self.exchange, queue));
    }

    /// Starts `fortnight record FILE --limit N` and waits until it is subscribed.
    pub fn start_record(&self, file: &Path, limit: usize) -> Recorder {
        Recorder::start(self.fortnight(), file, limit, &[])
    }

    /// Runs `step` with the bus runtime until [`Running::stop`], once its queue is bound.
    pub fn start_consumer<S: Step>(&self, step: S) -> Running {
        let topology =
            bus::topology::Topology::new(&self.settings, S::NAME, &S::topics(&self.settings));
        self.queues.lock().unwrap().extend(topology.queues());
        let running = Running::start(&self.settings, step);
        self.wait_for_binding(&topology.queue);
        running
    }

    pub async fn publisher(&self) -> Publisher {
        Publisher::connect(&self.settings, "fortnight-interop-test")
            .await
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let queues = self.queues.lock().map(|q| q.clone()).unwrap_or_default();
        self.admin("delete", &queues);
    }
}

pub struct Recorder {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Recorder {
    /// Runs `command` (the `fortnight` binary, set up) with `record FILE --limit N` and a
    /// `--topic` for each of `patterns` (none: all), and waits until it is subscribed.
    pub fn start(mut command: Command, file: &Path, limit: usize, patterns: &[&str]) -> Self {
        command
            .args(["record", "--limit", &limit.to_string()])
            .arg(file);
        for pattern in patterns {
            command.args(["--topic", pattern]);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, seen) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let collected = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                collected.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match seen.recv_timeout(left) {
                Ok(line) if line.contains("recording started") => break,
                Ok(_) => {}
                Err(_) => panic!("fortnight record did not start: {}", log.lock().unwrap()),
            }
        }
        Self { child, log }
    }

    pub fn finish(mut self) {
        let status = wait_child(&mut self.child, "fortnight record");
        assert!(
            status.success(),
            "fortnight record failed: {}",
            self.log.lock().unwrap()
        );
    }
}
