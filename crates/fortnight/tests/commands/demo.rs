//! `fortnight demo` end to end against the real RabbitMQ and ostree: what it released, what
//! that changed against the previous release (the trees' RPM databases), the promoted refs,
//! the page and JSON, the messages as fedora-messaging's own consumer receives them, and what a
//! machine following the release ref upgraded to (the test runs as root). Then a second run
//! in the same directory, and the advice when no broker answers.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{
    admin, assert_success, fm, is_bound, run_ok, text, try_admin, wait_child, wait_until,
    write_fm_config,
};
use serde_json::Value;
use tests::broker::rabbitmqctl;

const RELEASED: &str = "43.20261125.0";
/// The stream's previous release, which the demo releases by override first.
const PREVIOUS: &str = "43.20261111.0";
/// What the release's notes say changed on every arch against PREVIOUS, as the demo prints
/// them: the package set its nightlies were made to differ by.
const PRINTED_PACKAGES: &str = "  packages: 1 upgraded, 0 downgraded, 1 added, 1 removed
    upgraded fortnight-tools.noarch 1.0-1 -> 1.1-1
    added fortnight-extra.noarch 0.1-1
    removed fortnight-legacy.noarch 0.9-1
";

/// Writes every message fedora-messaging delivers as one JSON line.
const CALLBACK_PY: &str = r#"
import json, os

def callback(message):
    with open(os.environ["FORTNIGHT_TEST_OUT"], "a") as out:
        out.write(json.dumps({
            "topic": message.topic, "id": message.id, "body": message.body,
            "headers": message._properties.headers,
        }) + "\n")
"#;

pub(crate) fn demo(dir: &Path, run_id: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .args(["demo", "--timeout", "120", "--run-id", run_id, "--dir"])
        .arg(dir)
        .env("FORTNIGHT_LOG", "warn")
        .env_remove("FORTNIGHT_AMQP_URL")
        .output()
        .expect("run fortnight demo")
}

fn ostree(repo: &Path, args: &[&str]) -> String {
    let output = run_ok(
        Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(args),
        &format!("ostree {args:?}"),
    );
    text(&output.stdout).trim().to_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The reference consumer; stopped, and its queue and the run's exchange deleted, however the
/// test ends (the demo deletes its own queues; a failed run may not have).
struct FmConsumer {
    child: std::process::Child,
    exchange: String,
    queue: String,
}

impl Drop for FmConsumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = try_admin("delete", &self.exchange, std::slice::from_ref(&self.queue));
    }
}

#[test]
fn demo_releases_the_newest_candidate_that_passed_and_fedora_messaging_sees_it_all() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("demo");
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let exchange = format!("fortnight.demo.{run_id}");
    let queue = format!("fortnight.demo-test.{run_id}");
    let fm_conf = scratch.path().join("fm.toml");
    write_fm_config(&fm_conf, &exchange, &queue, "fortnight-demo-test");
    let callback = scratch.path().join("callback.py");
    std::fs::write(&callback, CALLBACK_PY).unwrap();
    let seen = scratch.path().join("seen.jsonl");
    // `fedora-messaging consume` binds but does not declare exchanges; the demo later
    // declares the same durable topic exchange and deletes it when done.
    admin("declare", &exchange, &[]);
    let child = fm(&fm_conf)
        .arg("consume")
        .arg("--callback-file")
        .arg(format!("{}:callback", callback.display()))
        .env("FORTNIGHT_TEST_OUT", &seen)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fedora-messaging consume (set FM_BIN)");
    let mut consumer = FmConsumer {
        child,
        exchange: exchange.clone(),
        queue: queue.clone(),
    };
    wait_until("fedora-messaging to bind its queue", || {
        is_bound(&exchange, &queue)
    });

    let output = demo(&dir, &run_id);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        text(&output.stderr)
    );

    // What it printed: progress per stage, the release, why the others were not released.
    for line in [
        "consumers ready",
        "published 8 fortnight.tree.composed events",
        "released f43 43.20261111.0: forced by ",
        "tests failed: f43 43.20261126.0 aarch64: os-release",
        "karma threshold reached: f43 43.20261125.0",
        "two-week tick fired for f43",
        "Released f43 43.20261125.0",
        // Why not the others, in the releaser's words (`releaser::decide`).
        "43.20261126.0: automated tests: aarch64: failed tests: os-release",
        "43.20261124.0: human testing: karma +0 is below the stable threshold +1 (0 vote(s))",
        "Page: file://",
        "Signed with the demo's key",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from:\n{stdout}");
    }
    // What the release changed against the previous one, from its notes, on both arches.
    let notes = stdout
        .split_once(&format!(
            "What it changed against {PREVIOUS} (release notes in "
        ))
        .unwrap_or_else(|| panic!("no release notes in:\n{stdout}"))
        .1;
    assert!(
        notes.contains(&format!("\n{PREVIOUS} -> {RELEASED}\n")),
        "{notes}"
    );
    for arch in ["aarch64", "x86_64"] {
        let block = notes
            .split_once(&format!("\n{arch}:\n  tree "))
            .unwrap_or_else(|| panic!("no {arch} notes in:\n{notes}"))
            .1;
        let block = block.split_once('\n').unwrap().1;
        assert!(
            block.starts_with(PRINTED_PACKAGES),
            "{arch} packages:\n{block}"
        );
    }

    // The verify commands it printed work, with the key it printed.
    let words = |prefix: &str| -> Vec<Vec<String>> {
        stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix(prefix))
            .map(|rest| rest.split(' ').map(str::to_owned).collect())
            .collect()
    };
    let key = words("gpg --import ").remove(0).remove(0);
    let verifies = words("gpg --verify ");
    assert_eq!(verifies.len(), 2, "one verify command per arch:\n{stdout}");
    for verify in &verifies {
        let checked = tests::signing::GpgHome::verify_with(
            Path::new(&key),
            Path::new(&verify[0]),
            Path::new(&verify[1]),
        );
        assert_success(&checked, &format!("gpg --verify {verify:?}"));
    }

    // The promoted refs point at release commits of the released nightly's commits, bound to
    // the release refs.
    let store = dir.join("store");
    let release = read_json(
        &store
            .join("f43/releases")
            .join(RELEASED)
            .join("release.json"),
    );
    // Its notes list exactly the package set, per arch, against the previous release.
    assert_eq!(release["previous"], PREVIOUS);
    assert_eq!(release["notes"]["against"], PREVIOUS);
    let expected_packages = serde_json::json!({"compared": {
        "upgraded": [{"name": "fortnight-tools", "arch": "noarch", "from": "1.0-1", "to": "1.1-1"}],
        "downgraded": [],
        "added": [{"name": "fortnight-extra", "arch": "noarch", "evr": "0.1-1"}],
        "removed": [{"name": "fortnight-legacy", "arch": "noarch", "evr": "0.9-1"}],
    }});
    for arch in ["x86_64", "aarch64"] {
        assert_eq!(
            release["notes"]["arches"][arch]["packages"], expected_packages,
            "{arch} release notes"
        );
        assert_eq!(
            release["changes"]["arches"][arch]["packages"],
            serde_json::json!({"added": 1, "removed": 1, "upgraded": 1, "downgraded": 0}),
            "{arch} counts in the message"
        );
    }
    let repo = dir.join("repo");
    for arch in ["x86_64", "aarch64"] {
        let release_ref = format!("fedora/43/{arch}/atomic-host");
        let commit = ostree(&repo, &["rev-parse", &release_ref]);
        let metadata = |key: &str| {
            ostree(
                &repo,
                &["show", &format!("--print-metadata-key={key}"), &commit],
            )
        };
        assert_eq!(
            metadata(ostree_cli::RELEASE_OF),
            format!(
                "'{}'",
                release["arches"][arch]["tree"]["commit"].as_str().unwrap()
            ),
            "{arch} release ref"
        );
        assert_eq!(metadata("ostree.ref-binding"), format!("['{release_ref}']"));
        assert_eq!(metadata("version"), format!("'{RELEASED}'"));
    }

    // A machine that deployed the x86_64 release ref at the previous release now runs exactly
    // the released commit, as `ostree admin status` of its sysroot says.
    let x86_ref = "fedora/43/x86_64/atomic-host";
    let client_line = format!(
        "A client following {x86_ref} now runs {RELEASED} (commit {}; it ran {PREVIOUS} before the tick).",
        ostree(&repo, &["rev-parse", x86_ref])
    );
    assert!(
        stdout.contains(&client_line),
        "{client_line:?} missing from:\n{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "a client following {x86_ref} deployed {PREVIOUS} ("
        )),
        "{stdout}"
    );
    let sysroot = dir.join("client");
    let status = run_ok(
        Command::new("ostree")
            .args(["admin", "status"])
            .arg(format!("--sysroot={}", sysroot.display())),
        "ostree admin status",
    );
    let status = text(&status.stdout);
    let deployed: Vec<&str> = status
        .lines()
        .filter_map(|l| l.trim_start_matches([' ', '*']).strip_prefix("fedora "))
        .collect();
    assert_eq!(deployed.len(), 2, "the release and its rollback: {status}");
    assert!(
        deployed[0].starts_with(&ostree(&repo, &["rev-parse", x86_ref])),
        "{status}"
    );

    // The page and the stream metadata show it, with the right checksums.
    let index = std::fs::read_to_string(store.join("site/index.html")).unwrap();
    assert!(
        index.contains(&format!("Current release <strong>{RELEASED}</strong>")),
        "{index}"
    );
    assert!(
        !index.contains("<strong>Warning:</strong>"),
        "a fresh release is not stale"
    );
    let json = read_json(&store.join("site/streams/f43.json"));
    assert_eq!(json["release"], RELEASED);
    let disk =
        &json["architectures"]["x86_64"]["artifacts"]["atomic-host"]["formats"]["qcow2"]["disk"];
    let location = disk["location"].as_str().unwrap();
    let file = Path::new(
        location
            .strip_prefix("file://")
            .expect("a file:// link in the demo"),
    );
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(disk["size"], bytes.len() as u64);
    let sum = Command::new("sha256sum").arg(file).output().unwrap();
    assert_eq!(
        disk["sha256"].as_str().unwrap(),
        text(&sum.stdout).split_whitespace().next().unwrap()
    );

    // The messages as the reference client received them, prefix included.
    let prefix = format!("demo.{run_id}.");
    wait_until("fedora-messaging to receive the release", || {
        std::fs::read_to_string(&seen).is_ok_and(|s| s.contains("fortnight.release.published"))
    });
    let _ = consumer.child.kill();
    wait_child(&mut consumer.child, "fedora-messaging consume");
    let messages: Vec<Value> = std::fs::read_to_string(&seen)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for message in &messages {
        let topic = message["topic"].as_str().unwrap();
        let logical = topic
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{topic} lacks the run's prefix"));
        *counts.entry(logical.to_owned()).or_default() += 1;
        assert_eq!(
            message["headers"]["fedora_messaging_schema"], logical,
            "schema header of {topic}"
        );
        assert!(
            message["headers"]["sent-at"].is_string(),
            "sent-at header of {topic}"
        );
    }
    let expected = [
        ("fortnight.tree.composed", 8),
        ("fortnight.image.built", 8),
        ("fortnight.image.tests.passed", 7),
        ("fortnight.image.tests.failed", 1),
        ("fortnight.candidate.testing.requested", 3),
        ("fortnight.override.release", 1),
        ("fortnight.karma.submitted", 1),
        ("fortnight.karma.threshold.reached", 1),
        ("fortnight.twoweek.timer.fired", 1),
        ("fortnight.release.published", 2),
    ];
    for (topic, count) in expected {
        assert_eq!(
            counts.get(topic).copied().unwrap_or(0),
            count,
            "{topic} in {counts:?}"
        );
    }
    let published = messages
        .iter()
        .find(|m| {
            m["topic"]
                .as_str()
                .is_some_and(|t| t.ends_with("fortnight.release.published"))
                && m["body"]["version"] == RELEASED
        })
        .unwrap();
    assert_eq!(published["body"]["changes"], release["changes"]);
    assert_eq!(
        published["body"]["arches"]["aarch64"]["release_ref"],
        "fedora/43/aarch64/atomic-host"
    );

    // A second run in the same directory starts over and works again, even over a run
    // stopped before it unlocked its client (ostree left the deployments immutable).
    for deployment in std::fs::read_dir(sysroot.join("ostree/deploy/fedora/deploy")).unwrap() {
        let path = deployment.unwrap().path();
        if path.is_dir() {
            run_ok(Command::new("chattr").arg("+i").arg(&path), "chattr +i");
        }
    }
    let again = demo(&dir, &uuid::Uuid::new_v4().simple().to_string()[..12]);
    assert!(
        again.status.success(),
        "second demo failed:\n{}\n{}",
        text(&again.stdout),
        text(&again.stderr)
    );
    assert!(text(&again.stdout).contains("Released f43 43.20261125.0"));
    assert!(text(&again.stdout).contains(client_line.split(" (commit").next().unwrap()));
    std::fs::remove_dir_all(&dir).expect("the demo leaves nothing that cannot be deleted");
    let leftovers = |what: &str| {
        rabbitmqctl(&["-q", what, "name"])
            .expect("rabbitmqctl lists what is left")
            .lines()
            .filter(|l| l.contains(&run_id))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        leftovers("list_queues"),
        Vec::<String>::new(),
        "the demo deletes its queues"
    );
    assert_eq!(
        leftovers("list_exchanges"),
        Vec::<String>::new(),
        "the demo deletes its exchange"
    );
}

#[test]
fn demo_names_the_command_that_starts_rabbitmq_when_none_answers() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo"))
        // Port 1 on loopback: nothing listens there.
        .env("FORTNIGHT_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("cannot reach RabbitMQ"), "{stderr}");
    assert!(
        stderr.contains("amqp://guest:***@127.0.0.1:1/%2f"),
        "names the URL without its password: {stderr}"
    );
    assert!(stderr.contains("rabbitmq-server -detached"), "{stderr}");
}

#[test]
fn demo_names_the_packages_to_install_when_its_tools_are_missing() {
    let dir = tempfile::tempdir().unwrap();
    let empty_path = dir.path().join("bin");
    std::fs::create_dir(&empty_path).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo"))
        .env("PATH", &empty_path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "the demo needs ostree, mke2fs, debugfs, qemu-img, gpg, rpmbuild, rpm on PATH"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("apt-get install ostree e2fsprogs qemu-utils gnupg rpm"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("demo").exists(),
        "nothing is made before the check"
    );
}

#[test]
fn demo_boot_boots_every_x86_64_image_and_skips_aarch64_saying_why() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("demo");
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let output = Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .args([
            "demo",
            "--boot",
            "--timeout",
            "900",
            "--run-id",
            &run_id,
            "--dir",
        ])
        .arg(&dir)
        .env("FORTNIGHT_LOG", "warn")
        .env_remove("FORTNIGHT_AMQP_URL")
        .output()
        .expect("run fortnight demo --boot");
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "demo --boot failed:\n{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("released f43 {RELEASED}")),
        "{stdout}"
    );
    for version in [PREVIOUS, "43.20261124.0", RELEASED, "43.20261126.0"] {
        for (arch, expected) in [
            ("x86_64", format!("booted {version} with ")),
            (
                "aarch64",
                "skipped: only x86_64 images are booted".to_owned(),
            ),
        ] {
            let log = dir.join(format!(
                "store/f43/all/{version}/{arch}/logs/test-boot.qcow2.log"
            ));
            let log =
                std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
            assert!(log.contains(&expected), "{version} {arch}: {log}");
        }
    }
}

#[test]
fn demo_without_a_kernel_for_its_trees_releases_and_says_why_no_client_upgraded() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("demo");
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let output = Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .args(["demo", "--timeout", "120", "--run-id", &run_id, "--dir"])
        .arg(&dir)
        // The fixture finds no such kernel, as on a machine without linux-image-cloud-amd64.
        .env("FORTNIGHT_KERNEL_VERSION", "0.0-none")
        .env("FORTNIGHT_LOG", "warn")
        .env_remove("FORTNIGHT_AMQP_URL")
        .output()
        .expect("run fortnight demo");
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("Released f43 {RELEASED}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "No client upgraded: the x86_64 trees carry no kernel to deploy (cannot make a \
             bootable tree for x86_64"
        ) && stdout.contains("no kernel 0.0-none"),
        "{stdout}"
    );
    assert!(!dir.join("client").exists());
}
