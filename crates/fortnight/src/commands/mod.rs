//! One module per subcommand; each has `Args` (or a `Command` enum) and an async `run`.
//! Helpers shared by several commands live here.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use messages::envelope::add_prefix;
use messages::{Message, Outgoing, RecordLine, UserName};
use settings::{BusSettings, Settings};

pub mod dead_letters;
pub mod demo;
pub mod diff;
pub mod explain;
pub mod override_;
pub mod publish;
pub mod record;
pub mod replay;
pub mod schemas;
pub mod status;
pub mod switch;
pub mod timer;
pub mod topology;
pub mod up;
pub mod vote;

/// The name the CLI's connections carry in the broker's connection list.
pub const CONNECTION_NAME: &str = "fortnight-cli";

/// Connects to the configured broker as the CLI. What an operator publishes must reach a
/// queue: a message no queue is bound for is an error, not a silent drop.
pub async fn connect(settings: &BusSettings) -> anyhow::Result<bus::Publisher> {
    bus::Publisher::connect(settings, CONNECTION_NAME)
        .await
        .map(bus::Publisher::routed)
        .context("cannot connect to the broker (check amqp_url and [tls] in the configuration)")
}

/// Who signs a vote, an override or a manual tick.
#[derive(Debug, clap::Args)]
pub struct Identity {
    /// The broker user you connect as; taken from `amqp_url` when it names one, or from
    /// `tls.user` with client certificates (where the broker takes it from the certificate).
    #[arg(long, value_name = "NAME")]
    pub user: Option<UserName>,
}

impl Identity {
    /// The account the broker will stamp as `user_id`, which receivers trust.
    pub fn resolve(&self, settings: &BusSettings) -> anyhow::Result<UserName> {
        if let Some(user) = &self.user {
            return Ok(user.clone());
        }
        let Some(name) = bus::Publisher::broker_user(settings) else {
            bail!(
                "cannot tell which broker user you are: amqp_url names none (or [tls] has no `user`); pass --user NAME"
            );
        };
        name.parse().with_context(|| {
            format!(
                "the broker user {name:?} of the configuration is not a valid account name; pass --user NAME"
            )
        })
    }

    /// The account, which must be in `operators`: overrides and manual ticks steer releases,
    /// and the releaser refuses overrides from anyone else.
    pub fn resolve_operator(&self, settings: &BusSettings) -> anyhow::Result<UserName> {
        let operator = self.resolve(settings)?;
        if !settings.operators.contains(&operator) {
            bail!(
                "{operator} is not in `operators` of the configuration; only operators may override releases or fire the timer"
            );
        }
        Ok(operator)
    }
}

/// Publishes `body` signed by `user`, waiting for the broker's confirm.
pub async fn publish_signed<M: Message>(
    settings: &BusSettings,
    body: &M,
    user: &UserName,
) -> anyhow::Result<Outgoing> {
    let message = Outgoing::new(uuid::Uuid::new_v4(), body);
    let publisher = connect(settings).await?;
    let published = publisher.publish_as(&message, user.as_str()).await;
    // Closed on every path, before the async runtime ends (see `bus::Publisher::close`).
    publisher.close().await;
    published.map_err(|error| {
        let context = match &error {
            bus::BusError::Unroutable { .. } => {
                format!("{} was not delivered: nothing reads it", M::TOPIC)
            }
            _ => format!(
                "the broker refused {} signed as {user}; is {user} the user you connect as?",
                M::TOPIC
            ),
        };
        anyhow::Error::new(error).context(context)
    })?;
    Ok(message)
}

/// Where the configuration is read from when neither `--config` nor `FORTNIGHT_CONFIG` says.
pub const DEFAULT_CONFIG: &str = "/etc/fortnight/config.toml";

/// Loads what a bus command needs, like fedora-messaging: the file `--config` or
/// `FORTNIGHT_CONFIG` names, else the default file when there is one, else only defaults (the
/// local broker as guest, no topic prefix) and `FORTNIGHT_*` overrides.
pub fn load_bus_settings(config: Option<&Path>) -> anyhow::Result<BusSettings> {
    let default = Path::new(DEFAULT_CONFIG);
    let path = config.or_else(|| default.is_file().then_some(default));
    BusSettings::load(path).with_context(|| match path {
        Some(path) => format!(
            "cannot use the configuration {} (pass --config FILE or set FORTNIGHT_CONFIG)",
            path.display()
        ),
        None => "cannot use the FORTNIGHT_* environment variables as configuration".to_owned(),
    })
}

/// Loads the configuration, telling the operator how to point at another file.
pub fn load_settings(path: &Path) -> anyhow::Result<Settings> {
    Settings::load(path).with_context(|| {
        format!(
            "cannot use the configuration {} (pass --config FILE or set FORTNIGHT_CONFIG)",
            path.display()
        )
    })
}

/// Whether a file argument means standard input or output.
pub fn is_stdio(path: &Path) -> bool {
    path == Path::new("-")
}

/// A record file (fedora-messaging's JSON Lines) read one line at a time, as often as
/// needed: standard input is copied to an unnamed temporary file first. Only one line is in
/// memory at a time, however long the file.
#[derive(Debug)]
pub struct RecordFile {
    path: PathBuf,
    file: File,
}

impl RecordFile {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file = if is_stdio(path) {
            let mut spool = tempfile::tempfile()
                .context("cannot make a temporary file to hold standard input")?;
            std::io::copy(&mut std::io::stdin().lock(), &mut spool)
                .context("cannot read standard input")?;
            spool
        } else {
            File::open(path).with_context(|| format!("cannot read {}", path.display()))?
        };
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// Every record with its line number, from the start of the file, skipping blank lines;
    /// an unreadable or malformed line is an error naming the file and the line.
    pub fn records(
        &mut self,
    ) -> anyhow::Result<impl Iterator<Item = anyhow::Result<(usize, RecordLine)>> + '_> {
        let path = &self.path;
        self.file
            .seek(SeekFrom::Start(0))
            .with_context(|| format!("cannot read {} again", path.display()))?;
        let lines = BufReader::new(&self.file).lines().enumerate();
        Ok(lines.filter_map(move |(index, line)| {
            let number = index + 1;
            let record = match line {
                Ok(text) if text.trim().is_empty() => return None,
                Ok(text) => RecordLine::parse(&text, number)
                    .map(|record| (number, record))
                    .with_context(|| {
                        format!(
                            "{} is not in fedora-messaging's record format (one JSON object per line)",
                            path.display()
                        )
                    }),
                Err(error) => Err(anyhow::Error::new(error)
                    .context(format!("cannot read line {number} of {}", path.display()))),
            };
            Some(record)
        }))
    }

    /// Reads every line and returns how many records there are, or the first bad line.
    pub fn check(&mut self) -> anyhow::Result<usize> {
        self.records()?
            .try_fold(0, |count, record| record.map(|_| count + 1))
    }
}

/// Publishes `(line, record)`s as they are, keeping up to `window` unconfirmed; returns how
/// many were confirmed (all of them), or which were not.
pub async fn publish_records(
    settings: &BusSettings,
    records: impl IntoIterator<Item = (usize, RecordLine)>,
    window: NonZeroUsize,
) -> anyhow::Result<usize> {
    let publisher = connect(settings).await?;
    let published = publisher.publish_records(records, window).await;
    publisher.close().await;
    published.map_err(|error| {
        let missing_prefix = error.unconfirmed.iter().find(|record| {
            record.reason == bus::NotTaken::Unroutable
                && add_prefix(&record.topic, &settings.topic_prefix) != record.topic
        });
        let hint = match missing_prefix {
            Some(record) => format!(
                " (line {}, with topic {}, lacks topic_prefix `{}`: did you mean `{}`?)",
                record.line,
                record.topic,
                settings.topic_prefix,
                add_prefix(&record.topic, &settings.topic_prefix)
            ),
            None => String::new(),
        };
        anyhow::Error::new(error).context(format!(
            "not every message was published{hint}; once the cause is fixed, publish the lines not confirmed and those not sent"
        ))
    })
}
