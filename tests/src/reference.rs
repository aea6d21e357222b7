//! The fedora-messaging reference client: where it is installed, its configuration, and pika
//! (its own AMQP library) to set up and remove what it binds to.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::config::{Table, Value, toml};
use crate::process::run_ok;

/// `FM_BIN`, else `fedora-messaging` on `PATH`, else the venv CI creates.
pub fn fm_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FM_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("fedora-messaging"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| ci_venv().join("bin/fedora-messaging"))
}

/// Where `.ci/run` keeps the fedora-messaging virtualenv between runs (its
/// `FORTNIGHT_CI_VENV` default), so `cargo test` alone finds it after one CI run.
fn ci_venv() -> PathBuf {
    if let Some(venv) = std::env::var_os("FORTNIGHT_CI_VENV") {
        return PathBuf::from(venv);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    cache.join("fortnight-ci/venv")
}

/// The Python that runs the reference client (its venv's, so pika is importable).
pub fn fm_python() -> PathBuf {
    let bin = fm_bin();
    let sibling = bin.with_file_name("python");
    if sibling.is_file() {
        sibling
    } else {
        PathBuf::from("python3")
    }
}

/// Fortnight's schema package (`schemas/python`) built from this checkout, once per test
/// process: the directory to put on `PYTHONPATH`. Every reference client the tests run sees
/// the schemas under test, not whichever version a virtualenv last had installed.
pub fn schema_package() -> PathBuf {
    static BUILT: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // pip builds a local directory in place; building a copy keeps test processes that
        // run at the same time out of each other's build/ directories.
        run_ok(
            Command::new("cp")
                .arg("-r")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas"))
                .arg(dir.path()),
            "copy schemas/",
        );
        run_ok(
            Command::new(fm_python())
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(["--no-deps", "--no-build-isolation", "--target"])
                .arg(dir.path().join("site"))
                .arg(dir.path().join("schemas/python")),
            "pip install schemas/python",
        );
        dir
    });
    dir.path().join("site")
}

/// The reference client's Python with Fortnight's schema package importable.
pub fn schema_python() -> Command {
    let mut command = Command::new(fm_python());
    command.env("PYTHONPATH", schema_package());
    command
}

/// Declares or deletes broker objects with pika, so a test can set up an exchange before any
/// client binds to it.
const ADMIN_PY: &str = r#"
import sys, pika
op, url, exchange, *queues = sys.argv[1:]
connection = pika.BlockingConnection(pika.URLParameters(url))
for queue in queues:
    connection.channel().queue_delete(queue)
if op == "declare":
    connection.channel().exchange_declare(exchange, exchange_type="topic", durable=True)
else:
    connection.channel().exchange_delete(exchange)
connection.close()
"#;

/// Deletes `queues`, then declares (`op` = "declare") or deletes `exchange` as a durable topic
/// exchange.
fn admin_command(op: &str, exchange: &str, queues: &[String]) -> Command {
    let mut command = Command::new(fm_python());
    command
        .args(["-c", ADMIN_PY, op, &crate::amqp_url(), exchange])
        .args(queues);
    command
}

/// `admin_command` with pika's output unchecked, for clean-up that must not fail a test.
pub fn try_admin(op: &str, exchange: &str, queues: &[String]) -> std::io::Result<Output> {
    admin_command(op, exchange, queues).output()
}

/// `admin_command`, and it must succeed.
pub fn admin(op: &str, exchange: &str, queues: &[String]) {
    run_ok(
        &mut admin_command(op, exchange, queues),
        &format!("pika {op}"),
    );
}

/// Writes a fedora-messaging config for client `app` with one auto-deleted `queue` bound to
/// `#` on `exchange`. `topic_prefix` stays empty: a received topic keeps its prefix.
pub fn write_fm_config(path: &Path, exchange: &str, queue: &str, app: &str) {
    let exchange_keys = toml! {
        type = "topic"
        durable = true
        auto_delete = false
        arguments = {}
    };
    let queue_keys = toml! {
        durable = false
        auto_delete = true
        exclusive = false
        arguments = {}
    };
    let named = |name: &str, keys: Table| {
        Value::Table(Table::from_iter([(name.to_owned(), Value::Table(keys))]))
    };
    let config = toml! {
        amqp_url = (crate::amqp_url())
        publish_exchange = (exchange)
        topic_prefix = ""
        passive_declares = false
        exchanges = (named(exchange, exchange_keys))
        queues = (named(queue, queue_keys))
        bindings = [{ queue = (queue), exchange = (exchange), routing_keys = ["#"] }]

        [client_properties]
        app = (app)

        [qos]
        prefetch_size = 0
        prefetch_count = 10
    };
    std::fs::write(path, crate::config::to_toml(&config))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A `fedora-messaging` command that reads `config`, with Fortnight's schema package.
pub fn fm(config: &Path) -> Command {
    let mut command = Command::new(fm_bin());
    command
        .env("PYTHONPATH", schema_package())
        .env("FEDORA_MESSAGING_CONF", config)
        .arg("--conf")
        .arg(config);
    command
}

/// Whether `queue` is bound to `exchange` right now.
pub fn is_bound(exchange: &str, queue: &str) -> bool {
    crate::broker::rabbitmqctl(&["-q", "list_bindings", "source_name", "destination_name"])
        .is_ok_and(|out| {
            out.lines().any(|line| {
                let mut fields = line.split('\t');
                fields.next() == Some(exchange) && fields.next() == Some(queue)
            })
        })
}
