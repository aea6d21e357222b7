//! The image `deploy/Containerfile` describes, built and run for real with podman: it holds
//! every binary, runs as its declared non-root user, and each consumer started from it with a
//! mounted configuration and a store volume serves its health endpoints and consumes from
//! the host's broker.
//!
//! The image is built from the binaries of the current build (`--target host`), since the
//! Rust builder image cannot be pulled where the tests run: debug ones, because `cargo test`
//! has just built them and a release build would double the build time. The Debian base image
//! is made with debootstrap when podman does not have it yet and kept between runs.

use settings::RELEASE_TIMER;
use tests::config::health_addr;
use tests::container::{Containerfile, Image, available, podman, podman_run};
use tests::process::{run_ok, text, wait_until};
use tests::{TestBus, free_port, http_get, is_ready};

/// The containers and volume one run creates, removed when dropped (a failed test too, after
/// printing the consumers' logs).
struct Podman {
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
    }
}

#[test]
fn image_holds_every_binary_runs_as_its_user_and_each_consumer_is_live() {
    if !available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "podman is not installed, and CI=true: .ci/run installs podman, runc and debootstrap"
        );
        eprintln!("skipping: podman is not installed (apt-get install podman runc debootstrap)");
        return;
    }
    let containerfile = Containerfile::read();
    let bus = TestBus::new();
    // Declared before the containers' guard, so it is dropped after them.
    let image = Image::build(&format!("localhost/fortnight-test:{}", bus.id));
    let image = image.tag.as_str();
    let mut podman_state = Podman {
        volume: format!("fortnight-test-{}", bus.id),
        containers: Vec::new(),
    };

    for program in &containerfile.programs() {
        let help = run_ok(
            podman_run(&["--rm"], image).args([program, "--help"]),
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

    let uid = containerfile.user().to_string();
    let id = run_ok(
        podman_run(&["--rm"], image).args(["id", "-u"]),
        "id -u in the image",
    );
    assert_eq!(
        text(&id.stdout).trim(),
        uid,
        "the image runs as the Containerfile's USER"
    );
    assert_ne!(uid, "0", "the image's user is not root");
    let name = run_ok(
        podman_run(&["--rm"], image).args(["id", "-un"]),
        "id -un in the image",
    );
    assert_eq!(
        text(&name.stdout).trim(),
        "fortnight",
        "USER {uid} is the account the image creates"
    );

    let health: Vec<(&str, std::net::SocketAddr)> = registry::names()
        .into_iter()
        .chain([RELEASE_TIMER])
        .map(|c| (c, free_port()))
        .collect();
    let bus = health.iter().fold(bus, |bus, (consumer, addr)| {
        bus.consumer(consumer, health_addr(*addr))
    });
    // The store where the image declares its volume, as a deployment mounts it.
    let volume = containerfile.volume();
    let store = volume.display();
    let config = bus.dir.path().join("container.toml");
    std::fs::write(&config, bus.config_toml_with_store(&volume))
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
                image,
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
