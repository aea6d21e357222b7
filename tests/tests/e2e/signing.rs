//! Signed releases on the real broker, gpg and ostree: the releaser stages a release, asks for
//! signatures and finishes it only on the signer's SUCCESS; a user who trusts only the
//! published key can check the CHECKSUM and pull the release ref with `gpg-verify=true`; a
//! refused request (bad checksum, path outside the store) signs nothing and skips the release,
//! a forced one too; a request nobody answers is sent again once and then skipped; a replayed
//! request signs nothing again; a stream's end-of-life commits are signed before its refs move.

use crate::release_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use messages::{
    Commit, Outgoing, OverrideEndOfLife, OverrideRelease, ReleaseSkipped, SignArtifact, SignCommit,
    SignFinished, SignRequested, SignStatus, StreamEndOfLife,
};
use release_support::{
    ARCHES, BrokerUser, Options, Pipeline, arch, of_topic, release_ref, stream, version, wait_topic,
};
use tests::process::{assert_success, text};
use tests::signing::{GpgHome, pull_verified};

const PUBLISHED: &str = "fortnight.release.published";
const SKIPPED: &str = "fortnight.release.skipped";
const REQUESTED: &str = "fortnight.sign.requested";
const FINISHED: &str = "fortnight.sign.finished";
const ENDED: &str = "fortnight.stream.end-of-life";
const VERSION: &str = "43.20261126.0";
const PERIOD: &str = "2026-11-17T12:00:00Z";

/// A pipeline whose stream is signed with `key` (the signer not started yet).
async fn signed_pipeline(key: &GpgHome) -> Pipeline {
    Pipeline::start(signed(key)).await
}

fn signed(key: &GpgHome) -> Options {
    Options {
        karma_required: false,
        signing: Some((key.path().to_owned(), "43".into(), key.fingerprint.clone())),
        ..Options::default()
    }
}

fn release_checksum(p: &Pipeline, a: &str) -> PathBuf {
    p.store
        .release_arch_dir(&stream(), &version(VERSION), &arch(a))
        .join(store::CHECKSUM)
}

/// Changes the first arch's staged CHECKSUM, as if it changed after signatures were
/// requested: the signer must refuse it. Returns the CHECKSUM's path.
fn change_release_checksum(p: &Pipeline) -> PathBuf {
    let checksum = release_checksum(p, ARCHES[0]);
    let mut changed = std::fs::read_to_string(&checksum).unwrap();
    changed.push_str("# changed\n");
    std::fs::write(&checksum, changed).unwrap();
    checksum
}

fn asc(path: &Path) -> PathBuf {
    path.with_extension("asc")
}

/// How many signatures a commit carries (`ostree show` counts them, trusted or not).
fn signatures(p: &Pipeline, commit: &Commit) -> usize {
    let out = Command::new("ostree")
        .arg("show")
        .arg(format!("--repo={}", p.repo.path().display()))
        .arg(commit.as_str())
        .output()
        .unwrap();
    assert_success(&out, "ostree show");
    text(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Found "))
        .and_then(|l| l.split(' ').next())
        .map_or(0, |n| n.parse().unwrap())
}

fn assert_nothing_promoted(p: &Pipeline) {
    for a in ARCHES {
        assert_eq!(p.release_commit(a), None, "{a}'s release ref moved");
    }
    assert!(
        !p.store
            .release_record_path(&stream(), &version(VERSION))
            .exists(),
        "release.json written"
    );
    assert_eq!(p.store.current_release(&stream()).unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_release_verifies_with_the_published_key_and_not_with_another() {
    let key = GpgHome::with_key("fortnight-43");
    let other = GpgHome::with_key("someone-else");
    let mut p = signed_pipeline(&key).await;
    p.start_signer().await;
    let mut watch = p.watch(&[PUBLISHED, FINISHED]).await;
    let commits = p.nightly_tested(VERSION, None).await;
    p.tick(PERIOD).await;
    assert_eq!(
        wait_topic(&mut watch, PUBLISHED, 1).await.len(),
        1,
        "released"
    );
    let finished = wait_topic(&mut watch, FINISHED, 1).await;
    let finished: SignFinished = serde_json::from_value(finished[0].body.clone()).unwrap();
    assert_eq!(finished.status, SignStatus::Success, "{finished:?}");
    assert_eq!(finished.failure_message, None);

    let published = p.store.keys_dir().join(format!("{}.asc", key.fingerprint));
    assert!(published.is_file(), "the public key is published");
    let wrong = p.bus.dir.path().join("other.asc");
    std::fs::write(&wrong, other.public_key()).unwrap();
    for a in ARCHES {
        let checksum = release_checksum(&p, a);
        let good = GpgHome::verify_with(&published, &asc(&checksum), &checksum);
        assert_success(&good, &format!("gpg --verify of {a}'s CHECKSUM"));
        let bad = GpgHome::verify_with(&wrong, &asc(&checksum), &checksum);
        assert!(
            !bad.status.success(),
            "another key verifies {a}'s CHECKSUM: {}",
            text(&bad.stderr)
        );
        // The CHECKSUM itself stays what sha256sum reads.
        let sums = Command::new("sha256sum")
            .arg("-c")
            .arg(store::CHECKSUM)
            .current_dir(checksum.parent().unwrap())
            .output()
            .unwrap();
        assert_success(&sums, "sha256sum -c CHECKSUM");

        let image = p
            .store
            .release_arch_dir(&stream(), &version(VERSION), &arch(a))
            .join(format!("{}-{VERSION}.{a}.qcow2", stream()));
        let mut image_signature = image.clone().into_os_string();
        image_signature.push(".asc");
        let good = GpgHome::verify_with(&published, Path::new(&image_signature), &image);
        assert_success(&good, &format!("gpg --verify of {a}'s image"));

        // The release ref's commit is the tested tree bound to the release ref, and signed.
        let head = p.release_head(a).unwrap();
        assert_eq!(p.release_commit(a).as_ref(), Some(&commits[&arch(a)]));
        assert_eq!(signatures(&p, &head), 1);
        let release_ref = release_ref(a);
        let pulled = pull_verified(p.repo.path(), release_ref.as_str(), &published);
        assert_success(&pulled, &format!("verified pull of {release_ref}"));
        let refused = pull_verified(p.repo.path(), release_ref.as_str(), &wrong);
        assert!(
            !refused.status.success() && text(&refused.stderr).contains("signature"),
            "a pull trusting another key did not fail on the signature for {release_ref}: {}",
            text(&refused.stderr)
        );
    }

    // The site publishes the key, the signatures' locations and how to verify.
    site_publisher::publish(&p.settings, &p.store, chrono::Utc::now()).unwrap();
    let site = p.store.site_dir();
    let key_file = format!("{}.asc", key.fingerprint);
    assert_eq!(
        std::fs::read(site.join("keys").join(&key_file)).unwrap(),
        std::fs::read(&published).unwrap()
    );
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(site.join(format!("streams/{}.json", stream()))).unwrap(),
    )
    .unwrap();
    for a in ARCHES {
        let entry = &json["architectures"][a];
        let checksum = entry["checksum"]["signature"].as_str().unwrap();
        assert!(checksum.ends_with(&format!("/{a}/CHECKSUM.asc")), "{entry}");
        let disk = entry["artifacts"]["atomic-host"]["formats"]["qcow2"]["disk"]["signature"]
            .as_str()
            .unwrap();
        assert!(disk.ends_with(".qcow2.asc"), "{entry}");
        assert_eq!(
            entry["signing-key"]["fingerprint"],
            key.fingerprint.as_str()
        );
    }
    // minijinja escapes `/` as `&#x2f;`, which browsers read back as `/`.
    let page = std::fs::read_to_string(site.join(format!("streams/{}.html", stream())))
        .unwrap()
        .replace("&#x2f;", "/");
    for expected in [
        key.fingerprint.as_str(),
        "gpg --verify CHECKSUM.asc CHECKSUM",
        "sha256sum -c",
        &format!("ostree remote add --gpg-import={key_file} --set=gpg-verify=true"),
        &format!("fortnight {}", release_ref(ARCHES[0])),
    ] {
        assert!(page.contains(expected), "the page lacks {expected:?}");
    }
    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_waits_for_the_signer_and_completes_once_when_it_starts() {
    let key = GpgHome::with_key("fortnight-43");
    let mut p = signed_pipeline(&key).await;
    // The signer's queue exists (as in any deployment) while the signer is down.
    p.start_signer().await;
    p.stop_signer().await;
    let mut watch = p.watch(&[REQUESTED, PUBLISHED]).await;
    let commits = p.nightly_tested(VERSION, None).await;
    p.tick(PERIOD).await;
    let requested = wait_topic(&mut watch, REQUESTED, 1).await;
    assert_eq!(requested.len(), 1, "signatures requested");
    assert_eq!(requested[0].priority, Some(4));
    // The releaser acks the tick once the request is out: everything it does before
    // waiting is done by now, and none of it is a promotion.
    assert_nothing_promoted(&p);
    let pending = releaser::signing::read(&p.store, &stream(), &version(VERSION))
        .unwrap()
        .expect("the request is recorded in the store");
    assert_eq!(
        serde_json::to_value(&pending.request).unwrap(),
        requested[0].body
    );

    p.start_signer().await;
    assert_eq!(
        wait_topic(&mut watch, PUBLISHED, 1).await.len(),
        1,
        "released"
    );
    for a in ARCHES {
        assert_eq!(p.release_commit(a).as_ref(), Some(&commits[&arch(a)]));
        assert!(asc(&release_checksum(&p, a)).is_file());
    }
    let settled = watch.settle(Duration::from_secs(2)).await;
    assert_eq!(of_topic(settled, PUBLISHED).len(), 1, "released once");
    assert_eq!(
        releaser::signing::read(&p.store, &stream(), &version(VERSION)).unwrap(),
        None,
        "the answered request is forgotten"
    );
    watch.close().await;
    p.stop().await;
}

/// A signed release the signer refused, because a CHECKSUM changed between the request and
/// the signing; the pipeline goes on running, its watch still open.
struct Refused {
    p: Pipeline,
    watch: tests::Watch,
    /// The changed CHECKSUM.
    checksum: PathBuf,
    /// The one `release.skipped` and the signer's one reply, as the watch saw them.
    skipped: Vec<messages::RecordLine>,
    finished: Vec<messages::RecordLine>,
}

async fn refused_release(key: &GpgHome) -> Refused {
    let mut p = signed_pipeline(key).await;
    // The signer's queue exists (as in any deployment) while the signer is down.
    p.start_signer().await;
    p.stop_signer().await;
    let mut watch = p.watch(&[REQUESTED, FINISHED, SKIPPED, PUBLISHED]).await;
    p.nightly_tested(VERSION, None).await;
    p.tick(PERIOD).await;
    assert_eq!(
        wait_topic(&mut watch, REQUESTED, 1).await.len(),
        1,
        "signatures requested"
    );
    let checksum = change_release_checksum(&p);
    p.start_signer().await;
    let skipped = wait_topic(&mut watch, SKIPPED, 1).await;
    assert_eq!(skipped.len(), 1, "the release was skipped");
    let finished = wait_topic(&mut watch, FINISHED, 1).await;
    assert_eq!(finished.len(), 1, "the signer answered");
    Refused {
        p,
        watch,
        checksum,
        skipped,
        finished,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_the_signer_refuses_skips_the_release_naming_its_reply() {
    let key = GpgHome::with_key("fortnight-43");
    let Refused {
        p,
        mut watch,
        checksum,
        skipped,
        finished,
    } = refused_release(&key).await;
    let reply: SignFinished = serde_json::from_value(finished[0].body.clone()).unwrap();
    assert_eq!(reply.status, SignStatus::Failure);
    let skipped: ReleaseSkipped = serde_json::from_value(skipped[0].body.clone()).unwrap();
    let reason = skipped.candidates[0].reasons.join("; ");
    assert!(
        reason.contains(finished[0].id.as_deref().unwrap()) && reason.contains("the request says"),
        "the skip names the signer's reply and its reason: {reason}"
    );
    assert_nothing_promoted(&p);
    assert!(!asc(&checksum).exists(), "a refused request signed a file");
    let settled = watch.settle(Duration::from_secs(1)).await;
    assert!(of_topic(settled, PUBLISHED).is_empty());
    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_replies_travel_on_the_deployments_topics() {
    const ROBOSIGNATORY: &str = "coreos.build.request.artifacts-sign";
    let finished_topic = format!("{ROBOSIGNATORY}.finished");
    let key = GpgHome::with_key("fortnight-43");
    let mut p = Pipeline::start(Options {
        signing_topics: settings::SigningTopics {
            requested: ROBOSIGNATORY.into(),
            finished: finished_topic.clone(),
        },
        ..signed(&key)
    })
    .await;
    p.start_signer().await;
    let mut watch = p
        .watch(&[
            ROBOSIGNATORY,
            &finished_topic,
            REQUESTED,
            FINISHED,
            PUBLISHED,
        ])
        .await;
    p.nightly_tested(VERSION, None).await;
    p.tick(PERIOD).await;
    assert_eq!(
        wait_topic(&mut watch, PUBLISHED, 1).await.len(),
        1,
        "released"
    );
    let settled = watch.settle(Duration::from_secs(1)).await;
    let topics: Vec<&str> = settled.iter().map(|line| line.topic.as_str()).collect();
    let on = |topic: &str| {
        settled
            .iter()
            .filter(|l| l.topic.ends_with(&format!(".{topic}")))
            .count()
    };
    assert_eq!(
        on(ROBOSIGNATORY),
        1,
        "the request on the configured topic: {topics:?}"
    );
    assert_eq!(
        on(&finished_topic),
        1,
        "the reply on the configured topic: {topics:?}"
    );
    assert_eq!(
        on(REQUESTED) + on(FINISHED),
        0,
        "nothing on the default topics: {topics:?}"
    );
    let reply = settled
        .iter()
        .find(|l| l.topic.ends_with(&finished_topic))
        .unwrap();
    assert_eq!(
        reply.headers["fedora_messaging_schema"], FINISHED,
        "the body keeps its schema"
    );
    watch.close().await;
    p.stop().await;
}

/// A signed pipeline whose releaser waits `deadline` for each reply, and whose signer's queue
/// is in place with the signer down.
async fn signer_down(options: Options, deadline: &str) -> Pipeline {
    let mut p = Pipeline::start(Options {
        signing_deadline: Some(deadline.into()),
        ..options
    })
    .await;
    p.start_signer().await;
    p.stop_signer().await;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_request_is_sent_again_once_then_the_release_is_skipped() {
    let key = GpgHome::with_key("fortnight-43");
    let p = signer_down(signed(&key), "2s").await;
    let mut watch = p.watch(&[REQUESTED, SKIPPED, PUBLISHED]).await;
    p.nightly_tested(VERSION, None).await;
    p.tick(PERIOD).await;

    let requested = wait_topic(&mut watch, REQUESTED, 2).await;
    assert_eq!(requested.len(), 2, "the request was sent again");
    assert_eq!(
        requested[0].body, requested[1].body,
        "the same request, with the same request_id"
    );
    assert_ne!(requested[0].id, requested[1].id, "in a message of its own");
    let resent = tests::eventually(release_support::WAIT, || {
        releaser::signing::read(&p.store, &stream(), &version(VERSION))
            .unwrap()
            .is_some_and(|pending| {
                pending.resent_at.is_some()
                    && pending
                        .describe(Duration::from_secs(2))
                        .contains("(re-sent at ")
            })
    })
    .await;
    assert!(resent, "the request records when it was sent again");

    let skipped = wait_topic(&mut watch, SKIPPED, 1).await;
    assert_eq!(skipped.len(), 1, "the release was given up");
    let skipped: ReleaseSkipped = serde_json::from_value(skipped[0].body.clone()).unwrap();
    assert_eq!(skipped.period.to_string(), PERIOD);
    let reason = skipped.candidates[0].reasons.join("; ");
    assert!(
        reason.contains(&format!(
            "no signature from {REQUESTED} within 2s, re-sent at "
        )),
        "{reason}"
    );
    assert_nothing_promoted(&p);
    assert_eq!(
        releaser::signing::read(&p.store, &stream(), &version(VERSION)).unwrap(),
        None,
        "the request is given up"
    );
    // Quiet for longer than another deadline: nothing is sent again.
    let settled = watch.settle(Duration::from_secs(3)).await;
    assert_eq!(of_topic(settled, REQUESTED).len(), 2, "sent again once");
    assert_eq!(of_topic(settled, SKIPPED).len(), 1, "skipped once");
    assert!(of_topic(settled, PUBLISHED).is_empty());
    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_started_after_the_re_send_signs_once_and_the_release_completes_once() {
    let key = GpgHome::with_key("fortnight-43");
    let mut p = signer_down(signed(&key), "4s").await;
    let mut watch = p.watch(&[REQUESTED, FINISHED, PUBLISHED, SKIPPED]).await;
    let commits = p.nightly_tested(VERSION, None).await;
    p.tick(PERIOD).await;
    assert_eq!(
        wait_topic(&mut watch, REQUESTED, 2).await.len(),
        2,
        "the request was sent again"
    );

    // The signer finds both messages of the one request in its queue.
    p.start_signer().await;
    assert_eq!(
        wait_topic(&mut watch, PUBLISHED, 1).await.len(),
        1,
        "released"
    );
    let finished = wait_topic(&mut watch, FINISHED, 2).await;
    assert_eq!(finished.len(), 2, "both messages answered");
    assert_eq!(
        finished[0].id, finished[1].id,
        "the second answer repeats the first"
    );
    for a in ARCHES {
        assert_eq!(p.release_commit(a).as_ref(), Some(&commits[&arch(a)]));
        assert_eq!(
            signatures(&p, &p.release_head(a).unwrap()),
            1,
            "{a}'s release commit is signed once"
        );
    }
    // Quiet past the time the release would have been given up. The signer's repeated
    // answer has its first answer's id, so the releaser takes it for that answer delivered
    // again and announces the release again, under the same id: one release.
    let settled = watch.settle(Duration::from_secs(5)).await;
    let announcements: std::collections::BTreeSet<_> = of_topic(settled, PUBLISHED)
        .iter()
        .map(|line| line.id.clone())
        .collect();
    assert_eq!(announcements.len(), 1, "released once");
    assert!(of_topic(settled, SKIPPED).is_empty(), "and not given up");
    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_release_the_signer_refuses_is_skipped_and_its_override_records_why() {
    let key = GpgHome::with_key("fortnight-43");
    let operator = BrokerUser::create("operator");
    let options = Options {
        operators: vec![operator.name.clone()],
        ..signed(&key)
    };
    let mut p = signer_down(options, "1h").await;
    let mut watch = p.watch(&[REQUESTED, FINISHED, SKIPPED, PUBLISHED]).await;
    // Failing on aarch64: only an override releases it.
    p.nightly_tested(VERSION, Some(("aarch64", "boot-smoke")))
        .await;
    let body = p.override_body(&operator, Some(VERSION), "security fix");
    p.override_as(&operator, OverrideRelease(body)).await;
    assert_eq!(
        wait_topic(&mut watch, REQUESTED, 1).await.len(),
        1,
        "signatures requested"
    );
    // The CHECKSUM changes between the request and the signing.
    change_release_checksum(&p);

    p.start_signer().await;
    let skipped = wait_topic(&mut watch, SKIPPED, 1).await;
    assert_eq!(skipped.len(), 1, "the forced release was skipped");
    let finished = wait_topic(&mut watch, FINISHED, 1).await;
    let reply_id = finished[0].id.as_deref().unwrap();
    let skipped: ReleaseSkipped = serde_json::from_value(skipped[0].body.clone()).unwrap();
    let reason = skipped.candidates[0].reasons.join("; ");
    assert!(
        reason.contains(reply_id) && reason.contains("the request says"),
        "the skip names the signer's reply and its reason: {reason}"
    );
    assert_nothing_promoted(&p);

    let log = p.audit_log();
    assert_eq!(log.len(), 2, "the override and its outcome: {log:?}");
    let outcome = log[1].outcome.as_deref().unwrap_or_default();
    assert!(
        outcome.starts_with(&format!("skipped {VERSION}: ")) && outcome.contains(reply_id),
        "{outcome}"
    );
    assert_eq!(
        (&log[1].operator, log[1].version.as_ref()),
        (&operator.name, Some(&version(VERSION))),
        "the outcome is the override's"
    );
    let settled = watch.settle(Duration::from_secs(1)).await;
    assert!(of_topic(settled, PUBLISHED).is_empty());
    watch.close().await;
    p.stop().await;
}

/// A request for the nightly's CHECKSUMs and commits, sent by hand as robosignatory's
/// requesters would.
fn nightly_request(
    p: &Pipeline,
    commits: &std::collections::BTreeMap<messages::Arch, Commit>,
) -> SignRequested {
    SignRequested {
        request_id: uuid::Uuid::new_v4(),
        stream: stream(),
        version: version(VERSION),
        build_id: format!("{}-{VERSION}", stream()),
        artifacts: ARCHES
            .iter()
            .map(|a| {
                let path = p
                    .store
                    .checksum_path(&stream(), &version(VERSION), &arch(a));
                SignArtifact::new(
                    p.store.relative(&path),
                    &store::hash_file(&path).unwrap().sha256,
                )
            })
            .collect(),
        commits: commits
            .iter()
            .map(|(a, commit)| SignCommit {
                arch: a.clone(),
                ostree_ref: release_ref(a.as_str()),
                commit: commit.clone(),
            })
            .collect(),
    }
}

/// Sends `message` and returns the signer's reply to it.
async fn answer(p: &Pipeline, message: &Outgoing) -> (String, SignFinished) {
    let mut watch = p.watch(&[FINISHED]).await;
    p.publish(message).await;
    let replies = wait_topic(&mut watch, FINISHED, 1).await;
    assert_eq!(replies.len(), 1, "the signer answered");
    watch.close().await;
    let finished = serde_json::from_value(replies[0].body.clone()).unwrap();
    (replies[0].id.clone().unwrap(), finished)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_fail_without_signing_and_a_replayed_request_signs_once() {
    let key = GpgHome::with_key("fortnight-43");
    let mut p = signed_pipeline(&key).await;
    p.start_signer().await;
    let commits = p.nightly(VERSION);
    let checksum = p
        .store
        .checksum_path(&stream(), &version(VERSION), &arch(ARCHES[0]));

    let mut tampered = nightly_request(&p, &commits);
    tampered.artifacts[0].checksum = format!("sha256:{}", "0".repeat(64));
    let (_, finished) = answer(&p, &Outgoing::new(uuid::Uuid::new_v4(), &tampered)).await;
    assert_eq!(finished.status, SignStatus::Failure);
    let reason = finished.failure_message.unwrap();
    assert!(reason.contains("the request says"), "{reason}");

    let mut outside = nightly_request(&p, &commits);
    outside.artifacts[0].file = "../../../etc/passwd".into();
    let (_, finished) = answer(&p, &Outgoing::new(uuid::Uuid::new_v4(), &outside)).await;
    assert_eq!(finished.status, SignStatus::Failure);
    let reason = finished.failure_message.unwrap();
    assert!(reason.contains("not a path in the store"), "{reason}");

    assert!(!asc(&checksum).exists(), "a refused request signed a file");
    for commit in commits.values() {
        assert_eq!(
            signatures(&p, commit),
            0,
            "a refused request signed {commit}"
        );
    }

    let requested = Outgoing::new(uuid::Uuid::new_v4(), &nightly_request(&p, &commits));
    let (first_id, first) = answer(&p, &requested).await;
    assert_eq!(first.status, SignStatus::Success, "{first:?}");
    assert!(asc(&checksum).is_file());
    let (again_id, again) = answer(&p, &requested).await;
    assert_eq!(again, first, "a replay gets the same answer");
    assert_eq!(again_id, first_id, "with the same message id");
    for commit in commits.values() {
        assert_eq!(signatures(&p, commit), 1, "{commit} is signed once");
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_delivered_again_announces_its_outcome_again_and_another_reply_is_stale() {
    let key = GpgHome::with_key("fortnight-43");
    let Refused {
        p,
        mut watch,
        skipped,
        finished,
        ..
    } = refused_release(&key).await;
    let reply: SignFinished = serde_json::from_value(finished[0].body.clone()).unwrap();
    let reply_id: uuid::Uuid = finished[0].id.as_deref().unwrap().parse().unwrap();

    // The releaser stopped after acting on the reply but before the broker confirmed the
    // skip: the broker delivers the same reply again, and the skip must not be lost.
    p.publish(&Outgoing::new(reply_id, &reply)).await;
    let announced = wait_topic(&mut watch, SKIPPED, 2).await;
    assert_eq!(announced.len(), 2, "the skip is announced again");
    assert_eq!(announced[1].id, skipped[0].id, "under the same message id");
    assert_eq!(announced[1].body, skipped[0].body);

    // Another reply to the answered request (a second signer, say) is stale.
    p.publish(&Outgoing::new(uuid::Uuid::new_v4(), &reply))
        .await;
    let settled = watch.settle(Duration::from_secs(2)).await;
    assert_eq!(
        of_topic(settled, SKIPPED).len(),
        2,
        "a stale reply skips nothing"
    );
    assert!(of_topic(settled, PUBLISHED).is_empty());
    assert_nothing_promoted(&p);
    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_end_of_life_moves_the_refs_only_once_signed_and_verifies() {
    let key = GpgHome::with_key("fortnight-43");
    let operator = BrokerUser::create("operator");
    let mut p = Pipeline::start(Options {
        operators: vec![operator.name.clone()],
        ..signed(&key)
    })
    .await;
    p.start_signer().await;
    let mut watch = p.watch(&[PUBLISHED, REQUESTED, ENDED]).await;
    p.nightly_tested(VERSION, None).await;
    p.tick(PERIOD).await;
    wait_topic(&mut watch, PUBLISHED, 1).await;
    let last: Vec<Commit> = ARCHES.iter().map(|a| p.release_head(a).unwrap()).collect();

    // The signer is down: the end of life waits for it, and nothing moves meanwhile.
    p.stop_signer().await;
    let end = OverrideEndOfLife(p.override_body(&operator, None, "Fedora 43 is end of life"));
    p.override_as(&operator, end).await;
    let requested = wait_topic(&mut watch, REQUESTED, 2).await;
    let request: SignRequested = serde_json::from_value(requested[1].body.clone()).unwrap();
    assert!(request.artifacts.is_empty(), "{request:?}");
    assert_eq!(request.commits.len(), ARCHES.len());
    for (a, last) in ARCHES.iter().zip(&last) {
        assert_eq!(p.release_head(a).as_ref(), Some(last), "{a} moved unsigned");
    }
    assert!(of_topic(watch.wait_for(0, Duration::ZERO).await, ENDED).is_empty());

    p.start_signer().await;
    let ended = wait_topic(&mut watch, ENDED, 1).await;
    let ended: StreamEndOfLife = serde_json::from_value(ended[0].body.clone()).unwrap();
    let published = p.store.keys_dir().join(format!("{}.asc", key.fingerprint));
    for (a, last) in ARCHES.iter().zip(&last) {
        let head = p.release_head(a).unwrap();
        assert_eq!(head, ended.arches[&arch(a)].commit);
        assert!(p.repo.is_ancestor(last, &head).unwrap());
        assert_eq!(
            signatures(&p, &head),
            1,
            "{a}'s end-of-life commit is signed"
        );
        let pulled = pull_verified(p.repo.path(), release_ref(a).as_str(), &published);
        assert_success(&pulled, &format!("verified pull of {}", release_ref(a)));
    }
    watch.close().await;
    p.stop().await;
}
