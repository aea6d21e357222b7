//! Release notes end to end: nightlies whose trees carry a real RPM database
//! (`deploy/tests/fixtures/rpmdb-tree`) released by the releaser on the real broker and a real
//! OSTree repository; the notes checked in `fortnight.release.published`, `release.json`, the
//! page, the Atom feed, `fortnight diff` and `fortnight explain`.

use std::path::Path;

use messages::ReleasePublished;
use release_notes::{Packages, ReleaseRecord};
use serde_json::json;
use tests::pipeline::{ARCHES, Options, Pipeline, version, wait_topic};
use tests::process::{assert_success, text};

const PUBLISHED: &str = "fortnight.release.published";
const OLD: &str = "43.20261103.0";
const NEW: &str = "43.20261117.0";
const NEXT: &str = "43.20261118.0";
/// Between OLD and NEW: one package upgraded, one added, one removed, one unchanged.
const OLD_PACKAGES: &[&str] = &[
    "fortnight-base=1.0-1",
    "fortnight-tools=1.0-1",
    "fortnight-legacy=0.9-1",
];
const NEW_PACKAGES: &[&str] = &[
    "fortnight-base=1.0-1",
    "fortnight-tools=1.1-1",
    "fortnight-extra=0.1-1",
];

/// `fortnight --config CONFIG ARGS...`, which must succeed; its standard output.
fn fortnight_ok(config: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("FORTNIGHT_LOG", "warn")
        .output()
        .unwrap();
    assert_success(&output, &format!("fortnight {args:?}"));
    text(&output.stdout)
}

/// Releases the nightly `version` (every arch passed, karma advisory) at the tick of
/// `period`; returns every `release.published` body seen so far.
async fn release(
    p: &Pipeline,
    watch: &mut tests::Watch,
    version: &str,
    packages: &[&str],
    period: &str,
    count: usize,
) -> Vec<ReleasePublished> {
    p.nightly_tested_with_packages(version, packages).await;
    p.tick(period).await;
    let published = wait_topic(watch, PUBLISHED, count).await;
    assert_eq!(published.len(), count, "release of {version}");
    published
        .iter()
        .map(|line| serde_json::from_value(line.body.clone()).unwrap())
        .collect()
}

/// The first `<ul class="packages KIND">` list of `page`, up to its `</ul>`.
fn package_list<'a>(page: &'a str, kind: &str) -> &'a str {
    let start = page
        .find(&format!("<ul class=\"packages {kind}\">"))
        .unwrap_or_else(|| panic!("no {kind} list in {page}"));
    let end = start + page[start..].find("</ul>").unwrap();
    &page[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_lists_the_packages_upgraded_added_and_removed_since_the_previous_one() {
    let p = Pipeline::start(Options {
        karma_required: false,
        ..Options::default()
    })
    .await;
    let mut watch = p.watch(&[PUBLISHED]).await;
    let first = release(&p, &mut watch, OLD, OLD_PACKAGES, "2026-11-03T12:00:00Z", 1).await;
    assert_eq!(
        first[0].changes, None,
        "a stream's first release has nothing to compare with"
    );
    let both = release(&p, &mut watch, NEW, NEW_PACKAGES, "2026-11-17T12:00:00Z", 2).await;

    // The message: counts and a link, per arch.
    let changes = both[1]
        .changes
        .as_ref()
        .expect("the second release has changes");
    assert_eq!(changes.against, version(OLD));
    assert_eq!(
        changes.url,
        format!(
            "{}/tw/releases/{NEW}/release.json",
            p.settings.site.base_url.trim_end_matches('/')
        )
    );
    assert_eq!(changes.arches.len(), ARCHES.len());
    for counts in changes.arches.values() {
        assert_eq!(
            serde_json::to_value(counts).unwrap(),
            json!({
                "packages": {"added": 1, "removed": 1, "upgraded": 1, "downgraded": 0},
                "commits": 1,
                // os-release and the RPM database changed; nothing else.
                "files": {"added": 0, "modified": 2, "removed": 0},
            })
        );
    }

    // release.json: the full lists.
    let record: ReleaseRecord = store::read_json(&p.release_dir(NEW).join("release.json"))
        .unwrap()
        .unwrap();
    assert_eq!(
        record.published, both[1],
        "release.json holds the body as sent"
    );
    let notes = record.notes.expect("release.json has the notes");
    for arch in ARCHES {
        let Packages::Compared(diff) = &notes.arches[&arch.parse().unwrap()].packages else {
            panic!("{arch}: both trees have an RPM database");
        };
        assert_eq!(
            serde_json::to_value(diff).unwrap(),
            json!({
                "added": [{"name": "fortnight-extra", "arch": "noarch", "evr": "0.1-1"}],
                "removed": [{"name": "fortnight-legacy", "arch": "noarch", "evr": "0.9-1"}],
                "upgraded": [{"name": "fortnight-tools", "arch": "noarch", "from": "1.0-1", "to": "1.1-1"}],
                "downgraded": [],
            })
        );
    }

    // The page and the feed, rendered from the store as the site publisher does.
    site_publisher::publish(&p.settings, &p.store, chrono::Utc::now()).unwrap();
    let site = p.settings.store.root.join("site");
    let page = std::fs::read_to_string(site.join("streams/tw.html")).unwrap();
    assert!(
        page.contains(&format!("What changed since {OLD}")),
        "{page}"
    );
    assert_eq!(
        package_list(&page, "upgraded"),
        "<ul class=\"packages upgraded\"><li><code>fortnight-tools</code> 1.0-1 → 1.1-1</li>"
    );
    assert_eq!(
        package_list(&page, "added"),
        "<ul class=\"packages added\"><li><code>fortnight-extra</code> 0.1-1</li>"
    );
    assert_eq!(
        package_list(&page, "removed"),
        "<ul class=\"packages removed\"><li><code>fortnight-legacy</code> 0.9-1</li>"
    );
    let feed = std::fs::read_to_string(site.join("releases.atom")).unwrap();
    let entry = &feed[feed
        .find(&format!("<title>tw {NEW} released</title>"))
        .unwrap()..];
    let entry = &entry[..entry.find("</entry>").unwrap()];
    assert!(entry.contains("<content type=\"xhtml\">"), "{entry}");
    assert_eq!(
        package_list(entry, "upgraded"),
        package_list(&page, "upgraded"),
        "the feed entry carries the same notes"
    );
    assert!(package_list(entry, "removed").contains("fortnight-legacy"));

    // The CLI, as text and as JSON.
    let config = p.bus.write_config();
    let diff = fortnight_ok(&config, &["diff", "tw", OLD, NEW]);
    for arch in ARCHES {
        assert!(diff.contains(&format!("{arch}:")), "{diff}");
    }
    for line in [
        "upgraded fortnight-tools.noarch 1.0-1 -> 1.1-1",
        "added fortnight-extra.noarch 0.1-1",
        "removed fortnight-legacy.noarch 0.9-1",
    ] {
        assert_eq!(diff.matches(line).count(), ARCHES.len(), "{line} in {diff}");
    }
    assert!(
        !diff.contains("fortnight-base"),
        "unchanged packages are not listed: {diff}"
    );
    let as_json: serde_json::Value =
        serde_json::from_str(&fortnight_ok(&config, &["diff", "tw", OLD, NEW, "--json"])).unwrap();
    assert_eq!(
        as_json["arches"]["x86_64"]["packages"],
        serde_json::to_value(&notes.arches[&"x86_64".parse().unwrap()].packages).unwrap()
    );

    // A candidate, explained against the current release (NEW).
    p.nightly_tested_with_packages(NEXT, &["fortnight-base=1.0-1", "fortnight-tools=1.2-1"])
        .await;
    let explained = fortnight_ok(&config, &["explain", "tw", NEXT]);
    assert!(
        explained.contains(&format!(
            "what it would change against the current release: {NEW} -> {NEXT}"
        )),
        "{explained}"
    );
    assert!(
        explained.contains("upgraded fortnight-tools.noarch 1.1-1 -> 1.2-1")
            && explained.contains("removed fortnight-extra.noarch 0.1-1"),
        "{explained}"
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trees_without_an_rpm_database_say_so_instead_of_an_empty_diff() {
    let p = Pipeline::start(Options {
        karma_required: false,
        ..Options::default()
    })
    .await;
    let mut watch = p.watch(&[PUBLISHED]).await;
    release(&p, &mut watch, OLD, &[], "2026-11-03T12:00:00Z", 1).await;
    let both = release(&p, &mut watch, NEW, &[], "2026-11-17T12:00:00Z", 2).await;
    let changes = both[1].changes.as_ref().expect("changes");
    assert!(
        changes
            .arches
            .values()
            .all(|c| c.packages.is_none() && c.commits == Some(1)),
        "{changes:?}"
    );
    let record: ReleaseRecord = store::read_json(&p.release_dir(NEW).join("release.json"))
        .unwrap()
        .unwrap();
    let notes = record.notes.unwrap();
    let x86 = &notes.arches[&"x86_64".parse().unwrap()];
    assert_eq!(
        x86.packages,
        Packages::NoRpmDatabase(vec![x86.from.clone(), x86.to.clone()])
    );
    let diff = fortnight_ok(&p.bus.write_config(), &["diff", "tw", OLD, NEW]);
    assert!(
        diff.contains(&format!("no RPM database in {}", x86.from))
            && diff.contains(&format!("no RPM database in {}", x86.to)),
        "{diff}"
    );
    site_publisher::publish(&p.settings, &p.store, chrono::Utc::now()).unwrap();
    let page = std::fs::read_to_string(p.settings.store.root.join("site/streams/tw.html")).unwrap();
    assert!(
        page.contains(&format!("No RPM database in <code>{}</code>", x86.to)),
        "{page}"
    );
    p.stop().await;
}
