//! `fortnight topology export`: what every consumer needs on the broker, as RabbitMQ
//! definitions an administrator imports where Fortnight may not declare
//! (`passive_declares = true`). Built from the configuration and the consumers of
//! `crates/registry` by `bus::topology`, the code the consumers declare with; no broker is
//! contacted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use bus::topology::Definitions;
use settings::BusSettings;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write every consumer's queues, exchange and bindings as RabbitMQ definitions.
    ///
    /// Uses the configured queue names, topic prefix, retry delays, quorum flags and
    /// exchange, and the arguments the consumers declare with. Import the file with
    /// `rabbitmqctl import_definitions FILE` (or the management API's POST /api/definitions).
    /// Needs no broker connection.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The virtual host the definitions name [default: the one amqp_url or amqp_urls names].
    #[arg(long, value_name = "NAME")]
    pub vhost: Option<String>,
    /// Where to write the JSON; `-` is standard output. A file is replaced in one rename.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub output: PathBuf,
}

pub fn run(config: Option<&Path>, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Export(args) => {
            let settings = super::load_bus_settings(config)?;
            let vhost = match args.vhost {
                Some(vhost) => vhost,
                None => bus::topology::configured_vhost(&settings).with_context(|| {
                    format!(
                        "the broker address {:?} names no usable virtual host; pass --vhost NAME",
                        settings::redact_url(&settings.broker_urls()[0])
                    )
                })?,
            };
            let definitions = definitions(&settings, &vhost)?;
            let mut text = serde_json::to_string_pretty(&definitions)
                .context("cannot write the definitions as JSON")?;
            text.push('\n');
            write_output(&args.output, &text)?;
            if !super::is_stdio(&args.output) {
                eprintln!(
                    "{} queues, {} exchanges and {} bindings for vhost {} written to {}; import with `rabbitmqctl import_definitions {}`",
                    definitions.queues.len(),
                    definitions.exchanges.len(),
                    definitions.bindings.len(),
                    vhost,
                    args.output.display(),
                    args.output.display(),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The definitions for every consumer that owns a queue (the release timer only publishes,
/// to the exchange that is already in them).
pub fn definitions(settings: &BusSettings, vhost: &str) -> anyhow::Result<Definitions> {
    let topologies: Vec<_> = registry::CONSUMERS
        .iter()
        .map(|consumer| consumer.topology(settings))
        .collect();
    Definitions::new(vhost, &topologies).context("cannot export the consumers' topology")
}

/// Writes `text` to standard output for `-`, else to a temporary file beside `path` that
/// then replaces it, so an import never reads half a file.
fn write_output(path: &Path, text: &str) -> anyhow::Result<()> {
    if super::is_stdio(path) {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .context("cannot write to standard output");
    }
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write {}", file.path().display()))?;
    // Definitions are no secret, and whoever imports them may be another user.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot make {} readable", file.path().display()))?;
    }
    file.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
