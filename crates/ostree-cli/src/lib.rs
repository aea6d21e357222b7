//! The `ostree` commands Fortnight needs, run with [`Command`] and one argument per value:
//! never through a shell, and only with validated [`Ref`]s and [`Commit`]s, which cannot start
//! with `-` and so cannot be read as options.
//!
//! The commands are short (milliseconds on a local repo) and run synchronously; async callers
//! that may hit a slow network filesystem wrap them in `spawn_blocking`.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Lines, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use messages::{Commit, FileCounts, Ref};

mod sysroot;

pub use sysroot::{Deployment, OsName, RemoteName, Sysroot};

#[derive(Debug, thiserror::Error)]
pub enum OstreeError {
    #[error("cannot run `ostree {args}`: {source}; is ostree installed and on PATH?")]
    Spawn {
        args: String,
        source: std::io::Error,
    },
    #[error("`ostree {args}` failed ({status}): {stderr}")]
    Failed {
        args: String,
        status: String,
        stderr: String,
    },
    #[error("{kind} name {name:?} is not letters, digits, `-` and `_` (not first)")]
    Name { kind: &'static str, name: String },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`ostree {args}` printed {output:?}, which is not {expected}")]
    Parse {
        args: String,
        output: String,
        expected: &'static str,
    },
}

/// An OSTree repository on the local filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    path: PathBuf,
}

impl Repo {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `ostree ARGS --repo=PATH`; returns its trimmed stdout and the command line as
    /// shown in errors.
    fn run<I, S>(&self, args: I) -> Result<(String, String), OstreeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_in(args, None)
    }

    /// [`run`](Self::run), with only `env` in the environment when given: for commands that
    /// reach secrets (a signing key), so that the caller's own secrets stay with the caller.
    fn run_in<I, S>(
        &self,
        args: I,
        env: Option<&[(&str, &OsStr)]>,
    ) -> Result<(String, String), OstreeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (mut command, shown) = self.command(args);
        if let Some(env) = env {
            command.env_clear().envs(env.iter().copied());
        }
        output(command, shown)
    }

    /// `ostree ARGS --repo=PATH`, not started, and the command line as shown in errors.
    fn command<I, S>(&self, args: I) -> (Command, String)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        args.push(format!("--repo={}", self.path.display()).into());
        command(args)
    }

    /// `ostree init --mode=archive`: a repository to serve over HTTP (tests, the demo).
    pub fn init_archive(&self) -> Result<(), OstreeError> {
        self.run(["init", "--mode=archive"]).map(drop)
    }

    /// `ostree commit` of `tree` onto `branch` with string metadata (`version=...`).
    pub fn commit(
        &self,
        branch: &Ref,
        tree: &Path,
        metadata: &[(&str, &str)],
    ) -> Result<Commit, OstreeError> {
        self.commit_layers(Some(branch), None, tree, metadata)
    }

    /// [`commit`](Self::commit) of `tree` laid over the tree of `base`: only `tree`'s own
    /// files are read and checksummed, so files shared by many commits (a kernel) are
    /// checksummed once, when `base` was made ([`commit_orphan`](Self::commit_orphan)).
    pub fn commit_over(
        &self,
        branch: &Ref,
        base: &Commit,
        tree: &Path,
        metadata: &[(&str, &str)],
    ) -> Result<Commit, OstreeError> {
        self.commit_layers(Some(branch), Some(base), tree, metadata)
    }

    /// A commit of `tree` on no ref, for others to be laid over.
    pub fn commit_orphan(&self, tree: &Path) -> Result<Commit, OstreeError> {
        self.commit_layers(None, None, tree, &[])
    }

    fn commit_layers(
        &self,
        branch: Option<&Ref>,
        base: Option<&Commit>,
        tree: &Path,
        metadata: &[(&str, &str)],
    ) -> Result<Commit, OstreeError> {
        let mut args = vec![
            "commit".into(),
            match branch {
                Some(branch) => format!("--branch={branch}").into(),
                None => OsString::from("--orphan"),
            },
            "--subject=fortnight".into(),
        ];
        for (key, value) in metadata {
            args.push(OsString::from(format!(
                "--add-metadata-string={key}={value}"
            )));
        }
        let mut dir = OsString::from("--tree=dir=");
        dir.push(tree);
        args.extend(base.map(|base| OsString::from(format!("--tree=ref={base}"))));
        args.push(dir);
        let (out, shown) = self.run(&args)?;
        parse_commit(&out, &shown)
    }

    /// The commit a ref points at (`ostree rev-parse`); `None` when the ref does not exist.
    pub fn rev_parse(&self, tree_ref: &Ref) -> Result<Option<Commit>, OstreeError> {
        self.rev_parse_spec(tree_ref.as_str())
    }

    /// `ostree rev-parse REFSPEC`; `None` when it names no commit here.
    fn rev_parse_spec(&self, refspec: &str) -> Result<Option<Commit>, OstreeError> {
        match self.run(["rev-parse", refspec]) {
            Ok((out, shown)) => parse_commit(&out, &shown).map(Some),
            Err(OstreeError::Failed { stderr, .. }) if stderr.contains("not found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A string metadata key of a commit (`ostree show --print-metadata-key`); `None` when the
    /// commit has no such key.
    pub fn metadata_string(
        &self,
        commit: &Commit,
        key: &str,
    ) -> Result<Option<String>, OstreeError> {
        let args = [
            "show".to_owned(),
            format!("--print-metadata-key={key}"),
            commit.to_string(),
        ];
        match self.run(&args) {
            Ok((out, shown)) => parse_gvariant_string(&out)
                .map(Some)
                .ok_or(OstreeError::Parse {
                    args: shown,
                    output: out,
                    expected: "a quoted string",
                }),
            Err(OstreeError::Failed { stderr, .. }) if stderr.contains("No such metadata key") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Points `tree_ref` at `commit`, creating the ref if needed. Unlike `ostree reset`, which
    /// only moves an existing ref to an ancestor, this works for a release ref's first
    /// promotion and for a commit on another branch (`ostree refs --create --force`).
    pub fn set_ref(&self, tree_ref: &Ref, commit: &Commit) -> Result<(), OstreeError> {
        if self.rev_parse(tree_ref)?.as_ref() == Some(commit) {
            return Ok(());
        }
        self.run([
            "refs".to_owned(),
            "--force".to_owned(),
            format!("--create={tree_ref}"),
            commit.to_string(),
        ])
        .map(drop)
    }

    /// `ostree reset REF COMMIT`: moves an existing ref back to one of its ancestors.
    pub fn reset(&self, tree_ref: &Ref, commit: &Commit) -> Result<(), OstreeError> {
        self.run(["reset", tree_ref.as_str(), commit.as_str()])
            .map(drop)
    }

    /// Whether `ancestor` is `descendant` or in its parent chain, which makes moving a ref
    /// from `ancestor` to `descendant` a fast-forward. As cheap as
    /// [`commits_between`](Self::commits_between).
    pub fn is_ancestor(&self, ancestor: &Commit, descendant: &Commit) -> Result<bool, OstreeError> {
        Ok(self.commits_between(ancestor, descendant)?.is_some())
    }

    /// `ostree gpg-sign COMMIT KEY` with the keys of `gnupg_home`, run with only `env` in
    /// its environment (PATH, HOME, GNUPGHOME: what gpg needs). Each call adds a signature.
    /// `key` is a fingerprint (settings check it is hex), so it cannot be read as an option.
    pub fn gpg_sign(
        &self,
        commit: &Commit,
        key: &str,
        gnupg_home: &Path,
        env: &[(&str, &OsStr)],
    ) -> Result<(), OstreeError> {
        self.run_in(
            [
                OsStr::new("gpg-sign"),
                OsStr::new("--gpg-homedir"),
                gnupg_home.as_os_str(),
                OsStr::new(commit.as_str()),
                OsStr::new(key),
            ],
            Some(env),
        )
        .map(drop)
    }

    /// The commit that a release ref points at for `source`: `source`'s tree and metadata,
    /// `source` as its parent, bound to `release_ref` alone (`ostree.ref-binding`), so that a
    /// client pulling the release ref verifies the binding, and marked with
    /// [`RELEASE_OF`]. It takes `source`'s timestamp, so the same source and ref always give
    /// the same commit: making it again (a replay) writes nothing new, and the detached
    /// signatures of the commit stay.
    pub fn release_commit(
        &self,
        source: &Commit,
        release_ref: &Ref,
    ) -> Result<Commit, OstreeError> {
        self.commit_on_top(
            source,
            release_ref,
            &format!("Release {release_ref}"),
            &[(RELEASE_OF, source.as_str())],
        )
    }

    /// The end-of-life commit of `release_ref`, on top of `last`, the release it points at:
    /// the same tree, metadata (version, [`RELEASE_OF`]) and timestamp, plus [`ENDOFLIFE`]
    /// (`message`, which clients show their users) and, when given, [`ENDOFLIFE_REBASE`].
    /// `ostree admin upgrade` (`ostree-sysroot-upgrader.c`) reads the rebase value as a bare
    /// ref: it pulls that ref from the remote of the machine's origin and writes
    /// `<remote>:<rebase>` as the new origin, so `rebase` must be a ref of the same
    /// repository. Same inputs, same commit, like [`Repo::release_commit`].
    pub fn end_of_life_commit(
        &self,
        last: &Commit,
        release_ref: &Ref,
        message: &str,
        rebase: Option<&Ref>,
    ) -> Result<Commit, OstreeError> {
        let mut metadata = vec![(ENDOFLIFE, message)];
        if let Some(rebase) = rebase {
            metadata.push((ENDOFLIFE_REBASE, rebase.as_str()));
        }
        self.commit_on_top(
            last,
            release_ref,
            &format!("End of life of {release_ref}"),
            &metadata,
        )
    }

    /// A commit of `parent`'s tree with `parent` as its parent and `parent`'s timestamp,
    /// bound to `bound_to` alone, keeping `parent`'s metadata except its bindings and the
    /// keys `metadata` sets anew.
    fn commit_on_top(
        &self,
        parent: &Commit,
        bound_to: &Ref,
        subject: &str,
        metadata: &[(&str, &str)],
    ) -> Result<Commit, OstreeError> {
        let timestamp = self.timestamp(parent)?;
        let mut args: Vec<String> = vec![
            "commit".into(),
            "--orphan".into(),
            format!("--tree=ref={parent}"),
            format!("--parent={parent}"),
            format!("--timestamp={timestamp}"),
            format!("--subject={subject}"),
            format!("--bind-ref={bound_to}"),
        ];
        for (key, value) in metadata {
            args.push(format!("--add-metadata-string={key}={value}"));
        }
        for key in self.metadata_keys(parent)? {
            if !BINDINGS.contains(&key.as_str()) && !metadata.iter().any(|(k, _)| *k == key) {
                args.push(format!("--keep-metadata={key}"));
            }
        }
        let (out, shown) = self.run(&args)?;
        parse_commit(&out, &shown)
    }

    /// The commit a release commit was made from ([`Repo::release_commit`]); `commit` itself
    /// when it is no release commit (a release ref promoted before they existed).
    pub fn release_source(&self, commit: &Commit) -> Result<Commit, OstreeError> {
        match self.metadata_string(commit, RELEASE_OF)? {
            Some(text) => text.parse().map_err(|_| OstreeError::Parse {
                args: format!("show --print-metadata-key={RELEASE_OF} {commit}"),
                output: text,
                expected: "a commit checksum",
            }),
            None => Ok(commit.clone()),
        }
    }

    /// A commit's timestamp, as `ostree commit --timestamp` reads it (RFC 3339, UTC).
    fn timestamp(&self, commit: &Commit) -> Result<String, OstreeError> {
        let (out, shown) = self.run(["show", commit.as_str()])?;
        out.lines()
            .find_map(|line| line.strip_prefix("Date:"))
            .and_then(|date| {
                chrono::DateTime::parse_from_str(date.trim(), "%Y-%m-%d %H:%M:%S %z").ok()
            })
            .map(|date| {
                date.with_timezone(&chrono::Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            })
            .ok_or(OstreeError::Parse {
                args: shown,
                output: out,
                expected: "a commit with a `Date:` line",
            })
    }

    /// The keys of a commit's metadata (`ostree show --raw`).
    fn metadata_keys(&self, commit: &Commit) -> Result<Vec<String>, OstreeError> {
        let (out, shown) = self.run(["show", "--raw", commit.as_str()])?;
        let raw = out
            .lines()
            .skip_while(|l| !l.starts_with('('))
            .collect::<Vec<_>>()
            .join("\n");
        gvariant_top_keys(&raw).ok_or(OstreeError::Parse {
            args: shown,
            output: out,
            expected: "a commit variant starting with its metadata dictionary",
        })
    }

    /// `ostree remote add NAME URL`, kept when it exists: with `gpg_key` (an armored public
    /// key file) every pull from it checks the commits' signatures against that key alone;
    /// without, it checks none.
    pub fn add_remote(
        &self,
        name: &RemoteName,
        url: &str,
        gpg_key: Option<&Path>,
    ) -> Result<(), OstreeError> {
        let mut args: Vec<OsString> = vec!["remote".into(), "add".into(), "--if-not-exists".into()];
        match gpg_key {
            Some(key) => {
                let mut import = OsString::from("--gpg-import=");
                import.push(key);
                args.extend([import, "--set=gpg-verify=true".into()]);
            }
            None => args.push("--no-gpg-verify".into()),
        }
        args.extend([name.as_str().into(), url.into()]);
        self.run(&args).map(drop)
    }

    /// `ostree pull REMOTE REF`: the commit `tree_ref` points at on the remote, and its
    /// objects, checked as the remote's configuration says.
    pub fn pull(&self, remote: &RemoteName, tree_ref: &Ref) -> Result<(), OstreeError> {
        self.run(["pull", remote.as_str(), tree_ref.as_str()])
            .map(drop)
    }

    /// The commit this repository last pulled for `tree_ref` of `remote`; `None` when it
    /// pulled none.
    pub fn remote_head(
        &self,
        remote: &RemoteName,
        tree_ref: &Ref,
    ) -> Result<Option<Commit>, OstreeError> {
        self.rev_parse_spec(&format!("{remote}:{tree_ref}"))
    }

    /// `ostree summary -u`: regenerates the summary clients read to find refs.
    pub fn update_summary(&self) -> Result<(), OstreeError> {
        self.run(["summary", "-u"]).map(drop)
    }

    /// `ostree checkout --user-mode COMMIT DEST`: the commit's files at `dest` (new directory).
    pub fn checkout(&self, commit: &Commit, dest: &Path) -> Result<(), OstreeError> {
        self.run([
            OsStr::new("checkout"),
            OsStr::new("--user-mode"),
            OsStr::new(commit.as_str()),
            dest.as_os_str(),
        ])
        .map(drop)
    }

    /// `ostree checkout --user-mode --subpath=PATH COMMIT DEST`: only `path` (absolute in the
    /// tree) of the commit, at `dest` (a new directory). `false` when the commit has no such
    /// path: reading one directory of a tree never needs the whole tree on disk.
    pub fn checkout_subpath(
        &self,
        commit: &Commit,
        path: &str,
        dest: &Path,
    ) -> Result<bool, OstreeError> {
        let subpath = format!("--subpath={path}");
        match self.run([
            OsStr::new("checkout"),
            OsStr::new("--user-mode"),
            OsStr::new(&subpath),
            OsStr::new(commit.as_str()),
            dest.as_os_str(),
        ]) {
            Ok(_) => Ok(true),
            Err(OstreeError::Failed { stderr, .. }) if stderr.contains("No such file") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ostree diff FROM TO`, counted: files (and directories) added, modified and removed.
    pub fn diff_counts(&self, from: &Commit, to: &Commit) -> Result<FileCounts, OstreeError> {
        let (out, shown) = self.run(["diff", from.as_str(), to.as_str()])?;
        let mut counts = FileCounts::default();
        for line in out.lines().filter(|line| !line.trim().is_empty()) {
            let count = match line.split_whitespace().next() {
                Some("A") => &mut counts.added,
                Some("M") => &mut counts.modified,
                Some("D") => &mut counts.removed,
                _ => {
                    return Err(OstreeError::Parse {
                        args: shown,
                        output: line.to_owned(),
                        expected: "a line of `ostree diff` (A, M or D, then a path)",
                    });
                }
            };
            *count += 1;
        }
        Ok(counts)
    }

    /// How many commits lead from `from` to `to` along `to`'s parents: 0 when they are the
    /// same, `None` when `from` is not an ancestor of `to` (a forced release moved the ref
    /// sideways, or the history is not in the repository).
    ///
    /// Walks both parent chains (`ostree log`) one commit at a time, in step, and stops at
    /// the first commit that decides: `from` on `to`'s chain, or a commit both chains share
    /// below `from`, `to` included (the chains are linear, so `to`'s chain passed where `from`
    /// would have been). So it reads about twice the distance between the commits, or to
    /// where they branched, whatever the length of the history behind them; only commits with
    /// no shared history at all (or a `from` not in the repository) are read to the end of
    /// `to`'s.
    pub fn commits_between(&self, from: &Commit, to: &Commit) -> Result<Option<u64>, OstreeError> {
        if from == to {
            return Ok(Some(0));
        }
        let mut down = History::start(self, to)?;
        let mut up = History::start(self, from)?;
        let mut below_to = HashSet::new();
        let mut below_from = HashSet::new();
        let mut up_open = true;
        let mut steps = 0;
        while let Some(commit) = down.next_commit()? {
            if commit == from.as_str() {
                return Ok(Some(steps));
            }
            if below_from.contains(&commit) {
                return Ok(None);
            }
            below_to.insert(commit);
            steps += 1;
            if up_open {
                // `from`'s chain only bounds the search: where it ends or cannot be read (a
                // commit whose history was not pulled), `to`'s chain decides alone.
                match up.next_commit() {
                    Ok(Some(commit)) if below_to.contains(&commit) => return Ok(None),
                    Ok(Some(commit)) => {
                        below_from.insert(commit);
                    }
                    Ok(None) | Err(_) => up_open = false,
                }
            }
        }
        Ok(None)
    }
}

/// The parent chain of a commit, newest first, as `ostree log` prints it while walking it.
/// Only what is read is walked: dropping it kills the process.
struct History {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    shown: String,
}

impl History {
    fn start(repo: &Repo, commit: &Commit) -> Result<Self, OstreeError> {
        let (mut command, shown) = repo.command(["log", commit.as_str()]);
        let spawned = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(source) => {
                return Err(OstreeError::Spawn {
                    args: shown,
                    source,
                });
            }
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
            shown,
        })
    }

    /// The next commit of the chain; `None` past its oldest commit, or where the repository's
    /// history ends (`<< History beyond this commit not fetched >>`).
    fn next_commit(&mut self) -> Result<Option<String>, OstreeError> {
        for line in self.lines.by_ref() {
            let line = line.map_err(|source| OstreeError::Spawn {
                args: self.shown.clone(),
                source,
            })?;
            if let Some(commit) = line.strip_prefix("commit ") {
                return Ok(Some(commit.trim().to_owned()));
            }
        }
        let status = self.child.wait().map_err(|source| OstreeError::Spawn {
            args: self.shown.clone(),
            source,
        })?;
        if status.success() {
            return Ok(None);
        }
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        Err(OstreeError::Failed {
            args: self.shown.clone(),
            status: status.to_string(),
            stderr: stderr.trim().to_owned(),
        })
    }
}

impl Drop for History {
    fn drop(&mut self) {
        // Already reaped when read to the end; otherwise it is stopped mid-walk.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ostree ARGS`, not started, and the command line as shown in errors.
fn command(args: Vec<OsString>) -> (Command, String) {
    let shown = args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new("ostree");
    command.args(&args);
    (command, shown)
}

/// Runs `command` (`ostree <shown>`); its trimmed stdout, and `shown` for the caller's errors.
fn output(mut command: Command, shown: String) -> Result<(String, String), OstreeError> {
    let output = match command.output() {
        Ok(output) => output,
        Err(source) => {
            return Err(OstreeError::Spawn {
                args: shown,
                source,
            });
        }
    };
    if !output.status.success() {
        return Err(OstreeError::Failed {
            args: shown,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok((
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        shown,
    ))
}

/// The metadata key naming the commit a release commit was made from.
pub const RELEASE_OF: &str = "fortnight.release-of";
/// The metadata key whose text a client shows when its ref reached its end of life.
pub const ENDOFLIFE: &str = "ostree.endoflife";
/// The metadata key naming the ref a client moves to when its ref reached its end of life.
pub const ENDOFLIFE_REBASE: &str = "ostree.endoflife-rebase";
/// The metadata keys that bind a commit to refs: a release commit has its own.
const BINDINGS: [&str; 2] = ["ostree.ref-binding", "ostree.collection-binding"];

/// The keys of the dictionary that opens a commit variant as `ostree show --raw` prints it,
/// `({'version': <'43.1'>, ...}, ...)`: the strings at the dictionary's own depth that a `:`
/// follows. Strings are skipped whole, so brackets and quotes inside them do not count.
fn gvariant_top_keys(raw: &str) -> Option<Vec<String>> {
    let mut chars = raw.strip_prefix("({")?.chars().peekable();
    if chars.peek() == Some(&'}') {
        return Some(Vec::new());
    }
    let (mut keys, mut depth) = (Vec::new(), 0usize);
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                let mut text = String::new();
                loop {
                    match chars.next()? {
                        '\\' => text.push(chars.next()?),
                        q if q == c => break,
                        other => text.push(other),
                    }
                }
                if depth == 0 && chars.peek() == Some(&':') {
                    keys.push(text);
                }
            }
            '(' | '[' | '{' | '<' => depth += 1,
            ')' | ']' | '>' => depth = depth.checked_sub(1)?,
            '}' if depth == 0 => return Some(keys),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn parse_commit(out: &str, shown: &str) -> Result<Commit, OstreeError> {
    let last = out.lines().last().unwrap_or_default().trim();
    last.parse().map_err(|_| OstreeError::Parse {
        args: shown.to_owned(),
        output: out.to_owned(),
        expected: "a commit checksum",
    })
}

/// The text of a GVariant string as `ostree show` prints it (`'43.1'`, or `"it's"` when the
/// text holds a single quote). Escapes are not decoded: a value that needs them is refused
/// (versions never do).
fn parse_gvariant_string(out: &str) -> Option<String> {
    let inner = out
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| out.strip_prefix('"').and_then(|s| s.strip_suffix('"')))?;
    (!inner.contains('\\')).then(|| inner.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gvariant_strings() {
        assert_eq!(parse_gvariant_string("'43.1'").as_deref(), Some("43.1"));
        assert_eq!(parse_gvariant_string("\"it's\"").as_deref(), Some("it's"));
        assert_eq!(parse_gvariant_string("'a\\'b'"), None);
        assert_eq!(parse_gvariant_string("uint64 3"), None);
    }

    /// A chain of `count` commits on `branch`, oldest first.
    fn chain(repo: &Repo, dir: &Path, branch: &Ref, count: usize) -> Vec<Commit> {
        let tree = dir.join(format!("tree-{}", branch.as_str().replace('/', "-")));
        std::fs::create_dir_all(&tree).unwrap();
        (0..count)
            .map(|n| {
                std::fs::write(tree.join("n"), format!("{branch} {n}")).unwrap();
                repo.commit(branch, &tree, &[]).unwrap()
            })
            .collect()
    }

    /// Makes a commit object unreadable (a directory where its file was): `ostree log` of
    /// anything above it fails once it gets there.
    fn break_object(repo: &Repo, commit: &Commit) {
        let hex = commit.as_str();
        let object = repo
            .path()
            .join("objects")
            .join(&hex[..2])
            .join(format!("{}.commit", &hex[2..]));
        std::fs::remove_file(&object).unwrap();
        std::fs::create_dir(&object).unwrap();
    }

    #[test]
    fn ancestry_is_read_only_between_the_commits_not_from_the_history_behind_them() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::new(dir.path().join("repo"));
        repo.init_archive().unwrap();
        let main: Ref = "fedora/43/x86_64/atomic-host".parse().unwrap();
        let c = chain(&repo, dir.path(), &main, 7);
        let side: Ref = "fedora/43/x86_64/side".parse().unwrap();
        repo.set_ref(&side, &c[3]).unwrap();
        let b = chain(&repo, dir.path(), &side, 2);
        // Years of history behind c[2] stand for this one broken commit: a walk of the whole
        // log fails there, so every answer below was found without reaching it.
        break_object(&repo, &c[0]);

        assert!(repo.is_ancestor(&c[4], &c[6]).unwrap(), "two commits back");
        assert!(repo.is_ancestor(&c[5], &c[6]).unwrap(), "the parent");
        assert!(repo.is_ancestor(&c[6], &c[6]).unwrap(), "itself");
        assert!(!repo.is_ancestor(&c[6], &c[4]).unwrap(), "backwards");
        assert!(
            !repo.is_ancestor(&b[1], &c[6]).unwrap(),
            "a side branch from c3"
        );
        assert!(!repo.is_ancestor(&c[6], &b[1]).unwrap());
        assert!(repo.is_ancestor(&c[3], &b[1]).unwrap(), "the branch point");
        assert!(
            repo.is_ancestor(&c[1], &c[6]).unwrap(),
            "right above the broken commit"
        );
        assert_eq!(repo.commits_between(&c[4], &c[6]).unwrap(), Some(2));
        assert_eq!(repo.commits_between(&c[3], &b[1]).unwrap(), Some(2));
        assert_eq!(repo.commits_between(&b[1], &c[6]).unwrap(), None);
        let missing: Commit = "ab".repeat(32).parse().unwrap();
        assert!(
            matches!(
                repo.is_ancestor(&missing, &c[6]),
                Err(OstreeError::Failed { .. })
            ),
            "with nothing to bound it, the walk reaches the broken commit and says so"
        );
        assert!(matches!(
            repo.is_ancestor(&c[4], &missing),
            Err(OstreeError::Failed { .. })
        ));
    }

    #[test]
    fn gvariant_dictionary_keys() {
        let raw = "({'version': <'43.1'>, 'ostree.ref-binding': <['a/b']>, 'odd': <'x}: <y'>, \
                   'nested': <{'inner': <1>}>}, @ay [], [])";
        assert_eq!(
            gvariant_top_keys(raw).unwrap(),
            ["version", "ostree.ref-binding", "odd", "nested"]
        );
        assert_eq!(
            gvariant_top_keys("({}, @ay [])").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(gvariant_top_keys("commit abc"), None);
    }

    /// An archive repository and an OS tree to commit, both under `dir`, and the branch the
    /// tree is committed on.
    fn archive_with_tree(dir: &std::path::Path) -> (Repo, std::path::PathBuf, Ref) {
        let repo = Repo::new(dir.join("repo"));
        repo.init_archive().unwrap();
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
        std::fs::write(tree.join("usr/lib/os-release"), "NAME=Fedora\n").unwrap();
        let branch: Ref = "fedora/43/x86_64/atomic-host".parse().unwrap();
        (repo, tree, branch)
    }

    #[test]
    fn a_release_commit_is_bound_to_the_release_ref_and_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, tree, branch) = archive_with_tree(dir.path());
        let source = repo.commit(&branch, &tree, &[("version", "43.1")]).unwrap();
        let release: Ref = "fedora/43/x86_64/stable".parse().unwrap();

        let made = repo.release_commit(&source, &release).unwrap();
        assert_ne!(made, source);
        assert_eq!(
            repo.release_commit(&source, &release).unwrap(),
            made,
            "made once"
        );
        assert_eq!(repo.release_source(&made).unwrap(), source);
        assert_eq!(repo.release_source(&source).unwrap(), source);
        assert_eq!(
            repo.metadata_string(&made, "version").unwrap().as_deref(),
            Some("43.1")
        );
        assert!(repo.is_ancestor(&source, &made).unwrap());
        let (binding, _) = repo
            .run([
                "show",
                "--print-metadata-key=ostree.ref-binding",
                made.as_str(),
            ])
            .unwrap();
        assert_eq!(binding, format!("['{release}']"));
        assert_eq!(
            repo.timestamp(&made).unwrap(),
            repo.timestamp(&source).unwrap()
        );
        let other: Ref = "fedora/43/x86_64/testing".parse().unwrap();
        assert_ne!(repo.release_commit(&source, &other).unwrap(), made);
    }

    #[test]
    fn an_end_of_life_commit_is_the_last_release_plus_the_message_and_the_rebase() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, tree, branch) = archive_with_tree(dir.path());
        let source = repo.commit(&branch, &tree, &[("version", "43.1")]).unwrap();
        let release: Ref = "fedora/43/x86_64/stable".parse().unwrap();
        let last = repo.release_commit(&source, &release).unwrap();
        let next: Ref = "fedora/44/x86_64/stable".parse().unwrap();
        let message = "Fedora 43 has reached end of life; this machine moves to fedora/44";

        let eol = repo
            .end_of_life_commit(&last, &release, message, Some(&next))
            .unwrap();
        assert_eq!(
            repo.end_of_life_commit(&last, &release, message, Some(&next))
                .unwrap(),
            eol,
            "made once"
        );
        assert!(repo.is_ancestor(&last, &eol).unwrap(), "a fast-forward");
        assert_eq!(
            repo.diff_counts(&last, &eol).unwrap(),
            FileCounts::default()
        );
        assert_eq!(
            repo.timestamp(&eol).unwrap(),
            repo.timestamp(&last).unwrap()
        );
        let key = |key: &str| repo.metadata_string(&eol, key).unwrap();
        assert_eq!(key(ENDOFLIFE).as_deref(), Some(message));
        assert_eq!(key(ENDOFLIFE_REBASE).as_deref(), Some(next.as_str()));
        assert_eq!(key("version").as_deref(), Some("43.1"));
        assert_eq!(repo.release_source(&eol).unwrap(), source);
        let (binding, _) = repo
            .run([
                "show",
                "--print-metadata-key=ostree.ref-binding",
                eol.as_str(),
            ])
            .unwrap();
        assert_eq!(binding, format!("['{release}']"));

        let alone = repo
            .end_of_life_commit(&last, &release, message, None)
            .unwrap();
        assert_ne!(alone, eol);
        assert_eq!(
            repo.metadata_string(&alone, ENDOFLIFE_REBASE).unwrap(),
            None
        );
    }

    #[test]
    fn a_commit_over_a_base_has_both_trees_and_its_own_files_win() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, tree, branch) = archive_with_tree(dir.path());
        let base_tree = dir.path().join("base");
        std::fs::create_dir_all(base_tree.join("usr/lib/modules/6.1")).unwrap();
        std::fs::write(base_tree.join("usr/lib/modules/6.1/vmlinuz"), "kernel").unwrap();
        std::fs::write(base_tree.join("usr/lib/os-release"), "NAME=base\n").unwrap();
        let base = repo.commit_orphan(&base_tree).unwrap();
        assert_eq!(
            repo.rev_parse(&branch).unwrap(),
            None,
            "the base is on no ref"
        );

        let commit = repo
            .commit_over(&branch, &base, &tree, &[("version", "43.1")])
            .unwrap();
        assert_eq!(repo.rev_parse(&branch).unwrap(), Some(commit.clone()));
        assert_eq!(
            repo.metadata_string(&commit, "version").unwrap().as_deref(),
            Some("43.1")
        );
        let out = dir.path().join("checkout");
        repo.checkout(&commit, &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("usr/lib/modules/6.1/vmlinuz")).unwrap(),
            "kernel"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("usr/lib/os-release")).unwrap(),
            "NAME=Fedora\n"
        );
    }

    #[test]
    fn real_repo_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, tree, branch) = archive_with_tree(dir.path());
        let first = repo.commit(&branch, &tree, &[("version", "43.1")]).unwrap();
        std::fs::write(tree.join("usr/lib/os-release"), "NAME=Fedora\nVERSION=2\n").unwrap();
        let second = repo.commit(&branch, &tree, &[("version", "43.2")]).unwrap();
        assert_eq!(repo.rev_parse(&branch).unwrap(), Some(second.clone()));
        assert_eq!(
            repo.metadata_string(&first, "version").unwrap().as_deref(),
            Some("43.1")
        );
        assert_eq!(repo.metadata_string(&first, "nope").unwrap(), None);

        let release: Ref = "fedora/43/x86_64/stable".parse().unwrap();
        assert_eq!(repo.rev_parse(&release).unwrap(), None);
        repo.set_ref(&release, &second).unwrap();
        assert_eq!(repo.rev_parse(&release).unwrap(), Some(second.clone()));
        repo.set_ref(&release, &first).unwrap();
        assert_eq!(repo.rev_parse(&release).unwrap(), Some(first.clone()));
        repo.reset(&branch, &first).unwrap();
        assert_eq!(repo.rev_parse(&branch).unwrap(), Some(first.clone()));
        repo.update_summary().unwrap();
        assert!(repo.path().join("summary").exists());

        let out = dir.path().join("checkout");
        repo.checkout(&first, &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("usr/lib/os-release")).unwrap(),
            "NAME=Fedora\n"
        );

        assert_eq!(repo.commits_between(&first, &second).unwrap(), Some(1));
        assert_eq!(repo.commits_between(&second, &second).unwrap(), Some(0));
        assert_eq!(repo.commits_between(&second, &first).unwrap(), None);
        assert_eq!(
            repo.diff_counts(&first, &second).unwrap(),
            FileCounts {
                added: 0,
                modified: 1,
                removed: 0
            }
        );
        let part = dir.path().join("part");
        assert!(repo.checkout_subpath(&first, "/usr/lib", &part).unwrap());
        assert!(part.join("os-release").is_file());
        assert!(
            !part.join("usr").exists(),
            "only the subpath is checked out"
        );
        let none = dir.path().join("none");
        assert!(
            !repo
                .checkout_subpath(&first, "/usr/share/rpm", &none)
                .unwrap()
        );
    }
}
