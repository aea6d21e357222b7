//! Memory of `fortnight up`, every consumer and the release timer in one process, on the real
//! broker: resident (VmRSS) once every consumer is ready and 2 s idle, then after
//! `BENCH_MESSAGES` (default 2000) `fortnight.release.skipped` went through the site
//! publisher, resident and peak (VmHWM). Twice: with the URL as configured (the test broker's,
//! `FORTNIGHT_TEST_AMQP_URL`), and with it naming `frame_max=131072`, RabbitMQ's own default.
//! lapin allocates its buffers for the frame size it starts with and zero-fills them when the
//! broker's tune grows them, so a build that named no frame size had 8 MiB per connection
//! resident from the start, while a URL naming a large one costs as much only once traffic has
//! gone through the whole buffers. `BENCH_ROUNDS` (default 3) of each.
//!
//!     cargo bench -p fortnight --bench memory
//!
//! `BENCH_FORTNIGHT=/path/to/fortnight` measures another build (an older one, say) instead of
//! this package's binary.
//!
//! A single consumer's figures are in `cargo bench -p bus --bench noop`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use messages::{Outgoing, ReleaseSkipped};
use serde_json::json;
use tests::config;
use tests::{http_get, is_ready};

const WAIT: Duration = Duration::from_secs(120);

struct Figures {
    idle_kib: u64,
    loaded_kib: u64,
    peak_kib: u64,
}

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

fn wait_until(what: &str, up: &mut Child, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within {WAIT:?}");
        assert!(
            up.try_wait().expect("wait").is_none(),
            "fortnight up exited early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One run of `fortnight up` against `url`.
async fn measure(url: &str, messages: usize) -> Figures {
    let dir = tempfile::tempdir().expect("scratch directory");
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let consumer_names = registry::names();
    let (mut config, addrs) =
        config::consumers(dir.path(), &format!("bench.{id}"), &consumer_names);
    config.insert("amqp_url".to_owned(), url.into());
    let config = config::to_toml(&config);
    let path = dir.path().join("config.toml");
    std::fs::write(&path, &config).expect("bench config");
    let settings = settings::Settings::from_toml(&config).expect("bench config loads");

    let binary = std::env::var_os("BENCH_FORTNIGHT")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_fortnight").into());
    let mut up = Command::new(binary)
        .arg("--config")
        .arg(&path)
        .arg("up")
        .env("FORTNIGHT_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("fortnight up starts");
    for addr in &addrs {
        wait_until("every consumer ready", &mut up, || is_ready(*addr));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kib = status_kib(up.id(), "VmRSS:");

    let publisher = bus::Publisher::connect(&settings, "bench-memory")
        .await
        .expect("connect");
    let skipped: ReleaseSkipped = serde_json::from_value(json!({
        "stream": "f43", "period": "2026-11-24T12:00:00Z", "candidates": [], "policy": "skip"
    }))
    .expect("a release.skipped body");
    for _ in 0..messages {
        publisher
            .publish(&Outgoing::new(uuid::Uuid::new_v4(), &skipped))
            .await
            .expect("published");
    }
    publisher.close().await;
    let site = addrs[consumer_names
        .iter()
        .position(|c| *c == "site-publisher")
        .expect("the site publisher is a queue consumer")];
    let processed =
        format!("fortnight_processed_total{{consumer=\"site-publisher\"}} {messages}\n");
    wait_until("the messages processed", &mut up, || {
        http_get(site, "/metrics").is_some_and(|(_, metrics)| metrics.contains(&processed))
    });
    let loaded_kib = status_kib(up.id(), "VmRSS:");
    let peak_kib = status_kib(up.id(), "VmHWM:");

    let _ = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status();
    let _ = up.wait();
    bus::topology::delete_consumers(&settings, &consumer_names)
        .await
        .expect("bench queues and exchange deleted");
    Figures {
        idle_kib,
        loaded_kib,
        peak_kib,
    }
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// min / median / max of one figure over the rounds.
fn spread(rounds: &[Figures], figure: impl Fn(&Figures) -> u64) -> String {
    let mut values: Vec<u64> = rounds.iter().map(figure).collect();
    values.sort_unstable();
    format!(
        "{:.1} / {:.1} / {:.1}",
        mb(values[0]),
        mb(values[values.len() / 2]),
        mb(values[values.len() - 1])
    )
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark skipped; run it with `cargo bench -p fortnight --bench memory`");
        return;
    }
    let env_or = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let messages = env_or("BENCH_MESSAGES", 2000);
    let rounds = env_or("BENCH_ROUNDS", 3).max(1);
    let url = tests::amqp_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    let variants = [
        ("URL as configured", url.clone()),
        (
            "frame_max=131072",
            format!("{url}{separator}frame_max=131072"),
        ),
    ];
    println!(
        "fortnight up ({} consumers and the release timer): MB, min / median / max of {rounds} rounds; loaded = after {messages} release.skipped",
        registry::CONSUMERS.len()
    );
    println!(
        "{:<20} {:>22} {:>22} {:>22}",
        "", "idle RSS", "loaded RSS", "peak RSS"
    );
    for (name, url) in variants {
        let mut figures = Vec::new();
        for _ in 0..rounds {
            figures.push(measure(&url, messages).await);
        }
        println!(
            "{name:<20} {:>22} {:>22} {:>22}",
            spread(&figures, |f| f.idle_kib),
            spread(&figures, |f| f.loaded_kib),
            spread(&figures, |f| f.peak_kib),
        );
    }
}
