//! Publishing a record file, as `fortnight publish` and `replay` do for an operator replaying a
//! backlog: every record confirmed, and routed to a queue (`mandatory`), with up to `WINDOW`
//! sent and unconfirmed. Each implementation runs as its own process and reads the same
//! file of `BENCH_PUBLISH_RECORDS` (default 20,000) records, `BENCH_ROUNDS` (default 5) times:
//!
//! - `raw lapin`: the smallest loop with the same guarantee and the same window: read a line,
//!   parse it, publish, await the oldest confirm when the window is full. The ceiling;
//! - `Publisher`: [`bus::Publisher::publish_records`], what `fortnight publish` runs;
//! - `fortnight publish`: the binary itself (`BENCH_FORTNIGHT`, else `fortnight` next to this
//!   bench's profile directory when built), timed from start to exit: it also checks every
//!   line before sending the first.
//!
//! msgs/s is from the first publish to the last confirm (the binary: its whole run); peak RSS
//! is the process's VmHWM.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};
use messages::RecordLine;
use serde_json::json;

use super::env_or;

const TOPIC: &str = "bench.publish";
const DEFAULT_WINDOW: usize = 25;

fn window() -> usize {
    env_or("BENCH_WINDOW", DEFAULT_WINDOW)
}

/// The records, read and parsed one line at a time.
fn records(file: &Path) -> impl Iterator<Item = (usize, RecordLine)> {
    let file = std::fs::File::open(file).expect("record file");
    BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(index, line)| {
            let line = line.expect("readable record file");
            let record = RecordLine::parse(&line, index + 1).expect("valid record");
            (index + 1, record)
        })
}

/// Prints how long publishing took, for the driver.
fn report(began: Instant) {
    println!("{}", began.elapsed().as_secs_f64());
}

pub async fn role_raw() {
    let file = PathBuf::from(std::env::var("BENCH_FILE").expect("BENCH_FILE"));
    let exchange = std::env::var("BENCH_EXCHANGE").expect("BENCH_EXCHANGE");
    let connection = super::connect().await;
    let channel = super::confirm_channel(&connection).await;
    let mandatory = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let window = window();
    let mut in_flight = VecDeque::with_capacity(window);
    let began = Instant::now();
    for (_, record) in records(&file) {
        if in_flight.len() == window {
            settle(in_flight.pop_front()).await;
        }
        let body = serde_json::to_vec(&record.body).expect("json");
        let confirm = channel
            .basic_publish(
                &exchange,
                &record.topic,
                mandatory,
                &body,
                super::properties(),
            )
            .await
            .expect("publish");
        in_flight.push_back(confirm);
    }
    while !in_flight.is_empty() {
        settle(in_flight.pop_front()).await;
    }
    report(began);
    let _ = connection.close(200, "done").await;
}

async fn settle(confirm: Option<lapin::publisher_confirm::PublisherConfirm>) {
    let confirmation = confirm.expect("in flight").await.expect("confirm");
    assert!(
        confirmation.is_ack() && confirmation.take_message().is_none(),
        "every record is taken by the bench queue"
    );
}

pub async fn role_publisher() {
    let file = PathBuf::from(std::env::var("BENCH_FILE").expect("BENCH_FILE"));
    let config = PathBuf::from(std::env::var("BENCH_CONFIG").expect("BENCH_CONFIG"));
    let settings = settings::BusSettings::load(Some(&config)).expect("bench configuration");
    let publisher = bus::Publisher::connect(&settings, "bench-publish")
        .await
        .expect("connect")
        .routed();
    let window = NonZeroUsize::new(window()).expect("BENCH_WINDOW is at least 1");
    let began = Instant::now();
    publisher
        .publish_records(records(&file), window)
        .await
        .expect("every record confirmed");
    report(began);
    publisher.close().await;
}

/// One implementation's rounds.
struct Row {
    name: String,
    per_second: Vec<f64>,
    peak_kib: u64,
}

impl Row {
    fn median(&self) -> f64 {
        super::median(self.per_second.clone())
    }
}

pub async fn drive(exe: &Path) {
    let count = env_or("BENCH_PUBLISH_RECORDS", 20_000);
    let rounds = env_or("BENCH_ROUNDS", 5).max(1);
    let window = window();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("fortnight-bench-publish-{id}"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let exchange = format!("bench.{id}");
    let queue = format!("bench.{id}.published");
    let file = dir.join("records.jsonl");
    write_records(&file, count);
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "amqp_url = \"{}\"\npublish_exchange = \"{exchange}\"\n",
            super::amqp_url()
        ),
    )
    .expect("bench config");

    let connection = super::connect().await;
    let channel = super::confirm_channel(&connection).await;
    declare(&channel, &exchange, &queue).await;

    let role = |role: &str| {
        let mut command = Command::new(exe);
        command
            .env("BENCH_ROLE", role)
            .env("BENCH_FILE", &file)
            .env("BENCH_EXCHANGE", &exchange)
            .env("BENCH_CONFIG", &config);
        command
    };
    let mut runs = vec![
        ("raw lapin".to_owned(), role("publish-raw"), false),
        ("Publisher".to_owned(), role("publish-publisher"), false),
    ];
    match fortnight_binary(exe) {
        Some(binary) => {
            let mut command = Command::new(&binary);
            command
                .arg("--config")
                .arg(&config)
                .args(["publish", "--window", &window.to_string()])
                .arg(&file)
                .env("FORTNIGHT_LOG", "warn");
            runs.push(("fortnight publish".to_owned(), command, true));
        }
        None => println!(
            "fortnight publish: no binary (build it with `cargo build --release -p fortnight`, or set BENCH_FORTNIGHT)"
        ),
    }
    let mut rows = Vec::new();
    for (name, mut command, wall_time) in runs {
        let mut row = Row {
            name,
            per_second: Vec::new(),
            peak_kib: 0,
        };
        for _ in 0..rounds {
            channel
                .queue_purge(&queue, QueuePurgeOptions::default())
                .await
                .expect("purge");
            let (seconds, peak_kib) = run(&mut command, wall_time);
            row.per_second.push(count as f64 / seconds);
            row.peak_kib = row.peak_kib.max(peak_kib);
            let delivered = channel
                .queue_declare(
                    &queue,
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("queue")
                .message_count();
            assert_eq!(
                delivered as usize, count,
                "{}: every record queued",
                row.name
            );
        }
        rows.push(row);
    }
    let _ = channel
        .queue_delete(&queue, QueueDeleteOptions::default())
        .await;
    let _ = channel
        .exchange_delete(&exchange, ExchangeDeleteOptions::default())
        .await;
    let _ = std::fs::remove_dir_all(&dir);

    println!();
    println!(
        "publishing {count} records, window {window}, each routed and confirmed ({rounds} rounds)"
    );
    println!(
        "{:<18} {:>26} {:>14} {:>14}",
        "implementation", "msgs/s min / median / max", "x raw lapin", "peak RSS MB"
    );
    let ceiling = rows.first().map(Row::median);
    for row in &rows {
        let mut sorted = row.per_second.clone();
        sorted.sort_by(f64::total_cmp);
        let ratio = ceiling.map_or(f64::NAN, |ceiling| row.median() / ceiling);
        println!(
            "{:<18} {:>8.0} / {:>6.0} / {:>6.0} {:>14.2} {:>14.1}",
            row.name,
            sorted[0],
            row.median(),
            sorted[sorted.len() - 1],
            ratio,
            row.peak_kib as f64 / 1024.0
        );
    }
}

/// Runs one round; returns its seconds (printed by a role, or the wall time) and peak RSS.
fn run(command: &mut Command, wall_time: bool) -> (f64, u64) {
    let began = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the publisher");
    let mut peak_kib = 0;
    let status = loop {
        peak_kib = peak_kib.max(super::status_kib(child.id(), "VmHWM:"));
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let wall = began.elapsed().as_secs_f64();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("piped"), &mut out)
        .expect("output");
    assert!(status.success(), "{command:?} failed: {out}");
    let seconds = if wall_time {
        wall
    } else {
        out.trim().parse().expect("seconds printed")
    };
    (seconds, peak_kib)
}

fn fortnight_binary(exe: &Path) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BENCH_FORTNIGHT") {
        return Some(PathBuf::from(path));
    }
    // This bench is <target>/<profile>/deps/noop-<hash>.
    let binary = exe.parent()?.parent()?.join("fortnight");
    binary.is_file().then_some(binary)
}

/// `count` records shaped like a backlog of `fortnight.tree.composed`.
fn write_records(path: &Path, count: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("record file"));
    for n in 0..count {
        let record = RecordLine {
            body: json!({
                "arch": "x86_64",
                "tree": {
                    "ref": "fedora/43/x86_64/updates/atomic-host",
                    "commit": format!("{n:064x}"),
                    "repo": "/srv/fortnight/ostree/repo"
                },
                "version": format!("43.20261127.{n}"),
                "stream": "f43",
            }),
            headers: [
                ("fedora_messaging_schema", json!("fortnight.tree.composed")),
                ("fedora_messaging_severity", json!(20)),
                ("priority", json!(0)),
                ("sent-at", json!("2026-11-27T00:00:00+00:00")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            id: Some(uuid::Uuid::new_v4().to_string()),
            priority: Some(0),
            queue: None,
            topic: TOPIC.to_owned(),
        };
        writeln!(out, "{}", record.to_line()).expect("write records");
    }
    out.flush().expect("write records");
}

async fn declare(channel: &Channel, exchange: &str, queue: &str) {
    channel
        .exchange_declare(
            exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
    channel
        .queue_declare(
            queue,
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
    channel
        .queue_bind(
            queue,
            exchange,
            TOPIC,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("binding");
}
