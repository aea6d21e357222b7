//! Identifiers that end up in paths, OSTree arguments and routing keys.
//!
//! Each type can only hold a value that is safe to use as one path component (or, for
//! [`Ref`], a `/`-separated list of them) and as a single process argument: no `/` where it
//! is not part of the grammar, no `..`, no NUL, no whitespace, no shell metacharacters, no
//! leading `-` (which a command would read as an option). Values are parsed once, where a
//! message or a config file enters the program; everything past that edge takes these
//! types, so no later code needs to re-check.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Why a value was refused: which kind of identifier, the value (truncated), and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {rule}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
    pub rule: &'static str,
}

impl InvalidId {
    fn new(kind: &'static str, value: &str, rule: &'static str) -> Self {
        let value = value.chars().take(80).collect();
        Self { kind, value, rule }
    }
}

/// Commits and file digests are both SHA-256 sums written as 64 lowercase hex digits.
fn check_sha256_hex(kind: &'static str, v: &str) -> Result<(), InvalidId> {
    if v.len() == 64
        && v.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    {
        Ok(())
    } else {
        Err(InvalidId::new(kind, v, "must be 64 lowercase hex digits"))
    }
}

/// One path component: `[A-Za-z0-9._+-]`, not starting with `-` or `.`, at most `max` long.
fn check_component(
    kind: &'static str,
    value: &str,
    max: usize,
    extra: &[char],
) -> Result<(), InvalidId> {
    if value.is_empty() {
        return Err(InvalidId::new(kind, value, "must not be empty"));
    }
    if value.len() > max {
        return Err(InvalidId::new(kind, value, "is too long"));
    }
    if value.starts_with(['-', '.']) {
        return Err(InvalidId::new(
            kind,
            value,
            "must not start with '-' or '.'",
        ));
    }
    if value.contains("..") {
        return Err(InvalidId::new(kind, value, "must not contain '..'"));
    }
    if !value.chars().all(|c| {
        c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' || extra.contains(&c)
    }) {
        return Err(InvalidId::new(
            kind,
            value,
            "may only contain ASCII letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

macro_rules! validated_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $pattern:literal, $check:expr) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(value: &str) -> Result<Self, InvalidId> {
                let check: fn(&str) -> Result<(), InvalidId> = $check;
                check(value)?;
                Ok(Self(value.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                value.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl AsRef<std::ffi::OsStr> for $name {
            fn as_ref(&self) -> &std::ffi::OsStr {
                std::ffi::OsStr::new(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "description": $kind, "pattern": $pattern })
            }
        }
    };
}

validated_id!(
    /// A configured line of releases: `f43`, `rawhide`, `f43-testing`.
    Stream,
    "stream name",
    "^[a-z0-9][a-z0-9_-]{0,63}$",
    |v| {
        check_component("stream", v, 64, &[])?;
        if v.chars().any(|c| c.is_ascii_uppercase() || c == '.') {
            return Err(InvalidId::new("stream", v, "must be lowercase letters, digits, '_' and '-'"));
        }
        Ok(())
    }
);

validated_id!(
    /// A CPU architecture as Fedora spells it: `x86_64`, `aarch64`, `ppc64le`, `s390x`.
    Arch,
    "architecture",
    "^[a-z0-9_]{1,16}$",
    |v| {
        check_component("arch", v, 16, &[])?;
        if !v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(InvalidId::new("arch", v, "must be lowercase letters, digits and '_'"));
        }
        Ok(())
    }
);

validated_id!(
    /// A tree version: the OSTree commit's `version` metadata (`43.20261127.0`) or a compose id.
    Version,
    "tree version",
    "^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$",
    |v| check_component("version", v, 128, &['+'])
);

validated_id!(
    /// An image format as the store and recipes name it: `qcow2`, `raw.xz`, `vagrant-libvirt.box`.
    Format,
    "image format",
    "^[a-z0-9][a-z0-9._-]{0,31}$",
    |v| {
        check_component("format", v, 32, &[])?;
        if v.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(InvalidId::new("format", v, "must be lowercase"));
        }
        Ok(())
    }
);

validated_id!(
    /// A tester's or operator's account name (a Fedora account, or the broker user).
    UserName,
    "user name",
    "^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$",
    |v| check_component("user name", v, 64, &[])
);

validated_id!(
    /// A test another CI system runs, as its Fedora CI messages name it:
    /// `<namespace>.<type>` or `<namespace>.<type>.<category>` (`openqa.install_default`).
    TestName,
    "test name",
    "^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$",
    |v| check_component("test name", v, 128, &[])
);

validated_id!(
    /// The label of a stream for a coming release, on its releases until it becomes the
    /// current two-week stream: `beta`, `rc`.
    Prerelease,
    "pre-release label",
    "^[a-z][a-z0-9]{0,15}$",
    |v| {
        check_component("pre-release label", v, 16, &[])?;
        if !v.starts_with(|c: char| c.is_ascii_lowercase())
            || !v.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(InvalidId::new(
                "pre-release label",
                v,
                "must be lowercase letters and digits, starting with a letter",
            ));
        }
        Ok(())
    }
);

validated_id!(
    /// An OSTree ref: `/`-separated components, e.g. `fedora/43/x86_64/atomic-host`.
    Ref,
    "OSTree ref",
    "^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$",
    |v| {
        if v.is_empty() || v.len() > 255 {
            return Err(InvalidId::new("ref", v, "must be 1 to 255 characters"));
        }
        v.split('/').try_for_each(|part| check_component("ref", part, 255, &[]))
    }
);

validated_id!(
    /// An OSTree commit checksum: 64 lowercase hex digits.
    Commit,
    "OSTree commit checksum",
    "^[0-9a-f]{64}$",
    |v| check_sha256_hex("commit", v)
);

validated_id!(
    /// A SHA-256 digest of a file: 64 lowercase hex digits.
    Sha256,
    "SHA-256 digest",
    "^[0-9a-f]{64}$",
    |v| check_sha256_hex("sha256", v)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_refused() {
        for bad in [
            "",
            "..",
            "../etc",
            "a/b",
            "a b",
            "a;rm -rf /",
            "$(id)",
            "`id`",
            "-rf",
            ".hidden",
            "a\0b",
            "a|b",
            "a&b",
            "a\nb",
        ] {
            assert!(bad.parse::<Stream>().is_err(), "stream {bad:?}");
            assert!(bad.parse::<Version>().is_err(), "version {bad:?}");
            assert!(bad.parse::<UserName>().is_err(), "user {bad:?}");
            assert!(bad.parse::<Arch>().is_err(), "arch {bad:?}");
        }
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/../b",
            "a/./b",
            "a/",
            "fedora/43/$(id)",
            "-x/y",
        ] {
            assert!(bad.parse::<Ref>().is_err(), "ref {bad:?}");
        }
    }

    #[test]
    fn real_values_are_accepted() {
        for good in ["f43", "rawhide", "f43-testing"] {
            good.parse::<Stream>().unwrap();
        }
        for good in ["x86_64", "aarch64", "ppc64le", "s390x"] {
            good.parse::<Arch>().unwrap();
        }
        for good in ["43.20261127.0", "Fedora-43-20261110.n.1", "1.2+git3"] {
            good.parse::<Version>().unwrap();
        }
        for good in [
            "fedora/43/x86_64/updates/atomic-host",
            "fedora-atomic/25/x86_64/docker-host",
        ] {
            good.parse::<Ref>().unwrap();
        }
        "d428d3ad8ae8ec0d9c1bc6f9e3a8b1f4b2e7c1d0a9f8e7d6c5b4a39281706f5e"
            .parse::<Commit>()
            .unwrap();
        assert!("abc123".parse::<Commit>().is_err());
        assert!("F43".parse::<Stream>().is_err());
    }

    #[test]
    fn deserializing_validates() {
        let err = serde_json::from_str::<Stream>("\"../../etc\"").unwrap_err();
        assert!(err.to_string().contains("invalid stream"), "{err}");
    }
}
