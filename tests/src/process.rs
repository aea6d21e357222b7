//! Child processes and blocking waits, for tests that drive binaries rather than a runtime.

use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

/// Long enough for a slow CI machine; every wait polls a condition and stops early.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Polls `condition` every 100 ms; fails the test naming `what` after [`DEADLINE`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `child` to exit; kills it and fails the test after [`DEADLINE`].
pub fn wait_child(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `command` to the end; fails the test with its output unless it succeeded.
pub fn run_ok(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert_success(&output, what);
    output
}

/// Fails the test with the command's status and output unless it succeeded.
pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Whether `pid` is a live process: neither gone nor a zombie waiting to be reaped.
pub fn alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.split(") ")
        .nth(1)
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// The pid a process wrote into `file`, once it has.
pub fn pid_in(file: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The directory of the workspace's binaries in the running test's profile, with `programs`
/// built there first: `cargo test` builds only the binaries an integration test of their own
/// package runs, and a test that runs the deployed programs needs them all, and current.
pub fn built_binaries(programs: &[&str]) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // A test binary is target/<profile>/deps/<test>-<hash>.
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("the test binary is in <target>/<profile>/deps")
        .to_owned();
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace");
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    build.current_dir(workspace).args(["build", "--workspace"]);
    if dir.file_name().is_some_and(|profile| profile == "release") {
        build.arg("--release");
    }
    for program in programs {
        build.args(["--bin", program]);
    }
    run_ok(&mut build, "cargo build of the programs a test runs");
    for program in programs {
        assert!(
            dir.join(program).is_file(),
            "{program} is not in {} after cargo build",
            dir.display()
        );
    }
    dir
}
