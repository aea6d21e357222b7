use std::process::ExitCode;

fn main() -> ExitCode {
    bus::consumer_main(image_builder::ImageBuilder::new)
}
