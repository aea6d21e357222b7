//! The envelope as fedora-messaging puts it on the wire, and received messages read as
//! tolerantly as the reference client reads them.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use messages::envelope::{BASE_SCHEMA, HEADER_SEVERITY};
use messages::{
    Incoming, KarmaSubmitted, KarmaThresholdReached, Outgoing, Override, OverrideBlock, Severity,
    TreeComposed,
};
use serde_json::{Value, json};
use uuid::Uuid;

fn incoming(id: Option<&str>, headers: BTreeMap<String, Value>, body: Value) -> Incoming {
    Incoming {
        id: id.map(str::to_owned),
        routing_key: "org.fedoraproject.prod.fortnight.tree.composed".into(),
        topic: "fortnight.tree.composed".into(),
        headers,
        body: body.as_object().cloned().unwrap_or_default(),
        user_id: None,
    }
}

fn headers(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn outgoing_headers_are_exactly_what_fedora_messaging_sends() {
    let block = OverrideBlock(Override {
        stream: "f43".parse().unwrap(),
        version: Some("43.20261127.0".parse().unwrap()),
        reason: "broken rpm-ostree".into(),
        operator: "alice".parse().unwrap(),
        expires: None,
    });
    let message = Outgoing::new(Uuid::nil(), &block);
    // Sub-second precision in the clock must not reach the header.
    let sent_at = Utc.with_ymd_and_hms(2026, 11, 27, 2, 49, 31).unwrap()
        + chrono::Duration::milliseconds(987);
    let expected: BTreeMap<String, Value> = headers(&[
        ("fedora_messaging_schema", json!("fortnight.override.block")),
        (
            "fedora_messaging_schema_package",
            json!("fortnight_messages"),
        ),
        ("fedora_messaging_severity", json!(30)),
        ("fedora_messaging_user_alice", json!(true)),
        ("priority", json!(0)),
        ("sent-at", json!("2026-11-27T02:49:31+00:00")),
    ]);
    assert_eq!(message.headers(sent_at), expected);
    assert_eq!(message.topic, "fortnight.override.block");
    assert_eq!(message.body["operator"], "alice");
}

#[test]
fn messages_about_nobody_carry_no_user_headers_and_default_to_info() {
    let tree: TreeComposed = serde_json::from_value(json!({
        "arch": "x86_64",
        "tree": {"ref": "fedora/43/x86_64/updates/atomic-host", "commit": "ab".repeat(32), "repo": "/r"}
    }))
    .unwrap();
    let message = Outgoing::new(Uuid::nil(), &tree);
    let headers = message.headers(Utc::now());
    assert_eq!(headers[HEADER_SEVERITY], json!(Severity::Info as i64));
    assert!(
        !headers
            .keys()
            .any(|k| k.starts_with("fedora_messaging_user_"))
    );
    assert_eq!(message.severity, Severity::Info);
}

/// The same people the schema package's `usernames` names, so a message published from
/// Python and one from Rust carry the same headers.
#[test]
fn a_vote_names_its_voter_and_a_threshold_every_voter() {
    let vote = KarmaSubmitted {
        stream: "f43".parse().unwrap(),
        version: "43.20261127.0".parse().unwrap(),
        user: "bob".parse().unwrap(),
        karma: 1,
        comment: None,
    };
    let headers = Outgoing::new(Uuid::nil(), &vote).headers(Utc::now());
    assert_eq!(headers["fedora_messaging_user_bob"], json!(true));
    let threshold: KarmaThresholdReached = serde_json::from_value(json!({
        "stream": "f43", "version": "43.20261127.0", "status": "stable", "karma": 2,
        "votes": [
            {"user": "bob", "karma": 1, "at": "2026-11-27T10:00:00Z"},
            {"user": "carol", "karma": 1, "at": "2026-11-27T11:00:00Z"}
        ]
    }))
    .unwrap();
    let users: Vec<String> = Outgoing::new(Uuid::nil(), &threshold)
        .headers(Utc::now())
        .into_keys()
        .filter_map(|k| k.strip_prefix("fedora_messaging_user_").map(str::to_owned))
        .collect();
    assert_eq!(users, ["bob", "carol"]);
}

#[test]
fn missing_headers_mean_base_schema_info_and_priority_zero() {
    let message = incoming(
        Some(&Uuid::new_v4().to_string()),
        BTreeMap::new(),
        json!({}),
    );
    assert_eq!(message.schema(), BASE_SCHEMA);
    assert_eq!(message.severity(), Severity::Info);
    assert_eq!(message.priority(), 0);
}

#[test]
fn integer_headers_of_any_width_are_read() {
    // AMQP short-short, short, long-long and unsigned values all become JSON numbers; the
    // reference client's header schema allows any number, so integral floats count too.
    for (severity, expected) in [
        (json!(10u8), Severity::Debug),
        (json!(30u16), Severity::Warning),
        (json!(40i64), Severity::Error),
        (json!(30u64), Severity::Warning),
        (json!(40.0), Severity::Error),
        (json!(-1), Severity::Info),
        (json!("30"), Severity::Info),
    ] {
        let message = incoming(
            None,
            headers(&[(HEADER_SEVERITY, severity.clone())]),
            json!({}),
        );
        assert_eq!(message.severity(), expected, "severity header {severity}");
    }
    for (priority, expected) in [
        (json!(3u8), 3),
        (json!(9i64), 9),
        (json!(4.0), 4),
        (json!(null), 0),
    ] {
        let message = incoming(None, headers(&[("priority", priority.clone())]), json!({}));
        assert_eq!(message.priority(), expected, "priority header {priority}");
    }
}

#[test]
fn ids_bridged_from_fedmsg_and_odd_ids_are_tolerated() {
    let uuid = Uuid::new_v4();
    let plain = incoming(Some(&uuid.to_string()), BTreeMap::new(), json!({}));
    assert_eq!(plain.uuid(), Some(uuid));
    let bridged = incoming(Some(&format!("2016-{uuid}")), BTreeMap::new(), json!({}));
    assert_eq!(bridged.uuid(), Some(uuid));
    assert_eq!(bridged.log_id(), format!("2016-{uuid}"));
    let odd = incoming(Some("not-a-uuid"), BTreeMap::new(), json!({}));
    assert_eq!(odd.uuid(), None);
    assert_eq!(odd.log_id(), "not-a-uuid");
    let absent = incoming(None, BTreeMap::new(), json!({}));
    assert_eq!(absent.uuid(), None);
    assert_eq!(absent.log_id(), "-");
}

#[test]
fn unknown_schema_names_are_read_as_plain_objects_by_topic() {
    let body = json!({
        "arch": "x86_64",
        "tree": {
            "ref": "fedora/43/x86_64/updates/atomic-host",
            "commit": "d428d3ad8ae8ec0d9c1bc6f9e3a8b1f4b2e7c1d0a9f8e7d6c5b4a39281706f5e",
            "repo": "/srv/repo"
        }
    });
    let message = incoming(
        None,
        headers(&[("fedora_messaging_schema", json!("someone.elses.schema.v7"))]),
        body,
    );
    assert_eq!(message.schema(), "someone.elses.schema.v7");
    let parsed: TreeComposed = message.parse().unwrap();
    assert_eq!(parsed.arch.as_str(), "x86_64");
    assert!(!parsed.force);
}

#[test]
fn a_body_that_violates_the_type_names_the_topic() {
    let message = incoming(None, BTreeMap::new(), json!({"arch": "x86_64"}));
    let err = message.parse::<TreeComposed>().unwrap_err().to_string();
    assert!(
        err.contains("fortnight.tree.composed") && err.contains("tree"),
        "{err}"
    );
}
