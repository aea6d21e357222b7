//! Fortnight's configuration. Keys that mean the same as in fedora-messaging's config keep its
//! names (`amqp_url`, `publish_exchange`, `topic_prefix`, `passive_declares`, `[tls]`, `[qos]`).
//! An unknown key or an invalid value is an error that names the key, the value and what is
//! allowed. `deploy/fortnight.example.toml` documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use messages::{Arch, Format, Ref, Stream, UserName};
use serde::Deserialize;

/// Prefix of environment variables that override file keys; `__` separates nested keys
/// (`FORTNIGHT_AMQP_URL`, `FORTNIGHT_STORE__ROOT`, `FORTNIGHT_QOS__PREFETCH_COUNT`).
pub const ENV_PREFIX: &str = "FORTNIGHT";
/// The consumers that own a queue, in the order `fortnight up` starts them. The release timer
/// only publishes, so it has none; its `[consumers.release-timer]` section holds only
/// `health_addr`.
pub const QUEUE_CONSUMERS: [&str; 5] = [
    "image-builder",
    "image-tester",
    "karma-tracker",
    "releaser",
    "site-publisher",
];
/// The service driven by a clock instead of a queue.
pub const RELEASE_TIMER: &str = "release-timer";
/// Environment variables with the prefix that are read by the CLI, not the config.
const ENV_NOT_CONFIG: &[&str] = &["FORTNIGHT_CONFIG", "FORTNIGHT_LOG", "FORTNIGHT_LOG_FORMAT"];

/// A message or a command named a stream the configuration does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stream {stream}: not in the configuration, which has {known}")]
pub struct UnknownStream {
    pub stream: Stream,
    /// The configured streams, for the reader who mistyped one.
    pub known: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot load configuration from {path}: {source}")]
    Load {
        path: PathBuf,
        source: config::ConfigError,
    },
    #[error("invalid configuration: key `{key}` = {value:?}: {allowed}")]
    Invalid {
        key: String,
        value: String,
        allowed: String,
    },
}

fn invalid(
    key: impl Into<String>,
    value: impl Into<String>,
    allowed: impl Into<String>,
) -> SettingsError {
    SettingsError::Invalid {
        key: key.into(),
        value: value.into(),
        allowed: allowed.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default = "default_amqp_url")]
    pub amqp_url: String,
    #[serde(default = "default_exchange")]
    pub publish_exchange: String,
    /// Prepended to every published topic, stripped from every received one.
    #[serde(default)]
    pub topic_prefix: String,
    /// Check that exchanges and queues exist instead of declaring them (Fedora's broker).
    #[serde(default)]
    pub passive_declares: bool,
    #[serde(default)]
    pub tls: Option<Tls>,
    #[serde(default)]
    pub qos: Qos,
    #[serde(default)]
    pub client_properties: ClientProperties,
    pub store: StoreSettings,
    /// Per-consumer runtime settings, keyed by consumer name (`image-builder`, ...).
    #[serde(default)]
    pub consumers: BTreeMap<String, ConsumerSettings>,
    #[serde(default)]
    pub image_builder: BuilderSettings,
    #[serde(default)]
    pub image_tester: TesterSettings,
    #[serde(default)]
    pub site: SiteSettings,
    /// Accounts allowed to publish overrides and fire the timer by hand.
    #[serde(default)]
    pub operators: Vec<UserName>,
    pub streams: BTreeMap<Stream, StreamSettings>,
}

fn default_amqp_url() -> String {
    "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()
}
fn default_exchange() -> String {
    "amq.topic".to_owned()
}

/// TLS client certificates, as Fedora's broker requires (`amqps://`, EXTERNAL auth).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub ca_cert: PathBuf,
    pub keyfile: PathBuf,
    pub certfile: PathBuf,
    /// The broker user the certificate logs in as (its CN where the broker sets
    /// `ssl_cert_login_from = common_name`, as Fedora's does). The broker stamps it as
    /// `user_id`; the runtime needs it to carry a vote's or override's sender through retries.
    #[serde(default)]
    pub user: Option<UserName>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qos {
    #[serde(default = "default_prefetch")]
    pub prefetch_count: u16,
}
fn default_prefetch() -> u16 {
    25
}
impl Default for Qos {
    fn default() -> Self {
        Self {
            prefetch_count: default_prefetch(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientProperties {
    /// Shown in the broker's connection list next to the consumer's name.
    #[serde(default)]
    pub app: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// The artifact tree's root (the "location to put things").
    pub root: PathBuf,
}

/// How one consumer runs: its queue, retries and health endpoint. The release timer has no
/// queue; of its `[consumers.release-timer]` section only `health_addr` means anything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSettings {
    /// Queue name; `fortnight.<consumer>` by default.
    #[serde(default)]
    pub queue: Option<String>,
    /// Declare the queue as a quorum queue (replicated; recommended on a cluster).
    #[serde(default)]
    pub quorum_queue: bool,
    /// Attempts before a message goes to the dead-letter queue.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before each retry; the last one repeats.
    #[serde(default = "default_retry_delays")]
    pub retry_delays_seconds: Vec<u64>,
    /// Bodies larger than this are dead-lettered unread.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Where `/live`, `/ready` and `/metrics` are served; none when absent.
    #[serde(default)]
    pub health_addr: Option<SocketAddr>,
}
fn default_max_attempts() -> u32 {
    5
}
fn default_retry_delays() -> Vec<u64> {
    vec![10, 60, 300]
}
fn default_max_body_bytes() -> usize {
    1024 * 1024
}
impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            queue: None,
            quorum_queue: false,
            max_attempts: default_max_attempts(),
            retry_delays_seconds: default_retry_delays(),
            max_body_bytes: default_max_body_bytes(),
            health_addr: None,
        }
    }
}

impl ConsumerSettings {
    /// Refuses the queue keys in the release timer's section: it reads no queue, and a
    /// setting that silently does nothing misleads whoever wrote it.
    fn only_health_addr(&self) -> Result<(), SettingsError> {
        let default = Self::default();
        let set: Vec<&str> = [
            ("queue", self.queue.is_some()),
            ("quorum_queue", self.quorum_queue != default.quorum_queue),
            ("max_attempts", self.max_attempts != default.max_attempts),
            (
                "retry_delays_seconds",
                self.retry_delays_seconds != default.retry_delays_seconds,
            ),
            (
                "max_body_bytes",
                self.max_body_bytes != default.max_body_bytes,
            ),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
        match set.first() {
            None => Ok(()),
            Some(key) => Err(invalid(
                format!("consumers.{RELEASE_TIMER}.{key}"),
                set.join(", "),
                "only `health_addr`: the release timer reads no queue; remove the queue keys",
            )),
        }
    }

    /// The delay before retry number `attempt` (1-based).
    pub fn retry_delay(&self, attempt: u32) -> Duration {
        let index =
            (attempt.max(1) as usize - 1).min(self.retry_delays_seconds.len().saturating_sub(1));
        Duration::from_secs(self.retry_delays_seconds.get(index).copied().unwrap_or(10))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuilderSettings {
    /// A recipe still running after this long is killed and the build fails.
    #[serde(default = "default_recipe_timeout")]
    pub recipe_timeout_seconds: u64,
}
fn default_recipe_timeout() -> u64 {
    3 * 3600
}
impl Default for BuilderSettings {
    fn default() -> Self {
        Self {
            recipe_timeout_seconds: default_recipe_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TesterSettings {
    /// Independent tests run in parallel up to this many.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
}
fn default_parallel() -> usize {
    2
}
impl Default for TesterSettings {
    fn default() -> Self {
        Self {
            parallel: default_parallel(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSettings {
    /// Download links on the page and in the JSON are this URL joined with store paths.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Shown at the top of the page to set expectations.
    #[serde(default = "default_intro")]
    pub intro: String,
}
fn default_base_url() -> String {
    "https://dl.example.org/fortnight/".to_owned()
}
fn default_intro() -> String {
    "These images are produced and released automatically every two weeks from the newest \
     nightly that passed automated tests and community testing. They are not blocked on \
     Fedora QA's release validation."
        .to_owned()
}
impl Default for SiteSettings {
    fn default() -> Self {
        Self {
            base_url: default_base_url(),
            intro: default_intro(),
        }
    }
}

/// One line of releases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    pub arches: Vec<Arch>,
    /// The ref whose new commits start a nightly, per arch.
    pub input_refs: BTreeMap<Arch, Ref>,
    /// The OSTree repository holding the input refs and the release refs.
    pub ostree_repo: PathBuf,
    pub formats: Vec<Format>,
    /// The executable that builds each format (recipe mode).
    #[serde(default)]
    pub recipes: BTreeMap<Format, PathBuf>,
    /// The test suite (TOML) run on every image of the stream.
    #[serde(default)]
    pub test_suite: Option<PathBuf>,
    /// The pungi variant whose images are taken in compose mode (`AtomicHost`).
    #[serde(default)]
    pub compose_variant: Option<String>,
    /// In compose mode, only composes whose id starts with this (`Fedora-43-`) belong to the
    /// stream; every compose with the variant does when absent.
    #[serde(default)]
    pub compose_id_prefix: Option<String>,
    #[serde(default)]
    pub karma: KarmaSettings,
    /// Two-week releases; absent for nightly-only streams.
    #[serde(default)]
    pub twoweek: Option<TwoWeekSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KarmaSettings {
    #[serde(default = "default_stable")]
    pub stable_threshold: i32,
    #[serde(default = "default_unstable")]
    pub unstable_threshold: i32,
    /// When set, only these accounts may vote.
    #[serde(default)]
    pub voters: Option<Vec<UserName>>,
}
fn default_stable() -> i32 {
    3
}
fn default_unstable() -> i32 {
    -3
}
impl Default for KarmaSettings {
    fn default() -> Self {
        Self {
            stable_threshold: default_stable(),
            unstable_threshold: default_unstable(),
            voters: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WhenNothingPassed {
    /// Wait for the next tick.
    Skip,
    /// Release the next candidate that becomes eligible, without waiting for a tick.
    ReleaseNextPass,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwoWeekSettings {
    /// The release ref promoted per arch.
    pub release_refs: BTreeMap<Arch, Ref>,
    /// Ticks happen at `anchor + n * period_days` (UTC) ...
    #[serde(default)]
    pub anchor: Option<DateTime<Utc>>,
    #[serde(default = "default_period_days")]
    pub period_days: u32,
    /// ... or on this cron expression (UTC), when set.
    #[serde(default)]
    pub cron: Option<String>,
    /// Whether a candidate needs stable karma; when false, karma is advisory.
    #[serde(default = "default_true")]
    pub karma_required: bool,
    #[serde(default = "default_policy")]
    pub when_nothing_passed: WhenNothingPassed,
    /// Also publish the old `releng.atomic.twoweek.complete` body.
    #[serde(default)]
    pub legacy_messages: bool,
}
fn default_period_days() -> u32 {
    14
}
fn default_true() -> bool {
    true
}
fn default_policy() -> WhenNothingPassed {
    WhenNothingPassed::Skip
}

impl Settings {
    /// Loads `path` and applies `FORTNIGHT_` environment overrides, then validates.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let env: config::Map<String, String> = std::env::vars()
            .filter(|(key, _)| {
                key.starts_with("FORTNIGHT_") && !ENV_NOT_CONFIG.contains(&key.as_str())
            })
            .collect();
        let builder = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env)),
            );
        Self::build(builder, path)
    }

    /// Parses TOML text without environment overrides (tests, examples).
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let builder = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml));
        Self::build(builder, Path::new("<inline>"))
    }

    /// Deserializes what `builder` reads, naming `path` in a load error, then validates.
    fn build(
        builder: config::ConfigBuilder<config::builder::DefaultState>,
        path: &Path,
    ) -> Result<Self, SettingsError> {
        let loaded = builder
            .build()
            .and_then(|c| c.try_deserialize::<Settings>())
            .map_err(|source| SettingsError::Load {
                path: path.to_owned(),
                source,
            })?;
        loaded.validate()?;
        Ok(loaded)
    }

    /// Cross-field rules that types alone cannot carry.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(self.amqp_url.starts_with("amqp://") || self.amqp_url.starts_with("amqps://")) {
            return Err(invalid(
                "amqp_url",
                &self.amqp_url,
                "an amqp:// or amqps:// URL",
            ));
        }
        if self.qos.prefetch_count == 0 {
            return Err(invalid(
                "qos.prefetch_count",
                "0",
                "a number from 1 to 65535",
            ));
        }
        for (name, consumer) in &self.consumers {
            if name == RELEASE_TIMER {
                consumer.only_health_addr()?;
            }
            if consumer.max_attempts == 0 {
                return Err(invalid(
                    format!("consumers.{name}.max_attempts"),
                    "0",
                    "at least 1",
                ));
            }
            if consumer.retry_delays_seconds.is_empty() {
                return Err(invalid(
                    format!("consumers.{name}.retry_delays_seconds"),
                    "[]",
                    "at least one delay",
                ));
            }
        }
        for (stream, s) in &self.streams {
            if s.arches.is_empty() {
                return Err(invalid(
                    format!("streams.{stream}.arches"),
                    "[]",
                    "at least one architecture",
                ));
            }
            for arch in &s.arches {
                if !s.input_refs.contains_key(arch) {
                    return Err(invalid(
                        format!("streams.{stream}.input_refs"),
                        format!("{:?}", s.input_refs.keys().collect::<Vec<_>>()),
                        format!("an input ref for every arch in `arches`; missing {arch}"),
                    ));
                }
            }
            if let Some(tw) = &s.twoweek {
                for arch in &s.arches {
                    if !tw.release_refs.contains_key(arch) {
                        return Err(invalid(
                            format!("streams.{stream}.twoweek.release_refs"),
                            format!("{:?}", tw.release_refs.keys().collect::<Vec<_>>()),
                            format!("a release ref for every arch in `arches`; missing {arch}"),
                        ));
                    }
                }
                if tw.period_days == 0 {
                    return Err(invalid(
                        format!("streams.{stream}.twoweek.period_days"),
                        "0",
                        "at least 1 day",
                    ));
                }
                if tw.anchor.is_none() && tw.cron.is_none() {
                    return Err(invalid(
                        format!("streams.{stream}.twoweek"),
                        "no anchor, no cron",
                        "either `anchor` (with `period_days`) or `cron`",
                    ));
                }
            }
            if s.karma.stable_threshold <= 0 || s.karma.unstable_threshold >= 0 {
                return Err(invalid(
                    format!("streams.{stream}.karma"),
                    format!(
                        "stable {} / unstable {}",
                        s.karma.stable_threshold, s.karma.unstable_threshold
                    ),
                    "a positive stable_threshold and a negative unstable_threshold",
                ));
            }
        }
        Ok(())
    }

    /// The runtime settings of one consumer, with defaults when it has no section.
    pub fn consumer(&self, name: &str) -> ConsumerSettings {
        self.consumers.get(name).cloned().unwrap_or_default()
    }

    /// The queue a consumer reads: configured, or `fortnight.<name>`.
    pub fn queue_name(&self, consumer: &str) -> String {
        self.consumers
            .get(consumer)
            .and_then(|c| c.queue.clone())
            .unwrap_or_else(|| format!("fortnight.{consumer}"))
    }

    pub fn stream(&self, stream: &Stream) -> Option<&StreamSettings> {
        self.streams.get(stream)
    }

    /// The stream's settings, or the error every consumer and command reports for a stream
    /// nobody configured.
    pub fn require_stream(&self, stream: &Stream) -> Result<&StreamSettings, UnknownStream> {
        self.stream(stream).ok_or_else(|| UnknownStream {
            stream: stream.clone(),
            known: self
                .streams
                .keys()
                .map(Stream::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The stream (and arch) whose input ref is `ostree_ref`, if any stream builds it.
    pub fn stream_for_input_ref(
        &self,
        ostree_ref: &str,
    ) -> Option<(&Stream, &Arch, &StreamSettings)> {
        self.streams.iter().find_map(|(stream, s)| {
            s.input_refs
                .iter()
                .find(|(_, r)| r.as_str() == ostree_ref)
                .map(|(arch, _)| (stream, arch, s))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [store]
        root = "/srv/fortnight"
        [streams.f43]
        arches = ["x86_64"]
        input_refs = { x86_64 = "fedora/43/x86_64/updates/atomic-host" }
        ostree_repo = "/srv/repo"
        formats = ["qcow2"]
    "#;

    #[test]
    fn minimal_config_gets_defaults() {
        let s = Settings::from_toml(MINIMAL).unwrap();
        assert_eq!(s.publish_exchange, "amq.topic");
        assert_eq!(s.qos.prefetch_count, 25);
        assert_eq!(s.queue_name("image-builder"), "fortnight.image-builder");
        let (stream, arch, _) = s
            .stream_for_input_ref("fedora/43/x86_64/updates/atomic-host")
            .unwrap();
        assert_eq!((stream.as_str(), arch.as_str()), ("f43", "x86_64"));
    }

    #[test]
    fn the_release_timer_takes_only_a_health_addr() {
        let s = Settings::from_toml(&format!(
            "{MINIMAL}\n[consumers.release-timer]\nhealth_addr = \"127.0.0.1:9104\"\n"
        ))
        .unwrap();
        assert_eq!(
            s.consumer(RELEASE_TIMER).health_addr,
            Some("127.0.0.1:9104".parse().unwrap())
        );
        let err = Settings::from_toml(&format!(
            "{MINIMAL}\n[consumers.release-timer]\nhealth_addr = \"127.0.0.1:9104\"\nquorum_queue = true\n"
        ))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("consumers.release-timer.quorum_queue"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Settings::from_toml(&format!("{MINIMAL}\n[qos]\nprefetch = 3\n")).unwrap_err();
        assert!(err.to_string().contains("prefetch"), "{err}");
    }

    #[test]
    fn invalid_value_names_key_value_and_rule() {
        let err = Settings::from_toml(
            &MINIMAL
                .replace("\"f43\"", "x")
                .replace("streams.f43", "streams.\"../x\""),
        )
        .unwrap_err();
        assert!(err.to_string().contains("../x"), "{err}");
        let err = Settings::from_toml(&MINIMAL.replace(
            "arches = [\"x86_64\"]",
            "arches = [\"x86_64\", \"aarch64\"]",
        ))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("streams.f43.input_refs") && text.contains("aarch64"),
            "{text}"
        );
    }
}
