//! The probe as a process, for tests that kill or signal a consumer mid-step.

fn main() -> std::process::ExitCode {
    bus::consumer_main(tests::probe::Probe::from_env)
}
