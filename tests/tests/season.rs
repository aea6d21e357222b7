//! The season: many two-week periods compressed into seconds, run in the deployed shape with
//! faults injected, and the invariants a user relies on checked at the end.
//!
//! Deployed shape: every consumer in its own container of the image `deploy/Containerfile`
//! describes (built once per run from the current build's binaries, [`tests::container`]), as
//! the Kubernetes manifests run it: under the uid the image declares, read-only root, the
//! configuration mounted read-only, the broker URL from a podman secret, the store on the
//! image's volume; two replicas of the image-tester and of the releaser; a supervisor restarts
//! a container that dies with a new `podman run`, as Kubernetes restarts a pod's container.
//! Where podman is missing (or `FORTNIGHT_SEASON_PROCESSES` is set) the same consumers run as
//! processes of the host's build under that uid, and the test says so: [`Launcher`] is the
//! only difference. nginx serves the store as another user ([`tests::nginx`]). The broker is a
//! RabbitMQ node of the test's own ([`Node`]), because the season stops and restarts it; the
//! release timer ticks on a six-field cron, every [`period_seconds`] seconds, through the
//! normal `twoweek.cron` setting.
//!
//! The season's gating test reads the os-release its recipe wrote into the disk image and
//! boots nothing, so the container image's `qemu-system-x86` is not exercised here (booting is
//! `deploy/tests/atomic-host.toml`'s boot test, run by the image tests): a boot per tree would
//! make a period minutes long.
//!
//! Work: a nightly for two arches every period (committed with `ostree`, announced with
//! `fortnight.tree.composed`), some broken so the gating test fails; votes from four testers
//! (broker accounts on the node), some negative; a block and an unblock from an operator.
//!
//! Faults at random moments from a seeded RNG (the seed is printed; `FORTNIGHT_SEASON_SEED`
//! replays it): SIGKILL of any consumer (`podman kill --signal KILL` of its container), broker
//! `stop_app`/`start_app`, a full node restart, and hostile or untrusted messages on every
//! input topic.
//!
//! Checked at the end, after a quiet settle: exactly one release or skip per stream and
//! period, each the decision that what had passed by then calls for (recomputed here from the
//! store's reports, votes and override log); every tree built once and tested once per arch;
//! every release served by nginx with a CHECKSUM that verifies; no message left unacked; no
//! dead letter but the injected ones; no temporary or empty file in the store; `fortnight
//! status` agrees with the store.
//!
//! `FORTNIGHT_SEASON_PERIODS` sets the number of periods (6 by default, for CI; 50 or more
//! for the long form), `FORTNIGHT_SEASON_PERIOD_SECONDS` the period (15 by default; it must
//! divide 60).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus::{Outputs, Publisher, Step, StepError};
use chrono::{DateTime, Utc};
use messages::{
    Arch, Commit, Incoming, KarmaSubmitted, Message, Outgoing, Override, OverrideBlock,
    OverrideUnblock, Period, ReleasePublished, ReleaseSkipped, Stream, TestReport, Tree,
    TreeComposed, TwoweekTimerFired, Version, Vote,
};
use ostree_cli::Repo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use settings::{RELEASE_TIMER, Settings};
use sha2::{Digest, Sha256};
use store::Store;
use tests::broker::{BrokerUser, Node};
use tests::config::{self, Table, toml};
use tests::nginx::Nginx;
use tests::pipeline::{ARCHES, STREAM, arch_refs};
use tests::{Running, eventually};

const WATCHER: &str = "season-watcher";
/// Every consumer with how many replicas run; the release timer is the clock.
const FLEET: [(&str, usize); 6] = [
    ("image-builder", 1),
    ("image-tester", 2),
    ("karma-tracker", 1),
    ("releaser", 2),
    ("site-publisher", 1),
    ("release-timer", 1),
];
/// The queues of the season: every consumer of the fleet but the clock, and the watcher.
fn season_queues() -> impl Iterator<Item = &'static str> {
    FLEET
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| *name != RELEASE_TIMER)
        .chain([WATCHER])
}

/// Long enough for a node restart plus the backoff of every reconnecting consumer.
const SETTLE: Duration = Duration::from_secs(120);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

fn period_seconds() -> u64 {
    let seconds = env_number("FORTNIGHT_SEASON_PERIOD_SECONDS", 15);
    assert!(
        seconds >= 10 && 60 % seconds == 0,
        "FORTNIGHT_SEASON_PERIOD_SECONDS must divide 60 and be at least 10"
    );
    seconds
}

/// The directory with the workspace's binaries, every one the season runs built first.
fn bin_dir() -> PathBuf {
    let programs: Vec<&str> = FLEET
        .iter()
        .map(|(name, _)| *name)
        .chain(["fortnight", "fortnight-job"])
        .collect();
    tests::process::built_binaries(&programs)
}

fn chown(path: &Path, uid: u32) {
    tests::process::run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{uid}"))
            .arg(path),
        "chown",
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A small script: the recipe and the suite's gating test.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\nset -eu\n{body}\n")).expect("script");
    chmod(path, 0o755);
}

// ------------------------------------------------------------------------------------------
// The deployment

/// One consumer replica the supervisor keeps running.
#[derive(Debug, Clone)]
struct Spec {
    name: &'static str,
    replica: usize,
    config: PathBuf,
    health: std::net::SocketAddr,
    log: PathBuf,
}

/// How the season runs a consumer replica: in a container of the image, or, where podman is
/// missing, as a process under the image's uid.
#[derive(Debug)]
enum Launcher {
    Containers(Containers),
    /// The host's build of each binary, with only the environment a container would have.
    Processes {
        bin_dir: PathBuf,
        uid: u32,
    },
}

/// Each replica a container of the season's image, as the Kubernetes manifests run it: the
/// image's uid, a read-only root with a scratch `/tmp`, no capabilities, the configuration
/// mounted read-only, the broker URL from a secret, the store on the image's volume.
#[derive(Debug)]
struct Containers {
    /// Unique to the run: in every container's name and the secret's.
    prefix: String,
    uid: u32,
    /// The store's mount point in the image (`VOLUME`).
    volume: PathBuf,
    /// The broker URL, as the `fortnight-amqp` Secret gives it to the manifests' pods.
    secret: Option<String>,
    /// `--volume` arguments every container gets besides its configuration.
    volumes: Vec<String>,
    /// Every container started, removed when dropped (a failed season too).
    started: Mutex<BTreeSet<String>>,
    /// Dropped after the containers are removed.
    image: tests::container::Image,
}

/// What the consumers' configuration names as the broker when the secret provides it: a
/// name that never resolves, so a missing secret fails loudly instead of reaching another
/// broker.
const BROKER_FROM_SECRET: &str = "amqp://fortnight-amqp-secret.invalid/";

impl Containers {
    fn build(prefix: &str) -> Self {
        let containerfile = tests::container::Containerfile::read();
        let image = tests::container::Image::build(&format!("localhost/{prefix}:latest"));
        Self {
            prefix: prefix.to_owned(),
            uid: containerfile.user(),
            volume: containerfile.volume(),
            secret: None,
            volumes: Vec::new(),
            started: Mutex::new(BTreeSet::new()),
            image,
        }
    }

    /// Mounts the store on the image's volume; the repository, recipe, suite and ledger at
    /// the paths the configuration and the messages name; and creates the broker's secret.
    fn deploy(&mut self, setup: &Setup, amqp_url: &str) {
        let secret = format!("{}-amqp", self.prefix);
        let mut create = tests::container::podman()
            .args(["secret", "create", &secret, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("podman secret create runs");
        std::io::Write::write_all(
            &mut create.stdin.take().expect("its standard input"),
            amqp_url.as_bytes(),
        )
        .expect("the secret is written");
        assert!(
            create
                .wait()
                .expect("podman secret create finishes")
                .success(),
            "podman secret create {secret} failed"
        );
        self.secret = Some(secret);
        let mut volumes = vec![format!(
            "{}:{}",
            setup.store_root.display(),
            self.volume.display()
        )];
        for (dir, mode) in [
            ("repo", "rw"),
            ("bin", "ro"),
            ("suite", "ro"),
            ("ledger", "rw"),
        ] {
            let path = setup.root.join(dir);
            volumes.push(format!("{}:{}:{mode}", path.display(), path.display()));
        }
        self.volumes = volumes;
    }

    fn name(&self, spec: &Spec) -> String {
        format!("{}-{}-{}", self.prefix, spec.name, spec.replica)
    }

    /// `podman run` in the foreground: the child exits when the container does, as the
    /// process of the other shape would.
    fn run(&self, spec: &Spec) -> Command {
        let name = self.name(spec);
        self.started
            .lock()
            .expect("containers")
            .insert(name.clone());
        let secret = self.secret.as_deref().expect("deploy() made the secret");
        let user = self.uid.to_string();
        let config = format!("{}:/etc/fortnight/config.toml:ro", spec.config.display());
        let mut options = vec![
            "--rm",
            // A restart replaces the container under the same name, as a pod's restart does.
            "--replace",
            "--name",
            &name,
            "--user",
            &user,
            "--read-only",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            "--env",
            "FORTNIGHT_LOG=info",
        ];
        let secret = format!("{secret},type=env,target=FORTNIGHT_AMQP_URL");
        options.extend(["--secret", &secret, "--volume", &config]);
        for volume in &self.volumes {
            options.extend(["--volume", volume.as_str()]);
        }
        let mut command = tests::container::podman_run(&options, &self.image.tag);
        command.arg(spec.name);
        command
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        if !started.is_empty() {
            let _ = tests::container::podman()
                .args(["rm", "--force", "--time", "0"])
                .args(started.iter())
                .output();
        }
        if let Some(secret) = &self.secret {
            let _ = tests::container::podman()
                .args(["secret", "rm", secret])
                .output();
        }
    }
}

impl Launcher {
    /// Containers when podman is here (unless `FORTNIGHT_SEASON_PROCESSES` asks for
    /// processes); says which, since the two are not the same proof.
    fn choose(prefix: &str, bin_dir: PathBuf) -> Self {
        let uid = tests::container::Containerfile::read().user();
        let why_processes = if std::env::var_os("FORTNIGHT_SEASON_PROCESSES").is_some() {
            Some("FORTNIGHT_SEASON_PROCESSES is set")
        } else if !tests::container::available() {
            Some("podman is not installed")
        } else {
            None
        };
        match why_processes {
            None => {
                let containers = Containers::build(prefix);
                println!(
                    "season: every consumer in its own container of {} under uid {uid}",
                    containers.image.tag
                );
                Launcher::Containers(containers)
            }
            Some(why) => {
                println!(
                    "season: {why}: the consumers run as processes under uid {uid}, NOT in containers"
                );
                Launcher::Processes { bin_dir, uid }
            }
        }
    }

    fn shape(&self) -> &'static str {
        match self {
            Launcher::Containers(_) => "containers",
            Launcher::Processes { .. } => "processes",
        }
    }

    fn uid(&self) -> u32 {
        match self {
            Launcher::Containers(c) => c.uid,
            Launcher::Processes { uid, .. } => *uid,
        }
    }

    /// What the containers need of the season's directory and broker; nothing for processes,
    /// which see the host as the test does.
    fn deploy(&mut self, setup: &Setup, amqp_url: &str) {
        if let Launcher::Containers(containers) = self {
            containers.deploy(setup, amqp_url);
        }
    }

    /// The store and the broker as the consumers' configuration names them.
    fn consumer_view(&self, host_store: &Path, amqp_url: &str) -> (PathBuf, String) {
        match self {
            Launcher::Containers(c) => (c.volume.clone(), BROKER_FROM_SECRET.to_owned()),
            Launcher::Processes { .. } => (host_store.to_owned(), amqp_url.to_owned()),
        }
    }

    /// Starts one consumer replica, its output appended to its log.
    fn launch(&self, spec: &Spec) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .expect("a log file");
        let mut command = match self {
            Launcher::Containers(containers) => containers.run(spec),
            Launcher::Processes { bin_dir, uid } => {
                let uid = uid.to_string();
                let mut command = Command::new("setpriv");
                command
                    .args(["--reuid", &uid, "--regid", &uid, "--clear-groups", "--"])
                    .arg(bin_dir.join(spec.name))
                    .arg("--config")
                    .arg(&spec.config)
                    .env_clear()
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
                    .env("FORTNIGHT_LOG", "info")
                    .env("TMPDIR", "/tmp");
                command
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", spec.name))
    }

    /// SIGKILLs a replica, as the kernel's OOM killer or a node failure would; false when it
    /// was not running (between a death and its restart).
    fn kill(&self, member: &mut Member) -> bool {
        match self {
            Launcher::Containers(containers) => {
                tests::container::succeeds(tests::container::podman().args([
                    "kill",
                    "--signal",
                    "KILL",
                    &containers.name(&member.spec),
                ]))
            }
            Launcher::Processes { .. } => {
                matches!(member.child.try_wait(), Ok(None)) && member.child.kill().is_ok()
            }
        }
    }

    /// The host's pid of the consumer a replica runs: its container's first process, or the
    /// process `setpriv` became.
    fn consumer_pid(&self, member: &Member) -> u32 {
        match self {
            Launcher::Containers(containers) => {
                let name = containers.name(&member.spec);
                let pid = tests::process::run_ok(
                    tests::container::podman().args([
                        "inspect",
                        "--format",
                        "{{.State.Pid}}",
                        &name,
                    ]),
                    &format!("podman inspect {name}"),
                );
                let pid = tests::process::text(&pid.stdout);
                pid.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} has no pid: {pid:?}"))
            }
            Launcher::Processes { .. } => member.child.id(),
        }
    }

    /// Stops a replica the way a scale-down does: SIGTERM, SIGKILL after 20 s.
    fn stop(&self, member: &mut Member) {
        match self {
            Launcher::Containers(containers) => {
                let _ = tests::container::podman()
                    .args(["stop", "--time", "20", &containers.name(&member.spec)])
                    .output();
            }
            Launcher::Processes { .. } => {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(member.child.id().to_string())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(25);
        while Instant::now() < deadline {
            if matches!(member.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = member.child.kill();
        let _ = member.child.wait();
    }
}

#[derive(Debug)]
struct Member {
    spec: Spec,
    child: Child,
    /// Off for a member the test stopped for good.
    supervised: bool,
}

/// Keeps every member running, restarting one that died, until dropped; dropping it stops
/// them all.
#[derive(Debug)]
struct Fleet {
    launcher: Arc<Launcher>,
    members: Arc<Mutex<Vec<Member>>>,
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicUsize>,
    supervisor: Option<std::thread::JoinHandle<()>>,
}

impl Fleet {
    fn start(launcher: Launcher, specs: Vec<Spec>) -> Self {
        let launcher = Arc::new(launcher);
        let members: Vec<Member> = specs
            .into_iter()
            .map(|spec| Member {
                child: launcher.launch(&spec),
                spec,
                supervised: true,
            })
            .collect();
        let members = Arc::new(Mutex::new(members));
        let stop = Arc::new(AtomicBool::new(false));
        let restarts = Arc::new(AtomicUsize::new(0));
        let supervisor = {
            let (launcher, members, stop, restarts) = (
                launcher.clone(),
                members.clone(),
                stop.clone(),
                restarts.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    for member in members.lock().expect("fleet").iter_mut() {
                        let exited = matches!(member.child.try_wait(), Ok(Some(_)));
                        if exited && member.supervised {
                            member.child = launcher.launch(&member.spec);
                            restarts.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        Self {
            launcher,
            members,
            stop,
            restarts,
            supervisor: Some(supervisor),
        }
    }

    /// Adds a member and starts it.
    fn join(&self, spec: Spec) {
        let child = self.launcher.launch(&spec);
        self.members.lock().expect("fleet").push(Member {
            spec,
            child,
            supervised: true,
        });
    }

    fn health_addrs(&self) -> Vec<(String, std::net::SocketAddr)> {
        let members = self.members.lock().expect("fleet");
        members
            .iter()
            .filter(|m| m.supervised)
            .map(|m| (format!("{}#{}", m.spec.name, m.spec.replica), m.spec.health))
            .collect()
    }

    /// SIGKILLs member `index` (mod the fleet's size); returns its name, and whether it was
    /// running to be killed.
    fn kill(&self, index: usize) -> (String, bool) {
        let mut members = self.members.lock().expect("fleet");
        let count = members.len();
        let member = &mut members[index % count];
        let killed = self.launcher.kill(member);
        (
            format!("{}#{}", member.spec.name, member.spec.replica),
            killed,
        )
    }

    /// Checks that every replica runs its consumer under the image's uid, and not as root.
    fn assert_deployed(&self) {
        let uid = self.launcher.uid();
        assert_ne!(uid, 0, "the image's user is not root");
        for member in self.members.lock().expect("fleet").iter() {
            let pid = self.launcher.consumer_pid(member);
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_else(|e| panic!("{}'s process {pid}: {e}", member.spec.name));
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.split_whitespace().collect::<Vec<_>>())
                    .unwrap_or_default()
            };
            assert_eq!(
                field("Name:"),
                [&member.spec.name[..member.spec.name.len().min(15)]],
                "process {pid} is the consumer {}",
                member.spec.name
            );
            let uid_text = uid.to_string();
            assert_eq!(
                field("Uid:"),
                [uid_text.as_str(); 4],
                "{}#{} runs as uid {uid} (real, effective, saved, fs)",
                member.spec.name,
                member.spec.replica
            );
        }
    }

    /// Stops every replica of `name` for good (SIGTERM, as a scale-down does).
    fn retire(&self, name: &str) {
        let mut members = self.members.lock().expect("fleet");
        for member in members.iter_mut().filter(|m| m.spec.name == name) {
            member.supervised = false;
            self.launcher.stop(member);
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(supervisor) = self.supervisor.take() {
            let _ = supervisor.join();
        }
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        for member in members.iter_mut() {
            self.launcher.stop(member);
        }
    }
}

// ------------------------------------------------------------------------------------------
// What the season sees on the bus

#[derive(Debug, Clone)]
struct Seen {
    topic: String,
    id: String,
    body: serde_json::Map<String, Value>,
}

/// Records the pipeline's results from a durable queue of its own, so a broker restart
/// loses none of them. It accepts only bodies of the topic's type: the hostile copies it
/// also receives are dead-lettered like everywhere else.
#[derive(Debug, Default)]
struct Watcher {
    seen: Arc<Mutex<Vec<Seen>>>,
}

const WATCHED: [&str; 5] = [
    messages::ImageBuilt::TOPIC,
    messages::ImageTestsPassed::TOPIC,
    messages::ImageTestsFailed::TOPIC,
    ReleasePublished::TOPIC,
    ReleaseSkipped::TOPIC,
];

fn parses<M: Message>(body: &serde_json::Map<String, Value>) -> Result<(), String> {
    serde_json::from_value::<M>(Value::Object(body.clone()))
        .map(|_| ())
        .map_err(|e| format!("not a {} body: {e}", M::TOPIC))
}

impl Step for Watcher {
    const NAME: &'static str = WATCHER;
    type Input = ();

    fn topics(_: &settings::BusSettings) -> Vec<String> {
        let mut topics: Vec<String> = WATCHED.iter().map(|t| (*t).to_owned()).collect();
        topics.push(TwoweekTimerFired::TOPIC.to_owned());
        topics
    }

    async fn handle(&self, _: (), message: &Incoming) -> Result<Outputs, StepError> {
        let checked = match message.topic.as_str() {
            messages::ImageBuilt::TOPIC => parses::<messages::ImageBuilt>(&message.body),
            messages::ImageTestsPassed::TOPIC => {
                parses::<messages::ImageTestsPassed>(&message.body)
            }
            messages::ImageTestsFailed::TOPIC => {
                parses::<messages::ImageTestsFailed>(&message.body)
            }
            ReleasePublished::TOPIC => parses::<ReleasePublished>(&message.body),
            ReleaseSkipped::TOPIC => parses::<ReleaseSkipped>(&message.body),
            TwoweekTimerFired::TOPIC => parses::<TwoweekTimerFired>(&message.body),
            other => Err(format!("not a watched topic: {other}")),
        };
        if let Err(reason) = checked {
            return Err(StepError::permanent(reason));
        }
        self.seen.lock().expect("watcher").push(Seen {
            topic: message.topic.clone(),
            id: message.id.clone().unwrap_or_default(),
            body: message.body.clone(),
        });
        Ok(Vec::new())
    }
}

// ------------------------------------------------------------------------------------------
// Talking to a broker that may be down

/// Publishes `message` (as `user`, or as the configuration's account), retrying through a
/// broker outage with the same message id, so a lost confirm never doubles it downstream.
async fn send(settings: &Settings, message: &Outgoing, user: Option<&str>) {
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Ok(Ok(publisher)) = tokio::time::timeout(
            Duration::from_secs(10),
            Publisher::connect(settings, "season-driver"),
        )
        .await
        {
            let sent = match user {
                Some(user) => publisher.publish_as(message, user).await,
                None => publisher.publish(message).await,
            };
            publisher.close().await;
            if sent.is_ok() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "cannot publish {} for {SETTLE:?}",
            message.topic
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Publishes raw bytes; every id tried is returned, since an attempt whose confirm was lost
/// may still have been delivered.
async fn send_raw(settings: &Settings, topic: &str, body: &[u8]) -> Vec<String> {
    let mut ids = Vec::new();
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Ok(Ok(publisher)) = tokio::time::timeout(
            Duration::from_secs(10),
            Publisher::connect(settings, "season-hostile"),
        )
        .await
        {
            // publish_raw picks the id; a failed attempt's id is unknown, so one is sent
            // per connection and recorded before the confirm can fail.
            let sent = publisher.publish_raw(topic, body, &BTreeMap::new()).await;
            publisher.close().await;
            if let Ok(id) = sent {
                ids.push(id);
                return ids;
            }
        }
        assert!(Instant::now() < deadline, "cannot publish to {topic}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn with_url(settings: &Settings, url: String) -> Settings {
    let mut settings = settings.clone();
    settings.amqp_url = url;
    settings
}

// ------------------------------------------------------------------------------------------
// Inputs and when they became visible

/// An input's effect appeared in the store at some moment between `sent` (before it, the
/// releaser cannot have seen it) and `seen` (when the driver first saw it there).
#[derive(Debug, Clone)]
struct Window {
    sent: DateTime<Utc>,
    seen: Option<DateTime<Utc>>,
}

impl Window {
    fn new() -> Self {
        Self {
            sent: Utc::now(),
            seen: None,
        }
    }
}

#[derive(Debug, Clone)]
enum Input {
    /// Both arches' reports of a nightly are in the store.
    Tested {
        version: Version,
    },
    Vote {
        version: Version,
        voter: String,
    },
    Override {
        version: Version,
        block: bool,
    },
}

/// The season's nightlies and what the driver sent.
#[derive(Debug, Default)]
struct Ledger {
    nightlies: Vec<(Version, BTreeMap<Arch, Commit>, BTreeSet<Arch>)>,
    inputs: Vec<(Input, Window)>,
    hostile: BTreeSet<String>,
    faults: BTreeMap<&'static str, usize>,
    messages_sent: usize,
}

impl Ledger {
    fn fault(&mut self, kind: &'static str) {
        *self.faults.entry(kind).or_default() += 1;
    }
}

fn stream() -> Stream {
    STREAM.parse().unwrap()
}

/// Whether the effect of `input` is in the store now.
fn visible(store: &Store, input: &Input) -> bool {
    let s = stream();
    match input {
        Input::Tested { version } => {
            let reports = reports(store, version);
            let promoted = store.in_tier(&s, version, store::Tier::PassedAutotest);
            reports.iter().all(Option::is_some) && (!passed_everywhere(store, version) || promoted)
        }
        Input::Vote { version, voter } => {
            let path = store.karma_path(&s, version, &voter.parse().unwrap());
            store::read_json::<Vote>(&path).ok().flatten().is_some()
        }
        Input::Override { version, block } => {
            let log = releaser::overrides::read_log(store, &s).unwrap_or_default();
            log.iter().any(|e| {
                e.version.as_ref() == Some(version)
                    && matches!(
                        (e.action, block),
                        (releaser::overrides::Action::Block, true)
                            | (releaser::overrides::Action::Unblock, false)
                    )
            })
        }
    }
}

/// Each arch's test report of `version`, where the store has one.
fn reports(store: &Store, version: &Version) -> Vec<Option<TestReport>> {
    ARCHES
        .iter()
        .map(|a| {
            store::read_json(&store.tests_json_path(&stream(), version, &a.parse().unwrap()))
                .ok()
                .flatten()
        })
        .collect()
}

/// Whether every arch of `version` passed.
fn passed_everywhere(store: &Store, version: &Version) -> bool {
    reports(store, version)
        .iter()
        .all(|r| r.as_ref().is_some_and(|r| r.failed.is_empty()))
}

/// The nightlies among `awaiting` whose reports the driver saw in the store.
fn tested(ledger: &Mutex<Ledger>, awaiting: &[Version]) -> Vec<Version> {
    let ledger = ledger.lock().expect("ledger");
    awaiting
        .iter()
        .filter(|v| {
            ledger.inputs.iter().any(|(i, w)| {
                matches!(i, Input::Tested { version } if version == *v) && w.seen.is_some()
            })
        })
        .cloned()
        .collect()
}

/// Sends `body` signed by `user` and notes `input` as in flight from now.
async fn send_input<M: Message>(
    guest: &Settings,
    user: &BrokerUser,
    body: &M,
    input: Input,
    ledger: &Mutex<Ledger>,
) {
    ledger
        .lock()
        .expect("ledger")
        .inputs
        .push((input, Window::new()));
    send(
        &with_url(guest, user.amqp_url()),
        &Outgoing::new(uuid::Uuid::new_v4(), body),
        Some(user.name.as_str()),
    )
    .await;
    ledger.lock().expect("ledger").messages_sent += 1;
}

/// Each tester's vote on `version` (`None`: no vote).
async fn vote(
    guest: &Settings,
    testers: &[BrokerUser],
    version: &Version,
    plan: &[Option<i8>],
    ledger: &Mutex<Ledger>,
) {
    for (tester, karma) in testers.iter().zip(plan) {
        let Some(karma) = *karma else { continue };
        let body = KarmaSubmitted {
            stream: stream(),
            version: version.clone(),
            user: tester.name.clone(),
            karma,
            comment: Some("season".into()),
        };
        let input = Input::Vote {
            version: version.clone(),
            voter: tester.name.to_string(),
        };
        send_input(guest, tester, &body, input, ledger).await;
    }
}

/// The operator's block (or unblock) of `version`.
async fn block(
    guest: &Settings,
    operator: &BrokerUser,
    version: &Version,
    blocked: bool,
    ledger: &Mutex<Ledger>,
) {
    let body = Override {
        stream: stream(),
        version: Some(version.clone()),
        reason: if blocked {
            "season: a late regression report".into()
        } else {
            "season: fixed".into()
        },
        operator: operator.name.clone(),
        expires: None,
    };
    let input = Input::Override {
        version: version.clone(),
        block: blocked,
    };
    if blocked {
        send_input(guest, operator, &OverrideBlock(body), input, ledger).await;
    } else {
        send_input(guest, operator, &OverrideUnblock(body), input, ledger).await;
    }
}

/// Marks the inputs whose effect appeared.
fn observe(store: &Store, ledger: &Mutex<Ledger>) {
    let pending: Vec<(usize, Input)> = {
        let ledger = ledger.lock().expect("ledger");
        ledger
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, (_, w))| w.seen.is_none())
            .map(|(i, (input, _))| (i, input.clone()))
            .collect()
    };
    for (i, input) in pending {
        if visible(store, &input) {
            let now = Utc::now();
            ledger.lock().expect("ledger").inputs[i].1.seen = Some(now);
        }
    }
}

// ------------------------------------------------------------------------------------------
// The decision, recomputed

/// What the store's files say about every input, read at the end.
#[derive(Debug)]
struct Facts {
    /// Per nightly: passed on every arch.
    passed: BTreeMap<Version, bool>,
    /// Per (nightly, voter): the karma recorded.
    karma: BTreeMap<(Version, String), i32>,
}

fn read_facts(store: &Store, ledger: &Ledger) -> Facts {
    let s = stream();
    let mut passed = BTreeMap::new();
    let mut karma = BTreeMap::new();
    for (version, _, _) in &ledger.nightlies {
        let all = passed_everywhere(store, version);
        passed.insert(version.clone(), all);
    }
    for (input, _) in &ledger.inputs {
        if let Input::Vote { version, voter } = input {
            let vote: Vote =
                store::read_json(&store.karma_path(&s, version, &voter.parse().unwrap()))
                    .expect("a readable vote")
                    .expect("every vote sent is recorded");
            karma.insert((version.clone(), voter.clone()), i32::from(vote.karma));
        }
    }
    Facts { passed, karma }
}

/// What a tick decides from the inputs in `known`: the newest candidate newer than
/// `current` that passed on every arch, has karma of at least 3 (the default stable
/// threshold) and is not blocked; `None` is a skip.
fn decide(facts: &Facts, known: &[&Input], current: Option<&Version>) -> Option<Version> {
    let mut tested = BTreeSet::new();
    let mut karma: BTreeMap<&Version, i32> = BTreeMap::new();
    let mut blocked: BTreeMap<&Version, bool> = BTreeMap::new();
    for input in known {
        match input {
            Input::Tested { version } if facts.passed[version] => {
                tested.insert(version);
            }
            Input::Tested { .. } => {}
            Input::Vote { version, voter } => {
                *karma.entry(version).or_default() +=
                    facts.karma[&(version.clone(), voter.clone())];
            }
            // The ledger lists overrides in the order they were sent, one at a time.
            Input::Override { version, block } => {
                blocked.insert(version, *block);
            }
        }
    }
    tested
        .into_iter()
        .filter(|v| karma.get(v).copied().unwrap_or(0) >= 3)
        .filter(|v| !blocked.get(v).copied().unwrap_or(false))
        .filter(|v| current.is_none_or(|c| newer(v, c)))
        .max_by(|a, b| releaser_order(a, b))
        .cloned()
}

/// Nightlies are `43.20270101.<n>`: the last number orders them.
fn serial(version: &Version) -> u64 {
    version
        .as_str()
        .rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a season version")
}

fn newer(a: &Version, b: &Version) -> bool {
    serial(a) > serial(b)
}

fn releaser_order(a: &Version, b: &Version) -> std::cmp::Ordering {
    serial(a).cmp(&serial(b))
}

/// Every decision the releaser may rightly have made for a tick it handled between `from`
/// and `to`: an input whose window lies across that span may or may not have been seen.
fn acceptable(
    facts: &Facts,
    inputs: &[(Input, Window)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    current: Option<&Version>,
) -> BTreeSet<Option<Version>> {
    let mut certain = Vec::new();
    let mut open = Vec::new();
    for (input, window) in inputs {
        match window.seen {
            Some(seen) if seen <= from => certain.push(input),
            _ if window.sent > to => {}
            _ => open.push(input),
        }
    }
    assert!(
        open.len() <= 16,
        "{} inputs were in flight at one tick",
        open.len()
    );
    let mut decisions = BTreeSet::new();
    for mask in 0u32..(1 << open.len()) {
        let mut known = certain.clone();
        known.extend(
            open.iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, input)| *input),
        );
        decisions.insert(decide(facts, &known, current));
    }
    decisions
}

// ------------------------------------------------------------------------------------------
// The season

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store_root: PathBuf,
    repo: Repo,
    /// The test's view: the store at its host path, the node's URL.
    config: PathBuf,
    settings: Settings,
    /// The consumers' view, which each replica's own file adds its health address to.
    consumer_config: Table,
    ledger_file: PathBuf,
}

/// The season's configuration with the store at `store` and the broker at `amqp_url`.
fn season_config(
    root: &Path,
    store: &Path,
    amqp_url: &str,
    operator: &str,
    site: &str,
    period: u64,
) -> Table {
    let stream = toml! {
        arches = ["aarch64", "x86_64"]
        input_refs = (toml::Value::Table(arch_refs("atomic-host")))
        ostree_repo = (config::path(&root.join("repo")))
        formats = ["qcow2"]
        recipes = { qcow2 = (config::path(&root.join("bin/recipe"))) }
        test_suite = (config::path(&root.join("suite/suite.toml")))

        [twoweek]
        release_refs = (toml::Value::Table(arch_refs("release")))
        cron = (format!("*/{period} * * * * *"))
        karma_required = true
        when_nothing_passed = "skip"
    };
    // Retries outlast a node restart, so that no input is dead-lettered for a broker fault.
    let consumers: Table = season_queues()
        .map(|consumer| {
            let section = toml! {
                retry_delays_seconds = [1, 2, 5]
                max_attempts = 30
            };
            (consumer.to_string(), toml::Value::Table(section))
        })
        .collect();
    let streams = Table::from_iter([(STREAM.to_owned(), toml::Value::Table(stream))]);
    toml! {
        amqp_url = (amqp_url)
        operators = [(operator)]
        consumers = (toml::Value::Table(consumers))
        streams = (toml::Value::Table(streams))

        [store]
        root = (config::path(store))

        [site]
        base_url = (site)
    }
}

fn setup(node: &Node, operator: &BrokerUser, site: &str, launcher: &Launcher) -> Setup {
    let mut dir = tempfile::tempdir().expect("a season directory");
    // Logs, store and ledger stay for a post-mortem when asked.
    dir.disable_cleanup(std::env::var_os("FORTNIGHT_SEASON_KEEP").is_some());
    let root = dir.path().to_owned();
    println!("season: working in {}", root.display());
    chmod(&root, 0o755);
    for sub in ["store", "bin", "suite/bin", "logs", "ledger"] {
        std::fs::create_dir_all(root.join(sub)).expect("season directories");
    }
    let ledger_file = root.join("ledger/runs");
    std::fs::write(&ledger_file, "").expect("ledger");
    // The recipe writes what the tree's os-release says into the image; the gating test
    // fails an image whose tree had none. Each run leaves a line in the ledger.
    script(
        &root.join("bin/recipe"),
        &format!(
            "echo \"build $FORTNIGHT_VERSION $FORTNIGHT_ARCH\" >> {ledger}\n\
             out=\"$FORTNIGHT_OUTPUT_DIR/$FORTNIGHT_STREAM-$FORTNIGHT_VERSION.$FORTNIGHT_ARCH.qcow2\"\n\
             ostree --repo=\"$FORTNIGHT_REPO\" cat \"$FORTNIGHT_COMMIT\" /usr/lib/os-release > \"$out\" 2>/dev/null \
             || echo 'no os-release' > \"$out\"\n\
             head -c 65536 /dev/zero >> \"$out\"",
            ledger = ledger_file.display()
        ),
    );
    script(
        &root.join("suite/bin/os-release"),
        &format!(
            "echo \"test $FORTNIGHT_VERSION $FORTNIGHT_ARCH\" >> {ledger}\n\
             grep -a -q '^VERSION_ID=' \"$FORTNIGHT_IMAGE\"",
            ledger = ledger_file.display()
        ),
    );
    std::fs::write(
        root.join("suite/suite.toml"),
        "[[test]]\nname = \"os-release\"\nargv = [\"bin/os-release\"]\nkind = \"gating\"\ntimeout_seconds = 60\n",
    )
    .expect("suite");
    let repo = Repo::new(root.join("repo"));
    repo.init_archive().expect("ostree init");
    let store_root = root.join("store");
    let configuration = |store: &Path, amqp_url: &str| {
        season_config(
            &root,
            store,
            amqp_url,
            operator.name.as_str(),
            site,
            period_seconds(),
        )
    };
    let config = root.join("config.toml");
    let text = config::to_toml(&configuration(&store_root, &node.amqp_url()));
    std::fs::write(&config, &text).expect("config");
    let (consumer_store, consumer_amqp_url) = launcher.consumer_view(&store_root, &node.amqp_url());
    let consumer_config = configuration(&consumer_store, &consumer_amqp_url);
    for dir in ["store", "repo", "ledger"] {
        chown(&root.join(dir), launcher.uid());
    }
    let settings = Settings::from_toml(&text).expect("the season's configuration is valid");
    Setup {
        store_root,
        root,
        repo,
        config,
        settings,
        consumer_config,
        ledger_file,
        _dir: dir,
    }
}

/// A replica's configuration: the shared one plus its own health address.
fn replica_config(setup: &Setup, name: &str, replica: usize) -> (PathBuf, std::net::SocketAddr) {
    let health = tests::free_port();
    let consumers = Table::from_iter([(
        name.to_owned(),
        toml::Value::Table(config::health_addr(health)),
    )]);
    let config = config::merged(
        setup.consumer_config.clone(),
        Table::from_iter([("consumers".to_owned(), toml::Value::Table(consumers))]),
    );
    let path = setup.root.join(format!("config-{name}-{replica}.toml"));
    std::fs::write(&path, config::to_toml(&config)).expect("replica config");
    (path, health)
}

/// Commits a nightly of every arch; an arch in `broken` ships no os-release.
fn commit_nightly(
    setup: &Setup,
    n: usize,
    broken: &BTreeSet<Arch>,
    uid: u32,
) -> (Version, BTreeMap<Arch, Commit>) {
    let version: Version = format!("43.20270101.{n}").parse().unwrap();
    let mut commits = BTreeMap::new();
    for a in ARCHES {
        let arch: Arch = a.parse().unwrap();
        let tree = setup.root.join(format!("tree-{n}-{a}"));
        std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
        std::fs::write(tree.join("usr/lib/README"), format!("nightly {n} {a}\n")).unwrap();
        if !broken.contains(&arch) {
            std::fs::write(
                tree.join("usr/lib/os-release"),
                format!("ID=fedora\nVERSION_ID=43\nVERSION=\"{version}\"\n"),
            )
            .unwrap();
        }
        let branch = format!("fedora/{STREAM}/{a}/atomic-host").parse().unwrap();
        let commit = setup
            .repo
            .commit(&branch, &tree, &[("version", version.as_str())])
            .expect("ostree commit");
        std::fs::remove_dir_all(&tree).unwrap();
        commits.insert(arch, commit);
    }
    // The releaser, under the image's uid, moves the release refs of this repository.
    chown(setup.repo.path(), uid);
    (version, commits)
}

/// The hostile messages of one topic: (body bytes, sent by an untrusted account).
fn hostile_catalogue() -> Vec<(&'static str, Vec<u8>, bool)> {
    let traversal = json!({
        "stream": "../../etc", "version": "../../../passwd", "arch": "x86_64",
        "period": "../../x", "user": "../root", "karma": 1, "operator": "../root",
        "reason": "x", "tree": {"ref": "../x", "commit": "../x", "repo": "/"},
    });
    let mut catalogue = Vec::new();
    let fortnight_topics = [
        TreeComposed::TOPIC,
        messages::ImageBuilt::TOPIC,
        messages::ImageTestsPassed::TOPIC,
        KarmaSubmitted::TOPIC,
        messages::KarmaThresholdReached::TOPIC,
        TwoweekTimerFired::TOPIC,
        OverrideBlock::TOPIC,
        OverrideUnblock::TOPIC,
        messages::OverrideRelease::TOPIC,
        messages::OverrideHold::TOPIC,
        messages::OverrideUnhold::TOPIC,
        ReleasePublished::TOPIC,
        ReleaseSkipped::TOPIC,
    ];
    for topic in [
        messages::PungiComposeOstree::TOPIC,
        messages::PungiComposeStatusChange::TOPIC,
    ]
    .into_iter()
    .chain(fortnight_topics)
    {
        catalogue.push((topic, b"{\"stream\": \"tw\", ".to_vec(), false));
    }
    for topic in fortnight_topics {
        catalogue.push((topic, br#"{"stream": 5, "version": []}"#.to_vec(), false));
        catalogue.push((topic, traversal.to_string().into_bytes(), false));
    }
    // A well-formed tick from a tester: only the runtime's trust check stops it.
    let tick = json!({
        "stream": STREAM, "period": "2027-01-01T00:00:00Z",
        "scheduled_for": "2027-01-01T00:00:00Z", "fired_at": "2027-01-01T00:00:00Z",
    });
    for topic in fortnight_topics
        .iter()
        .filter(|t| !t.ends_with("karma.submitted"))
    {
        catalogue.push((topic, tick.to_string().into_bytes(), true));
    }
    catalogue
}

async fn send_hostile(
    guest: &Settings,
    untrusted: &Settings,
    ledger: &Mutex<Ledger>,
    (topic, body, from_untrusted): &(&'static str, Vec<u8>, bool),
) {
    let settings = if *from_untrusted { untrusted } else { guest };
    let ids = send_raw(settings, topic, body).await;
    let mut ledger = ledger.lock().expect("ledger");
    ledger.hostile.extend(ids);
    ledger.fault("hostile message");
}

/// What the fault task does.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill(usize),
    BrokerStopStart(u64),
    NodeRestart,
}

async fn inject(fault: Fault, fleet: &Fleet, node: &Arc<Node>, ledger: &Mutex<Ledger>) {
    match fault {
        Fault::Kill(index) => match fleet.kill(index) {
            (who, true) => {
                println!("season: SIGKILL {who}");
                ledger.lock().expect("ledger").fault("SIGKILL");
            }
            (who, false) => println!("season: SIGKILL {who}: it was not running"),
        },
        Fault::BrokerStopStart(down_ms) => {
            println!("season: broker stop_app for {down_ms} ms");
            let node = node.clone();
            tokio::task::spawn_blocking(move || {
                node.stop_app();
                std::thread::sleep(Duration::from_millis(down_ms));
                node.start_app();
            })
            .await
            .expect("stop_app/start_app");
            ledger
                .lock()
                .expect("ledger")
                .fault("broker stop_app/start_app");
        }
        Fault::NodeRestart => {
            println!("season: full node restart");
            let node = node.clone();
            tokio::task::spawn_blocking(move || node.reboot())
                .await
                .expect("node restart");
            ledger.lock().expect("ledger").fault("node restart");
        }
    }
}

/// Seconds until the next multiple of `period` (a tick).
fn until_next_tick(period: u64) -> Duration {
    let now = Utc::now();
    let millis = now.timestamp_millis().rem_euclid(period as i64 * 1000);
    Duration::from_millis((period as i64 * 1000 - millis) as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_season_under_faults_releases_once_per_period_the_right_candidate_and_loses_nothing() {
    let started = Instant::now();
    let periods = env_number("FORTNIGHT_SEASON_PERIODS", 6) as usize;
    let period = period_seconds();
    let seed = env_number("FORTNIGHT_SEASON_SEED", rand::random::<u32>().into());
    println!(
        "season: seed {seed} (FORTNIGHT_SEASON_SEED={seed} replays it), {periods} periods of {period}s"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    assert_eq!(
        std::fs::metadata("/proc/self").expect("procfs").uid(),
        0,
        "the season runs the consumers under the image's uid and nginx's workers as nobody, which needs root"
    );
    let bins = bin_dir();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut launcher = Launcher::choose(&format!("fortnight-season-{run}"), bins.clone());
    let shape = launcher.shape();
    let uid = launcher.uid();
    println!(
        "season: [{:>4}s] consumers run as {shape}",
        started.elapsed().as_secs()
    );

    let node = Arc::new(Node::start());
    println!(
        "season: [{:>4}s] broker node up",
        started.elapsed().as_secs()
    );
    let testers: Vec<BrokerUser> = (0..4)
        .map(|_| BrokerUser::create_on(&node, "tester"))
        .collect();
    let operator = BrokerUser::create_on(&node, "operator");
    let nginx_dir = tempfile::tempdir().expect("nginx scratch");
    let setup = setup(&node, &operator, "https://season.example.org/", &launcher);
    launcher.deploy(&setup, &node.amqp_url());
    let nginx = Nginx::serve(&setup.store_root, nginx_dir.path());
    let store = Store::open(&setup.store_root).expect("the store");
    let guest = setup.settings.clone();
    let untrusted = with_url(&guest, testers[0].amqp_url());

    let seen = Arc::new(Mutex::new(Vec::new()));
    let watcher = Running::start(&guest, Watcher { seen: seen.clone() });

    let mut specs = Vec::new();
    for (name, replicas) in FLEET {
        for replica in 0..replicas {
            let (config, health) = replica_config(&setup, name, replica);
            specs.push(Spec {
                name,
                replica,
                config,
                health,
                log: setup.root.join(format!("logs/{name}-{replica}.log")),
            });
        }
    }
    // The clock starts once the queues it feeds are bound, as they are in a deployment that
    // has run before: a tick to an exchange with no queue bound is not routed anywhere.
    let (clock, specs): (Vec<Spec>, Vec<Spec>) = specs
        .into_iter()
        .partition(|s| s.name == settings::RELEASE_TIMER);
    let fleet = Fleet::start(launcher, specs);
    wait_ready(&fleet, &setup.root.join("logs")).await;
    for spec in clock {
        fleet.join(spec);
    }
    wait_ready(&fleet, &setup.root.join("logs")).await;
    fleet.assert_deployed();
    println!(
        "season: [{:>4}s] every consumer ready",
        started.elapsed().as_secs()
    );
    let ready = eventually(Duration::from_secs(30), || {
        node.queue_info(&format!("fortnight.{WATCHER}"), "consumers")
            .as_deref()
            == Some("1")
    })
    .await;
    assert!(ready, "the watcher never consumed");

    // Which periods get which broker fault: the short form has one of each.
    let broker_every = periods.max(2);
    let stop_start_at: BTreeSet<usize> = (0..periods)
        .step_by(broker_every.min(10))
        .map(|p| p + rng.random_range(0..broker_every.min(10) / 2 + 1))
        .collect();
    let restart_at: BTreeSet<usize> = (0..periods)
        .step_by(broker_every.min(10))
        .map(|p| p + broker_every.min(10) / 2 + rng.random_range(0..broker_every.min(10) / 2))
        .filter(|p| !stop_start_at.contains(p))
        .collect();
    let block_at = rng.random_range(1..periods.max(3) - 1);
    let catalogue = hostile_catalogue();
    let catalogue_at = rng.random_range(0..periods);

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut awaiting_votes: Vec<Version> = Vec::new();
    // The operator blocks the first candidate to pass from `block_at` on, and unblocks it
    // two periods later.
    let mut block_candidate: Option<(Version, usize)> = None;
    let mut blocked_once = false;
    let fleet = Arc::new(fleet);

    for n in 0..periods {
        let period_end = Instant::now() + until_next_tick(period) + Duration::from_millis(500);
        let broken: BTreeSet<Arch> = ARCHES
            .iter()
            .filter(|_| rng.random_bool(0.2))
            .map(|a| a.parse().unwrap())
            .collect();
        let (version, commits) = commit_nightly(&setup, n, &broken, uid);
        println!(
            "season: [{:>4}s] period {n}: nightly {version}, broken {broken:?}",
            started.elapsed().as_secs()
        );
        for (arch, commit) in &commits {
            let body = TreeComposed {
                arch: arch.clone(),
                tree: Tree {
                    ostree_ref: format!("fedora/{STREAM}/{arch}/atomic-host")
                        .parse()
                        .unwrap(),
                    commit: commit.clone(),
                    repo: setup.repo.path().display().to_string(),
                },
                version: Some(version.clone()),
                compose_id: None,
                force: false,
            };
            send(&guest, &Outgoing::new(uuid::Uuid::new_v4(), &body), None).await;
        }
        {
            let mut l = ledger.lock().expect("ledger");
            l.nightlies.push((version.clone(), commits, broken));
            l.inputs.push((
                Input::Tested {
                    version: version.clone(),
                },
                Window::new(),
            ));
            l.messages_sent += 2;
        }
        awaiting_votes.push(version.clone());

        // This period's faults, at random moments inside it.
        let mut faults: Vec<(Duration, Fault)> = Vec::new();
        let span = (period * 1000 - 3000).max(1000);
        if rng.random_bool(0.7) {
            faults.push((
                Duration::from_millis(rng.random_range(500..span)),
                Fault::Kill(rng.random_range(0..usize::MAX)),
            ));
        }
        if stop_start_at.contains(&n) {
            faults.push((
                Duration::from_millis(rng.random_range(500..span)),
                Fault::BrokerStopStart(rng.random_range(500..4000)),
            ));
        }
        if restart_at.contains(&n) {
            faults.push((
                Duration::from_millis(rng.random_range(500..span)),
                Fault::NodeRestart,
            ));
        }
        let fault_task = {
            let (fleet, node, ledger) = (fleet.clone(), node.clone(), ledger.clone());
            let start = Instant::now();
            tokio::spawn(async move {
                faults.sort_by_key(|(at, _)| *at);
                for (at, fault) in faults {
                    tokio::time::sleep_until((start + at).into()).await;
                    inject(fault, &fleet, &node, &ledger).await;
                }
            })
        };
        let hostile: Vec<(&'static str, Vec<u8>, bool)> = if n == catalogue_at {
            catalogue.clone()
        } else {
            (0..3)
                .map(|_| catalogue[rng.random_range(0..catalogue.len())].clone())
                .collect()
        };
        for message in &hostile {
            send_hostile(&guest, &untrusted, &ledger, message).await;
        }
        // Four testers vote per candidate, mostly +1, sometimes -1 or not at all; stable
        // karma (the default threshold, 3) needs three more +1s than -1s.
        let plans: BTreeMap<Version, Vec<Option<i8>>> = awaiting_votes
            .iter()
            .map(|v| {
                let plan = (0..testers.len())
                    .map(|_| match rng.random_range(0..20) {
                        0 | 1 => Some(-1),
                        2 => None,
                        _ => Some(1),
                    })
                    .collect();
                (v.clone(), plan)
            })
            .collect();
        let blocks_now = n >= block_at && !blocked_once;
        if let Some((version, _)) = block_candidate.take_if(|(_, blocked_in)| n == *blocked_in + 2)
        {
            block(&guest, &operator, &version, false, &ledger).await;
        }

        // Until the period ends: votes go out for every candidate whose tests are in.
        while Instant::now() < period_end {
            observe(&store, &ledger);
            for version in tested(&ledger, &awaiting_votes) {
                awaiting_votes.retain(|v| v != &version);
                // The tracker refuses votes on a candidate that failed, as it should: none
                // are sent, so every dead letter is an injected one.
                if !passed_everywhere(&store, &version) {
                    continue;
                }
                let plan = plans
                    .get(&version)
                    .cloned()
                    .unwrap_or_else(|| vec![Some(1); testers.len()]);
                vote(&guest, &testers, &version, &plan, &ledger).await;
                if blocks_now && !blocked_once {
                    block(&guest, &operator, &version, true, &ledger).await;
                    block_candidate = Some((version.clone(), n));
                    blocked_once = true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        fault_task.await.expect("the fault task");
    }

    // The last nightly gets its votes and the tick after it; then the clock stops.
    let until = Instant::now() + SETTLE;
    while !awaiting_votes.is_empty() && Instant::now() < until {
        observe(&store, &ledger);
        for version in tested(&ledger, &awaiting_votes) {
            awaiting_votes.retain(|v| v != &version);
            if passed_everywhere(&store, &version) {
                let plan = vec![Some(1); testers.len()];
                vote(&guest, &testers, &version, &plan, &ledger).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        awaiting_votes.is_empty(),
        "nightlies never tested: {awaiting_votes:?}"
    );
    let settled = eventually(SETTLE, || {
        observe(&store, &ledger);
        ledger
            .lock()
            .expect("ledger")
            .inputs
            .iter()
            .all(|(_, w)| w.seen.is_some())
    })
    .await;
    assert!(
        settled,
        "inputs never reached the store: {:?}",
        ledger
            .lock()
            .expect("ledger")
            .inputs
            .iter()
            .filter(|(_, w)| w.seen.is_none())
            .collect::<Vec<_>>()
    );
    tokio::time::sleep(until_next_tick(period) + Duration::from_secs(2)).await;
    fleet.retire("release-timer");
    let last_tick = Utc::now();

    // Quiet: every consumer queue drained and acked, nothing in the job journal.
    println!("season: [{:>4}s] settling", started.elapsed().as_secs());
    let quiet = eventually(SETTLE, || {
        queues_idle(&node) && jobs_empty(&setup.store_root)
    })
    .await;
    assert!(
        quiet,
        "the consumers never went idle: {}",
        node.ctl(&[
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged"
        ])
        .unwrap_or_default()
    );
    let ledger = Arc::try_unwrap(ledger)
        .expect("the fault task ended")
        .into_inner()
        .expect("ledger");
    let seen: Vec<Seen> = seen.lock().expect("watcher").clone();

    // 1. One release or skip per period the timer fired, and none for another period.
    let ticks: BTreeMap<Period, TwoweekTimerFired> = seen
        .iter()
        .filter(|s| s.topic == TwoweekTimerFired::TOPIC)
        .map(|s| {
            let tick: TwoweekTimerFired =
                serde_json::from_value(Value::Object(s.body.clone())).unwrap();
            (tick.period, tick)
        })
        .collect();
    let mut decided: BTreeMap<Period, Vec<(String, Option<Version>)>> = BTreeMap::new();
    for s in &seen {
        let (period, outcome) = match s.topic.as_str() {
            ReleasePublished::TOPIC => {
                let r: ReleasePublished =
                    serde_json::from_value(Value::Object(s.body.clone())).unwrap();
                (
                    r.period.expect("every season release belongs to a period"),
                    Some(r.version),
                )
            }
            ReleaseSkipped::TOPIC => {
                let r: ReleaseSkipped =
                    serde_json::from_value(Value::Object(s.body.clone())).unwrap();
                (r.period, None)
            }
            _ => continue,
        };
        let entry = decided.entry(period).or_default();
        if !entry.iter().any(|(id, _)| id == &s.id) {
            entry.push((s.id.clone(), outcome));
        }
    }
    let doubled: Vec<_> = decided.iter().filter(|(_, d)| d.len() > 1).collect();
    assert!(doubled.is_empty(), "periods decided twice: {doubled:?}");
    let tick_periods: BTreeSet<&Period> = ticks.keys().collect();
    let decided_periods: BTreeSet<&Period> = decided.keys().collect();
    assert_eq!(
        tick_periods, decided_periods,
        "every tick is decided, and only ticks are"
    );
    let records = period_records(&store);
    assert_eq!(
        records.keys().collect::<BTreeSet<_>>(),
        decided_periods,
        "the store's .periods/ names the periods decided on the bus"
    );
    let broker_faults = ledger
        .faults
        .get("broker stop_app/start_app")
        .copied()
        .unwrap_or(0)
        + ledger.faults.get("node restart").copied().unwrap_or(0);
    assert!(
        ticks.len() + broker_faults >= periods,
        "the timer fired {} ticks in {periods} periods with {broker_faults} broker outages",
        ticks.len()
    );

    // 2. Each decision is the one the inputs seen by then call for.
    let facts = read_facts(&store, &ledger);
    let mut current: Option<Version> = None;
    let mut releases = Vec::new();
    for (period, record) in &records {
        let (_, outcome) = &decided[period][0];
        let recorded = match &record.state {
            releaser::periods::PeriodState::Released { version } => Some(version.clone()),
            releaser::periods::PeriodState::Skipped => None,
            other => panic!("period {period} ended {other:?}"),
        };
        assert_eq!(
            &recorded, outcome,
            "period {period}: the store and the message agree"
        );
        let tick = &ticks[period];
        let allowed = acceptable(
            &facts,
            &ledger.inputs,
            tick.scheduled_for,
            record.updated,
            current.as_ref(),
        );
        assert!(
            allowed.contains(outcome),
            "period {period} decided {outcome:?}; the inputs seen between {} and {} allow {allowed:?}",
            tick.scheduled_for,
            record.updated
        );
        if let Some(version) = outcome {
            current = Some(version.clone());
            releases.push(version.clone());
        }
    }

    // 3. Every tree built once and tested once per arch.
    let trees: usize = ledger.nightlies.len() * ARCHES.len();
    let mut built: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut tested: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for s in &seen {
        let key = || {
            (
                s.body["version"].as_str().unwrap_or_default().to_owned(),
                s.body["arch"].as_str().unwrap_or_default().to_owned(),
            )
        };
        match s.topic.as_str() {
            messages::ImageBuilt::TOPIC => {
                built.entry(key()).or_default().insert(s.id.clone());
            }
            messages::ImageTestsPassed::TOPIC | messages::ImageTestsFailed::TOPIC => {
                tested.entry(key()).or_default().insert(s.id.clone());
            }
            _ => {}
        }
    }
    assert_eq!(built.len(), trees, "every tree is built: {built:?}");
    assert_eq!(tested.len(), trees, "every tree is tested: {tested:?}");
    assert!(
        built.values().all(|ids| ids.len() == 1),
        "a tree built twice: {built:?}"
    );
    assert!(
        tested.values().all(|ids| ids.len() == 1),
        "a tree tested twice: {tested:?}"
    );
    for (version, _, broken) in &ledger.nightlies {
        for a in ARCHES {
            let report: TestReport =
                store::read_json(&store.tests_json_path(&stream(), version, &a.parse().unwrap()))
                    .expect("a readable report")
                    .expect("every tree has a report");
            assert_eq!(
                report.failed.is_empty(),
                !broken.contains(&a.parse().unwrap()),
                "{version} {a}: a broken tree fails its gating test, a good one passes: {report:?}"
            );
        }
    }

    // 4. Every release is served with a CHECKSUM that verifies.
    let client = reqwest::Client::new();
    for version in &releases {
        for a in ARCHES {
            let base = format!("/{STREAM}/releases/{version}/{a}");
            let sums = client
                .get(nginx.url(&format!("{base}/CHECKSUM")))
                .send()
                .await
                .expect("GET CHECKSUM");
            assert_eq!(sums.status(), 200, "{base}/CHECKSUM is served");
            let sums = sums.text().await.expect("CHECKSUM text");
            let mut lines = 0;
            for line in sums.lines().filter(|l| l.starts_with("SHA256 (")) {
                let (name, hex) = line["SHA256 (".len()..]
                    .split_once(") = ")
                    .expect("SHA256 (name) = hex");
                let image = client
                    .get(nginx.url(&format!("{base}/{name}")))
                    .send()
                    .await
                    .expect("GET image");
                assert_eq!(image.status(), 200, "{base}/{name} is served");
                let bytes = image.bytes().await.expect("image bytes");
                let digest: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(digest, hex, "{base}/{name} matches its CHECKSUM");
                lines += 1;
            }
            assert_eq!(lines, 1, "{base}/CHECKSUM names the release's image");
        }
    }

    // 5. No message left unacked (checked above as the quiet condition); no dead letter but
    //    the injected ones, and each injected one refused.
    let mut dead = BTreeSet::new();
    for consumer in season_queues() {
        for letter in bus::dead_letters::list(&guest, consumer)
            .await
            .expect("dead letters")
        {
            let id = letter.id.clone().unwrap_or_default();
            assert!(
                ledger.hostile.contains(&id),
                "{consumer} dead-lettered {id:?} ({}), which is no injected message",
                letter.reason
            );
            dead.insert(id);
        }
    }
    let untouched: Vec<&String> = ledger
        .hostile
        .iter()
        .filter(|id| !dead.contains(*id))
        .collect();
    assert!(
        untouched.is_empty(),
        "injected messages nobody refused: {untouched:?}"
    );

    // 6. No temporary, empty or half-written file in the store.
    let mut bad = Vec::new();
    walk(&setup.store_root, &setup.store_root, &mut bad);
    assert!(
        bad.is_empty(),
        "the store holds temporary or empty files: {bad:?}"
    );

    // 7. `fortnight status` agrees with the store.
    let status = tests::process::run_ok(
        Command::new(bins.join("fortnight"))
            .arg("--config")
            .arg(&setup.config)
            .arg("status"),
        "fortnight status",
    );
    let status = tests::process::text(&status.stdout);
    let latest = store.current_release(&stream()).expect("releases/latest");
    assert_eq!(latest, current, "releases/latest is the last release");
    match &latest {
        Some(version) => assert!(
            status.contains(&format!("{STREAM}: current release {version}")),
            "{status}"
        ),
        None => assert!(
            status.contains(&format!("{STREAM}: nothing released yet")),
            "{status}"
        ),
    }
    let everything: Vec<&Input> = ledger.inputs.iter().map(|(i, _)| i).collect();
    match decide(&facts, &everything, latest.as_ref()) {
        Some(next) => assert!(
            status.contains(&format!("next tick releases {next}")),
            "{status}"
        ),
        None => assert!(status.contains("next tick releases nothing"), "{status}"),
    }

    let delivered = seen.len();
    let restarts = fleet.restarts.load(Ordering::SeqCst);
    let runs = tests::count_lines(&setup.ledger_file);
    let reruns: usize = runs.values().map(|c| c.saturating_sub(1)).sum();
    println!(
        "season summary ({shape}): seed {seed}; {} periods of {period}s ({} ticks, {} releases, {} skips); {trees} trees; \
         {} messages sent, {delivered} results watched; faults: {:?}, {restarts} restarts; \
         {reruns} recipe/test runs repeated after a kill; lost 0, doubled 0; wall time {:?} (last tick {last_tick})",
        periods,
        ticks.len(),
        releases.len(),
        ticks.len() - releases.len(),
        ledger.messages_sent + ledger.hostile.len(),
        ledger.faults,
        started.elapsed(),
    );
    drop(fleet);
    watcher.stop().await;
    drop(nginx);
}

async fn wait_ready(fleet: &Fleet, logs: &Path) {
    for (name, addr) in fleet.health_addrs() {
        let ready = eventually(Duration::from_secs(60), || tests::is_ready(addr)).await;
        assert!(
            ready,
            "{name} did not become ready on {addr}; logs in {}",
            logs.display()
        );
    }
}

fn queues_idle(node: &Node) -> bool {
    let Ok(out) = node.ctl(&[
        "list_queues",
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "--no-table-headers",
        "--quiet",
    ]) else {
        return false;
    };
    out.lines().all(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [name, ..] if name.ends_with(".dead") => true,
            [_, ready, unacked] => ready == "0" && unacked == "0",
            _ => true,
        }
    })
}

fn jobs_empty(root: &Path) -> bool {
    let mut files = Vec::new();
    walk_files(&root.join(".jobs"), &mut files);
    files.is_empty()
}

fn walk_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk_files(&path, found),
            Ok(_) => found.push(path),
            Err(_) => {}
        }
    }
}

/// Files under a temporary name (or in a temporary directory) anywhere, and empty regular
/// files but lock files (`flock` targets, empty by design).
fn walk(root: &Path, dir: &Path, bad: &mut Vec<String>) {
    let mut files = Vec::new();
    walk_files(dir, &mut files);
    for path in files {
        let relative = path.strip_prefix(root).unwrap().display().to_string();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let meta = path.symlink_metadata().expect("a store entry");
        let temporary = relative.split('/').any(|part| part.starts_with(".tmp"));
        let empty = meta.is_file()
            && meta.size() == 0
            && !relative.contains("/.locks/")
            && !name.ends_with(".lock");
        if temporary || empty {
            bad.push(relative);
        }
    }
}

fn period_records(store: &Store) -> BTreeMap<Period, releaser::periods::PeriodRecord> {
    let dir = store.periods_dir(&stream());
    let mut records = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect(".periods/") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|n| n == "waiting.json") {
            continue;
        }
        let record: releaser::periods::PeriodRecord = store::read_json(&path)
            .expect("a period record")
            .expect("present");
        records.insert(record.period, record);
    }
    records
}

/// The season's own recomputation, on a made-up history: it is what the releaser is judged
/// by, so it must itself pick the newest eligible candidate and allow both outcomes only for
/// an input in flight at the tick.
#[test]
fn the_recomputed_decision_is_the_newest_eligible_candidate_and_in_flight_inputs_count_either_way()
{
    let at = |s: i64| DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap();
    let v = |n: u32| -> Version { format!("43.20270101.{n}").parse().unwrap() };
    let facts = Facts {
        passed: BTreeMap::from([(v(0), true), (v(1), true), (v(2), false)]),
        karma: ["a", "b", "c"]
            .iter()
            .flat_map(|u| [((v(0), u.to_string()), 1), ((v(1), u.to_string()), 1)])
            .chain([((v(1), "d".to_owned()), -1)])
            .collect(),
    };
    let window = |sent: i64, seen: i64| Window {
        sent: at(sent),
        seen: Some(at(seen)),
    };
    let mut inputs: Vec<(Input, Window)> = Vec::new();
    for n in 0..3 {
        inputs.push((Input::Tested { version: v(n) }, window(0, 1)));
    }
    for u in ["a", "b", "c"] {
        for n in 0..2 {
            let vote = Input::Vote {
                version: v(n),
                voter: u.to_owned(),
            };
            inputs.push((vote, window(2, 3)));
        }
    }
    // Before the votes nothing is eligible; after them the newest with karma 3 is.
    assert_eq!(
        acceptable(&facts, &inputs, at(1), at(1), None),
        BTreeSet::from([None])
    );
    assert_eq!(
        acceptable(&facts, &inputs, at(5), at(6), None),
        BTreeSet::from([Some(v(1))])
    );
    assert_eq!(
        acceptable(&facts, &inputs, at(5), at(6), Some(&v(1))),
        BTreeSet::from([None]),
        "nothing newer than the current release"
    );
    // A -1 seen in flight: 1 may or may not have been eligible, and 0 then is.
    inputs.push((
        Input::Vote {
            version: v(1),
            voter: "d".to_owned(),
        },
        window(5, 7),
    ));
    assert_eq!(
        acceptable(&facts, &inputs, at(6), at(6), None),
        BTreeSet::from([Some(v(0)), Some(v(1))])
    );
    // A block seen before the tick takes the candidate out.
    inputs.push((
        Input::Override {
            version: v(0),
            block: true,
        },
        window(8, 9),
    ));
    assert_eq!(
        acceptable(&facts, &inputs, at(10), at(10), None),
        BTreeSet::from([None])
    );
}
