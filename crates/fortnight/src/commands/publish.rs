//! `fortnight publish FILE|-`: what `fedora-messaging publish` does, with Fortnight's config.

use std::path::PathBuf;
use std::process::ExitCode;

use messages::envelope::add_prefix;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A file in fedora-messaging's record format (JSON Lines), or `-` for standard input.
    /// Each message keeps its id and headers; `topic_prefix` is added to topics that do not
    /// already carry it. A line without fedora-messaging's headers gets those
    /// `fedora-messaging publish` adds (schema `base.message`, severity 20, `sent-at`, priority 0).
    pub file: PathBuf,
}

pub async fn run(config: Option<&std::path::Path>, args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::load_bus_settings(config)?;
    // Parse the whole file first so a bad line publishes nothing.
    let sent_at = chrono::Utc::now();
    let records: Vec<_> = super::read_records(&args.file)?
        .into_iter()
        .map(|mut record| {
            record.topic = add_prefix(&record.topic, &settings.topic_prefix);
            record.with_publish_defaults(sent_at)
        })
        .collect();
    let count = super::publish_records(&settings, &records).await?;
    println!("published {count} message(s) from {}", args.file.display());
    Ok(ExitCode::SUCCESS)
}
