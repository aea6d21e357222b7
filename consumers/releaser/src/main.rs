//! `releaser`: the two-week release step as a queue consumer, with the clock that watches
//! its signing deadlines.

use std::process::ExitCode;

fn main() -> ExitCode {
    bus::consumer_with_clock_main(|settings| {
        releaser::Releaser::new(settings)
            .map(|step| (step.clone(), releaser::deadlines::Deadlines::new(step)))
    })
}
