//! Driving the broker itself, for the tests that restart or reconfigure it. Tests that do so
//! to the shared broker live in one test binary and hold [`serial`] so they never overlap; a
//! test that restarts a [`Node`] of its own runs beside the others.

use std::process::Command;
use std::time::Duration;

/// The broker's default `consumer_timeout` (30 minutes), restored after a test lowers it.
pub const DEFAULT_CONSUMER_TIMEOUT_MS: u64 = 1_800_000;

/// An async mutex: each test has its own runtime and holds the guard across awaits. A test
/// that panicked releases it like any other.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Holds every other disruptive test off.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// A broker account for one voter or operator, deleted when dropped.
#[derive(Debug)]
pub struct BrokerUser {
    pub name: messages::UserName,
    password: String,
    /// `-n <node>` for an account on a test's own [`Node`]; empty on the shared broker.
    node: Vec<String>,
    /// The broker's URL, whose credentials this account's replace.
    broker_url: String,
}

impl BrokerUser {
    /// An account on the shared broker.
    pub fn create(role: &str) -> Self {
        Self::create_with(role, Vec::new(), crate::amqp_url())
    }

    /// An account on a test's own node.
    pub fn create_on(node: &Node, role: &str) -> Self {
        Self::create_with(
            role,
            vec!["-n".to_owned(), node.node.name.clone()],
            node.amqp_url(),
        )
    }

    fn create_with(role: &str, node: Vec<String>, broker_url: String) -> Self {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("{role}-{id}");
        let password = uuid::Uuid::new_v4().simple().to_string();
        let user = Self {
            name: name.parse().unwrap(),
            password,
            node,
            broker_url,
        };
        user.ctl(&["add_user", &name, &user.password])
            .expect("rabbitmqctl add_user");
        user.ctl(&["set_permissions", "-p", "/", &name, ".*", ".*", ".*"])
            .expect("rabbitmqctl set_permissions");
        user
    }

    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut all: Vec<&str> = self.node.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        rabbitmqctl(&all)
    }

    /// The broker's URL with this user's credentials, for a client's configuration
    /// (`FORTNIGHT_AMQP_URL` for the CLI).
    pub fn amqp_url(&self) -> String {
        let url = &self.broker_url;
        let host = url.rsplit_once('@').map_or(url.as_str(), |(_, host)| host);
        let host = host.strip_prefix("amqp://").unwrap_or(host);
        format!("amqp://{}:{}@{host}", self.name, self.password)
    }

    /// A publisher connected as this user.
    pub async fn publisher(&self, settings: &settings::Settings) -> bus::Publisher {
        let mut settings = settings.clone();
        settings.amqp_url = self.amqp_url();
        bus::Publisher::connect(&settings, &format!("test-{}", self.name))
            .await
            .expect("the test user can connect")
    }
}

/// A publisher whose configuration names no broker user: it logs in as the broker's default
/// account (guest) and, not knowing its account, sends no `user_id`, as a client that does not
/// set one would.
pub async fn unsigned_publisher(settings: &settings::Settings) -> bus::Publisher {
    let mut settings = settings.clone();
    let (scheme, rest) = settings
        .amqp_url
        .split_once("://")
        .expect("the test broker's URL has a scheme");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    settings.amqp_url = format!("{scheme}://{host}");
    assert_eq!(settings.broker_user(), None, "{}", settings.amqp_url);
    bus::Publisher::connect(&settings, "test-unsigned")
        .await
        .expect("the broker's default account connects")
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = self.ctl(&["delete_user", self.name.as_str()]);
    }
}

/// Runs `rabbitmqctl` with `args`; `Err` has its output.
pub fn rabbitmqctl(args: &[&str]) -> Result<String, String> {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The value of `column` (a `rabbitmqctl list_queues` column: consumers, messages, type,
/// policy, ...) for `queue`; `None` when the queue is not listed or the column is empty.
pub fn queue_info(queue: &str, column: &str) -> Option<String> {
    column_of(rabbitmqctl(&list_queues(column)).ok()?, queue)
}

fn list_queues(column: &str) -> [&str; 5] {
    [
        "list_queues",
        "name",
        column,
        "--no-table-headers",
        "--quiet",
    ]
}

fn column_of(out: String, queue: &str) -> Option<String> {
    out.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [name, value] if name == queue => Some(value.to_owned()),
            _ => None,
        }
    })
}

pub fn stop_app() {
    rabbitmqctl(&["stop_app"]).expect("rabbitmqctl stop_app");
}

pub fn start_app() {
    rabbitmqctl(&["start_app"]).expect("rabbitmqctl start_app");
    rabbitmqctl(&["await_startup"]).expect("rabbitmqctl await_startup");
}

/// Starts the app again when dropped, so a failing test never leaves the broker down.
#[derive(Debug)]
pub struct Stopped(());

impl Stopped {
    pub fn stop() -> Self {
        stop_app();
        Self(())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        start_app();
    }
}

/// The broker's default `channel_tick_interval`: how often a channel checks the timeout.
pub const DEFAULT_CHANNEL_TICK_MS: u64 = 60_000;

/// Lowers the broker-wide `consumer_timeout` until dropped (restored even when the test
/// fails). Channels only check it every `channel_tick_interval`, so that is shortened too;
/// both are read when a channel opens.
#[derive(Debug)]
pub struct ConsumerTimeout(());

impl ConsumerTimeout {
    pub fn set(timeout: Duration) -> Self {
        set_env("channel_tick_interval", 1000);
        set_env("consumer_timeout", timeout.as_millis() as u64);
        Self(())
    }
}

impl Drop for ConsumerTimeout {
    fn drop(&mut self) {
        set_env("consumer_timeout", DEFAULT_CONSUMER_TIMEOUT_MS);
        set_env("channel_tick_interval", DEFAULT_CHANNEL_TICK_MS);
    }
}

fn set_env(key: &str, value: u64) {
    rabbitmqctl(&[
        "eval",
        &format!("application:set_env(rabbit, {key}, {value})."),
    ])
    .unwrap_or_else(|out| panic!("rabbitmqctl eval cannot set {key}: {out}"));
}

/// A RabbitMQ node of a test's own beside the shared broker, with its own node name, ports,
/// configuration and directories (under a temporary directory), as the Debian packaging runs
/// it: as the `rabbitmq` user, sharing that user's Erlang cookie, so `rabbitmqctl -n` reaches
/// it and nodes can cluster. Stopped when dropped.
#[derive(Debug)]
pub struct PrivateNode {
    /// The Erlang node name (`fortnight-<kind>-<port>@localhost`).
    pub name: String,
    /// Its plain AMQP port (`RABBITMQ_NODE_PORT`; unused when the configuration turns TCP
    /// listeners off).
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The environment `rabbitmq-server` starts with, kept to boot the same node again.
    env: Vec<(&'static str, std::ffi::OsString)>,
}

impl PrivateNode {
    /// Starts a node with AMQP on `port`, `config` as its `rabbitmq.conf` and `plugins`
    /// enabled, without waiting for it to boot ([`PrivateNode::wait_started`]), so
    /// that several nodes boot at once. Files the configuration names go into `dir` first.
    pub fn launch(
        kind: &str,
        dir: tempfile::TempDir,
        port: u16,
        config: &str,
        plugins: &[&str],
    ) -> Self {
        let d = dir.path();
        std::fs::write(d.join("rabbitmq.conf"), config).expect("node config");
        std::fs::write(
            d.join("enabled_plugins"),
            format!("[{}].\n", plugins.join(",")),
        )
        .expect("plugins file");
        // The node runs as the `rabbitmq` user, not as the test's user.
        for entry in std::fs::read_dir(d).expect("node directory") {
            set_mode(&entry.expect("directory entry").path(), 0o644);
        }
        set_mode(d, 0o777);
        let name = format!("fortnight-{kind}-{port}@localhost");
        let env = vec![
            ("RABBITMQ_NODENAME", name.clone().into()),
            ("RABBITMQ_NODE_PORT", port.to_string().into()),
            ("RABBITMQ_DIST_PORT", free_port().to_string().into()),
            ("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf").into()),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                d.join("enabled_plugins").into(),
            ),
            ("RABBITMQ_MNESIA_BASE", d.join("mnesia").into()),
            ("RABBITMQ_LOG_BASE", d.join("log").into()),
        ];
        let node = Self {
            name,
            port,
            dir,
            env,
        };
        node.boot();
        node
    }

    /// Starts the node's Erlang VM, without waiting for the broker to boot.
    fn boot(&self) {
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .status()
            .expect("rabbitmq-server runs");
        assert!(
            status.success(),
            "rabbitmq-server -detached failed for {}",
            self.name
        );
    }

    /// Stops the whole node (the Erlang VM, not only the broker application) and boots it
    /// again with the same name, ports and data: a host or pod restart. Durable queues,
    /// bindings and persistent messages survive; every connection is cut.
    pub fn reboot(&self) {
        self.ctl(&["stop"]).expect("the node stops");
        self.boot();
        self.wait_started();
    }

    /// The node's plain AMQP address, as the shared broker's guest account reaches it.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Waits until the node has booted.
    pub fn wait_started(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while self.ctl(&["status"]).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "node {} did not start; see {}",
                self.name,
                self.dir.path().join("log").display()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        self.ctl(&["await_startup"])
            .unwrap_or_else(|out| panic!("node {} does not finish booting: {out}", self.name));
    }

    /// `rabbitmqctl -n <node> args...`.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        rabbitmqctl(&all)
    }

    /// Kills the node's Erlang VM with SIGKILL, as a crashed host would lose it: no clean
    /// shutdown, no hand-over; returns once the node no longer answers.
    pub fn kill(&self) {
        let pid = self
            .ctl(&["eval", "os:getpid()."])
            .unwrap_or_else(|out| panic!("cannot ask {} for its pid: {out}", self.name));
        let pid: String = pid.chars().filter(char::is_ascii_digit).collect();
        crate::process::run_ok(
            Command::new("kill").args(["-KILL", &pid]),
            &format!("kill -KILL {pid} ({})", self.name),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while self.ctl(&["status"]).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} still answers after SIGKILL",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for PrivateNode {
    fn drop(&mut self) {
        // A killed node no longer answers; the error is expected then.
        let _ = self.ctl(&["stop"]);
    }
}

/// A RabbitMQ cluster of private nodes on this machine, each on its own AMQP port, joined
/// with `rabbitmqctl join_cluster`. Every node is stopped when dropped.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<PrivateNode>,
}

impl Cluster {
    pub fn start(size: usize) -> Self {
        let nodes: Vec<PrivateNode> = (0..size)
            .map(|_| {
                let port = free_port();
                PrivateNode::launch(
                    "cluster",
                    tempfile::tempdir().expect("a directory for a cluster node"),
                    port,
                    "",
                    &[],
                )
            })
            .collect();
        for node in &nodes {
            node.wait_started();
        }
        let first = &nodes[0].name;
        for node in &nodes[1..] {
            for args in [
                &["stop_app"][..],
                &["join_cluster", first],
                &["start_app"],
                &["await_startup"],
            ] {
                node.ctl(args).unwrap_or_else(|out| {
                    panic!("{} cannot join {first}: {args:?}: {out}", node.name)
                });
            }
        }
        Self { nodes }
    }

    /// One `amqp://` URL per node, in node order (the `amqp_urls` of a configuration).
    pub fn amqp_urls(&self) -> Vec<String> {
        self.nodes.iter().map(PrivateNode::amqp_url).collect()
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> &PrivateNode {
        self.nodes
            .iter()
            .find(|node| node.name == name)
            .unwrap_or_else(|| panic!("{name} is no node of the cluster"))
    }

    /// Removes a dead node from the cluster, as an operator does for a node lost for good:
    /// the quorum queues drop it from their members, so deleting one no longer waits for it.
    pub fn forget(&self, dead: &str) {
        let survivor = self
            .nodes
            .iter()
            .find(|node| node.name != dead)
            .expect("a surviving node");
        survivor
            .ctl(&["forget_cluster_node", dead])
            .unwrap_or_else(|out| panic!("{} cannot forget {dead}: {out}", survivor.name));
    }

    /// `rabbitmqctl list_queues` asked of the first node that answers: `(name, columns...)`
    /// per queue.
    pub fn list_queues(&self, columns: &[&str]) -> Vec<Vec<String>> {
        let mut args = vec!["list_queues", "name"];
        args.extend_from_slice(columns);
        args.extend(["--no-table-headers", "--quiet"]);
        let out = self
            .nodes
            .iter()
            .find_map(|node| node.ctl(&args).ok())
            .expect("a node of the cluster answers");
        out.lines()
            .map(|line| line.split_whitespace().map(str::to_owned).collect())
            .collect()
    }

    /// The value of `column` for `queue` (see [`queue_info`]), asked of a running node.
    pub fn queue_info(&self, queue: &str, column: &str) -> Option<String> {
        self.list_queues(&[column])
            .into_iter()
            .find(|fields| fields.first().map(String::as_str) == Some(queue))
            .and_then(|fields| fields.get(1).cloned())
    }
}

/// A single [`PrivateNode`] that a test may restart while the shared broker keeps serving every
/// other test: plain, or TLS-only as Fedora's broker is. Stopped when dropped.
#[derive(Debug)]
pub struct Node {
    /// Its AMQP (or, for [`Node::start_tls`], AMQPS) port.
    pub port: u16,
    node: PrivateNode,
}

/// The client certificate's common name, which is also the broker user it logs in as.
pub const TLS_CLIENT: &str = "fortnight-client";

impl Node {
    /// A plain node: AMQP on a free port, with the default `guest` account.
    pub fn start() -> Self {
        let port = free_port();
        let node = PrivateNode::launch(
            "node",
            tempfile::tempdir().expect("a directory for the node"),
            port,
            "",
            &[],
        );
        node.wait_started();
        Self { port, node }
    }

    /// A node with only a TLS listener, a test CA and EXTERNAL authentication by client
    /// certificate, as Fedora's broker has.
    pub fn start_tls() -> Self {
        let dir = tempfile::tempdir().expect("a directory for the TLS node");
        let d = dir.path();
        let port = free_port();
        ca(d, "ca");
        ca(d, "rogue-ca");
        signed(
            d,
            "server",
            "localhost",
            "ca",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        );
        signed(d, "client", TLS_CLIENT, "ca", "extendedKeyUsage=clientAuth");
        signed(
            d,
            "rogue",
            TLS_CLIENT,
            "rogue-ca",
            "extendedKeyUsage=clientAuth",
        );
        let p = |name: &str| d.join(name).display().to_string();
        let config = format!(
            "listeners.tcp = none\nlisteners.ssl.default = {port}\n\
             ssl_options.cacertfile = {ca}\nssl_options.certfile = {cert}\n\
             ssl_options.keyfile = {key}\nssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = true\nauth_mechanisms.1 = EXTERNAL\n\
             ssl_cert_login_from = common_name\nloopback_users = none\n",
            ca = p("ca.pem"),
            cert = p("server.pem"),
            key = p("server.key"),
        );
        let node = PrivateNode::launch(
            "tls",
            dir,
            free_port(),
            &config,
            &["rabbitmq_auth_mechanism_ssl"],
        );
        node.wait_started();
        let password = uuid::Uuid::new_v4().to_string();
        node.ctl(&["add_user", TLS_CLIENT, &password])
            .expect("user for the client certificate");
        node.ctl(&["set_permissions", "-p", "/", TLS_CLIENT, ".*", ".*", ".*"])
            .expect("permissions");
        Self { port, node }
    }

    /// The node's directory.
    pub fn dir(&self) -> &std::path::Path {
        self.node.dir.path()
    }

    /// `rabbitmqctl` for this node.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        self.node.ctl(args)
    }

    /// The URL of a plain node's `guest` account.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the broker application, closing every connection, and starts it again: a
    /// broker restart, with durable queues and bindings kept.
    pub fn restart(&self) {
        self.stop_app();
        self.start_app();
    }

    /// Stops the broker application: every connection closes, the VM keeps running.
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]).expect("the node stops");
    }

    /// Starts the broker application again and waits until it has booted.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]).expect("the node starts again");
        self.ctl(&["await_startup"])
            .expect("the node finishes booting again");
    }

    /// A full node restart; see [`PrivateNode::reboot`].
    pub fn reboot(&self) {
        self.node.reboot();
    }

    /// [`queue_info`] on this node.
    pub fn queue_info(&self, queue: &str, column: &str) -> Option<String> {
        column_of(self.ctl(&list_queues(column)).ok()?, queue)
    }

    /// A PEM file in a TLS node's directory (`ca.pem`, `client.pem`, `client.key`,
    /// `rogue.pem`, `rogue.key`).
    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.dir().join(name)
    }
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

fn free_port() -> u16 {
    crate::free_port().port()
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    crate::process::run_ok(
        Command::new("openssl").args(args).current_dir(dir),
        &format!("openssl {args:?}"),
    );
}

/// A self-signed CA: `<name>.pem`, `<name>.key`.
fn ca(dir: &std::path::Path, name: &str) {
    let (cert, key, subject) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("/CN={name}"),
    );
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject,
            "-keyout", &key, "-out", &cert,
        ],
    );
}

/// A certificate for `cn` signed by CA `issuer`: `<name>.pem`, `<name>.key` (PKCS#8).
fn signed(dir: &std::path::Path, name: &str, cn: &str, issuer: &str, extension: &str) {
    let (cert, key, csr) = (
        format!("{name}.pem"),
        format!("{name}.key"),
        format!("{name}.csr"),
    );
    let ext = format!("{name}.ext");
    std::fs::write(dir.join(&ext), format!("{extension}\n")).expect("extension file");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{issuer}.pem"),
            "-CAkey",
            &format!("{issuer}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &cert,
            "-extfile",
            &ext,
        ],
    );
}

/// A policy on the queues matching `pattern`, cleared when dropped.
#[derive(Debug)]
pub struct Policy {
    name: String,
}

impl Policy {
    /// Sets the policy and waits until the broker applied it to the queue named `queue`.
    pub fn apply(name: &str, queue: &str, definition: &str) -> Self {
        let pattern = format!("^{}$", queue.replace('.', "\\."));
        rabbitmqctl(&[
            "set_policy",
            "--apply-to",
            "queues",
            name,
            &pattern,
            definition,
        ])
        .expect("rabbitmqctl set_policy");
        let policy = Self {
            name: name.to_owned(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let applied = || queue_info(queue, "policy").as_deref() == Some(name);
        while !applied() {
            assert!(
                std::time::Instant::now() < deadline,
                "policy {name} never applied to {queue}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        policy
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["clear_policy", &self.name]);
    }
}
