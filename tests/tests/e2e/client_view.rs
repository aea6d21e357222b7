//! The releases as a machine that follows the release ref sees them: a scratch OSTree sysroot
//! deploys the x86_64 release ref from the pipeline's repository, and after every tick
//! `ostree admin upgrade` must bring exactly the release of that period, whatever nightlies
//! were built, failed or voted on in between; at the stream's end of life, the same command
//! moves the machine to the release of the stream that succeeds it.

use crate::release_support;

use std::collections::BTreeMap;
use std::path::Path;

use messages::{
    Arch, CandidateTestingRequested, Commit, KarmaThresholdReached, Message, OverrideEndOfLife,
    OverrideSwitch, Ref, ReleasePublished, ReleaseSkipped, Stream, StreamEndOfLife, StreamSwitched,
};
use ostree_cli::{Deployment, RemoteName, Sysroot};
use release_support::{
    BrokerUser, Options, Pipeline, SUCCESSOR, arch, release_ref, release_ref_of, stream, testers,
    version,
};
use tests::Watch;

/// The arch of the machine: the one whose kernel the bootable trees carry.
const ARCH: &str = "x86_64";
const OS: &str = "fedora";
const REMOTE: &str = "fortnight";

/// A machine following a release ref: a scratch sysroot whose repository has the pipeline's
/// repository as a remote.
#[derive(Debug)]
struct Client {
    sysroot: Sysroot,
    _dir: tempfile::TempDir,
}

impl Client {
    /// Sets up the sysroot and deploys `release_ref` from `repo`, as an installer does.
    fn follow(repo: &Path, release_ref: &Ref) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sysroot = Sysroot::init(dir.path(), OS.parse().unwrap()).unwrap();
        sysroot
            .repo()
            .add_remote(&remote(), &format!("file://{}", repo.display()), None)
            .unwrap();
        sysroot.deploy(&remote(), release_ref).unwrap();
        Self { sysroot, _dir: dir }
    }

    fn upgrade(&self) {
        self.sysroot.upgrade().unwrap();
    }

    /// The deployments, the default (the one that boots next) first.
    fn deployments(&self) -> Vec<Deployment> {
        self.sysroot.deployments().unwrap()
    }

    fn default_deployment(&self) -> Deployment {
        self.sysroot
            .default_deployment()
            .unwrap()
            .expect("the sysroot has a deployment")
    }

    /// A string metadata key of what the machine's repository has for `release_ref` of the
    /// remote: what it pulled, as its users' tools read it.
    fn pulled_metadata(&self, release_ref: &Ref, key: &str) -> Option<String> {
        let repo = self.sysroot.repo();
        let pulled = repo
            .remote_head(&remote(), release_ref)
            .unwrap()
            .expect("the machine pulled the release ref");
        repo.metadata_string(&pulled, key).unwrap()
    }

    /// The VERSION of the deployment's os-release: what the machine says it runs.
    fn os_release_version(&self, deployment: &Deployment) -> String {
        self.sysroot
            .os_release_version(deployment)
            .unwrap()
            .expect("the deployment's os-release names a VERSION")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        Sysroot::unlock(self.sysroot.path()).unwrap();
    }
}

fn remote() -> RemoteName {
    REMOTE.parse().unwrap()
}

/// Waits for a message of `M` for which `wanted` holds; returns it.
async fn wait_until<M: Message>(watch: &mut Watch, wanted: impl Fn(&M) -> bool) -> M {
    let mut count = 1;
    loop {
        let lines = release_support::wait_topic(watch, M::TOPIC, count).await;
        if let Some(found) = lines
            .iter()
            .map(|l| serde_json::from_value::<M>(l.body.clone()).unwrap())
            .find(&wanted)
        {
            return found;
        }
        assert!(
            lines.len() >= count,
            "no wanted {} within {:?}: {lines:?}",
            M::TOPIC,
            release_support::WAIT
        );
        count = lines.len() + 1;
    }
}

/// A nightly that passed on every arch; returns once the karma-tracker made it a candidate.
async fn candidate(p: &Pipeline, watch: &mut Watch, v: &str) -> BTreeMap<Arch, Commit> {
    let commits = p.nightly_tested(v, None).await;
    wait_until(watch, |r: &CandidateTestingRequested| {
        r.version == version(v)
    })
    .await;
    commits
}

/// Every tester votes `karma` on `v`; returns once `v` reached its threshold.
async fn votes(p: &Pipeline, watch: &mut Watch, voters: &[BrokerUser], v: &str, karma: i8) {
    for voter in voters {
        p.vote(voter, v, karma).await;
    }
    wait_until(watch, |r: &KarmaThresholdReached| r.version == version(v)).await;
}

async fn tick_releases(p: &Pipeline, watch: &mut Watch, period: &str, v: &str) {
    p.tick(period).await;
    let release = wait_until(watch, |r: &ReleasePublished| {
        r.period.map(|p| p.to_string()).as_deref() == Some(period)
    })
    .await;
    assert_eq!(release.version, version(v), "the release of {period}");
}

/// The machine runs the release of version `released`: its default deployment is the commit
/// the release ref points at, made from the tree that release's release.json names, and none
/// of `unreleased` (nightlies newer than the release).
fn assert_runs(
    p: &Pipeline,
    client: &Client,
    released: &str,
    unreleased: &[&BTreeMap<Arch, Commit>],
) {
    let record_path = p.store.release_record_path(&stream(), &version(released));
    let record: ReleasePublished =
        serde_json::from_slice(&std::fs::read(&record_path).unwrap()).unwrap();
    let deployed = client.default_deployment();
    assert_eq!(
        Some(&deployed.checksum),
        p.release_head(ARCH).as_ref(),
        "the machine deployed what {} points at",
        release_ref(ARCH)
    );
    let source = p.repo.release_source(&deployed.checksum).unwrap();
    assert_eq!(
        source,
        record.arches[&arch(ARCH)].tree.commit,
        "the deployed tree is the one {} names",
        record_path.display()
    );
    assert_eq!(client.os_release_version(&deployed), released);
    for nightly in unreleased {
        assert_ne!(
            source,
            nightly[&arch(ARCH)],
            "a nightly newer than {released} reached the machine"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_following_the_release_ref_upgrades_to_each_release_and_nothing_else() {
    let voters = testers();
    let p = Pipeline::start(Options {
        bootable_trees: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot")),
        ..Options::default()
    })
    .await;
    let mut watch = p
        .watch(&[
            CandidateTestingRequested::TOPIC,
            KarmaThresholdReached::TOPIC,
            ReleasePublished::TOPIC,
            ReleaseSkipped::TOPIC,
        ])
        .await;

    // Period 1: an older candidate is voted stable; a newer one passed but nobody voted, and
    // the newest failed its tests.
    candidate(&p, &mut watch, "43.20261001.0").await;
    votes(&p, &mut watch, &voters, "43.20261001.0", 1).await;
    let unvoted = candidate(&p, &mut watch, "43.20261003.0").await;
    let failed = p
        .nightly_tested("43.20261005.0", Some((ARCH, "boot-smoke")))
        .await;
    tick_releases(&p, &mut watch, "2026-10-06T12:00:00Z", "43.20261001.0").await;
    let client = Client::follow(p.repo.path(), &release_ref(ARCH));
    assert_runs(&p, &client, "43.20261001.0", &[&unvoted, &failed]);
    let first = client.default_deployment();

    // Period 2: the stable candidate is older than an unstable one and a failed one.
    candidate(&p, &mut watch, "43.20261014.0").await;
    votes(&p, &mut watch, &voters, "43.20261014.0", 1).await;
    let unstable = candidate(&p, &mut watch, "43.20261016.0").await;
    votes(&p, &mut watch, &voters, "43.20261016.0", -1).await;
    let failed = p
        .nightly_tested("43.20261018.0", Some((ARCH, "boot-smoke")))
        .await;
    tick_releases(&p, &mut watch, "2026-10-20T12:00:00Z", "43.20261014.0").await;
    client.upgrade();
    assert_runs(&p, &client, "43.20261014.0", &[&unstable, &failed]);
    let second = client.default_deployment();
    assert_eq!(
        client.deployments(),
        [second.clone(), first],
        "the previous release stays as the rollback"
    );

    // Period 3: a candidate passed but has no karma yet, so the tick releases nothing and the
    // machine stays where it is.
    let waiting = candidate(&p, &mut watch, "43.20261101.0").await;
    p.tick("2026-11-03T12:00:00Z").await;
    wait_until(&mut watch, |s: &ReleaseSkipped| {
        s.period.to_string() == "2026-11-03T12:00:00Z"
    })
    .await;
    client.upgrade();
    assert_runs(&p, &client, "43.20261014.0", &[&waiting]);
    assert_eq!(
        client.default_deployment(),
        second,
        "nothing new was deployed"
    );

    // Period 4: it is voted stable; a newer nightly passed on this arch but failed on the
    // other, so it is no candidate.
    votes(&p, &mut watch, &voters, "43.20261101.0", 1).await;
    let half_failed = p
        .nightly_tested("43.20261115.0", Some(("aarch64", "boot-smoke")))
        .await;
    tick_releases(&p, &mut watch, "2026-11-17T12:00:00Z", "43.20261101.0").await;
    client.upgrade();
    assert_runs(&p, &client, "43.20261101.0", &[&half_failed]);

    drop(client);
    watch.close().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_end_of_life_a_machine_following_the_release_ref_moves_to_the_successor() {
    let voters = testers();
    let operator = BrokerUser::create("operator");
    let p = Pipeline::start(Options {
        bootable_trees: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot")),
        operators: vec![operator.name.clone()],
        successor: true,
        ..Options::default()
    })
    .await;
    let successor: Stream = SUCCESSOR.parse().unwrap();
    let mut watch = p
        .watch(&[
            CandidateTestingRequested::TOPIC,
            KarmaThresholdReached::TOPIC,
            ReleasePublished::TOPIC,
            StreamEndOfLife::TOPIC,
            StreamSwitched::TOPIC,
        ])
        .await;

    // The old stream's last release, and a newer nightly nobody voted on.
    candidate(&p, &mut watch, "43.20261001.0").await;
    votes(&p, &mut watch, &voters, "43.20261001.0", 1).await;
    let unvoted = candidate(&p, &mut watch, "43.20261003.0").await;
    tick_releases(&p, &mut watch, "2026-10-06T12:00:00Z", "43.20261001.0").await;
    let client = Client::follow(p.repo.path(), &release_ref(ARCH));
    assert_runs(&p, &client, "43.20261001.0", &[&unvoted]);
    let last = client.default_deployment();

    // The successor's first release moves nobody by itself.
    let next = p.successor_release(&operator, "44.20261010.0").await;
    wait_until(&mut watch, |r: &ReleasePublished| r.stream == successor).await;
    client.upgrade();
    assert_runs(&p, &client, "43.20261001.0", &[&unvoted, &next]);
    assert_eq!(client.default_deployment(), last);

    // Nor does the switch of the two-week releases to the successor: it only stops the old
    // stream's releases (and an end of life before it is refused, in the releaser's tests).
    let switch = OverrideSwitch {
        stream: successor.clone(),
        reason: "Fedora 44 is released".into(),
        operator: operator.name.clone(),
        release_now: false,
    };
    p.override_as(&operator, switch).await;
    wait_until(&mut watch, |s: &StreamSwitched| s.to == successor).await;
    client.upgrade();
    assert_eq!(client.default_deployment(), last);

    // The operator ends the old stream: the next upgrade moves the machine.
    let end = OverrideEndOfLife(p.override_body(&operator, None, "Fedora 43 is end of life"));
    p.override_as(&operator, end.clone()).await;
    let ended = wait_until(&mut watch, |e: &StreamEndOfLife| e.stream == stream()).await;
    let successor_ref = release_ref_of(&successor, ARCH);
    let x86 = &ended.arches[&arch(ARCH)];
    assert_eq!(x86.rebase.as_ref(), Some(&successor_ref));
    assert_eq!(p.release_head(ARCH).as_ref(), Some(&x86.commit));
    client.upgrade();
    let moved = client.default_deployment();
    assert_eq!(
        Some(&moved.checksum),
        p.repo.rev_parse(&successor_ref).unwrap().as_ref(),
        "the machine deployed what {successor_ref} points at"
    );
    assert_eq!(
        p.repo.release_source(&moved.checksum).unwrap(),
        next[&arch(ARCH)]
    );
    assert_eq!(client.os_release_version(&moved), "44.20261010.0");
    let origin = client.sysroot.origin(&moved).unwrap();
    assert!(
        origin.contains(&format!("refspec={REMOTE}:{successor_ref}")),
        "the machine now follows {successor_ref}: {origin}"
    );
    assert_eq!(
        client
            .pulled_metadata(&release_ref(ARCH), ostree_cli::ENDOFLIFE)
            .as_ref(),
        Some(&x86.message),
        "the machine's users can read why"
    );
    assert!(
        x86.message.contains(successor_ref.as_str()),
        "{}",
        x86.message
    );
    assert_eq!(
        client.deployments(),
        [moved.clone(), last],
        "the old stream's release stays as the rollback"
    );

    // Asked again: announced again under the same id, and nothing new committed.
    p.override_as(&operator, end).await;
    let announced = release_support::wait_topic(&mut watch, StreamEndOfLife::TOPIC, 2).await;
    assert_eq!(announced.len(), 2, "{announced:?}");
    assert_eq!(announced[0].id, announced[1].id);
    assert_eq!(p.release_head(ARCH).as_ref(), Some(&x86.commit));

    // The old stream gets no more two-week releases.
    candidate(&p, &mut watch, "43.20261015.0").await;
    votes(&p, &mut watch, &voters, "43.20261015.0", 1).await;
    p.tick("2026-10-20T12:00:00Z").await;
    release_support::dead_letter_with(&p, "releaser", "end of life").await;
    assert_eq!(p.release_head(ARCH).as_ref(), Some(&x86.commit));
    client.upgrade();
    assert_eq!(client.default_deployment(), moved);

    drop(client);
    watch.close().await;
    p.stop().await;
}
