//! `fortnight publish FILE|-`: what `fedora-messaging publish` does, with Fortnight's config.

use std::path::PathBuf;
use std::process::ExitCode;

use messages::envelope::add_prefix;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A file in fedora-messaging's record format (JSON Lines), or `-` for standard input.
    /// Each message keeps its id and headers; `topic_prefix` is added to topics that do not
    /// already carry it.
    pub file: PathBuf,
}

pub async fn run(config: &std::path::Path, args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::load_settings(config)?;
    // Parse the whole file first so a bad line publishes nothing.
    let mut records = super::read_records(&args.file)?;
    for record in &mut records {
        record.topic = add_prefix(&record.topic, &settings.topic_prefix);
    }
    let count = super::publish_records(&settings, &records).await?;
    println!("published {count} message(s) from {}", args.file.display());
    Ok(ExitCode::SUCCESS)
}
