//! Messages Fedora really sends (copied into `tests/fixtures/messages/`) parse as the types
//! say, and record lines survive a round trip byte for byte.

use std::path::PathBuf;

use messages::{PungiComposeOstree, PungiComposeStatusChange, RecordLine};

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/messages")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn pungi_2016_body_parses_with_only_the_old_fields() {
    let body: PungiComposeOstree =
        serde_json::from_str(&fixture("pungi.compose.ostree.2016.json")).unwrap();
    assert_eq!(body.arch, "x86_64");
    assert_eq!(body.ostree_ref, "fedora-atomic/25/x86_64/docker-host");
    assert_eq!(
        body.commitid.as_deref(),
        Some("f99114401ffce2753bd7cd5401bff056a029bb80474859ab769f68586978248d")
    );
    assert_eq!(body.variant.as_deref(), Some("Atomic"));
    assert_eq!(body.compose_id.as_deref(), Some("Fedora-25-20161002.n.0"));
    assert_eq!(body.repo_path, None);
    assert_eq!(body.local_repo_path, None);
}

#[test]
fn pungi_current_body_parses_and_ignores_unused_fields() {
    let body: PungiComposeOstree =
        serde_json::from_str(&fixture("pungi.compose.ostree.current.json")).unwrap();
    assert_eq!(body.ostree_ref, "fedora/43/x86_64/updates/atomic-host");
    assert_eq!(body.variant.as_deref(), Some("AtomicHost"));
    assert_eq!(
        body.local_repo_path.as_deref(),
        Some("/mnt/koji/atomic/repo/")
    );
    assert_eq!(
        body.repo_path.as_deref(),
        Some("https://kojipkgs.fedoraproject.org/atomic/repo/")
    );
    assert_eq!(body.compose_id.as_deref(), Some("Fedora-43-20261110.n.1"));
    assert!(body.commitid.is_some());
}

#[test]
fn pungi_null_commit_parses_as_none() {
    let body: PungiComposeOstree =
        serde_json::from_str(&fixture("pungi.compose.ostree.null-commit.json")).unwrap();
    assert_eq!(body.arch, "aarch64");
    assert_eq!(body.commitid, None);
}

#[test]
fn pungi_status_change_finished_counts_as_done() {
    let body: PungiComposeStatusChange =
        serde_json::from_str(&fixture("pungi.compose.status.change.finished.json")).unwrap();
    assert_eq!(body.compose_id, "Fedora-24-20151208.n.7");
    assert!(body.is_finished());
    for (status, done) in [
        ("FINISHED_INCOMPLETE", true),
        ("STARTED", false),
        ("DOOMED", false),
        ("TERMINATED", false),
    ] {
        let body = PungiComposeStatusChange {
            status: status.into(),
            ..body.clone()
        };
        assert_eq!(body.is_finished(), done, "{status}");
    }
}

#[test]
fn recorded_line_parses_keeps_its_prefix_and_round_trips_exactly() {
    let text = fixture("record-line.pungi.compose.ostree.jsonl");
    let lines = RecordLine::parse_all(&text).unwrap();
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line.topic, "org.fedoraproject.stg.pungi.compose.ostree");
    assert_eq!(
        line.id.as_deref(),
        Some("1cfa7c3b-e092-4855-b504-8d59dc4c7f10")
    );
    assert_eq!(line.priority, Some(0));
    assert_eq!(line.queue.as_deref(), Some("fm_research_q"));
    assert_eq!(line.headers["fedora_messaging_severity"], 20);
    assert_eq!(line.headers["sent-at"], "2026-11-27T02:50:03+00:00");
    let body: PungiComposeOstree = serde_json::from_value(line.body.clone()).unwrap();
    assert_eq!(body.ostree_ref, "fedora/28/x86_64/atomic-host");
    // What fedora-messaging wrote, Fortnight writes identically.
    assert_eq!(line.to_line(), text.trim_end());
}

#[test]
fn record_lines_need_only_topic_and_body() {
    let line = RecordLine::parse(r#"{"topic": "a.b", "body": {"x": [1, 2]}}"#, 1).unwrap();
    assert_eq!(line.id, None);
    assert!(line.headers.is_empty());
    assert_eq!(
        line.to_line(),
        r#"{"body": {"x": [1, 2]}, "headers": {}, "id": null, "priority": null, "queue": null, "topic": "a.b"}"#
    );
}

#[test]
fn bad_record_lines_are_refused_with_their_line_number() {
    let text = "{\"topic\": \"a\", \"body\": {}}\n\n{\"topic\": \"a\", \"body\": [1]}\n";
    let err = RecordLine::parse_all(text).unwrap_err().to_string();
    assert!(
        err.starts_with("line 3:") && err.contains("object"),
        "{err}"
    );
    let err = RecordLine::parse_all("{\"body\": {}}")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("line 1:") && err.contains("topic"), "{err}");
    let err = RecordLine::parse_all("not json").unwrap_err().to_string();
    assert!(err.starts_with("line 1:"), "{err}");
}
