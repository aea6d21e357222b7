//! The site rendered from a real artifact tree in a temporary directory.

mod fixture;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use bus::{Outcome, Step};
use chrono::Duration;
use fixture::{COMMIT_ARM, COMMIT_X86, fixture, v};
use messages::{Arch, Incoming, Message, ReleasePublished};
use site_publisher::{SitePublisher, publish};

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn index_shows_the_current_release_with_everything_a_downloader_needs() {
    let f = fixture("Produced automatically.");
    publish(&f.settings, &f.store, f.released_at + Duration::days(3)).unwrap();
    let site = f.store.site_dir();
    // minijinja escapes `/` as `&#x2f;`, which browsers read back as `/`.
    let index = read(&site.join("index.html")).replace("&#x2f;", "/");

    let build = f.store.read_tests(
        &"f43".parse().unwrap(),
        &v("43.20261101.0"),
        &"aarch64".parse().unwrap(),
    );
    let image = &build.unwrap().unwrap().images[1];
    assert!(index.contains("Produced automatically."), "intro text");
    assert!(
        index.contains(&format!(
            "https://dl.example.org/pub/fortnight/{}",
            image.path
        )),
        "download link"
    );
    assert!(index.contains(image.sha256.as_str()), "sha256");
    assert!(
        index.contains(COMMIT_ARM) && index.contains(COMMIT_X86),
        "tree commits"
    );
    assert!(index.contains("Current release <strong>43.20261101.0</strong>, released 2026-11-10"));
    assert!(index.contains("2/2 passed"), "test summary");
    assert!(index.contains("Karma 3 from 3 votes"), "karma");
    assert!(
        index.contains("site/latest/f43-aarch64.raw.xz"),
        "stable latest link"
    );
    assert!(
        !index.contains("class=\"warning\""),
        "a 3-day-old release is not stale"
    );
    assert!(!index.contains("<script"), "no JavaScript");
    assert!(
        index.contains("<meta name=\"viewport\""),
        "readable on a phone"
    );
}

#[test]
fn a_release_older_than_the_period_shows_a_warning_with_its_age() {
    let f = fixture("x");
    publish(&f.settings, &f.store, f.released_at + Duration::days(20)).unwrap();
    let index = read(&f.store.site_dir().join("index.html"));
    assert!(
        index.contains(
            "the newest f43 release is 20 days old, older than the 14-day release period"
        ),
        "{index}"
    );
    // rawhide is nightly-only: no release is expected, so no warning for it.
    assert_eq!(index.matches("class=\"warning\"").count(), 1);
}

#[test]
fn candidates_awaiting_testing_are_listed_with_how_to_vote() {
    let f = fixture("x");
    publish(&f.settings, &f.store, f.released_at).unwrap();
    let page = read(&f.store.site_dir().join("streams/f43.html"));
    assert!(
        page.contains("<strong>43.20261120.0</strong> (x86_64, aarch64): karma 1 of 3"),
        "{page}"
    );
    assert!(page.contains("fortnight vote f43 43.20261120.0 +1"));
    assert!(
        !page.contains("<strong>43.20261121.0</strong>"),
        "a failed nightly is no candidate"
    );
    assert!(
        page.contains("<th scope=\"row\">43.20261121.0</th><td class=\"status-failed\">failed</td><td class=\"status-building\">building</td>"),
        "nightly table shows test state per arch: {page}"
    );
}

#[test]
fn stream_json_follows_coreos_stream_metadata() {
    let f = fixture("x");
    publish(&f.settings, &f.store, f.released_at).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&read(&f.store.site_dir().join("streams/f43.json"))).unwrap();
    assert_eq!(json["stream"], "f43");
    assert_eq!(json["release"], "43.20261101.0");
    assert_eq!(json["metadata"]["last-modified"], "2026-11-10T12:00:05Z");
    let x86 = &json["architectures"]["x86_64"];
    assert_eq!(x86["commit"], COMMIT_X86);
    assert_eq!(x86["ref"], "fedora/43/x86_64/atomic-host");
    let disk = &x86["artifacts"]["atomic-host"]["formats"]["qcow2"]["disk"];
    let path = disk["location"]
        .as_str()
        .unwrap()
        .strip_prefix("https://dl.example.org/pub/fortnight/")
        .unwrap();
    let bytes = fs::read(f.store.root().join(path)).unwrap();
    assert_eq!(disk["size"], bytes.len() as u64);
    assert_eq!(
        disk["sha256"],
        store::hash_file(&f.store.root().join(path))
            .unwrap()
            .sha256
            .as_str()
    );

    let rawhide: serde_json::Value =
        serde_json::from_str(&read(&f.store.site_dir().join("streams/rawhide.json"))).unwrap();
    assert_eq!(rawhide["release"], serde_json::Value::Null);
}

#[test]
fn a_stream_at_its_end_of_life_says_so_and_points_to_its_successor() {
    let f = fixture("x");
    // The example every message test uses: f43 ends, its x86_64 machines move to f44.
    let example = tests::records::one_of_each_topic()
        .into_iter()
        .find(|m| m.topic == messages::StreamEndOfLife::TOPIC)
        .unwrap();
    let ended: messages::StreamEndOfLife =
        serde_json::from_value(serde_json::Value::Object(example.body)).unwrap();
    store::write_json(&f.store.end_of_life_path(&ended.stream), &ended).unwrap();
    // Long past its period: an ended stream's age warns nobody.
    publish(&f.settings, &f.store, f.released_at + Duration::days(200)).unwrap();

    let page = read(&f.store.site_dir().join("streams/f43.html")).replace("&#x2f;", "/");
    assert!(
        page.contains("<strong>End of life:</strong> Fedora Atomic Host f43 has reached end of life; its machines move to f44 (since 2027-05-18)."),
        "{page}"
    );
    assert!(
        page.contains("<a href=\"../streams/f44.html\">f44</a>"),
        "{page}"
    );
    assert!(
        page.contains("<code>fedora/44/x86_64/atomic-host</code>"),
        "{page}"
    );
    assert!(!page.contains("days old"), "no stale warning: {page}");

    let json: serde_json::Value =
        serde_json::from_str(&read(&f.store.site_dir().join("streams/f43.json"))).unwrap();
    let eol = &json["end_of_life"];
    assert_eq!(eol["at"], "2027-05-18T00:00:00Z");
    assert_eq!(eol["successor"], "f44");
    assert_eq!(eol["arches"][0]["arch"], "x86_64");
    assert_eq!(eol["arches"][0]["rebase"], "fedora/44/x86_64/atomic-host");
    assert_eq!(eol["arches"][0]["commit"], "cd".repeat(32));
    let rawhide: serde_json::Value =
        serde_json::from_str(&read(&f.store.site_dir().join("streams/rawhide.json"))).unwrap();
    assert_eq!(rawhide["end_of_life"], serde_json::Value::Null);
}

#[test]
fn latest_links_resolve_to_the_released_images() {
    let f = fixture("x");
    publish(&f.settings, &f.store, f.released_at).unwrap();
    let link = f.store.site_dir().join("latest/f43-x86_64.qcow2");
    let expected = f.store.image_path(
        &"f43".parse().unwrap(),
        &v("43.20261101.0"),
        &"x86_64".parse().unwrap(),
        &"qcow2".parse().unwrap(),
    );
    assert_eq!(fs::read(&link).unwrap(), fs::read(expected).unwrap());
}

#[test]
fn feed_lists_releases_and_values_are_escaped() {
    let f = fixture("Read <b>this</b> & that");
    publish(&f.settings, &f.store, f.released_at).unwrap();
    let feed = read(&f.store.site_dir().join("releases.atom"));
    assert!(feed.starts_with("<?xml"));
    assert!(feed.contains("<title>f43 43.20261101.0 released</title>"));
    assert!(feed.contains("<updated>2026-11-10T12:00:05Z</updated>"));
    let index = read(&f.store.site_dir().join("index.html"));
    assert!(
        index.contains("Read &lt;b&gt;this&lt;&#x2f;b&gt; &amp; that"),
        "{index}"
    );
}

#[test]
fn republishing_swaps_generations_and_keeps_only_a_few() {
    let f = fixture("x");
    let mut generations = Vec::new();
    for n in 0..5 {
        generations
            .push(publish(&f.settings, &f.store, f.released_at + Duration::seconds(n)).unwrap());
    }
    let live = fs::canonicalize(f.store.site_dir()).unwrap();
    assert_eq!(live, fs::canonicalize(generations.last().unwrap()).unwrap());
    assert!(
        fs::symlink_metadata(f.store.site_dir())
            .unwrap()
            .is_symlink()
    );
    let kept = fs::read_dir(f.store.root().join(".site"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(kept, 3);
    assert!(
        !generations[0].exists(),
        "the oldest generation was removed"
    );
}

#[test]
fn a_clock_stepping_back_never_removes_the_live_generation() {
    let f = fixture("x");
    for n in 10..13 {
        publish(&f.settings, &f.store, f.released_at + Duration::seconds(n)).unwrap();
    }
    // Named older than the three before it, yet it is the one the site now points at.
    let live = publish(&f.settings, &f.store, f.released_at).unwrap();
    assert_eq!(
        fs::canonicalize(f.store.site_dir()).unwrap(),
        fs::canonicalize(&live).unwrap()
    );
    assert!(f.store.site_dir().join("index.html").is_file());
}

#[test]
fn an_image_path_leaving_the_store_never_becomes_a_link() {
    let f = fixture("x");
    let stream = "f43".parse().unwrap();
    let path = f
        .store
        .release_dir(&stream, &v("43.20261101.0"))
        .join("release.json");
    let mut release: ReleasePublished = store::read_json(&path).unwrap().unwrap();
    let x86: Arch = "x86_64".parse().unwrap();
    release.arches.get_mut(&x86).unwrap().images[0].path = "../../etc/passwd".into();
    store::write_json(&path, &release).unwrap();
    publish(&f.settings, &f.store, f.released_at).unwrap();
    let index = read(&f.store.site_dir().join("index.html"));
    assert!(!index.contains("passwd"));
    assert!(!f.store.site_dir().join("latest/f43-x86_64.qcow2").exists());
    assert!(
        f.store.site_dir().join("latest/f43-x86_64.raw.xz").exists(),
        "the other image still links"
    );
}

fn incoming(topic: &str, body: serde_json::Value) -> Incoming {
    Incoming {
        id: Some("test".into()),
        routing_key: topic.into(),
        topic: topic.into(),
        headers: BTreeMap::new(),
        body: body.as_object().cloned().unwrap_or_default(),
        user_id: None,
    }
}

#[tokio::test]
async fn step_publishes_on_valid_messages_and_rejects_bad_ones() {
    let f = fixture("x");
    let step = SitePublisher::new(Arc::clone(&f.settings)).unwrap();
    let skipped = serde_json::json!({"stream": "f43", "period": "2026-11-17T12:00:00Z", "candidates": [], "policy": "skip"});

    let outcome = bus::outcome(
        &step,
        &incoming("fortnight.release.skipped", skipped.clone()),
    )
    .await;
    assert_eq!(outcome, Outcome::Done(vec![]));
    assert!(f.store.site_dir().join("index.html").exists());

    let mut unknown = skipped.clone();
    unknown["stream"] = "f99".into();
    let outcome = bus::outcome(&step, &incoming("fortnight.release.skipped", unknown)).await;
    assert!(
        matches!(outcome, Outcome::Reject { ref reason } if reason.contains("f99")),
        "{outcome:?}"
    );

    let mut traversal = skipped;
    traversal["stream"] = "../etc".into();
    let outcome = bus::outcome(&step, &incoming("fortnight.release.skipped", traversal)).await;
    assert!(
        matches!(outcome, Outcome::Reject { ref reason } if reason.contains("stream")),
        "{outcome:?}"
    );

    let outcome = bus::outcome(
        &step,
        &incoming(
            "fortnight.karma.threshold.reached",
            serde_json::json!({"stream": "f43"}),
        ),
    )
    .await;
    assert!(
        matches!(outcome, Outcome::Reject { ref reason } if reason.contains("missing field")),
        "{outcome:?}"
    );
}

#[test]
fn step_binds_every_topic_that_changes_the_page() {
    let f = fixture("x");
    let topics = SitePublisher::topics(&f.settings);
    for topic in [
        "fortnight.release.published",
        "fortnight.release.skipped",
        "fortnight.image.tests.passed",
        "fortnight.image.tests.failed",
        "fortnight.candidate.testing.requested",
        "fortnight.karma.threshold.reached",
        "fortnight.stream.end-of-life",
    ] {
        assert!(topics.iter().any(|t| t == topic), "{topic}");
    }
}
