//! A job dies with the process that runs it, even by SIGKILL, and so does everything the job
//! started. The process that runs the job is this test binary again, started with
//! [`JOB_DIR`] set, so that the test can kill it as it would kill a consumer.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Set for the child copy of this test: run the job with its files in this directory.
const JOB_DIR: &str = "RUNNER_TEST_JOB_DIR";
const TEST: &str = "a_job_and_what_it_started_die_with_the_process_that_runs_it";
const DEADLINE: Duration = Duration::from_secs(30);

/// The job: a background grandchild that writes a heartbeat every 50 ms and records its pid,
/// like a recipe's `qemu-img`, and a script that waits for it.
const SCRIPT: &str = r#"(while :; do echo beat >> "$DIR/heartbeat"; sleep 0.05; done) &
echo $! > "$DIR/grandchild.pid"
echo $$ > "$DIR/job.pid"
wait"#;

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.split(") ")
        .nth(1)
        .is_some_and(|rest| !rest.starts_with('Z'))
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pid_in(file: &Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn heartbeats(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("heartbeat"))
        .unwrap_or_default()
        .lines()
        .count()
}

/// The child copy: runs the job until it is killed.
fn run_job(dir: &Path) {
    let job = runner::Job::new("/bin/sh", Duration::from_secs(3600))
        .arg("-c")
        .arg(SCRIPT)
        .env("DIR", dir);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let finished = runtime.block_on(runner::run(&job, &dir.join("job.log")));
    panic!("the job was to run until this process is killed: {finished:?}");
}

/// Kills what survived when the test fails, so a failure leaves no heartbeat loop behind.
struct Survivors(Vec<i32>);

impl Drop for Survivors {
    fn drop(&mut self) {
        for pid in self.0.iter().filter(|pid| alive(**pid)) {
            if let Some(pid) = rustix::process::Pid::from_raw(*pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

fn spawn_runner(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(JOB_DIR, dir)
        .spawn()
        .unwrap()
}

#[test]
fn a_job_and_what_it_started_die_with_the_process_that_runs_it() {
    if let Some(dir) = std::env::var_os(JOB_DIR) {
        return run_job(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut consumer = spawn_runner(dir.path());
    let grandchild_pid = dir.path().join("grandchild.pid");
    let job_pid = dir.path().join("job.pid");
    wait_until("the job started its grandchild", || {
        pid_in(&grandchild_pid).is_some() && pid_in(&job_pid).is_some()
    });
    let (grandchild, job) = (pid_in(&grandchild_pid).unwrap(), pid_in(&job_pid).unwrap());
    let _survivors = Survivors(vec![job, grandchild]);
    let beats = heartbeats(dir.path());
    wait_until("the grandchild writes heartbeats", || {
        heartbeats(dir.path()) > beats
    });

    consumer.kill().unwrap();
    consumer.wait().unwrap();
    wait_until("the job and its grandchild are gone", || {
        !alive(job) && !alive(grandchild)
    });
}
