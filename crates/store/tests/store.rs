//! The store against a real filesystem: atomicity, exactly-once promotion, locks, containment
//! and disk-full behaviour.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};

use messages::{Arch, Format, Stream, Version};
use store::{
    FileName, ImageWriter, Store, Tier, checksum, hash_file, link_tree, with_lock, write_atomic,
};

fn ids() -> (Stream, Version, Arch, Format) {
    (
        "f43".parse().unwrap(),
        "43.20261127.0".parse().unwrap(),
        "x86_64".parse().unwrap(),
        "qcow2".parse().unwrap(),
    )
}

/// Names in `dir` other than `keep`: anything left behind by a write.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

#[test]
fn image_writer_digest_matches_sha256sum_and_checksum_file() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let (stream, version, arch, format) = ids();
    let path = store.image_path(&stream, &version, &arch, &format);
    let mut writer = ImageWriter::create(&path).unwrap();
    let chunk: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
    for _ in 0..3 {
        writer.write_all(&chunk).unwrap();
    }
    assert!(!path.exists(), "image visible before finish");
    let digest = writer.finish().unwrap();
    assert_eq!(digest.size, 9 << 20);
    assert_eq!(hash_file(&path).unwrap(), digest);
    let out = Command::new("sha256sum").arg(&path).output().unwrap();
    let expected = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        expected.split_whitespace().next().unwrap(),
        digest.sha256.as_str()
    );

    let name = Store::image_file_name(&stream, &version, &arch, &format);
    let checksum_path = store.checksum_path(&stream, &version, &arch);
    checksum::write(
        &checksum_path,
        &BTreeMap::from([(name.clone(), digest.sha256.clone())]),
    )
    .unwrap();
    let text = fs::read_to_string(&checksum_path).unwrap();
    assert_eq!(
        text,
        format!(
            "SHA256 (f43-43.20261127.0.x86_64.qcow2) = {}\n",
            digest.sha256
        )
    );
    assert_eq!(
        checksum::read(&checksum_path).unwrap()[&name],
        digest.sha256
    );
    assert_eq!(
        leftovers(path.parent().unwrap(), &[name.as_str(), "CHECKSUM"]),
        Vec::<String>::new()
    );
}

#[test]
fn dropped_image_writer_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("images").join("x.qcow2");
    let mut writer = ImageWriter::create(&path).unwrap();
    writer.write_all(&[7; 4096]).unwrap();
    drop(writer);
    assert_eq!(
        leftovers(&root.path().join("images"), &[]),
        Vec::<String>::new()
    );
}

#[test]
fn rewrite_replaces_whole_file_and_readers_never_see_a_mix() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("build.json");
    let (a, b) = (vec![b'a'; 1 << 20], vec![b'b'; 1 << 19]);
    write_atomic(&path, &a).unwrap();
    let reader = {
        let path = path.clone();
        std::thread::spawn(move || {
            for _ in 0..2000 {
                let seen = fs::read(&path).unwrap();
                let whole_a = seen.len() == 1 << 20 && seen.iter().all(|&c| c == b'a');
                let whole_b = seen.len() == 1 << 19 && seen.iter().all(|&c| c == b'b');
                assert!(whole_a || whole_b, "torn read of {} bytes", seen.len());
            }
        })
    };
    for i in 0..200 {
        write_atomic(&path, if i % 2 == 0 { &b } else { &a }).unwrap();
    }
    reader.join().unwrap();
    assert_eq!(
        leftovers(root.path(), &["build.json"]),
        Vec::<String>::new()
    );
}

#[test]
fn promotion_happens_exactly_once_among_racing_threads() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let (stream, version, ..) = ids();
    fs::create_dir_all(store.version_dir(&stream, &version)).unwrap();
    let barrier = Arc::new(Barrier::new(16));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (store, stream, version, barrier) = (
                store.clone(),
                stream.clone(),
                version.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                store
                    .promote(&stream, &version, Tier::PassedAutotest)
                    .unwrap()
            })
        })
        .collect();
    let created = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|&c| c)
        .count();
    assert_eq!(created, 1);
    let link = store
        .tier_dir(&stream, Tier::PassedAutotest)
        .join(version.as_str());
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("../all/43.20261127.0")
    );
    assert!(link.is_dir(), "link resolves to the version directory");
    assert_eq!(
        store.list_versions(&stream, Tier::PassedAutotest).unwrap(),
        vec![version]
    );
}

#[test]
fn demotion_removes_only_the_link_and_only_once() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let (stream, version, ..) = ids();
    let version_dir = store.version_dir(&stream, &version);
    fs::create_dir_all(&version_dir).unwrap();
    fs::write(version_dir.join("kept"), "the candidate itself").unwrap();
    assert!(
        !store
            .demote(&stream, &version, Tier::PassedAutotest)
            .unwrap(),
        "nothing to remove"
    );

    store
        .promote(&stream, &version, Tier::PassedAutotest)
        .unwrap();
    assert!(
        store
            .demote(&stream, &version, Tier::PassedAutotest)
            .unwrap()
    );
    assert!(!store.in_tier(&stream, &version, Tier::PassedAutotest));
    assert!(
        !store
            .demote(&stream, &version, Tier::PassedAutotest)
            .unwrap(),
        "a replay changes nothing"
    );
    assert!(
        version_dir.join("kept").exists(),
        "the candidate is untouched"
    );
    assert!(
        store
            .promote(&stream, &version, Tier::PassedAutotest)
            .unwrap(),
        "a later pass promotes it again"
    );

    // A real directory under a tier's name is not a link this may remove.
    let squatter = store
        .tier_dir(&stream, Tier::PassedHuman)
        .join(version.as_str());
    fs::create_dir_all(&squatter).unwrap();
    let error = store
        .demote(&stream, &version, Tier::PassedHuman)
        .unwrap_err();
    assert!(
        error.to_string().contains(&squatter.display().to_string()),
        "{error}"
    );
    assert!(squatter.is_dir());
}

#[test]
fn with_lock_serialises_read_modify_write() {
    let root = tempfile::tempdir().unwrap();
    let counter = root.path().join("counter");
    let lock = root.path().join(".locks").join("counter.lock");
    write_atomic(&counter, b"0").unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (counter, lock) = (counter.clone(), lock.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    with_lock(&lock, || {
                        let n: u32 = fs::read_to_string(&counter).unwrap().parse().unwrap();
                        std::thread::yield_now();
                        write_atomic(&counter, (n + 1).to_string().as_bytes())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    assert_eq!(fs::read_to_string(&counter).unwrap(), "200");
}

#[test]
fn link_tree_hard_links_and_is_idempotent() {
    let root = tempfile::tempdir().unwrap();
    let src = root.path().join("src");
    fs::create_dir_all(src.join("x86_64/images")).unwrap();
    write_atomic(&src.join("x86_64/images/a.qcow2"), b"image").unwrap();
    std::os::unix::fs::symlink("x86_64", src.join("current")).unwrap();
    let dst = root.path().join("releases").join("43.1");
    assert!(link_tree(&src, &dst).unwrap());
    let (a, b) = (
        fs::metadata(src.join("x86_64/images/a.qcow2")).unwrap(),
        fs::metadata(dst.join("x86_64/images/a.qcow2")).unwrap(),
    );
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "hard link, not a copy"
    );
    assert_eq!(
        fs::read_link(dst.join("current")).unwrap(),
        Path::new("x86_64")
    );
    assert!(
        !link_tree(&src, &dst).unwrap(),
        "second promotion changes nothing"
    );
    assert_eq!(
        leftovers(&root.path().join("releases"), &["43.1"]),
        Vec::<String>::new()
    );
}

#[test]
fn latest_release_link_is_replaced_atomically() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let stream: Stream = "f43".parse().unwrap();
    assert_eq!(store.current_release(&stream).unwrap(), None);
    for v in ["43.1", "43.2"] {
        let version: Version = v.parse().unwrap();
        fs::create_dir_all(store.release_dir(&stream, &version)).unwrap();
        store.set_latest_release(&stream, &version).unwrap();
        assert_eq!(store.current_release(&stream).unwrap(), Some(version));
    }
    let releases = store.tier_dir(&stream, Tier::Releases);
    assert_eq!(
        store.list_versions(&stream, Tier::Releases).unwrap().len(),
        2
    );
    let mut names = leftovers(&releases, &[]);
    names.sort();
    assert_eq!(names, ["43.1", "43.2", "latest"]);
}

#[test]
fn resolve_keeps_message_paths_inside_the_root() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let ok = store.resolve("f43/all/43.1/x86_64/images/a.qcow2").unwrap();
    assert_eq!(ok, root.path().join("f43/all/43.1/x86_64/images/a.qcow2"));
    for bad in [
        "../etc/passwd",
        "/etc/passwd",
        "f43/../../x",
        "f43/.built/x",
        "",
        "a/$(id)",
        "a/-rf",
    ] {
        let err = store.resolve(bad).unwrap_err();
        assert!(!err.is_retryable(), "{bad}: {err}");
    }
    assert!("..".parse::<FileName>().is_err());
}

/// A 1 MiB tmpfs: a real full disk, which only root may mount.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(options: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Self(dir))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn disk_full_is_retryable_names_the_path_and_leaves_nothing() {
    let Some(disk) = SmallDisk::mount("size=1m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let store = Store::open(disk.0.path()).unwrap();
    let (stream, version, arch, format) = ids();
    let path = store.image_path(&stream, &version, &arch, &format);
    let mut writer = ImageWriter::create(&path).unwrap();
    let result = writer
        .write_all(&vec![1; 4 << 20])
        .and_then(|()| writer.finish().map(|_| ()));
    let err = result.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("f43-43.20261127.0.x86_64.qcow2"),
        "{err}"
    );
    assert_eq!(leftovers(path.parent().unwrap(), &[]), Vec::<String>::new());
    let err = write_atomic(
        &store.build_json_path(&stream, &version, &arch),
        &vec![0; 2 << 20],
    )
    .unwrap_err();
    assert!(
        err.is_retryable() && err.to_string().contains("build.json"),
        "{err}"
    );
    assert_eq!(
        leftovers(&store.arch_dir(&stream, &version, &arch), &["images"]),
        Vec::<String>::new()
    );
}

#[test]
fn read_only_store_is_retryable_and_names_the_path() {
    let Some(disk) = SmallDisk::mount("size=1m,ro") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let err = write_atomic(&disk.0.path().join("tests.json"), b"{}").unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains(&disk.0.path().display().to_string()),
        "{err}"
    );
}
