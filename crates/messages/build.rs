//! Compiles the checked-in `schemas/*.json` into the crate (`schema::checked_in`), so the
//! drift check and validation read the files other services read without any file I/O at
//! run time.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dir = manifest.join("../../schemas");
    // A directory: cargo reruns this script when any file in it changes, appears or goes.
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the schemas directory {}: {e}", dir.display()))
        .map(|entry| entry.expect("a readable schemas directory").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut code = String::from("&[\n");
    for path in files {
        let name = path.file_name().expect("a file").to_string_lossy();
        let path = std::fs::canonicalize(&path).expect("an existing schema file");
        let _ = writeln!(code, "    ({name:?}, include_str!({:?})),", path.display());
    }
    code.push_str("]\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    std::fs::write(out.join("checked_in.rs"), code).expect("OUT_DIR is writable");
}
