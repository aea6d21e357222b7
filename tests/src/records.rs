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
    outgoing.validate().unwrap();
    RecordLine {
        topic,
        ..RecordLine::from_incoming(&outgoing.to_incoming(), None)
    }
}

pub fn without_queue(mut record: RecordLine) -> RecordLine {
    record.queue = None;
    record
}
