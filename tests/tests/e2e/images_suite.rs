//! Every test of the shipped suite seen to fail: each case builds an image with the shipped
//! recipe, breaks it deliberately (in the tree, or in the store after the build) and checks
//! that the gating test named for that breakage fails the candidate, saying why. The passing
//! side of every test is `images::a_composed_tree_becomes_checked_images_that_pass_the_suite`.

use crate::images_support;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use image_builder::ImageBuilder;
use image_tester::ImageTester;
use images_support::*;
use messages::{ImageBuilt, ImageTestsFailed, ImageTestsPassed, TestReport, TestStatus};
use store::Store;
use tests::config::{self, Table, Value, toml};

/// The reports of `count` candidates of one pipeline, passed or failed, by version.
async fn reports(watch: &mut tests::Watch, count: usize) -> Vec<(bool, TestReport)> {
    let seen = watch.wait_for(count, BOOT_WAIT).await.to_vec();
    let mut reports: Vec<(bool, TestReport)> = bodies::<ImageTestsFailed>(&seen)
        .into_iter()
        .map(|f| (false, f.0))
        .chain(
            bodies::<ImageTestsPassed>(&seen)
                .into_iter()
                .map(|p| (true, p.0)),
        )
        .collect();
    reports.sort_by(|a, b| a.1.version.as_str().cmp(b.1.version.as_str()));
    assert_eq!(reports.len(), count, "{seen:?}");
    reports
}

/// The reason `test` gives in `report`, which must have failed on it alone.
fn failed_alone<'a>(report: &'a TestReport, test: &str) -> &'a str {
    assert_eq!(report.failed, vec![test.to_owned()], "{report:?}");
    report
        .tests
        .iter()
        .find(|t| t.name == test)
        .and_then(|t| t.reason.as_deref())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_panicking_a_mislabelled_and_a_kernelless_tree_fail_the_gating_boot() {
    let work = Work::new();
    let panics = work.commit_bootable(
        REF_X86,
        "43.20261127.20",
        &[(
            "usr/sbin/init",
            "#!/bin/sh\necho 'init: cannot start'\nexit 1\n",
        )],
    );
    // The booted system says it is another version than the commit it was built from.
    let mislabelled = work.commit_bootable(
        REF_X86,
        "43.20261127.21",
        &[(
            "usr/lib/os-release",
            "NAME=\"Fedora Linux\"\nID=fedora\nVERSION=\"43.20261127.19\"\n",
        )],
    );
    let kernelless = work.commit(REF_X86, "43.20261127.22", GOOD_TREE);
    let arm_kernelless = work.commit(REF_ARM, "43.20261127.22", GOOD_TREE);
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
    let (builder, tester) = start_both(&bus).await;
    for commit in [&panics, &mislabelled, &kernelless] {
        publish(&bus, &tree_composed(&work, REF_X86, "x86_64", commit)).await;
    }
    publish(
        &bus,
        &tree_composed(&work, REF_ARM, "aarch64", &arm_kernelless),
    )
    .await;

    let reports = reports(&mut watch, 4).await;
    let x86: Vec<&TestReport> = reports
        .iter()
        .filter(|(_, r)| r.arch.as_str() == "x86_64")
        .map(|(passed, r)| {
            assert!(!passed, "{r:?}");
            r
        })
        .collect();
    let reason = failed_alone(x86[0], "boot");
    assert!(reason.contains("kernel panic"), "{reason}");
    assert!(
        reason.contains("Attempted to kill init"),
        "the reason names the last console lines: {reason}"
    );
    let reason = failed_alone(x86[1], "boot");
    assert!(
        reason.contains(
            "booted os-release VERSION is '43.20261127.19', the candidate is 43.20261127.21"
        ),
        "{reason}"
    );
    let reason = failed_alone(x86[2], "boot");
    assert!(
        reason.contains("no kernel") && reason.contains("requires one"),
        "{reason}"
    );
    // aarch64 is not booted here: a skip that says why, which does not hold the arch back.
    let (passed, arm) = reports
        .iter()
        .find(|(_, r)| r.arch.as_str() == "aarch64")
        .unwrap();
    assert!(passed, "{arm:?}");
    let boot = arm.tests.iter().find(|t| t.name == "boot").unwrap();
    assert_eq!(boot.status, TestStatus::Skipped, "{boot:?}");
    assert!(
        boot.reason
            .as_deref()
            .unwrap_or_default()
            .contains("only x86_64 images are booted"),
        "{boot:?}"
    );

    finish([builder, tester], watch, bus).await;
}

#[tokio::test]
async fn a_tree_whose_boot_hangs_fails_at_the_boot_timeout_naming_the_last_console_lines() {
    let work = Work::new();
    let commit = work.commit_bootable(
        REF_X86,
        "43.20261127.23",
        &[(
            "usr/sbin/init",
            "#!/bin/sh\necho 'init: waiting for a disk that never comes'\nexec /usr/bin/busybox sleep 100000\n",
        )],
    );
    // The shipped boot test alone, with a boot timeout a hang reaches quickly.
    let suite = work.dir.path().join("boot-suite.toml");
    let boot = toml! {
        name = "boot"
        argv = [(config::path(&workspace().join("deploy/tests/bin/boot")))]
        formats = ["qcow2"]
        timeout_seconds = 300
        env = { FORTNIGHT_BOOT_KERNEL = "required", FORTNIGHT_BOOT_SECONDS = "30" }
    };
    let tests = Table::from_iter([("test".to_owned(), Value::Array(vec![Value::Table(boot)]))]);
    std::fs::write(&suite, config::to_toml(&tests)).unwrap();
    let stream = StreamConfig {
        name: "img",
        arches: &[("x86_64", REF_X86)],
        repo: work.repo.path(),
        formats: &["qcow2"],
        recipes: vec![("qcow2", shipped_recipe("qcow2"))],
        suite: Some(suite),
        extra: Table::new(),
    };
    let bus = tests::TestBus::with_config(stream.config())
        .consumer("image-builder", Table::new())
        .consumer("image-tester", Table::new());
    let mut watch = bus
        .watch(&[
            "fortnight.image.tests.passed",
            "fortnight.image.tests.failed",
        ])
        .await;
    let (builder, tester) = start_both(&bus).await;
    publish(&bus, &tree_composed(&work, REF_X86, "x86_64", &commit)).await;

    let reports = reports(&mut watch, 1).await;
    let (passed, report) = &reports[0];
    assert!(!passed, "{report:?}");
    let reason = failed_alone(report, "boot");
    assert!(reason.contains("no verdict within 30s"), "{reason}");
    assert!(
        reason.contains("init: waiting for a disk that never comes"),
        "the reason names the last console lines: {reason}"
    );

    finish([builder, tester], watch, bus).await;
}

/// Zeroes the first refcount block of a qcow2: every cluster then looks unreferenced to
/// `qemu-img check`, while reading the disk still works.
fn zero_refcounts(path: &Path) {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut header = [0u8; 56];
    file.read_exact(&mut header).unwrap();
    let cluster_bits = u32::from_be_bytes(header[20..24].try_into().unwrap());
    let table = u64::from_be_bytes(header[48..56].try_into().unwrap());
    let mut entry = [0u8; 8];
    file.seek(SeekFrom::Start(table)).unwrap();
    file.read_exact(&mut entry).unwrap();
    file.seek(SeekFrom::Start(u64::from_be_bytes(entry)))
        .unwrap();
    file.write_all(&vec![0u8; 1 << cluster_bits]).unwrap();
}

#[tokio::test]
async fn images_broken_after_the_build_fail_the_format_and_checksum_tests() {
    let work = Work::new();
    let versions = ["43.20261127.30", "43.20261127.31", "43.20261127.32"];
    let bus = shipped_pipeline(&work, &[("x86_64", REF_X86)], &["qcow2"]);
    let mut watch_built = bus.watch(&["fortnight.image.built"]).await;
    let mut watch = bus
        .watch(&[
            "fortnight.image.tests.passed",
            "fortnight.image.tests.failed",
        ])
        .await;
    // The builder alone first, so the images can be broken before the tester sees them.
    let settings = Arc::new(bus.settings());
    let builder = Running::start(&settings, ImageBuilder::new(settings.clone()).unwrap());
    wait_consuming(&bus.queue("image-builder"), 1).await;
    for version in versions {
        let commit = work.commit_bootable(REF_X86, version, &[]);
        publish(&bus, &tree_composed(&work, REF_X86, "x86_64", &commit)).await;
    }
    let mut built: Vec<ImageBuilt> = bodies(watch_built.wait_for(3, WAIT).await);
    built.sort_by(|a, b| a.version.as_str().cmp(b.version.as_str()));
    let store = Store::open(bus.store_root()).unwrap();
    let image = |b: &ImageBuilt| store.resolve(&b.images[0].path).unwrap();

    // Bytes added after the build: the file no longer matches its CHECKSUM.
    std::fs::OpenOptions::new()
        .append(true)
        .open(image(&built[0]))
        .unwrap()
        .write_all(b"tampered")
        .unwrap();
    zero_refcounts(&image(&built[1]));
    // A raw disk under the qcow2's name.
    let raw = work.dir.path().join("disk.raw");
    let converted = Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(image(&built[2]))
        .arg(&raw)
        .status()
        .unwrap();
    assert!(converted.success());
    std::fs::rename(&raw, image(&built[2])).unwrap();

    let tester = Running::start(&settings, ImageTester::new(settings.clone()).unwrap());
    wait_consuming(&bus.queue("image-tester"), 1).await;
    for body in &built {
        publish(&bus, body).await;
    }
    let reports = reports(&mut watch, 3).await;
    let reason = failed_alone(&reports[0].1, "checksum");
    assert!(reason.contains("CHECKSUM says"), "{reason}");
    // The broken metadata changes the file too, so its checksum fails with it.
    let broken = &reports[1].1;
    assert_eq!(broken.failed, ["qemu-img-check", "checksum"], "{broken:?}");
    let check = broken
        .tests
        .iter()
        .find(|t| t.name == "qemu-img-check")
        .unwrap();
    assert!(
        check
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("finds corruptions"),
        "{check:?}"
    );
    let raw_report = &reports[2].1;
    assert!(
        raw_report.failed.contains(&"image-format".to_owned()),
        "{raw_report:?}"
    );
    let format = raw_report
        .tests
        .iter()
        .find(|t| t.name == "image-format")
        .unwrap();
    assert!(
        format
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("does not read"),
        "{format:?}"
    );

    finish([builder, tester], watch, bus).await;
}
