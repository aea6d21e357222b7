//! The external gate: tests other CI systems run (openQA, say) that a stream names in
//! `external_gating`. The image-tester keeps each one's latest `test.complete` result per arch;
//! every one of them must have passed (PASSED or INFO) on every arch of the stream.

use messages::{Arch, CiResult, ExternalTestResult, Stream, TestName, Version};
use settings::StreamSettings;
use store::{Store, StoreError};

/// One external test on one arch of a candidate, and its latest result if any came.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalCheck {
    pub test: TestName,
    pub arch: Arch,
    pub result: Option<ExternalTestResult>,
}

/// Every external test of a candidate on every arch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExternalGate {
    pub checks: Vec<ExternalCheck>,
}

impl ExternalGate {
    pub fn read(
        store: &Store,
        stream: &Stream,
        settings: &StreamSettings,
        version: &Version,
    ) -> Result<Self, StoreError> {
        let mut checks = Vec::new();
        for test in &settings.external_gating {
            for arch in &settings.arches {
                checks.push(ExternalCheck {
                    test: test.clone(),
                    arch: arch.clone(),
                    result: store.read_external_result(stream, version, arch, test)?,
                });
            }
        }
        Ok(Self { checks })
    }

    /// Why the external gate is not passed, one reason per test and arch, or empty when it is.
    pub fn reasons(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter_map(|check| {
                let (test, arch) = (&check.test, &check.arch);
                match check.result.as_ref().map(|r| r.result) {
                    None => Some(format!("waiting for {test} on {arch}")),
                    Some(result) if result.passes() => None,
                    Some(CiResult::NeedsInspection) => {
                        Some(format!("{test} needs inspection on {arch}"))
                    }
                    Some(_) => Some(format!("{test} failed on {arch}")),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(test: &str, arch: &str, result: Option<CiResult>) -> ExternalCheck {
        ExternalCheck {
            test: test.parse().unwrap(),
            arch: arch.parse().unwrap(),
            result: result.map(|result| ExternalTestResult {
                test: test.parse().unwrap(),
                arch: arch.parse().unwrap(),
                result,
                generated_at: "2026-11-27T00:00:00Z".parse().unwrap(),
                run_url: None,
                sender: Some("openqa".into()),
                message_id: None,
            }),
        }
    }

    #[test]
    fn missing_failed_and_uninspected_results_hold_the_gate_and_passed_or_info_do_not() {
        let gate = ExternalGate {
            checks: vec![
                check("openqa.install_default", "x86_64", None),
                check("openqa.install_default", "aarch64", Some(CiResult::Passed)),
                check("openqa.base_selinux", "x86_64", Some(CiResult::Failed)),
                check("openqa.base_selinux", "aarch64", Some(CiResult::Info)),
                check("openqa.desktop", "x86_64", Some(CiResult::NeedsInspection)),
            ],
        };
        assert_eq!(
            gate.reasons(),
            vec![
                "waiting for openqa.install_default on x86_64",
                "openqa.base_selinux failed on x86_64",
                "openqa.desktop needs inspection on x86_64",
            ]
        );
        assert!(ExternalGate::default().reasons().is_empty());
    }
}
