//! The web server as deployed, in front of a store the real pipeline wrote: Debian's nginx with
//! the shipped `deploy/kubernetes/web.conf`, its master as root and its workers as `nobody`,
//! so a file the consumers (root here) leave unreadable to others answers 403. Every
//! published file of a `fortnight demo` run is served; the store's bookkeeping is not.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::assert_success;
use crate::demo::demo;
use tests::nginx::Nginx;

/// Every regular file under `dir` (following links, as the web server does), relative to
/// `root`.
fn files(root: &Path, dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("a readable store directory") {
        let path = entry.expect("an entry").path();
        let meta = std::fs::metadata(&path).expect("a resolvable path");
        if meta.is_dir() {
            files(root, &path, found);
        } else if meta.is_file() {
            let relative = path.strip_prefix(root).expect("under the root");
            found.push(relative.to_string_lossy().into_owned());
        }
    }
}

/// What the consumers keep for themselves: hidden names, the timer's state, the audit log.
fn is_bookkeeping(relative: &str) -> bool {
    relative
        .split('/')
        .any(|part| part.starts_with('.') || part == "timer.json" || part == "overrides.jsonl")
}

#[tokio::test]
async fn nginx_as_another_user_serves_every_published_file_the_pipeline_wrote_and_no_bookkeeping() {
    assert_eq!(
        std::fs::metadata("/proc/self").expect("procfs").uid(),
        0,
        "this test runs nginx's workers as another user than the store's owner, which needs root"
    );
    let scratch = tempfile::tempdir().expect("scratch");
    // The path down to the store is the mount point's business, not the consumers'.
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let dir = scratch.path().join("demo");
    let output = demo(&dir, &uuid::Uuid::new_v4().simple().to_string()[..12]);
    assert_success(&output, "fortnight demo");
    let store = dir.join("store");

    let nginx_dir = tempfile::tempdir().expect("nginx scratch");
    let nginx = Nginx::serve(&store, nginx_dir.path());

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let get = |path: String| {
        let request = client.get(nginx.url(&path)).send();
        async move { request.await.unwrap_or_else(|e| panic!("GET {path}: {e}")) }
    };
    let root = get("/".to_owned()).await;
    assert_eq!(root.status(), 302);
    assert_eq!(root.headers()["location"], "/site/");
    let page = get("/site/".to_owned()).await;
    assert_eq!(page.status(), 200, "the page");
    assert_eq!(
        page.headers()["cache-control"],
        "no-cache",
        "the page is revalidated"
    );
    assert!(
        page.text().await.expect("body").contains("43.20261125.0"),
        "the page shows the release"
    );
    let feed = get("/site/releases.atom".to_owned()).await;
    assert_eq!(feed.headers()["content-type"], "application/atom+xml");

    let mut all = Vec::new();
    files(&store, &store, &mut all);
    let (private, public): (Vec<String>, Vec<String>) =
        all.into_iter().partition(|f| is_bookkeeping(f));
    let release = "f43/releases/43.20261125.0";
    for wanted in [
        "site/index.html".to_owned(),
        "site/streams/f43.json".to_owned(),
        "site/releases.atom".to_owned(),
        format!("{release}/release.json"),
        format!("{release}/x86_64/CHECKSUM"),
        format!("{release}/x86_64/f43-43.20261125.0.x86_64.qcow2"),
        "f43/all/43.20261125.0/aarch64/logs/build.log".to_owned(),
        "f43/all/43.20261125.0/aarch64/tests.json".to_owned(),
        "f43/all/43.20261125.0/aarch64/junit.xml".to_owned(),
    ] {
        assert!(public.contains(&wanted), "{wanted} not in {public:?}");
    }
    for file in &public {
        let status = get(format!("/{file}")).await.status();
        assert_eq!(status, 200, "/{file} is published");
    }
    for wanted in [
        ".periods/",
        ".built/",
        ".locks/",
        ".threshold.json",
        ".site/",
    ] {
        assert!(
            private.iter().any(|f| f.contains(wanted)),
            "the demo left {wanted} bookkeeping to check: {private:?}"
        );
    }
    for file in private.iter().map(|f| format!("/{f}")).chain([
        "/f43/.periods/".to_owned(),
        "/.jobs/".to_owned(),
        "/f43/timer.json".to_owned(),
        "/f43/overrides.jsonl".to_owned(),
    ]) {
        let status = get(file.clone()).await.status();
        assert_eq!(status, 404, "{file} is not served");
    }
}
