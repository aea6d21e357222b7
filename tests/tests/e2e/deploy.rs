//! The deployment files hold together: every manifest parses, every consumer is deployed with
//! health probes on the port its configuration serves them on, and every configuration they
//! ship loads with the project's own loader.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value;
use settings::Settings;
use tests::container::Containerfile;

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

pub(crate) fn deploy() -> PathBuf {
    repo().join("deploy")
}

/// Every service a deployment runs: the registry's queue consumers and the release timer.
pub(crate) fn consumers() -> BTreeSet<String> {
    registry::names()
        .into_iter()
        .chain([registry::RELEASE_TIMER])
        .map(str::to_owned)
        .collect()
}

/// The crates under `consumers/`.
fn consumer_crates() -> BTreeSet<String> {
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

#[test]
fn every_consumer_crate_is_registered_and_so_deployed() {
    assert_eq!(
        consumer_crates(),
        consumers(),
        "a crate under consumers/ is in crates/registry (or is the release timer)"
    );
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

/// The image's build stage compiles the workspace from what it copies in: the members, and
/// `schemas/`, which the messages crate compiles in (`crates/messages/build.rs`).
#[test]
fn the_build_stage_copies_everything_the_workspace_compiles_from() {
    let containerfile =
        std::fs::read_to_string(deploy().join("Containerfile")).expect("deploy/Containerfile");
    for dir in ["crates", "consumers", "tests", "schemas"] {
        assert!(
            containerfile.contains(&format!("\nCOPY {dir} {dir}\n")),
            "the build stage does not copy {dir}/"
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
    let containerfile = Containerfile::read();
    let text = &containerfile.text;
    let programs = containerfile.programs();
    for binary in consumers().iter().map(String::as_str).chain(["fortnight"]) {
        assert!(
            programs.iter().any(|p| p == binary),
            "the image builds {binary}"
        );
    }
    let build = text
        .lines()
        .find(|l| l.trim_start().starts_with("cargo build"))
        .expect("the build stage runs cargo build");
    assert!(
        build.contains("$PROGRAMS"),
        "the build stage compiles PROGRAMS: {build}"
    );
    assert!(
        programs.iter().any(|p| p == "fortnight-job"),
        "the image ships fortnight-job, which the consumers look for beside them"
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
