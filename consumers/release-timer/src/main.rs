//! `release-timer`: publishes the two-week ticks until SIGTERM or SIGINT.

use std::process::ExitCode;

fn main() -> ExitCode {
    bus::clock_main(release_timer::Ticks::new)
}
