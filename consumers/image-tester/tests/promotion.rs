//! Two tester replicas (two `ImageTester`s on one shared store) handling the two arches of
//! the same candidates at the same moment, in both orders: every candidate must end up in
//! passed-autotest, none twice, and nothing else may appear there. And a rebuilt arch that
//! fails takes its version out of passed-autotest again.

use std::sync::Arc;

use bus::Outcome;
use image_tester::ImageTester;
use messages::{Arch, Outgoing, Stream, Version, derived_id};
use settings::Settings;
use store::{Store, Tier};
use tests::pipeline::image_built;

const ROUNDS: usize = 25;

/// Two arches of f43 with a store at `root`; `stream_keys` go into `[streams.f43]`.
fn settings(root: &std::path::Path, stream_keys: toml::Table) -> Arc<Settings> {
    let mut stream = toml::toml! {
        arches = ["x86_64", "aarch64"]
        input_refs = { x86_64 = "fedora/43/x86_64/atomic-host", aarch64 = "fedora/43/aarch64/atomic-host" }
        ostree_repo = "/nonexistent"
        formats = ["qcow2"]
    };
    stream.extend(stream_keys);
    let config = toml::toml! {
        [store]
        root = (root.display().to_string())
        [streams]
        f43 = (toml::Value::Table(stream))
    };
    Arc::new(Settings::from_toml(&toml::to_string(&config).unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_replicas_promote_every_candidate_exactly_once() {
    let root = tempfile::tempdir().unwrap();
    let settings = settings(root.path(), toml::Table::new());
    let store = Store::open(root.path()).unwrap();
    let replicas = [
        Arc::new(ImageTester::new(settings.clone()).unwrap()),
        Arc::new(ImageTester::new(settings).unwrap()),
    ];
    let stream: Stream = "f43".parse().unwrap();
    let arches: [Arch; 2] = ["x86_64".parse().unwrap(), "aarch64".parse().unwrap()];
    let mut versions = Vec::new();
    for round in 0..ROUNDS {
        let version: Version = format!("43.20261127.{round}").parse().unwrap();
        let messages = arches
            .iter()
            .map(|arch| {
                Outgoing::new(
                    derived_id("t", &[arch.as_str()]),
                    &image_built(
                        &store,
                        (&stream, &version, arch),
                        &format!("fedora/43/{arch}/atomic-host"),
                        format!("{version} {arch}").as_bytes(),
                    ),
                )
                .to_incoming()
            })
            .collect::<Vec<_>>();
        // Alternate which replica gets which arch, so both orders race.
        let (first, second) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        let (a, b) = (replicas[first].clone(), replicas[second].clone());
        let (ma, mb) = (messages[0].clone(), messages[1].clone());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { bus::outcome(a.as_ref(), &ma).await }),
            tokio::spawn(async move { bus::outcome(b.as_ref(), &mb).await }),
        );
        for outcome in [ra.unwrap(), rb.unwrap()] {
            assert!(
                matches!(&outcome, Outcome::Done(out) if out.len() == 1 && out[0].topic == "fortnight.image.tests.passed"),
                "{outcome:?}"
            );
        }
        versions.push(version);
    }
    // list_versions sorts.
    let promoted = store.list_versions(&stream, Tier::PassedAutotest).unwrap();
    versions.sort();
    assert_eq!(promoted, versions);
    let entries = std::fs::read_dir(store.tier_dir(&stream, Tier::PassedAutotest))
        .unwrap()
        .count();
    assert_eq!(entries, ROUNDS, "no temporary or duplicate entries");
}

#[tokio::test]
async fn a_rebuilt_arch_that_fails_takes_the_version_out_of_passed_autotest() {
    let root = tempfile::tempdir().unwrap();
    let suite = root.path().join("suite.toml");
    std::fs::write(
        &suite,
        r#"
        [[test]]
        name = "not-broken"
        argv = ["/bin/sh", "-c", "! grep -q broken \"$FORTNIGHT_IMAGE\""]
        kind = "gating"
        timeout_seconds = 30
        "#,
    )
    .unwrap();
    let settings = settings(
        root.path(),
        toml::toml! { test_suite = (suite.display().to_string()) },
    );
    let store = Store::open(root.path()).unwrap();
    let tester = ImageTester::new(settings).unwrap();
    let stream: Stream = "f43".parse().unwrap();
    let version: Version = "43.20261127.0".parse().unwrap();
    let arches: [Arch; 2] = ["x86_64".parse().unwrap(), "aarch64".parse().unwrap()];
    let test = |content: &str, arch: &Arch| {
        let message = Outgoing::new(
            derived_id("t", &[arch.as_str(), content]),
            &image_built(
                &store,
                (&stream, &version, arch),
                &format!("fedora/43/{arch}/atomic-host"),
                content.as_bytes(),
            ),
        )
        .to_incoming();
        let tester = &tester;
        async move {
            match bus::outcome(tester, &message).await {
                Outcome::Done(out) => out[0].topic.clone(),
                other => panic!("{other:?}"),
            }
        }
    };

    for arch in &arches {
        assert_eq!(test("fine", arch).await, "fortnight.image.tests.passed");
    }
    assert!(store.in_tier(&stream, &version, Tier::PassedAutotest));

    // x86_64 is rebuilt (forced) and its new image fails.
    assert_eq!(
        test("broken", &arches[0]).await,
        "fortnight.image.tests.failed"
    );
    assert!(
        !store.in_tier(&stream, &version, Tier::PassedAutotest),
        "a version with a failing arch is no longer a candidate"
    );
    assert!(
        store.version_dir(&stream, &version).is_dir(),
        "its files stay for inspection"
    );

    // Rebuilt again and fixed: back in the tier.
    assert_eq!(
        test("fixed", &arches[0]).await,
        "fortnight.image.tests.passed"
    );
    assert!(store.in_tier(&stream, &version, Tier::PassedAutotest));
}
