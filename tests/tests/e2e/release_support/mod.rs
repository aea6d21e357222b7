//! The release pipeline harness lives in the `tests` library ([`tests::pipeline`]) so that the
//! CLI's tests drive the same pipeline; each release test binary uses it through this module.

pub use tests::pipeline::*;
