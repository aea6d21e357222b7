//! `releaser`: the two-week release step as a queue consumer.

use std::process::ExitCode;

fn main() -> ExitCode {
    bus::consumer_main(releaser::Releaser::new)
}
