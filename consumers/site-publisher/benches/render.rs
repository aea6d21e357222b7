//! What one site rebuild costs after years of two-week releases. Prints figures, asserts
//! nothing. `cargo bench -p site-publisher --bench render [-- K]`.
//!
//! For N = 26 (one year) and 260 (ten years) past releases of one two-week stream (two arches,
//! two formats; each release with its test reports and three votes) plus a handful of
//! candidates awaiting votes, a real store is laid out under the target directory with the
//! rendering tests' fixture helpers (whose configuration also has a nightly-only rawhide
//! stream, empty here). Then `site_publisher::publish`, what the consumer runs for
//! every message (read the store, render the index, stream page, stream JSON and feed, write a
//! new generation, swap `site`, drop old generations), is timed K times (default 100) after one
//! untimed run that compiles the templates, as the consumer's start-up render does. The page
//! cache is warm, as it is on a server that rebuilds on every message.
//!
//! Files read per rebuild come from `/proc/self/io`: `read(2)` calls and bytes, which cover
//! the store's JSON files (about two reads each) and nothing else the rebuild does.

#[allow(dead_code)] // The bench uses the helpers, not the whole one-release fixture.
#[path = "../tests/fixture/mod.rs"]
mod fixture;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use messages::{Arch, ReleasePublished, ReleasedArch, Stream, Version};
use settings::Settings;
use store::{Store, Tier};

/// Releases laid out: one year and ten years of two-week releases.
const YEARS: [(usize, &str); 2] = [(26, "1 year"), (260, "10 years")];
/// Candidates newer than the last release, each with votes, awaiting more.
const CANDIDATES: usize = 4;
const DEFAULT_RUNS: usize = 100;
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];

/// `43.<yyyymmdd>.0` for the nightly built on `day`.
fn version_on(day: DateTime<Utc>) -> Version {
    format!("43.{}.0", day.format("%Y%m%d")).parse().unwrap()
}

/// One release as the releaser leaves it: images and test reports per arch, three votes,
/// both tiers, release.json.
fn release(store: &Store, stream: &Stream, released_at: DateTime<Utc>) -> Version {
    let version = version_on(released_at - chrono::Duration::days(3));
    let mut arches = BTreeMap::new();
    for arch in ARCHES {
        let arch: Arch = arch.parse().unwrap();
        let images = fixture::nightly(store, &version, &arch, true);
        arches.insert(
            arch.clone(),
            ReleasedArch {
                tree: fixture::tree(arch.as_str()),
                release_ref: format!("fedora/43/{arch}/atomic-host").parse().unwrap(),
                images,
            },
        );
    }
    for user in ["alice", "bob", "carol"] {
        fixture::vote(store, &version, user, 1);
    }
    store
        .promote(stream, &version, Tier::PassedAutotest)
        .unwrap();
    store.promote(stream, &version, Tier::PassedHuman).unwrap();
    let record = ReleasePublished {
        stream: stream.clone(),
        version: version.clone(),
        arches,
        period: Some(
            released_at
                .format("%Y-%m-%dT%H:00:00Z")
                .to_string()
                .parse()
                .unwrap(),
        ),
        forced: false,
        reason: "newest candidate that passed tests and karma".into(),
        previous: None,
        released_at,
        changes: None,
        prerelease: None,
    };
    store::write_json(&store.release_record_path(stream, &version), &record).unwrap();
    version
}

/// A store with `releases` two-week releases ending 2026-11-10, then the candidates.
fn lay_out(root: &Path, releases: usize) -> (Settings, Store) {
    let settings = fixture::settings(root, "Produced automatically.");
    let store = Store::open(root).unwrap();
    let stream: Stream = "f43".parse().unwrap();
    let last = Utc.with_ymd_and_hms(2026, 11, 10, 12, 0, 5).unwrap();
    let mut previous = None;
    for i in (0..releases).rev() {
        let released_at = last - chrono::Duration::days(14 * i as i64);
        previous = Some(release(&store, &stream, released_at));
    }
    store
        .set_latest_release(&stream, &previous.expect("at least one release"))
        .unwrap();
    for i in 0..CANDIDATES {
        let version = version_on(last + chrono::Duration::days(1 + i as i64));
        for arch in ARCHES {
            fixture::nightly(&store, &version, &arch.parse().unwrap(), true);
        }
        store
            .promote(&stream, &version, Tier::PassedAutotest)
            .unwrap();
        for user in ["alice", "bob"].iter().take(1 + i % 2) {
            fixture::vote(&store, &version, user, 1);
        }
    }
    (settings, store)
}

/// `read(2)` calls and bytes read by this process so far.
fn reads() -> (u64, u64) {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field = |name: &str| {
        io.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("syscr:"), field("rchar:"))
}

/// Nearest-rank percentile of sorted times.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1000.0
}

fn main() {
    // `cargo bench` passes `--bench`; the first plain number is K.
    let runs = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .filter(|&k| k > 0)
        .unwrap_or(DEFAULT_RUNS);
    // Under the target directory, not /tmp, which may be a small tmpfs with free fsyncs.
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory");
    for (releases, span) in YEARS {
        let root = base.path().join(format!("n{releases}"));
        let started = Instant::now();
        let (settings, store) = lay_out(&root, releases);
        let laid_out = started.elapsed();

        // The consumer's start-up render: compiles the templates, warms the page cache.
        site_publisher::publish(&settings, &store, Utc::now()).expect("publish");
        let (calls_before, bytes_before) = reads();
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                site_publisher::publish(&settings, &store, Utc::now()).expect("publish");
                started.elapsed()
            })
            .collect();
        let (calls_after, bytes_after) = reads();
        times.sort();

        let feed = std::fs::metadata(store.site_dir().join("releases.atom")).map_or(0, |m| m.len());
        let page =
            std::fs::metadata(store.site_dir().join("streams/f43.html")).map_or(0, |m| m.len());
        println!(
            "site rebuild, N = {releases} releases ({span}) + {CANDIDATES} candidates, {runs} runs: \
             p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; per rebuild {} read(2) calls, {:.0} KiB read; \
             feed {:.0} KiB, stream page {:.0} KiB (store laid out in {:.1} s)",
            ms(percentile(&times, 50.0)),
            ms(percentile(&times, 99.0)),
            ms(times[times.len() - 1]),
            (calls_after - calls_before) / runs as u64,
            (bytes_after - bytes_before) as f64 / runs as f64 / 1024.0,
            feed as f64 / 1024.0,
            page as f64 / 1024.0,
            laid_out.as_secs_f64(),
        );
    }
}
