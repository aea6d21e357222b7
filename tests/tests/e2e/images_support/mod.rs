//! The image pipeline against the real broker, real `ostree`, the shipped recipes and the
//! shipped test suite: each test gets its own exchange and queues ([`TestBus`]), its own OSTree
//! repository and recipes in a temporary directory, and runs the consumers in this process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use image_builder::ImageBuilder;
use image_tester::ImageTester;
use messages::{Commit, Message, Outgoing, RecordLine, Ref, Tree, TreeComposed};
use ostree_cli::Repo;
use tests::config::{self, Table, Value, toml};
pub use tests::{Running, entries};
use tests::{TestBus, Watch};

pub const REF_X86: &str = "fortnight/test/x86_64/atomic-host";
pub const REF_ARM: &str = "fortnight/test/aarch64/atomic-host";

/// Generous: a build plus the suite takes seconds, but CI machines are shared.
pub const WAIT: Duration = Duration::from_secs(180);
/// For pipelines that boot images: each boot takes 10 to 20 s under TCG on a busy 2-core
/// machine, and one tester boots its images one after another.
pub const BOOT_WAIT: Duration = Duration::from_secs(600);

/// The repository's root (deploy/ lives there).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

pub fn shipped_recipe(format: &str) -> PathBuf {
    workspace().join("deploy/recipes").join(format)
}

pub fn shipped_suite() -> PathBuf {
    workspace().join("deploy/tests/atomic-host.toml")
}

/// A test's files outside the store: the OSTree repository, trees, recipes, composes.
#[derive(Debug)]
pub struct Work {
    pub dir: tempfile::TempDir,
    pub repo: Repo,
}

impl Work {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let repo = Repo::new(dir.path().join("repo"));
        repo.init_archive().expect("ostree init");
        Self { dir, repo }
    }

    /// Commits a tree made of `files` (path, content) onto `branch` with a `version`.
    pub fn commit(&self, branch: &str, version: &str, files: &[(&str, &str)]) -> Commit {
        self.commit_tree(branch, version, files, false)
    }

    /// Commits a tree that boots as Fedora's do (`deploy/tests/fixtures/bootable-tree`: a
    /// kernel in `usr/lib/modules/<kver>/`, its initramfs, a PID 1 and a self-test) with an
    /// os-release naming `version`, then `files` on top of it.
    pub fn commit_bootable(&self, branch: &str, version: &str, files: &[(&str, &str)]) -> Commit {
        let os_release = format!(
            "NAME=\"Fedora Linux\"\nID=fedora\nVERSION_ID=43\nVERSION=\"{version}\"\nVARIANT_ID=atomic.host\n"
        );
        let mut all = vec![("usr/lib/os-release", os_release.as_str())];
        all.extend_from_slice(files);
        self.commit_tree(branch, version, &all, true)
    }

    fn commit_tree(
        &self,
        branch: &str,
        version: &str,
        files: &[(&str, &str)],
        bootable: bool,
    ) -> Commit {
        let tree = self
            .dir
            .path()
            .join(format!("tree-{}", uuid::Uuid::new_v4().simple()));
        if bootable {
            // Every tree gets the same kernel and initramfs: the fixture builds them once per
            // kernel version into a cache all tests of this build share (it locks it).
            let made = Command::new(workspace().join("deploy/tests/fixtures/bootable-tree"))
                .arg(&tree)
                .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot"))
                .output()
                .expect("deploy/tests/fixtures/bootable-tree runs");
            assert!(
                made.status.success(),
                "bootable-tree failed: {}",
                String::from_utf8_lossy(&made.stderr)
            );
        }
        for (path, content) in files {
            let path = tree.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let branch: Ref = branch.parse().unwrap();
        let commit = self
            .repo
            .commit(&branch, &tree, &[("version", version)])
            .expect("ostree commit");
        std::fs::remove_dir_all(tree).unwrap();
        commit
    }

    /// An executable shell script in the work directory (a recipe or a test).
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

/// A tree every gating test of the shipped suite accepts.
pub const GOOD_TREE: &[(&str, &str)] = &[
    (
        "usr/lib/os-release",
        "NAME=\"Fedora Linux\"\nID=fedora\nVERSION_ID=43\nVARIANT_ID=atomic.host\n",
    ),
    ("usr/bin/rpm-ostree", "#!/bin/sh\n"),
    ("usr/etc/hostname", "localhost\n"),
];

/// One `[streams.<name>]` section.
pub struct StreamConfig<'a> {
    pub name: &'a str,
    pub arches: &'a [(&'a str, &'a str)],
    pub repo: &'a Path,
    pub formats: &'a [&'a str],
    pub recipes: Vec<(&'a str, PathBuf)>,
    pub suite: Option<PathBuf>,
    /// More keys of the stream's section.
    pub extra: Table,
}

impl StreamConfig<'_> {
    /// The configuration holding the stream, to merge into a test's.
    pub fn config(&self) -> Table {
        let arches: Vec<&str> = self.arches.iter().map(|(a, _)| *a).collect();
        let refs: Table = self
            .arches
            .iter()
            .map(|(a, r)| ((*a).to_owned(), Value::from(*r)))
            .collect();
        let recipes: Table = self
            .recipes
            .iter()
            .map(|(f, p)| ((*f).to_owned(), config::path(p)))
            .collect();
        let mut stream = toml! {
            arches = (arches)
            input_refs = (Value::Table(refs))
            ostree_repo = (config::path(self.repo))
            formats = (self.formats.to_vec())
            recipes = (Value::Table(recipes))
        };
        if let Some(suite) = &self.suite {
            stream.insert("test_suite".to_owned(), config::path(suite));
        }
        config::merge(&mut stream, self.extra.clone());
        let streams = Table::from_iter([(self.name.to_owned(), Value::Table(stream))]);
        Table::from_iter([("streams".to_owned(), Value::Table(streams))])
    }
}

/// A bus for the builder and the tester on the `img` stream, built with the shipped recipes
/// and tested with the shipped suite.
pub fn shipped_pipeline(work: &Work, arches: &[(&str, &str)], formats: &[&str]) -> TestBus {
    let stream = StreamConfig {
        name: "img",
        arches,
        repo: work.repo.path(),
        formats,
        recipes: formats.iter().map(|f| (*f, shipped_recipe(f))).collect(),
        suite: Some(shipped_suite()),
        extra: Table::new(),
    };
    TestBus::with_config(stream.config())
        .consumer("image-builder", Table::new())
        .consumer("image-tester", Table::new())
}

pub fn tree_composed(work: &Work, tree_ref: &str, arch: &str, commit: &Commit) -> TreeComposed {
    TreeComposed {
        arch: arch.parse().unwrap(),
        tree: Tree {
            ostree_ref: tree_ref.parse().unwrap(),
            commit: commit.clone(),
            repo: work.repo.path().display().to_string(),
        },
        version: None,
        compose_id: None,
        force: false,
    }
}

pub async fn start_both(bus: &TestBus) -> (Running, Running) {
    let settings = Arc::new(bus.settings());
    let builder = Running::start(&settings, ImageBuilder::new(settings.clone()).unwrap());
    let tester = Running::start(&settings, ImageTester::new(settings.clone()).unwrap());
    wait_consuming(&bus.queue("image-builder"), 1).await;
    wait_consuming(&bus.queue("image-tester"), 1).await;
    (builder, tester)
}

/// Ends a test: stops its consumers, closes its watch and removes its bus.
pub async fn finish(consumers: impl IntoIterator<Item = Running>, watch: Watch, bus: TestBus) {
    for consumer in consumers {
        consumer.stop().await;
    }
    watch.close().await;
    bus.cleanup().await;
}

/// Waits until `queue` has `consumers` consumers, so that published messages are routed.
pub async fn wait_consuming(queue: &str, consumers: usize) {
    tests::wait_consumers(queue, consumers, WAIT).await;
}

/// A bus with only the image-builder running, watching what it answers.
pub async fn builder_only(config: Table) -> (TestBus, Watch, Running) {
    let bus = TestBus::with_config(config).consumer("image-builder", Table::new());
    let watch = bus
        .watch(&["fortnight.image.built", "fortnight.image.build.failed"])
        .await;
    let builder = Running::start(
        &bus.settings(),
        ImageBuilder::new(Arc::new(bus.settings())).unwrap(),
    );
    wait_consuming(&bus.queue("image-builder"), 1).await;
    (bus, watch, builder)
}

/// The SHA-256 of a file as `sha256sum` computes it.
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

pub async fn publish<M: Message>(bus: &TestBus, body: &M) {
    let publisher = bus.publisher().await;
    publisher
        .publish(&Outgoing::new(uuid::Uuid::new_v4(), body))
        .await
        .expect("the broker confirms the message");
}

/// The recorded messages of one logical topic, parsed.
pub fn bodies<M: Message>(lines: &[RecordLine]) -> Vec<M> {
    lines
        .iter()
        .filter(|l| l.topic.ends_with(M::TOPIC))
        .map(|l| serde_json::from_value(l.body.clone()).expect("a body of the topic's schema"))
        .collect()
}
