//! `karma-tracker`: the human-testing gate as a queue consumer.

use std::process::ExitCode;

fn main() -> ExitCode {
    bus::consumer_main(karma_tracker::KarmaTracker::new)
}
