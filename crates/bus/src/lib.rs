//! The message bus runtime. Steps (the consumers' libraries) never see AMQP: they implement
//! [`Step`], return an [`Outcome`], and this crate publishes with confirms and acks.
//!
//! API CONTRACT (other crates code against exactly these items):
//!
//! ```ignore
//! pub enum Outcome { Done(Vec<Outgoing>), Retry { reason: String, after: Option<Duration> }, Reject { reason: String } }
//! pub trait Step: Send + Sync + 'static {
//!     const NAME: &'static str;                   // consumer name, e.g. "image-builder"
//!     fn topics(&self) -> Vec<String>;            // logical topics to bind
//!     fn long_running(&self) -> bool { false }    // journal + ack before running (consumer_timeout)
//!     fn handle(&self, message: &Incoming) -> impl Future<Output = Outcome> + Send;
//! }
//! pub async fn run<S: Step>(settings: &Settings, step: Arc<S>, shutdown: impl Future<Output = ()> + Send) -> Result<(), BusError>;
//! pub struct Publisher;  // Publisher::connect(&Settings, connection_name).await?
//!                        // .publish(&Outgoing).await? (prefix added, confirm awaited)
//!                        // .publish_record(&RecordLine).await? (topic used as is)
//! pub mod dead_letters;  // list/show/replay/purge for a consumer's dead-letter queue
//! pub mod record;        // consume matching topics into RecordLines
//! pub fn init_tracing(); // one log style for every binary
//! pub async fn shutdown_signal(); // SIGTERM or SIGINT
//! pub fn consumer_main<S: Step>(make: impl FnOnce(Arc<Settings>) -> Result<S, E>) -> ExitCode;
//! ```
