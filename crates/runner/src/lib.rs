//! Runs the external programs Fortnight does not write itself: build recipes and test
//! commands. Values travel as separate arguments and environment variables, never through a
//! shell string. The program runs in its own process group so that a timeout or a cancelled
//! step kills everything it started (a recipe's `qemu-img`, a test's `qemu-system`), not only
//! the script at the top.
//!
//! A job does not inherit the consumer's environment, which holds the broker URL with its
//! password (`FORTNIGHT_AMQP_URL`) and whatever else the service manager put there, while a
//! job's output is published as its log. It starts from an empty environment plus
//! [`INHERITED`] and then what the job sets.
//!
//! A consumer that dies (SIGKILL, the OOM killer, a crash) cannot kill anything, so each job
//! runs under [`SUPERVISOR`], `fortnight-job`, a small program shipped next to the consumer
//! binaries: it leads the job's process group, watches this process through a pidfd, and
//! kills the whole group the moment this process is gone; otherwise it exits as the job did.
//! Linux's parent-death signal alone (`setpriv --pdeathsig`, or `prctl` before exec, which
//! needs `unsafe`) would not do: it reaches only the direct child, never what the recipe
//! started, and it fires when the spawning *thread* exits, not the process. A pidfd is
//! readable only once the whole process has exited (Linux 5.3 or later). When `fortnight-job`
//! is not installed, jobs run unsupervised and a warning says so once.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create log file {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {program}: {source}; check that it exists and is executable")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot wait for {program}: {source}")]
    Wait {
        program: PathBuf,
        source: std::io::Error,
    },
}

/// The variables a job takes from the consumer's environment, besides every `LC_*`:
/// - `PATH`, so recipes and tests find `ostree`, `qemu-img`, `mke2fs` by name;
/// - `HOME`, because tools keep caches and settings there and some fail without it;
/// - `LANG`, `LANGUAGE` (and `LC_*`), the language and encoding of the output in the logs;
/// - `TZ`, so times in the logs read as the consumer's own.
///
/// Anything else a job needs comes from its configuration (`recipe_env`, a test's `env`).
pub const INHERITED: &[&str] = &["PATH", "HOME", "LANG", "LANGUAGE", "TZ"];

fn inherited(vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    vars.filter(|(key, _)| {
        key.to_str()
            .is_some_and(|key| INHERITED.contains(&key) || key.starts_with("LC_"))
    })
    .collect()
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Added to the [`INHERITED`] variables, later entries winning.
    pub env: Vec<(String, OsString)>,
    pub cwd: Option<PathBuf>,
    pub timeout: Duration,
}

impl Job {
    pub fn new(program: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            timeout,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs<K, V>(mut self, vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<OsString>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    /// Killed by a signal it did not get from us.
    Signalled,
    /// Still running at the timeout; killed with its whole process group.
    TimedOut,
}

impl Ending {
    pub fn success(self) -> bool {
        self == Ending::Exited(0)
    }

    /// A short phrase for reasons and logs: `exit status 2`, `timed out after 30s`.
    pub fn describe(self, timeout: Duration) -> String {
        match self {
            Ending::Exited(code) => format!("exit status {code}"),
            Ending::Signalled => "killed by a signal".to_owned(),
            Ending::TimedOut => format!("timed out after {}s", timeout.as_secs()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub ending: Ending,
    pub duration: Duration,
}

/// Kills the process group when dropped: on timeout, after a normal exit (stray background
/// children), and when the future running the job is cancelled.
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // ESRCH (group already gone) is the usual case and fine.
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

/// The supervisor's file name; it is looked for next to the running program.
pub const SUPERVISOR: &str = "fortnight-job";

/// Where [`SUPERVISOR`] is: next to the running program, where the image installs it, or one
/// directory up, for test binaries, which cargo puts in `target/<profile>/deps/`.
fn supervisor() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let exe = std::env::current_exe().unwrap_or_default();
            let found = exe
                .ancestors()
                .skip(1)
                .take(2)
                .map(|dir| dir.join(SUPERVISOR))
                .find(|path| path.is_file());
            if found.is_none() {
                tracing::warn!(program = %exe.display(), "{SUPERVISOR} is not installed next to this program; jobs run unsupervised and outlive this process if it is killed; install it beside the consumer binaries");
            }
            found
        })
        .as_deref()
}

/// A program given by path must exist and be executable. Checked here because the supervisor,
/// not this process, starts it, and a missing recipe should still be an error naming it.
fn check_program(program: &Path) -> std::io::Result<()> {
    if !program.is_absolute() {
        return Ok(());
    }
    let metadata = std::fs::metadata(program)?;
    if metadata.is_file() && metadata.permissions().mode() & 0o111 != 0 {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "not an executable file",
        ))
    }
}

/// Runs `job` with stdout and stderr written to `log` (created or truncated), stdin empty.
pub async fn run(job: &Job, log: &Path) -> Result<Finished, RunError> {
    let log_error = |source| RunError::Log {
        path: log.to_owned(),
        source,
    };
    let spawn_error = |source| RunError::Spawn {
        program: job.program.clone(),
        source,
    };
    check_program(&job.program).map_err(spawn_error)?;
    let out = File::create(log).map_err(log_error)?;
    let err = out.try_clone().map_err(log_error)?;
    let mut command = match supervisor() {
        Some(supervisor) => {
            let mut command = tokio::process::Command::new(supervisor);
            command
                .arg(std::process::id().to_string())
                .arg(&job.program);
            command
        }
        None => tokio::process::Command::new(&job.program),
    };
    command
        .args(&job.args)
        .env_clear()
        .envs(inherited(std::env::vars_os()))
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &job.cwd {
        command.current_dir(dir);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(spawn_error)?;
    let _group = GroupGuard(child.id().and_then(|id| Pid::from_raw(id as i32)));
    let ending = match tokio::time::timeout(job.timeout, child.wait()).await {
        Ok(status) => ending_of(status.map_err(|source| RunError::Wait {
            program: job.program.clone(),
            source,
        })?),
        Err(_elapsed) => Ending::TimedOut,
    };
    Ok(Finished {
        ending,
        duration: started.elapsed(),
    })
}

fn ending_of(status: ExitStatus) -> Ending {
    status.code().map_or(Ending::Signalled, Ending::Exited)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Job {
        Job::new("/bin/sh", timeout).arg("-c").arg(script)
    }

    #[tokio::test]
    async fn captures_output_and_exit_status_and_passes_env_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let hostile = "$(touch pwned); `id`; rm -rf /";
        let job = sh(
            "printf '%s\\n' \"$VALUE\"; echo err >&2; exit 3",
            Duration::from_secs(10),
        )
        .env("VALUE", hostile)
        .cwd(dir.path());
        let done = run(&job, &log).await.unwrap();
        assert_eq!(done.ending, Ending::Exited(3));
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("{hostile}\nerr\n")
        );
        assert!(!dir.path().join("pwned").exists());
    }

    #[tokio::test]
    async fn the_job_sees_only_the_allow_list_and_its_own_variables() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let done = run(
            &Job::new("/usr/bin/env", Duration::from_secs(10))
                .envs([("SET_BY_JOB", "1"), ("PATH", "/usr/bin:/bin")])
                .env("SET_BY_JOB", "2"),
            &log,
        )
        .await
        .unwrap();
        assert!(done.ending.success());
        let output = std::fs::read_to_string(&log).unwrap();
        let names: Vec<&str> = output
            .lines()
            .filter_map(|line| line.split('=').next())
            .collect();
        for name in &names {
            assert!(
                INHERITED.contains(name) || name.starts_with("LC_") || *name == "SET_BY_JOB",
                "{name} leaked into the job: {output}"
            );
        }
        assert!(output.contains("SET_BY_JOB=2\n"), "{output}");
        assert!(output.contains("PATH=/usr/bin:/bin\n"), "{output}");
        // What makes the loop above mean something: this process has CARGO_* variables (cargo
        // sets them for tests), and none of them reached the job.
        assert!(std::env::vars().any(|(k, _)| k.starts_with("CARGO")));
    }

    #[test]
    fn the_allow_list_keeps_locale_and_drops_secrets() {
        let vars = [
            ("PATH", "/bin"),
            ("LC_ALL", "C.UTF-8"),
            ("FORTNIGHT_AMQP_URL", "amqp://u:secret@host/"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept: Vec<String> = inherited(vars.into_iter())
            .into_iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(kept, ["PATH", "LC_ALL"]);
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        // The grandchild records its pid, then both would sleep far past the timeout.
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let done = run(
            &sh(&script, Duration::from_millis(500)),
            &dir.path().join("log"),
        )
        .await
        .unwrap();
        assert_eq!(done.ending, Ending::TimedOut);
        assert!(done.duration < Duration::from_secs(60));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        // The killed grandchild is reaped by init; poll until its /proc entry is gone or a zombie.
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let alive = state
                .split(") ")
                .nth(1)
                .is_some_and(|rest| !rest.starts_with('Z'));
            if !alive {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "grandchild {pid} survived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = run(
            &Job::new("/nonexistent/recipe", Duration::from_secs(1)),
            &dir.path().join("log"),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/recipe"), "{err}");
    }
}
