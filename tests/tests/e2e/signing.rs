//! The signer on the real broker, gpg and ostree: a release's CHECKSUM files and commits are
//! signed with the stream's key, and a user who trusts only the published key can check both;
//! bad requests are answered with FAILURE and sign nothing; a replayed request signs nothing
//! again.

use crate::release_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use messages::{
    Outgoing, ReleasePublished, SignArtifact, SignCommit, SignFinished, SignRequested, SignStatus,
};
use release_support::{ARCHES, Options, Pipeline, arch, release_ref, stream, version, wait_topic};
use tests::process::{assert_success, text};
use tests::signing::{GpgHome, pull_verified};

const PUBLISHED: &str = "fortnight.release.published";
const FINISHED: &str = "fortnight.sign.finished";
const VERSION: &str = "43.20261126.0";

/// A pipeline whose stream is signed with `key`, and the release of [`VERSION`].
async fn released(key: &GpgHome) -> (Pipeline, ReleasePublished) {
    let p = Pipeline::start(Options {
        karma_required: false,
        signing: Some((key.path().to_owned(), key.fingerprint.clone())),
        ..Options::default()
    })
    .await;
    let mut watch = p.watch(&[PUBLISHED]).await;
    p.nightly_tested(VERSION, None).await;
    p.tick("2026-11-17T12:00:00Z").await;
    let published = wait_topic(&mut watch, PUBLISHED, 1).await;
    let release = serde_json::from_value(published[0].body.clone()).unwrap();
    watch.close().await;
    (p, release)
}

fn checksum_path(p: &Pipeline, a: &str) -> PathBuf {
    p.store
        .release_arch_dir(&stream(), &version(VERSION), &arch(a))
        .join(store::CHECKSUM)
}

/// What a requester asks for a release: every arch's CHECKSUM and release commit.
fn request(p: &Pipeline, release: &ReleasePublished) -> SignRequested {
    SignRequested {
        request_id: uuid::Uuid::new_v4(),
        stream: stream(),
        version: version(VERSION),
        build_id: format!("{}-{VERSION}", stream()),
        artifacts: ARCHES
            .iter()
            .map(|a| {
                let path = checksum_path(p, a);
                SignArtifact::new(
                    p.store.relative(&path),
                    &store::hash_file(&path).unwrap().sha256,
                )
            })
            .collect(),
        commits: release
            .arches
            .iter()
            .map(|(a, released)| SignCommit {
                arch: a.clone(),
                ostree_ref: released.release_ref.clone(),
                commit: released.tree.commit.clone(),
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

/// How many signatures a commit carries (`ostree show` counts them, trusted or not).
fn signatures(p: &Pipeline, a: &str) -> usize {
    let commit = p.release_commit(a).unwrap();
    let out = Command::new("ostree")
        .arg("show")
        .arg(format!("--repo={}", p.repo.path().display()))
        .arg(commit.as_str())
        .output()
        .unwrap();
    assert_success(&out, "ostree show");
    let shown = text(&out.stdout);
    shown
        .lines()
        .find_map(|l| l.trim().strip_prefix("Found "))
        .and_then(|l| l.split(' ').next())
        .map_or(0, |n| n.parse().unwrap())
}

fn write_key(dir: &Path, name: &str, key: &GpgHome) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, key.public_key()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_release_verifies_with_the_published_key_and_not_with_another() {
    let key = GpgHome::with_key("fortnight-43");
    let other = GpgHome::with_key("someone-else");
    let (p, release) = released(&key).await;

    let requested = request(&p, &release);
    let (_, finished) = answer(&p, &Outgoing::new(uuid::Uuid::new_v4(), &requested)).await;
    assert_eq!(finished.status, SignStatus::Success, "{finished:?}");
    assert_eq!(finished.request, requested, "the reply carries the request");
    assert_eq!(finished.failure_message, None);

    let published = p.store.keys_dir().join(format!("{}.asc", key.fingerprint));
    assert!(published.is_file(), "the public key is published");
    let wrong = write_key(p.bus.dir.path(), "other.asc", &other);
    for a in ARCHES {
        let checksum = checksum_path(&p, a);
        let signature = checksum.with_extension("asc");
        let good = GpgHome::verify_with(&published, &signature, &checksum);
        assert_success(&good, &format!("gpg --verify of {a}'s CHECKSUM"));
        let bad = GpgHome::verify_with(&wrong, &signature, &checksum);
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
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_fail_without_signing_and_a_replayed_request_signs_once() {
    let key = GpgHome::with_key("fortnight-43");
    let (p, release) = released(&key).await;
    let signature = checksum_path(&p, ARCHES[0]).with_extension("asc");

    let mut tampered = request(&p, &release);
    tampered.artifacts[0].checksum = format!("sha256:{}", "0".repeat(64));
    let (_, finished) = answer(&p, &Outgoing::new(uuid::Uuid::new_v4(), &tampered)).await;
    assert_eq!(finished.status, SignStatus::Failure);
    let reason = finished.failure_message.unwrap();
    assert!(reason.contains("the request says"), "{reason}");

    let mut outside = request(&p, &release);
    outside.artifacts[0].file = "../../../etc/passwd".into();
    let (_, finished) = answer(&p, &Outgoing::new(uuid::Uuid::new_v4(), &outside)).await;
    assert_eq!(finished.status, SignStatus::Failure);
    let reason = finished.failure_message.unwrap();
    assert!(reason.contains("not a path in the store"), "{reason}");

    assert!(!signature.exists(), "a refused request signed a file");
    for a in ARCHES {
        assert_eq!(
            signatures(&p, a),
            0,
            "a refused request signed {a}'s commit"
        );
    }

    let requested = Outgoing::new(uuid::Uuid::new_v4(), &request(&p, &release));
    let (first_id, first) = answer(&p, &requested).await;
    assert_eq!(first.status, SignStatus::Success, "{first:?}");
    let (again_id, again) = answer(&p, &requested).await;
    assert_eq!(again, first, "a replay gets the same answer");
    assert_eq!(again_id, first_id, "with the same message id");
    for a in ARCHES {
        assert_eq!(signatures(&p, a), 1, "{a}'s commit is signed once");
    }
    p.stop().await;
}
