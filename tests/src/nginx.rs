//! The web server as deployed: Debian's nginx with the shipped `deploy/kubernetes/web.conf`,
//! changed only in where it listens and where the store is mounted, its master as root and
//! its workers as [`WORKER_USER`], so a store file the consumers leave unreadable to others
//! answers 403.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::process::wait_until;

/// The user nginx's workers run as: not the owner of the store's files.
pub const WORKER_USER: &str = "nobody nogroup";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// nginx serving a store. Stopped (master and workers) when dropped.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    scratch: PathBuf,
    pub addr: std::net::SocketAddr,
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
    /// Serves `store` on a free loopback port; `scratch` takes its configuration, pid file
    /// and logs.
    pub fn serve(store: &Path, scratch: &Path) -> Nginx {
        let shipped = std::fs::read_to_string(workspace().join("deploy/kubernetes/web.conf"))
            .expect("deploy/kubernetes/web.conf");
        let addr = crate::free_port();
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
            crate::http_get(addr, "/").is_some() || failed(scratch)
        });
        assert!(
            !failed(scratch),
            "nginx did not start: {}",
            std::fs::read_to_string(scratch.join("error.log")).unwrap_or_default()
        );
        nginx
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn failed(scratch: &Path) -> bool {
    std::fs::read_to_string(scratch.join("error.log")).is_ok_and(|log| log.contains("[emerg]"))
}
