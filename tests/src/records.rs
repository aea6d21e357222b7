//! Record files (`fortnight record` / `replay`, one JSON message a line) and the messages in
//! them.

use std::path::Path;

use messages::{Message, Outgoing, RecordLine, TreeComposed};
use serde_json::json;

pub fn read_records(path: &Path) -> Vec<RecordLine> {
    RecordLine::parse_all(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub fn write_records(path: &Path, records: &[RecordLine]) {
    let lines: String = records
        .iter()
        .map(|r| format!("{}\n", r.to_line()))
        .collect();
    std::fs::write(path, lines).unwrap();
}

/// Nightly `n` of f43 on x86_64: commit and version derived from `n`.
pub fn tree_composed(n: u32) -> TreeComposed {
    serde_json::from_value(json!({
        "arch": "x86_64",
        "tree": {
            "ref": "fedora/43/x86_64/updates/atomic-host",
            "commit": format!("{n:064x}"),
            "repo": "/srv/fortnight/ostree/repo"
        },
        "version": format!("43.20261127.{n}")
    }))
    .unwrap()
}

/// A record line for a typed message, validated against its checked-in schema.
pub fn record_of<M: Message>(message: &M, topic: String) -> RecordLine {
    let outgoing = Outgoing::new(uuid::Uuid::new_v4(), message);
    crate::schema::assert_valid(&outgoing);
    RecordLine {
        topic,
        ..RecordLine::from_incoming(&outgoing.to_incoming(), None)
    }
}

pub fn without_queue(mut record: RecordLine) -> RecordLine {
    record.queue = None;
    record
}

fn outgoing<M: Message>(body: serde_json::Value) -> Outgoing {
    let message: M = serde_json::from_value(body)
        .unwrap_or_else(|e| panic!("example {} does not parse: {e}", M::TOPIC));
    let outgoing = Outgoing::new(uuid::Uuid::new_v4(), &message);
    crate::schema::assert_valid(&outgoing);
    outgoing
}

/// One message of every topic Fortnight publishes, each valid against its schema.
pub fn one_of_each_topic() -> Vec<Outgoing> {
    use messages::*;
    let tree = json!({
        "ref": "fedora/43/x86_64/updates/atomic-host",
        "commit": "ab".repeat(32),
        "repo": "/srv/fortnight/ostree/repo"
    });
    let image = json!({
        "format": "qcow2",
        "path": "f43/43.20261127.1/x86_64/images/atomic.qcow2",
        "size": 1024,
        "sha256": "cd".repeat(32)
    });
    let candidate = json!({"stream": "f43", "version": "43.20261127.1"});
    let with = |fields: serde_json::Value| {
        let mut body = candidate.clone();
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        body
    };
    let report = with(json!({
        "arch": "x86_64", "tree": tree, "images": [image],
        "tests": [{
            "name": "rpm-ostree-upgrade", "kind": "gating", "format": "qcow2",
            "status": "failed", "attempts": 1, "duration_ms": 1200,
            "log": "f43/43.20261127.1/x86_64/tests/rpm-ostree-upgrade.log"
        }],
        "failed": ["rpm-ostree-upgrade"]
    }));
    let operator = |version: bool| {
        let mut body = with(json!({"reason": "rpm-ostree upgrade breaks", "operator": "alice"}));
        if !version {
            body.as_object_mut().unwrap().remove("version");
        }
        body
    };
    let period = "2026-11-24T00:00:00Z";
    let sign_request = with(json!({
        "request_id": "5f0c6a52-3c4e-4f7e-9a51-2b7f0d1e9c11",
        "build_id": "f43-43.20261127.1",
        "artifacts": [{
            "file": "f43/releases/43.20261127.1/x86_64/CHECKSUM",
            "checksum": format!("sha256:{}", "ef".repeat(32))
        }],
        "commits": [{"arch": "x86_64", "ref": "fedora/43/x86_64/atomic-host", "commit": "ab".repeat(32)}]
    }));
    let ci_run = json!({
        "contact": {
            "name": "Fortnight", "team": "Fedora Release Engineering",
            "email": "releng@example.org", "docs": "https://example.org/fortnight/"
        },
        "run": {
            "url": "https://dl.example.org/f43/all/43.20261127.1/x86_64/",
            "log": "https://dl.example.org/f43/all/43.20261127.1/x86_64/junit.xml"
        },
        "artifact": {"type": "productmd-compose", "id": "43.20261127.1"},
        "pipeline": {"id": "6f1b5c0e-9f7a-5d3e-8c2b-1a0f9e8d7c6b", "name": "fortnight f43 image tests"},
        "system": [{"os": "fedora/43/x86_64/updates/atomic-host", "provider": "fortnight", "architecture": "x86_64"}],
        "generated_at": "2026-11-27T12:00:00Z",
        "version": "0.2.1",
        "test": {"namespace": "fortnight", "type": "f43", "category": "functional"}
    });
    let ci_with = |test: serde_json::Value, fields: serde_json::Value| {
        let mut body = ci_run.clone();
        let object = body.as_object_mut().unwrap();
        object["test"]
            .as_object_mut()
            .unwrap()
            .extend(test.as_object().unwrap().clone());
        object.extend(fields.as_object().unwrap().clone());
        body
    };
    vec![
        outgoing::<TreeComposed>(json!({
            "arch": "x86_64", "tree": tree, "version": "43.20261127.1"
        })),
        outgoing::<ImageBuilt>(with(json!({
            "arch": "x86_64", "tree": tree, "images": [image],
            "build_log": "f43/43.20261127.1/x86_64/build.log"
        }))),
        outgoing::<ImageBuildFailed>(with(json!({
            "arch": "x86_64", "tree": tree, "format": "qcow2", "reason": "recipe exited 1"
        }))),
        outgoing::<ImageTestsPassed>(report.clone()),
        outgoing::<ImageTestsFailed>(report),
        outgoing::<CandidateTestingRequested>(with(json!({"arches": {"x86_64": tree}}))),
        outgoing::<KarmaSubmitted>(with(json!({"user": "bob", "karma": 1, "comment": "boots"}))),
        outgoing::<KarmaThresholdReached>(with(json!({
            "status": "stable", "karma": 2,
            "votes": [
                {"user": "bob", "karma": 1, "at": "2026-11-27T10:00:00Z"},
                {"user": "carol", "karma": 1, "at": "2026-11-27T11:00:00Z"}
            ]
        }))),
        outgoing::<TwoweekTimerFired>(json!({
            "stream": "f43", "period": period, "scheduled_for": period,
            "fired_at": "2026-11-24T00:00:05Z", "operator": "alice"
        })),
        outgoing::<OverrideBlock>(operator(true)),
        outgoing::<OverrideUnblock>(operator(true)),
        outgoing::<OverrideRelease>(operator(true)),
        outgoing::<OverrideHold>(operator(false)),
        outgoing::<OverrideUnhold>(operator(false)),
        outgoing::<OverrideSwitch>(json!({
            "stream": "f44", "operator": "alice", "reason": "Fedora 44 released",
            "release_now": true
        })),
        outgoing::<OverrideEndOfLife>(operator(false)),
        outgoing::<ReleasePublished>(with(json!({
            "arches": {"x86_64": {
                "tree": tree, "release_ref": "fedora/43/x86_64/atomic-host", "images": [image]
            }},
            "period": period, "forced": false, "reason": "passed and stable",
            "previous": "43.20261113.0", "released_at": "2026-11-24T00:01:00Z"
        }))),
        outgoing::<ReleaseSkipped>(json!({
            "stream": "f43", "period": period,
            "candidates": [{"version": "43.20261127.1", "reasons": ["gating tests failed"]}],
            "current_release": "43.20261113.0", "current_release_age_seconds": 950400,
            "policy": "keep-current"
        })),
        outgoing::<StreamStale>(json!({
            "stream": "f43", "kind": "no-candidate-passed", "since": "2026-11-24T03:00:00Z",
            "threshold_seconds": 259200, "detected_at": "2026-11-27T03:00:00Z",
            "newest_candidate": "43.20261124.0",
            "reason": "no candidate passed its automated tests since 2026-11-24T03:00:00Z (3 days ago, threshold 3d)"
        })),
        outgoing::<StreamSwitched>(json!({
            "from": "f43", "to": "f44", "at": "2027-04-20T14:00:00Z", "how": "operator",
            "operator": "alice", "reason": "Fedora 44 released early",
            "next_tick": "2027-04-20T14:00:00Z"
        })),
        outgoing::<StreamEndOfLife>(json!({
            "stream": "f43", "successor": "f44",
            "arches": {"x86_64": {
                "release_ref": "fedora/43/x86_64/atomic-host", "commit": "cd".repeat(32),
                "rebase": "fedora/44/x86_64/atomic-host",
                "message": "Fedora Atomic Host f43 has reached end of life; this machine moves to fedora/44/x86_64/atomic-host"
            }},
            "message": "Fedora Atomic Host f43 has reached end of life; its machines move to f44",
            "at": "2027-05-18T00:00:00Z",
            "how": "operator", "operator": "alice", "reason": "Fedora 43 is end of life"
        })),
        outgoing::<SignRequested>(sign_request.clone()),
        outgoing::<SignFinished>({
            let mut reply = sign_request;
            reply.as_object_mut().unwrap().extend(
                json!({"status": "SUCCESS", "failure-message": null})
                    .as_object()
                    .unwrap()
                    .clone(),
            );
            reply
        }),
        outgoing::<TwoweekComplete>(json!({"x86_64": {"atomic_qcow2": {
            "compose_id": "Fedora-Atomic-43-20261127.1", "name": "Fedora-Atomic",
            "release": "43", "image_name": "Fedora-Atomic-43-20261127.1.x86_64.qcow2",
            "image_url": "https://example.org/Fedora-Atomic-43-20261127.1.x86_64.qcow2",
            "size": 1024
        }}})),
        outgoing::<CiTestQueued>(ci_run.clone()),
        outgoing::<CiTestRunning>(ci_run.clone()),
        outgoing::<CiTestComplete>(ci_with(
            json!({"result": "failed", "note": "failed gating tests: rpm-ostree-upgrade"}),
            json!({}),
        )),
        outgoing::<CiTestError>(ci_with(
            json!({}),
            json!({"error": {"reason": "cannot read the test suite"}}),
        )),
    ]
}
