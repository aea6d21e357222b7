//! What the store says about a candidate's gates, read the same way by every reader: the
//! karma tracker (which asks for votes once the automated gate passed, and counts them), the
//! releaser (which releases only what passed both) and the CLI (`status`, `explain`, `vote`).
//! Readers only: the image tester writes the reports and `passed-autotest/`, the karma
//! tracker the votes and `passed-human/`. [`succession`] reads which two-week stream is the
//! current one (the releaser writes the switch).

mod autotest;
pub mod succession;
mod tally;

pub use autotest::{ArchResult, AutotestState};
pub use tally::Tally;
