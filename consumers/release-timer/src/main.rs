//! `release-timer`: publishes the two-week ticks until SIGTERM or SIGINT.

use std::process::ExitCode;

fn main() -> ExitCode {
    bus::service_main(release_timer::NAME, release_timer::run)
}
