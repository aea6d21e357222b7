//! The releaser's decisions through its typed input, without a broker (and without a
//! candidate: releasing one needs images and reports, which the broker suites have; the end
//! of life needs only a release ref, made here in a real OSTree repository).

use std::path::Path;
use std::sync::Arc;

use messages::{
    Arch, Commit, KarmaThresholdReached, OverrideBlock, OverrideRelease, OverrideSwitch, Ref,
    ReleaseSkipped, SignRequested, StreamEndOfLife, StreamSwitched,
};
use ostree_cli::Repo;
use serde_json::json;
use tests::config::{Table, toml};
use tests::step::{incoming, published, refused};

use super::*;

const ANCHOR: &str = "2026-01-01T00:00:00Z";

/// A two-week stream ticking every 14 days from [`ANCHOR`], operated by `ops`.
fn releaser(root: &Path) -> Releaser {
    releaser_with(root, root, Table::new())
}

/// [`releaser`] with its OSTree repository at `repo` and `extra` merged into the
/// configuration.
fn releaser_with(root: &Path, repo: &Path, extra: Table) -> Releaser {
    let mut config = toml! { operators = ["ops"] };
    tests::config::merge(
        &mut config,
        tests::config::store_config(
            root,
            "fedora/43/x86_64/atomic-host",
            repo,
            toml! {
                [twoweek]
                release_refs = { x86_64 = "fedora/43/x86_64/stable" }
                anchor = (ANCHOR)
            },
        ),
    );
    tests::config::merge(&mut config, extra);
    let settings =
        Settings::from_toml(&tests::config::to_toml(&config)).expect("a valid configuration");
    Releaser::new(Arc::new(settings)).expect("the store opens")
}

/// A repository under `root` whose f43 release ref points at the release commit of a tree of
/// version 43.1; returns it and that release commit.
fn released(root: &Path) -> (Repo, Commit) {
    let repo = Repo::new(root.join("repo"));
    repo.init_archive().unwrap();
    let tree = root.join("tree");
    std::fs::create_dir_all(tree.join("usr/lib")).unwrap();
    std::fs::write(tree.join("usr/lib/os-release"), "VERSION=43.1\n").unwrap();
    let input: Ref = "fedora/43/x86_64/atomic-host".parse().unwrap();
    let source = repo.commit(&input, &tree, &[("version", "43.1")]).unwrap();
    let release: Ref = "fedora/43/x86_64/stable".parse().unwrap();
    let head = repo.release_commit(&source, &release).unwrap();
    repo.set_ref(&release, &head).unwrap();
    (repo, head)
}

/// f44, succeeding f43, with its release ref in `repo`.
fn successor(repo: &Path) -> Table {
    toml! {
        [streams.f44]
        arches = ["x86_64"]
        input_refs = { x86_64 = "fedora/44/x86_64/atomic-host" }
        ostree_repo = (tests::config::path(repo))
        formats = ["qcow2"]
        succeeds = "f43"

        [streams.f44.twoweek]
        release_refs = { x86_64 = "fedora/44/x86_64/stable" }
        anchor = (ANCHOR)
    }
}

#[tokio::test]
async fn an_end_of_life_commits_once_is_announced_the_same_way_again_and_ends_the_releases() {
    let root = tempfile::tempdir().unwrap();
    let (repo, last) = released(root.path());
    let step = releaser_with(root.path(), repo.path(), Table::new());
    let stream: Stream = "f43".parse().unwrap();
    let release: Ref = "fedora/43/x86_64/stable".parse().unwrap();
    let end = incoming(
        &OverrideEndOfLife(body("ops", None, "Fedora 43 is end of life")),
        Some("ops"),
    );

    let ended = published(bus::outcome(&step, &end).await);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].topic, StreamEndOfLife::TOPIC);
    let head = repo.rev_parse(&release).unwrap().unwrap();
    assert_ne!(head, last);
    assert!(repo.is_ancestor(&last, &head).unwrap());
    assert_eq!(
        repo.metadata_string(&head, ostree_cli::ENDOFLIFE)
            .unwrap()
            .as_deref(),
        Some("Fedora Atomic Host f43 has reached end of life and gets no more updates"),
    );
    assert_eq!(
        repo.metadata_string(&head, ostree_cli::ENDOFLIFE_REBASE)
            .unwrap(),
        None,
        "no successor, nowhere to move"
    );
    let record = endoflife::read(&step.store, &stream).unwrap().unwrap();
    assert_eq!(
        record.arches[&"x86_64".parse::<Arch>().unwrap()].commit,
        head
    );

    let again = published(bus::outcome(&step, &end).await);
    assert_eq!(
        again[0].id, ended[0].id,
        "announced again under the same id"
    );
    assert_eq!(repo.rev_parse(&release).unwrap(), Some(head.clone()));
    let log = overrides::read_log(&step.store, &stream).unwrap();
    assert_eq!(log.len(), 2, "the request and its outcome: {log:?}");
    assert_eq!(log[0].action, Action::EndOfLife);
    assert!(log[1].outcome.as_deref().unwrap().starts_with("ended"));

    let tick = incoming(&tick("f43", ANCHOR, None), Some("fortnight"));
    let reason = refused(bus::outcome(&step, &tick).await);
    assert!(
        reason.contains("tick refused: f43 is at its end of life since"),
        "{reason}"
    );
    let force = incoming(
        &OverrideRelease(body("ops", Some("43.1"), "one more")),
        Some("ops"),
    );
    let reason = refused(bus::outcome(&step, &force).await);
    assert!(reason.contains("forced release refused"), "{reason}");
    assert_eq!(repo.rev_parse(&release).unwrap(), Some(head));
}

#[tokio::test]
async fn a_stream_ends_only_once_its_successor_released_and_then_names_its_ref() {
    let root = tempfile::tempdir().unwrap();
    let (repo, last) = released(root.path());
    let step = releaser_with(root.path(), repo.path(), successor(repo.path()));
    let stream: Stream = "f43".parse().unwrap();
    let release: Ref = "fedora/43/x86_64/stable".parse().unwrap();
    let end = incoming(
        &OverrideEndOfLife(body("ops", None, "Fedora 43 is end of life")),
        Some("ops"),
    );

    let reason = refused(bus::outcome(&step, &end).await);
    assert!(
        reason.contains("its successor f44 has no release on x86_64"),
        "{reason}"
    );
    assert_eq!(repo.rev_parse(&release).unwrap(), Some(last.clone()));
    assert_eq!(endoflife::read(&step.store, &stream).unwrap(), None);

    let next: Ref = "fedora/44/x86_64/stable".parse().unwrap();
    repo.set_ref(&next, &last).unwrap();
    let later = incoming(
        &OverrideEndOfLife(body("ops", None, "f44 is out now")),
        Some("ops"),
    );
    published(bus::outcome(&step, &later).await);
    let head = repo.rev_parse(&release).unwrap().unwrap();
    assert_eq!(
        repo.metadata_string(&head, ostree_cli::ENDOFLIFE_REBASE)
            .unwrap(),
        Some(next.to_string())
    );
}

#[tokio::test]
async fn an_end_of_life_comes_from_an_operator_with_a_reason() {
    let root = tempfile::tempdir().unwrap();
    let step = releaser(root.path());
    let stranger = incoming(&OverrideEndOfLife(body("eve", None, "bye")), Some("eve"));
    let reason = refused(bus::outcome(&step, &stranger).await);
    assert!(reason.contains("eve is not an operator"), "{reason}");
    let no_reason = incoming(&OverrideEndOfLife(body("ops", None, " ")), Some("ops"));
    let reason = refused(bus::outcome(&step, &no_reason).await);
    assert!(reason.contains("needs a reason"), "{reason}");
    assert_eq!(
        endoflife::read(&step.store, &"f43".parse().unwrap()).unwrap(),
        None
    );
}

fn tick(stream: &str, period: &str, operator: Option<&str>) -> TwoweekTimerFired {
    serde_json::from_value(json!({
        "stream": stream, "period": period, "scheduled_for": period, "fired_at": period,
        "operator": operator,
    }))
    .expect("a valid tick")
}

fn body(operator: &str, version: Option<&str>, reason: &str) -> Override {
    serde_json::from_value(json!({
        "stream": "f43", "version": version, "operator": operator, "reason": reason,
    }))
    .expect("a valid override")
}

#[tokio::test]
async fn a_tick_with_no_candidate_skips_its_period_once() {
    let root = tempfile::tempdir().unwrap();
    let step = releaser(root.path());
    let message = incoming(&tick("f43", ANCHOR, None), Some("fortnight"));
    let skipped = published(bus::outcome(&step, &message).await);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].topic, ReleaseSkipped::TOPIC);
    let period: Period = ANCHOR.parse().unwrap();
    let state = periods::read(&step.store, &"f43".parse().unwrap(), &period).unwrap();
    assert_eq!(state, Some(PeriodState::Skipped));
    let again = published(bus::outcome(&step, &message).await);
    assert_eq!(
        again[0].id, skipped[0].id,
        "a replayed tick announces the same skip"
    );
}

#[tokio::test]
async fn ticks_off_the_schedule_from_the_future_or_of_an_unknown_stream_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let step = releaser(root.path());
    for (tick, expected) in [
        (
            tick("f43", "2026-01-02T00:00:00Z", None),
            "is not a tick of the stream's schedule",
        ),
        (
            tick("f43", "2099-01-01T00:00:00Z", None),
            "is in the future",
        ),
        (tick("f44", ANCHOR, None), "unknown stream f44"),
    ] {
        let reason = refused(bus::outcome(&step, &incoming(&tick, Some("fortnight"))).await);
        assert!(reason.contains(expected), "{expected}: {reason}");
    }
}

#[tokio::test]
async fn a_manual_tick_or_override_must_come_from_the_operator_it_names() {
    let root = tempfile::tempdir().unwrap();
    let step = releaser(root.path());
    let manual = incoming(&tick("f43", ANCHOR, Some("ops")), Some("mallory"));
    let reason = refused(bus::outcome(&step, &manual).await);
    assert!(reason.contains("manual tick claims operator"), "{reason}");
    let not_operator = incoming(
        &OverrideBlock(body("eve", Some("43.1"), "bad")),
        Some("eve"),
    );
    let reason = refused(bus::outcome(&step, &not_operator).await);
    assert!(reason.contains("eve is not an operator"), "{reason}");
    let stream = "f43".parse().unwrap();
    assert_eq!(
        overrides::read_log(&step.store, &stream).unwrap(),
        Vec::new()
    );
}

#[tokio::test]
async fn an_override_needs_a_reason_and_its_version_and_is_logged_once() {
    let root = tempfile::tempdir().unwrap();
    let step = releaser(root.path());
    let no_reason = incoming(&OverrideBlock(body("ops", Some("43.1"), " ")), Some("ops"));
    let reason = refused(bus::outcome(&step, &no_reason).await);
    assert!(reason.contains("needs a reason"), "{reason}");
    let no_version = incoming(&OverrideRelease(body("ops", None, "urgent")), Some("ops"));
    let reason = refused(bus::outcome(&step, &no_version).await);
    assert!(reason.contains("needs the candidate's version"), "{reason}");

    let block = incoming(
        &OverrideBlock(body("ops", Some("43.1"), "broken boot")),
        Some("ops"),
    );
    for _ in 0..2 {
        assert_eq!(published(bus::outcome(&step, &block).await), Vec::new());
    }
    let log = overrides::read_log(&step.store, &"f43".parse().unwrap()).unwrap();
    assert_eq!(
        log.len(),
        1,
        "a redelivered override is logged once: {log:?}"
    );
    assert_eq!(log[0].action, Action::Block);
}

#[tokio::test]
async fn a_changed_candidate_releases_nothing_where_skipped_periods_wait_for_no_pass() {
    let root = tempfile::tempdir().unwrap();
    let step = releaser(root.path());
    let unstable: KarmaThresholdReached = serde_json::from_value(json!({
        "stream": "f43", "version": "43.1", "status": "unstable", "karma": -3, "votes": [],
    }))
    .unwrap();
    assert_eq!(
        published(bus::outcome(&step, &incoming(&unstable, Some("fortnight"))).await),
        Vec::new()
    );
    let stable = KarmaThresholdReached {
        status: KarmaStatus::Stable,
        ..unstable
    };
    assert_eq!(
        published(bus::outcome(&step, &incoming(&stable, Some("fortnight"))).await),
        Vec::new()
    );
}

/// `f43` current and `f44`, its beta, succeeding it without a date ([`successor`]).
fn succession(root: &Path) -> Releaser {
    let mut f44 = successor(root);
    tests::config::merge(
        &mut f44,
        toml! {
            [streams.f44]
            prerelease = "beta"
        },
    );
    releaser_with(root, root, f44)
}

fn switch(stream: &str, reason: &str) -> OverrideSwitch {
    serde_json::from_value(json!({
        "stream": stream, "operator": "ops", "reason": reason,
    }))
    .expect("a valid switch")
}

#[tokio::test]
async fn an_operators_switch_is_announced_once_and_ends_the_old_streams_ticks() {
    let root = tempfile::tempdir().unwrap();
    let step = succession(root.path());
    let old_tick = incoming(&tick("f43", ANCHOR, None), Some("fortnight"));

    let asked = incoming(&switch("f44", "Fedora 44 is out"), Some("ops"));
    let announced = published(bus::outcome(&step, &asked).await);
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].topic, StreamSwitched::TOPIC);
    assert_eq!(announced[0].body["from"], "f43");
    assert!(
        published(bus::outcome(&step, &old_tick).await).is_empty(),
        "the old stream's tick decides nothing"
    );
    let forced = incoming(
        &OverrideRelease(body("ops", Some("43.1"), "one more")),
        Some("ops"),
    );
    let reason = refused(bus::outcome(&step, &forced).await);
    assert!(
        reason.contains("cannot force-release f43 43.1: retired"),
        "{reason}"
    );
    let f43: Stream = "f43".parse().unwrap();
    assert!(
        overrides::read_log(&step.store, &f43).unwrap().is_empty(),
        "not logged"
    );
    assert_eq!(
        periods::read(&step.store, &f43, &ANCHOR.parse().unwrap()).unwrap(),
        None
    );

    let again = published(bus::outcome(&step, &asked).await);
    assert_eq!(
        again[0].id, announced[0].id,
        "asked again: the same announcement"
    );
    let other = incoming(&switch("f44", "once more"), Some("ops"));
    let reason = refused(bus::outcome(&step, &other).await);
    assert!(reason.contains("already moved to it from f43"), "{reason}");
    let log = overrides::read_log(&step.store, &"f44".parse().unwrap()).unwrap();
    assert_eq!(
        log.iter().map(|e| e.action).collect::<Vec<_>>(),
        [Action::Switch]
    );

    let nowhere = incoming(&switch("f43", "wrong way"), Some("ops"));
    let reason = refused(bus::outcome(&step, &nowhere).await);
    assert!(reason.contains("it succeeds no stream"), "{reason}");
}

#[tokio::test]
async fn a_signed_stream_ends_only_once_the_signer_signed_its_end_of_life_commits() {
    let root = tempfile::tempdir().unwrap();
    let (repo, last) = released(root.path());
    let signed = toml! {
        [streams.f43.signing]
        gnupg_home = (tests::config::path(root.path()))
        keys = { "43" = "0123456789ABCDEF0123456789ABCDEF01234567" }
    };
    let step = releaser_with(root.path(), repo.path(), signed);
    let stream: Stream = "f43".parse().unwrap();
    step.store
        .set_latest_release(&stream, &"43.1".parse().unwrap())
        .unwrap();
    let release: Ref = "fedora/43/x86_64/stable".parse().unwrap();
    let end = incoming(
        &OverrideEndOfLife(body("ops", None, "Fedora 43 is end of life")),
        Some("ops"),
    );

    let asked = published(bus::outcome(&step, &end).await);
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].topic, SignRequested::TOPIC);
    let request: SignRequested =
        serde_json::from_value(serde_json::Value::Object(asked[0].body.clone())).unwrap();
    assert!(request.artifacts.is_empty(), "no files to sign");
    let eol = request.commits[0].commit.clone();
    assert!(repo.is_ancestor(&last, &eol).unwrap());
    assert_eq!(
        repo.rev_parse(&release).unwrap(),
        Some(last.clone()),
        "nothing moves before the signatures"
    );
    assert_eq!(endoflife::read(&step.store, &stream).unwrap(), None);
    let again = published(bus::outcome(&step, &end).await);
    assert_eq!(again[0].body, asked[0].body, "the same request again");

    let signed = SignFinished {
        request,
        status: SignStatus::Success,
        failure_message: None,
    };
    let ended = published(bus::outcome(&step, &incoming(&signed, Some("fortnight"))).await);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].topic, StreamEndOfLife::TOPIC);
    assert_eq!(repo.rev_parse(&release).unwrap(), Some(eol));
    let log = overrides::read_log(&step.store, &stream).unwrap();
    assert!(
        log.last()
            .and_then(|e| e.outcome.as_deref())
            .is_some_and(|o| o.starts_with("ended, signed")),
        "{log:?}"
    );
    let after = published(bus::outcome(&step, &end).await);
    assert_eq!(
        after[0].id, ended[0].id,
        "ended: announced again, not signed again"
    );
}

#[test]
fn the_clock_ends_a_stream_at_its_date_and_wakes_for_it() {
    let root = tempfile::tempdir().unwrap();
    let dated = toml! {
        [streams.f43]
        end_of_life = "2026-06-01T00:00:00Z"
    };
    let step = releaser_with(root.path(), root.path(), dated);
    let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
    let before = at("2026-05-31T23:59:59Z");
    assert_eq!(endoflife::due(&step.settings, before).count(), 0);
    assert_eq!(
        endoflife::next(&step.settings, before),
        Some(at("2026-06-01T00:00:00Z"))
    );
    let due: Vec<&Stream> = endoflife::due(&step.settings, at("2026-06-01T00:00:00Z")).collect();
    assert_eq!(due, [&"f43".parse::<Stream>().unwrap()]);
    assert_eq!(
        endoflife::next(&step.settings, at("2026-06-01T00:00:00Z")),
        None
    );
}
