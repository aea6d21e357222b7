//! `site-publisher`: rebuilds the download page whenever releases or candidates change.

use std::process::ExitCode;

fn main() -> ExitCode {
    bus::consumer_main(site_publisher::SitePublisher::new)
}
