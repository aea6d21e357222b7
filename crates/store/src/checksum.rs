//! `CHECKSUM` files in Fedora's format: one `SHA256 (name) = <hex>` line per file.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use messages::Sha256;

use crate::atomic::write_atomic;
use crate::error::{Result, StoreError};
use crate::names::FileName;

/// Renders the lines of a CHECKSUM file, sorted by name.
pub fn render(entries: &BTreeMap<FileName, Sha256>) -> String {
    entries
        .iter()
        .map(|(name, sha)| format!("SHA256 ({name}) = {sha}\n"))
        .collect()
}

/// Atomically writes `path` with one line per entry.
pub fn write(path: &Path, entries: &BTreeMap<FileName, Sha256>) -> Result<()> {
    write_atomic(path, render(entries).as_bytes())
}

/// Parses a CHECKSUM file. Blank lines and `#` comments (which Fedora's files carry) are
/// skipped; any other line that is not `SHA256 (name) = <hex>` is an error naming it.
pub fn parse(path: &Path, text: &str) -> Result<BTreeMap<FileName, Sha256>> {
    let mut entries = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || StoreError::Checksum {
            path: path.to_owned(),
            line: index + 1,
            text: line.chars().take(200).collect(),
        };
        let rest = line.strip_prefix("SHA256 (").ok_or_else(bad)?;
        let (name, hex) = rest.rsplit_once(") = ").ok_or_else(bad)?;
        let name: FileName = name.parse().map_err(|_| bad())?;
        let sha: Sha256 = hex.parse().map_err(|_| bad())?;
        entries.insert(name, sha);
    }
    Ok(entries)
}

/// Reads and parses `path`; an empty map when it does not exist.
pub fn read(path: &Path) -> Result<BTreeMap<FileName, Sha256>> {
    match fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(StoreError::io("read", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let sha: Sha256 = "a".repeat(64).parse().unwrap();
        let mut entries = BTreeMap::new();
        entries.insert("img.qcow2".parse().unwrap(), sha.clone());
        let text = render(&entries);
        assert_eq!(text, format!("SHA256 (img.qcow2) = {sha}\n"));
        assert_eq!(
            parse(Path::new("C"), &format!("# comment\n{text}\n")).unwrap(),
            entries
        );
        for bad in ["MD5 (x) = 00", "SHA256 (../x) = aa", "SHA256 (x) = zz"] {
            let err = parse(Path::new("C"), bad).unwrap_err();
            assert!(err.to_string().contains("line 1"), "{err}");
        }
    }
}
