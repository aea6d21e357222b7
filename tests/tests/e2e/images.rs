//! Trees to images to test results, through the real broker: the image-builder with the
//! shipped recipes, the image-tester with the shipped suite.

use crate::images_support;

use std::process::Command;

use image_builder::ImageBuilder;
use image_tester::ImageTester;
use images_support::*;
use messages::{
    ImageBuildFailed, ImageBuilt, ImageTestsFailed, ImageTestsPassed, PungiComposeOstree,
    TestStatus,
};
use std::sync::Arc;
use store::{Store, Tier, checksum};
use tests::config::{self, Table, toml};

#[tokio::test]
async fn a_composed_tree_becomes_checked_images_that_pass_the_suite() {
    let work = Work::new();
    let commit = work.commit_bootable(REF_X86, "43.20261127.0", &[]);
    let bus = shipped_pipeline(&work, &[("x86_64", REF_X86)], &["qcow2", "raw.xz"]);
    let mut watch = bus
        .watch(&[
            "fortnight.image.built",
            "fortnight.image.tests.passed",
            "fortnight.image.tests.failed",
        ])
        .await;
    let (builder, tester) = start_both(&bus).await;

    publish(&bus, &tree_composed(&work, REF_X86, "x86_64", &commit)).await;
    let seen = watch.wait_for(2, BOOT_WAIT).await.to_vec();
    let built: Vec<ImageBuilt> = bodies(&seen);
    let passed: Vec<ImageTestsPassed> = bodies(&seen);
    assert_eq!(built.len(), 1, "{seen:?}");
    assert_eq!(passed.len(), 1, "tests did not pass: {seen:?}");

    let built = &built[0];
    assert_eq!(
        built.version.as_str(),
        "43.20261127.0",
        "version read from the commit metadata"
    );
    assert_eq!(built.tree.commit, commit);
    let store = Store::open(bus.store_root()).unwrap();
    let sums =
        checksum::read(&store.checksum_path(&built.stream, &built.version, &built.arch)).unwrap();
    assert_eq!(sums.len(), 2);
    for image in &built.images {
        let path = store.resolve(&image.path).unwrap();
        assert_eq!(sha256(&path), image.sha256.as_str(), "{}", image.path);
        let name = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(sums[&name], image.sha256, "CHECKSUM line for {name}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), image.size);
    }
    let qcow2 = built
        .images
        .iter()
        .find(|i| i.format.as_str() == "qcow2")
        .unwrap();
    let check = Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(store.resolve(&qcow2.path).unwrap())
        .status()
        .unwrap();
    assert!(check.success(), "qemu-img check refuses the built qcow2");

    let report = &passed[0].0;
    assert!(report.failed.is_empty());
    let status = |name: &str, format: &str| {
        report
            .tests
            .iter()
            .find(|t| t.name == name && t.format.as_str() == format)
            .unwrap_or_else(|| panic!("no {name} on {format} in {report:?}"))
    };
    for (name, format) in [
        ("qemu-img-check", "qcow2"),
        ("checksum", "raw.xz"),
        ("filesystem", "qcow2"),
        ("filesystem", "raw.xz"),
        ("image-format", "raw.xz"),
        ("boot", "qcow2"),
    ] {
        assert_eq!(
            status(name, format).status,
            TestStatus::Passed,
            "{name} on {format}"
        );
    }
    // The log holds the serial console of a system that booted this candidate.
    let boot_log =
        std::fs::read_to_string(store.resolve(&status("boot", "qcow2").log).unwrap()).unwrap();
    for line in [
        "fortnight-boot: os-release VERSION=43.20261127.0",
        "fortnight-boot: selftest passed",
        "booted 43.20261127.0 with ",
    ] {
        assert!(
            boot_log.contains(line),
            "no {line:?} in the boot log:\n{boot_log}"
        );
    }
    let tests_json = store
        .read_tests(&built.stream, &built.version, &built.arch)
        .unwrap()
        .unwrap();
    assert_eq!(&tests_json, report);
    let junit =
        std::fs::read_to_string(store.junit_path(&built.stream, &built.version, &built.arch))
            .unwrap();
    assert!(junit.contains("name=\"boot"), "{junit}");
    assert!(!junit.contains("<skipped"), "{junit}");
    assert_eq!(
        store
            .list_versions(&built.stream, Tier::PassedAutotest)
            .unwrap(),
        vec![built.version.clone()]
    );

    finish([builder, tester], watch, bus).await;
}

#[tokio::test]
async fn a_tree_that_breaks_a_gating_test_fails_naming_the_test() {
    let work = Work::new();
    // An os-release without NAME=: the gating filesystem test must refuse it (the tree
    // still boots, so that is the only failure).
    let commit = work.commit_bootable(
        REF_X86,
        "43.20261127.1",
        &[(
            "usr/lib/os-release",
            "ID=fedora\nVERSION=\"43.20261127.1\"\n",
        )],
    );
    let bus = shipped_pipeline(&work, &[("x86_64", REF_X86)], &["qcow2"]);
    let mut watch = bus
        .watch(&[
            "fortnight.image.tests.passed",
            "fortnight.image.tests.failed",
        ])
        .await;
    let (builder, tester) = start_both(&bus).await;

    publish(&bus, &tree_composed(&work, REF_X86, "x86_64", &commit)).await;
    let seen = watch.wait_for(1, BOOT_WAIT).await.to_vec();
    let failed: Vec<ImageTestsFailed> = bodies(&seen);
    assert_eq!(failed.len(), 1, "{seen:?}");
    let report = &failed[0].0;
    assert_eq!(report.failed, vec!["filesystem".to_owned()]);
    let test = report
        .tests
        .iter()
        .find(|t| t.name == "filesystem")
        .unwrap();
    assert!(
        test.reason
            .as_deref()
            .unwrap_or_default()
            .contains("os-release"),
        "{test:?}"
    );
    let store = Store::open(bus.store_root()).unwrap();
    assert!(
        store
            .list_versions(&report.stream, Tier::PassedAutotest)
            .unwrap()
            .is_empty()
    );

    finish([builder, tester], watch, bus).await;
}

#[tokio::test]
async fn the_same_pungi_tree_sent_three_times_builds_once() {
    let work = Work::new();
    let commit = work.commit(REF_X86, "43.20261127.2", GOOD_TREE);
    let counter = work.dir.path().join("runs");
    // Counts its runs, then builds with the shipped recipe.
    let recipe = work.script(
        "counting-qcow2",
        &format!(
            "echo run >> '{}'\nexec '{}'",
            counter.display(),
            shipped_recipe("qcow2").display()
        ),
    );
    let stream = StreamConfig {
        name: "img",
        arches: &[("x86_64", REF_X86)],
        repo: work.repo.path(),
        formats: &["qcow2"],
        recipes: vec![("qcow2", recipe)],
        suite: None,
        extra: Table::new(),
    };
    let (bus, mut watch, builder) = builder_only(stream.config()).await;

    let pungi = PungiComposeOstree {
        arch: "x86_64".to_owned(),
        ostree_ref: REF_X86.to_owned(),
        commitid: Some(commit.to_string()),
        variant: Some("AtomicHost".to_owned()),
        compose_id: Some("Fedora-43-20261127.n.0".to_owned()),
        location: None,
        repo_path: None,
        local_repo_path: Some(work.repo.path().display().to_string()),
    };
    // Every copy gets a new message id, as pungi's re-sends do.
    for _ in 0..3 {
        publish(&bus, &pungi).await;
    }
    // Each copy is answered (a lost answer would stall the pipeline), all with the one
    // build's message id, so downstream drops the repeats; the recipe ran once.
    let all = watch.wait_for(3, WAIT).await.to_vec();
    let built: Vec<ImageBuilt> = bodies(&all);
    assert_eq!((all.len(), built.len()), (3, 3), "{all:?}");
    let ids: std::collections::BTreeSet<_> = all.iter().map(|l| l.id.clone()).collect();
    assert_eq!(ids.len(), 1, "repeats carry the same id: {ids:?}");
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap(),
        "run\n",
        "the recipe ran more than once"
    );

    // An operator's replay with force builds again, under a new id.
    let mut forced = tree_composed(&work, REF_X86, "x86_64", &commit);
    forced.force = true;
    publish(&bus, &forced).await;
    let all = watch.wait_for(4, WAIT).await;
    assert_eq!(bodies::<ImageBuilt>(all).len(), 4);
    assert!(!ids.contains(&all[3].id), "a forced build is a new result");
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "run\nrun\n");

    finish([builder], watch, bus).await;
}

#[tokio::test]
async fn failing_hanging_and_silent_recipes_give_build_failed_and_leave_nothing_half_written() {
    let work = Work::new();
    let commit = work.commit(REF_X86, "43.20261127.3", GOOD_TREE);
    let recipes = [
        (
            "fails",
            work.script("fails", "echo 'mke2fs: no space left' >&2\nexit 3"),
            "exit status 3",
        ),
        (
            "hangs",
            work.script(
                "hangs",
                "echo partial > \"$FORTNIGHT_OUTPUT_DIR/disk.qcow2\"\nsleep 300",
            ),
            "timed out after 2s",
        ),
        (
            "silent",
            work.script("silent", "echo 'nothing to do'"),
            "wrote nothing",
        ),
    ];
    // Three streams on the same ref: one tree event, three builds.
    let mut config = toml! {
        [image_builder]
        recipe_timeout_seconds = 2
    };
    for (name, recipe, _) in &recipes {
        config::merge(
            &mut config,
            StreamConfig {
                name,
                arches: &[("x86_64", REF_X86)],
                repo: work.repo.path(),
                formats: &["qcow2"],
                recipes: vec![("qcow2", recipe.clone())],
                suite: None,
                extra: Table::new(),
            }
            .config(),
        );
    }
    let (bus, mut watch, builder) = builder_only(config).await;

    publish(&bus, &tree_composed(&work, REF_X86, "x86_64", &commit)).await;
    let seen = watch.wait_for(3, WAIT).await.to_vec();
    let failed: Vec<ImageBuildFailed> = bodies(&seen);
    assert_eq!((seen.len(), failed.len()), (3, 3), "{seen:?}");
    let store = Store::open(bus.store_root()).unwrap();
    for (name, _, reason) in &recipes {
        let f = failed.iter().find(|f| f.stream.as_str() == *name).unwrap();
        assert!(f.reason.contains(reason), "{name}: {}", f.reason);
        assert_eq!(f.format.as_ref().map(|f| f.as_str()), Some("qcow2"));
        let version = f.version.clone().expect("the version was known");
        let arch_dir = store.arch_dir(&f.stream, &version, &f.arch);
        assert_eq!(
            entries(&arch_dir),
            ["logs"],
            "{name}: only the build log may be left in {}",
            arch_dir.display()
        );
        let log = std::fs::read_to_string(store.resolve(f.build_log.as_deref().unwrap()).unwrap())
            .unwrap();
        assert!(log.contains(reason), "{name}: log says why: {log}");
    }
    let fails = failed
        .iter()
        .find(|f| f.stream.as_str() == "fails")
        .unwrap();
    let log = std::fs::read_to_string(store.resolve(fails.build_log.as_deref().unwrap()).unwrap())
        .unwrap();
    assert!(
        log.contains("mke2fs: no space left"),
        "the recipe's own output is captured: {log}"
    );

    finish([builder], watch, bus).await;
}

#[tokio::test]
async fn two_arches_on_two_tester_replicas_reach_passed_autotest_exactly_once() {
    let work = Work::new();
    let bus = shipped_pipeline(
        &work,
        &[("x86_64", REF_X86), ("aarch64", REF_ARM)],
        &["qcow2"],
    );
    let mut watch = bus
        .watch(&[
            "fortnight.image.tests.passed",
            "fortnight.image.tests.failed",
        ])
        .await;
    let settings = Arc::new(bus.settings());
    let builder = Running::start(&settings, ImageBuilder::new(settings.clone()).unwrap());
    let replicas = [
        Running::start(&settings, ImageTester::new(settings.clone()).unwrap()),
        Running::start(&settings, ImageTester::new(settings.clone()).unwrap()),
    ];
    wait_consuming(&bus.queue("image-builder"), 1).await;
    wait_consuming(&bus.queue("image-tester"), 2).await;

    // Two candidates whose arches arrive in opposite orders.
    let rounds = [
        (
            "43.20261127.10",
            [("x86_64", REF_X86), ("aarch64", REF_ARM)],
        ),
        (
            "43.20261127.11",
            [("aarch64", REF_ARM), ("x86_64", REF_X86)],
        ),
    ];
    for (version, order) in &rounds {
        for (arch, tree_ref) in order {
            // Only x86_64 boots here; aarch64's boot test skips.
            let commit = if *arch == "x86_64" {
                work.commit_bootable(tree_ref, version, &[])
            } else {
                work.commit(tree_ref, version, GOOD_TREE)
            };
            publish(&bus, &tree_composed(&work, tree_ref, arch, &commit)).await;
        }
    }
    let seen = watch.wait_for(4, BOOT_WAIT).await.to_vec();
    let passed: Vec<ImageTestsPassed> = bodies(&seen);
    assert_eq!(passed.len(), 4, "{seen:?}");
    let store = Store::open(bus.store_root()).unwrap();
    let stream = "img".parse().unwrap();
    assert_eq!(
        entries(&store.tier_dir(&stream, Tier::PassedAutotest)),
        rounds
            .iter()
            .map(|(v, _)| (*v).to_owned())
            .collect::<Vec<_>>(),
        "one link per candidate, nothing else"
    );

    builder.stop().await;
    for replica in replicas {
        replica.stop().await;
    }
    watch.close().await;
    bus.cleanup().await;
}

/// The builder on a store of its own: `images_support` stream `img` with the shipped qcow2
/// recipe, the store root at `root`.
fn builder_on(work: &Work, root: &std::path::Path) -> ImageBuilder {
    let stream = StreamConfig {
        name: "img",
        arches: &[("x86_64", REF_X86)],
        repo: work.repo.path(),
        formats: &["qcow2"],
        recipes: vec![("qcow2", shipped_recipe("qcow2"))],
        suite: None,
        extra: Table::new(),
    };
    let config = config::merged(
        toml! { [store] root = (config::path(root)) },
        stream.config(),
    );
    let settings =
        settings::Settings::from_toml(&config::to_toml(&config)).expect("a valid configuration");
    ImageBuilder::new(Arc::new(settings)).unwrap()
}

#[tokio::test]
async fn a_store_that_fills_up_during_a_recipe_is_a_retry_and_builds_once_space_is_freed() {
    use bus::Outcome;

    let work = Work::new();
    let commit = work.commit(REF_X86, "43.20261127.0", GOOD_TREE);
    let root = work.dir.path().join("store");
    std::fs::create_dir(&root).unwrap();
    let _tmpfs = tests::mount::Mount::tmpfs(&root, 128 * 1024);
    // Leaves a little room: the recipe starts, then fails with ENOSPC in its scratch space,
    // and (like any tidy recipe) removes its scratch on the way out.
    let ballast = root.join("ballast");
    std::fs::write(&ballast, vec![1u8; (128 * 1024 - 512) * 1024]).unwrap();
    let builder = builder_on(&work, &root);
    let message = messages::Outgoing::new(
        uuid::Uuid::new_v4(),
        &tree_composed(&work, REF_X86, "x86_64", &commit),
    )
    .to_incoming();

    let outcome = bus::outcome(&builder, &message).await;
    assert!(
        matches!(&outcome, Outcome::Retry { reason, .. } if reason.contains("No space left on device")),
        "a full store is a retry naming the cause: {outcome:?}"
    );
    let store = Store::open(&root).unwrap();
    let marker = store.built_marker(&"img".parse().unwrap(), &REF_X86.parse().unwrap(), &commit);
    assert!(!marker.exists(), "no build marker for a retry");

    std::fs::remove_file(&ballast).unwrap();
    let outcome = bus::outcome(&builder, &message).await;
    let Outcome::Done(out) = &outcome else {
        panic!("the retried message builds once space is free: {outcome:?}");
    };
    assert_eq!(out.len(), 1);
    assert!(out[0].topic.ends_with("fortnight.image.built"), "{out:?}");
    assert!(marker.exists());
}
