//! The image builder clears the staging directories that crashed builds left behind when it
//! starts, and keeps those a live build (here: a held lock) or a fresh one still owns; the
//! image tester does the same with its tests' scratch directories.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use image_builder::ImageBuilder;
use image_tester::ImageTester;
use tests::config::health_addr;
use tests::{Running, TestBus, eventually, free_port, is_ready};

const WAIT: Duration = Duration::from_secs(30);

/// A staging directory with a partial image, last changed `age` ago; with `lock`, it has the
/// lock file a build takes.
fn staging(arch_dir: &Path, name: &str, lock: bool, age: Duration) -> PathBuf {
    let dir = arch_dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("partial.qcow2"), b"half an image").unwrap();
    if lock {
        File::create(dir.join(".lock")).unwrap();
    }
    File::open(&dir)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_removes_staging_no_live_build_owns_and_keeps_the_rest() {
    let health = free_port();
    let bus = TestBus::new().consumer("image-builder", health_addr(health));
    let settings = Arc::new(bus.settings());
    let arch_dir = bus.store_root().join("f43/all/43.20261101.0/x86_64");
    let old = Duration::from_secs(3600);
    let crashed = staging(&arch_dir, ".build-crashed", true, old);
    let never_locked = staging(&arch_dir, ".build-unlocked", false, old);
    let live = staging(&arch_dir, ".build-live", true, old);
    let fresh = staging(&arch_dir, ".build-fresh", false, Duration::ZERO);
    let images = staging(&arch_dir, "images", false, old);
    // A build in another process holds its staging's lock for as long as it runs.
    let held = File::options()
        .write(true)
        .open(live.join(".lock"))
        .unwrap();
    held.lock().unwrap();

    let consumer = Running::start(&settings, ImageBuilder::new(Arc::clone(&settings)).unwrap());
    let ready = eventually(WAIT, || is_ready(health)).await;
    assert!(ready, "the image builder did not become ready");

    assert!(!crashed.exists(), "a crashed build's staging is removed");
    assert!(
        !never_locked.exists(),
        "an old staging without a lock is removed"
    );
    assert!(
        live.join("partial.qcow2").exists(),
        "a live build's staging stays"
    );
    assert!(
        fresh.join("partial.qcow2").exists(),
        "a fresh staging stays"
    );
    assert!(
        images.join("partial.qcow2").exists(),
        "only staging is touched"
    );

    consumer.stop().await;
    drop(held);
    bus.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_removes_test_scratch_no_live_test_owns_and_keeps_the_rest() {
    let health = free_port();
    let bus = TestBus::new().consumer("image-tester", health_addr(health));
    let settings = Arc::new(bus.settings());
    let tmp = std::env::temp_dir();
    let name = |what: &str| format!("{}{}-{what}", image_tester::SCRATCH_PREFIX, bus.id);
    let old = Duration::from_secs(3600);
    // What a tester killed mid-test leaves: its lock is free once the process is gone.
    let killed = staging(&tmp, &name("killed"), true, old);
    let live = staging(&tmp, &name("live"), true, old);
    let fresh = staging(&tmp, &name("fresh"), false, Duration::ZERO);
    let _cleanup = RemoveOnDrop(vec![killed.clone(), live.clone(), fresh.clone()]);
    let held = File::options()
        .write(true)
        .open(live.join(".lock"))
        .unwrap();
    held.lock().unwrap();

    let consumer = Running::start(&settings, ImageTester::new(Arc::clone(&settings)).unwrap());
    let ready = eventually(WAIT, || is_ready(health)).await;
    assert!(ready, "the image tester did not become ready");

    assert!(!killed.exists(), "a dead tester's scratch is removed");
    assert!(
        live.join("partial.qcow2").exists(),
        "a live test's scratch stays"
    );
    assert!(
        fresh.join("partial.qcow2").exists(),
        "a fresh scratch stays"
    );

    consumer.stop().await;
    drop(held);
    bus.cleanup().await;
}

/// Directories a test made outside its own temporary directory, removed however it ends.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
