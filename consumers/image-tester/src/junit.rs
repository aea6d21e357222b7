//! JUnit XML, the format CI dashboards read, written by hand: one `<testsuite>` per
//! stream/version/arch, one `<testcase>` per test and format.

use std::fmt::Write;

use messages::{TestReport, TestStatus};

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab and newlines are not allowed in XML 1.0.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

pub fn render(report: &TestReport) -> String {
    let count = |s: TestStatus| report.tests.iter().filter(|t| t.status == s).count();
    let failures = count(TestStatus::Failed) + count(TestStatus::TimedOut);
    let seconds: f64 = report
        .tests
        .iter()
        .map(|t| t.duration_ms as f64 / 1000.0)
        .sum();
    let suite = format!("{}.{}.{}", report.stream, report.version, report.arch);
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n");
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{}\" time=\"{seconds:.3}\">",
        escape(&suite),
        report.tests.len(),
        count(TestStatus::Skipped),
    );
    let _ = writeln!(
        xml,
        "    <properties><property name=\"commit\" value=\"{}\"/></properties>",
        report.tree.commit
    );
    for test in &report.tests {
        let _ = write!(
            xml,
            "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{:.3}\">",
            escape(&suite),
            escape(test.format.as_str()),
            escape(&test.name),
            test.duration_ms as f64 / 1000.0
        );
        let reason = escape(test.reason.as_deref().unwrap_or_default());
        match test.status {
            TestStatus::Passed => {}
            TestStatus::Skipped => {
                let _ = write!(xml, "<skipped message=\"{reason}\"/>");
            }
            TestStatus::Failed | TestStatus::TimedOut => {
                let _ = write!(
                    xml,
                    "<failure message=\"{reason}\" type=\"{:?}\">log: {}</failure>",
                    test.kind,
                    escape(&test.log)
                );
            }
        }
        let _ = writeln!(
            xml,
            "<system-out>{}</system-out></testcase>",
            escape(&test.log)
        );
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_a_test_can_print() {
        assert_eq!(
            escape("a<b>&\"c'\u{1b}"),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{fffd}"
        );
    }
}
