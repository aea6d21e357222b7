//! JUnit XML, the format CI dashboards read, written with quick-junit: one `<testsuite>` per
//! stream/version/arch with the tree's commit as a property, one `<testcase>` per test and
//! format, its log path as the failure's text and as `<system-out>`.

use std::time::Duration;

use messages::{TestReport, TestStatus, TestSummary};
use quick_junit::{
    NonSuccessKind, Property, Report, SerializeError, TestCase, TestCaseStatus, TestSuite,
};

fn test_case(suite: &str, test: &TestSummary) -> TestCase {
    let reason = test.reason.as_deref().unwrap_or_default();
    let status = match test.status {
        TestStatus::Passed => TestCaseStatus::success(),
        TestStatus::Skipped => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(reason);
            status
        }
        TestStatus::Failed | TestStatus::TimedOut => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_message(reason)
                .set_type(format!("{:?}", test.kind))
                .set_description(format!("log: {}", test.log));
            status
        }
    };
    let mut case = TestCase::new(test.name.as_str(), status);
    case.set_classname(format!("{suite}.{}", test.format))
        .set_time(Duration::from_millis(test.duration_ms))
        .set_system_out(test.log.as_str());
    case
}

/// The report's JUnit XML. Fails only if quick-junit cannot write into memory.
pub fn render(report: &TestReport) -> Result<String, SerializeError> {
    let name = format!("{}.{}.{}", report.stream, report.version, report.arch);
    let mut suite = TestSuite::new(name.as_str());
    suite
        .add_property(Property::new("commit", report.tree.commit.as_str()))
        .add_test_cases(report.tests.iter().map(|test| test_case(&name, test)));
    let total_ms = report.tests.iter().map(|t| t.duration_ms).sum();
    suite.set_time(Duration::from_millis(total_ms));
    let mut junit = Report::unnamed();
    junit.add_test_suite(suite);
    junit.to_string()
}

#[cfg(test)]
mod tests {
    use messages::{TestKind, Tree};

    use super::*;

    fn summary(name: &str, status: TestStatus, reason: Option<&str>) -> TestSummary {
        TestSummary {
            name: name.to_owned(),
            kind: TestKind::Gating,
            format: "qcow2".parse().unwrap(),
            status,
            attempts: 1,
            duration_ms: 1500,
            log: format!("f43/all/43.1/x86_64/logs/test-{name}.qcow2.log"),
            reason: reason.map(str::to_owned),
        }
    }

    fn report(tests: Vec<TestSummary>) -> TestReport {
        TestReport {
            stream: "f43".parse().unwrap(),
            version: "43.1".parse().unwrap(),
            arch: "x86_64".parse().unwrap(),
            tree: Tree {
                ostree_ref: "fedora/43/x86_64/atomic-host".parse().unwrap(),
                commit: "a".repeat(64).parse().unwrap(),
                repo: "/srv/repo".into(),
            },
            images: Vec::new(),
            tests,
            failed: Vec::new(),
        }
    }

    #[test]
    fn counts_times_and_names_every_test_with_its_outcome() {
        let xml = render(&report(vec![
            summary("boot", TestStatus::Passed, None),
            summary("os-release", TestStatus::Failed, Some("exit status 1")),
            summary("hang", TestStatus::TimedOut, Some("timed out after 60 s")),
            summary("uefi", TestStatus::Skipped, Some("not on qcow2")),
        ]))
        .unwrap();
        for wanted in [
            r#"<testsuite name="f43.43.1.x86_64" tests="4" skipped="1" errors="0" failures="2" time="6.000">"#,
            &format!(r#"<property name="commit" value="{}"/>"#, "a".repeat(64)),
            r#"<testcase name="boot" classname="f43.43.1.x86_64.qcow2" time="1.500">"#,
            r#"<failure message="exit status 1" type="Gating">log: f43/all/43.1/x86_64/logs/test-os-release.qcow2.log</failure>"#,
            r#"<failure message="timed out after 60 s" type="Gating">"#,
            r#"<skipped message="not on qcow2"/>"#,
            "<system-out>f43/all/43.1/x86_64/logs/test-boot.qcow2.log</system-out>",
        ] {
            assert!(xml.contains(wanted), "{wanted} missing from:\n{xml}");
        }
    }

    #[test]
    fn escapes_everything_a_test_can_print() {
        let xml = render(&report(vec![summary(
            "a<b>&\"c'",
            TestStatus::Failed,
            Some("no \u{1b}[31mcolour</failure>"),
        )]))
        .unwrap();
        assert!(
            xml.contains(r#"name="a&lt;b&gt;&amp;&quot;c&apos;""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"message="no colour&lt;/failure&gt;""#),
            "{xml}"
        );
    }
}
