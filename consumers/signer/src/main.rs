//! `signer`: signs what a release ships, answering `fortnight.sign.requested`.

use std::process::ExitCode;

fn main() -> ExitCode {
    bus::consumer_main(signer::Signer::new)
}
