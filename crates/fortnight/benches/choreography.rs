//! What the choreography itself adds, from a tree event to `fortnight.image.tests.passed`,
//! with an instant recipe (a shell script writing a few bytes) and an instant test
//! (`/bin/true`): the real image-builder and image-tester on the bus runtime, the real
//! RabbitMQ, the real store. One candidate at a time, so the figures are latencies.
//!
//!     cargo bench -p fortnight --bench choreography [-- ITERATIONS]
//!
//! Per hop: tree.composed published -> image.built received -> tests.passed received.

use std::sync::Arc;
use std::time::{Duration, Instant};

use messages::envelope::strip_prefix;
use messages::{
    ImageBuilt, ImageTestsPassed, Message, Outgoing, Ref, Tree, TreeComposed, derived_id,
};
use ostree_cli::Repo;
use settings::Settings;
use tests::Running;
use tests::config::{self, toml};

const RECIPE: &str = "#!/bin/sh\nprintf 'image %s\\n' \"$FORTNIGHT_VERSION\" > \"$FORTNIGHT_OUTPUT_DIR/image.qcow2\"\n";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<28} p50 {:>8.2} ms   p99 {:>8.2} ms   mean {:>8.2} ms   max {:>8.2} ms",
        percentile(&samples, 50.0).as_secs_f64() * 1e3,
        percentile(&samples, 99.0).as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100);
    let dir = tempfile::tempdir()?;
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let recipe = dir.path().join("recipe");
    std::fs::write(&recipe, RECIPE)?;
    std::fs::set_permissions(&recipe, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let suite = dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        "[[test]]\nname = \"true\"\nargv = [\"/bin/true\"]\n",
    )?;
    let repo_path = dir.path().join("repo");
    let mut config = toml! {
        publish_exchange = (format!("fortnight.bench.{id}"))
        topic_prefix = (format!("bench.{id}"))

        [consumers.image-builder]
        queue = (format!("fortnight.bench.{id}.image-builder"))

        [consumers.image-tester]
        queue = (format!("fortnight.bench.{id}.image-tester"))
    };
    config::merge(
        &mut config,
        config::store_config(
            &dir.path().join("store"),
            "fedora/43/x86_64/atomic-host",
            &repo_path,
            toml! {
                recipes = { qcow2 = (config::path(&recipe)) }
                test_suite = (config::path(&suite))
            },
        ),
    );
    let text = config::to_toml(&config);
    let settings = Arc::new(Settings::from_toml(&text)?);

    // One commit per iteration: the builder builds each (ref, commit) once.
    let repo = Repo::new(&repo_path);
    repo.init_archive()?;
    let tree_dir = dir.path().join("tree");
    std::fs::create_dir_all(&tree_dir)?;
    let input: Ref = "fedora/43/x86_64/atomic-host".parse()?;
    let mut trees = Vec::new();
    for n in 0..iterations {
        std::fs::write(tree_dir.join("n"), n.to_string())?;
        let version = format!("43.20261127.{n}");
        let commit = repo.commit(&input, &tree_dir, &[("version", &version)])?;
        trees.push((version.parse()?, commit));
    }

    let mut recording = bus::record::subscribe(
        &settings,
        &[
            ImageBuilt::TOPIC.to_owned(),
            ImageTestsPassed::TOPIC.to_owned(),
        ],
    )
    .await?;
    let builder = Running::start(
        &settings,
        image_builder::ImageBuilder::new(Arc::clone(&settings))?,
    );
    let tester = Running::start(
        &settings,
        image_tester::ImageTester::new(Arc::clone(&settings))?,
    );
    let publisher = bus::Publisher::connect(&settings, "fortnight-bench").await?;
    // The consumers declare and bind their queues when they connect; wait for that by
    // sending a warm-up candidate through before measuring.
    let mut samples = (Vec::new(), Vec::new(), Vec::new());
    for (n, (version, commit)) in trees.into_iter().enumerate() {
        let message = TreeComposed {
            arch: "x86_64".parse()?,
            tree: Tree {
                ostree_ref: input.clone(),
                commit: commit.clone(),
                repo: repo_path.to_string_lossy().into_owned(),
            },
            version: Some(version),
            compose_id: None,
            force: false,
        };
        let outgoing = Outgoing::new(derived_id("bench", &[commit.as_str()]), &message);
        let start = Instant::now();
        publisher.publish(&outgoing).await?;
        let mut built = None;
        let deadline = Duration::from_secs(if n == 0 { 30 } else { 10 });
        loop {
            let record = match tokio::time::timeout(deadline, recording.next()).await {
                Ok(Some(record)) => record?,
                Ok(None) => anyhow::bail!("the recording closed"),
                // The first event may precede the consumers' bindings: send it again.
                Err(_) if n == 0 => {
                    publisher.publish(&outgoing).await?;
                    continue;
                }
                Err(_) => anyhow::bail!("no result for iteration {n} within {deadline:?}"),
            };
            let at = start.elapsed();
            match strip_prefix(&record.topic, &settings.topic_prefix) {
                ImageBuilt::TOPIC => built = Some(at),
                ImageTestsPassed::TOPIC => {
                    if n > 0 {
                        let built = built.unwrap_or(at);
                        samples.0.push(built);
                        samples.1.push(at - built);
                        samples.2.push(at);
                    }
                    break;
                }
                _ => {}
            }
        }
    }

    builder.stop().await;
    tester.stop().await;
    recording.close().await;
    publisher.close().await;
    bus::topology::delete_consumers(&settings, &[image_builder::NAME, image_tester::NAME]).await?;

    println!(
        "choreography: tree.composed -> image.built -> image.tests.passed, {} candidates",
        samples.2.len()
    );
    report("tree.composed -> built", samples.0);
    report("built -> tests.passed", samples.1);
    report("total", samples.2);
    Ok(())
}
