//! `fortnight demo`: the whole pipeline on this machine in about a minute. It makes a scratch
//! OSTree repository with four nightlies for two arches (the stream's previous release and
//! three new ones), runs every consumer in-process against the local RabbitMQ, publishes the
//! tree events, releases the first by override, votes, fires the two-week tick and explains
//! what was released, what it changed against the previous release and why the other
//! candidates were not. Last, as root, a scratch OSTree sysroot that deployed the previous
//! release upgrades and shows it now runs exactly the release.
//!
//! Everything it makes lives under one directory (`--dir`, or a new temporary one): the
//! OSTree repo, the artifact tree with the site, the configuration and the test suite. Its
//! exchange, topic prefix and queues carry a per-run id, so it never disturbs other users of
//! the broker, and the queues and exchange are deleted at the end.
//!
//! `tools` checks what it needs and prepares its directory, `config` writes the configuration
//! and test suite, `trees` commits the nightlies, `votes` plays the testers and the operator,
//! `watch` follows the bus, `report` explains the outcome, and `client` plays a machine that
//! follows the x86_64 release ref.

mod client;
mod config;
mod report;
mod tools;
mod trees;
mod votes;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use settings::Settings;
use tokio::sync::watch as signal;

const STREAM: &str = "f43";
const ARCHES: [&str; 2] = ["x86_64", "aarch64"];
/// The candidate testers vote for: not the newest, which fails its tests.
const VOTED: &str = "43.20261125.0";
/// The stream's release before the demo's tick, which the new release's notes compare with:
/// the operator releases it by override, as the tick two weeks earlier would have.
const PREVIOUS: &str = "43.20261111.0";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep everything the demo makes under DIR (created if needed; a previous demo's
    /// contents there are replaced). Without it a new temporary directory is used.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Give up when the pipeline has not finished after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// Names this run's exchange, prefix and queues (default: random), so a test can
    /// subscribe before the demo publishes.
    #[arg(long, hide = true)]
    pub run_id: Option<String>,
    /// Also boot each x86_64 image under qemu-system-x86_64 with the shipped boot test: its
    /// trees then carry Debian's cloud kernel and an initramfs (about 10 s more per image
    /// under TCG). Needs linux-image-cloud-amd64, busybox-static, cpio and qemu-system-x86_64.
    #[arg(long)]
    pub boot: bool,
}

/// The demo's signing key: made in `<dir>/gnupg` on every run.
struct DemoKey {
    home: PathBuf,
    fingerprint: String,
}

/// Elapsed-time progress lines on standard output.
#[derive(Debug, Clone, Copy)]
struct Progress {
    started: Instant,
}

impl Progress {
    fn say(&self, line: &str) {
        println!("[{:>5.1}s] {line}", self.started.elapsed().as_secs_f64());
    }
}

pub async fn run(_config: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    tools::require_tools(args.boot)?;
    let run_id = match args.run_id {
        Some(id) if !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()) => id,
        Some(id) => bail!("--run-id {id:?} must be letters and digits"),
        None => uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
    };
    let dir = tools::prepare_dir(args.dir)?;
    let home = dir.join("gnupg");
    let fingerprint = signer::Gpg::new(&home)
        .generate_key("Fortnight demo <demo@fortnight.invalid>")
        .context("cannot make the demo's signing key")?;
    let key = DemoKey { home, fingerprint };
    let amqp_url = std::env::var("FORTNIGHT_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let demo = config::Demo {
        dir: &dir,
        run_id: &run_id,
        amqp_url: &amqp_url,
        boot: args.boot,
        key: &key,
    };
    // The demo votes and fires the tick as the broker user, which must be an operator: find
    // it from a first config, then write the config that names it.
    let config_path = demo.write(&[])?;
    let user = super::Identity { user: None }.resolve(&super::load_settings(&config_path)?.bus)?;
    demo.write(std::slice::from_ref(&user))?;
    let settings = Arc::new(super::load_settings(&config_path)?);
    let progress = Progress { started };

    let publisher = tokio::time::timeout(
        Duration::from_secs(15),
        bus::Publisher::connect(&settings, "fortnight-demo"),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer from the broker within 15 seconds"))
    .and_then(|r| r.map_err(anyhow::Error::from))
    .context(
        "cannot reach RabbitMQ; start it with `rabbitmq-server -detached` (or `systemctl start \
             rabbitmq-server`) and run `fortnight demo` again",
    )?;
    progress.say(&format!("working in {}", dir.display()));

    let not_root = client::unavailable();
    let kernel = match (args.boot, &not_root) {
        (true, _) => trees::Kernel::Required,
        (false, None) => trees::Kernel::IfAvailable,
        (false, Some(_)) => trees::Kernel::Without,
    };
    let made = trees::make_repo(&dir, kernel, &progress)?;
    let client_skipped = not_root.or_else(|| {
        made.no_kernel
            .map(|why| format!("the x86_64 trees carry no kernel to deploy ({why})"))
    });
    let mut recording = bus::record::subscribe(&settings, &["fortnight.#".to_owned()])
        .await
        .context("cannot subscribe to the demo's messages")?;

    let (stop, stopped) = signal::channel(false);
    let consumers = tokio::spawn(super::up::run_all(
        Arc::clone(&settings),
        super::up::shutdown_waiter(&stopped),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let mut seen = watch::Seen::default();
    let result = match watch::wait_ready(&settings, deadline).await {
        Err(error) => Err(error),
        Ok(()) => {
            progress.say(&format!(
                "consumers ready: {}, release-timer",
                registry::names().join(", ")
            ));
            let mut watch = watch::Watch {
                recording: &mut recording,
                seen: &mut seen,
                prefix: &settings.topic_prefix,
                progress: &progress,
                deadline,
            };
            let follow = match &client_skipped {
                None => Some(votes::Follow {
                    dir: &dir,
                    key: &key,
                }),
                Some(_) => None,
            };
            votes::drive(
                &settings,
                &publisher,
                &mut watch,
                &made.nightlies,
                &user,
                follow,
            )
            .await
        }
    };

    let _ = stop.send(true);
    let stopped_cleanly = consumers.await;
    recording.close().await;
    publisher.close().await;
    cleanup(&settings).await;
    signer::Gpg::new(&key.home).stop_agent();
    let client = result?;
    match stopped_cleanly {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(error.context("a consumer failed during the demo")),
        Err(join) => bail!("the consumers' task panicked: {join}"),
    }
    report::summarize(&settings, &dir, seen.released.as_ref(), &key)?;
    match (client, client_skipped) {
        (Some(client), _) => client.upgrade()?,
        (None, Some(why)) => println!("No client upgraded: {why}."),
        (None, None) => {}
    }
    progress.say("done");
    Ok(ExitCode::SUCCESS)
}

/// Installs the log subscriber before `bus::init_tracing` (which then keeps it): the demo's
/// progress lines are what a newcomer reads, so logs default to warnings and the AMQP
/// client's connection-close chatter is left out. `FORTNIGHT_LOG` still decides when set.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORTNIGHT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lapin=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Deletes the run's queues and exchange; the demo's files stay.
async fn cleanup(settings: &Settings) {
    if let Err(error) = bus::topology::delete_consumers(settings, &registry::names()).await {
        tracing::warn!(%error, "the demo's queues were not deleted");
    }
}
