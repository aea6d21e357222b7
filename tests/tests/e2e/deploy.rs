//! The deployment files hold together: every manifest parses, every consumer is deployed with
//! health probes on the port its configuration serves them on, and every configuration they
//! ship loads with the project's own loader.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value;
use settings::Settings;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

fn deploy() -> PathBuf {
    repo().join("deploy")
}

/// The consumers are the crates under `consumers/`: a new one must be deployed too.
fn consumers() -> BTreeSet<String> {
    std::fs::read_dir(repo().join("consumers"))
        .expect("consumers/ is readable")
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
    {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, found);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            found.push(path);
        }
    }
}

/// Every YAML document of a file, with `<<` merge keys resolved as a YAML 1.1 reader does.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|document| {
            let mut value = <Value as serde::Deserialize>::deserialize(document)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
            value
                .apply_merge()
                .unwrap_or_else(|e| panic!("{}: bad merge key: {e}", path.display()));
            value
        })
        .collect()
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_str()
}

/// The one Deployment that is not a consumer: nginx serving the store (`web.yaml`).
const WEB: &str = "web";

fn kustomization() -> Value {
    documents(&deploy().join("kubernetes/kustomization.yaml")).remove(0)
}

fn kubernetes_config() -> Settings {
    let kustomization = kustomization();
    let generators = kustomization["configMapGenerator"]
        .as_sequence()
        .expect("configMapGenerator list");
    let generator = generators
        .iter()
        .find(|g| g["name"].as_str() == Some("fortnight-config"))
        .expect("a fortnight-config ConfigMap is generated");
    let file = generator["files"][0]
        .as_str()
        .expect("the ConfigMap is generated from a file");
    let key_and_path: Vec<&str> = file.splitn(2, '=').collect();
    let path = deploy()
        .join("kubernetes")
        .join(key_and_path.last().expect("a file name"));
    Settings::load(&path).unwrap_or_else(|e| panic!("the ConfigMap's config does not load: {e}"))
}

#[test]
fn every_yaml_manifest_parses() {
    let mut files = Vec::new();
    yaml_files(&deploy(), &mut files);
    assert!(
        files.len() >= 8,
        "expected compose, kustomization, the PVC and a Deployment per consumer, found {files:?}"
    );
    for file in files {
        let docs = documents(&file);
        assert!(
            !docs.is_empty(),
            "{} holds no YAML document",
            file.display()
        );
        assert!(
            docs.iter().all(Value::is_mapping),
            "{} holds a document that is not a mapping",
            file.display()
        );
    }
}

#[test]
fn kubernetes_deploys_every_consumer_with_probes_on_its_health_port() {
    let config = kubernetes_config();
    let kustomization = kustomization();
    let resources: Vec<Value> = kustomization["resources"]
        .as_sequence()
        .expect("resources list")
        .iter()
        .flat_map(|r| {
            documents(
                &deploy()
                    .join("kubernetes")
                    .join(r.as_str().expect("resource path")),
            )
        })
        .collect();

    let claim = resources
        .iter()
        .find(|r| r["kind"].as_str() == Some("PersistentVolumeClaim"))
        .expect("a PersistentVolumeClaim for the store");
    let claim_name = str_at(claim, &["metadata", "name"]).expect("claim name");
    assert_eq!(
        claim["spec"]["accessModes"][0].as_str(),
        Some("ReadWriteMany"),
        "every consumer shares the store"
    );

    let deployments: Vec<&Value> = resources
        .iter()
        .filter(|r| r["kind"].as_str() == Some("Deployment"))
        .filter(|d| str_at(d, &["metadata", "name"]) != Some(WEB))
        .collect();
    let deployed: BTreeSet<String> = deployments
        .iter()
        .map(|d| {
            str_at(d, &["metadata", "name"])
                .expect("deployment name")
                .to_owned()
        })
        .collect();
    assert_eq!(
        deployed,
        consumers(),
        "one Deployment per consumer crate, besides the web server"
    );

    for deployment in deployments {
        let name = str_at(deployment, &["metadata", "name"]).expect("name");
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            container["command"][0].as_str(),
            Some(name),
            "{name} runs its own binary"
        );
        let port = config
            .consumer(name)
            .health_addr
            .unwrap_or_else(|| {
                panic!("consumers.{name}.health_addr is not set in the ConfigMap's config")
            })
            .port();
        for (probe, path) in [("livenessProbe", "/live"), ("readinessProbe", "/ready")] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"].as_str(), Some(path), "{name} {probe} path");
            assert_eq!(
                get["port"].as_u64(),
                Some(u64::from(port)),
                "{name} {probe} port"
            );
        }
        assert_eq!(
            pod["securityContext"]["runAsNonRoot"].as_bool(),
            Some(true),
            "{name} runs as non-root"
        );
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{name} cannot escalate privileges"
        );
        let volumes = pod["volumes"].as_sequence().expect("volumes");
        assert!(
            volumes
                .iter()
                .any(|v| str_at(v, &["persistentVolumeClaim", "claimName"]) == Some(claim_name)),
            "{name} mounts the store claim"
        );
        assert!(
            volumes
                .iter()
                .any(|v| str_at(v, &["configMap", "name"]) == Some("fortnight-config")),
            "{name} mounts the config"
        );
        let mounts = container["volumeMounts"]
            .as_sequence()
            .expect("volumeMounts");
        assert!(
            mounts.iter().any(
                |m| m["mountPath"].as_str().map(Path::new) == Some(config.store.root.as_path())
            ),
            "{name} mounts the store where the config's store.root says"
        );
    }
}

#[test]
fn recipes_and_suites_the_deployed_config_names_ship_in_the_image() {
    // The Containerfile copies deploy/ to /usr/share/fortnight/.
    let containerfile =
        std::fs::read_to_string(deploy().join("Containerfile")).expect("deploy/Containerfile");
    assert!(containerfile.contains("COPY deploy/ /usr/share/fortnight/"));
    let shipped = |path: &Path| {
        let relative = path
            .strip_prefix("/usr/share/fortnight")
            .unwrap_or_else(|_| panic!("{} is not under /usr/share/fortnight", path.display()));
        deploy().join(relative)
    };
    let config = kubernetes_config();
    for (name, stream) in &config.streams {
        for format in &stream.formats {
            let recipe = stream
                .recipes
                .get(format)
                .unwrap_or_else(|| panic!("{name} has no recipe for {format}"));
            assert!(
                shipped(recipe).is_file(),
                "{name}'s {format} recipe {} is not in deploy/",
                recipe.display()
            );
        }
        let suite = stream
            .test_suite
            .as_ref()
            .unwrap_or_else(|| panic!("{name} has no test suite"));
        assert!(
            shipped(suite).is_file(),
            "{name}'s suite {} is not in deploy/",
            suite.display()
        );
    }
}

#[test]
fn every_consumer_has_a_distinct_health_port() {
    let config = kubernetes_config();
    let ports: BTreeSet<u16> = consumers()
        .iter()
        .filter_map(|c| config.consumer(c).health_addr.map(|a| a.port()))
        .collect();
    assert_eq!(
        ports.len(),
        consumers().len(),
        "`fortnight up` runs them in one process, so ports must differ"
    );
}

#[test]
fn compose_runs_rabbitmq_and_every_consumer_on_a_shared_store() {
    let compose = documents(&deploy().join("compose.yaml")).remove(0);
    let services = compose["services"].as_mapping().expect("services");
    assert!(services.contains_key("rabbitmq"), "compose runs RabbitMQ");
    let store_root = kubernetes_config().store.root;
    for consumer in consumers() {
        let service = services
            .get(consumer.as_str())
            .unwrap_or_else(|| panic!("compose has no service for {consumer}"));
        assert_eq!(service["command"][0].as_str(), Some(consumer.as_str()));
        let volumes: Vec<&str> = service["volumes"]
            .as_sequence()
            .expect("volumes")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            volumes.contains(&format!("store:{}", store_root.display()).as_str()),
            "{consumer} mounts the shared store volume at store.root: {volumes:?}"
        );
        let config_mount = volumes
            .iter()
            .find(|v| v.contains(":/etc/fortnight/config.toml"))
            .unwrap_or_else(|| panic!("{consumer} mounts a config"));
        let source = deploy().join(config_mount.split(':').next().expect("source"));
        Settings::load(&source)
            .unwrap_or_else(|e| panic!("compose's config {} does not load: {e}", source.display()));
    }
    assert!(
        compose["volumes"].get("store").is_some(),
        "the store volume is declared"
    );
}

#[test]
fn containerfile_builds_every_consumer_binary() {
    let text =
        std::fs::read_to_string(deploy().join("Containerfile")).expect("deploy/Containerfile");
    let build = text
        .lines()
        .skip_while(|l| !l.contains("cargo build"))
        .take_while(|l| l.trim_end().ends_with('\\'))
        .collect::<String>();
    for binary in consumers().iter().map(String::as_str).chain(["fortnight"]) {
        assert!(
            build.contains(&format!("-p {binary} ")),
            "the image builds {binary}"
        );
    }
    assert!(
        build.contains("-p runner ") && build.contains(" fortnight-job;"),
        "the image builds and installs fortnight-job, which the consumers look for beside them"
    );
    for tool in ["ostree", "e2fsprogs", "qemu-utils", "xz-utils"] {
        assert!(text.contains(tool), "the runtime image installs {tool}");
    }
}

#[test]
fn systemd_unit_runs_the_instance_binary_with_the_shared_config() {
    let text =
        std::fs::read_to_string(deploy().join("systemd/fortnight@.service")).expect("unit file");
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
            .unwrap_or_else(|| panic!("the unit sets {key}"))
    };
    assert_eq!(value("ExecStart"), "/usr/local/bin/%i");
    assert_eq!(
        value("Environment"),
        "FORTNIGHT_CONFIG=/etc/fortnight/config.toml"
    );
    assert_eq!(value("KillSignal"), "SIGTERM");
}

#[test]
fn example_config_loads() {
    let path = deploy().join("fortnight.example.toml");
    let config =
        Settings::load(&path).unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
    assert!(
        config.streams.values().any(|s| s.twoweek.is_some()),
        "the example has a stream with two-week releases"
    );
    assert!(
        config.streams.values().any(|s| s.twoweek.is_none()),
        "the example has a nightly-only stream"
    );
}

/// nginx with `web.conf` (what web.yaml and compose run), in front of a store laid out as the
/// consumers leave it.
struct Nginx {
    child: std::process::Child,
    base: String,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts nginx on a free loopback port serving `store` with the shipped server block,
    /// changed only in where it listens and where the store is mounted. One process, no
    /// workers, so killing it leaves nothing behind.
    fn serve(store: &Path, scratch: &Path) -> Nginx {
        let shipped = std::fs::read_to_string(deploy().join("kubernetes/web.conf"))
            .expect("deploy/kubernetes/web.conf");
        let mounted = format!("root {};", kubernetes_config().store.root.display());
        assert!(
            shipped.contains(&mounted) && shipped.contains("listen 8080;"),
            "web.conf serves the store where the consumers' config puts it, on 8080"
        );
        let addr = tests::free_port();
        let server = shipped
            .replace("listen 8080;", &format!("listen {addr};"))
            .replace(&mounted, &format!("root {};", store.display()));
        std::fs::write(scratch.join("web.conf"), server).expect("server block");
        let s = scratch.display();
        std::fs::write(
            scratch.join("nginx.conf"),
            format!(
                "daemon off;\nmaster_process off;\npid {s}/nginx.pid;\nerror_log {s}/error.log;\nevents {{}}\n\
                 http {{\n  include /etc/nginx/mime.types;\n  access_log off;\n\
                 client_body_temp_path {s}/body;\n  proxy_temp_path {s}/proxy;\n\
                 fastcgi_temp_path {s}/fastcgi;\n  uwsgi_temp_path {s}/uwsgi;\n\
                 scgi_temp_path {s}/scgi;\n  include {s}/web.conf;\n}}\n"
            ),
        )
        .expect("main config");
        let child = std::process::Command::new("nginx")
            .arg("-p")
            .arg(scratch)
            .arg("-c")
            .arg(scratch.join("nginx.conf"))
            .spawn()
            .expect("nginx runs (Debian's nginx-light; .ci/run installs it)");
        Nginx {
            child,
            base: format!("http://{addr}"),
        }
    }
}

/// Lays out what the consumers write: a site generation behind the `site` link, a release,
/// and the bookkeeping that must stay private. Readable by nginx's worker user.
fn served_store(root: &Path) {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let files = [
        (".site/gen-1/index.html", "<h1>Fedora Atomic Host</h1>"),
        (".site/gen-1/feed.atom", "<feed/>"),
        (
            "f43/releases/43.20261127.0/x86_64/CHECKSUM",
            "SHA256 (x) = 00",
        ),
        (".jobs/releaser/job.json", "{}"),
        ("f43/.locks/autotest-43.20261127.0.lock", ""),
        ("f43/.periods/2026-11-17T120000Z.json", "{}"),
    ];
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("directories");
        std::fs::write(path, text).expect("a store file");
    }
    symlink(".site/gen-1", root.join("site")).expect("the site link");
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() && !path.is_symlink() {
                dirs.push(path);
            }
        }
    }
}

#[tokio::test]
async fn the_web_server_serves_the_site_and_releases_and_hides_the_stores_bookkeeping() {
    let store = tempfile::tempdir().expect("store");
    let scratch = tempfile::tempdir().expect("nginx scratch");
    served_store(store.path());
    let nginx = Nginx::serve(store.path(), scratch.path());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let get = |path: &str| client.get(format!("{}{path}", nginx.base)).send();
    let mut up = false;
    for _ in 0..100 {
        if get("/site/").await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        up,
        "nginx did not answer; {}",
        std::fs::read_to_string(scratch.path().join("error.log")).unwrap_or_default()
    );

    let page = get("/site/").await.expect("the page");
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()["cache-control"],
        "no-cache",
        "the page is revalidated"
    );
    assert!(
        page.text()
            .await
            .expect("body")
            .contains("Fedora Atomic Host")
    );
    let feed = get("/site/feed.atom").await.expect("the feed");
    assert_eq!(feed.headers()["content-type"], "application/atom+xml");
    let root = get("/").await.expect("the root");
    assert_eq!(root.status(), 302);
    assert_eq!(root.headers()["location"], "/site/");
    let checksum = get("/f43/releases/43.20261127.0/x86_64/CHECKSUM")
        .await
        .expect("a release file");
    assert_eq!(checksum.status(), 200);
    assert_eq!(checksum.text().await.expect("body"), "SHA256 (x) = 00");

    for private in [
        "/.jobs/releaser/job.json",
        "/f43/.locks/autotest-43.20261127.0.lock",
        "/f43/.periods/2026-11-17T120000Z.json",
        "/.site/gen-1/index.html",
        "/f43/.periods/",
    ] {
        let response = get(private).await.expect("an answer");
        assert_eq!(response.status(), 404, "{private} is not served");
    }
}
