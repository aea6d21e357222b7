//! The CLI's contract with scripts: `--help` everywhere, exit code 2 for usage errors, 1 for
//! failures with a message that says what to do.

use std::process::{Command, Output};

fn fortnight(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .args(args)
        .env_remove("FORTNIGHT_CONFIG")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn every_bus_command_has_help() {
    for command in [
        &["--help"][..],
        &["publish", "--help"],
        &["record", "--help"],
        &["replay", "--help"],
        &["dead-letters", "--help"],
        &["dead-letters", "list", "--help"],
        &["dead-letters", "show", "--help"],
        &["dead-letters", "replay", "--help"],
        &["dead-letters", "purge", "--help"],
        &["schemas", "--help"],
        &["schemas", "check", "--help"],
        &["topology", "--help"],
        &["topology", "export", "--help"],
    ] {
        let output = fortnight(command);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{command:?}: {}",
            stderr(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage:"),
            "{command:?}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for command in [
        &[][..],
        &["no-such-command"],
        &["replay"],
        &["replay", "--datagrepper", "http://127.0.0.1:1"],
        &[
            "replay",
            "--file",
            "a.jsonl",
            "--datagrepper",
            "http://127.0.0.1:1",
            "ID",
        ],
        &["record", "out.jsonl", "--limit", "0"],
        &["dead-letters", "purge", "image-builder"],
    ] {
        let output = fortnight(command);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn a_missing_config_is_a_failure_that_says_how_to_point_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.toml");
    let output = fortnight(&["--config", missing.to_str().unwrap(), "publish", "-"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("none.toml") && text.contains("--config"),
        "{text}"
    );
}

#[test]
fn schemas_check_passes_on_the_checked_in_schemas_and_fails_on_drift() {
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas");
    let output = fortnight(&["schemas", "check", "--dir", schemas]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let output = fortnight(&["schemas", "check", "--dir", path]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("schemas write"),
        "{}",
        stderr(&output)
    );
    let output = fortnight(&["schemas", "write", "--dir", path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = fortnight(&["schemas", "check", "--dir", path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
