use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in the store. Every variant names the path concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {path}: {source}{hint}", hint = io_hint(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "cannot read {path} as JSON: {source}; fix or remove the file and replay the message that wrote it"
    )]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: line {line} is not `SHA256 (name) = <hex>`: {text:?}")]
    Checksum {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("invalid file name {name:?}: {rule}")]
    FileName { name: String, rule: &'static str },
}

fn io_hint(source: &io::Error) -> &'static str {
    match source.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            " (free space on the store's filesystem; the step is retried)"
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            " (check ownership and mode of the store; the step is retried)"
        }
        _ => "",
    }
}

impl StoreError {
    /// The error for `op` failing on `path`, to pass to `map_err`.
    pub fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
        let path = path.to_owned();
        move |source| StoreError::Io { op, path, source }
    }

    /// Whether the condition may clear by itself or by an operator fixing the machine (disk
    /// full, permission denied, a network filesystem hiccup), so the step should return
    /// `Outcome::Retry` rather than reject the message.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => !matches!(
                source.kind(),
                io::ErrorKind::InvalidInput
                    | io::ErrorKind::InvalidData
                    | io::ErrorKind::InvalidFilename
            ),
            StoreError::Json { .. } | StoreError::Checksum { .. } | StoreError::FileName { .. } => {
                false
            }
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
