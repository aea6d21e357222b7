//! The operator commands driven as an operator does, through the `fortnight` binary: votes,
//! overrides, the end of life, the switch, the manual tick, `status` and `explain`. The
//! karma-tracker and releaser run in-process on the real broker and a real OSTree repository
//! (`tests::pipeline`); every command connects as its own broker account, so RabbitMQ checks
//! the `user_id` it signs with.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use messages::{
    Cause, KarmaStatus, KarmaThresholdReached, ReleasePublished, ReleaseSkipped, StreamEndOfLife,
};
use releaser::overrides::Action;
use tests::config::{self, toml};
use tests::pipeline::{
    BrokerUser, Options, Pipeline, SUCCESSOR, WAIT, arch, dead_letter_with, of_topic, stream,
    testers, version, wait_topic,
};
use tests::process::{assert_success, text};

const REQUESTED: &str = "fortnight.candidate.testing.requested";
const THRESHOLD: &str = "fortnight.karma.threshold.reached";
const SKIPPED: &str = "fortnight.release.skipped";
const PUBLISHED: &str = "fortnight.release.published";
const ENDED: &str = "fortnight.stream.end-of-life";

/// Writes the CLI's configuration: the pipeline's, with `operators` as the operator's copy
/// lists them (which may differ from what the releaser trusts).
pub(crate) fn cli_config(p: &Pipeline, operators: &[&BrokerUser]) -> PathBuf {
    let names: Vec<&str> = operators.iter().map(|o| o.name.as_str()).collect();
    let config = config::merged(p.bus.config(), toml! { operators = (names) });
    let path = p.bus.dir.path().join("cli.toml");
    std::fs::write(&path, config::to_toml(&config)).unwrap();
    path
}

/// The pipeline with `operator` as the releaser's only operator, and the CLI's configuration,
/// which lists `operator` and `also_listed`.
async fn operated(
    operator: &BrokerUser,
    also_listed: &[&BrokerUser],
    karma_required: bool,
) -> (Pipeline, PathBuf) {
    let p = Pipeline::start(Options {
        operators: vec![operator.name.clone()],
        karma_required,
        ..Options::default()
    })
    .await;
    let listed: Vec<&BrokerUser> = std::iter::once(operator)
        .chain(also_listed.iter().copied())
        .collect();
    let config = cli_config(&p, &listed);
    (p, config)
}

/// Runs `fortnight --config CONFIG ARGS...` connected to the broker as `user`. Whether it
/// succeeds or fails, it closes its connection before exiting: no lapin error about the
/// async runtime shutting down under the connection.
async fn fortnight(config: &Path, user: &BrokerUser, args: &[&str]) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("FORTNIGHT_AMQP_URL", user.amqp_url())
        .env("FORTNIGHT_LOG", "warn")
        .output()
        .await
        .expect("the fortnight binary runs");
    let stderr = text(&output.stderr);
    assert!(
        !stderr.contains("being shutdown"),
        "fortnight {args:?} left its connection to a stopping runtime: {stderr}"
    );
    output
}

/// Like [`fortnight`], and the command must succeed; returns its standard output.
pub(crate) async fn fortnight_ok(config: &Path, user: &BrokerUser, args: &[&str]) -> String {
    let output = fortnight(config, user, args).await;
    assert_success(&output, &format!("fortnight {args:?}"));
    text(&output.stdout)
}

/// The command must fail with `code`; returns its standard error.
async fn fortnight_fails(config: &Path, user: &BrokerUser, args: &[&str], code: i32) -> String {
    let output = fortnight(config, user, args).await;
    assert_eq!(
        output.status.code(),
        Some(code),
        "fortnight {args:?}: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

/// Waits until the stream's audit log holds `count` entries.
async fn wait_audit(p: &Pipeline, count: usize) {
    assert!(
        tests::eventually(WAIT, || p.audit_log().len() >= count).await,
        "the audit log never reached {count} entries: {:?}",
        p.audit_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_are_signed_by_each_testers_account_and_reach_the_threshold_once() {
    let testers = testers();
    let p = Pipeline::start(Options::default()).await;
    let config = cli_config(&p, &[]);
    let mut watch = p.watch(&[REQUESTED, THRESHOLD]).await;
    const V: &str = "43.20261120.0";
    let candidate = version(V);
    p.nightly_tested(V, None).await;
    assert_eq!(wait_topic(&mut watch, REQUESTED, 1).await.len(), 1);

    // The vote names no user: the CLI signs it as the account it connects with.
    let said = fortnight_ok(
        &config,
        &testers[0],
        &["vote", "tw", V, "-1", "--comment", "no network after boot"],
    )
    .await;
    assert!(said.contains(testers[0].name.as_str()), "{said}");
    let file = p.store.karma_path(&stream(), &candidate, &testers[0].name);
    assert!(
        tests::eventually(WAIT, || file.exists()).await,
        "no karma file {}",
        file.display()
    );
    let vote: messages::Vote = serde_json::from_str(&std::fs::read_to_string(&file).unwrap())
        .expect("the karma file holds the vote");
    assert_eq!(vote.user, testers[0].name);
    assert_eq!(vote.karma, -1);
    assert_eq!(vote.comment.as_deref(), Some("no network after boot"));

    // The same tester changes their mind; with two more +1 the latest votes make +3.
    fortnight_ok(&config, &testers[0], &["vote", "tw", V, "+1"]).await;
    fortnight_ok(&config, &testers[1], &["vote", "tw", V, "+1"]).await;
    let karma = || -> i32 {
        p.store
            .read_votes(&stream(), &candidate)
            .unwrap()
            .iter()
            .map(|v| i32::from(v.karma))
            .sum()
    };
    assert!(
        tests::eventually(WAIT, || karma() == 2).await,
        "the changed vote replaced the -1: karma {}",
        karma()
    );
    // Both votes counted make +2, below the threshold: nothing may be announced yet.
    let seen = watch.settle(Duration::from_millis(500)).await;
    assert!(
        of_topic(seen, THRESHOLD).is_empty(),
        "two votes are below the +3 threshold"
    );
    fortnight_ok(&config, &testers[2], &["vote", "tw", V, "1"]).await;
    let reached = wait_topic(&mut watch, THRESHOLD, 1).await;
    let reached: KarmaThresholdReached = serde_json::from_value(reached[0].body.clone()).unwrap();
    assert_eq!((reached.status, reached.karma), (KarmaStatus::Stable, 3));
    let mut voters: Vec<_> = reached.votes.iter().map(|v| v.user.clone()).collect();
    voters.sort();
    let mut expected: Vec<_> = testers.iter().map(|t| t.name.clone()).collect();
    expected.sort();
    assert_eq!(voters, expected, "one vote per tester counts");

    // `explain` shows each tester's latest vote and the passed human gate.
    let explained = fortnight_ok(&config, &testers[0], &["explain", "tw", V]).await;
    assert!(explained.contains("karma: +3"), "{explained}");
    for tester in &testers {
        assert!(
            explained.contains(&format!("{} +1", tester.name)),
            "{explained}"
        );
    }
    assert!(explained.contains("human testing: passed"), "{explained}");

    // Bad votes never reach the broker: a karma outside +1/0/-1 is a usage error, an unknown
    // stream a clear error.
    let usage = fortnight_fails(&config, &testers[0], &["vote", "tw", V, "+2"], 2).await;
    assert!(usage.contains("use +1, 0 or -1"), "{usage}");
    let unknown = fortnight_fails(&config, &testers[0], &["vote", "nosuch", V, "+1"], 1).await;
    assert!(unknown.contains("unknown stream nosuch"), "{unknown}");
    // A version that is not a tested candidate is refused here, with the tracker's reason,
    // instead of vanishing into the tracker's dead-letter queue.
    let untested = fortnight_fails(
        &config,
        &testers[0],
        &["vote", "tw", "43.20990101.0", "+1"],
        1,
    )
    .await;
    assert!(
        untested.contains("version 43.20990101.0 of stream tw is not a known candidate")
            && untested.contains("nothing was sent")
            && untested.contains("fortnight status tw"),
        "{untested}"
    );
    // Signing as another tester is refused by the broker itself, so nothing is recorded.
    let spoofed = fortnight_fails(
        &config,
        &testers[0],
        &["vote", "tw", V, "-1", "--user", testers[1].name.as_str()],
        1,
    )
    .await;
    assert!(
        spoofed.contains(&format!(
            "the broker refused fortnight.karma.submitted signed as {}",
            testers[1].name
        )),
        "{spoofed}"
    );

    let seen = watch.settle(Duration::from_millis(500)).await;
    assert_eq!(of_topic(seen, THRESHOLD).len(), 1, "announced once");
    let second: messages::Vote = serde_json::from_str(
        &std::fs::read_to_string(p.store.karma_path(&stream(), &candidate, &testers[1].name))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(second.karma, 1, "the spoofed -1 never reached the tracker");
    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_shows_in_status_and_explain_until_unblocked() {
    let alice = BrokerUser::create("operator");
    let mallory = BrokerUser::create("operator");
    // Mallory's copy of the configuration lists her, the releaser's does not.
    let (p, config) = operated(&alice, &[&mallory], false).await;
    const V: &str = "43.20261121.0";
    // The test reports are in the store before the messages go out.
    p.nightly_tested(V, None).await;

    let explained = fortnight_ok(&config, &alice, &["explain", "tw", V]).await;
    assert!(
        explained.contains("releasable: the next tick releases it"),
        "{explained}"
    );

    fortnight_ok(
        &config,
        &alice,
        &[
            "override",
            "block",
            "tw",
            V,
            "--reason",
            "kernel regression rhbz#1234",
            "--expires",
            "2099-01-01T00:00:00Z",
        ],
    )
    .await;
    wait_audit(&p, 1).await;
    let described = format!(
        "by {} until 2099-01-01T00:00:00+00:00: kernel regression rhbz#1234",
        alice.name
    );
    let status = fortnight_ok(&config, &alice, &["status", "tw"]).await;
    assert!(
        status.contains(&format!("{V} blocked {described}")),
        "{status}"
    );
    assert!(
        status.contains(
            "next tick releases nothing: no candidate is eligible (it then waits for the tick after)"
        ),
        "{status}"
    );
    let explained = fortnight_ok(&config, &alice, &["explain", "tw", V]).await;
    assert!(
        explained.contains(&format!("blocked {described}")),
        "{explained}"
    );
    assert!(explained.contains("not releasable:"), "{explained}");

    fortnight_ok(
        &config,
        &alice,
        &[
            "override",
            "unblock",
            "tw",
            V,
            "--reason",
            "fixed in the tree",
        ],
    )
    .await;
    wait_audit(&p, 2).await;
    let status = fortnight_ok(&config, &alice, &["status", "tw"]).await;
    assert!(!status.contains("blocked"), "{status}");
    assert!(
        status.contains(&format!("next tick releases {V}")),
        "{status}"
    );

    // An override without a reason is a usage error and sends nothing.
    let usage = fortnight_fails(&config, &alice, &["override", "block", "tw", V], 2).await;
    assert!(usage.contains("--reason"), "{usage}");

    // Mallory may connect and sign as herself, but the releaser does not trust her.
    fortnight_ok(
        &config,
        &mallory,
        &["override", "block", "tw", V, "--reason", "because"],
    )
    .await;
    dead_letter_with(
        &p,
        releaser::NAME,
        &format!(
            "untrusted sender: broker user {} may not send fortnight.override.block ",
            mallory.name
        ),
    )
    .await;
    assert_eq!(
        p.audit_log().len(),
        2,
        "the refused override is not audited"
    );

    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_skips_the_manual_tick_and_unhold_lets_the_next_one_release() {
    let alice = BrokerUser::create("operator");
    let tester = BrokerUser::create("tester");
    let (p, config) = operated(&alice, &[], false).await;
    let mut watch = p.watch(&[SKIPPED, PUBLISHED]).await;
    const V: &str = "43.20261122.0";
    let commits = p.nightly_tested(V, None).await;

    fortnight_ok(
        &config,
        &alice,
        &[
            "override",
            "hold",
            "tw",
            "--reason",
            "mass rebuild in progress",
        ],
    )
    .await;
    wait_audit(&p, 1).await;
    let status = fortnight_ok(&config, &alice, &["status", "tw"]).await;
    assert!(
        status.contains(&format!(
            "ON HOLD by {}: mass rebuild in progress",
            alice.name
        )),
        "{status}"
    );

    fortnight_ok(&config, &alice, &["timer", "fire", "tw"]).await;
    let skipped = wait_topic(&mut watch, SKIPPED, 1).await;
    let skipped: ReleaseSkipped = serde_json::from_value(skipped[0].body.clone()).unwrap();
    assert_eq!(skipped.policy, "hold");
    let reasons = skipped.candidates[0].reasons.join("; ");
    assert!(reasons.contains("mass rebuild in progress"), "{reasons}");
    assert_eq!(p.store.current_release(&stream()).unwrap(), None);
    let unknown = fortnight_fails(&config, &alice, &["timer", "fire", "nosuch"], 1).await;
    assert!(unknown.contains("unknown stream nosuch"), "{unknown}");
    let refused = fortnight_fails(&config, &tester, &["timer", "fire", "tw"], 1).await;
    assert!(
        refused.contains(&format!("{} is not in `operators`", tester.name)),
        "{refused}"
    );

    fortnight_ok(
        &config,
        &alice,
        &["override", "unhold", "tw", "--reason", "rebuild done"],
    )
    .await;
    wait_audit(&p, 2).await;
    // The period was skipped, so firing it again decides afresh.
    fortnight_ok(&config, &alice, &["timer", "fire", "tw"]).await;
    let published = wait_topic(&mut watch, PUBLISHED, 1).await;
    let release: ReleasePublished = serde_json::from_value(published[0].body.clone()).unwrap();
    assert_eq!(release.version, version(V));
    assert!(!release.forced);
    assert_eq!(
        p.release_commit("x86_64").as_ref(),
        Some(&commits[&arch("x86_64")])
    );

    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_release_is_published_audited_and_reported_by_status() {
    let alice = BrokerUser::create("operator");
    let (p, config) = operated(&alice, &[], true).await;
    let mut watch = p.watch(&[PUBLISHED]).await;
    const V: &str = "43.20261123.0";
    let commits = p.nightly_tested(V, Some(("aarch64", "boot-smoke"))).await;

    let status = fortnight_ok(&config, &alice, &["status"]).await;
    assert!(status.contains("tw: nothing released yet"), "{status}");
    let explained = fortnight_ok(&config, &alice, &["explain", "tw", V]).await;
    assert!(explained.contains("boot-smoke"), "{explained}");
    assert!(explained.contains("not releasable:"), "{explained}");

    let before = chrono::Utc::now();
    fortnight_ok(
        &config,
        &alice,
        &[
            "override",
            "release",
            "tw",
            V,
            "--reason",
            "security fix; the aarch64 failure is a known flake",
        ],
    )
    .await;
    let published = wait_topic(&mut watch, PUBLISHED, 1).await;
    let release: ReleasePublished = serde_json::from_value(published[0].body.clone()).unwrap();
    assert_eq!(release.version, version(V));
    assert!(release.forced, "recorded as forced");
    assert!(
        release.reason.contains("security fix"),
        "{}",
        release.reason
    );
    assert_eq!(
        p.release_commit("aarch64").as_ref(),
        Some(&commits[&arch("aarch64")])
    );

    let log = p.audit_log();
    assert_eq!(log.len(), 1, "{log:?}");
    let entry = &log[0];
    assert_eq!(entry.action, Action::Release);
    assert_eq!(entry.operator, alice.name);
    assert_eq!(entry.version, Some(version(V)));
    assert_eq!(
        entry.reason,
        "security fix; the aarch64 failure is a known flake"
    );
    assert!(entry.at >= before - chrono::TimeDelta::seconds(1) && entry.at <= chrono::Utc::now());

    let status = fortnight_ok(&config, &alice, &["status", "tw"]).await;
    let age = status
        .split_once(&format!("tw: current release {V}, "))
        .and_then(|(_, rest)| rest.split_once(" seconds old"))
        .and_then(|(seconds, _)| seconds.parse::<u64>().ok());
    assert!(
        age.is_some_and(|seconds| seconds < 120),
        "a release made seconds ago is that old: {status}"
    );
    assert!(
        status.contains("no candidate newer than the current release"),
        "{status}"
    );
    let explained = fortnight_ok(&config, &alice, &["explain", "tw", V]).await;
    assert!(
        explained.contains(&format!("not newer than the current release {V}")),
        "{explained}"
    );

    // Unknown streams and candidates are clear errors, not empty reports.
    let unknown = fortnight_fails(&config, &alice, &["status", "nosuch"], 1).await;
    assert!(unknown.contains("nosuch"), "{unknown}");
    let missing = fortnight_fails(&config, &alice, &["explain", "tw", "43.20990101.0"], 1).await;
    assert!(missing.contains("no candidate 43.20990101.0"), "{missing}");

    watch.close().await;
    p.stop().await;
}

#[test]
fn every_override_action_has_its_own_help() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fortnight"))
        .args(["override", "--help"])
        .output()
        .unwrap();
    let help = text(&output.stdout);
    for (action, about) in [
        ("block", "Keep a candidate from being released"),
        ("unblock", "Lift a block"),
        ("release", "Release a candidate now"),
        ("hold", "Stop the stream's releases"),
        ("unhold", "Lift a stream's hold"),
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{action} ")))
            .unwrap_or_else(|| panic!("no {action} in {help}"));
        assert!(line.contains(about), "{action}: {line}");
    }
}

/// A signed stream's release waits for the signer; `status` and `explain` say since when, and
/// stop saying it once the signer answered and the release is out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_explain_say_a_release_waits_for_signatures() {
    const V: &str = "43.20261120.0";
    const SIGN_REQUESTED: &str = "fortnight.sign.requested";
    let key = tests::signing::GpgHome::with_key("fortnight-43");
    let alice = BrokerUser::create("operator");
    let mut p = Pipeline::start(Options {
        operators: vec![alice.name.clone()],
        karma_required: false,
        signing: Some((key.path().to_owned(), "43".into(), key.fingerprint.clone())),
        ..Options::default()
    })
    .await;
    // The signer's queue exists, as in any deployment, while the signer is down.
    p.start_signer().await;
    p.stop_signer().await;
    let config = cli_config(&p, &[&alice]);
    let mut watch = p.watch(&[SIGN_REQUESTED, PUBLISHED]).await;
    p.nightly_tested(V, None).await;
    p.tick("2026-11-17T12:00:00Z").await;
    assert_eq!(wait_topic(&mut watch, SIGN_REQUESTED, 1).await.len(), 1);

    let status = fortnight_ok(&config, &alice, &["status", "tw"]).await;
    assert!(
        status.contains(&format!("{V} waiting for signatures since 20")),
        "{status}"
    );
    // When the request is sent again, and given up, after the default deadline (2h).
    let pending =
        releaser::signing::read(&p.store, &tests::pipeline::stream(), &V.parse().unwrap())
            .unwrap()
            .unwrap();
    let deadline = std::time::Duration::from_secs(2 * 3600);
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let expected = format!(
        "(re-sends at {}; gives up at {})",
        at(pending.next_deadline(deadline)),
        at(pending.gives_up_at(deadline))
    );
    assert_eq!(
        (pending.gives_up_at(deadline) - pending.since).num_hours(),
        4
    );
    assert!(status.contains(&expected), "{expected} in {status}");
    let explained = fortnight_ok(&config, &alice, &["explain", "tw", V]).await;
    assert!(
        explained.contains("waiting for signatures since 20") && explained.contains(&expected),
        "{explained}"
    );

    p.start_signer().await;
    assert_eq!(wait_topic(&mut watch, PUBLISHED, 1).await.len(), 1);
    let status = fortnight_ok(&config, &alice, &["status", "tw"]).await;
    assert!(!status.contains("waiting for signatures"), "{status}");
    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_by_command_moves_the_two_week_releases_and_status_shows_each_role() {
    let alice = BrokerUser::create("operator");
    let p = Pipeline::start(Options {
        operators: vec![alice.name.clone()],
        karma_required: false,
        successor: true,
        tables: toml! {
            [streams.tw2]
            prerelease = "beta"
        },
        ..Options::default()
    })
    .await;
    let config = cli_config(&p, &[&alice]);
    let mut watch = p.watch(&[PUBLISHED]).await;
    const V: &str = "44.20261123.0";
    p.nightly_tested_of(&SUCCESSOR.parse().unwrap(), V).await;

    let status = fortnight_ok(&config, &alice, &["status"]).await;
    for expected in [
        "tw: nothing released yet\n  two-week releases: current\n",
        "tw2: nothing released yet\n  two-week releases: beta, switches when an operator says so\n",
    ] {
        assert!(status.contains(expected), "{expected:?} in\n{status}");
    }
    let refused = fortnight_fails(
        &config,
        &alice,
        &["switch", "tw", "--reason", "wrong way"],
        1,
    )
    .await;
    assert!(refused.contains("tw succeeds no stream"), "{refused}");

    let sent = fortnight_ok(
        &config,
        &alice,
        &[
            "switch",
            "tw2",
            "--reason",
            "Fedora 44 released",
            "--release-now",
        ],
    )
    .await;
    assert!(
        sent.contains("fortnight.override.switch to tw2 from tw sent by"),
        "{sent}"
    );
    let published = wait_topic(&mut watch, PUBLISHED, 1).await;
    let release: ReleasePublished = serde_json::from_value(published[0].body.clone()).unwrap();
    assert_eq!(
        (release.stream.as_str(), release.version.as_str()),
        (SUCCESSOR, V)
    );
    assert_eq!(release.prerelease, None, "released once it took over");

    let status = fortnight_ok(&config, &alice, &["status"]).await;
    for expected in [
        "  two-week releases: retired: two-week releases moved to tw2 at ",
        "  no next tick: tw2 has the two-week releases",
        &format!("tw2: current release {V}"),
        "  two-week releases: current\n",
    ] {
        assert!(status.contains(expected), "{expected:?} in\n{status}");
    }
    let refused = fortnight_fails(&config, &alice, &["timer", "fire", "tw"], 1).await;
    assert!(refused.contains("tw has no more ticks"), "{refused}");
    // A nightly of the old stream that passes everything is still no two-week release.
    const OLD: &str = "43.20261124.0";
    p.nightly_tested(OLD, None).await;
    let explained = fortnight_ok(&config, &alice, &["explain", "tw", OLD]).await;
    assert!(
        explained.contains("not releasable: retired: two-week releases moved to tw2 at "),
        "{explained}"
    );

    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_life_is_audited_announced_and_shown_by_status() {
    let alice = BrokerUser::create("operator");
    let (p, config) = operated(&alice, &[], true).await;
    let mut watch = p.watch(&[PUBLISHED, ENDED]).await;
    const V: &str = "43.20261123.0";
    p.nightly_tested(V, None).await;
    fortnight_ok(
        &config,
        &alice,
        &["override", "release", "tw", V, "--reason", "the last one"],
    )
    .await;
    wait_topic(&mut watch, PUBLISHED, 1).await;
    let last = p.release_head("x86_64").unwrap();

    let usage = fortnight_fails(&config, &alice, &["end-of-life", "tw"], 2).await;
    assert!(usage.contains("--reason"), "{usage}");
    let sent = fortnight_ok(
        &config,
        &alice,
        &["end-of-life", "tw", "--reason", "Fedora 43 is end of life"],
    )
    .await;
    assert!(
        sent.contains("fortnight.override.end-of-life for tw"),
        "{sent}"
    );
    let ended = wait_topic(&mut watch, ENDED, 1).await;
    let ended: StreamEndOfLife = serde_json::from_value(ended[0].body.clone()).unwrap();
    assert_eq!(
        ended.cause,
        Cause::Operator {
            operator: alice.name.clone(),
            reason: "Fedora 43 is end of life".into()
        }
    );
    let head = p.release_head("x86_64").unwrap();
    assert_eq!(ended.arches[&arch("x86_64")].commit, head);
    assert!(p.repo.is_ancestor(&last, &head).unwrap());

    let log = p.audit_log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[1].action, Action::EndOfLife);
    assert_eq!(log[1].operator, alice.name);
    assert!(
        log[2]
            .outcome
            .as_deref()
            .is_some_and(|o| o.starts_with("ended")),
        "{log:?}"
    );

    let status = fortnight_ok(&config, &alice, &["status", "tw"]).await;
    assert!(
        status.contains(&format!(
            "  END OF LIFE since {}, by {}: Fedora 43 is end of life",
            ended.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            alice.name
        )),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "x86_64: fedora/tw/x86_64/release at {head} (no successor)"
        )),
        "{status}"
    );
    assert!(
        status.contains("next tick releases nothing: the stream is at its end of life"),
        "{status}"
    );

    watch.close().await;
    p.stop().await;
}
