//! The web server as deployed, in front of a store the real pipeline wrote: Debian's nginx with
//! the shipped `deploy/kubernetes/web.conf`, its master as root and its workers as `nobody`,
//! so a file the consumers (root here) leave unreadable to others answers 403. Every
//! published file of a `fortnight demo` run is served; the store's bookkeeping is not.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::common::{assert_success, wait_until};
use crate::demo::demo;

/// The user nginx's workers run as: not the owner of the store's files.
const WORKER_USER: &str = "nobody nogroup";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// nginx with the shipped server block, changed only in where it listens and where the store
/// is mounted. Stopped (master and workers) when dropped.
struct Nginx {
    child: Child,
    scratch: PathBuf,
    addr: std::net::SocketAddr,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The master stops its workers on SIGTERM; a SIGKILL would leave them running.
        let stopped = Command::new("nginx")
            .arg("-p")
            .arg(&self.scratch)
            .arg("-c")
            .arg(self.scratch.join("nginx.conf"))
            .args(["-s", "stop"])
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn serve(store: &Path, scratch: &Path) -> Nginx {
        let shipped = std::fs::read_to_string(repo().join("deploy/kubernetes/web.conf"))
            .expect("deploy/kubernetes/web.conf");
        let addr = tests::free_port();
        let server: String = shipped
            .lines()
            .map(|line| match line.trim_start() {
                l if l.starts_with("listen ") => format!("    listen {addr};"),
                l if l.starts_with("root ") => format!("    root {};", store.display()),
                _ => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(server, shipped, "web.conf has a listen and a root line");
        std::fs::write(scratch.join("web.conf"), server).expect("server block");
        let s = scratch.display();
        std::fs::write(
            scratch.join("nginx.conf"),
            format!(
                "daemon off;\nuser {WORKER_USER};\nworker_processes 1;\npid {s}/nginx.pid;\n\
                 error_log {s}/error.log;\nevents {{}}\n\
                 http {{\n  include /etc/nginx/mime.types;\n  access_log off;\n\
                 client_body_temp_path {s}/body;\n  proxy_temp_path {s}/proxy;\n\
                 fastcgi_temp_path {s}/fastcgi;\n  uwsgi_temp_path {s}/uwsgi;\n\
                 scgi_temp_path {s}/scgi;\n  include {s}/web.conf;\n}}\n"
            ),
        )
        .expect("main config");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(scratch)
            .arg("-c")
            .arg(scratch.join("nginx.conf"))
            .spawn()
            .expect("nginx runs (Debian's nginx-light; .ci/run installs it)");
        let nginx = Nginx {
            child,
            scratch: scratch.to_owned(),
            addr,
        };
        wait_until("nginx answers", || {
            tests::http_get(addr, "/").is_some() || nginx_failed(scratch)
        });
        assert!(
            !nginx_failed(scratch),
            "nginx did not start: {}",
            std::fs::read_to_string(scratch.join("error.log")).unwrap_or_default()
        );
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn nginx_failed(scratch: &Path) -> bool {
    std::fs::read_to_string(scratch.join("error.log")).is_ok_and(|log| log.contains("[emerg]"))
}

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
