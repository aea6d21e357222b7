//! The image `deploy/Containerfile` describes, built and run for real with podman: it holds
//! every binary, runs as its declared non-root user, and each consumer started from it with a
//! mounted configuration and a store volume serves its health endpoints and consumes from
//! the host's broker.
//!
//! The image is built from the binaries of the current build (`--target host`), since the
//! Rust builder image cannot be pulled where the tests run: debug ones, because `cargo test`
//! has just built them and a release build would double the build time. The Debian base image
//! is made with debootstrap when podman does not have it yet and kept between runs.

use std::path::Path;
use std::process::{Command, Stdio};

use settings::{QUEUE_CONSUMERS, RELEASE_TIMER};
use tests::process::{run_ok, text, wait_until};
use tests::{TestBus, free_port, http_get, is_ready};

use crate::deploy::{containerfile_programs, deploy, repo};
use tests::config::health_addr;

/// Both limits must be explicit: podman's defaults are above the hard limits of machines like
/// CI's (20000 open files), which the runtime may not raise. A consumer needs far fewer.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=4096:4096",
];

/// podman with the OCI runtime every call uses: crun fails on hybrid cgroup hierarchies.
fn podman() -> Command {
    let mut command = Command::new("podman");
    command.args(["--runtime", "runc"]);
    command
}

/// `podman run` on the host's network, so a container reaches the broker on 127.0.0.1 and
/// its health port is reachable from the test; `options` go before the image.
fn podman_run(options: &[&str], image: &str) -> Command {
    let mut command = podman();
    command
        .args(["run", "--network=host"])
        .args(ULIMITS)
        .args(options)
        .arg(image);
    command
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Containerfile's value of `prefix` on the one line that starts with it.
fn containerfile_line<'a>(containerfile: &'a str, prefix: &str) -> &'a str {
    containerfile
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("the Containerfile has no line starting {prefix:?}"))
        .trim()
}

/// Makes `image` (a Debian `<suite>-slim` name) with debootstrap unless podman has it.
fn ensure_base_image(image: &str) {
    if succeeds(podman().args(["image", "exists", image])) {
        return;
    }
    let suite = image
        .rsplit(':')
        .next()
        .and_then(|tag| tag.split('-').next())
        .unwrap_or_else(|| panic!("cannot tell the Debian suite of the base image {image}"));
    let root = tempfile::tempdir().expect("a directory for the base image's root");
    run_ok(
        Command::new("debootstrap")
            .args(["--variant=minbase", suite])
            .arg(root.path()),
        &format!("debootstrap {suite} (install debootstrap to make the base image {image})"),
    );
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tar runs");
    let imported = podman()
        .args(["import", "-", image])
        .stdin(tar.stdout.take().expect("tar's output"))
        .output()
        .expect("podman import runs");
    assert!(
        tar.wait().expect("tar finishes").success(),
        "tar of {root:?} failed"
    );
    tests::process::assert_success(&imported, &format!("podman import of {image}"));
}

/// Everything one run creates in podman, removed when dropped (a failed test too, after
/// printing the consumers' logs).
struct Podman {
    image: String,
    volume: String,
    containers: Vec<String>,
}

impl Drop for Podman {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for container in &self.containers {
                if let Ok(logs) = podman().args(["logs", container]).output() {
                    eprintln!(
                        "--- {container}:\n{}{}",
                        text(&logs.stdout),
                        text(&logs.stderr)
                    );
                }
            }
        }
        if !self.containers.is_empty() {
            let _ = podman()
                .args(["rm", "--force", "--time", "10"])
                .args(&self.containers)
                .output();
        }
        let _ = podman()
            .args(["volume", "rm", "--force", &self.volume])
            .output();
        let _ = podman().args(["rmi", "--force", &self.image]).output();
    }
}

#[test]
fn image_holds_every_binary_runs_as_its_user_and_each_consumer_is_live() {
    let present = succeeds(Command::new("podman").arg("--version"));
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "podman is not installed, and CI=true: .ci/run installs podman, runc and debootstrap"
        );
        eprintln!("skipping: podman is not installed (apt-get install podman runc debootstrap)");
        return;
    }
    let containerfile =
        std::fs::read_to_string(deploy().join("Containerfile")).expect("deploy/Containerfile");
    ensure_base_image(
        containerfile
            .lines()
            .filter_map(|l| l.strip_prefix("FROM "))
            .find_map(|l| l.strip_suffix(" AS runtime"))
            .expect("the Containerfile has a runtime stage"),
    );

    // Every program the image ships, built as the host build path expects them.
    let programs = containerfile_programs(&containerfile);
    let binaries =
        tests::process::built_binaries(&programs.iter().map(String::as_str).collect::<Vec<_>>());
    let context = repo();
    let host_binaries = binaries.strip_prefix(&context).unwrap_or_else(|_| {
        panic!(
            "the binaries in {} are outside the build context {}: unset CARGO_TARGET_DIR",
            binaries.display(),
            context.display()
        )
    });

    let bus = TestBus::new();
    let mut podman_state = Podman {
        image: format!("localhost/fortnight-test:{}", bus.id),
        volume: format!("fortnight-test-{}", bus.id),
        containers: Vec::new(),
    };
    let image = podman_state.image.clone();
    // Without intermediate layers, removing the image removes all this run built.
    run_ok(
        podman()
            .args([
                "build",
                "--network=host",
                "--layers=false",
                "--target",
                "host",
            ])
            .arg("--file")
            .arg(deploy().join("Containerfile"))
            .arg("--build-arg")
            .arg(format!("HOST_BINARIES={}", host_binaries.display()))
            .args(["--tag", &image])
            .arg(&context),
        "podman build --target host",
    );

    for program in &programs {
        let help = run_ok(
            podman_run(&["--rm"], &image).args([program, "--help"]),
            &format!("{program} --help in the image"),
        );
        assert!(
            text(&help.stdout)
                .to_lowercase()
                .contains(&format!("usage: {program}")),
            "{program} --help prints its usage: {}",
            text(&help.stdout)
        );
    }

    let uid = containerfile_line(&containerfile, "USER ");
    let id = run_ok(
        podman_run(&["--rm"], &image).args(["id", "-u"]),
        "id -u in the image",
    );
    assert_eq!(
        text(&id.stdout).trim(),
        uid,
        "the image runs as the Containerfile's USER"
    );
    assert_ne!(uid, "0", "the image's user is not root");
    let name = run_ok(
        podman_run(&["--rm"], &image).args(["id", "-un"]),
        "id -un in the image",
    );
    assert_eq!(
        text(&name.stdout).trim(),
        "fortnight",
        "USER {uid} is the account the image creates"
    );

    let health: Vec<(&str, std::net::SocketAddr)> = QUEUE_CONSUMERS
        .iter()
        .chain([&RELEASE_TIMER])
        .map(|c| (*c, free_port()))
        .collect();
    let bus = health.iter().fold(bus, |bus, (consumer, addr)| {
        bus.consumer(consumer, health_addr(*addr))
    });
    // The store where the image declares its volume, as a deployment mounts it.
    let store = containerfile_line(&containerfile, "VOLUME ").trim_matches(['[', ']', '"']);
    let config = bus.dir.path().join("container.toml");
    std::fs::write(&config, bus.config_toml_with_store(Path::new(store)))
        .expect("the container's configuration is written");
    for (consumer, _) in &health {
        let container = format!("fortnight-test-{}-{consumer}", bus.id);
        run_ok(
            podman_run(
                &[
                    "--detach",
                    "--name",
                    &container,
                    "--volume",
                    &format!("{}:/etc/fortnight/config.toml:ro", config.display()),
                    "--volume",
                    &format!("{}:{store}", podman_state.volume),
                ],
                &image,
            )
            .arg(consumer),
            &format!("podman run {consumer}"),
        );
        podman_state.containers.push(container);
    }
    for ((consumer, addr), container) in health.iter().zip(&podman_state.containers) {
        wait_until(&format!("{consumer}'s /ready on {addr}"), || {
            let running = podman()
                .args(["inspect", "--format", "{{.State.Running}}", container])
                .output()
                .is_ok_and(|o| text(&o.stdout).trim() == "true");
            assert!(running, "{consumer}'s container exited");
            is_ready(*addr)
        });
        assert_eq!(
            http_get(*addr, "/live").map(|(status, _)| status),
            Some(200),
            "{consumer} /live"
        );
        if *consumer != RELEASE_TIMER {
            assert_eq!(
                tests::broker::queue_info(&bus.queue(consumer), "consumers").as_deref(),
                Some("1"),
                "{consumer} consumes its own queue from inside the container"
            );
        }
    }

    drop(podman_state);
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(bus.cleanup());
}
