//! Fortnight's configuration. Keys that mean the same as in fedora-messaging's config keep its
//! names (`amqp_url`, `publish_exchange`, `topic_prefix`, `passive_declares`, `[tls]`, `[qos]`).
//! An unknown key or an invalid value is an error that names the key, the value and what is
//! allowed. `deploy/fortnight.example.toml` documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use messages::{
    Arch, CiArtifactType, CiContact, Format, Message, Prerelease, PungiComposeOstree,
    PungiComposeStatusChange, Ref, SignFinished, Stream, TestName, UserName, Version,
};
use serde::Deserialize;

/// Prefix of environment variables that override file keys; `__` separates nested keys
/// (`FORTNIGHT_AMQP_URL`, `FORTNIGHT_STORE__ROOT`, `FORTNIGHT_QOS__PREFETCH_COUNT`).
pub const ENV_PREFIX: &str = "FORTNIGHT";
/// The service driven by a clock instead of a queue. It only publishes, so it has no queue;
/// its `[consumers.release-timer]` section holds only `health_addr`. (The queue consumers are
/// listed in `crates/registry`.)
pub const RELEASE_TIMER: &str = "release-timer";
/// Environment variables with the prefix that are not configuration overrides: read by the
/// CLI, set by Fortnight for recipes and tests (a recipe may run `fortnight` itself), or read
/// by the shipped recipes and test scripts in `deploy/`.
const ENV_NOT_CONFIG: &[&str] = &[
    "FORTNIGHT_CONFIG",
    "FORTNIGHT_LOG",
    "FORTNIGHT_LOG_FORMAT",
    "FORTNIGHT_RECIPES",
    "FORTNIGHT_REPO",
    "FORTNIGHT_REF",
    "FORTNIGHT_COMMIT",
    "FORTNIGHT_VERSION",
    "FORTNIGHT_STREAM",
    "FORTNIGHT_ARCH",
    "FORTNIGHT_FORMAT",
    "FORTNIGHT_OUTPUT_DIR",
    "FORTNIGHT_IMAGE",
    "FORTNIGHT_CHECKSUM_FILE",
    "FORTNIGHT_SCRATCH",
    "FORTNIGHT_OSNAME",
    "FORTNIGHT_MIN_DISK_BYTES",
    "FORTNIGHT_BOOT_SECONDS",
];
/// The top-level keys of [`BusSettings`], all a bus command reads.
const BUS_KEYS: &[&str] = &[
    "amqp_url",
    "amqp_urls",
    "publish_exchange",
    "topic_prefix",
    "passive_declares",
    "tls",
    "qos",
    "client_properties",
    "consumers",
    "operators",
    "trust",
    "signing_topics",
];
/// The top-level keys only the pipeline's consumers read; a bus command ignores them, so it
/// runs with the consumers' file or with none.
const PIPELINE_KEYS: &[&str] = &["store", "image_builder", "image_tester", "site", "streams"];

fn top_level_keys() -> impl Iterator<Item = &'static str> {
    BUS_KEYS.iter().chain(PIPELINE_KEYS).copied()
}

/// Whether `name` can be an environment variable a recipe or test is given: a shell can read
/// it (letters, digits, `_`, not starting with a digit).
pub fn is_env_name(name: &str) -> bool {
    name.bytes().next().is_some_and(|b| !b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `url` with its password replaced by `***`, for logs, errors and anything else a person or
/// a web server may see.
pub fn redact_url(url: &str) -> String {
    // Only the authority may hold a password; an `@` in the query is not a separator.
    let authority_end = url.find(['?', '#']).unwrap_or(url.len());
    match (url.find("://"), url[..authority_end].rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// What must be the same in every address of a cluster.
#[derive(Debug, PartialEq, Eq)]
struct UrlParts<'a> {
    scheme: &'a str,
    user: Option<&'a str>,
    /// Percent-decoded; `/` when the URL names none, as AMQP clients read it.
    vhost: String,
}

impl<'a> UrlParts<'a> {
    fn parse(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        if scheme != "amqp" && scheme != "amqps" {
            return None;
        }
        let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority
            .rsplit_once('@')
            .map(|(userinfo, _)| userinfo.split(':').next().unwrap_or_default());
        let vhost = match percent_decode(path).unwrap_or_else(|| path.to_owned()) {
            vhost if vhost.is_empty() => "/".to_owned(),
            vhost => vhost,
        };
        Some(Self {
            scheme,
            user,
            vhost,
        })
    }
}

/// The `FORTNIGHT_` variables among `vars` that override configuration keys. A variable whose
/// first segment is no key is another program's (a script's knob), unless it is one edit or
/// two away from a key, or a key with `_` where `__` belongs: that is a misspelt override,
/// and an error, because running on the file's value instead (another broker, another store)
/// does more harm than refusing to start.
fn env_overrides(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<config::Map<String, String>, SettingsError> {
    let mut overrides = config::Map::new();
    for (variable, value) in vars {
        let Some(rest) = variable.strip_prefix("FORTNIGHT_") else {
            continue;
        };
        if ENV_NOT_CONFIG.contains(&variable.as_str()) {
            continue;
        }
        let key = rest.to_lowercase();
        let first = key.split("__").next().unwrap_or_default();
        if top_level_keys().any(|key| key == first) {
            overrides.insert(variable, value);
        } else if let Some(meant) = meant_key(first) {
            return Err(SettingsError::UnknownOverride {
                variable,
                meant: format!("FORTNIGHT_{}", meant.to_uppercase()),
            });
        }
    }
    Ok(overrides)
}

/// The override a misspelt first segment most likely meant (`amqp_ur` -> `amqp_url`,
/// `store_root` -> `store__root`).
fn meant_key(first: &str) -> Option<String> {
    if let Some(key) = top_level_keys().find(|key| {
        first
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('_') && !rest.starts_with("__"))
    }) {
        return Some(format!("{key}_{}", &first[key.len()..]));
    }
    // Short keys (`tls`, `qos`) are two edits from many unrelated words.
    top_level_keys()
        .find(|key| edit_distance(first, key) <= if key.len() < 6 { 1 } else { 2 })
        .map(str::to_owned)
}

/// Levenshtein distance, on bytes (variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

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
    #[error(
        "environment variable {variable} overrides no configuration key; did you mean {meant}? (nested keys are separated by `__`; unset {variable} if it is not meant for Fortnight)"
    )]
    UnknownOverride { variable: String, meant: String },
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

/// What talking to the broker needs: all that the bus commands (`publish`, `record`,
/// `replay`, `dead-letters`, `topology export`) read, with defaults for every key, like
/// fedora-messaging's own configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSettings {
    /// The broker; use [`BusSettings::broker_urls`], which also knows `amqp_urls`.
    #[serde(default = "default_amqp_url")]
    pub amqp_url: String,
    /// The nodes of a cluster, tried in turn; replaces `amqp_url` when not empty.
    #[serde(default)]
    pub amqp_urls: Vec<String>,
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
    /// Per-consumer runtime settings, keyed by consumer name (`image-builder`, ...).
    #[serde(default)]
    pub consumers: BTreeMap<String, ConsumerSettings>,
    /// Accounts allowed to publish overrides, fire the timer by hand and replay a step.
    #[serde(default)]
    pub operators: Vec<UserName>,
    /// Which broker accounts may send each topic a consumer reads.
    #[serde(default)]
    pub trust: TrustSettings,
    /// The topics signing requests and replies travel on.
    #[serde(default)]
    pub signing_topics: SigningTopics,
}

/// The topics (without `topic_prefix`) of the signing protocol. A deployment where Fedora's
/// robosignatory answers names the topics robosignatory reads and writes; the releaser, the
/// signer, their subscriptions and the trust defaults follow.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningTopics {
    #[serde(default = "default_sign_requested")]
    pub requested: String,
    #[serde(default = "default_sign_finished")]
    pub finished: String,
}
fn default_sign_requested() -> String {
    messages::SignRequested::TOPIC.to_owned()
}
fn default_sign_finished() -> String {
    SignFinished::TOPIC.to_owned()
}
impl Default for SigningTopics {
    fn default() -> Self {
        Self {
            requested: default_sign_requested(),
            finished: default_sign_finished(),
        }
    }
}

impl SigningTopics {
    fn validate(&self) -> Result<(), SettingsError> {
        for (key, topic) in [
            ("signing_topics.requested", &self.requested),
            ("signing_topics.finished", &self.finished),
        ] {
            let routable = !topic.is_empty()
                && topic
                    .split('.')
                    .all(|word| !word.is_empty() && word != "*" && word != "#");
            if !routable {
                return Err(invalid(
                    key,
                    topic.as_str(),
                    "a topic without topic_prefix, dot-separated words without wildcards (coreos.build.request.artifacts-sign)",
                ));
            }
        }
        if self.requested == self.finished {
            return Err(invalid(
                "signing_topics.finished",
                self.finished.as_str(),
                "a topic other than signing_topics.requested",
            ));
        }
        Ok(())
    }
}

/// The pipeline's own sections, which only its consumers need.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineSettings {
    store: StoreSettings,
    #[serde(default)]
    image_builder: BuilderSettings,
    #[serde(default)]
    image_tester: TesterSettings,
    #[serde(default)]
    site: SiteSettings,
    streams: BTreeMap<Stream, StreamSettings>,
}

/// The whole configuration. Its bus keys are reached through `Deref`
/// (`settings.amqp_url`), so everything that takes a [`BusSettings`] takes a `&Settings` too.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bus: BusSettings,
    pub store: StoreSettings,
    pub image_builder: BuilderSettings,
    pub image_tester: TesterSettings,
    pub site: SiteSettings,
    pub streams: BTreeMap<Stream, StreamSettings>,
}

impl std::ops::Deref for Settings {
    type Target = BusSettings;
    fn deref(&self) -> &BusSettings {
        &self.bus
    }
}

impl std::ops::DerefMut for Settings {
    fn deref_mut(&mut self) -> &mut BusSettings {
        &mut self.bus
    }
}

/// Who may send the topics the consumers read. The sender is the broker-checked AMQP `user_id`,
/// so only an account's own connection can claim it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSettings {
    /// The accounts Fortnight's consumers and timer publish as; when absent, the broker user of
    /// this configuration (`tls.user`, or the user `amqp_url` names). List them all when the
    /// consumers connect with different accounts.
    #[serde(default)]
    pub own_accounts: Option<Vec<UserName>>,
    /// Topic (without `topic_prefix`) -> its senders, replacing the default.
    #[serde(default)]
    pub topics: BTreeMap<String, Senders>,
}

/// Who may send a topic: `"any"` or a list of broker accounts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SendersText")]
pub enum Senders {
    /// Any account, or none: for inputs that are checked against the store anyway.
    Any,
    Accounts(Vec<UserName>),
}

/// [`Senders`] as written in the file, before the word is checked.
#[derive(Deserialize)]
#[serde(untagged)]
enum SendersText {
    Word(String),
    Accounts(Vec<UserName>),
}

impl TryFrom<SendersText> for Senders {
    type Error = String;
    fn try_from(text: SendersText) -> Result<Self, String> {
        match text {
            SendersText::Word(word) if word == "any" => Ok(Self::Any),
            SendersText::Word(word) => Err(format!(
                "{word:?} is not a list of senders: write \"any\" or a list of broker accounts"
            )),
            SendersText::Accounts(accounts) => Ok(Self::Accounts(accounts)),
        }
    }
}

impl Senders {
    /// Whether `user_id` may send; a message without one is trusted only by [`Senders::Any`].
    pub fn allows(&self, user_id: Option<&str>) -> bool {
        match self {
            Self::Any => true,
            Self::Accounts(accounts) => {
                user_id.is_some_and(|user| accounts.iter().any(|a| a.as_str() == user))
            }
        }
    }
}

impl std::fmt::Display for Senders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any sender"),
            Self::Accounts(accounts) if accounts.is_empty() => f.write_str("nobody"),
            Self::Accounts(accounts) => {
                let names: Vec<&str> = accounts.iter().map(UserName::as_str).collect();
                f.write_str(&names.join(", "))
            }
        }
    }
}

/// Topics anyone may send: Fedora's inputs only name trees and composes the configured
/// repository and compose location already hold, and votes carry their own rule (the
/// karma-tracker checks `karma.voters` and the candidate).
const OPEN_TOPICS: [&str; 3] = [
    PungiComposeOstree::TOPIC,
    PungiComposeStatusChange::TOPIC,
    messages::KarmaSubmitted::TOPIC,
];
/// Topics only operators may send: an override is an operator's act, never a step's.
const OVERRIDE_PREFIX: &str = "fortnight.override.";

/// Whether `topic` is one Fortnight reads or writes, so a typo in `trust.topics` is caught.
fn known_topic(topic: &str) -> bool {
    OPEN_TOPICS.contains(&topic) || messages::schema::for_topic(topic).is_some()
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
    /// Environment variables for the stream's recipes, besides the `FORTNIGHT_*` inputs
    /// Fortnight sets and the few it passes on (`runner::INHERITED`): the consumer's own
    /// environment, with the broker's password, does not reach a recipe.
    #[serde(default)]
    pub recipe_env: BTreeMap<String, String>,
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
    /// Signed releases; absent for a stream whose releases are not signed.
    #[serde(default)]
    pub signing: Option<SigningSettings>,
    /// Fedora CI messages for every test run; absent for a stream that sends none.
    #[serde(default)]
    pub fedora_ci: Option<FedoraCiSettings>,
    /// Tests other CI systems run (`openqa.install_default`) whose `test.complete` result must
    /// have passed on every arch before a candidate is released.
    #[serde(default)]
    pub external_gating: Vec<TestName>,
    /// How long the stream may go without a newly passed candidate before the release timer
    /// calls it stale (`fortnight.stream.stale`, the page, `fortnight status`).
    #[serde(default = "default_stale_after")]
    pub stale_after: Deadline,
    /// Marks a stream for a coming release (`beta`): its releases carry the label until it
    /// becomes the current two-week stream.
    #[serde(default)]
    pub prerelease: Option<Prerelease>,
    /// The stream whose two-week releases this one takes over at the switch (`f43` for `f44`).
    #[serde(default)]
    pub succeeds: Option<Stream>,
    /// When the switch happens by itself (the Fedora release date); without it, an operator
    /// switches (`fortnight switch`).
    #[serde(default)]
    pub switch_at: Option<DateTime<Utc>>,
    /// When the stream's release refs get their end-of-life commit, which rebases clients to
    /// the stream that succeeds it; without it, an operator ends it (`fortnight end-of-life`).
    #[serde(default)]
    pub end_of_life: Option<DateTime<Utc>>,
}

/// Nightlies come daily: three days without one passing is a broken stream, not bad luck.
fn default_stale_after() -> Deadline {
    Deadline(Duration::from_secs(3 * 86_400))
}

/// How the image-tester describes a stream's test runs in Fedora CI messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FedoraCiSettings {
    /// The Fedora CI artifact type, which names the topics (`ci.<type>.test.*`).
    #[serde(default)]
    pub artifact_type: CiArtifactType,
    /// Who runs the tests: `name`, `team`, `email`, `docs`, optionally `url` and `irc`.
    pub contact: CiContact,
}

/// How the signer signs a stream's releases.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSettings {
    /// The GnuPG home holding the secret keys; gpg and `ostree gpg-sign` use it.
    pub gnupg_home: PathBuf,
    /// The key (fingerprint) per major version (`"43"`), as robosignatory picks the key of
    /// Fedora 43 for everything of Fedora 43.
    pub keys: BTreeMap<String, String>,
    /// How long the releaser waits for a reply before it re-sends the request once, and then
    /// again before it gives the release up (`"90s"`, `"30m"`, `"2h"`, `"1d"`).
    #[serde(default = "default_signing_deadline")]
    pub deadline: Deadline,
}

fn default_signing_deadline() -> Deadline {
    Deadline(Duration::from_secs(2 * 3600))
}

/// A duration written as a whole number and a unit: `s`, `m`, `h` or `d` (a signing deadline,
/// a stream's `stale_after`, an override's `--expires`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Deadline(pub Duration);

impl TryFrom<String> for Deadline {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let refused = || {
            format!("{text:?} is not a duration: write a whole number and s, m, h or d (\"2h\")")
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(refused)?;
        let (number, unit) = text.split_at(split);
        let seconds_per_unit = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(refused()),
        };
        match number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(seconds_per_unit))
        {
            Some(seconds) if seconds > 0 => Ok(Self(Duration::from_secs(seconds))),
            _ => Err(refused()),
        }
    }
}

impl std::fmt::Display for Deadline {
    /// In the largest unit that divides it, as it is written in the configuration.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.0.as_secs();
        let (amount, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
            .into_iter()
            .find(|(size, _)| seconds.is_multiple_of(*size))
            .map_or((seconds, "s"), |(size, unit)| (seconds / size, unit));
        write!(f, "{amount}{unit}")
    }
}

impl SigningSettings {
    /// The major version of a tree version: what comes before its first `.`.
    pub fn major(version: &Version) -> &str {
        version.as_str().split('.').next().unwrap_or_default()
    }

    /// The key that signs `version`, if one is configured for its major version.
    pub fn key_for(&self, version: &Version) -> Option<&str> {
        self.keys.get(Self::major(version)).map(String::as_str)
    }
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
    /// How long a tick may go without the releaser's release or skip before the release is
    /// overdue.
    #[serde(default = "default_overdue_after")]
    pub overdue_after: Deadline,
}
/// The releaser decides within seconds of a tick; an hour leaves room for a restart.
fn default_overdue_after() -> Deadline {
    Deadline(Duration::from_secs(3600))
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

/// The configuration sources: `path` (when given), then the `FORTNIGHT_` overrides in `vars`.
fn sources(
    path: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<config::ConfigBuilder<config::builder::DefaultState>, SettingsError> {
    let env = env_overrides(vars)?;
    let mut builder = config::Config::builder();
    if let Some(path) = path {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    Ok(builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("amqp_urls")
            .source(Some(env)),
    ))
}

/// What `builder` reads, split into the bus keys and the pipeline's sections; an unknown key
/// stays with the bus keys, whose type refuses it by name.
fn split_tables(
    builder: config::ConfigBuilder<config::builder::DefaultState>,
    path: &Path,
) -> Result<(config::Value, config::Value), SettingsError> {
    let load_error = |source| SettingsError::Load {
        path: path.to_owned(),
        source,
    };
    let built = builder.build().map_err(load_error)?;
    // Checked before defaults fill `amqp_url` in, so that an `amqp_url` from anywhere (the
    // file, or FORTNIGHT_AMQP_URL from a secret) is never silently ignored.
    if built.get_string("amqp_url").is_ok()
        && built
            .get_array("amqp_urls")
            .is_ok_and(|urls| !urls.is_empty())
    {
        return Err(invalid(
            "amqp_urls",
            "set together with amqp_url",
            "either amqp_url (one broker) or amqp_urls (the nodes of a cluster), not both; \
             remove one (FORTNIGHT_AMQP_URL in the environment sets amqp_url)",
        ));
    }
    let table = built
        .try_deserialize::<config::Map<String, config::Value>>()
        .map_err(load_error)?;
    let (pipeline, bus): (config::Map<_, _>, config::Map<_, _>) = table
        .into_iter()
        .partition(|(key, _)| PIPELINE_KEYS.contains(&key.as_str()));
    let value = |table| config::Value::new(None, config::ValueKind::Table(table));
    Ok((value(bus), value(pipeline)))
}

fn deserialize<T: serde::de::DeserializeOwned>(
    table: config::Value,
    path: &Path,
) -> Result<T, SettingsError> {
    table
        .try_deserialize()
        .map_err(|source| SettingsError::Load {
            path: path.to_owned(),
            source,
        })
}

/// Names a configuration that is only environment overrides in errors.
const NO_FILE: &str = "<no configuration file>";

impl BusSettings {
    /// Loads `path`, or nothing but defaults when `None`, and applies `FORTNIGHT_`
    /// environment overrides, then validates. Pipeline sections in the file are ignored, so
    /// a bus command reads the consumers' file as well as one of its own or none.
    pub fn load(path: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_with(path, std::env::vars())
    }

    fn load_with(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let shown = path.unwrap_or(Path::new(NO_FILE));
        let (bus, _) = split_tables(sources(path, vars)?, shown)?;
        let settings: Self = deserialize(bus, shown)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The broker addresses to connect to, in the configured order: `amqp_urls`, or the one
    /// `amqp_url`. Never empty.
    pub fn broker_urls(&self) -> &[String] {
        if self.amqp_urls.is_empty() {
            std::slice::from_ref(&self.amqp_url)
        } else {
            &self.amqp_urls
        }
    }

    /// Every broker address is an AMQP URL, and the nodes of a cluster are reached the same
    /// way: the runtime signs copies as the user it logs in as and declares in one virtual
    /// host, and a fallback from `amqps://` to `amqp://` would send the password in clear.
    fn validate_broker_urls(&self) -> Result<(), SettingsError> {
        let key = if self.amqp_urls.is_empty() {
            "amqp_url"
        } else {
            "amqp_urls"
        };
        let mut first: Option<UrlParts> = None;
        for url in self.broker_urls() {
            let parts = UrlParts::parse(url)
                .ok_or_else(|| invalid(key, redact_url(url), "an amqp:// or amqps:// URL"))?;
            match &first {
                None => first = Some(parts),
                Some(first) if *first != parts => {
                    return Err(invalid(
                        key,
                        redact_url(url),
                        format!(
                            "the same scheme, user and virtual host as the first address \
                             (scheme {}, user {}, virtual host {}): every node of a cluster \
                             is reached the same way",
                            first.scheme,
                            first.user.unwrap_or("none"),
                            first.vhost
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Cross-field rules of the bus keys that types alone cannot carry.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.validate_broker_urls()?;
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
        self.signing_topics.validate()?;
        let signing_topic =
            |t: &str| t == self.signing_topics.requested || t == self.signing_topics.finished;
        if let Some(topic) = self
            .trust
            .topics
            .keys()
            .find(|t| !known_topic(t) && !signing_topic(t))
        {
            return Err(invalid(
                format!("trust.topics.\"{topic}\""),
                topic,
                "a topic Fortnight reads, without topic_prefix (fortnight.tree.composed, pungi.compose.ostree, ...)",
            ));
        }
        Ok(())
    }

    /// The broker user this configuration connects as: `tls.user` with client certificates
    /// (the broker takes the user from the certificate, which only `tls.user` names here),
    /// else the user the broker addresses name (`amqp_url`, or `amqp_urls`, which share one user).
    pub fn broker_user(&self) -> Option<String> {
        if let Some(tls) = &self.tls {
            return tls.user.as_ref().map(ToString::to_string);
        }
        let user = UrlParts::parse(&self.broker_urls()[0])?.user?;
        percent_decode(user).filter(|user| !user.is_empty())
    }

    /// The accounts Fortnight's own consumers publish as (`trust.own_accounts`, else
    /// [`BusSettings::broker_user`]); empty when neither says.
    pub fn own_accounts(&self) -> Vec<UserName> {
        match &self.trust.own_accounts {
            Some(accounts) => accounts.clone(),
            None => self
                .broker_user()
                .and_then(|user| user.parse().ok())
                .into_iter()
                .collect(),
        }
    }

    /// Who may send `topic` (without `topic_prefix`): `trust.topics` when it names the topic,
    /// else the default: anyone for Fedora's inputs and votes, `operators` for overrides, and
    /// for every other topic Fortnight's own accounts plus `operators` (who replay a message to
    /// retry a step, force a rebuild or fire the timer by hand).
    pub fn senders(&self, topic: &str) -> Senders {
        if let Some(senders) = self.trust.topics.get(topic) {
            return senders.clone();
        }
        if OPEN_TOPICS.contains(&topic) {
            return Senders::Any;
        }
        // A signing reply releases what it names: nobody but Fortnight's own signer (or the
        // robosignatory account configured in [trust.topics]) may send one, not even operators.
        if topic == self.signing_topics.finished {
            return Senders::Accounts(self.own_accounts());
        }
        let mut accounts = match topic.starts_with(OVERRIDE_PREFIX) {
            true => Vec::new(),
            false => self.own_accounts(),
        };
        accounts.extend(self.operators.iter().cloned());
        Senders::Accounts(accounts)
    }

    /// The topic this deployment uses for one of Fortnight's own topics: the signing
    /// protocol's may be renamed (`signing_topics`), every other topic is its own name.
    pub fn configured_topic<'a>(&'a self, topic: &'a str) -> &'a str {
        if topic == messages::SignRequested::TOPIC {
            &self.signing_topics.requested
        } else if topic == SignFinished::TOPIC {
            &self.signing_topics.finished
        } else {
            topic
        }
    }

    /// Fortnight's own name for a topic this deployment uses: the inverse of
    /// [`BusSettings::configured_topic`].
    pub fn logical_topic<'a>(&'a self, topic: &'a str) -> &'a str {
        if topic == self.signing_topics.requested {
            messages::SignRequested::TOPIC
        } else if topic == self.signing_topics.finished {
            SignFinished::TOPIC
        } else {
            topic
        }
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
}

impl Settings {
    /// Loads `path` and applies `FORTNIGHT_` environment overrides, then validates.
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        Self::load_with(path, std::env::vars())
    }

    /// [`Settings::load`] with `vars` as the environment.
    fn load_with(
        path: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        Self::build(sources(Some(path), vars)?, path)
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
        let (bus, pipeline) = split_tables(builder, path)?;
        let bus: BusSettings = deserialize(bus, path)?;
        let pipeline: PipelineSettings = deserialize(pipeline, path)?;
        let loaded = Self {
            bus,
            store: pipeline.store,
            image_builder: pipeline.image_builder,
            image_tester: pipeline.image_tester,
            site: pipeline.site,
            streams: pipeline.streams,
        };
        loaded.validate()?;
        Ok(loaded)
    }

    /// Cross-field rules that types alone cannot carry.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.bus.validate()?;
        for (stream, s) in &self.streams {
            if let Some(name) = s.recipe_env.keys().find(|name| !is_env_name(name)) {
                return Err(invalid(
                    format!("streams.{stream}.recipe_env"),
                    name,
                    "variable names of letters, digits and `_`, not starting with a digit",
                ));
            }
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
            if let Some(signing) = &s.signing
                && signing.keys.is_empty()
            {
                return Err(invalid(
                    format!("streams.{stream}.signing.keys"),
                    "{}",
                    "a key per major version, e.g. { \"43\" = \"<fingerprint>\" }",
                ));
            }
            if let Some((major, key)) = s
                .signing
                .iter()
                .flat_map(|g| &g.keys)
                .find(|(_, key)| key.len() < 16 || !key.chars().all(|c| c.is_ascii_hexdigit()))
            {
                return Err(invalid(
                    format!("streams.{stream}.signing.keys.\"{major}\""),
                    key,
                    "a key's fingerprint (hex digits, `gpg --list-keys --with-colons` shows it)",
                ));
            }
            self.validate_succession(stream, s)?;
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

    /// A successor names another configured two-week stream, and no stream has two successors:
    /// at the switch there must be exactly one place for the two-week selection (and, at the
    /// end of life, for the clients) to go.
    fn validate_succession(
        &self,
        stream: &Stream,
        s: &StreamSettings,
    ) -> Result<(), SettingsError> {
        let Some(old) = &s.succeeds else {
            if s.switch_at.is_some() {
                return Err(invalid(
                    format!("streams.{stream}.switch_at"),
                    "set without `succeeds`",
                    "`succeeds = \"<stream>\"`: the stream whose two-week releases this one takes over",
                ));
            }
            return Ok(());
        };
        let key = format!("streams.{stream}.succeeds");
        if old == stream {
            return Err(invalid(key, old.as_str(), "another stream than this one"));
        }
        let Some(old_settings) = self.streams.get(old) else {
            return Err(invalid(key, old.as_str(), "a configured stream"));
        };
        if s.twoweek.is_none() || old_settings.twoweek.is_none() {
            return Err(invalid(
                key,
                old.as_str(),
                "two streams that both have a `[twoweek]` table: the switch moves two-week releases",
            ));
        }
        if let Some((other, _)) = self
            .streams
            .iter()
            .find(|(other, o)| *other != stream && o.succeeds.as_ref() == Some(old))
        {
            return Err(invalid(
                key,
                old.as_str(),
                format!("one successor per stream; {other} succeeds {old} too"),
            ));
        }
        let mut seen = vec![stream];
        let mut next = Some(old);
        while let Some(current) = next {
            if seen.contains(&current) {
                return Err(invalid(key, old.as_str(), "no cycle of successors"));
            }
            seen.push(current);
            next = self.streams.get(current).and_then(|c| c.succeeds.as_ref());
        }
        Ok(())
    }

    /// The stream that succeeds `stream` (whose `succeeds` names it), if any.
    pub fn successor(&self, stream: &Stream) -> Option<(&Stream, &StreamSettings)> {
        self.streams
            .iter()
            .find(|(_, s)| s.succeeds.as_ref() == Some(stream))
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

/// `%XX` escapes decoded, as in a URL's user name; `None` when they do not make UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        let escaped = (first == b'%')
            .then(|| tail.get(..2))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                bytes.push(byte);
                rest = &tail[2..];
            }
            None => {
                bytes.push(first);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
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

    /// `f43` current, `f44` its beta successor; `extra` is appended to `f44`'s table.
    fn succession(f44_extra: &str) -> Result<Settings, SettingsError> {
        let stream = |n: u32, extra: &str| {
            format!(
                r#"
                [streams.f{n}]
                arches = ["x86_64"]
                input_refs = {{ x86_64 = "fedora/{n}/x86_64/updates/atomic-host" }}
                ostree_repo = "/srv/repo"
                formats = ["qcow2"]
                {extra}
                [streams.f{n}.twoweek]
                release_refs = {{ x86_64 = "fedora/{n}/x86_64/atomic-host" }}
                anchor = "2026-01-06T00:00:00Z"
                "#
            )
        };
        Settings::from_toml(&format!(
            "[store]\nroot = \"/srv/fortnight\"\n{}{}",
            stream(43, "end_of_life = \"2027-05-18T00:00:00Z\""),
            stream(44, f44_extra)
        ))
    }

    #[test]
    fn a_successor_names_one_other_two_week_stream() {
        let s = succession(
            "prerelease = \"beta\"\nsucceeds = \"f43\"\nswitch_at = \"2027-04-20T14:00:00Z\"",
        )
        .unwrap();
        let f43: Stream = "f43".parse().unwrap();
        let (next, settings) = s.successor(&f43).unwrap();
        assert_eq!(next.as_str(), "f44");
        assert_eq!(settings.prerelease.as_ref().unwrap().as_str(), "beta");
        assert_eq!(
            s.streams[&f43].end_of_life.unwrap().to_rfc3339(),
            "2027-05-18T00:00:00+00:00"
        );
        assert!(s.successor(next).is_none());
        for (extra, expected) in [
            ("succeeds = \"f44\"", "another stream than this one"),
            ("succeeds = \"f42\"", "a configured stream"),
            (
                "switch_at = \"2027-04-20T14:00:00Z\"",
                "set without `succeeds`",
            ),
            ("prerelease = \"Beta 1\"", "pre-release label"),
        ] {
            let err = succession(extra).unwrap_err().to_string();
            assert!(err.contains(expected), "{extra}: {err}");
        }
    }

    #[test]
    fn signing_deadlines_read_as_a_number_and_a_unit() {
        let signing = |deadline: &str| {
            Settings::from_toml(&format!(
                "{MINIMAL}\n[streams.f43.signing]\ngnupg_home = \"/g\"\nkeys = {{ \"43\" = \"0123456789ABCDEF\" }}\n{deadline}"
            ))
            .map(|s| s.streams.values().next().unwrap().signing.clone().unwrap().deadline)
        };
        assert_eq!(signing("").unwrap().to_string(), "2h");
        assert_eq!(
            signing("deadline = \"90s\"").unwrap().0,
            Duration::from_secs(90)
        );
        assert_eq!(signing("deadline = \"30m\"").unwrap().to_string(), "30m");
        assert_eq!(signing("deadline = \"1d\"").unwrap().0.as_secs(), 86_400);
        for bad in ["2", "h", "2 h", "0s", "-1h", "2w"] {
            let err = signing(&format!("deadline = \"{bad}\""))
                .unwrap_err()
                .to_string();
            assert!(err.contains("not a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn signing_topics_are_configurable_and_their_replies_trust_only_own_accounts() {
        let s = Settings::from_toml(MINIMAL).unwrap();
        assert_eq!(s.signing_topics.requested, "fortnight.sign.requested");
        assert_eq!(s.signing_topics.finished, "fortnight.sign.finished");
        let robosignatory = "coreos.build.request.artifacts-sign";
        let s = Settings::from_toml(&format!(
            "amqp_url = \"amqp://fortnight:p@h/%2f\"\noperators = [\"alice\"]\n\
             [signing_topics]\nrequested = \"{robosignatory}\"\nfinished = \"{robosignatory}.finished\"\n\
             [trust.topics]\n\"{robosignatory}.finished\" = [\"robosignatory\"]\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(
            s.senders(&format!("{robosignatory}.finished")),
            Senders::Accounts(vec!["robosignatory".parse().unwrap()])
        );
        let s = Settings::from_toml(&format!(
            "amqp_url = \"amqp://fortnight:p@h/%2f\"\noperators = [\"alice\"]\n\
             [signing_topics]\nfinished = \"{robosignatory}.finished\"\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(
            s.senders(&format!("{robosignatory}.finished")),
            Senders::Accounts(vec!["fortnight".parse().unwrap()]),
            "a reply vouches for signatures: not even operators may send one"
        );
        for bad in ["", "a.*.b", "a..b", "fortnight.sign.requested"] {
            let err = Settings::from_toml(&format!(
                "[signing_topics]\nfinished = \"{bad}\"\n{MINIMAL}"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains("signing_topics.finished"), "{bad:?}: {err}");
        }
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

    /// Writes MINIMAL to a file and loads it with `vars` as the environment.
    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn bus_settings_need_no_file_and_no_pipeline() {
        let bus = BusSettings::load_with(None, vars(&[])).unwrap();
        assert_eq!(bus.amqp_url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(bus.publish_exchange, "amq.topic");
        assert_eq!(bus.topic_prefix, "");
        let bus =
            BusSettings::load_with(None, vars(&[("FORTNIGHT_TOPIC_PREFIX", "org.x")])).unwrap();
        assert_eq!(bus.topic_prefix, "org.x");

        let dir = tempfile::tempdir().unwrap();
        let bus_only = dir.path().join("bus.toml");
        std::fs::write(&bus_only, "topic_prefix = \"org.y\"\n").unwrap();
        let bus = BusSettings::load_with(Some(&bus_only), vars(&[])).unwrap();
        assert_eq!(bus.topic_prefix, "org.y");
        // The consumers still need their store and streams from the same file.
        let err = Settings::load_with(&bus_only, vars(&[])).unwrap_err();
        assert!(err.to_string().contains("store"), "{err}");

        // The consumers' own file serves the bus commands too.
        let full = dir.path().join("full.toml");
        std::fs::write(&full, format!("topic_prefix = \"org.z\"\n{MINIMAL}")).unwrap();
        let bus = BusSettings::load_with(Some(&full), vars(&[])).unwrap();
        assert_eq!(bus.topic_prefix, "org.z");
    }

    #[test]
    fn bus_settings_still_refuse_unknown_keys_and_invalid_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.toml");
        std::fs::write(&path, "topic_prefx = \"org.y\"\n").unwrap();
        let err = BusSettings::load_with(Some(&path), vars(&[])).unwrap_err();
        assert!(err.to_string().contains("topic_prefx"), "{err}");
        let err =
            BusSettings::load_with(None, vars(&[("FORTNIGHT_AMQP_URL", "http://x/")])).unwrap_err();
        assert!(err.to_string().contains("amqp_url"), "{err}");
    }

    fn load_minimal(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        Settings::load_with(
            &path,
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn fortnight_variables_of_recipes_tests_and_scripts_are_not_configuration() {
        let settings = load_minimal(&[
            ("FORTNIGHT_MIN_DISK_BYTES", "67108864"),
            ("FORTNIGHT_OSNAME", "fedora-atomic"),
            ("FORTNIGHT_BOOT_SECONDS", "600"),
            ("FORTNIGHT_STREAM", "f43"),
            ("FORTNIGHT_OUTPUT_DIR", "/tmp/out"),
            ("FORTNIGHT_IMAGE", "/srv/image.qcow2"),
            // Another program's knob, far from every key.
            ("FORTNIGHT_CI_VENV", "/opt/venv"),
            ("FORTNIGHT_STORE__ROOT", "/srv/other"),
        ])
        .unwrap();
        assert_eq!(settings.store.root, Path::new("/srv/other"));
    }

    #[test]
    fn every_variable_the_shipped_scripts_read_is_left_to_them() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let mut names = Vec::new();
        for dir in ["recipes", "tests/bin"] {
            for entry in std::fs::read_dir(deploy.join(dir)).unwrap() {
                let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
                for (start, _) in text.match_indices("FORTNIGHT_") {
                    let name: String = text[start..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    names.push((name, "1".to_owned()));
                }
            }
        }
        assert!(
            names.iter().any(|(n, _)| n == "FORTNIGHT_OSNAME"),
            "{names:?}"
        );
        let overrides = env_overrides(names).unwrap();
        assert!(overrides.is_empty(), "{overrides:?}");
    }

    #[test]
    fn a_misspelt_override_is_an_error_naming_the_variable_and_the_key_it_meant() {
        for (variable, meant) in [
            ("FORTNIGHT_AMQP_UR", "FORTNIGHT_AMQP_URL"),
            ("FORTNIGHT_STORE_ROOT", "FORTNIGHT_STORE__ROOT"),
            (
                "FORTNIGHT_QOS_PREFETCH_COUNT",
                "FORTNIGHT_QOS__PREFETCH_COUNT",
            ),
            ("FORTNIGHT_STREEMS__F43__FORMATS", "FORTNIGHT_STREAMS"),
        ] {
            let err = load_minimal(&[(variable, "x")]).unwrap_err().to_string();
            assert!(
                err.contains(variable) && err.contains(&format!("did you mean {meant}")),
                "{variable}: {err}"
            );
        }
        // Below a real key, serde names the unknown field and the one expected.
        let err = load_minimal(&[("FORTNIGHT_STORE__ROT", "/srv/other")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rot") && err.contains("root"), "{err}");
    }

    #[test]
    fn top_level_keys_are_the_settings_fields() {
        // serde lists the fields it expected when it meets an unknown one.
        let err = Settings::from_toml(&format!("not_a_key = 1\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        let expected = err
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{err}"));
        let fields: Vec<&str> = expected
            .split(", ")
            .map(|f| f.trim_matches(|c: char| c == '`' || !c.is_ascii() || c.is_whitespace()))
            .map(|f| f.split('`').next().unwrap_or(f))
            .collect();
        assert_eq!(fields, BUS_KEYS, "{err}");
    }

    #[test]
    fn an_invalid_amqp_url_is_reported_without_its_password() {
        let err = Settings::from_toml(&format!(
            "amqp_url = \"http://fortnight:s3cret@host/\"\n{MINIMAL}"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("fortnight:***@host"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn amqp_urls_name_the_nodes_of_a_cluster_in_order() {
        let s = Settings::from_toml(&format!(
            "amqp_urls = [\"amqp://f:p@node1/%2f\", \"amqp://f:p@node2:5673/%2F\", \"amqp://f:q@node3\"]\n{MINIMAL}"
        ))
        .unwrap();
        assert_eq!(
            s.broker_urls(),
            [
                "amqp://f:p@node1/%2f",
                "amqp://f:p@node2:5673/%2F",
                "amqp://f:q@node3"
            ]
        );
        let single = Settings::from_toml(MINIMAL).unwrap();
        assert_eq!(
            single.broker_urls(),
            ["amqp://guest:guest@127.0.0.1:5672/%2f"]
        );
    }

    #[test]
    fn amqp_urls_from_the_environment_are_comma_separated() {
        let s = load_minimal(&[("FORTNIGHT_AMQP_URLS", "amqp://a/%2f,amqp://b/%2f")]).unwrap();
        assert_eq!(s.broker_urls(), ["amqp://a/%2f", "amqp://b/%2f"]);
    }

    #[test]
    fn amqp_url_and_amqp_urls_together_are_an_error() {
        let both =
            format!("amqp_url = \"amqp://a/%2f\"\namqp_urls = [\"amqp://b/%2f\"]\n{MINIMAL}");
        let err = Settings::from_toml(&both).unwrap_err().to_string();
        assert!(
            err.contains("amqp_urls") && err.contains("not both"),
            "{err}"
        );
        // An amqp_url from the environment is not silently dropped either.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, format!("amqp_urls = [\"amqp://b/%2f\"]\n{MINIMAL}")).unwrap();
        let err = Settings::load_with(
            &path,
            [("FORTNIGHT_AMQP_URL".to_owned(), "amqp://a/%2f".to_owned())],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("FORTNIGHT_AMQP_URL"), "{err}");
    }

    #[test]
    fn the_nodes_of_a_cluster_share_scheme_user_and_vhost() {
        let with = |urls: &str| Settings::from_toml(&format!("amqp_urls = [{urls}]\n{MINIMAL}"));
        with("\"amqps://f@a/%2f\", \"amqps://f:x@b:5671/%2F\", \"amqps://f@c/\"").unwrap();
        for (second, differs) in [
            ("amqp://f:s3cret@b/%2f", "scheme"),
            ("amqps://g:s3cret@b/%2f", "user"),
            ("amqps://f:s3cret@b/fedora", "virtual host"),
            ("http://f:s3cret@b/%2f", "amqp:// or amqps://"),
        ] {
            let err = with(&format!("\"amqps://f@a/%2f\", \"{second}\""))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("amqp_urls") && err.contains(differs) && err.contains("***@b"),
                "{second}: {err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn recipe_env_names_must_be_variable_names() {
        let ok = Settings::from_toml(&format!(
            "{MINIMAL}\nrecipe_env = {{ FORTNIGHT_OSNAME = \"fedora-atomic\", http_proxy = \"http://proxy:3128\" }}\n"
        ))
        .unwrap();
        assert_eq!(
            ok.streams.values().next().unwrap().recipe_env["FORTNIGHT_OSNAME"],
            "fedora-atomic"
        );
        let err = Settings::from_toml(&format!("{MINIMAL}\nrecipe_env = {{ \"A=B\" = \"x\" }}\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("streams.f43.recipe_env") && err.contains("A=B"),
            "{err}"
        );
    }

    #[test]
    fn redact_url_hides_only_the_password() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact_url("amqps://host/%2f"), "amqps://host/%2f");
        assert_eq!(
            redact_url("amqp://u:p@ss@host/%2f?x=a@b"),
            "amqp://u:***@host/%2f?x=a@b"
        );
    }

    fn senders_of(text: &str, topic: &str) -> String {
        Settings::from_toml(text)
            .unwrap()
            .senders(topic)
            .to_string()
    }

    #[test]
    fn by_default_fortnight_and_operators_move_candidates_and_only_operators_override() {
        let text = format!(
            "amqp_url = \"amqp://fortnight:pw@broker/%2f\"\noperators = [\"alice\"]\n{MINIMAL}"
        );
        for topic in [
            "fortnight.tree.composed",
            "fortnight.image.built",
            "fortnight.image.tests.passed",
            "fortnight.karma.threshold.reached",
            "fortnight.twoweek.timer.fired",
            "fortnight.release.published",
            // Another CI system's results gate releases: none is trusted until named.
            "ci.productmd-compose.test.complete",
        ] {
            assert_eq!(senders_of(&text, topic), "fortnight, alice", "{topic}");
        }
        assert_eq!(senders_of(&text, "fortnight.override.release"), "alice");
        assert_eq!(senders_of(&text, "pungi.compose.ostree"), "any sender");
        assert_eq!(senders_of(&text, "fortnight.karma.submitted"), "any sender");
        let s = Settings::from_toml(&text).unwrap();
        let tick = s.senders("fortnight.twoweek.timer.fired");
        assert!(tick.allows(Some("fortnight")) && tick.allows(Some("alice")));
        assert!(
            !tick.allows(Some("mallory")) && !tick.allows(None),
            "no user_id, no trust"
        );
        assert!(s.senders("pungi.compose.ostree").allows(None));
    }

    #[test]
    fn trust_tables_replace_the_defaults() {
        let text = format!(
            "operators = [\"alice\"]\n{MINIMAL}\n[trust]\nown_accounts = [\"fn-builder\", \"fn-releaser\"]\n\
             [trust.topics]\n\"pungi.compose.ostree\" = [\"pungi\"]\n\"fortnight.tree.composed\" = \"any\"\n"
        );
        assert_eq!(senders_of(&text, "pungi.compose.ostree"), "pungi");
        assert_eq!(senders_of(&text, "fortnight.tree.composed"), "any sender");
        let openqa = format!(
            "{MINIMAL}\n[trust.topics]\n\"ci.productmd-compose.test.complete\" = [\"openqa\"]\n"
        );
        assert_eq!(
            senders_of(&openqa, "ci.productmd-compose.test.complete"),
            "openqa"
        );
        assert_eq!(
            senders_of(&text, "fortnight.image.built"),
            "fn-builder, fn-releaser, alice"
        );
    }

    #[test]
    fn a_bad_trust_entry_is_named() {
        let err = Settings::from_toml(&format!(
            "{MINIMAL}\n[trust.topics]\n\"fortnight.tree.composd\" = \"any\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("fortnight.tree.composd"), "{err}");
        let err = Settings::from_toml(&format!(
            "{MINIMAL}\n[trust.topics]\n\"fortnight.tree.composed\" = \"anyone\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("\"anyone\""), "{err}");
        let err = Settings::from_toml(&format!("{MINIMAL}\n[trust]\nown_accounts = [\"../x\"]\n"))
            .unwrap_err();
        assert!(err.to_string().contains("../x"), "{err}");
    }

    #[test]
    fn the_broker_user_comes_from_the_url_or_from_tls_user() {
        let with = |url: &str, tls: &str| {
            Settings::from_toml(&format!("amqp_url = \"{url}\"\n{MINIMAL}\n{tls}"))
                .unwrap()
                .broker_user()
        };
        assert_eq!(
            with("amqp://fortnight:secret@broker/%2f", "").as_deref(),
            Some("fortnight")
        );
        assert_eq!(
            with("amqp://fn%2Dbot:p%40ss@broker:5672/%2f", "").as_deref(),
            Some("fn-bot")
        );
        assert_eq!(with("amqp://broker/%2f", ""), None);
        assert_eq!(
            with("amqp://broker/user@vhost", ""),
            None,
            "an @ in the path"
        );
        let tls = "[tls]\nca_cert = \"ca.pem\"\ncertfile = \"c.pem\"\nkeyfile = \"c.key\"\n";
        assert_eq!(
            with("amqps://broker/%2f", tls),
            None,
            "the certificate's user is unknown here"
        );
        assert_eq!(
            with(
                "amqps://broker/%2f",
                &format!("{tls}user = \"fortnight-releng\"\n")
            )
            .as_deref(),
            Some("fortnight-releng")
        );
        assert!(
            Settings::from_toml(MINIMAL).unwrap().own_accounts()
                == vec!["guest".parse::<UserName>().unwrap()],
            "the default amqp_url logs in as guest"
        );
    }
}
