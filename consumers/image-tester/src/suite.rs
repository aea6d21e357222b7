//! Test suites: TOML files with one `[[test]]` table per test.
//!
//! ```toml
//! [[test]]
//! name = "qemu-img-check"           # names the log file and the JUnit test case
//! argv = ["bin/qemu-img-check"]     # a relative program is found next to the suite file
//! kind = "gating"                   # gating | non-gating | expected-to-fail (default gating)
//! timeout_seconds = 120             # default 600
//! formats = ["qcow2"]               # default: every format
//! retries = 1                       # extra attempts for a known-flaky test (default 0)
//! env = { FORTNIGHT_BOOT_SECONDS = "900" }  # extra environment variables (default none)
//! ```
//!
//! A test gets the image and its context in environment variables (`FORTNIGHT_IMAGE`,
//! `FORTNIGHT_FORMAT`, `FORTNIGHT_ARCH`, `FORTNIGHT_VERSION`, `FORTNIGHT_STREAM`,
//! `FORTNIGHT_COMMIT`, `FORTNIGHT_REF`, `FORTNIGHT_REPO`, `FORTNIGHT_CHECKSUM_FILE`, and
//! `FORTNIGHT_SCRATCH` = `TMPDIR`, an empty directory removed afterwards), its `env`, and
//! from the consumer's environment only what `runner::INHERITED` names, never the broker
//! URL and its password. Exit 0 passes,
//! exit 77 means skipped (the last line of output says why), anything else fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use messages::{Format, TestKind};
use serde::Deserialize;
use store::FileName;

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot read test suite {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("test suite {path} is invalid: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuiteFile {
    #[serde(default, rename = "test")]
    tests: Vec<TestFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    name: String,
    argv: Vec<String>,
    #[serde(default = "default_kind")]
    kind: TestKind,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
    #[serde(default)]
    formats: Option<Vec<Format>>,
    #[serde(default)]
    retries: u32,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

fn default_kind() -> TestKind {
    TestKind::Gating
}
fn default_timeout() -> u64 {
    600
}

/// One test, validated and with its program resolved.
#[derive(Debug, Clone)]
pub struct TestSpec {
    pub name: FileName,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub kind: TestKind,
    pub timeout: std::time::Duration,
    pub formats: Option<Vec<Format>>,
    pub retries: u32,
    /// Set for the test, under the variables Fortnight sets (which win).
    pub env: BTreeMap<String, String>,
}

impl TestSpec {
    pub fn applies_to(&self, format: &Format) -> bool {
        self.formats.as_ref().is_none_or(|f| f.contains(format))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Suite {
    pub tests: Vec<TestSpec>,
}

impl Suite {
    /// Reads and validates a suite; relative programs resolve against the suite's directory.
    pub fn load(path: &Path) -> Result<Self, SuiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, SuiteError> {
        let invalid = |reason: String| SuiteError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let file: SuiteFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut tests: Vec<TestSpec> = Vec::new();
        for test in file.tests {
            let name: FileName = test
                .name
                .parse()
                .map_err(|e| invalid(format!("test name: {e}")))?;
            if tests.iter().any(|t| t.name == name) {
                return Err(invalid(format!("test `{name}` is defined twice")));
            }
            let Some((program, args)) = test.argv.split_first() else {
                return Err(invalid(format!("test `{name}` has an empty argv")));
            };
            let program = PathBuf::from(program);
            // A bare name is looked up on PATH; a relative path is the suite's own script.
            let program = if program.is_relative() && program.components().count() > 1 {
                base.join(program)
            } else {
                program
            };
            if let Some(bad) = test.env.keys().find(|n| !settings::is_env_name(n)) {
                return Err(invalid(format!(
                    "test `{name}` has env {bad:?}, which is not a variable name (letters, digits and `_`, not starting with a digit)"
                )));
            }
            if test.timeout_seconds == 0 {
                return Err(invalid(format!("test `{name}` has timeout_seconds = 0")));
            }
            tests.push(TestSpec {
                name,
                program,
                args: args.to_vec(),
                kind: test.kind,
                timeout: std::time::Duration::from_secs(test.timeout_seconds),
                formats: test.formats,
                retries: test.retries,
                env: test.env,
            });
        }
        Ok(Self { tests })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_and_resolves_programs() {
        let suite = Suite::parse(
            Path::new("/etc/fortnight/tests/suite.toml"),
            r#"
            [[test]]
            name = "check"
            argv = ["bin/check", "--quick"]
            formats = ["qcow2"]
            [[test]]
            name = "boot"
            argv = ["true"]
            kind = "non-gating"
            retries = 2
            env = { FORTNIGHT_BOOT_SECONDS = "900" }
            "#,
        )
        .unwrap();
        assert_eq!(
            suite.tests[0].program,
            Path::new("/etc/fortnight/tests/bin/check")
        );
        assert_eq!(suite.tests[0].kind, TestKind::Gating);
        assert!(!suite.tests[0].applies_to(&"raw.xz".parse().unwrap()));
        assert_eq!(suite.tests[1].program, Path::new("true"));
        assert!(suite.tests[1].applies_to(&"raw.xz".parse().unwrap()));
        assert_eq!(
            (suite.tests[1].kind, suite.tests[1].retries),
            (TestKind::NonGating, 2)
        );
        assert_eq!(suite.tests[1].env["FORTNIGHT_BOOT_SECONDS"], "900");
        assert!(suite.tests[0].env.is_empty());
    }

    #[test]
    fn refuses_bad_suites_naming_the_problem() {
        for (text, needle) in [
            ("[[test]]\nname = \"../x\"\nargv = [\"true\"]", "test name"),
            ("[[test]]\nname = \"x\"\nargv = []", "empty argv"),
            (
                "[[test]]\nname = \"x\"\nargv = [\"true\"]\n[[test]]\nname = \"x\"\nargv = [\"true\"]",
                "twice",
            ),
            (
                "[[test]]\nname = \"x\"\nargv = [\"true\"]\nkind = \"sometimes\"",
                "kind",
            ),
            (
                "[[test]]\nname = \"x\"\nargv = [\"true\"]\nshell = true",
                "shell",
            ),
            (
                "[[test]]\nname = \"x\"\nargv = [\"true\"]\nenv = { \"1X\" = \"y\" }",
                "not a variable name",
            ),
        ] {
            let err = Suite::parse(Path::new("s.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle) && err.contains("s.toml"), "{err}");
        }
    }
}
