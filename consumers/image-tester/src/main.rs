use std::process::ExitCode;

fn main() -> ExitCode {
    bus::consumer_main(image_tester::ImageTester::new)
}
