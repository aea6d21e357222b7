//! `fortnight up` runs every consumer in one process: each becomes ready on its own health
//! port with its own queue on the real broker, and SIGTERM stops them all cleanly.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tests::broker::rabbitmqctl;
use tests::config;
use tests::{http_get, is_ready};

#[test]
fn up_runs_every_consumer_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let consumers_started = registry::names();
    let (config, addrs) = config::consumers(dir.path(), &format!("test.{id}"), &consumers_started);
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config::to_toml(&config)).unwrap();

    let mut up = Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .arg("--config")
        .arg(&config_path)
        .arg("up")
        .env("FORTNIGHT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    for (consumer, addr) in consumers_started.iter().zip(&addrs) {
        while !is_ready(*addr) {
            assert!(
                Instant::now() < deadline,
                "{consumer} never became ready on {addr}"
            );
            assert!(
                up.try_wait().unwrap().is_none(),
                "fortnight up exited early"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            http_get(*addr, "/live").is_some_and(|(status, _)| status == 200),
            "{consumer} /live"
        );
    }
    let listed = rabbitmqctl(&["-q", "list_queues", "name"]).expect("rabbitmqctl lists queues");
    for consumer in &consumers_started {
        assert!(
            listed.contains(&format!("fortnight.test.{id}.{consumer}\n")),
            "{consumer}'s queue in {listed}"
        );
    }

    let killed = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = loop {
        if let Some(exit) = up.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "fortnight up did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    up.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(exit.success(), "fortnight up exited with {exit}: {log}");
    for (consumer, addr) in consumers_started.iter().zip(&addrs) {
        assert!(
            http_get(*addr, "/live").is_none(),
            "{consumer}'s health port is closed after shutdown"
        );
    }

    // The queues are durable (they outlive a consumer); remove this test's.
    let settings = settings::Settings::load(&config_path).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(bus::topology::delete_consumers(
            &settings,
            &consumers_started,
        ))
        .unwrap();
}
