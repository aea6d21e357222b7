//! `fortnight dead-letters` against the real broker: a consumer rejects messages, the operator
//! lists and inspects them with their reasons, puts one back (the fixed consumer now handles
//! it) and drops the rest.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bus::{Outputs, Step, StepError};
use messages::{Incoming, Message, Outgoing, TreeComposed};
use serde_json::Value;

use common::*;
use tests::records::tree_composed;

/// Refuses every message until `fixed` is set, reporting each one it sees.
struct Flaky {
    fixed: Arc<AtomicBool>,
    seen: tokio::sync::mpsc::UnboundedSender<(Option<String>, bool)>,
}

impl Step for Flaky {
    const NAME: &'static str = "test-probe";
    type Input = ();

    fn topics(_: &settings::BusSettings) -> Vec<String> {
        vec![TreeComposed::TOPIC.to_owned()]
    }

    async fn handle(&self, _: (), message: &Incoming) -> Result<Outputs, StepError> {
        let fixed = self.fixed.load(Ordering::SeqCst);
        let _ = self.seen.send((message.id.clone(), fixed));
        if fixed {
            Ok(Vec::new())
        } else {
            Err(StepError::permanent("no stream builds this ref yet"))
        }
    }
}

fn list(env: &Env) -> Vec<Value> {
    let output = run_ok(
        env.fortnight()
            .args(["dead-letters", "list", "test-probe", "--json"]),
        "fortnight dead-letters list",
    );
    text(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_show_replay_and_purge_dead_letters() {
    let env = Env::new();
    let fixed = Arc::new(AtomicBool::new(false));
    let (seen, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let consumer = env.start_consumer(Flaky {
        fixed: fixed.clone(),
        seen,
    });

    let publisher = env.publisher().await;
    let mut ids = Vec::new();
    for n in [7, 8] {
        let message = Outgoing::new(uuid::Uuid::new_v4(), &tree_composed(n));
        tests::schema::assert_valid(&message);
        publisher.publish(&message).await.unwrap();
        ids.push(message.id.to_string());
    }
    publisher.close().await;
    for _ in &ids {
        let (_, was_fixed) = tokio::time::timeout(DEADLINE, handled.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(!was_fixed);
    }

    // Both wait in the dead-letter queue, with the consumer's reason.
    let mut letters = Vec::new();
    wait_until("two dead letters", || {
        letters = list(&env);
        letters.len() == 2
    });
    let routing_key = format!("{PREFIX}.{}", TreeComposed::TOPIC);
    for (letter, id) in letters.iter().zip(&ids) {
        assert_eq!(letter["id"], id.as_str());
        assert_eq!(letter["consumer"], "test-probe");
        assert_eq!(letter["reason"], "no stream builds this ref yet");
        assert_eq!(letter["routing_key"], routing_key.as_str());
    }
    // Listing left them in place.
    assert_eq!(list(&env).len(), 2);

    let output = run_ok(
        env.fortnight()
            .args(["dead-letters", "show", "test-probe", &ids[0]]),
        "fortnight dead-letters show",
    );
    let shown: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        shown["body"],
        serde_json::to_value(tree_composed(7)).unwrap()
    );
    assert_eq!(
        shown["headers"]["fedora_messaging_schema"],
        TreeComposed::TOPIC
    );

    // Fixed: put the first one back; the consumer handles it this time.
    fixed.store(true, Ordering::SeqCst);
    run_ok(
        env.fortnight()
            .args(["dead-letters", "replay", "test-probe", "--id", &ids[0]]),
        "fortnight dead-letters replay",
    );
    let (again, was_fixed) = tokio::time::timeout(DEADLINE, handled.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.as_deref(), Some(ids[0].as_str()));
    assert!(was_fixed);
    let left = list(&env);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], ids[1].as_str());

    // Purging needs --yes (a usage error without it), then drops the rest.
    let output = env
        .fortnight()
        .args(["dead-letters", "purge", "test-probe"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(list(&env).len(), 1);
    run_ok(
        env.fortnight()
            .args(["dead-letters", "purge", "test-probe", "--yes"]),
        "fortnight dead-letters purge",
    );
    assert!(list(&env).is_empty());

    // An id that is not there is a failure that names it.
    let output = env
        .fortnight()
        .args(["dead-letters", "show", "test-probe", &ids[1]])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains(&ids[1]),
        "{}",
        text(&output.stderr)
    );

    consumer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_puts_back_only_the_letters_there_when_it_started() {
    let env = Env::new();
    // Still broken: every replayed copy is rejected again while the replay runs.
    let (seen, mut handled) = tokio::sync::mpsc::unbounded_channel();
    let consumer = env.start_consumer(Flaky {
        fixed: Arc::new(AtomicBool::new(false)),
        seen,
    });
    let publisher = env.publisher().await;
    for n in [1, 2, 3] {
        let message = Outgoing::new(uuid::Uuid::new_v4(), &tree_composed(n));
        publisher.publish(&message).await.unwrap();
    }
    publisher.close().await;
    wait_until("three dead letters", || list(&env).len() == 3);

    let mut replay = env
        .fortnight()
        .args(["dead-letters", "replay", "test-probe"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_child(&mut replay, "fortnight dead-letters replay");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut replay.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "{stdout}");
    assert!(stdout.starts_with("3 dead letter(s) put back"), "{stdout}");

    // Each came back once, was rejected once more, and waits again: three, not thousands.
    for _ in 0..6 {
        tokio::time::timeout(DEADLINE, handled.recv())
            .await
            .expect("the consumer sees the first deliveries and the three replays")
            .unwrap();
    }
    wait_until("the three rejected again", || list(&env).len() == 3);
    assert!(
        tokio::time::timeout(std::time::Duration::from_secs(1), handled.recv())
            .await
            .is_err(),
        "nothing is replayed after the replay returned"
    );
    consumer.stop().await;
}
