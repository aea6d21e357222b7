//! Benchmark of a no-op step: consume, validate, publish one message with a confirm, ack.
//! The implementations run as separate processes against the real broker, driven the same
//! way, and are printed side by side:
//!
//! - `fortnight`: [`bus::run`] with a step that reads the body's `n` and returns one message;
//! - `fortnight, quorum`: the same with `quorum_queue = true` and quorum queues on both sides
//!   of the hop (its input and the queue its result goes to), what a cluster deployment runs;
//! - `raw lapin, one at a time`: the smallest lapin loop with the same guarantees (parse,
//!   publish, await the confirm, then ack), one message at a time;
//! - `ceiling`: the broker's ceiling for the same guarantee and the same window (prefetch
//!   25): a raw lapin loop that publishes each result as its input arrives, keeps the
//!   confirms outstanding and acks each run of inputs whose results are confirmed with one
//!   `multiple` ack, in delivery order. Every row is reported as a ratio of it;
//! - `fedora-messaging`: `fm_consumer.py` with the Python reference client (interpreter from
//!   `FM_PYTHON`, default `/tmp/fmvenv/bin/python`); skipped when it cannot start.
//!
//! Throughput: `BENCH_MESSAGES` (default 5000) messages are queued before the consumer
//! starts; msgs/s is measured from its first result to its last. Latency: 500 rounds of one
//! message in flight, from publish to result. RSS: the consumer process after 2 s idle, and its
//! peak (VmHWM) after the throughput phase. `BENCH_ROUNDS` (default 5) rounds of `fortnight`,
//! `raw lapin, one at a time` and `ceiling`, interleaved so that a machine shared with other
//! work loads them alike, reported as min / median / max; the slow quorum and Python rows run
//! in the first round only.
//!
//! Then publishing a record file with a window of confirms, `fortnight publish` against a raw
//! client with the same window: see `support/publish.rs`.
//!
//! `cargo bench -p bus --bench noop` (AMQP URL from `FORTNIGHT_TEST_AMQP_URL`, where a
//! `?frame_max=` shows what the frame size costs); `BENCH_ONLY=consume` or `publish` runs one
//! half.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{Outputs, Step, StepError};
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::protocol::basic::AMQPProperties;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use messages::{Incoming, Outgoing, Severity};
use serde_json::{Map, Value};

#[path = "support/publish.rs"]
mod publish;

const LATENCY_ROUNDS: usize = 500;
/// The runtime's default `qos.prefetch_count`, the window every loop here works with.
const PREFETCH: u16 = 25;
const CEILING: &str = "ceiling";
const IN: &str = "bench.in";
const OUT: &str = "bench.out";

fn amqp_url() -> String {
    std::env::var("FORTNIGHT_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match std::env::var("BENCH_ROLE").as_deref() {
        Ok("fortnight") => runtime.block_on(role_fortnight()),
        Ok("raw") => runtime.block_on(role_raw()),
        Ok("ceiling") => runtime.block_on(role_ceiling()),
        Ok("publish-raw") => runtime.block_on(publish::role_raw()),
        Ok("publish-publisher") => runtime.block_on(publish::role_publisher()),
        // `cargo bench` passes --bench; `cargo test --all-targets` runs this too, without it.
        _ if std::env::args().any(|a| a == "--bench") => {
            let only = std::env::var("BENCH_ONLY").unwrap_or_default();
            if only != "publish" {
                runtime.block_on(drive());
            }
            if only != "consume" {
                let exe = std::env::current_exe().expect("own path");
                runtime.block_on(publish::drive(&exe));
            }
        }
        _ => println!("benchmark skipped; run it with `cargo bench -p bus --bench noop`"),
    }
}

/// The no-op step.
struct Noop;

impl Step for Noop {
    const NAME: &'static str = "bench";
    type Input = ();

    fn topics(_: &settings::BusSettings) -> Vec<String> {
        vec![IN.to_owned()]
    }

    async fn handle(&self, _: (), message: &Incoming) -> Result<Outputs, StepError> {
        match message.body.get("n").and_then(Value::as_u64) {
            Some(n) => Ok(vec![result(n)]),
            None => Err(StepError::permanent("no `n`")),
        }
    }
}

fn result(n: u64) -> Outgoing {
    let mut body = Map::new();
    body.insert("n".into(), Value::from(n));
    Outgoing {
        id: uuid::Uuid::new_v4(),
        topic: OUT.to_owned(),
        body,
        schema: OUT.to_owned(),
        severity: Severity::Info,
        priority: 0,
        users: Vec::new(),
    }
}

async fn role_fortnight() {
    // Warnings and errors reach the bench's output (FORTNIGHT_LOG=warn).
    bus::init_tracing();
    let path = PathBuf::from(std::env::var("BENCH_CONFIG").expect("BENCH_CONFIG"));
    let settings = settings::Settings::load(&path).expect("bench configuration");
    bus::run(&settings, Arc::new(Noop), bus::shutdown_signal())
        .await
        .expect("the runtime stops cleanly");
}

async fn connect() -> Connection {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    Connection::connect(&amqp_url(), properties)
        .await
        .expect("the broker accepts connections")
}

async fn confirm_channel(connection: &Connection) -> Channel {
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    channel
}

/// The envelope fedora-messaging expects, so its consumer takes the same path as with real
/// traffic, signed by the bench's broker user as every Fortnight publisher signs: the runtime
/// trusts `bench.in` from its own account only.
fn properties() -> AMQPProperties {
    let uri: lapin::uri::AMQPUri = amqp_url().parse().expect("a valid AMQP URL");
    let mut headers = FieldTable::default();
    headers.insert(
        "fedora_messaging_schema".into(),
        AMQPValue::LongString("base.message".into()),
    );
    headers.insert("fedora_messaging_severity".into(), AMQPValue::LongInt(20));
    AMQPProperties::default()
        .with_headers(headers)
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_message_id(uuid::Uuid::new_v4().to_string().into())
        .with_user_id(uri.authority.userinfo.username.as_str().into())
}

/// The raw loops' consumer: the bench's queue with a window of [`PREFETCH`], on a confirm
/// channel, and the exchange results go to.
async fn raw_consumer() -> (Connection, Channel, lapin::Consumer, String) {
    let exchange = std::env::var("BENCH_EXCHANGE").expect("BENCH_EXCHANGE");
    let queue = std::env::var("BENCH_QUEUE").expect("BENCH_QUEUE");
    let connection = connect().await;
    let channel = confirm_channel(&connection).await;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .expect("qos");
    let consumer = channel
        .basic_consume(
            &queue,
            "raw",
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    (connection, channel, consumer, exchange)
}

/// The result for an input, or `None` when it has no `n`.
fn raw_result(delivery: &lapin::message::Delivery) -> Option<Vec<u8>> {
    let n = serde_json::from_slice::<Value>(&delivery.data)
        .ok()
        .and_then(|v| v.get("n").and_then(Value::as_u64))?;
    Some(serde_json::to_vec(&serde_json::json!({ "n": n })).expect("json"))
}

async fn publish_result(
    channel: &Channel,
    exchange: &str,
    body: &[u8],
) -> lapin::publisher_confirm::PublisherConfirm {
    channel
        .basic_publish(
            exchange,
            OUT,
            BasicPublishOptions::default(),
            body,
            properties(),
        )
        .await
        .expect("publish")
}

/// The same guarantees as the runtime, one message at a time, nothing else.
async fn role_raw() {
    let (_connection, channel, mut consumer, exchange) = raw_consumer().await;
    let shutdown = bus::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let delivery = tokio::select! {
            () = &mut shutdown => break,
            delivery = consumer.next() => delivery,
        };
        let Some(Ok(delivery)) = delivery else { break };
        let Some(body) = raw_result(&delivery) else {
            delivery.acker.nack(Default::default()).await.expect("nack");
            continue;
        };
        let confirm = publish_result(&channel, &exchange, &body).await;
        assert!(!confirm.await.expect("confirm").is_nack(), "broker nacked");
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .expect("ack");
    }
}

/// The broker's ceiling for the runtime's guarantee and window: each result is published as
/// its input arrives, the confirms stay outstanding, and every run of inputs whose results
/// are confirmed is acked, in delivery order, with one `multiple` ack.
async fn role_ceiling() {
    let (_connection, channel, mut consumer, exchange) = raw_consumer().await;
    let shutdown = bus::shutdown_signal();
    tokio::pin!(shutdown);
    let mut window: VecDeque<(
        lapin::acker::Acker,
        lapin::publisher_confirm::PublisherConfirm,
    )> = VecDeque::with_capacity(usize::from(PREFETCH));
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            confirmation = async { (&mut window.front_mut().expect("guarded").1).await }, if !window.is_empty() => {
                assert!(!confirmation.expect("confirm").is_nack(), "broker nacked");
                let (mut last, _) = window.pop_front().expect("just confirmed");
                let mut run = 1;
                while let Some((_, confirm)) = window.front_mut() {
                    match confirm.now_or_never() {
                        Some(confirmation) => {
                            assert!(!confirmation.expect("confirm").is_nack(), "broker nacked");
                            last = window.pop_front().expect("just confirmed").0;
                            run += 1;
                        }
                        None => break,
                    }
                }
                last.ack(BasicAckOptions { multiple: run > 1 }).await.expect("ack");
            }
            delivery = consumer.next() => {
                let Some(Ok(delivery)) = delivery else { break };
                let Some(body) = raw_result(&delivery) else {
                    panic!("the driver sends only inputs with `n`");
                };
                let confirm = publish_result(&channel, &exchange, &body).await;
                window.push_back((delivery.acker, confirm));
            }
        }
    }
}

#[derive(Debug)]
struct Row {
    name: &'static str,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    rss_kib: u64,
    peak_kib: u64,
}

/// One implementation's names on the broker.
struct Setup {
    exchange: String,
    queue: String,
    dir: PathBuf,
    /// Whether the input and result queues are quorum queues.
    quorum: bool,
}

/// Starts one implementation's consumer process for a setup; `None` when it cannot.
type Start = Box<dyn Fn(&Setup) -> Option<Child>>;

/// How one implementation is started, and how often.
struct Contender {
    name: &'static str,
    messages: usize,
    quorum: bool,
    /// Runs in every round; else in the first only.
    every_round: bool,
    start: Start,
}

async fn drive() {
    let messages: usize = env_or("BENCH_MESSAGES", 5000);
    let rounds = env_or("BENCH_ROUNDS", 5).max(1);
    let python = std::env::var("FM_PYTHON").unwrap_or_else(|_| "/tmp/fmvenv/bin/python".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/fm_consumer.py");
    let exe = std::env::current_exe().expect("own path");

    let fortnight = |exe: PathBuf| {
        move |s: &Setup| {
            let config = s.dir.join("bench.toml");
            std::fs::write(
                &config,
                format!(
                    "amqp_url = \"{}\"\npublish_exchange = \"{}\"\n[store]\nroot = \"{}\"\n\
                     [streams]\n[qos]\nprefetch_count = {PREFETCH}\n\
                     [consumers.bench]\nqueue = \"{}\"\nquorum_queue = {}\n",
                    amqp_url(),
                    s.exchange,
                    s.dir.display(),
                    s.queue,
                    s.quorum
                ),
            )
            .expect("bench config");
            Command::new(&exe)
                .env("BENCH_ROLE", "fortnight")
                .env("BENCH_CONFIG", &config)
                .env("FORTNIGHT_LOG", "warn")
                .stdin(Stdio::null())
                .spawn()
                .ok()
        }
    };
    let raw = |exe: PathBuf, role: &'static str| {
        move |s: &Setup| {
            Command::new(&exe)
                .env("BENCH_ROLE", role)
                .env("BENCH_EXCHANGE", &s.exchange)
                .env("BENCH_QUEUE", &s.queue)
                .stdin(Stdio::null())
                .spawn()
                .ok()
        }
    };
    let python_consumer = move |s: &Setup| {
        let config = s.dir.join("fm.toml");
        std::fs::write(
            &config,
            format!(
                "amqp_url = \"{}\"\npublish_exchange = \"{}\"\n\
                 [qos]\nprefetch_count = {PREFETCH}\nprefetch_size = 0\n",
                amqp_url(),
                s.exchange
            ),
        )
        .expect("fedora-messaging config");
        Command::new(&python)
            .arg(&script)
            .env("FEDORA_MESSAGING_CONF", &config)
            .env("BENCH_EXCHANGE", &s.exchange)
            .env("BENCH_QUEUE", &s.queue)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .ok()
    };
    let contenders = [
        Contender {
            name: CEILING,
            messages,
            quorum: false,
            every_round: true,
            start: Box::new(raw(exe.clone(), "ceiling")),
        },
        Contender {
            name: "fortnight",
            messages,
            quorum: false,
            every_round: true,
            start: Box::new(fortnight(exe.clone())),
        },
        Contender {
            name: "raw lapin, one at a time",
            messages,
            quorum: false,
            every_round: true,
            start: Box::new(raw(exe.clone(), "raw")),
        },
        Contender {
            name: "fortnight, quorum",
            messages,
            quorum: true,
            every_round: false,
            start: Box::new(fortnight(exe.clone())),
        },
        // The Python client is far slower; a smaller batch keeps the run short.
        Contender {
            name: "fedora-messaging",
            messages: (messages / 5).max(100),
            quorum: false,
            every_round: false,
            start: Box::new(python_consumer),
        },
    ];
    let mut rows = Vec::new();
    for round in 0..rounds {
        for contender in contenders.iter().filter(|c| round == 0 || c.every_round) {
            let measured = measure(
                contender.name,
                contender.messages,
                contender.quorum,
                &*contender.start,
            )
            .await;
            rows.extend(measured);
        }
    }

    println!();
    println!(
        "no-op step: consume, validate, publish one message with confirm, ack ({messages} messages, window {PREFETCH}; fedora-messaging {}); {rounds} rounds",
        (messages / 5).max(100)
    );
    println!(
        "{:<26} {:>24} {:>10} {:>8} {:>8} {:>12} {:>12}",
        "implementation",
        "msgs/s min / median / max",
        "x ceiling",
        "p50 ms",
        "p99 ms",
        "idle RSS MB",
        "peak RSS MB"
    );
    let of = |name: &str| -> Vec<&Row> { rows.iter().filter(|r| r.name == name).collect() };
    let ceiling = median(of(CEILING).iter().map(|r| r.per_second).collect());
    for contender in &contenders {
        let runs = of(contender.name);
        if runs.is_empty() {
            println!("{:<26} did not run (see the message above)", contender.name);
            continue;
        }
        let mut per_second: Vec<f64> = runs.iter().map(|r| r.per_second).collect();
        per_second.sort_by(f64::total_cmp);
        let middle = median(per_second.clone());
        let ms = |pick: fn(&Row) -> Duration| {
            median(runs.iter().map(|r| pick(r).as_secs_f64() * 1e3).collect())
        };
        let mib =
            |pick: fn(&Row) -> u64| median(runs.iter().map(|r| pick(r) as f64 / 1024.0).collect());
        println!(
            "{:<26} {:>8.0} / {:>5.0} / {:>5.0} {:>10.2} {:>8.2} {:>8.2} {:>12.1} {:>12.1}",
            contender.name,
            per_second[0],
            middle,
            per_second[per_second.len() - 1],
            middle / ceiling,
            ms(|r| r.p50),
            ms(|r| r.p99),
            mib(|r| r.rss_kib),
            mib(|r| r.peak_kib),
        );
    }
    let quorum = median(
        of("fortnight, quorum")
            .iter()
            .map(|r| r.per_second)
            .collect(),
    );
    let classic = median(of("fortnight").iter().map(|r| r.per_second).collect());
    if quorum.is_finite() && classic.is_finite() {
        println!(
            "quorum queues: {:.2}x the throughput of classic ones",
            quorum / classic
        );
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median, NaN for none.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs one implementation through the throughput, idle and latency phases.
async fn measure(
    name: &'static str,
    messages: usize,
    quorum: bool,
    start: &dyn Fn(&Setup) -> Option<Child>,
) -> Option<Row> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("fortnight-bench-{id}"));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let setup = Setup {
        exchange: format!("bench.{id}"),
        queue: format!("bench.{id}.in"),
        dir,
        quorum,
    };
    let connection = connect().await;
    let channel = confirm_channel(&connection).await;
    declare(&channel, &setup).await;
    let mut results = channel
        .basic_consume(
            &format!("bench.{id}.out"),
            "driver",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume results");

    // Everything queued first, so the consumer is measured, not the driver.
    for chunk in (0..messages as u64).collect::<Vec<_>>().chunks(500) {
        let mut confirms = Vec::new();
        for n in chunk {
            confirms.push(publish_in(&channel, &setup.exchange, *n).await);
        }
        for confirm in confirms {
            confirm.await.expect("preload confirmed");
        }
    }
    let Some(mut child) = start(&setup) else {
        eprintln!("{name}: cannot start the consumer");
        cleanup(&connection, &setup, &id).await;
        return None;
    };
    let first = tokio::time::timeout(Duration::from_secs(60), results.next()).await;
    if !matches!(first, Ok(Some(Ok(_)))) {
        eprintln!("{name}: no result within 60 s");
        stop(&mut child);
        cleanup(&connection, &setup, &id).await;
        return None;
    }
    let began = Instant::now();
    for _ in 1..messages {
        results
            .next()
            .await
            .expect("result stream")
            .expect("result");
    }
    let per_second = (messages - 1) as f64 / began.elapsed().as_secs_f64();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_kib = status_kib(child.id(), "VmRSS:");
    // The high-water mark after 5000 messages went through: the loaded figure.
    let peak_kib = status_kib(child.id(), "VmHWM:");

    let mut latencies = Vec::with_capacity(LATENCY_ROUNDS);
    for n in 0..LATENCY_ROUNDS as u64 {
        let sent = Instant::now();
        publish_in(&channel, &setup.exchange, n)
            .await
            .await
            .expect("confirmed");
        results
            .next()
            .await
            .expect("result stream")
            .expect("result");
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    stop(&mut child);
    cleanup(&connection, &setup, &id).await;
    Some(Row {
        name,
        per_second,
        p50: latencies[latencies.len() / 2],
        p99: latencies[latencies.len() * 99 / 100],
        rss_kib,
        peak_kib,
    })
}

async fn declare(channel: &Channel, setup: &Setup) {
    channel
        .exchange_declare(
            &setup.exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("exchange");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let out = setup.queue.replace(".in", ".out");
    let mut arguments = FieldTable::default();
    if setup.quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    channel
        .queue_declare(&setup.queue, durable, arguments.clone())
        .await
        .expect("input queue");
    channel
        .queue_declare(&out, durable, arguments)
        .await
        .expect("result queue");
    for (queue, key) in [(&setup.queue, IN), (&out, OUT)] {
        channel
            .queue_bind(
                queue,
                &setup.exchange,
                key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("binding");
    }
}

async fn publish_in(
    channel: &Channel,
    exchange: &str,
    n: u64,
) -> lapin::publisher_confirm::PublisherConfirm {
    let body = serde_json::to_vec(&serde_json::json!({ "n": n })).expect("json");
    channel
        .basic_publish(
            exchange,
            IN,
            BasicPublishOptions::default(),
            &body,
            properties(),
        )
        .await
        .expect("publish")
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

async fn cleanup(connection: &Connection, setup: &Setup, id: &str) {
    let channel = connection.create_channel().await.expect("channel");
    for queue in [
        setup.queue.clone(),
        format!("bench.{id}.out"),
        format!("{}.dead", setup.queue),
    ]
    .into_iter()
    .chain(
        [10, 60, 300]
            .iter()
            .map(|s| format!("{}.retry.{s}s", setup.queue)),
    ) {
        let _ = channel
            .queue_delete(&queue, QueueDeleteOptions::default())
            .await;
    }
    let _ = channel
        .exchange_delete(&setup.exchange, ExchangeDeleteOptions::default())
        .await;
    let _ = std::fs::remove_dir_all(&setup.dir);
}

/// A memory figure of a process from /proc (`VmRSS:`, resident now, or `VmHWM:`, its peak),
/// in KiB; 0 once the process is gone.
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
