//! `fortnight demo`: the whole pipeline on this machine in about a minute. It makes a scratch
//! OSTree repository with three nightlies for two arches, runs every consumer in-process
//! against the local RabbitMQ, publishes the tree events, votes, fires the two-week tick and
//! explains what was released and why the other candidates were not.
//!
//! Everything it makes lives under one directory (`--dir`, or a new temporary one): the
//! OSTree repo, the artifact tree with the site, the configuration and the test suite. Its
//! exchange, topic prefix and queues carry a per-run id, so it never disturbs other users of
//! the broker, and the queues and exchange are deleted at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bus::record::Recording;
use chrono::Utc;
use messages::envelope::strip_prefix;
use messages::{
    Arch, CandidateTestingRequested, ImageBuildFailed, ImageBuilt, ImageTestsFailed,
    ImageTestsPassed, KarmaSubmitted, KarmaThresholdReached, Message, Outgoing, RecordLine, Ref,
    ReleasePublished, ReleaseSkipped, Stream, Tree, TreeComposed, TwoweekTimerFired, UserName,
    Version, derived_id,
};
use ostree_cli::Repo;
use settings::{QUEUE_CONSUMERS, Settings};
use tokio::sync::watch;

/// Marks a directory as made by the demo, so a second run may replace its contents.
const MARKER: &str = ".fortnight-demo";
const STREAM: &str = "f43";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// The nightlies: version, and the arch whose tree ships without `/usr/lib/os-release` (so
/// its image fails the suite's `os-release` test).
const NIGHTLIES: [(&str, Option<&str>); 3] = [
    ("43.20261124.0", None),
    ("43.20261125.0", None),
    ("43.20261126.0", Some("aarch64")),
];
/// The candidate testers vote for: not the newest, which fails its tests.
const VOTED: &str = "43.20261125.0";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep everything the demo makes under DIR (created if needed; a previous demo's
    /// contents there are replaced). Without it a new temporary directory is used.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Give up when the pipeline has not finished after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// Names this run's exchange, prefix and queues (default: random), so a test can
    /// subscribe before the demo publishes.
    #[arg(long, hide = true)]
    pub run_id: Option<String>,
    /// Also boot each x86_64 image under qemu-system-x86_64 with the shipped boot test: its
    /// trees then carry Debian's cloud kernel and an initramfs (about 10 s more per image
    /// under TCG). Needs linux-image-cloud-amd64, busybox-static, cpio and qemu-system-x86_64.
    #[arg(long)]
    pub boot: bool,
}

/// The programs the demo's recipe and tests run, with the Debian package that has each.
const TOOLS: &[(&str, &str)] = &[
    ("ostree", "ostree"),
    ("mke2fs", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("qemu-img", "qemu-utils"),
    ("gpg", "gnupg"),
];
/// What `--boot` needs too: the fixture builds an initramfs from busybox with cpio for the
/// installed kernel, which it finds itself (and names the package when it is missing).
/// `qemu-system-x86_64` is not listed: on Debian 12 its package would replace a newer
/// qemu-utils; the boot test says where to get one (README).
const BOOT_TOOLS: &[(&str, &str)] = &[("busybox", "busybox-static"), ("cpio", "cpio")];

/// The demo's signing key: made in `<dir>/gnupg` on every run.
struct DemoKey {
    home: PathBuf,
    fingerprint: String,
}

/// Fails up front, naming what to install, rather than minutes later in a build log.
fn require_tools(boot: bool) -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let boot_tools = if boot { BOOT_TOOLS } else { &[] };
    let missing: Vec<&(&str, &str)> = TOOLS
        .iter()
        .chain(boot_tools)
        .filter(|(tool, _)| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let tools: Vec<&str> = missing.iter().map(|(tool, _)| *tool).collect();
    let mut packages: Vec<&str> = missing.iter().map(|(_, package)| *package).collect();
    packages.dedup();
    bail!(
        "the demo needs {} on PATH; install with `apt-get install {}` (or run .ci/run, which installs them)",
        tools.join(", "),
        packages.join(" ")
    )
}

pub async fn run(_config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    require_tools(args.boot)?;
    let run_id = match args.run_id {
        Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) => id,
        Some(id) => bail!("--run-id {id:?} must be letters and digits"),
        None => uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
    };
    let dir = prepare_dir(args.dir)?;
    let home = dir.join("gnupg");
    let fingerprint = signer::Gpg::new(&home)
        .generate_key("Fortnight demo <demo@fortnight.invalid>")
        .context("cannot make the demo's signing key")?;
    let key = DemoKey { home, fingerprint };
    let amqp_url = std::env::var("FORTNIGHT_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    // The demo votes and fires the tick as the broker user, which must be an operator: find
    // it from a first config, then write the config that names it.
    let config_path = write_demo_files(&dir, &run_id, &amqp_url, args.boot, &[], &key)?;
    let user = super::Identity { user: None }.resolve(&super::load_settings(&config_path)?.bus)?;
    write_demo_files(
        &dir,
        &run_id,
        &amqp_url,
        args.boot,
        std::slice::from_ref(&user),
        &key,
    )?;
    let settings = Arc::new(super::load_settings(&config_path)?);
    let progress = Progress { started };

    let publisher = tokio::time::timeout(
        Duration::from_secs(15),
        bus::Publisher::connect(&settings, "fortnight-demo"),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer from the broker within 15 seconds"))
    .and_then(|r| r.map_err(anyhow::Error::from))
    .context(
        "cannot reach RabbitMQ; start it with `rabbitmq-server -detached` (or `systemctl start \
             rabbitmq-server`) and run `fortnight demo` again",
    )?;
    progress.say(&format!("working in {}", dir.display()));

    let trees = make_repo(&dir, args.boot, &progress)?;
    let mut recording = bus::record::subscribe(&settings, &["fortnight.#".to_owned()])
        .await
        .context("cannot subscribe to the demo's messages")?;

    let (stop, stopped) = watch::channel(false);
    let consumers = tokio::spawn(super::up::run_all(
        Arc::clone(&settings),
        super::up::shutdown_waiter(&stopped),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut seen = Seen::default();
    let result = match wait_ready(&settings, deadline).await {
        Err(error) => Err(error),
        Ok(()) => {
            progress.say(&format!(
                "consumers ready: {}, release-timer",
                QUEUE_CONSUMERS.join(", ")
            ));
            let mut watch = Watch {
                recording: &mut recording,
                seen: &mut seen,
                prefix: &settings.topic_prefix,
                progress: &progress,
                deadline,
            };
            drive(&settings, &publisher, &mut watch, &trees, &user).await
        }
    };

    let _ = stop.send(true);
    let stopped_cleanly = consumers.await;
    recording.close().await;
    publisher.close().await;
    cleanup(&settings).await;
    signer::Gpg::new(&key.home).stop_agent();
    result?;
    match stopped_cleanly {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error.context("a consumer failed during the demo")),
        Err(join) => bail!("the consumers' task panicked: {join}"),
    }
    summarize(&settings, &dir, &seen, &trees, &key)?;
    progress.say("done");
    Ok(ExitCode::SUCCESS)
}

/// Installs the log subscriber before `bus::init_tracing` (which then keeps it): the demo's
/// progress lines are what a newcomer reads, so logs default to warnings and the AMQP
/// client's connection-close chatter is left out. `FORTNIGHT_LOG` still decides when set.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORTNIGHT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lapin=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Creates (or reclaims) the demo directory; refuses a non-empty directory the demo did not make.
fn prepare_dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let mut entries = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?;
            if dir.join(MARKER).exists() {
                for entry in std::fs::read_dir(&dir)? {
                    let path = entry?.path();
                    let removed = if path.is_dir() && !path.is_symlink() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.with_context(|| {
                        format!("cannot remove the previous demo's {}", path.display())
                    })?;
                }
            } else if entries.next().is_some() {
                bail!(
                    "{} is not empty and was not made by `fortnight demo`; pass an empty or new directory",
                    dir.display()
                );
            }
            dir
        }
        None => tempfile::Builder::new()
            .prefix("fortnight-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?
            .keep(),
    };
    std::fs::write(
        dir.join(MARKER),
        "made by fortnight demo; a new run replaces everything here\n",
    )?;
    // Absolute, so the config and the links on the page work from anywhere.
    std::fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

/// A TOML string literal (TOML's basic strings share JSON's escapes).
fn toml_str(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The recipes shipped with Fortnight: installed with the container image, or in this
/// source tree when run with `cargo run`.
fn recipes_dir() -> anyhow::Result<PathBuf> {
    let candidates = [
        std::env::var_os("FORTNIGHT_RECIPES").map(PathBuf::from),
        Some(PathBuf::from("/usr/share/fortnight/recipes")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/recipes")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("qcow2").is_file())
        .and_then(|dir| std::fs::canonicalize(dir).ok())
        .context(
            "cannot find the image recipes; set FORTNIGHT_RECIPES to the deploy/recipes directory",
        )
}

const QEMU_IMG_CHECK: &str = r#"#!/bin/sh
# The image is a well-formed qcow2.
exec qemu-img check -f qcow2 "$FORTNIGHT_IMAGE"
"#;

const OS_RELEASE: &str = r#"#!/bin/sh
# The image's deployment carries os-release naming the tree's version.
set -eu
raw="$FORTNIGHT_SCRATCH/disk.raw"
qemu-img convert -O raw "$FORTNIGHT_IMAGE" "$raw"
found="$(debugfs -R "cat /ostree/deploy/fedora-atomic/deploy/$FORTNIGHT_COMMIT.0/usr/lib/os-release" "$raw" 2>/dev/null || true)"
if printf '%s\n' "$found" | grep -qx "VERSION=\"$FORTNIGHT_VERSION\""; then
    echo "os-release names $FORTNIGHT_VERSION"
else
    echo "/usr/lib/os-release is missing or does not name $FORTNIGHT_VERSION"
    exit 1
fi
"#;

/// Writes the config and the test suite (with `boot`, the shipped boot test too); returns
/// the config's path.
fn write_demo_files(
    dir: &Path,
    run_id: &str,
    amqp_url: &str,
    boot: bool,
    operators: &[UserName],
    key: &DemoKey,
) -> anyhow::Result<PathBuf> {
    let recipes = recipes_dir()?;
    let suite = dir.join("suite");
    std::fs::create_dir_all(suite.join("bin"))?;
    for (name, script) in [
        ("qemu-img-check", QEMU_IMG_CHECK),
        ("os-release", OS_RELEASE),
    ] {
        let path = suite.join("bin").join(name);
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let mut tests = String::from(
        "[[test]]\nname = \"qemu-img-check\"\nargv = [\"bin/qemu-img-check\"]\ntimeout_seconds = 60\n\n\
         [[test]]\nname = \"os-release\"\nargv = [\"bin/os-release\"]\ntimeout_seconds = 60\n",
    );
    if boot {
        // The shipped boot test, as the Atomic Host suite runs it (aarch64 skips).
        tests.push_str(&format!(
            "\n[[test]]\nname = \"boot\"\nargv = [{}]\nformats = [\"qcow2\"]\ntimeout_seconds = 300\n\
             env = {{ FORTNIGHT_BOOT_KERNEL = \"required\", FORTNIGHT_BOOT_SECONDS = \"240\" }}\n",
            toml_str(&shipped_tests(&recipes)?.join("bin/boot").to_string_lossy())
        ));
    }
    std::fs::write(suite.join("suite.toml"), tests)?;

    let store = dir.join("store");
    let anchor =
        (Utc::now() + chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut config = format!(
        "# Written by `fortnight demo` (run {run_id}).\n\
         amqp_url = {url}\npublish_exchange = \"fortnight.demo.{run_id}\"\ntopic_prefix = \"demo.{run_id}\"\n\
         operators = [{user}]\n\n[store]\nroot = {store}\n\n[site]\nbase_url = {base}\n\
         intro = \"A demo of Fortnight: images are built, tested, voted on and released automatically.\"\n",
        url = toml_str(amqp_url),
        user = operators
            .iter()
            .map(|o| toml_str(o.as_str()))
            .collect::<Vec<_>>()
            .join(", "),
        store = toml_str(&store.to_string_lossy()),
        base = toml_str(&format!("file://{}/", store.display())),
    );
    for consumer in QUEUE_CONSUMERS {
        config.push_str(&format!(
            "\n[consumers.{consumer}]\nqueue = \"fortnight.demo.{run_id}.{consumer}\"\n\
             max_attempts = 2\nretry_delays_seconds = [1]\nhealth_addr = \"{addr}\"\n",
            addr = free_local_addr()?,
        ));
    }
    let refs = |kind: &str| {
        ARCHES
            .iter()
            .map(|arch| format!("{arch} = \"fedora/43/{arch}/{kind}atomic-host\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    config.push_str(&format!(
        "\n[streams.{STREAM}]\narches = [{arches}]\ninput_refs = {{ {inputs} }}\nostree_repo = {repo}\n\
         formats = [\"qcow2\"]\nrecipes = {{ qcow2 = {recipe} }}\ntest_suite = {suite}\n\n\
         [streams.{STREAM}.karma]\nstable_threshold = 1\n\n\
         [streams.{STREAM}.twoweek]\nrelease_refs = {{ {releases} }}\n\
         # In the future, so the timer stays quiet and the demo fires the tick itself.\n\
         anchor = \"{anchor}\"\nperiod_days = 14\n\n\
         [streams.{STREAM}.signing]\ngnupg_home = {home}\nkeys = {{ \"43\" = {fingerprint} }}\n",
        arches = ARCHES.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", "),
        inputs = refs("updates/"),
        releases = refs(""),
        repo = toml_str(&dir.join("repo").to_string_lossy()),
        recipe = toml_str(&recipes.join("qcow2").to_string_lossy()),
        suite = toml_str(&suite.join("suite.toml").to_string_lossy()),
        home = toml_str(&key.home.to_string_lossy()),
        fingerprint = toml_str(&key.fingerprint),
    ));
    let path = dir.join("config.toml");
    std::fs::write(&path, config)?;
    Ok(path)
}

/// A loopback address with a port nobody listens on right now, for a consumer's health
/// endpoint: the demo polls `/ready` to know the consumer's queue is bound.
fn free_local_addr() -> anyhow::Result<std::net::SocketAddr> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free local port")?;
    Ok(listener.local_addr()?)
}

/// Waits until every consumer answers `/ready` (connected, queue declared and bound): a tree
/// event published earlier would reach no queue and be lost.
async fn wait_ready(settings: &Settings, deadline: tokio::time::Instant) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for consumer in QUEUE_CONSUMERS {
        let Some(addr) = settings.consumer(consumer).health_addr else {
            continue;
        };
        let url = format!("http://{addr}/ready");
        loop {
            let ready = client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the {consumer} consumer did not become ready ({url})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// One nightly tree of one arch, as committed.
#[derive(Debug, Clone)]
struct Nightly {
    version: Version,
    arch: Arch,
    tree: Tree,
}

/// The shipped test suite's directory, beside the recipes (`deploy/tests`).
fn shipped_tests(recipes: &Path) -> anyhow::Result<PathBuf> {
    let tests = recipes.with_file_name("tests");
    if tests.join("bin/boot").is_file() {
        Ok(tests)
    } else {
        bail!(
            "cannot find the shipped boot test at {}; set FORTNIGHT_RECIPES to a deploy/recipes directory that has deploy/tests beside it",
            tests.join("bin/boot").display()
        )
    }
}

/// Commits the nightlies into a new archive repository; with `boot`, the x86_64 trees carry
/// a kernel, an initramfs and a self-test (`deploy/tests/fixtures/bootable-tree`).
fn make_repo(dir: &Path, boot: bool, progress: &Progress) -> anyhow::Result<Vec<Nightly>> {
    let bootable_tree = if boot {
        Some(shipped_tests(&recipes_dir()?)?.join("fixtures/bootable-tree"))
    } else {
        None
    };
    let repo_path = dir.join("repo");
    let repo = Repo::new(&repo_path);
    repo.init_archive()
        .context("cannot create the demo's OSTree repository")?;
    let scratch = tempfile::tempdir_in(dir).context("cannot create a scratch directory")?;
    let mut nightlies = Vec::new();
    for (version, broken_arch) in NIGHTLIES {
        for arch in ARCHES {
            let root = scratch.path().join(format!("{version}-{arch}"));
            if let Some(fixture) = bootable_tree.as_deref().filter(|_| arch == "x86_64") {
                let made = std::process::Command::new(fixture)
                    .arg(&root)
                    .output()
                    .with_context(|| format!("cannot run {}", fixture.display()))?;
                if !made.status.success() {
                    bail!(
                        "cannot make a bootable tree for {version} on {arch}: {}",
                        String::from_utf8_lossy(&made.stderr).trim()
                    );
                }
            }
            std::fs::create_dir_all(root.join("usr/lib"))?;
            std::fs::create_dir_all(root.join("usr/share/fortnight-demo"))?;
            std::fs::write(
                root.join("usr/share/fortnight-demo/README"),
                format!("nightly {version} for {arch}\n"),
            )?;
            if broken_arch != Some(arch) {
                std::fs::write(
                    root.join("usr/lib/os-release"),
                    format!("NAME=\"Fedora Atomic Host\"\nVERSION_ID=43\nVERSION=\"{version}\"\n"),
                )?;
            }
            let input: Ref = format!("fedora/43/{arch}/updates/atomic-host").parse()?;
            let commit = repo
                .commit(&input, &root, &[("version", version)])
                .with_context(|| format!("cannot commit nightly {version} for {arch}"))?;
            nightlies.push(Nightly {
                version: version.parse()?,
                arch: arch.parse()?,
                tree: Tree {
                    ostree_ref: input,
                    commit,
                    repo: repo_path.to_string_lossy().into_owned(),
                },
            });
        }
    }
    progress.say(&format!(
        "made an OSTree repo with {} nightlies for {}: {}",
        NIGHTLIES.len(),
        ARCHES.join(" and "),
        repo_path.display()
    ));
    Ok(nightlies)
}

/// Elapsed-time progress lines on standard output.
#[derive(Debug)]
struct Progress {
    started: Instant,
}

impl Progress {
    fn say(&self, line: &str) {
        println!("[{:>5.1}s] {line}", self.started.elapsed().as_secs_f64());
    }
}

/// What the demo has seen on the bus.
#[derive(Debug, Default)]
struct Seen {
    /// (version, arch) -> failed gating tests (empty when passed).
    tested: BTreeMap<(Version, Arch), Vec<String>>,
    build_failed: BTreeMap<(Version, Arch), String>,
    requested: BTreeSet<Version>,
    stable: BTreeSet<Version>,
    released: Option<ReleasePublished>,
    skipped: Option<ReleaseSkipped>,
    topics: Vec<String>,
}

impl Seen {
    fn finished_nightlies(&self) -> usize {
        self.tested.len() + self.build_failed.len()
    }

    /// Records a message and describes it for the progress output.
    fn absorb(&mut self, record: &RecordLine, prefix: &str) -> Option<String> {
        let topic = strip_prefix(&record.topic, prefix).to_owned();
        self.topics.push(topic.clone());
        let body = record.body.clone();
        fn parse<M: Message>(body: serde_json::Value) -> Option<M> {
            serde_json::from_value(body).ok()
        }
        match topic.as_str() {
            ImageBuilt::TOPIC => parse::<ImageBuilt>(body).map(|m| {
                let sizes: Vec<String> = m
                    .images
                    .iter()
                    .map(|i| format!("{} {} bytes", i.format, i.size))
                    .collect();
                format!(
                    "image built: {} {} {} ({})",
                    m.stream,
                    m.version,
                    m.arch,
                    sizes.join(", ")
                )
            }),
            ImageBuildFailed::TOPIC => parse::<ImageBuildFailed>(body).map(|m| {
                if let Some(version) = &m.version {
                    self.build_failed
                        .insert((version.clone(), m.arch.clone()), m.reason.clone());
                }
                format!("image build failed: {} {}: {}", m.stream, m.arch, m.reason)
            }),
            ImageTestsPassed::TOPIC => {
                parse::<ImageTestsPassed>(body).map(|ImageTestsPassed(r)| {
                    self.tested
                        .insert((r.version.clone(), r.arch.clone()), Vec::new());
                    format!(
                        "tests passed: {} {} {} ({} tests)",
                        r.stream,
                        r.version,
                        r.arch,
                        r.tests.len()
                    )
                })
            }
            ImageTestsFailed::TOPIC => {
                parse::<ImageTestsFailed>(body).map(|ImageTestsFailed(r)| {
                    self.tested
                        .insert((r.version.clone(), r.arch.clone()), r.failed.clone());
                    format!(
                        "tests failed: {} {} {}: {}",
                        r.stream,
                        r.version,
                        r.arch,
                        r.failed.join(", ")
                    )
                })
            }
            CandidateTestingRequested::TOPIC => parse::<CandidateTestingRequested>(body).map(|m| {
                self.requested.insert(m.version.clone());
                format!(
                    "candidate {} {} passed on every arch; testers may vote",
                    m.stream, m.version
                )
            }),
            KarmaSubmitted::TOPIC => parse::<KarmaSubmitted>(body).map(|m| {
                format!(
                    "vote {:+} by {} on {} {}",
                    m.karma, m.user, m.stream, m.version
                )
            }),
            KarmaThresholdReached::TOPIC => parse::<KarmaThresholdReached>(body).map(|m| {
                self.stable.insert(m.version.clone());
                format!(
                    "karma threshold reached: {} {} is {:?} with karma {}",
                    m.stream, m.version, m.status, m.karma
                )
            }),
            TwoweekTimerFired::TOPIC => parse::<TwoweekTimerFired>(body)
                .map(|m| format!("two-week tick fired for {} (period {})", m.stream, m.period)),
            ReleasePublished::TOPIC => parse::<ReleasePublished>(body).map(|m| {
                let line = format!("released {} {}: {}", m.stream, m.version, m.reason);
                self.released = Some(m);
                line
            }),
            ReleaseSkipped::TOPIC => parse::<ReleaseSkipped>(body).map(|m| {
                let line = format!("release skipped for {}: nothing was eligible", m.stream);
                self.skipped = Some(m);
                line
            }),
            _ => None,
        }
    }
}

/// The demo's view of the bus: what it recorded so far, printed as it arrives.
struct Watch<'a> {
    recording: &'a mut Recording,
    seen: &'a mut Seen,
    prefix: &'a str,
    progress: &'a Progress,
    deadline: tokio::time::Instant,
}

impl Watch<'_> {
    /// Reads messages, printing each, until `done` holds; fails past the deadline.
    async fn until(&mut self, what: &str, done: impl Fn(&Seen) -> bool) -> anyhow::Result<()> {
        while !done(self.seen) {
            match tokio::time::timeout_at(self.deadline, self.recording.next()).await {
                Ok(Some(Ok(record))) => {
                    if let Some(line) = self.seen.absorb(&record, self.prefix) {
                        self.progress.say(&line);
                    }
                }
                Ok(Some(Err(error))) => {
                    return Err(anyhow::Error::from(error).context("lost the demo's subscription"));
                }
                Ok(None) => bail!("the demo's subscription closed while waiting for {what}"),
                Err(_) => bail!(
                    "gave up waiting for {what} (see the log lines above; --timeout raises the limit). Seen so far: {:?}",
                    self.seen.topics
                ),
            }
        }
        Ok(())
    }
}

async fn drive(
    settings: &Settings,
    publisher: &bus::Publisher,
    watch: &mut Watch<'_>,
    trees: &[Nightly],
    user: &UserName,
) -> anyhow::Result<()> {
    let progress = watch.progress;
    for nightly in trees {
        let body = TreeComposed {
            arch: nightly.arch.clone(),
            tree: nightly.tree.clone(),
            version: Some(nightly.version.clone()),
            compose_id: None,
            force: false,
        };
        let id = derived_id(
            "demo",
            &[
                nightly.tree.ostree_ref.as_str(),
                nightly.tree.commit.as_str(),
            ],
        );
        publisher
            .publish(&Outgoing::new(id, &body))
            .await
            .context("cannot publish a tree event")?;
    }
    progress.say(&format!(
        "published {} fortnight.tree.composed events",
        trees.len()
    ));

    let expected = trees.len();
    let voted: Version = VOTED.parse()?;
    watch
        .until("every nightly to be built and tested", |s| {
            s.finished_nightlies() >= expected && s.requested.contains(&voted)
        })
        .await?;

    let stream: Stream = STREAM.parse()?;
    let vote = KarmaSubmitted {
        stream: stream.clone(),
        version: voted.clone(),
        user: user.clone(),
        karma: 1,
        comment: Some("boots and updates fine".into()),
    };
    publisher
        .publish_as(&Outgoing::new(uuid::Uuid::new_v4(), &vote), user.as_str())
        .await
        .context("cannot publish the vote")?;
    watch
        .until("the vote to reach the karma threshold", |s| {
            s.stable.contains(&voted)
        })
        .await?;

    release_timer::fire_now(settings, &stream, user.clone(), publisher)
        .await
        .context("cannot fire the two-week tick")?;
    watch
        .until("the release decision", |s| {
            s.released.is_some() || s.skipped.is_some()
        })
        .await?;

    // The site publisher reacts to the release; wait until the page shows it.
    let json = settings
        .store
        .root
        .join("site/streams")
        .join(format!("{STREAM}.json"));
    let wanted = watch.seen.released.as_ref().map(|r| r.version.to_string());
    loop {
        let shown = std::fs::read(&json)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|v| v["release"].as_str().map(str::to_owned));
        if wanted.is_none() || shown == wanted {
            break;
        }
        if tokio::time::Instant::now() > watch.deadline {
            bail!("the site did not show the release in {}", json.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Deletes the run's queues and exchange; the demo's files stay.
async fn cleanup(settings: &Settings) {
    if let Err(error) = bus::topology::delete_consumers(settings, &QUEUE_CONSUMERS).await {
        tracing::warn!(%error, "the demo's queues were not deleted");
    }
}

fn summarize(
    settings: &Settings,
    dir: &Path,
    seen: &Seen,
    trees: &[Nightly],
    key: &DemoKey,
) -> anyhow::Result<()> {
    println!();
    let versions: BTreeSet<&Version> = trees.iter().map(|t| &t.version).collect();
    let released = seen.released.as_ref();
    match released {
        Some(release) => {
            println!(
                "Released {} {} (reason: {}).",
                release.stream, release.version, release.reason
            );
            let repo = Repo::new(dir.join("repo"));
            for (arch, released_arch) in &release.arches {
                let now_at = repo
                    .rev_parse(&released_arch.release_ref)
                    .context("cannot read the release ref")?
                    .map_or_else(|| "nothing".to_owned(), |c| c.to_string());
                println!("  {arch}: {} -> {now_at}", released_arch.release_ref);
                for image in &released_arch.images {
                    println!(
                        "    {} {} bytes sha256 {}",
                        image.path, image.size, image.sha256
                    );
                }
            }
            let store = store::Store::open(&settings.store.root)?;
            let public = store.keys_dir().join(format!("{}.asc", key.fingerprint));
            println!(
                "Signed with the demo's key {} ({}). Verify, in a keyring that has imported it:",
                key.fingerprint,
                public.display()
            );
            println!("  gpg --import {}", public.display());
            for arch in release.arches.keys() {
                let checksum = store
                    .release_arch_dir(&release.stream, &release.version, arch)
                    .join(store::CHECKSUM);
                println!(
                    "  gpg --verify {}.asc {}",
                    checksum.display(),
                    checksum.display()
                );
            }
            println!(
                "  ostree remote add --gpg-import={} --set=gpg-verify=true demo file://{}",
                public.display(),
                dir.join("repo").display()
            );
        }
        None => println!("Nothing was released."),
    }
    println!("Not released:");
    for version in versions.iter().rev() {
        if released.is_some_and(|r| &&r.version == version) {
            continue;
        }
        let mut reasons = Vec::new();
        for arch in ARCHES {
            let key = ((*version).clone(), arch.parse::<Arch>()?);
            if let Some(failed) = seen.tested.get(&key).filter(|f| !f.is_empty()) {
                reasons.push(format!(
                    "gating tests failed on {arch}: {}",
                    failed.join(", ")
                ));
            }
            if let Some(reason) = seen.build_failed.get(&key) {
                reasons.push(format!("image build failed on {arch}: {reason}"));
            }
        }
        if reasons.is_empty() && !seen.stable.contains(*version) {
            reasons.push("no stable karma from testers".to_owned());
        }
        if let Some(release) = released.filter(|r| &&r.version > version) {
            reasons.push(format!(
                "older than {}, the newest eligible candidate",
                release.version
            ));
        }
        println!("  {version}: {}", reasons.join("; "));
    }
    if let Some(skipped) = &seen.skipped {
        for verdict in &skipped.candidates {
            println!("  {}: {}", verdict.version, verdict.reasons.join("; "));
        }
    }
    let site = settings.store.root.join("site");
    println!("Page: file://{}", site.join("index.html").display());
    println!(
        "Stream metadata: {}",
        site.join("streams")
            .join(format!("{STREAM}.json"))
            .display()
    );
    println!(
        "Everything is under {} (repo/, store/, config.toml, suite/).",
        dir.display()
    );
    Ok(())
}
