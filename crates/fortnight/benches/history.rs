//! What a decision costs after years of nightlies. Prints figures, asserts only that each
//! operation did what it names.
//!
//!     cargo bench -p fortnight --bench history [-- K]
//!
//! Three two-week streams of two arches each, with 30, then 300, then 3,000 candidates per
//! stream (one a day, so up to eight years), laid out by the writers the running system uses:
//! test reports and `passed-autotest/` as the image tester writes them (`store::write_json`,
//! `Store::promote`), votes through the karma tracker's step, releases (four per stream, among
//! the newest thirty, whose trees are real OSTree commits) and overrides (two blocks, a hold,
//! an unhold) through the releaser's step. The newest candidates are all ineligible (a block,
//! too little karma, a failed arch), so a tick publishes `fortnight.release.skipped`. Each
//! size adds older candidates to the same store.
//!
//! At each size, K times (default 20) after one untimed run:
//! - `status`: the `fortnight status` process, every stream;
//! - `explain` of the newest candidate and of the oldest, the `fortnight explain` process;
//! - a tick: the releaser's step on a tick of the current period, up to its
//!   `release.skipped`, through `bus::outcome` (no broker);
//! - a site rebuild: `site_publisher::publish`, what the site publisher runs per message.
//!
//! The in-process ones also show their `read(2)` calls (`/proc/self/io`), which count the
//! store's files read. The store lives under the target directory, not a tmpfs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, NaiveDate, Utc};
use karma_tracker::KarmaTracker;
use messages::{
    Arch, Commit, Format, Image, KarmaSubmitted, Message, Override, OverrideBlock, OverrideHold,
    OverrideRelease, OverrideUnhold, Period, ReleaseSkipped, Stream, TestReport, Tree,
    TwoweekTimerFired, Version,
};
use ostree_cli::Repo;
use releaser::Releaser;
use settings::Settings;
use store::{ImageWriter, Store, Tier};
use tests::config::{self, Table, Value, toml};
use tests::step::{incoming, published};

const SIZES: [usize; 3] = [30, 300, 3_000];
const STREAMS: [(&str, u32); 3] = [("f41", 41), ("f42", 42), ("f43", 43)];
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];
/// Candidates (newest first) whose trees are real commits and whose images exist: releases
/// are made among them.
const RECENT: usize = 30;
/// The candidates released, oldest first, by their age in days; the last is the current one.
const RELEASED: [usize; 4] = [29, 22, 15, 8];
/// Blocked: one newer than the current release, one older.
const BLOCKED: [usize; 2] = [3, 20];
const ANCHOR: &str = "2026-01-01T00:00:00Z";
const DEFAULT_RUNS: usize = 20;

/// The candidate built `age` days before `today`.
fn version(major: u32, today: NaiveDate, age: usize) -> Version {
    let day = today - Days::new(age as u64);
    format!("{major}.{}.0", day.format("%Y%m%d"))
        .parse()
        .unwrap()
}

fn failed_arch(age: usize) -> Option<&'static str> {
    (age % 11 == 5).then_some("aarch64")
}

/// +1 votes: enough for a release where one is made, never enough newer than it.
fn votes(age: usize) -> usize {
    if RELEASED.contains(&age) {
        3
    } else if age < RELEASED[RELEASED.len() - 1] {
        age % 3
    } else {
        1 + age % 3
    }
}

struct History {
    settings: Arc<Settings>,
    config: PathBuf,
    store: Store,
    repo: Repo,
    trees: PathBuf,
    tracker: KarmaTracker,
    releaser: Releaser,
    today: NaiveDate,
}

fn override_body(stream: &Stream, version: Option<&Version>, reason: &str) -> Override {
    Override {
        stream: stream.clone(),
        version: version.cloned(),
        reason: reason.to_owned(),
        operator: "ops".parse().unwrap(),
        expires: None,
    }
}

impl History {
    fn new(dir: &Path) -> Self {
        let (root, repo_path, trees) = (dir.join("store"), dir.join("repo"), dir.join("trees"));
        let repo = Repo::new(&repo_path);
        repo.init_archive().expect("ostree init");
        let mut streams = Table::new();
        for (name, major) in STREAMS {
            let refs = |kind: &str| -> Table {
                ARCHES
                    .iter()
                    .map(|a| {
                        let value = format!("fedora/{major}/{a}/{kind}");
                        ((*a).to_owned(), Value::String(value))
                    })
                    .collect()
            };
            let stream = toml! {
                arches = (Value::Array(ARCHES.iter().map(|a| Value::String((*a).into())).collect()))
                input_refs = (Value::Table(refs("atomic-host")))
                ostree_repo = (config::path(&repo_path))
                formats = ["qcow2"]
                [twoweek]
                release_refs = (Value::Table(refs("stable")))
                anchor = (ANCHOR)
            };
            streams.insert(name.to_owned(), Value::Table(stream));
        }
        let mut table = toml! {
            operators = ["ops"]
            [store]
            root = (config::path(&root))
        };
        table.insert("streams".to_owned(), Value::Table(streams));
        let text = config::to_toml(&table);
        let config = dir.join("config.toml");
        std::fs::write(&config, &text).unwrap();
        let settings = Arc::new(Settings::from_toml(&text).expect("a valid configuration"));
        Self {
            store: Store::open(&root).unwrap(),
            tracker: KarmaTracker::new(settings.clone()).unwrap(),
            releaser: Releaser::new(settings.clone()).unwrap(),
            settings,
            config,
            repo,
            trees,
            // Yesterday's nightly is the newest.
            today: Utc::now().date_naive() - Days::new(1),
        }
    }

    /// A tree committed on the arch's input ref, or a made-up commit for an old candidate
    /// that nothing will release or compare.
    fn tree(&self, major: u32, arch: &str, version: &Version, real: bool) -> Tree {
        let ostree_ref = format!("fedora/{major}/{arch}/atomic-host")
            .parse()
            .unwrap();
        let commit: Commit = if real {
            let dir = self.trees.join(format!("{version}-{arch}"));
            std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
            std::fs::write(
                dir.join("usr/lib/os-release"),
                format!("ID=fedora\nVERSION_ID={version}\n"),
            )
            .unwrap();
            self.repo
                .commit(&ostree_ref, &dir, &[("version", version.as_str())])
                .expect("ostree commit")
        } else {
            let digits: String = version
                .as_str()
                .chars()
                .filter(char::is_ascii_digit)
                .collect();
            format!("{digits:0>64}").parse().unwrap()
        };
        Tree {
            ostree_ref,
            commit,
            repo: self.repo.path().display().to_string(),
        }
    }

    /// Candidates of age `from..to` (oldest first, as nightlies arrive): reports, tier, votes.
    /// The oldest one's trees are real commits too, so that explaining it compares trees as
    /// explaining the newest does.
    async fn candidates(&self, from: usize, to: usize) {
        let format: Format = "qcow2".parse().unwrap();
        for age in (from..to).rev() {
            for (name, major) in STREAMS {
                let stream: Stream = name.parse().unwrap();
                let version = version(major, self.today, age);
                for a in ARCHES {
                    let arch: Arch = a.parse().unwrap();
                    let images = if age < RECENT {
                        let path = self.store.image_path(&stream, &version, &arch, &format);
                        let mut writer = ImageWriter::create(&path).unwrap();
                        writer.write_all(version.as_str().as_bytes()).unwrap();
                        let digest = writer.finish().unwrap();
                        vec![Image {
                            format: format.clone(),
                            path: self.store.relative(&path),
                            size: digest.size,
                            sha256: digest.sha256,
                        }]
                    } else {
                        Vec::new()
                    };
                    let report = TestReport {
                        stream: stream.clone(),
                        version: version.clone(),
                        tree: self.tree(major, a, &version, age < RECENT || age + 1 == to),
                        arch: arch.clone(),
                        images,
                        tests: Vec::new(),
                        failed: (failed_arch(age) == Some(a))
                            .then(|| "boot".to_owned())
                            .into_iter()
                            .collect(),
                    };
                    let path = self.store.tests_json_path(&stream, &version, &arch);
                    store::write_json(&path, &report).unwrap();
                }
                if failed_arch(age).is_some() {
                    continue;
                }
                self.store
                    .promote(&stream, &version, Tier::PassedAutotest)
                    .unwrap();
                for voter in ["ann", "bob", "cy"].into_iter().take(votes(age)) {
                    let vote = KarmaSubmitted {
                        stream: stream.clone(),
                        version: version.clone(),
                        user: voter.parse().unwrap(),
                        karma: 1,
                        comment: None,
                    };
                    self.step(&self.tracker, &vote, voter).await;
                }
            }
        }
    }

    async fn step<M: Message>(&self, step: &impl bus::Step, body: &M, sender: &str) {
        published(bus::outcome(step, &incoming(body, Some(sender))).await);
    }

    /// The releases and overrides, among the newest candidates, oldest first.
    async fn operate(&self) {
        for (name, major) in STREAMS {
            let stream: Stream = name.parse().unwrap();
            for age in RELEASED {
                let version = version(major, self.today, age);
                let body = override_body(&stream, Some(&version), "the release of its period");
                self.step(&self.releaser, &OverrideRelease(body), "ops")
                    .await;
            }
            for age in BLOCKED {
                let version = version(major, self.today, age);
                let body = override_body(&stream, Some(&version), "kernel regression");
                self.step(&self.releaser, &OverrideBlock(body), "ops").await;
            }
            let hold = override_body(&stream, None, "mirrors are down");
            self.step(&self.releaser, &OverrideHold(hold), "ops").await;
            let unhold = override_body(&stream, None, "mirrors are back");
            self.step(&self.releaser, &OverrideUnhold(unhold), "ops")
                .await;
        }
    }

    fn fortnight(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_fortnight"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("fortnight runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "fortnight {args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// The current period's tick of `stream`, as the release timer sends it.
    fn tick(&self, stream: &Stream) -> TwoweekTimerFired {
        let twoweek = self.settings.streams[stream].twoweek.as_ref().unwrap();
        let schedule = release_timer::Schedule::for_stream(stream, twoweek).unwrap();
        let scheduled_for: DateTime<Utc> = schedule.current(Utc::now()).expect("a tick has passed");
        TwoweekTimerFired {
            stream: stream.clone(),
            period: Period::starting_at(scheduled_for),
            scheduled_for,
            fired_at: scheduled_for,
            operator: None,
        }
    }
}

/// `read(2)` calls by this process so far.
fn read_calls() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines()
        .find_map(|line| line.strip_prefix("syscr:")?.trim().parse().ok())
        .unwrap_or(0)
}

/// Nearest-rank percentile of sorted times.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs `op` once untimed, then `runs` times; returns p50, max and `read(2)` calls per run.
async fn time<F, Fut>(runs: usize, mut op: F) -> (Duration, Duration, u64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    op().await;
    let before = read_calls();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        op().await;
        times.push(started.elapsed());
    }
    let calls = (read_calls() - before) / runs as u64;
    times.sort();
    (percentile(&times, 50.0), times[times.len() - 1], calls)
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; the first plain number is K.
    let runs = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse::<usize>().ok())
        .filter(|&k| k > 0)
        .unwrap_or(DEFAULT_RUNS);
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch directory");
    let history = History::new(base.path());
    let f43: Stream = "f43".parse().unwrap();
    let tick = history.tick(&f43);
    println!(
        "{:>6}  {:>22}  {:>22}  {:>22}  {:>26}  {:>26}",
        "N",
        "status",
        "explain newest",
        "explain oldest",
        "tick to release.skipped",
        "site rebuild"
    );
    let mut laid = 0;
    for size in SIZES {
        let started = Instant::now();
        history.candidates(laid, size).await;
        if laid == 0 {
            history.operate().await;
        }
        laid = size;
        let laid_out = started.elapsed();

        let newest = version(43, history.today, 0).to_string();
        let oldest = version(43, history.today, size - 1).to_string();
        let status = time(runs, || async {
            let out = history.fortnight(&["status"]);
            assert!(out.contains("next tick releases nothing"), "{out}");
        })
        .await;
        let explain_newest = time(runs, || async {
            let out = history.fortnight(&["explain", "f43", &newest]);
            assert!(out.contains("not releasable"), "{out}");
        })
        .await;
        let explain_oldest = time(runs, || async {
            let out = history.fortnight(&["explain", "f43", &oldest]);
            assert!(out.contains("not newer than the current release"), "{out}");
        })
        .await;
        let decided = time(runs, || async {
            let out = published(
                bus::outcome(&history.releaser, &incoming(&tick, Some("fortnight"))).await,
            );
            assert_eq!(out[0].topic, ReleaseSkipped::TOPIC);
        })
        .await;
        let site = time(runs, || async {
            site_publisher::publish(&history.settings, &history.store, Utc::now())
                .expect("the site renders");
        })
        .await;
        let cell = |(p50, max, _): (Duration, Duration, u64)| {
            format!("{:.1} ms (max {:.1})", ms(p50), ms(max))
        };
        let counted = |(p50, max, calls): (Duration, Duration, u64)| {
            format!("{:.1} ms (max {:.1}), {calls} reads", ms(p50), ms(max))
        };
        println!(
            "{size:>6}  {:>22}  {:>22}  {:>22}  {:>26}  {:>26}   (laid out in {:.0} s, {runs} runs each)",
            cell(status),
            cell(explain_newest),
            cell(explain_oldest),
            counted(decided),
            counted(site),
            laid_out.as_secs_f64(),
        );
    }
}
