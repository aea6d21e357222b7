//! `fortnight record`: consume matching messages into fedora-messaging's record format, so
//! `fedora-messaging publish` (or `fortnight publish`) can replay them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the messages (JSON Lines, one per message), or `-` for standard output.
    pub file: PathBuf,
    /// Stop after this many messages; without it, record until SIGINT or SIGTERM.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// A routing-key pattern to record (`*` one word, `#` any words); repeat for more.
    /// `topic_prefix` is added unless the pattern already carries it.
    #[arg(long = "topic", value_name = "PATTERN", default_value = "#")]
    pub topics: Vec<String>,
}

pub async fn run(config: Option<&std::path::Path>, args: Args) -> anyhow::Result<ExitCode> {
    let settings = super::load_bus_settings(config)?;
    let mut out: Box<dyn Write> = if super::is_stdio(&args.file) {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(&args.file)
            .with_context(|| format!("cannot create {}", args.file.display()))?;
        Box::new(file)
    };
    let mut recording = bus::record::subscribe(&settings, &args.topics)
        .await
        .context("cannot subscribe (check amqp_url and [tls] in the configuration)")?;
    // Tools that drive `record` wait for this line before publishing.
    tracing::info!(queue = %recording.queue(), topics = ?args.topics, "recording started");

    let shutdown = bus::shutdown_signal();
    tokio::pin!(shutdown);
    let mut count = 0u64;
    while args.limit.is_none_or(|limit| count < limit) {
        let next = tokio::select! {
            next = recording.next() => next,
            () = &mut shutdown => break,
        };
        let Some(record) = next else {
            anyhow::bail!("the broker closed the connection after {count} message(s)");
        };
        let record = record.context("cannot receive a message")?;
        // One flushed line per message: a recording cut short still holds whole lines.
        writeln!(out, "{}", record.to_line())
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write to {}", args.file.display()))?;
        count += 1;
    }
    recording.close().await;
    tracing::info!(count, file = %args.file.display(), "recording finished");
    Ok(ExitCode::SUCCESS)
}
