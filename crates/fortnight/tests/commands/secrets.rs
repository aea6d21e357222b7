//! The broker password stays private: consumers started with `FORTNIGHT_AMQP_URL` carrying
//! one run a recipe and a test that print their whole environment, and the password shows up
//! in no build or test log, no store file, no published message and not in the consumers'
//! own log.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use messages::{Outgoing, Ref, Tree, TreeComposed, derived_id};
use ostree_cli::Repo;
use tests::TestBus;
use tests::broker::BrokerUser;

use crate::common::{text, wait_child};
use tests::config::{self, Table, toml};

const INPUT_REF: &str = "fortnight/secrets/x86_64/atomic-host";
const VERSION: &str = "43.20261127.0";

fn executable(path: &Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, script).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Every file under `dir` (not following links: the store's links point inside it).
fn files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        let kind = std::fs::symlink_metadata(&path).expect("stat").file_type();
        if kind.is_dir() {
            files(&path, found);
        } else if kind.is_file() {
            found.push(path);
        }
    }
}

#[tokio::test]
async fn recipes_and_tests_that_print_their_environment_never_reveal_the_broker_password() {
    let user = BrokerUser::create("secrets");
    let url = user.amqp_url();
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password.to_owned())
        .expect("the account's URL carries a password");

    let work = tempfile::tempdir().expect("work");
    let repo = Repo::new(work.path().join("repo"));
    repo.init_archive().expect("ostree init");
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("usr/lib")).expect("tree");
    std::fs::write(tree.join("usr/lib/os-release"), "NAME=Fedora\n").expect("tree");
    let input: Ref = INPUT_REF.parse().expect("ref");
    let commit = repo
        .commit(&input, &tree, &[("version", VERSION)])
        .expect("ostree commit");

    let recipe = work.path().join("recipe");
    executable(
        &recipe,
        "#!/bin/sh\nenv\necho image > \"$FORTNIGHT_OUTPUT_DIR/image.qcow2\"\n",
    );
    let suite = work.path().join("suite.toml");
    std::fs::write(
        &suite,
        "[[test]]\nname = \"environment\"\nargv = [\"env\"]\nenv = { SUITE_KNOB = \"on\" }\n",
    )
    .expect("suite");
    let stream = toml! {
        [streams.sec]
        arches = ["x86_64"]
        input_refs = { x86_64 = (INPUT_REF) }
        ostree_repo = (config::path(repo.path()))
        formats = ["qcow2"]
        recipes = { qcow2 = (config::path(&recipe)) }
        recipe_env = { RECIPE_KNOB = "on" }
        test_suite = (config::path(&suite))
    };
    let bus = registry::names()
        .iter()
        .fold(TestBus::with_config(stream), |bus, consumer| {
            bus.consumer(consumer, Table::new())
        });
    let config = bus.write_config();
    let mut watch = bus.watch(&["fortnight.#"]).await;

    let log = work.path().join("consumers.log");
    let mut up = Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .arg("--config")
        .arg(&config)
        .arg("up")
        .env("FORTNIGHT_AMQP_URL", &url)
        .env("FORTNIGHT_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("fortnight up");
    for consumer in ["image-builder", "image-tester"] {
        bus.wait_consuming(consumer).await;
    }

    let body = TreeComposed {
        arch: "x86_64".parse().expect("arch"),
        tree: Tree {
            ostree_ref: input,
            commit: commit.clone(),
            repo: repo.path().display().to_string(),
        },
        version: None,
        compose_id: None,
        force: false,
    };
    // From the consumers' own account: the only one trusted for tree.composed here.
    user.publisher(&bus.settings())
        .await
        .publish(&Outgoing::new(
            derived_id("secrets-test", &[commit.as_str()]),
            &body,
        ))
        .await
        .expect("publish the tree");
    let tested = |seen: &[messages::RecordLine]| {
        seen.iter()
            .any(|m| m.topic.ends_with("fortnight.image.tests.passed"))
    };
    let mut count = 1;
    while !tested(watch.wait_for(count, Duration::from_secs(120)).await) {
        let seen = watch.wait_for(count, Duration::ZERO).await;
        assert!(
            seen.len() >= count,
            "the image was not built and tested: {seen:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        count += 1;
    }

    let killed = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert!(wait_child(&mut up, "fortnight up").success());

    let store = bus.store_root();
    let arch_dir = store.join("sec/all").join(VERSION).join("x86_64");
    let build_log = std::fs::read_to_string(arch_dir.join("logs/build.log")).expect("build log");
    assert!(
        build_log.contains("FORTNIGHT_OUTPUT_DIR=") && build_log.contains("RECIPE_KNOB=on"),
        "the recipe printed its environment: {build_log}"
    );
    let mut stored = Vec::new();
    files(&store, &mut stored);
    let test_log = stored
        .iter()
        .find(|p| p.to_string_lossy().contains("environment"))
        .unwrap_or_else(|| panic!("no test log in {stored:?}"));
    let test_log = std::fs::read_to_string(test_log).expect("test log");
    assert!(
        test_log.contains("FORTNIGHT_IMAGE=") && test_log.contains("SUITE_KNOB=on"),
        "the test printed its environment: {test_log}"
    );
    for path in &stored {
        let bytes = std::fs::read(path).expect("a store file");
        assert!(
            !text(&bytes).contains(&password),
            "{} holds the broker password",
            path.display()
        );
    }
    let seen = watch.wait_for(count, Duration::ZERO).await;
    let published = serde_json::to_string(seen).expect("messages as JSON");
    assert!(
        !published.contains(&password),
        "a published message holds the broker password"
    );
    let consumers_log = std::fs::read_to_string(&log).expect("the consumers' log");
    assert!(
        consumers_log.contains("recipe finished"),
        "the consumers logged: {consumers_log}"
    );
    assert!(
        !consumers_log.contains(&password),
        "the consumers' log holds the broker password"
    );

    watch.close().await;
    bus.cleanup().await;
}
