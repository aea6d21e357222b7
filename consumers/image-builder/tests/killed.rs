//! The image-builder binary killed mid-build: the recipe and what it started die with it, and
//! the next start clears the staging the killed build left and finishes the journaled build.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use messages::{Outgoing, Ref, Tree, TreeComposed};
use ostree_cli::Repo;
use tests::config::{self, health_addr, toml};
use tests::probe::ProbeProcess;
use tests::process::{alive, pid_in};
use tests::{TestBus, eventually, free_port};

const BUILDER: &str = env!("CARGO_BIN_EXE_image-builder");
const REF: &str = "fedora/43/x86_64/atomic-host";
const WAIT: Duration = Duration::from_secs(60);

fn heartbeats(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("heartbeat"))
        .unwrap_or_default()
        .lines()
        .count()
}

/// Kills what survived when the test fails, so a failure leaves no heartbeat loop behind.
struct Survivors(Vec<i32>);

impl Drop for Survivors {
    fn drop(&mut self) {
        for pid in self.0.iter().filter(|pid| alive(**pid)) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// A recipe that, the first time, starts a grandchild writing a heartbeat (a recipe's
/// `qemu-img`) and waits for it for ever; once `marks/killed-once` exists, it builds.
fn recipe(dir: &Path, marks: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("recipe");
    let m = marks.display();
    let script = format!(
        r#"#!/bin/sh
if [ -e "{m}/killed-once" ]; then echo image > "$FORTNIGHT_OUTPUT_DIR/image.qcow2"; exit 0; fi
(while :; do echo beat >> "{m}/heartbeat"; sleep 0.05; done) &
echo $! > "{m}/grandchild.pid"
echo $$ > "{m}/recipe.pid"
wait
"#
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

async fn start_builder(config: &Path, health: std::net::SocketAddr) -> ProbeProcess {
    let child = Command::new(BUILDER)
        .arg("--config")
        .arg(config)
        .env("FORTNIGHT_LOG", "info")
        .stdin(Stdio::null())
        .spawn()
        .expect("image-builder starts");
    let builder = ProbeProcess { child, health };
    assert!(
        eventually(WAIT, || builder.ready()).await,
        "image-builder did not become ready on {health}"
    );
    builder
}

/// The staging directories in `arch_dir`.
fn staging_dirs(arch_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(arch_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(".build-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_builder_takes_its_recipe_along_and_the_next_start_clears_its_staging() {
    let supervisor = Path::new(BUILDER).with_file_name(runner::SUPERVISOR);
    assert!(
        supervisor.is_file(),
        "{} is not built next to {BUILDER}; run `cargo build -p runner` (cargo test --workspace builds it)",
        runner::SUPERVISOR
    );
    let health = free_port();
    let scratch = tempfile::tempdir().unwrap();
    let marks = scratch.path().join("marks");
    std::fs::create_dir(&marks).unwrap();
    let recipe = recipe(scratch.path(), &marks);
    let bus = TestBus::with_config(toml! {
        [streams.f43.recipes]
        qcow2 = (config::path(&recipe))
    })
    .consumer("image-builder", health_addr(health));
    let repo = Repo::new(bus.store_root().join("repo"));
    std::fs::create_dir_all(repo.path()).unwrap();
    repo.init_archive().unwrap();
    let tree = scratch.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("os-release"), "ID=fedora\n").unwrap();
    let commit = repo
        .commit(
            &REF.parse::<Ref>().unwrap(),
            &tree,
            &[("version", "43.20261130.0")],
        )
        .unwrap();
    let config = bus.write_config();
    let mut watch = bus.watch(&["fortnight.image.built"]).await;

    let mut builder = start_builder(&config, health).await;
    let body = TreeComposed {
        arch: "x86_64".parse().unwrap(),
        tree: Tree {
            ostree_ref: REF.parse().unwrap(),
            commit,
            repo: repo.path().display().to_string(),
        },
        version: None,
        compose_id: None,
        force: false,
    };
    let publisher = bus.publisher().await;
    publisher
        .publish(&Outgoing::new(uuid::Uuid::new_v4(), &body))
        .await
        .unwrap();
    let (recipe_pid, grandchild_pid) = (marks.join("recipe.pid"), marks.join("grandchild.pid"));
    assert!(
        eventually(WAIT, || pid_in(&recipe_pid).is_some()
            && pid_in(&grandchild_pid).is_some())
        .await,
        "the recipe started its grandchild"
    );
    let pids = [
        pid_in(&recipe_pid).unwrap(),
        pid_in(&grandchild_pid).unwrap(),
    ];
    let _survivors = Survivors(pids.to_vec());
    let beats = heartbeats(&marks);
    assert!(
        eventually(WAIT, || heartbeats(&marks) > beats).await,
        "the grandchild writes heartbeats"
    );

    builder.signal("KILL");
    builder.wait_exit(WAIT).await.expect("SIGKILL ends it");
    assert!(
        eventually(WAIT, || pids.iter().all(|pid| !alive(*pid))).await,
        "the recipe {} and its grandchild {} outlived the killed builder",
        pids[0],
        pids[1]
    );

    // The killed build's staging, aged past the point where a start-up may take it for dead.
    let arch_dir = bus.store_root().join("f43/all/43.20261130.0/x86_64");
    let left = staging_dirs(&arch_dir);
    assert_eq!(left.len(), 1, "the killed build left its staging");
    File::open(&left[0])
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    File::create(marks.join("killed-once")).unwrap();

    let mut builder = start_builder(&config, health).await;
    assert!(
        !left[0].exists(),
        "the next start removes the stale staging"
    );
    let built = watch.wait_for(1, WAIT).await;
    assert_eq!(built.len(), 1, "the journaled build resumes and finishes");

    builder.signal("TERM");
    builder.wait_exit(WAIT).await.expect("SIGTERM ends it");
    publisher.close().await;
    watch.close().await;
    bus.cleanup().await;
}
