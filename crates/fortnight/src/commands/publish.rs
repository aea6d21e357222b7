//! `fortnight publish FILE|-`: what `fedora-messaging publish` does, with Fortnight's config.

use std::num::NonZeroUsize;
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
    /// Messages sent and not yet confirmed by the broker at any time. One confirm round trip
    /// covers a whole window; every message is still confirmed before the command succeeds.
    #[arg(long, value_name = "N", default_value = "25")]
    pub window: NonZeroUsize,
}

pub async fn run(config: Option<&std::path::Path>, args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::load_bus_settings(config)?;
    let mut file = super::RecordFile::open(&args.file)?;
    // Every line is checked before the first is sent, so a bad line publishes nothing.
    file.check()?;
    let sent_at = chrono::Utc::now();
    let mut unreadable = None;
    let records = file
        .records()?
        .map_while(|record| record.map_err(|error| unreadable = Some(error)).ok())
        .map(|(line, mut record)| {
            record.topic = add_prefix(&record.topic, &settings.topic_prefix);
            (line, record.with_publish_defaults(sent_at))
        });
    let count = super::publish_records(&settings, records, args.window).await?;
    if let Some(error) = unreadable {
        return Err(error.context(format!(
            "{} changed or became unreadable while being published; the {count} message(s) before the bad line were published and confirmed",
            args.file.display()
        )));
    }
    println!("published {count} message(s) from {}", args.file.display());
    Ok(ExitCode::SUCCESS)
}
