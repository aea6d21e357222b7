//! Fortnight's messages: validated identifiers, typed bodies for every topic, and the
//! fedora-messaging envelope. Pure data, no I/O: the checked-in `schemas/` are compiled in
//! (`build.rs`).

pub mod bodies;
pub mod ci;
pub mod envelope;
pub mod ids;
pub mod period;
pub mod schema;
pub mod version_order;

pub use bodies::*;
pub use ci::{
    CI_MESSAGES_VERSION, CiArtifact, CiArtifactType, CiContact, CiError, CiPipeline,
    CiReportedResult, CiResult, CiRun, CiSubject, CiSystem, CiTest, CiTestComplete, CiTestError,
    CiTestQueued, CiTestResult, CiTestRunning, CiTestStarted, ExternalTestResult,
};
pub use envelope::{
    BodyError, Incoming, Message, Outgoing, RecordError, RecordLine, Severity, derived_id,
};
pub use ids::{
    Arch, Commit, Format, InvalidId, Prerelease, Ref, Sha256, Stream, TestName, UserName, Version,
};
pub use period::{InvalidPeriod, Period};
