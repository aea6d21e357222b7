//! A full two-week cycle on the real broker and a real OSTree repository: two nightlies pass on
//! every arch, testers give the newer one +3, the tick releases it.

use crate::release_support;

use std::os::unix::fs::MetadataExt;

use messages::{
    CandidateTestingRequested, KarmaStatus, KarmaThresholdReached, ReleasePublished,
    TwoweekComplete,
};
use release_support::{ARCHES, Options, Pipeline, arch, stream, testers, version, wait_topic};

const TESTING: &str = "fortnight.candidate.testing.requested";
const THRESHOLD: &str = "fortnight.karma.threshold.reached";
const PUBLISHED: &str = "fortnight.release.published";
const LEGACY: &str = "releng.atomic.twoweek.complete";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_candidate_with_stable_karma_is_released_on_the_tick() {
    let voters = testers();
    let p = Pipeline::start(Options::default()).await;
    let mut watch = p.watch(&[TESTING, THRESHOLD, PUBLISHED, LEGACY]).await;

    p.nightly_tested("43.20261125.0", None).await;
    let newer = p.nightly_tested("43.20261126.0", None).await;
    // Two arches' reports handled side by side may both announce a candidate, under one
    // derived id (the bus delivers at least once); a message is its id.
    let mut wanted = 2;
    let requested: Vec<CandidateTestingRequested> = loop {
        let lines = wait_topic(&mut watch, TESTING, wanted).await;
        let mut ids = std::collections::BTreeSet::new();
        let distinct: Vec<CandidateTestingRequested> = lines
            .iter()
            .filter(|l| ids.insert(l.id.clone()))
            .map(|l| serde_json::from_value(l.body.clone()).unwrap())
            .collect();
        if distinct.len() >= 2 || lines.len() < wanted {
            break distinct;
        }
        wanted += 1;
    };
    assert_eq!(
        requested.len(),
        2,
        "one testing request per candidate once every arch passed"
    );
    let newest_request = requested
        .iter()
        .find(|r| r.version == version("43.20261126.0"))
        .unwrap();
    assert_eq!(newest_request.arches.len(), 2);
    assert_eq!(
        newest_request.arches[&arch("aarch64")].commit,
        newer[&arch("aarch64")]
    );

    for voter in &voters {
        p.vote(voter, "43.20261126.0", 1).await;
    }
    let reached = wait_topic(&mut watch, THRESHOLD, 1).await;
    let reached: KarmaThresholdReached = serde_json::from_value(reached[0].body.clone()).unwrap();
    assert_eq!((reached.status, reached.karma), (KarmaStatus::Stable, 3));
    assert_eq!(reached.votes.len(), 3);
    assert!(p.store.in_tier(
        &stream(),
        &version("43.20261126.0"),
        store::Tier::PassedHuman
    ));

    p.tick("2026-11-17T12:00:00Z").await;
    let published = wait_topic(&mut watch, PUBLISHED, 1).await;
    assert_eq!(published.len(), 1, "the release was announced");
    let release: ReleasePublished = serde_json::from_value(published[0].body.clone()).unwrap();
    assert_eq!(release.version, version("43.20261126.0"));
    assert_eq!(
        release.period.map(|p| p.to_string()).as_deref(),
        Some("2026-11-17T12:00:00Z")
    );
    assert!(!release.forced);
    assert_eq!(release.previous, None);

    for a in ARCHES {
        assert_eq!(
            p.release_commit(a).as_ref(),
            Some(&newer[&arch(a)]),
            "release ref of {a} is the candidate's commit"
        );
        let released = p
            .store
            .root()
            .join(&release.arches[&arch(a)].images[0].path);
        let nightly = p.store.image_path(
            &stream(),
            &version("43.20261126.0"),
            &arch(a),
            &"qcow2".parse().unwrap(),
        );
        assert_eq!(
            std::fs::metadata(&released).unwrap().ino(),
            std::fs::metadata(&nightly).unwrap().ino(),
            "the released image is a hard link of the nightly, not a copy"
        );
        let checksum =
            std::fs::read_to_string(p.release_dir("43.20261126.0").join(a).join("CHECKSUM"))
                .unwrap();
        assert!(
            checksum.contains(release.arches[&arch(a)].images[0].sha256.as_str()),
            "{checksum}"
        );
    }
    assert_eq!(
        p.store.current_release(&stream()).unwrap(),
        Some(version("43.20261126.0"))
    );
    assert!(
        p.release_dir("43.20261126.0")
            .join("release.json")
            .is_file()
    );
    assert!(
        p.repo.path().join("summary").is_file(),
        "ostree summary -u ran"
    );

    let legacy = wait_topic(&mut watch, LEGACY, 1).await;
    let legacy: TwoweekComplete = serde_json::from_value(legacy[0].body.clone()).unwrap();
    assert_eq!(legacy.0["x86_64"]["atomic_qcow2"].release, "43.20261126.0");

    watch.close().await;
    p.stop().await;
}
