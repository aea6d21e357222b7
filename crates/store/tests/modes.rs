//! What each writer leaves on disk is readable by a web server running as another user,
//! whatever the writer's umask. A test binary of its own: the umask is process-wide.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use messages::{Arch, Format, Stream, Version};
use rustix::fs::Mode;
use store::{
    DIR_MODE, FILE_MODE, ImageWriter, Store, checksum, link_tree, move_into_place, write_atomic,
    write_json,
};

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn assert_mode(path: &Path, expected: u32) {
    assert_eq!(
        mode(path),
        expected,
        "{} has mode {:o}, expected {expected:o}",
        path.display(),
        mode(path)
    );
}

#[test]
fn every_writer_leaves_world_readable_files_and_directories_under_a_strict_umask() {
    rustix::process::umask(Mode::from_raw_mode(0o077));
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("store");
    let store = Store::open(&root).unwrap();
    assert_mode(&root, DIR_MODE);
    let stream: Stream = "f43".parse().unwrap();
    let version: Version = "43.20261127.0".parse().unwrap();
    let arch: Arch = "x86_64".parse().unwrap();
    let format: Format = "qcow2".parse().unwrap();

    let image = store.image_path(&stream, &version, &arch, &format);
    let mut writer = ImageWriter::create(&image).unwrap();
    writer.write_all(b"qcow2").unwrap();
    let digest = writer.finish().unwrap();
    let sums = checksum::write(
        &store.checksum_path(&stream, &version, &arch),
        &BTreeMap::from([(
            Store::image_file_name(&stream, &version, &arch, &format),
            digest.sha256,
        )]),
    );
    sums.unwrap();
    let log = store.build_log_path(&stream, &version, &arch);
    write_atomic(&log, b"built\n").unwrap();
    write_json(&store.tests_json_path(&stream, &version, &arch), &[1]).unwrap();
    let marker = store.periods_dir(&stream).join("2026-11-17T120000Z.json");
    write_json(&marker, &[1]).unwrap();

    // A recipe's output, as a umask of 077 (or a careful recipe) leaves it.
    let staged = scratch.path().join("store/f43/raw.xz");
    fs::write(&staged, b"raw").unwrap();
    fs::set_permissions(&staged, fs::Permissions::from_mode(0o600)).unwrap();
    let raw = store.image_path(&stream, &version, &arch, &"raw.xz".parse().unwrap());
    move_into_place(&staged, &raw).unwrap();

    let release = store.release_arch_dir(&stream, &version, &arch);
    assert!(link_tree(&store.arch_dir(&stream, &version, &arch), &release).unwrap());

    for file in [
        image.clone(),
        store.checksum_path(&stream, &version, &arch),
        log,
        store.tests_json_path(&stream, &version, &arch),
        marker.clone(),
        raw,
        release.join("images").join(image.file_name().unwrap()),
        release.join("images/CHECKSUM"),
    ] {
        assert_mode(&file, FILE_MODE);
    }
    for dir in [
        store.stream_dir(&stream),
        store.arch_dir(&stream, &version, &arch),
        store.images_dir(&stream, &version, &arch),
        store.logs_dir(&stream, &version, &arch),
        store.periods_dir(&stream),
        store.release_dir(&stream, &version),
        release.clone(),
        release.join("images"),
    ] {
        assert_mode(&dir, DIR_MODE);
    }
}

#[test]
fn a_world_readable_file_moved_into_place_keeps_its_mode() {
    // A compose's image is hard-linked into staging and may belong to another user, so the
    // store must not try to change what is already readable.
    let scratch = tempfile::tempdir().unwrap();
    let from = scratch.path().join(".staged");
    fs::write(&from, b"image").unwrap();
    fs::set_permissions(&from, fs::Permissions::from_mode(0o444)).unwrap();
    let dest = scratch.path().join("images/image.qcow2");
    move_into_place(&from, &dest).unwrap();
    assert_mode(&dest, 0o444);
    assert_mode(&scratch.path().join("images"), DIR_MODE);
}
