//! `fortnight-job PARENT_PID PROGRAM [ARG...]`: runs PROGRAM for the process PARENT_PID (a
//! consumer, through `runner::run`) and kills its own process group, which holds PROGRAM and
//! everything PROGRAM started, as soon as that process is gone, however it died. Otherwise
//! it exits as PROGRAM did. The crate doc of `runner` says why this is a program of its own.

use std::ffi::OsString;
use std::process::{Command, ExitCode, ExitStatus};

use rustix::event::{PollFd, PollFlags, poll};
use rustix::io::Errno;
use rustix::process::{
    Pid, PidfdFlags, Signal, getpid, getppid, kill_current_process_group, kill_process, pidfd_open,
};

/// sysexits' EX_USAGE.
const EXIT_USAGE: u8 = 64;
/// What a shell answers for a program it cannot run.
const EXIT_CANNOT_RUN: u8 = 127;

const USAGE: &str = "usage: fortnight-job PARENT_PID PROGRAM [ARG...]";

fn main() -> ExitCode {
    if matches!(
        std::env::args_os()
            .nth(1)
            .as_deref()
            .and_then(|a| a.to_str()),
        Some("-h" | "--help")
    ) {
        println!(
            "{USAGE}\n\nRuns PROGRAM for the consumer PARENT_PID and kills PROGRAM's process group when that consumer dies."
        );
        return ExitCode::SUCCESS;
    }
    let mut args = std::env::args_os().skip(1);
    let parent = args
        .next()
        .and_then(|arg| arg.to_str()?.parse::<i32>().ok())
        .and_then(Pid::from_raw);
    let (Some(parent), Some(program)) = (parent, args.next()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(EXIT_USAGE);
    };
    match supervise(parent, &program, args.collect()) {
        Ok(status) => exit_like(status),
        Err(reason) => {
            eprintln!("fortnight-job: {reason}");
            ExitCode::from(EXIT_CANNOT_RUN)
        }
    }
}

/// Runs `program` until it exits, or until `parent` does, which ends this process too.
fn supervise(parent: Pid, program: &OsString, args: Vec<OsString>) -> Result<ExitStatus, String> {
    let named = program.to_string_lossy();
    // Opened before checking that `parent` is still this process's parent: a death after the
    // check shows on the pidfd, a death before it made someone else the parent.
    let parent_fd = pidfd_open(parent, PidfdFlags::empty())
        .ok()
        .filter(|_| getppid() == Some(parent))
        .ok_or_else(|| {
            format!("process {parent} that asked for {named} is gone; {named} not started")
        })?;
    let mut child = Command::new(program).args(args).spawn().map_err(|e| {
        format!("cannot start {named}: {e}; check that it exists and is executable")
    })?;
    let child_pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
    let Some(child_fd) = child_pid.and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok()) else {
        eprintln!("fortnight-job: cannot watch {named}; stopping it");
        abandon();
    };
    loop {
        let mut fds = [
            PollFd::new(&parent_fd, PollFlags::IN),
            PollFd::new(&child_fd, PollFlags::IN),
        ];
        match poll(&mut fds, None) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => {
                eprintln!("fortnight-job: cannot wait for {named}: {e}; stopping it");
                abandon();
            }
        }
        if !fds[0].revents().is_empty() {
            eprintln!("fortnight-job: process {parent} is gone; stopping {named}");
            abandon();
        }
        if !fds[1].revents().is_empty() {
            return child
                .wait()
                .map_err(|e| format!("cannot collect {named}'s exit status: {e}"));
        }
    }
}

/// Kills this process group: the job, everything it started, and this supervisor.
fn abandon() -> ! {
    let _ = kill_current_process_group(Signal::KILL);
    // Only reached if a process cannot kill its own group, which the kernel always allows.
    std::process::exit(i32::from(EXIT_CANNOT_RUN));
}

/// Ends this process the way the job ended: its exit status, or killed by a signal.
fn exit_like(status: ExitStatus) -> ExitCode {
    match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)),
        None => {
            let _ = kill_process(getpid(), Signal::KILL);
            ExitCode::FAILURE
        }
    }
}
