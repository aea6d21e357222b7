//! The demo's configuration and test suite, written as TOML by the `toml` crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::Utc;
use messages::UserName;
use toml::{Table, Value};

use super::{ARCHES, DemoKey, STREAM, tools};

const QEMU_IMG_CHECK: &str = r#"#!/bin/sh
# The image is a well-formed qcow2.
exec qemu-img check -f qcow2 "$FORTNIGHT_IMAGE"
"#;

const OS_RELEASE: &str = r#"#!/bin/sh
# The image's deployment carries os-release naming the tree's version.
set -eu
raw="$FORTNIGHT_SCRATCH/disk.raw"
qemu-img convert -O raw "$FORTNIGHT_IMAGE" "$raw"
found="$(debugfs -R "cat /ostree/deploy/fedora-atomic/deploy/$FORTNIGHT_COMMIT.0/usr/lib/os-release" "$raw" 2>/dev/null || true)"
if printf '%s\n' "$found" | grep -qx "VERSION=\"$FORTNIGHT_VERSION\""; then
    echo "os-release names $FORTNIGHT_VERSION"
else
    echo "/usr/lib/os-release is missing or does not name $FORTNIGHT_VERSION"
    exit 1
fi
"#;

/// What the demo writes its configuration for.
pub(super) struct Demo<'a> {
    pub(super) dir: &'a Path,
    pub(super) run_id: &'a str,
    pub(super) amqp_url: &'a str,
    pub(super) boot: bool,
    pub(super) key: &'a DemoKey,
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A loopback address with a port nobody listens on right now, for a consumer's health
/// endpoint: the demo polls `/ready` to know the consumer's queue is bound.
fn free_local_addr() -> anyhow::Result<std::net::SocketAddr> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free local port")?;
    Ok(listener.local_addr()?)
}

/// Arch -> `fedora/43/<arch>/<kind>atomic-host` for every arch of the demo.
fn refs(kind: &str) -> BTreeMap<String, String> {
    ARCHES
        .iter()
        .map(|arch| {
            (
                (*arch).to_owned(),
                format!("fedora/43/{arch}/{kind}atomic-host"),
            )
        })
        .collect()
}

impl Demo<'_> {
    /// Writes the config and the test suite (with `boot`, the shipped boot test too); returns
    /// the config's path. `operators` are the accounts that may vote and fire the tick.
    pub(super) fn write(&self, operators: &[UserName]) -> anyhow::Result<PathBuf> {
        let recipes = tools::recipes_dir()?;
        let suite = self.write_suite(&recipes)?;
        let path = self.dir.join("config.toml");
        let config = toml::to_string(&self.config(operators, &recipes, &suite)?)
            .context("cannot write the demo's configuration as TOML")?;
        std::fs::write(
            &path,
            format!(
                "# Written by `fortnight demo` (run {}).\n{config}",
                self.run_id
            ),
        )?;
        Ok(path)
    }

    /// The suite's scripts and `suite.toml`; returns the latter's path.
    fn write_suite(&self, recipes: &Path) -> anyhow::Result<PathBuf> {
        let suite = self.dir.join("suite");
        std::fs::create_dir_all(suite.join("bin"))?;
        for (name, script) in [
            ("qemu-img-check", QEMU_IMG_CHECK),
            ("os-release", OS_RELEASE),
        ] {
            let path = suite.join("bin").join(name);
            std::fs::write(&path, script)?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        }
        let mut tests = vec![
            toml::toml! {
                name = "qemu-img-check"
                argv = ["bin/qemu-img-check"]
                timeout_seconds = 60
            },
            toml::toml! {
                name = "os-release"
                argv = ["bin/os-release"]
                timeout_seconds = 60
            },
        ];
        if self.boot {
            // The shipped boot test, as the Atomic Host suite runs it (aarch64 skips).
            let boot = text(&tools::shipped_tests(recipes)?.join("bin/boot"));
            tests.push(toml::toml! {
                name = "boot"
                argv = [(boot)]
                formats = ["qcow2"]
                timeout_seconds = 300
                env = { FORTNIGHT_BOOT_KERNEL = "required", FORTNIGHT_BOOT_SECONDS = "240" }
            });
        }
        let file = Table::from_iter([(
            "test".to_owned(),
            Value::Array(tests.into_iter().map(Value::Table).collect()),
        )]);
        let path = suite.join("suite.toml");
        std::fs::write(&path, toml::to_string(&file)?)?;
        Ok(path)
    }

    fn config(
        &self,
        operators: &[UserName],
        recipes: &Path,
        suite: &Path,
    ) -> anyhow::Result<Table> {
        let run_id = self.run_id;
        let store = self.dir.join("store");
        let operators: Vec<&str> = operators.iter().map(UserName::as_str).collect();
        let mut config = toml::toml! {
            amqp_url = (self.amqp_url)
            publish_exchange = (format!("fortnight.demo.{run_id}"))
            topic_prefix = (format!("demo.{run_id}"))
            operators = (operators)

            [store]
            root = (text(&store))

            [site]
            base_url = (format!("file://{}/", store.display()))
            intro = "A demo of Fortnight: images are built, tested, voted on and released automatically."
        };
        let mut consumers = Table::new();
        for consumer in registry::names() {
            let section = toml::toml! {
                queue = (format!("fortnight.demo.{run_id}.{consumer}"))
                max_attempts = 2
                retry_delays_seconds = [1]
                health_addr = (free_local_addr()?.to_string())
            };
            consumers.insert(consumer.to_owned(), Value::Table(section));
        }
        config.insert("consumers".to_owned(), Value::Table(consumers));
        // The anchor is in the future, so the timer stays quiet and the demo fires the tick
        // itself.
        let anchor = (Utc::now() + chrono::Duration::days(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let stream = toml::toml! {
            arches = (ARCHES.to_vec())
            input_refs = (refs("updates/"))
            ostree_repo = (text(&self.dir.join("repo")))
            formats = ["qcow2"]
            recipes = { qcow2 = (text(&recipes.join("qcow2"))) }
            test_suite = (text(suite))

            [karma]
            stable_threshold = 1

            [twoweek]
            release_refs = (refs(""))
            anchor = (anchor)
            period_days = 14

            [signing]
            gnupg_home = (text(&self.key.home))
            keys = { "43" = (self.key.fingerprint.as_str()) }
        };
        config.insert(
            "streams".to_owned(),
            Value::Table(Table::from_iter([(
                STREAM.to_owned(),
                Value::Table(stream),
            )])),
        );
        Ok(config)
    }
}
