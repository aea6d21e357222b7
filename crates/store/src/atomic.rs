//! Writes that a reader never sees half-done: write to a temporary file in the destination's
//! directory, fsync it, rename it over the destination, fsync the directory. A temporary file
//! left by a crash starts with `.tmp` and is never listed by the readers.
//!
//! Whatever the process umask, files appear with [`FILE_MODE`] and the directories the store
//! creates with [`DIR_MODE`]: the web server runs as its own user and must read them.

use std::fs::{self, File, Permissions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use messages::Sha256;
use serde::Serialize;
use sha2::{Digest, Sha256 as Hasher};
use tempfile::NamedTempFile;

use crate::error::{Result, StoreError};

/// Large enough that hashing, not syscalls, dominates; small enough to stay in L2/L3 cache.
const CHUNK: usize = 1 << 20;

/// The parent of `path`, or an error naming it (every store path has one).
fn parent(path: &Path) -> Result<&Path> {
    path.parent().ok_or_else(|| StoreError::Io {
        op: "find the directory of",
        path: path.to_owned(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })
}

/// The mode of every file the store writes: readable by the web server's user.
pub const FILE_MODE: u32 = 0o644;
/// The mode of every directory the store creates: listable by the web server's user.
pub const DIR_MODE: u32 = 0o755;

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, Permissions::from_mode(mode))
        .map_err(StoreError::io("set the permissions of", path))
}

/// Creates `dir` and its missing parents with [`DIR_MODE`]. Directories that already exist
/// keep their mode: the root may be a mount point its administrator set up.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(up) = dir.parent() {
        create_dir_all(up)?;
    }
    match fs::create_dir(dir) {
        // mkdir's mode passes through the umask; chmod does not.
        Ok(()) => set_mode(dir, DIR_MODE),
        // Another writer created it in the meantime, and sets its mode itself.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(StoreError::io("create directory", dir)(e)),
    }
}

/// The entries of `dir`; none when it does not exist.
pub fn list_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<io::Result<_>>()
            .map_err(StoreError::io("list", dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io("list", dir)(e)),
    }
}

/// Makes a rename or link in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("sync directory", dir))
}

/// A temporary file in `dir` with [`FILE_MODE`] (tempfile creates it 0600), so the file is
/// readable from the moment it is renamed into place.
fn temp_in(dir: &Path) -> Result<NamedTempFile> {
    create_dir_all(dir)?;
    let temp =
        NamedTempFile::new_in(dir).map_err(StoreError::io("create a temporary file in", dir))?;
    temp.as_file()
        .set_permissions(Permissions::from_mode(FILE_MODE))
        .map_err(StoreError::io("set the permissions of", temp.path()))?;
    Ok(temp)
}

fn persist(temp: NamedTempFile, path: &Path) -> Result<()> {
    temp.as_file()
        .sync_all()
        .map_err(StoreError::io("sync", temp.path()))?;
    temp.persist(path).map_err(|e| StoreError::Io {
        op: "rename a temporary file to",
        path: path.to_owned(),
        source: e.error,
    })?;
    sync_dir(parent(path)?)
}

/// Atomically replaces `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut temp = temp_in(parent(path)?)?;
    temp.write_all(bytes)
        .map_err(StoreError::io("write", path))?;
    persist(temp, path)
}

/// Atomically replaces `path` with `value` as pretty JSON followed by a newline.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Json {
        path: path.to_owned(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads `path` as JSON; `None` when the file does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StoreError::Json {
            path: path.to_owned(),
            source,
        })
}

/// Size and SHA-256 of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    pub size: u64,
    pub sha256: Sha256,
}

fn digest_of(hasher: Hasher, size: u64) -> Digested {
    Digested {
        size,
        // 64 lowercase hex digits by construction.
        sha256: format!("{:x}", hasher.finalize())
            .parse()
            .unwrap_or_else(|_| unreachable!("sha256 hex is always valid")),
    }
}

/// Reads `path` once and returns its size and SHA-256.
pub fn hash_file(path: &Path) -> Result<Digested> {
    let mut file = File::open(path).map_err(StoreError::io("open", path))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StoreError::io("read", path)(e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(digest_of(hasher, size))
}

/// The temporary file under an [`ImageWriter`], hashing every byte that reaches the disk.
struct Hashing {
    temp: NamedTempFile,
    hasher: Hasher,
    size: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.temp.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// Streams an image into the store, computing its SHA-256 while it is written. Nothing is
/// visible at the destination until [`ImageWriter::finish`]; dropping the writer (an error, a
/// panic, a cancelled download) removes the temporary file.
pub struct ImageWriter {
    inner: BufWriter<Hashing>,
    dest: PathBuf,
}

impl std::fmt::Debug for ImageWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageWriter")
            .field("dest", &self.dest)
            .finish()
    }
}

impl ImageWriter {
    /// Starts writing the file that will become `dest`.
    pub fn create(dest: &Path) -> Result<Self> {
        let temp = temp_in(parent(dest)?)?;
        Ok(Self {
            inner: BufWriter::with_capacity(
                CHUNK,
                Hashing {
                    temp,
                    hasher: Hasher::new(),
                    size: 0,
                },
            ),
            dest: dest.to_owned(),
        })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner
            .write_all(bytes)
            .map_err(StoreError::io("write", &self.dest))
    }

    /// Copies everything from `reader` into the image.
    pub fn copy_from(&mut self, reader: &mut impl Read) -> Result<u64> {
        io::copy(reader, &mut self.inner).map_err(StoreError::io("write", &self.dest))
    }

    fn flush(&mut self) -> Result<()> {
        self.inner
            .flush()
            .map_err(StoreError::io("write", &self.dest))
    }

    /// Makes the image durable and visible at its destination; returns its size and digest.
    pub fn finish(mut self) -> Result<Digested> {
        self.flush()?;
        let Hashing { temp, hasher, size } = self
            .inner
            .into_inner()
            .map_err(|e| StoreError::io("write", &self.dest)(e.into_error()))?;
        persist(temp, &self.dest)?;
        Ok(digest_of(hasher, size))
    }
}

/// Renames a finished file (written under a hidden name in the same filesystem, e.g. by a
/// build recipe in a staging directory) to `dest` and makes the rename durable. A file that
/// others cannot read (a recipe's 0600 output) gets [`FILE_MODE`] first; one that they can is
/// left alone, because it may be a hard link to a compose's file that belongs to someone else.
pub fn move_into_place(from: &Path, dest: &Path) -> Result<()> {
    let dir = parent(dest)?;
    create_dir_all(dir)?;
    let mode = fs::metadata(from)
        .map_err(StoreError::io("inspect", from))?
        .permissions()
        .mode();
    if mode & 0o004 == 0 {
        set_mode(from, FILE_MODE)?;
    }
    fs::rename(from, dest).map_err(StoreError::io("rename into", dest))?;
    sync_dir(dir)
}

/// Creates the symlink `link -> target` only if nothing is at `link` yet. Returns whether
/// this call created it: `symlink(2)` is atomic and exclusive, so among any number of
/// concurrent callers (threads, processes, replicas on a shared filesystem) exactly one gets
/// `true`.
pub fn symlink_once(target: &Path, link: &Path) -> Result<bool> {
    let dir = parent(link)?;
    create_dir_all(dir)?;
    match std::os::unix::fs::symlink(target, link) {
        Ok(()) => {
            sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(StoreError::io("create symlink", link)(e)),
    }
}

/// Removes the symlink `link` if it is there; returns whether this call removed it. Refuses,
/// changing nothing, when `link` is a real file or directory: a tier holds only links.
pub fn remove_symlink(link: &Path) -> Result<bool> {
    match fs::symlink_metadata(link) {
        Ok(meta) if meta.file_type().is_symlink() => {}
        Ok(_) => {
            return Err(StoreError::io("remove the promotion link", link)(
                io::Error::new(io::ErrorKind::InvalidInput, "not a symlink"),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(StoreError::io("inspect", link)(e)),
    }
    match fs::remove_file(link) {
        Ok(()) => {
            sync_dir(parent(link)?)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("remove symlink", link)(e)),
    }
}

/// Points `link` at `target`, replacing whatever link was there in one rename, so a reader
/// sees either the old target or the new one.
pub fn symlink_replace(target: &Path, link: &Path) -> Result<()> {
    let dir = parent(link)?;
    create_dir_all(dir)?;
    // A name no other writer uses: the temporary file's own, freed for the symlink.
    let temp = temp_in(dir)?.into_temp_path();
    let temp_name = temp.to_path_buf();
    temp.close().map_err(StoreError::io("remove", &temp_name))?;
    std::os::unix::fs::symlink(target, &temp_name)
        .map_err(StoreError::io("create symlink", &temp_name))?;
    if let Err(e) = fs::rename(&temp_name, link) {
        let _ = fs::remove_file(&temp_name);
        return Err(StoreError::io("rename a symlink to", link)(e));
    }
    sync_dir(dir)
}

/// Hard-links every file under `src` into a new directory `dst` (directories are created,
/// symlinks are recreated). The tree is assembled under a temporary name and renamed into
/// place, so `dst` appears complete or not at all; its cost depends on the number of files,
/// not their size. Returns `false`, changing nothing, when `dst` already exists (a replayed
/// promotion).
pub fn link_tree(src: &Path, dst: &Path) -> Result<bool> {
    if fs::symlink_metadata(dst).is_ok() {
        return Ok(false);
    }
    let dir = parent(dst)?;
    create_dir_all(dir)?;
    let temp = tempfile::Builder::new()
        .prefix(".tmp-link")
        .tempdir_in(dir)
        .map_err(StoreError::io("create a temporary directory in", dir))?;
    // tempfile makes it 0700; it becomes `dst`, which the web server lists.
    set_mode(temp.path(), DIR_MODE)?;
    link_into(src, temp.path())?;
    let temp_path = temp.keep();
    match fs::rename(&temp_path, dst) {
        Ok(()) => {}
        // Another replica finished the same promotion first: theirs stands.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
            ) =>
        {
            let _ = fs::remove_dir_all(&temp_path);
            return Ok(false);
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&temp_path);
            return Err(StoreError::io("rename a linked tree to", dst)(e));
        }
    }
    sync_dir(dir)?;
    Ok(true)
}

fn link_into(src: &Path, dst: &Path) -> Result<()> {
    for entry in fs::read_dir(src).map_err(StoreError::io("list", src))? {
        let entry = entry.map_err(StoreError::io("list", src))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry.file_type().map_err(StoreError::io("stat", &from))?;
        if kind.is_dir() {
            fs::create_dir(&to).map_err(StoreError::io("create directory", &to))?;
            set_mode(&to, DIR_MODE)?;
            link_into(&from, &to)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&from).map_err(StoreError::io("read symlink", &from))?;
            std::os::unix::fs::symlink(target, &to)
                .map_err(StoreError::io("create symlink", &to))?;
        } else {
            fs::hard_link(&from, &to).map_err(StoreError::io("hard-link", &to))?;
        }
    }
    Ok(())
}
