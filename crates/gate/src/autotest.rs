//! The automated gate of a candidate (one stream at one version): each configured arch's test
//! report in the store.

use std::collections::BTreeMap;

use messages::{Arch, Stream, TestReport, Version};
use settings::StreamSettings;
use store::{Store, StoreError};

/// How one arch of a candidate fared in automated tests.
#[derive(Debug, Clone, PartialEq)]
pub enum ArchResult {
    Passed(Box<TestReport>),
    Failed(Box<TestReport>),
    /// No report yet (not built, or still being tested).
    Pending,
}

/// The automated-test state of every configured arch of a candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct AutotestState {
    pub arches: BTreeMap<Arch, ArchResult>,
}

impl AutotestState {
    pub fn read(
        store: &Store,
        stream: &Stream,
        settings: &StreamSettings,
        version: &Version,
    ) -> Result<Self, StoreError> {
        let mut arches = BTreeMap::new();
        for arch in &settings.arches {
            let result = match store.read_tests(stream, version, arch)? {
                Some(r) if r.failed.is_empty() && &r.version == version && &r.arch == arch => {
                    ArchResult::Passed(Box::new(r))
                }
                Some(r) => ArchResult::Failed(Box::new(r)),
                None => ArchResult::Pending,
            };
            arches.insert(arch.clone(), result);
        }
        Ok(Self { arches })
    }

    /// Replaces one arch's result with a report just received (it may not be in the store yet
    /// when the tester and this reader share no filesystem ordering guarantee).
    pub fn with_report(mut self, report: TestReport) -> Self {
        if self.arches.contains_key(&report.arch) {
            let arch = report.arch.clone();
            let result = if report.failed.is_empty() {
                ArchResult::Passed(Box::new(report))
            } else {
                ArchResult::Failed(Box::new(report))
            };
            self.arches.insert(arch, result);
        }
        self
    }

    /// The passed reports of every arch, when every configured arch passed.
    pub fn all_passed(&self) -> Option<BTreeMap<Arch, &TestReport>> {
        self.arches
            .iter()
            .map(|(arch, result)| match result {
                ArchResult::Passed(report) => Some((arch.clone(), report.as_ref())),
                _ => None,
            })
            .collect()
    }

    /// Why the automated gate is not passed, one reason per arch, or empty when it is.
    pub fn reasons(&self) -> Vec<String> {
        self.arches
            .iter()
            .filter_map(|(arch, result)| match result {
                ArchResult::Passed(_) => None,
                ArchResult::Failed(report) if report.failed.is_empty() => Some(format!(
                    "{arch}: test report is for another version or arch"
                )),
                ArchResult::Failed(report) => Some(format!(
                    "{arch}: failed tests: {}",
                    report.failed.join(", ")
                )),
                ArchResult::Pending => Some(format!("{arch}: no passed automated tests yet")),
            })
            .collect()
    }
}
