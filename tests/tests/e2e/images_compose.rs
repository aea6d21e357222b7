//! Compose mode: a finished pungi compose's images, listed in its `metadata/images.json`, are
//! taken into the store from a real HTTP server on 127.0.0.1 or from a local path, and
//! verified against the listed checksums.

use crate::images_support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use images_support::*;
use messages::{ImageBuildFailed, ImageBuilt, PungiComposeOstree, PungiComposeStatusChange};
use store::Store;
use tests::config::toml;
use tests::{eventually, free_port, http_get};

const REF_X86: &str = "fortnight/test/x86_64/atomic-host";

/// `python3 -m http.server` on a loopback port, killed on drop.
struct HttpServer {
    child: Child,
    addr: std::net::SocketAddr,
}

impl HttpServer {
    async fn serve(dir: &Path) -> Self {
        let addr = free_port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(addr.port().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let up = eventually(WAIT, || http_get(addr, "/").is_some()).await;
        assert!(up, "the HTTP server never answered on {addr}");
        Self { child, addr }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lays out `<root>/<id>/compose` the way pungi does, with a real qcow2 and an images.json
/// that claims `claimed_sha256` (the real digest when `None`). Returns the compose directory
/// and the image's path.
fn make_compose(root: &Path, id: &str, claimed_sha256: Option<&str>) -> (PathBuf, PathBuf) {
    let compose = root.join(id).join("compose");
    let relative = format!("AtomicHost/x86_64/images/Fedora-AtomicHost-{id}.x86_64.qcow2");
    let image = compose.join(&relative);
    std::fs::create_dir_all(image.parent().unwrap()).unwrap();
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("64M")
        .status()
        .unwrap();
    assert!(made.success());
    let real = sha256(&image);
    let images = serde_json::json!({
        "header": { "type": "productmd.images", "version": "1.2" },
        "payload": {
            "compose": { "id": id, "date": "20261127", "respin": 0, "type": "nightly" },
            "images": { "AtomicHost": { "x86_64": [ {
                "arch": "x86_64", "bootable": false, "disc_count": 1, "disc_number": 1,
                "format": "qcow2", "type": "qcow2", "subvariant": "AtomicHost",
                "implant_md5": null, "mtime": 0, "volume_id": null,
                "path": relative,
                "size": std::fs::metadata(&image).unwrap().len(),
                "checksums": { "sha256": claimed_sha256.unwrap_or(&real) },
            } ] } },
        },
    });
    std::fs::create_dir_all(compose.join("metadata")).unwrap();
    std::fs::write(compose.join("metadata/images.json"), images.to_string()).unwrap();
    (compose, image)
}

fn finished(id: &str, location: String) -> PungiComposeStatusChange {
    PungiComposeStatusChange {
        compose_id: id.to_owned(),
        location,
        status: "FINISHED".to_owned(),
    }
}

/// An image-builder for stream `cmp`, which takes x86_64 images from `Fortnight-Test-` composes.
async fn compose_builder(work: &Work) -> (tests::TestBus, tests::Watch, tests::Running) {
    let stream = StreamConfig {
        name: "cmp",
        arches: &[("x86_64", REF_X86)],
        repo: work.repo.path(),
        formats: &["qcow2"],
        recipes: Vec::new(),
        suite: None,
        extra: toml! {
            compose_variant = "AtomicHost"
            compose_id_prefix = "Fortnight-Test-"
        },
    };
    builder_only(stream.config()).await
}

#[tokio::test]
async fn compose_images_are_fetched_or_linked_verified_and_a_mismatch_is_refused() {
    let work = Work::new();
    let commit = work.commit(REF_X86, "43.20261127.0", GOOD_TREE);
    let (bus, mut watch, builder) = compose_builder(&work).await;
    let composes = work.dir.path().join("composes");
    let server = HttpServer::serve(&{
        std::fs::create_dir_all(&composes).unwrap();
        composes.clone()
    })
    .await;
    let store = Store::open(bus.store_root()).unwrap();

    // Over HTTP, checksum right.
    let (_, served) = make_compose(&composes, "Fortnight-Test-20261127.n.0", None);
    let url = format!("http://{}/Fortnight-Test-20261127.n.0/compose", server.addr);
    publish(&bus, &finished("Fortnight-Test-20261127.n.0", url)).await;
    let seen = watch.wait_for(1, WAIT).await.to_vec();
    let built: Vec<ImageBuilt> = bodies(&seen);
    assert_eq!(built.len(), 1, "{seen:?}");
    let b = &built[0];
    assert_eq!(b.version.as_str(), "Fortnight-Test-20261127.n.0");
    assert_eq!(b.compose_id.as_deref(), Some("Fortnight-Test-20261127.n.0"));
    assert_eq!(b.tree.commit, commit, "images tied to the stream's tree");
    let stored = store.resolve(&b.images[0].path).unwrap();
    assert_eq!(sha256(&stored), sha256(&served));
    assert_eq!(b.images[0].sha256.as_str(), sha256(&served));

    // Over HTTP, images.json claims another digest: refused, nothing in the store.
    let wrong = "0".repeat(64);
    make_compose(&composes, "Fortnight-Test-20261127.n.1", Some(&wrong));
    let url = format!("http://{}/Fortnight-Test-20261127.n.1/compose", server.addr);
    publish(&bus, &finished("Fortnight-Test-20261127.n.1", url)).await;
    let seen = watch.wait_for(2, WAIT).await.to_vec();
    let failed: Vec<ImageBuildFailed> = bodies(&seen);
    assert_eq!(failed.len(), 1, "{seen:?}");
    let f = &failed[0];
    assert!(
        f.reason.contains("checksum mismatch") && f.reason.contains(&wrong),
        "{}",
        f.reason
    );
    let version = f.version.clone().unwrap();
    let arch_dir = store.arch_dir(&f.stream, &version, &f.arch);
    assert_eq!(
        entries(&arch_dir),
        ["logs"],
        "a refused image leaves only the log"
    );

    // From a local path: hard-linked, not copied.
    let (compose, local) = make_compose(&composes, "Fortnight-Test-20261127.n.2", None);
    publish(
        &bus,
        &finished("Fortnight-Test-20261127.n.2", compose.display().to_string()),
    )
    .await;
    let seen = watch.wait_for(3, WAIT).await.to_vec();
    let built: Vec<ImageBuilt> = bodies(&seen);
    let b = built
        .iter()
        .find(|b| b.version.as_str() == "Fortnight-Test-20261127.n.2")
        .expect("built from the local compose");
    let (a, s) = (
        std::fs::metadata(&local).unwrap(),
        std::fs::metadata(store.resolve(&b.images[0].path).unwrap()).unwrap(),
    );
    assert_eq!(
        (a.dev(), a.ino()),
        (s.dev(), s.ino()),
        "hard link into the store"
    );

    builder.stop().await;
    watch.close().await;
    drop(server);
    bus.cleanup().await;
}

#[tokio::test]
async fn compose_images_are_tied_to_the_commit_the_composes_tree_message_named() {
    const COMPOSE: &str = "Fortnight-Test-20261128.n.0";
    let work = Work::new();
    let composed = work.commit(REF_X86, "43.20261128.0", GOOD_TREE);
    let (bus, mut watch, builder) = compose_builder(&work).await;
    let store = Store::open(bus.store_root()).unwrap();
    let cmp: messages::Stream = "cmp".parse().unwrap();
    let compose: messages::Version = COMPOSE.parse().unwrap();
    let x86: messages::Arch = "x86_64".parse().unwrap();

    // Mid-compose, pungi announces the tree it committed: recorded, nothing built from it.
    let tree = PungiComposeOstree {
        arch: "x86_64".to_owned(),
        ostree_ref: REF_X86.to_owned(),
        commitid: Some(composed.to_string()),
        variant: Some("AtomicHost".to_owned()),
        compose_id: Some(COMPOSE.to_owned()),
        location: None,
        repo_path: None,
        local_repo_path: None,
    };
    publish(&bus, &tree).await;
    let recorded = store.compose_tree_path(&cmp, &compose, &x86);
    assert!(
        eventually(WAIT, || recorded.exists()).await,
        "the compose's tree was never recorded at {}",
        recorded.display()
    );

    // The next nightly moves the input ref before this compose finishes.
    let later = work.commit(REF_X86, "43.20261129.0", GOOD_TREE);
    assert_ne!(later, composed);
    let (compose_dir, _) = make_compose(work.dir.path(), COMPOSE, None);
    publish(&bus, &finished(COMPOSE, compose_dir.display().to_string())).await;
    let seen = watch.wait_for(1, WAIT).await.to_vec();
    let built: Vec<ImageBuilt> = bodies(&seen);
    assert_eq!(
        built.len(),
        1,
        "the first result is the compose's images, not a recipe build of the tree: {seen:?}"
    );
    assert_eq!(
        built[0].tree.commit, composed,
        "tied to the commit pungi named, not the input ref's current one"
    );
    assert!(
        !store
            .version_dir(&cmp, &"43.20261128.0".parse().unwrap())
            .exists(),
        "no recipe build was attempted for the tree"
    );

    finish([builder], watch, bus).await;
}
