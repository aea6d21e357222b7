//! A two-arch stream with two-week releases, run against the real broker and a real OSTree
//! repository: nightlies are committed with `ostree`, their images and test reports written to
//! the store as the image-tester leaves them, and `fortnight.image.tests.passed` published; the
//! karma-tracker and releaser consume in this process. Votes and overrides come from broker
//! users created for the test with `rabbitmqctl` (deleted on drop), so `user_id` is checked by
//! RabbitMQ exactly as in production.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

pub use crate::broker::BrokerUser;
use crate::config::{self, Table, Value, toml};
use crate::{Running, TestBus, Watch};
use bus::Publisher;
use chrono::{DateTime, Utc};
use karma_tracker::KarmaTracker;
use messages::{
    Arch, Commit, Format, Image, ImageBuilt, ImageTestsPassed, KarmaSubmitted, Outgoing, Override,
    RecordLine, Stream, TestReport, Tree, UserName, Version,
};
use ostree_cli::Repo;
use releaser::Releaser;
use settings::Settings;
use signer::Signer;
use store::{ImageWriter, Store};

pub const STREAM: &str = "tw";
/// The stream that succeeds [`STREAM`] when [`Options::successor`] says so.
pub const SUCCESSOR: &str = "tw2";
pub const ARCHES: [&str; 2] = ["aarch64", "x86_64"];
pub const WAIT: Duration = Duration::from_secs(30);

pub fn stream() -> Stream {
    STREAM.parse().unwrap()
}

pub fn version(text: &str) -> Version {
    text.parse().unwrap()
}

pub fn arch(text: &str) -> Arch {
    text.parse().unwrap()
}

pub fn release_ref(arch: &str) -> messages::Ref {
    release_ref_of(&stream(), arch)
}

/// The release ref of `arch` in `stream` ([`STREAM`] or [`SUCCESSOR`]).
pub fn release_ref_of(stream: &Stream, arch: &str) -> messages::Ref {
    format!("fedora/{stream}/{arch}/release").parse().unwrap()
}

fn input_ref(stream: &Stream, arch: &str) -> messages::Ref {
    format!("fedora/{stream}/{arch}/atomic-host")
        .parse()
        .unwrap()
}

/// How the stream is configured.
#[derive(Debug, Clone)]
pub struct Options {
    pub karma_required: bool,
    pub release_next_pass: bool,
    pub voters: Option<Vec<UserName>>,
    pub operators: Vec<UserName>,
    pub releaser_replicas: usize,
    /// The broker addresses (a cluster's nodes) when not the shared test broker.
    pub brokers: Vec<String>,
    /// Declares the consumers' queues as quorum queues.
    pub quorum_queues: bool,
    /// Signed releases: the GnuPG home, the major version and its key's fingerprint. The
    /// signer runs while [`Pipeline::start_signer`] and [`Pipeline::stop_signer`] say so.
    pub signing: Option<(PathBuf, String, String)>,
    /// `streams.<s>.signing.deadline` (`"3s"`); the default when `None`.
    pub signing_deadline: Option<String>,
    /// The topics requests and replies travel on.
    pub signing_topics: settings::SigningTopics,
    /// More keys of the stream's section (`external_gating = [...]`).
    pub stream_keys: Table,
    /// More tables of the configuration (`[trust.topics]`, ...).
    pub tables: Table,
    /// Consumers the test runs itself (the image-tester, say): the configuration names
    /// their queues, which [`Pipeline::stop`] deletes.
    pub other_consumers: Vec<&'static str>,
    /// Nightlies' trees boot as Fedora's do (`deploy/tests/fixtures/bootable-tree`), so a
    /// machine can deploy them with `ostree admin`; the fixture caches the kernel and
    /// initramfs it builds in this directory.
    pub bootable_trees: Option<PathBuf>,
    /// A second two-week stream, [`SUCCESSOR`], that succeeds [`STREAM`] (`succeeds`), in the
    /// same repository: the one [`STREAM`]'s machines move to at its end of life.
    pub successor: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            karma_required: true,
            release_next_pass: false,
            voters: None,
            operators: Vec::new(),
            releaser_replicas: 1,
            brokers: Vec::new(),
            quorum_queues: false,
            signing: None,
            signing_deadline: None,
            signing_topics: settings::SigningTopics::default(),
            stream_keys: Table::new(),
            tables: Table::new(),
            other_consumers: Vec::new(),
            bootable_trees: None,
            successor: false,
        }
    }
}

/// Puts one qcow2 image holding `content` in `store` where the image-builder would, and
/// returns the `fortnight.image.built` it would send for it, built from a commit of `tree_ref`.
pub fn image_built(
    store: &Store,
    (stream, version, arch): (&Stream, &Version, &Arch),
    tree_ref: &str,
    content: &[u8],
) -> ImageBuilt {
    let format: Format = "qcow2".parse().unwrap();
    let path = store.image_path(stream, version, arch, &format);
    let mut writer = ImageWriter::create(&path).unwrap();
    writer.write_all(content).unwrap();
    let digest = writer.finish().unwrap();
    ImageBuilt {
        stream: stream.clone(),
        version: version.clone(),
        arch: arch.clone(),
        tree: Tree {
            ostree_ref: tree_ref.parse().unwrap(),
            commit: "c".repeat(64).parse().unwrap(),
            repo: "/nonexistent".to_owned(),
        },
        images: vec![Image {
            format,
            path: store.relative(&path),
            size: digest.size,
            sha256: digest.sha256,
        }],
        build_log: "unused".to_owned(),
        compose_id: None,
    }
}

/// Three tester accounts: their +1s reach the default stable threshold (3).
pub fn testers() -> [BrokerUser; 3] {
    std::array::from_fn(|_| BrokerUser::create("tester"))
}

/// The running pipeline of one test.
#[derive(Debug)]
pub struct Pipeline {
    pub bus: TestBus,
    pub settings: Arc<Settings>,
    pub store: Store,
    pub repo: Repo,
    publisher: Publisher,
    bootable_trees: Option<PathBuf>,
    consumers: Vec<Running>,
    signer: Option<Running>,
    _repo_dir: tempfile::TempDir,
}

/// Arch -> `fedora/tw/<arch>/<kind>` for every arch (`atomic-host`, `release`), the table
/// of a stream's `input_refs` or `release_refs`.
pub fn arch_refs(kind: &str) -> Table {
    arch_refs_of(STREAM, kind)
}

fn arch_refs_of(stream: &str, kind: &str) -> Table {
    ARCHES
        .iter()
        .map(|a| {
            (
                (*a).to_owned(),
                Value::from(format!("fedora/{stream}/{a}/{kind}")),
            )
        })
        .collect()
}

fn stream_config(repo: &Path, options: &Options) -> Table {
    let mut config = Table::from_iter([(
        "streams".to_owned(),
        Value::Table(Table::from_iter([(
            STREAM.to_owned(),
            Value::Table(one_stream(STREAM, repo, options)),
        )])),
    )]);
    if options.successor {
        let mut successor = one_stream(SUCCESSOR, repo, options);
        config::merge(&mut successor, toml! { succeeds = (STREAM) });
        config::merge(
            &mut config,
            Table::from_iter([(
                "streams".to_owned(),
                Value::Table(Table::from_iter([(
                    SUCCESSOR.to_owned(),
                    Value::Table(successor),
                )])),
            )]),
        );
    }
    config::merge(&mut config, options.tables.clone());
    config
}

fn one_stream(name: &str, repo: &Path, options: &Options) -> Table {
    let mut stream = toml! {
        arches = (ARCHES.to_vec())
        input_refs = (Value::Table(arch_refs_of(name, "atomic-host")))
        ostree_repo = (config::path(repo))
        formats = ["qcow2"]

        [twoweek]
        release_refs = (Value::Table(arch_refs_of(name, "release")))
        anchor = "2026-01-13T12:00:00Z"
        karma_required = (options.karma_required)
        when_nothing_passed = (if options.release_next_pass { "release-next-pass" } else { "skip" })
        legacy_messages = true
    };
    if let Some(voters) = &options.voters {
        let voters: Vec<&str> = voters.iter().map(UserName::as_str).collect();
        config::merge(&mut stream, toml! { [karma] voters = (voters) });
    }
    if let Some((home, major, key)) = &options.signing {
        let keys = Table::from_iter([(major.clone(), Value::from(key.as_str()))]);
        config::merge(
            &mut stream,
            toml! {
                [signing]
                gnupg_home = (config::path(home))
                keys = (Value::Table(keys))
            },
        );
        if let Some(deadline) = &options.signing_deadline {
            config::merge(
                &mut stream,
                toml! { [signing] deadline = (deadline.as_str()) },
            );
        }
    }
    config::merge(&mut stream, options.stream_keys.clone());
    stream
}

fn with_health(settings: &Settings, consumer: &str) -> (Settings, std::net::SocketAddr) {
    let mut settings = settings.clone();
    let addr = crate::free_port();
    let mut section = settings.consumer(consumer);
    section.health_addr = Some(addr);
    settings.consumers.insert(consumer.to_owned(), section);
    (settings, addr)
}

impl Pipeline {
    pub async fn start(options: Options) -> Self {
        let repo_dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(repo_dir.path().join("repo"));
        repo.init_archive().expect("ostree init");
        let keys = toml! {
            retry_delays_seconds = [1]
            max_attempts = 2
            quorum_queue = (options.quorum_queues)
        };
        let mut bus = TestBus::with_config(stream_config(repo.path(), &options))
            .on_brokers(options.brokers.clone())
            .consumer("karma-tracker", keys.clone())
            .consumer("releaser", keys.clone())
            .consumer(signer::NAME, keys.clone());
        for name in &options.other_consumers {
            bus = bus.consumer(name, keys.clone());
        }
        let mut settings = bus.settings();
        settings.operators = options.operators.clone();
        settings.signing_topics = options.signing_topics.clone();
        let settings = Arc::new(settings);
        let store = Store::open(&settings.store.root).unwrap();
        let mut consumers = Vec::new();
        let mut health = Vec::new();
        let (karma_settings, addr) = with_health(&settings, karma_tracker::NAME);
        let step = KarmaTracker::new(Arc::new(karma_settings.clone())).unwrap();
        consumers.push(Running::start(&karma_settings, step));
        health.push(addr);
        for _ in 0..options.releaser_replicas {
            let (releaser_settings, addr) = with_health(&settings, releaser::NAME);
            let step = Releaser::new(Arc::new(releaser_settings.clone())).unwrap();
            // The releaser's clock watches signing deadlines and switch dates.
            let switches = settings.streams.values().any(|s| s.switch_at.is_some());
            if options.signing.is_some() || switches {
                let deadlines = releaser::deadlines::Deadlines::new(step.clone());
                consumers.push(Running::start_clock(&releaser_settings, deadlines));
            }
            consumers.push(Running::start(&releaser_settings, step));
            health.push(addr);
        }
        for addr in health {
            let ready = crate::eventually(WAIT, || crate::is_ready(addr)).await;
            assert!(ready, "consumer on {addr} did not become ready");
        }
        let publisher = bus.publisher().await;
        Self {
            bus,
            settings,
            store,
            repo,
            publisher,
            bootable_trees: options.bootable_trees,
            consumers,
            signer: None,
            _repo_dir: repo_dir,
        }
    }

    pub async fn watch(&self, topics: &[&str]) -> Watch {
        self.bus.watch(topics).await
    }

    /// Connects the test's publisher again, to the first broker address that answers: after
    /// a cluster node died, the one it used may be gone.
    pub async fn reconnect_publisher(&mut self) {
        let fresh = self.bus.publisher().await;
        std::mem::replace(&mut self.publisher, fresh).close().await;
    }

    /// Starts the signer and waits until it consumes.
    pub async fn start_signer(&mut self) {
        let (settings, addr) = with_health(&self.settings, signer::NAME);
        let step = Signer::new(Arc::new(settings.clone())).unwrap();
        self.signer = Some(Running::start(&settings, step));
        let ready = crate::eventually(WAIT, || crate::is_ready(addr)).await;
        assert!(ready, "the signer on {addr} did not become ready");
    }

    /// Stops the signer; its queue stays and collects requests until it starts again.
    pub async fn stop_signer(&mut self) {
        if let Some(signer) = self.signer.take() {
            signer.stop().await;
        }
    }

    /// Commits a nightly of every arch (each on top of the previous one) and writes its
    /// images and CHECKSUM to the store. Returns the commits. The trees boot when
    /// [`Options::bootable_trees`] says so.
    pub fn nightly(&self, version_text: &str) -> BTreeMap<Arch, Commit> {
        self.nightly_with_packages(version_text, &[])
    }

    /// [`Pipeline::nightly`] whose trees carry an RPM database listing `packages`
    /// (`NAME=[EPOCH:]VERSION-RELEASE`, made by `deploy/tests/fixtures/rpmdb-tree`); none
    /// when empty, like the trees of most tests.
    pub fn nightly_with_packages(
        &self,
        version_text: &str,
        packages: &[&str],
    ) -> BTreeMap<Arch, Commit> {
        self.nightly_of(&stream(), version_text, packages)
    }

    /// [`Pipeline::nightly_with_packages`] of `s` ([`STREAM`] or [`SUCCESSOR`]).
    fn nightly_of(
        &self,
        s: &Stream,
        version_text: &str,
        packages: &[&str],
    ) -> BTreeMap<Arch, Commit> {
        let mut commits = BTreeMap::new();
        for a in ARCHES {
            let tree = self
                .bus
                .dir
                .path()
                .join(format!("tree-{s}-{version_text}-{a}"));
            if !packages.is_empty() {
                run_fixture(
                    Command::new(fixture("rpmdb-tree"))
                        .arg(&tree)
                        .arg(self.bus.dir.path().join("rpms"))
                        .args(packages),
                );
            }
            if let Some(cache) = &self.bootable_trees {
                run_fixture(Command::new(fixture("bootable-tree")).arg(&tree).arg(cache));
            }
            std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
            // `ostree admin deploy` names the boot entry after the ID.
            std::fs::write(
                tree.join("usr/lib/os-release"),
                format!(
                    "ID=fedora\nVERSION=\"{version_text}\"\nVERSION_ID={version_text}\nARCH={a}\n"
                ),
            )
            .unwrap();
            let commit = self
                .repo
                .commit(&input_ref(s, a), &tree, &[("version", version_text)])
                .expect("ostree commit");
            let format: Format = "qcow2".parse().unwrap();
            let (v, ar) = (version(version_text), arch(a));
            let path = self.store.image_path(s, &v, &ar, &format);
            let mut writer = ImageWriter::create(&path).unwrap();
            writer
                .write_all(format!("image {version_text} {a}").as_bytes())
                .unwrap();
            let digest = writer.finish().unwrap();
            let name: store::FileName =
                path.file_name().unwrap().to_str().unwrap().parse().unwrap();
            store::checksum::write(
                &self.store.checksum_path(s, &v, &ar),
                &BTreeMap::from([(name, digest.sha256.clone())]),
            )
            .unwrap();
            commits.insert(ar, commit);
        }
        commits
    }

    fn report(
        &self,
        s: Stream,
        version_text: &str,
        a: &str,
        commit: &Commit,
        failed: &[&str],
    ) -> TestReport {
        let (v, ar) = (version(version_text), arch(a));
        let format: Format = "qcow2".parse().unwrap();
        let path = self.store.image_path(&s, &v, &ar, &format);
        let digest = store::hash_file(&path).unwrap();
        TestReport {
            tree: Tree {
                ostree_ref: input_ref(&s, a),
                commit: commit.clone(),
                repo: self.repo.path().display().to_string(),
            },
            images: vec![Image {
                format,
                path: self.store.relative(&path),
                size: digest.size,
                sha256: digest.sha256,
            }],
            tests: Vec::new(),
            failed: failed.iter().map(|f| (*f).to_owned()).collect(),
            stream: s,
            version: v,
            arch: ar,
        }
    }

    /// Writes one arch's test report to the store, without a message.
    pub fn write_report(
        &self,
        version_text: &str,
        a: &str,
        commit: &Commit,
        failed: &[&str],
    ) -> TestReport {
        self.write_report_of(stream(), version_text, a, commit, failed)
    }

    fn write_report_of(
        &self,
        s: Stream,
        version_text: &str,
        a: &str,
        commit: &Commit,
        failed: &[&str],
    ) -> TestReport {
        let report = self.report(s, version_text, a, commit, failed);
        store::write_json(
            &self
                .store
                .tests_json_path(&report.stream, &report.version, &report.arch),
            &report,
        )
        .unwrap();
        report
    }

    /// Records one arch's test result as the image-tester does (report first, then the
    /// message when it passed).
    pub async fn tested(&self, version_text: &str, a: &str, commit: &Commit, failed: &[&str]) {
        self.tested_of(stream(), version_text, a, commit, failed)
            .await;
    }

    async fn tested_of(
        &self,
        s: Stream,
        version_text: &str,
        a: &str,
        commit: &Commit,
        failed: &[&str],
    ) {
        let report = self.write_report_of(s, version_text, a, commit, failed);
        if failed.is_empty() {
            let id = uuid::Uuid::new_v4();
            self.publisher
                .publish(&Outgoing::new(id, &ImageTestsPassed(report)))
                .await
                .expect("tests.passed published");
        }
    }

    /// A nightly whose every arch passed, except `failing` (arch, test).
    pub async fn nightly_tested(
        &self,
        version_text: &str,
        failing: Option<(&str, &str)>,
    ) -> BTreeMap<Arch, Commit> {
        let commits = self.nightly(version_text);
        self.tested_every_arch(&stream(), version_text, commits, failing)
            .await
    }

    /// [`Pipeline::nightly_tested`] of `s` ([`SUCCESSOR`]), passed on every arch.
    pub async fn nightly_tested_of(
        &self,
        s: &Stream,
        version_text: &str,
    ) -> BTreeMap<Arch, Commit> {
        let commits = self.nightly_of(s, version_text, &[]);
        self.tested_every_arch(s, version_text, commits, None).await
    }

    /// A nightly carrying `packages` ([`Pipeline::nightly_with_packages`]) that passed on
    /// every arch.
    pub async fn nightly_tested_with_packages(
        &self,
        version_text: &str,
        packages: &[&str],
    ) -> BTreeMap<Arch, Commit> {
        let commits = self.nightly_with_packages(version_text, packages);
        self.tested_every_arch(&stream(), version_text, commits, None)
            .await
    }

    async fn tested_every_arch(
        &self,
        s: &Stream,
        version_text: &str,
        commits: BTreeMap<Arch, Commit>,
        failing: Option<(&str, &str)>,
    ) -> BTreeMap<Arch, Commit> {
        for (ar, commit) in &commits {
            let failed: Vec<&str> = failing
                .filter(|(a, _)| *a == ar.as_str())
                .map(|(_, t)| t)
                .into_iter()
                .collect();
            self.tested_of(s.clone(), version_text, ar.as_str(), commit, &failed)
                .await;
        }
        commits
    }

    /// A nightly of [`SUCCESSOR`] that passed its tests on every arch, released at once by
    /// `operator` (`fortnight.override.release`): the release its machines move to. Returns
    /// the commits; the caller waits for the release.
    pub async fn successor_release(
        &self,
        operator: &BrokerUser,
        version_text: &str,
    ) -> BTreeMap<Arch, Commit> {
        let successor: Stream = SUCCESSOR.parse().unwrap();
        let commits = self.nightly_of(&successor, version_text, &[]);
        for (ar, commit) in &commits {
            self.write_report_of(successor.clone(), version_text, ar.as_str(), commit, &[]);
        }
        let body = Override {
            stream: successor,
            ..self.override_body(operator, Some(version_text), "the next release is out")
        };
        self.override_as(operator, messages::OverrideRelease(body))
            .await;
        commits
    }

    pub async fn vote(&self, voter: &BrokerUser, version_text: &str, karma: i8) {
        let body = KarmaSubmitted {
            stream: stream(),
            version: version(version_text),
            user: voter.name.clone(),
            karma,
            comment: Some("tested on my laptop".into()),
        };
        self.publish_signed(voter, &body).await;
    }

    /// Publishes an override of `M` (block, release, hold, ...) as `operator`.
    pub async fn override_as<M: messages::Message>(&self, operator: &BrokerUser, body: M) {
        self.publish_signed(operator, &body).await;
    }

    /// Publishes `body` under a fresh id, signed as `user` ([`Pipeline::send_signed`]).
    pub async fn publish_signed<M: messages::Message>(&self, user: &BrokerUser, body: &M) {
        self.send_signed(user, &Outgoing::new(uuid::Uuid::new_v4(), body))
            .await;
    }

    /// Sends `message` over `user`'s own connection with `user_id` set to `user`, so the
    /// broker vouches for the sender.
    pub async fn send_signed(&self, user: &BrokerUser, message: &Outgoing) {
        let publisher = user.publisher(&self.settings).await;
        publisher
            .publish_as(message, user.name.as_str())
            .await
            .unwrap_or_else(|e| panic!("{} publishes {} signed: {e}", user.name, message.topic));
        publisher.close().await;
    }

    pub fn override_body(
        &self,
        operator: &BrokerUser,
        version_text: Option<&str>,
        reason: &str,
    ) -> Override {
        Override {
            stream: stream(),
            version: version_text.map(version),
            reason: reason.to_owned(),
            operator: operator.name.clone(),
            expires: None,
        }
    }

    /// The tick of the period starting at `period`, as the release timer publishes it.
    pub async fn tick(&self, period: &str) -> Outgoing {
        self.tick_of(&stream(), period).await
    }

    /// The tick of `s` ([`SUCCESSOR`]) for the period starting at `period`.
    pub async fn tick_of(&self, s: &Stream, period: &str) -> Outgoing {
        let scheduled: DateTime<Utc> = period.parse().unwrap();
        let message = release_timer::tick_message(s, scheduled, Utc::now(), None);
        self.publish(&message).await;
        message
    }

    pub async fn publish(&self, message: &Outgoing) {
        self.publisher.publish(message).await.expect("published");
    }

    /// The commit whose tree the release ref of `a` ships: the tested commit its release
    /// commit was made from.
    pub fn release_commit(&self, a: &str) -> Option<Commit> {
        self.release_head(a).map(|head| {
            self.repo
                .release_source(&head)
                .expect("the release commit's source")
        })
    }

    /// The commit the release ref of `a` points at (its release commit).
    pub fn release_head(&self, a: &str) -> Option<Commit> {
        self.repo
            .rev_parse(&release_ref(a))
            .expect("ostree rev-parse")
    }

    pub fn audit_log(&self) -> Vec<releaser::overrides::AuditEntry> {
        releaser::overrides::read_log(&self.store, &stream()).unwrap()
    }

    pub fn release_dir(&self, version_text: &str) -> PathBuf {
        self.store.release_dir(&stream(), &version(version_text))
    }

    /// Stops the consumers and deletes the test's queues and exchange.
    pub async fn stop(self) {
        for consumer in self.consumers.into_iter().chain(self.signer) {
            consumer.stop().await;
        }
        self.publisher.close().await;
        self.bus.cleanup().await;
    }
}

/// `deploy/tests/fixtures/<name>`, a script that adds to a tree about to be committed.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/tests/fixtures")
        .join(name)
}

fn run_fixture(command: &mut Command) {
    let made = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} does not run: {e}"));
    assert!(
        made.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// The recorded messages whose topic ends with `topic`.
pub fn of_topic<'a>(lines: &'a [RecordLine], topic: &str) -> Vec<&'a RecordLine> {
    lines.iter().filter(|l| l.topic.ends_with(topic)).collect()
}

/// Waits until at least `count` messages of `topic` were recorded; returns them.
pub async fn wait_topic(watch: &mut Watch, topic: &str, count: usize) -> Vec<RecordLine> {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = watch.wait_for(0, Duration::ZERO).await.to_vec();
        let matching: Vec<RecordLine> = of_topic(&seen, topic).into_iter().cloned().collect();
        if matching.len() >= count || tokio::time::Instant::now() > until {
            return matching;
        }
        watch
            .wait_for(seen.len() + 1, Duration::from_millis(500))
            .await;
    }
}

/// Waits for a dead letter of `consumer` whose reason contains `text`.
pub async fn dead_letter_with(
    p: &Pipeline,
    consumer: &str,
    text: &str,
) -> bus::dead_letters::DeadLetter {
    p.bus.wait_dead_letter_saying(consumer, text, WAIT).await
}
