//! The configuration every test writes for a temporary store: one `f43` stream on one arch,
//! so a test names only what it changes.

use std::path::Path;

use settings::Settings;

/// `[store]` at `root` and `[streams.f43]` building `input_ref` from `ostree_repo` into
/// qcow2; `stream_keys` are more TOML lines of the stream's section. Top-level keys go
/// before this text, other tables after it.
pub fn store_toml(root: &Path, input_ref: &str, ostree_repo: &Path, stream_keys: &str) -> String {
    format!(
        r#"
[store]
root = "{root}"

[streams.f43]
arches = ["x86_64"]
input_refs = {{ x86_64 = "{input_ref}" }}
ostree_repo = "{repo}"
formats = ["qcow2"]
{stream_keys}
"#,
        root = root.display(),
        repo = ostree_repo.display(),
    )
}

/// [`store_toml`] alone, loaded: what a step needs to be driven through `handle` without a
/// broker.
pub fn store_settings(
    root: &Path,
    input_ref: &str,
    ostree_repo: &Path,
    stream_keys: &str,
) -> Settings {
    Settings::from_toml(&store_toml(root, input_ref, ostree_repo, stream_keys))
        .expect("the test configuration is valid")
}
