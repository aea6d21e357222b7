//! `fortnight replay`: re-publish one message so the step it triggers runs again. Like
//! `fedora-messaging replay`, the message keeps its id, headers and full topic, and the
//! configured prefix is not added (the recorded topic already carries it).

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use messages::RecordLine;

/// How long a datagrepper request may take (the reference client allows 5 seconds).
const DATAGREPPER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("source").required(true))]
pub struct Args {
    /// A record file (JSON Lines, as `fortnight record` or `fedora-messaging record` write).
    #[arg(long, group = "source", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The message to replay from the file; needed when the file holds more than one.
    #[arg(
        long,
        value_name = "ID",
        requires = "file",
        conflicts_with = "message_id"
    )]
    pub id: Option<String>,
    /// A datagrepper instance (`https://apps.fedoraproject.org/datagrepper`) to fetch the
    /// message from.
    #[arg(long, group = "source", value_name = "URL", requires = "message_id")]
    pub datagrepper: Option<String>,
    /// The id of the message to fetch from datagrepper.
    #[arg(value_name = "ID", requires = "datagrepper")]
    pub message_id: Option<String>,
}

pub async fn run(config: Option<&std::path::Path>, args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::load_bus_settings(config)?;
    // The record and its line: in the file, or 1 for datagrepper's one-line answer.
    let (line, record) = match (&args.file, &args.datagrepper, &args.message_id) {
        (Some(file), _, _) => from_file(file, args.id.as_deref())?,
        (None, Some(url), Some(id)) => (1, from_datagrepper(url, id).await?),
        // clap's argument groups rule the other combinations out.
        _ => bail!("give either --file FILE [--id ID] or --datagrepper URL ID"),
    };
    let shown = format!(
        "message {} with topic {}",
        record.id.as_deref().unwrap_or("-"),
        record.topic
    );
    super::publish_records(&settings, [(line, record)], NonZeroUsize::MIN).await?;
    println!("replayed {shown}");
    Ok(ExitCode::SUCCESS)
}

/// The record to replay and its line, read one line at a time: a backlog's record file may
/// be large.
fn from_file(file: &std::path::Path, id: Option<&str>) -> anyhow::Result<(usize, RecordLine)> {
    let mut records = super::RecordFile::open(file)?;
    let mut count = 0;
    let mut chosen = None;
    for record in records.records()? {
        let (line, record) = record?;
        count += 1;
        let wanted = match id {
            Some(id) => record.id.as_deref() == Some(id),
            None => count == 1,
        };
        if wanted && chosen.is_none() {
            chosen = Some((line, record));
        }
    }
    match (id, chosen) {
        (Some(_), Some(record)) => Ok(record),
        (Some(id), None) => bail!("no message with id {id} in {}", file.display()),
        (None, Some(record)) if count == 1 => Ok(record),
        (None, _) => bail!(
            "{} holds {count} messages; choose one with --id ID",
            file.display()
        ),
    }
}

/// Fetches `<url>/v2/id?id=<id>&is_raw=true`, which answers with a record line's shape.
pub async fn from_datagrepper(url: &str, id: &str) -> anyhow::Result<RecordLine> {
    let endpoint = format!("{}/v2/id", url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(DATAGREPPER_TIMEOUT)
        .build()
        .context("cannot set up the HTTP client")?;
    let response = client
        .get(&endpoint)
        .query(&[("id", id), ("is_raw", "true")])
        .send()
        .await
        .with_context(|| format!("cannot reach datagrepper at {endpoint}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("datagrepper at {endpoint} answered {status} for message {id}");
    }
    let text = response
        .text()
        .await
        .with_context(|| format!("cannot read datagrepper's answer for message {id}"))?;
    RecordLine::parse(&text, 1)
        .with_context(|| format!("datagrepper's answer for message {id} is not a message"))
}
