//! The download page in a real browser: headless Chromium loads the published site from a
//! local HTTP server; the rendered DOM must show the release table and the staleness warning.
//! Screenshots (phone and desktop widths) are saved under `target/screenshots/`.

use crate::fixture;

use std::path::PathBuf;

use chrono::Duration;
use tests::browser::{StaticServer, dump_dom, screenshot};

fn screenshots_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        )
        .join("screenshots")
}

/// The text of the first element whose opening tag contains `marker`, tags stripped.
fn element_text(dom: &str, marker: &str, closing: &str) -> String {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no element with {marker:?} in the DOM:\n{dom}"));
    let end = start + dom[start..].find(closing).expect("element is closed");
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn chromium_renders_the_release_table_and_the_staleness_warning() {
    let f = fixture::fixture(
        "These images are produced automatically and are not blocked on Fedora QA.",
    );
    site_publisher::publish(&f.settings, &f.store, f.released_at + Duration::days(20))
        .expect("site published");
    let server = StaticServer::start(f.store.root()).expect("HTTP server on 127.0.0.1");
    let url = server.url("site/index.html");

    let dom = dump_dom(&url).expect("chromium loads the page");
    let warning = element_text(&dom, "class=\"warning\"", "</p>");
    assert!(
        warning.contains(
            "the newest f43 release is 20 days old, older than the 14-day release period"
        ),
        "warning: {warning}"
    );
    let table = element_text(&dom, "<table class=\"release\"", "</table>");
    assert!(
        table.starts_with("f43 43.20261101.0 images Arch Format Size SHA-256 Tree Tests"),
        "{table}"
    );
    let body_rows = dom[dom.find("<table class=\"release\"").unwrap()..]
        .split("</table>")
        .next()
        .unwrap()
        .matches("<tr>")
        .count()
        - 1;
    assert_eq!(body_rows, 4, "two arches times two formats");
    for expected in [
        "aarch64 qcow2",
        "x86_64 raw.xz",
        fixture::COMMIT_X86,
        "2/2 passed",
    ] {
        assert!(table.contains(expected), "{expected:?} in {table}");
    }
    // The download link as the browser resolved it (minijinja's escaping undone by the parser).
    assert!(dom.contains(
        "href=\"https://dl.example.org/pub/fortnight/f43/all/43.20261101.0/x86_64/images/"
    ));

    let stream_dom =
        dump_dom(&server.url("site/streams/f43.html")).expect("chromium loads the stream page");
    let candidates = element_text(&stream_dom, "<li><strong>43.20261120.0", "</li>");
    assert!(
        candidates.contains("fortnight vote f43 43.20261120.0 +1"),
        "{candidates}"
    );

    let dir = screenshots_dir();
    screenshot(&url, &dir.join("site-phone.png"), 412, 1400).expect("phone screenshot");
    screenshot(&url, &dir.join("site-desktop.png"), 1280, 1000).expect("desktop screenshot");
}
