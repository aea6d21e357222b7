//! The configuration every test writes for a temporary store: one `f43` stream on one arch,
//! so a test names only what it changes. Configurations are `toml::Table`s from typed values
//! (the `toml!` macro takes a value as `(expr)`), merged with [`merge`] and written by the
//! toml crate, so no path or name can break the file's syntax.

use std::net::SocketAddr;
use std::path::Path;

use settings::Settings;
pub use toml::{Table, Value, toml};

/// Merges `from` into `into`: tables key by key, at every depth; any other value replaces.
pub fn merge(into: &mut Table, from: Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(table)) => merge(existing, table),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// `into` with `from` merged into it.
pub fn merged(mut into: Table, from: Table) -> Table {
    merge(&mut into, from);
    into
}

/// A path as a TOML string.
pub fn path(path: &Path) -> Value {
    Value::String(path.display().to_string())
}

/// The configuration's text, as a consumer process reads it.
pub fn to_toml(config: &Table) -> String {
    toml::to_string(config).expect("a table of TOML values is valid TOML")
}

/// A consumer section's `health_addr`.
pub fn health_addr(addr: SocketAddr) -> Table {
    toml! { health_addr = (addr.to_string()) }
}

/// `[store]` at `root` and `[streams.f43]` building `input_ref` from `ostree_repo` into
/// qcow2, with `stream_keys` merged into the stream's table.
pub fn store_config(root: &Path, input_ref: &str, ostree_repo: &Path, stream_keys: Table) -> Table {
    let stream = merged(
        toml! {
            arches = ["x86_64"]
            input_refs = { x86_64 = (input_ref) }
            ostree_repo = (path(ostree_repo))
            formats = ["qcow2"]
        },
        stream_keys,
    );
    toml! {
        [store]
        root = (path(root))

        [streams]
        f43 = (Value::Table(stream))
    }
}

/// `consumers` (every one the registry names, for `fortnight up`) in one configuration: each
/// with its queue `fortnight.{name}.{consumer}` and a free health port (returned in the
/// same order), all publishing on exchange `fortnight.{name}` with topic prefix
/// `{name}`, so a run with a `name` of its own shares no queue or topic with another. The
/// store is at `dir`, with the release timer's `[twoweek]` keys set.
pub fn consumers(dir: &Path, name: &str, consumers: &[&str]) -> (Table, Vec<SocketAddr>) {
    let addrs: Vec<SocketAddr> = consumers.iter().map(|_| crate::free_port()).collect();
    let mut config = toml! {
        publish_exchange = (format!("fortnight.{name}"))
        topic_prefix = (name)
    };
    merge(
        &mut config,
        store_config(
            dir,
            "fedora/43/x86_64/updates/atomic-host",
            dir,
            toml! {
                [twoweek]
                release_refs = { x86_64 = "fedora/43/x86_64/atomic-host" }
                anchor = "2099-01-01T00:00:00Z"
            },
        ),
    );
    let sections: Table = consumers
        .iter()
        .zip(&addrs)
        .map(|(consumer, addr)| {
            let section = toml! {
                queue = (format!("fortnight.{name}.{consumer}"))
                health_addr = (addr.to_string())
            };
            ((*consumer).to_owned(), Value::Table(section))
        })
        .collect();
    config.insert("consumers".to_owned(), Value::Table(sections));
    (config, addrs)
}

/// [`store_config`] alone, loaded: what a step needs to be driven through `handle` without
/// a broker.
pub fn store_settings(
    root: &Path,
    input_ref: &str,
    ostree_repo: &Path,
    stream_keys: Table,
) -> Settings {
    Settings::from_toml(&to_toml(&store_config(
        root,
        input_ref,
        ostree_repo,
        stream_keys,
    )))
    .expect("the test configuration is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_combines_tables_at_every_depth_and_replaces_other_values() {
        let mut config = toml! {
            topic_prefix = "a"
            [streams.f43]
            arches = ["x86_64"]
            formats = ["qcow2"]
        };
        merge(
            &mut config,
            toml! {
                topic_prefix = "b"
                [streams.f43]
                formats = ["raw.xz"]
                [streams.f43.recipes]
                qcow2 = "/bin/true"
            },
        );
        assert_eq!(
            config,
            toml! {
                topic_prefix = "b"
                [streams.f43]
                arches = ["x86_64"]
                formats = ["raw.xz"]
                [streams.f43.recipes]
                qcow2 = "/bin/true"
            }
        );
    }

    /// Text pasted into TOML breaks on a quote or a backslash in a path; values do not.
    #[test]
    fn paths_with_quotes_and_backslashes_load_as_they_are() {
        let root = Path::new("/tmp/a \"quoted\" \\ store");
        let settings = store_settings(
            root,
            "fedora/43/x86_64/atomic-host",
            Path::new("/srv/repo"),
            toml! { formats = ["qcow2", "raw.xz"] },
        );
        assert_eq!(settings.store.root, root);
        let stream = &settings.streams[&"f43".parse().unwrap()];
        assert_eq!(stream.formats.len(), 2, "stream keys are merged in");
    }
}
